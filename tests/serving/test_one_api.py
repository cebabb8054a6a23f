"""One recommend API: WALS and a Recommender loaded from an export of the same factors
take the same keyword arguments and give the same lists for them (exclude_seen, filter and
allow lists, cosine and dot), planted ties included, both equal to the dense oracle."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from tests._ranking import lexsort_top
from walsrec.data.vocabulary import Vocabulary
from walsrec.model.wals import WALS
from walsrec.serving.export import write_export
from walsrec.serving.model import Recommender, load_model

N_USERS, N_ITEMS, DIM = 30, 40, 3
# (filter_items, items) as indices
LISTS = [
    (None, None),
    ([3, 11, 25, 39], None),
    (None, [0, 3, 5, 10, 11, 12, 20, 21, 30, 31]),
    ([11, 21], [3, 10, 11, 12, 13, 20, 21, 22, 35]),
    ([], []),
]


@pytest.fixture(scope="module")
def factors_and_export(tmp_path_factory):
    """Small integer factors, so every u·v is exact in float32 and both sides compute the
    same scores; planted ties: items 10-14 copy item 3, items 20-22 are all zero (score 0,
    cosine 0), and item 30 is twice item 31 (the same cosine, up to rounding)."""
    rng = np.random.default_rng(7)
    u = rng.integers(-3, 4, (N_USERS, DIM)).astype(np.float32)
    v = rng.integers(-2, 3, (N_ITEMS, DIM)).astype(np.float32)
    v[10:15] = v[3]
    v[20:23] = 0.0
    v[30] = 2 * v[31]
    ui = sp.random(N_USERS, N_ITEMS, density=0.2, format="csr", random_state=7)
    path = write_export(
        tmp_path_factory.mktemp("one_api"),
        user_factors=u,
        item_factors=v,
        users=Vocabulary([f"u{i}" for i in range(N_USERS)], "users"),
        items=Vocabulary([f"i{i}" for i in range(N_ITEMS)], "items"),
        user_items=ui,
        hyperparameters={"embedding_dim": DIM},
    )
    return u, v, ui, load_model(path)


def _wals(u, v, dtype):
    model = WALS(embedding_dim=DIM, dtype=dtype)
    model.user_factors_, model.item_factors_ = u.astype(dtype), v.astype(dtype)
    return model


def _ids(indices):
    return None if indices is None else [f"i{j}" for j in indices]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_recommend_gives_the_same_lists(factors_and_export, dtype):
    u, v, ui, rec = factors_and_export
    model = _wals(u, v, dtype)
    cases = itertools.product(range(N_USERS), [1, 4, 40], [True, False], LISTS)
    for user, k, exclude_seen, (filter_items, items) in cases:
        got, scores = model.recommend(
            user, ui, k, exclude_seen=exclude_seen, filter_items=filter_items, items=items
        )
        r = rec.recommend(
            f"u{user}",
            k,
            exclude_seen=exclude_seen,
            filter_items=_ids(filter_items),
            items=_ids(items),
        )
        seen = ui[user].indices if exclude_seen else ()
        want = lexsort_top(v @ u[user], k, seen, filter_items, items)
        assert got.tolist() == r.indices.tolist() == want.tolist()
        assert r.items == _ids(want)
        np.testing.assert_array_equal(scores, r.scores)


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_similar_items_gives_the_same_lists(factors_and_export, metric):
    u, v, _, rec = factors_and_export
    model = _wals(u, v, "float32")  # cosine rounds in the factors' dtype: the export's
    norms = np.linalg.norm(v, axis=1)
    safe = np.where(norms > 0, norms, np.float32(1.0))
    cases = itertools.product(range(N_ITEMS), [1, 6, 40], LISTS)
    for item, k, (filter_items, items) in cases:
        got, scores = model.similar_items(
            item, k, metric=metric, filter_items=filter_items, items=items
        )
        r = rec.similar_items(
            f"i{item}", k, metric=metric, filter_items=_ids(filter_items), items=_ids(items)
        )
        sims = v @ v[item]
        if metric == "cosine":
            sims = sims / (safe * safe[item])
        want = lexsort_top(sims, k, [item], filter_items, items)
        assert got.tolist() == r.indices.tolist() == want.tolist()
        np.testing.assert_array_equal(scores, r.scores)


def test_float64_dot_similarities_equal_the_exports(factors_and_export):
    u, v, _, rec = factors_and_export
    model = _wals(u, v, "float64")
    for item in range(N_ITEMS):
        got, scores = model.similar_items(item, 40, metric="dot")
        r = rec.similar_items(f"i{item}", 40, metric="dot")
        assert got.tolist() == r.indices.tolist()
        np.testing.assert_array_equal(scores, r.scores)


def _keywords(method) -> dict:
    params = inspect.signature(method).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize(
    ("method", "shared"),
    [
        ("recommend", ["k", "exclude_seen", "filter_items", "items"]),
        ("similar_items", ["k", "metric", "filter_items", "items"]),
    ],
)
def test_the_same_keyword_arguments_with_the_same_defaults(method, shared):
    ours, theirs = _keywords(getattr(WALS, method)), _keywords(getattr(Recommender, method))
    assert {n: ours[n] for n in shared} == {n: theirs[n] for n in shared}
    assert set(ours) == set(shared)
    # a Recommender may also serve the hybrid's item-item weights (similar_items' method)
    assert set(theirs) - set(shared) <= {"fallback", "method"}
    keyword_only = [
        p.name
        for p in inspect.signature(getattr(WALS, method)).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    ]
    for name in keyword_only:  # keyword-only in WALS: so in the Recommender
        param = inspect.signature(getattr(Recommender, method)).parameters[name]
        assert param.kind is param.KEYWORD_ONLY
