"""Writing TFRecord files: :func:`write_tfrecords`, the rows of a sparse matrix as shards.

Rows are split into contiguous shards balanced by number of non-zeros; each shard is
encoded (:mod:`.encode`) here, then compressed if asked and written in a few threads,
each file under a temporary name renamed when complete.
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_int, check_option
from walsrec.data.tfrecord.encode import _encode
from walsrec.data.tfrecord.layout import _MAX_FILE_THREADS, _SORTED_ORDER
from walsrec.errors import InvalidParameterError

__all__ = ["encode_rows", "shard_cuts", "write_tfrecords"]

_COMPRESSIONS = {None: None, "none": None, "gzip": "gzip"}


def write_tfrecords(
    matrix,
    path_prefix: str | os.PathLike,
    *,
    shards: int = 1,
    compression: str | None = None,
    skip_empty: bool = True,
) -> list[str]:
    """Write the rows of a sparse matrix as TFRecord files of ``tf.train.Example`` records.

    Row ``i`` becomes one record with features ``key`` = [i], ``indices`` (its column
    indices, sorted) and ``values`` (float32), serialized as protobuf's deterministic
    serialization does (packed lists, map entries sorted by key: indices, key, values).
    TensorFlow reads the files with ``tf.data.TFRecordDataset`` and
    ``tf.io.parse_single_example``.

    Parameters
    ----------
    matrix : scipy.sparse matrix or array of shape (n_rows, n_cols)
        Any sparse format (converted to CSR); duplicate entries are summed. Values are
        written as float32 and must be finite.
    path_prefix : str or path-like
        Files are named ``{path_prefix}-{i:05d}-of-{shards:05d}.tfrecord`` (``.tfrecord.gz``
        with GZIP); missing parent directories are created.
    shards : int, default 1
        Number of files (>= 1). Rows are split into contiguous blocks balanced by number
        of non-zeros, so shard ``i`` holds lower row indices than shard ``i + 1``.
    compression : {None, "none", "gzip"}, default None
        "gzip" makes each file one GZIP stream, as TensorFlow's ``options="GZIP"``.
    skip_empty : bool, default True
        Write no record for rows without non-zeros (the keys of the others say where they
        belong). With False every row gets a record.

    Returns
    -------
    list of str
        The paths written, in shard order. Each file is written under a temporary name in
        the same directory and renamed when complete.

    Raises
    ------
    InvalidParameterError
        If ``matrix`` is not a real sparse matrix or has non-finite values, or if
        ``shards`` or ``compression`` break their rules.
    """
    shards, compression = _checked_params(matrix, shards, compression)
    csr, bits = _csr_with_float32_bits(matrix)
    indptr = np.asarray(csr.indptr, dtype=np.int64)
    bounds = _shard_bounds(indptr, shards)
    paths = _shard_paths(path_prefix, shards, compression)
    _write_shards(paths, bounds, skip_empty, indptr, csr.indices, bits, compression)
    return paths


def _checked_params(matrix, shards, compression) -> tuple[int, str | None]:
    """``shards`` and ``compression`` (None or "gzip") as :func:`write_tfrecords` takes
    them, after checking that ``matrix`` is a real 2-D sparse matrix."""
    func = "write_tfrecords"
    if not sp.issparse(matrix) or matrix.ndim != 2:
        raise InvalidParameterError(
            f"The 'matrix' parameter of {func} must be a 2-D scipy.sparse matrix. "
            f"Got {type(matrix).__name__} instead."
        )
    shards = check_int(shards, "shards", f"parameter of {func}", 1)
    key = compression.lower() if isinstance(compression, str) else compression
    # the rule lists _COMPRESSIONS' keys; the message shows what was given, not its key
    check_option(
        key,
        "compression",
        f"parameter of {func}",
        tuple(_COMPRESSIONS),
        show=lambda _: repr(compression),
    )
    if np.issubdtype(matrix.dtype, np.complexfloating) or matrix.dtype == object:
        raise InvalidParameterError(
            f"The 'matrix' parameter of {func} must have real values. "
            f"Got dtype {matrix.dtype} instead."
        )
    return shards, _COMPRESSIONS[key]


def _csr_with_float32_bits(matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``matrix`` as canonical CSR (duplicates summed) and its values' float32 bits
    (uint32); a value that is not finite as float32 is an InvalidParameterError."""
    csr = sp.csr_matrix(matrix)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    with np.errstate(over="ignore"):  # too large for float32: reported below as inf
        values = np.asarray(csr.data, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        j = int(np.flatnonzero(~finite)[0])
        row = int(np.searchsorted(csr.indptr, j, side="right") - 1)
        raise InvalidParameterError(
            "The 'matrix' parameter of write_tfrecords must have finite float32 values. Got "
            f"{csr.data[j]} at row {row}, column {int(csr.indices[j])} instead."
        )
    return csr, values.view(np.uint32)


def _shard_bounds(indptr: np.ndarray, shards: int) -> np.ndarray:
    """First row of each shard, then the number of rows: contiguous blocks balanced by
    number of non-zeros."""
    n_rows = len(indptr) - 1
    if indptr[-1] > 0:
        cuts = list(shard_cuts(indptr, 0, int(indptr[-1]), shards).values())
    else:
        cuts = (n_rows * np.arange(1, shards)) // shards
    return np.concatenate([[0], cuts, [n_rows]]).astype(np.int64)


def encode_rows(matrix: sp.csr_matrix, rows: np.ndarray, base: int = 0) -> np.ndarray:
    """The records :func:`write_tfrecords` writes for ``rows`` (int64 indices) of a
    canonical CSR block of float32 values whose first row is row ``base`` of the whole
    matrix (the keys), as one uint8 array: a file of shards written by blocks is the
    concatenation of its blocks' records."""
    bits = np.asarray(matrix.data, dtype=np.float32).view(np.uint32)
    indptr = np.asarray(matrix.indptr, dtype=np.int64)
    return _encode(indptr, matrix.indices, bits, rows, _SORTED_ORDER, base)


def shard_cuts(indptr: np.ndarray, lo: int, total: int, shards: int) -> dict[int, int]:
    """Where :func:`write_tfrecords`' shards start, among the rows of one block of a matrix.

    Shard s starts at the row boundary whose cumulative number of non-zeros is nearest to
    s/``shards`` of ``total`` (> 0), the matrix's non-zeros (the upper boundary on a tie).
    ``indptr`` is the block's CSR index pointer counted over the whole matrix (its first
    value the non-zeros before the block), ``lo`` its first row. Returns {s: first row of
    shard s} for the shards 1 … ``shards`` - 1 whose target falls in the block (above the
    block's first boundary, at most its last), so the blocks of a matrix together give
    every cut once, and the whole matrix as one block gives them all.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    targets = total * np.arange(1, shards) / shards
    inside = np.flatnonzero((targets > indptr[0]) & (targets <= indptr[-1]))
    t = targets[inside]
    above = np.searchsorted(indptr, t, side="left")  # >= 1: indptr[0] < t
    below = above - 1
    closer = t - indptr[below] < indptr[above] - t
    cuts = lo + np.where(closer, below, above)
    return {int(s) + 1: int(c) for s, c in zip(inside, cuts, strict=True)}


def _shard_paths(path_prefix, shards: int, compression: str | None) -> list[str]:
    """The file of each shard; the prefix's missing parent directories are created."""
    prefix = os.fspath(path_prefix)
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    parent = os.path.dirname(prefix)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return [f"{prefix}-{s:05d}-of-{shards:05d}{suffix}" for s in range(shards)]


def _write_shards(paths, bounds, skip_empty, indptr, indices, bits, compression) -> None:
    """Write rows ``bounds[s]`` to ``bounds[s + 1]`` of the CSR arrays (those with
    non-zeros only, with ``skip_empty``) to ``paths[s]``, for each shard ``s``."""
    row_nnz = np.diff(indptr)
    # Shards are encoded here one after the other and compressed and written in a few
    # threads (zlib and file writes release the GIL), at most ``workers`` in flight.
    workers = min(len(paths), os.cpu_count() or 1, _MAX_FILE_THREADS)
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        try:
            for s, path in enumerate(paths):
                rows = np.arange(bounds[s], bounds[s + 1], dtype=np.int64)
                if skip_empty:
                    rows = rows[row_nnz[rows] > 0]
                blob = _encode(indptr, indices, bits, rows, _SORTED_ORDER)
                pending.append(pool.submit(_write_atomic, path, blob, compression))
                if len(pending) >= workers:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _write_atomic(path: str, blob: np.ndarray, compression: str | None) -> None:
    """Write ``blob`` (GZIP-compressed if asked) to a temporary name, then rename it."""
    if compression == "gzip":
        # One gzip member with mtime 0, at zlib's default level as TensorFlow uses.
        blob = zlib.compress(blob, 6, wbits=31)
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
