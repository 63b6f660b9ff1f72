/* gptq — the GPTQ solver, step for step as GPTQModel (REFERENCE.md §2), so that a published
 * checkpoint is reproduced: same damping and recovery, permutation, group boundaries,
 * rounding (half-even) and clamping. Blocks of 128 columns; lazy updates as sgemm;
 * Cholesky / inverse via LAPACKE. */
#ifndef GPTQ_GPTQ_H
#define GPTQ_GPTQ_H

#include <stdint.h>

typedef struct {
    int bits;              /* 2, 3, 4, 8 */
    int group_size;        /* -1 (per channel) or 32..1024 */
    int sym;               /* 1 */
    int desc_act;          /* 1 */
    int static_groups;     /* 0 */
    int act_group_aware;   /* 0; ignored when desc_act */
    double damp_percent;   /* 0.05 */
    double damp_auto_increment; /* 0.01 */
    int blocksize;         /* 128 */
} gptq_opts;

void gptq_opts_default(gptq_opts *o);

typedef struct {
    int out, in, n_groups, bits, group_size, sym;
    float *Q;        /* [out, in] dequantized weight, original column order */
    float *scale;    /* [out, n_groups] in the order groups were solved */
    float *zero;     /* [out, n_groups] */
    int32_t *g_idx;  /* [in] group of each original column */
    uint8_t *codes;  /* [out, in] integer codes, original column order */
    double damp;     /* damp_percent actually used (after auto-increment), or -1 when the
                        diagonal floor was needed */
    double diag_floor; /* floor added in the last-resort retry, else 0 */
    double avg_loss; /* GPTQModel's avg_loss: Σ losses / n_samples */
    double loss;     /* tr((W−Q) H (W−Q)ᵀ) */
    int dead_columns;
} gptq_result;

/* W [out, in] fp32, H [in, in] fp32 (the Hessian 2/n Σ xᵀx; not modified), n_samples for
 * avg_loss. `module` names the linear in error messages. Returns 0 or -1 (err set). */
int gptq_solve(const char *module, const float *W, int out, int in, const float *H,
               int64_t n_samples, const gptq_opts *o, gptq_result *r);
/* Round to nearest on the same grid (per-group min/max, no Hessian): the RTN baseline. */
int gptq_rtn(const char *module, const float *W, int out, int in, const gptq_opts *o,
             gptq_result *r);
void gptq_result_free(gptq_result *r);

/* tr(D H Dᵀ) for D = W − Q (fp64 accumulation). */
double gptq_layer_loss(const float *W, const float *Q, int out, int in, const float *H);

#endif
