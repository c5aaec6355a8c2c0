"""Certification of real roots of chain-program systems (Krawczyk test).

For the square system ``R(w) = Y(w) - Y* = 0`` (``r`` unknowns, ``r = d m`` equations),
an approximate root ``w~``, ``Yinv ~ J(w~)^-1`` and the box ``X = w~ + [-rho, rho]``,
Krawczyk's operator is

    K(X) = w~ - Yinv R(w~) + (I - Yinv J(X)) (X - w~).

If ``K(X)`` lies in the interior of ``X``, then ``X`` contains exactly one root of ``R``,
and since everything is real, that root is real: the trial is a **certified match**.
Sufficient test (componentwise): ``|Yinv R(w~)| + |I - Yinv J(X)| rho < rho``.

``J(X)`` -- the Jacobian over the whole box -- is enclosed in *ball arithmetic*
(midpoint, radius) on NumPy arrays, and ``R(w~)`` in 128-bit arb arithmetic rounded
outward to a double ball (:func:`residual_ball_arb`). Ball arithmetic bounds every rounding error
explicitly (Rump, "Fast and parallel interval arithmetic", BIT 1999): for a product of
inner dimension ``k``, the midpoint's error is at most ``gamma_{k+1} |A||B|`` with
``gamma_k = k u / (1 - k u)``, ``u = 2^-53``, and radii are inflated by
``(1 + 4 (k + 2) u)`` to cover roundings in their own computation. Draws are exact
doubles, so inputs have radius zero.

Roots of Theorem-3.5 allocations can be huge (|w| ~ 1e4-1e6 happens in ~1% of trials at
T = 4), where double precision cannot enclose ``R`` tightly enough; there the test is
repeated in arbitrary precision with python-flint's ``arb`` after refining the root by
Newton at that precision (:func:`krawczyk_arb`).
"""
from __future__ import annotations

import numpy as np

U = 2.0 ** -53
TINY = 2.0 ** -1022 * 2 ** 10


def _gamma(k):
    return k * U / (1.0 - k * U)


def bmul(Am, Ar, Bm, Br):
    """Enclosure of the product of ball matrices ``<Am, Ar> <Bm, Br>``."""
    k = Am.shape[-1]
    Cm = Am @ Bm
    aAm, aBm = np.abs(Am), np.abs(Bm)
    rad = aAm @ Br + Ar @ (aBm + Br) + _gamma(k + 1) * (aAm @ aBm) + k * TINY
    return Cm, rad * (1.0 + 4 * (k + 2) * U)


def badd(Am, Ar, Bm, Br):
    Cm = Am + Bm
    return Cm, (Ar + Br + U * np.abs(Cm)) * (1.0 + 4 * U)


def _eye(n):
    return np.eye(n), np.zeros((n, n))


