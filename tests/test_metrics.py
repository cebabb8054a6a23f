"""Tests of walsrec.metrics: hand-computed values, a dense brute-force oracle, independent
implementations (scikit-learn's ``ndcg_score`` and ``roc_auc_score``, scipy's Mann-Whitney U
for AUC, benfred/implicit for MAP@k and nDCG@k), the numba kernels against their NumPy twins,
chunking invariance and error messages.
"""

from __future__ import annotations

import doctest
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import walsrec.metrics
from walsrec.errors import InvalidParameterError
from walsrec.metrics import (
    _api,
    _kernels,
    evaluate,
    evaluate_scorer,
    evaluate_topk,
    evaluated_users,
    metric_names,
    popularity_baseline,
    rmse,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# ---------------------------------------------------------------------------------------
# the dense brute-force oracle: full sort per user, metrics straight from the definitions
# ---------------------------------------------------------------------------------------


def oracle(scores, train, heldout, k, raw_gain=False):
    """All metrics from a dense score matrix, one user at a time, with Python sorts."""
    scores = np.asarray(scores, dtype=np.float64)
    train = train.toarray() != 0 if sp.issparse(train) else train
    held = sp.csr_matrix(heldout)
    n_users, n_items = scores.shape
    per_user = {"precision": [], "recall": [], "map": [], "ndcg": [], "auc": []}
    covered = set()
    for u in range(n_users):
        held_items = set(held.indices[held.indptr[u] : held.indptr[u + 1]].tolist())
        value = dict(
            zip(
                held.indices[held.indptr[u] : held.indptr[u + 1]].tolist(),
                held.data[held.indptr[u] : held.indptr[u + 1]].tolist(),
                strict=True,
            )
        )
        candidates = [i for i in range(n_items) if not train[u, i]]
        relevant = {i for i in held_items if not train[u, i]}
        if not relevant:
            continue
        ranked = sorted(candidates, key=lambda i: (-scores[u, i], i))[:k]
        covered.update(ranked)
        gain = {i: (value[i] if raw_gain else 1.0) for i in relevant}
        hits, ap, dcg = 0, 0.0, 0.0
        for r, item in enumerate(ranked, start=1):
            if item in relevant:
                hits += 1
                ap += hits / r
                dcg += gain[item] / math.log2(r + 1)
        ideal = sorted(gain.values(), reverse=True)[:k]
        idcg = sum(g / math.log2(r + 1) for r, g in enumerate(ideal, start=1))
        per_user["precision"].append(hits / k)
        per_user["recall"].append(hits / len(relevant))
        per_user["map"].append(ap / min(len(relevant), k))
        per_user["ndcg"].append(dcg / idcg)
        negatives = [i for i in candidates if i not in relevant]
        if negatives:
            wins = sum(
                1.0 if scores[u, p] > scores[u, q] else 0.5 if scores[u, p] == scores[u, q] else 0
                for p in relevant
                for q in negatives
            )
            per_user["auc"].append(wins / (len(relevant) * len(negatives)))

    def mean(values):
        return float(np.mean(values)) if values else float("nan")

    out = {
        f"precision@{k}": mean(per_user["precision"]),
        f"recall@{k}": mean(per_user["recall"]),
        f"map@{k}": mean(per_user["map"]),
        f"ndcg@{k}": mean(per_user["ndcg"]),
        "auc": mean(per_user["auc"]),
        "coverage": len(covered) / n_items,
    }
    return out


def assert_metrics_equal(actual, expected, rtol=1e-12):
    assert list(actual) == list(expected)
    for name in expected:
        np.testing.assert_allclose(
            actual[name], expected[name], rtol=rtol, atol=1e-15, err_msg=name
        )


def identity_factors(scores):
    """Factors whose product is exactly ``scores`` (U = scores, V = I)."""
    scores = np.asarray(scores, dtype=np.float64)
    return scores, np.eye(scores.shape[1])


# ---------------------------------------------------------------------------------------
# hand-computed example: 3 users, 6 items, k = 3
# ---------------------------------------------------------------------------------------

# score(u, i), integers so that every product and comparison is exact
HAND_SCORES = np.array(
    [
        [6, 5, 4, 3, 2, 1],
        [1, 4, 4, 6, 2, 3],  # items 1 and 2 tie: item 1 ranks first (lower index)
        [3, 3, 3, 3, 3, 3],  # every item ties
    ],
    dtype=np.float64,
)
HAND_TRAIN = sp.csr_matrix(
    (np.ones(3), ([0, 1, 2], [0, 3, 1])), shape=(3, 6)
)  # u0: {0}, u1: {3}, u2: {1}
HAND_HELDOUT = sp.csr_matrix(
    (np.array([5.0, 2.0, 6.0, 3.0, 4.0]), ([0, 0, 1, 2, 2], [2, 5, 2, 1, 4])), shape=(3, 6)
)  # u0: {2: 5, 5: 2}, u1: {2: 6}, u2: {1: 3 (also training: not relevant), 4: 4}
L3 = math.log2(3)

# u0: candidates 1..5 score 5,4,3,2,1 → top-3 [1, 2, 3]; R = {2, 5}; rel = [0, 1, 0]
#     precision 1/3, recall 1/2, AP = (1/2) / min(2, 3) = 1/4,
#     nDCG = (1/log2 3) / (1 + 1/log2 3) = 1 / (log2 3 + 1)
#     AUC: positives 2 (4), 5 (1) vs negatives 1 (5), 3 (3), 4 (2): 2 beats 3, 4 → 2/6 = 1/3
# u1: candidates 0,1,2,4,5 score 1,4,4,2,3 → top-3 [1, 2, 5]; R = {2}; rel = [0, 1, 0]
#     precision 1/3, recall 1, AP = (1/2) / 1 = 1/2, nDCG = (1/log2 3) / 1
#     AUC: positive 2 (4) vs 0 (1), 1 (4: tie), 4 (2), 5 (3): (3 + 1/2) / 4 = 7/8
# u2: candidates 0,2,3,4,5 all score 3 → top-3 [0, 2, 3]; R = {4}; no hit: 0, 0, 0, 0
#     AUC: positive 4 ties with all 4 negatives: (4 · 1/2) / 4 = 1/2
# coverage: {1,2,3} ∪ {1,2,5} ∪ {0,2,3} = 5 of 6 items
# rmse: errors 4-5, 1-2, 4-6, 3-3, 3-4 → sqrt((1 + 1 + 4 + 0 + 1) / 5)
HAND_EXPECTED = {
    "rmse": math.sqrt(7 / 5),
    "precision@3": (1 / 3 + 1 / 3 + 0) / 3,
    "recall@3": (1 / 2 + 1 + 0) / 3,
    "map@3": (1 / 4 + 1 / 2 + 0) / 3,
    "ndcg@3": (1 / (L3 + 1) + 1 / L3 + 0) / 3,
    "auc": (1 / 3 + 7 / 8 + 1 / 2) / 3,
    "coverage": 5 / 6,
}


def test_hand_computed_example():
    U, V = identity_factors(HAND_SCORES)
    result = evaluate(U, V, HAND_TRAIN, HAND_HELDOUT, k=3)
    assert list(result) == ["rmse", "precision@3", "recall@3", "map@3", "ndcg@3", "auc", "coverage"]
    assert result == pytest.approx(HAND_EXPECTED, rel=1e-15)
    assert result["precision@3"] == 2 / 9
    assert result["recall@3"] == 0.5
    assert result["map@3"] == 0.25
    assert result["auc"] == 41 / 72
    assert result["coverage"] == 5 / 6


def test_hand_computed_raw_gain_ndcg():
    # u0: gains 5 (item 2, hit at rank 2), 2 (item 5): DCG = 5/log2 3, IDCG = 5 + 2/log2 3
    # u1: gain 6 at rank 2: DCG = 6/log2 3, IDCG = 6; u2: no hit
    U, V = identity_factors(HAND_SCORES)
    result = evaluate(U, V, HAND_TRAIN, HAND_HELDOUT, k=3, metrics=["ndcg@3"], ndcg_gain="raw")
    expected = ((5 / L3) / (5 + 2 / L3) + 1 / L3) / 3
    assert result == {"ndcg@3": pytest.approx(expected, rel=1e-15)}


def test_hand_computed_lists_and_scorer_agree():
    top = np.array([[1, 2, 3], [1, 2, 5], [0, 2, 3]])
    from_lists = evaluate_topk(top, HAND_TRAIN, HAND_HELDOUT)
    expected = {name: HAND_EXPECTED[name] for name in metric_names(3, include_rmse=False)}
    del expected["auc"]
    assert from_lists == pytest.approx(expected, rel=1e-15)
    from_scorer = evaluate_scorer(lambda users: HAND_SCORES[users], HAND_TRAIN, HAND_HELDOUT, 3)
    assert "rmse" not in from_scorer
    assert from_scorer == pytest.approx(
        {n: v for n, v in HAND_EXPECTED.items() if n != "rmse"}, rel=1e-15
    )


def test_hand_computed_rmse_alone():
    U, V = identity_factors(HAND_SCORES)
    assert rmse(U, V, HAND_HELDOUT) == pytest.approx(math.sqrt(7 / 5), rel=1e-15)


def test_hand_computed_popularity_baseline():
    # training counts per item: item 0 by u0, item 1 by u2, item 3 by u1
    pop = popularity_baseline(HAND_TRAIN)
    np.testing.assert_array_equal(pop, [1, 1, 0, 1, 0, 0])
    assert pop.dtype == np.float64
    # k = 1. u0 candidates 1..5: best 1 (count 1) → miss; u1 candidates 0,1,2,4,5: best 0
    # (tie with 1, lower index) → miss; u2 candidates 0,2,3,4,5: best 0 → miss
    result = evaluate_scorer(
        pop, HAND_TRAIN, HAND_HELDOUT, k=1, metrics=["precision@1", "coverage"]
    )
    assert result == {"precision@1": 0.0, "coverage": 2 / 6}


def test_docstring_examples_run():
    failures, tried = doctest.testmod(_api, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 3
    assert failures == 0


def test_metric_names():
    assert metric_names() == [
        "rmse", "precision@10", "recall@10", "map@10", "ndcg@10", "auc", "coverage",
    ]  # fmt: skip
    assert metric_names(5, include_rmse=False, include_auc=False) == [
        "precision@5", "recall@5", "map@5", "ndcg@5", "coverage",
    ]  # fmt: skip
    # a model fitted to binary targets predicts preferences, not values: no rmse
    assert metric_names(5, targets="binary") == metric_names(5, include_rmse=False)
    assert metric_names(5, targets="values") == metric_names(5)


def test_metrics_subset_keeps_canonical_order():
    U, V = identity_factors(HAND_SCORES)
    result = evaluate(U, V, HAND_TRAIN, HAND_HELDOUT, k=3, metrics=["coverage", "auc", "rmse"])
    assert list(result) == ["rmse", "auc", "coverage"]
    assert result == pytest.approx({n: HAND_EXPECTED[n] for n in result}, rel=1e-15)


def test_no_evaluated_user_gives_nan():
    # the only held-out entry is also a training entry: nobody has a relevant item
    train = sp.csr_matrix(np.array([[1.0, 0.0, 0.0]]))
    heldout = sp.csr_matrix(np.array([[2.0, 0.0, 0.0]]))
    result = evaluate(np.ones((1, 1)), np.ones((3, 1)), train, heldout, k=2)
    assert result["rmse"] == 1.0
    assert all(math.isnan(result[n]) for n in ["precision@2", "recall@2", "map@2", "ndcg@2"])
    assert math.isnan(result["auc"])
    assert result["coverage"] == 0.0


def test_auc_skips_users_without_negatives():
    # u0's only candidate is relevant (no negative): counted in precision, not in AUC
    train = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0]], dtype=float))
    heldout = sp.csr_matrix(np.array([[0, 0, 1], [1, 0, 0]], dtype=float))
    scores = np.array([[0.0, 0.0, 1.0], [3.0, 1.0, 2.0]])
    result = evaluate(*identity_factors(scores), train, heldout, k=2)
    assert result["auc"] == 1.0  # u1 only
    assert result["precision@2"] == (1 / 2 + 1 / 2) / 2


