/* pack — GPTQ checkpoint tensors, bit-compatible with GPTQModel's pack_block.
 * qweight int32 [in·bits/32, out]; qzeros int32 [n_groups, out·bits/32]; scales fp16
 * [n_groups, out]; g_idx int32 [in]. v2 stores zero, v1 (`gptq` format on disk) stores
 * zero − 1 via a word-wise subtraction (REFERENCE.md §3). */
#ifndef GPTQ_PACK_H
#define GPTQ_PACK_H

#include <stdint.h>

#include "gptq/gptq.h"

typedef enum { GPTQ_FMT_V1 = 1, GPTQ_FMT_V2 = 2 } gptq_format;

typedef struct {
    int bits, in, out, n_groups;
    int32_t *qweight;   /* [qw_rows, out] */
    int32_t *qzeros;    /* [n_groups, qz_cols] */
    uint16_t *scales;   /* fp16 [n_groups, out] */
    int32_t *g_idx;     /* [in] */
    int qw_rows, qz_cols;
} gptq_packed;

/* Packs a solver result (codes re-derived from Q cast to fp16 like GPTQModel). */
int gptq_pack(const gptq_result *r, gptq_format fmt, gptq_packed *p);
/* Dequantize packed tensors → W [out, in] fp32 (W[o,j] = s[g,o]·(code − zero[g,o])). */
int gptq_unpack_dequant(const gptq_packed *p, gptq_format fmt, float *W);
void gptq_packed_free(gptq_packed *p);
/* Convert a qzeros tensor between formats in place (word-wise ± constant). */
void gptq_qzeros_convert(int32_t *qzeros, int64_t n_words, int bits, gptq_format from, gptq_format to);

#endif
