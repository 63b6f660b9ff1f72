/* io/: safetensors reader/writer, dtype conversions, inspect. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/dtype.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/journal.h"
#include "io/safetensors.h"
#include "io/spill.h"
#include "tests/testlib.h"
#include "tests/testutil.h"
#include "tools/cli.h"
#include "tools/inspect.h"

#define TINY TEST_DATA "/tiny-qwen35"
#define RECIPE TEST_DATA "/golden/gptqmodel-tiny-recipe"

/* ------------------------------------------------------------------ helpers */

/* A fresh empty directory under the test tmpdir. */
static char *fresh_dir(const char *name)
{
    char *d = test_tmp_path(name);
    test_rm_rf(d);
    fs_mkdir_p(d);
    return d;
}

/* Names in a directory, sorted, joined by ' ' (dot files included). */
static char *list_dir(const char *dir)
{
    DIR *d = opendir(dir);
    char *names[256];
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < 256)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) names[n++] = xstrdup(de->d_name);
    if (d) closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(names[i]) + 1;
    char *out = xmalloc(len);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(out, " ");
        strcat(out, names[i]);
        free(names[i]);
    }
    return out;
}

/* A safetensors file from a header text (its length is the given byte count, which may
 * contain NULs) and `data_len` data bytes (0x5a). */
static char *write_raw(const char *name, const char *header, size_t hlen, size_t data_len)
{
    char *path = test_tmp_path(name);
    size_t n = 8 + hlen + data_len;
    unsigned char *buf = xmalloc(n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, 0x5a, data_len);
    fs_write_atomic(path, buf, n);
    free(buf);
    return path;
}

static char *write_hdr(const char *name, const char *header, size_t data_len)
{
    return write_raw(name, header, strlen(header), data_len);
}

static int msg_has(const char *phrase) { return strstr(err_msg(), phrase) != NULL; }

/* ------------------------------------------------------------------ dtype */

TEST(dtype_names_and_sizes)
{
    static const char *names[] = {"BOOL", "U8", "I8", "I16", "I32", "I64", "F16", "BF16", "F32", "F64"};
    static const size_t sizes[] = {1, 1, 1, 2, 4, 8, 2, 2, 4, 8};
    for (int i = 0; i < DT_COUNT; i++) {
        dtype_t t;
        CHECK(strcmp(dtype_name((dtype_t)i), names[i]) == 0);
        CHECK(dtype_size((dtype_t)i) == sizes[i]);
        CHECK(dtype_from_name(names[i], &t) == 0 && t == (dtype_t)i);
    }
    dtype_t t;
    CHECK(dtype_from_name("F8_E4M3", &t) == -1);
    CHECK(dtype_from_name("bf16", &t) == -1);
    CHECK(dtype_is_float(DT_BF16) && dtype_is_float(DT_F64) && !dtype_is_float(DT_I32) && !dtype_is_float(DT_BOOL));
}

/* Slow references: the value of a half/bfloat16 pattern from its fields via ldexp. */
static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static double ref_bf16(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
    return s ? -v : v;
}

static int same_f32(float a, double b)
{
    if (isnan(b)) return isnan(a);
    return (double)a == b && !!signbit(a) == !!signbit(b);
}

TEST(f16_bf16_to_f32_exhaustive)
{
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (!same_f32(f16_to_f32((uint16_t)h), ref_f16((uint16_t)h))) bad16++;
        if (!same_f32(bf16_to_f32((uint16_t)h), ref_bf16((uint16_t)h))) badbf++;
    }
    CHECK_MSG(bad16 == 0, "%d f16 patterns decode wrongly", bad16);
    CHECK_MSG(badbf == 0, "%d bf16 patterns decode wrongly", badbf);
}

TEST(f16_bf16_roundtrip_all_patterns)
{
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t x = (uint16_t)h;
        int nan16 = ((x >> 10) & 31) == 31 && (x & 1023), nanbf = ((x >> 7) & 255) == 255 && (x & 127);
        uint16_t r16 = f32_to_f16(f16_to_f32(x)), rbf = f32_to_bf16(bf16_to_f32(x));
        if (nan16 ? !(((r16 >> 10) & 31) == 31 && (r16 & 1023) && (r16 >> 15) == (x >> 15)) : r16 != x) bad16++;
        if (nanbf ? !(((rbf >> 7) & 255) == 255 && (rbf & 127) && (rbf >> 15) == (x >> 15)) : rbf != x) badbf++;
    }
    CHECK_MSG(bad16 == 0, "%d f16 patterns do not round-trip", bad16);
    CHECK_MSG(badbf == 0, "%d bf16 patterns do not round-trip", badbf);
}

/* Reference rounding of a finite non-negative x to the nearest pattern of a 16-bit format
 * (positive patterns are monotonic in value), ties to the even pattern. The pattern after the
 * largest finite one is infinity, which IEEE rounding treats as the next step up. */
static uint16_t ref_round(double x, double (*val)(uint16_t), uint16_t inf)
{
    uint16_t lo = 0, hi = inf; /* val(lo) <= x < val(hi) (val(inf) = inf) */
    while (hi - lo > 1) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (val(mid) <= x) lo = mid; else hi = mid;
    }
    double vlo = val(lo), vhi = hi == inf ? 2 * val((uint16_t)(inf - 1)) - val((uint16_t)(inf - 2)) : val(hi);
    double dlo = x - vlo, dhi = vhi - x;
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (lo & 1) ? hi : lo;
}

static int check_round(float f, int *bad16, int *badbf)
{
    if (isnan(f) || isinf(f)) return 0;
    double x = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    uint16_t want16 = sign | ref_round(x, ref_f16, 0x7c00), wantbf = sign | ref_round(x, ref_bf16, 0x7f80);
    if (f32_to_f16(f) != want16 && (*bad16)++ < 3)
        printf("    f32_to_f16(%a) = %04x, want %04x\n", (double)f, f32_to_f16(f), want16);
    if (f32_to_bf16(f) != wantbf && (*badbf)++ < 3)
        printf("    f32_to_bf16(%a) = %04x, want %04x\n", (double)f, f32_to_bf16(f), wantbf);
    return 0;
}

TEST(f32_to_f16_bf16_round_half_even)
{
    int bad16 = 0, badbf = 0;
    /* every tie (midpoint between neighbours, incl. subnormals and the overflow edge), and the
     * floats just around it */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double mid = (ref_f16((uint16_t)h) + (h + 1 < 0x7c00 ? ref_f16((uint16_t)(h + 1)) : 65536.0)) / 2;
        float m = (float)mid;
        CHECK((double)m == mid); /* ties are exactly representable in f32 */
        float around[] = {m, nextafterf(m, 0), nextafterf(m, INFINITY), (float)ref_f16((uint16_t)h)};
        for (int k = 0; k < 4; k++) {
            check_round(around[k], &bad16, &badbf);
            check_round(-around[k], &bad16, &badbf);
        }
    }
    for (uint32_t h = 0; h < 0x7f80; h++) {
        double mid = (ref_bf16((uint16_t)h) + (h + 1 < 0x7f80 ? ref_bf16((uint16_t)(h + 1)) : ldexp(1, 128))) / 2;
        float m = (float)mid;
        if (!isfinite(m)) continue;
        float around[] = {m, nextafterf(m, 0), nextafterf(m, INFINITY)};
        for (int k = 0; k < 3; k++) check_round(around[k], &bad16, &badbf);
    }
    /* a sweep over f32 bit patterns (every 1021st) */
    for (uint64_t u = 0; u < 0x100000000ull; u += 1021) {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        check_round(f, &bad16, &badbf);
    }
    CHECK_MSG(bad16 == 0, "%d f32->f16 roundings differ from the reference", bad16);
    CHECK_MSG(badbf == 0, "%d f32->bf16 roundings differ from the reference", badbf);
    CHECK(f32_to_f16(65519.996f) == 0x7bff && f32_to_f16(65520.0f) == 0x7c00);
    CHECK(f32_to_f16(ldexpf(1, -25)) == 0 && f32_to_f16(nextafterf(ldexpf(1, -25), 1)) == 1);
    CHECK(f32_to_f16(ldexpf(3, -25)) == 2); /* 1.5 units: tie → even (2) */
    CHECK(f32_to_f16(NAN) != 0 && ((f32_to_f16(NAN) >> 10) & 31) == 31 && (f32_to_f16(NAN) & 1023));
    CHECK(f32_to_bf16(INFINITY) == 0x7f80 && f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(dtype_rows_to_f32)
{
    float src[5] = {1.0f, -2.5f, 0.333333343f, 65504.0f, -0.0f};
    unsigned char buf[40];
    float back[5];
    for (int d = 0; d < DT_COUNT; d++) {
        dtype_t t = (dtype_t)d;
        if (!dtype_is_float(t)) {
            CHECK(dtype_from_f32(t, src, buf, 5) == -1);
            CHECK(dtype_to_f32(t, buf, back, 5) == -1);
            continue;
        }
        REQUIRE(dtype_from_f32(t, src, buf, 5) == 0);
        REQUIRE(dtype_to_f32(t, buf, back, 5) == 0);
        for (int i = 0; i < 5; i++) {
            float want = t == DT_F16 ? f16_to_f32(f32_to_f16(src[i])) : t == DT_BF16 ? bf16_to_f32(f32_to_bf16(src[i])) : src[i];
            CHECK_MSG(back[i] == want && !!signbit(back[i]) == !!signbit(want), "%s[%d] = %g want %g", dtype_name(t), i, back[i], want);
        }
    }
    /* exact for values representable in each format */
    CHECK(bf16_to_f32(f32_to_bf16(0.333333343f)) == 0.333984375f);
    CHECK(f16_to_f32(f32_to_f16(0.333333343f)) == 0.33325195f);
}

/* ------------------------------------------------------------------ writer → reader */

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((i * 131u + seed * 17u + (i >> 8)) & 0xff);
}

