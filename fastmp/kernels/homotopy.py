"""Real parameter homotopy (pseudo-arclength continuation) on chain programs.

From a random start ``w0`` the system ``Y(w) = y0`` has the known root ``w0``
(``y0 = Y(w0)``). The kernel follows the real solution curve of

    H(w, t) = Y(w; P(t)) - ((1 - t) y0 + t Y*) = 0,      P(t) = P0 + t (P1 - P0)

in ``(w, t)`` from ``(w0, 0)``: ``P1`` holds the trial's frozen parameters, ``P0``
either the same (a straight line in the *target* space ``y0 -> Y*``) or another draw
(the path also deforms the frozen weights; ``y0`` is then ``Y(w0; P0)``). The curve is
traced by pseudo-arclength continuation (Allgower & Georg, *Introduction to numerical
continuation methods*, ch. 2 and 6): unit tangent ``v`` from the bordered system
``[dH/dw, dH/dt; v_prev^T] v = e_{r+1}`` (nonsingular at simple folds, so the curve is
followed where ``t`` turns back), Euler predictor ``z + h v``, Newton corrector on
``H(z) = 0, v^T (z - z_pred) = 0`` with the same bordered matrix, and a step size that
grows after quick corrector convergence (x2 in <= 2 iterations, x ``grow3`` in 3) and
halves after a failed or poorly contracting correction. A root is reported when ``t`` crosses 1: the crossing point is
interpolated and polished by plain Newton on the target system
(:func:`fastmp.kernels.chain.newton`). A path is abandoned when it returns to ``t = 0``
(it then ends at another root of the start system), runs off to ``|w| > W_MAX``, or
exceeds its step budget.

Residuals and Jacobians are those of :mod:`fastmp.kernels.chain` (original system,
consistent nodes). ``dH/dt`` is ``-(Y* - y0)`` on the straight-line path and, with
deformed parameters, ``dY/dP . (P1 - P0) - (Y* - y0)`` by a central difference (the
corrector only needs an approximate Jacobian; the final Newton polish is exact).

Measured (``bench/homotopy_measure.py``, Figure 2a, n = 8, 30 trials x 16 starts, the
same starts for every method): on the original system the paths fold back to ``t = 0``
after ``t ~ 0.01-0.05`` or run off to infinity at a finite ``t`` in almost every case --
1-3% of paths end at a certified root at k = 5, 6, 8 (0.7-1 ms per path), against 5-51%
for Levenberg-Marquardt and eliminated lifted Newton from the same starts at 0.15-0.45 ms:
15-200x fewer certified roots per ms. Deforming the frozen weights as well (from an
independent draw, or from the teacher's own root) found none; the lifted system's Newton
homotopy 0.4-2% at 1.2-1.8 ms. In the one trial (k = 5, 50 trials) the portfolio missed
with 256 starts, 64 paths of every kind found nothing either. So the kernel is *not* in
the portfolio of :mod:`fastmp.estimators.polynomial`; it is kept for the record and for
other systems.
"""
from __future__ import annotations

import numpy as np

from .._config import jit
from .chain import (_homogeneous, _jacobian_into, _lifted_layout, _residual_into, _scratch,
                    _set_vars, _workspace, forward_nodes, lifted_residual_jacobian, newton)

#: a path whose unknowns exceed this (max-norm) is going to infinity: abandoned
W_MAX = 1e8

#: a path whose ``|w|`` grew DIV_GROWTH-fold over DIV_WINDOW accepted steps while ``t``
#: moved less than DIV_DT runs off to infinity at a finite ``t``: abandoned (traced at
#: Figure 2a, n = 8, such paths otherwise crawl on at |w| ~ 1e6 until the step budget)
DIV_WINDOW = 8
DIV_GROWTH = 4.0
DIV_DT = 1e-3

