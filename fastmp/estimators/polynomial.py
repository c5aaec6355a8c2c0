"""Certified real-root search for polynomial allocations (LRNN recurrent weights, mixes
of D, B and W, several layers of a LinearFFN).

Per trial: plain Newton's method on the lifted system of Lemma 3.3 (nodes of the model's
chain program as extra unknowns), both in its eliminated form (an ``r x r`` solve per
step, :func:`fastmp.kernels.chain.newton`; a start goes on from a fresh random point
whenever its iterate leaves a box, :func:`fastmp.kernels.chain.newton_restarts`, and
runs eight such runs at once in SIMD lanes where :mod:`fastmp.kernels.lanes` applies --
Figure 2a's recurrent weights) and on the full system
(:func:`fastmp.kernels.chain.newton_lifted_full`: its Jacobian is linear in the iterates,
which keeps it usable far from a root and lets it reach the huge unique roots of
Theorem 3.5 allocations), and Levenberg-Marquardt, from random starts; a converged
point counts only if Krawczyk's test certifies a real root next to it
(:mod:`fastmp.estimators.certify`: double-precision ball arithmetic, then 212-bit arb
arithmetic after refinement). A point that converged but could not be certified is a
*near-miss* (status ``AMBIGUOUS``), never a match. A trial without a certified root is a
miss *for the budget used*: the result reports the budget and MP as a function of it.

Each start draws its solver from the portfolio (lifted Newton from each side, LM on the
original system) with probabilities following certified roots per unit of
cost so far (:func:`start_shares`, deterministic cost units :func:`start_cost`, a
per-trial generator), so the result is a function of the seed alone.

Budget: ``starts`` random starts per trial at most. With ``adaptive=True`` the search
runs in rounds (8, 16, 32, ... starts per unmatched trial) and stops when two successive
doublings find no new match (and at least ``MIN_ADAPTIVE_STARTS`` were tried), when
every trial matched, or at ``starts``.

For allocations meeting Theorem 3.5 the constructive solver of its proof is used
(method "theorem35", the default under "auto"); its root is certified the same way.
"""
from __future__ import annotations

import numpy as np

from .._config import AMBIGUOUS, MATCH, NO_MATCH
from .certify import krawczyk, krawczyk_arb, krawczyk_compiled
from .constructive import theorem35_columns, theorem35_rows
from ..kernels import lanes

#: a converged Newton point is sent to certification when its relative residual is
#: below CANDIDATE_RES, or when its last relative step was below STEP_TOL and its
#: residual below the rounding floor ~ eps |w|^degree (huge roots of Theorem 3.5
#: allocations, where double precision cannot get the residual small)
CANDIDATE_RES = 1e-6
STEP_TOL = 1e-6
#: the adaptive budget never stops below this many starts per unmatched trial
MIN_ADAPTIVE_STARTS = 64


#: precisions (bits) tried in turn by the arbitrary-precision Krawczyk test
ARB_PRECISIONS = (212, 424, 848)


def _square_part(prog, params, consts, var, w):
    """For ``r > dm``: freeze the ``r - dm`` least needed unknowns at their values ``w``
    (pivoted QR of the Jacobian picks the ``dm`` kept ones). A certified root of the
    square remainder is a root of the full system."""
    from scipy.linalg import qr
    from .certify import chain_ball
    r = len(var)
    M = prog.d * prog.m
    Pm = [p.astype(np.float64).copy() for p in params]
    for k, (p, i, j) in enumerate(var):
        Pm[p][i, j] = w[k]
    _, (J, _) = chain_ball(prog, Pm, [np.zeros_like(p) for p in Pm], consts, True, var)
    piv = qr(J, mode="r", pivoting=True)[1]
    keep = np.sort(piv[:M])
    return Pm, var[keep], w[keep]