TEST(st_roundtrip_every_dtype)
{
    char *path = test_tmp_path("all.safetensors");
    st_writer *w = st_writer_open(path, NULL, 0);
    REQUIRE(w);
    unsigned char data[4096];
    char name[64];
    for (int d = 0; d < DT_COUNT; d++) {
        int64_t shape[3] = {2, 3, 5};
        fill_pattern(data, sizeof data, (unsigned)d);
        if (d == DT_BOOL)
            for (size_t i = 0; i < sizeof data; i++) data[i] &= 1;
        snprintf(name, sizeof name, "t.%s", dtype_name((dtype_t)d));
        CHECK(st_writer_add(w, name, (dtype_t)d, 3, shape, data) == 0);
    }
    int64_t empty_shape[2] = {0, 7};
    double scalar = 3.25;
    CHECK(st_writer_add(w, "scalar", DT_F64, 0, NULL, &scalar) == 0);
    CHECK(st_writer_add(w, "empty", DT_F32, 2, empty_shape, NULL) == 0);
    CHECK(st_writer_set_metadata(w, "producer", "test_io") == 0);
    CHECK(st_writer_set_metadata(w, "note", "quote \" and \\ and \n newline") == 0);
    uint64_t want_bytes = 0;
    for (int d = 0; d < DT_COUNT; d++) want_bytes += 30 * dtype_size((dtype_t)d);
    CHECK(st_writer_bytes(w) == want_bytes + 8);
    REQUIRE(st_writer_finish(w) == 0);

    st_set *s = st_open(path);
    REQUIRE(s);
    REQUIRE(st_count(s) == DT_COUNT + 2);
    for (int d = 0; d < DT_COUNT; d++) {
        const st_tensor *t = st_get(s, (size_t)d); /* file order = order added */
        snprintf(name, sizeof name, "t.%s", dtype_name((dtype_t)d));
        REQUIRE(t);
        CHECK(strcmp(t->name, name) == 0);
        CHECK(t->dtype == (dtype_t)d && t->ndim == 3 && t->shape[0] == 2 && t->shape[1] == 3 && t->shape[2] == 5);
        CHECK(t->numel == 30 && t->nbytes == 30 * dtype_size((dtype_t)d));
        fill_pattern(data, sizeof data, (unsigned)d);
        if (d == DT_BOOL)
            for (size_t i = 0; i < sizeof data; i++) data[i] &= 1;
        CHECK_MSG(memcmp(t->data, data, t->nbytes) == 0, "data of %s differs", name);
        CHECK(st_find(s, name) == t);
    }
    const st_tensor *sc = st_find(s, "scalar"), *em = st_find(s, "empty");
    REQUIRE(sc && em);
    CHECK(sc->ndim == 0 && sc->numel == 1 && sc->nbytes == 8 && memcmp(sc->data, &scalar, 8) == 0);
    CHECK(em->ndim == 2 && em->shape[0] == 0 && em->shape[1] == 7 && em->numel == 0 && em->nbytes == 0);
    CHECK(st_metadata(s, "format") && strcmp(st_metadata(s, "format"), "pt") == 0);
    CHECK(st_metadata(s, "producer") && strcmp(st_metadata(s, "producer"), "test_io") == 0);
    CHECK(st_metadata(s, "note") && strcmp(st_metadata(s, "note"), "quote \" and \\ and \n newline") == 0);
    CHECK(st_file_metadata_count(s, 0) == 3);
    const char *k, *v;
    st_file_metadata_at(s, 0, 0, &k, &v);
    CHECK(strcmp(k, "format") == 0 && strcmp(v, "pt") == 0);
    st_close(s);

    /* raw layout: header length multiple of 8, padded with spaces, data follows it directly */
    size_t len;
    unsigned char *raw = (unsigned char *)fs_read_file(path, &len);
    REQUIRE(raw && len > 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    CHECK(hlen % 8 == 0);
    CHECK(raw[8] == '{');
    size_t last = 8 + hlen - 1;
    while (raw[last] == ' ') last--;
    CHECK(raw[last] == '}');
    CHECK(8 + hlen + want_bytes + 8 == len);
    CHECK(strstr((char *)raw + 8, "\"__metadata__\":{\"format\":\"pt\"") != NULL);
    CHECK(strstr((char *)raw + 8, "\"data_offsets\":[0,30]") != NULL); /* BOOL first, relative to data */
    fill_pattern(data, sizeof data, DT_BOOL);
    CHECK(raw[8 + hlen] == (data[0] & 1));
    free(raw);
    free(path);
}

TEST(st_writer_add_f32_converts)
{
    char *path = test_tmp_path("f32.safetensors");
    st_writer *w = st_writer_open(path, NULL, 0);
    REQUIRE(w);
    enum { N = 70000 }; /* more than one conversion chunk */
    float *x = xmalloc(N * sizeof *x);
    for (int i = 0; i < N; i++) x[i] = sinf((float)i * 0.37f) * (float)(1 + i % 300);
    int64_t shape[2] = {700, 100};
    dtype_t types[4] = {DT_F16, DT_BF16, DT_F32, DT_F64};
    const char *names[4] = {"h", "b", "f", "d"};
    for (int k = 0; k < 4; k++) CHECK(st_writer_add_f32(w, names[k], types[k], 2, shape, x) == 0);
    CHECK(st_writer_add_f32(w, "i", DT_I32, 2, shape, x) == -1 && msg_has("tensor 'i'") && msg_has("cannot convert fp32 to I32"));
    REQUIRE(st_writer_finish(w) == 0);
    st_set *s = st_open(path);
    REQUIRE(s);
    CHECK(st_count(s) == 4);
    for (int k = 0; k < 4; k++) {
        const st_tensor *t;
        float *y = st_load_f32(s, names[k], &t);
        REQUIRE(y);
        CHECK(t->dtype == types[k]);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            float want = types[k] == DT_F16 ? f16_to_f32(f32_to_f16(x[i])) : types[k] == DT_BF16 ? bf16_to_f32(f32_to_bf16(x[i])) : x[i];
            bad += y[i] != want;
        }
        CHECK_MSG(bad == 0, "%s: %d values differ", names[k], bad);
        free(y);
    }
    CHECK(st_load_f32(s, "nope", NULL) == NULL && msg_has("tensor 'nope' not found"));
    st_close(s);
    free(x);
    free(path);
}

