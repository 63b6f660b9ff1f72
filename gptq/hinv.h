/* hinv — the damped inverse Hessian factor GPTQ needs: Hinv = chol((H + λI)⁻¹, upper) with
 * λ = damp · mean(diag H), with GPTQModel's recovery when Cholesky fails: damp += increment
 * while 0 < damp < 1 (each try from the undamped diagonal); if that is exhausted, the same
 * again on a diagonal floored by f = max|diag|·1e-6·10^(k−1), k = 1..6
 * (diag ← max(diag + f, f)). */
#ifndef GPTQ_HINV_H
#define GPTQ_HINV_H

typedef enum {
    HINV_TORCH = 0, /* spotrf → spotri → spotrf(upper): torch's cholesky_inverse path */
    HINV_FAST = 1   /* reversed-order Cholesky + strtri: the same factor in half the flops */
} hinv_method;

typedef struct {
    double damp;       /* damp_percent that succeeded */
    double diag_floor; /* floor added (0 if none was needed) */
    int tries;         /* Cholesky attempts */
} hinv_info;

/* H [n,n] fp32 full symmetric, not modified. On success U [n,n] holds in its upper triangle
 * (row-major) the upper Cholesky factor of the damped inverse; the strict lower triangle is
 * scratch. Returns 0, or -1 with an error naming `module` if no damp/floor works. */
int hinv_factor(const char *module, const float *H, int n, double damp_percent, double damp_inc,
                hinv_method method, float *U, hinv_info *info);

#endif
