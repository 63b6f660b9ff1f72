#define PCRE2_CODE_UNIT_WIDTH 8
#include "tools/qcheckpoint.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/fsutil.h"

typedef struct {
    pcre2_code *re;
    char *pattern;
    int skip;        /* "-:" rule */
    int bits;        /* 0 = default */
    int group_size;  /* 0 = default */
} dyn_rule;

struct qcheckpoint {
    char *dir;
    st_set *set;
    int has_config;
    int bits, group_size, desc_act, sym;
    gptq_format format;
    dyn_rule *rules;
    int n_rules;
    /* adapter */
    st_set *adapter;
    char *adapter_path;
    double lora_alpha;
    int lora_r, use_rslora, n_lora;
    cJSON *alpha_pattern;  /* object or NULL */
    char describe[256];
};

static const char *LORA_PREFIX = "base_model.model.";

/* ---- quantization_config ---- */

static int json_int(const cJSON *o, const char *key, int dflt, const char *where, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return 0;
    }
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return 0;
    }
    /* range first: converting a double outside the int range is undefined */
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0)
        return err_set("%s: %s: expected an integer", where, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int parse_dynamic(qcheckpoint *q, const cJSON *dyn, const char *where)
{
    if (!dyn || cJSON_IsNull(dyn)) return 0;
    if (!cJSON_IsObject(dyn)) return err_set("%s: dynamic: expected an object", where);
    int n = cJSON_GetArraySize(dyn);
    q->rules = xcalloc((size_t)n + 1, sizeof *q->rules);
    const cJSON *it;
    cJSON_ArrayForEach(it, dyn)
    {
        dyn_rule *r = &q->rules[q->n_rules];
        const char *key = it->string, *pat = key;
        if (!strncmp(key, "-:", 2)) {
            r->skip = 1;
            pat = key + 2;
        } else if (!strncmp(key, "+:", 2)) {
            pat = key + 2;
        }
        r->pattern = xstrdup(pat);
        int ec;
        PCRE2_SIZE eo;
        r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_UTF, &ec,
                              &eo, NULL);
        q->n_rules++;
        if (!r->re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return err_set("%s: dynamic: regex '%s' at offset %zu: %s", where, pat, (size_t)eo,
                           (const char *)msg);
        }
        if (cJSON_IsObject(it)) {
            if (json_int(it, "bits", 0, where, &r->bits) < 0) return -1;
            if (json_int(it, "group_size", 0, where, &r->group_size) < 0) return -1;
        }
    }
    return 0;
}

static int parse_qconfig(qcheckpoint *q, const cJSON *qc, const char *where)
{
    if (!cJSON_IsObject(qc)) return err_set("%s: quantization_config: expected an object", where);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    if (cJSON_IsString(m) && strcasecmp(m->valuestring, "gptq"))
        return err_set("%s: quant_method '%s' is not supported (only gptq)", where, m->valuestring);
    if (json_int(qc, "bits", 4, where, &q->bits) < 0 || json_int(qc, "group_size", 128, where, &q->group_size) < 0 ||
        json_int(qc, "desc_act", 0, where, &q->desc_act) < 0 || json_int(qc, "sym", 1, where, &q->sym) < 0)
        return -1;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(qc, "checkpoint_format");
    if (!cJSON_IsString(f)) f = cJSON_GetObjectItemCaseSensitive(qc, "format");
    const char *fmt = cJSON_IsString(f) ? f->valuestring : "gptq";
    if (!strcmp(fmt, "gptq"))
        q->format = GPTQ_FMT_V1;
    else if (!strcmp(fmt, "gptq_v2"))
        q->format = GPTQ_FMT_V2;
    else
        return err_set("%s: checkpoint_format '%s' is not supported (gptq, gptq_v2)", where, fmt);
    return parse_dynamic(q, cJSON_GetObjectItemCaseSensitive(qc, "dynamic"), where);
}

static int load_qconfig(qcheckpoint *q)
{
    q->bits = 4;
    q->group_size = 128;
    q->sym = 1;
    q->format = GPTQ_FMT_V1;
    char *cfg_path = fs_join(q->dir, "config.json");
    char *qc_path = fs_join(q->dir, "quantize_config.json");
    int rc = 0;
    if (fs_exists(cfg_path)) {
        cJSON *j = fs_read_json(cfg_path);
        if (!j) {
            rc = -1;
            goto out;
        }
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(j, "quantization_config");
        if (qc) {
            q->has_config = 1;
            rc = parse_qconfig(q, qc, cfg_path);
        }
        cJSON_Delete(j);
        if (q->has_config) goto out;
    }
    if (fs_exists(qc_path)) {
        cJSON *j = fs_read_json(qc_path);
        if (!j) {
            rc = -1;
            goto out;
        }
        q->has_config = 1;
        rc = parse_qconfig(q, j, qc_path);
        cJSON_Delete(j);
    }
out:
    free(cfg_path);
    free(qc_path);
    return rc;
}

