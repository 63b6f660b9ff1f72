/* eora/: EoRA against GPTQModel's golden B·A, rank-deficient covariances, randomized SVD. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eora/eora.h"
#include "gptq/pack.h"
#include "io/err.h"
#include "io/safetensors.h"
#include "tests/testlib.h"
#include "tests/testutil.h"
#include "tools/cli.h"

#define GOLDEN TEST_DATA "/golden/gptq_gptqmodel.safetensors"

static const char *LINEARS[] = {"l0.in_proj_qkv", "l3.q_proj", "l5.down_proj"};

/* ---------- helpers ---------- */

static double *to_f64(const float *x, size_t n)
{
    double *d = xmalloc(sizeof *d * n);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* tr(E C Eᵀ) in fp64, E = W − Wq − B·A (B·A omitted when BA is NULL). */
static double direct_loss(const float *W, const float *Wq, const double *BA, int out, int in, const double *C)
{
    size_t on = (size_t)out * in;
    double *E = xmalloc(sizeof *E * on), *T = xmalloc(sizeof *T * on), loss = 0;
    for (size_t i = 0; i < on; i++) E[i] = (double)W[i] - (double)Wq[i] - (BA ? BA[i] : 0.0);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, in, 1.0, E, in, C, in, 0.0, T, in);
    for (size_t i = 0; i < on; i++) loss += E[i] * T[i];
    free(E);
    free(T);
    return loss;
}

/* B·A in fp64 from fp32 factors B [out, r], A [r, in]. */
static double *product(const float *B, const float *A, int out, int r, int in)
{
    double *b = to_f64(B, (size_t)out * r), *a = to_f64(A, (size_t)r * in);
    double *p = xmalloc(sizeof *p * (size_t)out * in);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, 1.0, b, r, a, in, 0.0, p, in);
    free(a);
    free(b);
    return p;
}

static double maxnorm_rel(const double *x, const double *ref, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs(x[i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    return d / m;
}

static uint64_t lcg_state = 88172645463325252ull;
static double urand(void) /* uniform in [-1, 1) */
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) * 0x1.0p-52 - 1.0;
}


/* Diagnostic for a B·A mismatch: the rank-r EoRA in fp64 throughout (dsyevd, dgesdd), with
 * σ_r and σ_{r+1} of ΔW·S. When σ_r ≈ σ_{r+1} the rank-r subspace is fixed only up to the
 * rounding of whichever fp32 SVD computed it. */
static double *exact_fp64_ba(const float *W, const float *Wq, int out, int in, const double *C, int r,
                             double *sr, double *sr1)
{
    size_t nn = (size_t)in * in, on = (size_t)out * in;
    int k = out < in ? out : in;
    double *a = xmalloc(sizeof *a * nn), *w = xmalloc(sizeof *w * in), *M = xmalloc(sizeof *M * on),
           *dW = xmalloc(sizeof *dW * on), *U = xmalloc(sizeof *U * (size_t)out * k), *sv = xmalloc(sizeof *sv * k),
           *Vt = xmalloc(sizeof *Vt * (size_t)k * in), *T = xmalloc(sizeof *T * (size_t)r * in),
           *T2 = xmalloc(sizeof *T2 * (size_t)r * in), *BA = xmalloc(sizeof *BA * on);
    memcpy(a, C, sizeof *a * nn);
    LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', in, a, in, w); /* rows of a = eigenvectors */
    for (size_t i = 0; i < on; i++) dW[i] = (double)(W[i] - Wq[i]);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out, in, in, 1.0, dW, in, a, in, 0.0, M, in);
    for (int i = 0; i < out; i++)
        for (int j = 0; j < in; j++) M[(size_t)i * in + j] *= sqrt(fmax(w[j], 0.0));
    LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', in, out, M, in, sv, Vt, in, U, k);
    *sr = sv[r - 1];
    *sr1 = r < k ? sv[r] : 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < in; j++) T[(size_t)i * in + j] = Vt[(size_t)i * in + j] * sv[i] / sqrt(w[j]);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, in, in, 1.0, T, in, a, in, 0.0, T2, in);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, 1.0, U, k, T2, in, 0.0, BA, in);
    free(a); free(w); free(M); free(dW); free(U); free(sv); free(Vt); free(T); free(T2);
    return BA;
}

/* ---------- golden ---------- */

typedef struct {
    st_set *g;
    float *W, *Wq;
    double *C;
    int out, in;
} golden_case;

static void *copy_tensor(const st_set *g, const char *lin, const char *qcase, const char *what, dtype_t dt,
                         int64_t *numel)
{
    char name[160];
    snprintf(name, sizeof name, "%s.%s.%s", lin, qcase, what);
    const st_tensor *t = st_find(g, name);
    if (!t || t->dtype != dt) {
        err_set("%s: missing or not %s", name, dtype_name(dt));
        return NULL;
    }
    void *p = xmalloc(t->nbytes);
    memcpy(p, t->data, t->nbytes);
    if (numel) *numel = t->numel;
    return p;
}