def test_fewer_candidates_than_k():
    # one candidate (item 2) for a list of 5: precision = 1/5, recall = map = ndcg = 1
    train = sp.csr_matrix(np.array([[1, 1, 0]], dtype=float))
    heldout = sp.csr_matrix(np.array([[0, 0, 1]], dtype=float))
    result = evaluate(np.ones((1, 2)), np.ones((3, 2)), train, heldout, k=5)
    assert result["precision@5"] == 0.2
    assert result["recall@5"] == result["map@5"] == result["ndcg@5"] == 1.0
    assert math.isnan(result["auc"])
    assert result["coverage"] == 1 / 3


def test_negative_infinite_scores_still_rank_after_others():
    scores = np.array([[-np.inf, 1.0, -np.inf, 0.0]])
    heldout = sp.csr_matrix(np.array([[0, 0, 1, 0]], dtype=float))
    result = evaluate_scorer(lambda users: scores[users], sp.csr_matrix((1, 4)), heldout, k=3)
    # ranking 1, 3, then the tie -inf (0, 2) broken by index: 0 → item 2 is not in the top 3
    assert result["recall@3"] == 0.0
    # AUC: item 2 (-inf) loses to 1 and 3, ties with 0 → (0 + 1/2) / 3
    assert result["auc"] == pytest.approx(1 / 6, rel=1e-15)


