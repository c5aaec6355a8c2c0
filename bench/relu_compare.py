"""Exact decision vs certified pattern search vs the paper's AdaHessian baseline on the
same ReLU W1 trials (Figure 3b setting: q = 6, d = 4, m = 6, r = dm = 24; plus d = 2
and d = 1 settings where matches -- and the baseline's accepts -- are common enough to
count the baseline's false accepts).

    python bench/relu_compare.py [--trials 30] [--seed 0] [--starts 256]
                                 [--ada-steps 2000] [--ada-restarts 3] [--exact-timeout 60]
                                 [--settings "q,n,d,m,k;..."]

Per (n, k): one random allocation over the first k rows of W1 (Theorem 4.1's budgets),
``trials`` trials (``relu_trial_system(net, mask, m, seed, t)``, the draws of
``match_probability``). For each trial:

* exact   -- ``exact_decide`` (branch and bound with margin LPs); trials over
  ``--exact-timeout`` seconds are left undecided and excluded from the agreement;
* search  -- ``search_decide`` (compiled Newton pattern search, exactly certified
  matches, budget ``--starts``);
* ada     -- ``adahessian_fit`` (MSE < 1e-2 accepted; ``--ada-restarts`` starts of
  ``--ada-steps`` steps).

Prints MP and seconds per trial of each, agreement search vs exact (target >= 99%), the
baseline's accepts that the exact decision rejects, and the time ratio ada / search
(target >= 100x). Single process; time is wall clock on whatever else runs.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastmp  # noqa: E402
from fastmp.baselines.adahessian import adahessian_fit  # noqa: E402
from fastmp.estimators.relu import exact_decide, relu_trial_system  # noqa: E402
from fastmp.estimators.relu_search import search_decide  # noqa: E402
from fastmp.generators import random_mask  # noqa: E402

SETTINGS = [  # (q, n, d, m, k)
    (6, 8, 4, 6, 4), (6, 8, 4, 6, 5), (6, 8, 4, 6, 6), (6, 12, 4, 6, 6),
    (6, 10, 2, 4, 4), (6, 10, 2, 4, 5), (6, 8, 1, 4, 1), (6, 8, 1, 4, 4),
]


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout()


def run(trials, seed, starts, ada_steps, ada_restarts, exact_timeout, settings=SETTINGS):
    signal.signal(signal.SIGALRM, _alarm)
    # compile the kernel outside the timings
    net0 = fastmp.ShallowReLU(6, 8, 4)
    m0 = random_mask((8, 6), 24, np.random.default_rng(0), k=4, row_cap=6, col_cap=4)
    search_decide(relu_trial_system(net0, m0, 6, 0, 0), starts=2)
    header = (f"{'q n d m k':>11} | {'exact MP':>9} {'s/trial':>8} {'undec':>5} | "
              f"{'search MP':>9} {'s/trial':>8} | {'ada MP':>7} {'s/trial':>8} | "
              f"{'agree':>6} {'ada false':>9} {'ada/search':>10}")
    print(header)
    print("-" * len(header))
    tot = dict(agree=0, both=0, ada_false=0, ada_acc=0, exact_match=0, t_s=0.0, t_a=0.0,
               n=0, search_false=0)
    for q, n, d, m, k in settings:
        net = fastmp.ShallowReLU(q, n, d)
        r = d * m
        mask = random_mask((n, q), r, np.random.default_rng([seed, n, k, d]), k=k,
                           row_cap=min(m, q), col_cap=d)
        ex, se, ad = [], [], []
        te = ts = ta = 0.0
        for t in range(trials):
            s = relu_trial_system(net, mask, m, seed, t)
            t0 = time.perf_counter()
            signal.alarm(exact_timeout)
            try:
                ex.append(int(exact_decide(s).status))
            except _Timeout:
                ex.append(-1)
            finally:
                signal.alarm(0)
            te += time.perf_counter() - t0
            t0 = time.perf_counter()
            se.append(int(search_decide(s, starts=starts)["status"]))
            ts += time.perf_counter() - t0
            t0 = time.perf_counter()
            acc = False
            for j in range(ada_restarts):
                if adahessian_fit(s, steps=ada_steps, rng=(seed, t, j))["accepted"]:
                    acc = True
                    break
            ad.append(int(acc))
            ta += time.perf_counter() - t0
        ex, se, ad = map(np.array, (ex, se, ad))
        dec = ex >= 0
        agree = int(np.count_nonzero((ex == se) & dec))
        ada_false = int(np.count_nonzero((ad == 1) & (ex != 1) & dec))
        tot["agree"] += agree
        tot["both"] += int(dec.sum())
        tot["ada_false"] += ada_false
        tot["ada_acc"] += int(np.count_nonzero((ad == 1) & dec))
        tot["exact_match"] += int(np.count_nonzero(ex == 1))
        tot["search_false"] += int(np.count_nonzero((se == 1) & (ex != 1) & dec))
        tot["t_s"] += ts
        tot["t_a"] += ta
        tot["n"] += trials
        mp_e = np.count_nonzero(ex == 1) / max(1, dec.sum())
        print(f"{q:>2} {n:>2} {d} {m} {k:>2} | {mp_e:9.3f} {te / trials:8.4f} "
              f"{int((~dec).sum()):5d} | {np.mean(se == 1):9.3f} {ts / trials:8.4f} | "
              f"{np.mean(ad == 1):7.3f} {ta / trials:8.4f} | "
              f"{agree / max(1, dec.sum()):6.3f} {ada_false:9d} {ta / max(ts, 1e-12):9.1f}x",
              flush=True)
    print("-" * len(header))
    print(f"search vs exact: agree on {tot['agree']}/{tot['both']} trials decided by both "
          f"({tot['agree'] / max(1, tot['both']):.4f}); search matches the exact decision "
          f"rejects: {tot['search_false']}; exact matches: {tot['exact_match']}")
    print(f"AdaHessian (MSE < 1e-2, {ada_restarts} x {ada_steps} steps): accepted "
          f"{tot['ada_acc']} trials, of which the exact decision rejects {tot['ada_false']}")
    print(f"time per trial: search {tot['t_s'] / tot['n']:.4f} s, AdaHessian "
          f"{tot['t_a'] / tot['n']:.4f} s, ratio {tot['t_a'] / max(tot['t_s'], 1e-12):.1f}x "
          f"(starts = {starts})")
    return tot


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--starts", type=int, default=256)
    p.add_argument("--ada-steps", type=int, default=2000)
    p.add_argument("--ada-restarts", type=int, default=3)
    p.add_argument("--exact-timeout", type=int, default=60)
    p.add_argument("--settings", default=None,
                   help="'q,n,d,m,k;q,n,d,m,k;...' instead of the built-in list")
    a = p.parse_args(argv)
    settings = SETTINGS if a.settings is None else [
        tuple(int(v) for v in item.split(",")) for item in a.settings.split(";")]
    run(a.trials, a.seed, a.starts, a.ada_steps, a.ada_restarts, a.exact_timeout, settings)


if __name__ == "__main__":
    main()
