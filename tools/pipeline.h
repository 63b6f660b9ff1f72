/* pipeline — `gptq-eora quantize JOB.yaml`: the layer-wise streaming GPTQ + EoRA job.
 *
 *   plan (pipeline_plan) → calibration windows → X0 = embed(ids) (RAM or spill files)
 *   → for each layer: stages (pipeline_runner), layer tensors + X_{L+1} durable, journal
 *   entry (io/journal: the resume point) → output files (pipeline_output) → report.json,
 *   quant_log.csv (pipeline_report). Progress on stderr (pipeline_progress).
 *
 * Work files live in <output>/.gptq-eora-work/ (journal, per-layer tensor files, the
 * in-RAM activations' resume copy) and <spill_dir> (spill files); they are removed when the
 * run completes. Test hooks (environment): GPTQ_EORA_FAIL_AFTER_LAYER=k (SIGKILL after layer
 * k's journal entry), GPTQ_EORA_FAIL_IN_LAYER=k (after layer k's first stage),
 * GPTQ_EORA_FAIL_IN_OUTPUT=1 (after the checkpoint shards are written).
 *
 * Under MPI (tools/dist.h, docs/mpi.md) every rank runs pipeline_run: rank k streams its
 * contiguous run of whole calibration batches (activations ∝ N/R per rank, in
 * <spill_dir>/rank<k>), Hessians are summed with an allreduce, each stage's linears are solved
 * round-robin across ranks and broadcast, and rank 0 alone prints, journals and writes. */
#ifndef TOOLS_PIPELINE_H
#define TOOLS_PIPELINE_H

#include "calib/data.h"
#include "io/job.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "io/spill.h"

typedef struct {
    int dry_run;          /* print the plan, memory and FLOP estimates; write nothing */
    int resume;           /* continue from the journal of an interrupted run */
    int quiet;            /* no progress lines */
    const char *log_path; /* JSON-lines event log (appended) */
    int threads;          /* > 0 overrides the job's thread count */
} pipeline_opts;

int pipeline_run(const job_t *job, const pipeline_opts *o);

/* Calibration windows of the job (N × T ids). */
int pipeline_calibration(const job_t *job, const model_config *cfg, token_windows *w);
/* X0 = embed(ids) written into x (rows N·T, cols hidden), `seqs_per_batch` sequences at a time. */
int pipeline_embed(const st_set *ckpt, const model_config *cfg, const token_windows *w, int seqs_per_batch,
                   act_store *x);

#endif
