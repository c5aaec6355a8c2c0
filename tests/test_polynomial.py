"""Polynomial allocations: certified Newton search, Theorem 3.5 solver, certification."""
import numpy as np
import pytest

import fastmp
from fastmp.estimators.certify import krawczyk, krawczyk_arb
from fastmp.estimators.polynomial import certify_root
from fastmp.generators import b11_allocations, random_in_rows, random_mask, theorem35

SETTINGS = [(8, 4, 1, 4, 4), (8, 2, 2, 2, 4), (12, 3, 2, 2, 6), (6, 3, 1, 2, 3), (9, 3, 3, 3, 6)]


# the columns variant of Theorem 3.5 needs Td <= n and Td | dm
THEOREM35 = [(s, "rows") for s in SETTINGS] + [
    (s, "columns") for s in SETTINGS if (s[3] * s[4]) % (s[1] * s[3]) == 0 and s[1] * s[3] <= s[0]]


@pytest.mark.parametrize("setting,by", THEOREM35)
def test_theorem_3_5_maximal_with_the_general_solver(setting, by):
    n, T, b, d, m = setting
    net = fastmp.LRNN(n=n, T=T, b=b, d=d)
    alloc = theorem35(net, m=m, by=by, rng=1)
    res = fastmp.match_probability(net, alloc, trials=40, seed=2, method="newton", starts=128)
    assert res.mp == 1.0, res.budget
    res = fastmp.match_probability(net, alloc, trials=40, seed=2)        # auto: constructive
    assert res.method.startswith("theorem35") and res.mp == 1.0


@pytest.mark.parametrize("n,T,b,d,m", SETTINGS[:3])
def test_theorem_3_4_minimal_gives_zero(n, T, b, d, m):
    net = fastmp.LRNN(n=n, T=T, b=b, d=d)
    rng = np.random.default_rng(0)
    mask = np.zeros((n, n), bool)
    mask[0, rng.choice(n, size=T * b + 1, replace=False)] = True     # a row beyond Tb
    free = np.flatnonzero(~mask.ravel())
    mask.ravel()[rng.choice(free, size=d * m - mask.sum(), replace=False)] = True
    alloc = fastmp.Allocation(net, {"W": mask})
    assert fastmp.classify(net, alloc).kind == "minimal"
    res = fastmp.match_probability(net, alloc, trials=30, seed=0, starts=16)
    assert res.mp == 0.0


def test_lemma_b4_fewer_unknowns_never_certified():
    net = fastmp.LRNN(n=6, T=3, b=1, d=2)
    mask = np.zeros((6, 6), bool)
    mask[:2, :2] = True                         # r = 4 < dm = 6
    alloc = fastmp.Allocation(net, {"W": mask})
    res = fastmp.match_probability(net, alloc, m=3, trials=20, starts=8)
    assert res.mp == 0.0


def test_mixed_and_multilayer_allocations_run_and_certify():
    ffn = fastmp.LinearFFN((3, 5, 5, 3))
    masks = {"W1": np.zeros((5, 3), bool), "W2": np.zeros((5, 5), bool), "W3": np.zeros((3, 5), bool)}
    masks["W1"][:3, :] = np.eye(3, dtype=bool)
    masks["W2"][:3, :3] = np.eye(3, dtype=bool)
    masks["W3"][:, :3] = np.eye(3, dtype=bool)
    alloc = fastmp.Allocation(ffn, masks)
    res = fastmp.match_probability(ffn, alloc, m=3, trials=20, starts=32)
    assert res.method.startswith("newton") and 0.0 <= res.mp <= 1.0
    assert res.budget["certified_double"] + res.budget["certified_arb"] == res.matches
    lr = fastmp.LRNN(n=6, T=2, b=1, d=2)
    mix = {"W": random_mask((6, 6), 2, 0, use_all=False), "D": random_mask((2, 6), 2, 1, use_all=False)}
    res = fastmp.match_probability(lr, fastmp.Allocation(lr, mix), trials=20, starts=16)
    assert res.budget["certified_double"] + res.budget["certified_arb"] == res.matches