def chain_ball(prog, Pm, Pr, consts, want_jacobian, var):
    """Ball enclosures of the output ``Y`` and (optionally) the Jacobian ``J`` of a chain
    program; parameters ``Pm[p] +/- Pr[p]``, exact constants."""
    d, m = prog.d, prog.m
    if prog.src_kind == 0:
        N = [(Pm[prog.src_idx], Pr[prog.src_idx])]
    else:
        c = consts[prog.src_idx]
        N = [(c, np.zeros_like(c))]
    for a in prog.steps:
        N.append(bmul(Pm[a], Pr[a], *N[-1]))
    Ym, Yr = np.zeros((d, m)), np.zeros((d, m))
    r = len(var)
    Jm, Jr = np.zeros((d * m, r)), np.zeros((d * m, r))
    var = np.asarray(var)
    for l, it, rc, lc in prog.terms:
        LC = (consts[lc], np.zeros_like(consts[lc])) if lc >= 0 else None
        if l >= 0:
            L = bmul(*LC, Pm[l], Pr[l]) if LC is not None else (Pm[l], Pr[l])
        else:
            L = LC if LC is not None else _eye(N[it][0].shape[0])
        R = (consts[rc], np.zeros_like(consts[rc])) if rc >= 0 else _eye(m)
        LN = bmul(*L, *N[it])
        LNR = bmul(*LN, *R) if rc >= 0 else LN
        Ym, Yr = badd(Ym, Yr, *LNR)
        if not want_jacobian:
            continue
        # G_it = L, G_{s-1} = G_s A_s
        G = {it: L}
        for s in range(it, 0, -1):
            a = prog.steps[s - 1]
            G[s - 1] = bmul(*G[s], Pm[a], Pr[a])

        def add_columns(sel, Gs, H):
            vi, vj = var[sel, 1], var[sel, 2]
            gm, gr = Gs[0][:, vi], Gs[1][:, vi]          # d x v
            hm, hr = H[0][vj], H[1][vj]                  # v x m
            cm = gm[:, None, :] * hm.T[None, :, :]       # d x m x v
            cr = (np.abs(gm)[:, None, :] * hr.T[None] + gr[:, None, :] * (np.abs(hm.T)[None] + hr.T[None])
                  + U * np.abs(cm)) * (1.0 + 4 * U)
            Jm[:, sel], Jr[:, sel] = badd(Jm[:, sel], Jr[:, sel], cm.reshape(d * m, -1), cr.reshape(d * m, -1))

        for s in range(1, it + 1):
            sel = np.flatnonzero(var[:, 0] == prog.steps[s - 1]) if r else np.array([], int)
            if sel.size:
                H = bmul(*N[s - 1], *R) if rc >= 0 else N[s - 1]
                add_columns(sel, G[s], H)
        if prog.src_kind == 0:
            sel = np.flatnonzero(var[:, 0] == prog.src_idx)
            if sel.size:
                add_columns(sel, G[0], R)
        if l >= 0:
            sel = np.flatnonzero(var[:, 0] == l)
            if sel.size:
                H = bmul(*N[it], *R) if rc >= 0 else N[it]
                add_columns(sel, LC if LC is not None else _eye(d), H)
    return (Ym, Yr), (Jm, Jr)


def _with_vars(prog, params, var, wm, wr):
    Pm = [p.astype(np.float64).copy() for p in params]
    Pr = [np.zeros_like(p) for p in Pm]
    for k, (p, i, j) in enumerate(var):
        Pm[p][i, j] = wm[k]
        Pr[p][i, j] = wr[k]
    return Pm, Pr


def residual_ball_arb(prog, params, consts, ystar, var, w, prec=128):
    """``R(w) = Y(w) - Y*`` as a double ball ``(mid, rad)``, evaluated in ``prec``-bit
    arb arithmetic; ``rad`` covers the arb radius and the rounding of the midpoint."""
    from flint import arb, ctx
    old = ctx.prec
    ctx.prec = prec
    try:
        P = [_arb_mat(p) for p in params]
        for k, (p, i, j) in enumerate(var):
            P[p][i, j] = arb(float(w[k]))
        Y, _ = chain_arb(prog, P, [_arb_mat(c) for c in consts], var, False)
        d, m = prog.d, prog.m
        Rm = np.empty(d * m)
        Rr = np.empty(d * m)
        for a in range(d):
            for c in range(m):
                e = Y[a, c] - arb(float(ystar[a, c]))
                mid = float(e.mid())
                Rm[a * m + c] = mid
                Rr[a * m + c] = float(e.rad()) * (1 + 4 * U) + abs(mid) * U + TINY
        return Rm, Rr
    finally:
        ctx.prec = old


def _jacobian_float(prog, params, consts, var, w):
    """``J(w)`` in floating point by :meth:`fastmp.kernels.chain.ChainProgram.jacobian`
    (ball arithmetic with zero radii where ``prog`` has no compiled program)."""
    if not hasattr(prog, "jacobian"):
        zeros = np.zeros(w.size)
        return chain_ball(prog, *_with_vars(prog, params, var, w, zeros), consts, True, var)[1][0]
    P = prog.pad_params([np.asarray(p, dtype=np.float64) for p in params])
    C = prog.pad_consts([np.asarray(c, dtype=np.float64) for c in consts])
    return prog.jacobian(P, C, np.asarray(var, dtype=np.int64).reshape(-1, 3), w)


