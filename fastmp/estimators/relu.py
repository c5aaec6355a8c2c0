"""Exact match decision for allocations in ``W1`` of a shallow ReLU network (paper §5,
Appendix D).

For an allocation confined to ``W1`` let ``U`` be the ``k`` *used* rows (rows holding a
learnable weight; their frozen entries stay fixed) and ``w`` the ``r`` learnable weights
(row-major order of the mask). By Lemmas D.1/D.2 a trial matches iff there are an
activation pattern ``P = (P_1 .. P_m)``, ``P_i in {0,1}^k``, and weights ``w`` with

* (D.1) ``W2[:, U] diag(P_i) z_i(w) = rhs_i := y_i - W2[:, ~U] relu(W1[~U] x_i)``,
* (D.2) ``z_ij(w) >= 0`` where ``P_ij = 1`` and ``z_ij(w) <= 0`` where ``P_ij = 0``,

with ``z_ij(w) = (W1 x_i)_j = A[i, j] . w + b[i, j]`` affine in ``w``
(:func:`relu_trial_system`). For fixed ``P`` this is a linear feasibility problem.

Strict feasibility, boundaries and statuses
-------------------------------------------
A feasible point of (D.1)-(D.2) can sit *on* a sign boundary (``z_ij = 0``); LP solvers
return such vertices all the time. We therefore never ask "is it feasible" but solve the
**margin LP**: maximise ``t`` subject to (D.1) and ``(2 P_ij - 1) z_ij(w) >= t``,
``t <= 1``. With ``S`` the size of the terms that make up ``z`` at the returned point
(``max_ij |b_ij| + |A_ij| . |w|``, at least the size ``z_floor`` those terms have with
every learnable weight at its typical magnitude ``1/sqrt(q)``), a pattern is

* *strictly feasible* if the margin re-computed on the returned point exceeds
  ``MARGIN_TOL * S`` (the LP's own ``t`` is only used to reject);
* *infeasible* if the equalities are inconsistent (rank-revealing test, thresholds
  ``RELU_TOLERANCES``) or the optimal ``t* < -MARGIN_TOL * S``;
* *undecided* otherwise: ``|t*| <= MARGIN_TOL * S`` (solutions only on the boundary), a
  rank or consistency test in its ambiguous band, or a point that fails verification.

A trial is ``MATCH`` if some pattern is strictly feasible **and** its point verifies
(:func:`verify_match`: the forward pass with the learnable entries set to ``w``
reproduces the teacher's outputs to relative error ``RESIDUAL_TOL``, and the activation
pattern of ``W1 X`` equals ``P`` at every entry with ``|z| > BOUNDARY_TOL * S``; entries
inside that band are *boundary* entries). Otherwise it is ``AMBIGUOUS`` if some pattern
was undecided -- in particular a trial whose only solutions sit on a sign boundary -- and
``NO_MATCH`` if every pattern is infeasible. For generic data boundary-only solutions
have probability zero, so ``AMBIGUOUS`` is rare and counted in the run's ``info``.

Lemma pruning and when it is valid
----------------------------------
Lemmas D.3 and D.4 are probability-one statements: they need the right-hand sides to be
generic. Conditionally on everything else, ``vec(rhs) = (Hc^T (x) I) vec([W2*,
-W2[:, ~U]])`` with ``Hc = [relu(W1* X); relu(W1[~U] X)]`` has a density on ``R^{dm}``
(independent of every pattern's matrix) iff ``Hc`` has full column rank ``m``; then every
pattern whose matrix has rank ``< dm`` is inconsistent with probability one. ReLU makes
this fail with *positive* probability at small ``n``: a sample on which every teacher
unit and every unused student unit is inactive has ``rhs_i = 0`` exactly (probability
``2^-(2n-k)``), and then ``P_i = 0`` solves its equations. So the lemma rules are only
applied in trials with ``system.generic`` (checked per trial); in the others the search
relies on its rank/LP tests alone. The rules used (rank bounds of the pattern's matrix
``E``, ``rank E >= dm`` needed):

* Lemma D.3: ``rank E <= sum_i min(d, |P_i|)``, so every sample needs ``>= d`` active
  used rows;
* Lemma D.4: ``rank E <= sum_j min(r_j, c_j)`` (``c_j`` = active samples of row ``j``),
  so ``sum_j max(0, r_j - c_j) <= r - dm``. For ``r = dm`` this is the paper's "row
  ``j`` needs ``r_j`` active samples"; for ``r > dm`` the paper's form is *not* valid
  (a row may hold more than ``m`` weights);
* Lemma B.4: ``r < dm`` gives no match.

Search
------
:func:`brute_force_decide` enumerates all ``2^(km)`` patterns (square nonsingular
systems are solved directly, everything else by the margin LP in ``(w, t)`` with the
equalities as constraints; patterns whose equalities have a least-squares residual above
``SCREEN_RESIDUAL`` skip the LP). It shares no search code with the exact decision.
:func:`exact_decide` is a depth-first branch and bound over samples: after fixing
``P_1 .. P_s`` it tests the consistency of their ``ds`` stacked equations and writes
their solution set as ``w0 + N u`` (one SVD of the stacked matrix per node, recomputed
from the data at every node so that rounding does not compound with depth; ``N``
orthonormal), then tests strict feasibility of the sign constraints of samples
``1 .. s``: first at the parent's point projected on the new set, then by the margin LP
in ``(u, t)`` (if its optimum looks feasible but its -- possibly far-away -- vertex does
not show it, once more with ``|u| <= LP_BOX * max(1, |w0|)`` for a nearer point).
Infeasible branches are pruned (constraints only grow down the tree). A node whose
margin is in the undecided band is still expanded (deeper samples can make every leaf
below it decisively infeasible; only leaves count as undecided), so the exact search
and the brute force classify every trial alike; a node whose rank or consistency test is
ambiguous is not expanded and marks the trial ambiguous. Candidate patterns of a sample
are tried in order of Hamming distance to the sign pattern at the parent's point.

LPs are solved by HiGHS with feasibility tolerances ``LP_TOL``: through
:func:`scipy.optimize.linprog` in the brute force, and in the exact search through
scipy's bundled HiGHS bindings directly (``LP_BACKEND``; 4x less overhead per LP,
falls back to ``linprog`` if the private module moves).
"""
from __future__ import annotations

