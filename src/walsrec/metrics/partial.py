"""Held-out evaluation in parts: each part of the users returns sums, one call adds them up.

:func:`walsrec.metrics.evaluate` over all users equals, to float64 rounding, evaluating
each contiguous block of users with :func:`part_sums` (the block's user factors, all item
factors, the block's rows of the training and held-out matrices) and :func:`combine` of
the answers. The Dask back end runs one :func:`part_sums` per user partition on the worker
that holds it; only the sums (a few floats and a bit per item) travel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from walsrec.metrics import _api
from walsrec.metrics import _kernels as mk

__all__ = ["check_request", "combine", "part_sums"]


def check_request(
    k: Any, metrics: Iterable[str] | None, chunk_size: Any, owner: str
) -> tuple[int, list[str], int | None]:
    """(k, the metric names in order, chunk_size), checked as :func:`evaluate` checks them
    and named after ``owner`` in errors."""
    k = _api._check_int(k, "k", owner, 1)
    names = _api._check_metrics(metrics, _api.metric_names(k), owner)
    chunk_size = _api._check_int(chunk_size, "chunk_size", owner, 1, allow_none=True)
    return k, names, chunk_size


def part_sums(
    user_factors,
    item_factors,
    train,
    heldout,
    *,
    k: int,
    names: Sequence[str],
    ndcg_gain: str = "binary",
    chunk_size: int | None = None,
    n_jobs: int | None = None,
    owner: str = "evaluate",
    first_user: int = 0,
) -> dict:
    """One block of users' share of :func:`walsrec.metrics.evaluate`: sums, not means.

    ``train``/``heldout`` are the block's rows (CSR, all items), ``user_factors`` its users'
    factors, ``first_user`` the block's first user (named in errors). Training items are
    excluded from the rankings, as ``evaluate`` does, with the same kernels. Returns the
    squared error sum and entry count (rmse), per-statistic sums over the evaluated users
    and their count, AUC's sum and count (users with a negative candidate), and the items
    in some evaluated user's top k (packed bits).
    """
    n_items = item_factors.shape[0]
    train, heldout = _api._check_pair(train, heldout, owner)
    raw_gain = _api._check_gain(ndcg_gain, heldout, owner)
    users, items = _api._check_factor_pair(user_factors, item_factors, train.shape, owner)
    out = {"sse": 0.0, "n": int(heldout.nnz), "sums": np.zeros(mk.N_STATS), "n_eval": 0}
    out.update(auc_sum=0.0, auc_n=0, covered=np.zeros(n_items, dtype=bool))
    with _api._threads(n_jobs) as n_threads:
        if "rmse" in names and heldout.nnz:
            out["sse"] = float(np.sum(_api._squared_errors(users, items, heldout, n_threads)))
        ranking = [name for name in names if name != "rmse"]
        chunks = []
        if ranking and heldout.nnz:
            _rank(
                users, items, train, heldout, k, ranking, chunk_size, raw_gain, first_user,
                n_threads, chunks,
            )  # fmt: skip
    for top, n_rel, stats in chunks:
        evaluated = n_rel > 0
        out["n_eval"] += int(np.count_nonzero(evaluated))
        out["sums"] += np.sum(stats[evaluated], axis=0)
        auc = stats[evaluated, mk.STAT_AUC]
        auc = auc[~np.isnan(auc)]
        out["auc_sum"] += float(np.sum(auc))
        out["auc_n"] += int(auc.size)
        listed = top[evaluated]
        out["covered"][listed[listed >= 0]] = True
    out["sums"] = np.nan_to_num(out["sums"])  # AUC's column (NaN for some users) is unused
    out["covered"] = np.packbits(out["covered"])
    return out


def _rank(users, items, train, heldout, k, ranking, chunk_size, raw_gain, first, n_threads, chunks):
    """evaluate's ranking pass over the block, keeping each chunk's per-user statistics."""
    chunk = _api._chunk_rows(chunk_size, items.shape[0], items.dtype.itemsize)
    items_t = np.ascontiguousarray(items.T)

    def block_fn(chunk_users):
        with np.errstate(over="ignore", invalid="ignore"):
            return users[chunk_users] @ items_t

    who = f"the factors (U·Vᵀ; users numbered from {first}, this partition's first)"
    _api._ranking_pass(
        block_fn, train, heldout, k, ranking, chunk, raw_gain, who, n_threads,
        on_chunk=lambda *arrays: chunks.append(arrays),
    )  # fmt: skip


def combine(parts: Sequence[dict], names: Sequence[str], k: int, n_items: int) -> dict:
    """The metrics (keyed and ordered as :func:`walsrec.metrics.evaluate`'s answer) from
    every block's :func:`part_sums`."""
    out: dict[str, float] = {}
    n = sum(r["n"] for r in parts)
    n_eval = sum(r["n_eval"] for r in parts)
    sums = np.sum([r["sums"] for r in parts], axis=0)
    auc_n = sum(r["auc_n"] for r in parts)
    covered = np.zeros(n_items, dtype=bool)
    for r in parts:
        covered |= np.unpackbits(r["covered"], count=n_items).astype(bool)
    column = {
        f"precision@{k}": mk.STAT_PRECISION,
        f"recall@{k}": mk.STAT_RECALL,
        f"map@{k}": mk.STAT_AP,
        f"ndcg@{k}": mk.STAT_NDCG,
    }
    for name in names:
        if name == "rmse":
            out[name] = float(np.sqrt(sum(r["sse"] for r in parts) / n))
        elif name in column:
            out[name] = float(sums[column[name]] / n_eval) if n_eval else float("nan")
        elif name == "auc":
            auc = sum(r["auc_sum"] for r in parts)
            out[name] = float(auc / auc_n) if auc_n else float("nan")
        elif name == "coverage":
            out[name] = float(np.count_nonzero(covered) / n_items) if n_items else 0.0
    return out
