"""The shards API: one TFRecord file at a time, as the Dask back end reads them.

:func:`list_shards` names the files a pattern matches (:class:`ShardFile`),
:func:`parse_shard` parses one into its records (:class:`ParsedShard`), and
:func:`scatter_rows` copies records to their rows' places in CSR arrays. Sizes left to be
inferred from the records are bounded (:func:`inferred_size`, :class:`InferredSizeError`)
so that one bad key or index cannot exhaust memory. :func:`walsrec.read_tfrecords` is
built from the same parts.
"""

from __future__ import annotations

import glob as _glob
import gzip
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from walsrec.data.tfrecord.decode import (
    _E_INDEX_RANGE,
    _fill_examples,
    _parse_error,
    _scan_examples,
)
from walsrec.data.tfrecord.framing import _check_framing, _is_gzip
from walsrec.data.tfrecord.layout import _INDICES
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "InferredSizeError",
    "ParsedShard",
    "ShardFile",
    "inferred_size",
    "list_shards",
    "parse_shard",
    "scatter_rows",
]

# A size left to be inferred from the records is at most _INFER_BASE + _INFER_PER_ITEM per
# record (rows) or per stored value (columns), and columns also at most 2**31 - 1, so that
# one bad key or index cannot make the reader (or training after it) allocate gigabytes:
# the arrays sized by it cost 16 bytes a row, while each record already costs more than
# 100 bytes to parse. A larger size has to be given.
_INFER_BASE = 2**20
_INFER_PER_ITEM = 16
_INFER_MAX_COLUMNS = 2**31 - 1


@dataclass
class ShardFile:
    """One TFRecord file to read: a local path, or an fsspec URL (``url`` True).

    With :func:`list_shards`, :func:`parse_shard` and :func:`scatter_rows`, the shards API
    that the Dask back end uses to parse each file on a worker.
    """

    name: str
    url: bool  # an fsspec URL rather than a local path

    def read(self) -> bytes:
        if self.url:
            import fsspec

            with fsspec.open(self.name, mode="rb") as f:
                return f.read()
        with open(self.name, "rb") as f:
            return f.read()


def list_shards(pattern: str | os.PathLike | Sequence) -> list[ShardFile]:
    """The files a pattern (a path, glob, fsspec URL or URL glob, or a list of them) names,
    as :func:`~walsrec.read_tfrecords` reads them; a pattern matching nothing is a
    DataFormatError."""
    if isinstance(pattern, (str, os.PathLike)):
        patterns = [os.fspath(pattern)]
    else:
        patterns = [os.fspath(p) for p in pattern]
        if not patterns:
            raise InvalidParameterError(
                "The 'pattern' argument of read_tfrecords must name at least one file. "
                "Got an empty list instead."
            )
    sources: list[ShardFile] = []
    for pat in patterns:
        if "://" in pat:
            import fsspec

            files = fsspec.open_files(pat, mode="rb")
            found = [f for f in files if _glob.has_magic(pat) or f.fs.isfile(f.path)]
            names = sorted(getattr(f, "full_name", f.path) for f in found)
            sources.extend(ShardFile(n, True) for n in names)
        elif _glob.has_magic(pat):
            names = sorted(p for p in _glob.glob(pat) if os.path.isfile(p))
            sources.extend(ShardFile(n, False) for n in names)
        else:
            names = [pat] if os.path.isfile(pat) else []
            sources.extend(ShardFile(n, False) for n in names)
        if not names:
            raise DataFormatError(f"no files match pattern {pat!r}")
    return sources


def _load(source: ShardFile) -> bytes:
    raw = source.read()
    if not _is_gzip(raw):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{source.name}: corrupt or truncated GZIP stream ({exc})") from None


@dataclass
class ParsedShard:
    """One file's records as :func:`parse_shard` returns them, in file order."""

    name: str
    keys: np.ndarray  # (n_records,) int64
    counts: np.ndarray  # (n_records,) int64
    indices: np.ndarray  # (nnz,) int32 or int64, each record's segment sorted
    bits: np.ndarray  # (nnz,) uint32, float32 bits


