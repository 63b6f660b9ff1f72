/* The quantization job (tools/pipeline*, io/journal, io/spill): plan and rules, the golden
 * layer-0 Hessian, an end-to-end tiny run, resume after kills, spill == RAM, bad jobs. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "calib/model.h"
#include "gptq/gptq.h"
#include "gptq/hessian.h"
#include "gptq/pack.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/job.h"
#include "io/journal.h"
#include "io/safetensors.h"
#include "io/spill.h"
#include "tests/testlib.h"
#include "tests/testutil.h"
#include "tools/pipeline.h"
#include "tools/pipeline_output.h"
#include "tools/pipeline_plan.h"
#include "tools/pipeline_runner.h"
#include "tools/pipeline_tail.h"

#define TINY TEST_DATA "/tiny-qwen35"
#define GOLDEN TEST_DATA "/golden/gptq_gptqmodel.safetensors"
#define CALIB TEST_DATA "/text/calib.jsonl"

/* ------------------------------------------------------------------ helpers */

static char *tmp_path(const char *name)
{
    return fs_join(test_tmpdir(), name);
}

static void rm_rf(const char *path)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

/* The rules used by the end-to-end runs: the published recipe on layer 0 (DeltaNet) and
 * layer 3 (full attention); the other layers stay float so the runs stay short (layers 1–2
 * still propagate the calibration activations). */
#define E2E_RULES                                          \
    "    - match: '.*\\.layers\\.[124-7]\\..*'\n"         \
    "      skip: true\n"                                   \
    "    - match: '.*\\.self_attn\\.(q|k|v|o)_proj'\n"     \
    "      bits: 8\n"                                      \
    "    - match: '.*\\.mlp\\.down_proj'\n"                \
    "      eora_rank: 16\n"

typedef struct {
    const char *model, *output, *source, *format, *rules, *method, *budget, *spill_dtype, *propagate, *extra;
    int samples, seq_len, eora_rank;
} job_spec;

/* Writes a job file from spec (defaults: tiny model, calib.jsonl, 8 x 128, EoRA 32). */
static char *write_job(const char *name, const job_spec *s)
{
    char *path = tmp_path(name);
    FILE *f = fopen(path, "w");
    if (!f) return path;
    fprintf(f, "model: %s\noutput: %s\n", s->model ? s->model : TINY, s->output);
    fprintf(f, "quantize:\n  method: %s\n  bits: 4\n  group_size: 128\n  desc_act: true\n  sym: true\n",
            s->method ? s->method : "gptq");
    fprintf(f, "  rules:\n%s", s->rules ? s->rules : E2E_RULES);
    fprintf(f, "eora:\n  rank: %d\n", s->eora_rank >= 0 ? s->eora_rank : 32);
    fprintf(f, "calibration:\n  sources:\n    - path: %s\n      format: %s\n", s->source ? s->source : CALIB,
            s->format ? s->format : "jsonl");
    fprintf(f, "  samples: %d\n  seq_len: %d\n  seed: 7\n", s->samples ? s->samples : 8, s->seq_len ? s->seq_len : 128);
    /* shard_size 4 MiB: the ~9 MB checkpoint is written as shards + index */
    fprintf(f, "resources:\n  threads: 2\n  batch_tokens: 512\n  shard_size: 4MiB\n  memory_budget: %s\n"
               "  spill_dtype: %s\n  propagate: %s\n",
            s->budget ? s->budget : "0", s->spill_dtype ? s->spill_dtype : "f32", s->propagate ? s->propagate : "quantized");
    if (s->extra) fputs(s->extra, f);
    fclose(f);
    return path;
}

static job_spec spec_default(const char *output)
{
    job_spec s;
    memset(&s, 0, sizeof s);
    s.output = output;
    s.eora_rank = -1;
    return s;
}

/* Loads and runs a job in this process. Returns pipeline_run's status (err set on -1). */
static int run_job_log(const char *job_path, int dry_run, const char *log_path)
{
    job_t job;
    memset(&job, 0, sizeof job);
    if (job_load(job_path, &job) != 0) return -2;
    pipeline_opts o;
    memset(&o, 0, sizeof o);
    o.quiet = 1;
    o.dry_run = dry_run;
    o.log_path = log_path;
    int rc = pipeline_run(&job, &o);
    job_free(&job);
    return rc;
}

static int run_job(const char *job_path, int dry_run)
{
    return run_job_log(job_path, dry_run, NULL);
}

/* Runs bin/gptq-eora quantize in a child with one environment variable set; returns the raw
 * wait status. */
