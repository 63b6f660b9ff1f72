/* eval: per-token scoring, statistics, GPTQ checkpoint + adapter loading, and the acceptance
 * numbers of issue 8 against transformers / GPTQModel (GOLDEN.md). */
#define PCRE2_CODE_UNIT_WIDTH 8 /* io/job.h includes pcre2.h */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/model.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "tests/testlib.h"
#include "tools/cli.h"
#include "tools/eval.h"
#include "tools/eval_stats.h"
#include "tools/qcheckpoint.h"
#include "tools/pipeline.h"
#include "gptq/gptq.h"
#include "gptq/pack.h"

#define TINY TEST_DATA "/tiny-qwen35"
#define RECIPE TEST_DATA "/golden/gptqmodel-tiny-recipe"
#define GOLD_GPTQ TEST_DATA "/golden/gptq_gptqmodel.safetensors"
#define EVAL_DATA TEST_DATA "/text/eval.jsonl"

/* ---------------------------------------------------------------- scoring / statistics */

TEST(score_token_hand_computed)
{
    /* p_base = [1/4, 1/2, 1/4], p_quant uniform: KLD = ½ ln(3/4) + ½ ln(3/2) */
    float lb[3] = {0.0f, logf(2.0f), 0.0f}, lq[3] = {5.0f, 5.0f, 5.0f};
    token_score s;
    eval_score_token(lb, lq, 3, 1, &s);
    CHECK_NEAR(s.nll_base, log(2.0), 1e-7);
    CHECK_NEAR(s.nll_quant, log(3.0), 1e-7);
    CHECK_NEAR(s.kld, 0.5 * log(0.75) + 0.5 * log(1.5), 1e-7);
    CHECK(s.top1_base == 1);
    CHECK(s.top1_quant == 0); /* ties: first index, like torch.argmax */
    eval_score_token(lb, NULL, 3, 2, &s);
    CHECK_NEAR(s.nll_base, log(4.0), 1e-7);
    CHECK(s.kld == 0.0);
}

TEST(score_token_identical_and_shifted_logits)
{
    enum { V = 4096 };
    float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
    uint32_t x = 12345;
    for (int i = 0; i < V; i++) {
        x = x * 1664525u + 1013904223u;
        a[i] = (float)((x >> 8) % 20000) / 1000.0f - 10.0f;
        b[i] = a[i] + 64.0f; /* softmax is shift invariant */
    }
    token_score s;
    eval_score_token(a, a, V, 7, &s);
    CHECK(s.kld == 0.0);
    CHECK(s.nll_base == s.nll_quant && s.top1_base == s.top1_quant);
    eval_score_token(a, b, V, 7, &s);
    CHECK_NEAR(s.kld, 0.0, 1e-9);
    CHECK_NEAR(s.nll_base, s.nll_quant, 1e-5);
    /* large logits: fp64 log-sum-exp does not overflow */
    for (int i = 0; i < V; i++) b[i] = a[i] * 1000.0f;
    eval_score_token(b, a, V, 7, &s);
    CHECK(isfinite(s.kld) && s.kld > 0 && isfinite(s.nll_base));
    free(a);
    free(b);
}

TEST(quantile_linear_interpolation)
{
    float v[100];
    for (int i = 0; i < 100; i++) v[i] = (float)i;
    CHECK_NEAR(eval_quantile(v, 100, 0.5), 49.5, 1e-12);    /* numpy.quantile(arange(100), q) */
    CHECK_NEAR(eval_quantile(v, 100, 0.99), 98.01, 1e-9);
    CHECK_NEAR(eval_quantile(v, 100, 0.999), 98.901, 1e-9);
    CHECK(eval_quantile(v, 100, 1.0) == 99.0 && eval_quantile(v, 100, 0.0) == 0.0);
    CHECK(eval_quantile(v, 1, 0.999) == 0.0);
}

TEST(accum_ppl_kld_top1)
{
    eval_accum a;
    eval_accum_init(&a, 1);
    /* 4 tokens with NLL 1,2,3,4 (base) and 2,2,2,2 (quant), KLDs 0.4 0.1 0.3 0.2 */
    const double kl[4] = {0.4, 0.1, 0.3, 0.2};
    for (int i = 0; i < 4; i++) {
        token_score s = {.nll_base = i + 1, .nll_quant = 2, .kld = kl[i], .top1_base = i, .top1_quant = i < 3 ? i : 9};
        eval_accum_add(&a, &s);
    }
    eval_result r = {.windows = 2, .seq_len = 3};
    REQUIRE(eval_accum_finish(&a, &r) == 0);
    CHECK(r.tokens == 4 && r.windows == 2 && r.seq_len == 3 && r.has_quant);
    CHECK_NEAR(r.ppl_base, exp(2.5), 1e-9);
    CHECK_NEAR(r.ppl_quant, exp(2.0), 1e-9);
    CHECK_NEAR(r.dppl_pct, 100.0 * (exp(-0.5) - 1.0), 1e-9);
    CHECK_NEAR(r.kld_mean, 0.25, 1e-7);
    CHECK_NEAR(r.kld_median, 0.25, 1e-7);
    CHECK_NEAR(r.kld_max, 0.4, 1e-7);
    CHECK_NEAR(r.kld_p99, 0.2f + 0.97 * (0.4f - 0.3f) + 0.1f, 1e-6); /* pos 2.97 between 0.3 and 0.4 */
    CHECK_NEAR(r.same_top1, 0.75, 1e-12);
    eval_accum_free(&a);
    eval_accum empty;
    eval_accum_init(&empty, 0);
    CHECK(eval_accum_finish(&empty, &r) < 0);
    eval_accum_free(&empty);
}

