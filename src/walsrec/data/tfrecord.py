"""The course's TFRecord layout: sparse rows as ``tf.train.Example`` records, read and written.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little-endian) | uint32 masked CRC32C of those 8 bytes
    | data (length bytes)          | uint32 masked CRC32C of the data

with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)``. A file may
also be one GZIP stream of such records (TensorFlow's ``options="GZIP"``); readers detect
it from the magic bytes, not from the file name.

Each record's data is a serialized ``tf.train.Example`` with three features, which is the
layout of Google's recommendation course (``items_for_user`` / ``users_for_item``):

- ``key``: Int64List of length 1, the row's index;
- ``indices``: Int64List, the column indices of the row's non-zeros;
- ``values``: FloatList, their values (float32).

Written files serialize each Example as protobuf's deterministic serialization does (packed
lists, map entries sorted by name: ``indices``, ``key``, ``values``). TensorFlow's Python
writer keeps insertion order instead; both are the same message to any protobuf parser, and
apart from that order walsrec's bytes are TensorFlow's (see tests/README.md).

Records are parsed as TensorFlow's ``tf.io.parse_single_example`` parses them, so every
file reads here as it reads in TensorFlow, including odd encodings where TensorFlow departs
from protobuf's rules (the comment above the decoding kernels lists them).

Decoding and encoding are numba kernels over one byte buffer per file; Python only loops
over records to compute CRC32C with ``google_crc32c`` (about 0.25 µs per call), never over
non-zeros. TensorFlow is not needed, and files stay byte-compatible with it both ways.
"""

from __future__ import annotations

import glob as _glob
import gzip
import itertools
import os
import uuid
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import google_crc32c
import numpy as np
import scipy.sparse as sp
from numba import njit

from walsrec._checks import check_int
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "InferredSizeError",
    "ParsedShard",
    "ShardFile",
    "inferred_size",
    "iter_records",
    "list_shards",
    "parse_shard",
    "read_tfrecords",
    "scatter_rows",
    "write_tfrecords",
]

_MASK_DELTA = 0xA282EAD8
_GZIP_MAGIC = b"\x1f\x8b"
_COMPRESSIONS = {None: None, "none": None, "gzip": "gzip"}
_MAX_THREADS = 8  # files read or written at once

# A size left to be inferred from the records is at most _INFER_BASE + _INFER_PER_ITEM per
# record (rows) or per stored value (columns), and columns also at most 2**31 - 1, so that
# one bad key or index cannot make the reader (or training after it) allocate gigabytes:
# the arrays sized by it cost 16 bytes a row, while each record already costs more than
# 100 bytes to parse. A larger size has to be given.
_INFER_BASE = 2**20
_INFER_PER_ITEM = 16
_INFER_MAX_COLUMNS = 2**31 - 1

# Feature slots, in the order protobuf's deterministic map serialization sorts the keys.
_INDICES, _KEY, _VALUES = 0, 1, 2
_SORTED_ORDER = np.array([_INDICES, _KEY, _VALUES], dtype=np.int64)

# Feature.kind oneof field numbers.
_KIND_NONE, _KIND_BYTES, _KIND_FLOAT, _KIND_INT64 = 0, 1, 2, 3
_KIND_NAMES = {0: "no list", 1: "a BytesList", 2: "a FloatList", 3: "an Int64List"}

# Error codes returned by the kernels (0 = no error).
_E_TRUNC_HEADER = 1
_E_TRUNC_DATA = 2
_E_CORRUPT = 3
_E_KEY_MISSING = 4
_E_KEY_TYPE = 5
_E_KEY_LENGTH = 6
_E_INDICES_MISSING = 7
_E_INDICES_TYPE = 8
_E_VALUES_MISSING = 9
_E_VALUES_TYPE = 10
_E_LENGTH_MISMATCH = 11
_E_INDEX_RANGE = 12
_E_NOT_FINITE = 13
_E_DUPLICATE_INDEX = 14
_E_FEATURES_FIELD = 15
_E_ENTRY = 16
_E_FEATURE_TAG = 17
_E_LIST = 18


