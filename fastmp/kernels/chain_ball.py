"""Compiled ball enclosure of a chain program's Jacobian over a box (Krawczyk's ``J(X)``).

The same enclosure as :func:`fastmp.estimators.certify.chain_ball` (Rump's ball
arithmetic: midpoint and radius, every rounding error bounded explicitly, no directed
rounding needed), computed in compiled loops that follow
:func:`fastmp.kernels.chain.jacobian_generic` term by term. In NumPy the enclosure cost
~0.8 ms per certified root in call overhead on matrices of a few rows; here it is a few
tens of microseconds.

Rules, for a product ``C = A B`` of balls ``<Am, Ar>``, ``<Bm, Br>`` with inner
dimension ``k`` (``u = 2^-53``, ``gamma_k = k u / (1 - k u)``)::

    Cm = fl(Am Bm)
    Cr = (|Am| Br + Ar (|Bm| + Br) + gamma_{k+1} |Am| |Bm| + k TINY) (1 + 4 (k + 2) u)

and for a sum ``Cm = fl(Am + Bm)``, ``Cr = (Ar + Br + u |Cm|) (1 + 4 u)``. The first
term bounds the midpoint's rounding for any summation order (Higham, Accuracy and
Stability, eq. 3.5 with the TINY term for underflow), the factor ``1 + 4 (k + 2) u``
the roundings of the radius computation itself (Rump, BIT 1999). Constants and the
draws are exact doubles (radius zero).

Krawczyk's residual ``R(w~) = Y(w~) - Y*`` at the point ``w~`` is enclosed more tightly
by :func:`residual_dd`: the same products in double-double arithmetic (error-free
transformations, Ogita, Rump & Oishi 2005), each entry a double-double value and a
double radius bounding its distance to the exact value (see :func:`_ddmm`).
"""
from __future__ import annotations

import numpy as np

from .._config import jit
from .chain import _const_or_eye, _lc_entry, node_shapes

U = 2.0 ** -53
TINY = 2.0 ** -1022 * 2 ** 10


@jit
def _gamma(k):
    return k * U / (1.0 - k * U)


@jit
def _bmm(Am, Ar, ar, ac, Bm, Br, bc, Cm, Cr):
    """``<Cm, Cr>[:ar, :bc] = <Am, Ar>[:ar, :ac] <Bm, Br>[:ac, :bc]`` (padded operands)."""
    g = _gamma(ac + 1)
    inflate = 1.0 + 4.0 * (ac + 2) * U
    for i in range(ar):
        for j in range(bc):
            s = 0.0
            rad = 0.0
            mag = 0.0
            for k in range(ac):
                a = Am[i, k]
                b = Bm[k, j]
                s += a * b
                rad += abs(a) * Br[k, j] + Ar[i, k] * (abs(b) + Br[k, j])
                mag += abs(a) * abs(b)
            Cm[i, j] = s
            Cr[i, j] = (rad + g * mag + ac * TINY) * inflate


@jit
def _badd_into(Jm, Jr, row, col, cm, cr):
    """``<Jm, Jr>[row, col] += <cm, cr>``."""
    s = Jm[row, col] + cm
    Jm[row, col] = s
    Jr[row, col] = (Jr[row, col] + cr + U * abs(s)) * (1.0 + 4.0 * U)


@jit
def _bprod(gm, gr, hm, hr):
    """The ball ``<gm, gr> <hm, hr>`` of two scalars."""
    cm = gm * hm
    cr = (abs(gm) * hr + gr * (abs(hm) + hr) + U * abs(cm)) * (1.0 + 4.0 * U)
    return cm, cr


@jit
def _nodes_ball(Pm, Pr, pshape, C, src_kind, src_idx, steps, ns, width):
    """Balls ``(Nm, Nr)`` of the nodes ``N_0`` = source, ``N_k = A_k N_{k-1}``."""
    K = steps.shape[0]
    rows = max(Pm.shape[1], ns[0, 0])
    cols0 = ns[0, 1]
    Nm = np.zeros((K + 1, rows, width))
    Nr = np.zeros((K + 1, rows, width))
    for i in range(ns[0, 0]):
        for j in range(cols0):
            if src_kind == 0:
                Nm[0, i, j] = Pm[src_idx, i, j]
                Nr[0, i, j] = Pr[src_idx, i, j]
            else:
                Nm[0, i, j] = C[src_idx, i, j]
    for k in range(1, K + 1):
        a = steps[k - 1]
        _bmm(Pm[a], Pr[a], pshape[a, 0], pshape[a, 1], Nm[k - 1], Nr[k - 1], cols0,
             Nm[k], Nr[k])
    return Nm, Nr


