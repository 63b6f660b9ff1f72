/* pipeline_output — checkpoint shards, adapter, configs. */
#include "tools/pipeline_output.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "tools/cli.h"
#include "tools/pipeline_runner.h"

char *output_layer_file(const char *work_dir, int L)
{
    char name[64];
    snprintf(name, sizeof name, "layer-%05d.safetensors", L);
    return fs_join(work_dir, name);
}

/* ---- quantization_config ---- */

/* Would a later emitted rule capture module `name` if rule r were left out of `dynamic`? */
static int later_rule_matches(const job_t *job, const int *emitted, int r, const char *name)
{
    job_t tail = *job;
    for (int k = r + 1; k < job->n_rules; k++) {
        tail.rules = job->rules + k;
        tail.n_rules = 1;
        if (emitted[k] && job_match_rule(&tail, name)) return 1;
    }
    return 0;
}

cJSON *output_quant_config(const job_t *job, const quant_plan *plan)
{
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "bits", job->bits);
    cJSON_AddNumberToObject(q, "group_size", job->group_size);
    cJSON_AddBoolToObject(q, "desc_act", job->desc_act);
    cJSON_AddBoolToObject(q, "sym", job->sym);
    cJSON_AddBoolToObject(q, "lm_head", 0);
    /* dynamic: rules in job order (first match wins, as in GPTQModel's dynamic_get) */
    int n = job->n_rules;
    int *emitted = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int));
    for (int r = 0; r < n; r++) {
        const quant_rule *ru = &job->rules[r];
        if (!plan->rule_hits[r]) continue;
        emitted[r] = ru->skip || (ru->bits && ru->bits != job->bits) ||
                     (ru->group_size && ru->group_size != job->group_size);
    }
    /* a rule with nothing to override still matters when it shadows a later emitted rule */
    for (int r = n - 1; r >= 0; r--) {
        if (emitted[r] || !plan->rule_hits[r]) continue;
        for (int i = 0; i < plan->n_mods && !emitted[r]; i++)
            if (plan->mods[i].rule == r && later_rule_matches(job, emitted, r, plan->mods[i].name)) emitted[r] = 1;
    }
    cJSON *dyn = cJSON_AddObjectToObject(q, "dynamic");
    for (int r = 0; r < n; r++) {
        if (!emitted[r]) continue;
        const quant_rule *ru = &job->rules[r];
        /* GPTQModel and vLLM apply a key with re.match (anchored at the start only); our rules
         * match whole names, so the key carries the end anchor: "(?:P)$" */
        size_t len = strlen(ru->match) + 8;
        char *key = xmalloc(len);
        snprintf(key, len, "%s:(?:%s)$", ru->skip ? "-" : "+", ru->match);
        cJSON *o = cJSON_AddObjectToObject(dyn, key);
        if (!ru->skip) {
            if (ru->bits && ru->bits != job->bits) cJSON_AddNumberToObject(o, "bits", ru->bits);
            if (ru->group_size && ru->group_size != job->group_size)
                cJSON_AddNumberToObject(o, "group_size", ru->group_size);
        }
        free(key);
    }
    free(emitted);
    cJSON_AddStringToObject(q, "method", "gptq");
    cJSON_AddStringToObject(q, "quant_method", "gptq");
    cJSON_AddStringToObject(q, "format", job->format);
    cJSON_AddStringToObject(q, "checkpoint_format", job->format);
    cJSON_AddStringToObject(q, "pack_dtype", "int32");
    cJSON *meta = cJSON_AddObjectToObject(q, "meta");
    cJSON *qz = cJSON_AddArrayToObject(meta, "quantizer");
    cJSON_AddItemToArray(qz, cJSON_CreateString("gptq-eora:" GPTQ_EORA_VERSION));
    cJSON_AddStringToObject(meta, "weight_method", job->method);
    cJSON_AddNumberToObject(meta, "damp_percent", job->damp_percent);
    cJSON_AddNumberToObject(meta, "damp_auto_increment", job->damp_auto_increment);
    cJSON_AddBoolToObject(meta, "static_groups", job->static_groups);
    cJSON_AddBoolToObject(meta, "true_sequential", job->true_sequential);
    cJSON_AddNumberToObject(meta, "mse", 0.0);
    cJSON_AddBoolToObject(meta, "act_group_aware", job->act_group_aware && !job->desc_act);
    cJSON_AddStringToObject(meta, "propagate", job->propagate);
    if (plan->n_eora > 0) {
        cJSON *e = cJSON_AddObjectToObject(meta, "eora");
        cJSON_AddNumberToObject(e, "rank", job->eora_rank);
        cJSON_AddStringToObject(e, "method", job->eora_method);
        cJSON_AddStringToObject(e, "svd", job->eora_svd);
        cJSON_AddStringToObject(e, "adapter", "eora");
    }
    cJSON *cal = cJSON_AddObjectToObject(meta, "calibration");
    cJSON_AddNumberToObject(cal, "samples", job->n_samples);
    cJSON_AddNumberToObject(cal, "seq_len", job->seq_len);
    cJSON_AddNumberToObject(cal, "seed", (double)job->seed);
    return q;
}

