/* calib/ model: Qwen3.5 forward pass against transformers' golden outputs, kernel oracles
 * (chunked delta rule vs recurrence, blocked vs naive attention), taps, batching, LoRA. */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "calib/model.h"
#include "calib/model_kernels.h"
#include "calib/vec_math.h"
#include "io/err.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "tests/testlib.h"
#include "tests/testutil.h"
#include "tools/cli.h"

#define TINY TEST_DATA "/tiny-qwen35"
#define GOLDEN TEST_DATA "/golden/forward.safetensors"

/* deterministic uniform in [-1, 1) */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { return (float)((test_xorshift64(&rng_state) >> 40) * (2.0 / 16777216.0) - 1.0); }

/* max|a − b| / max|b| */
static double rel_maxdiff(const float *a, const float *b, int64_t n)
{
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN propagates as a failure */
        if (fabs(b[i]) > mr) mr = fabs(b[i]);
    }
    return mr > 0 ? md / mr : md;
}

static const float *golden_f32(st_set *g, const char *name, int64_t numel)
{
    const st_tensor *t = st_find(g, name);
    if (!t || t->dtype != DT_F32 || t->numel != numel) return NULL;
    return t->data;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

TEST(forward_matches_transformers_golden)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    st_set *ck = st_open(TINY), *g = st_open(GOLDEN);
    REQUIRE(ck && g);
    const st_tensor *ids_t = st_find(g, "input_ids");
    REQUIRE(ids_t && ids_t->dtype == DT_I32 && ids_t->numel == 256);
    const int T = 256, d = cfg.hidden;
    const int32_t *ids = ids_t->data;
    float *h = malloc((size_t)T * d * sizeof(float));
    REQUIRE(model_embed(ck, &cfg, ids, T, h) == 0);
    const float *ref = golden_f32(g, "embed", (int64_t)T * d);
    REQUIRE(ref);
    CHECK_MSG(rel_maxdiff(h, ref, (int64_t)T * d) == 0, "embed differs");
    for (int L = 0; L < cfg.n_layers; L++) {
        layer_weights lw;
        REQUIRE(layer_weights_load(ck, &cfg, L, &lw) == 0);
        REQUIRE(layer_forward(&cfg, &lw, h, h, 1, T, NULL, NULL) == 0);
        layer_weights_free(&lw);
        char name[32];
        snprintf(name, sizeof name, "layer_out.%d", L);
        ref = golden_f32(g, name, (int64_t)T * d);
        REQUIRE(ref);
        double r = rel_maxdiff(h, ref, (int64_t)T * d);
        printf("  %-12s (%s) max|Δ|/max|ref| = %.3g\n", name,
               cfg.layer_types[L] == LAYER_FULL_ATTN ? "full" : "linear", r);
        CHECK_MSG(r <= 1e-4, "%s: ratio %.3g > 1e-4", name, r);
    }
    head_weights hw;
    REQUIRE(head_weights_load(ck, &cfg, &hw) == 0);
    float *normed = malloc((size_t)T * d * sizeof(float));
    float *logits = malloc((size_t)T * cfg.vocab * sizeof(float));
    REQUIRE(head_forward(&cfg, &hw, h, T, normed, logits) == 0);
    ref = golden_f32(g, "final_norm", (int64_t)T * d);
    REQUIRE(ref);
    double r = rel_maxdiff(normed, ref, (int64_t)T * d);
    printf("  final_norm   max|Δ|/max|ref| = %.3g\n", r);
    CHECK(r <= 1e-4);
    const int TL = 128;
    ref = golden_f32(g, "logits", (int64_t)TL * cfg.vocab);
    REQUIRE(ref);
    r = rel_maxdiff(logits, ref, (int64_t)TL * cfg.vocab);
    printf("  logits       max|Δ|/max|ref| = %.3g\n", r);
    CHECK(r <= 1e-4);
    int same = 0;
    for (int t = 0; t < TL; t++)
        same += argmax(logits + (size_t)t * cfg.vocab, cfg.vocab) == argmax(ref + (size_t)t * cfg.vocab, cfg.vocab);
    printf("  argmax identical at %d / %d positions\n", same, TL);
    CHECK(same == TL);
    head_weights_free(&hw);
    free(h);
    free(normed);
    free(logits);
    st_close(ck);
    st_close(g);
    model_config_free(&cfg);
}

