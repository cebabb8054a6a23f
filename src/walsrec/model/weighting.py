"""Weighting schemes: how much each observed entry counts and what it is fitted to.

WALS fits ``A_ij`` with weight ``W_ij`` on every stored entry of ``user_items`` and 0 with
weight w0 everywhere else. This module turns the stored values r_ij into both::

    W_ij = w0 + R_i · C_j · c(r_ij)        A_ij = r_ij  (targets="values")
                                           A_ij = 1     (targets="binary")

where R and C are the row and column weights and c is the *confidence* of an entry:

============  ==============================  ===============================================
confidence    c(r)                            when to use it
============  ==============================  ===============================================
"constant"    1                               tf.contrib's WALS: W = w0 + R_i·C_j; with
                                              explicit ratings as targets.
"linear"      α·r                             Hu, Koren & Volinsky's implicit feedback
                                              (counts, plays, clicks) with targets="binary";
                                              implicit's ALS fitted on α·r.
"log"         α·log(1 + r/ε)                  the same paper's damped form, for heavy-tailed
                                              counts (one user with 5,000 plays).
"bm25"        α·BM25(r)                       Okapi BM25 row weighting, as used with implicit
                                              (``implicit.nearest_neighbours.bm25_weight``):
                                              dampens long histories and popular items.
"tfidf"       α·√r·idf_j                      TF-IDF row weighting (implicit's tfidf_weight).
============  ==============================  ===============================================

with, for BM25 and TF-IDF (users are the documents and items the terms)::

    idf_j  = max(0, log(n_users) − log(1 + n_j))          n_j: users who have item j
    BM25   = r·(K1 + 1) / (K1·((1 − B) + B·s_i/s̄) + r) · idf_j
                                                        s_i = Σ_j r_ij, s̄ its mean over users

implicit's formulas, except that idf is clipped at 0 so that an item nearly every user has
gets no extra weight instead of a negative one. Confidences other than "constant" need
non-negative values.

The statistics BM25 and TF-IDF read (n_users, n_j, s_i) come from the training matrix:
:func:`weighting_stats` computes them and the estimator keeps them, so that folding in a new
user or item weighs its entries exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # scipy.sparse is imported by whoever passes a matrix; the CLI's
    # parser reads this module's settings without one
    import scipy.sparse as sp

from walsrec._checks import check_option, check_real
from walsrec.errors import InvalidParameterError
from walsrec.model import params

__all__ = [
    "CONFIDENCES",
    "PARAMS",
    "TARGETS",
    "WeightingStats",
    "column_weights_from_counts",
    "column_weights_from_item_counts",
    "confidence_values",
    "mean_confidence",
    "needs_stats",
    "weighting_stats",
]

# The confidence schemes, the estimator parameters (and train settings) of a weighting
# scheme, and the targets: defined in params.py, which the command line reads without numpy.
CONFIDENCES = params.CONFIDENCES
PARAMS = params.WEIGHTING_PARAMS
TARGETS = params.TARGETS


@dataclass(frozen=True)
class WeightingStats:
    """What BM25 and TF-IDF read from the training matrix.

    Attributes
    ----------
    n_users : int
        Users (documents) of the training matrix.
    item_counts : ndarray of int64, shape (n_items,)
        n_j, the users with a stored entry for item j.
    user_sums : ndarray of float64, shape (n_users,)
        s_i, the sum of user i's stored values.
    """

    n_users: int
    item_counts: np.ndarray
    user_sums: np.ndarray

    @property
    def mean_user_sum(self) -> float:
        """s̄, the mean of ``user_sums`` (1.0 for an empty matrix, so nothing divides by 0)."""
        if self.user_sums.size == 0:
            return 1.0
        mean = float(np.mean(self.user_sums))
        return mean if mean > 0 else 1.0

    def idf(self, item_counts: np.ndarray | None = None) -> np.ndarray:
        """idf_j = max(0, log(n_users) − log(1 + n_j)), float64 (of ``item_counts`` if given)."""
        counts = self.item_counts if item_counts is None else item_counts
        if self.n_users == 0:
            return np.zeros(np.shape(counts))
        return np.maximum(0.0, np.log(self.n_users) - np.log1p(np.asarray(counts, np.float64)))


def weighting_stats(user_items: sp.spmatrix) -> WeightingStats:
    """The statistics of ``user_items`` (n_users × n_items) that BM25 and TF-IDF read."""
    m = user_items.tocsr()
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    bad = ~(np.isfinite(m.data) & (m.data >= 0))
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(m.indptr, p, side="right") - 1)
        raise InvalidParameterError(
            "BM25 and TF-IDF weighting need finite, non-negative values in 'user_items'. Got "
            f"{float(m.data[p])!r} at (row {row}, column {int(m.indices[p])}) instead."
        )
    n_users, n_items = m.shape
    item_counts = np.bincount(m.indices, minlength=n_items).astype(np.int64)
    return WeightingStats(int(n_users), item_counts, row_sums(m))


def row_sums(m: sp.csr_matrix) -> np.ndarray:
    """Σ_j m_ij of every row of a CSR matrix, float64."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return np.bincount(rows, weights=m.data.astype(np.float64), minlength=m.shape[0])


def needs_stats(confidence: str) -> bool:
    """True for the confidences that read :class:`WeightingStats` (BM25, TF-IDF)."""
    return confidence in ("bm25", "tfidf")


def check_params(params: dict[str, Any], owner: str = "parameter of WALS") -> None:
    """Validate ``confidence``, ``alpha``, ``epsilon``, ``bm25_k1``, ``bm25_b``, ``targets``."""
    check_option(params["confidence"], "confidence", owner, CONFIDENCES, one_of=True)
    check_option(params["targets"], "targets", owner, TARGETS, one_of=True)
    for name in ("alpha", "epsilon", "bm25_k1"):
        check_real(params[name], name, owner, low=0, low_open=True, kind="float")
    check_real(params["bm25_b"], "bm25_b", owner, low=0, high=1, finite=False, kind="float")


