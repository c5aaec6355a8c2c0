/* The vector code of lane_newton.h, included once per instruction set; LN_FN(name)
 * gives each copy's names (see there). No include guard: included twice on purpose. */
#define ln_load LN_FN(ln_load)
#define ln_store LN_FN(ln_store)
#define ln_splat LN_FN(ln_splat)
#define ln_abs LN_FN(ln_abs)
#define ln_max LN_FN(ln_max)
#define ln_kernel LN_FN(fastmp_lane_newton)

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

/* Run the lanes (see the file comment). w0: r x LANES, N0: (K + 1) x n x b x LANES
 * (entries k >= 1 used), lane-minor. On return: w_out (r) holds the converged run's
 * weights (or the last lane's when the budget ran out), *steps the Newton steps taken
 * by all lanes, *last_step that run's last relative step |dw|_max / (1 + |w|_max).
 * Returns 1 if a run converged, 0 if the budget ran out, -1 if scratch memory could not
 * be allocated. */
static int ln_kernel(const ln_problem *p, const double *w0, const double *N0,
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
        /* Q_j = Q_{j-1} A, four output columns at a time in registers: the vector
         * unit here stores one register per two cycles, and accumulating in memory
         * (a load and a store per multiply-add) had made this the costliest part */
        for (ln_idx jj = 1; jj < imax; jj++)
            for (ln_idx i = 0; i < d; i++) {
                double *Qo = Q + ((jj * d + i) * n) * LNL;
                const double *Qp = Q + (((jj - 1) * d + i) * n) * LNL;
                ln_idx c = 0;
                for (; c + 4 <= n; c += 4) {
                    ln_v a0 = ln_splat(0.0), a1 = a0, a2 = a0, a3 = a0;
                    for (ln_idx k = 0; k < n; k++) {
                        ln_v qk = ln_load(Qp + k * LNL);
                        const double *Ak = A + (k * n + c) * LNL;
                        a0 += qk * ln_load(Ak);
                        a1 += qk * ln_load(Ak + LNL);
                        a2 += qk * ln_load(Ak + 2 * LNL);
                        a3 += qk * ln_load(Ak + 3 * LNL);
                    }
                    ln_store(Qo + c * LNL, a0);
                    ln_store(Qo + (c + 1) * LNL, a1);
                    ln_store(Qo + (c + 2) * LNL, a2);
                    ln_store(Qo + (c + 3) * LNL, a3);
                }
                for (; c < n; c++) {
                    ln_v a0 = ln_splat(0.0);
                    for (ln_idx k = 0; k < n; k++)
                        a0 += ln_load(Qp + k * LNL) * ln_load(A + (k * n + c) * LNL);
                    ln_store(Qo + c * LNL, a0);
                }
            }
        /* Z_j[k, c] = sum_{t: i_t > j} sum_q N_{i_t-1-j}[k, q] R_t[q, c], in a register */
        for (ln_idx jj = 0; jj < imax; jj++) {
            double *Zj = Z + jj * n * m * LNL;
            for (ln_idx k = 0; k < n; k++)
                for (ln_idx c = 0; c < m; c++) {
                    ln_v acc = ln_splat(0.0);
                    for (ln_idx t = 0; t < nt; t++) {
                        ln_idx it = p->term_node[t];
                        if (it <= jj) continue;
                        ln_idx s = it - 1 - jj;
                        const double *Rt = p->R + t * b * m;
                        for (ln_idx j = 0; j < b; j++)
                            acc += ln_load(N + ((s * n + k) * b + j) * LNL) * Rt[j * m + c];
                    }
                    ln_store(Zj + (k * m + c) * LNL, acc);
                }
        }
        /* J[(i, c), v] = sum_j Q_j[i, vi] Z_j[vj, c]: each Q_j[i, vi] loaded once for
         * four c */
        for (ln_idx v = 0; v < r; v++) {
            ln_idx vi = p->vi[v], vj = p->vj[v];
            for (ln_idx i = 0; i < d; i++) {
                ln_idx c = 0;
                for (; c + 4 <= m; c += 4) {
                    ln_v s0 = ln_splat(0.0), s1 = s0, s2 = s0, s3 = s0;
                    for (ln_idx jj = 0; jj < imax; jj++) {
                        ln_v q = ln_load(Q + ((jj * d + i) * n + vi) * LNL);
                        const double *Zc = Z + ((jj * n + vj) * m + c) * LNL;
                        s0 += q * ln_load(Zc);
                        s1 += q * ln_load(Zc + LNL);
                        s2 += q * ln_load(Zc + 2 * LNL);
                        s3 += q * ln_load(Zc + 3 * LNL);
                    }
                    ln_store(J + ((i * m + c) * r + v) * LNL, s0);
                    ln_store(J + ((i * m + c + 1) * r + v) * LNL, s1);
                    ln_store(J + ((i * m + c + 2) * r + v) * LNL, s2);
                    ln_store(J + ((i * m + c + 3) * r + v) * LNL, s3);
                }
                for (; c < m; c++) {
                    ln_v s0 = ln_splat(0.0);
                    for (ln_idx jj = 0; jj < imax; jj++)
                        s0 += ln_load(Q + ((jj * d + i) * n + vi) * LNL) *
                              ln_load(Z + ((jj * n + vj) * m + c) * LNL);
                    ln_store(J + ((i * m + c) * r + v) * LNL, s0);
                }
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

#undef ln_load
#undef ln_store
#undef ln_splat
#undef ln_abs
#undef ln_max
#undef ln_kernel