import itertools
from fractions import Fraction
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from .._config import AMBIGUOUS, DEFAULT_TOLERANCES, MATCH, NO_MATCH
from ..allocation import Allocation
from ..models.shallow_relu import ShallowReLU

#: relative margin (in units of the size ``S`` of the terms of ``z``) a pattern needs to
#: count as strictly feasible; ``|t*| <= MARGIN_TOL * S`` is undecided
MARGIN_TOL = 1e-9
#: entries of ``W1 X`` with ``|z| <= BOUNDARY_TOL * S`` are "boundary" entries, where the
#: activation pattern is not checked
BOUNDARY_TOL = 1e-12
#: relative error allowed between the student's forward pass and the teacher's outputs
RESIDUAL_TOL = 1e-9
#: HiGHS primal/dual feasibility tolerance of the margin LPs
LP_TOL = 1e-10
#: brute force skips the LP of a pattern whose equalities have a least-squares residual
#: above this fraction of the size of their terms (far above the rounding of a consistent
#: system, far below the residual of a generic inconsistent one)
SCREEN_RESIDUAL = 1e-6
#: half-width of the box (times ``max(1, |w0|)``) of the first margin LP of a node
LP_BOX = 1e3
#: largest ``k m`` :func:`brute_force_decide` accepts
BRUTE_FORCE_MAX_KM = 16
#: a trial's right-hand sides count as generic (lemma pruning valid) if the smallest
#: singular value of ``Hc`` is at least this fraction of the largest
GENERIC_RANK_TOL = 1e-9

#: thresholds of the rank-revealing consistency tests of a node's stacked equations
#: (singular values relative to the largest, residual as in :class:`fastmp.Tolerances`):
#: the linear estimator's defaults. Measured on 446,000 singular values of the search
#: (q = 3..6, n = 4..8, d = 1..2, k m = 8..16, 840 trials): structural zeros below 1e-15,
#: true ones above 1e-8; residuals of consistent systems below 1e-14, of inconsistent
#: ones above 1e-8.
RELU_TOLERANCES = DEFAULT_TOLERANCES

_LP_OPTIONS = dict(primal_feasibility_tolerance=LP_TOL, dual_feasibility_tolerance=LP_TOL)

# outcome of one node / pattern
_INFEASIBLE, _FEASIBLE, _UNSURE = 0, 1, 2


# ----------------------------------------------------------------------------- system
@dataclass
class ReluTrialSystem:
    """One trial's activation-pattern system (all arrays float64 unless noted).

    ``z_ij(w) = A[i, j] @ w + b[i, j]`` is ``(W1 x_i)_{used[j]}``; the equations of
    sample ``i`` under pattern ``P_i`` are ``V @ (P_i * z_i(w)) = rhs[i]``.
    """

    model: ShallowReLU
    mask: np.ndarray          # (n, q) bool
    m: int
    seed: int
    trial: int
    used: np.ndarray          # (k,) int: used rows of W1
    var: np.ndarray           # (r, 2) int: (row, col) of each learnable weight, row-major
    var_row: np.ndarray       # (r,) int: index into ``used`` of each learnable weight
    r_row: np.ndarray         # (k,) int: learnable weights per used row
    A: np.ndarray             # (m, k, r)
    b: np.ndarray             # (m, k): frozen part of z
    V: np.ndarray             # (d, k): W2[:, used]
    rhs: np.ndarray           # (m, d)
    rhs_scale: np.ndarray     # (m,): size of the terms rhs[i] was computed from
    ystar: np.ndarray         # (d, m): the teacher's outputs
    teacher: dict = field(repr=False)
    student: dict = field(repr=False)
    X: np.ndarray = field(repr=False)
    #: the right-hand sides have a density (Hc full column rank): lemma pruning valid
    generic: bool = True
    hc_rank_ratio: float = 1.0
    #: floor of the scale ``S`` of ``z``: the size of its terms with every learnable
    #: weight at its typical magnitude ``1/sqrt(q)`` (Appendix E.3); keeps "relative to
    #: S" meaningful when the terms vanish (all-learnable rows at ``w = 0``)
    z_floor: float = 1.0
    #: floor of the scale of the right-hand sides (same idea)
    f_floor: float = 1.0

    @property
    def k(self):
        return int(self.used.size)

    @property
    def r(self):
        return int(self.var.shape[0])

    @property
    def d(self):
        return int(self.V.shape[0])

    def z(self, w):
        """``(m, k)`` values ``z_ij(w)`` and the sizes of their terms."""
        w = np.asarray(w, dtype=np.float64)
        Z = self.A @ w + self.b
        S = np.abs(self.A) @ np.abs(w) + np.abs(self.b)
        return Z, S

    def equations(self, P):
        """``(E, f)`` of the full pattern ``P`` ((m, k) bool): ``E w = f``, ``E`` is
        ``dm x r`` (sample-major rows)."""
        P = np.asarray(P, dtype=np.float64)
        VP = self.V[None, :, :] * P[:, None, :]                  # (m, d, k)
        E = np.einsum("idk,ikr->idr", VP, self.A).reshape(-1, self.r)
        f = (self.rhs - np.einsum("idk,ik->id", VP, self.b)).ravel()
        return E, f

    def weights(self, w):
        """The student's ``W1`` with the learnable entries set to ``w``."""
        W1 = self.student["W1"].copy()
        W1[self.var[:, 0], self.var[:, 1]] = w
        return W1


