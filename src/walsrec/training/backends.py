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

from walsrec.training.inputs import (
    StoredData,
    TrainingData,
    load_training_data,
    stored_training_data,
)

__all__ = ["Backend", "DaskBackend", "LocalBackend", "backend_for"]


class Backend(Protocol):
    """The operations the training loop needs of a back end.

    A back end is built for one run: :meth:`load_data` binds it to the run's data, and
    the other methods act on the estimator :meth:`build` returned.
    """

    data: TrainingData | StoredData | None
    #: the training matrix in this process (None on a cluster), and λ auto's fit on its
    #: first split while the hybrid's choice may use it (:mod:`walsrec.training.hybrid`)
    user_items: Any
    validation_model: Any

    def load_data(self, cfg, model_dir: Path) -> TrainingData | StoredData: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    def choose_regularization(self, cfg, progress): ...
    def build(self, settings: dict[str, Any], **params: Any): ...
    def start(self, model, cfg, model_dir: Path) -> None: ...
    def baseline(self, model, cfg) -> dict | None: ...
    def restore(self, model, checkpoint) -> None: ...
    def update_rows(self, model, rows: np.ndarray | None) -> None: ...
    def update_cols(self, model, cols: np.ndarray | None) -> None: ...
    def loss(self, model) -> float: ...
    def rwse(self, model) -> float: ...
    def evaluate(self, model, cfg, model_dir: Path) -> dict: ...
    def checkpoint(self, model, root: Path, step: int, state: dict, keep: int) -> Path: ...
    def best(self, model, root: Path, state: dict) -> Path: ...
    def export(
        self, model, model_dir: Path, factors: Path | None, item_item=None, **model_json
    ) -> Path | None: ...


class LocalBackend:
    """This machine: the estimator is :class:`~walsrec.model.wals.WALS` on the
    memory-mapped training matrix."""

    #: shown in messages

    def __init__(self) -> None:
        self.data: TrainingData | None = None
        self._bound = None
        self.validation_model = None  # λ auto's fit on its first split, at the chosen λ

    def load_data(self, cfg, model_dir: Path) -> TrainingData:
        """The run's training (and eval) data, kept for the other methods."""
        self.data = load_training_data(cfg, model_dir)
        return self.data

    @property
    def user_items(self):
        return self.data.train.user_items

    @property
    def shape(self) -> tuple[int, int]:
        """(n_users, n_items) of the training matrix."""
        return tuple(self.user_items.shape)

    def choose_regularization(self, cfg, progress):
        """λ for ``regularization = "auto"``: :func:`walsrec.training.regularization.
        choose_regularization` on the training matrix, after train's default length."""
        from walsrec.training.hybrid import may_blend
        from walsrec.training.regularization import choose_regularization

        choice = choose_regularization(self.user_items, **_search_arguments(cfg, progress))
        # the hybrid's choice scores β on the same first split with the same fit (kept only
        # when the hybrid may be chosen; released once it is)
        wanted = may_blend(cfg.item_item, cfg.targets)
        self.validation_model = choice.validation_model if wanted else None
        return choice

    def build(self, settings: dict[str, Any], **params: Any):
        """The estimator of ``settings`` (a TrainConfig's; "auto" weights and col_weights
        from counts, the course's make_wts, resolved on the training matrix) with the run's
        ``params``."""
        from walsrec.model.params import estimator_from_settings
        from walsrec.training.config import TrainConfig

        return estimator_from_settings(
            settings, self.user_items, defaults=TrainConfig().to_dict(), **params
        )

    def baseline(self, model, cfg) -> dict | None:
        """Most-popular's held-out metrics (None without eval data)."""
        from walsrec.metrics import evaluate_scorer, popularity_baseline

        if self.data.eval is None:
            return None
        ui = self.user_items
        return evaluate_scorer(
            popularity_baseline(ui), ui, self.data.eval, k=cfg.k, n_jobs=cfg.threads
        )

    def start(self, model, cfg, model_dir: Path) -> None:
        """Initial factors for the data's shape (the seed's draws); the training matrix
        bound to the model (its weighted sides built once, as ``WALS.fit`` builds them)."""
        model.initialize(*self.user_items.shape)
        self._bound = model.bind(self.user_items)

    def restore(self, model, checkpoint) -> None:
        """Continue from a checkpoint's factors."""
        from walsrec.training.checkpoints import as_array

        dtype = model.user_factors_.dtype
        model.user_factors_ = as_array(checkpoint.user_factors).astype(dtype)
        model.item_factors_ = as_array(checkpoint.item_factors).astype(dtype)

    def update_rows(self, model, rows: np.ndarray | None) -> None:
        """The row half-step for ``rows`` (None: all users)."""
        self._bound.update_rows(rows)

    def update_cols(self, model, cols: np.ndarray | None) -> None:
        """The column half-step for ``cols`` (None: all items)."""
        self._bound.update_cols(cols)

    def loss(self, model) -> float:
        return self._bound.loss()

    def rwse(self, model) -> float:
        return self._bound.rwse()

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

    def export(
        self, model, model_dir: Path, factors: Path | None, item_item=None, **model_json
    ) -> Path | None:
        """Export the current factors, or those of the checkpoint ``factors`` (the best
        under early stopping); None when the newest export holds exactly those factors.
        ``item_item()``: the hybrid's (settings, weights) to export beside them, or None.
        ``model_json``: write_export's hyperparameters, metrics, training and keep."""
        from walsrec.serving.export import newest_export_holding, write_export
        from walsrec.training.checkpoints import as_array, read_checkpoint

        user_f, item_f = model.user_factors_, model.item_factors_
        if factors is not None:
            ckpt = read_checkpoint(factors)
            user_f, item_f = as_array(ckpt.user_factors), as_array(ckpt.item_factors)
        if newest_export_holding(model_dir, user_f, item_f) is not None:
            return None
        data = self.data
        return write_export(
            model_dir,
            user_factors=user_f,
            item_factors=item_f,
            users=data.train.users,
            items=data.train.items,
            user_items=data.train.user_items,
            item_item=None if item_item is None else item_item(),
            **model_json,
        )