/* Checks the file names, index and data of a sharded write. */
TEST(st_writer_sharded_through_index)
{
    char *dir = fresh_dir("sharded");
    st_writer *w = st_writer_open(dir, "model", 1000);
    REQUIRE(w);
    unsigned char data[3000];
    char name[32];
    /* 10 tensors of 400 bytes: two per shard (a third would pass 1000) → 5 shards; then one
     * tensor larger than the limit gets a shard of its own → 6 */
    for (int i = 0; i < 10; i++) {
        int64_t shape[1] = {100};
        fill_pattern(data, 400, (unsigned)i);
        snprintf(name, sizeof name, "layer.%d.w", i);
        CHECK(st_writer_add(w, name, DT_F32, 1, shape, data) == 0);
    }
    int64_t big[2] = {30, 50};
    fill_pattern(data, 3000, 99);
    CHECK(st_writer_add(w, "big", DT_BF16, 2, big, data) == 0);
    CHECK(st_writer_bytes(w) == 7000);
    REQUIRE(st_writer_finish(w) == 0);

    char *files = list_dir(dir);
    CHECK_MSG(strcmp(files, "model-00001-of-00006.safetensors model-00002-of-00006.safetensors "
                            "model-00003-of-00006.safetensors model-00004-of-00006.safetensors "
                            "model-00005-of-00006.safetensors model-00006-of-00006.safetensors "
                            "model.safetensors.index.json") == 0,
              "files: %s", files);
    free(files);

    char *ipath = fs_join(dir, "model.safetensors.index.json");
    struct stat st;
    char *shard1 = fs_join(dir, "model-00001-of-00006.safetensors");
    CHECK(stat(shard1, &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(stat(ipath, &st) == 0 && (st.st_mode & 0777) == 0644);
    free(shard1);
    size_t len;
    char *text = fs_read_file(ipath, &len);
    REQUIRE(text);
    cJSON *idx = cJSON_Parse(text);
    free(text);
    REQUIRE(idx);
    const cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(idx, "metadata"), "total_size");
    CHECK(cJSON_IsNumber(ts) && ts->valuedouble == 7000);
    const cJSON *wm = cJSON_GetObjectItem(idx, "weight_map"), *e;
    CHECK(cJSON_GetArraySize(wm) == 11);
    const char *prev = "";
    cJSON_ArrayForEach(e, wm) {
        CHECK(strcmp(prev, e->string) < 0); /* sorted like Hugging Face */
        prev = e->string;
    }
    CHECK(strcmp(cJSON_GetObjectItem(wm, "layer.0.w")->valuestring, "model-00001-of-00006.safetensors") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(wm, "layer.3.w")->valuestring, "model-00002-of-00006.safetensors") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(wm, "layer.9.w")->valuestring, "model-00005-of-00006.safetensors") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(wm, "big")->valuestring, "model-00006-of-00006.safetensors") == 0);
    cJSON_Delete(idx);

    const char *opens[2] = {dir, ipath};
    for (int o = 0; o < 2; o++) {
        st_set *s = st_open(opens[o]);
        REQUIRE(s);
        CHECK(st_file_count(s) == 6 && st_count(s) == 11);
        for (int i = 0; i < 10; i++) {
            snprintf(name, sizeof name, "layer.%d.w", i);
            const st_tensor *t = st_find(s, name);
            REQUIRE(t);
            CHECK(t->file == i / 2);
            fill_pattern(data, 400, (unsigned)i);
            CHECK(t->nbytes == 400 && memcmp(t->data, data, 400) == 0);
            CHECK(st_get(s, (size_t)i) == t); /* file order */
        }
        const st_tensor *b = st_find(s, "big");
        fill_pattern(data, 3000, 99);
        CHECK(b && b->file == 5 && b->dtype == DT_BF16 && memcmp(b->data, data, 3000) == 0);
        CHECK(strcmp(st_file_metadata(s, 3, "format"), "pt") == 0);
        st_close(s);
    }
    free(ipath);
    free(dir);
}

TEST(st_writer_one_shard_and_stale_index)
{
    char *dir = fresh_dir("oneshard");
    char *stale = fs_join(dir, "ckpt.safetensors.index.json");
    fs_write_atomic(stale, "{}", 2);
    st_writer *w = st_writer_open(dir, "ckpt", 1 << 20);
    REQUIRE(w);
    int32_t v[4] = {1, -2, 3, -4};
    int64_t shape[1] = {4};
    CHECK(st_writer_add(w, "v", DT_I32, 1, shape, v) == 0);
    REQUIRE(st_writer_finish(w) == 0);
    char *files = list_dir(dir);
    CHECK_MSG(strcmp(files, "ckpt.safetensors") == 0, "files: %s", files);
    free(files);
    char *p = fs_join(dir, "ckpt.safetensors");
    st_set *s = st_open(p);
    REQUIRE(s);
    CHECK(st_count(s) == 1 && memcmp(st_get(s, 0)->data, v, 16) == 0);
    st_close(s);
    /* no tensors at all is still a valid file */
    char *emp = test_tmp_path("empty.safetensors");
    w = st_writer_open(emp, NULL, 0);
    REQUIRE(w);
    REQUIRE(st_writer_finish(w) == 0);
    s = st_open(emp);
    REQUIRE(s);
    CHECK(st_count(s) == 0 && strcmp(st_metadata(s, "format"), "pt") == 0);
    st_close(s);
    free(emp);
    free(p);
    free(stale);
    free(dir);
}

/* Writes n tensors of 80 bytes with shard_bytes 100, so one tensor per shard (0 = no sharding). */
static int write_set(const char *dir, int n, size_t shard_bytes, unsigned char fill)
{
    st_writer *w = st_writer_open(dir, "model", shard_bytes);
    if (!w) return -1;
    unsigned char data[80];
    memset(data, fill, sizeof data);
    int64_t shape[1] = {80};
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        if (st_writer_add(w, name, DT_U8, 1, shape, data)) {
            st_writer_abort(w);
            return -1;
        }
    }
    return st_writer_finish(w);
}

TEST(st_writer_rewrite_leaves_no_stale_shards)
{
    char *dir = fresh_dir("rewrite");
    char *other = fs_join(dir, "other-00001-of-00002.safetensors");
    fs_write_atomic(other, "x", 1); /* another base's file must survive */
    /* 3 shards, then 1 shard into the same dir */
    REQUIRE(write_set(dir, 3, 100, 1) == 0);
    char *files = list_dir(dir);
    CHECK_MSG(strcmp(files, "model-00001-of-00003.safetensors model-00002-of-00003.safetensors "
                            "model-00003-of-00003.safetensors model.safetensors.index.json "
                            "other-00001-of-00002.safetensors") == 0, "after 3: %s", files);
    free(files);
    REQUIRE(write_set(dir, 3, 0, 2) == 0);
    files = list_dir(dir);
    CHECK_MSG(strcmp(files, "model.safetensors other-00001-of-00002.safetensors") == 0, "after 1: %s", files);
    free(files);
    /* 3 shards again, then 2 shards */
    REQUIRE(write_set(dir, 3, 100, 3) == 0);
    files = list_dir(dir);
    CHECK_MSG(strstr(files, "model.safetensors ") == NULL && strstr(files, "model-00003-of-00003"), "after 3 again: %s", files);
    free(files);
    REQUIRE(write_set(dir, 2, 100, 4) == 0);
    files = list_dir(dir);
    CHECK_MSG(strcmp(files, "model-00001-of-00002.safetensors model-00002-of-00002.safetensors "
                            "model.safetensors.index.json other-00001-of-00002.safetensors") == 0, "after 2: %s", files);
    free(files);
    st_set *s = st_open(dir);
    REQUIRE(s);
    CHECK(st_count(s) == 2 && st_find(s, "t0") && st_find(s, "t1") && !st_find(s, "t2"));
    const st_tensor *t = st_find(s, "t1");
    CHECK(t && ((const unsigned char *)t->data)[79] == 4);
    st_close(s);
    free(other);
    free(dir);
}

/* A tensor without data that would roll over to a new shard must not leave an empty shard. */
TEST(st_writer_no_data_does_not_open_shard)
{
    char *dir = fresh_dir("nodatashard");
    st_writer *w = st_writer_open(dir, "m", 100);
    REQUIRE(w);
    unsigned char data[80] = {0};
    int64_t shape[1] = {80};
    CHECK(st_writer_add(w, "a", DT_U8, 1, shape, data) == 0);
    CHECK(st_writer_add(w, "b", DT_U8, 1, shape, NULL) == -1 && msg_has("tensor 'b': no data"));
    CHECK(st_writer_add_f32(w, "c", DT_F16, 1, shape, NULL) == -1 && msg_has("tensor 'c': no data"));
    REQUIRE(st_writer_finish(w) == 0);
    char *files = list_dir(dir);
    CHECK_MSG(strcmp(files, "m.safetensors") == 0, "files: %s", files);
    free(files);
    free(dir);
}

