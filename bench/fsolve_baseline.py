"""The paper's MP estimator: ``scipy.optimize.fsolve`` from random starts (Appendix E.1).

This is the baseline fastmp is compared against, written as the paper describes it and
as a new user would write it (no Jacobian: fsolve's forward finite differences):

* per trial, take the trial's draws ``(teacher, student, X) = model.trial_draws(seed,
  trial, m)`` -- the same numbers fastmp's own estimators use for ``(seed, trial)``;
* the unknowns ``x`` are the allocated entries of the student (of any of the model's
  parameters, e.g. ``W``, ``B``, ``D`` of an LRNN), in model parameter order and, within
  a parameter, row-major order of its mask; the student's other entries stay frozen;
* the residual is ``F(x) = vec(forward(student with x, X) - Y_teacher)``: ``d m``
  equations (``r = d m`` unknowns in the paper's setting; other shapes are allowed,
  fsolve then raises for ``r != d m``, see :func:`fsolve_trial`);
* ``fsolve(F, x0)`` is run from up to ``starts`` random initial points (400 for the LRNN
  experiments in the paper), ``x0`` drawn entrywise from the parameter's initialisation
  law of Appendix E.3, ``N(0, 1/fan_in)`` -- ``N(0, 1/n)`` for ``W`` and ``D`` of an
  LRNN, ``N(0, 1/b)`` for ``B``;
* a trial is a match if some start ends with ``ier == 1`` *and*
  ``||F(x)||_inf <= tol * max(1, ||Y||_inf)``. The trial stops at its first success
  (MP is "the number of solutions found" over the trials).

The paper does not state its success criterion (only that the match probability "was
calculated based on the number of solutions found"); ``tol = 1e-8`` relative to
``max(1, ||Y||_inf)`` together with fsolve's own convergence flag is our choice.

Starts are drawn from ``numpy.random.default_rng([start_seed, trial])``, so a trial's
result does not depend on which other trials are run.
"""
from __future__ import annotations

import collections
import time
import warnings

import numpy as np
from scipy.optimize import fsolve

from fastmp import Allocation, wilson_interval

DEFAULT_TOL = 1e-8


def _as_mask_dict(model, allocation):
    if isinstance(allocation, Allocation):
        return {n: allocation.mask(n) for n in allocation.params}
    out = {}
    for name, mask in allocation.items():
        if name not in model.param_shapes:
            raise ValueError(f"unknown parameter {name!r} for {model!r}")
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != model.param_shapes[name]:
            raise ValueError(f"mask of {name!r} has shape {mask.shape}, expected "
                             f"{model.param_shapes[name]}")
        if mask.any():
            out[name] = mask
    # model order
    return {n: out[n] for n in model.param_names if n in out}


def _residual_factory(model, mask_dict, student, X, Y):
    """``F(x)`` and the pieces to scatter ``x`` into the student's weights."""
    names = list(mask_dict)
    idx = {n: np.flatnonzero(mask_dict[n].ravel()) for n in names}
    sizes = [idx[n].size for n in names]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    base = {n: np.array(student[n], dtype=float, copy=True) for n in model.param_names}

    def weights_of(x):
        w = dict(base)
        for j, n in enumerate(names):
            arr = base[n].copy()
            arr.ravel()[idx[n]] = x[offsets[j]:offsets[j + 1]]
            w[n] = arr
        return w

    def F(x):
        return (model.forward(weights_of(x), X) - Y).ravel()

    scales = np.concatenate([np.full(idx[n].size, 1.0 / np.sqrt(model.fan_in(n)))
                             for n in names])
    return F, weights_of, int(offsets[-1]), scales


