"""Ahead-of-time twins of the small linear path's Numba kernels (issue 6: cold start).

The first process after installation has an empty Numba cache, and compiling the trial
kernel of a linear model plus the Numba decision takes 7 to 15 s -- much longer than a
small estimate itself. The functions here are compiled when the package is built and do,
operation for operation, what these Numba kernels do:

* ``estimator_batch``, ``ffn_batch``, ``lrnn_batch``, ``relu_w2_batch``: the batch
  kernels ``_linear_kernel()`` of LinearEstimator, LinearFFN, LRNN (D or B) and
  ShallowReLU (W2) return, with the same arguments ``(dims, which, seed, trials, need,
  with_rhs, seg_start, seg_scale, alloc_i, alloc_j, C, rhs, scale)``;
* ``decide_batch``: :func:`fastmp.kernels.decide.decide_batch` (LU condition screen and
  fastmp's own pivoted QR -- *not* LAPACK's dgeqp3, which is the ``"cython"`` backend),
  same arguments.

Same operations means same bits: the draws are the C generator of ``capi.pyx`` (bit
for bit the Numba one), sums run in the Numba kernels' order, and every ``np.dot`` of a
Numba kernel is the same BLAS call Numba makes (scipy's ``cython_blas``: ``dgemm`` on
the transposed, column-major problem, or ``dgemv`` / ``ddot`` for a vector operand). The module is compiled
with ``-ffp-contract=off`` (setup.py) so that no multiply-add is fused, as Numba (fastmath
off) does not fuse them either. ``tests/test_linear_aot.py`` checks systems and
decisions against the Numba kernels trial by trial; a change of a Numba kernel without
its twin fails there.
"""
import numpy as np

from libc.math cimport fabs, isfinite, sqrt
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport ddot, dgemm, dgemv

from fastmp._ext._lapack cimport (DECIDE_AMBIGUOUS, DECIDE_MATCH, DECIDE_MATCH_RHO_FLOOR,
                                  DECIDE_NEED_RHS, DECIDE_NO_MATCH)
from fastmp._ext.capi cimport fastmp_draw_segments


# ----------------------------------------------------------------------------- helpers
cdef void _dot(const double* A, const double* B, double* out, int m, int k, int n) noexcept nogil:
    """``out = A @ B`` (C order: A m x k, B k x n, out m x n) with the BLAS call Numba's
    ``np.dot`` makes for C-contiguous operands (numba.np.linalg.dot_3_mm): zeros for an
    empty product, ``ddot`` for 1 x 1, ``dgemv`` when ``A`` or ``B`` is a single
    row/column, else ``dgemm('n', 'n', n, m, k, 1, B, n, A, k, 0, out, n)`` (the
    column-major product out^T = B^T A^T)."""
    cdef char nt = b'n'
    cdef char tr = b't'
    cdef double one = 1.0, zero = 0.0
    cdef int inc = 1
    cdef Py_ssize_t i
    if k == 0 or m == 0 or n == 0:
        for i in range(<Py_ssize_t>m * n):
            out[i] = 0.0
    elif n == 1 and m == 1:
        out[0] = ddot(&k, <double*>A, &inc, <double*>B, &inc)
    elif n == 1:
        # matrix * vector: A^T (k x m, column-major) transposed
        dgemv(&tr, &k, &m, &one, <double*>A, &k, <double*>B, &inc, &zero, out, &inc)
    elif m == 1:
        # vector * matrix: B^T (n x k, column-major) times the vector A
        dgemv(&nt, &n, &k, &one, <double*>B, &n, <double*>A, &inc, &zero, out, &inc)
    else:
        dgemm(&nt, &nt, &n, &m, &k, &one, <double*>B, &n, <double*>A, &k, &zero, out, &n)


cdef void _matmul_into(const double* A, const double* B, double* out,
                       Py_ssize_t n, Py_ssize_t k, Py_ssize_t p) noexcept nogil:
    """fastmp.kernels.linear.matmul_into: out (n x p) = A (n x k) @ B (k x p), loops."""
    cdef Py_ssize_t i, j, t
    cdef double a
    for i in range(n):
        for j in range(p):
            out[i * p + j] = 0.0
        for t in range(k):
            a = A[i * k + t]
            for j in range(p):
                out[i * p + j] += a * B[t * p + j]