/* ---------------------------------------------------------------- checkpoint loading */

static int write_text(const char *dir, const char *file, const char *text)
{
    char *p = fs_join(dir, file);
    int rc = fs_write_atomic(p, text, strlen(text));
    free(p);
    return rc;
}

static char *mkdir_in_tmp(const char *name)
{
    char *d = fs_join(test_tmpdir(), name);
    fs_mkdir_p(d);
    return d;
}

/* A one-module checkpoint made of the golden packed tensors of l0.in_proj_qkv case C, stored
 * under `module`, with v1 zeros (zero − 1 word-wise) when v1. */
static char *golden_module_ckpt(const char *name, const char *C, const char *module, int v1, const char *qcfg)
{
    st_set *g = st_open(GOLD_GPTQ);
    if (!g) return NULL;
    char *dir = mkdir_in_tmp(name);
    st_writer *w = st_writer_open(dir, "model", (size_t)1 << 30);
    const char *parts[4][2] = {{"qweight", "qweight"}, {"qzeros", "qzeros"}, {"scales_f16", "scales"}, {"g_idx_packed", "g_idx"}};
    int bits = strstr(C, "b8") ? 8 : strstr(C, "b3") ? 3 : 4;
    for (int i = 0; i < 4 && w; i++) {
        char src[256], dst[256];
        snprintf(src, sizeof src, "l0.in_proj_qkv.%s.%s", C, parts[i][0]);
        snprintf(dst, sizeof dst, "%s.%s", module, parts[i][1]);
        const st_tensor *t = st_find(g, src);
        if (!t) {
            fprintf(stderr, "golden tensor %s missing\n", src);
            st_writer_abort(w);
            w = NULL;
            break;
        }
        void *data = (void *)t->data;
        int32_t *copy = NULL;
        if (v1 && i == 1) { /* v2 → v1: word-wise subtraction of 0x11111111 / 0x01010101 / ... */
            copy = malloc(t->nbytes);
            memcpy(copy, t->data, t->nbytes);
            uint32_t one = 0;
            if (bits == 3) { /* 3-bit zeros straddle words: convert through the shared helper */
                gptq_qzeros_convert(copy, t->numel, 3, GPTQ_FMT_V2, GPTQ_FMT_V1);
            } else {
                for (int k = 0; k < 32 / bits; k++) one |= 1u << (k * bits);
                for (int64_t k = 0; k < t->numel; k++) copy[k] = (int32_t)((uint32_t)copy[k] - one);
            }
            data = copy;
        }
        if (st_writer_add(w, dst, t->dtype, t->ndim, t->shape, data) < 0) {
            st_writer_abort(w);
            w = NULL;
        }
        free(copy);
    }
    st_close(g);
    if (!w || st_writer_finish(w) < 0 || write_text(dir, "quantize_config.json", qcfg) < 0) {
        free(dir);
        return NULL;
    }
    return dir;
}

static float *golden_f32(const char *name)
{
    st_set *g = st_open(GOLD_GPTQ);
    if (!g) return NULL;
    float *x = st_load_f32(g, name, NULL);
    st_close(g);
    return x;
}

static double max_abs(const float *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Dequantized GPTQModel tensors equal GPTQModel's Q (up to its fp16 scales), v1 == v2. */
static void check_dequant_case(const char *C, int bits)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    char qcfg[256], n1[64], n2[64];
    snprintf(qcfg, sizeof qcfg, "{\"bits\": %d, \"group_size\": 128, \"desc_act\": true, \"sym\": true, \"checkpoint_format\": \"gptq_v2\"}", bits);
    snprintf(n1, sizeof n1, "deq_%s_v2", C);
    snprintf(n2, sizeof n2, "deq_%s_v1", C);
    char *d2 = golden_module_ckpt(n1, C, "m", 0, qcfg);
    snprintf(qcfg, sizeof qcfg, "{\"bits\": %d, \"group_size\": 128, \"desc_act\": true, \"sym\": true, \"checkpoint_format\": \"gptq\"}", bits);
    char *d1 = golden_module_ckpt(n2, C, "m", 1, qcfg);
    REQUIRE(d1 && d2);
    qcheckpoint *q2 = qckpt_open(d2, NULL, &cfg), *q1 = qckpt_open(d1, NULL, &cfg);
    CHECK_MSG(q1 && q2, "%s", err_msg());
    float *W1 = NULL, *W2 = NULL, *b = NULL;
    int bits1 = 0, bits2 = 0;
    if (q1 && q2) {
        CHECK(qckpt_format(q1) == GPTQ_FMT_V1 && qckpt_format(q2) == GPTQ_FMT_V2);
        CHECK_MSG(qckpt_load_linear(q2, "m", 512, 256, &W2, &b, &bits2) == 0, "%s", err_msg());
        CHECK_MSG(qckpt_load_linear(q1, "m", 512, 256, &W1, &b, &bits1) == 0, "%s", err_msg());
        CHECK(bits1 == bits && bits2 == bits && b == NULL);
    }
    if (W1 && W2) {
        CHECK(max_abs_diff(W1, W2, 512 * 256) == 0.0);
        char name[128];
        snprintf(name, sizeof name, "l0.in_proj_qkv.%s.Q", C);
        float *Q = golden_f32(name);
        if (!Q) { /* no dequantized reference for this case: compare with the float weight */
            Q = golden_f32("l0.in_proj_qkv.W");
            REQUIRE(Q);
            /* 3-bit grid: error below one step of the coarsest group */
            CHECK(max_abs_diff(W1, Q, 512 * 256) < 0.25 * max_abs(Q, 512 * 256));
        } else {
            /* GPTQModel's Q uses fp32 scales; the checkpoint stores fp16 ones (rel. 2^-11) */
            CHECK_MSG(max_abs_diff(W1, Q, 512 * 256) <= 1e-3 * max_abs(Q, 512 * 256), "max |W−Q| = %g (max |Q| %g)",
                      max_abs_diff(W1, Q, 512 * 256), max_abs(Q, 512 * 256));
        }
        free(Q);
    }
    free(W1);
    free(W2);
    qckpt_close(q1);
    qckpt_close(q2);
    free(d1);
    free(d2);
    model_config_free(&cfg);
}

