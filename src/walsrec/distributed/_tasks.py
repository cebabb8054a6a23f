"""Functions that run on the Dask workers, one task each.

Every task reads its inputs from shared storage or from other tasks' results, so that the
scheduler can recompute any lost result from its lineage (a scattered array could not be).
The arithmetic is the single-machine estimator's: a worker calls the public half-step of
:mod:`walsrec.model.halfstep` (``build_side``, ``solve_rows``, ``observed_loss``, ...) with
the estimator's :class:`~walsrec.model.halfstep.Settings` on its own partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from walsrec.errors import DataFormatError, InvalidParameterError
from walsrec.model import halfstep
from walsrec.model.halfstep import FixedSide, Settings, Side


@dataclass(frozen=True, eq=False)
class Part:
    """One partition of a side as its worker keeps it: the half-step's :class:`Side`, the
    sorted other-side indices it touches, and whether ``side.indices`` are renumbered into
    them (positions in ``touched``; see :func:`renumber`)."""

    side: Side
    touched: np.ndarray
    renumbered: bool = False

    def other_indices(self) -> np.ndarray:
        """The other side's index of every stored entry (undoing a renumbering)."""
        return self.touched[self.side.indices] if self.renumbered else self.side.indices


def const(value):
    """A value as a task result: recomputable, unlike a scattered one."""
    return value


def load_part(
    directory: str, name: str, lo: int, hi: int, by_rows: bool, full_shape: tuple, nnz: int
) -> sp.csr_matrix:
    """Rows ``lo:hi`` of the native matrix ``directory/name`` (CSR, the stored values).

    ``directory`` is a path or an fsspec URL. ``by_rows``: the matrix is user_items (the row
    half-step); else item_users, whose CSR arrays are exactly those of user_items in CSC (the
    column half-step). Only the slice is read (memory-mapped locally, by byte range from
    other filesystems).
    """
    from walsrec.distributed._storage import join, npy_rows

    n_rows, n_cols = full_shape if by_rows else full_shape[::-1]
    base = join(directory, name)
    indptr = npy_rows(f"{base}.indptr.npy", lo, hi + 1, expect_len=n_rows + 1)
    indptr = indptr.astype(np.int64, copy=False)
    a, b = int(indptr[0]), int(indptr[-1])
    if not (0 <= a <= b <= nnz) or (indptr.size and np.any(np.diff(indptr) < 0)):
        raise DataFormatError(
            f"{base}.indptr.npy: rows {lo}:{hi} point at entries {a}:{b} of {nnz} (not a "
            "non-decreasing CSR index pointer)."
        )
    data = npy_rows(f"{base}.data.npy", a, b, expect_len=nnz)
    if data.size and not np.isfinite(data).all():
        p = int(np.flatnonzero(~np.isfinite(data))[0])
        row = lo + int(np.searchsorted(indptr - a, p, side="right") - 1)
        raise DataFormatError(
            f"{directory}/{name}.data.npy: value {float(data[p])!r} of row {row} (entry "
            f"{a + p}) is not finite."
        )
    indices = npy_rows(f"{base}.indices.npy", a, b, expect_len=nnz)
    return sp.csr_matrix((data, indices, indptr - a), shape=(hi - lo, n_cols), copy=False)


def row_sums(part) -> np.ndarray:
    """Σ_j r_ij of every row of a partition, float64 (BM25's s_i, as weighting computes)."""
    from walsrec.model.weighting import row_sums as sums

    return sums(part)


def row_counts(part) -> np.ndarray:
    """Stored entries of every row of a partition (of an item partition: TF-IDF's n_j)."""
    return np.diff(part.indptr).astype(np.int64)


def total(vector) -> float:
    return float(np.sum(vector, dtype=np.float64))