cdef void _gather_columns(const double* L0, const double* R0, Py_ssize_t d, Py_ssize_t pL,
                          Py_ssize_t m, Py_ssize_t r, const int64_t* ai, const int64_t* aj,
                          double* G) noexcept nogil:
    """fastmp.kernels.linear._gather_columns: G[a, k] = L0[a, i_k], G[d + c, k] = R0[j_k, c]."""
    cdef Py_ssize_t a, c, k
    for k in range(r):
        for a in range(d):
            G[a * r + k] = L0[a * pL + ai[k]]
        for c in range(m):
            G[(d + c) * r + k] = R0[aj[k] * m + c]


cdef void _assemble_columns1(const double* L0, const double* R0, Py_ssize_t d,
                             Py_ssize_t pL, Py_ssize_t m, Py_ssize_t r,
                             const int64_t* ai, const int64_t* aj, double* C,
                             double* G) noexcept nogil:
    """fastmp.kernels.linear.assemble_columns1: C[a m + c, k] = L0[a, i_k] R0[j_k, c]
    (L0 d x pL, R0 q x m, C row-major d m x r; G scratch of (d + m) r)."""
    cdef Py_ssize_t a, c, k
    cdef double* row
    cdef const double* ga
    cdef const double* gc
    _gather_columns(L0, R0, d, pL, m, r, ai, aj, G)
    for a in range(d):
        ga = G + a * r
        for c in range(m):
            gc = G + (d + c) * r
            row = C + (a * m + c) * r
            for k in range(r):
                row[k] = ga[k] * gc[k]


cdef void _assemble_columns(const double* Ls, const double* Rs, Py_ssize_t nt,
                            Py_ssize_t d, Py_ssize_t p, Py_ssize_t q, Py_ssize_t m,
                            Py_ssize_t r, const int64_t* ai, const int64_t* aj,
                            double* C, double* G) noexcept nogil:
    """fastmp.kernels.linear.assemble_columns (Ls nt x d x p, Rs nt x q x m; G scratch of
    nt (d + m) r)."""
    cdef Py_ssize_t a, c, k, t
    cdef Py_ssize_t gs = (d + m) * r
    cdef double s
    cdef double* row
    if nt == 1:
        _assemble_columns1(Ls, Rs, d, p, m, r, ai, aj, C, G)
        return
    for t in range(nt):
        _gather_columns(Ls + t * d * p, Rs + t * q * m, d, p, m, r, ai, aj, G + t * gs)
    for a in range(d):
        for c in range(m):
            row = C + (a * m + c) * r
            for k in range(r):
                s = 0.0
                for t in range(nt):
                    s += G[t * gs + a * r + k] * G[t * gs + (d + c) * r + k]
                row[k] = s


cdef double _assemble_rhs(const double* Ls, const double* Rs, Py_ssize_t nt, Py_ssize_t d,
                          Py_ssize_t p, Py_ssize_t q, Py_ssize_t m, double* P,
                          const double* ystar, Py_ssize_t r, const int64_t* ai,
                          const int64_t* aj, double* rhs, double* work) noexcept nogil:
    """fastmp.kernels.linear.assemble_rhs (P p x q overwritten; work >= d q + 2 d m)."""
    cdef double* LP = work
    cdef double* F = work + d * q
    cdef double* frozen = F + d * m
    cdef Py_ssize_t k, t, i
    cdef double ys = 0.0, fs = 0.0
    for k in range(r):
        P[ai[k] * q + aj[k]] = 0.0
    for i in range(d * m):
        frozen[i] = 0.0
    for t in range(nt):
        _dot(Ls + t * d * p, P, LP, <int>d, <int>p, <int>q)
        _dot(LP, Rs + t * q * m, F, <int>d, <int>q, <int>m)
        for i in range(d * m):
            frozen[i] += F[i]
    for i in range(d * m):
        rhs[i] = ystar[i] - frozen[i]
        ys += ystar[i] * ystar[i]
        fs += frozen[i] * frozen[i]
    return sqrt(ys) + sqrt(fs)


