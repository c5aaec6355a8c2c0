"""The linear estimator's Numba backend without compiling: ahead-of-time twins.

The first ``fastmp estimate`` after installation found an empty Numba cache and spent
7 s (LinearEstimator) to 14 s (a LinearFFN layer) compiling the trial kernel and the
decision, for an estimate that then ran in milliseconds (issue 6, cold start). The
extension ``fastmp._ext._linear`` holds twins of those kernels, compiled when the
package is built, that do the same floating-point operations in the same order -- same
draws, same systems, same decisions, bit for bit (``tests/test_linear_aot.py``).

:func:`fastmp.estimators.linear.run_linear` (``backend="numba"``) swaps in the twins
of the batch kernel and of the Numba decision and keeps everything else (matrix-only
first pass, right-hand sides redrawn for rank-deficient trials, the C screen with its
probe, exact re-decision of ambiguous trials), so the per-trial statuses are identical.
It does so for the built-in linear models whenever the extension is importable; ``FASTMP_AOT=0`` in the environment (or
``ENABLED = False``) sends everything through the Numba kernels instead. Models whose
``_linear_kernel`` has no twin (plugins, subclasses with their own kernel) always take
the Numba path.
"""
from __future__ import annotations

import os


from .._config import DEFAULT_TOLERANCES

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


def decide_batch():
    """The twin of :func:`fastmp.kernels.decide.decide_batch`."""
    return _aot.decide_batch


def linear_systems(model, name, mask, m, seed, start, count, with_rhs=True, trials=None):
    """:func:`fastmp.estimators.linear.linear_systems` through the twin kernel."""
    from .linear import linear_systems
    return linear_systems(model, name, mask, m, seed, start, count, with_rhs, trials, aot=True)


def run_linear(model, allocation, m, trials, seed, batch_size=4096,
               tolerances=DEFAULT_TOLERANCES, progress=None):
    """:func:`fastmp.estimators.linear.run_linear` (``backend="numba"``) on the twins:
    the same ``(status, refined)`` for the same arguments."""
    from .linear import run_linear
    return run_linear(model, allocation, m, trials, seed, batch_size=batch_size,
                      tolerances=tolerances, progress=progress, aot=True)