def _jacobian_ball(prog, params, consts, var, w, rho):
    """Ball enclosure of ``J`` over the box ``w +/- rho``: the compiled
    :func:`fastmp.kernels.chain_ball.jacobian_ball` where ``prog`` is a compiled chain
    program, :func:`chain_ball` otherwise (the same rules)."""
    if not hasattr(prog, "pad_params"):
        return chain_ball(prog, *_with_vars(prog, params, var, w, rho), consts, True, var)[1]
    from ..kernels.chain_ball import jacobian_ball
    Pm, Pr = _with_vars(prog, params, var, w, rho)
    var = np.asarray(var, dtype=np.int64).reshape(-1, 3)
    return jacobian_ball(prog.pad_params(Pm), prog.pad_params(Pr), prog.pshape,
                         prog.pad_consts([np.asarray(c, dtype=np.float64) for c in consts]),
                         prog.cshape, prog.src_kind, prog.src_idx, prog.steps_arr,
                         prog.terms_arr, prog.ns, var, prog.d, prog.m)


def krawczyk(prog, params, consts, ystar, var, w, inflation=(4.0, 64.0, 1024.0)):
    """Try to certify a root near ``w`` in double-precision ball arithmetic.

    Returns ``(certified, rho)``: ``rho`` is the max-norm radius of the certified box.
    """
    w = np.asarray(w, dtype=np.float64)
    r = w.size
    # The preconditioner Yinv ~ J(w~)^-1 needs no enclosure -- any matrix keeps the test
    # rigorous, a good one makes it pass -- so J(w~) comes from the compiled chain
    # kernel in plain floating point (half the cost of this function when it was a
    # second ball evaluation).
    J0 = _jacobian_float(prog, params, consts, var, w)
    # R(w~) with a tight enclosure: the worst-case rounding bounds of double ball
    # arithmetic on the residual's cancelling products are what usually defeats the
    # test, so the residual alone is evaluated in 128-bit arb arithmetic (C-level
    # matrix products, no Jacobian) and rounded outward to a double ball.
    Rm, Rr = residual_ball_arb(prog, params, consts, ystar, var, w)
    if not (np.all(np.isfinite(J0)) and np.all(np.isfinite(Rm))):
        return False, np.inf
    try:
        Yinv = np.linalg.inv(J0)
    except np.linalg.LinAlgError:
        return False, np.inf
    if not np.all(np.isfinite(Yinv)):
        return False, np.inf
    # |Yinv R(w~)| enclosure
    yr_m, yr_r = bmul(Yinv, np.zeros_like(Yinv), Rm[:, None], Rr[:, None])
    base = (np.abs(yr_m) + yr_r)[:, 0] * (1 + 4 * U)
    scale = np.abs(w) * 1e-15 + 1e-300
    for f in inflation:
        rho = f * base + scale
        Jm, Jr = _jacobian_ball(prog, params, consts, var, w, rho)
        YJm, YJr = bmul(Yinv, np.zeros_like(Yinv), Jm, Jr)
        Mm, Mr = badd(np.eye(r), np.zeros((r, r)), -YJm, YJr)
        Mabs = (np.abs(Mm) + Mr) * (1 + 4 * U)
        lhs = (base + (Mabs @ rho) * (1 + 4 * (r + 2) * U)) * (1 + 4 * U)
        if np.all(np.isfinite(lhs)) and np.all(lhs < rho):
            return True, float(rho.max())
    return False, np.inf