TEST(dequant_golden_4bit_v1_v2) { check_dequant_case("b4_g128_act", 4); }
TEST(dequant_golden_8bit_v1_v2) { check_dequant_case("b8_g128_act", 8); }
TEST(dequant_golden_3bit_v1_v2) { check_dequant_case("b3_g128_act", 3); }

TEST(recipe_config_dynamic_bits)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    qcheckpoint *q = qckpt_open(RECIPE, NULL, &cfg);
    REQUIRE(q);
    CHECK(qckpt_has_config(q) && qckpt_format(q) == GPTQ_FMT_V1);
    int bits, gs;
    qckpt_module_plan(q, "model.language_model.layers.3.self_attn.q_proj", &bits, &gs);
    CHECK(bits == 8 && gs == 128);
    qckpt_module_plan(q, "model.language_model.layers.3.mlp.down_proj", &bits, &gs);
    CHECK(bits == 4 && gs == 128);
    /* GPTQModel's recipe: 6 linear layers × 6 + 2 full × 7 = 50 modules, 8 of them 8-bit */
    CHECK_MSG(strstr(qckpt_describe(q), "50 quantized modules (42 × 4-bit, 8 × 8-bit)") != NULL, "%s", qckpt_describe(q));
    /* dequantized 8-bit attention weight is close to the original */
    st_set *base = st_open(TINY);
    REQUIRE(base);
    float *W = NULL, *bias = NULL, *ref = st_load_f32(base, "model.language_model.layers.3.self_attn.q_proj.weight", NULL);
    REQUIRE(ref);
    CHECK_MSG(qckpt_load_linear(q, "model.language_model.layers.3.self_attn.q_proj", 512, 256, &W, &bias, &bits) == 0, "%s",
              err_msg());
    CHECK(bits == 8);
    if (W) CHECK(max_abs_diff(W, ref, 512 * 256) < 0.02 * max_abs(ref, 512 * 256));
    free(W);
    free(ref);
    /* a wrong shape is an error naming the tensor */
    CHECK(qckpt_load_linear(q, "model.language_model.layers.3.self_attn.q_proj", 512, 128, &W, &bias, &bits) < 0);
    CHECK(strstr(err_msg(), "q_proj") != NULL);
    CHECK(qckpt_load_linear(q, "model.language_model.layers.3.self_attn.nope", 512, 256, &W, &bias, &bits) < 0);
    st_close(base);
    qckpt_close(q);
    model_config_free(&cfg);
}

TEST(dynamic_bits_disagreeing_with_shape_is_an_error)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    const char *qcfg = "{\"bits\": 4, \"group_size\": 128, \"desc_act\": true, \"sym\": true, \"checkpoint_format\": \"gptq\","
                       " \"dynamic\": {\"+:.*\\\\.self_attn\\\\..*\": {\"bits\": 8}, \"-:.*skipme.*\": {}}}";
    const char *mod = "model.language_model.layers.3.self_attn.q_proj";
    char *d = golden_module_ckpt("dyn_mismatch", "b4_g128_act", mod, 1, qcfg);
    REQUIRE(d);
    qcheckpoint *q = qckpt_open(d, NULL, &cfg);
    REQUIRE(q);
    int bits, gs;
    qckpt_module_plan(q, "x.skipme.y", &bits, &gs);
    CHECK(bits == 0);
    float *W = NULL, *b = NULL;
    CHECK(qckpt_load_linear(q, mod, 512, 256, &W, &b, &bits) < 0);
    CHECK_MSG(strstr(err_msg(), "dynamic") && strstr(err_msg(), "self_attn.q_proj"), "%s", err_msg());
    qckpt_close(q);
    free(d);
    model_config_free(&cfg);
}

