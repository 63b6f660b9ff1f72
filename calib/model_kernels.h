/* model_kernels — the numeric pieces of the Qwen3.5 forward pass (REFERENCE.md §7), exposed
 * for calib/layer.c, for tools/ code that replays part of a layer, and for the unit tests that
 * compare them with plain oracles.
 *
 * Threading rule: functions marked [omp] use OpenMP internally and never call BLAS;
 * functions marked [blas] call OpenBLAS (threaded itself) and must not be called from inside
 * an OpenMP parallel region. Unmarked ones are serial and may run inside a parallel region. */
#ifndef CALIB_MODEL_KERNELS_H
#define CALIB_MODEL_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "calib/model.h"

/* ---- activation buffers (calib/layer.c) ---- */
/* `bytes` of scratch, 64-byte aligned; from 4 MiB up 2 MiB aligned and advised as transparent
 * huge pages: a fresh 4 KiB-page buffer costs ~3.5x a warm write on first touch (page faults,
 * measured: 400 MB in 248 vs 75 ms), so every large activation buffer of the forward pass
 * comes from here. Exits on out-of-memory like xmalloc. Release with free(). */
void *fwd_alloc(size_t bytes);

/* ---- norms and activations (calib/norms.c) ---- */
/* [omp] zero-centred RMSNorm: y = x · rsqrt(mean(x²) + eps) · (1 + w), rows × n. y may be x. */
void rmsnorm_zc(const float *x, const float *w, float *y, int64_t rows, int n, float eps);
/* serial version of one row, for callers already inside a parallel region */
void rmsnorm_zc_row(const float *x, const float *w, float *y, int n, float eps);
/* [omp] DeltaNet gated norm over groups of n: y = o · rsqrt(mean(o²) + eps) · w ⊙ silu(z).
 * o, z, y: groups × n (y may be o). */
void rmsnorm_gated(const float *o, const float *w, const float *z, float *y, int64_t groups, int n,
                   float eps);
