"""The top-k kernels against their NumPy twins and a dense oracle (np.lexsort by score
descending, then index), and the helpers that carry the ranking rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._ranking import lexsort_top
from walsrec.model import topk

# --------------------------------------------------------------------------- oracles


def brute_top(scores, excluded, k, banned=()):
    """Best k by score descending, ties by index ascending, skipping excluded/banned."""
    cand = [j for j in range(scores.shape[0]) if j not in set(excluded) | set(banned)]
    cand.sort(key=lambda j: (-float(scores[j]), j))
    return cand[:k]


# --------------------------------------------------------------------------- kernels


@settings(deadline=None, max_examples=60)
@given(
    n_items=st.integers(1, 40),
    k=st.integers(1, 50),
    seed=st.integers(0, 2**31 - 1),
    ties=st.booleans(),
)
def test_topk_one_matches_its_numpy_twin(n_items, k, seed, ties):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(n_items).astype(np.float32)
    if ties:  # few distinct values: order among ties must be by index
        scores = np.round(scores).astype(np.float32)
    excluded = np.unique(rng.integers(0, n_items, rng.integers(0, n_items + 1))).astype(np.int32)
    banned = rng.random(n_items) < 0.2 if rng.random() < 0.5 else np.zeros(0, dtype=bool)
    width = min(k, n_items)
    got_i, got_s = np.empty(width, np.int64), np.empty(width, np.float32)
    want_i, want_s = np.empty(width, np.int64), np.empty(width, np.float32)
    n = topk.topk_one(scores, excluded, banned, width, got_i, got_s)
    m = topk.topk_one_numpy(scores, excluded, banned, width, want_i, want_s)
    assert n == m
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_s, want_s)
    assert got_i[:n].tolist() == brute_top(scores, excluded, width, np.flatnonzero(banned))


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 12), exclude_seen=st.booleans())
def test_topk_rows_matches_its_numpy_twin(seed, k, exclude_seen):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n_users, n_items = 9, 11
    ui = sp.random(n_users, n_items, density=0.4, format="csr", random_state=seed)
    scores = np.round(rng.standard_normal((5, n_items)) * 2).astype(np.float32)
    users = rng.integers(0, n_users, 5).astype(np.int64)
    indptr = ui.indptr.astype(np.int64)
    indices = ui.indices.astype(np.int32)
    banned = np.zeros(0, dtype=bool)
    width = min(k, n_items)
    outs = [np.empty((5, width), np.int64), np.empty((5, width), np.float32)]
    twin = [np.empty((5, width), np.int64), np.empty((5, width), np.float32)]
    topk.topk_rows(scores, users, indptr, indices, exclude_seen, banned, width, *outs)
    topk.topk_rows_numpy(scores, users, indptr, indices, exclude_seen, banned, width, *twin)
    np.testing.assert_array_equal(outs[0], twin[0])
    np.testing.assert_array_equal(outs[1], twin[1])


@settings(deadline=None, max_examples=60)
@given(
    n_items=st.integers(1, 60),
    k=st.integers(1, 70),
    seed=st.integers(0, 2**31 - 1),
    spread=st.sampled_from([1, 3, 20]),
)
def test_topk_by_norm_matches_scoring_everything(n_items, k, seed, spread):
    # small integer factors: every dot product is exact in float32, and ties are common
    rng = np.random.default_rng(seed)
    v = rng.integers(-spread, spread + 1, (n_items, 4)).astype(np.float32)
    v *= rng.integers(0, 4, (n_items, 1)).astype(np.float32)  # varied norms, some zero
    u = rng.integers(-3, 4, 4).astype(np.float32)
    norms = np.linalg.norm(v, axis=1).astype(np.float32)
    order = np.argsort(-norms, kind="stable").astype(np.int64)
    excluded = np.unique(rng.integers(0, n_items, rng.integers(0, n_items + 1))).astype(np.int32)
    banned = rng.random(n_items) < 0.2 if rng.random() < 0.5 else np.zeros(0, dtype=bool)
    width = min(k, n_items)
    args = (np.ascontiguousarray(v[order]), order, norms[order], u, float(np.linalg.norm(u)))
    got = np.empty(width, np.int64), np.empty(width, np.float32)
    want = np.empty(width, np.int64), np.empty(width, np.float32)
    n = topk.topk_by_norm(*args, excluded, banned, width, *got)
    m = topk.topk_by_norm_numpy(*args, excluded, banned, width, *want)
    assert n == m
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0][:n].tolist() == brute_top(v @ u, excluded, width, np.flatnonzero(banned))


# --------------------------------------------------------------------------- the rules


@settings(deadline=None, max_examples=80)
@given(
    n_items=st.integers(1, 50),
    k=st.integers(1, 60),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    ties=st.booleans(),
    lists=st.sampled_from(["none", "filter", "allow", "both"]),
)
def test_top_k_is_the_dense_oracle(n_items, k, seed, dtype, ties, lists):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(n_items).astype(dtype)
    if ties:  # few distinct values: order among ties must be by index
        scores = np.round(scores).astype(dtype)
    scores[rng.random(n_items) < 0.1] = np.nan  # NaN never ranks
    excluded = np.unique(rng.integers(0, n_items, rng.integers(0, n_items + 1)))
    filter_items = rng.integers(0, n_items, rng.integers(0, n_items + 1))
    items = rng.integers(0, n_items, rng.integers(0, 2 * n_items))
    filter_items = filter_items if lists in ("filter", "both") else None
    items = items if lists in ("allow", "both") else None
    banned = topk.banned_mask(n_items, filter_items, items)
    got_items, got_scores = topk.top_k(scores, excluded, banned, k)
    want = lexsort_top(scores, k, excluded, filter_items, items)
    np.testing.assert_array_equal(got_items, want)
    np.testing.assert_array_equal(got_scores, scores[want])
    assert got_items.dtype == np.int64 and got_scores.dtype == dtype


def test_banned_mask_reads_the_filter_and_the_allow_list():
    assert topk.banned_mask(5).shape == (0,)  # empty: nothing banned, at no cost
    np.testing.assert_array_equal(topk.banned_mask(5, [1, 3]), [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(topk.banned_mask(5, None, [1, 3]), [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(topk.banned_mask(5, [3, 3], [1, 3]), [1, 0, 1, 1, 1])
    np.testing.assert_array_equal(topk.banned_mask(5, [], []), [1, 1, 1, 1, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_similarity_scores_cosine_and_dot(dtype):
    v = np.array([[3.0, 4.0], [6.0, 8.0], [0.0, 0.0], [-4.0, 3.0]], dtype=dtype)
    norms = np.linalg.norm(v, axis=1)
    dot = topk.similarity_scores(v, norms, 0, "dot")
    np.testing.assert_array_equal(dot, [25.0, 50.0, 0.0, 0.0])
    cos = topk.similarity_scores(v, norms, 0, "cosine")
    np.testing.assert_allclose(cos, [1.0, 1.0, 0.0, 0.0], rtol=1e-6)
    assert dot.dtype == dtype and cos.dtype == dtype
    # an all-zero factor has cosine 0 with everything, itself included
    np.testing.assert_array_equal(topk.similarity_scores(v, norms, 2, "cosine"), np.zeros(4))


def test_index_dtype_is_int32_below_two_to_the_31():
    assert topk.index_dtype(10) == np.int32
    assert topk.index_dtype(2**31 - 1) == np.int64
