"""The training configuration: every setting of ``walsrec train``, declared in one place.

Each setting is a :class:`TrainConfig` field whose metadata declares its rule (checked by
:meth:`TrainConfig.validate`), whether it shapes the model (:data:`IDENTITY_KEYS`), and the
help, group and type of its ``walsrec train`` flag, which ``walsrec.cli.training`` makes
from it (and ``docs/generate_cli.py`` documents).

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
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walsrec._argtypes import positive_float
from walsrec._checks import IntRule, OptionRule, RealRule, check_option
from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.model import params
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

HIGHER_IS_BETTER_PREFIXES = ("precision@", "recall@", "map@", "ndcg@", "auc", "coverage")

OWNER = "setting of train"  # completes the messages: "The 'k' setting of train must be ..."
# the groups of ``walsrec train --help``; None: the command's own options
INPUTS, MODEL, LENGTH = "inputs", "model", "length and evaluation"


def option(name: str) -> str:
    """The ``walsrec train`` flag of a setting: ``--embedding-dim`` for embedding_dim."""
    return "--" + name.replace("_", "-")


def _shown(default: Any) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def _setting(
    default: Any,
    help: str,
    *,
    rule: IntRule | RealRule | OptionRule | None = None,
    group: str | None = MODEL,
    identity: bool = False,
    **flag: Any,
) -> Any:
    """A TrainConfig field whose metadata declares the setting once.

    ``rule`` is checked by :meth:`TrainConfig.validate` (None, an optional setting's
    default, always passes); ``help`` (where "{default}" becomes the default), ``group``
    and ``flag`` (argparse's ``metavar``, ``type``, ``choices``, ``required`` where they do
    not follow from the rule) make the ``walsrec train`` flag; ``identity``: the setting
    shapes the model, and a resumed run must not change it (:data:`IDENTITY_KEYS`).
    """
    metadata = {
        "help": help.replace("{default}", _shown(default)),
        "rule": rule,
        "group": group,
        "identity": identity,
        **flag,
    }
    return dataclasses.field(default=default, metadata=metadata)


_POSITIVE_INT = IntRule(1)
ITEM_ITEM_OPTIONS = ("auto", "off", "on")
_NON_NEGATIVE = RealRule(low=0)
_POSITIVE = RealRule(low=0, low_open=True)


@dataclass
class TrainConfig:
    """Settings of one training run (see ``walsrec train --help`` for each).

    Each field's metadata declares the setting once: its rule, which :meth:`validate`
    checks, and the help, group and type of its ``walsrec train`` flag (see ``_setting``).
    """

    DEFAULT_SWEEPS = 10

    model_dir: str = _setting(
        "",
        "where the configuration, checkpoints, metrics and exports are written",
        group=None,
        metavar="MODEL_DIR",
        required=True,
    )
    # inputs: a prepared DATA_DIR, or the course's TFRecords directly
    data: str | None = _setting(
        None,
        "a directory written by walsrec prepare",
        group=INPUTS,
        identity=True,
        metavar="DATA_DIR",
    )
    train_rows: str | None = _setting(
        None,
        "items_for_user TFRecords (glob/URL)",
        group=INPUTS,
        identity=True,
        metavar="PATTERN",
    )
    train_cols: str | None = _setting(
        None, "users_for_item TFRecords", group=INPUTS, identity=True, metavar="PATTERN"
    )
    eval_rows: str | None = _setting(
        None, "held-out items_for_user TFRecords", group=INPUTS, identity=True, metavar="PATTERN"
    )
    eval_cols: str | None = _setting(
        None, "held-out users_for_item TFRecords", group=INPUTS, identity=True, metavar="PATTERN"
    )
    num_rows: int | None = _setting(
        None,
        "number of users (default: from the data)",
        rule=_POSITIVE_INT,
        group=INPUTS,
        identity=True,
    )
    num_cols: int | None = _setting(
        None,
        "number of items (default: from the data)",
        rule=_POSITIVE_INT,
        group=INPUTS,
        identity=True,
    )
    # the model
    # Defaults for ranking quality, chosen by benchmarks/quality.py (benchmarks/README.md,
    # "quality"): binary targets, BM25 confidence normalised to mean 1 (α "auto"), w0
    # scaled with the data's density (unobserved mass 30), Rendle's ν = 1 with λ chosen by
    # validation inside the training data (walsrec.training.regularization), k 128.
    embedding_dim: int = _setting(
        128, "latent factors k (default {default})", rule=_POSITIVE_INT, identity=True
    )
    unobserved_weight: float | str = _setting(
        "auto",
        "w0: a number (tf.contrib's default was 0.1) or auto (default): --unobserved-mass x "
        "the density nnz/(users x items) x the mean confidence",
        rule=RealRule(low=0, options=("auto",)),
        identity=True,
    )
    unobserved_mass: float = _setting(
        AUTO_UNOBSERVED_MASS,
        "with --unobserved-weight auto: how many times its observed entries a row's "
        "unobserved entries weigh together (default {default})",
        rule=_POSITIVE,
        identity=True,
        type=positive_float,  # refused when parsed, as before the rule was declared here
    )
    regularization: float | str = _setting(
        "auto",
        "lambda: a number (tf.contrib had 0) or auto (default): chosen before training as the "
        "best of a few lambdas fitted on most of each user's training entries and scored on "
        "the rest (about as long as the training itself on the datasets measured; kept in "
        "MODEL_DIR/regularization.json)",
        rule=RealRule(low=0, options=("auto",)),
        identity=True,
    )
    regularization_exponent: float = _setting(
        1.0,
        "nu: lambda*(count + w0*n)^nu (default {default}; 0 is tf.contrib's plain lambda)",
        rule=_NON_NEGATIVE,
        identity=True,
    )
    row_weights: float = _setting(
        1.0, "R, one scalar (default {default})", rule=_NON_NEGATIVE, identity=True
    )
    col_weights: float = _setting(
        1.0, "C, one scalar (default {default})", rule=_NON_NEGATIVE, identity=True
    )
    col_weights_from_counts: str | None = _setting(
        None,
        "C_j = factor/n_j (linear) or (1/n_j)^exponent (log), as the course",
        rule=OptionRule((None, "linear", "log")),
        identity=True,
    )
    col_weight_factor: float = _setting(
        1.0, "factor of linear column weights", rule=_POSITIVE, identity=True
    )
    col_weight_exponent: float = _setting(
        1.0, "exponent of log column weights", rule=_POSITIVE, identity=True
    )
    # the weighting scheme: weighting.check_params checks it, as it does WALS's
    confidence: str = _setting(
        "bm25",
        "c(r) of a stored value r in W = w0 + R*C*c(r): 1 (tf.contrib), alpha*r, "
        "alpha*log(1 + r/eps), alpha*BM25 (default) or alpha*TF-IDF row weighting "
        "(docs/weighting.md); all but constant need values >= 0",
        identity=True,
        choices=params.CONFIDENCES,
    )
    alpha: float | str = _setting(
        "auto",
        "scale of a non-constant confidence: a number or auto (default): the mean confidence "
        "of the training entries becomes 1",
        rule=RealRule(low=0, low_open=True, options=("auto",)),
        identity=True,
    )
    epsilon: float = _setting(
        1.0, "eps of --confidence log (default {default})", identity=True, type=float
    )
    bm25_k1: float = _setting(
        100.0, "K1 of --confidence bm25 (default {default})", identity=True, type=float
    )
    bm25_b: float = _setting(
        0.8, "B of --confidence bm25, in [0, 1] (default {default})", identity=True, type=float
    )
    targets: str = _setting(
        "binary",
        "fit 1 for every stored entry (binary preference, default) or the stored values "
        "(tf.contrib; explicit ratings you want predicted)",
        identity=True,
        choices=params.TARGETS,
    )
    solver: str = _setting(
        "cholesky",
        "exact or conjugate gradient",
        rule=OptionRule(("cholesky", "cg")),
        identity=True,
    )
    cg_steps: int = _setting(
        3, "CG iterations per row (default {default})", rule=_POSITIVE_INT, identity=True
    )
    dtype: str = _setting(
        "float32",
        "dtype of the factors and of the kernels' arithmetic (default {default})",
        rule=OptionRule(("float32", "float64")),
        identity=True,
    )
    seed: int = _setting(
        0,
        "random seed of the initial factors (default {default})",
        rule=IntRule(),
        identity=True,
    )
    init_std: float = _setting(
        0.01,
        "standard deviation of the random initial factors (default {default})",
        rule=_POSITIVE,
        identity=True,
    )
    # the WALS + EASE hybrid (walsrec.training.hybrid, docs/models.md)
    item_item: str = _setting(
        "auto",
        "blend EASE's item-item model with WALS: auto (default) where a blend scores better "
        "than WALS alone on a validation split of the training data, on always, off never",
        rule=OptionRule(ITEM_ITEM_OPTIONS),
        identity=True,
        choices=ITEM_ITEM_OPTIONS,
    )
    blend_weight: float | str = _setting(
        "auto",
        "beta, the weight of EASE's standardised scores added to WALS's: a number >= 0 or auto "
        "(default): the best on validation of 0 (WALS alone) to 5",
        rule=RealRule(low=0, options=("auto",)),
        identity=True,
    )
    item_regularization: float | str = _setting(
        "auto",
        "lambda_B of EASE: a number > 0 or auto (default): the best on validation, from 500 "
        "by factors of 2",
        rule=RealRule(low=0, low_open=True, options=("auto",)),
        identity=True,
    )
    threads: int | None = _setting(None, "kernel threads (default: all cores)", rule=_POSITIVE_INT)
    # the back end: None (this machine), a Dask scheduler address, or "local:N"
    dask: str | None = _setting(
        None,
        "run the half-steps, lambda auto, evaluations, checkpoints and the export on a Dask "
        "cluster: a scheduler address (tcp://HOST:8786) or local:N to start N local worker "
        "processes; DATA_DIR and MODEL_DIR must be on storage every worker reads at the same "
        "path",
        metavar="ADDRESS|local:N",
    )
    # length: sweeps, or epochs (= sweeps), or steps of batch_size rows/columns
    sweeps: int | None = _setting(
        None, f"sweeps to run (default {DEFAULT_SWEEPS})", rule=_POSITIVE_INT, group=LENGTH
    )
    num_epochs: int | None = _setting(
        None, "the same as --sweeps", rule=_POSITIVE_INT, group=LENGTH
    )
    train_steps: int | None = _setting(
        None, "steps to run; a step solves one batch", rule=_POSITIVE_INT, group=LENGTH
    )
    batch_size: int | None = _setting(
        None,
        "rows or columns per step (default: all)",
        rule=_POSITIVE_INT,
        group=LENGTH,
        identity=True,
    )
    # evaluation
    eval_every: int = _setting(
        1, "evaluate every N sweeps (steps with --train-steps)", rule=_POSITIVE_INT, group=LENGTH
    )
    k: int = _setting(
        10, "top-k of the ranking metrics (default {default})", rule=_POSITIVE_INT, group=LENGTH
    )
    early_stopping_metric: str | None = _setting(
        None, "e.g. ndcg@10", group=LENGTH, metavar="METRIC"
    )
    patience: int = _setting(
        3,
        "evaluations without improvement (default {default})",
        rule=_POSITIVE_INT,
        group=LENGTH,
    )
    # files
    checkpoint_every: int = _setting(
        1, "sweeps between checkpoints (default {default})", rule=_POSITIVE_INT, group=LENGTH
    )
    keep_checkpoints: int = _setting(3, "default {default}", rule=_POSITIVE_INT, group=LENGTH)
    keep_exports: int = _setting(5, "default {default}", rule=_POSITIVE_INT, group=LENGTH)

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
        """Check every setting; raise :class:`InvalidParameterError` naming the first bad one.

        The required settings and the inputs first, then each setting against the rule its
        field declares (a NumPy number is stored as a Python int or float, which config.json
        can hold),
        then the rules between settings.
        """
        for f in dataclasses.fields(self):
            if f.metadata.get("required") and not getattr(self, f.name):
                raise InvalidParameterError(
                    f"The {f.name!r} {OWNER} is required ({option(f.name)})."
                )
        self._check_inputs()
        for f in dataclasses.fields(self):
            value, rule = getattr(self, f.name), f.metadata["rule"]
            if rule is not None and not (value is None and f.default is None):
                setattr(self, f.name, rule.check(value, f.name, OWNER))
        self._check_length()
        from walsrec.model import weighting

        weighting.check_params(
            {**self.to_dict(), "alpha": 1.0 if self.alpha == "auto" else self.alpha}, owner=OWNER
        )
        self._check_dask()
        self._check_early_stopping()
        if self.item_item == "on" and self.blend_weight == 0:
            raise InvalidParameterError(
                "The 'blend_weight' setting of train is 0 with item_item 'on': a blend weight "
                "of 0 is WALS alone. Give a number > 0, 'auto', or item_item 'off'."
            )
        return self

    def _check_inputs(self) -> None:
        """One input: a DATA_DIR or both TFRecord patterns; eval columns with eval rows."""
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

    def _check_length(self) -> None:
        lengths = [
            n for n in ("sweeps", "train_steps", "num_epochs") if getattr(self, n) is not None
        ]
        if len(lengths) > 1:
            raise InvalidParameterError(
                f"The settings {' and '.join(repr(n) for n in lengths)} of train exclude each "
                "other; give one length."
            )

    def _check_dask(self) -> None:
        if self.dask is None:
            return
        if self.item_item == "on":
            raise InvalidParameterError(
                "The 'item_item' setting of train cannot be 'on' with 'dask': EASE's weights "
                "are fitted on one machine. Use item_item = 'auto' (off on a cluster) or 'off'."
            )
        from walsrec.distributed.cluster import parse_dask

        parse_dask(self.dask)

    def _check_early_stopping(self) -> None:
        """A metric evaluation computes at k; a held-out one needs eval data."""
        metric = self.early_stopping_metric
        if metric is None:
            return
        at_k = [f"{name}@{self.k}" for name in ("precision", "recall", "map", "ndcg")]
        allowed = (*at_k, "auc", "coverage", "rmse", "loss", "rwse")
        check_option(metric, "early_stopping_metric", OWNER, allowed, one_of=True, show_option=str)
        if metric == "rmse" and self.targets == "binary":
            raise InvalidParameterError(
                "The 'early_stopping_metric' setting of train cannot be 'rmse' with targets "
                "'binary': rmse is computed only for models that fit the values. Use "
                "targets = 'values', or stop early on a ranking metric (e.g. ndcg@10)."
            )
        if metric not in ("loss", "rwse") and self.data is None and self.eval_rows is None:
            raise InvalidParameterError(
                f"The 'early_stopping_metric' setting of train is {metric!r}, a held-out "
                "metric, but there is no eval data (prepare with --eval-fraction, or give "
                "--eval-rows/--eval-cols)."
            )

    def conflicts_with(self, saved: dict) -> list[str]:
        """Identity settings that differ from a saved configuration, as 'name: old -> new'.

        A configuration saved before the weighting settings existed was trained with
        tf.contrib's weighting, the WALS estimator's defaults: resuming it must keep that,
        not take today's train defaults (serving reads old exports the same way)."""
        from walsrec.model.wals import WALS

        estimator = WALS().get_params()
        legacy = {name: estimator[name] for name in params.WEIGHTING_PARAMS}
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


# Settings that define the model: a resumed run must not change them.
IDENTITY_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["identity"])


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
        from walsrec._files import read_bytes

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
