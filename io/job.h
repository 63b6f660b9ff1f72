/* job — the YAML job file, parsed with libyaml and validated into job_t.
 * Errors name file:line:column and the key path (e.g. "job.yaml:12:5: quantize.rules[2].bits:
 * expected one of 2, 3, 4, 8"). Unknown keys are errors. Schema: docs/job.md.
 * Rule regexes are PCRE2 (UTF) and must match the WHOLE module name (anchored at both ends);
 * GPTQModel's `dynamic` uses Python re.match, which anchors only at the start. */
#ifndef IO_JOB_H
#define IO_JOB_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8 /* UTF-8 module names and patterns */
#endif
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *match;        /* regex on the full module name, e.g. ".*\\.self_attn\\..*" */
    pcre2_code *re;     /* compiled, anchored at both ends (GPTQModel's dynamic anchors only at the start, see docs/job.md) */
    int bits;           /* 0 = inherit the job default */
    int group_size;     /* 0 = inherit (-1 = per-channel) */
    int eora_rank;      /* -1 = inherit, 0 = no EoRA */
    int skip;           /* leave the module unquantized */
} quant_rule;

typedef struct {
    char *path;
    char *format;       /* "jsonl" | "text" | "ids" */
    char *field;        /* jsonl text field, default "text" */
    double weight;      /* share of the windows drawn from this source, default 1 */
} data_source;

typedef struct {
    char *path;         /* the job file itself */
    /* model & output */
    char *model;        /* HF checkpoint directory */
    char *output;       /* output directory */
    char *tokenizer;    /* default: <model>/tokenizer.json */
    /* quantization defaults (GPTQModel's) */
    char *method;       /* "gptq" (default) | "rtn" */
    int bits;           /* 4 */
    int group_size;     /* 128 */
    int desc_act;       /* 1 */
    int sym;            /* 1 */
    int act_group_aware;/* 0 */
    int static_groups;  /* 0 */
    int true_sequential;/* 1 */
    double damp_percent;        /* 0.05 */
    double damp_auto_increment; /* 0.01 */
    char *format;       /* "gptq" (v1, default) | "gptq_v2" */
    quant_rule *rules;  /* first match wins */
    int n_rules;
    /* EoRA */
    int eora_rank;      /* default rank for quantized modules; 0 = off */
    char *eora_method;  /* "cholesky" (default) | "eigen" */
    char *eora_svd;     /* "exact" (default) | "randomized" */
    char *eora_dtype;   /* "model" (default: module dtype) | "f16" | "bf16" | "f32" */
    /* calibration */
    data_source *sources;
    int n_sources;
    int n_samples;      /* N windows */
    int seq_len;        /* T tokens per window */
    uint64_t seed;      /* 0 */
    char *windows;      /* "concat" (default) | "document" */
    int allow_repeat;   /* 0 */
    /* evaluation run after quantize (optional; n_eval_windows 0 = none) */
    data_source eval_source;
    int eval_seq_len, eval_windows;
    /* resources */
    uint64_t memory_budget;  /* bytes; "24GiB" etc. in YAML; 0 = unlimited */
    char *spill_dir;         /* default <output>/.spill */
    char *spill_dtype;       /* "bf16" (default) | "f32" */
    int batch_tokens;        /* tokens per forward/Hessian batch, default 8192 */
    int threads;             /* 0 = OpenMP default */
    char *propagate;         /* "quantized" (default) | "float" */
    uint64_t shard_size;     /* output shard size in bytes, default 4 GiB */
} job_t;

int job_load(const char *path, job_t *job);
void job_free(job_t *job);
/* First rule whose regex matches the whole module name, or NULL. */
const quant_rule *job_match_rule(const job_t *job, const char *module);

/* What the job says about one module once rules and job defaults are combined. */
typedef struct {
    int quantize;            /* 0 when the first matching rule says skip */
    int bits, group_size;    /* rule value, else the job default */
    int eora_rank;           /* rule value, else job eora_rank; 0 when skipped */
    const quant_rule *rule;  /* the rule that matched, or NULL */
} module_settings;
void job_module_settings(const job_t *job, const char *module, module_settings *out);

/* Parse "24GiB", "512 MB", "1e9" → bytes. */
int parse_size(const char *s, uint64_t *out);

#endif
