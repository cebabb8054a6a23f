"""Orchestration of the held-out metrics: validation, chunking, threads, averaging.

The definitions live in the package docstring (``walsrec.metrics``); the kernels in
``_kernels.py``. Nothing here loops over users or non-zeros in Python: the only Python
loop is over chunks of users.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_int, check_option
from walsrec._threads import (
    PARTS_PER_THREAD,
    blas_threads,
    readonly_inputs,
    resolve_n_jobs,
    run_parts,
)
from walsrec.errors import InvalidParameterError
from walsrec.metrics import _kernels

__all__ = [
    "evaluate",
    "evaluate_scorer",
    "evaluate_topk",
    "evaluated_users",
    "metric_names",
    "popularity_baseline",
    "rmse",
]

# Bytes of one dense score block when chunk_size is None (auto): 64 MiB.
_AUTO_BLOCK_BYTES = 64 * 2**20
_MAX_AUTO_CHUNK = 4096
_NDCG_GAINS = ("binary", "raw")


def metric_names(
    k: int = 10,
    *,
    include_rmse: bool = True,
    include_auc: bool = True,
    targets: str | None = None,
) -> list:
    """The names of the reported metrics at cut-off k, in the order ``evaluate`` reports them.

    Parameters
    ----------
    k : int, default 10
        The cut-off of the ranking metrics.
    include_rmse, include_auc : bool, default True
        Whether to list ``"rmse"`` and ``"auc"``.
    targets : {"values", "binary"} or None, default None
        The targets the model was fitted to, when the names are for a trained model:
        ``"binary"`` leaves ``"rmse"`` out. rmse compares predictions with the held-out
        values, and a model fitted to binary targets predicts preferences, not values;
        against its own targets (1 for every held-out entry) rmse would reward predicting
        1 everywhere. What walsrec computes for a trained model (train's evaluations,
        :func:`walsrec.evaluate_export`) follows this rule.

    Returns
    -------
    list of str
        E.g. ``['rmse', 'precision@10', 'recall@10', 'map@10', 'ndcg@10', 'auc', 'coverage']``.

    Examples
    --------
    >>> metric_names(5, targets="binary")
    ['precision@5', 'recall@5', 'map@5', 'ndcg@5', 'auc', 'coverage']
    """
    names = ["rmse"] if include_rmse and targets != "binary" else []
    names += [f"precision@{k}", f"recall@{k}", f"map@{k}", f"ndcg@{k}"]
    if include_auc:
        names.append("auc")
    names.append("coverage")
    return names


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if sp.issparse(value):
        return f"a sparse matrix of shape {value.shape}"
    if isinstance(value, bool | str | type(None)):
        return repr(value)
    if isinstance(value, numbers.Number):
        return str(value)  # "0", not numpy's "np.int64(0)"
    return type(value).__name__


def _check_int(value: Any, name: str, owner: str, low: int, *, allow_none: bool = False) -> Any:
    return check_int(
        value, name, f"parameter of {owner}", low, allow_none=allow_none, show=_describe
    )


def _check_n_jobs(n_jobs: Any, owner: str) -> int | None:
    if n_jobs is None or (isinstance(n_jobs, numbers.Integral) and n_jobs == -1):
        return None
    if isinstance(n_jobs, numbers.Integral) and not isinstance(n_jobs, bool) and n_jobs >= 1:
        return int(n_jobs)
    raise InvalidParameterError(
        f"The 'n_jobs' parameter of {owner} must be None, -1 or an int >= 1. "
        f"Got {_describe(n_jobs)} instead."
    )


def _check_csr(matrix: Any, name: str, owner: str) -> sp.csr_matrix:
    """CSR with sorted, duplicate-free rows (duplicates summed), finite values."""
    if not sp.issparse(matrix):
        raise InvalidParameterError(
            f"The {name!r} argument of {owner} must be a scipy.sparse matrix (users × items). "
            f"Got {_describe(matrix)} instead."
        )
    if matrix.ndim != 2:
        raise InvalidParameterError(
            f"The {name!r} argument of {owner} must be 2-D. Got shape {matrix.shape} instead."
        )
    csr = sp.csr_matrix(matrix)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    if not np.issubdtype(csr.dtype, np.number) or np.issubdtype(csr.dtype, np.complexfloating):
        raise InvalidParameterError(
            f"The {name!r} argument of {owner} must hold real numbers. "
            f"Got dtype {csr.dtype} instead."
        )
    n_bad = int(np.count_nonzero(~np.isfinite(csr.data)))
    if n_bad:
        raise InvalidParameterError(
            f"The {name!r} argument of {owner} must have finite values. "
            f"Got {n_bad} NaN or infinite value(s) instead."
        )
    return csr


def _check_pair(train: Any, heldout: Any, owner: str) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    train = _check_csr(train, "train", owner)
    heldout = _check_csr(heldout, "heldout", owner)
    if train.shape != heldout.shape:
        raise InvalidParameterError(
            f"The 'heldout' argument of {owner} must have the shape of 'train' {train.shape}. "
            f"Got {heldout.shape} instead."
        )
    return train, heldout


def _check_factors(factors: Any, name: str, owner: str, n_rows: int, rows: str) -> np.ndarray:
    arr = np.asarray(factors)
    if arr.ndim != 2 or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InvalidParameterError(
            f"The {name!r} argument of {owner} must be a 2-D array of real numbers. "
            f"Got {_describe(factors)} instead."
        )
    if arr.shape[0] != n_rows:
        raise InvalidParameterError(
            f"The {name!r} argument of {owner} must have one row per {rows} ({n_rows}). "
            f"Got {arr.shape[0]} rows instead."
        )
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    if n_bad:
        raise InvalidParameterError(
            f"The {name!r} argument of {owner} must be finite. "
            f"Got {n_bad} NaN or infinite value(s) instead."
        )
    return arr


def _check_factor_pair(
    user_factors: Any, item_factors: Any, shape: tuple[int, int], owner: str
) -> tuple[np.ndarray, np.ndarray]:
    """Both factor matrices, validated, in one float dtype (float32 unless one is float64)."""
    users = _check_factors(user_factors, "user_factors", owner, shape[0], "user")
    items = _check_factors(item_factors, "item_factors", owner, shape[1], "item")
    if users.shape[1] != items.shape[1]:
        raise InvalidParameterError(
            f"The 'item_factors' argument of {owner} must have as many columns as "
            f"'user_factors' ({users.shape[1]}). Got {items.shape[1]} instead."
        )
    dtype = np.result_type(users.dtype, items.dtype, np.float32)
    return (
        np.ascontiguousarray(users, dtype=dtype),
        np.ascontiguousarray(items, dtype=dtype),
    )


def _check_metrics(metrics: Any, allowed: list, owner: str) -> list:
    if metrics is None:
        return list(allowed)
    names = [metrics] if isinstance(metrics, str) else metrics
    try:
        names = list(names)
    except TypeError:
        names = None
    if not names or any(name not in allowed for name in names):
        bad = metrics if not names else next((n for n in names if n not in allowed), metrics)
        raise InvalidParameterError(
            f"The 'metrics' parameter of {owner} must be None or a non-empty list of names "
            f"from {allowed}. Got {_describe(bad)} instead."
        )
    return [name for name in allowed if name in names]  # report in the canonical order


def _check_gain(ndcg_gain: Any, heldout: sp.csr_matrix, owner: str) -> bool:
    check_option(
        ndcg_gain,
        "ndcg_gain",
        f"parameter of {owner}",
        _NDCG_GAINS,
        rule=f"one of {list(_NDCG_GAINS)}",
        show=_describe,
    )
    raw = ndcg_gain == "raw"
    if raw and heldout.nnz and heldout.data.min() <= 0:
        raise InvalidParameterError(
            f"The 'heldout' values must all be > 0 when ndcg_gain='raw' in {owner} (they are "
            f"the gains of nDCG). Got a minimum of {float(heldout.data.min())!r} instead."
        )
    return raw


# ---------------------------------------------------------------------------------------
# threads and chunks
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _threads(n_jobs: int | None) -> Iterator[int]:
    """The kernels' thread count for ``n_jobs``; BLAS (the score blocks' products) limited
    to as many threads for the block when ``n_jobs`` is given, restored after."""
    n_threads = resolve_n_jobs(n_jobs)
    if n_jobs is None:
        yield n_threads
        return
    with blas_threads(n_threads):
        yield n_threads


def _launch(
    kernel: Callable[..., None],
    args: tuple,
    n_rows: int,
    n_threads: int,
    *,
    rows: tuple[int, ...],
    writes: tuple[int, ...],
    ptr: tuple[int, ...] = (),
) -> None:
    """``kernel(*args)`` on parts of its ``n_rows`` rows, run on ``n_threads`` threads.

    The arguments at positions ``rows`` are per-row arrays (each part gets its rows), those
    at ``ptr`` CSR row pointers (each part gets its rows' pointers and the next); arrays not
    in ``writes`` go read-only, so a kernel has one compiled specialisation whether its
    inputs came from a memory map or not.
    """
    args = readonly_inputs(args, writes)
    n_parts = max(1, min(n_rows, n_threads * PARTS_PER_THREAD))
    bounds = np.linspace(0, n_rows, n_parts + 1).astype(np.int64)

    def call(part: int) -> None:
        lo, hi = int(bounds[part]), int(bounds[part + 1])
        sliced = list(args)
        for i in rows:
            sliced[i] = args[i][lo:hi]
        for i in ptr:
            sliced[i] = args[i][lo : hi + 1]
        kernel(*sliced)

    run_parts(call, n_parts, n_threads)


def _chunk_rows(chunk_size: int | None, n_items: int, itemsize: int) -> int:
    if chunk_size is not None:
        return chunk_size
    return int(max(1, min(_MAX_AUTO_CHUNK, _AUTO_BLOCK_BYTES // max(1, n_items * itemsize))))


def _segments(h_counts: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Offsets of each user's slice in the per-chunk scratch (held-out row lengths)."""
    seg = np.zeros(users.size + 1, dtype=np.int64)
    np.cumsum(h_counts[users], out=seg[1:])
    return seg


def _summarise(
    stats: np.ndarray, n_rel: np.ndarray, covered: np.ndarray | None, names: list, k: int
) -> dict[str, float]:
    """Mean of each per-user statistic over the evaluated users (n_rel > 0)."""
    evaluated = stats[n_rel > 0]
    column = {
        f"precision@{k}": _kernels.STAT_PRECISION,
        f"recall@{k}": _kernels.STAT_RECALL,
        f"map@{k}": _kernels.STAT_AP,
        f"ndcg@{k}": _kernels.STAT_NDCG,
    }
    out: dict[str, float] = {}
    for name in names:
        if name in column:
            values = evaluated[:, column[name]]
            out[name] = float(np.sum(values) / values.size) if values.size else float("nan")
        elif name == "auc":
            values = evaluated[:, _kernels.STAT_AUC]
            values = values[~np.isnan(values)]  # users without a negative candidate
            out[name] = float(np.sum(values) / values.size) if values.size else float("nan")
        elif name == "coverage":
            out[name] = float(np.count_nonzero(covered) / covered.size) if covered.size else 0.0
    return out


def _ranking_pass(
    block_fn: Callable[[np.ndarray], np.ndarray],
    train: sp.csr_matrix,
    heldout: sp.csr_matrix,
    k: int,
    names: list,
    chunk_size: int,
    raw_gain: bool,
    who: str,
    n_threads: int,
    *,
    neg_inf_ok: bool = False,
    kernel: Callable[..., None] = _kernels.rank_block,
    on_chunk: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
) -> dict[str, float]:
    """Score the users with a held-out item chunk by chunk and average their metrics.

    A candidate score that is not finite is refused (NaN or ±inf: an overflowing product
    has no meaningful rank, and which of them it gives depends on the BLAS kernel's use of
    FMA); with ``neg_inf_ok`` a -inf is allowed and ranks last. ``on_chunk`` gets each
    chunk's top items, numbers of relevant items and statistics (rows of its users);
    ``kernel`` is ``rank_block`` or its NumPy twin (tests).
    """
    n_items = train.shape[1]
    h_counts = np.diff(heldout.indptr)
    users = np.flatnonzero(h_counts).astype(np.int64)
    h_data = heldout.data.astype(np.float64)
    want_auc = "auc" in names
    stats = np.empty((users.size, _kernels.N_STATS), dtype=np.float64)
    n_rel = np.zeros(users.size, dtype=np.int64)
    covered = np.zeros(n_items, dtype=bool)
    for start in range(0, users.size, chunk_size):
        chunk = users[start : start + chunk_size]
        block = block_fn(chunk)
        seg = _segments(h_counts, chunk)
        pos_scores = np.empty(seg[-1], dtype=block.dtype)
        gains = np.empty(seg[-1], dtype=np.float64)
        top_items = np.empty((chunk.size, k), dtype=np.int64)
        top_scores = np.empty((chunk.size, k), dtype=block.dtype)
        n_list = np.empty(chunk.size, dtype=np.int64)
        bad_count = np.empty(chunk.size, dtype=np.int64)
        rows = slice(start, start + chunk.size)
        args = (
            block, chunk, train.indptr, train.indices, heldout.indptr, heldout.indices,
            h_data, k, raw_gain, want_auc, seg, pos_scores, gains, top_items, top_scores,
            n_rel[rows], n_list, stats[rows], bad_count, neg_inf_ok,
        )  # fmt: skip
        _launch(
            kernel, args, chunk.size, n_threads,
            rows=(0, 1, 10, 13, 14, 15, 16, 17, 18), writes=(11, 12, 13, 14, 15, 16, 17, 18),
        )  # fmt: skip
        if on_chunk is not None:
            on_chunk(top_items, n_rel[rows], stats[rows])
        if bad_count.any():
            first = int(chunk[np.flatnonzero(bad_count)[0]])
            if neg_inf_ok:
                rule, got = "finite or -inf", "score(s) that are NaN or +inf"
            else:
                rule, got = "finite", "score(s) that are not finite (NaN or infinity)"
            raise InvalidParameterError(
                f"The scores of {who} must be {rule}. Got {int(bad_count.sum())} {got}, the "
                f"first for user {first}, instead."
            )
        listed = top_items[n_rel[rows] > 0]
        covered[listed[listed >= 0]] = True
    return _summarise(stats, n_rel, covered, names, k)


# ---------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------


def rmse(user_factors: Any, item_factors: Any, heldout: Any, *, n_jobs: int | None = None) -> float:
    """Root mean squared error of U·Vᵀ on the held-out entries.

    ``rmse = sqrt(Σ_{(u,i) ∈ heldout} (U[u]·V[i] − heldout[u, i])² / nnz(heldout))``, every
    stored entry counting once (duplicates are summed first), whether or not it is also a
    training entry. Each dot product is accumulated in float64; no dense
    n_users × n_items matrix is formed.

    Parameters
    ----------
    user_factors : ndarray of shape (n_users, n_factors)
        User factors U (float32 or float64; finite).
    item_factors : ndarray of shape (n_items, n_factors)
        Item factors V.
    heldout : scipy.sparse matrix of shape (n_users, n_items)
        The held-out ratings; needs at least one stored entry.
    n_jobs : int or None, default None
        Kernel threads (None or -1: all cores).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> U = np.array([[1.0, 0.0], [0.0, 2.0]]); V = np.array([[1.0, 1.0], [3.0, 0.0]])
    >>> rmse(U, V, sp.csr_matrix(np.array([[2.0, 0.0], [0.0, 1.0]])))  # errors -1, -1
    1.0
    """
    owner = "rmse"
    heldout = _check_csr(heldout, "heldout", owner)
    if heldout.nnz == 0:
        raise InvalidParameterError(
            "The 'heldout' argument of rmse must have at least one stored entry. Got 0 instead."
        )
    users, items = _check_factor_pair(user_factors, item_factors, heldout.shape, owner)
    n_jobs = _check_n_jobs(n_jobs, owner)
    with _threads(n_jobs) as n_threads:
        return _rmse(users, items, heldout, n_threads)


def _squared_errors(
    users: np.ndarray, items: np.ndarray, heldout: sp.csr_matrix, n_threads: int
) -> np.ndarray:
    """Per held-out row, Σ (U[u]·V[j] − A_uj)² (float64)."""
    out = np.empty(heldout.shape[0], dtype=np.float64)
    args = (users, items, heldout.indptr, heldout.indices, heldout.data.astype(np.float64), out)
    _launch(
        _kernels.row_squared_errors, args, heldout.shape[0], n_threads,
        rows=(0, 5), ptr=(2,), writes=(5,),
    )  # fmt: skip
    return out


def _rmse(users: np.ndarray, items: np.ndarray, heldout: sp.csr_matrix, n_threads: int) -> float:
    return float(np.sqrt(np.sum(_squared_errors(users, items, heldout, n_threads)) / heldout.nnz))


def evaluate(
    user_factors: Any,
    item_factors: Any,
    train: Any,
    heldout: Any,
    k: int = 10,
    *,
    metrics: Iterable[str] | None = None,
    chunk_size: int | None = None,
    n_jobs: int | None = None,
    ndcg_gain: str = "binary",
) -> dict[str, float]:
    """Held-out metrics of a factor model: rmse and the ranking metrics at k, in one pass.

    Users are scored a chunk at a time with one matrix product (chunk × n_items scores);
    each user's training items are excluded, the top k candidates kept (ties by item index),
    and the metrics computed per user in parallel, then averaged over the evaluated users
    (those with at least one held-out item that is not a training item). See
    :mod:`walsrec.metrics` for the exact definitions.

    Parameters
    ----------
    user_factors : ndarray of shape (n_users, n_factors)
        User factors U, finite. float32 or float64 (scores use float64 if either is).
    item_factors : ndarray of shape (n_items, n_factors)
        Item factors V; score(u, i) = U[u]·V[i].
    train : scipy.sparse matrix of shape (n_users, n_items)
        Training interactions; every stored entry is excluded from that user's ranking.
    heldout : scipy.sparse matrix of shape (n_users, n_items)
        Held-out interactions: stored entries are the relevant items, values the ratings
        (used by rmse, and by nDCG when ``ndcg_gain='raw'``).
    k : int, default 10
        Length of the top-k lists.
    metrics : list of str or None, default None
        Which metrics to compute, from ``metric_names(k)``; None computes them all. Leaving
        out ``"auc"`` skips its per-candidate count; leaving out ``"rmse"`` its pass.
    chunk_size : int or None, default None
        Users scored per matrix product; memory is about chunk_size × n_items scores.
        None picks it so that a block stays under 64 MiB (at most 4096 users).
    n_jobs : int or None, default None
        Threads for the kernels and BLAS (None or -1: all cores).
    ndcg_gain : {'binary', 'raw'}, default 'binary'
        nDCG gain of a relevant item: 1, or its held-out value (which must be > 0).

    Returns
    -------
    dict of str to float
        Keyed by the names in ``metric_names(k)`` (e.g. ``"ndcg@10"``), in that order.
        A ranking metric is NaN when no user qualifies (``"auc"``: no user with a negative
        candidate); ``"coverage"`` is then 0. :func:`evaluated_users` lists the users the
        means run over.

    Raises
    ------
    InvalidParameterError
        Shapes that do not match, k < 1, non-finite factors or values, unknown metric names,
        a heldout matrix without stored entries; scores U[u]·V[i] that are not finite
        (finite factors so large that their products overflow, to ±inf or NaN).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> U = np.eye(2); V = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    >>> train = sp.csr_matrix((2, 3)); heldout = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]]))
    >>> evaluate(U, V, train, heldout, k=1, metrics=["precision@1", "coverage"])
    {'precision@1': 1.0, 'coverage': 0.6666666666666666}
    """
    owner = "evaluate"
    k = _check_int(k, "k", owner, 1)
    train, heldout = _check_pair(train, heldout, owner)
    names = _check_metrics(metrics, metric_names(k), owner)
    chunk_size = _check_int(chunk_size, "chunk_size", owner, 1, allow_none=True)
    n_jobs = _check_n_jobs(n_jobs, owner)
    raw_gain = _check_gain(ndcg_gain, heldout, owner)
    users, items = _check_factor_pair(user_factors, item_factors, train.shape, owner)
    if heldout.nnz == 0:
        raise InvalidParameterError(
            "The 'heldout' argument of evaluate must have at least one stored entry. Got 0 instead."
        )
    chunk = _chunk_rows(chunk_size, items.shape[0], items.dtype.itemsize)
    items_t = np.ascontiguousarray(items.T)

    def block_fn(chunk_users: np.ndarray) -> np.ndarray:
        # finite factors can still overflow (to ±inf, or NaN where inf − inf meets, which
        # one depending on the BLAS kernel): the kernel counts them and they are refused below
        with np.errstate(over="ignore", invalid="ignore"):
            return users[chunk_users] @ items_t

    out: dict[str, float] = {}
    with _threads(n_jobs) as n_threads:
        if "rmse" in names:
            out["rmse"] = _rmse(users, items, heldout, n_threads)
        ranking = [name for name in names if name != "rmse"]
        if ranking:
            who = "the factors (U·Vᵀ)"
            out.update(
                _ranking_pass(block_fn, train, heldout, k, ranking, chunk, raw_gain, who, n_threads)
            )
    return out


def evaluate_scorer(
    scorer: Callable[[np.ndarray], np.ndarray] | np.ndarray,
    train: Any,
    heldout: Any,
    k: int = 10,
    *,
    metrics: Iterable[str] | None = None,
    chunk_size: int | None = None,
    n_jobs: int | None = None,
    ndcg_gain: str = "binary",
) -> dict[str, float]:
    """Ranking metrics at k of any scorer, with the same pass and definitions as ``evaluate``.

    Parameters
    ----------
    scorer : callable or ndarray of shape (n_items,)
        ``scorer(user_indices)`` gets an int64 array of m user indices and returns their
        scores as an array of shape (m, n_items) (float32 or float64, finite; -inf is
        allowed and ranks last, NaN and +inf are refused). A 1-D array gives every user
        the same item scores, e.g. ``popularity_baseline(train)`` for the most-popular
        baseline.
    train, heldout, k, chunk_size, n_jobs, ndcg_gain
        As in :func:`evaluate`.
    metrics : list of str or None, default None
        From ``metric_names(k, include_rmse=False)``; None computes them all.

    Returns
    -------
    dict of str to float
        As in :func:`evaluate`, without ``"rmse"``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> train = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]))
    >>> heldout = sp.csr_matrix(np.array([[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]))
    >>> scores = evaluate_scorer(popularity_baseline(train), train, heldout, k=1)
    >>> scores["precision@1"], scores["recall@1"]  # tops: item 2, item 1, item 3
    (1.0, 1.0)
    """
    owner = "evaluate_scorer"
    k = _check_int(k, "k", owner, 1)
    train, heldout = _check_pair(train, heldout, owner)
    names = _check_metrics(metrics, metric_names(k, include_rmse=False), owner)
    chunk_size = _check_int(chunk_size, "chunk_size", owner, 1, allow_none=True)
    n_jobs = _check_n_jobs(n_jobs, owner)
    raw_gain = _check_gain(ndcg_gain, heldout, owner)
    n_items = train.shape[1]
    if heldout.nnz == 0:
        raise InvalidParameterError(
            "The 'heldout' argument of evaluate_scorer must have at least one stored entry. "
            "Got 0 instead."
        )

    # memory is sized for float64 scores (a callable may return float32: then half of it)
    chunk = _chunk_rows(chunk_size, n_items, 8)
    if callable(scorer):

        def block_fn(chunk_users: np.ndarray) -> np.ndarray:
            block = np.asarray(scorer(chunk_users))
            if block.shape != (chunk_users.size, n_items) or not (
                np.issubdtype(block.dtype, np.floating) or np.issubdtype(block.dtype, np.integer)
            ):
                raise InvalidParameterError(
                    f"The 'scorer' of evaluate_scorer must return real scores of shape "
                    f"{(chunk_users.size, n_items)} for {chunk_users.size} users. "
                    f"Got {_describe(block)} instead."
                )
            dtype = np.float32 if block.dtype == np.float32 else np.float64
            return np.ascontiguousarray(block, dtype=dtype)

    else:
        item_scores = np.asarray(scorer)
        if item_scores.shape != (n_items,) or not (
            np.issubdtype(item_scores.dtype, np.floating)
            or np.issubdtype(item_scores.dtype, np.integer)
        ):
            raise InvalidParameterError(
                f"The 'scorer' of evaluate_scorer must be a callable or an array of item scores "
                f"of shape ({n_items},). Got {_describe(scorer)} instead."
            )
        # every user gets the same row: build one block, hand out its first rows (the
        # kernel only reads scores)
        tile = np.empty((min(chunk, heldout.shape[0]), n_items), dtype=np.float64)
        tile[:] = item_scores

        def block_fn(chunk_users: np.ndarray) -> np.ndarray:
            return tile[: chunk_users.size]

    with _threads(n_jobs) as n_threads:
        return _ranking_pass(
            block_fn, train, heldout, k, names, chunk, raw_gain, "the scorer", n_threads,
            neg_inf_ok=True,
        )  # fmt: skip


def evaluate_topk(
    top_items: Any,
    train: Any,
    heldout: Any,
    k: int | None = None,
    *,
    metrics: Iterable[str] | None = None,
    n_jobs: int | None = None,
    ndcg_gain: str = "binary",
) -> dict[str, float]:
    """Ranking metrics of precomputed top-k lists (from any recommender), without AUC.

    Parameters
    ----------
    top_items : array-like of int, shape (n_users, width)
        Row u is user u's ranked list of item indices, best first, without repeats; a list
        shorter than ``width`` is padded with -1 at the end.
    train : scipy.sparse matrix of shape (n_users, n_items) or None
        Training interactions: held-out items that are also training items of the user are
        not relevant (as in :func:`evaluate`). None: no exclusion. The lists themselves are
        taken as given.
    heldout : scipy.sparse matrix of shape (n_users, n_items)
        Held-out interactions (stored entries are the relevant items).
    k : int or None, default None
        Cut-off; None uses ``width``. Must be <= width.
    metrics : list of str or None, default None
        From ``metric_names(k, include_rmse=False, include_auc=False)``; None: all.
    n_jobs, ndcg_gain
        As in :func:`evaluate`.

    Returns
    -------
    dict of str to float
        ``precision@k``, ``recall@k``, ``map@k``, ``ndcg@k`` averaged over users with a
        relevant item, and ``coverage`` (distinct items in those users' first k places /
        n_items).
    """
    owner = "evaluate_topk"
    heldout = _check_csr(heldout, "heldout", owner)
    if train is None:
        train = sp.csr_matrix(heldout.shape, dtype=np.float64)
    else:
        train, heldout = _check_pair(train, heldout, owner)
    n_users, n_items = heldout.shape
    top = np.asarray(top_items)
    if top.ndim != 2 or top.shape[0] != n_users or not np.issubdtype(top.dtype, np.integer):
        raise InvalidParameterError(
            f"The 'top_items' argument of {owner} must be an int array with one row per user "
            f"({n_users}). Got {_describe(top)} instead."
        )
    if top.shape[1] < 1:
        raise InvalidParameterError(
            f"The 'top_items' argument of {owner} must have at least one column. "
            f"Got {top.shape} instead."
        )
    k = _check_int(top.shape[1] if k is None else k, "k", owner, 1)
    if k > top.shape[1]:
        raise InvalidParameterError(
            f"The 'k' parameter of {owner} must be <= the width of 'top_items' "
            f"({top.shape[1]}). Got {k} instead."
        )
    top = np.ascontiguousarray(top[:, :k], dtype=np.int64)
    _check_lists(top, n_items, owner)
    names = _check_metrics(metrics, metric_names(k, include_rmse=False, include_auc=False), owner)
    n_jobs = _check_n_jobs(n_jobs, owner)
    raw_gain = _check_gain(ndcg_gain, heldout, owner)
    if heldout.nnz == 0:
        raise InvalidParameterError(
            f"The 'heldout' argument of {owner} must have at least one stored entry. Got 0 instead."
        )
    h_counts = np.diff(heldout.indptr)
    users = np.flatnonzero(h_counts).astype(np.int64)
    seg = _segments(h_counts, users)
    gains = np.empty(seg[-1], dtype=np.float64)
    stats = np.empty((users.size, _kernels.N_STATS), dtype=np.float64)
    n_rel = np.zeros(users.size, dtype=np.int64)
    args = (
        top[users], users, k, train.indptr, train.indices, heldout.indptr, heldout.indices,
        heldout.data.astype(np.float64), raw_gain, seg, gains, n_rel, stats,
    )  # fmt: skip
    with _threads(n_jobs) as n_threads:
        _launch(
            _kernels.topk_block, args, users.size, n_threads,
            rows=(0, 1, 9, 11, 12), writes=(10, 11, 12),
        )  # fmt: skip
    covered = np.zeros(n_items, dtype=bool)
    listed = top[users[n_rel > 0]]
    covered[listed[listed >= 0]] = True
    return _summarise(stats, n_rel, covered, names, k)


def _check_lists(top: np.ndarray, n_items: int, owner: str) -> None:
    """Items in [-1, n_items), -1 only as trailing padding, no repeats within a row."""
    if top.size and (top.min() < -1 or top.max() >= n_items):
        raise InvalidParameterError(
            f"The 'top_items' argument of {owner} must hold item indices in [0, {n_items}) "
            f"or -1 as padding. Got values in [{top.min()}, {top.max()}] instead."
        )
    pad = top < 0
    if np.any(pad[:, :-1] & ~pad[:, 1:]):
        row = int(np.flatnonzero(np.any(pad[:, :-1] & ~pad[:, 1:], axis=1))[0])
        raise InvalidParameterError(
            f"The 'top_items' argument of {owner} must pad with -1 only at the end of a row. "
            f"Got {top[row].tolist()} in row {row} instead."
        )
    ordered = np.sort(top, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise InvalidParameterError(
            f"The 'top_items' argument of {owner} must not repeat an item within a row. "
            f"Got {top[row].tolist()} in row {row} instead."
        )


def popularity_baseline(train: Any) -> np.ndarray:
    """Most-popular item scores: the number of users with a training entry for each item.

    Pass the result to :func:`evaluate_scorer` as the scorer to report the most-popular
    baseline with the same definitions as the model (ties go to the lower item index).

    Parameters
    ----------
    train : scipy.sparse matrix of shape (n_users, n_items)
        Training interactions (every stored entry counts once, whatever its value).

    Returns
    -------
    ndarray of shape (n_items,), float64
    """
    train = _check_csr(train, "train", "popularity_baseline")
    return np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64)


def evaluated_users(train: Any, heldout: Any) -> np.ndarray:
    """The users the ranking metrics average over: at least one held-out non-training item.

    Parameters
    ----------
    train : scipy.sparse matrix of shape (n_users, n_items) or None
        Training interactions (None: no exclusion, as in :func:`evaluate_topk`).
    heldout : scipy.sparse matrix of shape (n_users, n_items)
        Held-out interactions.

    Returns
    -------
    ndarray of int64
        Sorted user indices; its size is the number of users evaluated.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> train = sp.csr_matrix(np.array([[1, 0], [0, 1], [0, 0]]))
    >>> heldout = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 0]]))  # user 0's is in train
    >>> evaluated_users(train, heldout)
    array([1])
    """
    owner = "evaluated_users"
    if train is None:
        heldout = _check_csr(heldout, "heldout", owner)
        return np.flatnonzero(np.diff(heldout.indptr)).astype(np.int64)
    train, heldout = _check_pair(train, heldout, owner)
    n_items = np.int64(heldout.shape[1])
    h_rows = np.repeat(np.arange(heldout.shape[0], dtype=np.int64), np.diff(heldout.indptr))
    t_rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    # both are canonical CSR, so these keys are sorted and unique
    h_keys = h_rows * n_items + heldout.indices
    t_keys = t_rows * n_items + train.indices
    in_train = np.isin(h_keys, t_keys, assume_unique=True)
    return np.unique(h_rows[~in_train])
