/* grid — GPTQModel's min/max quantizer grid (Quantizer.find_params / quantize), per row.
 * Everything in fp32 with round-half-even, so that the integers match torch bit for bit. */
#ifndef GPTQ_GRID_H
#define GPTQ_GRID_H

#include <math.h>

/* scale/zero of one row segment x[0..len): xmin = min(x, 0), xmax = max(x, 0); sym widens to
 * ±max|x|; an all-zero row gets (−1, +1); scale = (xmax − xmin)/maxq; zero = (maxq+1)/2 (sym)
 * or round(−xmin/scale) (asym). */
static inline void grid_params(const float *x, int len, int maxq, int sym, float *scale, float *zero)
{
    float xmin = 0.f, xmax = 0.f;
    for (int j = 0; j < len; j++) {
        xmin = x[j] < xmin ? x[j] : xmin;
        xmax = x[j] > xmax ? x[j] : xmax;
    }
    if (sym) {
        float a = fabsf(xmin);
        xmax = a > xmax ? a : xmax;
        if (xmin < 0.f) xmin = -xmax;
    }
    if (xmin == 0.f && xmax == 0.f) {
        xmin = -1.f;
        xmax = 1.f;
    }
    float s = (xmax - xmin) / (float)maxq;
    *scale = s;
    *zero = sym ? (float)(maxq + 1) / 2.f : rintf(-xmin / s);
}

/* Integer code clamp(round(x/scale) + zero, 0, maxq) (round half even, fp32). */
static inline float grid_code(float x, float scale, float zero, int maxq)
{
    float q = rintf(x / scale) + zero;
    q = q < 0.f ? 0.f : q;
    return q > (float)maxq ? (float)maxq : q;
}

/* Dequantized value scale · (code − zero). */
static inline float grid_dequant(float code, float scale, float zero) { return scale * (code - zero); }

#endif
