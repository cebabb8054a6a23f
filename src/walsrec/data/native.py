"""The native copy of a sparse matrix: plain ``.npy`` arrays that load memory-mapped.

``DIR/NAME.indptr.npy``, ``DIR/NAME.indices.npy``, ``DIR/NAME.data.npy`` and
``DIR/NAME.json`` (shape, nnz, dtypes, format_version). Index arrays are int32 when the
matrix allows it and int64 otherwise, chosen so that scipy keeps them without copying.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from walsrec._files import atomic_write_text, load_npy, read_versioned_json, save_npy
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = ["check_csr", "load_csr", "save_csr"]

FORMAT_VERSION = 1
_PARTS = ("indptr", "indices", "data")


def _index_dtype(matrix: sp.csr_matrix) -> type:
    fits = max(matrix.nnz, *matrix.shape) < np.iinfo(np.int32).max
    return np.int32 if fits else np.int64


def save_csr(directory: str | os.PathLike, name: str, matrix: sp.csr_matrix) -> None:
    """Write ``matrix`` as plain arrays, each file renamed into place.

    What is written is what :func:`load_csr` accepts: canonical CSR (sorted indices,
    duplicates summed; the caller's matrix is not changed) with float data (float32 and
    float64 kept, other types as float64); non-finite values are refused.
    """
    directory = Path(directory)
    matrix = sp.csr_matrix(matrix)
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()
    data = np.asarray(matrix.data)
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    if not np.isfinite(data).all():
        raise InvalidParameterError(
            f"The 'matrix' argument of save_csr must hold finite values. Got "
            f"{float(data[~np.isfinite(data)][0])!r} instead."
        )
    directory.mkdir(parents=True, exist_ok=True)
    idx = _index_dtype(matrix)
    arrays = {
        "indptr": np.asarray(matrix.indptr, dtype=idx),
        "indices": np.asarray(matrix.indices, dtype=idx),
        "data": data,
    }
    for part, arr in arrays.items():
        save_npy(directory / f"{name}.{part}.npy", arr)
    meta = {
        "format_version": FORMAT_VERSION,
        "shape": list(matrix.shape),
        "nnz": int(matrix.nnz),
        "dtype": str(data.dtype),
        "index_dtype": np.dtype(idx).name,
    }
    atomic_write_text(directory / f"{name}.json", json.dumps(meta, indent=2) + "\n")


def _meta_error(meta_path: Path, what: str) -> DataFormatError:
    return DataFormatError(f"{meta_path}: {what}; not a walsrec native matrix description.")


def _check_meta(meta: dict, meta_path: Path) -> tuple[int, int, int]:
    shape, nnz = meta.get("shape"), meta.get("nnz")
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise _meta_error(meta_path, f"'shape' must be two ints >= 0, got {shape!r}")
    if not (isinstance(nnz, int) and not isinstance(nnz, bool) and nnz >= 0):
        raise _meta_error(meta_path, f"'nnz' must be an int >= 0, got {nnz!r}")
    return shape[0], shape[1], nnz


# Elements checked at a time: bounds the temporaries of a memory-mapped matrix's check.
_CHUNK = 1 << 22


def check_csr(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    shape: tuple[int, int],
    where: str,
    *,
    parts: dict[str, str] | None = None,
) -> None:
    """Refuse CSR arrays that would make scipy or a kernel read out of bounds.

    Checks dtypes (integer indices, real float data), ``indptr`` (length rows + 1,
    starting at 0, non-decreasing, ending at nnz), every index in ``[0, n_cols)``,
    indices strictly increasing within each row (sorted, no duplicates) and every value
    finite. Vectorised, in chunks: besides chunk-sized temporaries it allocates one byte
    per stored entry and one int64 per row, never a copy of a memory-mapped matrix (but
    it reads every page of it, so the first load of a file not in the page cache reads
    the whole file).
    A failure is a :class:`~walsrec.errors.DataFormatError` naming ``where`` (or the
    file of ``parts``: ``{"indptr": path, ...}``) and the first bad position.
    """
    parts = parts or {}

    def bad(part: str, what: str) -> DataFormatError:
        return DataFormatError(f"{parts.get(part, where)}: {what}; the matrix is corrupt.")

    n_rows, n_cols = shape
    for part, arr in (("indptr", indptr), ("indices", indices)):
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.dtype.itemsize not in (4, 8):
            raise bad(
                part,
                f"{part} must be a 1-d int32 or int64 array, got {arr.dtype} "
                f"with shape {arr.shape}",
            )
    if data.ndim != 1 or data.dtype.kind != "f" or data.dtype.itemsize not in (4, 8):
        raise bad(
            "data",
            f"data must be a 1-d float32 or float64 array, got {data.dtype} "
            f"with shape {data.shape}",
        )
    nnz = len(indices)
    if indptr.shape != (n_rows + 1,) or len(data) != nnz:
        raise bad(
            "indptr",
            f"array lengths (indptr {len(indptr)}, indices {nnz}, data "
            f"{len(data)}) do not fit shape {tuple(shape)}",
        )
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise bad(
            "indptr",
            f"indptr runs from {int(indptr[0])} to {int(indptr[-1])}, not from 0 to nnz {nnz}",
        )
    for lo in range(0, n_rows, _CHUNK):
        step = np.diff(np.asarray(indptr[lo : lo + _CHUNK + 1], dtype=np.int64))
        if step.size and step.min() < 0:
            row = lo + int(np.argmax(step < 0))
            raise bad(
                "indptr",
                f"indptr decreases at row {row} ({int(indptr[row])} then {int(indptr[row + 1])})",
            )
    # a position p is a row start when some indptr entry equals p; within a row the
    # indices must increase, so a non-increase is allowed only where a row starts
    starts = np.zeros(nnz + 1, dtype=np.bool_) if nnz else None
    if starts is not None:
        starts[np.asarray(indptr, dtype=np.int64)] = True
    for lo in range(0, nnz, _CHUNK):
        hi = min(lo + _CHUNK, nnz)
        idx = np.asarray(indices[lo:hi])
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= n_cols:
            pos = lo + int(np.argmax((idx < 0) | (idx >= n_cols)))
            raise bad(
                "indices", f"index {int(indices[pos])} at position {pos} is outside [0, {n_cols})"
            )
        prev = np.asarray(indices[lo - 1 : hi - 1] if lo else indices[0 : hi - 1])
        cur = idx if lo else idx[1:]
        first = lo if lo else 1
        wrong = (cur <= prev) & ~starts[first:hi]
        if wrong.any():
            pos = first + int(np.argmax(wrong))
            raise bad(
                "indices",
                f"indices are not increasing within a row at position {pos} "
                f"({int(indices[pos - 1])} then {int(indices[pos])})",
            )
        vals = np.asarray(data[lo:hi])
        finite = np.isfinite(vals)
        if not finite.all():
            pos = lo + int(np.argmin(finite))
            raise bad("data", f"value {float(data[pos])!r} at position {pos} is not finite")


def load_csr(directory: str | os.PathLike, name: str, mmap: bool = True) -> sp.csr_matrix:
    """Load a matrix written by :func:`save_csr`, memory-mapped unless ``mmap=False``.

    Everything is checked before use (:func:`check_csr`): a truncated, mixed-up or
    tampered file is a :class:`~walsrec.errors.DataFormatError` naming it, never a crash.
    """
    directory = Path(directory)
    meta_path = directory / f"{name}.json"
    meta = read_versioned_json(meta_path, FORMAT_VERSION, "not a walsrec native matrix.")
    n_rows, n_cols, nnz = _check_meta(meta, meta_path)
    arrays = {}
    paths = {part: str(directory / f"{name}.{part}.npy") for part in _PARTS}
    for part in _PARTS:
        path = paths[part]
        arrays[part] = load_npy(path, mmap=mmap)
    if (
        arrays["indptr"].shape != (n_rows + 1,)
        or arrays["indices"].shape != (nnz,)
        or arrays["data"].shape != (nnz,)
    ):
        raise DataFormatError(
            f"{directory}/{name}.*.npy: array lengths do not match {meta_path} "
            f"(shape {meta['shape']}, nnz {nnz}); the files are truncated or mixed up."
        )
    check_csr(
        arrays["indptr"],
        arrays["indices"],
        arrays["data"],
        (n_rows, n_cols),
        str(directory / name),
        parts=paths,
    )
    return sp.csr_matrix(
        (arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n_rows, n_cols), copy=False
    )
