/* gptq-eora eora — EoRA correction of one quantized linear: reads W, Wq and the input
 * covariance, writes lora_A [r, in] and lora_B [out, r] with the losses in the metadata. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eora/eora.h"
#include "gptq/pack.h"
#include "io/dtype.h"
#include "io/err.h"
#include "io/safetensors.h"
#include "tools/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gptq-eora eora --weight FILE[:T] --quantized FILE[:T] --cov FILE[:T] --rank R\n"
            "                      [--method eigen|cholesky] [--svd exact|randomized]\n"
            "                      [--oversample P] [--power-iters Q] [--seed S]\n"
            "                      [--dtype f32|f16|bf16] [--qformat v1|v2] -o OUT.safetensors\n"
            "\n"
            "EoRA low-rank correction of one quantized linear (REFERENCE.md §5): writes lora_A [r, in]\n"
            "and lora_B [out, r] so that Wq + lora_B·lora_A ≈ W in the covariance-weighted norm, with\n"
            "metadata loss_before, loss_after (tr(E·C·Eᵀ)), method, svd, rank, discarded, cutoff.\n"
            "\n"
            "  --weight FILE[:T]     original weight [out, in] (any float dtype)\n"
            "  --quantized FILE[:T]  quantized weight: a dense float tensor [out, in], or the module\n"
            "                        prefix of a GPTQ checkpoint (T.qweight/.qzeros/.scales/.g_idx),\n"
            "                        dequantized with fp16 scales as a loader does (--qformat, default v1)\n"
            "  --cov FILE[:T]        input covariance [in, in] (F32/F64; any positive scale: H, Σxᵀx)\n"
            "  --rank R              1 .. min(out, in)\n"
            "  --method M            cholesky (default; falls back to eigen when C is not PD) | eigen\n"
            "                        (GPTQModel's: fp64 eigh with cutoff max(λ)·min(1, in·eps_fp32))\n"
            "  --svd K               exact (default, sgesdd) | randomized (Halko–Martinsson–Tropp)\n"
            "  --oversample P        randomized SVD oversampling (default 64)\n"
            "  --power-iters Q       randomized SVD power iterations (default 4)\n"
            "  --seed S              randomized SVD seed (default 0)\n"
            "  --dtype D             output dtype (default: the weight's dtype if F16/BF16, else f32)\n"
            "  -o OUT.safetensors    output file (written atomically)\n"
            "\n"
            "example:\n"
            "  gptq-eora eora --weight model.safetensors:model.layers.0.mlp.down_proj.weight \\\n"
            "      --quantized out/model.safetensors:model.layers.0.mlp.down_proj \\\n"
            "      --cov h.safetensors:model.layers.0.mlp.down_proj --rank 64 -o down_proj.eora.safetensors\n");
}

/* "FILE:PREFIX" naming a GPTQ module (PREFIX.qweight present) → dequantized Wq. Returns NULL
 * without an error set when the spec is not such a module. */