def krawczyk_compiled(prog, P, C, ystar, var, w, inflation=(4.0, 64.0, 1024.0)):
    """:func:`krawczyk` entirely in compiled code
    (:func:`fastmp.kernels.chain_ball.krawczyk_double`) on a compiled chain program's
    padded parameters ``P`` and constants ``C`` (left untouched): the residual is
    enclosed in double-double arithmetic with a rigorous double radius
    (:func:`fastmp.kernels.chain_ball.residual_dd`) instead of 128-bit arb. Rigorous like
    :func:`krawczyk` and ~6x cheaper (~45 us against ~0.29 ms at Figure 2a, n = 8); with
    the double-double residual it certifies the ill-conditioned roots :func:`krawczyk`
    certifies there (38 of 38 at 300 trials, where the earlier double-ball residual
    failed all of them), and callers still go on to :func:`krawczyk` and
    :func:`krawczyk_arb` when it fails (huge roots, points not yet converged).
    Returns ``(certified, rho)``."""
    from ..kernels.chain_ball import krawczyk_double
    w = np.ascontiguousarray(w, dtype=np.float64)
    var = np.asarray(var, dtype=np.int64).reshape(-1, 3)
    if len(var) != prog.d * prog.m or w.shape != (len(var),):
        raise ValueError(f"krawczyk_compiled: needs a square system and one value per "
                         f"unknown; got {len(var)} unknowns, {prog.d * prog.m} equations, "
                         f"w of shape {w.shape}")
    if not np.all(np.isfinite(w)):
        return False, np.inf
    J0 = prog.jacobian(P.copy(), C, var, w)
    if not np.all(np.isfinite(J0)):
        return False, np.inf
    ok, rho = krawczyk_double(P.copy(), prog.pshape, C, prog.cshape, prog.src_kind,
                              prog.src_idx, prog.steps_arr, prog.terms_arr, var,
                              np.ascontiguousarray(ystar, dtype=np.float64), w, J0,
                              np.asarray(inflation, dtype=np.float64))
    return bool(ok), float(rho)


# ---------------------------------------------------------------- arbitrary precision
def _arb_mat(a):
    from flint import arb_mat
    a = np.asarray(a, dtype=np.float64)
    return arb_mat([[float(v) for v in row] for row in a])


def chain_arb(prog, P, consts, var, want_jacobian, generic=False):
    """Output ``Y`` and Jacobian ``J`` of a chain program in python-flint ``arb_mat``
    arithmetic (``P``: list of arb_mat, some entries may be balls). For a homogeneous
    chain (:func:`fastmp.kernels.chain._homogeneous`, the LRNN) the Jacobian of the step
    parameter is assembled from the powers ``L A^j`` as in the double-precision kernel:
    one Python-level accumulation per power instead of one per (term, step), which is
    where certification spent its time at n = 16 (``generic=True`` forces the generic
    assembly, for tests)."""
    from flint import arb_mat

    from ..kernels.chain import _homogeneous
    d, m = prog.d, prog.m
    N = [P[prog.src_idx] if prog.src_kind == 0 else consts[prog.src_idx]]
    for a in prog.steps:
        N.append(P[a] * N[-1])
    Y = arb_mat(d, m)
    r = len(var)
    J = arb_mat(d * m, r) if want_jacobian else None
    def eye_n(k):
        e = arb_mat(k, k)
        for q in range(k):
            e[q, q] = 1
        return e

    eye_d, eye_m = arb_mat(d, d), arb_mat(m, m)
    for k in range(d):
        eye_d[k, k] = 1
    for k in range(m):
        eye_m[k, k] = 1
    def add(p, Gs, H):
        for v, (pv, i, j) in enumerate(var):
            if pv != p:
                continue
            for a_ in range(d):
                g = Gs[a_, i]
                for c in range(m):
                    J[a_ * m + c, v] += g * H[j, c]

    homogeneous = (want_jacobian and not generic and
                   _homogeneous(prog.steps_arr, prog.terms_arr, prog.src_kind, prog.src_idx))
    Z = None
    for l, it, rc, lc in prog.terms:
        LC = consts[lc] if lc >= 0 else None
        if l >= 0:
            L = LC * P[l] if LC is not None else P[l]
        else:
            L = LC if LC is not None else eye_n(N[it].nrows())
        R = consts[rc] if rc >= 0 else eye_m
        Y += L * N[it] * R
        if not want_jacobian:
            continue
        if homogeneous:
            # the same L and step A for every term: G_s = L A^(it - s) = Q_(it - s);
            # collect Z_j = sum_t N_(it-1-j) R_t, add Q_j (x) Z_j once per power below
            if Z is None:
                imax = max(t[1] for t in prog.terms)
                Q = [L]
                for _ in range(imax):
                    Q.append(Q[-1] * P[prog.steps[0]])
                Z = [arb_mat(N[0].nrows(), m) for _ in range(imax)]
            for j in range(it):
                Z[j] = Z[j] + N[it - 1 - j] * R
            if prog.src_kind == 0:
                add(prog.src_idx, Q[it], R)
        else:
            G = {it: L}
            for s in range(it, 0, -1):
                G[s - 1] = G[s] * P[prog.steps[s - 1]]
            for s in range(1, it + 1):
                add(prog.steps[s - 1], G[s], N[s - 1] * R)
            if prog.src_kind == 0:
                add(prog.src_idx, G[0], R)
        if l >= 0:
            add(l, LC if LC is not None else eye_d, N[it] * R)
    if homogeneous and Z is not None:
        for j in range(len(Z)):
            add(prog.steps[0], Q[j], Z[j])
    return Y, J


