/* qcheckpoint — read a GPTQ checkpoint (ours or any GPTQModel-written one of a supported
 * architecture) back into fp32 layer weights, optionally with a PEFT LoRA/EoRA adapter.
 *
 * quantization_config comes from DIR/config.json, else DIR/quantize_config.json (REFERENCE.md
 * §4): bits / group_size / desc_act / sym defaults, checkpoint_format "gptq" (v1 zeros, stored
 * zero − 1) or "gptq_v2", and `dynamic` ({"+:regex": {bits, group_size}, "-:regex": {}}; regexes
 * anchored at the start of the module name like Python's re.match). A module with
 * P.qweight/.qzeros/.scales/.g_idx is dequantized (bits 2/3/4/8, taken from the qweight shape
 * and checked against `dynamic`); a module stored as P.weight is read as is. A checkpoint
 * without any quantization_config is accepted when it holds no .qweight (a float checkpoint).
 *
 * Adapter (REFERENCE.md §5): a directory with adapter_model.safetensors + adapter_config.json
 * (or the .safetensors file itself, next to its adapter_config.json). Tensors
 * base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight [out, r]; the PEFT
 * scaling lora_alpha / r (alpha / √r with use_rslora; alpha_pattern honoured) is folded into B,
 * so that y = x·Wᵀ + (x·Aᵀ)·Bᵀ. Every adapter tensor must name a linear of the model. */
#ifndef TOOLS_QCHECKPOINT_H
#define TOOLS_QCHECKPOINT_H

#include "calib/model.h"
#include "gptq/pack.h"
#include "io/model_config.h"
#include "io/safetensors.h"

typedef struct qcheckpoint qcheckpoint;

/* dir: the GPTQ checkpoint; adapter: NULL or the adapter directory/file. cfg: the
 * architecture (the base model's config; the checkpoint's layer count must agree). */
qcheckpoint *qckpt_open(const char *dir, const char *adapter, const model_config *cfg);
void qckpt_close(qcheckpoint *q);

const st_set *qckpt_tensors(const qcheckpoint *q);
/* The checkpoint directory (for messages). */
const char *qckpt_dir(const qcheckpoint *q);
/* One line: "48 quantized modules (36 × 4-bit, 12 × 8-bit), format gptq (v1), adapter r 64 on 48". */
const char *qckpt_describe(const qcheckpoint *q);
int qckpt_has_config(const qcheckpoint *q);
gptq_format qckpt_format(const qcheckpoint *q);

/* Bits and group size `dynamic` + defaults give `module` (full name); 0 bits when a "-:" rule
 * excludes it. */
void qckpt_module_plan(const qcheckpoint *q, const char *module, int *bits, int *group_size);

/* fp32 weight of one linear: *W malloc'd [out, in], *bias malloc'd [out] or NULL; *bits = the
 * quantized width, 0 for a float module. out/in are the expected shape. */
int qckpt_load_linear(const qcheckpoint *q, const char *module, int out, int in, float **W,
                      float **bias, int *bits);

/* Adapter factors of `module` (A [r,in], B [out,r] with the scaling folded in); returns 0 with
 * *A = NULL when the adapter has none for it (or there is no adapter). */
int qckpt_load_lora(const qcheckpoint *q, const char *module, int out, int in, float **A,
                    float **B, int *r);

/* Turn layer L, as loaded from the base model, into the checkpoint's layer in place: every
 * linear's weight/bias replaced by the checkpoint's (dequantized), its norms / conv / A_log /
 * dt_bias read from the checkpoint, the adapter attached. */
int qckpt_apply_layer(const qcheckpoint *q, const model_config *cfg, int L, layer_weights *lw);

/* 1 when tensor `name` is absent from the checkpoint or byte-identical to the base's (lets the
 * evaluator share embeddings / lm_head instead of loading them twice), 0 when it differs. */
int qckpt_tensor_same(const qcheckpoint *q, const st_set *base, const char *name);

#endif