void qckpt_module_plan(const qcheckpoint *q, const char *module, int *bits, int *group_size)
{
    *bits = q->bits;
    *group_size = q->group_size;
    for (int i = 0; i < q->n_rules; i++) {
        const dyn_rule *r = &q->rules[i];
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
        int hit = pcre2_match(r->re, (PCRE2_SPTR)module, strlen(module), 0, 0, md, NULL) >= 0;
        pcre2_match_data_free(md);
        if (!hit) continue;
        if (r->skip) {
            *bits = 0;
            return;
        }
        if (r->bits) *bits = r->bits;
        if (r->group_size) *group_size = r->group_size;
        return;
    }
}

/* ---- module names ---- */

static const char *const ATTN_LINEARS[] = {"q_proj", "k_proj", "v_proj", "o_proj", NULL};
static const char *const LIN_LINEARS[] = {"in_proj_qkv", "in_proj_z", "in_proj_a", "in_proj_b", "out_proj", NULL};
static const char *const MLP_LINEARS[] = {"gate_proj", "up_proj", "down_proj", NULL};

static int in_list(const char *const *list, const char *s, size_t n)
{
    for (; *list; list++)
        if (strlen(*list) == n && !strncmp(*list, s, n)) return 1;
    return 0;
}

/* "<prefix>layers.<L>.<block>.<short>" names a linear of the model? */
static int is_model_linear(const model_config *cfg, const char *mod, size_t len)
{
    size_t pl = strlen(cfg->prefix);
    if (len <= pl + 7 || strncmp(mod, cfg->prefix, pl) || strncmp(mod + pl, "layers.", 7)) return 0;
    const char *p = mod + pl + 7, *end = mod + len;
    char *e;
    long L = strtol(p, &e, 10);
    if (e == p || L < 0 || L >= cfg->n_layers || *e != '.') return 0;
    p = e + 1;
    const char *dot = memchr(p, '.', (size_t)(end - p));
    if (!dot) return 0;
    size_t bl = (size_t)(dot - p), sl = (size_t)(end - dot - 1);
    if (bl == 9 && !strncmp(p, "self_attn", 9)) return cfg->layer_types[L] == LAYER_FULL_ATTN && in_list(ATTN_LINEARS, dot + 1, sl);
    if (bl == 11 && !strncmp(p, "linear_attn", 11)) return cfg->layer_types[L] == LAYER_LINEAR_ATTN && in_list(LIN_LINEARS, dot + 1, sl);
    if (bl == 3 && !strncmp(p, "mlp", 3)) return in_list(MLP_LINEARS, dot + 1, sl);
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* ---- adapter ---- */

static int open_adapter(qcheckpoint *q, const char *path, const model_config *cfg)
{
    char *st_path, *cfg_path;
    if (fs_is_dir(path)) {
        st_path = fs_join(path, "adapter_model.safetensors");
        cfg_path = fs_join(path, "adapter_config.json");
    } else {
        st_path = xstrdup(path);
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path)) : xstrdup(".");
        cfg_path = fs_join(dir, "adapter_config.json");
        free(dir);
    }
    int rc = -1;
    cJSON *j = NULL;
    q->adapter_path = xstrdup(path);
    if (!fs_exists(st_path)) {
        err_set("adapter %s: %s not found", path, st_path);
        goto out;
    }
    if (!fs_exists(cfg_path)) {
        err_set("adapter %s: %s not found", path, cfg_path);
        goto out;
    }
    if (!(j = fs_read_json(cfg_path))) goto out;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (cJSON_IsString(pt) && strcmp(pt->valuestring, "LORA")) {
        err_set("%s: peft_type '%s' is not supported (LORA)", cfg_path, pt->valuestring);
        goto out;
    }
    int alpha = 0;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    if (json_int(j, "r", 0, cfg_path, &q->lora_r) < 0 || json_int(j, "use_rslora", 0, cfg_path, &q->use_rslora) < 0)
        goto out;
    if (cJSON_IsNumber(a))
        q->lora_alpha = a->valuedouble;
    else if (json_int(j, "lora_alpha", q->lora_r, cfg_path, &alpha) == 0)
        q->lora_alpha = alpha;
    else
        goto out;
    if (q->lora_r <= 0) {
        err_set("%s: r: expected a positive rank", cfg_path);
        goto out;
    }
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern");
    if (cJSON_IsObject(ap) && cJSON_GetArraySize(ap) > 0) q->alpha_pattern = cJSON_Duplicate(ap, 1);
    if (!(q->adapter = st_open(st_path))) goto out;
    /* every tensor must belong to a linear of this model: catches prefix mismatches that would
     * otherwise silently evaluate without the adapter */
    size_t pl = strlen(LORA_PREFIX);
    int n_a = 0, n_b = 0;
    for (size_t i = 0; i < st_count(q->adapter); i++) {
        const char *name = st_get(q->adapter, i)->name;
        int isA = ends_with(name, ".lora_A.weight"), isB = ends_with(name, ".lora_B.weight");
        size_t len = strlen(name);
        if ((!isA && !isB) || strncmp(name, LORA_PREFIX, pl) ||
            !is_model_linear(cfg, name + pl, len - pl - strlen(".lora_A.weight"))) {
            err_set("adapter %s: tensor '%s' does not name a linear of this model (expected %s%slayers.N.<block>.<linear>.lora_{A,B}.weight)",
                    st_path, name, LORA_PREFIX, cfg->prefix);
            goto out;
        }
        n_a += isA;
        n_b += isB;
    }
    if (n_a != n_b) {
        err_set("adapter %s: %d lora_A but %d lora_B tensors", st_path, n_a, n_b);
        goto out;
    }
    q->n_lora = n_a;
    rc = 0;
