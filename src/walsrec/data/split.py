"""Splits of an interaction matrix into a part to fit and a part to validate on.

:func:`validation_split` carves about a fraction of each user's interactions out of a
training matrix: ``walsrec tune`` scores its trials on such splits, and train's
``regularization = "auto"`` chooses λ on them.

The split is defined entry by entry from one PCG64 stream seeded ``seed``: output i (i <
n_users) is user i's uniform draw (``(word >> 11) · 2⁻⁵³``, as ``Generator.random``), and
entry j's tie-break is 31 bits of output ``n_users + j // 2`` (its low 32-bit half for even
j, its high half for odd j, shifted right once; as ``Generator.integers(0, 2**31)``). So a
range of rows can be split alone (:func:`validation_mask` jumps the stream to its first
row and entry with ``PCG64.advance``), and a Dask cluster's partitions together split
exactly as one machine does.

``walsrec prepare`` holds out its eval interactions the same way (:func:`holdout_mask`),
over the matrix of the pairs it keeps: ``user`` as above, ``time`` the same but ranking
each user's entries latest first (ties by the tie-break), and ``random`` each entry j with
probability ``fraction``, by output j's uniform draw.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_real

__all__ = [
    "check_fraction",
    "entries_where",
    "holdout_mask",
    "sample_positions",
    "sampled_validation_split",
    "uniform_draws",
    "users_at",
    "validation_draws",
    "validation_mask",
    "validation_split",
]

_TO_UNIT = 1.0 / 9007199254740992.0  # 2⁻⁵³


def check_fraction(value, owner: str = "parameter of tune") -> float:
    """``value`` as the fraction of each user's entries held out: a float in (0, 1)."""
    return check_real(
        value,
        "validation_fraction",
        owner,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        finite=False,
        kind="float",
    )


