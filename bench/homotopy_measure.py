"""Real parameter homotopy against the portfolio's solvers, Figure 2a setting, n = 8.

    python bench/homotopy_measure.py [--ks 5 6 8] [--trials 30] [--paths 16]
                                     [--portfolio-starts 256] [--miss-paths 64]

For the allocation ``random_in_rows(net, "W", 16, k, rng=k)`` of
``LRNN(n=8, T=4, b=1, d=4)``, m = 4, and each trial (seed 0, the draws of
``fastmp.match_probability``) this runs ``--paths`` random starts (the search's start
law: N(0, 1/fan_in) on the unknowns, N(0, 1) nodes) through

* ``hom-line``:    the homotopy Y(w) = (1 - t) Y(w0) + t Y* on the original system
                   (:mod:`fastmp.kernels.homotopy`, straight line in target space);
* ``hom-deform``:  the same, with the frozen weights also deformed from an independent
                   draw P0 to the trial's (Y(w0; P0) -> Y*);
* ``hom-teacher``: from the teacher's own root: frozen weights deformed from the
                   teacher's to the student's, target fixed at Y* (the first path of a
                   trial straight, later ones through a random bump t (1 - t) R);
* ``hom-lifted``:  the global Newton homotopy F(z) - (1 - t) F(z0) of the full lifted
                   system (Lemma 3.3) from (w0, N0);
* ``lm``, ``lifted``: Levenberg-Marquardt on the original system and eliminated lifted
                   Newton (the portfolio's two workhorses) from the same starts;

and prints per method: certified roots per path, CPU ms per path (``time.thread_time``,
expect noise on a shared machine), certified roots per ms, the implied expected CPU ms
to a trial's first root (ms per path / roots per path), and the trials with a root.
Then ``fastmp.match_probability`` with ``--portfolio-starts`` starts (MP, ms per trial,
its per-solver starts / cost / roots) and, for every trial it did not match,
``--miss-paths`` homotopy paths of each kind: does the homotopy find roots the
portfolio misses (an MP gain)?
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import fastmp  # noqa: E402
from fastmp.estimators.polynomial import (CANDIDATE_RES, STEP_TOL, _Trial,  # noqa: E402
                                          certify_root)
from fastmp.generators import random_in_rows  # noqa: E402
from fastmp.kernels.homotopy import REACHED, run_path  # noqa: E402

HOMOTOPIES = ("hom-line", "hom-deform", "hom-teacher", "hom-lifted")
METHODS = HOMOTOPIES + ("lm", "lifted")


def candidate(prog, w, res, step):
    """The search's rule for sending a converged point to certification (_search)."""
    wmax = float(np.max(np.abs(w))) if np.all(np.isfinite(w)) else np.inf
    floor = 1e-13 * np.exp(min(700.0, (len(prog.steps) + 1) * np.log1p(wmax)))
    return res < CANDIDATE_RES or (step < STEP_TOL and res < floor)


class TrialSystem:
    def __init__(self, net, prog, var, seed, trial, m, scale):
        self.tr = _Trial(net, {"right": prog}, seed, trial, m, scale)
        self.params, self.consts, self.ystar, self.P, self.C = self.tr.side("right")
        teacher, _, _ = net.trial_draws(seed, trial, m)
        self.PT = prog.pad_params([teacher[n] for n in net.param_names])
        self.wT = np.array([self.PT[p, i, j] for p, i, j in var])
        self.pscale = [1 / np.sqrt(net.fan_in(n)) for n in net.param_names]

    def random_params(self, prog, rng):
        return prog.pad_params([rng.standard_normal(q.shape) * s
                                for q, s in zip(self.params, self.pscale)])


def run_one(kind, prog, var, ts, w0, N0, rng, first):
    """``(w, res, step, seconds)`` of one start of ``kind``."""
    P, C, ystar = ts.P, ts.C, ts.ystar
    extra = {}
    if kind == "hom-deform":
        extra["P0"] = ts.random_params(prog, rng)
    elif kind == "hom-teacher":
        w0 = ts.wT
        extra["P0"] = ts.PT
        if not first:
            extra["R"] = ts.random_params(prog, rng)
    elif kind == "hom-lifted":
        extra["lifted"] = True
        extra["N0"] = N0
    t0 = time.thread_time()
    if kind == "lm":
        w, res, _, step = prog.levenberg_marquardt(P.copy(), C, ystar, var, w0)
    elif kind == "lifted":
        w, res, _, step = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 60, 1e-14)
    else:
        w, res, _, step, status, _ = run_path(prog, P, C, ystar, var, w0, **extra)
        if status != REACHED:
            res = np.inf
    return w, res, step, time.thread_time() - t0


