"""Plugin models: add a polynomial model by its residual and Jacobian, and estimate its MP
with fastmp's certified root search.

A built-in polynomial allocation (Lemma 3.3: learning ``W`` of an LRNN, mixes of layers)
states its system as a chain program; a plugin states it directly::

    model = fastmp.plugins.PolynomialModel(
        "my-model", n_vars=2, n_data=22,
        draw=draw,                  # @njit (seed, trial, data): one trial's numbers
        residual=residual,          # @njit (x, data, out): out[:] = R(x)
        jacobian=jacobian,          # @njit (x, data, out): out[:, :] = dR/dx
        residual_generic=values,    # Python (x, data) -> sequence of R(x): +, -, * only
        start_scale=0.7)
    res = fastmp.match_probability(model, trials=1000, seed=0)

``R(x) = 0`` must be square (``n_eq = n_vars``; the usual ``r = d m`` of the paper,
Definition 2.3: the learnable weights ``x`` must reproduce the teacher's outputs, which
``draw`` computes and stores in ``data``). ``match_probability`` then runs the compiled
search of :mod:`fastmp.kernels.generic_newton` (Levenberg-Marquardt and plain Newton from
many random starts, budget as for built-in models) and counts a trial as a match only if
a **Krawczyk test** certifies a real root (below). ``examples/b11_plugin.py`` writes the
Appendix B.1.1 system as a plugin; ``tests/test_plugin.py`` checks that it gives the
built-in model's MP trial by trial.

Draws. ``draw`` should take its random numbers from fastmp's streams
(:func:`fastmp.kernels.rng.draw_segments` with a model's ``segment_arrays``, or
:func:`~fastmp.kernels.rng.trial_state` + :func:`~fastmp.kernels.rng.fill_normal`), so
that trial ``t`` of seed ``s`` is the same trial whatever the batching, and the same as a
built-in model's trial ``t`` when the layouts agree. Streams ``>= 2**32`` are reserved for
the starts of the search.

Certification (what ``residual_generic`` is for). Krawczyk's operator (as in
:mod:`fastmp.estimators.certify`) for a candidate ``x~``, ``Y ~ J(x~)^-1`` and the box
``X = x~ + [-rho, rho]``:  ``K(X) = x~ - Y R(x~) + (I - Y J(X))(X - x~)``; ``K(X)`` inside
the interior of ``X`` proves exactly one root in ``X``, real because everything is real.
``R(x~)`` and ``J(X)`` -- the Jacobian over the whole box -- are enclosed by evaluating
``residual_generic`` on python-flint ``arb`` balls; ``J(X)`` by forward-mode
differentiation (dual numbers whose value and gradient entries are balls), so no second
hand-written Jacobian is needed, and the compiled ``jacobian`` never enters a proof.
``residual_generic(x, data)`` receives ``x`` and ``data`` as lists of such numbers and
must use only ``+``, ``-``, ``*``, ``**`` with a non-negative integer exponent, and
indexing -- the operations of a polynomial (it may be the same function the Numba
``residual`` calls, if it is written with scalars). Precisions tried in turn:
:data:`PRECISIONS` bits, each after 4 Newton refinements of ``x~`` at that precision;
boxes ``rho = f |Y R(x~)| + 2^(-prec/2) (1 + |x~|)`` for ``f = 4, 64, 1024``. A candidate
that fails every attempt is a *near-miss* (status AMBIGUOUS), never a match.

C / Cython callbacks: :meth:`PolynomialModel.from_addresses` takes the addresses of C
functions ``void f(const double* x, const double* data, double* out)`` (e.g. a Numba
``@cfunc``'s ``.address``, or a Cython ``cdef`` function's pointer from
``numba.extending.get_cython_function_address``) and wraps them for the kernels.
"""
from __future__ import annotations

import ctypes
import numbers

import numpy as np
from numba.core.dispatcher import Dispatcher

from ._config import AMBIGUOUS, MATCH, NO_MATCH
from ._config import jit as _jit
from .estimators.polynomial import (ARB_PRECISIONS, CANDIDATE_RES, MIN_ADAPTIVE_STARTS,
                                     budget_exhausted, starts_curve)

__all__ = ["PolynomialModel", "krawczyk_generic", "run_plugin", "PRECISIONS"]

