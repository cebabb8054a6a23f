"""``walsrec update``: a trained model takes in new interactions without a retrain.

Given MODEL_DIR and a newer version of its DATA_DIR (``walsrec prepare --append-to``: the
model's users and items first, in the same order, new ones appended), :func:`update`
starts from the newest checkpoint and:

1. grows the factors for the new users and items (their rows start at zero);
2. solves the new and **touched** users (those whose training row changed) exactly,
   against the current item factors, each from its full history;
3. solves the new and touched items against the updated users;
4. repeats 2–3 ``sweeps - 1`` more times over the same sets, then runs ``full_sweeps``
   ordinary sweeps over everything;
5. checkpoints (the state records the data it now includes) and exports a new version,
   which a running ``walsrec serve`` picks up.

Steps 2 and 3 are :meth:`WALS.partial_fit <walsrec.model.wals.WALS.partial_fit>`: the
rows it solves are exactly those a refit's half-step computes against the same fixed side,
and a new user's factors are its fold-in (``project_rows``).

What is recomputed and what is frozen:

- **frozen**, at the values the model was trained with: λ (``regularization``, "auto"
  read from MODEL_DIR/regularization.json, not searched again), the unobserved weight w0
  and α (their "auto" values resolved on the data the model was trained on). These are
  scalars of the objective that the untouched rows were fitted under; solving the touched
  rows under another objective would make the model a mix of two. A full retrain
  (``walsrec pipeline``'s ``full_every``) chooses them again.
- **recomputed** on the new data: the statistics that weigh entries (BM25's and TF-IDF's
  users per item and row lengths, count-based column weights), and the hybrid's EASE
  weights B (at the λ_B and β chosen in training, MODEL_DIR/item_item.json). New items
  and users need them, and they follow the data; rows that are not solved keep the factors
  fitted under the old statistics until a full sweep (``full_sweeps``) or a retrain.

A run killed at any point leaves the previous export serving (checkpoints and exports
are written to a temporary name and renamed); run again, it gives the model an
uninterrupted update gives: from the old checkpoint it repeats the same computation, and
from its own checkpoint (which records the data it includes) it only exports.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_int
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = ["UpdateResult", "touched", "update", "update_estimator"]

_OWNER = "parameter of update"


@dataclass
class UpdateResult:
    """What :func:`update` did."""

    model_dir: Path
    export_path: Path | None
    new_users: int
    new_items: int
    users_solved: int
    items_solved: int
    sweeps: int
    full_sweeps: int
    metrics: dict
    seconds: float
    already: bool = False  # the newest checkpoint already included the data
    baseline: dict | None = None  # most-popular's held-out metrics on the same data


def touched(old: sp.csr_matrix, new: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The users and the items whose training interactions differ between ``old`` and
    ``new`` (whose first rows and columns are ``old``'s), new ones included."""
    n_old, m_old = old.shape
    n_new, m_new = new.shape
    indptr = np.append(np.asarray(old.indptr, dtype=np.int64), [old.nnz] * (n_new - n_old))
    padded = sp.csr_matrix((old.data, old.indices, indptr), shape=(n_new, m_new))
    diff = (padded != new).tocoo()
    row_count_changed = np.flatnonzero(np.diff(padded.indptr) != np.diff(new.indptr))
    col_count_changed = np.flatnonzero(
        np.bincount(padded.indices, minlength=m_new) != np.bincount(new.indices, minlength=m_new)
    )
    rows = np.union1d(np.union1d(diff.row, row_count_changed), np.arange(n_old, n_new))
    cols = np.union1d(np.union1d(diff.col, col_count_changed), np.arange(m_old, m_new))
    return rows.astype(np.int64), cols.astype(np.int64)


