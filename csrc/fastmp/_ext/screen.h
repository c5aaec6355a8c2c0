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
 * in LINPACK's storage (the solves of dgesl). Rows of a triangular solve are accumulated
 * in a local vector (acc), which provably aliases nothing and stays in a register. */
FASTMP_INLINE void lanes_solve(const double *restrict w, const int *restrict piv, fastmp_idx_t n,
                               const double *restrict b, double *restrict out,
                               int transpose)
{
    double acc[L];
    const size_t rs = (size_t)n * L; /* row stride of w */
    memcpy(out, b, sizeof(double) * (size_t)n * L);
    if (!transpose) {
        /* L: swap, then eliminate below, column by column */
        for (fastmp_idx_t k = 0; k < n - 1; k++) {
            lanes_swap(piv, k, out);
            for (fastmp_idx_t l = 0; l < L; l++) acc[l] = out[k * L + l];
            for (fastmp_idx_t i = k + 1; i < n; i++) {
                const double *wik = w + i * rs + k * L;
                for (fastmp_idx_t l = 0; l < L; l++) out[i * L + l] -= wik[l] * acc[l];
            }
        }
        /* U: back substitution by rows */
        for (fastmp_idx_t i = n - 1; i >= 0; i--) {
            const double *wi = w + i * rs;
            for (fastmp_idx_t l = 0; l < L; l++) acc[l] = out[i * L + l];
            for (fastmp_idx_t j = i + 1; j < n; j++)
                for (fastmp_idx_t l = 0; l < L; l++) acc[l] -= wi[j * L + l] * out[j * L + l];
            for (fastmp_idx_t l = 0; l < L; l++) out[i * L + l] = acc[l] / wi[i * L + l];
        }
    } else {
        /* U^T: forward substitution */
        for (fastmp_idx_t i = 0; i < n; i++) {
            for (fastmp_idx_t l = 0; l < L; l++) acc[l] = out[i * L + l];
            for (fastmp_idx_t j = 0; j < i; j++)
                for (fastmp_idx_t l = 0; l < L; l++) acc[l] -= w[j * rs + i * L + l] * out[j * L + l];
            for (fastmp_idx_t l = 0; l < L; l++) out[i * L + l] = acc[l] / w[i * rs + i * L + l];
        }
        /* L^T: dot with the multipliers below, then undo the swap, last column first */
        for (fastmp_idx_t k = n - 2; k >= 0; k--) {
            for (fastmp_idx_t l = 0; l < L; l++) acc[l] = out[k * L + l];
            for (fastmp_idx_t i = k + 1; i < n; i++) {
                const double *wik = w + i * rs + k * L;
                for (fastmp_idx_t l = 0; l < L; l++) acc[l] -= wik[l] * out[i * L + l];
            }
            for (fastmp_idx_t l = 0; l < L; l++) out[k * L + l] = acc[l];
            lanes_swap(piv, k, out);
        }
    }
}

/* LU with partial pivoting of the L systems in w (overwritten), pivots in piv. */
FASTMP_INLINE void lanes_lu(double *restrict w, fastmp_idx_t n, int *restrict piv)
{
    double inv[L];
    /* LU with partial pivoting, lane-wise, in LINPACK's storage (dgefa): a row swap at
     * step k touches columns k.. only, the multipliers of earlier columns stay where
     * they were computed, and the solves apply the swaps interleaved. That halves the
     * scalar swap work, the only part that is not one vector instruction per step. */
    for (fastmp_idx_t k = 0; k < n; k++) {
        double big[L];
        int pv[L];
        const double *akk = w + ((size_t)k * n + k) * L;
        for (fastmp_idx_t l = 0; l < L; l++) {
            big[l] = fabs(akk[l]);
            pv[l] = (int)k;
        }
        for (fastmp_idx_t i = k + 1; i < n; i++) {
            const double *aik = w + ((size_t)i * n + k) * L;
            for (fastmp_idx_t l = 0; l < L; l++) {
                double a = fabs(aik[l]);
                int better = a > big[l];
                big[l] = better ? a : big[l];
                pv[l] = better ? (int)i : pv[l];
            }
        }
        for (fastmp_idx_t l = 0; l < L; l++) {
            fastmp_idx_t p = pv[l];
            piv[k * L + l] = pv[l];
            if (p != k) {
                double *rk = w + (size_t)k * n * L + l;
                double *rp = w + (size_t)p * n * L + l;
                for (fastmp_idx_t j = k; j < n; j++) {
                    double t = rk[j * L];
                    rk[j * L] = rp[j * L];
                    rp[j * L] = t;
                }
            }
        }
        for (fastmp_idx_t l = 0; l < L; l++) inv[l] = 1.0 / akk[l];
        const double *restrict rowk = w + (size_t)k * n * L;
        for (fastmp_idx_t i = k + 1; i < n; i++) {
            double *restrict rowi = w + (size_t)i * n * L;
            double f[L];
            for (fastmp_idx_t l = 0; l < L; l++) {
                f[l] = rowi[k * L + l] * inv[l];
                rowi[k * L + l] = f[l];
            }
            for (fastmp_idx_t j = k + 1; j < n; j++)
                for (fastmp_idx_t l = 0; l < L; l++) rowi[j * L + l] -= f[l] * rowk[j * L + l];
        }
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

    lanes_lu(w, n, piv);

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
                               double *restrict minpiv)
{
    lanes_lu(w, n, piv);
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
    double *w = malloc(sizeof(double) * nn * L);
    int *piv = malloc(sizeof(int) * (size_t)n * L);
    if (!w || !piv) {
        free(w);
        free(piv);
        return -1;
    }
    double mp[L];
    for (long g = 0; g < B; g += L) {
        lanes_load(w, C, B, g, nn);
        lu_lanes_min_pivot(w, n, piv, mp);
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
    double *w = malloc(sizeof(double) * (nn * L + 4 * (size_t)n * L));
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
#endif
