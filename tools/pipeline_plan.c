/* pipeline_plan — modules, rules, memory and FLOP estimates of a quantization job. */
#include "tools/pipeline_plan.h"

#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "calib/model.h"
#include "io/err.h"

/* Sub-block of a decoder layer that holds a linear with this short name. */
static const char *block_of(const char *short_name)
{
    if (!strcmp(short_name, "q_proj") || !strcmp(short_name, "k_proj") || !strcmp(short_name, "v_proj") ||
        !strcmp(short_name, "o_proj"))
        return "self_attn";
    if (!strncmp(short_name, "in_proj_", 8) || !strcmp(short_name, "out_proj")) return "linear_attn";
    return "mlp";
}

static void module_name(const model_config *cfg, int L, const char *short_name, char *buf, size_t len)
{
    snprintf(buf, len, "%slayers.%d.%s.%s", cfg->prefix, L, block_of(short_name), short_name);
}

/* out·in of a linear of layer L, 0 when absent. */
static double linear_size(const st_set *ckpt, const model_config *cfg, int L, const char *short_name)
{
    char name[200], wname[220];
    module_name(cfg, L, short_name, name, sizeof name);
    snprintf(wname, sizeof wname, "%s.weight", name);
    const st_tensor *t = st_find(ckpt, wname);
    return t && t->ndim == 2 ? (double)t->shape[0] * (double)t->shape[1] : 0;
}

void plan_format_bytes(uint64_t b, char *buf, int len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int k = 0;
    while (v >= 1024 && k < 4) {
        v /= 1024;
        k++;
    }
    snprintf(buf, (size_t)len, k ? "%.2f %s" : "%.0f %s", v, u[k]);
}

static int check_packable(const plan_module *m)
{
    if (m->bits != 2 && m->bits != 3 && m->bits != 4 && m->bits != 8)
        return err_set("%s: bits %d not supported (2, 3, 4, 8)", m->name, m->bits);
    int in_mult = m->bits == 3 ? 32 : 32 / m->bits;
    if (m->in % in_mult != 0)
        return err_set("%s: input width %d is not a multiple of %d, cannot pack %d-bit", m->name, m->in,
                       in_mult, m->bits);
    if (((int64_t)m->out * m->bits) % 32 != 0)
        return err_set("%s: output width %d cannot be packed into int32 zeros at %d bits", m->name, m->out,
                       m->bits);
    if (m->group_size != -1 && m->group_size <= 0)
        return err_set("%s: group_size %d invalid", m->name, m->group_size);
    return 0;
}

/* Per-token forward cost of reaching each tap of layer L, and of the whole layer. */
static void tap_costs(const st_set *ckpt, const model_config *cfg, int L, int T, double cost[TAP_COUNT + 1])
{
#define LS(n) linear_size(ckpt, cfg, L, n)
    memset(cost, 0, sizeof(double) * (TAP_COUNT + 1));
    double mixer;
    if (cfg->layer_types[L] == LAYER_FULL_ATTN) {
        double proj = 2 * (LS("q_proj") + LS("k_proj") + LS("v_proj"));
        double core = 2.0 * T * cfg->n_heads * cfg->head_dim; /* causal QKᵀ + AV */
        cost[TAP_ATTN_O] = proj + core;
        mixer = cost[TAP_ATTN_O] + 2 * LS("o_proj");
    } else {
        double proj = 2 * (LS("in_proj_qkv") + LS("in_proj_z") + LS("in_proj_a") + LS("in_proj_b"));
        double core = 8.0 * cfg->lin_v_heads * cfg->lin_k_dim * cfg->lin_v_dim;
        cost[TAP_LIN_OUT] = proj + core;
        mixer = cost[TAP_LIN_OUT] + 2 * LS("out_proj");
    }
    cost[TAP_MLP_IN] = mixer;
    cost[TAP_MLP_DOWN] = mixer + 2 * (LS("gate_proj") + LS("up_proj"));
    cost[TAP_COUNT] = cost[TAP_MLP_DOWN] + 2 * LS("down_proj");
#undef LS
}

