/* forward — run the fp32 reference forward pass on token ids and dump activations.
 *   gptq-eora forward --model DIR --ids FILE[:TENSOR] [--dump embed,layers,final_norm,logits]
 *                     [--layers A..B] -o OUT.safetensors
 * Outputs use the golden file's names: embed, layer_out.{i}, final_norm, logits ([B, T, ·]). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/model.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "tools/bench_util.h"
#include "tools/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gptq-eora forward --model DIR --ids FILE[:TENSOR] [options] -o OUT.safetensors\n"
            "Runs the fp32 CPU forward pass of a Qwen3.5 checkpoint on token ids and writes\n"
            "the requested activations (fp32, shape [B, T, ·]).\n"
            "  --model DIR        checkpoint directory (config.json + safetensors)\n"
            "  --ids FILE[:NAME]  safetensors with ids [B, T] or [T], I32 or I64 (NAME defaults to\n"
            "                     the only tensor, else 'input_ids')\n"
            "  --dump LIST        comma list of embed, layers, final_norm, logits (default: all)\n"
            "  --layers A..B      dump layer_out.A … layer_out.B only (default: every layer)\n"
            "  -o, --output FILE  output .safetensors (written atomically)\n"
            "exit status: 0 ok, 1 error, 2 usage error\n");
}

enum { DUMP_EMBED = 1, DUMP_LAYERS = 2, DUMP_FINAL = 4, DUMP_LOGITS = 8 };

static int parse_dump(const char *s, int *mask)
{
    *mask = 0;
    char *copy = xstrdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "embed")) *mask |= DUMP_EMBED;
        else if (!strcmp(tok, "layers")) *mask |= DUMP_LAYERS;
        else if (!strcmp(tok, "final_norm")) *mask |= DUMP_FINAL;
        else if (!strcmp(tok, "logits")) *mask |= DUMP_LOGITS;
        else {
            free(copy);
            return -1;
        }
    }
    free(copy);
    return *mask ? 0 : -1;
}

static int parse_range(const char *s, int *a, int *b)
{
    char tail[8];
    if (sscanf(s, "%d..%d%1s", a, b, tail) == 2) return *a >= 0 && *a <= *b ? 0 : -1;
    if (sscanf(s, "%d%1s", a, tail) == 1) return *b = *a, *a >= 0 ? 0 : -1;
    return -1;
}

/* ids tensor → int32 [B, T] */
static int read_ids(const char *spec, int32_t **ids, int *B, int *T)
{
    char *path = xstrdup(spec);
    const char *name = NULL;
    char *colon = strrchr(path, ':');
    if (colon && !fs_exists(path)) *colon = 0, name = colon + 1;
    st_set *s = st_open(path);
    if (!s) {
        free(path);
        return -1;
    }
    const st_tensor *t = NULL;
    if (name) t = st_find(s, name);
    else if (st_count(s) == 1) t = st_get(s, 0);
    else t = st_find(s, name = "input_ids");
    int rc = -1;
    if (!t) {
        err_set("%s: no tensor '%s' (give FILE:TENSOR)", path, name ? name : "?");
    } else if ((t->dtype != DT_I32 && t->dtype != DT_I64) || t->ndim < 1 || t->ndim > 2 || t->numel == 0) {
        err_set("%s: tensor '%s' is %s with %d dims; ids must be I32/I64 [B, T] or [T]", path, t->name,
                dtype_name(t->dtype), t->ndim);
    } else if (t->shape[0] > INT_MAX || t->shape[t->ndim - 1] > INT_MAX) { /* B and T are ints */
        err_set("%s: tensor '%s' has a dimension over %d", path, t->name, INT_MAX);
    } else {
        *B = t->ndim == 2 ? (int)t->shape[0] : 1;
        *T = (int)t->shape[t->ndim - 1];
        *ids = xmalloc((size_t)t->numel * sizeof(int32_t));
        rc = 0;
        for (int64_t i = 0; i < t->numel; i++) {
            int64_t v; /* memcpy: safetensors data need not be aligned to the element size */
            if (t->dtype == DT_I32) {
                int32_t v32;
                memcpy(&v32, (const char *)t->data + 4 * i, 4);
                v = v32;
            } else {
                memcpy(&v, (const char *)t->data + 8 * i, 8);
            }
            if (v < 0 || v > INT32_MAX) {
                rc = err_set("%s: tensor '%s': id %lld at %lld is negative or too large", path, t->name,
                             (long long)v, (long long)i);
                break;
            }
            (*ids)[i] = (int32_t)v;
        }
        if (rc) free(*ids), *ids = NULL;
    }
    st_close(s);
    free(path);
    return rc;
}

