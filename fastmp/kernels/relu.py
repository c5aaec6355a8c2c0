"""Compiled pattern search for allocations in ``W1`` of a shallow ReLU network (paper §5,
Appendix D, Lemmas D.1/D.2).

The residual of a trial is piecewise linear in the ``r`` learnable weights ``w``:

    F_i(w) = V relu(z_i(w)) - rhs_i,    z_ij(w) = b_ij + sum_{c: row(c) = j} xa_ic w_c,

(``V = W2[:, used]``; ``xa[i, c]`` the input entry that multiplies weight ``c`` on sample
``i``). On the region where the activation pattern is ``P`` it equals the linear map
``E(P) w - f(P)`` of equation (D.1). The kernels here run the **semismooth Newton /
pattern fixed-point iteration** on it: at ``w`` take ``P = [z(w) > 0]``, move to the
solution of ``E(P) w' = f(P)`` nearest to ``w`` (minimum-norm least-squares step), and
repeat. If the pattern at the new point is again ``P`` and the step solved ``E(P) w' =
f(P)``, the point solves (D.1)-(D.2): a candidate match (verified exactly by the caller,
:mod:`fastmp.estimators.relu_search`). Modes: ``UNDAMPED`` abandons a start after
``max_iter`` steps or when a pattern repeats (a cycle of the fixed-point map);
``DAMPED`` adds a backtracking line search on ``|F|^2`` to every step (globalised
semismooth Newton); ``HYBRID`` takes full steps until the first cycle, then continues
damped from there (abandoned after ``STALL_STEPS`` steps without decrease).

Each step's linear algebra (:func:`_reduced_step`): for ``r = dm`` the square system is
not solved as ``dm x r`` but reduced -- per sample, ``V_U z = rhs`` leaves ``|U| - d``
free pre-activations; per unit, ``|S| - r_j`` of its pre-activations are fixed by the
others -- to a square system of size ``sum_i |U_i| - dm`` (0 to 12 on the Figure 3b
setting instead of 24), with the per-subset factors kept for the trial. Singular patterns
(Lemma D.3/D.4 violated, or a singular reduced system) take the Levenberg-Marquardt step
with normal equations assembled from the same structure (:func:`_lm_step_pattern`);
anything else (degenerate subsets, a residual above tolerance) the full-system step of
:func:`_newton_step`. Same iteration, less arithmetic; rounding differs from the full
LU, so a trajectory through a pattern whose sign is decided at rounding level can
differ: on the 320 trials of ``bench/relu_compare.py`` (64 and 256 starts) no outcome and
no candidate changed, and 5 of the 640 searches took 2-3 Newton steps more or fewer of
about 1500 (``reduced=False`` runs the full solve; ``tests/test_relu_search.py``
compares both).

Starts cycle through two kinds: a random weight vector with the student's initial scale
(Appendix E.3, ``N(0, 1/q)``), and a random activation pattern (each used unit active
with probability 1/2, at least ``d`` active per sample: Lemma D.3) whose system is solved
first. Random numbers come from the counter-based stream of ``(seed, trial)``.
"""
from __future__ import annotations

import numpy as np

from .._config import jit
from .dense import solve_into
from .rng import fill_normal, next_uniform, trial_state

#: random stream of the pattern search inside a trial (stream 0 draws the trial itself)
SEARCH_STREAM = 7
#: damped steps without a decrease of ``|F|^2`` after which a start is abandoned
STALL_STEPS = 8
#: iteration modes of :func:`pattern_search`
UNDAMPED, DAMPED, HYBRID = 0, 1, 2


@jit
def pattern_z(xa, b, var_row, w, Z):
    """``Z[i, j] = z_ij(w)`` (``m x k``)."""
    m, k = b.shape
    r = w.shape[0]
    for i in range(m):
        for j in range(k):
            Z[i, j] = b[i, j]
        for c in range(r):
            Z[i, var_row[c]] += xa[i, c] * w[c]


@jit
def pattern_equations(xa, b, var_row, V, rhs, P, E, f):
    """``E(P) w = f(P)`` of equation (D.1): ``dm x r``, sample-major rows."""
    m, k = b.shape
    d = V.shape[0]
    r = var_row.shape[0]
    for i in range(m):
        for a in range(d):
            row = i * d + a
            acc = rhs[i, a]
            for j in range(k):
                if P[i, j]:
                    acc -= V[a, j] * b[i, j]
            f[row] = acc
            for c in range(r):
                j = var_row[c]
                E[row, c] = V[a, j] * xa[i, c] if P[i, j] else 0.0


