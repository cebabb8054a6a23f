"""regularization = "auto": λ chosen by validation inside the training data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import InvalidParameterError
from walsrec.metrics import evaluate
from walsrec.model.wals import WALS
from walsrec.training.config import column_weights, wals_params
from walsrec.training.regularization import (
    FALLBACK_REGULARIZATION,
    RegularizationChoice,
    choose_regularization,
    fit_and_score,
)
from walsrec.tuning.study import validation_split

SETTINGS = {"embedding_dim": 8}


def planted(n_users=300, n_items=120, rank=4, per_user=24, seed=0) -> sp.csr_matrix:
    """Users draw items from a rank-`rank` taste model with a popularity skew: a model with
    too little regularization memorises, one with too much ranks by popularity only."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_users, rank))
    v = rng.standard_normal((n_items, rank))
    logits = 2.0 * u @ v.T / math.sqrt(rank) + np.linspace(1.5, -1.5, n_items)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows, cols = [], []
    for user in range(n_users):
        items = rng.choice(n_items, per_user, replace=False, p=p[user])
        rows += [user] * per_user
        cols += list(items)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))


GRID = [1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]


def brute_force(x, grid, sweeps=10, seed=0, k=10):
    """Every λ of the grid fitted and scored on the first split, as the search does."""
    fit, val = validation_split(x, 0.1, seed)
    out = {}
    for lam in grid:
        settings = {**SETTINGS, "regularization": lam}
        model = WALS(
            **wals_params(settings, fit),
            col_weights=column_weights(settings, fit),
            sweeps=sweeps,
            n_jobs=1,
            random_state=seed,
        ).fit(fit)
        out[lam] = evaluate(model.user_factors_, model.item_factors_, fit, val, k=k)[f"ndcg@{k}"]
    return out


@pytest.mark.parametrize("start", [1e-3, 0.01, 0.1])
def test_the_search_finds_the_grids_best_from_any_start(start):
    """The oracle: every λ of the grid fitted; planted data where memorising (tiny λ) and
    shrinking to popularity (large λ) both lose, so the best is inside the grid."""
    x = planted()
    oracle = brute_force(x, GRID)
    want = max(oracle, key=oracle.get)
    assert 0 < GRID.index(want) < len(GRID) - 1
    seen = []
    choice = choose_regularization(
        x,
        SETTINGS,
        grid=GRID,
        start=start,
        min_validated=1,
        n_jobs=1,
        progress=lambda *a: seen.append(a),
    )
    assert choice.value == want and choice.folds == 1
    # the walk may pass the grid's ends (ten more λ in steps of 1.5 each way)
    tried = brute_force(x, list(choice.scores))
    assert choice.scores == {lam: pytest.approx(tried[lam]) for lam in choice.scores}
    assert seen == list(choice.scores.items()) and choice.fits == len(seen)
    # it walks, rather than fitting the whole grid
    assert len(seen) < len(GRID)
    assert next(iter(choice.scores)) == start


def test_the_start_is_the_grids_nearest_on_a_log_scale():
    choice = choose_regularization(
        planted(seed=1), SETTINGS, grid=GRID, start=0.02, min_validated=1, n_jobs=1
    )
    assert next(iter(choice.scores)) == 0.03  # 0.02 is 1.5x from 0.03, 2x from 0.01


def test_a_plateau_ends_a_walk_unless_patience_is_wider():
    """From λ 10 every model ranks by popularity: 3 scores the same, which ends a walk of
    patience 1 (documented); patience 3 walks across it to the best."""
    x = planted()
    oracle = brute_force(x, GRID)
    assert oracle[10.0] == oracle[3.0]
    stuck = choose_regularization(x, SETTINGS, grid=GRID, start=10.0, min_validated=1, n_jobs=1)
    # down to 3 (the same), up to 15 (past the grid's end, the same): both walks end
    assert stuck.value == 10.0 and list(stuck.scores) == [10.0, 3.0, 15.0]
    patient = choose_regularization(
        x, SETTINGS, grid=GRID, start=10.0, patience=3, min_validated=1, n_jobs=1
    )
    assert patient.value == max(oracle, key=oracle.get)