# --------------------------------------------------------------------------------------
# Decoding kernels
#
# Records are parsed as TensorFlow parses them (tf.io.parse_single_example and
# tf.io.parse_example: tensorflow/core/util/example_proto_fast_parsing.cc), so that every
# file reads here exactly as it does in TensorFlow. For the encodings that writers produce
# this is protobuf's parsing; for odd ones TensorFlow's parser departs from protobuf's
# rules, and TensorFlow wins (each rule below was checked against TensorFlow 2.21, see
# test_tensorflow_parser_cases in tests/data/test_tfrecord.py):
#
# - Example: a field is Features only when its tag is the one byte 0x0a; other fields are
#   skipped (groups and wire types 6 and 7 are errors; a length running past the record
#   just ends it). The entries of several Features fields add up to one map, as in
#   protobuf.
# - Features: map entries only; another field is an error (protobuf skips it).
# - Map entry: exactly two fields, the name and the Feature, in either order; a repeated
#   one counts as one of the two, the later wins, and a third field is an error. So an
#   entry repeating its Feature (value) field is an error, where protobuf merges the two
#   Features (two Int64Lists [1, 2] and [3] would read [1, 2, 3]).
# - The same name in several entries: the last non-empty Feature wins, as protobuf's "last
#   entry wins" for maps except that an empty Feature counts as absent. Every non-empty
#   one must begin with a list tag (the others are not read further).
# - Feature: its first byte names its list (0x0a bytes, 0x12 float, 0x1a int64; anything
#   else is an error) and only that first list is read: the rest of the Feature is ignored.
#   Protobuf treats the kind as a oneof (a later list of another kind replaces the first,
#   one of the same kind merges into it).
# - Int64List / FloatList: one packed run (tag 0x0a), after which the rest of the list is
#   ignored, or unpacked values only (each tagged 0x08 / 0x0d; another field is an error).
#   Protobuf concatenates packed and unpacked runs and skips unknown fields.
# - Lengths are protobuf's 32-bit varints (the low 32 bits of up to 10 bytes). A message
#   or packed run longer than what encloses it is cut at the enclosing end
#   (CodedInputStream::PushLimit), except that a packed FloatList must hold
#   4 * (length // 4) bytes (a remainder is ignored); names and Features must fit.
# --------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _read_varint(buf, p, end):
    """Base-128 varint at ``buf[p:end]``: (value as uint64, next position, or -1 if malformed)."""
    result = np.uint64(0)
    shift = 0
    while True:
        if p >= end or shift > 63:
            return result, -1
        b = buf[p]
        p += 1
        result |= np.uint64(b & 0x7F) << np.uint64(shift)
        if b < 0x80:
            return result, p
        shift += 7


@njit(cache=True, nogil=True)
def _read_len(buf, p, end):
    """A length or tag as protobuf's ReadVarint32 reads it, the low 32 bits of a varint:
    (value as int64, next position, or -1 if malformed)."""
    v, q = _read_varint(buf, p, end)
    return np.int64(v & np.uint64(0xFFFFFFFF)), q


@njit(cache=True, nogil=True)
def _limit(q, n, end):
    """End of ``n`` bytes at ``q``, cut at ``end`` (a limit beyond the enclosing one is ignored)."""
    return q + n if n <= end - q else end


@njit(cache=True, nogil=True)
def _skip_unknown(buf, p, end):
    """Position after a field of an Example other than Features, or -1 if TensorFlow
    fails on it."""
    tag, q = _read_len(buf, p, end)
    if q < 0:
        return -1
    wire = tag & 7
    if wire == 0:
        _, q = _read_len(buf, q, end)
        return q
    if wire == 1:
        return q + 8 if q + 8 <= end else -1
    if wire == 5:
        return q + 4 if q + 4 <= end else -1
    if wire == 2:
        n, q = _read_len(buf, q, end)
        if q < 0 or n >= 2**31:  # Skip() refuses a negative int count and stays put
            return q
        return _limit(q, n, end)
    return -1  # groups (3, 4) and the undefined wire types 6, 7


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
def _feature_slot(buf, s, n):
    """Which of our features a map key names: _INDICES, _KEY, _VALUES or -1."""
    if n == 3:
        if buf[s] == 107 and buf[s + 1] == 101 and buf[s + 2] == 121:  # key
            return 1
    elif n == 7:
        if (
            buf[s] == 105  # indices
            and buf[s + 1] == 110
            and buf[s + 2] == 100
            and buf[s + 3] == 105
            and buf[s + 4] == 99
            and buf[s + 5] == 101
            and buf[s + 6] == 115
        ):
            return 0
    elif n == 6:
        if (
            buf[s] == 118  # values
            and buf[s + 1] == 97
            and buf[s + 2] == 108
            and buf[s + 3] == 117
            and buf[s + 4] == 101
            and buf[s + 5] == 115
        ):
            return 2
    return -1


