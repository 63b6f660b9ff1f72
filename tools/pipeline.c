/* pipeline — the quantization job from YAML to output directory (see pipeline.h). */
#include "tools/pipeline.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "calib/model.h"
#include "calib/tokenizer.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/journal.h"
#include "tools/cli.h"
#include "tools/dist.h"
#include "tools/pipeline_output.h"
#include "tools/pipeline_plan.h"
#include "tools/pipeline_progress.h"
#include "tools/pipeline_report.h"
#include "tools/pipeline_runner.h"

#define WORK_DIR_NAME ".gptq-eora-work"
static void remove_file(const char *dir, const char *name);
/* In-RAM runs keep a resume copy of X_{L+1} under alternating names (by parity of L+1): the file
 * the last journal line names is never overwritten, and the older one is deleted only after the
 * new line is committed. "x.act" is the single name older versions used. */
static const char *const RAM_ACT_FILES[3] = {"x-a.act", "x-b.act", "x.act"};
#define SPILL_DIR_MARK "spill_dir.created"
static const char *SPILL_FILES[2] = {"x-a.spill", "x-b.spill"};

/* ---- calibration ---- */

static int source_is_ids(const data_source *s)
{
    return s->format && !strcmp(s->format, "ids");
}

/* The file part of a source path ("FILE:TENSOR" for ids). */
static void source_file(const data_source *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s", s->path);
    if (source_is_ids(s) && !fs_exists(buf)) {
        char *colon = strrchr(buf, ':');
        if (colon) *colon = 0;
    }
}

static int check_sources(const job_t *job)
{
    if (job->n_sources <= 0) return err_set("%s: calibration.sources: no calibration source", job->path);
    for (int i = 0; i < job->n_sources; i++) {
        char f[4096];
        source_file(&job->sources[i], f, sizeof f);
        if (access(f, R_OK) != 0)
            return err_set("%s: calibration source %d unreadable: %s", f, i, strerror(errno));
    }
    return 0;
}

int pipeline_calibration(const job_t *job, const model_config *cfg, token_windows *w)
{
    tokenizer *tk = NULL;
    int need_tk = 0;
    for (int i = 0; i < job->n_sources; i++) need_tk |= !source_is_ids(&job->sources[i]);
    if (need_tk) {
        tk = tokenizer_load(job->tokenizer);
        if (!tk) return err_prefix("tokenizer");
    }
    sample_opts so;
    memset(&so, 0, sizeof so);
    so.seed = job->seed;
    so.document_windows = job->windows && !strcmp(job->windows, "document");
    so.allow_repeat = job->allow_repeat;
    memset(w, 0, sizeof *w);
    int rc = calib_sample(tk, cfg->eos_token_id, job->sources, job->n_sources, job->n_samples, job->seq_len, &so, w);
    if (tk) tokenizer_free(tk);
    if (rc != 0) return err_prefix("calibration");
    if (w->n != job->n_samples || w->T != job->seq_len) {
        token_windows_free(w);
        return err_set("calibration: got %d x %d windows, the job asks for %d x %d", w->n, w->T, job->n_samples,
                       job->seq_len);
    }
    return 0;
}

int pipeline_embed(const st_set *ckpt, const model_config *cfg, const token_windows *w, int seqs_per_batch,
                   act_store *x)
{
    int T = w->T, d = cfg->hidden;
    if (seqs_per_batch < 1) seqs_per_batch = 1;
    float *buf = xmalloc((size_t)seqs_per_batch * (size_t)T * (size_t)d * sizeof(float));
    int rc = 0;
    for (int s0 = 0; s0 < w->n && !rc; s0 += seqs_per_batch) {
        int B = w->n - s0 < seqs_per_batch ? w->n - s0 : seqs_per_batch;
        int64_t row0 = (int64_t)s0 * T, rows = (int64_t)B * T;
        rc = model_embed(ckpt, cfg, w->ids + row0, rows, buf);
        if (!rc) rc = act_store_write(x, row0, rows, buf);
    }
    free(buf);
    return rc ? err_prefix("embedding the calibration windows") : 0;
}

/* ---- run bookkeeping ---- */

