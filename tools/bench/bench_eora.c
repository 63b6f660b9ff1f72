/* bench_eora — EoRA square root (eigen vs Cholesky) × SVD (exact vs randomized) on a
 * synthetic layer: W ~ N(0, 0.02²), Wq = per-row 4-bit round-to-nearest, C = D XᵀX D / N with
 * N = 1.5·in Gaussian tokens and log-normal channel scales D (a broad, decaying spectrum like
 * real activations). Reports time, the corrected loss and the speed-up over eigen + exact.
 *
 *   bench_eora [--out N] [--rank R] [--threads T] [--sweep] [IN ...]     (default IN: 4096 12288)
 * --sweep adds Cholesky + randomized for several (oversample, power iterations). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/blas_env.h"
#include "eora/eora.h"
#include "io/err.h"
#include "tools/bench_util.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double gauss(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u[i] = ((double)(rng >> 11) + 1.0) * 0x1.0p-53;
    }
    return sqrt(-2.0 * log(u[0])) * cos(2.0 * M_PI * u[1]);
}

static void make_layer(int out, int in, float *W, float *Wq, double *C)
{
    for (int o = 0; o < out; o++) {
        float *w = W + (size_t)o * in, *q = Wq + (size_t)o * in, m = 0;
        for (int j = 0; j < in; j++) {
            w[j] = (float)(0.02 * gauss());
            m = fmaxf(m, fabsf(w[j]));
        }
        float step = m / 7.f;
        for (int j = 0; j < in; j++) q[j] = step * fminf(7.f, fmaxf(-8.f, rintf(w[j] / step)));
    }
    int N = in + in / 2;
    float *X = xmalloc(sizeof *X * (size_t)N * in), *Cf = xmalloc(sizeof *Cf * (size_t)in * in);
    double *d = xmalloc(sizeof *d * (size_t)in);
    for (int j = 0; j < in; j++) d[j] = exp(0.8 * gauss());
    for (int t = 0; t < N; t++)
        for (int j = 0; j < in; j++) X[(size_t)t * in + j] = (float)(gauss() * d[j]);
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, in, N, 1.f / (float)N, X, in, 0.f, Cf, in);
    for (int i = 0; i < in; i++)
        for (int j = 0; j <= i; j++) C[(size_t)i * in + j] = C[(size_t)j * in + i] = Cf[(size_t)i * in + j];
    free(X);
    free(Cf);
    free(d);
}

typedef struct {
    double sec, loss_after, loss_before;
    int ok, discarded;
    eora_method used;
} run_out;

static run_out run(const char *name, const float *W, const float *Wq, int out, int in, const double *C,
                   eora_opts *o, int threads, double ref_sec, double ref_loss)
{
    run_out ro = {0};
    eora_result r;
    double t0 = bench_now();
    if (eora_compute(name, W, Wq, out, in, C, o, &r)) {
        fprintf(stderr, "bench_eora: %s\n", err_msg());
        return ro;
    }
    ro.sec = bench_now() - t0;
    ro.ok = 1;
    ro.loss_before = r.loss_before;
    ro.loss_after = r.loss_after;
    ro.used = r.used;
    ro.discarded = r.discarded;
    /* Nominal flops: the square root, ΔW·S, the SVD part, A = V·S⁻¹ and the loss products. */
    double n = in, m = out, k = o->rank + o->oversample;
    double root = o->method == EORA_EIGEN || r.used == EORA_EIGEN ? 4.0 * n * n * n : n * n * n / 3.0;
    double svd = o->svd == EORA_SVD_EXACT ? 4.0 * m * m * n + 8.0 * m * m * m
                                          : (2.0 * o->power_iters + 3.0) * 2.0 * m * n * k;
    double flops = root + 2.0 * m * n * n * (r.used == EORA_EIGEN ? 1.0 : 0.5) + svd;
    char extra[256];
    snprintf(extra, sizeof extra, "loss %.6g→%.6g (%.2f%% left)%s%s", r.loss_before, r.loss_after,
             100.0 * r.loss_after / r.loss_before, r.used != o->method ? " [fell back to eigen]" : "",
             "");
    if (ref_sec > 0) {
        size_t len = strlen(extra);
        snprintf(extra + len, sizeof extra - len, ", %.1fx faster than eigen+exact, loss %+.3f%%", ref_sec / ro.sec,
                 100.0 * (r.loss_after - ref_loss) / ref_loss);
    }
    bench_report(name, ro.sec, flops, threads, extra);
    eora_result_free(&r);
    return ro;
}