@njit(cache=True, nogil=True)
def _parse_features_map(buf, p, end, spans, r):
    """Note in ``spans[r, slot]`` the Feature of each of our three names: (start, end, 1)
    of the last non-empty one, (x, x, 0) for a name seen with empty Features only.
    Returns (0, 0) or (error code, offset)."""
    while p < end:
        if buf[p] != 0x0A:
            return _E_FEATURES_FIELD, p
        n, q = _read_len(buf, p + 1, end)
        if q < 0:
            return _E_CORRUPT, p
        entry_end = _limit(q, n, end)
        name_s = -1
        name_n = 0
        val_s = entry_end  # no value field: an empty Feature
        val_e = entry_end
        for _ in range(2):  # the name and the value, in either order
            if q >= entry_end:
                return _E_ENTRY, p
            tag, q2 = _read_len(buf, q, entry_end)
            if q2 < 0 or (tag != 10 and tag != 18):
                return _E_ENTRY, q
            m, q3 = _read_len(buf, q2, entry_end)
            if q3 < 0 or m > entry_end - q3:
                return _E_CORRUPT, q
            if tag == 10:
                name_s = q3
                name_n = m
            else:
                val_s = q3
                val_e = q3 + m
            q = q3 + m
        if q != entry_end:
            return _E_ENTRY, q
        slot = _feature_slot(buf, name_s, name_n) if name_s >= 0 else -1
        if slot >= 0:
            if val_e > val_s:
                b = buf[val_s]
                if b != 0x0A and b != 0x12 and b != 0x1A:
                    return _E_FEATURE_TAG, val_s
                spans[r, slot, 0] = val_s
                spans[r, slot, 1] = val_e
                spans[r, slot, 2] = 1
            elif spans[r, slot, 2] == 0:
                spans[r, slot, 0] = val_s
                spans[r, slot, 1] = val_s
        p = entry_end
    return 0, 0


@njit(cache=True, nogil=True)
def _first_list(buf, s, e, want):
    """The first list of a non-empty Feature at ``buf[s:e]``, the only one TensorFlow reads:
    (kind, count, start, end, packed, error code, offset). The values lie in
    ``buf[start:end]``, one packed run, or unpacked fields when ``packed`` is 0. A list of
    a kind other than ``want`` is not read (the caller reports the kind)."""
    kind = np.int64(buf[s] >> 3)
    if kind != want:
        return kind, 0, s, s, 1, 0, 0
    n, q = _read_len(buf, s + 1, e)
    if q < 0:
        return kind, 0, s, s, 1, _E_CORRUPT, s
    list_end = _limit(q, n, e)
    if q == list_end:
        return kind, 0, q, q, 1, 0, 0
    b = buf[q]
    if b == 0x0A:  # a packed run: the rest of the list is ignored
        m, q2 = _read_len(buf, q + 1, list_end)
        if q2 < 0:
            return kind, 0, s, s, 1, _E_CORRUPT, q
        if kind == _KIND_FLOAT:
            count = m // 4
            if 4 * count > list_end - q2:
                return kind, 0, s, s, 1, _E_CORRUPT, q
            return kind, count, q2, q2 + 4 * count, 1, 0, 0
        run_end = _limit(q2, m, list_end)
        if run_end > q2 and buf[run_end - 1] >= 0x80:  # a varint cut by the run's end
            return kind, 0, s, s, 1, _E_CORRUPT, run_end - 1
        count = 0
        for j in range(q2, run_end):
            if buf[j] < 0x80:
                count += 1
        return kind, count, q2, run_end, 1, 0, 0
    tag = 0x08 if kind == _KIND_INT64 else 0x0D
    count = 0
    p = q
    while p < list_end:
        if buf[p] != tag:
            return kind, 0, s, s, 1, _E_LIST, p
        if kind == _KIND_INT64:
            _, p2 = _read_varint(buf, p + 1, list_end)
            if p2 < 0:
                return kind, 0, s, s, 1, _E_CORRUPT, p
            p = p2
        else:
            if p + 5 > list_end:
                return kind, 0, s, s, 1, _E_CORRUPT, p
            p += 5
        count += 1
    return kind, count, q, list_end, 0, 0, 0


