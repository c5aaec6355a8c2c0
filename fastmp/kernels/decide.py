"""Rank-revealing match decision for one linear system ``C w = rhs``.

The system of a linear allocation (Lemma A.3: ``vec(L P R) = (R^T (x) L) vec(P)``,
restricted to the allocated columns) has a real solution iff ``rhs`` lies in the range of
``C``. We decide this with Householder QR with column pivoting (the algorithm of LAPACK's
``dgeqp3``): the pivots reveal the numerical rank ``k``, and the tail ``(Q^T rhs)[k:]`` is
the part of ``rhs`` no setting of the learnable weights can reach. Thresholds and their
meaning are documented in :class:`fastmp._config.Tolerances`. The Cython backend
(``fastmp._ext._lapack``) implements the same decision on top of LAPACK.
"""
from __future__ import annotations

import numpy as np

from .._config import AMBIGUOUS, MATCH, MATCH_RHO_FLOOR, NEED_RHS, NO_MATCH, jit


@jit
def decide_inplace(C, rhs, scale, rank_lo, rank_hi, res_lo, res_hi, colnorm):
    """Decide solvability of ``C w = rhs``; ``C`` and ``rhs`` are overwritten.

    ``C`` is ``M x N`` (any layout), ``rhs`` has length ``M``, ``colnorm`` is scratch of
    length ``N``. Returns ``(status, rank, rho_min_kept, residual)`` where ``status`` is
    ``MATCH``, ``NO_MATCH`` or ``AMBIGUOUS``.
    """
    M, N = C.shape
    kmax = min(M, N)
    # Column norms; recomputed from the trailing block at every step (no downdating),
    # which costs the same order as the factorisation and avoids LAPACK's
    # cancellation-recovery logic.
    ref = 0.0
    rank = 0
    ambiguous = False
    rho_min = 1.0
    for j in range(kmax):
        # pivot: the trailing column with the largest norm
        best = -1.0
        p = j
        for c in range(j, N):
            s = 0.0
            for i in range(j, M):
                s += C[i, c] * C[i, c]
            colnorm[c] = s
            if s > best:
                best = s
                p = c
        if p != j:
            for i in range(M):
                t = C[i, j]
                C[i, j] = C[i, p]
                C[i, p] = t
        alpha = np.sqrt(best)
        if j == 0:
            ref = alpha
            if ref == 0.0:
                break
        rho = alpha / ref
        if rho >= rank_hi:
            rank += 1
            rho_min = rho
        else:
            if rho > rank_lo:
                ambiguous = True
            break
        # Householder reflector v with v[0] = 1 mapping C[j:, j] to (beta, 0, ...)
        x0 = C[j, j]
        beta = -alpha if x0 >= 0.0 else alpha
        v0 = x0 - beta
        # v = C[j:, j] / v0 with v[j] = 1; H = I - tau v v^T, tau = (beta - x0) / beta
        tau = (beta - x0) / beta
        inv = 1.0 / v0
        for i in range(j + 1, M):
            C[i, j] *= inv
        C[j, j] = beta
        # apply H to the trailing columns
        for c in range(j + 1, N):
            s = C[j, c]
            for i in range(j + 1, M):
                s += C[i, j] * C[i, c]
            s *= tau
            C[j, c] -= s
            for i in range(j + 1, M):
                C[i, c] -= s * C[i, j]
        # and to rhs
        s = rhs[j]
        for i in range(j + 1, M):
            s += C[i, j] * rhs[i]
        s *= tau
        rhs[j] -= s
        for i in range(j + 1, M):
            rhs[i] -= s * C[i, j]
    res = 0.0
    for i in range(rank, M):
        res += rhs[i] * rhs[i]
    if scale < 0.0:
        # right-hand side not drawn: only a full row rank settles the trial without it
        if rank == M and not ambiguous:
            return MATCH, rank, rho_min, 0.0
        return NEED_RHS, rank, rho_min, np.inf
    res = np.sqrt(res) / scale if scale > 0.0 else np.sqrt(res)
    # Rounding leaves a tail of size ~ eps * scale / rho_min even for a consistent
    # system (the solution has size ~ |rhs| / sigma_k): "no match" is judged relative to
    # that. "Match" is not: an ill-conditioned system's true inconsistency can be as
    # small as that noise (seen: rho_min = 1e-8, true tail 3e-8), so the match test
    # floors rho_min at MATCH_RHO_FLOOR and such trials become ambiguous (exact re-decision).
    res_match = res * max(rho_min, MATCH_RHO_FLOOR)
    res *= rho_min
    if ambiguous:
        return AMBIGUOUS, rank, rho_min, res
    if res_match <= res_lo:
        return MATCH, rank, rho_min, res
    if res >= res_hi:
        return NO_MATCH, rank, rho_min, res
    return AMBIGUOUS, rank, rho_min, res


