"""The search space of ``walsrec tune``: ranges that matter for ranking quality, or a TOML file.

:data:`DEFAULT_SPACE` is what the experiments of issue 9 (benchmarks/README.md, "quality")
found to matter, in units that mean the same on every dataset: the embedding dimension
(32–256), the unobserved mass (2–300: w0 = mass × density × mean confidence, train's
``unobserved_weight = "auto"``), λ over three decades (1e-3–1) and the confidence scheme
(BM25, linear, log, constant; with K1 and B, or ε). α stays ``"auto"`` (the mean confidence
is 1; with w0 "auto" any other α scales every weight alike, which λ nearly offsets) and ν
stays train's 1 (with ν = 1 λ is relative to each row's weight, so its good values lie
within 0.01–0.075 on MovieLens, epinions and the generated visits alike at unobserved masses
near 30, while ν < 1 moves them by decades). A TOML file can add ν, α, w0 or targets.
Targets are not searched: binary targets won every ranking study of those experiments, so
ranking metrics keep train's default (binary), and :func:`~walsrec.tuning.tune` fixes
``targets = "values"`` when the metric is rmse (which measures predicted values) and the
space does not name targets.
A new study's first trial is train's defaults (:meth:`SearchSpace.train_defaults`).
:data:`COURSE_SPACE` is the space Google's course tuned with Cloud ML Engine:
regularization 0.001–10, latent factors 5–256 (the course stopped at 50), unobserved weight
0.001–5 and a count-based column weight, linear (factor 1–200) or exponential (exponent
0.0001–10), every range on a log scale.

A space maps setting names of :class:`~walsrec.training.config.TrainConfig` to one of

* a float or int range: ``{low, high, log}`` (an int range when ``low`` and ``high`` are ints
  and the setting is an int, e.g. ``embedding_dim``);
* a categorical choice: ``{choices = [...]}``;
* a fixed value: ``solver = "cg"``.

Conditional parameters are sampled only where they act: ``col_weight_factor`` where
``col_weights_from_counts`` is ``"linear"``, ``col_weight_exponent`` where it is ``"log"``
(``"none"``, as TOML has no null, means no count-based column weights), ``alpha`` where
``confidence`` is not ``"constant"``, ``epsilon`` where it is ``"log"``, ``bm25_k1`` and
``bm25_b`` where it is ``"bm25"``, ``cg_steps`` where ``solver`` is ``"cg"``,
``unobserved_mass`` where ``unobserved_weight`` is ``"auto"``.

The hybrid's ``blend_weight`` (β) and ``item_regularization`` (λ_B) may be searched too
(a space file's ``blend_weight = {low = 0.0, high = 2.0}`` and ``item_regularization =
{choices = [250.0, 500.0, 1000.0, 2000.0]}``): a trial with β > 0 is scored as the blend of
its WALS fit with EASE fitted on the same split (λ_B 500 unless the space names it; each
split's EASE weights are reused across trials with the same λ_B, so a few choices cost few
fits). The default spaces leave them to train's validation (``--item-item auto``).
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = ["COURSE_SPACE", "DEFAULT_SPACE", "Param", "SearchSpace", "load_space"]

# Settings a trial may vary, and their type (int settings take int ranges and choices).
TUNABLE = {
    "embedding_dim": int,
    "unobserved_weight": float,
    "unobserved_mass": float,
    "regularization": float,
    "regularization_exponent": float,
    "row_weights": float,
    "col_weights": float,
    "col_weights_from_counts": str,
    "col_weight_factor": float,
    "col_weight_exponent": float,
    "confidence": str,
    "alpha": float,
    "epsilon": float,
    "bm25_k1": float,
    "bm25_b": float,
    "targets": str,
    "solver": str,
    "cg_steps": int,
    "init_std": float,
    "dtype": str,
    # the WALS + EASE hybrid (walsrec.training.hybrid): β and λ_B
    "item_item": str,
    "blend_weight": float,
    "item_regularization": float,
}

# A parameter that only exists when another one takes one of some values:
# name -> (parent, values).
CONDITIONS = {
    "unobserved_mass": ("unobserved_weight", ("auto",)),
    "col_weight_factor": ("col_weights_from_counts", ("linear",)),
    "col_weight_exponent": ("col_weights_from_counts", ("log",)),
    "cg_steps": ("solver", ("cg",)),
    "alpha": ("confidence", ("linear", "log", "bm25", "tfidf")),
    "epsilon": ("confidence", ("log",)),
    "bm25_k1": ("confidence", ("bm25",)),
    "bm25_b": ("confidence", ("bm25",)),
}
# Sampled first, so that the conditions above can be read.
_ORDER = ("unobserved_weight", "col_weights_from_counts", "solver", "confidence")


@dataclass(frozen=True)
class Param:
    """One dimension of a search space.

    Exactly one of: ``value`` (fixed), ``choices`` (categorical), or ``low``/``high``
    (a range, log-uniform when ``log``; ints when ``kind == "int"``).
    """

    name: str
    kind: str  # "float", "int", "categorical" or "fixed"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()
    value: Any = None

    def suggest(self, trial) -> Any:
        """The value of this parameter in an Optuna trial."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.value!r} (fixed)"
        if self.kind == "categorical":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        scale = "log" if self.log else "linear"
        return f"{self.kind} {self.low:g} to {self.high:g} ({scale})"


