"""Linear recurrent network (paper §3): ``Y = D sum_t W^(T-t+1) B X_t`` (eq. 3.3)."""
from __future__ import annotations

import numpy as np

from .._config import jit
from ..kernels.linear import assemble_columns, assemble_rhs, assembly_scratch
from ..kernels.rng import draw_segments
from .base import Model, _check_dim


class LRNN(Model):
    """``h_t = W h_{t-1} + B x_t`` (eq. 3.1), read out by the decoder ``D``.

    The output follows eq. (3.3), ``Y = D sum_{t=1}^T W^{T-t+1} B X_t``: every input is
    propagated at least once through ``W``, i.e. the state is read one step after the
    last input, ``y = D h_{T+1}`` with ``x_{T+1} = 0``. (Eq. 3.2 read literally,
    ``y_{T+1} = D h_T``, would give exponents ``T-t``; all theorems of §3 and Appendix B
    are proved for eq. 3.3, which we follow.)

    Parameters: ``W`` (n x n), ``B`` (n x b), ``D`` (d x n). Inputs ``X`` have shape
    ``(T, b, m)``. Required: ``T b <= n`` (the T b inputs reach independent states); it
    implies Theorem B.1's exact count ``T b d <= n (d + b)`` for a non-degenerate
    input-output map. The paper simplifies B.1 to "``T b <= n`` and ``T d <= n``", but its
    own Figure 2 runs ``T = n/2, d = 4`` (``T d = 2n``), so ``T d > n`` is allowed; results
    that need ``T d <= n`` (the column parts of Theorems 3.4/3.5) apply only when it holds.
    """

    linear_params = ("B", "D")

    def __init__(self, n, T, b, d):
        self.n = _check_dim("LRNN", "n", n)
        self.T = _check_dim("LRNN", "T", T)
        self.b = _check_dim("LRNN", "b", b)
        self.d = _check_dim("LRNN", "d", d)
        if self.T * self.b > self.n:
            raise ValueError(
                f"LRNN: T*b = {self.T * self.b} exceeds n = {self.n}; the paper assumes "
                "T b <= n (Theorem B.1: otherwise the T b inputs cannot reach independent states)")
        self.param_shapes = {"W": (self.n, self.n), "B": (self.n, self.b), "D": (self.d, self.n)}

    def dims(self):
        return {"n": self.n, "T": self.T, "b": self.b, "d": self.d}

    def input_shape(self, m):
        return (self.T, self.b, m)

    def max_generic_m(self):
        # X stacked over time is Tb x m; the paper needs it of full column rank.
        return self.T * self.b

    def state_sum(self, W, B, X, matmul=np.matmul):
        """``sum_t W^(T-t+1) B X_t`` by Horner's rule (the n x m input of the decoder)."""
        h = matmul(W, matmul(B, X[0]))
        for t in range(1, self.T):
            h = matmul(W, h + matmul(B, X[t]))
        return h

    def forward(self, weights, X):
        return weights["D"] @ self.state_sum(weights["W"], weights["B"], X)

    def linear_terms(self, name, weights, X, matmul=np.matmul):
        W, B, D = weights["W"], weights["B"], weights["D"]
        if name == "D":
            return [(np.eye(self.d, dtype=X.dtype), self.state_sum(W, B, X, matmul))]
        if name == "B":
            # vec(D W^k B X_t): L_t = D W^(T-t+1), R_t = X_t  (proof of Theorem B.14)
            G = [matmul(D, W)]
            for _ in range(1, self.T):
                G.append(matmul(G[-1], W))
            return [(G[self.T - 1 - t], X[t]) for t in range(self.T)]
        return super().linear_terms(name, weights, X, matmul)

    chain_sides = ("right", "left")

    def chain_program(self, m, side="right"):
        from ..kernels.chain import ChainProgram
        T = self.T
        if side == "left":
            # Y^T = sum_t X_t^T B^T (W^T)^(T-t+1) D^T: N_0 = D^T, N_k = W^T N_{k-1}
            # = (D W^k)^T, Lemma B.7's F; parameters are W^T, B^T, D^T
            shapes = [(c, r) for r, c in self.param_shapes.values()]
            return ChainProgram(shapes, [(m, self.b)] * T, src_kind=0, src_idx=2,
                                steps=[0] * T, terms=[(1, T - t, -1, t) for t in range(T)],
                                d=m, m=self.d)
        # N_0 = B, N_k = W N_{k-1} = W^k B; Y = sum_t D N_{T-t+1} X_t  (Lemma 3.3's F)
        return ChainProgram(list(self.param_shapes.values()), [(self.b, m)] * T,
                            src_kind=0, src_idx=1, steps=[0] * T,
                            terms=[(2, T - t, t) for t in range(T)], d=self.d, m=m)

    def chain_constants(self, X, side="right"):
        if side == "left":
            return [X[t].T.copy() for t in range(self.T)]
        return [X[t] for t in range(self.T)]

    def _linear_kernel(self):
        return _lrnn_batch, np.array([self.n, self.T, self.b, self.d], dtype=np.int64)


@jit
def _horner(W, B, X):
    h = np.dot(W, np.dot(B, X[0]))
    for t in range(1, X.shape[0]):
        h = np.dot(W, h + np.dot(B, X[t]))
    return h


@jit
def _lrnn_batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                alloc_i, alloc_j, C, rhs, scale):
    n, T, b, d = dims[0], dims[1], dims[2], dims[3]
    m = C.shape[1] // d
    buf = np.empty(seg_start[-1])
    if which == 2:  # decoder D: Y = I D X'
        Ls = np.zeros((1, d, d))
        for a in range(d):
            Ls[0, a, a] = 1.0
        Rs = np.empty((1, n, m))
        P = np.empty((d, n))
    else:  # encoder B: Y = sum_t (D W^(T-t+1)) B X_t
        Ls = np.empty((T, d, n))
        Rs = np.empty((T, b, m))
        P = np.empty((n, b))
    scratch = assembly_scratch(Ls, Rs, alloc_i)
    for k in range(trials.shape[0]):
        draw_segments(seed, np.uint64(trials[k]), seg_start, seg_scale, need, buf)
        Ws = buf[seg_start[3]:seg_start[4]].reshape((n, n))
        Bs = buf[seg_start[4]:seg_start[5]].reshape((n, b))
        Ds = buf[seg_start[5]:seg_start[6]].reshape((d, n))
        X = buf[seg_start[6]:seg_start[7]].reshape((T, b, m))
        if which == 2:
            Rs[0] = _horner(Ws, Bs, X)
        else:
            G = np.dot(Ds, Ws)
            Ls[T - 1] = G
            for t in range(T - 2, -1, -1):
                G = np.dot(G, Ws)
                Ls[t] = G
            Rs[:, :, :] = X
        assemble_columns(Ls, Rs, alloc_i, alloc_j, C[k], scratch)
        if with_rhs:
            Wt = buf[seg_start[0]:seg_start[1]].reshape((n, n))
            Bt = buf[seg_start[1]:seg_start[2]].reshape((n, b))
            Dt = buf[seg_start[2]:seg_start[3]].reshape((d, n))
            ystar = np.dot(Dt, _horner(Wt, Bt, X))
            P[:, :] = Ds if which == 2 else Bs
            scale[k] = assemble_rhs(Ls, Rs, P, ystar, alloc_i, alloc_j, rhs[k])
        else:
            rhs[k, :] = 0.0
            scale[k] = -1.0