class _Stats:
    """A stand-in for :class:`~walsrec.model.weighting.WeightingStats` on a worker: the
    global vectors the partition needs (absent ones zero-filled: never read) and s̄
    reduced from every partition."""

    def __init__(self, n_users: int, item_counts, user_sums, mean_user_sum: float):
        from walsrec.model.weighting import WeightingStats

        self._full = WeightingStats(n_users, item_counts, user_sums)
        self.n_users = n_users
        self.item_counts = item_counts
        self.user_sums = user_sums
        self.mean_user_sum = mean_user_sum

    def idf(self, item_counts=None):
        return self._full.idf(item_counts)


def indptr_counts(directory: str, name: str, lo: int, hi: int, n_rows: int) -> np.ndarray:
    """Stored entries of rows ``lo:hi`` of the native matrix ``directory/name`` (from its
    indptr alone), float64."""
    from walsrec.distributed._storage import join, npy_rows

    ptr = npy_rows(f"{join(directory, name)}.indptr.npy", lo, hi + 1, expect_len=n_rows + 1)
    counts = np.diff(ptr.astype(np.int64))
    if counts.size and counts.min() < 0:
        raise DataFormatError(
            f"{join(directory, name)}.indptr.npy: decreases in rows {lo}:{hi} (not a CSR index "
            "pointer)."
        )
    return counts.astype(np.float64)


def confidence_sum(
    part, lo: int, n_users: int, scheme: dict, item_counts, mean_user_sum: float
) -> tuple[float, int]:
    """(Σ c(r) at α = 1, entries) of a user partition (rows ``lo:``), c of ``scheme``;
    BM25/TF-IDF read every item's count and s̄, the partition its own row sums. A value the
    scheme cannot weigh raises, naming its global row."""
    from walsrec.model.weighting import confidence_values

    m = sp.csr_matrix(part)
    users = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    stats = None
    if scheme["confidence"] in ("bm25", "tfidf"):
        bad = ~(np.isfinite(m.data) & (m.data >= 0))
        if bad.any():
            p = int(np.flatnonzero(bad)[0])
            raise InvalidParameterError(
                "BM25 and TF-IDF weighting need finite, non-negative values in 'user_items'. "
                f"Got {float(m.data[p])!r} at (row {lo + int(users[p])}, column "
                f"{int(m.indices[p])}) instead."
            )
        sums = row_sums(m)
        stats = _Stats(n_users, item_counts, sums, mean_user_sum)
    try:
        c = confidence_values(m.data, users, m.indices, **scheme, alpha=1.0, stats=stats)
    except InvalidParameterError as exc:
        # the message names the partition's row: name the matrix's
        raise InvalidParameterError(_global_row(str(exc), lo)) from None
    return (float(m.nnz) if c is None else float(np.sum(c))), int(m.nnz)


def _global_row(message: str, lo: int) -> str:
    import re

    return re.sub(r"\(row (\d+),", lambda g: f"(row {lo + int(g.group(1))},", message, count=1)


# --------------------------------------------------------------------------- validation


def split_part(part, lo: int, entry_lo: int, n_users: int, fraction: float, seed: int) -> dict:
    """A user partition (rows ``lo:``, its first entry at ``entry_lo`` of the matrix) cut
    into the entries to fit and those held out, as
    :func:`walsrec.data.split.validation_split` cuts the whole matrix; plus the number of
    its users with held-out entries."""
    from walsrec.data.split import entries_where, validation_mask

    m = sp.csr_matrix(part)
    held = validation_mask(m.indptr, lo, entry_lo, n_users, fraction, seed)
    val = entries_where(m, held)
    return {
        "fit": entries_where(m, ~held),
        "val": val,
        "validated": int(np.count_nonzero(np.diff(val.indptr))),
    }


def keep_users(val, positions: np.ndarray):
    """``val`` with only the users at ``positions`` among its users with entries (the
    rest emptied): the partition's share of a sample of validated users."""
    from walsrec.data.split import users_at

    return users_at(val, positions)