/* random delta-rule inputs shaped like the model's: unit-norm q/k, β ∈ (0,1), g < 0 */
static void delta_inputs(int T, int dk, int dv, float *q, float *k, float *v, float *beta, float *gg)
{
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < dk; i++) q[t * dk + i] = frand(), k[t * dk + i] = frand();
        for (int i = 0; i < dv; i++) v[t * dv + i] = frand();
        l2norm_scale(q + t * dk, dk, 1e-6f, 1.0f / sqrtf((float)dk));
        l2norm_scale(k + t * dk, dk, 1e-6f, 1.0f);
        beta[t] = 0.5f + 0.49f * frand();
        gg[t] = -0.3f * (1.0f + frand()); /* (−0.6, 0] */
    }
}

TEST(delta_rule_chunked_equals_recurrence)
{
    const int dk = 32, dv = 48;
    const int Ts[] = {1, 63, 64, 200, 257};
    const int chunks[] = {64, 16, 64, 64, 50};
    for (size_t c = 0; c < sizeof Ts / sizeof *Ts; c++) {
        const int T = Ts[c];
        float *q = malloc(sizeof(float) * T * dk), *k = malloc(sizeof(float) * T * dk);
        float *v = malloc(sizeof(float) * T * dv), *beta = malloc(sizeof(float) * T),
              *gg = malloc(sizeof(float) * T);
        float *o1 = malloc(sizeof(float) * T * dv), *o2 = malloc(sizeof(float) * T * dv);
        float *s1 = calloc((size_t)dk * dv, sizeof(float)), *s2 = calloc((size_t)dk * dv, sizeof(float));
        delta_inputs(T, dk, dv, q, k, v, beta, gg);
        delta_rule_args a = {.T = T, .dk = dk, .dv = dv, .q = q, .k = k, .v = v, .beta = beta,
                             .g = gg, .ldq = dk, .ldk = dk, .ldv = dv, .ldb = 1, .ldg = 1, .ldo = dv, .o = o1};
        delta_rule_recurrent(&a, s1);
        a.o = o2;
        delta_rule_chunked(&a, chunks[c], s2);
        double ro = rel_maxdiff(o2, o1, (int64_t)T * dv), rs = rel_maxdiff(s2, s1, (int64_t)dk * dv);
        printf("  T=%d chunk=%d: output %.3g, final state %.3g\n", T, chunks[c], ro, rs);
        CHECK_MSG(ro <= 1e-5 && rs <= 1e-5, "T=%d: output %.3g state %.3g", T, ro, rs);
        free(q), free(k), free(v), free(beta), free(gg), free(o1), free(o2), free(s1), free(s2);
    }
}

/* naive causal softmax attention in double, with the full score row */
static void attention_naive(const float *q, const float *k, const float *v, float *o, int T, int r,
                            int D, float scale)
{
    double *p = malloc(sizeof(double) * T);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < r; j++) {
            const float *qr = q + ((size_t)t * r + j) * D;
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                double dot = 0;
                for (int c = 0; c < D; c++) dot += (double)qr[c] * k[(size_t)s * D + c];
                p[s] = dot * scale;
                if (p[s] > mx) mx = p[s];
            }
            for (int s = 0; s <= t; s++) sum += p[s] = exp(p[s] - mx);
            for (int c = 0; c < D; c++) {
                double acc = 0;
                for (int s = 0; s <= t; s++) acc += p[s] * v[(size_t)s * D + c];
                o[((size_t)t * r + j) * D + c] = (float)(acc / sum);
            }
        }
    free(p);
}

