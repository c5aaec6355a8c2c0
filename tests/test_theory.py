"""classify() against the statements (and proofs) of the paper's theorems."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmp
from fastmp.generators import (b11_allocations, budget_allocation, random_in_rows,
                               theorem35)
from fastmp.theory import count_bound, generic_decision, worst_violation


def test_b11_four_row_column_allocations_maximal_two_undetermined():
    kinds = {k: fastmp.classify(a.model, a) for k, a in b11_allocations().items()}
    for name in ("row1", "row2", "col1", "col2"):
        assert kinds[name].kind == "maximal" and kinds[name].rule == "Theorem 3.5"
    for name in ("diagonal", "off_diagonal"):
        assert kinds[name].kind == "undetermined"


@pytest.mark.parametrize("n,T,b,d,m", [(8, 4, 1, 4, 4), (12, 6, 1, 4, 6), (12, 3, 2, 2, 6),
                                       (16, 8, 1, 4, 8), (16, 4, 2, 4, 8)])
def test_theorem_3_5_rows_is_maximal(n, T, b, d, m):
    net = fastmp.LRNN(n=n, T=T, b=b, d=d)
    c = fastmp.classify(net, theorem35(net, m=m, rng=0))
    assert (c.kind, c.rule) == ("maximal", "Theorem 3.5")


def test_theorem_3_5_columns_needs_td_le_n():
    net = fastmp.LRNN(n=8, T=2, b=1, d=2)      # Td = 4 <= n
    c = fastmp.classify(net, theorem35(net, m=2, by="columns", rng=0))
    assert (c.kind, c.rule) == ("maximal", "Theorem 3.5")


@settings(max_examples=200)
@given(st.integers(0, 2**31), st.integers(1, 7))
def test_theorem_3_4_rows_beyond_tb_are_minimal(seed, k):
    """Figure 2a setting n=8, T=4, b=1, d=4, m=4 (r=16): a row with > Tb = 4 weights."""
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    rng = np.random.default_rng(seed)
    mask = np.zeros((8, 8), bool)
    i = rng.integers(8)
    mask[i, rng.choice(8, size=5, replace=False)] = True
    free = np.flatnonzero(~mask.ravel())
    mask.ravel()[rng.choice(free, size=11, replace=False)] = True
    c = fastmp.classify(net, fastmp.Allocation(net, {"W": mask}))
    assert (c.kind, c.rule) == ("minimal", "Theorem 3.4")


def test_theorem_3_4_columns():
    net = fastmp.LRNN(n=8, T=2, b=2, d=1)     # Tb = 4, Td = 2; m = 3, r = dm = 3
    mask = np.zeros((8, 8), bool)
    mask[:3, 0] = True                         # column with 3 > Td weights
    c = fastmp.classify(net, fastmp.Allocation(net, {"W": mask}), m=3)
    assert (c.kind, c.rule) == ("minimal", "Theorem 3.4") and "columns" in c.reason


def test_figure_2a_allocations_between_theorems_are_undetermined():
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    for seed in range(20):
        c = fastmp.classify(net, random_in_rows(net, "W", r=16, k=6, rng=seed))
        assert c.kind == "undetermined"


def test_lemma_b4_fewer_weights_than_equations():
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    mask = np.zeros((8, 8), bool)
    mask[:3, :4] = True
    c = fastmp.classify(net, fastmp.Allocation(net, {"W": mask}), m=4)
    assert (c.kind, c.rule) == ("minimal", "Lemma B.4")


def test_lemma_d3_d4_relu_bound_but_never_claim_minimal():
    """Appendix D's lemmas hold only when the relu features have full rank, which fails
    with positive probability: classify names the lemma but answers undetermined."""
    net = fastmp.ShallowReLU(q=6, n=8, d=4)
    few_rows = np.zeros((8, 6), bool)
    few_rows[:3] = True                          # k = 3 < d = 4 rows
    c = fastmp.classify(net, fastmp.Allocation(net, {"W1": few_rows}), m=4)
    assert (c.kind, c.rule) == ("undetermined", "Lemma D.3") and "positive" in c.reason
    heavy = np.zeros((8, 6), bool)
    heavy[:3, :] = True                          # three rows of 6 > m = 5 ...
    heavy[3, :2] = True                          # ... r = 20 = dm
    c = fastmp.classify(net, fastmp.Allocation(net, {"W1": heavy}), m=5)
    assert (c.kind, c.rule) == ("undetermined", "Lemma D.4")
    spread = np.zeros((8, 6), bool)
    spread[:6, :4] = True                         # r = 24 = dm, 6 rows of 4
    c = fastmp.classify(net, fastmp.Allocation(net, {"W1": spread}), m=6)
    assert c.kind == "undetermined" and c.rule == ""


def test_theorem_4_1_as_stated_is_not_sufficient_but_count_condition_is_exact():
    """Budgets alone (row <= m, column <= d) admit minimal allocations; the count
    condition over sets of rows and columns separates them exactly (vs generic rank)."""
    net = fastmp.LinearFFN((4, 8, 8, 6))
    kinds = set()
    for seed in range(150):
        a = budget_allocation(net, "W2", 4, rng=seed)
        ex = worst_violation(a.mask("W2"), 6, 4)[0]
        g = generic_decision(net, a)
        assert (ex <= 0) == g.solvable
        kinds.add(g.solvable)
    assert kinds == {True, False}
    for seed in range(20):
        a = budget_allocation(net, "W2", 4, rng=seed, maximal=True)
        assert fastmp.classify(net, a).kind == "maximal"


def test_count_bound_reduces_to_theorem_budgets():
    d, m = 6, 4
    assert count_bound(1, 0, d, m) == m          # a row reaches m equations
    assert count_bound(0, 1, d, m) == d          # a column reaches d equations
    assert count_bound(1, 1, d, m) == m + d - 1  # a row and a column share one
    assert count_bound(d, 0, d, m) == d * m      # d rows reach everything
    assert count_bound(1, 0, 4, 3, k=2) == 2 * 3  # LRNN encoder: a row reaches min(T, d) m


def test_outside_assumptions_undetermined_without_exact():
    net = fastmp.LinearFFN((2, 4, 3))
    mask = np.zeros((4, 2), bool)
    mask[:, :] = True
    alloc = fastmp.Allocation(net, {"W1": mask})
    c = fastmp.classify(net, alloc, m=3, exact=False)       # m = 3 > q = 2
    assert c.kind == "undetermined" and "exceeds" in c.reason


def test_classify_errors():
    net = fastmp.LinearEstimator(q=2, d=2)
    alloc = fastmp.Allocation(net, {"W": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match="allocation is for"):
        fastmp.classify(fastmp.LinearEstimator(q=3, d=2), alloc)
    with pytest.raises(TypeError, match="Allocation"):
        fastmp.classify(net, {"W": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match="m must be >= 1"):
        fastmp.classify(net, alloc, m=0)


def test_jacobian_rank_agrees_with_theorems_3_4_and_3_5():
    from fastmp.theory.generic import generic_jacobian_rank
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    for seed in range(5):
        a = theorem35(net, m=4, rng=seed)
        assert generic_jacobian_rank(net, a) == 16          # dominant: needed for MP = 1
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = np.zeros((8, 8), bool)
        mask[rng.integers(8), rng.choice(8, size=6, replace=False)] = True  # row > Tb
        free = np.flatnonzero(~mask.ravel())
        mask.ravel()[rng.choice(free, size=10, replace=False)] = True
        a = fastmp.Allocation(net, {"W": mask})
        assert fastmp.classify(net, a).rule == "Theorem 3.4"
        assert generic_jacobian_rank(net, a) < 16            # the same verdict, independently


def test_jacobian_rank_decides_concentrated_ffn_allocation_minimal():
    """Three layers of a 4-8-8-6 network, 8 weights each, confined to 2 rows/columns per
    layer: within Theorem 4.1's per-layer budgets, but the outputs span 20 < 24
    dimensions -- minimal; the certified search indeed finds no root."""
    ffn = fastmp.LinearFFN((4, 8, 8, 6))
    masks = {"W1": np.zeros((8, 4), bool), "W2": np.zeros((8, 8), bool), "W3": np.zeros((6, 8), bool)}
    masks["W1"][:4, :2] = True
    masks["W2"][:2, :4] = True
    masks["W3"][:2, :4] = True
    a = fastmp.Allocation(ffn, masks)
    c = fastmp.classify(ffn, a)
    assert (c.kind, c.rule) == ("minimal", "Jacobian rank (exact)") and "20 < dm = 24" in c.reason
    assert fastmp.classify(ffn, a, exact=False).kind == "undetermined"
    assert fastmp.match_probability(ffn, a, trials=5, starts=16).mp == 0.0
