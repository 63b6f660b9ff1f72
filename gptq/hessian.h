/* hessian — H = 2/n · Σ xᵀx over all calibration tokens of one linear input.
 * Each batch is one fp32 SSYRK (OpenBLAS); batches are summed in fp64 so that millions of
 * tokens lose no precision. One accumulator per distinct input (shared by q/k/v etc). */
#ifndef GPTQ_HESSIAN_H
#define GPTQ_HESSIAN_H

#include <stdint.h>

typedef struct {
    int n;          /* input width */
    int64_t count;  /* tokens seen */
    double *sum;    /* n×n, upper triangle valid (row-major) */
    float *scratch; /* n×n fp32 batch product */
} hessian_acc;

void hessian_init(hessian_acc *h, int n);
void hessian_free(hessian_acc *h);
void hessian_reset(hessian_acc *h);
/* x: rows × n, row-major fp32. */
void hessian_add(hessian_acc *h, const float *x, int64_t rows);
/* Merge another accumulator (e.g. from another MPI rank or thread). */
void hessian_merge(hessian_acc *dst, const hessian_acc *src);
/* H (n×n full symmetric, fp32) = 2/count · Σ xᵀx. */
void hessian_finalize(const hessian_acc *h, float *H);
/* Σ xᵀx in fp64, full symmetric (for EoRA, whose product is scale-free). */
void hessian_sum_f64(const hessian_acc *h, double *C);

#endif
