"""Example plugin model: the 2 x 2 recurrent system of Appendix B.1.1, written as a
:class:`fastmp.plugins.PolynomialModel`.

The built-in ``fastmp.LRNN(n=2, T=2, b=1, d=1)`` with two learnable entries of ``W`` and
``m = 2`` samples has the output (eq. 3.3, Lemma 3.3)

    y_c = D W (W B X_1c + B X_2c),   c = 1, 2,

a polynomial system of degree 2 in the two unknowns. Here it is stated directly by its
residual ``R_c(x) = y_c(x) - y*_c`` and Jacobian, and drawn from fastmp's random streams
with the built-in model's layout (Appendix E.3: teacher W, B, D; student W, B, D; inputs
X; each weight N(0, 1/fan_in), X ~ N(0, 1)), so that trial ``t`` of a seed is the very
trial the built-in model sees. ``tests/test_plugin.py`` checks that the plugin's MP equals
the built-in one trial by trial (and the discriminant oracle of fastmp.theory.b11).

Run it::

    python examples/b11_plugin.py diagonal 1000
"""
from __future__ import annotations

import sys

import numba
import numpy as np

import fastmp
from fastmp.kernels.rng import draw_segments
from fastmp.plugins import PolynomialModel

# Trial layout: (name, size, standard deviation) in fastmp's segment order for
# LRNN(n=2, T=2, b=1, d=1) with m = 2 -- segment k is drawn from stream k.
_SEGMENTS = [("teacher W", 4, 1 / np.sqrt(2)), ("teacher B", 2, 1.0),
             ("teacher D", 2, 1 / np.sqrt(2)), ("student W", 4, 1 / np.sqrt(2)),
             ("student B", 2, 1.0), ("student D", 2, 1 / np.sqrt(2)), ("X", 4, 1.0)]
SEG_START = np.concatenate([[0], np.cumsum([s[1] for s in _SEGMENTS])]).astype(np.int64)
SEG_SCALE = np.array([s[2] for s in _SEGMENTS])
NEED = np.ones(len(_SEGMENTS), dtype=np.bool_)
N_DRAWS = int(SEG_START[-1])   # 20; data[20:22] holds the teacher's outputs y*
N_DATA = N_DRAWS + 2

#: allocated cells (row, column) of W, row-major: Appendix B.1.1's six allocations
CELLS = {
    "diagonal": ((0, 0), (1, 1)), "off_diagonal": ((0, 1), (1, 0)),
    "row1": ((0, 0), (0, 1)), "row2": ((1, 0), (1, 1)),
    "col1": ((0, 0), (1, 0)), "col2": ((0, 1), (1, 1)),
}


@numba.njit(cache=True)
def _lrnn_outputs(w0, w1, w2, w3, p, q, u, v, X, out):
    """y_c = D W (W B X_1c + B X_2c) for W = [[w0, w1], [w2, w3]], B = (p, q)^T,
    D = (u, v); X[t * 2 + c] is input t, sample c."""
    for c in range(2):
        a0 = (w0 * p + w1 * q) * X[c] + p * X[2 + c]
        a1 = (w2 * p + w3 * q) * X[c] + q * X[2 + c]
        out[c] = (u * w0 + v * w2) * a0 + (u * w1 + v * w3) * a1


@numba.njit(cache=True)
def draw(seed, trial, data):
    """The built-in model's draws for (seed, trial), then the teacher's outputs."""
    draw_segments(seed, trial, SEG_START, SEG_SCALE, NEED, data[:N_DRAWS])
    _lrnn_outputs(data[0], data[1], data[2], data[3], data[4], data[5], data[6], data[7],
                  data[16:20], data[N_DRAWS:])