static int run_cli(const char *job_path, int resume, const char *env_name, const char *env_value)
{
    const char *bin_dir = getenv("BIN");
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/gptq-eora", bin_dir && *bin_dir ? bin_dir : "bin");
    pid_t pid = fork();
    if (pid == 0) {
        if (env_name) setenv(env_name, env_value, 1);
        /* the same OpenBLAS kernels as this process (see tools/blas_env.h): the bytes
         * are compared with the in-process reference run */
        setenv("OPENBLAS_CORETYPE", openblas_get_corename(), 1);
        if (!freopen("/dev/null", "w", stderr)) _exit(126);
        if (resume) execl(bin, bin, "quantize", job_path, "--resume", "--quiet", (char *)NULL);
        else execl(bin, bin, "quantize", job_path, "--quiet", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static int killed(int status)
{
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}


/* ------------------------------------------------------------------ io/spill, io/journal */

TEST(spill_f32_exact_bf16_rounded)
{
    const int64_t rows = 37;
    const int cols = 19;
    float *x = xmalloc(rows * cols * sizeof(float)), *y = xmalloc(rows * cols * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) x[i] = (float)sin((double)i * 0.37) * 3.1f + 1e-3f * (float)i;
    char *p32 = tmp_path("a.spill"), *p16 = tmp_path("b.spill"), *psave = tmp_path("saved.act");
    act_store *f = act_store_create(p32, rows, cols, DT_F32), *h = act_store_create(p16, rows, cols, DT_BF16);
    act_store *ram = act_store_ram(rows, cols);
    REQUIRE(f && h && ram);
    /* written in two ranges, read back in other ranges */
    CHECK(act_store_write(f, 0, 10, x) == 0 && act_store_write(f, 10, rows - 10, x + 10 * cols) == 0);
    CHECK(act_store_write(h, 0, rows, x) == 0);
    CHECK(act_store_write(ram, 0, rows, x) == 0);
    CHECK(act_store_read(f, 0, rows, y) == 0);
    CHECK(memcmp(x, y, rows * cols * sizeof(float)) == 0);
    CHECK(act_store_read(h, 5, 3, y) == 0);
    int ok = 1;
    for (int i = 0; i < 3 * cols; i++) ok &= y[i] == bf16_to_f32(f32_to_bf16(x[5 * cols + i]));
    CHECK(ok);
    CHECK(act_store_read(f, rows - 1, 2, y) != 0); /* outside */
    /* a RAM store saved and loaded back is exact; reopening checks the header */
    CHECK(act_store_save(ram, psave) == 0);
    act_store *back = act_store_load(psave, rows, cols);
    REQUIRE(back);
    CHECK(act_store_read(back, 0, rows, y) == 0 && memcmp(x, y, rows * cols * sizeof(float)) == 0);
    CHECK(act_store_open(psave, rows + 1, cols, DT_F32) == NULL);
    CHECK(strstr(err_msg(), "saved.act") != NULL);
    act_store_close(back);
    act_store_close(ram);
    act_store_close_unlink(f);
    act_store_close_unlink(h);
    CHECK(!fs_exists(p32));
    free(p32);
    free(p16);
    free(psave);
    free(x);
    free(y);
}

TEST(journal_append_resume_fingerprint)
{
    char *p = tmp_path("journal.jsonl");
    journal *j = journal_create(p, "fp-1");
    REQUIRE(j);
    CHECK(journal_append(j, "{\"layer\": 0, \"x\": 1.5}") == 0);
    CHECK(journal_append(j, "{\"layer\":1}") == 0);
    CHECK(journal_append(j, "not json") != 0);
    journal_close(j);
    j = journal_resume(p, "fp-1");
    REQUIRE(j);
    CHECK(journal_count(j) == 2);
    CHECK(!strcmp(journal_entry(j, 0), "{\"layer\":0,\"x\":1.5}"));
    journal_close(j);
    CHECK(journal_resume(p, "fp-2") == NULL);
    CHECK(strstr(err_msg(), "fingerprint") != NULL);
    j = journal_create(p, "fp-2"); /* a fresh run replaces it */
    REQUIRE(j);
    CHECK(journal_count(j) == 0);
    CHECK(journal_remove(j) == 0);
    journal_close(j);
    CHECK(!fs_exists(p));
    CHECK(journal_resume(p, "fp-2") == NULL);
    free(p);
}

/* ------------------------------------------------------------------ plan */

TEST(plan_rules_and_quant_config)
{
    char *out = tmp_path("plan-out");
    job_spec s = spec_default(out);
    s.rules = "    - match: '.*\\.self_attn\\.(q|k|v|o)_proj'\n      bits: 8\n"
              "    - match: '.*\\.layers\\.5\\.mlp\\..*'\n      skip: true\n"
              "    - match: '.*\\.linear_attn\\.in_proj_(a|b)'\n      skip: true\n"
              "    - match: '.*\\.mlp\\.down_proj'\n      eora_rank: 8\n      group_size: 64\n"
              "    - match: '.*\\.mlp\\.gate_proj'\n      eora_rank: 0\n"
              "    - match: '.*\\.nothing_like_this'\n      bits: 2\n";
    char *jp = write_job("plan.yaml", &s);
    job_t job;
    memset(&job, 0, sizeof job);
    REQUIRE(job_load(jp, &job) == 0);
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    st_set *ck = st_open(TINY);
    REQUIRE(ck);
    char *warn_path = tmp_path("warn.txt");
    FILE *warn = fopen(warn_path, "w+");
    quant_plan p;
    REQUIRE(plan_build(&job, &cfg, ck, warn, &p) == 0);
    fclose(warn);
    char *w = fs_read_file(warn_path, NULL);
    /* the rule that matches nothing is reported; in_proj_a/b count as matches of rule 2 */
    CHECK(w && strstr(w, "rules[5]") && strstr(w, "nothing_like_this"));
    CHECK(w && !strstr(w, "rules[2]"));
    free(w);
    /* 6 DeltaNet layers × 6 linears + 2 attention layers × 7 */
    CHECK(p.n_mods == 50);
    CHECK(p.rule_hits[2] == 12 && p.rule_hits[5] == 0 && p.rule_hits[0] == 8);
    int i = plan_find(&p, "model.language_model.layers.3.self_attn.q_proj");
    REQUIRE(i >= 0);
    CHECK(p.mods[i].bits == 8 && p.mods[i].group_size == 128 && p.mods[i].eora_rank == 32 && p.mods[i].quantize);
    CHECK(p.mods[i].out == 512 && p.mods[i].in == 256 && p.mods[i].stage == 0);
    i = plan_find(&p, "model.language_model.layers.3.self_attn.o_proj");
    CHECK(i >= 0 && p.mods[i].stage == 1 && p.mods[i].bits == 8);
    i = plan_find(&p, "model.language_model.layers.0.linear_attn.in_proj_z");
    CHECK(i >= 0 && p.mods[i].bits == 4 && p.mods[i].stage == 1 && p.mods[i].rule == -1);
    CHECK(plan_find(&p, "model.language_model.layers.0.linear_attn.in_proj_a") < 0);
    i = plan_find(&p, "model.language_model.layers.5.mlp.up_proj");
    CHECK(i >= 0 && !p.mods[i].quantize && p.mods[i].eora_rank == 0);
    i = plan_find(&p, "model.language_model.layers.1.mlp.down_proj");
    CHECK(i >= 0 && p.mods[i].eora_rank == 8 && p.mods[i].group_size == 64 && p.mods[i].bits == 4);
    i = plan_find(&p, "model.language_model.layers.1.mlp.gate_proj");
    CHECK(i >= 0 && p.mods[i].eora_rank == 0 && p.mods[i].quantize);
    CHECK(p.n_quantized == 47 && p.need_calib && !p.spill);
    CHECK(p.mem.activations == (uint64_t)8 * 128 * (256 + 256) * 4);
    CHECK(p.flops.forward > 0 && p.flops.gptq > 0 && p.flops.eora > 0);

    /* quantization_config: defaults on top, differences in dynamic, in rule order */
    cJSON *qc = output_quant_config(&job, &p);
    const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(qc, "dynamic");
    CHECK(cJSON_GetObjectItemCaseSensitive(qc, "bits")->valueint == 4);
    CHECK(cJSON_GetObjectItemCaseSensitive(qc, "group_size")->valueint == 128);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(qc, "desc_act")));
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(qc, "format")->valuestring, "gptq"));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(dyn, "+:(?:.*\\.self_attn\\.(q|k|v|o)_proj)$");
    CHECK(e && cJSON_GetObjectItemCaseSensitive(e, "bits")->valueint == 8);
    CHECK(cJSON_GetObjectItemCaseSensitive(dyn, "-:(?:.*\\.layers\\.5\\.mlp\\..*)$") != NULL);
    e = cJSON_GetObjectItemCaseSensitive(dyn, "+:(?:.*\\.mlp\\.down_proj)$");
    CHECK(e && cJSON_GetObjectItemCaseSensitive(e, "group_size")->valueint == 64 &&
          !cJSON_GetObjectItemCaseSensitive(e, "bits"));
    CHECK(!cJSON_GetObjectItemCaseSensitive(dyn, "+:(?:.*\\.mlp\\.gate_proj)$")); /* nothing to override */
    CHECK(!cJSON_GetObjectItemCaseSensitive(dyn, "+:(?:.*\\.nothing_like_this)$")); /* matches nothing */
    CHECK(cJSON_GetArraySize(dyn) == 4);
    /* read the way GPTQModel and vLLM do (re.match: anchored at the start only, first key wins),
     * dynamic gives every module the bits / skip the job planned, and a name that merely starts
     * like a module (rule = prefix of it) takes no rule */
    for (int k = 0; k <= p.n_mods; k++) {
        const char *name = k < p.n_mods ? p.mods[k].name : "model.language_model.layers.3.self_attn.q_proj_extra";
        int bits = 4, skip = 0;
        const cJSON *rule;
        cJSON_ArrayForEach(rule, dyn)
        {
            int neg = rule->string[0] == '-';
            int ec;
            PCRE2_SIZE eo;
            pcre2_code *re = pcre2_compile((PCRE2_SPTR)rule->string + 2, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &ec, &eo, NULL);
            REQUIRE(re);
            pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
            int hit = pcre2_match(re, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0;
            pcre2_match_data_free(md);
            pcre2_code_free(re);
            if (!hit) continue;
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(rule, "bits");
            skip = neg, bits = b ? b->valueint : bits;
            break;
        }
        if (k < p.n_mods)
            CHECK_MSG(skip == !p.mods[k].quantize && (skip || bits == p.mods[k].bits), "%s", name);
        else
            CHECK(bits == 4 && !skip);
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(qc, "meta");
    const cJSON *qz = cJSON_GetObjectItemCaseSensitive(meta, "quantizer");
    CHECK(qz && !strncmp(cJSON_GetArrayItem(qz, 0)->valuestring, "gptq-eora:", 10));
    cJSON_Delete(qc);

    /* a tight memory budget moves the activations to spill files */
    plan_free(&p);
    job.memory_budget = 1u << 20;
    REQUIRE(plan_build(&job, &cfg, ck, NULL, &p) == 0);
    CHECK(p.spill && p.mem.activations == 0 && p.mem.spill_disk == 3ull * 8 * 128 * 256 * 4);
    plan_free(&p);
    st_close(ck);
    model_config_free(&cfg);
    job_free(&job);

    /* --dry-run writes nothing (its plan goes to stdout: silenced here) */
    fflush(stdout);
    int saved = dup(1);
    if (!freopen("/dev/null", "w", stdout)) saved = -1;
    int dry = run_job(jp, 1);
    fflush(stdout);
    if (saved >= 0) {
        dup2(saved, 1);
        close(saved);
    }
    CHECK(dry == 0);
    CHECK(!fs_exists(out));
    free(warn_path);
    free(jp);
    free(out);
}

TEST(plan_invalid_regex_is_an_error)
{
    job_spec s = spec_default("/tmp/unused");
    s.rules = "    - match: '.*\\.self_attn\\.(q|k'\n      bits: 8\n";
    char *jp = write_job("badre.yaml", &s);
    job_t job;
    memset(&job, 0, sizeof job);
    CHECK(job_load(jp, &job) != 0);
    CHECK(strstr(err_msg(), "badre.yaml") != NULL);
    free(jp);
}

/* ------------------------------------------------------------------ layer tail */

typedef struct {
    float *dst;
    int tap;
} tap_copy;

static int copy_tap(void *ctx, tap_id t, const float *x, int64_t rows, int cols)
{
    tap_copy *c = ctx;
    if ((int)t != c->tap) return 0;
    memcpy(c->dst, x, (size_t)rows * cols * sizeof(float));
    return 1;
}

/* The pipeline runs the MLP stages and the propagation from the captured mixer output; that
 * must give the same bits as the whole layer_forward. */
TEST(layer_tail_equals_layer_forward)
{
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    st_set *ck = st_open(TINY);
    REQUIRE(ck);
    const int B = 2, T = 64, d = cfg.hidden;
    const int64_t N = (int64_t)B * T;
    int32_t ids[2 * 64];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 37 + 11) % cfg.vocab;
    float *x = xmalloc(N * d * sizeof(float)), *ref = xmalloc(N * d * sizeof(float));
    float *got = xmalloc(N * d * sizeof(float)), *mix = xmalloc(N * 4096 * sizeof(float));
    REQUIRE(model_embed(ck, &cfg, ids, N, x) == 0);
    for (int L = 0; L < 4; L += 3) { /* a DeltaNet layer and a full-attention layer */
        layer_weights lw;
        REQUIRE(layer_weights_load(ck, &cfg, L, &lw) == 0);
        REQUIRE(layer_forward(&cfg, &lw, x, ref, B, T, NULL, NULL) == 0);
        tap_copy c = {mix, lw.type == LAYER_FULL_ATTN ? TAP_ATTN_O : TAP_LIN_OUT};
        CHECK(layer_forward(&cfg, &lw, x, got, B, T, copy_tap, &c) == 1);
        memset(got, 0, N * d * sizeof(float));
        CHECK(layer_tail(&cfg, &lw, x, mix, got, N, NULL, NULL) == 0);
        CHECK_MSG(memcmp(got, ref, N * d * sizeof(float)) == 0, "layer %d: layer_tail differs from layer_forward", L);
        /* a tap stops it and leaves h_out alone */
        c.tap = TAP_MLP_DOWN;
        CHECK(layer_tail(&cfg, &lw, x, mix, got, N, copy_tap, &c) == 1);
        layer_weights_free(&lw);
    }
    free(x);
    free(ref);
    free(got);
    free(mix);
    st_close(ck);
    model_config_free(&cfg);
}

