"""The exact linear estimator against the theory oracle (Theorems 3.1, 3.2, 4.1, §2.1)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmp
from fastmp.generators import budget_allocation, random_mask, theorem31
from fastmp.theory import generic_decision
from naive import naive_solvable, naive_system


KINDS = ["estimator", "lrnn_D", "lrnn_B", "ffn_first", "ffn_middle", "ffn_last"]


@st.composite
def linear_cases(draw, kind):
    if kind == "estimator":
        q, d = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        model, name = fastmp.LinearEstimator(q, d), "W"
        m = draw(st.integers(1, q + 1))          # m = q + 1: outside the paper's assumption
    elif kind.startswith("lrnn"):
        T, b, d = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        model = fastmp.LRNN(n=T * b + draw(st.integers(0, 3)), T=T, b=b, d=d)
        name = kind[-1]
        m = draw(st.integers(1, T * b))
    else:
        q, d = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        lo = 2 if kind == "ffn_middle" else 0
        hidden = draw(st.lists(st.integers(max(q, d), max(q, d) + 3), min_size=lo, max_size=3))
        model = fastmp.LinearFFN((q, *hidden, d))
        names = model.param_names
        name = {"ffn_first": names[0], "ffn_last": names[-1]}.get(kind) or draw(st.sampled_from(names[1:-1]))
        m = draw(st.integers(1, q + 1))
    rows, cols = model.param_shapes[name]
    size = rows * cols
    r = draw(st.sampled_from([model.d * m, model.d * m, model.d * m + 1, model.d * m - 1]))
    r = min(max(r, 1), size)
    seed = draw(st.integers(0, 2**32 - 1))
    budget = draw(st.booleans())
    row_cap = col_cap = None
    if budget and name in ("B",) + tuple(f"W{i}" for i in range(1, 5)):
        row_cap, col_cap = m * (model.T if kind == "lrnn_B" else 1), model.d * (model.T if kind == "lrnn_B" else 1)
    try:
        mask = random_mask((rows, cols), r, seed, use_all=False, row_cap=row_cap, col_cap=col_cap)
    except ValueError:
        mask = random_mask((rows, cols), r, seed, use_all=False)
    return model, fastmp.Allocation(model, {name: mask}), m, seed


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=1000)
@given(data=st.data())
def test_exact_estimator_agrees_with_classify_and_is_zero_one(kind, data):
    model, alloc, m, seed = data.draw(linear_cases(kind))
    res = fastmp.match_probability(model, alloc, m=m, trials=16, seed=seed % 1000)
    assert res.ambiguous == 0
    assert res.mp in (0.0, 1.0), "linear allocations are maximal or minimal (0/1 dichotomy)"
    exact = fastmp.classify(model, alloc, m=m)
    assert exact.kind != "undetermined"              # exact=True decides every linear case
    assert res.mp == (1.0 if exact.kind == "maximal" else 0.0), exact
    theory = fastmp.classify(model, alloc, m=m, exact=False)
    if theory.kind != "undetermined":
        assert theory.kind == exact.kind, (theory, exact)


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.integers(2, 4), st.integers(1, 3))
def test_theorem_4_1_budgets_are_necessary_but_not_sufficient(seed, m, extra):
    """Allocations within Theorem 4.1's row/column budgets: classify (corrected count
    condition) and the estimator agree, including the rank-deficient ones."""
    d = m + extra
    net = fastmp.LinearFFN((m, d + 2, d + 2, d))
    alloc = budget_allocation(net, "W2", m, rng=seed)
    c = fastmp.classify(net, alloc, exact=False)
    res = fastmp.match_probability(net, alloc, trials=8, seed=seed % 997)
    assert c.kind in ("maximal", "minimal")
    assert res.mp == (1.0 if c.kind == "maximal" else 0.0)


def test_issue_example_4_8_8_6_row_and_column_not_meeting():
    """A row with m = 4 and a column with d = 6 weights that do not intersect: within the
    budgets of Theorem 4.1, yet rank 23 < 24 on every draw."""
    net = fastmp.LinearFFN((4, 8, 8, 6))
    mask = np.zeros((8, 8), bool)
    mask[0, :4] = True            # row 0: m weights
    mask[1:7, 7] = True           # column 7: d weights, not in row 0
    extra = [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, 6), (7, 0), (2, 4), (3, 5),
             (4, 6), (5, 6), (6, 4), (7, 1)]
    for i, j in extra:
        mask[i, j] = True
    assert mask.sum() == 24 and mask.sum(1).max() <= 4 and mask.sum(0).max() <= 6
    alloc = fastmp.Allocation(net, {"W2": mask})
    c = fastmp.classify(net, alloc)
    assert c.kind == "minimal" and "corrected" in c.rule
    g = generic_decision(net, alloc)
    assert g.rank == 23
    assert fastmp.match_probability(net, alloc, trials=200).mp == 0.0


def test_warm_up_example_section_2_1():
    """d = 2, m = 2, r = 4: two weights per row => MP 1; moving one weight => MP 0."""
    net = fastmp.LinearEstimator(q=3, d=2)
    equal = fastmp.Allocation(net, {"W": np.array([[1, 1, 0], [0, 1, 1]], bool)})
    moved = fastmp.Allocation(net, {"W": np.array([[1, 1, 1], [0, 0, 1]], bool)})
    assert fastmp.match_probability(net, equal, trials=500).mp == 1.0
    assert fastmp.match_probability(net, moved, trials=500).mp == 0.0
    assert fastmp.classify(net, equal).kind == "maximal"
    assert fastmp.classify(net, moved).kind == "minimal"


def test_more_samples_than_inputs_is_outside_lemma_b4_and_still_exact():
    """m = 3 > q = 2: the outputs live in the row space of X, so r = 2 < dm = 3 weights
    suffice. Lemma B.4 does not apply; the exact estimator and generic rank say MP = 1."""
    net = fastmp.LinearEstimator(q=2, d=1)
    alloc = fastmp.Allocation(net, {"W": np.ones((1, 2), bool)})
    assert fastmp.classify(net, alloc, m=3, exact=False).kind == "undetermined"
    assert fastmp.classify(net, alloc, m=3).kind == "maximal"
    assert fastmp.match_probability(net, alloc, m=3, trials=300).mp == 1.0


@pytest.mark.parametrize("m,r_rows", [(3, [4, 4]), (3, [3, 2]), (2, [1, 3])])
def test_non_square_systems(m, r_rows):
    """m != r/d: more unknowns than equations is solvable iff every row has >= m."""
    net = fastmp.LRNN(n=6, T=3, b=1, d=2)
    mask = np.zeros((2, 6), bool)
    for i, k in enumerate(r_rows):
        mask[i, :k] = True
    alloc = fastmp.Allocation(net, {"D": mask})
    expected = 1.0 if min(r_rows) >= m else 0.0
    assert fastmp.match_probability(net, alloc, m=m, trials=300).mp == expected


def test_relu_decoder_mp_strictly_between():
    """W2 of a ShallowReLU: relu(W1 X) has exact zeros, so a decoder allocation meeting
    Theorem 3.1's count can still fail: MP strictly inside (0, 1)."""
    net = fastmp.ShallowReLU(q=4, n=6, d=2)
    alloc = theorem31(net, m=4, rng=0)
    res = fastmp.match_probability(net, alloc, trials=2000, seed=1)
    assert 0.0 < res.mp < 1.0
    assert res.ci_low > 0.0 and res.ci_high < 1.0
    assert fastmp.classify(net, alloc).kind == "undetermined"
    # each trial's decision equals a least-squares check of the naive system
    for t in range(30):
        C, rhs = naive_system(net, "W2", alloc.mask("W2"), 4, 1, t)
        assert naive_solvable(C, rhs) == bool(res.status[t] == fastmp.MATCH)