@jit
def residual_norm2(xa, b, var_row, V, rhs, w, Z):
    """``|F(w)|^2`` of the true (relu) residual; fills ``Z`` with ``z(w)``."""
    pattern_z(xa, b, var_row, w, Z)
    m, k = b.shape
    d = V.shape[0]
    s = 0.0
    for i in range(m):
        for a in range(d):
            acc = -rhs[i, a]
            for j in range(k):
                if Z[i, j] > 0.0:
                    acc += V[a, j] * Z[i, j]
            s += acc * acc
    return s


@jit
def repair_pattern(P, Z, d, r_row):
    """Make ``P`` obey Lemma D.3 (every sample ``>= d`` active units) and Lemma D.4 (unit
    ``j`` active on ``>= r_row[j]`` samples) by switching on the inactive entries with the
    largest ``z`` (nearest to their sign boundary). Patterns violating the lemmas give
    singular systems (no solution on generic draws), so the Newton step is taken on the
    repaired pattern; a candidate is still only accepted when the pattern at the new
    point equals the pattern solved."""
    m, k = P.shape
    for i in range(m):
        n_on = 0
        for j in range(k):
            n_on += P[i, j]
        while n_on < min(d, k):
            best, bj = -np.inf, -1
            for j in range(k):
                if not P[i, j] and Z[i, j] > best:
                    best, bj = Z[i, j], j
            P[i, bj] = True
            n_on += 1
    for j in range(k):
        n_on = 0
        for i in range(m):
            n_on += P[i, j]
        while n_on < min(r_row[j], m):
            best, bi = -np.inf, -1
            for i in range(m):
                if not P[i, j] and Z[i, j] > best:
                    best, bi = Z[i, j], i
            P[bi, j] = True
            n_on += 1


@jit
def _pattern_hash(P):
    h = np.uint64(1469598103934665603)
    m, k = P.shape
    for i in range(m):
        for j in range(k):
            h = (h ^ np.uint64(1 + P[i, j])) * np.uint64(1099511628211)
    return h


@jit
def _inf_residual(E, delta, g):
    """``max_row |(E delta - g)_row|`` without allocating (NaN counts as infinite)."""
    M, r = E.shape
    res = 0.0
    for row in range(M):
        acc = -g[row]
        for c in range(r):
            acc += E[row, c] * delta[c]
        v = abs(acc)
        if not v <= res:            # also catches NaN
            res = v
    return res


@jit
def lu_solve(E, g, LU, x):
    """Solve the square system ``E x = g`` by Gaussian elimination with partial pivoting
    in the preallocated ``LU`` (no allocation; small systems). Returns False if a pivot
    is zero or below ``1e-14`` of the largest entry of ``E`` (caller falls back)."""
    return solve_into(E, g, 0.0, 1e-14, LU, x)


@jit
def _symmetrize_and_damp(G, r):
    """Complete the upper triangle of ``G[:r, :r]`` to the symmetric matrix and add
    ``1e-12 max_a G_aa`` (+ a tiny floor) to the diagonal: the Levenberg-Marquardt
    normal equations of a (near-)singular pattern step."""
    lam = 0.0
    for a in range(r):
        lam = max(lam, G[a, a])
        for c in range(a):
            G[a, c] = G[c, a]
    lam = 1e-12 * lam + 1e-300
    for a in range(r):
        G[a, a] += lam


