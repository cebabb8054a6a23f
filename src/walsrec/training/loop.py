"""``walsrec.train``: the course's ``train_and_evaluate`` for WALS, done correctly.

A *step* solves one batch of ``batch_size`` rows or of columns (tf.contrib's steps); rows
come first, and a *sweep* ends when every row and then every column has been solved once.
Without ``batch_size`` a step is a whole half-step (two steps per sweep). Training runs
``sweeps`` sweeps (or ``num_epochs``, the same), or exactly ``train_steps`` steps. The
model's ``loss_`` holds one loss per sweep (after its last step; ``WALS.fit`` records two,
one after each half-step), kept in each checkpoint as its loss history.

The back end (this machine or a Dask cluster, :mod:`walsrec.training.backends`) is chosen
once; the phases are: open MODEL_DIR, load the data, build the model, restore the latest
checkpoint, run the steps, export.

At each evaluation (every ``eval_every`` sweeps, or steps with ``train_steps``, and at the
end) the training ``loss`` and ``rwse`` and, with eval data, the held-out ``rmse`` and the
ranking metrics at k (training items excluded) are appended to ``MODEL_DIR/metrics.jsonl``
and ``training_curve.png`` is redrawn (at most every ``CURVE_REDRAW_S`` seconds, and at
the end: a drawing takes about 0.3 s); the most-popular baseline is evaluated once.
Checkpoints (every ``checkpoint_every`` sweeps and at the end) make a re-run resume; the
kernels are deterministic, so a resumed run ends with exactly the factors of one that was
never interrupted. The model is exported at the end (the best one under early stopping).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from walsrec._files import (
    DirectoryLock,
    atomic_write_text,
    check_output_dir,
    json_has_keys,
    json_safe,
    read_bytes,
    remove_dead_temporaries,
)
from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.training.checkpoints import (
    latest_checkpoint,
    read_checkpoint,
)
from walsrec.training.config import (
    IDENTITY_KEYS,
    TrainConfig,
    load_config,
    read_saved_config,
)

__all__ = [
    "TrainResult",
    "check_model_dir_replaceable",
    "clear_model_dir",
    "export_hyperparameters",
    "model_dir_lock",
    "recorded_regularization",
    "train",
]

# What a run writes in MODEL_DIR besides export/ (see clear_model_dir).
_TRAINING_STATE = (
    "checkpoints",
    "cache",
    "metrics.jsonl",
    "training_curve.png",
    "config.json",
    "regularization.json",
    "item_item.json",
)


@dataclass
class TrainResult:
    """What :func:`train` did."""

    model_dir: Path
    export_path: Path | None
    model: object
    evaluations: list[dict]
    baseline: dict | None
    stopped_early: bool
    resumed_from_step: int | None
    steps: int


def _is_model_dir(path: Path) -> bool:
    """A directory train wrote: its config.json or regularization.json, or a checkpoint."""
    return (
        json_has_keys(path / "config.json", ("model_dir", "embedding_dim"))
        or json_has_keys(path / "regularization.json", ("regularization", "scores"))
        or any((path / "checkpoints").glob("step-*/state.json"))
    )


def model_dir_lock(model_dir: str | os.PathLike, purpose: str) -> DirectoryLock:
    """The exclusive lock that train, update and pipeline runs hold on ``model_dir``."""
    return DirectoryLock(model_dir, purpose)


def check_model_dir_replaceable(
    model_dir: str | os.PathLike, inputs=(), parameter: str = "model_dir"
) -> None:
    """Refuse to start ``model_dir`` over unless it is a MODEL_DIR, empty or absent, and
    contains none of ``inputs`` (the rule of ``--overwrite``)."""
    check_output_dir(
        model_dir,
        owned=_is_model_dir,
        marker="walsrec's config.json, regularization.json or checkpoints",
        what="MODEL_DIR",
        inputs=[i for i in inputs if i],
        parameter=parameter,
    )


def _inputs(cfg) -> list:
    return [cfg.data, cfg.train_rows, cfg.train_cols, cfg.eval_rows, cfg.eval_cols]


def clear_model_dir(model_dir: Path, *, keep_exports: bool = False, inputs=()) -> None:
    """Remove what train wrote in ``model_dir`` (``--overwrite``); with ``keep_exports``
    leave export/ for running services (the pipeline's retraining).

    Refuses (:func:`check_model_dir_replaceable`) a directory that is not a MODEL_DIR.
    """
    check_model_dir_replaceable(model_dir, inputs)
    for name in _TRAINING_STATE if keep_exports else ("export", *_TRAINING_STATE):
        p = model_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        lines = read_bytes(path).decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc}).") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            record = exc
        if not isinstance(record, dict):
            raise DataFormatError(
                f"{path}, line {n}: not a metrics record (a JSON object); use --overwrite to "
                "start over."
            )
        records.append(record)
    return records


def _write_metrics(path: Path, records: list[dict]) -> None:
    atomic_write_text(
        path, "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records)
    )


def _is_better(value: float, best: float | None, higher: bool) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return best is None or (value > best if higher else value < best)


def train(
    config: TrainConfig | None = None,
    *,
    config_file: str | os.PathLike | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
    **settings,
) -> TrainResult:
    """Train, evaluate, checkpoint and export a WALS model in ``model_dir``.

    Parameters
    ----------
    config : TrainConfig, optional
        A complete configuration; otherwise one is built from ``config_file`` (TOML) and
        ``settings`` (the names of :class:`~walsrec.training.config.TrainConfig`, e.g.
        ``data=``, ``model_dir=``, ``embedding_dim=``, ``sweeps=``, ``eval_every=``).
    overwrite : bool, default False
        Remove the checkpoints, metrics, exports and cache of ``model_dir`` and start over.
    show_progress : bool, default False
        A progress bar over steps with the sweep and the loss, drawn on stderr when it is
        a terminal (never into logs or files).
    log : callable, optional
        Receives one-line messages (resuming, evaluations, the export path, a missing
        matplotlib); while the bar is drawn it is cleared around each message.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import walsrec
    >>> result = walsrec.train(data="data/", model_dir="model/", sweeps=10)  # doctest: +SKIP
    >>> result.export_path  # doctest: +SKIP
    PosixPath('model/export/1796000000')
    """
    cfg = config.validate() if config is not None else load_config(config_file, **settings)
    if overwrite:  # before the lock file is made in a directory that is not train's
        check_model_dir_replaceable(cfg.model_dir, _inputs(cfg))
    with model_dir_lock(cfg.model_dir, "walsrec train"):
        if cfg.dask is None:
            return _train(cfg, overwrite, show_progress, log)
        from walsrec.distributed.cluster import connect

        client, cluster = connect(cfg.dask)
        try:
            return _train(cfg, overwrite, show_progress, log, client)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _train(cfg, overwrite, show_progress, log, client=None) -> TrainResult:
    """:func:`train` with a validated configuration; ``client``: run on that Dask cluster.

    The phases, in order: open MODEL_DIR, load the data, build the model, restore the
    latest checkpoint, run the steps, export. The back end is chosen here, once."""
    from walsrec.training.backends import backend_for

    say = log or (lambda message: None)
    model_dir = _open_model_dir(cfg, overwrite)
    backend = backend_for(client)
    data = backend.load_data(cfg, model_dir)
    model = _build_model(cfg, backend, model_dir, say, show_progress)
    run = _Run(cfg, backend, model, model_dir, say)
    run.restore()
    run.steps(show_progress)
    return run.export(data, _ItemItem(cfg, backend, model, model_dir, say, show_progress))


def _open_model_dir(cfg, overwrite: bool) -> Path:
    """MODEL_DIR made ready: cleared under ``overwrite``, dead temporaries removed, and
    refused when it holds a model trained with other settings."""
    model_dir = Path(cfg.model_dir)
    if overwrite and model_dir.exists():
        clear_model_dir(model_dir, inputs=_inputs(cfg))
    model_dir.mkdir(parents=True, exist_ok=True)
    for d in (model_dir, model_dir / "checkpoints", model_dir / "cache"):
        remove_dead_temporaries(d)  # what killed runs left (their writers held none)
    saved = read_saved_config(model_dir)
    if saved is not None:
        conflicts = cfg.conflicts_with(saved)
        if conflicts:
            raise InvalidParameterError(
                f"MODEL_DIR {str(model_dir)!r} holds a model trained with other settings "
                f"({'; '.join(conflicts)}). Use another --model-dir, or --overwrite to start "
                "over (more sweeps or steps are allowed)."
            )
    return model_dir


def _build_model(cfg, backend, model_dir: Path, say, show_progress: bool):
    """The estimator of ``cfg`` on ``backend`` ("auto" regularization chosen), and
    MODEL_DIR/config.json written."""
    settings = cfg.to_dict()
    if cfg.regularization == "auto":
        settings["regularization"] = _auto_regularization(
            cfg, model_dir, backend, say, show_progress
        )
    model = backend.build(settings, n_jobs=cfg.threads, random_state=cfg.seed)
    # only now: settings the data refuses (BM25 on negative values, say) leave no
    # config.json behind that would block the corrected command as a "resume"
    atomic_write_text(model_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    return model


class _Run:
    """One training run's steps, evaluations, checkpoints and export, on a back end."""

    def __init__(self, cfg, backend, model, model_dir: Path, say) -> None:
        self.cfg, self.backend, self.model, self.say = cfg, backend, model, say
        self.model_dir = model_dir
        self.ckpt_root = model_dir / "checkpoints"
        self.metrics_path = model_dir / "metrics.jsonl"
        n_users, n_items = backend.shape
        self.n_users, self.n_items = n_users, n_items
        self.batch = cfg.batch_size or max(n_users, n_items, 1)
        self.row_batches = max(1, math.ceil(n_users / self.batch))
        self.col_batches = max(1, math.ceil(n_items / self.batch))
        self.per_sweep = self.row_batches + self.col_batches
        self.total = cfg.train_steps if cfg.step_mode else cfg.total_sweeps * self.per_sweep
        self.state = {
            "step": 0,
            "loss_history": [],
            "best": None,
            "best_step": None,
            "bad_evals": 0,
            "stopped_early": False,
        }
        self.resumed = None
        self.records: list[dict] = []
        self.evaluations: list[dict] = []
        self.baseline = None
        self.no_curve = False  # said that training_curve.png is not drawn
        self.curve_records = 0  # how many of the records the drawn curve shows
        self.curve_at = -math.inf  # when it was drawn
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ restore

    def restore(self) -> None:
        """Initial factors, then the latest checkpoint's (if any) with its state; the
        metrics of an interrupted run dropped; the most-popular baseline evaluated once."""
        cfg, model = self.cfg, self.model
        self.backend.start(model, cfg, self.model_dir)
        self.records = _read_metrics(self.metrics_path)
        ckpt = latest_checkpoint(self.ckpt_root)
        if ckpt is not None:
            self._resume_from(ckpt)
        model.loss_ = list(self.state["loss_history"])
        self.baseline = next((r for r in self.records if r.get("model") == "most-popular"), None)
        if self.baseline is None:
            scores = self.backend.baseline(model, cfg)
            if scores is not None:
                self.baseline = {"model": "most-popular", "k": cfg.k, **scores}
                self.records.insert(0, self.baseline)
                _write_metrics(self.metrics_path, self.records)
        self.evaluations = [r for r in self.records if r.get("model") == "wals"]

    def _resume_from(self, ckpt) -> None:
        model = self.model
        k = self.cfg.embedding_dim  # the model's shapes, without reading its factors (on
        # Dask that would gather them into this process)
        if tuple(ckpt.user_factors.shape) != (self.n_users, k) or (
            tuple(ckpt.item_factors.shape) != (self.n_items, k)
        ):
            raise InvalidParameterError(
                f"{ckpt.path}: factors of shape {ckpt.user_factors.shape} and "
                f"{ckpt.item_factors.shape} do not fit the data ({self.n_users} users, "
                f"{self.n_items} items, embedding_dim {self.cfg.embedding_dim}); use "
                "--overwrite to start over."
            )
        self.backend.restore(model, ckpt)
        self.state.update(ckpt.state)
        resumed = self.resumed = self.state["step"]
        if len(self.state["loss_history"]) != resumed // self.per_sweep:
            raise DataFormatError(
                f"{ckpt.path / 'state.json'}: {len(self.state['loss_history'])} losses "
                f"recorded at step {resumed}, where {self.per_sweep} steps make a sweep and "
                "one loss is recorded per sweep; the checkpoint is corrupt. Delete it to "
                "resume from an older one."
            )
        # evaluations after the checkpoint belong to the interrupted run: drop them
        self.records = [r for r in self.records if r.get("model") != "wals" or r["step"] <= resumed]
        _write_metrics(self.metrics_path, self.records)
        self.say(f"resuming from step {resumed} ({ckpt.path.name})")

    # ------------------------------------------------------------------ steps

    def steps(self, show_progress: bool) -> None:
        """Run the steps left, evaluating, checkpointing and stopping early as configured."""
        step = self.state["step"]
        bar = None
        if show_progress and step < self.total and not self.state["stopped_early"]:
            bar = _progress_bar(total=self.total, initial=step, desc="train", unit="step")
        say = self.say
        self.say = _said_above(bar, say)
        try:
            while step < self.total and not self.state["stopped_early"]:
                self._half_step(step % self.per_sweep)
                step += 1
                self._after_step(step, bar)
        finally:
            self.say = say
            if bar is not None:
                bar.close()
        self.state["step"] = step
        if not self.evaluations:  # resumed a finished run that had no evaluation yet
            self._evaluate(step)
        self._draw_curve(final=True)

    def _draw_curve(self, final: bool) -> None:
        """Redraw MODEL_DIR/training_curve.png with the records so far: during training at
        most every ``CURVE_REDRAW_S`` seconds (a drawing takes about 0.3 s), and at the end
        when it misses records."""
        if self.no_curve or self.curve_records == len(self.records):
            return
        if not final and time.perf_counter() - self.curve_at < CURVE_REDRAW_S:
            return
        if not _redraw_curve(self.model_dir, self.records, self.cfg.k):
            self.no_curve = True
            self.say(f"{_CURVE_MISSING}; the metrics are in metrics.jsonl")
            return
        self.curve_records, self.curve_at = len(self.records), time.perf_counter()

    def _half_step(self, pos: int) -> None:
        """Step ``pos`` of a sweep: a batch of rows, then (from ``row_batches`` on) of
        columns; one batch is the whole side."""
        b = self.batch
        if pos < self.row_batches:
            rows = None
            if self.row_batches > 1:
                rows = np.arange(pos * b, min((pos + 1) * b, self.n_users))
            self.backend.update_rows(self.model, rows)
        else:
            c = pos - self.row_batches
            cols = None
            if self.col_batches > 1:
                cols = np.arange(c * b, min((c + 1) * b, self.n_items))
            self.backend.update_cols(self.model, cols)

    def _after_step(self, step: int, bar) -> None:
        cfg, model, state = self.cfg, self.model, self.state
        end_of_sweep = step % self.per_sweep == 0
        loss = None
        if end_of_sweep:
            loss = self.backend.loss(model)
            model.loss_.append(loss)
            if bar is not None:
                bar.set_postfix(sweep=step // self.per_sweep, loss=f"{model.loss_[-1]:.5g}")
        if bar is not None:
            bar.update(1)
        due = (
            (step % cfg.eval_every == 0)
            if cfg.step_mode
            else (end_of_sweep and (step // self.per_sweep) % cfg.eval_every == 0)
        )
        last = step == self.total
        if due or last:
            rec = self._evaluate(step, loss)
            if cfg.early_stopping_metric is not None:
                self._early_stopping(step, rec)
        sweep_ckpt = end_of_sweep and (step // self.per_sweep) % cfg.checkpoint_every == 0
        if sweep_ckpt or last or state["stopped_early"]:
            self._checkpoint(step)

    def _early_stopping(self, step: int, rec: dict) -> None:
        """Keep the best model so far; stop after ``patience`` evaluations without one."""
        cfg, state, model = self.cfg, self.state, self.model
        value = rec.get(cfg.early_stopping_metric)
        if _is_better(value, state["best"], cfg.metric_is_higher_better()):
            state.update(best=value, best_step=step, bad_evals=0)
            self.backend.best(model, self.ckpt_root, {"step": step, "record": rec})
            return
        state["bad_evals"] += 1
        if state["bad_evals"] >= cfg.patience:
            state["stopped_early"] = True
            self.say(
                f"early stopping at step {step}: {cfg.early_stopping_metric} has not improved "
                f"on {state['best']:.4g} (step {state['best_step']}) for {cfg.patience} "
                "evaluations"
            )

    def _evaluate(self, step: int, loss: float | None = None) -> dict:
        """Evaluate the factors after ``step``; ``loss``: their loss when already computed."""
        model, backend = self.model, self.backend
        rec = {
            "model": "wals",
            "step": step,
            "sweep": round(step / self.per_sweep, 4),
            "seconds": round(time.perf_counter() - self.started, 3),
            "loss": backend.loss(model) if loss is None else loss,
            "rwse": backend.rwse(model),
        }
        rec.update(backend.evaluate(model, self.cfg, self.model_dir))
        self.records.append(rec)
        self.evaluations.append(rec)
        _write_metrics(self.metrics_path, self.records)
        self._draw_curve(final=False)
        self.say(
            "step {step} (sweep {sweep:g}): ".format(**rec)
            + ", ".join(
                f"{k} {v:.4g}"
                for k, v in rec.items()
                if k not in ("model", "step", "sweep", "seconds") and isinstance(v, float)
            )
        )
        return rec

    def _checkpoint(self, step: int) -> None:
        self.state["step"] = step
        self.state["loss_history"] = [float(x) for x in self.model.loss_]
        if self.cfg.data is not None:  # what walsrec update compares new data with
            self.state["data"] = str(Path(self.cfg.data).resolve())
        self.backend.checkpoint(
            self.model, self.ckpt_root, step, dict(self.state), self.cfg.keep_checkpoints
        )

    # ------------------------------------------------------------------ export

    def export(self, data, item_item=None) -> TrainResult:
        """Export the final model (the best one under early stopping) unless the newest
        export holds exactly its factors; the run's result. ``item_item()``: the hybrid's
        EASE part to export beside it (:class:`_ItemItem`), or None."""
        from walsrec.serving.export import list_exports

        cfg, model, state = self.cfg, self.model, self.state
        step = state["step"]
        final, factors = self.evaluations[-1], None
        if cfg.early_stopping_metric is not None and state["best_step"] is not None:
            factors = self.ckpt_root / "best"
            final = read_checkpoint(factors).state["record"]
        export_path = self.backend.export(
            model, self.model_dir, factors, item_item=item_item, **self._model_json(data, final)
        )
        if export_path is None:  # the newest export holds exactly these factors
            export_path = list_exports(self.model_dir / "export")[-1]
        else:
            self.say(f"exported {export_path}")
        return TrainResult(
            self.model_dir,
            export_path,
            model,
            self.evaluations,
            self.baseline,
            state["stopped_early"],
            self.resumed,
            step,
        )

    def _model_json(self, data, final: dict) -> dict:
        """The export's hyperparameters, metrics, training record and ``keep``."""
        cfg, model, step = self.cfg, self.model, self.state["step"]
        return {
            "hyperparameters": export_hyperparameters(cfg, model),
            "metrics": {k: v for k, v in final.items() if k not in ("model",)},
            "training": {
                "step": step,
                "exported_step": final["step"],
                "sweeps": step / self.per_sweep,
                "stopped_early": self.state["stopped_early"],
                "data": data.source,
                "baseline": self.baseline,
            },
            "keep": cfg.keep_exports,
        }


class _ItemItem:
    """The hybrid's EASE part for the export (:mod:`walsrec.training.hybrid`), computed
    when the export is written: λ_B and β chosen by validation (or read back from
    MODEL_DIR/item_item.json on a later run), then EASE fitted on the whole training
    matrix. Calling it returns ``(settings, weights)`` for the export, or None for WALS
    alone."""

    def __init__(self, cfg, backend, model, model_dir: Path, say, show_progress: bool) -> None:
        self.cfg, self.backend, self.model = cfg, backend, model
        self.path = model_dir / "item_item.json"
        self.say, self.show_progress = say, show_progress

    def choice(self):
        from walsrec.training.hybrid import HybridChoice, read_choice

        cfg = self.cfg
        if self.path.exists():
            choice = read_choice(self.path)
            self.say(f"item-item: {choice.reason} (as chosen before, {self.path.name})")
            return choice
        if cfg.item_item == "off":
            choice = HybridChoice(False, reason="off, as set")
        elif self.backend.user_items is None:
            choice = HybridChoice(False, reason="off: EASE is fitted on one machine, not on Dask")
        else:
            choice = self._choose()
        atomic_write_text(self.path, json.dumps(choice.to_dict(), indent=2) + "\n")
        if choice.blend_scores:
            tried = ", ".join(f"{b:g} {v:.4f}" for b, v in choice.blend_scores.items())
            self.say(f"item-item: {choice.reason} (β: {tried}; {choice.seconds:.1f} s)")
        else:
            self.say(f"item-item: {choice.reason}")
        return choice

    def _choose(self):
        from walsrec.training.hybrid import choose_hybrid

        cfg = self.cfg
        settings = {**cfg.to_dict(), "regularization": float(self.model.regularization)}
        bar = _progress_bar(desc="choose item-item", unit="fit") if self.show_progress else None

        def progress(what: str, value: float, score: float) -> None:
            if bar is not None:
                bar.set_postfix({what: f"{value:g}", "ndcg": f"{score:.4f}"})
                bar.update(1)

        try:
            return choose_hybrid(
                self.backend.user_items,
                settings,
                item_item=cfg.item_item,
                blend_weight=cfg.blend_weight,
                item_regularization=cfg.item_regularization,
                k=cfg.k,
                sweeps=cfg.DEFAULT_SWEEPS,
                seed=cfg.seed,
                n_jobs=cfg.threads,
                progress=progress,
                validation_model=self.backend.validation_model,
            )
        finally:
            self.backend.validation_model = None  # its factors are not needed any more
            if bar is not None:
                bar.close()

    def __call__(self):
        from walsrec.training.hybrid import export_item_item

        choice = self.choice()
        if not choice.item_item:
            return None
        if self.backend.user_items is None:  # a local run's choice, resumed on Dask
            self.say(
                "item-item: the recorded choice keeps EASE, but EASE is fitted on one machine, "
                "not on Dask: this export is WALS alone"
            )
            return None
        settings, weights, seconds = export_item_item(choice, self.backend.user_items)
        self.say(
            f"item-item: EASE fitted on the training matrix ({settings['form']} weights, "
            f"λ_B {choice.item_regularization:g}, {seconds:.1f} s)"
        )
        return settings, weights


def recorded_regularization(model_dir: Path) -> float:
    """The λ MODEL_DIR/regularization.json records (chosen by ``regularization =
    "auto"``); a missing or corrupt record is a DataFormatError naming it."""
    path = model_dir / "regularization.json"
    try:
        value = json.loads(path.read_text())["regularization"]
    except FileNotFoundError:
        raise DataFormatError(
            f"{path}: missing; the model's regularization 'auto' was never chosen."
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{path}: not a record of the chosen regularization ({exc}); use --overwrite "
            "to start over."
        ) from None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise DataFormatError(
            f"{path}: 'regularization' must be a finite number >= 0. Got {value!r} "
            "instead; use --overwrite to start over."
        )
    return float(value)


def export_hyperparameters(cfg, model) -> dict:
    """An export's hyperparameters: the identity settings of ``cfg`` and the numbers the
    ``model`` was trained with ("auto" resolved), which fold-in needs."""
    hyper = {
        k: cfg.to_dict()[k]
        for k in IDENTITY_KEYS
        if k not in ("data", "train_rows", "train_cols", "eval_rows", "eval_cols")
    }
    hyper["unobserved_weight"] = float(model.unobserved_weight)
    hyper["alpha"] = float(model.alpha)
    hyper["regularization"] = float(model.regularization)
    return hyper


def _auto_regularization(cfg, model_dir: Path, backend, say, show_progress: bool) -> float:
    """λ for ``regularization = "auto"``: the one MODEL_DIR/regularization.json recorded
    (a resumed run keeps it), else chosen by validation inside the training data
    (:mod:`walsrec.training.regularization`) and recorded there."""
    path = model_dir / "regularization.json"
    if path.exists() and (model_dir / "config.json").exists():
        value = recorded_regularization(model_dir)
        say(f"regularization auto: {value:g}, as chosen before ({path.name})")
        return value
    bar = None
    if show_progress:
        bar = _progress_bar(desc="choose regularization", unit="lambda")

    def progress(lam: float, score: float) -> None:
        if bar is not None:
            bar.set_postfix(regularization=f"{lam:g}", ndcg=f"{score:.4f}")
            bar.update(1)

    try:
        choice = backend.choose_regularization(cfg, progress)
    finally:
        if bar is not None:
            bar.close()
    atomic_write_text(path, json.dumps(choice.to_dict(), indent=2) + "\n")
    if choice.validated_users == 0:
        say(
            f"regularization auto: {choice.value:g}, the fallback: no validation split held "
            "out any entry (users need two or more training entries)"
        )
    else:
        tried = ", ".join(f"{lam:g} {score:.4f}" for lam, score in choice.scores.items())
        say(
            f"regularization auto: {choice.value:g}, the best {choice.metric} on "
            f"{choice.folds} validation split(s) of the training data, "
            f"{choice.validated_users:,} users scored ({tried}; {choice.seconds:.1f} s)"
        )
    return choice.value


#: why MODEL_DIR has no training_curve.png (matplotlib, an optional extra, is missing)
# Seconds between two drawings of the training curve while training (and one at the end).
CURVE_REDRAW_S = 10.0
_CURVE_MISSING = (
    "training_curve.png not drawn: matplotlib is not installed (pip install 'walsrec[plot]')"
)


def _redraw_curve(model_dir: Path, records: list[dict], k: int) -> bool:
    """Redraw MODEL_DIR/training_curve.png; False when matplotlib is missing."""
    try:
        from walsrec.training.curve import plot_training_curve
    except ImportError:  # matplotlib is an optional extra
        return False
    plot_training_curve(records, model_dir / "training_curve.png", k)
    return True


def _progress_bar(**kwargs):
    """A tqdm bar on stderr, drawn only when stderr is a terminal: in logs and files
    (CI, ``2> log``) it writes nothing, so they keep one line per message."""
    from tqdm.auto import tqdm

    return tqdm(disable=None, dynamic_ncols=True, **kwargs)


def _said_above(bar, say: Callable[[str], None]) -> Callable[[str], None]:
    """``say``, clearing ``bar`` while the message is written, so that a message never
    lands in the middle of the bar's line (on a terminal; a disabled bar draws nothing)."""
    if bar is None or bar.disable:
        return say

    def said(message: str) -> None:
        with bar.external_write_mode(file=sys.stderr):
            say(message)

    return said
