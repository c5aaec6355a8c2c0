"""Root search for *plugin* polynomial models: Newton and Levenberg-Marquardt on a system
given only by compiled callbacks (:class:`fastmp.plugins.PolynomialModel`).

The chain-program solvers (:mod:`fastmp.kernels.chain`) know the matrix structure of
fastmp's built-in models; these kernels know nothing but three Numba functions:

* ``draw(seed, trial, data)`` fills the float64 array ``data`` with one trial's numbers
  (frozen weights, inputs, the teacher's outputs...), from fastmp's random streams;
* ``residual(x, data, out)`` writes ``R(x)`` (``n_eq`` values) for the unknowns ``x``;
* ``jacobian(x, data, out)`` writes ``dR/dx`` (``n_eq x n_vars``, row-major).

Every start ``s`` of trial ``t`` draws its point from its own stream
``(seed, t, START_STREAM + s)`` (:mod:`fastmp.kernels.rng`), so a trial's result does not
depend on batching or on how the budget was split into rounds. Starts alternate between
Levenberg-Marquardt (even ``s``; globalised, Marquardt scaling, as
:func:`fastmp.kernels.chain.levenberg_marquardt`) and plain Newton (odd ``s``; explores
more distinct roots, see DESIGN.md's solver notes); both end with a Newton polish. The
kernels only *find candidates*: a candidate counts as a match only after the certification
in :mod:`fastmp.plugins` (Krawczyk in arb arithmetic).

The callbacks are arguments, so the kernels are compiled once per plugin (not cached on
disk: Numba cannot cache functions specialised on other jitted functions).
"""
from __future__ import annotations

import numpy as np

from .._config import jit
from .rng import fill_normal, trial_state

#: start ``s`` of a trial draws from stream ``START_STREAM + s``; far above the stream
#: numbers fastmp's models use for their weight and input segments (0, 1, 2, ...)
START_STREAM = 1 << 32

#: Newton iterates beyond this max-norm are abandoned (diverging start)
DIVERGED = 1e8


@jit(cache=False)
def _maxabs(v):
    s = 0.0
    for i in range(v.shape[0]):
        a = abs(v[i])
        if not a <= s:  # also propagates NaN
            s = a
    return s


@jit(cache=False)
def _sumsq(v):
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i] * v[i]
    return s


@jit(cache=False)
def newton_polish(residual, jacobian, data, x, R, J, max_iter, tol, yscale):
    """Plain (undamped) Newton from ``x`` (updated in place). Returns
    ``(relative max-norm residual, iterations)``; ``inf`` if the Jacobian was singular,
    an iterate was not finite or left the ball ``|x| < DIVERGED``."""
    n_eq, r = J.shape
    res = np.inf
    for it in range(max_iter + 1):
        residual(x, data, R)
        res = _maxabs(R) / yscale
        if res < tol or it == max_iter or not np.isfinite(res):
            break
        jacobian(x, data, J)
        try:
            if n_eq == r:
                dx = np.linalg.solve(J, -R)
            else:
                dx = np.linalg.lstsq(J, -R)[0]
        except Exception:  # singular Jacobian: this start is lost
            return np.inf, it
        if not np.all(np.isfinite(dx)):
            return np.inf, it
        x += dx
        if _maxabs(x) > DIVERGED:
            return np.inf, it
    return res, it


@jit(cache=False)
def levenberg_marquardt(residual, jacobian, data, x, R, J, max_iter, yscale):
    """Levenberg-Marquardt on ``R(x) = 0``: ``(J^T J + lam diag(J^T J)) dx = -J^T R``
    with Nielsen's damping update, as :func:`fastmp.kernels.chain.levenberg_marquardt`
    (gain ratio ``rho > 0`` accepts and sets ``lam *= max(1/3, 1 - (2 rho - 1)^3)``; a
    rejection multiplies ``lam`` by ``nu``, doubles ``nu`` and reuses the Jacobian).
    Stops once ``|R| / yscale < 1e-4`` (Newton polishes from there) or when stalled.
    Returns the relative 2-norm residual; ``x`` is updated in place."""
    n_eq, r = J.shape
    residual(x, data, R)
    f = _sumsq(R)
    lam = 1e-3
    nu = 2.0
    f_mark = f
    xn = np.empty(r)
    A = np.empty((r, r))
    g = np.empty(r)
    need_jacobian = True
    for it in range(max_iter):
        if not np.isfinite(f) or np.sqrt(f) / yscale < 1e-4:
            break
        if it > 0 and it % 25 == 0:
            if f > 0.9 * f_mark:
                break  # stalled, most likely at a local minimum of |R|
            f_mark = f
        if need_jacobian:  # R holds R(x) here: x is the start or the last accepted point
            jacobian(x, data, J)
            A = J.T @ J
            g = J.T @ R
        M = A.copy()
        for i in range(r):
            M[i, i] += lam * max(A[i, i], 1e-12)
        ok = True
        try:
            dx = np.linalg.solve(M, -g)
        except Exception:
            ok = False
            dx = np.zeros(r)
        accepted = False
        if ok and np.all(np.isfinite(dx)):
            for i in range(r):
                xn[i] = x[i] + dx[i]
            residual(xn, data, R)
            fn = _sumsq(R)
            predicted = -2.0 * np.dot(dx, g) - np.dot(dx, A @ dx)
            rho = (f - fn) / predicted if predicted > 0.0 else -1.0
            if fn < f and rho > 0.0:
                x[:] = xn
                f = fn
                lam = max(lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), 1e-12)
                nu = 2.0
                accepted = True
        if not accepted:
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                break
        need_jacobian = accepted
    residual(x, data, R)
    return np.sqrt(_sumsq(R)) / yscale


@jit(cache=False)
def search_batch(draw, residual, jacobian, seed, trials, first, upto, start_scale, n_eq,
                 max_iter, tol, cand_res, data, w_out, res_out, found):
    """Search trial ``trials[k]`` from start ``first[k]`` up to (excluding) ``upto`` and
    stop at the first candidate root.

    Writes the trial's numbers to ``data[k]`` (``draw``); ``found[k]`` is the index of
    the start that gave a candidate (relative max-norm residual ``res_out[k] <
    cand_res``; the point in ``w_out[k]``), or ``-1``. Residuals are relative to
    ``max(1, |R(0)|_max)`` (``R(0)`` is typically minus the teacher's outputs).
    """
    r = start_scale.shape[0]
    R = np.empty(n_eq)
    J = np.empty((n_eq, r))
    x = np.empty(r)
    for k in range(trials.shape[0]):
        t = np.uint64(trials[k])
        draw(seed, t, data[k])
        found[k] = -1
        res_out[k] = np.inf
        x[:] = 0.0
        residual(x, data[k], R)
        yscale = max(1.0, _maxabs(R))
        for s in range(first[k], upto):
            st = trial_state(seed, t, np.uint64(START_STREAM + s))
            fill_normal(st, x)
            for i in range(r):
                x[i] *= start_scale[i]
            if s % 2 == 0:
                res = levenberg_marquardt(residual, jacobian, data[k], x, R, J, 200, yscale)
                if not (res < 1e-4):
                    continue
            res, _ = newton_polish(residual, jacobian, data[k], x, R, J, max_iter, tol,
                                   yscale)
            if res < cand_res:
                found[k] = s
                res_out[k] = res
                w_out[k, :] = x
                break