def confidence_values(
    values: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    *,
    confidence: str,
    alpha: float = 1.0,
    epsilon: float = 1.0,
    bm25_k1: float = 100.0,
    bm25_b: float = 0.8,
    stats: WeightingStats | None = None,
    user_sums: np.ndarray | None = None,
    item_counts: np.ndarray | None = None,
    where: str = "user_items",
    transposed: bool = False,
) -> np.ndarray | None:
    """c(r) of every stored entry, float64; None for "constant" (c = 1 everywhere).

    Parameters
    ----------
    values : ndarray of shape (nnz,)
        The stored values r.
    users, items : ndarray of int, shape (nnz,)
        Each entry's user and item index (any order: CSR, CSC or COO), used to look up the
        statistics and to name a bad entry.
    confidence, alpha, epsilon, bm25_k1, bm25_b
        The scheme (see the module docstring).
    stats : WeightingStats or None
        The training statistics; required for "bm25" and "tfidf".
    user_sums, item_counts : ndarray or None
        Override s_i (indexed by ``users``) or n_j (indexed by ``items``) — for folding in
        rows or columns that are not part of ``stats`` (a new user's own sum, a new item's
        own count).
    where : str
        The name of the matrix in error messages.
    transposed : bool
        The matrix named ``where`` is items × users (its rows are ``items``), for messages.

    Raises
    ------
    InvalidParameterError
        A value the scheme cannot weigh (negative; ≤ −ε for "log"), naming its row, column
        and value; or "bm25"/"tfidf" without ``stats``.
    """
    if confidence == "constant":
        return None
    r = np.asarray(values, dtype=np.float64)
    _refuse_negative(r, users, items, confidence, where, transposed)
    if confidence == "linear":
        return alpha * r
    if confidence == "log":
        return alpha * np.log1p(r / epsilon)
    if stats is None:
        raise InvalidParameterError(
            f"confidence={confidence!r} needs the training statistics (WeightingStats); got None."
        )
    if item_counts is None:
        idf = stats.idf()[items]
    else:
        idf = stats.idf(item_counts)[items]
    if confidence == "tfidf":
        return alpha * np.sqrt(r) * idf
    sums = stats.user_sums if user_sums is None else np.asarray(user_sums, np.float64)
    length = (1.0 - bm25_b) + bm25_b * sums[users] / stats.mean_user_sum
    denom = bm25_k1 * length + r
    # denom is 0 only for r = 0 of a user whose values sum to 0 with B = 1: weigh it 0.
    tf = np.divide(r * (bm25_k1 + 1.0), denom, out=np.zeros_like(r), where=denom > 0)
    return alpha * tf * idf


def _refuse_negative(r, users, items, confidence, where, transposed=False) -> None:
    # a negative value would give a negative confidence (log: for r in (-ε, 0) too), hence
    # an observed weight below 0, which makes the systems indefinite
    bad = r < 0
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        row, col = (items[p], users[p]) if transposed else (users[p], items[p])
        raise InvalidParameterError(
            f"confidence={confidence!r} needs non-negative values in {where!r}. Got "
            f"{float(r[p])!r} at (row {int(row)}, column {int(col)}) instead; use "
            "confidence='constant' (train: --confidence constant) or transform the values "
            "(e.g. prepare --rating-transform binary)."
        )


def mean_confidence(
    user_items: sp.spmatrix,
    *,
    confidence: str,
    alpha: float = 1.0,
    epsilon: float = 1.0,
    bm25_k1: float = 100.0,
    bm25_b: float = 0.8,
) -> float:
    """The mean of c(r) over the stored entries of ``user_items`` (1.0 for "constant" and for
    a matrix with no entries).

    ``alpha = 1 / mean_confidence(..., alpha=1)`` makes the mean confidence 1, whatever the
    units of the values: train's ``alpha = "auto"``.
    """
    if confidence == "constant":
        return 1.0
    m = user_items.tocsr()
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    if m.nnz == 0:
        return 1.0
    users = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    stats = None
    if needs_stats(confidence):
        # confidence_values checks the values too, but after the statistics, whose own
        # check does not say which setting asked for them
        _refuse_negative(m.data, users, m.indices, confidence, "user_items")
        stats = weighting_stats(m)
    c = confidence_values(
        m.data,
        users,
        m.indices,
        confidence=confidence,
        alpha=alpha,
        epsilon=epsilon,
        bm25_k1=bm25_k1,
        bm25_b=bm25_b,
        stats=stats,
    )
    return float(np.mean(c))


def column_weights_from_counts(
    user_items: sp.spmatrix, how: str, factor: float = 1.0, exponent: float = 1.0
) -> np.ndarray:
    """The course's column weights from item counts n_j (0 for items never seen).

    ``linear``: C_j = factor / n_j; ``log``: C_j = (1 / n_j) ** exponent (the course's
    ``feature_wt_factor`` and ``feature_wt_exp``, defaults there 130 and 0.08).
    """
    user_items = user_items.tocsr()
    counts = np.bincount(user_items.indices, minlength=user_items.shape[1])
    return column_weights_from_item_counts(counts, how, factor, exponent)


def column_weights_from_item_counts(
    counts: np.ndarray, how: str, factor: float = 1.0, exponent: float = 1.0
) -> np.ndarray:
    """:func:`column_weights_from_counts` from the item counts n_j themselves."""
    counts = np.asarray(counts, dtype=np.float64)
    frac = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return factor * frac if how == "linear" else np.power(frac, exponent)
