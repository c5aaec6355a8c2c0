"""Theory oracle: maximal (MP = 1), minimal (MP = 0) or undetermined, without Monte Carlo.

Each rule is applied only under the assumptions of the result it comes from; outside
them the answer is "undetermined" (or, for linear allocations, the exact generic-rank
computation of :mod:`fastmp.theory.generic` decides). Rules, in order:

* outside the paper's standing assumption (``m`` larger than the rank the inputs can
  have, so the teacher's outputs are not generic): no theorem applies;
* **Lemma B.4**: ``r < d m`` => minimal;
* **§2.1 / Theorem 3.1** (linear estimator, LRNN decoder, last FFN layer): a row with
  fewer than ``m`` learnable weights => minimal; every row with at least ``m`` =>
  maximal (``r > d m`` by the argument of Appendix F.1);
* **Theorems 3.2 / 4.1, corrected** (LRNN encoder, inner FFN layers, ``r = d m``): the
  count condition of :mod:`fastmp.theory.counting` over every set of rows together with
  every set of columns. Violated => minimal. Satisfied => maximal, and every such verdict
  is certified by an exact full-rank evaluation (the row/column budgets alone, as the
  theorems state them, are necessary but not sufficient);
* **Theorem 3.4**, in the form its proof (B.5/B.8) gives: learnable weights beyond ``Tb``
  in a row of ``W`` (or beyond ``m`` in a row of ``D``) are wasted in the row lifting,
  beyond ``Td`` in a column of ``W`` in the column lifting; if what is left is fewer than
  ``d m`` => minimal (Lemma B.4). For ``r = d m`` this is the theorem as stated;
* **Theorem 3.5**: ``r = d m`` and every used row of ``W`` holds exactly ``Tb`` (or every
  used column exactly ``Td``) => maximal;
* the same waste argument for several layers of a LinearFFN (lifting 4.1-4.3: a row of
  any layer meets ``m`` equations, a column ``d``);
* **Lemma D.3 / D.4** (ShallowReLU, allocations in ``W1``): fewer than ``d`` used rows,
  or rows holding more than ``m`` weights wasting more than ``r - dm`` => MP is zero
  except on draws with rank-deficient relu features, which have positive probability:
  reported as undetermined with the lemma as rule (never "minimal"; likewise B.4 and
  short decoder rows for ShallowReLU); otherwise the reason gives the number of
  activation patterns that survive the lemmas (:mod:`fastmp.theory.relu_patterns`);
* **Jacobian rank** (``exact=True``, polynomial allocations no theorem decides): the
  image of ``w -> Y(w)`` has the dimension of the generic rank of its Jacobian; below
  ``d m`` it is a null set => minimal (Lemma B.4 and Theorem 3.4 are special cases). At
  full rank the map is dominant, so MP > 0, but whether every draw has a *real* root is
  left undetermined.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..allocation import Allocation
from ..models import LRNN, LinearEstimator, LinearFFN, ShallowReLU
from .counting import worst_violation
from .generic import PRIME, generic_decision, generic_jacobian_rank

KINDS = ("maximal", "minimal", "undetermined")


@dataclass(frozen=True)
class Classification:
    """``kind`` in {"maximal", "minimal", "undetermined"}; ``rule`` names the deciding
    result (e.g. "Theorem 3.1"); ``reason`` says why in one sentence."""

    kind: str
    rule: str
    reason: str

    def to_dict(self):
        return {"kind": self.kind, "rule": self.rule, "reason": self.reason}


def _maximal(rule, reason):
    return Classification("maximal", rule, reason)


def _minimal(rule, reason):
    return Classification("minimal", rule, reason)


def _undetermined(reason):
    return Classification("undetermined", "", reason)


def _is_decoder(model, name):
    return ((isinstance(model, LinearEstimator) and name == "W")
            or (isinstance(model, LRNN) and name == "D")
            or (isinstance(model, LinearFFN) and name == model.param_names[-1]))


def _decoder_rule(model, allocation, name, m):
    rows = allocation.row_counts(name)
    rule = "§2.1" if isinstance(model, LinearEstimator) else "Theorem 3.1"
    short = np.flatnonzero(rows < m)
    if short.size:
        i = int(short[0])
        return _minimal(rule, f"row {i} of {name} has {int(rows[i])} < m = {m} learnable "
                              f"weights: its m equations cannot all be met")
    return _maximal(rule, f"every row of {name} has >= m = {m} learnable weights; each row "
                          f"solves its own m x r_i system")


def _count_rule(model, allocation, name, m):
    k = model.T if isinstance(model, LRNN) else 1
    rule = "Theorem 3.2 (corrected)" if isinstance(model, LRNN) else "Theorem 4.1 (corrected)"
    excess, I, J = worst_violation(allocation.mask(name), model.d, m, k)
    if excess > 0:
        what = " and ".join(p for p in (f"rows {list(I)}" if I else "",
                                         f"columns {list(J)}" if J else "") if p)
        return _minimal(rule, f"{what} of {name} hold {excess} more learnable weights than the "
                              f"equations they can reach; the system has rank < dm on every draw")
    return _maximal(rule, f"every set of rows and columns of {name} holds no more learnable "
                          f"weights than the equations it reaches")


def _waste(counts, cap):
    return int(np.maximum(np.asarray(counts) - cap, 0).sum())


def _lrnn_polynomial_rules(model, allocation, m):
    r, d = allocation.r, model.d
    Tb, Td = model.T * model.b, model.T * model.d
    W = allocation.mask("W")
    row_waste = _waste(W.sum(axis=1), Tb) + _waste(allocation.row_counts("D"), m)
    # the column lifting (Lemma B.7) needs T d <= n
    col_waste = _waste(W.sum(axis=0), Td) if Td <= model.n else 0
    if r - row_waste < d * m:
        return _minimal("Theorem 3.4", f"rows of W beyond Tb = {Tb} (and rows of D beyond m) "
                                       f"waste {row_waste} of r = {r} weights; {r - row_waste} < dm = {d * m}")
    if r - col_waste < d * m:
        return _minimal("Theorem 3.4", f"columns of W beyond Td = {Td} waste {col_waste} of r = {r} "
                                       f"weights; {r - col_waste} < dm = {d * m}")
    variant = theorem35_variant(model, allocation, m)
    if variant == "rows":
        return _maximal("Theorem 3.5", f"every used row of W holds exactly Tb = {Tb} weights")
    if variant == "columns":
        return _maximal("Theorem 3.5", f"every used column of W holds exactly Td = {Td} weights")
    return None


def theorem35_variant(model, allocation, m):
    """"rows" if the allocation meets Theorem 3.5's first condition (r = dm weights of W,
    every used row holding exactly Tb), "columns" for the second (every used column
    exactly Td; needs Td <= n), else None. Assumes m <= Tb (independent inputs)."""
    if not isinstance(model, LRNN) or allocation.params != ("W",):
        return None
    if allocation.r != model.d * m or m > model.max_generic_m():
        return None
    W = allocation.mask("W")
    Tb, Td = model.T * model.b, model.T * model.d
    rows, cols = W.sum(axis=1), W.sum(axis=0)
    if np.all((rows == 0) | (rows == Tb)):
        return "rows"
    if Td <= model.n and np.all((cols == 0) | (cols == Td)):
        return "columns"
    return None


def _ffn_polynomial_rules(model, allocation, m):
    r, d = allocation.r, model.d
    row_waste = sum(_waste(allocation.row_counts(n), m) for n in allocation.params)
    col_waste = sum(_waste(allocation.col_counts(n), d) for n in allocation.params)
    for waste, what in ((row_waste, f"rows beyond m = {m}"), (col_waste, f"columns beyond d = {d}")):
        if r - waste < d * m:
            return _minimal("Theorem 3.4 (FFN analogue, eqs. 4.1-4.3)",
                            f"learnable weights in {what} are wasted ({waste} of r = {r}); "
                            f"{r - waste} < dm = {d * m}")
    return None


def _relu_rules(model, allocation, m):
    """Appendix D's lemmas hold only on draws whose relu features
    ``[relu(W1* X); relu(W1[~U] X)]`` have full column rank: a sample on which every
    teacher unit and every frozen student unit is inactive has a zero right-hand side,
    and the learnable rows can then switch themselves off. That happens with positive
    probability (at least ``2^-(2n-k)`` per sample), so these allocations have a small
    but *positive* MP: never "minimal", but undetermined with the lemma that bounds it."""
    bound = ("MP is 0 on every draw whose relu features [relu(W1* X); relu(W1[~U] X)] "
             "have full column rank, so it is at most the (small, positive) probability "
             "that they do not")
    r, d = allocation.r, model.d
    if allocation.params == ("W2",):
        rows = allocation.row_counts("W2")
        short = np.flatnonzero(rows < m)
        if short.size:
            i = int(short[0])
            return Classification("undetermined", "§2.1 (decoder rows)",
                                  f"row {i} of W2 has {int(rows[i])} < m = {m} learnable "
                                  f"weights; {bound}")
        return None
    if allocation.params == ("W1",):
        rows = allocation.row_counts("W1")
        k = int(np.count_nonzero(rows))
        if k < d:
            return Classification("undetermined", "Lemma D.3",
                                  f"only k = {k} < d = {d} rows of W1 are learnable; {bound}")
        # Lemma D.4 in the form its rank argument gives: row j holding r_j weights
        # contributes at most min(r_j, m) to the rank (r_j = m exactly when r = dm)
        waste = _waste(rows, m)
        if r - waste < d * m:
            return Classification("undetermined", "Lemma D.4",
                                  f"rows of W1 beyond m = {m} weights waste {waste} of r = {r}; "
                                  f"{r - waste} < dm = {d * m}; {bound}")
        return _relu_pattern_note(model, allocation, m)
    return None


def _relu_pattern_note(model, allocation, m):
    """No rule decides a ReLU W1 allocation that passes Lemmas D.3/D.4: say how many
    activation patterns survive them (``fastmp.theory.relu_patterns``) and that
    Theorem 4.1's column budget does not apply to ReLU."""
    from .relu_patterns import pattern_counts, theorem41_relu

    c = pattern_counts(model, allocation, m)
    _, cols, _ = theorem41_relu(model, allocation, m)
    note = (f"no theorem of the paper decides this allocation; {c['d3_d4']} of "
            f"2^(km) = {c['total']} activation patterns survive Lemmas D.3/D.4 (on "
            "non-degenerate draws)")
    if cols:
        note += (f"; columns {cols} exceed Theorem 4.1's column budget d = {model.d}, "
                 "which is not necessary for ReLU (different activation patterns break "
                 "the Kronecker structure)")
    return _undetermined(note)


