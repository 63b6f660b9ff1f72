/* weights — one decoder layer's (and the head's) tensors from the mmap'd checkpoint, each read
 * in its stored dtype (BF16/F16/F32) and converted to fp32. Only `<prefix>layers.L.*`,
 * `<prefix>embed_tokens`, `<prefix>norm` and `lm_head` are touched (never visual/mtp). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/model.h"
#include "io/err.h"

/* "tensor not found" names the checkpoint directory (not one shard) and how many shards were searched. */
static int ck_not_found(const st_set *ck, const char *name)
{
    const char *first = st_file_path(ck, 0);
    const char *slash = strrchr(first, '/');
    int dl = slash ? (slash == first ? 1 : (int)(slash - first)) : 1;
    const char *dir = slash ? first : ".";
    size_t n = st_file_count(ck);
    return err_set("checkpoint %.*s: tensor '%s' not found in %zu shard%s", dl, dir, name, n, n == 1 ? "" : "s");
}

/* Loads `name` as fp32 after checking its shape is exactly `shape` (ndim dims); a [C, 1, K]
 * depthwise conv weight is accepted for an expected [C, K]. */
static float *load_checked(const st_set *ck, const char *name, int ndim, const int64_t *shape)
{
    const st_tensor *t = st_find(ck, name);
    if (!t) {
        ck_not_found(ck, name);
        return NULL;
    }
    int ok = 1;
    if (t->ndim == ndim) {
        for (int i = 0; i < ndim; i++) ok &= t->shape[i] == shape[i];
    } else if (ndim == 2 && t->ndim == 3) { /* conv1d [C, 1, K] */
        ok = t->shape[0] == shape[0] && t->shape[1] == 1 && t->shape[2] == shape[1];
    } else {
        ok = 0;
    }
    if (!ok) {
        char got[96], want[96];
        err_set("%s: tensor '%s' has shape %s, the config expects %s", st_file_path(ck, (size_t)t->file),
                name, st_shape_str(t->shape, t->ndim, got, sizeof got), st_shape_str(shape, ndim, want, sizeof want));
        return NULL;
    }
    return st_load_f32(ck, name, NULL);
}

static float *load_vec(const st_set *ck, const char *name, int n)
{
    int64_t s[1] = {n};
    return load_checked(ck, name, 1, s);
}

static int load_linear(const st_set *ck, const char *module, int out, int in, int bias,
                       linear_t *l)
{
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", module);
    l->out = out;
    l->in = in;
    char name[256];
    snprintf(name, sizeof name, "%s.weight", module);
    int64_t s[2] = {out, in};
    if (!(l->w = load_checked(ck, name, 2, s))) return -1;
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", module);
        if (!(l->bias = load_vec(ck, name, out))) return -1;
    }
    return 0;
}

static void linear_free(linear_t *l)
{
    free(l->w);
    free(l->bias);
    free(l->lora_A);
    free(l->lora_B);
    memset(l, 0, sizeof *l);
}

int layer_weights_load(const st_set *ckpt, const model_config *cfg, int L, layer_weights *lw)
{
    memset(lw, 0, sizeof *lw);
    if (L < 0 || L >= cfg->n_layers)
        return err_set("layer_weights_load: layer %d outside 0..%d", L, cfg->n_layers - 1);
    lw->index = L;
    lw->type = cfg->layer_types[L];
    const int d = cfg->hidden;
    char p[160], m[200], n[256];
    snprintf(p, sizeof p, "%slayers.%d.", cfg->prefix, L);
#define NAME(fmt) (snprintf(n, sizeof n, "%s" fmt, p), n)
#define MOD(fmt) (snprintf(m, sizeof m, "%s" fmt, p), m)
    if (!(lw->input_norm = load_vec(ckpt, NAME("input_layernorm.weight"), d))) goto fail;
    if (!(lw->post_norm = load_vec(ckpt, NAME("post_attention_layernorm.weight"), d))) goto fail;
    if (lw->type == LAYER_FULL_ATTN) {
        const int H = cfg->n_heads, G = cfg->n_kv_heads, D = cfg->head_dim, bias = cfg->attention_bias;
        const int qout = H * D * (cfg->attn_output_gate ? 2 : 1);
        if (load_linear(ckpt, MOD("self_attn.q_proj"), qout, d, bias, &lw->q_proj) ||
            load_linear(ckpt, MOD("self_attn.k_proj"), G * D, d, bias, &lw->k_proj) ||
            load_linear(ckpt, MOD("self_attn.v_proj"), G * D, d, bias, &lw->v_proj) ||
            load_linear(ckpt, MOD("self_attn.o_proj"), d, H * D, bias, &lw->o_proj))
            goto fail;
        if (!(lw->q_norm = load_vec(ckpt, NAME("self_attn.q_norm.weight"), D))) goto fail;
        if (!(lw->k_norm = load_vec(ckpt, NAME("self_attn.k_norm.weight"), D))) goto fail;
    } else {
        const int Hk = cfg->lin_k_heads, Hv = cfg->lin_v_heads, dk = cfg->lin_k_dim, dv = cfg->lin_v_dim;
        const int cd = 2 * Hk * dk + Hv * dv;
        if (load_linear(ckpt, MOD("linear_attn.in_proj_qkv"), cd, d, 0, &lw->in_proj_qkv) ||
            load_linear(ckpt, MOD("linear_attn.in_proj_z"), Hv * dv, d, 0, &lw->in_proj_z) ||
            load_linear(ckpt, MOD("linear_attn.in_proj_a"), Hv, d, 0, &lw->in_proj_a) ||
            load_linear(ckpt, MOD("linear_attn.in_proj_b"), Hv, d, 0, &lw->in_proj_b) ||
            load_linear(ckpt, MOD("linear_attn.out_proj"), d, Hv * dv, 0, &lw->out_proj))
            goto fail;
        int64_t cs[2] = {cd, cfg->conv_kernel};
        if (!(lw->conv1d = load_checked(ckpt, NAME("linear_attn.conv1d.weight"), 2, cs))) goto fail;
        if (!(lw->A_log = load_vec(ckpt, NAME("linear_attn.A_log"), Hv))) goto fail;
        if (!(lw->dt_bias = load_vec(ckpt, NAME("linear_attn.dt_bias"), Hv))) goto fail;
        if (!(lw->lin_norm = load_vec(ckpt, NAME("linear_attn.norm.weight"), dv))) goto fail;
    }
    if (load_linear(ckpt, MOD("mlp.gate_proj"), cfg->intermediate, d, 0, &lw->gate_proj) ||
        load_linear(ckpt, MOD("mlp.up_proj"), cfg->intermediate, d, 0, &lw->up_proj) ||
        load_linear(ckpt, MOD("mlp.down_proj"), d, cfg->intermediate, 0, &lw->down_proj))
        goto fail;
#undef NAME
#undef MOD
    return 0;
fail:
    err_prefix("layer %d", L);
    layer_weights_free(lw);
    return -1;
}