class SearchSpace:
    """Named :class:`Param` objects; ``sample(trial)`` gives one trial's settings.

    Parameters
    ----------
    params : dict of str to Param
    """

    def __init__(self, params: dict[str, Param]):
        self.params = dict(params)

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(self.params)})"

    def sample(self, trial) -> dict[str, Any]:
        """The settings of one trial: TrainConfig names to values.

        Conditional parameters (see :data:`CONDITIONS`) are left out when their condition
        does not hold; ``col_weights_from_counts = "none"`` is left out too (no count-based
        weights, TrainConfig's default).
        """
        out: dict[str, Any] = {}
        names = [n for n in _ORDER if n in self.params]
        names += [n for n in self.params if n not in _ORDER]
        for name in names:
            cond = CONDITIONS.get(name)
            if cond is not None:
                parent, wanted = cond
                current = out.get(parent, _train_default(parent))
                if current not in wanted:
                    continue
            out[name] = self.params[name].suggest(trial)
        if out.get("col_weights_from_counts") == "none":
            del out["col_weights_from_counts"]
        return out

    def train_defaults(self) -> dict[str, Any]:
        """Train's default of every sampled parameter whose range or choices hold it: the
        first trial of a new study, so that tuning starts from what an untuned run gets."""
        out: dict[str, Any] = {}
        for name, param in self.params.items():
            value = _train_default(name)
            if param.kind == "categorical":
                if value in param.choices:
                    out[name] = value
            elif param.kind in ("int", "float") and not isinstance(value, str | None | bool):
                if param.low <= value <= param.high:
                    out[name] = value
        return out

    def describe(self) -> list[str]:
        """One line per parameter, e.g. ``regularization: float 0.001 to 10 (log)``."""
        lines = []
        for name, p in self.params.items():
            cond = CONDITIONS.get(name)
            shown = " or ".join(repr(v) for v in cond[1]) if cond else ""
            when = f"  [when {cond[0]} = {shown}]" if cond and p.kind != "fixed" else ""
            lines.append(f"{name}: {p.describe()}{when}")
        return lines


def _train_default(name: str) -> Any:
    """Train's default of a setting; for regularization "auto", the fixed λ it falls back
    to (a trial needs a number: choosing λ inside every trial would multiply its cost)."""
    from walsrec.training.config import TrainConfig
    from walsrec.training.regularization import FALLBACK_REGULARIZATION

    value = getattr(TrainConfig(), name)
    if name == "regularization" and value == "auto":
        return FALLBACK_REGULARIZATION
    return value


COURSE_SPACE = SearchSpace(
    {
        "regularization": Param("regularization", "float", 0.001, 10.0, log=True),
        "embedding_dim": Param("embedding_dim", "int", 5, 256, log=True),
        "unobserved_weight": Param("unobserved_weight", "float", 0.001, 5.0, log=True),
        "col_weights_from_counts": Param(
            "col_weights_from_counts", "categorical", choices=("linear", "log")
        ),
        "col_weight_factor": Param("col_weight_factor", "float", 1.0, 200.0, log=True),
        "col_weight_exponent": Param("col_weight_exponent", "float", 0.0001, 10.0, log=True),
    }
)

DEFAULT_SPACE = SearchSpace(
    {
        "embedding_dim": Param("embedding_dim", "int", 32, 256, log=True),
        "regularization": Param("regularization", "float", 1e-3, 1.0, log=True),
        "unobserved_mass": Param("unobserved_mass", "float", 2.0, 300.0, log=True),
        "confidence": Param(
            "confidence", "categorical", choices=("bm25", "linear", "log", "constant")
        ),
        "epsilon": Param("epsilon", "float", 0.01, 10.0, log=True),
        "bm25_k1": Param("bm25_k1", "float", 0.5, 200.0, log=True),
        "bm25_b": Param("bm25_b", "float", 0.0, 1.0),
    }
)