TEST(attention_blocked_equals_naive)
{
    const int T = 300, r = 2, D = 64; /* large enough for the parallel path */
    const float scale = 1.0f / sqrtf((float)D);
    float *q = malloc(sizeof(float) * T * r * D), *k = malloc(sizeof(float) * T * D),
          *v = malloc(sizeof(float) * T * D);
    float *o1 = malloc(sizeof(float) * T * r * D), *o2 = malloc(sizeof(float) * T * r * D);
    for (int i = 0; i < T * r * D; i++) q[i] = 3 * frand(); /* peaky scores stress the rescaling */
    for (int i = 0; i < T * D; i++) k[i] = frand(), v[i] = frand();
    attention_naive(q, k, v, o1, T, r, D, scale);
    const int blocks[][2] = {{32, 16}, {16, 32}, {7, 13}, {256, 256}, {3, 2}};
    for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++) {
        attention_causal_blocked(q, k, v, o2, T, r, D, scale, blocks[b][0], blocks[b][1]);
        double rr = rel_maxdiff(o2, o1, (int64_t)T * r * D);
        printf("  qblock %d kblock %d: %.3g\n", blocks[b][0], blocks[b][1], rr);
        CHECK_MSG(rr <= 1e-5, "blocks %d/%d: %.3g", blocks[b][0], blocks[b][1], rr);
    }
    free(q), free(k), free(v), free(o1), free(o2);
}

/* ---- taps ---- */
typedef struct {
    int n, stop_at;          /* stop when the n-th call (0-based) is reached; −1 never */
    tap_id seen[8];
    int64_t rows[8];
    int cols[8];
} tap_log;

static int record_tap(void *ctx, tap_id tap, const float *x, int64_t rows, int cols)
{
    tap_log *l = ctx;
    if (l->n < 8) l->seen[l->n] = tap, l->rows[l->n] = rows, l->cols[l->n] = cols;
    int stop = l->n == l->stop_at;
    l->n++;
    return stop;
}

static float *random_hidden(int64_t n, int d)
{
    float *h = malloc(sizeof(float) * n * d);
    for (int64_t i = 0; i < n * d; i++) h[i] = frand();
    return h;
}

TEST(taps_fire_in_order_with_shapes_and_stop)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    st_set *ck = st_open(TINY);
    REQUIRE(ck);
    const int B = 2, T = 40, d = cfg.hidden;
    float *h = random_hidden((int64_t)B * T, d), *out = malloc(sizeof(float) * B * T * d);
    for (int L = 0; L <= 3; L += 3) { /* layer 0 DeltaNet, layer 3 full attention */
        layer_weights lw;
        REQUIRE(layer_weights_load(ck, &cfg, L, &lw) == 0);
        const int full = lw.type == LAYER_FULL_ATTN;
        CHECK(full == (L == 3));
        tap_id want[4] = {full ? TAP_ATTN_QKV : TAP_LIN_IN, full ? TAP_ATTN_O : TAP_LIN_OUT, TAP_MLP_IN, TAP_MLP_DOWN};
        int want_cols[4] = {d, full ? cfg.n_heads * cfg.head_dim : cfg.lin_v_heads * cfg.lin_v_dim, d, cfg.intermediate};
        tap_log log = {.stop_at = -1};
        REQUIRE(layer_forward(&cfg, &lw, h, out, B, T, record_tap, &log) == 0);
        CHECK(log.n == 4);
        for (int i = 0; i < 4 && i < log.n; i++) {
            CHECK_MSG(log.seen[i] == want[i], "layer %d tap %d: %s, want %s", L, i, tap_name(log.seen[i]), tap_name(want[i]));
            CHECK(log.rows[i] == (int64_t)B * T && log.cols[i] == want_cols[i]);
        }
        /* each stage's linears are in this layer and read the tap's width */
        const layer_stage *st;
        int ns = layer_stages(lw.type, &st);
        CHECK(ns == (full ? 4 : 5));
        for (int s = 0; s < ns; s++)
            for (int j = 0; j < st[s].n; j++) {
                linear_t *l = layer_linear(&lw, st[s].linears[j]);
                int wc = -1;
                for (int i = 0; i < 4; i++)
                    if (want[i] == st[s].tap) wc = want_cols[i];
                CHECK_MSG(l && l->in == wc, "stage %d linear %s", s, st[s].linears[j]);
                if (l) CHECK(strstr(l->name, st[s].linears[j]) && !strstr(l->name, ".weight"));
            }
        /* stopping at tap i: returns 1 after exactly i+1 calls and leaves h_out untouched */
        for (int stop = 0; stop < 4; stop++) {
            for (int64_t i = 0; i < (int64_t)B * T * d; i++) out[i] = 7.0f;
            tap_log sl = {.stop_at = stop};
            CHECK(layer_forward(&cfg, &lw, h, out, B, T, record_tap, &sl) == 1);
            CHECK(sl.n == stop + 1);
            int untouched = 1;
            for (int64_t i = 0; i < (int64_t)B * T * d; i++) untouched &= out[i] == 7.0f;
            CHECK_MSG(untouched, "layer %d stop at %d wrote h_out", L, stop);
        }
        layer_weights_free(&lw);
    }
    free(h), free(out);
    st_close(ck);
    model_config_free(&cfg);
}

