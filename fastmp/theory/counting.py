"""Equation counting for single-parameter linear allocations (Theorems 3.2, 4.1, B.14, C.1).

The column of learnable weight ``(i, j)`` in the system of Lemma A.3 is a ``d x m``
matrix. For one layer of a LinearFFN it is ``a_i b_j^T`` (``a_i`` column ``i`` of
``A = W_L..W_{l+1}``, ``b_j`` row ``j`` of ``B = W_{l-1}..W_1 X``); for the encoder of an
LRNN it is ``U_i V_j`` with ``U_i`` (``d x T``) and ``V_j`` (``T x m``) (proof of
Theorem B.14). Hence the columns of the weights in a set of rows ``I`` lie in
``span(U_I) (x) R^m`` of dimension ``alpha m`` with ``alpha = min(k|I|, d)``, those in a
set of columns ``J`` lie in ``R^d (x) span(V_J)`` of dimension ``d beta`` with
``beta = min(k|J|, m)`` (``k = T`` for the encoder, 1 for an FFN layer), and together

    #{allocated weights in rows I or columns J} <= alpha m + d beta - alpha beta.   (*)

A violation of (*) for some ``(I, J)`` makes the allocated columns dependent on every
draw (rank < dm). The budgets of Theorems 3.2 and 4.1 are the cases ``|I| + |J| = 1``;
they are necessary but not sufficient -- e.g. in the middle layer of a 4-8-8-6 network
with ``m = 4``, a row holding 4 weights and a column holding 6 weights that do not
intersect exceed (*) for ``|I| = |J| = 1`` (10 > 4 + 6 - 1): rank 23 < 24.
"""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np


def count_bound(a, b, d, m, k=1):
    """Right-hand side of (*) for ``|I| = a`` rows and ``|J| = b`` columns."""
    alpha = min(k * a, d)
    beta = min(k * b, m)
    return alpha * m + d * beta - alpha * beta


def worst_violation(mask, d, m, k=1):
    """The ``(I, J)`` maximising ``count - bound`` in (*), as ``(excess, rows, cols)``.

    ``excess > 0`` means the allocated columns are linearly dependent on every draw.
    Exact: enumerates the subsets of the smaller side with ``k|S| < d`` (rows) or
    ``k|S| < m`` (columns) -- larger sets give the vacuous bound ``d m`` -- and picks the
    other side greedily, which is optimal because, for fixed rows ``I``, the count is a
    sum of independent per-column gains.
    """
    mask = np.asarray(mask, dtype=bool)
    rows_used = np.flatnonzero(mask.any(axis=1))
    cols_used = np.flatnonzero(mask.any(axis=0))
    sub = mask[np.ix_(rows_used, cols_used)].astype(np.int64)
    amax = min(len(rows_used), -(-d // k) - 1)   # largest a with k a < d
    bmax = min(len(cols_used), -(-m // k) - 1)   # largest b with k b < m
    n_row_sets = sum(comb(len(rows_used), a) for a in range(amax + 1))
    n_col_sets = sum(comb(len(cols_used), b) for b in range(bmax + 1))
    if n_col_sets < n_row_sets:
        ex, J, I = _scan(sub.T, m, d, k, bmax, len(rows_used))
        return ex, tuple(int(rows_used[i]) for i in I), tuple(int(cols_used[j]) for j in J)
    ex, I, J = _scan(sub, d, m, k, amax, len(cols_used))
    return ex, tuple(int(rows_used[i]) for i in I), tuple(int(cols_used[j]) for j in J)


def _scan(sub, d, m, k, amax, ncols):
    """Enumerate row sets of size <= amax; best column set greedily (roles as in (*),
    with ``d`` bounding rows and ``m`` bounding columns)."""
    rowsum = sub.sum(axis=1)
    colsum = sub.sum(axis=0)
    best = (-np.inf, (), ())
    bmax_all = ncols
    for a in range(amax + 1):
        for I in combinations(range(sub.shape[0]), a):
            I = list(I)
            base = int(rowsum[I].sum())
            gains = colsum - (sub[I].sum(axis=0) if I else 0)
            order = np.argsort(-gains, kind="stable")
            csum = np.concatenate([[0], np.cumsum(gains[order])])
            for b in range(bmax_all + 1):
                excess = base + int(csum[b]) - count_bound(a, b, d, m, k)
                if excess > best[0]:
                    best = (excess, tuple(I), tuple(int(j) for j in order[:b]))
    return best
