"""Encoding rows of a CSR matrix as framed ``tf.train.Example`` records.

:func:`_encode` turns the rows it is given into one buffer of TFRecord records, CRCs
included: numba kernels size every record (:func:`_record_sizes`) and then write it
(:func:`_encode_records`). Each Example is serialized as protobuf's deterministic
serialization does (packed lists, map entries sorted by name: ``indices``, ``key``,
``values``), or in another order of the map entries when asked (TensorFlow's Python writer
keeps insertion order); both are the same message to any protobuf parser.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from walsrec.data.tfrecord.framing import _data_crcs, _length_crcs, _put_crcs


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
def _record_sizes(indptr, indices, rows, lengths, base):
    """Example length of each row in ``rows`` (its key ``base`` + the row); returns the
    total bytes of all records."""
    total = 0
    for r in range(rows.shape[0]):
        i = rows[r]
        index_bytes = 0
        for j in range(indptr[i], indptr[i + 1]):
            index_bytes += _varint_size(np.int64(indices[j]))
        n = indptr[i + 1] - indptr[i]
        layout = _example_layout(n, index_bytes, _varint_size(base + i))
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
def _encode_records(indptr, indices, bits, rows, lengths, order, out, base):
    """Write the framed records of ``rows`` (CRC fields left zero, keys ``base`` + the
    row) into ``out``; returns the offset of each record. ``order`` is the order of the
    map entries."""
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
        key_bytes = _varint_size(base + i)
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
                p = _put_varint(out, p, base + i)
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


def _encode(indptr, indices, bits, rows, order, base: int = 0) -> np.ndarray:
    """The framed records of ``rows``, CRCs included, as one uint8 array; ``order`` is the
    order of the map entries by slot (``layout._SORTED_ORDER``: protobuf's). Row ``i``'s
    key is ``base + i`` (a block of a bigger matrix, its first row's index ``base``)."""
    lengths = np.empty(len(rows), dtype=np.int64)
    base = np.int64(base)
    total = _record_sizes(indptr, indices, rows, lengths, base)
    out = np.empty(total, dtype=np.uint8)
    starts = _encode_records(indptr, indices, bits, rows, lengths, order, out, base)
    data = out.tobytes()  # google_crc32c reads only bytes, not views of the array
    _put_crcs(out, starts, lengths, _length_crcs(lengths), _data_crcs(data, starts, lengths))
    return out