/* ---- layer tensor files ---- */

typedef struct {
    const char *work_dir;
    st_set **sets;
    int n;
} layer_files;

static const st_tensor *layer_tensor(layer_files *lf, int L, const char *name)
{
    if (!lf->sets[L]) {
        char *path = output_layer_file(lf->work_dir, L);
        lf->sets[L] = st_open(path);
        free(path);
        if (!lf->sets[L]) return NULL;
    }
    const st_tensor *t = st_find(lf->sets[L], name);
    if (!t) err_set("%s: missing from the tensor file of layer %d", name, L);
    return t;
}

static void layer_files_close(layer_files *lf)
{
    for (int i = 0; i < lf->n; i++)
        if (lf->sets[i]) st_close(lf->sets[i]);
    free(lf->sets);
}

static int copy_tensor(st_writer *w, const st_tensor *t, const char *name)
{
    return st_writer_add(w, name ? name : t->name, t->dtype, t->ndim, t->shape, t->data);
}

/* Remove checkpoint files a previous run may have left (another shard count). */
static void remove_old_shards(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        size_t l = strlen(n);
        int shard = !strncmp(n, "model", 5) &&
                    ((l > 12 && !strcmp(n + l - 12, ".safetensors")) ||
                     (l > 23 && !strcmp(n + l - 23, ".safetensors.index.json")));
        if (!shard) continue;
        char *p = fs_join(dir, n);
        unlink(p);
        free(p);
    }
    closedir(d);
}

int output_checkpoint(const job_t *job, const quant_plan *plan, const st_set *ckpt, const char *work_dir,
                      uint64_t *bytes)
{
    remove_old_shards(job->output);
    st_writer *w = st_writer_open(job->output, "model", job->shard_size ? job->shard_size : (4ull << 30));
    if (!w) return -1;
    layer_files lf = {work_dir, xcalloc((size_t)plan->n_layers + 1, sizeof(st_set *)), plan->n_layers};
    int rc = st_writer_set_metadata(w, "format", "pt");
    static const char *parts[] = {"qweight", "qzeros", "scales", "g_idx"};
    for (size_t i = 0; i < st_count(ckpt) && !rc; i++) {
        const st_tensor *t = st_get(ckpt, i);
        size_t l = strlen(t->name);
        int mi = -1;
        if (l > 7 && !strcmp(t->name + l - 7, ".weight")) {
            char mod[256];
            snprintf(mod, sizeof mod, "%.*s", (int)(l - 7), t->name);
            mi = plan_find(plan, mod);
            if (mi >= 0 && !plan->mods[mi].quantize) mi = -1;
        }
        if (mi < 0) {
            rc = copy_tensor(w, t, NULL);
            continue;
        }
        for (int k = 0; k < 4 && !rc; k++) {
            char name[256];
            snprintf(name, sizeof name, "%s.%s", plan->mods[mi].name, parts[k]);
            const st_tensor *q = layer_tensor(&lf, plan->mods[mi].layer, name);
            rc = q ? copy_tensor(w, q, NULL) : -1;
        }
    }
    if (!rc && bytes) *bytes += st_writer_bytes(w);
    if (rc) st_writer_abort(w);
    else rc = st_writer_finish(w);
    layer_files_close(&lf);
    return rc;
}

/* ---- adapter ---- */

