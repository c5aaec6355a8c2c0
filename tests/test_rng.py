"""The random streams: ziggurat normals and per-(seed, trial, stream) independence."""
import math

import numpy as np
import pytest
from scipy import stats

from fastmp._config import jit
from fastmp.kernels import rng


@jit
def _sample(seed, n):
    s = rng.trial_state(np.uint64(seed), np.uint64(0), 0)
    out = np.empty(n)
    rng.fill_normal(s, out)
    return out


def test_ziggurat_tables_close_the_top_layer():
    k, w, f = rng._ziggurat_tables()
    # layer areas v: x_i (f(x_{i-1}) - f(x_i)) equal for every layer above the base
    x = w * 2.0 ** 52
    areas = x[2:] * (f[1:-1] - f[2:])
    np.testing.assert_allclose(areas, areas[0], rtol=1e-9)
    # the top layer's width times (1 - f(x_1)) is the same area: x_0 = 0
    np.testing.assert_allclose(x[1] * (1.0 - f[1]), areas[0], rtol=1e-9)
    # k[i] / 2^52 = x_{i-1} / x_i
    np.testing.assert_allclose(k[2:].astype(float) / 2.0 ** 52, x[1:-1] / x[2:], rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normals_pass_ks_and_moments(seed):
    x = _sample(seed, 1_000_000)
    assert stats.kstest(x, "norm").pvalue > 1e-3
    assert abs(x.mean()) < 5 / math.sqrt(x.size)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / x.size)
    assert abs(stats.kurtosis(x)) < 5 * math.sqrt(24 / x.size)


def test_tail_beyond_the_base_layer_has_the_normal_mass():
    x = _sample(11, 4_000_000)
    r = rng._ZIG_R
    p = 2 * stats.norm.sf(r)
    k = int(np.sum(np.abs(x) > r))
    # binomial count: within 5 standard deviations
    assert abs(k - p * x.size) < 5 * math.sqrt(p * x.size)
    # and the far tail (drawn by the exponential-proposal loop) is present and symmetric
    assert np.sum(x > r + 0.5) > 0 and np.sum(x < -r - 0.5) > 0


def test_streams_are_independent_and_deterministic():
    a = np.empty(1000)
    b = np.empty(1000)
    rng.fill_normal(rng.trial_state(np.uint64(3), np.uint64(5), 0), a)
    rng.fill_normal(rng.trial_state(np.uint64(3), np.uint64(5), 0), b)
    np.testing.assert_array_equal(a, b)
    rng.fill_normal(rng.trial_state(np.uint64(3), np.uint64(5), 1), b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.15


@jit
def _one_by_one(s, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = rng.next_normal(s)
    return out


def test_fill_normal_equals_next_normal_in_turn():
    """fill_normal keeps the generator state in registers and handles the tail and the
    wedges out of line: the numbers must still be next_normal's, rejections included."""
    n = 300_000
    a = np.empty(n)
    rng.fill_normal(rng.trial_state(np.uint64(11), np.uint64(2), 1), a)
    b = _one_by_one(rng.trial_state(np.uint64(11), np.uint64(2), 1), n)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() > rng._ZIG_R  # the stream went through the tail at least once
    c = np.empty(n)
    rng.fill_normal_scaled(rng.trial_state(np.uint64(11), np.uint64(2), 1), c, 0.25)
    np.testing.assert_array_equal(c, a * 0.25)
