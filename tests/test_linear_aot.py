"""The ahead-of-time twins of the linear path (``fastmp._ext._linear``, issue 6 cold
start) equal the Numba kernels bit for bit: same systems, same decisions, same statuses
trial by trial -- and a fresh process estimating a linear allocation compiles nothing.

The comparisons are strict on purpose: a change of a Numba kernel (``fastmp/models/*``,
``fastmp/kernels/linear.py``, ``fastmp/kernels/decide.py``) without its twin in
``csrc/fastmp/_ext/_linear.pyx`` fails here instead of changing results silently.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmp
from fastmp import _config
from fastmp.estimators import linear as nb
from fastmp.estimators import linear_aot as aot
from fastmp.generators import budget_allocation
from fastmp.kernels.decide import decide_batch as decide_numba

pytest.importorskip("fastmp._ext._linear")
from fastmp._ext import _linear  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint64)


def _cases():
    rng = np.random.default_rng(20240601)
    out = []
    est = fastmp.LinearEstimator(q=4, d=3)
    out += [(est, "W", m) for m in (1, 2, 3, 5)]
    for widths in [(4, 16, 16, 6), (3, 5, 4), (2, 3), (2, 4, 4, 4, 3)]:
        net = fastmp.LinearFFN(widths)
        out += [(net, name, m) for name in net.param_names for m in (1, 2, 3)]
    for n, T, b, d in [(8, 4, 1, 2), (6, 2, 2, 3), (5, 1, 2, 2), (4, 2, 1, 6)]:
        net = fastmp.LRNN(n=n, T=T, b=b, d=d)
        out += [(net, name, m) for name in ("B", "D") for m in (1, 2, 4)]
    relu = fastmp.ShallowReLU(q=3, n=5, d=2)
    out += [(relu, "W2", m) for m in (1, 2, 3)]
    cases = []
    for net, name, m in out:
        mask = rng.random(net.param_shapes[name]) < 0.55
        mask.flat[rng.integers(mask.size)] = True
        cases.append(pytest.param(net, name, mask, m, id=f"{net!r}-{name}-m{m}"))
    return cases


CASES = _cases()


@pytest.mark.parametrize("net,name,mask,m", CASES)
def test_twin_kernels_assemble_the_same_bits(net, name, mask, m):
    # m = 1 and single-row factors take Numba's gemv / dot branches of np.dot
    assert aot.twin_kernel(net) is not None
    for with_rhs in (True, False):
        ref = nb.linear_systems(net, name, mask, m, 7, 3, 40, with_rhs=with_rhs)
        got = aot.linear_systems(net, name, mask, m, 7, 3, 40, with_rhs=with_rhs)
        for label, a, b in zip(("C", "rhs", "scale"), ref, got):
            np.testing.assert_array_equal(_bits(b), _bits(a), err_msg=f"{label}, with_rhs={with_rhs}")
    trials = np.array([0, 5, 2**33 + 1, 12], dtype=np.int64)
    ref = nb.linear_systems(net, name, mask, m, 2**63 - 1, 0, 0, trials=trials)
    got = aot.linear_systems(net, name, mask, m, 2**63 - 1, 0, 0, trials=trials)
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(_bits(b), _bits(a))


@pytest.mark.parametrize("net,name,mask,m", CASES)
def test_twin_run_linear_gives_the_numba_statuses(net, name, mask, m):
    alloc = fastmp.Allocation(net, {name: mask})
    for batch in (64, 4096):
        ref = nb.run_linear(net, alloc, m, 300, 11, backend="numba", batch_size=batch, aot=False)
        got = aot.run_linear(net, alloc, m, 300, 11, batch_size=batch)
        np.testing.assert_array_equal(got[0], ref[0])
        assert got[1] == ref[1]


def _systems(rng, B, M, N, rank, tail):
    """B systems M x N of the given rank, the last pivot ratio of size ``tail``, and
    right-hand sides in the range (even rows) or not (odd rows)."""
    C = np.empty((B, M, N))
    rhs = np.empty((B, M))
    for b in range(B):
        U, _ = np.linalg.qr(rng.standard_normal((M, M)))
        V, _ = np.linalg.qr(rng.standard_normal((N, N)))
        s = np.zeros(min(M, N))
        s[:rank] = np.geomspace(1.0, tail, rank) if rank else []
        C[b] = (U[:, :s.size] * s) @ V[:, :s.size].T
        rhs[b] = C[b] @ rng.standard_normal(N) if b % 2 == 0 else rng.standard_normal(M)
    return C, rhs


@pytest.mark.parametrize("M,N,rank,tail", [
    (6, 6, 6, 1e-2), (6, 6, 6, 1e-9), (6, 6, 6, 1e-12), (6, 6, 5, 1e-3), (8, 8, 3, 1e-13),
    (9, 6, 6, 1e-3), (9, 6, 4, 1e-12), (5, 8, 5, 1e-6), (5, 8, 3, 1e-2), (1, 1, 1, 1.0),
    (4, 4, 0, 1.0),
])
def test_twin_decision_equals_the_numba_decision(M, N, rank, tail):
    rng = np.random.default_rng(M * 100 + N * 10 + rank)
    C, rhs = _systems(rng, 60, M, N, rank, tail)
    scale = np.abs(rng.standard_normal(60)) + 0.5
    scale[::7] = -1.0  # right-hand side "not drawn"
    tol = _config.DEFAULT_TOLERANCES.as_tuple()
    for screen in (0.0, 1e-8, 1e-3):
        ref = np.empty(60, dtype=np.int8)
        got = np.empty(60, dtype=np.int8)
        C0, r0 = C.copy(), rhs.copy()
        decide_numba(C, rhs, scale, *tol, ref, screen)
        _linear.decide_batch(C, rhs, scale, *tol, got, screen)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(C, C0)  # inputs untouched
        np.testing.assert_array_equal(rhs, r0)


def test_decision_cases_cover_every_status():
    tol = _config.DEFAULT_TOLERANCES.as_tuple()
    seen = set()
    for M, N, rank, tail in [(6, 6, 6, 1e-2), (9, 6, 6, 1e-3), (6, 6, 6, 1e-12), (8, 8, 3, 1e-13)]:
        C, rhs = _systems(np.random.default_rng(M * 100 + N * 10 + rank), 60, M, N, rank, tail)
        scale = np.ones(60)
        scale[::7] = -1.0
        out = np.empty(60, dtype=np.int8)
        _linear.decide_batch(C, rhs, scale, *tol, out, 0.0)
        seen |= set(out.tolist())
    assert seen == {fastmp.MATCH, fastmp.NO_MATCH, fastmp.AMBIGUOUS, _config.NEED_RHS}


def test_match_probability_takes_the_twins_for_builtin_linear_models():
    net = fastmp.LinearFFN((4, 16, 16, 6))
    alloc = budget_allocation(net, "W2", 4, rng=3)
    assert aot.available(net) and not aot.available(net, backend="cython")
    res = fastmp.match_probability(net, alloc, trials=500, seed=4)
    ref, refined = nb.run_linear(net, alloc, 4, 500, 4, backend="numba", aot=False)
    np.testing.assert_array_equal(res.status, ref)
    assert res.backend == "numba"


def test_models_without_a_twin_take_the_numba_path():
    class Custom(fastmp.LinearEstimator):
        def _linear_kernel(self):  # a user's own kernel: no twin
            from fastmp.models.linear_estimator import _estimator_batch
            kernel = _estimator_batch

            def wrapped(*args):
                return kernel(*args)
            return wrapped, np.array([self.q, self.d], dtype=np.int64)

    assert aot.twin_kernel(Custom(q=3, d=2)) is None
    assert not aot.available(Custom(q=3, d=2))


# ----------------------------------------------------------------------- cold start
COLD = r"""
import io, json, sys
from fastmp import cli
out = io.StringIO()
status = cli.main(sys.argv[1:] + ["--json"], stdout=out)
from numba.core.dispatcher import Dispatcher
compiled = sorted(f"{name}.{attr}" for name, mod in list(sys.modules.items())
                  if name.startswith("fastmp") and mod is not None
                  for attr, fn in vars(mod).items()
                  if isinstance(fn, Dispatcher) and fn.__module__ == name and fn.signatures)
