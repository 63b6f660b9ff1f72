/* eora — EoRA rank-r correction of a quantized linear (REFERENCE.md §5).
 * ΔW = W − Wq is projected into the eigenspace of the input covariance C; the best rank-r
 * part gives B [out, r], A [r, in] with Wq + B·A ≈ W in the C-weighted norm.
 * Exact path (GPTQModel's): fp64 eigh of C with the eigenvalue cutoff. Fast path: Cholesky
 * factor as the square root (falls back to eigen when C is not PD). SVD exact or randomized. */
#ifndef EORA_EORA_H
#define EORA_EORA_H

#include <stdint.h>

typedef enum { EORA_EIGEN = 0, EORA_CHOLESKY = 1 } eora_method;
typedef enum { EORA_SVD_EXACT = 0, EORA_SVD_RANDOMIZED = 1 } eora_svd;

typedef struct {
    int rank;
    eora_method method;
    eora_svd svd;
    int oversample;     /* randomized SVD: default 16 */
    int power_iters;    /* randomized SVD: default 2 */
    uint64_t seed;      /* randomized SVD: default 0 */
} eora_opts;

void eora_opts_default(eora_opts *o);

typedef struct {
    int out, in, rank;
    float *A;           /* [rank, in] */
    float *B;           /* [out, rank] */
    double loss_before; /* tr(ΔW C ΔWᵀ) with C as given */
    double loss_after;  /* tr((ΔW − BA) C (ΔW − BA)ᵀ) */
    int discarded;      /* eigenvalues cut off (eigen path) */
    eora_method used;   /* method actually used (after fallback) */
} eora_result;

/* W, Wq [out, in] fp32; C [in, in] fp64 (any positive scale: Σ xᵀx, H, running mean). */
int eora_compute(const char *module, const float *W, const float *Wq, int out, int in,
                 const double *C, const eora_opts *o, eora_result *r);
void eora_result_free(eora_result *r);

#endif