def column_piece(part, item_lo: int, item_hi: int):
    """Columns ``item_lo:item_hi`` of a user partition, transposed: (items × the
    partition's users), CSR, user indices local to the partition."""
    m = sp.csr_matrix(part)
    return sp.csr_matrix(m[:, item_lo:item_hi].T)


def stack_columns(n_items: int, n_users: int, *pieces):
    """An item partition from the :func:`column_piece` of every user partition, in user
    order: rows are items, columns global user indices, sorted."""
    if not pieces:
        return sp.csr_matrix((n_items, n_users))
    out = sp.hstack(pieces, format="csr")
    out.sort_indices()
    return out


def log_mass_sum(counts: np.ndarray, w0: float, n_items: int) -> tuple[float, int]:
    """(Σ log(count + w0·n_items), rows) over the rows of ``counts`` with a positive mass:
    the ν scale of λ auto's grid (:func:`walsrec.training.regularization._nu_scale`)."""
    mass = np.asarray(counts, dtype=np.float64) + w0 * n_items
    mass = mass[mass > 0]
    return float(np.sum(np.log(mass))), int(mass.size)


def make_side(
    part,
    lo: int,
    hi: int,
    by_rows: bool,
    full_shape: tuple[int, int],
    settings: Settings,
    row_weights,
    col_weights,
    stats: dict | None = None,
    weights=None,
) -> Part:
    """A partition as a :class:`Part`: weights and targets by ``halfstep.build_side``.

    ``row_weights``/``col_weights`` replace the settings' (a vector is shipped once, as a
    task result). ``stats`` (BM25/TF-IDF only): ``n_users``, ``mean_user_sum``,
    ``item_counts`` (all items), and ``user_sums`` (all users; item partitions under BM25)
    or ``own_sums`` (this user partition's). ``weights``: the same rows of a per-entry
    weights matrix, which must have the partition's stored entries (checked here, with
    :class:`~walsrec.model.wals.WALS`'s messages).
    """
    import dataclasses

    settings = dataclasses.replace(settings, row_weights=row_weights, col_weights=col_weights)
    weighting_stats = None
    if stats is not None:
        n_users, n_items = full_shape
        sums = stats.get("user_sums")
        if sums is None and settings.confidence != "bm25":
            sums = np.zeros(0)  # TF-IDF reads no s_i
        elif sums is None:
            # a user partition reads only its own s_i, at its users' global indices
            sums = np.zeros(n_users)
            sums[lo:hi] = stats["own_sums"]
        counts = stats.get("item_counts")
        counts = np.zeros(n_items, np.int64) if counts is None else counts
        weighting_stats = _Stats(n_users, counts, sums, stats["mean_user_sum"])
    subset = np.arange(lo, hi, dtype=np.int64)
    if weights is not None:
        from walsrec.model.validation import check_entry_weights

        check_entry_weights(weights, part, "DaskWALS.open", by_rows, lo, name="the data")
    side = halfstep.build_side(
        settings, part, weights, by_rows, tuple(full_shape), subset, weighting_stats
    )
    return Part(side, np.unique(side.indices))


def parse_shard(name: str, url: bool, vocab_size: int, n_rows: int | None):
    """One TFRecord file of sparse rows, parsed by walsrec.data.tfrecord's reader.

    Raises the reader's DataFormatError (file, record, value) for a bad record, and its
    messages for a negative key or one >= ``n_rows``.
    """
    from walsrec.data import tfrecord

    index_dtype = np.int32 if vocab_size <= np.iinfo(np.int32).max else np.int64
    parsed = tfrecord.parse_shard(tfrecord.ShardFile(name, url), vocab_size, index_dtype)
    keys = parsed.keys
    if keys.size and keys.min() < 0:
        r = int(np.flatnonzero(keys < 0)[0])
        raise DataFormatError(f"{name}: record {r} (0-based): negative key {int(keys[r])}")
    if n_rows is not None and keys.size and keys.max() >= n_rows:
        r = int(np.flatnonzero(keys >= n_rows)[0])
        raise DataFormatError(
            f"{name}: record {r} (0-based): key {int(keys[r])} is >= n_rows={n_rows}. Were "
            "rows and columns swapped (e.g. users_for_item read as items_for_user), or is "
            "n_rows wrong?"
        )
    return parsed