out:
    cJSON_Delete(j);
    free(st_path);
    free(cfg_path);
    return rc;
}

/* PEFT scaling of one module: alpha (alpha_pattern key matching the end of the name) / r. */
static double lora_scaling(const qcheckpoint *q, const char *module, int r)
{
    double alpha = q->lora_alpha;
    if (q->alpha_pattern) {
        const cJSON *it;
        cJSON_ArrayForEach(it, q->alpha_pattern)
        {
            size_t ml = strlen(module), kl = strlen(it->string);
            if (cJSON_IsNumber(it) && ml >= kl && !strcmp(module + ml - kl, it->string) &&
                (ml == kl || module[ml - kl - 1] == '.')) {
                alpha = it->valuedouble;
                break;
            }
        }
    }
    return q->use_rslora ? alpha / sqrt((double)r) : alpha / (double)r;
}

int qckpt_load_lora(const qcheckpoint *q, const char *module, int out, int in, float **A, float **B, int *r)
{
    *A = *B = NULL;
    *r = 0;
    if (!q->adapter) return 0;
    char na[512], nb[512];
    snprintf(na, sizeof na, "%s%s.lora_A.weight", LORA_PREFIX, module);
    snprintf(nb, sizeof nb, "%s%s.lora_B.weight", LORA_PREFIX, module);
    const st_tensor *ta = st_find(q->adapter, na), *tb = st_find(q->adapter, nb);
    if (!ta && !tb) return 0;
    if (!ta || !tb) return err_set("adapter %s: %s has only one of lora_A / lora_B", q->adapter_path, module);
    if (ta->ndim != 2 || tb->ndim != 2 || ta->shape[1] != in || tb->shape[0] != out || ta->shape[0] != tb->shape[1] ||
        ta->shape[0] <= 0)
        return err_set("adapter %s: %s: lora_A [%lld, %lld] / lora_B [%lld, %lld] do not fit a [%d, %d] linear",
                       q->adapter_path, module, (long long)ta->shape[0], (long long)ta->shape[ta->ndim > 1],
                       (long long)tb->shape[0], (long long)tb->shape[tb->ndim > 1], out, in);
    int rank = (int)ta->shape[0];
    float *a = st_load_f32(q->adapter, na, NULL), *b = a ? st_load_f32(q->adapter, nb, NULL) : NULL;
    if (!a || !b) {
        free(a);
        return -1;
    }
    double s = lora_scaling(q, module, rank);
    if (s != 1.0)
        for (int64_t i = 0; i < (int64_t)out * rank; i++) b[i] = (float)(b[i] * s);
    *A = a;
    *B = b;
    *r = rank;
    return 0;
}

/* ---- open ---- */