#: precisions (bits) of the arb Krawczyk test, tried in turn (then the built-in
#: models' ARB_PRECISIONS)
PRECISIONS = (128,) + tuple(ARB_PRECISIONS)

#: Newton iterations of the polish and its target (relative max-norm residual)
MAX_ITER = 60
NEWTON_TOL = 1e-14


# ---------------------------------------------------------------- forward-mode duals
class _Dual:
    """``value + sum_k grad[k] eps_k``: the value and gradient of a polynomial, over any
    number type with +, -, * (python floats, flint arb balls)."""

    __slots__ = ("v", "g")

    def __init__(self, v, g):
        self.v = v
        self.g = g

    def __add__(self, o):
        if isinstance(o, _Dual):
            return _Dual(self.v + o.v, [a + b for a, b in zip(self.g, o.g)])
        return _Dual(self.v + o, self.g)

    __radd__ = __add__

    def __neg__(self):
        return _Dual(-self.v, [-a for a in self.g])

    def __pos__(self):
        return self

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return (-self) + o

    def __mul__(self, o):
        if isinstance(o, _Dual):
            return _Dual(self.v * o.v, [self.v * b + o.v * a for a, b in zip(self.g, o.g)])
        return _Dual(self.v * o, [a * o for a in self.g])

    __rmul__ = __mul__

    def __pow__(self, k):
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
            raise TypeError("residual_generic: only non-negative integer powers are "
                            f"allowed in a polynomial residual, got ** {k!r}")
        out = 1
        for _ in range(int(k)):
            out = self * out
        return out

    def _unsupported(self, *_):
        raise TypeError("residual_generic must be a polynomial: only +, -, * and integer "
                        "powers are allowed (division, comparisons and functions like "
                        "sqrt cannot be certified this way)")

    __truediv__ = __rtruediv__ = __lt__ = __le__ = __gt__ = __ge__ = __abs__ = _unsupported
    __float__ = _unsupported


def _values_and_jacobian(fn, x, data, zero, one, n_eq):
    """``R(x)`` and ``dR/dx`` of the generic residual ``fn`` by dual numbers."""
    r = len(x)
    xs = [_Dual(x[k], [one if i == k else zero for i in range(r)]) for k in range(r)]
    out = list(fn(xs, data))
    if len(out) != n_eq:
        raise ValueError(f"residual_generic returned {len(out)} values, expected n_eq = {n_eq}")
    vals, jac = [], []
    for e in out:
        if isinstance(e, _Dual):
            vals.append(e.v)
            jac.append(list(e.g))
        else:  # an equation that does not involve x
            vals.append(e)
            jac.append([zero] * r)
    return vals, jac


# ------------------------------------------------------------------ the plugin model
def _check_jitted(name, fn):
    if not isinstance(fn, Dispatcher):
        kind = type(fn).__name__
        raise TypeError(f"PolynomialModel: {name} must be a Numba @njit function "
                        f"(decorate it with numba.njit), got {kind} {fn!r}")
    return fn


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"PolynomialModel: {name} must be a positive integer, got {value!r}")
    return int(value)