def validation_split(
    user_items: sp.csr_matrix, fraction: float = 0.1, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Carve a per-user validation part out of a training matrix.

    About ``fraction`` of each user's interactions (stochastic rounding, as ``walsrec
    prepare --split user``), chosen at random, never all of them: a user with one
    interaction keeps it for fitting.

    Parameters
    ----------
    user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
    fraction : float in (0, 1), default 0.1
    seed : int, default 0

    Returns
    -------
    fit, validation : scipy.sparse.csr_matrix, same shape and dtype as ``user_items``
        Disjoint; together they hold exactly the entries of ``user_items``.
    """
    fraction = check_fraction(fraction)
    x = user_items.tocsr()
    if not x.has_canonical_format:
        x = x.copy()
        x.sum_duplicates()
    n_users = x.shape[0]
    is_val = validation_mask(x.indptr, 0, 0, n_users, fraction, seed)
    return entries_where(x, ~is_val), entries_where(x, is_val)


def entries_where(x: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    """The entries of the CSR matrix ``x`` where ``mask`` (one bool per stored entry) is
    True, in a matrix of the same shape and dtypes."""
    n = x.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(x.indptr))
    indptr = np.zeros(n + 1, dtype=x.indptr.dtype)
    np.cumsum(np.bincount(rows[mask], minlength=n), out=indptr[1:])
    return sp.csr_matrix(
        (np.asarray(x.data)[mask], np.asarray(x.indices)[mask], indptr), shape=x.shape
    )


def uniform_draws(seed: int, lo: int, hi: int) -> np.ndarray:
    """Outputs ``lo:hi`` of the PCG64 stream seeded ``seed`` as uniform float64 draws in
    [0, 1), as ``np.random.default_rng(seed).random(hi)[lo:]`` gives them."""
    bits = np.random.PCG64(seed)
    bits.advance(lo)
    return (bits.random_raw(hi - lo) >> np.uint64(11)) * _TO_UNIT


def validation_draws(
    seed: int, n_users: int, lo: int, hi: int, entry_lo: int, entry_hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """The draws of users ``lo:hi`` (uniform, float64) and of entries ``entry_lo:entry_hi``
    (31-bit tie-breaks, int64) of the split seeded ``seed`` (see the module docstring)."""
    u = uniform_draws(seed, lo, hi)
    first = entry_lo // 2
    bits = np.random.PCG64(seed)
    bits.advance(n_users + first)
    words = bits.random_raw((entry_hi + 1) // 2 - first)
    halves = np.empty(2 * words.size, dtype=np.uint64)
    halves[0::2] = words & np.uint64(0xFFFFFFFF)
    halves[1::2] = words >> np.uint64(32)
    skip = entry_lo - 2 * first
    r = (halves[skip : skip + entry_hi - entry_lo] >> np.uint64(1)).astype(np.int64)
    return u, r


def validation_mask(
    indptr: np.ndarray, lo: int, entry_lo: int, n_users: int, fraction: float, seed: int
) -> np.ndarray:
    """Which entries of rows ``lo:lo + len(indptr) - 1`` the split seeded ``seed`` holds
    out: ``indptr`` is those rows' CSR index pointer (from 0), ``entry_lo`` the position of
    their first entry in the whole matrix, ``n_users`` its rows. About ``fraction`` of
    each row (stochastic rounding), chosen at random, never all of a row."""
    return holdout_mask(indptr, lo, entry_lo, n_users, fraction, seed, "user")


def holdout_mask(
    indptr: np.ndarray,
    lo: int,
    entry_lo: int,
    n_users: int,
    fraction: float,
    seed: int,
    how: str,
    times: np.ndarray | None = None,
) -> np.ndarray:
    """Which entries of rows ``lo:lo + len(indptr) - 1`` the split ``how`` seeded ``seed``
    holds out (arguments as :func:`validation_mask`'s).

    ``how`` is ``"random"`` (each entry with probability ``fraction``), ``"user"`` (about
    ``fraction`` of each row, stochastic rounding, chosen at random, never all of a row) or
    ``"time"`` (as ``"user"``, each row's latest entries by ``times``, one per entry, ties
    broken at random).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indptr = indptr - indptr[0]
    n = indptr.shape[0] - 1
    nnz = int(indptr[-1])
    if how == "random":
        return uniform_draws(seed, entry_lo, entry_lo + nnz) < fraction
    counts = np.diff(indptr)
    u, r = validation_draws(seed, n_users, lo, lo + n, entry_lo, entry_lo + nnz)
    n_val = np.floor(fraction * counts + u).astype(np.int64)
    n_val = np.minimum(n_val, np.maximum(counts - 1, 0))
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    if how == "time":  # latest first; ties in time broken at random
        order = np.lexsort((r, -np.asarray(times, dtype=np.float64), rows))
    else:
        # A random order within each row, rows kept contiguous: one int64 key per entry,
        # the row in the high bits and the random tie-break below (exact, unlike row +
        # U[0, 1) in float64, which can round up into the next row for large row numbers).
        order = np.argsort((rows << np.int64(31)) | r, kind="stable")
    rank = np.empty(nnz, dtype=np.int64)
    rank[order] = np.arange(nnz) - indptr[rows[order]]
    return rank < n_val[rows]


def sample_positions(total: int, max_users: int, seed: int) -> np.ndarray | None:
    """Which of ``total`` validated users (by position, in user order) a split scores when
    at most ``max_users`` may be: None for all of them, else ``max_users`` positions drawn
    without replacement (seeded ``[seed, 1]``)."""
    if total <= max_users:
        return None
    return np.sort(np.random.default_rng([seed, 1]).choice(total, max_users, replace=False))


def users_at(val: sp.csr_matrix, positions: np.ndarray) -> sp.csr_matrix:
    """``val`` with the entries of only the users at ``positions`` among its users with
    entries (:func:`sample_positions`' answer; the other rows emptied)."""
    counts = np.diff(val.indptr)
    keep = np.zeros(val.shape[0], dtype=bool)
    keep[np.flatnonzero(counts)[positions]] = True
    return entries_where(val, np.repeat(keep, counts))


def sampled_validation_split(
    user_items: sp.csr_matrix, fraction: float, max_users: int, seed: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """:func:`validation_split` seeded ``seed``, its held-out part kept for at most
    ``max_users`` of its users (:func:`sample_positions` seeded ``seed``): one fold of λ
    auto's search, and the split the hybrid's weights are chosen on."""
    fit, val = validation_split(user_items, fraction, seed)
    positions = sample_positions(int(np.count_nonzero(np.diff(val.indptr))), max_users, seed)
    return fit, (val if positions is None else users_at(val, positions))