def classify(model, allocation, m=None, exact=True):
    """Decide from theory whether ``allocation`` is maximal (MP = 1), minimal (MP = 0) or
    undetermined, and by which result.

    With ``exact=True`` (default) allocations confined to one parameter a polynomial model
    is linear in are always decided: where no theorem applies, by the exact generic-rank
    computation of :func:`fastmp.theory.generic.generic_decision`.
    """
    if not isinstance(allocation, Allocation):
        raise TypeError("classify: allocation must be a fastmp.Allocation")
    if allocation.model != model:
        raise ValueError(f"classify: allocation is for {allocation.model!r}, not {model!r}")
    m = allocation.default_m() if m is None else int(m)
    if m < 1:
        raise ValueError(f"classify: m must be >= 1, got {m}")
    r, d = allocation.r, model.d
    name = allocation.linear_param
    algebraic_linear = name is not None and getattr(model, "algebraic", True)

    verdict = None
    why = "no theorem of the paper decides this allocation"
    if m > model.max_generic_m():
        why = (f"m = {m} exceeds {model.max_generic_m()}, the largest number of linearly "
               "independent inputs; the paper's theorems assume independent samples")
    elif r < d * m and isinstance(model, ShallowReLU):
        verdict = Classification("undetermined", "Lemma B.4",
                                 f"r = {r} < dm = {d * m}: fewer unknowns than equations; with "
                                 "relu outputs that are exactly zero with positive probability "
                                 "MP is small but not 0")
    elif r < d * m:
        verdict = _minimal("Lemma B.4", f"r = {r} < dm = {d * m}: fewer unknowns than equations")
    elif name is not None and _is_decoder(model, name):
        verdict = _decoder_rule(model, allocation, name, m)
    elif name is not None and isinstance(model, (LRNN, LinearFFN)):
        if r == d * m:
            verdict = _count_rule(model, allocation, name, m)
        else:
            why = f"r = {r} > dm = {d * m}: Theorems 3.2/4.1 assume r = dm"
    elif isinstance(model, LRNN):
        verdict = _lrnn_polynomial_rules(model, allocation, m)
    elif isinstance(model, LinearFFN):
        verdict = _ffn_polynomial_rules(model, allocation, m)
    elif isinstance(model, ShallowReLU):
        verdict = _relu_rules(model, allocation, m)

    if verdict is None and exact and name is None and m <= model.max_generic_m() \
            and model.chain_sides:
        rank = generic_jacobian_rank(model, allocation, m)
        if rank < d * m:
            return _minimal("Jacobian rank (exact)",
                            f"the student's outputs form a set of dimension {rank} < dm = "
                            f"{d * m} (generic rank of the Jacobian over GF({PRIME})): the "
                            "teacher's generic outputs are reached with probability 0")
        why += f"; the student's map is dominant (Jacobian rank dm = {d * m}), so MP > 0"

    if algebraic_linear:
        exact_needed = verdict is None or verdict.kind == "maximal"
        if exact_needed and (exact or verdict is not None):
            g = generic_decision(model, allocation, m)
            kind = "maximal" if g.solvable else "minimal"
            if verdict is None:
                return Classification(kind, "generic rank (exact)", g.describe())
            if kind != verdict.kind:  # a theorem's claim the exact computation refutes
                return Classification(kind, "generic rank (exact)",
                                      f"{g.describe()}; this overrides {verdict.rule}")
            return Classification(verdict.kind, verdict.rule,
                                  verdict.reason + ("; certified by an exact full-rank evaluation"
                                                    if g.certified else ""))
    if verdict is None:
        return _undetermined(why)
    return verdict