#: status codes of :func:`homotopy_path`
REACHED = 0      # t crossed 1, polished (the residual tells whether Newton converged)
RETURNED = 1     # t came back to 0
DIVERGED = 2     # |w| > W_MAX or non-finite
BUDGET = 3       # step budget exhausted
STUCK = 4        # step size underflow (corrector fails at every h)


@jit
def _lu_factor(A, piv):
    """In-place LU with partial pivoting of the square ``A``; False if singular."""
    n = A.shape[0]
    for k in range(n):
        p = k
        big = abs(A[k, k])
        for i in range(k + 1, n):
            a = abs(A[i, k])
            if a > big:
                big = a
                p = i
        piv[k] = p
        if not big > 0.0 or not np.isfinite(big):
            return False
        if p != k:
            for j in range(n):
                t = A[k, j]
                A[k, j] = A[p, j]
                A[p, j] = t
        inv = 1.0 / A[k, k]
        for i in range(k + 1, n):
            f = A[i, k] * inv
            A[i, k] = f
            if f != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= f * A[k, j]
    return True


@jit
def _lu_solve(A, piv, x):
    """``x <- A^-1 x`` with the factors of :func:`_lu_factor`; False if not finite."""
    n = A.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            t = x[k]
            x[k] = x[p]
            x[p] = t
    for i in range(n):
        s = x[i]
        for j in range(i):
            s -= A[i, j] * x[j]
        x[i] = s
    for i in range(n - 1, -1, -1):
        s = x[i]
        for j in range(i + 1, n):
            s -= A[i, j] * x[j]
        x[i] = s / A[i, i]
    for i in range(n):
        if not np.isfinite(x[i]):
            return False
    return True


@jit
def _params_at(P, P0, P1, R, t, deform):
    """``P = P0 + t (P1 - P0) + t (1 - t) R`` (only when deforming; the unknowns are set
    afterwards)."""
    if deform:
        b = t * (1.0 - t)
        for a in range(P.shape[0]):
            for i in range(P.shape[1]):
                for j in range(P.shape[2]):
                    P[a, i, j] = P0[a, i, j] + t * (P1[a, i, j] - P0[a, i, j]) + b * R[a, i, j]


