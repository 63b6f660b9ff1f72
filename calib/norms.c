/* norms — RMSNorm variants, L2 norm, SwiGLU and residual adds of the Qwen3.5 forward pass.
 * Sums of squares are accumulated in double so that long rows (d = 5120) lose nothing. */
#include <math.h>

#include "calib/model_kernels.h"
#include "calib/vec_math.h"

#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/* below this many elements a loop runs on the calling thread (waking the team costs more) */
#define PAR_MIN 65536

void rmsnorm_zc_row(const float *x, const float *w, float *y, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) y[i] = (x[i] * r) * (1.0f + w[i]);
}

void rmsnorm_zc(const float *x, const float *w, float *y, int64_t rows, int n, float eps)
{
#pragma omp parallel for schedule(static) if (rows * n >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++) rmsnorm_zc_row(x + r * n, w, y + r * n, n, eps);
}

HOT void rmsnorm_gated(const float *o, const float *w, const float *z, float *y, int64_t groups, int n,
                       float eps)
{
#pragma omp parallel for schedule(static) if (groups * n >= PAR_MIN)
    for (int64_t gi = 0; gi < groups; gi++) {
        const float *x = o + gi * n, *zz = z + gi * n;
        float *yy = y + gi * n;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / n + eps));
        for (int c = 0; c < n; c += 16) { /* silu(z) 16 at a time into scratch: y may be o */
            const int m = n - c < 16 ? n - c : 16;
            float sz[16];
            silu_span(zz + c, sz, m);
            for (int i = 0; i < m; i++) yy[c + i] = w[c + i] * (x[c + i] * r) * sz[i];
        }
    }
}

void l2norm_scale(float *x, int n, float eps, float scale)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss + eps));
    for (int i = 0; i < n; i++) x[i] = x[i] * r * scale;
}

HOT void swiglu_inplace(float *g, const float *u, int64_t n)
{
    enum { SPAN = 4096 }; /* silu then the product while the span is in L1 */
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t s = 0; s < n; s += SPAN) {
        const int64_t e = s + SPAN < n ? s + SPAN : n;
        silu_span(g + s, g + s, e - s);
        for (int64_t i = s; i < e; i++) g[i] *= u[i];
    }
}

void add_inplace(float *y, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