print(json.dumps({"status": status, "mp": json.loads(out.getvalue())["mp"],
                  "compiled": compiled}))
"""


def _fresh(tmp_path, args, aot_on):
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env["FASTMP_CACHE_DIR"] = str(tmp_path / ("cache-aot" if aot_on else "cache-jit"))
    env["FASTMP_AOT"] = "1" if aot_on else "0"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", COLD] + args, env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args,check_jit", [
    (["estimate", "estimator:q=2,d=2", "--mask", "W=11,11", "--trials", "300"], True),
    (["estimate", "ffn:4-16-16-6", "--alloc", "budget", "--param", "W2", "--m", "4",
      "--trials", "2000"], False),  # (its statuses: test_match_probability_takes_...)
])
def test_fresh_process_compiles_no_numba_kernel(tmp_path, args, check_jit):
    # the first process after installation: empty cache, and nothing to compile
    first = _fresh(tmp_path, args, aot_on=True)
    assert first["status"] == 0
    assert first["compiled"] == [], first["compiled"]
    if not check_jit:
        return
    # the Numba kernels (FASTMP_AOT=0) compile and give the same estimate
    jit = _fresh(tmp_path, args, aot_on=False)
    assert jit["compiled"], "FASTMP_AOT=0 should run the Numba kernels"
    assert jit["mp"] == first["mp"]
