"""``prepare``: interaction logs to a DATA_DIR of vocabularies, TFRecords and native arrays.

The steps, in order: read (:mod:`walsrec.data.readers`), combine repeated (user, item)
pairs (``duplicates``), apply the rating transform, drop users and items with too few
interactions (repeated until stable), split off the eval interactions, build the
vocabularies from the train split, drop eval interactions whose user or item is not in
train, and write::

    DATA_DIR/meta.json
    DATA_DIR/vocab/users.txt, vocab/items.txt          one id per line, line number = index
    DATA_DIR/train/items_for_user-SSSSS-of-NNNNN.tfrecord[.gz]   one record per user
    DATA_DIR/train/users_for_item-SSSSS-of-NNNNN.tfrecord[.gz]   one record per item
    DATA_DIR/train/native/{user_items,item_users}.*.npy           memory-mappable copy
    DATA_DIR/eval/...                                             the same for eval

Everything is written into a temporary directory beside DATA_DIR and renamed into place
when complete, so a failure leaves nothing behind and a reader never sees half a DATA_DIR.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from walsrec._checks import check_int, check_option, param_error
from walsrec._files import (
    check_output_dir,
    json_has_keys,
    read_versioned_json,
    recover_dir,
    write_dir_atomically,
    write_error,
)
from walsrec.data.interactions import DUPLICATE_POLICIES, Interactions, aggregate_duplicates
from walsrec.data.readers import ReadResult, read_table
from walsrec.data.vocabulary import Vocabulary
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "FORMAT_VERSION",
    "RATING_TRANSFORMS",
    "SPLITS",
    "PreparedData",
    "check_prepared",
    "load_prepared",
    "prepare",
    "transform_ratings",
]

FORMAT_VERSION = 1
RATING_TRANSFORMS = ("none", "binary", "log1p", "scaled-median")
SPLITS = ("random", "user", "time")


@dataclass
class PreparedData:
    """A prepared DATA_DIR loaded back: train and eval share the vocabularies."""

    train: Interactions
    eval: Interactions | None
    meta: dict
    path: Path


_OWNER = "parameter of prepare"


def _check_word(value: Any, name: str, options: tuple[str, ...]) -> str:
    """``value``, one of ``options``: the rule reads "one of none, binary, log1p"."""
    return check_option(value, name, _OWNER, options, one_of=True, show_option=str)


def transform_ratings(values: np.ndarray, how: str, scale: float = 0.3, cap: float = 1.0):
    """Apply a rating transform to aggregated interaction values.

    ``none`` keeps them; ``binary`` makes every interaction 1; ``log1p`` is log(1 + r);
    ``scaled-median`` is the course's rating for session durations,
    min(cap, scale · r / median(r)).

    Returns
    -------
    values : ndarray of float64
    info : dict
        Parameters used (and the median for ``scaled-median``), recorded in meta.json.
    """
    _check_word(how, "rating_transform", RATING_TRANSFORMS)
    if how == "none":
        return values, {"name": how}
    if how == "binary":
        return np.ones_like(values), {"name": how}
    if how == "log1p":
        return np.log1p(values), {"name": how}
    median = float(np.median(values)) if len(values) else 0.0  # "scaled-median"
    if not median > 0:
        raise DataFormatError(
            f"The rating transform 'scaled-median' needs a positive median rating; the "
            f"median is {median!r}."
        )
    return np.minimum(cap, scale * values / median), {
        "name": how,
        "scale": scale,
        "cap": cap,
        "median": median,
    }


def _filter_counts(rows, cols, min_user, min_item):
    """Mask of pairs kept after dropping sparse users and items until nothing changes."""
    keep = np.ones(len(rows), dtype=bool)
    if min_user <= 1 and min_item <= 1:
        return keep
    while True:
        ucount = np.bincount(rows[keep], minlength=rows.max() + 1 if len(rows) else 0)
        icount = np.bincount(cols[keep], minlength=cols.max() + 1 if len(cols) else 0)
        new = keep & (ucount[rows] >= min_user) & (icount[cols] >= min_item)
        if new.sum() == keep.sum():
            return new
        keep = new


def _rank_within_rows(rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """0-based rank of each entry within its row, given an ``order`` sorting by row first."""
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, sorted_rows, side="left")
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - starts
    return rank


def _split(rows, times, fraction, how, rng) -> np.ndarray:
    """Boolean mask of the pairs held out for evaluation."""
    n = len(rows)
    if fraction == 0 or n == 0:
        return np.zeros(n, dtype=bool)
    if how == "random":
        return rng.random(n) < fraction
    counts = np.bincount(rows)
    # About `fraction` of each user's interactions (stochastic rounding keeps the total
    # unbiased), never all of them, and none for users with a single interaction.
    n_eval = np.floor(fraction * counts + rng.random(len(counts))).astype(np.int64)
    n_eval = np.minimum(n_eval, np.maximum(counts - 1, 0))
    tiebreak = rng.integers(0, 2**32, size=n, dtype=np.int64)
    if how == "user":
        # a random order within each row: one argsort of exact int64 keys (row, random),
        # 8x faster than a two-key lexsort at 10M (a float row + U[0, 1) key could round
        # into the next row)
        order = np.argsort((rows.astype(np.int64) << 32) | tiebreak)
    else:  # latest first; ties in time broken at random
        order = np.lexsort((tiebreak, -np.asarray(times, dtype=np.float64), rows))
    return _rank_within_rows(rows, order) < n_eval[rows]


def _check_params(p: dict) -> None:
    """Check :func:`prepare`'s parameters ``p``; the int ones become Python ints."""
    _check_word(p["rating_transform"], "rating_transform", RATING_TRANSFORMS)
    _check_word(p["duplicates"], "duplicates", DUPLICATE_POLICIES)
    _check_word(p["split"], "split", SPLITS)
    f = p["eval_fraction"]
    # not check_real: the rule reads "in the range [0, 1)"
    if not (isinstance(f, int | float) and 0 <= f < 1):
        raise InvalidParameterError(
            param_error("eval_fraction", "a float in the range [0, 1)", f, _OWNER)
        )
    if p["split"] == "time" and f > 0 and p["time_col"] is None:
        raise InvalidParameterError(
            "The 'split' parameter of prepare is 'time', which needs 'time_col' (--time-col); "
            "got no time column."
        )
    for name in ("min_user_interactions", "min_item_interactions", "shards"):
        p[name] = check_int(p[name], name, _OWNER, 1)
    for name in ("scale", "cap"):
        v = p[name]
        # not check_real: the rule reads "a float > 0" but infinity is refused too
        if not (isinstance(v, int | float) and np.isfinite(v) and v > 0):
            raise InvalidParameterError(param_error(name, "a float > 0", v, _OWNER))
    check_option(p["compression"], "compression", _OWNER, (None, "none", "gzip"))


