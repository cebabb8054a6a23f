"""Hyper-parameter tuning with Optuna (``walsrec tune``).

:func:`tune` runs a study over WALS settings (:data:`DEFAULT_SPACE`, :data:`COURSE_SPACE`
(the course's ranges), or a TOML file read by :func:`load_space`), scoring every trial on
validation splits carved from the training split (:func:`validation_split`);
:func:`train_best` trains the best configuration on the whole training split and evaluates
it on the eval split.
Optuna is imported only when a study runs.
"""

from walsrec.tuning.space import COURSE_SPACE, DEFAULT_SPACE, Param, SearchSpace, load_space
from walsrec.tuning.study import (
    TrialSummary,
    TuneResult,
    metric_direction,
    train_best,
    tune,
    validation_split,
)

__all__ = [
    "COURSE_SPACE",
    "DEFAULT_SPACE",
    "Param",
    "SearchSpace",
    "TrialSummary",
    "TuneResult",
    "load_space",
    "metric_direction",
    "train_best",
    "tune",
    "validation_split",
]