@jit
def _newton_step(E, f, w, delta, res_tol, LU, g, G, Eg):
    """Step ``delta`` towards the solution of ``E (w + delta) = f`` nearest to ``w``;
    returns the inf-norm residual of ``E (w + delta) - f`` and whether the step was the
    LU solve of a square nonsingular system (then ``w + delta`` depends on ``E, f``
    only, not on ``w``).

    Square nonsingular ``E``: LU solve. Otherwise (singular or non-square) a
    Levenberg-Marquardt step ``(E^T E + lam I) delta = E^T g`` with a tiny ``lam``;
    only if that leaves a residual that could be rounding of a consistent system
    (between ``res_tol`` and ``1e6 res_tol``) the SVD least-squares (minimum-norm) step
    is taken instead. ``g`` (``M``), ``G`` and ``LU`` (at least ``max(M, r)`` square) and
    ``Eg`` (``r``) are scratch: the step allocates nothing except in the rare SVD case
    (the search takes hundreds of steps per trial, one in eight of them singular on the
    Figure 3b setting, so allocations and LAPACK calls there cost as much as the
    arithmetic)."""
    M, r = E.shape
    for row in range(M):
        acc = f[row]
        for c in range(r):
            acc -= E[row, c] * w[c]
        g[row] = acc
    if M == r and solve_into(E, g, 0.0, 1e-14, LU, delta):
        res = _inf_residual(E, delta, g)
        if res <= res_tol:
            return res, True
    # normal equations, accumulated row by row (contiguous rows of E)
    for a in range(r):
        Eg[a] = 0.0
        for c in range(r):
            G[a, c] = 0.0
    for row in range(M):
        gr = g[row]
        for a in range(r):
            ea = E[row, a]
            if ea != 0.0:
                Eg[a] += ea * gr
                for c in range(a, r):
                    G[a, c] += ea * E[row, c]
    _symmetrize_and_damp(G, r)
    # G is symmetric positive definite (lam > 0): elimination needs no pivot threshold
    Gv = G[:r, :r]
    ok = solve_into(Gv, Eg, 0.0, 0.0, LU, delta)
    res = _inf_residual(E, delta, g) if ok else np.inf
    if not ok or (res > res_tol and res < 1e6 * res_tol):
        sol = np.linalg.lstsq(E, g, rcond=-1.0)[0]
        delta[:] = sol
        res = _inf_residual(E, delta, g)
    return res, False


# ------------------------------------------------------------------ reduced pattern step
#: the reduced step (:func:`_reduced_step`) keeps per-trial tables indexed by subsets of
#: the used units (``2^k``) and of the samples (``2^m``); beyond these sizes the search
#: solves the full ``dm x r`` system of every pattern
REDUCED_MAX_K = 8
REDUCED_MAX_M = 8
#: a row/column selection of the reduced step needs pivots above this fraction of the
#: largest entry; below it the subset counts as degenerate and the full system is solved
SELECT_PIVOT_TOL = 1e-10
#: outcomes of :func:`_reduced_step`
REDUCED_OK, REDUCED_SINGULAR, REDUCED_FAIL = 0, 1, 2


@jit
def _gauss_jordan_inverse(B, q, inv, Wk):
    """``inv[:q, :q] = B[:q, :q]^-1`` (Gauss-Jordan with partial pivoting; ``Wk`` scratch).
    Returns False on a zero pivot."""
    for i in range(q):
        for j in range(q):
            Wk[i, j] = B[i, j]
            inv[i, j] = 1.0 if i == j else 0.0
    for c in range(q):
        p = c
        big = abs(Wk[c, c])
        for i in range(c + 1, q):
            if abs(Wk[i, c]) > big:
                big = abs(Wk[i, c])
                p = i
        if not big > 0.0:
            return False
        if p != c:
            for j in range(q):
                t = Wk[c, j]
                Wk[c, j] = Wk[p, j]
                Wk[p, j] = t
                t = inv[c, j]
                inv[c, j] = inv[p, j]
                inv[p, j] = t
        piv = 1.0 / Wk[c, c]
        for j in range(q):
            Wk[c, j] *= piv
            inv[c, j] *= piv
        for i in range(q):
            if i != c:
                f = Wk[i, c]
                if f != 0.0:
                    for j in range(q):
                        Wk[i, j] -= f * Wk[c, j]
                        inv[i, j] -= f * inv[c, j]
    return True


@jit
def _select_rows(A, p, q, perm, Wk):
    """Order the rows of ``A[:p, :q]`` (``p >= q``) so that the first ``q`` of
    ``perm[:p]`` are independent: partial pivoting, column by column, on a copy in
    ``Wk``. Returns False if a pivot is not above ``SELECT_PIVOT_TOL`` times the largest
    entry (the rows are numerically dependent)."""
    scale = 0.0
    for i in range(p):
        perm[i] = i
        for j in range(q):
            Wk[i, j] = A[i, j]
            scale = max(scale, abs(A[i, j]))
    if not scale > 0.0:
        return False
    for c in range(q):
        piv = c
        big = abs(Wk[c, c])
        for i in range(c + 1, p):
            if abs(Wk[i, c]) > big:
                big = abs(Wk[i, c])
                piv = i
        if not big > SELECT_PIVOT_TOL * scale:
            return False
        if piv != c:
            for j in range(q):
                t = Wk[c, j]
                Wk[c, j] = Wk[piv, j]
                Wk[piv, j] = t
            t2 = perm[c]
            perm[c] = perm[piv]
            perm[piv] = t2
        for i in range(c + 1, p):
            f = Wk[i, c] / Wk[c, c]
            for j in range(c, q):
                Wk[i, j] -= f * Wk[c, j]
    return True


