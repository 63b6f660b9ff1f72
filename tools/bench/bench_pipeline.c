/* bench_pipeline — the whole `quantize` job end to end on a synthetic Qwen3.5 checkpoint of real
 * widths: tokens/s per layer and the time split (forward passes / GPTQ / EoRA / writing) on this
 * node, and a run at real sizes where 32-bit index overflows would show.
 *
 *   bench_pipeline [--size small|9b|27b] [--layers L] [--samples N] [--seq T] [--rank R]
 *                  [--eora-svd exact|randomized] [--budget SIZE] [--batch-tokens N] [--threads N] [--seed S] [--data DIR]
 *                  [--dir DIR] [--keep] [--quiet] [--eval] [--eval-windows W]
 *
 * 1. A fresh directory (mkdtemp under --dir, $TMPDIR or /tmp) receives a Hugging Face-layout
 *    checkpoint: config.json = tests/data/tiny-qwen35's with the text_config widths of the preset
 *    (vocab 4096 and the tiny tokenizer stay, so embed/lm_head are small), its tokenizer files, and
 *    random BF16 weights (seeded; linears U(±√(3/in)) so std 1/√in keeps activations O(1) through
 *    the residual stream; zero-centred norms ≈ 0, the DeltaNet gated norm ≈ 1, A_log / dt_bias in
 *    the tiny model's range), tensor names and shapes as calib/weights.c reads them.
 * 2. A job YAML with the published recipe (attention 8 bit, DeltaNet/MLP 4 bit, in_proj_a/b
 *    skipped, g128, desc_act, sym, EoRA rank R) on tests/data/text/calib.jsonl, run in-process
 *    (job_load + pipeline_run).
 * 3. report.json → bench lines; FLOP rates use the plan's FLOP estimate (tools/pipeline_plan.h).
 *    --eval also runs eval (base vs quantized + adapter) on a few windows of eval.jsonl.
 * 4. The directory is removed unless --keep. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "io/job.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "tools/bench_util.h"
#include "tools/blas_env.h"
#include "tools/cli.h"
#include "tools/eval.h"
#include "tools/pipeline.h"
#include "tools/pipeline_plan.h"

/* ---- presets (text_config widths of the published checkpoints) ---- */

typedef struct {
    const char *name;
    int hidden, intermediate, heads, kv_heads, head_dim, lin_k_heads, lin_v_heads, lin_k_dim, lin_v_dim;
} preset;

static const preset PRESETS[] = {
    {"small", 1024, 3072, 4, 2, 256, 4, 8, 128, 128},
    {"9b", 4096, 12288, 16, 4, 256, 16, 32, 128, 128},
    {"27b", 5120, 17408, 24, 4, 256, 16, 48, 128, 128},
};

typedef struct {
    const preset *p;
    int layers, samples, seq, rank, threads, batch_tokens, keep, quiet, eval, eval_windows;
    uint64_t seed;
    const char *budget; /* NULL: none */
    const char *data;   /* the repository's tests/data */
    const char *dir;    /* parent of the fresh directory */
    const char *svd;    /* eora.svd: exact (the recipe's) | randomized */
} bench_opts;

static int is_full(const bench_opts *o, int i)
{
    /* 3:1 pattern (every 4th layer full attention), and a short stack ends with one */
    return (i + 1) % 4 == 0 || (o->layers >= 2 && o->layers < 4 && i == o->layers - 1);
}

/* ---- random weights ---- */

static uint64_t mix64(uint64_t z)
{
    z ^= z >> 31;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 29;
    z *= 0x94D049BB133111EBull;
    z ^= z >> 32;
    return z;
}

static uint64_t name_seed(const char *name, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ seed; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) h = (h ^ *c) * 1099511628211ull;
    return mix64(h);
}

