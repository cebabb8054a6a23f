"""One WALS half-step on plain arrays: the part every back end shares.

:class:`~walsrec.model.wals.WALS` calls these functions on the whole matrix; the Dask back
end calls the same ones on each partition, on its workers. Nothing here keeps state
between calls.

* :class:`Settings` — what a half-step reads of an estimator's parameters.
* :func:`build_side` — one orientation of the training data as the kernels read it
  (:class:`Side`: the CSR of the rows being solved, their observed weights W and targets A,
  and each row's λ_i).
* :func:`fixed_side` — the state of the side held fixed (:class:`FixedSide`: its Gramian
  G = VᵀV, G's eigenbasis Q and eigenvalues g, the rotated factors Ṽ = VQ).
* :func:`solve_rows` — new factors for some rows of a side and their loss terms.
* :func:`observed_loss`, :func:`regularization_term`, :func:`assemble_loss` — the
  objective from per-row terms and the two Gramians, without densifying.

The model and the half-step's algebra are described in :mod:`walsrec.model.wals`; the numba
kernels live in ``_kernels.py`` and are imported on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_weight_vector
from walsrec._threads import (
    PARTS_PER_THREAD,
    blas_threads,
    readonly_inputs,
    resolve_n_jobs,
    run_parts,
)
from walsrec.errors import SingularSystemError
from walsrec.model import weighting

__all__ = [
    "FixedSide",
    "Settings",
    "Side",
    "assemble_loss",
    "build_side",
    "fixed_side",
    "gramian",
    "lambdas",
    "matmul",
    "observed_loss",
    "partition",
    "regularization_term",
    "solve_rows",
    "targets",
]

# The orchestration's own BLAS products (Gramians, rotations) never use threaded BLAS: on
# a busy machine it competed with the kernels' threads (a CG sweep on epinions, k = 128,
# n_jobs = 2, took 2.35 s with 2 BLAS threads against 0.90 s with one). Rotations of many
# rows instead run as row blocks on the kernels' threads, one single-threaded BLAS call per
# block (36165 × 128 rows: 8.7 ms against 19 ms; the Gramian gained nothing that way and
# stays one BLAS call).
# Fewest rows per block of the threaded rotations (``matmul``): a single-threaded BLAS call
# each.
BLOCK_ROWS = 512


def _kernels():
    # Imported lazily: numba compiles (or loads from its cache) only when a model is fitted.
    from walsrec.model import _kernels

    return _kernels


def _launch(kernel, inputs: tuple, outputs: tuple, bounds: np.ndarray, n_threads: int) -> None:
    """``kernel(*inputs, *outputs, part)`` for every part of ``bounds`` on ``n_threads``
    threads; the input arrays go read-only, so a memory-mapped matrix and one in memory
    share one compiled specialisation."""
    args = readonly_inputs(inputs) + outputs
    run_parts(lambda part: kernel(*args, part), bounds.shape[0] - 1, n_threads)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, eq=False)
class Settings:
    """The estimator parameters a half-step reads (see :class:`~walsrec.model.wals.WALS`
    for each). Validated by the estimator; build one with :meth:`of`."""

    embedding_dim: int
    dtype: str = "float32"
    unobserved_weight: float = 0.1
    regularization: float = 0.1
    regularization_exponent: float = 0.0
    row_weights: Any = 1.0
    col_weights: Any = 1.0
    confidence: str = "constant"
    alpha: float = 1.0
    epsilon: float = 1.0
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    targets: str = "values"
    solver: str = "cholesky"
    cg_steps: int = 3
    n_jobs: int | None = None

    @classmethod
    def of(cls, params: Mapping[str, Any], **overrides: Any) -> Settings:
        """The settings among ``params`` (e.g. ``WALS.get_params()``; other keys ignored)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{**{n: params[n] for n in names if n in params}, **overrides})

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def n_threads(self) -> int:
        return resolve_n_jobs(self.n_jobs)

    @property
    def w0(self) -> float:
        return float(self.unobserved_weight)


# --------------------------------------------------------------------------- the data side


