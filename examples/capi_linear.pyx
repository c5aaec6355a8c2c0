# cython: language_level=3, boundscheck=False, wraparound=False
"""Embedding example for fastmp's C-level API (``fastmp/_ext/capi.pxd``): Monte Carlo
trials of a linear estimator ``Y = W X`` (paper §2.1) with an allocation in ``W``, every
trial drawn, assembled and decided in C without the GIL -- the same draws and the same
decision as ``fastmp.match_probability(LinearEstimator(q, d), alloc, m, seed=...,
backend="cython")``.

Build it like any Cython module, with fastmp's ``.pxd`` files on the include path::

    cythonize("capi_linear.pyx", include_path=[<dir holding fastmp/_ext/capi.pxd>])

(an installed fastmp ships them in ``site-packages/fastmp/_ext/``; a source checkout has
them under ``csrc/``). ``tests/test_capi.py`` compiles and runs it.
"""
import numpy as np

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from fastmp._ext.capi cimport (FASTMP_NEED_RHS, fastmp_assemble_columns,
                               fastmp_assemble_rhs, fastmp_decide,
                               fastmp_decide_work_size, fastmp_default_tolerances,
                               fastmp_draw_segments)


def linear_estimator_trials(int q, int d, int m, unsigned long long seed, int trials,
                            const int64_t[::1] alloc_i, const int64_t[::1] alloc_j):
    """Statuses (int8), assembled systems ``C`` (trials, d*m, r) and right-hand sides of
    ``trials`` trials of ``LinearEstimator(q, d)`` with learnable ``W[alloc_i, alloc_j]``.

    The trial layout is fastmp's (Appendix E.3, ``Model.layout``): segment 0 the teacher's
    W (d x q), 1 the student's W, 2 the inputs X (q x m); W ~ N(0, 1/q), X ~ N(0, 1).
    """
    cdef Py_ssize_t r = alloc_i.shape[0], M = d * m, k, a, b, c, t
    cdef int64_t seg_start[4]
    cdef double seg_scale[3]
    cdef unsigned char need[3]
    seg_start[0] = 0
    seg_start[1] = d * q
    seg_start[2] = 2 * d * q
    seg_start[3] = 2 * d * q + q * m
    seg_scale[0] = seg_scale[1] = 1.0 / np.sqrt(q)
    seg_scale[2] = 1.0
    need[0] = need[1] = need[2] = 1

    status = np.empty(trials, dtype=np.int8)
    Cs = np.empty((trials, M, r))
    rhss = np.empty((trials, M))
    cdef signed char[::1] st = status
    cdef double[:, :, ::1] Cv = Cs
    cdef double[:, ::1] Rv = rhss

    cdef double tol[4]
    fastmp_default_tolerances(tol)
    cdef Py_ssize_t lwork = fastmp_decide_work_size(<int>M, <int>r)
    # one block of scratch, carved up below; the caller owns it all
    cdef Py_ssize_t nbuf = seg_start[3] + d * d + d * q + M + M * r + M + d * q + M + lwork
    cdef double* buf = <double*>malloc(nbuf * sizeof(double))
    cdef int* iwork = <int*>malloc((r if r > 0 else 1) * sizeof(int))
    if buf == NULL or iwork == NULL:
        free(buf)
        free(iwork)
        raise MemoryError()
    cdef double* draws = buf
    cdef double* Ls = draws + seg_start[3]      # (1, d, d): the identity
    cdef double* P = Ls + d * d                  # student's W (overwritten by assembly)
    cdef double* ystar = P + d * q               # d x m
    cdef double* C = ystar + M                   # column-major M x r
    cdef double* rhs = C + M * r
    cdef double* work = rhs + M                  # d*q + d*m for fastmp_assemble_rhs
    cdef double* dwork = work + d * q + M
    cdef double scale, acc
    try:
        with nogil:
            for a in range(d * d):
                Ls[a] = 0.0
            for a in range(d):
                Ls[a * d + a] = 1.0
            for k in range(trials):
                fastmp_draw_segments(seed, <unsigned long long>k, 3, seg_start, seg_scale,
                                     need, draws)
                # teacher's outputs Y* = W* X
                for a in range(d):
                    for c in range(m):
                        acc = 0.0
                        for b in range(q):
                            acc = acc + draws[a * q + b] * draws[seg_start[2] + b * m + c]
                        ystar[a * m + c] = acc
                for t in range(d * q):
                    P[t] = draws[seg_start[1] + t]
                # Y = I W X: L = identity, R = X
                fastmp_assemble_columns(1, d, d, q, m, Ls, draws + seg_start[2], r,
                                        &alloc_i[0], &alloc_j[0], C, M)
                scale = fastmp_assemble_rhs(1, d, d, q, m, Ls, draws + seg_start[2], P,
                                            ystar, r, &alloc_i[0], &alloc_j[0], rhs, work)
                for t in range(M):
                    Rv[k, t] = rhs[t]
                    for a in range(r):
                        Cv[k, t, a] = C[t + a * M]
                st[k] = <signed char>fastmp_decide(<int>M, <int>r, C, <int>M, rhs, scale,
                                                   tol, iwork, dwork, lwork,
                                                   NULL, NULL, NULL)
    finally:
        free(buf)
        free(iwork)
    return status, Cs, rhss
