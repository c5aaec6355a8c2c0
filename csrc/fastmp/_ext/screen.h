/* Lane-wise nonsingularity screen of a batch of square systems.
 *
 * Header-only: the definitions below are static and compiled into the one module that
 * includes this file (fastmp._ext._lapack), so there is no separate C source to build. */
#ifndef FASTMP_SCREEN_H
#define FASTMP_SCREEN_H

/* Systems factorised together: one AVX-512 register of doubles (two AVX2 ones). */
#define FASTMP_SCREEN_LANES 8
/* Largest ||L||_1 ||U||_1 / ||A||_1 the screen accepts. */
#define FASTMP_SCREEN_GROWTH 1e3


/* Lane-wise nonsingularity screen of square systems (fastmp's fast path for linear MP).
 *
 * Most trials of a linear allocation with as many unknowns as equations have a
 * nonsingular system, and a nonsingular system is a match whatever the right-hand side.
 * Certifying that is the estimator's hot loop, so it is written for the vector unit:
 * FASTMP_SCREEN_LANES systems are factorised together, entry (i, j) of system l stored
 * at w[(i n + j) LANES + l], so that every arithmetic step of the LU factorisation and
 * of the triangular solves is one vector instruction over the lanes. Only the row swaps
 * of partial pivoting (different rows in different lanes) are scalar.
 *
 * Acceptance of lane l needs
 *   (a) Hager's estimate (Higham's refinement, as in LAPACK's dlacn2/dgecon, run
 *       lane-wise) of the reciprocal 1-norm condition number >= `screen`, and
 *   (b) growth ||L||_1 ||U||_1 / ||A||_1 <= FASTMP_SCREEN_GROWTH.
 * The computed factors are exact for P(A + E) with ||E||_1 <= gamma_n ||L||_1 ||U||_1
 * (Higham, Accuracy and Stability, Thm 9.3), so ||E|| ||(A+E)^-1|| is at most
 * n eps growth / rcond ~ 5e-4 for n = 24 and the defaults (screen = 1e-8): A is
 * nonsingular with a margin of three to four orders of magnitude for Hager's
 * underestimate of ||A^-1||. Anything not accepted goes on to the pivoted QR decision,
 * which settles every case; the screen only ever answers "nonsingular".
 *
 * The vector width is picked at load time (gcc target_clones) on x86-64 Linux, so one
 * build runs everywhere and uses AVX-512 where the CPU has it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stddef.h>

/* The vector-extension helpers below take and return 64-byte vectors; they are always
 * inlined, so the ABI note gcc gives for the non-AVX-512 clones does not apply. (gcc
 * reports it where the inlined code lands, past the end of this header, so the warning
 * stays off for the rest of the including unit.) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif


/* 64-bit signed indices throughout: Python builds extensions with -fwrapv, and with
 * wrapping 32-bit int indices gcc cannot prove addresses affine and does not vectorise
 * (measured: 2.2x slower). */
typedef ptrdiff_t fastmp_idx_t;

/* solves with A in the condition estimate (see screen_lanes) */
#define HAGER_ITERATIONS 2

#define L FASTMP_SCREEN_LANES

/* The helpers must be inlined into each target clone to be vectorised for it; inside the
 * large translation unit Cython generates, gcc's unit-growth limits otherwise keep them
 * out of line (measured: the screen 1.5x slower). */
#if defined(__GNUC__)
#define FASTMP_INLINE static inline __attribute__((always_inline))
#else
#define FASTMP_INLINE static inline
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTMP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTMP_CLONES
#endif

/* GCC vector extensions: one value per lane. The operations below compile to one
 * AVX-512 instruction each, to two AVX2 ones or four SSE2 ones in the other target
 * clones. vloadu/vstoreu go through memcpy: no alignment or aliasing assumption. */
typedef double fastmp_v8d __attribute__((vector_size(L * sizeof(double))));
typedef long long fastmp_v8l __attribute__((vector_size(L * sizeof(long long))));

FASTMP_INLINE fastmp_v8d vload(const double *p)
{
    fastmp_v8d v;
    memcpy(&v, p, sizeof v);
    return v;
}

FASTMP_INLINE void vstore(double *p, fastmp_v8d v) { memcpy(p, &v, sizeof v); }

FASTMP_INLINE fastmp_v8d vabs(fastmp_v8d a)
{
    return (fastmp_v8d)((fastmp_v8l)a & ((fastmp_v8l){0} + 0x7fffffffffffffffLL));
}

