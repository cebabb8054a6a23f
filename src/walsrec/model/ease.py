"""EASE, the item-item linear model of Steck (2019), and its blend with WALS.

EASE learns an item × item weight matrix B with a zero diagonal from the binary training
matrix X (users × items)::

    B = argmin ‖X − XB‖² + λ_B‖B‖²  subject to diag(B) = 0
      = I − P · diag(1 / diag P),   P = (XᵀX + λ_B I)⁻¹

and scores user u's items as x_u · B. It is full rank where WALS is low rank, so the two
make different mistakes; :func:`blend` adds their per-user standardised scores::

    score(u, ·) = z(u · Vᵀ) + β · z(x_u · B)

where z subtracts a user's mean score over the catalogue and divides by its standard
deviation (β is chosen on validation: :mod:`walsrec.training.hybrid`).

Two forms of B, both float32 by default:

- **dense** (up to :data:`DENSE_MAX_ITEMS` items): P by a Cholesky factorisation and its
  inverse from the factor (LAPACK ``potrf`` + ``potri``, n³ flops, 4n² bytes in float32:
  1.6 GB and 55–81 s at 20,000 items on the 2-core machine of benchmarks/README.md,
  "item_item.py"). About half the time and less than half the memory of solving against
  the identity (in float64 at 20,000 items: 114 s and 4.9 GB against 222 s and 10.6 GB).
- **sparse** (up to :data:`SPARSE_MAX_SIDE` on the smaller side of X): the exact columns
  of B computed block by block, and only the ``density`` × n_items entries of largest
  magnitude kept, as one global threshold (the rule of SANSA, Spišák et al. 2023). When
  there are more items than
  users the columns come through the users (Woodbury's identity: no n_items² array):
  with K = XXᵀ + λI, P_J = (E_J − Xᵀ K⁻¹ X_J)/λ. At 100 entries per item the global
  threshold kept 98.7–100.6% of exact B's nDCG@10 on three public datasets
  (benchmarks/README.md, "item_item.py").

The Cholesky factorisations run with BLAS on one thread: OpenBLAS's threaded Cholesky
crashed the process (a segmentation fault) from about 15,800 items in float64 and 30,000
in float32 on a 2-core machine (OpenMathLib/OpenBLAS#2562 reports the same). The inverse
from the factor (``potri``) ran safely on two threads up to 20,000 items in float64 and
24,000 in float32, and uses BLAS's threads up to :data:`DENSE_MAX_ITEMS`.

Kernels here are BLAS and LAPACK calls; their slow NumPy twins are in ``_reference.py``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_int, check_option, check_real
from walsrec.errors import InvalidParameterError, SingularSystemError

__all__ = [
    "DEFAULT_DENSITY",
    "DENSE_MAX_ITEMS",
    "EASE",
    "EASE_FORMS",
    "SPARSE_MAX_SIDE",
    "binary_rows",
    "blend",
    "ease_dense",
    "ease_sparse",
    "gram_matrix",
    "hybrid_scores",
    "item_item_scores",
    "standardize_rows",
]

#: Largest catalogue whose dense B is computed by default (1.6 GB of float32 weights and
#: 55–81 s to fit on 2 cores; 30,000 items took 4.6 minutes and 3.6 GB on one thread).
DENSE_MAX_ITEMS = 20_000
#: Largest smaller side of X (users or items) the sparse form factorises densely.
SPARSE_MAX_SIDE = 30_000
#: Entries of B kept per item on average in the sparse form.
DEFAULT_DENSITY = 100
EASE_FORMS = ("auto", "dense", "sparse")
_BLOCK = 1024  # columns per block when building XᵀX and thresholding B


def binary_rows(x: sp.spmatrix, dtype=np.float32) -> sp.csr_matrix:
    """``x`` as CSR with every stored non-zero entry 1 (``x`` itself, perhaps read-only
    memory maps, is not changed)."""
    x = sp.csr_matrix(x)
    if np.any(np.asarray(x.data) == 0):
        x = x.copy()
        x.eliminate_zeros()
    out = sp.csr_matrix(
        (np.ones(x.nnz, dtype=dtype), np.array(x.indices), np.array(x.indptr)), shape=x.shape
    )
    if not out.has_canonical_format:
        out.sum_duplicates()
        out.data[:] = 1
    return out


def gram_matrix(x: sp.spmatrix, dtype=np.float32) -> np.ndarray:
    """XᵀX of the binary matrix ``x``, dense in Fortran order (what LAPACK factorises in
    place), built by column blocks; counts are exact in float32 below 2²⁴ users."""
    x = sp.csr_matrix(x)
    n = x.shape[1]
    xt = x.T.tocsr()
    xc = x.tocsc()
    gram = np.empty((n, n), dtype=dtype, order="F")
    for lo in range(0, n, _BLOCK):
        hi = min(n, lo + _BLOCK)
        gram[:, lo:hi] = (xt @ xc[:, lo:hi]).toarray()
    return gram


def _shifted(gram: np.ndarray, lam: float) -> np.ndarray:
    """``gram`` + λI, in place."""
    gram[np.diag_indices(gram.shape[0])] += gram.dtype.type(lam)
    return gram


def _lapack(dtype, name: str):
    from scipy.linalg import lapack

    return getattr(lapack, ("s" if dtype == np.float32 else "d") + name)


def _cholesky(a: np.ndarray, what: str) -> np.ndarray:
    """The lower Cholesky factor of the symmetric positive definite Fortran-ordered ``a``,
    in place, on one BLAS thread (the threaded one crashed: see the module docstring)."""
    from walsrec._threads import single_blas_thread

    with single_blas_thread():
        c, info = _lapack(a.dtype, "potrf")(a, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise SingularSystemError(
            f"{what} is not positive definite in {a.dtype} (Cholesky pivot {info} failed); "
            "increase the item-item regularization."
        )
    return c


def _spd_inverse(a: np.ndarray, what: str) -> np.ndarray:
    """The inverse of the symmetric positive definite Fortran-ordered ``a``, in place
    (``potrf`` on one BLAS thread, then ``potri``), both triangles filled."""
    from walsrec._threads import single_blas_thread

    potri = _lapack(a.dtype, "potri")
    c = _cholesky(a, what)
    # potri on BLAS's threads up to the dense form's size, where it was measured safe (it
    # halves the inverse's time on 2 cores); one thread beyond, as potrf always
    threads = nullcontext() if a.shape[0] <= DENSE_MAX_ITEMS else single_blas_thread()
    with threads:
        p, info = potri(c, lower=1, overwrite_c=1)
    if info != 0:  # pragma: no cover - potri fails only on a zero pivot, caught above
        raise SingularSystemError(f"{what} could not be inverted (potri info {info}).")
    n = p.shape[0]
    for lo in range(0, n, _BLOCK):  # the upper triangle from the lower, block by block
        hi = min(n, lo + _BLOCK)
        p[lo:hi, hi:] = p[hi:, lo:hi].T
        block = p[lo:hi, lo:hi]
        block[np.triu_indices(hi - lo, 1)] = block.T[np.triu_indices(hi - lo, 1)]
    return p


def ease_dense(
    x: sp.spmatrix, regularization: float, dtype=np.float32, gram: np.ndarray | None = None
) -> np.ndarray:
    """Dense EASE weights B (n_items × n_items, C-contiguous, zero diagonal) of the binary
    CSR matrix ``x``: B_ij = −P_ij / P_jj, P = (XᵀX + λI)⁻¹. O(n_items³) time, one n_items²
    array of ``dtype``. ``gram``: XᵀX already computed (:func:`gram_matrix`; copied), for
    fits of the same ``x`` at several λ.

    Raises :class:`~walsrec.errors.SingularSystemError` when XᵀX + λI is not numerically
    positive definite (λ far too small for ``dtype``)."""
    dtype = np.dtype(dtype).type
    a = gram_matrix(x, dtype) if gram is None else np.array(gram, dtype=dtype, order="F")
    p = _spd_inverse(_shifted(a, regularization), "XᵀX + λI")
    # p is symmetric: its Fortran buffer read in C order is P itself
    b = p.T
    scale = (-1.0 / np.diagonal(b).astype(np.float64)).astype(dtype)
    for lo in range(0, b.shape[0], _BLOCK):
        b[lo : lo + _BLOCK] *= scale[None, :]
    b[np.diag_indices(b.shape[0])] = 0
    return b


def _block_width(n_items: int) -> int:
    """Columns per block of B: at most ``_BLOCK``, and about 128 MiB of float64 at most."""
    return max(1, min(_BLOCK, 2**27 // (8 * max(1, n_items))))


def _column_blocks_items(x, lam, dtype):
    """Blocks (lo, B[:, lo:hi]) of exact B through the items (P = (XᵀX + λI)⁻¹)."""
    b = ease_dense(x, lam, dtype)
    width = _block_width(b.shape[1])
    for lo in range(0, b.shape[1], width):
        yield lo, b[:, lo : lo + width]


def _column_blocks_users(x, lam, dtype):
    """Blocks (lo, B[:, lo:hi]) of exact B through the users, by Woodbury's identity:
    K = XXᵀ + λI, Z_J = K⁻¹X_J, P_J = (E_J − XᵀZ_J)/λ, diag P_J = (1 − Σ_u X_uJ Z_uJ)/λ."""
    from walsrec._threads import single_blas_thread

    n_items = x.shape[1]
    xt = x.T.tocsr()
    kmat = _shifted(gram_matrix(xt, dtype), lam)  # XXᵀ + λI
    potrs = _lapack(kmat.dtype, "potrs")
    c = _cholesky(kmat, "XXᵀ + λI")
    xc = x.tocsc()
    width = _block_width(n_items)
    for lo in range(0, n_items, width):
        hi = min(n_items, lo + width)
        xj = np.asfortranarray(xc[:, lo:hi].toarray(), dtype=dtype)
        with single_blas_thread():
            z, _ = potrs(c, xj.copy(order="F"), lower=1, overwrite_b=1)
        diag_p = (1.0 - np.einsum("uj,uj->j", xj, z, dtype=np.float64)) / lam
        block = np.asarray(xt @ z, dtype=np.float64)  # XᵀZ_J, n_items × |J|
        block[np.arange(lo, hi), np.arange(hi - lo)] -= 1.0  # −(E_J − XᵀZ_J)
        block *= 1.0 / (lam * diag_p)[None, :]  # B_J = −P_J / diag P_J
        block[np.arange(lo, hi), np.arange(hi - lo)] = 0.0
        yield lo, block.astype(dtype)


def ease_sparse(
    x: sp.spmatrix, regularization: float, density: int = DEFAULT_DENSITY, dtype=np.float32
) -> sp.csr_matrix:
    """Sparse EASE weights: the ``density`` × n_items entries of exact B largest in magnitude
    (one global threshold; ties at the threshold kept), as CSR (row = the item a user has,
    column = the item scored). Through the items when there are at least as many users as
    items, else through the users.

    The columns come block by block; a block's entries above the running threshold join a
    pool, which is cut back to the largest ``density`` × n_items whenever it doubles: the
    kept entries are exactly the global largest, in O(density × n_items) memory."""
    dtype = np.dtype(dtype).type
    n_users, n_items = x.shape
    blocks = (
        _column_blocks_items(x, regularization, dtype)
        if n_items <= n_users
        else _column_blocks_users(x, regularization, dtype)
    )
    keep_n = density * n_items
    index = np.int32 if n_items < 2**31 else np.int64
    rows = np.zeros(0, dtype=index)
    cols = np.zeros(0, dtype=index)
    vals = np.zeros(0, dtype=dtype)
    tau = 0.0  # the pool's threshold: every entry kept is >= it (and non-zero)

    def cut(rows, cols, vals):
        mags = np.abs(vals)
        threshold = np.partition(mags, mags.size - keep_n)[mags.size - keep_n]
        keep = mags >= threshold
        return rows[keep], cols[keep], vals[keep], float(threshold)

    for lo, block in blocks:
        r, c = np.nonzero(np.abs(block) >= tau if tau > 0 else block != 0)
        v = block[r, c].astype(dtype)
        r, c = r.astype(index), (c + lo).astype(index)
        if v.size > keep_n:  # no more than the pool can keep comes in from one block
            r, c, v, _ = cut(r, c, v)
        rows = np.concatenate([rows, r])
        cols = np.concatenate([cols, c])
        vals = np.concatenate([vals, v])
        if vals.size > 2 * keep_n:
            rows, cols, vals, tau = cut(rows, cols, vals)
    if vals.size > keep_n:
        rows, cols, vals, tau = cut(rows, cols, vals)
    out = sp.csr_matrix((vals, (rows, cols)), shape=(n_items, n_items))
    out.sum_duplicates()
    out.sort_indices()
    return out


def item_item_scores(rows: sp.csr_matrix, weights) -> np.ndarray:
    """x · B for a block of binary rows (m × n_items CSR): dense (m, n_items) float32."""
    out = rows @ weights
    if sp.issparse(out):
        out = out.toarray()
    return np.asarray(out, dtype=np.float32)


def hybrid_scores(factors, item_factors, rows: sp.csr_matrix, weights, beta: float) -> np.ndarray:
    """The hybrid's scores of a block of users: z(factors · item_factorsᵀ) + β·z(rows · B),
    float32 (m, n_items); ``factors`` (m × k) are the users' factors (or fold-ins), ``rows``
    their binary histories."""
    wals = np.asarray(factors, dtype=np.float32) @ np.asarray(item_factors, dtype=np.float32).T
    return blend(wals, item_item_scores(rows, weights), beta)


def standardize_rows(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (1 where that is 0), in place
    for a float array; statistics accumulated in float64."""
    scores = np.asarray(scores)
    if scores.ndim == 1:
        standardize_rows(scores[None, :])
        return scores
    mean = scores.mean(axis=1, dtype=np.float64, keepdims=True)
    sd = scores.std(axis=1, dtype=np.float64, keepdims=True)
    sd[~(sd > 0)] = 1.0
    scores -= mean.astype(scores.dtype)
    scores *= (1.0 / sd).astype(scores.dtype)
    return scores


