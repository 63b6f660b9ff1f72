/* pack — GPTQ checkpoint tensors, bit-compatible with GPTQModel's pack_block.
 * qweight int32 [in·bits/32, out]; qzeros int32 [n_groups, out·bits/32]; scales fp16
 * [n_groups, out]; g_idx int32 [in]. v2 stores zero, v1 (`gptq` format on disk) stores
 * zero − 1 (word-wise subtraction for 2/4/8 bits, field-wise for 3; REFERENCE.md §3). */
#ifndef GPTQ_PACK_H
#define GPTQ_PACK_H

#include <stdint.h>

#include "gptq/gptq.h"
#include "io/dtype.h"

typedef enum { GPTQ_FMT_V1 = 1, GPTQ_FMT_V2 = 2 } gptq_format;

typedef struct {
    int bits, in, out, n_groups;
    int32_t *qweight;   /* [qw_rows, out] */
    int32_t *qzeros;    /* [n_groups, qz_cols] */
    uint16_t *scales;   /* fp16 [n_groups, out] */
    int32_t *g_idx;     /* [in] */
    int qw_rows, qz_cols;
} gptq_packed;

/* Packs a solver result (codes re-derived from Q cast to fp16 like GPTQModel):
 * code = round((Q + zero·scale) / scale) in fp32, not clamped (as pack_block).
 * Needs in % 32 == 0 and out % 32 == 0. Returns 0 or -1 (err set). */
int gptq_pack(const gptq_result *r, gptq_format fmt, gptq_packed *p);
/* Same with Q cast to the module dtype (F16, BF16 or F32) first, as GPTQModel does with
 * the module's weight dtype. */
int gptq_pack_dtype(const gptq_result *r, gptq_format fmt, dtype_t module_dtype, gptq_packed *p);
/* Integer codes [out, in] from qweight (any format: qweight does not depend on it). */
void gptq_unpack_codes(const gptq_packed *p, uint8_t *codes);
/* Zero points [n_groups, out] from qzeros stored in format fmt. */
void gptq_unpack_zeros(const gptq_packed *p, gptq_format fmt, int32_t *zeros);
/* Dequantize packed tensors → W [out, in] fp32 (W[o,j] = s[g,o]·(code − zero[g,o])). */
int gptq_unpack_dequant(const gptq_packed *p, gptq_format fmt, float *W);
void gptq_packed_free(gptq_packed *p);
/* Convert a qzeros tensor between formats in place: 2/4/8 bits word-wise ± 0x55555555 /
 * 0x11111111 / 0x01010101 (what every loader does); 3 bits field-wise ±1 mod 8 on each
 * 3-word triple (GPTQModel's logical correction: 3-bit fields straddle words). n_words must
 * be a multiple of 3 for 3 bits. */
void gptq_qzeros_convert(int32_t *qzeros, int64_t n_words, int bits, gptq_format from, gptq_format to);

#endif
