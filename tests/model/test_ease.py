"""EASE's item-item weights (walsrec.model.ease) against their NumPy twins."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import InvalidParameterError, SingularSystemError
from walsrec.model import _reference as ref
from walsrec.model import ease


def _matrix(n_users, n_items, density, seed):
    x = sp.random(n_users, n_items, density=density, random_state=seed, format="csr")
    x.data[:] = np.random.default_rng(seed).uniform(0.5, 5.0, x.nnz)  # values are ignored
    return x


@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_dense_weights_equal_the_inverse(dtype, tol):
    x = _matrix(300, 120, 0.1, 1)
    b = ease.ease_dense(ease.binary_rows(x, dtype), 5.0, dtype)
    want = ref.ease_weights(x, 5.0)
    assert b.dtype == dtype and b.flags.c_contiguous
    assert np.all(np.diag(b) == 0)
    np.testing.assert_allclose(b, want, atol=tol * np.abs(want).max())


def test_dense_weights_minimise_the_objective():
    """B is the constrained least squares solution: the gradient of ‖X − XB‖² + λ‖B‖² is
    zero off the diagonal (the diagonal's is the Lagrange multiplier)."""
    x = _matrix(200, 60, 0.15, 2)
    xd = (x.toarray() != 0).astype(np.float64)
    b = ease.ease_dense(ease.binary_rows(x, np.float64), 3.0, np.float64)
    grad = -xd.T @ (xd - xd @ b) + 3.0 * b
    off = ~np.eye(60, dtype=bool)
    assert np.abs(grad[off]).max() < 1e-9 * np.abs(xd.T @ xd).max()


def test_disconnected_items_get_no_weight():
    """Items no user has together: B between the two groups is exactly zero."""
    rng = np.random.default_rng(3)
    a = (rng.random((40, 5)) < 0.5).astype(float)
    c = (rng.random((40, 7)) < 0.5).astype(float)
    x = sp.csr_matrix(sp.block_diag([a, c]))
    b = ease.EASE(2.0, dtype="float64").fit(x).weights_
    assert np.all(b[:5, 5:] == 0) and np.all(b[5:, :5] == 0)
    assert np.abs(b[:5, :5]).max() > 0


def test_users_form_columns_equal_the_items_form():
    x = _matrix(80, 200, 0.1, 4)
    got = np.zeros((200, 200))
    for lo, block in ease._column_blocks_users(ease.binary_rows(x, np.float64), 5.0, np.float64):
        got[:, lo : lo + block.shape[1]] = block
    want = ref.ease_weights(x, 5.0)
    np.testing.assert_allclose(got, want, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("shape", [(300, 120), (80, 200)])  # through the items, the users
def test_sparse_weights_are_the_twins_selection(shape):
    x = _matrix(*shape, 0.1, 5)
    got = ease.ease_sparse(ease.binary_rows(x, np.float64), 5.0, density=10, dtype=np.float64)
    want = ref.ease_threshold(ref.ease_weights(x, 5.0), 10)
    assert got.nnz == np.count_nonzero(want) == 10 * shape[1]
    np.testing.assert_allclose(got.toarray(), want, atol=1e-12 * np.abs(want).max())


def test_sparse_form_keeps_the_largest_weights_across_blocks(monkeypatch):
    """Columns come in blocks of 7 here: the running pool keeps exactly the global
    largest, as the threshold over the whole of B does."""
    monkeypatch.setattr(ease, "_BLOCK", 7)
    x = _matrix(300, 120, 0.3, 6)
    got = ease.EASE(5.0, form="sparse", density=3, dtype="float64").fit(x).weights_
    want = ref.ease_threshold(ref.ease_weights(x, 5.0), 3)
    assert got.nnz == 360
    np.testing.assert_allclose(got.toarray(), want, atol=1e-12)


def test_scores_are_rows_times_weights():
    x = _matrix(100, 50, 0.2, 7)
    model = ease.EASE(4.0, dtype="float64").fit(x)
    xd = (x.toarray() != 0).astype(np.float64)
    np.testing.assert_allclose(model.scores(x[:10]), xd[:10] @ ref.ease_weights(x, 4.0), rtol=1e-5)
    sparse = ease.EASE(4.0, form="sparse", density=50).fit(x)
    assert sparse.form_ == "sparse" and sp.issparse(sparse.weights_)
    np.testing.assert_allclose(
        sparse.scores(x[:10]), xd[:10] @ sparse.weights_.toarray(), rtol=1e-5, atol=1e-6
    )


def test_factorisations_run_on_one_blas_thread(monkeypatch):
    """OpenBLAS's threaded Cholesky crashes on large matrices: every Cholesky factorisation
    (and solve) of the fit runs with BLAS limited to one thread; the inverse from the factor
    too beyond the dense form's size."""
    from threadpoolctl import threadpool_info

    seen = []
    real = ease._lapack

    def spy(dtype, name):
        f = real(dtype, name)

        def call(*args, **kwargs):
            seen.append(
                (
                    name,
                    max(
                        (i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"),
                        default=1,
                    ),
                )
            )
            return f(*args, **kwargs)

        return call

    monkeypatch.setattr(ease, "_lapack", spy)
    ease.EASE(5.0).fit(_matrix(100, 40, 0.2, 8))
    ease.EASE(5.0, form="sparse").fit(_matrix(30, 60, 0.2, 8))
    assert {name for name, _ in seen} == {"potrf", "potri", "potrs"}
    assert all(n == 1 for name, n in seen if name != "potri")
    seen.clear()
    monkeypatch.setattr(ease, "DENSE_MAX_ITEMS", 30)
    ease.EASE(5.0, form="sparse").fit(_matrix(100, 40, 0.2, 8))  # 40 items > 30
    assert [n for name, n in seen if name == "potri"] == [1]


def test_standardize_rows_and_blend():
    s = np.array([[1.0, 2.0, 3.0, 6.0], [2.0, 2.0, 2.0, 2.0]], dtype=np.float32)
    z = ease.standardize_rows(s.copy())
    np.testing.assert_allclose(z[0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(z[0].std(), 1, rtol=1e-6)
    assert np.all(z[1] == 0)  # a constant row: all zero, not NaN
    w = np.array([[0.0, 1.0, 2.0]], dtype=np.float32)
    e = np.array([[4.0, 0.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(ease.blend(w.copy(), e.copy(), 0.0), ease.standardize_rows(w.copy()))
    want = ease.standardize_rows(w.copy()) + 2.0 * ease.standardize_rows(e.copy())
    np.testing.assert_allclose(ease.blend(w.copy(), e.copy(), 2.0), want, rtol=1e-6)


def test_errors():
    x = _matrix(30, 20, 0.3, 9)
    with pytest.raises(InvalidParameterError, match=r"'regularization' parameter of EASE"):
        ease.EASE(0.0).fit(x)
    with pytest.raises(InvalidParameterError, match=r"'form' parameter of EASE"):
        ease.EASE(form="low-rank").fit(x)
    with pytest.raises(InvalidParameterError, match=r"allows 10 items\. Got 20 items"):
        ease.EASE(form="dense", max_dense_items=10).fit(x)
    with pytest.raises(InvalidParameterError, match=r"must be a scipy\.sparse matrix"):
        ease.EASE().fit(x.toarray())
    with pytest.raises(SingularSystemError, match=r"not positive definite"):
        # an item nobody has, and a negative shift: its pivot is −1
        y = sp.hstack([x, sp.csr_matrix((30, 1))]).tocsr()
        ease.ease_dense(ease.binary_rows(y), -1.0, np.float32)