def certify_root(prog, params, consts, ystar, var, w, padded=None, ladder=True):
    """``(certified, how)`` with ``how`` in {"double", "arb-<bits>", ""}.

    Square systems only are certified directly; with more unknowns than equations the
    surplus ones are frozen first (:func:`_square_part`); with fewer, no root can be
    certified (generically there is none, Lemma B.4) and the answer is ``False``.
    Krawczyk's test runs first all compiled (:func:`krawczyk_compiled`, residual enclosed
    in double-double, Jacobian in double ball arithmetic; ``padded = (P, C)`` are the
    program's padded parameters and constants when
    the caller has them), then with the residual in 128-bit arb (:func:`krawczyk`),
    then in arb arithmetic at rising precision (:func:`krawczyk_arb`). With ``ladder``
    False only the cheapest test runs (the compiled one where the program has padded
    arrays): the search defers the others (Figure 2a, n = 8, k = 8: the arb-residual test
    took ~6 ms on each of the 2% of roots the compiled one fails, and certified none of
    them since the compiled residual is enclosed in double-double).
    """
    M = prog.d * prog.m
    if len(var) < M:
        return False, ""
    if len(var) > M:
        params, var, w = _square_part(prog, params, consts, var, w)
        padded = None
    if hasattr(prog, "pad_params"):
        if padded is None:
            padded = (prog.pad_params([np.asarray(p, dtype=np.float64) for p in params]),
                      prog.pad_consts([np.asarray(c, dtype=np.float64) for c in consts]))
        ok, _ = krawczyk_compiled(prog, *padded, ystar, var, w)
        if ok:
            return True, "double"
        if not ladder:
            return False, ""
    ok, _ = krawczyk(prog, params, consts, ystar, var, w)
    if ok:
        return True, "double"
    if not ladder:
        return False, ""
    for bits in ARB_PRECISIONS:
        report = {}
        ok, _, w = krawczyk_arb(prog, params, consts, ystar, var, w, prec=bits, report=report)
        if ok:
            return True, f"arb-{bits}"
        if not report["converged"]:
            # Newton at this precision was singular or its steps did not shrink: no
            # simple root near, and more bits do not change that. Such candidates
            # (|w| ~ 1e7, cond(J) ~ 1e19, Newton starts running off to infinity) cost
            # ~20 ms each through the whole ladder at Figure 2a, n = 8
            break
    return False, ""


class _Trial:
    """One trial's system (on every lifting side the model offers) and search state."""

    def __init__(self, model, progs, seed, trial, m, start_scale):
        self._key = (model, progs, seed, trial, m)
        self._sides = {}
        self._lanes = {}
        self.lanes_ok = {}  # side -> lanes.supported, the same for every trial of a run
        self.rng = np.random.default_rng([seed, trial, 0x5EED])
        self.pick = np.random.default_rng([seed, trial, 0xC401CE])
        self.starts_used = 0
        self.first_match = -1
        self.near_miss = False
        self.deferred = []  # candidates awaiting the arb ladder (start, side, kind, w)
        self.how = ""
        self.solver = ""
        self.scale = start_scale
        self.untried = []

    def lane_problem(self, side, prog, var):
        """The side's :class:`fastmp.kernels.lanes.Problem` (built on first use), or None
        where the lane kernel does not apply (:func:`fastmp.kernels.lanes.supported`)."""
        if side not in self._lanes:
            _params, _consts, ystar, P, C = self.side(side)
            self._lanes[side] = (lanes.Problem(prog, P, C, var, ystar, self.scale)
                                 if self.lanes_ok[side] else None)
        return self._lanes[side]

    def side(self, side):
        """``(params, consts, Y*, P, C)`` of one lifting side, built when first needed:
        after the first trials most runs never start a solver on the other side, and
        building it (draws, transposes, padding) was a third of a trial's set-up."""
        got = self._sides.get(side)
        if got is None:
            model, progs, seed, trial, m = self._key
            prog = progs[side]
            params, consts, ystar = model.chain_trial(seed, trial, m, side)
            got = self._sides[side] = (params, consts, ystar, prog.pad_params(params),
                                       prog.pad_consts(consts))
        return got


#: largest full lifted system (unknowns ``r + sum_k |N_k|``) plain Newton runs on. Its
#: dense LU grows with the cube: in the Figure 2a setting the left lifting has 528
#: unknowns at n = 16 and cost 52 ms per start (LM: 9 ms) without finding a root in 40
#: starts; the right one (160 unknowns) 3.4 ms.
LIFTED_MAX = 256


def lifted_size(prog, r):
    """Unknowns of the full lifted system of ``prog`` with ``r`` learnable weights."""
    ns = prog.ns
    return int(r + sum(int(ns[k, 0] * ns[k, 1]) for k in range(1, ns.shape[0])))


