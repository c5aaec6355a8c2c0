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

Why: at Figure 2a, n = 8, k = 8 (Python prototype, 30 trials x 10 starts) Newton on the
lifted system finds a root from 8.6% of starts and LM on the original system from 21%,
with the latter's success split between easy trials and trials it almost never solves;
LM on the lifted system (full or eliminated) from 27-34%, more evenly across trials.
"""
from __future__ import annotations

import numpy as np

from .._config import jit
from .chain import (_homogeneous, _jacobian_into, _max_residual, _maxabs2, _mm, _scratch,
                    _set_vars, _workspace, forward_nodes, newton, output_pair_into)
from .dense import cholesky_solve_damped


@jit
def _lifted_state(P, pshape, C, cshape, steps, terms, ns, N, E, eN, Y, corr, Ystar, G):
    """Defects ``E_k``, propagated defects ``eN``, outputs ``Y - Y*`` of the nodes ``N``
    and their defect correction ``corr``; returns the merit ``sum |E_k|^2 + |Y - Y*|^2``."""
    d, m = Ystar.shape
    K = steps.shape[0]
    dsq = 0.0
    for k in range(1, K + 1):
        a = steps[k - 1]
        for i in range(ns[k, 0]):
            for j in range(ns[k, 1]):
                s1 = 0.0
                s2 = 0.0
                for q in range(pshape[a, 1]):
                    x = P[a, i, q]
                    s1 += x * N[k - 1, q, j]
                    s2 += x * eN[k - 1, q, j]
                e = s1 - N[k, i, j]
                E[k, i, j] = e
                eN[k, i, j] = s2 + e
                dsq += e * e
    output_pair_into(P, pshape, C, cshape, terms, ns, N, eN, d, m, Y, corr, G)
    for i in range(d):
        for c in range(m):
            Y[i, c] -= Ystar[i, c]
            dsq += Y[i, c] * Y[i, c]
    return dsq


@jit
def lifted_levenberg_marquardt(P, pshape, C, cshape, src_kind, src_idx, steps, terms, var,
                               Ystar, w0, N0, max_iter, tol, stall_window=25,
                               stall_ratio=0.9):
    """Eliminated Levenberg-Marquardt on the lifted system from ``w0`` and nodes ``N0``
    (see the module docstring); then eliminated lifted Newton polishes. ``P`` is
    overwritten. Returns ``(w, residual, iterations, last_step)`` like
    :func:`fastmp.kernels.chain.newton` (``residual``: relative max-norm of the original
    system's residual on consistent nodes)."""
    d, m = Ystar.shape
    r = var.shape[0]
    K = steps.shape[0]
    ns, N, E, J, corr, Y = _workspace(P, pshape, cshape, src_kind, src_idx, steps, d, m, r)
    S = _scratch(P, pshape, steps, terms, ns, d, m)
    homog = _homogeneous(steps, terms, src_kind, src_idx)
    # trial-point state, swapped with the current one on acceptance
    N2 = np.zeros_like(N)
    E2 = np.zeros_like(N)
    eN = np.zeros_like(N)
    eN2 = np.zeros_like(N)
    Y2 = np.empty((d, m))
    corr2 = np.empty((d, m))
    dN = np.zeros_like(N)
    E0 = np.zeros_like(N)
    corrJ = np.zeros((d, m))
    w = w0.copy()
    wn = np.empty(r)
    dw = np.empty(r)
    mg = np.empty(r)
    R = np.empty(d * m)
    A = np.empty((r, r))
    g = np.empty(r)
    Wch = np.empty((r, r))
    _set_vars(P, var, w)
    forward_nodes(P, pshape, C, src_kind, src_idx, steps, ns, N)
    for k in range(1, K + 1):
        for i in range(ns[k, 0]):
            for j in range(ns[k, 1]):
                N[k, i, j] = N0[k, i, j]
    yscale = max(1.0, _maxabs2(Ystar, d, m))
    f = _lifted_state(P, pshape, C, cshape, steps, terms, ns, N, E, eN, Y, corr, Ystar, S[4])
    lam = 1e-3
    nu = 2.0
    step = np.inf
    f_mark = f
    need_jacobian = True
    it = 0
    for it in range(max_iter):
        if not np.isfinite(f) or np.sqrt(f) / yscale < 1e-4:
            break
        if it > 0 and it % stall_window == 0:
            if f > stall_ratio * f_mark:
                break  # stalled at a local minimum of the lifted residual
            f_mark = f
        if need_jacobian:
            _jacobian_into(homog, P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns,
                           N, E0, var, d, m, J, corrJ, S)
            for e in range(d * m):
                R[e] = Y[e // m, e % m] + corr[e // m, e % m]
            A = J.T @ J
            g = J.T @ R
            for i in range(r):
                mg[i] = -g[i]
        accepted = False
        if cholesky_solve_damped(A, mg, lam, Wch, dw):
            # node step by the eliminated linearisation, with the current A_k, N_{k-1}
            for i in range(ns[0, 0]):
                for j in range(ns[0, 1]):
                    dN[0, i, j] = 0.0
            if src_kind == 0:
                for v in range(r):
                    if var[v, 0] == src_idx:
                        dN[0, var[v, 1], var[v, 2]] = dw[v]
            for k in range(1, K + 1):
                a = steps[k - 1]
                _mm(P[a], pshape[a, 0], pshape[a, 1], dN[k - 1], ns[k, 1], dN[k])
                for i in range(ns[k, 0]):
                    for j in range(ns[k, 1]):
                        dN[k, i, j] += E[k, i, j]
                for v in range(r):
                    if var[v, 0] == a:
                        vi, vj = var[v, 1], var[v, 2]
                        for j in range(ns[k, 1]):
                            dN[k, vi, j] += dw[v] * N[k - 1, vj, j]
            for k in range(K + 1):
                for i in range(ns[k, 0]):
                    for j in range(ns[k, 1]):
                        N2[k, i, j] = N[k, i, j] + dN[k, i, j]
            for v in range(r):
                wn[v] = w[v] + dw[v]
            _set_vars(P, var, wn)
            fn = _lifted_state(P, pshape, C, cshape, steps, terms, ns, N2, E2, eN2, Y2,
                               corr2, Ystar, S[4])
            lin = 0.0
            for e in range(d * m):
                s = R[e]
                for v in range(r):
                    s += J[e, v] * dw[v]
                lin += s * s
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
            _set_vars(P, var, w)
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                break
        need_jacobian = accepted
    _set_vars(P, var, w)
    if np.isfinite(f) and np.sqrt(f) / yscale < 1e-4:
        w2, res, it2, step2 = newton(P, pshape, C, cshape, src_kind, src_idx, steps, terms,
                                     var, Ystar, w, N, True, 30, tol)
        return w2, res, it + it2, step2
    return w, _max_residual(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, N,
                            Ystar, Y, yscale), it, step
