/* pipeline_report — what each module and layer of a quantization run measured, kept in
 * the resume journal (so a resumed run reports every layer) and written at the end as
 * report.json and GPTQModel's quant_log.csv. */
#ifndef TOOLS_PIPELINE_REPORT_H
#define TOOLS_PIPELINE_REPORT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "io/job.h"
#include "tools/pipeline_plan.h"

typedef struct {
    int done;
    int64_t samples;     /* calibration tokens behind its Hessian (0 for plain RTN) */
    double damp;         /* damp_percent used (-1: diagonal floor was needed) */
    double diag_floor;
    int dead_columns;
    double avg_loss;     /* GPTQModel's avg_loss (quant_log.csv "loss") */
    double loss;         /* tr((W−Q) H (W−Q)ᵀ) */
    double eora_before, eora_after; /* EoRA loss tr(ΔW C ΔWᵀ) before / after (C = Σxᵀx / n) */
    double t_hessian;    /* the pass that accumulated its tap's Hessian: forward to the tap +
                            accumulation (shared by the modules reading that tap) */
    double t_syrk;       /* of which the Hessian accumulation itself (SYRK + fp64 sum) */
    double t_solve, t_eora, t_pack;
} module_result;

typedef struct {
    int done;
    double seconds;      /* whole layer */
    double t_forward;    /* stage passes + propagation */
    double tokens_per_s; /* calibration tokens through the layer per second (all passes) */
    int passes;          /* forward passes over the calibration data */
} layer_result;

typedef struct {
    module_result *mods; /* aligned with plan->mods */
    layer_result *layers;
    double t_calib, t_embed, t_output, wall;
    uint64_t peak_rss, bytes_written, estimate;
    int resumed_from;    /* first layer computed by this process (0 = fresh run) */
    int spilled;
} run_report;

void report_init(run_report *r, const quant_plan *plan);
void report_free(run_report *r);

/* The journal entry of layer L (JSON text, malloc'd): its tensors file, per module results,
 * layer timings; act_file: where X_{L+1} is (NULL when no later layer needs it). */
char *report_layer_entry(const quant_plan *plan, const run_report *r, int L, const char *tensors_file,
                         const char *act_file);
/* Restore layer results from a journal entry; *L receives its layer. */
int report_layer_restore(const quant_plan *plan, run_report *r, const char *entry, int *L);

/* quant_log.csv: layer,module,loss,samples,damp,time (GPTQModel's columns, samples filled). */
int report_write_quant_log(const char *path, const quant_plan *plan, const run_report *r);
/* report.json */
int report_write_json(const char *path, const job_t *job, const quant_plan *plan, const run_report *r);

/* Peak resident set of this process (getrusage), bytes. */
uint64_t report_peak_rss(void);

#endif
