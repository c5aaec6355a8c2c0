"""Certified pattern search for ShallowReLU W1 allocations, its exact certificate, the
AdaHessian baseline and the Lemma D.3/D.4 pattern counts (issue 4)."""
import numpy as np
import pytest

import fastmp
from fastmp import MATCH, NO_MATCH, wilson_interval
from fastmp.baselines.adahessian import adahessian_fit, run_adahessian
from fastmp.estimators.relu import (brute_force_decide, certify_match_exact, exact_decide,
                                    lemma_prunes, relu_trial_system, run_relu_exact)
from fastmp.estimators.relu_search import run_relu_search, search_decide
from fastmp.generators import random_mask
from fastmp.theory.relu_patterns import (pattern_count, pattern_counts, surviving_patterns,
                                         theorem41_relu)


def rows_mask(n, q, counts):
    mask = np.zeros((n, q), bool)
    for i, c in enumerate(counts):
        mask[i, [(i + j) % q for j in range(c)]] = True
    return mask


def independent_check(system, P, w):
    """Forward pass written out here: outputs reproduced, activation pattern = P."""
    teacher, student, X = system.teacher, system.student, system.X
    W1 = student["W1"].copy()
    W1[system.mask] = w
    Y = student["W2"] @ np.maximum(W1 @ X, 0.0)
    Ystar = teacher["W2"] @ np.maximum(teacher["W1"] @ X, 0.0)
    assert np.allclose(Y, Ystar, rtol=0, atol=1e-9 * max(1.0, np.abs(Ystar).max()))
    assert np.array_equal((W1[system.used] @ X).T > 0, np.asarray(P, bool))


# ------------------------------------------------------------------ search vs exact
SMALL = [  # (q, n, d, m, counts): k m <= 12, brute force affordable
    (3, 4, 1, 3, [1, 1, 1]),
    (4, 5, 2, 2, [1, 1, 1, 1]),
    (3, 4, 1, 3, [2, 1]),
    (4, 6, 2, 3, [2, 2, 1, 1]),
]


@pytest.mark.parametrize("q,n,d,m,counts", SMALL)
def test_search_agrees_with_brute_force_and_exact(q, n, d, m, counts):
    """k m <= 12: brute force over all 2^(km) patterns = exact decision; the search never
    reports a match they reject, and every match it reports is certified and passes an
    independent forward pass."""
    net = fastmp.ShallowReLU(q, n, d)
    mask = rows_mask(n, q, counts)
    for t in range(6):
        s = relu_trial_system(net, mask, m, 11, t)
        bf, ex = brute_force_decide(s), exact_decide(s)
        assert bf.status == ex.status
        out = search_decide(s, starts=128)
        if out["status"] == MATCH:
            assert ex.status == MATCH
            assert out["certificate"]["ok"]
            independent_check(s, out["pattern"], out["w"])


# (dims, m, r, k, allocation rng seed, trial seed, trials): at least `trials` trials,
# and more (up to 5x) until the exact decision has seen a match -- the streams, not the
# test, decide which trials match
RECALL = [((6, 10, 2), 4, 8, 4, 1, 1, 12), ((6, 8, 4), 3, 12, 6, 2004, 4, 12)]


@pytest.mark.parametrize("dims,m,r,k,aseed,tseed,trials", RECALL)
def test_search_never_false_and_finds_exact_matches(dims, m, r, k, aseed, tseed, trials):
    """k m = 16..18: on every trial the search's MATCH implies the exact decision's, and
    (with 256 starts) it finds the exact decision's matches here."""
    q, n, d = dims
    net = fastmp.ShallowReLU(q, n, d)
    mask = random_mask((n, q), r, np.random.default_rng(aseed), k=k, row_cap=min(q, m),
                       col_cap=d)
    found = exact_matches = 0
    for t in range(5 * trials):
        if t >= trials and exact_matches:
            break
        s = relu_trial_system(net, mask, m, tseed, t)
        ex = exact_decide(s)
        out = search_decide(s, starts=256)
        assert not (out["status"] == MATCH and ex.status != MATCH)
        exact_matches += ex.status == MATCH
        found += out["status"] == MATCH and ex.status == MATCH
    assert exact_matches > 0
    assert found == exact_matches


