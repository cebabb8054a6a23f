"""Splits of an interaction matrix into a part to fit and a part to validate on.

:func:`validation_split` carves about a fraction of each user's interactions out of a
training matrix: ``walsrec tune`` scores its trials on such splits, and train's
``regularization = "auto"`` chooses λ on them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_real

__all__ = ["check_fraction", "validation_split"]


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
    counts = np.diff(x.indptr)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    rng = np.random.default_rng(seed)
    n_val = np.floor(fraction * counts + rng.random(n_users)).astype(np.int64)
    n_val = np.minimum(n_val, np.maximum(counts - 1, 0))
    # A random order within each row, rows kept contiguous: one int64 key per entry, the row
    # in the high bits and a random tie-break below (exact, unlike row + U[0, 1) in float64,
    # which can round up into the next row for large row numbers).
    key = rows << np.int64(31)
    key |= rng.integers(0, 2**31, size=rows.size, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    rank = np.empty(rows.size, dtype=np.int64)
    rank[order] = np.arange(rows.size) - x.indptr[rows[order]]
    is_val = rank < n_val[rows]

    def part(mask: np.ndarray) -> sp.csr_matrix:
        indptr = np.zeros(n_users + 1, dtype=x.indptr.dtype)
        np.cumsum(np.bincount(rows[mask], minlength=n_users), out=indptr[1:])
        return sp.csr_matrix(
            (np.asarray(x.data)[mask], np.asarray(x.indices)[mask], indptr), shape=x.shape
        )

    return part(~is_val), part(is_val)