@jit
def jacobian_ball(Pm, Pr, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, var, d, m):
    """Ball enclosure ``(Jm, Jr)`` (``d m x r``) of the Jacobian of ``Y = sum_t LC_t L_t
    N_{i_t} R_t`` over the parameter balls ``<Pm, Pr>`` (padded, as the Newton kernels
    take them); ``C`` holds exact constants."""
    r = var.shape[0]
    K = steps.shape[0]
    rows = max(Pm.shape[1], ns[0, 0])
    cols0 = ns[0, 1]
    width = max(Pm.shape[1], Pm.shape[2], ns[0, 0], cols0, m)
    Nm, Nr = _nodes_ball(Pm, Pr, pshape, C, src_kind, src_idx, steps, ns, width)
    Jm = np.zeros((d * m, r))
    Jr = np.zeros((d * m, r))
    Gm = np.zeros((K + 1, d, width))
    Gr = np.zeros((K + 1, d, width))
    hrows = max(rows, cols0)
    Hm = np.zeros((hrows, width))
    Hr = np.zeros((hrows, width))
    Cr0 = np.zeros((hrows, width))  # radius of an exact right constant (cols0 x m)
    for t in range(terms.shape[0]):
        l, it, rc, lc = terms[t, 0], terms[t, 1], terms[t, 2], terms[t, 3]
        rows_it = ns[it, 0]
        # G_it = LC_t L_t (d x rows(N_it)); G_{s-1} = G_s A_s
        if l >= 0 and lc >= 0:
            _bmm(C[lc], np.zeros((d, pshape[l, 0])), d, pshape[l, 0], Pm[l], Pr[l], rows_it,
                 Gm[it], Gr[it])
        elif l >= 0:
            for i in range(d):
                for j in range(rows_it):
                    Gm[it, i, j] = Pm[l, i, j]
                    Gr[it, i, j] = Pr[l, i, j]
        else:
            _const_or_eye(C, lc, d, rows_it, Gm[it])
            Gr[it, :d, :rows_it] = 0.0
        for s in range(it, 0, -1):
            a = steps[s - 1]
            _bmm(Gm[s], Gr[s], d, pshape[a, 0], Pm[a], Pr[a], pshape[a, 1], Gm[s - 1],
                 Gr[s - 1])
        # variables of A_s (s >= 1) and of the source (s = 0): column v of J is
        # G_s[:, vi] (x) H[vj, :] with H = N_{s-1} R_t (or R_t)
        for s in range(0, it + 1):
            if s >= 1:
                prow = ns[s - 1, 0]
                if rc >= 0:
                    _bmm(Nm[s - 1], Nr[s - 1], prow, cols0, C[rc], Cr0, m, Hm, Hr)
                else:
                    for i in range(prow):
                        for j in range(m):
                            Hm[i, j] = Nm[s - 1, i, j]
                            Hr[i, j] = Nr[s - 1, i, j]
                pid = steps[s - 1]
            else:
                if src_kind != 0:
                    continue
                prow = cols0
                _const_or_eye(C, rc, prow, m, Hm)
                Hr[:prow, :m] = 0.0
                pid = src_idx
            for v in range(r):
                if var[v, 0] != pid:
                    continue
                vi, vj = var[v, 1], var[v, 2]
                for a_ in range(d):
                    for c in range(m):
                        cm, cr = _bprod(Gm[s, a_, vi], Gr[s, a_, vi], Hm[vj, c], Hr[vj, c])
                        _badd_into(Jm, Jr, a_ * m + c, v, cm, cr)
        # variables in L_t: LC_t[:, vi] (x) (N_it R_t)[vj, :]
        if l >= 0:
            prow = ns[it, 0]
            if rc >= 0:
                _bmm(Nm[it], Nr[it], prow, cols0, C[rc], Cr0, m, Hm, Hr)
            else:
                for i in range(prow):
                    for j in range(m):
                        Hm[i, j] = Nm[it, i, j]
                        Hr[i, j] = Nr[it, i, j]
            for v in range(r):
                if var[v, 0] != l:
                    continue
                vi, vj = var[v, 1], var[v, 2]
                for a_ in range(d):
                    g = _lc_entry(C, lc, a_, vi)
                    for c in range(m):
                        cm, cr = _bprod(g, 0.0, Hm[vj, c], Hr[vj, c])
                        _badd_into(Jm, Jr, a_ * m + c, v, cm, cr)
    return Jm, Jr


