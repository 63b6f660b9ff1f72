/* pipeline_tail — the second half of a decoder layer, from its mixer output on.
 *
 * The mixer (attention / DeltaNet core) is by far the most expensive part of a layer and its
 * output does not change once the layer's input projections are quantized, so the pipeline
 * computes it once per layer (capturing the o_proj / out_proj input) and runs the later
 * stages and the propagation from it:
 *   h1 = h_in + o(mix); xn = post_norm(h1) [tap MLP_IN]; g = silu(gate(xn)) ⊙ up(xn)
 *   [tap MLP_DOWN]; h_out = h1 + down(g)
 * with the same kernels, in the same order, as calib/layer.c's layer_forward, so the result
 * is bit-identical to a full layer_forward over the same rows. */
#ifndef TOOLS_PIPELINE_TAIL_H
#define TOOLS_PIPELINE_TAIL_H

#include <stdint.h>

#include "calib/model.h"

/* Width of the mixer output (the o_proj / out_proj input) of a layer type. */
int layer_mix_width(const model_config *cfg, layer_type type);

/* h_in [N, hidden], mix [N, mix width] → h_out [N, hidden] (may equal h_in). Returns 0 when
 * it ran to the end, 1 when a tap stopped it (h_out untouched), -1 on error. */
int layer_tail(const model_config *cfg, const layer_weights *lw, const float *h_in, const float *mix,
               float *h_out, int64_t N, tap_fn tap, void *ctx);

#endif
