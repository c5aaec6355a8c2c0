# fastmp's C-level API: draw a trial, assemble its allocated linear system, decide a match.
#
# For other Cython or C simulation codes that want fastmp's per-trial work without Python
# overhead and without the GIL. From Cython:
#
#     from fastmp._ext.capi cimport (fastmp_draw_segments, fastmp_assemble_columns,
#                                    fastmp_assemble_rhs, fastmp_decide, ...)
#
# and compile with this file on the include path (it is installed next to the compiled
# module ``fastmp._ext.capi``; with a lenient editable install pass
# ``include_path=["<repo>/csrc"]`` to cythonize). Nothing has to be linked: Cython imports
# ``fastmp._ext.capi`` when the calling module is imported and takes the function
# pointers from its ``__pyx_capi__``. C code (or Numba, through
# ``numba.extending.get_cython_function_address("fastmp._ext.capi", name)``) gets the
# same pointers from the PyCapsules in ``fastmp._ext.capi.__pyx_capi__``; every argument
# is a scalar or a pointer for that reason.
#
# Conventions for every function below:
# * Pure functions of their arguments: no global state, no allocation, no Python object,
#   no GIL. Any number of threads may call them at once on distinct output buffers.
# * Buffers belong to the caller; nothing is kept after a call returns. "Row-major
#   (a, b, c)" means element [i, j, k] at offset (i*b + j)*c + k.
# * Random numbers are bit for bit those of fastmp's Numba kernels
#   (fastmp.kernels.rng) for the same (seed, trial, stream): tests/test_capi.py checks
#   this, so a change of either generator fails the tests instead of drifting silently.
#   This is the only C implementation of the generator.

from libc.stdint cimport int64_t, uint64_t


# Status codes of a match decision, equal to fastmp.MATCH, NO_MATCH, AMBIGUOUS (and
# fastmp._config.NEED_RHS, _lapack.DECIDE_ERROR); tests/test_capi.py checks they agree.
cdef enum:
    FASTMP_NO_MATCH = 0
    FASTMP_MATCH = 1
    FASTMP_AMBIGUOUS = 2
    FASTMP_NEED_RHS = 3
    FASTMP_ERROR = -1


# ----------------------------------------------------------------------------- RNG
# xoshiro256** state (4 x uint64, written to ``s``) of stream ``stream`` of trial
# ``trial`` under ``seed``; fastmp.kernels.rng.trial_state. Streams of distinct
# (seed, trial, stream) are independent. fastmp's models give weight matrix / input
# segment k of a trial the stream k (fastmp_draw_segments).
cdef void fastmp_trial_state(uint64_t seed, uint64_t trial, uint64_t stream,
                             uint64_t* s) noexcept nogil

# Next 64 random bits of the state ``s`` (advanced in place); fastmp.kernels.rng.next_u64.
cdef uint64_t fastmp_next_u64(uint64_t* s) noexcept nogil

# Uniform on the open interval (0, 1) with 53 random bits (one fastmp_next_u64).
cdef double fastmp_next_uniform(uint64_t* s) noexcept nogil

# One N(0, 1) draw: the 256-layer ziggurat of fastmp.kernels.rng.next_normal (one
# fastmp_next_u64 on ~99% of draws). Valid once fastmp._ext.capi is imported (its tables
# are filled at import).
cdef double fastmp_next_normal(uint64_t* s) noexcept nogil

# Fill out[0:n] with i.i.d. N(0, 1) draws (fastmp_next_normal). fastmp.kernels.rng.fill_normal.
cdef void fastmp_fill_normal(uint64_t* s, double* out, Py_ssize_t n) noexcept nogil

# One trial's random buffer, fastmp.kernels.rng.draw_segments: segment k is
# out[seg_start[k]:seg_start[k+1]], i.i.d. N(0, seg_scale[k]^2) from stream k, drawn
# only where need[k] != 0 (other segments are left untouched). seg_start has n_seg + 1
# entries. fastmp's models describe their segments with Model.segment_arrays(m)
# (Appendix E.3: teacher weights, student weights, inputs; scale 1/sqrt(fan-in)).
cdef void fastmp_draw_segments(uint64_t seed, uint64_t trial, Py_ssize_t n_seg,
                               const int64_t* seg_start, const double* seg_scale,
                               const unsigned char* need, double* out) noexcept nogil


