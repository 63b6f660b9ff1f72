/* pipeline_runner — stages of one decoder layer: Hessians, GPTQ/RTN, EoRA, install, propagate. */
#include "tools/pipeline_runner.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "eora/eora.h"
#include "gptq/gptq.h"
#include "gptq/pack.h"
#include "io/err.h"
#include "io/safetensors.h"
#include "tools/pipeline_tail.h"

void runner_lora_name(const char *module, const char *which, char *buf, int len)
{
    snprintf(buf, (size_t)len, "base_model.model.%s.%s.weight", module, which);
}

/* ---- streaming the calibration data through the layer ---- */

typedef struct {
    hessian_acc *h[TAP_COUNT]; /* accumulate where non-NULL */
    int last;                  /* stop after this tap (-1: run to the end) */
    act_store *capture;        /* rows of capture_tap are written here (at row0) */
    int capture_tap;
    int64_t row0;              /* first row of the current batch */
    int failed;                /* a tap's width differed from its Hessian's, or capture failed */
} tap_ctx;

static void tap_ctx_init(tap_ctx *c, int last)
{
    memset(c, 0, sizeof *c);
    c->last = last;
    c->capture_tap = -1;
}

static int tap_collect(void *ctx, tap_id tap, const float *x, int64_t rows, int cols)
{
    tap_ctx *c = ctx;
    if (c->h[tap]) {
        if (cols != c->h[tap]->n) {
            c->failed = 1;
            err_set("tap %s: width %d, Hessian expects %d", tap_name(tap), cols, c->h[tap]->n);
            return 1;
        }
        hessian_add(c->h[tap], x, rows);
    }
    if (c->capture && (int)tap == c->capture_tap && act_store_write(c->capture, c->row0, rows, x) != 0) {
        c->failed = 1;
        return 1;
    }
    return (int)tap == c->last ? 1 : 0;
}

/* One pass over all batches: the whole layer (layer_forward), or with `mix` its second half
 * from the captured mixer output (layer_tail). out: where the layer output goes (NULL: the
 * pass is only for the taps). */
static int stream_pass(runner *r, const layer_weights *lw, tap_ctx *c, act_store *mix, act_store *out)
{
    int spb = r->plan->seqs_per_batch, T = r->T, d = r->cfg->hidden;
    float *buf = xmalloc_aligned((size_t)spb * (size_t)T * (size_t)d * sizeof(float));
    float *mbuf = mix ? xmalloc_aligned((size_t)spb * (size_t)T * (size_t)act_store_cols(mix) * sizeof(float)) : NULL;
    int rc = 0;
    for (int s0 = 0; s0 < r->n_seqs && rc == 0; s0 += spb) {
        int B = r->n_seqs - s0 < spb ? r->n_seqs - s0 : spb;
        int64_t row0 = (int64_t)s0 * T, rows = (int64_t)B * T;
        if (act_store_read(r->x, row0, rows, buf) != 0 || (mix && act_store_read(mix, row0, rows, mbuf) != 0)) {
            rc = -1;
            break;
        }
        if (c) c->row0 = row0;
        int f = mix ? layer_tail(r->cfg, lw, buf, mbuf, buf, rows, c ? tap_collect : NULL, c)
                    : layer_forward(r->cfg, lw, buf, buf, B, T, c ? tap_collect : NULL, c);
        if (c && c->failed) f = -1;
        if (f < 0) {
            rc = err_prefix("layer %d forward (sequences %d..%d)", lw->index, s0, s0 + B - 1);
            break;
        }
        if (out) {
            if (f != 0) {
                rc = err_set("layer %d: forward stopped at a tap during propagation", lw->index);
                break;
            }
            rc = act_store_write(out, row0, rows, buf);
        }
    }
    free(buf);
    free(mbuf);
    return rc;
}

int runner_tap_hessian(runner *r, const layer_weights *lw, tap_id tap, hessian_acc *h)
{
    tap_ctx c;
    tap_ctx_init(&c, (int)tap);
    c.h[tap] = h;
    return stream_pass(r, lw, &c, NULL, NULL);
}