def blend(wals_scores: np.ndarray, item_scores: np.ndarray, beta: float) -> np.ndarray:
    """z(wals_scores) + β · z(item_scores), row by row; overwrites both arguments and
    returns the first."""
    standardize_rows(wals_scores)
    if beta:
        standardize_rows(item_scores)
        item_scores *= item_scores.dtype.type(beta)
        wals_scores += item_scores
    return wals_scores


class EASE:
    """EASE's item-item weights, fitted on a user × item matrix (scikit-learn style).

    Parameters
    ----------
    regularization : float, default 500.0
        λ_B > 0. 500 is Steck's value for MovieLens 20M and the best on MovieLens 100K;
        denser data wants more (``walsrec train --item-item`` chooses it on validation).
    form : {"auto", "dense", "sparse"}, default "auto"
        "auto": dense up to ``max_dense_items`` items, else sparse.
    density : int, default 100
        Sparse form: entries of B kept per item on average.
    max_dense_items : int, default DENSE_MAX_ITEMS (20,000)
        Where "auto" switches to the sparse form; "dense" refuses larger catalogues.
    dtype : {"float32", "float64"}, default "float32"

    Attributes
    ----------
    weights_ : ndarray (n_items, n_items) or scipy.sparse.csr_matrix
        B, zero diagonal.
    form_ : str
        "dense" or "sparse".
    n_items_ : int
    """

    def __init__(
        self,
        regularization: float = 500.0,
        *,
        form: str = "auto",
        density: int = DEFAULT_DENSITY,
        max_dense_items: int = DENSE_MAX_ITEMS,
        dtype: str = "float32",
    ) -> None:
        self.regularization = regularization
        self.form = form
        self.density = density
        self.max_dense_items = max_dense_items
        self.dtype = dtype

    def get_params(self) -> dict[str, Any]:
        return {
            "regularization": self.regularization,
            "form": self.form,
            "density": self.density,
            "max_dense_items": self.max_dense_items,
            "dtype": self.dtype,
        }

    def fit(self, user_items: Any) -> EASE:
        """Fit B on ``user_items`` (scipy.sparse, n_users × n_items; every stored entry
        counts as 1). Returns ``self``."""
        owner = "parameter of EASE"
        lam = check_real(
            self.regularization, "regularization", owner, low=0, low_open=True, kind="float"
        )
        check_option(self.form, "form", owner, EASE_FORMS, rule=f"one of {list(EASE_FORMS)}")
        density = check_int(self.density, "density", owner, 1)
        max_dense = check_int(self.max_dense_items, "max_dense_items", owner, 0)
        check_option(self.dtype, "dtype", owner, ("float32", "float64"))
        if not sp.issparse(user_items):
            raise InvalidParameterError(
                "The 'user_items' parameter of EASE.fit must be a scipy.sparse matrix. Got "
                f"{type(user_items).__name__} instead."
            )
        x = binary_rows(user_items, np.dtype(self.dtype))
        n_users, n_items = x.shape
        form = self.form
        if form == "auto":
            form = "dense" if n_items <= max_dense else "sparse"
        if form == "dense" and n_items > max_dense:
            raise InvalidParameterError(
                f"EASE's dense form holds an n_items² array: the 'max_dense_items' parameter "
                f"allows {max_dense:,} items. Got {n_items:,} items (use form='sparse', or "
                f"raise max_dense_items if {4 * n_items**2 / 1e9:.1f} GB is there)."
            )
        if form == "sparse" and min(n_users, n_items) > SPARSE_MAX_SIDE:
            raise InvalidParameterError(
                f"EASE's sparse form factorises a dense matrix of the smaller side of the "
                f"data, at most {SPARSE_MAX_SIDE:,}. Got {n_users:,} users × {n_items:,} items."
            )
        dtype = np.dtype(self.dtype).type
        if form == "dense":
            self.weights_ = ease_dense(x, lam, dtype)
        else:
            self.weights_ = ease_sparse(x, lam, density, dtype)
        self.form_ = form
        self.n_items_ = n_items
        return self

    def scores(self, rows: sp.spmatrix) -> np.ndarray:
        """x · B for the rows of a user × item matrix (any stored entry counts as 1):
        float32 (m, n_items)."""
        return item_item_scores(binary_rows(rows), self.weights_)
