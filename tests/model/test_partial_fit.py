"""``WALS.partial_fit``: an incremental update is a refit's half-step on the rows it solves."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import InvalidParameterError
from walsrec.model.wals import WALS

SETTINGS = [
    dict(confidence="constant"),
    dict(confidence="bm25", targets="binary", regularization_exponent=0.5),
    dict(confidence="log", alpha=2.0, unobserved_weight=0.05),
]


def _pad(m: sp.csr_matrix, shape) -> sp.csr_matrix:
    """``m`` with empty rows and columns appended up to ``shape``."""
    indptr = np.append(m.indptr, [m.nnz] * (shape[0] - m.shape[0]))
    return sp.csr_matrix((m.data, m.indices, indptr), shape=shape)


def _grown(seed: int = 0):
    """A fitted model's matrix, and the same matrix with new interactions of old users, two
    new users and one new item appended (the old rows and columns first)."""
    rng = np.random.default_rng(seed)
    old = sp.random(40, 25, density=0.2, format="csr", random_state=seed, dtype=np.float64)
    old.data = rng.integers(1, 5, old.nnz).astype(np.float64)
    extra = sp.random(42, 26, density=0.03, format="csr", random_state=seed + 1)
    extra.data[:] = 3.0
    new = _pad(old, (42, 26)) + extra
    new = new.tolil()
    new[40, 3] = 2.0  # the new users have histories
    new[41, 25] = 1.0
    new[41, 7] = 4.0
    new = new.tocsr()
    new.sort_indices()
    return old, new


def _fitted(old, **settings) -> WALS:
    params = dict(embedding_dim=4, regularization=0.1, dtype="float64", random_state=3)
    return WALS(sweeps=4, **params, **settings).fit(old)


def _changed_rows(old, new) -> np.ndarray:
    padded = _pad(old, new.shape)
    diff = (padded != new).tocsr()
    return np.union1d(np.flatnonzero(np.diff(diff.indptr)), np.arange(old.shape[0], new.shape[0]))


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s["confidence"])
def test_the_rows_an_update_solves_are_a_full_half_steps_rows(settings):
    old, new = _grown()
    model = _fitted(old, **settings)
    rows = _changed_rows(old, new)
    cols = _changed_rows(old.T.tocsr(), new.T.tocsr())
    assert 0 < len(rows) < new.shape[0] and 0 < len(cols) < new.shape[1]
    updated = copy.deepcopy(model).partial_fit(new, rows=rows, cols=cols)
    # the refit's half-steps from the same factors: every user, then every item, against
    # the same fixed side
    full = copy.deepcopy(model).partial_fit(new, rows=[], cols=[])
    full.update_rows(new)
    np.testing.assert_allclose(updated.user_factors_[rows], full.user_factors_[rows], atol=1e-6)
    # the items: against the updated users (the update's, not the full half-step's)
    against = copy.deepcopy(updated)
    against.update_cols(new)
    np.testing.assert_allclose(updated.item_factors_[cols], against.item_factors_[cols], atol=1e-6)
    # users and items not solved keep their factors, bit for bit
    untouched = np.setdiff1d(np.arange(40), rows)
    np.testing.assert_array_equal(updated.user_factors_[untouched], model.user_factors_[untouched])
    same_items = np.setdiff1d(np.arange(25), cols)
    np.testing.assert_array_equal(
        updated.item_factors_[same_items], model.item_factors_[same_items]
    )


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s["confidence"])
def test_a_new_users_factors_are_its_fold_in(settings):
    old, new = _grown(1)
    model = _fitted(old, **settings)
    updated = copy.deepcopy(model).partial_fit(new, rows=None, cols=[])  # the new users only
    folded = updated.project_rows(new[40:])
    np.testing.assert_allclose(updated.user_factors_[40:], folded, atol=1e-6)
    assert np.abs(folded).max() > 0


def test_an_update_with_nothing_new_changes_no_bit():
    old, _ = _grown(2)
    model = _fitted(old, confidence="bm25")
    before = (model.user_factors_.copy(), model.item_factors_.copy())
    model.partial_fit(old)  # None: the new users and items, of which there are none
    np.testing.assert_array_equal(model.user_factors_, before[0])
    np.testing.assert_array_equal(model.item_factors_, before[1])


def test_what_partial_fit_refuses():
    old, new = _grown(3)
    model = _fitted(old)
    with pytest.raises(InvalidParameterError, match=r"at least the model's 40 users and 25 items"):
        model.partial_fit(old[:30])
    with pytest.raises(TypeError, match=r"must be a scipy\.sparse matrix"):
        model.partial_fit(new.toarray())
    with pytest.raises(InvalidParameterError, match=r"'rows' argument of WALS\.partial_fit"):
        model.partial_fit(new, rows=[99])
    with pytest.raises(InvalidParameterError, match=r"'weights' argument of WALS\.update_rows"):
        model.partial_fit(new, weights=sp.csr_matrix((3, 3)))  # refused after growing
    assert model.user_factors_.shape == (40, 4) and model.item_factors_.shape == (25, 4)
    model.set_params(col_weights=np.ones(25))
    with pytest.raises(InvalidParameterError, match="'col_weights' parameter of WALS has 25"):
        model.partial_fit(new)