@jit
def _unit_subset_entry(V, U, k, ustate, Z0M, NU, A, perm, Wk, inv, Wk2):
    """Fill the table entry of the set ``U`` (bit mask) of active units of a sample:
    ``V_U z = rhs`` has the solutions ``z = Z0M[U] rhs + NU[U] t`` (``t`` free, one per
    active unit beyond ``d``; rows of inactive units are zero). ``d`` of the active units
    are chosen independent (pivoting), the others carry ``t``."""
    d = V.shape[0]
    u = 0
    for j in range(k):
        if (U >> j) & 1:
            perm[u] = j          # reuse perm's tail as the unit list below
            u += 1
    units = np.empty(u, dtype=np.int64)
    for a in range(u):
        units[a] = perm[a]
    for a in range(u):           # A = V_U^T (u x d)
        for c in range(d):
            A[a, c] = V[c, units[a]]
    if u < d or not _select_rows(A, u, d, perm, Wk):
        ustate[U] = -1
        return
    for a in range(d):           # Va^T rows
        for c in range(d):
            Wk2[a, c] = A[perm[a], c]
    if not _gauss_jordan_inverse(Wk2, d, inv, Wk):
        ustate[U] = -1
        return
    # inv = (Va^T)^-1 = (Va^-1)^T
    for j in range(k):
        for c in range(d):
            Z0M[U, j, c] = 0.0
        for l in range(NU.shape[2]):
            NU[U, j, l] = 0.0
    for al in range(d):
        ja = units[perm[al]]
        for c in range(d):
            Z0M[U, ja, c] = inv[c, al]
        for l in range(u - d):
            jb = units[perm[d + l]]
            acc = 0.0
            for c in range(d):
                acc += inv[c, al] * V[c, jb]
            NU[U, ja, l] = -acc
    for l in range(u - d):
        NU[U, units[perm[d + l]], l] = 1.0
    ustate[U] = 1


@jit
def _sample_subset_entry(xa, cols, rj, j, S, m, sstate, SA, SB, XI, CM, A, perm, Wk, inv, Wk2):
    """Fill the table entry of unit ``j`` active on the samples ``S`` (bit mask): its
    ``s x r_j`` block ``X`` (rows ``xa[i, cols]``) split into ``r_j`` independent rows
    ``SA`` (``XI`` = their inverse, so ``w_j = XI (z - b)[SA]``) and the others ``SB``,
    which must satisfy ``(z - b)[SB] = CM (z - b)[SA]``."""
    s = 0
    for i in range(m):
        if (S >> i) & 1:
            for c in range(rj):
                A[s, c] = xa[i, cols[c]]
            s += 1
    samples = np.empty(s, dtype=np.int64)
    s = 0
    for i in range(m):
        if (S >> i) & 1:
            samples[s] = i
            s += 1
    if s < rj or not _select_rows(A, s, rj, perm, Wk):
        sstate[j, S] = -1
        return
    for a in range(rj):
        for c in range(rj):
            Wk2[a, c] = A[perm[a], c]
    if not _gauss_jordan_inverse(Wk2, rj, inv, Wk):
        sstate[j, S] = -1
        return
    for a in range(rj):
        SA[j, S, a] = samples[perm[a]]
        for c in range(rj):
            XI[j, S, a, c] = inv[a, c]
    for bb in range(s - rj):
        SB[j, S, bb] = samples[perm[rj + bb]]
        for c in range(rj):
            acc = 0.0
            for a in range(rj):
                acc += A[perm[rj + bb], a] * inv[a, c]
            CM[j, S, bb, c] = acc
    sstate[j, S] = 1


@jit
def _pattern_residual_max(P, V, rhs, Z):
    """Max-norm of the residual of pattern ``P``'s equations (D.1) at the
    pre-activations ``Z`` (a NaN anywhere gives NaN)."""
    m, k = P.shape
    d = V.shape[0]
    res = 0.0
    for i in range(m):
        for a in range(d):
            acc = -rhs[i, a]
            for j in range(k):
                if P[i, j]:
                    acc += V[a, j] * Z[i, j]
            v = abs(acc)
            if not v <= res:
                res = v
    return res