/* x ← x · rsqrt(Σx² + eps) · scale over n elements. */
void l2norm_scale(float *x, int n, float eps, float scale);
/* [omp] g ← silu(g) ⊙ u over n elements (SwiGLU). */
void swiglu_inplace(float *g, const float *u, int64_t n);
/* [omp] y ← y + x over n elements (residual). */
void add_inplace(float *y, const float *x, int64_t n);
static inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float siluf_(float x) { return x / (1.0f + expf(-x)); }
/* torch's softplus (beta 1, threshold 20) */
static inline float softplusf_(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* ---- decoder layer pieces (calib/layer.c) ---- */
/* [blas][omp] The MLP half of a decoder layer, in place on the residual stream res [N, hidden]:
 *   xn = post_norm(res) [tap MLP_IN]; g = silu(gate(xn)) ⊙ up(xn) [tap MLP_DOWN]; res += down(g)
 * xn: N × hidden scratch. Returns 0, or 1 when a tap stopped it (res is then unchanged).
 * layer_forward runs it after the mixer; callers that replay a layer from its mixer output use
 * it too, so both give the same bits. */
int layer_mlp_residual(const model_config *cfg, const layer_weights *lw, float *res, float *xn, int64_t N,
                       tap_fn tap, void *ctx);

/* ---- full attention (calib/attention.c) ---- */
/* RoPE tables for positions 0..T−1 and rotary dim R (even): cos/sin [T, R/2], computed in fp32
 * the way transformers does (inv_freq = 1/θ^(2j/R), angle = pos · inv_freq). */
void rope_tables(int T, int R, double theta, float *cos_t, float *sin_t);
/* Rotate the first R dims of one head vector x at table row (cos_t, sin_t) (rotate_half form). */
void rope_apply(float *x, int R, const float *cos_t, const float *sin_t);

/* [omp] Causal softmax attention of one kv head and the r query heads it serves, on one
 * sequence of T positions, computed block-wise with an online softmax (no T×T matrix):
 *   q [T, r, D] (row t·r + j = position t, query head j), k, v [T, D], o [T, r, D].
 * scale multiplies q·k. qblock/kblock: positions per block (0 = defaults 64 / 128). */
void attention_causal_blocked(const float *q, const float *k, const float *v, float *o, int T,
                              int r, int D, float scale, int qblock, int kblock);

/* [blas][omp] Full-attention mixer up to o_proj's input: x [B·T, d] (input_layernorm output)
 * → y [B·T, H·D] = attention output ⊙ sigmoid(gate). */
void attention_core(const model_config *cfg, const layer_weights *lw, const float *x, int B, int T,
                    float *y);

/* ---- gated DeltaNet (calib/deltanet.c) ---- */
/* One value head's gated delta rule over T steps. Row t of each operand is at base + t·ld:
 * q, k [dk] (already L2-normalised, q already scaled), v [dv], beta, g scalars; o [dv].
 * state: dk × dv, initial state in / final state out (NULL: zero start, not returned). */
typedef struct {
    int T, dk, dv;
    const float *q, *k, *v, *beta, *g;
    int64_t ldq, ldk, ldv, ldb, ldg, ldo;
    float *o;
} delta_rule_args;
/* The plain recurrence (test oracle): S ← S·e^{g}; δ = β(v − Sᵀk); S ← S + kδᵀ; o = Sᵀq. */
void delta_rule_recurrent(const delta_rule_args *a, float *state);
/* Chunked form (chunk positions per block; 0 = 64): within a chunk the updates are solved with
 * a unit lower-triangular system (WY / UT form), across chunks the state is carried. */
void delta_rule_chunked(const delta_rule_args *a, int chunk, float *state);
/* The same for nh value heads that share one key head (a[h].q, .k, .ldq, .ldk, .T equal for
 * all h): the chunks' K·Kᵀ and Q·Kᵀ products are computed once for all of them. states: NULL
 * (zero start, not returned) or nh pointers (each NULL or a dk × dv state, in and out). */
void delta_rule_chunked_heads(const delta_rule_args *a, int nh, int chunk, float **states);
/* Causal depthwise conv over time + SiLU on one sequence: x, y [T, C] (y ≠ x), w [C, K]. [omp] */
void causal_conv1d_silu(const float *x, const float *w, float *y, int T, int C, int K);

/* [blas][omp] DeltaNet mixer up to out_proj's input: x [B·T, d] → y [B·T, Hv·dv] (gated-norm
 * output). */
void deltanet_core(const model_config *cfg, const layer_weights *lw, const float *x, int B, int T,
                   float *y);

/* ---- optional per-phase wall-clock accounting (bench_forward) ----
 * fwd_prof_on = 1 makes the layer code add each phase's seconds to fwd_prof[phase]; off (the
 * default) it costs one branch per phase. Phases are timed on the calling thread, outside any
 * parallel region. */
typedef enum {
    FP_NORM,      /* input / post RMSNorm, residual copies and adds */
    FP_LINEAR,    /* every linear_apply (BLAS) */
    FP_CONV,      /* DeltaNet causal conv + SiLU */
    FP_GATES,     /* DeltaNet β, g and q/k L2 norms */
    FP_DELTA,     /* chunked delta rule */
    FP_GNORM,     /* DeltaNet gated RMSNorm */
    FP_ATT_PREP,  /* q/k norms, RoPE, repack */
    FP_ATT_CORE,  /* blocked causal softmax attention */
    FP_ATT_OUT,   /* un-pack + sigmoid gate */
    FP_SWIGLU,    /* MLP activation */
    FP_COUNT
} fwd_phase;
extern int fwd_prof_on;
extern double fwd_prof[FP_COUNT];
extern const char *const fwd_phase_names[FP_COUNT];
double fwd_prof_now(void);
/* t: the value of fwd_prof_now() when the phase began (or 0 when profiling is off); returns
 * the new start time for the next phase */
static inline double fwd_prof_add(fwd_phase ph, double t)
{
    if (!fwd_prof_on) return 0;
    double now = fwd_prof_now();
    fwd_prof[ph] += now - t;
    return now;
}

#endif
