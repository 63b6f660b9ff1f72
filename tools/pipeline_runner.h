/* pipeline_runner — one decoder layer of a quantization job, stage by stage.
 *
 * For each true-sequential stage of the layer (calib/model.h layer_stages): stream the
 * calibration activations X_L through the layer, batch by batch, up to the stage's tap and
 * accumulate that tap's Hessian (once per distinct tap: stages that share a tap share it);
 * then for each linear of the stage GPTQ-solve (or RTN), pack, compute EoRA from the same
 * Σxᵀx, and install Q (cast to the module dtype, as GPTQModel) + B·A so that later
 * stages see the corrected layer. The mixer output (o_proj / out_proj input) is captured
 * once, in the pass of the stage that reads it, and the MLP stages and the propagation run
 * from it (tools/pipeline_tail.h): the attention / DeltaNet core runs once per layer. Finally X_{L+1} = layer(X_L) with the quantized layer
 * (propagate: quantized) or with the original float layer (propagate: float).
 * The layer's packed tensors and adapter tensors go to one safetensors file (the resume
 * unit), under their final names. */
#ifndef TOOLS_PIPELINE_RUNNER_H
#define TOOLS_PIPELINE_RUNNER_H

#include "calib/model.h"
#include "gptq/hessian.h"
#include "io/job.h"
#include "io/spill.h"
#include "tools/pipeline_plan.h"
#include "tools/pipeline_progress.h"
#include "tools/pipeline_report.h"

typedef struct {
    const job_t *job;
    const model_config *cfg;
    const st_set *ckpt;
    const quant_plan *plan;
    run_report *report;
    progress *prog;       /* may be NULL */
    int T;                /* tokens per calibration sequence */
    int n_seqs;           /* calibration sequences */
    act_store *x;         /* X_L on entry, X_{L+1} on return */
    act_store *x_spare;   /* NULL: X_{L+1} overwrites X_L batch by batch (RAM); else the spill
                             file receiving X_{L+1} (swapped with x on return) */
    int last_needed_layer;/* no propagation after this layer (nothing downstream needs X) */
    const char *mix_path; /* NULL: the captured mixer output stays in RAM; else its spill file */
    dtype_t mix_dtype;    /* spill file dtype */
    int no_mix_cache;     /* 1: every stage pass runs the whole layer (reference path) */
} runner;

/* Quantize layer L and propagate X. tensors_path: the layer's .safetensors file. */
int runner_layer(runner *r, int L, const char *tensors_path);

/* Accumulate the Hessian of `tap` over all calibration batches through layer weights lw
 * (which may already hold quantized linears). h must be initialised with the tap's width. */
int runner_tap_hessian(runner *r, const layer_weights *lw, tap_id tap, hessian_acc *h);

/* Name of the adapter tensors of module `name` (PEFT layout). */
void runner_lora_name(const char *module, const char *which, char *buf, int len);

#endif
