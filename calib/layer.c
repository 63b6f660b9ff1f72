/* layer — one Qwen3.5 decoder layer over B sequences with input taps, the linear primitive,
 * the true-sequential stage table, and the head (final norm + lm_head).
 *   h = h + mixer(input_layernorm(h));  h = h + down(silu(gate(x)) ⊙ up(x)), x = post_norm(h)
 * With taps, the residual stream is built in a scratch buffer and copied to h_out only when the
 * layer ran to its end, so a tap that stops the layer leaves h_out untouched; without taps it is
 * built in h_out directly. Large activation buffers come from fwd_alloc (huge pages). */
#include <cblas.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "calib/model.h"
#include "calib/model_kernels.h"
#include "io/err.h"

int fwd_prof_on;
double fwd_prof[FP_COUNT];
const char *const fwd_phase_names[FP_COUNT] = {"norm+residual", "linears (BLAS)", "conv+silu",
                                                "beta/g/l2norm", "delta rule", "gated norm",
                                                "attn prep", "attn core", "attn gate", "swiglu"};

double fwd_prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void *fwd_alloc(size_t bytes)
{
    enum { BIG = 4 << 20, HUGE = 2 << 20 };
    if (bytes < BIG || bytes > SIZE_MAX - HUGE) return xmalloc_aligned(bytes); /* no wrap when rounding up */
    void *p = NULL;
    size_t n = (bytes + HUGE - 1) / HUGE * HUGE;
    if (posix_memalign(&p, HUGE, n)) return xmalloc_aligned(bytes); /* reports out-of-memory */
    (void)madvise(p, n, MADV_HUGEPAGE); /* advice only: without THP the pages stay 4 KiB */
    return p;
}

const char *tap_name(tap_id t)
{
    static const char *names[TAP_COUNT] = {"attn_qkv", "attn_o", "lin_in", "lin_out", "mlp_in", "mlp_down"};
    return (t >= 0 && t < TAP_COUNT) ? names[t] : "?";
}

static const layer_stage full_stages[] = {
    {TAP_ATTN_QKV, {"q_proj", "k_proj", "v_proj"}, 3},
    {TAP_ATTN_O, {"o_proj"}, 1},
    {TAP_MLP_IN, {"gate_proj", "up_proj"}, 2},
    {TAP_MLP_DOWN, {"down_proj"}, 1},
};
/* GPTQModel quantizes in_proj_qkv and in_proj_z in separate stages; both read the same tap
 * (in_proj_a/b share it too but are never quantized), so the stages share one Hessian. */
static const layer_stage linear_stages[] = {
    {TAP_LIN_IN, {"in_proj_qkv"}, 1},
    {TAP_LIN_IN, {"in_proj_z"}, 1},
    {TAP_LIN_OUT, {"out_proj"}, 1},
    {TAP_MLP_IN, {"gate_proj", "up_proj"}, 2},
    {TAP_MLP_DOWN, {"down_proj"}, 1},
};

int layer_stages(layer_type type, const layer_stage **stages)
{
    if (type == LAYER_FULL_ATTN) {
        *stages = full_stages;
        return (int)(sizeof full_stages / sizeof *full_stages);
    }
    *stages = linear_stages;
    return (int)(sizeof linear_stages / sizeof *linear_stages);
}

void linear_apply(const linear_t *l, const float *x, int64_t rows, float *y)
{
    /* BLAS takes int sizes: split very tall inputs */
    const int64_t step = INT_MAX / (l->out > l->in ? l->out : l->in);
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
        const int n = (int)(rows - r0 < step ? rows - r0 : step);
        const float *xr = x + r0 * l->in;
        float *yr = y + r0 * l->out;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->out, l->in, 1.0f, xr, l->in,
                    l->w, l->in, 0.0f, yr, l->out);
        if (l->lora_A && l->lora_B && l->lora_r > 0) {
            float *tmp = xmalloc_aligned((size_t)n * l->lora_r * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->lora_r, l->in, 1.0f, xr,
                        l->in, l->lora_A, l->in, 0.0f, tmp, l->lora_r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->out, l->lora_r, 1.0f, tmp,
                        l->lora_r, l->lora_B, l->lora_r, 1.0f, yr, l->out);
            free(tmp);
        }
        if (l->bias) {
            const float *b = l->bias;
            const int out = l->out;
#pragma omp parallel for schedule(static)
            for (int i = 0; i < n; i++)
                for (int o = 0; o < out; o++) yr[(size_t)i * out + o] += b[o];
        }
    }
}