def test_search_modes_and_repair_are_sound():
    """Every mode, with and without the lemma repair, only reports certified matches."""
    net = fastmp.ShallowReLU(6, 10, 2)
    mask = random_mask((10, 6), 8, np.random.default_rng(3), k=4, row_cap=4, col_cap=2)
    for mode in ("undamped", "damped", "hybrid"):
        for repair in (True, False):
            for t in range(4):
                s = relu_trial_system(net, mask, 4, 1, t)
                out = search_decide(s, starts=32, mode=mode, repair=repair)
                if out["status"] == MATCH:
                    assert certify_match_exact(s, out["pattern"], out["w"])["ok"]
                    assert exact_decide(s).status == MATCH
    with pytest.raises(ValueError):
        search_decide(s, mode="newton")
    with pytest.raises(ValueError):
        search_decide(s, starts=0)


# ------------------------------------------------------------------ exact certificate
def _a_match():
    net = fastmp.ShallowReLU(6, 8, 1)
    mask = rows_mask(8, 6, [1, 1, 1, 1])
    for t in range(20):
        s = relu_trial_system(net, mask, 4, 0, t)
        dec = exact_decide(s)
        if dec.status == MATCH:
            return s, dec[1], dec[2]
    raise AssertionError("no match in 20 trials")


def test_certificate_accepts_true_matches_and_rejects_near_misses():
    s, P, w = _a_match()
    cert = certify_match_exact(s, P, w)
    assert cert["ok"] and cert["min_active"] > 0
    # the exact point reproduces the teacher exactly (checked again with Fractions here)
    from fractions import Fraction
    we = [Fraction(int(x.p), int(x.q)) for x in cert["w_exact"]]
    assert max(abs(float(a) - b) for a, b in zip(we, w)) < 1e-9
    # wrong pattern, perturbed weights, non-finite weights: never certified
    assert not certify_match_exact(s, ~P, w)["ok"]
    # the certificate is about existence: a nearby float point of the same pattern is
    # projected exactly onto (D.1) (here r = dm, a unique solution) and certifies
    assert certify_match_exact(s, P, w + 1e-7)["ok"]
    flipped = P.copy()
    flipped[0, 0] = not flipped[0, 0]
    assert not certify_match_exact(s, flipped, w)["ok"]
    assert not certify_match_exact(s, P, np.full_like(w, np.nan))["ok"]
    with pytest.raises(ValueError):
        certify_match_exact(s, P[:1], w)


def test_certificate_rejects_points_off_the_solution_set():
    """A point near a pattern whose equations are inconsistent (r < dm) is rejected: the
    exact projection cannot satisfy every row."""
    net = fastmp.ShallowReLU(3, 6, 2)
    mask = rows_mask(6, 3, [1, 1, 1])                           # r = 3 < dm = 4
    s = relu_trial_system(net, mask, 2, 0, 0)
    P = np.ones((2, 3), bool)
    E, f = s.equations(P)
    w = np.linalg.lstsq(E, f, rcond=None)[0]
    assert not certify_match_exact(s, P, w)["ok"]


# ------------------------------------------------------------------ match_probability
def test_match_probability_dispatches_relu_search():
    net = fastmp.ShallowReLU(6, 8, 4)
    alloc = fastmp.Allocation(net, {"W1": random_mask((8, 6), 24, np.random.default_rng(0),
                                                      k=6, row_cap=6, col_cap=4)})
    res = fastmp.match_probability(net, alloc, trials=6, seed=0, starts=16)   # k m = 36
    assert res.method == "relu-search"
    assert res.budget["budget_limited"] and res.budget["starts"] == 16
    assert "certified" in res.budget["criterion"]
    assert set(res.budget["mp_by_starts"]) >= {"1", "16"}
    small = fastmp.Allocation(net, {"W1": rows_mask(8, 6, [1, 1, 1, 1])})
    res2 = fastmp.match_probability(net, small, m=1, trials=3, seed=0)       # k m = 4
    assert res2.method == "relu-exact"
    res3 = fastmp.match_probability(net, small, m=1, trials=3, seed=0, method="relu-search")
    assert res3.method == "relu-search"
    with pytest.raises(ValueError):
        fastmp.match_probability(fastmp.LinearEstimator(2, 2),
                                 fastmp.Allocation(fastmp.LinearEstimator(2, 2),
                                                   {"W": np.ones((2, 2), bool)}),
                                 method="relu-search")