def fsolve_trial(model, mask_dict, m, seed, trial, starts=400, tol=DEFAULT_TOL, rng=None,
                 *, stats=None, rejected=None, x0=None):
    """One trial of the paper's fsolve estimator.

    Parameters
    ----------
    model : fastmp model (e.g. ``fastmp.LRNN``)
    mask_dict : ``{name: bool mask}`` or an :class:`fastmp.Allocation`; the unknowns
    m : number of samples
    seed, trial : select the draws ``model.trial_draws(seed, trial, m)``
    starts : maximum number of random initial points (the trial stops at its first success)
    tol : success if ``||F(x)||_inf <= tol * max(1, ||Y||_inf)`` and ``ier == 1``
        (the paper does not state its criterion; this one is ours)
    rng : ``numpy.random.Generator`` (or seed) for the initial points; default
        ``default_rng([seed, trial])``
    stats : optional ``collections.Counter`` updated with fsolve's ``ier`` codes per start
        and ``"small_residual_ier_not_1"`` (starts that reached the tolerance but were not
        flagged converged by fsolve -- not counted as matches) and
        ``"ier1_residual_above_tol"`` (flagged converged, residual above the tolerance)
    rejected : optional list; gets the relative residual ``||F||_inf / max(1, ||Y||_inf)``
        of every start flagged converged (``ier == 1``) but rejected by ``tol`` -- these are
        typically true roots far from the origin whose accuracy is limited by conditioning
    x0 : optional explicit first initial point (diagnostics, e.g. start at a known root);
        the remaining ``starts - 1`` are random

    Returns
    -------
    ``(matched, starts_used, x)`` with ``x`` the matching unknowns (``None`` if no start
    succeeded; ``starts_used`` is then ``starts``).
    """
    mask_dict = _as_mask_dict(model, mask_dict)
    if not mask_dict:
        raise ValueError("fsolve_trial: empty allocation")
    teacher, student, X = model.trial_draws(seed, trial, m)
    Y = model.forward(teacher, X)
    F, _, r, scales = _residual_factory(model, mask_dict, student, X, Y)
    if r != Y.size:
        raise ValueError(f"fsolve_trial: fsolve needs a square system; r = {r} unknowns "
                         f"but d m = {Y.size} equations")
    if rng is None:
        rng = np.random.default_rng([int(seed), int(trial)])
    elif not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    yscale = max(1.0, float(np.max(np.abs(Y))))
    thresh = tol * yscale
    for s in range(1, int(starts) + 1):
        if s == 1 and x0 is not None:
            start = np.asarray(x0, dtype=float).reshape(r)
        else:
            start = rng.standard_normal(r) * scales
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            x, info, ier, _msg = fsolve(F, start, full_output=True)
        res = float(np.max(np.abs(info["fvec"])))
        ok = np.isfinite(res) and res <= thresh
        if stats is not None:
            stats[f"ier={ier}"] += 1
            if ok and ier != 1:
                stats["small_residual_ier_not_1"] += 1
            if ier == 1 and not ok:
                stats["ier1_residual_above_tol"] += 1
        if rejected is not None and ier == 1 and not ok:
            rejected.append(res / yscale)
        if ok and ier == 1:
            return True, s, x
    return False, int(starts), None


def fsolve_mp(model, allocation, m=None, trials=100, seed=0, starts=400, tol=DEFAULT_TOL,
              start_seed=None):
    """MP of ``allocation`` estimated with the paper's fsolve procedure.

    ``allocation`` is an :class:`fastmp.Allocation`, a ``{name: mask}`` dict, or a
    callable ``trial -> Allocation`` (a fresh random allocation per trial, as in the
    paper's Figure 2, Appendix E.2). ``m`` defaults to ``r / d``. Trial ``t`` uses
    ``model.trial_draws(seed, t, m)`` and initial points from
    ``default_rng([start_seed, t])`` (``start_seed`` defaults to ``seed``).

    Returns ``dict(mp, matches, trials, ci_low, ci_high, seconds, seconds_per_trial,
    statuses, starts_used, matched, best_rejected)``: ``ci_*`` is the 95% Wilson interval,
    ``statuses`` counts fsolve's ``ier`` over all starts run (plus the two near-miss
    counters of :func:`fsolve_trial`), ``starts_used`` the per-trial number of starts (the winning start for matches),
    ``matched`` the per-trial outcome, ``best_rejected`` the per-trial smallest relative
    residual of a start fsolve flagged converged but ``tol`` rejected (``nan`` if none):
    the MP under a looser tolerance ``tol2`` is exactly the fraction of trials that matched
    or have ``best_rejected <= tol2`` (a missed trial ran all its starts).
    """
    start_seed = seed if start_seed is None else start_seed
    get = allocation if callable(allocation) else (lambda t: allocation)
    stats = collections.Counter()
    matches = 0
    used, matched, best_rejected = [], [], []
    t0 = time.perf_counter()
    for t in range(int(trials)):
        alloc = get(t)
        masks = _as_mask_dict(model, alloc)
        r = sum(int(a.sum()) for a in masks.values())
        mm = m
        if mm is None:
            if r % model.d:
                raise ValueError(f"fsolve_mp: r = {r} not a multiple of d = {model.d}; pass m")
            mm = r // model.d
        rej = []
        ok, s, _ = fsolve_trial(model, masks, mm, seed, t, starts, tol,
                                np.random.default_rng([int(start_seed), t]), stats=stats,
                                rejected=rej)
        best_rejected.append(min(rej) if rej else float("nan"))
        matches += bool(ok)
        used.append(s)
        matched.append(bool(ok))
    secs = time.perf_counter() - t0
    lo, hi = wilson_interval(matches, int(trials))
    return dict(mp=matches / trials, matches=matches, trials=int(trials), ci_low=lo,
                ci_high=hi, seconds=secs, seconds_per_trial=secs / trials,
                statuses=dict(stats), starts_used=used, matched=matched,
                best_rejected=best_rejected)