/* ------------------------------------------------------------------ golden Hessian */

/* With GPTQModel's own calibration ids (128 × 512) as an `ids` source, the pipeline's layer-0
 * Hessian of linear_attn.in_proj_qkv equals GPTQModel's within 1e-5 relative, and GPTQ on it
 * reproduces GPTQModel's b4_g128_act codes for ≥ 99.9% of the weights. */
TEST(golden_layer0_hessian_and_codes)
{
    job_spec s = spec_default("/tmp/unused-golden");
    s.source = GOLDEN ":calib_input_ids";
    s.format = "ids";
    s.samples = 128;
    s.seq_len = 512;
    char *jp = write_job("golden.yaml", &s);
    job_t job;
    memset(&job, 0, sizeof job);
    REQUIRE(job_load(jp, &job) == 0);
    job.batch_tokens = 8192;
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    st_set *ck = st_open(TINY), *gold = st_open(GOLDEN);
    REQUIRE(ck && gold);
    quant_plan p;
    REQUIRE(plan_build(&job, &cfg, ck, NULL, &p) == 0);
    token_windows w;
    REQUIRE(pipeline_calibration(&job, &cfg, &w) == 0);
    const st_tensor *ids = st_find(gold, "calib_input_ids");
    REQUIRE(ids && ids->numel == (int64_t)w.n * w.T);
    int same = 1;
    for (int64_t i = 0; i < ids->numel; i++)
        same &= (ids->dtype == DT_I64 ? ((const int64_t *)ids->data)[i] : ((const int32_t *)ids->data)[i]) == w.ids[i];
    CHECK_MSG(same, "calibration windows are not the golden ids row for row");
    act_store *x = act_store_ram((int64_t)w.n * w.T, cfg.hidden);
    REQUIRE(pipeline_embed(ck, &cfg, &w, p.seqs_per_batch, x) == 0);
    layer_weights lw;
    REQUIRE(layer_weights_load(ck, &cfg, 0, &lw) == 0);
    runner r;
    memset(&r, 0, sizeof r);
    r.job = &job;
    r.cfg = &cfg;
    r.ckpt = ck;
    r.plan = &p;
    r.T = w.T;
    r.n_seqs = w.n;
    r.x = x;
    hessian_acc h;
    hessian_init(&h, 256);
    REQUIRE(runner_tap_hessian(&r, &lw, TAP_LIN_IN, &h) == 0);
    CHECK(h.count == 65536);
    float *H = xmalloc(256 * 256 * sizeof(float));
    hessian_finalize(&h, H);
    float *Hg = st_load_f32(gold, "l0.in_proj_qkv.H_gptqmodel", NULL);
    REQUIRE(Hg);
    double maxd = 0, maxa = 0;
    for (int i = 0; i < 256 * 256; i++) {
        maxd = fmax(maxd, fabs((double)H[i] - Hg[i]));
        maxa = fmax(maxa, fabs((double)Hg[i]));
    }
    CHECK_MSG(maxd / maxa <= 1e-5, "layer-0 Hessian: max |Δ| / max |H| = %.3g", maxd / maxa);

    /* the codes GPTQ gives with it: same solver options as the job (b4 g128 desc_act sym) */
    int mi = plan_find(&p, "model.language_model.layers.0.linear_attn.in_proj_qkv");
    REQUIRE(mi >= 0);
    gptq_opts go;
    gptq_opts_default(&go);
    go.bits = 4;
    go.group_size = 128;
    gptq_result q;
    linear_t *l = layer_linear(&lw, "in_proj_qkv");
    REQUIRE(l && gptq_solve("in_proj_qkv", l->w, l->out, l->in, H, h.count, &go, &q) == 0);
    gptq_packed pk;
    REQUIRE(gptq_pack_dtype(&q, GPTQ_FMT_V2, DT_BF16, &pk) == 0);
    const st_tensor *gq = st_find(gold, "l0.in_proj_qkv.b4_g128_act.qweight");
    REQUIRE(gq && gq->numel == (int64_t)pk.qw_rows * pk.out);
    int64_t match = 0, total = 0;
    for (int64_t i = 0; i < gq->numel; i++) {
        uint32_t a = (uint32_t)pk.qweight[i], b = ((const uint32_t *)gq->data)[i];
        for (int k = 0; k < 8; k++, total++) match += ((a >> (4 * k)) & 15) == ((b >> (4 * k)) & 15);
    }
    CHECK_MSG(match >= 0.999 * total, "codes identical for %lld of %lld", (long long)match, (long long)total);
    gptq_packed_free(&pk);
    gptq_result_free(&q);
    free(H);
    free(Hg);
    hessian_free(&h);
    layer_weights_free(&lw);
    act_store_close(x);
    token_windows_free(&w);
    plan_free(&p);
    st_close(gold);
    st_close(ck);
    model_config_free(&cfg);
    job_free(&job);
    free(jp);
}