@njit(cache=True, nogil=True)
def _scan_examples(buf, starts, lengths, spans, kinds, counts):
    """First pass over all Examples: locate the values of the three features and count them.

    Leaves in ``spans[r, slot]`` (start, end, packed) of the values, -1 for a missing
    feature. Returns (error code, record, detail); detail is a byte offset for corrupt
    records, the offending kind or count otherwise."""
    wanted = np.array([_KIND_INT64, _KIND_INT64, _KIND_FLOAT])
    for r in range(starts.shape[0]):
        s = starts[r] + 12
        e = s + lengths[r]
        for k in range(3):
            spans[r, k, 0] = -1
            spans[r, k, 1] = -1
            spans[r, k, 2] = 0
            kinds[r, k] = 0
            counts[r, k] = 0
        p = s
        while p < e:
            if buf[p] == 0x0A:  # Example.features
                n, q = _read_len(buf, p + 1, e)
                if q < 0:
                    return _E_CORRUPT, r, p
                sub_end = _limit(q, n, e)
                code, where = _parse_features_map(buf, q, sub_end, spans, r)
                if code:
                    return code, r, where
                p = sub_end
            else:
                q = _skip_unknown(buf, p, e)
                if q < 0:
                    return _E_CORRUPT, r, p
                p = q
        for k in range(3):
            if spans[r, k, 2] == 1:
                kind, count, a, b, packed, code, where = _first_list(
                    buf, spans[r, k, 0], spans[r, k, 1], wanted[k]
                )
                if code:
                    return code, r, where
                kinds[r, k] = kind
                counts[r, k] = count
                spans[r, k, 0] = a
                spans[r, k, 1] = b
                spans[r, k, 2] = packed
        if spans[r, _KEY, 0] < 0:
            return _E_KEY_MISSING, r, 0
        if kinds[r, _KEY] != _KIND_INT64:
            return _E_KEY_TYPE, r, kinds[r, _KEY]
        if counts[r, _KEY] != 1:
            return _E_KEY_LENGTH, r, counts[r, _KEY]
        if spans[r, _INDICES, 0] < 0:
            return _E_INDICES_MISSING, r, 0
        if kinds[r, _INDICES] != _KIND_INT64 and kinds[r, _INDICES] != _KIND_NONE:
            return _E_INDICES_TYPE, r, kinds[r, _INDICES]
        if spans[r, _VALUES, 0] < 0:
            return _E_VALUES_MISSING, r, 0
        if kinds[r, _VALUES] != _KIND_FLOAT and kinds[r, _VALUES] != _KIND_NONE:
            return _E_VALUES_TYPE, r, kinds[r, _VALUES]
        if counts[r, _INDICES] != counts[r, _VALUES]:
            return _E_LENGTH_MISMATCH, r, 0
    return 0, -1, 0


@njit(cache=True, nogil=True)
def _fill_int64(buf, s, e, packed, out, base, n, lo, hi):
    """Write the int64 values at ``buf[s:e]`` (a packed run, or unpacked fields) at
    ``out[base:base + n]``.

    Returns (0, 0), (1, offset) if a varint is malformed, or (2, value) for a value
    outside [lo, hi]."""
    c = 0
    q = s
    # The hot loop of decoding, varints inline.
    while q < e:
        if not packed:
            q += 1  # the field's tag, 0x08
        start = q
        b = buf[q]
        q += 1
        v = np.uint64(b & 0x7F)
        shift = np.uint64(7)
        while b >= 0x80:
            if q >= e or shift > np.uint64(63):
                return 1, start
            b = buf[q]
            q += 1
            v |= np.uint64(b & 0x7F) << shift
            shift += np.uint64(7)
        value = np.int64(v)
        if value < lo or value > hi:
            return 2, value
        if c < n:
            out[base + c] = value
        c += 1
    return 0, 0


@njit(cache=True, nogil=True)
def _fill_float(buf, s, e, packed, out, base, n):
    """Write the float32 values at ``buf[s:e]`` (a packed run, or unpacked fields), as raw
    bits, at ``out[base:base + n]``; returns -1, or the index into ``out`` of the first NaN
    or infinity."""
    c = 0
    bad = -1
    q = s
    while q < e:
        if not packed:
            q += 1  # the field's tag, 0x0d
        bits = (
            np.uint32(buf[q])
            | (np.uint32(buf[q + 1]) << np.uint32(8))
            | (np.uint32(buf[q + 2]) << np.uint32(16))
            | (np.uint32(buf[q + 3]) << np.uint32(24))
        )
        if c < n:
            out[base + c] = bits
            if (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000) and bad < 0:
                bad = base + c
        c += 1
        q += 4
    return bad