int main(int argc, char **argv)
{
    blas_env_reexec(argv); /* measure the kernels and wait policy bin/gptq-eora runs with */
    int out = 4096, rank = 64, threads = 0, sweep = 0, n_in = 0, ins[16];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rank") && i + 1 < argc) rank = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sweep")) sweep = 1;
        else if (n_in < 16 && atoi(argv[i]) > 0) ins[n_in++] = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: bench_eora [--out N] [--rank R] [--threads T] [--sweep] [IN ...]\n");
            return 2;
        }
    }
    if (!n_in) {
        ins[n_in++] = 4096;
        ins[n_in++] = 12288;
    }
    threads = bench_set_threads(threads);
    int status = 0;
    for (int ii = 0; ii < n_in; ii++) {
        int in = ins[ii];
        float *W = xmalloc(sizeof *W * (size_t)out * in), *Wq = xmalloc(sizeof *Wq * (size_t)out * in);
        double *C = xmalloc(sizeof *C * (size_t)in * in);
        make_layer(out, in, W, Wq, C);
        printf("== EoRA out %d, in %d, rank %d\n", out, in, rank);
        eora_opts o;
        eora_opts_default(&o);
        o.rank = rank;
        char name[96];
        const eora_method methods[2] = {EORA_EIGEN, EORA_CHOLESKY};
        const eora_svd svds[2] = {EORA_SVD_EXACT, EORA_SVD_RANDOMIZED};
        run_out ref = {0};
        double fast_sec = 0, fast_loss = 0;
        for (int mi = 0; mi < 2; mi++)
            for (int si = 0; si < 2; si++) {
                o.method = methods[mi];
                o.svd = svds[si];
                snprintf(name, sizeof name, "eora_%s_%s_%dx%d_r%d", eora_method_name(o.method), eora_svd_name(o.svd),
                         out, in, rank);
                run_out ro = run(name, W, Wq, out, in, C, &o, threads, ref.sec, ref.loss_after);
                if (!ro.ok) status = 1;
                if (mi == 0 && si == 0) ref = ro;
                if (mi == 1 && si == 1) {
                    fast_sec = ro.sec;
                    fast_loss = ro.loss_after;
                }
            }
        if (ref.ok && fast_sec > 0) {
            double speed = ref.sec / fast_sec, dl = 100.0 * (fast_loss - ref.loss_after) / ref.loss_after;
            printf("target in=%d: cholesky+randomized %.1fx faster than eigen+exact (target ≥ 10x at 12288), "
                   "loss %+.3f%% (target within 0.5%%)\n", in, speed, dl);
        }
        if (sweep) {
            const int ps[] = {32, 64, 128}, qs[] = {2, 4, 6};
            o.method = EORA_CHOLESKY;
            o.svd = EORA_SVD_RANDOMIZED;
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    o.oversample = ps[a];
                    o.power_iters = qs[b];
                    snprintf(name, sizeof name, "eora_cholesky_rsvd_p%d_q%d_%dx%d_r%d", ps[a], qs[b], out, in, rank);
                    if (!run(name, W, Wq, out, in, C, &o, threads, ref.sec, ref.loss_after).ok) status = 1;
                }
        }
        free(W);
        free(Wq);
        free(C);
    }
    return status;
}