class Side:
    """One orientation of the training data, as the kernels read it.

    ``indptr``/``indices`` are the CSR of the rows being solved (users for the row half-step,
    items for the column half-step), ``wdata``/``adata`` the observed weight W and target A
    of each stored entry, ``lam`` the per-row λ_i and ``n_other`` the other dimension.
    """

    def __init__(self, indptr, indices, wdata, adata, lam, n_other, sum_w_excess=None):
        self.indptr = indptr
        self.indices = indices
        self.wdata = wdata
        self.adata = adata
        self.lam = lam
        self.n_other = n_other
        self.counts = np.diff(indptr)
        self._sum_w = sum_w_excess

    def sum_w_excess(self, w0: float) -> float:
        """Σ_obs (W − w0), float64, computed once."""
        if self._sum_w is None:
            self._sum_w = float(np.sum(self.wdata, dtype=np.float64)) - w0 * self.wdata.shape[0]
        return self._sum_w

    def with_indices(self, indices: np.ndarray) -> Side:
        """The same rows, weights and λ with other column indices (e.g. renumbered into the
        rows of the fixed factors that a partition reads)."""
        return Side(
            self.indptr, indices, self.wdata, self.adata, self.lam, self.n_other, self._sum_w
        )

    @property
    def n_rows(self) -> int:
        return self.indptr.shape[0] - 1


def targets(settings: Settings, values: np.ndarray) -> np.ndarray:
    """A of the stored entries: their values, or 1 with targets="binary"."""
    if settings.targets == "binary":
        return np.ones(values.shape[0], dtype=settings.np_dtype)
    return np.ascontiguousarray(values, dtype=settings.np_dtype)


def lambdas(settings: Settings, counts: np.ndarray, n_other: int) -> np.ndarray:
    """λ_i = λ·(count_i + w0·n_other)^ν for every row, float64."""
    lam = float(settings.regularization)
    nu = float(settings.regularization_exponent)
    if nu == 0.0:
        return np.full(counts.shape[0], lam)
    base = counts + settings.w0 * n_other
    return lam * np.power(base.astype(np.float64), nu)


def confidence(
    settings: Settings, values, users, items, stats=None, **overrides
) -> np.ndarray | None:
    """c(r) per stored entry (None for confidence="constant"); see ``weighting``."""
    return weighting.confidence_values(
        values,
        users,
        items,
        confidence=settings.confidence,
        alpha=float(settings.alpha),
        epsilon=float(settings.epsilon),
        bm25_k1=float(settings.bm25_k1),
        bm25_b=float(settings.bm25_b),
        stats=stats,
        **overrides,
    )


def observed_weights(
    settings: Settings, own, other, counts: np.ndarray, indices: np.ndarray, conf
) -> np.ndarray:
    """W = w0 + own_i·other_j·c(r_ij) of every stored entry, in the settings' dtype.

    ``own`` is the solved rows' weight (a scalar or one per row), ``other`` the other
    side's (a scalar or one per column, read at ``indices``), ``conf`` the confidences or
    None (all 1)."""
    dt = settings.np_dtype
    w0 = settings.w0
    if np.ndim(own) == 0 and np.ndim(other) == 0 and conf is None:
        return np.full(indices.shape[0], w0 + own * other, dtype=dt)
    own_e = own if np.ndim(own) == 0 else np.repeat(own, counts)
    other_e = other if np.ndim(other) == 0 else other[indices]
    rc = own_e * other_e if conf is None else own_e * other_e * conf
    return np.ascontiguousarray(w0 + rc, dtype=dt)


