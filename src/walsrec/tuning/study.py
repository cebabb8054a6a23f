"""``walsrec.tuning.tune``: an Optuna study over WALS settings, scored on validation splits.

Every trial fits WALS on most of the *training* split and scores the chosen metric on the
rest of it (:func:`validation_split`), on several such splits (``folds``), their mean
counting; the eval split of a DATA_DIR is never read, so it stays an unbiased test of the
chosen configuration (``train_best`` evaluates on it once). On the first split the metric
is reported to Optuna every ``evaluate_every`` sweeps, so a pruner can stop a trial that is
behind the others at the same sweep.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_int, check_option, check_real
from walsrec.data.split import validation_split
from walsrec.errors import InvalidParameterError, SingularSystemError
from walsrec.tuning.space import DEFAULT_SPACE, Param, SearchSpace, load_space

__all__ = [
    "TrialSummary",
    "TuneResult",
    "metric_direction",
    "train_best",
    "tune",
    "validation_split",
]

_RANKED = ("precision@", "recall@", "map@", "ndcg@")
# Study attributes that make trial values comparable: a resumed study must agree on them.
_IDENTITY = ("metric", "data", "validation_fraction", "split_seed", "sweeps", "folds")
# What a study saved before an identity key existed was tuned with.
_IDENTITY_LEGACY = {"folds": 1}
# Heartbeat of a stored study's running trials, and how long one may be silent before the
# next run of the study marks it failed (a trial is one fit per fold: seconds to minutes).
_HEARTBEAT_SECONDS = 60
_HEARTBEAT_GRACE_SECONDS = 600
_OWNER = "parameter of tune"


@dataclass
class TrialSummary:
    """One finished trial, as the ``progress`` callback of :func:`tune` receives it."""

    number: int
    state: str  # "COMPLETE", "PRUNED" or "FAIL"
    value: float | None
    params: dict[str, Any]
    sweeps: int | None  # the last sweep scored
    seconds: float | None
    best_number: int | None
    best_value: float | None
    error: str | None = None  # why a trial failed


@dataclass
class TuneResult:
    """What :func:`tune` did.

    Attributes
    ----------
    study : optuna.Study
    metric, direction : str
        E.g. ``"ndcg@10"`` and ``"maximize"``.
    best_value : float or None
        The best validation score (None when no trial completed).
    best_params : dict
        The best trial's settings, TrainConfig names (the same as ``best_config`` less
        ``sweeps`` and ``seed``).
    best_config : dict
        What ``best.toml`` holds: the settings that train the best configuration.
    trials : list of TrialSummary
        Every trial of the study (earlier runs on the same storage included).
    paths : dict of str to Path
        Files written to ``out``: ``best``, ``trials``, ``history``, ``importances``.
    notes : list of str
        Why a file was not written (e.g. too few completed trials for importances).
    data : Path or None
        The DATA_DIR tuned on, when given as a path (``train_best`` needs it).
    """

    study: Any
    metric: str
    direction: str
    best_value: float | None
    best_params: dict
    best_config: dict
    trials: list[TrialSummary]
    paths: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: Path | None = None
    validation_fraction: float = 0.1
    folds: int = 3
    threads_per_trial: int = 1
    new_trials: int = 0


def metric_direction(metric: str) -> tuple[str, int]:
    """``("maximize" | "minimize", k)`` of a metric name, or InvalidParameterError.

    ``rmse`` is minimised; ``precision@k``, ``recall@k``, ``map@k``, ``ndcg@k``, ``auc`` and
    ``coverage`` (at k = 10) are maximised.
    """
    if metric == "rmse":
        return "minimize", 10
    if metric in ("auc", "coverage"):
        return "maximize", 10
    for prefix in _RANKED:
        if metric.startswith(prefix):
            k = metric[len(prefix) :]
            if k.isdigit() and int(k) >= 1:
                return "maximize", int(k)
    raise InvalidParameterError(
        "The 'metric' parameter of tune must be rmse, auc, coverage or one of precision@k, "
        f"recall@k, map@k, ndcg@k with an int k >= 1 (e.g. ndcg@10). Got {metric!r} instead."
    )


def _total_threads(threads: int | None) -> int:
    from walsrec._threads import resolve_n_jobs

    return resolve_n_jobs(threads)


def _load_train_matrix(data) -> tuple[sp.csr_matrix, Path | None]:
    from walsrec.data.prepare import PreparedData, load_prepared

    if isinstance(data, PreparedData):
        return data.train.user_items, Path(data.path)
    if isinstance(data, str | os.PathLike):
        # Only the training split is read: choosing never sees the eval split.
        return load_prepared(data).train.user_items, Path(data)
    raise InvalidParameterError(
        "The 'data' parameter of tune must be a DATA_DIR path or a PreparedData. "
        f"Got {type(data).__name__} instead."
    )


def tune(
    data,
    *,
    trials: int | None = 20,
    metric: str = "ndcg@10",
    space: SearchSpace | str | os.PathLike | None = None,
    sweeps: int = 10,
    evaluate_every: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    jobs: int = 1,
    threads: int | None = None,
    timeout: float | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
    folds: int = 3,
    pruner: Any = "median",
    out: str | os.PathLike | None = None,
    progress: Callable[[TrialSummary], None] | None = None,
) -> TuneResult:
    """Search WALS settings with Optuna, scoring each trial on validation splits.

    Parameters
    ----------
    data : path or PreparedData
        A DATA_DIR written by ``walsrec prepare``. Only its training split is read.
    trials : int or None, default 20
        Trials to run in this call (added to the study's earlier ones). None: until
        ``timeout``.
    metric : str, default "ndcg@10"
        ``ndcg@k``, ``map@k``, ``precision@k``, ``recall@k``, ``auc``, ``coverage``
        (maximised) or ``rmse`` (minimised), on the validation part.
    space : SearchSpace, path of a TOML file, or None
        None: :data:`~walsrec.tuning.space.DEFAULT_SPACE`; with metric rmse, targets are
        fixed to the values when the space does not name them.
    sweeps : int, default 10
        Sweeps per trial; ``best.toml`` trains the same number.
    evaluate_every : int, default 1
        On the first split, score (and report to the pruner) every this many sweeps, and
        after the last; the other splits are scored after the last sweep only.
    storage : str or None
        An Optuna storage URL, e.g. ``"sqlite:///study.db"``; the same storage and
        ``study_name`` resume the study and add trials. None: in memory.
    study_name : str or None
        Default ``"walsrec"``.
    jobs : int, default 1
        Trials run in parallel threads; each trial's kernels get ``threads // jobs`` threads.
    threads : int or None
        Kernel threads in all (None: every core, or NUMBA_NUM_THREADS when set).
    timeout : float or None
        Stop starting trials after this many seconds.
    seed : int, default 0
        Seeds the validation splits (``seed``, ``seed + 1``, ...), the sampler and every
        trial's initial factors.
    validation_fraction : float, default 0.1
        The share of each user's training interactions held out for scoring. Small, so that
        a trial fits on nearly as much data as the final model: settings chosen on 75% of
        the training data transferred worse to the whole of it than settings chosen on 90%
        (benchmarks/README.md, "quality").
    folds : int, default 3
        Validation splits per trial (seeded ``seed``, ``seed + 1``, ...): a trial fits and
        scores each and counts their mean. One split's nDCG@10 moves by about ±0.005 with the
        draw on a MovieLens-100K-sized set (943 users), more than the settings the search
        tells apart near its best, so a single split picks noise; three cost three fits a
        trial. The pruner sees the first split's scores.
    pruner : "median", "none", or an optuna pruner
        "median": :class:`optuna.pruners.MedianPruner` (5 start-up trials, no pruning
        before sweep 2).
    out : path or None
        Directory for ``best.toml``, ``trials.csv``, ``optimization_history.png`` and
        ``param_importances.png``; None writes nothing.
    progress : callable, optional
        Called with a :class:`TrialSummary` after every trial of this call.

    Returns
    -------
    TuneResult

    Raises
    ------
    InvalidParameterError
        A bad argument, a search space error, or a stored study tuned on other terms
        (another metric, data, validation fraction or seed, number of folds or of sweeps).
    """
    import optuna

    space, pruner = _checked_arguments(
        metric, trials, sweeps, evaluate_every, jobs, folds, threads, seed, timeout, space, pruner
    )
    data_path, splits = _validation_splits(data, validation_fraction, seed, folds)
    objective = _Objective(space, splits, metric, sweeps, evaluate_every, threads, jobs, seed)
    identity = _identity(objective, data_path, validation_fraction)
    study, n_before = _run_study(
        optuna, objective, identity, storage, study_name, pruner, trials, timeout, jobs, progress
    )
    result = _tune_result(study, objective, data_path, validation_fraction, n_before)
    if out is not None:
        _write_outputs(result, Path(out))
    return result


def _checked_arguments(
    metric, trials, sweeps, evaluate_every, jobs, folds, threads, seed, timeout, space, pruner
) -> tuple[SearchSpace, Any]:
    """:func:`tune`'s search space and Optuna pruner, once its arguments are checked."""
    metric_direction(metric)
    check_int(trials, "trials", _OWNER, 1, allow_none=True)
    check_int(sweeps, "sweeps", _OWNER, 1)
    check_int(evaluate_every, "evaluate_every", _OWNER, 1)
    check_int(jobs, "jobs", _OWNER, 1)
    check_int(folds, "folds", _OWNER, 1)
    check_int(threads, "threads", _OWNER, 1, allow_none=True)
    # not check_int(seed, ..., None): this message has always ended without "instead"
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise InvalidParameterError(f"The 'seed' parameter of tune must be an int. Got {seed!r}.")
    check_real(timeout, "timeout", _OWNER, low=0, low_open=True, finite=False, allow_none=True)
    if trials is None and timeout is None:
        raise InvalidParameterError("tune needs 'trials' or 'timeout' (or both) to stop.")
    if space is None:
        space = DEFAULT_SPACE
    elif isinstance(space, str | os.PathLike):
        space = load_space(space)
    elif not isinstance(space, SearchSpace):
        raise InvalidParameterError(
            "The 'space' parameter of tune must be a SearchSpace, a TOML path or None. "
            f"Got {type(space).__name__} instead."
        )
    if metric == "rmse" and "targets" not in space.params:
        # rmse scores predicted values: fit the values, not train's default binary targets
        space = SearchSpace({**space.params, "targets": Param("targets", "fixed", value="values")})
    targets = space.params.get("targets")
    if metric == "rmse" and "binary" in (targets.choices or (targets.value,)):
        raise InvalidParameterError(
            f"The 'space' parameter of tune sets targets to {targets.describe()}, but the "
            "metric rmse is computed only for models that fit the values (a model fitted "
            "to binary targets predicts preferences). Fix targets = 'values' in the space, "
            "or tune a ranking metric (e.g. ndcg@10)."
        )
    return space, _make_pruner(pruner)


def _validation_splits(
    data, validation_fraction: float, seed: int, folds: int
) -> tuple[Path | None, list[tuple[sp.csr_matrix, sp.csr_matrix]]]:
    """The DATA_DIR tuned on and ``folds`` (fit, validation) splits of its training split,
    each with a user to score."""
    from walsrec.metrics import evaluated_users

    train_matrix, data_path = _load_train_matrix(data)
    splits = [
        validation_split(train_matrix, validation_fraction, seed + fold) for fold in range(folds)
    ]
    for fold, (fit_matrix, val_matrix) in enumerate(splits):
        if evaluated_users(fit_matrix, val_matrix).size == 0:
            raise InvalidParameterError(
                f"The training split is too small to carve validation split {fold + 1} of "
                f"{folds} from (fraction {validation_fraction:g}, seed {seed + fold}): no "
                "user has a held-out interaction and a fitted one."
            )
    return data_path, splits


def _identity(objective: _Objective, data_path: Path | None, validation_fraction: float) -> dict:
    """The study attributes (:data:`_IDENTITY`) that make its trial values comparable."""
    return {
        "metric": objective.metric,
        "data": str(data_path.resolve()) if data_path is not None else None,
        "validation_fraction": float(validation_fraction),
        "split_seed": objective.seed,
        "sweeps": objective.sweeps,
        "folds": len(objective.splits),
    }


def _run_study(
    optuna, objective, identity, storage, study_name, pruner, trials, timeout, jobs, progress
):
    """Open (or resume) the study and run this call's trials; the study, and how many
    trials it held before."""
    study_name = study_name or "walsrec"
    previous_level = optuna.logging.get_verbosity()
    # The library never prints: failed trials keep their reason in TrialSummary.error.
    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    try:
        study = _open_study(
            optuna, storage, study_name, objective.direction, pruner, objective.seed, identity
        )
        n_before = len(study.trials)
        if n_before == 0 and (start := objective.space.train_defaults()):
            study.enqueue_trial(start)
        callbacks = []
        if progress is not None:
            callbacks.append(lambda st, ft: progress(_summarise(st, ft)))
        study.optimize(
            objective,
            n_trials=trials,
            timeout=timeout,
            n_jobs=jobs,
            catch=(SingularSystemError, _UndefinedMetric),
            callbacks=callbacks,
        )
    finally:
        optuna.logging.set_verbosity(previous_level)
    return study, n_before


def _tune_result(
    study, objective: _Objective, data_path: Path | None, validation_fraction: float, n_before: int
) -> TuneResult:
    """What :func:`tune` returns: the study's trials, the best of them, its terms."""
    import optuna

    summaries = [_summarise(study, t, best=False) for t in study.trials]
    best_value, best_params, best_config = None, {}, {}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        best_value = float(best.value)
        best_params = dict(best.user_attrs.get("settings", best.params))
        best_config = {**best_params, "sweeps": objective.sweeps, "seed": objective.seed}
        best_number = best.number
        for s in summaries:
            s.best_number, s.best_value = best_number, best_value
    return TuneResult(
        study=study,
        metric=objective.metric,
        direction=objective.direction,
        best_value=best_value,
        best_params=best_params,
        best_config=best_config,
        trials=summaries,
        data=data_path,
        validation_fraction=float(validation_fraction),
        folds=len(objective.splits),
        threads_per_trial=objective.threads,
        new_trials=len(study.trials) - n_before,
    )


def _make_pruner(pruner):
    import optuna

    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    rule = "'median', 'none' or an optuna pruner"
    check_option(pruner, "pruner", _OWNER, ("median", "none", None), rule=rule)
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def _open_study(optuna, url, study_name, direction, pruner, seed, identity):
    if url is not None and not isinstance(url, str):
        raise InvalidParameterError(
            "The 'storage' parameter of tune must be a URL such as 'sqlite:///study.db' or "
            f"None. Got {url!r} instead."
        )
    existing = 0
    storage = None
    if url is not None:
        try:
            # Every running trial beats a heartbeat: a trial of a run that was killed
            # (SIGKILL, out of memory) stops beating, and the next run marks it failed
            # instead of leaving it "running" forever.
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=_HEARTBEAT_SECONDS,
                    grace_period=_HEARTBEAT_GRACE_SECONDS,
                )
            existing = len(optuna.load_study(study_name=study_name, storage=storage).trials)
        except KeyError:  # no such study yet
            existing = 0
        except Exception as exc:  # a bad URL, a missing driver, a file that is not a DB
            raise InvalidParameterError(f"Cannot open the Optuna storage {url!r}: {exc}") from None
    # A resumed study gets a sampler seeded past the earlier trials: the same seed would
    # propose the earlier trials' random start-up points again.
    # multivariate: the good λ moves with α, w0 and ν (a ridge, not a box), which
    # independent per-parameter densities cannot follow; group: conditional parameters
    # (alpha, epsilon, bm25_*) are modelled with the trials that sampled them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=seed + existing, n_startup_trials=10, multivariate=True, group=True
        )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    saved = study.user_attrs
    if saved:
        conflicts = [
            f"{key}: {saved.get(key, _IDENTITY_LEGACY.get(key))!r} -> {identity[key]!r}"
            for key in _IDENTITY
            if saved.get(key, _IDENTITY_LEGACY.get(key)) != identity[key]
        ]
        if conflicts:
            raise InvalidParameterError(
                f"The study {study_name!r} in {url} was tuned on other terms "
                f"({'; '.join(conflicts)}); its scores would not compare. Use another "
                "--study-name or storage."
            )
    else:
        for key, value in identity.items():
            study.set_user_attr(key, value)
    if study.direction.name.lower() != direction:
        raise InvalidParameterError(
            f"The study {study_name!r} in {url} is to {study.direction.name.lower()}, "
            f"but {identity['metric']} is to {direction}."
        )
    return study