/* m ? a : b lane-wise, for m from a vector comparison (all bits set or clear) */
FASTMP_INLINE fastmp_v8d vsel(fastmp_v8l m, fastmp_v8d a, fastmp_v8d b)
{
    return (fastmp_v8d)(((fastmp_v8l)a & m) | ((fastmp_v8l)b & ~m));
}

FASTMP_INLINE void lanes_swap(const int *restrict piv, fastmp_idx_t k, double *restrict out)
{
    for (fastmp_idx_t l = 0; l < L; l++) {
        fastmp_idx_t p = piv[k * L + l];
        if (p != k) {
            double t = out[k * L + l];
            out[k * L + l] = out[p * L + l];
            out[p * L + l] = t;
        }
    }
}

/* out = A^-1 b (transpose = 0) or A^-T b (transpose = 1) lane-wise, from the factors
 * in LINPACK's storage (the solves of dgesl). Every solve but L^T's is column-oriented:
 * each step updates independent entries, so no chain of dependent FMAs sets the pace
 * (a row-oriented dot product waits on the FMA latency at every term). */
FASTMP_INLINE void lanes_solve(const double *restrict w, const int *restrict piv, fastmp_idx_t n,
                               const double *restrict b, double *restrict out,
                               int transpose)
{
    const size_t rs = (size_t)n * L; /* row stride of w */
    memcpy(out, b, sizeof(double) * (size_t)n * L);
    if (!transpose) {
        /* L: swap, then eliminate below, column by column */
        for (fastmp_idx_t k = 0; k < n - 1; k++) {
            lanes_swap(piv, k, out);
            fastmp_v8d xk = vload(out + k * L);
            for (fastmp_idx_t i = k + 1; i < n; i++)
                vstore(out + i * L, vload(out + i * L) - vload(w + i * rs + k * L) * xk);
        }
        /* U: back substitution by columns (no chain of dependent FMAs: the updates of
         * the rows above are independent) */
        for (fastmp_idx_t j = n - 1; j >= 0; j--) {
            fastmp_v8d xj = vload(out + j * L) / vload(w + j * rs + j * L);
            vstore(out + j * L, xj);
            for (fastmp_idx_t i = 0; i < j; i++)
                vstore(out + i * L, vload(out + i * L) - vload(w + i * rs + j * L) * xj);
        }
    } else {
        /* U^T: forward substitution by rows of U (independent updates, contiguous reads) */
        for (fastmp_idx_t i = 0; i < n; i++) {
            const double *wi = w + i * rs;
            fastmp_v8d xi = vload(out + i * L) / vload(wi + i * L);
            vstore(out + i * L, xi);
            for (fastmp_idx_t j = i + 1; j < n; j++)
                vstore(out + j * L, vload(out + j * L) - vload(wi + j * L) * xi);
        }
        /* L^T: dot with the multipliers below, then undo the swap, last column first */
        for (fastmp_idx_t k = n - 2; k >= 0; k--) {
            /* two partial sums: half the length of the chain of dependent FMAs */
            fastmp_v8d a0 = vload(out + k * L), a1 = (fastmp_v8d){0};
            fastmp_idx_t i = k + 1;
            for (; i + 1 < n; i += 2) {
                a0 -= vload(w + i * rs + k * L) * vload(out + i * L);
                a1 -= vload(w + (i + 1) * rs + k * L) * vload(out + (i + 1) * L);
            }
            if (i < n) a0 -= vload(w + i * rs + k * L) * vload(out + i * L);
            vstore(out + k * L, a0 + a1);
            lanes_swap(piv, k, out);
        }
    }
}

/* Columns of the trailing update kept in registers together. */
#define LU_CHUNK 4
/* Scratch of lanes_lu, in vectors of n lanes-wide entries (n L doubles each). */
#define LU_SCRATCH 6

/* First row of largest |a_i| over rows i = lo .. n-1 of a column whose row i is at
 * col + i * stride (idamax: ties go to the first). */
FASTMP_INLINE fastmp_v8l lanes_argmax(const double *restrict col, size_t stride, fastmp_idx_t lo,
                                      fastmp_idx_t n)
{
    fastmp_v8d big = vabs(vload(col + lo * stride));
    fastmp_v8l pv = (fastmp_v8l){0} + lo;
    for (fastmp_idx_t i = lo + 1; i < n; i++) {
        fastmp_v8d a = vabs(vload(col + i * stride));
        fastmp_v8l better = a > big;
        big = vsel(better, a, big);
        pv = (better & ((fastmp_v8l){0} + i)) | (~better & pv);
    }
    return pv;
}