class PolynomialModel:
    """A user's polynomial model: square system ``R(x) = 0`` in ``n_vars`` unknowns.

    Parameters
    ----------
    name : str
        Shown in results.
    n_vars : int
        Number of unknowns (the learnable weights, ``r = |A|``) and of equations.
    n_data : int
        Length of the float64 array ``draw`` fills per trial.
    draw : numba dispatcher ``(seed: uint64, trial: uint64, data: float64[n_data])``
        Fills ``data`` with the trial's numbers, from fastmp's random streams.
    residual : numba dispatcher ``(x: float64[n_vars], data, out: float64[n_vars])``
    jacobian : numba dispatcher ``(x, data, out: float64[n_vars, n_vars])``
        ``out[i, j] = dR_i / dx_j``.
    residual_generic : callable ``(x, data) -> sequence of n_vars numbers``
        The same residual written with ``+``, ``-``, ``*``, integer ``**`` and indexing
        only, for certification in ball arithmetic (see the module docstring).
    start_scale : float or array of n_vars floats
        Standard deviation of the random starts per unknown (e.g. ``1/sqrt(fan_in)`` of
        the weights, Appendix E.3).
    check : bool
        Probe the callbacks at a random point (default): shapes, that every output entry
        is written, and that ``residual``, ``jacobian`` and ``residual_generic`` agree.

    The model is validated when built; bad definitions raise ``TypeError`` (callbacks
    not jitted) or ``ValueError`` (wrong sizes, disagreeing callbacks).
    """

    def __init__(self, name, n_vars, n_data, draw, residual, jacobian, residual_generic,
                 start_scale=1.0, check=True):
        if not isinstance(name, str) or not name:
            raise ValueError(f"PolynomialModel: name must be a non-empty string, got {name!r}")
        self.name = name
        self.n_vars = _check_count("n_vars", n_vars)
        self.n_eq = self.n_vars
        self.n_data = _check_count("n_data", n_data)
        self.draw = _check_jitted("draw", draw)
        self.residual = _check_jitted("residual", residual)
        self.jacobian = _check_jitted("jacobian", jacobian)
        if not callable(residual_generic):
            raise TypeError("PolynomialModel: residual_generic must be callable (x, data) -> "
                            f"sequence, got {type(residual_generic).__name__}")
        self.residual_generic = residual_generic
        scale = np.broadcast_to(np.asarray(start_scale, dtype=np.float64), (self.n_vars,))
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("PolynomialModel: start_scale must be positive and finite")
        self.start_scale = np.ascontiguousarray(scale)
        if check:
            self.check()

    def __repr__(self):
        return f"PolynomialModel({self.name!r}, n_vars={self.n_vars}, n_data={self.n_data})"

    # ------------------------------------------------------------------ C callbacks
    @classmethod
    def from_addresses(cls, name, n_vars, n_data, draw, residual_address, jacobian_address,
                       residual_generic, start_scale=1.0, check=True):
        """A plugin whose residual and Jacobian are C functions
        ``void f(const double* x, const double* data, double* out)`` given by address
        (a Numba ``@cfunc``'s ``.address``; a Cython ``cdef`` function's pointer, e.g.
        from ``numba.extending.get_cython_function_address(module, name)`` for a
        function declared in the module's ``.pxd``). ``out`` of the Jacobian is
        row-major ``n_vars x n_vars``. The functions must not hold the GIL and must stay
        alive (their module imported) while the model is used. ``draw`` stays a Numba
        function."""
        for nm, addr in (("residual_address", residual_address),
                         ("jacobian_address", jacobian_address)):
            if isinstance(addr, bool) or not isinstance(addr, numbers.Integral) or addr <= 0:
                raise TypeError(f"PolynomialModel.from_addresses: {nm} must be a function "
                                f"address (positive int), got {addr!r}")
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
        res_c = proto(int(residual_address))
        jac_c = proto(int(jacobian_address))

        @_jit(cache=False)
        def residual(x, data, out):
            res_c(x.ctypes.data, data.ctypes.data, out.ctypes.data)

        @_jit(cache=False)
        def jacobian(x, data, out):
            jac_c(x.ctypes.data, data.ctypes.data, out.ctypes.data)

        model = cls(name, n_vars, n_data, draw, residual, jacobian, residual_generic,
                    start_scale=start_scale, check=False)
        model._c_callbacks = (res_c, jac_c)   # keep the ctypes objects alive
        if check:
            model.check(compiled=True)
        return model

    # ------------------------------------------------------------------ validation
    def trial_data(self, seed, trial):
        """The float64 array ``draw`` fills for ``(seed, trial)`` (compiled ``draw``)."""
        data = np.full(self.n_data, np.nan)
        self.draw(np.uint64(seed), np.uint64(trial), data)
        return data

    def check(self, compiled=False):
        """Probe the callbacks at a random point of trial 0 (seed 0); raise ``ValueError``
        describing the first problem. Runs the pure-Python bodies (``py_func``), so an
        index beyond the documented shapes raises instead of writing out of bounds;
        ``compiled=True`` also runs the compiled callbacks (C callbacks have no Python
        body)."""
        n, r = self.n_eq, self.n_vars

        def call(what, fn, *args):
            body = fn if compiled else fn.py_func
            try:
                body(*args)
            except IndexError as exc:
                raise ValueError(f"PolynomialModel {self.name!r}: {what} indexes outside "
                                 f"its documented shapes (n_vars = {r}, n_data = "
                                 f"{self.n_data}): {exc}") from exc

        data = np.full(self.n_data, np.nan)
        call("draw", self.draw, np.uint64(0), np.uint64(0), data)
        if not np.all(np.isfinite(data)):
            bad = np.flatnonzero(~np.isfinite(data))
            raise ValueError(f"PolynomialModel {self.name!r}: draw left {bad.size} of the "
                             f"n_data = {self.n_data} entries unwritten or not finite "
                             f"(first: {bad[0]}); is n_data right?")
        x = np.random.default_rng(12345).standard_normal(r) * self.start_scale
        R = np.full(n, np.nan)
        call("residual", self.residual, x.copy(), data.copy(), R)
        if not np.all(np.isfinite(R)):
            raise ValueError(f"PolynomialModel {self.name!r}: residual did not write all "
                             f"{n} entries of out (or wrote non-finite values)")
        J = np.full((n, r), np.nan)
        call("jacobian", self.jacobian, x.copy(), data.copy(), J)
        if not np.all(np.isfinite(J)):
            raise ValueError(f"PolynomialModel {self.name!r}: jacobian did not write all "
                             f"{n} x {r} entries of out (or wrote non-finite values)")
        try:
            gv, gj = _values_and_jacobian(self.residual_generic, [float(v) for v in x],
                                          [float(v) for v in data], 0.0, 1.0, n)
        except TypeError as exc:
            raise TypeError(f"PolynomialModel {self.name!r}: residual_generic: {exc}") from exc
        gv, gj = np.array(gv, dtype=float), np.array(gj, dtype=float)
        scale = 1.0 + np.abs(R).max()
        if not np.allclose(gv, R, rtol=1e-9, atol=1e-9 * scale):
            raise ValueError(f"PolynomialModel {self.name!r}: residual and residual_generic "
                             f"disagree at a test point (max difference "
                             f"{np.abs(gv - R).max():.3g}); they must be the same function")
        jscale = 1.0 + np.abs(gj).max()
        if not np.allclose(J, gj, rtol=1e-7, atol=1e-7 * jscale):
            i, j = np.unravel_index(np.argmax(np.abs(J - gj)), J.shape)
            raise ValueError(f"PolynomialModel {self.name!r}: jacobian is not the derivative "
                             f"of the residual: entry ({i}, {j}) is {J[i, j]:.6g}, the "
                             f"residual's derivative is {gj[i, j]:.6g}")


