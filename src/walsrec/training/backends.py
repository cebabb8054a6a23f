"""Where :func:`walsrec.train` runs its model: on this machine or on a Dask cluster.

The training loop picks a back end once (:func:`backend_for`) and then only calls the
methods of :class:`Backend`: load the data, build the estimator, start it (initial factors,
or a checkpoint's), run half-steps, report the loss and the held-out metrics, and hear of
each checkpoint written. Everything that differs between the two lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from walsrec.training.inputs import TrainingData, load_training_data

__all__ = ["Backend", "DaskBackend", "LocalBackend", "backend_for"]


class Backend(Protocol):
    """The operations the training loop needs of a back end.

    A back end is built for one run: :meth:`load_data` binds it to the run's data, and
    the other methods act on the estimator :meth:`build` returned.
    """

    data: TrainingData | None

    def load_data(self, cfg, model_dir: Path) -> TrainingData: ...
    @property
    def user_items(self): ...
    def build(self, settings: dict[str, Any], user_items, **params: Any): ...
    def start(self, model, cfg, model_dir: Path) -> None: ...
    def restore(self, model, checkpoint) -> None: ...
    def update_rows(self, model, rows: np.ndarray | None) -> None: ...
    def update_cols(self, model, cols: np.ndarray | None) -> None: ...
    def loss(self, model) -> float: ...
    def rwse(self, model) -> float: ...
    def evaluate(self, model, cfg, model_dir: Path) -> dict: ...
    def checkpoint(self, model, root: Path, step: int, state: dict, keep: int) -> Path: ...
    def best(self, model, root: Path, state: dict) -> Path: ...
    def export(self, model, model_dir: Path, factors: Path | None, **model_json) -> Path | None: ...


class LocalBackend:
    """This machine: the estimator is :class:`~walsrec.model.wals.WALS` on the
    memory-mapped training matrix."""

    #: shown in messages

    def __init__(self) -> None:
        self.data: TrainingData | None = None
        self._csc = None

    def load_data(self, cfg, model_dir: Path) -> TrainingData:
        """The run's training (and eval) data, kept for the other methods."""
        self.data = load_training_data(cfg, model_dir)
        return self.data

    @property
    def user_items(self):
        return self.data.train.user_items

    def build(self, settings: dict[str, Any], user_items, **params: Any):
        """The estimator of ``settings`` (a TrainConfig's; col_weights from ``user_items``'
        counts: the course's make_wts) with the run's ``params``."""
        from walsrec.model.params import estimator_from_settings
        from walsrec.training.config import TrainConfig

        return estimator_from_settings(
            settings, user_items, defaults=TrainConfig().to_dict(), **params
        )

    def start(self, model, cfg, model_dir: Path) -> None:
        """Initial factors for the data's shape (the seed's draws)."""
        model.initialize(*self.user_items.shape)

    def restore(self, model, checkpoint) -> None:
        """Continue from a checkpoint's factors."""
        from walsrec.training.checkpoints import as_array

        dtype = model.user_factors_.dtype
        model.user_factors_ = as_array(checkpoint.user_factors).astype(dtype)
        model.item_factors_ = as_array(checkpoint.item_factors).astype(dtype)

    def update_rows(self, model, rows: np.ndarray | None) -> None:
        """The row half-step for ``rows`` (None: all users)."""
        model.update_rows(self.user_items, rows=rows)

    def update_cols(self, model, cols: np.ndarray | None) -> None:
        """The column half-step for ``cols`` (None: all items)."""
        if self._csc is None:
            self._csc = self.user_items.tocsc()
        model.update_cols(self._csc, cols=cols)

    def loss(self, model) -> float:
        return model.loss(self.user_items)

    def rwse(self, model) -> float:
        return model.rwse(self.user_items)

    def evaluate(self, model, cfg, model_dir: Path) -> dict:
        """The held-out metrics at ``cfg.k`` (training items excluded; no rmse under binary
        targets: :func:`walsrec.metrics.metric_names`); {} without eval data."""
        from walsrec.metrics import evaluate, metric_names

        if self.data.eval is None:
            return {}
        return evaluate(
            model.user_factors_,
            model.item_factors_,
            self.user_items,
            self.data.eval,
            k=cfg.k,
            metrics=metric_names(cfg.k, targets=cfg.targets),
            n_jobs=cfg.threads,
        )

    def checkpoint(self, model, root: Path, step: int, state: dict, keep: int) -> Path:
        """Checkpoint ``root/step-<step>`` of the current factors (the newest ``keep``
        kept)."""
        from walsrec.training.checkpoints import write_checkpoint

        return write_checkpoint(
            root, step, model.user_factors_, model.item_factors_, state, keep=keep
        )

    def best(self, model, root: Path, state: dict) -> Path:
        """Replace ``root/best`` by the current factors."""
        from walsrec.training.checkpoints import write_best

        return write_best(root, model.user_factors_, model.item_factors_, state)

    def export(self, model, model_dir: Path, factors: Path | None, **model_json) -> Path | None:
        """Export the current factors, or those of the checkpoint ``factors`` (the best
        under early stopping); None when the newest export holds exactly those factors.
        ``model_json``: write_export's hyperparameters, metrics, training and keep."""
        from walsrec.serving.export import list_exports, read_export, write_export
        from walsrec.training.checkpoints import as_array, read_checkpoint

        user_f, item_f = model.user_factors_, model.item_factors_
        if factors is not None:
            ckpt = read_checkpoint(factors)
            user_f, item_f = as_array(ckpt.user_factors), as_array(ckpt.item_factors)
        exports = list_exports(model_dir / "export")
        if exports:
            newest = read_export(exports[-1], mmap=True)
            # this exact model (the same factors, not merely the same step count) is exported
            if np.array_equal(newest.user_factors, user_f) and np.array_equal(
                newest.item_factors, item_f
            ):
                return None
        data = self.data
        return write_export(
            model_dir,
            user_factors=user_f,
            item_factors=item_f,
            users=data.train.users,
            items=data.train.items,
            user_items=data.train.user_items,
            **model_json,
        )


