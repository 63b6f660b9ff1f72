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
    /* Not in GPTQModel (0 = its behaviour): */
    int hinv_fast;         /* 1: same Hinv factor via reversed Cholesky + strtri (half the flops,
                              last-bit differences to torch's path) */
    int skip_layer_loss;   /* 1: leave r->loss at -1 (saves one out×in×in sgemm) */
} gptq_opts;

void gptq_opts_default(gptq_opts *o);

typedef struct {
    int out, in, n_groups, bits, group_size, sym;
    float *Q;        /* [out, in] dequantized weight, original column order */
    float *scale;    /* [out, n_groups] in the order groups were solved */
    float *zero;     /* [out, n_groups] */
    int32_t *g_idx;  /* [in] group of each original column */
    uint8_t *codes;  /* [out, in] integer codes, original column order */
    double damp;     /* damp_percent actually used (after auto-increment); 0 for RTN */
    double diag_floor; /* floor added to diag(H) in the last-resort retries, else 0 */
    double avg_loss; /* GPTQModel's avg_loss: Σ losses / n_samples (Σ losses if n_samples ≤ 0);
                        0 for RTN */
    double loss;     /* tr((W−Q) H (W−Q)ᵀ); -1 when skipped or for RTN */
    int dead_columns;
    double t_hinv, t_blocks, t_loss; /* seconds spent in the inverse factor, the block loop,
                                        the layer loss */
} gptq_result;

/* W [out, in] fp32, H [in, in] fp32 (the Hessian 2/n Σ xᵀx; not modified), n_samples for
 * avg_loss. `module` names the linear in error messages. Returns 0 or -1 (err set: bad
 * options, non-finite W or H, Hessian not PD after every recovery); on error r holds nothing.
 * Deviation from GPTQModel: static_groups with act_group_aware uses each column's own
 * group's quantizer (GPTQModel indexes the precomputed quantizers by solve position). */
int gptq_solve(const char *module, const float *W, int out, int in, const float *H,
               int64_t n_samples, const gptq_opts *o, gptq_result *r);
/* Round to nearest on the same grid (per-group min/max, no Hessian): the RTN baseline. */
int gptq_rtn(const char *module, const float *W, int out, int in, const gptq_opts *o,
             gptq_result *r);
void gptq_result_free(gptq_result *r);

/* tr(D H Dᵀ) for D = W − Q (fp64 accumulation). */
double gptq_layer_loss(const float *W, const float *Q, int out, int in, const float *H);

#endif