/* A blank line inside the journal (e.g. edited by hand) is skipped, not taken as its end. */
TEST(journal_resume_skips_blank_lines)
{
    char *path = test_tmp_path("blank.journal");
    journal *j = journal_create(path, "fp1");
    REQUIRE(j);
    CHECK(journal_append(j, "{\"layer\":0}") == 0 && journal_append(j, "{\"layer\":1}") == 0);
    journal_close(j);
    size_t len;
    char *text = fs_read_file(path, &len);
    REQUIRE(text);
    char *nl = strchr(text, '\n'); /* header */
    REQUIRE(nl);
    char *nl2 = strchr(nl + 1, '\n'); /* first entry */
    REQUIRE(nl2);
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s\n\n%.*s\n\n%s\n", (int)(nl - text), text, (int)(nl2 - nl - 1), nl + 1, nl2 + 1);
    free(text);
    REQUIRE(fs_write_atomic(path, buf, strlen(buf)) == 0);
    j = journal_resume(path, "fp1");
    CHECK_MSG(j, "resume: %s", err_msg());
    REQUIRE(j);
    CHECK_MSG(journal_count(j) == 2, "entries: %d", journal_count(j));
    CHECK(journal_count(j) == 2 && strstr(journal_entry(j, 1), "\"layer\":1"));
    journal_close(j);
    CHECK(journal_resume(path, "fp2") == NULL && msg_has("fingerprint"));
    REQUIRE(fs_write_atomic(path, "\n\n", 2) == 0);
    CHECK(journal_resume(path, "fp1") == NULL && msg_has("empty journal"));
    free(path);
}

TEST(st_writer_rejects_bad_input)
{
    char *dir = fresh_dir("badinput");
    st_writer *w = st_writer_open(dir, "m", 0);
    REQUIRE(w);
    float x[6] = {0};
    int64_t shape[2] = {2, 3}, neg[2] = {2, -3}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(st_writer_add(w, "a", DT_F32, 2, shape, x) == 0);
    CHECK(st_writer_add(w, "a", DT_F32, 2, shape, x) == -1 && msg_has("tensor 'a' added twice") && msg_has(dir));
    CHECK(st_writer_add(w, "b", (dtype_t)42, 2, shape, x) == -1 && msg_has("tensor 'b': invalid dtype 42"));
    CHECK(st_writer_add(w, "c", DT_F32, 2, neg, x) == -1 && msg_has("tensor 'c': negative dimension -3"));
    CHECK(st_writer_add(w, "d", DT_F32, 9, nine, x) == -1 && msg_has("tensor 'd': 9 dimensions"));
    CHECK(st_writer_add(w, "__metadata__", DT_F32, 2, shape, x) == -1 && msg_has("not a valid tensor name"));
    CHECK(st_writer_add(w, "", DT_F32, 2, shape, x) == -1 && msg_has("non-empty name"));
    CHECK(st_writer_add(w, "e", DT_F32, 2, shape, NULL) == -1 && msg_has("tensor 'e': no data"));
    /* rejected adds leave the writer usable */
    CHECK(st_writer_add(w, "f", DT_F32, 2, shape, x) == 0);
    REQUIRE(st_writer_finish(w) == 0);
    char *p = fs_join(dir, "m.safetensors");
    st_set *s = st_open(p);
    REQUIRE(s);
    CHECK(st_count(s) == 2 && st_find(s, "a") && st_find(s, "f"));
    st_close(s);
    free(p);
    CHECK(st_writer_open(dir, "a/b", 0) == NULL && msg_has("must not contain '/'"));
    CHECK(st_writer_open("/proc/no/such/dir", "m", 0) == NULL && msg_has("/proc/no"));
    free(dir);
}

TEST(st_writer_abort_leaves_nothing)
{
    char *dir = fresh_dir("aborted");
    st_writer *w = st_writer_open(dir, "model", 100);
    REQUIRE(w);
    unsigned char data[80] = {0};
    int64_t shape[1] = {80};
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        CHECK(st_writer_add(w, name, DT_U8, 1, shape, data) == 0);
    }
    char *during = list_dir(dir);
    CHECK_MSG(strstr(during, "safetensors") == NULL || strstr(during, ".model.part") != NULL, "during: %s", during);
    free(during);
    st_writer_abort(w);
    char *after = list_dir(dir);
    CHECK_MSG(after[0] == 0, "left behind: %s", after);
    free(after);
    free(dir);
}

/* Disk full: a file-size limit makes write() fail (EFBIG) like ENOSPC would. Run in a child
 * so the limit cannot touch anything else. */
TEST(st_writer_write_failure_cleans_up)
{
    char *dir = fresh_dir("diskfull");
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        int fails = 0;
        st_writer *w = st_writer_open(dir, "model", 0);
        if (!w) _exit(10);
        static unsigned char data[65536];
        int64_t shape[1] = {65536};
        if (st_writer_add(w, "small", DT_U8, 1, (int64_t[]){16}, data) != 0) fails |= 1;
        if (st_writer_add(w, "huge.weight", DT_U8, 1, shape, data) != -1) fails |= 2;
        if (!msg_has("tensor 'huge.weight'") || !msg_has("File too large")) fails |= 4;
        if (st_writer_add(w, "later", DT_U8, 1, (int64_t[]){16}, data) != -1 || !msg_has("already failed")) fails |= 8;
        if (st_writer_finish(w) != -1 || !msg_has("huge.weight")) fails |= 16;
        if (fails) fprintf(stderr, "child: %s\n", err_msg());
        _exit(fails);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    char *after = list_dir(dir);
    CHECK_MSG(after[0] == 0, "left behind: %s", after);
    free(after);
    free(dir);
}

TEST(st_writers_in_parallel)
{
    char *dir = fresh_dir("parallel");
    int ok[4] = {0};
#pragma omp parallel for num_threads(4)
    for (int k = 0; k < 4; k++) {
        char base[16];
        snprintf(base, sizeof base, "w%d", k);
        st_writer *w = st_writer_open(dir, base, 2000);
        int good = w != NULL;
        for (int i = 0; good && i < 20; i++) {
            unsigned char data[256];
            fill_pattern(data, sizeof data, (unsigned)(k * 100 + i));
            char name[32];
            snprintf(name, sizeof name, "t%d", i);
            good = st_writer_add(w, name, DT_I16, 1, (int64_t[]){128}, data) == 0;
        }
        ok[k] = good && st_writer_finish(w) == 0;
    }
    for (int k = 0; k < 4; k++) {
        CHECK(ok[k]);
        char ip[64];
        snprintf(ip, sizeof ip, "w%d.safetensors.index.json", k);
        char *p = fs_join(dir, ip);
        st_set *s = st_open(p);
        REQUIRE(s);
        CHECK(st_count(s) == 20 && st_file_count(s) == 3);
        unsigned char data[256];
        fill_pattern(data, sizeof data, (unsigned)(k * 100 + 13));
        CHECK(memcmp(st_find(s, "t13")->data, data, 256) == 0);
        st_close(s);
        free(p);
    }
    free(dir);
}

/* ------------------------------------------------------------------ the bundled model */