@jit
def output_ball(Pm, Pr, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, d, m):
    """Ball enclosure ``(Ym, Yr)`` (``d x m``) of the output ``Y = sum_t LC_t L_t N_{i_t}
    R_t`` over the parameter balls ``<Pm, Pr>``: the same rules as
    :func:`jacobian_ball`, term by term as :func:`fastmp.estimators.certify.chain_ball`
    evaluates it (``G = LC_t L_t``, then ``(G N_{i_t}) R_t``)."""
    rows = max(Pm.shape[1], ns[0, 0])
    cols0 = ns[0, 1]
    width = max(Pm.shape[1], Pm.shape[2], ns[0, 0], cols0, m)
    Nm, Nr = _nodes_ball(Pm, Pr, pshape, C, src_kind, src_idx, steps, ns, width)
    Ym = np.zeros((d, m))
    Yr = np.zeros((d, m))
    Gm = np.zeros((d, width))
    Gr = np.zeros((d, width))
    GNm = np.zeros((d, width))
    GNr = np.zeros((d, width))
    Tm = np.zeros((d, width))
    Tr = np.zeros((d, width))
    Cr0 = np.zeros((max(rows, cols0), width))  # radius of an exact right constant
    for t in range(terms.shape[0]):
        l, it, rc, lc = terms[t, 0], terms[t, 1], terms[t, 2], terms[t, 3]
        rows_it = ns[it, 0]
        if l >= 0 and lc >= 0:
            _bmm(C[lc], np.zeros((d, pshape[l, 0])), d, pshape[l, 0], Pm[l], Pr[l], rows_it,
                 Gm, Gr)
        elif l >= 0:
            for i in range(d):
                for j in range(rows_it):
                    Gm[i, j] = Pm[l, i, j]
                    Gr[i, j] = Pr[l, i, j]
        else:
            _const_or_eye(C, lc, d, rows_it, Gm)
            Gr[:d, :rows_it] = 0.0
        _bmm(Gm, Gr, d, rows_it, Nm[it], Nr[it], cols0, GNm, GNr)
        if rc >= 0:
            _bmm(GNm, GNr, d, cols0, C[rc], Cr0, m, Tm, Tr)
            for i in range(d):
                for c in range(m):
                    _badd_into(Ym, Yr, i, c, Tm[i, c], Tr[i, c])
        else:
            for i in range(d):
                for c in range(m):
                    _badd_into(Ym, Yr, i, c, GNm[i, c], GNr[i, c])
    return Ym, Yr


# ------------------------------------------------------------ double-double residual
#: Veltkamp's splitting constant 2^27 + 1 (binary64: s = 53, ceil(s / 2) = 27)
_SPLITTER = 134217729.0


@jit(inline="always")
def _two_sum(a, b):
    """Knuth's TwoSum: ``s = fl(a + b)`` and ``e`` with ``a + b = s + e`` exactly (any
    ``a``, ``b`` unless ``s`` overflows; no ordering of ``|a|``, ``|b|`` needed). Knuth,
    TAOCP vol. 2, 4.2.2, Thm B; Ogita, Rump & Oishi, SIAM J. Sci. Comput. 26(6), 2005,
    Algorithm 3.1."""
    s = a + b
    z = s - a
    e = (a - (s - z)) + (b - z)
    return s, e


@jit(inline="always")
def _split(a):
    """Veltkamp's splitting ``a = hi + lo`` into two halves of 26 significant bits each
    (Dekker 1971; Ogita, Rump & Oishi 2005, Algorithm 3.2); overflows to inf / NaN for
    ``|a| > ~2^996``, which the callers catch through the final finiteness checks."""
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


