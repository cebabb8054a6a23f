"""Weighting schemes: confidences held to implicit's formulas, WALS held to explicit weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from walsrec.errors import InvalidParameterError, NotFittedError
from walsrec.model import weighting
from walsrec.model.wals import WALS


def _ratings(n_users=60, n_items=40, density=0.2, seed=0) -> sp.csr_matrix:
    x = sp.random(n_users, n_items, density=density, format="csr", random_state=seed)
    x.data = np.round(x.data * 4) + 1.0  # ratings 1..5
    return x


def _entries(x: sp.csr_matrix):
    users = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    return x.data, users, x.indices


def test_bm25_and_tfidf_equal_implicits_formulas():
    nn = pytest.importorskip("implicit.nearest_neighbours")
    x = _ratings()
    stats = weighting.weighting_stats(x)
    values, users, items = _entries(x)
    for k1, b in ((100.0, 0.8), (1.2, 0.75), (3.0, 0.0)):
        ours = weighting.confidence_values(
            values, users, items, confidence="bm25", bm25_k1=k1, bm25_b=b, stats=stats
        )
        theirs = nn.bm25_weight(x, K1=k1, B=b).tocsr()
        np.testing.assert_allclose(ours, theirs.data, rtol=1e-12)
    ours = weighting.confidence_values(values, users, items, confidence="tfidf", stats=stats)
    np.testing.assert_allclose(ours, nn.tfidf_weight(x).tocsr().data, rtol=1e-12)


def test_linear_and_log_and_idf_clipping():
    r = np.array([0.0, 1.0, 4.0])
    idx = np.zeros(3, dtype=np.int64)
    lin = weighting.confidence_values(r, idx, idx, confidence="linear", alpha=2.5)
    np.testing.assert_allclose(lin, [0.0, 2.5, 10.0])
    log = weighting.confidence_values(r, idx, idx, confidence="log", alpha=2.0, epsilon=0.5)
    np.testing.assert_allclose(log, 2.0 * np.log1p(r / 0.5))
    assert weighting.confidence_values(r, idx, idx, confidence="constant") is None
    # an item every user has: idf = log(n) - log(n + 1) < 0 in implicit, 0 here
    x = sp.csr_matrix(np.ones((3, 2)))
    c = weighting.confidence_values(
        *_entries(x), confidence="tfidf", stats=weighting.weighting_stats(x)
    )
    np.testing.assert_array_equal(c, np.zeros(6))


@pytest.mark.parametrize("confidence", weighting.CONFIDENCES)
@pytest.mark.parametrize("targets", weighting.TARGETS)
def test_wals_confidence_equals_explicit_weights(confidence, targets):
    """W = w0 + R_i C_j c(r) and A = r or 1, through fit, update_rows/update_cols, loss."""
    x = _ratings()
    rw = np.linspace(0.5, 2.0, x.shape[0])
    cw = np.linspace(1.0, 3.0, x.shape[1])
    params = dict(
        unobserved_weight=0.3,
        regularization=0.05,
        row_weights=rw,
        col_weights=cw,
        alpha=1.7,
        epsilon=0.4,
        bm25_k1=2.0,
        bm25_b=0.6,
        sweeps=3,
        random_state=0,
        dtype="float64",
    )
    ours = WALS(4, confidence=confidence, targets=targets, **params).fit(x)
    c = weighting.confidence_values(
        *_entries(x),
        confidence=confidence,
        alpha=1.7,
        epsilon=0.4,
        bm25_k1=2.0,
        bm25_b=0.6,
        stats=weighting.weighting_stats(x),
    )
    _, users, items = _entries(x)
    w = x.copy()
    w.data = 0.3 + rw[users] * cw[items] * (1.0 if c is None else c)
    a = x.copy()
    if targets == "binary":
        a.data[:] = 1.0
    theirs = WALS(4, **params).fit(a, weights=w)
    np.testing.assert_allclose(ours.user_factors_, theirs.user_factors_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.item_factors_, theirs.item_factors_, rtol=1e-9, atol=1e-12)
    assert ours.loss(x) == pytest.approx(theirs.loss(a, weights=w), rel=1e-12)
    # batch updates of a subset weigh their entries with the whole matrix's statistics
    ours.update_rows(x, rows=np.arange(5, 20))
    theirs.update_rows(a, rows=np.arange(5, 20), weights=w)
    np.testing.assert_allclose(ours.user_factors_, theirs.user_factors_, rtol=1e-9, atol=1e-12)
    ours.update_cols(x, cols=np.arange(3, 9))
    theirs.update_cols(a, cols=np.arange(3, 9), weights=w)
    np.testing.assert_allclose(ours.item_factors_, theirs.item_factors_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("confidence", ["linear", "log", "bm25", "tfidf"])
def test_fold_in_weighs_new_rows_as_training_did(confidence):
    x = _ratings(seed=3)
    model = WALS(
        5,
        unobserved_weight=0.2,
        confidence=confidence,
        targets="binary",
        bm25_k1=1.5,
        sweeps=4,
        random_state=1,
        dtype="float64",
    ).fit(x)
    # after a row half-step, folding the training users back in gives their factors exactly
    model.update_rows(x)
    np.testing.assert_allclose(model.project_rows(x[7:12]), model.user_factors_[7:12], atol=1e-10)
    model.update_cols(x)
    xt = x.T.tocsr()
    np.testing.assert_allclose(model.project_cols(xt[2:6]), model.item_factors_[2:6], atol=1e-10)


def test_statistics_follow_the_matrix_given():
    x = _ratings(seed=4)
    model = WALS(3, confidence="bm25", sweeps=1, random_state=0).fit(x)
    first = model.weighting_stats_
    assert first.n_users == x.shape[0]
    np.testing.assert_array_equal(first.item_counts, np.diff(x.tocsc().indptr))
    np.testing.assert_allclose(first.user_sums, np.asarray(x.sum(axis=1)).ravel())
    y = _ratings(seed=5)
    # the loss on another matrix weighs it with its own statistics and keeps the training ones
    c = weighting.confidence_values(
        *_entries(y), confidence="bm25", stats=weighting.weighting_stats(y)
    )
    w = y.copy()
    w.data = 0.1 + c  # w0 + R·C·c with WALS's defaults
    assert model.loss(y) == pytest.approx(model.loss(y, weights=w), rel=1e-6)
    assert model.weighting_stats_ is first
    model.update_rows(y)
    np.testing.assert_array_equal(model.weighting_stats_.item_counts, np.diff(y.tocsc().indptr))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.0, 1e6), min_size=1, max_size=30),
    st.sampled_from(["linear", "log", "bm25", "tfidf"]),
    st.floats(0.0, 1.0),
)
def test_confidences_are_finite_and_non_negative(values, confidence, b):
    r = np.asarray(values)
    n = r.shape[0]
    x = sp.csr_matrix((r, (np.arange(n) % 4, np.arange(n) // 4)), shape=(4, (n + 3) // 4 + 1))
    c = weighting.confidence_values(
        *_entries(x), confidence=confidence, bm25_b=b, stats=weighting.weighting_stats(x)
    )
    assert np.isfinite(c).all() and (c >= 0).all()


def test_invalid_weighting_raises_with_clear_messages():
    x = _ratings()
    with pytest.raises(InvalidParameterError, match=r"'confidence' parameter of WALS must be one"):
        WALS(confidence="sqrt").fit(x)
    with pytest.raises(InvalidParameterError, match=r"'targets' parameter .* Got 'ones'"):
        WALS(targets="ones").fit(x)
    with pytest.raises(InvalidParameterError, match=r"'alpha' parameter .* > 0. Got 0"):
        WALS(alpha=0).fit(x)
    with pytest.raises(InvalidParameterError, match=r"'epsilon' parameter .* > 0. Got -1"):
        WALS(epsilon=-1.0).fit(x)
    with pytest.raises(InvalidParameterError, match=r"'bm25_b' parameter .* \[0, 1\]. Got 1.5"):
        WALS(bm25_b=1.5).fit(x)
    neg = x.copy()
    neg.data[3] = -2.0
    row, col = int(np.searchsorted(neg.indptr, 3, side="right") - 1), int(neg.indices[3])
    with pytest.raises(
        InvalidParameterError,
        match=rf"confidence='linear' needs non-negative values in 'user_items'. Got -2.0 at "
        rf"\(row {row}, column {col}\)",
    ):
        WALS(confidence="linear").fit(neg)
    # log too: a value in (-ε, 0) would give a negative confidence, a weight below 0
    small = x.copy()
    small.data[3] = -0.25
    with pytest.raises(
        InvalidParameterError, match=r"confidence='log' needs non-negative values .* Got -0.25"
    ):
        WALS(confidence="log", epsilon=0.5).fit(small)
    # a new item's values are named by its row in 'new_item_users'
    fitted = WALS(2, confidence="linear", sweeps=1, random_state=0).fit(x)
    items = x.T.tocsr()[:2].copy()
    items.data[:] = 1.0
    items.data[-1] = -1.0
    user = int(items.indices[-1])
    with pytest.raises(
        InvalidParameterError, match=rf"'new_item_users'. Got -1.0 at \(row 1, column {user}\)"
    ):
        fitted.project_cols(items)
    model = WALS(3, confidence="bm25")
    model.user_factors_ = np.zeros((x.shape[0], 3), np.float32)
    model.item_factors_ = np.zeros((x.shape[1], 3), np.float32)
    with pytest.raises(NotFittedError, match=r"confidence='bm25' weighs entries with statistics"):
        model.project_rows(x[:2])


def test_a_rejected_update_keeps_the_training_statistics_and_the_model_pickles():
    import pickle

    x = _ratings(seed=6)
    model = WALS(3, confidence="bm25", sweeps=2, random_state=0).fit(x)
    first = model.weighting_stats_
    before = model.project_rows(x[[0]])
    bad = x.copy()
    bad.data[5] = np.nan  # outside the batch of rows updated below
    with pytest.raises(InvalidParameterError, match=r"finite, non-negative values .* Got nan"):
        model.update_rows(bad, rows=np.arange(20, 30))
    assert model.weighting_stats_ is first
    np.testing.assert_array_equal(model.project_rows(x[[0]]), before)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.project_rows(x[[0]]), before)


def test_batches_alternating_csr_and_csc_compute_the_statistics_once(monkeypatch):
    x = _ratings(seed=7)
    xc = x.tocsc()
    calls = []
    real = weighting.weighting_stats
    monkeypatch.setattr(weighting, "weighting_stats", lambda m: calls.append(1) or real(m))
    model = WALS(3, confidence="tfidf", random_state=0).initialize(*x.shape)
    for start in (0, 20, 40):
        model.update_rows(x, rows=np.arange(start, start + 20))
        model.update_cols(xc, cols=np.arange(start // 2, start // 2 + 10))
    assert len(calls) == 2  # one per matrix object


def test_the_settings_mapping_matches_the_estimator_and_train():
    """model.params names WALS's settings once; train's configuration and the estimator
    must agree with it (a new WALS argument or TrainConfig field shows up here)."""
    import dataclasses

    from walsrec.model.params import COLUMN_WEIGHT_DEFAULTS, SETTINGS
    from walsrec.model.wals import WALS
    from walsrec.training.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    shared = [n for n in WALS().get_params() if n in fields and n not in ("col_weights", "sweeps")]
    assert tuple(shared) == SETTINGS
    defaults = TrainConfig().to_dict()
    assert {k: defaults[k] for k in COLUMN_WEIGHT_DEFAULTS} == COLUMN_WEIGHT_DEFAULTS