TEST(bad_quantization_configs_fail_with_one_line)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    const struct {
        const char *json, *expect;
    } cases[] = {
        {"{\"bits\": 4, \"checkpoint_format\": \"marlin\"}", "marlin"},
        {"{\"bits\": 4, \"dynamic\": {\"+:(unclosed\": {\"bits\": 8}}}", "(unclosed"},
        {"{\"bits\": 4, \"quant_method\": \"awq\"}", "awq"},
        {"{\"bits\": \"four\"}", "bits"},
        {"{\"bits\": 4, \"group_size\": 1e10}", "group_size: expected an integer"}, /* not converted to int */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "badcfg%zu", i);
        char *d = mkdir_in_tmp(name);
        REQUIRE(write_text(d, "quantize_config.json", cases[i].json) == 0);
        qcheckpoint *q = qckpt_open(d, NULL, &cfg);
        CHECK_MSG(!q && strstr(err_msg(), cases[i].expect) && !strchr(err_msg(), '\n'), "case %zu: %s", i, err_msg());
        qckpt_close(q);
        free(d);
    }
    model_config_free(&cfg);
}

/* adapter_config.json + adapter_model.safetensors with one module's A [r,in], B [out,r]. */
static char *write_adapter(const char *name, const char *module, int r, int out, int in, double alpha, float a_val,
                           float b_val)
{
    char *dir = mkdir_in_tmp(name);
    st_writer *w = st_writer_open(dir, "adapter_model", (size_t)1 << 30);
    if (!w) return NULL;
    float *A = malloc((size_t)r * in * sizeof *A), *B = malloc((size_t)out * r * sizeof *B);
    for (int i = 0; i < r * in; i++) A[i] = a_val * (float)((i % 7) - 3);
    for (int i = 0; i < out * r; i++) B[i] = b_val * (float)((i % 5) - 2);
    char ta[512], tb[512];
    snprintf(ta, sizeof ta, "base_model.model.%s.lora_A.weight", module);
    snprintf(tb, sizeof tb, "base_model.model.%s.lora_B.weight", module);
    int64_t sa[2] = {r, in}, sb[2] = {out, r};
    int rc = st_writer_add_f32(w, ta, DT_F32, 2, sa, A) | st_writer_add_f32(w, tb, DT_F32, 2, sb, B);
    free(A);
    free(B);
    if (rc < 0 || st_writer_finish(w) < 0) return NULL;
    char cfgj[512];
    snprintf(cfgj, sizeof cfgj,
             "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": %g, \"target_modules\": [\"down_proj\"],"
             " \"base_model_name_or_path\": \"x\"}",
             r, alpha);
    if (write_text(dir, "adapter_config.json", cfgj) < 0) return NULL;
    return dir;
}

TEST(adapter_attached_with_scaling)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    const char *mod = "model.language_model.layers.0.mlp.down_proj";
    char *ad = write_adapter("adapter_s", mod, 4, 256, 768, 8.0, 0.01f, 0.5f);
    REQUIRE(ad);
    /* the base model itself serves as a float "checkpoint" */
    qcheckpoint *q = qckpt_open(TINY, ad, &cfg);
    CHECK_MSG(q != NULL, "%s", err_msg());
    st_set *base = st_open(TINY);
    layer_weights lw;
    if (q && base && layer_weights_load(base, &cfg, 0, &lw) == 0) {
        CHECK_MSG(qckpt_apply_layer(q, &cfg, 0, &lw) == 0, "%s", err_msg());
        CHECK(lw.down_proj.lora_A && lw.down_proj.lora_B && lw.down_proj.lora_r == 4);
        CHECK(!lw.gate_proj.lora_A && !lw.in_proj_qkv.lora_A);
        if (lw.down_proj.lora_B) {
            CHECK_NEAR(lw.down_proj.lora_B[0], 0.5f * -2.0f * (8.0 / 4.0), 1e-7); /* scaling alpha/r = 2 */
            CHECK_NEAR(lw.down_proj.lora_A[1], 0.01f * -2.0f, 1e-9);
        }
        layer_weights_free(&lw);
    } else {
        CHECK_MSG(0, "%s", err_msg());
    }
    if (base) st_close(base);
    qckpt_close(q);
    /* an adapter naming a module the model does not have is refused */
    char *bad = write_adapter("adapter_bad", "model.layers.0.mlp.down_proj", 4, 256, 768, 4.0, 0.01f, 0.5f);
    REQUIRE(bad);
    q = qckpt_open(TINY, bad, &cfg);
    CHECK_MSG(!q && strstr(err_msg(), "does not name a linear"), "%s", err_msg());
    qckpt_close(q);
    free(ad);
    free(bad);
    model_config_free(&cfg);
}

/* ---------------------------------------------------------------- end to end (forward pass) */

/* The golden forward pass's input ids (transformers' run): windows without the tokenizer. */
static int32_t *golden_ids(int64_t *n)
{
    st_set *g = st_open(TEST_DATA "/golden/forward.safetensors");
    if (!g) return NULL;
    const st_tensor *t = st_find(g, "input_ids");
    int32_t *ids = NULL;
    if (t && t->dtype == DT_I32) {
        ids = malloc(t->nbytes);
        memcpy(ids, t->data, t->nbytes);
        *n = t->numel;
    }
    st_close(g);
    return ids;
}

