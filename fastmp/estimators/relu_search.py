"""Fast, budget-limited match search for allocations in ``W1`` of a shallow ReLU network
(paper §5, Appendix D), for sizes where the exact activation-pattern decision
(:mod:`fastmp.estimators.relu`, ``2^(k m)`` patterns) is out of reach.

Per trial the compiled pattern fixed-point / semismooth-Newton iteration of
:func:`fastmp.kernels.relu.pattern_search` runs from up to ``starts`` starts and returns
the first pattern ``P`` whose linear system (D.1) it solved at a point that has pattern
``P`` (so (D.2) holds in floating point). With ``repair`` (default, used only on draws
where Lemmas D.3/D.4 hold, ``system.generic``) each Newton step is taken on the pattern
made to obey the lemmas (:func:`fastmp.kernels.relu.repair_pattern`). Measured on 575
trials decided by the exact search (q = 6; n = 8, 10; d = 2, 4; k m = 16..36; 34
matches): with repair, 256 starts and 10, 12 or 30 steps per start the search found 33 of
the 34 (the last one, margin 1.3e-4, at start 282); without repair 27/33 of an earlier
subset with 256 starts and 31/33 with 2048. It never reported a match the exact decision
rejects. The line-search modes ``"damped"`` and ``"hybrid"`` (on ``|F|^2``) cost 4x more
per trial and found no more. ``bench/relu_compare.py`` measures the Figure 3b setting.
That candidate is then

1. re-centred if its float margin is small: the margin LP of pattern ``P`` (the one the
   brute force uses) finds the point of (D.1) deepest inside the sign constraints;
2. checked on the weights (:func:`~fastmp.estimators.relu.verify_match`: forward pass and
   activation pattern), and
3. **certified exactly** (:func:`~fastmp.estimators.relu.certify_match_exact`: the trial
   rebuilt in rational arithmetic, the point projected exactly onto (D.1), (D.2) and the
   teacher's outputs checked exactly).

Only a certified candidate makes the trial a ``MATCH``. Every other trial is
``NO_MATCH`` **in the budget-limited sense**: no match was found within the starts, not
a proof that none exists (``info["budget_limited"]`` says so, and
``info["mp_by_starts"]`` gives the estimate as a function of the number of starts, so
one can see whether it has levelled off). A candidate that fails certification is
counted in ``info["rejected_candidates"]`` and the search continues with the next start.
"""
from __future__ import annotations

import time

import numpy as np

from .._config import MATCH, NO_MATCH
from ..allocation import Allocation
from ..kernels.relu import DAMPED, HYBRID, UNDAMPED, pattern_search
from ..models.shallow_relu import ShallowReLU
from .relu import (MARGIN_TOL, _FEASIBLE, _brute_pattern, RELU_TOLERANCES,
                   certify_match_exact, relu_trial_system, verify_match)

#: default number of Newton starts per trial
DEFAULT_STARTS = 256
#: Newton steps per start before it is abandoned. Measured (q = 6; the d = 4, m = 6 rows
#: k = 5..7 of bench/relu_compare.py and its d = 1, 2 rows; seeds 0-3, 60 trials each):
#: a trajectory wanders through patterns (about 9 of 36 entries change per step) until
#: it falls into a fixed point's basin, then converges in 1-3 steps; the chance that a
#: step ends in a match is about 1.5e-4 in steps 1-7 and about 3e-5 after. Cutting the
#: cap to 8 (6) saves 24% (37%) of the time at 64 starts but loses 2 (4) of the 203
#: matches found with 12 (at 256 starts: 17% (29%) less time, 1 (2) of 208 lost). Not
#: taken: a speed-up bought with matches, so 12 stays.
DEFAULT_MAX_ITER = 12
#: a pattern's linear system counts as solved when the inf-norm residual of the step is
#: below this fraction of the scale of its right-hand side
SEARCH_RES_TOL = 1e-9
#: candidates whose float margin (relative) is below this are re-centred by the margin LP
#: before certification
RECENTRE_MARGIN = 1e-6
#: iteration modes of the compiled search (see :mod:`fastmp.kernels.relu`)
MODES = {"undamped": UNDAMPED, "damped": DAMPED, "hybrid": HYBRID}


def kernel_inputs(system):
    """Arrays the compiled search takes: ``(xa, b, var_row, V, rhs)`` with
    ``xa[i, c] = A[i, row(c), c]`` (the input entry multiplying weight ``c``)."""
    r = system.r
    xa = np.ascontiguousarray(system.A[:, system.var_row, np.arange(r)])   # (m, r)
    return (xa, np.ascontiguousarray(system.b), np.ascontiguousarray(system.var_row),
            np.ascontiguousarray(system.V), np.ascontiguousarray(system.rhs))