@njit(cache=True, nogil=True)
def _fill_examples(buf, spans, kinds, counts, offsets, vocab_size, keys, out_idx, out_bits):
    """Second pass: keys, column indices and value bits of every record, each record's
    indices sorted. Returns (error code, record, detail) like ``_scan_examples``."""
    one = np.empty(1, dtype=np.int64)
    lo = np.int64(-9223372036854775808)
    hi = np.int64(9223372036854775807)
    for r in range(spans.shape[0]):
        status, detail = _fill_int64(
            buf, spans[r, 1, 0], spans[r, 1, 1], spans[r, 1, 2], one, 0, 1, lo, hi
        )
        if status == 1:
            return _E_CORRUPT, r, detail
        keys[r] = one[0]
        n = counts[r, _INDICES]
        base = offsets[r]
        if n == 0:
            continue
        status, detail = _fill_int64(
            buf, spans[r, 0, 0], spans[r, 0, 1], spans[r, 0, 2], out_idx, base, n, 0, vocab_size - 1
        )
        if status == 1:
            return _E_CORRUPT, r, detail
        if status == 2:
            return _E_INDEX_RANGE, r, detail
        bad = _fill_float(buf, spans[r, 2, 0], spans[r, 2, 1], spans[r, 2, 2], out_bits, base, n)
        if bad >= 0:
            return _E_NOT_FINITE, r, bad
        seg = out_idx[base : base + n]
        ordered = True
        for j in range(1, n):
            if seg[j] <= seg[j - 1]:
                ordered = False
                break
        if not ordered:
            perm = np.argsort(seg, kind="mergesort")
            seg[:] = seg[perm]
            vals = out_bits[base : base + n]
            vals[:] = vals[perm]
            for j in range(1, n):
                if seg[j] == seg[j - 1]:
                    return _E_DUPLICATE_INDEX, r, np.int64(seg[j])
    return 0, -1, 0


@njit(cache=True, nogil=True)
def scatter_rows(keys, offsets, counts, idx, bits, indptr, out_idx, out_bits):
    """Copy each record's segment to its row's place in the CSR arrays."""
    for r in range(keys.shape[0]):
        d = indptr[keys[r]]
        s = offsets[r]
        for j in range(counts[r]):
            out_idx[d + j] = idx[s + j]
            out_bits[d + j] = bits[s + j]


# --------------------------------------------------------------------------------------
# Encoding kernels
# --------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _varint_size(v):
    """Bytes of the base-128 varint of a non-negative int64."""
    size = 1
    while v >= 128:
        v >>= 7
        size += 1
    return size


@njit(cache=True, nogil=True)
def _field_size(payload):
    """Bytes of a length-delimited field with a one-byte tag: tag + varint length + payload."""
    return 1 + _varint_size(payload) + payload


@njit(cache=True, nogil=True)
def _example_layout(n, index_bytes, key_bytes):
    """Sizes of the nested messages of one Example: (Int64List of indices, its Feature,
    FloatList, its Feature, Int64List of the key, its Feature, Features, Example)."""
    idx_list = _field_size(index_bytes) if n > 0 else 0
    idx_feature = _field_size(idx_list)
    val_list = _field_size(4 * n) if n > 0 else 0
    val_feature = _field_size(val_list)
    key_list = _field_size(key_bytes)
    key_feature = _field_size(key_list)
    features = (
        _field_size(_field_size(7) + _field_size(idx_feature))
        + _field_size(_field_size(3) + _field_size(key_feature))
        + _field_size(_field_size(6) + _field_size(val_feature))
    )
    example = _field_size(features)
    return idx_list, idx_feature, val_list, val_feature, key_list, key_feature, features, example


@njit(cache=True, nogil=True)
def _record_sizes(indptr, indices, rows, lengths):
    """Example length of each row in ``rows``; returns the total bytes of all records."""
    total = 0
    for r in range(rows.shape[0]):
        i = rows[r]
        index_bytes = 0
        for j in range(indptr[i], indptr[i + 1]):
            index_bytes += _varint_size(np.int64(indices[j]))
        n = indptr[i + 1] - indptr[i]
        layout = _example_layout(n, index_bytes, _varint_size(np.int64(i)))
        lengths[r] = layout[7]
        total += 16 + lengths[r]
    return total


@njit(cache=True, nogil=True)
def _put_varint(out, p, v):
    while v >= 128:
        out[p] = (v & 0x7F) | 0x80
        v >>= 7
        p += 1
    out[p] = v
    return p + 1


@njit(cache=True, nogil=True)
def _put_field_header(out, p, tag, payload):
    out[p] = tag
    return _put_varint(out, p + 1, payload)


_NAME_BYTES = np.frombuffer(b"indiceskeyvalues", dtype=np.uint8).copy()
_NAME_START = np.array([0, 7, 10, 16], dtype=np.int64)