# ------------------------------------------------------------------ certification
def krawczyk_generic(model, data, w, prec, newton_steps=4):
    """Krawczyk test of a root of ``model.residual_generic`` near ``w`` in ``prec``-bit
    ball arithmetic, after ``newton_steps`` Newton refinements at that precision.

    Returns ``(certified, rho, w_refined)``; ``certified`` means: exactly one root, real,
    in the box ``w_refined +/- rho`` (max-norm radius ``rho``). Mirrors
    :func:`fastmp.estimators.certify.krawczyk_arb` for a residual given as a polynomial
    function instead of a chain program.
    """
    from flint import arb, arb_mat, ctx
    old = ctx.prec
    ctx.prec = prec
    r = model.n_vars
    try:
        D = [arb(float(v)) for v in data]
        zero, one = arb(0), arb(1)

        def rj(xs):
            vals, jac = _values_and_jacobian(model.residual_generic, xs, D, zero, one, r)
            Rm = arb_mat(r, 1)
            Jm = arb_mat(r, r)
            for i in range(r):
                Rm[i, 0] = vals[i]
                for j in range(r):
                    Jm[i, j] = jac[i][j]
            return Rm, Jm

        wm = [arb(float(v)) for v in w]
        for _ in range(newton_steps):
            R, J = rj(wm)
            try:
                step = J.mid().solve(R.mid())
            except (ZeroDivisionError, ValueError):
                return False, np.inf, np.asarray(w, dtype=float)
            wm = [(wm[k] - step[k, 0]).mid() for k in range(r)]
        R, J0 = rj(wm)
        w_out = np.array([float(v) for v in wm])
        try:
            Yinv = J0.mid().inv().mid()
        except (ZeroDivisionError, ValueError):
            return False, np.inf, w_out
        YR = Yinv * R
        base = [abs(YR[k, 0]).upper() for k in range(r)]
        eye = arb_mat(r, r)
        for k in range(r):
            eye[k, k] = 1
        for f in (4, 64, 1024):
            rho = [f * b + arb(2) ** (-prec // 2) * (1 + abs(wm[k]).upper())
                   for k, b in enumerate(base)]
            _, JX = rj([wm[k] + arb(0, rho[k]) for k in range(r)])
            M = eye - Yinv * JX
            Dm = arb_mat(r, 1)
            for k in range(r):
                Dm[k, 0] = arb(0, rho[k])
            K = M * Dm - YR
            if all(arb(0, rho[k]).contains_interior(K[k, 0]) for k in range(r)):
                return True, float(max(float(v) for v in rho)), w_out
        return False, np.inf, w_out
    finally:
        ctx.prec = old


def certify_plugin_root(model, data, w):
    """``(certified, how)``: Krawczyk at each of :data:`PRECISIONS` in turn."""
    for bits in PRECISIONS:
        ok, _, _ = krawczyk_generic(model, data, w, bits)
        if ok:
            return True, f"arb-{bits}"
    return False, ""


# ------------------------------------------------------------------ Monte Carlo driver
def run_plugin(model, trials, seed, starts=64, adaptive=True, progress=None,
               max_iter=MAX_ITER):
    """Per-trial statuses and the budget record of the certified search on a plugin
    model; the same budget rule as :func:`fastmp.estimators.polynomial.run_newton`
    (rounds of 8, 16, 32, ... starts per unmatched trial; stop once two successive
    doublings find no new match and at least ``MIN_ADAPTIVE_STARTS`` were tried, when
    every trial matched, or at ``starts``)."""
    from .kernels.generic_newton import search_batch
    r = model.n_vars
    idx = np.arange(trials, dtype=np.int64)
    used = np.zeros(trials, dtype=np.int64)      # starts tried per trial
    first = np.full(trials, -1, dtype=np.int64)  # start index of the certified root
    near = np.zeros(trials, dtype=bool)
    how = np.full(trials, "", dtype=object)
    rounds = []
    budget = min(8, starts) if adaptive else starts
    seed64 = np.uint64(seed)
    while True:
        todo = idx[(first < 0) & (used < budget)]
        while todo.size:
            data = np.empty((todo.size, model.n_data))
            w = np.empty((todo.size, r))
            res = np.empty(todo.size)
            found = np.empty(todo.size, dtype=np.int64)
            search_batch(model.draw, model.residual, model.jacobian, seed64, todo,
                         used[todo].copy(), budget, model.start_scale, model.n_eq,
                         max_iter, NEWTON_TOL, CANDIDATE_RES, data, w, res, found)
            for k, t in enumerate(todo):
                if found[k] < 0:
                    used[t] = budget
                    continue
                used[t] = found[k] + 1
                ok, kind = certify_plugin_root(model, data[k], w[k])
                if ok:
                    first[t] = found[k]
                    how[t] = kind
                else:
                    near[t] = True
            todo = idx[(first < 0) & (used < budget)]
        after = int(np.count_nonzero(first >= 0))
        rounds.append({"starts": budget, "matches": after})
        if progress is not None:
            progress(0)
        if budget_exhausted(rounds, budget, starts, adaptive, trials):
            break
        budget = min(2 * budget, starts)
    if progress is not None:
        progress(trials)
    status = np.full(trials, NO_MATCH, dtype=np.int8)
    status[near] = AMBIGUOUS
    status[first >= 0] = MATCH
    curve = starts_curve(first, budget)
    info = {
        "method": "plugin-newton",
        "solvers": ["lm", "newton"],
        "max_starts": int(budget),
        "rounds": rounds,
        "mp_by_starts": curve,
        "starts_total": int(used.sum()),
        "certified": {f"arb-{b}": int(np.count_nonzero(how == f"arb-{b}")) for b in PRECISIONS},
        "near_misses": int(np.count_nonzero(status == AMBIGUOUS)),
    }
    return status, info
