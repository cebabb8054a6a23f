"""Every exact half-step (both kernel paths and the NumPy twin) against dense np.linalg.solve,
and the reported loss and rwse against the dense objective."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.model._problems import (
    dense_loss,
    dense_row_solutions,
    dense_weights,
    lambdas,
    make_problem,
)
from walsrec.errors import SingularSystemError
from walsrec.model import _reference
from walsrec.model.wals import WALS

# (name, problem kwargs, model kwargs)
CASES = [
    ("defaults", {}, {}),
    ("w0_zero", {}, {"unobserved_weight": 0.0, "regularization": 0.5}),
    (
        "weight_vectors_nu",
        {},
        {
            "row_weights": "vec",
            "col_weights": "vec",
            "regularization_exponent": 1.0,
            "regularization": 0.02,
        },
    ),
    ("weights_above", {"weights": "above"}, {"unobserved_weight": 1.0}),
    ("weights_mixed", {"weights": "mixed"}, {"unobserved_weight": 0.7}),
    ("k_above_items", {"n_items": 6, "density": 0.4}, {"embedding_dim": 9}),
    ("nu_half_w0_big", {}, {"unobserved_weight": 2.0, "regularization_exponent": 0.5}),
]
PATHS = ["auto", "direct", "woodbury"]


def _setup(case, dtype, seed):
    _, pkw, mkw = case
    x, w = make_problem(seed, **pkw)
    mkw = dict(mkw)
    rng = np.random.default_rng(seed + 100)
    if mkw.get("row_weights") == "vec":
        mkw["row_weights"] = rng.uniform(0.0, 3.0, x.shape[0])
        mkw["col_weights"] = rng.uniform(0.0, 3.0, x.shape[1])
    model = WALS(**{"embedding_dim": 5, "dtype": dtype, **mkw}).initialize(*x.shape)
    # Well-scaled fixed factors so the systems are far from singular.
    model.user_factors_ = rng.standard_normal(model.user_factors_.shape).astype(dtype)
    model.item_factors_ = rng.standard_normal(model.item_factors_.shape).astype(dtype)
    p = model.get_params()
    big_w, a, mask = dense_weights(x, w, p["unobserved_weight"], p["row_weights"], p["col_weights"])
    lam_r, lam_c = lambdas(
        mask, p["regularization"], p["regularization_exponent"], p["unobserved_weight"]
    )
    return model, x, w, big_w, a, lam_r, lam_c


def _rel(got, want):
    return np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300)


TOL = {"float64": 1e-9, "float32": 2e-4}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_exact_half_steps_match_dense_solve(case, path, dtype):
    for seed in (0, 1):
        model, x, w, big_w, a, lam_r, lam_c = _setup(case, dtype, seed)
        v0 = model.item_factors_.copy()
        side = model._prepare(x, w, "test", by_rows=True)
        model._update(side, "user", path=path)
        want_u = dense_row_solutions(big_w, a, v0, lam_r)
        assert _rel(model.user_factors_, want_u) < TOL[dtype]
        u1 = model.user_factors_.copy()
        side_c = model._prepare(x, w, "test", by_rows=False)
        model._update(side_c, "item", path=path)
        want_v = dense_row_solutions(big_w.T, a.T, u1, lam_c)
        assert _rel(model.item_factors_, want_v) < TOL[dtype]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reference_twin_matches_dense_solve(case):
    model, x, w, big_w, a, lam_r, _lam_c = _setup(case, "float64", 3)
    side = model._prepare(x, w, "test", by_rows=True)
    rows = np.arange(x.shape[0])
    got, singular = _reference.solve_exact(
        side.indptr,
        side.indices,
        side.wdata,
        side.adata,
        rows,
        model.item_factors_,
        side.lam,
        float(model.unobserved_weight),
    )
    assert not singular.any()
    assert _rel(got, dense_row_solutions(big_w, a, model.item_factors_, lam_r)) < 1e-10


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_subset_updates_solve_only_those_rows(case, solver):
    """update_rows/update_cols on a batch: those rows get their exact (or warm-started CG)
    solution, with the batch's own row weights, λ_i and weights; the others stay put."""
    model, x, w, big_w, a, lam_r, lam_c = _setup(case, "float64", 4)
    model.set_params(solver=solver, cg_steps=40)
    u0 = model.user_factors_.copy()
    rows = np.array([7, 1, 0, 12])
    model.update_rows(x, rows=rows, weights=w)
    want = dense_row_solutions(big_w, a, model.item_factors_, lam_r)
    others = np.setdiff1d(np.arange(x.shape[0]), rows)
    np.testing.assert_array_equal(model.user_factors_[others], u0[others])
    assert _rel(model.user_factors_[rows], want[rows]) < (1e-9 if solver == "cholesky" else 1e-6)
    cols = np.array([3, x.shape[1] - 1, 0])
    v0 = model.item_factors_.copy()
    model.update_cols(x.tocsc(), cols=cols, weights=w)
    want_v = dense_row_solutions(big_w.T, a.T, model.user_factors_, lam_c)
    others = np.setdiff1d(np.arange(x.shape[1]), cols)
    np.testing.assert_array_equal(model.item_factors_[others], v0[others])
    assert _rel(model.item_factors_[cols], want_v[cols]) < (1e-9 if solver == "cholesky" else 1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_loss_and_rwse_match_dense_objective(case, dtype):
    model, x, w, big_w, a, lam_r, lam_c = _setup(case, dtype, 5)
    want_loss, want_rwse = dense_loss(
        big_w, a, model.user_factors_, model.item_factors_, lam_r, lam_c
    )
    tol = 1e-10 if dtype == "float64" else 1e-5
    assert model.loss(x, weights=w) == pytest.approx(want_loss, rel=tol)
    assert model.rwse(x, weights=w) == pytest.approx(want_rwse, rel=tol)
    side = model._prepare(x, w, "test", by_rows=True)
    data, sum_w = _reference.loss_terms(
        side.indptr,
        side.indices,
        side.wdata,
        side.adata,
        model.user_factors_,
        model.item_factors_,
        float(model.unobserved_weight),
    )
    assert sum_w == pytest.approx(big_w.sum(), rel=1e-6)
    assert np.sqrt(data / sum_w) == pytest.approx(want_rwse, rel=1e-6)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fit_loss_never_increases_and_is_reported_exactly(case):
    model, x, w, big_w, a, lam_r, lam_c = _setup(case, "float64", 6)
    model.set_params(sweeps=6).fit(x, weights=w)
    losses = np.array(model.loss_)
    assert losses.shape == (12,)
    assert np.all(np.diff(losses) <= 1e-10 * losses[:-1])
    want_loss, want_rwse = dense_loss(
        big_w, a, model.user_factors_, model.item_factors_, lam_r, lam_c
    )
    assert losses[-1] == pytest.approx(want_loss, rel=1e-10)
    assert model.rwse_ == pytest.approx(want_rwse, rel=1e-10)
    assert model.n_iter_ == 6


def test_float32_fit_loss_never_increases_beyond_rounding():
    x, _ = make_problem(7, 80, 60)
    model = WALS(embedding_dim=6, sweeps=8, random_state=0).fit(x)
    losses = np.array(model.loss_)
    assert np.all(np.diff(losses) <= 1e-5 * losses[:-1])
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cg_with_enough_steps_reaches_exact_answer(dtype):
    model, x, _w, big_w, a, lam_r, _lam_c = _setup(CASES[2], dtype, 8)
    model.set_params(solver="cg", cg_steps=60)
    v0 = model.item_factors_.copy()
    model.update_rows(x)
    want = dense_row_solutions(big_w, a, v0, lam_r)
    assert _rel(model.user_factors_, want) < (1e-8 if dtype == "float64" else 1e-3)
    side = model._prepare(x, None, "test", by_rows=True)
    rows = np.arange(x.shape[0])
    twin = _reference.solve_cg(
        side.indptr,
        side.indices,
        side.wdata,
        side.adata,
        rows,
        v0,
        side.lam,
        float(model.unobserved_weight),
        60,
        np.zeros_like(want),
    )
    assert _rel(twin, want) < 1e-6  # the twin stops at |r|² < 1e-20, as implicit


@pytest.mark.parametrize("steps", [1, 3])
def test_cg_kernel_matches_textbook_twin(steps):
    model, x, w, big_w, a, lam_r, _lam_c = _setup(CASES[3], "float64", 9)
    model.set_params(solver="cg", cg_steps=steps)
    start = model.user_factors_.copy()
    side = model._prepare(x, w, "test", by_rows=True)
    rows = np.arange(x.shape[0])
    twin = _reference.solve_cg(
        side.indptr,
        side.indices,
        side.wdata,
        side.adata,
        rows,
        model.item_factors_,
        side.lam,
        float(model.unobserved_weight),
        steps,
        start,
    )
    model.update_rows(x, weights=w)
    assert _rel(model.user_factors_, twin) < 1e-10
    # a few warm-started steps move towards, but not onto, the exact answer
    exact = dense_row_solutions(big_w, a, model.item_factors_, lam_r)
    assert _rel(model.user_factors_, exact) < _rel(start, exact)


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_users=st.integers(1, 25),
    n_items=st.integers(1, 25),
    k=st.integers(1, 12),
    density=st.floats(0.0, 1.0),
    w0=st.sampled_from([0.0, 0.1, 1.0]),
    lam=st.sampled_from([0.05, 1.0]),
    nu=st.sampled_from([0.0, 1.0]),
)
def test_hypothesis_row_step_matches_dense_solve(seed, n_users, n_items, k, density, w0, lam, nu):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    x = sp.csr_matrix(np.where(mask, rng.uniform(0.1, 2.0, mask.shape), 0.0))
    model = WALS(
        embedding_dim=k,
        unobserved_weight=w0,
        regularization=lam,
        regularization_exponent=nu,
        dtype="float64",
    )
    model.initialize(n_users, n_items)
    model.item_factors_ = rng.standard_normal((n_items, k))
    big_w, a, mask = dense_weights(x, None, w0, 1.0, 1.0)
    lam_r, _ = lambdas(mask, lam, nu, w0)
    if w0 == 0 and np.any((lam_r == 0) & (mask.sum(1) < k)):
        # ν > 0 and w0 = 0 give an empty row λ_i = 0: no unique solution
        with pytest.raises(SingularSystemError, match="Set 'regularization' > 0"):
            model.update_rows(x)
        return
    want = dense_row_solutions(big_w, a, model.item_factors_, lam_r)
    for path in PATHS:
        model.user_factors_ = np.zeros((n_users, k))
        side = model._prepare(x, None, "test", by_rows=True)
        model._update(side, "user", path=path)
        scale = max(np.linalg.norm(want), 1.0)
        assert np.linalg.norm(model.user_factors_ - want) / scale < 1e-8


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_loss_fused_into_the_solve_kernels_matches_dense_objective(case, solver):
    """fit records the loss from the per-row terms each solve kernel returns."""
    model, x, w, big_w, a, lam_r, lam_c = _setup(case, "float64", 10)
    model.set_params(solver=solver)
    side = model._prepare(x, w, "test", by_rows=True)
    side_c = model._prepare(x, w, "test", by_rows=False)
    for s, which in ((side, "user"), (side_c, "item")):
        terms = model._update(s, which).sum(axis=0)
        u, v = model.user_factors_, model.item_factors_
        reg_u, reg_v = lam_r @ np.sum(u**2, 1), lam_c @ np.sum(v**2, 1)
        assert terms[1] == pytest.approx(reg_u if which == "user" else reg_v, rel=1e-10)
        got = model._assemble_loss(terms[0], reg_u + reg_v, side)[0]
        want, _ = dense_loss(big_w, a, u, v, lam_r, lam_c)
        assert got == pytest.approx(want, rel=1e-10)
