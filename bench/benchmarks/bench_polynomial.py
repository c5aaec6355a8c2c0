"""Benchmarks of the certified polynomial search (Figure 2a setting, T = n/2, b = 1,
d = 4, m = n/2): one Newton start of each kind, one certification, and end-to-end
``match_probability``. ``setup`` warms the JIT; everything runs on one core."""
import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import fastmp  # noqa: E402
from fastmp.estimators.certify import krawczyk, krawczyk_compiled  # noqa: E402
from fastmp.generators import random_in_rows, theorem35  # noqa: E402


def _setting(n, k):
    net = fastmp.LRNN(n=n, T=n // 2, b=1, d=4)
    alloc = theorem35(net, m=n // 2, rng=0) if k == 4 else random_in_rows(net, "W", 2 * n, k, rng=k)
    return net, alloc, n // 2


class NewtonStart:
    """One start of each solver of the portfolio (fixed iteration counts)."""

    params = [[8, 12, 16]]
    param_names = ["n"]

    def setup(self, n):
        self.net, alloc, m = _setting(n, n)
        self.prog = self.net.chain_program(m)
        self.var = self.net.variables(alloc)
        params, consts, self.ystar = self.net.chain_trial(0, 0, m)
        self.P = self.prog.pad_params(params)
        self.C = self.prog.pad_consts(consts)
        rng = np.random.default_rng(0)
        self.w0 = rng.standard_normal(len(self.var)) / np.sqrt(n)
        self.N0 = self.prog.node_buffer(self.P)
        self.N0[:] = rng.standard_normal(self.N0.shape)
        self.time_lifted_10_iterations(n)
        self.time_eliminated_10_iterations(n)
        self.time_lm_start(n)
        self.time_lifted_restarts_60_steps(n)

    def time_lifted_restarts_60_steps(self, n):
        # the portfolio's "lifted" start: eliminated lifted Newton restarted from fresh
        # random points whenever it leaves the box |w|, |N| <= 1e4 (60 steps in all
        # unless a root is reached first; the same points every call)
        from fastmp.kernels.rng import trial_state
        self.prog.newton_restarts(self.P.copy(), self.C, self.ystar, self.var, self.w0,
                                  self.N0, 60, 1e-14, 1e4, np.full(len(self.var), n ** -0.5),
                                  trial_state(0, 0, 1))

    def time_lifted_10_iterations(self, n):
        # tol 0: exactly 10 iterations unless the start diverges first
        self.prog.newton(self.P.copy(), self.C, self.ystar, self.var, self.w0, self.N0, True,
                         10, 0.0, full=True)

    def time_eliminated_10_iterations(self, n):
        self.prog.newton(self.P.copy(), self.C, self.ystar, self.var, self.w0, self.N0, False,
                         10, 0.0)

    def time_lm_start(self, n):
        self.prog.levenberg_marquardt(self.P.copy(), self.C, self.ystar, self.var, self.w0)


class Certify:
    """Krawczyk test of a root of a Theorem 3.5 allocation (constructive solver)."""

    params = [[8, 12]]
    param_names = ["n"]

    def setup(self, n):
        from fastmp.estimators.constructive import theorem35_rows
        net, alloc, m = _setting(n, 4)
        self.prog, self.var = net.chain_program(m), net.variables(alloc)
        teacher, student, X = net.trial_draws(0, 1, m)
        self.ystar = net.forward(teacher, X)
        mask = alloc.mask("W")
        self.w = theorem35_rows(student["W"], student["B"], student["D"], X, self.ystar, mask)[mask]
        self.params_ = [student[k] for k in net.param_names]
        self.consts = net.chain_constants(X)
        self.P = self.prog.pad_params(self.params_)
        self.C = self.prog.pad_consts(self.consts)
        self.time_krawczyk(n)
        self.time_krawczyk_compiled(n)

    def time_krawczyk(self, n):
        krawczyk(self.prog, self.params_, self.consts, self.ystar, self.var, self.w)

    def time_krawczyk_compiled(self, n):
        # the search's first test: all compiled, double ball residual
        krawczyk_compiled(self.prog, self.P, self.C, self.ystar, self.var, self.w)


class EndToEnd:
    """``match_probability`` on 10 trials of the Figure 2a setting at n = 8."""

    params = [[4, 6, 8]]
    param_names = ["k"]
    timeout = 300

    def setup(self, k):
        self.net, self.alloc, self.m = _setting(8, k)
        fastmp.match_probability(self.net, self.alloc, trials=2, seed=1)

    def time_match_probability(self, k):
        fastmp.match_probability(self.net, self.alloc, trials=10, seed=0)

    def peakmem_match_probability(self, k):
        fastmp.match_probability(self.net, self.alloc, trials=10, seed=0)