static void estimate(quant_plan *p, const job_t *job, const model_config *cfg, const st_set *ckpt)
{
    plan_memory *m = &p->mem;
    plan_flops *f = &p->flops;
    memset(m, 0, sizeof *m);
    memset(f, 0, sizeof *f);
    double tokens = (double)p->tokens;
    int T = job->seq_len > 0 ? job->seq_len : 1;
    uint64_t batch_rows = (uint64_t)p->seqs_per_batch * (uint64_t)T;
    static const char *all_linears[] = {"q_proj", "k_proj", "v_proj", "o_proj", "in_proj_qkv", "in_proj_z",
                                        "in_proj_a", "in_proj_b", "out_proj", "gate_proj", "up_proj",
                                        "down_proj"};
    uint64_t widest = (uint64_t)cfg->hidden;
    /* the last layer whose modules need a Hessian: layers from it on are not propagated
     * (pipeline.c's last_needed) */
    int last_needed = -1;
    for (int i = 0; i < p->n_mods; i++)
        if (p->mods[i].quantize && (strcmp(job->method, "rtn") != 0 || p->mods[i].eora_rank > 0))
            last_needed = p->mods[i].layer;
    for (int L = 0; L < p->n_layers; L++) {
        uint64_t lw = 0;
        for (size_t k = 0; k < sizeof all_linears / sizeof *all_linears; k++) {
            double sz = linear_size(ckpt, cfg, L, all_linears[k]);
            lw += (uint64_t)sz * 4;
            char name[200];
            module_name(cfg, L, all_linears[k], name, sizeof name);
            int i = plan_find(p, name);
            if (i >= 0 && p->mods[i].quantize) lw += (uint64_t)sz * 4; /* original kept */
            char wn[220];
            snprintf(wn, sizeof wn, "%s.weight", name);
            const st_tensor *t = st_find(ckpt, wn);
            if (t && t->ndim == 2 && (uint64_t)t->shape[0] > widest) widest = (uint64_t)t->shape[0];
        }
        if (lw > m->layer_weights) m->layer_weights = lw;
        /* Hessians: one accumulator (fp64 sum + fp32 scratch) per distinct tap, plus the
         * finalized fp32 H and fp64 C of the module being solved. */
        int seen[TAP_COUNT] = {0};
        uint64_t hb = 0, max_in = 0;
        double cost[TAP_COUNT + 1];
        tap_costs(ckpt, cfg, L, T, cost);
        for (int i = p->layer_first[L]; i < p->layer_first[L + 1]; i++) {
            const plan_module *md = &p->mods[i];
            if (!md->quantize) continue;
            int needs_h = strcmp(job->method, "rtn") != 0 || md->eora_rank > 0;
            if (!needs_h) continue;
            if (!seen[md->tap]) {
                seen[md->tap] = 1;
                hb += (uint64_t)md->in * md->in * 12;
                f->hessian += tokens * (double)md->in * md->in;
            }
            if ((uint64_t)md->in > max_in) max_in = (uint64_t)md->in;
        }
        /* Passes: the mixer runs once (its output is captured, tools/pipeline_tail.h); the
         * stages after it and the propagation rerun only the layer's second half. */
        int mixer = cfg->layer_types[L] == LAYER_FULL_ATTN ? TAP_ATTN_O : TAP_LIN_OUT;
        int captured = 0;
        if (!job->true_sequential) { /* one pass from the float layer up to its last tap */
            for (int t = TAP_COUNT - 1; t >= 0; t--)
                if (seen[t]) {
                    f->forward += tokens * cost[t];
                    break;
                }
        } else {
            for (int t = 0; t < TAP_COUNT; t++) {
                if (!seen[t]) continue;
                if (t <= mixer) {
                    f->forward += tokens * cost[t];
                    captured |= t == mixer;
                } else {
                    if (!captured) f->forward += tokens * cost[mixer];
                    captured = 1;
                    f->forward += tokens * (cost[t] - cost[mixer]); /* o_proj + MLP up to t */
                }
            }
        }
        /* propagation to the next layer (every layer before the last one needing a Hessian, as
         * pipeline_runner): from the captured mixer output when there is one and the quantized
         * layer propagates, else the whole layer */
        int from_capture = captured && strcmp(job->propagate, "float") != 0;
        if (L < last_needed) f->forward += tokens * (from_capture ? cost[TAP_COUNT] - cost[mixer] : cost[TAP_COUNT]);
        hb += max_in * max_in * 12;
        if (hb > m->hessians) m->hessians = hb;
    }
    for (int i = 0; i < p->n_mods; i++) {
        const plan_module *md = &p->mods[i];
        if (!md->quantize) continue;
        double o = md->out, n = md->in;
        if (strcmp(job->method, "rtn") != 0) f->gptq += 2 * n * n * n + 2 * o * n * n;
        else f->gptq += 10 * o * n;
        if (md->eora_rank > 0) f->eora += n * n * n / 3 + 2 * o * n * n + 4 * o * n * (o < n ? o : n);
        uint64_t sol = (uint64_t)(o * n) * 4 * 8 + (uint64_t)(n * n) * 4 * 3;
        if (md->eora_rank > 0) sol += (uint64_t)(o * n) * 8 * 3 + (uint64_t)(n * n) * 8 * 2;
        if (sol > m->solver) m->solver = sol;
    }
    /* a batch: hidden-wide input/output/residual/normed + the widest projection output, ×2 */
    if (p->need_calib) m->batch = batch_rows * ((uint64_t)cfg->hidden * 6 + widest * 6) * 4;
    /* X_L plus the captured mixer output of the current layer (tools/pipeline_tail.h) */
    int mix_w = cfg->n_heads * cfg->head_dim;
    if (cfg->lin_v_heads * cfg->lin_v_dim > mix_w) mix_w = cfg->lin_v_heads * cfg->lin_v_dim;
    uint64_t act = (uint64_t)p->tokens * (uint64_t)(cfg->hidden + mix_w) * 4;
    /* program, libraries, tokenizer, mapped pages, allocator slack, and OpenBLAS's per-thread
     * GEMM buffers (tens of MiB each) */
    m->base = (96ull << 20) + (uint64_t)omp_get_max_threads() * (32ull << 20);
    uint64_t without_act = m->layer_weights + m->hessians + m->batch + m->solver + m->base;
    p->spill = 0;
    if (p->need_calib) {
        if (job->memory_budget && without_act + act > job->memory_budget) p->spill = 1;
        if (p->spill)
            m->spill_disk = (uint64_t)p->tokens * (uint64_t)(2 * cfg->hidden + mix_w) * dtype_size(p->spill_dtype);
        else m->activations = act;
    }
    m->total = without_act + m->activations;
    f->total = f->forward + f->hessian + f->gptq + f->eora;
}

