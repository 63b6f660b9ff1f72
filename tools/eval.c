#define PCRE2_CODE_UNIT_WIDTH 8 /* io/job.h (via calib/data.h) includes pcre2.h */
#include "tools/eval.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/data.h"
#include "calib/tokenizer.h"
#include "io/err.h"
#include "io/fsutil.h"

void eval_opts_default(eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->field = "text";
    o->seq_len = 512;
    o->windows = 64;
    o->batch_tokens = 8192;
}

/* logits buffers hold at most this many floats (rows are blocked to fit) */
#define LOGIT_BLOCK_FLOATS (1 << 25)

/* Scores rows [r0, r0+nr) of one chunk: lb = base logits, lq = one model's logits or NULL. */
static void score_rows(const float *lb, const float *lq, int64_t V, const int32_t *ids, int64_t r0, int64_t nr,
                       int T, token_score *sc, eval_accum *acc)
{
    #pragma omp parallel for schedule(dynamic, 8)
    for (int64_t i = 0; i < nr; i++) {
        int64_t row = r0 + i;
        int t = (int)(row % T);
        int target = t < T - 1 ? ids[row + 1] : -1;
        eval_score_token(lb + i * V, lq ? lq + i * V : NULL, (int)V, target, &sc[i]);
    }
    /* in token order: sums do not depend on the thread count */
    for (int64_t i = 0; i < nr; i++)
        if ((r0 + i) % T != T - 1) eval_accum_add(acc, &sc[i]);
}

/* GPTQModel with lm_head: true stores lm_head.qweight: the base head with the checkpoint's
 * final norm and the dequantized lm_head. */
static int load_quantized_head(const st_set *base, const qcheckpoint *q, const model_config *cfg,
                               const char *norm_name, head_weights *hw)
{
    if (head_weights_load(base, cfg, hw) < 0) return -1;
    const st_tensor *n = st_find(qckpt_tensors(q), norm_name);
    float *W = NULL, *bias = NULL;
    int bits;
    if (n && n->numel != cfg->hidden) {
        head_weights_free(hw);
        return err_set("%s: tensor %s has %lld values, expected %d", qckpt_dir(q), norm_name, (long long)n->numel,
                       cfg->hidden);
    }
    if (n && st_to_f32(n, hw->norm) < 0) {
        head_weights_free(hw);
        return err_prefix("%s", qckpt_dir(q));
    }
    if (qckpt_load_linear(q, "lm_head", cfg->vocab, cfg->hidden, &W, &bias, &bits) < 0) {
        head_weights_free(hw);
        return -1;
    }
    free(hw->lm_head.w);
    free(hw->lm_head.bias);
    hw->lm_head.w = W;
    hw->lm_head.bias = bias;
    return 0;
}

