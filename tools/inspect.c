/* inspect — analysis behind `gptq-eora inspect` (see tools/inspect.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tools/inspect.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/fsutil.h"

const char *inspect_leaf(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

static char *module_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? strndup(name, (size_t)(dot - name)) : xstrdup("");
}

static pcre2_code *compile_regex(const char *pattern, uint32_t options, const char *what)
{
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        err_set("%s '%s': invalid regex at offset %zu: %s", what, pattern, (size_t)at, (const char *)msg);
    }
    return re;
}

static int regex_hit(const pcre2_code *re, const char *s)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* ---- quantization_config ---- */

static int json_int(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    /* out of the int range (undefined to convert) reads as absent */
    if (cJSON_IsNumber(v)) return fabs(v->valuedouble) <= 2147483647.0 ? (int)v->valuedouble : -1;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return -1;
}

static char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? xstrdup(v->valuestring) : NULL;
}

/* Directory that may hold config.json for this path. */
static char *config_dir(const char *path)
{
    if (fs_is_dir(path)) return xstrdup(path);
    const char *slash = strrchr(path, '/');
    return slash ? strndup(path, (size_t)(slash - path) + 1) : xstrdup(".");
}

/* Loads config.json's quantization_config (or quantize_config.json). Returns the parsed
 * object (owned by *doc) or NULL if there is none; -1 only for a broken file. */
static int load_qcfg(inspect_report *r, cJSON **doc, const cJSON **qcfg)
{
    *doc = NULL;
    *qcfg = NULL;
    char *dir = config_dir(r->path);
    static const char *names[] = {"config.json", "quantize_config.json"};
    int rc = 0;
    for (int i = 0; i < 2 && !*qcfg && !rc; i++) {
        char *p = fs_join(dir, names[i]);
        if (fs_exists(p)) {
            cJSON *d = fs_read_json(p);
            if (!d || !cJSON_IsObject(d)) {
                cJSON_Delete(d);
                rc = err_set("%s: not a JSON object", p);
            } else {
                const cJSON *q = i == 0 ? cJSON_GetObjectItemCaseSensitive(d, "quantization_config") : d;
                if (cJSON_IsObject(q) && (i == 0 || cJSON_GetObjectItemCaseSensitive(q, "bits"))) {
                    *doc = d;
                    *qcfg = q;
                    r->qcfg_file = xstrdup(p);
                } else {
                    cJSON_Delete(d);
                }
            }
        }
        free(p);
    }
    free(dir);
    return rc;
}

/* Expected bits of a module under GPTQModel's dynamic rules (first matching pattern wins). */
static int expected_bits(const cJSON *qcfg, const char *module, int *out)
{
    int bits = json_int(qcfg, "bits");
    const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(qcfg, "dynamic"), *rule;
    if (cJSON_IsObject(dyn)) {
        cJSON_ArrayForEach(rule, dyn) {
            const char *pat = rule->string;
            int negative = strncmp(pat, "-:", 2) == 0;
            if (negative || strncmp(pat, "+:", 2) == 0) pat += 2;
            pcre2_code *re = compile_regex(pat, PCRE2_ANCHORED, "quantization_config.dynamic pattern");
            if (!re) return -1;
            int hit = regex_hit(re, module);
            pcre2_code_free(re);
            if (!hit) continue;
            if (negative) {
                bits = 0;
            } else {
                int b = json_int(rule, "bits");
                if (b > 0) bits = b;
            }
            break;
        }
    }
    *out = bits;
    return 0;
}

/* ---- per-module analysis ---- */

static const st_tensor *member(const inspect_report *r, const inspect_module *m, const char *leaf)
{
    for (size_t i = 0; i < m->count; i++)
        if (strcmp(inspect_leaf(r->tensors[m->first + i]->name), leaf) == 0) return r->tensors[m->first + i];
    return NULL;
}

static void analyse_quant(const inspect_report *r, inspect_module *m)
{
    const st_tensor *qw = member(r, m, "qweight"), *qz = member(r, m, "qzeros"), *sc = member(r, m, "scales"),
                    *gi = member(r, m, "g_idx");
    if (!qw || !qz || !sc || qw->ndim != 2 || qz->ndim != 2 || sc->ndim != 2) return;
    m->quantized = 1;
    m->out = qw->shape[1];
    m->groups = sc->shape[0];
    int64_t rows = qw->shape[0];
    if (gi && gi->ndim == 1 && gi->shape[0] > 0) {
        m->in = gi->shape[0];
        if ((rows * 32) % m->in == 0) m->bits = (int)(rows * 32 / m->in);
    } else if (m->out > 0 && (qz->shape[1] * 32) % m->out == 0) {
        m->bits = (int)(qz->shape[1] * 32 / m->out);
        if (m->bits > 0 && (rows * 32) % m->bits == 0) m->in = rows * 32 / m->bits;
    }
    if (m->bits < 1 || m->bits > 8) m->bits = 0;
    if (m->in > 0 && m->groups > 0) m->group_size = (m->in + m->groups - 1) / m->groups;
    m->quant_bytes = qw->nbytes + qz->nbytes + sc->nbytes + (gi ? gi->nbytes : 0);
    if (m->in > 0 && m->out > 0) m->eff_bits = 8.0 * (double)m->quant_bytes / ((double)m->in * (double)m->out);
}

