/* small_gemm — a register-tiled accumulate-GEMM for the small per-head products that run
 * inside OpenMP parallel regions (where BLAS must not be called). Inline only: it is compiled
 * into each caller, so a caller built with target_clones gets the wide-vector version. */
#ifndef CALIB_SMALL_GEMM_H
#define CALIB_SMALL_GEMM_H

#include <stdint.h>

#include "calib/vec_math.h" /* ga_v16, ga_load */

/* tile: GA_TM rows × GA_TN·16 columns. 8 × 32 = 16 zmm accumulators on AVX-512; the loops over
 * the tile are fully unrolled (#pragma GCC unroll: -O2 alone kept acc[][] on the stack, a load
 * and a store per multiply-add). One core, attention core T = 2048: 38.8 → 47.6 GFLOP/s from
 * the unrolling, 64 with FMA (Makefile), 88 with the vector e^x of the softmax. 8 × 32 beat
 * 12 × 32, 14 × 32, 6 × 64 and 8 × 48 there. The AVX2 clone spills some of them to the stack. */
#ifndef GA_TM
#define GA_TM 8
#endif
#ifndef GA_TN
#define GA_TN 2
#endif

/* C[m][n] += Σ_k A(m, k)·B[k][n] for small blocks: A(m, k) = A[m·sam + k·sak] (either layout),
 * B and C row-major. Tiles of TM rows × TN·16 columns keep the accumulators in vector registers
 * (plain arrays of them were kept on the stack by GCC); the column tail takes the plain loop.
 * Each C element sums its k terms in order from its old value, whatever the tile shape. */
static inline __attribute__((always_inline)) void gemm_acc(int M, int N, int K, const float *A, int64_t sam, int64_t sak, const float *B,
                  int64_t ldb, float *C, int64_t ldc)
{
    enum { TM = GA_TM, TN = GA_TN, W = 16 * GA_TN };
    const int nw = N - N % W;
    int m = 0;
    for (; m + TM <= M; m += TM) {
        for (int n = 0; n < nw; n += W) {
            ga_v16 acc[TM][TN];
#pragma GCC unroll 16
            for (int r = 0; r < TM; r++)
#pragma GCC unroll 4
                for (int j = 0; j < TN; j++) acc[r][j] = ga_load(C + (m + r) * ldc + n + 16 * j);
            for (int k = 0; k < K; k++) {
                const float *b = B + k * ldb + n;
                ga_v16 bv[TN];
#pragma GCC unroll 4
                for (int j = 0; j < TN; j++) bv[j] = ga_load(b + 16 * j);
#pragma GCC unroll 16
                for (int r = 0; r < TM; r++) {
                    const float a = A[(m + r) * sam + k * sak];
#pragma GCC unroll 4
                    for (int j = 0; j < TN; j++) acc[r][j] += a * bv[j];
                }
            }
#pragma GCC unroll 16
            for (int r = 0; r < TM; r++)
#pragma GCC unroll 4
                for (int j = 0; j < TN; j++) *(ga_v16u *)(C + (m + r) * ldc + n + 16 * j) = acc[r][j];
        }
    }
    for (int mm = 0; mm < M; mm++) {
        const int n0 = mm < m ? nw : 0; /* rows of full tiles only miss the column tail */
        for (int k = 0; k < K; k++) {
            const float a = A[mm * sam + k * sak];
            for (int j = n0; j < N; j++) C[mm * ldc + j] += a * B[k * ldb + j];
        }
    }
}

/* Flush-to-zero + denormals-are-zero for the calling thread; returns the previous state for
 * ftz_restore. The delta rule's decays e^{γ} and the softmax's e^{s−m} underflow to denormals
 * for strongly decaying heads / far-below-max scores, and each denormal operand costs ~100
 * cycles on x86 (measured: one DeltaNet head pair, T = 1024, g = −2 per step: 84 vs 8 ms).
 * Flushing changes only values below 1.2e-38, which add nothing visible to the outputs. */
#if defined(__SSE__)
#include <xmmintrin.h>
static inline unsigned ftz_on(void)
{
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
static inline void ftz_restore(unsigned old) { _mm_setcsr(old); }
#else
static inline unsigned ftz_on(void) { return 0; }
static inline void ftz_restore(unsigned old) { (void)old; }
#endif

#endif