int plan_build(const job_t *job, const model_config *cfg, const st_set *ckpt, FILE *warn, quant_plan *p)
{
    memset(p, 0, sizeof *p);
    p->n_layers = cfg->n_layers;
    p->n_rules = job->n_rules;
    p->rule_hits = xcalloc((size_t)(job->n_rules > 0 ? job->n_rules : 1), sizeof(int));
    p->layer_first = xcalloc((size_t)cfg->n_layers + 1, sizeof(int));
    p->spill_dtype = job->spill_dtype && !strcmp(job->spill_dtype, "f32") ? DT_F32 : DT_BF16;
    /* a first guess (the array grows): 16·n_layers overflows an int from 2^27 layers */
    int cap = cfg->n_layers < (1 << 20) ? 16 * cfg->n_layers + 16 : 1 << 24;
    p->mods = xcalloc((size_t)cap, sizeof *p->mods);
    int is_rtn = job->method && !strcmp(job->method, "rtn");
    for (int L = 0; L < cfg->n_layers; L++) {
        p->layer_first[L] = p->n_mods;
        const layer_stage *st = NULL;
        int n_st = layer_stages(cfg->layer_types[L], &st);
        if (n_st <= 0 || !st) {
            plan_free(p);
            return err_set("layer %d: no quantization stages for this layer type", L);
        }
        for (int s = 0; s < n_st; s++) {
            for (int k = 0; k < st[s].n; k++) {
                if (p->n_mods == cap) p->mods = xrealloc(p->mods, (size_t)(cap *= 2) * sizeof *p->mods);
                plan_module *m = &p->mods[p->n_mods];
                memset(m, 0, sizeof *m);
                module_name(cfg, L, st[s].linears[k], m->name, sizeof m->name);
                snprintf(m->rel, sizeof m->rel, "%s.%s", block_of(st[s].linears[k]), st[s].linears[k]);
                snprintf(m->short_name, sizeof m->short_name, "%s", st[s].linears[k]);
                m->layer = L;
                m->stage = s;
                m->tap = (int)st[s].tap;
                char wname[200];
                snprintf(wname, sizeof wname, "%s.weight", m->name);
                const st_tensor *t = st_find(ckpt, wname);
                if (!t) {
                    plan_free(p);
                    return err_set("%s: tensor missing from the checkpoint", wname);
                }
                if (t->ndim != 2 || !dtype_is_float(t->dtype)) {
                    plan_free(p);
                    return err_set("%s: expected a 2-D float weight, found %d-D %s", wname, t->ndim,
                                   dtype_name(t->dtype));
                }
                if (t->shape[0] > INT_MAX || t->shape[1] > INT_MAX) { /* out and in are ints */
                    plan_free(p);
                    return err_set("%s: shape [%lld, %lld] has a dimension over %d", wname, (long long)t->shape[0],
                                   (long long)t->shape[1], INT_MAX);
                }
                m->out = (int)t->shape[0];
                m->in = (int)t->shape[1];
                m->dtype = t->dtype;
                module_settings ms;
                job_module_settings(job, m->name, &ms);
                m->rule = ms.rule ? (int)(ms.rule - job->rules) : -1;
                if (ms.rule) p->rule_hits[m->rule]++;
                m->quantize = ms.quantize;
                m->bits = ms.bits;
                m->group_size = ms.group_size;
                m->eora_rank = ms.eora_rank;
                if (m->eora_rank > m->in || m->eora_rank > m->out) {
                    plan_free(p);
                    return err_set("%s: eora_rank %d exceeds the weight's %d x %d", m->name, m->eora_rank,
                                   m->out, m->in);
                }
                if (m->quantize && check_packable(m) != 0) {
                    plan_free(p);
                    return -1;
                }
                if (m->quantize) {
                    p->n_quantized++;
                    if (m->eora_rank > 0) p->n_eora++;
                    if (!is_rtn || m->eora_rank > 0) p->need_calib = 1;
                }
                p->n_mods++;
            }
        }
    }
    p->layer_first[cfg->n_layers] = p->n_mods;
    /* Linears that are never quantized still count as matches (a rule that skips them is
     * not a mistake). */
    static const char *never[] = {"in_proj_a", "in_proj_b"};
    for (int L = 0; L < cfg->n_layers; L++)
        for (int k = 0; k < 2; k++) {
            char name[200], wname[220];
            module_name(cfg, L, never[k], name, sizeof name);
            snprintf(wname, sizeof wname, "%s.weight", name);
            if (!st_find(ckpt, wname)) continue;
            const quant_rule *r = job_match_rule(job, name);
            if (r) p->rule_hits[r - job->rules]++;
        }
    for (int r = 0; r < job->n_rules; r++)
        if (p->rule_hits[r] == 0 && warn)
            fprintf(warn, "gptq-eora: warning: quantize.rules[%d] '%s' matches no quantizable module\n", r,
                    job->rules[r].match);
    p->tokens = (int64_t)job->n_samples * job->seq_len;
    int T = job->seq_len > 0 ? job->seq_len : 1;
    p->seqs_per_batch = job->batch_tokens / T;
    if (p->seqs_per_batch < 1) p->seqs_per_batch = 1;
    if (p->seqs_per_batch > job->n_samples && job->n_samples > 0) p->seqs_per_batch = job->n_samples;
    estimate(p, job, cfg, ckpt);
    return 0;
}