def test_run_relu_search_same_trials_as_exact():
    """Trial t of the search is trial t of the exact decision (same draws)."""
    net = fastmp.ShallowReLU(6, 10, 2)
    alloc = fastmp.Allocation(net, {"W1": random_mask((10, 6), 8, np.random.default_rng(3),
                                                      k=4, row_cap=4, col_cap=2)})
    st_s, info = run_relu_search(net, alloc, 4, 16, 5, starts=128)
    st_e, _ = run_relu_exact(net, alloc, 4, 16, 5)
    assert np.all(st_e[st_s == MATCH] == MATCH)
    assert info["method"] == "relu-search" and len(info["starts_per_trial"]) == 16
    with pytest.raises(ValueError):
        run_relu_search(net, alloc, 4, 0, 0)
    with pytest.raises(ValueError):
        run_relu_search(net, fastmp.Allocation(net, {"W2": np.ones((2, 10), bool)}), 4, 2, 0)


# ------------------------------------------------------------------ Figure 3b trend
def test_spread_beats_concentrated_with_search():
    """Figure 3b's trend at equal r = dm: four rows of one weight vs one row of four
    (q = 6, n = 8, d = 1, m = 4), Wilson intervals separate."""
    net = fastmp.ShallowReLU(q=6, n=8, d=1)
    out = {}
    for name, counts in (("spread", [1, 1, 1, 1]), ("concentrated", [4])):
        alloc = fastmp.Allocation(net, {"W1": rows_mask(8, 6, counts)})
        res = fastmp.match_probability(net, alloc, m=4, trials=300, seed=2,
                                       method="relu-search", starts=64)
        out[name] = res
    assert out["spread"].ci_low > out["concentrated"].ci_high, (out["spread"].mp,
                                                                out["concentrated"].mp)


# ------------------------------------------------------------------ AdaHessian
def test_adahessian_runs_and_states_its_criterion():
    net = fastmp.ShallowReLU(6, 8, 1)
    alloc = fastmp.Allocation(net, {"W1": rows_mask(8, 6, [1, 1, 1, 1])})
    status, info = run_adahessian(net, alloc, 4, 3, 0, steps=200)
    assert status.shape == (3,) and set(status) <= {MATCH, NO_MATCH}
    assert "MSE < 0.01" in info["criterion"] and "not an exact match" in info["criterion"]
    s = relu_trial_system(net, alloc.mask("W1"), 4, 0, 0)
    out = adahessian_fit(s, steps=50, rng=0)
    assert out["steps"] <= 50 and out["best_mse"] <= out["mse"] + 1e-15


def test_adahessian_accepts_near_misses():
    """The paper's criterion (MSE < 1e-2) accepts trials that have no exact solution
    (measured: q = 6, n = 8, d = 1, m = 4, one row of four weights; 30 trials, AdaHessian
    accepts 3, the exact decision rejects 2 of them)."""
    net = fastmp.ShallowReLU(6, 8, 1)
    mask = rows_mask(8, 6, [4])
    accepted_but_rejected = 0
    for t in range(30):
        s = relu_trial_system(net, mask, 4, 0, t)
        if adahessian_fit(s, steps=1000, rng=t)["accepted"]:
            accepted_but_rejected += exact_decide(s).status != MATCH
    assert accepted_but_rejected > 0


# ------------------------------------------------------------------ pattern counts
@pytest.mark.parametrize("k,m,d,r_row", [(3, 2, 1, [1, 1, 1]), (4, 3, 2, [2, 2, 1, 1]),
                                         (3, 4, 1, [3, 1, 1]), (4, 3, 2, [3, 2, 1, 1]),
                                         (2, 3, 1, [3, 1])])
def test_pattern_count_matches_enumeration(k, m, d, r_row):
    for form in ("rank", "paper"):
        assert pattern_count(k, m, d, r_row, form=form) == len(
            surviving_patterns(k, m, d, r_row, form=form))
    assert pattern_count(k, m, d, r_row, d3=False, d4=False) == 2 ** (k * m)
    # D.3 alone: per sample, at least d of k active
    from math import comb
    assert pattern_count(k, m, d, r_row, d4=False) == sum(
        comb(k, j) for j in range(d, k + 1)) ** m


