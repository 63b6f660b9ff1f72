/* model — the Qwen3.5 dense text decoder on CPU, fp32, layer by layer (REFERENCE.md §7).
 *
 * The pipeline owns the loop over layers: it loads one layer's weights (converted to fp32),
 * may replace any linear's weight by its quantized version (and attach an EoRA adapter),
 * and runs the layer on a batch of sequences. At every linear input ("tap") a callback sees
 * the rows that linear multiplies; returning non-zero stops the layer there
 * (true-sequential stages). All GEMMs are OpenBLAS sgemm over the batch's tokens; BLAS is
 * never called from inside an OpenMP parallel region. */
#ifndef CALIB_MODEL_H
#define CALIB_MODEL_H

#include <stdint.h>

#include "io/model_config.h"
#include "io/safetensors.h"

typedef struct {
    char name[160];   /* full module name, e.g. "model.language_model.layers.3.self_attn.q_proj" */
    int out, in;
    float *w;         /* [out, in] fp32, owned */
    float *bias;      /* [out] or NULL */
    float *lora_A;    /* [r, in] or NULL: y += (x·Aᵀ)·Bᵀ (owned: freed with the layer) */
    float *lora_B;    /* [out, r] (owned) */
    int lora_r;
} linear_t;

typedef enum {
    TAP_ATTN_QKV = 0, /* input of q_proj/k_proj/v_proj (input_layernorm output) */
    TAP_ATTN_O,       /* input of o_proj (gated attention output) */
    TAP_LIN_IN,       /* input of in_proj_qkv/in_proj_z/in_proj_a/in_proj_b */
    TAP_LIN_OUT,      /* input of out_proj (gated-norm output) */
    TAP_MLP_IN,       /* input of gate_proj/up_proj (post_attention_layernorm output) */
    TAP_MLP_DOWN,     /* input of down_proj */
    TAP_COUNT
} tap_id;

const char *tap_name(tap_id t);

typedef struct {
    int index;
    layer_type type;
    float *input_norm, *post_norm;            /* [hidden] */
    /* full attention */
    linear_t q_proj, k_proj, v_proj, o_proj;
    float *q_norm, *k_norm;                   /* [head_dim] */
    /* gated DeltaNet */
    linear_t in_proj_qkv, in_proj_z, in_proj_a, in_proj_b, out_proj;
    float *conv1d;                            /* [channels, kernel] */
    float *A_log, *dt_bias;                   /* [lin_v_heads] */
    float *lin_norm;                          /* [lin_v_dim] */
    /* MLP */
    linear_t gate_proj, up_proj, down_proj;
} layer_weights;

/* Reads layer L's tensors (each in its stored dtype) from the checkpoint into fp32. */
int layer_weights_load(const st_set *ckpt, const model_config *cfg, int L, layer_weights *lw);
void layer_weights_free(layer_weights *lw);
/* Linear by short name ("q_proj", "in_proj_qkv", "down_proj", ...); NULL if not in this layer. */
linear_t *layer_linear(layer_weights *lw, const char *short_name);

/* True-sequential stages (GPTQModel's order, REFERENCE.md §6). Linears sharing one tap share
 * one Hessian. `linears` lists the linears GPTQModel quantizes in that stage. DeltaNet layers:
 * [in_proj_qkv] → [in_proj_z] → [out_proj] → [gate,up] → [down]; the first two stages read the
 * same tap (TAP_LIN_IN; in_proj_a/b read it too but are never quantized). */
typedef struct {
    tap_id tap;
    const char *linears[4];
    int n;
} layer_stage;
int layer_stages(layer_type type, const layer_stage **stages); /* returns the count */

/* Return non-zero to stop the layer at this tap. x: rows × cols fp32 (rows = B·T). */
typedef int (*tap_fn)(void *ctx, tap_id tap, const float *x, int64_t rows, int cols);

/* h_in, h_out: [B·T, hidden] (sequences of T tokens, positions 0..T−1 each). h_out may equal
 * h_in. Returns 0 when the layer ran to the end, 1 when a tap stopped it (h_out untouched),
 * -1 on error. tap may be NULL. */
int layer_forward(const model_config *cfg, const layer_weights *lw, const float *h_in,
                  float *h_out, int B, int T, tap_fn tap, void *ctx);

/* Embedding lookup: out [n, hidden]. Errors on ids outside the vocabulary. */
int model_embed(const st_set *ckpt, const model_config *cfg, const int32_t *ids, int64_t n,
                float *out);

typedef struct {
    float *norm;      /* [hidden] final norm */
    linear_t lm_head; /* [vocab, hidden] (embed_tokens when tied) */
} head_weights;
int head_weights_load(const st_set *ckpt, const model_config *cfg, head_weights *hw);
void head_weights_free(head_weights *hw);
/* Final norm of h [n, hidden], written to `normed` if non-NULL (h itself is never modified);
 * logits [n, vocab] = lm_head(normed) if non-NULL. */
int head_forward(const model_config *cfg, const head_weights *hw, const float *h, int64_t n,
                 float *normed, float *logits);

/* y [rows, out] = x [rows, in] · Wᵀ (+ bias) (+ (x·Aᵀ)·Bᵀ). */
void linear_apply(const linear_t *l, const float *x, int64_t rows, float *y);

#endif
