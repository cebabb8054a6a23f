"""``DaskWALS``: the WALS estimator with its half-steps run on a Dask cluster.

Layout of one fit:

* Users and items are cut into contiguous index ranges (partitions). Each partition of the
  training matrix, in both orientations, is loaded by a worker task straight from shared
  storage: the native ``.npy`` files (by path or fsspec URL; memory-mapped when local, else
  by byte range, only the partition's slice read), or the course's TFRecord shards (one
  parsing task per shard, the partitions assembled from the shards' pieces worker to
  worker). Nothing of the matrix passes through the client.
* The factor blocks are task results that stay on the workers from sweep to sweep; the client
  keeps only their futures (and two k × k Gramians).
* When a partition is loaded, its worker computes the sorted set of other-side indices it
  touches and keeps it with the partition (renumbering the partition's indices into it).
* A half-step (say users, items fixed): the client eigendecomposes the item Gramian (k × k,
  summed from per-partition parts at the end of the previous half-step) and sends Q; the
  workers rotate their item blocks (Ṽ = VQ) in place, and every user partition solves its
  rows with the single-machine kernels against the rows of Ṽ it touches: the owner of each
  item block takes those rows out of its block and they move worker to worker, never
  through the client. When the rows a worker's partitions touch add up to more than
  ``ship_whole_above`` × all items, that worker receives the whole Ṽ instead (each block
  sent once and concatenated there, shared by its partitions). Each solve returns to the
  client only its loss terms and the Gramian part of its new block (k² + 2 floats).
* Initial factors are drawn exactly as ``WALS.initialize`` draws them: the client walks its
  generator over the rows and hands each block task the generator's state, so the draws
  happen on the workers and equal the single-machine ones.

Every result can be recomputed from its lineage (storage, generator states, Q), so a worker
lost mid-sweep costs a recomputation, not the fit. :meth:`DaskWALS.load_factors` restarts the
lineage from factors saved on shared storage (a checkpoint), which bounds that cost.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from walsrec._checks import check_weight_vector, is_int, is_real
from walsrec.data.row_blocks import is_row_blocks, open_row_blocks
from walsrec.distributed import _storage, _tasks, layout
from walsrec.distributed.layout import Cluster
from walsrec.distributed.sources import (
    NativeSource,
    PartsSource,
    TFRecordSource,
    location,
    native_source,
)
from walsrec.errors import InvalidParameterError, NotFittedError
from walsrec.model import halfstep
from walsrec.model.params import set_params
from walsrec.model.validation import check_params
from walsrec.model.wals import WALS, run_sweeps

__all__ = ["DaskWALS", "NativeSource", "native_source"]


_WALS_DEFAULTS = WALS().get_params()


class DaskWALS:
    """WALS whose half-steps run on a Dask cluster; same parameters, same factors.

    With the same seed and data, the factors equal :class:`~walsrec.model.wals.WALS`'s to
    rounding (the Gramians are summed from per-partition parts) and ``loss_`` matches.

    Parameters
    ----------
    embedding_dim, **params
        As :class:`~walsrec.model.wals.WALS`. ``n_jobs`` is the number of threads each task
        runs its kernels on (None: all the worker machine's cores).
    client : distributed.Client
        The cluster to run on. Required to fit.
    partitions : int or None, default=None
        Partitions per side; None: two per worker at ``open``.
    ship_whole_above : float >= 0, default=0.5
        The partitions placed on a worker read, in each half-step, only the fixed factor
        rows they touch (taken out of each block by the block's owner, one copy per
        partition) while those rows, summed over the worker's partitions, number at most
        ``ship_whole_above`` × the other side's rows; above that, the worker receives the
        whole fixed factor (each block once, concatenated once, shared by its partitions).
        0.5 leaves a margin for the per-partition copies and the extra tasks of touched
        rows; 0 always ships the whole factor, ``inf`` always touched rows. The factors
        are identical either way.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray
        Gathered from the workers on access (cached until the factors change).
    loss_, rwse_, n_iter_, weighting_stats_ : as WALS.
    stats_ : dict
        Counted traffic: ``bytes_to_workers`` (arrays in task arguments, client → cluster),
        ``bytes_from_workers`` (results gathered), ``bytes_between_workers`` (fixed factor
        rows, and once at ``open`` the touched index sets, sent from the worker holding them
        to another one, counted from the placement the tasks are given; Dask may place a
        task elsewhere, e.g. after a worker is lost).

    Examples
    --------
    >>> from distributed import Client, LocalCluster  # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> model = DaskWALS(16, client=client, sweeps=5, random_state=0)  # doctest: +SKIP
    >>> model.fit("data/")  # a prepared DATA_DIR on shared storage  # doctest: +SKIP
    """

    def __init__(
        self, embedding_dim=32, *, client=None, partitions=None, ship_whole_above=0.5, **params
    ):
        unknown = sorted(set(params) - set(_WALS_DEFAULTS))
        if unknown:
            raise TypeError(
                f"DaskWALS.__init__() got an unexpected keyword argument {unknown[0]!r}"
            )
        for name, default in _WALS_DEFAULTS.items():
            setattr(self, name, params.get(name, default))
        self.embedding_dim = embedding_dim
        self.client = client
        self.partitions = partitions
        self.ship_whole_above = ship_whole_above

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters: WALS's, then ``client``, ``partitions`` and
        ``ship_whole_above``."""
        return {
            **self._wals_params(),
            "client": self.client,
            "partitions": self.partitions,
            "ship_whole_above": self.ship_whole_above,
        }

    def set_params(self, **params: Any) -> DaskWALS:
        """Set constructor parameters, as scikit-learn's ``set_params``."""
        return set_params(self, params)

    def _wals_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _WALS_DEFAULTS}

    def _validate_params(self) -> None:
        check_params(self._wals_params())

    # ------------------------------------------------------------------ setup

    def _worker_params(self) -> halfstep.Settings:
        """The half-step's settings the tasks run with (``n_jobs``: each task's threads).

        Without the weight vectors: they reach the workers once, as a task's result handed
        to ``_tasks.make_side`` (which puts them back), not pickled into every task.
        """
        return halfstep.Settings.of(self.get_params(), row_weights=1.0, col_weights=1.0)

    @property
    def _bounds(self) -> dict[str, list[tuple[int, int]]]:
        """Each side's partitions' row ranges (the layout's)."""
        return self._layout.bounds

    @property
    def _placement(self) -> dict[str, list[str]]:
        """Each side's partitions' workers (the layout's)."""
        return self._layout.placement

    def _count(self, key: str, *arrays) -> None:
        self._cluster.count(key, *arrays)

    def _submit(self, fn, *args, worker=None, **kwargs):
        return self._cluster.submit(fn, *args, worker=worker, **kwargs)

    def _gather(self, futures: list) -> list:
        return self._cluster.gather(futures)

    def _workers(self) -> list[str]:
        return Cluster(self.client).workers()

    def open(self, source: NativeSource | str | os.PathLike, weights=None) -> DaskWALS:
        """Have the workers load the partitions of ``source`` (both orientations).

        Parameters
        ----------
        source : NativeSource, TFRecordSource, PartsSource, path or URL
            A prepared DATA_DIR (path or fsspec URL), :func:`native_source`'s answer or
            :func:`~walsrec.distributed.sources.tfrecord_source`'s, on shared storage; or
            partitions already on the workers
            (:class:`~walsrec.distributed.sources.PartsSource`).
            TFRecord shards are parsed one task each and assembled into the partitions on
            the workers; the rows and columns records must hold the same matrix.
        weights : NativeSource or None, default=None
            Per-entry observed weights (W_ij, replacing w0 + R_i·C_j·c(r_ij) as
            :meth:`WALS.fit <walsrec.model.wals.WALS.fit>`'s ``weights`` do): a native
            matrix with the data's sparsity pattern, in both orientations, on storage the
            workers read, e.g. ``save_csr(DIR, "weights", W)``, ``save_csr(DIR, "weights_t",
            W.T.tocsr())`` and ``native_source(DIR, "weights", "weights_t")``. Each
            partition's worker reads its slice and checks it against the data's.

        Returns
        -------
        self
        """
        if self.client is None:
            raise InvalidParameterError(
                "The 'client' parameter of DaskWALS must be a distributed.Client. Got None instead."
            )
        p = self.partitions
        if not (p is None or (is_int(p) and p >= 1)):
            raise InvalidParameterError(
                f"The 'partitions' parameter of DaskWALS must be None or an int >= 1. Got {p!r} "
                "instead."
            )
        whole = self.ship_whole_above
        if not (is_real(whole) and whole >= 0.0):
            raise InvalidParameterError(
                "The 'ship_whole_above' parameter of DaskWALS must be a float >= 0 (or inf). "
                f"Got {whole!r} instead."
            )
        self._validate_params()
        if isinstance(source, TFRecordSource) and not source.cols_files:
            raise InvalidParameterError(
                "The TFRecordSource given to DaskWALS.open must name users_for_item files "
                "(cols_pattern) too: the column half-steps read them. Got none."
            )
        raw = self._load(source)
        source = self.source_
        n_users, n_items = source.shape
        self._weights = self._check_weights(weights, "open")
        wparts = {"user": [None] * len(raw["user"]), "item": [None] * len(raw["item"])}
        if self._weights is not None:
            ws = self._weights
            wparts = {
                "user": layout.load_native_parts(
                    self._cluster, self._layout, ws.rows_dir, ws.rows_name, "user", ws.nnz
                ),
                "item": layout.load_native_parts(
                    self._cluster, self._layout, ws.cols_dir, ws.cols_name, "item", ws.nnz
                ),
            }
        rw = check_weight_vector(self.row_weights, "row_weights", n_users)
        cw = check_weight_vector(self.col_weights, "col_weights", n_items)
        weights = []
        for w in (rw, cw):
            if np.ndim(w) == 1:
                self._count("bytes_to_workers", w)
                w = self._submit(_tasks.const, w)
            weights.append(w)
        # per-entry weights replace the scheme's: no statistics to reduce (as WALS)
        stats = self._reduce_weighting_stats(raw if self._weights is None else None)
        params = self._worker_params()
        self._sides = {}
        for which, by_rows in (("user", True), ("item", False)):
            self._sides[which] = [
                self._submit(
                    _tasks.make_side,
                    part,
                    lo,
                    hi,
                    by_rows,
                    (n_users, n_items),
                    params,
                    *weights,
                    None if stats is None else stats[which][i],
                    wparts[which][i],
                    worker=w,
                    retries=2,
                )
                for i, (part, (lo, hi), w) in enumerate(
                    zip(raw[which], self._bounds[which], self._placement[which], strict=True)
                )
            ]
        self._plan_fixed_rows()
        self._blocks = None
        return self

    def _reduce_weighting_stats(self, raw: dict) -> dict | None:
        """BM25/TF-IDF's statistics of the training matrix, reduced on the workers.

        Each user partition sums its rows (s_i), each item partition counts its rows (n_j);
        the client receives one float per user partition (for s̄). The vectors a scheme
        needs are concatenated on a worker and sent worker to worker: n_j of every item to
        every partition, s_i of every user to the item partitions (BM25 only); a user
        partition uses its own s_i. Returns the ``stats`` argument of each partition's
        ``make_side`` task, or None for the other schemes.
        """
        from walsrec.model.weighting import needs_stats

        self.weighting_stats_ = None  # forget an earlier opening's
        if raw is None or not needs_stats(self.confidence):
            return None
        n_users, n_items = self.source_.shape
        own_sums = [
            self._submit(_tasks.row_sums, part, worker=w)
            for part, w in zip(raw["user"], self._placement["user"], strict=True)
        ]
        totals = self._gather(
            [
                self._submit(_tasks.total, x, worker=w)
                for x, w in zip(own_sums, self._placement["user"], strict=True)
            ]
        )
        self.stats_["bytes_from_workers"] += 8 * len(totals)
        total = float(sum(totals))
        mean = total / n_users if n_users else 1.0
        mean = mean if mean > 0 else 1.0  # as WeightingStats.mean_user_sum
        item_counts = self._submit(
            _tasks.concat,
            *[
                self._submit(_tasks.row_counts, part, worker=w)
                for part, w in zip(raw["item"], self._placement["item"], strict=True)
            ],
            worker=self._placement["item"][0],
        )
        user_sums = None
        if self.confidence == "bm25":
            user_sums = self._submit(_tasks.concat, *own_sums, worker=self._placement["user"][0])
        # traffic at open: the pieces to the concatenating worker, the vectors to the others
        workers = set(self._placement["user"]) | set(self._placement["item"])
        spread = max(0, len(workers) - 1)
        self.stats_["bytes_between_workers"] += 2 * spread * 8 * n_items
        if user_sums is not None:
            self.stats_["bytes_between_workers"] += 2 * spread * 8 * n_users
        common = {"n_users": n_users, "mean_user_sum": mean, "item_counts": item_counts}
        self._weighting_vectors = {"item_counts": item_counts, "user_sums": user_sums}
        self._own_sums = own_sums
        return {
            "user": [{**common, "own_sums": x} for x in own_sums],
            "item": [{**common, "user_sums": user_sums} for _ in raw["item"]],
        }

    @property
    def weighting_stats_(self):
        """BM25/TF-IDF's training statistics (gathered from the workers on first access;
        folding in new rows reads them). None for the other schemes."""
        if "weighting_stats_" in self.__dict__:
            return self.__dict__["weighting_stats_"]
        vectors = getattr(self, "_weighting_vectors", None)
        if vectors is None:
            return None
        from walsrec.model.weighting import WeightingStats

        counts = self._gather([vectors["item_counts"]])[0]
        sums = self._gather([self._submit(_tasks.concat, *self._own_sums)])[0]
        self._count("bytes_from_workers", counts, sums)
        stats = WeightingStats(int(self.source_.shape[0]), counts, sums)
        self.__dict__["weighting_stats_"] = stats
        return stats

    @weighting_stats_.setter
    def weighting_stats_(self, value) -> None:
        if value is None:
            self.__dict__.pop("weighting_stats_", None)
            self._weighting_vectors = None
        else:
            self.__dict__["weighting_stats_"] = value

    def _check_weights(self, weights, method: str):
        """``weights`` of ``method``: None, or a NativeSource of the opened data's shape
        and number of entries (its pattern is checked against the data's on the workers);
        after ``open``, only the opened weights (or None: the same) are accepted."""
        if method != "open":
            opened = getattr(self, "_weights", None)
            if weights is None or weights is opened or weights == opened:
                return opened
            raise InvalidParameterError(
                f"The 'weights' argument of DaskWALS.{method} must be None or the weights "
                f"given to open (the workers read those). Got {weights!r} instead."
            )
        if weights is None:
            return None
        if not isinstance(weights, NativeSource):
            raise InvalidParameterError(
                f"The 'weights' argument of DaskWALS.{method} must be None or a NativeSource "
                "of per-entry weights with the data's sparsity pattern, on storage the "
                "workers read (native_source(DIR, 'weights', 'weights_t')). Got "
                f"{type(weights).__name__} instead."
            )
        shape, nnz = tuple(self.source_.shape), int(self.source_.nnz)
        if tuple(weights.shape) != shape or int(weights.nnz) != nnz:
            raise InvalidParameterError(
                f"The 'weights' argument of DaskWALS.{method} must have the shape of the data "
                f"{shape} and its {nnz} stored entries. Got shape {tuple(weights.shape)} with "
                f"{weights.nnz} entries instead."
            )
        return weights

    def _load(self, source) -> dict:
        """Set ``source_``, the partitions' bounds and their workers, and have the workers
        load the stored matrix partition by partition, both orientations (dropped once the
        sides are built; a lost side is recomputed from them, and they from storage)."""

        self.stats_ = layout.new_stats()
        self._cluster = cl = Cluster(self.client, self.stats_)
        if isinstance(source, PartsSource):
            self.source_ = source
            self._layout = layout.Layout(source, dict(source.bounds), dict(source.placement))
            return dict(source.parts)
        workers = cl.workers()
        shards = None
        if isinstance(source, TFRecordSource):
            shards, source = layout.parse_shards(cl, source, workers)
        elif not isinstance(source, NativeSource):
            source = native_source(source)
        lay = layout.plan(source, workers, self.partitions)
        self.source_, self._layout = source, lay
        if shards is not None:
            raw = {side: layout.assemble_side(cl, shards[side], lay, side) for side in shards}
            layout.check_transpose(cl, lay, raw)
            return raw
        return {
            "user": layout.load_native_parts(
                cl, lay, source.rows_dir, source.rows_name, "user", source.nnz
            ),
            "item": layout.load_native_parts(
                cl, lay, source.cols_dir, source.cols_name, "item", source.nnz
            ),
        }

    def _plan_fixed_rows(self) -> None:
        """Per worker: whole fixed factor or touched rows (``ship_whole_above``), and for
        each partition reading touched rows, the rows of each block.

        Such a partition is renumbered into its touched set (a new side task, its arrays
        shared), and the set goes once to the owner of every fixed block it touches, which
        keeps the block-relative rows (``rows_in``) for all later half-steps; the client
        learns only the counts (for the decision and the traffic figures).
        """
        w0 = float(self.unobserved_weight)
        self._reads = {}
        for which in ("user", "item"):
            fixed = "item" if which == "user" else "user"
            edges = self._layout.edges(fixed)
            stats = self._gather(
                [
                    self._submit(_tasks.side_stats, s, w0, edges, worker=w)
                    for s, w in zip(self._sides[which], self._placement[which], strict=True)
                ]
            )
            self._count("bytes_to_workers", *([edges] * len(stats)))
            self._count("bytes_from_workers", *stats)
            if which == "user":
                self._sum_w_excess = float(sum(s[0] for s in stats))
            per_worker: dict[str, int] = {}
            for w_p, st in zip(self._placement[which], stats, strict=True):
                per_worker[w_p] = per_worker.get(w_p, 0) + int(st[3:].sum())
            limit = float(self.ship_whole_above) * self._n(fixed)
            reads = []
            for p, (side, w_p, st) in enumerate(
                zip(self._sides[which], self._placement[which], stats, strict=True)
            ):
                counts = st[3:].astype(np.int64)
                if per_worker[w_p] > limit:
                    reads.append({"whole": True, "counts": counts, "rows": None})
                    continue
                side = self._submit(_tasks.renumber, side, worker=w_p, retries=2)
                self._sides[which][p] = side
                touched = self._submit(_tasks.touched_of, side, worker=w_p)
                rows = []
                for (lo, hi), w_b, c in zip(
                    self._bounds[fixed], self._placement[fixed], counts, strict=True
                ):
                    rows.append(
                        self._submit(_tasks.rows_in, touched, lo, hi, worker=w_b) if c else None
                    )
                receivers = {
                    w_b
                    for w_b, c in zip(self._placement[fixed], counts, strict=True)
                    if c and w_b != w_p
                }
                self.stats_["bytes_between_workers"] += (
                    len(receivers) * int(counts.sum()) * int(st[2])
                )
                reads.append({"whole": False, "counts": counts, "rows": rows})
            self._reads[which] = reads

    def _n(self, which: str) -> int:
        return self.source_.shape[0 if which == "user" else 1]

    def _fixed_pieces(self, which: str, blocks: list) -> list[list]:
        """For each partition of ``which``: the futures of the fixed rows its task reads.

        ``blocks`` are the fixed side's blocks (rotated or not). Whole-factor partitions get
        one concatenation of all blocks per worker (each block sent to it once, from its
        owner: all to all, no single sender), shared by the partitions placed there; the
        others get, per touched block, a ``take`` task run on the block's owner. Counts the
        bytes that cross between workers as placed.
        """
        fixed = "item" if which == "user" else "user"
        row_bytes = self.embedding_dim * np.dtype(self.dtype).itemsize
        whole = {}  # worker -> its concatenation of the blocks
        out = []
        for w_p, read in zip(self._placement[which], self._reads[which], strict=True):
            if read["whole"]:
                if w_p not in whole:
                    whole[w_p] = self._submit(_tasks.concat, *blocks, worker=w_p)
                    for w_b, (lo, hi) in zip(
                        self._placement[fixed], self._bounds[fixed], strict=True
                    ):
                        if w_b != w_p:
                            self.stats_["bytes_between_workers"] += (hi - lo) * row_bytes
                pieces = [whole[w_p]]
            else:
                pieces = []
                for block, w_b, rows, c in zip(
                    blocks, self._placement[fixed], read["rows"], read["counts"], strict=True
                ):
                    if rows is None:
                        continue
                    pieces.append(self._submit(_tasks.take, block, rows, worker=w_b))
                    if w_b != w_p:
                        self.stats_["bytes_between_workers"] += int(c) * row_bytes
            out.append(pieces)
        return out

    def _check_open(self, method: str) -> None:
        if getattr(self, "_sides", None) is None:
            raise NotFittedError(
                f"This DaskWALS instance has no data: call 'fit' or 'open' before '{method}'."
            )

    def _check_initialized(self, method: str) -> None:
        if getattr(self, "_blocks", None) is None:
            raise NotFittedError(
                f"This DaskWALS instance is not fitted yet: call 'fit' or 'initialize' before "
                f"'{method}'."
            )

    def initialize(self, n_users: int | None = None, n_items: int | None = None) -> DaskWALS:
        """Draw the initial factors on the workers, exactly as ``WALS.initialize`` would.

        Parameters
        ----------
        n_users, n_items : int, optional
            Must equal the opened data's shape when given.

        Returns
        -------
        self
        """
        self._check_open("initialize")
        shape = self.source_.shape
        if (n_users, n_items) != (None, None) and (n_users, n_items) != shape:
            raise InvalidParameterError(
                f"The shape given to DaskWALS.initialize ({n_users}, {n_items}) must be the "
                f"opened data's {shape}."
            )
        rng = self.random_state
        if not isinstance(rng, np.random.Generator | np.random.RandomState):
            rng = np.random.default_rng(rng)
        kind = "RandomState" if isinstance(rng, np.random.RandomState) else "Generator"
        k = self.embedding_dim
        blocks = {}
        for which in ("user", "item"):
            futures = []
            for (lo, hi), w in zip(self._bounds[which], self._placement[which], strict=True):
                state = rng.get_state() if kind == "RandomState" else rng.bit_generator.state
                futures.append(
                    self._submit(
                        _tasks.init_block,
                        kind,
                        state,
                        hi - lo,
                        k,
                        float(self.init_std),
                        str(np.dtype(self.dtype)),
                        worker=w,
                    )
                )
                # advance the client's generator past these rows (in slices: bounded memory)
                for s in range(lo, hi, 1 << 16):
                    rng.standard_normal((min(hi, s + (1 << 16)) - s, k))
            blocks[which] = futures
        self._set_blocks(blocks)
        self.loss_ = []
        self.rwse_ = None
        self.n_iter_ = 0
        return self

    def save_factors(self, directory: str | os.PathLike) -> dict[str, str]:
        """Have the workers write the factors under ``directory`` as row blocks.

        ``directory/user_factors/`` and ``directory/item_factors/`` each get one block per
        partition, written by the worker that holds it, then a manifest (rows, sizes and
        SHA-256 of every block) written by this process once every block is complete
        (:mod:`walsrec.data.row_blocks`). No factor row passes through this process.

        Parameters
        ----------
        directory : path
            A folder on storage every worker writes and this process reads (shared).

        Returns
        -------
        dict
            ``{"user": path, "item": path}``: the two row-block folders.
        """
        from walsrec.data.row_blocks import write_manifest

        self._check_initialized("save_factors")
        base = location(directory)
        out = {}
        for which in ("user", "item"):
            folder = _storage.join(base, f"{which}_factors")
            entries = self._gather(
                [
                    self._submit(_tasks.write_block, b, folder, i, lo, worker=w)
                    for i, (b, (lo, _), w) in enumerate(
                        zip(
                            self._blocks[which],
                            self._bounds[which],
                            self._placement[which],
                            strict=True,
                        )
                    )
                ]
            )
            n = self.source_.shape[0 if which == "user" else 1]
            shape = (n, self.embedding_dim)
            write_manifest(folder, "dense", shape, str(np.dtype(self.dtype)), entries)
            out[which] = folder
        return out

    def load_factors(
        self, user_path: str | os.PathLike, item_path: str | os.PathLike, unchanged: bool = False
    ) -> DaskWALS:
        """Replace the factors by files on shared storage (e.g. a checkpoint's).

        Each worker reads its blocks' rows; the lineage of the factors restarts there, so a
        worker lost later is recovered from these files rather than from the first sweep.

        Parameters
        ----------
        user_path, item_path : path or fsspec URL
            ``user_factors.npy`` (n_users × k) and ``item_factors.npy`` (n_items × k), or
            folders of row blocks written by :meth:`save_factors` (local or shared paths;
            each block is checked against its manifest where it is read).
        unchanged : bool, default=False
            The files hold exactly the current factors (a checkpoint just written from
            them): keep the known Gramians, loss and gathered copies; only the lineage moves.

        Returns
        -------
        self
        """
        self._check_open("load_factors")
        k = self.embedding_dim
        blocks = {}
        dtype = str(np.dtype(self.dtype))
        for which, path in (("user", user_path), ("item", item_path)):
            path = location(path)
            stored = None
            if not _storage.is_url(path) and is_row_blocks(path):
                stored = open_row_blocks(path, "dense")
                shape = tuple(stored.shape)
            else:
                shape = _storage.npy_shape(path)
            n = self.source_.shape[0 if which == "user" else 1]
            if shape != (n, k):
                raise InvalidParameterError(
                    f"{path}: {which} factors of shape {shape} do not fit the data ({n} "
                    f"{which}s, embedding_dim {k})."
                )
            blocks[which] = [
                self._submit(_tasks.load_block_rows, stored, lo, hi, dtype, worker=w)
                if stored is not None
                else self._submit(_tasks.load_block, path, lo, hi, dtype, worker=w)
                for (lo, hi), w in zip(self._bounds[which], self._placement[which], strict=True)
            ]
        if unchanged and getattr(self, "_blocks", None) is not None:
            self._blocks = blocks
        else:
            self._set_blocks(blocks)
        return self

    def _set_blocks(self, blocks: dict) -> None:
        """New factor blocks of both sides: their Gramians come back (k × k each)."""
        self._blocks = blocks
        self._gathered = {}
        self._grams = {}
        self._gram_parts = {}
        for which in ("user", "item"):
            parts = self._gather(
                [
                    self._submit(_tasks.gram, b, worker=w)
                    for b, w in zip(blocks[which], self._placement[which], strict=True)
                ]
            )
            self._count("bytes_from_workers", *parts)
            self._gram_parts[which] = parts
            self._grams[which] = np.sum(parts, axis=0)
        self._loss_state = None
        self._reg = {}

    # ------------------------------------------------------------------ factors

    def _gather_factors(self, which: str) -> np.ndarray:
        if which not in self._gathered:
            parts = self._gather(self._blocks[which])
            self._count("bytes_from_workers", *parts)
            k = self.embedding_dim
            out = np.concatenate(parts, axis=0) if parts else np.empty((0, k), self.dtype)
            self._gathered[which] = out
        return self._gathered[which]

    @property
    def user_factors_(self) -> np.ndarray:
        """The user factors, gathered from the workers (n_users × k)."""
        self._check_initialized("user_factors_")
        return self._gather_factors("user")

    @property
    def item_factors_(self) -> np.ndarray:
        """The item factors, gathered from the workers (n_items × k)."""
        self._check_initialized("item_factors_")
        return self._gather_factors("item")

    # ------------------------------------------------------------------ half-steps

    def _half_step(self, which: str, target: np.ndarray | None = None) -> tuple[float, float]:
        """Solve every partition of ``which`` (or, with ``target``, those rows only: the
        partitions they fall in solve them, the others keep their block); returns
        (Σ observed terms, Σ reg terms) of the rows solved."""
        fixed = "item" if which == "user" else "user"
        dt = np.dtype(self.dtype)
        with_threads = self._worker_params()
        g, qd = halfstep.eigenbasis(self._grams[fixed], dt)
        rot = [
            self._submit(_tasks.rotate, b, qd, with_threads, worker=w)
            for b, w in zip(self._blocks[fixed], self._placement[fixed], strict=True)
        ]
        results, summaries, solved = [], [], []
        for (lo, hi), side, start, w, pieces in zip(
            self._bounds[which],
            self._sides[which],
            self._blocks[which],
            self._placement[which],
            self._fixed_pieces(which, rot),
            strict=True,
        ):
            rows = None
            if target is not None:
                rows = target[(target >= lo) & (target < hi)] - lo
                if rows.size == 0:  # nothing of this partition in the batch
                    results.append(None)
                    continue
                self._count("bytes_to_workers", rows)
            args = (side, start, g, qd, with_threads, lo, which, *pieces)
            r = self._submit(_tasks.solve, *args, rows=rows, worker=w)
            self._count("bytes_to_workers", g, qd, qd)  # rotate's Q and solve's g, Q
            results.append(r)
            solved.append(len(results) - 1)
            summaries.append(self._submit(_tasks.summary, r, worker=w))
        parts = self._gather(summaries)  # raises a worker's SingularSystemError
        self._count("bytes_from_workers", *parts)
        k = self.embedding_dim
        grams = list(self._gram_parts[which])  # the partitions left out keep theirs
        terms = np.zeros(2)
        for p, i in zip(parts, solved, strict=True):  # in partition order: deterministic
            terms += p[:2]
            grams[i] = p[2:].reshape(k, k)
        total = np.zeros((k, k))
        for gp in grams:
            total += gp
        new_blocks = dict(self._blocks)
        new_blocks[which] = [
            b if r is None else self._submit(_tasks.pick, r, "factors", worker=w)
            for r, b, w in zip(results, self._blocks[which], self._placement[which], strict=True)
        ]
        self._blocks = new_blocks
        self._gathered.pop(which, None)
        self._gram_parts[which] = grams
        self._grams[which] = total
        return float(terms[0]), float(terms[1])

    def _reg_side(self, which: str) -> float:
        parts = self._gather(
            [
                self._submit(_tasks.reg, s, b, worker=w)
                for s, b, w in zip(
                    self._sides[which], self._blocks[which], self._placement[which], strict=True
                )
            ]
        )
        return float(sum(parts))

    def _assemble(self, observed: float, reg: float) -> tuple[float, float, float]:
        """(L, data term, Σ_all W) by ``halfstep.assemble_loss``, from the Gramians."""
        n_users, n_items = self.source_.shape
        return halfstep.assemble_loss(
            observed,
            reg,
            float(self.unobserved_weight),
            self._grams["user"],
            self._grams["item"],
            n_users * n_items,
            self._sum_w_excess,
        )

    def _check_data_arg(self, user_items, method: str) -> None:
        if user_items is not None and tuple(user_items.shape) != tuple(self.source_.shape):
            raise InvalidParameterError(
                f"The 'user_items' argument of DaskWALS.{method} must have the opened data's "
                f"shape {self.source_.shape}. Got {tuple(user_items.shape)} instead."
            )

    def update_rows(self, user_items=None, rows=None, weights=None) -> DaskWALS:
        """Row half-step over all users on the cluster (the opened data).

        Parameters
        ----------
        user_items : sparse matrix or None
            Ignored but for a shape check (the workers read the opened source); accepted so
            that code written for WALS runs unchanged.
        rows : array-like of int or None, default=None
            Users to update (a batch: tf.contrib's row steps); None updates all. The
            partitions holding them solve them; the others keep their factors.
        weights : NativeSource or None
            None, or the per-entry weights given to :meth:`open` (the workers read those).

        Returns
        -------
        self
        """
        return self._step("user", user_items, rows, weights, "update_rows")

    def update_cols(self, user_items=None, cols=None, weights=None) -> DaskWALS:
        """Column half-step over all items on the cluster; see :meth:`update_rows`."""
        return self._step("item", user_items, cols, weights, "update_cols")

    def _step(self, which, user_items, subset, weights, method) -> DaskWALS:
        from walsrec.model.validation import check_indices

        self._check_initialized(method)
        self._check_data_arg(user_items, method)
        self._check_weights(weights, method)
        name = "rows" if which == "user" else "cols"
        if subset is not None:
            n = self._n(which)
            # the same rows, messages and factors as WALS (a row listed twice is solved once:
            # both of WALS's solves give it the same factors)
            self._half_step(which, np.unique(check_indices(subset, n, name, method)))
            # a batch changes a part of the side: the loss is recomputed when asked for
            self._reg, self._loss_state = {}, None
            return self
        observed, reg_new = self._half_step(which)
        other = "item" if which == "user" else "user"
        reg_other = self._reg_side(other) if self._reg.get(other) is None else self._reg[other]
        self._reg = {which: reg_new, other: reg_other}
        self._loss_state = self._assemble(observed, reg_new + reg_other)
        return self

    def _loss_now(self) -> tuple[float, float, float]:
        if self._loss_state is None:
            params = self._worker_params()
            obs = self._gather(
                [
                    self._submit(_tasks.observed_loss, s, b, params, *pieces, worker=w)
                    for s, b, w, pieces in zip(
                        self._sides["user"],
                        self._blocks["user"],
                        self._placement["user"],
                        self._fixed_pieces("user", self._blocks["item"]),
                        strict=True,
                    )
                ]
            )
            self._reg = {"user": self._reg_side("user"), "item": self._reg_side("item")}
            self._loss_state = self._assemble(
                float(sum(obs)), self._reg["user"] + self._reg["item"]
            )
        return self._loss_state

    def loss(self, user_items=None, weights=None) -> float:
        """The full objective L of the current factors on the opened data.

        ``user_items`` is only checked for its shape (see :meth:`update_rows`).
        """
        self._check_initialized("loss")
        self._check_data_arg(user_items, "loss")
        return self._loss_now()[0]

    def rwse(self, user_items=None, weights=None) -> float:
        """Root weighted squared error on the opened data (see :meth:`loss`)."""
        self._check_initialized("rwse")
        self._check_data_arg(user_items, "rwse")
        _, data, sum_w = self._loss_now()
        return float(np.sqrt(data / sum_w)) if sum_w > 0 else 0.0

    # ------------------------------------------------------------------ fit

    def fit(self, source, weights=None) -> DaskWALS:
        """Open ``source`` on the cluster and run ``sweeps`` sweeps from a random start.

        Parameters
        ----------
        source : NativeSource, TFRecordSource, PartsSource, path or URL
            As :meth:`open`: on storage every worker reads, or already on the workers.
        weights : NativeSource or None, default=None
            Per-entry observed weights, as :meth:`open`'s.

        Returns
        -------
        self
        """
        self.open(source, weights)
        self.initialize()

        def sweep() -> tuple[float, tuple[float, float, float]]:
            self.update_rows()
            after_rows = self._loss_state[0]
            self.update_cols()
            return after_rows, self._loss_state

        return run_sweeps(self, sweep, "WALS (dask)")

    # ------------------------------------------------------------------ on this machine

    def to_local(self, method: str = "to_local") -> WALS:
        """A :class:`~walsrec.model.wals.WALS` on this machine with this model's parameters,
        factors (gathered from the workers; cached until they change), fit history and
        weighting statistics. Fold-in and recommendations run on it: they read every
        factor row."""
        self._check_initialized(method)
        users, items = self.user_factors_, self.item_factors_
        local = self.__dict__.get("_local")
        if local is None or local.user_factors_ is not users or local.item_factors_ is not items:
            local = WALS(**self._wals_params())
            local.user_factors_, local.item_factors_ = users, items
            self._local = local
        else:
            local.set_params(**self._wals_params())
        local.loss_ = list(getattr(self, "loss_", []))
        local.rwse_, local.n_iter_ = getattr(self, "rwse_", None), getattr(self, "n_iter_", 0)
        stats = self.weighting_stats_
        if stats is not None:
            local.weighting_stats_ = stats
        return local

    def project_rows(self, new_user_items, weights=None, row_weights=None) -> np.ndarray:
        """Fold in unseen users on this machine: :meth:`WALS.project_rows
        <walsrec.model.wals.WALS.project_rows>` against the gathered item factors."""
        local = self.to_local("project_rows")
        return local.project_rows(new_user_items, weights, row_weights)

    def project_cols(self, new_item_users, weights=None, col_weights=None) -> np.ndarray:
        """Fold in unseen items on this machine: :meth:`WALS.project_cols
        <walsrec.model.wals.WALS.project_cols>` against the gathered user factors."""
        local = self.to_local("project_cols")
        return local.project_cols(new_item_users, weights, col_weights)

    def recommend(
        self, user_index, user_items, k=10, exclude_seen=True, *, filter_items=None, items=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`WALS.recommend <walsrec.model.wals.WALS.recommend>` on the gathered
        factors."""
        return self.to_local("recommend").recommend(
            user_index, user_items, k, exclude_seen, filter_items=filter_items, items=items
        )

    def similar_items(
        self, item_index, k=10, *, metric="cosine", filter_items=None, items=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`WALS.similar_items <walsrec.model.wals.WALS.similar_items>` on the
        gathered item factors."""
        return self.to_local("similar_items").similar_items(
            item_index, k, metric=metric, filter_items=filter_items, items=items
        )
