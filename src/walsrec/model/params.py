"""Settings to estimator: the one mapping from walsrec's settings (``walsrec train``'s, an
export's ``hyperparameters``) to :class:`~walsrec.model.wals.WALS` arguments.

Train, tune, λ auto's search and serving's fold-in all build their estimator with
:func:`estimator_from_settings` (:func:`wals_params` and :func:`column_weights`, then the
run's own arguments), each passing the defaults that fill what its settings lack
(``walsrec train``'s for new runs, the estimator's own for an export written before a
setting existed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from walsrec.errors import InvalidParameterError

if TYPE_CHECKING:
    from walsrec.model.wals import WALS

__all__ = [
    "AUTO_UNOBSERVED_MASS",
    "COLUMN_WEIGHT_DEFAULTS",
    "CONFIDENCES",
    "LEGACY_UNOBSERVED_MASS",
    "SETTINGS",
    "TARGETS",
    "WEIGHTING_PARAMS",
    "MatrixFacts",
    "column_weights",
    "estimator_from_settings",
    "resolve_unobserved_weight",
    "set_params",
    "wals_params",
]

# Confidence schemes and targets, and a weighting scheme's estimator parameters (train
# settings too); :mod:`walsrec.model.weighting` computes them. Here, without numpy, for the
# command line's parser.
CONFIDENCES = ("constant", "linear", "log", "bm25", "tfidf")
WEIGHTING_PARAMS = ("confidence", "alpha", "epsilon", "bm25_k1", "bm25_b", "targets")
TARGETS = ("values", "binary")

# unobserved_weight = "auto": w0 = unobserved_mass × density × mean confidence, so that a
# row's unobserved entries weigh, together, about unobserved_mass times its observed entries
# (w0 · n_items = unobserved_mass × the mean row count × the mean c(r)). A fixed w0 cannot
# suit both MovieLens (density 0.047) and epinions (0.0015): the experiments in
# benchmarks/README.md ("quality") found the best w0 about proportional to the density.
# alpha = "auto": α = 1 / the mean of c(r) with α = 1, so that the mean confidence is 1
# whatever the units of the values (seconds, plays, stars).
AUTO_UNOBSERVED_MASS = 30.0
# What "auto" meant before unobserved_mass existed (a config.json saved then lacks it).
LEGACY_UNOBSERVED_MASS = 20.0

# The settings that become WALS constructor arguments as they are: every argument but
# ``col_weights`` (derived, see column_weights), ``sweeps`` (train counts them) and the
# run's own (thread count, seed, tolerance, callback, progress bar).
SETTINGS = (
    "embedding_dim",
    "unobserved_weight",
    "regularization",
    "regularization_exponent",
    "row_weights",
    "confidence",
    "alpha",
    "epsilon",
    "bm25_k1",
    "bm25_b",
    "targets",
    "solver",
    "cg_steps",
    "init_std",
    "dtype",
)

# What column_weights takes when its settings lack a key (walsrec train's defaults).
COLUMN_WEIGHT_DEFAULTS = {
    "col_weights": 1.0,
    "col_weights_from_counts": None,
    "col_weight_factor": 1.0,
    "col_weight_exponent": 1.0,
}


@dataclass(frozen=True)
class MatrixFacts:
    """What resolving settings reads of a training matrix, measured where it lives (on a
    Dask cluster's workers: :func:`walsrec.distributed.facts.matrix_facts`), passed in its
    place to :func:`wals_params`, :func:`column_weights` and :func:`estimator_from_settings`.

    Attributes
    ----------
    shape : (int, int)
        (n_users, n_items).
    nnz : int
        Stored entries.
    unit_mean : float or None
        The mean confidence c(r) at α = 1 of the settings' scheme (``alpha`` or
        ``unobserved_weight`` "auto" read it); None when not measured.
    item_counts : ndarray of float64 or None
        Each item's number of stored entries (``col_weights_from_counts`` reads it).
    """

    shape: tuple[int, int]
    nnz: int
    unit_mean: float | None = None
    item_counts: Any = None


def _needs(facts: MatrixFacts, what: str, value):
    if value is None:
        raise InvalidParameterError(
            f"The training matrix's {what} was not measured (MatrixFacts.{what} is None); "
            "the settings need it."
        )
    return value


def resolve_unobserved_weight(
    value: float | str,
    user_items,
    mass: float = AUTO_UNOBSERVED_MASS,
    mean_confidence: float = 1.0,
) -> float:
    """``value``, or for "auto" ``mass`` × nnz / (n_users × n_items) × ``mean_confidence``."""
    if value != "auto":
        return float(value)
    n_users, n_items = user_items.shape
    if n_users == 0 or n_items == 0 or user_items.nnz == 0:
        return 1.0
    return float(mass) * user_items.nnz / (n_users * n_items) * float(mean_confidence)


def wals_params(
    settings: Mapping[str, Any], user_items=None, *, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """WALS keyword arguments (embedding_dim first) from settings, ``defaults`` filling
    what ``settings`` lacks.

    ``alpha = "auto"`` and ``unobserved_weight = "auto"`` are resolved against
    ``user_items`` (the training matrix), which is then required: α first (the mean
    confidence becomes 1), then w0 (``unobserved_mass`` × density × the mean confidence)."""
    out = {name: settings.get(name, defaults[name]) for name in SETTINGS}
    if out["regularization"] == "auto":
        raise InvalidParameterError(
            "regularization = auto is chosen by validation: resolve it first with "
            "walsrec.training.regularization.choose_regularization (walsrec.train does)."
        )
    autos = [name for name in ("alpha", "unobserved_weight") if out[name] == "auto"]
    if not autos:
        return out
    if user_items is None:
        raise InvalidParameterError(
            f"{' and '.join(f'{n} = auto' for n in autos)} needs the training matrix to be "
            "resolved."
        )
    scheme = {name: out[name] for name in ("confidence", "epsilon", "bm25_k1", "bm25_b")}
    # c(r) is proportional to α in every scheme: one pass at α = 1 serves both "auto"s
    from walsrec.model import weighting

    if isinstance(user_items, MatrixFacts):
        unit_mean = 1.0 if out["confidence"] == "constant" else user_items.unit_mean
        unit_mean = _needs(user_items, "unit_mean", unit_mean)
    else:
        unit_mean = weighting.mean_confidence(user_items, **scheme, alpha=1.0)
    if out["alpha"] == "auto":
        out["alpha"] = 1.0 / unit_mean if unit_mean > 0 else 1.0
    if out["unobserved_weight"] == "auto":
        mass = settings.get("unobserved_mass", defaults.get("unobserved_mass"))
        if mass is None:  # an export's defaults (the estimator's) know no unobserved_mass
            mass = LEGACY_UNOBSERVED_MASS
        mean = 1.0 if out["confidence"] == "constant" else out["alpha"] * unit_mean
        # all-zero confidences (every stored value 0) would give w0 = 0: weigh as constant
        mean = mean if mean > 0 else 1.0
        out["unobserved_weight"] = resolve_unobserved_weight("auto", user_items, mass, mean)
    return out


def column_weights(
    settings: Mapping[str, Any],
    user_items,
    *,
    defaults: Mapping[str, Any] = COLUMN_WEIGHT_DEFAULTS,
):
    """WALS's ``col_weights`` from settings (``defaults`` filling what they lack): the
    scalar ``col_weights``, or with ``col_weights_from_counts`` the course's weights from
    the item counts of ``user_items`` (the training matrix)."""

    def get(name):
        return settings.get(name, defaults.get(name))

    how = get("col_weights_from_counts")
    if how is None:
        return get("col_weights")
    from walsrec.model import weighting

    factor, exponent = float(get("col_weight_factor")), float(get("col_weight_exponent"))
    if isinstance(user_items, MatrixFacts):
        counts = _needs(user_items, "item_counts", user_items.item_counts)
        return weighting.column_weights_from_item_counts(counts, how, factor, exponent)
    return weighting.column_weights_from_counts(user_items, how, factor, exponent)


def estimator_from_settings(
    settings: Mapping[str, Any],
    user_items=None,
    *,
    defaults: Mapping[str, Any],
    estimator_class: type | None = None,
    validate: bool = False,
    **params: Any,
) -> WALS:
    """A WALS estimator (not fitted) from walsrec's settings.

    Its arguments are :func:`wals_params` and ``col_weights`` from :func:`column_weights`
    (both with ``defaults`` filling what ``settings`` lacks), then ``params``, which add the
    run's own arguments (``sweeps``, ``n_jobs``, ``random_state``, a Dask ``client``) or
    replace settings (``dtype``, say); a ``col_weights`` among them is used as it is, and
    :func:`column_weights` is not called.

    Parameters
    ----------
    settings : mapping
        Settings named as :data:`SETTINGS` and :data:`COLUMN_WEIGHT_DEFAULTS` (others,
        ``sweeps`` say, are ignored: pass them in ``params``).
    user_items : scipy.sparse matrix of shape (n_users, n_items), optional
        The training matrix: needed for ``alpha``/``unobserved_weight`` = "auto" and for
        ``col_weights_from_counts``.
    defaults : mapping
        What fills the settings ``settings`` lacks (``TrainConfig().to_dict()`` for a run
        of ``walsrec train``, ``WALS().get_params()`` for an export).
    estimator_class : type, optional
        WALS (the default) or another estimator taking WALS's parameters
        (:class:`~walsrec.distributed.wals.DaskWALS`).
    validate : bool, default False
        Check the arguments now (as ``fit`` would), raising ``InvalidParameterError``.
    **params
        More WALS arguments, applied last.

    Returns
    -------
    WALS

    Examples
    --------
    >>> from walsrec.model.params import estimator_from_settings
    >>> from walsrec.model.wals import WALS
    >>> model = estimator_from_settings(
    ...     {"embedding_dim": 8, "regularization": 0.02},
    ...     defaults=WALS().get_params(),
    ...     sweeps=5,
    ...     random_state=0,
    ... )
    >>> model.embedding_dim, model.regularization, model.sweeps
    (8, 0.02, 5)
    """
    # here, not at the top: training.config imports this module at its top, and reading
    # settings needs no estimator
    from walsrec.model.wals import WALS

    arguments = wals_params(settings, user_items, defaults=defaults)
    if "col_weights" not in params:
        arguments["col_weights"] = column_weights(settings, user_items, defaults=defaults)
    arguments.update(params)
    model = (estimator_class or WALS)(**arguments)
    if validate:
        from walsrec.model.validation import check_params

        check_params({k: v for k, v in model.get_params().items() if k in WALS().get_params()})
    return model


def set_params(estimator, params: Mapping[str, Any]):
    """scikit-learn's ``set_params`` for WALS and DaskWALS: each name must be one of the
    estimator's ``get_params()``; returns the estimator."""
    valid = estimator.get_params()
    for name, value in params.items():
        if name not in valid:
            raise InvalidParameterError(
                f"Invalid parameter {name!r} for {type(estimator).__name__}. Valid parameters: "
                f"{sorted(valid)}."
            )
        setattr(estimator, name, value)
    return estimator
