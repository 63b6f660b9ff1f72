/* gptq-eora inspect — print what a checkpoint holds (analysis in tools/inspect.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "tools/cli.h"
#include "tools/inspect.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gptq-eora inspect [--json] [--filter REGEX] PATH\n"
            "\n"
            "List a checkpoint's tensors grouped by module (name minus its last component) with\n"
            "dtype, shape and bytes; totals per dtype; and for GPTQ modules (qweight, qzeros, scales,\n"
            "g_idx) the bit width and effective bits per weight including scales/zeros/g_idx.\n"
            "PATH is a model or checkpoint directory, a *.safetensors.index.json or one .safetensors\n"
            "file. A quantization_config in config.json (or quantize_config.json) next to it is\n"
            "shown and each module's bits are checked against it (including `dynamic` rules).\n"
            "\n"
            "options:\n"
            "  --json           machine-readable report on stdout\n"
            "  --filter REGEX   only tensors whose full name matches REGEX (PCRE2, unanchored)\n"
            "  -h, --help       this help\n"
            "\n"
            "examples:\n"
            "  gptq-eora inspect tests/data/tiny-qwen35\n"
            "  gptq-eora inspect --filter 'layers\\.3\\.self_attn' OUT\n"
            "  gptq-eora inspect --json OUT > inspect.json\n");
}

static const char *human(uint64_t bytes, char *buf, size_t n)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) snprintf(buf, n, "%" PRIu64 " B", bytes);
    else snprintf(buf, n, "%.2f %s", v, unit[u]);
    return buf;
}

static void print_report(const inspect_report *r, FILE *f)
{
    char hb[32], sb[128];
    fprintf(f, "%s: %zu file%s, %zu tensors, %s (%" PRIu64 " bytes)\n", r->path, st_file_count(r->set),
            st_file_count(r->set) == 1 ? "" : "s", r->n_tensors, human(r->total_bytes, hb, sizeof hb), r->total_bytes);
    if (r->qcfg_file) {
        fprintf(f, "quantization_config (%s): method %s, format %s, bits %d, group_size %d, desc_act %s, sym %s\n",
                r->qcfg_file, r->q_method ? r->q_method : "?", r->q_format ? r->q_format : "?", r->q_bits,
                r->q_group_size, r->q_desc_act < 0 ? "?" : r->q_desc_act ? "true" : "false",
                r->q_sym < 0 ? "?" : r->q_sym ? "true" : "false");
    }
    fprintf(f, "\n%-60s %-5s %-16s %12s\n", "module / tensor", "dtype", "shape", "bytes");
    for (size_t i = 0; i < r->n_modules; i++) {
        const inspect_module *m = &r->modules[i];
        fprintf(f, "%s  (%zu tensor%s, %s)", *m->name ? m->name : "(top level)", m->count, m->count == 1 ? "" : "s",
                human(m->bytes, hb, sizeof hb));
        if (m->quantized) {
            fprintf(f, "  GPTQ %d-bit, in %lld, out %lld, %lld groups of %lld, %.3f bits/weight", m->bits,
                    (long long)m->in, (long long)m->out, (long long)m->groups, (long long)m->group_size, m->eff_bits);
            if (m->cfg_bits == 0) fprintf(f, "  [config: excluded]");
            else if (m->cfg_bits > 0 && m->cfg_bits != m->bits) fprintf(f, "  [config says %d-bit]", m->cfg_bits);
        }
        fputc('\n', f);
        for (size_t k = 0; k < m->count; k++) {
            const st_tensor *t = r->tensors[m->first + k];
            st_shape_str(t->shape, t->ndim, sb, sizeof sb);
            fprintf(f, "    %-56s %-5s %-16s %12zu\n", inspect_leaf(t->name), dtype_name(t->dtype), sb, t->nbytes);
        }
    }
    fprintf(f, "\ntotals by dtype:\n");
    for (int d = 0; d < DT_COUNT; d++) {
        const inspect_dtype_total *x = &r->dtypes[d];
        if (!x->count) continue;
        fprintf(f, "  %-5s %6zu tensors %14" PRIu64 " elements %14" PRIu64 " bytes (%s)\n", dtype_name((dtype_t)d),
                x->count, x->numel, x->bytes, human(x->bytes, hb, sizeof hb));
    }
    fprintf(f, "  all   %6zu tensors %38" PRIu64 " bytes (%s)\n", r->n_tensors, r->total_bytes,
            human(r->total_bytes, hb, sizeof hb));
    if (r->n_quantized) {
        fprintf(f, "\nGPTQ modules: %zu (", r->n_quantized);
        int first = 1;
        for (int b = 8; b >= 1; b--)
            if (r->modules_by_bits[b]) {
                fprintf(f, "%s%d-bit: %zu", first ? "" : ", ", b, r->modules_by_bits[b]);
                first = 0;
            }
        fprintf(f, "), %" PRIu64 " weights in %s, effective %.3f bits/weight\n", r->quant_weights,
                human(r->quant_bytes, hb, sizeof hb), r->eff_bits);
        if (r->qcfg_file)
            fprintf(f, "bits vs quantization_config: %s (%zu mismatching module%s)\n", r->n_mismatch ? "MISMATCH" : "consistent",
                    r->n_mismatch, r->n_mismatch == 1 ? "" : "s");
    }
}

int cmd_inspect(int argc, char **argv)
{
    int json = 0;
    const char *filter = NULL, *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--filter")) {
            if (i + 1 >= argc) return cli_usage_error("inspect", "--filter needs a REGEX");
            filter = argv[++i];
        } else if (!strncmp(a, "--filter=", 9)) {
            filter = a + 9;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("inspect", "unknown option '%s'", a);
        } else if (path) {
            return cli_usage_error("inspect", "more than one PATH ('%s' and '%s')", path, a);
        } else {
            path = a;
        }
    }
    if (!path) return cli_usage_error("inspect", "missing PATH");
    inspect_report r;
    if (inspect_open(path, filter, &r)) return cli_fail();
    if (json) {
        char *text = inspect_json(&r);
        if (text) printf("%s\n", text);
        free(text);
    } else {
        print_report(&r, stdout);
    }
    inspect_free(&r);
    fflush(stdout);
    return 0;
}
