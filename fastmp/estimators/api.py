"""``fastmp.match_probability``: validation and dispatch to the estimator that can
decide an allocation's system."""
from __future__ import annotations

import numbers
import time

import numpy as np

from .._config import DEFAULT_TOLERANCES, Tolerances
from ..allocation import Allocation
from ..models.base import Model
from .linear import BACKENDS, run_linear
from .result import MPResult

METHODS = ("auto", "linear")


def _check_int(name, value, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"match_probability: {name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        hi = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"match_probability: {name} must be >= {minimum}{hi}, got {value}")
    return int(value)


def _missing_method(model, allocation):
    params = ", ".join(allocation.params)
    if type(model).__name__ == "ShallowReLU":
        return ("learning W1 of a ShallowReLU needs the activation-pattern search of "
                "Appendix D (method 'relu-exact' / 'relu-search'), which is not implemented yet")
    return (f"allocation over {params} of {type(model).__name__} gives a polynomial system; "
            "it needs the certified real-root search (method 'newton'), which is not "
            "implemented yet")


def match_probability(model, allocation, m=None, trials=1000, seed=0, method="auto",
                      backend="numba", batch_size=4096, tolerances=None, progress=None):
    """Estimate ``MP(A, m)`` (Definition 2.3) by Monte Carlo over teacher, frozen weights
    and inputs drawn by Appendix E.3.

    Parameters
    ----------
    model, allocation
        A fastmp model and an :class:`~fastmp.Allocation` of it.
    m : int, optional
        Number of samples; defaults to ``r / d`` (equations = unknowns).
    trials, seed
        Trial ``t`` draws from its own stream derived from ``(seed, t)``, so results do
        not depend on ``batch_size``.
    method : {"auto", "linear"}
        ``"linear"``: exact rank-revealing decision for allocations confined to one
        parameter the model is linear in (decoder/encoder of an LRNN, one layer of a
        LinearFFN, the linear estimator). ``"auto"`` picks it when it applies.
    backend : {"numba", "cython"}
        Factorisation kernel for the linear decision: pivoted QR in Numba, or LAPACK's
        ``dgeqp3`` through the Cython extension. Both give the same decisions.
    tolerances : Tolerances, optional
        Thresholds of the decision (see :class:`fastmp.Tolerances`).
    progress : callable, optional
        Called with the number of trials finished after every batch.

    Returns
    -------
    MPResult
        ``.mp, .matches, .trials, .ci_low, .ci_high`` (Wilson 95%), ``.ambiguous`` and
        per-trial ``.status``.
    """
    if not isinstance(model, Model):
        raise TypeError(f"match_probability: model must be a fastmp model, got {type(model).__name__}")
    if not isinstance(allocation, Allocation):
        raise TypeError("match_probability: allocation must be a fastmp.Allocation, "
                        f"got {type(allocation).__name__}")
    if allocation.model != model:
        raise ValueError(f"match_probability: allocation is for {allocation.model!r}, not {model!r}")
    trials = _check_int("trials", trials, 1)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    m = allocation.default_m() if m is None else _check_int("m", m, 1)
    if method not in METHODS:
        raise ValueError(f"match_probability: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if backend not in BACKENDS:
        raise ValueError(f"match_probability: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    tolerances = DEFAULT_TOLERANCES if tolerances is None else tolerances
    if not isinstance(tolerances, Tolerances):
        raise TypeError("match_probability: tolerances must be a fastmp.Tolerances")

    if allocation.linear_param is None:
        raise NotImplementedError(_missing_method(model, allocation))
    t0 = time.perf_counter()
    status, refined = run_linear(model, allocation, m, trials, seed, backend=backend,
                        batch_size=batch_size, tolerances=tolerances, progress=progress)
    return MPResult.from_status(
        status, m=m, r=allocation.r, seed=seed, method="linear", backend=backend,
        model=repr(model), allocation=repr(allocation), refined=refined, budget={},
        seconds=time.perf_counter() - t0)