/* b3 has no golden Q: dequantize GPTQModel's packed tensors (v2 zeros). GPTQModel's EoRA runs
 * on the solver's fp32 Q = scale·(code − zero), so the codes come from the packed words
 * (gptq_unpack_codes) and scale/zero from the fp32 golden. The checkpoint-loader dequantization
 * (gptq_unpack_dequant, fp16 scales) must agree with it to fp16 rounding of the scales; used as
 * Wq instead it would move B·A by 3–8e-3 (loss by < 3e-6) — measured, see docs/eora.md. */
static float *dequant_b3(const st_set *g, const char *lin, const char *qcase, int out, int in)
{
    gptq_packed p = {0};
    int64_t n_sc = 0;
    p.bits = 3;
    p.in = in;
    p.out = out;
    p.qweight = copy_tensor(g, lin, qcase, "qweight", DT_I32, NULL);
    p.qzeros = copy_tensor(g, lin, qcase, "qzeros", DT_I32, NULL);
    p.scales = copy_tensor(g, lin, qcase, "scales_f16", DT_F16, &n_sc);
    p.g_idx = copy_tensor(g, lin, qcase, "g_idx", DT_I32, NULL);
    p.n_groups = (int)(n_sc / out);
    p.qw_rows = in * 3 / 32;
    p.qz_cols = out * 3 / 32;
    char name[160];
    snprintf(name, sizeof name, "%s.%s.scale", lin, qcase);
    float *sc = st_load_f32(g, name, NULL);
    snprintf(name, sizeof name, "%s.%s.zero", lin, qcase);
    float *zr = st_load_f32(g, name, NULL);
    float *W = NULL;
    if (p.qweight && p.qzeros && p.scales && p.g_idx && sc && zr) {
        W = xmalloc(sizeof *W * (size_t)out * in);
        float *W16 = xmalloc(sizeof *W16 * (size_t)out * in);
        uint8_t *codes = xmalloc((size_t)out * in);
        gptq_unpack_codes(&p, codes);
        for (int o = 0; o < out; o++)
            for (int j = 0; j < in; j++) {
                size_t gi = (size_t)o * p.n_groups + p.g_idx[j];
                W[(size_t)o * in + j] = sc[gi] * ((float)codes[(size_t)o * in + j] - zr[gi]);
            }
        int rc = gptq_unpack_dequant(&p, GPTQ_FMT_V2, W16);
        CHECK_MSG(rc == 0, "%s", err_msg());
        double worst = 0;
        for (size_t i = 0; rc == 0 && i < (size_t)out * in; i++)
            worst = fmax(worst, fabs(W16[i] - W[i]) / fmax(fabs(W[i]), 1e-30));
        CHECK_MSG(worst <= 1.0 / 2048, "%s %s: fp16-scale dequantization off by %.3g relative", lin, qcase, worst);
        free(codes);
        free(W16);
    }
    free(sc);
    free(zr);
    gptq_packed_free(&p);
    return W;
}

static int golden_load(golden_case *c, const char *lin, const char *qcase)
{
    memset(c, 0, sizeof *c);
    c->g = st_open(GOLDEN);
    if (!c->g) return -1;
    char name[160];
    const st_tensor *t;
    snprintf(name, sizeof name, "%s.W", lin);
    c->W = st_load_f32(c->g, name, &t);
    if (!c->W) return -1;
    c->out = (int)t->shape[0];
    c->in = (int)t->shape[1];
    if (strstr(qcase, "b3_")) {
        c->Wq = dequant_b3(c->g, lin, qcase, c->out, c->in);
    } else {
        snprintf(name, sizeof name, "%s.%s.Q", lin, qcase);
        c->Wq = st_load_f32(c->g, name, NULL);
    }
    snprintf(name, sizeof name, "%s.eora_cov", lin);
    float *cf = st_load_f32(c->g, name, NULL);
    if (!c->Wq || !cf) return -1;
    c->C = to_f64(cf, (size_t)c->in * c->in);
    free(cf);
    return 0;
}

static void golden_free(golden_case *c)
{
    free(c->W);
    free(c->Wq);
    free(c->C);
    if (c->g) st_close(c->g);
}

/* For one linear and quantization case: both methods × ranks {16, 64} against GPTQModel's
 * B·A (max-norm 2e-3) and its corrected loss (0.1%). */