def test_pattern_counts_shrink_when_concentrated():
    """§5: fewer rows and fuller rows leave fewer patterns (Figure 3b setting)."""
    net = fastmp.ShallowReLU(6, 24, 4)
    fr = []
    for k in (4, 6, 12, 24):
        alloc = fastmp.Allocation(net, {"W1": random_mask((24, 6), 24, np.random.default_rng(k),
                                                          k=k, row_cap=6, col_cap=4)})
        c = pattern_counts(net, alloc, m=6)
        assert c["d3_d4"] <= min(c["d3"], c["d4"]) and c["d3_d4"] == c["d3_d4_paper"]
        fr.append(c["d3_d4"])
    assert fr[0] == 1                        # k = d: every unit active on every sample
    assert fr == sorted(fr)


@pytest.mark.parametrize("q,n,d,m,counts", [(3, 4, 1, 3, [1, 1, 1]), (4, 6, 2, 3, [2, 2, 1, 1]),
                                            (3, 5, 1, 3, [2, 1, 1])])
def test_lemma_pruning_keeps_every_feasible_pattern(q, n, d, m, counts):
    """On draws where the lemmas' assumption holds (system.generic), every pattern brute
    force finds strictly feasible is among the survivors counted by pattern_count."""
    net = fastmp.ShallowReLU(q, n, d)
    mask = rows_mask(n, q, counts)
    r_row = [c for c in counts if c]
    surv = {tuple(P.ravel()) for P in surviving_patterns(len(r_row), m, d, r_row)}
    checked = 0
    for t in range(60):  # at least 5 trials, more until some pattern was feasible
        if t >= 5 and checked:
            break
        s = relu_trial_system(net, mask, m, 4, t)
        if not s.generic:
            continue
        bf = brute_force_decide(s, find_all=True)
        for key in bf.feasible:
            P = np.array(key, bool).reshape(m, len(r_row))
            assert tuple(P.ravel()) in surv
            assert lemma_prunes(s, P) is None
            checked += 1
    assert checked > 0


# ------------------------------------------------------------------ Theorem 4.1
def test_row_budget_violation_is_minimal_on_generic_draws():
    """A row of W1 holding more than m weights (r = dm): Lemma D.4 leaves no pattern, and
    the exact decision finds no match on any draw where the lemma's assumption holds."""
    net = fastmp.ShallowReLU(q=3, n=8, d=2)
    alloc = fastmp.Allocation(net, {"W1": rows_mask(8, 3, [3, 1])})          # m = 2
    rows_v, cols_v, minimal = theorem41_relu(net, alloc, m=2)
    assert rows_v == [0] and minimal
    assert pattern_counts(net, alloc, m=2)["d3_d4"] == 0
    for t in range(30):
        s = relu_trial_system(net, alloc.mask("W1"), 2, 0, t)
        if s.generic:
            assert exact_decide(s, lemmas=False).status == NO_MATCH


def test_column_budget_violation_is_not_minimal_for_relu():
    """Theorem 4.1's column budget (<= d per column) is necessary for the linear network
    but not with ReLU: one input column feeding two units with different activation
    patterns gives independent equations. q = 3, d = 1, m = 2, both weights in column 0."""
    net = fastmp.ShallowReLU(q=3, n=6, d=1)
    mask = np.zeros((6, 3), bool)
    mask[0, 0] = mask[1, 0] = True
    alloc = fastmp.Allocation(net, {"W1": mask})
    rows_v, cols_v, minimal = theorem41_relu(net, alloc, m=2)
    assert cols_v == [0] and not minimal
    lin = fastmp.LinearFFN((3, 6, 1))
    lin_alloc = fastmp.Allocation(lin, {"W1": mask})
    assert fastmp.classify(lin, lin_alloc, m=2).kind == "minimal"
    status, info = run_relu_exact(net, alloc, 2, 60, 0)
    generic_matches = [t for t in np.flatnonzero(status == MATCH)
                       if relu_trial_system(net, mask, 2, 0, int(t)).generic]
    assert len(generic_matches) > 0