/* ------------------------------------------------------------------ end to end */

static char *e2e_ref; /* output of the reference run (moved aside), shared by later tests */

static int32_t *load_i32(const st_set *s, const char *name, const st_tensor **t)
{
    *t = st_find(s, name);
    return *t && (*t)->dtype == DT_I32 ? (int32_t *)(*t)->data : NULL;
}

TEST(end_to_end_tiny_run)
{
    char *out = tmp_path("e2e");
    rm_rf(out);
    job_spec s = spec_default(out);
    char *jp = write_job("e2e.yaml", &s);
    int rc = run_job(jp, 0);
    REQUIRE(rc == 0 || (printf("    %s\n", err_msg()), 0));
    static const char *expect[] = {"config.json", "quantize_config.json", "model.safetensors.index.json", "quant_log.csv",
                                   "report.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                   "eora/adapter_model.safetensors", "eora/adapter_config.json"};
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++) {
        char *p = fs_join(out, expect[i]);
        CHECK_MSG(fs_exists(p), "missing %s", p);
        free(p);
    }
    char *work = fs_join(out, ".gptq-eora-work");
    CHECK_MSG(!fs_exists(work), "work directory left behind");
    free(work);

    st_set *in = st_open(TINY), *q = st_open(out);
    REQUIRE(in && q);
    CHECK_MSG(st_file_count(q) > 1, "shard_size 4 MiB gave %zu shard(s)", st_file_count(q));
    job_t job;
    memset(&job, 0, sizeof job);
    REQUIRE(job_load(jp, &job) == 0);
    model_config cfg;
    REQUIRE(model_config_load(TINY, &cfg) == 0);
    quant_plan p;
    REQUIRE(plan_build(&job, &cfg, in, NULL, &p) == 0);
    CHECK(p.n_quantized == 6 + 7);
    /* every tensor that is not a quantized weight: same name, dtype, bytes */
    int copied = 0, bad = 0;
    for (size_t i = 0; i < st_count(in); i++) {
        const st_tensor *t = st_get(in, i);
        char mod[256];
        size_t l = strlen(t->name);
        snprintf(mod, sizeof mod, "%.*s", (int)(l > 7 ? l - 7 : l), t->name);
        int mi = plan_find(&p, mod);
        if (mi >= 0 && p.mods[mi].quantize && !strcmp(t->name + l - 7, ".weight")) {
            CHECK_MSG(!st_find(q, t->name), "%s: float weight still present", t->name);
            continue;
        }
        const st_tensor *o = st_find(q, t->name);
        if (!o || o->dtype != t->dtype || o->nbytes != t->nbytes || memcmp(o->data, t->data, t->nbytes)) {
            printf("    %s not copied bit-exact\n", t->name);
            bad++;
        }
        copied++;
    }
    CHECK(bad == 0 && copied == (int)st_count(in) - p.n_quantized);
    CHECK(st_find(q, "model.visual.blocks.0.attn.qkv.weight") && st_find(q, "mtp.fc.weight") &&
          st_find(q, "lm_head.weight") && st_find(q, "model.language_model.layers.0.linear_attn.in_proj_a.weight"));
    /* quantized modules: qzeros of symmetric modules, dequantized weights near the originals */
    st_set *ad = NULL;
    char *adp = fs_join(out, "eora/adapter_model.safetensors");
    ad = st_open(adp);
    free(adp);
    REQUIRE(ad);
    int n_lora = 0;
    for (int i = 0; i < p.n_mods; i++) {
        const plan_module *m = &p.mods[i];
        if (!m->quantize) continue;
        char name[256];
        const st_tensor *tw, *tz, *ts, *tg;
        snprintf(name, sizeof name, "%s.qweight", m->name);
        int32_t *qw = load_i32(q, name, &tw);
        snprintf(name, sizeof name, "%s.qzeros", m->name);
        int32_t *qz = load_i32(q, name, &tz);
        snprintf(name, sizeof name, "%s.g_idx", m->name);
        int32_t *gi = load_i32(q, name, &tg);
        snprintf(name, sizeof name, "%s.scales", m->name);
        ts = st_find(q, name);
        if (!qw || !qz || !gi || !ts || ts->dtype != DT_F16) {
            test_fail(__FILE__, __LINE__, "%s: packed tensors missing or mistyped", m->name);
            continue;
        }
        int n_groups = (m->in + m->group_size - 1) / m->group_size;
        CHECK(tw->shape[0] == m->in * m->bits / 32 && tw->shape[1] == m->out);
        CHECK(tz->shape[0] == n_groups && tz->shape[1] == m->out * m->bits / 32);
        CHECK(ts->shape[0] == n_groups && ts->shape[1] == m->out && tg->shape[0] == m->in);
        uint32_t want = m->bits == 4 ? 0x77777777u : 0x7f7f7f7fu;
        int zeros_ok = 1;
        for (int64_t k = 0; k < tz->numel; k++) zeros_ok &= (uint32_t)qz[k] == want;
        CHECK_MSG(zeros_ok, "%s: qzeros words are not 0x%08x", m->name, want);
        gptq_packed pk = {.bits = m->bits, .in = m->in, .out = m->out, .n_groups = n_groups,
                          .qweight = qw, .qzeros = qz, .scales = (uint16_t *)ts->data, .g_idx = gi,
                          .qw_rows = (int)tw->shape[0], .qz_cols = (int)tz->shape[1]};
        float *Wd = xmalloc((size_t)m->out * m->in * sizeof(float));
        snprintf(name, sizeof name, "%s.weight", m->name);
        float *W = st_load_f32(in, name, NULL);
        REQUIRE(W && gptq_unpack_dequant(&pk, GPTQ_FMT_V1, Wd) == 0);
        /* relative Frobenius error against plain round-to-nearest on the same grid */
        gptq_opts go;
        gptq_opts_default(&go);
        go.bits = m->bits;
        go.group_size = m->group_size;
        gptq_result rt;
        REQUIRE(gptq_rtn(m->name, W, m->out, m->in, &go, &rt) == 0);
        double e = 0, ertn = 0, nw = 0;
        for (int64_t k = 0; k < (int64_t)m->out * m->in; k++) {
            e += ((double)W[k] - Wd[k]) * ((double)W[k] - Wd[k]);
            ertn += ((double)W[k] - rt.Q[k]) * ((double)W[k] - rt.Q[k]);
            nw += (double)W[k] * W[k];
        }
        e = sqrt(e / nw);
        ertn = sqrt(ertn / nw);
        CHECK_MSG(e <= 2.0 * ertn && e < (m->bits == 8 ? 0.01 : 0.2), "%s: relative weight error %.4f (RTN %.4f)",
                  m->name, e, ertn);
        gptq_result_free(&rt);
        free(W);
        free(Wd);
        /* adapter tensors: [r, in] and [out, r] in the module dtype */
        if (m->eora_rank > 0) {
            char an[256], bn[256];
            runner_lora_name(m->name, "lora_A", an, sizeof an);
            runner_lora_name(m->name, "lora_B", bn, sizeof bn);
            const st_tensor *A = st_find(ad, an), *B = st_find(ad, bn);
            CHECK_MSG(A && B && A->dtype == m->dtype && B->dtype == m->dtype && A->shape[0] == m->eora_rank &&
                          A->shape[1] == m->in && B->shape[0] == m->out && B->shape[1] == m->eora_rank,
                      "%s: adapter tensors", m->name);
            n_lora += 2;
        }
    }
    CHECK(n_lora == 2 * p.n_eora && (int)st_count(ad) == n_lora);
    /* EoRA lowers the loss; quant_log has one row per quantized module with samples */
    char *rp = fs_join(out, "report.json");
    char *rt = fs_read_file(rp, NULL);
    cJSON *rep = rt ? cJSON_Parse(rt) : NULL;
    REQUIRE(rep);
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(rep, "modules"), *mo;
    int n_better = 0, n_e = 0;
    cJSON_ArrayForEach(mo, mods)
    {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(mo, "eora_loss_before"),
                    *a = cJSON_GetObjectItemCaseSensitive(mo, "eora_loss_after");
        if (!b || !a) continue;
        n_e++;
        n_better += a->valuedouble < b->valuedouble;
    }
    CHECK(n_e == p.n_eora && n_better == n_e);
    /* each quantized module's Hessian pass time includes its accumulation time */
    int n_timed = 0, n_bad_t = 0;
    cJSON_ArrayForEach(mo, mods)
    {
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(mo, "seconds");
        if (!sec) continue;
        double th = cJSON_GetObjectItemCaseSensitive(sec, "hessian")->valuedouble;
        const cJSON *sy = cJSON_GetObjectItemCaseSensitive(sec, "hessian_syrk");
        n_timed++;
        n_bad_t += !cJSON_IsNumber(sy) || !(sy->valuedouble > 0) || sy->valuedouble > th;
    }
    CHECK(n_timed > 0 && n_bad_t == 0);
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(rep, "totals");
    CHECK(cJSON_GetObjectItemCaseSensitive(tot, "peak_rss_bytes")->valuedouble > 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(tot, "bytes_written")->valuedouble > 8e6);
    cJSON_Delete(rep);
    free(rt);
    free(rp);
    char *lp = fs_join(out, "quant_log.csv");
    char *log = fs_read_file(lp, NULL);
    REQUIRE(log);
    int lines = 0;
    for (char *c = log; *c; c++) lines += *c == '\n';
    CHECK(lines == 1 + p.n_quantized);
    CHECK(!strncmp(log, "layer,module,loss,samples,damp,time\n0,linear_attn.in_proj_qkv,", 41));
    CHECK(strstr(log, ",1024,0.05000,") != NULL);
    free(log);
    free(lp);
    /* config.json = input config + quantization_config with 8-bit attention in dynamic */
    char *cp = fs_join(out, "config.json");
    char *ct = fs_read_file(cp, NULL);
    cJSON *c = ct ? cJSON_Parse(ct) : NULL;
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(c, "quantization_config");
    CHECK(qc && cJSON_GetObjectItemCaseSensitive(c, "text_config") &&
          cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(qc, "dynamic"),
                                           "+:(?:.*\\.self_attn\\.(q|k|v|o)_proj)$"));
    cJSON_Delete(c);
    free(ct);
    free(cp);

    st_close(ad);
    st_close(q);
    st_close(in);
    plan_free(&p);
    model_config_free(&cfg);
    job_free(&job);
    /* keep this run as the reference of the resume and spill tests */
    e2e_ref = tmp_path("e2e-ref");
    rm_rf(e2e_ref);
    CHECK(rename(out, e2e_ref) == 0);
    free(jp);
    free(out);
}