static void describe(qcheckpoint *q)
{
    int by_bits[9] = {0}, n_q = 0, other = 0;
    size_t n = st_count(q->set);
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_get(q->set, i);
        if (!ends_with(t->name, ".qweight") || t->ndim != 2) continue;
        n_q++;
        char gname[512];
        snprintf(gname, sizeof gname, "%.*s.g_idx", (int)(strlen(t->name) - 8), t->name);
        const st_tensor *g = st_find(q->set, gname);
        int64_t bits = g && g->numel > 0 ? t->shape[0] * 32 / g->numel : 0;
        if (bits >= 2 && bits <= 8)
            by_bits[bits]++;
        else
            other++;
    }
    int off = snprintf(q->describe, sizeof q->describe, "%d quantized modules", n_q);
    const char *sep = " (";
    for (int b = 2; b <= 8; b++)
        if (by_bits[b]) {
            off += snprintf(q->describe + off, sizeof q->describe - (size_t)off, "%s%d × %d-bit", sep, by_bits[b], b);
            sep = ", ";
        }
    if (other) off += snprintf(q->describe + off, sizeof q->describe - (size_t)off, "%s%d × ?", sep, other);
    if (strcmp(sep, " (")) off += snprintf(q->describe + off, sizeof q->describe - (size_t)off, ")");
    off += snprintf(q->describe + off, sizeof q->describe - (size_t)off, ", format %s",
                    !q->has_config ? "none (float checkpoint)" : q->format == GPTQ_FMT_V1 ? "gptq (v1)" : "gptq_v2");
    if (q->adapter)
        snprintf(q->describe + off, sizeof q->describe - (size_t)off, ", adapter r %d alpha %g on %d modules",
                 q->lora_r, q->lora_alpha, q->n_lora);
    if (!q->has_config && n_q > 0) q->describe[0] = '\0'; /* flagged by the caller */
}

qcheckpoint *qckpt_open(const char *dir, const char *adapter, const model_config *cfg)
{
    qcheckpoint *q = xcalloc(1, sizeof *q);
    q->dir = xstrdup(dir);
    if (load_qconfig(q) < 0) goto fail;
    if (!(q->set = st_open(dir))) goto fail;
    if (adapter && open_adapter(q, adapter, cfg) < 0) goto fail;
    describe(q);
    if (!q->describe[0]) {
        err_set("%s: holds .qweight tensors but neither config.json nor quantize_config.json has a quantization_config", dir);
        goto fail;
    }
    return q;
fail:
    qckpt_close(q);
    return NULL;
}

void qckpt_close(qcheckpoint *q)
{
    if (!q) return;
    for (int i = 0; i < q->n_rules; i++) {
        pcre2_code_free(q->rules[i].re);
        free(q->rules[i].pattern);
    }
    free(q->rules);
    if (q->set) st_close(q->set);
    if (q->adapter) st_close(q->adapter);
    cJSON_Delete(q->alpha_pattern);
    free(q->adapter_path);
    free(q->dir);
    free(q);
}

const st_set *qckpt_tensors(const qcheckpoint *q) { return q->set; }
const char *qckpt_dir(const qcheckpoint *q) { return q->dir; }
const char *qckpt_describe(const qcheckpoint *q) { return q->describe; }
int qckpt_has_config(const qcheckpoint *q) { return q->has_config; }
gptq_format qckpt_format(const qcheckpoint *q) { return q->format; }

/* ---- linears ---- */

static const st_tensor *need(const qcheckpoint *q, const char *module, const char *suffix, dtype_t dt, int ndim)
{
    char name[512];
    snprintf(name, sizeof name, "%s.%s", module, suffix);
    const st_tensor *t = st_find(q->set, name);
    if (!t) {
        err_set("%s: tensor %s missing (a quantized module needs qweight, qzeros, scales, g_idx)", q->dir, name);
        return NULL;
    }
    if (t->dtype != dt || t->ndim != ndim) {
        err_set("%s: tensor %s is %s with %d dims, expected %s with %d", q->dir, name, dtype_name(t->dtype), t->ndim,
                dtype_name(dt), ndim);
        return NULL;
    }
    return t;
}

