"""fastmp's C-level API (declarations and documentation: ``capi.pxd`` beside this file).

The ``cdef`` functions are for other Cython / C codes (``from fastmp._ext.capi cimport
...``); the Python functions below are thin test twins (scikit-learn's ``cpdef``-twin
habit), used by ``tests/test_capi.py`` to check the C generator against the Numba one bit
for bit and the assembly against :mod:`fastmp.kernels.linear`.

This file is the only C implementation of fastmp's random streams
(:mod:`fastmp.kernels.rng`): SplitMix64-seeded xoshiro256** per (seed, trial, stream),
ziggurat normals (256 layers; the tables are copied from :mod:`fastmp.kernels.rng` at
import, so there is one definition of them). ``log`` and ``exp`` (rare ziggurat paths)
are the C library's, as in Numba's kernels (LLVM lowers ``np.log`` etc. to the same libm
calls, fastmath off), which is what makes the two bit-identical.
"""
import numpy as np

from libc.math cimport exp, log, sqrt
from libc.stdint cimport int64_t, uint64_t

from fastmp._ext._lapack cimport decide_lwork, decide_system

cdef uint64_t _GOLDEN = 0x9E3779B97F4A7C15ULL
cdef uint64_t _M1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t _M2 = 0x94D049BB133111EBULL
cdef uint64_t _TRIAL_KEY = 0xD1B54A32D192ED03ULL

# default thresholds, filled from fastmp.Tolerances() at import (see the end of the file)
cdef double _DEFAULT_TOL[4]

# ziggurat tables, filled from fastmp.kernels.rng at import (see the end of the file)
cdef uint64_t _ZIG_K[256]
cdef double _ZIG_W[256]
cdef double _ZIG_F[256]
cdef double _ZIG_R = 0.0
cdef double _ZIG_INV_R = 0.0
# the ziggurat's sign bit as a factor (see _next_normal)
cdef double _SIGN[2]
_SIGN[0] = 1.0
_SIGN[1] = -1.0


cdef inline uint64_t _splitmix64(uint64_t x) noexcept nogil:
    cdef uint64_t z = x + _GOLDEN
    z = (z ^ (z >> 30)) * _M1
    z = (z ^ (z >> 27)) * _M2
    return z ^ (z >> 31)


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef void fastmp_trial_state(uint64_t seed, uint64_t trial, uint64_t stream,
                             uint64_t* s) noexcept nogil:
    cdef uint64_t key = (_splitmix64(seed) ^ _splitmix64(trial * _TRIAL_KEY)
                         ^ _splitmix64(stream * _GOLDEN + 1))
    cdef uint64_t x = key
    cdef int i
    for i in range(4):
        x = x + _GOLDEN
        s[i] = _splitmix64(x)


cdef inline uint64_t _next_u64(uint64_t* s) noexcept nogil:
    cdef uint64_t result = _rotl(s[1] * 5, 7) * 9
    cdef uint64_t t = s[1] << 17
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