# ---------------------------------------------------------------------------------------
# random cases against the oracle and independent implementations
# ---------------------------------------------------------------------------------------


@st.composite
def problems(draw):
    n_users = draw(st.integers(1, 7))
    n_items = draw(st.integers(1, 9))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        scores = rng.integers(-2, 3, size=(n_users, n_items)).astype(np.float64)  # many ties
    else:
        scores = rng.standard_normal((n_users, n_items))
    p_train = draw(st.sampled_from([0.0, 0.3, 0.6, 1.0]))
    train = rng.random((n_users, n_items)) < p_train
    held = rng.random((n_users, n_items)) < draw(st.sampled_from([0.2, 0.5, 0.9]))
    if draw(st.booleans()):
        held &= ~train  # a proper split (otherwise held-out may overlap training)
    if n_users > 1 and draw(st.booleans()):
        held[0] = False  # a user with no held-out item
    if n_users > 2 and draw(st.booleans()):
        train[1] = True  # a user whose every item is a training item
    values = rng.integers(1, 6, size=(n_users, n_items)).astype(np.float64)
    heldout = sp.csr_matrix(np.where(held, values, 0.0))
    assume(heldout.nnz > 0)
    return scores, sp.csr_matrix(train.astype(np.float64)), heldout, k


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.booleans())
def test_evaluate_matches_dense_oracle(problem, raw_gain):
    scores, train, heldout, k = problem
    U, V = identity_factors(scores)
    gain = "raw" if raw_gain else "binary"
    result = evaluate(U, V, train, heldout, k, ndcg_gain=gain, chunk_size=3)
    expected = oracle(scores, train, heldout, k, raw_gain=raw_gain)
    pred = scores[heldout.nonzero()]
    expected = {"rmse": float(np.sqrt(np.mean((pred - heldout.data) ** 2))), **expected}
    assert_metrics_equal(result, expected)
    scored = evaluate_scorer(lambda users: scores[users], train, heldout, k, ndcg_gain=gain)
    del expected["rmse"]
    assert_metrics_equal(scored, expected)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_evaluated_users_matches_dense_definition(problem):
    _, train, heldout, _ = problem
    relevant = (heldout.toarray() != 0) & (train.toarray() == 0)
    np.testing.assert_array_equal(
        evaluated_users(train, heldout), np.flatnonzero(relevant.any(axis=1))
    )
    np.testing.assert_array_equal(
        evaluated_users(None, heldout), np.flatnonzero(heldout.getnnz(axis=1))
    )


@settings(max_examples=60, deadline=None)
@given(problems())
def test_evaluate_topk_matches_oracle_on_oracle_lists(problem):
    scores, train, heldout, k = problem
    dense_train = train.toarray() != 0
    top = np.full((scores.shape[0], k), -1)
    for u in range(scores.shape[0]):
        cand = [i for i in range(scores.shape[1]) if not dense_train[u, i]]
        ranked = sorted(cand, key=lambda i: (-scores[u, i], i))[:k]
        top[u, : len(ranked)] = ranked
    expected = oracle(scores, train, heldout, k)
    del expected["auc"]
    assert_metrics_equal(evaluate_topk(top, train, heldout), expected)