@jit(inline="always")
def _two_prod(a, b):
    """Dekker's TwoProduct without fma: ``x = fl(a b)`` and ``y`` with ``a b = x + y``
    exactly if no underflow occurs (Ogita, Rump & Oishi 2005, Algorithm 3.3 and Thm 3.4);
    with underflow it errs by a few ``eta = 2^-1074`` (ibid., Sec. 3, give ``5 eta``),
    which the callers cover by a ``TINY = 2^62 eta`` per product. Numba compiles with
    ``fastmath=False``: no contraction into fma, no reassociation (tested: the compiled
    and the interpreted results are the same bits and exact in rationals)."""
    x = a * b
    a1, a2 = _split(a)
    b1, b2 = _split(b)
    y = a2 * b2 - (((x - a1 * b1) - a2 * b1) - a1 * b2)
    return x, y


@jit
def _ddmm(Ah, Al, Ar, ar, ac, Bh, Bl, Br, bc, Ch, Cl, Cr):
    """Double-double ball product ``C = A B`` (``[:ar, :ac] x [:ac, :bc]``, padded).

    An operand entry is ``(h, l, r)``: the exact value ``x`` lies within ``r`` of the
    *real number* ``h + l``. Per entry of ``C`` with inner index ``k`` (``a~ = ah + al``,
    ``b~ = bh + bl``): ``a~ b~ = ph + pl + ah bl + al bh + al bl`` with ``ph + pl`` =
    TwoProduct(ah, bh) exact; ``ph`` is accumulated error-free by TwoSum into ``s``
    (``s_old + ph = s + q``), and the low-order part ``q + pl + t1 + t2 + t3`` (``t1 =
    fl(ah bl)`` etc.) is summed in plain double into ``c``. Every plain-double operation
    ``z = fl(x op y)`` has ``|z - x op y| <= u |z|`` (Higham, Accuracy and Stability, 2nd
    ed., eq. 2.5, no underflow; additions are exact when they underflow, products err by
    at most ``eta / 2``), so with ``E = sum_k (|t1| + |t2| + |t3| + |v1| + |v2| + |v3| +
    |z| + |c_k|)`` over the computed intermediates (``v1..v3`` the partial low sums, ``z``
    the term, ``c_k`` the running low sum)::

        |sum_k a~ b~ - (s + c)| <= u E + 7 eta ac

    The propagated input radii add ``sum_k |a~| rb + ra (|b~| + rb)`` (the exact product
    minus ``a~ b~``). The result is renormalised by TwoSum, ``Ch + Cl = s + c`` exactly,
    and::

        Cr = (sum_k [|a~| rb + ra (|b~| + rb) + u (...) + TINY]) (1 + 4 (M + 2) u)

    where the last factor covers the roundings of the radius computation itself: the
    radius is a sum of products of non-negative doubles (``|a~| <= |ah| + |al|`` etc.),
    each monomial passing through at most ``ac + 10`` roundings (``ac`` of the running
    sums, at most 7 inside a term, 3 at the end), each at worst a factor ``(1 + u)^-1``
    below the exact value, and ``(1 + u)^M <= 1 + 2 M u`` for ``M u < 1``; ``M = 16 (ac +
    1)`` is taken, and the factor's own rounding and that of the product by it are in the
    slack between ``2 M u`` and ``4 (M + 2) u`` (Rump, BIT 39, 1999, the same argument as
    the module's ``1 + 4 (k + 2) u``). ``TINY = 2^-1012`` per term covers underflow in
    the midpoint (``7 eta``) and the subnormal roundings of the radius terms (each at
    most ``eta / 2`` absolute, never multiplied afterwards except by ``inflate``; at most
    ~10 per term).
    """
    inflate = 1.0 + 4.0 * (16.0 * (ac + 1) + 2.0) * U
    for i in range(ar):
        for j in range(bc):
            s = 0.0
            c = 0.0
            rad = 0.0
            err = 0.0
            for k in range(ac):
                ah = Ah[i, k]
                al = Al[i, k]
                bh = Bh[k, j]
                bl = Bl[k, j]
                ph, pl = _two_prod(ah, bh)
                s, q = _two_sum(s, ph)
                t1 = ah * bl
                t2 = al * bh
                t3 = al * bl
                v1 = pl + t1
                v2 = v1 + t2
                v3 = v2 + t3
                z = q + v3
                c = c + z
                err += (abs(t1) + abs(t2) + abs(t3) + abs(v1) + abs(v2) + abs(v3)
                        + abs(z) + abs(c))
                ra = Ar[i, k]
                rb = Br[k, j]
                rad += ((abs(ah) + abs(al)) * rb + ra * ((abs(bh) + abs(bl)) + rb))
            h, l = _two_sum(s, c)
            Ch[i, j] = h
            Cl[i, j] = l
            Cr[i, j] = (rad + U * err + ac * TINY) * inflate