TEST(batch_of_two_equals_two_single_runs)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    st_set *ck = st_open(TINY);
    REQUIRE(ck);
    const int T = 100, d = cfg.hidden;
    float *h = random_hidden(2 * T, d), *both = malloc(sizeof(float) * 2 * T * d),
          *one = malloc(sizeof(float) * 2 * T * d);
    for (int L = 0; L <= 3; L += 3) {
        layer_weights lw;
        REQUIRE(layer_weights_load(ck, &cfg, L, &lw) == 0);
        REQUIRE(layer_forward(&cfg, &lw, h, both, 2, T, NULL, NULL) == 0);
        for (int b = 0; b < 2; b++)
            REQUIRE(layer_forward(&cfg, &lw, h + (size_t)b * T * d, one + (size_t)b * T * d, 1, T, NULL, NULL) == 0);
        double r = rel_maxdiff(both, one, 2 * T * d);
        printf("  layer %d: batch vs single %.3g\n", L, r);
        CHECK(r <= 1e-6);
        /* and the second sequence really differs from the first (no cross-talk hiding) */
        CHECK(rel_maxdiff(both, both + (size_t)T * d, (int64_t)T * d) > 1e-2);
        layer_weights_free(&lw);
    }
    free(h), free(both), free(one);
    st_close(ck);
    model_config_free(&cfg);
}

/* ga_exp as compiled here (this file: baseline x86-64, no FMA; the softmax's clones share the
 * formula) and the SiLU of swiglu_inplace (the library's AVX-512/AVX2 clone, with FMA) against
 * double precision; the edges; the padded tail: an element's value does not depend on where it
 * sits in the array; and rmsnorm_gated in place (y = o) equals out of place. */