def _root_case():
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    alloc = random_in_rows(net, "W", 16, 6, rng=0)
    prog, var = net.chain_program(4), net.variables(alloc)
    for trial in range(20):
        params, consts, ystar = net.chain_trial(3, trial, 4)
        P, C = prog.pad_params(params), prog.pad_consts(consts)
        rng = np.random.default_rng(trial)
        for _ in range(30):
            w0 = rng.standard_normal(len(var)) / np.sqrt(8)
            N0 = prog.node_buffer(P)
            N0[:] = rng.standard_normal(N0.shape)
            w, res, _, _ = prog.newton(P.copy(), C, ystar, var, w0, N0, True, 60, 1e-14, full=True)
            if res < 1e-11 and np.abs(w).max() < 50:
                ok, _ = krawczyk(prog, params, consts, ystar, var, w)
                if ok:
                    return prog, params, consts, ystar, var, w
    raise AssertionError("no well-conditioned root found")


def test_every_match_certified_and_perturbed_point_fails():
    prog, params, consts, ystar, var, w = _root_case()
    assert certify_root(prog, params, consts, ystar, var, w)[0]
    bad = w.copy()
    bad[0] += 1e-3 * (1 + abs(w[0]))
    assert not krawczyk(prog, params, consts, ystar, var, bad)[0]
    # the perturbed point is refined back by the arb path only when a root is near:
    # a point far from any root must fail at every precision
    far = w + 0.5 * (1 + np.abs(w))
    assert not certify_root(prog, params, consts, ystar, var, far)[0] or \
        np.abs(krawczyk_arb(prog, params, consts, ystar, var, far)[2] - w).max() < 1e-6


def test_certified_root_reproduces_teacher_outputs():
    prog, params, consts, ystar, var, w = _root_case()
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    student = {n: p.copy() for n, p in zip(net.param_names, params)}
    for k, (p, i, j) in enumerate(var):
        student[net.param_names[p]][i, j] = w[k]
    X = np.stack(consts)
    np.testing.assert_allclose(net.forward(student, X), ystar, atol=1e-8)


def test_newton_result_reports_budget_curve():
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    res = fastmp.match_probability(net, random_in_rows(net, "W", 16, 8, rng=0), trials=30, starts=32)
    curve = res.budget["mp_by_starts"]
    vals = [curve[k] for k in sorted(curve)]
    assert vals == sorted(vals) and vals[-1] == res.mp
    assert res.budget["max_starts"] <= 32 and res.budget["rounds"]


def test_theorem35_method_rejects_other_allocations():
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    with pytest.raises(ValueError, match="Theorem 3.5"):
        fastmp.match_probability(net, random_in_rows(net, "W", 16, 6, rng=0), method="theorem35")
    with pytest.raises(ValueError, match="method 'linear'"):
        fastmp.match_probability(net, theorem35(net, m=4, rng=0), method="linear")


@pytest.mark.parametrize("name", ["diagonal", "off_diagonal", "row1", "row2", "col1", "col2"])
def test_b11_general_solver_agrees_with_discriminant_oracle_trial_by_trial(name):
    from fastmp.theory.b11 import b11_statuses
    alloc = b11_allocations()[name]
    res = fastmp.match_probability(alloc.model, alloc, trials=400, seed=5, method="newton")
    oracle = b11_statuses(name, 400, 5)
    assert res.ambiguous == 0
    np.testing.assert_array_equal(res.status == fastmp.MATCH, oracle)


def test_budget_limited_flag_reads_the_starts_curve():
    from fastmp.estimators.result import MPResult
    base = dict(m=2, r=4, seed=0, method="newton", backend="numba", model="x", allocation="y")
    rising = MPResult.from_status(np.array([1] * 8 + [0] * 2), budget={
        "mp_by_starts": {1: 0.1, 2: 0.3, 4: 0.5, 8: 0.8}}, **base)
    flat = MPResult.from_status(np.array([1] * 8 + [0] * 2), budget={
        "mp_by_starts": {1: 0.1, 2: 0.5, 4: 0.8, 8: 0.8}}, **base)
    exact = MPResult.from_status(np.array([1, 0]), **base)
    assert rising.budget_limited is True and "budget-limited" in str(rising)
    assert flat.budget_limited is False and "budget-limited" not in str(flat)
    assert exact.budget_limited is None
    assert rising.to_dict()["budget_limited"] is True


