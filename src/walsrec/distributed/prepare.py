"""``prepare`` on a Dask cluster: the workers turn interaction files into a DATA_DIR.

The client lists the files and plans; every row is read, combined, filtered, split and
written by the workers, and what reaches the client is counts, a sample of user ids (to
cut the users into ranges) and at most one error. The DATA_DIR is the one
:func:`walsrec.data.prepare.prepare` writes for the same inputs and settings: the same
vocabularies, TFRecords and native arrays, byte for byte (a test holds it to that), and
a ``meta.json`` that differs only in its time stamps.

The stages, each a set of tasks on the workers:

1. **read**: one task per file reads it with :func:`walsrec.data.readers.read_table` (so
   a bad row is the same one-line error naming file, line, column and value, and
   ``on_bad_rows="skip"`` counts the same reasons), and keeps its table on its worker.
2. **vocabulary order**: the files' distinct items are merged on the workers into the
   sorted list of all items read (each worker gets a copy: the item vocabulary must fit a
   worker), and user ids sampled from every file cut the users into ``partitions``
   ranges of the vocabulary order, balanced by rows.
3. **combine**: each user range gathers its rows from every file, in file order (so
   ``duplicates`` "first", "last" and sums see a pair's rows in input order), and
   combines repeated pairs as one process does.
4. **rating transform**: ``scaled-median``'s median is selected exactly, 16 bits of the
   float64 at a time, from histograms of the ranges' values.
5. **filters**: the ranges drop users and items below the minimum counts, summing item
   counts across ranges on the workers, until nothing changes.
6. **split**: each range holds out its eval pairs with
   :func:`walsrec.data.split.holdout_mask`, jumping the random stream to its first user
   and pair.
7. **write**: each range writes its users' vocabulary lines, its rows of the TFRecords
   (as pieces that one task per shard joins, gzip as one stream) and of the native
   arrays (byte ranges of files created at their final size); the item side is first
   regrouped by item ranges. Everything goes into a temporary directory beside the
   DATA_DIR, renamed into place once complete.

The files must be readable by every worker at the same path or URL, and the DATA_DIR's
folder shared by all of them (the workers write into it).
"""

from __future__ import annotations

import inspect
import itertools
import operator
import os
import shutil
import time
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from walsrec._files import write_dir_atomically, write_error
from walsrec.data.interactions import aggregate_duplicates
from walsrec.data.prepare import (
    beyond_error,
    beyond_float32,
    build_meta,
    check_output,
    check_params,
    holdout_split,
    pair_times_input,
    rating_values,
    read_rows,
    sorted_codes,
    transform_ratings,
)
from walsrec.data.readers import expand_inputs
from walsrec.data.tfrecord.write import encode_rows, shard_cuts
from walsrec.data.vocabulary import (
    Vocabulary,
    check_ids_text,
    id_numbers,
    ids_are_integers,
    sorted_id_order,
)
from walsrec.distributed import _tasks
from walsrec.distributed.write_native import finish_native, start_native
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = ["prepare", "prepare_dask"]

_OWNER = "parameter of prepare"
_SAMPLE = 2000  # user ids sampled per file to cut the users into ranges
_HIST_BITS = 16


def prepare(
    inputs,
    out: str | os.PathLike,
    *,
    dask: str | None = None,
    partitions: int | None = None,
    **settings,
) -> dict:
    """Turn interaction files into a prepared DATA_DIR, in this process or on a Dask
    cluster's workers.

    ``settings`` are :func:`walsrec.data.prepare.prepare`'s, and so are the result, the
    errors and the DATA_DIR, byte for byte, either way.

    Parameters
    ----------
    dask : str, optional
        A scheduler address (``tcp://HOST:8786``) or ``"local:N"`` (N local worker
        processes): the workers read, combine, split and write (:func:`prepare_dask`).
    partitions : int, optional
        With ``dask``: the user ranges the work is split into (default two per worker).
    """
    if dask is not None:
        _refuse_append(settings.get("append_to"))
    if dask is None:
        if partitions is not None:
            raise InvalidParameterError(
                f"The 'partitions' {_OWNER} needs 'dask' (--dask): it says how many user "
                f"ranges the workers split the data into. Got partitions={partitions!r} "
                "without dask."
            )
        from walsrec.data.prepare import prepare as prepare_here

        return prepare_here(inputs, out, **settings)
    from walsrec.distributed.cluster import connected

    with connected(dask, _OWNER) as client:
        return prepare_dask(client, inputs, out, partitions=partitions, **settings)