void layer_weights_free(layer_weights *lw)
{
    float **vecs[] = {&lw->input_norm, &lw->post_norm, &lw->q_norm, &lw->k_norm,
                      &lw->conv1d, &lw->A_log, &lw->dt_bias, &lw->lin_norm};
    for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++) {
        free(*vecs[i]);
        *vecs[i] = NULL;
    }
    linear_t *ls[] = {&lw->q_proj, &lw->k_proj, &lw->v_proj, &lw->o_proj, &lw->in_proj_qkv,
                      &lw->in_proj_z, &lw->in_proj_a, &lw->in_proj_b, &lw->out_proj,
                      &lw->gate_proj, &lw->up_proj, &lw->down_proj};
    for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) linear_free(ls[i]);
}

linear_t *layer_linear(layer_weights *lw, const char *short_name)
{
    struct { const char *name; linear_t *l; int full; } tab[] = {
        {"q_proj", &lw->q_proj, 1},           {"k_proj", &lw->k_proj, 1},
        {"v_proj", &lw->v_proj, 1},           {"o_proj", &lw->o_proj, 1},
        {"in_proj_qkv", &lw->in_proj_qkv, 0}, {"in_proj_z", &lw->in_proj_z, 0},
        {"in_proj_a", &lw->in_proj_a, 0},     {"in_proj_b", &lw->in_proj_b, 0},
        {"out_proj", &lw->out_proj, 0},       {"gate_proj", &lw->gate_proj, -1},
        {"up_proj", &lw->up_proj, -1},        {"down_proj", &lw->down_proj, -1},
    };
    const int full = lw->type == LAYER_FULL_ATTN;
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        if (!strcmp(tab[i].name, short_name))
            return (tab[i].full < 0 || tab[i].full == full) ? tab[i].l : NULL;
    return NULL;
}

int model_embed(const st_set *ckpt, const model_config *cfg, const int32_t *ids, int64_t n, float *out)
{
    char name[192];
    snprintf(name, sizeof name, "%sembed_tokens.weight", cfg->prefix);
    const st_tensor *t = st_find(ckpt, name);
    if (!t) return ck_not_found(ckpt, name);
    if (t->ndim != 2 || t->shape[1] != cfg->hidden || !dtype_is_float(t->dtype))
        return err_set("%s: tensor '%s' is %s with %d dims, expected a float [vocab, %d]",
                       st_file_path(ckpt, (size_t)t->file), name, dtype_name(t->dtype), t->ndim,
                       cfg->hidden);
    const int64_t vocab = t->shape[0], d = cfg->hidden;
    const size_t esz = dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return err_set("embedding: token id %d at position %lld is outside the vocabulary [0, %lld)",
                           ids[i], (long long)i, (long long)vocab);
    /* convert only the rows used: the table can be GBs in fp32 */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        dtype_to_f32(t->dtype, (const char *)t->data + (size_t)ids[i] * d * esz, out + i * d, (size_t)d);
    return 0;
}

int head_weights_load(const st_set *ckpt, const model_config *cfg, head_weights *hw)
{
    memset(hw, 0, sizeof *hw);
    char name[192], module[192];
    snprintf(name, sizeof name, "%snorm.weight", cfg->prefix);
    if (!(hw->norm = load_vec(ckpt, name, cfg->hidden))) return -1;
    if (cfg->tie_word_embeddings || !st_find(ckpt, "lm_head.weight"))
        snprintf(module, sizeof module, "%sembed_tokens", cfg->prefix);
    else
        snprintf(module, sizeof module, "lm_head");
    if (!cfg->tie_word_embeddings && strcmp(module, "lm_head")) {
        err_set("checkpoint %s: tensor 'lm_head.weight' not found (tie_word_embeddings is false)",
                st_file_path(ckpt, 0));
        head_weights_free(hw);
        return -1;
    }
    if (load_linear(ckpt, module, cfg->vocab, cfg->hidden, 0, &hw->lm_head)) {
        head_weights_free(hw);
        return -1;
    }
    return 0;
}

void head_weights_free(head_weights *hw)
{
    free(hw->norm);
    hw->norm = NULL;
    linear_free(&hw->lm_head);
}
