/* attention — Qwen3.5 gated full attention (REFERENCE.md §7): q_proj output split per head
 * into query | output gate, per-head q/k RMSNorm, partial RoPE, GQA, causal softmax computed
 * block-wise with an online (flash-style) softmax, sigmoid gate.
 *
 * Layout for the score products: the r = H/G query heads of one kv head are interleaved by
 * position ([T, r, D]), so a block of positions × all r heads is one contiguous row panel and
 * Q·Kᵀ / P·V are single small GEMMs of (qblock·r) rows. Query blocks run in parallel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib/model_kernels.h"
#include "calib/small_gemm.h"
#include "calib/vec_math.h"
#include "io/err.h"

#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

void rope_tables(int T, int R, double theta, float *cos_t, float *sin_t)
{
    const int h = R / 2;
    float *inv = xmalloc((size_t)(h > 0 ? h : 1) * sizeof(float));
    /* fp32 like transformers: inv_freq = 1 / θ^(2j/R), angle = pos · inv_freq */
    for (int j = 0; j < h; j++) inv[j] = 1.0f / powf((float)theta, (float)(2 * j) / (float)R);
#pragma omp parallel for schedule(static) if ((int64_t)T * h >= 16384)
    for (int t = 0; t < T; t++)
        for (int j = 0; j < h; j++) {
            float ang = (float)t * inv[j];
            cos_t[(size_t)t * h + j] = (float)cos((double)ang);
            sin_t[(size_t)t * h + j] = (float)sin((double)ang);
        }
    free(inv);
}

void rope_apply(float *x, int R, const float *c, const float *s)
{
    const int h = R / 2;
    for (int j = 0; j < h; j++) {
        float a = x[j], b = x[j + h];
        x[j] = a * c[j] - b * s[j];
        x[j + h] = b * c[j] + a * s[j];
    }
}

/* Online-softmax step for one row block: S holds q·kᵀ for keys [s0, s0+nk); scales, masks keys
 * after each row's position, turns S into P = e^{S−m}, updates the running max m and sum l,
 * and rescales the accumulated output rows. 16 keys at a time (ga_exp); the last partial
 * vector of a row is padded with −inf, whose e^{…} is 0. */
static inline __attribute__((always_inline)) void softmax_block(float *S, int rows, int nk, int r,
                                                                int t0, int s0, float scale, float *m,
                                                                float *l, float *o, int D)
{
    for (int i = 0; i < rows; i++) {
        float *srow = S + (size_t)i * nk;
        int pos = t0 + i / r;
        int valid = pos - s0 + 1; /* keys s0 … pos */
        if (valid > nk) valid = nk;
        if (valid <= 0) {
            memset(srow, 0, (size_t)nk * sizeof(float));
            continue;
        }
        const int v16 = valid - valid % 16;
        ga_v16 vmx = ga_splat(-INFINITY);
        for (int j = 0; j < v16; j += 16) {
            ga_v16 x = ga_load(srow + j) * scale;
            ga_store(srow + j, x);
            vmx = ga_select(x > vmx, x, vmx);
        }
        float tail[16];
        for (int j = 0; j < 16; j++) tail[j] = v16 + j < valid ? srow[v16 + j] * scale : -INFINITY;
        vmx = ga_select(ga_load(tail) > vmx, ga_load(tail), vmx);
        float mx = -INFINITY;
        for (int j = 0; j < 16; j++) mx = vmx[j] > mx ? vmx[j] : mx;
        float mnew = mx > m[i] ? mx : m[i];
        float alpha = expf(m[i] - mnew); /* m[i] = −inf on the first block → 0 */
        ga_v16 vsum = ga_splat(0.0f);
        for (int j = 0; j < v16; j += 16) {
            ga_v16 p = ga_exp(ga_load(srow + j) - mnew);
            ga_store(srow + j, p);
            vsum += p;
        }
        if (v16 < valid) {
            ga_v16 p = ga_exp(ga_load(tail) - mnew);
            vsum += p;
            for (int j = v16; j < valid; j++) srow[j] = p[j - v16];
        }
        float sum = 0;
        for (int j = 0; j < 16; j++) sum += vsum[j];
        for (int j = valid; j < nk; j++) srow[j] = 0;
        l[i] = l[i] * alpha + sum;
        m[i] = mnew;
        if (alpha != 1.0f) {
            float *orow = o + (size_t)i * D;
            for (int c = 0; c < D; c++) orow[c] *= alpha;
        }
    }
}