/* x[i] = centre + U(−amp, amp), a counter-based stream per tensor: the same for any thread count */
static void fill_uniform(float *x, int64_t n, float centre, float amp, uint64_t seed)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = mix64((uint64_t)i * 0x9E3779B97F4A7C15ull + seed);
        x[i] = centre + amp * (float)((double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
}

typedef struct {
    st_writer *w;
    uint64_t seed;
    float *buf;
    size_t cap;
} gen_ctx;

static int put(gen_ctx *g, const char *name, int ndim, const int64_t *shape, float centre, float amp)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if ((size_t)n > g->cap) {
        free(g->buf);
        g->cap = (size_t)n;
        g->buf = xmalloc_aligned(g->cap * sizeof(float));
    }
    fill_uniform(g->buf, n, centre, amp, name_seed(name, g->seed));
    return st_writer_add_f32(g->w, name, DT_BF16, ndim, shape, g->buf);
}

static int put_linear(gen_ctx *g, const char *name, int out, int in)
{
    int64_t s[2] = {out, in};
    return put(g, name, 2, s, 0.0f, sqrtf(3.0f / (float)in)); /* std 1/√in */
}

static int put_vec(gen_ctx *g, const char *name, int n, float centre, float amp)
{
    int64_t s[1] = {n};
    return put(g, name, 1, s, centre, amp);
}

#define VOCAB 4096
#define PREFIX "model.language_model."

static int write_weights(const bench_opts *o, const char *model_dir)
{
    const preset *p = o->p;
    gen_ctx g = {.w = st_writer_open(model_dir, "model", (size_t)2 << 30), .seed = o->seed};
    if (!g.w) return -1;
    int rc = st_writer_set_metadata(g.w, "format", "pt");
    const int d = p->hidden, H = p->heads, G = p->kv_heads, D = p->head_dim;
    const int Hk = p->lin_k_heads, Hv = p->lin_v_heads, dk = p->lin_k_dim, dv = p->lin_v_dim;
    const int cd = 2 * Hk * dk + Hv * dv;
    char n[256];
#define N(fmt, ...) (snprintf(n, sizeof n, PREFIX fmt, __VA_ARGS__), n)
    {
        int64_t s[2] = {VOCAB, d};
        if (!rc) rc = put(&g, PREFIX "embed_tokens.weight", 2, s, 0.0f, 1.0f);
    }
    for (int L = 0; L < o->layers && !rc; L++) {
        rc = put_vec(&g, N("layers.%d.input_layernorm.weight", L), d, 0.0f, 0.1f);
        if (!rc) rc = put_vec(&g, N("layers.%d.post_attention_layernorm.weight", L), d, 0.0f, 0.1f);
        if (is_full(o, L)) {
            /* q_proj carries the output gate: 2·H·D rows */
            if (!rc) rc = put_linear(&g, N("layers.%d.self_attn.q_proj.weight", L), 2 * H * D, d);
            if (!rc) rc = put_linear(&g, N("layers.%d.self_attn.k_proj.weight", L), G * D, d);
            if (!rc) rc = put_linear(&g, N("layers.%d.self_attn.v_proj.weight", L), G * D, d);
            if (!rc) rc = put_linear(&g, N("layers.%d.self_attn.o_proj.weight", L), d, H * D);
            if (!rc) rc = put_vec(&g, N("layers.%d.self_attn.q_norm.weight", L), D, 0.0f, 0.1f);
            if (!rc) rc = put_vec(&g, N("layers.%d.self_attn.k_norm.weight", L), D, 0.0f, 0.1f);
        } else {
            if (!rc) rc = put_linear(&g, N("layers.%d.linear_attn.in_proj_qkv.weight", L), cd, d);
            if (!rc) rc = put_linear(&g, N("layers.%d.linear_attn.in_proj_z.weight", L), Hv * dv, d);
            if (!rc) rc = put_linear(&g, N("layers.%d.linear_attn.in_proj_a.weight", L), Hv, d);
            if (!rc) rc = put_linear(&g, N("layers.%d.linear_attn.in_proj_b.weight", L), Hv, d);
            if (!rc) rc = put_linear(&g, N("layers.%d.linear_attn.out_proj.weight", L), d, Hv * dv);
            int64_t cs[3] = {cd, 1, 4};
            if (!rc) rc = put(&g, N("layers.%d.linear_attn.conv1d.weight", L), 3, cs, 0.0f, 0.5f);
            if (!rc) rc = put_vec(&g, N("layers.%d.linear_attn.A_log", L), Hv, 1.0f, 0.9f);
            if (!rc) rc = put_vec(&g, N("layers.%d.linear_attn.dt_bias", L), Hv, 0.85f, 0.1f);
            /* the gated RMSNorm multiplies by its weight directly (not 1 + w) */
            if (!rc) rc = put_vec(&g, N("layers.%d.linear_attn.norm.weight", L), dv, 1.0f, 0.05f);
        }
        if (!rc) rc = put_linear(&g, N("layers.%d.mlp.gate_proj.weight", L), p->intermediate, d);
        if (!rc) rc = put_linear(&g, N("layers.%d.mlp.up_proj.weight", L), p->intermediate, d);
        if (!rc) rc = put_linear(&g, N("layers.%d.mlp.down_proj.weight", L), d, p->intermediate);
    }
#undef N
    if (!rc) rc = put_vec(&g, PREFIX "norm.weight", d, 0.0f, 0.1f);
    if (!rc) rc = put_linear(&g, "lm_head.weight", VOCAB, d);
    free(g.buf);
    if (rc) {
        st_writer_abort(g.w);
        return err_prefix("writing the synthetic checkpoint");
    }
    return st_writer_finish(g.w);
}

