#include "io/dtype.h"

#include <math.h>
#include <string.h>

static const struct { const char *name; size_t size; } dtype_info[DT_COUNT] = {
    [DT_BOOL] = {"BOOL", 1}, [DT_U8] = {"U8", 1},   [DT_I8] = {"I8", 1},
    [DT_I16] = {"I16", 2},   [DT_I32] = {"I32", 4}, [DT_I64] = {"I64", 8},
    [DT_F16] = {"F16", 2},   [DT_BF16] = {"BF16", 2}, [DT_F32] = {"F32", 4},
    [DT_F64] = {"F64", 8},
};

size_t dtype_size(dtype_t t) { return t < DT_COUNT ? dtype_info[t].size : 0; }
const char *dtype_name(dtype_t t) { return t < DT_COUNT ? dtype_info[t].name : "?"; }
int dtype_is_float(dtype_t t) { return t == DT_F16 || t == DT_BF16 || t == DT_F32 || t == DT_F64; }

int dtype_from_name(const char *s, dtype_t *t)
{
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *t = (dtype_t)i;
            return 0;
        }
    return -1;
}

float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                          /* round half even */
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;   /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u;  /* overflow (>= 65520 rounds to inf) */
    if (a < 0x38800000u) {                        /* subnormal or zero in f16 */
        if (a < 0x33000000u) return sign;         /* < 2^-25 rounds to 0 */
        uint32_t man = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(a >> 23);         /* 14 + (113 - exp) - 1 */
        uint32_t q = man >> (shift + 0), rem;
        /* value = man * 2^(exp-150); f16 subnormal unit 2^-24 → q = man >> (126 - exp) */
        rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a - 0x38000000u;                 /* rebias 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);               /* round half even */
    return sign | (uint16_t)(r >> 13);
}

/* Large conversions (whole weight matrices) are split across threads; small ones stay serial. */
#define PAR_MIN 65536

int dtype_to_f32(dtype_t t, const void *src, float *dst, size_t n)
{
    const unsigned char *s = src;
    switch (t) {
    case DT_F32: memcpy(dst, src, n * 4); return 0;
    case DT_BF16:
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = bf16_to_f32(h); }
        return 0;
    case DT_F16:
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = f16_to_f32(h); }
        return 0;
    case DT_F64:
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, s + 8 * i, 8); dst[i] = (float)d; }
        return 0;
    default: return -1;
    }
}

int dtype_from_f32(dtype_t t, const float *src, void *dst, size_t n)
{
    unsigned char *d = dst;
    switch (t) {
    case DT_F32: memcpy(dst, src, n * 4); return 0;
    case DT_BF16:
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) { uint16_t h = f32_to_bf16(src[i]); memcpy(d + 2 * i, &h, 2); }
        return 0;
    case DT_F16:
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) { uint16_t h = f32_to_f16(src[i]); memcpy(d + 2 * i, &h, 2); }
        return 0;
    case DT_F64:
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) { double v = src[i]; memcpy(d + 8 * i, &v, 8); }
        return 0;
    default: return -1;
    }
}