/* One block of query positions [t0, t1) × r heads against keys [0, t1). kt: K transposed [D, T]. */
HOT static void attention_qblock(const float *q, const float *kt, const float *v, float *o, int T,
                                 int r, int D, float scale, int t0, int t1, int kblock, float *S,
                                 float *m, float *l)
{
    const unsigned fpstate = ftz_on();
    const int rows = (t1 - t0) * r;
    const float *qb = q + (size_t)t0 * r * D;
    float *ob = o + (size_t)t0 * r * D;
    memset(ob, 0, (size_t)rows * D * sizeof(float));
    for (int i = 0; i < rows; i++) m[i] = -INFINITY, l[i] = 0;
    for (int s0 = 0; s0 < t1; s0 += kblock) {
        const int nk = s0 + kblock < t1 ? kblock : t1 - s0;
        memset(S, 0, (size_t)rows * nk * sizeof(float));
        gemm_acc(rows, nk, D, qb, D, 1, kt + s0, T, S, nk);     /* S = Q·Kᵀ */
        softmax_block(S, rows, nk, r, t0, s0, scale, m, l, ob, D);
        gemm_acc(rows, D, nk, S, nk, 1, v + (size_t)s0 * D, D, ob, D); /* O += P·V */
    }
    for (int i = 0; i < rows; i++) {
        float inv = 1.0f / l[i];
        for (int c = 0; c < D; c++) ob[(size_t)i * D + c] *= inv;
    }
    ftz_restore(fpstate);
}

/* All products here are small per-block GEMMs, done with register-tiled loops inside one
 * OpenMP region: alternating BLAS calls with OpenMP softmax regions hundreds of times per layer
 * made the two thread pools fight (measured: 6 ms lost per switch on 16 cores). */
void attention_causal_blocked(const float *q, const float *k, const float *v, float *o, int T,
                              int r, int D, float scale, int qblock, int kblock)
{
    if (qblock <= 0) qblock = 64;
    if (kblock <= 0) kblock = 128;
    float *kt = fwd_alloc((size_t)T * D * sizeof(float));
    const int nblocks = (T + qblock - 1) / qblock;
#pragma omp parallel if (nblocks > 1 && (int64_t)T * T * r * D >= (1 << 22))
    {
        /* K transposed, 16 positions at a time (contiguous writes of each kt row) */
#pragma omp for schedule(static)
        for (int t0 = 0; t0 < T; t0 += 16) {
            const int t1 = t0 + 16 < T ? t0 + 16 : T;
            for (int c = 0; c < D; c++)
                for (int t = t0; t < t1; t++) kt[(size_t)c * T + t] = k[(size_t)t * D + c];
        }
        const int maxrows = qblock * r;
        float *S = xmalloc_aligned((size_t)maxrows * kblock * sizeof(float));
        float *m = xmalloc((size_t)maxrows * sizeof(float)), *l = xmalloc((size_t)maxrows * sizeof(float));
        /* longest blocks (last positions) first */
#pragma omp for schedule(dynamic, 1)
        for (int bi = nblocks - 1; bi >= 0; bi--) {
            const int t0 = bi * qblock, t1 = t0 + qblock < T ? t0 + qblock : T;
            attention_qblock(q, kt, v, o, T, r, D, scale, t0, t1, kblock, S, m, l);
        }
        free(S);
        free(m);
        free(l);
    }
    free(kt);
}