def _signature() -> inspect.Signature:
    """One-process prepare's signature with ``dask`` and ``partitions`` (for help())."""
    from walsrec.data.prepare import prepare as prepare_here

    sig = inspect.signature(prepare_here)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a)
        for name, a in (("dask", "str | None"), ("partitions", "int | None"))
    ]
    return sig.replace(parameters=[*sig.parameters.values(), *extra])


prepare.__signature__ = _signature()


def _refuse_append(append_to) -> None:
    if append_to is not None:
        raise InvalidParameterError(
            f"The 'append_to' {_OWNER} cannot be combined with 'dask' (--dask): an append "
            f"runs in one process. Got append_to={str(append_to)!r}."
        )


def prepare_dask(
    client,
    inputs,
    out: str | os.PathLike,
    *,
    partitions: int | None = None,
    **settings,
) -> dict:
    """Have a Dask cluster's workers prepare ``inputs`` into the DATA_DIR ``out``.

    ``settings`` are :func:`walsrec.data.prepare.prepare`'s (but ``append_to``), and the
    result, the errors and the DATA_DIR are its own, byte for byte (see the module
    docstring). The files are read one task each, so a cluster reads as many at once as it
    has worker threads: give big inputs as several files (or Parquet files). ``out``'s
    folder must be one that every worker writes to at the same path.

    Parameters
    ----------
    client : distributed.Client
    partitions : int, optional
        Ranges of users (and of items) the work is split into; default two per worker.
        Each range's rows must fit its worker's memory, with room for sorting them.
    """
    params = _bound(inputs, out, settings)
    _refuse_append(params["append_to"])
    check_params(params)
    if not (partitions is None or (isinstance(partitions, int) and partitions >= 1)):
        raise InvalidParameterError(
            f"The 'partitions' {_OWNER} must be None or an int >= 1. Got {partitions!r} instead."
        )
    out = Path(out).resolve()
    note = params["progress"] or (lambda message: None)
    check_output(out, inputs, params["overwrite"])
    started = time.perf_counter()
    n_parts = partitions or 2 * max(1, len(client.scheduler_info().get("workers", {})))
    run = _Run(client, params, n_parts, note)
    run.read()
    run.combine()
    run.transform()
    run.filter()
    run.split()
    meta = build_meta(params, run.sources, run.transform_info, run.counts)
    note("writing TFRecords and native arrays")
    try:
        write_dir_atomically(out, lambda tmp: run.write(tmp, meta))
    except OSError as exc:
        raise write_error(exc, out, "cannot write the prepared data") from exc
    meta["seconds"] = round(time.perf_counter() - started, 3)
    return meta


def _bound(inputs, out, settings: dict) -> dict:
    """:func:`walsrec.data.prepare.prepare`'s arguments, its defaults filled in (an unknown
    name is a TypeError, as in a call)."""
    from walsrec.data.prepare import prepare as prepare_here

    bound = inspect.signature(prepare_here).bind(inputs, out, **settings)
    bound.apply_defaults()
    return dict(bound.arguments)


# ------------------------------------------------------------------------ worker side
@dataclass
class FilePiece:
    """One file read on a worker: its rows (``user``, ``item``, optional ``rating`` and
    ``time``) and what the client is told about it."""

    table: pa.Table
    summary: dict
    items: pa.Array


def read_file(path: str, index: int, settings: dict) -> FilePiece:
    """Read one input file as :func:`walsrec.data.prepare.prepare` reads every file."""
    read = read_rows([path], settings)
    table = read.table
    users = _array(table.column("user"))
    items = _array(pc.unique(table.column("item")))
    picks = np.random.default_rng([index, 7]).integers(0, max(table.num_rows, 1), _SAMPLE)
    sample = users.take(pa.array(picks)) if table.num_rows else users
    summary = {
        "rows_read": read.n_rows_read,
        "bad_rows": read.n_bad_rows,
        "bad_reasons": dict(read.bad_reasons),
        "rows": table.num_rows,
        "users_are_integers": ids_are_integers(_array(pc.unique(users))),
        "items_are_integers": ids_are_integers(items),
        "user_sample": sample,
    }
    return FilePiece(table, summary, items)


