"""Theorem 3.5's proof as an algorithm (Appendix B.1, proofs of Theorems B.6 and B.9).

Rows variant (every used row of ``W`` holds exactly ``Tb`` learnable weights): the
auxiliary ``F = (F_1 | ... | F_T)``, ``F_t = W^(T-t+1) B`` (``n x Tb``) is fixed by linear
equations alone -- the output equation ``D F X = Y`` (B.5, rank ``dm``) and the rows of
``W g_B(F) = F`` that hold no learnable weight (B.6, rank ``nTb - dm``) -- after which every
used row ``i`` solves its own ``Tb x Tb`` system ``W_i g_B(F) = F_i`` (B.3).

Columns variant (every used column holds exactly ``Td``): the same with
``F_t = D W^(T-t+1)`` (``d x n`` each, stacked to ``Td x n``), ``g_D(F) W = F`` (B.7) and
``sum_t F_t B X_t = Y`` (B.8).

The root is unique, so this decides the trial exactly (up to the conditioning of two
linear solves, which :func:`fastmp.estimators.certify.krawczyk` then certifies on the
original polynomial system).
"""
from __future__ import annotations

import numpy as np


def _solve(A, b, prec=256):
    """Solve the square system ``A x = b``; when double precision leaves a relative
    residual above 1e-10 (the Krylov-like system for F is badly conditioned at large T),
    solve it again in ``prec``-bit arb arithmetic (A and b are exact doubles)."""
    x, *_ = np.linalg.lstsq(A, b, rcond=None)
    scale = np.abs(A).dot(np.abs(x)).max() + np.abs(b).max()
    if np.all(np.isfinite(x)) and np.abs(A @ x - b).max() <= 1e-10 * scale:
        return x
    from flint import arb_mat, ctx
    old = ctx.prec
    ctx.prec = prec
    try:
        Aa = arb_mat([[float(v) for v in row] for row in np.atleast_2d(A)])
        ba = arb_mat([[float(v)] for v in np.ravel(b)])
        xa = Aa.solve(ba)
        return np.array([float(xa[i, 0].mid()) for i in range(xa.nrows())])
    except (ZeroDivisionError, ValueError):
        return x
    finally:
        ctx.prec = old


def theorem35_rows(W, B, D, X, Y, mask):
    """Root of the rows variant; ``W`` holds the frozen values (allocated entries are
    ignored), ``X`` is ``(T, b, m)``. Returns the full ``W`` with the solved entries."""
    n, b = B.shape
    T = X.shape[0]
    d, m = Y.shape
    Tb = T * b
    used = mask.any(axis=1)
    nF = n * Tb
    rows, rhs = [], []
    # output: sum_t D F_t X_t = Y, F_t = F[:, t b:(t+1) b]
    for a in range(d):
        for mu in range(m):
            row = np.zeros(nF)
            for t in range(T):
                # F[i, t b + beta] coefficient: D[a, i] X_t[beta, mu]
                row.reshape(n, Tb)[:, t * b:(t + 1) * b] += np.outer(D[a], X[t][:, mu])
            rows.append(row)
            rhs.append(Y[a, mu])
    # unused rows i: sum_j W_ij g(F)[j, c] - F[i, c] = 0; g(F) = (F_2 .. F_T | B)
    for i in np.flatnonzero(~used):
        for c in range(Tb):
            row = np.zeros(nF)
            R = row.reshape(n, Tb)
            R[i, c] -= 1.0
            if c < (T - 1) * b:
                R[:, c + b] += W[i]
                rhs.append(0.0)
            else:
                rhs.append(-W[i] @ B[:, c - (T - 1) * b])
            rows.append(row)
    F = _solve(np.array(rows), np.array(rhs)).reshape(n, Tb)
    G = np.concatenate([F[:, b:], B], axis=1)          # g_B(F), n x Tb
    Wsol = W.copy()
    for i in np.flatnonzero(used):
        cols = mask[i]
        target = F[i] - W[i, ~cols] @ G[~cols]
        Wsol[i, cols] = _solve(G[cols].T, target)
    return Wsol


def theorem35_columns(W, B, D, X, Y, mask):
    """Root of the columns variant (transposed roles: ``F_t = D W^(T-t+1)``)."""
    n, b = B.shape
    T = X.shape[0]
    d, m = Y.shape
    Td = T * d
    used = mask.any(axis=0)
    nF = Td * n
    rows, rhs = [], []
    # output: sum_t F_t B X_t = Y; F stacked (Td x n), block t rows t d:(t+1) d
    for a in range(d):
        for mu in range(m):
            row = np.zeros(nF)
            R = row.reshape(Td, n)
            for t in range(T):
                R[t * d + a, :] += B @ X[t][:, mu]
            rows.append(row)
            rhs.append(Y[a, mu])
    # unused columns j: sum_i g(F)[c, i] W_ij - F[c, j] = 0; g(F) = (F_2; ..; F_T; D)
    for j in np.flatnonzero(~used):
        for c in range(Td):
            row = np.zeros(nF)
            R = row.reshape(Td, n)
            R[c, j] -= 1.0
            if c < (T - 1) * d:
                R[c + d, :] += W[:, j]
                rhs.append(0.0)
            else:
                rhs.append(-D[c - (T - 1) * d] @ W[:, j])
            rows.append(row)
    F = _solve(np.array(rows), np.array(rhs)).reshape(Td, n)
    G = np.concatenate([F[d:], D], axis=0)              # g_D(F), Td x n
    Wsol = W.copy()
    for j in np.flatnonzero(used):
        rws = mask[:, j]
        target = F[:, j] - G[:, ~rws] @ W[~rws, j]
        Wsol[rws, j] = _solve(G[:, rws], target)
    return Wsol