/* kill -9 inside a layer, after a layer's journal entry, and while writing the outputs;
 * --resume each time; the final files equal the uninterrupted run's byte for byte. */
TEST(resume_after_kills_is_byte_identical)
{
    REQUIRE(e2e_ref);
    char *out = tmp_path("e2e");
    rm_rf(out);
    job_spec s = spec_default(out);
    char *jp = write_job("e2e.yaml", &s);
    int st = run_cli(jp, 0, "GPTQ_EORA_FAIL_AFTER_LAYER", "0");
    REQUIRE(killed(st) || (printf("    status %d (is BIN set to the directory of gptq-eora?)\n", st), 0));
    /* nothing looks complete after the kill */
    char *cfg = fs_join(out, "config.json"), *model = fs_join(out, "model.safetensors.index.json");
    CHECK(!fs_exists(cfg) && !fs_exists(model));
    /* X_3 saved but layer 2's journal line not yet appended: the resume point X_2 must survive */
    st = run_cli(jp, 1, "GPTQ_EORA_FAIL_BEFORE_JOURNAL", "2");
    CHECK(killed(st));
    /* a killed act_store_save leaves its temp file: the finished run removes it */
    char *work = fs_join(out, ".gptq-eora-work"), *stale_tmp = fs_join(work, "x-a.act.tmp.999999");
    CHECK(fs_write_atomic(stale_tmp, "x", 1) == 0);
    st = run_cli(jp, 1, "GPTQ_EORA_FAIL_IN_LAYER", "3");
    CHECK(killed(st));
    CHECK(!fs_exists(cfg) && !fs_exists(model));
    st = run_cli(jp, 1, "GPTQ_EORA_FAIL_IN_OUTPUT", "1");
    CHECK(killed(st));
    CHECK(!fs_exists(cfg));
    /* what kills at other moments of the writes leave (shard / index / config / adapter being
     * committed, a layer file being renamed), next to a user's file that only looks similar */
    static const char *ours[] = {"model-00001-of-00003.safetensors.tmp.Ab12Cd", ".model.part2.Ab12Cd",
                                 "model.safetensors.index.json.tmp.Ab12Cd", "config.json.tmp.Ab12Cd",
                                 "tokenizer.json.tmp.Ab12Cd", "eora/.adapter_model.part1.Ab12Cd",
                                 "eora/adapter_model.safetensors.tmp.Ab12Cd",
                                 ".gptq-eora-work/layer-00005.safetensors.tmp.Ab12Cd"};
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) {
        char *p = fs_join(out, ours[i]);
        CHECK_MSG(fs_write_atomic(p, "x", 1) == 0, "%s", p);
        free(p);
    }
    char *users = fs_join(out, "notes.txt.tmp.Ab12Cd");
    CHECK(fs_write_atomic(users, "mine", 4) == 0);
    st = run_cli(jp, 1, NULL, NULL);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    int n_files = 0;
    CHECK(test_compare_outputs(e2e_ref, out, &n_files) == 0);
    CHECK(n_files >= 9);
    CHECK_MSG(!fs_exists(stale_tmp), "activation temp file left behind");
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) {
        char *p = fs_join(out, ours[i]);
        CHECK_MSG(!fs_exists(p), "%s left behind", p);
        free(p);
    }
    CHECK_MSG(fs_exists(users), "a file that is not the job's was removed");
    unlink(users);
    free(users);
    /* the temps of the layer and output writes the kills cut short are gone, and with them the
     * work directory; nothing hidden is left in the output directory */
    CHECK_MSG(!fs_exists(work), "%s left behind", work);
    DIR *d = opendir(out);
    REQUIRE(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        CHECK_MSG(e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."), "%s/%s left behind", out,
                  e->d_name);
    closedir(d);
    free(stale_tmp);
    free(work);
    free(cfg);
    free(model);
    free(jp);
    free(out);
}