int eval_windows_run_multi(const st_set *base, const model_config *cfg, const qcheckpoint *const *qs, int nq,
                           const int32_t *ids, int n, int T, int batch_tokens, int progress, eval_result *results)
{
    if (n <= 0 || T < 2) return err_set("eval: need at least one window of at least 2 tokens (got %d × %d)", n, T);
    if (nq < 0 || nq > EVAL_MAX_QUANT) return err_set("eval: at most %d checkpoints at once", EVAL_MAX_QUANT);
    int wpc = batch_tokens / T;
    if (wpc < 1) wpc = 1;
    if (wpc > n) wpc = n;
    int64_t V = cfg->vocab, hid = cfg->hidden, max_rows = (int64_t)wpc * T;
    int64_t rb = LOGIT_BLOCK_FLOATS / V;
    if (rb < 1) rb = 1;
    if (rb > max_rows) rb = max_rows;

    char embed_name[256], norm_name[256];
    snprintf(embed_name, sizeof embed_name, "%sembed_tokens.weight", cfg->prefix);
    snprintf(norm_name, sizeof norm_name, "%snorm.weight", cfg->prefix);
    const char *head_name = cfg->tie_word_embeddings ? embed_name : "lm_head.weight";

    int rc = -1, na = nq > 0 ? nq : 1;
    head_weights hwb, hwq[EVAL_MAX_QUANT];
    memset(&hwb, 0, sizeof hwb);
    memset(hwq, 0, sizeof hwq);
    int own_hwq[EVAL_MAX_QUANT] = {0}, embed_same[EVAL_MAX_QUANT];
    float *hb = NULL, *hq[EVAL_MAX_QUANT] = {0}, *lb = NULL, *lq = NULL;
    token_score *sc = NULL;
    eval_accum acc[EVAL_MAX_QUANT];
    for (int k = 0; k < na; k++) eval_accum_init(&acc[k], nq > 0);

    if (head_weights_load(base, cfg, &hwb) < 0) goto out;
    for (int k = 0; k < nq; k++) {
        embed_same[k] = qckpt_tensor_same(qs[k], base, embed_name);
        if (st_find(qckpt_tensors(qs[k]), "lm_head.qweight")) {
            if (load_quantized_head(base, qs[k], cfg, norm_name, &hwq[k]) < 0) goto out;
            own_hwq[k] = 1;
        } else if (!qckpt_tensor_same(qs[k], base, head_name) || !qckpt_tensor_same(qs[k], base, norm_name)) {
            if (head_weights_load(qckpt_tensors(qs[k]), cfg, &hwq[k]) < 0) goto out;
            own_hwq[k] = 1;
        }
        hq[k] = xmalloc((size_t)max_rows * hid * sizeof *hq[k]);
    }
    hb = xmalloc((size_t)max_rows * hid * sizeof *hb);
    lb = xmalloc((size_t)rb * V * sizeof *lb);
    sc = xmalloc((size_t)rb * sizeof *sc);
    if (nq > 0) lq = xmalloc((size_t)rb * V * sizeof *lq);
    double t0 = omp_get_wtime();
    for (int c0 = 0; c0 < n; c0 += wpc) {
        int nw = n - c0 < wpc ? n - c0 : wpc;
        int64_t rows = (int64_t)nw * T;
        const int32_t *cid = ids + (int64_t)c0 * T;
        if (model_embed(base, cfg, cid, rows, hb) < 0) goto out;
        for (int k = 0; k < nq; k++) {
            if (embed_same[k])
                memcpy(hq[k], hb, (size_t)rows * hid * sizeof *hb);
            else if (model_embed(qckpt_tensors(qs[k]), cfg, cid, rows, hq[k]) < 0)
                goto out;
        }
        for (int L = 0; L < cfg->n_layers; L++) {
            /* one read of the base layer per chunk; each checkpoint then overwrites every
             * tensor of it in turn (qckpt_apply_layer replaces all linears and small tensors) */
            layer_weights lw;
            memset(&lw, 0, sizeof lw);
            if (layer_weights_load(base, cfg, L, &lw) < 0) goto out;
            int frc = layer_forward(cfg, &lw, hb, hb, nw, T, NULL, NULL);
            for (int k = 0; k < nq && frc == 0; k++) {
                if (qckpt_apply_layer(qs[k], cfg, L, &lw) < 0)
                    frc = -1;
                else
                    frc = layer_forward(cfg, &lw, hq[k], hq[k], nw, T, NULL, NULL);
            }
            layer_weights_free(&lw);
            if (frc != 0) {
                if (frc > 0)
                    err_set("eval: layer %d stopped early", L);
                else
                    err_prefix("eval: layer %d", L);
                goto out;
            }
        }
        for (int64_t r0 = 0; r0 < rows; r0 += rb) {
            int64_t nr = rows - r0 < rb ? rows - r0 : rb;
            if (head_forward(cfg, &hwb, hb + r0 * hid, nr, NULL, lb) < 0) goto out;
            if (nq == 0) score_rows(lb, NULL, V, cid, r0, nr, T, sc, &acc[0]);
            for (int k = 0; k < nq; k++) {
                if (head_forward(cfg, own_hwq[k] ? &hwq[k] : &hwb, hq[k] + r0 * hid, nr, NULL, lq) < 0) goto out;
                score_rows(lb, lq, V, cid, r0, nr, T, sc, &acc[k]);
            }
        }
        if (progress) {
            double dt = omp_get_wtime() - t0;
            fprintf(stderr, "eval: %d/%d windows, %.0f tokens/s (%d model%s)\n", c0 + nw, n,
                    (double)(c0 + nw) * T / (dt > 0 ? dt : 1), nq + 1, nq ? "s" : "");
        }
    }
    rc = 0;
    for (int k = 0; k < na && rc == 0; k++) {
        results[k].windows = n;
        results[k].seq_len = T;
        rc = eval_accum_finish(&acc[k], &results[k]);
    }
out:
    head_weights_free(&hwb);
    for (int k = 0; k < nq; k++) {
        if (own_hwq[k]) head_weights_free(&hwq[k]);
        free(hq[k]);
    }
    free(hb);
    free(lb);
    free(lq);
    free(sc);
    for (int k = 0; k < na; k++) eval_accum_free(&acc[k]);
    return rc;
}

int eval_windows_run(const st_set *base, const model_config *cfg, const qcheckpoint *q, const int32_t *ids, int n,
                     int T, int batch_tokens, int progress, eval_result *r)
{
    return eval_windows_run_multi(base, cfg, q ? &q : NULL, q ? 1 : 0, ids, n, T, batch_tokens, progress, r);
}

/* EOS: the config's eos_token_id, else tokenizer_config.json's eos_token, else <|endoftext|>. */
static int find_eos(const char *base, const model_config *cfg, const tokenizer *tk)
{
    if (cfg->eos_token_id >= 0) return cfg->eos_token_id;
    char *path = fs_join(base, "tokenizer_config.json");
    int id = -1;
    size_t len;
    char *text = fs_exists(path) ? fs_read_file(path, &len) : NULL;
    if (text) {
        cJSON *j = cJSON_Parse(text);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "eos_token");
        if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(e)) id = tokenizer_token_to_id(tk, e->valuestring);
        cJSON_Delete(j);
        free(text);
    }
    free(path);
    if (id < 0) id = tokenizer_token_to_id(tk, "<|endoftext|>");
    if (id < 0) err_set("%s: no eos_token_id in config.json and no EOS token in the tokenizer", base);
    return id;
}

