/* gptq-eora solve — GPTQ-solve one weight with one Hessian and write the GPTQ tensors. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gptq/gptq.h"
#include "gptq/pack.h"
#include "io/err.h"
#include "io/safetensors.h"
#include "tools/bench_util.h"
#include "tools/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gptq-eora solve --weight FILE[:TENSOR] --hessian FILE[:TENSOR] -o OUT.safetensors [options]\n"
            "\n"
            "GPTQ-quantizes one weight W [out, in] (any float dtype) with one Hessian H [in, in] (F32 or F64,\n"
            "H = 2/n sum x^T x) exactly as GPTQModel does, and writes qweight, qzeros, scales (F16), g_idx (I32)\n"
            "in the chosen format, plus Q (F32 dequantized weight), scale and zero (F32 [out, n_groups], solve\n"
            "order) and metadata avg_loss, damp. TENSOR may be omitted when the file holds one tensor.\n"
            "\n"
            "options:\n"
            "  --bits N                 2, 3, 4 or 8 (default 4)\n"
            "  --group-size N           -1 (per channel) or > 0 (default 128)\n"
            "  --desc-act | --no-desc-act   act-order: solve columns by diag(H) descending (default on)\n"
            "  --sym | --asym           symmetric grid (default) or asymmetric\n"
            "  --static-groups          group grids fixed up front from the unmodified weight\n"
            "  --act-group-aware        GAR ordering (only when --no-desc-act)\n"
            "  --damp-percent X         default 0.05\n"
            "  --damp-auto-increment X  default 0.01\n"
            "  --blocksize N            default 128\n"
            "  --format gptq|gptq_v2    qzeros as zero-1 (v1, default) or zero (v2)\n"
            "  --nsamples N             tokens behind H, for avg_loss (default: Hessian file metadata\n"
            "                           'nsamples' if present, else avg_loss = sum of losses)\n"
            "  --fast-hinv              factor H^-1 by reversed Cholesky + strtri (half the flops)\n"
            "  -o, --output FILE        output .safetensors\n"
            "\n"
            "exit status: 0 success, 1 failure, 2 usage error\n"
            "example:\n"
            "  gptq-eora solve --weight w.safetensors:W --hessian h.safetensors:H --bits 4 --group-size 128 \\\n"
            "      --desc-act --sym -o q.safetensors\n");
}

static int parse_double(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return (!*s || *end) ? -1 : 0;
}

static int write_outputs(const char *path, const gptq_result *r, const gptq_packed *p, gptq_format fmt,
                         const char *module)
{
    st_writer *w = st_writer_open(path, NULL, 0);
    if (!w) return -1;
    const int64_t qw[2] = {p->qw_rows, p->out}, qz[2] = {p->n_groups, p->qz_cols}, sc[2] = {p->n_groups, p->out},
                  gi[1] = {p->in}, q[2] = {r->out, r->in}, sz[2] = {r->out, r->n_groups};
    char buf[64];
    int rc = st_writer_add(w, "qweight", DT_I32, 2, qw, p->qweight) || st_writer_add(w, "qzeros", DT_I32, 2, qz, p->qzeros) ||
             st_writer_add(w, "scales", DT_F16, 2, sc, p->scales) || st_writer_add(w, "g_idx", DT_I32, 1, gi, p->g_idx) ||
             st_writer_add(w, "Q", DT_F32, 2, q, r->Q) || st_writer_add(w, "scale", DT_F32, 2, sz, r->scale) ||
             st_writer_add(w, "zero", DT_F32, 2, sz, r->zero);
    if (!rc) {
        snprintf(buf, sizeof buf, "%.10g", r->avg_loss);
        rc |= st_writer_set_metadata(w, "avg_loss", buf);
        snprintf(buf, sizeof buf, "%.5f", r->damp);
        rc |= st_writer_set_metadata(w, "damp", buf);
        snprintf(buf, sizeof buf, "%.10g", r->diag_floor);
        rc |= st_writer_set_metadata(w, "diag_floor", buf);
        snprintf(buf, sizeof buf, "%.10g", r->loss);
        rc |= st_writer_set_metadata(w, "layer_loss", buf);
        rc |= st_writer_set_metadata(w, "format", fmt == GPTQ_FMT_V1 ? "gptq" : "gptq_v2");
        rc |= st_writer_set_metadata(w, "module", module);
    }
    if (rc) {
        st_writer_abort(w);
        return -1;
    }
    return st_writer_finish(w);
}

int cmd_solve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weight", required_argument, 0, 'w'},     {"hessian", required_argument, 0, 'H'},
        {"bits", required_argument, 0, 'b'},       {"group-size", required_argument, 0, 'g'},
        {"desc-act", no_argument, 0, 'D'},         {"no-desc-act", no_argument, 0, 'N'},
        {"sym", no_argument, 0, 'S'},              {"asym", no_argument, 0, 'A'},
        {"static-groups", no_argument, 0, 's'},    {"act-group-aware", no_argument, 0, 'G'},
        {"damp-percent", required_argument, 0, 'p'}, {"damp-auto-increment", required_argument, 0, 'i'},
        {"blocksize", required_argument, 0, 'k'},  {"format", required_argument, 0, 'f'},
        {"nsamples", required_argument, 0, 'n'},   {"fast-hinv", no_argument, 0, 'F'},
        {"output", required_argument, 0, 'o'},     {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *wspec = NULL, *hspec = NULL, *outp = NULL;
    gptq_opts o;
    gptq_opts_default(&o);
    gptq_format fmt = GPTQ_FMT_V1;
    double nsamples = -1;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w': wspec = optarg; break;
        case 'H': hspec = optarg; break;
        case 'b':
            if (cli_parse_int(optarg, INT_MIN, INT_MAX, &o.bits) || (o.bits != 2 && o.bits != 3 && o.bits != 4 && o.bits != 8))
                return cli_usage_error("solve", "--bits must be 2, 3, 4 or 8 (got '%s')", optarg);
            break;
        case 'g':
            if (cli_parse_int(optarg, INT_MIN, INT_MAX, &o.group_size) || (o.group_size != -1 && o.group_size <= 0))
                return cli_usage_error("solve", "--group-size must be -1 or positive (got '%s')", optarg);
            break;
        case 'D': o.desc_act = 1; break;
        case 'N': o.desc_act = 0; break;
        case 'S': o.sym = 1; break;
        case 'A': o.sym = 0; break;
        case 's': o.static_groups = 1; break;
        case 'G': o.act_group_aware = 1; break;
        case 'p':
            if (parse_double(optarg, &o.damp_percent) || !(o.damp_percent > 0 && o.damp_percent < 1))
                return cli_usage_error("solve", "--damp-percent must be in (0, 1) (got '%s')", optarg);
            break;
        case 'i':
            if (parse_double(optarg, &o.damp_auto_increment) || !(o.damp_auto_increment >= 0 && o.damp_auto_increment < 1))
                return cli_usage_error("solve", "--damp-auto-increment must be in [0, 1) (got '%s')", optarg);
            break;
        case 'k':
            if (cli_parse_int(optarg, INT_MIN, INT_MAX, &o.blocksize) || o.blocksize <= 0)
                return cli_usage_error("solve", "--blocksize must be positive (got '%s')", optarg);
            break;
        case 'f':
            if (!strcmp(optarg, "gptq"))
                fmt = GPTQ_FMT_V1;
            else if (!strcmp(optarg, "gptq_v2"))
                fmt = GPTQ_FMT_V2;
            else
                return cli_usage_error("solve", "--format must be gptq or gptq_v2 (got '%s')", optarg);
            break;
        case 'n':
            if (parse_double(optarg, &nsamples) || nsamples <= 0)
                return cli_usage_error("solve", "--nsamples must be a positive number (got '%s')", optarg);
            break;
        case 'F': o.hinv_fast = 1; break;
        case 'o': outp = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return cli_usage_error("solve", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("solve", "unexpected argument '%s'", argv[optind]);
    if (!wspec || !hspec || !outp) return cli_usage_error("solve", "--weight, --hessian and -o are required");
    size_t ol = strlen(outp);
    if (ol < 12 || strcmp(outp + ol - 12, ".safetensors"))
        return cli_usage_error("solve", "-o must name a .safetensors file (got '%s')", outp);

    st_set *ws = NULL, *hs = NULL;
    const st_tensor *wt, *ht;
    float *W = NULL, *H = NULL;
    gptq_result r = {0};
    gptq_packed p = {0};
    int rc = 1;
    if (st_open_spec(wspec, &ws, &wt) || st_open_spec(hspec, &hs, &ht)) goto done;
    if (wt->ndim != 2 || !dtype_is_float(wt->dtype)) {
        err_set("%s: tensor '%s' must be a 2-D float matrix [out, in] (got %d-D %s)", wspec, wt->name, wt->ndim,
                dtype_name(wt->dtype));
        goto done;
    }
    /* out and in are ints below (and in the solver): a larger dimension would be truncated and
     * the buffers sized from it overrun by st_to_f32, which converts all numel values */
    if (wt->shape[0] > INT_MAX || wt->shape[1] > INT_MAX) {
        err_set("%s: tensor '%s' [%lld, %lld] has a dimension over %d", wspec, wt->name, (long long)wt->shape[0],
                (long long)wt->shape[1], INT_MAX);
        goto done;
    }
    const int out = (int)wt->shape[0], in = (int)wt->shape[1];
    if (ht->ndim != 2 || ht->shape[0] != in || ht->shape[1] != in || (ht->dtype != DT_F32 && ht->dtype != DT_F64)) {
        char shp[64] = "";
        for (int d = 0, k = 0; d < ht->ndim && k < 48; d++)
            k += snprintf(shp + k, sizeof shp - (size_t)k, "%s%lld", d ? ", " : "", (long long)ht->shape[d]);
        err_set("%s: tensor '%s' must be F32/F64 [%d, %d] to match weight '%s' (got %s [%s])", hspec, ht->name, in, in,
                wt->name, dtype_name(ht->dtype), shp);
        goto done;
    }
    if (nsamples < 0) {
        const char *m = st_metadata(hs, "nsamples");
        if (m) nsamples = atof(m);
    }
    if (in % 32 || out % 32) { /* the GPTQ layout packs whole blocks of 32: fail before the solve */
        err_set("%s: shape [%d, %d] must have in and out divisible by 32 to be packed", wt->name, out, in);
        goto done;
    }
    W = xmalloc((size_t)out * in * sizeof(float));
    H = xmalloc((size_t)in * in * sizeof(float));
    if (st_to_f32(wt, W) || st_to_f32(ht, H)) goto done;
    double t0 = bench_now();
    if (gptq_solve(wt->name, W, out, in, H, nsamples > 0 ? (int64_t)nsamples : 0, &o, &r)) goto done;
    double dt = bench_now() - t0;
    /* GPTQModel re-derives the codes from Q in the module's dtype */
    dtype_t mdt = wt->dtype == DT_F64 ? DT_F32 : wt->dtype;
    if (gptq_pack_dtype(&r, fmt, mdt, &p) || write_outputs(outp, &r, &p, fmt, wt->name)) {
        err_prefix("solve %s", wt->name);
        goto done;
    }
    printf("solve %s [%d, %d]: %d-bit g%d %s %s%s%s: damp %.5f%s, avg_loss %.6g%s, layer loss %.6g, %.2f s -> %s\n",
           wt->name, out, in, o.bits, o.group_size, o.sym ? "sym" : "asym", o.desc_act ? "desc_act" : "no-desc_act",
           o.static_groups ? " static" : "", (!o.desc_act && o.act_group_aware) ? " gar" : "", r.damp,
           r.diag_floor > 0 ? " (+diag floor)" : "", r.avg_loss, nsamples > 0 ? "" : " (sum: nsamples unknown)", r.loss,
           dt, outp);
    rc = 0;
done:
    if (rc) cli_fail();
    gptq_packed_free(&p);
    gptq_result_free(&r);
    free(W);
    free(H);
    if (ws) st_close(ws);
    if (hs) st_close(hs);
    return rc;
}
