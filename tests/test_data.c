/* calib/data: documents from jsonl/text, token windows for calibration (seeded, exact counts,
 * no repeats, document starts, weights, pre-tokenized ids) and the evaluation protocol. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/data.h"
#include "calib/tokenizer.h"
#include "io/err.h"
#include "io/safetensors.h"
#include "tests/testlib.h"

#define CALIB TEST_DATA "/text/calib.jsonl"
#define EVAL TEST_DATA "/text/eval.jsonl"
#define EOS 4093 /* <|endoftext|> of the tiny tokenizer */

static tokenizer *tk_;
static tokenizer *tk(void)
{
    if (!tk_) tk_ = tokenizer_load(TEST_DATA "/tiny-qwen35/tokenizer.json");
    return tk_;
}

static data_source jsonl(const char *path, double w)
{
    return (data_source){.path = (char *)path, .format = "jsonl", .field = "text", .weight = w};
}

/* The joined stream built independently: every document's ids followed by EOS. */
typedef struct {
    int32_t *tok;
    size_t len;
    size_t *doc;
    size_t n_doc;
} ref_stream;

static int ref_build(const char *path, ref_stream *r)
{
    data_source s = jsonl(path, 1);
    char **docs;
    size_t *lens, n;
    memset(r, 0, sizeof *r);
    if (data_read_documents(&s, &docs, &lens, &n)) return -1;
    size_t cap = 1 << 20;
    r->tok = malloc(cap * sizeof *r->tok);
    r->doc = malloc((n + 1) * sizeof *r->doc);
    for (size_t i = 0; i < n; i++) {
        int32_t *ids;
        size_t k;
        if (tokenizer_encode(tk(), docs[i], lens[i], &ids, &k)) return -1;
        while (r->len + k + 1 > cap) r->tok = realloc(r->tok, (cap *= 2) * sizeof *r->tok);
        r->doc[r->n_doc++] = r->len;
        memcpy(r->tok + r->len, ids, k * sizeof *ids);
        r->len += k;
        r->tok[r->len++] = EOS;
        free(ids);
        free(docs[i]);
    }
    free(docs);
    free(lens);
    return 0;
}

static void ref_free(ref_stream *r)
{
    free(r->tok);
    free(r->doc);
}

/* Offset of window w in the stream at or after `from`, or -1. */
static long long find_window(const ref_stream *r, const int32_t *w, int T, size_t from)
{
    for (size_t p = from; p + (size_t)T <= r->len; p++)
        if (r->tok[p] == w[0] && !memcmp(r->tok + p, w, (size_t)T * sizeof *w)) return (long long)p;
    return -1;
}

static int is_doc_start(const ref_stream *r, size_t p)
{
    size_t lo = 0, hi = r->n_doc;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->doc[mid] < p) lo = mid + 1;
        else hi = mid;
    }
    return lo < r->n_doc && r->doc[lo] == p;
}