def test_auc_matches_mann_whitney_u():
    # AUC_u is the Mann-Whitney U statistic of positives vs negatives over |P|·|N|
    rng = np.random.default_rng(7)
    n_users, n_items = 25, 40
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # ties
    train = rng.random((n_users, n_items)) < 0.2
    held = (rng.random((n_users, n_items)) < 0.25) & ~train
    per_user = []
    for u in range(n_users):
        pos = scores[u, held[u]]
        neg = scores[u, ~held[u] & ~train[u]]
        if pos.size and neg.size:
            u_stat = scipy.stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic
            per_user.append(u_stat / (pos.size * neg.size))
    result = evaluate_scorer(
        lambda users: scores[users],
        sp.csr_matrix(train.astype(np.float32)),
        sp.csr_matrix(held.astype(np.float32)),
        metrics=["auc"],
    )
    assert result["auc"] == pytest.approx(np.mean(per_user), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_and_ndcg_match_implicit(seed):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    implicit_evaluation = pytest.importorskip("implicit.evaluation")
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    n_users, n_items, n_factors, k = 60, 50, 4, 7
    U = rng.standard_normal((n_users, n_factors)).astype(np.float32)
    V = rng.standard_normal((n_items, n_factors)).astype(np.float32)
    draws = rng.random((n_users, n_items))
    train = sp.csr_matrix((draws < 0.3).astype(np.float32))
    heldout = sp.csr_matrix(((draws >= 0.3) & (draws < 0.45)).astype(np.float32))
    with warnings.catch_warnings(), threadpool_limits(1, "blas"):
        # implicit warns about BLAS threads when a model is made; irrelevant here
        warnings.simplefilter("ignore", RuntimeWarning)
        model = implicit_als.AlternatingLeastSquares(factors=n_factors)
        model.user_factors, model.item_factors = U, V
        theirs = implicit_evaluation.ranking_metrics_at_k(
            model, train, heldout, K=k, show_progress=False
        )
    ours = evaluate(U, V, train, heldout, k, metrics=[f"map@{k}", f"ndcg@{k}"])
    assert ours[f"map@{k}"] == pytest.approx(theirs["map"], rel=1e-6)
    assert ours[f"ndcg@{k}"] == pytest.approx(theirs["ndcg"], rel=1e-6)


# ---------------------------------------------------------------------------------------
# kernels against their NumPy twins
# ---------------------------------------------------------------------------------------


def _kernel_inputs(rng, n_users, n_items, k, dtype, ties, held_density=0.3):
    if ties:
        scores = rng.integers(0, 4, size=(n_users, n_items)).astype(dtype)
    else:
        scores = rng.standard_normal((n_users, n_items)).astype(dtype)
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.3).astype(np.float64))
    held = sp.csr_matrix(
        np.where(
            rng.random((n_users, n_items)) < held_density,
            rng.integers(1, 5, (n_users, n_items)),
            0,
        ).astype(np.float64)
    )
    users = np.flatnonzero(np.diff(held.indptr)).astype(np.int64)
    seg = _api._segments(np.diff(held.indptr), users)
    m = users.size

    def outputs():
        return dict(
            pos_scores=np.empty(seg[-1], dtype=dtype),
            gains=np.empty(seg[-1]),
            top_items=np.empty((m, k), dtype=np.int64),
            top_scores=np.empty((m, k), dtype=dtype),
            n_rel=np.empty(m, dtype=np.int64),
            n_list=np.empty(m, dtype=np.int64),
            stats=np.empty((m, _kernels.N_STATS)),
            bad_count=np.empty(m, dtype=np.int64),
        )

    return scores[users], users, train, held, seg, outputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("raw_gain", [False, True])
@pytest.mark.parametrize(
    ("seed", "n_users", "n_items", "held_density"),
    [(3, 30, 23, 0.3), (4, 30, 23, 0.3), (5, 6, 500, 0.6)],  # the last: > 128 positives
)
def test_rank_block_matches_numpy_twin(dtype, ties, raw_gain, seed, n_users, n_items, held_density):
    rng = np.random.default_rng(seed)
    k = 5
    block, users, train, held, seg, outputs = _kernel_inputs(
        rng, n_users, n_items, k, dtype, ties, held_density
    )
    results = []
    for kernel in (_kernels.rank_block, _kernels.rank_block_numpy):
        out = outputs()
        kernel(
            block, users, train.indptr, train.indices, held.indptr, held.indices, held.data,
            k, raw_gain, True, seg, out["pos_scores"], out["gains"], out["top_items"],
            out["top_scores"], out["n_rel"], out["n_list"], out["stats"], out["bad_count"],
            False,
        )  # fmt: skip
        results.append(out)
    fast, slow = results
    evaluated = slow["n_rel"] > 0
    for name in ("n_rel", "bad_count"):
        np.testing.assert_array_equal(fast[name], slow[name], err_msg=name)
    np.testing.assert_array_equal(fast["n_list"][evaluated], slow["n_list"][evaluated])
    np.testing.assert_array_equal(fast["top_items"][evaluated], slow["top_items"][evaluated])
    width = slow["top_items"] >= 0
    np.testing.assert_array_equal(fast["top_scores"][width], slow["top_scores"][width])
    np.testing.assert_allclose(fast["stats"], slow["stats"], rtol=1e-13, equal_nan=True)
    assert evaluated.any() and (~np.isnan(slow["stats"][:, _kernels.STAT_AUC])).any()
    if n_items > 128:
        assert slow["n_rel"].min() > _kernels._COLUMN_AUC_MAX  # the binary-search path


