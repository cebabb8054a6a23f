"""The Dask back end: WALS training and batch prediction on a ``distributed`` cluster.

``DaskWALS`` (the estimator), ``native_source``/``NativeSource`` and
``tfrecord_source``/``TFRecordSource`` (where the workers read the matrix: native files or
the course's TFRecord shards, by path or fsspec URL; ``write_native_dask`` has the workers
convert shards to native files), ``predict_dask`` (sharded batch prediction),
``evaluate_dask`` (held-out metrics on the workers) and ``connect`` (a client for an
address or ``"local:N"``). Imported lazily: ``import walsrec.distributed`` imports neither
dask nor numba.
"""

from __future__ import annotations

__all__ = [
    "DaskWALS",
    "NativeSource",
    "TFRecordSource",
    "connect",
    "evaluate_dask",
    "native_source",
    "predict_dask",
    "tfrecord_source",
    "write_native_dask",
]

_WHERE = {
    "DaskWALS": "walsrec.distributed.wals",
    "NativeSource": "walsrec.distributed.sources",
    "native_source": "walsrec.distributed.sources",
    "TFRecordSource": "walsrec.distributed.sources",
    "tfrecord_source": "walsrec.distributed.sources",
    "write_native_dask": "walsrec.distributed.write_native",
    "predict_dask": "walsrec.distributed.predict",
    "connect": "walsrec.distributed.cluster",
    "evaluate_dask": "walsrec.distributed.evaluate",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'walsrec.distributed' has no attribute {name!r}")