@jit
def homotopy_path(P1, P0, R, deform, lifted, pshape, C, cshape, src_kind, src_idx, steps,
                  terms, var, Ystar, w0, N0, max_steps, h0, h_max, corr_iter, corr_tol,
                  w_max, t_min, grow3, trace):
    """Follow the path from ``(w0, 0)`` (see the module docstring).

    ``P1``: padded trial parameters (frozen values of the target; not modified);
    ``P0``, ``R``: the start system's parameters and the bump of the parameter path (used
    when ``deform``). ``lifted``: the path of the global Newton homotopy
    ``F(z) - (1 - t) F(z0)`` of the full lifted system of Lemma 3.3 in
    ``z = (w, N_1..N_K)`` from ``z0 = (w0, N0)`` (nodes inconsistent at the start: the
    defects are deformed to zero along the path; ``deform`` is ignored). The path is
    abandoned when ``t`` falls below ``t_min`` (0: when it returns to the start system).
    Returns ``(w, residual, steps, last_step, status, jac_evals)``: ``w`` and
    ``residual`` (relative max-norm of ``Y(w) - Y*``, as
    :func:`fastmp.kernels.chain.newton`) are the polished root for ``status ==
    REACHED``; ``jac_evals`` counts Jacobian evaluations (the cost).
    """
    d, m = Ystar.shape
    r = var.shape[0]
    M = d * m
    K = steps.shape[0]
    P = P1.copy()
    ns, N, E, J, corr, Y = _workspace(P, pshape, cshape, src_kind, src_idx, steps, d, m, r)
    S = _scratch(P, pshape, steps, terms, ns, d, m)
    homog = _homogeneous(steps, terms, src_kind, src_idx)
    G = S[4]
    off = _lifted_layout(ns, r, d, m)
    nz = off[K + 1] if lifted else r
    n1 = nz + 1
    cols = ns[0, 1]
    Fv = np.empty(nz)
    JL = np.empty((nz, nz)) if lifted else np.empty((1, 1))
    F0 = np.empty(nz)
    dy = np.empty((d, m))
    y0 = np.empty((d, m))
    z = np.zeros(n1)
    for i in range(r):
        z[i] = w0[i]
    if lifted:
        _set_vars(P, var, w0)
        forward_nodes(P, pshape, C, src_kind, src_idx, steps, ns, N)
        for k in range(1, K + 1):
            for i in range(ns[k, 0]):
                for j in range(cols):
                    N[k, i, j] = N0[k, i, j]
                    z[off[k] + i * cols + j] = N0[k, i, j]
        lifted_residual_jacobian(P, pshape, C, src_kind, src_idx, steps, terms, ns, N, var,
                                 Ystar, off, F0, JL)
    else:
        # start system: y0 = Y(w0; P0)
        _params_at(P, P0, P1, R, 0.0, deform)
        _set_vars(P, var, w0)
        _residual_into(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, N,
                       np.zeros((d, m)), y0, G)
        for i in range(d):
            for c in range(m):
                dy[i, c] = Ystar[i, c] - y0[i, c]
    Yp = np.empty((d, m))
    Ym = np.empty((d, m))
    A = np.empty((n1, n1))
    piv = np.empty(n1, dtype=np.int64)
    zc = np.empty(n1)
    zp = np.empty(n1)
    v = np.zeros(n1)
    vn = np.empty(n1)
    x = np.empty(n1)
    wv = np.empty(r)
    v[nz] = 1.0  # first tangent: oriented towards t > 0
    nj = 0
    h = h0
    status = BUDGET
    k = 0
    have_tangent = False
    w_out = w0.copy()
    res_out = np.inf
    step_out = np.inf
    # divergence test: every DIV_WINDOW accepted steps, |w| grown DIV_GROWTH-fold while t
    # moved less than DIV_DT (the path runs off to infinity at a finite t)
    accepted = 0
    t_mark = 0.0
    w_mark = 1.0
    for k in range(max_steps):
        # ------------------------------------------------------------ tangent at z
        if not have_tangent:
            ok = _bordered(lifted, P, P0, P1, R, deform, pshape, C, cshape, src_kind,
                           src_idx, steps, terms, ns, N, E, J, corr, S, homog, var, y0, dy,
                           Y, Yp, Ym, z, v, A, piv, wv, x, Ystar, off, Fv, JL, F0)
            nj += 1
            if not ok:
                status = STUCK
                break
            for i in range(n1):
                vn[i] = 0.0
            vn[nz] = 1.0
            if not _lu_solve(A, piv, vn):
                status = STUCK
                break
            _normalise_into(vn, v)
            have_tangent = True
        # ------------------------------------------------------------ predictor
        zmax = 0.0
        for i in range(r):
            zmax = max(zmax, abs(z[i]))
        hcap = h_max * (1.0 + zmax)
        if h > hcap:
            h = hcap
        for i in range(n1):
            zp[i] = z[i] + h * v[i]
            zc[i] = zp[i]
        # ------------------------------------------------------------ corrector
        converged = False
        prev = np.inf
        its = 0
        for its in range(1, corr_iter + 1):
            ok = _bordered(lifted, P, P0, P1, R, deform, pshape, C, cshape, src_kind,
                           src_idx, steps, terms, ns, N, E, J, corr, S, homog, var, y0, dy,
                           Y, Yp, Ym, zc, v, A, piv, wv, x, Ystar, off, Fv, JL, F0)
            nj += 1
            if not ok:
                break
            # x = -[H; v.(zc - zp)]
            for e in range(nz):
                x[e] = -x[e]
            s = 0.0
            for i in range(n1):
                s += v[i] * (zc[i] - zp[i])
            x[nz] = -s
            if not _lu_solve(A, piv, x):
                break
            dn = 0.0
            zn = 0.0
            for i in range(n1):
                zc[i] += x[i]
                dn = max(dn, abs(x[i]))
                zn = max(zn, abs(zc[i]))
            if dn > 0.5 * prev and its > 1:
                break  # not contracting: the step was too long
            prev = dn
            if dn <= corr_tol * (1.0 + zn):
                converged = True
                break
            if dn > 0.3 * h and its >= 2:
                break  # drifting far from the prediction: the step was too long
        if not converged:
            h *= 0.5
            if h < 1e-10 * (1.0 + zmax):
                status = STUCK
                break
            continue
        # the factors in A are of the bordered matrix at the last corrector iterate
        # (last row v^T): its solve with e_{nz+1} is the tangent there
        for i in range(n1):
            vn[i] = 0.0
        vn[nz] = 1.0
        tangent_ok = _lu_solve(A, piv, vn)
        t_old = z[nz]
        t_new = zc[nz]
        if t_old < 1.0 <= t_new:
            # crossing: interpolate to t = 1 and polish on the target system
            f = (1.0 - t_old) / (t_new - t_old)
            for i in range(r):
                wv[i] = z[i] + f * (zc[i] - z[i])
            Pn = P1.copy()
            Nn = np.zeros_like(N)
            if lifted:
                for kk in range(1, K + 1):
                    for i in range(ns[kk, 0]):
                        for j in range(cols):
                            q = off[kk] + i * cols + j
                            Nn[kk, i, j] = z[q] + f * (zc[q] - z[q])
            w_out, res_out, it2, step_out = newton(Pn, pshape, C, cshape, src_kind, src_idx,
                                                   steps, terms, var, Ystar, wv, Nn, lifted,
                                                   30, 1e-14)
            nj += it2
            status = REACHED
            k += 1
            break
        for i in range(n1):
            z[i] = zc[i]
        if t_new < t_min:
            status = RETURNED
            k += 1
            break
        zmax = 0.0
        for i in range(r):
            zmax = max(zmax, abs(z[i]))
        if not zmax < w_max:
            status = DIVERGED
            k += 1
            break
        accepted += 1
        if accepted % DIV_WINDOW == 0:
            if zmax > DIV_GROWTH * w_mark and abs(z[nz] - t_mark) < DIV_DT:
                status = DIVERGED
                k += 1
                break
            w_mark = max(zmax, 1.0)
            t_mark = z[nz]
        if tangent_ok:
            _normalise_into(vn, v)
        else:
            have_tangent = False
        if trace.shape[0] > k:
            trace[k, 0] = z[nz]
            trace[k, 1] = zmax
            trace[k, 2] = h
            trace[k, 3] = its
        if its <= 2:
            h *= 2.0
        elif its == 3:
            h *= grow3
        else:
            h *= 0.7
    else:
        k = max_steps
    return w_out, res_out, k, step_out, status, nj


