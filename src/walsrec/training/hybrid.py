"""``item_item = "auto"``: the WALS + EASE hybrid, its weights chosen by validation.

The hybrid scores ``z(u·Vᵀ) + β·z(x_u·B)`` (:mod:`walsrec.model.ease`). Two numbers are
chosen inside the training data, as λ ``auto`` chooses λ (:mod:`.regularization`): hold
out about ``validation_fraction`` of each user's training entries
(:func:`walsrec.data.split.validation_split`, the split λ auto's first fold uses), then

1. **λ_B**: fit EASE on the rest with λ_B from a log grid (factors of 2 from 500,
   walking down then up while nDCG@k on the held-out entries improves);
2. **β**: fit WALS on the rest with the run's settings (λ resolved; λ auto's own fit on
   that split when λ was chosen in this run), and score the blend of the two models'
   held-out rankings at each β of :data:`BLEND_GRID`, 0 included.

``item_item = "auto"`` keeps EASE only where the best β is above 0, and never for a model
that fits the values (``targets = "values"``: the blend's standardised scores predict no
rating); ``"on"`` keeps it whatever β is best among those above 0. The eval split is
never read. The choice, every score compared and the seconds taken go to
``MODEL_DIR/item_item.json`` and the export.

Cost: one EASE fit per λ_B tried (3–4 typically; 46 s each at 20,000 items with dense B in
float32 on 2 cores), one WALS fit of train's default length, and one scoring pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.errors import InvalidParameterError, SingularSystemError

__all__ = [
    "BLEND_GRID",
    "ITEM_REGULARIZATION_START",
    "HybridChoice",
    "choose_hybrid",
    "export_item_item",
    "item_item_feasible",
    "may_blend",
    "read_choice",
]

#: β tried by ``blend_weight = "auto"``, ascending (0: WALS alone).
BLEND_GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0)
#: where λ_B's search starts (Steck's value for MovieLens 20M, the best on MovieLens 100K)
ITEM_REGULARIZATION_START = 500.0
_LAMBDA_STEP = 2.0
_LAMBDA_STEPS = 12  # at most this many factors of 2 either side of the start
_CHUNK_BYTES = 64 * 2**20  # score blocks of the β pass


@dataclass(frozen=True)
class HybridChoice:
    """What :func:`choose_hybrid` decided and measured.

    Attributes
    ----------
    item_item : bool
        Whether the export keeps EASE beside WALS.
    blend_weight : float
        β (0 when ``item_item`` is False).
    item_regularization : float or None
        λ_B (None when EASE was not fitted).
    reason : str
        One line: why (for the log).
    regularization_scores, blend_scores : dict of float to float
        Validation nDCG@k of each λ_B (EASE alone) and each β tried, in the order tried.
    metric : str
    validated_users : int
    seconds : float
    """

    item_item: bool
    blend_weight: float = 0.0
    item_regularization: float | None = None
    reason: str = ""
    regularization_scores: dict[float, float] = field(default_factory=dict)
    blend_scores: dict[float, float] = field(default_factory=dict)
    metric: str = "ndcg@10"
    validated_users: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (NaN scores become None)."""

        def pairs(scores):
            return [[x, None if math.isnan(s) else round(s, 6)] for x, s in scores.items()]

        return {
            "item_item": self.item_item,
            "blend_weight": self.blend_weight,
            "item_regularization": self.item_regularization,
            "reason": self.reason,
            "metric": self.metric,
            "regularization_scores": pairs(self.regularization_scores),
            "blend_scores": pairs(self.blend_scores),
            "validated_users": self.validated_users,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HybridChoice:
        """Read back :meth:`to_dict`'s record; a record that keeps EASE without a finite
        β > 0 and λ_B > 0 is a ValueError."""

        def scores(pairs):
            return {float(x): math.nan if s is None else float(s) for x, s in pairs}

        if d["item_item"] is True:
            beta, lam = d["blend_weight"], d["item_regularization"]
            ok = all(
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and math.isfinite(v)
                and v > 0
                for v in (beta, lam)
            )
            if not ok:
                raise ValueError(
                    "'item_item' is true, so 'blend_weight' and 'item_regularization' must be "
                    f"finite numbers > 0; got {beta!r} and {lam!r}"
                )
        return cls(
            item_item=bool(d["item_item"]),
            blend_weight=float(d["blend_weight"]),
            item_regularization=(
                None if d["item_regularization"] is None else float(d["item_regularization"])
            ),
            reason=str(d.get("reason", "")),
            regularization_scores=scores(d.get("regularization_scores", [])),
            blend_scores=scores(d.get("blend_scores", [])),
            metric=str(d.get("metric", "ndcg@10")),
            validated_users=int(d.get("validated_users", 0)),
            seconds=float(d.get("seconds", 0.0)),
        )


def may_blend(item_item: str, targets: str | None) -> bool:
    """Whether a run's settings let the hybrid be chosen: not ``item_item = "off"``, and
    not ``"auto"`` for a model that fits the values (the blend predicts no rating)."""
    return item_item == "on" or (item_item == "auto" and targets != "values")


def item_item_feasible(n_users: int, n_items: int) -> str | None:
    """None when EASE can be fitted on a matrix of this shape, else why not (one line)."""
    from walsrec.model.ease import DENSE_MAX_ITEMS, SPARSE_MAX_SIDE

    if n_items <= DENSE_MAX_ITEMS or min(n_users, n_items) <= SPARSE_MAX_SIDE:
        return None
    return (
        f"EASE needs a dense matrix of the smaller side of the data, at most "
        f"{SPARSE_MAX_SIDE:,}; this one has {n_users:,} users × {n_items:,} items"
    )


def choose_hybrid(
    user_items: sp.spmatrix,
    settings: dict[str, Any],
    *,
    item_item: str = "auto",
    blend_weight: float | str = "auto",
    item_regularization: float | str = "auto",
    k: int = 10,
    sweeps: int = 10,
    validation_fraction: float = 0.1,
    max_users: int = 10_000,
    seed: int = 0,
    n_jobs: int | None = None,
    grid: Sequence[float] = BLEND_GRID,
    progress: Callable[[str, float, float], None] | None = None,
    validation_model=None,
) -> HybridChoice:
    """Choose λ_B and β for the hybrid by validation on ``user_items`` (the training matrix).

    Parameters
    ----------
    user_items : scipy.sparse matrix of shape (n_users, n_items)
    settings : dict
        The run's train settings with λ resolved (a number): the WALS fitted to score β.
    item_item : {"auto", "on"}
    blend_weight : "auto" or float >= 0
        A number is taken as β (no WALS fit on the validation split).
    item_regularization : "auto" or float > 0
        A number is taken as λ_B (no search).
    k : int
        nDCG@k is the validation metric.
    sweeps : int
        Sweeps of the validation WALS fit.
    validation_fraction, max_users, seed, n_jobs
        As :func:`walsrec.training.regularization.choose_regularization`.
    grid : sequence of float
        β tried, ascending, from 0.
    progress : callable, optional
        ``progress(what, value, score)`` after each λ_B ("item_regularization") and each β
        ("blend_weight").
    validation_model : WALS, optional
        λ auto's fit on the same validation split at the same λ
        (:attr:`RegularizationChoice.validation_model
        <walsrec.training.regularization.RegularizationChoice>`): used instead of fitting
        WALS again when its λ is the run's.

    Returns
    -------
    HybridChoice
    """
    from walsrec.data.split import sampled_validation_split
    from walsrec.metrics import evaluate_scorer
    from walsrec.model import ease
    from walsrec.model.ease import EASE, item_item_scores

    started = time.perf_counter()
    metric = f"ndcg@{k}"
    x = sp.csr_matrix(user_items)
    if not may_blend(item_item, settings.get("targets")):
        return HybridChoice(
            False,
            reason="off: the model fits the values (targets 'values'), which the hybrid's "
            "standardised scores would not predict; use item_item 'on' to blend anyway",
            metric=metric,
        )
    reason = item_item_feasible(*x.shape)
    if reason is not None:
        if item_item == "on":
            raise InvalidParameterError(f"The 'item_item' setting of train is 'on', but {reason}.")
        return HybridChoice(False, reason=f"off: {reason}", metric=metric)
    # λ auto's first fold: its fit there scores β (``validation_model``)
    fit, val = sampled_validation_split(x, validation_fraction, max_users, seed)
    validated = int(np.count_nonzero(np.diff(val.indptr)))
    if validated == 0:
        if item_item == "on" and blend_weight != "auto" and item_regularization != "auto":
            return HybridChoice(
                True,
                float(blend_weight),
                float(item_regularization),
                reason="on: the given weights (no user could be validated)",
                metric=metric,
            )
        if item_item == "on":
            raise InvalidParameterError(
                "The 'item_item' setting of train is 'on' with a weight 'auto', but no user "
                "has two or more training entries to validate on; give 'blend_weight' and "
                "'item_regularization' as numbers."
            )
        return HybridChoice(
            False,
            reason="off: no user has two or more training entries to validate on",
            metric=metric,
        )

    # the dense form's fits at every λ_B share XᵀX (one more n_items² array meanwhile)
    dense = x.shape[1] <= ease.DENSE_MAX_ITEMS
    fit_rows = ease.binary_rows(fit)
    gram = ease.gram_matrix(fit_rows) if dense else None

    def ease_score(lam: float) -> tuple[float, Any]:
        try:
            if dense:
                weights = ease.ease_dense(fit_rows, lam, np.float32, gram=gram)
            else:
                weights = EASE(lam).fit(fit).weights_
        except SingularSystemError:  # λ_B too small for float32: never the best
            if progress is not None:
                progress("item_regularization", lam, math.nan)
            return math.nan, None
        score = evaluate_scorer(
            lambda users: item_item_scores(fit_rows[users], weights),
            fit,
            val,
            k=k,
            metrics=[metric],
            n_jobs=n_jobs,
        )[metric]
        if progress is not None:
            progress("item_regularization", lam, score)
        return float(score), weights

    lam_scores: dict[float, float] = {}
    if item_regularization == "auto":
        lam_b, weights = _walk_lambda(ease_score, lam_scores)
    else:
        lam_b = float(item_regularization)
        score, weights = ease_score(lam_b)
        lam_scores[lam_b] = score
    gram = None  # free XᵀX before WALS and the β pass
    if weights is None:
        if item_item == "on":
            raise InvalidParameterError(
                "The 'item_item' setting of train is 'on', but EASE's Gram matrix is not "
                f"positive definite in float32 at any λ_B tried ({sorted(lam_scores)}); give "
                "a larger 'item_regularization'."
            )
        return HybridChoice(
            False,
            reason="off: EASE could not be fitted in float32 at any λ_B tried",
            regularization_scores=lam_scores,
            metric=metric,
            seconds=time.perf_counter() - started,
        )
    candidates = [float(b) for b in grid] if blend_weight == "auto" else [float(blend_weight)]
    if item_item == "on":
        candidates = [b for b in candidates if b > 0] or candidates
    if len(candidates) == 1:
        beta, beta_scores = candidates[0], {}
    else:
        reuse = validation_model is not None and float(
            getattr(validation_model, "regularization", math.nan)
        ) == float(settings.get("regularization", math.nan))
        wals = validation_model if reuse else _fit_wals(fit, settings, sweeps, seed, n_jobs)
        beta_scores = _blend_scores(wals, weights, fit, val, candidates, k, n_jobs, progress)
        beta = max(beta_scores, key=lambda b: (beta_scores[b], -b))
    keep = beta > 0
    if not keep and not beta_scores:
        reason = "off: β 0 as given"
    elif not keep:
        reason = (
            f"off: WALS alone ({metric} {beta_scores[0.0]:.4f}) scored at least as well as "
            "every blend with EASE on validation"
        )
    elif beta_scores:
        reason = (
            f"{'on' if item_item == 'on' else 'auto'}: β {beta:g} scored {metric} "
            f"{beta_scores[beta]:.4f} on validation"
            + (f" against WALS alone {beta_scores[0.0]:.4f}" if 0.0 in beta_scores else "")
        )
    else:
        reason = f"on: β {beta:g} as given"
    return HybridChoice(
        item_item=keep,
        blend_weight=beta if keep else 0.0,
        item_regularization=lam_b if keep else None,
        reason=reason,
        regularization_scores=lam_scores,
        blend_scores=beta_scores,
        metric=metric,
        validated_users=validated,
        seconds=time.perf_counter() - started,
    )


def _walk_lambda(score, scores: dict[float, float]):
    """The best λ_B on the log grid of factors of 2 around the start: walk down from the
    start, then up, each walk stopping at the first λ_B without a better score."""
    best_lam = ITEM_REGULARIZATION_START
    best, best_weights = score(best_lam)
    scores[best_lam] = best
    for step in (1.0 / _LAMBDA_STEP, _LAMBDA_STEP):
        lam = ITEM_REGULARIZATION_START
        for _ in range(_LAMBDA_STEPS):
            lam *= step
            value, weights = score(lam)
            scores[lam] = value
            if not (value > best or (math.isnan(best) and not math.isnan(value))):
                weights = None  # only the best weights stay alive during the next fit
                break
            best_lam, best, best_weights = lam, value, weights
        if best_lam != ITEM_REGULARIZATION_START:
            break  # the walk down improved: the way up cannot (one best λ_B)
    return best_lam, best_weights


def _fit_wals(fit: sp.csr_matrix, settings: dict[str, Any], sweeps: int, seed: int, n_jobs):
    """WALS of the run's ``settings`` (λ a number) fitted on the validation split's rest."""
    from walsrec.model.params import estimator_from_settings
    from walsrec.training.config import TrainConfig

    if not isinstance(settings.get("regularization"), int | float):
        raise InvalidParameterError(
            "choose_hybrid needs the run's regularization resolved to a number. Got "
            f"{settings.get('regularization')!r} instead."
        )
    model = estimator_from_settings(
        settings,
        fit,
        defaults=TrainConfig().to_dict(),
        sweeps=sweeps,
        n_jobs=n_jobs,
        random_state=seed,
    )
    return model.fit(fit)


def _blend_scores(wals, weights, fit, val, betas, k, n_jobs, progress) -> dict[float, float]:
    """Validation nDCG@k of the blend at each β: one pass over chunks of the validated
    users, each chunk's two score blocks computed once and standardised, every β ranked."""
    from walsrec._threads import single_blas_thread
    from walsrec.metrics import evaluate_scorer
    from walsrec.model.ease import binary_rows, item_item_scores, standardize_rows

    metric = f"ndcg@{k}"
    rows = binary_rows(fit)
    users = np.flatnonzero(np.diff(val.indptr))
    n_items = fit.shape[1]
    chunk = max(1, _CHUNK_BYTES // (8 * max(1, n_items)))
    sums = dict.fromkeys(betas, 0.0)
    counted = 0
    item_t = np.ascontiguousarray(wals.item_factors_.T, dtype=np.float32)
    user_f = np.asarray(wals.user_factors_, dtype=np.float32)
    for lo in range(0, users.size, chunk):
        part = users[lo : lo + chunk]
        with single_blas_thread():
            zw = standardize_rows(user_f[part] @ item_t)
        ze = standardize_rows(item_item_scores(rows[part], weights))
        sub_fit, sub_val = fit[part], val[part]
        for beta in betas:
            block = zw + np.float32(beta) * ze if beta else zw
            value = evaluate_scorer(
                lambda rows, block=block: block[rows],
                sub_fit,
                sub_val,
                k=k,
                metrics=[metric],
                n_jobs=n_jobs,
            )[metric]
            sums[beta] += float(value) * part.size
        counted += part.size
    scores = {beta: sums[beta] / counted for beta in betas}
    if progress is not None:
        for beta in betas:
            progress("blend_weight", beta, scores[beta])
    return scores


def read_choice(path) -> HybridChoice:
    """MODEL_DIR/item_item.json read back; a corrupt record is a DataFormatError naming it."""
    import json

    from walsrec.errors import DataFormatError

    try:
        return HybridChoice.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{path}: not a record of the item-item choice ({exc}); use --overwrite to start over."
        ) from None


def export_item_item(choice: HybridChoice, user_items) -> tuple[dict, Any, float]:
    """EASE of ``choice`` fitted on ``user_items``: model.json's ``item_item`` settings, the
    weights B, and the seconds the fit took."""
    from walsrec.model.ease import EASE

    started = time.perf_counter()
    ease = EASE(choice.item_regularization).fit(user_items)
    settings = {
        "blend_weight": choice.blend_weight,
        "regularization": choice.item_regularization,
        "form": ease.form_,
        "density": ease.density if ease.form_ == "sparse" else None,
        "choice": choice.to_dict(),
    }
    return settings, ease.weights_, time.perf_counter() - started
