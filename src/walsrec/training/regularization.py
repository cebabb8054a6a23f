"""``regularization = "auto"``: λ chosen by validation inside the training data.

The best λ depends on the data more than any other setting (benchmarks/README.md,
"quality": 0.01 on epinions, 0.015 on MovieLens, 0.03 on the generated visits at k 128,
and a λ twice too large or too small loses 11–17% of nDCG@10), and the one statistic of
the matrix we tried (n_users/n_items) did not predict it. So train measures it, as
scikit-learn's ``RidgeCV`` or glmnet's ``cv.glmnet`` do: hold out about
``validation_fraction`` of each user's training entries
(:func:`walsrec.data.split.validation_split`, the split ``walsrec tune`` scores on), fit
the rest with λ from a grid, starting at 0.015 and walking down and up while nDCG@k on the
held-out entries improves, and return the best λ. The eval split is never read.

Each λ tried costs one fit per validation split (1–3 splits, more on small data); 3–6 λ
were tried on the datasets measured, 5–12 fits in all. Train then fits the whole training
matrix with the chosen λ.

On a Dask cluster (:func:`choose_regularization_dask`) the splits are cut and kept on the
workers (:mod:`walsrec.distributed.validation`, the same entries as on one machine), every
fit is a :class:`~walsrec.distributed.wals.DaskWALS` fit and every score is computed on the
workers: the client sees only scores.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_int, check_real, param_error
from walsrec._threads import single_blas_thread
from walsrec.data.split import check_fraction
from walsrec.errors import InvalidParameterError, SingularSystemError

if TYPE_CHECKING:
    from walsrec.model.wals import WALS

__all__ = [
    "AUTO_GRID",
    "FALLBACK_REGULARIZATION",
    "RegularizationChoice",
    "choose_regularization",
    "choose_regularization_dask",
    "fit_and_score",
]

# Ascending; steps of 1.2–1.5×, finer where the three datasets' optima lie (0.01–0.03).
AUTO_GRID = (0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.07)
# Where the search starts, and λ when no user can be validated (every user has a single
# training entry): the best fixed λ on MovieLens (benchmarks/README.md), the previous default.
FALLBACK_REGULARIZATION = 0.015
MAX_FOLDS = 3
EXTEND, EXTEND_STEP = 10, 1.5
_OWNER = "parameter of choose_regularization"


@dataclass(frozen=True)
class RegularizationChoice:
    """What :func:`choose_regularization` measured.

    Attributes
    ----------
    value : float
        The chosen λ.
    scores : dict of float to float
        Validation ``metric`` of each λ tried, in the order tried (NaN where undefined).
    metric : str
        ``ndcg@k``.
    folds : int
        Validation splits scored.
    validated_users : int
        Users scored, all splits together (0: no user could be validated and ``value`` is
        the fallback).
    fits : int
        Fits run, all λ and splits together.
    seconds : float
    """

    value: float
    scores: dict[float, float] = field(default_factory=dict)
    metric: str = "ndcg@10"
    folds: int = 0
    validated_users: int = 0
    fits: int = 0
    seconds: float = 0.0
    #: on one machine, the first validation split's fit at the chosen λ (the hybrid's β is
    #: scored on that split, :mod:`walsrec.training.hybrid`); not recorded
    validation_model: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (NaN scores become None)."""
        return {
            "regularization": self.value,
            "metric": self.metric,
            "scores": [
                [lam, None if math.isnan(s) else round(s, 6)] for lam, s in self.scores.items()
            ],
            "folds": self.folds,
            "validated_users": self.validated_users,
            "fits": self.fits,
            "seconds": round(self.seconds, 3),
        }


