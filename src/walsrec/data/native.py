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

from walsrec._files import atomic_write_text, read_versioned_json
from walsrec.errors import DataFormatError

__all__ = ["load_csr", "save_csr"]

FORMAT_VERSION = 1
_PARTS = ("indptr", "indices", "data")


def _index_dtype(matrix: sp.csr_matrix) -> type:
    fits = max(matrix.nnz, *matrix.shape) < np.iinfo(np.int32).max
    return np.int32 if fits else np.int64


def save_csr(directory: str | os.PathLike, name: str, matrix: sp.csr_matrix) -> None:
    """Write ``matrix`` (CSR, sorted indices) as plain arrays; each file renamed into place."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    idx = _index_dtype(matrix)
    arrays = {
        "indptr": np.asarray(matrix.indptr, dtype=idx),
        "indices": np.asarray(matrix.indices, dtype=idx),
        "data": np.asarray(matrix.data),
    }
    for part, arr in arrays.items():
        tmp = directory / f".{name}.{part}.tmp.npy"
        np.save(tmp, arr, allow_pickle=False)
        os.replace(tmp, directory / f"{name}.{part}.npy")
    meta = {
        "format_version": FORMAT_VERSION,
        "shape": list(matrix.shape),
        "nnz": int(matrix.nnz),
        "dtype": str(matrix.dtype),
        "index_dtype": np.dtype(idx).name,
    }
    atomic_write_text(directory / f"{name}.json", json.dumps(meta, indent=2) + "\n")


def load_csr(directory: str | os.PathLike, name: str, mmap: bool = True) -> sp.csr_matrix:
    """Load a matrix written by :func:`save_csr`, memory-mapped unless ``mmap=False``."""
    directory = Path(directory)
    meta_path = directory / f"{name}.json"
    meta = read_versioned_json(meta_path, FORMAT_VERSION, "not a walsrec native matrix.")
    arrays = {}
    for part in _PARTS:
        path = directory / f"{name}.{part}.npy"
        try:
            arrays[part] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}: cannot be read ({exc}).") from None
    n_rows, n_cols = meta["shape"]
    if (
        arrays["indptr"].shape != (n_rows + 1,)
        or len(arrays["indices"]) != meta["nnz"]
        or len(arrays["data"]) != meta["nnz"]
    ):
        raise DataFormatError(
            f"{directory}/{name}.*.npy: array lengths do not match {meta_path} "
            f"(shape {meta['shape']}, nnz {meta['nnz']}); the files are truncated or mixed up."
        )
    return sp.csr_matrix(
        (arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n_rows, n_cols), copy=False
    )