static cJSON *adapter_config(const job_t *job, const quant_plan *plan)
{
    /* r: the most common rank; modules with another rank go to rank_pattern/alpha_pattern */
    int best_r = 0, best_n = 0;
    for (int i = 0; i < plan->n_mods; i++) {
        int r = plan->mods[i].eora_rank, c = 0;
        if (r <= 0) continue;
        for (int k = 0; k < plan->n_mods; k++) c += plan->mods[k].eora_rank == r;
        if (c > best_n || (c == best_n && r > best_r)) {
            best_n = c;
            best_r = r;
        }
    }
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNullToObject(a, "alpha_pattern");
    cJSON_AddNullToObject(a, "auto_mapping");
    cJSON_AddStringToObject(a, "base_model_name_or_path", job->output);
    cJSON_AddStringToObject(a, "bias", "none");
    cJSON_AddBoolToObject(a, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(a, "inference_mode", 1);
    cJSON_AddBoolToObject(a, "init_lora_weights", 1);
    cJSON_AddNullToObject(a, "layers_pattern");
    cJSON_AddNullToObject(a, "layers_to_transform");
    cJSON_AddNumberToObject(a, "lora_alpha", best_r);
    cJSON_AddNumberToObject(a, "lora_dropout", 0.0);
    cJSON_AddNullToObject(a, "modules_to_save");
    cJSON_AddStringToObject(a, "peft_type", "LORA");
    cJSON_AddNumberToObject(a, "r", best_r);
    cJSON_AddNullToObject(a, "rank_pattern");
    cJSON_AddNullToObject(a, "revision");
    cJSON *tm = cJSON_AddArrayToObject(a, "target_modules");
    cJSON_AddStringToObject(a, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(a, "use_dora", 0);
    cJSON_AddBoolToObject(a, "use_rslora", 0);
    cJSON *rp = cJSON_CreateObject(), *ap = cJSON_CreateObject();
    for (int i = 0; i < plan->n_mods; i++) {
        const plan_module *m = &plan->mods[i];
        if (m->eora_rank <= 0) continue;
        int seen = 0;
        for (int k = 0; k < i && !seen; k++)
            seen = plan->mods[k].eora_rank > 0 && !strcmp(plan->mods[k].short_name, m->short_name);
        if (!seen) cJSON_AddItemToArray(tm, cJSON_CreateString(m->short_name));
        if (m->eora_rank != best_r) {
            cJSON_AddNumberToObject(rp, m->name, m->eora_rank);
            cJSON_AddNumberToObject(ap, m->name, m->eora_rank);
        }
    }
    if (cJSON_GetArraySize(rp) > 0) {
        cJSON_ReplaceItemInObject(a, "rank_pattern", rp);
        cJSON_ReplaceItemInObject(a, "alpha_pattern", ap);
    } else {
        cJSON_Delete(rp);
        cJSON_Delete(ap);
    }
    return a;
}

static int write_json(const char *path, const cJSON *o, uint64_t *bytes)
{
    char *s = cJSON_Print(o);
    size_t len = strlen(s);
    char *buf = xmalloc(len + 2);
    memcpy(buf, s, len);
    buf[len++] = '\n';
    cJSON_free(s);
    int rc = fs_write_atomic(path, buf, len);
    free(buf);
    if (!rc && bytes) *bytes += len;
    return rc;
}

int output_adapter(const job_t *job, const quant_plan *plan, const char *work_dir, uint64_t *bytes)
{
    char *dir = fs_join(job->output, "eora");
    if (plan->n_eora == 0) {
        /* a previous run's adapter must not pass for this run's: remove it (and eora/ if empty) */
        const char *stale[2] = {"adapter_model.safetensors", "adapter_config.json"};
        for (int i = 0; i < 2; i++) {
            char *p = fs_join(dir, stale[i]);
            if (unlink(p) != 0 && errno != ENOENT) {
                err_set("%s: cannot remove stale adapter file: %s", p, strerror(errno));
                free(p);
                free(dir);
                return -1;
            }
            free(p);
        }
        rmdir(dir);
        free(dir);
        return 0;
    }
    if (fs_mkdir_p(dir) != 0) {
        free(dir);
        return -1;
    }
    char *path = fs_join(dir, "adapter_model.safetensors");
    st_writer *w = st_writer_open(path, NULL, 0);
    free(path);
    if (!w) {
        free(dir);
        return -1;
    }
    layer_files lf = {work_dir, xcalloc((size_t)plan->n_layers + 1, sizeof(st_set *)), plan->n_layers};
    int rc = st_writer_set_metadata(w, "format", "pt");
    static const char *parts[] = {"lora_A", "lora_B"};
    for (int i = 0; i < plan->n_mods && !rc; i++) {
        const plan_module *m = &plan->mods[i];
        if (m->eora_rank <= 0) continue;
        for (int k = 0; k < 2 && !rc; k++) {
            char name[256];
            runner_lora_name(m->name, parts[k], name, sizeof name);
            const st_tensor *t = layer_tensor(&lf, m->layer, name);
            rc = t ? copy_tensor(w, t, NULL) : -1;
        }
    }
    if (!rc && bytes) *bytes += st_writer_bytes(w);
    if (rc) st_writer_abort(w);
    else rc = st_writer_finish(w);
    layer_files_close(&lf);
    if (!rc) {
        cJSON *a = adapter_config(job, plan);
        char *p = fs_join(dir, "adapter_config.json");
        rc = write_json(p, a, bytes);
        free(p);
        cJSON_Delete(a);
    }
    free(dir);
    return rc;
}

/* ---- configs and side files ---- */

static int is_side_file(const char *n)
{
    size_t l = strlen(n);
    if (n[0] == '.') return 0;
    if (l > 12 && !strcmp(n + l - 12, ".safetensors")) return 0;
    if (l > 11 && !strcmp(n + l - 11, ".index.json")) return 0;
    if (!strcmp(n, "config.json") || !strcmp(n, "quantize_config.json")) return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* tokenizer.json, tokenizer_config.json, generation_config.json, chat template, ... */
static int copy_side_files(const job_t *job, uint64_t *bytes)
{
    DIR *d = opendir(job->model);
    if (!d) return err_set("%s: cannot list model directory", job->model);
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_side_file(e->d_name)) continue;
        char *src = fs_join(job->model, e->d_name);
        struct stat st;
        int reg = stat(src, &st) == 0 && S_ISREG(st.st_mode);
        free(src);
        if (!reg) continue;
        names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!rc) {
            char *src = fs_join(job->model, names[i]), *dst = fs_join(job->output, names[i]);
            struct stat st;
            if (stat(src, &st) == 0 && bytes) *bytes += (uint64_t)st.st_size;
            rc = fs_copy_file(src, dst);
            free(src);
            free(dst);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int output_configs(const job_t *job, const quant_plan *plan, uint64_t *bytes)
{
    if (copy_side_files(job, bytes) != 0) return -1;
    char *src = fs_join(job->model, "config.json");
    cJSON *cfg = fs_read_json(src);
    if (cfg && !cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        cfg = NULL;
        err_set("%s: not a JSON object", src);
    }
    free(src);
    if (!cfg) return -1;
    cJSON *qc = output_quant_config(job, plan);
    char *p = fs_join(job->output, "quantize_config.json");
    int rc = write_json(p, qc, bytes);
    free(p);
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
    cJSON_AddItemToObject(cfg, "quantization_config", qc);
    if (!rc) {
        p = fs_join(job->output, "config.json");
        rc = write_json(p, cfg, bytes);
        free(p);
    }
    cJSON_Delete(cfg);
    return rc;
}

/* the job's own output names: what output_configs / the report write, and the side files
 * copied from the model directory */
static int is_output_name(const char *final_name, const void *ctx)
{
    const job_t *job = ctx;
    static const char *own[] = {"config.json", "quantize_config.json", "quant_log.csv", "report.json",
                                "adapter_config.json"};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (!strcmp(final_name, own[i])) return 1;
    if (!is_side_file(final_name)) return 0;
    char *src = fs_join(job->model, final_name);
    int from_model = fs_exists(src);
    free(src);
    return from_model;
}

void output_remove_temps(const job_t *job)
{
    st_writer_remove_temps(job->output, "model");
    fs_remove_temps(job->output, is_output_name, job);
    char *eora = fs_join(job->output, "eora");
    st_writer_remove_temps(eora, "adapter_model");
    fs_remove_temps(eora, is_output_name, job);
    free(eora);
}
