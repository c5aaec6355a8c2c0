"""Slow, obvious NumPy references for the compiled kernels (STUMPY style)."""
import numpy as np


def naive_system(model, name, mask, m, seed, trial):
    """Full Kronecker matrix of Lemma A.3, allocated columns selected; rhs from forward()."""
    teacher, student, X = model.trial_draws(seed, trial, m)
    ystar = model.forward(teacher, X)
    full = sum(np.kron(L, R.T) for L, R in model.linear_terms(name, student, X))
    C = full[:, np.flatnonzero(mask)]
    frozen = dict(student)
    frozen[name] = np.where(mask, 0.0, student[name])
    rhs = (ystar - model.forward(frozen, X)).ravel()
    return C, rhs


def naive_solvable(C, rhs):
    """Least-squares residual test: consistent iff rhs is reproduced."""
    w, *_ = np.linalg.lstsq(C, rhs, rcond=None)
    return np.linalg.norm(C @ w - rhs) <= 1e-8 * max(1.0, np.linalg.norm(rhs))
