/* config.json parsing (io/model_config) and YAML job files (io/job). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/job.h"
#include "io/model_config.h"
#include "tests/testlib.h"
#include "tests/testutil.h"

#define TINY TEST_DATA "/tiny-qwen35"

static int contains(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* ---------------------------------------------------------------- config.json */

TEST(config_tiny_exact_values)
{
    model_config c;
    REQUIRE(model_config_load(TINY, &c) == 0);
    CHECK(strcmp(c.model_type, "qwen3_5") == 0);
    CHECK(strcmp(c.text_model_type, "qwen3_5_text") == 0);
    CHECK(strcmp(c.prefix, "model.language_model.") == 0);
    CHECK(c.is_vlm == 1);
    CHECK(c.hidden == 256);
    CHECK(c.intermediate == 768);
    CHECK(c.n_layers == 8);
    CHECK(c.vocab == 4096);
    CHECK(c.n_heads == 4 && c.n_kv_heads == 2 && c.head_dim == 64);
    CHECK(c.partial_rotary == 0.25);
    CHECK(c.rotary_dim == 16);
    CHECK(c.rope_theta == 1e7);
    CHECK(c.attn_output_gate == 1);
    CHECK(c.attention_bias == 0);
    CHECK(c.lin_k_heads == 2 && c.lin_v_heads == 4 && c.lin_k_dim == 64 && c.lin_v_dim == 64);
    CHECK(c.conv_kernel == 4);
    CHECK(c.rms_eps == 1e-6);
    CHECK(c.tie_word_embeddings == 0);
    CHECK(c.eos_token_id == 4093);
    CHECK(c.max_position_embeddings == 4096);
    CHECK(strcmp(c.torch_dtype, "bfloat16") == 0);
    REQUIRE(c.layer_types);
    for (int i = 0; i < 8; i++)
        CHECK_MSG(c.layer_types[i] == ((i % 4 == 3) ? LAYER_FULL_ATTN : LAYER_LINEAR_ATTN), "layer %d", i);
    char buf[512];
    model_config_describe(&c, buf, sizeof buf);
    CHECK_MSG(contains(buf, "8 layers (6 linear, 2 full)"), "describe: %s", buf);
    model_config_free(&c);
}

TEST(config_path_to_file_same_as_dir)
{
    model_config a, b;
    REQUIRE(model_config_load(TINY "/config.json", &a) == 0);
    REQUIRE(model_config_load(TINY, &b) == 0);
    CHECK(a.hidden == b.hidden && a.n_layers == b.n_layers && a.vocab == b.vocab);
    model_config_free(&a);
    model_config_free(&b);
}

/* A flat text-only config with the Qwen3.5-9B sizes: no layer_types (interval default 4), legacy
 * top-level rope_theta, eos as a list, extra keys transformers ignores. */
static const char *CFG_9B_FLAT =
    "{\"architectures\": [\"Qwen3_5ForCausalLM\"], \"model_type\": \"qwen3_5_text\",\n"
    " \"hidden_size\": 4096, \"intermediate_size\": 12288, \"num_hidden_layers\": 32,\n"
    " \"vocab_size\": 248320, \"num_attention_heads\": 16, \"num_key_value_heads\": 4, \"head_dim\": 256,\n"
    " \"linear_num_key_heads\": 16, \"linear_num_value_heads\": 32, \"linear_key_head_dim\": 128,\n"
    " \"linear_value_head_dim\": 128, \"linear_conv_kernel_dim\": 4, \"rms_norm_eps\": 1e-06,\n"
    " \"rope_theta\": 10000000, \"partial_rotary_factor\": 0.25, \"eos_token_id\": [248044, 248046],\n"
    " \"attn_output_gate\": true, \"mtp_num_hidden_layers\": 1, \"mamba_ssm_dtype\": \"float32\",\n"
    " \"max_position_embeddings\": 262144, \"torch_dtype\": \"bfloat16\", \"tie_word_embeddings\": false}\n";

