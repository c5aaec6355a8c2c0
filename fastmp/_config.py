"""Compiler options and numerical tolerances, in one place.

Every Numba kernel is built through :func:`jit` so that all of them share the same
options. ``fastmath`` is deliberately *off*: the match decision compares pivot ratios
against tolerances near machine precision, and reassociation or flush-to-zero would move
those ratios in ways we could not document.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numba

def source_digest(root=None):
    """SHA-256 (hex) of every ``.py`` file of the package below ``root`` (default: this
    package), paths included: the key of the compiled-kernel cache."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _use_keyed_cache_dir():
    """Put Numba's cache under ``<cache root>/numba-<digest of the package sources>``.

    Numba keys a cached function by its *own* file's timestamp only, so a kernel that
    another file changed (inlined callees: the random streams, the assembly) would be
    loaded stale after an update of an editable install -- silently different numbers.
    Keying the whole cache by the sources of the whole package rules that out. The root
    is ``FASTMP_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastmp`` (``~/.cache/fastmp``); an
    explicit ``NUMBA_CACHE_DIR`` is left alone, and an unwritable root falls back to
    Numba's default (``__pycache__`` next to the sources).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    root = os.environ.get("FASTMP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "fastmp")
    path = os.path.join(root, "numba-" + source_digest()[:16])
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK):
            return None
    except OSError:
        return None
    numba.config.CACHE_DIR = path
    return path


#: where this process caches compiled kernels (None: Numba's own choice)
CACHE_DIR = _use_keyed_cache_dir()

#: Options shared by every serial kernel. ``cache=True`` keeps the cold start of the CLI
#: short: the second process loads the machine code from the cache (see
#: :func:`_use_keyed_cache_dir`).
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
#: internal: the matrix is rank-deficient and the right-hand side was not drawn yet
NEED_RHS = 3


#: The "match" side of the residual test never scales the tail by a pivot ratio below
#: this (see :class:`Tolerances`); mirrored as DECIDE_MATCH_RHO_FLOOR in the Cython
#: backend's ``_lapack.pxd``.
MATCH_RHO_FLOOR = 1e-3


@dataclass(frozen=True)
class Tolerances:
    """Thresholds of the rank-revealing match decision for linear systems.

    A trial's allocated system ``C w = rhs`` (``C`` of shape ``M x N``) is factorised by
    Householder QR with column pivoting, ``C P = Q R``. With ``rho_j = |R_jj| / |R_00|``
    (non-increasing in ``j``):

    * a pivot with ``rho_j >= rank_hi`` counts towards the numerical rank ``k``;
    * a pivot with ``rho_j <= rank_lo`` is numerically zero;
    * any pivot strictly between the two makes the trial **ambiguous**.

    With the rank settled, the part of ``Q^T rhs`` outside the range of ``C`` decides
    consistency, judged relative to the rounding a consistent system would leave there:
    ``res = rho_{k-1} * ||(Q^T rhs)[k:]|| / scale`` (``scale`` = size of the quantities
    ``rhs`` was computed from; ``rho_{k-1}`` the smallest kept pivot ratio, since a
    consistent system's tail is ~ eps * scale / rho_{k-1}). ``res >= res_hi`` is no
    match. A match needs ``res_match <= res_lo`` where ``res_match`` scales the tail by
    ``max(rho_{k-1}, MATCH_RHO_FLOOR)`` instead: for an ill-conditioned system the
    rounding noise and a true inconsistency can be of the same size (seen on a
    structurally rank-deficient FFN layer: ``rho = 1e-8``, true relative tail ``3e-8``,
    ``res = 3e-16`` would have called it a match), so such trials are ambiguous and go to
    the exact re-decision. Anything between is ambiguous.

    Ambiguous trials are never guessed: the estimator rebuilds their system from the
    same draws in exact rational arithmetic and decides it by exact ranks
    (:mod:`fastmp.estimators.refine`).

    Measured here (pivoted QR, 200 trials x 40 random allocations per case, LinearFFN
    layers and LRNN decoder/encoder with 16 to 64 unknowns): structural zeros -- pivots
    beyond the exact generic rank -- never exceeded ``rho = 4.4e-16``; true pivots of
    nonsingular systems went down to ``3e-11`` (64 unknowns; 1e-3 quantile 1e-9). Products
    of Gaussian matrices are far more often near-singular than Gaussian matrices. The
    defaults put ``rank_lo`` 20x above the largest structural zero seen, and ``rank_hi``
    where about 1e-4 of trials of the larger systems need the exact re-decision.
    """

    rank_lo: float = 1e-14
    rank_hi: float = 1e-11
    res_lo: float = 1e-13
    res_hi: float = 1e-10
    #: square systems whose LU-based reciprocal condition estimate (1-norm, Hager /
    #: LAPACK dgecon) is at least this are nonsingular without the pivoted QR. Three
    #: orders of magnitude above ``rank_hi`` (times the size factor between 1-norm and
    #: 2-norm condition numbers), so the shortcut never decides a trial the QR test would
    #: call ambiguous or singular.
    screen: float = 1e-8

    def __post_init__(self):
        if not (0.0 < self.rank_lo <= self.rank_hi < 1.0):
            raise ValueError("Tolerances need 0 < rank_lo <= rank_hi < 1")
        if not (0.0 < self.res_lo <= self.res_hi < 1.0):
            raise ValueError("Tolerances need 0 < res_lo <= res_hi < 1")

    def as_tuple(self):
        """The four thresholds of the QR decision (the Cython backend takes these)."""
        return (self.rank_lo, self.rank_hi, self.res_lo, self.res_hi)


DEFAULT_TOLERANCES = Tolerances()