def test_small_data_is_scored_on_more_splits_up_to_three():
    x = planted(n_users=120)
    one = choose_regularization(x, SETTINGS, grid=[0.05], min_validated=1, n_jobs=1)
    three = choose_regularization(x, SETTINGS, grid=[0.05], min_validated=10**6, n_jobs=1)
    assert (one.folds, three.folds) == (1, 3)
    assert 0 < one.validated_users <= 120 and three.validated_users > 2 * one.validated_users
    sampled = choose_regularization(
        x, SETTINGS, grid=[0.05], min_validated=1, max_users=25, n_jobs=1
    )
    assert sampled.validated_users == 25


def test_without_a_user_to_validate_the_fallback_is_chosen():
    x = sp.csr_matrix(np.eye(6, 4))  # one entry per user: none can be held out
    choice = choose_regularization(x, SETTINGS, n_jobs=1)
    assert choice == RegularizationChoice(FALLBACK_REGULARIZATION, metric="ndcg@10")
    assert json.loads(json.dumps(choice.to_dict()))["regularization"] == FALLBACK_REGULARIZATION


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"grid": [0.1, 0.01]},
            r"'grid' parameter of choose_regularization must be a non-empty, strictly "
            r"ascending sequence of finite floats > 0. Got \[0.1, 0.01\]",
        ),
        ({"grid": []}, r"'grid' parameter .* Got \[\]"),
        ({"grid": [0.01, 0.01]}, r"'grid' parameter .* Got \[0.01, 0.01\]"),
        ({"seed": -1}, r"'seed' parameter of choose_regularization must be an int >= 0. Got -1"),
        ({"k": 0}, r"'k' parameter of choose_regularization must be an int >= 1. Got 0"),
        ({"patience": 1.5}, r"'patience' parameter .* an int >= 1. Got 1.5"),
        ({"start": 0}, r"'start' parameter of choose_regularization must be a number > 0. Got 0"),
        ({"sweeps": 0}, r"'sweeps' parameter .* an int >= 1. Got 0"),
        (
            {"validation_fraction": 1.0},
            r"'validation_fraction' parameter of choose_regularization must be a float in "
            r"\(0, 1\). Got 1.0",
        ),
    ],
)
def test_bad_arguments_name_the_parameter_and_value(kw, message):
    with pytest.raises(InvalidParameterError, match=message):
        choose_regularization(planted(n_users=20), SETTINGS, **kw)


def test_to_dict_is_plain_json_with_undefined_scores_as_null():
    choice = RegularizationChoice(0.01, {0.005: math.nan, 0.01: 0.25}, "ndcg@10", 1, 7, 13, 0.5)
    data = json.loads(json.dumps(choice.to_dict(), allow_nan=False))
    assert data["scores"] == [[0.005, None], [0.01, 0.25]]
    assert data["regularization"] == 0.01 and data["folds"] == 1


def test_at_another_nu_the_grid_is_scaled_to_a_typical_users_regularization():
    """λ_i = λ·(count + w0·n)^ν: at ν = 0 the search starts at 0.015 × the geometric mean of
    count + w0·n over users, and lands near the best of a wide brute-force grid."""
    x = planted(seed=3)
    settings = {**SETTINGS, "regularization_exponent": 0.0}
    w0 = wals_params({**settings, "regularization": 1.0}, x)["unobserved_weight"]
    typical = math.exp(np.mean(np.log(np.diff(x.indptr) + w0 * x.shape[1])))
    choice = choose_regularization(x, settings, min_validated=1, n_jobs=1)
    assert next(iter(choice.scores)) == pytest.approx(0.015 * typical, rel=0.25)
    wide = [0.01 * 2.0**j for j in range(16)]  # 0.01 to 328
    fit, val = validation_split(x, 0.1, 0)
    oracle = {}
    for lam in wide:
        s = {**settings, "regularization": lam}
        model = WALS(
            **wals_params(s, fit), col_weights=column_weights(s, fit), sweeps=10, n_jobs=1
        ).fit(fit)
        oracle[lam] = evaluate(model.user_factors_, model.item_factors_, fit, val)["ndcg@10"]
    assert choice.scores[choice.value] >= max(oracle.values()) - 0.01
    # at ν = 1 nothing is scaled
    assert next(iter(choose_regularization(x, SETTINGS, min_validated=1, n_jobs=1).scores)) == (
        FALLBACK_REGULARIZATION
    )