@jit
def _reduced_step(xa, b, var_row, V, rhs, P, w, delta, res_tol, cols, r_row, tabs, scr):
    """The step of a square pattern system by elimination instead of the ``dm x r`` LU.

    Sample ``i`` with active units ``U_i`` (``|U_i| >= d``): ``V_U z_i = rhs_i`` leaves
    ``|U_i| - d`` free pre-activations ``t_i`` (:func:`_unit_subset_entry`). Unit ``j``
    active on the samples ``S_j`` (``|S_j| >= r_j``): its pre-activations are affine in
    its own ``r_j`` weights, so ``|S_j| - r_j`` of them are fixed by the others
    (:func:`_sample_subset_entry`). With ``r = dm`` the conditions on ``t`` form a square
    system of size ``sum_i |U_i| - dm`` (0 to about 12 instead of 24 on the Figure 3b
    setting); its solution gives ``z`` and then every unit's weights. Both kinds of
    subset tables are filled on first use in the trial.

    Returns ``(res, status)``: ``REDUCED_OK`` -- the step solved the square system
    uniquely (as the LU step's ``unique``), ``res`` the inf-norm residual of the full
    equations (D.1) at ``w + delta``, at most ``res_tol``; ``REDUCED_SINGULAR`` -- the
    full system is singular: ``P`` violates Lemma D.3 or D.4 (then the rank of ``E(P)``
    is structurally below ``r``), or the reduced system is singular; ``REDUCED_FAIL`` --
    a subset is degenerate or the residual is above ``res_tol``: the caller solves the
    full system."""
    ustate, Z0M, NU, sstate, SA, SB, XI, CM = tabs
    Ared, bred, LUred, tvec, z0, off, A, perm, Wk, inv, Wk2, Zn, wn = scr
    m, k = b.shape
    d = V.shape[0]
    r = w.shape[0]
    # off[i] = (offset of t_i, mask U_i, number of free t_i); off[m + j] = (mask S_j,
    # number of conditions |S_j| - r_j, -)
    for j in range(k):
        off[m + j, 0] = 0
        off[m + j, 1] = 0
    T = 0
    for i in range(m):
        U = 0
        u = 0
        for j in range(k):
            if P[i, j]:
                U |= 1 << j
                u += 1
                off[m + j, 0] |= 1 << i
                off[m + j, 1] += 1
        if u < d:                  # Lemma D.3 fails: the rows of sample i are dependent
            return np.inf, REDUCED_SINGULAR
        off[i, 0] = T
        off[i, 1] = U
        off[i, 2] = u - d
        T += u - d
    for j in range(k):
        S = off[m + j, 0]
        rj = r_row[j]
        if off[m + j, 1] < rj:     # Lemma D.4 fails: unit j's columns have rank <= |S_j|
            return np.inf, REDUCED_SINGULAR
        off[m + j, 1] -= rj
    for i in range(m):
        U = off[i, 1]
        if ustate[U] == 0:
            _unit_subset_entry(V, U, k, ustate, Z0M, NU, A, perm, Wk, inv, Wk2)
        if ustate[U] < 0:
            return np.inf, REDUCED_FAIL
        for j in range(k):
            if P[i, j]:
                acc = 0.0
                for c in range(d):
                    acc += Z0M[U, j, c] * rhs[i, c]
                z0[i, j] = acc - b[i, j]          # z0 - b: the unit's own part u_ij
    neq = 0
    for j in range(k):
        S = off[m + j, 0]
        if sstate[j, S] == 0:
            _sample_subset_entry(xa, cols[j], r_row[j], j, S, m, sstate, SA, SB, XI, CM,
                                 A, perm, Wk, inv, Wk2)
        if sstate[j, S] < 0:
            return np.inf, REDUCED_FAIL
        neq += off[m + j, 1]
    if neq != T:
        return np.inf, REDUCED_FAIL
    if T > 0:
        for R in range(T):
            for c in range(T):
                Ared[R, c] = 0.0
        R = 0
        for j in range(k):
            S = off[m + j, 0]
            rj = r_row[j]
            for bb in range(off[m + j, 1]):
                ib = SB[j, S, bb]
                o, U, nf = off[ib, 0], off[ib, 1], off[ib, 2]
                acc = -z0[ib, j]
                for l in range(nf):
                    Ared[R, o + l] += NU[U, j, l]
                for a in range(rj):
                    ia = SA[j, S, a]
                    cf = CM[j, S, bb, a]
                    o2, U2, nf2 = off[ia, 0], off[ia, 1], off[ia, 2]
                    for l in range(nf2):
                        Ared[R, o2 + l] -= cf * NU[U2, j, l]
                    acc += cf * z0[ia, j]
                bred[R] = acc
                R += 1
        if not solve_into(Ared[:T, :T], bred, 0.0, 1e-14, LUred, tvec):
            return np.inf, REDUCED_SINGULAR
        # pre-activations u_ij = z_ij - b_ij of the active entries
        for i in range(m):
            o, U, nf = off[i, 0], off[i, 1], off[i, 2]
            if nf > 0:
                for j in range(k):
                    if P[i, j]:
                        acc = z0[i, j]
                        for l in range(nf):
                            acc += NU[U, j, l] * tvec[o + l]
                        z0[i, j] = acc
    # each unit's weights from its r_j independent samples
    for j in range(k):
        S = off[m + j, 0]
        rj = r_row[j]
        for a in range(rj):
            acc = 0.0
            for c in range(rj):
                acc += XI[j, S, a, c] * z0[SA[j, S, c], j]
            wn[cols[j, a]] = acc
    # residual of the full equations (D.1) of P at the new point
    pattern_z(xa, b, var_row, wn, Zn)
    res = _pattern_residual_max(P, V, rhs, Zn)
    for c in range(r):
        delta[c] = wn[c] - w[c]
    return res, REDUCED_OK if res <= res_tol else REDUCED_FAIL