/* dst[j] = row pv[l] of w, lane l, for columns j = lo .. n-1 */
FASTMP_INLINE void lanes_gather_rows(const double *restrict w, size_t rs, fastmp_v8l pv,
                                     fastmp_idx_t lo, fastmp_idx_t n, double *restrict dst)
{
    for (fastmp_idx_t l = 0; l < L; l++) {
        const double *src = w + (size_t)pv[l] * rs + l;
        for (fastmp_idx_t j = lo; j < n; j++) dst[j * L + l] = src[j * L];
    }
}

/* LU with partial pivoting of the L systems in w (overwritten), pivots in piv; scratch
 * holds LU_SCRATCH n L doubles.
 *
 * LINPACK's storage (dgefa): the row swap at step k touches columns k.. only, the
 * multipliers of earlier columns stay where they were computed, and the solves apply
 * the swaps interleaved. Lanes pivot on different rows, so no swap is done as a scalar
 * exchange: the pivot rows are gathered once, and the trailing update takes "old row k"
 * instead of row i in the lanes whose pivot is row i -- a blend inside the update loop,
 * which reads and writes every row anyway.
 *
 * Two elimination steps share one sweep over the trailing matrix (the matrix of eight
 * 24 x 24 systems is larger than L1, so every sweep streams it from L2): column k + 1
 * and the two pivot rows are brought up to date first, then each trailing entry gets
 * both updates while it is in a register. Every entry still sees exactly dgefa's
 * operations in dgefa's order -- multipliers a_ik * (1 / a_kk), updates
 * a_ij - l_ik u_kj -- so the factors are bit-identical to one step at a time. */
