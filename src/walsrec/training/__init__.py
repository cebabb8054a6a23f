"""Training runs like the course's estimator: inputs, steps, evaluation, checkpoints, export."""

from walsrec.model.weighting import column_weights_from_counts
from walsrec.training.config import TrainConfig, load_config
from walsrec.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "column_weights_from_counts", "load_config", "train"]
