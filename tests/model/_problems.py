"""Small random WALS problems with planted empty rows and columns, and dense oracles."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def make_problem(
    seed: int,
    n_users: int = 40,
    n_items: int = 30,
    density: float = 0.15,
    *,
    weights: str | None = None,
    long_rows: int = 2,
) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """A random CSR with targets in [0.5, 3), one empty row and one empty column planted,
    and ``long_rows`` users who rated most items (so both exact paths are exercised).

    ``weights``: None, or "above" (weights ≥ w0) / "mixed" (some below any w0 ≤ 1).
    """
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density).astype(float)
    for r in range(long_rows):
        dense[1 + r] = rng.random(n_items) < 0.9
    dense[0] = 0.0  # empty row
    dense[:, n_items - 1] = 0.0  # empty column
    targets = rng.uniform(0.5, 3.0, size=dense.shape) * dense
    x = sp.csr_matrix(targets)
    if weights is None:
        return x, None
    w = x.copy()
    if weights == "above":
        w.data = rng.uniform(1.0, 4.0, size=w.nnz)
    else:
        w.data = rng.uniform(0.05, 4.0, size=w.nnz)
    return x, w


def dense_weights(x: sp.csr_matrix, w: sp.csr_matrix | None, w0, row_w, col_w):
    """Dense W and A over the whole matrix, as the objective defines them."""
    a = x.toarray()
    mask = np.zeros(x.shape, dtype=bool)
    coo = x.tocoo()
    mask[coo.row, coo.col] = True
    if w is None:
        rw = np.broadcast_to(np.asarray(row_w, dtype=float), (x.shape[0],))
        cw = np.broadcast_to(np.asarray(col_w, dtype=float), (x.shape[1],))
        obs = w0 + np.outer(rw, cw)
    else:
        obs = w.toarray()
    big_w = np.where(mask, obs, w0)
    return big_w, a, mask


def lambdas(mask, lam, nu, w0):
    """(λ_i for rows, λ_j for columns) from the definition."""
    n_users, n_items = mask.shape
    lam_r = lam * (mask.sum(1) + w0 * n_items) ** nu
    lam_c = lam * (mask.sum(0) + w0 * n_users) ** nu
    return lam_r.astype(float), lam_c.astype(float)


def dense_row_solutions(big_w, a, fixed, lam_rows):
    """Solve each row's dense normal equations (Vᵀ diag(W_i) V + λ_i I) u = Vᵀ(W_i∘A_i)."""
    v = fixed.astype(np.float64)
    k = v.shape[1]
    out = np.empty((big_w.shape[0], k))
    for i in range(big_w.shape[0]):
        m = (v * big_w[i][:, None]).T @ v + lam_rows[i] * np.eye(k)
        out[i] = np.linalg.solve(m, v.T @ (big_w[i] * a[i]))
    return out


def dense_loss(big_w, a, u, v, lam_r, lam_c):
    u = u.astype(np.float64)
    v = v.astype(np.float64)
    err = a - u @ v.T
    data = float(np.sum(big_w * err**2))
    reg = float(lam_r @ np.sum(u**2, 1) + lam_c @ np.sum(v**2, 1))
    return data + reg, float(np.sqrt(data / big_w.sum()))
