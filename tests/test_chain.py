"""Chain programs: forward map, Jacobians (vs finite differences), Newton."""
import numpy as np
import pytest

import fastmp
from fastmp.estimators.certify import chain_ball
from fastmp.kernels import chain
from fastmp.generators import random_mask


def _cases():
    lr = fastmp.LRNN(n=6, T=3, b=2, d=2)
    lr_masks = {"W": random_mask((6, 6), 5, 0, use_all=False), "B": random_mask((6, 2), 2, 1, use_all=False),
                "D": random_mask((2, 6), 1, 2, use_all=False)}
    ffn = fastmp.LinearFFN((3, 5, 4, 2))
    ffn_masks = {"W1": random_mask((5, 3), 2, 3, use_all=False), "W2": random_mask((4, 5), 2, 4, use_all=False),
                 "W3": random_mask((2, 4), 2, 5, use_all=False)}
    return [(lr, lr_masks, 4), (ffn, ffn_masks, 3)]


SIDE = ["right", "left"]


def _setup(model, masks, m, trial=0, side="right"):
    alloc = fastmp.Allocation(model, masks)
    prog = model.chain_program(m, side)
    var = model.variables(alloc, side)
    params, consts, ystar = model.chain_trial(7, trial, m, side)
    return alloc, prog, var, params, consts, ystar


def _output(model, prog, params, consts, var, w):
    P = prog.pad_params(params)
    for k, (p, i, j) in enumerate(var):
        P[p, i, j] = w[k]
    C = prog.pad_consts(consts)
    N = prog.node_buffer(P)
    chain.forward_nodes(P, prog.pshape, C, prog.src_kind, prog.src_idx, prog.steps_arr, prog.ns, N)
    Y = np.empty((prog.d, prog.m))
    chain.output(P, prog.pshape, C, prog.cshape, prog.terms_arr, prog.ns, N, prog.d, prog.m, Y)
    return Y, P, C, N


@pytest.mark.parametrize("side", SIDE)
@pytest.mark.parametrize("case", range(2))
def test_program_output_equals_forward(case, side):
    model, masks, m = _cases()[case]
    alloc, prog, var, params, consts, ystar = _setup(model, masks, m, side=side)
    teacher, student, X = model.trial_draws(7, 0, m)
    Y, *_ = _output(model, prog, params, consts, var, np.array([params[p][i, j] for p, i, j in var]))
    expected = model.forward(student, X)
    if side == "left":
        expected = expected.T
        np.testing.assert_array_equal(var[:, [0, 2, 1]], model.variables(alloc))
    np.testing.assert_allclose(Y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ystar, model.forward(teacher, X).T if side == "left" else model.forward(teacher, X))


