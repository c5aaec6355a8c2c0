"""Levenberg-Marquardt on the lifted system of Lemma 3.3, in eliminated form.

The lifted system keeps the chain's nodes ``N_k`` (``k >= 1``) as unknowns beside the
learnable weights ``w``: node equations ``N_k - A_k N_{k-1} = 0`` and the output
equations ``Y(N) - Y* = 0``. Eliminated lifted Newton
(:func:`fastmp.kernels.chain.newton` with ``lifted=True``) solves the node equations'
linearisation exactly and the output equations' linearisation, reduced to ``r``
unknowns, by one ``r x r`` solve. This kernel damps that reduced step instead:

    dw = argmin |g + J dw|^2 + lam dw^T diag(J^T J) dw,      g = Y(N) - Y* + corr,

with ``J`` the Jacobian of the outputs on the current nodes (zero defects) and ``corr``
the defects ``E_k = A_k N_{k-1} - N_k`` propagated to the outputs (as in ``newton``), and
moves the nodes by the eliminated linearisation ``dN_k = A_k dN_{k-1} + dA_k N_{k-1} +
E_k``. The merit is the lifted residual ``sum_k |E_k|^2 + |Y(N) - Y*|^2``; the linear model
predicts ``|g + J dw|^2`` for it (the defects vanish to first order). Damping, gain ratio
and stall test are those of :func:`fastmp.kernels.chain.levenberg_marquardt` (Nielsen's
rule, Cholesky solve); once the relative residual is below 1e-4, eliminated lifted Newton
polishes from the current weights and nodes.

Measured at Figure 2a, n = 8 (30 trials x 20 starts, the same starts for each solver;
candidates with relative residual < 1e-6): at k = 8 it finds a root from 22% of starts
at 0.39-0.44 ms per start, 0.51-0.58 roots per ms -- eliminated lifted Newton 7% at 0.27 ms (0.25),
LM on the original system 19% at 0.48 ms (0.40) -- and its success is spread evenly over
the trials (1 of 30 without a root in 20 starts; 7 each for the other two). At k = 5 and
6 it is far behind eliminated lifted Newton (0.2-0.4 against 1.8-2.6 roots per ms). In
the search portfolio (300 trials, three seeds) it made k = 8 8% faster and k = 6 11%
slower at the same MP, so :mod:`fastmp.estimators.polynomial` does not use it; it is
kept, tested, as the best single solver found for the k = 8 end of Figure 2a. One
iteration costs 3.5-3.6 us at n = 8 (``bench/limits.py``, informational row): the
Jacobian 0.9, ``J^T J`` 0.4, Cholesky 0.8, the node step 0.4, the lifted residual 0.5.
"""
from __future__ import annotations

import numpy as np

from .._config import jit
from .chain import (_homogeneous, _jacobian_homogeneous_into, _max_residual, _maxabs2,
                    _scratch, _set_vars, forward_nodes, jacobian_generic, lifted_defects,
                    lifted_node_step, newton, node_shapes, output_pair_into)
from .dense import cholesky_solve_damped


@jit(_nrt=False)
def _lifted_state(PT, pshape, P, C, cshape, steps, terms, ns, N, E, eN, Y, corr, Ystar, G):
    """Defects ``E_k = A_k N_{k-1} - N_k``, propagated defects ``eN`` (``e_k = A_k e_{k-1}
    + E_k``), outputs ``Y - Y*`` of the nodes ``N`` and their defect correction ``corr``;
    returns the merit ``sum |E_k|^2 + |Y - Y*|^2``. ``PT`` holds the step parameters
    transposed (contiguous inner loops, as in :func:`fastmp.kernels.chain.newton`)."""
    d, m = Ystar.shape
    _, f = lifted_defects(PT, pshape, steps, ns, N, E, eN)
    output_pair_into(P, pshape, C, cshape, terms, ns, N, eN, d, m, Y, corr, G)
    for i in range(d):
        for c in range(m):
            Y[i, c] -= Ystar[i, c]
            f += Y[i, c] * Y[i, c]
    return f


@jit(_nrt=False)
def _set_vars_both(P, PT, var, w):
    """The learnable entries ``w`` into ``P`` and its transpose ``PT``."""
    for v in range(var.shape[0]):
        P[var[v, 0], var[v, 1], var[v, 2]] = w[v]
        PT[var[v, 0], var[v, 2], var[v, 1]] = w[v]