@jit
def _lm_step_pattern(xa, b, var_row, V, rhs, P, w, delta, res_tol, VtV, Z, gs, h, xm, G,
                     Eg, LU, Zn, wn):
    """The Levenberg-Marquardt step of :func:`_newton_step` for a singular pattern
    system, with the normal equations assembled from the structure of ``E(P)`` instead of
    its rows: ``(E^T E)[c, c'] = (V^T V)[j, j'] sum_{i: P_ij, P_ij'} xa_ic xa_ic'`` (``j, j'``
    the units of weights ``c, c'``) and ``E^T g`` from the per-sample residuals ``g_i =
    rhs_i - V_P z_i(w)`` (same ``lam`` and elimination). Returns ``(res, ok)``; ``ok`` is
    False when the elimination fails or the residual could be rounding of a consistent
    system (where :func:`_newton_step` takes the SVD step): the caller then runs that."""
    m, k = b.shape
    d = V.shape[0]
    r = w.shape[0]
    pattern_z(xa, b, var_row, w, Z)
    for i in range(m):
        for a in range(d):
            acc = rhs[i, a]
            for j in range(k):
                if P[i, j]:
                    acc -= V[a, j] * Z[i, j]
            gs[i, a] = acc
        for j in range(k):
            acc = 0.0
            if P[i, j]:
                for a in range(d):
                    acc += V[a, j] * gs[i, a]
            h[i, j] = acc
    # xm = xa with the entries of inactive units zeroed (E^T E = VtV o (xm^T xm)); the
    # products with exact zeros add nothing, so this equals the sum over active samples
    for i in range(m):
        for c in range(r):
            xm[c, i] = xa[i, c] if P[i, var_row[c]] else 0.0
    for c in range(r):
        j = var_row[c]
        acc = 0.0
        for i in range(m):
            acc += xm[c, i] * h[i, j]
        Eg[c] = acc
        for c2 in range(c, r):
            acc = 0.0
            for i in range(m):
                acc += xm[c, i] * xm[c2, i]
            G[c, c2] = VtV[j, var_row[c2]] * acc
    _symmetrize_and_damp(G, r)
    if not solve_into(G[:r, :r], Eg, 0.0, 0.0, LU, delta):
        return np.inf, False
    for c in range(r):
        wn[c] = w[c] + delta[c]
    pattern_z(xa, b, var_row, wn, Zn)
    res = _pattern_residual_max(P, V, rhs, Zn)
    if res > res_tol and res < 1e6 * res_tol:
        return res, False
    return res, True