def test_a_walk_that_reaches_the_grids_end_still_improving_goes_on():
    x = planted()
    choice = choose_regularization(
        x, SETTINGS, grid=[1e-3, 3e-3, 0.01], start=0.01, min_validated=1, n_jobs=1
    )
    # the best lies near 0.03 (the oracle test above): past 0.01 by steps of 1.5
    steps = round(math.log(choice.value / 0.01, 1.5))
    assert steps >= 2 and choice.value == pytest.approx(0.01 * 1.5**steps)


def test_a_split_without_held_out_entries_is_skipped_not_the_end():
    # users with two entries: each split holds out about a fifth of them, at random
    x = sp.csr_matrix(np.kron(np.eye(6), np.ones((1, 2))))
    seed = next(
        s
        for s in range(200)
        if validation_split(x, 0.1, s)[1].nnz == 0 and validation_split(x, 0.1, s + 1)[1].nnz
    )
    choice = choose_regularization(
        x, {**SETTINGS, "embedding_dim": 2}, grid=[0.05], seed=seed, n_jobs=1
    )
    assert choice.folds >= 1 and choice.validated_users >= 1


def test_a_split_whose_fit_is_singular_scores_nan_and_the_fallback_is_kept():
    """w0 = 0 and every item seen once: holding an entry out leaves its item empty, which
    nothing regularises; the whole matrix trains (each item has its entry)."""
    x = sp.csr_matrix(np.kron(np.eye(40), np.ones((1, 3))))  # 40 users, 120 items
    settings = {**SETTINGS, "unobserved_weight": 0.0, "embedding_dim": 2}
    choice = choose_regularization(x, settings, n_jobs=1)
    assert choice.folds == 3 and choice.scores
    assert all(math.isnan(v) for v in choice.scores.values())
    assert choice.value == FALLBACK_REGULARIZATION


def wals(sweeps, seed):
    return WALS(embedding_dim=4, regularization=0.05, sweeps=sweeps, n_jobs=1, random_state=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_and_score_is_fit_then_evaluate(seed):
    fit, val = validation_split(planted(seed=seed), 0.1, seed)
    ref = wals(4, seed).fit(fit)
    want = evaluate(ref.user_factors_, ref.item_factors_, fit, val, k=5)["ndcg@5"]
    model = wals(4, seed)
    assert fit_and_score(model, fit, val, metric="ndcg@5", k=5, n_jobs=1) == want
    np.testing.assert_array_equal(model.user_factors_, ref.user_factors_)  # fitted in place
    assert model.callback is None  # restored


def test_fit_and_score_scores_every_sweeps_and_after_the_last_and_may_be_stopped():
    fit, val = validation_split(planted(), 0.1, 0)
    seen = []
    value = fit_and_score(
        wals(5, 0), fit, val, metric="ndcg@10", k=10, every=2, on_score=lambda *a: seen.append(a)
    )
    assert [sweep for sweep, _ in seen] == [2, 4, 5] and seen[-1][1] == value

    class Stop(Exception):
        pass

    def stop(sweep, value):
        raise Stop(sweep)

    model = wals(5, 0)
    with pytest.raises(Stop):
        fit_and_score(model, fit, val, metric="ndcg@10", k=10, every=2, on_score=stop)
    assert model.n_iter_ == 2 and model.callback is None
    # no validation user qualifies (every held-out item is a fitted one): NaN, not an error
    assert math.isnan(fit_and_score(wals(1, 0), fit, fit, metric="ndcg@10", k=10))
