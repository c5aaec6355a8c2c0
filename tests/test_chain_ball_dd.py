"""The double-double residual enclosure (chain_ball.residual_dd) and the compiled
Krawczyk test that uses it: enclosures checked against python-flint arb at 320 bits,
roots of the Figure 2a search that the double-ball residual could not certify."""
import numpy as np
import pytest

import fastmp
from fastmp.estimators.certify import _arb_mat, chain_arb, krawczyk, krawczyk_compiled
from fastmp.generators import random_in_rows, random_mask
from fastmp.kernels import chain, chain_ball
from fastmp.kernels.chain_ball import (U, krawczyk_with_residual, output_ball,
                                       residual_dd)

PREC = 320


def _cases():
    lr = fastmp.LRNN(n=6, T=3, b=2, d=2)
    lr_masks = {"W": random_mask((6, 6), 5, 0, use_all=False),
                "B": random_mask((6, 2), 2, 1, use_all=False),
                "D": random_mask((2, 6), 1, 2, use_all=False)}
    lr8 = fastmp.LRNN(n=8, T=4, b=1, d=4)
    lr8_masks = {"W": random_mask((8, 8), 16, 3, use_all=False)}
    ffn = fastmp.LinearFFN((3, 5, 4, 2))
    ffn_masks = {"W1": random_mask((5, 3), 2, 3, use_all=False),
                 "W2": random_mask((4, 5), 2, 4, use_all=False),
                 "W3": random_mask((2, 4), 2, 5, use_all=False)}
    ffn4 = fastmp.LinearFFN((4, 6, 6, 5, 3))
    ffn4_masks = {f"W{k}": random_mask(s, 3, 10 + k, use_all=False)
                  for k, s in enumerate([(6, 4), (6, 6), (5, 6), (3, 5)], start=1)}
    return [(lr, lr_masks, 4, "right"), (lr, lr_masks, 4, "left"),
            (lr8, lr8_masks, 4, "right"), (ffn, ffn_masks, 3, "right"),
            (ffn, ffn_masks, 3, "left"), (ffn4, ffn4_masks, 3, "right")]


def _program(model, masks, m, side, trial=0):
    alloc = fastmp.Allocation(model, masks)
    prog = model.chain_program(m, side)
    var = model.variables(alloc, side)
    params, consts, ystar = model.chain_trial(7, trial, m, side)
    return prog, var, params, consts, ystar


def _args(prog, P, C, ystar):
    return (P, prog.pshape, C, prog.cshape, prog.src_kind, prog.src_idx, prog.steps_arr,
            prog.terms_arr, prog.ns, np.ascontiguousarray(ystar, dtype=np.float64),
            prog.d, prog.m)


def _with_w(prog, params, var, w):
    P = prog.pad_params([np.asarray(p, dtype=np.float64) for p in params])
    for k, (p, i, j) in enumerate(var):
        P[p, i, j] = w[k]
    return P


def _plain_output(prog, P, C):
    N = prog.node_buffer(P)
    chain.forward_nodes(P, prog.pshape, C, prog.src_kind, prog.src_idx, prog.steps_arr,
                        prog.ns, N)
    Y = np.empty((prog.d, prog.m))
    chain.output(P, prog.pshape, C, prog.cshape, prog.terms_arr, prog.ns, N, prog.d, prog.m, Y)
    return Y


def _assert_encloses_exact(prog, params, consts, var, w, ystar, Rm, Rr):
    """``|R_exact - Rm| <= Rr`` with R_exact in 320-bit arb (certainly, not just at the
    midpoint: the arb ball of the difference must lie below ``Rr``)."""
    from flint import arb, ctx
    old = ctx.prec
    ctx.prec = PREC
    try:
        P = [_arb_mat(p) for p in params]
        for k, (p, i, j) in enumerate(var):
            P[p][i, j] = arb(float(w[k]))
        Y, _ = chain_arb(prog, P, [_arb_mat(c) for c in consts], var, False)
        for a in range(prog.d):
            for c in range(prog.m):
                e = Y[a, c] - arb(float(ystar[a, c])) - arb(float(Rm[a, c]))
                assert arb(float(Rr[a, c])) - abs(e) >= 0, (a, c, e, Rr[a, c])
    finally:
        ctx.prec = old