static void set_threads(int n)
{
    if (n <= 0) return;
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

/* Job file + model config + thread count + version: a journal from another job or thread
 * count (which would change the bytes) is refused. */
static void fingerprint(const job_t *job, int threads, char *buf, size_t len)
{
    uLong a = crc32(0L, Z_NULL, 0), b = adler32(0L, Z_NULL, 0);
    const char *files[2] = {job->path, NULL};
    char *cfg_path = fs_join(job->model, "config.json");
    files[1] = cfg_path;
    for (int i = 0; i < 2; i++) {
        size_t n = 0;
        char *t = files[i] ? fs_read_file(files[i], &n) : NULL;
        if (t) {
            a = crc32(a, (const Bytef *)t, (uInt)n);
            b = adler32(b, (const Bytef *)t, (uInt)n);
        }
        free(t);
    }
    free(cfg_path);
    err_clear();
    snprintf(buf, len, "%08lx%08lx-t%d-v%s", (unsigned long)a, (unsigned long)b, threads, GPTQ_EORA_VERSION);
}

static int check_output_writable(const char *dir)
{
    if (fs_mkdir_p(dir) != 0) return err_prefix("output directory not writable");
    char *probe = fs_join(dir, ".gptq-eora-write-test");
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = errno;
    if (fd >= 0) {
        close(fd);
        unlink(probe);
    }
    free(probe);
    if (fd < 0) return err_set("%s: output directory not writable: %s", dir, strerror(e));
    return 0;
}

static int same_directory(const char *a, const char *b)
{
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = ra && rb && !strcmp(ra, rb);
    free(ra);
    free(rb);
    return same;
}

static void fail_injection(const char *var, int value)
{
    const char *v = getenv(var);
    if (v && *v && atoi(v) == value) raise(SIGKILL); /* test hook: die like kill -9 */
}

static void remove_file(const char *dir, const char *name)
{
    char *p = fs_join(dir, name);
    unlink(p);
    free(p);
}

typedef struct {
    const job_t *job;
    model_config cfg;
    st_set *ckpt;
    quant_plan plan;
    run_report rep;
    progress prog;
    journal *jn;
    char *work;
    act_store *x, *x_spare;
    int last_needed; /* last layer whose Hessians need X (propagate up to it) */
    /* MPI (tools/dist.h): this rank owns calibration samples [shard0, shard0 + shard_n) */
    int rank, size;
    int64_t shard0, shard_n;
    char *spill;   /* this rank's spill files: spill_dir, or spill_dir/rank<k> with R > 1 */
    char *ram_act; /* directory of the in-RAM activations' resume copy: work, or spill */
    int own_spill_dir; /* rank 0: this job (this run or the one it resumes) created job->spill_dir */
} run_state;

static int is_ram_act_file(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, RAM_ACT_FILES[i])) return 1;
    return 0;
}