static void golden_check(const char *lin, const char *qcase)
{
    golden_case c;
    int rc = golden_load(&c, lin, qcase);
    CHECK_MSG(rc == 0, "%s", err_msg());
    if (rc) {
        golden_free(&c);
        return;
    }
    const int ranks[] = {16, 64};
    double loss_q = direct_loss(c.W, c.Wq, NULL, c.out, c.in, c.C);
    for (int ri = 0; ri < 2; ri++) {
        int r = ranks[ri];
        char na[160], nb[160];
        snprintf(na, sizeof na, "%s.%s.eora_r%d.A", lin, qcase, r);
        snprintf(nb, sizeof nb, "%s.%s.eora_r%d.B", lin, qcase, r);
        float *ra = st_load_f32(c.g, na, NULL), *rb = st_load_f32(c.g, nb, NULL);
        CHECK_MSG(ra && rb, "%s", err_msg());
        if (!ra || !rb) {
            free(ra);
            free(rb);
            continue;
        }
        double *ref = product(rb, ra, c.out, r, c.in);
        double loss_ref = direct_loss(c.W, c.Wq, ref, c.out, c.in, c.C);
        for (int m = 0; m < 2; m++) {
            eora_opts o;
            eora_opts_default(&o);
            o.rank = r;
            o.method = m ? EORA_CHOLESKY : EORA_EIGEN;
            eora_result res;
            if (eora_compute(lin, c.W, c.Wq, c.out, c.in, c.C, &o, &res)) {
                CHECK_MSG(0, "%s", err_msg());
                continue;
            }
            double *ba = product(res.B, res.A, c.out, r, c.in);
            double rel = maxnorm_rel(ba, ref, (size_t)c.out * c.in);
            double loss = direct_loss(c.W, c.Wq, ba, c.out, c.in, c.C);
            printf("    %s %s r%d %-8s: B·A max-rel %.2e, loss %.6g → %.6g (ref %.6g, %+.2e), discarded %d\n",
                   lin, qcase, r, eora_method_name(res.used), rel, loss_q, loss, loss_ref,
                   (loss - loss_ref) / loss_ref, res.discarded);
            if (rel > 2e-3) {
                /* GOLDEN.md's 2e-3 presumes the rank-r subspace is well determined. When
                 * σ_r ≈ σ_{r+1} (relative gap < 1e-3) it is fixed only up to the rounding of
                 * whichever fp32 SVD computed it (GPTQModel's LAPACK vs ours): then the reference
                 * is the fp64-exact EoRA, held to the same 2e-3, and the loss (checked below) must
                 * still match GPTQModel's to 0.1%. Any other mismatch fails. */
                double sr, sr1;
                double *ex = exact_fp64_ba(c.W, c.Wq, c.out, c.in, c.C, r, &sr, &sr1);
                double gap = (sr - sr1) / sr, rel_exact = maxnorm_rel(ba, ex, (size_t)c.out * c.in);
                int tie = gap < 1e-3;
                CHECK_MSG(tie && rel_exact <= 2e-3,
                          "%s %s r%d %s: B·A max-rel %.3g > 2e-3 (σ_%d %.6g, σ_%d %.6g, gap %.1e relative; fp64-exact "
                          "B·A is %.3g from GPTQModel's and %.3g from ours)",
                          lin, qcase, r, eora_method_name(o.method), rel, r, sr, r + 1, sr1, gap,
                          maxnorm_rel(ex, ref, (size_t)c.out * c.in), rel_exact);
                if (tie && rel_exact <= 2e-3)
                    printf("    (near-tie σ_%d/σ_%d, gap %.1e: GPTQModel's fp32 SVD rotated the subspace by %.2e; "
                           "ours is %.2e from fp64-exact)\n", r, r + 1, gap, maxnorm_rel(ex, ref, (size_t)c.out * c.in),
                           rel_exact);
                free(ex);
            }
            CHECK_MSG(fabs(loss - loss_ref) <= 1e-3 * loss_ref, "%s %s r%d %s: loss %.8g vs GPTQModel %.8g", lin,
                      qcase, r, eora_method_name(o.method), loss, loss_ref);
            CHECK(res.used == o.method && !res.fallback);
            /* The module's own loss report agrees with the direct evaluation. */
            CHECK_MSG(fabs(res.loss_before - loss_q) <= 1e-4 * loss_q, "loss_before %.8g vs %.8g",
                      res.loss_before, loss_q);
            CHECK_MSG(fabs(res.loss_after - loss) <= 1e-4 * loss, "loss_after %.8g vs %.8g", res.loss_after, loss);
            CHECK(res.loss_after < res.loss_before);
            free(ba);
            eora_result_free(&res);
        }
        free(ref);
        free(ra);
        free(rb);
    }
    golden_free(&c);
}