/* PPL of one 128-token window equals the one computed from transformers' logits. */
TEST(window_ppl_matches_transformers_logits)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    int64_t n;
    int32_t *ids = golden_ids(&n);
    REQUIRE(ids && n >= 128);
    st_set *g = st_open(TEST_DATA "/golden/forward.safetensors");
    REQUIRE(g);
    float *logits = st_load_f32(g, "logits", NULL); /* [1, 128, vocab] */
    REQUIRE(logits);
    eval_accum a;
    eval_accum_init(&a, 0);
    for (int t = 0; t < 127; t++) {
        token_score s;
        eval_score_token(logits + (int64_t)t * cfg.vocab, NULL, cfg.vocab, ids[t + 1], &s);
        eval_accum_add(&a, &s);
    }
    eval_result ref = {.windows = 1, .seq_len = 128};
    REQUIRE(eval_accum_finish(&a, &ref) == 0);
    eval_accum_free(&a);
    st_set *base = st_open(TINY);
    REQUIRE(base);
    eval_result r;
    memset(&r, 0, sizeof r);
    int rc = eval_windows_run(base, &cfg, NULL, ids, 1, 128, 8192, 0, &r);
    CHECK_MSG(rc == 0, "%s", err_msg());
    CHECK(r.tokens == 127 && !r.has_quant);
    CHECK_NEAR(r.ppl_base, ref.ppl_base, 1e-4 * ref.ppl_base);
    st_close(base);
    st_close(g);
    free(logits);
    free(ids);
    model_config_free(&cfg);
}

/* Base vs. itself through the checkpoint loader (a float checkpoint): KLD exactly 0. Also the
 * chunking: 2 windows per chunk give the same numbers as one chunk. */
TEST(base_against_itself_kld_exactly_zero)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    int64_t n;
    int32_t *ids = golden_ids(&n);
    REQUIRE(ids && n >= 256);
    st_set *base = st_open(TINY);
    qcheckpoint *q = qckpt_open(TINY, NULL, &cfg);
    REQUIRE(base && q);
    eval_result r, r1;
    int rc = eval_windows_run(base, &cfg, q, ids, 4, 64, 128, 0, &r);
    CHECK_MSG(rc == 0, "%s", err_msg());
    CHECK(r.has_quant && r.windows == 4 && r.seq_len == 64 && r.tokens == 4 * 63);
    CHECK(r.kld_mean == 0.0 && r.kld_max == 0.0 && r.kld_p99_9 == 0.0 && r.kld_median == 0.0);
    CHECK(r.same_top1 == 1.0);
    CHECK(r.ppl_base == r.ppl_quant && r.dppl_pct == 0.0);
    CHECK(r.ppl_base > 2 && r.ppl_base < 100);
    rc = eval_windows_run(base, &cfg, NULL, ids, 4, 64, 8192, 0, &r1);
    CHECK(rc == 0);
    CHECK_NEAR(r1.ppl_base, r.ppl_base, 1e-6 * r.ppl_base);
    /* several checkpoints in one pass: each result equals its single run */
    model_config cfg2;
    REQUIRE(model_config_load(TINY, &cfg2) == 0);
    qcheckpoint *recipe = qckpt_open(RECIPE, NULL, &cfg);
    REQUIRE(recipe);
    const qcheckpoint *both[2] = {recipe, q};
    eval_result rm[2], rs;
    REQUIRE(eval_windows_run_multi(base, &cfg, both, 2, ids, 4, 64, 128, 0, rm) == 0);
    REQUIRE(eval_windows_run(base, &cfg, recipe, ids, 4, 64, 128, 0, &rs) == 0);
    CHECK(rm[0].kld_mean == rs.kld_mean && rm[0].ppl_quant == rs.ppl_quant && rm[0].same_top1 == rs.same_top1);
    CHECK(rm[0].kld_mean > 0 && rm[1].kld_max == 0.0 && rm[1].ppl_base == rs.ppl_base);
    qckpt_close(recipe);
    model_config_free(&cfg2);
    qckpt_close(q);
    st_close(base);
    free(ids);
    model_config_free(&cfg);
}

/* The adapter reaches the forward pass: B = 0 changes nothing, B ≠ 0 moves the logits. */
TEST(adapter_changes_logits_only_when_nonzero)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    const char *mod = "model.language_model.layers.2.mlp.down_proj";
    char *zero = write_adapter("adapter_zero", mod, 4, 256, 768, 4.0, 0.05f, 0.0f);
    char *some = write_adapter("adapter_some", mod, 4, 256, 768, 4.0, 0.05f, 0.05f);
    REQUIRE(zero && some);
    int64_t n;
    int32_t *ids = golden_ids(&n);
    st_set *base = st_open(TINY);
    qcheckpoint *qz = qckpt_open(TINY, zero, &cfg), *qs = qckpt_open(TINY, some, &cfg);
    REQUIRE(ids && base && qz && qs);
    eval_result r;
    REQUIRE(eval_windows_run(base, &cfg, qz, ids, 2, 128, 8192, 0, &r) == 0);
    CHECK(r.kld_max == 0.0); /* (x·Aᵀ)·0 adds exact zeros */
    REQUIRE(eval_windows_run(base, &cfg, qs, ids, 2, 128, 8192, 0, &r) == 0);
    CHECK(r.kld_mean > 0.0 && r.kld_max > 0.0);
    qckpt_close(qz);
    qckpt_close(qs);
    st_close(base);
    free(ids);
    free(zero);
    free(some);
    model_config_free(&cfg);
}

