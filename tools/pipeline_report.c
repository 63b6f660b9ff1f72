/* pipeline_report — per module / per layer measurements, journal entries, report files. */
#include "tools/pipeline_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "tools/cli.h"

void report_init(run_report *r, const quant_plan *plan)
{
    memset(r, 0, sizeof *r);
    r->mods = xcalloc((size_t)(plan->n_mods > 0 ? plan->n_mods : 1), sizeof *r->mods);
    r->layers = xcalloc((size_t)(plan->n_layers > 0 ? plan->n_layers : 1), sizeof *r->layers);
}

void report_free(run_report *r)
{
    free(r->mods);
    free(r->layers);
    memset(r, 0, sizeof *r);
}

uint64_t report_peak_rss(void)
{
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
    return (uint64_t)u.ru_maxrss * 1024;
}

char *report_layer_entry(const quant_plan *plan, const run_report *r, int L, const char *tensors_file,
                         const char *act_file)
{
    cJSON *e = cJSON_CreateObject();
    const layer_result *lr = &r->layers[L];
    cJSON_AddNumberToObject(e, "layer", L);
    cJSON_AddStringToObject(e, "tensors", tensors_file);
    if (act_file) cJSON_AddStringToObject(e, "activations", act_file);
    cJSON_AddNumberToObject(e, "seconds", lr->seconds);
    cJSON_AddNumberToObject(e, "t_forward", lr->t_forward);
    cJSON_AddNumberToObject(e, "tokens_per_s", lr->tokens_per_s);
    cJSON_AddNumberToObject(e, "passes", lr->passes);
    cJSON *mods = cJSON_AddArrayToObject(e, "modules");
    for (int i = plan->layer_first[L]; i < plan->layer_first[L + 1]; i++) {
        const module_result *m = &r->mods[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", plan->mods[i].name);
        cJSON_AddNumberToObject(o, "samples", (double)m->samples);
        cJSON_AddNumberToObject(o, "damp", m->damp);
        cJSON_AddNumberToObject(o, "diag_floor", m->diag_floor);
        cJSON_AddNumberToObject(o, "dead_columns", m->dead_columns);
        cJSON_AddNumberToObject(o, "avg_loss", m->avg_loss);
        cJSON_AddNumberToObject(o, "loss", m->loss);
        cJSON_AddNumberToObject(o, "eora_before", m->eora_before);
        cJSON_AddNumberToObject(o, "eora_after", m->eora_after);
        cJSON_AddNumberToObject(o, "t_hessian", m->t_hessian);
        cJSON_AddNumberToObject(o, "t_syrk", m->t_syrk);
        cJSON_AddNumberToObject(o, "t_solve", m->t_solve);
        cJSON_AddNumberToObject(o, "t_eora", m->t_eora);
        cJSON_AddNumberToObject(o, "t_pack", m->t_pack);
        cJSON_AddItemToArray(mods, o);
    }
    char *s = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    char *out = xstrdup(s);
    cJSON_free(s);
    return out;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int report_layer_restore(const quant_plan *plan, run_report *r, const char *entry, int *L)
{
    cJSON *e = cJSON_Parse(entry);
    const cJSON *layer = cJSON_GetObjectItemCaseSensitive(e, "layer");
    if (!e || !cJSON_IsNumber(layer) || layer->valueint < 0 || layer->valueint >= plan->n_layers) {
        cJSON_Delete(e);
        return err_set("journal entry without a valid layer: %.80s", entry);
    }
    int l = layer->valueint;
    layer_result *lr = &r->layers[l];
    lr->done = 1;
    lr->seconds = num(e, "seconds");
    lr->t_forward = num(e, "t_forward");
    lr->tokens_per_s = num(e, "tokens_per_s");
    lr->passes = (int)num(e, "passes");
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(e, "modules"), *o;
    cJSON_ArrayForEach(o, mods)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        int i = cJSON_IsString(name) ? plan_find(plan, name->valuestring) : -1;
        if (i < plan->layer_first[l] || i >= plan->layer_first[l + 1]) {
            cJSON_Delete(e);
            return err_set("journal entry of layer %d names a module not in the plan", l);
        }
        module_result *m = &r->mods[i];
        m->done = 1;
        m->samples = (int64_t)num(o, "samples");
        m->damp = num(o, "damp");
        m->diag_floor = num(o, "diag_floor");
        m->dead_columns = (int)num(o, "dead_columns");
        m->avg_loss = num(o, "avg_loss");
        m->loss = num(o, "loss");
        m->eora_before = num(o, "eora_before");
        m->eora_after = num(o, "eora_after");
        m->t_hessian = num(o, "t_hessian");
        m->t_syrk = num(o, "t_syrk");
        m->t_solve = num(o, "t_solve");
        m->t_eora = num(o, "t_eora");
        m->t_pack = num(o, "t_pack");
    }
    cJSON_Delete(e);
    *L = l;
    return 0;
}

int report_write_quant_log(const char *path, const quant_plan *plan, const run_report *r)
{
    size_t cap = 256 + (size_t)plan->n_mods * 128, n = 0;
    char *buf = xmalloc(cap);
    n += (size_t)snprintf(buf + n, cap - n, "layer,module,loss,samples,damp,time\n");
    for (int i = 0; i < plan->n_mods; i++) {
        const plan_module *pm = &plan->mods[i];
        const module_result *m = &r->mods[i];
        if (!pm->quantize) continue;
        /* a long module name can outgrow the estimate: measure the line, grow, then write it */
        const char *fmt = "%d,%s,%.10f,%lld,%.5f,%.3f\n";
        int len = snprintf(NULL, 0, fmt, pm->layer, pm->rel, m->avg_loss, (long long)m->samples, m->damp, m->t_solve);
        if (len < 0) continue;
        if (n + (size_t)len + 1 > cap) {
            cap = 2 * (n + (size_t)len + 1);
            buf = xrealloc(buf, cap);
        }
        n += (size_t)snprintf(buf + n, cap - n, fmt, pm->layer, pm->rel, m->avg_loss, (long long)m->samples, m->damp,
                              m->t_solve);
    }
    int rc = fs_write_atomic(path, buf, n);
    free(buf);
    return rc;
}

int report_write_json(const char *path, const job_t *job, const quant_plan *plan, const run_report *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "quantizer", "gptq-eora:" GPTQ_EORA_VERSION);
    cJSON_AddStringToObject(root, "job", job->path ? job->path : "");
    cJSON_AddStringToObject(root, "model", job->model);
    cJSON_AddStringToObject(root, "method", job->method);
    cJSON_AddStringToObject(root, "propagate", job->propagate);
    cJSON *cal = cJSON_AddObjectToObject(root, "calibration");
    cJSON_AddNumberToObject(cal, "samples", job->n_samples);
    cJSON_AddNumberToObject(cal, "seq_len", job->seq_len);
    cJSON_AddNumberToObject(cal, "tokens", (double)plan->tokens);
    cJSON_AddNumberToObject(cal, "batch_sequences", plan->seqs_per_batch);
    cJSON *mods = cJSON_AddArrayToObject(root, "modules");
    for (int i = 0; i < plan->n_mods; i++) {
        const plan_module *pm = &plan->mods[i];
        const module_result *m = &r->mods[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", pm->name);
        cJSON_AddNumberToObject(o, "layer", pm->layer);
        cJSON_AddNumberToObject(o, "stage", pm->stage);
        cJSON_AddBoolToObject(o, "quantized", pm->quantize);
        if (pm->quantize) {
            cJSON_AddNumberToObject(o, "bits", pm->bits);
            cJSON_AddNumberToObject(o, "group_size", pm->group_size);
            cJSON_AddNumberToObject(o, "samples", (double)m->samples);
            cJSON_AddNumberToObject(o, "damp", m->damp);
            if (m->diag_floor > 0) cJSON_AddNumberToObject(o, "diag_floor", m->diag_floor);
            cJSON_AddNumberToObject(o, "dead_columns", m->dead_columns);
            cJSON_AddNumberToObject(o, "avg_loss", m->avg_loss);
            cJSON_AddNumberToObject(o, "loss", m->loss);
            cJSON_AddNumberToObject(o, "eora_rank", pm->eora_rank);
            if (pm->eora_rank > 0) {
                cJSON_AddNumberToObject(o, "eora_loss_before", m->eora_before);
                cJSON_AddNumberToObject(o, "eora_loss_after", m->eora_after);
            }
            cJSON *sec = cJSON_AddObjectToObject(o, "seconds");
            cJSON_AddNumberToObject(sec, "hessian", m->t_hessian);
            cJSON_AddNumberToObject(sec, "hessian_syrk", m->t_syrk);
            cJSON_AddNumberToObject(sec, "solve", m->t_solve);
            cJSON_AddNumberToObject(sec, "eora", m->t_eora);
            cJSON_AddNumberToObject(sec, "pack", m->t_pack);
        }
        cJSON_AddItemToArray(mods, o);
    }
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (int L = 0; L < plan->n_layers; L++) {
        const layer_result *lr = &r->layers[L];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", L);
        cJSON_AddNumberToObject(o, "seconds", lr->seconds);
        cJSON_AddNumberToObject(o, "forward_seconds", lr->t_forward);
        cJSON_AddNumberToObject(o, "forward_passes", lr->passes);
        cJSON_AddNumberToObject(o, "tokens_per_s", lr->tokens_per_s);
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(tot, "wall_seconds", r->wall);
    cJSON_AddNumberToObject(tot, "calibration_seconds", r->t_calib);
    cJSON_AddNumberToObject(tot, "embed_seconds", r->t_embed);
    cJSON_AddNumberToObject(tot, "output_seconds", r->t_output);
    cJSON_AddNumberToObject(tot, "peak_rss_bytes", (double)r->peak_rss);
    cJSON_AddNumberToObject(tot, "estimated_peak_bytes", (double)r->estimate);
    cJSON_AddNumberToObject(tot, "bytes_written", (double)r->bytes_written);
    cJSON_AddBoolToObject(tot, "activations_spilled", r->spilled);
    cJSON_AddNumberToObject(tot, "resumed_from_layer", r->resumed_from);
    cJSON_AddNumberToObject(tot, "modules_quantized", plan->n_quantized);
    cJSON_AddNumberToObject(tot, "modules_with_eora", plan->n_eora);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    int rc = fs_write_atomic(path, s, strlen(s));
    cJSON_free(s);
    return rc;
}