def test_ranking_pass_with_numpy_twin_matches_numba():
    rng = np.random.default_rng(8)
    scores = rng.integers(0, 5, size=(40, 17)).astype(np.float64)
    train = sp.csr_matrix((rng.random((40, 17)) < 0.3).astype(np.float64))
    heldout = sp.csr_matrix((rng.random((40, 17)) < 0.3).astype(np.float64))
    names = metric_names(4, include_rmse=False)
    results = [
        _api._ranking_pass(
            lambda users: scores[users],
            train,
            heldout,
            4,
            names,
            6,
            False,
            "test",
            2,
            kernel=kernel,
        )
        for kernel in (_kernels.rank_block, _kernels.rank_block_numpy)
    ]
    assert results[0] == pytest.approx(results[1], rel=1e-13)
    assert results[0] == pytest.approx(oracle(scores, train, heldout, 4), rel=1e-12)


_NOT_FINITE = r"must be finite\. Got 1 score\(s\) that are not finite \(NaN or infinity\)"


@pytest.mark.parametrize(
    ("user_factors", "item_factors"),
    [
        # every product and every partial sum overflows the same way, FMA or not
        ([[1e300, 1e300]], [[1e300, 1e300], [1.0, 1.0]]),  # +inf
        ([[1e300, 1e300]], [[-1e300, -1e300], [1.0, 1.0]]),  # -inf
        # inf − inf: NaN without FMA (OpenBLAS Haswell), ±inf with it (SkylakeX)
        ([[1e300, 1e300]], [[1e300, -1e300], [1.0, 1.0]]),
        # float32 factors score in float32: 2·(1e20)² overflows at 3.4e38
        (np.float32([[1e20, 1e20]]), np.float32([[1e20, 1e20], [1.0, 1.0]])),
    ],
    ids=["+inf", "-inf", "inf-inf", "float32"],
)
def test_overflowing_factors_give_not_finite_scores_error(user_factors, item_factors):
    # Regression: the check counted only NaN, so this passed or failed with the BLAS kernel
    # (OPENBLAS_CORETYPE=SkylakeX gives +inf for the inf − inf case, and nothing was refused).
    heldout = sp.csr_matrix(np.array([[0.0, 1.0]]))
    msg = r"The scores of the factors \(U·Vᵀ\) " + _NOT_FINITE + r", the first for user 0"
    with pytest.raises(InvalidParameterError, match=msg):
        evaluate(user_factors, item_factors, sp.csr_matrix((1, 2)), heldout, k=1, metrics=["auc"])


def test_nan_factor_is_refused_before_scoring():
    U = np.array([[np.nan, 1.0]])
    msg = r"The 'user_factors' argument of evaluate must be finite\. Got 1 NaN or infinite"
    with pytest.raises(InvalidParameterError, match=msg):
        evaluate(U, np.ones((2, 2)), sp.csr_matrix((1, 2)), sp.csr_matrix(np.eye(1, 2)), k=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_scorer_nan_or_positive_infinity_is_refused(bad):
    scores = np.array([[0.0, bad, 1.0], [1.0, 0.0, 2.0]])
    heldout = sp.csr_matrix(np.array([[0, 0, 1], [1, 0, 0]], dtype=float))
    msg = (
        r"The scores of the scorer must be finite or -inf\. Got 1 score\(s\) that are NaN or "
        r"\+inf, the first for user 0, instead\."
    )
    with pytest.raises(InvalidParameterError, match=msg):
        evaluate_scorer(lambda users: scores[users], sp.csr_matrix((2, 3)), heldout, k=2)


@pytest.mark.parametrize(
    ("bad", "neg_inf_ok", "counted"),
    [(np.nan, False, True), (np.inf, False, True), (-np.inf, False, True), (-np.inf, True, False)],
)
def test_rank_block_counts_scores_that_are_not_finite(bad, neg_inf_ok, counted):
    rng = np.random.default_rng(5)
    block, users, train, held, seg, outputs = _kernel_inputs(rng, 8, 10, 3, np.float64, False)
    block[2, :] = bad
    results = []
    for kernel in (_kernels.rank_block, _kernels.rank_block_numpy):
        out = outputs()
        kernel(
            block, users, train.indptr, train.indices, held.indptr, held.indices, held.data,
            3, False, True, seg, out["pos_scores"], out["gains"], out["top_items"],
            out["top_scores"], out["n_rel"], out["n_list"], out["stats"], out["bad_count"],
            neg_inf_ok,
        )  # fmt: skip
        results.append(out)
    np.testing.assert_array_equal(results[0]["n_rel"], results[1]["n_rel"])
    np.testing.assert_array_equal(results[0]["bad_count"], results[1]["bad_count"])
    u = users[2]
    n_candidates = 10 - (train.indptr[u + 1] - train.indptr[u])
    assert results[0]["n_rel"][2] > 0  # the planted user is evaluated, so its scores count
    planted = n_candidates if counted else 0
    assert results[0]["bad_count"].tolist() == [0, 0, planted] + [0] * (users.size - 3)
    if not counted:  # an allowed -inf ranks like any other score (all tied: by index)
        fast, slow = results
        np.testing.assert_array_equal(fast["top_items"][2], slow["top_items"][2])
        np.testing.assert_allclose(fast["stats"][2], slow["stats"][2], equal_nan=True)


@pytest.mark.parametrize("raw_gain", [False, True])
def test_topk_block_matches_numpy_twin(raw_gain):
    rng = np.random.default_rng(11)
    n_users, n_items, k = 40, 15, 6
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float64))
    held = sp.csr_matrix(
        np.where(rng.random((n_users, n_items)) < 0.3, rng.random((n_users, n_items)) + 0.5, 0.0)
    )
    top = np.array([rng.permutation(n_items)[:k] for _ in range(n_users)])
    top[::3, 4:] = -1  # short lists
    users = np.flatnonzero(np.diff(held.indptr)).astype(np.int64)
    seg = _api._segments(np.diff(held.indptr), users)
    results = []
    for kernel in (_kernels.topk_block, _kernels.topk_block_numpy):
        n_rel = np.empty(users.size, dtype=np.int64)
        stats = np.empty((users.size, _kernels.N_STATS))
        kernel(
            top[users], users, k, train.indptr, train.indices, held.indptr, held.indices,
            held.data, raw_gain, seg, np.empty(seg[-1]), n_rel, stats,
        )  # fmt: skip
        results.append((n_rel, stats))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-13, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_squared_errors_matches_numpy_twin(dtype):
    rng = np.random.default_rng(2)
    U = rng.standard_normal((20, 3)).astype(dtype)
    V = rng.standard_normal((12, 3)).astype(dtype)
    held = sp.random(20, 12, density=0.3, format="csr", random_state=3)
    fast, slow = np.empty(20), np.empty(20)
    _kernels.row_squared_errors(U, V, held.indptr, held.indices, held.data, fast)
    _kernels.row_squared_errors_numpy(U, V, held.indptr, held.indices, held.data, slow)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    rows = held.nonzero()[0]
    pred = np.sum(U[rows].astype(np.float64) * V[held.indices], axis=1)
    expected = np.sqrt(np.mean((pred - held.data) ** 2))
    assert rmse(U, V, held) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------