def _solvers(sides, lifted, sizes=None):
    """The portfolio a trial's starts go through: for each side, plain Newton on the
    lifted system of Lemma 3.3 (nodes kept as unknowns) in its eliminated form
    (``"lifted"``: an ``r x r`` solve per step, restarted from a fresh random point
    whenever it leaves a box, :func:`fastmp.kernels.chain.newton_restarts`; see
    ``LIFTED_STEPS``) and,
    where the full lifted system has at most ``LIFTED_MAX`` unknowns (``sizes[side]``),
    on the full system (``"lifted-full"``: dense LU; the same step in exact arithmetic,
    but its Jacobian is linear in the iterates, so it stays well conditioned at the huge
    unique roots of Theorem 3.5 allocations, where the eliminated form's powers of ``W``
    are not); then Levenberg-Marquardt on the original system (globalised: plain Newton
    diverges from almost every start once T = n/2 >= 6).

    The eliminated form does not abandon a start after 12 steps without progress as the
    full one does, and costs 4 us instead of 18 per step (n = 8): at Figure 2a, n = 8
    (right lifting, 15 trials x 30 starts, certified roots per start and ms per start;
    runs of 60 steps from one point, before the restarts) k = 5: 0.47 in 0.17 ms (full:
    0.47 in 0.36), k = 6: 0.44 in 0.17 (0.16 in 0.28), k = 8: 0.056 in 0.23 (0.009 in
    0.26).

    Levenberg-Marquardt on the lifted system
    (:func:`fastmp.kernels.lifted_lm.lifted_levenberg_marquardt`) is not in the
    portfolio: measured there (Figure 2a, n = 8, 300 trials, three seeds) it made k = 8
    8% faster and k = 6 11% slower, MP the same within one trial."""
    if not lifted:
        return [(sides[0], "newton")]
    sizes = sizes or {}
    out = []
    for side in sides:
        out.append((side, "lifted"))
        if sizes.get(side, 0) <= LIFTED_MAX:
            out.append((side, "lifted-full"))
    return out + [(sides[0], "lm")]


#: iterations a start is assumed to take before any was measured (the first round's
#: shares): full lifted Newton stops within ~13 steps on most starts (its stagnation
#: rule), the eliminated form ~55 of its first 60 (it stops early only at a root),
#: Levenberg-Marquardt ~100 (its stall test every 25), at n = 8 on Figure 2a. (Abandoning
#: an eliminated-form start whose residual had not halved for 15 or 30 steps was slower
#: at k = 8, same MP: its roots come after long non-monotone runs.)
PRIOR_ITERATIONS = {"lifted-full": 15, "lifted": 55, "newton": 45, "lm": 100}

#: a start of eliminated lifted Newton ("lifted") is LIFTED_STEPS Newton steps from one
#: or more random points: whenever an iterate leaves the box max(|w|, |N|) <= cut, it
#: goes on from a fresh random point (:func:`fastmp.kernels.chain.newton_restarts`).
#: The cut is LIFTED_CUT, or CUT_MARGIN times the largest certified root (max |w|) the
#: run has found so far if that is larger. Why: from a random start plain Newton
#: wanders (|w| up to 1e6-1e8) long before it lands in a root's basin, and the steps
#: spent far out rarely lead back -- at Figure 2a, n = 8, k = 8 the certified roots
#: have |w| <= ~3e3, and cutting at 1e4 gave 0.59-0.75 roots per ms of search against
#: 0.43 for runs of 60 steps from one point (40 trials x 20-40 starts; cuts 3e3-1e5
#: within noise, 1e3 and below worse). Runs of 120 steps instead of 60 waste fewer
#: steps on runs cut short by the budget (0.59 -> 0.75 roots per ms); 240 no better.
#: Runs are LIFTED_STEPS long once the solver has found a root in the run, ``max_iter``
#: before: at n = 12 and 16 it finds none, and 120-step starts there had raised the
#: projected Figure 2a sweep from ~5 to ~24 min on 2 cores.
LIFTED_STEPS = 120
LIFTED_CUT = 1e4
CUT_MARGIN = 100.0

#: cost units of one lane step (:mod:`fastmp.kernels.lanes`) relative to one step of the
#: scalar kernels in :func:`start_cost`: 0.65-1.05 against ~3.3 us at Figure 2a, n = 8 --
#: a fixed ratio, so that the shares stay a function of the seed
LANE_STEP_COST = 0.3