cdef void _horner(const double* W, const double* B, const double* X, Py_ssize_t n,
                  Py_ssize_t b, Py_ssize_t T, Py_ssize_t m, double* h,
                  double* work) noexcept nogil:
    """fastmp.models.lrnn._horner: h = sum_t W^(T-t+1) B X_t (n x m); work >= 2 n m."""
    cdef double* tmp = work
    cdef double* s = work + n * m
    cdef Py_ssize_t t, i
    _dot(B, X, tmp, <int>n, <int>b, <int>m)
    _dot(W, tmp, h, <int>n, <int>n, <int>m)
    for t in range(1, T):
        _dot(B, X + t * b * m, tmp, <int>n, <int>b, <int>m)
        for i in range(n * m):
            s[i] = h[i] + tmp[i]
        _dot(W, s, h, <int>n, <int>n, <int>m)


cdef void _identity(double* L, Py_ssize_t d) noexcept nogil:
    memset(L, 0, d * d * sizeof(double))
    cdef Py_ssize_t a
    for a in range(d):
        L[a * d + a] = 1.0


cdef class _Batch:
    """Checked raw views of a batch kernel's arguments (the Numba kernels' signature)."""
    cdef object keep
    cdef const int64_t* dims
    cdef Py_ssize_t ndims
    cdef int which
    cdef uint64_t seed
    cdef const int64_t* trials
    cdef Py_ssize_t count
    cdef const unsigned char* need
    cdef bint with_rhs
    cdef const int64_t* seg_start
    cdef const double* seg_scale
    cdef Py_ssize_t n_seg
    cdef const int64_t* ai
    cdef const int64_t* aj
    cdef Py_ssize_t r
    cdef double* C
    cdef Py_ssize_t M
    cdef double* rhs
    cdef double* scale

    def __init__(self, dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                 alloc_i, alloc_j, C, rhs, scale):
        cdef const int64_t[::1] dv = np.ascontiguousarray(dims, dtype=np.int64)
        cdef const int64_t[::1] tv = np.ascontiguousarray(trials, dtype=np.int64)
        cdef const unsigned char[::1] nv = np.ascontiguousarray(need, dtype=np.bool_).view(np.uint8)
        cdef const int64_t[::1] sv = np.ascontiguousarray(seg_start, dtype=np.int64)
        cdef const double[::1] cv = np.ascontiguousarray(seg_scale, dtype=np.float64)
        cdef const int64_t[::1] iv = np.ascontiguousarray(alloc_i, dtype=np.int64)
        cdef const int64_t[::1] jv = np.ascontiguousarray(alloc_j, dtype=np.int64)
        cdef double[:, :, ::1] Cv = C
        cdef double[:, ::1] rv = rhs
        cdef double[::1] scv = scale
        if sv.shape[0] != cv.shape[0] + 1 or nv.shape[0] != cv.shape[0]:
            raise ValueError("seg_start needs one entry more than seg_scale and need")
        if iv.shape[0] != jv.shape[0] or Cv.shape[2] != iv.shape[0]:
            raise ValueError("alloc_i, alloc_j and the columns of C disagree")
        if Cv.shape[0] < tv.shape[0] or rv.shape[0] < tv.shape[0] or scv.shape[0] < tv.shape[0] \
                or rv.shape[1] != Cv.shape[1]:
            raise ValueError("C, rhs, scale need a row per trial and rhs one entry per equation")
        self.keep = (dv, tv, nv, sv, cv, iv, jv, Cv, rv, scv)
        self.dims = &dv[0]
        self.ndims = dv.shape[0]
        self.which = which
        self.seed = <uint64_t>seed
        self.count = tv.shape[0]
        self.trials = &tv[0] if self.count else NULL
        self.n_seg = cv.shape[0]
        self.need = &nv[0]
        self.with_rhs = bool(with_rhs)
        self.seg_start = &sv[0]
        self.seg_scale = &cv[0]
        self.r = iv.shape[0]
        self.ai = &iv[0] if self.r else NULL
        self.aj = &jv[0] if self.r else NULL
        self.M = Cv.shape[1]
        self.C = &Cv[0, 0, 0] if Cv.size else NULL
        self.rhs = &rv[0, 0] if rv.size else NULL
        self.scale = &scv[0] if scv.shape[0] else NULL

    cdef inline void draw(self, Py_ssize_t k, double* buf) noexcept nogil:
        fastmp_draw_segments(self.seed, <uint64_t>self.trials[k], self.n_seg, self.seg_start,
                             self.seg_scale, self.need, buf)

    cdef inline double* seg(self, double* buf, Py_ssize_t s) noexcept nogil:
        return buf + self.seg_start[s]

    cdef inline void no_rhs(self, Py_ssize_t k) noexcept nogil:
        cdef Py_ssize_t i
        for i in range(self.M):
            self.rhs[k * self.M + i] = 0.0
        self.scale[k] = -1.0


