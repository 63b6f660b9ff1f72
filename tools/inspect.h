/* inspect — what a checkpoint holds: tensors grouped by module, totals per dtype, and for
 * GPTQ modules (qweight + qzeros + scales [+ g_idx]) the bit width and the effective bits per
 * weight including the scales/zeros/g_idx overhead. `gptq-eora inspect` prints this report;
 * tests call inspect_open() directly.
 *
 * Module = tensor name minus its last component ("lm_head.weight" -> "lm_head").
 * Bits = qweight rows * 32 / in, in = length of g_idx (or qzeros columns * 32 / out when there
 * is no g_idx). Effective bits = 8 * bytes(qweight, qzeros, scales, g_idx) / (in * out).
 * If config.json (or quantize_config.json) next to the checkpoint has a quantization_config,
 * each module's expected bits follow GPTQModel's rules: default `bits`, overridden by the first
 * `dynamic` pattern that re.match()es the module name ("+:" or bare = override, "-:" = skip). */
#ifndef TOOLS_INSPECT_H
#define TOOLS_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

typedef struct {
    char *name;
    size_t first, count; /* its tensors: inspect_report.tensors[first .. first+count) */
    uint64_t bytes;
    int quantized;       /* has qweight, qzeros and scales */
    int bits;            /* measured bit width; 0 if it cannot be derived */
    int64_t in, out, groups, group_size;
    uint64_t quant_bytes; /* bytes of qweight, qzeros, scales, g_idx */
    double eff_bits;     /* effective bits per weight incl. overhead; 0 if unknown */
    int cfg_bits;        /* bits the quantization_config expects: -1 no config, 0 excluded ("-:") */
} inspect_module;

typedef struct {
    size_t count;
    uint64_t bytes, numel;
} inspect_dtype_total;

typedef struct {
    char *path;
    st_set *set;
    const st_tensor **tensors; /* those passing the filter, in file order grouped by module */
    size_t n_tensors;
    inspect_module *modules;   /* in order of first appearance */
    size_t n_modules;
    inspect_dtype_total dtypes[DT_COUNT];
    uint64_t total_bytes;
    /* quantized modules */
    size_t n_quantized;
    size_t modules_by_bits[9]; /* [bits] = number of modules (2, 3, 4, 8) */
    uint64_t quant_weights;    /* sum of in * out */
    uint64_t quant_bytes;      /* bytes of their qweight/qzeros/scales/g_idx */
    double eff_bits;           /* 8 * quant_bytes / quant_weights */
    size_t n_mismatch;         /* modules whose measured bits differ from cfg_bits */
    /* quantization_config, if found */
    char *qcfg_file;           /* the file it came from, NULL if none */
    char *qcfg_json;           /* the object as compact JSON */
    int q_bits, q_group_size, q_desc_act, q_sym; /* -1 if absent */
    char *q_method, *q_format;                   /* NULL if absent */
} inspect_report;

/* path: a model/checkpoint directory, an index .json or one .safetensors file. filter: a
 * PCRE2 pattern searched in tensor names (NULL = all). 0 or -1 with err_set(). */
int inspect_open(const char *path, const char *filter, inspect_report *r);
void inspect_free(inspect_report *r);
/* The report as JSON text (malloc'd), the form `inspect --json` prints. */
char *inspect_json(const inspect_report *r);
/* Last component of a tensor name (after the module name). */
const char *inspect_leaf(const char *tensor_name);

#endif