#: shares follow the rates raised to this power (see start_shares): with the lanes the
#: rates differ more (Figure 2a, n = 8, k = 8: ~1.7 certified roots per ms for the lanes
#: against ~0.5 for Levenberg-Marquardt), and plain proportional shares still gave LM
#: 22% of the time: power 2 took k = 8 from 1.27 to 1.05 ms per trial at the same MP
#: (300 trials), k = 5 and 6 unchanged; n = 12 within noise (40 trials)
SHARE_POWER = 2.0


#: every solver of the portfolio runs at least once among a trial's first EXPLORE_BY
#: starts, whatever its share: a Theorem 3.5 column allocation is solved in two steps
#: by the left lifting only, which is the dearest solver (144 unknowns at n = 8). Two
#: rounds rather than one: at Figure 2a, n = 8, k = 8 the forced left-lifting start at
#: the end of the first round (8 starts) cost 1.3 ms per trial and found no root.
EXPLORE_BY = 16


def start_cost(kind, size, iterations):
    """Deterministic cost of one start in *units*: ``(iterations + 1) * size**2``, with
    ``size`` the unknowns of the linear system each iteration solves (``r`` for
    Levenberg-Marquardt and eliminated Newton, the full lifted size for lifted Newton).
    A proxy for CPU time that does not depend on the machine's load, so the portfolio
    (and MP) stay a function of the seed alone; measured at Figure 2a, n = 8, one unit is
    7.6-13 ns for all three kinds (LM r = 16: 3.2 us/iteration, lifted 48: 17.5 us,
    lifted 144: ~190 us)."""
    return float((iterations + 1) * size * size)


def start_shares(solvers, stats, sizes):
    """Each solver's probability of taking the next start.

    Each solver's *time* share is proportional to its certified roots per cost unit so
    far, ``(roots + 1/2) / (cost + one prior start)``, raised to ``SHARE_POWER`` (before
    any data: equal time shares); its share of *starts* is that divided by its mean cost
    per start. So a
    solver that is 10x dearer per start and no more successful gets ~1/10 of the
    starts of the others, where the first rule (``1 + roots``, at least one start each
    per round) spent most of the time on the dear one (Figure 2a, n = 8: left lifting,
    144 unknowns, 2-4 ms per start, certified roots in 0.3% of starts). A solver with a
    small share keeps its estimate and returns when the others' rates fall below it."""
    rate, per_start = [], []
    for side, kind in solvers:
        st = stats.get((side, kind))
        prior = start_cost(kind, sizes[(side, kind)], PRIOR_ITERATIONS[kind])
        if st is None or st["starts"] == 0:
            mean = prior
            rate.append(1.0 / mean)
        else:
            mean = (st["cost"] + prior) / (st["starts"] + 1)
            rate.append((st["roots"] + 0.5) / (st["cost"] + prior))
        per_start.append(mean)
    rate = np.array(rate) ** SHARE_POWER
    share = (rate / rate.sum()) / np.array(per_start)
    return share / share.sum()


def _cycle(solvers, stats, sizes, rng, length=64):
    """The solvers of a trial's next ``length`` starts, drawn independently with the
    probabilities :func:`start_shares` from the trial's own generator ``rng`` (so the
    result is a function of the seed alone). Drawn rather than rounded to a fixed round
    of 16: the rounding gave a solver with a share of 0.4 starts a whole slot (6%), early
    in the round, where most trials stop -- at Figure 2a, n = 8, k = 5 the left lifting,
    which never found a root, took 360 of 1600 starts that way."""
    cdf = np.cumsum(start_shares(solvers, stats, sizes))
    # inverse-CDF draws (Generator.choice with p validates and normalises p on every
    # call: ~3x the cost)
    idx = np.minimum(np.searchsorted(cdf, rng.random(length) * cdf[-1], side="right"),
                     len(solvers) - 1)
    return [solvers[i] for i in idx]


#: the forced exploration of EXPLORE_BY is per trial only while the run has given a solver
#: fewer than EXPLORE_RUN_MIN starts, or once it has found a root: at Figure 2a, n = 8,
#: k = 8 (300 trials) the forced left-lifting starts that never found a root cost
#: 0.5 ms per trial (6.5 -> 6.0 ms, MP 0.967 -> 0.980)
EXPLORE_RUN_MIN = 8