@pytest.mark.parametrize("side", SIDE)
@pytest.mark.parametrize("case", range(2))
def test_jacobians_match_finite_differences(case, side):
    model, masks, m = _cases()[case]
    alloc, prog, var, params, consts, ystar = _setup(model, masks, m, side=side)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(len(var))
    Y, P, C, N = _output(model, prog, params, consts, var, w)
    J = np.empty((prog.d * prog.m, len(var)))
    corr = np.empty((prog.d, prog.m))
    E = np.zeros_like(N)
    chain.jacobian_and_defect_rhs(P, prog.pshape, C, prog.cshape, prog.src_kind, prog.src_idx,
                                  prog.steps_arr, prog.terms_arr, prog.ns, N, E, var, prog.d, prog.m, J, corr)
    h = 1e-6
    fd = np.empty_like(J)
    for v in range(len(var)):
        e = np.zeros(len(var))
        e[v] = h
        fd[:, v] = ((_output(model, prog, params, consts, var, w + e)[0]
                     - _output(model, prog, params, consts, var, w - e)[0]) / (2 * h)).ravel()
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-7)
    # the ball enclosure's midpoint is the same Jacobian, and its radius is tiny
    Pm = [p.copy() for p in params]
    for k, (p, i, j) in enumerate(var):
        Pm[p][i, j] = w[k]
    _, (Jm, Jr) = chain_ball(prog, Pm, [np.zeros_like(p) for p in Pm], consts, True, var)
    np.testing.assert_allclose(Jm, J, rtol=1e-12, atol=1e-12)
    assert Jr.max() < 1e-12
    # ... and so is the one Krawczyk's preconditioner takes from ChainProgram.jacobian
    np.testing.assert_allclose(prog.jacobian(prog.pad_params(params), prog.pad_consts(consts),
                                             var, w), J, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("side", SIDE)
@pytest.mark.parametrize("case", range(2))
def test_full_lifted_jacobian_matches_finite_differences(case, side):
    model, masks, m = _cases()[case]
    alloc, prog, var, params, consts, ystar = _setup(model, masks, m, side=side)
    rng = np.random.default_rng(1)
    r = len(var)
    w = rng.standard_normal(r)
    _, P, C, N = _output(model, prog, params, consts, var, w)
    N[1:] += 0.3 * rng.standard_normal(N[1:].shape)   # inconsistent nodes
    off = chain._lifted_layout(prog.ns, r, prog.d, prog.m)
    nz = off[-1]
    neq = nz - r + prog.d * prog.m

    def F_of(z):
        P2 = P.copy()
        N2 = N.copy()
        for k, (p, i, j) in enumerate(var):
            P2[p, i, j] = z[k]
        if prog.src_kind == 0:
            N2[0, :prog.ns[0, 0], :prog.ns[0, 1]] = P2[prog.src_idx, :prog.ns[0, 0], :prog.ns[0, 1]]
        cols = prog.ns[0, 1]
        for k in range(1, len(prog.steps) + 1):
            N2[k, :prog.ns[k, 0], :cols] = z[off[k]:off[k] + prog.ns[k, 0] * cols].reshape(prog.ns[k, 0], cols)
        Fv = np.empty(neq)
        Jv = np.empty((neq, nz))
        chain.lifted_residual_jacobian(P2, prog.pshape, C, prog.src_kind, prog.src_idx, prog.steps_arr,
                                       prog.terms_arr, prog.ns, N2, var, ystar, off, Fv, Jv)
        return Fv, Jv

    z = np.concatenate([w] + [N[k, :prog.ns[k, 0], :prog.ns[0, 1]].ravel() for k in range(1, len(prog.steps) + 1)])
    F0, J0 = F_of(z)
    h = 1e-6
    fd = np.empty_like(J0)
    for q in range(nz):
        e = np.zeros(nz)
        e[q] = h
        fd[:, q] = (F_of(z + e)[0] - F_of(z - e)[0]) / (2 * h)
    np.testing.assert_allclose(J0, fd, rtol=1e-6, atol=1e-7)


def _mixed_lrnn_allocation(seed):
    """An LRNN allocation with unknowns in D, B and W (every kind of variable)."""
    model = fastmp.LRNN(n=6, T=3, b=2, d=2)
    rng = np.random.default_rng(seed)
    masks = {name: rng.random(shape) < 0.4 for name, shape in model.param_shapes.items()}
    for name in masks:
        masks[name].flat[0] = True
    return model, 3, fastmp.Allocation(model, masks), rng


@pytest.mark.parametrize("seed", range(3))
def test_homogeneous_jacobian_equals_generic(seed, side="right"):
    # the LRNN's fast path against the generic one: every kind of variable (D, B, W), and
    # inconsistent nodes with nonzero defects for the correction term
    model, m, alloc, rng = _mixed_lrnn_allocation(seed)
    prog = model.chain_program(m, side)
    var = model.variables(alloc, side)
    params, consts, _ = model.chain_trial(seed, 0, m, side)
    P, C = prog.pad_params(params), prog.pad_consts(consts)
    N = prog.node_buffer(P)
    chain.forward_nodes(P, prog.pshape, C, prog.src_kind, prog.src_idx, prog.steps_arr,
                        prog.ns, N)
    N[1:] += 0.3 * rng.standard_normal(N[1:].shape)
    E = 0.2 * rng.standard_normal(N.shape)
    assert chain._homogeneous(prog.steps_arr, prog.terms_arr, prog.src_kind, prog.src_idx)
    out = []
    for fn in (chain._jacobian_homogeneous, chain.jacobian_generic):
        J = np.empty((prog.d * prog.m, len(var)))
        corr = np.empty((prog.d, prog.m))
        fn(P, prog.pshape, C, prog.cshape, prog.src_kind, prog.src_idx, prog.steps_arr,
           prog.terms_arr, prog.ns, N, E, var, prog.d, prog.m, J, corr)
        out.append((J, corr))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-12, atol=1e-12)