def choose_regularization(
    user_items: sp.spmatrix,
    settings: dict[str, Any],
    *,
    k: int = 10,
    grid: Sequence[float] = AUTO_GRID,
    start: float = FALLBACK_REGULARIZATION,
    sweeps: int = 10,
    patience: int = 1,
    validation_fraction: float = 0.1,
    max_users: int = 10_000,
    min_validated: int = 5_000,
    seed: int = 0,
    n_jobs: int | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> RegularizationChoice:
    """Choose λ for ``settings`` by validation on ``user_items`` (the training matrix).

    Each λ tried is a fit from the random start, ``sweeps`` sweeps, as the final training
    does: the score is what training with that λ would give (a path warm-started from the
    previous λ's factors, tried first, favoured larger λ than cold fits of the same length
    reach). The search starts at ``start`` and walks the grid down, then up, each walk
    stopping after ``patience`` λ in a row without a better score than the best so far: it
    assumes the score rises towards one best λ and falls after it, as on every dataset we
    measured; a plateau ``patience`` λ wide (all λ ranking by popularity alone, say) ends a
    walk.

    Parameters
    ----------
    user_items : scipy.sparse matrix of shape (n_users, n_items)
        The training matrix.
    settings : dict
        Train settings (:class:`~walsrec.training.config.TrainConfig` names; missing ones
        take train's defaults); ``regularization`` is ignored, the rest is the model fitted.
    k : int, default 10
        nDCG@k is the validation metric.
    grid : sequence of float, default AUTO_GRID
        The λ that may be tried at ν = 1 (``regularization_exponent``), strictly
        ascending, each > 0; ten more in steps of 1.5× continue it past each end. At
        another ν every λ (and ``start``) is multiplied by the geometric mean over users of
        (count + w0·n_items)^(1 − ν), the factor by which λ_i = λ·(count + w0·n)^ν changes
        with ν for a typical user (about 2,500–3,300 on MovieLens 100K at ν = 0).
    start : float, default FALLBACK_REGULARIZATION
        The first λ tried (the grid's nearest on a log scale).
    sweeps : int, default 10
        Sweeps of each fit (train passes its default length, whatever the run's, so that
        λ does not depend on how long a run is).
    patience : int, default 1
        λ in a row without a better score before a walk stops.
    validation_fraction : float in (0, 1), default 0.1
        About this share of each user's entries is held out (never all of a user's).
    max_users : int, default 10000
        At most this many users (drawn at random) are scored per split; all are fitted.
    min_validated : int, default 5000
        Splits (seeded ``seed``, ``seed + 1``, ...) are drawn, up to three, until this many
        users with held-out entries are scored in all: the score of one split of a small
        dataset is noisy. The score of a λ is the splits' mean (NaN where a split's fit is
        singular, e.g. an item the split left without entries while w0 = 0).
    seed : int >= 0, default 0
        Seeds the splits, the user sample and the factors' start.
    n_jobs : int or None
        Threads (None: all cores).
    progress : callable, optional
        ``progress(lam, score)`` after each λ.

    Returns
    -------
    RegularizationChoice
    """
    grid = _checked_arguments(
        grid, start, k, sweeps, patience, max_users, min_validated, seed, validation_fraction
    )
    started = time.perf_counter()
    x = sp.csr_matrix(user_items)
    # the grid is for ν = 1; other ν move the good λ by the typical (count + w0·n)^(1 - ν)
    scale = _nu_scale(settings, x)
    splits, validated = _validation_splits(x, validation_fraction, max_users, min_validated, seed)
    folds = [_LocalFold(fit, val, settings, sweeps, seed, n_jobs) for fit, val in splits]
    return _choose(folds, validated, scale, grid, start, patience, k, progress, started)


def choose_regularization_dask(
    client,
    source,
    settings: dict[str, Any],
    *,
    k: int = 10,
    grid: Sequence[float] = AUTO_GRID,
    start: float = FALLBACK_REGULARIZATION,
    sweeps: int = 10,
    patience: int = 1,
    validation_fraction: float = 0.1,
    max_users: int = 10_000,
    min_validated: int = 5_000,
    seed: int = 0,
    n_jobs: int | None = None,
    progress: Callable[[float, float], None] | None = None,
    partitions: int | None = None,
) -> RegularizationChoice:
    """:func:`choose_regularization` on a Dask cluster: the training matrix is the native
    matrix ``source`` (:func:`walsrec.distributed.native_source`) on storage the workers
    read, and the splits, fits and scores all stay on the workers of ``client``; the same
    splits as on one machine, so the same λ up to the fits' rounding. ``partitions``: per
    side (default two per worker). Other arguments as :func:`choose_regularization`'s."""
    from walsrec.distributed.validation import validation_folds

    grid = _checked_arguments(
        grid, start, k, sweeps, patience, max_users, min_validated, seed, validation_fraction
    )
    started = time.perf_counter()
    data = validation_folds(
        client,
        source,
        fraction=validation_fraction,
        max_users=max_users,
        min_validated=min_validated,
        seed=seed,
        max_folds=MAX_FOLDS,
        partitions=partitions,
    )
    scale = _nu_scale_dask(client, source, settings, partitions)
    folds = [_DaskFold(client, f, settings, sweeps, seed, n_jobs) for f in data.folds]
    return _choose(folds, data.validated, scale, grid, start, patience, k, progress, started)


def _choose(folds, validated, scale, grid, start, patience, k, progress, started):
    """The search over ``folds`` (each scoring a λ), its grid scaled by ``scale``."""
    lams = [lam * scale for lam in _extended(grid)]
    if not folds:
        return RegularizationChoice(FALLBACK_REGULARIZATION * scale, metric=f"ndcg@{k}")
    search = _Search(lams, folds, k, progress)
    target = start * scale
    first = int(np.argmin([abs(math.log(lam / target)) for lam in lams]))
    best_i, best = search.walk(first, patience)
    return RegularizationChoice(
        value=FALLBACK_REGULARIZATION * scale if math.isnan(best) else lams[best_i],
        scores=search.scores,
        metric=search.metric,
        folds=len(folds),
        validated_users=validated,
        fits=len(search.scores) * len(folds),
        seconds=time.perf_counter() - started,
        validation_model=None if math.isnan(best) else search.best_model,
    )


def fit_and_score(
    model: WALS,
    fit: sp.csr_matrix,
    val: sp.csr_matrix,
    *,
    metric: str,
    k: int,
    n_jobs: int | None = None,
    every: int | None = None,
    on_score: Callable[[int, float], None] | None = None,
) -> float:
    """Fit ``model`` on ``fit`` and score its factors on ``val``: what λ auto's search and
    each trial of ``walsrec tune`` measure.

    The score is taken after the last sweep and, with ``every``, after every ``every``
    sweeps too (``model.callback`` is replaced while fitting).

    Parameters
    ----------
    model : WALS
        Not fitted; fitted in place.
    fit, val : scipy.sparse.csr_matrix of shape (n_users, n_items)
        The entries fitted and the held-out ones (:func:`walsrec.data.split.validation_split`).
    metric : str
        A name of :func:`walsrec.metrics.evaluate` (``ndcg@10``, say).
    k : int
        Length of the top-k lists.
    n_jobs : int or None, default None
        Threads of the scoring kernels (None: all cores).
    every : int, optional
        Also score after every this many sweeps.
    on_score : callable, optional
        ``on_score(sweep, value)`` after each score; it may raise to stop the fit (an
        Optuna pruner does).

    Returns
    -------
    float
        The last score: NaN when no validation user qualifies for ``metric``.

    Raises
    ------
    InvalidParameterError
        ``metric`` is rmse and ``model`` fits binary targets (rmse scores values).
    SingularSystemError
        From the fit (an empty row or column with nothing else to weigh it).
    """
    from walsrec.metrics import evaluate

    if metric == "rmse" and model.targets == "binary":
        raise InvalidParameterError(
            "rmse is computed only for models that fit the values; this model fits binary "
            "targets (it predicts preferences, not values). Score it on a ranking metric."
        )

    last = math.nan

    def per_sweep(sweep: int, fitted: WALS) -> bool:
        nonlocal last
        if sweep != fitted.sweeps and (every is None or sweep % every):
            return False
        with single_blas_thread():  # the score blocks' products, as the fit's (see halfstep)
            values = evaluate(
                fitted.user_factors_,
                fitted.item_factors_,
                fit,
                val,
                k=k,
                metrics=[metric],
                n_jobs=n_jobs,
            )
        last = float(values[metric])
        if on_score is not None:
            on_score(sweep, last)
        return False

    previous, model.callback = model.callback, per_sweep
    try:
        model.fit(fit)
    finally:
        model.callback = previous
    return last


def _checked_arguments(
    grid, start, k, sweeps, patience, max_users, min_validated, seed, validation_fraction
) -> list[float]:
    """``grid`` as floats, once :func:`choose_regularization`'s arguments are checked."""
    grid = [float(x) for x in grid]
    if not (
        len(grid) >= 1
        and all(x > 0 and math.isfinite(x) for x in grid)
        and all(a < b for a, b in itertools.pairwise(grid))
    ):
        rule = "a non-empty, strictly ascending sequence of finite floats > 0"
        raise InvalidParameterError(param_error("grid", rule, grid, _OWNER))
    check_real(start, "start", _OWNER, low=0, low_open=True, finite=False)
    for name, value in (
        ("k", k),
        ("sweeps", sweeps),
        ("patience", patience),
        ("max_users", max_users),
        ("min_validated", min_validated),
    ):
        check_int(value, name, _OWNER, 1)
    check_int(seed, "seed", _OWNER, 0)
    check_fraction(validation_fraction, _OWNER)
    return grid


def _validation_splits(
    x: sp.csr_matrix, validation_fraction: float, max_users: int, min_validated: int, seed: int
) -> tuple[list[tuple[sp.csr_matrix, sp.csr_matrix]], int]:
    """(fit, val) of each validation split drawn (seeded ``seed``, ``seed + 1``, ..., up to
    MAX_FOLDS, until ``min_validated`` users are scored), and the users scored in all."""
    from walsrec.data.split import sampled_validation_split

    splits = []
    validated = 0
    for fold in range(MAX_FOLDS):
        fit, val = sampled_validation_split(x, validation_fraction, max_users, seed + fold)
        n = int(np.count_nonzero(np.diff(val.indptr)))
        if n == 0:
            continue  # another draw may hold entries out
        splits.append((fit, val))
        validated += n
        if validated >= min_validated:
            break
    return splits, validated


class _LocalFold:
    """A validation split on this machine: an estimator weighted by its fit part (each λ
    fits a copy of it), the fit part and the held-out part."""

    def __init__(self, fit, val, settings, sweeps, seed, n_jobs) -> None:
        from walsrec.model.params import estimator_from_settings
        from walsrec.training.config import TrainConfig

        base = {**settings, "regularization": 0.0}
        self.estimator = estimator_from_settings(
            base,
            fit,
            defaults=TrainConfig().to_dict(),
            sweeps=sweeps,
            n_jobs=n_jobs,
            random_state=seed,
        )
        self.fit, self.val, self.n_jobs = fit, val, n_jobs

    def score(self, lam: float, metric: str, k: int) -> float:
        est = self.estimator
        model = type(est)(**est.get_params()).set_params(regularization=lam)
        self.last = None
        value = fit_and_score(model, self.fit, self.val, metric=metric, k=k, n_jobs=self.n_jobs)
        self.last = model  # the fitted model, kept by the search while it is the best
        return value


class _DaskFold:
    """A validation split on a Dask cluster's workers
    (:class:`walsrec.distributed.validation.DaskFold`): DaskWALS weighted by its fit part
    (facts reduced on the workers), fitted there for each λ and scored there."""

    def __init__(self, client, fold, settings, sweeps, seed, n_jobs) -> None:
        from walsrec.distributed.facts import parts_facts
        from walsrec.distributed.layout import Cluster
        from walsrec.distributed.wals import DaskWALS
        from walsrec.model.params import estimator_from_settings
        from walsrec.training.config import TrainConfig

        defaults = TrainConfig().to_dict()
        base = {**settings, "regularization": 0.0}
        fit = fold.fit
        facts = parts_facts(
            Cluster(client),
            fit.parts["user"],
            fit.bounds["user"],
            fit.parts["item"],
            fit.shape,
            fit.nnz,
            base,
            defaults=defaults,
        )
        self.params = estimator_from_settings(
            base,
            facts,
            defaults=defaults,
            estimator_class=DaskWALS,
            client=client,
            sweeps=sweeps,
            n_jobs=n_jobs,
            random_state=seed,
        ).get_params()
        self.fold, self.n_jobs = fold, n_jobs

    def score(self, lam: float, metric: str, k: int) -> float:
        from walsrec.distributed.evaluate import evaluate_parts_dask
        from walsrec.distributed.wals import DaskWALS

        model = DaskWALS(**{**self.params, "regularization": lam})
        model.fit(self.fold.fit)
        values = evaluate_parts_dask(
            model, self.fold.heldout, k=k, metrics=[metric], n_jobs=self.n_jobs
        )
        return float(values[metric])


class _Search:
    """The fits of λ auto's search: a λ is scored by fitting it on every validation split."""

    def __init__(self, lams, folds, k, progress) -> None:
        self.folds = folds
        self.lams = lams
        self.metric = f"ndcg@{k}"
        self.k = k
        self.progress = progress
        self.scores: dict[float, float] = {}  # λ -> validation score, in the order tried
        self.best_model = None  # the first split's fit at the best λ so far (one machine)

    def score(self, i: int) -> float:
        """The mean score of ``lams[i]`` over the splits (NaN where no split scores it)."""
        lam = self.lams[i]
        values = []
        for fold in self.folds:
            try:
                values.append(fold.score(lam, self.metric, self.k))
            except SingularSystemError:
                # a row or column the split left empty, with nothing else to weigh it
                # (w0 = 0 and λ = 0, say): this λ cannot be scored on this split
                values.append(math.nan)
        value = math.nan if np.all(np.isnan(values)) else float(np.nanmean(values))
        self.scores[lam] = value
        if self.progress is not None:
            self.progress(lam, value)
        return value

    def walk(self, first: int, patience: int) -> tuple[int, float]:
        """The index of the best λ found and its score: from ``first`` down, then up, each
        walk stopping after ``patience`` λ in a row without a better score than the best
        so far (NaN is never better)."""

        def better(a: float, b: float) -> bool:
            return not math.isnan(a) and (math.isnan(b) or a > b)

        best_i, best = first, self.score(first)
        self.best_model = getattr(self.folds[0], "last", None)
        for step in (-1, 1):
            i, behind = first + step, 0
            while 0 <= i < len(self.lams) and behind < patience:
                value = self.score(i)
                if better(value, best):
                    best_i, best, behind = i, value, 0
                    self.best_model = getattr(self.folds[0], "last", None)
                else:
                    behind += 1
                i += step
        return best_i, best


def _extended(grid: list[float]) -> list[float]:
    """``grid`` with ten more λ past each end, in steps of 1.5×: a walk that reaches an end
    while still improving goes on (data unlike the experiments')."""
    below = [grid[0] / EXTEND_STEP**j for j in range(EXTEND, 0, -1)]
    above = [grid[-1] * EXTEND_STEP**j for j in range(1, EXTEND + 1)]
    return below + list(grid) + above


def _nu_scale(settings: dict[str, Any], x: sp.csr_matrix) -> float:
    """The geometric mean over users of (count + w0·n_items)^(1 - ν): 1 at ν = 1.

    λ_i = λ·(count_i + w0·n)^ν, so at another ν the λ that regularises a typical row as the
    grid's λ does at ν = 1 is that much larger (on MovieLens 100K 2,500–3,300× at ν = 0)."""
    from walsrec.training.config import TrainConfig, wals_params

    nu = float(settings.get("regularization_exponent", TrainConfig.regularization_exponent))
    if nu == 1.0:
        return 1.0
    params = wals_params({**settings, "regularization": 1.0}, x)
    counts = np.diff(x.indptr).astype(np.float64)
    mass = counts + float(params["unobserved_weight"]) * x.shape[1]
    mass = mass[mass > 0]
    if mass.size == 0:
        return 1.0
    return float(np.exp((1.0 - nu) * np.mean(np.log(mass))))


def _nu_scale_dask(client, source, settings: dict[str, Any], partitions) -> float:
    """:func:`_nu_scale` of the stored matrix ``source``, reduced on the workers."""
    from walsrec.distributed.facts import matrix_facts
    from walsrec.distributed.validation import mean_log_mass
    from walsrec.training.config import TrainConfig, wals_params

    nu = float(settings.get("regularization_exponent", TrainConfig.regularization_exponent))
    if nu == 1.0:
        return 1.0
    base = {**settings, "regularization": 1.0}
    defaults = TrainConfig().to_dict()
    facts = matrix_facts(client, source, base, defaults=defaults)
    w0 = float(wals_params(base, facts, defaults=defaults)["unobserved_weight"])
    mean = mean_log_mass(client, source, w0, partitions)
    return 1.0 if mean is None else float(np.exp((1.0 - nu) * mean))