cdef inline double _next_uniform(uint64_t* s) noexcept nogil:
    return (<double>(_next_u64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0)


cdef double _normal_rejected(uint64_t* s, uint64_t idx, double x, uint64_t neg) noexcept nogil:
    # the rest of _next_normal for a draw outside its layer's rectangle (~1%): the tail or
    # wedge test, and fresh draws if that rejects. Kept out of line so that the fast
    # path's loop has the registers to itself.
    cdef double xx, yy
    if idx == 0:
        while True:
            xx = -_ZIG_INV_R * log(_next_uniform(s))
            yy = -log(_next_uniform(s))
            if yy + yy > xx * xx:
                return -(_ZIG_R + xx) if neg else _ZIG_R + xx
    if (_ZIG_F[idx - 1] - _ZIG_F[idx]) * _next_uniform(s) + _ZIG_F[idx] < exp(-0.5 * x * x):
        return x
    return _next_normal(s)


cdef inline double _layer_draw(uint64_t u, uint64_t* idx, uint64_t* neg, uint64_t* rabs) noexcept nogil:
    # the ziggurat's fast path for one uint64: layer, sign and abscissa. rabs < 2**52:
    # converting it as signed is exact and one instruction (unsigned 64-bit conversion is
    # a branchy sequence before AVX-512). The sign is applied by a multiplication with
    # +-1 (exact) instead of a branch, which gcc kept and the CPU mispredicted on half of
    # the draws.
    idx[0] = u & 0xFF
    u >>= 8
    neg[0] = u & 1
    rabs[0] = (u >> 1) & 0x000FFFFFFFFFFFFFULL
    return <double><int64_t>rabs[0] * _ZIG_W[idx[0]] * _SIGN[neg[0]]


cdef double _next_normal(uint64_t* s) noexcept nogil:
    cdef uint64_t idx, neg, rabs
    cdef double x = _layer_draw(_next_u64(s), &idx, &neg, &rabs)
    if rabs < _ZIG_K[idx]:
        return x
    return _normal_rejected(s, idx, x, neg)


cdef uint64_t fastmp_next_u64(uint64_t* s) noexcept nogil:
    return _next_u64(s)


cdef double fastmp_next_uniform(uint64_t* s) noexcept nogil:
    return _next_uniform(s)


cdef double fastmp_next_normal(uint64_t* s) noexcept nogil:
    return _next_normal(s)


cdef inline void _fill_normal_scaled(uint64_t* s, double* out, Py_ssize_t n,
                                     double scale) noexcept nogil:
    # The generator's state lives in four scalar locals (registers) on the fast path;
    # through the pointer argument every store to ``out`` could alias it (Python builds
    # extensions with -fno-strict-aliasing) and forced reloads. Same numbers as
    # _next_normal in turn; 2.5x faster than the first version of this loop.
    cdef uint64_t s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3]
    cdef uint64_t st[4]
    cdef uint64_t u, t, idx, neg, rabs
    cdef double x
    cdef Py_ssize_t i
    for i in range(n):
        u = _rotl(s1 * 5, 7) * 9  # _next_u64, inline
        t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 45)
        x = _layer_draw(u, &idx, &neg, &rabs)
        if rabs >= _ZIG_K[idx]:
            st[0] = s0
            st[1] = s1
            st[2] = s2
            st[3] = s3
            x = _normal_rejected(st, idx, x, neg)
            s0 = st[0]
            s1 = st[1]
            s2 = st[2]
            s3 = st[3]
        out[i] = x * scale
    s[0] = s0
    s[1] = s1
    s[2] = s2
    s[3] = s3


cdef void fastmp_fill_normal(uint64_t* s, double* out, Py_ssize_t n) noexcept nogil:
    _fill_normal_scaled(s, out, n, 1.0)


cdef void fastmp_draw_segments(uint64_t seed, uint64_t trial, Py_ssize_t n_seg,
                               const int64_t* seg_start, const double* seg_scale,
                               const unsigned char* need, double* out) noexcept nogil:
    cdef uint64_t s[4]
    cdef Py_ssize_t k
    for k in range(n_seg):
        if not need[k]:
            continue
        fastmp_trial_state(seed, trial, <uint64_t>k, s)
        # scaled as drawn: the same product as scaling afterwards, one pass fewer
        _fill_normal_scaled(s, out + seg_start[k], seg_start[k + 1] - seg_start[k],
                            seg_scale[k])


cdef void fastmp_assemble_columns(Py_ssize_t n_terms, Py_ssize_t d, Py_ssize_t p,
                                  Py_ssize_t q, Py_ssize_t m, const double* Ls,
                                  const double* Rs, Py_ssize_t r, const int64_t* alloc_i,
                                  const int64_t* alloc_j, double* C,
                                  Py_ssize_t ldc) noexcept nogil:
    cdef Py_ssize_t k, a, c, t, i, j
    cdef double acc
    for k in range(r):
        i = alloc_i[k]
        j = alloc_j[k]
        for a in range(d):
            for c in range(m):
                acc = 0.0
                for t in range(n_terms):
                    acc = acc + Ls[(t * d + a) * p + i] * Rs[(t * q + j) * m + c]
                C[a * m + c + k * ldc] = acc