@jit
def _normalise_into(vn, v):
    """``v = vn / |vn|`` oriented along the previous ``v`` (it already is when ``vn``
    solves the bordered system with the previous tangent as last row)."""
    s = 0.0
    dot = 0.0
    for i in range(vn.shape[0]):
        s += vn[i] * vn[i]
        dot += vn[i] * v[i]
    s = np.sqrt(s)
    if dot < 0.0:
        s = -s
    for i in range(vn.shape[0]):
        v[i] = vn[i] / s


@jit
def _bordered(lifted, P, P0, P1, R, deform, pshape, C, cshape, src_kind, src_idx, steps,
              terms, ns, N, E, J, corr, S, homog, var, y0, dy, Y, Yp, Ym, z, v, A, piv, wv, x,
              Ystar, off, Fv, JL, F0):
    """At ``z = (w[, N], t)``: ``x[:nz] = H(z)`` and ``A`` = LU factors of the bordered
    matrix ``[dH/dz, dH/dt; v^T]``. False if not finite or singular."""
    d, m = y0.shape
    r = var.shape[0]
    nz = z.shape[0] - 1
    t = z[nz]
    for i in range(r):
        wv[i] = z[i]
    if lifted:
        K = steps.shape[0]
        cols = ns[0, 1]
        _set_vars(P, var, wv)
        if src_kind == 0:
            for i in range(ns[0, 0]):
                for j in range(cols):
                    N[0, i, j] = P[src_idx, i, j]
        for k in range(1, K + 1):
            for i in range(ns[k, 0]):
                for j in range(cols):
                    N[k, i, j] = z[off[k] + i * cols + j]
        lifted_residual_jacobian(P, pshape, C, src_kind, src_idx, steps, terms, ns, N, var,
                                 Ystar, off, Fv, JL)
        for e in range(nz):
            x[e] = Fv[e] - (1.0 - t) * F0[e]
            for j in range(nz):
                A[e, j] = JL[e, j]
            A[e, nz] = F0[e]
    else:
        if deform:
            # dY/dP . P'(t) by a central difference in t
            eps = 1e-6
            _params_at(P, P0, P1, R, t + eps, deform)
            _set_vars(P, var, wv)
            _residual_into(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, N, y0,
                           Yp, S[4])
            _params_at(P, P0, P1, R, t - eps, deform)
            _set_vars(P, var, wv)
            _residual_into(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, N, y0,
                           Ym, S[4])
            _params_at(P, P0, P1, R, t, deform)
        _set_vars(P, var, wv)
        _residual_into(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, N, y0, Y,
                       S[4])
        _jacobian_into(homog, P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, N,
                       E, var, d, m, J, corr, S)
        for i in range(d):
            for c in range(m):
                e = i * m + c
                x[e] = Y[i, c] - t * dy[i, c]
                for j in range(r):
                    A[e, j] = J[e, j]
                if deform:
                    A[e, r] = (Yp[i, c] - Ym[i, c]) / (2.0 * eps) - dy[i, c]
                else:
                    A[e, r] = -dy[i, c]
    for j in range(nz + 1):
        A[nz, j] = v[j]
    for e in range(nz):
        if not np.isfinite(x[e]):
            return False
    return _lu_factor(A, piv)