@jit
def lifted_levenberg_marquardt(P, pshape, C, cshape, src_kind, src_idx, steps, terms, var,
                               Ystar, w0, N0, max_iter, tol, stall_window=25,
                               stall_ratio=0.9):
    """Eliminated Levenberg-Marquardt on the lifted system from ``w0`` and nodes ``N0``
    (see the module docstring); then eliminated lifted Newton polishes. ``P`` is
    overwritten. Returns ``(w, residual, iterations, last_step)`` like
    :func:`fastmp.kernels.chain.newton` (``residual``: relative max-norm of the original
    system's residual on consistent nodes; ``iterations``: damped solves attempted,
    accepted or not, plus the polish's Newton steps)."""
    d, m = Ystar.shape
    r = var.shape[0]
    K = steps.shape[0]
    dm = d * m
    ns = node_shapes(pshape, cshape, src_kind, src_idx, steps)
    # node-sized buffers in one allocation; the trial point's state is swapped with the
    # current one on acceptance
    nodes = np.zeros((8, K + 1, P.shape[1] if P.shape[1] > ns[0, 0] else ns[0, 0],
                      ns[0, 1]))
    N, N2, E, E2, eN, eN2, dN, E0 = (nodes[0], nodes[1], nodes[2], nodes[3], nodes[4],
                                     nodes[5], nodes[6], nodes[7])
    small = np.zeros((6, dm))
    Y, Y2, corr, corr2, corrJ = (small[0].reshape((d, m)), small[1].reshape((d, m)),
                                 small[2].reshape((d, m)), small[3].reshape((d, m)),
                                 small[4].reshape((d, m)))
    R = small[5]
    J = np.empty((dm, r))
    vec = np.empty((5, r))
    wn, dw, mg, g, w = vec[0], vec[1], vec[2], vec[3], vec[4]
    A = np.empty((r, r))
    Wch = np.empty((r, r))
    Q, Z, V, col, G = _scratch(P, pshape, steps, terms, ns, d, m)
    homog = _homogeneous(steps, terms, src_kind, src_idx)
    for v in range(r):
        w[v] = w0[v]
    PT = np.zeros((P.shape[0], P.shape[2], P.shape[1]))
    for k in range(K):
        a = steps[k]
        for i in range(pshape[a, 0]):
            for q in range(pshape[a, 1]):
                PT[a, q, i] = P[a, i, q]
    _set_vars_both(P, PT, var, w)
    forward_nodes(P, pshape, C, src_kind, src_idx, steps, ns, N)
    for k in range(1, K + 1):
        for i in range(ns[k, 0]):
            for j in range(ns[k, 1]):
                N[k, i, j] = N0[k, i, j]
    yscale = max(1.0, _maxabs2(Ystar, d, m))
    f = _lifted_state(PT, pshape, P, C, cshape, steps, terms, ns, N, E, eN, Y, corr, Ystar,
                      G)
    lam = 1e-3
    nu = 2.0
    step = np.inf
    f_mark = f
    need_jacobian = True
    it = 0  # damped solves done (accepted or not)
    for _ in range(max_iter):
        if not np.isfinite(f) or np.sqrt(f) / yscale < 1e-4:
            break
        if it > 0 and it % stall_window == 0:
            if f > stall_ratio * f_mark:
                break  # stalled at a local minimum of the lifted residual
            f_mark = f
        it += 1
        if need_jacobian:
            # the outputs' Jacobian on the current nodes with zero defects
            if homog:
                _jacobian_homogeneous_into(P, pshape, C, cshape, src_kind, src_idx, steps,
                                           terms, ns, N, E0, var, d, m, J, corrJ, Q, Z, V,
                                           col, True)
            else:
                jacobian_generic(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns,
                                 N, E0, var, d, m, J, corrJ)
            for e in range(dm):
                R[e] = Y[e // m, e % m] + corr[e // m, e % m]
            # A = J^T J and g = J^T R through BLAS (as levenberg_marquardt)
            A = J.T @ J
            g = J.T @ R
            for i in range(r):
                mg[i] = -g[i]
        accepted = False
        if cholesky_solve_damped(A, mg, lam, Wch, dw):
            lifted_node_step(PT, pshape, src_kind, src_idx, steps, ns, var, dw, N, E, dN)
            for k in range(K + 1):
                for i in range(ns[k, 0]):
                    for j in range(ns[k, 1]):
                        N2[k, i, j] = N[k, i, j] + dN[k, i, j]
            for v in range(r):
                wn[v] = w[v] + dw[v]
            _set_vars_both(P, PT, var, wn)
            fn = _lifted_state(PT, pshape, P, C, cshape, steps, terms, ns, N2, E2, eN2, Y2,
                               corr2, Ystar, G)
            # the linear model's merit |R + J dw|^2 (the defects vanish to first order)
            # = |R|^2 + 2 dw.g + dw.A dw, where (A + lam D) dw = -g gives
            # dw.A dw = -dw.g - lam dw.D dw: O(r) instead of a product with A
            lin = 0.0
            for e in range(dm):
                lin += R[e] * R[e]
            for i in range(r):
                lin += dw[i] * g[i] - lam * max(A[i, i], 1e-12) * dw[i] * dw[i]
            predicted = f - lin
            rho = (f - fn) / predicted if predicted > 0.0 else -1.0
            if fn < f and rho > 0.0:
                wmax = 0.0
                dmaxw = 0.0
                for v in range(r):
                    wmax = max(wmax, abs(wn[v]))
                    dmaxw = max(dmaxw, abs(dw[v]))
                step = dmaxw / (1.0 + wmax)
                w, wn = wn, w
                N, N2 = N2, N
                E, E2 = E2, E
                eN, eN2 = eN2, eN
                Y, Y2 = Y2, Y
                corr, corr2 = corr2, corr
                f = fn
                lam = max(lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), 1e-12)
                nu = 2.0
                accepted = True
        if not accepted:
            _set_vars_both(P, PT, var, w)
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                break
        need_jacobian = accepted
    _set_vars(P, var, w)
    w = w.copy()
    if np.isfinite(f) and np.sqrt(f) / yscale < 1e-4:
        w2, res, it2, step2 = newton(P, pshape, C, cshape, src_kind, src_idx, steps, terms,
                                     var, Ystar, w, N, True, 30, tol)
        return w2, res, it + it2, step2
    return w, _max_residual(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, N,
                            Ystar, Y, yscale), it, step
