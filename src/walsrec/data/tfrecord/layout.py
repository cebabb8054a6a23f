"""The course's Example layout, shared by the decoder and the encoder.

Each record is a ``tf.train.Example`` whose Features map holds three entries: ``key``
(Int64List of length 1), ``indices`` (Int64List) and ``values`` (FloatList). The kernels
refer to them by slot, numbered in the order protobuf's deterministic serialization sorts
map keys, and to a Feature's list by its oneof field number.
"""

from __future__ import annotations

import numpy as np

# Feature slots, in the order protobuf's deterministic map serialization sorts the keys.
_INDICES, _KEY, _VALUES = 0, 1, 2
_SORTED_ORDER = np.array([_INDICES, _KEY, _VALUES], dtype=np.int64)
# Files read or written at once (each parsed, compressed or written on its own thread).
_MAX_FILE_THREADS = 8

# Feature.kind oneof field numbers.
_KIND_NONE, _KIND_BYTES, _KIND_FLOAT, _KIND_INT64 = 0, 1, 2, 3
_KIND_NAMES = {0: "no list", 1: "a BytesList", 2: "a FloatList", 3: "an Int64List"}
