"""``fastmp.match_probability``: validation and dispatch to the estimator that can
decide an allocation's system."""
from __future__ import annotations

import numbers
import time

from .._config import DEFAULT_TOLERANCES, Tolerances
from ..allocation import Allocation
from ..models import ShallowReLU
from ..models.base import Model
from .linear import BACKENDS, run_linear
from ..theory.classify import theorem35_variant
from .polynomial import run_newton, run_theorem35
from .relu import run_relu_exact
from .relu_search import run_relu_search
from .result import MPResult

METHODS = ("auto", "linear", "newton", "theorem35", "relu-exact", "relu-search")


def _check_int(name, value, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"match_probability: {name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        hi = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"match_probability: {name} must be >= {minimum}{hi}, got {value}")
    return int(value)


def match_probability(model, allocation=None, m=None, trials=1000, seed=0, method="auto",
                      backend="numba", batch_size=4096, tolerances=None, progress=None,
                      starts=64, adaptive=True):
    """Estimate ``MP(A, m)`` (Definition 2.3) by Monte Carlo over teacher, frozen weights
    and inputs drawn by Appendix E.3.

    Parameters
    ----------
    model, allocation
        A fastmp model and an :class:`~fastmp.Allocation` of it; or a plugin model
        (:class:`fastmp.plugins.PolynomialModel`) and no allocation -- its unknowns are
        the learnable weights.
    m : int, optional
        Number of samples; defaults to ``r / d`` (equations = unknowns).
    trials, seed
        Trial ``t`` draws from its own stream derived from ``(seed, t)``, so results do
        not depend on ``batch_size``.
    method : {"auto", "linear", "newton", "theorem35"}
        ``"linear"``: exact rank-revealing decision for allocations confined to one
        parameter the model is linear in (decoder/encoder of an LRNN, one layer of a
        LinearFFN, the linear estimator). ``"newton"``: certified real-root search for
        polynomial allocations (Lemma 3.3 lifting, Krawczyk certification).
        ``"theorem35"``: the constructive solver of Theorem 3.5's proof, certified.
        ``"relu-exact"``: exact activation-pattern search for allocations in ``W1`` of a
        ShallowReLU (branch and bound with LPs; ``2^(k m)`` patterns, used by ``"auto"``
        up to ``k m = RELU_EXACT_MAX_KM``). ``"relu-search"``: the compiled
        semismooth-Newton pattern search with exactly certified matches; misses are
        budget-limited (at most ``starts`` Newton starts per trial; see
        :func:`~fastmp.estimators.relu_search.run_relu_search`).
        ``"auto"`` picks linear, then theorem35 where it applies, then newton (or
        relu-exact / relu-search).
    backend : {"numba", "cython"}
        Factorisation kernel for the linear decision: pivoted QR in Numba, or LAPACK's
        ``dgeqp3`` through the Cython extension. Both give the same decisions.
    tolerances : Tolerances, optional
        Thresholds of the decision (see :class:`fastmp.Tolerances`).
    progress : callable, optional
        Called with the number of trials finished after every batch.
    starts, adaptive
        Budget of the Newton search (and of ``relu-search``): at most ``starts`` random
        starts per trial; with
        ``adaptive`` the search stops early once doubling the starts finds no new match.

    Returns
    -------
    MPResult
        ``.mp, .matches, .trials, .ci_low, .ci_high`` (Wilson 95%), ``.ambiguous`` and
        per-trial ``.status``.
    """
    # ---- plugin models (fastmp.plugins): same search budget, plugin-supplied system
    from ..plugins import PolynomialModel
    if isinstance(model, PolynomialModel):
        return _match_probability_plugin(model, allocation, m, trials, seed, method,
                                         progress, starts, adaptive)
    # ----
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

    starts = _check_int("starts", starts, 1)
    common = dict(m=m, r=allocation.r, seed=seed, model=repr(model), allocation=repr(allocation))
    t0 = time.perf_counter()
    linear = allocation.linear_param is not None
    if method == "linear" or (method == "auto" and linear):
        if not linear:
            raise ValueError("match_probability: method 'linear' needs an allocation confined "
                             "to one parameter the model is linear in")
        # with the Numba backend, run_linear uses the kernels' ahead-of-time twins where
        # they exist: same statuses, no JIT compilation in a fresh process
        status, refined = run_linear(model, allocation, m, trials, seed, backend=backend,
                                     batch_size=batch_size, tolerances=tolerances,
                                     progress=progress)
        return MPResult.from_status(status, method="linear", backend=backend, refined=refined,
                                    budget={}, seconds=time.perf_counter() - t0, **common)
    if isinstance(model, ShallowReLU):
        return _relu_w1(model, allocation, m, trials, seed, method, starts, progress, common, t0)
    if method in ("relu-exact", "relu-search"):
        raise ValueError(f"match_probability: method {method!r} needs a ShallowReLU "
                         "allocation in W1")
    variant = theorem35_variant(model, allocation, m)
    if method == "theorem35" and variant is None:
        raise ValueError("match_probability: method 'theorem35' needs an LRNN allocation in W "
                         "meeting Theorem 3.5 (every used row holds T b weights, or every used "
                         "column T d) with m = r/d")
    if method == "theorem35" or (method == "auto" and variant is not None):
        status, info = run_theorem35(model, allocation, m, trials, seed, variant, progress=progress)
    else:
        status, info = run_newton(model, allocation, m, trials, seed, starts=starts,
                                  adaptive=adaptive, progress=progress)
    return MPResult.from_status(status, method=info["method"], backend="numba", refined=0,
                                budget=info, seconds=time.perf_counter() - t0, **common)


def _match_probability_plugin(model, allocation, m, trials, seed, method, progress, starts,
                              adaptive):
    """MP of a plugin model by the certified search of :func:`fastmp.plugins.run_plugin`."""
    from ..plugins import run_plugin
    if allocation is not None:
        raise TypeError("match_probability: a plugin model's unknowns are its learnable "
                        "weights; pass no allocation")
    if m is not None:
        raise TypeError("match_probability: a plugin model fixes its samples in its draw; "
                        "pass no m")
    if method not in ("auto", "newton"):
        raise ValueError(f"match_probability: method {method!r} does not apply to a plugin "
                         "model; use 'auto' or 'newton'")
    trials = _check_int("trials", trials, 1)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    starts = _check_int("starts", starts, 1)
    t0 = time.perf_counter()
    status, info = run_plugin(model, trials, seed, starts=starts, adaptive=adaptive,
                              progress=progress)
    return MPResult.from_status(status, method=info["method"], backend="numba", refined=0,
                                budget=info, seconds=time.perf_counter() - t0,
                                m=model.n_eq, r=model.n_vars, seed=seed, model=repr(model),
                                allocation="all unknowns")


# ----------------------------------------------------------------------------- ShallowReLU W1
#: ``method="auto"`` uses the exact activation-pattern decision up to this ``k m``
#: (``2^(k m)`` patterns), the certified pattern search beyond
RELU_EXACT_MAX_KM = 20


def _relu_w1(model, allocation, m, trials, seed, method, starts, progress, common, t0):
    if allocation.params != ("W1",):
        raise NotImplementedError(
            "allocations over both W1 and W2 of a ShallowReLU are not supported yet "
            "(the activation-pattern search handles W1 alone, 'linear' W2 alone)")
    if method not in ("auto", "relu-exact", "relu-search"):
        raise ValueError(f"match_probability: method {method!r} does not apply to W1 of a "
                         "ShallowReLU; use 'relu-exact' or 'relu-search'")
    k = int(allocation.mask("W1").any(axis=1).sum())
    if method == "relu-search" or (method == "auto" and k * m > RELU_EXACT_MAX_KM):
        status, info = run_relu_search(model, allocation, m, trials, seed,
                                       starts=starts, progress=progress)
        return MPResult.from_status(status, method="relu-search", backend="numba",
                                    refined=0, budget=info,
                                    seconds=time.perf_counter() - t0, **common)
    status, info = run_relu_exact(model, allocation, m, trials, seed,
                                  max_patterns=2 ** 62, progress=progress)
    return MPResult.from_status(status, method="relu-exact", backend="numpy",
                                refined=0, budget=info,
                                seconds=time.perf_counter() - t0, **common)
