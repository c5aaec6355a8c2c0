"""Assembly of the allocated columns of a linear allocation's system.

A model whose output is linear in the learned parameter ``P`` writes it as a sum of
terms ``Y = sum_t L_t P R_t`` (``L_t``: ``d x rows(P)``, ``R_t``: ``cols(P) x m``). By
Lemma A.3, ``vec(L P R) = (L (x) R^T) vec(P)`` with row-major ``vec``; the column of
weight ``(i, j)`` is therefore the ``d x m`` matrix ``sum_t L_t[:, i] R_t[j, :]``.
Only the ``r`` allocated columns are ever formed -- never the full Kronecker product.

The right-hand side is what the learnable weights must supply:
``rhs = vec(Y* - sum_t L_t P0 R_t)`` where ``P0`` is the student's parameter with the
allocated entries set to zero (their frozen draws are unused).
"""
from __future__ import annotations

import numpy as np

from .._config import jit


@jit
def assemble(Ls, Rs, P, ystar, alloc_i, alloc_j, C, rhs):
    """Fill ``C`` (``d*m x r``) and ``rhs`` (``d*m``) for one trial; return the scale
    ``||Y*||_F + ||frozen part||_F`` against which the residual of ``rhs`` is judged.

    ``Ls`` is ``(T, d, p)``, ``Rs`` is ``(T, q, m)``, ``P`` is the student's ``p x q``
    parameter (its allocated entries are overwritten with zero), ``ystar`` is ``d x m``.
    """
    nt, d, _ = Ls.shape
    m = Rs.shape[2]
    r = alloc_i.shape[0]
    for k in range(r):
        P[alloc_i[k], alloc_j[k]] = 0.0
        i = alloc_i[k]
        j = alloc_j[k]
        for a in range(d):
            for c in range(m):
                s = 0.0
                for t in range(nt):
                    s += Ls[t, a, i] * Rs[t, j, c]
                C[a * m + c, k] = s
    frozen = np.zeros((d, m))
    for t in range(nt):
        frozen += np.dot(np.dot(Ls[t], P), Rs[t])
    ys = 0.0
    fs = 0.0
    for a in range(d):
        for c in range(m):
            rhs[a * m + c] = ystar[a, c] - frozen[a, c]
            ys += ystar[a, c] * ystar[a, c]
            fs += frozen[a, c] * frozen[a, c]
    return np.sqrt(ys) + np.sqrt(fs)


@jit
def matpow_chain(W, T):
    """``out[k] = W^(k+1)`` for ``k = 0 .. T-1``."""
    n = W.shape[0]
    out = np.empty((T, n, n))
    out[0] = W
    for k in range(1, T):
        out[k] = np.dot(out[k - 1], W)
    return out