static int load_quantized(const qcheckpoint *q, const char *module, int out, int in, float *W, int *bits_out)
{
    const st_tensor *qw = need(q, module, "qweight", DT_I32, 2), *qz = need(q, module, "qzeros", DT_I32, 2),
                    *sc = need(q, module, "scales", DT_F16, 2);
    if (!qw || !qz || !sc) return -1;
    char gname[512];
    snprintf(gname, sizeof gname, "%s.g_idx", module);
    const st_tensor *gi = st_find(q->set, gname);
    if (gi && (gi->dtype != DT_I32 || gi->numel != in))
        return err_set("%s: tensor %s is %s [%lld], expected I32 [%d]", q->dir, gname, dtype_name(gi->dtype),
                       (long long)gi->numel, in);
    if (qw->shape[1] != out || (qw->shape[0] * 32) % in)
        return err_set("%s: %s.qweight [%lld, %lld] does not fit a [%d, %d] linear", q->dir, module,
                       (long long)qw->shape[0], (long long)qw->shape[1], out, in);
    int bits = (int)(qw->shape[0] * 32 / in);
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return err_set("%s: %s.qweight [%lld, %d] implies %d bits (supported 2, 3, 4, 8)", q->dir, module,
                       (long long)qw->shape[0], out, bits);
    int plan_bits, plan_gs;
    qckpt_module_plan(q, module, &plan_bits, &plan_gs);
    if (plan_bits != bits)
        return err_set("%s: %s is stored with %d bits but quantization_config (dynamic) says %d", q->dir, module, bits,
                       plan_bits);
    int n_groups = (int)sc->shape[0];
    if (sc->shape[1] != out || qz->shape[0] != n_groups || qz->shape[1] * 32 != (int64_t)out * bits || n_groups <= 0)
        return err_set("%s: %s: scales [%lld, %lld] / qzeros [%lld, %lld] do not fit %d-bit [%d, %d]", q->dir, module,
                       (long long)sc->shape[0], (long long)sc->shape[1], (long long)qz->shape[0],
                       (long long)qz->shape[1], bits, out, in);
    int gs = plan_gs > 0 ? plan_gs : in;
    if (!gi && q->desc_act) /* act-order: g_idx is a permutation that cannot be rebuilt */
        return err_set("%s: %s: desc_act checkpoint has no g_idx", q->dir, module);
    if (!gi && (in + gs - 1) / gs != n_groups)
        return err_set("%s: %s has no g_idx and %d groups do not fit group_size %d", q->dir, module, n_groups, gs);
    /* private copies: the mapping is read-only and the unpacker may convert zeros in place */
    gptq_packed p = {.bits = bits, .in = in, .out = out, .n_groups = n_groups, .qw_rows = (int)qw->shape[0],
                     .qz_cols = (int)qz->shape[1]};
    p.qweight = xmalloc(qw->nbytes);
    memcpy(p.qweight, qw->data, qw->nbytes);
    p.qzeros = xmalloc(qz->nbytes);
    memcpy(p.qzeros, qz->data, qz->nbytes);
    p.scales = xmalloc(sc->nbytes);
    memcpy(p.scales, sc->data, sc->nbytes);
    p.g_idx = xmalloc((size_t)in * sizeof *p.g_idx);
    if (gi)
        memcpy(p.g_idx, gi->data, (size_t)in * sizeof *p.g_idx);
    else
        for (int j = 0; j < in; j++) p.g_idx[j] = j / gs;
    int rc = 0;
    for (int j = 0; j < in; j++)
        if (p.g_idx[j] < 0 || p.g_idx[j] >= n_groups) {
            rc = err_set("%s: %s.g_idx[%d] = %d is outside 0..%d", q->dir, module, j, p.g_idx[j], n_groups - 1);
            break;
        }
    if (rc == 0 && gptq_unpack_dequant(&p, q->format, W) < 0) rc = err_prefix("%s: %s", q->dir, module);
    free(p.qweight);
    free(p.qzeros);
    free(p.scales);
    free(p.g_idx);
    *bits_out = bits;
    return rc;
}

int qckpt_load_linear(const qcheckpoint *q, const char *module, int out, int in, float **W, float **bias, int *bits)
{
    char name[512];
    *W = NULL;
    *bias = NULL;
    *bits = 0;
    snprintf(name, sizeof name, "%s.qweight", module);
    float *w = NULL;
    if (st_find(q->set, name)) {
        w = xmalloc((size_t)out * in * sizeof *w);
        if (load_quantized(q, module, out, in, w, bits) < 0) {
            free(w);
            return -1;
        }
    } else {
        snprintf(name, sizeof name, "%s.weight", module);
        const st_tensor *t = st_find(q->set, name);
        if (!t) return err_set("%s: module %s has neither .qweight nor .weight", q->dir, module);
        if (t->ndim != 2 || t->shape[0] != out || t->shape[1] != in)
            return err_set("%s: %s is not [%d, %d]", q->dir, name, out, in);
        if (!(w = st_load_f32(q->set, name, NULL))) return -1;
    }
    snprintf(name, sizeof name, "%s.bias", module);
    const st_tensor *b = st_find(q->set, name);
    if (b) {
        if (b->numel != out) {
            free(w);
            return err_set("%s: %s has %lld values, expected %d", q->dir, name, (long long)b->numel, out);
        }
        if (!(*bias = st_load_f32(q->set, name, NULL))) {
            free(w);
            return -1;
        }
    }
    *W = w;
    return 0;
}

