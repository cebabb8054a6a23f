"""walsrec: WALS matrix factorization recommendations, from interaction logs to serving.

Public names are imported lazily so that ``import walsrec`` stays fast; numba kernels
compile on first use and are cached on disk.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means the module itself.
_LAZY = {
    "WALS": ("walsrec.model.wals", "WALS"),
    "EASE": ("walsrec.model.ease", "EASE"),
    "Interactions": ("walsrec.data.interactions", "Interactions"),
    "Vocabulary": ("walsrec.data.vocabulary", "Vocabulary"),
    "read_tfrecords": ("walsrec.data.tfrecord", "read_tfrecords"),
    "write_tfrecords": ("walsrec.data.tfrecord", "write_tfrecords"),
    "prepare": ("walsrec.distributed.prepare", "prepare"),
    "load_prepared": ("walsrec.data.prepare", "load_prepared"),
    "train": ("walsrec.training.loop", "train"),
    "tune": ("walsrec.tuning", "tune"),
    "TrainConfig": ("walsrec.training.config", "TrainConfig"),
    "evaluate_export": ("walsrec.evaluation", "evaluate_export"),
    "load_model": ("walsrec.serving.model", "load_model"),
    "Recommender": ("walsrec.serving.model", "Recommender"),
    "Recommendations": ("walsrec.serving.model", "Recommendations"),
    "predict": ("walsrec.serving.predict", "predict"),
    "DaskWALS": ("walsrec.distributed.wals", "DaskWALS"),
    "predict_dask": ("walsrec.distributed.predict", "predict_dask"),
    "run_pipeline": ("walsrec.pipeline", "run_pipeline"),
    "metrics": ("walsrec.metrics", None),
    "datasets": ("walsrec.datasets", None),
    "errors": ("walsrec.errors", None),
}

__all__ = [
    "EASE",
    "WALS",
    "DaskWALS",
    "Interactions",
    "Recommendations",
    "Recommender",
    "TrainConfig",
    "Vocabulary",
    "__version__",
    "datasets",
    "errors",
    "evaluate_export",
    "load_model",
    "load_prepared",
    "metrics",
    "predict",
    "predict_dask",
    "prepare",
    "read_tfrecords",
    "run_pipeline",
    "train",
    "tune",
    "write_tfrecords",
]

if TYPE_CHECKING:  # pragma: no cover
    from walsrec import datasets, errors, metrics
    from walsrec.data.interactions import Interactions
    from walsrec.data.prepare import load_prepared
    from walsrec.data.tfrecord import read_tfrecords, write_tfrecords
    from walsrec.data.vocabulary import Vocabulary
    from walsrec.distributed.predict import predict_dask
    from walsrec.distributed.prepare import prepare
    from walsrec.distributed.wals import DaskWALS
    from walsrec.evaluation import evaluate_export
    from walsrec.model.ease import EASE
    from walsrec.model.wals import WALS
    from walsrec.pipeline import run_pipeline
    from walsrec.serving.model import Recommendations, Recommender, load_model
    from walsrec.serving.predict import predict
    from walsrec.training.config import TrainConfig
    from walsrec.training.loop import train
    from walsrec.tuning import tune


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'walsrec' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
