"""The public half-step (walsrec.model.halfstep) on its own, against dense oracles: what the
single machine and the Dask workers both call."""

from __future__ import annotations

import numpy as np
import pytest

from tests.model._problems import (
    dense_loss,
    dense_row_solutions,
    dense_weights,
    lambdas,
    make_problem,
)
from walsrec.errors import SingularSystemError
from walsrec.model import halfstep


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("nu", [0.0, 0.5])
def test_solve_rows_and_the_loss_against_dense_oracles(solver, nu):
    x, _ = make_problem(3)
    settings = halfstep.Settings.of(
        {"embedding_dim": 4, "dtype": "float64", "regularization_exponent": nu, "cg_steps": 60},
        solver=solver,
        unobserved_weight=0.3,
    )
    rng = np.random.default_rng(0)
    u = rng.standard_normal((x.shape[0], 4))
    v = rng.standard_normal((x.shape[1], 4))
    big_w, a, mask = dense_weights(x, None, 0.3, 1.0, 1.0)
    lam_r, lam_c = lambdas(mask, 0.1, nu, 0.3)

    rows = halfstep.build_side(settings, x.tocsr(), None, True, x.shape)
    cols = halfstep.build_side(settings, x.tocsc(), None, False, x.shape)
    np.testing.assert_allclose(rows.lam, lam_r)
    np.testing.assert_allclose(cols.lam, lam_c)
    fixed = halfstep.fixed_side(v, need_rotation=True, n_threads=1)
    np.testing.assert_allclose(fixed.gram, v.T @ v)
    new, terms = halfstep.solve_rows(
        settings, rows, np.arange(x.shape[0]), fixed, start=u, axis="row"
    )
    expected = dense_row_solutions(big_w, a, v, lam_r)
    np.testing.assert_allclose(new, expected, rtol=1e-6, atol=1e-8)

    # the loss from the kernels' terms and the two Gramians equals the dense objective
    reg = halfstep.regularization_term(rows.lam, new) + halfstep.regularization_term(cols.lam, v)
    observed = halfstep.observed_loss(settings, rows, new, v).sum()
    np.testing.assert_allclose(terms[:, 0].sum(), observed, rtol=1e-9)
    loss, data, sum_w = halfstep.assemble_loss(
        float(observed), reg, 0.3, new.T @ new, v.T @ v, x.shape[0] * x.shape[1],
        rows.sum_w_excess(0.3),
    )  # fmt: skip
    want_loss, want_rwse = dense_loss(big_w, a, new, v, lam_r, lam_c)
    assert loss == pytest.approx(want_loss, rel=1e-9)
    assert np.sqrt(data / sum_w) == pytest.approx(want_rwse, rel=1e-9)
    assert sum_w == pytest.approx(big_w.sum(), rel=1e-12)


def test_rotated_rows_alone_give_the_same_solution():
    """A partition that receives only the rotated rows it touches (indices renumbered into
    them) solves exactly as with the whole fixed side: the Dask back end's contract."""
    x, _ = make_problem(5)
    settings = halfstep.Settings(embedding_dim=3, dtype="float64")
    v = np.random.default_rng(1).standard_normal((x.shape[1], 3))
    side = halfstep.build_side(settings, x.tocsr(), None, True, x.shape)
    whole = halfstep.fixed_side(v, need_rotation=True, n_threads=1)
    rows = np.arange(x.shape[0])
    start = np.zeros((x.shape[0], 3))
    want, want_terms = halfstep.solve_rows(settings, side, rows, whole, start, "row")
    touched = np.unique(side.indices)
    local = side.with_indices(np.searchsorted(touched, side.indices).astype(side.indices.dtype))
    part = halfstep.FixedSide.from_rotation(whole.rot[touched], whole.g, whole.q)
    got, got_terms = halfstep.solve_rows(settings, local, rows, part, start, "row")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_terms, want_terms)


def test_fixed_side_is_reused_only_for_the_same_array():
    v = np.random.default_rng(2).standard_normal((50, 3)).astype(np.float32)
    plain = halfstep.fixed_side(v, need_rotation=False, n_threads=1)
    assert plain.rot is None and plain.gram.dtype == np.float64
    rotated = halfstep.fixed_side(v, need_rotation=True, n_threads=1, known=plain)
    assert rotated.gram is plain.gram and rotated.rot.dtype == np.float32
    assert halfstep.fixed_side(v, True, 1, known=rotated) is rotated
    other = halfstep.fixed_side(v.copy(), True, 1, known=rotated)
    assert other is not rotated and other.gram is not plain.gram


def test_a_singular_row_names_its_label_and_the_settings():
    x, _ = make_problem(4)
    settings = halfstep.Settings(
        embedding_dim=4, dtype="float64", unobserved_weight=0.0, regularization=0.0
    )
    side = halfstep.build_side(settings, x.tocsr(), None, True, x.shape)
    v = np.random.default_rng(3).standard_normal((x.shape[1], 4))
    fixed = halfstep.fixed_side(v, True, 1)
    rows = np.arange(x.shape[0])
    with pytest.raises(
        SingularSystemError,
        match=r"singular for 11 row\(s\) \(first: row 100, with 0 .* embedding_dim=4, ",
    ):
        halfstep.solve_rows(
            settings, side, rows, fixed, np.zeros((rows.size, 4)), "row", labels=rows + 100
        )


def test_settings_take_the_estimators_parameters():
    from walsrec.model.wals import WALS

    model = WALS(7, regularization=0.3, solver="cg", random_state=1, callback=print)
    s = halfstep.Settings.of(model.get_params())
    assert (s.embedding_dim, s.regularization, s.solver, s.np_dtype) == (
        7, 0.3, "cg", np.dtype("float32"),
    )  # fmt: skip
    assert halfstep.Settings.of(model.get_params(), n_jobs=1).n_threads == 1