@njit(cache=True, nogil=True)
def _put_name(out, p, slot):
    for j in range(_NAME_START[slot], _NAME_START[slot + 1]):
        out[p] = _NAME_BYTES[j]
        p += 1
    return p


@njit(cache=True, nogil=True)
def _encode_records(indptr, indices, bits, rows, lengths, order, out):
    """Write the framed records of ``rows`` (CRC fields left zero) into ``out``;
    returns the offset of each record. ``order`` is the order of the map entries."""
    name_len = np.array([7, 3, 6], dtype=np.int64)
    starts = np.empty(rows.shape[0], dtype=np.int64)
    p = 0
    for r in range(rows.shape[0]):
        i = rows[r]
        lo = indptr[i]
        hi = indptr[i + 1]
        n = hi - lo
        index_bytes = 0
        for j in range(lo, hi):
            index_bytes += _varint_size(np.int64(indices[j]))
        key_bytes = _varint_size(np.int64(i))
        layout = _example_layout(n, index_bytes, key_bytes)
        starts[r] = p
        length = lengths[r]
        for b in range(8):
            out[p + b] = (length >> (8 * b)) & 0xFF
        for b in range(4):
            out[p + 8 + b] = 0
        p += 12
        p = _put_field_header(out, p, 0x0A, layout[6])  # Example.features
        for k in range(3):
            slot = order[k]
            if slot == 0:
                feature = layout[1]
            elif slot == 1:
                feature = layout[5]
            else:
                feature = layout[3]
            entry = _field_size(name_len[slot]) + _field_size(feature)
            p = _put_field_header(out, p, 0x0A, entry)  # Features.feature map entry
            p = _put_field_header(out, p, 0x0A, name_len[slot])  # its key
            p = _put_name(out, p, slot)
            p = _put_field_header(out, p, 0x12, feature)  # its value, a Feature
            if slot == 0:
                p = _put_field_header(out, p, 0x1A, layout[0])  # Feature.int64_list
                if n > 0:
                    p = _put_field_header(out, p, 0x0A, index_bytes)  # packed values
                    for j in range(lo, hi):
                        p = _put_varint(out, p, np.int64(indices[j]))
            elif slot == 1:
                p = _put_field_header(out, p, 0x1A, layout[4])
                p = _put_field_header(out, p, 0x0A, key_bytes)
                p = _put_varint(out, p, np.int64(i))
            else:
                p = _put_field_header(out, p, 0x12, layout[2])  # Feature.float_list
                if n > 0:
                    p = _put_field_header(out, p, 0x0A, 4 * n)
                    for j in range(lo, hi):
                        v = bits[j]
                        out[p] = v & 0xFF
                        out[p + 1] = (v >> 8) & 0xFF
                        out[p + 2] = (v >> 16) & 0xFF
                        out[p + 3] = (v >> 24) & 0xFF
                        p += 4
        for b in range(4):
            out[p + b] = 0
        p += 4
    return starts


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