/* ---- config.json, tokenizer ---- */

static void set_num(cJSON *obj, const char *key, double v)
{
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, cJSON_CreateNumber(v));
    else
        cJSON_AddNumberToObject(obj, key, v);
}

static int write_config(const bench_opts *o, const char *tiny, const char *model_dir)
{
    char *src = fs_join(tiny, "config.json");
    cJSON *root = fs_read_json(src);
    cJSON *tc = root ? cJSON_GetObjectItemCaseSensitive(root, "text_config") : NULL;
    if (!cJSON_IsObject(tc)) {
        cJSON_Delete(root);
        err_set("%s: expected a JSON object with text_config", src);
        free(src);
        return -1;
    }
    free(src);
    const preset *p = o->p;
    set_num(tc, "hidden_size", p->hidden);
    set_num(tc, "intermediate_size", p->intermediate);
    set_num(tc, "num_attention_heads", p->heads);
    set_num(tc, "num_key_value_heads", p->kv_heads);
    set_num(tc, "head_dim", p->head_dim);
    set_num(tc, "linear_num_key_heads", p->lin_k_heads);
    set_num(tc, "linear_num_value_heads", p->lin_v_heads);
    set_num(tc, "linear_key_head_dim", p->lin_k_dim);
    set_num(tc, "linear_value_head_dim", p->lin_v_dim);
    set_num(tc, "linear_conv_kernel_dim", 4);
    set_num(tc, "num_hidden_layers", o->layers);
    set_num(tc, "vocab_size", VOCAB);
    set_num(tc, "max_position_embeddings", 262144);
    cJSON *lt = cJSON_CreateArray();
    for (int i = 0; i < o->layers; i++)
        cJSON_AddItemToArray(lt, cJSON_CreateString(is_full(o, i) ? "full_attention" : "linear_attention"));
    if (cJSON_GetObjectItemCaseSensitive(tc, "layer_types"))
        cJSON_ReplaceItemInObjectCaseSensitive(tc, "layer_types", lt);
    else
        cJSON_AddItemToObject(tc, "layer_types", lt);
    /* Qwen3.5's M-RoPE sections split rotary_dim / 2 = 32 frequencies as 11, 11, 10 (text-only
     * positions make it plain RoPE; kept consistent with head_dim for other readers) */
    cJSON *rp = cJSON_GetObjectItemCaseSensitive(tc, "rope_parameters");
    if (cJSON_IsObject(rp) && cJSON_GetObjectItemCaseSensitive(rp, "mrope_section")) {
        int half = p->head_dim / 8; /* rotary_dim / 2 with partial_rotary_factor 0.25 */
        int sec[3] = {(half + 2) / 3, (half + 1) / 3, half / 3};
        cJSON_ReplaceItemInObjectCaseSensitive(rp, "mrope_section", cJSON_CreateIntArray(sec, 3));
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "vision_config"); /* no visual tower in this checkpoint */
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    char *dst = fs_join(model_dir, "config.json");
    int rc = fs_write_atomic(dst, s, strlen(s));
    free(dst);
    cJSON_free(s);
    return rc;
}

