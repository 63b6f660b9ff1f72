/* model_config — config.json (Qwen3.5 VLM or flat text-only) → model_config, through cJSON.
 *
 * Lookup rules (what transformers does for these checkpoints):
 *  - VLM layout (model_type "qwen3_5" with "text_config"): architecture keys are read from
 *    text_config; tensors live under "model.language_model.".
 *  - Flat layout (model_type "qwen3_5_text", or "qwen3_5" without text_config): keys at top
 *    level; tensors under "model.".
 *  - rope_theta / partial_rotary_factor: rope_parameters first, then the text config itself
 *    (older configs), then (partial_rotary_factor only) the default 0.25.
 *  - layer_types absent: every full_attention_interval-th layer (default 4) is full attention.
 *  - Keys transformers ignores (attn_output_gate, mtp_*, mamba_ssm_dtype, ...) are accepted.
 * Shape-defining keys are required: a config without them is not a checkpoint we can trust. */
#include "io/model_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/fsutil.h"

typedef struct {
    const char *file;   /* for messages */
    const char *scope;  /* "text_config." or "" */
} ctx_t;

static int get_int(const ctx_t *c, const cJSON *obj, const char *key, int required, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return err_set("%s: missing required key %s%s", c->file, c->scope, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0)
        return err_set("%s: %s%s: expected an integer", c->file, c->scope, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_pos_int(const ctx_t *c, const cJSON *obj, const char *key, int required, int def, int *out)
{
    if (get_int(c, obj, key, required, def, out)) return -1;
    if (*out <= 0) return err_set("%s: %s%s: expected a positive integer, got %d", c->file, c->scope, key, *out);
    return 0;
}

/* Number from the first object in objs[] that has it; *found tells whether any had it. */
static int get_num_any(const ctx_t *c, const cJSON *const *objs, const char *const *scopes, int n,
                       const char *key, double *out, int *found)
{
    *found = 0;
    for (int i = 0; i < n; i++) {
        if (!objs[i]) continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(objs[i], key);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsNumber(v)) return err_set("%s: %s%s: expected a number", c->file, scopes[i], key);
        *out = v->valuedouble;
        *found = 1;
        return 0;
    }
    return 0;
}

static int get_bool(const ctx_t *c, const cJSON *obj, const char *scope, const char *key, int *out, int *found)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *found = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return err_set("%s: %s%s: expected true or false", c->file, scope, key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    *found = 1;
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

static const char *get_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* eos_token_id may be an int or a list of ints (first one is used). */
static int get_eos(const ctx_t *c, const cJSON *obj, const char *scope, int *out, int *found)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "eos_token_id");
    *found = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0)
        return err_set("%s: %seos_token_id: expected an integer or a list of integers", c->file, scope);
    *out = (int)v->valuedouble;
    *found = 1;
    return 0;
}

static int parse_layer_types(const ctx_t *c, const cJSON *tc, model_config *cfg)
{
    cfg->layer_types = xcalloc((size_t)cfg->n_layers, sizeof *cfg->layer_types);
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(tc, "layer_types");
    if (!lt || cJSON_IsNull(lt)) {
        int interval;
        if (get_pos_int(c, tc, "full_attention_interval", 0, 4, &interval)) return -1;
        for (int i = 0; i < cfg->n_layers; i++)
            cfg->layer_types[i] = ((i + 1) % interval == 0) ? LAYER_FULL_ATTN : LAYER_LINEAR_ATTN;
        return 0;
    }
    if (!cJSON_IsArray(lt)) return err_set("%s: %slayer_types: expected a list of strings", c->file, c->scope);
    int n = cJSON_GetArraySize(lt);
    if (n != cfg->n_layers)
        return err_set("%s: %slayer_types: %d entries but num_hidden_layers is %d", c->file, c->scope, n,
                       cfg->n_layers);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(lt, i);
        if (cJSON_IsString(e) && strcmp(e->valuestring, "linear_attention") == 0)
            cfg->layer_types[i] = LAYER_LINEAR_ATTN;
        else if (cJSON_IsString(e) && strcmp(e->valuestring, "full_attention") == 0)
            cfg->layer_types[i] = LAYER_FULL_ATTN;
        else
            return err_set("%s: %slayer_types[%d]: expected \"linear_attention\" or \"full_attention\"", c->file,
                           c->scope, i);
    }
    return 0;
}

