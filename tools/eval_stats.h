/* eval_stats — scoring one token position of base (and quantized) logits, and the streaming
 * statistics of `gptq-eora eval`: PPL of both models, KLD(base ‖ quant) mean / median / p99 /
 * p99.9 / max, same-top-1 rate.
 *
 * All per-token math is fp64 (log-softmax over the vocabulary, KLD = Σ p_b·(log p_b − log p_q)).
 * Sums are taken in token order, so results do not depend on the thread count. Exact
 * percentiles need every token's KLD: 4 bytes per scored token are kept (float), nothing else
 * grows with the number of windows. */
#ifndef TOOLS_EVAL_STATS_H
#define TOOLS_EVAL_STATS_H

#include <stdint.h>

typedef struct {
    double nll_base;   /* −log p_base(target) (0 when target < 0) */
    double nll_quant;  /* −log p_quant(target) */
    double kld;        /* KL(base ‖ quant) over the vocabulary */
    int top1_base, top1_quant; /* argmax (first index on ties) */
} token_score;

/* lb: base logits [vocab]; lq: quantized logits or NULL (then only nll_base/top1_base);
 * target: the next token's id or -1. */
void eval_score_token(const float *lb, const float *lq, int vocab, int target, token_score *s);

typedef struct {
    int has_quant;
    int64_t tokens;              /* scored positions */
    double nll_base_sum, nll_quant_sum, kld_sum;
    double kld_max;
    int64_t same_top1;
    float *kld;                  /* every scored position's KLD (exact percentiles) */
    int64_t kld_cap;
} eval_accum;

typedef struct {
    int has_quant;
    int windows, seq_len;
    int64_t tokens;              /* scored positions = windows · (seq_len − 1) */
    double ppl_base, ppl_quant;
    double dppl_pct;             /* 100 · (ppl_quant / ppl_base − 1) */
    double kld_mean, kld_median, kld_p99, kld_p99_9, kld_max;
    double same_top1;            /* fraction in [0, 1] */
} eval_result;

void eval_accum_init(eval_accum *a, int has_quant);
void eval_accum_add(eval_accum *a, const token_score *s);
/* Fills r (windows/seq_len left to the caller); sorts the KLD values. -1 when nothing scored. */
int eval_accum_finish(eval_accum *a, eval_result *r);
void eval_accum_free(eval_accum *a);

/* q-quantile (q in [0,1]) of sorted values, linear interpolation between closest ranks
 * (numpy's / torch.quantile's default). */
double eval_quantile(const float *sorted, int64_t n, double q);

#endif
