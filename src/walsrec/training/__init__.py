"""Training runs like the course's estimator: inputs, steps, evaluation, checkpoints, export.

The names below are imported on first use, so that reading the settings
(``walsrec.training.config``, e.g. to build the command line) loads no training code.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TrainConfig", "TrainResult", "column_weights_from_counts", "load_config", "train"]

_LAZY = {
    "TrainConfig": "walsrec.training.config",
    "load_config": "walsrec.training.config",
    "TrainResult": "walsrec.training.loop",
    "train": "walsrec.training.loop",
    "column_weights_from_counts": "walsrec.model.weighting",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'walsrec.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