FASTMP_INLINE void lanes_lu(double *restrict w, fastmp_idx_t n, int *restrict piv,
                            double *restrict scratch)
{
    const size_t rs = (size_t)n * L; /* row stride of w */
    double *restrict P0 = scratch;              /* pivot row of step k */
    double *restrict P1 = P0 + (size_t)n * L;   /* pivot row of step k + 1 (updated) */
    double *restrict O1 = P1 + (size_t)n * L;   /* row k + 1 after step k */
    double *restrict F0 = O1 + (size_t)n * L;   /* multipliers of step k */
    double *restrict F1 = F0 + (size_t)n * L;   /* multipliers of step k + 1 */
    double *restrict C1 = F1 + (size_t)n * L;   /* column k + 1 after step k */
    fastmp_idx_t k = 0;
    for (; k + 1 < n; k += 2) {
        double *restrict rowk = w + (size_t)k * rs; /* old row k until the end of the pair */
        double *restrict rowk1 = rowk + rs;
        /* step k: pivot, pivot row, multipliers; column k + 1 brought up to date */
        fastmp_v8l pv0 = lanes_argmax(rowk + k * L, rs, 0, n - k);
        pv0 += k;
        lanes_gather_rows(w, rs, pv0, k, n, P0);
        const fastmp_v8d inv0 = 1.0 / vload(P0 + k * L);
        const fastmp_v8d o0k = vload(rowk + k * L), o0k1 = vload(rowk + (k + 1) * L);
        const fastmp_v8d p0k1 = vload(P0 + (k + 1) * L);
        for (fastmp_idx_t i = k + 1; i < n; i++) {
            double *ri = w + (size_t)i * rs + k * L;
            fastmp_v8l sw = pv0 == i;
            fastmp_v8d fi = vsel(sw, o0k, vload(ri)) * inv0;
            vstore(ri, fi);
            vstore(F0 + i * L, fi);
            vstore(C1 + i * L, vsel(sw, o0k1, vload(ri + L)) - fi * p0k1);
        }
        /* step k + 1: pivot among the updated column, row k + 1 and the pivot row after
         * step k (columns k + 1 ..) */
        fastmp_v8l pv1 = lanes_argmax(C1, L, k + 1, n);
        const fastmp_v8d f0k1 = vload(F0 + (k + 1) * L);
        const fastmp_v8l sw01 = pv0 == k + 1;
        for (fastmp_idx_t j = k + 1; j < n; j++)
            vstore(O1 + j * L, vsel(sw01, vload(rowk + j * L), vload(rowk1 + j * L)) -
                                   f0k1 * vload(P0 + j * L));
        lanes_gather_rows(w, rs, pv1, k + 1, n, P1);
        {
            /* row pv1 of the matrix after step k: its multiplier of step k, and old row
             * k where step k's pivot moved it there */
            fastmp_v8d fp;
            for (fastmp_idx_t l = 0; l < L; l++) fp[l] = F0[pv1[l] * L + l];
            const fastmp_v8l m = pv0 == pv1;
            for (fastmp_idx_t j = k + 1; j < n; j++)
                vstore(P1 + j * L, vsel(m, vload(rowk + j * L), vload(P1 + j * L)) -
                                       fp * vload(P0 + j * L));
        }
        const fastmp_v8d inv1 = 1.0 / vload(P1 + (k + 1) * L);
        const fastmp_v8d o1k1 = vload(O1 + (k + 1) * L);
        for (fastmp_idx_t i = k + 2; i < n; i++) {
            fastmp_v8d fi = vsel(pv1 == i, o1k1, vload(C1 + i * L)) * inv1;
            vstore(w + (size_t)i * rs + (k + 1) * L, fi);
            vstore(F1 + i * L, fi);
        }
        /* both updates of the trailing matrix in one sweep */
        fastmp_idx_t j = k + 2;
        for (; j + LU_CHUNK <= n; j += LU_CHUNK) {
            fastmp_v8d p0[LU_CHUNK], o0[LU_CHUNK], p1[LU_CHUNK], o1[LU_CHUNK];
            for (int c = 0; c < LU_CHUNK; c++) {
                p0[c] = vload(P0 + (j + c) * L);
                o0[c] = vload(rowk + (j + c) * L);
                p1[c] = vload(P1 + (j + c) * L);
                o1[c] = vload(O1 + (j + c) * L);
            }
            for (fastmp_idx_t i = k + 2; i < n; i++) {
                double *ri = w + (size_t)i * rs + j * L;
                fastmp_v8l s0 = pv0 == i, s1 = pv1 == i;
                fastmp_v8d fi0 = vload(F0 + i * L), fi1 = vload(F1 + i * L);
                for (int c = 0; c < LU_CHUNK; c++) {
                    fastmp_v8d t = vsel(s0, o0[c], vload(ri + c * L)) - fi0 * p0[c];
                    vstore(ri + c * L, vsel(s1, o1[c], t) - fi1 * p1[c]);
                }
            }
        }
        for (; j < n; j++) {
            fastmp_v8d p0 = vload(P0 + j * L), o0 = vload(rowk + j * L);
            fastmp_v8d p1 = vload(P1 + j * L), o1 = vload(O1 + j * L);
            for (fastmp_idx_t i = k + 2; i < n; i++) {
                double *ri = w + (size_t)i * rs + j * L;
                fastmp_v8d t = vsel(pv0 == i, o0, vload(ri)) - vload(F0 + i * L) * p0;
                vstore(ri, vsel(pv1 == i, o1, t) - vload(F1 + i * L) * p1);
            }
        }
        memcpy(rowk + k * L, P0 + k * L, sizeof(double) * (size_t)(n - k) * L);
        memcpy(rowk1 + (k + 1) * L, P1 + (k + 1) * L, sizeof(double) * (size_t)(n - k - 1) * L);
        for (fastmp_idx_t l = 0; l < L; l++) {
            piv[k * L + l] = (int)pv0[l];
            piv[(k + 1) * L + l] = (int)pv1[l];
        }
    }
    if (k < n) { /* n odd: the last pivot is the last row, nothing left to eliminate */
        for (fastmp_idx_t l = 0; l < L; l++) piv[k * L + l] = (int)k;
    }
}

