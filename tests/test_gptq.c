/* gptq/: Hessian accumulation, the GPTQ solver against GPTQModel's golden outputs, packing,
 * damping recovery, dead columns, bad input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gptq/gptq.h"
#include "gptq/hessian.h"
#include "gptq/pack.h"
#include "io/dtype.h"
#include "io/err.h"
#include "io/safetensors.h"
#include "tests/testlib.h"
#include "tests/testutil.h"
#include "tools/cli.h"

#define GOLDEN TEST_DATA "/golden/gptq_gptqmodel.safetensors"

/* ---- small deterministic generator ---- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { return (double)(test_xorshift64(&rng_state) >> 11) / 9007199254740992.0; }
static float nrand(void)
{
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* x [rows, n] with correlated columns and a few large-scale channels (LLM-like) */
static float *make_inputs(int rows, int n)
{
    float *x = malloc((size_t)rows * n * sizeof(float));
    for (int r = 0; r < rows; r++) {
        float common = nrand();
        for (int j = 0; j < n; j++)
            x[(size_t)r * n + j] = nrand() * (1.f + (float)(j % 7)) + 0.5f * common + (j % 13 == 0 ? 3 * nrand() : 0);
    }
    return x;
}

static float *make_weight(int out, int in)
{
    float *w = malloc((size_t)out * in * sizeof(float));
    for (size_t i = 0; i < (size_t)out * in; i++) w[i] = 0.02f * nrand();
    return w;
}

static float *hessian_of(const float *x, int rows, int n)
{
    hessian_acc acc;
    hessian_init(&acc, n);
    hessian_add(&acc, x, rows);
    float *H = malloc((size_t)n * n * sizeof(float));
    hessian_finalize(&acc, H);
    hessian_free(&acc);
    return H;
}

/* ---------------------------------------------------------------- Hessian */

TEST(hessian_matches_fp64_reference)
{
    const int n = 96, rows = 1000;
    float *x = make_inputs(rows, n);
    hessian_acc a, b;
    hessian_init(&a, n);
    hessian_init(&b, n);
    /* uneven batches, and a second accumulator merged in (as across ranks) */
    hessian_add(&a, x, 1);
    hessian_add(&a, x + (size_t)1 * n, 300);
    hessian_add(&b, x + (size_t)301 * n, 699);
    hessian_merge(&a, &b);
    CHECK(a.count == rows);
    float *H = malloc((size_t)n * n * sizeof(float));
    double *C = malloc((size_t)n * n * sizeof(double));
    hessian_finalize(&a, H);
    hessian_sum_f64(&a, C);
    double maxref = 0, maxdiff = 0, maxdiff_c = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int r = 0; r < rows; r++) s += (double)x[(size_t)r * n + i] * x[(size_t)r * n + j];
            double ref = 2.0 / rows * s;
            if (fabs(ref) > maxref) maxref = fabs(ref);
            if (fabs(H[(size_t)i * n + j] - ref) > maxdiff) maxdiff = fabs(H[(size_t)i * n + j] - ref);
            if (fabs(C[(size_t)i * n + j] - s) > maxdiff_c) maxdiff_c = fabs(C[(size_t)i * n + j] - s);
            CHECK(H[(size_t)i * n + j] == H[(size_t)j * n + i]);
        }
    printf("    hessian: max |H - ref| / max |ref| = %.3g\n", maxdiff / maxref);
    CHECK_MSG(maxdiff <= 1e-6 * maxref, "H vs fp64 reference: %g relative", maxdiff / maxref);
    CHECK_MSG(maxdiff_c <= 1e-6 * maxref * rows / 2, "sum_f64 vs reference: %g", maxdiff_c);
    hessian_reset(&a);
    CHECK(a.count == 0 && a.sum[5] == 0);
    hessian_free(&a);
    hessian_free(&b);
    free(x);
    free(H);
    free(C);
}

/* ---------------------------------------------------------------- golden */

typedef struct {
    const char *name;
    int bits, gs, desc_act, sym, static_groups, gar;
} golden_case;

