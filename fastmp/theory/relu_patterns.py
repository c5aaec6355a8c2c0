"""Counts of activation patterns left by Lemmas D.3 and D.4 (paper §5, Appendix D) for an
allocation in ``W1`` of a shallow ReLU network, and what Theorem 4.1's budgets mean there.

A trial matches iff some pattern ``P`` (an ``m x k`` 0/1 matrix: sample ``i``, used row
``j``) makes (D.1) solvable with a solution obeying (D.2) (Lemma D.2). The paper prunes
patterns whose equations are unsolvable:

* **Lemma D.3**: every sample needs at least ``d`` active used rows
  (``rank W2[:, U] P_i < d`` otherwise);
* **Lemma D.4**: used row ``j`` holding ``r_j`` learnable weights needs at least
  ``r_j`` active samples. The paper states it for ``r = dm``; its rank argument gives
  ``rank E(P) <= sum_j min(r_j, c_j)`` (``c_j`` active samples of row ``j``), i.e. the
  general form ``sum_j max(0, r_j - c_j) <= r - dm`` used here (``form="rank"``; for
  ``r = dm`` both forms coincide; ``form="paper"`` is the literal ``c_j >= r_j``);
* **Lemma B.4**: ``r < dm`` leaves no pattern.

Assumptions. These are probability-one statements: a pattern whose matrix has rank
``< dm`` is unsolvable only if the right-hand sides ``rhs_i = y_i - W2[:, ~U]
relu(W1[~U] x_i)`` are generic. That holds when ``Hc = [relu(W1* X); relu(W1[~U] X)]``
has full column rank ``m``, which fails with **positive** probability (a sample on which
every teacher unit and every unused student unit is inactive has ``rhs_i = 0``:
probability ``2^-(2n-k)``). So the counts are the patterns that can be feasible on
*non-degenerate draws* (``ReluTrialSystem.generic``), not on every draw.

Theorem 4.1 for ``W1`` of a ReLU network. In the linear network the row budget (``<= m``
weights per row) and the column budget (``<= d`` weights per column) are necessary. With
ReLU only the row budget survives, via Lemma D.4: a row with ``r_j > m`` weights (and
``r = dm``) would need ``r_j > m`` active samples, so **no** pattern is left and MP = 0
on non-degenerate draws (:func:`theorem41_relu`). The column budget is *not* necessary:
the equations of one input column ``x_j`` restricted to units with different activation
patterns are no longer confined to a ``d``-dimensional space (the Kronecker structure of
Lemma A.3 is broken by ``P_i``), and the exact decision finds matches for allocations
that exceed it (``tests/test_relu_search.py``).
"""
from __future__ import annotations

from functools import lru_cache
from itertools import product
from math import comb

import numpy as np

FORMS = ("rank", "paper")


def _check(k, m, d, r_row):
    r_row = tuple(int(x) for x in r_row)
    if k < 1 or m < 1 or d < 1:
        raise ValueError(f"relu_patterns: k, m and d must be >= 1, got {k}, {m}, {d}")
    if len(r_row) != k or min(r_row) < 1:
        raise ValueError(f"relu_patterns: r_row must list k = {k} positive row counts, "
                         f"got {list(r_row)}")
    return r_row


def pattern_count(k, m, d, r_row, d3=True, d4=True, form="rank"):
    """Number of activation patterns (``m x k`` 0/1 matrices) left by Lemma D.3 (each
    sample has ``>= d`` active used rows) and/or Lemma D.4 (in ``form``), exactly (Python
    integers). ``r_row[j]`` is the number of learnable weights of used row ``j``.

    Counts by dynamic programming over used rows; samples are exchangeable, so the state
    is the histogram of per-sample active counts (capped at ``d``) plus the rank deficit
    ``sum_j max(0, r_j - c_j)`` accumulated so far.
    """
    r_row = _check(k, m, d, r_row)
    if form not in FORMS:
        raise ValueError(f"pattern_count: form must be one of {FORMS}, got {form!r}")
    r = sum(r_row)
    if d4 and r < d * m:
        return 0                                       # Lemma B.4 (rank E <= r < dm)
    slack = r - d * m
    cap = d if d3 else 0
    # state: (histogram over active counts 0..cap, deficit) -> number of partial patterns
    states = {(tuple([m] + [0] * cap), 0): 1}
    for j in range(k):
        new = {}
        for (hist, deficit), ways in states.items():
            # choose how many samples of each count class turn row j on
            for pick in product(*(range(h + 1) for h in hist)):
                c_j = sum(pick)
                if d4:
                    if form == "paper":
                        if c_j < r_row[j]:
                            continue
                        nd = 0
                    else:
                        nd = deficit + max(0, r_row[j] - c_j)
                        if nd > slack:
                            continue
                else:
                    nd = 0
                mult = 1
                for h, p in zip(hist, pick):
                    mult *= comb(h, p)
                nh = list(hist)
                for t, p in enumerate(pick):
                    nh[t] -= p
                    nh[min(t + 1, cap)] += p
                key = (tuple(nh), nd)
                new[key] = new.get(key, 0) + ways * mult
        states = new
    return sum(w for (hist, _), w in states.items() if not d3 or hist[cap] == m)


