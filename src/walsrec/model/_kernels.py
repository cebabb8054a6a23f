"""numba kernels of the WALS solver: one half-step each, on raw CSR arrays.

Every kernel updates the rows listed in ``rows`` of a factor matrix from the fixed factors of
the other side. The CSR arrays are the rows being solved (``user_items`` for the row
half-step, its transpose for the column half-step), with two aligned per-entry arrays: the
observed weight ``wdata`` (W_ij) and the target ``adata`` (A_ij). ``bounds`` splits ``rows``
into parts of about equal estimated cost, and one call solves one part (``part``):
orchestration runs the parts on threads (``walsrec._threads.run_parts``; the kernels are
compiled ``nogil``), so each part allocates its scratch once and the threads stay balanced
although row lengths differ by orders of magnitude. No result depends on which thread ran a
part, and no reduction crosses rows, so results are bitwise identical for any thread count.
The kernels are serial: numba's parallel loops compiled three times slower (see
``_threads.py``).

The solvers work in the eigenbasis of the fixed side's Gramian G = Q diag(g) Qᵀ (computed by
the caller in float64): with Ṽ = VQ, w0·G + λ_i I becomes the diagonal diag(w0·g + λ_i), so
per-row λ_i costs nothing, CG's matrix-vector products drop from O(k²) to O(k), and rows with
few entries can be solved by Woodbury's identity in O(n_i²·k) instead of O(n_i·k² + k³).

fastmath allows reassociation (vectorised reductions) but not the no-NaN assumption. The
loops are blocked by hand where it measured faster (four entries per pass over the Gram
matrix, four rows per pass in Cholesky and in Woodbury's I + ZZᵀ).

Kernels never validate, log or allocate Python objects: orchestration (``wals.py``) does that.
The slow NumPy twins in ``_reference.py`` define what each kernel must compute.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Fast-math without the no-NaN/no-inf assumptions: a NaN pivot must still fail its test.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

# Path codes of the exact solver, per row (see ``solve_exact``).
PATH_DIRECT = 0
PATH_WOODBURY = 1
# Row flags written by the exact solver.
FLAG_OK = 0
FLAG_SINGULAR = 1


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _cholesky_solve(m, n, b, diag_tol):
    """Solve m[:n, :n] x = b[:n] in place (x overwrites b) by Cholesky of the lower triangle.

    Only the lower triangle of ``m`` is read; it is overwritten by L (m = L Lᵀ). Returns False
    when a pivot is not above ``diag_tol`` times the largest diagonal entry (numerically
    singular, or not positive definite), or is NaN.
    """
    dmax = 0.0
    for j in range(n):
        if m[j, j] > dmax:
            dmax = m[j, j]
    thr = diag_tol * dmax
    for j in range(n):
        mj = m[j]
        s = mj[j]
        for p in range(j):
            s -= mj[p] * mj[p]
        if not (s > thr) or not (s > 0.0):
            return False
        ljj = np.sqrt(s)
        mj[j] = ljj
        inv = 1.0 / ljj
        # L[i, j] = (m[i, j] − L[i, :j]·L[j, :j]) / L[j, j], four rows i at a time so each
        # load of L[j, :j] feeds four FMAs
        i = j + 1
        while i + 4 <= n:
            m0 = m[i]
            m1 = m[i + 1]
            m2 = m[i + 2]
            m3 = m[i + 3]
            t0 = m0[j]
            t1 = m1[j]
            t2 = m2[j]
            t3 = m3[j]
            for p in range(j):
                q = mj[p]
                t0 -= m0[p] * q
                t1 -= m1[p] * q
                t2 -= m2[p] * q
                t3 -= m3[p] * q
            m0[j] = t0 * inv
            m1[j] = t1 * inv
            m2[j] = t2 * inv
            m3[j] = t3 * inv
            i += 4
        while i < n:
            mi = m[i]
            t = mi[j]
            for p in range(j):
                t -= mi[p] * mj[p]
            mi[j] = t * inv
            i += 1
    # forward: L y = b
    for i in range(n):
        mi = m[i]
        t = b[i]
        for p in range(i):
            t -= mi[p] * b[p]
        b[i] = t / mi[i]
    # backward: Lᵀ x = y, column-oriented so the inner loop runs over a contiguous row of L
    for i in range(n - 1, -1, -1):
        mi = m[i]
        xi = b[i] / mi[i]
        b[i] = xi
        for p in range(i):
            b[p] -= xi * mi[p]
    return True


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _dots(src, idx, n, vec, out):
    """out[q] = src[idx[q]]·vec for q < n, four rows per pass over ``vec``."""
    k = vec.shape[0]
    q = 0
    while q + 4 <= n:
        y0 = src[idx[q]]
        y1 = src[idx[q + 1]]
        y2 = src[idx[q + 2]]
        y3 = src[idx[q + 3]]
        a0 = y0[0] * vec[0]
        a1 = y1[0] * vec[0]
        a2 = y2[0] * vec[0]
        a3 = y3[0] * vec[0]
        for a in range(1, k):
            va = vec[a]
            a0 += y0[a] * va
            a1 += y1[a] * va
            a2 += y2[a] * va
            a3 += y3[a] * va
        out[q] = a0
        out[q + 1] = a1
        out[q + 2] = a2
        out[q + 3] = a3
        q += 4
    while q < n:
        y0 = src[idx[q]]
        a0 = y0[0] * vec[0]
        for a in range(1, k):
            a0 += y0[a] * vec[a]
        out[q] = a0
        q += 1


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _combine(src, idx, n, coef, acc):
    """acc += Σ_{q<n} coef[q]·src[idx[q]], four rows per pass over ``acc``."""
    k = acc.shape[0]
    q = 0
    while q + 4 <= n:
        y0 = src[idx[q]]
        y1 = src[idx[q + 1]]
        y2 = src[idx[q + 2]]
        y3 = src[idx[q + 3]]
        c0 = coef[q]
        c1 = coef[q + 1]
        c2 = coef[q + 2]
        c3 = coef[q + 3]
        for a in range(k):
            acc[a] += c0 * y0[a] + c1 * y1[a] + c2 * y2[a] + c3 * y3[a]
        q += 4
    while q < n:
        y0 = src[idx[q]]
        c0 = coef[q]
        for a in range(k):
            acc[a] += c0 * y0[a]
        q += 1


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _sqnorm(x):
    acc = 0.0
    for a in range(x.shape[0]):
        acc += np.float64(x[a]) * np.float64(x[a])
    return acc


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _row_loss(indices, wdata, adata, start, end, fixed, x, w0, tmp):
    """Σ_{j∈S_i} [W_ij (A_ij − x·v_j)² − w0 (x·v_j)²] in float64 (rotation-invariant);
    ``tmp`` is scratch of at least end − start entries."""
    n = end - start
    _dots(fixed, indices[start:end], n, x, tmp)
    acc_row = 0.0
    for q in range(n):
        p = start + q
        pred = np.float64(tmp[q])
        err = np.float64(adata[p]) - pred
        acc_row += np.float64(wdata[p]) * err * err - np.float64(w0) * pred * pred
    return acc_row


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def solve_exact(
    indptr,
    indices,
    wdata,
    adata,
    rows,
    bounds,
    paths,
    fixed_rot,
    dbase,
    lam,
    w0,
    diag_tol,
    out_rot,
    flags,
    loss_out,
    part,
):
    """Exact half-step in the eigenbasis of G = Q diag(g) Qᵀ of the fixed factors.

    For each listed row i with entries S_i, D_j = W_ij − w0 and Ṽ = V Q (``fixed_rot``):
        (diag(w0·g + λ_i) + Σ_{j∈S_i} D_j ṽ_j ṽ_jᵀ) ũ_i = Σ_{j∈S_i} W_ij A_ij ṽ_j
    written to ``out_rot[t]`` for ``rows[t]`` (the caller rotates back: u_i = Q ũ_i).
    ``dbase`` = w0·g, ``lam[t]`` = λ_i. ``paths[t]`` = PATH_WOODBURY solves by Woodbury's
    identity when admissible (all d > 0 and all D_j ≥ 0), else the direct Cholesky is used.
    ``flags[t]`` = FLAG_SINGULAR when the direct system has a non-positive pivot.
    ``loss_out[t]`` gets the row's observed loss terms with the new factors (``_row_loss``)
    and its regularisation term λ_i‖ũ_i‖² (= λ_i‖u_i‖²: Q is orthogonal).
    """
    k = fixed_rot.shape[1]
    dt = fixed_rot.dtype
    lo = bounds[part]
    hi = bounds[part + 1]
    # longest Woodbury candidate in this part sizes the n×n scratch, longest row the
    # predictions' scratch
    nw = 1
    nmax = 1
    for t in range(lo, hi):
        r = rows[t]
        ln = indptr[r + 1] - indptr[r]
        if ln > nmax:
            nmax = ln
        if paths[t] == PATH_WOODBURY and ln > nw:
            nw = ln
    preds = np.empty(nmax, dtype=dt)
    m = np.empty((k, k), dtype=dt)
    bvec = np.empty(k, dtype=dt)
    d = np.empty(k, dtype=dt)
    dis = np.empty(k, dtype=dt)
    z = np.empty((nw, k), dtype=dt)
    kk = np.empty((nw, nw), dtype=dt)
    tv = np.empty(nw, dtype=dt)
    local = np.empty(nw, dtype=indices.dtype)
    for q in range(nw):
        local[q] = q
    last_lam = np.nan
    dmin = 0.0
    for t in range(lo, hi):
        r = rows[t]
        start = indptr[r]
        end = indptr[r + 1]
        n = end - start
        lam_t = lam[t]
        if lam_t != last_lam:  # d and d^-½ change with λ_i only (never, when ν = 0)
            last_lam = lam_t
            dmin = np.inf
            for a in range(k):
                d[a] = dbase[a] + lam_t
                if d[a] < dmin:
                    dmin = d[a]
            if dmin > 0.0:
                for a in range(k):
                    dis[a] = 1.0 / np.sqrt(d[a])
        for a in range(k):
            bvec[a] = 0.0
        wood = paths[t] == PATH_WOODBURY and dmin > 0.0
        if wood:
            for p in range(start, end):
                if wdata[p] < w0:
                    wood = False
                    break
        flags[t] = FLAG_OK
        out = out_rot[t]
        if wood:
            # (diag(d) + XᵀX)⁻¹ = d^-½ (I − Zᵀ (I + Z Zᵀ)⁻¹ Z) d^-½, Z = X d^-½
            for q in range(n):
                p = start + q
                vj = fixed_rot[indices[p]]
                c = wdata[p] * adata[p]
                s = np.sqrt(wdata[p] - w0)
                zq = z[q]
                for a in range(k):
                    bvec[a] += c * vj[a]
                    zq[a] = s * vj[a] * dis[a]
            for a in range(k):
                bvec[a] *= dis[a]
            # K = I + Z Zᵀ (lower triangle) and Z c, four rows q2 per pass over z[q]
            for q in range(n):
                zq = z[q]
                kq = kk[q]
                q2 = 0
                while q2 + 4 <= q + 1:
                    y0 = z[q2]
                    y1 = z[q2 + 1]
                    y2 = z[q2 + 2]
                    y3 = z[q2 + 3]
                    a0 = zq[0] * y0[0]
                    a1 = zq[0] * y1[0]
                    a2 = zq[0] * y2[0]
                    a3 = zq[0] * y3[0]
                    for a in range(1, k):
                        za = zq[a]
                        a0 += za * y0[a]
                        a1 += za * y1[a]
                        a2 += za * y2[a]
                        a3 += za * y3[a]
                    kq[q2] = a0
                    kq[q2 + 1] = a1
                    kq[q2 + 2] = a2
                    kq[q2 + 3] = a3
                    q2 += 4
                while q2 <= q:
                    y0 = z[q2]
                    a0 = zq[0] * y0[0]
                    for a in range(1, k):
                        a0 += zq[a] * y0[a]
                    kq[q2] = a0
                    q2 += 1
                kq[q] += 1.0
            _dots(z, local, n, bvec, tv)
            _cholesky_solve(kk, n, tv, 0.0)
            for a in range(k):
                out[a] = bvec[a]
            for q in range(n):
                tv[q] = -tv[q]
            _combine(z, local, n, tv, out)
            for a in range(k):
                out[a] *= dis[a]
        else:
            for a in range(k):
                ma = m[a]
                for b in range(a):
                    ma[b] = 0.0
                ma[a] = d[a]
            # M += Σ D_j ṽ_j ṽ_jᵀ (lower triangle), four entries per pass over M
            p = start
            while p + 4 <= end:
                v0 = fixed_rot[indices[p]]
                v1 = fixed_rot[indices[p + 1]]
                v2 = fixed_rot[indices[p + 2]]
                v3 = fixed_rot[indices[p + 3]]
                c0 = wdata[p] * adata[p]
                c1 = wdata[p + 1] * adata[p + 1]
                c2 = wdata[p + 2] * adata[p + 2]
                c3 = wdata[p + 3] * adata[p + 3]
                d0 = wdata[p] - w0
                d1 = wdata[p + 1] - w0
                d2 = wdata[p + 2] - w0
                d3 = wdata[p + 3] - w0
                for a in range(k):  # its own loop, so it vectorises over a
                    bvec[a] += c0 * v0[a] + c1 * v1[a] + c2 * v2[a] + c3 * v3[a]
                for a in range(k):
                    s0 = d0 * v0[a]
                    s1 = d1 * v1[a]
                    s2 = d2 * v2[a]
                    s3 = d3 * v3[a]
                    ma = m[a]
                    for b in range(a + 1):
                        ma[b] += s0 * v0[b] + s1 * v1[b] + s2 * v2[b] + s3 * v3[b]
                p += 4
            while p < end:
                vj = fixed_rot[indices[p]]
                c = wdata[p] * adata[p]
                dj = wdata[p] - w0
                for a in range(k):
                    va = vj[a]
                    bvec[a] += c * va
                    s = dj * va
                    ma = m[a]
                    for b in range(a + 1):
                        ma[b] += s * vj[b]
                p += 1
            if _cholesky_solve(m, k, bvec, diag_tol):
                for a in range(k):
                    out[a] = bvec[a]
            else:
                flags[t] = FLAG_SINGULAR
                for a in range(k):
                    out[a] = 0.0
        loss_out[t, 0] = _row_loss(indices, wdata, adata, start, end, fixed_rot, out, w0, preds)
        loss_out[t, 1] = lam_t * _sqnorm(out)


# Rows up to this many entries have their ṽ_j gathered into contiguous per-part scratch for
# CG's repeated passes (random rows of Ṽ are read once instead of cg_steps + 1 times).
CG_GATHER_MAX = 2048


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def solve_cg(
    indptr,
    indices,
    wdata,
    adata,
    rows,
    bounds,
    fixed_rot,
    dbase,
    lam,
    w0,
    cg_steps,
    out,
    loss_out,
    part,
):
    """Conjugate-gradient half-step (implicit's CG), warm-started from ``out[t]``.

    Runs ``cg_steps`` iterations on row ``rows[t]``'s system in the eigenbasis of G, where
    w0·G + λ_i I is the diagonal diag(``dbase`` + λ_i), so a matrix-vector product costs
    O(k + n_i·k) instead of O(k² + n_i·k):
        (diag(w0·g + λ_i) + Σ_{j∈S_i} D_j ṽ_j ṽ_jᵀ) ũ_i = Σ_{j∈S_i} W_ij A_ij ṽ_j.
    CG is invariant under the orthogonal change of basis, so the iterates are implicit's,
    rotated. ``out`` holds rotated factors ũ = Qᵀu on entry and on exit; ``loss_out[t]``
    gets the row's observed loss terms and λ_i‖ũ_i‖² with the new factors. The predictions
    ṽ_j·ũ_i are carried through the iterations (t ← t + α·ṽ_j·p), so the loss needs no
    extra pass.
    """
    k = fixed_rot.shape[1]
    dt = fixed_rot.dtype
    lo = bounds[part]
    hi = bounds[part + 1]
    nmax = 1
    for t in range(lo, hi):
        r = rows[t]
        ln = indptr[r + 1] - indptr[r]
        if ln > nmax:
            nmax = ln
    cap = min(nmax, CG_GATHER_MAX)
    gath = np.empty((cap, k), dtype=dt)
    local = np.empty(cap, dtype=indices.dtype)
    for q in range(cap):
        local[q] = q
    tx = np.empty(nmax, dtype=dt)  # ṽ_j·x
    tp = np.empty(nmax, dtype=dt)  # ṽ_j·p
    coef = np.empty(nmax, dtype=dt)
    d = np.empty(k, dtype=dt)
    x = np.empty(k, dtype=dt)
    res = np.empty(k, dtype=dt)
    pv = np.empty(k, dtype=dt)
    ap = np.empty(k, dtype=dt)
    for t in range(lo, hi):
        r = rows[t]
        start = indptr[r]
        end = indptr[r + 1]
        n = end - start
        lam_t = lam[t]
        out_t = out[t]
        if n <= cap:
            src = gath
            idx = local
            for q in range(n):
                vj = fixed_rot[indices[start + q]]
                gq = gath[q]
                for a in range(k):
                    gq[a] = vj[a]
        else:
            src = fixed_rot
            idx = indices[start:end]
        # r = b − M x = Σ (W A − D ṽ·x) ṽ − diag(d) x
        for a in range(k):
            d[a] = dbase[a] + lam_t
            x[a] = out_t[a]
            res[a] = -d[a] * x[a]
        _dots(src, idx, n, x, tx)
        for q in range(n):
            p = start + q
            coef[q] = wdata[p] * adata[p] - (wdata[p] - w0) * tx[q]
        _combine(src, idx, n, coef, res)
        rs = 0.0
        for a in range(k):
            pv[a] = res[a]
            rs += res[a] * res[a]
        for _ in range(cg_steps):
            if rs < 1e-20:
                break
            # ap = M p
            for a in range(k):
                ap[a] = d[a] * pv[a]
            _dots(src, idx, n, pv, tp)
            for q in range(n):
                coef[q] = (wdata[start + q] - w0) * tp[q]
            _combine(src, idx, n, coef, ap)
            pap = 0.0
            for a in range(k):
                pap += pv[a] * ap[a]
            if not (pap > 0.0):
                break
            alpha = rs / pap
            rsnew = 0.0
            for a in range(k):
                x[a] += alpha * pv[a]
                res[a] -= alpha * ap[a]
                rsnew += res[a] * res[a]
            for q in range(n):
                tx[q] += alpha * tp[q]
            beta = rsnew / rs
            for a in range(k):
                pv[a] = res[a] + beta * pv[a]
            rs = rsnew
        acc_row = 0.0
        for q in range(n):
            p = start + q
            pred = np.float64(tx[q])
            err = np.float64(adata[p]) - pred
            acc_row += np.float64(wdata[p]) * err * err - np.float64(w0) * pred * pred
        loss_out[t, 0] = acc_row
        loss_out[t, 1] = lam_t * _sqnorm(x)
        for a in range(k):
            out_t[a] = x[a]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def observed_loss(indptr, indices, wdata, adata, bounds, left, right, w0, out, part):
    """Per-row Σ_{j∈S_i} [W_ij (A_ij − u_i·v_j)² − w0 (u_i·v_j)²] in float64 into ``out[i]``.

    Adding w0·trace(UᵀU VᵀV) (the unobserved part, over all entries) gives the data term of
    the loss without densifying.
    """
    k = left.shape[1]
    for i in range(bounds[part], bounds[part + 1]):
        ui = left[i]
        acc_row = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            vj = right[indices[p]]
            # the dot in the factors' dtype (vectorised), the sums in float64
            dot = ui[0] * vj[0]
            for a in range(1, k):
                dot += ui[a] * vj[a]
            pred = np.float64(dot)
            err = np.float64(adata[p]) - pred
            acc_row += np.float64(wdata[p]) * err * err - w0 * pred * pred
        out[i] = acc_row
