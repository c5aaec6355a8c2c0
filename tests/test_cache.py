"""Numba's on-disk cache is used on the second process start (issue 6, cold start).

Runs the same small linear estimate (``fastmp estimate`` through the CLI entry point) in
two fresh interpreters sharing an empty ``NUMBA_CACHE_DIR``. The first must compile and
write the cache (misses, index files appear); the second must load every kernel it runs
from the cache (hits, no misses) -- asserted on Numba's dispatcher statistics, not on
seconds. The wall times of both runs are printed (``pytest -s``) for information.

The built-in linear models normally run ahead-of-time twins of their kernels and compile
nothing at all (``tests/test_linear_aot.py``); ``FASTMP_AOT=0`` sends this estimate
through the Numba kernels, whose cache is what is tested here (it serves every other
path, and every plugin model).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# the kernel every linear estimate of the LinearEstimator runs (its square systems are
# then settled by the compiled C screen, so the Numba QR may not run at all)
ENTRY_KERNELS = ("fastmp.models.linear_estimator._estimator_batch",)

SCRIPT = r"""
import io, json, sys
from fastmp import cli

out = io.StringIO()
status = cli.main(["estimate", "estimator:q=3,d=2", "--mask", "W=110,011",
                   "--trials", "200", "--json"], stdout=out)
from numba.core.dispatcher import Dispatcher

# every Numba function of fastmp this process has: the kernels Python calls directly and
# the ones they call (those are compiled into their callers' cached code and, once
# cached, never compiled or loaded on their own)
stats = {}
for modname, mod in list(sys.modules.items()):
    if not modname.startswith("fastmp") or mod is None:
        continue
    for name, fn in vars(mod).items():
        if isinstance(fn, Dispatcher) and fn.__module__ == modname:
            st = fn.stats
            stats[f"{modname}.{name}"] = {
                "signatures": len(fn.signatures),
                "hits": sum(st.cache_hits.values()),
                "misses": sum(st.cache_misses.values())}
print(json.dumps({"status": status, "result": json.loads(out.getvalue()), "stats": stats}))
"""


def _run(cache_dir):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("NUMBA_DISABLE_JIT", None)
    env["FASTMP_AOT"] = "0"  # the Numba kernels, not their precompiled twins
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(cache_dir))
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), seconds


def test_second_process_loads_compiled_kernels_from_cache(tmp_path):
    cache = tmp_path / "numba_cache"
    cache.mkdir()
    first, t_first = _run(cache)
    index_files = list(cache.rglob("*.nbi"))
    second, t_second = _run(cache)
    print(f"\ncold start, linear estimate: first process {t_first:.2f} s (compiles), "
          f"second {t_second:.2f} s (cache), ratio {t_first / t_second:.1f}")

    assert first["status"] == second["status"] == 0
    # same answer from the cached machine code
    for key in ("mp", "matches", "trials"):
        assert first["result"][key] == second["result"][key], key
    assert index_files, "the first process wrote no Numba cache index (*.nbi)"
    # the entry kernels of the linear estimate: compiled by the first process, loaded
    # from the cache by the second
    for name in ENTRY_KERNELS:
        assert first["stats"][name]["misses"] >= 1, (name, first["stats"][name])
        assert first["stats"][name]["hits"] == 0, (name, first["stats"][name])
        assert second["stats"][name]["hits"] >= 1, (name, second["stats"][name])
    compiled_first = {k for k, st in first["stats"].items() if st["misses"]}
    compiled_second = {k for k, st in second["stats"].items() if st["misses"]}
    assert set(ENTRY_KERNELS) <= compiled_first

    # and the second process compiled nothing at all
    assert compiled_second == set(), compiled_second


def test_cache_is_keyed_by_the_package_sources(tmp_path):
    # Numba keys a cached kernel by its own file only; fastmp keys the whole cache by a
    # digest of all its sources, so a change in a callee's file cannot leave a caller's
    # stale machine code in use
    import shutil

    from fastmp._config import source_digest

    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / "fastmp", pkg, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    before = source_digest(pkg)
    assert before == source_digest(REPO / "fastmp")
    kernel = pkg / "kernels" / "rng.py"
    kernel.write_text(kernel.read_text() + "\n# changed\n")
    assert source_digest(pkg) != before

    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env["FASTMP_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    script = ("import numpy as np, fastmp._config as c, fastmp.kernels.rng as r;"
              "r.trial_state(np.uint64(1), np.uint64(2), 0); print(c.CACHE_DIR)")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    cache = Path(out.stdout.strip().splitlines()[-1])
    assert cache.parent == tmp_path / "cache"
    assert cache.name == "numba-" + source_digest(REPO / "fastmp")[:16]
    assert list(cache.rglob("*.nbi")), "no cache index written under the keyed directory"
