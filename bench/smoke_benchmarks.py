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
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    mod = importlib.import_module("benchmarks.bench_linear")
    failed = 0
    for cname, cls in inspect.getmembers(mod, inspect.isclass):
        if cls.__module__ != mod.__name__:
            continue
        methods = [n for n in dir(cls) if n.startswith(PREFIXES)]
        if not methods:
            continue
        params = getattr(cls, "params", [[]])
        for combo in itertools.product(*params) if params else [()]:
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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
