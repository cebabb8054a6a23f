"""Decoding ``tf.train.Example`` records as TensorFlow's parser does.

Two numba passes over one file's bytes, given where its records lie (from
:mod:`.framing`): :func:`_scan_examples` finds and counts the three features of each
record, :func:`_fill_examples` writes the keys, column indices and value bits;
:func:`_parse_error` words the error code they return. Records are parsed as
``tf.io.parse_single_example`` parses them, including odd encodings where TensorFlow
departs from protobuf's rules (the comment above the kernels lists them).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from walsrec.data.tfrecord.layout import (
    _INDICES,
    _KEY,
    _KIND_FLOAT,
    _KIND_INT64,
    _KIND_NAMES,
    _KIND_NONE,
    _VALUES,
)

# Error codes returned by the kernels (0 = no error; 1 and 2 are the framing's).
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