TEST(config_flat_9b_like)
{
    model_config c;
    const char *p = test_write_tmp("flat9b.json", CFG_9B_FLAT);
    REQUIRE(p);
    REQUIRE(model_config_load(p, &c) == 0);
    CHECK(c.is_vlm == 0);
    CHECK(strcmp(c.prefix, "model.") == 0);
    CHECK(strcmp(c.model_type, "qwen3_5_text") == 0);
    CHECK(c.hidden == 4096 && c.intermediate == 12288 && c.n_layers == 32 && c.vocab == 248320);
    CHECK(c.n_heads == 16 && c.n_kv_heads == 4 && c.head_dim == 256 && c.rotary_dim == 64);
    CHECK(c.lin_k_heads == 16 && c.lin_v_heads == 32 && c.lin_k_dim == 128 && c.lin_v_dim == 128);
    CHECK(c.rope_theta == 1e7);
    CHECK(c.eos_token_id == 248044);
    CHECK(c.max_position_embeddings == 262144);
    int n_full = 0;
    for (int i = 0; i < 32; i++) {
        n_full += c.layer_types[i] == LAYER_FULL_ATTN;
        CHECK_MSG(c.layer_types[i] == (i % 4 == 3 ? LAYER_FULL_ATTN : LAYER_LINEAR_ATTN), "layer %d", i);
    }
    CHECK(n_full == 8);
    model_config_free(&c);
}

/* VLM layout with the 27B sizes, full_attention_interval 2, rope in rope_parameters. */
TEST(config_vlm_27b_like_interval)
{
    const char *json =
        "{\"model_type\": \"qwen3_5\", \"tie_word_embeddings\": false, \"vision_config\": {\"depth\": 27},\n"
        " \"text_config\": {\"model_type\": \"qwen3_5_text\", \"hidden_size\": 5120, \"intermediate_size\": 17408,\n"
        "  \"num_hidden_layers\": 64, \"vocab_size\": 248320, \"num_attention_heads\": 24,\n"
        "  \"num_key_value_heads\": 4, \"head_dim\": 256, \"linear_num_key_heads\": 16,\n"
        "  \"linear_num_value_heads\": 48, \"linear_key_head_dim\": 128, \"linear_value_head_dim\": 128,\n"
        "  \"full_attention_interval\": 2, \"dtype\": \"bfloat16\",\n"
        "  \"rope_parameters\": {\"rope_theta\": 5000000, \"partial_rotary_factor\": 0.5}}}";
    model_config c;
    const char *p = test_write_tmp("vlm27b.json", json);
    REQUIRE(p);
    REQUIRE(model_config_load(p, &c) == 0);
    CHECK(c.is_vlm == 1 && strcmp(c.prefix, "model.language_model.") == 0);
    CHECK(c.hidden == 5120 && c.n_layers == 64 && c.n_heads == 24 && c.lin_v_heads == 48);
    CHECK(c.rope_theta == 5e6 && c.rotary_dim == 128);
    CHECK(c.conv_kernel == 4);          /* default */
    CHECK(c.rms_eps == 1e-6);           /* default */
    CHECK(c.eos_token_id == -1);        /* absent */
    for (int i = 0; i < 64; i++) CHECK(c.layer_types[i] == (i % 2 == 1 ? LAYER_FULL_ATTN : LAYER_LINEAR_ATTN));
    model_config_free(&c);
}

TEST(config_unsupported_model_type)
{
    model_config c;
    const char *p = test_write_tmp("llama.json", "{\"model_type\": \"llama\", \"hidden_size\": 8}");
    REQUIRE(p);
    CHECK(model_config_load(p, &c) == -1);
    CHECK_MSG(contains(err_msg(), "config.json") || contains(err_msg(), "llama.json"), "%s", err_msg());
    CHECK_MSG(contains(err_msg(), "unsupported model_type 'llama' (supported: qwen3_5, qwen3_5_text)"), "%s",
              err_msg());
}

/* Replace the first occurrence of `from` in the 9B flat config by `to`, load it, return rc. */
static int load_variant(const char *from, const char *to)
{
    char buf[4096];
    const char *at = strstr(CFG_9B_FLAT, from);
    if (!at) return 99;
    size_t pre = (size_t)(at - CFG_9B_FLAT);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)pre, CFG_9B_FLAT, to, at + strlen(from));
    const char *p = test_write_tmp("variant.json", buf);
    model_config c;
    int rc = model_config_load(p, &c);
    if (rc == 0) model_config_free(&c);
    return rc;
}

/* Each case: the 9B config with `from` replaced by `to` must fail with `expect` in the message. */
typedef struct {
    const char *from, *to, *expect;
} variant_case;

