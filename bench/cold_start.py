"""Cold start of ``fastmp estimate`` on small linear cases (issue 6, item 4).

    python bench/cold_start.py [--repeat R] [--no-jit]

Each job runs as ``python -m fastmp estimate ...`` in a fresh interpreter. A fresh
``FASTMP_CACHE_DIR`` (an empty temporary directory) is the first process after
installation; a second process on the same directory is every later run. Printed per
job, wall time and the process's CPU time (user + sys, robust on a shared machine):

* ``first`` / ``later``: the default path -- the built-in linear models run the
  ahead-of-time twins of their kernels (``fastmp._ext._linear``), nothing is compiled;
* with ``FASTMP_AOT=0`` (skip with ``--no-jit``): the Numba kernels, which the first
  process compiles and later ones load from the cache -- the situation before the twins.

The bare interpreter start plus ``import fastmp`` is printed as the floor. Target: the
first run after installation under 3 s (wall). Exit status 0 if every job meets it.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 3.0

JOBS = [
    ("estimator W (q=2, d=2)", ["estimator:q=2,d=2", "--mask", "W=11,11"]),
    ("ffn 4-16-16-6 W2, 1e5 trials", ["ffn:4-16-16-6", "--alloc", "budget", "--param", "W2",
                                       "--m", "4", "--trials", "100000"]),
    ("lrnn D (n=8, T=4, thm31)", ["lrnn:n=8,T=4,b=1,d=2", "--alloc", "thm31", "--m", "4"]),
    ("lrnn B (n=8, T=4, budget)", ["lrnn:n=8,T=4,b=1,d=2", "--alloc", "budget", "--param",
                                   "B", "--m", "4"]),
]


def run(argv, cache_dir, aot=True):
    """``(wall seconds, CPU seconds)`` of one fresh interpreter running ``argv``."""
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env["FASTMP_CACHE_DIR"] = str(cache_dir)
    env["FASTMP_AOT"] = "1" if aot else "0"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable] + argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def first_and_later(argv, repeat, aot=True):
    """Medians over ``repeat`` fresh caches of the first and the second process."""
    firsts, laters = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fastmp-cold-") as cache:
            firsts.append(run(argv, cache, aot))
            laters.append(run(argv, cache, aot))
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    return (med(firsts, 0), med(firsts, 1)), (med(laters, 0), med(laters, 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3,
                    help="fresh caches per job (medians are printed; default 3)")
    ap.add_argument("--no-jit", action="store_true",
                    help="skip the FASTMP_AOT=0 runs (each compiles for 7-15 s)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fastmp-cold-") as cache:
        floor = [run(["-c", "import fastmp"], cache) for _ in range(args.repeat)]
    fw = statistics.median(f[0] for f in floor)
    fc = statistics.median(f[1] for f in floor)
    print(f"python {sys.version.split()[0]}; medians of {args.repeat} fresh caches; "
          f"seconds as wall / CPU")
    print(f"floor: interpreter + import fastmp {fw:5.2f} / {fc:5.2f}")
    head = f"{'job':32s} {'first run':>13s} {'later runs':>13s}"
    if not args.no_jit:
        head += f" {'JIT first':>13s} {'JIT later':>13s}"
    print(head + "  target")
    ok = True
    for label, job in JOBS:
        argv_ = ["-m", "fastmp", "estimate"] + job
        first, later = first_and_later(argv_, args.repeat)
        line = f"{label:32s} {first[0]:5.2f} / {first[1]:5.2f} {later[0]:5.2f} / {later[1]:5.2f}"
        if not args.no_jit:
            jf, jl = first_and_later(argv_, 1, aot=False)
            line += f" {jf[0]:5.2f} / {jf[1]:5.2f} {jl[0]:5.2f} / {jl[1]:5.2f}"
        passed = first[0] < TARGET_SECONDS
        ok = ok and passed
        print(f"{line}  {'PASS' if passed else 'FAIL'} (first < {TARGET_SECONDS:.0f} s)")
    if not args.no_jit:
        print("JIT: FASTMP_AOT=0, the Numba kernels (one fresh cache each)")
    print(f"OVERALL: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
