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

What is written depends on the rows read only through the set of (user, item) pairs they
combine into (and, for ``duplicates`` "first" and "last" and for summing, the order of each
pair's own rows): ids are ordered as the vocabularies order them (numerically when every
user id read, or every item id read, is an integer; else by UTF-8 bytes), and the eval
split is :func:`walsrec.data.split.holdout_mask` over the kept pairs in that order. So
:func:`walsrec.distributed.prepare.prepare_dask`, where Dask workers each read some of the
files, writes the same DATA_DIR byte for byte.
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
from walsrec.data.split import holdout_mask
from walsrec.data.vocabulary import Vocabulary, sorted_id_order
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "FORMAT_VERSION",
    "RATING_TRANSFORMS",
    "SPLITS",
    "PreparedData",
    "beyond_error",
    "beyond_float32",
    "build_meta",
    "check_output",
    "check_params",
    "check_prepared",
    "holdout_split",
    "load_prepared",
    "pair_times_input",
    "prepare",
    "rating_values",
    "read_rows",
    "sorted_codes",
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


def transform_ratings(
    values: np.ndarray, how: str, scale: float = 0.3, cap: float = 1.0, median=None
):
    """Apply a rating transform to aggregated interaction values.

    ``none`` keeps them; ``binary`` makes every interaction 1; ``log1p`` is log(1 + r);
    ``scaled-median`` is the course's rating for session durations,
    min(cap, scale · r / median(r)), with ``median`` the median of ``values`` unless
    given (the median of all the pairs when ``values`` are some of them).

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
    if median is None:  # "scaled-median"
        median = float(np.median(values)) if len(values) else 0.0
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


#: The settings of :func:`prepare` whose None means a default, or the parent's when
#: appending (``append_to``).
DEFAULTS = {
    "user_col": "user",
    "item_col": "item",
    "rating_transform": "none",
    "scale": 0.3,
    "cap": 1.0,
    "duplicates": "sum",
    "shards": 1,
}


def check_params(p: dict, parent: dict | None = None) -> None:
    """Check :func:`prepare`'s parameters ``p`` and fill in their defaults (with
    ``parent``, the settings of the DATA_DIR appended to: see :mod:`walsrec.data.append`);
    the int ones become Python ints."""
    if parent is not None:
        _take_parents(p, parent)
    for name, default in DEFAULTS.items():
        if p[name] is None:
            p[name] = default
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


def _take_parents(p: dict, parent: dict) -> None:
    """The settings an append takes from its parent's meta.json; a different value given
    for a frozen one, or a split or filter (which an append does not apply), is refused."""
    where = f"the DATA_DIR {p['append_to']!s} was prepared with"
    names = ["rating_transform", "duplicates"]
    if parent["rating_transform"] == "scaled-median":
        names += ["scale", "cap"]
    for name in names:
        if p[name] is not None and p[name] != parent[name]:
            raise InvalidParameterError(
                f"The {name!r} {_OWNER} is {p[name]!r}, but {where} {parent[name]!r}: an "
                "append transforms and combines ratings as its parent did (leave it out)."
            )
    for name, default in (
        ("eval_fraction", 0),
        ("min_user_interactions", 1),
        ("min_item_interactions", 1),
    ):
        if p[name] != default:
            raise InvalidParameterError(
                f"The {name!r} {_OWNER} is {p[name]!r}, which an append does not apply: its "
                "new pairs go to train, a pair held out by the parent stays held out, and "
                "the parent's filters are not applied again. Leave it out."
            )
    if parent["rating_transform"] != "scaled-median":
        for name in ("scale", "cap"):
            if p[name] is not None:
                raise InvalidParameterError(
                    f"The {name!r} {_OWNER} is {p[name]!r}, but {where} the rating transform "
                    f"{parent['rating_transform']!r}, which has no {name}: an append "
                    "transforms ratings as its parent did (leave it out)."
                )
    # time_col is not taken: an append keeps no time (its pairs go to train, unsplit)
    for name in ("user_col", "item_col", "rating_col", "shards", "compression"):
        if p[name] is None:
            p[name] = parent[name]
    for name in ("rating_transform", "duplicates", "scale", "cap"):
        if name in parent:
            p[name] = parent[name]


def prepare(
    inputs,
    out: str | os.PathLike,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    delimiter: str | None = None,
    columns: list[str] | None = None,
    format: str | None = None,
    rating_transform: str | None = None,
    scale: float | None = None,
    cap: float | None = None,
    duplicates: str | None = None,
    min_user_interactions: int = 1,
    min_item_interactions: int = 1,
    eval_fraction: float = 0.0,
    split: str = "random",
    seed: int = 0,
    shards: int | None = None,
    compression: str | None = None,
    on_bad_rows: str = "error",
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    append_to: str | os.PathLike | None = None,
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
        Seeds the split (:func:`walsrec.data.split.holdout_mask`): the same pairs and seed
        give the same split, whatever the order of the rows.
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
    append_to : path, optional
        A DATA_DIR to merge the new interactions into (:mod:`walsrec.data.append`): its
        ids keep their indices and new ids are appended, its rating transform (with its
        recorded parameters), ``duplicates`` rule, columns and TFRecord settings apply
        unless given, its split is kept (new pairs go to train) and meta.json records the
        lineage. ``out`` must be another directory. ``duplicates``, ``rating_transform``,
        ``scale`` and ``cap`` may only repeat the parent's; ``eval_fraction`` and the
        minimum counts are refused.

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
    if append_to is not None:
        return _append(params)
    check_params(params)
    out = Path(out)
    note = progress or (lambda message: None)
    check_output(out, inputs, overwrite)
    started = time.perf_counter()
    read = _read_inputs(params, note)
    pairs, transform_info = _combined_pairs(read, params)
    p = params  # checked, defaults filled in
    kept = _filtered_pairs(pairs, p["min_user_interactions"], p["min_item_interactions"])
    train, evaluation, n_eval_dropped = _split_pairs(
        kept, p["eval_fraction"], p["split"], p["seed"], note
    )
    counts = _counts(read, len(pairs.rows), len(kept.rows), train, evaluation, n_eval_dropped)
    meta = build_meta(params, read.sources, transform_info, counts)
    _write_data_dir(out, meta, train, evaluation, p["shards"], p["compression"], note)
    meta["seconds"] = round(time.perf_counter() - started, 3)
    return meta


def _append(params: dict) -> dict:
    """:func:`prepare` with ``append_to`` (see :mod:`walsrec.data.append`)."""
    from walsrec.data.append import append_pairs, lineage_entry, parent_settings

    started = time.perf_counter()
    out, parent_dir = Path(params["out"]), Path(params["append_to"])
    note = params["progress"] or (lambda message: None)
    parent = load_prepared(parent_dir)
    settings = parent_settings(parent.meta, parent.path)
    check_params(params, settings)
    if out.resolve() == parent_dir.resolve():
        raise InvalidParameterError(
            f"The 'out' {_OWNER} is the DATA_DIR appended to ({str(out)!r}); write the "
            "appended data set to another directory (models trained on the parent read it)."
        )
    check_output(out, params["inputs"], params["overwrite"])
    read = _read_inputs(params, note)
    train, evaluation, added, dropped = append_pairs(
        read, parent, settings, params["on_bad_rows"], note
    )
    if dropped:
        read.bad_reasons["combined rating beyond float32 range"] += dropped
        read.n_bad_rows += dropped
    n_pairs = train.nnz + (evaluation.nnz if evaluation is not None else 0)
    counts = _counts(read, n_pairs, n_pairs, train, evaluation, 0)
    meta = build_meta(params, read.sources, settings["transform_info"], counts)
    meta["filters"], meta["split"] = parent.meta.get("filters"), parent.meta.get("split")
    meta["lineage"] = lineage_entry(parent.path.resolve(), parent.meta, added)
    note(
        f"{len(train.users):,} users, {len(train.items):,} items, {train.nnz:,} train and "
        f"{evaluation.nnz if evaluation is not None else 0:,} eval interactions"
    )
    _write_data_dir(out, meta, train, evaluation, params["shards"], params["compression"], note)
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


def check_output(out: Path, inputs, overwrite: bool) -> None:
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
    read = read_rows(p["inputs"], p)
    note(f"read {read.n_rows_read:,} rows from {len(read.sources)} file(s)")
    return read


def read_rows(inputs, p: dict) -> ReadResult:
    """The rows of ``inputs`` read with :func:`prepare`'s reading settings ``p`` (columns,
    format, bad rows; non-negative ratings for the transforms that need them)."""
    return read_table(
        inputs,
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


def _combined_pairs(read: ReadResult, p: dict) -> tuple[_Pairs, dict]:
    """The rows read, combined into distinct pairs (``p["duplicates"]``) and their rating
    transformed; returns the pairs and the transform's info for meta.json.

    A pair whose combined rating is beyond float32's range is an error, or with
    ``on_bad_rows="skip"`` dropped, its rows counted as bad rows in ``read``.
    """
    table = read.table
    users_dict, user_codes = sorted_codes(table.column("user"))
    items_dict, item_codes = sorted_codes(table.column("item"))
    values, times = rating_values(table), pair_times_input(table)
    del table
    duplicates = p["duplicates"]
    agg = aggregate_duplicates(user_codes, item_codes, values, len(items_dict), duplicates, times)
    rows, cols, values, counts = agg[0], agg[1], agg[2], agg[3]
    pair_times = agg[4] if times is not None else None
    values, transform_info = transform_ratings(values, p["rating_transform"], p["scale"], p["cap"])
    pairs = _Pairs(users_dict, items_dict, rows, cols, values, counts, pair_times)
    beyond = beyond_float32(values)
    if beyond.any():
        if p["on_bad_rows"] == "error":
            pos = int(np.flatnonzero(beyond)[0])
            user, item = users_dict[int(rows[pos])].as_py(), items_dict[int(cols[pos])].as_py()
            raise beyond_error(
                user, item, int(counts[pos]), duplicates, transform_info, float(values[pos])
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
    train lacks.

    The eval pairs are :func:`~walsrec.data.split.holdout_mask`'s of the matrix of the kept
    pairs (their users and items in vocabulary order), so the split depends only on the
    pairs and the seed, not on the order of the input rows.
    """
    rows, cols, values = pairs.rows, pairs.cols, pairs.values
    is_eval = holdout_split(rows, pairs.times, eval_fraction, split, seed)
    users = Vocabulary(pairs.users.take(pa.array(np.unique(rows[~is_eval]))), "users")
    items = Vocabulary(pairs.items.take(pa.array(np.unique(cols[~is_eval]))), "items")
    user_map = _index_map(rows[~is_eval], len(pairs.users))
    item_map = _index_map(cols[~is_eval], len(pairs.items))
    train = _matrix(
        user_map[rows[~is_eval]], item_map[cols[~is_eval]], values[~is_eval], users, items
    )
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