def prepare(
    inputs,
    out: str | os.PathLike,
    *,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = None,
    time_col: str | None = None,
    delimiter: str | None = None,
    columns: list[str] | None = None,
    format: str | None = None,
    rating_transform: str = "none",
    scale: float = 0.3,
    cap: float = 1.0,
    duplicates: str = "sum",
    min_user_interactions: int = 1,
    min_item_interactions: int = 1,
    eval_fraction: float = 0.0,
    split: str = "random",
    seed: int = 0,
    shards: int = 1,
    compression: str | None = None,
    on_bad_rows: str = "error",
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Turn interaction files into a prepared DATA_DIR (see the module docstring).

    Parameters
    ----------
    inputs : str, path or list
        Files, globs or fsspec URLs: CSV/TSV, Parquet or JSON lines, optionally compressed.
    out : path
        The DATA_DIR to create. An existing non-empty directory is refused unless
        ``overwrite=True``.
    user_col, item_col, rating_col, time_col : str
        Column names. Without ``rating_col`` every interaction is 1.0.
    delimiter, columns, format :
        Reading options, see :func:`walsrec.data.readers.read_table`.
    rating_transform : {"none", "binary", "log1p", "scaled-median"}, default "none"
        Applied after combining duplicates; ``scaled-median`` is
        min(``cap``, ``scale`` · r / median(r)) (the course's defaults 0.3 and 1).
    duplicates : {"sum", "max", "mean", "first", "last"}, default "sum"
        How repeated (user, item) pairs combine (the course summed session durations).
    min_user_interactions, min_item_interactions : int, default 1
        Drop users/items with fewer distinct interactions, repeated until stable.
    eval_fraction : float in [0, 1), default 0
        Share of interactions held out for evaluation.
    split : {"random", "user", "time"}, default "random"
        ``random`` holds out each interaction with probability ``eval_fraction``; ``user``
        holds out about that share of each user's interactions (users with at least two);
        ``time`` holds out each user's latest share by ``time_col``.
    seed : int, default 0
    shards : int, default 1
        TFRecord files per direction and split.
    compression : {None, "gzip"}
        TFRecord compression, as TensorFlow's ``options="GZIP"``.
    on_bad_rows : {"error", "skip"}, default "error"
        See :func:`~walsrec.data.readers.read_table`. With "skip", a (user, item) pair
        whose rows combine beyond float32's range is dropped too, its rows counted as bad.
    overwrite : bool, default False
        Replace ``out`` when it exists: only a DATA_DIR (a directory with meta.json) or
        an empty directory is replaced, and never one that is or contains an input.
    progress : callable, optional
        Called with a short message at each stage (the CLI prints them).

    Returns
    -------
    dict
        The content of ``meta.json``: counts, sources, settings and what was dropped.

    Raises
    ------
    DataFormatError
        A bad row (see :func:`~walsrec.data.readers.read_table`), or a combined rating
        beyond float32's range (naming the user and item; with ``on_bad_rows="skip"``,
        the pair's rows are dropped and counted as bad rows instead).
    InvalidParameterError
        A parameter breaks its rule.
    OSError
        Reading an input or writing DATA_DIR failed; the message names the path.
    """
    params = dict(locals())
    _check_params(params)
    out = Path(out)
    note = progress or (lambda message: None)
    _check_output_dir(out, inputs, overwrite)
    started = time.perf_counter()
    read = _read_inputs(params, note)
    pairs, transform_info = _combined_pairs(read, params)
    kept = _filtered_pairs(pairs, min_user_interactions, min_item_interactions)
    train, evaluation, n_eval_dropped = _split_pairs(kept, eval_fraction, split, seed, note)
    counts = _counts(read, len(pairs.rows), len(kept.rows), train, evaluation, n_eval_dropped)
    meta = _meta(params, read.sources, transform_info, counts)
    _write_data_dir(out, meta, train, evaluation, shards, compression, note)
    meta["seconds"] = round(time.perf_counter() - started, 3)
    return meta


@dataclass
class _Pairs:
    """Distinct (user, item) pairs: codes into the distinct ids ``users`` and ``items``,
    the combined value, the number of rows combined and (with a time column) the time of
    each pair."""

    users: pa.Array
    items: pa.Array
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    times: np.ndarray | None

    def take(self, mask: np.ndarray) -> _Pairs:
        """The pairs of ``mask``."""
        times = self.times[mask] if self.times is not None else None
        return _Pairs(
            self.users,
            self.items,
            self.rows[mask],
            self.cols[mask],
            self.values[mask],
            self.counts[mask],
            times,
        )


def _check_output_dir(out: Path, inputs, overwrite: bool) -> None:
    """Refuse an ``out`` that exists and is not empty, unless ``overwrite`` and it is a
    DATA_DIR or an empty directory that holds no input."""
    recover_dir(out)  # a DATA_DIR a killed run left renamed aside is put back first
    if overwrite:
        # only a DATA_DIR or an empty directory is replaced, never one holding an input
        listed = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
        check_output_dir(
            out,
            owned=lambda d: json_has_keys(d / "meta.json", ("format_version", "counts")),
            marker="walsrec's meta.json",
            what="DATA_DIR",
            inputs=listed,
        )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidParameterError(
            f"The output directory {str(out)!r} exists and is not empty; pass overwrite=True "
            "(--overwrite) to replace it."
        )


def _read_inputs(p: dict, note: Callable[[str], None]) -> ReadResult:
    """The interaction rows of ``p["inputs"]``, read with :func:`prepare`'s settings ``p``."""
    note("reading inputs")
    read = read_table(
        p["inputs"],
        user_col=p["user_col"],
        item_col=p["item_col"],
        rating_col=p["rating_col"],
        time_col=p["time_col"],
        delimiter=p["delimiter"],
        columns=p["columns"],
        format=p["format"],
        on_bad_rows=p["on_bad_rows"],
        nonnegative_rating=p["rating_transform"] in ("log1p", "scaled-median"),
    )
    note(f"read {read.n_rows_read:,} rows from {len(read.sources)} file(s)")
    return read


def _combined_pairs(read: ReadResult, p: dict) -> tuple[_Pairs, dict]:
    """The rows read, combined into distinct pairs (``p["duplicates"]``) and their rating
    transformed; returns the pairs and the transform's info for meta.json.

    A pair whose combined rating is beyond float32's range is an error, or with
    ``on_bad_rows="skip"`` dropped, its rows counted as bad rows in ``read``.
    """
    table = read.table
    users_dict, user_codes = _encode(table.column("user"))
    items_dict, item_codes = _encode(table.column("item"))
    values = (
        table.column("rating").to_numpy()
        if "rating" in table.column_names
        else np.ones(table.num_rows)
    )
    times = table.column("time").to_numpy() if "time" in table.column_names else None
    del table
    duplicates = p["duplicates"]
    agg = aggregate_duplicates(user_codes, item_codes, values, len(items_dict), duplicates, times)
    rows, cols, values, counts = agg[0], agg[1], agg[2], agg[3]
    pair_times = agg[4] if times is not None else None
    values, transform_info = transform_ratings(values, p["rating_transform"], p["scale"], p["cap"])
    pairs = _Pairs(users_dict, items_dict, rows, cols, values, counts, pair_times)
    beyond = _beyond_float32(values)
    if beyond.any():
        if p["on_bad_rows"] == "error":
            pos = int(np.flatnonzero(beyond)[0])
            user, item = users_dict[int(rows[pos])].as_py(), items_dict[int(cols[pos])].as_py()
            raise DataFormatError(
                f"User {user!r}, item {item!r}: its {int(counts[pos])} rows combine "
                f"(duplicates={duplicates!r}, rating transform {transform_info['name']!r}) to "
                f"{float(values[pos]):.6g}, beyond float32's range (magnitudes up to 3.4e38), "
                "in which ratings are stored."
            )
        # with on_bad_rows="skip", all the pair's rows go, counted as bad rows
        n_rows = int(counts[beyond].sum())
        read.bad_reasons["combined rating beyond float32 range"] += n_rows
        read.n_bad_rows += n_rows
        pairs = pairs.take(~beyond)
    return pairs, transform_info


def _filtered_pairs(pairs: _Pairs, min_user: int, min_item: int) -> _Pairs:
    """The pairs left after dropping users and items with too few interactions (repeated
    until stable); none left is a DataFormatError."""
    kept = pairs.take(_filter_counts(pairs.rows, pairs.cols, min_user, min_item))
    if len(kept.rows) == 0:
        raise DataFormatError(
            f"No interactions are left after filtering ({len(pairs.rows):,} distinct pairs "
            f"read; min_user_interactions={min_user}, min_item_interactions={min_item})."
        )
    return kept


def _split_pairs(
    pairs: _Pairs, eval_fraction: float, split: str, seed: int, note: Callable[[str], None]
) -> tuple[Interactions, Interactions | None, int]:
    """Train and eval interactions (None when ``eval_fraction`` is 0), indexed by the
    vocabularies of train, and the number of eval pairs dropped for a user or item that
    train lacks."""
    rows, cols, values = pairs.rows, pairs.cols, pairs.values
    rng = np.random.default_rng(seed)
    is_eval = _split(rows, pairs.times, eval_fraction, split, rng)
    train_rows, train_cols = rows[~is_eval], cols[~is_eval]
    users = Vocabulary.from_values(pairs.users.take(pa.array(np.unique(train_rows))), "users")
    items = Vocabulary.from_values(pairs.items.take(pa.array(np.unique(train_cols))), "items")
    user_map = users.indices(pairs.users)
    item_map = items.indices(pairs.items)
    train = _matrix(user_map[train_rows], item_map[train_cols], values[~is_eval], users, items)
    er, ec = user_map[rows[is_eval]], item_map[cols[is_eval]]
    known = (er >= 0) & (ec >= 0)
    n_eval_dropped = int((~known).sum())
    evaluation = (
        _matrix(er[known], ec[known], values[is_eval][known], users, items)
        if eval_fraction > 0
        else None
    )
    note(
        f"{len(users):,} users, {len(items):,} items, {train.nnz:,} train and "
        f"{evaluation.nnz if evaluation is not None else 0:,} eval interactions"
    )
    return train, evaluation, n_eval_dropped


def _counts(read, n_pairs, n_kept, train, evaluation, n_eval_dropped) -> dict:
    """meta.json's counts: rows read and skipped, pairs, users, items and interactions."""
    return {
        "rows_read": read.n_rows_read,
        "bad_rows_skipped": read.n_bad_rows,
        "bad_rows_by_reason": dict(read.bad_reasons),
        "distinct_pairs": n_pairs,
        "pairs_removed_by_filters": int(n_pairs - n_kept),
        "n_users": len(train.users),
        "n_items": len(train.items),
        "train_interactions": train.nnz,
        "eval_interactions": evaluation.nnz if evaluation is not None else 0,
        "eval_dropped_not_in_train": n_eval_dropped,
    }


def _meta(p: dict, sources: list[str], transform_info: dict, counts: dict) -> dict:
    """The content of meta.json, for :func:`prepare`'s settings ``p``."""
    return {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": sources,
        "columns": {
            "user": p["user_col"],
            "item": p["item_col"],
            "rating": p["rating_col"],
            "time": p["time_col"],
        },
        "rating_transform": transform_info,
        "duplicates": p["duplicates"],
        "filters": {
            "min_user_interactions": p["min_user_interactions"],
            "min_item_interactions": p["min_item_interactions"],
        },
        "split": {"method": p["split"], "eval_fraction": p["eval_fraction"], "seed": p["seed"]},
        "counts": counts,
        "tfrecords": {"shards": p["shards"], "compression": p["compression"] or "none"},
    }


def _write_data_dir(out: Path, meta, train, evaluation, shards, compression, note) -> None:
    """Write the DATA_DIR into a temporary directory beside ``out``, renamed into place
    when complete; an OSError names ``out``."""
    note("writing TFRecords and native arrays")
    try:
        # an existing DATA_DIR was refused above unless overwrite: replacing it is wanted
        write_dir_atomically(
            out, lambda tmp: _write(tmp, meta, train, evaluation, shards, compression)
        )
    except OSError as exc:
        raise write_error(exc, out, "cannot write the prepared data") from exc


def _beyond_float32(values: np.ndarray) -> np.ndarray:
    """Mask of combined values that float32, the stored type, cannot hold.

    The reader refuses single ratings beyond float32's range; a sum of repeated pairs can
    still get there, and would be written as inf.
    """
    with np.errstate(invalid="ignore"):
        return np.abs(values) > np.finfo(np.float32).max


def _encode(column) -> tuple[pa.Array, np.ndarray]:
    """Distinct values and the code of each row (hash-based, no sorting of strings)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    return encoded.dictionary, encoded.indices.to_numpy().astype(np.int64)


def _matrix(rows, cols, values, users, items) -> Interactions:
    m = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=(len(users), len(items)))
    return Interactions(m, users, items)


def _write(tmp: Path, meta, train, evaluation, shards, compression) -> None:
    from walsrec.data.tfrecord import write_tfrecords

    train.users.save(_mkdir(tmp / "vocab") / "users.txt")
    train.items.save(tmp / "vocab" / "items.txt")
    files = {}
    for split_name, data in (("train", train), ("eval", evaluation)):
        if data is None:
            continue
        d = _mkdir(tmp / split_name)
        files[split_name] = {
            "items_for_user": _names(
                write_tfrecords(
                    data.user_items,
                    str(d / "items_for_user"),
                    shards=shards,
                    compression=compression,
                )
            ),
            "users_for_item": _names(
                write_tfrecords(
                    data.item_users,
                    str(d / "users_for_item"),
                    shards=shards,
                    compression=compression,
                )
            ),
        }
        data.save_matrices(d / "native")
    meta["files"] = files
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _names(paths):
    return [Path(p).name for p in paths]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_prepared(data_dir: str | os.PathLike) -> Path:
    """``data_dir`` as a Path once it is known to be a DATA_DIR of this version (its
    meta.json read; a DATA_DIR a killed prepare left renamed aside put back first)."""
    path = Path(data_dir)
    recover_dir(path)
    read_versioned_json(
        path / "meta.json",
        FORMAT_VERSION,
        f"{str(path)!r} is not a DATA_DIR written by 'walsrec prepare'.",
    )
    return path


def load_prepared(data_dir: str | os.PathLike, mmap: bool = True) -> PreparedData:
    """Load a DATA_DIR written by :func:`prepare` (native arrays, memory-mapped).

    Every file is checked before use; a corrupt one is a
    :class:`~walsrec.errors.DataFormatError` naming it.
    """
    path = check_prepared(data_dir)
    meta = read_versioned_json(
        path / "meta.json",
        FORMAT_VERSION,
        f"{str(path)!r} is not a DATA_DIR written by 'walsrec prepare'.",
    )
    users = Vocabulary.load(path / "vocab" / "users.txt", "users")
    items = Vocabulary.load(path / "vocab" / "items.txt", "items")
    train = Interactions.load_matrices(path / "train" / "native", users, items, mmap=mmap)
    evaluation = None
    if (path / "eval" / "native").is_dir():
        evaluation = Interactions.load_matrices(path / "eval" / "native", users, items, mmap=mmap)
    return PreparedData(train=train, eval=evaluation, meta=meta, path=path)
