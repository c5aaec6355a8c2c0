"""Single-core speed of fastmp's linear estimator against a plain NumPy loop.

Case: the middle layer ``W2`` of ``LinearFFN(widths=(4, 16, 16, 6))`` (q = 4, n = 16,
d = 6), ``m = 4`` samples, ``r = d m = 24`` learnable weights placed by
``fastmp.generators.budget_allocation(net, "W2", 4, rng=seed)``. fastmp and the NumPy
loop decide the same allocation.

    python bench/linear_speed.py [--trials N] [--seed S] [--numpy-trials K] [--repeat R]

Prints trials/s of ``fastmp.match_probability`` (Numba backend, and the Cython backend
when ``fastmp._ext._lapack`` is importable), trials/s of the NumPy loop, both MP
estimates, the speed ratio, PASS/FAIL against the targets (ratio >= 50x, fastmp >=
20,000 trials/s on one core) and where fastmp's time goes (draws, assembly, decision).
Exit status 0 if every target passes, 1 otherwise.
"""
from __future__ import annotations

import os

# One core: must be set before numpy / numba are imported.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

import fastmp  # noqa: E402
from fastmp._config import DEFAULT_TOLERANCES  # noqa: E402
from fastmp.estimators import linear_aot  # noqa: E402
from fastmp.estimators.linear import CHUNK, _decide_numba, _decide_screened, _Systems  # noqa: E402
from fastmp.generators import budget_allocation, random_in_rows  # noqa: E402
from fastmp.kernels.decide import decide_batch  # noqa: E402
from fastmp.kernels.rng import draw_segments  # noqa: E402

try:
    from fastmp._ext._lapack import decide_batch as decide_batch_cython
except ImportError:  # extension not built in this checkout
    decide_batch_cython = None

WIDTHS = (4, 16, 16, 6)
LAYER = "W2"
M = 4
TARGET_RATIO = 50.0
TARGET_RATE = 20_000.0


@numba.njit(cache=False)
def _draw_only(seed, start, count, seg_start, seg_scale, need):
    """The per-trial random draws of the compiled kernels, nothing else (for the split):
    the segments the first, right-hand-side-free pass draws."""
    buf = np.empty(seg_start[-1])
    acc = 0.0
    for k in range(count):
        draw_segments(seed, np.uint64(start + k), seg_start, seg_scale, need, buf)
        acc += buf[0]
    return acc


# ---------------------------------------------------------------------- NumPy baseline
def numpy_loop(mask, trials, seed, m=M):
    """MP of a single-layer allocation of a LinearFFN, the obvious NumPy way.

    Per trial: teacher and student weights ~ N(0, 1/fan_in), inputs ~ N(0, 1); the
    student's output ``Y = A W2 B`` with ``A = W3``, ``B = W1 X`` is linear in ``W2``,
    ``vec(A P B) = (A (x) B^T) vec(P)`` (row-major vec); keep the allocated columns and
    test consistency of ``C w = rhs`` by ``rank(C) == rank([C | rhs])``.
    Returns the number of matches.
    """
    rng = np.random.default_rng(seed)
    q, n1, n2, d = WIDTHS
    cols = np.flatnonzero(mask.ravel())

    def draw(rows, fan_in):
        return rng.standard_normal((rows, fan_in)) / np.sqrt(fan_in)

    matches = 0
    for _ in range(trials):
        W1t, W2t, W3t = draw(n1, q), draw(n2, n1), draw(d, n2)
        W1, W2, W3 = draw(n1, q), draw(n2, n1), draw(d, n2)
        X = rng.standard_normal((q, m))
        Ystar = W3t @ W2t @ W1t @ X
        A = W3
        B = W1 @ X
        K = np.kron(A, B.T)  # (d*m) x (n2*n1): column i*n1 + j belongs to W2[i, j]
        C = K[:, cols]
        P0 = W2.copy()
        P0[mask] = 0.0  # allocated weights are unknowns, not frozen draws
        rhs = (Ystar - A @ P0 @ B).ravel()
        rank_c = np.linalg.matrix_rank(C)
        rank_aug = np.linalg.matrix_rank(np.column_stack([C, rhs]))
        matches += int(rank_c == rank_aug)
    return matches


# ---------------------------------------------------------------------- helpers
def wilson(k, n, z=1.959963984540054):
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def agree(k1, n1, k2, n2):
    """Two-proportion z statistic (pooled); |z| < 3 counts as statistical agreement."""
    p = (k1 + k2) / (n1 + n2)
    var = p * (1 - p) * (1 / n1 + 1 / n2)
    if var == 0.0:
        return 0.0 if k1 / n1 == k2 / n2 else math.inf
    return (k1 / n1 - k2 / n2) / math.sqrt(var)


#: clock of every timing: "cpu" (this thread's CPU time, the default: everything here
#: runs on one thread, and on a shared machine wall time also counts other processes'
#: turns) or "wall"
CLOCK = {"cpu": time.thread_time, "wall": time.perf_counter}
clock = CLOCK["cpu"]