def test_same_seed_same_result_regardless_of_batch_size():
    net = fastmp.ShallowReLU(q=4, n=6, d=2)
    alloc = theorem31(net, m=4, rng=0)
    a = fastmp.match_probability(net, alloc, trials=1000, seed=9, batch_size=1000)
    b = fastmp.match_probability(net, alloc, trials=1000, seed=9, batch_size=37)
    c = fastmp.match_probability(net, alloc, trials=1000, seed=10)
    assert np.array_equal(a.status, b.status) and a.mp == b.mp
    assert not np.array_equal(a.status, c.status)


BACKEND_CASES = [
    (fastmp.LinearFFN((4, 16, 16, 6)), "W2", 4),
    (fastmp.LRNN(n=8, T=2, b=2, d=3), "B", 4),
    (fastmp.LinearEstimator(q=4, d=3), "W", 3),
    (fastmp.ShallowReLU(q=4, n=6, d=2), "W2", 4),
]


@pytest.mark.parametrize("model,name,m", BACKEND_CASES, ids=lambda x: repr(x))
def test_numba_and_cython_backends_identical_decisions(model, name, m):
    pytest.importorskip("fastmp._ext._lapack")
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = random_mask(model.param_shapes[name], model.d * m, rng, use_all=False)
        alloc = fastmp.Allocation(model, {name: mask})
        a = fastmp.match_probability(model, alloc, m=m, trials=400, seed=3, backend="numba")
        b = fastmp.match_probability(model, alloc, m=m, trials=400, seed=3, backend="cython")
        assert np.array_equal(a.status, b.status)