def holdout_split(
    rows, times, fraction: float, how: str, seed: int, lo=0, entry_lo=0, n_users=None
):
    """Which pairs are held out for evaluation: ``rows`` (sorted) are the pairs' users,
    ``times`` their times (for ``how="time"``). Rows are counted from ``lo`` among the
    ``n_users`` users with pairs, and the pairs from ``entry_lo`` (for a range of users of
    a bigger set; by default the pairs are all of them)."""
    n = len(rows)
    if fraction == 0 or n == 0:
        return np.zeros(n, dtype=bool)
    starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
    indptr = np.append(starts, n)
    n_users = len(starts) if n_users is None else n_users
    return holdout_mask(indptr, lo, entry_lo, n_users, fraction, seed, how, times)


def _index_map(codes: np.ndarray, size: int) -> np.ndarray:
    """For each of ``size`` codes, its index among the distinct ``codes`` (in code order),
    or -1 where absent."""
    present = np.zeros(size, dtype=bool)
    present[codes] = True
    out = np.full(size, -1, dtype=np.int64)
    out[present] = np.arange(int(present.sum()))
    return out


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


def build_meta(p: dict, sources: list[str], transform_info: dict, counts: dict) -> dict:
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


def beyond_float32(values: np.ndarray) -> np.ndarray:
    """Mask of combined values that float32, the stored type, cannot hold.

    The reader refuses single ratings beyond float32's range; a sum of repeated pairs can
    still get there, and would be written as inf.
    """
    with np.errstate(invalid="ignore"):
        return np.abs(values) > np.finfo(np.float32).max


