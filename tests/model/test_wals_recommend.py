"""WALS.recommend and WALS.similar_items against the dense oracle (np.lexsort by score
descending, then index) in float32 and float64, with filter and allow lists, and their
errors. (The same lists as the Recommender's: tests/serving/test_one_api.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._ranking import lexsort_top
from walsrec.errors import InvalidParameterError
from walsrec.model.wals import WALS

N_USERS, N_ITEMS, DIM = 12, 25, 3


def _model(seed: int, dtype: str, exact: bool) -> tuple[WALS, sp.csr_matrix]:
    """Factors set by hand; ``exact``: small integers (every score exact, ties common)."""
    rng = np.random.default_rng(seed)
    x = sp.random(N_USERS, N_ITEMS, density=0.3, format="csr", random_state=seed)
    model = WALS(embedding_dim=DIM, dtype=dtype)
    if exact:
        model.user_factors_ = rng.integers(-3, 4, (N_USERS, DIM)).astype(dtype)
        model.item_factors_ = rng.integers(-2, 3, (N_ITEMS, DIM)).astype(dtype)
    else:
        model.user_factors_ = rng.standard_normal((N_USERS, DIM)).astype(dtype)
        model.item_factors_ = rng.standard_normal((N_ITEMS, DIM)).astype(dtype)
    model.item_factors_[rng.random(N_ITEMS) < 0.2] = 0.0  # all-zero factors: score 0
    return model, x


def _lists(rng, which: str):
    filter_items = rng.integers(0, N_ITEMS, rng.integers(0, N_ITEMS))
    items = rng.integers(0, N_ITEMS, rng.integers(0, 2 * N_ITEMS))
    return (
        filter_items if which in ("filter", "both") else None,
        items if which in ("allow", "both") else None,
    )


# what both oracle tests draw: a model (seed, dtype, exact or CG factors), k, and the lists
_CASES = dict(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from(["float32", "float64"]),
    exact=st.booleans(),
    k=st.integers(1, 30),
    which=st.sampled_from(["none", "filter", "allow", "both"]),
)


@settings(deadline=None, max_examples=40)
@given(**_CASES, exclude_seen=st.booleans())
def test_recommend_is_the_dense_oracle(seed, dtype, exact, k, exclude_seen, which):
    model, x = _model(seed, dtype, exact)
    filter_items, items = _lists(np.random.default_rng(seed + 1), which)
    for user in range(N_USERS):
        got, scores = model.recommend(
            user, x, k, exclude_seen=exclude_seen, filter_items=filter_items, items=items
        )
        all_scores = model.item_factors_ @ model.user_factors_[user]
        seen = x[user].indices if exclude_seen else ()
        want = lexsort_top(all_scores, k, seen, filter_items, items)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(scores, all_scores[want])
        assert got.dtype == np.int64 and scores.dtype == dtype


@settings(deadline=None, max_examples=40)
@given(**_CASES, metric=st.sampled_from(["cosine", "dot"]))
def test_similar_items_is_the_dense_oracle(seed, dtype, exact, k, metric, which):
    model, _ = _model(seed, dtype, exact)
    filter_items, items = _lists(np.random.default_rng(seed + 1), which)
    v = model.item_factors_
    norms = np.linalg.norm(v, axis=1)
    safe = np.where(norms > 0, norms, 1.0).astype(dtype)
    for item in range(N_ITEMS):
        sims = v @ v[item]
        if metric == "cosine":
            sims = sims / (safe * safe[item])
        got, scores = model.similar_items(
            item, k, metric=metric, filter_items=filter_items, items=items
        )
        want = lexsort_top(sims, k, [item], filter_items, items)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(scores, sims[want])


def test_the_positional_call_and_a_single_row_still_work():
    model, x = _model(3, "float32", True)
    for user in (0, 5):
        want = model.recommend(user, x, k=4, exclude_seen=False)
        np.testing.assert_array_equal(model.recommend(user, x, 4, False)[0], want[0])
        np.testing.assert_array_equal(model.recommend(user, None, 4, False)[0], want[0])
        # the user's row alone, in another format and with unsorted indices
        row = x[user].tocoo()
        order = np.argsort(-row.col, kind="stable")
        shuffled = sp.csr_matrix((row.data[order], (row.row[order], row.col[order])), (1, N_ITEMS))
        np.testing.assert_array_equal(
            model.recommend(user, shuffled, k=4)[0], model.recommend(user, x, k=4)[0]
        )
        np.testing.assert_array_equal(
            model.recommend(user, x.tocsc(), k=4)[0], model.recommend(user, x, k=4)[0]
        )


def test_recommend_and_similar_items_name_the_bad_argument():
    model, x = _model(4, "float32", False)
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'filter_items' argument of WALS\.recommend must hold indices in "
        r"\[0, 25\)\. Got 25 instead\.",
    ):
        model.recommend(0, x, filter_items=[1, 25])
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'items' argument of WALS\.recommend must hold indices in \[0, 25\)\. "
        r"Got -1 instead\.",
    ):
        model.recommend(0, x, items=[-1, 3])
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'items' argument of WALS\.similar_items must be None or a 1-D array of "
        r"int indices\. Got \['i3'\] instead\.",
    ):
        model.similar_items(0, items=["i3"])
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'filter_items' argument of WALS\.similar_items must be None or a 1-D "
        r"array of int indices\. Got \[0\.5\] instead\.",
    ):
        model.similar_items(0, filter_items=[0.5])
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'metric' argument of WALS\.similar_items must be one of "
        r"\['cosine', 'dot'\]\. Got 'l2' instead\.",
    ):
        model.similar_items(0, metric="l2")
    with pytest.raises(
        TypeError,
        match=r"The 'user_items' argument of WALS\.recommend must be a scipy\.sparse matrix\. "
        r"Got NoneType instead\.",
    ):
        model.recommend(0, None)
    with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'N'"):
        model.recommend(0, x, N=3)