def timed(fn, repeat):
    """Run ``fn`` ``repeat`` times; return (fastest seconds, last result). The minimum
    is the run least disturbed by other processes."""
    times, out = [], None
    for _ in range(repeat):
        t0 = clock()
        out = fn()
        times.append(clock() - t0)
    return min(times), out


def flag(ok):
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100_000, help="fastmp trials per timing run")
    ap.add_argument("--seed", type=int, default=0, help="seed of the allocation and the trials")
    ap.add_argument("--numpy-trials", type=int, default=2000, help="trials of the NumPy loop")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs (the fastest is reported)")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="cpu",
                    help="thread CPU time (default; robust on a shared machine) or wall time")
    args = ap.parse_args(argv)
    N, S = args.trials, args.seed
    global clock
    clock = CLOCK[args.clock]

    net = fastmp.LinearFFN(WIDTHS)
    alloc = budget_allocation(net, LAYER, M, rng=S)
    mask = alloc.mask(LAYER)
    tol = fastmp.Tolerances().as_tuple()
    backends = ["numba"] + (["cython"] if decide_batch_cython is not None else [])

    print(f"fastmp {fastmp.__version__} | numpy {np.__version__} | numba {numba.__version__}"
          f" | python {platform.python_version()} | {platform.machine()}")
    print(f"threads: NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}, "
          f"numba.get_num_threads()={numba.get_num_threads()}, OMP/OPENBLAS/MKL=1")
    print(f"case: {net!r}, learn {LAYER}, m={M}, r={alloc.r} "
          f"(budget_allocation rng={S}); rows used {int((alloc.row_counts(LAYER) > 0).sum())}, "
          f"max per row {alloc.row_counts(LAYER).max()}, max per column {alloc.col_counts(LAYER).max()}")
    print(f"clock: {args.clock} ({'thread CPU time' if args.clock == 'cpu' else 'wall time'}), "
          f"fastest of --repeat runs")
    print(f"cython backend: {'available' if decide_batch_cython else 'not importable (fastmp._ext._lapack not built)'}")
    print()

    # -- warm-up: compile every kernel on tiny inputs, outside the timings
    t0 = time.perf_counter()
    for be in backends:
        fastmp.match_probability(net, alloc, trials=8, seed=S, backend=be)
    seg_start, seg_scale = net.segment_arrays(M)
    need = net.needed_segments(LAYER, M, with_rhs=False)
    _draw_only(np.uint64(S), 0, 2, seg_start, seg_scale, need)
    print(f"warm-up (JIT compile or cache load): {time.perf_counter() - t0:.2f} s, excluded")

    # -- (a) fastmp end to end
    rates, results = {}, {}
    for be in backends:
        sec, res = timed(lambda be=be: fastmp.match_probability(net, alloc, trials=N, seed=S,
                                                                 backend=be), args.repeat)
        rates[be], results[be] = N / sec, res
        print(f"(a) fastmp.match_probability backend={be:6s}: {N} trials in {sec:.3f} s "
              f"= {N / sec:10,.0f} trials/s  ({1e6 * sec / N:.1f} us/trial, best of {args.repeat})")

    # -- (b) NumPy loop
    K = args.numpy_trials
    numpy_loop(mask, 20, S + 1)  # touch LAPACK once
    sec_np, k_np = timed(lambda: numpy_loop(mask, K, S), args.repeat)
    rate_np = K / sec_np
    print(f"(b) NumPy loop (kron + matrix_rank)       : {K} trials in {sec_np:.3f} s "
          f"= {rate_np:10,.0f} trials/s  ({1e6 * sec_np / K:.1f} us/trial, best of {args.repeat})")
    print()

    # -- (c) estimates, ratio, targets
    res = results["numba"]
    lo, hi = wilson(k_np, K)
    print(f"MP fastmp (numba) : {res.mp:.5f}  [{res.ci_low:.5f}, {res.ci_high:.5f}]  "
          f"{res.matches}/{res.trials}, ambiguous {int(np.sum(res.status == fastmp.AMBIGUOUS))}, "
          f"re-decided exactly {getattr(res, 'refined', 'n/a')}")
    if "cython" in results:
        rc = results["cython"]
        same = bool(np.array_equal(rc.status, res.status))
        print(f"MP fastmp (cython): {rc.mp:.5f}  [{rc.ci_low:.5f}, {rc.ci_high:.5f}]  "
              f"{rc.matches}/{rc.trials}; per-trial statuses identical to numba: {same}")
    print(f"MP NumPy loop     : {k_np / K:.5f}  [{lo:.5f}, {hi:.5f}]  {k_np}/{K}")
    z = agree(res.matches, res.trials, k_np, K)
    print(f"agreement: two-proportion z = {z:+.2f} -> {'agree' if abs(z) < 3 else 'DISAGREE'} (|z| < 3)")
    ok = abs(z) < 3
    # Linear MPs are 0 or 1 for generic draws; check the NumPy loop can say "no" too, on
    # an over-budget allocation (rows with 5 > m weights: Theorem 4.1 => MP = 0).
    over = random_in_rows(net, LAYER, alloc.r, 5, rng=S, row_cap=5)
    r_over = fastmp.match_probability(net, over, trials=2000, seed=S)
    k_over = numpy_loop(over.mask(LAYER), 200, S)
    ok_over = r_over.matches == 0 and k_over == 0
    print(f"sanity, over-budget allocation (5 rows x <=5, MP = 0 by Thm 4.1): fastmp "
          f"{r_over.matches}/2000, NumPy {k_over}/200 -> {flag(ok_over)}")
    ok = ok and ok_over
    print()
    for be in backends:
        ratio = rates[be] / rate_np
        ok_ratio, ok_rate = ratio >= TARGET_RATIO, rates[be] >= TARGET_RATE
        if be == "numba":
            ok = ok and ok_ratio and ok_rate
            print(f"[{be}] speed ratio fastmp/NumPy = {ratio:6.1f}x  (target >= {TARGET_RATIO:.0f}x): {flag(ok_ratio)}")
            print(f"[{be}] fastmp rate = {rates[be]:,.0f} trials/s  (target >= {TARGET_RATE:,.0f}): {flag(ok_rate)}")
        else:
            # the reference backend: LAPACK's dgeqp3 on every trial, no screen; the
            # targets are the default backend's
            print(f"[{be}] speed ratio fastmp/NumPy = {ratio:6.1f}x  (reference backend, LAPACK on every trial)")
            print(f"[{be}] fastmp rate = {rates[be]:,.0f} trials/s")
    print()

    # -- time split: draws | assembly | decision, over the same N trials in the chunks
    # the estimator uses; each part is timed `repeat` times and the fastest is kept
    status = np.empty(min(CHUNK, N), dtype=np.int8)
    # the kernels match_probability runs: the ahead-of-time twins where available
    aot = linear_aot.available(net)
    systems = _Systems(net, LAYER, mask, M, aot)
    decide_rest = linear_aot.decide_batch() if aot else _decide_numba
    parts = ["draw", "sys"] + [f"dec_{be}" for be in backends]
    best = dict.fromkeys(parts, math.inf)
    for _ in range(args.repeat):
        acc = dict.fromkeys(parts, 0.0)
        for start in range(0, N, CHUNK):
            count = min(CHUNK, N - start)
            t0 = clock()
            _draw_only(np.uint64(S), start, count, seg_start, seg_scale, need)
            t1 = clock()
            C, rhs, scale = systems(S, np.arange(start, start + count), with_rhs=False, reuse=True)
            t2 = clock()
            _decide_screened(C, rhs, scale, tol, status[:count], DEFAULT_TOLERANCES.screen,
                             decide_rest)
            t3 = clock()
            acc["draw"] += t1 - t0
            acc["sys"] += t2 - t1
            acc["dec_numba"] += t3 - t2
            if decide_batch_cython is not None:
                t0 = clock()
                decide_batch_cython(C, rhs, scale, *tol, status[:count])
                acc["dec_cython"] += clock() - t0
        best = {k: min(best[k], acc[k]) for k in parts}
    t_draw, t_sys = best["draw"], best["sys"]
    t_dec = {be: best[f"dec_{be}"] for be in backends}
    total = t_sys + t_dec["numba"]
    us = 1e6 / N
    print(f"time split over {N} trials (chunks of {CHUNK}, numba decision, best of {args.repeat}):")
    print(f"  linear_systems (draw + assemble): {t_sys * us:6.2f} us/trial  {100 * t_sys / total:5.1f}%")
    print(f"    of which random draws (Numba) : {t_draw * us:6.2f} us/trial  {100 * t_draw / total:5.1f}%"
          f"  ({int(sum(seg_start[k + 1] - seg_start[k] for k in range(len(need)) if need[k]))} "
          f"of {int(seg_start[-1])} normals/trial: the teacher is drawn only for "
          f"rank-deficient systems)")
    print(f"    of which products + assembly  : {(t_sys - t_draw) * us:6.2f} us/trial  "
          f"{100 * (t_sys - t_draw) / total:5.1f}%")
    print(f"  decision (C screen + numba QR)  : {t_dec['numba'] * us:6.2f} us/trial  "
          f"{100 * t_dec['numba'] / total:5.1f}%")
    if decide_batch_cython is not None:
        print(f"  decide_batch cython (for comp.) : {t_dec['cython'] * us:6.2f} us/trial")
    overhead = 1.0 / rates["numba"] - total / N
    print(f"  match_probability overhead      : {overhead * 1e6:6.2f} us/trial (end-to-end minus the parts)")
    print()
    print(f"OVERALL: {flag(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
