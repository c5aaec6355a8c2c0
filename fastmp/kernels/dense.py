"""Small dense linear solves for the per-start kernels (no allocation, no LAPACK call).

At the sizes of the polynomial and ReLU systems (tens of unknowns) a LAPACK call through
``np.linalg.solve`` cost 2-3x the arithmetic in argument copies and allocations.
"""
from __future__ import annotations

import numpy as np

from .._config import jit


@jit
def solve_into(A, b, lam, pivot_tol, W, x):
    """``x = (A + lam diag(max(A_ii, 1e-12)))^-1 b`` by Gaussian elimination with partial
    pivoting in the scratch ``W`` (``A``, ``b`` untouched; ``lam = 0``: plain ``A x = b``).

    Returns False -- and the caller treats the system as singular -- when a pivot is not
    above ``pivot_tol`` times the largest entry of ``A`` (``pivot_tol = 0``: only exact
    zeros), or the solution is not finite."""
    n = A.shape[0]
    scale = 0.0
    for i in range(n):
        for j in range(n):
            W[i, j] = A[i, j]
            a = abs(A[i, j])
            if a > scale:
                scale = a
        if lam != 0.0:
            W[i, i] += lam * max(A[i, i], 1e-12)
        x[i] = b[i]
    if scale == 0.0:
        return False
    # W may be larger scratch (the reduced ReLU systems pass one buffer for all sizes)
    return solve_overwrite(W[:n, :n], x, pivot_tol * scale)


@jit(_nrt=False)
def solve_overwrite(W, x, pivot_min=0.0):
    """``x <- W^-1 x`` by Gaussian elimination with partial pivoting, ``W`` overwritten
    (``U`` on and above the diagonal, scratch below it): for a caller that owns its
    matrix (Newton's Jacobian is rebuilt every iteration) and so saves
    :func:`solve_into`'s copy; ``n`` = the rows of ``W``. False when a pivot is not
    above ``pivot_min`` or the solution is not finite.

    The right-hand side is eliminated with the rows, so the multipliers are not kept:
    each row update runs from column ``k + 1`` rounded down to a multiple of 4 to the
    end (the few columns left of ``k + 1`` it also touches are never read again, and
    every other entry gets the same operations in the same order as an update of
    columns ``k + 1..n``), and row swaps skip the columns left of ``k``: 1.08 -> 0.94 us
    per 16 x 16 solve, the same solutions bit for bit."""
    n = W.shape[0]
    for k in range(n):
        p = k
        big = abs(W[k, k])
        for i in range(k + 1, n):
            a = abs(W[i, k])
            if a > big:
                big = a
                p = i
        if not big > pivot_min:
            return False
        if p != k:
            for j in range(k, n):
                t = W[k, j]
                W[k, j] = W[p, j]
                W[p, j] = t
            t = x[k]
            x[k] = x[p]
            x[p] = t
        inv = 1.0 / W[k, k]
        j0 = (k + 1) & ~3
        rowk = W[k, j0:n]
        for i in range(k + 1, n):
            f = W[i, k] * inv
            if f != 0.0:
                rowi = W[i, j0:n]
                for j in range(rowk.shape[0]):
                    rowi[j] -= f * rowk[j]
                x[i] -= f * x[k]
    for i in range(n - 1, -1, -1):
        s = x[i]
        for j in range(i + 1, n):
            s -= W[i, j] * x[j]
        x[i] = s / W[i, i]
    for i in range(n):
        if not np.isfinite(x[i]):
            return False
    return True


@jit
def cholesky_solve_damped(A, b, lam, W, x):
    """``x = (A + lam diag(max(A_ii, 1e-12)))^-1 b`` for a symmetric positive
    semi-definite ``A`` (Levenberg-Marquardt's ``J^T J``) by Cholesky factorisation in
    the scratch ``W`` (lower triangle; ``A``, ``b`` untouched). Half the flops of
    :func:`solve_into` and no pivot search.

    Returns False -- the caller rejects the step and raises the damping -- when the
    damped matrix is not numerically positive definite (a pivot not above zero) or the
    solution is not finite."""
    n = A.shape[0]
    for i in range(n):
        for j in range(i + 1):
            W[i, j] = A[i, j]
        W[i, i] += lam * max(A[i, i], 1e-12)
    for j in range(n):
        s = W[j, j]
        for k in range(j):
            s -= W[j, k] * W[j, k]
        if not s > 0.0:
            return False
        piv = np.sqrt(s)
        W[j, j] = piv
        inv = 1.0 / piv
        for i in range(j + 1, n):
            t = W[i, j]
            for k in range(j):
                t -= W[i, k] * W[j, k]
            W[i, j] = t * inv
    # L y = b, then L^T x = y
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= W[i, k] * x[k]
        x[i] = s / W[i, i]
    for i in range(n - 1, -1, -1):
        s = x[i]
        for k in range(i + 1, n):
            s -= W[k, i] * x[k]
        x[i] = s / W[i, i]
    for i in range(n):
        if not np.isfinite(x[i]):
            return False
    return True