static void expect_variant_errors(const variant_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        err_clear();
        int rc = load_variant(cases[i].from, cases[i].to);
        CHECK_MSG(rc == -1, "case %zu: rc %d", i, rc);
        CHECK_MSG(contains(err_msg(), cases[i].expect), "case %zu: '%s' not in '%s'", i, cases[i].expect,
                  err_msg());
    }
}

TEST(config_errors_name_the_key)
{
    static const variant_case cases[] = {
        {"\"hidden_size\": 4096, ", "", "missing required key hidden_size"},
        {"\"linear_num_value_heads\": 32, ", "", "missing required key linear_num_value_heads"},
        {"\"rope_theta\": 10000000, ", "", "rope_theta"},
        {"\"vocab_size\": 248320", "\"vocab_size\": \"big\"", "vocab_size: expected an integer"},
        {"\"head_dim\": 256", "\"head_dim\": 25.5", "head_dim: expected an integer"},
        {"\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3", "num_key_value_heads"},
        {"\"num_hidden_layers\": 32", "\"num_hidden_layers\": 0", "num_hidden_layers: expected a positive"},
        {"\"attn_output_gate\": true", "\"attn_output_gate\": 1", "attn_output_gate: expected true or false"},
        {"\"model_type\": \"qwen3_5_text\",", "", "missing required key model_type"},
        {"\"torch_dtype\": \"bfloat16\",",
         "\"layer_types\": [\"full_attention\"],", "layer_types: 1 entries but num_hidden_layers is 32"},
        {"\"hidden_size\": 4096,", "\"hidden_size\": 4096,,", "invalid JSON"},
    };
    expect_variant_errors(cases, sizeof cases / sizeof cases[0]);
}

/* Widths are products of config numbers kept in ints downstream (q_proj with its gate is
 * heads x head_dim x 2; DeltaNet's conv channels 2·Hk·dk + Hv·dv): a config whose products pass
 * INT_MAX is refused, as is an eos_token_id outside the int range (its conversion would be
 * undefined). */
TEST(config_sizes_past_int_range)
{
    static const variant_case cases[] = {
        {"\"head_dim\": 256", "\"head_dim\": 134217728", "exceed the int range"},
        {"\"linear_key_head_dim\": 128", "\"linear_key_head_dim\": 1073741824", "exceed the int range"},
        {"\"linear_value_head_dim\": 128", "\"linear_value_head_dim\": 134217728", "exceed the int range"},
        {"\"eos_token_id\": [248044, 248046]", "\"eos_token_id\": 1e10", "eos_token_id"},
        {"\"eos_token_id\": [248044, 248046]", "\"eos_token_id\": [-3e9]", "eos_token_id"},
    };
    expect_variant_errors(cases, sizeof cases / sizeof cases[0]);
    /* the largest widths that fit still load: 16 heads x 2^26 x 2 = 2^31 would not, 2^25 does */
    CHECK_MSG(load_variant("\"head_dim\": 256", "\"head_dim\": 33554432") == 0, "%s", err_msg());
}

TEST(config_bad_layer_type_entry)
{
    char json[4096];
    snprintf(json, sizeof json, "%.*s, \"layer_types\": [%s\"sliding\"]}", (int)(strlen(CFG_9B_FLAT) - 2),
             CFG_9B_FLAT,
             "\"linear_attention\",\"linear_attention\",\"linear_attention\",\"full_attention\","
             "\"linear_attention\",\"linear_attention\",\"linear_attention\",\"full_attention\","
             "\"linear_attention\",\"linear_attention\",\"linear_attention\",\"full_attention\","
             "\"linear_attention\",\"linear_attention\",\"linear_attention\",\"full_attention\","
             "\"linear_attention\",\"linear_attention\",\"linear_attention\",\"full_attention\","
             "\"linear_attention\",\"linear_attention\",\"linear_attention\",\"full_attention\","
             "\"linear_attention\",\"linear_attention\",\"linear_attention\",\"full_attention\","
             "\"linear_attention\",\"linear_attention\",\"linear_attention\",");
    model_config c;
    const char *p = test_write_tmp("badlt.json", json);
    CHECK(model_config_load(p, &c) == -1);
    CHECK_MSG(contains(err_msg(), "layer_types[31]"), "%s", err_msg());
}