def _scratch(*sizes):
    """One float64 array per size (at least one element each)."""
    return [np.empty(max(int(s), 1)) for s in sizes]


# ------------------------------------------------------------------------- kernels
def estimator_batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                    alloc_i, alloc_j, C, rhs, scale):
    """fastmp.models.linear_estimator._estimator_batch (dims = (q, d))."""
    cdef _Batch B = _Batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                           alloc_i, alloc_j, C, rhs, scale)
    cdef Py_ssize_t q = B.dims[0], d = B.dims[1]
    cdef Py_ssize_t m = B.M // d, k
    cdef double[::1] buf, Ls, Rs, P, ys, work
    buf, Ls, Rs, P, ys, work = _scratch(B.seg_start[B.n_seg], d * d, q * m, d * q, d * m,
                                        d * q + 2 * d * m)
    cdef double[::1] asm = _scratch((d + m) * B.r)[0]  # assembly's gathered columns
    cdef double* X
    with nogil:
        _identity(&Ls[0], d)
        for k in range(B.count):
            B.draw(k, &buf[0])
            X = B.seg(&buf[0], 2)
            memcpy(&Rs[0], X, q * m * sizeof(double))
            _assemble_columns(&Ls[0], &Rs[0], 1, d, d, q, m, B.r, B.ai, B.aj, B.C + k * B.M * B.r,
                              &asm[0])
            if B.with_rhs:
                memcpy(&P[0], B.seg(&buf[0], 1), d * q * sizeof(double))
                _dot(B.seg(&buf[0], 0), X, &ys[0], <int>d, <int>q, <int>m)
                B.scale[k] = _assemble_rhs(&Ls[0], &Rs[0], 1, d, d, q, m, &P[0], &ys[0], B.r,
                                           B.ai, B.aj, B.rhs + k * B.M, &work[0])
            else:
                B.no_rhs(k)