static int parse(const char *file, const cJSON *root, model_config *cfg)
{
    ctx_t c = {file, ""};
    if (!cJSON_IsObject(root)) return err_set("%s: expected a JSON object", file);

    const char *mt = get_str(root, "model_type");
    if (!mt) return err_set("%s: missing required key model_type", file);
    if (strcmp(mt, "qwen3_5") != 0 && strcmp(mt, "qwen3_5_text") != 0)
        return err_set("%s: unsupported model_type '%s' (supported: qwen3_5, qwen3_5_text)", file, mt);
    copy_str(cfg->model_type, sizeof cfg->model_type, mt);

    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (tc && !cJSON_IsNull(tc)) {
        if (!cJSON_IsObject(tc)) return err_set("%s: text_config: expected an object", file);
        if (strcmp(mt, "qwen3_5") != 0)
            return err_set("%s: model_type '%s' must not have a text_config (expected qwen3_5)", file, mt);
        cfg->is_vlm = 1;
        c.scope = "text_config.";
        const char *tmt = get_str(tc, "model_type");
        if (tmt && strcmp(tmt, "qwen3_5_text") != 0)
            return err_set("%s: text_config.model_type: unsupported '%s' (supported: qwen3_5_text)", file, tmt);
        copy_str(cfg->text_model_type, sizeof cfg->text_model_type, "qwen3_5_text");
        copy_str(cfg->prefix, sizeof cfg->prefix, "model.language_model.");
    } else {
        tc = root;
        copy_str(cfg->text_model_type, sizeof cfg->text_model_type, "qwen3_5_text");
        copy_str(cfg->prefix, sizeof cfg->prefix, "model.");
    }

    if (get_pos_int(&c, tc, "hidden_size", 1, 0, &cfg->hidden)) return -1;
    if (get_pos_int(&c, tc, "intermediate_size", 1, 0, &cfg->intermediate)) return -1;
    if (get_pos_int(&c, tc, "num_hidden_layers", 1, 0, &cfg->n_layers)) return -1;
    if (get_pos_int(&c, tc, "vocab_size", 1, 0, &cfg->vocab)) return -1;
    if (get_pos_int(&c, tc, "num_attention_heads", 1, 0, &cfg->n_heads)) return -1;
    if (get_pos_int(&c, tc, "num_key_value_heads", 1, 0, &cfg->n_kv_heads)) return -1;
    if (get_pos_int(&c, tc, "head_dim", 1, 0, &cfg->head_dim)) return -1;
    if (get_pos_int(&c, tc, "linear_num_key_heads", 1, 0, &cfg->lin_k_heads)) return -1;
    if (get_pos_int(&c, tc, "linear_num_value_heads", 1, 0, &cfg->lin_v_heads)) return -1;
    if (get_pos_int(&c, tc, "linear_key_head_dim", 1, 0, &cfg->lin_k_dim)) return -1;
    if (get_pos_int(&c, tc, "linear_value_head_dim", 1, 0, &cfg->lin_v_dim)) return -1;
    if (get_pos_int(&c, tc, "linear_conv_kernel_dim", 0, 4, &cfg->conv_kernel)) return -1;
    if (get_pos_int(&c, tc, "max_position_embeddings", 0, 32768, &cfg->max_position_embeddings)) return -1;

    /* Projection widths are products of these and are kept in ints (calib/, tools/): they must
     * fit (q_proj with its output gate is the widest; DeltaNet's conv channels q | k | v). */
    if ((int64_t)cfg->n_heads * cfg->head_dim * 2 > INT32_MAX ||
        2 * (int64_t)cfg->lin_k_heads * cfg->lin_k_dim + (int64_t)cfg->lin_v_heads * cfg->lin_v_dim > INT32_MAX)
        return err_set("%s: %sattention heads x head_dim (%d x %d) or DeltaNet heads x dims (%d x %d, %d x %d) "
                       "exceed the int range",
                       file, c.scope, cfg->n_heads, cfg->head_dim, cfg->lin_k_heads, cfg->lin_k_dim, cfg->lin_v_heads,
                       cfg->lin_v_dim);
    if (cfg->n_heads % cfg->n_kv_heads)
        return err_set("%s: %snum_attention_heads %d is not a multiple of num_key_value_heads %d", file, c.scope,
                       cfg->n_heads, cfg->n_kv_heads);
    if (cfg->lin_v_heads % cfg->lin_k_heads)
        return err_set("%s: %slinear_num_value_heads %d is not a multiple of linear_num_key_heads %d", file,
                       c.scope, cfg->lin_v_heads, cfg->lin_k_heads);

    /* rope: rope_parameters (transformers 5) or legacy top-level keys */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(tc, "rope_parameters");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return err_set("%s: %srope_parameters: expected an object", file, c.scope);
    char rp_scope[64];
    snprintf(rp_scope, sizeof rp_scope, "%srope_parameters.", c.scope);
    const cJSON *objs[2] = {cJSON_IsObject(rp) ? rp : NULL, tc};
    const char *scopes[2] = {rp_scope, c.scope};
    int found;
    if (get_num_any(&c, objs, scopes, 2, "rope_theta", &cfg->rope_theta, &found)) return -1;
    if (!found) return err_set("%s: missing required key %srope_parameters.rope_theta (or %srope_theta)", file,
                               c.scope, c.scope);
    if (!(cfg->rope_theta > 0)) return err_set("%s: %srope_theta: expected a positive number", file, c.scope);
    if (get_num_any(&c, objs, scopes, 2, "partial_rotary_factor", &cfg->partial_rotary, &found)) return -1;
    if (!found) cfg->partial_rotary = 0.25;
    if (!(cfg->partial_rotary > 0 && cfg->partial_rotary <= 1))
        return err_set("%s: %spartial_rotary_factor: expected a number in (0, 1], got %g", file, c.scope,
                       cfg->partial_rotary);
    cfg->rotary_dim = (int)(cfg->head_dim * cfg->partial_rotary);
    if (cfg->rotary_dim < 2 || cfg->rotary_dim % 2)
        return err_set("%s: %shead_dim %d × partial_rotary_factor %g gives rotary dim %d (must be even, ≥ 2)",
                       file, c.scope, cfg->head_dim, cfg->partial_rotary, cfg->rotary_dim);

    const cJSON *one[1] = {tc};
    const char *one_scope[1] = {c.scope};
    if (get_num_any(&c, one, one_scope, 1, "rms_norm_eps", &cfg->rms_eps, &found)) return -1;
    if (!found) cfg->rms_eps = 1e-6;
    if (!(cfg->rms_eps > 0)) return err_set("%s: %srms_norm_eps: expected a positive number", file, c.scope);

    cfg->attn_output_gate = 1;
    if (get_bool(&c, tc, c.scope, "attn_output_gate", &cfg->attn_output_gate, &found)) return -1;
    cfg->attention_bias = 0;
    if (get_bool(&c, tc, c.scope, "attention_bias", &cfg->attention_bias, &found)) return -1;

    /* The composite model ties (or not) per its top-level flag; text-only configs carry it inline. */
    cfg->tie_word_embeddings = 0;
    if (get_bool(&c, root, "", "tie_word_embeddings", &cfg->tie_word_embeddings, &found)) return -1;
    if (!found && tc != root &&
        get_bool(&c, tc, c.scope, "tie_word_embeddings", &cfg->tie_word_embeddings, &found))
        return -1;

    cfg->eos_token_id = -1;
    if (get_eos(&c, tc, c.scope, &cfg->eos_token_id, &found)) return -1;
    if (!found && tc != root && get_eos(&c, root, "", &cfg->eos_token_id, &found)) return -1;

    const char *dt = get_str(tc, "dtype");
    if (!dt) dt = get_str(tc, "torch_dtype");
    if (!dt) dt = get_str(root, "dtype");
    if (!dt) dt = get_str(root, "torch_dtype");
    copy_str(cfg->torch_dtype, sizeof cfg->torch_dtype, dt ? dt : "bfloat16");

    return parse_layer_types(&c, tc, cfg);
}

