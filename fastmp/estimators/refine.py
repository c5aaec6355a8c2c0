"""Exact re-decision of the rare trials the floating-point test cannot settle.

The draws of a trial are doubles, i.e. exact dyadic rationals. For a linear allocation
the allocated system ``C w = rhs`` is a polynomial in them with integer coefficients, so
its exact value has a residue modulo any odd prime ``p``: we map every draw to its
residue and evaluate the model's own ``linear_terms`` in GF(p)
(:func:`fastmp.theory.generic.system_mod_p`), then compare ``rank(C)`` with
``rank([C | rhs])`` modulo three primes. For models that are not polynomial in their
draws (ShallowReLU: relu) the system is rebuilt in rational arithmetic instead
(:class:`fractions.Fraction` through ``forward``/``linear_terms`` on object arrays).

* Full row rank modulo a prime proves full row rank over Q (a nonzero minor mod p is a
  nonzero rational minor): such a match is **certified**.
* Otherwise the ranks mod p equal the rational ranks unless every prime divides a
  particular nonzero minor of the draws -- an event of probability about ``p**-3``.

So a trial whose pivots fall in the ambiguous band is decided for the exact draws it
had -- never guessed, never counted as a near-miss match.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .._config import MATCH, NO_MATCH
from ..theory.generic import PRIMES, rank_mod_p, residues, system_mod_p

# Primes just below 2**61, fixed so that refinements are reproducible.
_PRIMES = (2305843009213693951, 2305843009213693921)


def _as_fraction(a):
    out = np.empty(np.shape(a), dtype=object)
    flat = out.reshape(-1)
    for k, v in enumerate(np.asarray(a, dtype=np.float64).reshape(-1)):
        flat[k] = Fraction(float(v))
    return out


def exact_system(model, name, mask, m, seed, trial):
    """The allocated system of one trial in exact rational arithmetic: ``(C, rhs)`` as
    lists of lists of Fractions (rows = equations)."""
    teacher, student, X = model.trial_draws(seed, trial, m)
    teacher = {k: _as_fraction(v) for k, v in teacher.items()}
    student = {k: _as_fraction(v) for k, v in student.items()}
    X = _as_fraction(X)
    ystar = model.forward(teacher, X)
    terms = model.linear_terms(name, student, X)
    frozen = dict(student)
    P0 = student[name].copy()
    P0[mask] = Fraction(0)
    frozen[name] = P0
    rhs = (ystar - model.forward(frozen, X)).reshape(-1)
    ai, aj = np.nonzero(mask)
    d = model.d
    cols = []
    for i, j in zip(ai, aj):
        col = None
        for L, R in terms:
            block = np.multiply.outer(L[:, i], R[j, :]).reshape(-1)
            col = block if col is None else col + block
        cols.append(col)
    C = [[cols[k][row] for k in range(len(cols))] for row in range(d * m)]
    return C, list(rhs)


def _rank_mod(rows, p):
    A = [[(int(v.numerator) % p) * pow(int(v.denominator), -1, p) % p for v in row] for row in rows]
    rank = 0
    ncols = len(A[0]) if A else 0
    for c in range(ncols):
        piv = next((i for i in range(rank, len(A)) if A[i][c]), None)
        if piv is None:
            continue
        A[rank], A[piv] = A[piv], A[rank]
        inv = pow(A[rank][c], -1, p)
        A[rank] = [v * inv % p for v in A[rank]]
        for i in range(rank + 1, len(A)):
            f = A[i][c]
            if f:
                A[i] = [(x - f * y) % p for x, y in zip(A[i], A[rank])]
        rank += 1
        if rank == len(A):
            break
    return rank


def _ranks_mod_p(model, name, mask, m, seed, trial):
    teacher, student, X = model.trial_draws(seed, trial, m)
    best_c = best_a = 0
    for p in PRIMES:
        t = {k: residues(v, p) for k, v in teacher.items()}
        s = {k: residues(v, p) for k, v in student.items()}
        C, rhs = system_mod_p(model, name, mask, m, t, s, residues(X, p), p)
        rc = rank_mod_p(C, p)
        if rc == C.shape[0]:
            return rc, rc
        best_c = max(best_c, rc)
        best_a = max(best_a, rank_mod_p(np.column_stack([C, rhs]), p))
    return best_c, best_a


def _ranks_rational(model, name, mask, m, seed, trial):
    C, rhs = exact_system(model, name, mask, m, seed, trial)
    aug = [row + [b] for row, b in zip(C, rhs)]
    rc = max(_rank_mod(C, p) for p in _PRIMES)
    if rc == len(C):
        return rc, rc
    return rc, max(_rank_mod(aug, p) for p in _PRIMES)


def exact_status(model, name, mask, m, seed, trial):
    """MATCH or NO_MATCH for the exact draws of ``(seed, trial)``."""
    if getattr(model, "algebraic", True):
        rc, ra = _ranks_mod_p(model, name, mask, m, seed, trial)
    else:
        rc, ra = _ranks_rational(model, name, mask, m, seed, trial)
    return MATCH if ra == rc else NO_MATCH