@jit
def _ddadd_into(Yh, Yl, Yr, i, j, th, tl, tr):
    """``<Y>[i, j] += <th + tl, tr>`` in double-double: ``Yh + th = s + e`` by TwoSum
    (exact), ``c = fl(fl(e + Yl) + tl)`` errs by at most ``u (|e + Yl|~ + |c|)`` (Higham
    eq. 2.5), then ``Yh' + Yl' = s + c`` by TwoSum (exact). Radius as in :func:`_ddmm`
    (a handful of roundings: factor ``1 + 4 (8 + 2) u``)."""
    s, e = _two_sum(Yh[i, j], th)
    v = e + Yl[i, j]
    c = v + tl
    h, l = _two_sum(s, c)
    Yh[i, j] = h
    Yl[i, j] = l
    Yr[i, j] = (Yr[i, j] + tr + U * (abs(v) + abs(c)) + TINY) * (1.0 + 40.0 * U)


@jit
def residual_dd(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, Ystar, d, m):
    """Rigorous enclosure ``(Rm, Rr)`` (``d x m``, doubles) of the residual ``Y(P) - Y*``
    at a *point* (exact double parameters ``P``, padded; exact constants ``C``):
    ``|R_exact - Rm| <= Rr`` entrywise.

    The midpoint is evaluated in double-double arithmetic with error-free transformations
    (TwoSum, Dekker's TwoProduct with Veltkamp's splitting; Ogita, Rump & Oishi,
    "Accurate sum and dot product", SIAM J. Sci. Comput. 26(6), 2005) along the chain
    program in the order of :func:`output_ball` / :func:`_nodes_ball`: ``N_k = A_k
    N_{k-1}``, then per term ``G = LC_t L_t``, ``(G N_{i_t}) R_t``, summed into ``Y``.
    Every node entry carries a double-double value and a double radius bounding its
    distance to the exact value (:func:`_ddmm`, :func:`_ddadd_into`); the radius is the
    double-double rounding, ``~ u^2`` times the magnitudes, plus what it inherits. The
    final ``Y - Y*`` is rounded to a double ``Rm`` by TwoSum, its low part going into
    ``Rr``. Where the double ball of :func:`output_ball` has a radius ``~ u`` times the
    magnitudes (1e-13..1e-9 on ill-conditioned Figure 2a roots), this one is ``~ u``
    times ``|R|`` plus ``~ u^2`` times the magnitudes. Non-finite entries (overflow in the
    splitting of ``|x| > ~2^996``) propagate to ``Rm`` / ``Rr``: callers must reject
    non-finite results."""
    rows = max(P.shape[1], ns[0, 0])
    cols0 = ns[0, 1]
    width = max(P.shape[1], P.shape[2], ns[0, 0], cols0, m)
    K = steps.shape[0]
    Nh = np.zeros((K + 1, rows, width))
    Nl = np.zeros((K + 1, rows, width))
    Nr = np.zeros((K + 1, rows, width))
    Z = np.zeros((max(rows, d), width))  # low part / radius of exact operands
    for i in range(ns[0, 0]):
        for j in range(cols0):
            Nh[0, i, j] = P[src_idx, i, j] if src_kind == 0 else C[src_idx, i, j]
    for k in range(1, K + 1):
        a = steps[k - 1]
        _ddmm(P[a], Z, Z, pshape[a, 0], pshape[a, 1], Nh[k - 1], Nl[k - 1], Nr[k - 1],
              cols0, Nh[k], Nl[k], Nr[k])
    Yh = np.zeros((d, m))
    Yl = np.zeros((d, m))
    Yr = np.zeros((d, m))
    Gh = np.zeros((d, width))
    Gl = np.zeros((d, width))
    Gr = np.zeros((d, width))
    GNh = np.zeros((d, width))
    GNl = np.zeros((d, width))
    GNr = np.zeros((d, width))
    Th = np.zeros((d, width))
    Tl = np.zeros((d, width))
    Tr = np.zeros((d, width))
    Zc = np.zeros((max(rows, cols0), width))
    for t in range(terms.shape[0]):
        l, it, rc, lc = terms[t, 0], terms[t, 1], terms[t, 2], terms[t, 3]
        rows_it = ns[it, 0]
        if l >= 0 and lc >= 0:
            _ddmm(C[lc], Z, Z, d, pshape[l, 0], P[l], Z, Z, rows_it, Gh, Gl, Gr)
        else:
            if l >= 0:
                for i in range(d):
                    for j in range(rows_it):
                        Gh[i, j] = P[l, i, j]
            else:
                _const_or_eye(C, lc, d, rows_it, Gh)
            Gl[:d, :rows_it] = 0.0
            Gr[:d, :rows_it] = 0.0
        _ddmm(Gh, Gl, Gr, d, rows_it, Nh[it], Nl[it], Nr[it], cols0, GNh, GNl, GNr)
        if rc >= 0:
            _ddmm(GNh, GNl, GNr, d, cols0, C[rc], Zc, Zc, m, Th, Tl, Tr)
            for i in range(d):
                for c in range(m):
                    _ddadd_into(Yh, Yl, Yr, i, c, Th[i, c], Tl[i, c], Tr[i, c])
        else:
            for i in range(d):
                for c in range(m):
                    _ddadd_into(Yh, Yl, Yr, i, c, GNh[i, c], GNl[i, c], GNr[i, c])
    # R = Y - Y*: Yh - Y* = s + e exactly; x = fl(e + Yl) errs by <= u |x|; Rm + f = s + x
    # exactly (TwoSum); Rr = Yr + |f| + u |x| (+ TINY), inflated for its three roundings
    Rm = np.empty((d, m))
    Rr = np.empty((d, m))
    for i in range(d):
        for c in range(m):
            s, e = _two_sum(Yh[i, c], -Ystar[i, c])
            x = e + Yl[i, c]
            h, f = _two_sum(s, x)
            Rm[i, c] = h
            Rr[i, c] = (Yr[i, c] + abs(f) + U * abs(x) + TINY) * (1.0 + 20.0 * U)
    return Rm, Rr