def _check_mask(model, mask):
    if not isinstance(model, ShallowReLU):
        raise TypeError(f"relu: model must be a ShallowReLU, got {type(model).__name__}")
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != model.param_shapes["W1"]:
        raise ValueError(f"relu: mask must be a bool array of shape {model.param_shapes['W1']} "
                         f"(W1), got {mask.dtype} {mask.shape}")
    if not mask.any():
        raise ValueError("relu: empty allocation")
    return mask


def relu_trial_system(model, mask, m, seed, trial):
    """The activation-pattern system of trial ``trial`` (draws of
    :meth:`~fastmp.models.base.Model.trial_draws`) for the ``W1`` mask ``mask``."""
    teacher, student, X = model.trial_draws(seed, trial, int(m))
    return relu_system_from_draws(model, mask, teacher, student, X, seed=seed, trial=trial)


def relu_system_from_draws(model, mask, teacher, student, X, seed=-1, trial=-1):
    """The activation-pattern system for explicit draws: ``teacher`` and ``student``
    weight dicts (``"W1"``, ``"W2"``; the student's entries at ``mask`` are ignored) and
    inputs ``X`` (``q x m``)."""
    mask = _check_mask(model, mask)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != model.q:
        raise ValueError(f"relu: X must have shape (q, m) = ({model.q}, m), got {X.shape}")
    m = X.shape[1]
    teacher = {n: np.asarray(teacher[n], dtype=np.float64) for n in ("W1", "W2")}
    student = {n: np.asarray(student[n], dtype=np.float64) for n in ("W1", "W2")}
    W1s, W2s = student["W1"], student["W2"]
    rows = mask.any(axis=1)
    used = np.flatnonzero(rows)
    unused = np.flatnonzero(~rows)
    vi, vj = np.nonzero(mask)
    var = np.stack([vi, vj], axis=1).astype(np.int64)
    pos = np.full(model.n, -1, dtype=np.int64)
    pos[used] = np.arange(used.size)
    var_row = pos[vi]
    r_row = mask[used].sum(axis=1).astype(np.int64)
    k, r = used.size, vi.size
    frozen = np.where(mask, 0.0, W1s)[used]                       # (k, q)
    b = (frozen @ X).T.copy()                                     # (m, k)
    A = np.zeros((m, k, r))
    A[:, var_row, np.arange(r)] = X[vj, :].T                      # A[i, row(l), l] = X[col(l), i]
    V = W2s[:, used].copy()
    ystar = model.forward(teacher, X)
    Hu = np.maximum(W1s[unused] @ X, 0.0)
    rhs = (ystar - W2s[:, unused] @ Hu).T.copy()                  # (m, d)
    Ht = np.maximum(teacher["W1"] @ X, 0.0)
    terms = (np.abs(teacher["W2"]) @ Ht + np.abs(W2s[:, unused]) @ Hu)   # (d, m)
    rhs_scale = np.maximum(terms.max(axis=0), np.abs(rhs).max(axis=1))
    Hc = np.vstack([Ht, Hu])
    if Hc.shape[0] < m:
        ratio = 0.0
    else:
        sv = np.linalg.svd(Hc, compute_uv=False)
        ratio = float(sv[m - 1] / sv[0]) if sv[0] > 0 else 0.0
    z_floor = float((np.abs(b) + np.abs(A).sum(axis=2) / np.sqrt(model.q)).max())
    z_floor = max(z_floor, 1e-300)
    f_floor = max(float(rhs_scale.max()), float(np.abs(V).max()) * z_floor, 1e-300)
    return ReluTrialSystem(model=model, mask=mask, m=m, seed=int(seed), trial=int(trial),
                           used=used, var=var, var_row=var_row, r_row=r_row, A=A, b=b, V=V,
                           rhs=rhs, rhs_scale=rhs_scale, ystar=ystar, teacher=teacher,
                           student=student, X=X, generic=ratio >= GENERIC_RANK_TOL,
                           hc_rank_ratio=ratio, z_floor=z_floor, f_floor=f_floor)


# ----------------------------------------------------------------------------- checks
def verify_match(system, pattern, w):
    """Check a candidate on the weights themselves (forward pass of the model).

    Returns a dict: ``ok`` (verified strict match), ``rel_err`` (max |Y - Y*| over the
    size of the terms of ``Y``), ``consistent`` (pattern of ``W1 X`` equals ``pattern``
    off the boundary band), ``boundary`` (number of entries with ``|z| <= BOUNDARY_TOL *
    S``), ``margin`` (``min (2P-1) z / S``).
    """
    P = np.asarray(pattern, dtype=bool)
    W1 = system.weights(w)
    W2 = system.student["W2"]
    X = system.X
    Y = system.model.forward({"W1": W1, "W2": W2}, X)
    H = np.maximum(W1 @ X, 0.0)
    yscale = max(float((np.abs(W2) @ H).max()), float(np.abs(system.ystar).max()), system.f_floor)
    rel_err = float(np.abs(Y - system.ystar).max() / yscale)
    Z = (W1[system.used] @ X).T                                   # (m, k)
    S = max(float((np.abs(W1[system.used]) @ np.abs(X)).max()), system.z_floor)
    boundary = np.abs(Z) <= BOUNDARY_TOL * S
    consistent = bool(np.all(((Z > 0) == P) | boundary))
    margin = float(np.min(np.where(P, Z, -Z)) / S)
    ok = rel_err <= RESIDUAL_TOL and consistent and margin > MARGIN_TOL
    return {"ok": bool(ok), "rel_err": rel_err, "consistent": consistent,
            "boundary": int(boundary.sum()), "margin": margin}


