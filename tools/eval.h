/* eval — perplexity and KL divergence of a quantized (+adapter) checkpoint against its base
 * model, streamed window chunk by window chunk and layer by layer.
 *
 * Protocol (calib/data.h eval_windows): tokenize every document with the base tokenizer,
 * append EOS, concatenate in file order, cut consecutive non-overlapping windows of seq_len
 * from the start, keep the first `windows`. Each window is an independent sequence (positions
 * 0..T−1). PPL = exp(mean NLL of token t+1 given logits at t, t = 0..T−2, over all windows):
 * the positions 1..T−1 of every window are predicted. KLD(base ‖ quant), same-top-1 use the
 * same T−1 logit rows per window, so `tokens` = windows · (T − 1).
 *
 * Streaming: windows are processed in chunks of ~batch_tokens tokens. For each chunk every
 * layer is loaded once from the base checkpoint, run on the base hidden states, then turned
 * into the quantized layer in place (qcheckpoint) and run on the quantized hidden states.
 * Logits are produced in row blocks and scored at once; memory is one chunk's hidden states
 * (×2), one layer, one logit block (×2) and 4 bytes per scored token for exact KLD percentiles. */
#ifndef TOOLS_EVAL_H
#define TOOLS_EVAL_H

#include <stdint.h>

#include "calib/model.h"
#include "tools/eval_stats.h"
#include "tools/qcheckpoint.h"

#define EVAL_MAX_QUANT 8

typedef struct {
    const char *base;      /* base model directory */
    const char *quant;     /* GPTQ checkpoint directory or NULL */
    const char *adapter;   /* adapter dir/file or NULL (needs quant) */
    /* several checkpoints against one base pass (used instead of quant/adapter when n_quant > 0):
     * the base forward is shared, results come in this order */
    int n_quant;
    const char *quants[EVAL_MAX_QUANT];
    const char *adapters[EVAL_MAX_QUANT]; /* NULL = none */
    const char *data;      /* .jsonl (field "text") or plain text file */
    const char *field;     /* jsonl field, default "text" */
    int seq_len;           /* 512 */
    int windows;           /* 64 */
    int batch_tokens;      /* tokens per chunk, default 8192 */
    int progress;          /* progress lines on stderr */
} eval_opts;

void eval_opts_default(eval_opts *o);

/* Full run: tokenizer, windows, forward passes, statistics. r: one result per checkpoint
 * (max(1, n_quant) entries; each carries the base PPL too). windows may be less than asked
 * when the text runs out (a warning is printed). */
int eval_run(const eval_opts *o, eval_result *r);

/* The core on given token windows ids [n, T] (no tokenizer): base from `base` (+cfg), quantized
 * from q (NULL: base only). */
int eval_windows_run_multi(const st_set *base, const model_config *cfg, const qcheckpoint *const *qs, int nq,
                           const int32_t *ids, int n, int T, int batch_tokens, int progress, eval_result *results);
int eval_windows_run(const st_set *base, const model_config *cfg, const qcheckpoint *q, const int32_t *ids, int n,
                     int T, int batch_tokens, int progress, eval_result *r);

#endif