# chunking and threads
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunking_and_threads_give_identical_results(dtype):
    rng = np.random.default_rng(21)
    n_users, n_items = 53, 31
    U = rng.standard_normal((n_users, 4)).astype(dtype)
    V = rng.standard_normal((n_items, 4)).astype(dtype)
    draws = rng.random((n_users, n_items))
    train = sp.csr_matrix((draws < 0.25).astype(np.float32))
    heldout = sp.csr_matrix(np.where((draws > 0.25) & (draws < 0.4), 3.0, 0.0))
    # float factors: a BLAS may round a 1-row product differently from a block's rows, so
    # only near-equality is promised here (the exact case follows)
    reference = evaluate(U, V, train, heldout, k=5, chunk_size=n_users)
    for chunk_size in (1, 7, None):
        result = evaluate(U, V, train, heldout, k=5, chunk_size=chunk_size)
        assert result == pytest.approx(reference, rel=1e-12)
    result = evaluate(U, V, train, heldout, k=5, chunk_size=7, n_jobs=1)
    assert result == pytest.approx(reference, rel=1e-12)
    # integer-valued factors: every score is exact, so even the BLAS blocking cannot matter
    Ui, Vi = np.round(U * 3), np.round(V * 3)
    exact = evaluate(Ui, Vi, train, heldout, k=5, chunk_size=n_users)
    for chunk_size in (1, 7):
        assert evaluate(Ui, Vi, train, heldout, k=5, chunk_size=chunk_size) == exact
    assert evaluate(Ui, Vi, train, heldout, k=5, chunk_size=7, n_jobs=1) == exact
    pop = popularity_baseline(train)
    base = evaluate_scorer(pop, train, heldout, k=5, chunk_size=n_users)
    assert evaluate_scorer(pop, train, heldout, k=5, chunk_size=1) == base


def test_n_jobs_restores_blas_threads():
    from threadpoolctl import threadpool_info

    def blas():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    U, V = identity_factors(HAND_SCORES)
    evaluate(U, V, HAND_TRAIN, HAND_HELDOUT, k=3, n_jobs=1)  # loads every BLAS first
    before = blas()
    evaluate(U, V, HAND_TRAIN, HAND_HELDOUT, k=3, n_jobs=1)
    assert blas() == before


# ---------------------------------------------------------------------------------------
# input handling and errors
# ---------------------------------------------------------------------------------------


def test_non_canonical_inputs_are_summed_and_sorted():
    # duplicate held-out entries are summed; unsorted indices are accepted
    heldout = sp.csr_matrix(
        (np.array([1.0, 2.0, 2.0]), np.array([5, 2, 5]), np.array([0, 3, 3, 3])), shape=(3, 6)
    )
    assert not heldout.has_canonical_format
    U, V = identity_factors(HAND_SCORES)
    result = evaluate(U, V, HAND_TRAIN, heldout, k=3)
    expected = oracle(HAND_SCORES, HAND_TRAIN, sp.csr_matrix(heldout.toarray()), 3)
    assert result["rmse"] == pytest.approx(math.sqrt(((4 - 2) ** 2 + (1 - 3) ** 2) / 2))
    assert_metrics_equal({n: v for n, v in result.items() if n != "rmse"}, expected)


def test_sparse_arrays_and_coo_are_accepted():
    U, V = identity_factors(HAND_SCORES)
    result = evaluate(U, V, sp.coo_array(HAND_TRAIN), sp.csr_array(HAND_HELDOUT), k=3)
    assert result == pytest.approx(HAND_EXPECTED, rel=1e-15)


def raises(match):
    return pytest.raises(InvalidParameterError, match=match)


