"""Eliminated lifted Newton with random restarts, eight runs in SIMD lanes (C kernel in
``lane_newton.h``; the file comment there states the algorithm).

:func:`lane_newton` is the driver :mod:`fastmp.estimators.polynomial` calls for the
``"lifted"`` starts of the programs :func:`fastmp.kernels.lanes.supported` accepts.
Compiler directives are set once for the build in ``setup.py``.
"""
import numpy as np

from libc.stdint cimport uint64_t

#: runs per call, side by side in the vector lanes
LANES = 8


cdef extern from "lane_newton.h":
    ctypedef Py_ssize_t ln_idx
    ctypedef struct ln_problem:
        ln_idx n, b, K, d, m, r, nt
        const ln_idx* term_node
        const double* R
        const double* Lm
        const double* A0
        const double* S
        const ln_idx* vi
        const ln_idx* vj
        const double* Ystar
        const double* wscale
    int fastmp_lane_newton(const ln_problem* p, const double* w0, const double* N0,
                           long budget, double tol, double converged, double cut,
                           long max_run, uint64_t* state, double* w_out, long* steps,
                           double* last_step, int portable) nogil


def lane_newton(A0, S, Lm, R, term_node, vi, vj, Ystar, wscale, w0, N0, long budget,
                double tol, double converged, double cut, long max_run, state,
                bint portable=False):
    """Run the lanes once (see ``lane_newton.h``).

    ``A0`` (n x n), ``S`` (n x b), ``Lm`` (d x n), ``R`` (nt x b x m), ``Ystar`` (d x m):
    float64, C-contiguous; ``term_node``, ``vi``, ``vj``: intp; ``wscale`` (r); ``w0``
    (r x LANES) and ``N0`` ((K+1) x n x b x LANES): the lanes' first points;
    ``state``: uint64 array of 4, the restarts' xoshiro256** state (advanced in place).
    ``portable``: run the default-target code even where the AVX-512 copy could run
    (tests). Returns ``(w, converged, steps, last_step)``.
    """
    cdef const double[:, ::1] A0v = A0
    cdef const double[:, ::1] Sv = S
    cdef const double[:, ::1] Lv = Lm
    cdef const double[:, :, ::1] Rv = R
    cdef const Py_ssize_t[::1] tn = term_node
    cdef const Py_ssize_t[::1] viv = vi
    cdef const Py_ssize_t[::1] vjv = vj
    cdef const double[:, ::1] Yv = Ystar
    cdef const double[::1] ws = wscale
    cdef const double[:, ::1] w0v = w0
    cdef const double[:, :, :, ::1] N0v = N0
    cdef uint64_t[::1] st = state
    cdef ln_problem p
    p.n = A0v.shape[0]
    p.b = Sv.shape[1]
    p.K = N0v.shape[0] - 1
    p.d = Yv.shape[0]
    p.m = Yv.shape[1]
    p.r = viv.shape[0]
    p.nt = tn.shape[0]
    if (A0v.shape[1] != p.n or Sv.shape[0] != p.n or Lv.shape[0] != p.d
            or Lv.shape[1] != p.n or Rv.shape[0] != p.nt or Rv.shape[1] != p.b
            or Rv.shape[2] != p.m or vjv.shape[0] != p.r or ws.shape[0] != p.r
            or w0v.shape[0] != p.r or w0v.shape[1] != LANES or N0v.shape[1] != p.n
            or N0v.shape[2] != p.b or N0v.shape[3] != LANES or st.shape[0] != 4):
        raise ValueError("lane_newton: inconsistent shapes")
    if p.d * p.m != p.r:
        raise ValueError(f"lane_newton: needs a square system, got {p.r} unknowns and "
                         f"{p.d * p.m} equations")
    for t in range(p.nt):
        if not 0 <= tn[t] <= p.K:
            raise ValueError("lane_newton: term node out of range")
    for v in range(p.r):
        if not (0 <= viv[v] < p.n and 0 <= vjv[v] < p.n):
            raise ValueError("lane_newton: learnable entry out of range")
    p.term_node = &tn[0]
    p.R = &Rv[0, 0, 0]
    p.Lm = &Lv[0, 0]
    p.A0 = &A0v[0, 0]
    p.S = &Sv[0, 0]
    p.vi = &viv[0]
    p.vj = &vjv[0]
    p.Ystar = &Yv[0, 0]
    p.wscale = &ws[0]
    w = np.empty(p.r)
    cdef double[::1] wv = w
    cdef long steps = 0
    cdef double last = 0.0
    cdef int rc
    with nogil:
        rc = fastmp_lane_newton(&p, &w0v[0, 0], &N0v[0, 0, 0, 0], budget, tol, converged,
                                cut, max_run, &st[0], &wv[0], &steps, &last, portable)
    if rc < 0:
        raise MemoryError("lane_newton could not allocate its scratch")
    return w, bool(rc), int(steps), float(last)
