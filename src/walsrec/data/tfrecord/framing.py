"""TFRecord framing: each record's length and data, each guarded by a masked CRC32C.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little-endian) | uint32 masked CRC32C of those 8 bytes
    | data (length bytes)          | uint32 masked CRC32C of the data

with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)``. A file may
also be one GZIP stream of such records (TensorFlow's ``options="GZIP"``), detected from
the magic bytes (:func:`_is_gzip`), not from the file name.

Here: walking the frames of a whole file and checking both CRCs of each
(:func:`_check_framing`), and storing the CRCs of encoded records (:func:`_put_crcs`).
Python only loops over records to compute CRC32C with ``google_crc32c`` (about 0.25 µs
per call).
"""

from __future__ import annotations

import google_crc32c
import numpy as np
from numba import njit

from walsrec.errors import DataFormatError

_MASK_DELTA = 0xA282EAD8
_GZIP_MAGIC = b"\x1f\x8b"

# Error codes of _frame_records (0 = no error); the Example decoder's codes follow on.
_E_TRUNC_HEADER = 1
_E_TRUNC_DATA = 2


@njit(cache=True, nogil=True)
def _frame_records(buf):
    """Walk the record framing of a whole file: (starts, lengths, stored length CRCs,
    stored data CRCs, error code, offset of the record that failed)."""
    n = buf.shape[0]
    count = 0
    p = 0
    err = 0
    while p < n:
        if n - p < 12:
            err = _E_TRUNC_HEADER
            break
        length = np.uint64(0)
        for b in range(8):
            length |= np.uint64(buf[p + b]) << np.uint64(8 * b)
        rem = np.uint64(n - p - 12)
        if length > rem or rem - length < np.uint64(4):
            err = _E_TRUNC_DATA
            break
        p += 16 + np.int64(length)
        count += 1
    starts = np.empty(count, dtype=np.int64)
    lengths = np.empty(count, dtype=np.int64)
    length_crcs = np.empty(count, dtype=np.uint32)
    data_crcs = np.empty(count, dtype=np.uint32)
    q = 0
    for r in range(count):
        length = np.int64(0)
        for b in range(8):
            length |= np.int64(buf[q + b]) << (8 * b)
        lc = np.uint32(0)
        dc = np.uint32(0)
        e = q + 12 + length
        for b in range(4):
            lc |= np.uint32(buf[q + 8 + b]) << np.uint32(8 * b)
            dc |= np.uint32(buf[e + b]) << np.uint32(8 * b)
        starts[r] = q
        lengths[r] = length
        length_crcs[r] = lc
        data_crcs[r] = dc
        q = e + 4
    return starts, lengths, length_crcs, data_crcs, err, p


@njit(cache=True, nogil=True)
def _put_crcs(out, starts, lengths, length_crcs, data_crcs):
    """Store the masked CRCs of each record, little-endian."""
    for r in range(starts.shape[0]):
        p = starts[r]
        e = p + 12 + lengths[r]
        lc = length_crcs[r]
        dc = data_crcs[r]
        for b in range(4):
            out[p + 8 + b] = (lc >> (8 * b)) & 0xFF
            out[e + b] = (dc >> (8 * b)) & 0xFF


def _mask(crcs: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC of an array of CRC32C values (uint32 arithmetic wraps)."""
    c = np.asarray(crcs, dtype=np.uint32)
    return ((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(_MASK_DELTA)


def _length_crcs(lengths: np.ndarray) -> np.ndarray:
    """Masked CRC32C of each record's 8 length bytes, one CRC call per distinct length."""
    unique, inverse = np.unique(lengths, return_inverse=True)
    crcs = [google_crc32c.value(int(v).to_bytes(8, "little")) for v in unique.tolist()]
    return _mask(np.array(crcs, dtype=np.uint32))[inverse]


def _data_crcs(data: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Masked CRC32C of each record's data; ``data`` must be ``bytes`` (the C extension
    takes no memoryviews), slices of it are short copies."""
    crc = google_crc32c.value
    s = (starts + 12).tolist()
    e = (starts + 12 + lengths).tolist()
    return _mask(
        np.fromiter((crc(data[a:b]) for a, b in zip(s, e, strict=True)), np.uint32, len(s))
    )


def _is_gzip(raw: bytes) -> bool:
    if raw[:2] != _GZIP_MAGIC:
        return False
    # A plain file whose first length happens to begin with the magic bytes still has a
    # valid length CRC; a GZIP header has one only with probability 2**-32.
    if len(raw) >= 12:
        stored = int.from_bytes(raw[8:12], "little")
        if int(_mask(np.array([google_crc32c.value(raw[:8])]))[0]) == stored:
            return False
    return True


def _check_framing(name: str, data: bytes, buf: np.ndarray):
    """Frame the records of one file and verify both CRCs of each."""
    starts, lengths, stored_lc, stored_dc, err, err_pos = _frame_records(buf)
    lc = _length_crcs(lengths)
    dc = _data_crcs(data, starts, lengths)
    bad_l = np.flatnonzero(lc != stored_lc)
    bad_d = np.flatnonzero(dc != stored_dc)
    first_l = bad_l[0] if bad_l.size else len(starts)
    first_d = bad_d[0] if bad_d.size else len(starts)
    if first_l < len(starts) and first_l <= first_d:
        r = int(first_l)
        raise DataFormatError(
            f"{name}: record {r} (0-based), at byte {int(starts[r])}: length CRC mismatch "
            f"(stored 0x{int(stored_lc[r]):08x}, computed 0x{int(lc[r]):08x}); "
            "the file is corrupt"
        )
    if first_d < len(starts):
        r = int(first_d)
        raise DataFormatError(
            f"{name}: record {r} (0-based), at byte {int(starts[r])}: data CRC mismatch "
            f"(stored 0x{int(stored_dc[r]):08x}, computed 0x{int(dc[r]):08x}); "
            "the file is corrupt"
        )
    if err:
        r = len(starts)
        remaining = len(data) - err_pos
        where = f"{name}: record {r} (0-based), at byte {err_pos}"
        if err == _E_TRUNC_HEADER:
            raise DataFormatError(
                f"{where}: truncated file: only {remaining} bytes left, a record header needs 12"
            )
        header = data[err_pos : err_pos + 12]
        length = int.from_bytes(header[:8], "little")
        stored = int.from_bytes(header[8:12], "little")
        computed = int(_length_crcs(np.array([length], dtype=np.uint64))[0])
        if stored != computed:
            raise DataFormatError(
                f"{where}: length CRC mismatch (stored 0x{stored:08x}, computed "
                f"0x{computed:08x}); the file is corrupt"
            )
        raise DataFormatError(
            f"{where}: truncated file: the header says {length} data bytes (plus 4 of CRC) "
            f"but only {remaining - 12} bytes follow it"
        )
    return starts, lengths