def _qmat(a):
    """Exact ``fmpq_mat`` of a float array (doubles are dyadic rationals)."""
    from flint import fmpq, fmpq_mat

    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    return fmpq_mat(a.shape[0], a.shape[1],
                    [fmpq(*float(x).as_integer_ratio()) for x in a.ravel()])


def _qrelu(M):
    from flint import fmpq_mat

    return fmpq_mat(M.nrows(), M.ncols(),
                    [M[i, j] if M[i, j] > 0 else 0 for i in range(M.nrows())
                     for j in range(M.ncols())])


def certify_match_exact(system, pattern, w):
    """Exact certificate of a candidate match (Lemmas D.1/D.2), in rational arithmetic.

    Every draw of the trial is a double, i.e. a dyadic rational, so the trial's system
    (D.1) is rebuilt exactly (python-flint ``fmpq_mat``). The float candidate ``w`` is
    moved onto the exact affine solution set of ``E(P) w = f(P)`` (``P = pattern``):
    ``w_e = w + E_I^T (E_I E_I^T)^{-1} (f_I - E_I w)`` over a set ``I`` of linearly
    independent rows (numerical rank of ``E``; every other row must then hold exactly).
    The certificate holds iff, at ``w_e``, the sign constraints (D.2) hold exactly
    (``z_ij > 0`` where ``P_ij = 1``, ``z_ij <= 0`` where ``P_ij = 0``) **and** the
    student's forward pass ``W2 relu(W1(w_e) X)`` equals the teacher's outputs exactly.
    ``w_e`` is within rounding of ``w``, so a candidate with a clear float margin always
    certifies; one whose constraints are violated, or which sits on the wrong side of a
    sign boundary, never does.

    Returns a dict: ``ok``, ``reason`` (why not), ``w_exact`` (list of ``fmpq`` or
    ``None``), ``min_active`` (smallest ``z`` of an active entry, as a float).
    """
    from flint import fmpq_mat
    import scipy.linalg

    s = system
    P = np.asarray(pattern, dtype=bool)
    w = np.asarray(w, dtype=np.float64)
    out = {"ok": False, "reason": "", "w_exact": None, "min_active": None}
    if P.shape != (s.m, s.k) or w.shape != (s.r,):
        raise ValueError(f"certify_match_exact: pattern must be ({s.m}, {s.k}) and w ({s.r},), "
                         f"got {P.shape} and {w.shape}")
    if not np.all(np.isfinite(w)):
        out["reason"] = "non-finite weights"
        return out
    Xq = _qmat(s.X)
    W2s = _qmat(s.student["W2"])
    ystar = _qmat(s.teacher["W2"]) * _qrelu(_qmat(s.teacher["W1"]) * Xq)   # (d, m)
    # exact E(P), f(P): z_ij(w) = (W1(w) x_i)_{used j}
    E_f, _ = s.equations(P)
    rho = np.linalg.svd(E_f, compute_uv=False)
    rank = int(np.count_nonzero(rho > rho[0] * 1e-12)) if rho.size and rho[0] > 0 else 0
    wq = _qmat(w[None, :]).transpose()                                    # (r, 1)
    if rank:
        _, _, piv = scipy.linalg.qr(E_f.T, pivoting=True, mode="economic")
        rows = np.sort(piv[:rank])
    else:
        rows = np.zeros(0, dtype=int)
    frozen = np.where(s.mask, 0.0, s.student["W1"])
    unused = np.setdiff1d(np.arange(s.model.n), s.used)
    Hu = _qrelu(_qmat(frozen[unused]) * Xq) if unused.size else None
    B = _qmat(frozen[s.used]) * Xq                                        # (k, m)
    V = _qmat(s.V)
    d, k, r = s.d, s.k, s.r
    from flint import fmpq
    Xl = [[Xq[a, i] for i in range(s.m)] for a in range(s.model.q)]
    Eq = fmpq_mat(d * s.m, r)
    fq = fmpq_mat(d * s.m, 1)
    for i in range(s.m):
        for a in range(d):
            row = i * d + a
            acc = ystar[a, i]
            if Hu is not None:
                for u, jj in enumerate(unused):
                    acc -= W2s[a, int(jj)] * Hu[u, i]
            for j in range(k):
                if P[i, j]:
                    acc -= V[a, j] * B[j, i]
            fq[row, 0] = acc
            for c in range(r):
                j = int(s.var_row[c])
                if P[i, j]:
                    Eq[row, c] = V[a, j] * Xl[int(s.var[c, 1])][i]
    if rows.size:
        EI = fmpq_mat(rows.size, r, [Eq[int(i), c] for i in rows for c in range(r)])
        fI = fmpq_mat(rows.size, 1, [fq[int(i), 0] for i in rows])
        try:
            lam = (EI * EI.transpose()).solve(fI - EI * wq)
        except ZeroDivisionError:
            out["reason"] = "selected rows of E(P) are singular in exact arithmetic"
            return out
        we = wq + EI.transpose() * lam
    else:
        we = wq
    if Eq * we != fq:
        out["reason"] = "E(P) w = f(P) has no exact solution near w (rows beyond its rank)"
        return out
    # exact forward pass of the student with the learnable entries at w_e
    W1 = [[fmpq(*float(x).as_integer_ratio()) for x in row] for row in s.student["W1"]]
    for c in range(r):
        W1[int(s.var[c, 0])][int(s.var[c, 1])] = we[c, 0]
    W1q = fmpq_mat(W1)
    Z = W1q * Xq                                                          # (n, m)
    min_active = None
    for j in range(k):
        for i in range(s.m):
            zij = Z[int(s.used[j]), i]
            if P[i, j]:
                if not zij > 0:
                    out["reason"] = f"sign constraint (D.2) fails at sample {i}, unit {j}"
                    return out
                min_active = zij if min_active is None or zij < min_active else min_active
            elif zij > 0:
                out["reason"] = f"sign constraint (D.2) fails at sample {i}, unit {j}"
                return out
    if W2s * _qrelu(Z) != ystar:
        out["reason"] = "forward pass differs from the teacher's outputs"
        return out
    out.update(ok=True, w_exact=[we[c, 0] for c in range(r)],
               min_active=None if min_active is None
               else float(Fraction(int(min_active.p), int(min_active.q))))
    return out