/* A memory budget that forces f32 spill files gives the same bytes as the in-RAM run. */
TEST(spilled_run_equals_in_ram_run)
{
    REQUIRE(e2e_ref);
    char *out = tmp_path("e2e");
    rm_rf(out);
    job_spec s = spec_default(out);
    s.budget = "1MiB";
    s.spill_dtype = "f32";
    char *jp = write_job("e2e.yaml", &s);
    char *logp = tmp_path("spill-log.jsonl");
    unlink(logp);
    int rc = run_job_log(jp, 0, logp);
    REQUIRE(rc == 0 || (printf("    %s\n", err_msg()), 0));
    /* --log: one JSON object per line, a "layer" event per layer */
    char *lt = fs_read_file(logp, NULL);
    int n_lines = 0, n_bad = 0, n_layer = 0;
    for (char *line = lt, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        cJSON *ev = cJSON_Parse(line);
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(ev, "event");
        n_lines++;
        n_bad += !cJSON_IsString(kind) || !cJSON_GetObjectItemCaseSensitive(ev, "t");
        n_layer += cJSON_IsString(kind) && !strcmp(kind->valuestring, "layer");
        cJSON_Delete(ev);
    }
    CHECK(n_lines > 8 && n_bad == 0 && n_layer == 8);
    free(lt);
    free(logp);
    char *rp = fs_join(out, "report.json");
    char *rt = fs_read_file(rp, NULL);
    CHECK(rt && strstr(rt, "\"activations_spilled\":\ttrue"));
    free(rt);
    free(rp);
    char *spill = fs_join(out, ".spill");
    CHECK_MSG(!fs_exists(spill), "spill directory left behind");
    free(spill);
    int n_files = 0;
    CHECK(test_compare_outputs(e2e_ref, out, &n_files) == 0);
    CHECK(n_files >= 9);
    free(jp);
    free(out);
}

