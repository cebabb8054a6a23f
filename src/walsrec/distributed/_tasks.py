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
    params: dict[str, Any],
    row_weights,
    col_weights,
):
    """Rows ``lo:hi`` of the native matrix ``directory/name`` as the kernels' ``_Side``.

    ``by_rows``: the matrix is user_items (the row half-step); else item_users, whose CSR
    arrays are exactly those of user_items in CSC (the column half-step). Only the slice is
    read from the memory-mapped files.
    """
    from walsrec.data.native import load_csr

    m = load_csr(directory, name, mmap=True)
    indptr = np.asarray(m.indptr[lo : hi + 1], dtype=np.int64)
    a, b = int(indptr[0]), int(indptr[-1])
    data = np.array(m.data[a:b])
    if data.size and not np.isfinite(data).all():
        p = int(np.flatnonzero(~np.isfinite(data))[0])
        row = lo + int(np.searchsorted(indptr - a, p, side="right") - 1)
        raise DataFormatError(
            f"{directory}/{name}.data.npy: value {float(data[p])!r} of row {row} (entry "
            f"{a + p}) is not finite."
        )
    part = sp.csr_matrix(
        (data, np.array(m.indices[a:b]), indptr - a), shape=(hi - lo, m.shape[1]), copy=False
    )
    model = _model(params, row_weights, col_weights)
    subset = np.arange(lo, hi, dtype=np.int64)
    return model._side(part, None, by_rows, tuple(full_shape), subset)


def side_stats(side, w0: float) -> np.ndarray:
    """(Σ_obs (W − w0), number of stored entries) of one partition, float64."""
    return np.array([side.sum_w_excess(w0), float(side.indices.shape[0])])


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
    """Rows ``lo:hi`` of a factor matrix saved as .npy (a checkpoint), memory-mapped."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.array(arr[lo:hi], dtype=np.dtype(dtype))


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


def solve(side, start, rot_full, g, q, params: dict[str, Any], lo: int, which: str) -> dict:
    """One partition's half-step: new factors, summed loss terms and the new Gramian part.

    ``rot_full`` is the whole fixed factor matrix rotated by ``q`` (eigenvectors of its
    Gramian, eigenvalues ``g``): exactly the state ``WALS._fixed_state`` would build.
    """
    model = _model(params)
    fixed_which = "item" if which == "user" else "user"
    axis = "row" if which == "user" else "column"
    # the estimator's cache entry for the fixed side, built from what was shipped
    setattr(model, f"{fixed_which}_factors_", rot_full)
    model._cache = {fixed_which: {"array": rot_full, "gram": None, "rot": rot_full, "g": g, "q": q}}
    rows = np.arange(side.n_rows, dtype=np.int64)
    labels = rows + lo
    new, row_loss = model._solve(side, rows, fixed_which, start, axis, labels=labels)
    return {"factors": new, "terms": row_loss.sum(axis=0), "gram": gram(new)}


def pick(result: dict, key: str):
    return result[key]


def summary(result: dict) -> np.ndarray:
    """What the client needs of a solve: [obs, reg, Gramian.ravel()...] (float64)."""
    return np.concatenate([result["terms"], result["gram"].ravel()])


def observed_loss(side, block, right_full, params: dict[str, Any]) -> float:
    """Σ over the partition's stored entries of W (A − p)² − w0 p² (the kernels' loss)."""
    from walsrec.model._kernels import observed_loss as kernel
    from walsrec.model._threads import kernel_threads

    model = _model(params)
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
            right_full,
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
