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
 * target clones pick AVX-512, AVX2 or SSE2 at load time). Only partial pivoting's row
 * swaps and the per-run bookkeeping are scalar.
 *
 * A run that fails -- non-finite residual, zero pivot, |w| > 1e8, an iterate outside the
 * box max(|w|, |N_k|) <= cut, or max_run steps -- goes on from a fresh random point
 * (w ~ N(0, wscale^2), nodes N(0, 1); xoshiro256** and Box-Muller, from the caller's
 * 256-bit state). The call returns as soon as one run has converged (its relative
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

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LN_CLONES
#endif

LN_INLINE ln_v ln_load(const double *p)
{
    ln_v v;
    memcpy(&v, p, sizeof v);
    return v;
}

LN_INLINE void ln_store(double *p, ln_v v) { memcpy(p, &v, sizeof v); }

LN_INLINE ln_v ln_splat(double x) { return (ln_v){0} + x; }

LN_INLINE ln_v ln_abs(ln_v a)
{
    return (ln_v)((ln_vl)a & ((ln_vl){0} + 0x7fffffffffffffffLL));
}

/* lane-wise max that keeps NaN (a NaN lane stays NaN: the run is then restarted) */
LN_INLINE ln_v ln_max(ln_v a, ln_v b)
{
    ln_vl keep = (a >= b) | (a != a);
    return (ln_v)(((ln_vl)a & keep) | ((ln_vl)b & ~keep));
}

/* ---------------------------------------------------------------- random points */
typedef struct {
    uint64_t s[4];
    int have;
    double spare;
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

static double ln_normal(ln_rng *g)
{
    if (g->have) {
        g->have = 0;
        return g->spare;
    }
    double u1 = ((ln_next(g) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = ((ln_next(g) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double rad = sqrt(-2.0 * log(u1));
    g->spare = rad * sin(6.283185307179586 * u2);
    g->have = 1;
    return rad * cos(6.283185307179586 * u2);
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

/* Run the lanes (see the file comment). w0: r x LANES, N0: (K + 1) x n x b x LANES
 * (entries k >= 1 used), lane-minor. On return: w_out (r) holds the converged run's
 * weights (or the last lane's when the budget ran out), *steps the Newton steps taken
 * by all lanes, *last_step that run's last relative step |dw|_max / (1 + |w|_max).
 * Returns 1 if a run converged, 0 if the budget ran out, -1 if scratch memory could not
 * be allocated. */
LN_CLONES
static int fastmp_lane_newton(const ln_problem *p, const double *w0, const double *N0,
                              long budget, double tol, double converged, double cut,
                              long max_run, uint64_t *state, double *w_out, long *steps,
                              double *last_step)
{
    const ln_idx n = p->n, b = p->b, K = p->K, d = p->d, m = p->m, r = p->r, nt = p->nt;
    const ln_idx dm = d * m, nb = n * b;
    ln_idx imax = 0;
    for (ln_idx t = 0; t < nt; t++)
        if (p->term_node[t] > imax) imax = p->term_node[t];
    const ln_idx nq = imax > 0 ? imax : 1;
    size_t total_doubles = (size_t)LNL * (n * n + r + 4 * (K + 1) * nb + 2 * dm + 2 * d * b +
                                          nq * d * n + nq * n * m + dm * r + 2 * dm);
    double *mem = malloc(sizeof(double) * total_doubles);
    if (!mem) return -1;
    double *A = mem, *w = A + n * n * LNL, *N = w + r * LNL, *E = N + (K + 1) * nb * LNL,
           *eN = E + (K + 1) * nb * LNL, *dN = eN + (K + 1) * nb * LNL,
           *Y = dN + (K + 1) * nb * LNL, *corr = Y + dm * LNL, *LN = corr + dm * LNL,
           *LE = LN + d * b * LNL, *Q = LE + d * b * LNL, *Z = Q + nq * d * n * LNL,
           *J = Z + nq * n * m * LNL, *x = J + dm * r * LNL, *pinv = x + dm * LNL;
    ln_rng g;
    memcpy(g.s, state, sizeof g.s);
    g.have = 0;
    g.spare = 0.0;
    double yscale = 1.0;
    for (ln_idx e = 0; e < dm; e++)
        if (fabs(p->Ystar[e]) > yscale) yscale = fabs(p->Ystar[e]);
    double fprev[LNL], stepl[LNL], res[LNL], dmax[LNL];
    long age[LNL];
    int skip[LNL];
    for (ln_idx e = 0; e < n * n; e++) ln_store(A + e * LNL, ln_splat(p->A0[e]));
    for (ln_idx v = 0; v < r; v++)
        for (ln_idx l = 0; l < LNL; l++) {
            w[v * LNL + l] = w0[v * LNL + l];
            A[(p->vi[v] * n + p->vj[v]) * LNL + l] = w0[v * LNL + l];
        }
    for (ln_idx e = 0; e < nb; e++) {
        ln_store(N + e * LNL, ln_splat(p->S[e]));
        ln_store(eN + e * LNL, ln_splat(0.0));
        ln_store(dN + e * LNL, ln_splat(0.0));
        ln_store(E + e * LNL, ln_splat(0.0));
    }
    memcpy(N + nb * LNL, N0 + nb * LNL, sizeof(double) * (size_t)(K * nb * LNL));
    for (ln_idx i = 0; i < d; i++)
        for (ln_idx q = 0; q < n; q++) ln_store(Q + (i * n + q) * LNL, ln_splat(p->Lm[i * n + q]));
    for (ln_idx l = 0; l < LNL; l++) {
        fprev[l] = INFINITY;
        stepl[l] = INFINITY;
        age[l] = 0;
    }
    long total = 0;
    ln_idx last = 0;
    int found = 0;
    ln_idx found_lane = 0;
    while (total < budget) {
        /* defects and propagated defects */
        ln_v vdmax = ln_splat(0.0);
        for (ln_idx k = 1; k <= K; k++)
            for (ln_idx i = 0; i < n; i++)
                for (ln_idx j = 0; j < b; j++) {
                    ln_v e = -ln_load(N + ((k * n + i) * b + j) * LNL);
                    ln_v en = ln_splat(0.0);
                    for (ln_idx q = 0; q < n; q++) {
                        ln_v a = ln_load(A + (i * n + q) * LNL);
                        e += a * ln_load(N + (((k - 1) * n + q) * b + j) * LNL);
                        en += a * ln_load(eN + (((k - 1) * n + q) * b + j) * LNL);
                    }
                    ln_store(E + ((k * n + i) * b + j) * LNL, e);
                    ln_store(eN + ((k * n + i) * b + j) * LNL, en + e);
                    vdmax = ln_max(ln_abs(e), vdmax);
                }
        /* outputs and their defect correction */
        for (ln_idx e = 0; e < dm; e++) {
            ln_store(Y + e * LNL, ln_splat(-p->Ystar[e]));
            ln_store(corr + e * LNL, ln_splat(0.0));
        }
        for (ln_idx t = 0; t < nt; t++) {
            ln_idx it = p->term_node[t];
            for (ln_idx i = 0; i < d; i++)
                for (ln_idx j = 0; j < b; j++) {
                    ln_v sn = ln_splat(0.0), se = ln_splat(0.0);
                    for (ln_idx q = 0; q < n; q++) {
                        double gq = p->Lm[i * n + q];
                        sn += gq * ln_load(N + ((it * n + q) * b + j) * LNL);
                        se += gq * ln_load(eN + ((it * n + q) * b + j) * LNL);
                    }
                    ln_store(LN + (i * b + j) * LNL, sn);
                    ln_store(LE + (i * b + j) * LNL, se);
                }
            const double *Rt = p->R + t * b * m;
            for (ln_idx i = 0; i < d; i++)
                for (ln_idx c = 0; c < m; c++) {
                    ln_v y = ln_load(Y + (i * m + c) * LNL), co = ln_load(corr + (i * m + c) * LNL);
                    for (ln_idx j = 0; j < b; j++) {
                        double rr = Rt[j * m + c];
                        y += ln_load(LN + (i * b + j) * LNL) * rr;
                        co += ln_load(LE + (i * b + j) * LNL) * rr;
                    }
                    ln_store(Y + (i * m + c) * LNL, y);
                    ln_store(corr + (i * m + c) * LNL, co);
                }
        }
        ln_v vres = ln_splat(0.0);
        for (ln_idx e = 0; e < dm; e++) vres = ln_max(ln_abs(ln_load(Y + e * LNL)), vres);
        ln_store(res, vres);
        ln_store(dmax, vdmax);
        /* per-run decisions, as chain.newton's */
        for (ln_idx l = 0; l < LNL; l++) {
            skip[l] = 0;
            double rl = res[l] / yscale;
            if (!isfinite(rl) || !isfinite(dmax[l])) {
                skip[l] = 1;
                continue;
            }
            double fmax = rl > dmax[l] ? rl : dmax[l];
            if ((rl < tol && dmax[l] < tol) ||
                (fmax >= 0.5 * fprev[l] && (fmax < converged || stepl[l] < converged))) {
                found = 1;
                found_lane = l;
                break;
            }
            fprev[l] = fmax;
            if (age[l] >= max_run) skip[l] = 1;
        }
        if (found) break;
        /* the Jacobian on the current nodes */
        for (ln_idx jj = 1; jj < imax; jj++)
            for (ln_idx i = 0; i < d; i++) {
                double *Qo = Q + ((jj * d + i) * n) * LNL;
                const double *Qp = Q + (((jj - 1) * d + i) * n) * LNL;
                for (ln_idx c = 0; c < n; c++) ln_store(Qo + c * LNL, ln_splat(0.0));
                for (ln_idx k = 0; k < n; k++) {
                    ln_v qk = ln_load(Qp + k * LNL);
                    for (ln_idx c = 0; c < n; c++)
                        ln_store(Qo + c * LNL, ln_load(Qo + c * LNL) + qk * ln_load(A + (k * n + c) * LNL));
                }
            }
        for (ln_idx jj = 0; jj < imax; jj++) {
            double *Zj = Z + jj * n * m * LNL;
            for (ln_idx e = 0; e < n * m; e++) ln_store(Zj + e * LNL, ln_splat(0.0));
            for (ln_idx t = 0; t < nt; t++) {
                ln_idx it = p->term_node[t];
                if (it <= jj) continue;
                ln_idx s = it - 1 - jj;
                const double *Rt = p->R + t * b * m;
                for (ln_idx k = 0; k < n; k++)
                    for (ln_idx j = 0; j < b; j++) {
                        ln_v nv = ln_load(N + ((s * n + k) * b + j) * LNL);
                        for (ln_idx c = 0; c < m; c++) {
                            double rr = Rt[j * m + c];
                            if (rr != 0.0)
                                ln_store(Zj + (k * m + c) * LNL, ln_load(Zj + (k * m + c) * LNL) + nv * rr);
                        }
                    }
            }
        }
        for (ln_idx v = 0; v < r; v++) {
            ln_idx vi = p->vi[v], vj = p->vj[v];
            for (ln_idx i = 0; i < d; i++)
                for (ln_idx c = 0; c < m; c++) {
                    ln_v s = ln_splat(0.0);
                    for (ln_idx jj = 0; jj < imax; jj++)
                        s += ln_load(Q + ((jj * d + i) * n + vi) * LNL) *
                             ln_load(Z + ((jj * n + vj) * m + c) * LNL);
                    ln_store(J + ((i * m + c) * r + v) * LNL, s);
                }
        }
        for (ln_idx e = 0; e < dm; e++)
            ln_store(x + e * LNL, -(ln_load(Y + e * LNL) + ln_load(corr + e * LNL)));
        /* J dw = x lane-wise: Gaussian elimination with partial pivoting (square: dm == r) */
        for (ln_idx k = 0; k < dm; k++) {
            ln_v big = ln_abs(ln_load(J + (k * r + k) * LNL));
            ln_v pv = ln_splat((double)k);
            for (ln_idx i = k + 1; i < dm; i++) {
                ln_v a = ln_abs(ln_load(J + (i * r + k) * LNL));
                ln_vl gt = a > big;
                big = (ln_v)(((ln_vl)a & gt) | ((ln_vl)big & ~gt));
                ln_v iv = ln_splat((double)i);
                pv = (ln_v)(((ln_vl)iv & gt) | ((ln_vl)pv & ~gt));
            }
            double bg[LNL], pd[LNL];
            ln_store(bg, big);
            ln_store(pd, pv);
            for (ln_idx l = 0; l < LNL; l++) {
                ln_idx pr = (ln_idx)pd[l];
                if (!(bg[l] > 0.0) || !isfinite(bg[l])) {
                    skip[l] = 1;
                    J[(k * r + k) * LNL + l] = 1.0;
                } else if (pr != k) {
                    for (ln_idx c = k; c < r; c++) {
                        double tmp = J[(k * r + c) * LNL + l];
                        J[(k * r + c) * LNL + l] = J[(pr * r + c) * LNL + l];
                        J[(pr * r + c) * LNL + l] = tmp;
                    }
                    double tmp = x[k * LNL + l];
                    x[k * LNL + l] = x[pr * LNL + l];
                    x[pr * LNL + l] = tmp;
                }
            }
            ln_v pk = ln_splat(1.0) / ln_load(J + (k * r + k) * LNL);
            ln_store(pinv + k * LNL, pk);
            ln_v xk = ln_load(x + k * LNL);
            for (ln_idx i = k + 1; i < dm; i++) {
                ln_v f = ln_load(J + (i * r + k) * LNL) * pk;
                ln_store(x + i * LNL, ln_load(x + i * LNL) - f * xk);
                for (ln_idx c = k + 1; c < r; c++)
                    ln_store(J + (i * r + c) * LNL,
                             ln_load(J + (i * r + c) * LNL) - f * ln_load(J + (k * r + c) * LNL));
            }
        }
        for (ln_idx k = dm - 1; k >= 0; k--) {
            ln_v xk = ln_load(x + k * LNL) * ln_load(pinv + k * LNL);
            ln_store(x + k * LNL, xk);
            for (ln_idx i = 0; i < k; i++)
                ln_store(x + i * LNL, ln_load(x + i * LNL) - ln_load(J + (i * r + k) * LNL) * xk);
        }
        /* node step dN_k = A dN_{k-1} + dA N_{k-1} + E_k (dN_0 = 0) */
        for (ln_idx k = 1; k <= K; k++) {
            for (ln_idx i = 0; i < n; i++)
                for (ln_idx j = 0; j < b; j++) {
                    ln_v s = ln_load(E + ((k * n + i) * b + j) * LNL);
                    for (ln_idx q = 0; q < n; q++)
                        s += ln_load(A + (i * n + q) * LNL) * ln_load(dN + (((k - 1) * n + q) * b + j) * LNL);
                    ln_store(dN + ((k * n + i) * b + j) * LNL, s);
                }
            for (ln_idx v = 0; v < r; v++) {
                ln_v xv = ln_load(x + v * LNL);
                for (ln_idx j = 0; j < b; j++) {
                    double *o = dN + ((k * n + p->vi[v]) * b + j) * LNL;
                    ln_store(o, ln_load(o) + xv * ln_load(N + (((k - 1) * n + p->vj[v]) * b + j) * LNL));
                }
            }
        }
        total += LNL;
        /* update, box test, restarts */
        for (ln_idx l = 0; l < LNL; l++) {
            if (!skip[l]) {
                double wmax = 0.0, dmaxw = 0.0, nmax = 0.0;
                for (ln_idx v = 0; v < r; v++) {
                    double y = w[v * LNL + l] + x[v * LNL + l];
                    w[v * LNL + l] = y;
                    A[(p->vi[v] * n + p->vj[v]) * LNL + l] = y;
                    if (!(fabs(y) <= wmax)) wmax = fabs(y);
                    if (fabs(x[v * LNL + l]) > dmaxw) dmaxw = fabs(x[v * LNL + l]);
                }
                for (ln_idx e = nb; e < (K + 1) * nb; e++) {
                    double y = N[e * LNL + l] + dN[e * LNL + l];
                    N[e * LNL + l] = y;
                    if (!(fabs(y) <= nmax)) nmax = fabs(y);
                }
                stepl[l] = dmaxw / (1.0 + wmax);
                age[l] += 1;
                last = l;
                if (wmax <= 1e8 && !(cut > 0.0 && (wmax > cut || nmax > cut))) continue;
            }
            ln_draw(p, &g, w, A, N, l);
            fprev[l] = INFINITY;
            stepl[l] = INFINITY;
            age[l] = 0;
        }
    }
    ln_idx out = found ? found_lane : last;
    for (ln_idx v = 0; v < r; v++) w_out[v] = w[v * LNL + out];
    *steps = total;
    *last_step = found ? stepl[out] : INFINITY;
    memcpy(state, g.s, sizeof g.s);
    free(mem);
    return found;
}

#undef LNL
#undef LN_INLINE
#undef LN_CLONES
#endif