TEST(st_tiny_model_through_index)
{
    st_set *s = st_open(TINY);
    REQUIRE(s);
    CHECK(st_file_count(s) == 4);
    CHECK(st_count(s) == 144);
    size_t per_file[4] = {0};
    uint64_t bytes = 0, bytes_main = 0;
    int all_bf16 = 1;
    for (size_t i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        per_file[t->file]++;
        bytes += t->nbytes;
        if (t->file < 3) bytes_main += t->nbytes;
        all_bf16 &= t->dtype == DT_BF16;
        if (i) CHECK(t->file >= st_get(s, i - 1)->file); /* file order */
    }
    CHECK(all_bf16);
    CHECK(bytes_main == 18487264); /* the index's metadata.total_size (it leaves out the mtp file) */
    CHECK(bytes == 18487264 + 262656);
    CHECK(strstr(st_file_path(s, 0), "model-00001-of-00003.safetensors") && per_file[0] == 76);
    CHECK(strstr(st_file_path(s, 1), "model-00002-of-00003.safetensors") && per_file[1] == 60);
    CHECK(strstr(st_file_path(s, 2), "model-00003-of-00003.safetensors") && per_file[2] == 6);
    CHECK(strstr(st_file_path(s, 3), "model-mtp.safetensors") && per_file[3] == 2);
    const st_tensor *t = st_find(s, "model.language_model.layers.0.linear_attn.in_proj_qkv.weight");
    REQUIRE(t);
    CHECK(t->dtype == DT_BF16 && t->ndim == 2 && t->shape[0] == 512 && t->shape[1] == 256);
    t = st_find(s, "model.visual.patch_embed.proj.weight");
    CHECK(t && t->ndim == 5 && t->shape[0] == 64 && t->shape[1] == 3 && t->shape[2] == 2 && t->shape[3] == 16 && t->shape[4] == 16);
    t = st_find(s, "mtp.fc.weight");
    CHECK(t && t->file == 3 && t->shape[0] == 256 && t->shape[1] == 512);
    t = st_find(s, "lm_head.weight");
    CHECK(t && t->file == 2 && t->shape[0] == 4096 && t->shape[1] == 256);
    CHECK(st_find(s, "no.such.tensor") == NULL);
    CHECK(strcmp(st_metadata(s, "format"), "pt") == 0);
    /* bf16 → fp32 rows: every value finite, a norm weight is not all zero */
    const st_tensor *info;
    float *emb = st_load_f32(s, "model.language_model.embed_tokens.weight", &info);
    REQUIRE(emb);
    int finite = 1;
    double sum2 = 0;
    for (int64_t i = 0; i < info->numel; i++) {
        finite &= isfinite(emb[i]);
        sum2 += (double)emb[i] * emb[i];
        uint16_t h;
        memcpy(&h, (const unsigned char *)info->data + 2 * i, 2);
        if (emb[i] != bf16_to_f32(h)) finite = 0;
    }
    CHECK(finite && sum2 > 0);
    free(emb);
    st_close(s);

    /* the index file itself, and one shard alone */
    s = st_open(TINY "/model.safetensors.index.json");
    REQUIRE(s);
    CHECK(st_count(s) == 144);
    st_close(s);
    s = st_open(TINY "/model-mtp.safetensors");
    REQUIRE(s);
    CHECK(st_count(s) == 2 && st_file_count(s) == 1);
    st_close(s);
}

TEST(st_shape_str_formats_and_truncates)
{
    char buf[64], small[6];
    int64_t s[3] = {4096, 1, 4};
    CHECK(!strcmp(st_shape_str(s, 3, buf, sizeof buf), "[4096, 1, 4]"));
    CHECK(!strcmp(st_shape_str(s, 0, buf, sizeof buf), "[]"));
    CHECK(!strcmp(st_shape_str(s, 3, small, sizeof small), "[4096")); /* cut, still terminated */
}

TEST(st_open_spec_forms)
{
    st_set *s;
    const st_tensor *t;
    REQUIRE(st_open_spec(TINY "/model-mtp.safetensors:mtp.norm.weight", &s, &t) == 0);
    CHECK(strcmp(t->name, "mtp.norm.weight") == 0 && t->shape[0] == 256);
    st_close(s);
    CHECK(st_open_spec(TINY "/model-mtp.safetensors", &s, &t) == -1 && msg_has("holds 2 tensors"));
    CHECK(st_open_spec(TINY "/model-mtp.safetensors:nope", &s, &t) == -1 && msg_has("tensor 'nope' not found"));
}

/* ------------------------------------------------------------------ corrupt files */

typedef struct {
    const char *name;   /* file name in tmpdir */
    const char *header; /* NULL: raw bytes below */
    size_t data_len;
    const char *phrase; /* the message must contain it */
} corrupt_case;

