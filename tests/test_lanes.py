"""The lane kernel: eliminated lifted Newton with restarts, eight runs in SIMD lanes
(fastmp.kernels.lanes, csrc/fastmp/_ext/lane_newton.h)."""
import numpy as np
import pytest

import fastmp
from fastmp.estimators.polynomial import certify_root
from fastmp.generators import random_in_rows
from fastmp.kernels import chain, lanes
from fastmp.kernels.rng import trial_state

pytestmark = pytest.mark.skipif(lanes.lane_newton is None, reason="extension not built")


def _setting(seed, k=8, n=8):
    net = fastmp.LRNN(n=n, T=n // 2, b=1, d=4)
    m = n // 2
    alloc = random_in_rows(net, "W", 4 * m, k, rng=k)
    prog, var = net.chain_program(m), net.variables(alloc)
    params, consts, ystar = net.chain_trial(seed, 0, m)
    P, C = prog.pad_params(params), prog.pad_consts(consts)
    wscale = np.full(len(var), n ** -0.5)
    problem = lanes.Problem(prog, P, C, var, ystar, wscale)
    return net, alloc, prog, var, params, consts, ystar, P, C, wscale, problem


def _starts(problem, var, wscale, seed):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((len(var), lanes.LANES)) * wscale[:, None]
    N0 = rng.standard_normal(problem.node_shape)
    return w0, N0


def _planted(seed):
    """The student's own weights as a planted root (targets = its own outputs) and, per
    lane, a start 1e-7 away from it with the root's nodes."""
    net, alloc, prog, var, params, consts, _, P, C, wscale, _ = _setting(seed)
    w_true = np.array([params[p][i, j] for p, i, j in var])
    N = prog.node_buffer(P)
    chain.forward_nodes(P, prog.pshape, C, prog.src_kind, prog.src_idx, prog.steps_arr,
                        prog.ns, N)
    Y = np.empty((prog.d, prog.m))
    chain.output(P, prog.pshape, C, prog.cshape, prog.terms_arr, prog.ns, N, prog.d, prog.m, Y)
    problem = lanes.Problem(prog, P, C, var, Y, wscale)
    rng = np.random.default_rng(seed)
    w0 = w_true[:, None] * (1 + 1e-7 * rng.standard_normal((len(var), lanes.LANES)))
    N0 = np.repeat(N[:, :8, :, None], lanes.LANES, axis=3)
    return prog, var, P, C, Y, w_true, problem, w0, N0


def _state(*key):
    return np.array(trial_state(*key), dtype=np.uint64)


def test_supported_programs():
    net, alloc, prog, var, *_ = _setting(0)
    assert lanes.supported(prog, var)
    # the left lifting and allocations outside W are for the scalar kernels
    assert not lanes.supported(net.chain_program(4, "left"), net.variables(alloc, "left"))
    mask = np.zeros((4, 8), bool)
    mask[:, :4] = True
    assert not lanes.supported(prog, net.variables(fastmp.Allocation(net, {"D": mask})))
    ffn = fastmp.LinearFFN([3, 4, 4, 2])
    masks = {"W1": np.zeros((4, 3), bool), "W2": np.zeros((4, 4), bool)}
    masks["W1"][0, :2] = True
    masks["W2"][0, :2] = True
    fa = fastmp.Allocation(ffn, masks)
    assert not lanes.supported(ffn.chain_program(2), ffn.variables(fa))


def test_lanes_step_is_newtons_step_from_a_planted_root():
    # from points near a root every lane converges to it, as scalar Newton does
    prog, var, P, C, Y, w_true, problem, w0, N0 = _planted(3)
    w, conv, steps, last = lanes.run(problem, w0, N0, 8 * 50, 0.0, 1e4, _state(1, 2, 3))
    assert conv and steps <= 8 * 10
    np.testing.assert_allclose(w, w_true, rtol=1e-9, atol=1e-12)
    assert prog.residual(P.copy(), C, Y, var, w) < 1e-12


def test_roots_found_are_certified_and_runs_reproducible():
    net, alloc, prog, var, params, consts, ystar, P, C, wscale, problem = _setting(5)
    w0, N0 = _starts(problem, var, wscale, 5)
    out = [lanes.run(problem, w0, N0, 8 * 400, 1e-14, 1e4, _state(5, 0, 1))
           for _ in range(2)]
    np.testing.assert_array_equal(out[0][0], out[1][0])
    assert out[0][1:] == out[1][1:]
    w, conv, steps, _ = out[0]
    assert conv and steps % lanes.LANES == 0
    assert prog.residual(P.copy(), C, ystar, var, w) < 1e-8
    assert certify_root(prog, params, consts, ystar, var, w, (P, C))[0]


def test_budget_and_restarts():
    net, alloc, prog, var, params, consts, ystar, P, C, wscale, problem = _setting(6)
    w0, N0 = _starts(problem, var, wscale, 6)
    # a box no iterate stays in: every run restarts, none converges, the budget holds
    state = _state(6, 0, 2)
    before = state.copy()
    w, conv, steps, last = lanes.run(problem, w0, N0, 8 * 30, 1e-14, 1e-3, state)
    assert not conv and steps == 8 * 30 and last == np.inf
    assert not np.array_equal(state, before)  # the restarts drew from the state


def test_shape_errors():
    net, alloc, prog, var, params, consts, ystar, P, C, wscale, problem = _setting(0)
    w0, N0 = _starts(problem, var, wscale, 0)
    with pytest.raises(ValueError):
        lanes.run(problem, w0[:, :4].copy(), N0, 80, 1e-14, 1e4, _state(0, 0, 0))
    with pytest.raises(ValueError):
        lanes.run(problem, w0, N0, 80, 1e-14, 1e4, np.zeros(3, np.uint64))


def test_portable_code_finds_the_same_planted_root():
    # the default-target copy of the kernel (taken on CPUs without AVX-512) runs the same
    # algorithm: from points near a root it converges to that root too
    prog, var, P, C, Y, w_true, problem, w0, N0 = _planted(4)
    for portable in (False, True):
        w, conv, steps, _ = lanes.run(problem, w0, N0, 8 * 50, 0.0, 1e4, _state(4, 0, 0),
                                      portable=portable)
        assert conv
        np.testing.assert_allclose(w, w_true, rtol=1e-9, atol=1e-12)
    # and from random points it finds roots of the Figure 2a system
    net, alloc, prog, var, params, consts, ystar, P, C, wscale, problem = _setting(7)
    w0, N0 = _starts(problem, var, wscale, 7)
    w, conv, steps, _ = lanes.run(problem, w0, N0, 8 * 400, 1e-14, 1e4, _state(7, 0, 0),
                                  portable=True)
    assert conv and certify_root(prog, params, consts, ystar, var, w, (P, C))[0]