/* X for the first layer to compute: fresh calibration or the resume copy. */
static int prepare_activations(run_state *s, int start, const char *act_file)
{
    const job_t *job = s->job;
    quant_plan *p = &s->plan;
    if (!p->need_calib || start > s->last_needed) return 0;
    int64_t rows = s->shard_n * job->seq_len;
    int d = s->cfg.hidden;
    if ((p->spill || s->size > 1) && fs_mkdir_p(s->spill) != 0) return -1;
    act_store_remove_temps(s->ram_act, RAM_ACT_FILES, 3); /* left by a killed act_store_save */
    if (start > 0) {
        if (!act_file) return err_set("%s: journal entry of layer %d names no activation file", WORK_DIR_NAME, start - 1);
        if (p->spill) {
            int cur = !strcmp(act_file, SPILL_FILES[1]);
            char *a = fs_join(s->spill, SPILL_FILES[cur]), *b = fs_join(s->spill, SPILL_FILES[!cur]);
            s->x = act_store_open(a, rows, d, p->spill_dtype);
            s->x_spare = s->x ? act_store_create(b, rows, d, p->spill_dtype) : NULL;
            free(a);
            free(b);
        } else {
            if (!is_ram_act_file(act_file))
                return err_set("%s: journal entry of layer %d names unknown activation file %s", WORK_DIR_NAME,
                               start - 1, act_file);
            char *a = fs_join(s->ram_act, act_file);
            s->x = act_store_load(a, rows, d);
            free(a);
        }
        if (!s->x || (p->spill && !s->x_spare)) return err_prefix("resume");
        return 0;
    }
    double t0 = progress_now();
    token_windows w;
    if (pipeline_calibration(job, &s->cfg, &w) != 0) return -1;
    s->rep.t_calib = progress_now() - t0;
    /* every rank draws the same windows (deterministic) and embeds its own shard */
    token_windows shard = w;
    shard.n = (int)s->shard_n;
    shard.ids = w.ids + s->shard0 * w.T;
    if (p->spill) {
        char *a = fs_join(s->spill, SPILL_FILES[0]), *b = fs_join(s->spill, SPILL_FILES[1]);
        s->x = act_store_create(a, rows, d, p->spill_dtype);
        s->x_spare = s->x ? act_store_create(b, rows, d, p->spill_dtype) : NULL;
        free(a);
        free(b);
    } else {
        s->x = act_store_ram(rows, d);
    }
    int rc = s->x && (!p->spill || s->x_spare) ? 0 : -1;
    t0 = progress_now();
    if (!rc) rc = pipeline_embed(s->ckpt, &s->cfg, &shard, p->seqs_per_batch, s->x);
    s->rep.t_embed = progress_now() - t0;
    token_windows_free(&w);
    return rc;
}

/* X_{L+1} durable; returns the file name for the journal (NULL when not needed). */
static int persist_activations(run_state *s, int L, const char **act_file)
{
    *act_file = NULL;
    if (!s->x || L >= s->last_needed) return 0;
    if (act_store_is_file(s->x)) {
        if (act_store_sync(s->x) != 0) return -1;
        const char *path = act_store_path(s->x);
        const char *base = strrchr(path, '/');
        *act_file = base ? base + 1 : path;
        return 0;
    }
    const char *name = RAM_ACT_FILES[(L + 1) & 1];
    char *a = fs_join(s->ram_act, name);
    int rc = act_store_save(s->x, a);
    free(a);
    *act_file = name;
    return rc;
}

static int restore_journal(run_state *s, int *start, char **act_file)
{
    *start = 0;
    *act_file = NULL;
    for (int i = 0; i < journal_count(s->jn); i++) {
        int L;
        if (report_layer_restore(&s->plan, &s->rep, journal_entry(s->jn, i), &L) != 0) return -1;
        if (L != i) return err_set("journal: entry %d is layer %d (layers must finish in order)", i, L);
        cJSON *e = cJSON_Parse(journal_entry(s->jn, i));
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "activations");
        free(*act_file);
        *act_file = cJSON_IsString(a) ? xstrdup(a->valuestring) : NULL;
        cJSON_Delete(e);
        char *lf = output_layer_file(s->work, L);
        int ok = fs_exists(lf);
        free(lf);
        if (!ok) return err_set("journal: tensor file of layer %d is missing from %s", L, s->work);
        *start = L + 1;
    }
    return 0;
}

static void cleanup_work(run_state *s)
{
    if (s->rank == 0) {
        for (int L = 0; L < s->plan.n_layers; L++) {
            char *lf = output_layer_file(s->work, L), base[64];
            unlink(lf);
            free(lf);
            snprintf(base, sizeof base, "layer-%05d", L); /* temps of a layer write a kill cut short */
            st_writer_remove_temps(s->work, base);
        }
        for (int i = 0; i < 3; i++) remove_file(s->work, RAM_ACT_FILES[i]);
        act_store_remove_temps(s->work, RAM_ACT_FILES, 3);
        remove_file(s->work, SPILL_DIR_MARK);
        if (s->jn) journal_remove(s->jn);
        rmdir(s->work);
    }
    if (s->size > 1) {
        for (int i = 0; i < 3; i++) remove_file(s->spill, RAM_ACT_FILES[i]);
        act_store_remove_temps(s->spill, RAM_ACT_FILES, 3);
        rmdir(s->spill);
        dist_barrier(); /* every rank's directory is gone before rank 0 removes spill_dir */
    }
    /* a directory the user named and that existed before stays */
    if (s->rank == 0 && s->own_spill_dir) rmdir(s->job->spill_dir);
}

