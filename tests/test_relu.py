"""Exact activation-pattern decision for W1 allocations of a ShallowReLU (Appendix D)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastmp
from fastmp import AMBIGUOUS, MATCH, NO_MATCH, wilson_interval
from fastmp.estimators.relu import (brute_force_decide, exact_decide, lemma_prunes,
                                    relu_system_from_draws, relu_trial_system,
                                    run_relu_exact, verify_match)


def random_mask(n, q, r, rng):
    mask = np.zeros((n, q), bool)
    mask.ravel()[rng.choice(n * q, size=r, replace=False)] = True
    return mask


def rows_mask(n, q, counts):
    """Row i holds counts[i] learnable weights (columns i, i+1, ... mod q)."""
    mask = np.zeros((n, q), bool)
    for i, c in enumerate(counts):
        mask[i, [(i + j) % q for j in range(c)]] = True
    return mask


def independent_check(system, P, w):
    """Forward pass written out here (not through the module): outputs reproduced and
    the activation pattern of the used rows equals P strictly."""
    teacher, student, X = system.teacher, system.student, system.X
    W1 = student["W1"].copy()
    W1[system.mask] = w                                   # row-major, like np.nonzero
    Y = student["W2"] @ np.maximum(W1 @ X, 0.0)
    Ystar = teacher["W2"] @ np.maximum(teacher["W1"] @ X, 0.0)
    assert np.allclose(Y, Ystar, rtol=0, atol=1e-9 * max(1.0, np.abs(Ystar).max()))
    Z = (W1[system.used] @ X).T
    assert np.array_equal(Z > 0, np.asarray(P, bool))
    assert np.all(Z != 0)


# --------------------------------------------------------------------------- system
@pytest.mark.parametrize("q,n,d,r,m", [(3, 4, 1, 3, 3), (3, 4, 2, 5, 2), (4, 5, 2, 6, 3)])
def test_system_reproduces_the_forward_pass(q, n, d, r, m):
    """At the student's own draws, z = W1 x and E w - f = Y_student - Y*."""
    net = fastmp.ShallowReLU(q, n, d)
    mask = random_mask(n, q, r, np.random.default_rng(r))
    s = relu_trial_system(net, mask, m, seed=3, trial=5)
    teacher, student, X = net.trial_draws(3, 5, m)
    w = student["W1"][mask]
    Z, _ = s.z(w)
    assert np.allclose(Z, (student["W1"] @ X)[s.used].T)
    E, f = s.equations(Z > 0)
    Ys, Yt = net.forward(student, X), net.forward(teacher, X)
    assert np.allclose(E @ w - f, (Ys - Yt).T.ravel())
    assert s.k == mask.any(axis=1).sum() and s.r == r and s.d == d


def test_relu_system_from_draws_validates():
    net = fastmp.ShallowReLU(3, 4, 1)
    with pytest.raises(ValueError, match="shape"):
        relu_trial_system(net, np.ones((3, 4), bool), 2, 0, 0)
    with pytest.raises(ValueError, match="empty"):
        relu_trial_system(net, np.zeros((4, 3), bool), 2, 0, 0)
    with pytest.raises(TypeError):
        relu_trial_system(fastmp.LinearEstimator(3, 1), np.ones((1, 3), bool), 2, 0, 0)


# --------------------------------------------------------------------------- oracle
def _compare(s):
    bf = brute_force_decide(s, find_all=True)
    ex = exact_decide(s, find_all=True)
    matched, P, w = bf
    assert matched == (bf.status == MATCH)
    assert bf.status == ex.status, (bf.status, ex.status)
    assert set(bf.feasible) == set(ex.feasible)
    for dec in (bf, ex):
        if dec.status == MATCH:
            independent_check(s, dec[1], dec[2])
            assert dec.verify["ok"] and dec.boundary == 0
    if s.generic:                         # Lemmas D.3/D.4 never remove a feasible pattern
        for P in bf.feasible:
            assert lemma_prunes(s, P) is None
    return bf, ex


