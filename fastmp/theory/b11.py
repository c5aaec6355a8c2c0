r"""Exact oracle for the example network of Appendix B.1.1 (``LRNN(n=2, T=2, b=1, d=1)``,
``m = 2``, two learnable weights in ``W``).

Setting
-------
Write ``B = (p, q)^T``, ``D = (u, v)`` and ``W = [[w1, w2], [w3, w4]]`` (the student's
``B``, ``D`` and frozen entries of ``W``). By eq. 3.3 the output is
``Y = D W^2 B X_1 + D W B X_2 = A [X_1; X_2]`` with the 1 x 2 map ``A = [D W^2 B, D W B]``.
``X`` (2 x 2) is invertible almost surely, so the student matches the teacher iff
``A = A*`` (``X`` is not needed), i.e. iff the two allocated weights ``(x, y)`` solve

* (B.11)  ``D W B   = L``, ``L = D* W* B*``     -- linear in ``(x, y)``:
  ``alpha x + beta y + gamma = 0``;
* (B.12)  ``D W^2 B = Q``, ``Q = D* W*^2 B*``   -- quadratic in ``(x, y)``.

(The paper numbers the two equations the other way round in the text of B.1.1 -- its
``A_1^*`` is the target of ``D W B`` -- which changes nothing.) Here ``x`` is the first
and ``y`` the second allocated weight in the row-major order of ``np.nonzero(mask)``.

Reduction
---------
If ``beta != 0``, B.11 gives ``y = -(alpha x + gamma) / beta``; substituting into B.12 and
multiplying by ``beta^2`` (so no division is left) gives ``a x^2 + b x + c = 0`` with,
for B.12 = ``q_xx x^2 + q_xy x y + q_yy y^2 + q_x x + q_y y + q_0``,

    a = q_xx beta^2 - q_xy alpha beta + q_yy alpha^2
    b = q_x beta^2 - q_y alpha beta - q_xy gamma beta + 2 q_yy alpha gamma
    c = q_0 beta^2 - q_y gamma beta + q_yy gamma^2.

Every real root ``x`` gives a real ``y``, so the allocation matches iff this equation has
a real root: ``(a != 0 and b^2 - 4ac >= 0) or (a == 0 and (b != 0 or c == 0))``.
Expanded and factored (derived with sympy offline; hard-coded below, ``s = p u + q v``):

============  ========  ======  ==================================================
allocation    (x, y)    beta    a  (eliminating y)
============  ========  ======  ==================================================
diagonal      (w1, w4)  q v     ``p q u v s``
off_diagonal  (w2, w3)  p v     ``-p q u v s``
row1          (w1, w2)  q u     0
row2          (w3, w4)  q v     0
col1          (w1, w3)  p v     0
col2          (w2, w4)  q v     0
============  ========  ======  ==================================================

(b and c are in :data:`_ELIM_Y`.) For the four row/column allocations -- exactly those
meeting Theorem 3.5 -- ``a`` vanishes identically, as the paper states. The reason is
visible in B.12: its quadratic part is ``x (alpha x + beta y)`` (row1, col1) or
``y (alpha x + beta y)`` (row2, col2), a multiple of the linear part of B.11, so on the
line B.11 it equals ``-gamma x`` (resp. ``-gamma y``) and B.12 becomes linear. (Checked
symbolically with sympy for all six, and numerically in ``tests/test_b11.py`` by fitting
the reduced polynomial from raw matrix products.) Then ``b != 0`` almost surely and the
allocation is maximal (MP = 1). For ``diagonal`` (quadratic part ``p u x^2 + q v y^2``)
and ``off_diagonal`` (``(p u + q v) x y``) there is no such factorisation; ``a`` is the
same product ``p q u v s`` with opposite signs, and the sign of ``b^2 - 4ac`` decides.

Degenerate draws (probability 0 under Gaussian sampling, handled explicitly)
---------------------------------------------------------------------------
* ``beta == 0`` exactly (B.11 does not involve ``y``) but ``alpha != 0``: ``x`` is
  eliminated instead (multiplying by ``alpha^2``, :data:`_ELIM_X`), the quadratic is in
  ``y``, and :func:`b11_coefficients` returns those coefficients.
* ``alpha == beta == 0``: B.11 reads ``gamma = 0``. If ``gamma != 0`` there is no
  solution and :func:`b11_coefficients` returns the unsatisfiable ``(0, 0, 1)``; if
  ``gamma == 0`` too, B.12 alone in two unknowns is not reduced to one variable and a
  ``ValueError`` is raised (never silently guessed).

The decision uses exact comparisons with zero (``a == 0``, ``disc >= 0``) of the floating
point coefficients: draws where rounding could flip it (``b^2 - 4ac`` within rounding of
0) have probability of the order of the coefficients' relative rounding error.

Paper vs. measurement
---------------------
The paper reports ``MP = 0.74`` (diagonal) and ``0.83`` (off-diagonal), computed with
``scipy.optimize.fsolve`` scripts (1000 trials, Appendix E) that are not available.
:func:`b11_mp` decides every trial exactly on fastmp's draws (Appendix E.3 scales; MP is
invariant to the scale of each matrix, since scaling ``W``, ``B`` or ``D`` of teacher and
student alike scales the solutions). With 200 000 trials (seed 0):

* diagonal      0.7147  [0.7128, 0.7167]
* off_diagonal  0.8290  [0.8273, 0.8306]
* row1, row2, col1, col2: 1.0 (200 000 / 200 000), as Theorem 3.5 says.

The off-diagonal value agrees with the paper; the diagonal is 0.025 lower, i.e. 1.8
binomial standard errors of a 1000-trial estimate (sd 0.014): of the 200 disjoint
1000-trial blocks of the run above, 8% give >= 0.735 (which rounds to 0.74), so the
paper's 0.74 is consistent with Monte Carlo noise. (Independent numpy draws, 400 000
trials: 0.7160 and 0.8277.) fsolve itself is not the cause: on 2000 trials, fsolve with
100 random starts found a root (``ier == 1``, residual < 1e-10) in exactly the trials
this oracle accepts, for both allocations; accepting near-solutions would bias it high
(best residual < 1e-2 adds about 1.2 points to both). The literal eq. 3.2 readout
``y = D h_T`` gives ``Y = D W B X_1 + D B X_2``: the ``X_2`` coefficient requires
``D B = D* B*``, which does not involve ``W``, so every allocation would have MP = 0 --
that convention cannot explain the paper's numbers (fastmp follows eq. 3.3).
"""
from __future__ import annotations