def build_side(
    settings: Settings,
    m: sp.spmatrix,
    weights: sp.spmatrix | None,
    by_rows: bool,
    full_shape: tuple[int, int],
    subset: np.ndarray | None = None,
    stats: weighting.WeightingStats | None = None,
) -> Side:
    """Kernel arrays for the row half-step (``m`` CSR) or the column half-step (``m`` CSC).

    ``m`` holds the rows (or columns) ``subset`` of a matrix of ``full_shape`` (None: all),
    validated and canonical; ``weights`` (same pattern) replace w0 + R_i·C_j·c(r_ij).
    ``stats`` are BM25/TF-IDF's statistics of the whole matrix.
    """
    n_users, n_items = full_shape
    n_other = n_items if by_rows else n_users
    indptr = m.indptr.astype(np.int64, copy=False)
    idx_dt = np.int32 if max(m.shape) < 2**31 - 1 else np.int64
    indices = np.ascontiguousarray(m.indices, dtype=idx_dt)
    adata = targets(settings, m.data)
    counts = np.diff(indptr)
    if weights is None:
        rw = check_weight_vector(settings.row_weights, "row_weights", n_users)
        cw = check_weight_vector(settings.col_weights, "col_weights", n_items)
        own, other = (rw, cw) if by_rows else (cw, rw)
        if subset is not None and np.ndim(own) == 1:
            own = own[subset]
        conf = None
        if settings.confidence != "constant":
            outer = np.arange(counts.shape[0]) if subset is None else np.asarray(subset)
            outer = np.repeat(outer, counts)
            users, items = (outer, indices) if by_rows else (indices, outer)
            conf = confidence(settings, m.data, users, items, stats=stats)
        wdata = observed_weights(settings, own, other, counts, indices, conf)
    else:
        wdata = np.ascontiguousarray(weights.data, dtype=settings.np_dtype)
    lam = lambdas(settings, counts, n_other)
    return Side(indptr, indices, wdata, adata, lam, n_other)


# --------------------------------------------------------------------------- the fixed side


@dataclass(frozen=True, eq=False)
class FixedSide:
    """The side held fixed in a half-step: its Gramian G = VᵀV (float64), and once rotated,
    G's eigenvalues ``g`` (float64, clipped at 0) and eigenvectors ``q`` (the factors'
    dtype) with the rotated factors ``rot`` = VQ. ``factors`` is the array it was built from
    (None when only rotated rows were given)."""

    factors: np.ndarray | None
    gram: np.ndarray | None
    g: np.ndarray | None = None
    q: np.ndarray | None = None
    rot: np.ndarray | None = None

    @property
    def rotated(self) -> bool:
        return self.rot is not None

    @classmethod
    def from_rotation(cls, rot: np.ndarray, g: np.ndarray, q: np.ndarray) -> FixedSide:
        """The state of rows already rotated elsewhere (``rot`` = VQ, or some of its rows)."""
        return cls(None, None, g, q, rot)


def gramian(factors: np.ndarray) -> np.ndarray:
    """VᵀV, computed in the factors' dtype (a float64 copy of a float32 matrix costs more
    than the product) and returned as float64."""
    with blas_threads(1):
        return (factors.T @ factors).astype(np.float64)