def krawczyk_arb(prog, params, consts, ystar, var, w, prec=212, newton_steps=4, report=None):
    """Krawczyk test in ``prec``-bit ball arithmetic (python-flint), after refining ``w``
    by Newton at that precision. Returns ``(certified, rho, w_refined)``.

    ``report`` (a dict, optional) receives ``"converged"``: whether the refinement's
    last Newton step (relative to ``|w|``) was below ``2^(-prec/4)`` or below half its
    first -- Newton making progress, so a failed test may pass at a higher precision
    (Theorem 3.5 roots of Figure 2b at n = 12 and 16 step e.g. 5e-4, 3e-7, 5e-7, 2e-12 or
    0.04, 8e-4, 1e-3, 3e-4 at 212 bits and certify at 424); a singular system or steps
    that do not shrink (runaway candidates: ~1, 17, 0.9, 1.1) mean no simple root is
    near, and more precision does not help."""
    from flint import arb, arb_mat, ctx
    old = ctx.prec
    ctx.prec = prec
    try:
        base_P = [_arb_mat(p) for p in params]
        C = [_arb_mat(c) for c in consts]
        Ys = _arb_mat(ystar)
        r = len(var)
        wm = [arb(float(v)) for v in w]

        def with_vars(vals):
            P = [arb_mat(p) for p in base_P]
            for k, (p, i, j) in enumerate(var):
                P[p][i, j] = vals[k]
            return P

        def residual_jac(vals, jac=True):
            Y, J = chain_arb(prog, with_vars(vals), C, var, jac)
            R = arb_mat(r, 1)
            for a_ in range(prog.d):
                for c in range(prog.m):
                    R[a_ * prog.m + c, 0] = Y[a_, c] - Ys[a_, c]
            return R, J

        if report is not None:
            report["converged"] = False
        last = first = np.inf
        for _ in range(newton_steps):
            R, J = residual_jac(wm)
            try:
                step = J.mid().solve(R.mid())
            except (ZeroDivisionError, ValueError):
                return False, np.inf, np.asarray(w)
            wm = [(wm[k] - step[k, 0]).mid() for k in range(r)]
            last = max(abs(float(step[k, 0].mid())) for k in range(r)) / max(
                1.0, max(abs(float(v.mid())) for v in wm))
            if not np.isfinite(first):
                first = last
        if report is not None:
            report["converged"] = bool(last < 2.0 ** (-prec / 4) or last < 0.5 * first)
        R, J0 = residual_jac(wm)
        try:
            Yinv = J0.mid().inv().mid()
        except (ZeroDivisionError, ValueError):
            return False, np.inf, np.array([float(v) for v in wm])
        YR = Yinv * R
        base = [abs(YR[k, 0]).upper() for k in range(r)]
        bmax = max(base)
        for f in (4, 64, 1024):
            rho = [f * b + arb(2) ** (-prec // 2) * (1 + abs(wm[k]).upper()) for k, b in enumerate(base)]
            Xbox = [wm[k] + arb(0, rho[k]) for k in range(r)]
            _, JX = residual_jac(Xbox)
            M = arb_mat(r, r)
            for k in range(r):
                M[k, k] = 1
            M = M - Yinv * JX
            D = arb_mat(r, 1)
            for k in range(r):
                D[k, 0] = arb(0, rho[k])
            K = M * D - YR
            if all(arb(0, rho[k]).contains_interior(K[k, 0]) for k in range(r)):
                return True, float(max(rho)), np.array([float(v) for v in wm])
        del bmax
        return False, np.inf, np.array([float(v) for v in wm])
    finally:
        ctx.prec = old
