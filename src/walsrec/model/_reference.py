"""Slow NumPy twins of the numba kernels in ``_kernels.py``; the tests hold the kernels to them.

They work in the original basis (no eigen-rotation, no Woodbury): each row's dense normal
equations are built and solved with ``np.linalg.solve``, and CG is the textbook algorithm.
Arguments mirror the kernels, except that rows are solved one after another and results are
returned rather than written in place.
"""

from __future__ import annotations

import numpy as np


def row_system(indptr, indices, wdata, adata, row, fixed, gram, lam_i, w0):
    """The dense normal equations (M, b) of one row.

    M = w0·G + λ_i I + Σ_{j∈S_i} (W_ij − w0) v_j v_jᵀ, b = Σ_{j∈S_i} W_ij A_ij v_j.
    """
    k = fixed.shape[1]
    sl = slice(indptr[row], indptr[row + 1])
    v = fixed[indices[sl]].astype(np.float64)
    w = wdata[sl].astype(np.float64)
    a = adata[sl].astype(np.float64)
    m = w0 * gram + lam_i * np.eye(k) + (v * (w - w0)[:, None]).T @ v
    b = v.T @ (w * a)
    return m, b


def solve_exact(indptr, indices, wdata, adata, rows, fixed, lam, w0):
    """Exact half-step: ``np.linalg.solve`` of every listed row's normal equations.

    Returns (solutions (len(rows), k) float64, singular (len(rows),) bool). A row is singular
    when its matrix is not numerically positive definite (smallest eigenvalue ≤ k·eps·largest).
    """
    fixed64 = fixed.astype(np.float64)
    gram = fixed64.T @ fixed64
    k = fixed.shape[1]
    out = np.zeros((len(rows), k))
    singular = np.zeros(len(rows), dtype=bool)
    for t, row in enumerate(rows):
        m, b = row_system(indptr, indices, wdata, adata, row, fixed64, gram, lam[t], w0)
        ev = np.linalg.eigvalsh(m)
        if not ev[0] > k * np.finfo(np.float64).eps * max(ev[-1], 0.0):
            singular[t] = True
            continue
        out[t] = np.linalg.solve(m, b)
    return out, singular


def solve_cg(indptr, indices, wdata, adata, rows, fixed, lam, w0, cg_steps, start):
    """Textbook conjugate gradient on each row's normal equations, from ``start`` (warm)."""
    fixed64 = fixed.astype(np.float64)
    gram = fixed64.T @ fixed64
    out = np.array(start, dtype=np.float64, copy=True)
    for t, row in enumerate(rows):
        m, b = row_system(indptr, indices, wdata, adata, row, fixed64, gram, lam[t], w0)
        x = out[t]
        r = b - m @ x
        p = r.copy()
        rs = r @ r
        for _ in range(cg_steps):
            if rs < 1e-20:
                break
            mp = m @ p
            pmp = p @ mp
            if not pmp > 0:
                break
            alpha = rs / pmp
            x += alpha * p
            r -= alpha * mp
            rs_new = r @ r
            p = r + (rs_new / rs) * p
            rs = rs_new
        out[t] = x
    return out


def loss_terms(indptr, indices, wdata, adata, left, right, w0):
    """(data term of the loss, Σ_all W) by brute force over a dense copy: small inputs only.

    data term = Σ_all W_ij (A_ij − u_i·v_j)², W_ij = w0 off the observed entries.
    """
    n_rows, n_cols = left.shape[0], right.shape[0]
    w = np.full((n_rows, n_cols), float(w0))
    a = np.zeros((n_rows, n_cols))
    for i in range(n_rows):
        sl = slice(indptr[i], indptr[i + 1])
        w[i, indices[sl]] = wdata[sl]
        a[i, indices[sl]] = adata[sl]
    pred = left.astype(np.float64) @ right.astype(np.float64).T
    return float(np.sum(w * (a - pred) ** 2)), float(np.sum(w))


def ease_weights(x, lam):
    """EASE's dense B in float64 from ``np.linalg.inv`` (twin of ``ease.ease_dense``)."""
    xd = (np.asarray(x.toarray()) != 0).astype(np.float64)
    p = np.linalg.inv(xd.T @ xd + lam * np.eye(xd.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def ease_threshold(b, density):
    """The sparse form's selection on a dense B (twin of ``ease.ease_sparse``): the
    ``density × n`` entries largest in magnitude, ties at the threshold kept."""
    n = b.shape[0]
    mags = np.abs(b).ravel()
    tau = np.sort(mags)[::-1][density * n - 1]
    return np.where((np.abs(b) >= tau) & (np.abs(b) > 0), b, 0.0)
