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
    lam = 0.0
    for a in range(r):
        lam = max(lam, G[a, a])
        for c in range(a):
            G[a, c] = G[c, a]
    lam = 1e-12 * lam + 1e-300
    for a in range(r):
        G[a, a] += lam
    # G is symmetric positive definite (lam > 0): elimination needs no pivot threshold
    Gv = G[:r, :r]
    ok = solve_into(Gv, Eg, 0.0, 0.0, LU, delta)
    res = _inf_residual(E, delta, g) if ok else np.inf
    if not ok or (res > res_tol and res < 1e6 * res_tol):
        sol = np.linalg.lstsq(E, g, rcond=-1.0)[0]
        delta[:] = sol
        res = _inf_residual(E, delta, g)
    return res, False


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
                   res_tol, mode, r_row, repair, out_w, out_P):
    """Pattern fixed-point (semismooth Newton) search of one trial.

    ``res_tol`` is the absolute inf-norm residual below which a pattern's linear system
    counts as solved. Returns ``(start, iterations)``: the start (0-based) that produced
    a candidate written to ``out_w``/``out_P``, or ``-1`` if none did within ``starts``
    starts; ``iterations`` is the total number of Newton steps taken.
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
            else:
                for c in range(r):
                    w[c] = w[c] + delta[c]
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