static int run_layers(run_state *s, int start)
{
    runner r;
    memset(&r, 0, sizeof r);
    r.job = s->job;
    r.cfg = &s->cfg;
    r.ckpt = s->ckpt;
    r.plan = &s->plan;
    r.report = &s->rep;
    r.prog = &s->prog;
    r.T = s->job->seq_len;
    r.n_seqs = (int)s->shard_n;
    r.x = s->x;
    r.x_spare = s->x_spare;
    r.last_needed_layer = s->last_needed;
    char *mix_path = s->plan.spill ? fs_join(s->spill, "mix.spill") : NULL;
    r.mix_path = mix_path;
    r.mix_dtype = s->plan.spill_dtype;
    r.no_mix_cache = getenv("GPTQ_EORA_NO_MIX_CACHE") && atoi(getenv("GPTQ_EORA_NO_MIX_CACHE")) > 0;
    int rc = 0;
    for (int L = start; L < s->plan.n_layers && !rc; L++) {
        char *lf = output_layer_file(s->work, L);
        rc = runner_layer(&r, L, lf);
        free(lf);
        s->x = r.x;
        s->x_spare = r.x_spare;
        if (rc) break;
        const char *act = NULL;
        if ((rc = persist_activations(s, L, &act)) != 0) break;
        fail_injection("GPTQ_EORA_FAIL_BEFORE_JOURNAL", L); /* test hook: X_{L+1} saved, line L not */
        /* the journal entry promises every rank's X_{L+1}: all must be durable first */
        dist_barrier();
        if (s->rank == 0) {
            char name[64];
            snprintf(name, sizeof name, "layer-%05d.safetensors", L);
            char *entry = report_layer_entry(&s->plan, &s->rep, L, name, act);
            rc = journal_append(s->jn, entry);
            free(entry);
        }
        /* No rank may overwrite the activations the committed journal line points to (its next
         * layer writes into the spare store, i.e. the previous line's file) before rank 0 committed
         * the new line; rank 0's result also stops every rank when the append failed. */
        if (s->size > 1) {
            int32_t r0 = rc;
            dist_bcast(&r0, sizeof r0, 0);
            rc = r0;
        }
        if (rc) break;
        /* the new line is committed: the in-RAM copy the previous line named is no longer needed */
        if (act && L > 0 && is_ram_act_file(act)) remove_file(s->ram_act, RAM_ACT_FILES[L & 1]);
        progress_layer(&s->prog, L, s->rep.layers[L].seconds, s->rep.layers[L].tokens_per_s);
        fail_injection("GPTQ_EORA_FAIL_AFTER_LAYER", L);
    }
    free(mix_path);
    return rc;
}

static int write_outputs(run_state *s)
{
    const job_t *job = s->job;
    double t0 = progress_now();
    uint64_t bytes = 0;
    progress_msg(&s->prog, "writing %s", job->output);
    if (output_checkpoint(job, &s->plan, s->ckpt, s->work, &bytes) != 0) return -1;
    if (output_adapter(job, &s->plan, s->work, &bytes) != 0) return -1;
    fail_injection("GPTQ_EORA_FAIL_IN_OUTPUT", 1);
    char *p = fs_join(job->output, "quant_log.csv");
    int rc = report_write_quant_log(p, &s->plan, &s->rep);
    free(p);
    if (rc || output_configs(job, &s->plan, &bytes) != 0) return -1;
    s->rep.t_output = progress_now() - t0;
    s->rep.wall = progress_now() - s->prog.t0;
    s->rep.peak_rss = report_peak_rss();
    s->rep.bytes_written = bytes;
    p = fs_join(job->output, "report.json");
    rc = report_write_json(p, job, &s->plan, &s->rep);
    free(p);
    return rc;
}

/* Where this rank starts: rank 0 reads (or creates) the journal, every rank learns the first
 * layer to compute and the activation file of the resume point. */