int model_config_load(const char *path, model_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    char *file = fs_is_dir(path) ? fs_join(path, "config.json") : xstrdup(path);
    size_t len;
    char *text = fs_read_file(file, &len);
    if (!text) {
        free(file);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    int rc;
    if (!root) {
        /* cJSON only gives a pointer to where parsing stopped: report it as a byte offset */
        const char *at = cJSON_GetErrorPtr();
        long off = (at && at >= text && at <= text + len) ? (long)(at - text) : -1;
        rc = err_set("%s: invalid JSON near byte %ld", file, off);
    } else {
        rc = parse(file, root, cfg);
    }
    cJSON_Delete(root);
    free(text);
    free(file);
    if (rc) model_config_free(cfg);
    return rc;
}

void model_config_free(model_config *cfg)
{
    if (!cfg) return;
    free(cfg->layer_types);
    cfg->layer_types = NULL;
}

void model_config_describe(const model_config *cfg, char *buf, int len)
{
    int n_full = 0;
    for (int i = 0; i < cfg->n_layers; i++) n_full += cfg->layer_types && cfg->layer_types[i] == LAYER_FULL_ATTN;
    snprintf(buf, (size_t)(len > 0 ? len : 0),
             "%s: %d layers (%d linear, %d full), hidden %d, MLP %d, vocab %d, attention %d/%d heads × %d "
             "(rotary %d, theta %g), DeltaNet %d/%d heads × %d/%d (kernel %d), %s, prefix %s",
             cfg->model_type, cfg->n_layers, cfg->n_layers - n_full, n_full, cfg->hidden, cfg->intermediate,
             cfg->vocab, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, cfg->rotary_dim, cfg->rope_theta,
             cfg->lin_k_heads, cfg->lin_v_heads, cfg->lin_k_dim, cfg->lin_v_dim, cfg->conv_kernel,
             cfg->tie_word_embeddings ? "tied" : "untied", cfg->prefix);
}
