/* gptq-eora eval — PPL and KLD of a GPTQ checkpoint (+ adapter) against its base model. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "tools/cli.h"
#include "tools/eval.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gptq-eora eval --base DIR [--quant OUT [--adapter OUT/eora]]... --data FILE.jsonl\n"
            "                      [--seq-len 512] [--windows 64] [--json]\n"
            "\n"
            "Perplexity of the base model and, with --quant, of the GPTQ checkpoint (v1 or v2 zeros,\n"
            "`dynamic` per-module bits), optionally with a PEFT LoRA/EoRA adapter applied; KL divergence\n"
            "KLD(base || quant) per token (mean, median, p99, p99.9, max) and the same-top-1 rate.\n"
            "\n"
            "Protocol: every document of --data tokenized with the base tokenizer, EOS appended,\n"
            "concatenated in file order, cut into consecutive windows of --seq-len tokens from the start;\n"
            "the first --windows windows are scored. PPL = exp(mean NLL of positions 1..T-1 of every window).\n"
            "\n"
            "options:\n"
            "  --base DIR          original Hugging Face checkpoint (config.json, tokenizer.json, safetensors)\n"
            "  --quant DIR         GPTQ checkpoint to compare (config.json quantization_config or quantize_config.json)\n"
            "  --adapter PATH      adapter directory (adapter_model.safetensors + adapter_config.json) applied to\n"
            "                      the --quant before it\n"
            "                      --quant/--adapter may be repeated (up to 8 checkpoints): one shared base pass,\n"
            "                      one table row / one JSON line per checkpoint, in command-line order\n"
            "  --data FILE         .jsonl (one {\"text\": ...} per line) or a plain text file\n"
            "  --field NAME        jsonl text field (default text)\n"
            "  --seq-len T         window length (default 512)\n"
            "  --windows N         number of windows (default 64)\n"
            "  --batch-tokens N    tokens per forward chunk (default 8192; bounds memory)\n"
            "  --json              one JSON object on stdout instead of the table\n"
            "  --quiet             no progress on stderr\n"
            "\n"
            "exit status: 0 success, 1 failure, 2 usage error\n");
}

static void print_json(const eval_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *b = cJSON_AddObjectToObject(o, "base");
    cJSON_AddNumberToObject(b, "ppl", r->ppl_base);
    if (r->has_quant) {
        cJSON *q = cJSON_AddObjectToObject(o, "quant");
        cJSON_AddNumberToObject(q, "ppl", r->ppl_quant);
        cJSON *k = cJSON_AddObjectToObject(o, "kld");
        cJSON_AddNumberToObject(k, "mean", r->kld_mean);
        cJSON_AddNumberToObject(k, "median", r->kld_median);
        cJSON_AddNumberToObject(k, "p99", r->kld_p99);
        cJSON_AddNumberToObject(k, "p99_9", r->kld_p99_9);
        cJSON_AddNumberToObject(k, "max", r->kld_max);
        cJSON_AddNumberToObject(o, "same_top1", r->same_top1);
    }
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

static void print_table(const eval_opts *o, const eval_result *r)
{
    printf("eval: %d windows x %d tokens of %s, %lld scored positions\n", r->windows, r->seq_len, o->data,
           (long long)r->tokens);
    if (o->n_quant <= 1) {
        printf("  %-34s %10s %9s\n", "model", "PPL", "dPPL");
        printf("  %-34s %10.4f %9s\n", "base", r->ppl_base, "");
        if (!r->has_quant) return;
        char name[64];
        snprintf(name, sizeof name, "quant%s", o->adapters[0] ? " + adapter" : "");
        printf("  %-34s %10.4f %+8.2f%%\n", name, r->ppl_quant, r->dppl_pct);
        printf("  KLD(base || quant)  mean %.6f  median %.6f  p99 %.5f  p99.9 %.5f  max %.5f\n", r->kld_mean,
               r->kld_median, r->kld_p99, r->kld_p99_9, r->kld_max);
        printf("  same top-1 token    %.2f%%\n", 100.0 * r->same_top1);
        return;
    }
    printf("  %-40s %9s %8s %9s %9s %9s %9s %9s %8s\n", "model", "PPL", "dPPL", "KLD mean", "median", "p99",
           "p99.9", "max", "top-1");
    printf("  %-40s %9.4f\n", "base", r->ppl_base);
    for (int k = 0; k < o->n_quant; k++) {
        char name[512];
        snprintf(name, sizeof name, "%s%s", o->quants[k], o->adapters[k] ? " + adapter" : "");
        const eval_result *q = &r[k];
        printf("  %-40s %9.4f %+7.2f%% %9.6f %9.6f %9.5f %9.5f %9.5f %7.2f%%\n", name, q->ppl_quant, q->dppl_pct,
               q->kld_mean, q->kld_median, q->kld_p99, q->kld_p99_9, q->kld_max, 100.0 * q->same_top1);
    }
}

int cmd_eval(int argc, char **argv)
{
    eval_opts o;
    eval_opts_default(&o);
    o.progress = 1;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o.progress = 0;
            continue;
        }
        static const char *const with_value[] = {"--base", "--quant", "--adapter", "--data", "--field",
                                                 "--seq-len", "--windows", "--batch-tokens", NULL};
        int known = 0;
        for (const char *const *k = with_value; *k; k++) known |= !strcmp(a, *k);
        if (!known) return cli_usage_error("eval", "unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("eval", "%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--base"))
            o.base = v;
        else if (!strcmp(a, "--quant")) {
            if (o.n_quant == EVAL_MAX_QUANT) return cli_usage_error("eval", "at most %d --quant", EVAL_MAX_QUANT);
            o.quants[o.n_quant++] = v;
        } else if (!strcmp(a, "--adapter")) {
            if (o.n_quant == 0) return cli_usage_error("eval", "--adapter needs a --quant before it");
            if (o.adapters[o.n_quant - 1]) return cli_usage_error("eval", "two --adapter for one --quant");
            o.adapters[o.n_quant - 1] = v;
        }
        else if (!strcmp(a, "--data"))
            o.data = v;
        else if (!strcmp(a, "--field"))
            o.field = v;
        else if (!strcmp(a, "--seq-len")) {
            if (cli_parse_int(v, 2, 1000000000, &o.seq_len) < 0) return cli_usage_error("eval", "--seq-len: expected an integer >= 2, got '%s'", v);
        } else if (!strcmp(a, "--windows")) {
            if (cli_parse_int(v, 1, 1000000000, &o.windows) < 0) return cli_usage_error("eval", "--windows: expected an integer >= 1, got '%s'", v);
        } else if (!strcmp(a, "--batch-tokens")) {
            if (cli_parse_int(v, 1, 1000000000, &o.batch_tokens) < 0)
                return cli_usage_error("eval", "--batch-tokens: expected an integer >= 1, got '%s'", v);
        } else
            return cli_usage_error("eval", "unknown option '%s'", a);
    }
    if (!o.base) return cli_usage_error("eval", "--base DIR is required");
    if (!o.data) return cli_usage_error("eval", "--data FILE is required");
    eval_result r[EVAL_MAX_QUANT];
    memset(r, 0, sizeof r);
    if (eval_run(&o, r) < 0) return cli_fail();
    if (json)
        for (int k = 0; k < (o.n_quant > 0 ? o.n_quant : 1); k++) print_json(&r[k]);
    else
        print_table(&o, r);
    return 0;
}