@given(q=st.integers(2, 4), n=st.integers(2, 5), d=st.integers(1, 2), m=st.integers(1, 4),
       extra=st.integers(-1, 1), mseed=st.integers(0, 2**16), seed=st.integers(0, 2**16),
       trial=st.integers(0, 1000))
def test_exact_equals_brute_force(q, n, d, m, extra, mseed, seed, trial):
    """r = dm - 1, dm, dm + 1 on random small networks, k m <= 8."""
    r = d * m + extra
    assume(n >= d and 1 <= r <= n * q and min(n, r) * m <= 8)
    mask = random_mask(n, q, r, np.random.default_rng(mseed))
    assume(mask.any(axis=1).sum() * m <= 8)
    net = fastmp.ShallowReLU(q, n, d)
    _compare(relu_trial_system(net, mask, m, seed, trial))


CASES = [  # (q, n, d, m, r, k m bound): r = dm and dm + 1
    (3, 4, 1, 3, 3, 9), (3, 4, 1, 3, 4, 9), (3, 4, 2, 2, 4, 8), (3, 4, 2, 2, 5, 8),
    pytest.param(3, 4, 1, 4, 4, 12, marks=pytest.mark.slow),
    pytest.param(3, 4, 1, 4, 5, 12, marks=pytest.mark.slow),
    pytest.param(3, 4, 2, 3, 6, 12, marks=pytest.mark.slow),
    pytest.param(4, 4, 2, 3, 7, 12, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("q,n,d,m,r,km", CASES)
def test_exact_equals_brute_force_cases(q, n, d, m, r, km):
    net = fastmp.ShallowReLU(q, n, d)
    rng = np.random.default_rng(100 * d + 10 * m + r)
    mask = random_mask(n, q, r, rng)
    while mask.any(axis=1).sum() * m > km:
        mask = random_mask(n, q, r, rng)
    outcomes = [_compare(relu_trial_system(net, mask, m, 7, t))[0].status for t in range(4)]
    assert AMBIGUOUS not in outcomes


@pytest.mark.slow
def test_exact_equals_brute_force_random_km12():
    """80 random networks, allocations (r = dm - 1 .. dm + 2) and trials with k m <= 12."""
    rng = np.random.default_rng(2024)
    done = 0
    while done < 80:
        q, n, d, m = (int(v) for v in (rng.integers(2, 5), rng.integers(2, 6),
                                       rng.integers(1, 3), rng.integers(1, 5)))
        r = d * m + int(rng.integers(-1, 3))
        if n < d or not 1 <= r <= n * q:
            continue
        mask = random_mask(n, q, r, rng)
        if mask.any(axis=1).sum() * m > 12:
            continue
        net = fastmp.ShallowReLU(q, n, d)
        _compare(relu_trial_system(net, mask, m, int(rng.integers(1000)), int(rng.integers(1000))))
        done += 1


def test_lemma_pruning_never_removes_a_feasible_pattern():
    """All feasible patterns by brute force, on generic trials: each survives Lemma D.3
    and D.4 (and the branch and bound finds exactly the same set)."""
    found = 0
    for (q, n, d, m, counts) in [(3, 4, 1, 3, [2, 1, 1]), (3, 4, 1, 2, [1, 1, 1]),
                                 (3, 4, 2, 2, [2, 2, 1]), (3, 4, 2, 2, [2, 1, 1, 1])]:
        net = fastmp.ShallowReLU(q, n, d)
        mask = rows_mask(n, q, counts)
        for t in range(6):
            s = relu_trial_system(net, mask, m, 11, t)
            if not s.generic:
                continue
            bf, _ = _compare(s)
            found += len(bf.feasible)
            plain = exact_decide(s, find_all=True, lemmas=False)
            assert set(plain.feasible) == set(bf.feasible)
    assert found >= 30                   # the check is not vacuous


def _atom_trials(net, mask, m, seed, trials):
    """Trials whose right-hand sides are not generic (a sample with every teacher unit
    and every unused student unit inactive has rhs = 0 exactly)."""
    return [s for s in (relu_trial_system(net, mask, m, seed, t) for t in range(trials))
            if not s.generic]


def test_lemma_d3_fails_on_zero_outputs_and_is_not_applied_there():
    """ReLU outputs have an atom at 0: with rhs_i = 0 the all-inactive pattern solves
    sample i's equations, so Lemma D.3 ("fewer than d active rows: probability 0") is
    false there. The search only prunes by the lemmas when the rhs are generic."""
    net = fastmp.ShallowReLU(q=3, n=2, d=2)
    mask = rows_mask(2, 3, [3])               # k = 1 < d: Lemma D.3 "minimal"
    atoms = _atom_trials(net, mask, 1, 0, 60)
    assert atoms
    hits = 0
    for s in atoms:
        bf, ex = _compare(s)
        if bf.status == MATCH:
            hits += 1
            assert lemma_prunes(s, bf[1]) == "D.3"
            assert np.all(s.rhs == 0)
    assert hits >= 1


def test_lp_backends_agree():
    """The direct HiGHS call and scipy.optimize.linprog solve the same margin LPs."""
    from fastmp.estimators import relu
    if relu._CORE is None:
        pytest.skip("scipy's HiGHS bindings are not importable: linprog is used anyway")
    rng = np.random.default_rng(0)
    for _ in range(50):
        nf, rows = int(rng.integers(1, 6)), int(rng.integers(1, 14))
        G, h = rng.standard_normal((rows, nf)), rng.standard_normal(rows)
        G[rng.random(G.shape) < 0.2] = 0.0
        t1, u1 = relu._margin_lp(G, h, nf, backend="highs-core")
        t2, u2 = relu._margin_lp(G, h, nf, backend="linprog")
        assert t1 == pytest.approx(t2, abs=1e-9)
        assert np.min(G @ u1 + h) >= t1 - 1e-9
    net = fastmp.ShallowReLU(3, 4, 1)
    mask = rows_mask(4, 3, [1, 1, 1])
    for t in range(4):
        s = relu_trial_system(net, mask, 3, 0, t)
        a = exact_decide(s, find_all=True)
        try:
            relu.LP_BACKEND = "linprog"
            b = exact_decide(s, find_all=True)
        finally:
            relu.LP_BACKEND = "highs-core"
        assert a.status == b.status and set(a.feasible) == set(b.feasible)


# --------------------------------------------------------------------------- boundary
def _tiny(x):
    """ShallowReLU(1, 1, 1) with a zero teacher (y = 0): z_i = w x_i."""
    net = fastmp.ShallowReLU(1, 1, 1)
    teacher = {"W1": np.array([[0.7]]), "W2": np.zeros((1, 1))}
    student = {"W1": np.array([[0.3]]), "W2": np.array([[1.5]])}
    return relu_system_from_draws(net, np.ones((1, 1), bool), teacher, student,
                                  np.array([x], float))


def test_solutions_only_on_the_boundary_are_ambiguous():
    """x = (1, -1): only w = 0 (z = 0 in both samples) reproduces y = 0: every pattern's
    solutions sit on a sign boundary, so the trial is AMBIGUOUS, never a match."""
    s = _tiny([1.0, -1.0])
    for dec in (brute_force_decide(s), exact_decide(s)):
        assert dec.status == AMBIGUOUS and not dec[0]
        assert dec.boundary == 2 and dec.undecided > 0


def test_strict_solution_is_a_match():
    s = _tiny([1.0, 2.0])                     # any w < 0 works, strictly
    for dec in (brute_force_decide(s), exact_decide(s)):
        assert dec.status == MATCH and dec[2][0] < 0
        assert dec.verify["ok"] and dec.verify["boundary"] == 0
        assert np.array_equal(dec[1], [[False], [False]])


def test_verify_match_flags_boundary_and_wrong_patterns():
    s = _tiny([1.0, 2.0])
    assert verify_match(s, [[False], [False]], [-1.0])["ok"]
    v = verify_match(s, [[False], [False]], [0.0])
    assert not v["ok"] and v["boundary"] == 2 and v["rel_err"] == 0
    v = verify_match(s, [[True], [True]], [1.0])          # outputs 1.5 x != 0
    assert not v["ok"] and v["rel_err"] > 0.1


# --------------------------------------------------------------------------- driver
def test_run_relu_exact_statuses_and_info():
    net = fastmp.ShallowReLU(3, 4, 2)
    alloc = fastmp.Allocation(net, {"W1": rows_mask(4, 3, [1, 1, 1, 1])})
    status, info = run_relu_exact(net, alloc, 2, 12, 0)
    assert status.dtype == np.int8 and status.shape == (12,)
    assert set(np.unique(status)) <= {MATCH, NO_MATCH, AMBIGUOUS}
    assert info["method"] == "relu-exact" and info["k"] == 4
    assert info["search_space"] == 2**8
    assert info["patterns_explored"] == sum(info["patterns_per_trial"])
    assert info["lps"] == sum(info["lps_per_trial"])
    for key in ("boundary_trials", "ambiguous", "undecided_patterns", "non_generic_trials"):
        assert info[key] >= 0
    # per trial it is exact_decide on the trial's system
    for t in range(4):
        s = relu_trial_system(net, alloc.mask("W1"), 2, 0, t)
        assert exact_decide(s).status == status[t]


def test_run_relu_exact_rejects():
    net = fastmp.ShallowReLU(3, 4, 2)
    w2 = fastmp.Allocation(net, {"W2": np.ones((2, 4), bool)})
    with pytest.raises(ValueError, match="confined to W1"):
        run_relu_exact(net, w2, 2, 5, 0)
    both = fastmp.Allocation(net, {"W1": rows_mask(4, 3, [1, 1]), "W2": np.eye(2, 4, dtype=bool)})
    with pytest.raises(ValueError, match="confined to W1"):
        run_relu_exact(net, both, 2, 5, 0)
    big = fastmp.Allocation(net, {"W1": rows_mask(4, 3, [2, 2, 2, 2])})
    with pytest.raises(ValueError, match="max_patterns"):
        run_relu_exact(net, big, 6, 5, 0)                       # 2^24 patterns
    with pytest.raises(ValueError, match="max_patterns"):
        run_relu_exact(net, big, 2, 5, 0, max_patterns=100)     # 2^8 > 100


def test_brute_force_is_for_tiny_systems_only():
    net = fastmp.ShallowReLU(3, 4, 1)
    s = relu_trial_system(net, rows_mask(4, 3, [1, 1, 1, 1]), 5, 0, 0)
    with pytest.raises(AssertionError):
        brute_force_decide(s)


def test_lemma_d3_minimal_gives_zero():
    """k = 1 < d = 2 used rows (Lemma D.3). n = 8 keeps the rhs = 0 atom (probability
    2^-15 per trial) out of reach."""
    net = fastmp.ShallowReLU(q=3, n=8, d=2)
    alloc = fastmp.Allocation(net, {"W1": rows_mask(8, 3, [3])})
    c = fastmp.classify(net, alloc, m=1)
    assert c.kind == "undetermined" and "D.3" in c.rule   # MP tiny, not provably 0
    status, info = run_relu_exact(net, alloc, 1, 100, 0)
    assert np.all(status == NO_MATCH)
    assert info["non_generic_trials"] == 0


def test_lemma_d4_minimal_gives_zero():
    """r = dm with a row holding 3 > m = 2 weights (Lemma D.4)."""
    net = fastmp.ShallowReLU(q=3, n=6, d=2)
    alloc = fastmp.Allocation(net, {"W1": rows_mask(6, 3, [3, 1])})
    c = fastmp.classify(net, alloc, m=2)
    assert c.kind == "undetermined" and "D.4" in c.rule
    status, _ = run_relu_exact(net, alloc, 2, 100, 0)
    assert np.all(status == NO_MATCH)


def test_lemma_d3_minimal_has_positive_mp_at_tiny_n():
    """Exact MP of a 'minimal' allocation is not 0 when n is tiny: with probability
    2^-(2n-k) = 1/8 every teacher unit and the unused student unit are inactive, y = 0,
    and the learnable row can switch itself off. Every match is such a trial."""
    net = fastmp.ShallowReLU(q=3, n=2, d=2)
    alloc = fastmp.Allocation(net, {"W1": rows_mask(2, 3, [3])})
    assert fastmp.classify(net, alloc, m=1).kind != "minimal"   # the lemma's bound only
    status, info = run_relu_exact(net, alloc, 1, 160, 0)
    matches = np.flatnonzero(status == MATCH)
    lo, hi = wilson_interval(matches.size, 160)
    assert lo <= 0.125 <= hi and matches.size > 0
    for t in matches:
        assert not relu_trial_system(net, alloc.mask("W1"), 1, 0, int(t)).generic


def test_row_beyond_m_with_surplus_weights_can_match():
    """Lemma D.4 needs r = dm: with r > dm a row may hold more than m weights (here one
    row with all q = 3 weights, d = 1, m = 2 samples, r = 3 > dm = 2): the rank bound is
    sum_j max(0, r_j - c_j) <= r - dm, met with both samples active."""
    net = fastmp.ShallowReLU(q=3, n=4, d=1)
    alloc = fastmp.Allocation(net, {"W1": rows_mask(4, 3, [3])})
    status, _ = run_relu_exact(net, alloc, 2, 60, 0)
    assert np.count_nonzero(status == MATCH) >= 5


def test_classify_agrees_on_rows_beyond_m_with_surplus():
    net = fastmp.ShallowReLU(q=3, n=4, d=1)
    alloc = fastmp.Allocation(net, {"W1": rows_mask(4, 3, [3])})
    assert fastmp.classify(net, alloc, m=2).kind != "minimal"


# --------------------------------------------------------------------------- spread
def _mp(net, counts, m, trials, seed=0):
    alloc = fastmp.Allocation(net, {"W1": rows_mask(net.n, net.q, counts)})
    status, info = run_relu_exact(net, alloc, m, trials, seed)
    assert info["ambiguous"] == 0
    return int(np.count_nonzero(status == MATCH)), trials


@pytest.mark.parametrize("d,m,spread,conc", [(1, 3, [1, 1, 1], [3]),
                                              (2, 2, [1, 1, 1, 1], [2, 2])])
def test_spread_beats_concentrated_point_estimates(d, m, spread, conc):
    """Same r = dm: weights spread over more rows vs concentrated in few (Lemma D.4 leaves
    the concentrated ones a single pattern: every used row active on every sample)."""
    net = fastmp.ShallowReLU(q=6, n=8, d=d)
    xs, _ = _mp(net, spread, m, 250)
    xc, _ = _mp(net, conc, m, 250)
    assert xs > xc


@pytest.mark.slow
@pytest.mark.parametrize("d,m,spread,conc,trials", [
    (1, 3, [1, 1, 1], [3], 600),
    (2, 2, [1, 1, 1, 1], [2, 2], 1500),
])
def test_spread_beats_concentrated_wilson(d, m, spread, conc, trials):
    net = fastmp.ShallowReLU(q=6, n=8, d=d)
    xs, _ = _mp(net, spread, m, trials)
    xc, _ = _mp(net, conc, m, trials)
    lo_s, _ = wilson_interval(xs, trials)
    _, hi_c = wilson_interval(xc, trials)
    assert lo_s > hi_c, (xs / trials, xc / trials)


@pytest.mark.slow
@pytest.mark.parametrize("q,n,d,m,counts", [(3, 4, 1, 4, [1, 1, 1, 1]), (3, 4, 2, 4, [2, 2, 2, 2])])
def test_exact_equals_brute_force_km16(q, n, d, m, counts):
    net = fastmp.ShallowReLU(q, n, d)
    mask = rows_mask(n, q, counts)
    for t in range(2):
        s = relu_trial_system(net, mask, m, 1, t)
        bf, ex = brute_force_decide(s), exact_decide(s)
        assert bf.status == ex.status
        if ex.status == MATCH:
            independent_check(s, ex[1], ex[2])
