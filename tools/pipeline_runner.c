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
#include "tools/dist.h"
#include "tools/pipeline_tail.h"

void runner_lora_name(const char *module, const char *which, char *buf, int len)
{
    snprintf(buf, (size_t)len, "base_model.model.%s.%s.weight", module, which);
}

/* ---- streaming the calibration data through the layer ---- */

typedef struct {
    hessian_acc *h[TAP_COUNT]; /* accumulate where non-NULL */
    double t_syrk[TAP_COUNT];  /* seconds spent accumulating each tap */
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
        double t0 = progress_now();
        hessian_add(c->h[tap], x, rows);
        c->t_syrk[tap] += progress_now() - t0;
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

/* What solving one linear yields: everything every rank installs and rank 0 writes. */
typedef struct {
    float *Wq;          /* [out, in] the solver's Q in the module dtype */
    gptq_packed pk;     /* checkpoint tensors */
    float *A, *B;       /* EoRA [rank, in], [out, rank], rounded through adapter dtype */
    int lora_rank;
    dtype_t lora_dtype;
    module_result res;
} linear_outcome;

static void outcome_free(linear_outcome *o)
{
    free(o->Wq);
    gptq_packed_free(&o->pk);
    free(o->A);
    free(o->B);
    memset(o, 0, sizeof *o);
}

/* Solve, pack, EoRA for module mi of layer lw (whose weights stay untouched). */
static int solve_linear(runner *r, layer_weights *lw, int mi, const hessian_acc *h, linear_outcome *out)
{
    const plan_module *m = &r->plan->mods[mi];
    module_result *res = &out->res;
    const job_t *job = r->job;
    memset(out, 0, sizeof *out);
    linear_t *l = layer_linear(lw, m->short_name);
    if (!l || l->out != m->out || l->in != m->in)
        return err_set("%s: linear missing from layer %d or shape differs from the checkpoint", m->name, m->layer);
    size_t n_w = (size_t)m->out * (size_t)m->in;
    const float *W = l->w;

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
    out->Wq = xmalloc(n_w * sizeof(float));
    memcpy(out->Wq, q.Q, n_w * sizeof(float));
    round_through(out->Wq, n_w, m->dtype);
    /* Pack: codes re-derived from Q in the module dtype, as GPTQModel. */
    t0 = progress_now();
    gptq_format fmt = job->format && !strcmp(job->format, "gptq_v2") ? GPTQ_FMT_V2 : GPTQ_FMT_V1;
    rc = gptq_pack_dtype(&q, fmt, m->dtype, &out->pk);
    gptq_result_free(&q);
    if (rc != 0) {
        outcome_free(out);
        return err_prefix("%s: packing", m->name);
    }
    res->t_pack = progress_now() - t0;

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
        rc = eora_compute(m->name, W, out->Wq, m->out, m->in, C, &eo, &er);
        free(C);
        if (rc != 0) {
            outcome_free(out);
            return -1;
        }
        /* losses per calibration token, comparable across runs of different sizes */
        double n = h->count > 0 ? (double)h->count : 1;
        res->eora_before = er.loss_before / n;
        res->eora_after = er.loss_after / n;
        out->lora_dtype = adapter_dtype(job, m->dtype);
        out->lora_rank = er.rank;
        round_through(er.A, (size_t)er.rank * m->in, out->lora_dtype);
        round_through(er.B, (size_t)m->out * er.rank, out->lora_dtype);
        out->A = er.A;
        out->B = er.B;
        er.A = er.B = NULL;
        eora_result_free(&er);
        res->t_eora = progress_now() - t0;
    }
    res->done = 1;
    return 0;
}

/* ---- moving an outcome from the rank that solved it to every rank ---- */

typedef struct {
    char *p;
    size_t len, cap;
} byte_buf;