static int run_eval(const char *quant, const char *adapter, int windows, eval_result *r)
{
    eval_opts o;
    eval_opts_default(&o);
    o.base = TINY;
    o.quant = quant;
    o.adapter = adapter;
    o.data = EVAL_DATA;
    o.windows = windows;
    memset(r, 0, sizeof *r);
    return eval_run(&o, r);
}

TEST(cli_usage_and_input_errors)
{
    char *a1[] = {"eval", "--base", TINY};
    CHECK(cmd_eval(3, a1) == 2); /* --data missing */
    char *a2[] = {"eval", "--base", TINY, "--data", EVAL_DATA, "--adapter", "x"};
    CHECK(cmd_eval(7, a2) == 2); /* --adapter without --quant */
    char *a6[] = {"eval", "--base", TINY, "--data", EVAL_DATA, "--adapter", "x", "--quant", RECIPE};
    CHECK(cmd_eval(9, a6) == 2); /* --adapter before its --quant */
    char *a3[] = {"eval", "--base", TINY, "--data", EVAL_DATA, "--windows", "0"};
    CHECK(cmd_eval(7, a3) == 2);
    char *a4[] = {"eval", "--base", TINY, "--data", "no/such/file.jsonl"};
    CHECK(cmd_eval(5, a4) == 1);
    char *a5[] = {"eval", "--bogus"};
    CHECK(cmd_eval(2, a5) == 2);
}

/* A --quant whose config.json describes another architecture is refused before any work. */
TEST(quant_of_another_architecture_is_refused)
{
    size_t len;
    char *text = fs_read_file(TINY "/config.json", &len);
    REQUIRE(text);
    char *hit = strstr(text, "\"hidden_size\": 256");
    REQUIRE(hit);
    memcpy(hit, "\"hidden_size\": 128", 18);
    char *d = mkdir_in_tmp("other_arch");
    REQUIRE(write_text(d, "config.json", text) == 0);
    eval_result r;
    CHECK(run_eval(d, NULL, 1, &r) < 0);
    CHECK_MSG(strstr(err_msg(), "is not a checkpoint of") != NULL, "%s", err_msg());
    free(text);
    free(d);
}

/* GPTQModel's lm_head: true: lm_head.qweight is dequantized into the head (8-bit RTN here),
 * which must change the logits relative to the same checkpoint without it. */
TEST(quantized_lm_head_is_used)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    st_set *recipe = st_open(RECIPE), *base = st_open(TINY);
    REQUIRE(recipe && base);
    char *dir = mkdir_in_tmp("lmhead_q");
    st_writer *w = st_writer_open(dir, "model", (size_t)1 << 30);
    REQUIRE(w);
    for (size_t i = 0; i < st_count(recipe); i++) {
        const st_tensor *t = st_get(recipe, i);
        if (strcmp(t->name, "lm_head.weight")) CHECK(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data) == 0);
    }
    float *W = st_load_f32(base, "lm_head.weight", NULL);
    REQUIRE(W);
    gptq_opts o;
    gptq_opts_default(&o);
    o.bits = 8;
    o.desc_act = 0;
    gptq_result gr;
    gptq_packed p;
    REQUIRE(gptq_rtn("lm_head", W, cfg.vocab, cfg.hidden, &o, &gr) == 0);
    REQUIRE(gptq_pack(&gr, GPTQ_FMT_V1, &p) == 0);
    int64_t sq[2] = {p.qw_rows, p.out}, sz[2] = {p.n_groups, p.qz_cols}, ss[2] = {p.n_groups, p.out}, sg[1] = {p.in};
    CHECK(st_writer_add(w, "lm_head.qweight", DT_I32, 2, sq, p.qweight) == 0);
    CHECK(st_writer_add(w, "lm_head.qzeros", DT_I32, 2, sz, p.qzeros) == 0);
    CHECK(st_writer_add(w, "lm_head.scales", DT_F16, 2, ss, p.scales) == 0);
    CHECK(st_writer_add(w, "lm_head.g_idx", DT_I32, 1, sg, p.g_idx) == 0);
    REQUIRE(st_writer_finish(w) == 0);
    REQUIRE(write_text(dir, "quantize_config.json",
                       "{\"bits\": 4, \"group_size\": 128, \"desc_act\": true, \"sym\": true, \"lm_head\": true,"
                       " \"checkpoint_format\": \"gptq\", \"dynamic\": {\"+:.*\\\\.self_attn\\\\..*\": {\"bits\": 8},"
                       " \"+:lm_head\": {\"bits\": 8}}}") == 0);
    qcheckpoint *qr = qckpt_open(RECIPE, NULL, &cfg), *ql = qckpt_open(dir, NULL, &cfg);
    CHECK_MSG(qr && ql, "%s", err_msg());
    int64_t n;
    int32_t *ids = golden_ids(&n);
    REQUIRE(qr && ql && ids);
    const qcheckpoint *both[2] = {qr, ql};
    eval_result r[2];
    int rc = eval_windows_run_multi(base, &cfg, both, 2, ids, 2, 128, 8192, 0, r);
    CHECK_MSG(rc == 0, "%s", err_msg());
    if (rc == 0) {
        CHECK(r[1].kld_mean != r[0].kld_mean && r[1].ppl_quant != r[0].ppl_quant);
        CHECK(fabs(r[1].kld_mean - r[0].kld_mean) < 0.5 * r[0].kld_mean); /* 8-bit head: a small change */
    }
    free(ids);
    free(W);
    gptq_result_free(&gr);
    gptq_packed_free(&p);
    qckpt_close(qr);
    qckpt_close(ql);
    st_close(recipe);
    st_close(base);
    free(dir);
    model_config_free(&cfg);
}