# --------------------------------------------------------------------------------------
# CRCs
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


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
    as :func:`read_tfrecords` reads them; a pattern matching nothing is a DataFormatError."""
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


def _load(source: ShardFile) -> bytes:
    raw = source.read()
    if not _is_gzip(raw):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{source.name}: corrupt or truncated GZIP stream ({exc})") from None


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


def _parse_error(name, code, r, detail, vocab_size, counts, bits):
    where = f"{name}: record {r} (0-based)"
    if code == _E_CORRUPT:
        return f"{where}: corrupt tf.train.Example protobuf at byte {detail} of the file"
    if code == _E_FEATURES_FIELD:
        return (
            f"{where}: the Example's Features message holds a field other than map entries "
            f"at byte {detail} of the file, which TensorFlow's parser rejects"
        )
    if code == _E_ENTRY:
        return (
            f"{where}: malformed Features map entry at byte {detail} of the file: "
            "TensorFlow's parser takes exactly two fields, the feature's name and its "
            "Feature (a third field, such as a repeated Feature, is an error)"
        )
    if code == _E_FEATURE_TAG:
        return (
            f"{where}: a Feature at byte {detail} of the file does not begin with its "
            "bytes_list, float_list or int64_list, which TensorFlow's parser rejects"
        )
    if code == _E_LIST:
        return (
            f"{where}: unsupported Int64List/FloatList encoding at byte {detail} of the "
            "file: TensorFlow's parser takes one packed run, or unpacked values only"
        )
    if code == _E_KEY_MISSING:
        return f"{where}: the Example has no 'key' feature"
    if code == _E_KEY_TYPE:
        return f"{where}: feature 'key' must be an Int64List, got {_KIND_NAMES[detail]}"
    if code == _E_KEY_LENGTH:
        return f"{where}: feature 'key' must hold exactly 1 value, got {detail}"
    if code == _E_INDICES_MISSING:
        return f"{where}: the Example has no 'indices' feature"
    if code == _E_INDICES_TYPE:
        return f"{where}: feature 'indices' must be an Int64List, got {_KIND_NAMES[detail]}"
    if code == _E_VALUES_MISSING:
        return f"{where}: the Example has no 'values' feature"
    if code == _E_VALUES_TYPE:
        return f"{where}: feature 'values' must be a FloatList, got {_KIND_NAMES[detail]}"
    if code == _E_LENGTH_MISMATCH:
        return (
            f"{where}: 'indices' has {counts[r, _INDICES]} values but 'values' has "
            f"{counts[r, _VALUES]}; they must have the same length"
        )
    if code == _E_INDEX_RANGE:
        if detail < 0:
            return f"{where}: negative column index {detail} in 'indices'"
        return (
            f"{where}: column index {detail} in 'indices' is >= vocab_size={vocab_size}. "
            "Were the rows read with the wrong vocabulary (rows and columns swapped, e.g. "
            "users_for_item read with the items vocabulary), or is vocab_size wrong?"
        )
    if code == _E_NOT_FINITE:
        value = bits[detail : detail + 1].view(np.float32)[0]
        return f"{where}: value {value} in 'values' is not finite"
    if code == _E_DUPLICATE_INDEX:
        return f"{where}: column index {detail} appears more than once in 'indices'"
    raise AssertionError(code)  # pragma: no cover


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


def _parse_files(
    sources: list[ShardFile], vocab_size: int, index_dtype, infer_vocab: bool = False
) -> list[ParsedShard]:
    """Parse files in a few threads (reading, GZIP and the kernels release the GIL),
    keeping at most ``workers`` files in flight; errors surface in file order."""
    workers = min(len(sources), os.cpu_count() or 1, _MAX_THREADS)
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
    under :func:`read_tfrecords`' limit on inferred sizes; :class:`InferredSizeError`
    naming ``where`` beyond it. For readers that gather keys from several places (Dask)."""
    limit = _inference_limit(count, parameter)
    if largest >= limit:
        what = "key" if parameter == "n_rows" else "column index"
        raise _size_error(where, what, int(largest), parameter, limit, count)
    return int(largest) + 1


def _place(parsed: list[ParsedShard], g: int) -> tuple[str, int]:
    """(file name, record number) of the g-th record over all files."""
    for p in parsed:
        if g < len(p.keys):
            return p.name, g
        g -= len(p.keys)
    raise AssertionError(g)  # pragma: no cover