static int copy_into(const char *src_dir, const char *dst_dir, const char *name)
{
    char *a = fs_join(src_dir, name), *b = fs_join(dst_dir, name);
    int rc = fs_copy_file(a, b);
    free(a);
    free(b);
    return rc;
}

/* ---- the job ---- */

/* single-quoted YAML scalar */
static void yq(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static int write_job(const bench_opts *o, const char *path, const char *model, const char *out, const char *calib)
{
    FILE *f = fopen(path, "w");
    if (!f) return err_set("%s: cannot create the job file: %s", path, strerror(errno));
    fprintf(f, "# bench_pipeline: the published Qwen3.5 recipe on a synthetic '%s' checkpoint\nmodel: ", o->p->name);
    yq(f, model);
    fprintf(f, "\noutput: ");
    yq(f, out);
    fprintf(f, "\nquantize:\n"
               "  method: gptq\n  bits: 4\n  group_size: 128\n  desc_act: true\n  sym: true\n"
               "  damp_percent: 0.05\n  true_sequential: true\n  format: gptq\n"
               "  rules:\n"
               "    - match: '.*\\.self_attn\\.(q|k|v|o)_proj'\n      bits: 8\n"
               "    - match: '.*\\.linear_attn\\.in_proj_(a|b)'\n      skip: true\n"
               "    - match: '.*\\.linear_attn\\.(in_proj_qkv|in_proj_z|out_proj)'\n      bits: 4\n"
               "    - match: '.*\\.mlp\\.(gate|up|down)_proj'\n      bits: 4\n");
    fprintf(f, "eora:\n  rank: %d\n  svd: %s\n", o->rank, o->svd);
    fprintf(f, "calibration:\n  sources:\n    - path: ");
    yq(f, calib);
    /* allow_repeat: synthetic weights, repeated text costs nothing and big N·T never fails */
    fprintf(f, "\n      format: jsonl\n  samples: %d\n  seq_len: %d\n  seed: 0\n  allow_repeat: true\n", o->samples,
            o->seq);
    fprintf(f, "resources:\n  threads: %d\n", o->threads);
    if (o->budget) {
        fprintf(f, "  memory_budget: ");
        yq(f, o->budget);
        fputc('\n', f);
    }
    if (o->batch_tokens > 0) fprintf(f, "  batch_tokens: %d\n", o->batch_tokens);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return err_set("%s: write failed", path);
    return 0;
}

/* ---- report.json → bench lines ---- */

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *mib(double bytes, char *buf, size_t len)
{
    plan_format_bytes((uint64_t)(bytes > 0 ? bytes : 0), buf, (int)len);
    return buf;
}

static int print_results(const bench_opts *o, const char *out_dir, const char *model_dir, const char *job_path,
                         double t_gen, double t_run)
{
    char *path = fs_join(out_dir, "report.json");
    cJSON *r = fs_read_json(path);
    free(path);
    if (!r) return -1;
    const cJSON *cal = cJSON_GetObjectItemCaseSensitive(r, "calibration");
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(r, "totals");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(r, "layers");
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(r, "modules");
    double tokens = num(cal, "tokens");

    /* plan FLOPs (same job, same checkpoint) for the rates */
    job_t job;
    model_config cfg;
    quant_plan plan;
    memset(&plan, 0, sizeof plan);
    st_set *ck = NULL;
    int have_plan = 0;
    if (job_load(job_path, &job) == 0) {
        if (model_config_load(model_dir, &cfg) == 0) {
            if ((ck = st_open(model_dir)) && plan_build(&job, &cfg, ck, NULL, &plan) == 0) have_plan = 1;
            st_close(ck);
            model_config_free(&cfg);
        }
        job_free(&job);
    }
    err_clear();

    /* solve / EoRA / pack seconds; the stage pass (forward to the tap + Hessian accumulation, of
     * which "hessian_syrk" the accumulation) is
     * reported with every module of the tap: stages sharing a tap (in_proj_qkv, in_proj_z) carry
     * the same pass time, counted once per layer */
    double t_solve = 0, t_eora = 0, t_pack = 0, t_stage = 0, t_syrk = 0, seen[16];
    int cur_layer = -1, n_seen = 0, n_q = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, mods)
    {
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "quantized"))) continue;
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(m, "seconds");
        int L = (int)num(m, "layer");
        double th = num(sec, "hessian");
        t_solve += num(sec, "solve"), t_eora += num(sec, "eora"), t_pack += num(sec, "pack"), n_q++;
        if (L != cur_layer) cur_layer = L, n_seen = 0;
        int dup = 0;
        for (int k = 0; k < n_seen; k++) dup |= seen[k] == th;
        if (dup) continue;
        t_stage += th;
        t_syrk += num(sec, "hessian_syrk");
        if (n_seen < 16) seen[n_seen++] = th;
    }
    double t_fwd = 0, t_layers = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, layers)
    {
        int L = (int)num(l, "layer");
        double fs = num(l, "forward_seconds"), ls = num(l, "seconds");
        t_fwd += fs, t_layers += ls;
        double ls_solve = 0, ls_eora = 0;
        cJSON_ArrayForEach(m, mods)
        {
            if ((int)num(m, "layer") != L) continue;
            const cJSON *sec = cJSON_GetObjectItemCaseSensitive(m, "seconds");
            ls_solve += num(sec, "solve"), ls_eora += num(sec, "eora");
        }
        printf("bench pipeline layer %d (%s): %.2f s, forward %.2f s in %d passes (%.0f tok/s per pass, %.0f tok/s "
               "through the layer), GPTQ %.2f s, EoRA %.2f s\n",
               L, is_full(o, L) ? "attention" : "deltanet ", ls, fs, (int)num(l, "forward_passes"),
               num(l, "tokens_per_s"), ls > 0 ? tokens / ls : 0, ls_solve, ls_eora);
    }
    int threads = o->threads;
    double wall = num(tot, "wall_seconds"), t_out = num(tot, "output_seconds");
    double t_cal = num(tot, "calibration_seconds"), t_emb = num(tot, "embed_seconds");
    printf("bench pipeline total: %.2f s in pipeline_run (report wall %.2f s), %.0f calibration tokens x %d layers = "
           "%.0f tok/s overall, %.0f tok/s per layer in the forward passes (tokens x layers / forward time)\n",
           t_run, wall, tokens, o->layers, wall > 0 ? tokens * o->layers / wall : 0,
           t_fwd > 0 ? tokens * o->layers / t_fwd : 0);
    printf("bench pipeline split: calibration %.2f s, embed %.2f s, forward passes %.2f s (stage passes to the taps "
           "with Hessian accumulation %.2f s, of which the SYRK %.2f s; propagation/capture rest %.2f s), GPTQ %.2f s, EoRA %.2f s, pack %.2f "
           "s, other in layers %.2f s, writing %.2f s; checkpoint generation %.2f s (not in the run)\n",
           t_cal, t_emb, t_fwd, t_stage, t_syrk, t_fwd - t_stage, t_solve, t_eora, t_pack,
           t_layers - t_fwd - t_solve - t_eora - t_pack, t_out, t_gen);
    char a[32], b[32], c[32];
    printf("bench pipeline memory: peak RSS %s, plan estimate %s (%.0f%%), activations %s, %s written to the "
           "output (%d quantized modules)\n",
           mib(num(tot, "peak_rss_bytes"), a, sizeof a), mib(num(tot, "estimated_peak_bytes"), b, sizeof b),
           num(tot, "estimated_peak_bytes") > 0 ? 100.0 * num(tot, "peak_rss_bytes") / num(tot, "estimated_peak_bytes")
                                                : 0,
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tot, "activations_spilled")) ? "spilled" : "in RAM",
           mib(num(tot, "bytes_written"), c, sizeof c), n_q);
    if (have_plan) {
        double fwd_flops = plan.flops.forward;
        char extra[128];
        snprintf(extra, sizeof extra, "(plan FLOPs: forward %.3g + Hessian %.3g)", fwd_flops, plan.flops.hessian);
        bench_report("pipeline forward passes + Hessians", t_fwd, fwd_flops + plan.flops.hessian, threads, extra);
        if (t_syrk > 0) bench_report("pipeline Hessian accumulation (SYRK)", t_syrk, plan.flops.hessian, threads, NULL);
        bench_report("pipeline GPTQ solves", t_solve, plan.flops.gptq, threads, NULL);
        if (plan.flops.eora > 0 && t_eora > 0) bench_report("pipeline EoRA", t_eora, plan.flops.eora, threads, NULL);
        plan_free(&plan);
    } else {
        printf("bench pipeline sgemm peak %.1f GFLOP/s (%d threads)\n", bench_sgemm_peak(threads), threads);
    }
    cJSON_Delete(r);
    return 0;
}

