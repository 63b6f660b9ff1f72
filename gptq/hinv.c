/* hinv — damped Cholesky inverse with GPTQModel's recovery ladder (LAPACKE). */
#include "gptq/hinv.h"

#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "io/err.h"

/* Buffers are row-major; LAPACK sees them column-major, i.e. transposed. For a symmetric
 * matrix that is the same matrix, and a column-major 'U' factor is a row-major lower one. */

static void mirror_lower_to_upper(float *A, int n)
{
#pragma omp parallel for schedule(dynamic, 32)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) A[(size_t)j * n + i] = A[(size_t)i * n + j];
}

/* torch path: L = chol(A) (row-major lower), A⁻¹ = potri(L) (row-major lower), mirror,
 * then column-major lower Cholesky of A⁻¹ = row-major upper U with A⁻¹ = UᵀU. */
static int factor_torch(float *A, int n)
{
    if (LAPACKE_spotrf(LAPACK_COL_MAJOR, 'U', n, A, n) != 0) return -1;
    if (LAPACKE_spotri(LAPACK_COL_MAJOR, 'U', n, A, n) != 0) return -1;
    mirror_lower_to_upper(A, n);
    if (LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', n, A, n) != 0) return -1;
    return 0;
}

static void reverse(float *A, size_t len)
{
#pragma omp parallel for
    for (size_t i = 0; i < len / 2; i++) {
        float t = A[i];
        A[i] = A[len - 1 - i];
        A[len - 1 - i] = t;
    }
}

/* fast path: with P the order reversal (reversing a row-major buffer = P·A·P),
 * P A P = L̃ L̃ᵀ ⇒ A⁻¹ = (P L̃⁻¹ P)ᵀ (P L̃⁻¹ P) and P L̃⁻¹ P is upper triangular with a positive
 * diagonal: the unique upper Cholesky factor of A⁻¹. One Cholesky + one triangular inverse. */
static int factor_fast(float *A, int n)
{
    size_t len = (size_t)n * n;
    reverse(A, len);
    if (LAPACKE_spotrf(LAPACK_COL_MAJOR, 'U', n, A, n) != 0) return -1; /* row-major lower L̃ */
    if (LAPACKE_strtri(LAPACK_COL_MAJOR, 'U', 'N', n, A, n) != 0) return -1;
    reverse(A, len);
    return 0;
}

static int try_damps(const float *H, const float *diag, int n, double damp_percent, double damp_inc,
                     hinv_method method, float *U, hinv_info *info)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += diag[i];
    const float mean = (float)(s / n);
    double damp = damp_percent;
    while (0 < damp && damp < 1) {
        memcpy(U, H, (size_t)n * n * sizeof(float));
        const float add = (float)damp * mean;
        for (int i = 0; i < n; i++) U[(size_t)i * n + i] = diag[i] + add;
        info->tries++;
        int rc = method == HINV_FAST ? factor_fast(U, n) : factor_torch(U, n);
        if (rc == 0) {
            info->damp = damp;
            return 0;
        }
        if (damp_inc == 0) break;
        damp += damp_inc;
    }
    return -1;
}

int hinv_factor(const char *module, const float *H, int n, double damp_percent, double damp_inc,
                hinv_method method, float *U, hinv_info *info)
{
    memset(info, 0, sizeof *info);
    float *diag = xmalloc((size_t)n * sizeof(float));
    float amax = 0;
    for (int i = 0; i < n; i++) {
        diag[i] = H[(size_t)i * n + i];
        if (fabsf(diag[i]) > amax) amax = fabsf(diag[i]);
    }
    double base = (isfinite(amax) && amax != 0) ? (double)amax * 1e-6 : 1e-6;
    float *cur = xmalloc((size_t)n * sizeof(float));
    int rc = -1;
    for (int attempt = 0; attempt <= 6 && rc != 0; attempt++) {
        float floor_inc = attempt == 0 ? 0.f : (float)(base * pow(10.0, attempt - 1));
        for (int i = 0; i < n; i++) {
            float d = diag[i] + floor_inc;
            cur[i] = attempt == 0 ? diag[i] : (d < floor_inc ? floor_inc : d);
        }
        rc = try_damps(H, cur, n, damp_percent, damp_inc, method, U, info);
        if (rc == 0) info->diag_floor = floor_inc;
    }
    free(diag);
    free(cur);
    if (rc != 0)
        return err_set("gptq: module %s: Hessian is not positive definite after %d Cholesky attempts "
                       "(damp %.4g + %.4g steps, diagonal floor up to %.3g)",
                       module, info->tries, damp_percent, damp_inc, base * 1e5);
    return 0;
}