/* Acceptance: the full protocol (64 × 512) against transformers' numbers for the base model
 * and GPTQModel's own checkpoint of the recipe (GOLDEN.md). */
TEST_SLOW(golden_recipe_full_protocol)
{
    eval_result r;
    int rc = run_eval(RECIPE, NULL, 64, &r);
    REQUIRE(rc == 0 || (fprintf(stderr, "%s\n", err_msg()), 0));
    fprintf(stderr, "  base PPL %.4f, quant PPL %.4f (%+.2f%%), KLD mean %.5f median %.5f p99 %.4f p99.9 %.4f "
                    "max %.3f, same top-1 %.2f%%, %lld tokens\n",
            r.ppl_base, r.ppl_quant, r.dppl_pct, r.kld_mean, r.kld_median, r.kld_p99, r.kld_p99_9, r.kld_max,
            100 * r.same_top1, (long long)r.tokens);
    CHECK(r.windows == 64 && r.tokens == 64 * 511);
    CHECK_NEAR(r.ppl_base, 11.7429, 0.001 * 11.7429);
    CHECK_NEAR(r.ppl_quant, 11.9671, 0.001 * 11.9671);
    CHECK_NEAR(r.kld_mean, 0.02433, 0.01 * 0.02433);
    CHECK_NEAR(100 * r.same_top1, 91.23, 0.2);
    CHECK(r.kld_median <= r.kld_p99 && r.kld_p99 <= r.kld_p99_9 && r.kld_p99_9 <= r.kld_max);
}

/* ---------------------------------------------------------------- our own quantize outputs */

/* Writes the job text to <tmp>/<name>.yaml and runs it in-process; returns `out` (owned by the
 * caller) or NULL (out freed) on failure. */
static char *run_job(const char *name, const char *yaml, char *out)
{
    char file[128];
    snprintf(file, sizeof file, "%s.yaml", name);
    char *job_path = fs_join(test_tmpdir(), file);
    job_t job;
    memset(&job, 0, sizeof job);
    pipeline_opts o = {.quiet = 1};
    int rc = fs_write_atomic(job_path, yaml, strlen(yaml));
    if (rc == 0) rc = job_load(job_path, &job);
    if (rc == 0) {
        rc = pipeline_run(&job, &o);
        job_free(&job);
    }
    free(job_path);
    if (rc != 0) {
        fprintf(stderr, "quantize %s: %s\n", name, err_msg());
        free(out);
        return NULL;
    }
    return out;
}

/* Quantizes the tiny model with a small calibration (8 × 512 tokens of calib.jsonl) into
 * <tmp>/<name>: `method`, default bits, attention bits, EoRA rank. NULL on failure. */
static char *quantize_tiny(const char *name, const char *method, int bits, int attn_bits, int rank)
{
    char *out = fs_join(test_tmpdir(), name), yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model: " TINY "\n"
             "output: %s\n"
             "quantize:\n"
             "  method: %s\n"
             "  bits: %d\n"
             "  group_size: 128\n"
             "  desc_act: true\n"
             "  sym: true\n"
             "  rules:\n"
             "    - match: '.*\\.self_attn\\..*'\n"
             "      bits: %d\n"
             "    - match: '.*\\.linear_attn\\.in_proj_(a|b)'\n"
             "      skip: true\n"
             "eora:\n"
             "  rank: %d\n"
             "calibration:\n"
             "  sources:\n"
             "    - path: " TEST_DATA "/text/calib.jsonl\n"
             "  samples: 8\n"
             "  seq_len: 512\n",
             out, method, bits, attn_bits, rank);
    return run_job(name, yaml, out);
}

/* Our 8-bit-everywhere checkpoint (RTN on the GPTQ grid): KLD small but positive (4 windows). */
TEST(own_8bit_checkpoint_small_positive_kld)
{
    char *q8 = quantize_tiny("q8", "rtn", 8, 8, 0); /* RTN: no calibration pass needed */
    REQUIRE(q8);
    eval_result r;
    int rc = run_eval(q8, NULL, 4, &r);
    REQUIRE(rc == 0 || (fprintf(stderr, "%s\n", err_msg()), 0));
    fprintf(stderr, "  8-bit: PPL %.4f -> %.4f, KLD mean %.6f p99.9 %.5f, same top-1 %.2f%%\n", r.ppl_base, r.ppl_quant,
            r.kld_mean, r.kld_p99_9, 100 * r.same_top1);
    CHECK(r.kld_mean > 0.0 && r.kld_mean < 0.002);
    CHECK(r.same_top1 > 0.98);
    CHECK(fabs(r.dppl_pct) < 0.5);
    free(q8);
}

