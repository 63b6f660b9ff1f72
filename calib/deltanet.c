/* deltanet — the Gated DeltaNet mixer of Qwen3.5 (REFERENCE.md §7): causal depthwise conv +
 * SiLU, β and decay g, L2-normalised q/k, the gated delta rule, gated RMSNorm with silu(z).
 *
 * The delta rule runs in chunks of C positions (transformers' torch_chunk_gated_delta_rule,
 * re-derived): within a chunk, with cumulative decays γ_i = Σ_{s≤i} g_s,
 *   A[i][j] = β_i e^{γ_i−γ_j} (k_i·k_j), j < i        (strictly lower)
 *   (I + A)·U = β⊙V,   (I + A)·W = β e^{γ}⊙K         (unit lower-triangular solves)
 *   V' = U − W·S                                       (new values, S = state entering the chunk)
 *   O  = e^{γ}⊙(Q·S) + tril(e^{γ_i−γ_j} Q·Kᵀ)·V'
 *   S  ← e^{γ_last} S + (e^{γ_last−γ}⊙K)ᵀ·V'
 * Everything is small dense products per (sequence, head), so heads run in parallel under
 * OpenMP with vectorised loops (no BLAS inside the parallel region). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib/model_kernels.h"
#include "calib/small_gemm.h"
#include "calib/vec_math.h"
#include "io/err.h"

#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define INL static inline __attribute__((always_inline))

INL float dotf(const float *a, const float *b, int n)
{
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

INL void axpyf(float *y, float a, const float *x, int n)
{
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* y += w ⊙ x */
INL void axpy_vec(float *y, const float *w, const float *x, int n)
{
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] += w[i] * x[i];
}

HOT void delta_rule_recurrent(const delta_rule_args *a, float *state)
{
    const int dk = a->dk, dv = a->dv;
    float *S = state ? state : xcalloc((size_t)dk * dv, sizeof(float));
    float *m = xmalloc((size_t)dv * sizeof(float));
    for (int t = 0; t < a->T; t++) {
        const float *q = a->q + t * a->ldq, *k = a->k + t * a->ldk, *v = a->v + t * a->ldv;
        float decay = expf(a->g[t * a->ldg]), beta = a->beta[t * a->ldb];
        for (size_t i = 0; i < (size_t)dk * dv; i++) S[i] *= decay;
        memset(m, 0, (size_t)dv * sizeof(float));
        for (int i = 0; i < dk; i++) axpyf(m, k[i], S + (size_t)i * dv, dv); /* m = Sᵀk */
        for (int j = 0; j < dv; j++) m[j] = (v[j] - m[j]) * beta;           /* δ */
        for (int i = 0; i < dk; i++) axpyf(S + (size_t)i * dv, k[i], m, dv); /* S += kδᵀ */
        float *o = a->o + t * a->ldo;
        memset(o, 0, (size_t)dv * sizeof(float));
        for (int i = 0; i < dk; i++) axpyf(o, q[i], S + (size_t)i * dv, dv); /* o = Sᵀq */
    }
    free(m);
    if (!state) free(S);
}