static const golden_case CASES[] = {
    {"b4_g128_act", 4, 128, 1, 1, 0, 0},        {"b8_g128_act", 8, 128, 1, 1, 0, 0},
    {"b4_g128_noact", 4, 128, 0, 1, 0, 0},      {"b4_g128_gar", 4, 128, 0, 1, 0, 1},
    {"b4_g128_act_static", 4, 128, 1, 1, 1, 0}, {"b3_g128_act", 3, 128, 1, 1, 0, 0},
    {"b4_g64_asym", 4, 64, 1, 0, 0, 0},
};
static const char *LINEARS[] = {"l0.in_proj_qkv", "l3.q_proj", "l5.down_proj"};

static const st_tensor *find_t(st_set *s, const char *lin, const char *cas, const char *what)
{
    char name[256];
    if (cas)
        snprintf(name, sizeof name, "%s.%s.%s", lin, cas, what);
    else
        snprintf(name, sizeof name, "%s.%s", lin, what);
    const st_tensor *t = st_find(s, name);
    if (!t) test_fail(__FILE__, __LINE__, "golden tensor %s missing", name);
    return t;
}

static void golden_one(st_set *s, const char *lin, const golden_case *c, int mode)
{
    const st_tensor *tw = find_t(s, lin, NULL, "W"), *th = find_t(s, lin, NULL, "H_gptqmodel"),
                    *tn = find_t(s, lin, NULL, "ntokens");
    const st_tensor *tg = find_t(s, lin, c->name, "g_idx"), *tqw = find_t(s, lin, c->name, "qweight"),
                    *tqz = find_t(s, lin, c->name, "qzeros"), *tsc = find_t(s, lin, c->name, "scale"),
                    *tze = find_t(s, lin, c->name, "zero");
    if (!tw || !th || !tn || !tg || !tqw || !tqz || !tsc || !tze) return;
    const int out = (int)tw->shape[0], in = (int)tw->shape[1];
    float *W = st_load_f32(s, tw->name, NULL), *H = st_load_f32(s, th->name, NULL);
    float *gs_scale = st_load_f32(s, tsc->name, NULL), *gs_zero = st_load_f32(s, tze->name, NULL);
    int64_t ntok;
    memcpy(&ntok, tn->data, sizeof ntok);

    gptq_opts o;
    gptq_opts_default(&o);
    o.bits = c->bits;
    o.group_size = c->gs;
    o.desc_act = c->desc_act;
    o.sym = c->sym;
    o.static_groups = c->static_groups;
    o.act_group_aware = c->gar;
    o.hinv_fast = mode == 1;
    gptq_result r;
    int rc = gptq_solve(lin, W, out, in, H, ntok, &o, &r);
    CHECK_MSG(rc == 0, "%s %s: %s", lin, c->name, err_msg());
    if (rc) goto done;
    CHECK(r.n_groups == (int)tsc->shape[1]);

    /* golden packed tensors, read through our own unpacker */
    gptq_packed g = {.bits = c->bits, .in = in, .out = out, .n_groups = r.n_groups,
                     .qweight = (int32_t *)tqw->data, .qzeros = (int32_t *)tqz->data,
                     .g_idx = (int32_t *)tg->data, .qw_rows = (int)tqw->shape[0], .qz_cols = (int)tqz->shape[1]};
    const int32_t *g_idx = g.g_idx;
    int gidx_same = 1;
    for (int j = 0; j < in; j++) gidx_same &= g_idx[j] == r.g_idx[j];
    CHECK_MSG(gidx_same, "%s %s: g_idx differs", lin, c->name);

    gptq_packed p, p1;
    REQUIRE(gptq_pack(&r, GPTQ_FMT_V2, &p) == 0);
    REQUIRE(gptq_pack(&r, GPTQ_FMT_V1, &p1) == 0);
    uint8_t *gcodes = malloc((size_t)out * in), *mcodes = malloc((size_t)out * in);
    gptq_unpack_codes(&g, gcodes);
    gptq_unpack_codes(&p, mcodes);
    size_t same = 0, solver_same = 0, n = (size_t)out * in;
    for (size_t i = 0; i < n; i++) {
        same += gcodes[i] == mcodes[i];
        solver_same += mcodes[i] == r.codes[i];
    }
    double code_pct = 100.0 * same / n;
    CHECK_MSG(code_pct >= 99.9, "%s %s: codes identical %.3f%% < 99.9%%", lin, c->name, code_pct);
    CHECK_MSG(solver_same == n, "%s %s: packed codes differ from the solver's at %zu weights", lin, c->name,
              n - solver_same);

    /* scales within 1e-5 relative for >= 99% of groups */
    size_t sgood = 0, ns = (size_t)out * r.n_groups;
    for (size_t i = 0; i < ns; i++) sgood += fabs(r.scale[i] - gs_scale[i]) <= 1e-5 * fabs(gs_scale[i]);
    double scale_pct = 100.0 * sgood / ns;
    CHECK_MSG(scale_pct >= 99.0, "%s %s: scales within 1e-5: %.2f%%", lin, c->name, scale_pct);

    /* layer loss of GPTQModel's Q (from its codes, fp32 scale/zero) vs ours */
    float *Qg = malloc(n * sizeof(float));
    for (int row = 0; row < out; row++)
        for (int j = 0; j < in; j++) {
            size_t k = (size_t)row * r.n_groups + g_idx[j];
            Qg[(size_t)row * in + j] = gs_scale[k] * ((float)gcodes[(size_t)row * in + j] - gs_zero[k]);
        }
    char qname[256];
    snprintf(qname, sizeof qname, "%s.%s.Q", lin, c->name);
    const st_tensor *tq = st_find(s, qname);
    if (tq) { /* our reconstruction of GPTQModel's Q agrees with the Q it stored */
        float *Qs = st_load_f32(s, qname, NULL);
        double md = 0, mq = 0;
        for (size_t i = 0; i < n; i++) {
            md = fmax(md, fabs(Qs[i] - Qg[i]));
            mq = fmax(mq, fabs(Qs[i]));
        }
        CHECK_MSG(md <= 1e-6 * mq, "%s %s: golden Q vs codes·scale: %g", lin, c->name, md / mq);
        free(Qs);
    }
    double lg = gptq_layer_loss(W, Qg, out, in, H);
    double rel = fabs(r.loss - lg) / lg;
    CHECK_MSG(rel <= 1e-3, "%s %s: layer loss %.6g vs GPTQModel %.6g (%.4f%%)", lin, c->name, r.loss, lg, 100 * rel);

    /* packed words identical wherever the codes are */
    size_t wq_cmp = 0, wq_same = 0;
    const int bits = c->bits;
    for (int b = 0; b < in / 32; b++)
        for (int row = 0; row < out; row++) {
            int agree = 1;
            for (int k = 0; k < 32; k++)
                agree &= gcodes[(size_t)row * in + b * 32 + k] == mcodes[(size_t)row * in + b * 32 + k];
            if (!agree) continue;
            for (int t = 0; t < bits; t++) {
                size_t w = (size_t)(b * bits + t) * out + row;
                wq_cmp++;
                wq_same += g.qweight[w] == p.qweight[w];
            }
        }
    CHECK_MSG(wq_same == wq_cmp && wq_cmp > 0, "%s %s: qweight words %zu/%zu identical", lin, c->name, wq_same, wq_cmp);
    int32_t *gz = malloc((size_t)r.n_groups * out * sizeof(int32_t)), *mz = malloc((size_t)r.n_groups * out * sizeof(int32_t)),
            *mz1 = malloc((size_t)r.n_groups * out * sizeof(int32_t));
    gptq_unpack_zeros(&g, GPTQ_FMT_V2, gz);
    gptq_unpack_zeros(&p, GPTQ_FMT_V2, mz);
    gptq_unpack_zeros(&p1, GPTQ_FMT_V1, mz1);
    size_t qz_cmp = 0, qz_same = 0, v1_ok = 0;
    for (int gi = 0; gi < r.n_groups; gi++)
        for (int b = 0; b < out / 32; b++) {
            int agree = 1;
            for (int k = 0; k < 32; k++) agree &= gz[(size_t)gi * out + b * 32 + k] == mz[(size_t)gi * out + b * 32 + k];
            if (!agree) continue;
            for (int t = 0; t < bits; t++) {
                size_t w = (size_t)gi * p.qz_cols + b * bits + t;
                qz_cmp++;
                qz_same += g.qzeros[w] == p.qzeros[w];
            }
        }
    CHECK_MSG(qz_same == qz_cmp && qz_cmp > 0, "%s %s: qzeros words %zu/%zu identical", lin, c->name, qz_same, qz_cmp);
    /* v1 = v2 − constant word-wise (2/4/8 bits), field-wise for 3 bits; both decode to the same zeros */
    size_t nz = (size_t)r.n_groups * p.qz_cols;
    const uint32_t k = bits == 4 ? 0x11111111u : bits == 8 ? 0x01010101u : 0x55555555u;
    for (size_t i = 0; i < nz; i++) v1_ok += bits == 3 || (uint32_t)p1.qzeros[i] == (uint32_t)p.qzeros[i] - k;
    CHECK_MSG(v1_ok == nz, "%s %s: v1 qzeros != v2 - 0x%08x", lin, c->name, k);
    CHECK(memcmp(mz, mz1, (size_t)r.n_groups * out * sizeof(int32_t)) == 0);
    CHECK(memcmp(p.qweight, p1.qweight, (size_t)p.qw_rows * out * sizeof(int32_t)) == 0);
    if (c->sym && bits == 4) CHECK((uint32_t)p1.qzeros[0] == 0x77777777u);
    if (c->sym && bits == 8) CHECK((uint32_t)p1.qzeros[0] == 0x7f7f7f7fu);

    printf("    %-15s %-19s codes %7.3f%%  scales %7.3f%%  loss %+.4f%%  damp %.2f  avg_loss %.4g%s\n", lin, c->name,
           code_pct, scale_pct, 100 * (r.loss - lg) / lg, r.damp, r.avg_loss, mode == 1 ? "  (fast Hinv)" : "");
    free(gz);
    free(mz);
    free(mz1);
    free(Qg);
    free(gcodes);
    free(mcodes);
    gptq_packed_free(&p);
    gptq_packed_free(&p1);
    gptq_result_free(&r);
done:
    free(W);
    free(H);
    free(gs_scale);
    free(gs_zero);
}