static int add3(st_writer *w, const char *name, int B, int T, int n, const float *x)
{
    int64_t shape[3] = {B, T, n};
    return st_writer_add_f32(w, name, DT_F32, 3, shape, x);
}

int cmd_forward(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"ids", required_argument, 0, 'i'},
        {"dump", required_argument, 0, 'd'},  {"layers", required_argument, 0, 'l'},
        {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model = NULL, *ids_spec = NULL, *out = NULL, *layers = NULL;
    int dump = DUMP_EMBED | DUMP_LAYERS | DUMP_FINAL | DUMP_LOGITS, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:i:d:l:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'i': ids_spec = optarg; break;
        case 'l': layers = optarg; break;
        case 'o': out = optarg; break;
        case 'd':
            if (parse_dump(optarg, &dump))
                return cli_usage_error("forward", "--dump '%s': use embed,layers,final_norm,logits", optarg);
            break;
        case 'h': usage(stdout); return 0;
        case ':': return cli_usage_error("forward", "option %s needs a value", argv[optind - 1]);
        default: return cli_usage_error("forward", "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("forward", "unexpected argument '%s'", argv[optind]);
    if (!model || !ids_spec || !out) return cli_usage_error("forward", "--model, --ids and -o are required");

    model_config cfg;
    if (model_config_load(model, &cfg)) return cli_fail();
    int la = 0, lb = cfg.n_layers - 1;
    if (layers && (parse_range(layers, &la, &lb) || lb >= cfg.n_layers)) {
        int n = cfg.n_layers;
        model_config_free(&cfg);
        return cli_usage_error("forward", "--layers '%s': want A..B within 0..%d", layers, n - 1);
    }
    int32_t *ids = NULL;
    int B = 0, T = 0;
    st_set *ck = NULL;
    st_writer *w = NULL;
    float *h = NULL, *buf = NULL;
    int rc = 1;
    if (read_ids(ids_spec, &ids, &B, &T)) goto done;
    if (!(ck = st_open(model))) goto done;
    const int64_t N = (int64_t)B * T;
    const int d = cfg.hidden;
    h = xmalloc_aligned((size_t)N * d * sizeof(float));
    if (model_embed(ck, &cfg, ids, N, h)) goto done;
    if (!(w = st_writer_open(out, "forward", 0))) goto done;
    if ((dump & DUMP_EMBED) && add3(w, "embed", B, T, d, h)) goto done;
    /* layers run as far as the last thing asked for */
    const int need_head = dump & (DUMP_FINAL | DUMP_LOGITS);
    const int last = need_head ? cfg.n_layers - 1 : ((dump & DUMP_LAYERS) ? lb : -1);
    for (int L = 0; L <= last; L++) {
        double t0 = bench_now();
        layer_weights lw;
        if (layer_weights_load(ck, &cfg, L, &lw)) goto done;
        int r = layer_forward(&cfg, &lw, h, h, B, T, NULL, NULL);
        layer_weights_free(&lw);
        if (r) goto done;
        fprintf(stderr, "forward: layer %d (%s) %.2f s\n", L,
                cfg.layer_types[L] == LAYER_FULL_ATTN ? "full attention" : "DeltaNet", bench_now() - t0);
        if ((dump & DUMP_LAYERS) && L >= la && L <= lb) {
            char name[32];
            snprintf(name, sizeof name, "layer_out.%d", L);
            if (add3(w, name, B, T, d, h)) goto done;
        }
    }
    if (need_head) {
        head_weights hw;
        if (head_weights_load(ck, &cfg, &hw)) goto done;
        buf = xmalloc_aligned((size_t)N * d * sizeof(float));
        float *logits = (dump & DUMP_LOGITS) ? xmalloc_aligned((size_t)N * cfg.vocab * sizeof(float)) : NULL;
        int r = head_forward(&cfg, &hw, h, N, buf, logits);
        head_weights_free(&hw);
        if (!r && (dump & DUMP_FINAL)) r = add3(w, "final_norm", B, T, d, buf);
        if (!r && logits) r = add3(w, "logits", B, T, cfg.vocab, logits);
        free(logits);
        if (r) goto done;
    }
    st_writer_set_metadata(w, "source", "gptq-eora forward (fp32)");
    rc = st_writer_finish(w) ? 1 : 0;
    w = NULL;
done:
    if (w) st_writer_abort(w);
    if (rc) cli_fail();
    free(ids);
    free(h);
    free(buf);
    if (ck) st_close(ck);
    model_config_free(&cfg);
    return rc;
}