def shard_info(parsed) -> np.ndarray:
    """[records, stored entries, largest key, largest column index] (−1 when empty)."""
    keys, idx = parsed.keys, parsed.indices
    return np.array(
        [
            keys.shape[0],
            idx.shape[0],
            int(keys.max()) if keys.size else -1,
            int(idx.max()) if idx.size else -1,
        ],
        dtype=np.int64,
    )


def shard_counts(parsed, edges: np.ndarray) -> np.ndarray:
    """The shard's records (row 0) and stored entries (row 1) in each partition, whose keys
    ``edges`` bound."""
    part = np.searchsorted(edges, parsed.keys, side="right") - 1
    n = edges.shape[0] - 1
    return np.stack(
        [
            np.bincount(part, minlength=n)[:n],
            np.bincount(part, weights=parsed.counts, minlength=n)[:n].astype(np.int64),
        ]
    )


def shard_piece(parsed, lo: int, hi: int) -> dict:
    """The shard's records with ``lo <= key < hi`` (run where the shard was parsed)."""
    keys = parsed.keys
    pick = np.flatnonzero((keys >= lo) & (keys < hi))
    entry = np.repeat((keys >= lo) & (keys < hi), parsed.counts)
    return {
        "name": parsed.name,
        "records": pick,
        "keys": keys[pick],
        "counts": parsed.counts[pick],
        "indices": parsed.indices[entry],
        "bits": parsed.bits[entry],
    }