def _check_int(value, name: str, func: str, minimum: int) -> int:
    return check_int(value, name, f"parameter of {func}", minimum)


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
    :func:`write_tfrecords` read the same.

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
    rules for odd encodings (see the comment above the decoding kernels).

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
    >>> d = tempfile.mkdtemp()
    >>> paths = write_tfrecords(m, os.path.join(d, "items_for_user"), shards=2)
    >>> back = read_tfrecords(os.path.join(d, "items_for_user-*"), vocab_size=3, n_rows=3)
    >>> (back != m).nnz
    0
    """
    func = "read_tfrecords"
    infer_vocab = vocab_size is None
    if infer_vocab:
        vocab_size = _INFER_MAX_COLUMNS  # first a cap per file, then the limit below
    else:
        vocab_size = _check_int(vocab_size, "vocab_size", func, 1)
    if n_rows is not None:
        n_rows = _check_int(n_rows, "n_rows", func, 0)
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        out_dtype = None
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InvalidParameterError(
            f"The 'dtype' parameter of {func} must be np.float32 or np.float64. "
            f"Got {dtype!r} instead."
        )
    index_dtype = np.int32 if vocab_size <= np.iinfo(np.int32).max else np.int64
    parsed = _parse_files(list_shards(pattern), vocab_size, index_dtype, infer_vocab)

    keys = np.concatenate([p.keys for p in parsed])
    counts = np.concatenate([p.counts for p in parsed])
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
        n_rows = int(keys.max()) + 1 if keys.size else 0
    elif keys.size and keys.max() >= n_rows:
        g = int(np.flatnonzero(keys >= n_rows)[0])
        name, r = _place(parsed, g)
        raise DataFormatError(
            f"{name}: record {r} (0-based): key {int(keys[g])} is >= n_rows={n_rows}. Were "
            "rows and columns swapped (e.g. users_for_item read as items_for_user), or is "
            "n_rows wrong?"
        )
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

    nnz = int(counts.sum())
    idx = parsed[0].indices if len(parsed) == 1 else np.concatenate([p.indices for p in parsed])
    bits = parsed[0].bits if len(parsed) == 1 else np.concatenate([p.bits for p in parsed])
    if infer_vocab:
        limit = _inference_limit(nnz, "vocab_size")
        vocab_size = int(idx.max()) + 1 if nnz else 0
        if vocab_size > limit:
            j = int(np.flatnonzero(idx >= limit)[0])  # still in record order
            g = int(np.searchsorted(np.cumsum(counts), j, side="right"))
            name, r = _place(parsed, g)
            where = f"{name}: record {r} (0-based)"
            raise _size_error(where, "column index", int(idx[j]), "vocab_size", limit, nnz)

    row_nnz = np.zeros(n_rows, dtype=np.int64)
    row_nnz[keys] = counts
    ptr_dtype = np.int32 if nnz <= np.iinfo(np.int32).max and index_dtype == np.int32 else np.int64
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
    func = "write_tfrecords"
    if not sp.issparse(matrix) or matrix.ndim != 2:
        raise InvalidParameterError(
            f"The 'matrix' parameter of {func} must be a 2-D scipy.sparse matrix. "
            f"Got {type(matrix).__name__} instead."
        )
    shards = _check_int(shards, "shards", func, 1)
    key = compression.lower() if isinstance(compression, str) else compression
    if key not in _COMPRESSIONS:
        raise InvalidParameterError(
            f"The 'compression' parameter of {func} must be None, 'none' or 'gzip'. "
            f"Got {compression!r} instead."
        )
    compression = _COMPRESSIONS[key]
    if np.issubdtype(matrix.dtype, np.complexfloating) or matrix.dtype == object:
        raise InvalidParameterError(
            f"The 'matrix' parameter of {func} must have real values. "
            f"Got dtype {matrix.dtype} instead."
        )
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
            f"The 'matrix' parameter of {func} must have finite float32 values. Got "
            f"{csr.data[j]} at row {row}, column {int(csr.indices[j])} instead."
        )
    bits = values.view(np.uint32)
    indptr = np.asarray(csr.indptr, dtype=np.int64)
    indices = csr.indices
    row_nnz = np.diff(indptr)
    n_rows = csr.shape[0]
    # Balanced contiguous blocks: shard s starts at the row boundary whose cumulative nnz
    # is nearest to s/shards of the total (evenly by rows when there are no non-zeros).
    if indptr[-1] > 0:
        targets = indptr[-1] * np.arange(1, shards) / shards
        above = np.searchsorted(indptr, targets, side="left")
        below = np.maximum(above - 1, 0)
        closer = targets - indptr[below] < indptr[np.minimum(above, n_rows)] - targets
        cuts = np.where(closer, below, above)
    else:
        cuts = (n_rows * np.arange(1, shards)) // shards
    bounds = np.concatenate([[0], cuts, [n_rows]]).astype(np.int64)

    prefix = os.fspath(path_prefix)
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    parent = os.path.dirname(prefix)
    if parent:
        os.makedirs(parent, exist_ok=True)
    paths = [f"{prefix}-{s:05d}-of-{shards:05d}{suffix}" for s in range(shards)]
    # Shards are encoded here one after the other and compressed and written in a few
    # threads (zlib and file writes release the GIL), at most ``workers`` in flight.
    workers = min(shards, os.cpu_count() or 1, _MAX_THREADS)
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        try:
            for s in range(shards):
                rows = np.arange(bounds[s], bounds[s + 1], dtype=np.int64)
                if skip_empty:
                    rows = rows[row_nnz[rows] > 0]
                blob = _encode(indptr, indices, bits, rows, _SORTED_ORDER)
                pending.append(pool.submit(_write_atomic, paths[s], blob, compression))
                if len(pending) >= workers:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
    return paths


def _encode(indptr, indices, bits, rows, order) -> np.ndarray:
    """The framed records of ``rows``, CRCs included, as one uint8 array."""
    lengths = np.empty(len(rows), dtype=np.int64)
    total = _record_sizes(indptr, indices, rows, lengths)
    out = np.empty(total, dtype=np.uint8)
    starts = _encode_records(indptr, indices, bits, rows, lengths, order, out)
    data = out.tobytes()  # google_crc32c reads only bytes, not views of the array
    _put_crcs(out, starts, lengths, _length_crcs(lengths), _data_crcs(data, starts, lengths))
    return out


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