def test_ffn_chain_and_left_lifting_are_not_homogeneous():
    # different parameters per step; the left lifting's terms differ in their left
    # constants (X_t^T): both take the generic Jacobian
    net = fastmp.LinearFFN((4, 6, 6, 6))
    prog = net.chain_program(4)
    assert not chain._homogeneous(prog.steps_arr, prog.terms_arr, prog.src_kind, prog.src_idx)
    prog = fastmp.LRNN(n=6, T=3, b=2, d=2).chain_program(3, "left")
    assert not chain._homogeneous(prog.steps_arr, prog.terms_arr, prog.src_kind, prog.src_idx)


def test_solve_damped_equals_numpy_and_flags_singular():
    rng = np.random.default_rng(5)
    W, x = np.empty((7, 7)), np.empty(7)
    for lam in (0.0, 1e-3, 10.0):
        A = rng.standard_normal((7, 7))
        A = A @ A.T if lam else A
        b = rng.standard_normal(7)
        assert chain.solve_damped(A, b, lam, W, x)
        M = A + lam * np.diag(np.maximum(np.diag(A), 1e-12))
        np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-10, atol=1e-12)
    A = rng.standard_normal((7, 7))
    A[:, 3] = 0.0
    assert not chain.solve_damped(A, rng.standard_normal(7), 0.0, W, x)


def test_cholesky_solve_damped_equals_numpy_and_flags_indefinite():
    from fastmp.kernels.dense import cholesky_solve_damped
    rng = np.random.default_rng(6)
    W, x = np.empty((9, 9)), np.empty(9)
    for lam in (0.0, 1e-3, 10.0):
        J = rng.standard_normal((9, 9))
        A = J.T @ J
        b = rng.standard_normal(9)
        assert cholesky_solve_damped(A, b, lam, W, x)
        M = A + lam * np.diag(np.maximum(np.diag(A), 1e-12))
        np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-9, atol=1e-12)
    # indefinite, and singular without damping: the caller must reject the step
    assert not cholesky_solve_damped(np.diag([1.0, -1.0, 2.0]), np.ones(3), 0.0,
                                     np.empty((3, 3)), np.empty(3))
    A = np.zeros((3, 3))
    A[0, 0] = 1.0
    assert not cholesky_solve_damped(A, np.ones(3), 0.0, np.empty((3, 3)), np.empty(3))


@pytest.mark.parametrize("seed", range(3))
def test_lifted_newton_step_equals_full_lifted_step(seed):
    # the eliminated step on (w, N) (Lemma 3.3's lifting; defect correction propagated
    # along the chain, sparse dA N node update) is the same linearisation as the dense
    # step on the full lifted system: one step from the same inconsistent point agrees
    model = fastmp.LRNN(n=6, T=3, b=2, d=2)
    m = 3
    rng = np.random.default_rng(seed)
    flat = [(name, idx) for name, shape in model.param_shapes.items()
            for idx in np.ndindex(shape)]
    masks = {name: np.zeros(shape, dtype=bool) for name, shape in model.param_shapes.items()}
    for k in rng.choice(len(flat), model.d * m, replace=False):
        name, idx = flat[k]
        masks[name][idx] = True
    alloc = fastmp.Allocation(model, masks)
    prog = model.chain_program(m)
    var = model.variables(alloc)
    params, consts, ystar = model.chain_trial(seed, 0, m)
    P, C = prog.pad_params(params), prog.pad_consts(consts)
    w0 = rng.standard_normal(len(var)) / np.sqrt(6)
    N0 = prog.node_buffer(P)
    N0[:] = rng.standard_normal(N0.shape)
    w_elim = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 1, 0.0)[0]
    w_full = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 1, 0.0, full=True)[0]
    np.testing.assert_allclose(w_elim, w_full, rtol=1e-9, atol=1e-9)
    assert not np.allclose(w_elim, w0)


