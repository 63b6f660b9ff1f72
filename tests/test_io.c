/* io/: safetensors reader/writer, dtype conversions, config.json, YAML jobs. */
#include <stdlib.h>
#include <string.h>

#include "io/dtype.h"
#include "io/err.h"
#include "io/safetensors.h"
#include "tests/testlib.h"

#define TINY TEST_DATA "/tiny-qwen35"

TEST(st_tiny_model_through_index)
{
    st_set *s = st_open(TINY);
    REQUIRE(s);
    CHECK(st_file_count(s) == 4);
    const st_tensor *t = st_find(s, "model.language_model.layers.0.linear_attn.in_proj_qkv.weight");
    REQUIRE(t);
    CHECK(t->dtype == DT_BF16 && t->ndim == 2 && t->shape[0] == 512 && t->shape[1] == 256);
    CHECK(st_find(s, "mtp.fc.weight") != NULL);
    CHECK(st_find(s, "lm_head.weight") != NULL);
    CHECK(st_find(s, "no.such.tensor") == NULL);
    st_close(s);
}