static void golden_all(int mode)
{
    st_set *s = st_open(GOLDEN);
    REQUIRE(s);
    for (size_t l = 0; l < sizeof LINEARS / sizeof *LINEARS; l++)
        for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) golden_one(s, LINEARS[l], &CASES[c], mode);
    st_close(s);
}

TEST(gptq_golden_gptqmodel) { golden_all(0); }
/* The reversed-Cholesky factor is the same matrix up to rounding: same tolerances. */
TEST(gptq_golden_gptqmodel_fast_hinv) { golden_all(1); }

/* ---------------------------------------------------------------- properties */

static void pack_roundtrip(int bits, int sym, int out, int in, int gs)
{
    float *W = make_weight(out, in);
    gptq_opts o;
    gptq_opts_default(&o);
    o.bits = bits;
    o.sym = sym;
    o.group_size = gs;
    gptq_result r;
    REQUIRE(gptq_rtn("rt", W, out, in, &o, &r) == 0);
    /* a worst case for the 3-bit straddling fields: codes 0 and maxq everywhere somewhere */
    for (gptq_format f = GPTQ_FMT_V1; f <= GPTQ_FMT_V2; f++) {
        gptq_packed p;
        REQUIRE(gptq_pack(&r, f, &p) == 0);
        CHECK(p.qw_rows == in / 32 * bits && p.qz_cols == out / 32 * bits);
        uint8_t *codes = malloc((size_t)out * in);
        int32_t *zeros = malloc((size_t)r.n_groups * out * sizeof(int32_t));
        float *D = malloc((size_t)out * in * sizeof(float));
        gptq_unpack_codes(&p, codes);
        gptq_unpack_zeros(&p, f, zeros);
        REQUIRE(gptq_unpack_dequant(&p, f, D) == 0);
        size_t bad_codes = 0, bad_deq = 0, bad_zero = 0;
        for (int row = 0; row < out; row++)
            for (int j = 0; j < in; j++) {
                size_t i = (size_t)row * in + j;
                int g = r.g_idx[j];
                bad_codes += codes[i] != r.codes[i];
                float s16 = f16_to_f32(f32_to_f16(r.scale[(size_t)row * r.n_groups + g]));
                bad_deq += D[i] != s16 * ((float)r.codes[i] - r.zero[(size_t)row * r.n_groups + g]);
            }
        for (int gi = 0; gi < r.n_groups; gi++)
            for (int row = 0; row < out; row++)
                bad_zero += zeros[(size_t)gi * out + row] != (int32_t)r.zero[(size_t)row * r.n_groups + gi];
        CHECK_MSG(!bad_codes && !bad_deq && !bad_zero, "bits %d sym %d [%d,%d] fmt v%d: %zu codes, %zu values, %zu zeros differ",
                  bits, sym, out, in, (int)f, bad_codes, bad_deq, bad_zero);
        free(codes);
        free(zeros);
        free(D);
        gptq_packed_free(&p);
    }
    gptq_result_free(&r);
    free(W);
}

