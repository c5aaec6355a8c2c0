"""Linear multi-layer feed-forward network (paper §4): ``Y = W_L ... W_1 X``."""
from __future__ import annotations

import numpy as np

from .._config import jit
from ..kernels.linear import assemble_columns1, assemble_rhs, assembly_scratch, matmul_into
from ..kernels.rng import draw_segments
from .base import Model, _check_dim


class LinearFFN(Model):
    """``Y = W_L W_{L-1} ... W_1 X`` with ``widths = (q, n_1, ..., n_{L-1}, d)``.

    Parameters ``W1 ... WL`` (``W1`` next to the input), ``W_l`` of shape
    ``(n_l, n_{l-1})``. §4 requires every hidden width ``n_l >= q`` and ``>= d`` so that
    a fully learned network expresses every linear map.

    Learning one layer ``W_l`` is linear (Theorem 4.1 / C.1):
    ``Y = A W_l B`` with ``A = W_L ... W_{l+1}``, ``B = W_{l-1} ... W_1 X``.
    """

    def __init__(self, widths):
        try:
            widths = tuple(widths)
        except TypeError:
            raise TypeError(f"LinearFFN: widths must be a sequence of integers, got {widths!r}") from None
        if len(widths) < 2:
            raise ValueError("LinearFFN: widths needs at least (q, d): input and output sizes")
        widths = tuple(_check_dim("LinearFFN", f"widths[{i}]", w) for i, w in enumerate(widths))
        self.widths = widths
        self.q, self.d = widths[0], widths[-1]
        self.L = len(widths) - 1
        for i, w in enumerate(widths[1:-1], start=1):
            if w < self.q or w < self.d:
                raise ValueError(
                    f"LinearFFN: hidden layer {i} has width {w} < max(q, d) = "
                    f"{max(self.q, self.d)}; §4 requires n_l >= q and n_l >= d "
                    "(no layer narrower than the input or the output)")
        self.param_shapes = {f"W{l}": (widths[l], widths[l - 1]) for l in range(1, self.L + 1)}
        self.linear_params = tuple(self.param_shapes)

    def dims(self):
        return {"widths": self.widths}

    def input_shape(self, m):
        return (self.q, m)

    def max_generic_m(self):
        return self.q

    def layer_index(self, name):
        return self.param_names.index(name) + 1

    def forward(self, weights, X):
        h = X
        for l in range(1, self.L + 1):
            h = weights[f"W{l}"] @ h
        return h

    def linear_terms(self, name, weights, X, matmul=np.matmul):
        if name not in self.param_shapes:
            return super().linear_terms(name, weights, X, matmul)
        l = self.layer_index(name)
        R = X
        for k in range(1, l):
            R = matmul(weights[f"W{k}"], R)
        Lm = np.eye(self.d, dtype=X.dtype)
        for k in range(self.L, l, -1):
            Lm = matmul(Lm, weights[f"W{k}"])
        return [(Lm, R)]

    chain_sides = ("right", "left")

    def chain_program(self, m, side="right"):
        from ..kernels.chain import ChainProgram
        L = self.L
        if side == "left":
            # Y^T = X^T W_1^T ... W_L^T: N_0 = W_L^T, N_k = W_{L-k}^T N_{k-1} (partial
            # products from the output side); parameters transposed
            shapes = [(c, r) for r, c in self.param_shapes.values()]
            return ChainProgram(shapes, [(m, self.q)], src_kind=0, src_idx=L - 1,
                                steps=list(range(L - 2, -1, -1)), terms=[(-1, L - 1, -1, 0)],
                                d=m, m=self.d)
        # N_0 = X, N_l = W_l N_{l-1} (eqs. 4.1-4.2's F_l), Y = W_L N_{L-1} (4.3)
        return ChainProgram(list(self.param_shapes.values()), [(self.q, m)],
                            src_kind=1, src_idx=0, steps=list(range(L - 1)),
                            terms=[(L - 1, L - 1, -1)], d=self.d, m=m)

    def chain_constants(self, X, side="right"):
        return [X.T.copy()] if side == "left" else [X]

    def _linear_kernel(self):
        return _ffn_batch, np.array((self.L,) + self.widths, dtype=np.int64)


@jit
def _layer(buf, seg_start, seg, widths, l):
    # layer l (0-based) lives in segment `seg`; shape (widths[l+1], widths[l])
    return buf[seg_start[seg]:seg_start[seg + 1]].reshape((widths[l + 1], widths[l]))


@jit
def _ffn_batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
               alloc_i, alloc_j, C, rhs, scale):
    L = dims[0]
    widths = dims[1:]
    q, d = widths[0], widths[L]
    m = C.shape[1] // d
    wmax = widths.max()
    buf = np.empty(seg_start[-1])
    Ls = np.empty((1, d, widths[which + 1]))
    Rs = np.empty((1, widths[which], m))
    P = np.empty((widths[which + 1], widths[which]))
    # ping-pong scratch for the running products (no allocation per trial)
    ra = np.empty(wmax * m)
    rb = np.empty(wmax * m)
    ga = np.empty(d * wmax)
    gb = np.empty(d * wmax)
    scratch = assembly_scratch(Ls, Rs, alloc_i)[0]
    for k in range(trials.shape[0]):
        draw_segments(seed, np.uint64(trials[k]), seg_start, seg_scale, need, buf)
        X = buf[seg_start[2 * L]:seg_start[2 * L + 1]].reshape((q, m))
        # R = W_{which-1} ... W_0 X  (student layers below the learned one)
        src = X
        for l in range(which):
            dst = (ra if l % 2 == 0 else rb)[:widths[l + 1] * m].reshape((widths[l + 1], m))
            matmul_into(_layer(buf, seg_start, L + l, widths, l), src, dst)
            src = dst
        # G = W_{L-1} ... W_{which+1}  (student layers above it; identity if none)
        if which == L - 1:
            Ls[0] = np.eye(d)
            Rs[0] = src
            assemble_columns1(Ls[0], Rs[0], alloc_i, alloc_j, C[k], scratch)
        else:
            gsrc = _layer(buf, seg_start, 2 * L - 1, widths, L - 1)
            for i, l in enumerate(range(L - 2, which, -1)):
                gdst = (ga if i % 2 == 0 else gb)[:d * widths[l]].reshape((d, widths[l]))
                matmul_into(gsrc, _layer(buf, seg_start, L + l, widths, l), gdst)
                gsrc = gdst
            # no copies: the factors are read where they were computed
            assemble_columns1(gsrc, src, alloc_i, alloc_j, C[k], scratch)
            if with_rhs:
                Ls[0] = gsrc
                Rs[0] = src
        if with_rhs:
            h = X.copy()
            for l in range(L):
                h = np.dot(_layer(buf, seg_start, l, widths, l), h)
            P[:, :] = _layer(buf, seg_start, L + which, widths, which)
            scale[k] = assemble_rhs(Ls, Rs, P, h, alloc_i, alloc_j, rhs[k])
        else:
            rhs[k, :] = 0.0
            scale[k] = -1.0
