"""Plugin models (fastmp.plugins): the example plugin of Appendix B.1.1
(``examples/b11_plugin.py``) gives the built-in model's MP trial by trial, uncertified
points never count, and bad plugin definitions fail with clear errors."""
import importlib.util
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import fastmp
from fastmp.generators import b11_allocations
from fastmp.kernels.rng import fill_normal, trial_state
from fastmp.plugins import PolynomialModel
from fastmp.theory.b11 import b11_statuses

REPO = Path(__file__).resolve().parents[1]
BUILTIN = fastmp.LRNN(n=2, T=2, b=1, d=1)


def _load_example():
    spec = importlib.util.spec_from_file_location("b11_plugin", REPO / "examples" / "b11_plugin.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["b11_plugin"] = mod   # numba's cache locates functions by module
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def example():
    return _load_example()


def test_plugin_draws_are_the_builtin_models_draws(example):
    plugin = example.make_plugin("diagonal")
    for seed, trial in [(0, 0), (5, 17), (2**63 - 1, 2**40)]:
        data = plugin.trial_data(seed, trial)
        teacher, student, X = BUILTIN.trial_draws(seed, trial, 2)
        flat = np.concatenate([teacher[k].ravel() for k in ("W", "B", "D")]
                              + [student[k].ravel() for k in ("W", "B", "D")] + [X.ravel()])
        np.testing.assert_array_equal(data[:20], flat)
        np.testing.assert_allclose(data[20:], BUILTIN.forward(teacher, X).ravel(),
                                   rtol=1e-14, atol=1e-15)


# B.1.1's diagonal and off-diagonal allocations have MP ~ 0.71 and ~ 0.83: a mismatch in
# a single trial shows. The built-in search agrees with the discriminant oracle on these
# trials (tests/test_polynomial.py); so must the plugin.
@pytest.mark.parametrize("name", ["diagonal", "off_diagonal"])
def test_plugin_gives_the_builtin_mp_trial_by_trial(example, name):
    trials, seed = 400, 5
    plugin = example.make_plugin(name)
    res = fastmp.match_probability(plugin, trials=trials, seed=seed)
    alloc = b11_allocations(BUILTIN)[name]
    ref = fastmp.match_probability(BUILTIN, alloc, trials=trials, seed=seed, method="newton")
    oracle = b11_statuses(name, trials, seed)
    assert 0.5 < res.mp < 0.95
    assert res.ambiguous == 0 and ref.ambiguous == 0
    np.testing.assert_array_equal(res.status, ref.status)
    np.testing.assert_array_equal(res.status == fastmp.MATCH, oracle)
    assert (res.mp, res.matches, res.ci_low, res.ci_high) == (ref.mp, ref.matches,
                                                              ref.ci_low, ref.ci_high)
    assert res.budget["method"] == "plugin-newton"
    assert sum(res.budget["certified"].values()) == res.matches


def test_c_callbacks_give_the_same_statuses(example):
    trials, seed = 150, 3
    plugin = example.make_plugin("off_diagonal", via_cfunc=True)
    res = fastmp.match_probability(plugin, trials=trials, seed=seed)
    oracle = b11_statuses("off_diagonal", trials, seed)
    np.testing.assert_array_equal(res.status == fastmp.MATCH, oracle)
    assert res.ambiguous == 0


def test_cython_callbacks_give_the_same_statuses(example, tmp_path):
    """The residual and Jacobian as Cython ``cdef ... nogil`` functions, by address."""
    from cybuild import build_module
    cy = build_module(REPO / "examples" / "b11_residual.pyx", tmp_path)
    trials, seed = 150, 3
    for name in ("diagonal", "off_diagonal"):
        plugin = example.make_plugin(name, addresses=cy.addresses(name))
        res = fastmp.match_probability(plugin, trials=trials, seed=seed)
        np.testing.assert_array_equal(res.status == fastmp.MATCH,
                                      b11_statuses(name, trials, seed))
        assert res.ambiguous == 0
    with pytest.raises(ValueError, match="no C functions"):
        cy.addresses("row1")


def test_budget_is_reported(example):
    plugin = example.make_plugin("diagonal")
    res = fastmp.match_probability(plugin, trials=50, seed=1, starts=16, adaptive=False)
    assert res.budget["max_starts"] == 16
    curve = res.budget["mp_by_starts"]
    assert list(curve) == [1, 2, 4, 8, 16] and curve[16] == res.mp
    assert all(a <= b for a, b in zip(list(curve.values()), list(curve.values())[1:]))


# --------------------------------------------------------------- one-variable models
@numba.njit
def _draw_c(seed, trial, data):
    s = trial_state(seed, trial, 0)
    fill_normal(s, data)


@numba.njit
def _draw_zero(seed, trial, data):
    data[0] = 0.0


@numba.njit
def _res_square(x, data, out):
    out[0] = x[0] * x[0] - data[0]


@numba.njit
def _jac_square(x, data, out):
    out[0, 0] = 2.0 * x[0]


def _gen_square(x, data):
    return [x[0] ** 2 - data[0]]


def test_one_variable_mp_is_exact():
    """x^2 = c with c ~ N(0, 1): a real root iff c >= 0 (two simple roots for c > 0)."""
    model = PolynomialModel("x^2 = c", 1, 1, _draw_c, _res_square, _jac_square, _gen_square)
    trials, seed = 300, 9
    res = fastmp.match_probability(model, trials=trials, seed=seed)
    c = np.array([model.trial_data(seed, t)[0] for t in range(trials)])
    np.testing.assert_array_equal(res.status == fastmp.MATCH, c > 0)
    assert 0.3 < res.mp < 0.7


def test_uncertifiable_double_root_is_never_a_match():
    """x^2 = 0: Newton converges (linearly) to the double root, but no box around it
    holds exactly one root, so Krawczyk must fail: near-misses, not matches."""
    model = PolynomialModel("x^2 = 0", 1, 1, _draw_zero, _res_square, _jac_square,
                            _gen_square)
    res = fastmp.match_probability(model, trials=20, seed=0, starts=8, adaptive=False)
    assert res.matches == 0
    assert res.ambiguous == 20


# --------------------------------------------------------------- bad definitions
def _plain_draw(seed, trial, data):
    data[0] = 1.0


@numba.njit
def _res_bad_index(x, data, out):
    out[0] = x[0] - data[0]
    out[1] = 0.0


@numba.njit
def _jac_wrong(x, data, out):
    out[0, 0] = -2.0 * x[0]


def _gen_division(x, data):
    return [x[0] * x[0] / 2 - data[0]]


def _gen_other(x, data):
    return [x[0] * x[0] + data[0]]


@numba.njit
def _draw_two(seed, trial, data):
    data[0] = 1.0
    data[1] = 2.0


def test_bad_definitions_fail_clearly():
    args = dict(n_vars=1, n_data=1, draw=_draw_c, residual=_res_square,
                jacobian=_jac_square, residual_generic=_gen_square)
    with pytest.raises(TypeError, match="draw must be a Numba @njit function"):
        PolynomialModel("m", **{**args, "draw": _plain_draw})
    with pytest.raises(TypeError, match="jacobian must be a Numba @njit function"):
        PolynomialModel("m", **{**args, "jacobian": _jac_square.py_func})
    with pytest.raises(ValueError, match="n_vars must be a positive integer"):
        PolynomialModel("m", **{**args, "n_vars": 0})
    with pytest.raises(ValueError, match="draw left 1 of the n_data = 2 entries"):
        PolynomialModel("m", **{**args, "n_data": 2, "draw": _draw_zero})
    with pytest.raises(ValueError, match="draw indexes outside"):
        PolynomialModel("m", **{**args, "draw": _draw_two})
    with pytest.raises(ValueError, match="residual indexes outside"):
        PolynomialModel("m", **{**args, "residual": _res_bad_index})
    with pytest.raises(ValueError, match="jacobian is not the derivative"):
        PolynomialModel("m", **{**args, "jacobian": _jac_wrong})
    with pytest.raises(TypeError, match="must be a polynomial"):
        PolynomialModel("m", **{**args, "residual_generic": _gen_division})
    with pytest.raises(ValueError, match="residual and residual_generic disagree"):
        PolynomialModel("m", **{**args, "residual_generic": _gen_other})
    with pytest.raises(ValueError, match="start_scale"):
        PolynomialModel("m", **args, start_scale=-1.0)
    with pytest.raises(TypeError, match="function address"):
        PolynomialModel.from_addresses("m", 1, 1, _draw_c, None, 5, _gen_square)


def test_match_probability_rejects_allocation_and_m_for_plugins():
    model = PolynomialModel("x^2 = c", 1, 1, _draw_c, _res_square, _jac_square, _gen_square)
    alloc = b11_allocations(BUILTIN)["diagonal"]
    with pytest.raises(TypeError, match="pass no allocation"):
        fastmp.match_probability(model, alloc)
    with pytest.raises(TypeError, match="pass no m"):
        fastmp.match_probability(model, m=2)
    with pytest.raises(ValueError, match="does not apply to a plugin"):
        fastmp.match_probability(model, method="linear")
    with pytest.raises(TypeError, match="must be a fastmp.Allocation"):
        fastmp.match_probability(BUILTIN)
