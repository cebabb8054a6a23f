"""Reading TFRecord files: :func:`read_tfrecords` (sparse rows into a CSR matrix) and
:func:`iter_records` (the raw records of one file).

:func:`read_tfrecords` parses the files in a few threads with the shards API
(:mod:`.shards`), then checks the keys across files (none negative, none repeated, all
below ``n_rows`` or the limit on inferred sizes) and places each record at its row.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_int
from walsrec.data.tfrecord.framing import _check_framing
from walsrec.data.tfrecord.layout import _MAX_FILE_THREADS
from walsrec.data.tfrecord.shards import (
    _INFER_MAX_COLUMNS,
    ParsedShard,
    ShardFile,
    _inference_limit,
    _load,
    _size_error,
    list_shards,
    parse_shard,
    scatter_rows,
)
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = ["iter_records", "read_tfrecords"]


def _parse_files(
    sources: list[ShardFile], vocab_size: int, index_dtype, infer_vocab: bool = False
) -> list[ParsedShard]:
    """Parse files in a few threads (reading, GZIP and the kernels release the GIL),
    keeping at most ``workers`` files in flight; errors surface in file order."""
    workers = min(len(sources), os.cpu_count() or 1, _MAX_FILE_THREADS)
    if workers <= 1:
        return [parse_shard(s, vocab_size, index_dtype, infer_vocab) for s in sources]
    parsed = []
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        queue = iter(sources)
        try:
            for source in itertools.islice(queue, workers):
                pending.append(
                    pool.submit(parse_shard, source, vocab_size, index_dtype, infer_vocab)
                )
            while pending:
                parsed.append(pending.popleft().result())
                source = next(queue, None)
                if source is not None:
                    pending.append(
                        pool.submit(parse_shard, source, vocab_size, index_dtype, infer_vocab)
                    )
        finally:
            for future in pending:
                future.cancel()
    return parsed


def _place(parsed: list[ParsedShard], g: int) -> tuple[str, int]:
    """(file name, record number) of the g-th record over all files."""
    for p in parsed:
        if g < len(p.keys):
            return p.name, g
        g -= len(p.keys)
    raise AssertionError(g)  # pragma: no cover


def iter_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Iterate over the raw records of one TFRecord file, checking both CRCs of each.

    Parameters
    ----------
    path : str or path-like
        A local path or an fsspec URL (``memory://``, ``gs://``, ...). Plain or
        GZIP-compressed (detected from the magic bytes).

    Yields
    ------
    bytes
        Each record's data (for walsrec's files, a serialized ``tf.train.Example``).

    Raises
    ------
    DataFormatError
        If the file does not exist, a CRC does not match, or the file is truncated. The
        whole file is checked before the first record is yielded.
    """
    name = os.fspath(path)
    source = ShardFile(name, "://" in name)
    if not ("://" in name or os.path.isfile(name)):
        raise DataFormatError(f"no files match pattern {name!r}")
    data = _load(source)
    starts, lengths = _check_framing(name, data, np.frombuffer(data, dtype=np.uint8))
    for s, n in zip((starts + 12).tolist(), lengths.tolist(), strict=True):
        yield data[s : s + n]


