/* model_config — config.json → architecture description.
 * Accepts the Qwen3.5 VLM layout (text config nested under "text_config", tensors under
 * "model.language_model.") and flat text-only checkpoints (tensors under "model.").
 * Unknown model_type → error listing the supported ones. */
#ifndef IO_MODEL_CONFIG_H
#define IO_MODEL_CONFIG_H

typedef enum { LAYER_LINEAR_ATTN = 0, LAYER_FULL_ATTN = 1 } layer_type;

typedef struct {
    char model_type[64];     /* top-level model_type, e.g. "qwen3_5" */
    char text_model_type[64];/* e.g. "qwen3_5_text" */
    char prefix[96];         /* tensor-name prefix of the decoder: "model.language_model." */
    int is_vlm;              /* text_config present */
    int hidden;              /* hidden_size */
    int intermediate;        /* intermediate_size */
    int n_layers;            /* num_hidden_layers */
    int vocab;               /* vocab_size */
    /* full attention */
    int n_heads, n_kv_heads, head_dim;
    double partial_rotary;   /* partial_rotary_factor */
    int rotary_dim;          /* head_dim * partial_rotary_factor */
    double rope_theta;
    int attn_output_gate;    /* 1 for Qwen3.5 (default 1 when absent) */
    int attention_bias;
    /* gated DeltaNet */
    int lin_k_heads, lin_v_heads, lin_k_dim, lin_v_dim, conv_kernel;
    double rms_eps;
    int tie_word_embeddings;
    int eos_token_id;        /* -1 if absent */
    int max_position_embeddings;
    char torch_dtype[16];    /* "bfloat16", ... ("dtype" or "torch_dtype") */
    layer_type *layer_types; /* n_layers entries */
} model_config;

/* path: a model directory (reads DIR/config.json) or a config.json file. */
int model_config_load(const char *path, model_config *cfg);
void model_config_free(model_config *cfg);
/* Short description for logs: "qwen3_5: 8 layers (6 linear, 2 full), hidden 256, ..." */
void model_config_describe(const model_config *cfg, char *buf, int len);

#endif
