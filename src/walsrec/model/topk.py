"""Top-k: the ranking rules every recommend and similar_items call follows, and its kernels.

Ranking rules
-------------
:meth:`WALS.recommend <walsrec.model.wals.WALS.recommend>` and :meth:`WALS.similar_items
<walsrec.model.wals.WALS.similar_items>` (DaskWALS's call them), and
:meth:`Recommender.recommend <walsrec.serving.model.Recommender.recommend>` and
:meth:`Recommender.similar_items <walsrec.serving.model.Recommender.similar_items>` (the
HTTP service, ``walsrec recommend`` and ``walsrec similar`` call these) take the same
keyword arguments, with the same defaults and meaning:

``k`` : int >= 1, default 10
    The length of the list. Fewer items come back when fewer candidates remain, so a k
    above the catalog's size returns every candidate, ranked.
``exclude_seen`` : bool, default True (recommend)
    Leave out the user's training items.
``filter_items`` : default None
    Items never to return.
``items`` : default None
    An allow list: when given, only these items may be returned.
``metric`` : {"cosine", "dot"}, default "cosine" (similar_items)
    Cosine similarity of the item factors (0 against an all-zero factor) or their dot
    product. The query item itself is never returned.

WALS names items by index (ints in [0, n_items), as an array-like; anything else is an
error) and returns ``(items, scores)`` arrays; the Recommender names them by id
(iterables of str, where an id the model does not know is ignored and a single string
is an error) and returns ``Recommendations``. A candidate is an item that is allowed,
not filtered, not seen (and not the query item) and whose score is not NaN. Candidates
rank by score descending, ties by item index ascending. Scores are u·v for recommend and
the similarity for similar_items, computed in the factors' dtype.

The same factors give the same lists. WALS scores every item with one matrix-vector
product and ranks them with :func:`topk_one`; the Recommender ranks u·v with
:func:`topk_by_norm`, which scores items by decreasing norm and stops early (exact), and
cosine with :func:`topk_one`. Where the two compute a score in a different order of
summation it may differ in the last bit, and so may the order of two items whose scores
are that close; with scores computed exactly (small integer factors) lists and scores are
identical.

Kernels
-------
Order everywhere: score descending, ties by item index ascending. A candidate is an item
that is neither in the row's excluded (seen) indices nor marked in ``banned``. Each kernel
walks the candidates once, gap by gap between the sorted excluded indices (no per-item
membership test), keeping the best k in a heap whose root is the worst kept item (the
heap of :mod:`walsrec._topk_heap`, shared with the metrics' kernels). Each has a slow
NumPy twin, its oracle in the tests.

Outputs are padded with item -1 and score -inf when fewer than k candidates exist. Scores
are float32, or float64 for :func:`topk_one` (a float64 WALS); the :func:`topk_by_norm`
kernels take the Recommender's float32 factors. Excluded indices are int32 (int64 from
2**31 - 1 items on: :func:`index_dtype`), ``banned`` a bool mask, outputs int64 and the
scores' dtype: every caller passes these, so each kernel compiles once per score dtype.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from walsrec._topk_heap import sift_down, sift_up, sort_heap

__all__ = [
    "METRICS",
    "banned_mask",
    "index_dtype",
    "similarity_scores",
    "top_k",
    "topk_by_norm",
    "topk_by_norm_numpy",
    "topk_by_norm_rows",
    "topk_one",
    "topk_one_numpy",
    "topk_rows",
    "topk_rows_numpy",
]

# A computed float32 dot product may exceed the exact ‖u‖·‖v‖ bound by rounding (relative
# error below d·eps ≈ 64 · 6e-8 for d = 64): the early stop keeps this much slack.
_BOUND_SLACK = 1e-3

METRICS = ("cosine", "dot")


@njit(cache=True)
def _select(row, excluded, banned, k, out_items, out_scores):
    """Best k candidates of ``row`` into out_items/out_scores (best first); returns the count.

    ``excluded``: sorted item indices to skip; ``banned``: bool mask over items, or empty.
    """
    n_items = row.shape[0]
    use_banned = banned.shape[0] > 0
    n = 0
    threshold = -np.inf  # the worst kept score once the heap is full
    p = 0
    n_ex = excluded.shape[0]
    start = 0
    while start < n_items:
        while p < n_ex and excluded[p] < start:  # also skips repeated indices
            p += 1
        stop = n_items
        if p < n_ex:
            stop = excluded[p]
        j = start
        while n < k and j < stop:  # filling the heap
            s = row[j]
            if s == s and not (use_banned and banned[j]):  # NaN never ranks
                out_scores[n] = s
                out_items[n] = j
                sift_up(out_scores, out_items, n)
                n += 1
                if n == k:
                    threshold = out_scores[0]
            j += 1
        for i in range(j, stop):
            # the hot loop: one compare against a register. i exceeds every kept index, so
            # a tie with the worst kept item loses; NaN compares false and never enters.
            if row[i] > threshold:
                if use_banned and banned[i]:
                    continue
                out_scores[0] = row[i]
                out_items[0] = i
                sift_down(out_scores, out_items, k, 0)
                threshold = out_scores[0]
        start = stop + 1
    sort_heap(out_scores, out_items, n)  # best first
    for c in range(n, out_items.shape[0]):
        out_items[c] = -1
        out_scores[c] = -np.inf
    return n


@njit(cache=True, nogil=True)
def topk_one(scores, excluded, banned, k, out_items, out_scores):
    """Top-k of one score vector (n_items,), sequential: safe from any number of threads."""
    return _select(scores, excluded, banned, k, out_items, out_scores)


@njit(cache=True, nogil=True)
def topk_rows(scores, users, indptr, indices, exclude_seen, banned, k, out_items, out_scores):
    """Top-k of each row of ``scores`` (m × n_items); row i belongs to user ``users[i]``.

    With ``exclude_seen`` the user's training items ``indices[indptr[u]:indptr[u+1]]``
    (sorted) are skipped. Writes out_items/out_scores (m × k), best first. Sequential and
    without the GIL: batch prediction runs chunks on a pool of Python threads, each chunk's
    GEMM (BLAS, one thread) then this kernel; any number of threads may call it at once.
    """
    empty = indices[:0]
    for i in range(scores.shape[0]):
        u = users[i]
        if exclude_seen:
            ex = indices[indptr[u] : indptr[u + 1]]
        else:
            ex = empty
        _select(scores[i], ex, banned, k, out_items[i], out_scores[i])


@njit(cache=True)
def _contains(sorted_values, x):
    lo = 0
    hi = sorted_values.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < sorted_values.shape[0] and sorted_values[lo] == x


# reassociation lets LLVM vectorise the dot products; no "nnan"/"ninf": NaN and -inf
# comparisons must keep their meaning
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _by_norm(
    sorted_factors, order, sorted_norms, query, query_norm, excluded, banned, k, out_items,
    out_scores,
):  # fmt: skip
    """Exact top-k of u·v_j, scoring items in decreasing ‖v_j‖ and stopping early.
    Returns (number of items listed, number of items scored).

    ``sorted_factors[p]`` is the factor of item ``order[p]``; ``sorted_norms[p]`` its norm,
    non-increasing in p. By Cauchy–Schwarz no item from position p on can score above
    ‖u‖·‖v_p‖, so once the heap is full and that bound is below the worst kept score the
    rest cannot enter (a trained model's norms fall off fast: on epinions about a tenth of
    the items are scored). Candidates skip ``excluded`` (sorted item indices) and
    ``banned`` (bool mask over items, or empty). Same order and ties as :func:`topk_one`.
    """
    n_items, dim = sorted_factors.shape
    use_banned = banned.shape[0] > 0
    scale = np.float32(query_norm * (1.0 + _BOUND_SLACK))
    n = 0
    threshold = -np.inf
    scanned = n_items
    for p in range(n_items):
        if n == k and sorted_norms[p] * scale < threshold:
            scanned = p
            break
        s = np.float32(0.0)
        for c in range(dim):
            s += sorted_factors[p, c] * query[c]
        j = order[p]
        if n < k:
            if s != s or (use_banned and banned[j]) or _contains(excluded, j):
                continue
            out_scores[n] = s
            out_items[n] = j
            sift_up(out_scores, out_items, n)
            n += 1
            if n == k:
                threshold = out_scores[0]
        elif s > threshold or (s == threshold and j < out_items[0]):
            if (use_banned and banned[j]) or _contains(excluded, j):
                continue
            out_scores[0] = s
            out_items[0] = j
            sift_down(out_scores, out_items, k, 0)
            threshold = out_scores[0]
    sort_heap(out_scores, out_items, n)  # best first
    for c in range(n, out_items.shape[0]):
        out_items[c] = -1
        out_scores[c] = -np.inf
    return n, scanned


@njit(cache=True, nogil=True)
def topk_by_norm(
    sorted_factors, order, sorted_norms, query, query_norm, excluded, banned, k, out_items,
    out_scores,
):  # fmt: skip
    """Exact top-k of one query u against every item, by :func:`_by_norm`; returns the count.

    ``sorted_factors[p]`` is the factor of item ``order[p]``; ``sorted_norms[p]`` its norm,
    non-increasing in p. Same order and ties as :func:`topk_one`. Sequential and without
    the GIL: safe from any number of threads.
    """
    n, _ = _by_norm(
        sorted_factors, order, sorted_norms, query, query_norm, excluded, banned, k,
        out_items, out_scores,
    )  # fmt: skip
    return n


@njit(cache=True, nogil=True)
def topk_by_norm_rows(
    sorted_factors, order, sorted_norms, user_factors, user_norms, users, indptr, indices,
    exclude_seen, banned, k, out_items, out_scores, scanned,
):  # fmt: skip
    """:func:`topk_by_norm` for each user ``users[i]`` (its training items skipped when
    ``exclude_seen``); ``scanned[i]`` receives the number of items scored for that user."""
    empty = indices[:0]
    for i in range(users.shape[0]):
        u = users[i]
        ex = indices[indptr[u] : indptr[u + 1]] if exclude_seen else empty
        _, scanned[i] = _by_norm(
            sorted_factors, order, sorted_norms, user_factors[u], user_norms[u], ex, banned,
            k, out_items[i], out_scores[i],
        )  # fmt: skip


# --------------------------------------------------------------------------- the rules


def index_dtype(n_items: int) -> np.dtype:
    """The dtype of excluded item indices: int32 below 2**31 - 1 items, else int64."""
    return np.dtype(np.int32 if n_items < 2**31 - 1 else np.int64)


def banned_mask(n_items: int, filter_items=None, items=None) -> np.ndarray:
    """The kernels' ``banned``: True for an item in ``filter_items`` or, when the allow
    list ``items`` is given, outside it (both arrays of valid item indices); an empty mask
    when both are None, which the kernels read as "nothing banned" at no cost."""
    if filter_items is None and items is None:
        return np.zeros(0, dtype=np.bool_)
    if items is None:
        banned = np.zeros(n_items, dtype=np.bool_)
    else:
        banned = np.ones(n_items, dtype=np.bool_)
        banned[items] = False
    if filter_items is not None:
        banned[filter_items] = True
    return banned


def similarity_scores(item_factors, item_norms, item: int, metric: str) -> np.ndarray:
    """Similarity of every item to ``item``, in the factors' dtype: the dot product
    v_j·v_i, or for "cosine" v_j·v_i / (‖v_j‖·‖v_i‖) with a zero norm read as 1 (so an
    all-zero factor has cosine 0 with everything). ``item_norms``: ‖v_j‖ per item (read
    only for "cosine")."""
    sims = item_factors @ item_factors[item]
    if metric == "cosine":
        norms = np.where(item_norms > 0, item_norms, item_norms.dtype.type(1.0))
        sims /= norms * norms[item]
    return sims


def top_k(scores, excluded, banned, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` candidates of one score vector by :func:`topk_one`, best first.

    ``scores``: shape (n_items,), ranked as float32 when they are, else as float64;
    ``excluded``: sorted item indices to skip; ``banned``: as :func:`banned_mask`.
    Returns ``(items, scores)``: int64 indices and their scores, as many as there are
    candidates, at most k.
    """
    dtype = np.float32 if scores.dtype == np.float32 else np.float64
    scores = np.ascontiguousarray(scores, dtype=dtype)
    n_items = scores.shape[0]
    excluded = np.ascontiguousarray(excluded, dtype=index_dtype(n_items))
    width = min(k, n_items)
    out_items = np.empty(width, dtype=np.int64)
    out_scores = np.empty(width, dtype=dtype)
    banned = np.ascontiguousarray(banned, dtype=np.bool_)
    n = topk_one(scores, excluded, banned, width, out_items, out_scores)
    return out_items[:n], out_scores[:n]