/* back to [B·T, H·D], times the sigmoid output gate (second half of each head's q slot) */
HOT static void attention_gate_out(const float *O, const float *qg, float *y, int B, int T, int H, int r, int D,
                                   int qw, int gated)
{
    const int G = H / r;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < (int64_t)B * T; n++) {
        const int64_t b = n / T;
        const int t = (int)(n % T);
        for (int h = 0; h < H; h++) {
            int g = h / r, j = h % r;
            const float *src = O + ((((size_t)b * G + g) * T + t) * r + j) * D;
            float *dst = y + ((size_t)n * H + h) * D;
            if (!gated) {
                memcpy(dst, src, (size_t)D * sizeof(float));
                continue;
            }
            sigmoid_span(qg + ((size_t)n * H + h) * qw + D, dst, D);
            for (int c = 0; c < D; c++) dst[c] = src[c] * dst[c];
        }
    }
}

void attention_core(const model_config *cfg, const layer_weights *lw, const float *x, int B, int T,
                    float *y)
{
    const int H = cfg->n_heads, G = cfg->n_kv_heads, D = cfg->head_dim, r = H / G;
    const int R = cfg->rotary_dim, gated = cfg->attn_output_gate;
    const int qw = gated ? 2 * D : D; /* per-head width of q_proj's output */
    const int64_t N = (int64_t)B * T;
    const float eps = (float)cfg->rms_eps;
    double tp = fwd_prof_on ? fwd_prof_now() : 0;
    float *qg = fwd_alloc((size_t)N * H * qw * sizeof(float));
    float *kk = fwd_alloc((size_t)N * G * D * sizeof(float));
    float *vv = fwd_alloc((size_t)N * G * D * sizeof(float));
    linear_apply(&lw->q_proj, x, N, qg);
    linear_apply(&lw->k_proj, x, N, kk);
    linear_apply(&lw->v_proj, x, N, vv);
    tp = fwd_prof_add(FP_LINEAR, tp);

    float *cs = xmalloc((size_t)T * (R / 2 + 1) * sizeof(float));
    float *sn = xmalloc((size_t)T * (R / 2 + 1) * sizeof(float));
    if (R > 0) rope_tables(T, R, cfg->rope_theta, cs, sn);

    /* repack: Q [B, G, T, r, D], K/V [B, G, T, D]; norms and RoPE on the way */
    float *Q = fwd_alloc((size_t)N * H * D * sizeof(float));
    float *K = fwd_alloc((size_t)N * G * D * sizeof(float));
    float *V = fwd_alloc((size_t)N * G * D * sizeof(float));
    float *O = fwd_alloc((size_t)N * H * D * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const int64_t b = n / T;
        const int t = (int)(n % T);
        const float *ct = cs + (size_t)t * (R / 2), *st = sn + (size_t)t * (R / 2);
        for (int h = 0; h < H; h++) {
            int g = h / r, j = h % r;
            float *dst = Q + ((((size_t)b * G + g) * T + t) * r + j) * D;
            rmsnorm_zc_row(qg + ((size_t)n * H + h) * qw, lw->q_norm, dst, D, eps);
            if (R > 0) rope_apply(dst, R, ct, st);
        }
        for (int g = 0; g < G; g++) {
            float *kd = K + (((size_t)b * G + g) * T + t) * D;
            rmsnorm_zc_row(kk + ((size_t)n * G + g) * D, lw->k_norm, kd, D, eps);
            if (R > 0) rope_apply(kd, R, ct, st);
            memcpy(V + (((size_t)b * G + g) * T + t) * D, vv + ((size_t)n * G + g) * D,
                   (size_t)D * sizeof(float));
        }
    }
    free(kk);
    free(vv);
    free(cs);
    free(sn);
    tp = fwd_prof_add(FP_ATT_PREP, tp);

    const float scale = (float)(1.0 / sqrt((double)D));
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            size_t off = ((size_t)b * G + g) * T;
            attention_causal_blocked(Q + off * r * D, K + off * D, V + off * D, O + off * r * D, T,
                                     r, D, scale, 0, 0);
        }
    tp = fwd_prof_add(FP_ATT_CORE, tp);

    attention_gate_out(O, qg, y, B, T, H, r, D, qw, gated);
    free(qg);
    free(Q);
    free(K);
    free(V);
    free(O);
    fwd_prof_add(FP_ATT_OUT, tp);
}
