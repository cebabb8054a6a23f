"""Reading shared storage from the workers: POSIX paths and fsspec URLs.

A local file (a plain path, ``file://``) is memory-mapped and only the slice that is asked
for is copied out. Any other fsspec filesystem (``s3://``, ``gs://``, ``hdfs://``, ``http://``,
...) is read by byte range: the ``.npy`` header (two small reads) gives the data's offset,
shape and dtype, and one ranged read fetches rows ``lo:hi``; the rest of the file is never
transferred.
"""

from __future__ import annotations

import io
import json
import os
import struct

import numpy as np

from walsrec._files import load_npy
from walsrec.errors import DataFormatError

__all__ = ["is_url", "join", "npy_rows", "npy_shape", "read_json"]

_MAGIC = b"\x93NUMPY"


def is_url(location: str | os.PathLike) -> bool:
    """True when ``location`` names an fsspec protocol (``file://`` included)."""
    return "://" in str(location) or "::" in str(location)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for a path or a URL (no chained ``::`` URLs)."""
    return "/".join([str(base).rstrip("/"), *parts])


def _fs(location: str):
    """(filesystem, path inside it, memory-mappable) for a path or URL."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(str(location))
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return fs, path, isinstance(fs, LocalFileSystem) and "file" in protocols


def read_json(location: str) -> dict:
    """A JSON file at a path or URL; DataFormatError when missing or malformed."""
    fs, path, _ = _fs(location)
    try:
        text = fs.cat_file(path)
    except FileNotFoundError:
        raise DataFormatError(f"{location}: missing (not a walsrec native matrix).") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{location}: not valid JSON ({exc}).") from None


def isdir(location: str) -> bool:
    fs, path, _ = _fs(location)
    return bool(fs.isdir(path))


def _header(fs, path: str, location: str) -> tuple[int, tuple[int, ...], np.dtype]:
    """(data offset, shape, dtype) of a C-ordered ``.npy`` file read by byte range."""
    head = fs.cat_file(path, 0, 12)
    if len(head) < 10 or head[:6] != _MAGIC:
        raise DataFormatError(f"{location}: not a .npy file (bad magic string).")
    major = head[6]
    if major == 1:
        length = 10 + struct.unpack("<H", head[8:10])[0]
    elif major in (2, 3) and len(head) == 12:
        length = 12 + struct.unpack("<I", head[8:12])[0]
    else:
        raise DataFormatError(f"{location}: unsupported .npy format version {major}.")
    fp = io.BytesIO(fs.cat_file(path, 0, length))
    np.lib.format.read_magic(fp)
    reader = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    try:
        shape, fortran, dtype = reader(fp)
    except ValueError as exc:
        raise DataFormatError(f"{location}: bad .npy header ({exc}).") from None
    if fortran and len(shape) > 1:
        raise DataFormatError(f"{location}: Fortran-ordered arrays cannot be read by rows.")
    if dtype.hasobject:
        raise DataFormatError(f"{location}: object arrays are not plain data.")
    return length, tuple(shape), dtype


def npy_shape(location: str) -> tuple[int, ...]:
    """The shape of a ``.npy`` file at a path or URL (only its header is read)."""
    fs, path, local = _fs(location)
    try:
        if local:
            return tuple(load_npy(path, mmap=True).shape)
        return _header(fs, path, location)[1]
    except FileNotFoundError:
        raise DataFormatError(f"{location}: missing.") from None
    except ValueError as exc:
        raise DataFormatError(f"{location}: cannot be read ({exc}).") from None


def npy_rows(location: str, lo: int, hi: int, expect_len: int | None = None) -> np.ndarray:
    """Rows ``lo:hi`` (first axis) of a ``.npy`` file, as a new in-memory array.

    Local files are memory-mapped; other filesystems read the byte range of those rows.
    ``expect_len``: the first axis's length the caller's metadata gives; a different one is
    a DataFormatError (truncated or mixed-up files).
    """
    fs, path, local = _fs(location)
    try:
        if local:
            arr = load_npy(path, mmap=True)
            shape = arr.shape
        else:
            offset, shape, dtype = _header(fs, path, location)
    except FileNotFoundError:
        raise DataFormatError(f"{location}: missing.") from None
    except ValueError as exc:
        raise DataFormatError(f"{location}: cannot be read ({exc}).") from None
    if expect_len is not None and (not shape or shape[0] != expect_len):
        raise DataFormatError(
            f"{location}: {shape[0] if shape else 0} rows where its metadata gives "
            f"{expect_len}; the files are truncated or mixed up."
        )
    if local:
        return np.array(arr[lo:hi])
    row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    if hi <= lo:
        return np.empty((0, *shape[1:]), dtype=dtype)
    raw = fs.cat_file(path, offset + lo * row, offset + hi * row)
    if len(raw) != (hi - lo) * row:
        raise DataFormatError(
            f"{location}: rows {lo}:{hi} end past the end of the file (truncated)."
        )
    return np.frombuffer(raw, dtype=dtype).reshape((hi - lo, *shape[1:])).copy()