TEST(config_missing_file)
{
    model_config c;
    CHECK(model_config_load(TEST_DATA "/no-such-model", &c) == -1);
    CHECK_MSG(contains(err_msg(), "no-such-model"), "%s", err_msg());
}

/* ---------------------------------------------------------------- YAML jobs */

#define BASE "model: m\noutput: o\ncalibration:\n  sources:\n    - path: c.jsonl\n"

TEST(job_defaults_are_gptqmodels)
{
    job_t j;
    const char *p = test_write_tmp("min.yaml", BASE);
    REQUIRE(job_load(p, &j) == 0);
    CHECK(strcmp(j.path, p) == 0);
    CHECK(strcmp(j.model, "m") == 0 && strcmp(j.output, "o") == 0);
    CHECK(strcmp(j.tokenizer, "m/tokenizer.json") == 0);
    CHECK(strcmp(j.method, "gptq") == 0);
    CHECK(j.bits == 4 && j.group_size == 128);
    CHECK(j.desc_act == 1 && j.sym == 1 && j.act_group_aware == 0 && j.static_groups == 0);
    CHECK(j.true_sequential == 1);
    CHECK(j.damp_percent == 0.05 && j.damp_auto_increment == 0.01);
    CHECK(strcmp(j.format, "gptq") == 0);
    CHECK(j.n_rules == 0 && j.rules == NULL);
    CHECK(j.eora_rank == 0);
    CHECK(strcmp(j.eora_method, "cholesky") == 0 && strcmp(j.eora_svd, "exact") == 0);
    CHECK(strcmp(j.eora_dtype, "model") == 0);
    REQUIRE(j.n_sources == 1);
    CHECK(strcmp(j.sources[0].path, "c.jsonl") == 0);
    CHECK(strcmp(j.sources[0].format, "jsonl") == 0 && strcmp(j.sources[0].field, "text") == 0);
    CHECK(j.sources[0].weight == 1);
    CHECK(j.n_samples == 128 && j.seq_len == 512 && j.seed == 0);
    CHECK(strcmp(j.windows, "concat") == 0 && j.allow_repeat == 0);
    CHECK(j.eval_windows == 0 && j.eval_source.path == NULL);
    CHECK(j.memory_budget == 0);
    CHECK(strcmp(j.spill_dir, "o/.spill") == 0 && strcmp(j.spill_dtype, "bf16") == 0);
    CHECK(j.batch_tokens == 8192 && j.threads == 0);
    CHECK(strcmp(j.propagate, "quantized") == 0);
    CHECK(j.shard_size == 4ull << 30);
    job_free(&j);
}