/* ---- eval ---- */

static int run_eval(const bench_opts *o, const char *model_dir, const char *out_dir, const char *eval_data)
{
    eval_opts e;
    eval_opts_default(&e);
    e.base = model_dir;
    e.quant = out_dir;
    char *adapter = fs_join(out_dir, "eora");
    e.adapter = o->rank > 0 ? adapter : NULL;
    e.data = eval_data;
    e.seq_len = o->seq;
    e.windows = o->eval_windows;
    e.progress = !o->quiet;
    eval_result res;
    memset(&res, 0, sizeof res);
    double t0 = bench_now();
    int rc = eval_run(&e, &res);
    double dt = bench_now() - t0;
    free(adapter);
    if (rc) return err_prefix("eval");
    printf("bench pipeline eval: %.2f s for %d windows x %d (%lld scored positions, %.0f tok/s through base + "
           "quantized): PPL base %.4f, quant%s %.4f (%+.2f%%), KLD mean %.5f median %.5f p99 %.5f max %.5f, same "
           "top-1 %.2f%% -- random weights: these values only show the eval path runs at these widths\n",
           dt, res.windows, res.seq_len, (long long)res.tokens, dt > 0 ? 2.0 * res.windows * res.seq_len / dt : 0,
           res.ppl_base, o->rank > 0 ? " + EoRA" : "", res.ppl_quant, res.dppl_pct, res.kld_mean, res.kld_median,
           res.kld_p99, res.kld_max, 100.0 * res.same_top1);
    return 0;
}

