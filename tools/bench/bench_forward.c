/* bench_forward — throughput of one Qwen3.5 decoder layer of each kind on random weights.
 *   bench_forward [T] [B] [threads] [size]     size: 9b (default) or 27b
 * Reports tokens/s, the share of time spent in the layer's linear GEMMs, the achieved fraction of
 * the best sgemm rate measured in the same process (square 2048 and 4096, and the layer's own
 * fastest linear; all counted FLOPs: linears + attention/delta-rule core), and the peak resident
 * memory added per token. Defaults: T = 4096, B = 1, all cores. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tools/blas_env.h"
#include "calib/model.h"
#include "calib/model_kernels.h"
#include "io/err.h"
#include "tools/bench_util.h"

static void fill(float *x, int64_t n, float amp, uint64_t seed)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = (uint64_t)i * 0x9E3779B97F4A7C15ull + seed;
        z ^= z >> 31;
        z *= 0xBF58476D1CE4E5B9ull;
        z ^= z >> 29;
        x[i] = amp * (float)((double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
}

static float *rnd(int64_t n, float amp, uint64_t seed)
{
    float *x = xmalloc_aligned((size_t)n * sizeof(float));
    fill(x, n, amp, seed);
    return x;
}

static void mk_linear(linear_t *l, const char *name, int out, int in, uint64_t seed)
{
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->out = out, l->in = in;
    l->w = rnd((int64_t)out * in, 1.0f / sqrtf((float)in), seed);
}

static void config(model_config *c, int big)
{
    memset(c, 0, sizeof *c);
    c->hidden = big ? 5120 : 4096;
    c->intermediate = big ? 17408 : 12288;
    c->n_heads = big ? 24 : 16, c->n_kv_heads = 4, c->head_dim = 256;
    c->partial_rotary = 0.25, c->rotary_dim = 64, c->rope_theta = 1e7, c->attn_output_gate = 1;
    c->lin_k_heads = 16, c->lin_v_heads = big ? 48 : 32, c->lin_k_dim = 128, c->lin_v_dim = 128;
    c->conv_kernel = 4, c->rms_eps = 1e-6, c->n_layers = 2, c->vocab = 248320;
}

static void build(const model_config *c, layer_type type, layer_weights *lw)
{
    memset(lw, 0, sizeof *lw);
    lw->type = type;
    const int d = c->hidden;
    lw->input_norm = rnd(d, 0.1f, 1), lw->post_norm = rnd(d, 0.1f, 2);
    if (type == LAYER_FULL_ATTN) {
        const int H = c->n_heads, G = c->n_kv_heads, D = c->head_dim;
        mk_linear(&lw->q_proj, "q_proj", 2 * H * D, d, 3);
        mk_linear(&lw->k_proj, "k_proj", G * D, d, 4);
        mk_linear(&lw->v_proj, "v_proj", G * D, d, 5);
        mk_linear(&lw->o_proj, "o_proj", d, H * D, 6);
        lw->q_norm = rnd(D, 0.1f, 7), lw->k_norm = rnd(D, 0.1f, 8);
    } else {
        const int Hk = c->lin_k_heads, Hv = c->lin_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
        const int cd = 2 * Hk * dk + Hv * dv;
        mk_linear(&lw->in_proj_qkv, "in_proj_qkv", cd, d, 9);
        mk_linear(&lw->in_proj_z, "in_proj_z", Hv * dv, d, 10);
        mk_linear(&lw->in_proj_a, "in_proj_a", Hv, d, 11);
        mk_linear(&lw->in_proj_b, "in_proj_b", Hv, d, 12);
        mk_linear(&lw->out_proj, "out_proj", d, Hv * dv, 13);
        lw->conv1d = rnd((int64_t)cd * c->conv_kernel, 0.5f, 14);
        lw->A_log = rnd(Hv, 1.0f, 15), lw->dt_bias = rnd(Hv, 1.0f, 16);
        lw->lin_norm = rnd(dv, 1.0f, 17);
    }
    mk_linear(&lw->gate_proj, "gate_proj", c->intermediate, d, 18);
    mk_linear(&lw->up_proj, "up_proj", c->intermediate, d, 19);
    mk_linear(&lw->down_proj, "down_proj", d, c->intermediate, 20);
}

/* Peak resident set (VmHWM) since the last reset; the reset (clear_refs 5, Linux ≥ 4.0) lets each
 * layer kind be measured on its own in one process. */
