"""Benchmarks of the exact linear estimator: assembly, decision, end to end, compile time.

Each ``time_*`` times one operation on a batch of ``TRIALS`` trials; ``setup`` builds
the seeded inputs and warms the JIT, so timings exclude compilation, which
:class:`Compile` tracks on its own (cold, in a fresh process with an empty Numba cache).
Everything runs on one core.
"""
import os

# One core for every kernel (set before numpy / numba are imported by this process).
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

import fastmp  # noqa: E402
from fastmp.estimators.linear import linear_systems  # noqa: E402
from fastmp.generators import budget_allocation, theorem31  # noqa: E402
from fastmp.kernels.decide import decide_batch as _decide_numba  # noqa: E402

try:
    from fastmp._ext._lapack import decide_batch as _decide_cython
except ImportError:  # extension not built in this environment
    _decide_cython = None

#: trials per timed call: large enough to dwarf Python overhead, small enough for CI
TRIALS = 2000
SEED = 12345
BACKENDS = ["numba", "cython"]


def _case(name):
    """``(model, allocation)`` of a benchmark case: one per linear model/parameter pair.

    Allocations are seeded and meet the paper's budgets (Theorem 3.1 decoder rows,
    Theorem 3.2 encoder, Theorem 4.1 FFN layer), so ``m = r / d`` gives square systems.
    """
    if name == "LinearEstimator-W":
        net = fastmp.LinearEstimator(q=8, d=4)
        return net, theorem31(net, m=4, rng=SEED)
    if name == "LRNN-D":
        net = fastmp.LRNN(n=16, T=4, b=2, d=4)
        return net, theorem31(net, m=4, rng=SEED)
    if name == "LRNN-B":
        net = fastmp.LRNN(n=16, T=4, b=2, d=4)
        return net, budget_allocation(net, "B", 4, rng=SEED)
    if name.startswith("LinearFFN-"):
        net = fastmp.LinearFFN((4, 16, 16, 6))
        return net, budget_allocation(net, name.split("-")[1], 4, rng=SEED)
    if name == "ShallowReLU-W2":
        net = fastmp.ShallowReLU(q=4, n=16, d=4)
        return net, theorem31(net, m=4, rng=SEED)
    raise ValueError(name)


CASES = ["LinearEstimator-W", "LRNN-D", "LRNN-B", "LinearFFN-W1", "LinearFFN-W2",
         "LinearFFN-W3", "ShallowReLU-W2"]


def _decider(backend):
    if backend == "numba":
        return _decide_numba
    if _decide_cython is None:
        raise NotImplementedError("fastmp._ext._lapack is not built")  # asv: skipped
    return _decide_cython


class LinearSystems:
    """Draws + assembly of ``TRIALS`` allocated systems (``linear_systems``)."""

    params = [CASES]
    param_names = ["case"]

    def setup(self, case):
        self.net, alloc = _case(case)
        self.name = alloc.linear_param
        self.mask = alloc.mask(self.name)
        self.m = alloc.default_m()
        linear_systems(self.net, self.name, self.mask, self.m, SEED, 0, 2)  # JIT

    def time_linear_systems(self, case):
        linear_systems(self.net, self.name, self.mask, self.m, SEED, 0, TRIALS)


class DecideBatch:
    """Pivoted-QR match decision of ``TRIALS`` pre-assembled systems (``decide_batch``)."""

    params = [CASES, BACKENDS]
    param_names = ["case", "backend"]

    def setup(self, case, backend):
        self.decide = _decider(backend)
        net, alloc = _case(case)
        name = alloc.linear_param
        self.C, self.rhs, self.scale = linear_systems(
            net, name, alloc.mask(name), alloc.default_m(), SEED, 0, TRIALS)
        self.tol = fastmp.Tolerances().as_tuple()
        self.status = np.empty(TRIALS, dtype=np.int8)
        self.decide(self.C[:2], self.rhs[:2], self.scale[:2], *self.tol, self.status[:2])  # JIT

    def time_decide_batch(self, case, backend):
        self.decide(self.C, self.rhs, self.scale, *self.tol, self.status)


class MatchProbability:
    """``fastmp.match_probability`` end to end, ``TRIALS`` trials in one batch."""

    params = [CASES, BACKENDS]
    param_names = ["case", "backend"]

    def setup(self, case, backend):
        _decider(backend)  # skip cython when not built
        self.net, self.alloc = _case(case)
        self.backend = backend
        fastmp.match_probability(self.net, self.alloc, trials=4, seed=SEED, backend=backend)

    def time_match_probability(self, case, backend):
        fastmp.match_probability(self.net, self.alloc, trials=TRIALS, seed=SEED,
                                 backend=self.backend)

    def peakmem_match_probability(self, case, backend):
        fastmp.match_probability(self.net, self.alloc, trials=TRIALS, seed=SEED,
                                 backend=self.backend)


_COLD_SCRIPT = """
import time
t0 = time.perf_counter()
import fastmp
import benchmarks.bench_linear as b
net, alloc = b._case({case!r})
t1 = time.perf_counter()
fastmp.match_probability(net, alloc, trials=4, seed=0)
t2 = time.perf_counter()
fastmp.match_probability(net, alloc, trials=4, seed=0)
t3 = time.perf_counter()
print(repr((t2 - t1) - (t3 - t2)))
"""


class Compile:
    """Cold JIT compile time of everything ``match_probability`` needs for one model:
    first call minus a second (warm) call, in a fresh interpreter whose Numba cache
    (``NUMBA_CACHE_DIR``) is an empty temporary directory."""

    # one case per compiled batch kernel (LRNN-D and LRNN-B share one)
    params = [["LinearEstimator-W", "LRNN-D", "LinearFFN-W2", "ShallowReLU-W2"]]
    param_names = ["case"]
    unit = "seconds"
    timeout = 300
    number = 1
    repeat = 1

    def track_compile_seconds(self, case):
        bench_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with tempfile.TemporaryDirectory(prefix="fastmp-numba-cache-") as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (bench_root, env.get("PYTHONPATH")) if p)
            out = subprocess.run([sys.executable, "-c", _COLD_SCRIPT.format(case=case)],
                                 env=env, check=True, capture_output=True, text=True,
                                 cwd=cache)
        return float(out.stdout.strip().splitlines()[-1])