/* ---- one linear ---- */

static dtype_t adapter_dtype(const job_t *job, dtype_t module)
{
    const char *d = job->eora_dtype ? job->eora_dtype : "model";
    if (!strcmp(d, "f16")) return DT_F16;
    if (!strcmp(d, "bf16")) return DT_BF16;
    if (!strcmp(d, "f32")) return DT_F32;
    return module;
}

/* Round fp32 values through dtype t in place (what a loader of the stored tensor sees). */
static void round_through(float *x, size_t n, dtype_t t)
{
    if (t == DT_F32) return;
    void *tmp = xmalloc(n * dtype_size(t));
    dtype_from_f32(t, x, tmp, n);
    dtype_to_f32(t, tmp, x, n);
    free(tmp);
}

static void gptq_options(const job_t *job, const plan_module *m, gptq_opts *o)
{
    gptq_opts_default(o);
    o->bits = m->bits;
    o->group_size = m->group_size;
    o->sym = job->sym;
    o->desc_act = job->desc_act;
    o->static_groups = job->static_groups;
    o->act_group_aware = job->act_group_aware;
    o->damp_percent = job->damp_percent;
    o->damp_auto_increment = job->damp_auto_increment;
}

/* Solve, pack, EoRA, install. orig receives the float weight (caller frees). */
static int quantize_linear(runner *r, layer_weights *lw, int mi, const hessian_acc *h, st_writer *wr,
                           float **orig)
{
    const plan_module *m = &r->plan->mods[mi];
    module_result *res = &r->report->mods[mi];
    const job_t *job = r->job;
    linear_t *l = layer_linear(lw, m->short_name);
    if (!l || l->out != m->out || l->in != m->in)
        return err_set("%s: linear missing from layer %d or shape differs from the checkpoint", m->name, m->layer);
    size_t n_w = (size_t)m->out * (size_t)m->in;
    float *W = xmalloc(n_w * sizeof(float));
    memcpy(W, l->w, n_w * sizeof(float));
    *orig = W;

    gptq_opts go;
    gptq_options(job, m, &go);
    gptq_result q;
    memset(&q, 0, sizeof q);
    double t0 = progress_now();
    int rc;
    if (!strcmp(job->method, "rtn")) {
        rc = gptq_rtn(m->name, W, m->out, m->in, &go, &q);
    } else {
        float *H = xmalloc((size_t)m->in * (size_t)m->in * sizeof(float));
        hessian_finalize(h, H);
        rc = gptq_solve(m->name, W, m->out, m->in, H, h->count, &go, &q);
        free(H);
    }
    if (rc != 0) return -1;
    res->t_solve = progress_now() - t0;
    res->samples = h ? h->count : 0;
    res->damp = q.damp;
    res->diag_floor = q.diag_floor;
    res->dead_columns = q.dead_columns;
    res->avg_loss = q.avg_loss;
    res->loss = q.loss;

    /* The quantized weight from here on (EoRA's ΔW, later stages, next layers) is the solver's
     * Q cast to the module dtype — GPTQModel's `module.weight = Q.to(dtype)`. (Measured on the
     * tiny recipe: KLD 0.02399 with it vs 0.02435 propagating the fp16-scale dequantization.) */
    float *Wq = xmalloc(n_w * sizeof(float));
    memcpy(Wq, q.Q, n_w * sizeof(float));
    round_through(Wq, n_w, m->dtype);
    /* Pack: codes re-derived from Q in the module dtype, as GPTQModel. */
    t0 = progress_now();
    gptq_format fmt = job->format && !strcmp(job->format, "gptq_v2") ? GPTQ_FMT_V2 : GPTQ_FMT_V1;
    gptq_packed pk;
    memset(&pk, 0, sizeof pk);
    rc = gptq_pack_dtype(&q, fmt, m->dtype, &pk);
    gptq_result_free(&q);
    if (rc != 0) {
        free(Wq);
        return err_prefix("%s: packing", m->name);
    }
    char name[256];
    int64_t shp[2];
    shp[0] = pk.qw_rows;
    shp[1] = pk.out;
    snprintf(name, sizeof name, "%s.qweight", m->name);
    rc = st_writer_add(wr, name, DT_I32, 2, shp, pk.qweight);
    shp[0] = pk.n_groups;
    shp[1] = pk.qz_cols;
    snprintf(name, sizeof name, "%s.qzeros", m->name);
    if (!rc) rc = st_writer_add(wr, name, DT_I32, 2, shp, pk.qzeros);
    shp[0] = pk.n_groups;
    shp[1] = pk.out;
    snprintf(name, sizeof name, "%s.scales", m->name);
    if (!rc) rc = st_writer_add(wr, name, DT_F16, 2, shp, pk.scales);
    shp[0] = pk.in;
    snprintf(name, sizeof name, "%s.g_idx", m->name);
    if (!rc) rc = st_writer_add(wr, name, DT_I32, 1, shp, pk.g_idx);
    gptq_packed_free(&pk);
    res->t_pack = progress_now() - t0;
    if (rc) {
        free(Wq);
        return -1;
    }

    if (m->eora_rank > 0) {
        t0 = progress_now();
        double *C = xmalloc((size_t)m->in * (size_t)m->in * sizeof(double));
        hessian_sum_f64(h, C);
        eora_opts eo;
        eora_opts_default(&eo);
        eo.rank = m->eora_rank;
        eo.method = job->eora_method && !strcmp(job->eora_method, "eigen") ? EORA_EIGEN : EORA_CHOLESKY;
        eo.svd = job->eora_svd && !strcmp(job->eora_svd, "randomized") ? EORA_SVD_RANDOMIZED : EORA_SVD_EXACT;
        eo.seed = job->seed;
        eora_result er;
        memset(&er, 0, sizeof er);
        rc = eora_compute(m->name, W, Wq, m->out, m->in, C, &eo, &er);
        free(C);
        if (rc != 0) {
            free(Wq);
            return -1;
        }
        /* losses per calibration token, comparable across runs of different sizes */
        double n = h->count > 0 ? (double)h->count : 1;
        res->eora_before = er.loss_before / n;
        res->eora_after = er.loss_after / n;
        dtype_t at = adapter_dtype(job, m->dtype);
        int rk = er.rank;
        round_through(er.A, (size_t)rk * m->in, at);
        round_through(er.B, (size_t)m->out * rk, at);
        int64_t sa[2] = {rk, m->in}, sb[2] = {m->out, rk};
        runner_lora_name(m->name, "lora_A", name, sizeof name);
        rc = st_writer_add_f32(wr, name, at, 2, sa, er.A);
        runner_lora_name(m->name, "lora_B", name, sizeof name);
        if (!rc) rc = st_writer_add_f32(wr, name, at, 2, sb, er.B);
        if (rc) {
            eora_result_free(&er);
            free(Wq);
            return -1;
        }
        /* the layer owns the adapter from here on */
        free(l->lora_A);
        free(l->lora_B);
        l->lora_A = er.A;
        l->lora_B = er.B;
        l->lora_r = rk;
        er.A = er.B = NULL;
        eora_result_free(&er);
        res->t_eora = progress_now() - t0;
    }
    memcpy(l->w, Wq, n_w * sizeof(float));
    free(Wq);
    res->done = 1;
    return 0;
}