/* A spill_dir the user named and that already existed is not removed by the cleanup. */
TEST(existing_spill_dir_is_kept)
{
    char *out = tmp_path("keep-spill"), *spill = tmp_path("user-spill");
    rm_rf(out);
    rm_rf(spill);
    REQUIRE(fs_mkdir_p(spill) == 0);
    job_spec s = spec_default(out);
    s.method = "rtn";
    s.budget = "1MiB";
    char extra[4200];
    snprintf(extra, sizeof extra, "  spill_dir: %s\n", spill);
    s.extra = extra;
    char *jp = write_job("keep-spill.yaml", &s);
    int rc = run_job(jp, 0);
    REQUIRE(rc == 0 || (printf("    %s\n", err_msg()), 0));
    char *rp = fs_join(out, "report.json");
    char *rt = fs_read_file(rp, NULL);
    CHECK(rt && strstr(rt, "\"activations_spilled\":\ttrue"));
    CHECK_MSG(fs_exists(spill), "the user's spill_dir was removed");
    char *x = fs_join(spill, "x-a.spill");
    CHECK_MSG(!fs_exists(x), "spill file left behind");
    free(x);
    free(rt);
    free(rp);
    rm_rf(out);
    rm_rf(spill);
    free(jp);
    free(spill);
    free(out);
}

/* propagate: float — layer 0 does not depend on it, layer 3 (after three layers) does. */
TEST(propagate_float_changes_only_later_layers)
{
    REQUIRE(e2e_ref);
    char *out = tmp_path("e2e-float");
    rm_rf(out);
    job_spec s = spec_default(out);
    s.propagate = "float";
    char *jp = write_job("float.yaml", &s);
    int rc = run_job(jp, 0);
    REQUIRE(rc == 0 || (printf("    %s\n", err_msg()), 0));
    st_set *a = st_open(e2e_ref), *b = st_open(out);
    REQUIRE(a && b);
    const char *l0 = "model.language_model.layers.0.mlp.down_proj.qweight";
    const char *l3 = "model.language_model.layers.3.mlp.down_proj.qweight";
    const st_tensor *a0 = st_find(a, l0), *b0 = st_find(b, l0), *a3 = st_find(a, l3), *b3 = st_find(b, l3);
    REQUIRE(a0 && b0 && a3 && b3);
    CHECK(a0->nbytes == b0->nbytes && memcmp(a0->data, b0->data, a0->nbytes) == 0);
    CHECK(a3->nbytes == b3->nbytes && memcmp(a3->data, b3->data, a3->nbytes) != 0);
    st_close(a);
    st_close(b);
    rm_rf(out);
    free(jp);
    free(out);
}

