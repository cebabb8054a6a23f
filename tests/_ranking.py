"""The ranking rules of walsrec.model.topk as a dense oracle, for every top-k test."""

from __future__ import annotations

import numpy as np


def lexsort_top(scores, k, excluded=(), filter_items=None, items=None):
    """The ranking rules, densely: candidates are allowed, not filtered, not excluded and
    not NaN; order by score descending, then index ascending."""
    n = scores.shape[0]
    ok = ~np.isnan(scores)
    ok[np.asarray(excluded, dtype=np.int64)] = False
    if filter_items is not None:
        ok[np.asarray(filter_items, dtype=np.int64)] = False
    if items is not None:
        allowed = np.zeros(n, dtype=bool)
        allowed[np.asarray(items, dtype=np.int64)] = True
        ok &= allowed
    idx = np.flatnonzero(ok)
    return idx[np.lexsort((idx, -scores[idx]))][:k]