static float *load_gptq_module(const char *spec, int out, int in, gptq_format fmt, int *handled)
{
    *handled = 0;
    char *path = xstrdup(spec), *colon = strrchr(path, ':');
    if (!colon) {
        free(path);
        return NULL;
    }
    *colon = 0;
    const char *prefix = colon + 1;
    st_set *s = st_open(path);
    if (!s) {
        err_clear();
        free(path);
        return NULL;
    }
    char name[512];
    snprintf(name, sizeof name, "%s.qweight", prefix);
    const st_tensor *qw = st_find(s, name);
    if (!qw) {
        st_close(s);
        free(path);
        return NULL;
    }
    *handled = 1;
    const char *parts[3] = {"qzeros", "scales", "g_idx"};
    const st_tensor *t[3];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, parts[i]);
        t[i] = st_find(s, name);
        if (!t[i]) {
            err_set("%s: GPTQ module '%s' has no %s", path, prefix, name);
            st_close(s);
            free(path);
            return NULL;
        }
    }
    float *W = NULL;
    int bits = qw->ndim == 2 && in > 0 ? (int)(qw->shape[0] * 32 / in) : 0;
    if (qw->dtype != DT_I32 || t[0]->dtype != DT_I32 || t[1]->dtype != DT_F16 || t[2]->dtype != DT_I32 ||
        qw->ndim != 2 || qw->shape[1] != out || qw->shape[0] * 32 != (int64_t)bits * in ||
        !(bits == 2 || bits == 3 || bits == 4 || bits == 8) || t[1]->ndim != 2 || t[1]->shape[1] != out ||
        t[2]->numel != in || t[0]->ndim != 2 || t[0]->shape[0] != t[1]->shape[0] ||
        t[0]->shape[1] * 32 != (int64_t)out * bits || t[1]->shape[0] > INT_MAX) {
        err_set("%s: GPTQ module '%s' tensors do not fit a [%d, %d] weight (qweight %s [%lld, %lld])", path, prefix,
                out, in, dtype_name(qw->dtype), (long long)qw->shape[0], (long long)(qw->ndim > 1 ? qw->shape[1] : 0));
    } else {
        gptq_packed p = {0};
        p.bits = bits;
        p.in = in;
        p.out = out;
        p.n_groups = (int)t[1]->shape[0];
        p.qw_rows = (int)qw->shape[0];
        p.qz_cols = (int)t[0]->shape[1];
        p.qweight = xmalloc(qw->nbytes);
        p.qzeros = xmalloc(t[0]->nbytes);
        p.scales = xmalloc(t[1]->nbytes);
        p.g_idx = xmalloc(t[2]->nbytes);
        memcpy(p.qweight, qw->data, qw->nbytes);
        memcpy(p.qzeros, t[0]->data, t[0]->nbytes);
        memcpy(p.scales, t[1]->data, t[1]->nbytes);
        memcpy(p.g_idx, t[2]->data, t[2]->nbytes);
        W = xmalloc(sizeof *W * (size_t)out * in);
        if (gptq_unpack_dequant(&p, fmt, W)) {
            err_prefix("%s: module '%s'", path, prefix);
            free(W);
            W = NULL;
        }
        gptq_packed_free(&p);
    }
    st_close(s);
    free(path);
    return W;
}

