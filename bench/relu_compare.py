"""Exact decision vs certified pattern search vs the paper's AdaHessian baseline on the
same ReLU W1 trials (Figure 3b setting: q = 6, d = 4, m = 6, r = dm = 24; plus d = 2
and d = 1 settings where matches -- and the baseline's accepts -- are common enough to
count the baseline's false accepts).

    python bench/relu_compare.py [--trials 30] [--seed 0] [--starts 64,256] [--repeat 3]
                                 [--ada-steps 2000] [--ada-restarts 3] [--exact-timeout 60]
                                 [--settings "q,n,d,m,k;..."]

Per (n, k): one random allocation over the first k rows of W1 (Theorem 4.1's budgets),
``trials`` trials (``relu_trial_system(net, mask, m, seed, t)``, the draws of
``match_probability``). For each trial:

* exact   -- ``exact_decide`` (branch and bound with margin LPs); trials over
  ``--exact-timeout`` seconds are left undecided and excluded from the agreement;
* search  -- ``search_decide`` (compiled Newton pattern search, exactly certified
  matches), once per budget in ``--starts``, each row timed ``--repeat`` times (fastest
  kept; the search is deterministic, so every pass gives the same statuses);
* ada     -- ``adahessian_fit`` (MSE < 1e-2 accepted; ``--ada-restarts`` starts of
  ``--ada-steps`` steps).

Prints MP and seconds per trial of each, agreement search vs exact (target >= 99%), the
baseline's accepts that the exact decision rejects, and the time ratio ada / search
(target >= 100x). Single process, single-threaded BLAS; times are the thread's CPU time
(``time.thread_time``), so that other jobs on a shared machine do not enter the ratio.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

# one thread everywhere: CPU time of helper threads would escape ``thread_time``
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

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


def _search_row(systems, starts, repeat):
    """Statuses of the search on ``systems`` and its CPU seconds per trial: the whole row
    is run ``repeat`` times (same seed, same result) and the fastest pass is kept."""
    best, status = np.inf, None
    for _ in range(max(1, repeat)):
        out = []
        t0 = time.thread_time()
        for s in systems:
            out.append(int(search_decide(s, starts=starts)["status"]))
        best = min(best, time.thread_time() - t0)
        assert status is None or out == status, "the search is not deterministic"
        status = out
    return np.array(status), best / len(systems)


def run(trials, seed, starts, ada_steps, ada_restarts, exact_timeout, settings=SETTINGS,
        repeat=3):
    """``starts``: one budget or a sequence of budgets, each run on the same trials."""
    starts = [int(starts)] if np.ndim(starts) == 0 else [int(b) for b in starts]
    signal.signal(signal.SIGALRM, _alarm)
    # compile the kernel outside the timings
    net0 = fastmp.ShallowReLU(6, 8, 4)
    m0 = random_mask((8, 6), 24, np.random.default_rng(0), k=4, row_cap=6, col_cap=4)
    search_decide(relu_trial_system(net0, m0, 6, 0, 0), starts=2)
    search_cols = " | ".join(f"{'MP@' + str(b):>9} {'s/trial':>8} {'agree':>6} {'ada/srch':>9}"
                             for b in starts)
    header = (f"{'q n d m k':>11} | {'exact MP':>9} {'s/trial':>8} {'undec':>5} | "
              f"{'ada MP':>7} {'s/trial':>8} {'ada false':>9} | {search_cols}")
    print(header)
    print("-" * len(header))
    tot = dict(both=0, ada_false=0, ada_acc=0, exact_match=0, t_a=0.0, n=0,
               agree={b: 0 for b in starts}, search_false={b: 0 for b in starts},
               t_s={b: 0.0 for b in starts}, rows=[])
    for q, n, d, m, k in settings:
        net = fastmp.ShallowReLU(q, n, d)
        r = d * m
        mask = random_mask((n, q), r, np.random.default_rng([seed, n, k, d]), k=k,
                           row_cap=min(m, q), col_cap=d)
        systems = [relu_trial_system(net, mask, m, seed, t) for t in range(trials)]
        ex, ad = [], []
        te = ta = 0.0
        for t, s in enumerate(systems):
            t0 = time.thread_time()
            signal.alarm(exact_timeout)
            try:
                ex.append(int(exact_decide(s).status))
            except _Timeout:
                ex.append(-1)
            finally:
                signal.alarm(0)
            te += time.thread_time() - t0
            t0 = time.thread_time()
            acc = False
            for j in range(ada_restarts):
                if adahessian_fit(s, steps=ada_steps, rng=(seed, t, j))["accepted"]:
                    acc = True
                    break
            ad.append(int(acc))
            ta += time.thread_time() - t0
        ex, ad = np.array(ex), np.array(ad)
        dec = ex >= 0
        ada_false = int(np.count_nonzero((ad == 1) & (ex != 1) & dec))
        tot["both"] += int(dec.sum())
        tot["ada_false"] += ada_false
        tot["ada_acc"] += int(np.count_nonzero((ad == 1) & dec))
        tot["exact_match"] += int(np.count_nonzero(ex == 1))
        tot["t_a"] += ta
        tot["n"] += trials
        row = dict(setting=(q, n, d, m, k), exact_mp=np.count_nonzero(ex == 1) / max(1, dec.sum()),
                   exact_s=te / trials, undecided=int((~dec).sum()), ada_mp=float(np.mean(ad == 1)),
                   ada_s=ta / trials, ada_false=ada_false, search={})
        cols = []
        for b in starts:
            se, ts = _search_row(systems, b, repeat)
            agree = int(np.count_nonzero((ex == se) & dec))
            tot["agree"][b] += agree
            tot["search_false"][b] += int(np.count_nonzero((se == 1) & (ex != 1) & dec))
            tot["t_s"][b] += ts * trials
            row["search"][b] = dict(mp=float(np.mean(se == 1)), s=ts, agree=agree,
                                    ratio=(ta / trials) / max(ts, 1e-12))
            cols.append(f"{np.mean(se == 1):9.3f} {ts:8.5f} {agree / max(1, dec.sum()):6.3f} "
                        f"{(ta / trials) / max(ts, 1e-12):8.1f}x")
        tot["rows"].append(row)
        print(f"{q:>2} {n:>2} {d} {m} {k:>2} | {row['exact_mp']:9.3f} {te / trials:8.4f} "
              f"{row['undecided']:5d} | {row['ada_mp']:7.3f} {ta / trials:8.4f} {ada_false:9d} | "
              + " | ".join(cols), flush=True)
    print("-" * len(header))
    print(f"AdaHessian (MSE < 1e-2, {ada_restarts} x {ada_steps} steps): accepted "
          f"{tot['ada_acc']} trials, of which the exact decision rejects {tot['ada_false']}; "
          f"{tot['t_a'] / tot['n']:.4f} s per trial; exact matches: {tot['exact_match']}")
    for b in starts:
        print(f"search, {b} starts: agrees with the exact decision on {tot['agree'][b]}/"
              f"{tot['both']} trials decided by both ({tot['agree'][b] / max(1, tot['both']):.4f}); "
              f"matches the exact decision rejects: {tot['search_false'][b]}; "
              f"{tot['t_s'][b] / tot['n']:.5f} s per trial, AdaHessian / search "
              f"{tot['t_a'] / max(tot['t_s'][b], 1e-12):.1f}x overall, "
              f"{min(r_['search'][b]['ratio'] for r_ in tot['rows']):.1f}x on the slowest row")
    return tot


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--starts", default="64,256",
                   help="search budgets, comma separated, each run on the same trials "
                        "(64 = the default of match_probability)")
    p.add_argument("--repeat", type=int, default=3,
                   help="time each row of the search this many times, keep the fastest")
    p.add_argument("--ada-steps", type=int, default=2000)
    p.add_argument("--ada-restarts", type=int, default=3)
    p.add_argument("--exact-timeout", type=int, default=60)
    p.add_argument("--settings", default=None,
                   help="'q,n,d,m,k;q,n,d,m,k;...' instead of the built-in list")
    a = p.parse_args(argv)
    settings = SETTINGS if a.settings is None else [
        tuple(int(v) for v in item.split(",")) for item in a.settings.split(";")]
    run(a.trials, a.seed, [int(b) for b in a.starts.split(",")], a.ada_steps, a.ada_restarts,
        a.exact_timeout, settings, a.repeat)


if __name__ == "__main__":
    main()
