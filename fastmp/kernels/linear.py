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
def assemble_columns(Ls, Rs, alloc_i, alloc_j, C):
    """Fill ``C`` (``d*m x r``): column ``k`` is ``vec(sum_t L_t[:, i_k] R_t[j_k, :])``.

    ``Ls`` is ``(T, d, p)``, ``Rs`` is ``(T, q, m)``.
    """
    nt, d, _ = Ls.shape
    m = Rs.shape[2]
    for k in range(alloc_i.shape[0]):
        i = alloc_i[k]
        j = alloc_j[k]
        for a in range(d):
            for c in range(m):
                s = 0.0
                for t in range(nt):
                    s += Ls[t, a, i] * Rs[t, j, c]
                C[a * m + c, k] = s


@jit
def assemble_rhs(Ls, Rs, P, ystar, alloc_i, alloc_j, rhs):
    """Fill ``rhs = vec(Y* - sum_t L_t P0 R_t)`` and return the scale
    ``||Y*||_F + ||frozen part||_F`` against which its residual is judged. ``P`` is the
    student's parameter; its allocated entries are overwritten with zero."""
    nt, d, _ = Ls.shape
    m = Rs.shape[2]
    for k in range(alloc_i.shape[0]):
        P[alloc_i[k], alloc_j[k]] = 0.0
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