def pattern_counts(model, allocation, m=None):
    """Counts for a ShallowReLU allocation in ``W1``: a dict with ``total = 2^(km)``,
    ``d3``, ``d4``, ``d3_d4`` (survivors of each rule and of both, rank form of D.4),
    ``d3_d4_paper`` (both, D.4 as the paper states it; equal to ``d3_d4`` when ``r = dm``),
    ``fraction`` (``d3_d4 / total``) and the ``assumption`` under which they hold."""
    from ..allocation import Allocation
    from ..models.shallow_relu import ShallowReLU

    if not isinstance(model, ShallowReLU):
        raise TypeError(f"pattern_counts: model must be a ShallowReLU, got {type(model).__name__}")
    if not isinstance(allocation, Allocation) or allocation.params != ("W1",):
        raise ValueError("pattern_counts: needs a fastmp.Allocation confined to W1")
    m = allocation.default_m() if m is None else int(m)
    rows = allocation.row_counts("W1")
    r_row = [int(x) for x in rows if x > 0]
    k, d = len(r_row), model.d
    total = 2 ** (k * m)
    out = {
        "k": k, "m": m, "d": d, "r": sum(r_row), "total": total,
        "d3": pattern_count(k, m, d, r_row, d3=True, d4=False),
        "d4": pattern_count(k, m, d, r_row, d3=False, d4=True),
        "d3_d4": pattern_count(k, m, d, r_row),
        "d3_d4_paper": pattern_count(k, m, d, r_row, form="paper"),
        "assumption": ("Lemmas D.3/D.4/B.4 hold on draws whose relu features "
                       "[relu(W1* X); relu(W1[~U] X)] have full column rank m (probability "
                       "below 1 for ReLU; see fastmp.theory.relu_patterns)"),
    }
    out["fraction"] = out["d3_d4"] / total
    return out


def surviving_patterns(k, m, d, r_row, form="rank"):
    """Every pattern left by Lemmas D.3 + D.4 (``(m, k)`` bool arrays), by enumeration;
    for tests and small ``k m`` only (``<= 20``)."""
    r_row = np.asarray(_check(k, m, d, r_row))
    if k * m > 20:
        raise ValueError(f"surviving_patterns: k m = {k * m} > 20; use pattern_count")
    r, slack = int(r_row.sum()), int(r_row.sum()) - d * m
    out = []
    if slack < 0:
        return out
    for bits in product((False, True), repeat=k * m):
        P = np.array(bits, dtype=bool).reshape(m, k)
        if np.any(P.sum(axis=1) < d):
            continue
        c = P.sum(axis=0)
        if form == "paper":
            if np.any(c < r_row):
                continue
        elif np.maximum(r_row - c, 0).sum() > slack:
            continue
        out.append(P)
    return out


def theorem41_relu(model, allocation, m=None):
    """Theorem 4.1's budgets for ``W1`` of a ShallowReLU: ``(row_violations,
    column_violations, minimal_on_generic_draws)``.

    ``minimal_on_generic_draws`` is True iff Lemma D.4 leaves no pattern, i.e. the rows
    beyond ``m`` weights waste more than the slack ``r - dm`` (for ``r = dm``: some row
    holds more than ``m`` weights). That is MP = 0 on non-degenerate draws only -- MP is
    positive (but tiny unless ``n`` is small) because of exact zeros of relu. Column
    violations (``> d`` weights in a column) do not make an allocation minimal.
    """
    m = allocation.default_m() if m is None else int(m)
    rows = allocation.row_counts("W1")
    cols = allocation.col_counts("W1")
    row_v = [int(i) for i in np.flatnonzero(rows > m)]
    col_v = [int(j) for j in np.flatnonzero(cols > model.d)]
    r_row = [int(x) for x in rows if x > 0]
    minimal = pattern_count(len(r_row), m, model.d, r_row, d3=False, d4=True) == 0
    return row_v, col_v, minimal
