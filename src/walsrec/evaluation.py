"""Evaluating an exported model on a prepared DATA_DIR (``walsrec evaluate``)."""

from __future__ import annotations

import os

import numpy as np

from walsrec.errors import DataFormatError

__all__ = ["evaluate_export"]


def evaluate_export(model, data_dir: str | os.PathLike, k: int = 10, n_jobs=None) -> dict:
    """Held-out metrics of an export next to the most-popular baseline.

    Parameters
    ----------
    model : path
        An export directory, or a model directory (its newest export).
    data_dir : path
        A DATA_DIR written by ``walsrec prepare`` with an eval split, prepared from the same
        data as the model (same vocabularies).
    k : int, default 10

    Returns
    -------
    dict
        ``export`` and ``data`` (paths), ``users_evaluated``, and the metric dictionaries
        ``model`` and ``most-popular`` (rmse is the model's only).
    """
    from walsrec.data.prepare import load_prepared
    from walsrec.metrics import evaluate, evaluate_scorer, evaluated_users, popularity_baseline
    from walsrec.serving.export import read_export
    from walsrec.training.loop import json_safe

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
    scores = evaluate(
        np.asarray(export.user_factors),
        np.asarray(export.item_factors),
        train,
        heldout,
        k=k,
        n_jobs=n_jobs,
    )
    baseline = evaluate_scorer(popularity_baseline(train), train, heldout, k=k, n_jobs=n_jobs)
    return {
        "export": str(export.path),
        "data": str(data.path),
        "k": k,
        "users_evaluated": int(evaluated_users(train, heldout).size),
        "model": json_safe(scores),
        "most-popular": json_safe(baseline),
    }
