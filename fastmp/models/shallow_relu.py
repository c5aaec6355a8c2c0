"""Shallow ReLU network (paper §5, Appendix D): ``Y = W2 relu(W1 X)``."""
from __future__ import annotations

import numpy as np

from .._config import jit
from ..kernels.linear import assemble_columns, assemble_rhs, assembly_scratch
from ..kernels.rng import draw_segments
from .base import Model, _check_dim


def relu(x):
    # integer 0 keeps exact (Fraction) inputs exact; floats stay floats
    return np.maximum(x, 0)


class ShallowReLU(Model):
    """``y_i = W2 relu(W1 x_i)`` with ``W1`` (n x q) and ``W2`` (d x n).

    Learning only ``W2`` is linear: ``Y = W2 H`` with ``H = relu(W1 X)`` fixed, a decoder
    problem -- but unlike the linear decoder (Theorem 3.1) ``H`` has exact zeros, so MP
    lies strictly between 0 and 1 and is estimated trial by trial. Allocations in ``W1``
    need the activation-pattern search of Appendix D.
    """

    linear_params = ("W2",)
    #: the system is not polynomial in the random draws (relu), so the finite-field
    #: generic-rank oracle does not apply
    algebraic = False

    def __init__(self, q, n, d):
        self.q = _check_dim("ShallowReLU", "q", q)
        self.n = _check_dim("ShallowReLU", "n", n)
        self.d = _check_dim("ShallowReLU", "d", d)
        if self.n < self.d:
            raise ValueError(
                f"ShallowReLU: hidden width n = {self.n} < d = {self.d}; a hidden layer "
                "narrower than the output cannot express every target (Lemma D.3 needs "
                "at least d active units per sample)")
        self.param_shapes = {"W1": (self.n, self.q), "W2": (self.d, self.n)}

    def dims(self):
        return {"q": self.q, "n": self.n, "d": self.d}

    def input_shape(self, m):
        return (self.q, m)

    def max_generic_m(self):
        return self.q

    def forward(self, weights, X):
        return weights["W2"] @ relu(weights["W1"] @ X)

    def linear_terms(self, name, weights, X, matmul=np.matmul):
        if name != "W2":
            return super().linear_terms(name, weights, X, matmul)
        return [(np.eye(self.d, dtype=X.dtype), relu(matmul(weights["W1"], X)))]

    def _linear_kernel(self):
        return _relu_w2_batch, np.array([self.q, self.n, self.d], dtype=np.int64)


@jit
def _relu_w2_batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                   alloc_i, alloc_j, C, rhs, scale):
    q, n, d = dims[0], dims[1], dims[2]
    m = C.shape[1] // d
    buf = np.empty(seg_start[-1])
    Ls = np.zeros((1, d, d))
    for a in range(d):
        Ls[0, a, a] = 1.0
    Rs = np.empty((1, n, m))
    P = np.empty((d, n))
    scratch = assembly_scratch(Ls, Rs, alloc_i)
    for k in range(trials.shape[0]):
        draw_segments(seed, np.uint64(trials[k]), seg_start, seg_scale, need, buf)
        W1s = buf[seg_start[2]:seg_start[3]].reshape((n, q))
        X = buf[seg_start[4]:seg_start[5]].reshape((q, m))
        Rs[0] = np.maximum(np.dot(W1s, X), 0.0)
        assemble_columns(Ls, Rs, alloc_i, alloc_j, C[k], scratch)
        if with_rhs:
            W1t = buf[seg_start[0]:seg_start[1]].reshape((n, q))
            W2t = buf[seg_start[1]:seg_start[2]].reshape((d, n))
            ystar = np.dot(W2t, np.maximum(np.dot(W1t, X), 0.0))
            P[:, :] = buf[seg_start[3]:seg_start[4]].reshape((d, n))
            scale[k] = assemble_rhs(Ls, Rs, P, ystar, alloc_i, alloc_j, rhs[k])
        else:
            rhs[k, :] = 0.0
            scale[k] = -1.0
