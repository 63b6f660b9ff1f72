/* hessian — Σ xᵀx per linear input: one fp32 SSYRK per batch, batches summed in fp64. */
#include "gptq/hessian.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"

void hessian_init(hessian_acc *h, int n)
{
    h->n = n;
    h->count = 0;
    h->sum = xcalloc((size_t)n * n, sizeof(double));
    h->scratch = xmalloc_aligned((size_t)n * n * sizeof(float));
}

void hessian_free(hessian_acc *h)
{
    free(h->sum);
    free(h->scratch);
    memset(h, 0, sizeof *h);
}

void hessian_reset(hessian_acc *h)
{
    h->count = 0;
    memset(h->sum, 0, (size_t)h->n * h->n * sizeof(double));
}

void hessian_add(hessian_acc *h, const float *x, int64_t rows)
{
    const int n = h->n;
    if (rows <= 0) return;
    /* SSYRK's k is an int: split very large batches. */
    const int64_t step = 1 << 30;
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
        int k = (int)(rows - r0 < step ? rows - r0 : step);
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1.f, x + r0 * n, n, 0.f, h->scratch, n);
        double *sum = h->sum;
        const float *sc = h->scratch;
#pragma omp parallel for schedule(dynamic, 16)
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++) sum[(size_t)i * n + j] += (double)sc[(size_t)i * n + j];
    }
    h->count += rows;
}

void hessian_merge(hessian_acc *dst, const hessian_acc *src)
{
    const int n = dst->n;
    double *d = dst->sum;
    const double *s = src->sum;
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) d[(size_t)i * n + j] += s[(size_t)i * n + j];
    dst->count += src->count;
}

void hessian_finalize(const hessian_acc *h, float *H)
{
    const int n = h->n;
    const double f = h->count > 0 ? 2.0 / (double)h->count : 0.0;
    const double *sum = h->sum;
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            float v = (float)(f * sum[(size_t)i * n + j]);
            H[(size_t)i * n + j] = v;
            H[(size_t)j * n + i] = v;
        }
}

void hessian_sum_f64(const hessian_acc *h, double *C)
{
    const int n = h->n;
    const double *sum = h->sum;
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double v = sum[(size_t)i * n + j];
            C[(size_t)i * n + j] = v;
            C[(size_t)j * n + i] = v;
        }
}
