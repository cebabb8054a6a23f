"""The bounded heap both top-k scans keep (walsrec.model.topk's and the metrics'), in numba.

A heap of the best k (score, item) pairs seen so far, with the *worst* kept pair at the root,
in two parallel arrays ``hs`` (scores) and ``hi`` (items). Order: score descending, ties by
item index ascending, so "worse" means a lower score, or the same score and a larger index.
"""

from __future__ import annotations

from numba import njit

__all__ = ["sift_down", "sift_up", "sort_heap", "worse"]


@njit(cache=True, inline="always")
def worse(sa, ja, sb, jb):
    """(sa, ja) ranks below (sb, jb): lower score, or the same score and a larger index."""
    return sa < sb or (sa == sb and ja > jb)


@njit(cache=True)
def sift_down(hs, hi, n, pos):
    """Restore the heap below ``pos`` over the first n entries (the root is the worst)."""
    while True:
        child = 2 * pos + 1
        if child >= n:
            return
        right = child + 1
        if right < n and worse(hs[right], hi[right], hs[child], hi[child]):
            child = right
        if not worse(hs[child], hi[child], hs[pos], hi[pos]):
            return
        hs[pos], hs[child] = hs[child], hs[pos]
        hi[pos], hi[child] = hi[child], hi[pos]
        pos = child


@njit(cache=True)
def sift_up(hs, hi, pos):
    """Move the pair at ``pos`` up while it is worse than its parent."""
    while pos > 0:
        parent = (pos - 1) >> 1
        if not worse(hs[pos], hi[pos], hs[parent], hi[parent]):
            return
        hs[pos], hs[parent] = hs[parent], hs[pos]
        hi[pos], hi[parent] = hi[parent], hi[pos]
        pos = parent


@njit(cache=True)
def sort_heap(hs, hi, n):
    """Sort a heap of the first n entries best first, in place: move the worst (the root)
    to the back and restore the heap before it, n - 1 times."""
    for end in range(n - 1, 0, -1):
        hs[0], hs[end] = hs[end], hs[0]
        hi[0], hi[end] = hi[end], hi[0]
        sift_down(hs, hi, end, 0)