def _explore(stats, sk):
    """Whether solver ``sk`` is still forced into each trial's first EXPLORE_BY starts."""
    st = stats.get(sk)
    return st is None or st["roots"] > 0 or st["starts"] < EXPLORE_RUN_MIN


def _search(progs, variables, tr, upto, solvers, max_iter, stats, sizes, explore_by):
    """Random starts until a certified root or ``upto`` starts; ``solvers`` is the cycle
    of (side, kind) the starts go through; ``stats[(side, kind)]`` accumulates starts,
    cost units (:func:`start_cost`) and certified roots per solver."""
    while tr.starts_used < upto and tr.first_match < 0:
        side, kind = solvers[tr.starts_used % len(solvers)]
        # every solver of the portfolio runs at least once in a trial's first
        # ``explore_by`` starts (see _cycle): the last of those go to the ones not run yet
        # -- unless the run already gave it EXPLORE_RUN_MIN starts without a root
        if tr.untried:
            tr.untried = [sk for sk in tr.untried if _explore(stats, sk)]
        if (tr.untried and len(tr.untried) >= explore_by - tr.starts_used
                and (side, kind) not in tr.untried):
            side, kind = tr.untried[0]
        if (side, kind) in tr.untried:
            tr.untried.remove((side, kind))
        prog, var = progs[side], variables[side]
        params, consts, ystar, P, C = tr.side(side)
        cost_its = None
        if kind == "lifted":
            # the restarts' random points come from the trial's generator too (a
            # xoshiro state drawn from it), so the result stays a function of the seed
            state = tr.rng.integers(0, 2**63, size=4, dtype=np.uint64) | np.uint64(1)
            # the longer runs only where this solver has found a root in the run:
            # where it finds none (Figure 2a at n = 12, 16) they would only double the
            # cost of its fruitless starts
            st = stats.get((side, kind))
            budget_its = LIFTED_STEPS if st is not None and st["roots"] > 0 else max_iter
            cut = max(LIFTED_CUT, CUT_MARGIN * stats.get("root_scale", 0.0))
            problem = tr.lane_problem(side, prog, var)
            if problem is not None:
                # LANES runs at once in the vector unit, each with the step budget of
                # one scalar run (fastmp.kernels.lanes)
                w0 = tr.rng.standard_normal((len(var), lanes.LANES)) * tr.scale[:, None]
                N0 = tr.rng.standard_normal(problem.node_shape)
                w, conv, its, step = lanes.run(problem, w0, N0, lanes.LANES * budget_its,
                                               1e-14, cut, state)
                res = prog.residual(P.copy(), C, ystar, var, w) if conv else np.inf
                cost_its = LANE_STEP_COST * its
                budget_its = its + 1  # a run that did not converge has res = inf
            else:
                w0 = tr.rng.standard_normal(len(var)) * tr.scale
                N0 = prog.node_buffer(P)
                N0[:] = tr.rng.standard_normal(N0.shape)
                w, res, its, step = prog.newton_restarts(P.copy(), C, ystar, var, w0, N0,
                                                         budget_its, 1e-14, cut, tr.scale,
                                                         state)
        elif kind == "lm":
            w0 = tr.rng.standard_normal(len(var)) * tr.scale
            w, res, its, step = prog.levenberg_marquardt(P.copy(), C, ystar, var, w0)
        else:
            w0 = tr.rng.standard_normal(len(var)) * tr.scale
            N0 = prog.node_buffer(P)
            N0[:] = tr.rng.standard_normal(N0.shape)
            budget_its = max_iter
            w, res, its, step = prog.newton(P.copy(), C, ystar, var, w0, N0,
                                            kind == "lifted-full", max_iter, 1e-14,
                                            full=kind == "lifted-full")
        tr.starts_used += 1
        st = stats.setdefault((side, kind), {"starts": 0, "cost": 0.0, "roots": 0})
        st["starts"] += 1
        st["cost"] += start_cost(kind, sizes[(side, kind)],
                                 int(its) if cost_its is None else cost_its)
        # rounding alone leaves a relative residual of about eps |w|^degree at a root
        wmax = float(np.max(np.abs(w))) if np.all(np.isfinite(w)) else np.inf
        floor = 1e-13 * np.exp(min(700.0, (len(prog.steps) + 1) * np.log1p(wmax)))
        # the floor rule is for points where Newton stopped by itself (its steps stalled
        # at rounding level); a Newton run that used up its steps is still moving, and
        # such runaways (|w| ~ 1e7, relative residual 1e7-1e15, a last relative step
        # just under STEP_TOL) had cost ~12 ms each in the arb ladder before failing --
        # 0.37 ms per trial at Figure 2a, n = 8, k = 8
        ran_out = kind != "lm" and its >= budget_its
        if res < CANDIDATE_RES or (step < STEP_TOL and res < floor and not ran_out):
            # the arb tests (~6 ms a candidate) wait for the end of the round
            # (_certify_deferred): the next starts usually find a root the compiled test
            # certifies (Figure 2a, n = 8, k = 8: 2% of the roots need arb, and the lanes
            # find a root in ~97% of starts)
            ok, how = certify_root(prog, params, consts, ystar, var, w, (P, C), ladder=False)
            if ok:
                _matched(tr, stats, st, tr.starts_used - 1, how, kind, side, wmax)
            else:
                tr.near_miss = True
                tr.deferred.append((tr.starts_used - 1, side, kind, w))


