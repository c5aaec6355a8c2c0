"""Exact generic solvability of linear allocations by evaluation over a finite field.

For an allocation confined to one parameter a model is linear in, the system
``C w = rhs`` has entries that are polynomials with integer coefficients in the random
draws (teacher, frozen student weights, inputs). Its solvability is therefore a 0/1
event almost surely: with ``g(C)`` and ``g([C | rhs])`` the *generic* ranks (ranks at a
generic point), MP = 1 iff ``g(C) == g([C | rhs])``, else MP = 0 -- for any absolutely
continuous law of the draws, in particular the Gaussians of Appendix E.3 (the
``1/sqrt(fan_in)`` scales do not change generic ranks).

Generic ranks are found by evaluating the system at points drawn uniformly from
``GF(p)`` (exact integer arithmetic mod a prime ``p``):

* the rank at any point never exceeds the generic rank (a nonzero minor mod ``p`` is a
  nonzero integer minor, hence a nonzero polynomial). So **full row rank at one point is
  a certificate**: ``C`` has generic rank ``d m``, the system is solvable for every
  right-hand side, MP = 1;
* a rank deficiency can be a bad draw; by the Schwartz-Zippel lemma a point is bad with
  probability at most ``deg / p`` (``deg`` = degree of the relevant minor, here at most a
  few thousand, ``p`` ~ 1.7e7). We take the maximum over ``evaluations`` independent
  points, so an erroneous "minimal" has probability below ``(deg/p)^evaluations``
  (< 1e-9 with the defaults for systems of a few hundred unknowns).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Largest prime below 2**24: products of two residues stay below 2**48 and sums of up
#: to 2**14 of them fit int64 exactly.
PRIME = 16777213


def _mulmod(p):
    def matmul(a, b):
        a = np.asarray(a, dtype=np.int64) % p
        b = np.asarray(b, dtype=np.int64) % p
        if a.shape[-1] > 2**14:
            raise ValueError("generic rank: inner dimension too large for exact int64 arithmetic")
        return (a @ b) % p
    return matmul


def rank_mod_p(A, p=PRIME):
    """Rank of an integer matrix over GF(p) by Gaussian elimination (exact)."""
    A = np.array(A, dtype=np.int64) % p
    rows, cols = A.shape
    rank = 0
    for c in range(cols):
        if rank == rows:
            break
        piv = np.flatnonzero(A[rank:, c])
        if piv.size == 0:
            continue
        pr = rank + piv[0]
        if pr != rank:
            A[[rank, pr]] = A[[pr, rank]]
        inv = pow(int(A[rank, c]), p - 2, p)
        A[rank] = (A[rank] * inv) % p
        below = A[rank + 1:, c].copy()
        nz = np.flatnonzero(below)
        if nz.size:
            A[rank + 1 + nz] = (A[rank + 1 + nz] - np.outer(below[nz], A[rank])) % p
        rank += 1
    return rank


#: Further primes below 2**24 (independent evaluations of the same exact system).
PRIMES = (16777213, 16777199, 16777183)


def random_point(model, m, rng, p=PRIME):
    """Teacher, student and inputs drawn uniformly from GF(p)."""
    def draw(shape):
        return rng.integers(0, p, size=shape, dtype=np.int64)

    teacher = {n: draw(s) for n, s in model.param_shapes.items()}
    student = {n: draw(s) for n, s in model.param_shapes.items()}
    return teacher, student, draw(model.input_shape(m))


def residues(x, p):
    """Exact residues mod ``p`` of float64 values (each double is ``mant * 2**e``)."""
    x = np.asarray(x, dtype=np.float64)
    frac, ex = np.frexp(x)
    mant = np.ldexp(frac, 53).astype(np.int64)      # exact: |frac| < 1, 53-bit mantissa
    ex = ex.astype(np.int64) - 53
    lo = int(ex.min()) if ex.size else 0
    table = np.array([pow(2, int(e), p) for e in range(lo, int(ex.max()) + 1 if ex.size else 1)],
                     dtype=np.int64)
    return (mant % p) * table[ex - lo] % p


def system_mod_p(model, name, mask, m, teacher, student, X, p=PRIME):
    """``(C, rhs)`` of a linear allocation evaluated in GF(p) at the given residues."""
    matmul = _mulmod(p)
    terms = [(L % p, R % p) for L, R in model.linear_terms(name, student, X, matmul)]
    tterms = model.linear_terms(name, teacher, X, matmul)
    d = model.d
    ystar = np.zeros((d, m), dtype=np.int64)
    for L, R in tterms:
        ystar = (ystar + matmul(matmul(L, teacher[name]), R)) % p
    P0 = student[name].copy()
    P0[mask] = 0
    frozen = np.zeros((d, m), dtype=np.int64)
    for L, R in terms:
        frozen = (frozen + matmul(matmul(L, P0), R)) % p
    ai, aj = np.nonzero(mask)
    C = np.zeros((d * m, ai.size), dtype=np.int64)
    for L, R in terms:
        # column k: vec(L[:, i] R[j, :]) with row-major vec (Lemma A.3)
        C = (C + (L[:, ai][:, None, :] * R[aj, :].T[None, :, :]).reshape(d * m, ai.size)) % p
    rhs = (ystar - frozen).reshape(-1) % p
    return C, rhs


@dataclass(frozen=True)
class GenericDecision:
    """Outcome of :func:`generic_decision`.

    ``solvable``: generic solvability (MP = 1 if True, 0 if False). ``certified``: the
    answer is proved (full row rank at a point), not just overwhelmingly likely.
    """

    solvable: bool
    certified: bool
    rank: int
    rank_augmented: int
    equations: int
    unknowns: int
    evaluations: int

    def describe(self):
        how = "certified by a full-rank point" if self.certified else (
            f"max over {self.evaluations} random points, Schwartz-Zippel")
        verdict = "solvable" if self.solvable else "not solvable"
        return (f"generic rank of the {self.equations} x {self.unknowns} system over "
                f"GF({PRIME}) is {self.rank} (augmented {self.rank_augmented}): "
                f"{verdict} for almost every draw ({how})")


def generic_decision(model, allocation, m=None, evaluations=3, seed=0):
    """Decide exactly (almost surely) whether a linear allocation's system is solvable.

    Only for allocations confined to one parameter the model is linear in, and for
    models whose outputs are polynomial in the draws (not ShallowReLU).
    """
    name = allocation.linear_param
    if name is None:
        raise ValueError("generic_decision: the allocation's system is not linear")
    if not getattr(model, "algebraic", True):
        raise ValueError(f"generic_decision: {type(model).__name__} is not polynomial in its draws")
    m = allocation.default_m() if m is None else int(m)
    mask = allocation.mask(name)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6E11C]))
    M = model.d * m
    best_c = best_a = -1
    for k in range(evaluations):
        C, rhs = system_mod_p(model, name, mask, m, *random_point(model, m, rng))
        rc = rank_mod_p(C)
        if rc == M:
            return GenericDecision(True, True, M, M, M, C.shape[1], k + 1)
        ra = rank_mod_p(np.column_stack([C, rhs]))
        best_c, best_a = max(best_c, rc), max(best_a, ra)
    return GenericDecision(best_c == best_a, False, best_c, best_a, M, int(mask.sum()), evaluations)


def chain_jacobian_mod_p(prog, params, consts, var, p=PRIME):
    """Jacobian (``d m x r``) of a chain program's output with respect to the variables
    ``var``, evaluated in GF(p) at integer ``params`` / ``consts`` (same structure as
    :func:`fastmp.estimators.certify.chain_ball`)."""
    mm = _mulmod(p)
    d, m = prog.d, prog.m
    src = params[prog.src_idx] if prog.src_kind == 0 else consts[prog.src_idx]
    N = [np.asarray(src, dtype=np.int64) % p]
    for a in prog.steps:
        N.append(mm(params[a], N[-1]))
    var = np.asarray(var)
    J = np.zeros((d * m, len(var)), dtype=np.int64)

    def add(sel, G, H):
        vi, vj = var[sel, 1], var[sel, 2]
        block = (G[:, vi][:, None, :] * H[vj].T[None, :, :]) % p     # d x m x v
        J[:, sel] = (J[:, sel] + block.reshape(d * m, -1)) % p

    for l, it, rc, lc in prog.terms:
        LC = consts[lc] % p if lc >= 0 else None
        if l >= 0:
            L = mm(LC, params[l]) if LC is not None else params[l] % p
        else:
            L = LC if LC is not None else np.eye(N[it].shape[0], dtype=np.int64)
        R = consts[rc] % p if rc >= 0 else np.eye(m, dtype=np.int64)
        G = {it: L}
        for s in range(it, 0, -1):
            G[s - 1] = mm(G[s], params[prog.steps[s - 1]])
        for s in range(1, it + 1):
            sel = np.flatnonzero(var[:, 0] == prog.steps[s - 1])
            if sel.size:
                add(sel, G[s], mm(N[s - 1], R))
        if prog.src_kind == 0:
            sel = np.flatnonzero(var[:, 0] == prog.src_idx)
            if sel.size:
                add(sel, G[0], R)
        if l >= 0:
            sel = np.flatnonzero(var[:, 0] == l)
            if sel.size:
                add(sel, LC if LC is not None else np.eye(d, dtype=np.int64), mm(N[it], R))
    return J


def generic_jacobian_rank(model, allocation, m=None, evaluations=3, seed=0):
    """Generic rank of the Jacobian of ``w -> Y(w)`` (all frozen draws, inputs and the
    learnable weights at random points of GF(p); maximum over ``evaluations`` points).

    The image of the student's map has dimension equal to this rank; if it is below
    ``d m``, the image is a null set and the teacher's generic outputs are reached with
    probability 0 (minimal). A deficient rank is wrong only if every point was a bad
    draw (Schwartz-Zippel, probability ~ (deg/p)^evaluations)."""
    m = allocation.default_m() if m is None else int(m)
    prog = model.chain_program(m)
    var = model.variables(allocation)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7AC0B]))
    best = 0
    for _ in range(evaluations):
        _, student, X = random_point(model, m, rng)
        params = [student[n] for n in model.param_names]
        J = chain_jacobian_mod_p(prog, params, [c % PRIME for c in model.chain_constants(X)], var)
        best = max(best, rank_mod_p(J))
        if best == model.d * m:
            break
    return best