# ------------------------------------------------------------------ Newton step kernel
def test_newton_step_square_singular_and_consistent():
    """The allocation-free step of the pattern search (fastmp.kernels.relu._newton_step):
    a square nonsingular pattern system is solved exactly by LU (``unique``); a singular
    one takes the Levenberg-Marquardt step, which on a consistent system solves it and is
    (to rounding) the step of minimum norm, and on an inconsistent one is the
    least-squares step (normal equations hold)."""
    from fastmp.kernels.relu import _newton_step
    rng = np.random.default_rng(5)
    r = 12
    scratch = lambda: (np.empty((r, r)), np.empty(r), np.empty((r, r)), np.empty(r))  # noqa: E731
    E = rng.standard_normal((r, r))
    f, w = rng.standard_normal(r), rng.standard_normal(r)
    delta = np.empty(r)
    LU, g, G, Eg = scratch()
    res, unique = _newton_step(E, f, w, delta, 1e-9, LU, g, G, Eg)
    assert unique and res <= 1e-9
    assert np.allclose(w + delta, np.linalg.solve(E, f), rtol=0, atol=1e-10)
    Es = E.copy()
    Es[:, 3] = Es[:, 5]                              # singular: two equal columns
    fc = Es @ rng.standard_normal(r)                 # consistent right-hand side
    res, unique = _newton_step(Es, fc, w, delta, 1e-9, LU, g, G, Eg)
    assert not unique and res <= 1e-6
    assert np.allclose(Es @ (w + delta), fc, rtol=0, atol=1e-6)
    ref = np.linalg.lstsq(Es, fc - Es @ w, rcond=None)[0]
    assert np.linalg.norm(delta) <= np.linalg.norm(ref) * (1 + 1e-9)
    fi = rng.standard_normal(r)                      # inconsistent: least squares
    res, unique = _newton_step(Es, fi, w, delta, 1e-9, LU, g, G, Eg)
    assert not unique and res > 1e-9
    assert np.allclose(Es.T @ (Es @ (w + delta) - fi), 0.0, atol=1e-8)


# ------------------------------------------------------------------ reduced step
def _fig3b_system(n=8, k=6, trial=0, seed=0):
    net = fastmp.ShallowReLU(6, n, 4)
    mask = random_mask((n, 6), 24, np.random.default_rng([seed, n, k, 4]), k=k, row_cap=6,
                       col_cap=4)
    return relu_trial_system(net, mask, 6, seed, trial)


def test_reduced_step_solves_the_pattern_system_like_lu():
    """fastmp.kernels.relu._reduced_step (per-sample / per-unit elimination, square
    system of size sum_i |U_i| - dm) gives the same point as the LU solve of the full
    dm x r pattern system (D.1) wherever it reports success, calls patterns violating
    Lemma D.3 / D.4 singular (their full systems are rank deficient), and succeeds on
    most lemma-obeying patterns."""
    from fastmp.estimators.relu_search import kernel_inputs
    from fastmp.kernels.relu import (REDUCED_OK, REDUCED_SINGULAR, _reduced_step,
                                     _reduced_tables, pattern_equations, repair_pattern)
    s = _fig3b_system()
    xa, b, var_row, V, rhs = kernel_inputs(s)
    m, k, d, r = s.m, s.k, s.d, s.r
    tabs, scr, cols = _reduced_tables(xa, b, V, var_row, s.r_row, True)
    rng = np.random.default_rng(3)
    E, f, delta = np.empty((d * m, r)), np.empty(d * m), np.empty(r)
    ok_count = checked = 0
    for _ in range(300):
        P = rng.random((m, k)) < 0.6
        Z = rng.standard_normal((m, k))
        repair_pattern(P, Z, d, s.r_row)
        w = rng.standard_normal(r)
        res, status = _reduced_step(xa, b, var_row, V, rhs, P, w, delta, 1e-9 * s.f_floor,
                                    cols, s.r_row, tabs, scr)
        ok = status == REDUCED_OK
        pattern_equations(xa, b, var_row, V, rhs, P, E, f)
        if ok:
            ok_count += 1
            assert res <= 1e-9 * s.f_floor
            sol = np.linalg.solve(E, f)
            assert np.allclose(w + delta, sol, rtol=1e-7, atol=1e-7 * np.abs(sol).max())
            assert np.abs(E @ (w + delta) - f).max() <= 1e-9 * s.f_floor
        else:
            checked += 1
    assert ok_count > 150
    # a sample with fewer than d active units, or a unit active on fewer samples than it
    # has weights: singular (rank-deficient full system)
    P = np.ones((m, k), bool)
    P[0, :k - d + 1] = False
    assert _reduced_step(xa, b, var_row, V, rhs, P, np.zeros(r), delta, 1.0, cols,
                         s.r_row, tabs, scr)[1] == REDUCED_SINGULAR
    pattern_equations(xa, b, var_row, V, rhs, P, E, f)
    assert np.linalg.matrix_rank(E) < r
    P = np.ones((m, k), bool)
    j = int(np.argmax(s.r_row))
    P[: m - int(s.r_row[j]) + 1, j] = False
    assert _reduced_step(xa, b, var_row, V, rhs, P, np.zeros(r), delta, 1.0, cols,
                         s.r_row, tabs, scr)[1] == REDUCED_SINGULAR
    pattern_equations(xa, b, var_row, V, rhs, P, E, f)
    assert np.linalg.matrix_rank(E) < r