def make_plugin(allocation="diagonal", via_cfunc=False, addresses=None):
    """The B.1.1 system of ``allocation`` (a key of :data:`CELLS`) as a plugin model.

    ``via_cfunc=True`` passes the residual and Jacobian as C function pointers (Numba
    ``@cfunc``) through :meth:`PolynomialModel.from_addresses`; ``addresses=(residual,
    jacobian)`` passes the addresses of C functions compiled elsewhere, e.g. the Cython
    ones of ``b11_residual.pyx`` (``b11_residual.addresses(allocation)``).
    """
    (i0, j0), (i1, j1) = CELLS[allocation]
    k0, k1 = 2 * i0 + j0, 2 * i1 + j1

    def values(x, data):
        """R(x) with + - * only: runs under Numba and on arb balls (certification)."""
        w0 = x[0] if k0 == 0 else (x[1] if k1 == 0 else data[8])
        w1 = x[0] if k0 == 1 else (x[1] if k1 == 1 else data[9])
        w2 = x[0] if k0 == 2 else (x[1] if k1 == 2 else data[10])
        w3 = x[0] if k0 == 3 else (x[1] if k1 == 3 else data[11])
        p, q, u, v = data[12], data[13], data[14], data[15]
        r = []
        for c in range(2):
            a0 = (w0 * p + w1 * q) * data[16 + c] + p * data[18 + c]
            a1 = (w2 * p + w3 * q) * data[16 + c] + q * data[18 + c]
            r.append((u * w0 + v * w2) * a0 + (u * w1 + v * w3) * a1 - data[N_DRAWS + c])
        return r

    @numba.njit
    def residual(x, data, out):
        w = data[8:12].copy()
        w[k0] = x[0]
        w[k1] = x[1]
        _lrnn_outputs(w[0], w[1], w[2], w[3], data[12], data[13], data[14], data[15],
                      data[16:20], out)
        for c in range(2):
            out[c] -= data[N_DRAWS + c]

    @numba.njit
    def jacobian(x, data, out):
        # dy_c / dW_ij = D_i a_j + (D W)_i B_j X_1c with a = W B X_1c + B X_2c
        w = data[8:12].copy()
        w[k0] = x[0]
        w[k1] = x[1]
        B = data[12:14]
        D = data[14:16]
        for c in range(2):
            X1, X2 = data[16 + c], data[18 + c]
            for col, k in enumerate((k0, k1)):
                i, j = k // 2, k % 2
                a_j = (w[2 * j] * B[0] + w[2 * j + 1] * B[1]) * X1 + B[j] * X2
                dw_i = D[0] * w[i] + D[1] * w[2 + i]
                out[c, col] = D[i] * a_j + dw_i * B[j] * X1

    name = f"B.1.1 {allocation}"
    scale = 1 / np.sqrt(2)   # W's entries are N(0, 1/2) (fan-in 2): starts at that scale
    if addresses is not None:
        return PolynomialModel.from_addresses(name + " (C callbacks)", 2, N_DATA, draw,
                                              addresses[0], addresses[1], values,
                                              start_scale=scale)
    if not via_cfunc:
        return PolynomialModel(name, n_vars=2, n_data=N_DATA, draw=draw, residual=residual,
                               jacobian=jacobian, residual_generic=values, start_scale=scale)

    sig = numba.types.void(numba.types.CPointer(numba.float64),
                           numba.types.CPointer(numba.float64),
                           numba.types.CPointer(numba.float64))

    @numba.cfunc(sig)
    def residual_c(x, data, out):
        residual(numba.carray(x, 2), numba.carray(data, N_DATA), numba.carray(out, 2))

    @numba.cfunc(sig)
    def jacobian_c(x, data, out):
        jacobian(numba.carray(x, 2), numba.carray(data, N_DATA), numba.carray(out, (2, 2)))

    model = PolynomialModel.from_addresses(name + " (C callbacks)", 2, N_DATA, draw,
                                           residual_c.address, jacobian_c.address, values,
                                           start_scale=scale)
    model._cfuncs = (residual_c, jacobian_c)  # keep the compiled C functions alive
    return model


def main(argv):
    allocation = argv[1] if len(argv) > 1 else "diagonal"
    trials = int(argv[2]) if len(argv) > 2 else 1000
    plugin = make_plugin(allocation)
    res = fastmp.match_probability(plugin, trials=trials, seed=0)
    print(f"plugin   {res}")
    builtin = fastmp.generators.b11_allocations()[allocation]
    ref = fastmp.match_probability(builtin.model, builtin, trials=trials, seed=0,
                                   method="newton")
    print(f"built-in {ref}")
    print("trial by trial equal:", bool(np.array_equal(res.status, ref.status)))


if __name__ == "__main__":
    main(sys.argv)
