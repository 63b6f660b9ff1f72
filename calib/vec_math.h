/* vec_math — 16-lane float vectors (GCC vector extensions) and the elementwise functions of the
 * forward pass on them: e^x, SiLU. Inline only: compiled into each caller, so a caller built
 * with target_clones gets one zmm (AVX-512), two ymm (AVX2) or four xmm per vector.
 *
 * Why not expf: the attention softmax takes H·T²/2 exponentials per layer (134 M for a 9B
 * layer at T = 4096) and SwiGLU T·12288; glibc's expf is scalar (~20 cycles per call). */
#ifndef CALIB_VEC_MATH_H
#define CALIB_VEC_MATH_H

#include <stdint.h>

typedef float ga_v16 __attribute__((vector_size(64)));
typedef int32_t ga_v16i __attribute__((vector_size(64)));
/* the same at any float alignment, for loads and stores */
typedef float ga_v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define ga_load(p) (*(const ga_v16u *)(p))
#define ga_store(p, v) (*(ga_v16u *)(p) = (v))

/* vectors are passed and returned by value: harmless, every function here is always inlined */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

static inline __attribute__((always_inline)) ga_v16 ga_splat(float x) { return (ga_v16){0} + x; }

/* lanes of `a` where mask is set (all ones), else lanes of `b` */
static inline __attribute__((always_inline)) ga_v16 ga_select(ga_v16i mask, ga_v16 a, ga_v16 b)
{
    return (ga_v16)(((ga_v16i)a & mask) | ((ga_v16i)b & ~mask));
}

/* e^x, relative error ≤ 2 ulp on [−87.3, 88.3] (Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2,
 * degree-6 polynomial for e^r: the classic Cephes expf coefficients); 0 below −87.3 (where expf
 * turns denormal), +inf above 88.3, NaN stays NaN. */
static inline __attribute__((always_inline)) ga_v16 ga_exp(ga_v16 x)
{
    const ga_v16i under = x < -87.3f, over = x > 88.3f, nan = x != x;
    /* NaN lanes computed as 0 (their n must not hit the int conversion), restored at the end */
    ga_v16 xc = ga_select(under | nan, ga_splat(-87.3f), ga_select(over, ga_splat(88.3f), x));
    const ga_v16 shifter = ga_splat(12582912.0f); /* 1.5·2²³: adding it rounds to an integer */
    ga_v16 n = (xc * 1.44269504088896341f + shifter) - shifter;
    ga_v16 r = xc - n * 0.693359375f; /* ln2 split in two: the first part is exact in fp32 */
    r = r - n * -2.12194440e-4f;
    ga_v16 p = ga_splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    ga_v16i e = (__builtin_convertvector(n, ga_v16i) + 127) << 23; /* 2ⁿ, n ∈ [−126, 127] */
    ga_v16 y = p * (ga_v16)e;
    y = ga_select(under, ga_splat(0.0f), y);
    y = ga_select(over, ga_splat(__builtin_inff()), y);
    return ga_select(nan, x, y);
}

/* x / (1 + e^{−x}) — the same formula as siluf_ (model_kernels.h) with ga_exp. Below x = −88.3
 * e^{−x} is +inf here, so the result is −0 where the exact value is at most ~3e−37 in size. */
static inline __attribute__((always_inline)) ga_v16 ga_silu(ga_v16 x) { return x / (1.0f + ga_exp(-x)); }

/* 1 / (1 + e^{−x}) — sigmoidf_ (model_kernels.h) with ga_exp */
static inline __attribute__((always_inline)) ga_v16 ga_sigmoid(ga_v16 x) { return 1.0f / (1.0f + ga_exp(-x)); }

/* y[i] = silu(x[i]) or sigmoid(x[i]) for i < n (y may be x), 16 at a time; the tail goes through
 * a padded vector, so every element takes the same arithmetic wherever it sits in the array. */
#define GA_SPAN_FN(name, vf)                                                                        \
    static inline __attribute__((always_inline)) void name(const float *x, float *y, int64_t n)    \
    {                                                                                               \
        const int64_t n16 = n - n % 16;                                                             \
        for (int64_t i = 0; i < n16; i += 16) ga_store(y + i, vf(ga_load(x + i)));                 \
        if (n16 == n) return;                                                                       \
        float t[16] = {0};                                                                          \
        for (int64_t i = n16; i < n; i++) t[i - n16] = x[i];                                        \
        ga_store(t, vf(ga_load(t)));                                                                \
        for (int64_t i = n16; i < n; i++) y[i] = t[i - n16];                                        \
    }
GA_SPAN_FN(silu_span, ga_silu)
GA_SPAN_FN(sigmoid_span, ga_sigmoid)
#undef GA_SPAN_FN

#pragma GCC diagnostic pop

#endif