def run_path(prog, P1, C, ystar, var, w0, P0=None, R=None, lifted=False, N0=None,
             max_steps=200, h0=0.1, h_max=1.0, corr_iter=5, corr_tol=1e-7, w_max=W_MAX,
             t_min=0.0, grow3=1.5, trace=None):
    """:func:`homotopy_path` on a program's padded per-trial arrays (``P1`` untouched).
    ``P0``/``R``: the start system's parameters and the bump of the parameter path
    (None: the straight line in target space, frozen parameters fixed); ``lifted``: the
    lifted system's Newton homotopy from nodes ``N0`` (:meth:`ChainProgram.node_buffer`
    layout)."""
    if len(var) != prog.d * prog.m:
        raise ValueError("homotopy paths need a square system (r = d m)")
    deform = P0 is not None or R is not None
    if P0 is None:
        P0 = P1
    if R is None:
        R = np.zeros_like(P1)
    if N0 is None:
        N0 = prog.node_buffer(P1)
    return homotopy_path(P1, P0, R, deform, lifted, prog.pshape, C, prog.cshape,
                         prog.src_kind, prog.src_idx, prog.steps_arr, prog.terms_arr, var,
                         np.ascontiguousarray(ystar, dtype=np.float64),
                         np.ascontiguousarray(w0, dtype=np.float64), N0, max_steps, h0,
                         h_max, corr_iter, corr_tol, w_max, t_min, grow3,
                         np.zeros((0, 4)) if trace is None else trace)