@jit
def lu_rcond(A, piv, x, y):
    """LU with partial pivoting of the square ``A`` (overwritten) and an estimate of its
    reciprocal 1-norm condition number (Hager's method as in LAPACK's ``dgecon``; the
    estimate of ``||A^-1||_1`` is a lower bound, typically within a factor 3).
    Returns 0.0 for an exactly zero pivot."""
    n = A.shape[0]
    anorm = 0.0
    for j in range(n):
        s = 0.0
        for i in range(n):
            s += abs(A[i, j])
        anorm = max(anorm, s)
    for k in range(n):
        p = k
        big = abs(A[k, k])
        for i in range(k + 1, n):
            if abs(A[i, k]) > big:
                big = abs(A[i, k])
                p = i
        piv[k] = p
        if big == 0.0:
            return 0.0
        if p != k:
            for j in range(n):
                t = A[k, j]
                A[k, j] = A[p, j]
                A[p, j] = t
        inv = 1.0 / A[k, k]
        for i in range(k + 1, n):
            A[i, k] *= inv
            f = A[i, k]
            if f != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= f * A[k, j]
    if anorm == 0.0:
        return 0.0
    # Hager / Higham: maximise ||A^-1 x||_1 over ||x||_1 = 1 by a few sign iterations
    z = np.empty(n)
    for i in range(n):
        x[i] = 1.0 / n
    est = 0.0
    for it in range(5):
        _lu_solve(A, piv, x, y, False)
        est_new = 0.0
        for i in range(n):
            est_new += abs(y[i])
        if it > 0 and est_new <= est:
            break
        est = est_new
        for i in range(n):
            y[i] = 1.0 if y[i] >= 0.0 else -1.0
        _lu_solve(A, piv, y, z, True)
        jmax = 0
        zmax = -1.0
        ztx = 0.0
        for i in range(n):
            ztx += z[i] * x[i]
            if abs(z[i]) > zmax:
                zmax = abs(z[i])
                jmax = i
        if zmax <= ztx:
            break
        for i in range(n):
            x[i] = 0.0
        x[jmax] = 1.0
    if not np.isfinite(est) or est == 0.0:
        return 0.0
    return 1.0 / (anorm * est)


@jit
def _lu_solve(LU, piv, b, out, transpose):
    """Solve ``A out = b`` (or ``A^T out = b``) from :func:`lu_rcond`'s factors."""
    n = LU.shape[0]
    for i in range(n):
        out[i] = b[i]
    if not transpose:
        for k in range(n):
            p = piv[k]
            if p != k:
                t = out[k]
                out[k] = out[p]
                out[p] = t
        for i in range(n):
            s = out[i]
            for j in range(i):
                s -= LU[i, j] * out[j]
            out[i] = s
        for i in range(n - 1, -1, -1):
            s = out[i]
            for j in range(i + 1, n):
                s -= LU[i, j] * out[j]
            out[i] = s / LU[i, i]
    else:
        for i in range(n):
            s = out[i]
            for j in range(i):
                s -= LU[j, i] * out[j]
            out[i] = s / LU[i, i]
        for i in range(n - 1, -1, -1):
            s = out[i]
            for j in range(i + 1, n):
                s -= LU[j, i] * out[j]
            out[i] = s
        for k in range(n - 1, -1, -1):
            p = piv[k]
            if p != k:
                t = out[k]
                out[k] = out[p]
                out[p] = t


@jit
def decide_batch(C, rhs, scale, rank_lo, rank_hi, res_lo, res_hi, status, screen=0.0):
    """Decide every system of a batch: ``C[b]`` (``M x N``), ``rhs[b]``, ``scale[b]``.

    Works on copies, so the inputs are left unchanged (the Cython backend gets the same
    arrays). Writes ``status[b]``. With ``screen > 0`` a square system whose LU-based
    reciprocal condition estimate reaches ``screen`` is a match without the pivoted QR
    (it is nonsingular; see :class:`fastmp.Tolerances`). ``scale[b] < 0`` means the
    right-hand side was not drawn: rank-deficient systems then get ``NEED_RHS``.
    """
    B, M, N = C.shape
    work = np.empty((M, N))
    r = np.empty(M)
    colnorm = np.empty(N)
    piv = np.empty(M, dtype=np.int64)
    x = np.empty(M)
    y = np.empty(M)
    for b in range(B):
        work[:, :] = C[b]
        if screen > 0.0 and M == N:
            if lu_rcond(work, piv, x, y) >= screen:
                status[b] = MATCH
                continue
            work[:, :] = C[b]
        r[:] = rhs[b]
        status[b] = decide_inplace(work, r, scale[b], rank_lo, rank_hi, res_lo, res_hi, colnorm)[0]