HOT void delta_rule_chunked_heads(const delta_rule_args *a, int nh, int C, float **states)
{
    if (C <= 0) C = 64;
    const unsigned fpstate = ftz_on();
    const int dk = a[0].dk, dv = a[0].dv, T = a[0].T;
    /* shared per chunk: K, Q [C, dk]; KK = K·Kᵀ, QK = Q·Kᵀ [C, C] (lower triangle) */
    size_t nk = (size_t)C * dk, nv = (size_t)C * dv, nc = (size_t)C * C;
    float *shared = xmalloc_aligned((2 * nk + 2 * nc) * sizeof(float));
    float *K = shared, *Q = K + nk, *KK = Q + nk, *QK = KK + nc;
    /* per head: its state, then Qh, W, Kd [C, dk]; U, Vn [C, dv]; A, P [C, C]; γ [C] */
    const size_t per = (size_t)dk * dv + 3 * nk + 2 * nv + 2 * nc + C;
    float *heads = xmalloc_aligned((size_t)nh * per * sizeof(float));
    for (int h = 0; h < nh; h++) {
        float *S = heads + (size_t)h * per;
        if (states && states[h]) memcpy(S, states[h], (size_t)dk * dv * sizeof(float));
        else memset(S, 0, (size_t)dk * dv * sizeof(float));
    }

    for (int t0 = 0; t0 < T; t0 += C) {
        const int L = T - t0 < C ? T - t0 : C;
        for (int i = 0; i < L; i++) {
            const int64_t t = t0 + i;
            memcpy(K + (size_t)i * dk, a[0].k + t * a[0].ldk, (size_t)dk * sizeof(float));
            memcpy(Q + (size_t)i * dk, a[0].q + t * a[0].ldq, (size_t)dk * sizeof(float));
        }
        for (int i = 0; i < L; i++) {
            const float *ki = K + (size_t)i * dk, *qi = Q + (size_t)i * dk;
            for (int j = 0; j <= i; j++) {
                const float *kj = K + (size_t)j * dk;
                if (j < i) KK[(size_t)i * C + j] = dotf(ki, kj, dk);
                QK[(size_t)i * C + j] = dotf(qi, kj, dk);
            }
        }
        for (int h = 0; h < nh; h++) {
            const delta_rule_args *ah = a + h;
            float *S = heads + (size_t)h * per, *Qh = S + (size_t)dk * dv, *W = Qh + nk, *Kd = W + nk,
                  *U = Kd + nk, *Vn = U + nv, *A = Vn + nv, *P = A + nc, *gam = P + nc;
            float acc = 0;
            for (int i = 0; i < L; i++) {
                acc += ah->g[(int64_t)(t0 + i) * ah->ldg];
                gam[i] = acc;
            }
            /* A (strictly lower) and P (lower incl. diagonal) */
            for (int i = 0; i < L; i++) {
                const float bi = ah->beta[(int64_t)(t0 + i) * ah->ldb];
                for (int j = 0; j <= i; j++) {
                    float dec = expf(gam[i] - gam[j]);
                    if (j < i) A[(size_t)i * C + j] = bi * dec * KK[(size_t)i * C + j];
                    P[(size_t)i * C + j] = dec * QK[(size_t)i * C + j];
                }
                for (int j = i + 1; j < L; j++) P[(size_t)i * C + j] = 0;
            }
            /* right-hand sides, then forward substitution with the unit lower-triangular I + A;
             * W is solved negated (−β e^γ K on the right) so V' = U + W·S is an accumulation */
            for (int i = 0; i < L; i++) {
                const int64_t t = t0 + i;
                const float bi = ah->beta[t * ah->ldb], eg = -bi * expf(gam[i]);
                const float *v = ah->v + t * ah->ldv, *ki = K + (size_t)i * dk;
                float *ui = U + (size_t)i * dv, *wi = W + (size_t)i * dk;
                for (int c = 0; c < dv; c++) ui[c] = bi * v[c];
                for (int c = 0; c < dk; c++) wi[c] = eg * ki[c];
                for (int j = 0; j < i; j++) {
                    const float aij = A[(size_t)i * C + j];
                    axpyf(ui, -aij, U + (size_t)j * dv, dv);
                    axpyf(wi, -aij, W + (size_t)j * dk, dk);
                }
            }
            /* V' = U − W·S ; O = (e^γ Q)·S + P·V' */
            for (int i = 0; i < L; i++) {
                const float eg = expf(gam[i]);
                for (int c = 0; c < dk; c++) Qh[(size_t)i * dk + c] = Q[(size_t)i * dk + c] * eg;
            }
            memcpy(Vn, U, (size_t)L * dv * sizeof(float));
            gemm_acc(L, dv, dk, W, dk, 1, S, dv, Vn, dv);
            memset(U, 0, (size_t)L * dv * sizeof(float)); /* U now holds the chunk's output */
            gemm_acc(L, dv, dk, Qh, dk, 1, S, dv, U, dv);
            gemm_acc(L, dv, L, P, C, 1, Vn, dv, U, dv); /* P is zero above the diagonal */
            for (int i = 0; i < L; i++)
                memcpy(ah->o + (int64_t)(t0 + i) * ah->ldo, U + (size_t)i * dv, (size_t)dv * sizeof(float));
            /* carry the state to the next chunk */
            const float glast = gam[L - 1], elast = expf(glast);
            for (int i = 0; i < L; i++) {
                const float d = expf(glast - gam[i]);
                for (int c = 0; c < dk; c++) Kd[(size_t)i * dk + c] = d * K[(size_t)i * dk + c];
            }
            for (size_t i = 0; i < (size_t)dk * dv; i++) S[i] *= elast;
            gemm_acc(dk, dv, L, Kd, 1, dk, Vn, dv, S, dv); /* S += Kdᵀ·V' */
        }
    }
    for (int h = 0; h < nh; h++)
        if (states && states[h]) memcpy(states[h], heads + (size_t)h * per, (size_t)dk * dv * sizeof(float));
    free(shared);
    free(heads);
    ftz_restore(fpstate);
}

void delta_rule_chunked(const delta_rule_args *a, int C, float *state)
{
    delta_rule_chunked_heads(a, 1, C, &state);
}

