import numpy as np
import pytest

import fastmp
from fastmp.estimators.linear import linear_systems
from naive import naive_system

MODELS = [
    (fastmp.LinearEstimator(q=3, d=2), "W"),
    (fastmp.LRNN(n=8, T=2, b=2, d=3), "B"),
    (fastmp.LRNN(n=8, T=2, b=2, d=3), "D"),
    (fastmp.LinearFFN((4, 8, 8, 6)), "W1"),
    (fastmp.LinearFFN((4, 8, 8, 6)), "W2"),
    (fastmp.LinearFFN((4, 8, 8, 6)), "W3"),
    (fastmp.ShallowReLU(q=3, n=6, d=2), "W2"),
]


@pytest.mark.parametrize("model,name", MODELS, ids=lambda x: repr(x))
def test_kernel_systems_equal_naive_kronecker(model, name):
    rng = np.random.default_rng(3)
    mask = rng.random(model.param_shapes[name]) < 0.5
    mask.flat[0] = True
    m = 3
    C, rhs, scale = linear_systems(model, name, mask, m, seed=11, start=5, count=4)
    for k in range(4):
        Cn, rn = naive_system(model, name, mask, m, 11, 5 + k)
        np.testing.assert_allclose(C[k], Cn, rtol=0, atol=1e-12)
        np.testing.assert_allclose(rhs[k], rn, rtol=0, atol=1e-12)
        assert scale[k] > 0


def test_lrnn_forward_is_the_recursion_read_one_step_after_the_last_input():
    net = fastmp.LRNN(n=6, T=3, b=2, d=2)
    teacher, _, X = net.trial_draws(0, 0, 4)
    W, B, D = teacher["W"], teacher["B"], teacher["D"]
    h = np.zeros((6, 4))
    for t in range(3):
        h = W @ h + B @ X[t]
    np.testing.assert_allclose(net.forward(teacher, X), D @ W @ h)  # eq. 3.3
    expected = sum(D @ np.linalg.matrix_power(W, 3 - t) @ B @ X[t] for t in range(3))
    np.testing.assert_allclose(net.forward(teacher, X), expected)


def test_draw_scales_follow_appendix_e3():
    net = fastmp.LinearFFN((4, 50, 50, 6))
    draws = [net.trial_draws(1, t, 4) for t in range(200)]
    w2 = np.concatenate([d[0]["W2"].ravel() for d in draws])
    x = np.concatenate([d[2].ravel() for d in draws])
    assert abs(w2.var() * 50 - 1) < 0.02   # N(0, 1/fan_in)
    assert abs(x.var() - 1) < 0.05
    assert abs(w2.mean()) < 0.01


def test_trial_streams_independent_of_batching():
    net = fastmp.LRNN(n=8, T=2, b=2, d=3)
    mask = np.ones((8, 2), bool)
    a, *_ = linear_systems(net, "B", mask, 4, seed=5, start=0, count=6)
    b, *_ = linear_systems(net, "B", mask, 4, seed=5, start=3, count=3)
    np.testing.assert_array_equal(a[3:], b)
    c, *_ = linear_systems(net, "B", mask, 4, seed=6, start=3, count=3)
    assert not np.allclose(b, c)


@pytest.mark.parametrize("factory,message", [
    (lambda: fastmp.LRNN(n=4, T=3, b=2, d=1), r"T\*b = 6 exceeds"),
    (lambda: fastmp.LinearFFN((4, 3, 6)), "narrower"),
    (lambda: fastmp.LinearFFN((4, 8, 5, 6)), "n_l >= d"),
    (lambda: fastmp.ShallowReLU(q=3, n=2, d=4), "narrower than the output"),
    (lambda: fastmp.LinearEstimator(q=0, d=2), "q must be >= 1"),
    (lambda: fastmp.LinearFFN((4,)), "at least"),
])
def test_invalid_dimensions_name_the_violated_assumption(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_non_integer_dimension_is_a_type_error():
    with pytest.raises(TypeError, match="integer"):
        fastmp.LRNN(n=8.0, T=2, b=1, d=2)


def test_figure2_setting_is_valid():
    # Figure 2a runs T = n/2, b = 1, d = 4 (T d = 2n > n): allowed by Theorem B.1's count
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    assert net.param_shapes == {"W": (8, 8), "B": (8, 1), "D": (4, 8)}