def lemma_prunes(system, pattern):
    """Name of the lemma that rules out the full pattern (``"D.3"``, ``"D.4"``, ``"B.4"``)
    or ``None``. The rules are probability-one statements, valid only when
    ``system.generic``; this function applies them regardless (tests use it to check
    that they never remove a feasible pattern in generic trials)."""
    P = np.asarray(pattern, dtype=bool)
    d, m, r = system.d, system.m, system.r
    if r < d * m:
        return "B.4"
    if np.any(P.sum(axis=1) < d):
        return "D.3"
    if np.maximum(system.r_row - P.sum(axis=0), 0).sum() > r - d * m:
        return "D.4"
    return None


def _rank_split(sv, ref, tol):
    """Numerical rank of singular values ``sv`` relative to ``ref``: ``(rank, rho_min,
    ambiguous)``."""
    if ref <= 0.0 or sv.size == 0:
        return 0, 1.0, False
    rho = sv / ref
    rank = int(np.count_nonzero(rho >= tol.rank_hi))
    ambiguous = bool(np.any((rho > tol.rank_lo) & (rho < tol.rank_hi)))
    rho_min = float(rho[rank - 1]) if rank else 1.0
    return rank, rho_min, ambiguous


def _residual_class(res, tol):
    if res <= tol.res_lo:
        return _FEASIBLE
    if res >= tol.res_hi:
        return _INFEASIBLE
    return _UNSURE


def _margin(system, P, w, rows):
    """``(margin, S)``: ``min (2P-1) z`` over the samples ``rows`` at ``w`` and the size of
    the terms of those ``z``."""
    A, b = system.A[rows], system.b[rows]
    Z = A @ w + b
    S = float((np.abs(A) @ np.abs(w) + np.abs(b)).max())
    return float(np.min(np.where(P, Z, -Z))), max(S, system.z_floor)


def _classify_margin(margin, t_star, S):
    if margin > MARGIN_TOL * S:
        return _FEASIBLE
    if t_star < -MARGIN_TOL * S:
        return _INFEASIBLE
    return _UNSURE


def _highs_core():
    """scipy's bundled HiGHS bindings (private module), or ``None``. Calling them
    directly skips :func:`~scipy.optimize.linprog`'s input checks and option parsing,
    which cost three quarters of the time of these tiny LPs."""
    try:
        import scipy.optimize._highspy._core as core
        opts = core.HighsOptions()
        opts.output_flag = False
        opts.log_to_console = False
        opts.primal_feasibility_tolerance = LP_TOL
        opts.dual_feasibility_tolerance = LP_TOL
        core.HighsLp, core._Highs, core.MatrixFormat.kColwise, core.kHighsInf  # noqa: B018
        core.HighsModelStatus.kOptimal  # noqa: B018
    except Exception:  # pragma: no cover - other scipy layouts
        return None
    return core, opts


_CORE = _highs_core()
#: how the margin LPs of :func:`exact_decide` are solved: ``"highs-core"`` (scipy's
#: HiGHS bindings called directly) or ``"linprog"``; same solver, same tolerances.
#: :func:`brute_force_decide` always uses :func:`scipy.optimize.linprog`.
LP_BACKEND = "highs-core" if _CORE is not None else "linprog"


def _margin_lp(G, h, n_free, bound=None, backend=None):
    """``max t`` s.t. ``G u + h >= t`` (rows), ``t <= 1`` (and ``|u_l| <= bound``);
    returns ``(t*, u*)`` or ``(None, None)`` if HiGHS did not report an optimum."""
    backend = LP_BACKEND if backend is None else backend
    lo, hi = (None, None) if bound is None else (-float(bound), float(bound))
    n_rows = G.shape[0]
    A_ub = np.hstack([-G, np.ones((n_rows, 1))])
    c = np.zeros(n_free + 1)
    c[-1] = -1.0
    if backend == "linprog" or _CORE is None:
        bounds = [(lo, hi)] * n_free + [(None, 1.0)]
        res = linprog(c, A_ub=A_ub, b_ub=h, bounds=bounds, method="highs", options=_LP_OPTIONS)
        if res.status != 0:
            return None, None
        return float(res.x[-1]), res.x[:-1]
    core, opts = _CORE
    inf = core.kHighsInf
    At = A_ub.T
    cols, rows = np.nonzero(At)                       # column-major (CSC) order
    lp = core.HighsLp()
    lp.num_col_ = n_free + 1
    lp.num_row_ = n_rows
    lp.a_matrix_.num_col_ = n_free + 1
    lp.a_matrix_.num_row_ = n_rows
    lp.a_matrix_.format_ = core.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate(
        [[0], np.cumsum(np.bincount(cols, minlength=n_free + 1))]).astype(np.int32)
    lp.a_matrix_.index_ = rows.astype(np.int32)
    lp.a_matrix_.value_ = At[cols, rows]
    lp.col_cost_ = c
    upper = np.full(n_free + 1, inf if hi is None else hi)
    upper[-1] = 1.0
    lower = np.full(n_free + 1, -inf if lo is None else lo)
    lower[-1] = -inf
    lp.col_lower_ = lower
    lp.col_upper_ = upper
    lp.row_lower_ = np.full(n_rows, -inf)
    lp.row_upper_ = np.minimum(np.asarray(h, dtype=np.float64), inf)
    highs = core._Highs()
    highs.passOptions(opts)
    highs.passModel(lp)
    highs.run()
    if highs.getModelStatus() != core.HighsModelStatus.kOptimal:
        return None, None
    x = np.array(highs.getSolution().col_value)
    return float(x[-1]), x[:-1]