def _args():
    U, V = identity_factors(HAND_SCORES)
    return U, V, HAND_TRAIN, HAND_HELDOUT


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"k": 0}, r"The 'k' parameter of evaluate must be an int >= 1\. Got 0 instead\."),
        ({"k": 2.5}, r"The 'k' parameter of evaluate must be an int >= 1\. Got 2\.5 instead\."),
        ({"k": True}, r"'k' parameter of evaluate must be an int >= 1\. Got True instead"),
        ({"chunk_size": 0}, r"'chunk_size' parameter of evaluate must be an int >= 1 or None\. "
                            r"Got 0 instead"),
        ({"n_jobs": 0}, r"'n_jobs' parameter of evaluate must be None, -1 or an int >= 1\. "
                        r"Got 0 instead"),
        ({"metrics": ["ndcg@5"]}, r"'metrics' parameter of evaluate must be None or a non-empty "
                                  r"list of names from \['rmse', 'precision@10'.*Got 'ndcg@5'"),
        ({"metrics": []}, r"'metrics' parameter of evaluate must be None or a non-empty list"),
        ({"ndcg_gain": "exp"}, r"'ndcg_gain' parameter of evaluate must be one of \['binary', "
                               r"'raw'\]\. Got 'exp' instead"),
    ],
)  # fmt: skip
def test_parameter_errors(change, match):
    U, V, train, heldout = _args()
    kwargs = {"k": 10, **change}
    with pytest.raises(InvalidParameterError, match=match):
        evaluate(U, V, train, heldout, **kwargs)


def test_argument_errors():
    U, V, train, heldout = _args()
    msg = (
        r"'heldout' argument of evaluate must have "
        r"the shape of 'train' \(3, 6\)\. Got \(3, 5\) instead"
    )
    with raises(msg):
        evaluate(U, V, train, heldout[:, :5], k=3)
    msg = (
        r"'user_factors' argument of evaluate must "
        r"have one row per user \(3\)\. Got 2 rows instead"
    )
    with raises(msg):
        evaluate(U[:2], V, train, heldout, k=3)
    msg = (
        r"'item_factors' argument of evaluate must "
        r"have one row per item \(6\)\. Got 5 rows instead"
    )
    with raises(msg):
        evaluate(U, V[:5], train, heldout, k=3)
    msg = (
        r"'item_factors' argument of evaluate must "
        r"have as many columns as 'user_factors' \(6\)\. Got 5 instead"
    )
    with raises(msg):
        evaluate(U, V[:, :5], train, heldout, k=3)
    bad = U.copy()
    bad[1, 2] = np.nan
    msg = (
        r"'user_factors' argument of evaluate must "
        r"be finite\. Got 1 NaN or infinite value\(s\) instead"
    )
    with raises(msg):
        evaluate(bad, V, train, heldout, k=3)
    msg = (
        r"'user_factors' argument of evaluate must "
        r"be a 2-D array of real numbers\. Got an array of shape \(18,\)"
    )
    with raises(msg):
        evaluate(U.ravel(), V, train, heldout, k=3)
    msg = (
        r"'train' argument of evaluate must be a "
        r"scipy\.sparse matrix \(users × items\)\. Got an array of shape"
    )
    with raises(msg):
        evaluate(U, V, train.toarray(), heldout, k=3)
    nan_held = heldout.copy()
    nan_held.data[0] = np.nan
    msg = (
        r"'heldout' argument of evaluate must have "
        r"finite values\. Got 1 NaN or infinite value\(s\) instead"
    )
    with raises(msg):
        evaluate(U, V, train, nan_held, k=3)
    msg = (
        r"'heldout' argument of evaluate must have "
        r"at least one stored entry\. Got 0 instead"
    )
    with raises(msg):
        evaluate(U, V, train, sp.csr_matrix(heldout.shape), k=3)
    zero_held = heldout.copy()
    zero_held.data[0] = 0.0
    msg = (
        r"'heldout' values must all be > 0 when "
        r"ndcg_gain='raw' in evaluate .*Got a minimum of 0\.0 instead"
    )
    with raises(msg):
        evaluate(U, V, train, zero_held, k=3, ndcg_gain="raw")


def test_rmse_errors():
    U, V, _, heldout = _args()
    msg = (
        r"'heldout' argument of rmse must have at "
        r"least one stored entry\. Got 0 instead"
    )
    with raises(msg):
        rmse(U, V, sp.csr_matrix((3, 6)))
    msg = (
        r"'item_factors' argument of rmse must be "
        r"finite\. Got 6 NaN or infinite value\(s\) instead"
    )
    with raises(msg):
        bad = V.copy()
        bad[0] = np.inf
        rmse(U, bad, heldout)


def test_scorer_errors():
    _, _, train, heldout = _args()
    msg = (
        r"'scorer' of evaluate_scorer must return "
        r"real scores of shape \(3, 6\) for 3 users\. Got an array of shape "
        r"\(3, 5\)"
    )
    with raises(msg):
        evaluate_scorer(lambda users: np.zeros((users.size, 5)), train, heldout, k=2)
    msg = (
        r"'scorer' of evaluate_scorer must be a "
        r"callable or an array of item scores of shape \(6,\)\. Got an array "
        r"of shape \(5,\)"
    )
    with raises(msg):
        evaluate_scorer(np.zeros(5), train, heldout, k=2)
    msg = (
        r"The scores of the scorer must be finite or -inf\. "
        r"Got 6 score\(s\) that are NaN or \+inf, the first for user 0, instead"
    )
    with raises(msg):

        def nan_for_user_0(users):
            return np.where(users[:, None] == 0, np.nan, np.ones((1, 6)))

        evaluate_scorer(nan_for_user_0, sp.csr_matrix((3, 6)), heldout, k=2)
    msg = (
        r"'metrics' parameter of evaluate_scorer must"
        r" be None or a non-empty list of names from \['precision@2'.*"
        r"Got 'rmse' instead"
    )
    with raises(msg):
        evaluate_scorer(np.zeros(6), train, heldout, k=2, metrics=["rmse"])