/* Screen the L systems held in w (overwritten); ok[l] = 1 for accepted lanes. */
FASTMP_CLONES
static void screen_lanes(double *restrict w, fastmp_idx_t n, double screen, int *restrict piv,
                         double *restrict x, double *restrict y, double *restrict s,
                         double *restrict z, unsigned char *restrict ok,
                         double *restrict rcond)
{
    double anorm[L], lnorm[L], unorm[L], est[L], col[L], colu[L];
    int active[L];

    for (fastmp_idx_t l = 0; l < L; l++) anorm[l] = 0.0;
    for (fastmp_idx_t j = 0; j < n; j++) {
        for (fastmp_idx_t l = 0; l < L; l++) col[l] = 0.0;
        for (fastmp_idx_t i = 0; i < n; i++) {
            const double *a = w + ((size_t)i * n + j) * L;
            for (fastmp_idx_t l = 0; l < L; l++) col[l] += fabs(a[l]);
        }
        for (fastmp_idx_t l = 0; l < L; l++) anorm[l] = col[l] > anorm[l] ? col[l] : anorm[l];
    }

    lanes_lu(w, n, piv, x); /* x ..: scratch until the condition estimate */

    /* ||L||_1 (unit diagonal) and ||U||_1 */
    for (fastmp_idx_t l = 0; l < L; l++) lnorm[l] = unorm[l] = 0.0;
    for (fastmp_idx_t j = 0; j < n; j++) {
        for (fastmp_idx_t l = 0; l < L; l++) {
            col[l] = 1.0;
            colu[l] = 0.0;
        }
        for (fastmp_idx_t i = 0; i < n; i++) {
            const double *a = w + ((size_t)i * n + j) * L;
            if (i > j)
                for (fastmp_idx_t l = 0; l < L; l++) col[l] += fabs(a[l]);
            else
                for (fastmp_idx_t l = 0; l < L; l++) colu[l] += fabs(a[l]);
        }
        for (fastmp_idx_t l = 0; l < L; l++) {
            lnorm[l] = col[l] > lnorm[l] ? col[l] : lnorm[l];
            unorm[l] = colu[l] > unorm[l] ? colu[l] : unorm[l];
        }
    }

    /* Hager / Higham estimate of ||A^-1||_1; every iterate is a lower bound, est only
     * grows, and a lane stops where LAPACK's dlacn2 would -- but after at most
     * HAGER_ITERATIONS solves with A (dlacn2 allows 5): the lanes of a group all wait for
     * the slowest one, which cost 6.3 solves per group on random 24 x 24 systems instead
     * of 3, and the acceptance threshold keeps orders of magnitude of margin for a
     * coarser estimate (tests/test_backend_cython.py checks it stays within a factor n). */
    for (fastmp_idx_t l = 0; l < L; l++) {
        est[l] = 0.0;
        active[l] = 1;
    }
    for (fastmp_idx_t i = 0; i < n * L; i++) x[i] = 1.0 / n;
    for (fastmp_idx_t it = 0; it < HAGER_ITERATIONS; it++) {
        lanes_solve(w, piv, n, x, y, 0);
        for (fastmp_idx_t l = 0; l < L; l++) col[l] = 0.0;
        for (fastmp_idx_t i = 0; i < n; i++)
            for (fastmp_idx_t l = 0; l < L; l++) col[l] += fabs(y[i * L + l]);
        int any = 0;
        for (fastmp_idx_t l = 0; l < L; l++) {
            if (!active[l]) continue;
            if (it > 0 && !(col[l] > est[l])) {
                active[l] = 0;
            } else {
                est[l] = col[l];
                any = 1;
            }
        }
        if (!any || it == HAGER_ITERATIONS - 1) break;
        for (fastmp_idx_t i = 0; i < n * L; i++) s[i] = y[i] >= 0.0 ? 1.0 : -1.0;
        lanes_solve(w, piv, n, s, z, 1);
        for (fastmp_idx_t l = 0; l < L; l++) {
            if (!active[l]) continue;
            fastmp_idx_t jmax = 0;
            double zmax = -1.0, ztx = 0.0;
            for (fastmp_idx_t i = 0; i < n; i++) {
                double zi = z[i * L + l];
                ztx += zi * x[i * L + l];
                if (fabs(zi) > zmax) {
                    zmax = fabs(zi);
                    jmax = i;
                }
            }
            if (!(zmax > ztx)) active[l] = 0;
            for (fastmp_idx_t i = 0; i < n; i++) x[i * L + l] = 0.0;
            x[jmax * L + l] = 1.0;
        }
    }

    for (fastmp_idx_t l = 0; l < L; l++) {
        double a = anorm[l];
        double rc = (a > 0.0 && est[l] > 0.0) ? 1.0 / (a * est[l]) : 0.0;
        double growth = a > 0.0 ? lnorm[l] * unorm[l] / a : INFINITY;
        ok[l] = isfinite(est[l]) && isfinite(growth) && rc >= screen &&
                growth <= FASTMP_SCREEN_GROWTH;
        rcond[l] = isfinite(est[l]) ? rc : 0.0;
    }
}