@pytest.mark.parametrize("case", range(6))
def test_residual_dd_encloses_the_exact_residual(case):
    """At random points of several scales, both at a generic ``Y*`` (the trial's) and at
    ``Y* = fl(Y(w))`` (a near-root: the residual cancels to ~u |Y|), the double-double
    enclosure contains the residual computed in 320-bit arb; at the near-roots its
    radius is many orders below :func:`output_ball`'s."""
    model, masks, m, side = _cases()[case]
    prog, var, params, consts, ystar = _program(model, masks, m, side)
    C = prog.pad_consts([np.asarray(c, dtype=np.float64) for c in consts])
    rng = np.random.default_rng(case)
    for scale in (1.0, 30.0, 1e-3):
        w = scale * rng.standard_normal(len(var))
        P = _with_w(prog, params, var, w)
        P0 = P.copy()
        for target in (np.asarray(ystar, dtype=np.float64), _plain_output(prog, P, C)):
            Rm, Rr = residual_dd(*_args(prog, P, C, target))
            np.testing.assert_array_equal(P, P0)
            assert np.all(np.isfinite(Rm)) and np.all(np.isfinite(Rr)) and np.all(Rr > 0)
            _assert_encloses_exact(prog, params, consts, var, w, target, Rm, Rr)
            Ym, Yr = output_ball(P, np.zeros_like(P), *_args(prog, P, C, target)[1:9],
                                 prog.d, prog.m)
            # the ball's midpoint is the plain double output: the dd midpoint agrees
            # with it up to the ball radius
            assert np.all(np.abs(Ym - target - Rm) <= Yr + Rr + U * np.abs(Ym - target))
            # radius: ~u |R| (rounding of the residual to one double) + ~u^2 magnitudes
            assert np.all(Rr <= 4 * U * np.abs(Rm) + 1e-25 * (1 + Yr / U))
        # at the near-root the ball radius is ~u |Y|, the dd one ~u^2 |Y|
        assert Rr.max() < 1e-8 * Yr.max()


def test_two_product_and_two_sum_are_error_free():
    """TwoProduct (Veltkamp/Dekker, no fma) and TwoSum are exact on doubles over a wide
    exponent range, checked in rational arithmetic."""
    from fractions import Fraction
    rng = np.random.default_rng(1)
    a = rng.standard_normal(300) * 2.0 ** rng.integers(-400, 400, 300)
    b = rng.standard_normal(300) * 2.0 ** rng.integers(-400, 400, 300)
    two_prod = chain_ball._two_prod.py_func
    two_sum = chain_ball._two_sum.py_func
    for x, y in zip(a, b):
        x, y = float(x), float(y)
        h, lo = two_prod(x, y)
        assert Fraction(h) + Fraction(lo) == Fraction(x) * Fraction(y)
        s, e = two_sum(x, y)
        assert Fraction(s) + Fraction(e) == Fraction(x) + Fraction(y)
        s, e = two_sum(x, -x * (1 + 2.0 ** -40))
        assert Fraction(s) + Fraction(e) == Fraction(x) - Fraction(x * (1 + 2.0 ** -40))
    # the compiled versions give the same bits (no fma contraction, no reassociation)
    from numba import njit

    @njit
    def both(x, y):
        h, lo = chain_ball._two_prod(x, y)
        s, e = chain_ball._two_sum(x, y)
        return h, lo, s, e

    for x, y in zip(a[:50], b[:50]):
        assert both(float(x), float(y)) == (*two_prod(float(x), float(y)),
                                            *two_sum(float(x), float(y)))


def _old_compiled(prog, P, C, ystar, var, w):
    """The compiled test as it was before the double-double residual: the residual from
    :func:`output_ball` (``Rr = (Yr + u |Ym - Y*|) (1 + 4u)``)."""
    P = P.copy()
    for k, (p, i, j) in enumerate(var):
        P[p, i, j] = w[k]
    J0 = prog.jacobian(P.copy(), C, var, w)
    Ym, Yr = output_ball(P, np.zeros_like(P), *_args(prog, P, C, ystar)[1:9], prog.d, prog.m)
    Rm = Ym - ystar
    Rr = (Yr + U * np.abs(Rm)) * (1 + 4 * U)
    ok, _ = krawczyk_with_residual(P, prog.pshape, C, prog.cshape, prog.src_kind,
                                   prog.src_idx, prog.steps_arr, prog.terms_arr, var, w, J0,
                                   Rm, Rr, np.array([4.0, 64.0, 1024.0]))
    return ok