@jit
def _inverse(A, out):
    """``out = A^-1`` by Gauss-Jordan elimination with partial pivoting; False if a pivot
    is zero or the result is not finite (Krawczyk's preconditioner: any matrix keeps the
    test rigorous, so no enclosure is needed here)."""
    n = A.shape[0]
    W = A.copy()
    for i in range(n):
        for j in range(n):
            out[i, j] = 1.0 if i == j else 0.0
    for k in range(n):
        p = k
        big = abs(W[k, k])
        for i in range(k + 1, n):
            if abs(W[i, k]) > big:
                big = abs(W[i, k])
                p = i
        if not big > 0.0:
            return False
        if p != k:
            for j in range(n):
                W[k, j], W[p, j] = W[p, j], W[k, j]
                out[k, j], out[p, j] = out[p, j], out[k, j]
        inv = 1.0 / W[k, k]
        for j in range(n):
            W[k, j] *= inv
            out[k, j] *= inv
        for i in range(n):
            if i != k:
                f = W[i, k]
                if f != 0.0:
                    for j in range(n):
                        W[i, j] -= f * W[k, j]
                        out[i, j] -= f * out[k, j]
    for i in range(n):
        for j in range(n):
            if not np.isfinite(out[i, j]):
                return False
    return True


@jit
def krawczyk_double(P, pshape, C, cshape, src_kind, src_idx, steps, terms, var, Ystar, w,
                    J0, inflation):
    """Krawczyk's test in double-precision ball arithmetic, all compiled: ``R(w~)``
    enclosed by :func:`residual_dd`, ``J(X)`` by :func:`jacobian_ball`, preconditioner
    ``Yinv = J0^-1`` (``J0 ~ J(w~)``, plain floating point). Sufficient condition
    (componentwise, ``X = w~ + [-rho, rho]``): ``|Yinv R(w~)| + |I - Yinv J(X)| rho <
    rho``, tried for ``rho = f |Yinv R(w~)| + |w~| 1e-15`` with ``f`` in ``inflation``.
    ``P`` (padded parameters) is overwritten with ``w``. Returns ``(certified, rho_max)``;
    a non-finite residual or preconditioner is never certified.

    The same test as :func:`fastmp.estimators.certify.krawczyk` except that the residual
    is enclosed by :func:`residual_dd` (double-double midpoint, rigorous double radius)
    rather than in 128-bit arb. Until the residual moved to double-double it was
    enclosed by :func:`output_ball`, whose radius (~1e-13..1e-9 on ill-conditioned
    Figure 2a roots, cond(J) ~ 1e7-1e13) failed ~13% of the roots there; the double-double
    radius is ~1e-16 of ``|R|`` plus ~u^2 of the magnitudes, and :func:`residual_dd` cost
    ~2 us more than :func:`output_ball` (5.7 vs 3.3 us at n = 8, T = 4) against ~18 us
    per Jacobian enclosure, so it runs unconditionally. Callers still fall back to the
    arb tests when this fails (huge roots, singular or not yet converged points)."""
    d, m = Ystar.shape
    ns = node_shapes(pshape, cshape, src_kind, src_idx, steps)
    for v in range(var.shape[0]):
        P[var[v, 0], var[v, 1], var[v, 2]] = w[v]
    Rm, Rr = residual_dd(P, pshape, C, cshape, src_kind, src_idx, steps, terms, ns, Ystar,
                         d, m)
    return krawczyk_with_residual(P, pshape, C, cshape, src_kind, src_idx, steps, terms, var,
                                  w, J0, Rm, Rr, inflation)