int cmd_eora(int argc, char **argv)
{
    const char *weight = NULL, *quant = NULL, *cov = NULL, *outp = NULL, *dtype_s = NULL;
    eora_opts o;
    eora_opts_default(&o);
    int rank_set = 0;
    gptq_format qfmt = GPTQ_FMT_V1;
    enum { O_WEIGHT = 256, O_QUANT, O_COV, O_RANK, O_METHOD, O_SVD, O_OVER, O_POWER, O_SEED, O_DTYPE, O_QFMT };
    static const struct option lo[] = {
        {"weight", required_argument, 0, O_WEIGHT}, {"quantized", required_argument, 0, O_QUANT},
        {"cov", required_argument, 0, O_COV},       {"rank", required_argument, 0, O_RANK},
        {"method", required_argument, 0, O_METHOD}, {"svd", required_argument, 0, O_SVD},
        {"oversample", required_argument, 0, O_OVER}, {"power-iters", required_argument, 0, O_POWER},
        {"seed", required_argument, 0, O_SEED},     {"dtype", required_argument, 0, O_DTYPE},
        {"qformat", required_argument, 0, O_QFMT},  {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case O_WEIGHT: weight = optarg; break;
        case O_QUANT: quant = optarg; break;
        case O_COV: cov = optarg; break;
        case 'o': outp = optarg; break;
        case O_DTYPE: dtype_s = optarg; break;
        case O_RANK:
            if (cli_parse_long(optarg, 1, 1 << 20, &v)) return cli_usage_error("eora", "--rank: '%s' is not a positive integer", optarg);
            o.rank = (int)v;
            rank_set = 1;
            break;
        case O_METHOD:
            if (!strcmp(optarg, "eigen")) o.method = EORA_EIGEN;
            else if (!strcmp(optarg, "cholesky")) o.method = EORA_CHOLESKY;
            else return cli_usage_error("eora", "--method: '%s' is not eigen or cholesky", optarg);
            break;
        case O_SVD:
            if (!strcmp(optarg, "exact")) o.svd = EORA_SVD_EXACT;
            else if (!strcmp(optarg, "randomized")) o.svd = EORA_SVD_RANDOMIZED;
            else return cli_usage_error("eora", "--svd: '%s' is not exact or randomized", optarg);
            break;
        case O_OVER:
            if (cli_parse_long(optarg, 0, 1 << 20, &v)) return cli_usage_error("eora", "--oversample: bad value '%s'", optarg);
            o.oversample = (int)v;
            break;
        case O_POWER:
            if (cli_parse_long(optarg, 0, 1000, &v)) return cli_usage_error("eora", "--power-iters: bad value '%s'", optarg);
            o.power_iters = (int)v;
            break;
        case O_SEED:
            if (cli_parse_long(optarg, 0, __LONG_MAX__, &v)) return cli_usage_error("eora", "--seed: bad value '%s'", optarg);
            o.seed = (uint64_t)v;
            break;
        case O_QFMT:
            if (!strcmp(optarg, "v1")) qfmt = GPTQ_FMT_V1;
            else if (!strcmp(optarg, "v2")) qfmt = GPTQ_FMT_V2;
            else return cli_usage_error("eora", "--qformat: '%s' is not v1 or v2", optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: return cli_usage_error("eora", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("eora", "unexpected argument '%s'", argv[optind]);
    if (!weight || !quant || !cov || !outp || !rank_set)
        return cli_usage_error("eora", "--weight, --quantized, --cov, --rank and -o are required");
    dtype_t out_dt = DT_F32;
    int dtype_given = dtype_s != NULL;
    if (dtype_s) {
        if (!strcmp(dtype_s, "f32")) out_dt = DT_F32;
        else if (!strcmp(dtype_s, "f16")) out_dt = DT_F16;
        else if (!strcmp(dtype_s, "bf16")) out_dt = DT_BF16;
        else return cli_usage_error("eora", "--dtype: '%s' is not f32, f16 or bf16", dtype_s);
    }

    int status = 1;
    st_set *sw = NULL, *sq = NULL, *sc = NULL;
    const st_tensor *tw, *tq, *tc;
    float *W = NULL, *Wq = NULL, *Cf = NULL;
    double *C = NULL;
    eora_result res = {0};
    if (st_open_spec(weight, &sw, &tw)) goto fail;
    if (!dtype_is_float(tw->dtype) || tw->ndim != 2) {
        err_set("%s: weight must be a 2-D float tensor (got %s, %d dims)", weight, dtype_name(tw->dtype), tw->ndim);
        goto fail;
    }
    /* out and in are ints from here on: a larger dimension would be truncated and W, sized from
     * it, overrun by st_to_f32 (which converts all numel values) */
    if (tw->shape[0] > INT_MAX || tw->shape[1] > INT_MAX) {
        err_set("%s: weight [%lld, %lld] has a dimension over %d", weight, (long long)tw->shape[0],
                (long long)tw->shape[1], INT_MAX);
        goto fail;
    }
    int out = (int)tw->shape[0], in = (int)tw->shape[1];
    if (!dtype_given && (tw->dtype == DT_F16 || tw->dtype == DT_BF16)) out_dt = tw->dtype;
    W = xmalloc(sizeof *W * (size_t)out * in);
    if (st_to_f32(tw, W)) goto fail;

    int handled = 0;
    Wq = load_gptq_module(quant, out, in, qfmt, &handled);
    if (handled && !Wq) goto fail;
    if (!handled) {
        if (st_open_spec(quant, &sq, &tq)) goto fail;
        if (!dtype_is_float(tq->dtype) || tq->ndim != 2 || tq->shape[0] != out || tq->shape[1] != in) {
            err_set("%s: quantized weight must be a float [%d, %d] tensor or a GPTQ module (got %s, %lld dims)", quant,
                    out, in, dtype_name(tq->dtype), (long long)tq->ndim);
            goto fail;
        }
        Wq = xmalloc(sizeof *Wq * (size_t)out * in);
        if (st_to_f32(tq, Wq)) goto fail;
    }

    if (st_open_spec(cov, &sc, &tc)) goto fail;
    if (!dtype_is_float(tc->dtype) || tc->ndim != 2 || tc->shape[0] != in || tc->shape[1] != in) {
        err_set("%s: covariance must be a float [%d, %d] tensor (got %s, shape %lld x %lld)", cov, in, in,
                dtype_name(tc->dtype), (long long)tc->shape[0], (long long)(tc->ndim > 1 ? tc->shape[1] : 0));
        goto fail;
    }
    C = xmalloc(sizeof *C * (size_t)in * in);
    if (tc->dtype == DT_F64) {
        memcpy(C, tc->data, sizeof *C * (size_t)in * in);
    } else {
        Cf = xmalloc(sizeof *Cf * (size_t)in * in);
        if (st_to_f32(tc, Cf)) goto fail;
        for (size_t i = 0; i < (size_t)in * in; i++) C[i] = Cf[i];
    }

    if (eora_compute(tw->name, W, Wq, out, in, C, &o, &res)) goto fail;

    st_writer *wr = st_writer_open(outp, NULL, 0);
    if (!wr) goto fail;
    int64_t shA[2] = {res.rank, in}, shB[2] = {out, res.rank};
    char buf[64];
    int rc = st_writer_add_f32(wr, "lora_A", out_dt, 2, shA, res.A) ||
             st_writer_add_f32(wr, "lora_B", out_dt, 2, shB, res.B);
    snprintf(buf, sizeof buf, "%.17g", res.loss_before);
    rc = rc || st_writer_set_metadata(wr, "loss_before", buf);
    snprintf(buf, sizeof buf, "%.17g", res.loss_after);
    rc = rc || st_writer_set_metadata(wr, "loss_after", buf);
    rc = rc || st_writer_set_metadata(wr, "method", eora_method_name(res.used));
    rc = rc || st_writer_set_metadata(wr, "svd", eora_svd_name(o.svd));
    snprintf(buf, sizeof buf, "%d", res.rank);
    rc = rc || st_writer_set_metadata(wr, "rank", buf);
    snprintf(buf, sizeof buf, "%d", res.discarded);
    rc = rc || st_writer_set_metadata(wr, "discarded", buf);
    snprintf(buf, sizeof buf, "%.17g", res.cutoff);
    rc = rc || st_writer_set_metadata(wr, "cutoff", buf);
    if (rc) {
        st_writer_abort(wr);
        goto fail;
    }
    if (st_writer_finish(wr)) goto fail;
    printf("eora %s: rank %d, method %s%s, svd %s, loss %.6g -> %.6g (%.2f%% left), discarded %d -> %s\n", tw->name,
           res.rank, eora_method_name(res.used), res.fallback ? " (cholesky fell back: covariance not PD)" : "",
           eora_svd_name(o.svd), res.loss_before, res.loss_after,
           res.loss_before > 0 ? 100.0 * res.loss_after / res.loss_before : 0.0, res.discarded, outp);
    status = 0;
fail:
    if (status) cli_fail();
    eora_result_free(&res);
    free(W);
    free(Wq);
    free(Cf);
    free(C);
    if (sw) st_close(sw);
    if (sq) st_close(sq);
    if (sc) st_close(sc);
    return status;
}