# ----------------------------------------------------------------------------- decisions
class Decision(tuple):
    """Result of a decision: unpacks as ``(matched, pattern, w)`` (brute force) or
    ``(matched, pattern, w, lps)`` (exact search); more in the attributes ``status``
    (MATCH / NO_MATCH / AMBIGUOUS), ``lps``, ``patterns`` (patterns or search nodes
    examined), ``undecided`` (patterns/nodes in an ambiguous band), ``boundary``
    (boundary entries of the returned or best undecided point), ``margin``, ``verify``
    (the :func:`verify_match` record of the returned point), ``feasible`` (with
    ``find_all``: every strictly feasible pattern as a tuple of 0/1 tuples) and
    ``pruned`` (patterns/branches removed by each lemma)."""

    def __new__(cls, items, **attrs):
        obj = super().__new__(cls, items)
        obj.__dict__.update(attrs)
        return obj


def _key(P):
    return tuple(tuple(int(v) for v in row) for row in np.asarray(P, dtype=bool))


def _pattern_from_bits(bits, m, k):
    return np.array(bits, dtype=bool).reshape(m, k)


def _brute_pattern(system, P, tol):
    """Decide one full pattern the naive way. Returns ``(outcome, w, margin, lps)``."""
    E, f = system.equations(P)
    M, r = E.shape
    all_rows = np.arange(system.m)
    if M == r:
        sv = np.linalg.svd(E, compute_uv=False)
        if sv[0] > 0 and sv[-1] / sv[0] >= tol.rank_hi:
            w = np.linalg.solve(E, f)
            margin, S = _margin(system, P, w, all_rows)
            return _classify_margin(margin, margin, S), w, margin / S, 0
    # screen: equalities far from consistent (least-squares residual above
    # SCREEN_RESIDUAL of the rhs scale) make the LP infeasible; skip it
    w_ls = np.linalg.lstsq(E, f, rcond=None)[0]
    fscale = max(float(np.abs(f).max()), system.f_floor, float((np.abs(E) @ np.abs(w_ls)).max()))
    if np.abs(E @ w_ls - f).max() > SCREEN_RESIDUAL * fscale:
        return _INFEASIBLE, None, None, 0
    # general case: margin LP in (w, t) with the equalities; the unboxed LP decides
    # infeasibility, a boxed one looks for a nearer point if needed (see _Search._node)
    c = np.zeros(r + 1)
    c[-1] = -1.0
    Pf = np.where(P, 1.0, -1.0)                                   # (m, k)
    G = (Pf[:, :, None] * system.A).reshape(-1, r)
    h = (Pf * system.b).ravel()
    A_ub = np.hstack([-G, np.ones((G.shape[0], 1))])
    A_eq = np.hstack([E, np.zeros((M, 1))])
    box = LP_BOX * max(1.0, float(np.abs(w_ls).max()))
    lps = 0
    unsure_w = None
    for bound in (None, box):
        bounds = [(None if bound is None else -bound, bound)] * r + [(None, 1.0)]
        res = linprog(c, A_ub=A_ub, b_ub=h, A_eq=A_eq, b_eq=f, bounds=bounds,
                      method="highs", options=_LP_OPTIONS)
        lps += 1
        if res.status != 0:
            if bound is None and res.status == 2:
                return _INFEASIBLE, None, None, lps
            continue
        w, t_star = res.x[:-1], float(res.x[-1])
        # put the point back on the equalities (HiGHS meets them to its tolerance only)
        w = w + np.linalg.lstsq(E, f - E @ w, rcond=None)[0]
        fscale = max(float(np.abs(f).max()), system.f_floor,
                     float((np.abs(E) @ np.abs(w)).max()))
        eq_res = float(np.abs(E @ w - f).max() / fscale)
        margin, S = _margin(system, P, w, all_rows)
        if eq_res <= RESIDUAL_TOL and margin > MARGIN_TOL * S:
            return _FEASIBLE, w, margin / S, lps
        if bound is None:
            if t_star < -MARGIN_TOL * S:
                return _INFEASIBLE, None, margin / S, lps
            unsure_w = w
    return _UNSURE, unsure_w, None, lps


def brute_force_decide(system, find_all=False, tolerances=None):
    """Decide a trial by enumerating all ``2^(k m)`` activation patterns (``k m <= 16``).

    Returns a :class:`Decision` unpacking as ``(matched, pattern, w)``. With
    ``find_all`` every pattern is examined and ``.feasible`` lists the strictly feasible
    (verified) ones; otherwise the search stops at the first verified match.
    """
    tol = RELU_TOLERANCES if tolerances is None else tolerances
    k, m = system.k, system.m
    assert k * m <= BRUTE_FORCE_MAX_KM, f"brute force is for k*m <= {BRUTE_FORCE_MAX_KM}"
    lps = undecided = examined = 0
    found = None
    feasible = []
    best_unsure = None
    for bits in itertools.product((0, 1), repeat=k * m):
        P = _pattern_from_bits(bits, m, k)
        examined += 1
        outcome, w, margin, lp = _brute_pattern(system, P, tol)
        lps += lp
        if outcome == _FEASIBLE:
            ver = verify_match(system, P, w)
            if not ver["ok"]:
                outcome = _UNSURE
            else:
                feasible.append(_key(P))
                if found is None:
                    found = (P, w, ver)
                if not find_all:
                    break
        if outcome == _UNSURE:
            undecided += 1
            if best_unsure is None and w is not None:
                best_unsure = (P, w)
    return _finish((), found, undecided, best_unsure, system, lps=lps, patterns=examined,
                   feasible=feasible, pruned={})


