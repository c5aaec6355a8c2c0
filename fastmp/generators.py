"""Allocation generators used by the paper's experiments (Appendix E.2) and by tests.

Every generator takes ``rng`` (an ``int`` seed or a ``numpy.random.Generator``) and
returns an :class:`~fastmp.Allocation`.
"""
from __future__ import annotations

import numpy as np

from .allocation import Allocation
from .models import LRNN, LinearEstimator, LinearFFN, ShallowReLU


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_name(model, name):
    if name not in model.param_shapes:
        raise ValueError(f"unknown parameter {name!r} for {type(model).__name__}; its "
                         f"parameters are {', '.join(model.param_names)}")


def random_mask(shape, r, rng=None, *, k=None, axis=0, row_cap=None, col_cap=None,
                use_all=True, max_tries=1000):
    """Random boolean mask with ``r`` ones inside the first ``k`` rows (``axis=0``) or
    columns (``axis=1``), at most ``row_cap`` per row and ``col_cap`` per column.

    With ``use_all`` every one of the ``k`` rows (columns) holds at least one weight, so
    ``k`` is the number of *used* rows, as in Figures 2 and 3 of the paper.
    """
    rng = _rng(rng)
    rows, cols = shape
    if axis == 1:
        mask = random_mask((cols, rows), r, rng, k=k, axis=0, row_cap=col_cap, col_cap=row_cap,
                           use_all=use_all, max_tries=max_tries)
        return mask.T.copy()
    k = rows if k is None else int(k)
    row_cap = cols if row_cap is None else min(int(row_cap), cols)
    col_cap = k if col_cap is None else min(int(col_cap), k)
    if not 1 <= k <= rows:
        raise ValueError(f"random_mask: k = {k} rows must lie in 1..{rows}")
    if r < 1 or r > k * row_cap or r > cols * col_cap:
        raise ValueError(f"random_mask: cannot place r = {r} weights in {k} rows of length "
                         f"{cols} with at most {row_cap} per row and {col_cap} per column")
    if use_all and r < k:
        raise ValueError(f"random_mask: r = {r} weights cannot use all k = {k} rows")
    for _ in range(max_tries):
        mask = np.zeros(shape, dtype=bool)
        rc = np.zeros(rows, dtype=int)
        cc = np.zeros(cols, dtype=int)
        ok = True
        if use_all:
            for i in rng.permutation(k):
                free = np.flatnonzero(cc < col_cap)
                if free.size == 0:
                    ok = False
                    break
                j = rng.choice(free)
                mask[i, j] = True
                rc[i] += 1
                cc[j] += 1
        placed = int(mask.sum())
        while ok and placed < r:
            cand = (~mask[:k]) & (rc[:k, None] < row_cap) & (cc[None, :] < col_cap)
            idx = np.flatnonzero(cand)
            if idx.size == 0:
                ok = False
                break
            i, j = divmod(int(rng.choice(idx)), cols)
            mask[i, j] = True
            rc[i] += 1
            cc[j] += 1
            placed += 1
        if ok:
            return mask
    raise ValueError(f"random_mask: no allocation of r = {r} found in {max_tries} tries "
                     f"(k = {k}, row_cap = {row_cap}, col_cap = {col_cap})")


def random_in_rows(model, name, r, k, rng=None, *, axis=0, row_cap=None, col_cap=None,
                   use_all=True):
    """Allocation of ``r`` weights of parameter ``name`` spread at random over exactly the
    first ``k`` rows (``axis=0``) or columns (``axis=1``), honouring per-row/column caps.

    For the recurrent weights of an LRNN (Figure 2) the caps default to Theorem 3.4's
    budgets, ``Tb`` per row and ``Td`` per column, as in Appendix E.2.
    """
    _check_name(model, name)
    if isinstance(model, LRNN) and name == "W":
        row_cap = model.T * model.b if row_cap is None else row_cap
        col_cap = model.T * model.d if col_cap is None else col_cap
    mask = random_mask(model.param_shapes[name], r, rng, k=k, axis=axis,
                       row_cap=row_cap, col_cap=col_cap, use_all=use_all)
    return Allocation(model, {name: mask})


def theorem31(model, m=None, rng=None):
    """Decoder allocation with exactly ``m`` learnable weights in every row (Theorem 3.1;
    for a LinearEstimator the same condition of §2.1; for a ShallowReLU it is W2)."""
    name = {LRNN: "D", LinearEstimator: "W", ShallowReLU: "W2"}.get(type(model))
    if isinstance(model, LinearFFN):
        name = model.param_names[-1]
    if name is None:
        raise TypeError(f"theorem31: no decoder in {type(model).__name__}")
    rows, cols = model.param_shapes[name]
    m = cols if m is None else int(m)
    if not 1 <= m <= cols:
        raise ValueError(f"theorem31: m = {m} must lie in 1..{cols} (the row length)")
    rng = _rng(rng)
    mask = np.zeros((rows, cols), dtype=bool)
    for i in range(rows):
        mask[i, rng.choice(cols, size=m, replace=False)] = True
    return Allocation(model, {name: mask})