TEST(vector_exp_and_silu_accuracy)
{
    enum { N = 200003 };
    float *x = malloc(N * sizeof(float)), *e = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float)),
          *u = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -87.3f + (88.3f + 87.3f) * (float)i / (N - 1), u[i] = 1.0f;
    for (int i = 0; i + 16 <= N; i += 16) ga_store(e + i, ga_exp(ga_load(x + i)));
    double worst = 0;
    for (int i = 0; i + 16 <= N; i++) {
        double ref = exp((double)x[i]);
        if (ref < 1.1754943508222875e-38) continue; /* fp32 denormal results: flushed by the kernels */
        worst = fmax(worst, fabs(e[i] - ref) / ref);
    }
    printf("  ga_exp on [-87.3, 88.3]: max relative error %.3g (%.2f ulp)\n", worst, worst / 1.1920929e-7);
    CHECK_MSG(worst <= 2.4e-7, "ga_exp relative error %.3g > 2 ulp", worst); /* as vec_math.h states */
    float sp[16] = {-INFINITY, -1000.0f, -87.4f, 0.0f, -0.0f, 88.4f, 1000.0f, INFINITY, NAN, 1.0f, -1.0f, 0.5f};
    ga_v16 r = ga_exp(ga_load(sp));
    CHECK(r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == 1 && r[4] == 1);
    CHECK(isinf(r[5]) && isinf(r[6]) && isinf(r[7]) && isnan(r[8]));
    CHECK(fabs(r[9] - M_E) <= 2.4e-7 * M_E && fabs(r[10] - 1 / M_E) <= 2.4e-7 / M_E);

    for (int i = 0; i < N; i++) x[i] = -100.0f + 200.0f * (float)i / (N - 1), g[i] = x[i];
    swiglu_inplace(g, u, N);
    worst = 0;
    for (int i = 0; i < N; i++) {
        double ref = x[i] / (1.0 + exp(-(double)x[i]));
        if (fabs(ref) < 1e-30) continue;
        worst = fmax(worst, fabs(g[i] - ref) / fabs(ref));
    }
    printf("  silu (swiglu_inplace) on [-100, 100]: max relative error %.3g\n", worst);
    CHECK_MSG(worst <= 4.8e-7, "silu relative error %.3g > 4 ulp", worst);
    /* the same 37 values at offsets 0 and 5 of a 37- and a 45-element array: identical bits */
    float a[45], b[45], one[45];
    for (int i = 0; i < 45; i++) one[i] = 1.0f, b[i] = 0.0f;
    for (int i = 0; i < 37; i++) a[i] = b[i + 5] = -9.0f + 0.47f * i;
    swiglu_inplace(a, one, 37);
    swiglu_inplace(b, one, 45);
    CHECK(memcmp(a, b + 5, 37 * sizeof(float)) == 0);
    float o[3 * 40], zz[3 * 40], wn[40], y_out[3 * 40];
    for (int i = 0; i < 3 * 40; i++) o[i] = sinf(0.37f * i), zz[i] = cosf(0.11f * i) * 3;
    for (int i = 0; i < 40; i++) wn[i] = 1.0f + 0.01f * i;
    rmsnorm_gated(o, wn, zz, y_out, 3, 40, 1e-6f);
    rmsnorm_gated(o, wn, zz, o, 3, 40, 1e-6f);
    CHECK(memcmp(o, y_out, sizeof o) == 0);
    free(x), free(e), free(g), free(u);
}

TEST(linear_apply_lora_and_bias)
{
    const int rows = 5, in = 7, out = 6, r = 3;
    linear_t l = {.out = out, .in = in, .lora_r = r};
    l.w = malloc(sizeof(float) * out * in);
    l.bias = malloc(sizeof(float) * out);
    l.lora_A = malloc(sizeof(float) * r * in);
    l.lora_B = malloc(sizeof(float) * out * r);
    float x[rows * in], y[rows * out];
    for (int i = 0; i < out * in; i++) l.w[i] = frand();
    for (int i = 0; i < out; i++) l.bias[i] = frand();
    for (int i = 0; i < r * in; i++) l.lora_A[i] = frand();
    for (int i = 0; i < out * r; i++) l.lora_B[i] = frand();
    for (int i = 0; i < rows * in; i++) x[i] = frand();
    linear_apply(&l, x, rows, y);
    for (int i = 0; i < rows; i++)
        for (int o = 0; o < out; o++) {
            double acc = l.bias[o];
            for (int c = 0; c < in; c++) {
                double ba = 0;
                for (int j = 0; j < r; j++) ba += (double)l.lora_B[o * r + j] * l.lora_A[j * in + c];
                acc += ((double)l.w[o * in + c] + ba) * x[i * in + c];
            }
            CHECK_NEAR(y[i * out + o], acc, 1e-5);
        }
    free(l.w), free(l.bias), free(l.lora_A), free(l.lora_B);
}