TEST(pack_roundtrip_all_bits_odd_shapes)
{
    const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++) {
        pack_roundtrip(bits[b], 1, 32, 128, 128);
        pack_roundtrip(bits[b], 0, 96, 384, 128);
        pack_roundtrip(bits[b], 0, 160, 640, 32);
        pack_roundtrip(bits[b], 1, 64, 256, -1);
    }
}

TEST(pack_rejects_bad_shape)
{
    float *W = make_weight(40, 128);
    gptq_opts o;
    gptq_opts_default(&o);
    gptq_result r;
    REQUIRE(gptq_rtn("x", W, 40, 128, &o, &r) == 0);
    gptq_packed p;
    CHECK(gptq_pack(&r, GPTQ_FMT_V1, &p) == -1);
    CHECK(strstr(err_msg(), "divisible by 32") != NULL);
    gptq_result_free(&r);
    free(W);
}

TEST(qzeros_convert_3bit_roundtrip)
{
    /* zeros 0..7 in every field, including the straddling ones: v2 → v1 → v2 is exact and
     * v1 decodes to zero − 1 mod 8 */
    gptq_packed p = {.bits = 3, .in = 32, .out = 64, .n_groups = 2, .qz_cols = 6};
    int32_t qz[12];
    int32_t z[128], back[128];
    gptq_result r = {.out = 64, .in = 32, .n_groups = 2, .bits = 3};
    float zero[128], scale[128], Q[64 * 32];
    int32_t g_idx[32] = {0};
    for (int i = 0; i < 128; i++) {
        zero[i] = (float)((i * 5 + i / 7) % 8);
        scale[i] = 1.f;
    }
    for (int i = 0; i < 64 * 32; i++) Q[i] = 0;
    r.zero = zero;
    r.scale = scale;
    r.Q = Q;
    r.g_idx = g_idx;
    gptq_packed v2;
    REQUIRE(gptq_pack(&r, GPTQ_FMT_V2, &v2) == 0);
    memcpy(qz, v2.qzeros, sizeof qz);
    p.qzeros = qz;
    gptq_qzeros_convert(qz, 12, 3, GPTQ_FMT_V2, GPTQ_FMT_V1);
    gptq_unpack_zeros(&p, GPTQ_FMT_V2, z); /* read v1 words as if v2: zero − 1 mod 8 */
    int bad = 0;
    for (int g = 0; g < 2; g++)
        for (int o = 0; o < 64; o++) bad += z[g * 64 + o] != (((int)zero[o * 2 + g] + 7) & 7);
    CHECK(bad == 0);
    gptq_unpack_zeros(&p, GPTQ_FMT_V1, back);
    bad = 0;
    for (int g = 0; g < 2; g++)
        for (int o = 0; o < 64; o++) bad += back[g * 64 + o] != (int)zero[o * 2 + g];
    CHECK(bad == 0);
    gptq_qzeros_convert(qz, 12, 3, GPTQ_FMT_V1, GPTQ_FMT_V2);
    CHECK(memcmp(qz, v2.qzeros, sizeof qz) == 0);
    gptq_packed_free(&v2);
}