static int open_journal(run_state *s, const pipeline_opts *o, int *start, char **act_file)
{
    *start = 0;
    *act_file = NULL;
    int rc = 0;
    if (s->rank == 0) {
        char fp[128];
        fingerprint(s->job, omp_get_max_threads(), fp, sizeof fp);
        if (s->size > 1) /* another rank count shards the activations differently */
            snprintf(fp + strlen(fp), sizeof fp - strlen(fp), "-r%d", s->size);
        char *jpath = fs_join(s->work, "journal.jsonl");
        if (o->resume && fs_exists(jpath)) {
            s->jn = journal_resume(jpath, fp);
            if (s->jn && restore_journal(s, start, act_file) != 0) rc = -1;
        } else {
            if (o->resume) progress_msg(&s->prog, "gptq-eora: no journal in %s: starting from the beginning", s->work);
            s->jn = journal_create(jpath, fp);
        }
        free(jpath);
        if (!s->jn) rc = -1;
    }
    if (s->size > 1) {
        /* a failed rank 0 aborts the job before the others wait here for long */
        char name[64] = "";
        if (*act_file) snprintf(name, sizeof name, "%s", *act_file);
        int32_t st = *start;
        dist_bcast(&st, sizeof st, 0);
        dist_bcast(name, sizeof name, 0);
        *start = st;
        if (s->rank != 0 && name[0]) *act_file = xstrdup(name);
    }
    return rc;
}