def beyond_error(user, item, count: int, duplicates: str, transform_info: dict, value: float):
    """The DataFormatError for a (user, item) pair whose ``count`` rows combine beyond
    float32's range."""
    return DataFormatError(
        f"User {user!r}, item {item!r}: its {count} rows combine "
        f"(duplicates={duplicates!r}, rating transform {transform_info['name']!r}) to "
        f"{value:.6g}, beyond float32's range (magnitudes up to 3.4e38), "
        "in which ratings are stored."
    )


def sorted_codes(column, numeric: bool | None = None) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of ``column`` in vocabulary order
    (:func:`~walsrec.data.vocabulary.sorted_id_order`; ``numeric`` as there) and the
    index of each row's value among them."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    order = sorted_id_order(encoded.dictionary, numeric)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return encoded.dictionary.take(pa.array(order)), rank[codes]


def rating_values(table: pa.Table) -> np.ndarray:
    """The rating of each row read (float64), 1 for every row without a rating column."""
    if "rating" not in table.column_names:
        return np.ones(table.num_rows)
    return table.column("rating").to_numpy()


def pair_times_input(table: pa.Table) -> np.ndarray | None:
    """The ``time`` column of the rows read as float64 (None without one): the time
    split ranks by it, and a pair's time is its rows' latest."""
    if "time" not in table.column_names:
        return None
    return np.asarray(table.column("time").to_numpy(), dtype=np.float64)


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