TEST(data_read_documents_jsonl_and_text)
{
    data_source s = jsonl(CALIB, 1);
    char **docs;
    size_t *lens, n;
    REQUIRE(data_read_documents(&s, &docs, &lens, &n) == 0);
    CHECK(n == 318); /* GOLDEN.md: 318 documents */
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(strlen(docs[i]) == lens[i] && lens[i] > 0);
        chars += lens[i];
        free(docs[i]);
    }
    CHECK(chars > 2000000);
    free(docs);
    free(lens);
    s = jsonl(EVAL, 1);
    REQUIRE(data_read_documents(&s, &docs, &lens, &n) == 0);
    CHECK(n == 147);
    for (size_t i = 0; i < n; i++) free(docs[i]);
    free(docs);
    free(lens);

    char path[4096];
    snprintf(path, sizeof path, "%s/docs.jsonl", test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    const char *content = "{\"body\": \"first\", \"text\": 1}\n\n  \n{\"body\": \"sec\\nond\"}\n";
    fputs(content, f);
    fclose(f);
    data_source b = {.path = path, .format = "jsonl", .field = "body", .weight = 1};
    REQUIRE(data_read_documents(&b, &docs, &lens, &n) == 0);
    CHECK(n == 2 && !strcmp(docs[0], "first") && !strcmp(docs[1], "sec\nond"));
    for (size_t i = 0; i < n; i++) free(docs[i]);
    free(docs);
    free(lens);
    /* the default field "text" is a number on line 1: error naming file and line */
    data_source t = {.path = path, .format = "jsonl", .weight = 1};
    CHECK(data_read_documents(&t, &docs, &lens, &n) == -1);
    CHECK(strstr(err_msg(), "docs.jsonl:1") && strstr(err_msg(), "\"text\""));
    /* a text file is one document, bytes as they are */
    data_source txt = {.path = path, .format = "text", .weight = 1};
    REQUIRE(data_read_documents(&txt, &docs, &lens, &n) == 0);
    CHECK(n == 1 && lens[0] == strlen(content) && !memcmp(docs[0], content, lens[0]));
    free(docs[0]);
    free(docs);
    free(lens);
    data_source missing = jsonl(TEST_DATA "/text/none.jsonl", 1);
    CHECK(data_read_documents(&missing, &docs, &lens, &n) == -1);
    CHECK(strstr(err_msg(), "none.jsonl") != NULL);
}

static int windows_equal(const token_windows *a, const token_windows *b)
{
    return a->n == b->n && a->T == b->T && !memcmp(a->ids, b->ids, (size_t)a->n * a->T * sizeof *a->ids);
}

TEST(data_concat_windows_seeded_exact_no_repeats)
{
    REQUIRE(tk());
    ref_stream r;
    REQUIRE(ref_build(CALIB, &r) == 0);
    data_source s = jsonl(CALIB, 1);
    const int n = 64, T = 512;
    sample_opts o = {.seed = 1234};
    token_windows a, b, c;
    REQUIRE(calib_sample(tk(), EOS, &s, 1, n, T, &o, &a) == 0);
    REQUIRE(calib_sample(tk(), EOS, &s, 1, n, T, &o, &b) == 0);
    o.seed = 1235;
    REQUIRE(calib_sample(tk(), EOS, &s, 1, n, T, &o, &c) == 0);
    CHECK(a.n == n && a.T == T);
    CHECK(a.tokens_available == (int64_t)r.len);
    CHECK(windows_equal(&a, &b));  /* same seed, same windows */
    CHECK(!windows_equal(&a, &c)); /* another seed, other windows */
    /* every window is a slice of the stream, in order, none overlapping */
    size_t from = 0;
    int found = 0;
    for (int i = 0; i < n; i++) {
        long long p = find_window(&r, a.ids + (size_t)i * T, T, from);
        if (p < 0) break;
        found++;
        from = (size_t)p + T;
    }
    CHECK_MSG(found == n, "%d of %d windows found in order without overlap", found, n);
    printf("  %d windows x %d from %zu tokens\n", n, T, r.len);
    token_windows_free(&a);
    token_windows_free(&b);
    token_windows_free(&c);
    ref_free(&r);
}