def _matched(tr, stats, st, start, how, kind, side, wmax):
    """Record a certified root of trial ``tr`` found by start ``start``."""
    tr.first_match = start
    tr.how = how
    tr.solver = f"{kind} ({side})"
    st["roots"] += 1
    stats["root_scale"] = max(stats.get("root_scale", 0.0), wmax)


def _certify_deferred(tr, progs, variables, stats):
    """The arb tests on the candidates an unmatched trial deferred, in the order found;
    each candidate is tried once."""
    for start, side, kind, w in tr.deferred:
        if tr.first_match >= 0:
            break
        params, consts, ystar, P, C = tr.side(side)
        ok, how = certify_root(progs[side], params, consts, ystar, variables[side], w,
                               (P, C))
        if ok:
            _matched(tr, stats, stats[(side, kind)], start, how, kind, side,
                     float(np.max(np.abs(w))))
    tr.deferred = []


def budget_exhausted(rounds, budget, starts, adaptive, trials):
    """The adaptive budget rule shared by every root search: stop at ``starts`` starts per
    trial, when every trial matched, or once two successive doublings found nothing new
    (one quiet doubling is not enough: Theorem-3.5 column allocations sometimes need 64
    starts after 8) and at least ``MIN_ADAPTIVE_STARTS`` were tried. ``rounds`` lists
    ``{"starts", "matches"}`` after each round."""
    after = rounds[-1]["matches"]
    quiet = (len(rounds) >= 3 and after == rounds[-3]["matches"]
             and budget >= MIN_ADAPTIVE_STARTS)
    return not adaptive or budget >= starts or quiet or after == trials


def starts_curve(first, budget):
    """MP as a function of the starts per trial, ``{1: .., 2: .., 4: .., ...}``, from the
    index of each trial's first certified start (``-1`` for none)."""
    first = np.asarray(first)
    curve = {}
    k = 1
    while k <= budget:
        curve[k] = float(np.mean((first >= 0) & (first < k)))
        k *= 2
    return curve