cdef double fastmp_assemble_rhs(Py_ssize_t n_terms, Py_ssize_t d, Py_ssize_t p,
                                Py_ssize_t q, Py_ssize_t m, const double* Ls,
                                const double* Rs, double* P, const double* ystar,
                                Py_ssize_t r, const int64_t* alloc_i,
                                const int64_t* alloc_j, double* rhs,
                                double* work) noexcept nogil:
    cdef double* LP = work                  # d x q
    cdef double* frozen = work + d * q      # d x m
    cdef Py_ssize_t k, t, a, b, c, i
    cdef double acc, ys = 0.0, fs = 0.0
    for k in range(r):
        P[alloc_i[k] * q + alloc_j[k]] = 0.0
    for i in range(d * m):
        frozen[i] = 0.0
    for t in range(n_terms):
        for a in range(d):
            for b in range(q):
                acc = 0.0
                for i in range(p):
                    acc = acc + Ls[(t * d + a) * p + i] * P[i * q + b]
                LP[a * q + b] = acc
        for a in range(d):
            for c in range(m):
                acc = 0.0
                for b in range(q):
                    acc = acc + LP[a * q + b] * Rs[(t * q + b) * m + c]
                frozen[a * m + c] += acc
    for a in range(d):
        for c in range(m):
            rhs[a * m + c] = ystar[a * m + c] - frozen[a * m + c]
            ys += ystar[a * m + c] * ystar[a * m + c]
            fs += frozen[a * m + c] * frozen[a * m + c]
    return sqrt(ys) + sqrt(fs)


cdef void fastmp_default_tolerances(double* tol) noexcept nogil:
    cdef int i
    for i in range(4):
        tol[i] = _DEFAULT_TOL[i]


cdef Py_ssize_t fastmp_decide_work_size(int M, int N) noexcept nogil:
    cdef int kmax = M if M < N else N
    return (kmax if kmax > 0 else 1) + decide_lwork(M, N)


cdef int fastmp_decide(int M, int N, double* C, int ldc, double* rhs, double scale,
                       const double* tol, int* iwork, double* work, Py_ssize_t lwork,
                       int* rank, double* rho_min, double* residual) noexcept nogil:
    cdef int kmax = M if M < N else N
    cdef Py_ssize_t ntau = kmax if kmax > 0 else 1
    if M < 0 or N < 0 or ldc < (M if M > 1 else 1) or lwork < fastmp_decide_work_size(M, N):
        return FASTMP_ERROR
    return decide_system(M, N, C, ldc, rhs, scale, tol[0], tol[1], tol[2], tol[3],
                         iwork, work, work + ntau, <int>(lwork - ntau),
                         rank, rho_min, residual)


# ------------------------------------------------------------------ Python test twins
NO_MATCH = FASTMP_NO_MATCH
MATCH = FASTMP_MATCH
AMBIGUOUS = FASTMP_AMBIGUOUS
NEED_RHS = FASTMP_NEED_RHS
ERROR = FASTMP_ERROR