import numpy as np

# allocated cells (x, y) in row-major order: the same table b11_allocations uses
from ..generators import _B11_CELLS as _CELLS
from ..generators import B11_NAMES
from ..models import LRNN

__all__ = ["B11_NAMES", "b11_coefficients", "b11_match", "b11_root", "b11_statuses",
           "b11_mp", "b11_linear_system", "b11_insert"]


# --------------------------------------------------------------------------- formulas
# Arguments: p, q (B), u, v (D), w1..w4 (student's W; the allocated ones are ignored),
# L = D* W* B*, Q = D* W*^2 B*. All functions are elementwise (work on arrays).

def _lin_diagonal(p, q, u, v, w1, w2, w3, w4, L):
    return p * u, q * v, p * v * w3 + q * u * w2 - L


def _lin_off_diagonal(p, q, u, v, w1, w2, w3, w4, L):
    return q * u, p * v, p * u * w1 + q * v * w4 - L


def _lin_row1(p, q, u, v, w1, w2, w3, w4, L):
    return p * u, q * u, p * v * w3 + q * v * w4 - L


def _lin_row2(p, q, u, v, w1, w2, w3, w4, L):
    return p * v, q * v, p * u * w1 + q * u * w2 - L


def _lin_col1(p, q, u, v, w1, w2, w3, w4, L):
    return p * u, p * v, q * u * w2 + q * v * w4 - L


