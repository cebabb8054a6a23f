"""A loaded export that answers queries: top-k for users, fold-in for new users, similar items.

:func:`load_model` reads an export (``MODEL_DIR/export/<version>/``, or a model directory
meaning its newest export) into a :class:`Recommender`. Everything it needs stays in memory
in the layout the kernels read: float32 C-contiguous factors, the training matrix as CSR
with sorted indices (to exclude already-seen items), item popularity (the most-popular
fallback), item norms (cosine similarity) and a WALS estimator rebuilt from the export's
hyper-parameters for the exact fold-in of new users (tf.contrib's ``project_row_factors``).

A :class:`Recommender` never changes after loading, so any number of threads may query it
at once; the HTTP service swaps whole instances when a newer export appears.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_k, check_option
from walsrec.errors import DataFormatError, InvalidParameterError, UnknownIdError

__all__ = ["Recommendations", "Recommender", "load_model"]

_FALLBACKS = (None, "popular")
_SIMILAR_METHODS = ("factors", "item-item")
# Scores of a chunk of users in batch recommendation: at most this many bytes at once.
_BLOCK_BYTES = 32 * 2**20


def _topk():
    # numba compiles (or loads from its cache) on first use, not at import
    from walsrec.model import topk

    return topk


@dataclass
class Recommendations:
    """A ranked list of items, best first.

    Attributes
    ----------
    items : list of str
        Original item ids.
    scores : ndarray of float32, shape (len(items),)
        Predicted scores u·v (cosine or dot similarity for :meth:`Recommender.similar_items`;
        the number of training users for the most-popular fallback).
    indices : ndarray of int64, shape (len(items),)
        Item indices in the model's vocabulary.
    ignored : list of str
        Fold-in only: interaction items that are not in the model and were left out.
    fallback : bool
        True when the list is the most-popular fallback for an unknown user, or for a
        fold-in whose interactions name no item the model knows.
    """

    items: list[str]
    scores: np.ndarray
    indices: np.ndarray
    ignored: list[str] = field(default_factory=list)
    fallback: bool = False

    def __len__(self) -> int:
        return len(self.items)

    def to_list(self) -> list[dict[str, Any]]:
        """``[{"item": id, "score": float}, ...]``, best first (JSON-ready)."""
        return [
            {"item": i, "score": float(s)}
            for i, s in zip(self.items, self.scores.tolist(), strict=True)
        ]


class Recommender:
    """An exported WALS model in memory, ready to recommend. Build it with :func:`load_model`.

    Attributes
    ----------
    path : Path
        The export directory.
    meta : dict
        The export's model.json (``version``, ``created``, ``counts``, ``metrics``,
        ``hyperparameters``, ...).
    user_factors : ndarray of float32, shape (n_users, k), C-contiguous
    item_factors : ndarray of float32, shape (n_items, k), C-contiguous
    users, items : Vocabulary
    user_items : scipy.sparse.csr_matrix of shape (n_users, n_items)
        The training interactions (sorted indices), for excluding seen items.
    item_popularity : ndarray of float64, shape (n_items,)
        Number of training users of each item (the most-popular fallback).
    item_norms : ndarray of float32, shape (n_items,)
        Euclidean norms of the item factors (cosine similarity).
    item_weights : ndarray or scipy.sparse.csr_matrix of shape (n_items, n_items), or None
        The hybrid's EASE weights B (:mod:`walsrec.model.ease`); None for WALS alone.
    blend_weight : float
        β of the hybrid's scores z(u·Vᵀ) + β·z(x_u·B) (0 without ``item_weights``).
    """

    def __init__(self, export) -> None:
        self.path = Path(export.path)
        self.meta = dict(export.meta)
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by load_model
            self.user_factors = np.ascontiguousarray(export.user_factors, dtype=np.float32)
            self.item_factors = np.ascontiguousarray(export.item_factors, dtype=np.float32)
        self.users = export.users
        self.items = export.items
        self._item_ids = export.items.to_list()  # list indexing beats an Arrow take per query
        self._item_lookup: dict[str, int] | None = None
        ui = sp.csr_matrix(export.user_items)
        if not ui.has_sorted_indices:
            ui = ui.copy()
            ui.sort_indices()
        self.user_items = ui
        self._indptr = np.ascontiguousarray(ui.indptr, dtype=np.int64)
        idx_dt = _topk().index_dtype(ui.shape[1])
        self._indices = np.ascontiguousarray(ui.indices, dtype=idx_dt)
        if export.item_popularity is not None:  # stored (a sharded export, or some users')
            self.item_popularity = np.asarray(export.item_popularity, dtype=np.float64)
        else:
            self.item_popularity = np.bincount(self._indices, minlength=ui.shape[1]).astype(
                np.float64
            )
        #: (lo, hi) when this holds only users lo:hi of the export (batch prediction)
        self.rows = export.rows
        with np.errstate(over="ignore", invalid="ignore"):  # overflowing norms: refused
            self.item_norms = np.linalg.norm(self.item_factors, axis=1).astype(np.float32)
            self.user_norms = np.linalg.norm(self.user_factors, axis=1).astype(np.float32)
        # The item factors again, by decreasing norm, for the single-query top-k that stops
        # early (see walsrec.model.topk.topk_by_norm). Costs one more copy of the item factors.
        self._norm_order = np.argsort(-self.item_norms, kind="stable").astype(np.int64)
        self._sorted_items = np.ascontiguousarray(self.item_factors[self._norm_order])
        self._sorted_norms = np.ascontiguousarray(self.item_norms[self._norm_order])
        self._no_ban = np.zeros(0, dtype=np.bool_)
        self._no_items = np.zeros(0, dtype=idx_dt)
        # by popularity, then index: the fallback's order, computed once
        self._popular_order = np.lexsort((np.arange(ui.shape[1]), -self.item_popularity)).astype(
            np.int64
        )
        # fold-in needs every user's interactions (count-based weights, BM25's statistics)
        self._wals = (
            None
            if self.rows is not None
            else _rebuild_estimator(self.meta.get("hyperparameters") or {}, self)
        )
        # WALS keeps a cache of the item Gramian's eigendecomposition: fill it once, under
        # a lock, so that concurrent fold-ins only read it.
        self._fold_lock = threading.Lock()
        # the hybrid (walsrec.model.ease): EASE's weights B beside the factors, or None
        self.item_weights = export.item_weights
        settings = self.meta.get("item_item") or {}
        self.blend_weight = float(settings.get("blend_weight", 0.0))
        self._binary = None
        if self.item_weights is not None:
            from walsrec.model.ease import binary_rows

            self._binary = binary_rows(ui)

    # ------------------------------------------------------------------ description

    @property
    def version(self) -> int:
        """The export's version (an increasing integer)."""
        return int(self.meta.get("version", 0))

    @property
    def n_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.user_factors.shape[1]

    @property
    def hybrid(self) -> bool:
        """True when the export blends EASE's item-item scores with WALS's."""
        return self.item_weights is not None

    def __repr__(self) -> str:
        return (
            f"Recommender(version={self.version}, n_users={self.n_users}, "
            f"n_items={self.n_items}, embedding_dim={self.embedding_dim}, path={str(self.path)!r})"
        )

    def describe(self) -> dict[str, Any]:
        """Version, creation time, counts, metrics and hyper-parameters (JSON-ready)."""
        return {
            "version": self.version,
            "created": self.meta.get("created"),
            "path": str(self.path),
            "walsrec_version": self.meta.get("walsrec_version"),
            "counts": self.meta.get("counts", {}),
            "metrics": self.meta.get("metrics", {}),
            "hyperparameters": self.meta.get("hyperparameters", {}),
            "item_item": self.meta.get("item_item"),
        }

    # ------------------------------------------------------------------ helpers

    def _banned(
        self, filter_items: Iterable[str] | None, items: Iterable[str] | None, method: str
    ) -> np.ndarray:
        """The kernels' mask from ``filter_items`` and the allow list ``items`` (ids)."""
        if filter_items is None and items is None:
            return self._no_ban
        return _topk().banned_mask(
            self.n_items,
            self._known_items(filter_items, "filter_items", method),
            self._known_items(items, "items", method),
        )

    def _known_items(self, ids: Iterable[str] | None, name: str, method: str):
        """Indices of the ids the model knows (None stays None): an unknown id can never be
        recommended, so leaving it out of a filter or an allow list changes nothing."""
        if ids is None:
            return None
        if isinstance(ids, str | bytes):
            raise InvalidParameterError(
                f"The {name!r} parameter of {method} must be an iterable of item ids, "
                f"not a single string. Got {ids!r} instead."
            )
        idx = self._item_indices([str(i) for i in ids])
        return idx[idx >= 0]

    def _item_indices(self, ids: list[str]) -> np.ndarray:
        """Indices of item ids, -1 where unknown. A dict lookup: an Arrow ``index_in``
        hashes the whole vocabulary on every call (1.6 ms on 36,165 items)."""
        lookup = self._item_lookup
        if lookup is None:  # built on first use; two threads may both build it, harmlessly
            lookup = self._item_lookup = {v: i for i, v in enumerate(self._item_ids)}
        return np.fromiter((lookup.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def _result(self, items: np.ndarray, scores: np.ndarray, n: int, **extra) -> Recommendations:
        items = items[:n].astype(np.int64)
        ids = [self._item_ids[i] for i in items.tolist()]
        return Recommendations(ids, scores[:n].copy(), items, **extra)

    def _top(self, scores: np.ndarray, excluded: np.ndarray, banned: np.ndarray, k: int):
        items, scores = _topk().top_k(scores, excluded, banned, k)
        return items, scores, items.shape[0]

    def _top_query(self, query, query_norm, excluded, banned, k: int):
        """Top-k of ``item_factors @ query`` without scoring every item (exact)."""
        width = min(k, self.n_items)
        out_items = np.empty(width, dtype=np.int64)
        out_scores = np.empty(width, dtype=np.float32)
        n = _topk().topk_by_norm(
            self._sorted_items,
            self._norm_order,
            self._sorted_norms,
            np.ascontiguousarray(query, dtype=np.float32),
            float(query_norm),
            excluded,
            banned,
            width,
            out_items,
            out_scores,
        )
        return out_items, out_scores, n

    def _hybrid_scores(self, factors: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        """z(factors·Vᵀ) + β·z(rows·B) for a block of users (factors m × k, binary rows
        m × n_items): float32 (m, n_items)."""
        from walsrec.model.ease import hybrid_scores

        return hybrid_scores(factors, self.item_factors, rows, self.item_weights, self.blend_weight)

    def _seen(self, user: int) -> np.ndarray:
        return self._indices[self._indptr[user] : self._indptr[user + 1]]

    # ------------------------------------------------------------------ queries

    def user_index(self, user_id: Any) -> int:
        """The row of ``user_id``; raises :class:`~walsrec.errors.UnknownIdError` if absent."""
        return self.users.index(user_id)

    def item_index(self, item_id: Any) -> int:
        """The column of ``item_id``; raises :class:`~walsrec.errors.UnknownIdError` if absent."""
        return self.items.index(item_id)

    def recommend(
        self,
        user_id: Any,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        filter_items: Iterable[str] | None = None,
        items: Iterable[str] | None = None,
        fallback: str | None = None,
    ) -> Recommendations:
        """Top-``k`` items for a training user, by score u·v, best first.

        Candidates, order and ties follow the ranking rules of :mod:`walsrec.model.topk`,
        shared with :meth:`WALS.recommend <walsrec.model.wals.WALS.recommend>` (which
        names items by index where this names them by id).

        Parameters
        ----------
        user_id : str
            The user's original id.
        k : int, default=10
            Number of items; more than the catalog returns every candidate, ranked.
        exclude_seen : bool, default=True
            Leave out the user's training items.
        filter_items : iterable of str, optional
            Item ids never to recommend (ids unknown to the model are ignored).
        items : iterable of str, optional
            Allow list: only these item ids may be recommended (unknown ids are ignored).
        fallback : {None, "popular"}, default=None
            For an unknown user: None raises :class:`~walsrec.errors.UnknownIdError`;
            "popular" returns the most popular items allowed by ``filter_items`` and
            ``items`` (``fallback=True`` on the result).

        Returns
        -------
        Recommendations
            Fewer than ``k`` items when fewer candidates remain.

        Examples
        --------
        >>> model = walsrec.load_model("model/")  # doctest: +SKIP
        >>> model.recommend("u42", k=3).items  # doctest: +SKIP
        ['i7', 'i3', 'i19']
        """
        k = check_k(k, "recommend")
        check_option(fallback, "fallback", "parameter of recommend", _FALLBACKS)
        banned = self._banned(filter_items, items, "recommend")
        try:
            user = self.users.index(user_id)
        except UnknownIdError:
            if fallback is None:
                raise
            return self.popular(k, filter_items=filter_items, items=items)
        excluded = self._seen(user) if exclude_seen else self._no_items
        query = self.user_factors[user]
        if self.hybrid:
            scores = self._hybrid_scores(query[None, :], self._binary[user])[0]
            return self._result(*self._top(scores, excluded, banned, k))
        return self._result(*self._top_query(query, self.user_norms[user], excluded, banned, k))

    def popular(
        self,
        k: int = 10,
        *,
        filter_items: Iterable[str] | None = None,
        items: Iterable[str] | None = None,
    ) -> Recommendations:
        """The ``k`` items with the most training users (ties by index); ``fallback=True``.

        Scores are the numbers of training users; ``filter_items`` and the allow list
        ``items`` as :meth:`recommend`.
        """
        k = check_k(k, "popular")
        order = self._popular_order
        banned = self._banned(filter_items, items, "popular")
        if banned.shape[0]:
            order = order[~banned[order]]
        top = order[:k]
        return self._result(
            top, self.item_popularity[top].astype(np.float32), top.shape[0], fallback=True
        )

    def recommend_many(
        self,
        user_ids: Iterable[Any],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        filter_items: Iterable[str] | None = None,
        items: Iterable[str] | None = None,
        n_jobs: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores for many users at once (batch form).

        Parameters
        ----------
        user_ids : iterable of str
            Original ids; an unknown one raises :class:`~walsrec.errors.UnknownIdError`.
        k, exclude_seen, filter_items, items
            As :meth:`recommend`.
        n_jobs : int or None, default=None
            Threads (None or -1: all cores).

        Returns
        -------
        items : ndarray of int64, shape (n, min(k, n_items))
            Item indices, best first, padded with -1 (map them with ``items.id``).
        scores : ndarray of float32, shape (n, min(k, n_items))
            Padded with -inf.
        """
        k = check_k(k, "recommend_many")
        ids = list(user_ids)
        idx = self.users.indices([str(u) for u in ids])
        if (idx < 0).any():
            bad = ids[int(np.flatnonzero(idx < 0)[0])]
            raise UnknownIdError(f"Unknown user id {str(bad)!r}.")
        banned = self._banned(filter_items, items, "recommend_many")
        return self.recommend_indices(
            idx, k, exclude_seen=exclude_seen, banned=banned, n_jobs=n_jobs
        )

    def recommend_indices(
        self,
        user_indices: np.ndarray,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        banned: np.ndarray | None = None,
        n_jobs: int | None = None,
        chunk_size: int | None = None,
        method: str = "auto",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batch top-``k`` by user index, in chunks of users on ``n_jobs`` threads.

        Two exact methods: ``"norm"`` ranks each user with the kernel that scores items by
        decreasing norm and stops at the Cauchy–Schwarz bound (a tenth of the items on
        epinions); ``"gemm"`` scores every item with one matrix product per chunk, then
        selects. ``"auto"`` runs the first chunk with "norm" and keeps it unless more than a
        quarter of the items had to be scored. Chunks run on Python threads
        (``walsrec._threads.run_parts``), each with single-threaded BLAS and kernels that
        release the GIL. ``banned`` is an optional bool mask over items. Returns
        ``(items, scores)`` as :meth:`recommend_many`. Memory: one chunk of scores (about
        32 MiB) per thread with "gemm".
        """
        from walsrec._threads import resolve_n_jobs, run_parts, single_blas_thread

        k = check_k(k, "recommend_indices")
        methods = ["auto", "norm", "gemm"]
        check_option(
            method, "method", "parameter of recommend_indices", methods, rule=f"one of {methods}"
        )
        users = np.asarray(user_indices)
        if users.size and not np.issubdtype(users.dtype, np.integer):
            raise InvalidParameterError(
                "The 'user_indices' parameter of recommend_indices must hold integers. Got "
                f"dtype {users.dtype} instead."
            )
        users = np.ascontiguousarray(users, dtype=np.int64)
        if banned is not None and np.shape(banned) not in ((self.n_items,), (0,)):
            raise InvalidParameterError(
                "The 'banned' parameter of recommend_indices must be a bool mask of shape "
                f"({self.n_items},) (one entry per item), or empty for none. Got shape "
                f"{np.shape(banned)} instead."
            )
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise InvalidParameterError(
                f"The 'user_indices' parameter of recommend_indices must hold indices in "
                f"[0, {self.n_users}). Got {int(users.min() if users.min() < 0 else users.max())}"
                " instead."
            )
        width = min(k, self.n_items)
        out_items = np.empty((users.size, width), dtype=np.int64)
        out_scores = np.empty((users.size, width), dtype=np.float32)
        banned = self._no_ban if banned is None else np.ascontiguousarray(banned, dtype=np.bool_)
        bounds = self.chunks(users.size, chunk_size)

        def run(bound: tuple[int, int], how: str) -> float:
            start, stop = bound
            return self._rank_chunk(
                users[start:stop],
                width,
                exclude_seen,
                banned,
                out_items[start:stop],
                out_scores[start:stop],
                how,
            )

        if self.hybrid:
            method = "hybrid"  # every item is scored: z-scores need the whole catalogue
        elif method == "auto" and bounds:
            with single_blas_thread():
                share = run(bounds[0], "norm")
            method = "norm" if share <= 0.25 else "gemm"
            bounds = bounds[1:]
        run_parts(lambda i: run(bounds[i], method), len(bounds), resolve_n_jobs(n_jobs))
        return out_items, out_scores

    def chunks(self, n: int, chunk_size: int | None = None) -> list[tuple[int, int]]:
        """(start, stop) bounds of the user chunks of a batch of ``n`` users."""
        if chunk_size is None:
            chunk_size = max(16, min(4096, _BLOCK_BYTES // max(1, 4 * self.n_items)))
        return [(s, min(n, s + chunk_size)) for s in range(0, n, chunk_size)]

    def _rank_chunk(self, users, width, exclude_seen, banned, out_items, out_scores, how):
        """Top-``width`` of a chunk of users; returns the share of items scored."""
        kern = _topk()
        if how == "norm":
            scanned = np.empty(users.size, dtype=np.int64)
            kern.topk_by_norm_rows(
                self._sorted_items,
                self._norm_order,
                self._sorted_norms,
                self.user_factors,
                self.user_norms,
                users,
                self._indptr,
                self._indices,
                bool(exclude_seen),
                banned,
                width,
                out_items,
                out_scores,
                scanned,
            )
            return float(scanned.mean()) / max(1, self.n_items) if users.size else 0.0
        if how == "hybrid":
            scores = self._hybrid_scores(self.user_factors[users], self._binary[users])
        else:
            scores = self.user_factors[users] @ self.item_factors.T  # BLAS, GIL released
        kern.topk_rows(
            scores,
            users,
            self._indptr,
            self._indices,
            bool(exclude_seen),
            banned,
            width,
            out_items,
            out_scores,
        )
        return 1.0

    # ------------------------------------------------------------------ fold-in

    def fold_in(self, interactions: Iterable[tuple[Any, float]]) -> tuple[np.ndarray, list[str]]:
        """The factor of a new user from ``(item_id, value)`` pairs, and the ignored ids.

        The exact WALS row solve against the fixed item factors with the model's weights
        and regularisation (tf.contrib's PROJECT_ROW). Repeated items add up; items the
        model does not know are left out and returned.

        Returns
        -------
        factor : ndarray of float32, shape (embedding_dim,)
        ignored : list of str
        """
        factor, ignored, _ = self._fold_in(interactions)
        return factor, ignored

    def _fold_in(self, interactions) -> tuple[np.ndarray, list[str], np.ndarray]:
        row, ignored = self._interaction_row(interactions)
        return self._project(row), ignored, row.indices

    def _interaction_row(self, interactions) -> tuple[sp.csr_matrix, list[str]]:
        """The new user's row of targets (1 × n_items, known items only) and the ignored ids."""
        item_ids, values = _split_interactions(interactions)
        idx = self._item_indices(item_ids)
        known = idx >= 0
        ignored = [item_ids[i] for i in np.flatnonzero(~known)]
        cols = idx[known]
        row = sp.csr_matrix(
            (values[known], (np.zeros(cols.shape[0], dtype=np.int64), cols)),
            shape=(1, self.n_items),
        )
        row.sum_duplicates()
        row.sort_indices()
        return row, ignored

    def _project(self, row: sp.csr_matrix) -> np.ndarray:
        if self._wals is None:
            lo, hi = self.rows
            raise InvalidParameterError(
                f"This Recommender holds users {lo}:{hi} of {self.path} only (batch "
                "prediction); load the whole export with walsrec.load_model to fold in new "
                "users."
            )
        with self._fold_lock:
            factor = self._wals.project_rows(row)[0]
        return np.asarray(factor, dtype=np.float32)

    def recommend_for_interactions(
        self,
        interactions: Iterable[tuple[Any, float]],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        filter_items: Iterable[str] | None = None,
        items: Iterable[str] | None = None,
        fallback: str | None = None,
    ) -> Recommendations:
        """Top-``k`` items for a user the model has never seen, from their interactions.

        Parameters
        ----------
        interactions : iterable of (item_id, value)
            The new user's interactions; values are the targets A (e.g. 1 for a visit).
            Repeated items add up.
        k : int, default=10
        exclude_seen : bool, default=True
            Leave out the items in ``interactions``.
        filter_items : iterable of str, optional
            Item ids never to recommend.
        items : iterable of str, optional
            Allow list: only these item ids may be recommended.
        fallback : {None, "popular"}, default=None
            When no interaction names an item the model knows (or there is none), there is
            nothing to fold in: None raises :class:`~walsrec.errors.InvalidParameterError`
            naming the unknown items; "popular" returns the most popular items allowed by
            ``filter_items`` and ``items`` (``fallback=True`` on the result), as
            :meth:`recommend` does for an unknown user.

        Returns
        -------
        Recommendations
            ``ignored`` lists the interaction items not in the model.

        Examples
        --------
        >>> model.recommend_for_interactions([("i3", 1.0), ("i7", 0.5)], k=5)  # doctest: +SKIP
        """
        method = "recommend_for_interactions"
        k = check_k(k, method)
        check_option(fallback, "fallback", f"parameter of {method}", _FALLBACKS)
        banned = self._banned(filter_items, items, method)
        row, ignored = self._interaction_row(interactions)
        if row.nnz == 0:
            # an all-zero factor would score every item 0: a ranking by index, not a guess
            if fallback is None:
                got = (
                    f"only unknown items ({quote_ids(list(dict.fromkeys(ignored)))})"
                    if ignored
                    else "no interactions"
                )
                raise InvalidParameterError(
                    f"The 'interactions' parameter of {method} must name at least one item "
                    f"the model knows. Got {got} instead."
                )
            result = self.popular(k, filter_items=filter_items, items=items)
            result.ignored = ignored
            return result
        factor, seen = self._project(row), row.indices
        excluded = seen.astype(self._indices.dtype) if exclude_seen else self._no_items
        if self.hybrid:
            from walsrec.model.ease import binary_rows

            scores = self._hybrid_scores(factor[None, :], binary_rows(row))[0]
            return self._result(*self._top(scores, excluded, banned, k), ignored=ignored)
        top = self._top_query(factor, np.linalg.norm(factor), excluded, banned, k)
        return self._result(*top, ignored=ignored)

    # ------------------------------------------------------------------ similar items

    def similar_items(
        self,
        item_id: Any,
        k: int = 10,
        *,
        metric: str = "cosine",
        method: str = "factors",
        filter_items: Iterable[str] | None = None,
        items: Iterable[str] | None = None,
    ) -> Recommendations:
        """The ``k`` items most similar to ``item_id``, itself excluded: by their factors, or
        by the hybrid's EASE weights.

        Candidates, order and ties follow the ranking rules of :mod:`walsrec.model.topk`,
        shared with :meth:`WALS.similar_items <walsrec.model.wals.WALS.similar_items>`.

        Parameters
        ----------
        item_id : str
        k : int, default=10
        metric : {"cosine", "dot"}, default="cosine"
            With ``method="factors"``: cosine similarity (0 against an all-zero factor) or
            the dot product.
        method : {"factors", "item-item"}, default="factors"
            "item-item" ranks by the row of EASE's B (B_ij: how much having ``item_id``
            adds to item j's score); only for an export with item-item weights
            (:attr:`hybrid`).
        filter_items : iterable of str, optional
            Item ids never to return.
        items : iterable of str, optional
            Allow list: only these item ids may be returned.

        Returns
        -------
        Recommendations
            ``scores`` are the similarities.
        """
        topk = _topk()
        k = check_k(k, "similar_items")
        metrics = list(topk.METRICS)
        check_option(
            metric, "metric", "parameter of similar_items", metrics, rule=f"one of {metrics}"
        )
        check_option(
            method, "method", "parameter of similar_items", _SIMILAR_METHODS,
            rule=f"one of {list(_SIMILAR_METHODS)}",
        )  # fmt: skip
        if method == "item-item" and not self.hybrid:
            raise InvalidParameterError(
                "The 'method' parameter of similar_items is 'item-item', but this export has "
                "no item-item weights (train with --item-item on or auto). Use 'factors'."
            )
        item = self.items.index(item_id)
        banned = self._banned(filter_items, items, "similar_items")
        excluded = np.array([item], dtype=self._indices.dtype)
        if method == "item-item":
            row = self.item_weights[item]
            row = row.toarray()[0] if sp.issparse(row) else np.asarray(row)
            return self._result(*self._top(np.asarray(row, dtype=np.float32), excluded, banned, k))
        if metric == "dot":  # a dot product: the early-stopping kernel applies
            query = self.item_factors[item]
            return self._result(*self._top_query(query, self.item_norms[item], excluded, banned, k))
        sims = topk.similarity_scores(self.item_factors, self.item_norms, item, metric)
        return self._result(*self._top(sims, excluded, banned, k))

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) every kernel and fill the fold-in caches."""
        if self.n_items == 0:
            return
        if self.n_users:
            self.recommend(self.users.id(0), k=1)
            self.recommend_indices(np.zeros(1, dtype=np.int64), k=1, n_jobs=1)
        self.recommend_for_interactions([(self.items.id(0), 1.0)], k=1)
        self.similar_items(self.items.id(0), k=1)


# --------------------------------------------------------------------------- helpers


def quote_ids(ids: list[str], limit: int = 5) -> str:
    """``'a', 'b'``: the ids quoted, at most ``limit`` of them and how many more (messages)."""
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _pairs(interactions) -> list:
    return interactions if isinstance(interactions, list) else list(interactions)


def _split_interactions(interactions) -> tuple[list[str], np.ndarray]:
    item_ids: list[str] = []
    values: list[float] = []
    for n, pair in enumerate(_pairs(interactions)):
        try:
            item, value = pair
            value = float(value)
        except (TypeError, ValueError):
            raise InvalidParameterError(
                "The 'interactions' parameter of recommend_for_interactions must be a list "
                f"of (item_id, value) pairs with numeric values. Got {pair!r} at position {n} "
                "instead."
            ) from None
        if not np.isfinite(value):
            raise InvalidParameterError(
                "The 'interactions' parameter of recommend_for_interactions must have finite "
                f"values. Got {value!r} at position {n} instead."
            )
        item_ids.append(str(item))
        values.append(value)
    return item_ids, np.asarray(values, dtype=np.float64)


def _rebuild_estimator(hyper: dict, model: Recommender):
    """A WALS with the export's weights and regularisation, holding its factors."""
    from walsrec.model import weighting
    from walsrec.model.params import column_weights, estimator_from_settings
    from walsrec.model.wals import WALS

    col_weights = column_weights(hyper, model.user_items)
    try:
        # an export lists every setting; one written before a setting existed was trained
        # with the estimator's default for it (tf.contrib's), not train's current one
        wals = estimator_from_settings(
            hyper,
            model.user_items,
            defaults=WALS().get_params(),
            validate=True,
            embedding_dim=model.embedding_dim,
            col_weights=col_weights,
            dtype="float32",
            n_jobs=1,
            solver="cholesky",
        )
    except (TypeError, ValueError) as exc:
        raise DataFormatError(
            f"{model.path / 'model.json'}: its hyperparameters do not make a WALS model ({exc})."
        ) from None
    wals.user_factors_ = model.user_factors
    wals.item_factors_ = model.item_factors
    if weighting.needs_stats(wals.confidence):
        # BM25/TF-IDF weigh a new user's entries with the training matrix's statistics
        wals.weighting_stats_ = weighting.weighting_stats(model.user_items)
    return wals


def load_model(path: str | os.PathLike) -> Recommender:
    """Load an export for serving: an export directory, or a model directory (its newest).

    Checks the format version, the array shapes against model.json and that the factors
    are finite; a truncated, missing or inconsistent file is a
    :class:`~walsrec.errors.DataFormatError` naming it.

    Parameters
    ----------
    path : str or path-like
        ``MODEL_DIR/export/<version>`` or ``MODEL_DIR``.

    Returns
    -------
    Recommender

    Examples
    --------
    >>> import walsrec
    >>> model = walsrec.load_model("model/")  # doctest: +SKIP
    >>> model.recommend("42", k=5).to_list()  # doctest: +SKIP
    """
    from walsrec.serving.export import read_export

    try:
        export = read_export(path, mmap=False)
    except FileNotFoundError as exc:
        raise DataFormatError(f"{exc.filename}: missing; the export is incomplete.") from None
    except (EOFError, OSError) as exc:
        name = getattr(exc, "filename", None) or path
        raise DataFormatError(f"{name}: cannot be read ({exc}).") from None
    # read_export checked every shape against model.json and every index against them
    model = Recommender(export)
    check_scores_fit(model)
    return model


def check_scores_fit(model: Recommender) -> None:
    """Refuse factors whose scores could overflow float32 (or that overflowed becoming it)."""
    u = float(np.max(model.user_norms, initial=0.0))
    v = float(np.max(model.item_norms, initial=0.0))
    # Scores are u·v accumulated in float32. Cauchy–Schwarz: |u·v| <= ‖u‖·‖v‖ for every
    # score, partial sums and similar items too (half of float32's largest value leaves room
    # for rounding); NaN or inf norms (float64 factors beyond float32's range) fail the
    # comparison as well. A trained model's norms are many orders of magnitude below this.
    if not max(u, v) * v < float(np.finfo(np.float32).max) / 2.0:
        raise DataFormatError(
            f"{model.path}: the factors are too large to score in float32 (largest norms: "
            f"users {u:.3g}, items {v:.3g}; their products overflow). Retrain with more "
            "regularization."
        )
