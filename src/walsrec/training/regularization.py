"""``regularization = "auto"``: λ chosen by validation inside the training data.

The best λ depends on the data more than any other setting (benchmarks/README.md,
"quality": 0.01 on epinions, 0.015 on MovieLens, 0.03 on the generated visits, and a λ
twice too large or too small loses a fifth of nDCG@10), and no statistic of the matrix we
tried predicts it. So train measures it, as scikit-learn's ``RidgeCV`` or glmnet's
``cv.glmnet`` do: hold out about ``validation_fraction`` of each user's training entries
(:func:`walsrec.tuning.study.validation_split`, the split ``walsrec tune`` scores on), fit
the rest along an increasing path of λ, each λ warm-started from the previous one's factors,
score nDCG@k on the held-out entries, stop once ``patience`` λ in a row score below the best,
and return the best λ. The eval split is never read.

The path costs about two to three training runs (the first λ a full fit, each later one a
few sweeps); train then fits the whole training matrix with the chosen λ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.errors import InvalidParameterError

__all__ = [
    "AUTO_GRID",
    "FALLBACK_REGULARIZATION",
    "RegularizationChoice",
    "choose_regularization",
]

# Ascending; steps of 1.25–1.4×, finer where the three datasets' optima lie (0.01–0.03).
AUTO_GRID = (0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.07)
# λ when no user can be validated (every user has a single training entry): the best fixed
# λ on MovieLens (benchmarks/README.md), the previous default.
FALLBACK_REGULARIZATION = 0.015
MAX_FOLDS = 3


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
    sweeps : int
        Sweeps run over the fit part, all λ together.
    seconds : float
    """

    value: float
    scores: dict[float, float] = field(default_factory=dict)
    metric: str = "ndcg@10"
    folds: int = 0
    validated_users: int = 0
    sweeps: int = 0
    seconds: float = 0.0

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
            "sweeps": self.sweeps,
            "seconds": round(self.seconds, 3),
        }


def _check(name: str, ok: bool, rule: str, value: Any) -> None:
    if not ok:
        raise InvalidParameterError(
            f"The '{name}' parameter of choose_regularization must be {rule}. "
            f"Got {value!r} instead."
        )