def test_topk_errors():
    _, _, train, heldout = _args()
    good = np.array([[1, 2, 3], [1, 2, 5], [0, 2, 3]])
    msg = (
        r"'top_items' argument of evaluate_topk must "
        r"be an int array with one row per user \(3\)\. Got an array of shape "
        r"\(2, 3\)"
    )
    with raises(msg):
        evaluate_topk(good[:2], None, heldout)
    msg = (
        r"must hold item indices in \[0, 6\) or -1 as "
        r"padding\. Got values in \[0, 6\] instead"
    )
    with raises(msg):
        evaluate_topk(np.where(good == 5, 6, good), None, heldout)
    msg = (
        r"must pad with -1 only at the end of a row\. "
        r"Got \[1, -1, 3\] in row 0 instead"
    )
    with raises(msg):
        evaluate_topk(np.where(good == 2, -1, good), train, heldout)
    msg = (
        r"must not repeat an item within a row\. "
        r"Got \[1, 2, 2\] in row 1 instead"
    )
    with raises(msg):
        evaluate_topk(np.array([[1, 2, 3], [1, 2, 2], [0, 2, 3]]), train, heldout)
    msg = (
        r"The 'k' parameter of evaluate_topk must be "
        r"<= the width of 'top_items' \(3\)\. Got 4 instead"
    )
    with raises(msg):
        evaluate_topk(good, train, heldout, k=4)
    # k = 1 reads the first column only: 1, 1, 0 → no hit (u0 wants 2, 5; u1 2; u2 4)
    assert evaluate_topk(good, train, heldout, k=1)["precision@1"] == 0.0
    # u2's held-out item 1 is a training item: relevant only when train is None
    lists = np.array([[1, 2, 3], [1, 2, 5], [1, 0, 3]])
    with_train = evaluate_topk(lists, train, heldout, metrics=["recall@3"])
    without_train = evaluate_topk(lists, None, heldout, metrics=["recall@3"])
    assert with_train["recall@3"] == pytest.approx((1 / 2 + 1 + 0) / 3, rel=1e-15)
    assert without_train["recall@3"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3, rel=1e-15)


# ---------------------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------------------


def test_ml100k_popularity_and_random_factors_match_oracle():
    path = DATA / "ml100k.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1, 2))
    users = np.unique(table[:, 0], return_inverse=True)[1]
    items = np.unique(table[:, 1], return_inverse=True)[1]
    shape = (users.max() + 1, items.max() + 1)
    rng = np.random.default_rng(0)
    test = rng.random(users.size) < 0.2
    train = sp.csr_matrix((table[~test, 2], (users[~test], items[~test])), shape=shape)
    heldout = sp.csr_matrix((table[test, 2], (users[test], items[test])), shape=shape)
    k = 10
    pop = popularity_baseline(train)
    result = evaluate_scorer(pop, train, heldout, k)

    # vectorised dense oracle: a stable full argsort of (-score) puts ties in index order
    dense_train = train.toarray() != 0
    relevant = (heldout.toarray() != 0) & ~dense_train
    scores = np.where(dense_train, -np.inf, pop[None, :])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(relevant, order, axis=1)
    n_rel = relevant.sum(axis=1)
    ok = n_rel > 0
    discount = 1 / np.log2(np.arange(2, k + 2))
    ideal = np.array([discount[: min(n, k)].sum() for n in n_rel[ok]])
    ap = (hits * np.cumsum(hits, axis=1) / np.arange(1, k + 1)).sum(axis=1)
    expected = {
        "precision@10": hits[ok].sum(axis=1).mean() / k,
        "recall@10": (hits[ok].sum(axis=1) / n_rel[ok]).mean(),
        "map@10": (ap[ok] / np.minimum(n_rel[ok], k)).mean(),
        "ndcg@10": ((hits[ok] * discount).sum(axis=1) / ideal).mean(),
    }
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-12), name
    assert result["coverage"] == np.unique(order[ok]).size / shape[1]
    # most-popular beats chance by far on MovieLens
    assert 0.05 < result["precision@10"] < 0.5
    assert result["auc"] > 0.8


def test_package_docstring_names_every_convention():
    doc = walsrec.metrics.__doc__
    for phrase in ("min(|R_u|, k)", "ties are broken by item index", "½", "n_items"):
        assert phrase in doc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ndcg_and_auc_match_scikit_learn(seed):
    """Per user over the candidates (training items removed), scikit-learn's ndcg_score with
    binary gains and roc_auc_score, averaged over the evaluated users, equal ours."""
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 40, 60, 10
    u = rng.standard_normal((n_users, 5))
    v = rng.standard_normal((n_items, 5))
    train = sp.random(n_users, n_items, density=0.15, format="csr", random_state=rng)
    heldout = sp.random(n_users, n_items, density=0.1, format="csr", random_state=rng)
    heldout = (heldout - heldout.multiply(train > 0)).tocsr()  # relevant = not in train
    heldout.eliminate_zeros()
    scores = u @ v.T
    ndcgs, aucs = [], []
    for user in range(n_users):
        candidates = np.setdiff1d(np.arange(n_items), train[user].indices)
        relevant = np.isin(candidates, heldout[user].indices).astype(float)
        if relevant.sum() == 0:
            continue
        ndcgs.append(sk.ndcg_score(relevant[None], scores[user, candidates][None], k=k))
        if relevant.sum() < len(candidates):
            aucs.append(sk.roc_auc_score(relevant, scores[user, candidates]))
    ours = evaluate(u, v, train, heldout, k=k, metrics=[f"ndcg@{k}", "auc"])
    assert ours[f"ndcg@{k}"] == pytest.approx(np.mean(ndcgs), rel=1e-9)
    assert ours["auc"] == pytest.approx(np.mean(aucs), rel=1e-9)