/* Group the filtered tensors by module, modules in order of first appearance. */
static void group_modules(inspect_report *r, const st_tensor **list, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 2) cap <<= 1;
    size_t *slot = xcalloc(cap, sizeof *slot); /* module index + 1 */
    size_t *mod_of = xmalloc((n ? n : 1) * sizeof *mod_of);
    for (size_t i = 0; i < n; i++) {
        char *name = module_of(list[i]->name);
        uint64_t h = 1469598103934665603ull;
        for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
        size_t k = h & (cap - 1);
        while (slot[k] && strcmp(r->modules[slot[k] - 1].name, name) != 0) k = (k + 1) & (cap - 1);
        if (!slot[k]) {
            r->modules = xrealloc(r->modules, (r->n_modules + 1) * sizeof *r->modules);
            inspect_module *m = &r->modules[r->n_modules];
            memset(m, 0, sizeof *m);
            m->name = name;
            m->cfg_bits = -1;
            slot[k] = ++r->n_modules;
        } else {
            free(name);
        }
        mod_of[i] = slot[k] - 1;
        r->modules[mod_of[i]].count++;
        r->modules[mod_of[i]].bytes += list[i]->nbytes;
    }
    size_t pos = 0;
    for (size_t m = 0; m < r->n_modules; m++) {
        r->modules[m].first = pos;
        pos += r->modules[m].count;
        r->modules[m].count = 0;
    }
    r->tensors = xmalloc((n ? n : 1) * sizeof *r->tensors);
    for (size_t i = 0; i < n; i++) {
        inspect_module *m = &r->modules[mod_of[i]];
        r->tensors[m->first + m->count++] = list[i];
    }
    r->n_tensors = n;
    free(slot);
    free(mod_of);
}

int inspect_open(const char *path, const char *filter, inspect_report *r)
{
    memset(r, 0, sizeof *r);
    r->q_bits = r->q_group_size = r->q_desc_act = r->q_sym = -1;
    r->path = xstrdup(path);
    pcre2_code *re = NULL;
    if (filter && !(re = compile_regex(filter, 0, "--filter"))) goto fail;
    if (!(r->set = st_open(path))) goto fail;
    size_t n_all = st_count(r->set), n = 0;
    const st_tensor **list = xmalloc((n_all ? n_all : 1) * sizeof *list);
    for (size_t i = 0; i < n_all; i++) {
        const st_tensor *t = st_get(r->set, i);
        if (!re || regex_hit(re, t->name)) list[n++] = t;
    }
    pcre2_code_free(re);
    re = NULL;
    group_modules(r, list, n);
    free(list);
    for (size_t i = 0; i < r->n_tensors; i++) {
        const st_tensor *t = r->tensors[i];
        r->dtypes[t->dtype].count++;
        r->dtypes[t->dtype].bytes += t->nbytes;
        r->dtypes[t->dtype].numel += (uint64_t)t->numel;
        r->total_bytes += t->nbytes;
    }
    cJSON *doc;
    const cJSON *qcfg;
    if (load_qcfg(r, &doc, &qcfg)) goto fail;
    if (qcfg) {
        r->qcfg_json = cJSON_PrintUnformatted(qcfg);
        r->q_bits = json_int(qcfg, "bits");
        r->q_group_size = json_int(qcfg, "group_size");
        r->q_desc_act = json_int(qcfg, "desc_act");
        r->q_sym = json_int(qcfg, "sym");
        r->q_method = json_str(qcfg, "quant_method");
        r->q_format = json_str(qcfg, "checkpoint_format");
        if (!r->q_format) r->q_format = json_str(qcfg, "format");
    }
    int rc = 0;
    for (size_t i = 0; i < r->n_modules && !rc; i++) {
        inspect_module *m = &r->modules[i];
        analyse_quant(r, m);
        if (!m->quantized) continue;
        if (qcfg) rc = expected_bits(qcfg, m->name, &m->cfg_bits);
        r->n_quantized++;
        if (m->bits) r->modules_by_bits[m->bits]++;
        if (m->in > 0 && m->out > 0) {
            r->quant_weights += (uint64_t)m->in * (uint64_t)m->out;
            r->quant_bytes += m->quant_bytes;
        }
        if (m->cfg_bits >= 0 && m->cfg_bits != m->bits) r->n_mismatch++;
    }
    cJSON_Delete(doc);
    if (rc) goto fail;
    if (r->quant_weights) r->eff_bits = 8.0 * (double)r->quant_bytes / (double)r->quant_weights;
    return 0;
fail:
    pcre2_code_free(re);
    inspect_free(r);
    return -1;
}