/* RTN-4bit > GPTQ-4bit > GPTQ-4bit + EoRA-64 in KLD (recipe bits: attention 8, the rest 4). */
TEST(kld_order_rtn_gptq_eora)
{
    char *rtn = quantize_tiny("rtn4", "rtn", 4, 8, 0), *gptq = quantize_tiny("gptq4", "gptq", 4, 8, 0),
         *eora = quantize_tiny("gptq4e", "gptq", 4, 8, 64);
    REQUIRE(rtn && gptq && eora);
    char *adapter = fs_join(eora, "eora");
    /* one shared base pass for the three checkpoints */
    eval_opts o;
    eval_opts_default(&o);
    o.base = TINY;
    o.data = EVAL_DATA;
    o.windows = 4;
    o.n_quant = 3;
    o.quants[0] = rtn;
    o.quants[1] = gptq;
    o.quants[2] = eora;
    o.adapters[2] = adapter;
    eval_result res[3];
    int rc = eval_run(&o, res);
    REQUIRE(rc == 0 || (fprintf(stderr, "%s\n", err_msg()), 0));
    eval_result rr = res[0], rg = res[1], re = res[2];
    fprintf(stderr, "  KLD mean: RTN %.5f > GPTQ %.5f > GPTQ+EoRA-64 %.5f; PPL %.4f %.4f %.4f (base %.4f)\n",
            rr.kld_mean, rg.kld_mean, re.kld_mean, rr.ppl_quant, rg.ppl_quant, re.ppl_quant, rr.ppl_base);
    CHECK(rr.kld_mean > rg.kld_mean);
    CHECK(rg.kld_mean > re.kld_mean);
    CHECK(re.kld_mean > 0.0);
    free(adapter);
    free(rtn);
    free(gptq);
    free(eora);
}

/* Quantizes the tiny model with the published recipe (configs/tiny-qwen35.yaml's rules) on
 * GPTQModel's own calibration (golden calib_input_ids, 128 × 512) into <tmp>/<name>. */
static char *quantize_recipe_golden_calib(const char *name, int rank)
{
    char *out = fs_join(test_tmpdir(), name), yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model: " TINY "\n"
             "output: %s\n"
             "quantize:\n"
             "  rules:\n"
             "    - {match: '.*\\.self_attn\\.(q|k|v|o)_proj', bits: 8}\n"
             "    - {match: '.*\\.linear_attn\\.in_proj_(a|b)', skip: true}\n"
             "    - {match: '.*\\.linear_attn\\.(in_proj_qkv|in_proj_z|out_proj)', bits: 4}\n"
             "    - {match: '.*\\.mlp\\.(gate|up|down)_proj', bits: 4}\n"
             "eora: {rank: %d}\n"
             "calibration:\n"
             "  sources: [{path: '" TEST_DATA "/golden/gptq_gptqmodel.safetensors:calib_input_ids', format: ids}]\n"
             "  samples: 128\n"
             "  seq_len: 512\n",
             out, rank);
    return run_job(name, yaml, out);
}

/* Acceptance (quantize issue): on GPTQModel's calibration and the recipe, our GPTQ alone reaches
 * at least GPTQModel's own quality (mean KLD ≤ 0.0243 on the full eval protocol, GOLDEN.md), and
 * EoRA-64 is clearly lower (we require ≤ 75% of it). */
TEST_SLOW(quality_bar_against_gptqmodel_recipe)
{
    char *gptq = quantize_recipe_golden_calib("recipe-gptq", 0), *eora = quantize_recipe_golden_calib("recipe-eora", 64);
    REQUIRE(gptq && eora);
    char *adapter = fs_join(eora, "eora");
    eval_opts o;
    eval_opts_default(&o);
    o.base = TINY;
    o.data = EVAL_DATA;
    o.windows = 64;
    o.n_quant = 2;
    o.quants[0] = gptq;
    o.quants[1] = eora;
    o.adapters[1] = adapter;
    eval_result res[2];
    int rc = eval_run(&o, res);
    REQUIRE(rc == 0 || (fprintf(stderr, "%s\n", err_msg()), 0));
    fprintf(stderr, "  recipe on golden calibration, 64 × 512: GPTQ KLD %.5f PPL %.4f top-1 %.2f%%; GPTQ+EoRA-64 KLD %.5f "
                    "PPL %.4f top-1 %.2f%% (GPTQModel: KLD 0.02433, PPL 11.9671, 91.23%%)\n",
            res[0].kld_mean, res[0].ppl_quant, 100 * res[0].same_top1, res[1].kld_mean, res[1].ppl_quant,
            100 * res[1].same_top1);
    CHECK(res[0].tokens == 64 * 511);
    CHECK(res[0].kld_mean <= 0.0243);
    CHECK(res[1].kld_mean <= 0.75 * res[0].kld_mean);
    free(adapter);
    free(gptq);
    free(eora);
}