#define OK_T "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static const corrupt_case corrupt_cases[] = {
    {"bad_json.st", "{\"t\":{\"dtype\":\"F32\",", 0, "header is not valid JSON"},
    {"array_header.st", "[1, 2, 3]   ", 0, "header is not a JSON object"},
    {"string_header.st", "\"tensor\"", 0, "header is not a JSON object"},
    {"trailing.st", "{}  xyz ", 0, "unexpected characters after the header JSON"},
    {"leading_space.st", " {}     ", 0, "header must start with '{'"},
    {"unknown_dtype.st", "{\"t\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "tensor 't': unknown dtype 'F8'"},
    {"dtype_number.st", "{\"t\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 't': 'dtype' is not a string"},
    {"no_dtype.st", "{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 't': missing 'dtype'"},
    {"no_shape.st", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 't': missing 'shape'"},
    {"shape_object.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,8]}}", 8, "tensor 't': 'shape' is not an array"},
    {"negative_shape.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "tensor 't': shape entry 0 is negative"},
    {"fraction_shape.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, "shape entry 0 is not a non-negative integer"},
    {"nine_dims.st", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "tensor 't': 9 dimensions (at most 8)"},
    {"huge_shape.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "shape has too many elements"},
    {"no_offsets.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "tensor 't': missing 'data_offsets'"},
    {"one_offset.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 8, "'data_offsets' must be [begin, end]"},
    {"huge_offset.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1e30,1e30]}}", 8, "non-negative integers"},
    {"reversed_offsets.st", "{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "tensor 't': data_offsets begin 8 is after end 4"},
    {"past_eof.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "tensor 't': data_offsets end 16 is past end of file"},
    {"wrong_size.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "tensor 't': F32 shape needs 12 bytes but data_offsets span 8"},
    {"overlap.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "tensor 'b': data range [4, 12) overlaps tensor 'a'"},
    {"gap.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "tensor 'b': gap of 4 unused bytes"},
    {"trailing_data.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "4 trailing bytes after the last tensor's data"},
    {"dup_names.st", "{" OK_T "," OK_T "}", 8, "tensor 't' appears twice in the header"},
    {"metadata_array.st", "{\"__metadata__\":[1]," OK_T "}", 8, "'__metadata__' is not an object"},
    {"metadata_number.st", "{\"__metadata__\":{\"format\":\"pt\",\"step\":5}," OK_T "}", 8, "'__metadata__' value of 'step' is not a string"},
    {"metadata_twice.st", "{\"__metadata__\":{},\"__metadata__\":{}," OK_T "}", 8, "'__metadata__' appears twice"},
    {"metadata_dupkey.st", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}," OK_T "}", 8, "'__metadata__' key 'k' appears twice"},
    {"entry_number.st", "{\"t\":5}", 0, "tensor 't': entry is not an object"},
    {"empty_name.st", "{\"\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "a tensor has an empty name"},
};

TEST(st_rejects_corrupt_files)
{
    char phrases[64][128];
    int n_phrases = 0;
    for (size_t i = 0; i < sizeof corrupt_cases / sizeof *corrupt_cases; i++) {
        const corrupt_case *c = &corrupt_cases[i];
        char *p = write_hdr(c->name, c->header, c->data_len);
        err_clear();
        st_set *s = st_open(p);
        CHECK_MSG(s == NULL, "%s was accepted", c->name);
        st_close(s);
        CHECK_MSG(msg_has(c->phrase), "%s: got \"%s\", want \"%s\"", c->name, err_msg(), c->phrase);
        CHECK_MSG(msg_has(c->name), "%s: message does not name the file: %s", c->name, err_msg());
        CHECK_MSG(!strchr(err_msg(), '\n'), "%s: message is not one line", c->name);
        snprintf(phrases[n_phrases++], sizeof phrases[0], "%s", c->phrase);
        free(p);
    }
    /* raw byte-level cases */
    struct {
        const char *name, *phrase;
        int kind;
    } raw[] = {
        {"short.st", "file too short for a safetensors header (5 bytes)", 0},
        {"huge_header_len.st", "header length 209715200 exceeds the 100 MB limit", 1},
        {"truncated_header.st", "header length 1000 runs past end of file (100 bytes)", 2},
        {"tiny_header.st", "header of 1 bytes is too short to be a JSON object", 3},
        {"nul_header.st", "header contains a NUL byte at offset 4", 4},
        {"bad_utf8.st", "header is not valid UTF-8 at offset 2", 5},
        {"empty.st", "file too short for a safetensors header (0 bytes)", 6},
    };
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
        char *p = test_tmp_path(raw[i].name);
        unsigned char buf[128] = {0};
        size_t n = 0;
        switch (raw[i].kind) {
        case 0: memcpy(buf, "\x10\0\0\0\0", 5); n = 5; break;
        case 1: buf[2] = 0x80; buf[3] = 0x0c; buf[8] = '{'; n = 64; break; /* 200 MiB */
        case 2: buf[0] = 0xe8; buf[1] = 0x03; memcpy(buf + 8, "{\"t\":", 5); n = 100; break;
        case 3: buf[0] = 1; buf[8] = '{'; n = 9; break;
        case 4: buf[0] = 8; memcpy(buf + 8, "{\"a\"\0:1}", 8); n = 16; break;
        case 5: buf[0] = 8; memcpy(buf + 8, "{\"\xff\":1} ", 8); n = 16; break;
        case 6: n = 0; break;
        }
        fs_write_atomic(p, buf, n);
        err_clear();
        st_set *s = st_open(p);
        CHECK_MSG(s == NULL, "%s was accepted", raw[i].name);
        st_close(s);
        CHECK_MSG(msg_has(raw[i].phrase) && msg_has(raw[i].name), "%s: got \"%s\"", raw[i].name, err_msg());
        snprintf(phrases[n_phrases++], sizeof phrases[0], "%s", raw[i].phrase);
        free(p);
    }
    /* each case has its own message (shared phrases only where the rule is the same) */
    int distinct = 0;
    for (int i = 0; i < n_phrases; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= strcmp(phrases[i], phrases[j]) == 0;
        distinct += !seen;
    }
    CHECK_MSG(distinct >= 30, "only %d distinct messages", distinct);
}

/* Random damage to a valid file (byte changes in the header, truncation, length prefix):
 * every result is either a valid set or a clean one-line error (run under ASan/UBSan by
 * `make test-asan`). */
TEST(st_random_damage_never_crashes)
{
    char *src = test_tmp_path("fuzz_src.safetensors");
    st_writer *w = st_writer_open(src, NULL, 0);
    REQUIRE(w);
    unsigned char data[64];
    fill_pattern(data, sizeof data, 7);
    CHECK(st_writer_add(w, "a.weight", DT_BF16, 2, (int64_t[]){4, 4}, data) == 0);
    CHECK(st_writer_add(w, "b", DT_I64, 1, (int64_t[]){2}, data) == 0);
    CHECK(st_writer_add(w, "c", DT_BOOL, 0, NULL, data) == 0);
    CHECK(st_writer_set_metadata(w, "k", "v") == 0);
    REQUIRE(st_writer_finish(w) == 0);
    size_t len;
    unsigned char *orig = (unsigned char *)fs_read_file(src, &len);
    REQUIRE(orig);
    unsigned char *buf = xmalloc(len);
    char *dst = test_tmp_path("fuzz.safetensors");
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int accepted = 0, rejected = 0, bad_msg = 0;
    static const char alphabet[] = "{}[]\",:0123456789-.e \\uFABx";
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, orig, len);
        size_t n = len;
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int kind = (int)(rng >> 60) % 4, edits = 1 + (int)((rng >> 40) & 3);
        for (int e = 0; e < edits; e++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % len;
            if (kind == 0) buf[at] = (unsigned char)(rng >> 20);                       /* any byte */
            else if (kind == 1) buf[8 + at % (len - 8)] = (unsigned char)alphabet[(rng >> 20) % (sizeof alphabet - 1)];
            else if (kind == 2) n = at;                                                 /* truncate */
            else buf[(rng >> 20) % 8] = (unsigned char)(rng >> 12);                     /* length prefix */
        }
        FILE *f = fopen(dst, "wb"); /* no fsync: 3000 rewrites of a scratch file */
        REQUIRE(f);
        CHECK(fwrite(buf, 1, n, f) == n);
        fclose(f);
        err_clear();
        st_set *s = st_open(dst);
        if (s) {
            accepted++;
            for (size_t i = 0; i < st_count(s); i++) { /* touch every byte of every view */
                const st_tensor *t = st_get(s, i);
                unsigned x = 0;
                for (size_t b = 0; b < t->nbytes; b++) x += ((const unsigned char *)t->data)[b];
                (void)x;
            }
            st_close(s);
        } else {
            rejected++;
            const char *m = err_msg();
            if (!strstr(m, "fuzz.safetensors") || strchr(m, '\n')) bad_msg++;
        }
    }
    CHECK(rejected > 1000 && accepted > 0);
    CHECK_MSG(bad_msg == 0, "%d rejections without a one-line message naming the file", bad_msg);
    free(buf);
    free(orig);
    free(dst);
    free(src);
}

/* Sharded checkpoints whose index and shards disagree. */
TEST(st_rejects_bad_index)
{
    char *dir = fresh_dir("badindex");
    char *a = fs_join(dir, "a.safetensors"), *b = fs_join(dir, "b.safetensors");
    static const char *hdr_a = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    static const char *hdr_b = "{\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    char *pa = write_hdr("badindex/a.safetensors", hdr_a, 8), *pb = write_hdr("badindex/b.safetensors", hdr_b, 8);
    struct {
        const char *index, *phrase;
    } cases[] = {
        {"{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}", NULL},
        {"{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\",\"z\":\"b.safetensors\"}}",
         "tensor 'z' listed in weight_map is missing from b.safetensors"},
        {"{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"c.safetensors\"}}", "shard named in weight_map"},
        {"{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\"}}", "tensor 'y' listed in weight_map is missing from a.safetensors"},
        {"{\"weight_map\":{\"x\":\"a.safetensors\"}}", NULL}, /* only a is loaded: consistent */
        {"{\"weight_map\":{\"x\":\"b.safetensors\",\"y\":\"a.safetensors\"}}", "tensor 'x' is in a.safetensors, index says b.safetensors"},
        {"{\"weight_map\":{\"x\":\"b.safetensors\",\"y\":\"b.safetensors\"}}", "tensor 'x' listed in weight_map is missing from b.safetensors"},
        {"{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\",\"x\":\"a.safetensors\"}}", "tensor 'x' appears twice in weight_map"},
        {"{\"weight_map\":{\"x\":\"../a.safetensors\"}}", "weight_map entry 'x' is not a plain file name"},
        {"{\"weight_map\":{\"x\":3}}", "weight_map entry 'x' is not a plain file name"},
        {"{\"weight_map\":{}}", "'weight_map' is empty"},
        {"{\"metadata\":{}}", "missing 'weight_map'"},
        {"{\"weight_map\":[]}", "'weight_map' is not an object"},
        {"{\"metadata\":5,\"weight_map\":{\"x\":\"a.safetensors\"}}", "'metadata' is not an object"},
        {"[\"a.safetensors\"]", "index is not a JSON object"},
        {"{\"weight_map\":", "index is not valid JSON"},
    };
    char *ipath = fs_join(dir, "model.safetensors.index.json");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fs_write_atomic(ipath, cases[i].index, strlen(cases[i].index));
        err_clear();
        st_set *s = st_open(dir);
        if (!cases[i].phrase) {
            CHECK_MSG(s != NULL, "case %zu rejected: %s", i, err_msg());
        } else {
            CHECK_MSG(s == NULL, "case %zu accepted", i);
            CHECK_MSG(msg_has(cases[i].phrase) && msg_has("model.safetensors.index.json"), "case %zu: got \"%s\"", i, err_msg());
        }
        st_close(s);
    }
    /* a tensor present in a shard but absent from the index */
    char *pc = write_hdr("badindex/c.safetensors",
                         "{\"x2\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"y2\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    const char *idx = "{\"weight_map\":{\"x2\":\"c.safetensors\"}}";
    fs_write_atomic(ipath, idx, strlen(idx));
    CHECK(st_open(dir) == NULL && msg_has("tensor 'y2' of c.safetensors is not listed in weight_map"));
    /* the same tensor in two shards (directory without index) */
    unlink(ipath);
    unlink(pc);
    char *pd = write_hdr("badindex/d.safetensors", hdr_a, 8);
    CHECK(st_open(dir) == NULL && msg_has("tensor 'x' appears in two shards") && msg_has("a.safetensors"));
    unlink(pd);
    CHECK(st_open(TEST_DATA "/no/such/dir") == NULL && msg_has("cannot open"));
    char *empty = fresh_dir("emptydir");
    CHECK(st_open(empty) == NULL && msg_has("no .safetensors files in directory"));
    free(empty);
    free(pc);
    free(pd);
    free(ipath);
    free(pa);
    free(pb);
    free(a);
    free(b);
    free(dir);
}

/* ------------------------------------------------------------------ inspect */

TEST(inspect_tiny_model)
{
    inspect_report r;
    REQUIRE(inspect_open(TINY, NULL, &r) == 0);
    CHECK(r.n_tensors == 144);
    CHECK(r.n_modules == 122);
    /* total_parameters 9243632 of the index + 131328 parameters of the mtp file */
    CHECK(r.dtypes[DT_BF16].count == 144 && r.dtypes[DT_BF16].bytes == 18749920 && r.dtypes[DT_BF16].numel == 9374960);
    CHECK(r.total_bytes == 18749920);
    CHECK(r.n_quantized == 0 && r.qcfg_file == NULL);
    /* modules group their tensors: lm_head has exactly its weight */
    int found = 0;
    for (size_t i = 0; i < r.n_modules; i++)
        if (strcmp(r.modules[i].name, "lm_head") == 0) {
            found = 1;
            CHECK(r.modules[i].count == 1 && r.modules[i].bytes == 4096 * 256 * 2);
            CHECK(strcmp(r.tensors[r.modules[i].first]->name, "lm_head.weight") == 0);
        }
    CHECK(found);
    inspect_free(&r);
}

static const inspect_module *find_module(const inspect_report *r, const char *name)
{
    for (size_t i = 0; i < r->n_modules; i++)
        if (strcmp(r->modules[i].name, name) == 0) return &r->modules[i];
    return NULL;
}

TEST(inspect_gptqmodel_recipe)
{
    inspect_report r;
    REQUIRE(inspect_open(RECIPE, NULL, &r) == 0);
    CHECK(r.n_tensors == 294);
    CHECK(r.dtypes[DT_I32].count == 150 && r.dtypes[DT_F16].count == 50 && r.dtypes[DT_BF16].count == 94);
    /* 6 DeltaNet layers × (in_proj_qkv, in_proj_z, out_proj, gate, up, down) + 2 attention
     * layers × (q, k, v, o, gate, up, down) */
    CHECK(r.n_quantized == 50);
    CHECK(r.modules_by_bits[8] == 8 && r.modules_by_bits[4] == 42);
    CHECK(r.n_mismatch == 0);
    REQUIRE(r.qcfg_file && strstr(r.qcfg_file, "config.json"));
    CHECK(r.q_bits == 4 && r.q_group_size == 128 && r.q_desc_act == 1 && r.q_sym == 1);
    CHECK(r.q_format && strcmp(r.q_format, "gptq") == 0 && r.q_method && strcmp(r.q_method, "gptq") == 0);
    int attn8 = 1, other4 = 1;
    for (size_t i = 0; i < r.n_modules; i++) {
        const inspect_module *m = &r.modules[i];
        if (!m->quantized) continue;
        int attn = strstr(m->name, ".self_attn.") != NULL;
        if (attn && (m->bits != 8 || m->cfg_bits != 8)) attn8 = 0;
        if (!attn && (m->bits != 4 || m->cfg_bits != 4)) other4 = 0;
        CHECK(m->group_size == 128);
    }
    CHECK(attn8 && other4);
    /* effective bits = bits + (16-bit scale + bits-wide zero) per group of 128 + 32-bit g_idx per column */
    const inspect_module *q = find_module(&r, "model.language_model.layers.3.self_attn.q_proj");
    REQUIRE(q);
    CHECK(q->in == 256 && q->out == 512 && q->groups == 2);
    CHECK_NEAR(q->eff_bits, 8 + (16.0 + 8) / 128 + 32.0 / 512, 1e-12);
    const inspect_module *d = find_module(&r, "model.language_model.layers.0.mlp.down_proj");
    REQUIRE(d);
    CHECK(d->in == 768 && d->out == 256 && d->groups == 6 && d->bits == 4);
    CHECK_NEAR(d->eff_bits, 4 + (16.0 + 4) / 128 + 32.0 / 256, 1e-12);
    CHECK(r.eff_bits > 4.2 && r.eff_bits < 8.3);
    const inspect_module *na = find_module(&r, "model.language_model.layers.0.linear_attn.in_proj_a");
    CHECK(na && !na->quantized);
    inspect_free(&r);
}

TEST(inspect_filter_and_json)
{
    inspect_report r;
    REQUIRE(inspect_open(RECIPE, "layers\\.3\\.self_attn\\.[qk]_proj", &r) == 0);
    CHECK(r.n_modules == 2 && r.n_tensors == 8 && r.n_quantized == 2);
    char *text = inspect_json(&r);
    REQUIRE(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    REQUIRE(j);
    CHECK(cJSON_GetObjectItem(j, "tensors")->valuedouble == 8);
    const cJSON *q = cJSON_GetObjectItem(j, "quantized");
    CHECK(cJSON_GetObjectItem(q, "modules")->valuedouble == 2);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(q, "modules_by_bits"), "8")->valuedouble == 2);
    const cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "modules"), 0);
    CHECK(strcmp(cJSON_GetObjectItem(m0, "name")->valuestring, "model.language_model.layers.3.self_attn.q_proj") == 0);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(m0, "gptq"), "bits")->valuedouble == 8);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(m0, "tensors")) == 4);
    CHECK(cJSON_IsObject(cJSON_GetObjectItem(j, "quantization_config")));
    cJSON_Delete(j);
    inspect_free(&r);
    CHECK(inspect_open(RECIPE, "(", &r) == -1 && msg_has("--filter '('") && msg_has("invalid regex"));
    CHECK(inspect_open(TEST_DATA "/nope", NULL, &r) == -1 && msg_has("nope"));
}

/* A checkpoint we write ourselves: 3-bit module, no g_idx, config disagreeing on one module. */
TEST(inspect_synthetic_checkpoint)
{
    char *dir = fresh_dir("synthetic");
    st_writer *w = st_writer_open(dir, "model", 0);
    REQUIRE(w);
    static int32_t zeros[4096];
    static uint16_t scales[4096];
    /* a.proj: 3-bit, in 256, out 64, group 128: qweight [24, 64], qzeros [2, 6], scales [2, 64], g_idx [256] */
    CHECK(st_writer_add(w, "a.proj.qweight", DT_I32, 2, (int64_t[]){24, 64}, zeros) == 0);
    CHECK(st_writer_add(w, "a.proj.qzeros", DT_I32, 2, (int64_t[]){2, 6}, zeros) == 0);
    CHECK(st_writer_add(w, "a.proj.scales", DT_F16, 2, (int64_t[]){2, 64}, scales) == 0);
    CHECK(st_writer_add(w, "a.proj.g_idx", DT_I32, 1, (int64_t[]){256}, zeros) == 0);
    /* b.proj: 2-bit without g_idx: bits from qzeros [1, 64*2/32=4], in from qweight [16, 64] */
    CHECK(st_writer_add(w, "b.proj.qweight", DT_I32, 2, (int64_t[]){16, 64}, zeros) == 0);
    CHECK(st_writer_add(w, "b.proj.qzeros", DT_I32, 2, (int64_t[]){1, 4}, zeros) == 0);
    CHECK(st_writer_add(w, "b.proj.scales", DT_F16, 2, (int64_t[]){1, 64}, scales) == 0);
    CHECK(st_writer_add(w, "norm", DT_F32, 1, (int64_t[]){4}, zeros) == 0);
    REQUIRE(st_writer_finish(w) == 0);
    char *cfg = fs_join(dir, "config.json");
    const char *text = "{\"quantization_config\":{\"bits\":4,\"group_size\":128,\"dynamic\":{\"-:b\\\\..*\":{},\"+:a\\\\.proj\":{\"bits\":3}}}}";
    fs_write_atomic(cfg, text, strlen(text));
    inspect_report r;
    REQUIRE(inspect_open(dir, NULL, &r) == 0);
    const inspect_module *a = find_module(&r, "a.proj"), *b = find_module(&r, "b.proj"), *top = find_module(&r, "");
    REQUIRE(a && b && top);
    CHECK(a->quantized && a->bits == 3 && a->in == 256 && a->out == 64 && a->groups == 2 && a->cfg_bits == 3);
    CHECK(b->quantized && b->bits == 2 && b->in == 256 && b->out == 64 && b->groups == 1 && b->group_size == 256);
    CHECK(b->cfg_bits == 0); /* excluded by "-:" but quantized anyway → a mismatch */
    CHECK(r.n_mismatch == 1);
    CHECK(top->count == 1 && !top->quantized);
    inspect_free(&r);
    /* config.json that is not JSON */
    fs_write_atomic(cfg, "{oops", 5);
    CHECK(inspect_open(dir, NULL, &r) == -1 && msg_has("config.json: not a JSON object"));
    free(cfg);
    free(dir);
}

/* Runs cmd_inspect with stdout and stderr captured to files; returns its exit status.
 * *out gets stdout, *err (if not NULL) stderr. */
static int run_inspect2(char **out, char **err, int argc, char **argv)
{
    char *opath = test_tmp_path("inspect.out"), *epath = test_tmp_path("inspect.err");
    fflush(stdout);
    fflush(stderr);
    int saved1 = dup(1), saved2 = dup(2);
    int fd1 = open(opath, O_WRONLY | O_CREAT | O_TRUNC, 0644), fd2 = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd1, 1);
    dup2(fd2, 2);
    close(fd1);
    close(fd2);
    int rc = cmd_inspect(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved1, 1);
    dup2(saved2, 2);
    close(saved1);
    close(saved2);
    size_t len;
    *out = fs_read_file(opath, &len);
    if (err) *err = fs_read_file(epath, &len);
    free(opath);
    free(epath);
    return rc;
}

static int run_inspect(char **out, int argc, char **argv) { return run_inspect2(out, NULL, argc, argv); }

TEST(inspect_cli)
{
    char *out = NULL;
    CHECK(run_inspect(&out, 2, (char *[]){"inspect", "--help", NULL}) == 0 && strstr(out, "usage: gptq-eora inspect"));
    free(out);
    CHECK(run_inspect(&out, 1, (char *[]){"inspect", NULL}) == 2);
    free(out);
    CHECK(run_inspect(&out, 3, (char *[]){"inspect", "--bogus", RECIPE, NULL}) == 2);
    free(out);
    CHECK(run_inspect(&out, 3, (char *[]){"inspect", RECIPE, TINY, NULL}) == 2);
    free(out);
    char *err = NULL;
    CHECK(run_inspect2(&out, &err, 2, (char *[]){"inspect", TEST_DATA "/missing", NULL}) == 1);
    CHECK_MSG(err && strcmp(err, "gptq-eora: error: " TEST_DATA "/missing: cannot open: No such file or directory\n") == 0,
              "stderr: %s", err ? err : "(none)");
    free(out);
    free(err);
    CHECK(run_inspect2(&out, &err, 3, (char *[]){"inspect", "--bogus", RECIPE, NULL}) == 2);
    CHECK(err && strstr(err, "unknown option '--bogus'"));
    free(out);
    free(err);
    REQUIRE(run_inspect(&out, 2, (char *[]){"inspect", RECIPE, NULL}) == 0);
    REQUIRE(out);
    CHECK_MSG(strstr(out, "GPTQ modules: 50 (8-bit: 8, 4-bit: 42)"), "no summary in:\n%.400s", out);
    CHECK(strstr(out, "bits vs quantization_config: consistent (0 mismatching modules)"));
    CHECK(strstr(out, "model.language_model.layers.3.self_attn.q_proj  (4 tensors"));
    CHECK(strstr(out, "GPTQ 8-bit, in 256, out 512, 2 groups of 128, 8.250 bits/weight"));
    CHECK(strstr(out, "totals by dtype:"));
    CHECK(strstr(out, "  I32      150 tensors"));
    free(out);
    REQUIRE(run_inspect(&out, 4, (char *[]){"inspect", "--json", "--filter=lm_head", TINY, NULL}) == 0);
    cJSON *j = cJSON_Parse(out);
    CHECK(j && cJSON_GetObjectItem(j, "tensors")->valuedouble == 1);
    CHECK(j && cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dtypes"), "BF16"), "bytes")->valuedouble == 4096 * 256 * 2);
    cJSON_Delete(j);
    free(out);
}

/* ------------------------------------------------------------------ sizes past 32 bits */

/* A 27B shard holds more than 4 GiB: a tensor that starts at byte 2^32 of the data area is found
 * at the right place, its bytes are read from there, and sizes / errors keep all 64 bits. */
TEST(st_offsets_past_4gib)
{
    const uint64_t big = 1ull << 32;
    char json[512];
    snprintf(json, sizeof json,
             "{\"big\":{\"dtype\":\"F32\",\"shape\":[%llu],\"data_offsets\":[0,%llu]},"
             "\"tail\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%llu,%llu]}}",
             (unsigned long long)(big / 4), (unsigned long long)big, (unsigned long long)big,
             (unsigned long long)(big + 8));
    const float tail[2] = {1.5f, -2.0f};
    char *p = test_tmp_path("past4g.safetensors");
    REQUIRE(test_write_sparse_st(p, json, big + 8, tail, sizeof tail) == 0);
    st_set *s = st_open(p);
    CHECK_MSG(s != NULL, "%s", err_msg());
    if (s) {
        const st_tensor *b = st_find(s, "big"), *t = st_find(s, "tail");
        REQUIRE(b && t && st_get(s, 0) == b && st_get(s, 1) == t);
        CHECK(b->numel == (int64_t)(big / 4) && b->nbytes == big);
        CHECK((uint64_t)((const char *)t->data - (const char *)b->data) == big);
        float got[2] = {0, 0};
        CHECK(st_to_f32(t, got) == 0 && got[0] == 1.5f && got[1] == -2.0f);
        st_close(s);
        inspect_report r;
        REQUIRE(inspect_open(p, NULL, &r) == 0);
        CHECK(r.total_bytes == big + 8 && r.dtypes[DT_F32].numel == big / 4 + 2 && r.dtypes[DT_F32].bytes == big + 8);
        inspect_free(&r);
    }
    /* a range ending 4 bytes past the end is refused with the 64-bit numbers in the message */
    snprintf(json, sizeof json,
             "{\"big\":{\"dtype\":\"F32\",\"shape\":[%llu],\"data_offsets\":[0,%llu]},"
             "\"tail\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[%llu,%llu]}}",
             (unsigned long long)(big / 4), (unsigned long long)big, (unsigned long long)big,
             (unsigned long long)(big + 12));
    REQUIRE(test_write_sparse_st(p, json, big + 8, tail, sizeof tail) == 0);
    err_clear();
    CHECK(st_open(p) == NULL);
    CHECK_MSG(msg_has("'tail'") && msg_has("4294967308") && msg_has("4294967304 bytes"), "%s", err_msg());
    unlink(p);
    free(p);
}

/* Spill files of the 27B recipe are hundreds of GB: rows whose byte offset is past 4 GiB (f32:
 * past 8 GiB) are written and read back at the right place, and a reopened file checks its
 * 64-bit size. Sparse: only the rows written take disk space. */
TEST(spill_offsets_past_4gib)
{
    enum { COLS = 1024 };
    const int64_t rows = ((int64_t)1 << 21) + 3; /* f32: 8 GiB + 12 KiB, bf16: 4 GiB + 6 KiB */
    static float x[2 * COLS], y[3 * COLS];
    for (int i = 0; i < 2 * COLS; i++) x[i] = (float)(i % 97) - 48.25f; /* exact in bf16 too */
    const dtype_t dts[2] = {DT_F32, DT_BF16};
    for (int k = 0; k < 2; k++) {
        char *p = test_tmp_path(k ? "past4g.bf16.spill" : "past4g.f32.spill");
        act_store *s = act_store_create(p, rows, COLS, dts[k]);
        CHECK_MSG(s != NULL, "%s", err_msg());
        if (!s) {
            free(p);
            continue;
        }
        CHECK(act_store_bytes(s) == (uint64_t)rows * COLS * dtype_size(dts[k]));
        CHECK(act_store_write(s, rows - 2, 2, x) == 0);
        act_store_close(s);
        s = act_store_open(p, rows, COLS, dts[k]); /* the size check is 64-bit too */
        CHECK_MSG(s != NULL, "%s", err_msg());
        if (s) {
            for (int i = 0; i < 3 * COLS; i++) y[i] = 7.0f;
            CHECK(act_store_read(s, rows - 3, 3, y) == 0);
            int same = 1;
            for (int i = 0; i < COLS; i++) same &= y[i] == 0.0f; /* never written */
            for (int i = 0; i < 2 * COLS; i++) same &= y[COLS + i] == x[i];
            CHECK_MSG(same, "%s store: rows past 4 GiB read back wrong", dtype_name(dts[k]));
            CHECK(act_store_read(s, rows - 1, 2, y) != 0); /* outside */
            act_store_close_unlink(s);
        } else {
            unlink(p);
        }
        free(p);
    }
}