/* ---- temp directory ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- options ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_pipeline [--size small|9b|27b] [--layers L] [--samples N] [--seq T] [--rank R]\n"
            "                      [--eora-svd exact|randomized] [--budget SIZE] [--batch-tokens N] [--threads N]\n"
            "                      [--seed S] [--data DIR] [--dir DIR] [--keep] [--quiet] [--eval] [--eval-windows W]\n"
            "The whole quantize job on a synthetic Qwen3.5 checkpoint of real widths (random BF16 weights).\n"
            "  --size          small (default: hidden 1024), 9b (4096), 27b (5120)\n"
            "  --layers L      decoder layers (default 4; every 4th is full attention, 2..3 layers end with one)\n"
            "  --samples N     calibration windows (default 8)      --seq T  tokens per window (default 512)\n"
            "  --rank R        EoRA rank (default 64, 0 = off)     --eora-svd exact|randomized (default exact)\n"
            "  --budget SIZE   resources.memory_budget (default none; 0 = none)\n"
            "  --batch-tokens  resources.batch_tokens (default: the job default, 8192)\n"
            "  --threads N     threads (default all cores)          --seed S  weight seed (default 1)\n"
            "  --data DIR      the repository's tests/data (default tests/data: run from the repository root)\n"
            "  --dir DIR       where the fresh work directory is made (default $TMPDIR or /tmp)\n"
            "  --keep          keep the work directory (checkpoint, job.yaml, output)\n"
            "  --quiet         no pipeline progress on stderr\n"
            "  --eval          also run eval (base vs quantized + adapter) on W windows x T of eval.jsonl\n"
            "  --eval-windows  W (default 4)\n");
}

static int int_arg(const char *opt, const char *v, int min, int *out)
{
    if (cli_parse_int(v, min, 1000000000, out) == 0) return 0;
    fprintf(stderr, "bench_pipeline: %s: expected an integer >= %d, got '%s'\n", opt, min, v);
    return -1;
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->p = &PRESETS[0];
    o->layers = 4, o->samples = 8, o->seq = 512, o->rank = 64, o->eval_windows = 4, o->seed = 1;
    o->data = "tests/data";
    o->svd = "exact";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--keep")) { o->keep = 1; continue; }
        if (!strcmp(a, "--quiet")) { o->quiet = 1; continue; }
        if (!strcmp(a, "--eval")) { o->eval = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_pipeline: unknown option or missing value: '%s'\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0, seed = 0;
        if (!strcmp(a, "--size")) {
            o->p = NULL;
            for (size_t k = 0; k < sizeof PRESETS / sizeof *PRESETS; k++)
                if (!strcmp(v, PRESETS[k].name)) o->p = &PRESETS[k];
            if (!o->p) fprintf(stderr, "bench_pipeline: --size: expected small, 9b or 27b, got '%s'\n", v), rc = -1;
        } else if (!strcmp(a, "--layers")) rc = int_arg(a, v, 1, &o->layers);
        else if (!strcmp(a, "--samples")) rc = int_arg(a, v, 1, &o->samples);
        else if (!strcmp(a, "--seq")) rc = int_arg(a, v, 2, &o->seq);
        else if (!strcmp(a, "--rank")) rc = int_arg(a, v, 0, &o->rank);
        else if (!strcmp(a, "--threads")) rc = int_arg(a, v, 0, &o->threads);
        else if (!strcmp(a, "--batch-tokens")) rc = int_arg(a, v, 1, &o->batch_tokens);
        else if (!strcmp(a, "--eval-windows")) rc = int_arg(a, v, 1, &o->eval_windows);
        else if (!strcmp(a, "--seed")) rc = int_arg(a, v, 0, &seed), o->seed = (uint64_t)seed;
        else if (!strcmp(a, "--budget")) {
            uint64_t b = 0;
            if (parse_size(v, &b) != 0) fprintf(stderr, "bench_pipeline: --budget: %s\n", err_msg()), rc = -1;
            o->budget = b ? v : NULL; /* 0 = unlimited */
        } else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--dir")) o->dir = v;
        else if (!strcmp(a, "--eora-svd")) {
            o->svd = v;
            if (strcmp(v, "exact") && strcmp(v, "randomized"))
                fprintf(stderr, "bench_pipeline: --eora-svd: expected exact or randomized, got '%s'\n", v), rc = -1;
        }
        else {
            fprintf(stderr, "bench_pipeline: unknown option '%s'\n", a);
            rc = -1;
        }
        if (rc) return -1;
    }
    return 0;
}