@pytest.mark.parametrize("seed", range(2))
def test_arb_homogeneous_jacobian_equals_generic(seed):
    # certification's ball Jacobian: the fast assembly for homogeneous chains encloses
    # the same values as the generic one (midpoints agree, balls overlap)
    from flint import arb

    from fastmp.estimators.certify import _arb_mat, chain_arb
    model, m, alloc, rng = _mixed_lrnn_allocation(seed)
    prog = model.chain_program(m)
    var = model.variables(alloc)
    params, consts, _ = model.chain_trial(seed, 0, m)
    P = [_arb_mat(p) for p in params]
    for p, i, j in var:   # balls on the unknowns, as in the Krawczyk box
        P[p][i, j] = P[p][i, j] + arb(0, 1e-3)
    C = [_arb_mat(c) for c in consts]
    Yh, Jh = chain_arb(prog, P, C, var, True)
    Yg, Jg = chain_arb(prog, P, C, var, True, generic=True)
    for a in range(Jh.nrows()):
        for v in range(Jh.ncols()):
            assert Jh[a, v].overlaps(Jg[a, v])
            assert abs(float(Jh[a, v].mid()) - float(Jg[a, v].mid())) <= 1e-9 * (1 + abs(float(Jg[a, v].mid())))


def test_newton_stops_once_converged_to_rounding():
    # tol = 0 can never be met: Newton must still stop soon after reaching the root (the
    # residual stops halving at the rounding level) instead of iterating to max_iter
    net = fastmp.LRNN(n=6, T=3, b=1, d=2)
    m = 3
    mask = np.zeros((6, 6), bool)
    mask[:2, :3] = True                                   # Theorem 3.5 rows: 2 rows x Tb
    alloc = fastmp.Allocation(net, {"W": mask})
    prog, var = net.chain_program(m), net.variables(alloc)
    params, consts, ystar = net.chain_trial(3, 0, m)
    P, C = prog.pad_params(params), prog.pad_consts(consts)
    w_true = np.array([params[p][i, j] for p, i, j in var])
    for lifted in (False, True):
        N0 = prog.node_buffer(P)
        chain.forward_nodes(P, prog.pshape, C, prog.src_kind, prog.src_idx, prog.steps_arr,
                            prog.ns, N0)
        # the teacher's outputs of the student's own weights: w_true is a root
        Y = np.empty((prog.d, prog.m))
        chain.output(P, prog.pshape, C, prog.cshape, prog.terms_arr, prog.ns, N0, prog.d,
                     prog.m, Y)
        w, res, its, _ = prog.newton(P.copy(), C, Y, var, w_true + 1e-6, N0, lifted, 200, 0.0)
        assert res < 1e-12 and its < 20
        np.testing.assert_allclose(w, w_true, atol=1e-9)


