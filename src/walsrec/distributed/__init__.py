"""The Dask back end: WALS training and batch prediction on a ``distributed`` cluster.

``DaskWALS`` (the estimator), ``native_source``/``NativeSource`` (where the workers read the
matrix), ``predict_dask`` (sharded batch prediction) and ``connect`` (a client for an
address or ``"local:N"``). Imported lazily: ``import walsrec.distributed`` imports neither
dask nor numba.
"""

from __future__ import annotations

__all__ = ["DaskWALS", "NativeSource", "connect", "native_source", "predict_dask"]

_WHERE = {
    "DaskWALS": "walsrec.distributed.wals",
    "NativeSource": "walsrec.distributed.wals",
    "native_source": "walsrec.distributed.wals",
    "predict_dask": "walsrec.distributed.predict",
    "connect": "walsrec.distributed.cluster",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'walsrec.distributed' has no attribute {name!r}")
