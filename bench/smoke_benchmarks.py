"""Run every asv benchmark of ``bench/benchmarks`` once, without asv (a smoke test).

    PYTHONPATH=. python bench/smoke_benchmarks.py [--skip-compile]

Uses the ``fastmp`` importable from the current environment (asv itself benchmarks
committed revisions in its own environments). Prints one line per benchmark and
parameter combination; exits 1 if any raised (skips, i.e. ``NotImplementedError``
from ``setup``, are reported and do not fail).
"""
import argparse
import importlib
import inspect
import itertools
import os
import sys
import time
import traceback

PREFIXES = ("time_", "peakmem_", "track_", "mem_", "timeraw_")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-compile", action="store_true", help="skip track_compile_seconds")
    ap.add_argument("--modules", default="bench_linear,bench_polynomial,bench_relu",
                    help="benchmark modules of bench/benchmarks to run (comma-separated)")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    failed = 0
    for name in args.modules.split(","):
        failed += _run_module(importlib.import_module(f"benchmarks.{name}"), args)
    return 1 if failed else 0


def _run_module(mod, args):
    """Call every benchmark of ``mod`` once; returns the number that failed."""
    failed = 0
    for cname, cls in inspect.getmembers(mod, inspect.isclass):
        if cls.__module__ != mod.__name__:
            continue
        methods = [n for n in dir(cls) if n.startswith(PREFIXES)]
        if not methods:
            continue
        # no params: one call without arguments (product() yields one empty tuple)
        params = getattr(cls, "params", [])
        for combo in itertools.product(*params):
            for meth in methods:
                if args.skip_compile and meth == "track_compile_seconds":
                    continue
                obj = cls()
                label = f"{cname}.{meth}{combo}"
                try:
                    if hasattr(obj, "setup"):
                        obj.setup(*combo)
                except NotImplementedError as exc:
                    print(f"SKIP {label}: {exc}")
                    continue
                try:
                    t0 = time.perf_counter()
                    out = getattr(obj, meth)(*combo)
                    dt = time.perf_counter() - t0
                    extra = f" -> {out:.3f}" if isinstance(out, float) else ""
                    print(f"ok   {label}: {dt * 1e3:8.1f} ms{extra}")
                except Exception:
                    failed += 1
                    print(f"FAIL {label}")
                    traceback.print_exc()
    return failed


if __name__ == "__main__":
    sys.exit(main())