TEST(data_document_windows_start_at_documents)
{
    REQUIRE(tk());
    ref_stream r;
    REQUIRE(ref_build(CALIB, &r) == 0);
    data_source s = jsonl(CALIB, 1);
    const int n = 100, T = 256;
    sample_opts o = {.seed = 7, .document_windows = 1};
    token_windows a, b;
    REQUIRE(calib_sample(tk(), EOS, &s, 1, n, T, &o, &a) == 0);
    o.seed = 8;
    REQUIRE(calib_sample(tk(), EOS, &s, 1, n, T, &o, &b) == 0);
    CHECK(!windows_equal(&a, &b));
    size_t from = 0;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        long long p = find_window(&r, a.ids + (size_t)i * T, T, from);
        while (p >= 0 && !is_doc_start(&r, (size_t)p)) p = find_window(&r, a.ids + (size_t)i * T, T, (size_t)p + 1);
        if (p < 0) break;
        ok++;
        from = (size_t)p + T;
    }
    CHECK_MSG(ok == n, "%d of %d windows start at a document, in order, without overlap", ok, n);
    /* 318 documents: more windows than documents cannot start at distinct documents */
    token_windows c;
    CHECK(calib_sample(tk(), EOS, &s, 1, 400, 16, &o, &c) == -1);
    CHECK(strstr(err_msg(), "calib.jsonl") && strstr(err_msg(), "at most"));
    o.allow_repeat = 1;
    REQUIRE(calib_sample(tk(), EOS, &s, 1, 400, 16, &o, &c) == 0);
    CHECK(c.n == 400);
    token_windows_free(&a);
    token_windows_free(&b);
    token_windows_free(&c);
    ref_free(&r);
}

TEST(data_too_few_tokens)
{
    REQUIRE(tk());
    data_source s = jsonl(EVAL, 1);
    sample_opts o = {.seed = 0};
    token_windows w;
    /* eval.jsonl has well under 10M tokens */
    CHECK(calib_sample(tk(), EOS, &s, 1, 10000, 1000, &o, &w) == -1);
    CHECK(strstr(err_msg(), "eval.jsonl") && strstr(err_msg(), "10000000") && strstr(err_msg(), "allow_repeat"));
    CHECK(w.ids == NULL && w.n == 0);
    o.allow_repeat = 1; /* with repeats allowed the windows are drawn anyway */
    REQUIRE(calib_sample(tk(), EOS, &s, 1, 1000, 1000, &o, &w) == 0);
    CHECK(w.n == 1000 && w.tokens_available < 1000000);
    token_windows_free(&w);
    CHECK(calib_sample(tk(), EOS, &s, 1, 0, 16, &o, &w) == -1);
    data_source zero = jsonl(EVAL, 0);
    CHECK(calib_sample(tk(), EOS, &zero, 1, 4, 16, &o, &w) == -1);
    data_source bad = {.path = EVAL, .format = "csv", .weight = 1};
    CHECK(calib_sample(tk(), EOS, &bad, 1, 4, 16, &o, &w) == -1);
    CHECK(strstr(err_msg(), "csv") != NULL);
}

TEST(data_weights_split_windows)
{
    REQUIRE(tk());
    ref_stream rc, re;
    REQUIRE(ref_build(CALIB, &rc) == 0);
    REQUIRE(ref_build(EVAL, &re) == 0);
    data_source s[2] = {jsonl(CALIB, 3), jsonl(EVAL, 1)};
    sample_opts o = {.seed = 99};
    token_windows w;
    const int T = 128;
    REQUIRE(calib_sample(tk(), EOS, s, 2, 10, T, &o, &w) == 0);
    CHECK(w.n == 10);
    CHECK(w.tokens_available == (int64_t)(rc.len + re.len));
    int in_calib = 0, in_eval = 0;
    for (int i = 0; i < 10; i++) {
        const int32_t *x = w.ids + (size_t)i * T;
        if (i < 8) in_calib += find_window(&rc, x, T, 0) >= 0; /* 10 * 3/4 = 7.5 → 8 (largest remainder) */
        else in_eval += find_window(&re, x, T, 0) >= 0;
    }
    CHECK(in_calib == 8 && in_eval == 2);
    token_windows_free(&w);
    ref_free(&rc);
    ref_free(&re);
}