/* With H = I nothing propagates (Hinv is diagonal): GPTQ must give exactly RTN's codes. */
TEST(gptq_identity_hessian_equals_rtn)
{
    const int out = 64, in = 256;
    float *W = make_weight(out, in);
    float *H = calloc((size_t)in * in, sizeof(float));
    for (int i = 0; i < in; i++) H[(size_t)i * in + i] = 1.f;
    const int gss[] = {-1, 32, 128, 256};
    for (int k = 0; k < 4; k++) {
        gptq_opts o;
        gptq_opts_default(&o);
        o.desc_act = 0;
        o.group_size = gss[k];
        o.sym = k % 2;
        gptq_result a, b;
        REQUIRE(gptq_solve("eye", W, out, in, H, 10, &o, &a) == 0);
        REQUIRE(gptq_rtn("eye", W, out, in, &o, &b) == 0);
        CHECK_MSG(memcmp(a.codes, b.codes, (size_t)out * in) == 0, "group_size %d: GPTQ(I) != RTN", gss[k]);
        CHECK(memcmp(a.scale, b.scale, (size_t)out * a.n_groups * sizeof(float)) == 0);
        CHECK(memcmp(a.g_idx, b.g_idx, (size_t)in * sizeof(int32_t)) == 0);
        gptq_result_free(&a);
        gptq_result_free(&b);
    }
    free(W);
    free(H);
}