@pytest.fixture(scope="module")
def figure2a_roots():
    """The first roots of the Figure 2a search at k = 8 (LRNN n=8, T=4, b=1, d=4, m=4,
    16 learnable W entries in 8 rows), as ``certify_root`` receives them."""
    import fastmp.estimators.polynomial as pol
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    alloc = random_in_rows(net, "W", 16, 8, rng=8)
    calls = []
    orig = pol.certify_root

    def record(prog, params, consts, ystar, var, w, padded=None, **kw):
        calls.append((prog, [np.array(p) for p in params], [np.array(c) for c in consts],
                      np.array(ystar), np.asarray(var, dtype=np.int64).reshape(-1, 3),
                      np.array(w, dtype=np.float64),
                      (padded[0].copy(), padded[1].copy()) if padded is not None else None))
        return orig(prog, params, consts, ystar, var, w, padded, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(pol, "certify_root", record)
    try:
        fastmp.match_probability(net, alloc, trials=30, seed=0)
    finally:
        mp.undo()
    roots = []
    for prog, params, consts, ystar, var, w, padded in calls:
        if len(var) != prog.d * prog.m or padded is None:
            continue
        roots.append((prog, params, consts, ystar, var, w, *padded))
    assert len(roots) >= 20
    return roots


def test_figure2a_roots_the_double_ball_residual_failed_now_certify(figure2a_roots):
    """(b) roots that the old compiled test (double-ball residual) fails and the arb
    residual test certifies are certified by the compiled test; (c) moving them by 1e-6
    relative makes the test fail; (d) roots the old test certified still certify."""
    hard, easy = [], []
    for prog, params, consts, ystar, var, w, P, C in figure2a_roots:
        if _old_compiled(prog, P, C, ystar, var, w):
            easy.append((prog, params, consts, ystar, var, w, P, C))
        elif krawczyk(prog, params, consts, ystar, var, w)[0]:
            hard.append((prog, params, consts, ystar, var, w, P, C))
    # at seed 0 the first 30 trials hold 3-5 such roots (~13% of roots at 300 trials)
    assert len(hard) >= 2 and len(easy) >= 10
    for prog, params, consts, ystar, var, w, P, C in hard:
        P0 = P.copy()
        ok, rho = krawczyk_compiled(prog, P, C, ystar, var, w)
        assert ok and 0 < rho < 1e-6 * (1 + np.abs(w).max())
        np.testing.assert_array_equal(P, P0)
        # the residual enclosure is what changed: far tighter than the ball's
        Pw = P.copy()
        for k, (p, i, j) in enumerate(var):
            Pw[p, i, j] = w[k]
        Rm, Rr = residual_dd(*_args(prog, Pw, C, ystar))
        _, Yr = output_ball(Pw, np.zeros_like(Pw), *_args(prog, Pw, C, ystar)[1:9],
                            prog.d, prog.m)
        assert Rr.max() < 1e-6 * Yr.max()
        _assert_encloses_exact(prog, params, consts, var, w, ystar, Rm, Rr)
        # (c) a perturbed point is no root: rejected (or, were it certified, the box
        # would have to reach back to the root)
        rng = np.random.default_rng(0)
        for _ in range(3):
            bad = w * (1 + 1e-6 * rng.choice([-1.0, 1.0], size=w.size))
            ok, rho = krawczyk_compiled(prog, P, C, ystar, var, bad)
            assert not ok
    for prog, params, consts, ystar, var, w, P, C in easy:
        ok, rho = krawczyk_compiled(prog, P, C, ystar, var, w)
        assert ok and 0 < rho < 1e-6 * (1 + np.abs(w).max())
    # (c) also for a well-conditioned root
    prog, params, consts, ystar, var, w, P, C = easy[0]
    bad = w.copy()
    bad[0] *= 1 + 1e-6
    assert not krawczyk_compiled(prog, P, C, ystar, var, bad)[0]
