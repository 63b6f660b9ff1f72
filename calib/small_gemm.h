/* small_gemm — a register-tiled accumulate-GEMM for the small per-head products that run
 * inside OpenMP parallel regions (where BLAS must not be called). Inline only: it is compiled
 * into each caller, so a caller built with target_clones gets the wide-vector version. */
#ifndef CALIB_SMALL_GEMM_H
#define CALIB_SMALL_GEMM_H

#include <stdint.h>

/* C[m][n] += Σ_k A(m, k)·B[k][n] for small blocks: A(m, k) = A[m·sam + k·sak] (either layout),
 * B and C row-major. 4 × 16 register tiles keep the accumulators in vector registers; the
 * column tail (n not a multiple of 16) takes the plain loop. */
static inline __attribute__((always_inline)) void gemm_acc(int M, int N, int K, const float *A, int64_t sam, int64_t sak, const float *B,
                  int64_t ldb, float *C, int64_t ldc)
{
    enum { TM = 4, TN = 16 };
    const int n16 = N - N % TN;
    int m = 0;
    for (; m + TM <= M; m += TM) {
        for (int n = 0; n < n16; n += TN) {
            float acc[TM][TN];
            for (int r = 0; r < TM; r++)
#pragma omp simd
                for (int j = 0; j < TN; j++) acc[r][j] = C[(m + r) * ldc + n + j];
            for (int k = 0; k < K; k++) {
                const float *b = B + k * ldb + n;
                for (int r = 0; r < TM; r++) {
                    const float a = A[(m + r) * sam + k * sak];
#pragma omp simd
                    for (int j = 0; j < TN; j++) acc[r][j] += a * b[j];
                }
            }
            for (int r = 0; r < TM; r++)
#pragma omp simd
                for (int j = 0; j < TN; j++) C[(m + r) * ldc + n + j] = acc[r][j];
        }
    }
    for (int mm = 0; mm < M; mm++) {
        const int n0 = mm < m ? n16 : 0; /* rows of full tiles only miss the column tail */
        for (int k = 0; k < K; k++) {
            const float a = A[mm * sam + k * sak];
            for (int j = n0; j < N; j++) C[mm * ldc + j] += a * B[k * ldb + j];
        }
    }
}

#endif