def trial_state(uint64_t seed, uint64_t trial, uint64_t stream):
    """``fastmp_trial_state`` as a ``uint64`` array of length 4."""
    out = np.empty(4, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    fastmp_trial_state(seed, trial, stream, &o[0])
    return out


def normals(uint64_t seed, uint64_t trial, uint64_t stream, Py_ssize_t n):
    """``n`` normals of stream ``(seed, trial, stream)`` (``fastmp_fill_normal``)."""
    cdef uint64_t s[4]
    cdef double[::1] o = np.empty(max(n, 1), dtype=np.float64)
    fastmp_trial_state(seed, trial, stream, s)
    with nogil:
        fastmp_fill_normal(s, &o[0], n)
    return np.asarray(o)[:n].copy()


def uniforms(uint64_t seed, uint64_t trial, uint64_t stream, Py_ssize_t n):
    """``n`` uniforms of stream ``(seed, trial, stream)`` (``fastmp_next_uniform``)."""
    cdef uint64_t s[4]
    cdef double[::1] o = np.empty(max(n, 1), dtype=np.float64)
    cdef Py_ssize_t i
    fastmp_trial_state(seed, trial, stream, s)
    for i in range(n):
        o[i] = fastmp_next_uniform(s)
    return np.asarray(o)[:n].copy()


def draw_segments(uint64_t seed, uint64_t trial, const int64_t[::1] seg_start,
                  const double[::1] seg_scale, need, double[::1] out):
    """``fastmp_draw_segments`` on NumPy arrays (``need``: booleans per segment)."""
    cdef Py_ssize_t n_seg = seg_scale.shape[0]
    if seg_start.shape[0] != n_seg + 1:
        raise ValueError("seg_start needs len(seg_scale) + 1 entries")
    if out.shape[0] < seg_start[n_seg]:
        raise ValueError(f"out has length {out.shape[0]}, the segments need {seg_start[n_seg]}")
    cdef const unsigned char[::1] nd = np.ascontiguousarray(need, dtype=np.uint8)
    if nd.shape[0] != n_seg:
        raise ValueError("need needs one entry per segment")
    with nogil:
        fastmp_draw_segments(seed, trial, n_seg, &seg_start[0], &seg_scale[0], &nd[0],
                             &out[0])


def assemble_columns(const double[:, :, ::1] Ls, const double[:, :, ::1] Rs,
                     const int64_t[::1] alloc_i, const int64_t[::1] alloc_j):
    """``fastmp_assemble_columns``; returns ``C`` as a ``(d*m, r)`` array."""
    cdef Py_ssize_t nt = Ls.shape[0], d = Ls.shape[1], p = Ls.shape[2]
    cdef Py_ssize_t q = Rs.shape[1], m = Rs.shape[2], r = alloc_i.shape[0]
    if Rs.shape[0] != nt or alloc_j.shape[0] != r:
        raise ValueError("Ls, Rs or alloc_i, alloc_j disagree in length")
    Cf = np.zeros((d * m, max(r, 1)), dtype=np.float64, order="F")
    cdef double[::1, :] c = Cf
    if r:
        with nogil:
            fastmp_assemble_columns(nt, d, p, q, m, &Ls[0, 0, 0], &Rs[0, 0, 0], r,
                                    &alloc_i[0], &alloc_j[0], &c[0, 0], d * m)
    return np.ascontiguousarray(Cf[:, :r])


def default_tolerances():
    """The four thresholds ``fastmp_default_tolerances`` hands to C callers."""
    cdef double t[4]
    fastmp_default_tolerances(t)
    return (t[0], t[1], t[2], t[3])


def _init_defaults():
    from fastmp._config import DEFAULT_TOLERANCES
    for i, v in enumerate(DEFAULT_TOLERANCES.as_tuple()):
        _DEFAULT_TOL[i] = v


_init_defaults()


def _load_ziggurat_tables():
    from fastmp.kernels import rng as _rng
    global _ZIG_R, _ZIG_INV_R
    cdef int i
    for i in range(256):
        _ZIG_K[i] = <uint64_t>int(_rng._ZIG_K[i])
        _ZIG_W[i] = float(_rng._ZIG_W[i])
        _ZIG_F[i] = float(_rng._ZIG_F[i])
    _ZIG_R = float(_rng._ZIG_R)
    _ZIG_INV_R = float(_rng._ZIG_INV_R)


_load_ziggurat_tables()