@jit
def _reduced_tables(xa, b, V, var_row, r_row, fast):
    """Per-trial subset tables (filled on first use) and scratch of :func:`_reduced_step`
    (one-element placeholders when ``fast`` is False)."""
    m, k = b.shape
    d = V.shape[0]
    rmax = 1
    for j in range(k):
        rmax = max(rmax, r_row[j])
    cols = np.zeros((k, rmax), dtype=np.int64)
    fill = np.zeros(k, dtype=np.int64)
    for c in range(var_row.shape[0]):
        j = var_row[c]
        if fill[j] < rmax:
            cols[j, fill[j]] = c
        fill[j] += 1
    nu = (1 << k) if fast else 1
    ns = (1 << m) if fast else 1
    ku = k if fast else 1
    kd = max(k - d, 1)
    tabs = (np.zeros(nu, dtype=np.int8), np.empty((nu, ku, d)), np.empty((nu, ku, kd)),
            np.zeros((ku, ns), dtype=np.int8), np.empty((ku, ns, rmax), dtype=np.int64),
            np.empty((ku, ns, m), dtype=np.int64), np.empty((ku, ns, rmax, rmax)),
            np.empty((ku, ns, m, rmax)))
    nt = max(m * kd, 1)
    p = max(k, m)
    q = max(d, rmax)
    scr = (np.empty((nt, nt)), np.empty(nt), np.empty((nt, nt)), np.empty(nt),
           np.empty((m, k)), np.empty((m + k, 3), dtype=np.int64), np.empty((p, q)),
           np.empty(p, dtype=np.int64), np.empty((p, q)), np.empty((q, q)), np.empty((q, q)),
           np.empty((m, k)), np.empty(var_row.shape[0]))
    return tabs, scr, cols


@jit
def _seen_has(table, h):
    if h == np.uint64(0):
        h = np.uint64(1)
    mask = np.uint64(table.shape[0] - 2)
    i = h & mask
    while table[i] != np.uint64(0):
        if table[i] == h:
            return True
        i = (i + np.uint64(1)) & mask
    return False


