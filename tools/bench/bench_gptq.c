/* bench_gptq — GPTQ solve time and GFLOP/s against the measured sgemm peak.
 *
 *   bench_gptq [OUTxIN ...] [--threads 1,0] [--method torch|fast|both]
 *   default sizes 4096x4096 8192x4096 4096x12288; threads 1 and 0 (= all cores); by default
 *   both inverse paths with all threads and only the torch path with one.
 *
 * Flops counted (the arithmetic the algorithm must do, not hardware ops):
 *   inverse factor, torch path: spotrf n³/3 + spotri 2n³/3 + spotrf n³/3 = 4n³/3
 *                  fast path:   spotrf n³/3 + strtri n³/3 = 2n³/3
 *   lazy block updates: Σ_blocks 2·out·cnt·(n − i2)   (≈ out·n², one sgemm per block)
 *   in-block rank-1 updates: Σ_columns 2·out·(cols left in the block)
 * The layer loss tr(DHDᵀ) is not part of GPTQ and is skipped here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/blas_env.h"
#include "gptq/gptq.h"
#include "io/err.h"
#include "tools/bench_util.h"

static uint64_t rs = 88172645463325252ull;
static float urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0);
}

static double big_peak;

static double block_flops(int out, int n, int bs)
{
    double f = 0;
    for (int i1 = 0; i1 < n; i1 += bs) {
        int i2 = i1 + bs < n ? i1 + bs : n, cnt = i2 - i1;
        f += 2.0 * out * cnt * (double)(n - i2);
        f += 2.0 * out * (double)cnt * (cnt - 1) / 2;
    }
    return f;
}

static void run(int out, int in, int threads, int fast)
{
    int t = bench_set_threads(threads);
    float *W = xmalloc_aligned((size_t)out * in * sizeof(float));
    float *H = xmalloc_aligned((size_t)in * in * sizeof(float));
    for (size_t i = 0; i < (size_t)out * in; i++) W[i] = 0.02f * (urand() - 0.5f);
    /* random symmetric, diagonally strong: PD with a realistic Cholesky cost */
    for (int i = 0; i < in; i++) {
        H[(size_t)i * in + i] = 1.f + urand();
        for (int j = i + 1; j < in; j++) H[(size_t)i * in + j] = H[(size_t)j * in + i] = 0.01f * (urand() - 0.5f);
    }
    gptq_opts o;
    gptq_opts_default(&o);
    o.hinv_fast = fast;
    o.skip_layer_loss = 1;
    gptq_result r;
    double t0 = bench_now();
    if (gptq_solve("bench", W, out, in, H, 1, &o, &r)) {
        fprintf(stderr, "bench_gptq: %s\n", err_msg());
        exit(1);
    }
    double dt = bench_now() - t0;
    double n3 = (double)in * in * in;
    double f_hinv = fast ? 2 * n3 / 3 : 4 * n3 / 3, f_blocks = block_flops(out, in, o.blocksize);
    char name[64], extra[240];
    snprintf(name, sizeof name, "gptq_solve %dx%d %s", out, in, fast ? "fast-hinv" : "torch-hinv");
    double peak = bench_sgemm_peak(t);
    snprintf(extra, sizeof extra,
             "[%.0f%% of sgemm-4096 %.0f GFLOP/s; hinv %.2f s = %.0f%%, blocks %.2f s = %.0f%% of sgemm-2048]",
             100 * (f_hinv + f_blocks) / dt / 1e9 / big_peak, big_peak, r.t_hinv, 100 * f_hinv / r.t_hinv / 1e9 / peak,
             r.t_blocks, 100 * f_blocks / r.t_blocks / 1e9 / peak);
    bench_report(name, dt, f_hinv + f_blocks, t, extra);
    gptq_result_free(&r);
    free(W);
    free(H);
}

int main(int argc, char **argv)
{
    blas_env_reexec(argv); /* measure the kernels and wait policy bin/gptq-eora runs with */
    int sizes[16][2], ns = 0, thr[8] = {1, 0}, nt = 2, methods = 0; /* bit 0 torch, bit 1 fast; 0 = default */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nt = 0;
            for (char *s = strtok(argv[++i], ","); s && nt < 8; s = strtok(NULL, ",")) thr[nt++] = atoi(s);
        } else if (!strcmp(argv[i], "--method") && i + 1 < argc) {
            i++;
            methods = !strcmp(argv[i], "torch") ? 1 : !strcmp(argv[i], "fast") ? 2 : 3;
        } else if (ns < 16 && sscanf(argv[i], "%dx%d", &sizes[ns][0], &sizes[ns][1]) == 2) {
            ns++;
        } else {
            fprintf(stderr, "usage: bench_gptq [OUTxIN ...] [--threads 1,0] [--method torch|fast|both]\n");
            return 2;
        }
    }
    if (!ns) {
        int d[3][2] = {{4096, 4096}, {8192, 4096}, {4096, 12288}};
        memcpy(sizes, d, sizeof d);
        ns = 3;
    }
    for (int k = 0; k < nt; k++) {
        int t = bench_set_threads(thr[k]);
        big_peak = bench_sgemm_gflops(t, 4096, 2); /* n = 2048 does not keep 16 cores busy */
        printf("sgemm peak (%d threads): %.1f GFLOP/s at n=2048, %.1f GFLOP/s at n=4096\n", t, bench_sgemm_peak(t),
               big_peak);
        for (int s = 0; s < ns; s++)
            for (int m = 0; m < 2; m++)
                /* default: both paths with all threads, only the torch path single-threaded */
                if ((methods ? methods : t == 1 ? 1 : 3) & (1 << m)) run(sizes[s][0], sizes[s][1], thr[k], m);
    }
    return 0;
}
