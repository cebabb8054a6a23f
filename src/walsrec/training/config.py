"""The training configuration: every setting of ``walsrec train``, validated in one place.

A configuration comes from keyword arguments, a TOML file (``--config``), or both (the
arguments override the file). The effective configuration is saved in MODEL_DIR as
``config.json``; a later run on the same MODEL_DIR must agree with it on everything that
shapes the model (the data and the hyper-parameters), while the length of training, the
evaluation and checkpoint schedule and the thread count may change (asking for more sweeps
resumes and continues).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walsrec._files import read_bytes
from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.model import params, weighting
from walsrec.model.params import (
    AUTO_UNOBSERVED_MASS,
    LEGACY_UNOBSERVED_MASS,
    resolve_unobserved_weight,
)

__all__ = [
    "AUTO_UNOBSERVED_MASS",
    "IDENTITY_KEYS",
    "LEGACY_UNOBSERVED_MASS",
    "TrainConfig",
    "column_weights",
    "load_config",
    "resolve_unobserved_weight",
    "wals_params",
]

# Settings that define the model: a resumed run must not change them.
IDENTITY_KEYS = (
    "data",
    "train_rows",
    "train_cols",
    "eval_rows",
    "eval_cols",
    "num_rows",
    "num_cols",
    "embedding_dim",
    "unobserved_weight",
    "unobserved_mass",
    "regularization",
    "regularization_exponent",
    "row_weights",
    "col_weights",
    "col_weights_from_counts",
    "col_weight_factor",
    "col_weight_exponent",
    *weighting.PARAMS,
    "solver",
    "cg_steps",
    "dtype",
    "seed",
    "batch_size",
    "init_std",
)

HIGHER_IS_BETTER_PREFIXES = ("precision@", "recall@", "map@", "ndcg@", "auc", "coverage")


@dataclass
class TrainConfig:
    """Settings of one training run (see ``walsrec train --help`` for each)."""

    model_dir: str = ""
    # inputs: a prepared DATA_DIR, or the course's TFRecords directly
    data: str | None = None
    train_rows: str | None = None
    train_cols: str | None = None
    eval_rows: str | None = None
    eval_cols: str | None = None
    num_rows: int | None = None
    num_cols: int | None = None
    # the model
    # Defaults for ranking quality, chosen by benchmarks/quality.py (benchmarks/README.md,
    # "quality"): binary targets, BM25 confidence normalised to mean 1 (α "auto"), w0
    # scaled with the data's density (unobserved mass 30), Rendle's ν = 1 with λ chosen by
    # validation inside the training data (walsrec.training.regularization), k 128.
    embedding_dim: int = 128
    unobserved_weight: float | str = "auto"
    unobserved_mass: float = AUTO_UNOBSERVED_MASS
    regularization: float | str = "auto"
    regularization_exponent: float = 1.0
    row_weights: float = 1.0
    col_weights: float = 1.0
    col_weights_from_counts: str | None = None
    col_weight_factor: float = 1.0
    col_weight_exponent: float = 1.0
    confidence: str = "bm25"
    alpha: float | str = "auto"
    epsilon: float = 1.0
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    targets: str = "binary"
    solver: str = "cholesky"
    cg_steps: int = 3
    dtype: str = "float32"
    seed: int = 0
    init_std: float = 0.01
    threads: int | None = None
    # the back end: None (this machine), a Dask scheduler address, or "local:N"
    dask: str | None = None
    # length: sweeps, or steps of batch_size rows/columns, or epochs (= sweeps)
    sweeps: int | None = None
    train_steps: int | None = None
    batch_size: int | None = None
    num_epochs: int | None = None
    # evaluation
    eval_every: int = 1
    k: int = 10
    early_stopping_metric: str | None = None
    patience: int = 3
    # files
    checkpoint_every: int = 1
    keep_checkpoints: int = 3
    keep_exports: int = 5

    DEFAULT_SWEEPS = 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def step_mode(self) -> bool:
        """True when length and ``eval_every`` count steps rather than sweeps."""
        return self.train_steps is not None

    @property
    def total_sweeps(self) -> int | None:
        if self.train_steps is not None:
            return None
        if self.sweeps is not None:
            return self.sweeps
        if self.num_epochs is not None:
            return self.num_epochs
        return self.DEFAULT_SWEEPS

    def metric_is_higher_better(self) -> bool:
        m = self.early_stopping_metric or ""
        return m.startswith(HIGHER_IS_BETTER_PREFIXES)

    def validate(self) -> TrainConfig:
        """Check every setting; raise :class:`InvalidParameterError` naming the first bad one."""

        def bad(name, rule):
            value = getattr(self, name)
            return InvalidParameterError(
                f"The '{name}' setting of train must be {rule}. Got {value!r} instead."
            )

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        if not self.model_dir:
            raise InvalidParameterError(
                "The 'model_dir' setting of train is required (--model-dir)."
            )
        has_records = self.train_rows is not None or self.train_cols is not None
        if self.data is None and not has_records:
            raise InvalidParameterError(
                "train needs its input: 'data' (--data DATA_DIR from walsrec prepare) or "
                "'train_rows' and 'train_cols' (--train-rows/--train-cols TFRecord patterns)."
            )
        if self.data is not None and has_records:
            raise InvalidParameterError(
                "The 'data' setting of train cannot be combined with 'train_rows'/'train_cols'; "
                "give one input."
            )
        if has_records and (self.train_rows is None or self.train_cols is None):
            raise InvalidParameterError(
                "train needs both 'train_rows' (items_for_user records) and 'train_cols' "
                "(users_for_item records)."
            )
        if self.eval_cols is not None and self.eval_rows is None:
            raise InvalidParameterError(
                "The 'eval_cols' setting of train needs 'eval_rows' (--eval-rows) as well."
            )
        for name in ("num_rows", "num_cols"):
            v = getattr(self, name)
            if v is not None and not (is_int(v) and v >= 1):
                raise bad(name, "an int >= 1")
        for name in (
            "embedding_dim",
            "cg_steps",
            "eval_every",
            "k",
            "patience",
            "checkpoint_every",
            "keep_checkpoints",
            "keep_exports",
        ):
            v = getattr(self, name)
            if not (is_int(v) and v >= 1):
                raise bad(name, "an int >= 1")
        for name in ("sweeps", "train_steps", "batch_size", "num_epochs"):
            v = getattr(self, name)
            if v is not None and not (is_int(v) and v >= 1):
                raise bad(name, "an int >= 1")
        lengths = [
            n for n in ("sweeps", "train_steps", "num_epochs") if getattr(self, n) is not None
        ]
        if len(lengths) > 1:
            raise InvalidParameterError(
                f"The settings {' and '.join(repr(n) for n in lengths)} of train exclude each "
                "other; give one length."
            )
        w0 = self.unobserved_weight
        if not (w0 == "auto" or (is_num(w0) and w0 >= 0)):
            raise bad("unobserved_weight", "'auto' or a finite number >= 0")
        if not (is_num(self.unobserved_mass) and self.unobserved_mass > 0):
            raise bad("unobserved_mass", "a finite number > 0")
        if self.alpha != "auto" and not (is_num(self.alpha) and self.alpha > 0):
            raise bad("alpha", "'auto' or a finite number > 0")
        if self.regularization != "auto" and not (
            is_num(self.regularization) and self.regularization >= 0
        ):
            raise bad("regularization", "'auto' or a finite number >= 0")
        for name in (
            "regularization_exponent",
            "row_weights",
            "col_weights",
            "init_std",
        ):
            v = getattr(self, name)
            if not (is_num(v) and v >= 0):
                raise bad(name, "a finite number >= 0")
        for name in ("col_weight_factor", "col_weight_exponent"):
            v = getattr(self, name)
            if not (is_num(v) and v > 0):
                raise bad(name, "a finite number > 0")
        if self.col_weights_from_counts not in (None, "linear", "log"):
            raise bad("col_weights_from_counts", "None, 'linear' or 'log'")
        weighting.check_params(
            {**self.to_dict(), "alpha": 1.0 if self.alpha == "auto" else self.alpha},
            owner="setting of train",
        )
        if self.solver not in ("cholesky", "cg"):
            raise bad("solver", "'cholesky' or 'cg'")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", "'float32' or 'float64'")
        if not is_int(self.seed):
            raise bad("seed", "an int")
        if self.threads is not None and not (is_int(self.threads) and self.threads >= 1):
            raise bad("threads", "an int >= 1")
        if self.dask is not None:
            from walsrec.distributed.cluster import parse_dask

            parse_dask(self.dask)
            if self.batch_size is not None:
                raise InvalidParameterError(
                    "The 'batch_size' setting of train cannot be combined with 'dask': on Dask "
                    f"a step is a whole half-step. Got batch_size={self.batch_size!r}."
                )
        if self.early_stopping_metric is not None:
            allowed = (
                f"precision@{self.k}",
                f"recall@{self.k}",
                f"map@{self.k}",
                f"ndcg@{self.k}",
                "auc",
                "coverage",
                "rmse",
                "loss",
                "rwse",
            )
            if self.early_stopping_metric not in allowed:
                raise bad("early_stopping_metric", f"one of {', '.join(allowed)}")
            if (
                self.early_stopping_metric not in ("loss", "rwse")
                and self.data is None
                and (self.eval_rows is None)
            ):
                raise InvalidParameterError(
                    f"The 'early_stopping_metric' setting of train is "
                    f"{self.early_stopping_metric!r}, a held-out metric, but there is no eval "
                    "data (prepare with --eval-fraction, or give --eval-rows/--eval-cols)."
                )
        return self

    def conflicts_with(self, saved: dict) -> list[str]:
        """Identity settings that differ from a saved configuration, as 'name: old -> new'.

        A configuration saved before the weighting settings existed was trained with
        tf.contrib's weighting, the WALS estimator's defaults: resuming it must keep that,
        not take today's train defaults (serving reads old exports the same way)."""
        from walsrec.model.wals import WALS

        estimator = WALS().get_params()
        legacy = {name: estimator[name] for name in weighting.PARAMS}
        legacy["unobserved_mass"] = LEGACY_UNOBSERVED_MASS

        def saved_value(key):
            return saved.get(key, legacy.get(key))

        # settings that act only with another one: unobserved_mass with w0 "auto", α with a
        # non-constant confidence
        idle = set()
        if "auto" not in (saved_value("unobserved_weight"), self.unobserved_weight):
            idle.add("unobserved_mass")
        if saved_value("confidence") == self.confidence == "constant":
            idle.add("alpha")
        out = []
        for key in IDENTITY_KEYS:
            if key in idle or (key not in saved and key not in legacy):
                continue
            old = saved_value(key)
            if old != getattr(self, key):
                out.append(f"{key}: {old!r} -> {getattr(self, key)!r}")
        return out