def test_portfolio_shares_starts_by_roots_per_cost():
    from fastmp.estimators.polynomial import _cycle, start_cost, start_shares
    solvers = [("right", "lifted-full"), ("left", "lifted-full"), ("right", "lm")]
    sizes = {("right", "lifted-full"): 48, ("left", "lifted-full"): 144, ("right", "lm"): 16}
    # before any data: equal time shares, i.e. starts inversely proportional to the
    # prior cost of a start
    first = start_shares(solvers, {}, sizes)
    assert abs(first.sum() - 1) < 1e-12
    assert first[2] > first[0] > first[1] > 0

    def stats(starts, its, roots):
        return {sk: {"starts": n, "cost": n * start_cost(sk[1], sizes[sk], i), "roots": k}
                for sk, n, i, k in zip(solvers, starts, its, roots)}
    # the dear left lifting with no roots gets almost no start; the right lifting, 8x the
    # roots per cost of LM, gets most of them
    sh = start_shares(solvers, stats([100, 100, 100], [13, 13, 100], [40, 0, 5]), sizes)
    assert sh[1] < 1e-3 and sh[0] > sh[2] > 0
    # similar roots per cost: starts in inverse proportion to their cost
    sh = start_shares(solvers, stats([100, 100, 100], [13, 13, 13], [9, 0, 1]), sizes)
    assert sh[2] > sh[0]
    # a trial's solvers are drawn with those probabilities from its own generator
    cyc = _cycle(solvers, {}, sizes, np.random.default_rng(5), length=4000)
    assert cyc[:64] == _cycle(solvers, {}, sizes, np.random.default_rng(5))
    freq = np.array([cyc.count(sk) for sk in solvers]) / len(cyc)
    np.testing.assert_allclose(freq, first, atol=0.03)


def _minimal_beyond_tb():
    """Figure 2a's LRNN at n = 8 with rows beyond Tb = 4 (minimal, Theorem 3.4)."""
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    mask = np.zeros((8, 8), bool)
    mask[0, :5] = True
    mask[1, :5] = True
    mask[2, :6] = True
    return net, fastmp.Allocation(net, {"W": mask})


def test_every_solver_runs_within_the_exploration_starts():
    from fastmp.estimators.polynomial import EXPLORE_BY
    # a minimal allocation (rows beyond Tb = 4, Theorem 3.4): no trial matches, so every
    # trial runs the whole budget and must have tried each solver
    net, alloc = _minimal_beyond_tb()
    assert fastmp.classify(net, alloc).kind == "minimal"
    res = fastmp.match_probability(net, alloc, trials=3, seed=0, starts=EXPLORE_BY,
                                   method="newton")
    assert res.mp == 0.0
    port = res.budget["portfolio"]
    assert set(port) == set(res.budget["solvers"])
    for rec in port.values():
        assert rec["starts"] >= 3
    assert sum(rec["starts"] for rec in port.values()) == res.budget["starts_total"] == 3 * EXPLORE_BY


def test_fruitless_solvers_stop_being_forced_into_every_trial():
    """The exploration rule is per trial only while the run has given a solver fewer
    than EXPLORE_RUN_MIN starts (or once it has found a root): on a minimal allocation
    nothing is ever found, so the dear full left lifting is tried in the first
    EXPLORE_RUN_MIN trials and not in every one after."""
    from fastmp.estimators.polynomial import EXPLORE_BY, EXPLORE_RUN_MIN
    net, alloc = _minimal_beyond_tb()
    trials = EXPLORE_RUN_MIN + 12
    res = fastmp.match_probability(net, alloc, trials=trials, seed=0, starts=EXPLORE_BY,
                                   method="newton")
    assert res.mp == 0.0
    dear = res.budget["portfolio"]["lifted-full (left)"]["starts"]
    assert EXPLORE_RUN_MIN <= dear < trials


def test_same_seed_same_result_with_the_cost_aware_portfolio():
    # the portfolio's shares come from deterministic cost units, not from timings
    net = fastmp.LRNN(n=6, T=3, b=1, d=2)
    alloc = random_in_rows(net, "W", 6, 4, rng=1)
    r1 = fastmp.match_probability(net, alloc, m=3, trials=12, seed=4, starts=32)
    r2 = fastmp.match_probability(net, alloc, m=3, trials=12, seed=4, starts=32)
    np.testing.assert_array_equal(np.asarray(r1.status), np.asarray(r2.status))
    assert r1.budget["portfolio"] == r2.budget["portfolio"]
    assert r1.budget["certified_double"] + r1.budget["certified_arb"] == r1.matches


