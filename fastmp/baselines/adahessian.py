"""AdaHessian baseline for ReLU ``W1`` allocations, as the paper ran it (Appendix E.1):
a trial is *accepted* when the optimiser reaches a mean squared error below ``1e-2``
(``MSE_THRESHOLD``). This accepts near-misses: an accepted trial need not have any exact
solution. It is here only to measure how often that happens against the exact decision
(``bench/relu_compare.py``); it is not an estimator of MP.

Optimiser (Yao et al. 2021, reference implementation ``amirgholami/adahessian``) on
``L(w) = mean_{i,a} (W2 relu(W1(w) x_i) - y_i)_a^2`` over the ``r`` learnable weights of
``W1`` (the same draws and the same system as :mod:`fastmp.estimators.relu`):

* gradient ``g = (2/N) E(P)^T F(w)`` with ``P`` the activation pattern at ``w``,
  ``F`` the residual and ``N = dm`` (on the pattern's region ``F(w) = E(P) w - f(P)``);
* Hessian-vector product ``H z = (2/N) E(P)^T E(P) z`` (relu is piecewise linear, so
  its second derivative vanishes almost everywhere and the Hessian is the Gauss-Newton
  term);
* Hutchinson diagonal estimate ``D = |z * H z|`` with a Rademacher ``z`` per step (no
  spatial averaging: the parameters form one vector, not a convolution kernel);
* ``m_t = b1 m + (1-b1) g``; ``v_t = b2 v + (1-b2) D^2``;
  ``w -= lr * (m_t / (1-b1^t)) / ((v_t / (1-b2^t))^(k/2) + eps)``, with the reference
  defaults ``lr = 0.15``, ``(b1, b2) = (0.9, 0.999)``, ``eps = 1e-4`` and Hessian power
  ``k = 1``.

Starting point: the student's own frozen draw is *not* reused; learnable weights start
from ``N(0, 1/q)`` (Appendix E.3) drawn from ``numpy.random.default_rng((seed, trial,
start))``. The paper does not state its number of steps or restarts; the defaults here
(``steps``, ``restarts``) are stated in every result.
"""
from __future__ import annotations

import time

import numpy as np

from .._config import MATCH, NO_MATCH
from ..allocation import Allocation
from ..models.shallow_relu import ShallowReLU

#: the paper's acceptance criterion (Appendix E.1)
MSE_THRESHOLD = 1e-2
DEFAULTS = dict(lr=0.15, betas=(0.9, 0.999), eps=1e-4, hessian_power=1.0)


class _Problem:
    def __init__(self, system):
        s = system
        self.s = s
        r = s.r
        self.xa = s.A[:, s.var_row, np.arange(r)]                    # (m, r)
        self.R = np.zeros((r, s.k))
        self.R[np.arange(r), s.var_row] = 1.0
        self.Vc = s.V[:, s.var_row]                                  # (d, r)
        self.N = s.d * s.m

    def residual(self, w):
        s = self.s
        Z = s.b + (self.xa * w) @ self.R                              # (m, k)
        F = (np.maximum(Z, 0.0) @ s.V.T - s.rhs).ravel()              # (m d,)
        return Z, F

    def jacobian(self, Z):
        Pc = (Z > 0)[:, self.s.var_row]                               # (m, r)
        return (self.Vc[None, :, :] * (Pc * self.xa)[:, None, :]).reshape(self.N, -1)


def adahessian_fit(system, steps=2000, lr=DEFAULTS["lr"], betas=DEFAULTS["betas"],
                   eps=DEFAULTS["eps"], hessian_power=DEFAULTS["hessian_power"],
                   rng=None, threshold=MSE_THRESHOLD, w0=None):
    """Run AdaHessian on one trial's system from ``w0`` (default ``N(0, 1/q)``).
    Stops early once the MSE is below ``threshold``. Returns a dict with ``mse``
    (final), ``best_mse``, ``w`` (at the best MSE), ``steps`` taken and ``accepted``
    (``best_mse < threshold``, the paper's criterion)."""
    rng = np.random.default_rng(rng)
    prob = _Problem(system)
    r = system.r
    w = rng.standard_normal(r) / np.sqrt(system.model.q) if w0 is None else np.array(w0, float)
    b1, b2 = betas
    mom = np.zeros(r)
    v = np.zeros(r)
    best, best_w = np.inf, w.copy()
    t = 0
    for t in range(1, steps + 1):
        Z, F = prob.residual(w)
        mse = float(F @ F) / prob.N
        if mse < best:
            best, best_w = mse, w.copy()
        if mse < threshold:
            break
        J = prob.jacobian(Z)
        g = (2.0 / prob.N) * (J.T @ F)
        z = rng.integers(0, 2, r) * 2.0 - 1.0
        Hz = (2.0 / prob.N) * (J.T @ (J @ z))
        D = np.abs(z * Hz)
        mom = b1 * mom + (1 - b1) * g
        v = b2 * v + (1 - b2) * D * D
        denom = (np.sqrt(v / (1 - b2 ** t))) ** hessian_power + eps
        w = w - lr * (mom / (1 - b1 ** t)) / denom
    else:
        Z, F = prob.residual(w)
        mse = float(F @ F) / prob.N
        if mse < best:
            best, best_w = mse, w.copy()
    return {"mse": mse, "best_mse": best, "w": best_w, "steps": t,
            "accepted": bool(best < threshold)}


def run_adahessian(model, allocation, m, trials, seed, steps=2000, restarts=1,
                   threshold=MSE_THRESHOLD, **options):
    """The paper's ReLU procedure on the trials of ``match_probability`` (same draws):
    ``status[t] = MATCH`` means **accepted by the MSE criterion**, not a verified match.
    Returns ``(status, info)`` with the criterion, budget and seconds per trial."""
    from ..estimators.relu import relu_trial_system

    if not isinstance(model, ShallowReLU):
        raise TypeError(f"run_adahessian: model must be a ShallowReLU, got {type(model).__name__}")
    if not isinstance(allocation, Allocation) or allocation.params != ("W1",):
        raise ValueError("run_adahessian: needs a fastmp.Allocation confined to W1")
    if int(steps) < 1 or int(restarts) < 1 or int(trials) < 1 or int(m) < 1:
        raise ValueError("run_adahessian: steps, restarts, trials and m must be >= 1")
    mask = allocation.mask("W1")
    status = np.empty(int(trials), dtype=np.int8)
    best = np.empty(int(trials))
    t0 = time.perf_counter()
    for t in range(int(trials)):
        s = relu_trial_system(model, mask, int(m), int(seed), t)
        status[t] = NO_MATCH
        best[t] = np.inf
        for j in range(int(restarts)):
            out = adahessian_fit(s, steps=steps, rng=(int(seed), t, j), threshold=threshold,
                                 **options)
            best[t] = min(best[t], out["best_mse"])
            if out["accepted"]:
                status[t] = MATCH
                break
    seconds = time.perf_counter() - t0
    info = {"method": "adahessian (paper baseline)",
            "criterion": f"accepted if MSE < {threshold:g} (not an exact match)",
            "steps": int(steps), "restarts": int(restarts),
            "options": {**DEFAULTS, **options}, "best_mse": best.tolist(),
            "seconds_per_trial": seconds / int(trials)}
    return status, info