def _array(values) -> pa.Array:
    """``values`` as one text array (chunks combined)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.string()) if values.type != pa.string() else values


def piece_summary(piece: FilePiece) -> dict:
    return piece.summary


def piece_items(piece: FilePiece) -> pa.Array:
    return piece.items


def merge_distinct(*arrays: pa.Array) -> pa.Array:
    """The distinct values of some arrays of distinct values."""
    return pc.unique(pa.concat_arrays([a.cast(pa.string()) for a in arrays]))


def sort_ids(ids: pa.Array, numeric: bool) -> pa.Array:
    """Distinct ids in vocabulary order."""
    return ids.take(pa.array(sorted_id_order(ids, numeric)))


def range_of_ids(ids: pa.Array, splitters, numeric: bool) -> np.ndarray:
    """Which user range each of the distinct ``ids`` falls in: the number of
    ``splitters`` (ids in vocabulary order, as numbers when ``numeric``) at or before it."""
    if numeric:
        return np.searchsorted(np.asarray(splitters, dtype=np.int64), id_numbers(ids), "right")
    order = sorted_id_order(ids, False)
    ranked = ids.take(pa.array(order))
    positions = [_bisect_left(ranked, s) for s in splitters]
    out = np.empty(len(ids), dtype=np.int64)
    out[order] = np.searchsorted(
        np.asarray(positions, dtype=np.int64), np.arange(len(ids)), "right"
    )
    return out


def _bisect_left(ranked: pa.Array, value: str) -> int:
    """The first position of ``ranked`` (text sorted by UTF-8 bytes, which is Python's
    order of str) whose id is not below ``value``."""
    lo, hi = 0, len(ranked)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranked[mid].as_py() < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def cut_by_user(piece: FilePiece, splitters, numeric: bool) -> list[pa.Table]:
    """The rows of one file in each user range, in file order."""
    table = piece.table
    n = len(splitters) + 1
    if table.num_rows == 0:
        return [table] * n
    encoded = pc.dictionary_encode(table.column("user").combine_chunks())
    part_of_id = range_of_ids(encoded.dictionary, splitters, numeric)
    part = part_of_id[encoded.indices.to_numpy(zero_copy_only=False)]
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(n + 1))
    return [table.take(pa.array(order[bounds[r] : bounds[r + 1]])) for r in range(n)]


@dataclass
class UserRange:
    """A range of users on a worker: their combined pairs (``rows`` index ``users``, the
    range's users in vocabulary order; ``cols`` index all items read), the rows each pair
    combines, and which pairs are kept (``keep``) and held out (``held``)."""

    users: pa.Array
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    times: np.ndarray | None
    keep: np.ndarray
    held: np.ndarray | None = None


def combine_range(items_all: pa.Array, settings: dict, *tables: pa.Table) -> UserRange:
    """Combine the repeated pairs of one user range, its rows given file by file."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        e = np.zeros(0, dtype=np.int64)
        times = np.zeros(0) if settings["time_col"] else None
        return UserRange(pa.array([], pa.string()), e, e, np.zeros(0), e, times, e.astype(bool))
    table = pa.concat_tables(tables, promote_options="permissive")
    users, user_codes = sorted_codes(table.column("user"), settings["numeric_users"])
    item_codes = pc.index_in(table.column("item"), value_set=items_all).to_numpy(
        zero_copy_only=False
    )
    values, times = rating_values(table), pair_times_input(table)
    del table
    agg = aggregate_duplicates(
        user_codes,
        item_codes.astype(np.int64),
        values,
        len(items_all),
        settings["duplicates"],
        times,
    )
    pair_times = agg[4] if times is not None else None
    keep = np.ones(len(agg[0]), dtype=bool)
    return UserRange(users, agg[0], agg[1], agg[2], agg[3], pair_times, keep)


def range_counts(r: UserRange) -> tuple[int, int]:
    """(pairs kept, users with a kept pair) of a range."""
    rows = r.rows[r.keep]
    return int(rows.shape[0]), int(np.unique(rows).shape[0])


def value_histogram(r: UserRange, shift: int, prefix: int) -> np.ndarray:
    """Counts of the 16 bits above ``shift`` of the range's values (float64 bits, all
    non-negative) whose higher bits are ``prefix``."""
    bits = (r.values + 0.0).view(np.uint64)
    if shift + _HIST_BITS < 64:
        bits = bits[(bits >> np.uint64(shift + _HIST_BITS)) == np.uint64(prefix)]
    digit = ((bits >> np.uint64(shift)) & np.uint64(2**_HIST_BITS - 1)).astype(np.intp)
    return np.bincount(digit, minlength=2**_HIST_BITS).astype(np.int64)


def transform_range(r: UserRange, settings: dict, median: float | None, items_all: pa.Array):
    """The range with its ratings transformed; a pair beyond float32's range is dropped
    and counted (skip) or described (error): returns (range, rows dropped, first error
    or None, the transform's info for meta.json)."""
    values, info = transform_ratings(
        r.values, settings["rating_transform"], settings["scale"], settings["cap"], median
    )
    r = replace(r, values=values)
    beyond = beyond_float32(values)
    if not beyond.any():
        return r, 0, None, info
    if settings["on_bad_rows"] == "error":
        pos = int(np.flatnonzero(beyond)[0])
        error = (
            r.users[int(r.rows[pos])].as_py(),
            items_all[int(r.cols[pos])].as_py(),
            int(r.counts[pos]),
            float(values[pos]),
        )
        return r, 0, error, info
    ok = ~beyond
    times = r.times[ok] if r.times is not None else None
    kept = UserRange(r.users, r.rows[ok], r.cols[ok], values[ok], r.counts[ok], times, r.keep[ok])
    return kept, int(r.counts[beyond].sum()), None, info


def item_counts(r: UserRange, n_items: int, mask_name: str = "keep") -> np.ndarray:
    """Pairs per item (of all items read) among the range's kept pairs (``"keep"``) or
    kept training pairs (``"train"``)."""
    mask = r.keep if mask_name == "keep" else r.keep & ~r.held
    return np.bincount(r.cols[mask], minlength=n_items).astype(np.int64)


def add_arrays(*arrays: np.ndarray) -> np.ndarray:
    total = arrays[0].copy()
    for a in arrays[1:]:
        total += a
    return total


def filter_range(r: UserRange, icount: np.ndarray, min_user: int, min_item: int):
    """One round of the minimum-count filters: (range, pairs kept)."""
    keep = r.keep
    ucount = np.bincount(r.rows[keep], minlength=len(r.users))
    new = keep & (ucount[r.rows] >= min_user) & (icount[r.cols] >= min_item)
    return replace(r, keep=new), int(new.sum())


def split_range(r: UserRange, settings: dict, lo: int, entry_lo: int, n_users: int):
    """The range with its kept pairs' eval mask (``held``, over the kept pairs), its
    first kept user being kept user ``lo`` and its first kept pair pair ``entry_lo`` of
    ``n_users`` kept users."""
    rows = r.rows[r.keep]
    times = r.times[r.keep] if r.times is not None else None
    held_kept = holdout_split(
        rows,
        times,
        settings["eval_fraction"],
        settings["split"],
        settings["seed"],
        lo,
        entry_lo,
        n_users,
    )
    held = np.zeros(len(r.rows), dtype=bool)
    held[np.flatnonzero(r.keep)] = held_kept
    return replace(r, held=held)


def train_item_map(counts: np.ndarray) -> np.ndarray:
    """Each item's index among the items with training pairs, -1 for the others."""
    present = counts > 0
    out = np.full(len(counts), -1, dtype=np.int64)
    out[present] = np.arange(int(present.sum()))
    return out


@dataclass
class RangeMatrices:
    """A user range's rows of the train and eval matrices, and its training users."""

    users: pa.Array
    train: sp.csr_matrix
    eval: sp.csr_matrix | None
    eval_dropped: int


def range_matrices(r: UserRange, item_map: np.ndarray, n_items: int, with_eval: bool):
    """The range's training users and its rows of the train and eval matrices."""
    train = r.keep & ~r.held
    held = r.keep & r.held
    in_train = np.zeros(len(r.users), dtype=bool)
    in_train[r.rows[train]] = True
    user_map = np.full(len(r.users), -1, dtype=np.int64)
    user_map[in_train] = np.arange(int(in_train.sum()))
    n = int(in_train.sum())
    m = _csr(user_map[r.rows[train]], item_map[r.cols[train]], r.values[train], n, n_items)
    ev, dropped = None, 0
    if with_eval:
        er, ec = user_map[r.rows[held]], item_map[r.cols[held]]
        known = (er >= 0) & (ec >= 0)
        dropped = int((~known).sum())
        ev = _csr(er[known], ec[known], r.values[held][known], n, n_items)
    return RangeMatrices(r.users.filter(pa.array(in_train)), m, ev, dropped)


def _csr(rows, cols, values, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """The CSR matrix prepare writes for these entries (as its ``_matrix``)."""
    return sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=(n_rows, n_cols))


def matrix_of(m: RangeMatrices, which: str) -> sp.csr_matrix:
    return m.train if which == "train" else m.eval


def range_summary(m: RangeMatrices) -> tuple[int, int, int, int]:
    """(training users, train entries, eval entries, eval pairs dropped) of a range."""
    return len(m.users), m.train.nnz, m.eval.nnz if m.eval is not None else 0, m.eval_dropped


def item_cuts(counts: np.ndarray, parts: int) -> list[int]:
    """``parts`` + 1 boundaries of item ranges (over the training items) balanced by
    entries."""
    counts = counts[counts > 0]
    cum = np.concatenate([[0], np.cumsum(counts)])
    targets = cum[-1] * np.arange(1, parts) / parts
    inner = np.searchsorted(cum, targets, side="left")
    return [0, *(int(x) for x in np.maximum.accumulate(inner)), len(counts)]


def cut_by_item(m: sp.csr_matrix, row_lo: int, cuts: list[int]) -> list:
    """The entries of a user range's rows in each item range: (items, users, values),
    users counted from the whole matrix's first row, in row order."""
    coo = m.tocoo()
    order = np.argsort(coo.col, kind="stable")  # rows ascending within each item
    cols = coo.col[order]
    bounds = np.searchsorted(cols, cuts)
    rows = coo.row[order].astype(np.int64) + row_lo
    data = coo.data[order]
    return [
        (cols[a:b].astype(np.int64), rows[a:b], data[a:b]) for a, b in itertools.pairwise(bounds)
    ]


def item_block(lo: int, hi: int, n_users: int, *pieces) -> sp.csr_matrix:
    """Rows ``lo:hi`` of the item × user matrix, from each user range's piece."""
    cols = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int64)
    rows = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int64)
    data = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0, np.float32)
    return sp.csr_matrix((data.astype(np.float32), (cols - lo, rows)), shape=(hi - lo, n_users))