@jit
def krawczyk_with_residual(P, pshape, C, cshape, src_kind, src_idx, steps, terms, var, w,
                           J0, Rm_, Rr_, inflation):
    """:func:`krawczyk_double` with the residual enclosure given: ``|R(w~) - Rm_| <=
    Rr_`` (``d x m``, row-major as the equations). Sets the unknowns of ``P`` to ``w``
    and encloses ``J(X)`` over the boxes around them. Kept separate so that the residual
    enclosure can be compared (tests: :func:`output_ball`'s against :func:`residual_dd`'s
    on the same roots)."""
    d, m = Rm_.shape
    r = var.shape[0]
    ns = node_shapes(pshape, cshape, src_kind, src_idx, steps)
    Yinv = np.empty((r, r))
    if not _inverse(J0, Yinv):
        return False, np.inf
    Pr = np.zeros_like(P)
    for v in range(r):
        P[var[v, 0], var[v, 1], var[v, 2]] = w[v]
    Rm = np.empty((r, 1))
    Rr = np.empty((r, 1))
    for i in range(d):
        for c in range(m):
            Rm[i * m + c, 0] = Rm_[i, c]
            Rr[i * m + c, 0] = Rr_[i, c]
    # base = |Yinv R| enclosure (Yinv exact: a ball of radius zero)
    Yr0 = np.zeros((r, r))
    Bm = np.empty((r, 1))
    Br = np.empty((r, 1))
    _bmm(Yinv, Yr0, r, r, Rm, Rr, 1, Bm, Br)
    infl = 1.0 + 4.0 * (r + 2) * U
    base = np.empty(r)
    for i in range(r):
        base[i] = (abs(Bm[i, 0]) + Br[i, 0]) * (1.0 + 4.0 * U)
        if not np.isfinite(base[i]):
            return False, np.inf
    YJm = np.empty((r, r))
    YJr = np.empty((r, r))
    rho = np.empty(r)
    Mabs = np.empty((r, r))
    for f in inflation:
        for v in range(r):
            rho[v] = f * base[v] + abs(w[v]) * 1e-15 + 1e-300
            Pr[var[v, 0], var[v, 1], var[v, 2]] = rho[v]
        Jm, Jr = jacobian_ball(P, Pr, pshape, C, cshape, src_kind, src_idx, steps, terms, ns,
                               var, d, m)
        # M = I - Yinv J(X) as a ball, then its magnitude bound
        _bmm(Yinv, Yr0, r, r, Jm, Jr, r, YJm, YJr)
        for i in range(r):
            for j in range(r):
                mm = (1.0 if i == j else 0.0) - YJm[i, j]
                mr = (YJr[i, j] + U * abs(mm)) * (1.0 + 4.0 * U)
                Mabs[i, j] = (abs(mm) + mr) * (1.0 + 4.0 * U)
        ok = True
        rmax = 0.0
        for i in range(r):
            s = 0.0
            for j in range(r):
                s += Mabs[i, j] * rho[j]
            lhs = (base[i] + s * infl) * (1.0 + 4.0 * U)
            if not lhs < rho[i]:  # also rejects NaN
                ok = False
                break
            rmax = max(rmax, rho[i])
        if ok:
            return True, rmax
    return False, np.inf
