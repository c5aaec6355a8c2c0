"""fastmp's C-level API (``csrc/fastmp/_ext/capi.pxd``): its random streams are bit for
bit those of the Numba kernels, its assembly is the Numba assembly, and a Cython module
compiled here against the ``.pxd`` (``examples/capi_linear.pyx``) reproduces
``fastmp.match_probability`` trial by trial.

The bit-identity tests are strict on purpose: if ``fastmp/kernels/rng.py`` changes its
generator (e.g. a faster normal sampler), they fail until ``capi.pyx`` follows.
"""
from pathlib import Path

import numpy as np
import pytest

from cybuild import build_module

import fastmp
from fastmp import _config
from fastmp._ext import capi
from fastmp.estimators.linear import linear_systems
from fastmp.kernels import rng
from fastmp.kernels.linear import assemble_columns, assembly_scratch

REPO = Path(__file__).resolve().parents[1]

SEEDS = [0, 1, 5, 12345, 2**32 + 7, 2**63 - 1]
TRIALS = [0, 1, 2, 999, 2**31 - 1, 2**40 + 3]
STREAMS = [0, 1, 2, 6, 40]


def numba_normals(seed, trial, stream, n):
    s = rng.trial_state(np.uint64(seed), np.uint64(trial), np.uint64(stream))
    out = np.empty(n)
    rng.fill_normal(s, out)
    return out


def test_status_codes_agree_with_python():
    assert capi.MATCH == fastmp.MATCH == _config.MATCH
    assert capi.NO_MATCH == fastmp.NO_MATCH
    assert capi.AMBIGUOUS == fastmp.AMBIGUOUS
    assert capi.NEED_RHS == _config.NEED_RHS
    from fastmp._ext import _lapack
    assert capi.ERROR == -1 and _lapack.NEED_RHS == capi.NEED_RHS


def test_default_tolerances_come_from_python():
    assert capi.default_tolerances() == _config.DEFAULT_TOLERANCES.as_tuple()


@pytest.mark.parametrize("seed", SEEDS)
def test_trial_state_is_bit_identical(seed):
    for trial in TRIALS:
        for stream in STREAMS:
            nb = rng.trial_state(np.uint64(seed), np.uint64(trial), np.uint64(stream))
            np.testing.assert_array_equal(capi.trial_state(seed, trial, stream), nb)


@pytest.mark.parametrize("seed", SEEDS)
def test_uniforms_are_bit_identical(seed):
    for trial in TRIALS[:3]:
        s = rng.trial_state(np.uint64(seed), np.uint64(trial), np.uint64(3))
        nb = np.array([rng.next_uniform(s) for _ in range(257)])
        np.testing.assert_array_equal(capi.uniforms(seed, trial, 3, 257), nb)


@pytest.mark.parametrize("seed", SEEDS)
def test_normals_are_bit_identical(seed):
    # odd and even lengths (an odd length drops the last sine); 20 001 normals cover
    # every branch of log / cos / sin many times over
    for trial, stream, n in [(0, 0, 20001), (7, 3, 1), (2**40 + 3, 40, 2), (5, 1, 999)]:
        c = capi.normals(seed, trial, stream, n)
        nb = numba_normals(seed, trial, stream, n)
        # assert_array_equal, not allclose: the streams must not drift apart by an ulp
        np.testing.assert_array_equal(c.view(np.uint64), nb.view(np.uint64))


@pytest.mark.parametrize("model,m", [(fastmp.LRNN(n=6, T=3, b=2, d=2), 4),
                                     (fastmp.LinearFFN((3, 5, 4)), 3),
                                     (fastmp.LinearEstimator(q=4, d=3), 4)])
def test_draw_segments_matches_model_draws(model, m):
    start, scale = model.segment_arrays(m)
    nseg = scale.size
    for seed, trial in [(0, 0), (3, 17), (2**63 - 1, 2**40 + 3)]:
        out = np.full(int(start[-1]), np.nan)
        capi.draw_segments(seed, trial, start, scale, np.ones(nseg, bool), out)
        ref = np.empty_like(out)
        rng.draw_segments(np.uint64(seed), np.uint64(trial), start, scale,
                          np.ones(nseg, np.bool_), ref)
        np.testing.assert_array_equal(out.view(np.uint64), ref.view(np.uint64))
        teacher, student, X = model.trial_draws(seed, trial, m)
        np.testing.assert_array_equal(out[start[-2]:], X.ravel())
        # segments not needed are left untouched
        need = np.zeros(nseg, bool)
        need[-1] = True
        part = np.full(int(start[-1]), np.nan)
        capi.draw_segments(seed, trial, start, scale, need, part)
        assert np.isnan(part[:start[-2]]).all()
        np.testing.assert_array_equal(part[start[-2]:], X.ravel())