def _finish(extra, found, undecided, best_unsure, system, **attrs):
    if found is not None:
        P, w, ver = found
        return Decision((True, P, w) + extra, status=MATCH, undecided=undecided,
                        boundary=ver["boundary"], margin=ver["margin"], verify=ver, **attrs)
    status = AMBIGUOUS if undecided else NO_MATCH
    boundary, margin, ver = 0, None, None
    if best_unsure is not None:
        ver = verify_match(system, *best_unsure)
        boundary, margin = ver["boundary"], ver["margin"]
    return Decision((False, None, None) + extra, status=status, undecided=undecided,
                    boundary=boundary, margin=margin, verify=ver, **attrs)


class _Search:
    """Depth-first branch and bound over samples (see the module docstring)."""

    def __init__(self, system, find_all, lemmas, tol):
        self.s = system
        self.find_all = find_all
        self.tol = tol
        k, d = system.k, system.d
        self.lemmas = bool(lemmas and system.generic)
        cand = np.array(list(itertools.product((0, 1), repeat=k)), dtype=bool)
        self.pruned = {"D.3": 0, "D.4": 0, "B.4": 0}
        self.n_d3 = 0
        if self.lemmas:
            keep = cand.sum(axis=1) >= d
            self.n_d3 = int(np.count_nonzero(~keep))
            cand = cand[keep]
        self.cand = cand
        self.order = np.arange(system.m)
        self.lps = 0
        self.nodes = 0
        self.undecided = 0
        self.best_unsure = None
        self.found = None
        self.feasible = []

    def run(self):
        s = self.s
        if self.lemmas and s.r < s.d * s.m:
            self.pruned["B.4"] += 1
            return
        self._expand(0, np.zeros((s.m, s.k), dtype=bool), np.zeros(s.r))

    def _d4_ok(self, P, depth):
        s = self.s
        if not self.lemmas:
            return True
        counts = P[self.order[:depth]].sum(axis=0)
        rem = s.m - depth
        return np.maximum(s.r_row - counts - rem, 0).sum() <= s.r - s.d * s.m

    def _expand(self, depth, P, w_base):
        """Try every candidate pattern of sample ``order[depth]`` below the node
        (``P`` rows of earlier samples fixed; ``w_base`` the node's point). Returns
        True to stop the search."""
        s = self.s
        i = self.order[depth]
        fixed = self.order[:depth + 1]
        self.pruned["D.3"] += self.n_d3
        # candidates nearest to the sign pattern at the parent's point first
        z_i = s.A[i] @ w_base + s.b[i]
        dist = np.count_nonzero(self.cand != (z_i > 0), axis=1)
        for c in np.argsort(dist, kind="stable"):
            Pi = self.cand[c]
            P[i] = Pi
            if not self._d4_ok(P, depth + 1):
                self.pruned["D.4"] += 1
                continue
            self.nodes += 1
            outcome, w_new, expandable = self._node(P, fixed, w_base)
            if outcome == _INFEASIBLE:
                continue
            if outcome == _UNSURE:
                if expandable and depth + 1 < s.m:
                    # margin in the band (e.g. solutions on a boundary): deeper samples
                    # can still make every leaf below decisively infeasible
                    if self._expand(depth + 1, P, w_new):
                        return True
                    continue
                self.undecided += 1
                if self.best_unsure is None and w_new is not None:
                    self.best_unsure = (P.copy(), w_new)
                continue
            if depth + 1 == s.m:
                ver = verify_match(s, P, w_new)
                if not ver["ok"]:
                    self.undecided += 1
                    if self.best_unsure is None:
                        self.best_unsure = (P.copy(), w_new)
                    continue
                self.feasible.append(_key(P))
                if self.found is None:
                    self.found = (P.copy(), w_new, ver)
                if not self.find_all:
                    return True
            elif self._expand(depth + 1, P, w_new):
                return True
        P[i] = False
        return False

    def _node(self, P, fixed, w_hint):
        """Strict feasibility of the equations and sign constraints of the samples
        ``fixed`` under their patterns ``P[fixed]``. The affine solution set
        ``w0 + N u`` is computed from the stacked equations (one SVD, no state carried
        down the tree, so rounding does not compound with depth). Returns
        ``(outcome, point, expandable)``."""
        s, tol = self.s, self.tol
        Pf = P[fixed]
        Af, bf = s.A[fixed], s.b[fixed]
        VP = s.V[None, :, :] * Pf[:, None, :]                      # (s, d, k)
        E = np.einsum("idk,ikr->idr", VP, Af).reshape(-1, s.r)
        VPb = np.einsum("idk,ik->id", VP, bf)
        f = (s.rhs[fixed] - VPb).ravel()
        fscale = max(float(np.abs(f).max()), s.f_floor, float(s.rhs_scale[fixed].max()),
                     float(np.einsum("idk,ik->id", np.abs(VP), np.abs(bf)).max()))
        U, sv, Vt = np.linalg.svd(E, full_matrices=True)
        rank, rho_min, amb = _rank_split(sv, float(sv[0]) if sv.size else 0.0, tol)
        if amb:
            return _UNSURE, None, False
        tail = U[:, rank:].T @ f
        cls = _residual_class(rho_min * float(np.linalg.norm(tail)) / fscale, tol)
        if cls != _FEASIBLE:
            return cls, None, False
        w0 = Vt[:rank].T @ ((U[:, :rank].T @ f) / sv[:rank])
        N = Vt[rank:].T
        n_free = N.shape[1]
        # the parent's point projected on the new affine set
        w_c = w0 + N @ (N.T @ (w_hint - w0)) if n_free else w0
        margin, S = _margin(s, Pf, w_c, fixed)
        if margin > MARGIN_TOL * S:
            return _FEASIBLE, w_c, True
        if n_free == 0:
            return _classify_margin(margin, margin, S), w_c, True
        sign = np.where(Pf, 1.0, -1.0)                             # (s, k)
        G = (sign[:, :, None] * Af).reshape(-1, s.r) @ N
        h = (sign * (Af @ w0 + bf)).ravel()
        # the unboxed LP decides infeasibility; if its optimum looks feasible but the
        # point does not show it (unbounded optimal faces make HiGHS return far-away
        # vertices whose huge terms swamp the margin), a boxed LP looks for a nearer one
        box = LP_BOX * max(1.0, float(np.abs(w0).max()))
        for bound in (None, box):
            self.lps += 1
            t_star, u = _margin_lp(G, h, n_free, bound=bound)
            if t_star is None:
                continue
            point = w0 + N @ u
            margin, S = _margin(s, Pf, point, fixed)
            if margin > MARGIN_TOL * S:
                return _FEASIBLE, point, True
            if bound is None and t_star < -MARGIN_TOL * S:
                return _INFEASIBLE, None, False
        return _UNSURE, w_c, True