TEST(model_errors_name_the_problem)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    st_set *ck = st_open(TINY);
    REQUIRE(ck);
    int32_t ids[3] = {1, cfg.vocab, 2};
    float out[3 * 256];
    CHECK(model_embed(ck, &cfg, ids, 3, out) == -1);
    CHECK(strstr(err_msg(), "4096") != NULL);
    layer_weights lw;
    CHECK(layer_weights_load(ck, &cfg, cfg.n_layers, &lw) == -1);
    /* a config whose sizes disagree with the checkpoint: the error names the tensor */
    int saved = cfg.intermediate;
    cfg.intermediate = 512;
    CHECK(layer_weights_load(ck, &cfg, 1, &lw) == -1);
    CHECK_MSG(strstr(err_msg(), "layers.1.mlp.gate_proj.weight") && strstr(err_msg(), "768"), "%s", err_msg());
    cfg.intermediate = saved;
    /* layer types swapped: a DeltaNet layer read as full attention misses q_proj */
    cfg.layer_types[0] = LAYER_FULL_ATTN;
    CHECK(layer_weights_load(ck, &cfg, 0, &lw) == -1);
    CHECK_MSG(strstr(err_msg(), "self_attn.q_proj") != NULL, "%s", err_msg());
    st_close(ck);
    model_config_free(&cfg);
}

TEST(cli_forward_writes_golden_names)
{
    char out[512], spec[512];
    snprintf(out, sizeof out, "%s/fwd.safetensors", test_tmpdir());
    snprintf(spec, sizeof spec, "%s:input_ids", GOLDEN);
    char *argv[] = {"forward", "--model", TINY, "--ids", spec, "--dump", "embed,layers,final_norm,logits",
                    "--layers", "2..3", "-o", out, NULL};
    REQUIRE(cmd_forward(11, argv) == 0);
    st_set *o = st_open(out), *g = st_open(GOLDEN);
    REQUIRE(o && g);
    const char *names[] = {"embed", "layer_out.2", "layer_out.3", "final_norm", "logits"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const st_tensor *a = st_find(o, names[i]), *b = st_find(g, names[i]);
        REQUIRE(a && b);
        CHECK(a->ndim == 3 && a->shape[0] == 1 && a->shape[1] == 256 && a->shape[2] == b->shape[2]);
        int64_t n = b->numel; /* golden logits cover the first 128 positions */
        double r = rel_maxdiff(a->data, b->data, n);
        CHECK_MSG(r <= 1e-4, "%s: %.3g", names[i], r);
    }
    CHECK(st_find(o, "layer_out.1") == NULL && st_find(o, "layer_out.4") == NULL);
    st_close(o);
    st_close(g);
    /* bad input is a usage error or a failure, never a crash or a file */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", test_tmpdir());
    char *argv2[] = {"forward", "--model", TINY, "--ids", spec, "--layers", "5..9", "-o", bad, NULL};
    CHECK(cmd_forward(9, argv2) != 0);
    CHECK(st_open(bad) == NULL);
}

/* A byte count near SIZE_MAX (a negative count converted to size_t) is an out-of-memory exit
 * (status 1), never rounded up past zero into a tiny buffer: fwd_alloc rounds to 2 MiB,
 * xmalloc_aligned to 64 bytes. Each call runs in a child process. */
TEST(allocations_near_size_max_exit_out_of_memory)
{
    const size_t sizes[3] = {SIZE_MAX, SIZE_MAX - 40, SIZE_MAX - (1u << 20)};
    for (int which = 0; which < 2; which++)
        for (int k = 0; k < 3; k++) {
            fflush(stdout);
            fflush(stderr);
            pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                int devnull = open("/dev/null", O_WRONLY);
                if (devnull >= 0) dup2(devnull, 2); /* the out-of-memory line */
                void *p = which ? fwd_alloc(sizes[k]) : xmalloc_aligned(sizes[k]);
                _exit(p ? 3 : 4);
            }
            int status = 0;
            waitpid(pid, &status, 0);
            CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%s(SIZE_MAX - %zu): status %d",
                      which ? "fwd_alloc" : "xmalloc_aligned", SIZE_MAX - sizes[k], status);
        }
}