TEST(job_every_field_set)
{
    const char *yaml =
        "model: models/x\n"
        "output: out/x\n"
        "tokenizer: tok/tokenizer.json\n"
        "quantize:\n"
        "  method: rtn\n  bits: 3\n  group_size: -1\n  desc_act: false\n  sym: false\n"
        "  act_group_aware: false\n  static_groups: true\n  true_sequential: false\n"
        "  damp_percent: 0.1\n  damp_auto_increment: 0.0025\n  format: gptq_v2\n"
        "  rules: [{match: 'a.*', bits: 2, group_size: 1024, eora_rank: 16}, {match: b, skip: true}]\n"
        "eora: {rank: 32, method: eigen, svd: randomized, dtype: f32}\n"
        "calibration:\n"
        "  sources:\n"
        "    - {path: a.jsonl, field: content, weight: 3}\n"
        "    - {path: b.txt, format: text, weight: 0.5}\n"
        "    - {path: c.ids, format: ids}\n"
        "  samples: 7\n  seq_len: 33\n  seed: 18446744073709551615\n  windows: document\n"
        "  allow_repeat: true\n"
        "eval: {source: {path: e.jsonl, field: body}, seq_len: 128, windows: 3}\n"
        "resources:\n"
        "  memory_budget: 24GiB\n  spill_dir: /scratch/s\n  spill_dtype: f32\n  batch_tokens: 1000\n"
        "  threads: 2\n  propagate: float\n  shard_size: 512MB\n";
    job_t j;
    const char *p = test_write_tmp("full.yaml", yaml);
    REQUIRE(job_load(p, &j) == 0);
    CHECK(strcmp(j.tokenizer, "tok/tokenizer.json") == 0);
    CHECK(strcmp(j.method, "rtn") == 0 && j.bits == 3 && j.group_size == -1);
    CHECK(j.desc_act == 0 && j.sym == 0 && j.static_groups == 1 && j.true_sequential == 0);
    CHECK(j.damp_percent == 0.1 && j.damp_auto_increment == 0.0025);
    CHECK(strcmp(j.format, "gptq_v2") == 0);
    REQUIRE(j.n_rules == 2);
    CHECK(strcmp(j.rules[0].match, "a.*") == 0 && j.rules[0].bits == 2 && j.rules[0].group_size == 1024);
    CHECK(j.rules[0].eora_rank == 16 && j.rules[0].skip == 0);
    CHECK(j.rules[1].skip == 1 && j.rules[1].bits == 0 && j.rules[1].group_size == 0 && j.rules[1].eora_rank == -1);
    CHECK(j.eora_rank == 32 && strcmp(j.eora_method, "eigen") == 0 && strcmp(j.eora_svd, "randomized") == 0);
    CHECK(strcmp(j.eora_dtype, "f32") == 0);
    REQUIRE(j.n_sources == 3);
    CHECK(strcmp(j.sources[0].field, "content") == 0 && j.sources[0].weight == 3);
    CHECK(strcmp(j.sources[1].format, "text") == 0 && j.sources[1].weight == 0.5);
    CHECK(strcmp(j.sources[2].format, "ids") == 0 && strcmp(j.sources[2].path, "c.ids") == 0);
    CHECK(j.n_samples == 7 && j.seq_len == 33 && j.seed == UINT64_MAX);
    CHECK(strcmp(j.windows, "document") == 0 && j.allow_repeat == 1);
    CHECK(strcmp(j.eval_source.path, "e.jsonl") == 0 && strcmp(j.eval_source.field, "body") == 0);
    CHECK(j.eval_seq_len == 128 && j.eval_windows == 3);
    CHECK(j.memory_budget == 24ull << 30);
    CHECK(strcmp(j.spill_dir, "/scratch/s") == 0 && strcmp(j.spill_dtype, "f32") == 0);
    CHECK(j.batch_tokens == 1000 && j.threads == 2 && strcmp(j.propagate, "float") == 0);
    CHECK(j.shard_size == 512000000ull);
    job_free(&j);
}

TEST(job_eval_defaults_when_section_given)
{
    job_t j;
    const char *p = test_write_tmp("eval.yaml", BASE "eval:\n  source: {path: e.jsonl}\n");
    REQUIRE(job_load(p, &j) == 0);
    CHECK(j.eval_seq_len == 512 && j.eval_windows == 64);
    CHECK(strcmp(j.eval_source.format, "jsonl") == 0 && strcmp(j.eval_source.field, "text") == 0);
    job_free(&j);
}

TEST(job_rules_first_match_wins_full_match)
{
    const char *yaml = BASE
        "eora: {rank: 64}\n"
        "quantize:\n"
        "  rules:\n"
        "    - {match: '.*\\.self_attn\\.q_proj', bits: 8, eora_rank: 0}\n"
        "    - {match: '.*\\.self_attn\\..*', bits: 3}\n"
        "    - {match: 'layers\\.1\\..*', skip: true}\n"
        "    - {match: '.*mlp', group_size: 64}\n"
        "    - {match: 'módulo\\.(α|β)', bits: 2}\n";
    job_t j;
    const char *p = test_write_tmp("rules.yaml", yaml);
    REQUIRE(job_load(p, &j) == 0);
    REQUIRE(j.n_rules == 5);
    CHECK(job_match_rule(&j, "model.layers.3.self_attn.q_proj") == &j.rules[0]);   /* 0 and 1 match: first wins */
    CHECK(job_match_rule(&j, "model.layers.3.self_attn.k_proj") == &j.rules[1]);
    CHECK(job_match_rule(&j, "model.layers.3.self_attn.q_proj_x") == &j.rules[1]); /* rule 0 must match to the end */
    CHECK(job_match_rule(&j, "model.layers.1.mlp.up_proj") == NULL);  /* 2 is anchored at the start, 3 at the end */
    CHECK(job_match_rule(&j, "layers.1.mlp.up_proj") == &j.rules[2]);
    CHECK(job_match_rule(&j, "model.layers.0.mlp") == &j.rules[3]);
    CHECK(job_match_rule(&j, "módulo.β") == &j.rules[4]);               /* UTF-8: β is one character */
    CHECK(job_match_rule(&j, "") == NULL);

    module_settings m;
    job_module_settings(&j, "model.layers.3.self_attn.q_proj", &m);
    CHECK(m.quantize == 1 && m.bits == 8 && m.group_size == 128 && m.eora_rank == 0 && m.rule == &j.rules[0]);
    job_module_settings(&j, "model.layers.3.self_attn.k_proj", &m);
    CHECK(m.quantize == 1 && m.bits == 3 && m.group_size == 128 && m.eora_rank == 64);
    job_module_settings(&j, "model.layers.0.mlp", &m);
    CHECK(m.quantize == 1 && m.bits == 4 && m.group_size == 64 && m.eora_rank == 64);
    job_module_settings(&j, "layers.1.x", &m);
    CHECK(m.quantize == 0 && m.eora_rank == 0);
    job_module_settings(&j, "lm_head", &m);
    CHECK(m.quantize == 1 && m.bits == 4 && m.group_size == 128 && m.eora_rank == 64 && m.rule == NULL);
    job_free(&j);
}