class DaskBackend(LocalBackend):
    """The half-steps, the loss and the evaluation on a Dask cluster's workers, which read
    the training matrix from shared storage; this process keeps the matrix memory-mapped
    (for its shape, the baseline and the export) and never holds a factor matrix but to
    checkpoint and export."""

    def __init__(self, client) -> None:
        super().__init__()
        self.client = client
        #: DATA_DIR/vocab/users.txt, split into the export's blocks by a worker
        self.cfg_users_file: Path | None = None

    def load_data(self, cfg, model_dir: Path) -> TrainingData:
        if cfg.data is None:
            # the workers parse the TFRecords into MODEL_DIR/cache (train, train_t, eval):
            # load_training_data then only memory-maps the cache
            from walsrec.training.inputs import cache_tfrecords_dask

            cache_tfrecords_dask(self.client, cfg, model_dir)
        else:
            users = Path(cfg.data) / "vocab" / "users.txt"
            self.cfg_users_file = users.absolute() if users.is_file() else None
        return super().load_data(cfg, model_dir)

    def build(self, settings: dict[str, Any], user_items, **params: Any):
        from walsrec.distributed.wals import DaskWALS

        return super().build(
            settings, user_items, estimator_class=DaskWALS, client=self.client, **params
        )

    def start(self, model, cfg, model_dir: Path) -> None:
        # the workers read the partitions from shared storage, never through this process
        model.open(_dask_source(cfg, model_dir))
        super().start(model, cfg, model_dir)

    def restore(self, model, checkpoint) -> None:
        model.load_factors(*_factor_paths(checkpoint.path))

    def update_cols(self, model, cols: np.ndarray | None) -> None:
        model.update_cols(self.user_items, cols=cols)

    def evaluate(self, model, cfg, model_dir: Path) -> dict:
        """On the workers: no factor matrix comes to this process."""
        from walsrec.distributed.evaluate import evaluate_dask
        from walsrec.metrics import metric_names

        if self.data.eval is None:
            return {}
        where = (
            {"data": cfg.data}
            if cfg.data is not None
            else {"data": str(model_dir / "cache"), "name": "eval"}
        )
        names = metric_names(cfg.k, targets=cfg.targets)
        return evaluate_dask(model, **where, k=cfg.k, metrics=names, n_jobs=cfg.threads)

    def checkpoint(self, model, root: Path, step: int, state: dict, keep: int) -> Path:
        """The workers write the factors as row blocks; this process the manifests and
        state.json. The factors' lineage then restarts at the checkpoint: a worker lost
        later is recovered from these files, not by recomputing every sweep since the
        start."""
        from walsrec.training.checkpoints import write_checkpoint

        path = write_checkpoint(
            root, step, None, None, state, keep=keep, write_factors=model.save_factors
        )
        model.load_factors(*_factor_paths(path), unchanged=True)
        return path

    def best(self, model, root: Path, state: dict) -> Path:
        from walsrec.training.checkpoints import write_best

        return write_best(root, None, None, state, write_factors=model.save_factors)

    def export(self, model, model_dir: Path, factors: Path | None, **model_json) -> Path | None:
        """Written by the workers (:func:`walsrec.distributed.export.export_dask`); None
        when the newest export's factor blocks have the checksums of the newest checkpoint's
        (or of ``factors``', the best), which holds the current factors."""
        from walsrec.distributed.export import export_dask
        from walsrec.serving.export import list_exports
        from walsrec.training.checkpoints import latest_checkpoint

        if factors is not None:
            model.load_factors(*_factor_paths(factors))
            held = factors
        else:
            latest = latest_checkpoint(model_dir / "checkpoints")
            held = latest.path if latest is not None else None
        exports = list_exports(model_dir / "export")
        if exports and held is not None and _same_blocks(exports[-1], held):
            return None
        users = self.cfg_users_file or self.data.train.users
        return export_dask(model, model_dir, users=users, items=self.data.train.items, **model_json)


def _factor_paths(path: Path) -> tuple[Path, Path]:
    """A checkpoint's two factor files or row-block folders."""
    if (path / "user_factors").is_dir():
        return path / "user_factors", path / "item_factors"
    return path / "user_factors.npy", path / "item_factors.npy"


def _same_blocks(export: Path, checkpoint: Path) -> bool:
    """True when both hold row blocks of the same factors (equal block checksums)."""
    from walsrec.data.row_blocks import is_row_blocks, open_row_blocks

    for name in ("user_factors", "item_factors"):
        a, b = export / name, checkpoint / name
        if not (is_row_blocks(a) and is_row_blocks(b)):
            return False
        x, y = open_row_blocks(a), open_row_blocks(b)
        if (x.shape, x.dtype, x.bounds, x.checksums) != (y.shape, y.dtype, y.bounds, y.checksums):
            return False
    return True


def _dask_source(cfg, model_dir: Path):
    """The native matrices the Dask workers read: DATA_DIR/train/native, or for TFRecord
    inputs MODEL_DIR/cache and its transpose (written by the workers)."""
    from walsrec.distributed.sources import native_source

    if cfg.data is not None:
        return native_source(cfg.data)
    # written by the workers (cache_tfrecords_dask), transpose included
    return native_source(model_dir / "cache", "train", "train_t")


def backend_for(client=None) -> Backend:
    """The Dask back end on ``client``'s cluster, or this machine's (None)."""
    return LocalBackend() if client is None else DaskBackend(client)
