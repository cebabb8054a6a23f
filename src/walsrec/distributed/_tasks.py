"""Functions that run on the Dask workers, one task each.

Every task reads its inputs from shared storage or from other tasks' results, so that the
scheduler can recompute any lost result from its lineage (a scattered array could not be).
The arithmetic is the single-machine estimator's: a worker builds a
:class:`~walsrec.model.wals.WALS` with the same parameters and calls its half-step helpers
(``_side``, ``_solve``, ``_matmul``) and kernels on its own partition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.errors import DataFormatError


def _model(params: dict[str, Any], row_weights=None, col_weights=None):
    from walsrec.model.wals import WALS

    model = WALS(**params)
    if row_weights is not None:
        model.row_weights = row_weights
    if col_weights is not None:
        model.col_weights = col_weights
    return model


def const(value):
    """A value as a task result: recomputable, unlike a scattered one."""
    return value


def load_side(
    directory: str,
    name: str,
    lo: int,
    hi: int,
    by_rows: bool,
    full_shape: tuple[int, int],
    nnz: int,
    params: dict[str, Any],
    row_weights,
    col_weights,
    whole_above: float,
):
    """Rows ``lo:hi`` of the native matrix ``directory/name`` as the kernels' ``_Side``.

    ``directory`` is a path or an fsspec URL. ``by_rows``: the matrix is user_items (the row
    half-step); else item_users, whose CSR arrays are exactly those of user_items in CSC (the
    column half-step). Only the slice is read (memory-mapped locally, by byte range from
    other filesystems). See :func:`touch` for ``whole_above``.
    """
    from walsrec.distributed._storage import join, npy_rows

    n_rows, n_cols = full_shape if by_rows else full_shape[::-1]
    base = join(directory, name)
    indptr = npy_rows(f"{base}.indptr.npy", lo, hi + 1, expect_len=n_rows + 1)
    indptr = indptr.astype(np.int64, copy=False)
    a, b = int(indptr[0]), int(indptr[-1])
    if not (0 <= a <= b <= nnz) or (indptr.size and np.any(np.diff(indptr) < 0)):
        raise DataFormatError(
            f"{base}.indptr.npy: rows {lo}:{hi} point at entries {a}:{b} of {nnz} (not a "
            "non-decreasing CSR index pointer)."
        )
    data = npy_rows(f"{base}.data.npy", a, b, expect_len=nnz)
    if data.size and not np.isfinite(data).all():
        p = int(np.flatnonzero(~np.isfinite(data))[0])
        row = lo + int(np.searchsorted(indptr - a, p, side="right") - 1)
        raise DataFormatError(
            f"{directory}/{name}.data.npy: value {float(data[p])!r} of row {row} (entry "
            f"{a + p}) is not finite."
        )
    indices = npy_rows(f"{base}.indices.npy", a, b, expect_len=nnz)
    part = sp.csr_matrix((data, indices, indptr - a), shape=(hi - lo, n_cols), copy=False)
    model = _model(params, row_weights, col_weights)
    subset = np.arange(lo, hi, dtype=np.int64)
    side = model._side(part, None, by_rows, tuple(full_shape), subset)
    return touch(side, whole_above)


def touch(side, whole_above: float):
    """Give ``side`` the sorted set of other-side indices it touches (``side.touched``).

    When that set holds at most ``whole_above`` × n_other indices, the partition's column
    indices are renumbered into it (``side.indices[p]`` becomes the position of the original
    index in ``touched``), so that its half-step reads a compact matrix of only those fixed
    rows; else ``side.touched`` is None and the half-step reads the whole fixed factor. The
    kernels see the same rows in the same order either way: the results are identical.
    Weights are computed before this (they need the original indices).
    """
    touched, local = np.unique(side.indices, return_inverse=True)
    if touched.shape[0] > whole_above * side.n_other:
        side.touched = None
    else:
        side.indices = np.ascontiguousarray(local.reshape(-1), dtype=side.indices.dtype)
        side.touched = touched.astype(side.indices.dtype)
    return side


def side_stats(side, w0: float, fixed_edges: np.ndarray) -> np.ndarray:
    """One partition at a glance, float64: [Σ_obs (W − w0), stored entries, 1 if it reads the
    whole fixed factor else 0, itemsize of its indices, then per fixed block (``fixed_edges``
    bounds them) the number of that block's rows it touches]."""
    if side.touched is None:
        counts = np.diff(fixed_edges)
    else:
        counts = np.diff(np.searchsorted(side.touched, fixed_edges))
    head = [
        side.sum_w_excess(w0),
        float(side.indices.shape[0]),
        float(side.touched is None),
        float(side.indices.dtype.itemsize),
    ]
    return np.concatenate([head, counts]).astype(np.float64)


def touched_of(side):
    """The partition's touched other-side indices (sorted), to send to the blocks' owners."""
    return side.touched


def rows_in(touched: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The touched indices in ``lo:hi``, relative to ``lo``: the rows to take from block lo:hi."""
    a, b = np.searchsorted(touched, [lo, hi])
    return touched[a:b] - touched.dtype.type(lo)


def take(block: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of a factor block (run where the block lives; only they travel)."""
    return np.ascontiguousarray(block[rows])


def init_block(kind: str, state: dict, n: int, k: int, init_std: float, dtype: str):
    """``n`` rows of initial factors drawn from a generator restored to ``state``.

    The client advanced its own generator past the earlier rows, so the blocks together are
    exactly ``WALS.initialize``'s draws.
    """
    if kind == "RandomState":
        rng = np.random.RandomState()
        rng.set_state(state)
    else:
        bitgen = getattr(np.random, state["bit_generator"])()
        bitgen.state = state
        rng = np.random.Generator(bitgen)
    return (rng.standard_normal((n, k)) * init_std).astype(np.dtype(dtype))


def load_block(path: str, lo: int, hi: int, dtype: str):
    """Rows ``lo:hi`` of a factor matrix saved as .npy (a checkpoint), path or URL."""
    from walsrec.distributed._storage import npy_rows

    return np.asarray(npy_rows(path, lo, hi), dtype=np.dtype(dtype))


def gram(block) -> np.ndarray:
    """BᵀB of a factor block, in its dtype (as the single machine), returned as float64."""
    from walsrec.model._threads import blas_threads

    with blas_threads(1):
        return (block.T @ block).astype(np.float64)


def reg(side, block) -> float:
    """Σ_i λ_i ‖b_i‖² of a partition."""
    return float(side.lam @ np.einsum("ij,ij->i", block, block).astype(np.float64))


def rotate(block, q, params: dict[str, Any]):
    """block @ Q: the fixed factors in the eigenbasis of their Gramian."""
    return _model(params)._matmul(block, q)


def concat(*blocks):
    return np.ascontiguousarray(np.concatenate(blocks, axis=0))


def _fixed(pieces, k: int, dtype) -> np.ndarray:
    """The fixed rows a partition reads: its pieces (whole blocks or taken rows) in order."""
    if not pieces:
        return np.empty((0, k), dtype=dtype)
    return concat(*pieces)


def solve(side, start, g, q, params: dict[str, Any], lo: int, which: str, *pieces) -> dict:
    """One partition's half-step: new factors, summed loss terms and the new Gramian part.

    ``pieces``, concatenated, are the fixed factors rotated by ``q`` (eigenvectors of their
    Gramian, eigenvalues ``g``): all of them, or only the rows the partition touches
    (``side.touched``, which its indices were renumbered into). The kernels read row
    ``side.indices[p]`` of it: exactly the rows ``WALS._fixed_state``'s Ṽ would give.
    """
    model = _model(params)
    fixed_which = "item" if which == "user" else "user"
    axis = "row" if which == "user" else "column"
    rot = _fixed(pieces, q.shape[0], q.dtype)
    # the estimator's cache entry for the fixed side, built from what was shipped
    setattr(model, f"{fixed_which}_factors_", rot)
    model._cache = {fixed_which: {"array": rot, "gram": None, "rot": rot, "g": g, "q": q}}
    rows = np.arange(side.n_rows, dtype=np.int64)
    labels = rows + lo
    new, row_loss = model._solve(side, rows, fixed_which, start, axis, labels=labels)
    return {"factors": new, "terms": row_loss.sum(axis=0), "gram": gram(new)}


def pick(result: dict, key: str):
    return result[key]


def summary(result: dict) -> np.ndarray:
    """What the client needs of a solve: [obs, reg, Gramian.ravel()...] (float64)."""
    return np.concatenate([result["terms"], result["gram"].ravel()])


def observed_loss(side, block, params: dict[str, Any], *pieces) -> float:
    """Σ over the partition's stored entries of W (A − p)² − w0 p² (the kernels' loss);
    ``pieces`` are the other side's factor rows the partition reads (see :func:`solve`)."""
    from walsrec.model._kernels import observed_loss as kernel
    from walsrec.model._threads import kernel_threads

    model = _model(params)
    right = _fixed(pieces, block.shape[1], block.dtype)
    rows = np.arange(side.n_rows)
    _, bounds = model._partition(side, rows, "loss")
    out = np.empty(side.n_rows, dtype=np.float64)
    with kernel_threads(model._n_threads()):
        kernel(
            side.indptr,
            side.indices,
            side.wdata,
            side.adata,
            bounds,
            block,
            right,
            float(params["unobserved_weight"]),
            out,
        )
    return float(out.sum())


def predict_shard(
    model_path: str,
    out_path: str,
    lo: int,
    hi: int,
    k: int,
    fmt: str,
    exclude_seen: bool,
    n_jobs: int | None,
) -> int:
    """Top-k of users ``lo:hi`` written to ``out_path`` (temporary name, then renamed)."""
    from pathlib import Path

    from walsrec.serving.model import load_model
    from walsrec.serving.predict import write_top_k

    model = load_model(model_path)
    users = np.arange(lo, hi, dtype=np.int64)
    write_top_k(
        model, Path(out_path), users, k=k, format=fmt, exclude_seen=exclude_seen, n_jobs=n_jobs
    )
    return int(users.size)