static void peak_rss_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) fputs("5", f), fclose(f);
}

static double peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb == 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = (double)ru.ru_maxrss;
    }
    return kb * 1024.0;
}

static double sq_peak; /* best square sgemm GFLOP/s measured so far */

static void bench_layer(const model_config *c, layer_type type, int B, int T, int threads)
{
    layer_weights lw;
    build(c, type, &lw);
    const int64_t N = (int64_t)B * T;
    const int d = c->hidden;
    float *h = rnd(N * d, 1.0f, 99), *out = xmalloc_aligned((size_t)N * d * sizeof(float));
    /* warm-up on a short batch (thread pools, page faults of the weights) */
    layer_forward(c, &lw, h, out, 1, T < 64 ? T : 64, NULL, NULL);

    /* two timed runs: the VM's wall times vary run to run, so report the best and the worst */
    double dt = 1e30, worst = 0, rss_growth = 0;
    for (int rep = 0; rep < 2; rep++) {
        peak_rss_reset();
        memset(fwd_prof, 0, sizeof fwd_prof);
        fwd_prof_on = 1;
        double rss0 = peak_rss_bytes(), t0 = bench_now();
        if (layer_forward(c, &lw, h, out, B, T, NULL, NULL)) {
            fprintf(stderr, "bench_forward: %s\n", err_msg());
            exit(1);
        }
        double t = bench_now() - t0;
        fwd_prof_on = 0;
        rss_growth = fmax(rss_growth, peak_rss_bytes() - rss0);
        worst = fmax(worst, t);
        if (t >= dt) continue;
        dt = t;
        double acc = 0;
        printf("  phases (run %d):", rep + 1);
        for (int p = 0; p < FP_COUNT; p++)
            if (fwd_prof[p] > 0) printf(" %s %.1f ms (%.0f%%);", fwd_phase_names[p], 1e3 * fwd_prof[p], 100 * fwd_prof[p] / t),
                                 acc += fwd_prof[p];
        printf(" other %.1f ms\n", 1e3 * (t - acc));
    }

    /* the layer's linears alone, same rows: GEMM time, FLOPs, and the fastest single linear
     * (its rate joins the yardstick: the layer is never scored against a slower sgemm than
     * the ones it runs itself) */
    const char *names[] = {"q_proj", "k_proj", "v_proj", "o_proj", "in_proj_qkv", "in_proj_z",
                           "in_proj_a", "in_proj_b", "out_proj", "gate_proj", "up_proj", "down_proj"};
    double gemm_s = 0, lin_flops = 0, best_linear = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        linear_t *l = layer_linear(&lw, names[i]);
        if (!l) continue;
        float *x = rnd(N * l->in, 1.0f, 7 + i), *y = xmalloc_aligned((size_t)N * l->out * sizeof(float));
        double s = bench_now();
        linear_apply(l, x, N, y);
        double ls = bench_now() - s, lf = 2.0 * (double)N * l->out * l->in;
        gemm_s += ls, lin_flops += lf;
        if (l->out >= 1024) best_linear = fmax(best_linear, lf / ls / 1e9); /* skip in_proj_a/b */
        free(x), free(y);
    }
    double core_flops;
    if (type == LAYER_FULL_ATTN) /* Q·Kᵀ and P·V over the causal triangle */
        core_flops = 2.0 * 2.0 * B * c->n_heads * c->head_dim * ((double)T * (T + 1) / 2);
    else { /* chunked delta rule, C = 64: K·Kᵀ and Q·Kᵀ once per key head, the rest per value
            * head (see calib/deltanet.c) */
        double C = 64, dk = c->lin_k_dim, dv = c->lin_v_dim;
        double per_key = C * C * dk * 2, per_value = C * C * (dk + dv) + 3 * 2 * C * dk * dv + C * C * dv;
        core_flops = (per_key * c->lin_k_heads + per_value * c->lin_v_heads) * ceil((double)T / C) * B;
    }
    /* yardstick: the best sgemm rate seen on this machine in this process — square 2048 and
     * 4096 (measured in main, again now), and the layer's own fastest linear */
    double peak = fmax(fmax(sq_peak, bench_sgemm_gflops(threads, 4096, 2)), best_linear);
    sq_peak = fmax(sq_peak, peak);
    double gf = (lin_flops + core_flops) / dt / 1e9;
    printf("bench forward %-9s layer d=%d B=%d T=%d  %.3f s (worst of 2: %.3f s)  %.1f GFLOP/s  %.1f%% of best sgemm "
           "(%.1f GFLOP/s, %d threads; 2048^2 alone: %.1f) | %.0f tok/s, linear GEMMs %.0f%% of time (%.1f%% of best "
           "sgemm alone), %.2f MB/token\n",
           type == LAYER_FULL_ATTN ? "attention" : "deltanet", d, B, T, dt, worst, gf, 100.0 * gf / peak, peak, threads,
           bench_sgemm_peak(threads), N / dt, 100.0 * gemm_s / dt, 100.0 * lin_flops / gemm_s / 1e9 / peak,
           rss_growth / N / 1e6);
    layer_weights_free(&lw);
    free(h), free(out);
}