/* On correlated inputs GPTQ beats RTN in tr(DHDᵀ) for every variant, including group sizes
 * above the block size, per-channel, GAR with a partial tail group, static groups. */
TEST(gptq_variants_beat_rtn)
{
    const int out = 64, in = 320, rows = 2000;
    float *x = make_inputs(rows, in);
    float *H = hessian_of(x, rows, in);
    float *W = make_weight(out, in);
    struct { int bits, gs, desc, sym, stat, gar; } v[] = {
        {4, 128, 1, 1, 0, 0}, {4, 256, 1, 1, 0, 0}, {3, -1, 1, 1, 0, 0}, {2, 64, 0, 0, 0, 0},
        {4, 128, 0, 1, 0, 1}, {4, 64, 1, 0, 1, 0},  {8, 32, 0, 1, 1, 1}, {4, 96, 0, 1, 0, 1},
    };
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
        gptq_opts o;
        gptq_opts_default(&o);
        o.bits = v[k].bits;
        o.group_size = v[k].gs;
        o.desc_act = v[k].desc;
        o.sym = v[k].sym;
        o.static_groups = v[k].stat;
        o.act_group_aware = v[k].gar;
        gptq_result a, b;
        REQUIRE(gptq_solve("var", W, out, in, H, rows, &o, &a) == 0);
        REQUIRE(gptq_rtn("var", W, out, in, &o, &b) == 0);
        double lr = gptq_layer_loss(W, b.Q, out, in, H);
        CHECK_MSG(a.loss < lr, "variant %zu: GPTQ loss %g >= RTN %g", k, a.loss, lr);
        CHECK(a.damp == 0.05 && a.diag_floor == 0 && a.avg_loss > 0);
        /* every code reproduces Q on the stored grid, g_idx in range */
        size_t bad = 0;
        for (int row = 0; row < out; row++)
            for (int j = 0; j < in; j++) {
                int g = a.g_idx[j];
                bad += g < 0 || g >= a.n_groups;
                if (g < 0 || g >= a.n_groups) continue;
                float s = a.scale[(size_t)row * a.n_groups + g], z = a.zero[(size_t)row * a.n_groups + g];
                bad += a.Q[(size_t)row * in + j] != s * ((float)a.codes[(size_t)row * in + j] - z);
            }
        CHECK_MSG(bad == 0, "variant %zu: %zu weights off their grid", k, bad);
        gptq_result_free(&a);
        gptq_result_free(&b);
    }
    free(x);
    free(H);
    free(W);
}

TEST(gptq_non_pd_hessian_recovers_with_damp)
{
    /* diagonal with one negative entry: needs damp·mean > 0.1, i.e. damp 0.11 */
    const int n = 64, out = 32;
    float *H = calloc((size_t)n * n, sizeof(float));
    for (int i = 0; i < n; i++) H[(size_t)i * n + i] = 1.f;
    H[(size_t)(n - 1) * n + n - 1] = -0.1f;
    float *W = make_weight(out, n);
    gptq_opts o;
    gptq_opts_default(&o);
    gptq_result r;
    REQUIRE(gptq_solve("nonpd", W, out, n, H, 1, &o, &r) == 0);
    printf("    damp used %.5f, floor %g\n", r.damp, r.diag_floor);
    CHECK_NEAR(r.damp, 0.11, 1e-9);
    CHECK(r.diag_floor == 0);
    gptq_result_free(&r);

    /* mean(diag) < 0: no damp helps; the diagonal floor (1e-6·max|diag|) does */
    for (int i = 0; i < n; i++) H[(size_t)i * n + i] = i == 0 ? 1.f : -0.02f;
    REQUIRE(gptq_solve("floor", W, out, n, H, 1, &o, &r) == 0);
    printf("    damp used %.5f, floor %g\n", r.damp, r.diag_floor);
    CHECK_NEAR(r.diag_floor, 1e-6, 1e-12);
    CHECK_NEAR(r.damp, 0.05, 1e-12);
    gptq_result_free(&r);

    /* indefinite beyond any damp or floor: a clear error naming the module */
    for (int i = 0; i < n; i++) H[(size_t)i * n + i] = 1.f;
    H[1] = H[n] = 3.f;
    CHECK(gptq_solve("layers.7.mlp.up_proj", W, out, n, H, 1, &o, &r) == -1);
    CHECK(strstr(err_msg(), "layers.7.mlp.up_proj") && strstr(err_msg(), "positive definite"));
    CHECK(r.Q == NULL);
    free(H);
    free(W);
}

