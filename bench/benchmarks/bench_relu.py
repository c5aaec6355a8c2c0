"""Benchmarks of the ShallowReLU W1 decision (issue 4): one pattern solve of the fast
search, the fast search per trial, the exact activation-pattern enumeration per trial, the
exact certificate of a match, and end-to-end ``match_probability`` (time and peak memory).
``setup`` warms the JIT; everything runs on one core."""
import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import fastmp  # noqa: E402
from fastmp.estimators.relu import (certify_match_exact, exact_decide,  # noqa: E402
                                    relu_trial_system)
from fastmp.estimators.relu_search import search_decide  # noqa: E402
from fastmp.generators import random_mask  # noqa: E402


def _system(k, trial=0, q=6, n=8, d=2, m=4, r=8):
    net = fastmp.ShallowReLU(q=q, n=n, d=d)
    mask = random_mask((n, q), r, np.random.default_rng(k), k=k, row_cap=min(q, m), col_cap=d)
    return net, mask, relu_trial_system(net, mask, m, 0, trial)


class PatternSearch:
    """The certified pattern search on one trial: 1 start (about one pattern solve and
    its fixed-point steps) and 64 starts (the default budget)."""

    params = [[2, 4]]
    param_names = ["k"]

    def setup(self, k):
        self.s = _system(k)[2]
        search_decide(self.s, starts=2)

    def time_one_start(self, k):
        search_decide(self.s, starts=1)

    def time_64_starts(self, k):
        search_decide(self.s, starts=64)


class ExactEnumeration:
    """Branch and bound over activation patterns (margin LPs) on one trial; k m <= 16."""

    params = [[2, 4]]
    param_names = ["k"]
    timeout = 300

    def setup(self, k):
        self.s = _system(k)[2]

    def time_exact_decide(self, k):
        exact_decide(self.s)


class Certificate:
    """Exact rational certificate of a match the search returned (skipped when the
    benchmark trial has none)."""

    def setup(self):
        for trial in range(50):
            s = _system(4, trial)[2]
            out = search_decide(s, starts=64)
            if out["status"] == fastmp.MATCH:
                self.s, self.out = s, out
                return
        raise NotImplementedError("no matching trial in the first 50")

    def time_certify_match_exact(self):
        certify_match_exact(self.s, self.out["pattern"], self.out["w"])


class EndToEnd:
    """``match_probability`` on 20 trials of Figure 3b's setting (q 6, d 4, m 6, r 24)."""

    params = [[4, 8]]
    param_names = ["k"]
    timeout = 300

    def setup(self, k):
        self.net = fastmp.ShallowReLU(q=6, n=8, d=4)
        mask = random_mask((8, 6), 24, np.random.default_rng(k), k=k, row_cap=6, col_cap=4)
        self.alloc = fastmp.Allocation(self.net, {"W1": mask})
        fastmp.match_probability(self.net, self.alloc, m=6, trials=2, seed=1)

    def time_match_probability(self, k):
        fastmp.match_probability(self.net, self.alloc, m=6, trials=20, seed=0)

    def peakmem_match_probability(self, k):
        fastmp.match_probability(self.net, self.alloc, m=6, trials=20, seed=0)