/* method: rtn without EoRA reads no calibration data and runs no forward pass. */
TEST(rtn_needs_no_calibration)
{
    char *out = tmp_path("rtn");
    rm_rf(out);
    job_spec s = spec_default(out);
    s.method = "rtn";
    s.eora_rank = 0;
    s.rules = "    - match: '.*\\.self_attn\\..*'\n      bits: 8\n";
    s.source = "/nonexistent/never-read.jsonl";
    char *jp = write_job("rtn.yaml", &s);
    /* a previous run's adapter in the output directory must not survive a run without EoRA */
    char *old_eora = fs_join(out, "eora"), *old_ad = fs_join(old_eora, "adapter_model.safetensors"),
         *old_cfg = fs_join(old_eora, "adapter_config.json");
    REQUIRE(fs_mkdir_p(old_eora) == 0 && fs_write_atomic(old_ad, "x", 1) == 0 && fs_write_atomic(old_cfg, "{}", 2) == 0);
    free(old_eora);
    free(old_ad);
    free(old_cfg);
    int rc = run_job(jp, 0);
    REQUIRE(rc == 0 || (printf("    %s\n", err_msg()), 0));
    char *lp = fs_join(out, "quant_log.csv");
    char *log = fs_read_file(lp, NULL);
    REQUIRE(log);
    CHECK(strstr(log, "\n0,linear_attn.in_proj_qkv,0.0000000000,0,0.00000,") != NULL);
    char *ep = fs_join(out, "eora");
    CHECK(!fs_exists(ep));
    /* the checkpoint dequantizes to exactly plain round-to-nearest of one module */
    st_set *q = st_open(out), *in = st_open(TINY);
    REQUIRE(q && in);
    const char *m = "model.language_model.layers.3.self_attn.o_proj";
    char name[256];
    const st_tensor *tw, *tz, *tg, *ts;
    snprintf(name, sizeof name, "%s.qweight", m);
    int32_t *qw = load_i32(q, name, &tw);
    snprintf(name, sizeof name, "%s.qzeros", m);
    int32_t *qz = load_i32(q, name, &tz);
    snprintf(name, sizeof name, "%s.g_idx", m);
    int32_t *gi = load_i32(q, name, &tg);
    snprintf(name, sizeof name, "%s.scales", m);
    ts = st_find(q, name);
    REQUIRE(qw && qz && gi && ts && tw->shape[0] == 256 * 8 / 32);
    gptq_packed pk = {.bits = 8, .in = 256, .out = 256, .n_groups = 2, .qweight = qw, .qzeros = qz,
                      .scales = (uint16_t *)ts->data, .g_idx = gi, .qw_rows = 64, .qz_cols = 64};
    uint8_t *codes = xmalloc(256 * 256);
    gptq_unpack_codes(&pk, codes);
    snprintf(name, sizeof name, "%s.weight", m);
    float *W = st_load_f32(in, name, NULL);
    gptq_opts go;
    gptq_opts_default(&go);
    go.bits = 8;
    gptq_result rt;
    REQUIRE(W && gptq_rtn(m, W, 256, 256, &go, &rt) == 0);
    int same = 0;
    for (int k = 0; k < 256 * 256; k++) same += codes[k] == rt.codes[k];
    CHECK_MSG(same >= 0.999 * 256 * 256, "%d of %d codes equal RTN's", same, 256 * 256);
    gptq_result_free(&rt);
    free(W);
    free(codes);
    st_close(q);
    st_close(in);
    free(ep);
    free(log);
    free(lp);
    rm_rf(out);
    free(jp);
    free(out);
}

/* ------------------------------------------------------------------ bad jobs */

static void expect_fail(const char *label, const job_spec *s, const char *needle)
{
    char name[64];
    snprintf(name, sizeof name, "bad-%s.yaml", label);
    char *jp = write_job(name, s);
    err_clear();
    int rc = run_job(jp, 0);
    const char *m = err_msg();
    CHECK_MSG(rc != 0, "%s: the job did not fail", label);
    CHECK_MSG(m && strstr(m, needle) && !strchr(m, '\n'), "%s: error '%s' lacks '%s'", label, m ? m : "", needle);
    free(jp);
}

TEST(bad_jobs_fail_fast_with_one_line)
{
    char *out = tmp_path("bad-out");
    rm_rf(out);
    job_spec s = spec_default(out);
    s.model = "/nonexistent/model-dir";
    expect_fail("model", &s, "/nonexistent/model-dir");

    /* unsupported architecture: a copy of the config with another model_type */
    char *dir = tmp_path("llama-model");
    fs_mkdir_p(dir);
    char *src = fs_read_file(TINY "/config.json", NULL);
    REQUIRE(src);
    char *pos = strstr(src, "\"qwen3_5\"");
    REQUIRE(pos);
    memcpy(pos, "\"llama1\" ", 9);
    char *cp = fs_join(dir, "config.json");
    fs_write_atomic(cp, src, strlen(src));
    s = spec_default(out);
    s.model = dir;
    expect_fail("arch", &s, "llama1");
    free(cp);
    free(src);
    free(dir);

    s = spec_default(out);
    s.source = "/nonexistent/calib.jsonl";
    expect_fail("calib", &s, "/nonexistent/calib.jsonl");

    s = spec_default(out);
    s.samples = 4000;
    s.seq_len = 1024;
    expect_fail("tokens", &s, "tokens");
    char *work = fs_join(out, ".gptq-eora-work/layer-00000.safetensors");
    CHECK_MSG(!fs_exists(work), "too few tokens was detected only after layer 0");
    free(work);

    s = spec_default(TINY);
    expect_fail("same-dir", &s, "is the model directory");
    CHECK(fs_exists(TINY "/config.json"));

    /* output below a regular file: cannot be created, whoever runs the test */
    char *file = tmp_path("a-file");
    fs_write_atomic(file, "x", 1);
    char *bad_out = fs_join(file, "out");
    s = spec_default(bad_out);
    expect_fail("output", &s, "a-file");
    free(bad_out);
    free(file);
    rm_rf(out);
    free(out);
}
