"""Real parameter homotopy kernel (fastmp.kernels.homotopy): paths from a start near a
known root end at that root, certified; every variant is reproducible."""
import numpy as np
import pytest

import fastmp
from fastmp.estimators.polynomial import _Trial, certify_root
from fastmp.generators import random_in_rows
from fastmp.kernels.chain import _residual
from fastmp.kernels.homotopy import BUDGET, REACHED, run_path


@pytest.fixture(scope="module")
def system():
    """Figure 2a, n = 8, k = 8: the student's frozen weights with a planted root ``ws``
    (``Y* = Y(ws)``)."""
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    m = 4
    alloc = random_in_rows(net, "W", 16, 8, rng=8)
    prog = net.chain_program(m)
    var = net.variables(alloc)
    scale = np.full(len(var), 1 / np.sqrt(8))
    tr = _Trial(net, {"right": prog}, 0, 0, m, scale)
    params, consts, _, P, C = tr.side("right")
    rng = np.random.default_rng(3)
    ws = rng.standard_normal(len(var)) * scale
    Pw = P.copy()
    for (p, i, j), x in zip(var, ws):
        Pw[p, i, j] = x
    Y = np.empty((prog.d, prog.m))
    _residual(Pw, prog.pshape, C, prog.cshape, prog.src_kind, prog.src_idx, prog.steps_arr,
              prog.terms_arr, prog.ns, prog.node_buffer(Pw), np.zeros((prog.d, prog.m)), Y)
    return dict(prog=prog, var=var, params=params, consts=consts, P=P, C=C, ystar=Y, ws=ws,
                scale=scale)


def _certified(s, w):
    ok, _ = certify_root(s["prog"], s["params"], s["consts"], s["ystar"], s["var"], w)
    return ok


def test_path_to_a_planted_root_ends_certified(system):
    s = system
    rng = np.random.default_rng(0)
    P_before = s["P"].copy()
    for _ in range(5):
        w0 = s["ws"] + 0.01 * rng.standard_normal(len(s["var"])) * s["scale"]
        w, res, steps, _, status, _ = run_path(s["prog"], s["P"], s["C"], s["ystar"], s["var"], w0)
        assert status == REACHED and res < 1e-12
        assert np.max(np.abs(w - s["ws"])) < 1e-10
        assert _certified(s, w)
    np.testing.assert_array_equal(s["P"], P_before)   # the trial's parameters untouched


def test_deformed_frozen_weights_and_lifted_paths_reach_the_root(system):
    s = system
    rng = np.random.default_rng(1)
    w0 = s["ws"] + 0.01 * rng.standard_normal(len(s["var"])) * s["scale"]
    P0 = s["P"] + 1e-3 * rng.standard_normal(s["P"].shape)
    w, res, _, _, status, _ = run_path(s["prog"], s["P"], s["C"], s["ystar"], s["var"], w0,
                                       P0=P0)
    assert status == REACHED and _certified(s, w)
    # lifted: nodes of the start slightly inconsistent (defects deformed to zero)
    Pw = s["P"].copy()
    for (p, i, j), x in zip(s["var"], w0):
        Pw[p, i, j] = x
    N0 = s["prog"].node_buffer(Pw)
    from fastmp.kernels.chain import forward_nodes
    prog = s["prog"]
    forward_nodes(Pw, prog.pshape, s["C"], prog.src_kind, prog.src_idx, prog.steps_arr,
                  prog.ns, N0)
    N0 += 1e-3 * rng.standard_normal(N0.shape)
    w, res, _, _, status, _ = run_path(prog, s["P"], s["C"], s["ystar"], s["var"], w0,
                                       lifted=True, N0=N0)
    assert status == REACHED and _certified(s, w)


@pytest.mark.parametrize("variant", ["line", "deform", "bump", "lifted"])
def test_paths_are_reproducible(system, variant):
    s = system
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal(len(s["var"])) * s["scale"]
    kw = {"max_steps": 60}
    if variant == "deform":
        kw["P0"] = s["P"] + 0.3 * rng.standard_normal(s["P"].shape)
    elif variant == "bump":
        kw["R"] = 0.3 * rng.standard_normal(s["P"].shape)
    elif variant == "lifted":
        N0 = s["prog"].node_buffer(s["P"])
        N0[:] = rng.standard_normal(N0.shape)
        kw.update(lifted=True, N0=N0)
    a = run_path(s["prog"], s["P"], s["C"], s["ystar"], s["var"], w0, **kw)
    b = run_path(s["prog"], s["P"], s["C"], s["ystar"], s["var"], w0, **kw)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:] or (np.isnan(a[1]) and a[2:] == b[2:])
    assert a[4] in range(5) and a[2] <= 60


def test_step_budget_and_square_systems_only(system):
    s = system
    w0 = s["ws"] + 0.5 * s["scale"]
    out = run_path(s["prog"], s["P"], s["C"], s["ystar"], s["var"], w0, max_steps=1)
    assert out[4] in (BUDGET, REACHED) and out[2] <= 1
    with pytest.raises(ValueError):
        run_path(s["prog"], s["P"], s["C"], s["ystar"], s["var"][:-1], w0[:-1])