def measure(net, alloc, m, trials, paths, seed, kinds, trial_ids=None):
    prog = net.chain_program(m)
    var = net.variables(alloc)
    scale = np.array([1.0 / np.sqrt(net.fan_in(net.param_names[p])) for p in var[:, 0]])
    stats = {k: {"paths": 0, "roots": 0, "sec": 0.0, "trials_hit": 0} for k in kinds}
    for t in (range(trials) if trial_ids is None else trial_ids):
        ts = TrialSystem(net, prog, var, seed, t, m, scale)
        rng = np.random.default_rng([seed, t, 0x40407])
        hit = dict.fromkeys(kinds, False)
        for p in range(paths):
            w0 = rng.standard_normal(len(var)) * scale
            N0 = prog.node_buffer(ts.P)
            N0[:] = rng.standard_normal(N0.shape)
            sub = rng.integers(1 << 62)
            for kind in kinds:
                w, res, step, sec = run_one(kind, prog, var, ts, w0, N0,
                                            np.random.default_rng([sub, 1]), p == 0)
                st = stats[kind]
                st["paths"] += 1
                st["sec"] += sec
                if candidate(prog, w, res, step):
                    ok, _ = certify_root(prog, ts.params, ts.consts, ts.ystar, var, w)
                    if ok:
                        st["roots"] += 1
                        hit[kind] = True
        for kind in kinds:
            stats[kind]["trials_hit"] += hit[kind]
    return stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 6, 8])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--paths", type=int, default=16)
    ap.add_argument("--portfolio-starts", type=int, default=256)
    ap.add_argument("--miss-paths", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    m, r = 4, 16
    # compile everything once
    measure(net, random_in_rows(net, "W", r, 6, rng=6), m, 1, 1, args.seed + 1, METHODS)
    fastmp.match_probability(net, random_in_rows(net, "W", r, 6, rng=6), trials=2)
    print(f"Figure 2a, n = 8, m = {m}, r = {r}; {args.trials} trials x {args.paths} starts "
          f"per method; CPU ms of this thread")
    for k in args.ks:
        alloc = random_in_rows(net, "W", r, k, rng=k)
        stats = measure(net, alloc, m, args.trials, args.paths, args.seed, METHODS)
        print(f"\nk = {k}")
        print(f"  {'method':<12} {'roots/path':>10} {'ms/path':>8} {'roots/ms':>9} "
              f"{'ms/root':>8} {'trials hit':>10}")
        for kind in METHODS:
            st = stats[kind]
            rp = st["roots"] / st["paths"]
            ms = 1e3 * st["sec"] / st["paths"]
            rpm = st["roots"] / (1e3 * st["sec"])
            to_root = f"{ms / rp:8.2f}" if rp > 0 else f"{'inf':>8}"
            print(f"  {kind:<12} {rp:>10.3f} {ms:>8.3f} {rpm:>9.3f} {to_root} "
                  f"{st['trials_hit']:>7}/{args.trials}")
        t0 = time.thread_time()
        res = fastmp.match_probability(net, alloc, trials=args.trials, seed=args.seed,
                                       starts=args.portfolio_starts)
        ms = 1e3 * (time.thread_time() - t0) / args.trials
        print(f"  portfolio (<= {args.portfolio_starts} starts): MP {res.mp:.3f} "
              f"({res.matches}/{res.trials}), {ms:.2f} ms per trial")
        for name, st in res.budget["portfolio"].items():
            print(f"    {name:<22} starts {st['starts']:>5}  roots {st['roots']:>4}  "
                  f"cost units {st['cost']:.3g}")
        missed = [t for t in range(args.trials) if res.status[t] != 1]
        if missed:
            ms_stats = measure(net, alloc, m, None, args.miss_paths, args.seed, HOMOTOPIES,
                               trial_ids=missed)
            found = {kd: f"{v['trials_hit']}/{len(missed)} trials, {v['roots']} roots"
                     for kd, v in ms_stats.items()}
            print(f"  trials the portfolio missed {missed}: {args.miss_paths} paths each: "
                  f"{found}")
        else:
            print("  the portfolio matched every trial: no MP to gain")


if __name__ == "__main__":
    main()