TEST(eora_golden_l0_in_proj_qkv_b4) { golden_check(LINEARS[0], "b4_g128_act"); }
TEST(eora_golden_l0_in_proj_qkv_b8) { golden_check(LINEARS[0], "b8_g128_act"); }
TEST(eora_golden_l3_q_proj_b4) { golden_check(LINEARS[1], "b4_g128_act"); }
TEST(eora_golden_l3_q_proj_b8) { golden_check(LINEARS[1], "b8_g128_act"); }
TEST(eora_golden_l5_down_proj_b4) { golden_check(LINEARS[2], "b4_g128_act"); }
TEST(eora_golden_l5_down_proj_b8) { golden_check(LINEARS[2], "b8_g128_act"); }
TEST(eora_golden_l0_in_proj_qkv_b3) { golden_check(LINEARS[0], "b3_g128_act"); }
TEST(eora_golden_l3_q_proj_b3) { golden_check(LINEARS[1], "b3_g128_act"); }
TEST(eora_golden_l5_down_proj_b3) { golden_check(LINEARS[2], "b3_g128_act"); }

/* Randomized SVD on real data: corrected loss within 0.5% of the exact SVD's, both methods. */
TEST(eora_randomized_svd_golden_loss)
{
    for (int li = 0; li < 3; li++) {
        golden_case c;
        int rc = golden_load(&c, LINEARS[li], "b4_g128_act");
        CHECK_MSG(rc == 0, "%s", err_msg());
        for (int m = 0; rc == 0 && m < 2; m++) {
            const int ranks[] = {16, 64};
            for (int ri = 0; ri < 2; ri++) {
                eora_opts o;
                eora_opts_default(&o);
                o.rank = ranks[ri];
                o.method = m ? EORA_CHOLESKY : EORA_EIGEN;
                eora_result ex, rz;
                REQUIRE(eora_compute(LINEARS[li], c.W, c.Wq, c.out, c.in, c.C, &o, &ex) == 0);
                o.svd = EORA_SVD_RANDOMIZED;
                REQUIRE(eora_compute(LINEARS[li], c.W, c.Wq, c.out, c.in, c.C, &o, &rz) == 0);
                double d = (rz.loss_after - ex.loss_after) / ex.loss_after;
                printf("    %s r%d %-8s: loss exact %.6g randomized %.6g (%+.2e)\n", LINEARS[li], o.rank,
                       eora_method_name(o.method), ex.loss_after, rz.loss_after, d);
                CHECK_MSG(d <= 5e-3 && d >= -1e-4, "%s r%d: randomized loss %+.3g vs exact", LINEARS[li],
                          o.rank, d);
                eora_result_free(&ex);
                eora_result_free(&rz);
            }
        }
        golden_free(&c);
    }
}

/* ---------- synthetic ---------- */

/* A layer with C = XᵀX from `tokens` random rows; Wq = W rounded on a coarse grid. */
typedef struct {
    int out, in;
    float *W, *Wq;
    double *C;
} synth;

static void synth_make(synth *s, int out, int in, int tokens)
{
    s->out = out;
    s->in = in;
    s->W = xmalloc(sizeof *s->W * (size_t)out * in);
    s->Wq = xmalloc(sizeof *s->Wq * (size_t)out * in);
    for (size_t i = 0; i < (size_t)out * in; i++) {
        s->W[i] = (float)urand();
        s->Wq[i] = roundf(s->W[i] * 4.f) / 4.f;
    }
    float *X = xmalloc(sizeof *X * (size_t)tokens * in);
    for (size_t i = 0; i < (size_t)tokens * in; i++) X[i] = (float)urand() * (1.0f + (float)(i % in) / 16.f);
    double *Xd = to_f64(X, (size_t)tokens * in);
    s->C = xmalloc(sizeof *s->C * (size_t)in * in);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, in, tokens, 1.0, Xd, in, Xd, in, 0.0, s->C, in);
    free(X);
    free(Xd);
}

static void synth_free(synth *s)
{
    free(s->W);
    free(s->Wq);
    free(s->C);
}

/* 10 tokens for a 256-wide input: C has rank 10. Both methods take the eigen path with the
 * cutoff (Cholesky reports its fallback); rank ≥ 10 removes the whole C-visible error. */
