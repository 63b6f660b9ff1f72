/* eora — EoRA rank-r correction of a quantized linear (REFERENCE.md §5).
 * ΔW = W − Wq is projected into the eigenspace of the input covariance C; the best rank-r
 * part gives B [out, r], A [r, in] with Wq + B·A ≈ W in the C-weighted norm.
 * Exact path (GPTQModel's): fp64 eigh of C with the eigenvalue cutoff. Fast path: Cholesky
 * factor as the square root (falls back to eigen when C is not PD). SVD exact or randomized.
 *
 * Precision follows GPTQModel: the square root of C is computed in fp64 and cast to fp32;
 * ΔW·S, its SVD and A are fp32. C is read from its lower triangle (row-major), as
 * torch.linalg.eigh / cholesky do. The Cholesky path forms A = Σ^{-1/2} U_rᵀ ΔW, equal to
 * √Σ V_rᵀ L⁻¹ in exact arithmetic but free of L⁻¹'s rounding amplification (eora.c). */
#ifndef EORA_EORA_H
#define EORA_EORA_H

#include <stdint.h>

typedef enum { EORA_EIGEN = 0, EORA_CHOLESKY = 1 } eora_method;
typedef enum { EORA_SVD_EXACT = 0, EORA_SVD_RANDOMIZED = 1 } eora_svd;

typedef struct {
    int rank;
    eora_method method;
    eora_svd svd;
    int oversample;     /* randomized SVD: default 64 */
    int power_iters;    /* randomized SVD: default 4 */
    uint64_t seed;      /* randomized SVD: default 0 */
} eora_opts;

/* rank 64, Cholesky (eigen fallback), exact SVD, oversample 64, 4 power iterations, seed 0
 * (p 16 / q 2 leaves the corrected loss 1–4% above the exact SVD's on real layers, whose
 * ΔW·S spectrum is flat; p 64 / q 4 stays within 0.1%: docs/eora.md). */
void eora_opts_default(eora_opts *o);

typedef struct {
    int out, in, rank;
    float *A;           /* [rank, in] */
    float *B;           /* [out, rank] */
    double loss_before; /* tr(ΔW C ΔWᵀ) with C as given */
    double loss_after;  /* tr((ΔW − BA) C (ΔW − BA)ᵀ) */
    int discarded;      /* eigenvalues cut off (eigen path) */
    eora_method used;   /* method actually used (after fallback) */
    double cutoff;      /* eigen: max(λ)·min(1, in·FLT_EPSILON); Cholesky: max(diag C)·in·DBL_EPSILON */
    int fallback;       /* 1 when Cholesky was asked for but C was not (numerically) PD */
} eora_result;

/* W, Wq [out, in] fp32; C [in, in] fp64 (any positive scale: Σ xᵀx, H, running mean).
 * Errors (-1, err set, naming `module`): rank outside 1..min(out, in), non-finite inputs,
 * a covariance without a positive eigenvalue, LAPACK failures. */
int eora_compute(const char *module, const float *W, const float *Wq, int out, int in,
                 const double *C, const eora_opts *o, eora_result *r);
void eora_result_free(eora_result *r);

const char *eora_method_name(eora_method m); /* "eigen" / "cholesky" */
const char *eora_svd_name(eora_svd s);       /* "exact" / "randomized" */

/* Top-r singular triplets of M [m, n] (fp32, row-major, not modified): U [m, r], s[r]
 * (descending), Vt [r, n]. EORA_SVD_EXACT: full sgesdd; EORA_SVD_RANDOMIZED: Halko–
 * Martinsson–Tropp range finder with `oversample` extra columns and `power_iters` power
 * iterations (QR re-orthonormalised each half step), Gaussian test matrix from `seed`. */
int eora_svd_topr(const float *M, int m, int n, int r, eora_svd kind, int oversample,
                  int power_iters, uint64_t seed, float *U, float *s, float *Vt);

#endif
