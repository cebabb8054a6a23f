"""The course's TFRecord layout: sparse rows as ``tf.train.Example`` records, read and written.

A TFRecord file is a sequence of framed records, each length and data guarded by a masked
CRC32C, plain or one GZIP stream (TensorFlow's ``options="GZIP"``), detected from the magic
bytes, not from the file name. Each record's data is a serialized ``tf.train.Example``
with three features, which is the layout of Google's recommendation course
(``items_for_user`` / ``users_for_item``):

- ``key``: Int64List of length 1, the row's index;
- ``indices``: Int64List, the column indices of the row's non-zeros;
- ``values``: FloatList, their values (float32).

Written files serialize each Example as protobuf's deterministic serialization does (packed
lists, map entries sorted by name: ``indices``, ``key``, ``values``). TensorFlow's Python
writer keeps insertion order instead; both are the same message to any protobuf parser, and
apart from that order walsrec's bytes are TensorFlow's (see tests/README.md). Records are
parsed as TensorFlow's ``tf.io.parse_single_example`` parses them, so every file reads here
as it reads in TensorFlow, including odd encodings where TensorFlow departs from protobuf's
rules.

Decoding and encoding are numba kernels over one byte buffer per file; Python only loops
over records to compute CRC32C, never over non-zeros. TensorFlow is not needed, and files
stay byte-compatible with it both ways.

The modules, one per seam:

- :mod:`.read`: :func:`read_tfrecords` (files of sparse rows to a CSR matrix) and
  :func:`iter_records` (the raw records of one file);
- :mod:`.write`: :func:`write_tfrecords` (a sparse matrix's rows to shards);
- :mod:`.shards`: one file at a time, as the Dask back end reads them (:func:`list_shards`,
  :func:`parse_shard`, :func:`scatter_rows`) and the limit on sizes inferred from records
  (:func:`inferred_size`, :class:`InferredSizeError`);
- :mod:`.framing`: record framing and masked CRC32C;
- :mod:`.decode`: parsing Examples as TensorFlow's parser does (its rules listed there);
- :mod:`.encode`: serializing rows as Examples;
- :mod:`.layout`: the three features' slots and list kinds, shared by both.
"""

from __future__ import annotations

from walsrec.data.tfrecord.read import iter_records, read_tfrecords
from walsrec.data.tfrecord.shards import (
    InferredSizeError,
    ParsedShard,
    ShardFile,
    inferred_size,
    list_shards,
    parse_shard,
    scatter_rows,
)
from walsrec.data.tfrecord.write import write_tfrecords

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
