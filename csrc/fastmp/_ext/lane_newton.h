/* Eliminated lifted Newton with random restarts, eight runs side by side in SIMD lanes.
 *
 * Header-only (static definitions, compiled into fastmp._ext._lanes, which includes it).
 *
 * The system is a homogeneous chain program (fastmp.kernels.chain) whose learnable
 * weights all lie in the step matrix A (n x n): nodes N_0 = S (n x b, frozen source),
 * N_k = A N_{k-1} (k = 1..K), outputs Y = sum_t Lm N_{i_t} R_t (Lm d x n frozen, R_t
 * b x m), target Y*. This is the LRNN with learnable recurrent weights on the right
 * lifting of Lemma 3.3 (A = W, S = B, Lm = D, R_t = X_t). One Newton step of one run is
 * fastmp.kernels.chain.newton's eliminated lifted step:
 *
 *   defects   E_k = A N_{k-1} - N_k,  propagated eN_k = A eN_{k-1} + E_k  (eN_0 = 0)
 *   outputs   Y - Y* and corr = sum_t Lm eN_{i_t} R_t
 *   Jacobian  J[(i, c), (vi, vj)] = sum_j Q_j[i, vi] Z_j[vj, c],  Q_j = Lm A^j,
 *             Z_j = sum_{t: i_t > j} N_{i_t - 1 - j} R_t
 *   step      J dw = -(Y - Y* + corr), then dN_k = A dN_{k-1} + dA N_{k-1} + E_k.
 *
 * LANES runs are stored lane-minor (entry e of lane l at e * LANES + l), so that every
 * arithmetic operation is one vector instruction over the lanes (GCC vector extensions;
 * the code is compiled for AVX-512 and for the default target, and the caller's CPU picks
 * one at run time, see fastmp_lane_newton below). Only partial pivoting's row swaps and
 * the per-run bookkeeping are scalar.
 *
 * A run that fails -- non-finite residual, zero pivot, |w| > 1e8, an iterate outside the
 * box max(|w|, |N_k|) <= cut, or max_run steps -- goes on from a fresh random point
 * (w entrywise of mean 0 and standard deviation wscale, nodes of variance 1; Irwin-Hall
 * draws from xoshiro256** with the caller's 256-bit state, see ln_normal). The call returns as soon as one run has converged (its relative
 * residual and defects below tol, or stalled at rounding level: the residual no longer
 * halves while it or the relative step is below converged, as chain.newton decides).
 */
#ifndef FASTMP_LANE_NEWTON_H
#define FASTMP_LANE_NEWTON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define FASTMP_LN_LANES 8
#define LNL FASTMP_LN_LANES

typedef ptrdiff_t ln_idx;
typedef double ln_v __attribute__((vector_size(LNL * sizeof(double))));
typedef long long ln_vl __attribute__((vector_size(LNL * sizeof(long long))));

#if defined(__GNUC__)
#define LN_INLINE static inline __attribute__((always_inline))
#else
#define LN_INLINE static inline
#endif

/* ---------------------------------------------------------------- random points */
typedef struct {
    uint64_t s[4];
} ln_rng;

static uint64_t ln_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t ln_next(ln_rng *g)
{
    uint64_t *s = g->s;
    uint64_t result = ln_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ln_rotl(s[3], 45);
    return result;
}

/* A draw of mean 0 and variance 1: the sum of four uniforms on (-sqrt 3 / 2, sqrt 3 / 2)
 * (Irwin-Hall; close to normal, support |x| < 2 sqrt 3). A restart's point needs a
 * spread-out random point, not an exact law, and Box-Muller's log, sin and cos had cost
 * ~10% of a run's time at Figure 2a (a restart every ~17 steps, 48 draws each). Four
 * 16-bit uniforms come from one 64-bit output. */
static double ln_normal(ln_rng *g)
{
    uint64_t x = ln_next(g);
    double s = (double)(x & 0xFFFF) + (double)((x >> 16) & 0xFFFF) +
               (double)((x >> 32) & 0xFFFF) + (double)(x >> 48) + 2.0;
    /* s / 65536 - 2 is a sum of four uniforms on (-1/2, 1/2) (up to 2^-16 steps), of
     * variance 1/3 */
    return (s * (1.0 / 65536.0) - 2.0) * 1.7320508075688772;
}

/* ---------------------------------------------------------------- the problem */
typedef struct {
    ln_idx n, b, K, d, m, r, nt;
    const ln_idx *term_node; /* i_t, nt entries */
    const double *R;         /* nt x b x m (the identity written out where absent) */
    const double *Lm;        /* d x n */
    const double *A0;        /* n x n, frozen entries (learnable ones overwritten) */
    const double *S;         /* n x b source N_0 */
    const ln_idx *vi, *vj;   /* learnable entries A[vi[v], vj[v]] */
    const double *Ystar;     /* d x m */
    const double *wscale;    /* r: start scale of each weight */
} ln_problem;

/* Fresh random point in lane l. */
static void ln_draw(const ln_problem *p, ln_rng *g, double *w, double *A, double *N, ln_idx l)
{
    ln_idx n = p->n, b = p->b, K = p->K;
    for (ln_idx v = 0; v < p->r; v++) {
        double x = ln_normal(g) * p->wscale[v];
        w[v * LNL + l] = x;
        A[(p->vi[v] * n + p->vj[v]) * LNL + l] = x;
    }
    for (ln_idx e = n * b; e < (K + 1) * n * b; e++) N[e * LNL + l] = ln_normal(g);
}

/* The vector code twice: once compiled for AVX-512 (F, VL, DQ, BW, CD and FMA; taken
 * when the CPU has them) and once for the build's default target. As a gcc target
 * clone (target_clones("avx512f", ...)) the same code ran 1.3-1.4x slower per step than
 * compiled with AVX-512 enabled for the whole unit (measured on Zen 4 with gcc 12:
 * ~1950 against ~1450 cycles per run step), hence the pragma and an explicit dispatch. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LN_HAVE_AVX512 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512vl,avx512dq,avx512bw,avx512cd")
#define LN_FN(name) name##_avx512
#include "lane_newton_body.h"
#undef LN_FN
#pragma GCC pop_options
#endif
#define LN_FN(name) name##_portable
#include "lane_newton_body.h"
#undef LN_FN

/* Run the lanes: w0 is r x LANES and N0 (K + 1) x n x b x LANES, lane-minor (entries
 * k >= 1 used). On return w_out (r) holds the converged run's weights (or the last
 * lane's when the budget ran out), *steps the Newton steps of all lanes, *last_step that
 * run's last relative step |dw|_max / (1 + |w|_max). Returns 1 if a run converged, 0 if
 * the budget ran out, -1 if scratch memory could not be allocated. portable != 0 forces
 * the default-target code (tests). */
static int fastmp_lane_newton(const ln_problem *p, const double *w0, const double *N0,
                              long budget, double tol, double converged, double cut,
                              long max_run, uint64_t *state, double *w_out, long *steps,
                              double *last_step, int portable)
{
#ifdef LN_HAVE_AVX512
    if (!portable && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
        return fastmp_lane_newton_avx512(p, w0, N0, budget, tol, converged, cut, max_run,
                                         state, w_out, steps, last_step);
#endif
    return fastmp_lane_newton_portable(p, w0, N0, budget, tol, converged, cut, max_run,
                                       state, w_out, steps, last_step);
}

#undef LNL
#undef LN_INLINE
#undef LN_HAVE_AVX512
#endif
