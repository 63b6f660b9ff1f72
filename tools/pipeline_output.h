/* pipeline_output — the files a finished quantization job leaves in its output directory.
 *
 * The checkpoint is assembled at the end from the input checkpoint (every tensor that is
 * not a quantized linear's weight, copied bit-exact in its dtype and name, in input order)
 * and the per-layer tensor files of the run (qweight/qzeros/scales/g_idx in place of each
 * quantized weight), so a resumed run writes the same bytes as an uninterrupted one.
 * Then eora/ (PEFT adapter), tokenizer/generation files, quantize_config.json and, last,
 * config.json — the file that makes the directory loadable. Every file is written under a
 * temporary name and renamed. */
#ifndef TOOLS_PIPELINE_OUTPUT_H
#define TOOLS_PIPELINE_OUTPUT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "io/job.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "tools/pipeline_plan.h"

/* Path of layer L's tensor file in the work directory (malloc'd). */
char *output_layer_file(const char *work_dir, int L);

/* The quantization_config object (REFERENCE §4): top-level defaults, per-module differences
 * in `dynamic` ("+:(?:regex)$" overrides, "-:(?:regex)$" skipped), meta with quantizer gptq-eora. */
cJSON *output_quant_config(const job_t *job, const quant_plan *plan);

/* model*.safetensors (+ index) from the input checkpoint and the layer files. */
int output_checkpoint(const job_t *job, const quant_plan *plan, const st_set *ckpt, const char *work_dir,
                      uint64_t *bytes);
/* eora/adapter_model.safetensors + eora/adapter_config.json (nothing without EoRA modules). */
int output_adapter(const job_t *job, const quant_plan *plan, const char *work_dir, uint64_t *bytes);
/* Tokenizer / generation / processor files copied, quantize_config.json, config.json. */
int output_configs(const job_t *job, const quant_plan *plan, uint64_t *bytes);
/* Removes the temporaries a run killed while writing its outputs left in the output directory
 * (checkpoint shards, index, configs, report, side files, the adapter). */
void output_remove_temps(const job_t *job);

#endif