static void put(byte_buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

/* Copies the next n bytes into a new allocation (NULL for n == 0). */
static void *take(const char **cur, size_t n)
{
    if (!n) return NULL;
    void *d = xmalloc(n);
    memcpy(d, *cur, n);
    *cur += n;
    return d;
}

static void outcome_sizes(const linear_outcome *o, const plan_module *m, size_t sz[6])
{
    const gptq_packed *pk = &o->pk;
    sz[0] = (size_t)m->out * m->in * sizeof(float);
    sz[1] = (size_t)pk->qw_rows * pk->out * sizeof(int32_t);
    sz[2] = (size_t)pk->n_groups * pk->qz_cols * sizeof(int32_t);
    sz[3] = (size_t)pk->n_groups * pk->out * sizeof(uint16_t);
    sz[4] = (size_t)pk->in * sizeof(int32_t);
    sz[5] = (size_t)o->lora_rank * (m->in + m->out) * sizeof(float);
}

/* The owner's outcome → every rank (same binary everywhere: the structs travel as bytes). */
static void outcome_bcast(linear_outcome *o, const plan_module *m, int owner)
{
    byte_buf b = {0};
    if (dist_rank() == owner) {
        size_t sz[6];
        outcome_sizes(o, m, sz);
        put(&b, o, sizeof *o); /* scalars; the pointers in it are replaced on arrival */
        put(&b, o->Wq, sz[0]);
        put(&b, o->pk.qweight, sz[1]);
        put(&b, o->pk.qzeros, sz[2]);
        put(&b, o->pk.scales, sz[3]);
        put(&b, o->pk.g_idx, sz[4]);
        if (o->lora_rank) {
            put(&b, o->A, (size_t)o->lora_rank * m->in * sizeof(float));
            put(&b, o->B, (size_t)m->out * o->lora_rank * sizeof(float));
        }
    }
    uint64_t len = b.len;
    dist_bcast(&len, sizeof len, owner);
    if (dist_rank() != owner) b.p = xmalloc(len);
    dist_bcast(b.p, len, owner);
    if (dist_rank() != owner) {
        const char *cur = b.p;
        memcpy(o, cur, sizeof *o);
        cur += sizeof *o;
        size_t sz[6];
        outcome_sizes(o, m, sz);
        o->Wq = take(&cur, sz[0]);
        o->pk.qweight = take(&cur, sz[1]);
        o->pk.qzeros = take(&cur, sz[2]);
        o->pk.scales = take(&cur, sz[3]);
        o->pk.g_idx = take(&cur, sz[4]);
        o->A = take(&cur, (size_t)o->lora_rank * m->in * sizeof(float));
        o->B = take(&cur, (size_t)m->out * o->lora_rank * sizeof(float));
    }
    free(b.p);
}

/* Install an outcome in the layer (every rank) and add its tensors to wr (rank 0: wr != NULL).
 * orig receives the float weight (caller frees). The outcome is consumed. */
static int install_linear(runner *r, layer_weights *lw, int mi, linear_outcome *o, st_writer *wr, float **orig)
{
    const plan_module *m = &r->plan->mods[mi];
    linear_t *l = layer_linear(lw, m->short_name);
    if (!l || l->out != m->out || l->in != m->in) {
        outcome_free(o);
        return err_set("%s: linear missing from layer %d or shape differs from the checkpoint", m->name, m->layer);
    }
    size_t n_w = (size_t)m->out * (size_t)m->in;
    r->report->mods[mi] = o->res;
    int rc = 0;
    if (wr) {
        const gptq_packed *pk = &o->pk;
        char name[256];
        int64_t shp[2];
        shp[0] = pk->qw_rows;
        shp[1] = pk->out;
        snprintf(name, sizeof name, "%s.qweight", m->name);
        rc = st_writer_add(wr, name, DT_I32, 2, shp, pk->qweight);
        shp[0] = pk->n_groups;
        shp[1] = pk->qz_cols;
        snprintf(name, sizeof name, "%s.qzeros", m->name);
        if (!rc) rc = st_writer_add(wr, name, DT_I32, 2, shp, pk->qzeros);
        shp[0] = pk->n_groups;
        shp[1] = pk->out;
        snprintf(name, sizeof name, "%s.scales", m->name);
        if (!rc) rc = st_writer_add(wr, name, DT_F16, 2, shp, pk->scales);
        shp[0] = pk->in;
        snprintf(name, sizeof name, "%s.g_idx", m->name);
        if (!rc) rc = st_writer_add(wr, name, DT_I32, 1, shp, pk->g_idx);
        if (!rc && o->lora_rank > 0) {
            int64_t sa[2] = {o->lora_rank, m->in}, sb[2] = {m->out, o->lora_rank};
            runner_lora_name(m->name, "lora_A", name, sizeof name);
            rc = st_writer_add_f32(wr, name, o->lora_dtype, 2, sa, o->A);
            runner_lora_name(m->name, "lora_B", name, sizeof name);
            if (!rc) rc = st_writer_add_f32(wr, name, o->lora_dtype, 2, sb, o->B);
        }
    }
    if (rc) {
        outcome_free(o);
        return -1;
    }
    /* the float weight is kept (propagate: float); the layer owns the adapter from here on */
    *orig = xmalloc(n_w * sizeof(float));
    memcpy(*orig, l->w, n_w * sizeof(float));
    memcpy(l->w, o->Wq, n_w * sizeof(float));
    if (o->lora_rank > 0) {
        free(l->lora_A);
        free(l->lora_B);
        l->lora_A = o->A;
        l->lora_B = o->B;
        l->lora_r = o->lora_rank;
        o->A = o->B = NULL;
    }
    outcome_free(o);
    return 0;
}

/* Sum a tap's Hessian over the ranks (each accumulated its own calibration shard). */
static void hessian_allreduce(hessian_acc *h)
{
    if (dist_size() == 1) return;
    dist_allreduce_f64(h->sum, (size_t)h->n * (size_t)h->n);
    dist_allreduce_i64(&h->count, 1);
}

/* The linears of stage s: solved round-robin across ranks (the k-th linear of the layer by
 * rank k mod R), R at a time, each outcome broadcast and installed on every rank in module
 * order (so rank 0 writes the tensors in the same order as a single process). *k_layer counts
 * the layer's linears so far. */
static int solve_stage(runner *r, layer_weights *lw, int s, int first, int last, const hessian_acc *h,
                       st_writer *wr, float **orig, int *k_layer)
{
    const plan_module *mods = r->plan->mods;
    int R = dist_size(), me = dist_rank();
    int idx[64], n = 0;
    for (int i = first; i < last; i++)
        if (mods[i].stage == s && mods[i].quantize) {
            if (n == (int)(sizeof idx / sizeof *idx)) return err_set("layer %d stage %d: too many linears", mods[i].layer, s);
            idx[n++] = i;
        }
    int rc = 0;
    for (int j0 = 0; j0 < n && !rc; j0 += R) {
        int jn = j0 + R < n ? j0 + R : n;
        linear_outcome *out = xcalloc((size_t)(jn - j0), sizeof *out);
        for (int j = j0; j < jn && !rc; j++)
            if ((*k_layer + j) % R == me) rc = solve_linear(r, lw, idx[j], h, &out[j - j0]);
        /* a failed rank never reaches the broadcast: cmd_quantize aborts the job */
        for (int j = j0; j < jn && !rc; j++) {
            int owner = (*k_layer + j) % R;
            if (R > 1) outcome_bcast(&out[j - j0], &mods[idx[j]], owner);
            rc = install_linear(r, lw, idx[j], &out[j - j0], wr, &orig[idx[j] - first]);
        }
        for (int j = j0; j < jn; j++) outcome_free(&out[j - j0]);
        free(out);
    }
    *k_layer += n;
    return rc;
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
    double h_time[TAP_COUNT] = {0}, h_syrk[TAP_COUNT] = {0};
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
    int k_layer = 0; /* linears of this layer handed out so far (round-robin over ranks) */
    /* rank 0 alone writes the layer's tensors */
    st_writer *wr = dist_rank() == 0 ? st_writer_open(tensors_path, NULL, 0) : NULL;
    if (dist_rank() == 0 && !wr) rc = -1;
    if (wr) rc = st_writer_set_metadata(wr, "format", "pt");

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
            for (int t = 0; t < TAP_COUNT && !rc; t++)
                if (h_live[t]) hessian_allreduce(&hacc[t]);
            double dt = progress_now() - t0;
            t_fwd += dt;
            passes++;
            for (int t = 0; t < TAP_COUNT; t++)
                if (h_live[t]) {
                    h_ready[t] = 1;
                    h_time[t] = dt;
                    h_syrk[t] = c.t_syrk[t];
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
            if (!rc) hessian_allreduce(&hacc[tap]);
            h_time[tap] = progress_now() - t0;
            h_syrk[tap] = c.t_syrk[tap];
            t_fwd += h_time[tap];
            passes++;
            h_ready[tap] = 1;
            if (rc) break;
            if (r->prog) progress_stage(r->prog, L, s, n_st, what, (double)r->n_seqs * r->T, h_time[tap]);
        }
        rc = solve_stage(r, &lw, s, first, last, h_live[tap] ? &hacc[tap] : NULL, wr, orig, &k_layer);
        for (int i = first; i < last && !rc; i++)
            if (plan->mods[i].stage == s && plan->mods[i].quantize) {
                r->report->mods[i].t_hessian = h_live[tap] ? h_time[tap] : 0;
                r->report->mods[i].t_syrk = h_live[tap] ? h_syrk[tap] : 0;
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
    if (!rc && wr) rc = st_writer_finish(wr);
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