def ffn_batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
              alloc_i, alloc_j, C, rhs, scale):
    """fastmp.models.linear_ffn._ffn_batch (dims = (L, q, n_1, ..., d))."""
    cdef _Batch B = _Batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                           alloc_i, alloc_j, C, rhs, scale)
    cdef Py_ssize_t L = B.dims[0]
    cdef const int64_t* w = B.dims + 1
    cdef Py_ssize_t q = w[0], d = w[L], m = B.M // d, wmax = 0, l, i, k, wi = B.which
    if B.ndims != L + 2 or not 0 <= wi < L:
        raise ValueError("ffn_batch: dims must be (L, widths...) and 0 <= which < L")
    for l in range(L + 1):
        wmax = max(wmax, w[l])
    cdef double[::1] buf, Ls, Rs, P, ra, rb, ga, gb, h1, h2, work
    buf, Ls, Rs, P, ra, rb, ga, gb, h1, h2, work = _scratch(
        B.seg_start[B.n_seg], d * w[wi + 1], w[wi] * m, w[wi + 1] * w[wi], wmax * m,
        wmax * m, d * wmax, d * wmax, wmax * m, wmax * m, d * w[wi] + 2 * d * m)
    cdef double[::1] asm = _scratch((d + m) * B.r)[0]  # assembly's gathered columns
    cdef double* X
    cdef double* src
    cdef double* dst
    cdef double* gsrc
    cdef double* gdst
    cdef double* h
    cdef double* hn
    cdef Py_ssize_t pL
    with nogil:
        for k in range(B.count):
            B.draw(k, &buf[0])
            X = B.seg(&buf[0], 2 * L)
            # R = W_{which-1} ... W_0 X (student layers below the learned one)
            src = X
            for l in range(wi):
                dst = &ra[0] if l % 2 == 0 else &rb[0]
                _matmul_into(B.seg(&buf[0], L + l), src, dst, w[l + 1], w[l], m)
                src = dst
            if wi == L - 1:
                _identity(&Ls[0], d)
                memcpy(&Rs[0], src, w[wi] * m * sizeof(double))
                _assemble_columns1(&Ls[0], &Rs[0], d, d, m, B.r, B.ai, B.aj,
                                   B.C + k * B.M * B.r, &asm[0])
            else:
                # G = W_{L-1} ... W_{which+1} (student layers above it)
                gsrc = B.seg(&buf[0], 2 * L - 1)
                pL = w[L - 1]
                i = 0
                for l in range(L - 2, wi, -1):
                    gdst = &ga[0] if i % 2 == 0 else &gb[0]
                    _matmul_into(gsrc, B.seg(&buf[0], L + l), gdst, d, w[l + 1], w[l])
                    gsrc = gdst
                    pL = w[l]
                    i += 1
                _assemble_columns1(gsrc, src, d, pL, m, B.r, B.ai, B.aj, B.C + k * B.M * B.r,
                                   &asm[0])
                if B.with_rhs:
                    memcpy(&Ls[0], gsrc, d * w[wi + 1] * sizeof(double))
                    memcpy(&Rs[0], src, w[wi] * m * sizeof(double))
            if B.with_rhs:
                # teacher output: h = W_{L-1} ... W_0 X through np.dot, like the kernel
                h = X
                for l in range(L):
                    hn = &h1[0] if l % 2 == 0 else &h2[0]
                    _dot(B.seg(&buf[0], l), h, hn, <int>w[l + 1], <int>w[l], <int>m)
                    h = hn
                memcpy(&P[0], B.seg(&buf[0], L + wi), w[wi + 1] * w[wi] * sizeof(double))
                B.scale[k] = _assemble_rhs(&Ls[0], &Rs[0], 1, d, w[wi + 1], w[wi], m, &P[0],
                                           h, B.r, B.ai, B.aj, B.rhs + k * B.M, &work[0])
            else:
                B.no_rhs(k)


