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
def assembly_scratch(Ls, Rs, alloc_i):
    """Scratch for :func:`assemble_columns` (allocate once per batch, not per trial)."""
    return np.empty((Ls.shape[0], Ls.shape[1] + Rs.shape[2], alloc_i.shape[0]))


@jit
def assemble_columns(Ls, Rs, alloc_i, alloc_j, C, G):
    """Fill ``C`` (``d*m x r``): column ``k`` is ``vec(sum_t L_t[:, i_k] R_t[j_k, :])``.

    ``Ls`` is ``(T, d, p)``, ``Rs`` is ``(T, q, m)``, ``G`` scratch from
    :func:`assembly_scratch`. The allocated columns of the factors are gathered first
    (``G[t, a, k] = L_t[a, i_k]``, ``G[t, d + c, k] = R_t[j_k, c]``), so that ``C`` is
    then filled row by row with unit-stride products that vectorise; gathering inside
    that loop cost 1.7x as much. (``C`` is row-major: writing it column by column touched
    a new cache line per entry.)
    """
    nt, d, _ = Ls.shape
    m = Rs.shape[2]
    r = alloc_i.shape[0]
    if nt == 1:
        assemble_columns1(Ls[0], Rs[0], alloc_i, alloc_j, C, G[0])
        return
    for t in range(nt):
        _gather_columns(Ls[t], Rs[t], alloc_i, alloc_j, G[t])
    for a in range(d):
        for c in range(m):
            for k in range(r):
                s = 0.0
                for t in range(nt):
                    s += G[t, a, k] * G[t, d + c, k]
                C[a * m + c, k] = s


@jit
def _gather_columns(L0, R0, alloc_i, alloc_j, G):
    d = L0.shape[0]
    m = R0.shape[1]
    for k in range(alloc_i.shape[0]):
        i = alloc_i[k]
        j = alloc_j[k]
        for a in range(d):
            G[a, k] = L0[a, i]
        for c in range(m):
            G[d + c, k] = R0[j, c]


@jit
def assemble_columns1(L0, R0, alloc_i, alloc_j, C, G):
    """:func:`assemble_columns` for a single term ``Y = L0 P R0`` (2-d ``L0``, ``R0``,
    scratch ``G`` of shape ``(d + m, r)``): entry ``(a m + c, k)`` of ``C`` is
    ``L0[a, i_k] R0[j_k, c]``."""
    d = L0.shape[0]
    m = R0.shape[1]
    r = alloc_i.shape[0]
    _gather_columns(L0, R0, alloc_i, alloc_j, G)
    for a in range(d):
        for c in range(m):
            for k in range(r):
                C[a * m + c, k] = G[a, k] * G[d + c, k]


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
