/* pack — GPTQModel's pack_block (qweight, qzeros, scales, g_idx) and its inverse.
 * Every 32 consecutive values (inputs for qweight, outputs for qzeros) become `bits` words:
 * for 2/4/8 bits word t holds values t·pf … t·pf+pf−1 (pf = 32/bits) at bit k·bits; for 3 bits
 * the 96 bits are laid out 10 | 1 | 10 | 1 | 10 (values 10 and 21 straddle two words). */
#include "gptq/pack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"

#define MASK32 0xffffffffull

/* x[32] → words[bits]. Arithmetic as pack_block: int64 shifts summed, masked to 32 bits, so
 * an out-of-range value (which pack_block does not clamp) spills the same way. */
static void pack32(const int64_t *x, int bits, uint32_t *words)
{
    if (bits == 3) {
        uint64_t a = 0, b = 0, c = 0;
        for (int k = 0; k < 10; k++) a += (uint64_t)x[k] << (3 * k);
        a = (a & MASK32) | (((uint64_t)x[10] << 30) & MASK32);
        b = (uint64_t)((x[10] >> 2) & 1);
        uint64_t sb = 0;
        for (int k = 0; k < 10; k++) sb += (uint64_t)x[11 + k] << (3 * k + 1);
        b = ((b | sb) & MASK32) | (((uint64_t)x[21] << 31) & MASK32);
        c = (uint64_t)((x[21] >> 1) & 3);
        uint64_t sc = 0;
        for (int k = 0; k < 10; k++) sc += (uint64_t)x[22 + k] << (3 * k + 2);
        c = (c | sc) & MASK32;
        words[0] = (uint32_t)a;
        words[1] = (uint32_t)b;
        words[2] = (uint32_t)c;
        return;
    }
    const int pf = 32 / bits;
    for (int t = 0; t < bits; t++) {
        uint64_t w = 0;
        for (int k = 0; k < pf; k++) w += (uint64_t)x[t * pf + k] << (k * bits);
        words[t] = (uint32_t)(w & MASK32);
    }
}

/* words[bits] → x[32] (fields, 0 … 2^bits − 1). */
static void unpack32(const uint32_t *w, int bits, int32_t *x)
{
    if (bits == 3) {
        for (int k = 0; k < 10; k++) x[k] = (int32_t)((w[0] >> (3 * k)) & 7);
        x[10] = (int32_t)(((w[0] >> 30) & 3) | ((w[1] & 1) << 2));
        for (int k = 0; k < 10; k++) x[11 + k] = (int32_t)((w[1] >> (3 * k + 1)) & 7);
        x[21] = (int32_t)(((w[1] >> 31) & 1) | ((w[2] & 3) << 1));
        for (int k = 0; k < 10; k++) x[22 + k] = (int32_t)((w[2] >> (3 * k + 2)) & 7);
        return;
    }
    const int pf = 32 / bits;
    const uint32_t m = (1u << bits) - 1;
    for (int t = 0; t < bits; t++)
        for (int k = 0; k < pf; k++) x[t * pf + k] = (int32_t)((w[t] >> (k * bits)) & m);
}

void gptq_qzeros_convert(int32_t *qzeros, int64_t n_words, int bits, gptq_format from, gptq_format to)
{
    if (from == to) return;
    const int delta = to == GPTQ_FMT_V1 ? -1 : 1;
    uint32_t *w = (uint32_t *)qzeros;
    if (bits == 3) {
        for (int64_t i = 0; i + 3 <= n_words; i += 3) {
            int32_t x[32];
            int64_t y[32];
            unpack32(w + i, 3, x);
            for (int k = 0; k < 32; k++) y[k] = (x[k] + delta) & 7;
            pack32(y, 3, w + i);
        }
        return;
    }
    const uint32_t c = bits == 2 ? 0x55555555u : bits == 4 ? 0x11111111u : 0x01010101u;
    for (int64_t i = 0; i < n_words; i++) w[i] = delta < 0 ? w[i] - c : w[i] + c;
}

static float cast_through(float v, dtype_t t)
{
    switch (t) {
    case DT_F16: return f16_to_f32(f32_to_f16(v));
    case DT_BF16: return bf16_to_f32(f32_to_bf16(v));
    default: return v;
    }
}