def lrnn_batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
               alloc_i, alloc_j, C, rhs, scale):
    """fastmp.models.lrnn._lrnn_batch (dims = (n, T, b, d); which 1 = B, 2 = D)."""
    cdef _Batch B = _Batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                           alloc_i, alloc_j, C, rhs, scale)
    cdef Py_ssize_t n = B.dims[0], T = B.dims[1], b = B.dims[2], d = B.dims[3]
    cdef Py_ssize_t m = B.M // d, k, t, nt, p, qq
    if B.which not in (1, 2):
        raise ValueError("lrnn_batch: which must be 1 (B) or 2 (D)")
    if B.which == 2:
        nt, p, qq = 1, d, n
    else:
        nt, p, qq = T, n, b
    cdef double[::1] buf, Ls, Rs, P, G, G2, hs, ys, hw, work
    buf, Ls, Rs, P, G, G2, hs, ys, hw, work = _scratch(
        B.seg_start[B.n_seg], nt * d * p, nt * qq * m, p * qq, d * n, d * n, n * m, d * m,
        2 * n * m, d * qq + 2 * d * m)
    cdef double[::1] asm = _scratch(nt * (d + m) * B.r)[0]  # assembly's gathered columns
    cdef double* Ws
    cdef double* Bs
    cdef double* Ds
    cdef double* X
    cdef double* g
    cdef double* gn
    with nogil:
        if B.which == 2:
            _identity(&Ls[0], d)
        for k in range(B.count):
            B.draw(k, &buf[0])
            Ws = B.seg(&buf[0], 3)
            Bs = B.seg(&buf[0], 4)
            Ds = B.seg(&buf[0], 5)
            X = B.seg(&buf[0], 6)
            if B.which == 2:
                _horner(Ws, Bs, X, n, b, T, m, &Rs[0], &hw[0])
            else:
                g = &G[0]
                _dot(Ds, Ws, g, <int>d, <int>n, <int>n)
                memcpy(&Ls[(T - 1) * d * n], g, d * n * sizeof(double))
                for t in range(T - 2, -1, -1):
                    gn = &G2[0] if g == &G[0] else &G[0]
                    _dot(g, Ws, gn, <int>d, <int>n, <int>n)
                    g = gn
                    memcpy(&Ls[t * d * n], g, d * n * sizeof(double))
                memcpy(&Rs[0], X, T * b * m * sizeof(double))
            _assemble_columns(&Ls[0], &Rs[0], nt, d, p, qq, m, B.r, B.ai, B.aj,
                              B.C + k * B.M * B.r, &asm[0])
            if B.with_rhs:
                _horner(B.seg(&buf[0], 0), B.seg(&buf[0], 1), X, n, b, T, m, &hs[0], &hw[0])
                _dot(B.seg(&buf[0], 2), &hs[0], &ys[0], <int>d, <int>n, <int>m)
                memcpy(&P[0], Ds if B.which == 2 else Bs, p * qq * sizeof(double))
                B.scale[k] = _assemble_rhs(&Ls[0], &Rs[0], nt, d, p, qq, m, &P[0], &ys[0],
                                           B.r, B.ai, B.aj, B.rhs + k * B.M, &work[0])
            else:
                B.no_rhs(k)


def relu_w2_batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                  alloc_i, alloc_j, C, rhs, scale):
    """fastmp.models.shallow_relu._relu_w2_batch (dims = (q, n, d))."""
    cdef _Batch B = _Batch(dims, which, seed, trials, need, with_rhs, seg_start, seg_scale,
                           alloc_i, alloc_j, C, rhs, scale)
    cdef Py_ssize_t q = B.dims[0], n = B.dims[1], d = B.dims[2]
    cdef Py_ssize_t m = B.M // d, k, i
    cdef double[::1] buf, Ls, Rs, P, hid, ys, work
    buf, Ls, Rs, P, hid, ys, work = _scratch(B.seg_start[B.n_seg], d * d, n * m, d * n,
                                             n * m, d * m, d * n + 2 * d * m)
    cdef double[::1] asm = _scratch((d + m) * B.r)[0]  # assembly's gathered columns
    cdef double* X
    cdef double v
    with nogil:
        _identity(&Ls[0], d)
        for k in range(B.count):
            B.draw(k, &buf[0])
            X = B.seg(&buf[0], 4)
            _dot(B.seg(&buf[0], 2), X, &Rs[0], <int>n, <int>q, <int>m)
            for i in range(n * m):  # np.maximum(x, 0.0): x where x >= 0.0 (keeps -0.0)
                v = Rs[i]
                Rs[i] = v if v >= 0.0 else 0.0
            _assemble_columns(&Ls[0], &Rs[0], 1, d, d, n, m, B.r, B.ai, B.aj,
                              B.C + k * B.M * B.r, &asm[0])
            if B.with_rhs:
                _dot(B.seg(&buf[0], 0), X, &hid[0], <int>n, <int>q, <int>m)
                for i in range(n * m):
                    v = hid[i]
                    hid[i] = v if v >= 0.0 else 0.0
                _dot(B.seg(&buf[0], 1), &hid[0], &ys[0], <int>d, <int>n, <int>m)
                memcpy(&P[0], B.seg(&buf[0], 3), d * n * sizeof(double))
                B.scale[k] = _assemble_rhs(&Ls[0], &Rs[0], 1, d, d, n, m, &P[0], &ys[0],
                                           B.r, B.ai, B.aj, B.rhs + k * B.M, &work[0])
            else:
                B.no_rhs(k)


