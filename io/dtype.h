/* dtype — safetensors element types and conversions to and from fp32.
 * bf16/f16 conversions round to nearest even, as torch does. */
#ifndef IO_DTYPE_H
#define IO_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DT_BOOL, DT_U8, DT_I8, DT_I16, DT_I32, DT_I64, DT_F16, DT_BF16, DT_F32, DT_F64, DT_COUNT
} dtype_t;

size_t dtype_size(dtype_t t);
const char *dtype_name(dtype_t t);              /* "BF16", ... as in safetensors headers */
int dtype_from_name(const char *s, dtype_t *t); /* 0 on success, -1 if unknown */
int dtype_is_float(dtype_t t);                  /* F16, BF16, F32, F64 */

float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

/* Convert n elements of a float dtype (F16/BF16/F32/F64) to fp32. Returns -1 for other dtypes. */
int dtype_to_f32(dtype_t t, const void *src, float *dst, size_t n);
/* Convert n fp32 values to a float dtype. Returns -1 for non-float dtypes. */
int dtype_from_f32(dtype_t t, const float *src, void *dst, size_t n);

#endif