FASTMP_CLONES
static void lu_lanes_min_pivot(double *restrict w, fastmp_idx_t n, int *restrict piv,
                               double *restrict scratch, double *restrict minpiv)
{
    lanes_lu(w, n, piv, scratch);
    for (fastmp_idx_t l = 0; l < L; l++) minpiv[l] = INFINITY;
    for (fastmp_idx_t i = 0; i < n; i++)
        for (fastmp_idx_t l = 0; l < L; l++) {
            double u = fabs(w[((size_t)i * n + i) * L + l]);
            minpiv[l] = u < minpiv[l] ? u : minpiv[l];
        }
}

/* Transpose systems g .. g+L-1 of C into lane order (short groups repeat the last). */
static void lanes_load(double *restrict w, const double *C, long B, long g, size_t nn)
{
    fastmp_idx_t cnt = (B - g) < L ? (fastmp_idx_t)(B - g) : L;
    const double *src[L];
    for (fastmp_idx_t l = 0; l < L; l++) src[l] = C + (size_t)(g + (l < cnt ? l : cnt - 1)) * nn;
    for (size_t e = 0; e < nn; e++)
        for (fastmp_idx_t l = 0; l < L; l++) w[e * L + l] = src[l][e];
}

/* LU with partial pivoting of the B systems (the screen's factorisation, nothing else):
 * min_pivot[b] = min_i |u_ii| of system b. The floor of bench/limits.py. Returns B, or -1
 * if scratch memory could not be allocated. */
static long fastmp_lu_batch(long B, int n, const double *C, double *min_pivot)
{
    if (n <= 0 || B <= 0) return 0;
    size_t nn = (size_t)n * n;
    double *w = malloc(sizeof(double) * (nn + LU_SCRATCH * (size_t)n) * L);
    int *piv = malloc(sizeof(int) * (size_t)n * L);
    if (!w || !piv) {
        free(w);
        free(piv);
        return -1;
    }
    double mp[L];
    for (long g = 0; g < B; g += L) {
        lanes_load(w, C, B, g, nn);
        lu_lanes_min_pivot(w, n, piv, w + nn * L, mp);
        for (fastmp_idx_t l = 0; l < L && g + l < B; l++) min_pivot[g + l] = mp[l];
    }
    free(w);
    free(piv);
    return B;
}

/* Screen the B square n x n systems C[b] (C-contiguous, B*n*n doubles, row-major).
 *
 * For every b whose system is certainly nonsingular -- reciprocal 1-norm condition
 * estimate >= screen and growth <= FASTMP_SCREEN_GROWTH -- sets status[b] = match_code
 * and done[b] = 1; leaves both untouched otherwise. If rcond_out is not NULL it receives
 * every system's reciprocal condition estimate (0 where the factorisation broke down).
 * Returns the number of systems settled, or -1 if scratch memory could not be allocated
 * (nothing is settled then).
 * Thread-safe and GIL-free: it reads C and writes only status/done and its own scratch. */
static long fastmp_screen_batch(long B, int n, const double *C, double screen,
                                signed char match_code, signed char *status,
                                unsigned char *done, double *rcond_out)
{
    if (n <= 0 || B <= 0) return 0;
    size_t nn = (size_t)n * n;
    /* x, y, s, z of the condition estimate; the LU's scratch before it */
    double *w = malloc(sizeof(double) * (nn + LU_SCRATCH * (size_t)n) * L);
    int *piv = malloc(sizeof(int) * (size_t)n * L);
    if (!w || !piv) {
        free(w);
        free(piv);
        return -1;
    }
    double *x = w + nn * L, *y = x + (size_t)n * L, *s = y + (size_t)n * L,
           *z = s + (size_t)n * L;
    unsigned char ok[L];
    double rc[L];
    long settled = 0;
    for (long g = 0; g < B; g += L) {
        fastmp_idx_t cnt = (B - g) < L ? (fastmp_idx_t)(B - g) : L;
        lanes_load(w, C, B, g, nn);
        screen_lanes(w, n, screen, piv, x, y, s, z, ok, rc);
        for (fastmp_idx_t l = 0; l < cnt; l++) {
            if (rcond_out) rcond_out[g + l] = rc[l];
            if (ok[l]) {
                status[g + l] = match_code;
                done[g + l] = 1;
                settled++;
            }
        }
    }
    free(w);
    free(piv);
    return settled;
}

/* the file-local shorthands stop here: this header is included into Cython's generated
 * C, which has identifiers of its own called L */
#undef L
#undef FASTMP_CLONES
#undef FASTMP_INLINE
#undef HAGER_ITERATIONS
#undef LU_CHUNK
#endif