def _lin_col2(p, q, u, v, w1, w2, w3, w4, L):
    return q * u, q * v, p * u * w1 + p * v * w3 - L


#: B.11 as ``alpha x + beta y + gamma = 0``
_LIN = {
    "diagonal": _lin_diagonal, "off_diagonal": _lin_off_diagonal, "row1": _lin_row1,
    "row2": _lin_row2, "col1": _lin_col1, "col2": _lin_col2,
}


# ---- eliminating y (needs beta != 0); equation in x, multiplied by beta^2
def _ey_diagonal(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = p * q * u * v * (p * u + q * v)
    b = q * v * (-2 * L * p * u + p**2 * u * v * w3 + p * q * u**2 * w2
                 + p * q * v**2 * w3 + q**2 * u * v * w2)
    c = q * v * (L**2 - L * p * v * w3 - L * q * u * w2 - Q * q * v
                 + p * q * u * v * w2 * w3 + q**2 * v**2 * w2 * w3)
    return a, b, c


def _ey_off_diagonal(p, q, u, v, w1, w2, w3, w4, L, Q):
    s = p * u + q * v
    a = -p * q * u * v * s
    b = -p * v * s * (p * u * w1 + q * v * w4 - L)
    c = -p**2 * v**2 * (Q - L * (w1 + w4) + s * w1 * w4)
    return a, b, c


def _ey_row1(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = 0.0 * p
    b = -q * u**2 * (-L * q + p**2 * u * w3 + p * q * u * w4 + p * q * v * w3 + q**2 * v * w4)
    c = -q * u * (-L * p * u * w3 - L * q * u * w4 - L * q * v * w3 + Q * q * u
                  + p**2 * u * v * w3**2 + p * q * u * v * w3 * w4 + p * q * v**2 * w3**2
                  + q**2 * v**2 * w3 * w4)
    return a, b, c


def _ey_row2(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = 0.0 * p
    b = q * v**2 * (-L * p + p**2 * u * w1 + p * q * u * w2 + p * q * v * w1 + q**2 * v * w2)
    c = q * v * (L**2 - 2 * L * p * u * w1 - L * q * u * w2 - Q * q * v + p**2 * u**2 * w1**2
                 + p * q * u**2 * w1 * w2 + p * q * u * v * w1**2 + q**2 * u * v * w1 * w2)
    return a, b, c


def _ey_col1(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = 0.0 * p
    b = -p**2 * v * (-L * v + p * u**2 * w2 + p * u * v * w4 + q * u * v * w2 + q * v**2 * w4)
    c = -p * v * (-L * p * u * w2 - L * p * v * w4 - L * q * v * w2 + Q * p * v
                  + p * q * u**2 * w2**2 + p * q * u * v * w2 * w4 + q**2 * u * v * w2**2
                  + q**2 * v**2 * w2 * w4)
    return a, b, c


def _ey_col2(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = 0.0 * p
    b = q**2 * v * (-L * u + p * u**2 * w1 + p * u * v * w3 + q * u * v * w1 + q * v**2 * w3)
    c = q * v * (L**2 - 2 * L * p * u * w1 - L * p * v * w3 - Q * q * v + p**2 * u**2 * w1**2
                 + p**2 * u * v * w1 * w3 + p * q * u * v * w1**2 + p * q * v**2 * w1 * w3)
    return a, b, c


#: B.12 after eliminating the second unknown y with B.11 (times beta^2): equation in x
_ELIM_Y = {
    "diagonal": _ey_diagonal, "off_diagonal": _ey_off_diagonal, "row1": _ey_row1,
    "row2": _ey_row2, "col1": _ey_col1, "col2": _ey_col2,
}


# ---- eliminating x (used only when beta == 0, alpha != 0); equation in y, times alpha^2
def _ex_diagonal(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = p * q * u * v * (p * u + q * v)
    b = p * u * (-2 * L * q * v + p**2 * u * v * w3 + p * q * u**2 * w2
                 + p * q * v**2 * w3 + q**2 * u * v * w2)
    c = p * u * (L**2 - L * p * v * w3 - L * q * u * w2 - Q * p * u
                 + p**2 * u**2 * w2 * w3 + p * q * u * v * w2 * w3)
    return a, b, c


def _ex_off_diagonal(p, q, u, v, w1, w2, w3, w4, L, Q):
    s = p * u + q * v
    a = -p * q * u * v * s
    b = -q * u * s * (p * u * w1 + q * v * w4 - L)
    c = -q**2 * u**2 * (Q - L * (w1 + w4) + s * w1 * w4)
    return a, b, c


def _ex_row1(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = 0.0 * p
    b = p * u**2 * (-L * q + p**2 * u * w3 + p * q * u * w4 + p * q * v * w3 + q**2 * v * w4)
    c = p * u * (L**2 - L * p * v * w3 - 2 * L * q * v * w4 - Q * p * u + p**2 * u * v * w3 * w4
                 + p * q * u * v * w4**2 + p * q * v**2 * w3 * w4 + q**2 * v**2 * w4**2)
    return a, b, c


def _ex_row2(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = 0.0 * p
    b = -p * v**2 * (-L * p + p**2 * u * w1 + p * q * u * w2 + p * q * v * w1 + q**2 * v * w2)
    c = -p * v * (-L * p * u * w2 - L * p * v * w1 - L * q * v * w2 + Q * p * v
                  + p**2 * u**2 * w1 * w2 + p * q * u**2 * w2**2 + p * q * u * v * w1 * w2
                  + q**2 * u * v * w2**2)
    return a, b, c


def _ex_col1(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = 0.0 * p
    b = p**2 * u * (-L * v + p * u**2 * w2 + p * u * v * w4 + q * u * v * w2 + q * v**2 * w4)
    c = p * u * (L**2 - L * q * u * w2 - 2 * L * q * v * w4 - Q * p * u + p * q * u**2 * w2 * w4
                 + p * q * u * v * w4**2 + q**2 * u * v * w2 * w4 + q**2 * v**2 * w4**2)
    return a, b, c


def _ex_col2(p, q, u, v, w1, w2, w3, w4, L, Q):
    a = 0.0 * p
    b = -q**2 * u * (-L * u + p * u**2 * w1 + p * u * v * w3 + q * u * v * w1 + q * v**2 * w3)
    c = -q * u * (-L * p * u * w3 - L * q * u * w1 - L * q * v * w3 + Q * q * u
                  + p**2 * u**2 * w1 * w3 + p**2 * u * v * w3**2 + p * q * u * v * w1 * w3
                  + p * q * v**2 * w3**2)
    return a, b, c


#: B.12 after eliminating the first unknown x with B.11 (times alpha^2): equation in y
_ELIM_X = {
    "diagonal": _ex_diagonal, "off_diagonal": _ex_off_diagonal, "row1": _ex_row1,
    "row2": _ex_row2, "col1": _ex_col1, "col2": _ex_col2,
}


# --------------------------------------------------------------------------- plumbing
def _check_name(name):
    if name not in _CELLS:
        raise ValueError(f"b11: unknown allocation {name!r}; expected one of {B11_NAMES}")


def _params(teacher, student):
    """``(p, q, u, v, w1, w2, w3, w4, L, Q)`` from weight dicts; arrays may carry leading
    trial axes (``W``: (..., 2, 2), ``B``: (..., 2, 1), ``D``: (..., 1, 2))."""
    Wt, Bt, Dt = (np.asarray(teacher[k], dtype=np.float64) for k in ("W", "B", "D"))
    W, B, D = (np.asarray(student[k], dtype=np.float64) for k in ("W", "B", "D"))
    for arr, shape, k in ((Wt, (2, 2), "W"), (Bt, (2, 1), "B"), (Dt, (1, 2), "D"),
                          (W, (2, 2), "W"), (B, (2, 1), "B"), (D, (1, 2), "D")):
        if arr.shape[-2:] != shape:
            raise ValueError(f"b11: {k} must have shape {shape} (LRNN(2, 2, 1, 1)), got {arr.shape}")
    WBt = Wt @ Bt
    L = (Dt @ WBt)[..., 0, 0]
    Q = (Dt @ (Wt @ WBt))[..., 0, 0]
    p, q = B[..., 0, 0], B[..., 1, 0]
    u, v = D[..., 0, 0], D[..., 0, 1]
    w1, w2, w3, w4 = W[..., 0, 0], W[..., 0, 1], W[..., 1, 0], W[..., 1, 1]
    return p, q, u, v, w1, w2, w3, w4, L, Q


def b11_linear_system(name, teacher, student):
    """Coefficients ``(alpha, beta, gamma)`` of B.11, ``alpha x + beta y + gamma = 0``,
    in the allocated weights ``(x, y)`` (row-major order)."""
    _check_name(name)
    p, q, u, v, w1, w2, w3, w4, L, Q = _params(teacher, student)
    return _LIN[name](p, q, u, v, w1, w2, w3, w4, L)


def _reduce(name, teacher, student):
    """Vectorised reduction. Returns ``(a, b, c, kept, alpha, beta, gamma)`` where
    ``kept`` is 0 when the equation is in x (y eliminated), 1 when in y (x eliminated),
    -1 when B.11 involves neither unknown (then ``(a, b, c) = (0, 0, 1)`` if
    ``gamma != 0``; ``gamma == 0`` too is flagged with ``kept = -2``)."""
    _check_name(name)
    prm = _params(teacher, student)
    alpha, beta, gamma = _LIN[name](*prm[:9])
    alpha, beta, gamma = np.broadcast_arrays(*(np.asarray(t, dtype=np.float64)
                                               for t in (alpha, beta, gamma)))
    with np.errstate(all="ignore"):
        ay, by, cy = _ELIM_Y[name](*prm)
        ax, bx, cx = _ELIM_X[name](*prm)
    use_y = beta != 0
    use_x = ~use_y & (alpha != 0)
    neither = ~use_y & ~use_x
    a = np.where(use_y, ay, np.where(use_x, ax, 0.0))
    b = np.where(use_y, by, np.where(use_x, bx, 0.0))
    c = np.where(use_y, cy, np.where(use_x, cx, 1.0))
    kept = np.where(use_y, 0, np.where(use_x, 1, np.where(gamma != 0, -1, -2)))
    return a, b, c, kept, alpha, beta, gamma


def _real_root_exists(a, b, c):
    a, b, c = (np.asarray(t, dtype=np.float64) for t in (a, b, c))
    return np.where(a != 0, b * b - 4.0 * a * c >= 0, (b != 0) | (c == 0))


# --------------------------------------------------------------------------- public API
def b11_coefficients(name, teacher, student):
    """``(a, b, c)`` of the reduced equation ``a z^2 + b z + c = 0`` for allocation
    ``name`` (see the module docstring for the convention: normally ``z`` is the first
    allocated weight and the equation is B.12 times ``beta^2``).

    ``teacher`` and ``student`` are ``{"W", "B", "D"}`` dicts as returned by
    ``LRNN(2, 2, 1, 1).trial_draws``; the student's allocated entries of ``W`` are
    ignored. Arrays with leading trial axes are accepted (results are then arrays).
    Raises ``ValueError`` if B.11 vanishes identically (``alpha = beta = gamma = 0``).
    """
    a, b, c, kept, *_ = _reduce(name, teacher, student)
    if np.any(kept == -2):
        raise ValueError("b11: degenerate draw, B.11 vanishes identically (alpha = beta = "
                         "gamma = 0); B.12 alone is not reduced to one unknown")
    if a.ndim == 0:
        return float(a), float(b), float(c)
    return a, b, c


def b11_match(name, teacher, student):
    """True iff some real setting of the two allocated weights makes the student's
    ``A = [D W^2 B, D W B]`` equal the teacher's (equivalently, its outputs on any
    invertible ``X``). Accepts stacked trials like :func:`b11_coefficients`."""
    a, b, c = b11_coefficients(name, teacher, student)
    out = _real_root_exists(a, b, c)
    return bool(out) if out.ndim == 0 else out


def b11_root(name, teacher, student):
    """One real solution ``np.array([x, y])`` (the allocated weights in the row-major
    order of ``np.nonzero(mask)``) when one exists, else ``None``. Single trial only.

    Of the two roots of the quadratic, the one of smaller magnitude is returned (the
    roots are computed with the cancellation-free formula). When ``a = b = c = 0`` every
    ``z`` solves the reduced equation and ``z = 0`` is returned.
    """
    a, b, c, kept, alpha, beta, gamma = (np.asarray(t).item() for t in _reduce(name, teacher, student))
    if kept == -2:
        raise ValueError("b11: degenerate draw, B.11 vanishes identically (alpha = beta = "
                         "gamma = 0); B.12 alone is not reduced to one unknown")
    if kept == -1 or not _real_root_exists(a, b, c):
        return None
    if a != 0:
        disc = max(b * b - 4.0 * a * c, 0.0)
        s = -0.5 * (b + np.copysign(np.sqrt(disc), b))
        if s == 0:  # b = 0 and disc = 0 => c = 0: double root at 0
            z = 0.0
        else:
            z1, z2 = s / a, c / s
            z = z1 if abs(z1) <= abs(z2) else z2
    elif b != 0:
        z = -c / b
    else:  # a = b = c = 0
        z = 0.0
    if kept == 0:
        x, y = z, -(alpha * z + gamma) / beta
    else:
        x, y = -(beta * z + gamma) / alpha, z
    return np.array([x, y], dtype=np.float64)


def b11_insert(name, student, root):
    """A copy of the student's weights with ``root`` written into the allocated cells."""
    _check_name(name)
    out = {k: np.array(v, dtype=np.float64, copy=True) for k, v in student.items()}
    for cell, val in zip(_CELLS[name], root):
        out["W"][cell] = val
    return out


def _stacked_draws(trials, seed):
    model = LRNN(n=2, T=2, b=1, d=1)
    teacher = {k: np.empty((trials,) + s) for k, s in model.param_shapes.items()}
    student = {k: np.empty((trials,) + s) for k, s in model.param_shapes.items()}
    for t in range(trials):
        tw, sw, _ = model.trial_draws(seed, t, 2)
        for k in teacher:
            teacher[k][t] = tw[k]
            student[k][t] = sw[k]
    return teacher, student


def b11_statuses(name, trials, seed):
    """Boolean array: did trial ``t`` (``t = 0 .. trials-1``) of
    ``LRNN(2, 2, 1, 1).trial_draws(seed, t, 2)`` match? The draws are collected in a
    Python loop (exactly fastmp's draws), the decision is vectorised."""
    _check_name(name)
    trials = int(trials)
    if trials <= 0:
        raise ValueError("b11_statuses: trials must be positive")
    teacher, student = _stacked_draws(trials, seed)
    return np.asarray(b11_match(name, teacher, student), dtype=bool)


def b11_mp(name, trials=100000, seed=0):
    """``(mp, ci_low, ci_high)``: exact-decision Monte Carlo estimate of MP for the
    B.1.1 allocation ``name`` with a 95% Wilson interval."""
    from ..estimators import wilson_interval

    status = b11_statuses(name, trials, seed)
    k = int(status.sum())
    lo, hi = wilson_interval(k, status.size)
    return k / status.size, lo, hi
