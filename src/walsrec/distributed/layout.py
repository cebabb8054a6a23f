"""Partitions on a Dask cluster: which rows each task holds, on which worker, and how the
partitions of a matrix are loaded there from native files or TFRecord shards.

:class:`Cluster` wraps a client with the bookkeeping every Dask job here shares (tasks
pinned to a worker but allowed to move, results gathered with the first failure in list
order, traffic counted). :func:`plan` cuts users and items into contiguous partitions and
places them; :func:`load_native_parts`, :func:`parse_shards` and :func:`assemble_side`
build the partitions on their workers (nothing of the matrix passes through the client).
:class:`~walsrec.distributed.wals.DaskWALS`, :func:`~walsrec.distributed.evaluate.evaluate_dask`
and :func:`~walsrec.distributed.write_native.write_native_dask` all load data this way.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from walsrec.data.tfrecord import inferred_size
from walsrec.distributed import _tasks
from walsrec.distributed.sources import NativeSource, TFRecordSource
from walsrec.errors import DataFormatError

__all__ = [
    "Cluster",
    "Layout",
    "assemble_side",
    "bounds",
    "check_transpose",
    "load_native_parts",
    "parse_shards",
    "parse_side",
    "part_nnz",
    "plan",
]

SIDES = ("user", "item")


class Cluster:
    """A ``distributed.Client`` and the traffic counted on it (``stats``: bytes sent to,
    gathered from and moved between workers, counted from the placement given to tasks)."""

    def __init__(self, client, stats: dict | None = None) -> None:
        self.client = client
        self.stats = stats if stats is not None else new_stats()

    def count(self, key: str, *arrays) -> None:
        for a in arrays:
            self.stats[key] += int(np.asarray(a).nbytes)

    def submit(self, fn, *args, worker=None, **kwargs):
        """A task, on ``worker`` when given (allowed elsewhere, e.g. after it is lost)."""
        extra = {}
        if worker is not None:
            extra = {"workers": [worker], "allow_other_workers": True}
        return self.client.submit(fn, *args, pure=False, **extra, **kwargs)

    def gather(self, futures: list) -> list:
        """The futures' results; a failed task raises its error, the first failure in list
        order (partition or file order) rather than the first to happen: the same error as
        the single-machine reader or solver reports."""
        from distributed import wait

        wait(futures)
        for f in futures:
            if f.status == "error":
                f.result()
        return self.client.gather(futures)

    def workers(self) -> list[str]:
        from walsrec.distributed.cluster import workers

        return workers(self.client)


def new_stats() -> dict:
    return {"bytes_to_workers": 0, "bytes_from_workers": 0, "bytes_between_workers": 0}


def bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering 0..n (at most n of them, at least one)."""
    parts = max(1, min(parts, n)) if n else 1
    edges = np.linspace(0, n, parts + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


@dataclass(frozen=True)
class Layout:
    """The partitions of both sides: ``bounds[side]`` the row ranges, ``placement[side]``
    the worker of each (``side`` "user" or "item"); ``source`` the data, shape known."""

    source: NativeSource | TFRecordSource
    bounds: dict[str, list[tuple[int, int]]]
    placement: dict[str, list[str]]

    def edges(self, side: str) -> np.ndarray:
        b = self.bounds[side]
        return np.array([lo for lo, _ in b] + [b[-1][1]])


def plan(source, workers: list[str], partitions: int | None) -> Layout:
    """``partitions`` per side (default two per worker), placed round-robin."""
    n_users, n_items = source.shape
    parts = partitions or 2 * max(1, len(workers))
    cuts = {"user": bounds(n_users, parts), "item": bounds(n_items, parts)}
    placement = {
        side: [workers[i % len(workers)] for i in range(len(b))] for side, b in cuts.items()
    }
    return Layout(source, cuts, placement)


def load_native_parts(
    cl: Cluster, layout: Layout, directory: str, name: str, side: str, nnz: int
) -> list:
    """The partitions of ``side`` read by their workers from the native matrix
    ``directory/name`` (user_items for "user", item_users for "item")."""
    shape = tuple(layout.source.shape)
    return [
        cl.submit(
            _tasks.load_part,
            directory,
            name,
            lo,
            hi,
            side == "user",
            shape,
            nnz,
            worker=w,
            retries=2,
        )
        for (lo, hi), w in zip(layout.bounds[side], layout.placement[side], strict=True)
    ]


def parse_side(cl: Cluster, files, urls, vocab: int, keys, workers: list[str]) -> tuple:
    """One task per TFRecord shard of a side, placed round-robin on ``workers``: records
    keyed below ``keys`` with indices below ``vocab``. Returns (futures, their workers)."""
    placed = [workers[i % len(workers)] for i in range(len(files))]
    futures = [
        cl.submit(_tasks.parse_shard, f, u, vocab, keys, worker=w, retries=2)
        for f, u, w in zip(files, urls, placed, strict=True)
    ]
    return futures, placed


def parse_shards(cl: Cluster, source: TFRecordSource, workers: list[str]):
    """Parse every TFRecord shard in its own task; infer the shape where not given.

    Returns ({side: (futures, their workers)}, ``source`` with its shape and nnz)."""
    n_rows, n_cols = source.shape
    unbounded = 2**62  # as walsrec.training.inputs: width from the records
    shards = {
        "user": parse_side(
            cl, source.rows_files, source.rows_url, n_cols or unbounded, n_rows, workers
        ),
        "item": parse_side(
            cl, source.cols_files, source.cols_url, n_rows or unbounded, n_cols, workers
        ),
    }
    info = {
        side: np.array(
            cl.gather(
                [
                    cl.submit(_tasks.shard_info, f, worker=w)
                    for f, w in zip(*shards[side], strict=True)
                ]
            )
        ).reshape(-1, 4)
        for side in shards
    }
    cl.count("bytes_from_workers", *info.values())
    nnz = int(info["user"][:, 1].sum())
    files = {"user": source.rows_files, "item": source.cols_files}
    if n_rows is None:
        n_rows = _implied(info, files, "user", "item")
    if n_cols is None:
        n_cols = _implied(info, files, "item", "user")
    return shards, dataclasses.replace(source, shape=(n_rows, n_cols), nnz=nnz)


def _implied(info: dict, files: dict, keys_side: str, index_side: str) -> int:
    """The size the records imply, within the reader's limit on inferred sizes (one bad
    key must not make every worker allocate gigabytes): the keys of one side's records
    (counted per record) and the indices in the other side's (per value)."""
    size = 0
    for side, c, count, parameter in (
        (keys_side, 2, int(info[keys_side][:, 0].sum()), "n_rows"),
        (index_side, 3, int(info[index_side][:, 1].sum()), "vocab_size"),
    ):
        if len(info[side]):
            shard = int(np.argmax(info[side][:, c]))
            where = f"{files[side][shard]} (its largest {'key' if c == 2 else 'index'})"
            size = max(size, inferred_size(int(info[side][shard, c]), count, parameter, where))
    return size


def assemble_side(cl: Cluster, shards: tuple[list, list], layout: Layout, side: str) -> list:
    """Each partition of ``side`` built on its worker from the pieces of the shards
    (``(futures, their workers)``) it spans; the pieces move worker to worker (counted)."""
    futures, placed = shards
    full_shape = tuple(layout.source.shape)
    counts = cl.gather(
        [
            cl.submit(_tasks.shard_counts, f, layout.edges(side), worker=w)
            for f, w in zip(futures, placed, strict=True)
        ]
    )
    cl.count("bytes_from_workers", *counts)
    parts = []
    for p, ((lo, hi), w_p) in enumerate(
        zip(layout.bounds[side], layout.placement[side], strict=True)
    ):
        pieces = []
        for f, w_s, c in zip(futures, placed, counts, strict=True):
            if c[0, p] == 0:
                continue
            pieces.append(cl.submit(_tasks.shard_piece, f, lo, hi, worker=w_s))
            if w_s != w_p:  # entries (index 8 B, value 4 B) and the record arrays
                cl.stats["bytes_between_workers"] += int(12 * c[1, p] + 24 * c[0, p])
        parts.append(
            cl.submit(
                _tasks.assemble_part,
                lo,
                hi,
                side == "user",
                full_shape,
                *pieces,
                worker=w_p,
                retries=2,
            )
        )
    return parts


def check_transpose(cl: Cluster, layout: Layout, raw: dict) -> None:
    """The rows and columns records must hold the same matrix (as on one machine)."""
    sums = {}
    for side in SIDES:
        parts = cl.gather(
            [
                cl.submit(_tasks.part_fingerprint, part, lo, side == "user", worker=w)
                for part, (lo, _), w in zip(
                    raw[side], layout.bounds[side], layout.placement[side], strict=True
                )
            ]
        )
        sums[side] = (sum(n for n, _ in parts), sum(h for _, h in parts) % 2**64)
    if sums["user"] != sums["item"]:
        src = layout.source
        raise DataFormatError(
            f"The train rows records ({src.rows_pattern}) and columns records "
            f"({src.cols_pattern}) do not hold the same matrix: {sums['user'][0]:,} entries "
            f"against {sums['item'][0]:,} in the transposed records, in different places. "
            "Are the items_for_user and users_for_item files swapped, or from different "
            "data?"
        )


def part_nnz(cl: Cluster, parts: list, placement: list[str]) -> list[int]:
    """The stored entries of each partition (counted where it lives)."""
    return cl.gather(
        [cl.submit(_tasks.nnz_of, x, worker=w) for x, w in zip(parts, placement, strict=True)]
    )