/* The checkpoint's config.json (when it has one) must describe the base's architecture. */
static int check_same_architecture(const char *base, const char *quant, const model_config *cfg)
{
    char *path = fs_join(quant, "config.json");
    int exists = fs_exists(path);
    free(path);
    if (!exists) return 0;
    model_config qc;
    memset(&qc, 0, sizeof qc);
    if (model_config_load(quant, &qc) < 0) return err_prefix("--quant %s", quant);
    int same = qc.hidden == cfg->hidden && qc.n_layers == cfg->n_layers && qc.vocab == cfg->vocab &&
               qc.intermediate == cfg->intermediate && !strcmp(qc.prefix, cfg->prefix);
    for (int L = 0; same && L < cfg->n_layers; L++) same = qc.layer_types[L] == cfg->layer_types[L];
    char a[256], b[256];
    model_config_describe(cfg, a, sizeof a);
    model_config_describe(&qc, b, sizeof b);
    model_config_free(&qc);
    if (!same) return err_set("--quant %s is not a checkpoint of --base %s: %s vs %s", quant, base, b, a);
    return 0;
}

int eval_run(const eval_opts *o, eval_result *r)
{
    const char *quants[EVAL_MAX_QUANT], *adapters[EVAL_MAX_QUANT];
    int nq = o->n_quant;
    if (nq < 0 || nq > EVAL_MAX_QUANT) return err_set("eval: at most %d checkpoints at once", EVAL_MAX_QUANT);
    for (int k = 0; k < nq; k++) {
        quants[k] = o->quants[k];
        adapters[k] = o->adapters[k];
    }
    if (nq == 0 && o->quant) {
        quants[0] = o->quant;
        adapters[0] = o->adapter;
        nq = 1;
    } else if (nq == 0 && o->adapter) {
        return err_set("eval: --adapter needs --quant (the checkpoint it corrects)");
    }
    for (int k = 0; k < nq; k++)
        if (!quants[k]) return err_set("eval: checkpoint %d has no directory (an adapter needs --quant)", k + 1);
    if (o->seq_len < 2 || o->windows < 1 || o->batch_tokens < 1)
        return err_set("eval: seq-len must be ≥ 2, windows ≥ 1, batch-tokens ≥ 1");
    model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    tokenizer *tk = NULL;
    st_set *base = NULL;
    qcheckpoint *q[EVAL_MAX_QUANT] = {0};
    token_windows tw;
    memset(&tw, 0, sizeof tw);
    int rc = -1;
    char *tk_path = NULL;
    if (model_config_load(o->base, &cfg) < 0) goto out;
    for (int k = 0; k < nq; k++) {
        if (check_same_architecture(o->base, quants[k], &cfg) < 0) goto out;
        if (!(q[k] = qckpt_open(quants[k], adapters[k], &cfg))) goto out;
        if (o->progress) fprintf(stderr, "eval: %s: %s\n", quants[k], qckpt_describe(q[k]));
    }
    tk_path = fs_join(o->base, "tokenizer.json");
    if (!(tk = tokenizer_load(tk_path))) goto out;
    int eos = find_eos(o->base, &cfg, tk);
    if (eos < 0) goto out;
    size_t dl = strlen(o->data);
    int jsonl = (dl > 6 && !strcmp(o->data + dl - 6, ".jsonl")) || (dl > 5 && !strcmp(o->data + dl - 5, ".json"));
    data_source src = {.path = (char *)o->data, .format = jsonl ? "jsonl" : "text",
                       .field = (char *)(o->field ? o->field : "text"), .weight = 1.0};
    if (eval_windows(tk, eos, &src, o->windows, o->seq_len, &tw) < 0) goto out;
    if (tw.n <= 0) {
        err_set("%s: fewer than %d tokens: not one window", o->data, o->seq_len);
        goto out;
    }
    if (tw.n < o->windows)
        fprintf(stderr, "gptq-eora eval: warning: %s has %lld tokens: %d windows of %d instead of %d\n", o->data,
                (long long)tw.tokens_available, tw.n, o->seq_len, o->windows);
    if (!(base = st_open(o->base))) goto out;
    rc = eval_windows_run_multi(base, &cfg, (const qcheckpoint *const *)q, nq, tw.ids, tw.n, tw.T, o->batch_tokens,
                                o->progress, r);
out:
    if (tw.ids) token_windows_free(&tw);
    for (int k = 0; k < nq; k++) qckpt_close(q[k]);
    if (base) st_close(base);
    if (tk) tokenizer_free(tk);
    free(tk_path);
    if (cfg.layer_types) model_config_free(&cfg);
    return rc;
}