int gptq_pack_dtype(const gptq_result *r, gptq_format fmt, dtype_t module_dtype, gptq_packed *p)
{
    memset(p, 0, sizeof *p);
    const int bits = r->bits, in = r->in, out = r->out, ng = r->n_groups, maxq = (1 << bits) - 1;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return err_set("gptq pack: bits must be 2, 3, 4 or 8 (got %d)", bits);
    if (in % 32 || out % 32)
        return err_set("gptq pack: shape [%d, %d] must have in and out divisible by 32", out, in);
    if (module_dtype != DT_F16 && module_dtype != DT_BF16 && module_dtype != DT_F32)
        return err_set("gptq pack: module dtype must be F16, BF16 or F32 (got %s)", dtype_name(module_dtype));
    for (int j = 0; j < in; j++)
        if (r->g_idx[j] < 0 || r->g_idx[j] >= ng)
            return err_set("gptq pack: g_idx[%d] = %d outside [0, %d)", j, r->g_idx[j], ng);
    p->bits = bits;
    p->in = in;
    p->out = out;
    p->n_groups = ng;
    p->qw_rows = in / 32 * bits;
    p->qz_cols = out / 32 * bits;
    p->qweight = xmalloc((size_t)p->qw_rows * out * sizeof(int32_t));
    p->qzeros = xmalloc((size_t)ng * p->qz_cols * sizeof(int32_t));
    p->scales = xmalloc((size_t)ng * out * sizeof(uint16_t));
    p->g_idx = xmalloc((size_t)in * sizeof(int32_t));
    memcpy(p->g_idx, r->g_idx, (size_t)in * sizeof(int32_t));
    for (int g = 0; g < ng; g++)
        for (int o = 0; o < out; o++) p->scales[(size_t)g * out + o] = f32_to_f16(r->scale[(size_t)o * ng + g]);

    /* qweight: code = round((Q + zero·scale) / scale), Q in the module dtype, fp32 math */
    const int nb = in / 32;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < out; o++) {
        const float *q = r->Q + (size_t)o * in, *s = r->scale + (size_t)o * ng, *z = r->zero + (size_t)o * ng;
        for (int b = 0; b < nb; b++) {
            int64_t x[32];
            uint32_t words[8];
            for (int k = 0; k < 32; k++) {
                int j = b * 32 + k, g = r->g_idx[j];
                float sz = z[g] * s[g];
                float v = rintf((cast_through(q[j], module_dtype) + sz) / s[g]);
                /* clamp(round(.), 0, maxq) as GPTQModel: a code outside the grid would
                 * spill into its neighbours' bit fields */
                x[k] = isfinite(v) ? (int64_t)fminf(fmaxf(v, 0.f), (float)maxq) : 0;
            }
            pack32(x, bits, words);
            for (int t = 0; t < bits; t++) p->qweight[(size_t)(b * bits + t) * out + o] = (int32_t)words[t];
        }
    }
    /* qzeros: zeros along out, v2 (the zero itself) */
    for (int g = 0; g < ng; g++)
        for (int b = 0; b < out / 32; b++) {
            int64_t x[32];
            uint32_t words[8];
            for (int k = 0; k < 32; k++) x[k] = (int64_t)r->zero[(size_t)(b * 32 + k) * ng + g];
            pack32(x, bits, words);
            for (int t = 0; t < bits; t++) p->qzeros[(size_t)g * p->qz_cols + b * bits + t] = (int32_t)words[t];
        }
    gptq_qzeros_convert(p->qzeros, (int64_t)ng * p->qz_cols, bits, GPTQ_FMT_V2, fmt);
    return 0;
}

int gptq_pack(const gptq_result *r, gptq_format fmt, gptq_packed *p)
{
    return gptq_pack_dtype(r, fmt, DT_F16, p);
}

void gptq_unpack_codes(const gptq_packed *p, uint8_t *codes)
{
    const int bits = p->bits, out = p->out, in = p->in;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < out; o++)
        for (int b = 0; b < in / 32; b++) {
            uint32_t w[8];
            int32_t x[32];
            for (int t = 0; t < bits; t++) w[t] = (uint32_t)p->qweight[(size_t)(b * bits + t) * out + o];
            unpack32(w, bits, x);
            for (int k = 0; k < 32; k++) codes[(size_t)o * in + b * 32 + k] = (uint8_t)x[k];
        }
}

void gptq_unpack_zeros(const gptq_packed *p, gptq_format fmt, int32_t *zeros)
{
    const int bits = p->bits, out = p->out;
    const int64_t n = (int64_t)p->n_groups * p->qz_cols;
    int32_t *qz = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    memcpy(qz, p->qzeros, (size_t)n * sizeof(int32_t));
    gptq_qzeros_convert(qz, n, bits, fmt, GPTQ_FMT_V2);
    for (int g = 0; g < p->n_groups; g++)
        for (int b = 0; b < out / 32; b++)
            unpack32((const uint32_t *)qz + (size_t)g * p->qz_cols + b * bits, bits, zeros + (size_t)g * out + b * 32);
    free(qz);
}

int gptq_unpack_dequant(const gptq_packed *p, gptq_format fmt, float *W)
{
    const int out = p->out, in = p->in;
    /* the packed layout covers whole blocks of 32 inputs and 32 outputs only */
    if (in % 32 || out % 32)
        return err_set("gptq unpack: shape [%d, %d] must have in and out divisible by 32", out, in);
    for (int j = 0; j < in; j++)
        if (p->g_idx[j] < 0 || p->g_idx[j] >= p->n_groups)
            return err_set("gptq unpack: g_idx[%d] = %d outside [0, %d)", j, p->g_idx[j], p->n_groups);
    uint8_t *codes = xmalloc((size_t)out * in);
    int32_t *zeros = xmalloc((size_t)p->n_groups * out * sizeof(int32_t));
    gptq_unpack_codes(p, codes);
    gptq_unpack_zeros(p, fmt, zeros);
#pragma omp parallel for schedule(static)
    for (int o = 0; o < out; o++)
        for (int j = 0; j < in; j++) {
            size_t gi = (size_t)p->g_idx[j] * out + o;
            W[(size_t)o * in + j] = f16_to_f32(p->scales[gi]) * (float)((int)codes[(size_t)o * in + j] - zeros[gi]);
        }
    free(codes);
    free(zeros);
    return 0;
}

void gptq_packed_free(gptq_packed *p)
{
    if (!p) return;
    free(p->qweight);
    free(p->qzeros);
    free(p->scales);
    free(p->g_idx);
    memset(p, 0, sizeof *p);
}