# ---------------------------------------------------------------------------- TOML
def _check_value(where: str, name: str, value: Any) -> None:
    """Raise naming ``where`` when ``value`` is not a valid TrainConfig value of ``name``."""
    from walsrec.training.config import TrainConfig

    if name == "col_weights_from_counts" and value == "none":
        return
    if name in ("unobserved_weight", "alpha") and value == "auto":  # train's defaults
        return
    kind = TUNABLE[name]
    ok_type = (
        isinstance(value, str)
        if kind is str
        else isinstance(value, int) and not isinstance(value, bool)
        if kind is int
        else isinstance(value, int | float) and not isinstance(value, bool)
    )
    if not ok_type:
        raise InvalidParameterError(
            f"{where}: {name} must be {'an int' if kind is int else kind.__name__}. "
            f"Got {value!r} instead."
        )
    try:
        TrainConfig(model_dir="-", data="-", **{name: value}).validate()
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{where}: {exc}") from None


def _parse_param(where: str, name: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        _check_value(where, name, spec)
        return Param(name, "fixed", value=spec)
    keys = set(spec)
    if "choices" in keys:
        extra = keys - {"choices"}
        if extra:
            raise InvalidParameterError(
                f"{where}: 'choices' cannot be combined with {', '.join(sorted(extra))}."
            )
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise InvalidParameterError(
                f"{where}: 'choices' must be a non-empty list. Got {choices!r} instead."
            )
        for c in choices:
            _check_value(where, name, c)
        return Param(name, "categorical", choices=tuple(choices))
    unknown = keys - {"low", "high", "log"}
    if unknown:
        raise InvalidParameterError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; a parameter takes low, high and "
            "log (a range), choices (a list), or a plain value (fixed)."
        )
    if not {"low", "high"} <= keys:
        raise InvalidParameterError(f"{where}: a range needs both 'low' and 'high'.")
    if TUNABLE[name] is str:
        raise InvalidParameterError(
            f"{where}: {name} is categorical; give choices = [...] or a fixed value."
        )
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if not isinstance(log, bool):
        raise InvalidParameterError(f"{where}: 'log' must be true or false. Got {log!r} instead.")
    for bound in (low, high):
        _check_value(where, name, bound)
    if not (isinstance(low, int | float) and math.isfinite(low) and math.isfinite(high)):
        raise InvalidParameterError(f"{where}: 'low' and 'high' must be finite numbers.")
    if not low < high:
        raise InvalidParameterError(
            f"{where}: 'low' must be below 'high'. Got low = {low!r}, high = {high!r} instead."
        )
    if log and low <= 0:
        raise InvalidParameterError(
            f"{where}: 'low' must be > 0 on a log scale (log = true). Got {low!r} instead."
        )
    kind = "int" if TUNABLE[name] is int else "float"
    if kind == "float":
        low, high = float(low), float(high)
    return Param(name, kind, low, high, log=log)


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read a search space from a TOML file.

    The parameters sit in a ``[space]`` table, each a fixed value, a range table or a list of
    choices::

        replace = false              # true: only the parameters below are tuned

        [space]
        solver = "cg"                              # fixed
        embedding_dim = { choices = [32, 64] }     # categorical
        col_weights_from_counts = "log"

        [space.regularization]                     # a range
        low = 0.01
        high = 1.0
        log = true

    By default the file narrows or fixes parameters of :data:`DEFAULT_SPACE` and keeps the
    others; with ``replace = true`` it is the whole space (settings it does not name keep
    TrainConfig's defaults; without ``regularization``, each trial's λ is train's "auto",
    chosen on each validation split's fit part, at several fits' cost).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    SearchSpace

    Raises
    ------
    InvalidParameterError
        A missing file, an unknown setting or key, or a bad bound, naming the file and key.
    DataFormatError
        The file is not valid TOML.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidParameterError(f"Search space file {str(path)!r} not found.") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataFormatError(f"{path}: not valid TOML ({exc}).") from None
    unknown = set(raw) - {"space", "replace"}
    if unknown:
        raise InvalidParameterError(
            f"{path}: unknown top-level key {sorted(unknown)[0]!r}; expected a [space] table "
            "and optionally replace = true|false."
        )
    replace = raw.get("replace", False)
    if not isinstance(replace, bool):
        raise InvalidParameterError(
            f"{path}: 'replace' must be true or false. Got {replace!r} instead."
        )
    table = raw.get("space")
    if not isinstance(table, dict) or not table:
        raise InvalidParameterError(f"{path}: no [space] table with at least one parameter.")
    params = {} if replace else dict(DEFAULT_SPACE.params)
    for key, spec in table.items():
        name = key.replace("-", "_")
        where = f"{path}: [space.{key}]" if isinstance(spec, dict) else f"{path}: space.{key}"
        if name not in TUNABLE:
            raise InvalidParameterError(
                f"{path}: unknown parameter {key!r} in [space]; tunable settings are "
                f"{', '.join(sorted(TUNABLE))}."
            )
        params[name] = _parse_param(where, name, spec)
    return SearchSpace(params)
