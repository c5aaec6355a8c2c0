"""Match probability on real, labelled data (paper Figure 3c, Appendices E.1 and F).

Here there is no teacher: the labels come from the data set. A ShallowReLU student
``W2 relu(W1 x)`` with ``d`` outputs (one per class) has its frozen weights drawn as in
Appendix E.3 and an allocation in ``W1``. A trial draws ``m`` samples from the data set
(without replacement), the frozen weights and (optionally) the allocation, and trains the
learnable weights with **Adam** (first order, as the paper did for Figure 3c) on the
softmax cross-entropy of the ``m`` samples. The trial is a **match** iff after training
every one of the ``m`` samples is classified correctly: its label's output exceeds every
other output by more than ``MARGIN`` times the output scale (a tie is not a match).

This is an optimiser-based, budget-limited criterion, not an existence decision: a
"no match" means Adam did not find a fitting setting within ``steps`` steps. Every result
carries the criterion and the budget.
"""
from __future__ import annotations

import time

import numpy as np

from .._config import MATCH, NO_MATCH
from ..allocation import Allocation
from ..models.shallow_relu import ShallowReLU
from .result import wilson_interval

#: a sample counts as classified correctly when its label's output beats every other
#: output by more than this fraction of the largest output magnitude
MARGIN = 1e-9
ADAM_DEFAULTS = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8)


def adam_classify(W1, W2, mask, X, y, steps=500, lr=ADAM_DEFAULTS["lr"],
                  betas=ADAM_DEFAULTS["betas"], eps=ADAM_DEFAULTS["eps"]):
    """Train the entries of ``W1`` at ``mask`` with Adam on the mean softmax
    cross-entropy of ``W2 relu(W1 X)`` against labels ``y``; stop as soon as every sample
    is classified correctly. Returns ``(matched, steps_taken, W1)``."""
    W1 = np.array(W1, dtype=np.float64)
    W2 = np.asarray(W2, dtype=np.float64)
    d, m = W2.shape[0], X.shape[1]
    rows = np.flatnonzero(mask.any(axis=1))
    frozen_rows = np.setdiff1d(np.arange(W1.shape[0]), rows)
    Hf = W2[:, frozen_rows] @ np.maximum(W1[frozen_rows] @ X, 0.0)   # frozen part of the output
    W2u = W2[:, rows]
    Mu = mask[rows].astype(np.float64)
    Wu = W1[rows].copy()
    onehot = np.zeros((d, m))
    onehot[y, np.arange(m)] = 1.0
    mom = np.zeros_like(Wu)
    v = np.zeros_like(Wu)
    b1, b2 = betas
    cols = np.arange(m)
    t = 0
    for t in range(steps + 1):
        Z = Wu @ X
        O = Hf + W2u @ np.maximum(Z, 0.0)
        true = O[y, cols]
        other = np.where(onehot > 0, -np.inf, O).max(axis=0)
        scale = max(float(np.abs(O).max()), 1e-300)
        if np.all(true - other > MARGIN * scale):
            W1[rows] = Wu
            return True, t, W1
        if t == steps:
            break
        S = np.exp(O - O.max(axis=0))
        S /= S.sum(axis=0)
        GO = (S - onehot) / m
        GZ = (W2u.T @ GO) * (Z > 0)
        g = (GZ @ X.T) * Mu
        mom = b1 * mom + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        Wu -= lr * (mom / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
    W1[rows] = Wu
    return False, t, W1


def run_classification(model, X, y, m, trials, seed, allocation=None, make_allocation=None,
                       steps=500, progress=None, **adam):
    """MP on labelled data: per trial ``m`` samples of ``(X, y)`` (``X`` is ``q x N``),
    frozen weights of ``model`` drawn by Appendix E.3, and the allocation ``allocation``
    (fixed) or ``make_allocation(rng)`` (one per trial, as in Appendix E.2); learnable
    weights trained by Adam (:func:`adam_classify`).

    Returns a dict with ``mp, matches, trials, ci_low, ci_high`` (Wilson 95%),
    ``status`` (per trial), ``criterion``, ``method`` and the budget.
    """
    if not isinstance(model, ShallowReLU):
        raise TypeError(f"run_classification: model must be a ShallowReLU, got {type(model).__name__}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] != model.q:
        raise ValueError(f"run_classification: X must be (q, N) = ({model.q}, N), got {X.shape}")
    if y.shape != (X.shape[1],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError("run_classification: y must hold one integer label per column of X")
    if y.min() < 0 or y.max() >= model.d:
        raise ValueError(f"run_classification: labels must lie in 0..d-1 = 0..{model.d - 1}")
    m, trials, steps = int(m), int(trials), int(steps)
    if not 1 <= m <= X.shape[1]:
        raise ValueError(f"run_classification: m must be in 1..{X.shape[1]}, got {m}")
    if trials < 1 or steps < 1:
        raise ValueError("run_classification: trials and steps must be >= 1")
    if (allocation is None) == (make_allocation is None):
        raise ValueError("run_classification: pass exactly one of allocation, make_allocation")
    if allocation is not None and (not isinstance(allocation, Allocation)
                                   or allocation.model != model or allocation.params != ("W1",)):
        raise ValueError("run_classification: allocation must be a W1 allocation of model")
    status = np.empty(trials, dtype=np.int8)
    steps_used = np.zeros(trials, dtype=np.int64)
    t0 = time.perf_counter()
    for t in range(trials):
        rng = np.random.default_rng([int(seed), t])
        alloc = allocation if allocation is not None else make_allocation(rng)
        idx = rng.choice(X.shape[1], size=m, replace=False)
        W1 = rng.standard_normal((model.n, model.q)) / np.sqrt(model.q)
        W2 = rng.standard_normal((model.d, model.n)) / np.sqrt(model.n)
        ok, used, _ = adam_classify(W1, W2, alloc.mask("W1"), X[:, idx], y[idx],
                                    steps=steps, **adam)
        status[t] = MATCH if ok else NO_MATCH
        steps_used[t] = used
        if progress is not None:
            progress(1)
    matches = int(np.count_nonzero(status == MATCH))
    lo, hi = wilson_interval(matches, trials)
    return {"mp": matches / trials, "matches": matches, "trials": trials, "ci_low": lo,
            "ci_high": hi, "status": status, "method": "adam-classification",
            "criterion": (f"match = all m = {m} samples classified correctly (label output "
                          f"ahead by > {MARGIN:g} x output scale) after Adam training of the "
                          f"learnable W1 weights, at most {steps} steps (budget-limited)"),
            "steps": steps, "adam": {**ADAM_DEFAULTS, **adam},
            "mean_steps": float(steps_used.mean()),
            "seconds_per_trial": (time.perf_counter() - t0) / trials}