def update(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    *,
    sweeps: int = 1,
    full_sweeps: int = 0,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> UpdateResult:
    """Update the model of ``model_dir`` with the interactions of ``data`` (see the module
    docstring).

    Parameters
    ----------
    model_dir : path
        A MODEL_DIR written by ``walsrec train`` from a DATA_DIR (or by an earlier update).
    data : path
        A DATA_DIR whose vocabularies start with the model's, in the same order (``walsrec
        prepare NEW... --append-to OLD_DATA_DIR --out data``).
    sweeps : int, default 1
        Passes over the new and touched users and items (users, then items).
    full_sweeps : int, default 0
        Ordinary sweeps over every user and item after those passes.
    threads : int, optional
        Kernel threads (default: the model's setting, else every core).
    log : callable, optional
        One-line messages (what was found, the export).

    Returns
    -------
    UpdateResult

    Raises
    ------
    InvalidParameterError
        A parameter breaks its rule, or ``data``'s vocabularies do not extend the model's.
    DataFormatError
        MODEL_DIR has no checkpoint, or a file of MODEL_DIR or of the DATA_DIRs is corrupt.
    """
    from walsrec.training.loop import model_dir_lock

    sweeps = check_int(sweeps, "sweeps", _OWNER, 1)
    full_sweeps = check_int(full_sweeps, "full_sweeps", _OWNER, 0)
    if threads is not None:
        threads = check_int(threads, "threads", _OWNER, 1)
    say = log or (lambda message: None)
    model_dir = Path(model_dir)
    with model_dir_lock(model_dir, "walsrec update"):
        return _update(model_dir, Path(data), sweeps, full_sweeps, threads, say)


def _update(model_dir: Path, data_dir: Path, sweeps, full_sweeps, threads, say) -> UpdateResult:
    from walsrec.data.prepare import load_prepared
    from walsrec.training.checkpoints import as_array, latest_checkpoint
    from walsrec.training.config import load_config, read_saved_config

    started = time.perf_counter()
    saved = read_saved_config(model_dir)
    ckpt = latest_checkpoint(model_dir / "checkpoints")
    if saved is None or ckpt is None:
        raise DataFormatError(
            f"{model_dir}: no trained model to update (config.json and a checkpoint are "
            "needed); run 'walsrec train' first."
        )
    cfg = load_config(None, **saved)
    trained_on = ckpt.state.get("data") or cfg.data
    if trained_on is None:
        raise InvalidParameterError(
            f"The model in {str(model_dir)!r} was trained from TFRecord files, not from a "
            "DATA_DIR: an update needs the vocabularies of a DATA_DIR ('walsrec prepare')."
        )
    new = load_prepared(data_dir)
    if _includes(ckpt.state, new):
        say(f"the newest checkpoint ({ckpt.path.name}) already includes {data_dir}")
        last = ckpt.state["updates"][-1]
        model = _estimator(cfg, model_dir, None, new.train.user_items, threads, last)
        _set_factors(model, as_array(ckpt.user_factors), as_array(ckpt.item_factors))
        export = _export(model_dir, cfg, model, new, last, say)
        return UpdateResult(
            model_dir, export, 0, 0, 0, 0, 0, 0, {}, time.perf_counter() - started, True
        )
    old = _load_trained_on(trained_on, model_dir)
    _check_extends(old, new, data_dir)
    x_old, x_new = old.train.user_items, new.train.user_items
    rows, cols = touched(x_old, x_new)
    n_new_users = x_new.shape[0] - x_old.shape[0]
    n_new_items = x_new.shape[1] - x_old.shape[1]
    say(
        f"{n_new_users:,} new users and {n_new_items:,} new items; {len(rows):,} users and "
        f"{len(cols):,} items with new or changed interactions"
    )
    updates = ckpt.state.get("updates")
    frozen = updates[-1] if isinstance(updates, list) and updates else None
    model = _estimator(cfg, model_dir, x_old, x_new, threads, frozen)
    _set_factors(model, as_array(ckpt.user_factors), as_array(ckpt.item_factors))
    model.partial_fit(x_new, rows=[], cols=[])  # the factors grown to the new shape
    history = [float(x) for x in ckpt.state.get("loss_history", [])]
    bound = model.bind(x_new)
    for _ in range(sweeps):
        if len(rows) or len(cols):
            if len(rows):
                bound.update_rows(rows)
            if len(cols):
                bound.update_cols(cols)
            history.append(bound.loss())
    for _ in range(full_sweeps):
        bound.update_rows().update_cols()
        history.append(bound.loss())
    metrics, baseline = _evaluate(cfg, model, new, threads)
    record = {
        "data": str(new.path.resolve()),
        "data_created": new.meta.get("created"),
        "from": str(Path(trained_on).resolve()),
        "new_users": n_new_users,
        "new_items": n_new_items,
        "users_solved": len(rows),
        "items_solved": len(cols),
        "sweeps": sweeps,
        "full_sweeps": full_sweeps,
        "regularization": float(model.regularization),
        "unobserved_weight": float(model.unobserved_weight),
        "alpha": float(model.alpha),
        "loss": history[-1] if history else None,
        "seconds": round(time.perf_counter() - started, 3),
        "metrics": metrics,
    }
    if not (len(rows) or len(cols) or full_sweeps):
        say("nothing new: the model is unchanged")
        # its newest checkpoint is exported (a run killed between them wrote no export)
        export = _export(model_dir, cfg, model, new, record, say)
        return UpdateResult(
            model_dir, export, 0, 0, 0, 0, sweeps, 0, metrics, time.perf_counter() - started
        )
    _checkpoint(model_dir, cfg, model, ckpt.state, history, record)
    _append_metrics(model_dir, record)
    export = _export(model_dir, cfg, model, new, record, say)
    return UpdateResult(
        model_dir,
        export,
        n_new_users,
        n_new_items,
        len(rows),
        len(cols),
        sweeps,
        full_sweeps,
        metrics,
        time.perf_counter() - started,
        baseline=baseline,
    )


def _load_trained_on(path, model_dir: Path):
    """The DATA_DIR the model's newest checkpoint was trained or updated on; a missing one
    is a DataFormatError saying where it was recorded."""
    from walsrec.data.prepare import load_prepared

    if not (Path(path) / "meta.json").is_file():
        raise DataFormatError(
            f"{model_dir}: the model was trained on the DATA_DIR {str(path)!r}, which cannot "
            "be found (a relative path in config.json is relative to where 'walsrec train' "
            "ran); an update compares the new data with it. Run the update from there, or "
            "retrain."
        )
    return load_prepared(path)


def _includes(state: dict, new) -> bool:
    """Whether a checkpoint's state says it was updated with the DATA_DIR ``new``."""
    updates = state.get("updates")
    if not (isinstance(updates, list) and updates and isinstance(updates[-1], dict)):
        return False
    last = updates[-1]
    return last.get("data") == str(new.path.resolve()) and last.get("data_created") == (
        new.meta.get("created")
    )


def _check_extends(old, new, data_dir: Path) -> None:
    """Refuse ``new`` unless its vocabularies start with ``old``'s, in the same order."""
    for which, a, b in (
        ("users", old.train.users, new.train.users),
        ("items", old.train.items, new.train.items),
    ):
        n = len(a)
        if len(b) < n or not b.ids.slice(0, n).equals(a.ids):
            line = next((i for i in range(min(n, len(b))) if a.ids[i] != b.ids[i]), min(n, len(b)))
            got = repr(b.id(line)) if line < len(b) else "the end of the file"
            raise InvalidParameterError(
                f"{data_dir / 'vocab' / f'{which}.txt'}, line {line + 1}: {got} where the "
                f"model's data has {a.id(line)!r}. An update needs the model's {which} first, "
                "in the same order, new ones appended: prepare the new interactions with "
                f"'walsrec prepare NEW... --append-to {old.path} --out DATA_DIR'."
            )


def _estimator(cfg, model_dir: Path, x_old, x_new, threads, frozen: dict | None = None):
    """The model's estimator for the new data: λ, w0 and α frozen at the values it was
    trained with (resolved on ``x_old``, or those an update recorded, ``frozen``), the
    statistics of the entries' weights from ``x_new``."""
    from walsrec.model.params import estimator_from_settings
    from walsrec.training.config import TrainConfig
    from walsrec.training.loop import recorded_regularization

    settings = cfg.to_dict()
    defaults = TrainConfig().to_dict()
    if frozen is not None:
        for name in ("regularization", "unobserved_weight", "alpha"):
            settings[name] = frozen[name]
    else:
        if settings["regularization"] == "auto":
            settings["regularization"] = recorded_regularization(model_dir)
        trained = estimator_from_settings(settings, x_old, defaults=defaults)
        settings["unobserved_weight"] = float(trained.unobserved_weight)
        settings["alpha"] = float(trained.alpha)
    return estimator_from_settings(
        settings, x_new, defaults=defaults, n_jobs=threads or cfg.threads, random_state=cfg.seed
    )


def update_estimator(model_dir: str | os.PathLike, x_trained, x_new, threads=None):
    """The estimator :func:`update` solves with for the model of ``model_dir`` trained on
    ``x_trained`` (λ, w0 and α frozen) and the new matrix ``x_new`` (entry statistics);
    not fitted."""
    from walsrec.training.config import load_config, read_saved_config

    model_dir = Path(model_dir)
    cfg = load_config(None, **read_saved_config(model_dir))
    return _estimator(cfg, model_dir, x_trained, x_new, threads)


def _set_factors(model, user_factors, item_factors) -> None:
    dtype = np.dtype(model.dtype)
    model.user_factors_ = np.ascontiguousarray(user_factors, dtype=dtype)
    model.item_factors_ = np.ascontiguousarray(item_factors, dtype=dtype)
    model.loss_, model.rwse_, model.n_iter_ = [], None, 0


def _evaluate(cfg, model, new, threads) -> tuple[dict, dict | None]:
    """Held-out metrics on the new DATA_DIR's eval part, the model's and most-popular's
    ({} and None without one)."""
    from walsrec.metrics import evaluate, evaluate_scorer, metric_names, popularity_baseline

    if new.eval is None:
        return {}, None
    train = new.train.user_items
    baseline = evaluate_scorer(
        popularity_baseline(train), train, new.eval.user_items, k=cfg.k, n_jobs=threads
    )
    return evaluate(
        model.user_factors_,
        model.item_factors_,
        new.train.user_items,
        new.eval.user_items,
        k=cfg.k,
        metrics=metric_names(cfg.k, targets=cfg.targets),
        n_jobs=threads or cfg.threads,
    ), baseline


def _checkpoint(model_dir: Path, cfg, model, state: dict, history: list, record: dict) -> None:
    """A checkpoint of the updated factors whose state records the data it includes (and
    keeps train's invariant: one loss per sweep of ``step``)."""
    from walsrec.training.checkpoints import write_checkpoint

    n_users, n_items = model.user_factors_.shape[0], model.item_factors_.shape[0]
    b = cfg.batch_size or max(n_users, n_items, 1)
    per_sweep = max(1, math.ceil(n_users / b)) + max(1, math.ceil(n_items / b))
    updates = state.get("updates") if isinstance(state.get("updates"), list) else []
    new_state = {
        **state,
        "step": len(history) * per_sweep,
        "loss_history": history,
        "data": record["data"],
        "updates": [*updates, record],
    }
    write_checkpoint(
        model_dir / "checkpoints",
        new_state["step"],
        model.user_factors_,
        model.item_factors_,
        new_state,
        keep=cfg.keep_checkpoints,
    )


def _append_metrics(model_dir: Path, record: dict) -> None:
    """One line for the update in MODEL_DIR/metrics.jsonl."""
    from walsrec._files import atomic_write_text

    path = model_dir / "metrics.jsonl"
    before = path.read_text() if path.exists() else ""
    line = json.dumps({"model": "wals-update", **record})
    atomic_write_text(path, before + line + "\n")


def _export(model_dir: Path, cfg, model, new, record: dict, say) -> Path | None:
    """Export the updated model unless the newest export holds exactly its factors."""
    from walsrec.serving.export import newest_export_holding, write_export
    from walsrec.training.loop import export_hyperparameters

    held = newest_export_holding(model_dir, model.user_factors_, model.item_factors_)
    if held is not None:
        say(f"the newest export already holds this model: {held}")
        return held
    item_item = None
    if (model_dir / "item_item.json").exists():
        from walsrec.training.hybrid import export_item_item, read_choice

        choice = read_choice(model_dir / "item_item.json")
        if choice.item_item:
            # λ_B and β frozen, as λ is; B follows the new data, as BM25's statistics do
            settings, weights, seconds = export_item_item(choice, new.train.user_items)
            item_item = (settings, weights)
            say(
                f"item-item: EASE refitted on the new data ({settings['form']} weights, λ_B "
                f"{choice.item_regularization:g} and β {choice.blend_weight:g} as trained, "
                f"{seconds:.1f} s)"
            )
    path = write_export(
        model_dir,
        user_factors=model.user_factors_,
        item_factors=model.item_factors_,
        users=new.train.users,
        items=new.train.items,
        user_items=new.train.user_items,
        hyperparameters=export_hyperparameters(cfg, model),
        metrics={**record.get("metrics", {}), "loss": record.get("loss")},
        training={"data": record["data"], "update": record},
        keep=cfg.keep_exports,
        item_item=item_item,
    )
    say(f"exported {path}")
    return path