HOT void causal_conv1d_silu(const float *x, const float *w, float *y, int T, int C, int K)
{
    float *wt = xmalloc((size_t)K * C * sizeof(float)); /* [K, C]: contiguous over channels */
    for (int c = 0; c < C; c++)
        for (int j = 0; j < K; j++) wt[(size_t)j * C + c] = w[(size_t)c * K + j];
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *yt = y + (size_t)t * C;
        for (int c = 0; c < C; c++) yt[c] = 0;
        for (int j = 0; j < K; j++) {
            int s = t - (K - 1) + j; /* input time step multiplied by tap j */
            if (s < 0) continue;
            axpy_vec(yt, wt + (size_t)j * C, x + (size_t)s * C, C);
        }
        silu_span(yt, yt, C);
    }
    free(wt);
}

void deltanet_core(const model_config *cfg, const layer_weights *lw, const float *x, int B, int T,
                   float *y)
{
    const int Hk = cfg->lin_k_heads, Hv = cfg->lin_v_heads, dk = cfg->lin_k_dim,
              dv = cfg->lin_v_dim, K = cfg->conv_kernel, rep = Hv / Hk;
    const int cd = 2 * Hk * dk + Hv * dv; /* conv channels: q | k | v */
    const int64_t N = (int64_t)B * T;
    double tp = fwd_prof_on ? fwd_prof_now() : 0;
    float *mixed = fwd_alloc((size_t)N * cd * sizeof(float));
    float *conv = fwd_alloc((size_t)N * cd * sizeof(float));
    float *z = fwd_alloc((size_t)N * Hv * dv * sizeof(float));
    float *av = xmalloc((size_t)N * Hv * sizeof(float)), *bv = xmalloc((size_t)N * Hv * sizeof(float));
    float *core = fwd_alloc((size_t)N * Hv * dv * sizeof(float));

    linear_apply(&lw->in_proj_qkv, x, N, mixed);
    linear_apply(&lw->in_proj_z, x, N, z);
    linear_apply(&lw->in_proj_a, x, N, av);
    linear_apply(&lw->in_proj_b, x, N, bv);
    tp = fwd_prof_add(FP_LINEAR, tp);
    for (int b = 0; b < B; b++)
        causal_conv1d_silu(mixed + (size_t)b * T * cd, lw->conv1d, conv + (size_t)b * T * cd, T, cd, K);
    free(mixed);
    tp = fwd_prof_add(FP_CONV, tp);

    /* β = sigmoid(b) (in bv), g = −e^{A_log}·softplus(a + dt_bias) (in av) */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N * Hv; i++) {
        int h = (int)(i % Hv);
        bv[i] = sigmoidf_(bv[i]);
        av[i] = -expf(lw->A_log[h]) * softplusf_(av[i] + lw->dt_bias[h]);
    }
    const float qscale = (float)(1.0 / sqrt((double)dk));
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *row = conv + (size_t)n * cd;
        for (int h = 0; h < Hk; h++) {
            l2norm_scale(row + (size_t)h * dk, dk, 1e-6f, qscale);
            l2norm_scale(row + (size_t)(Hk + h) * dk, dk, 1e-6f, 1.0f);
        }
    }
    tp = fwd_prof_add(FP_GATES, tp);
    /* one task per (sequence, key head), covering the rep value heads it serves: their
     * chunks share the K·Kᵀ and Q·Kᵀ dot products */
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < B * Hk; task++) {
        int b = task / Hk, hk = task % Hk;
        const float *base = conv + (size_t)b * T * cd;
        delta_rule_args a[rep];
        for (int j = 0; j < rep; j++) {
            const int hv = hk * rep + j;
            a[j] = (delta_rule_args){
                .T = T, .dk = dk, .dv = dv,
                .q = base + (size_t)hk * dk, .k = base + (size_t)(Hk + hk) * dk,
                .v = base + (size_t)2 * Hk * dk + (size_t)hv * dv,
                .beta = bv + (size_t)b * T * Hv + hv, .g = av + (size_t)b * T * Hv + hv,
                .ldq = cd, .ldk = cd, .ldv = cd, .ldb = Hv, .ldg = Hv, .ldo = (int64_t)Hv * dv,
                .o = core + (size_t)b * T * Hv * dv + (size_t)hv * dv,
            };
        }
        delta_rule_chunked_heads(a, rep, 64, NULL);
    }
    tp = fwd_prof_add(FP_DELTA, tp);
    rmsnorm_gated(core, lw->lin_norm, z, y, N * Hv, dv, (float)cfg->rms_eps);
    free(conv);
    free(z);
    free(av);
    free(bv);
    free(core);
    fwd_prof_add(FP_GNORM, tp);
}
