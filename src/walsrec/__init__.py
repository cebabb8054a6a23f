"""walsrec: WALS matrix factorization recommendations, from interaction logs to serving.

Public names are imported lazily so that ``import walsrec`` stays fast; numba kernels
compile on first use and are cached on disk.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "WALS": "walsrec.model.wals",
    "Interactions": "walsrec.data.interactions",
    "read_tfrecords": "walsrec.data.tfrecord",
    "write_tfrecords": "walsrec.data.tfrecord",
    "prepare": "walsrec.data.prepare",
    "datasets": "walsrec.datasets",
    "errors": "walsrec.errors",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from walsrec import datasets, errors
    from walsrec.data.interactions import Interactions
    from walsrec.data.prepare import prepare
    from walsrec.data.tfrecord import read_tfrecords, write_tfrecords
    from walsrec.model.wals import WALS


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'walsrec' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
