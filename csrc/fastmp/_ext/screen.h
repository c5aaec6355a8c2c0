/* Lane-wise nonsingularity screen of a batch of square systems (see screen.c). */
#ifndef FASTMP_SCREEN_H
#define FASTMP_SCREEN_H

#ifdef __cplusplus
extern "C" {
#endif

/* Systems factorised together: one AVX-512 register of doubles (two AVX2 ones). */
#define FASTMP_SCREEN_LANES 8
/* Largest ||L||_1 ||U||_1 / ||A||_1 the screen accepts. */
#define FASTMP_SCREEN_GROWTH 1e3

/* Screen the B square n x n systems C[b] (C-contiguous, B*n*n doubles, row-major).
 *
 * For every b whose system is certainly nonsingular -- reciprocal 1-norm condition
 * estimate >= screen and growth <= FASTMP_SCREEN_GROWTH -- sets status[b] = match_code
 * and done[b] = 1; leaves both untouched otherwise. If rcond_out is not NULL it receives
 * every system's reciprocal condition estimate (0 where the factorisation broke down).
 * Returns the number of systems settled, or -1 if scratch memory could not be allocated
 * (nothing is settled then).
 * Thread-safe and GIL-free: it reads C and writes only status/done and its own scratch. */
long fastmp_screen_batch(long B, int n, const double *C, double screen,
                         signed char match_code, signed char *status,
                         unsigned char *done, double *rcond_out);

/* LU with partial pivoting of the B systems (the screen's factorisation, nothing else):
 * min_pivot[b] = min_i |u_ii| of system b. The floor of bench/limits.py. Returns B, or -1
 * if scratch memory could not be allocated. */
long fastmp_lu_batch(long B, int n, const double *C, double *min_pivot);

#ifdef __cplusplus
}
#endif
#endif