@jit
def _seen_insert(table, h):
    """Insert ``h`` in the open-addressing set ``table`` (0 = empty). Returns True if it
    was already there; a full table (load above 1/2) stops inserting."""
    if h == np.uint64(0):
        h = np.uint64(1)
    size = table.shape[0] - 1                 # last slot counts the entries
    mask = np.uint64(size - 1)
    i = h & mask
    while table[i] != np.uint64(0):
        if table[i] == h:
            return True
        i = (i + np.uint64(1)) & mask
    if table[size] < np.uint64(size // 2):
        table[i] = h
        table[size] += np.uint64(1)
    return False


@jit
def pattern_search(xa, b, var_row, V, rhs, seed, trial, starts, max_iter, init_scale,
                   res_tol, mode, r_row, repair, out_w, out_P, reduced=True):
    """Pattern fixed-point (semismooth Newton) search of one trial.

    ``res_tol`` is the absolute inf-norm residual below which a pattern's linear system
    counts as solved. Returns ``(start, iterations)``: the start (0-based) that produced
    a candidate written to ``out_w``/``out_P``, or ``-1`` if none did within ``starts``
    starts; ``iterations`` is the total number of Newton steps taken.

    ``reduced``: take each step by :func:`_reduced_step` where it applies (``r = dm``,
    ``k <= REDUCED_MAX_K``, ``m <= REDUCED_MAX_M``, and ``2k <= 3d``: the reduced system,
    of size at most ``m (k - d)``, is then at most half the full one; measured on
    ``bench/relu_compare.py``: 1.7-1.8x faster per trial on the d = 4, k = 5, 6 rows,
    neutral at k = 4, but 1.3-2x *slower* on the d = 1, 2 rows with k = 4, 5, whose full
    systems are 4 x 4 and 8 x 8 and whose trials end after few steps, so the per-trial
    subset tables do not pay) and solve the full ``dm x r`` system only where it does not
    (degenerate subsets, singular systems). Same iteration, fewer operations per step;
    rounding differs from the full solve.
    """
    m, k = b.shape
    d = V.shape[0]
    r = var_row.shape[0]
    state = trial_state(np.uint64(seed), np.uint64(trial), SEARCH_STREAM)
    E = np.empty((d * m, r))
    n_lu = max(d * m, r)
    LU = np.empty((n_lu, n_lu))
    G = np.empty((n_lu, n_lu))
    g = np.empty(d * m)
    Eg = np.empty(r)
    f = np.empty(d * m)
    Z = np.empty((m, k))
    P = np.zeros((m, k), dtype=np.bool_)
    Pn = np.zeros((m, k), dtype=np.bool_)
    w = np.empty(r)
    delta = np.empty(r)
    wt = np.empty(r)
    seen = np.empty(max_iter + 1, dtype=np.uint64)
    # patterns already solved (square nonsingular systems) by any start of this trial:
    # their solution, hence the rest of the trajectory, is known. Sized for every step
    # of the budget at load <= 1/2 (so it never fills below the 2^16 cap); zeroing a
    # larger table cost more than the whole search on the easy rows
    size = 1024
    while size < (1 << 16) and size < 2 * starts * max_iter:
        size *= 2
    solved = np.zeros(size + 1, dtype=np.uint64)
    fast = (reduced and r == d * m and d <= k and 2 * k <= 3 * d and k <= REDUCED_MAX_K
            and m <= REDUCED_MAX_M)
    tabs, scr, cols = _reduced_tables(xa, b, V, var_row, r_row, fast)
    VtV = np.empty((k, k))
    for j in range(k):
        for j2 in range(k):
            acc = 0.0
            for a in range(d):
                acc += V[a, j] * V[a, j2]
            VtV[j, j2] = acc
    gs = np.empty((m, d))
    hs = np.empty((m, k))
    xm = np.empty((r, m))
    total = 0
    for s in range(starts):
        if s % 2 == 0:
            fill_normal(state, w)
            for c in range(r):
                w[c] *= init_scale
            pattern_z(xa, b, var_row, w, Z)
            for i in range(m):
                for j in range(k):
                    P[i, j] = Z[i, j] > 0.0
        else:
            for c in range(r):
                w[c] = 0.0
            for i in range(m):
                n_on = 0
                for j in range(k):
                    P[i, j] = next_uniform(state) < 0.5
                    n_on += P[i, j]
                while n_on < min(d, k):      # Lemma D.3: at least d active units
                    j = int(next_uniform(state) * k) % k
                    if not P[i, j]:
                        P[i, j] = True
                        n_on += 1
        n_seen = 0
        damp = mode == 1
        best = np.inf
        stall = 0
        for it in range(max_iter):
            total += 1
            if repair and (it > 0 or s % 2 == 0):
                repair_pattern(P, Z, d, r_row)   # Z = z(w): the start's draw or last step
            hP = _pattern_hash(P)
            if not damp and _seen_has(solved, hP):
                break                       # this trajectory was followed before
            unique = False
            full = True
            if fast:
                res, rstat = _reduced_step(xa, b, var_row, V, rhs, P, w, delta, res_tol,
                                           cols, r_row, tabs, scr)
                if rstat == REDUCED_OK:
                    unique = True
                    full = False
                elif rstat == REDUCED_SINGULAR:
                    # the full system is singular too: its LU would fail, so go to the
                    # Levenberg-Marquardt step directly
                    res, lm_ok = _lm_step_pattern(xa, b, var_row, V, rhs, P, w, delta,
                                                  res_tol, VtV, Z, gs, hs, xm, G, Eg, LU,
                                                  scr[11], scr[12])
                    full = not lm_ok
            if full:
                pattern_equations(xa, b, var_row, V, rhs, P, E, f)
                res, unique = _newton_step(E, f, w, delta, res_tol, LU, g, G, Eg)
            if damp:
                phi0 = residual_norm2(xa, b, var_row, V, rhs, w, Z)
                if phi0 < best * (1.0 - 1e-6):
                    best = phi0
                    stall = 0
                else:
                    stall += 1
                    if stall > STALL_STEPS:
                        break
                t = 1.0
                for _ in range(30):
                    for c in range(r):
                        wt[c] = w[c] + t * delta[c]
                    if residual_norm2(xa, b, var_row, V, rhs, wt, Z) < phi0:
                        break
                    t *= 0.5
                for c in range(r):
                    w[c] = w[c] + t * delta[c]
                if t < 1.0:
                    res = np.inf            # a damped step does not solve E(P) w = f
            elif fast and not full:
                # reduced step: its point and z(point) are scr[12] and scr[11]
                w[:] = scr[12]
                Z[:, :] = scr[11]
            else:
                for c in range(r):
                    w[c] = w[c] + delta[c]
            if damp or full:
                pattern_z(xa, b, var_row, w, Z)
            same = True
            for i in range(m):
                for j in range(k):
                    Pn[i, j] = Z[i, j] > 0.0
                    if Pn[i, j] != P[i, j]:
                        same = False
            if same and res <= res_tol:
                out_w[:] = w
                out_P[:, :] = P
                return s, total
            if unique and not damp:
                _seen_insert(solved, hP)
            if not damp:
                h = _pattern_hash(Pn)
                cycle = False
                for q in range(n_seen):
                    if seen[q] == h:
                        cycle = True
                        break
                if cycle:
                    if mode == 0:
                        break
                    damp = True             # hybrid: globalise from here on
                seen[n_seen] = h
                n_seen += 1
            P[:, :] = Pn
    return -1, total
