"""Evaluating an exported model on a prepared DATA_DIR (``walsrec evaluate``)."""

from __future__ import annotations

import os

import numpy as np

from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.metrics import EASE_REGULARIZATION

__all__ = ["ease_metrics", "evaluate_export"]


def ease_metrics(
    train,
    heldout,
    k: int = 10,
    n_jobs=None,
    *,
    ease: bool | None = None,
    ease_regularization: float = EASE_REGULARIZATION,
) -> dict | None:
    """The EASE baseline's held-out metrics (training items excluded), or None when
    ``ease`` is False, or None and the catalog has more than
    :data:`~walsrec.metrics.EASE_MAX_ITEMS` items (see :func:`evaluate_export`)."""
    from walsrec._files import json_safe
    from walsrec.metrics import EASE_MAX_ITEMS, ease_baseline, evaluate_scorer

    if ease is None:
        ease = train.shape[1] <= EASE_MAX_ITEMS
    if not ease:
        return None
    scorer = ease_baseline(train, ease_regularization)
    return json_safe(evaluate_scorer(scorer, train, heldout, k=k, n_jobs=n_jobs))


def evaluate_export(
    model,
    data_dir: str | os.PathLike,
    k: int = 10,
    n_jobs=None,
    *,
    ease: bool | None = None,
    ease_regularization: float = EASE_REGULARIZATION,
    client=None,
) -> dict:
    """Held-out metrics of an export next to the most-popular and EASE baselines.

    Parameters
    ----------
    model : path
        An export directory, or a model directory (its newest export).
    data_dir : path
        A DATA_DIR written by ``walsrec prepare`` with an eval split, prepared from the same
        data as the model (same vocabularies).
    k : int, default 10
    ease : bool or None, default None
        Also score EASE (:func:`walsrec.metrics.ease_baseline`), a strong item-item
        baseline: None does so when the catalog has at most
        :data:`~walsrec.metrics.EASE_MAX_ITEMS` (20,000) items; True forces it (an error
        above that size); False skips it.
    ease_regularization : float, default :data:`~walsrec.metrics.EASE_REGULARIZATION` (500)
        EASE's λ.
    client : distributed.Client, optional
        Evaluate on this Dask cluster's workers
        (:func:`walsrec.distributed.evaluate.evaluate_export_dask`): the export and the
        DATA_DIR on storage they read, no matrix in this process; EASE is not scored.

    An export of the WALS + EASE hybrid (``walsrec train --item-item``) is scored as it is
    served, z(u·Vᵀ) + β·z(x_u·B) (``model``), beside WALS alone (``wals``) and EASE alone
    with the export's own B (``ease``, unless ``ease`` is False; ``ease_regularization`` is
    then the export's λ_B).

    Returns
    -------
    dict
        ``export`` and ``data`` (paths), ``users_evaluated``, and the metric dictionaries
        ``model``, ``most-popular``, ``wals`` (a hybrid's WALS part) and, when computed,
        ``ease``; ``blend_weight`` β of a hybrid; ``targets``, the targets the model was
        fitted to. rmse is the model's only, and is computed only when the
        model fits the values: a model fitted to binary targets predicts preferences, not
        ratings (:func:`walsrec.metrics.metric_names`).
    """
    if client is not None:
        if ease:
            raise InvalidParameterError(
                "The 'ease' parameter of evaluate_export must be None or False with a Dask "
                "client: EASE inverts the item Gramian in one process, which holds the "
                "training matrix. Got True instead."
            )
        from walsrec.distributed.evaluate import evaluate_export_dask

        return evaluate_export_dask(client, model, data_dir, k=k, n_jobs=n_jobs)
    from walsrec._files import json_safe
    from walsrec.data.prepare import load_prepared
    from walsrec.metrics import (
        evaluate,
        evaluate_scorer,
        evaluated_users,
        metric_names,
        popularity_baseline,
    )
    from walsrec.serving.export import read_export

    export = read_export(model, mmap=True)
    data = load_prepared(data_dir)
    if data.eval is None:
        raise DataFormatError(
            f"{data.path} has no eval split; prepare it with --eval-fraction to evaluate."
        )
    for name, ours, theirs in (
        ("users", export.users, data.train.users),
        ("items", export.items, data.train.items),
    ):
        if ours != theirs:
            raise DataFormatError(
                f"The model {export.path} and {data.path} have different {name} vocabularies "
                f"({len(ours):,} against {len(theirs):,} ids); evaluate on the DATA_DIR the "
                "model was trained on."
            )
    train = data.train.user_items
    heldout = data.eval.user_items
    # an export's hyper-parameters omit targets only if written before they existed,
    # when every model fitted the values
    targets = export.meta.get("hyperparameters", {}).get("targets", "values")
    scores = evaluate(
        np.asarray(export.user_factors),
        np.asarray(export.item_factors),
        train,
        heldout,
        k=k,
        metrics=metric_names(k, targets=targets),
        n_jobs=n_jobs,
    )
    baseline = evaluate_scorer(popularity_baseline(train), train, heldout, k=k, n_jobs=n_jobs)
    result = {
        "export": str(export.path),
        "data": str(data.path),
        "k": k,
        "targets": targets,
        "users_evaluated": int(evaluated_users(train, heldout).size),
        "model": json_safe(scores),
        "most-popular": json_safe(baseline),
    }
    if export.item_weights is not None:
        result.update(_hybrid_metrics(export, train, heldout, k, n_jobs, ease is not False))
        result["wals"] = json_safe(scores)
        return result
    scores = ease_metrics(
        train, heldout, k, n_jobs, ease=ease, ease_regularization=ease_regularization
    )
    if scores is not None:
        result["ease"] = scores
        result["ease_regularization"] = ease_regularization
    return result


def _hybrid_metrics(export, train, heldout, k, n_jobs, with_ease: bool) -> dict:
    """A hybrid export's held-out metrics as served, and those of its two parts."""
    from walsrec._files import json_safe
    from walsrec.metrics import evaluate_scorer
    from walsrec.model.ease import binary_rows, hybrid_scores, item_item_scores

    settings = export.meta["item_item"]
    beta = float(settings["blend_weight"])
    rows = binary_rows(train)
    weights = export.item_weights
    user_f = export.user_factors
    item_f = np.asarray(export.item_factors, dtype=np.float32)  # converted once

    def hybrid(users: np.ndarray) -> np.ndarray:
        return hybrid_scores(user_f[users], item_f, rows[users], weights, beta)

    def ease(users: np.ndarray) -> np.ndarray:
        return item_item_scores(rows[users], weights)

    out = {
        "model": json_safe(evaluate_scorer(hybrid, train, heldout, k=k, n_jobs=n_jobs)),
        "blend_weight": beta,
    }
    if with_ease:
        out["ease"] = json_safe(evaluate_scorer(ease, train, heldout, k=k, n_jobs=n_jobs))
        out["ease_regularization"] = settings.get("regularization")
    return out