TEST(eora_rank_deficient_covariance)
{
    synth s;
    synth_make(&s, 64, 256, 10);
    for (int m = 0; m < 2; m++) {
        for (int r = 4; r <= 16; r += 12) {
            eora_opts o;
            eora_opts_default(&o);
            o.rank = r;
            o.method = m ? EORA_CHOLESKY : EORA_EIGEN;
            eora_result res;
            int rc = eora_compute("synthetic", s.W, s.Wq, s.out, s.in, s.C, &o, &res);
            CHECK_MSG(rc == 0, "%s", err_msg());
            if (rc) continue;
            CHECK(res.used == EORA_EIGEN);
            CHECK(res.fallback == (o.method == EORA_CHOLESKY));
            CHECK_MSG(res.discarded == 256 - 10, "discarded %d", res.discarded);
            CHECK(res.cutoff > 0);
            double *ba = product(res.B, res.A, s.out, r, s.in);
            double before = direct_loss(s.W, s.Wq, NULL, s.out, s.in, s.C);
            double after = direct_loss(s.W, s.Wq, ba, s.out, s.in, s.C);
            double maxab = 0;
            for (size_t i = 0; i < (size_t)s.out * s.in; i++) maxab = fmax(maxab, fabs(ba[i]));
            CHECK_MSG(maxab < 10.0, "B·A blew up: max %.3g", maxab); /* pseudo-inverse, not 1/0 */
            CHECK_NEAR(res.loss_before, before, 1e-5 * before);
            if (r >= 10)
                CHECK_MSG(after <= 1e-8 * before, "rank %d: loss %.3g of %.3g left", r, after, before);
            else
                CHECK_MSG(after < 0.9 * before && fabs(res.loss_after - after) <= 1e-4 * before,
                          "rank %d: loss %.6g (reported %.6g) of %.6g", r, after, res.loss_after, before);
            free(ba);
            eora_result_free(&res);
        }
    }
    synth_free(&s);
}

/* An indefinite covariance (one negative eigenvalue): Cholesky falls back; the eigen path
 * drops the negative direction, and the reported loss is tr(E C Eᵀ) for C as given. */
TEST(eora_indefinite_covariance)
{
    synth s;
    synth_make(&s, 32, 48, 200);
    for (int i = 0; i < s.in; i++) s.C[(size_t)i * s.in + i] -= 0.0; /* keep symmetric */
    /* C ← C − (λ_min-ish shift) along a random direction v: C − α v vᵀ with α large. */
    double v[48], nv = 0, alpha = 0;
    for (int i = 0; i < s.in; i++) {
        v[i] = urand();
        nv += v[i] * v[i];
        alpha = fmax(alpha, s.C[(size_t)i * s.in + i]);
    }
    for (int i = 0; i < s.in; i++)
        for (int j = 0; j < s.in; j++) s.C[(size_t)i * s.in + j] -= 2 * alpha * v[i] * v[j] / nv;
    for (int m = 0; m < 2; m++) {
        eora_opts o;
        eora_opts_default(&o);
        o.rank = 8;
        o.method = m ? EORA_CHOLESKY : EORA_EIGEN;
        eora_result res;
        int rc = eora_compute("indefinite", s.W, s.Wq, s.out, s.in, s.C, &o, &res);
        CHECK_MSG(rc == 0, "%s", err_msg());
        if (rc) continue;
        CHECK(res.used == EORA_EIGEN && res.discarded >= 1);
        double before = direct_loss(s.W, s.Wq, NULL, s.out, s.in, s.C);
        double *ba = product(res.B, res.A, s.out, o.rank, s.in);
        double after = direct_loss(s.W, s.Wq, ba, s.out, s.in, s.C);
        CHECK_NEAR(res.loss_before, before, 1e-5 * fabs(before));
        CHECK_NEAR(res.loss_after, after, 1e-5 * fabs(before));
        free(ba);
        eora_result_free(&res);
    }
    synth_free(&s);
}

/* For PD C, B·A does not depend on the square root: eigen and Cholesky agree. */
TEST(eora_methods_agree_on_pd_covariance)
{
    synth s;
    synth_make(&s, 96, 80, 400);
    eora_opts o;
    eora_opts_default(&o);
    o.rank = 12;
    eora_result re, rc_;
    o.method = EORA_EIGEN;
    REQUIRE(eora_compute("pd", s.W, s.Wq, s.out, s.in, s.C, &o, &re) == 0);
    o.method = EORA_CHOLESKY;
    REQUIRE(eora_compute("pd", s.W, s.Wq, s.out, s.in, s.C, &o, &rc_) == 0);
    CHECK(rc_.used == EORA_CHOLESKY && !rc_.fallback && re.discarded == 0);
    double *a = product(re.B, re.A, s.out, o.rank, s.in), *b = product(rc_.B, rc_.A, s.out, o.rank, s.in);
    double rel = maxnorm_rel(b, a, (size_t)s.out * s.in);
    CHECK_MSG(rel < 1e-4, "eigen vs cholesky B·A max-rel %.3g", rel);
    CHECK_NEAR(re.loss_after, rc_.loss_after, 1e-5 * re.loss_before);
    /* Optimality: no rank-12 correction beats it; perturbing B raises the loss. */
    double best = direct_loss(s.W, s.Wq, b, s.out, s.in, s.C);
    for (size_t i = 0; i < (size_t)s.out * o.rank; i++) rc_.B[i] *= 1.01f;
    double *p = product(rc_.B, rc_.A, s.out, o.rank, s.in);
    CHECK(direct_loss(s.W, s.Wq, p, s.out, s.in, s.C) > best);
    free(p);
    free(a);
    free(b);
    eora_result_free(&re);
    eora_result_free(&rc_);
    synth_free(&s);
}

