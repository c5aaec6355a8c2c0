"""Compiler options and numerical tolerances, in one place.

Every Numba kernel is built through :func:`jit` so that all of them share the same
options. ``fastmath`` is deliberately *off*: the match decision compares pivot ratios
against tolerances near machine precision, and reassociation or flush-to-zero would move
those ratios in ways we could not document.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numba

#: Options shared by every serial kernel. ``cache=True`` keeps the cold start of the CLI
#: short: the second process loads the machine code from ``__pycache__``.
JIT_OPTIONS = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

if os.environ.get("FASTMP_BOUNDSCHECK"):
    JIT_OPTIONS["boundscheck"] = True


def jit(*args, **overrides):
    """``numba.njit`` with fastmp's shared options (``@jit`` or ``@jit(inline='always')``)."""
    options = dict(JIT_OPTIONS)
    options.update(overrides)
    if args and callable(args[0]):
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)


# Status codes of one trial's match decision (int8 in result arrays).
NO_MATCH = 0
MATCH = 1
AMBIGUOUS = 2


@dataclass(frozen=True)
class Tolerances:
    """Thresholds of the rank-revealing match decision for linear systems.

    A trial's allocated system ``C w = rhs`` (``C`` of shape ``M x N``) is factorised by
    Householder QR with column pivoting, ``C P = Q R``. With ``rho_j = |R_jj| / |R_00|``
    (non-increasing in ``j``):

    * a pivot with ``rho_j >= rank_hi`` counts towards the numerical rank ``k``;
    * a pivot with ``rho_j <= rank_lo`` is numerically zero;
    * any pivot strictly between the two makes the trial **ambiguous** (near-singular):
      it is reported, never counted as a match.

    With the rank settled, the part of ``Q^T rhs`` outside the range of ``C``,
    ``res = ||(Q^T rhs)[k:]|| / scale`` (``scale`` = size of the quantities ``rhs`` was
    computed from), decides consistency: ``res <= res_lo`` is a match, ``res >= res_hi``
    is no match, anything between is ambiguous.

    The defaults leave about three orders of magnitude between a structural zero
    (``rho`` ~ 1e-17 to 1e-15 in double precision for systems of a few hundred unknowns)
    and ``rank_lo``, and a band of three orders of magnitude in which a trial is
    reported as ambiguous. Measured on the middle layer of a 4-16-16-6 LinearFFN
    (``m = 4``, 24 unknowns), the smallest singular-value ratio of a *nonsingular*
    system is below 6e-8 in 1e-4 of trials and below 3e-7 in 1e-3: products of Gaussian
    matrices are far more often near-singular than Gaussian matrices, which is why
    ``rank_hi`` sits at 1e-10 and not higher.
    """

    rank_lo: float = 1e-13
    rank_hi: float = 1e-10
    res_lo: float = 1e-9
    res_hi: float = 1e-6

    def __post_init__(self):
        if not (0.0 < self.rank_lo <= self.rank_hi < 1.0):
            raise ValueError("Tolerances need 0 < rank_lo <= rank_hi < 1")
        if not (0.0 < self.res_lo <= self.res_hi < 1.0):
            raise ValueError("Tolerances need 0 < res_lo <= res_hi < 1")

    def as_tuple(self):
        return (self.rank_lo, self.rank_hi, self.res_lo, self.res_hi)


DEFAULT_TOLERANCES = Tolerances()