class DaskBackend:
    """The half-steps, the loss, the evaluations, the checkpoints and the export on a Dask
    cluster's workers, which read the training matrix from shared storage: this process
    loads neither the matrix nor the user vocabulary, and never holds a factor matrix."""

    #: no training matrix in this process (the hybrid's EASE is not fitted on a cluster)
    user_items = None
    validation_model = None

    def __init__(self, client) -> None:
        self.client = client
        self.data: StoredData | None = None

    def load_data(self, cfg, model_dir: Path) -> StoredData:
        """Where the workers read the run's data, and its size; for TFRecord inputs the
        workers first parse them into MODEL_DIR/cache (train, its transpose, eval)."""
        if cfg.data is None:
            from walsrec.training.inputs import cache_tfrecords_dask

            cache_tfrecords_dask(self.client, cfg, model_dir)
        self.data = data = stored_training_data(cfg, model_dir)
        # the vocabularies read and checked on the workers, as one machine checks them
        from walsrec.distributed.sources import check_vocabularies

        n_users, n_items = data.shape
        check_vocabularies(
            self.client, [(data.users_file, n_users, "users"), (data.items_file, n_items, "items")]
        )
        return data

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape

    def choose_regularization(self, cfg, progress):
        """On the workers: the validation splits, the fits and the scores
        (:func:`walsrec.training.regularization.choose_regularization_dask`)."""
        from walsrec.training.regularization import choose_regularization_dask

        return choose_regularization_dask(
            self.client, self.data.train, **_search_arguments(cfg, progress)
        )

    def build(self, settings: dict[str, Any], **params: Any):
        """:class:`~walsrec.distributed.wals.DaskWALS` of ``settings``, their "auto"s and
        count weights resolved from facts the workers measure
        (:func:`walsrec.distributed.facts.matrix_facts`)."""
        from walsrec.distributed.facts import matrix_facts
        from walsrec.distributed.wals import DaskWALS
        from walsrec.model.params import estimator_from_settings
        from walsrec.training.config import TrainConfig

        defaults = TrainConfig().to_dict()
        facts = matrix_facts(self.client, self.data.train, settings, defaults=defaults)
        return estimator_from_settings(
            settings,
            facts,
            defaults=defaults,
            estimator_class=DaskWALS,
            client=self.client,
            **params,
        )

    def start(self, model, cfg, model_dir: Path) -> None:
        # the workers read the partitions from shared storage, never through this process
        model.open(self.data.train)
        model.initialize()

    def baseline(self, model, cfg) -> dict | None:
        """On the workers of the opened model: each item partition's counts stand in for
        its factors (:func:`walsrec.distributed.evaluate.evaluate_popularity_dask`)."""
        from walsrec.distributed.evaluate import evaluate_popularity_dask
        from walsrec.metrics import metric_names

        if self.data.eval is None:
            return None
        names = metric_names(cfg.k, targets="binary")  # a scorer has no rmse
        return evaluate_popularity_dask(
            model, **self.data.eval, k=cfg.k, metrics=names, n_jobs=cfg.threads
        )

    def restore(self, model, checkpoint) -> None:
        model.load_factors(*_factor_paths(checkpoint.path))

    def update_cols(self, model, cols: np.ndarray | None) -> None:
        model.update_cols(None, cols=cols)

    def update_rows(self, model, rows: np.ndarray | None) -> None:
        model.update_rows(None, rows=rows)

    def loss(self, model) -> float:
        return model.loss()

    def rwse(self, model) -> float:
        return model.rwse()

    def evaluate(self, model, cfg, model_dir: Path) -> dict:
        """On the workers: no factor matrix comes to this process."""
        from walsrec.distributed.evaluate import evaluate_dask
        from walsrec.metrics import metric_names

        if self.data.eval is None:
            return {}
        names = metric_names(cfg.k, targets=cfg.targets)
        return evaluate_dask(model, **self.data.eval, k=cfg.k, metrics=names, n_jobs=cfg.threads)

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

    def export(
        self, model, model_dir: Path, factors: Path | None, item_item=None, **model_json
    ) -> Path | None:
        """Written by the workers (:func:`walsrec.distributed.export.export_dask`); None
        when the newest export's factor blocks have the checksums of the newest checkpoint's
        (or of ``factors``', the best), which holds the current factors."""
        from walsrec.distributed.export import export_dask
        from walsrec.serving.export import list_exports
        from walsrec.training.checkpoints import latest_checkpoint

        if item_item is not None:
            item_item()  # records and says why there is none: EASE is fitted on one machine
        latest = latest_checkpoint(model_dir / "checkpoints")
        held = factors if factors is not None else latest.path if latest is not None else None
        exports = list_exports(model_dir / "export")
        if exports and held is not None and _same_blocks(exports[-1], held):
            return None
        if factors is not None:  # the best checkpoint's factors, exported by the workers
            model.load_factors(*_factor_paths(factors))
        try:
            return export_dask(
                model, model_dir, users=self.data.users_file, items=self.data.items_file,
                **model_json,
            )  # fmt: skip
        finally:
            if factors is not None and latest is not None:
                # the model goes on holding the final factors, as on one machine
                model.load_factors(*_factor_paths(latest.path))


def _search_arguments(cfg, progress) -> dict:
    """choose_regularization's arguments for a run of ``cfg``."""
    return {
        "settings": cfg.to_dict(),
        "k": cfg.k,
        # each λ is scored after train's default length, whatever this run's: the length
        # is not part of the model's identity (a resumed run may add sweeps), so neither
        # may λ depend on it
        "sweeps": cfg.DEFAULT_SWEEPS,
        "seed": cfg.seed,
        "n_jobs": cfg.threads,
        "progress": progress,
    }


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


def backend_for(client=None) -> Backend:
    """The Dask back end on ``client``'s cluster, or this machine's (None)."""
    return LocalBackend() if client is None else DaskBackend(client)