/* ---- layers ---- */

static int replace_linear(const qcheckpoint *q, const char *module, linear_t *l)
{
    float *W, *bias, *A, *B;
    int bits, r;
    if (qckpt_load_linear(q, module, l->out, l->in, &W, &bias, &bits) < 0) return -1;
    if (qckpt_load_lora(q, module, l->out, l->in, &A, &B, &r) < 0) {
        free(W);
        free(bias);
        return -1;
    }
    free(l->w);
    free(l->bias);
    free(l->lora_A);
    free(l->lora_B);
    l->w = W;
    l->bias = bias;
    l->lora_A = A;
    l->lora_B = B;
    l->lora_r = r;
    return 0;
}

/* Overwrite a small fp32 layer tensor with the checkpoint's copy (same element count). */
static int replace_small(const qcheckpoint *q, const char *name, float *dst, int64_t numel)
{
    if (!dst) return 0;
    const st_tensor *t = st_find(q->set, name);
    if (!t) return err_set("%s: tensor %s missing", q->dir, name);
    if (t->numel != numel)
        return err_set("%s: tensor %s has %lld values, the base model %lld", q->dir, name, (long long)t->numel,
                       (long long)numel);
    if (st_to_f32(t, dst) < 0) return err_prefix("%s: %s", q->dir, name);
    return 0;
}

int qckpt_apply_layer(const qcheckpoint *q, const model_config *cfg, int L, layer_weights *lw)
{
    char name[512];
    const char *block = cfg->layer_types[L] == LAYER_FULL_ATTN ? "self_attn" : "linear_attn";
    const char *const *mixer = cfg->layer_types[L] == LAYER_FULL_ATTN ? ATTN_LINEARS : LIN_LINEARS;
    const struct {
        const char *block;
        const char *const *list;
    } groups[2] = {{block, mixer}, {"mlp", MLP_LINEARS}};
    for (int g = 0; g < 2; g++)
        for (const char *const *s = groups[g].list; *s; s++) {
            linear_t *l = layer_linear(lw, *s);
            if (!l) continue;
            snprintf(name, sizeof name, "%slayers.%d.%s.%s", cfg->prefix, L, groups[g].block, *s);
            if (replace_linear(q, name, l) < 0) return -1;
        }
#define SMALL(field, suffix, numel)                                                             \
    do {                                                                                        \
        snprintf(name, sizeof name, "%slayers.%d.%s", cfg->prefix, L, suffix);                  \
        if (replace_small(q, name, lw->field, numel) < 0) return -1;                            \
    } while (0)
    SMALL(input_norm, "input_layernorm.weight", cfg->hidden);
    SMALL(post_norm, "post_attention_layernorm.weight", cfg->hidden);
    if (cfg->layer_types[L] == LAYER_FULL_ATTN) {
        SMALL(q_norm, "self_attn.q_norm.weight", cfg->head_dim);
        SMALL(k_norm, "self_attn.k_norm.weight", cfg->head_dim);
    } else {
        int64_t ch = 2LL * cfg->lin_k_heads * cfg->lin_k_dim + (int64_t)cfg->lin_v_heads * cfg->lin_v_dim;
        SMALL(conv1d, "linear_attn.conv1d.weight", ch * cfg->conv_kernel);
        SMALL(A_log, "linear_attn.A_log", cfg->lin_v_heads);
        SMALL(dt_bias, "linear_attn.dt_bias", cfg->lin_v_heads);
        SMALL(lin_norm, "linear_attn.norm.weight", cfg->lin_v_dim);
    }
#undef SMALL
    return 0;
}

int qckpt_tensor_same(const qcheckpoint *q, const st_set *base, const char *name)
{
    const st_tensor *t = st_find(q->set, name);
    if (!t) return 1;
    const st_tensor *b = st_find(base, name);
    if (!b || b->dtype != t->dtype || b->nbytes != t->nbytes) return 0;
    return memcmp(b->data, t->data, t->nbytes) == 0;
}