def wals_params(
    settings: dict[str, Any], user_items=None, *, defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`walsrec.model.params.wals_params` with TrainConfig's defaults unless given."""
    if defaults is None:
        defaults = TrainConfig().to_dict()
    return params.wals_params(settings, user_items, defaults=defaults)


def column_weights(settings: dict[str, Any], user_items, *, defaults: dict[str, Any] | None = None):
    """:func:`walsrec.model.params.column_weights` with TrainConfig's defaults unless given."""
    if defaults is None:
        defaults = TrainConfig().to_dict()
    return params.column_weights(settings, user_items, defaults=defaults)


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Build a :class:`TrainConfig` from a TOML file and keyword overrides.

    The TOML file holds the same names as the keyword arguments of ``walsrec.train``
    (``embedding_dim = 64``), at top level or under a ``[train]`` table; dashes are accepted
    for underscores. Overrides whose value is None are ignored (the file's value stays).
    Unknown names are an error naming the file.
    """
    values: dict[str, Any] = {}
    known = _fields()
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InvalidParameterError(f"Config file {str(path)!r} not found.") from None
        except tomllib.TOMLDecodeError as exc:
            raise DataFormatError(f"{path}: not valid TOML ({exc}).") from None
        table = raw.get("train", raw)
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in known:
                raise InvalidParameterError(
                    f"{path}: unknown setting {key!r}; known settings are "
                    f"{', '.join(sorted(known))}."
                )
            values[name] = value
    for key, value in overrides.items():
        if key not in known:
            raise InvalidParameterError(
                f"Unknown setting {key!r} of train; known settings are {', '.join(sorted(known))}."
            )
        if value is not None:
            values[key] = value
    return TrainConfig(**values).validate()


def read_saved_config(model_dir: Path) -> dict | None:
    path = model_dir / "config.json"
    if not path.exists():
        return None
    try:
        saved = json.loads(read_bytes(path).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSON or UTF-8
        raise DataFormatError(
            f"{path}: not valid JSON ({exc}); use --overwrite to start over."
        ) from None
    if not isinstance(saved, dict):
        raise DataFormatError(
            f"{path}: not a JSON object of settings; use --overwrite to start over."
        )
    return saved