def theorem35(model, m=None, by="rows", rng=None):
    """Recurrent allocation meeting Theorem 3.5: ``r = d m`` weights in ``r / (T b)`` rows
    holding exactly ``T b`` each (``by="rows"``), or in ``r / (T d)`` columns holding
    exactly ``T d`` each (``by="columns"``). Rows/columns and positions are random."""
    if not isinstance(model, LRNN):
        raise TypeError("theorem35: needs an LRNN")
    m = model.T * model.b if m is None else int(m)
    r = model.d * m
    per = model.T * model.b if by == "rows" else model.T * model.d
    if by not in ("rows", "columns"):
        raise ValueError("theorem35: by must be 'rows' or 'columns'")
    if r % per:
        raise ValueError(f"theorem35: r = d m = {r} is not a multiple of {per} "
                         f"(T{'b' if by == 'rows' else 'd'}); no allocation meets Theorem 3.5 ({by})")
    k = r // per
    n = model.n
    if k > n:
        raise ValueError(f"theorem35: needs {k} {by} but W has only {n}")
    rng = _rng(rng)
    mask = np.zeros((n, n), dtype=bool)
    for i in rng.choice(n, size=k, replace=False):
        mask[i, rng.choice(n, size=per, replace=False)] = True
    if by == "columns":
        mask = mask.T.copy()
    return Allocation(model, {"W": mask})


def budget_allocation(model, name, m, rng=None, *, maximal=False, max_tries=1000):
    """Random allocation of ``r = d m`` weights in a parameter the model is linear in,
    within the row/column budgets of Theorems 3.2 (LRNN encoder: ``T m`` per row, ``T d``
    per column) and 4.1 (FFN layer: ``m`` per row, ``d`` per column).

    The budgets are necessary, not sufficient. With ``maximal=True`` allocations are
    redrawn until they also meet the exact count condition over sets of rows and columns
    (:func:`fastmp.theory.worst_violation`), i.e. are maximal by construction.
    """
    from .theory.counting import worst_violation  # theory imports generators' models only

    _check_name(model, name)
    d = model.d
    if isinstance(model, LRNN) and name == "B":
        row_cap, col_cap = model.T * m, model.T * d
    elif isinstance(model, LinearFFN) and name in model.param_shapes:
        row_cap, col_cap = m, d
    else:
        raise ValueError(f"budget_allocation: no row/column budget theorem for {name!r} of {type(model).__name__}")
    shape = model.param_shapes[name]
    rng = _rng(rng)
    k = model.T if isinstance(model, LRNN) else 1
    for _ in range(max_tries):
        mask = random_mask(shape, d * m, rng, k=shape[0], row_cap=row_cap, col_cap=col_cap,
                           use_all=False, max_tries=max_tries)
        if not maximal or worst_violation(mask, d, m, k)[0] <= 0:
            return Allocation(model, {name: mask})
    raise ValueError(f"budget_allocation: no maximal allocation found in {max_tries} tries")


#: The six allocations of two weights in the 2 x 2 recurrent matrix of Appendix B.1.1,
#: with ``W = [[W1, W2], [W3, W4]]``.
B11_NAMES = ("diagonal", "off_diagonal", "row1", "row2", "col1", "col2")
_B11_CELLS = {
    "diagonal": ((0, 0), (1, 1)),
    "off_diagonal": ((0, 1), (1, 0)),
    "row1": ((0, 0), (0, 1)),
    "row2": ((1, 0), (1, 1)),
    "col1": ((0, 0), (1, 0)),
    "col2": ((0, 1), (1, 1)),
}


def b11_allocations(model=None):
    """``{name: Allocation}`` for the six allocations of Appendix B.1.1 on
    ``LRNN(n=2, T=2, b=1, d=1)`` (m = 2). The four row/column ones meet Theorem 3.5;
    ``diagonal`` and ``off_diagonal`` do not."""
    model = LRNN(n=2, T=2, b=1, d=1) if model is None else model
    if model.param_shapes["W"] != (2, 2):
        raise ValueError("b11_allocations: needs an LRNN with n = 2")
    out = {}
    for name in B11_NAMES:
        mask = np.zeros((2, 2), dtype=bool)
        for cell in _B11_CELLS[name]:
            mask[cell] = True
        out[name] = Allocation(model, {"W": mask})
    return out
