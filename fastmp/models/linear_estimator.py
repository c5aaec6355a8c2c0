"""Linear estimator ``Y = W X`` (paper §2.1)."""
from __future__ import annotations

import numpy as np

from .._config import jit
from ..kernels.linear import assemble_columns, assemble_rhs, assembly_scratch
from ..kernels.rng import draw_segments
from .base import Model, _check_dim


class LinearEstimator(Model):
    """``y = W x`` with ``W`` of shape ``(d, q)`` (§2.1, eq. 2.1-2.2).

    Learning ``W`` splits into ``d`` independent row systems: row ``i`` with ``r_i``
    learnable weights must solve ``r_i`` unknowns against ``m`` equations.
    """

    linear_params = ("W",)

    def __init__(self, q, d):
        self.q = _check_dim("LinearEstimator", "q", q)
        self.d = _check_dim("LinearEstimator", "d", d)
        self.param_shapes = {"W": (self.d, self.q)}

    def dims(self):
        return {"q": self.q, "d": self.d}

    def input_shape(self, m):
        return (self.q, m)

    def max_generic_m(self):
        return self.q

    def forward(self, weights, X):
        return weights["W"] @ X

    def linear_terms(self, name, weights, X, matmul=np.matmul):
        if name != "W":
            return super().linear_terms(name, weights, X, matmul)
        return [(np.eye(self.d, dtype=X.dtype), X)]

    def _linear_kernel(self):
        return _estimator_batch, np.array([self.q, self.d], dtype=np.int64)


@jit
def _estimator_batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                     alloc_i, alloc_j, C, rhs, scale):
    q, d = dims[0], dims[1]
    m = C.shape[1] // d
    buf = np.empty(seg_start[-1])
    Ls = np.zeros((1, d, d))
    for a in range(d):
        Ls[0, a, a] = 1.0
    Rs = np.empty((1, q, m))
    P = np.empty((d, q))
    scratch = assembly_scratch(Ls, Rs, alloc_i)
    for k in range(trials.shape[0]):
        draw_segments(seed, np.uint64(trials[k]), seg_start, seg_scale, need, buf)
        X = buf[seg_start[2]:seg_start[3]].reshape((q, m))
        Rs[0] = X
        assemble_columns(Ls, Rs, alloc_i, alloc_j, C[k], scratch)
        if with_rhs:
            Wt = buf[seg_start[0]:seg_start[1]].reshape((d, q))
            P[:, :] = buf[seg_start[1]:seg_start[2]].reshape((d, q))
            scale[k] = assemble_rhs(Ls, Rs, P, np.dot(Wt, X), alloc_i, alloc_j, rhs[k])
        else:
            rhs[k, :] = 0.0
            scale[k] = -1.0