def read_tfrecords(
    pattern: str | os.PathLike | Sequence[str | os.PathLike],
    vocab_size: int | None,
    n_rows: int | None = None,
    *,
    dtype=np.float32,
) -> sp.csr_matrix:
    """Read TFRecord files of sparse rows (the course's layout) into a CSR matrix.

    Each record is a ``tf.train.Example`` with features ``key`` (Int64List of length 1,
    the row index), ``indices`` (Int64List, column indices) and ``values`` (FloatList).
    Files written by TensorFlow (plain or ``options="GZIP"``) and by
    :func:`~walsrec.write_tfrecords` read the same.

    Parameters
    ----------
    pattern : str, path-like, or list of them
        A local path, a glob (its matches are read in sorted order), an fsspec URL or URL
        glob (``file://``, ``memory://``, ``gs://``...), or a list of any of these (read in
        the given order). Every pattern must match at least one file.
    vocab_size : int or None
        Number of columns, >= 1: the vocabulary the column indices refer to. For
        ``items_for_user`` files this is the number of items, for ``users_for_item`` the
        number of users. None means the largest column index + 1, within the limit below.
    n_rows : int or None, default None
        Number of rows (>= 0); None means the largest key + 1, within the limit below.
    dtype : numpy float dtype, default np.float32
        ``np.float32`` or ``np.float64``; the values are stored as float32 in the files.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_rows, vocab_size)
        Row ``key`` holds the record's values at its indices, with sorted column indices
        (int32 when they fit, else int64); rows without a record are empty.

    Notes
    -----
    A size inferred from the records is checked before anything of that size is
    allocated, so that one bad record (a key of 10**9 in a 74-byte file) is an error and
    not a 7 GiB allocation: without ``n_rows`` keys must be < 2**20 + 16 x the number of
    records read, and without ``vocab_size`` column indices must be < 2**20 + 16 x the
    number of values read (and < 2**31 - 1). Larger data sets with mostly empty rows or
    columns pass the size. Files are parsed exactly as TensorFlow's
    ``tf.io.parse_single_example`` parses them, also where that departs from protobuf's
    rules for odd encodings (see the comment above the kernels of
    :mod:`walsrec.data.tfrecord.decode`).

    Raises
    ------
    DataFormatError
        With the file and the (0-based) record number, when no file matches a pattern, a
        file is truncated, a CRC does not match, a GZIP stream or protobuf is corrupt, a
        feature is missing or of the wrong type or length, ``indices`` and ``values``
        differ in length, a column index is negative or >= ``vocab_size`` (usually rows
        read with the wrong vocabulary), a record repeats a column index, a value is NaN
        or infinite, a key is negative or >= ``n_rows``, two records share a key, or a key
        or column index is beyond the limit on inferred sizes (Notes).
    InvalidParameterError
        If ``vocab_size``, ``n_rows`` or ``dtype`` break their rules.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, tempfile, os
    >>> m = sp.csr_matrix(np.array([[0, 1.5, 0], [0, 0, 0], [2.0, 0, -1.0]], np.float32))
    >>> from walsrec import read_tfrecords, write_tfrecords
    >>> d = tempfile.mkdtemp()
    >>> paths = write_tfrecords(m, os.path.join(d, "items_for_user"), shards=2)
    >>> back = read_tfrecords(os.path.join(d, "items_for_user-*"), vocab_size=3, n_rows=3)
    >>> (back != m).nnz
    0
    """
    infer_vocab = vocab_size is None
    vocab_size, n_rows, out_dtype = _checked_params(vocab_size, n_rows, dtype)
    index_dtype = np.int32 if vocab_size <= np.iinfo(np.int32).max else np.int64
    parsed = _parse_files(list_shards(pattern), vocab_size, index_dtype, infer_vocab)

    keys = np.concatenate([p.keys for p in parsed])
    counts = np.concatenate([p.counts for p in parsed])
    n_rows = _checked_n_rows(parsed, keys, n_rows)
    increasing = _check_unique_keys(parsed, keys)

    nnz = int(counts.sum())
    idx = parsed[0].indices if len(parsed) == 1 else np.concatenate([p.indices for p in parsed])
    bits = parsed[0].bits if len(parsed) == 1 else np.concatenate([p.bits for p in parsed])
    if infer_vocab:
        vocab_size = _inferred_vocab_size(parsed, idx, counts, nnz)
    return _assemble_csr(keys, counts, idx, bits, (n_rows, vocab_size), increasing, out_dtype)


def _checked_params(vocab_size, n_rows, dtype) -> tuple[int, int | None, np.dtype]:
    """``vocab_size`` (the cap on column indices when it is None), ``n_rows`` and the
    values' dtype, checked as :func:`read_tfrecords` takes them."""
    owner = "parameter of read_tfrecords"
    if vocab_size is None:
        vocab_size = _INFER_MAX_COLUMNS  # first a cap per file, then the limit on inference
    else:
        vocab_size = check_int(vocab_size, "vocab_size", owner, 1)
    if n_rows is not None:
        n_rows = check_int(n_rows, "n_rows", owner, 0)
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        out_dtype = None
    if out_dtype is None or out_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InvalidParameterError(
            "The 'dtype' parameter of read_tfrecords must be np.float32 or np.float64. "
            f"Got {dtype!r} instead."
        )
    return vocab_size, n_rows, out_dtype


