"""The linear estimator's Numba backend without compiling: ahead-of-time twins.

The first ``fastmp estimate`` after installation found an empty Numba cache and spent
7 s (LinearEstimator) to 14 s (a LinearFFN layer) compiling the trial kernel and the
decision, for an estimate that then ran in milliseconds (issue 6, cold start). The
extension ``fastmp._ext._linear`` holds twins of those kernels, compiled when the
package is built, that do the same floating-point operations in the same order -- same
draws, same systems, same decisions, bit for bit (``tests/test_linear_aot.py``).

:func:`run_linear` here is :func:`fastmp.estimators.linear.run_linear` with
``backend="numba"``, the batch kernel and the Numba decision replaced by their twins:
the same passes (matrix-only first pass, right-hand sides redrawn for rank-deficient
trials, the C screen with its probe, exact re-decision of ambiguous trials), so the
per-trial statuses are identical. ``match_probability`` uses it for the built-in linear
models whenever the extension is importable; ``FASTMP_AOT=0`` in the environment (or
``ENABLED = False``) sends everything through the Numba kernels instead. Models whose
``_linear_kernel`` has no twin (plugins, subclasses with their own kernel) always take
the Numba path.
"""
from __future__ import annotations

import os

import numpy as np

from .._config import AMBIGUOUS, DEFAULT_TOLERANCES, NEED_RHS
from .linear import SCREEN_PROBE, _screen_c
from .refine import exact_status

try:
    from .._ext import _linear as _aot
except ImportError:  # pragma: no cover - extension not built: the Numba path serves
    _aot = None

#: use the twins where they exist (``FASTMP_AOT=0`` turns them off)
ENABLED = os.environ.get("FASTMP_AOT", "1") != "0"


def _twins():
    from ..models.linear_estimator import _estimator_batch
    from ..models.linear_ffn import _ffn_batch
    from ..models.lrnn import _lrnn_batch
    from ..models.shallow_relu import _relu_w2_batch
    return {_estimator_batch: _aot.estimator_batch, _ffn_batch: _aot.ffn_batch,
            _lrnn_batch: _aot.lrnn_batch, _relu_w2_batch: _aot.relu_w2_batch}


def twin_kernel(model):
    """``(kernel, dims)``: the ahead-of-time twin of ``model._linear_kernel()``, or
    ``None`` (no extension, or a kernel without a twin)."""
    if _aot is None or not hasattr(model, "_linear_kernel"):
        return None
    try:
        kernel, dims = model._linear_kernel()
    except NotImplementedError:
        return None
    twin = _twins().get(kernel)
    return None if twin is None else (twin, dims)


def available(model, backend="numba"):
    """Does :func:`run_linear` serve ``model`` (with the Numba backend's decisions)?"""
    return ENABLED and backend == "numba" and twin_kernel(model) is not None


def linear_systems(model, name, mask, m, seed, start, count, with_rhs=True, trials=None):
    """:func:`fastmp.estimators.linear.linear_systems` through the twin kernel."""
    kernel, dims = twin_kernel(model)
    which = model.param_names.index(name)
    seg_start, seg_scale = model.segment_arrays(m)
    need = model.needed_segments(name, m, with_rhs)
    if trials is None:
        trials = np.arange(start, start + count, dtype=np.int64)
    trials = np.asarray(trials, dtype=np.int64)
    ai, aj = np.nonzero(mask)
    ai = ai.astype(np.int64)
    aj = aj.astype(np.int64)
    M = model.d * m
    C = np.empty((trials.size, M, ai.size))
    rhs = np.empty((trials.size, M))
    scale = np.empty(trials.size)
    kernel(dims, which, np.uint64(seed), trials, need, bool(with_rhs), seg_start, seg_scale,
           ai, aj, C, rhs, scale)
    return C, rhs, scale


def _decide_screened(C, rhs, scale, tol, out, screen):
    """:func:`fastmp.estimators.linear._decide_screened` with the twin decision."""
    decide = _aot.decide_batch
    B = C.shape[0]
    if screen > 0.0 and _screen_c is not None and C.shape[1] == C.shape[2] and B:
        probe = min(B, SCREEN_PROBE)
        done = np.zeros(B, dtype=np.bool_)
        done[:probe] = _screen_c(C[:probe], screen, out[:probe])
        if done[:probe].mean() >= 0.5:
            if B > probe:
                done[probe:] = _screen_c(C[probe:], screen, out[probe:])
        else:
            screen = 0.0
        rest = np.flatnonzero(~done)
        if rest.size:
            sub = np.empty(rest.size, dtype=np.int8)
            decide(C[rest], rhs[rest], scale[rest], *tol, sub, screen)
            out[rest] = sub
        return
    decide(C, rhs, scale, *tol, out, screen)


def run_linear(model, allocation, m, trials, seed, batch_size=4096,
               tolerances=DEFAULT_TOLERANCES, progress=None):
    """:func:`fastmp.estimators.linear.run_linear` (``backend="numba"``) on the twins:
    the same ``(status, refined)`` for the same arguments."""
    name = allocation.linear_param
    mask = allocation.mask(name)
    refined = 0
    tol = tolerances.as_tuple()
    screen = tolerances.screen
    M, N = model.d * m, int(mask.sum())
    lazy = M <= N
    status = np.empty(trials, dtype=np.int8)
    for start in range(0, trials, batch_size):
        count = min(batch_size, trials - start)
        out = status[start:start + count]
        C, rhs, scale = linear_systems(model, name, mask, m, seed, start, count,
                                       with_rhs=not lazy)
        _decide_screened(C, rhs, scale, tol, out, screen)
        redo = np.flatnonzero(out == NEED_RHS) if lazy else np.empty(0, dtype=np.int64)
        if redo.size:
            C, rhs, scale = linear_systems(model, name, mask, m, seed, 0, 0,
                                           trials=start + redo)
            sub = np.empty(redo.size, dtype=np.int8)
            _aot.decide_batch(C, rhs, scale, *tol, sub)
            out[redo] = sub
        for k in np.flatnonzero(out == AMBIGUOUS):
            out[k] = exact_status(model, name, mask, m, seed, start + k)
            refined += 1
        if progress is not None:
            progress(count)
    return status, refined