def exact_decide(system, find_all=False, lemmas=True, tolerances=None):
    """Decide a trial exactly by branch and bound over samples with Lemma D.3/D.4
    pruning (in generic trials, see the module docstring).

    Returns a :class:`Decision` unpacking as ``(matched, pattern, w, lps)``; with
    ``find_all`` the whole tree is searched and ``.feasible`` lists every strictly
    feasible (verified) pattern.
    """
    tol = RELU_TOLERANCES if tolerances is None else tolerances
    search = _Search(system, find_all, lemmas, tol)
    search.run()
    return _finish((search.lps,), search.found, search.undecided, search.best_unsure, system,
                   lps=search.lps, patterns=search.nodes, feasible=search.feasible,
                   pruned=search.pruned, lemmas=search.lemmas)


# ----------------------------------------------------------------------------- driver
def run_relu_exact(model, allocation, m, trials, seed, max_patterns=2**20, progress=None,
                   tolerances=None):
    """Per-trial statuses of the exact activation-pattern decision for an allocation
    confined to ``W1`` of a :class:`~fastmp.ShallowReLU` (trial ``t`` uses the draws of
    ``model.trial_draws(seed, t, m)``).

    Raises ``ValueError`` for allocations not confined to ``W1`` and when the search space
    ``2^(k m)`` exceeds ``max_patterns``. Returns ``(status, info)``; ``info`` has the
    method name ``"relu-exact"``, search nodes and LPs (totals and per trial), the number
    of undecided patterns, trials decided on a sign boundary, trials with non-generic
    right-hand sides (no lemma pruning) and the time per trial.
    """
    if not isinstance(model, ShallowReLU):
        raise TypeError(f"run_relu_exact: model must be a ShallowReLU, got {type(model).__name__}")
    if not isinstance(allocation, Allocation):
        raise TypeError("run_relu_exact: allocation must be a fastmp.Allocation")
    if allocation.model != model:
        raise ValueError(f"run_relu_exact: allocation is for {allocation.model!r}, not {model!r}")
    if allocation.params != ("W1",):
        raise ValueError("run_relu_exact: the exact activation-pattern decision needs an "
                         f"allocation confined to W1; this one uses {', '.join(allocation.params)}"
                         + (" (an allocation in W2 alone is linear: use method 'linear')"
                            if allocation.params == ("W2",) else ""))
    m, trials, seed = int(m), int(trials), int(seed)
    if m < 1 or trials < 1:
        raise ValueError("run_relu_exact: m and trials must be >= 1")
    mask = allocation.mask("W1")
    k = int(np.count_nonzero(mask.any(axis=1)))
    if k * m > 62 or 2 ** (k * m) > max_patterns:
        raise ValueError(
            f"run_relu_exact: k*m = {k}*{m} = {k * m} gives 2^{k * m} activation patterns, "
            f"more than max_patterns = {max_patterns}; the exact search is for small k*m "
            "(use fewer samples or used rows, or raise max_patterns)")
    status = np.empty(trials, dtype=np.int8)
    nodes = np.zeros(trials, dtype=np.int64)
    lps = np.zeros(trials, dtype=np.int64)
    undecided = boundary_trials = non_generic = 0
    t0 = time.perf_counter()
    for t in range(trials):
        system = relu_trial_system(model, mask, m, seed, t)
        dec = exact_decide(system, tolerances=tolerances)
        status[t] = dec.status
        nodes[t], lps[t] = dec.patterns, dec.lps
        undecided += dec.undecided
        non_generic += not system.generic
        if dec.status == AMBIGUOUS and dec.boundary:
            boundary_trials += 1
        if progress is not None:
            progress(1)
    seconds = time.perf_counter() - t0
    info = {
        "method": "relu-exact",
        "k": k,
        "search_space": 2 ** (k * m),
        "patterns_explored": int(nodes.sum()),
        "lps": int(lps.sum()),
        "patterns_per_trial": nodes.tolist(),
        "lps_per_trial": lps.tolist(),
        "undecided_patterns": int(undecided),
        "boundary_trials": int(boundary_trials),
        "ambiguous": int(np.count_nonzero(status == AMBIGUOUS)),
        "non_generic_trials": int(non_generic),
        "seconds_per_trial": seconds / trials,
    }
    return status, info