def parse_shard(
    source: ShardFile, vocab_size: int, index_dtype, infer_vocab: bool = False
) -> ParsedShard:
    """Parse one file; column indices must be < ``vocab_size`` (with ``infer_vocab``, the
    cap on indices when no vocabulary size was given)."""
    data = _load(source)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, lengths = _check_framing(source.name, data, buf)
    n = len(starts)
    spans = np.empty((n, 3, 3), dtype=np.int64)
    kinds = np.empty((n, 3), dtype=np.int64)
    counts = np.empty((n, 3), dtype=np.int64)
    code, r, detail = _scan_examples(buf, starts, lengths, spans, kinds, counts)
    if code:
        raise DataFormatError(_parse_error(source.name, code, r, detail, vocab_size, counts, None))
    nnz_per = counts[:, _INDICES].copy()
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nnz_per, out=offsets[1:])
    keys = np.empty(n, dtype=np.int64)
    idx = np.empty(offsets[-1], dtype=index_dtype)
    bits = np.empty(offsets[-1], dtype=np.uint32)
    code, r, detail = _fill_examples(
        buf, spans, kinds, counts, offsets, vocab_size, keys, idx, bits
    )
    if code == _E_INDEX_RANGE and infer_vocab and detail >= 0:
        where = f"{source.name}: record {r} (0-based)"
        raise _size_error(where, "column index", detail, "vocab_size", vocab_size, None)
    if code:
        raise DataFormatError(_parse_error(source.name, code, r, detail, vocab_size, counts, bits))
    return ParsedShard(source.name, keys, nnz_per, idx, bits)


@njit(cache=True, nogil=True)
def scatter_rows(keys, offsets, counts, idx, bits, indptr, out_idx, out_bits):
    """Copy each record's segment to its row's place in the CSR arrays."""
    for r in range(keys.shape[0]):
        d = indptr[keys[r]]
        s = offsets[r]
        for j in range(counts[r]):
            out_idx[d + j] = idx[s + j]
            out_bits[d + j] = bits[s + j]


class InferredSizeError(DataFormatError):
    """A key or index too large for the number of rows or columns to be inferred from it.

    ``parameter`` names the size to give instead ("n_rows" or "vocab_size"); ``reason`` is
    the message without the advice to give it, for callers with their own names for it."""

    def __init__(self, reason: str, parameter: str, advice: str):
        super().__init__(f"{reason}. {advice}")
        self.reason = reason
        self.parameter = parameter
        self.advice = advice

    def __reduce__(self):  # pickles across processes (Dask) with its three arguments
        return type(self), (self.reason, self.parameter, self.advice)


def _size_error(where: str, what: str, value: int, parameter: str, limit: int, read):
    """The InferredSizeError of a key (``parameter`` "n_rows") or a column index
    ("vocab_size") >= ``limit``; ``read`` is the number of records or values it counted."""
    per = "record" if parameter == "n_rows" else "stored value"
    rule = f"{_INFER_BASE} + {_INFER_PER_ITEM} per {per}"
    if parameter == "vocab_size":
        rule += f", at most {_INFER_MAX_COLUMNS}"
    if read is not None:
        rule += f"; {read} {per}s read"
    dimension = "n_rows" if parameter == "n_rows" else "the number of columns"
    plural = "keys" if parameter == "n_rows" else "column indices"
    reason = (
        f"{where}: {what} {value} is too large for {dimension} to be taken from the "
        f"records: without {parameter}, {plural} must be < {limit} ({rule}), so that one "
        "bad record cannot exhaust memory"
    )
    size = "rows" if parameter == "n_rows" else "columns"
    advice = f"If the data really has more than {value} {size}, pass {parameter}=<the {size}>."
    return InferredSizeError(reason, parameter, advice)


def _inference_limit(count: int, parameter: str = "n_rows") -> int:
    """Largest number of rows ("n_rows": from ``count`` records) or columns ("vocab_size":
    from ``count`` stored values) that may be inferred, + 1."""
    limit = _INFER_BASE + _INFER_PER_ITEM * count
    return min(limit, _INFER_MAX_COLUMNS) if parameter == "vocab_size" else limit


def inferred_size(largest: int, count: int, parameter: str, where: str) -> int:
    """The number of rows (``parameter`` "n_rows": ``largest`` key, ``count`` records) or
    columns ("vocab_size": ``largest`` index, ``count`` stored values) that records imply,
    under :func:`~walsrec.read_tfrecords`' limit on inferred sizes;
    :class:`InferredSizeError` naming ``where`` beyond it. For readers that gather keys
    from several places (Dask)."""
    limit = _inference_limit(count, parameter)
    if largest >= limit:
        what = "key" if parameter == "n_rows" else "column index"
        raise _size_error(where, what, int(largest), parameter, limit, count)
    return int(largest) + 1