TEST(gptq_dead_columns)
{
    const int out = 32, in = 128, rows = 500;
    float *x = make_inputs(rows, in);
    const int dead[] = {0, 17, 127};
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < 3; k++) x[(size_t)r * in + dead[k]] = 0;
    float *H = hessian_of(x, rows, in);
    float *W = make_weight(out, in);
    for (int desc = 0; desc < 2; desc++) {
        gptq_opts o;
        gptq_opts_default(&o);
        o.desc_act = desc;
        gptq_result r;
        REQUIRE(gptq_solve("dead", W, out, in, H, rows, &o, &r) == 0);
        CHECK(r.dead_columns == 3);
        int ok = 1;
        for (int row = 0; row < out; row++)
            for (int k = 0; k < 3; k++) ok &= r.Q[(size_t)row * in + dead[k]] == 0.f;
        CHECK_MSG(ok, "dead columns must quantize to 0");
        CHECK(isfinite(r.loss) && isfinite(r.avg_loss));
        gptq_result_free(&r);
    }
    free(x);
    free(H);
    free(W);
}

TEST(gptq_rejects_non_finite_and_bad_options)
{
    const int out = 32, in = 64;
    float *W = make_weight(out, in);
    float *H = calloc((size_t)in * in, sizeof(float));
    for (int i = 0; i < in; i++) H[(size_t)i * in + i] = 1.f;
    gptq_opts o;
    gptq_opts_default(&o);
    gptq_result r;
    W[5 * in + 3] = NAN;
    CHECK(gptq_solve("model.layers.2.self_attn.k_proj", W, out, in, H, 1, &o, &r) == -1);
    CHECK(strstr(err_msg(), "model.layers.2.self_attn.k_proj") && strstr(err_msg(), "weight") &&
          strstr(err_msg(), "[5, 3]"));
    CHECK(gptq_rtn("m", W, out, in, &o, &r) == -1);
    W[5 * in + 3] = 0.f;
    H[7 * in + 9] = INFINITY;
    CHECK(gptq_solve("mod.x", W, out, in, H, 1, &o, &r) == -1);
    CHECK(strstr(err_msg(), "mod.x") && strstr(err_msg(), "Hessian"));
    H[7 * in + 9] = 0.f;
    o.bits = 5;
    CHECK(gptq_solve("mod.x", W, out, in, H, 1, &o, &r) == -1);
    CHECK(strstr(err_msg(), "bits"));
    gptq_opts_default(&o);
    o.damp_percent = 1.5;
    CHECK(gptq_solve("mod.x", W, out, in, H, 1, &o, &r) == -1);
    o.damp_percent = 0.05;
    REQUIRE(gptq_solve("mod.x", W, out, in, H, 1, &o, &r) == 0);
    gptq_result_free(&r);
    free(W);
    free(H);
}

/* ---------------------------------------------------------------- CLI */

