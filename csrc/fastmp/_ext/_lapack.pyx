"""LAPACK backend of the match decision; the only fastmp module that calls LAPACK.

``decide_system`` (C level, declared and documented in ``_lapack.pxd``) implements the
decision of :func:`fastmp.kernels.decide.decide_inplace` with LAPACK's ``dgeqp3``
(Householder QR with column pivoting) and ``dorm2r`` (``Q^T`` applied to ``rhs`` one
reflector at a time; for a single column, ``dormqr``'s blocked path would spend more on
forming block reflectors than on applying them). Both come from
``scipy.linalg.cython_lapack``, so no LAPACK is linked at build time. The Python
functions are thin drivers: :func:`decide_batch` (the arguments of the Numba
``decide_batch``) and :func:`decide_one`, the single-system twin used by the tests.

The decision is the Numba kernel's; the numbers behind it are not bit for bit the same.
LAPACK downdates the column norms it pivots on (the Numba kernel recomputes them) and
uses scaled norms and blocked updates, so ``|R_jj|`` and the residual agree to rounding
only, and among columns of nearly equal norm the pivot order can differ. The two
backends can therefore disagree only on a system whose pivot ratio or residual lies
near a threshold.

Compiler directives (bounds checks off unless ``FASTMP_CYTHON_DEBUG`` is set, no
wraparound, no initialised check, C division) are set once for the build in
``setup.py``.
"""
import os

import numpy as np

from cython.parallel cimport prange, threadid
from libc.limits cimport INT_MAX
from libc.math cimport INFINITY, fabs, sqrt
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_lapack cimport dgeqp3, dorm2r

cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTMP_HAVE_OPENMP 1
    #else
    #define FASTMP_HAVE_OPENMP 0
    #endif
    """
    int FASTMP_HAVE_OPENMP

#: Whether the module was built with OpenMP. Without it ``decide_batch`` runs serially
#: whatever ``n_threads`` says (the results are the same either way).
OPENMP = bool(FASTMP_HAVE_OPENMP)

NO_MATCH = DECIDE_NO_MATCH
MATCH = DECIDE_MATCH
AMBIGUOUS = DECIDE_AMBIGUOUS
NEED_RHS = DECIDE_NEED_RHS
MATCH_RHO_FLOOR = DECIDE_MATCH_RHO_FLOOR


cdef int decide_lwork(int M, int N) noexcept nogil:
    cdef int kmax = M if M < N else N
    cdef int lda = M if M > 1 else 1
    cdef int query = -1, info = 0
    cdef int lwork = 3 * N + 1
    cdef int idummy = 0
    cdef double dummy = 0.0, opt = 0.0
    if kmax <= 0:
        return lwork if lwork > 1 else 1
    dgeqp3(&M, &N, &dummy, &lda, &idummy, &dummy, &opt, &query, &info)
    if info == 0 and opt > lwork:
        lwork = <int>opt
    return lwork


cdef int decide_system(int M, int N, double* A, int lda, double* rhs, double scale,
                       double rank_lo, double rank_hi, double res_lo, double res_hi,
                       int* jpvt, double* tau, double* work, int lwork,
                       int* rank, double* rho_min, double* residual) noexcept nogil:
    cdef int kmax = M if M < N else N
    cdef int k = 0
    cdef int one = 1, info = 0, j
    cdef Py_ssize_t i
    cdef bint ambiguous = False
    cdef double ref, rho, rmin = 1.0, res = 0.0
    cdef char side = b'L'
    cdef char trans = b'T'

    if kmax > 0:
        for j in range(N):
            jpvt[j] = 0                     # free columns: pivot on all of them
        dgeqp3(&M, &N, A, &lda, jpvt, tau, work, &lwork, &info)
        if info != 0:
            return DECIDE_ERROR
        # rho_j = |R_jj| / |R_00|; R_00 == 0 means C == 0 and rank 0.
        ref = fabs(A[0])
        if ref > 0.0:
            for j in range(kmax):
                rho = fabs(A[j + <Py_ssize_t>j * lda]) / ref
                if rho >= rank_hi:
                    k += 1
                    rmin = rho
                else:
                    # the first pivot below rank_hi ends the rank; between the two
                    # thresholds it is neither kept nor zero
                    if rho > rank_lo:
                        ambiguous = True
                    break
        # Q^T rhs with the first k reflectors, as the Numba kernel does; the later ones
        # act on rows >= k only and would leave ||rhs[k:]|| unchanged.
        if k > 0:
            dorm2r(&side, &trans, &M, &one, &k, A, &lda, tau, rhs, &lda, work, &info)
            if info != 0:
                return DECIDE_ERROR

    if rank != NULL:
        rank[0] = k
    if rho_min != NULL:
        rho_min[0] = rmin
    if scale < 0.0:
        # right-hand side not drawn (fastmp.kernels.decide): only a full row rank
        # settles the trial without it
        if residual != NULL:
            residual[0] = 0.0 if (k == M and not ambiguous) else INFINITY
        if k == M and not ambiguous:
            return DECIDE_MATCH
        return DECIDE_NEED_RHS

    for i in range(k, M):
        res += rhs[i] * rhs[i]
    res = sqrt(res) / scale if scale > 0.0 else sqrt(res)
    # "no match" is judged relative to the tail rounding leaves in a consistent system,
    # ~ eps * scale / rho_min; "match" only with rho_min floored at
    # DECIDE_MATCH_RHO_FLOOR (see fastmp._config.Tolerances)
    cdef double res_match = res * (rmin if rmin > DECIDE_MATCH_RHO_FLOOR else DECIDE_MATCH_RHO_FLOOR)
    res *= rmin

    if rank != NULL:
        rank[0] = k
    if rho_min != NULL:
        rho_min[0] = rmin
    if residual != NULL:
        residual[0] = res
    if ambiguous:
        return DECIDE_AMBIGUOUS
    if res_match <= res_lo:
        return DECIDE_MATCH
    if res >= res_hi:
        return DECIDE_NO_MATCH
    return DECIDE_AMBIGUOUS


cdef int _check_dims(Py_ssize_t M, Py_ssize_t N) except -1:
    if M > INT_MAX or N > INT_MAX or M * N > INT_MAX:
        raise OverflowError(f"system of shape ({M}, {N}) is too large for LAPACK's int")
    return 0


def decide_batch(const double[:, :, :] C, const double[:, :] rhs, const double[:] scale,
                 double rank_lo, double rank_hi, double res_lo, double res_hi,
                 signed char[:] status, *, int n_threads=1):
    """Decide every system of a batch: ``C[b]`` (``M x N``), ``rhs[b]``, ``scale[b]``.

    Same arguments and result as :func:`fastmp.kernels.decide.decide_batch`: writes
    ``status[b]`` (``int8``: NO_MATCH, MATCH or AMBIGUOUS) and leaves ``C``, ``rhs`` and
    ``scale`` unchanged (read-only and non-contiguous arrays are accepted). Each system
    is copied to a column-major scratch matrix; scratch is allocated once per call, and
    LAPACK's workspace size is queried once per call.

    ``n_threads`` (keyword only): systems are split statically over this many OpenMP
    threads, each with its own scratch; ``n_threads <= 0`` uses every CPU this process
    may run on. The default 1 runs serially, like the Numba kernel. The statuses do not
    depend on it. Without OpenMP (see ``OPENMP``) the loop is always serial. With more
    than one thread, limit the BLAS to one thread (``OPENBLAS_NUM_THREADS=1`` or
    threadpoolctl): otherwise each system's LAPACK call starts BLAS threads of its own,
    and on systems of a few hundred unknowns two threads ran 2-3x *slower* than one.
    """
    cdef Py_ssize_t B = C.shape[0], M = C.shape[1], N = C.shape[2]
    if rhs.shape[0] != B or rhs.shape[1] != M:
        raise ValueError(
            f"rhs has shape ({rhs.shape[0]}, {rhs.shape[1]}), expected ({B}, {M})")
    if scale.shape[0] != B:
        raise ValueError(f"scale has length {scale.shape[0]}, expected {B}")
    if status.shape[0] != B:
        raise ValueError(f"status has length {status.shape[0]}, expected {B}")
    _check_dims(M, N)
    if B == 0:
        return

    if n_threads <= 0:
        n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
    if not FASTMP_HAVE_OPENMP:
        n_threads = 1
    if n_threads > B:
        n_threads = <int>B

    cdef int m = <int>M, n = <int>N
    cdef int lda = m if m > 1 else 1
    cdef int kmax = m if m < n else n
    cdef int lwork = decide_lwork(m, n)
    # per-thread scratch: A (lda x N), rhs (M), tau (kmax), work (lwork); jpvt (N)
    cdef Py_ssize_t dstride = <Py_ssize_t>lda * n + m + (kmax if kmax > 0 else 1) + lwork
    cdef Py_ssize_t istride = n if n > 0 else 1
    cdef double* dbuf = <double*>malloc(n_threads * dstride * sizeof(double))
    cdef int* ibuf = <int*>malloc(n_threads * istride * sizeof(int))
    cdef double* A
    cdef double* r
    cdef Py_ssize_t b, i, j, t
    cdef bint failed = False
    if dbuf == NULL or ibuf == NULL:
        free(dbuf)
        free(ibuf)
        raise MemoryError()
    try:
        with nogil:
            for b in prange(B, schedule="static", num_threads=n_threads):
                t = threadid()
                A = dbuf + t * dstride
                r = A + <Py_ssize_t>lda * n
                for j in range(N):
                    for i in range(M):
                        A[i + j * lda] = C[b, i, j]
                for i in range(M):
                    r[i] = rhs[b, i]
                status[b] = <signed char>decide_system(
                    m, n, A, lda, r, scale[b], rank_lo, rank_hi, res_lo, res_hi,
                    ibuf + t * istride, r + m, r + m + (kmax if kmax > 0 else 1),
                    lwork, NULL, NULL, NULL)
            for b in range(B):
                if status[b] == DECIDE_ERROR:
                    failed = True
                    break
    finally:
        free(dbuf)
        free(ibuf)
    if failed:
        raise RuntimeError("LAPACK rejected an argument (a bug in fastmp._ext._lapack)")


def decide_one(const double[:, :] C, const double[:] rhs, double scale,
               double rank_lo, double rank_hi, double res_lo, double res_hi):
    """Decide one system ``C w = rhs``; the inputs are left unchanged.

    Returns ``(status, rank, rho_min, residual)`` like
    :func:`fastmp.kernels.decide.decide_inplace`: the status code, the numerical rank,
    the smallest kept pivot ratio ``rho_min = |R_jj| / |R_00|`` (1.0 at rank 0) and the
    residual ``rho_min * ||(Q^T rhs)[rank:]|| / scale``. A test twin of
    ``decide_system``.
    """
    cdef Py_ssize_t M = C.shape[0], N = C.shape[1]
    if rhs.shape[0] != M:
        raise ValueError(f"rhs has length {rhs.shape[0]}, expected {M}")
    _check_dims(M, N)
    cdef int m = <int>M, n = <int>N
    cdef int lda = m if m > 1 else 1
    cdef int kmax = m if m < n else n
    cdef int lwork = decide_lwork(m, n)
    cdef Py_ssize_t dsize = <Py_ssize_t>lda * n + m + (kmax if kmax > 0 else 1) + lwork
    cdef double* dbuf = <double*>malloc(dsize * sizeof(double))
    cdef int* jpvt = <int*>malloc((n if n > 0 else 1) * sizeof(int))
    cdef double* A = dbuf
    cdef double* r
    cdef Py_ssize_t i, j
    cdef int code, k = 0
    cdef double rmin = 1.0, res = 0.0
    if dbuf == NULL or jpvt == NULL:
        free(dbuf)
        free(jpvt)
        raise MemoryError()
    try:
        r = A + <Py_ssize_t>lda * n
        with nogil:
            for j in range(N):
                for i in range(M):
                    A[i + j * lda] = C[i, j]
            for i in range(M):
                r[i] = rhs[i]
            code = decide_system(m, n, A, lda, r, scale, rank_lo, rank_hi, res_lo, res_hi,
                                 jpvt, r + m, r + m + (kmax if kmax > 0 else 1), lwork,
                                 &k, &rmin, &res)
    finally:
        free(dbuf)
        free(jpvt)
    if code == DECIDE_ERROR:
        raise RuntimeError("LAPACK rejected an argument (a bug in fastmp._ext._lapack)")
    return code, k, rmin, res


cdef extern from "screen.h":
    long fastmp_screen_batch(long B, int n, const double* C, double screen,
                             signed char match_code, signed char* status,
                             unsigned char* done, double* rcond_out) nogil
    long fastmp_lu_batch(long B, int n, const double* C, double* min_pivot) nogil


def screen_batch(C, double screen, signed char[:] status, rcond=None):
    """Lane-wise nonsingularity screen (``screen.h``) of the square systems ``C[b]``.

    ``C`` is a C-contiguous float64 array of shape ``(B, n, n)``. Every system that is
    certainly nonsingular -- 1-norm reciprocal condition estimate at least ``screen``,
    LU growth at most 1e3 (the argument is in ``screen.h``) -- gets ``status[b] = MATCH``
    (a nonsingular square system is solvable for any right-hand side). Returns a boolean
    array of the trials settled; the others are for the pivoted QR decision. If given,
    ``rcond`` (float64, length ``B``) receives every system's reciprocal condition
    estimate (for tests and diagnostics).
    """
    cdef const double[:, :, ::1] Cv = C
    cdef Py_ssize_t B = Cv.shape[0], n = Cv.shape[1]
    if Cv.shape[2] != n:
        raise ValueError(f"screen_batch needs square systems, got {n} x {Cv.shape[2]}")
    if status.shape[0] != B:
        raise ValueError(f"status has length {status.shape[0]}, expected {B}")
    if n > INT_MAX:
        raise ValueError("system too large")
    done = np.zeros(B, dtype=np.bool_)
    cdef unsigned char[::1] dv = done.view(np.uint8)
    cdef long settled = 0
    cdef double[::1] rv
    cdef double* rp = NULL
    if rcond is not None:
        rv = rcond
        if rv.shape[0] != B:
            raise ValueError(f"rcond has length {rv.shape[0]}, expected {B}")
        if B:
            rp = &rv[0]
    if B == 0 or n == 0:
        return done
    with nogil:
        settled = fastmp_screen_batch(B, <int>n, &Cv[0, 0, 0], screen, DECIDE_MATCH,
                                      &status[0], &dv[0], rp)
    if settled < 0:
        raise MemoryError("screen_batch could not allocate its scratch")
    return done


def lu_batch(C):
    """LU with partial pivoting of the square systems ``C[b]`` by the screen's vectorised
    kernel, and nothing else; returns ``min_i |u_ii|`` per system. The irreducible
    factorisation work of a linear trial, timed by ``bench/limits.py``."""
    cdef const double[:, :, ::1] Cv = C
    cdef Py_ssize_t B = Cv.shape[0], n = Cv.shape[1]
    if Cv.shape[2] != n:
        raise ValueError(f"lu_batch needs square systems, got {n} x {Cv.shape[2]}")
    out = np.zeros(B)
    cdef double[::1] ov = out
    cdef long rc = 0
    if B == 0 or n == 0:
        return out
    with nogil:
        rc = fastmp_lu_batch(B, <int>n, &Cv[0, 0, 0], &ov[0])
    if rc < 0:
        raise MemoryError("lu_batch could not allocate its scratch")
    return out
