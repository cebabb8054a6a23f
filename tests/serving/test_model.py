"""load_model, recommend, batch recommend, fold-in and similar items, held to brute force
(the top-k kernels themselves: tests/model/test_topk.py)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from walsrec.errors import DataFormatError, InvalidParameterError, UnknownIdError
from walsrec.model.weighting import confidence_values, weighting_stats
from walsrec.serving.model import load_model

from .conftest import make_export

# --------------------------------------------------------------------------- oracles


def brute_top(scores, excluded, k, banned=()):
    """Best k by score descending, ties by index ascending, skipping excluded/banned."""
    cand = [j for j in range(scores.shape[0]) if j not in set(excluded) | set(banned)]
    cand.sort(key=lambda j: (-float(scores[j]), j))
    return cand[:k]


def export_arrays(export_path):
    u = np.load(export_path / "user_factors.npy")
    v = np.load(export_path / "item_factors.npy")
    users = (export_path / "vocab" / "users.txt").read_text().splitlines()
    items = (export_path / "vocab" / "items.txt").read_text().splitlines()
    from walsrec.data.native import load_csr

    ui = load_csr(export_path / "train", "user_items", mmap=False)
    return u, v, users, items, ui


# --------------------------------------------------------------------------- loading


def test_load_model_from_model_dir_takes_the_newest_export(tmp_path):
    make_export(tmp_path, seed=1)
    newest = make_export(tmp_path, seed=2)
    m = load_model(tmp_path)
    assert m.path == newest
    assert m.version == int(newest.name)
    assert m.user_factors.dtype == np.float32 and m.user_factors.flags.c_contiguous
    assert m.describe()["counts"]["n_items"] == 30


def test_truncated_factors_name_the_file(tmp_path):
    path = make_export(tmp_path)
    f = path / "user_factors.npy"
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(
        DataFormatError,
        match=r"user_factors\.npy: not a readable \.npy array \(the header describes 640 "
        r"bytes of data \(float32, shape \(40, 4\)\) but the file holds 600",
    ):
        load_model(path)


def test_missing_vocabulary_names_the_file(tmp_path):
    path = make_export(tmp_path)
    (path / "vocab" / "items.txt").unlink()
    with pytest.raises(DataFormatError, match=r"items\.txt: missing"):
        load_model(path)


def test_inconsistent_shapes_and_format_version_are_errors(tmp_path):
    path = make_export(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["counts"]["n_users"] = 41
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"user_factors\.npy: shape \(40, 4\) does not match"):
        load_model(path)
    meta["format_version"] = 99
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="format_version 99 is not supported"):
        load_model(path)


def test_not_an_export_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match="neither an export"):
        load_model(tmp_path)


# --------------------------------------------------------------------------- recommend


def test_recommend_equals_brute_force_top_k(model, trained_export):
    u, v, users, items, ui = export_arrays(trained_export)
    for user in [0, 1, 17, len(users) - 1]:
        scores = v @ u[user]
        want = brute_top(scores, ui[user].indices, 10)
        got = model.recommend(users[user], k=10)
        assert got.items == [items[j] for j in want]
        np.testing.assert_allclose(got.scores, scores[want], rtol=1e-5, atol=1e-6)
        assert not set(got.indices) & set(ui[user].indices)
        incl = model.recommend(users[user], k=10, exclude_seen=False)
        assert incl.indices.tolist() == brute_top(scores, [], 10)


def test_k_larger_than_the_catalog_returns_every_candidate_ranked(model, trained_export):
    u, v, users, items, ui = export_arrays(trained_export)
    got = model.recommend(users[5], k=10_000)
    assert len(got) == len(items) - ui[5].nnz
    assert got.indices.tolist() == brute_top(v @ u[5], ui[5].indices, 10_000)


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "10"])
def test_bad_k_is_an_error(model, k):
    msg = f"The 'k' parameter of recommend must be an int >= 1. Got {k!r} instead."
    with pytest.raises(InvalidParameterError, match=msg.replace("(", r"\(").replace(".", r"\.")):
        model.recommend(model.users.id(0), k=k)


def test_unknown_user_raises_or_falls_back_to_popular(model, trained_export):
    _, _, _, items, ui = export_arrays(trained_export)
    with pytest.raises(UnknownIdError, match="Unknown user id 'nobody'"):
        model.recommend("nobody")
    got = model.recommend("nobody", k=5, fallback="popular")
    counts = np.bincount(ui.indices, minlength=len(items))
    want = sorted(range(len(items)), key=lambda j: (-counts[j], j))[:5]
    assert got.fallback and got.items == [items[j] for j in want]
    assert got.scores.tolist() == [float(counts[j]) for j in want]
    with pytest.raises(InvalidParameterError, match="The 'fallback' parameter of recommend"):
        model.recommend("nobody", fallback="random")


def test_filter_items_are_never_recommended(model):
    user = model.users.id(2)
    first = model.recommend(user, k=5)
    got = model.recommend(user, k=5, filter_items=[first.items[0], first.items[2], "not-an-item"])
    assert first.items[0] not in got.items and first.items[2] not in got.items
    assert got.items[:3] == [first.items[1], first.items[3], first.items[4]]
    with pytest.raises(InvalidParameterError, match="not a single string"):
        model.recommend(user, filter_items="a001")


def test_an_allow_list_restricts_every_query_to_its_items(model, trained_export):
    u, v, users, items, ui = export_arrays(trained_export)
    allowed = [0, 3, 7, 42, 99, 100, 101, 150]
    ids = [items[j] for j in allowed] + ["not-an-item"]  # unknown ids are ignored
    user = 2
    got = model.recommend(users[user], k=5, items=ids, filter_items=[items[42]])
    want = brute_top(v @ u[user], [*ui[user].indices, 42], 5, set(range(len(items))) - set(allowed))
    assert got.indices.tolist() == want
    many, _ = model.recommend_many([users[user]], k=5, items=ids, filter_items=[items[42]])
    assert many[0][: len(want)].tolist() == want
    # the popular fallback keeps to the allow list as well
    counts = np.bincount(ui.indices, minlength=len(items))
    fallback = model.recommend("nobody", k=3, items=ids, fallback="popular")
    assert fallback.fallback
    assert fallback.indices.tolist() == sorted(allowed, key=lambda j: (-counts[j], j))[:3]
    new_user = model.recommend_for_interactions([(items[3], 1.0)], k=4, items=ids)
    assert set(new_user.indices.tolist()) <= set(allowed) - {3} and len(new_user) == 4
    similar = model.similar_items(items[3], k=20, items=ids)
    assert sorted(similar.indices.tolist()) == sorted(set(allowed) - {3})
    assert model.recommend(users[user], k=5, items=[]).items == []
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'items' parameter of similar_items must be an iterable of item ids, not a "
        r"single string\. Got 'i3' instead\.",
    ):
        model.similar_items(items[0], items="i3")


@pytest.mark.parametrize("method", ["auto", "norm", "gemm"])
def test_batch_equals_one_by_one(model, method):
    ids = [model.users.id(i) for i in (4, 0, 9, 4)]
    items, scores = model.recommend_many(ids, k=7, n_jobs=2)
    assert items.shape == (4, 7)
    users = np.array([model.users.index(u) for u in ids] * 20)
    by_method, by_method_scores = model.recommend_indices(
        users, k=7, n_jobs=2, chunk_size=9, method=method
    )
    for row, uid in enumerate(ids):
        one = model.recommend(uid, k=7)
        assert items[row].tolist() == one.indices.tolist()
        np.testing.assert_allclose(scores[row], one.scores, rtol=1e-5, atol=1e-6)
        for r in range(row, users.size, 4):
            assert by_method[r].tolist() == one.indices.tolist()
            np.testing.assert_allclose(by_method_scores[r], one.scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(UnknownIdError, match="Unknown user id 'zz'"):
        model.recommend_many(["zz"])
    with pytest.raises(InvalidParameterError, match="The 'method' parameter of recommend_indices"):
        model.recommend_indices(users, method="fast")


def test_norm_order_rows_equal_full_scoring_on_exact_factors(tmp_path):
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    n_users, n_items = 30, 25
    u = rng.integers(-3, 4, (n_users, 3)).astype(np.float32)
    v = rng.integers(-3, 4, (n_items, 3)).astype(np.float32) * rng.integers(0, 3, (n_items, 1))
    ui = sp.random(n_users, n_items, density=0.3, format="csr", random_state=5)
    from walsrec.data.vocabulary import Vocabulary
    from walsrec.serving.export import write_export

    path = write_export(
        tmp_path,
        user_factors=u,
        item_factors=v.astype(np.float32),
        users=Vocabulary([f"u{i}" for i in range(n_users)], "users"),
        items=Vocabulary([f"i{i}" for i in range(n_items)], "items"),
        user_items=ui,
        hyperparameters={"embedding_dim": 3},
    )
    m = load_model(path)
    for exclude in (True, False):
        a = m.recommend_indices(np.arange(n_users), k=6, exclude_seen=exclude, method="norm")
        b = m.recommend_indices(np.arange(n_users), k=6, exclude_seen=exclude, method="gemm")
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_batch_in_small_chunks_pads_short_lists(tmp_path):
    m = load_model(make_export(tmp_path, n_items=6, density=0.5))
    items, scores = m.recommend_indices(np.arange(40), k=6, chunk_size=7)
    for user in range(40):
        n_seen = m.user_items[user].nnz
        assert (items[user] >= 0).sum() == 6 - n_seen
        assert np.isneginf(scores[user][items[user] < 0]).all()


# --------------------------------------------------------------------------- fold-in


def fold_in_oracle(v, row_items, row_values, w0, lam, col_w, row_w=1.0, nu=0.0, conf=None):
    """Dense normal equations of one WALS row, solved in float64 (``conf``: each entry's
    confidence c(r), 1 by default)."""
    v = v.astype(np.float64)
    k = v.shape[1]
    n_items = v.shape[0]
    lam_i = lam * (len(row_items) + w0 * n_items) ** nu
    a = w0 * v.T @ v + lam_i * np.eye(k)
    b = np.zeros(k)
    conf = np.ones(len(row_items)) if conf is None else conf
    for j, x, c in zip(row_items, row_values, conf, strict=True):
        w = w0 + row_w * col_w[j] * c
        a += (w - w0) * np.outer(v[j], v[j])
        b += w * x * v[j]
    return np.linalg.solve(a, b)


def test_fold_in_is_the_exact_row_solve(model):
    items = [model.items.id(j) for j in (3, 10, 42, 100)]
    values = [1.0, 0.5, 2.0, 0.25]
    factor, ignored = model.fold_in([*zip(items, values, strict=True), ("unknown-item", 1.0)])
    assert ignored == ["unknown-item"]
    hyper = model.meta["hyperparameters"]  # train's defaults: binary targets, BM25, "auto"s
    assert hyper["targets"] == "binary" and hyper["confidence"] == "bm25"
    assert isinstance(hyper["unobserved_weight"], float) and isinstance(hyper["alpha"], float)
    # BM25 of the new user's entries: its own value sum, the training matrix's item counts
    conf = confidence_values(
        np.array(values),
        np.zeros(4, dtype=np.int64),
        np.array([3, 10, 42, 100]),
        **{name: hyper[name] for name in ("confidence", "alpha", "epsilon", "bm25_k1", "bm25_b")},
        stats=weighting_stats(model.user_items),
        user_sums=np.array([sum(values)]),
    )
    want = fold_in_oracle(
        model.item_factors,
        [3, 10, 42, 100],
        [1.0] * 4,
        hyper["unobserved_weight"],
        hyper["regularization"],
        np.ones(model.n_items),
        nu=hyper["regularization_exponent"],
        conf=conf,
    )
    np.testing.assert_allclose(factor, want, rtol=1e-4, atol=1e-5)


def test_fold_in_uses_count_based_column_weights_and_scaled_regularization(tmp_path):
    hyper = {
        "embedding_dim": 4,
        "unobserved_weight": 0.3,
        "regularization": 0.05,
        "regularization_exponent": 1.0,
        "row_weights": 2.0,
        "col_weights_from_counts": "linear",
        "col_weight_factor": 3.0,
        "col_weight_exponent": 1.0,
    }
    m = load_model(make_export(tmp_path, hyper=hyper))
    counts = np.bincount(m.user_items.indices, minlength=m.n_items).astype(float)
    col_w = np.divide(3.0, counts, out=np.zeros_like(counts), where=counts > 0)
    # repeated items add up
    factor, _ = m.fold_in([("i1", 1.0), ("i7", 0.5), ("i1", 1.0)])
    want = fold_in_oracle(m.item_factors, [1, 7], [2.0, 0.5], 0.3, 0.05, col_w, 2.0, 1.0)
    np.testing.assert_allclose(factor, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("confidence", ["linear", "bm25", "tfidf"])
def test_fold_in_weighs_entries_as_training_did(tmp_path, confidence):
    """The export's confidence and targets rebuild the training weights; BM25/TF-IDF read
    the exported training matrix's statistics and the new user's own value sum."""
    from walsrec.model import weighting
    from walsrec.model.wals import WALS

    hyper = {
        "embedding_dim": 4,
        "unobserved_weight": 0.2,
        "regularization": 0.05,
        "confidence": confidence,
        "alpha": 3.0,
        "bm25_k1": 1.2,
        "bm25_b": 0.75,
        "targets": "binary",
    }
    m = load_model(make_export(tmp_path, hyper=hyper))
    factor, _ = m.fold_in([("i1", 2.0), ("i7", 0.5), ("i12", 1.0)])
    params = {k: v for k, v in hyper.items() if k != "embedding_dim"}
    oracle = WALS(4, **params, dtype="float64")
    oracle.user_factors_ = m.user_factors.astype(np.float64)
    oracle.item_factors_ = m.item_factors.astype(np.float64)
    oracle.weighting_stats_ = weighting.weighting_stats(m.user_items)
    row = np.zeros((1, m.n_items))
    row[0, [1, 7, 12]] = [2.0, 0.5, 1.0]
    import scipy.sparse as sp

    want = oracle.project_rows(sp.csr_matrix(row))[0]
    np.testing.assert_allclose(factor, want, rtol=1e-4, atol=1e-5)
    # and differs from the unweighted fold-in, so the test can fail
    plain = WALS(4, unobserved_weight=0.2, regularization=0.05, dtype="float64")
    plain.user_factors_, plain.item_factors_ = oracle.user_factors_, oracle.item_factors_
    assert not np.allclose(plain.project_rows(sp.csr_matrix(row))[0], want, atol=1e-3)


def test_recommend_for_interactions_excludes_given_items_and_reports_unknown(model):
    given = [(model.items.id(j), 1.0) for j in (1, 2, 3)] + [("x-1", 1.0), ("x-2", 3.0)]
    got = model.recommend_for_interactions(given, k=10)
    assert got.ignored == ["x-1", "x-2"]
    factor, _ = model.fold_in(given)
    scores = model.item_factors @ factor
    assert got.indices.tolist() == brute_top(scores, [1, 2, 3], 10)
    kept = model.recommend_for_interactions(iter(given), k=10, exclude_seen=False)
    assert kept.indices.tolist() == brute_top(scores, [], 10)


@pytest.mark.parametrize(
    ("interactions", "got"),
    [
        ([("x", 1.0)], "only unknown items ('x')"),
        ([("x", 1.0), (7, 2.0), ("x", 0.5)], "only unknown items ('x', '7')"),
        (
            [(f"x{i}", 1.0) for i in range(8)],
            "only unknown items ('x0', 'x1', 'x2', 'x3', 'x4' and 3 more)",
        ),
        ([], "no interactions"),
    ],
)
def test_fold_in_with_nothing_known_is_an_error_naming_the_items(model, interactions, got):
    # Regression: the all-zero factor of an empty row scored every item 0, and the answer
    # was the first items by index
    msg = (
        "The 'interactions' parameter of recommend_for_interactions must name at least one "
        f"item the model knows. Got {got} instead."
    )
    with pytest.raises(InvalidParameterError, match=re.escape(msg)):
        model.recommend_for_interactions(interactions, k=3)
    with pytest.raises(InvalidParameterError, match=re.escape(msg)):
        model.recommend_for_interactions(iter(interactions), k=3, exclude_seen=False)


def test_fold_in_with_nothing_known_falls_back_to_popular_when_asked(model, trained_export):
    _, _, _, items, ui = export_arrays(trained_export)
    counts = np.bincount(ui.indices, minlength=len(items))
    order = sorted(range(len(items)), key=lambda j: (-counts[j], j))
    for interactions in ([("x", 1.0), ("y", 2.0)], []):
        got = model.recommend_for_interactions(interactions, k=5, fallback="popular")
        assert got.fallback and got.items == [items[j] for j in order[:5]]
        assert got.scores.tolist() == [float(counts[j]) for j in order[:5]]
        assert got.ignored == [i for i, _ in interactions]
    # the allow list and the filter apply, as for an unknown user
    allowed = order[3:9]
    got = model.recommend_for_interactions(
        [("x", 1.0)],
        k=2,
        items=[items[j] for j in allowed],
        filter_items=[items[allowed[0]]],
        fallback="popular",
    )
    assert got.fallback and got.indices.tolist() == allowed[1:3]
    # one known item is enough for a fold-in
    folded = model.recommend_for_interactions(
        [(items[4], 1.0), ("x", 1.0)], k=5, fallback="popular"
    )
    assert not folded.fallback and folded.ignored == ["x"]
    assert folded.items == model.recommend_for_interactions([(items[4], 1.0)], k=5).items
    match = "The 'fallback' parameter of recommend_for_interactions"
    with pytest.raises(InvalidParameterError, match=match):
        model.recommend_for_interactions([("x", 1.0)], fallback="random")


def test_fold_in_rejects_bad_values(model):
    with pytest.raises(InvalidParameterError, match=r"must have finite values\. Got nan"):
        model.recommend_for_interactions([(model.items.id(0), float("nan"))])
    with pytest.raises(InvalidParameterError, match=r"pairs with numeric values. Got \('a', 'b'"):
        model.recommend_for_interactions([("a", "b")])


# --------------------------------------------------------------------------- similar items


def test_similar_items_cosine_and_dot(model, trained_export):
    _, v, _, items, _ = export_arrays(trained_export)
    v64 = v.astype(np.float64)
    norms = np.linalg.norm(v64, axis=1)
    for item in (0, 7, 200):
        cos = v64 @ v64[item] / (norms * norms[item])
        got = model.similar_items(items[item], k=8)
        assert item not in got.indices
        assert got.indices.tolist() == brute_top(cos, [item], 8)
        np.testing.assert_allclose(got.scores, cos[got.indices], rtol=1e-5, atol=1e-6)
        dot = model.similar_items(items[item], k=8, metric="dot")
        assert dot.indices.tolist() == brute_top(v64 @ v64[item], [item], 8)
    with pytest.raises(InvalidParameterError, match=r"'metric' parameter of similar_items"):
        model.similar_items(items[0], metric="euclid")
    with pytest.raises(UnknownIdError, match="Unknown item id 'nope'"):
        model.similar_items("nope")


def test_zero_item_factor_has_cosine_zero(tmp_path):
    path = make_export(tmp_path)
    v = np.load(path / "item_factors.npy")
    v[5] = 0
    np.save(path / "item_factors.npy", v)
    m = load_model(path)
    got = m.similar_items("i5", k=29)
    assert np.all(got.scores == 0) and len(got) == 29
    other = m.similar_items("i4", k=29)
    assert other.scores[other.items.index("i5")] == 0


def test_to_list_is_json_ready(model):
    got = model.recommend(model.users.id(0), k=2).to_list()
    assert json.loads(json.dumps(got)) == got
    assert set(got[0]) == {"item", "score"}


def test_a_copied_export_loads_the_same(model, trained_export, tmp_path):
    shutil.copytree(trained_export, tmp_path / "123")
    other = load_model(tmp_path)
    uid = model.users.id(3)
    assert other.recommend(uid).items == model.recommend(uid).items


def test_concurrent_queries_from_threads_equal_sequential_answers(model):
    from concurrent.futures import ThreadPoolExecutor

    users = [model.users.id(i) for i in range(0, 599, 7)]
    items = [model.items.id(i) for i in range(0, 250, 5)]

    def work(i):
        u, it = users[i % len(users)], items[i % len(items)]
        return (
            model.recommend(u, k=5).items,
            model.recommend_for_interactions([(it, 1.0), (items[0], 0.5)], k=5).items,
            model.similar_items(it, k=5).items,
            model.recommend_indices(np.array([i % 599, 3]), k=5, n_jobs=2)[0].tolist(),
        )

    want = [work(i) for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(work, range(64)))
    assert got == want


def test_recommend_indices_checks_its_mask_and_indices(model):
    with pytest.raises(
        InvalidParameterError,
        match=r"'banned' parameter of recommend_indices "
        rf"must be a bool mask of shape \({model.n_items},\).*Got shape \(2,\)",
    ):
        model.recommend_indices(np.arange(3), k=5, banned=np.zeros(2, dtype=bool))
    with pytest.raises(
        InvalidParameterError,
        match=r"'user_indices' parameter of "
        r"recommend_indices must hold integers. Got dtype float64 instead",
    ):
        model.recommend_indices(np.array([0.0, 1.7]), k=5)


def test_banned_items_equal_brute_force_without_them(model, trained_export):
    u, v, _, _, ui = export_arrays(trained_export)
    banned = np.random.default_rng(3).random(v.shape[0]) < 0.3
    for method in ("norm", "gemm"):
        items, _ = model.recommend_indices(np.arange(40), k=10, banned=banned, method=method)
        for user in range(40):
            excluded = np.union1d(ui[user].indices, np.flatnonzero(banned))
            assert items[user].tolist() == brute_top(v @ u[user], excluded, 10)


def test_write_export_keep_must_be_positive(tmp_path):
    from walsrec.serving.export import write_export

    with pytest.raises(
        InvalidParameterError,
        match=r"'keep' parameter of write_export must be "
        r"None or an int >= 1. Got 0 instead",
    ):
        write_export(
            tmp_path,
            user_factors=None,
            item_factors=None,
            users=None,
            items=None,
            user_items=None,
            hyperparameters={},
            keep=0,
        )
