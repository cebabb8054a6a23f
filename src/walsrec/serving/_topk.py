"""Top-k selection kernels for serving, and their slow NumPy twins.

Order everywhere: score descending, ties by item index ascending. A candidate is an item
that is neither in the row's excluded (seen) indices nor marked in ``banned``. Each kernel
walks the candidates once, gap by gap between the sorted excluded indices (no per-item
membership test), keeping the best k in a heap whose root is the worst kept item.

Outputs are padded with item -1 and score -inf when fewer than k candidates exist.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from walsrec._topk_heap import sift_down, sift_up

__all__ = [
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
    # heap sort: pop the worst to the back, leaving best first
    m = n
    while m > 1:
        m -= 1
        out_scores[0], out_scores[m] = out_scores[m], out_scores[0]
        out_items[0], out_items[m] = out_items[m], out_items[0]
        sift_down(out_scores, out_items, m, 0)
    for c in range(n, out_items.shape[0]):
        out_items[c] = -1
        out_scores[c] = -np.inf
    return n


@njit(cache=True)
def topk_one(scores, excluded, banned, k, out_items, out_scores):
    """Top-k of one score vector (n_items,), sequential: safe from any number of threads."""
    return _select(scores, excluded, banned, k, out_items, out_scores)


@njit(cache=True, nogil=True)
def topk_rows(scores, users, indptr, indices, exclude_seen, banned, k, out_items, out_scores):
    """Top-k of each row of ``scores`` (m × n_items); row i belongs to user ``users[i]``.

    With ``exclude_seen`` the user's training items ``indices[indptr[u]:indptr[u+1]]``
    (sorted) are skipped. Writes out_items/out_scores (m × k), best first. Sequential and
    without the GIL: batch prediction runs chunks on a pool of Python threads, each chunk's
    GEMM (BLAS, one thread) then this kernel, so no numba threading layer is involved and
    any number of threads may call it at once.
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
    m = n
    while m > 1:
        m -= 1
        out_scores[0], out_scores[m] = out_scores[m], out_scores[0]
        out_items[0], out_items[m] = out_items[m], out_items[0]
        sift_down(out_scores, out_items, m, 0)
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
