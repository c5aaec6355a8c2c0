import json

import numpy as np
import pytest

import fastmp
from fastmp.generators import (b11_allocations, budget_allocation, random_in_rows,
                               random_mask, theorem31, theorem35)


def test_validation_errors():
    net = fastmp.LRNN(n=8, T=2, b=1, d=2)
    with pytest.raises(ValueError, match="unknown parameter 'V'.*W, B, D"):
        fastmp.Allocation(net, {"V": np.ones((8, 8), bool)})
    with pytest.raises(ValueError, match="shape"):
        fastmp.Allocation(net, {"W": np.ones((8, 7), bool)})
    with pytest.raises(TypeError, match="boolean"):
        fastmp.Allocation(net, {"W": np.ones((8, 8), int)})
    with pytest.raises(ValueError, match="empty allocation"):
        fastmp.Allocation(net, {"W": np.zeros((8, 8), bool)})
    with pytest.raises(ValueError, match="empty allocation"):
        fastmp.Allocation(net, {})
    with pytest.raises(TypeError, match="dict"):
        fastmp.Allocation(net, [np.ones((8, 8), bool)])
    with pytest.raises(TypeError, match="fastmp model"):
        fastmp.Allocation("lrnn", {"W": np.ones((8, 8), bool)})


def test_masks_are_copied_read_only_and_queries():
    net = fastmp.LRNN(n=4, T=2, b=1, d=2)
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True
    a = fastmp.Allocation(net, {"W": mask, "D": np.zeros((2, 4), bool)})
    mask[1, 1] = True
    assert a.r == 2 and a.params == ("W",)
    assert not a.masks["W"].flags.writeable
    assert a.row_counts("W").tolist() == [2, 0, 0, 0]
    assert a.linear_param is None  # W of an LRNN: polynomial
    assert fastmp.Allocation(net, {"D": np.ones((2, 4), bool)}).linear_param == "D"
    with pytest.raises(ValueError, match="multiple of d"):
        fastmp.Allocation(net, {"W": np.eye(4, dtype=bool)[:, :] & (np.arange(4) < 3)}).default_m()


def test_dict_round_trip_through_json():
    net = fastmp.LinearFFN((3, 5, 4))
    a = budget_allocation(net, "W1", 3, rng=1)
    b = fastmp.Allocation.from_dict(net, json.loads(json.dumps(a.to_dict())))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(ValueError, match="only 0 and 1"):
        fastmp.Allocation.from_dict(net, {"W1": ["1x1"] * 5})


def test_random_in_rows_uses_exactly_k_rows_and_honours_caps():
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    for seed in range(50):
        a = random_in_rows(net, "W", r=16, k=5, rng=seed)
        rows = a.row_counts("W")
        assert a.r == 16
        assert np.count_nonzero(rows[:5]) == 5 and rows[5:].sum() == 0
        assert rows.max() <= 4                     # Tb: Theorem 3.4 row budget
    cols = random_in_rows(net, "W", r=16, k=4, rng=0, axis=1).col_counts("W")
    assert np.count_nonzero(cols[:4]) == 4 and cols[4:].sum() == 0
    with pytest.raises(ValueError, match="cannot place"):
        random_in_rows(net, "W", r=16, k=3, rng=0)   # 3 rows x Tb = 12 < 16


def test_random_mask_reproducible():
    assert np.array_equal(random_mask((6, 6), 10, 3, k=4), random_mask((6, 6), 10, 3, k=4))


def test_theorem_constructions():
    net = fastmp.LRNN(n=8, T=2, b=1, d=2)
    rows = theorem35(net, m=2, rng=0).row_counts("W")
    assert sorted(rows[rows > 0].tolist()) == [2, 2]
    cols = theorem35(fastmp.LRNN(n=8, T=2, b=1, d=1), m=2, by="columns", rng=0).col_counts("W")
    assert sorted(cols[cols > 0].tolist()) == [2]
    with pytest.raises(ValueError, match="multiple"):
        theorem35(fastmp.LRNN(n=9, T=3, b=1, d=2), m=2)
    d = theorem31(fastmp.LRNN(n=8, T=2, b=1, d=2), m=2, rng=0)
    assert d.row_counts("D").tolist() == [2, 2]


def test_b11_allocations():
    allocs = b11_allocations()
    assert set(allocs) == {"diagonal", "off_diagonal", "row1", "row2", "col1", "col2"}
    assert allocs["diagonal"].mask("W").tolist() == [[True, False], [False, True]]
    assert all(a.r == 2 for a in allocs.values())


def test_readme_quick_start_runs():
    """The Python example at the top of the README, verbatim in spirit."""
    net = fastmp.LinearFFN((4, 16, 16, 6))
    alloc = fastmp.generators.budget_allocation(net, "W2", m=4, rng=0)
    res = fastmp.match_probability(net, alloc, trials=1000, seed=0)
    assert 0.0 <= res.ci_low <= res.mp <= res.ci_high <= 1.0
    assert fastmp.classify(net, alloc).kind in ("maximal", "minimal")
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True
    lr = fastmp.Allocation(fastmp.LRNN(n=8, T=4, b=1, d=4), {"W": mask})
    assert fastmp.classify(lr.model, lr).rule == "Theorem 3.5"
