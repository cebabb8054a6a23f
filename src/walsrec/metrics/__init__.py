"""Held-out evaluation metrics: ``rmse`` and the ranking metrics at k.

A model scores user u and item i as ``score(u, i) = U[u]·V[i]``. Evaluation takes the
training matrix ``train`` and the held-out matrix ``heldout`` (both CSR, users × items, same
shape). Reported names are exactly ``"rmse"``, ``"precision@{k}"``, ``"recall@{k}"``,
``"map@{k}"``, ``"ndcg@{k}"``, ``"auc"`` and ``"coverage"`` (see :func:`metric_names`).

Entry points
------------
- :func:`evaluate` (factors) computes everything in one pass over the users, a chunk at a
  time: one matrix product scores the chunk, a numba kernel run in parts on the kernels'
  threads ranks every user in it and computes its metrics.
- :func:`evaluate_scorer` does the same for any scorer ``scorer(user_indices) -> scores``
  or a fixed vector of item scores, e.g. :func:`popularity_baseline` (the most-popular
  baseline, reported with exactly the same definitions as the model) or
  :func:`ease_baseline` (EASE, a strong item-item baseline for catalogs up to 20,000 items).
- :func:`evaluate_topk` evaluates precomputed top-k lists (no AUC).
- :func:`rmse` alone; :func:`evaluated_users` lists the users the ranking means run over.

Definitions
-----------
The candidates of user u are the items not in u's training row; training items never
appear in u's ranking. The *relevant* items R_u are u's held-out items that are not also
training items (a held-out item that is also a training item could never be recommended,
so it would only cap recall below 1; with a proper split there are none). A user is
*evaluated* when |R_u| >= 1; every ranking metric is the plain mean over evaluated users
(users with no held-out item, or whose held-out items are all training items, are left
out). A user with fewer than k candidates simply gets a shorter list.

The ranking orders candidates by score, descending; **ties are broken by item index,
ascending** (deterministic, the order a stable sort gives). With the top-k list
l_1..l_n (n = min(k, #candidates)), rel_r = 1 if l_r ∈ R_u, hits(r) = Σ_{s<=r} rel_s:

- ``precision@k`` = hits(n) / k. The denominator is k even when the list is shorter or
  |R_u| < k, so the best attainable value may be below 1 (Microsoft Recommenders'
  ``precision_at_k``, same as Spark's ``precisionAt``).
- ``recall@k`` = hits(n) / |R_u| (Microsoft Recommenders' ``recall_at_k``).
- ``map@k``: AP@k = Σ_r rel_r · hits(r)/r / min(|R_u|, k). This is Microsoft Recommenders'
  ``map_at_k`` (from Spark's ``meanAveragePrecisionAt``; also benfred/implicit's ``map``).
  The denominator min(|R_u|, k) is the largest number of hits a list of k can hold, so a
  perfect ranking scores 1 for every user: dividing by |R_u| (their ``map``, without @k)
  would cap users with more than k held-out items at k/|R_u|, and dividing by k would cap
  users with fewer than k at |R_u|/k.
- ``ndcg@k`` = DCG/IDCG with DCG = Σ_r g(l_r) · rel_r / log2(r + 1) and IDCG the same sum
  for the ideal list: the min(|R_u|, k) largest gains of R_u at ranks 1, 2, .... Gains are
  binary by default (g = 1 for every relevant item, Microsoft Recommenders'
  ``score_type='binary'``); ``ndcg_gain='raw'`` uses the held-out values as gains
  (their ``score_type='raw'``; values must be > 0). Microsoft Recommenders' default log
  base is e; nDCG is a ratio, so the base cancels and the value is the same.
- ``auc``: per-user AUC over all candidates, positives R_u against every other
  candidate (the negatives), ties counted as 1/2:
  AUC_u = (#{(p, q): s_p > s_q} + ½ #{(p, q): s_p = s_q}) / (|R_u| · #negatives),
  averaged over evaluated users that have at least one negative. This is the per-user
  AUC of Rendle et al.'s BPR paper (with ½ for ties, as scikit-learn's ``roc_auc_score``);
  it is not limited to k, and it is not Microsoft Recommenders' ``auc``, which pools all
  users' predictions into one ROC curve.
- ``coverage`` = (number of distinct items in the top-k lists of the evaluated users) /
  n_items (the whole catalog, i.e. every column of the matrices). Microsoft Recommenders'
  ``catalog_coverage`` divides by the distinct items of the training data instead.
- ``rmse`` = sqrt(mean over the held-out entries of (U[u]·V[i] − heldout[u, i])²), over
  every stored held-out entry (including any that are also training entries).

A ranking metric is NaN when no user qualifies for it. Stored entries define relevance
whatever their value (an explicitly stored 0 is relevant); duplicates are summed first.

Performance
-----------
Memory is bounded by ``chunk_size × n_items`` scores plus O(n_users · k). Per user the
kernel makes one pass over the candidates: a heap of size k keeps the top k. AUC adds, per
positive, one vectorised comparison pass over the user's scores (or, above 128 positives,
a binary search per candidate among the sorted positive scores); nothing is fully sorted.
AUC is the costliest metric: leaving ``"auc"`` out of ``metrics`` skips it. Results are
bitwise identical for any ``chunk_size`` and thread count, given the same scores.
"""

from __future__ import annotations

from walsrec.metrics._api import (
    evaluate,
    evaluate_scorer,
    evaluate_topk,
    evaluated_users,
    metric_names,
    popularity_baseline,
    rmse,
)
from walsrec.metrics._baselines import EASE_MAX_ITEMS, EASE_REGULARIZATION, ease_baseline

__all__ = [
    "EASE_MAX_ITEMS",
    "EASE_REGULARIZATION",
    "ease_baseline",
    "evaluate",
    "evaluate_scorer",
    "evaluate_topk",
    "evaluated_users",
    "metric_names",
    "popularity_baseline",
    "rmse",
]