TEST(job_parse_size)
{
    uint64_t v = 0;
    CHECK(parse_size("24GiB", &v) == 0 && v == 24ull << 30);
    CHECK(parse_size("512 MB", &v) == 0 && v == 512000000ull);
    CHECK(parse_size("1e9", &v) == 0 && v == 1000000000ull);
    CHECK(parse_size("8G", &v) == 0 && v == 8ull << 30);
    CHECK(parse_size("1.5KiB", &v) == 0 && v == 1536);
    CHECK(parse_size("2tb", &v) == 0 && v == 2000000000000ull);
    CHECK(parse_size("100", &v) == 0 && v == 100);
    CHECK(parse_size("0", &v) == 0 && v == 0);
    CHECK(parse_size(" 3 MiB ", &v) == 0 && v == 3ull << 20);
    const char *bad[] = {"-1", "12XB", "", "GiB", "1e400", "4 GiB x", "1e30TiB", "+5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(parse_size(bad[i], &v) == -1, "'%s' accepted", bad[i]);
    CHECK(parse_size("12XB", &v) == -1 && contains(err_msg(), "unknown unit 'xb'"));
}

/* Each bad job: the message must start with the file and carry "LINE:COL: key.path: " and the reason. */
TEST(job_errors_name_line_and_key)
{
    static const struct { const char *yaml, *where, *why; } cases[] = {
        {BASE "colour: blue\n", ":6:1: colour: ", "unknown key (expected one of: model, output"},
        {BASE "quantize:\n  bitz: 4\n", ":7:3: quantize.bitz: ", "unknown key"},
        {BASE "quantize:\n  bits: four\n", ":7:9: quantize.bits: ", "expected an integer, got 'four'"},
        {BASE "quantize:\n  bits: 5\n", ":7:9: quantize.bits: ", "expected one of 2, 3, 4, 8, got 5"},
        {BASE "quantize:\n  group_size: 100\n", ":7:15: quantize.group_size: ", "power of two from 32 to 1024"},
        {BASE "quantize:\n  group_size: 2048\n", ":7:15: quantize.group_size: ", "power of two from 32 to 1024"},
        {BASE "quantize:\n  group_size: 16\n", ":7:15: quantize.group_size: ", "power of two from 32 to 1024"},
        {BASE "eora:\n  method: svd\n", ":7:11: eora.method: ", "expected one of cholesky, eigen, got 'svd'"},
        {BASE "quantize:\n  rules:\n    - match: '(abc'\n      bits: 8\n", ":8:14: quantize.rules[0].match: ",
         "invalid regex '(abc': missing closing parenthesis at offset 4"},
        {BASE "quantize:\n  rules:\n    - match: 'x'\n      bits: 8\n    - match: 'y'\n      bits: 6\n",
         ":11:13: quantize.rules[1].bits: ", "expected one of 2, 3, 4, 8"},
        {BASE "quantize:\n  rules:\n    - bits: 8\n", ":8:7: quantize.rules[0].match: ", "missing required key"},
        {BASE "quantize:\n  rules:\n    - match: x\n", ":8:7: quantize.rules[0]: ", "at least one of bits"},
        {BASE "quantize:\n  rules:\n    - match: x\n      skip: true\n      bits: 4\n",
         ":9:13: quantize.rules[0].skip: ", "a skipped module takes no bits"},
        {BASE "quantize:\n  rules: {match: x}\n", ":7:10: quantize.rules: ", "expected a list of rules, got a mapping"},
        {BASE "quantize:\n  desc_act: maybe\n", ":7:13: quantize.desc_act: ", "expected true or false, got 'maybe'"},
        {BASE "quantize:\n  desc_act: 'true'\n", ":7:13: quantize.desc_act: ", "expected true or false"},
        {BASE "quantize:\n  damp_percent: 1.5\n", ":7:17: quantize.damp_percent: ", "expected a value in (0, 1)"},
        {BASE "quantize:\n  act_group_aware: true\n", ":7:20: quantize.act_group_aware: ", "needs desc_act: false"},
        {BASE "quantize: 4\n", ":6:11: quantize: ", "expected a mapping, got a scalar"},
        {BASE "resources:\n  memory_budget: 24XB\n", ":7:18: resources.memory_budget: ", "unknown unit 'xb'"},
        {BASE "resources:\n  threads: 1.5\n", ":7:12: resources.threads: ", "expected an integer"},
        {BASE "resources:\n  shard_size: 0\n", ":7:15: resources.shard_size: ", "expected a size > 0"},
        {BASE "model: again\n", ":6:1: model: ", "duplicate key"},
        {BASE "eval:\n  source:\n    path: e\n    weight: 2\n", ":9:5: eval.source.weight: ", "unknown key"},
        {BASE "eval:\n  windows: 8\n", ":7:3: eval.source: ", "missing required key"},
        {BASE "calibration2: {}\n", ":6:1: calibration2: ", "unknown key"},
        {"model: m\noutput: o\ncalibration:\n  sources:\n    - path: c.jsonl\n      weight: 0\n",
         ":6:15: calibration.sources[0].weight: ", "expected a value > 0"},
        {"model: m\noutput: o\ncalibration:\n  sources:\n    - path: c.jsonl\n      format: csv\n",
         ":6:15: calibration.sources[0].format: ", "expected one of jsonl, text, ids, got 'csv'"},
        {"model: m\noutput: o\ncalibration:\n  sources:\n    - field: text\n",
         ":5:7: calibration.sources[0].path: ", "missing required key"},
        {"model: m\noutput: o\ncalibration:\n  sources: []\n", ":4:12: calibration.sources: ", "at least one source"},
        {"model: m\noutput: o\ncalibration:\n  samples: 4\n", ":4:3: calibration.sources: ", "missing required key"},
        {"model: m\noutput: o\ncalibration:\n  sources: [{path: c}]\n  samples: 0\n", ":5:12: calibration.samples: ",
         "expected a value > 0, got 0"},
        {"output: o\ncalibration:\n  sources:\n    - path: c\n", ":1:1: model: ", "missing required key"},
        {"model: m\ncalibration:\n  sources:\n    - path: c\n", ":1:1: output: ", "missing required key"},
        {"model:\noutput: o\ncalibration: {sources: [{path: c}]}\n", ":1:1: model: ", "missing required key"},
        {"model: m\noutput: o\n", ":1:1: calibration: ", "missing required key"},
        {"model: [m]\noutput: o\n", ":1:8: model: ", "expected a string, got a list"},
        {"- a\n- b\n", ":1:1: (top level): ", "expected a mapping, got a list"},
        {"", ":1:1: (top level): ", "the job file is empty"},
        {"model: m\noutput: [o\n", ":3:1: (yaml syntax): ", "did not find expected"},
        {"model: m\n  output: o\n", ":2:9: (yaml syntax): ", "mapping values are not allowed"},
        {BASE "---\nmodel: x\n", ":7:1: (top level): ", "found a second one"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.yaml", i);
        const char *p = test_write_tmp(name, cases[i].yaml);
        REQUIRE(p);
        char file[512];
        snprintf(file, sizeof file, "%s", p);
        job_t j;
        err_clear();
        int rc = job_load(file, &j);
        CHECK_MSG(rc == -1, "case %zu accepted", i);
        if (rc == 0) {
            job_free(&j);
            continue;
        }
        const char *m = err_msg();
        CHECK_MSG(strncmp(m, file, strlen(file)) == 0, "case %zu: message does not start with the file: %s", i, m);
        CHECK_MSG(contains(m, cases[i].where), "case %zu: '%s' not in '%s'", i, cases[i].where, m);
        CHECK_MSG(contains(m, cases[i].why), "case %zu: '%s' not in '%s'", i, cases[i].why, m);
        CHECK_MSG(!strchr(m, '\n'), "case %zu: message spans lines: %s", i, m);
    }
}

TEST(job_missing_file)
{
    job_t j;
    CHECK(job_load(TEST_DATA "/no-such-job.yaml", &j) == -1);
    CHECK_MSG(contains(err_msg(), "no-such-job.yaml: cannot open job file"), "%s", err_msg());
}

TEST(job_shipped_tiny_config)
{
    job_t j;
    REQUIRE(job_load("configs/tiny-qwen35.yaml", &j) == 0);
    CHECK(strcmp(j.model, "tests/data/tiny-qwen35") == 0);
    CHECK(strcmp(j.output, "demo-out/tiny") == 0);
    REQUIRE(j.n_sources == 1);
    CHECK(strcmp(j.sources[0].path, "tests/data/text/calib.jsonl") == 0);
    CHECK(j.n_samples == 128 && j.seq_len == 512);
    CHECK(strcmp(j.eval_source.path, "tests/data/text/eval.jsonl") == 0);
    CHECK(j.eval_windows == 64 && j.eval_seq_len == 512);
    CHECK(j.bits == 4 && j.group_size == 128 && j.desc_act && j.sym && j.eora_rank == 64);
    /* every Qwen3.5 decoder linear of the tiny model gets the published recipe */
    static const struct { const char *module; int quantize, bits; } expect[] = {
        {"model.language_model.layers.3.self_attn.q_proj", 1, 8},
        {"model.language_model.layers.3.self_attn.k_proj", 1, 8},
        {"model.language_model.layers.7.self_attn.v_proj", 1, 8},
        {"model.language_model.layers.7.self_attn.o_proj", 1, 8},
        {"model.language_model.layers.0.linear_attn.in_proj_qkv", 1, 4},
        {"model.language_model.layers.0.linear_attn.in_proj_z", 1, 4},
        {"model.language_model.layers.0.linear_attn.out_proj", 1, 4},
        {"model.language_model.layers.0.linear_attn.in_proj_a", 0, 0},
        {"model.language_model.layers.6.linear_attn.in_proj_b", 0, 0},
        {"model.language_model.layers.5.mlp.gate_proj", 1, 4},
        {"model.language_model.layers.5.mlp.up_proj", 1, 4},
        {"model.language_model.layers.5.mlp.down_proj", 1, 4},
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        module_settings m;
        job_module_settings(&j, expect[i].module, &m);
        CHECK_MSG(m.quantize == expect[i].quantize, "%s", expect[i].module);
        CHECK_MSG(m.rule != NULL, "%s matched no rule", expect[i].module);
        if (m.quantize) CHECK_MSG(m.bits == expect[i].bits && m.eora_rank == 64 && m.group_size == 128, "%s", expect[i].module);
    }
    job_free(&j);
}

TEST(job_shipped_9b_27b_configs)
{
    const char *paths[] = {"configs/qwen3.5-9b-gptq-eora.yaml", "configs/qwen3.5-27b-gptq-eora.yaml"};
    for (int k = 0; k < 2; k++) {
        job_t j;
        REQUIRE(job_load(paths[k], &j) == 0);
        CHECK(j.n_samples == 2048 && j.seq_len == 4096);
        CHECK(j.bits == 4 && j.group_size == 128 && j.desc_act == 1 && j.sym == 1 && j.eora_rank == 64);
        CHECK(j.memory_budget > 0 && j.memory_budget <= 256ull << 30);
        module_settings m;
        job_module_settings(&j, "model.language_model.layers.31.self_attn.o_proj", &m);
        CHECK(m.quantize && m.bits == 8 && m.eora_rank == 64);
        job_module_settings(&j, "model.language_model.layers.30.linear_attn.in_proj_z", &m);
        CHECK(m.quantize && m.bits == 4 && m.eora_rank == 64);
        job_module_settings(&j, "model.language_model.layers.30.linear_attn.in_proj_a", &m);
        CHECK(!m.quantize);
        job_module_settings(&j, "model.language_model.layers.30.mlp.down_proj", &m);
        CHECK(m.quantize && m.bits == 4 && m.eora_rank == 64);
        job_free(&j);
    }
}