def test_assemble_columns_is_bit_identical():
    g = np.random.default_rng(0)
    nt, d, p, q, m = 3, 4, 5, 6, 3
    Ls = g.standard_normal((nt, d, p))
    Rs = g.standard_normal((nt, q, m))
    mask = g.random((p, q)) < 0.5
    ai, aj = (a.astype(np.int64) for a in np.nonzero(mask))
    ref = np.empty((d * m, ai.size))
    assemble_columns(Ls, Rs, ai, aj, ref, assembly_scratch(Ls, Rs, ai))
    np.testing.assert_array_equal(capi.assemble_columns(Ls, Rs, ai, aj), ref)


# ------------------------------------------------------------- a Cython module using it
@pytest.fixture(scope="module")
def capi_linear(tmp_path_factory):
    return build_module(REPO / "examples" / "capi_linear.pyx",
                        tmp_path_factory.mktemp("capi_build"))


@pytest.mark.parametrize("rows,m,expect", [
    # 2 weights per row against m = 2 samples: maximal (Theorem 3.1), every trial matches
    ([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], 2, fastmp.MATCH),
    # m = 3 > r/d: 2 unknowns per row against 3 equations, no trial matches (Lemma B.4)
    ([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], 3, fastmp.NO_MATCH),
    # uneven rows (3, 1, 2) with m = 2: the row with 1 weight cannot match
    ([[1, 1, 1, 0], [0, 1, 0, 0], [1, 0, 0, 1]], 2, fastmp.NO_MATCH),
])
def test_cython_module_reproduces_match_probability(capi_linear, rows, m, expect):
    net = fastmp.LinearEstimator(q=4, d=3)
    mask = np.array(rows, dtype=bool)
    alloc = fastmp.Allocation(net, {"W": mask})
    trials, seed = 300, 11
    ai, aj = (a.astype(np.int64) for a in np.nonzero(mask))
    status, C, rhs = capi_linear.linear_estimator_trials(4, 3, m, seed, trials, ai, aj)
    # same draws, same assembly: the systems are fastmp's, bit for bit (C) and to
    # rounding (rhs: fastmp's kernel multiplies through BLAS)
    C_ref, rhs_ref, _ = linear_systems(net, "W", mask, m, seed, 0, trials)
    np.testing.assert_array_equal(C, C_ref)
    np.testing.assert_allclose(rhs, rhs_ref, rtol=1e-12, atol=1e-12)
    for backend in ("cython", "numba"):
        res = fastmp.match_probability(net, alloc, m=m, trials=trials, seed=seed,
                                       backend=backend)
        np.testing.assert_array_equal(status, res.status)
    assert (status == expect).all()


def test_functions_are_reachable_by_address():
    """The documented route for C code and Numba: the function pointers in
    ``__pyx_capi__`` (here called through ctypes)."""
    import ctypes

    from numba.extending import get_cython_function_address

    addr = get_cython_function_address("fastmp._ext.capi", "fastmp_trial_state")
    trial_state_c = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                                     ctypes.POINTER(ctypes.c_uint64))(addr)
    addr = get_cython_function_address("fastmp._ext.capi", "fastmp_fill_normal")
    fill_normal_c = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_uint64),
                                     ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)(addr)
    s = (ctypes.c_uint64 * 4)()
    trial_state_c(7, 2**40 + 3, 5, s)
    out = (ctypes.c_double * 11)()
    fill_normal_c(s, out, 11)
    np.testing.assert_array_equal(np.array(out[:]), numba_normals(7, 2**40 + 3, 5, 11))
    assert set(capi.__pyx_capi__) >= {
        "fastmp_trial_state", "fastmp_next_u64", "fastmp_next_uniform", "fastmp_fill_normal",
        "fastmp_draw_segments", "fastmp_assemble_columns", "fastmp_assemble_rhs",
        "fastmp_default_tolerances", "fastmp_decide_work_size", "fastmp_decide"}