/* [omp] y = a + b over n elements (y may be a or b) */
static void add_into(float *y, const float *a, const float *b, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* [omp] memcpy of n floats split over the threads (a serial copy of a fresh [tokens, d] buffer
 * is one core's page faults and bandwidth) */
static void copy_par(float *dst, const float *src, int64_t n)
{
    const int64_t step = 1 << 16;
#pragma omp parallel for schedule(static) if (n >= 4 * step)
    for (int64_t i = 0; i < n; i += step)
        memcpy(dst + i, src + i, (size_t)(n - i < step ? n - i : step) * sizeof(float));
}

static int check_shapes(const model_config *cfg, const layer_weights *lw)
{
    if (lw->type == LAYER_FULL_ATTN) {
        if (!lw->q_proj.w || !lw->k_proj.w || !lw->v_proj.w || !lw->o_proj.w || !lw->q_norm || !lw->k_norm)
            return err_set("layer %d: full-attention weights missing", lw->index);
        if (cfg->n_kv_heads <= 0 || cfg->n_heads % cfg->n_kv_heads)
            return err_set("layer %d: %d query heads not a multiple of %d kv heads", lw->index,
                           cfg->n_heads, cfg->n_kv_heads);
    } else {
        if (!lw->in_proj_qkv.w || !lw->in_proj_z.w || !lw->in_proj_a.w || !lw->in_proj_b.w ||
            !lw->out_proj.w || !lw->conv1d || !lw->A_log || !lw->dt_bias || !lw->lin_norm)
            return err_set("layer %d: DeltaNet weights missing", lw->index);
        if (cfg->lin_k_heads <= 0 || cfg->lin_v_heads % cfg->lin_k_heads)
            return err_set("layer %d: %d value heads not a multiple of %d key heads", lw->index,
                           cfg->lin_v_heads, cfg->lin_k_heads);
    }
    if (!lw->input_norm || !lw->post_norm || !lw->gate_proj.w || !lw->up_proj.w || !lw->down_proj.w)
        return err_set("layer %d: norm or MLP weights missing", lw->index);
    return 0;
}

int layer_forward(const model_config *cfg, const layer_weights *lw, const float *h_in,
                  float *h_out, int B, int T, tap_fn tap, void *ctx)
{
    if (B <= 0 || T <= 0) return err_set("layer %d: empty batch (B=%d, T=%d)", lw->index, B, T);
    if (check_shapes(cfg, lw)) return -1;
    const int d = cfg->hidden;
    const int64_t N = (int64_t)B * T;
    const int full = lw->type == LAYER_FULL_ATTN;
    const int mix_w = full ? cfg->n_heads * cfg->head_dim : cfg->lin_v_heads * cfg->lin_v_dim;
    const float eps = (float)cfg->rms_eps;
    int rc = 1;

    /* residual stream: without taps nothing can stop the layer, so it is built in h_out itself */
    float *res = tap ? fwd_alloc((size_t)N * d * sizeof(float)) : h_out;
    float *xn = fwd_alloc((size_t)N * d * sizeof(float)); /* normed input / branch output */
    float *mix = fwd_alloc((size_t)N * mix_w * sizeof(float));
    double tp = fwd_prof_on ? fwd_prof_now() : 0;

    rmsnorm_zc(h_in, lw->input_norm, xn, N, d, eps);
    tp = fwd_prof_add(FP_NORM, tp);
    if (tap && tap(ctx, full ? TAP_ATTN_QKV : TAP_LIN_IN, xn, N, d)) goto out;
    if (full)
        attention_core(cfg, lw, xn, B, T, mix);
    else
        deltanet_core(cfg, lw, xn, B, T, mix);
    if (tap && tap(ctx, full ? TAP_ATTN_O : TAP_LIN_OUT, mix, N, mix_w)) goto out;
    tp = fwd_prof_on ? fwd_prof_now() : 0;
    linear_apply(full ? &lw->o_proj : &lw->out_proj, mix, N, xn);
    tp = fwd_prof_add(FP_LINEAR, tp);
    add_into(res, h_in, xn, N * d); /* res = h_in + mixer output (h_out may be h_in) */
    free(mix);
    mix = NULL;
    tp = fwd_prof_add(FP_NORM, tp);

    if (layer_mlp_residual(cfg, lw, res, xn, N, tap, ctx)) goto out;
    if (res != h_out) {
        tp = fwd_prof_on ? fwd_prof_now() : 0;
        copy_par(h_out, res, N * d);
        fwd_prof_add(FP_NORM, tp);
    }
    rc = 0;
out:
    if (res != h_out) free(res);
    free(xn);
    free(mix);
    return rc;
}

int layer_mlp_residual(const model_config *cfg, const layer_weights *lw, float *res, float *xn, int64_t N,
                       tap_fn tap, void *ctx)
{
    const int d = cfg->hidden, inter = cfg->intermediate;
    double tp = fwd_prof_on ? fwd_prof_now() : 0;
    rmsnorm_zc(res, lw->post_norm, xn, N, d, (float)cfg->rms_eps);
    tp = fwd_prof_add(FP_NORM, tp);
    if (tap && tap(ctx, TAP_MLP_IN, xn, N, d)) return 1;
    tp = fwd_prof_on ? fwd_prof_now() : 0;
    float *gt = fwd_alloc((size_t)N * inter * sizeof(float));
    float *up = fwd_alloc((size_t)N * inter * sizeof(float));
    linear_apply(&lw->gate_proj, xn, N, gt);
    linear_apply(&lw->up_proj, xn, N, up);
    tp = fwd_prof_add(FP_LINEAR, tp);
    swiglu_inplace(gt, up, N * inter);
    free(up); /* before the tap: its callback may need memory of its own */
    tp = fwd_prof_add(FP_SWIGLU, tp);
    int stop = tap && tap(ctx, TAP_MLP_DOWN, gt, N, inter);
    if (!stop) {
        tp = fwd_prof_on ? fwd_prof_now() : 0;
        linear_apply(&lw->down_proj, gt, N, xn);
        tp = fwd_prof_add(FP_LINEAR, tp);
        add_inplace(res, xn, N * d);
        fwd_prof_add(FP_NORM, tp);
    }
    free(gt);
    return stop;
}

int head_forward(const model_config *cfg, const head_weights *hw, const float *h, int64_t n,
                 float *normed, float *logits)
{
    if (!hw->norm || (logits && !hw->lm_head.w)) return err_set("head_forward: head weights not loaded");
    const int d = cfg->hidden;
    float *dst = normed ? normed : fwd_alloc((size_t)n * d * sizeof(float));
    rmsnorm_zc(h, hw->norm, dst, n, d, (float)cfg->rms_eps);
    if (logits) linear_apply(&hw->lm_head, dst, n, logits);
    if (!normed) free(dst);
    return 0;
}
