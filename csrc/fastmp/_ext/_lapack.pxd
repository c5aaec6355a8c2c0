# Cython declarations of fastmp's LAPACK layer, the one module that calls LAPACK.
#
# Other Cython code uses it with
#
#     from fastmp._ext._lapack cimport decide_system, decide_lwork, DECIDE_MATCH
#
# (this file is installed next to the compiled module). Both functions are also exported
# in ``fastmp._ext._lapack.__pyx_capi__``, so an njit kernel can reach them through
# ``numba.extending.get_cython_function_address("fastmp._ext._lapack", "decide_system")``
# and ctypes; every argument is a scalar or a pointer for that reason.

# Status codes of one system's match decision; equal to fastmp._config.NO_MATCH, MATCH,
# AMBIGUOUS and NEED_RHS (the tests check this). NEED_RHS: scale < 0 marks a right-hand
# side that was not drawn, and the matrix is rank-deficient. DECIDE_ERROR is returned only if LAPACK reports
# an illegal argument (info < 0), i.e. a bad M, N, lda or lwork.
# Smallest pivot ratio by which a "match" residual is scaled (fastmp._config
# MATCH_RHO_FLOOR; the tests check they agree).
cdef extern from *:
    """
    #define DECIDE_MATCH_RHO_FLOOR 1e-3
    """
    double DECIDE_MATCH_RHO_FLOOR
cdef enum:
    DECIDE_NO_MATCH = 0
    DECIDE_MATCH = 1
    DECIDE_AMBIGUOUS = 2
    DECIDE_NEED_RHS = 3
    DECIDE_ERROR = -1


# Length of the ``work`` array decide_system needs for an M x N system: LAPACK's optimal
# size for dgeqp3, never less than 3*N + 1 (which also covers dorm2r's 1). Query once
# per shape, not once per system.
cdef int decide_lwork(int M, int N) noexcept nogil


# Decide whether ``C w = rhs`` has a solution: the decision of
# fastmp.kernels.decide.decide_inplace (thresholds documented in
# fastmp._config.Tolerances), on top of LAPACK's dgeqp3 and dorm2r.
#
# A         C (M x N) in column-major (Fortran) order, element (i, j) at A[i + j*lda];
#           overwritten by dgeqp3 (R and the Householder reflectors).
# lda       leading dimension of A, lda >= max(1, M).
# rhs       length M; overwritten (Q^T of the first ``rank`` reflectors applied to it).
# scale     the residual is divided by it; scale <= 0 leaves it undivided.
# rank_lo, rank_hi, res_lo, res_hi
#           the thresholds, in the order of fastmp._config.Tolerances.as_tuple().
# jpvt      int scratch, length >= N (zeroed here, so every column pivots freely;
#           holds dgeqp3's 1-based column permutation on return).
# tau       scratch, length >= min(M, N).
# work      scratch, length >= lwork, and lwork >= decide_lwork(M, N).
# rank, rho_min, residual
#           outputs, each may be NULL: the numerical rank k, the smallest kept pivot
#           ratio rho_min = |R_jj| / |R_00| (1.0 when k == 0), and the residual the
#           decision is taken on, rho_min * ||(Q^T rhs)[k:M]||_2 / scale.
#
# Returns DECIDE_MATCH, DECIDE_NO_MATCH or DECIDE_AMBIGUOUS (DECIDE_ERROR on an illegal
# argument). Allocates nothing and touches no Python object: many threads may call it at
# once, each with its own A, rhs and scratch arrays.
cdef int decide_system(int M, int N, double* A, int lda, double* rhs, double scale,
                       double rank_lo, double rank_hi, double res_lo, double res_hi,
                       int* jpvt, double* tau, double* work, int lwork,
                       int* rank, double* rho_min, double* residual) noexcept nogil