@pytest.mark.parametrize("side", SIDE)
@pytest.mark.parametrize("case", range(2))
def test_compiled_ball_jacobian_equals_numpy_and_encloses(case, side):
    """Krawczyk's J(X) from the compiled kernel: the enclosure of certify.chain_ball (same
    rules, summation order aside), and it contains J at points of the box."""
    from fastmp.estimators.certify import _jacobian_ball, _with_vars
    model, masks, m = _cases()[case]
    alloc, prog, var, params, consts, ystar = _setup(model, masks, m, side=side)
    rng = np.random.default_rng(3)
    w = rng.standard_normal(len(var))
    rho = np.abs(rng.standard_normal(len(var))) * 1e-2
    _, (Jm0, Jr0) = chain_ball(prog, *_with_vars(prog, params, var, w, rho), consts, True, var)
    Jm, Jr = _jacobian_ball(prog, params, consts, var, w, rho)
    np.testing.assert_allclose(Jm, Jm0, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(Jr > 0, Jr0 > 0)
    np.testing.assert_allclose(Jr, Jr0, rtol=1e-12, atol=0)
    for _ in range(20):
        wp = w + rho * rng.uniform(-1, 1, len(var))
        J = prog.jacobian(prog.pad_params(params), prog.pad_consts(consts), var, wp)
        assert np.all(np.abs(J - Jm) <= Jr * (1 + 1e-9) + 1e-12 * np.abs(J))
    # a radius that misses a term would not enclose the corners
    for _ in range(20):
        wp = w + rho * rng.choice([-1.0, 1.0], len(var))
        J = prog.jacobian(prog.pad_params(params), prog.pad_consts(consts), var, wp)
        assert np.all(np.abs(J - Jm) <= Jr * (1 + 1e-9) + 1e-12 * np.abs(J))


@pytest.mark.parametrize("side", SIDE)
@pytest.mark.parametrize("case", range(2))
def test_compiled_output_ball_equals_numpy_and_encloses(case, side):
    """The residual enclosure of the compiled Krawczyk test: certify.chain_ball's output
    ball (same rules, summation order aside), and it contains Y at points of the box."""
    from fastmp.estimators.certify import _with_vars
    from fastmp.kernels.chain_ball import output_ball
    model, masks, m = _cases()[case]
    alloc, prog, var, params, consts, ystar = _setup(model, masks, m, side=side)
    rng = np.random.default_rng(4)
    w = rng.standard_normal(len(var))
    rho = np.abs(rng.standard_normal(len(var))) * 1e-3
    Pm, Pr = _with_vars(prog, params, var, w, rho)
    (Ym0, Yr0), _ = chain_ball(prog, Pm, Pr, consts, False, var)
    Ym, Yr = output_ball(prog.pad_params(Pm), prog.pad_params(Pr), prog.pshape,
                         prog.pad_consts(consts), prog.cshape, prog.src_kind, prog.src_idx,
                         prog.steps_arr, prog.terms_arr, prog.ns, prog.d, prog.m)
    np.testing.assert_allclose(Ym, Ym0, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Yr, Yr0, rtol=1e-9, atol=0)
    for signs in (rng.uniform(-1, 1, (20, len(var))), rng.choice([-1.0, 1.0], (20, len(var)))):
        for s in signs:
            Y, *_ = _output(model, prog, params, consts, var, w + rho * s)
            assert np.all(np.abs(Y - Ym) <= Yr * (1 + 1e-9) + 1e-13 * np.abs(Y))
    # at a point (zero radii) the radius is rounding only, far below the box's
    Pm, Pr = _with_vars(prog, params, var, w, 0 * rho)
    _, Yr_pt = output_ball(prog.pad_params(Pm), prog.pad_params(Pr), prog.pshape,
                           prog.pad_consts(consts), prog.cshape, prog.src_kind, prog.src_idx,
                           prog.steps_arr, prog.terms_arr, prog.ns, prog.d, prog.m)
    assert np.all(Yr_pt > 0) and np.all(Yr_pt < 1e-12 * (1 + np.abs(Ym)).max())


def _fig2a_start(seed, k=8):
    # Figure 2a, n = 8 (T = 4, b = 1, d = 4, m = 4) with r = 16 weights in k rows
    from fastmp.generators import random_in_rows
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    alloc = random_in_rows(net, "W", 16, k, rng=k)
    prog, var = net.chain_program(4), net.variables(alloc)
    params, consts, ystar = net.chain_trial(seed, 0, 4)
    P, C = prog.pad_params(params), prog.pad_consts(consts)
    rng = np.random.default_rng(seed)
    wscale = np.full(len(var), 1 / np.sqrt(8))
    w0 = rng.standard_normal(len(var)) * wscale
    N0 = prog.node_buffer(P)
    N0[:] = rng.standard_normal(N0.shape)
    return prog, var, P, C, ystar, w0, N0, wscale


def test_newton_cut_leaves_the_box_with_an_infinite_step():
    prog, var, P, C, ystar, w0, N0, _ = _fig2a_start(0)
    # without a cut the run goes on; with a cut below the start's own nodes it stops at
    # once and says so with last_step = inf (never a candidate for certification)
    w, res, its, step = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 30, 1e-14)
    assert its > 1 and np.isfinite(step)
    w, res, its, step = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 30, 1e-14,
                                    cut=1e-3)
    assert its == 0 and step == np.inf
    # a cut no iterate reaches changes nothing
    a = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 30, 1e-14)
    b = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 30, 1e-14, cut=1e300)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]


def test_newton_restarts():
    from fastmp.kernels.rng import trial_state
    prog, var, P, C, ystar, w0, N0, wscale = _fig2a_start(1)
    # cut 0 and a run that does not fail: one plain run, the same as newton
    a = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 5, 1e-14)
    assert np.isfinite(a[3])
    b = prog.newton_restarts(P.copy(), C, ystar, var, w0, N0, 5, 1e-14, 0.0, wscale,
                             trial_state(1, 0, 0))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]
    # a cut every run hits at once: the budget goes on restarts, all of them counted
    w, res, its, step = prog.newton_restarts(P.copy(), C, ystar, var, w0, N0, 40, 1e-14,
                                             1e-3, wscale, trial_state(1, 0, 0))
    assert its == 40 and step == np.inf
    # reproducible from the state; a root found after restarts is a root
    runs = [prog.newton_restarts(P.copy(), C, ystar, var, w0, N0, 2000, 1e-14, 1e4, wscale,
                                 trial_state(1, 0, 7)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    w, res, its, step = runs[0]
    assert its < 2000 and res < 1e-8