void inspect_free(inspect_report *r)
{
    for (size_t i = 0; i < r->n_modules; i++) free(r->modules[i].name);
    free(r->modules);
    free(r->tensors);
    st_close(r->set);
    free(r->path);
    free(r->qcfg_file);
    free(r->qcfg_json);
    free(r->q_method);
    free(r->q_format);
    memset(r, 0, sizeof *r);
}

/* ---- JSON ---- */

static cJSON *shape_json(const st_tensor *t)
{
    cJSON *a = cJSON_CreateArray();
    for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)t->shape[d]));
    return a;
}

char *inspect_json(const inspect_report *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "path", r->path);
    cJSON *files = cJSON_AddArrayToObject(root, "files");
    for (size_t i = 0; i < st_file_count(r->set); i++) cJSON_AddItemToArray(files, cJSON_CreateString(st_file_path(r->set, i)));
    cJSON_AddNumberToObject(root, "tensors", (double)r->n_tensors);
    cJSON_AddNumberToObject(root, "bytes", (double)r->total_bytes);
    cJSON *dts = cJSON_AddObjectToObject(root, "dtypes");
    for (int d = 0; d < DT_COUNT; d++) {
        if (!r->dtypes[d].count) continue;
        cJSON *o = cJSON_AddObjectToObject(dts, dtype_name((dtype_t)d));
        cJSON_AddNumberToObject(o, "tensors", (double)r->dtypes[d].count);
        cJSON_AddNumberToObject(o, "elements", (double)r->dtypes[d].numel);
        cJSON_AddNumberToObject(o, "bytes", (double)r->dtypes[d].bytes);
    }
    cJSON *mods = cJSON_AddArrayToObject(root, "modules");
    for (size_t i = 0; i < r->n_modules; i++) {
        const inspect_module *m = &r->modules[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", m->name);
        cJSON_AddNumberToObject(o, "bytes", (double)m->bytes);
        cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
        for (size_t k = 0; k < m->count; k++) {
            const st_tensor *t = r->tensors[m->first + k];
            cJSON *to = cJSON_CreateObject();
            cJSON_AddStringToObject(to, "name", inspect_leaf(t->name));
            cJSON_AddStringToObject(to, "dtype", dtype_name(t->dtype));
            cJSON_AddItemToObject(to, "shape", shape_json(t));
            cJSON_AddNumberToObject(to, "bytes", (double)t->nbytes);
            cJSON_AddItemToArray(ts, to);
        }
        if (m->quantized) {
            cJSON *q = cJSON_AddObjectToObject(o, "gptq");
            cJSON_AddNumberToObject(q, "bits", m->bits);
            cJSON_AddNumberToObject(q, "in_features", (double)m->in);
            cJSON_AddNumberToObject(q, "out_features", (double)m->out);
            cJSON_AddNumberToObject(q, "groups", (double)m->groups);
            cJSON_AddNumberToObject(q, "group_size", (double)m->group_size);
            cJSON_AddNumberToObject(q, "effective_bits", m->eff_bits);
            if (m->cfg_bits >= 0) cJSON_AddNumberToObject(q, "config_bits", m->cfg_bits);
        }
        cJSON_AddItemToArray(mods, o);
    }
    cJSON *q = cJSON_AddObjectToObject(root, "quantized");
    cJSON_AddNumberToObject(q, "modules", (double)r->n_quantized);
    cJSON *bb = cJSON_AddObjectToObject(q, "modules_by_bits");
    for (int b = 1; b <= 8; b++)
        if (r->modules_by_bits[b]) {
            char k[16];
            snprintf(k, sizeof k, "%d", b);
            cJSON_AddNumberToObject(bb, k, (double)r->modules_by_bits[b]);
        }
    cJSON_AddNumberToObject(q, "weights", (double)r->quant_weights);
    cJSON_AddNumberToObject(q, "bytes", (double)r->quant_bytes);
    cJSON_AddNumberToObject(q, "effective_bits", r->eff_bits);
    cJSON_AddNumberToObject(q, "config_mismatches", (double)r->n_mismatch);
    if (r->qcfg_json) {
        cJSON *cfg = cJSON_Parse(r->qcfg_json);
        cJSON_AddItemToObject(root, "quantization_config", cfg ? cfg : cJSON_CreateNull());
        cJSON_AddStringToObject(root, "quantization_config_file", r->qcfg_file);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}