# ------------------------------------------------------------------------ decision
cdef int _decide_inplace(double* C, Py_ssize_t M, Py_ssize_t N, double* rhs, double scale,
                         double rank_lo, double rank_hi, double res_lo, double res_hi,
                         double* colnorm) noexcept nogil:
    """fastmp.kernels.decide.decide_inplace (C row-major M x N and rhs overwritten);
    returns the status."""
    cdef Py_ssize_t kmax = M if M < N else N
    cdef Py_ssize_t j, c, i, p, rank = 0
    cdef double ref = 0.0, rho_min = 1.0, best, s, t, alpha, rho, x0, beta, v0, tau, inv
    cdef double res, res_match
    cdef bint ambiguous = False
    for j in range(kmax):
        best = -1.0
        p = j
        for c in range(j, N):
            s = 0.0
            for i in range(j, M):
                s += C[i * N + c] * C[i * N + c]
            colnorm[c] = s
            if s > best:
                best = s
                p = c
        if p != j:
            for i in range(M):
                t = C[i * N + j]
                C[i * N + j] = C[i * N + p]
                C[i * N + p] = t
        alpha = sqrt(best)
        if j == 0:
            ref = alpha
            if ref == 0.0:
                break
        rho = alpha / ref
        if rho >= rank_hi:
            rank += 1
            rho_min = rho
        else:
            if rho > rank_lo:
                ambiguous = True
            break
        x0 = C[j * N + j]
        beta = -alpha if x0 >= 0.0 else alpha
        v0 = x0 - beta
        tau = (beta - x0) / beta
        inv = 1.0 / v0
        for i in range(j + 1, M):
            C[i * N + j] *= inv
        C[j * N + j] = beta
        for c in range(j + 1, N):
            s = C[j * N + c]
            for i in range(j + 1, M):
                s += C[i * N + j] * C[i * N + c]
            s *= tau
            C[j * N + c] -= s
            for i in range(j + 1, M):
                C[i * N + c] -= s * C[i * N + j]
        s = rhs[j]
        for i in range(j + 1, M):
            s += C[i * N + j] * rhs[i]
        s *= tau
        rhs[j] -= s
        for i in range(j + 1, M):
            rhs[i] -= s * C[i * N + j]
    res = 0.0
    for i in range(rank, M):
        res += rhs[i] * rhs[i]
    if scale < 0.0:
        if rank == M and not ambiguous:
            return DECIDE_MATCH
        return DECIDE_NEED_RHS
    res = sqrt(res) / scale if scale > 0.0 else sqrt(res)
    res_match = res * (rho_min if rho_min >= DECIDE_MATCH_RHO_FLOOR else DECIDE_MATCH_RHO_FLOOR)
    res *= rho_min
    if ambiguous:
        return DECIDE_AMBIGUOUS
    if res_match <= res_lo:
        return DECIDE_MATCH
    if res >= res_hi:
        return DECIDE_NO_MATCH
    return DECIDE_AMBIGUOUS


cdef void _lu_solve(const double* LU, const int64_t* piv, Py_ssize_t n, const double* b,
                    double* out, bint transpose) noexcept nogil:
    """fastmp.kernels.decide._lu_solve."""
    cdef Py_ssize_t i, j, k, p
    cdef double s, t
    for i in range(n):
        out[i] = b[i]
    if not transpose:
        for k in range(n):
            p = piv[k]
            if p != k:
                t = out[k]
                out[k] = out[p]
                out[p] = t
        for i in range(n):
            s = out[i]
            for j in range(i):
                s -= LU[i * n + j] * out[j]
            out[i] = s
        for i in range(n - 1, -1, -1):
            s = out[i]
            for j in range(i + 1, n):
                s -= LU[i * n + j] * out[j]
            out[i] = s / LU[i * n + i]
    else:
        for i in range(n):
            s = out[i]
            for j in range(i):
                s -= LU[j * n + i] * out[j]
            out[i] = s / LU[i * n + i]
        for i in range(n - 1, -1, -1):
            s = out[i]
            for j in range(i + 1, n):
                s -= LU[j * n + i] * out[j]
            out[i] = s
        for k in range(n - 1, -1, -1):
            p = piv[k]
            if p != k:
                t = out[k]
                out[k] = out[p]
                out[p] = t