def test_estimator_input_errors():
    net = fastmp.LinearEstimator(q=2, d=2)
    alloc = fastmp.Allocation(net, {"W": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match="trials must be >= 1"):
        fastmp.match_probability(net, alloc, trials=0)
    with pytest.raises(TypeError, match="trials must be an integer"):
        fastmp.match_probability(net, alloc, trials=10.5)
    with pytest.raises(ValueError, match="seed"):
        fastmp.match_probability(net, alloc, seed=-1)
    with pytest.raises(ValueError, match="unknown method"):
        fastmp.match_probability(net, alloc, method="fsolve")
    with pytest.raises(ValueError, match="unknown backend"):
        fastmp.match_probability(net, alloc, backend="gpu")
    with pytest.raises(ValueError, match="allocation is for"):
        fastmp.match_probability(fastmp.LinearEstimator(q=3, d=2), alloc)
    odd = fastmp.Allocation(net, {"W": np.array([[1, 1], [1, 0]], bool)})
    with pytest.raises(ValueError, match="not a multiple of d"):
        fastmp.match_probability(net, odd)


def test_relu_first_layer_beyond_exact_search_runs_the_certified_search():
    relu = fastmp.ShallowReLU(q=2, n=6, d=1)
    big = fastmp.match_probability(relu, fastmp.Allocation(relu, {"W1": np.ones((6, 2), bool)}),
                                   m=12, trials=5)
    assert big.method == "relu-search" and big.budget["budget_limited"]
    with pytest.raises(NotImplementedError, match="W1 and W2"):
        fastmp.match_probability(relu, fastmp.Allocation(
            relu, {"W1": np.ones((6, 2), bool), "W2": np.ones((1, 6), bool)}), m=12)
    res = fastmp.match_probability(relu, fastmp.Allocation(relu, {"W1": np.eye(6, 2, dtype=bool)}),
                                   m=2, trials=20)
    assert res.method == "relu-exact" and 0.0 <= res.mp <= 1.0


@pytest.mark.parametrize("model,name,m", BACKEND_CASES + [(fastmp.LinearFFN((3, 5, 4)), "W1", 3)],
                         ids=lambda x: repr(x))
def test_exact_redecision_agrees_with_clear_float_decisions(model, name, m):
    """The exact path (residues mod p, or rationals for ShallowReLU) used for ambiguous
    trials gives the float decision on trials that are far from the band, for matching
    (full-rank) and for minimal (rank-deficient) allocations."""
    from fastmp.estimators.refine import exact_status
    rng = np.random.default_rng(1)
    rows, cols = model.param_shapes[name]
    masks = [random_mask((rows, cols), model.d * m, rng, use_all=False)]
    short = np.zeros((rows, cols), bool)
    short.ravel()[rng.choice(rows * cols, size=model.d * m - 1, replace=False)] = True
    masks.append(short)                                   # r < dm: never a match
    for mask in masks:
        alloc = fastmp.Allocation(model, {name: mask})
        res = fastmp.match_probability(model, alloc, m=m, trials=6, seed=4)
        for t in range(6):
            assert exact_status(model, name, mask, m, 4, t) == res.status[t]