void plan_free(quant_plan *p)
{
    free(p->mods);
    free(p->layer_first);
    free(p->rule_hits);
    memset(p, 0, sizeof *p);
}

int plan_find(const quant_plan *p, const char *name)
{
    for (int i = 0; i < p->n_mods; i++)
        if (!strcmp(p->mods[i].name, name)) return i;
    return -1;
}

void plan_print(const quant_plan *p, const job_t *job, const model_config *cfg, FILE *f)
{
    char desc[256], b[64];
    model_config_describe(cfg, desc, sizeof desc);
    fprintf(f, "model:       %s (%s)\n", job->model, desc);
    fprintf(f, "method:      %s, format %s, desc_act %d, sym %d, true_sequential %d, damp %.3g, propagate %s\n",
            job->method, job->format, job->desc_act, job->sym, job->true_sequential, job->damp_percent,
            job->propagate);
    fprintf(f, "calibration: %d x %d = %lld tokens, %d sequences per batch\n", job->n_samples, job->seq_len,
            (long long)p->tokens, p->seqs_per_batch);
    fprintf(f, "modules:     %d quantized (%d with EoRA), %d kept in float\n", p->n_quantized, p->n_eora,
            p->n_mods - p->n_quantized);
    for (int i = 0; i < p->n_mods; i++) {
        const plan_module *m = &p->mods[i];
        char rule[32];
        if (m->rule >= 0) snprintf(rule, sizeof rule, "rule %d", m->rule);
        else snprintf(rule, sizeof rule, "defaults");
        if (!m->quantize) {
            fprintf(f, "  L%-3d s%d %-26s [%5d x %5d]  skip (float)            %s\n", m->layer, m->stage, m->rel,
                    m->out, m->in, rule);
            continue;
        }
        char eora[16];
        if (m->eora_rank > 0) snprintf(eora, sizeof eora, "eora %d", m->eora_rank);
        else snprintf(eora, sizeof eora, "no eora");
        fprintf(f, "  L%-3d s%d %-26s [%5d x %5d]  %d bit  g%-5d %-8s  %s\n", m->layer, m->stage, m->rel, m->out,
                m->in, m->bits, m->group_size, eora, rule);
    }
    for (int r = 0; r < p->n_rules; r++)
        fprintf(f, "rule %d '%s': %d module%s%s\n", r, job->rules[r].match, p->rule_hits[r],
                p->rule_hits[r] == 1 ? "" : "s", p->rule_hits[r] ? "" : "  (WARNING: matches nothing)");
    const plan_memory *m = &p->mem;
    fprintf(f, "memory estimate (peak RSS):\n");
#define MEMLINE(label, v)                                  \
    do {                                                   \
        plan_format_bytes(v, b, sizeof b);                 \
        fprintf(f, "  %-28s %s\n", label, b);              \
    } while (0)
    MEMLINE("activations X_L + mixer out", m->activations);
    MEMLINE("one layer's weights", m->layer_weights);
    MEMLINE("Hessians of one layer", m->hessians);
    MEMLINE("one batch through a layer", m->batch);
    MEMLINE("GPTQ + EoRA workspace", m->solver);
    MEMLINE("base", m->base);
    MEMLINE("total", m->total);
#undef MEMLINE
    if (job->memory_budget) {
        plan_format_bytes(job->memory_budget, b, sizeof b);
        fprintf(f, "  memory_budget                %s\n", b);
    }
    if (p->spill) {
        plan_format_bytes(m->spill_disk, b, sizeof b);
        fprintf(f, "activations: spilled to %s (%s, %s on disk)\n", job->spill_dir, dtype_name(p->spill_dtype), b);
    } else {
        fprintf(f, "activations: in RAM\n");
    }
    const plan_flops *fl = &p->flops;
    fprintf(f, "FLOP estimate: %.3g total = forward %.3g + Hessian %.3g + GPTQ %.3g + EoRA %.3g\n", fl->total,
            fl->forward, fl->hessian, fl->gptq, fl->eora);
}