def _checked_n_rows(parsed: list[ParsedShard], keys: np.ndarray, n_rows: int | None) -> int:
    """The number of rows: ``n_rows`` when given, else the largest key + 1 (within the limit
    on inferred sizes); a negative key, or one beyond either, is a DataFormatError."""
    if keys.size and keys.min() < 0:
        g = int(np.flatnonzero(keys < 0)[0])
        name, r = _place(parsed, g)
        raise DataFormatError(f"{name}: record {r} (0-based): negative key {int(keys[g])}")
    if n_rows is None:
        limit = _inference_limit(len(keys))
        if keys.size and keys.max() >= limit:
            g = int(np.flatnonzero(keys >= limit)[0])
            name, r = _place(parsed, g)
            where = f"{name}: record {r} (0-based)"
            raise _size_error(where, "key", int(keys[g]), "n_rows", limit, len(keys))
        return int(keys.max()) + 1 if keys.size else 0
    if keys.size and keys.max() >= n_rows:
        g = int(np.flatnonzero(keys >= n_rows)[0])
        name, r = _place(parsed, g)
        raise DataFormatError(
            f"{name}: record {r} (0-based): key {int(keys[g])} is >= n_rows={n_rows}. Were "
            "rows and columns swapped (e.g. users_for_item read as items_for_user), or is "
            "n_rows wrong?"
        )
    return n_rows


def _check_unique_keys(parsed: list[ParsedShard], keys: np.ndarray) -> bool:
    """Whether the keys increase in record order (the rows need no reordering); a key
    repeated is a DataFormatError naming its first repetition."""
    increasing = bool(np.all(keys[1:] > keys[:-1]))
    if not increasing:
        order = np.argsort(keys, kind="stable")
        dup = np.flatnonzero(keys[order[1:]] == keys[order[:-1]])
        if dup.size:
            j = dup[np.argmin(order[dup + 1])]
            first, second = int(order[j]), int(order[j + 1])
            name1, r1 = _place(parsed, first)
            name2, r2 = _place(parsed, second)
            raise DataFormatError(
                f"{name2}: record {r2} (0-based): duplicate key {int(keys[second])}, "
                f"already the key of record {r1} (0-based) of {name1}"
            )
    return increasing


def _inferred_vocab_size(
    parsed: list[ParsedShard], idx: np.ndarray, counts: np.ndarray, nnz: int
) -> int:
    """The largest column index + 1, within the limit on inferred sizes (else an
    InferredSizeError naming the first record beyond it)."""
    limit = _inference_limit(nnz, "vocab_size")
    vocab_size = int(idx.max()) + 1 if nnz else 0
    if vocab_size > limit:
        j = int(np.flatnonzero(idx >= limit)[0])  # still in record order
        g = int(np.searchsorted(np.cumsum(counts), j, side="right"))
        name, r = _place(parsed, g)
        where = f"{name}: record {r} (0-based)"
        raise _size_error(where, "column index", int(idx[j]), "vocab_size", limit, nnz)
    return vocab_size


def _assemble_csr(keys, counts, idx, bits, shape, increasing, out_dtype) -> sp.csr_matrix:
    """The CSR matrix of the records: record ``r``'s segment of ``idx`` / ``bits``
    (``counts[r]`` column indices and float32 bits) becomes row ``keys[r]``."""
    n_rows, vocab_size = shape
    nnz = int(counts.sum())
    row_nnz = np.zeros(n_rows, dtype=np.int64)
    row_nnz[keys] = counts
    ptr_dtype = np.int32 if nnz <= np.iinfo(np.int32).max and idx.dtype == np.int32 else np.int64
    indptr = np.zeros(n_rows + 1, dtype=ptr_dtype)
    np.cumsum(row_nnz, out=indptr[1:])
    if not increasing:
        offsets = np.zeros(len(keys), dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        out_idx = np.empty_like(idx)
        out_bits = np.empty_like(bits)
        scatter_rows(keys, offsets, counts, idx, bits, indptr, out_idx, out_bits)
        idx, bits = out_idx, out_bits
    values = bits.view(np.float32)
    if out_dtype != np.float32:
        values = values.astype(out_dtype)
    matrix = sp.csr_matrix((values, idx, indptr), shape=(n_rows, vocab_size))
    matrix.has_sorted_indices = True
    return matrix