def block_cuts(m: sp.csr_matrix, lo: int, offset: int, total: int, shards: int) -> dict:
    """:func:`~walsrec.data.tfrecord.write.shard_cuts` of a block of rows."""
    return shard_cuts(np.asarray(m.indptr, dtype=np.int64) + offset, lo, total, shards)


def write_records_piece(m: sp.csr_matrix, lo: int, first: int, last: int, path: str) -> str:
    """Encode the block's rows ``first:last`` (whole-matrix rows; those with entries) as
    TFRecords into ``path``."""
    indptr = np.asarray(m.indptr, dtype=np.int64)
    local = np.arange(max(first - lo, 0), max(min(last - lo, m.shape[0]), 0), dtype=np.int64)
    local = local[np.diff(indptr)[local] > 0]
    blob = encode_rows(m, local, lo)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def write_lines_piece(ids: pa.Array, path: str, what: str) -> str:
    """The ids one per line, as :meth:`Vocabulary.save` writes them."""
    check_ids_text(ids, source=f"{what} vocabulary")
    text = "\n".join(ids.to_pylist()) + "\n" if len(ids) else ""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path


def join_pieces(paths: list[str], final: str, compression: str | None) -> str:
    """Concatenate the pieces into ``final`` (one GZIP stream with ``gzip``, as
    :func:`write_tfrecords` compresses), then remove them.

    ``final`` appears (by a rename) only once complete, and the pieces are removed only
    after, so a run of this task again after a lost worker finds either every piece (and
    joins them again) or ``final`` complete."""
    if not all(os.path.exists(path) for path in paths) and os.path.exists(final):
        _remove(paths)
        return final
    tmp = f"{final}.joining"
    with open(tmp, "wb") as out:
        gz = zlib.compressobj(6, zlib.DEFLATED, 31) if compression == "gzip" else None
        for path in paths:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    out.write(gz.compress(chunk) if gz else chunk)
        if gz is not None:
            out.write(gz.flush())
    os.replace(tmp, final)
    _remove(paths)
    return final