@pytest.mark.parametrize("n,k", [(8, 5), (8, 6)])
def test_reduced_and_full_search_agree(n, k):
    """The kernel with the reduced step and with the full LU step (``reduced=False``)
    follow the same trajectories on Figure 3b trials: same start, same number of steps,
    same candidate pattern."""
    from fastmp.estimators.relu_search import SEARCH_RES_TOL, kernel_inputs
    from fastmp.kernels.relu import pattern_search
    for t in range(4):
        s = _fig3b_system(n, k, trial=t)
        xa, b, var_row, V, rhs = kernel_inputs(s)
        outs = []
        for reduced in (False, True):
            w, P = np.empty(s.r), np.zeros((s.m, s.k), bool)
            st, it = pattern_search(xa, b, var_row, V, rhs, np.uint64(0), np.uint64(t), 16,
                                    12, 1 / np.sqrt(6), SEARCH_RES_TOL * s.f_floor, 0,
                                    s.r_row, bool(s.generic), w, P, reduced)
            outs.append((st, it, P.copy() if st >= 0 else None))
        assert outs[0][:2] == outs[1][:2]
        if outs[0][0] >= 0:
            assert np.array_equal(outs[0][2], outs[1][2])


def test_structured_lm_step_matches_the_full_one():
    """fastmp.kernels.relu._lm_step_pattern assembles the Levenberg-Marquardt normal
    equations of a singular pattern system from its structure (V^T V and the active
    inputs) instead of the rows of E(P): on patterns violating Lemma D.4 (rank-deficient
    systems) its step satisfies the same normal equations as _newton_step's, and it
    reports the residual of the full equations (D.1) at the new point."""
    from fastmp.estimators.relu_search import kernel_inputs
    from fastmp.kernels.relu import _lm_step_pattern, _newton_step, pattern_equations
    s = _fig3b_system()
    xa, b, var_row, V, rhs = kernel_inputs(s)
    m, k, d, r = s.m, s.k, s.d, s.r
    M = d * m
    rng = np.random.default_rng(8)
    VtV = np.ascontiguousarray(V.T @ V)
    E, f = np.empty((M, r)), np.empty(M)
    tested = 0
    for _ in range(40):
        P = np.ones((m, k), bool)
        j = int(rng.integers(k))
        P[rng.permutation(m)[: m - int(s.r_row[j]) + 1], j] = False   # Lemma D.4 fails
        w = rng.standard_normal(r) / np.sqrt(6)
        pattern_equations(xa, b, var_row, V, rhs, P, E, f)
        assert np.linalg.matrix_rank(E) < r
        d_full = np.empty(r)
        _newton_step(E, f, w, d_full, 1e-9 * s.f_floor, np.empty((M, M)), np.empty(M),
                     np.empty((M, M)), np.empty(r))
        delta, wn, Zn = np.empty(r), np.empty(r), np.empty((m, k))
        res, ok = _lm_step_pattern(xa, b, var_row, V, rhs, P, w, delta, 1e-9 * s.f_floor, VtV,
                                   np.empty((m, k)), np.empty((m, d)), np.empty((m, k)),
                                   np.empty((r, m)), np.empty((M, M)), np.empty(r),
                                   np.empty((M, M)), Zn, wn)
        if not ok:
            continue
        tested += 1
        g = f - E @ w
        G = E.T @ E
        lam = 1e-12 * np.diag(G).max()
        for step in (delta, d_full):
            lhs = (G + lam * np.eye(r)) @ step
            assert np.allclose(lhs, E.T @ g, rtol=0, atol=1e-6 * np.abs(E.T @ g).max())
        assert np.array_equal(wn, w + delta)
        assert res == pytest.approx(np.abs(E @ wn - f).max(), rel=1e-9)
    assert tested >= 30