def run_newton(model, allocation, m, trials, seed, starts=64, adaptive=True, lifted=True,
               max_iter=60, progress=None, trial_offset=0):
    """Per-trial statuses and the budget record of the certified Newton search."""
    sides = model.chain_sides if lifted else model.chain_sides[:1]
    progs = {side: model.chain_program(m, side) for side in sides}
    variables = {side: model.variables(allocation, side) for side in sides}
    var = variables[sides[0]]
    names = model.param_names
    start_scale = np.array([1.0 / np.sqrt(model.fan_in(names[p])) for p in var[:, 0]])
    state = [_Trial(model, progs, seed, trial_offset + t, m, start_scale) for t in range(trials)]
    lsize = {side: lifted_size(progs[side], len(variables[side])) for side in sides}
    solvers = _solvers(sides, lifted, lsize)
    sizes = {(side, kind): (lsize[side] if kind == "lifted-full" else len(variables[side]))
             for side, kind in solvers}
    stats = {}
    lanes_ok = {side: lanes.supported(progs[side], variables[side]) for side in sides}
    for tr in state:
        tr.untried = list(solvers)
        tr.lanes_ok = lanes_ok
    rounds = []
    budget = min(8, starts) if adaptive else starts
    while True:
        for tr in state:
            # the shares are renewed before every trial from all starts so far: one
            # cycle per round spent the whole first round (8 starts of every trial) on
            # the equal-time prior, e.g. 40% of it on the left lifting that finds no
            # root at Figure 2a, n = 8 (k = 8, 300 trials: 6.0 -> 4.5 ms per trial,
            # MP 0.980 -> 0.990; k = 5 and 6 unchanged within noise)
            if tr.first_match >= 0 or tr.starts_used >= budget:
                continue  # nothing to do (and no cycle to compute) for this trial
            cycle = _cycle(solvers, stats, sizes, tr.pick)
            _search(progs, variables, tr, budget, cycle, max_iter, stats, sizes,
                    min(EXPLORE_BY, starts))
            if tr.first_match < 0 and tr.deferred:
                _certify_deferred(tr, progs, variables, stats)
        after = sum(tr.first_match >= 0 for tr in state)
        rounds.append({"starts": budget, "matches": after})
        if progress is not None:
            progress(0)
        if budget_exhausted(rounds, budget, starts, adaptive, trials):
            break
        budget = min(2 * budget, starts)
    if progress is not None:
        progress(trials)
    status = np.full(trials, NO_MATCH, dtype=np.int8)
    for k, tr in enumerate(state):
        if tr.first_match >= 0:
            status[k] = MATCH
        elif tr.near_miss:
            status[k] = AMBIGUOUS
    first = np.array([tr.first_match for tr in state])
    used = budget
    curve = starts_curve(first, used)
    info = {
        "method": "newton",
        "solvers": [f"{kind} ({side})" for side, kind in solvers],
        "max_starts": int(used),
        "rounds": rounds,
        "mp_by_starts": curve,
        "starts_total": int(sum(tr.starts_used for tr in state)),
        "certified_double": int(sum(tr.how == "double" for tr in state)),
        "certified_arb": int(sum(tr.how.startswith("arb") for tr in state)),
        "near_misses": int(np.count_nonzero(status == AMBIGUOUS)),
        "found_by": {f"{kind} ({side})": int(sum(tr.solver == f"{kind} ({side})" for tr in state))
                     for side, kind in solvers},
        # per solver: starts, cost units (start_cost) and certified roots
        "portfolio": {f"{kind} ({side})": dict(stats.get((side, kind),
                                                         {"starts": 0, "cost": 0.0, "roots": 0}))
                      for side, kind in solvers},
    }
    return status, info


def run_theorem35(model, allocation, m, trials, seed, by, progress=None):
    """Constructive solver of Theorem 3.5 (rows or columns), certified per trial."""
    prog = model.chain_program(m)
    var = model.variables(allocation)
    mask = allocation.mask("W")
    solve = theorem35_rows if by == "rows" else theorem35_columns
    status = np.empty(trials, dtype=np.int8)
    how = {"double": 0, "arb": 0, "search": 0}
    for t in range(trials):
        teacher, student, X = model.trial_draws(seed, t, m)
        Y = model.forward(teacher, X)
        Wsol = solve(student["W"], student["B"], student["D"], X, Y, mask)
        w = Wsol[mask]
        params = [student[n] for n in model.param_names]
        ok, kind = certify_root(prog, params, model.chain_constants(X), Y, var, w)
        if not ok:
            # the two linear solves can be too ill-conditioned at large T: fall back to
            # the certified search for this trial
            st, _ = run_newton(model, allocation, m, 1, seed, starts=64, trial_offset=t)
            ok = st[0] == MATCH
            kind = "search"
        status[t] = MATCH if ok else AMBIGUOUS
        if ok:
            how[{"double": "double", "search": "search"}.get(kind, "arb")] += 1
        if progress is not None:
            progress(1)
    info = {"method": f"theorem35 ({by})", "certified_double": how["double"],
            "certified_arb": how["arb"], "found_by_search": how["search"],
            "near_misses": int(np.count_nonzero(status == AMBIGUOUS))}
    return status, info