def _remove(paths) -> None:
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


def write_native_part(part, paths: dict, finals: dict, lo: int, offset: int) -> int:
    """:func:`~walsrec.distributed._tasks.write_part` into the native files being written,
    or nothing when they were already renamed into place (a run of this task again, after
    a lost worker, once every block was written)."""
    if not all(os.path.exists(p) for p in paths.values()) and all(
        os.path.exists(p) for p in finals.values()
    ):
        return int(part.nnz)
    return _tasks.write_part(part, paths, lo, offset)


def save_item_vocabulary(items_all: pa.Array, counts: np.ndarray, path: str) -> int:
    """Write the training items' vocabulary; returns its size."""
    vocab = Vocabulary(items_all.filter(pa.array(counts > 0)), "items")
    vocab.save(path)
    return len(vocab)


# ------------------------------------------------------------------------ client side
class _Run:
    """One distributed prepare: the futures of each stage and the counts seen so far."""

    def __init__(self, client, params: dict, n_parts: int, note):
        self.client = client
        self.p = params
        self.n_parts = n_parts
        self.note = note
        self.counts: dict = {}

    def submit(self, fn, *args, **kwargs):
        return self.client.submit(fn, *args, pure=False, **kwargs)

    def gather_in_order(self, futures):
        """The results, raising the first failed task's error in list order."""
        from distributed import wait

        wait(futures)
        for f in futures:
            if f.status == "error":
                raise f.exception()
        return self.client.gather(futures)

    def tree(self, fn, futures):
        """Combine futures pairwise on the workers with ``fn`` down to one."""
        while len(futures) > 1:
            futures = [
                self.submit(fn, *futures[i : i + 8]) if len(futures[i : i + 8]) > 1 else futures[i]
                for i in range(0, len(futures), 8)
            ]
        return futures[0]

    # 1. read
    def read(self) -> None:
        self.note("reading inputs")
        self.sources = expand_inputs(self.p["inputs"])
        settings = {k: self.p[k] for k in _READ_KEYS}
        self.pieces = [
            self.submit(read_file, path, i, settings) for i, path in enumerate(self.sources)
        ]
        summaries = self.gather_in_order(
            [self.submit(piece_summary, piece) for piece in self.pieces]
        )
        reasons: Counter = Counter()
        for s in summaries:
            reasons.update(s["bad_reasons"])
        self.reasons = reasons
        self.rows_read = sum(s["rows_read"] for s in summaries)
        self.bad_rows = sum(s["bad_rows"] for s in summaries)
        self.numeric_users = all(s["users_are_integers"] for s in summaries)
        self.numeric_items = all(s["items_are_integers"] for s in summaries)
        self.note(f"read {self.rows_read:,} rows from {len(self.sources)} file(s)")
        samples = pa.concat_arrays([s["user_sample"].cast(pa.string()) for s in summaries])
        self.splitters = _splitters(samples, self.n_parts, self.numeric_users)

    # 2-3. vocabulary order and combine
    def combine(self) -> None:
        distinct = self.tree(merge_distinct, [self.submit(piece_items, x) for x in self.pieces])
        self.items_all = self.submit(sort_ids, distinct, self.numeric_items)
        self.n_items_all = self.submit(len, self.items_all).result()
        cut = [
            self.submit(cut_by_user, piece, self.splitters, self.numeric_users)
            for piece in self.pieces
        ]
        n = len(self.splitters) + 1
        settings = {k: self.p[k] for k in ("duplicates", "time_col")}
        settings["numeric_users"] = self.numeric_users
        self.ranges = [
            self.submit(
                combine_range,
                self.items_all,
                settings,
                *[self.submit(operator.getitem, c, r) for c in cut],
            )
            for r in range(n)
        ]
        del self.pieces, cut

    # 4. rating transform
    def transform(self) -> None:
        p = self.p
        n_pairs = sum(c[0] for c in self.gather_in_order(self._counts()))
        median = None
        if p["rating_transform"] == "scaled-median" and n_pairs:
            lo = self._select((n_pairs - 1) // 2)
            hi = self._select(n_pairs // 2) if n_pairs % 2 == 0 else lo
            median = float(np.median(np.array([lo, hi])))
        settings = {k: p[k] for k in ("rating_transform", "scale", "cap", "on_bad_rows")}
        done = [
            self.submit(transform_range, r, settings, median, self.items_all) for r in self.ranges
        ]
        results = [self.submit(operator.getitem, d, i) for d in done for i in (1, 2)]
        found = self.gather_in_order(results)
        # the transform's info, as one process records it (every range's is the same)
        self.transform_info = self.submit(operator.getitem, done[0], 3).result()
        for error in found[1::2]:
            if error is not None:
                user, item, count, value = error
                raise beyond_error(user, item, count, p["duplicates"], self.transform_info, value)
        dropped = sum(found[0::2])
        if dropped:
            self.reasons["combined rating beyond float32 range"] += dropped
            self.bad_rows += dropped
        self.ranges = [self.submit(operator.getitem, d, 0) for d in done]

    def _counts(self):
        return [self.submit(range_counts, r) for r in self.ranges]

    def _select(self, k: int) -> float:
        """The k-th smallest (from 0) of all the ranges' values."""
        prefix = 0
        for shift in range(64 - _HIST_BITS, -1, -_HIST_BITS):
            hist = self.tree(
                add_arrays, [self.submit(value_histogram, r, shift, prefix) for r in self.ranges]
            ).result()
            cum = np.cumsum(hist)
            digit = int(np.searchsorted(cum, k, side="right"))
            k -= int(cum[digit - 1]) if digit else 0
            prefix = (prefix << _HIST_BITS) | digit
        return float(np.array([prefix], dtype=np.uint64).view(np.float64)[0])

    # 5. filters
    def filter(self) -> None:
        p = self.p
        n_pairs = sum(c[0] for c in self.gather_in_order(self._counts()))
        self.n_pairs = n_pairs
        min_user, min_item = p["min_user_interactions"], p["min_item_interactions"]
        kept = n_pairs
        if min_user > 1 or min_item > 1:
            while True:
                icount = self.tree(
                    add_arrays,
                    [self.submit(item_counts, r, self.n_items_all) for r in self.ranges],
                )
                done = [
                    self.submit(filter_range, r, icount, min_user, min_item) for r in self.ranges
                ]
                new = sum(self.gather_in_order([self.submit(operator.getitem, d, 1) for d in done]))
                self.ranges = [self.submit(operator.getitem, d, 0) for d in done]
                if new == kept:
                    break
                kept = new
        if kept == 0:
            raise DataFormatError(
                f"No interactions are left after filtering ({n_pairs:,} distinct pairs "
                f"read; min_user_interactions={min_user}, min_item_interactions={min_item})."
            )
        self.n_kept = kept

    # 6. split and the matrices
    def split(self) -> None:
        p = self.p
        counts = self.gather_in_order(self._counts())
        n_users = sum(c[1] for c in counts)
        user_lo = [0, *itertools.accumulate(c[1] for c in counts)]
        entry_lo = [0, *itertools.accumulate(c[0] for c in counts)]
        settings = {k: p[k] for k in ("eval_fraction", "split", "seed")}
        self.ranges = [
            self.submit(split_range, r, settings, user_lo[i], entry_lo[i], n_users)
            for i, r in enumerate(self.ranges)
        ]
        tcount = self.tree(
            add_arrays,
            [self.submit(item_counts, r, self.n_items_all, "train") for r in self.ranges],
        )
        self.train_item_counts = tcount
        item_map = self.submit(train_item_map, tcount)
        self.n_items = int(self.submit(np.count_nonzero, tcount).result())
        with_eval = p["eval_fraction"] > 0
        self.matrices = [
            self.submit(range_matrices, r, item_map, self.n_items, with_eval) for r in self.ranges
        ]
        del self.ranges
        sums = self.gather_in_order([self.submit(range_summary, m) for m in self.matrices])
        self.user_lo = [0, *itertools.accumulate(s[0] for s in sums)]
        self.n_users = self.user_lo[-1]
        n_train, n_eval = sum(s[1] for s in sums), sum(s[2] for s in sums)
        self.note(
            f"{self.n_users:,} users, {self.n_items:,} items, {n_train:,} train and "
            f"{n_eval:,} eval interactions"
        )
        self.counts = {
            "rows_read": self.rows_read,
            "bad_rows_skipped": self.bad_rows,
            "bad_rows_by_reason": dict(self.reasons),
            "distinct_pairs": self.n_pairs,
            "pairs_removed_by_filters": int(self.n_pairs - self.n_kept),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "train_interactions": n_train,
            "eval_interactions": n_eval,
            "eval_dropped_not_in_train": sum(s[3] for s in sums),
        }
        self.splits = ("train", "eval") if with_eval else ("train",)

    # 7. write
    def write(self, tmp: Path, meta: dict) -> None:
        import json

        vocab = tmp / "vocab"
        vocab.mkdir()
        pieces = tmp / ".pieces"
        pieces.mkdir()
        users_txt = [
            self.submit(
                write_lines_piece,
                self.submit(operator.attrgetter("users"), m),
                str(pieces / f"users-{i}"),
                "users",
            )
            for i, m in enumerate(self.matrices)
        ]
        jobs = [self.submit(join_pieces, users_txt, str(vocab / "users.txt"), None)]
        jobs.append(
            self.submit(
                save_item_vocabulary,
                self.items_all,
                self.train_item_counts,
                str(vocab / "items.txt"),
            )
        )
        cuts = self.submit(item_cuts, self.train_item_counts, self.n_parts).result()
        files = {}
        for name in self.splits:
            d = tmp / name
            (d / "native").mkdir(parents=True)
            users = [self.submit(matrix_of, m, name) for m in self.matrices]
            items = self._item_blocks(users, cuts)
            item_lo = cuts[:-1]
            files[name] = {}
            for blocks, lows, shape, prefix, native in (
                (
                    users,
                    self.user_lo[:-1],
                    (self.n_users, self.n_items),
                    "items_for_user",
                    "user_items",
                ),
                (items, item_lo, (self.n_items, self.n_users), "users_for_item", "item_users"),
            ):
                nnz = self.gather_in_order(
                    [self.submit(operator.attrgetter("nnz"), b) for b in blocks]
                )
                offsets = [0, *itertools.accumulate(nnz)]
                jobs += self._write_native(blocks, lows, offsets, shape, d / "native", native)
                paths, more = self._write_records(
                    blocks, lows, offsets, shape[0], d / prefix, pieces
                )
                files[name][prefix] = [Path(x).name for x in paths]
                jobs += more
        self.gather_in_order(jobs)
        shutil.rmtree(pieces)
        meta["files"] = files
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    def _item_blocks(self, users, cuts):
        pieces = [self.submit(cut_by_item, m, self.user_lo[i], cuts) for i, m in enumerate(users)]
        return [
            self.submit(
                item_block,
                cuts[c],
                cuts[c + 1],
                self.n_users,
                *[self.submit(operator.getitem, x, c) for x in pieces],
            )
            for c in range(len(cuts) - 1)
        ]

    def _write_native(self, blocks, lows, offsets, shape, folder: Path, name: str):
        """Every block writes its rows into ``folder/name.*.npy``, created at their final
        size; the metadata is written once all are (returned as the last job)."""
        nnz = offsets[-1]
        tmp, index = start_native(folder, name, shape, nnz)
        paths = {part: str(path) for part, path in tmp.items()}
        finals = {part: str(folder / f"{name}.{part}.npy") for part in tmp}
        writes = [
            self.submit(write_native_part, b, paths, finals, lows[i], offsets[i])
            for i, b in enumerate(blocks)
        ]
        return [self.submit(_finish_after, writes, folder, name, tmp, shape, nnz, index)]

    def _write_records(self, blocks, lows, offsets, n_rows: int, prefix: Path, pieces: Path):
        """The TFRecord shards of a matrix (as :func:`write_tfrecords` with
        ``self.p["shards"]``): each block encodes its rows of each shard, one task per
        shard joins them."""
        shards, compression = self.p["shards"], self.p["compression"]
        compression = None if compression == "none" else compression
        total = offsets[-1]
        if total > 0:
            found = {}
            for d in self.gather_in_order(
                [
                    self.submit(block_cuts, b, lows[i], offsets[i], total, shards)
                    for i, b in enumerate(blocks)
                ]
            ):
                found.update(d)
            cuts = [found[s] for s in range(1, shards)]
        else:
            cuts = [(n_rows * s) // shards for s in range(1, shards)]
        bounds = [0, *cuts, n_rows]
        suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
        paths, jobs = [], []
        for s in range(shards):
            path = f"{prefix}-{s:05d}-of-{shards:05d}{suffix}"
            parts = [
                self.submit(
                    write_records_piece,
                    b,
                    lows[i],
                    bounds[s],
                    bounds[s + 1],
                    str(pieces / f"{prefix.name}-{prefix.parent.name}-{s}-{i}"),
                )
                for i, b in enumerate(blocks)
            ]
            jobs.append(self.submit(join_pieces, parts, path, compression))
            paths.append(path)
        return paths, jobs


def _finish_after(writes, folder, name, tmp, shape, nnz, index):
    """Rename the native arrays into place once every block has written (``writes``);
    those already renamed (by a run of this task before a lost worker) stay."""
    left = {part: path for part, path in tmp.items() if os.path.exists(path)}
    finish_native(folder, name, left, shape, nnz, index)


_READ_KEYS = (
    "user_col",
    "item_col",
    "rating_col",
    "time_col",
    "delimiter",
    "columns",
    "format",
    "on_bad_rows",
    "rating_transform",
)


def _splitters(sample: pa.Array, parts: int, numeric: bool) -> list:
    """``parts`` - 1 user ids (numbers when ``numeric``) cutting the sampled ids into
    ranges of about equal rows, distinct and in vocabulary order."""
    if parts <= 1 or len(sample) == 0:
        return []
    if numeric:
        keys = np.sort(id_numbers(sample))
        picks = keys[(len(keys) * np.arange(1, parts)) // parts]
        return sorted({int(x) for x in picks})
    ranked = sample.take(pa.array(sorted_id_order(sample, False))).to_pylist()
    picks = [ranked[(len(ranked) * i) // parts] for i in range(1, parts)]
    return sorted(set(picks))
