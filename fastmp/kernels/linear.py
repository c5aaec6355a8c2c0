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
def matmul_into(A, B, out):
    """``out = A @ B`` with plain loops. The per-trial products of the linear kernels are
    tiny (tens of rows); a BLAS call plus the allocation of its result costs more than
    the arithmetic there."""
    n, k = A.shape
    p = B.shape[1]
    for i in range(n):
        for j in range(p):
            out[i, j] = 0.0
        for t in range(k):
            a = A[i, t]
            for j in range(p):
                out[i, j] += a * B[t, j]


@jit
def assemble_columns(Ls, Rs, alloc_i, alloc_j, C):
    """Fill ``C`` (``d*m x r``): column ``k`` is ``vec(sum_t L_t[:, i_k] R_t[j_k, :])``.

    ``Ls`` is ``(T, d, p)``, ``Rs`` is ``(T, q, m)``. ``C`` is filled row by row (it is
    row-major): writing it column by column touched a new cache line per entry and cost
    more than the products themselves.
    """
    nt, d, _ = Ls.shape
    m = Rs.shape[2]
    r = alloc_i.shape[0]
    if nt == 1:
        assemble_columns1(Ls[0], Rs[0], alloc_i, alloc_j, C)
        return
    for a in range(d):
        for c in range(m):
            row = C[a * m + c]
            for k in range(r):
                i = alloc_i[k]
                j = alloc_j[k]
                s = 0.0
                for t in range(nt):
                    s += Ls[t, a, i] * Rs[t, j, c]
                row[k] = s


@jit
def assemble_columns1(L0, R0, alloc_i, alloc_j, C):
    """:func:`assemble_columns` for a single term ``Y = L0 P R0`` (2-d ``L0``, ``R0``):
    entry ``(a m + c, k)`` of ``C`` is ``L0[a, i_k] R0[j_k, c]``."""
    d = L0.shape[0]
    m = R0.shape[1]
    r = alloc_i.shape[0]
    for a in range(d):
        for c in range(m):
            row = C[a * m + c]
            for k in range(r):
                row[k] = L0[a, alloc_i[k]] * R0[alloc_j[k], c]


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
