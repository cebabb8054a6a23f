"""Hypothesis strategies that break walsrec's files: arrays, JSON documents, bytes, records."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import google_crc32c
import numpy as np
from hypothesis import strategies as st

# Integers that sit on the edges readers must guard: signs, int32/int64 limits, float64's
# exact range, lengths give or take one.
EDGE_INTS = [-(2**63), -(2**31), -1, 0, 1, 2, 3, 5, 6, 7, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1]
EDGE_FLOATS = [float("nan"), float("inf"), float("-inf"), -0.0, 1e39, -1e308, 1e-45, 3.4e38]

ints = st.sampled_from(EDGE_INTS) | st.integers(-(2**63), 2**63 - 1)
floats = st.sampled_from(EDGE_FLOATS) | st.floats(allow_nan=True, allow_infinity=True)
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
DTYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "bool",
    "complex64",
    "<U3",
]


# ----------------------------------------------------------------------------- arrays


@st.composite
def array_mutation(draw, arr: np.ndarray) -> np.ndarray:
    """One change to an array: a value, its dtype, its length or its shape."""
    arr = np.array(arr)
    kind = draw(st.sampled_from(["value", "value", "value", "dtype", "length", "shape"]))
    if kind == "value" and arr.size:
        i = draw(st.integers(0, arr.size - 1))
        flat = arr.reshape(-1)
        if arr.dtype.kind in "fc":
            with np.errstate(over="ignore", invalid="ignore"):
                flat[i] = draw(floats)
        elif arr.dtype.kind in "bU":
            flat[i] = not flat[i] if arr.dtype.kind == "b" else draw(st.text(max_size=3))
        else:
            flat[i] = np.clip(draw(ints), np.iinfo(arr.dtype).min, np.iinfo(arr.dtype).max)
        return arr
    if kind == "dtype":
        with np.errstate(all="ignore"):
            return arr.astype(draw(st.sampled_from(DTYPES)))
    if kind == "length":
        n = draw(st.integers(0, arr.size + 3))
        return np.resize(arr.reshape(-1), n) if n else arr.reshape(-1)[:0]
    return arr.reshape(1, -1) if arr.ndim == 1 else arr.reshape(-1)


@st.composite
def byte_mutation(draw, data: bytes) -> bytes:
    """Flip, truncate, insert or delete bytes."""
    data = bytearray(data)
    kind = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "delete"]))
    if not data:
        return bytes(draw(st.binary(max_size=8)))
    i = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            j = draw(st.integers(0, len(data) - 1))
            data[j] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del data[i:]
    elif kind == "insert":
        data[i:i] = draw(st.binary(min_size=1, max_size=12))
    else:
        del data[i : i + draw(st.integers(1, 12))]
    return bytes(data)


def mutate_npy(draw, path: Path) -> None:
    """Rewrite an .npy file with an array mutation, or garble its bytes (header included)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception:  # an earlier mutation garbled it: keep garbling bytes
        arr = None
    if arr is not None and draw(st.booleans()):
        np.save(path, draw(array_mutation(arr)), allow_pickle=False)
    else:
        path.write_bytes(draw(byte_mutation(path.read_bytes())))


# ----------------------------------------------------------------------------- JSON


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


@st.composite
def json_mutation(draw, doc):
    """The document with one value replaced, one key removed or one key added."""
    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from(list(_paths(doc))))
    if not path:
        return draw(json_values)
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    kind = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
    if kind == "replace":
        parent[path[-1]] = draw(json_values)
    elif kind == "remove":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=6))] = draw(json_values)
    else:
        parent.append(draw(json_values))
    return doc


def mutate_json(draw, path: Path) -> None:
    """Rewrite a JSON file with a document mutation, or garble its bytes."""
    try:
        doc = json.loads(path.read_text())
    except ValueError:  # an earlier mutation garbled it
        doc = None
    if doc is not None and draw(st.integers(0, 3)):
        doc = draw(json_mutation(doc))
        path.write_text(json.dumps(doc))
    else:
        path.write_bytes(draw(byte_mutation(path.read_bytes())))


# ----------------------------------------------------------------------------- TFRecord


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(payloads: list[bytes]) -> bytes:
    """TFRecord framing: length, its masked CRC-32C, the payload, its masked CRC-32C."""
    out = bytearray()
    for p in payloads:
        n = len(p).to_bytes(8, "little")
        out += n + _masked_crc(n).to_bytes(4, "little") + p
        out += _masked_crc(p).to_bytes(4, "little")
    return bytes(out)


def unframe(data: bytes) -> list[bytes]:
    """The payloads of a well-formed TFRecord file."""
    out, p = [], 0
    while p < len(data):
        n = int.from_bytes(data[p : p + 8], "little")
        out.append(data[p + 12 : p + 12 + n])
        p += 16 + n
    return out


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(number: int, wire: int, payload: bytes | int) -> bytes:
    """One protobuf field: a varint (wire 0) or a length-delimited payload (wire 2)."""
    tag = varint(number << 3 | wire)
    if wire == 0:
        return tag + varint(payload)
    return tag + varint(len(payload)) + payload


def example(key: int, indices: list[int], values: list[float]) -> bytes:
    """A tf.train.Example with the course's features, built field by field."""

    def feature(name: str, kind: int, body: bytes) -> bytes:
        value = field(kind, 2, body)
        entry = field(1, 2, name.encode()) + field(2, 2, value)
        return field(1, 2, entry)

    packed = b"".join(varint(i) for i in indices)
    with np.errstate(over="ignore"):
        floats_ = np.asarray(values, dtype="<f4").tobytes()
    feats = (
        feature("key", 3, field(1, 2, varint(key)))
        + feature("indices", 3, field(1, 2, packed))
        + feature("values", 2, field(1, 2, floats_))
    )
    return field(1, 2, feats)


@st.composite
def record_mutation(draw, payload: bytes) -> bytes:
    """A payload with garbled bytes, or a whole record built from hostile numbers."""
    if draw(st.booleans()):
        return draw(byte_mutation(payload))
    n = draw(st.integers(0, 4))
    return example(
        draw(ints),
        draw(st.lists(ints, min_size=n, max_size=n)),
        draw(st.lists(floats, min_size=0, max_size=n + 1)),
    )
