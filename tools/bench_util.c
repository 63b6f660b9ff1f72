#include "tools/bench_util.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "io/err.h"

double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int bench_set_threads(int threads)
{
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
    return threads;
}

double bench_sgemm_gflops(int threads, int n, int reps)
{
    bench_set_threads(threads);
    float *a = xmalloc_aligned((size_t)n * n * 4), *b = xmalloc_aligned((size_t)n * n * 4),
          *c = xmalloc_aligned((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)((i * 7) % 13) * 0.01f;
        b[i] = (float)((i * 5) % 11) * 0.01f;
    }
    double best = 1e30;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
        double dt = bench_now() - t0;
        if (dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}

double bench_sgemm_peak(int threads)
{
    static double cache[1024];
    int t = bench_set_threads(threads);
    if (t < 1024 && cache[t] > 0) return cache[t];
    double gf = bench_sgemm_gflops(t, 2048, 3);
    if (t < 1024) cache[t] = gf;
    return gf;
}

void bench_report(const char *name, double seconds, double flops, int threads, const char *extra)
{
    double gf = flops / seconds / 1e9, peak = bench_sgemm_peak(threads);
    bench_set_threads(threads);
    printf("bench %-40s %9.3f s %9.1f GFLOP/s %6.1f%% of sgemm peak (%.1f GFLOP/s, %d threads)%s%s\n", name,
           seconds, gf, 100.0 * gf / peak, peak, threads, extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}
