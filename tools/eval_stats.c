#include "tools/eval_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"

/* max and log-sum-exp of one row, fp64 */
static double row_lse(const float *l, int n, int *argmax)
{
    int am = 0;
    float mx = l[0];
    for (int i = 1; i < n; i++)
        if (l[i] > mx) {
            mx = l[i];
            am = i;
        }
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)l[i] - mx);
    *argmax = am;
    return mx + log(s);
}

void eval_score_token(const float *lb, const float *lq, int vocab, int target, token_score *s)
{
    memset(s, 0, sizeof *s);
    if (!lq) {
        double lse_b = row_lse(lb, vocab, &s->top1_base);
        if (target >= 0 && target < vocab) s->nll_base = lse_b - lb[target];
        return;
    }
    /* KLD = Σ p_b·(lp_b − lp_q) = Σ p_b·(l_b − l_q) − lse_b + lse_q: one exp per element and
     * model; exactly 0 when the logits are identical (both lse are computed the same way). */
    double lse_q = row_lse(lq, vocab, &s->top1_quant);
    int am = 0;
    float mx = lb[0];
    for (int i = 1; i < vocab; i++)
        if (lb[i] > mx) {
            mx = lb[i];
            am = i;
        }
    double sum = 0, dot = 0;
    for (int i = 0; i < vocab; i++) {
        double e = exp((double)lb[i] - mx);
        sum += e;
        dot += e * ((double)lb[i] - (double)lq[i]);
    }
    double lse_b = mx + log(sum);
    s->top1_base = am;
    s->kld = dot / sum - lse_b + lse_q;
    if (target >= 0 && target < vocab) {
        s->nll_base = lse_b - lb[target];
        s->nll_quant = lse_q - lq[target];
    }
}

void eval_accum_init(eval_accum *a, int has_quant)
{
    memset(a, 0, sizeof *a);
    a->has_quant = has_quant;
}

void eval_accum_add(eval_accum *a, const token_score *s)
{
    a->tokens++;
    a->nll_base_sum += s->nll_base;
    if (!a->has_quant) return;
    a->nll_quant_sum += s->nll_quant;
    a->kld_sum += s->kld;
    if (a->tokens == 1 || s->kld > a->kld_max) a->kld_max = s->kld;
    a->same_top1 += s->top1_base == s->top1_quant;
    if (a->tokens > a->kld_cap) {
        a->kld_cap = a->kld_cap ? 2 * a->kld_cap : 4096;
        a->kld = xrealloc(a->kld, (size_t)a->kld_cap * sizeof *a->kld);
    }
    a->kld[a->tokens - 1] = (float)s->kld;
}

static int cmp_float(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

double eval_quantile(const float *sorted, int64_t n, double q)
{
    if (n <= 0) return NAN;
    double pos = q * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos);
    if (lo >= n - 1) return sorted[n - 1];
    double frac = pos - (double)lo;
    return (double)sorted[lo] + frac * ((double)sorted[lo + 1] - (double)sorted[lo]);
}

int eval_accum_finish(eval_accum *a, eval_result *r)
{
    int windows = r->windows, seq_len = r->seq_len;
    memset(r, 0, sizeof *r);
    r->windows = windows;
    r->seq_len = seq_len;
    r->has_quant = a->has_quant;
    if (a->tokens <= 0) return err_set("eval: no token positions to score");
    double n = (double)a->tokens;
    r->tokens = a->tokens;
    r->ppl_base = exp(a->nll_base_sum / n);
    if (!a->has_quant) return 0;
    r->ppl_quant = exp(a->nll_quant_sum / n);
    r->dppl_pct = 100.0 * (r->ppl_quant / r->ppl_base - 1.0);
    r->kld_mean = a->kld_sum / n;
    r->kld_max = a->kld_max;
    r->same_top1 = (double)a->same_top1 / n;
    qsort(a->kld, (size_t)a->tokens, sizeof *a->kld, cmp_float);
    r->kld_median = eval_quantile(a->kld, a->tokens, 0.5);
    r->kld_p99 = eval_quantile(a->kld, a->tokens, 0.99);
    r->kld_p99_9 = eval_quantile(a->kld, a->tokens, 0.999);
    return 0;
}

void eval_accum_free(eval_accum *a)
{
    free(a->kld);
    memset(a, 0, sizeof *a);
}