def search_decide(system, starts=DEFAULT_STARTS, max_iter=DEFAULT_MAX_ITER, mode="undamped",
                  repair=True, certify=True):
    """Search one trial. Returns a dict: ``status`` (``MATCH`` only for a certified
    match, else ``NO_MATCH`` = none found within the budget), ``pattern``, ``w``,
    ``starts_used`` (starts run up to and including the successful one), ``iterations``,
    ``rejected`` (candidates that failed verification or certification), ``certificate``.
    """
    starts, max_iter = int(starts), int(max_iter)
    if mode not in MODES:
        raise ValueError(f"search_decide: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if starts < 1 or max_iter < 1:
        raise ValueError("search_decide: starts and max_iter must be >= 1")
    xa, b, var_row, V, rhs = kernel_inputs(system)
    res_tol = SEARCH_RES_TOL * system.f_floor
    init_scale = 1.0 / np.sqrt(system.model.q)
    out_w = np.empty(system.r)
    out_P = np.zeros((system.m, system.k), dtype=np.bool_)
    seed = system.seed if system.seed >= 0 else 0
    trial = system.trial if system.trial >= 0 else 0
    done = iters = rejected = 0
    # run the kernel start block by start block so that a rejected candidate does not
    # end the search: the kernel's stream is per (seed, trial), so resume with a shifted
    # trial index for the next block (still deterministic)
    block = 0
    while done < starts:
        s, it = pattern_search(xa, b, var_row, V, rhs, np.uint64(seed),
                               np.uint64(trial + (block << 40)), starts - done, max_iter,
                               init_scale, res_tol, MODES[mode],
                               system.r_row, bool(repair and system.generic), out_w, out_P)
        iters += it
        block += 1
        if s < 0:
            done = starts
            break
        done += s + 1
        P, w = out_P.copy(), out_w.copy()
        ver = verify_match(system, P, w)
        if not ver["ok"] or ver["margin"] < RECENTRE_MARGIN:
            outcome, w2, _, _ = _brute_pattern(system, P, RELU_TOLERANCES)
            if outcome == _FEASIBLE and w2 is not None:
                ver2 = verify_match(system, P, w2)
                if ver2["ok"] and ver2["margin"] > max(ver["margin"], MARGIN_TOL):
                    w, ver = w2, ver2
        cert = certify_match_exact(system, P, w) if (certify and ver["ok"]) else None
        if ver["ok"] and (cert is None or cert["ok"]):
            return {"status": MATCH, "pattern": P, "w": w, "starts_used": done,
                    "iterations": iters, "rejected": rejected, "certificate": cert,
                    "verify": ver}
        rejected += 1
    return {"status": NO_MATCH, "pattern": None, "w": None, "starts_used": done,
            "iterations": iters, "rejected": rejected, "certificate": None, "verify": None}


def run_relu_search(model, allocation, m, trials, seed, starts=DEFAULT_STARTS,
                    max_iter=DEFAULT_MAX_ITER, mode="undamped", repair=True, progress=None):
    """Per-trial statuses of the fast search for an allocation confined to ``W1`` of a
    :class:`~fastmp.ShallowReLU` (trial ``t`` uses ``model.trial_draws(seed, t, m)``, the
    same draws as the exact decision).

    Returns ``(status, info)``: ``info["method"] = "relu-search"``,
    ``info["budget_limited"] = True`` (a ``NO_MATCH`` means none found within
    ``starts`` starts), ``mp_by_starts`` (MP had the search stopped after 1, 2, 4, ...
    starts), per-trial starts used, Newton steps, rejected candidates and the time per
    trial.
    """
    if not isinstance(model, ShallowReLU):
        raise TypeError(f"run_relu_search: model must be a ShallowReLU, got {type(model).__name__}")
    if not isinstance(allocation, Allocation):
        raise TypeError("run_relu_search: allocation must be a fastmp.Allocation")
    if allocation.model != model:
        raise ValueError(f"run_relu_search: allocation is for {allocation.model!r}, not {model!r}")
    if allocation.params != ("W1",):
        raise ValueError("run_relu_search: the pattern search needs an allocation confined "
                         f"to W1; this one uses {', '.join(allocation.params)}")
    m, trials, seed = int(m), int(trials), int(seed)
    if m < 1 or trials < 1:
        raise ValueError("run_relu_search: m and trials must be >= 1")
    if int(starts) < 1 or int(max_iter) < 1:
        raise ValueError("run_relu_search: starts and max_iter must be >= 1")
    if mode not in MODES:
        raise ValueError(f"run_relu_search: mode must be one of {', '.join(MODES)}, got {mode!r}")
    mask = allocation.mask("W1")
    status = np.empty(trials, dtype=np.int8)
    used = np.zeros(trials, dtype=np.int64)
    iters = np.zeros(trials, dtype=np.int64)
    rejected = 0
    t0 = time.perf_counter()
    for t in range(trials):
        system = relu_trial_system(model, mask, m, seed, t)
        out = search_decide(system, starts=starts, max_iter=max_iter, mode=mode, repair=repair)
        status[t] = out["status"]
        used[t], iters[t] = out["starts_used"], out["iterations"]
        rejected += out["rejected"]
        if progress is not None:
            progress(1)
    seconds = time.perf_counter() - t0
    curve = {}
    b = 1
    while True:
        b = min(b, int(starts))
        curve[str(b)] = float(np.count_nonzero((status == MATCH) & (used <= b)) / trials)
        if b >= int(starts):
            break
        b *= 2
    info = {
        "method": "relu-search",
        "budget_limited": True,
        "criterion": ("match = a pattern solved by the Newton search whose point is "
                      "certified exactly (rational forward pass equals the teacher's "
                      "outputs); no match = none found within the starts"),
        "starts": int(starts),
        "max_iter": int(max_iter),
        "mode": mode,
        "repair": bool(repair),
        "mp_by_starts": curve,
        "starts_per_trial": used.tolist(),
        "newton_steps": int(iters.sum()),
        "rejected_candidates": int(rejected),
        "seconds_per_trial": seconds / trials,
    }
    return status, info