class _UndefinedMetric(Exception):
    """No validation user qualifies for the metric: a value Optuna cannot compare."""


class _Objective:
    """One trial: sample settings; on every (fit, validation) split, fit and score; the mean."""

    def __init__(self, space, splits, metric, sweeps, evaluate_every, threads, jobs, seed):
        self.space = space
        self.splits = splits
        self.metric = metric
        self.direction, self.k = metric_direction(metric)
        self.sweeps = sweeps
        self.evaluate_every = evaluate_every
        # the kernel threads of each of the ``jobs`` trials run at once
        self.threads = max(1, _total_threads(threads) // jobs)
        self.seed = seed
        if self.metric == "rmse" and "blend_weight" in space.params:
            raise InvalidParameterError(
                "A search space with 'blend_weight' cannot be tuned on rmse: the hybrid ranks "
                "items by standardised scores and predicts no values. Tune a ranking metric."
            )
        # EASE's weights of each (split, λ_B), reused by later trials: a few at a time
        self._ease: dict[tuple[int, float], Any] = {}
        self._ease_lock = threading.Lock()

    def _ease_weights(self, fold: int, fit, lam: float):
        from walsrec.model.ease import EASE

        key = (fold, float(lam))
        with self._ease_lock:
            weights = self._ease.get(key)
            if weights is None:
                weights = EASE(lam).fit(fit).weights_
                while len(self._ease) >= max(2, len(self.splits)):
                    self._ease.pop(next(iter(self._ease)))
                self._ease[key] = weights
        return weights

    def _hybrid_score(self, model, fold, fit, val, settings) -> float:
        """The trial's blend of its WALS fit with EASE on the same split (β > 0)."""
        from walsrec.metrics import evaluate_scorer
        from walsrec.model.ease import binary_rows, hybrid_scores
        from walsrec.training.hybrid import ITEM_REGULARIZATION_START

        lam = settings.get("item_regularization", "auto")
        lam = ITEM_REGULARIZATION_START if lam == "auto" else float(lam)
        weights = self._ease_weights(fold, fit, lam)
        rows = binary_rows(fit)
        user_f = model.user_factors_
        item_f = np.asarray(model.item_factors_, dtype=np.float32)  # converted once
        beta = float(settings["blend_weight"])

        def scorer(users):
            return hybrid_scores(user_f[users], item_f, rows[users], weights, beta)

        return float(
            evaluate_scorer(scorer, fit, val, k=self.k, metrics=[self.metric], n_jobs=self.threads)[
                self.metric
            ]
        )

    def __call__(self, trial) -> float:
        settings = self.space.sample(trial)
        trial.set_user_attr("settings", settings)
        started = time.perf_counter()
        scores = []
        for fold, (fit, val) in enumerate(self.splits):
            scores.append(self._fit_and_score(trial, settings, fold, fit, val, started))
        if len(scores) > 1:
            trial.set_user_attr("fold_values", [round(v, 6) for v in scores])
        return float(np.mean(scores))

    def _fit_and_score(self, trial, settings, fold, fit, val, started) -> float:
        import optuna

        from walsrec.model.params import estimator_from_settings
        from walsrec.training.config import TrainConfig
        from walsrec.training.regularization import choose_regularization, fit_and_score

        if settings.get("regularization", TrainConfig.regularization) == "auto":
            # a space without λ: the trial gets what train would choose on this fit part
            chosen = choose_regularization(
                fit, settings, k=self.k, seed=self.seed, n_jobs=self.threads
            ).value
            settings = {**settings, "regularization": chosen}
            by_fold = [*trial.user_attrs.get("regularization_by_fold", []), chosen]
            trial.set_user_attr("regularization_by_fold", by_fold)
        # col_weights from the counts of the fit part: the model is fitted on it, as train()
        # weighs by train
        model = estimator_from_settings(
            settings,
            fit,
            defaults=TrainConfig().to_dict(),
            sweeps=self.sweeps,
            n_jobs=self.threads,
            random_state=self.seed,
        )

        def on_score(sweep: int, value: float) -> None:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
            if fold == 0:
                trial.report(value, sweep)
                trial.set_user_attr("sweeps", sweep)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{self.metric} {value:.4g} at sweep {sweep}")

        try:
            # the first split is scored every evaluate_every sweeps (the pruner compares
            # trials on it); the others once, after the last sweep
            value = fit_and_score(
                model,
                fit,
                val,
                metric=self.metric,
                k=self.k,
                n_jobs=self.threads,
                every=self.evaluate_every if fold == 0 else None,
                on_score=on_score,
            )
            beta = settings.get("blend_weight", "auto")
            if beta != "auto" and float(beta) > 0 and settings.get("item_item") != "off":
                value = self._hybrid_score(model, fold, fit, val, settings)
            if math.isnan(value):
                raise _UndefinedMetric(f"{self.metric} is undefined on the validation split")
        except (SingularSystemError, _UndefinedMetric) as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        return value


def _summarise(study, frozen, best: bool = True) -> TrialSummary:
    best_number = best_value = None
    if best:
        try:
            b = study.best_trial
            best_number, best_value = b.number, float(b.value)
        except ValueError:  # no completed trial yet
            pass
    return TrialSummary(
        number=frozen.number,
        state=frozen.state.name,
        value=None if frozen.value is None else float(frozen.value),
        params=dict(frozen.user_attrs.get("settings", frozen.params)),
        sweeps=frozen.user_attrs.get("sweeps"),
        seconds=frozen.user_attrs.get("seconds"),
        best_number=best_number,
        best_value=best_value,
        error=frozen.user_attrs.get("error"),
    )


# ---------------------------------------------------------------------------- outputs
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidParameterError(f"Cannot write {value!r} to TOML.")
        return repr(value)
    if isinstance(value, str):
        import json

        return json.dumps(value)
    raise InvalidParameterError(f"Cannot write {value!r} to TOML.")


def best_toml(result: TuneResult) -> str:
    """The text of ``best.toml``: the best trial's settings for ``walsrec train --config``."""
    best = result.study.best_trial
    lines = [
        f"# walsrec tune: the best of {len(result.trials)} trials of study "
        f"{result.study.study_name!r},",
        f"# trial {best.number}: {result.metric} = {result.best_value:.6g}, the mean over "
        f"{result.folds} validation split(s) carved from the training split "
        f"({result.validation_fraction:g} of each user).",
        "# Train it: walsrec train --config best.toml --data DATA_DIR --model-dir MODEL_DIR",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in result.best_config.items()]
    return "\n".join(lines) + "\n"


def trials_table(result: TuneResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the trials table (``trials.csv`` and the printed table)."""
    names: list[str] = []
    for f in result.study.trials:
        names += [n for n in f.params if n not in names]
    for t in result.trials:
        names += [n for n in t.params if n not in names]
    header = ["trial", "state", result.metric, "sweeps", "seconds", *names]
    raw = {f.number: f.params for f in result.study.trials}
    rows = []
    for t in result.trials:
        # a choice that sets nothing (col_weights_from_counts = "none") shows as sampled
        shown = {**raw.get(t.number, {}), **t.params}
        rows.append(
            [
                str(t.number),
                t.state.lower(),
                "" if t.value is None else f"{t.value:.6g}",
                "" if t.sweeps is None else str(t.sweeps),
                "" if t.seconds is None else f"{t.seconds:.2f}",
                *[_cell(shown.get(n)) for n in names],
            ]
        )
    return header, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write_outputs(result: TuneResult, out: Path) -> None:
    import csv

    out.mkdir(parents=True, exist_ok=True)
    header, rows = trials_table(result)
    path = out / "trials.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    result.paths["trials"] = path
    if result.best_value is None:
        result.notes.append("best.toml and the plots not written: no trial completed")
        return
    path = out / "best.toml"
    tmp = out / ".best.toml.tmp"
    tmp.write_text(best_toml(result))
    os.replace(tmp, path)
    result.paths["best"] = path
    _plots(result, out)


def _plots(result: TuneResult, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError as exc:
        result.notes.append(f"plots not written: {exc}")
        return
    import optuna

    for key, name, draw in (
        ("history", "optimization_history.png", ovm.plot_optimization_history),
        ("importances", "param_importances.png", ovm.plot_param_importances),
    ):
        # Optuna's warnings (e.g. importances "will be equal" over few trials) become notes:
        # the library never prints.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ax = draw(result.study, target_name=result.metric)
            except Exception as exc:  # e.g. importances of fewer than 2 varied trials
                result.notes.append(f"{name} not written: {type(exc).__name__}: {exc}")
                continue
        for w in caught:
            if issubclass(w.category, optuna.exceptions.ExperimentalWarning):
                continue
            note = f"{name}: {w.message}"
            if note not in result.notes:
                result.notes.append(note)
        fig = ax.figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        result.paths[key] = out / name


def train_best(
    result: TuneResult,
    model_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train and export the best configuration on the whole training split, then evaluate it
    on the eval split next to the most-popular baseline.

    Parameters
    ----------
    result : TuneResult
        With at least one completed trial.
    model_dir : path
    data : path, optional
        The DATA_DIR (default: the one ``result`` tuned on).
    threads : int, optional
    overwrite : bool, default False
        Passed to :func:`walsrec.training.train`.
    log : callable, optional
        Passed to :func:`walsrec.training.train`.

    Returns
    -------
    dict
        ``train``: the :class:`~walsrec.training.loop.TrainResult`; ``evaluation``: the
        dictionary of :func:`walsrec.evaluation.evaluate_export` (None without an eval split).
    """
    from walsrec.data.prepare import load_prepared
    from walsrec.evaluation import evaluate_export
    from walsrec.training import train

    if not result.best_config:
        raise InvalidParameterError("No trial completed: there is no best configuration to train.")
    data = data if data is not None else result.data
    if data is None:
        raise InvalidParameterError("train_best needs 'data', the DATA_DIR to train on.")
    _, k = metric_direction(result.metric)
    trained = train(
        data=str(data),
        model_dir=str(model_dir),
        threads=threads,
        k=k,
        overwrite=overwrite,
        log=log,
        **result.best_config,
    )
    evaluation = None
    if load_prepared(data).eval is not None:
        evaluation = evaluate_export(trained.export_path, data, k=k, n_jobs=threads)
    return {"train": trained, "evaluation": evaluation}
