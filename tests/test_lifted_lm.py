"""Levenberg-Marquardt on the lifted system (kernels/lifted_lm.py)."""
import numpy as np
import pytest

import fastmp
from fastmp.estimators.polynomial import certify_root
from fastmp.generators import random_in_rows
from fastmp.kernels import chain
from fastmp.kernels.lifted_lm import lifted_levenberg_marquardt


def _setup(k=8, trial=0):
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    alloc = random_in_rows(net, "W", 16, k, rng=k)
    prog, var = net.chain_program(4), net.variables(alloc)
    params, consts, ystar = net.chain_trial(0, trial, 4)
    return prog, var, params, consts, ystar, prog.pad_params(params), prog.pad_consts(consts)


def _run(prog, var, P, C, ystar, w0, N0, max_iter=200):
    return lifted_levenberg_marquardt(P.copy(), prog.pshape, C, prog.cshape, prog.src_kind,
                                      prog.src_idx, prog.steps_arr, prog.terms_arr, var,
                                      ystar, w0, N0, max_iter, 1e-14)


def test_converges_to_a_planted_root_from_near_it():
    prog, var, params, consts, ystar, P, C = _setup()
    rng = np.random.default_rng(1)
    w_true = rng.standard_normal(len(var)) / np.sqrt(8)
    Pw = P.copy()
    for v, (p, i, j) in enumerate(var):
        Pw[p, i, j] = w_true[v]
    N = prog.node_buffer(Pw)
    chain.forward_nodes(Pw, prog.pshape, C, prog.src_kind, prog.src_idx, prog.steps_arr,
                        prog.ns, N)
    Y = np.empty((prog.d, prog.m))
    chain.output(Pw, prog.pshape, C, prog.cshape, prog.terms_arr, prog.ns, N, prog.d,
                 prog.m, Y)
    # the planted system Y(w) = Y(w_true); nodes start perturbed as well
    N0 = N + 1e-3 * rng.standard_normal(N.shape)
    P0 = P.copy()
    w, res, its, _ = _run(prog, var, P, C, Y, w_true + 1e-3, N0)
    assert res < 1e-12 and its < 40
    np.testing.assert_allclose(w, w_true, atol=1e-9)
    np.testing.assert_array_equal(P, P0)  # the caller's arrays are untouched


def test_finds_certified_roots_from_random_starts_and_is_reproducible():
    found = 0
    for trial in range(8):
        prog, var, params, consts, ystar, P, C = _setup(trial=trial)
        rng = np.random.default_rng(trial)
        for _ in range(24):
            w0 = rng.standard_normal(len(var)) / np.sqrt(8)
            N0 = prog.node_buffer(P)
            N0[:] = rng.standard_normal(N0.shape)
            w, res, its, step = _run(prog, var, P, C, ystar, w0, N0)
            again = _run(prog, var, P, C, ystar, w0, N0)
            np.testing.assert_array_equal(w, again[0])
            assert (res, its, step) == again[1:] or (np.isnan(step) and np.isnan(again[3]))
            if res < 1e-6:
                assert certify_root(prog, params, consts, ystar, var, w, (P, C))[0]
                found += 1
                break
    assert found >= 5  # a root from 22% of starts at this setting


@pytest.mark.parametrize("max_iter", [1, 5, 20])
def test_iteration_count_is_the_solves_attempted(max_iter):
    prog, var, params, consts, ystar, P, C = _setup()
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(len(var)) / np.sqrt(8)
    N0 = prog.node_buffer(P)
    N0[:] = rng.standard_normal(N0.shape)
    _, res, its, _ = lifted_levenberg_marquardt(
        P.copy(), prog.pshape, C, prog.cshape, prog.src_kind, prog.src_idx, prog.steps_arr,
        prog.terms_arr, var, ystar, w0, N0, max_iter, 0.0)
    assert res > 1e-4 and its == max_iter  # far from converged in so few iterations
