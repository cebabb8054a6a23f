"""Baselines stronger than most-popular: EASE, the item-item linear model of Steck (2019).

EASE learns an item × item weight matrix B with a zero diagonal from the binary training
matrix X (users × items)::

    B = argmin ‖X − XB‖² + λ‖B‖²  subject to diag(B) = 0
      = I − P · diag(1 / diag(P)),   P = (XᵀX + λI)⁻¹

and scores user u's items as X[u] · B. On MovieLens 100K it is within a few percent of a
well-tuned WALS (benchmarks/README.md), so a model that trails it by much is worth tuning.
It needs a dense inverse of XᵀX + λI (n_items²), or, when there are more items than users,
of XXᵀ + λI (n_users², by Woodbury's identity, plus an n_users × n_items score matrix):
O(min(n_users, n_items)³) time and a few min(n_users, n_items)² float64 matrices of memory
(3.2 GB each at 20,000), hence ``max_items``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg

from walsrec._checks import check_real
from walsrec.errors import InvalidParameterError
from walsrec.metrics._api import _check_csr

__all__ = ["EASE_MAX_ITEMS", "EASE_REGULARIZATION", "ease_baseline"]

# Above this many items EASE is not computed by default (``walsrec evaluate`` skips it).
EASE_MAX_ITEMS = 20_000
# EASE's default λ (see ease_baseline's ``regularization``).
EASE_REGULARIZATION = 500.0


def ease_baseline(
    train: Any, regularization: float = EASE_REGULARIZATION, *, max_items: int = EASE_MAX_ITEMS
) -> Callable[[np.ndarray], np.ndarray]:
    """The EASE scorer fitted on ``train``, for :func:`~walsrec.metrics.evaluate_scorer`.

    Parameters
    ----------
    train : scipy.sparse matrix of shape (n_users, n_items)
        Training interactions; every stored entry counts as 1 (EASE is fitted on the binary
        matrix), whatever its value.
    regularization : float, default 500.0
        λ > 0. 500 is Steck's value for MovieLens 20M and the best on MovieLens 100K
        (benchmarks/README.md); denser data wants more.
    max_items : int, default 20,000
        Refuse matrices whose smaller side is larger than this (the inverse is O(size³)
        time and size² memory).

    Returns
    -------
    callable
        ``scorer(user_indices) -> ndarray of shape (m, n_items), float32``.

    Raises
    ------
    InvalidParameterError
        ``regularization`` not a finite number > 0, or more than ``max_items`` items.
    """
    x = _check_csr(train, "train", "ease_baseline")
    lam = check_real(
        regularization,
        "regularization",
        "parameter of ease_baseline",
        low=0,
        low_open=True,
        kind="float",
    )
    n_users, n_items = x.shape
    if min(n_users, n_items) > max_items:
        raise InvalidParameterError(
            f"ease_baseline needs a dense inverse of size min(n_users, n_items) = "
            f"{min(n_users, n_items):,}; the 'max_items' parameter allows {max_items:,}. Got "
            f"{n_users:,} users × {n_items:,} items (raise max_items if the memory, about "
            "24·size² bytes, is there)."
        )
    if n_items > n_users and n_users * n_items > max_items**2:
        # the users' form holds dense n_users × n_items arrays: the same memory budget
        raise InvalidParameterError(
            f"ease_baseline through the users needs dense {n_users:,} × {n_items:,} arrays "
            f"(about {24 * n_users * n_items / 1e9:.1f} GB); the 'max_items' parameter allows "
            f"{max_items:,}² entries. Got {n_users:,} users × {n_items:,} items."
        )
    binary = x.copy()
    binary.data = np.ones_like(binary.data, dtype=np.float64)
    if n_items <= n_users:
        return _ease_items(binary, float(lam))
    return _ease_users(binary, float(lam))


def _spd_inverse_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """gram⁻¹ · rhs for a symmetric positive definite ``gram`` (overwritten), with BLAS on
    one thread: OpenBLAS's threaded Cholesky crashed the process from about 15,800 rows in
    float64 on a 2-core machine (see :mod:`walsrec.model.ease`)."""
    from walsrec._threads import single_blas_thread

    with single_blas_thread():
        factor = scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(factor, rhs, overwrite_b=True, check_finite=False)


def _ease_items(binary, lam: float):
    """The item form: B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹ (n_items²). The served
    hybrid's EASE (:mod:`walsrec.model.ease`) computes the same B by potrf + potri in
    float32; this float64 solve stays independent of it."""
    n_items = binary.shape[1]
    gram = (binary.T @ binary).toarray()
    gram[np.diag_indices_from(gram)] += lam
    p = _spd_inverse_solve(gram, np.eye(n_items))
    weights = (p / -np.diag(p)[None, :]).astype(np.float32)
    del p
    np.fill_diagonal(weights, 0.0)
    rows = binary.astype(np.float32)

    def scorer(user_indices: np.ndarray) -> np.ndarray:
        return np.asarray(rows[np.asarray(user_indices)] @ weights, dtype=np.float32)

    scorer.weights = weights  # the fitted B, for inspection and tests
    return scorer


def _ease_users(binary, lam: float):
    """The same model through the users (more items than users), by Woodbury's identity.

    With K = XXᵀ (n_users²), P = (XᵀX + λI)⁻¹ = (I − Xᵀ(λI + K)⁻¹X)/λ, so
    XP = (λI + K)⁻¹X =: Z and diag(P)_j = (1 − Σ_u X_uj Z_uj)/λ; the scores are
    XB = X − Z·diag(1/diag(P)). Only Z (n_users × n_items) is kept, never B.
    """
    gram = (binary @ binary.T).toarray()
    gram[np.diag_indices_from(gram)] += lam
    z = _spd_inverse_solve(gram, binary.toarray())
    del gram
    diag_p = (1.0 - np.asarray(binary.multiply(z).sum(axis=0)).ravel()) / lam
    z /= diag_p[None, :]
    z = z.astype(np.float32)
    rows = binary.astype(np.float32)

    def scorer(user_indices: np.ndarray) -> np.ndarray:
        users = np.asarray(user_indices)
        return np.asarray(rows[users].toarray() - z[users], dtype=np.float32)

    return scorer