# --------------------------------------------------------------------------- NumPy twins


def topk_one_numpy(scores, excluded, banned, k, out_items, out_scores):
    """Slow twin of :func:`topk_one`."""
    n_items = scores.shape[0]
    cand = np.ones(n_items, dtype=bool)
    cand[np.asarray(excluded, dtype=np.int64)] = False
    if banned.shape[0]:
        cand &= ~banned
    cand &= ~np.isnan(scores)
    idx = np.flatnonzero(cand)
    s = scores[idx]
    order = np.lexsort((idx, -s))[:k]
    n = order.shape[0]
    out_items[:n] = idx[order]
    out_scores[:n] = s[order]
    out_items[n:] = -1
    out_scores[n:] = -np.inf
    return n


def topk_rows_numpy(scores, users, indptr, indices, exclude_seen, banned, k, out_items, out_scores):
    """Slow twin of :func:`topk_rows`."""
    for i in range(scores.shape[0]):
        u = users[i]
        ex = indices[indptr[u] : indptr[u + 1]] if exclude_seen else indices[:0]
        topk_one_numpy(scores[i], ex, banned, k, out_items[i], out_scores[i])


def topk_by_norm_numpy(
    sorted_factors, order, sorted_norms, query, query_norm, excluded, banned, k, out_items,
    out_scores,
):  # fmt: skip
    """Slow twin of :func:`topk_by_norm`: every item scored, then ranked."""
    scores = np.empty(sorted_factors.shape[0], dtype=np.float32)
    scores[order] = sorted_factors @ query
    return topk_one_numpy(scores, excluded, banned, k, out_items, out_scores)
