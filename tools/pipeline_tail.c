/* pipeline_tail — o_proj/out_proj + residual + MLP of one layer from the mixer output. */
#include "tools/pipeline_tail.h"

#include <stdlib.h>
#include <string.h>

#include "calib/model_kernels.h"
#include "io/err.h"

int layer_mix_width(const model_config *cfg, layer_type type)
{
    return type == LAYER_FULL_ATTN ? cfg->n_heads * cfg->head_dim : cfg->lin_v_heads * cfg->lin_v_dim;
}

int layer_tail(const model_config *cfg, const layer_weights *lw, const float *h_in, const float *mix,
               float *h_out, int64_t N, tap_fn tap, void *ctx)
{
    const int d = cfg->hidden;
    const int full = lw->type == LAYER_FULL_ATTN;
    const linear_t *o = full ? &lw->o_proj : &lw->out_proj;
    if (!o->w || !lw->post_norm || !lw->gate_proj.w || !lw->up_proj.w || !lw->down_proj.w)
        return err_set("layer %d: output projection, norm or MLP weights missing", lw->index);
    if (o->in != layer_mix_width(cfg, lw->type) || o->out != d)
        return err_set("layer %d: output projection is %d x %d, expected %d x %d", lw->index, o->out, o->in, d,
                       layer_mix_width(cfg, lw->type));
    int rc = 1;
    float *res = xmalloc_aligned((size_t)N * d * sizeof(float));
    float *xn = xmalloc_aligned((size_t)N * d * sizeof(float));
    memcpy(res, h_in, (size_t)N * d * sizeof(float));
    linear_apply(o, mix, N, xn);
    add_inplace(res, xn, N * d);
    if (layer_mlp_residual(cfg, lw, res, xn, N, tap, ctx)) goto out; /* the same MLP half as layer_forward */
    memcpy(h_out, res, (size_t)N * d * sizeof(float));
    rc = 0;
out:
    free(res);
    free(xn);
    return rc;
}