/* ---- main ---- */

static int run(const bench_opts *o, const char *root)
{
    char *model = fs_join(root, "model"), *out = fs_join(root, "out"), *job_path = fs_join(root, "job.yaml");
    char *tiny = fs_join(o->data, "tiny-qwen35"), *text = fs_join(o->data, "text");
    char *calib_rel = fs_join(text, "calib.jsonl"), *eval_rel = fs_join(text, "eval.jsonl");
    char *calib = realpath(calib_rel, NULL), *eval_data = realpath(eval_rel, NULL);
    int rc = -1;
    job_t job;
    memset(&job, 0, sizeof job);
    if (!calib || !eval_data) {
        err_set("%s: not found (run from the repository root, or pass --data DIR)", calib ? eval_rel : calib_rel);
        goto out;
    }
    double t0 = bench_now();
    if (fs_mkdir_p(model) != 0 || write_config(o, tiny, model) != 0 || copy_into(tiny, model, "tokenizer.json") != 0 ||
        copy_into(tiny, model, "tokenizer_config.json") != 0 || write_weights(o, model) != 0)
        goto out;
    double t_gen = bench_now() - t0;
    if (write_job(o, job_path, model, out, calib) != 0) goto out;
    if (job_load(job_path, &job) != 0) goto out;
    pipeline_opts po;
    memset(&po, 0, sizeof po);
    po.quiet = o->quiet;
    po.threads = o->threads;
    fflush(stdout);
    t0 = bench_now();
    if (pipeline_run(&job, &po) != 0) goto out;
    double t_run = bench_now() - t0;
    if (print_results(o, out, model, job_path, t_gen, t_run) != 0) goto out;
    if (o->eval && run_eval(o, model, out, eval_data) != 0) goto out;
    rc = 0;
out:
    job_free(&job);
    free(model), free(out), free(job_path), free(tiny), free(text), free(calib_rel), free(eval_rel);
    free(calib), free(eval_data);
    return rc;
}