TEST(cli_solve_writes_gptq_tensors)
{
    char out[512], wspec[256], hspec[256];
    snprintf(out, sizeof out, "%s/solve.safetensors", test_tmpdir());
    snprintf(wspec, sizeof wspec, "%s:l3.q_proj.W", GOLDEN);
    snprintf(hspec, sizeof hspec, "%s:l3.q_proj.H_gptqmodel", GOLDEN);
    char *argv[] = {"solve", "--weight", wspec, "--hessian", hspec, "--bits", "4", "--group-size", "128",
                    "--desc-act", "--sym", "--nsamples", "65536", "-o", out, NULL};
    REQUIRE(cmd_solve(15, argv) == 0);
    st_set *s = st_open(out), *g = st_open(GOLDEN);
    REQUIRE(s && g);
    const st_tensor *qw = st_find(s, "qweight"), *qz = st_find(s, "qzeros"), *sc = st_find(s, "scales"),
                    *gi = st_find(s, "g_idx"), *Q = st_find(s, "Q"), *scale = st_find(s, "scale"), *zero = st_find(s, "zero");
    REQUIRE(qw && qz && sc && gi && Q && scale && zero);
    CHECK(qw->dtype == DT_I32 && qw->shape[0] == 32 && qw->shape[1] == 512);
    CHECK(qz->dtype == DT_I32 && qz->shape[0] == 2 && qz->shape[1] == 64);
    CHECK(sc->dtype == DT_F16 && sc->shape[0] == 2 && sc->shape[1] == 512);
    CHECK(gi->dtype == DT_I32 && gi->shape[0] == 256);
    CHECK(Q->dtype == DT_F32 && Q->shape[0] == 512 && Q->shape[1] == 256);
    CHECK(scale->dtype == DT_F32 && scale->shape[0] == 512 && scale->shape[1] == 2);
    /* default format gptq (v1): symmetric 4-bit zeros on disk are 0x77777777 */
    CHECK((uint32_t)((const int32_t *)qz->data)[0] == 0x77777777u);
    const st_tensor *gq = st_find(g, "l3.q_proj.b4_g128_act.qweight"), *gg = st_find(g, "l3.q_proj.b4_g128_act.g_idx");
    REQUIRE(gq && gg);
    CHECK(memcmp(qw->data, gq->data, qw->nbytes) == 0); /* 100% identical codes on this linear */
    CHECK(memcmp(gi->data, gg->data, gi->nbytes) == 0);
    const char *damp = st_metadata(s, "damp"), *al = st_metadata(s, "avg_loss");
    CHECK(damp && !strcmp(damp, "0.05000"));
    CHECK(al && atof(al) > 0 && atof(al) < 1e-3);
    st_close(s);
    st_close(g);

    /* usage errors exit 2, data errors exit 1 and leave no output */
    char out2[512];
    snprintf(out2, sizeof out2, "%s/bad.safetensors", test_tmpdir());
    char *bad_bits[] = {"solve", "--weight", wspec, "--hessian", hspec, "--bits", "5", "-o", out2, NULL};
    CHECK(cmd_solve(9, bad_bits) == 2);
    char hwrong[256];
    snprintf(hwrong, sizeof hwrong, "%s:l5.down_proj.H_gptqmodel", GOLDEN);
    char *bad_shape[] = {"solve", "--weight", wspec, "--hessian", hwrong, "-o", out2, NULL};
    CHECK(cmd_solve(7, bad_shape) == 1);
    CHECK(strstr(err_msg(), "l5.down_proj.H_gptqmodel") && strstr(err_msg(), "768"));
    FILE *f = fopen(out2, "rb");
    CHECK(f == NULL);
    if (f) fclose(f);
}

/* The solver's out/in are ints: a weight with a dimension past INT_MAX (a sparse 4 GiB file, the
 * data never read) is refused by name instead of being truncated into a buffer that
 * st_to_f32 would overrun. */
TEST(cli_solve_refuses_dimension_over_int_max)
{
    char *w = test_tmp_path("wide.safetensors"), wspec[600], hspec[256], out[512];
    const uint64_t in = 1ull << 31; /* one more than INT_MAX */
    char json[256];
    snprintf(json, sizeof json, "{\"W\":{\"dtype\":\"BF16\",\"shape\":[1,%llu],\"data_offsets\":[0,%llu]}}",
             (unsigned long long)in, (unsigned long long)(2 * in));
    REQUIRE(test_write_sparse_st(w, json, 2 * in, NULL, 0) == 0);
    snprintf(wspec, sizeof wspec, "%s:W", w);
    snprintf(hspec, sizeof hspec, "%s:l3.q_proj.H_gptqmodel", GOLDEN);
    snprintf(out, sizeof out, "%s/wide-out.safetensors", test_tmpdir());
    char *argv[] = {"solve", "--weight", wspec, "--hessian", hspec, "-o", out, NULL};
    err_clear();
    CHECK(cmd_solve(7, argv) == 1);
    CHECK_MSG(strstr(err_msg(), "[1, 2147483648]") && strstr(err_msg(), "over 2147483647"), "%s", err_msg());
    unlink(w);
    free(w);
}