TEST(eora_rejects_bad_rank_and_inputs)
{
    synth s;
    synth_make(&s, 16, 24, 50);
    eora_opts o;
    eora_opts_default(&o);
    eora_result r;
    o.rank = 17; /* > min(16, 24) */
    CHECK(eora_compute("model.layers.0.mlp.down_proj", s.W, s.Wq, s.out, s.in, s.C, &o, &r) == -1);
    CHECK_MSG(strstr(err_msg(), "rank 17") && strstr(err_msg(), "down_proj"), "%s", err_msg());
    CHECK(r.A == NULL && r.B == NULL);
    o.rank = 0;
    CHECK(eora_compute("m", s.W, s.Wq, s.out, s.in, s.C, &o, &r) == -1);
    o.rank = 4;
    s.W[5] = NAN;
    CHECK(eora_compute("m", s.W, s.Wq, s.out, s.in, s.C, &o, &r) == -1);
    CHECK_MSG(strstr(err_msg(), "non-finite"), "%s", err_msg());
    s.W[5] = 0;
    memset(s.C, 0, sizeof *s.C * (size_t)s.in * s.in); /* no input reached the linear */
    o.method = EORA_CHOLESKY;
    CHECK(eora_compute("m", s.W, s.Wq, s.out, s.in, s.C, &o, &r) == -1);
    CHECK_MSG(strstr(err_msg(), "positive eigenvalue"), "%s", err_msg());
    synth_free(&s);
}

/* Randomized SVD on a matrix with a known, decaying spectrum; same seed → same bits. */
TEST(eora_randomized_svd_spectrum_and_determinism)
{
    const int m = 300, n = 200, r = 10;
    /* M = P diag(σ) Rᵀ with orthonormal P, R from QR-free construction: Householder-like
     * reflections keep it simple — use sums of rank-1 terms of random orthogonalised vectors. */
    float *M = xcalloc((size_t)m * n, sizeof *M);
    double *P = xmalloc(sizeof *P * (size_t)m * 40), *R = xmalloc(sizeof *R * (size_t)n * 40);
    for (size_t i = 0; i < (size_t)m * 40; i++) P[i] = urand();
    for (size_t i = 0; i < (size_t)n * 40; i++) R[i] = urand();
    /* Gram–Schmidt columns. */
    double *mats[2] = {P, R};
    int rows[2] = {m, n};
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 40; k++) {
            double *X = mats[t];
            for (int l = 0; l < k; l++) {
                double d = 0;
                for (int i = 0; i < rows[t]; i++) d += X[i * 40 + k] * X[i * 40 + l];
                for (int i = 0; i < rows[t]; i++) X[i * 40 + k] -= d * X[i * 40 + l];
            }
            double nn = 0;
            for (int i = 0; i < rows[t]; i++) nn += X[i * 40 + k] * X[i * 40 + k];
            for (int i = 0; i < rows[t]; i++) X[i * 40 + k] /= sqrt(nn);
        }
    double sigma[40];
    for (int k = 0; k < 40; k++) sigma[k] = pow(0.8, k);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int k = 0; k < 40; k++) acc += P[i * 40 + k] * sigma[k] * R[j * 40 + k];
            M[(size_t)i * n + j] = (float)acc;
        }
    float *U = xmalloc(sizeof *U * (size_t)m * r), *s = xmalloc(sizeof *s * r), *Vt = xmalloc(sizeof *Vt * (size_t)r * n);
    float *U2 = xmalloc(sizeof *U2 * (size_t)m * r), *s2 = xmalloc(sizeof *s2 * r),
          *Vt2 = xmalloc(sizeof *Vt2 * (size_t)r * n);
    REQUIRE(eora_svd_topr(M, m, n, r, EORA_SVD_RANDOMIZED, 10, 2, 7, U, s, Vt) == 0);
    for (int k = 0; k < r; k++) CHECK_NEAR(s[k], sigma[k], 1e-4 * sigma[0]);
    REQUIRE(eora_svd_topr(M, m, n, r, EORA_SVD_RANDOMIZED, 10, 2, 7, U2, s2, Vt2) == 0);
    CHECK(memcmp(U, U2, sizeof *U * (size_t)m * r) == 0 && memcmp(Vt, Vt2, sizeof *Vt * (size_t)r * n) == 0);
    REQUIRE(eora_svd_topr(M, m, n, r, EORA_SVD_EXACT, 0, 0, 0, U2, s2, Vt2) == 0);
    for (int k = 0; k < r; k++) CHECK_NEAR(s2[k], sigma[k], 1e-5);
    /* Singular vectors match the exact ones up to sign. */
    for (int k = 0; k < r; k++) {
        double d = 0;
        for (int j = 0; j < n; j++) d += (double)Vt[k * n + j] * Vt2[k * n + j];
        CHECK_MSG(fabs(fabs(d) - 1) < 1e-3, "v_%d alignment %.6f", k, d);
    }
    CHECK(eora_svd_topr(M, m, n, 201, EORA_SVD_EXACT, 0, 0, 0, U2, s2, Vt2) == -1);
    free(M);
    free(P);
    free(R);
    free(U);
    free(s);
    free(Vt);
    free(U2);
    free(s2);
    free(Vt2);
}