int main(int argc, char **argv)
{
    blas_env_reexec(argv); /* the kernels and wait policy bin/gptq-eora runs with */
    bench_opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    o.threads = bench_set_threads(o.threads);
    const char *parent = o.dir ? o.dir : getenv("TMPDIR");
    if (!parent || !*parent) parent = "/tmp";
    char *root = fs_join(parent, "bench_pipeline.XXXXXX");
    if (fs_mkdir_p(parent) != 0 || !mkdtemp(root)) {
        fprintf(stderr, "bench_pipeline: cannot create a directory under %s: %s\n", parent,
                errno ? strerror(errno) : err_msg());
        free(root);
        return 1;
    }
    const preset *p = o.p;
    printf("bench_pipeline: synthetic Qwen3.5 '%s' (hidden %d, MLP %d, attention %d/%d x %d, DeltaNet %d/%d x %d/%d, "
           "vocab %d), %d layers, %d x %d calibration tokens, EoRA rank %d (svd %s), budget %s, %d threads, in %s\n",
           p->name, p->hidden, p->intermediate, p->heads, p->kv_heads, p->head_dim, p->lin_k_heads, p->lin_v_heads,
           p->lin_k_dim, p->lin_v_dim, VOCAB, o.layers, o.samples, o.seq, o.rank, o.svd, o.budget ? o.budget : "none",
           o.threads, root);
    fflush(stdout);
    int rc = run(&o, root);
    if (rc) fprintf(stderr, "bench_pipeline: %s\n", err_msg());
    /* the sgemm yardstick after the run: its buffers must not count in the run's peak RSS */
    if (!rc) printf("bench pipeline sgemm peak: %.1f GFLOP/s (2048^2, %d threads)\n", bench_sgemm_peak(o.threads),
                    o.threads);
    if (o.keep)
        printf("bench_pipeline: kept %s (model/, job.yaml, out/)\n", root);
    else
        remove_tree(root);
    free(root);
    return rc ? 1 : 0;
}