# ------------------------------------------------------------------------ assembly
# Allocated columns of a linear allocation (Lemma A.3, fastmp.kernels.linear): the output
# is Y = sum_t L_t P R_t with L_t (d x p), P (p x q) the learned parameter, R_t (q x m).
# Column k of C is vec(sum_t L_t[:, i_k] R_t[j_k, :]) (row-major vec: row a*m + c), for
# the allocated weights (i_k, j_k), k < r.
#
# Ls        row-major (n_terms, d, p);  Rs: row-major (n_terms, q, m).
# alloc_i, alloc_j   length r, the allocated weights (0-based row, column of P).
# C         output, COLUMN-major d*m x r with leading dimension ldc >= d*m: entry
#           (row, k) at C[row + k*ldc] -- the layout fastmp_decide takes. Each entry is
#           summed over t in order, exactly as the Numba kernel does (same bits).
cdef void fastmp_assemble_columns(Py_ssize_t n_terms, Py_ssize_t d, Py_ssize_t p,
                                  Py_ssize_t q, Py_ssize_t m, const double* Ls,
                                  const double* Rs, Py_ssize_t r, const int64_t* alloc_i,
                                  const int64_t* alloc_j, double* C,
                                  Py_ssize_t ldc) noexcept nogil

# Right-hand side rhs = vec(Y* - sum_t L_t P0 R_t) (length d*m, row-major vec), where
# P0 is the student's parameter P with its allocated entries set to zero. Returns the
# scale ||Y*||_F + ||sum_t L_t P0 R_t||_F that fastmp_decide judges the residual against.
#
# P         row-major p x q, the student's (frozen) draw of the learned parameter;
#           its allocated entries are OVERWRITTEN with 0.
# ystar     row-major d x m, the teacher's outputs.
# work      scratch of length >= d*q + d*m.
# Agrees with fastmp.kernels.linear.assemble_rhs to rounding (that kernel multiplies
# through BLAS); the decision is insensitive to it.
cdef double fastmp_assemble_rhs(Py_ssize_t n_terms, Py_ssize_t d, Py_ssize_t p,
                                Py_ssize_t q, Py_ssize_t m, const double* Ls,
                                const double* Rs, double* P, const double* ystar,
                                Py_ssize_t r, const int64_t* alloc_i,
                                const int64_t* alloc_j, double* rhs,
                                double* work) noexcept nogil


# ------------------------------------------------------------------------ decision
# fastmp's default thresholds (rank_lo, rank_hi, res_lo, res_hi), copied into tol[0:4]
# from fastmp.Tolerances() when the module was imported (one source of truth).
cdef void fastmp_default_tolerances(double* tol) noexcept nogil

# Length of the double workspace fastmp_decide needs for an M x N system (LAPACK's
# optimal dgeqp3 size, queried here: call once per shape, not once per system).
cdef Py_ssize_t fastmp_decide_work_size(int M, int N) noexcept nogil

# Does C w = rhs have a real solution?  The decision of fastmp.match_probability's
# linear estimator (backend "cython"): pivoted QR by LAPACK dgeqp3; thresholds
# documented in fastmp.Tolerances. Calls fastmp._ext._lapack.decide_system.
#
# M, N      C is M x N (equations x learnable weights: d*m x r).
# C         column-major, entry (i, j) at C[i + j*ldc], ldc >= max(1, M); OVERWRITTEN.
# rhs       length M; OVERWRITTEN. scale: from fastmp_assemble_rhs (> 0); a negative
#           scale means "rhs not drawn": only a full row rank then decides (MATCH),
#           otherwise FASTMP_NEED_RHS.
# tol       4 thresholds (rank_lo, rank_hi, res_lo, res_hi), e.g. from
#           fastmp_default_tolerances.
# iwork     int scratch, length >= N.   work: length >= fastmp_decide_work_size(M, N).
# rank, rho_min, residual   outputs, each may be NULL (see _lapack.pxd).
# Returns FASTMP_MATCH, FASTMP_NO_MATCH, FASTMP_AMBIGUOUS (fastmp then re-decides such a
# trial in exact arithmetic; a C caller should count it separately, never as a match),
# FASTMP_NEED_RHS, or FASTMP_ERROR for illegal sizes (M < 0, N < 0, ldc < M).
cdef int fastmp_decide(int M, int N, double* C, int ldc, double* rhs, double scale,
                       const double* tol, int* iwork, double* work, Py_ssize_t lwork,
                       int* rank, double* rho_min, double* residual) noexcept nogil
