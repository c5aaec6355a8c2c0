"""Eliminated lifted Newton with restarts, eight runs side by side in SIMD lanes.

:func:`fastmp.kernels.chain.newton_restarts` runs one Newton run at a time; each step is
a chain of small dependent products and an ``r x r`` solve, too small to fill a vector
unit (3.3 us per step at Figure 2a, n = 8). The random restarts of one start are
independent, so the C kernel behind :func:`run` (``csrc/fastmp/_ext/lane_newton.h``,
module ``fastmp._ext._lanes``) advances ``LANES`` of them at once, one run per vector
lane: 0.85-0.95 us per step of one run at n = 8 (AVX-512; the code is compiled twice,
for AVX-512 and for the build's default target, and picked at run time), and -- with each
lane restarting on its own when it leaves the box or fails -- about 2.2-2.4 certified
roots per ms at k = 8 against 0.75 for the scalar runs (60 trials x 8 starts). Each lane's arithmetic is
:func:`fastmp.kernels.chain.newton`'s eliminated lifted step, so the iterates agree with
the scalar kernel's to rounding (not bit for bit: the sums run in another order and the
compiler may fuse multiply-adds).

(A Numba version with the lane loop innermost ran at 1.6-1.8 us per step: LLVM does not
vectorise loops of a fixed 8 or 16 iterations whose arrays may alias.)

Supported programs (:func:`supported`): homogeneous chains (every step multiplies by the
same square parameter ``A``) with all learnable weights in ``A``, a frozen source, and
every term ``P[l] N_i R`` with a frozen left factor ``P[l]`` and no left constant -- the
LRNN with learnable recurrent weights on the right lifting (Figure 2a). Others use
:func:`fastmp.kernels.chain.newton_restarts`.
"""
from __future__ import annotations

import numpy as np

from .chain import CONVERGED, _homogeneous

try:  # the extension is built by the package's install; without it, scalar runs
    from .._ext._lanes import LANES, lane_newton
except ImportError:  # pragma: no cover - only on a source tree without the build
    LANES, lane_newton = 8, None


def supported(prog, var):
    """Whether :func:`run` handles ``prog`` with learnable weights ``var``."""
    var = np.asarray(var).reshape(-1, 3)
    if lane_newton is None or len(var) == 0 or len(var) != prog.d * prog.m:
        return False
    if not _homogeneous(prog.steps_arr, prog.terms_arr, prog.src_kind, prog.src_idx):
        return False
    a = prog.steps[0]
    if prog.pshapes[a][0] != prog.pshapes[a][1] or not np.all(var[:, 0] == a):
        return False
    if prog.src_kind == 0 and prog.src_idx == a:
        return False
    return all(l >= 0 and l != a and lc < 0 for l, _i, _rc, lc in prog.terms)


class Problem:
    """The arrays of one trial's system in the layout :func:`run` takes (built once per
    trial and side from the chain program's padded parameters ``P`` and constants
    ``C``; the learnable entries of ``A`` are overwritten by the lanes)."""

    def __init__(self, prog, P, C, var, ystar, wscale):
        a = prog.steps[0]
        n = prog.pshapes[a][0]
        b = int(prog.ns[0, 1])
        d, m = prog.d, prog.m
        l = prog.terms[0][0]
        self.A0 = np.ascontiguousarray(P[a, :n, :n])
        src = P if prog.src_kind == 0 else C
        self.S = np.ascontiguousarray(src[prog.src_idx, :n, :b])
        self.Lm = np.ascontiguousarray(P[l, :d, :n])
        self.R = np.empty((len(prog.terms), b, m))
        for t, (_l, _it, rc, _lc) in enumerate(prog.terms):
            self.R[t] = C[rc, :b, :m] if rc >= 0 else np.eye(b, m)
        self.term_node = np.array([t[1] for t in prog.terms], dtype=np.intp)
        var = np.asarray(var).reshape(-1, 3)
        self.vi = np.ascontiguousarray(var[:, 1], dtype=np.intp)
        self.vj = np.ascontiguousarray(var[:, 2], dtype=np.intp)
        self.ystar = np.ascontiguousarray(ystar, dtype=np.float64)
        self.wscale = np.ascontiguousarray(wscale, dtype=np.float64)
        self.node_shape = (len(prog.steps) + 1, n, b, LANES)


def run(problem, w0, N0, budget, tol, cut, state, max_run=1 << 40, portable=False):
    """One call of the lanes: ``LANES`` runs from ``w0`` (``r x LANES``) and nodes ``N0``
    (``problem.node_shape``), each restarting from a fresh random point when it fails,
    until one converges or the runs have taken ``budget`` steps in all. ``state`` (4
    uint64) drives the restarts and is advanced. ``portable`` runs the default-target
    copy of the code even on a CPU with AVX-512 (tests). Returns ``(w, converged,
    steps, last_step)``."""
    p = problem
    return lane_newton(p.A0, p.S, p.Lm, p.R, p.term_node, p.vi, p.vj, p.ystar, p.wscale,
                       w0, N0, int(budget), float(tol), CONVERGED, float(cut), int(max_run),
                       state, portable)
