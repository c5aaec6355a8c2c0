"""Exact Monte Carlo estimator for linear allocations.

Per trial: draw teacher, frozen student weights and inputs from the trial's own stream,
assemble the ``d m x r`` allocated system (model kernel, :mod:`fastmp.kernels.linear`),
decide solvability by pivoted QR (:mod:`fastmp.kernels.decide` or the LAPACK-backed
Cython twin). All of it runs in compiled code over batches of trials; Python only
loops over batches.
"""
from __future__ import annotations

import numpy as np

from .._config import AMBIGUOUS, DEFAULT_TOLERANCES, NEED_RHS
from ..kernels.decide import decide_batch as _decide_numba
from . import linear_aot
from .refine import exact_status

BACKENDS = ("numba", "cython")

try:  # the vectorised nonsingularity screen (csrc/fastmp/_ext/screen.h)
    from .._ext._lapack import screen_batch as _screen_c
except ImportError:  # pragma: no cover - extension not built: the Numba LU screen serves
    _screen_c = None


def _decider(backend):
    if backend == "numba":
        return _decide_numba
    if backend == "cython":
        try:
            from .._ext._lapack import decide_batch
        except ImportError as exc:  # pragma: no cover - build problem
            raise ImportError(
                "backend='cython' needs the compiled extension fastmp._ext._lapack; "
                "reinstall with `pip install -e .[dev]`") from exc
        return decide_batch
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


class _Systems:
    """Draws and assembles the allocated systems of one linear allocation (the model's
    compiled kernel). Everything trials have in common -- kernel, segment tables,
    allocated indices -- is prepared once, and the output buffers are reused from one
    call to the next: per call only the compiled kernel runs."""

    def __init__(self, model, name, mask, m, aot=False):
        # aot: the ahead-of-time twin of the model's kernel (same numbers, no JIT)
        self.kernel, self.dims = (linear_aot.twin_kernel(model) if aot
                                  else model._linear_kernel())
        self.which = model.param_names.index(name)
        self.seg_start, self.seg_scale = model.segment_arrays(m)
        self.need = {w: model.needed_segments(name, m, w) for w in (False, True)}
        ai, aj = np.nonzero(mask)
        self.ai = ai.astype(np.int64)
        self.aj = aj.astype(np.int64)
        self.M = model.d * m
        self._buffers = None

    def __call__(self, seed, trials, with_rhs=True, reuse=False):
        """``(C, rhs, scale)`` of the trial indices ``trials`` (int64 array). With
        ``reuse`` the arrays are views of buffers that the next call overwrites."""
        count = trials.size
        if reuse:
            if self._buffers is None or self._buffers[0].shape[0] < count:
                self._buffers = (np.empty((count, self.M, self.ai.size)),
                                 np.empty((count, self.M)), np.empty(count))
            C, rhs, scale = (buf[:count] for buf in self._buffers)
        else:
            C = np.empty((count, self.M, self.ai.size))
            rhs = np.empty((count, self.M))
            scale = np.empty(count)
        self.kernel(self.dims, self.which, np.uint64(seed), trials, self.need[bool(with_rhs)],
                    bool(with_rhs), self.seg_start, self.seg_scale, self.ai, self.aj,
                    C, rhs, scale)
        return C, rhs, scale


def linear_systems(model, name, mask, m, seed, start, count, with_rhs=True, trials=None,
                   aot=False):
    """Assembled systems of trials ``start .. start+count-1`` (or of the trial indices
    ``trials``): ``(C, rhs, scale)`` with ``C`` of shape ``(count, d*m, r)``. Without
    ``with_rhs`` only ``C`` is drawn and assembled (``scale = -1``). With ``aot`` the
    kernel's ahead-of-time twin does the work (:mod:`.linear_aot`; identical output).
    Exposed for tests, benchmarks and embedding."""
    if trials is None:
        trials = np.arange(start, start + count, dtype=np.int64)
    trials = np.asarray(trials, dtype=np.int64)
    return _Systems(model, name, mask, m, aot)(seed, trials, with_rhs)


#: trials per pass of the compiled pipeline (draw + assemble, then decide): their systems
#: (about 4.6 kB each at the benchmark's 24 x 24) stay in cache between the two
CHUNK = 256

#: trials the screen tries first; if it settles fewer than half of them, the batch's
#: systems are (almost surely structurally) singular and screening is skipped
SCREEN_PROBE = 64