/* ---------- CLI ---------- */

static int run_cli(int n, const char **args)
{
    char *argv[32];
    argv[0] = (char *)"eora";
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
    argv[n + 1] = NULL;
    return cmd_eora(n + 1, argv);
}

TEST(eora_cli_writes_adapter_and_rejects_bad_rank)
{
    char outp[512], bad[512];
    snprintf(outp, sizeof outp, "%s/q_proj.eora.safetensors", test_tmpdir());
    snprintf(bad, sizeof bad, "%s/bad.safetensors", test_tmpdir());
    const char *args[] = {"--weight", GOLDEN ":l3.q_proj.W", "--quantized", GOLDEN ":l3.q_proj.b4_g128_act.Q",
                          "--cov", GOLDEN ":l3.q_proj.eora_cov", "--rank", "16", "--method", "eigen",
                          "--dtype", "bf16", "-o", outp};
    REQUIRE(run_cli(14, args) == 0);
    st_set *s = st_open(outp);
    REQUIRE(s);
    const st_tensor *a = st_find(s, "lora_A"), *b = st_find(s, "lora_B");
    REQUIRE(a && b);
    CHECK(a->dtype == DT_BF16 && a->shape[0] == 16 && a->shape[1] == 256);
    CHECK(b->dtype == DT_BF16 && b->shape[0] == 512 && b->shape[1] == 16);
    CHECK(st_metadata(s, "method") && !strcmp(st_metadata(s, "method"), "eigen"));
    REQUIRE(st_metadata(s, "loss_before") && st_metadata(s, "loss_after"));
    double lb = atof(st_metadata(s, "loss_before")), la = atof(st_metadata(s, "loss_after"));
    /* Same numbers as the library call, and the bf16 adapter still corrects the layer. */
    golden_case c;
    REQUIRE(golden_load(&c, "l3.q_proj", "b4_g128_act") == 0);
    eora_opts o;
    eora_opts_default(&o);
    o.rank = 16;
    o.method = EORA_EIGEN;
    eora_result r;
    REQUIRE(eora_compute("q", c.W, c.Wq, c.out, c.in, c.C, &o, &r) == 0);
    CHECK_NEAR(lb, r.loss_before, 1e-9 * lb);
    CHECK_NEAR(la, r.loss_after, 1e-9 * la);
    float *fa = xmalloc(sizeof *fa * 16 * 256), *fb = xmalloc(sizeof *fb * 512 * 16);
    REQUIRE(st_to_f32(a, fa) == 0 && st_to_f32(b, fb) == 0);
    double *ba = product(fb, fa, 512, 16, 256);
    double loss_bf16 = direct_loss(c.W, c.Wq, ba, 512, 256, c.C);
    CHECK_MSG(fabs(loss_bf16 - la) < 0.01 * la, "bf16 adapter loss %.6g vs %.6g", loss_bf16, la);
    free(ba);
    free(fa);
    free(fb);
    eora_result_free(&r);
    st_close(s);

    /* rank > min(out, in): exit 1, nothing written. */
    const char *args2[] = {"--weight", GOLDEN ":l3.q_proj.W", "--quantized", GOLDEN ":l3.q_proj.b4_g128_act.Q",
                           "--cov", GOLDEN ":l3.q_proj.eora_cov", "--rank", "257", "-o", bad};
    CHECK(run_cli(10, args2) == 1);
    CHECK(strstr(err_msg(), "rank 257") != NULL);
    FILE *f = fopen(bad, "rb");
    CHECK(f == NULL);
    if (f) fclose(f);
    /* Usage errors: exit 2. */
    const char *args3[] = {"--weight", GOLDEN ":l3.q_proj.W", "--rank", "4"};
    CHECK(run_cli(4, args3) == 2);
    const char *args4[] = {"--weight", GOLDEN ":l3.q_proj.W", "--quantized", GOLDEN ":l3.q_proj.b4_g128_act.Q",
                           "--cov", GOLDEN ":l3.q_proj.eora_cov", "--rank", "4", "--svd", "fast", "-o", bad};
    CHECK(run_cli(12, args4) == 2);
    /* Shape mismatch between weight and covariance names both. */
    const char *args5[] = {"--weight", GOLDEN ":l3.q_proj.W", "--quantized", GOLDEN ":l3.q_proj.b4_g128_act.Q",
                           "--cov", GOLDEN ":l5.down_proj.eora_cov", "--rank", "4", "-o", bad};
    CHECK(run_cli(10, args5) == 1);
    CHECK_MSG(strstr(err_msg(), "covariance") && strstr(err_msg(), "256"), "%s", err_msg());
    golden_free(&c);
}

