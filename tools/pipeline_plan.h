/* pipeline_plan — what a quantization job will do, decided before any work starts.
 *
 * For every decoder layer, the true-sequential stages of calib/model.h's layer_stages() and
 * the linears in them (Qwen3.5: q/k/v/o, in_proj_qkv, in_proj_z, out_proj, gate/up/down;
 * in_proj_a/b are never quantized). Each linear gets bits / group size / EoRA rank from the
 * first job rule whose regex matches its full name (or the job defaults); `skip` leaves it
 * in float. Also: how many times each rule matched (a rule that matches nothing is a
 * warning), the memory the run will need (and whether activations must spill to disk to
 * stay within memory_budget), and a FLOP estimate. */
#ifndef TOOLS_PIPELINE_PLAN_H
#define TOOLS_PIPELINE_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "io/dtype.h"
#include "io/job.h"
#include "io/model_config.h"
#include "io/safetensors.h"

typedef struct {
    char name[160];   /* full module name, e.g. model.language_model.layers.3.self_attn.q_proj */
    char rel[64];     /* name inside the layer, e.g. self_attn.q_proj (quant_log.csv) */
    char short_name[32]; /* q_proj (PEFT target_modules) */
    int layer, stage; /* stage index in layer_stages() */
    int tap;          /* tap_id feeding it */
    int out, in;
    dtype_t dtype;    /* stored dtype of the weight */
    int quantize;     /* 0: skipped by a rule (kept in float) */
    int bits, group_size, eora_rank;
    int rule;         /* index of the matching rule, -1 = job defaults */
} plan_module;

typedef struct {
    uint64_t activations;   /* X_L + the layer's mixer output in RAM (fp32); 0 when spilled */
    uint64_t spill_disk;    /* bytes on disk when spilled (X_L, X_{L+1}, mixer output) */
    uint64_t layer_weights; /* one layer in fp32 + originals of its quantized linears */
    uint64_t hessians;      /* Hessians of one layer alive at once (worst layer) */
    uint64_t batch;         /* one batch through the layer */
    uint64_t solver;        /* GPTQ + EoRA workspace of the largest linear */
    uint64_t base;          /* code, mapped tensors touched, tokenizer (rough) */
    uint64_t total;         /* peak estimate */
} plan_memory;

typedef struct {
    double forward;   /* calibration forward passes (stage passes + propagation) */
    double hessian;   /* SYRK */
    double gptq;      /* solver */
    double eora;      /* eigen/Cholesky + SVD */
    double total;
} plan_flops;

typedef struct {
    int n_layers;
    plan_module *mods;
    int n_mods;
    int *layer_first;  /* [n_layers + 1]: modules of layer L are layer_first[L] .. [L+1]-1 */
    int *rule_hits;    /* [n_rules] modules each rule decided */
    int n_rules;
    int need_calib;    /* some module needs a Hessian / covariance */
    int n_quantized, n_eora;
    int64_t tokens;    /* N · T */
    int seqs_per_batch;
    int spill;         /* 1: activations go to spill files */
    dtype_t spill_dtype;
    plan_memory mem;
    plan_flops flops;
} quant_plan;

/* Builds the plan; checks that every planned linear exists in the checkpoint with the
 * shape the config implies. Warnings (a rule matching nothing) go to `warn` (may be NULL). */
int plan_build(const job_t *job, const model_config *cfg, const st_set *ckpt, FILE *warn,
               quant_plan *plan);
void plan_free(quant_plan *plan);

/* Index of the module named `name`, or -1. */
int plan_find(const quant_plan *plan, const char *name);

/* Human-readable plan: one line per module, rule hits, memory and FLOP estimates. */
void plan_print(const quant_plan *plan, const job_t *job, const model_config *cfg, FILE *f);

/* Human-readable size ("1.50 GiB"). */
void plan_format_bytes(uint64_t bytes, char *buf, int len);

#endif