/* ---- the layer ---- */

static int new_mix_store(runner *r, int mix_w, act_store **mix)
{
    int64_t rows = (int64_t)r->n_seqs * r->T;
    *mix = r->mix_path ? act_store_create(r->mix_path, rows, mix_w, r->mix_dtype) : act_store_ram(rows, mix_w);
    return *mix ? 0 : -1;
}

/* A pass to the mixer tap that only records the mixer output. */
static int capture_mix(runner *r, const layer_weights *lw, int mix_w, act_store **mix)
{
    if (new_mix_store(r, mix_w, mix) != 0) return -1;
    int tap = lw->type == LAYER_FULL_ATTN ? TAP_ATTN_O : TAP_LIN_OUT;
    tap_ctx c;
    tap_ctx_init(&c, tap);
    c.capture = *mix;
    c.capture_tap = tap;
    return stream_pass(r, lw, &c, NULL, NULL);
}

static void fail_injection(const char *var, int L)
{
    const char *v = getenv(var);
    if (v && *v && atoi(v) == L) raise(SIGKILL); /* test hook: die like kill -9 */
}

int runner_layer(runner *r, int L, const char *tensors_path)
{
    const quant_plan *plan = r->plan;
    const job_t *job = r->job;
    double t_layer = progress_now(), t_fwd = 0;
    int passes = 0;
    layer_weights lw;
    memset(&lw, 0, sizeof lw);
    if (layer_weights_load(r->ckpt, r->cfg, L, &lw) != 0) return err_prefix("layer %d", L);
    const layer_stage *st = NULL;
    int n_st = layer_stages(r->cfg->layer_types[L], &st);
    int first = plan->layer_first[L], last = plan->layer_first[L + 1];
    int is_rtn = !strcmp(job->method, "rtn");
    float **orig = xcalloc((size_t)(last - first + 1), sizeof *orig);
    hessian_acc hacc[TAP_COUNT];
    int h_live[TAP_COUNT] = {0}, h_ready[TAP_COUNT] = {0}, h_last_stage[TAP_COUNT];
    double h_time[TAP_COUNT] = {0};
    for (int t = 0; t < TAP_COUNT; t++) h_last_stage[t] = -1;
    /* which taps need a Hessian, and until which stage */
    for (int i = first; i < last; i++) {
        const plan_module *m = &plan->mods[i];
        if (!m->quantize || (is_rtn && m->eora_rank == 0)) continue;
        if (!h_live[m->tap]) {
            hessian_init(&hacc[m->tap], m->in);
            h_live[m->tap] = 1;
        }
        if (m->stage > h_last_stage[m->tap]) h_last_stage[m->tap] = m->stage;
    }
    /* the mixer output is computed once (capture) and later stages run from it */
    int use_cache = job->true_sequential && !r->no_mix_cache;
    int mixer_tap = r->cfg->layer_types[L] == LAYER_FULL_ATTN ? TAP_ATTN_O : TAP_LIN_OUT;
    int mix_w = layer_mix_width(r->cfg, r->cfg->layer_types[L]);
    act_store *mix = NULL;
    int rc = 0;
    st_writer *wr = st_writer_open(tensors_path, NULL, 0);
    if (!wr) rc = -1;
    if (!rc) rc = st_writer_set_metadata(wr, "format", "pt");

    /* Without true_sequential every Hessian comes from the float layer: one pass for all. */
    if (!rc && !job->true_sequential) {
        tap_ctx c;
        tap_ctx_init(&c, -1);
        for (int t = 0; t < TAP_COUNT; t++)
            if (h_live[t]) {
                c.h[t] = &hacc[t];
                c.last = t;
            }
        if (c.last >= 0) {
            double t0 = progress_now();
            rc = stream_pass(r, &lw, &c, NULL, NULL);
            double dt = progress_now() - t0;
            t_fwd += dt;
            passes++;
            for (int t = 0; t < TAP_COUNT; t++)
                if (h_live[t]) {
                    h_ready[t] = 1;
                    h_time[t] = dt;
                }
            if (!rc && r->prog) progress_stage(r->prog, L, 0, n_st, "all taps (float layer)", (double)r->n_seqs * r->T, dt);
        }
    }

    for (int s = 0; s < n_st && !rc; s++) {
        tap_id tap = st[s].tap;
        int any = 0;
        for (int i = first; i < last; i++) any |= plan->mods[i].stage == s && plan->mods[i].quantize;
        if (!any) continue;
        char what[160] = "";
        for (int k = 0; k < st[s].n; k++)
            snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s", k ? "," : "", st[s].linears[k]);
        if (h_live[tap] && !h_ready[tap]) {
            double t0 = progress_now();
            tap_ctx c;
            tap_ctx_init(&c, (int)tap);
            c.h[tap] = &hacc[tap];
            if (use_cache && (int)tap > mixer_tap) {
                if (!mix) rc = capture_mix(r, &lw, mix_w, &mix);
                if (!rc) rc = stream_pass(r, &lw, &c, mix, NULL);
            } else {
                if (use_cache && (int)tap == mixer_tap && !mix) {
                    rc = new_mix_store(r, mix_w, &mix);
                    c.capture = mix;
                    c.capture_tap = mixer_tap;
                }
                if (!rc) rc = stream_pass(r, &lw, &c, NULL, NULL);
            }
            h_time[tap] = progress_now() - t0;
            t_fwd += h_time[tap];
            passes++;
            h_ready[tap] = 1;
            if (rc) break;
            if (r->prog) progress_stage(r->prog, L, s, n_st, what, (double)r->n_seqs * r->T, h_time[tap]);
        }
        for (int i = first; i < last && !rc; i++) {
            const plan_module *m = &plan->mods[i];
            if (m->stage != s || !m->quantize) continue;
            rc = quantize_linear(r, &lw, i, h_live[tap] ? &hacc[tap] : NULL, wr, &orig[i - first]);
            r->report->mods[i].t_hessian = h_live[tap] ? h_time[tap] : 0;
        }
        if (h_live[tap] && h_last_stage[tap] == s) {
            hessian_free(&hacc[tap]);
            h_live[tap] = 0;
        }
        if (!rc && s == 0) fail_injection("GPTQ_EORA_FAIL_IN_LAYER", L);
    }

    /* X_{L+1} */
    if (!rc && plan->need_calib && L < r->last_needed_layer) {
        int float_path = !strcmp(job->propagate, "float");
        if (float_path) {
            for (int i = first; i < last; i++) {
                if (!orig[i - first]) continue;
                linear_t *l = layer_linear(&lw, plan->mods[i].short_name);
                memcpy(l->w, orig[i - first], (size_t)l->out * (size_t)l->in * sizeof(float));
                free(l->lora_A);
                free(l->lora_B);
                l->lora_A = l->lora_B = NULL;
                l->lora_r = 0;
            }
        }
        double t0 = progress_now();
        act_store *dst = r->x_spare ? r->x_spare : r->x;
        /* the captured mixer output holds for the quantized layer only */
        rc = stream_pass(r, &lw, NULL, float_path ? NULL : mix, dst);
        double dt = progress_now() - t0;
        t_fwd += dt;
        passes++;
        if (!rc && r->x_spare) {
            act_store *tmp = r->x;
            r->x = r->x_spare;
            r->x_spare = tmp;
        }
        if (!rc && r->prog) progress_stage(r->prog, L, n_st, n_st, "propagate", (double)r->n_seqs * r->T, dt);
    }
    for (int t = 0; t < TAP_COUNT; t++)
        if (h_live[t]) hessian_free(&hacc[t]);
    act_store_close_unlink(mix);
    for (int i = 0; i < last - first; i++) free(orig[i]);
    free(orig);
    layer_weights_free(&lw);
    if (!rc) rc = st_writer_finish(wr);
    else if (wr) st_writer_abort(wr);
    if (rc) return -1;
    layer_result *lr = &r->report->layers[L];
    lr->done = 1;
    lr->seconds = progress_now() - t_layer;
    lr->t_forward = t_fwd;
    lr->passes = passes;
    lr->tokens_per_s = t_fwd > 0 ? (double)passes * r->n_seqs * r->T / t_fwd : 0;
    return 0;
}