def _decide_screened(C, rhs, scale, tol, out, screen, decide=_decide_numba):
    """Numba backend: square systems first pass the vectorised C screen, which settles
    the certainly nonsingular ones (a match whatever the right-hand side); the rest get
    the Numba decision (pivoted QR; or ``decide``, its ahead-of-time twin). When a probe of the batch shows the screen failing
    on most trials (a structurally singular allocation), it is skipped: it would only
    cost time. The decisions are the same either way -- the screen answers only
    "nonsingular", which the QR decision answers too -- so results do not depend on
    batch size."""
    B = C.shape[0]
    if screen > 0.0 and _screen_c is not None and C.shape[1] == C.shape[2] and B:
        probe = min(B, SCREEN_PROBE)
        done = np.zeros(B, dtype=np.bool_)
        done[:probe] = _screen_c(C[:probe], screen, out[:probe])
        if done[:probe].mean() >= 0.5:
            if B > probe:
                done[probe:] = _screen_c(C[probe:], screen, out[probe:])
        else:
            screen = 0.0  # the per-trial LU screen would fail as well
        rest = np.flatnonzero(~done)
        if rest.size:
            sub = np.empty(rest.size, dtype=np.int8)
            decide(C[rest], rhs[rest], scale[rest], *tol, sub, screen)
            out[rest] = sub
        return
    decide(C, rhs, scale, *tol, out, screen)


def run_linear(model, allocation, m, trials, seed, backend="numba", batch_size=4096,
               tolerances=DEFAULT_TOLERANCES, progress=None, aot=None):
    """Per-trial status codes (int8 array of length ``trials``) of a linear allocation,
    and the number of trials re-decided in exact arithmetic (:mod:`.refine`).

    When there are no more equations than unknowns the first pass draws only what the
    matrix needs (the teacher matters only if the matrix is rank-deficient) and decides
    square systems by an LU condition screen; trials the first pass cannot settle are
    redrawn with their right-hand side -- the same numbers, since every weight matrix
    has its own random stream.

    With the Numba backend the work is done by the kernels' ahead-of-time twins where the
    model has them (``aot=None``: :func:`.linear_aot.available`) -- the same operations
    compiled when the package was built, so a fresh process compiles nothing and the
    statuses are the same trial by trial. ``aot=False`` forces the Numba kernels.
    """
    name = allocation.linear_param
    mask = allocation.mask(name)
    refined = 0
    decide = _decider(backend)
    if aot is None:
        aot = linear_aot.available(model, backend)
    if aot:
        if not linear_aot.available(model, backend):
            raise ValueError(f"run_linear: no ahead-of-time kernels for {model!r} with "
                             f"backend {backend!r}")
        decide = linear_aot.decide_batch()
    tol = tolerances.as_tuple()
    screen = tolerances.screen if backend == "numba" else 0.0
    systems = _Systems(model, name, mask, m, aot)
    M, N = systems.M, systems.ai.size
    lazy = M <= N
    # The compiled pipeline runs over chunks small enough that a chunk's systems stay in
    # cache between assembly and decision; batch_size only sets how often progress is
    # reported (and Python is re-entered).
    chunk = min(batch_size, CHUNK)
    status = np.empty(trials, dtype=np.int8)
    for start in range(0, trials, batch_size):
        count = min(batch_size, trials - start)
        for lo in range(start, start + count, chunk):
            hi = min(lo + chunk, start + count)
            out = status[lo:hi]
            C, rhs, scale = systems(seed, np.arange(lo, hi, dtype=np.int64),
                                    with_rhs=not lazy, reuse=True)
            if backend == "numba":
                _decide_screened(C, rhs, scale, tol, out, screen, decide)
            else:
                decide(C, rhs, scale, *tol, out)
            if lazy:
                redo = np.flatnonzero(out == NEED_RHS)
                if redo.size:
                    C, rhs, scale = systems(seed, lo + redo)
                    sub = np.empty(redo.size, dtype=np.int8)
                    decide(C, rhs, scale, *tol, sub)
                    out[redo] = sub
        out = status[start:start + count]
        for k in np.flatnonzero(out == AMBIGUOUS):
            out[k] = exact_status(model, name, mask, m, seed, start + k)
            refined += 1
        if progress is not None:
            progress(count)
    return status, refined