cdef double _lu_rcond(double* A, Py_ssize_t n, int64_t* piv, double* x, double* y,
                      double* z) noexcept nogil:
    """fastmp.kernels.decide.lu_rcond (A n x n row-major, overwritten)."""
    cdef Py_ssize_t i, j, k, p, it, jmax
    cdef double anorm = 0.0, s, big, t, inv, f, est, est_new, zmax, ztx
    for j in range(n):
        s = 0.0
        for i in range(n):
            s += fabs(A[i * n + j])
        anorm = anorm if anorm >= s else s
    for k in range(n):
        p = k
        big = fabs(A[k * n + k])
        for i in range(k + 1, n):
            if fabs(A[i * n + k]) > big:
                big = fabs(A[i * n + k])
                p = i
        piv[k] = p
        if big == 0.0:
            return 0.0
        if p != k:
            for j in range(n):
                t = A[k * n + j]
                A[k * n + j] = A[p * n + j]
                A[p * n + j] = t
        inv = 1.0 / A[k * n + k]
        for i in range(k + 1, n):
            A[i * n + k] *= inv
            f = A[i * n + k]
            if f != 0.0:
                for j in range(k + 1, n):
                    A[i * n + j] -= f * A[k * n + j]
    if anorm == 0.0:
        return 0.0
    for i in range(n):
        x[i] = 1.0 / n
    est = 0.0
    for it in range(5):
        _lu_solve(A, piv, n, x, y, False)
        est_new = 0.0
        for i in range(n):
            est_new += fabs(y[i])
        if it > 0 and est_new <= est:
            break
        est = est_new
        for i in range(n):
            y[i] = 1.0 if y[i] >= 0.0 else -1.0
        _lu_solve(A, piv, n, y, z, True)
        jmax = 0
        zmax = -1.0
        ztx = 0.0
        for i in range(n):
            ztx += z[i] * x[i]
            if fabs(z[i]) > zmax:
                zmax = fabs(z[i])
                jmax = i
        if zmax <= ztx:
            break
        for i in range(n):
            x[i] = 0.0
        x[jmax] = 1.0
    if not isfinite(est) or est == 0.0:
        return 0.0
    return 1.0 / (anorm * est)


def decide_batch(C, rhs, scale, double rank_lo, double rank_hi, double res_lo,
                 double res_hi, signed char[::1] status, double screen=0.0):
    """fastmp.kernels.decide.decide_batch: the status of every system of a batch (inputs
    left unchanged; ``screen > 0``: the LU condition screen first, for square systems)."""
    cdef const double[:, :, ::1] Cv = np.ascontiguousarray(C, dtype=np.float64)
    cdef const double[:, ::1] rv = np.ascontiguousarray(rhs, dtype=np.float64)
    cdef const double[::1] sv = np.ascontiguousarray(scale, dtype=np.float64)
    cdef Py_ssize_t nb = Cv.shape[0], M = Cv.shape[1], N = Cv.shape[2], b
    if rv.shape[0] != nb or sv.shape[0] != nb or status.shape[0] != nb or rv.shape[1] != M:
        raise ValueError("decide_batch: C, rhs, scale and status disagree in shape")
    if nb == 0:
        return
    cdef double[::1] work, r, colnorm, x, y, z
    work, r, colnorm, x, y, z = _scratch(M * N, M, N, M, M, M)
    cdef int64_t[::1] piv = np.empty(max(M, 1), dtype=np.int64)
    with nogil:
        for b in range(nb):
            memcpy(&work[0], &Cv[b, 0, 0], M * N * sizeof(double))
            if screen > 0.0 and M == N:
                if _lu_rcond(&work[0], M, &piv[0], &x[0], &y[0], &z[0]) >= screen:
                    status[b] = DECIDE_MATCH
                    continue
                memcpy(&work[0], &Cv[b, 0, 0], M * N * sizeof(double))
            if M:
                memcpy(&r[0], &rv[b, 0], M * sizeof(double))
            status[b] = <signed char>_decide_inplace(&work[0], M, N, &r[0], sv[b], rank_lo,
                                                     rank_hi, res_lo, res_hi, &colnorm[0])