static const char *write_ids(const char *name, dtype_t dt, int ndim, const int64_t *shape, int n_extra)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    st_writer *wr = st_writer_open(path, NULL, 0);
    if (!wr) return NULL;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    void *buf = malloc((size_t)numel * 8);
    for (int64_t i = 0; i < numel; i++) {
        if (dt == DT_I64) ((int64_t *)buf)[i] = 1000 + i;
        else ((int32_t *)buf)[i] = (int32_t)(1000 + i);
    }
    int rc = st_writer_add(wr, "input_ids", dt, ndim, shape, buf);
    for (int k = 0; k < n_extra && !rc; k++) rc = st_writer_add(wr, k ? "extra1" : "extra0", dt, ndim, shape, buf);
    free(buf);
    if (rc) {
        st_writer_abort(wr);
        return NULL;
    }
    return st_writer_finish(wr) ? NULL : path;
}

TEST(data_pretokenized_ids)
{
    int64_t shape[2] = {4, 16};
    const char *p = write_ids("ids64.safetensors", DT_I64, 2, shape, 1);
    REQUIRE(p);
    data_source s = {.path = (char *)p, .format = "ids", .weight = 1};
    sample_opts o = {.seed = 5, .document_windows = 1};
    token_windows w;
    /* rows are documents: 4 document windows of 16 are exactly the 4 rows, in order */
    REQUIRE(calib_sample(NULL, -1, &s, 1, 4, 16, &o, &w) == 0);
    CHECK(w.n == 4 && w.tokens_available == 64);
    int ok = 1;
    for (int i = 0; i < 64; i++) ok &= w.ids[i] == 1000 + i;
    CHECK(ok);
    token_windows_free(&w);
    CHECK(calib_sample(NULL, -1, &s, 1, 5, 16, &o, &w) == -1); /* 5 x 16 > 64 */
    /* flat int32 stream, concat windows; the format is inferred from the extension */
    int64_t flat[1] = {100};
    p = write_ids("flat32.safetensors", DT_I32, 1, flat, 0);
    REQUIRE(p);
    data_source f = {.path = (char *)p, .weight = 1};
    o.document_windows = 0;
    REQUIRE(calib_sample(NULL, -1, &f, 1, 3, 30, &o, &w) == 0);
    CHECK(w.n == 3 && w.tokens_available == 100);
    int prev_end = 0;
    ok = 1;
    for (int i = 0; i < 3; i++) { /* each window is consecutive ids, windows in order, disjoint */
        int start = w.ids[i * 30] - 1000;
        ok &= start >= prev_end;
        for (int j = 0; j < 30; j++) ok &= w.ids[i * 30 + j] == 1000 + start + j;
        prev_end = start + 30;
    }
    CHECK(ok);
    token_windows_free(&w);
    /* FILE:TENSOR names a tensor explicitly */
    char spec[4200];
    snprintf(spec, sizeof spec, "%s/ids64.safetensors:extra0", test_tmpdir());
    data_source named = {.path = spec, .format = "ids", .weight = 1};
    REQUIRE(eval_windows(NULL, -1, &named, 0, 16, &w) == 0);
    CHECK(w.n == 4 && w.ids[17] == 1017);
    token_windows_free(&w);
}

TEST(data_eval_windows_protocol)
{
    REQUIRE(tk());
    ref_stream r;
    REQUIRE(ref_build(EVAL, &r) == 0);
    data_source s = jsonl(EVAL, 1);
    token_windows w;
    REQUIRE(eval_windows(tk(), EOS, &s, 8, 512, &w) == 0);
    CHECK(w.n == 8 && w.T == 512 && w.tokens_available == (int64_t)r.len);
    CHECK(!memcmp(w.ids, r.tok, 8 * 512 * sizeof *w.ids)); /* consecutive from the start */
    token_windows_free(&w);
    REQUIRE(eval_windows(tk(), EOS, &s, 1000000, 512, &w) == 0); /* fewer when the text runs out */
    CHECK(w.n == (int)(r.len / 512));
    CHECK(!memcmp(w.ids, r.tok, (size_t)w.n * 512 * sizeof *w.ids));
    printf("  eval.jsonl: %zu tokens, %d windows of 512\n", r.len, w.n);
    token_windows_free(&w);
    ref_free(&r);
}

__attribute__((destructor)) static void free_tk(void) { tokenizer_free(tk_); }