/* --quantized naming a GPTQ module (qweight/qzeros/scales/g_idx) dequantizes it like a loader. */
TEST(eora_cli_reads_gptq_module)
{
    st_set *g = st_open(GOLDEN);
    REQUIRE(g);
    char qpath[512], outp[512];
    snprintf(qpath, sizeof qpath, "%s/gptq_module.safetensors", test_tmpdir());
    snprintf(outp, sizeof outp, "%s/b3.eora.safetensors", test_tmpdir());
    st_writer *w = st_writer_open(qpath, NULL, 0);
    REQUIRE(w);
    const char *from[] = {"qweight", "qzeros", "scales_f16", "g_idx"}, *to[] = {"qweight", "qzeros", "scales", "g_idx"};
    for (int i = 0; i < 4; i++) {
        char name[160], dst[160];
        snprintf(name, sizeof name, "l5.down_proj.b3_g128_act.%s", from[i]);
        snprintf(dst, sizeof dst, "mlp.down_proj.%s", to[i]);
        const st_tensor *t = st_find(g, name);
        REQUIRE(t);
        REQUIRE(st_writer_add(w, dst, t->dtype, t->ndim, t->shape, t->data) == 0);
    }
    REQUIRE(st_writer_finish(w) == 0);
    char qspec[600];
    snprintf(qspec, sizeof qspec, "%s:mlp.down_proj", qpath);
    const char *args[] = {"--weight", GOLDEN ":l5.down_proj.W", "--quantized", qspec, "--qformat", "v2",
                          "--cov", GOLDEN ":l5.down_proj.eora_cov", "--rank", "8", "--svd", "randomized", "-o", outp};
    REQUIRE(run_cli(14, args) == 0);
    st_set *s = st_open(outp);
    REQUIRE(s);
    const st_tensor *a = st_find(s, "lora_A");
    CHECK(a && a->dtype == DT_F32 && a->shape[0] == 8 && a->shape[1] == 768); /* F32 weight → F32 */
    /* loss_before = tr(ΔW C ΔWᵀ) with the loader's fp16-scale dequantization. */
    golden_case c;
    REQUIRE(golden_load(&c, "l5.down_proj", "b3_g128_act") == 0);
    double lb = atof(st_metadata(s, "loss_before"));
    double direct32 = direct_loss(c.W, c.Wq, NULL, c.out, c.in, c.C);
    CHECK_MSG(fabs(lb - direct32) < 1e-3 * direct32 && lb != direct32, "loss_before %.9g vs fp32-Q %.9g", lb, direct32);
    golden_free(&c);
    st_close(s);
    st_close(g);
}

/* eora's out/in are ints: a weight with a dimension past INT_MAX (a sparse 4 GiB file, the data
 * never read) is refused by name; truncated, the size of W would have wrapped (an out-of-memory
 * exit) or been too small for st_to_f32. */
TEST(eora_cli_refuses_dimension_over_int_max)
{
    char *w = test_tmp_path("wide.safetensors"), wspec[600], outp[512];
    const unsigned long long in = 1ull << 31; /* one more than INT_MAX */
    char json[256];
    snprintf(json, sizeof json, "{\"W\":{\"dtype\":\"BF16\",\"shape\":[1,%llu],\"data_offsets\":[0,%llu]}}", in,
             2 * in);
    REQUIRE(test_write_sparse_st(w, json, 2 * in, NULL, 0) == 0);
    snprintf(wspec, sizeof wspec, "%s:W", w);
    snprintf(outp, sizeof outp, "%s/wide.eora.safetensors", test_tmpdir());
    const char *args[] = {"--weight", wspec, "--quantized", wspec, "--cov", GOLDEN ":l3.q_proj.eora_cov",
                          "--rank", "4", "-o", outp};
    err_clear();
    CHECK(run_cli(10, args) == 1);
    CHECK_MSG(strstr(err_msg(), "[1, 2147483648]") && strstr(err_msg(), "over 2147483647"), "%s", err_msg());
    unlink(w);
    free(w);
}