int pipeline_run(const job_t *job, const pipeline_opts *o)
{
    run_state s;
    memset(&s, 0, sizeof s);
    s.job = job;
    s.rank = dist_rank();
    s.size = dist_size();
    int lead = s.rank == 0; /* rank 0 alone prints, writes outputs, report and journal */
    int rc = -1;
    int threads = o->threads > 0 ? o->threads : job->threads;
    set_threads(threads);
    if (model_config_load(job->model, &s.cfg) != 0) return err_prefix("model");
    s.ckpt = st_open(job->model);
    if (!s.ckpt) {
        model_config_free(&s.cfg);
        return err_prefix("model checkpoint");
    }
    if (plan_build(job, &s.cfg, s.ckpt, lead ? stderr : NULL, &s.plan) != 0) goto out_plan;
    if (o->dry_run) {
        if (lead) plan_print(&s.plan, job, &s.cfg, stdout);
        rc = 0;
        goto out_plan;
    }
    if (s.plan.need_calib) {
        if (job->n_samples <= 0 || job->seq_len <= 0) {
            err_set("%s: calibration needs samples > 0 and seq_len > 0", job->path);
            goto out_plan;
        }
        int64_t spb = s.plan.seqs_per_batch, n_batches = (job->n_samples + spb - 1) / spb;
        if (n_batches < s.size) {
            err_set("%s: calibration.samples %d make %lld batches of %lld for %d MPI ranks (every rank needs "
                    "a batch: lower resources.batch_tokens or use fewer ranks)",
                    job->path, job->n_samples, (long long)n_batches, (long long)spb, s.size);
            goto out_plan;
        }
        if (check_sources(job) != 0) goto out_plan;
        /* Ranks own contiguous runs of whole batches: every batch holds the sequences it holds
         * in a single process, so its fp32 Hessian product and its forward pass are the same,
         * and a multi-rank run differs only in the order the fp64 batch sums are added. */
        int64_t b0, nb;
        dist_shard(n_batches, s.rank, s.size, &b0, &nb);
        s.shard0 = b0 * spb;
        s.shard_n = (b0 + nb) * spb < job->n_samples ? nb * spb : job->n_samples - s.shard0;
    } else {
        s.shard_n = job->n_samples;
    }
    if (s.size > 1) {
        char sub[32];
        snprintf(sub, sizeof sub, "rank%d", s.rank);
        s.spill = fs_join(job->spill_dir, sub);
    } else {
        s.spill = xstrdup(job->spill_dir);
    }
    if (lead) {
        if (check_output_writable(job->output) != 0) goto out_plan;
        if (same_directory(job->output, job->model)) {
            err_set("%s: the output directory is the model directory", job->output);
            goto out_plan;
        }
        /* A previous run's outputs must not look like this run's while it is under way. */
        remove_file(job->output, "config.json");
        remove_file(job->output, "report.json");
        output_remove_temps(job);
    }
    if (progress_init(&s.prog, o->quiet || !lead, lead ? o->log_path : NULL, s.cfg.n_layers) != 0) goto out_plan;
    report_init(&s.rep, &s.plan);
    s.rep.estimate = s.plan.mem.total;
    s.rep.spilled = s.plan.spill;
    s.last_needed = -1;
    for (int i = 0; i < s.plan.n_mods; i++) {
        const plan_module *m = &s.plan.mods[i];
        if (m->quantize && (strcmp(job->method, "rtn") != 0 || m->eora_rank > 0)) s.last_needed = m->layer;
    }
    s.work = fs_join(job->output, WORK_DIR_NAME);
    s.ram_act = xstrdup(s.size > 1 ? s.spill : s.work);
    if (lead && fs_mkdir_p(s.work) != 0) goto out;
    if (lead && (s.plan.spill || s.size > 1)) {
        /* remember across resumes whether the job created spill_dir (cleanup removes only that) */
        char *mark = fs_join(s.work, SPILL_DIR_MARK);
        s.own_spill_dir = fs_exists(mark);
        if (!s.own_spill_dir && !fs_exists(job->spill_dir)) {
            if (fs_write_atomic(mark, "", 0) != 0) {
                free(mark);
                goto out;
            }
            s.own_spill_dir = 1;
        }
        free(mark);
    }
    int start = 0;
    char *act_file = NULL;
    if (open_journal(&s, o, &start, &act_file) != 0) {
        free(act_file);
        goto out;
    }
    s.rep.resumed_from = start;
    {
        char est[32], desc[256];
        plan_format_bytes(s.plan.mem.total, est, sizeof est);
        model_config_describe(&s.cfg, desc, sizeof desc);
        progress_msg(&s.prog, "gptq-eora quantize: %s; %d modules (%d with EoRA); %lld calibration tokens; "
                              "activations %s; estimated peak memory %s; %d threads",
                     desc, s.plan.n_quantized, s.plan.n_eora, (long long)s.plan.tokens,
                     s.plan.spill ? "spilled" : "in RAM", est, omp_get_max_threads());
        if (s.size > 1)
            progress_msg(&s.prog, "%d MPI ranks: rank 0 streams calibration samples %lld..%lld, the others the "
                                  "following batches; linears solved round-robin",
                         s.size, (long long)s.shard0, (long long)(s.shard0 + s.shard_n - 1));
        if (start > 0) progress_msg(&s.prog, "resuming after layer %d", start - 1);
        if (job->memory_budget && s.plan.mem.total > job->memory_budget) {
            char bud[32];
            plan_format_bytes(job->memory_budget, bud, sizeof bud);
            progress_msg(&s.prog, "gptq-eora: warning: estimated peak %s exceeds memory_budget %s even with "
                                  "activations spilled (lower batch_tokens)", est, bud);
        }
    }
    rc = prepare_activations(&s, start, act_file);
    free(act_file);
    if (rc) goto out;
    rc = run_layers(&s, start);
    if (rc) goto out;
    if (lead) rc = write_outputs(&s);
    if (rc) goto out;
    if (lead) {
        char peak[32], est[32];
        plan_format_bytes(s.rep.peak_rss, peak, sizeof peak);
        plan_format_bytes(s.plan.mem.total, est, sizeof est);
        progress_msg(&s.prog, "done in %.1fs: peak RSS %s (estimate %s), %llu bytes written to %s", s.rep.wall, peak,
                     est, (unsigned long long)s.rep.bytes_written, job->output);
    }
    act_store_close_unlink(s.x);
    act_store_close_unlink(s.x_spare);
    s.x = s.x_spare = NULL;
    cleanup_work(&s);
out:
    /* on failure the work directory stays (resume point); outputs were never renamed into place */
    act_store_close(s.x);
    act_store_close(s.x_spare);
    journal_close(s.jn);
    free(s.work);
    progress_close(&s.prog);
    report_free(&s.rep);
out_plan:
    free(s.spill);
    free(s.ram_act);
    plan_free(&s.plan);
    st_close(s.ckpt);
    model_config_free(&s.cfg);
    return rc;
}