def fingerprint(indptr, indices, bits, lo: int, by_rows: bool) -> int:
    """Σ over entries of a 64-bit hash of (user, item, float32 bits of the value), mod 2⁶⁴:
    equal for the rows records and the columns records of the same matrix, whatever the
    partitions; different ones collide with probability about 2⁻⁶⁴."""
    rows = np.repeat(np.arange(lo, lo + indptr.shape[0] - 1, dtype=np.uint64), np.diff(indptr))
    cols = indices.astype(np.uint64)
    users, items = (rows, cols) if by_rows else (cols, rows)
    with np.errstate(over="ignore"):
        h = _mix(users * np.uint64(0x9E3779B97F4A7C15) + items)
        h = _mix(h ^ (bits.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)))
        return int(np.sum(h, dtype=np.uint64))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (wrapping uint64 arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def assemble_part(lo: int, hi: int, by_rows: bool, full_shape: tuple[int, int], *pieces):
    """Rows ``lo:hi`` (CSR, float32 values) from the shards' pieces, in file order.

    A key in two records is the reader's DataFormatError.
    """
    n_cols = full_shape[1] if by_rows else full_shape[0]
    n = hi - lo
    if pieces:
        keys = np.concatenate([p["keys"] for p in pieces])
        counts = np.concatenate([p["counts"] for p in pieces])
        idx = np.concatenate([p["indices"] for p in pieces])
        bits = np.concatenate([p["bits"] for p in pieces])
    else:
        keys = counts = np.zeros(0, np.int64)
        idx, bits = np.zeros(0, np.int64), np.zeros(0, np.uint32)
    order = np.argsort(keys, kind="stable")
    dup = np.flatnonzero(keys[order[1:]] == keys[order[:-1]])
    if dup.size:
        j = dup[np.argmin(order[dup + 1])]
        places = [(p["name"], r) for p in pieces for r in p["records"].tolist()]
        (name1, r1), (name2, r2) = places[int(order[j])], places[int(order[j + 1])]
        raise DataFormatError(
            f"{name2}: record {r2} (0-based): duplicate key {int(keys[order[j + 1]])}, "
            f"already the key of record {r1} (0-based) of {name1}"
        )
    row_nnz = np.zeros(n, dtype=np.int64)
    row_nnz[keys - lo] = counts
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    if not np.all(keys[1:] > keys[:-1]):
        from walsrec.data.tfrecord import scatter_rows

        offsets = np.zeros(keys.shape[0], dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        out_idx, out_bits = np.empty_like(idx), np.empty_like(bits)
        scatter_rows(keys - lo, offsets, counts, idx, bits, indptr, out_idx, out_bits)
        idx, bits = out_idx, out_bits
    part = sp.csr_matrix((bits.view(np.float32), idx, indptr), shape=(n, n_cols), copy=False)
    part.has_sorted_indices = True
    return part


def part_fingerprint(part, lo: int, by_rows: bool) -> tuple[int, int]:
    """(stored entries, :func:`fingerprint`) of a partition assembled from TFRecords."""
    bits = np.ascontiguousarray(part.data, dtype=np.float32).view(np.uint32)
    return int(part.nnz), fingerprint(part.indptr, part.indices, bits, lo, by_rows)


def renumber(part: Part) -> Part:
    """The partition with its column indices renumbered into its touched set.

    ``indices[p]`` becomes the position of the original index in ``part.touched``, so that
    the half-steps read a compact matrix of only the fixed rows it touches (in ``touched``
    order). The kernels see the same rows in the same order: the results are identical.
    The other arrays are shared with ``part`` (same worker), not copied.
    """
    side = part.side
    local = np.searchsorted(part.touched, side.indices).astype(side.indices.dtype)
    return Part(side.with_indices(local), part.touched, renumbered=True)


def side_stats(part: Part, w0: float, fixed_edges: np.ndarray) -> np.ndarray:
    """One partition at a glance, float64: [Σ_obs (W − w0), stored entries, itemsize of its
    indices, then per fixed block (``fixed_edges`` bounds them) the number of that block's
    rows it touches]."""
    side = part.side
    counts = np.diff(np.searchsorted(part.touched, fixed_edges))
    head = [
        side.sum_w_excess(w0),
        float(side.indices.shape[0]),
        float(side.indices.dtype.itemsize),
    ]
    return np.concatenate([head, counts]).astype(np.float64)


def touched_of(part: Part) -> np.ndarray:
    """The partition's touched other-side indices (sorted), to send to the blocks' owners."""
    return part.touched


def rows_in(touched: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The touched indices in ``lo:hi``, relative to ``lo``: the rows to take from block lo:hi."""
    a, b = np.searchsorted(touched, [lo, hi])
    return touched[a:b] - touched.dtype.type(lo)


def take(block: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of a factor block (run where the block lives; only they travel)."""
    return np.ascontiguousarray(block[rows])


def init_block(kind: str, state: dict, n: int, k: int, init_std: float, dtype: str):
    """``n`` rows of initial factors drawn from a generator restored to ``state``.

    The client advanced its own generator past the earlier rows, so the blocks together are
    exactly ``WALS.initialize``'s draws.
    """
    if kind == "RandomState":
        rng = np.random.RandomState()
        rng.set_state(state)
    else:
        bitgen = getattr(np.random, state["bit_generator"])()
        bitgen.state = state
        rng = np.random.Generator(bitgen)
    return (rng.standard_normal((n, k)) * init_std).astype(np.dtype(dtype))


def load_block(path: str, lo: int, hi: int, dtype: str):
    """Rows ``lo:hi`` of a factor matrix saved as .npy (a checkpoint), path or URL."""
    from walsrec.distributed._storage import npy_rows

    return np.asarray(npy_rows(path, lo, hi), dtype=np.dtype(dtype))


def load_block_rows(blocks, lo: int, hi: int, dtype: str):
    """Rows ``lo:hi`` of a factor matrix saved as row blocks (a checkpoint the workers
    wrote), each block read checked against its manifest entry."""
    return np.asarray(blocks.rows(lo, hi), dtype=np.dtype(dtype))


def write_block(block, directory: str, index: int, lo: int) -> dict:
    """Write a factor block as block ``index`` of the row blocks at ``directory``; its
    manifest entry comes back."""
    from walsrec.data.row_blocks import write_dense_block

    return write_dense_block(directory, index, lo, block)


def write_counts_block(part: Part, directory: str, index: int, lo: int) -> dict:
    """An item partition's number of training users per item (the popularity), as block
    ``index`` (float64, as the single machine's ``item_popularity``)."""
    from walsrec.data.row_blocks import write_dense_block

    return write_dense_block(directory, index, lo, part.side.counts.astype(np.float64))


def write_rows_block(
    directory: str, name: str, lo: int, hi: int, full_shape: tuple, nnz: int, out: str, index: int
) -> dict:
    """Rows ``lo:hi`` of the stored training matrix (read again from shared storage, with
    their values) as CSR block ``index`` at ``out``."""
    from walsrec.data.row_blocks import write_csr_block

    part = load_part(directory, name, lo, hi, True, full_shape, nnz)
    return write_csr_block(out, index, lo, part)


def index_ids_block(out: str, index: int, lo: int, hi: int) -> dict:
    """Ids ``lo:hi`` of a vocabulary whose ids are the indices, as text block ``index``."""
    from walsrec.data.row_blocks import write_text_block

    return write_text_block(out, index, lo, [str(i) for i in range(lo, hi)])


def text_digest(path: str) -> str:
    """SHA-256 of a text file's bytes, or of a text row-block folder's blocks in order
    (the same lines give the same digest either way), streamed."""
    import hashlib
    from pathlib import Path

    from walsrec.data.row_blocks import is_row_blocks, open_row_blocks

    digest = hashlib.sha256()
    if is_row_blocks(path):
        blocks = open_row_blocks(path, "text")
        files = [blocks.verified_file(i, "text") for i in range(len(blocks.blocks))]
    else:
        files = [Path(path)]
    for name in files:
        with open(name, "rb") as f:
            for line in f:  # the lines, whatever their ends (\r\n, none at the end)
                digest.update(line.rstrip(b"\n").removesuffix(b"\r") + b"\n")
    return digest.hexdigest()


def check_vocabulary(path: str, n: int, name: str) -> int:
    """Read a vocabulary file as one machine reads it (UTF-8, one id per line, no id twice:
    :meth:`Vocabulary.load <walsrec.data.vocabulary.Vocabulary.load>`), here on a worker,
    and hold it to the ``n`` ids of the training matrix."""
    from walsrec.data.vocabulary import Vocabulary

    found = len(Vocabulary.load(path, name))
    if found != n:
        raise DataFormatError(
            f"{path}: {found:,} ids where the training matrix has {n:,} {name}; the data is "
            "inconsistent."
        )
    return found


def copy_vocabulary(source: str | None, out: str, n: int) -> int:
    """Copy a vocabulary file to ``out`` (written under a temporary name, then renamed),
    streaming, checking it has ``n`` lines; ``source`` None writes the ids "0" … "n-1"."""
    import os
    from pathlib import Path

    from walsrec._files import temp_name

    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out_path)
    lines, last = 0, b"\n"
    try:
        with open(tmp, "wb") as dst:
            if source is None:
                for lo in range(0, n, 1 << 16):
                    dst.write("".join(f"{i}\n" for i in range(lo, min(n, lo + (1 << 16)))).encode())
                lines = n
            else:
                with open(source, "rb") as src:
                    while piece := src.read(1 << 22):
                        lines += piece.count(b"\n")
                        last = piece[-1:]
                        dst.write(piece)
                if last != b"\n":  # a last line without its newline
                    lines += 1
                    dst.write(b"\n")
        if lines != n:
            raise DataFormatError(
                f"{source}: {lines} lines where the model has {n} ids; the vocabulary does not "
                "belong to this data."
            )
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return lines


def split_lines(source: str, out: str, bounds: list) -> list:
    """Copy a vocabulary file into text blocks of ``bounds`` lines each, streaming (the
    file is never held whole); the blocks' manifest entries come back."""

    entries = []
    try:
        return _split_lines(source, out, bounds, entries)
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{source}: not UTF-8 text ({exc}).") from None


def _split_lines(source: str, out: str, bounds: list, entries: list) -> list:
    from walsrec.data.row_blocks import write_text_block

    with open(source, encoding="utf-8", newline="\n") as f:
        for index, (lo, hi) in enumerate(bounds):
            lines = []
            for _ in range(hi - lo):
                line = f.readline()
                if not line:
                    raise DataFormatError(
                        f"{source}: {lo + len(lines)} lines where the model has {bounds[-1][1]} "
                        "ids; the vocabulary does not belong to this data."
                    )
                lines.append(line.rstrip("\n").removesuffix("\r"))
            entries.append(write_text_block(out, index, lo, lines))
        if f.readline():
            raise DataFormatError(
                f"{source}: more lines than the model's {bounds[-1][1] if bounds else 0} ids; "
                "the vocabulary does not belong to this data."
            )
    return entries


def gram(block) -> np.ndarray:
    """BᵀB of a factor block, in its dtype (as the single machine), returned as float64."""
    return halfstep.gramian(block)


def reg(part: Part, block) -> float:
    """Σ_i λ_i ‖b_i‖² of a partition."""
    return halfstep.regularization_term(part.side.lam, block)


def rotate(block, q, settings: Settings):
    """block @ Q: the fixed factors in the eigenbasis of their Gramian."""
    return halfstep.matmul(block, q, settings.n_threads)


def concat(*blocks):
    return np.ascontiguousarray(np.concatenate(blocks, axis=0))


def _fixed(pieces, k: int, dtype) -> np.ndarray:
    """The fixed rows a partition reads: its pieces (whole blocks or taken rows) in order."""
    if not pieces:
        return np.empty((0, k), dtype=dtype)
    if len(pieces) == 1:  # a worker's concatenation of the whole factor: read, not copied
        return np.ascontiguousarray(pieces[0])
    return concat(*pieces)


def solve(
    part: Part, start, g, q, settings: Settings, lo: int, which: str, *pieces, rows=None
) -> dict:
    """One partition's half-step: new factors, summed loss terms and the new Gramian part.

    ``rows`` (local to the partition, sorted): solve those only (a batch step); the other
    rows keep their factors and the terms are those of the rows solved.

    ``pieces``, concatenated, are the fixed factors rotated by ``q`` (eigenvectors of their
    Gramian, eigenvalues ``g``): all of them, or only the rows the partition touches
    (``part.touched``, which its indices were renumbered into: :func:`renumber`). The
    kernels read row ``side.indices[p]`` of it: exactly the rows of the single machine's
    rotated factors.
    """
    axis = "row" if which == "user" else "column"
    fixed = FixedSide.from_rotation(_fixed(pieces, q.shape[0], q.dtype), g, q)
    if rows is None:
        rows = np.arange(part.side.n_rows, dtype=np.int64)
        new, row_loss = halfstep.solve_rows(
            settings, part.side, rows, fixed, start, axis, labels=rows + lo
        )
    else:
        solved, row_loss = halfstep.solve_rows(
            settings, part.side, rows, fixed, start[rows], axis, labels=rows + lo
        )
        new = np.array(start)
        new[rows] = solved
    return {"factors": new, "terms": row_loss.sum(axis=0), "gram": gram(new)}


def pick(result: dict, key: str):
    return result[key]


def summary(result: dict) -> np.ndarray:
    """What the client needs of a solve: [obs, reg, Gramian.ravel()...] (float64)."""
    return np.concatenate([result["terms"], result["gram"].ravel()])


def observed_loss(part: Part, block, settings: Settings, *pieces) -> float:
    """Σ over the partition's stored entries of W (A − p)² − w0 p² (the kernels' loss);
    ``pieces`` are the other side's factor rows the partition reads (see :func:`solve`)."""
    right = _fixed(pieces, block.shape[1], block.dtype)
    return float(halfstep.observed_loss(settings, part.side, block, right).sum())


def predict_shard(
    model_path: str,
    out_path: str,
    lo: int,
    hi: int,
    k: int,
    fmt: str,
    exclude_seen: bool,
    n_jobs: int | None,
) -> int:
    """Top-k of users ``lo:hi`` written to ``out_path`` (temporary name, then renamed).

    Reads only those users' rows of the export (with every item's factors and popularity):
    from a sharded export, the blocks they span."""
    from pathlib import Path

    from walsrec.serving.export import read_export_rows
    from walsrec.serving.model import Recommender, check_scores_fit
    from walsrec.serving.predict import write_top_k

    model = Recommender(read_export_rows(model_path, lo, hi))
    check_scores_fit(model)
    users = np.arange(0, hi - lo, dtype=np.int64)
    write_top_k(
        model, Path(out_path), users, k=k, format=fmt, exclude_seen=exclude_seen, n_jobs=n_jobs
    )
    return int(users.size)


# --------------------------------------------------------------------------- evaluation


def nnz_of(part) -> int:
    return int(part.nnz)


def popularity_block(part: Part) -> np.ndarray:
    """An item partition's training users per item as an (n, 1) float64 "factor" block:
    the most-popular baseline scored as a model (every user's factor is 1)."""
    return part.side.counts.astype(np.float64).reshape(-1, 1)


def ones_block(n: int) -> np.ndarray:
    return np.ones((n, 1), dtype=np.float64)


def evaluate_part(
    part: Part,
    user_block,
    heldout,
    lo: int,
    k: int,
    names: list,
    ndcg_gain: str,
    chunk_size: int | None,
    n_jobs: int | None,
    *item_blocks,
) -> dict:
    """One user partition's share of :func:`walsrec.metrics.evaluate`: sums, not means
    (:func:`walsrec.metrics.partial.part_sums`). The partition's training rows (its
    indices mapped back to item indices) are excluded from its users' rankings."""
    from walsrec.metrics.partial import part_sums

    items = _fixed(item_blocks, user_block.shape[1], user_block.dtype)
    indices = part.other_indices()
    train = sp.csr_matrix(
        (np.ones(indices.shape[0], np.float32), indices, part.side.indptr),
        shape=(part.side.n_rows, items.shape[0]),
    )
    return part_sums(
        user_block,
        items,
        train,
        heldout,
        k=k,
        names=names,
        ndcg_gain=ndcg_gain,
        chunk_size=chunk_size,
        n_jobs=n_jobs,
        owner="evaluate_dask",
        first_user=lo,
    )


def write_part(part, paths: dict, lo: int, offset: int) -> int:
    """Write a row partition into preallocated native .npy files (rows ``lo:``, entries
    from ``offset``): disjoint byte ranges, so partitions write concurrently."""
    n = part.shape[0]
    ptr = np.lib.format.open_memmap(paths["indptr"], mode="r+")
    ptr[lo + 1 : lo + n + 1] = offset + part.indptr[1:]
    if lo == 0:
        ptr[0] = 0
    ptr.flush()
    for key, values in (("indices", part.indices), ("data", part.data)):
        if values.shape[0]:
            out = np.lib.format.open_memmap(paths[key], mode="r+")
            out[offset : offset + values.shape[0]] = values
            out.flush()
            del out
    return int(part.nnz)