/* the chunked delta rule of one head on one core (the part of a DeltaNet layer outside BLAS) */
static void bench_delta_kernel(int T, int dk, int dv)
{
    float *q = rnd((int64_t)T * dk, 1.0f, 31), *k = rnd((int64_t)T * dk, 1.0f, 32),
          *v = rnd((int64_t)T * dv, 1.0f, 33), *o = xmalloc_aligned((size_t)T * dv * sizeof(float));
    float *beta = xmalloc((size_t)T * sizeof(float)), *g = xmalloc((size_t)T * sizeof(float));
    for (int t = 0; t < T; t++) {
        l2norm_scale(q + (size_t)t * dk, dk, 1e-6f, 1.0f / sqrtf((float)dk));
        l2norm_scale(k + (size_t)t * dk, dk, 1e-6f, 1.0f);
        beta[t] = 0.5f, g[t] = -0.05f;
    }
    delta_rule_args a = {.T = T, .dk = dk, .dv = dv, .q = q, .k = k, .v = v, .beta = beta, .g = g,
                         .ldq = dk, .ldk = dk, .ldv = dv, .ldb = 1, .ldg = 1, .ldo = dv, .o = o};
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < 3; r++) {
        double t0 = bench_now();
        delta_rule_chunked(&a, 64, NULL);
        double t1 = bench_now();
        delta_rule_recurrent(&a, NULL);
        double t2 = bench_now();
        best[0] = fmin(best[0], t1 - t0), best[1] = fmin(best[1], t2 - t1);
    }
    double C = 64, per_chunk = C * C * dk * 2 + C * C * (dk + dv) + 3 * 2 * C * dk * dv + C * C * dv;
    printf("bench delta rule, one head, 1 core, T=%d: chunked %.1f ms (%.1f GFLOP/s), recurrence %.1f ms\n",
           T, 1e3 * best[0], per_chunk * ceil(T / C) / best[0] / 1e9, 1e3 * best[1]);
    free(q), free(k), free(v), free(o), free(beta), free(g);
}

int main(int argc, char **argv)
{
    blas_env_reexec(argv); /* measure the kernels and wait policy bin/gptq-eora runs with */
    int T = argc > 1 ? atoi(argv[1]) : 4096, B = argc > 2 ? atoi(argv[2]) : 1;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    int big = argc > 4 && !strcmp(argv[4], "27b");
    if (T <= 0 || B <= 0) {
        fprintf(stderr, "usage: bench_forward [T] [B] [threads] [9b|27b]\n");
        return 2;
    }
    threads = bench_set_threads(threads);
    model_config c;
    config(&c, big);
    sq_peak = fmax(bench_sgemm_peak(threads), bench_sgemm_gflops(threads, 4096, 2));
    printf("bench_forward: Qwen3.5-%s shapes, %d threads, sgemm %.1f GFLOP/s at 2048^2, best square %.1f GFLOP/s\n",
           big ? "27B" : "9B", threads, bench_sgemm_peak(threads), sq_peak);
    bench_delta_kernel(T, c.lin_k_dim, c.lin_v_dim);
    bench_layer(&c, LAYER_LINEAR_ATTN, B, T, threads);
    bench_layer(&c, LAYER_FULL_ATTN, B, T, threads);
    return 0;
}
