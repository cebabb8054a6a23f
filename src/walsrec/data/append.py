"""``prepare(..., append_to=DATA_DIR)``: new interactions merged into a prepared data set.

The parent DATA_DIR is read back (and checked) and a new DATA_DIR written beside it, with:

- **stable, append-only vocabularies**: every id of the parent keeps its index; ids seen
  for the first time are appended, users and items each in order of first appearance in
  the new rows (so a model, an export or a client holding indices of the parent stays
  valid for them);
- **the parent's settings, frozen**: the rating transform with the parameters recorded in
  its meta.json (``scaled-median``'s median is not computed again), the ``duplicates``
  rule and the column names, unless the new files name their columns otherwise;
- **repeated pairs combined with the recorded rule**: the new rows of a pair are combined
  among themselves (raw values, in file order), transformed, then combined with the pair's
  stored value where the parent has the pair: ``first`` keeps it, ``last`` replaces it,
  ``max`` takes the larger (every transform is non-decreasing), ``sum`` adds in the raw
  scale (the stored value transformed back: exact for ``none`` and ``binary``, to float32
  rounding for ``log1p`` and ``scaled-median``, and a capped ``scaled-median`` value stays
  at the cap, since ratings it sums are non-negative). ``mean`` is refused: a DATA_DIR
  keeps each pair's mean, not how many rows it averaged;
- **the split kept**: a new pair goes to train; a pair the parent holds out stays held
  out, its value combined with the new rows. The minimum-count filters are not applied
  again (a new user with one interaction is what an update is for);
- **its lineage** in meta.json: ``lineage`` lists every append (the parent's path and
  creation time, and the counts added), the parent's own lineage first.

Bad rows are the reader's errors (file, line, column and value); everything is written
into a temporary directory renamed into place, as :func:`walsrec.data.prepare.prepare`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from walsrec.data.interactions import DUPLICATE_POLICIES, Interactions, aggregate_duplicates
from walsrec.data.readers import ReadResult
from walsrec.data.vocabulary import Vocabulary
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = ["APPEND_FROZEN", "append_pairs", "parent_settings"]

#: Settings an append takes from the parent's meta.json (a different value is refused).
APPEND_FROZEN = ("rating_transform", "scale", "cap", "duplicates")


def parent_settings(meta: dict, path: Path) -> dict:
    """The settings of the parent DATA_DIR at ``path`` (its meta.json ``meta``) that an
    append reuses, checked: a meta.json that does not hold them is a DataFormatError
    naming it."""
    from walsrec.data.prepare import RATING_TRANSFORMS

    where = path / "meta.json"
    info = meta.get("rating_transform")
    columns = meta.get("columns")
    duplicates = meta.get("duplicates")
    tf = meta.get("tfrecords")
    ok = (
        isinstance(info, dict)
        and info.get("name") in RATING_TRANSFORMS
        and isinstance(columns, dict)
        and all(isinstance(columns.get(k), str) for k in ("user", "item"))
        and all(
            columns.get(k) is None or isinstance(columns.get(k), str) for k in ("rating", "time")
        )
        and duplicates in DUPLICATE_POLICIES
        and isinstance(tf, dict)
        and isinstance(tf.get("shards"), int)
        and tf.get("compression") in ("none", "gzip")
    )
    if ok and info["name"] == "scaled-median":
        ok = all(
            isinstance(info.get(k), int | float) and np.isfinite(info[k]) and info[k] > 0
            for k in ("scale", "cap", "median")
        )
    if not ok:
        raise DataFormatError(
            f"{where}: its columns, rating_transform, duplicates or tfrecords settings are "
            "missing or not valid; it cannot be appended to."
        )
    settings = {
        "user_col": columns["user"],
        "item_col": columns["item"],
        "rating_col": columns.get("rating"),
        "time_col": columns.get("time"),
        "rating_transform": info["name"],
        "duplicates": duplicates,
        "shards": tf["shards"],
        "compression": None if tf["compression"] == "none" else tf["compression"],
        "transform_info": info,
    }
    if info["name"] == "scaled-median":
        settings["scale"], settings["cap"] = float(info["scale"]), float(info["cap"])
    return settings


def _transform(values: np.ndarray, info: dict) -> np.ndarray:
    """The rating transform ``info`` (meta.json's) with its recorded parameters."""
    from walsrec.data.prepare import transform_ratings

    frozen = {k: info[k] for k in ("scale", "cap", "median") if k in info}
    return transform_ratings(values, info["name"], **frozen)[0]


def _combine(old: np.ndarray, new_raw: np.ndarray, how: str, info: dict) -> np.ndarray:
    """Stored (transformed) values ``old`` of existing pairs combined with their new rows'
    raw combination ``new_raw`` by the rule ``how``."""
    new = _transform(new_raw, info)
    old = old.astype(np.float64)
    if how == "first":
        return old
    if how == "last":
        return new
    if how == "max":
        return np.maximum(old, new)
    # "sum", in the raw scale
    name = info["name"]
    if name == "binary":
        return np.ones_like(old)
    if name == "none":
        return old + new_raw
    if name == "log1p":
        return np.log1p(np.expm1(old) + new_raw)
    cap = np.float32(info["cap"])
    raw = old * info["median"] / info["scale"] + new_raw
    return np.where(old >= cap, info["cap"], _transform(raw, info))


def append_pairs(
    read: ReadResult,
    parent_data,
    settings: dict,
    on_bad_rows: str,
    note: Callable[[str], None],
):
    """The parent's train and eval interactions with the rows ``read`` merged in.

    Returns (train, eval or None, counts added, rows dropped as beyond float32)."""
    from walsrec.data.prepare import beyond_error, beyond_float32, rating_values

    how = settings["duplicates"]
    if how == "mean":
        raise InvalidParameterError(
            f"The DATA_DIR {str(parent_data.path)!r} was prepared with duplicates='mean', "
            "which an append cannot continue: a DATA_DIR keeps each pair's mean, not how "
            "many rows it averaged. Prepare all the inputs again instead."
        )
    info = settings["transform_info"]
    parent_train, parent_eval = parent_data.train, parent_data.eval
    users, new_users = _grown(parent_train.users, read.table.column("user"))
    items, new_items = _grown(parent_train.items, read.table.column("item"))
    n_items = len(items)
    rows = users.indices(read.table.column("user"))
    cols = items.indices(read.table.column("item"))
    values = rating_values(read.table)
    r, c, raw, counts = aggregate_duplicates(rows, cols, values, n_items, how)
    key = r * np.int64(n_items) + c
    train_keys, train_vals = _entries(parent_train.user_items, n_items)
    eval_keys, eval_vals = (
        _entries(parent_eval.user_items, n_items) if parent_eval is not None else (None, None)
    )
    in_train = _positions(train_keys, key)
    in_eval = _positions(eval_keys, key) if eval_keys is not None else np.full(len(key), -1)
    combined = _transform(raw, info)
    old_t, old_e = in_train >= 0, in_eval >= 0
    combined[old_t] = _combine(train_vals[in_train[old_t]], raw[old_t], how, info)
    if eval_vals is not None:
        combined[old_e] = _combine(eval_vals[in_eval[old_e]], raw[old_e], how, info)
    beyond = beyond_float32(combined)
    dropped = 0
    if beyond.any():
        if on_bad_rows == "error":
            pos = int(np.flatnonzero(beyond)[0])
            raise beyond_error(
                users.id(int(r[pos])), items.id(int(c[pos])), int(counts[pos]), how, info,
                float(combined[pos]),
            )  # fmt: skip
        dropped = int(counts[beyond].sum())
        keep = ~beyond
        key, combined, in_train, in_eval = key[keep], combined[keep], in_train[keep], in_eval[keep]
    to_eval = in_eval >= 0
    train = _merged(train_keys, train_vals, key[~to_eval], combined[~to_eval], users, items)
    evaluation = None
    if parent_eval is not None:
        evaluation = _merged(eval_keys, eval_vals, key[to_eval], combined[to_eval], users, items)
    added = {
        "rows_read": read.n_rows_read,
        "bad_rows_skipped": read.n_bad_rows + dropped,
        "new_users": new_users,
        "new_items": new_items,
        "new_pairs": int(((in_train < 0) & (in_eval < 0)).sum()),
        "train_pairs_combined": int((in_train >= 0).sum()),
        "eval_pairs_combined": int(to_eval.sum()),
    }
    note(
        f"{new_users:,} new users, {new_items:,} new items, {added['new_pairs']:,} new "
        f"pairs, {added['train_pairs_combined'] + added['eval_pairs_combined']:,} "
        "pairs combined with new rows"
    )
    return train, evaluation, added, dropped


def _grown(vocab: Vocabulary, column) -> tuple[Vocabulary, int]:
    """``vocab`` with the ids of ``column`` it lacks appended in order of first appearance,
    and how many were appended."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    column = column.cast(pa.string()) if column.type != pa.string() else column
    unknown = pc.filter(column, pc.is_null(pc.index_in(column, value_set=vocab.ids)))
    fresh = pc.unique(unknown)  # in order of first appearance
    if len(fresh) == 0:
        return vocab, 0
    return Vocabulary(pa.concat_arrays([vocab.ids, fresh]), vocab.name), len(fresh)


def _entries(m: sp.csr_matrix, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The stored entries of ``m`` as sorted keys row · ``n_items`` + column and values."""
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * np.int64(n_items) + np.asarray(m.indices, dtype=np.int64), np.asarray(m.data)


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The position of each of ``wanted`` in the sorted ``keys``, -1 where absent."""
    at = np.searchsorted(keys, wanted)
    found = at < len(keys)
    found[found] = keys[at[found]] == wanted[found]
    return np.where(found, at, -1)


def _merged(keys, values, new_keys, new_values, users: Vocabulary, items: Vocabulary):
    """The entries ``keys``/``values`` with ``new_keys`` set to ``new_values`` (replacing or
    added), as Interactions of the grown vocabularies."""
    n_items = len(items)
    at = _positions(keys, new_keys)
    values = np.asarray(values, dtype=np.float64).copy()
    values[at[at >= 0]] = new_values[at >= 0]
    all_keys = np.concatenate([keys, new_keys[at < 0]])
    all_values = np.concatenate([values, new_values[at < 0]])
    m = sp.csr_matrix(
        (all_values.astype(np.float32), (all_keys // n_items, all_keys % n_items)),
        shape=(len(users), n_items),
    )
    return Interactions(m, users, items)


def lineage_entry(parent: Path, parent_meta: dict, added: dict) -> list:
    """meta.json's ``lineage``: the parent's own, then this append."""
    before = parent_meta.get("lineage")
    before = before if isinstance(before, list) else []
    return [
        *before,
        {
            "parent": str(parent),
            "parent_created": parent_meta.get("created"),
            "appended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **added,
        },
    ]