def choose_regularization(
    user_items: sp.spmatrix,
    settings: dict[str, Any],
    *,
    k: int = 10,
    grid: Sequence[float] = AUTO_GRID,
    validation_fraction: float = 0.1,
    first_sweeps: int = 10,
    warm_sweeps: int = 3,
    patience: int = 2,
    max_users: int = 10_000,
    min_validated: int = 5_000,
    seed: int = 0,
    n_jobs: int | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> RegularizationChoice:
    """Choose λ for ``settings`` by validation on ``user_items`` (the training matrix).

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
        The λ tried, ascending, each > 0.
    validation_fraction : float in (0, 1), default 0.1
        About this share of each user's entries is held out (never all of a user's).
    first_sweeps, warm_sweeps : int, default 10 and 3
        Sweeps of the first λ (from the random start) and of each later one (from the
        previous λ's factors).
    patience : int, default 2
        Stop after this many λ in a row score below the best.
    max_users : int, default 10000
        At most this many users (drawn at random) are scored per split; all are fitted.
    min_validated : int, default 5000
        Splits (seeded ``seed``, ``seed + 1``, ...) are added, up to three, until this many
        users are scored in all: the score of a split of a small dataset is noisy (on
        MovieLens' 943 users, one split chose λ 0.02 for one seed where three chose 0.015,
        the best on test). Each split's path runs in lockstep; the score of a λ is the
        splits' mean.
    seed : int, default 0
        Seeds the split, the user sample and the factors' start.
    n_jobs : int or None
        Threads (None: all cores).
    progress : callable, optional
        ``progress(lam, score)`` after each λ.

    Returns
    -------
    RegularizationChoice
    """
    from walsrec.metrics import evaluate
    from walsrec.model.wals import WALS
    from walsrec.training.config import column_weights, wals_params
    from walsrec.tuning.study import validation_split

    grid = [float(x) for x in grid]
    _check(
        "grid",
        len(grid) >= 1 and all(x > 0 and math.isfinite(x) for x in grid) and grid == sorted(grid),
        "a non-empty ascending sequence of finite floats > 0",
        grid,
    )
    for name, value, low in (
        ("k", k, 1),
        ("first_sweeps", first_sweeps, 1),
        ("warm_sweeps", warm_sweeps, 1),
        ("patience", patience, 1),
        ("max_users", max_users, 1),
        ("min_validated", min_validated, 1),
    ):
        _check(
            name,
            isinstance(value, int) and not isinstance(value, bool) and value >= low,
            f"an int >= {low}",
            value,
        )
    _check(
        "validation_fraction",
        isinstance(validation_fraction, float | int)
        and not isinstance(validation_fraction, bool)
        and 0 < validation_fraction < 1,
        "a float in (0, 1)",
        validation_fraction,
    )
    started = time.perf_counter()
    metric = f"ndcg@{k}"
    x = sp.csr_matrix(user_items)
    folds_run = []  # (model, fit, val) per split, run in lockstep along the path
    validated = 0
    for fold in range(MAX_FOLDS):
        fit, val = validation_split(x, validation_fraction, seed + fold)
        val = _sample_users(val, max_users, seed + fold)
        n = int(np.count_nonzero(np.diff(val.indptr)))
        if n == 0:
            break
        base = {**settings, "regularization": grid[0]}
        model = WALS(
            **wals_params(base, fit),
            col_weights=column_weights(base, fit),
            sweeps=first_sweeps,
            n_jobs=n_jobs,
            random_state=seed,
        )
        folds_run.append((model, fit, val))
        validated += n
        if validated >= min_validated:
            break
    if not folds_run:
        return RegularizationChoice(FALLBACK_REGULARIZATION, metric=metric)

    scores: dict[float, float] = {}
    best, behind, sweeps = -math.inf, 0, 0
    for i, lam in enumerate(grid):
        values = []
        for model, fit, val in folds_run:
            if i == 0:
                model.fit(fit)
            else:
                model.set_params(regularization=lam)
                for _ in range(warm_sweeps):
                    model.update_rows(fit)
                    model.update_cols(fit)
            values.append(
                evaluate(
                    model.user_factors_,
                    model.item_factors_,
                    fit,
                    val,
                    k=k,
                    metrics=[metric],
                    n_jobs=n_jobs,
                )[metric]
            )
        sweeps += len(folds_run) * (first_sweeps if i == 0 else warm_sweeps)
        value = float(np.nanmean(values)) if not np.all(np.isnan(values)) else math.nan
        scores[lam] = value
        if progress is not None:
            progress(lam, value)
        if value > best:
            best, behind = value, 0
        else:
            behind += 1
            if behind >= patience:
                break
    defined = {lam: s for lam, s in scores.items() if not math.isnan(s)}
    # the best score; a tie goes to the smaller λ (tried first)
    chosen = max(defined, key=defined.__getitem__) if defined else FALLBACK_REGULARIZATION
    return RegularizationChoice(
        value=chosen,
        scores=scores,
        metric=metric,
        folds=len(folds_run),
        validated_users=validated,
        sweeps=sweeps,
        seconds=time.perf_counter() - started,
    )


def _sample_users(val: sp.csr_matrix, max_users: int, seed: int) -> sp.csr_matrix:
    """``val`` with the entries of at most ``max_users`` of its users (drawn at random)."""
    counts = np.diff(val.indptr)
    users = np.flatnonzero(counts)
    if users.size <= max_users:
        return val
    keep = np.zeros(val.shape[0], dtype=bool)
    keep[np.random.default_rng([seed, 1]).choice(users, max_users, replace=False)] = True
    rows = np.repeat(keep, counts)
    indptr = np.zeros_like(val.indptr)
    np.cumsum(np.where(keep, counts, 0), out=indptr[1:])
    return sp.csr_matrix((val.data[rows], val.indices[rows], indptr), shape=val.shape)