def eigenbasis(gram: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(g, Q) of G = Q diag(g) Qᵀ: g float64 clipped at 0 (G is PSD; eigh may return
    -1e-17), Q in ``dtype``."""
    with blas_threads(1):
        g, q = np.linalg.eigh(gram)
    return np.clip(g, 0.0, None), q.astype(dtype)


def fixed_side(
    factors: np.ndarray,
    need_rotation: bool,
    n_threads: int,
    known: FixedSide | None = None,
) -> FixedSide:
    """The fixed side's state for ``factors``, reusing what ``known`` already holds when it
    was built from the same array object."""
    if known is None or known.factors is not factors or known.gram is None:
        known = FixedSide(factors, gramian(factors))
    if need_rotation and not known.rotated:
        g, q = eigenbasis(known.gram, factors.dtype)
        known = FixedSide(factors, known.gram, g, q, matmul(factors, q, n_threads))
    return known


def matmul(a: np.ndarray, b: np.ndarray, n_threads: int) -> np.ndarray:
    """a @ b for (n × k)·(k × k) in ``a``'s dtype: blocks of rows on the kernels' threads."""
    b = np.ascontiguousarray(b, dtype=a.dtype)
    if a.shape[0] < 2 * BLOCK_ROWS:
        with blas_threads(1):
            return np.ascontiguousarray(a @ b)
    a = np.ascontiguousarray(a)
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)

    # at least BLOCK_ROWS rows per block, at most two blocks per thread: each launch of a
    # block costs a Python call
    n_blocks = max(1, min(a.shape[0] // BLOCK_ROWS, 2 * n_threads))
    bounds = np.linspace(0, a.shape[0], n_blocks + 1).astype(np.int64)

    def block(i: int) -> None:
        rows = slice(bounds[i], bounds[i + 1])
        np.dot(a[rows], b, out=out[rows])  # BLAS releases the GIL

    run_parts(block, n_blocks, n_threads)
    return out


# --------------------------------------------------------------------------- solving


def partition(settings: Settings, side: Side, rows: np.ndarray, kind: str) -> tuple:
    """Per-row paths and part bounds of about equal estimated cost, for ``kind`` one of
    "cholesky", "cg", "loss"."""
    k = settings.embedding_dim
    n = side.counts[rows].astype(np.float64)
    if kind == "cholesky":
        # FMA counts of the two exact paths; Woodbury's short dot products run at about
        # 2/3 of the direct path's FMA rate (measured crossover: n ≈ 0.75·k at k = 32,
        # 64, 128), hence its factor 1.5.
        direct = n * (k * k / 2.0) + k**3 / 6.0 + k * k
        wood = 1.5 * (2 * n * k + n * n * (k / 2.0) + n**3 / 6.0 + 2 * k)
        paths = (wood < direct).astype(np.int8)
        cost = np.minimum(direct, wood)
    elif kind == "cg":
        paths = None
        cost = (settings.cg_steps + 1) * (k * k + 2.0 * n * k)
    else:  # loss
        paths = None
        cost = n * k + 8.0
    n_parts = max(1, min(rows.shape[0], settings.n_threads * PARTS_PER_THREAD))
    cum = np.cumsum(cost + 16.0)
    goals = cum[-1] * np.arange(1, n_parts) / n_parts if cum.size else np.empty(0)
    inner = np.searchsorted(cum, goals, side="right")
    bounds = np.concatenate([[0], inner, [rows.shape[0]]]).astype(np.int64)
    return paths, bounds


def _raise_singular(settings: Settings, axis: str, bad_rows, side: Side, labels) -> None:
    first = int(bad_rows[0])
    raise SingularSystemError(
        f"The {axis} half-step is singular for {bad_rows.shape[0]} {axis}(s) (first: "
        f"{axis} {int(labels[first])}, with {int(side.counts[first])} interactions, "
        f"embedding_dim="
        f"{settings.embedding_dim}, unobserved_weight={settings.unobserved_weight}, "
        f"regularization={settings.regularization}, "
        f"regularization_exponent={settings.regularization_exponent}, so its λ_i = "
        f"{float(side.lam[first]):.6g}): its normal equations have no unique solution. Set "
        f"'regularization' > 0 (e.g. 0.1) or 'unobserved_weight' > 0."
    )


def _presolve_check(settings: Settings, side: Side, rows: np.ndarray, axis: str, labels):
    """Systems that are singular by rank, before any arithmetic: raise with the fix."""
    lam = side.lam[rows]
    if settings.w0 == 0:
        bad = (lam == 0) & (side.counts[rows] < settings.embedding_dim)
    elif side.n_other < settings.embedding_dim:
        bad = lam == 0
    else:
        return
    if bad.any():
        _raise_singular(settings, axis, rows[bad], side, labels)


def solve_rows(
    settings: Settings,
    side: Side,
    rows: np.ndarray,
    fixed: FixedSide,
    start: np.ndarray,
    axis: str,
    solver: str | None = None,
    path: str = "auto",
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """New factors for ``rows`` of ``side`` against the rotated ``fixed`` side.

    Returns the factors (len(rows) × k) and, for each row (float64), its observed loss
    terms Σ_{j∈S_i} [W_ij (A_ij − u_i·v_j)² − w0 (u_i·v_j)²] and its regularisation term
    λ_i‖u_i‖², shape (len(rows), 2). The kernels read row ``side.indices[p]`` of
    ``fixed.rot``. ``start`` holds the current factors of ``rows`` (CG's warm start);
    ``axis`` ("row" or "column") and ``labels`` (the rows' indices; default ``rows``) name
    them in errors. ``solver`` defaults to the settings'; ``path`` forces the Cholesky
    solver's "direct" or "woodbury" path (tests).

    Raises :class:`~walsrec.errors.SingularSystemError` (nothing is returned then).
    """
    kern = _kernels()
    solver = solver or settings.solver
    dt = settings.np_dtype
    w0 = settings.w0
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    labels = rows if labels is None else labels
    _presolve_check(settings, side, rows, axis, labels)
    lam = np.ascontiguousarray(side.lam[rows])
    paths, bounds = partition(settings, side, rows, solver)
    n_threads = settings.n_threads
    row_loss = np.empty((rows.shape[0], 2), dtype=np.float64)
    arrays = (side.indptr, side.indices, side.wdata, side.adata, rows, bounds)
    if solver == "cholesky":
        if path == "direct":
            paths[:] = kern.PATH_DIRECT
        elif path == "woodbury":
            paths[:] = kern.PATH_WOODBURY
        out_rot = np.empty((rows.shape[0], settings.embedding_dim), dtype=dt)
        flags = np.empty(rows.shape[0], dtype=np.int8)
        # A pivot below eps × the largest diagonal entry means a condition number past
        # what the dtype resolves: report it as singular rather than return noise.
        diag_tol = dt.type(np.finfo(dt).eps)
        inputs = (*arrays, paths, fixed.rot, w0 * fixed.g, lam, dt.type(w0), diag_tol)
        _launch(kern.solve_exact, inputs, (out_rot, flags, row_loss), bounds, n_threads)
        if flags.any():
            _raise_singular(settings, axis, rows[flags != 0], side, labels)
        new = matmul(out_rot, fixed.q.T, n_threads)
    else:
        x_rot = matmul(np.asarray(start, dtype=dt), fixed.q, n_threads)
        inputs = (*arrays, fixed.rot, w0 * fixed.g, lam, dt.type(w0), int(settings.cg_steps))
        _launch(kern.solve_cg, inputs, (x_rot, row_loss), bounds, n_threads)
        new = matmul(x_rot, fixed.q.T, n_threads)
    if not np.isfinite(new).all():
        raise SingularSystemError(
            f"The {axis} half-step produced non-finite factors (an ill-conditioned system "
            f"or overflowing data). Increase 'regularization' (now {settings.regularization})."
        )
    return new, row_loss


# --------------------------------------------------------------------------- loss


def observed_loss(
    settings: Settings, side: Side, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Per row of ``side`` (float64): Σ_{j∈S_i} [W_ij (A_ij − p_ij)² − w0 p_ij²] with
    p_ij = left_i·right_j (``right`` read at ``side.indices``)."""
    rows = np.arange(side.n_rows)
    _, bounds = partition(settings, side, rows, "loss")
    out = np.empty(side.n_rows, dtype=np.float64)
    inputs = (side.indptr, side.indices, side.wdata, side.adata, bounds, left, right, settings.w0)
    _launch(_kernels().observed_loss, inputs, (out,), bounds, settings.n_threads)
    return out


def regularization_term(lam: np.ndarray, factors: np.ndarray) -> float:
    """Σ_i λ_i ‖f_i‖² (float64)."""
    return float(lam @ np.einsum("ij,ij->i", factors, factors).astype(np.float64))


def assemble_loss(
    observed: float,
    reg: float,
    w0: float,
    gram_users: np.ndarray,
    gram_items: np.ndarray,
    n_entries: int,
    sum_w_excess: float,
) -> tuple[float, float, float]:
    """(L, data term, Σ_all W) from Σ_obs [W (A − p)² − w0 p²] (``observed``), the
    regularisation terms and the two Gramians: the unobserved part
    Σ_all w0 (u_i·v_j)² = w0·trace(UᵀU VᵀV) is never densified. ``n_entries`` is
    n_users · n_items, ``sum_w_excess`` Σ_obs (W − w0)."""
    data = observed + w0 * float(np.sum(gram_users * gram_items))
    sum_w = w0 * n_entries + sum_w_excess
    return data + reg, max(data, 0.0), sum_w