def test_compiled_krawczyk_agrees_with_the_arb_residual_test():
    """The all-compiled Krawczyk test (double ball residual) certifies the roots the
    arb-residual test certifies on well-conditioned roots, and rejects perturbed points
    and points far from any root."""
    from fastmp.estimators.certify import krawczyk_compiled
    prog, params, consts, ystar, var, w = _root_case()
    P, C = prog.pad_params(params), prog.pad_consts(consts)
    P0 = P.copy()
    ok, rho = krawczyk_compiled(prog, P, C, ystar, var, w)
    ok_arb, rho_arb = krawczyk(prog, params, consts, ystar, var, w)
    assert ok and ok_arb and 0 < rho < 1e-6
    np.testing.assert_array_equal(P, P0)         # the caller's parameters are untouched
    # a certified box must contain the root: a perturbed point is either rejected or
    # certified with a radius that reaches back to w
    rejected = 0
    for k in range(len(var)):
        for size in (1e-6, 1e-3):
            bad = w.copy()
            bad[k] += size * (1 + abs(w[k]))
            ok, rho = krawczyk_compiled(prog, P, C, ystar, var, bad)
            assert not ok or np.abs(bad - w).max() <= rho
            rejected += not ok
    assert rejected > 0
    far = w + 0.5 * (1 + np.abs(w))
    ok, rho = krawczyk_compiled(prog, P, C, ystar, var, far)
    assert not ok or np.abs(far - w).max() <= rho
    assert not krawczyk_compiled(prog, P, C, ystar, var, np.full_like(w, np.nan))[0]
    assert certify_root(prog, params, consts, ystar, var, w, (P, C)) == (True, "double")
    with pytest.raises(ValueError, match="square"):
        krawczyk_compiled(prog, P, C, ystar, var[:-1], w[:-1])


def test_arb_ladder_stops_where_newton_does_not_converge():
    """More precision is tried only where Newton converged at the last one: at a true
    root it does; from a point far out (|w| ~ 1e7, as the search's runaway candidates)
    it does not, and the point is rejected without the 424- and 848-bit tests."""
    prog, params, consts, ystar, var, w = _root_case()
    rep = {}
    krawczyk_arb(prog, params, consts, ystar, var, w, prec=212, report=rep)
    assert rep["converged"] is True
    far = 1e7 * np.random.default_rng(0).standard_normal(len(var))
    rep = {}
    ok, _, _ = krawczyk_arb(prog, params, consts, ystar, var, far, prec=212, report=rep)
    assert not ok and rep["converged"] is False
    assert certify_root(prog, params, consts, ystar, var, far) == (False, "")


def test_candidates_the_compiled_test_fails_are_certified_at_the_end_of_the_round(monkeypatch):
    # the search defers the arb tests of a candidate the compiled Krawczyk test does not
    # certify; an unmatched trial's deferred candidates are certified (or not) once its
    # round of starts is over -- never dropped, never counted without a proof
    import fastmp.estimators.polynomial as pol
    net = fastmp.LRNN(n=6, T=3, b=1, d=2)
    alloc = random_in_rows(net, "W", 6, 2, rng=0, row_cap=3)   # Theorem 3.5 rows: MP 1
    ref = fastmp.match_probability(net, alloc, trials=6, seed=4, method="newton")
    assert ref.mp == 1.0
    monkeypatch.setattr(pol, "krawczyk_compiled", lambda *a, **k: (False, np.inf))
    calls = []
    orig = pol.krawczyk

    def arb_residual(*a, **k):
        calls.append(1)
        return orig(*a, **k)
    monkeypatch.setattr(pol, "krawczyk", arb_residual)
    res = fastmp.match_probability(net, alloc, trials=6, seed=4, method="newton")
    assert res.mp == 1.0 and len(calls) >= 6
    # and a fake test that certifies nothing leaves near-misses, not matches
    def no_arb(prog, params, consts, ystar, var, w, prec, report):
        report["converged"] = False
        return False, np.inf, w
    monkeypatch.setattr(pol, "krawczyk", lambda *a, **k: (False, np.inf))
    monkeypatch.setattr(pol, "krawczyk_arb", no_arb)
    res = fastmp.match_probability(net, alloc, trials=6, seed=4, method="newton", starts=8)
    assert res.matches == 0 and res.ambiguous == 6
