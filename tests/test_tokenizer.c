/* calib/tokenizer: ids identical to Hugging Face tokenizers (golden files), decode round trip,
 * special tokens, split behaviours and added-token options on small synthetic tokenizers,
 * malformed tokenizer.json files, thread safety. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "calib/tokenizer.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "tests/testlib.h"
#include "tests/testutil.h"

#define TINY_TOK TEST_DATA "/tiny-qwen35/tokenizer.json"
#define QWEN_TOK TEST_DATA "/qwen3-tokenizer/tokenizer.json.gz"

static tokenizer *tiny_tk, *qwen_tk; /* loaded once: the Qwen vocabulary takes a moment */

static tokenizer *get_tk(int qwen)
{
    tokenizer **t = qwen ? &qwen_tk : &tiny_tk;
    if (!*t) {
        *t = tokenizer_load(qwen ? QWEN_TOK : TINY_TOK);
        if (!*t) fprintf(stderr, "load: %s\n", err_msg());
    }
    return *t;
}

static int32_t *encode(const tokenizer *tk, const char *s, size_t *n)
{
    int32_t *ids;
    if (tokenizer_encode(tk, s, strlen(s), &ids, n)) {
        fprintf(stderr, "encode: %s\n", err_msg());
        return NULL;
    }
    return ids;
}

static void print_ids(const char *what, const int32_t *v, size_t n)
{
    fprintf(stderr, "  %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Every case of a golden file: our ids must equal tokenizers' ids exactly. */
static void check_golden(int qwen, const char *golden)
{
    tokenizer *tk = get_tk(qwen);
    REQUIRE(tk);
    size_t len;
    char *text = fs_read_file(golden, &len);
    REQUIRE(text);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    REQUIRE(cJSON_IsArray(root));
    int cases = 0, same = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        const cJSON *t = cJSON_GetObjectItem(c, "text"), *ids = cJSON_GetObjectItem(c, "ids");
        REQUIRE(cJSON_IsString(t) && cJSON_IsArray(ids));
        cases++;
        size_t n;
        int32_t *got = encode(tk, t->valuestring, &n);
        CHECK(got);
        if (!got) continue;
        size_t want_n = (size_t)cJSON_GetArraySize(ids);
        int ok = n == want_n;
        int32_t *want = malloc((want_n + 1) * sizeof *want);
        size_t k = 0;
        for (const cJSON *x = ids->child; x; x = x->next) want[k++] = x->valueint;
        for (size_t i = 0; ok && i < n; i++) ok = got[i] == want[i];
        if (ok) same++;
        else {
            fprintf(stderr, "  golden case %d %.40s...\n", cases - 1, t->valuestring);
            print_ids("want", want, want_n);
            print_ids("got ", got, n);
        }
        CHECK_MSG(ok, "%s case %d: ids differ", golden, cases - 1);
        free(want);
        free(got);
    }
    printf("  %s: %d/%d cases identical\n", golden, same, cases);
    CHECK(cases >= 20);
    cJSON_Delete(root);
}

TEST(tokenizer_golden_tiny) { check_golden(0, TEST_DATA "/golden/tokenizer_tiny.json"); }
TEST(tokenizer_golden_qwen3) { check_golden(1, TEST_DATA "/golden/tokenizer_qwen3.json"); }

/* decode(encode(x)) == NFC(x) on the golden strings and on real calibration documents. */
static int roundtrip(const tokenizer *tk, const char *s, size_t len)
{
    int32_t *ids;
    size_t n, dl;
    if (tokenizer_encode(tk, s, len, &ids, &n)) return 0;
    char *dec = tokenizer_decode(tk, ids, n, &dl);
    free(ids);
    if (!dec) return 0;
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t nl = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &nfc,
                                       UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    int ok = nl >= 0 && (size_t)nl == dl && !memcmp(nfc, dec, dl);
    free(nfc);
    free(dec);
    return ok;
}

TEST(tokenizer_decode_roundtrip_is_nfc)
{
    const char *extra[] = {"e\xCC\x81 decomposed, \xED\x9E\xA3 hangul, A\xCC\x8A ring", "\xF0\x9F\xA4\x96\xF0\x9F\x9A\x80",
                           "tabs\t\tand\r\n\r\nCRLF", "<|im_start|>system\n<|im_end|>", "\x01\x02 control \x7F"};
    for (int q = 0; q < 2; q++) {
        tokenizer *tk = get_tk(q);
        REQUIRE(tk);
        int n = 0;
        for (size_t i = 0; i < sizeof extra / sizeof *extra; i++, n++)
            CHECK_MSG(roundtrip(tk, extra[i], strlen(extra[i])), "round trip of extra[%zu]", i);
        size_t len;
        char *text = fs_read_file(TEST_DATA "/text/calib.jsonl", &len);
        REQUIRE(text);
        char *line = text;
        for (int d = 0; d < 40 && *line; d++) { /* the first 40 documents */
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            cJSON *o = cJSON_Parse(line);
            const cJSON *t = cJSON_GetObjectItem(o, "text");
            if (cJSON_IsString(t)) {
                CHECK_MSG(roundtrip(tk, t->valuestring, strlen(t->valuestring)), "round trip of calib doc %d", d);
                n++;
            }
            cJSON_Delete(o);
            line = nl ? nl + 1 : line + strlen(line);
        }
        free(text);
        printf("  %s: %d round trips\n", q ? "qwen3" : "tiny", n);
    }
}

TEST(tokenizer_special_tokens_single_ids)
{
    tokenizer *tk = get_tk(1);
    REQUIRE(tk);
    CHECK(tokenizer_token_to_id(tk, "<|im_start|>") == 151644);
    CHECK(tokenizer_token_to_id(tk, "<|endoftext|>") == 151643);
    CHECK(tokenizer_token_to_id(tk, "<tool_call>") == 151657); /* non-special added token */
    CHECK(tokenizer_token_to_id(tk, "hello") == 14990);
    CHECK(tokenizer_token_to_id(tk, "no such token at all") == -1);
    CHECK(tokenizer_vocab_size(tk) == 151669);
    size_t n;
    int32_t *ids = encode(tk, "x<|im_start|><|im_end|><tool_call>y", &n);
    REQUIRE(ids);
    CHECK(n == 5 && ids[1] == 151644 && ids[2] == 151645 && ids[3] == 151657);
    free(ids);
    /* a broken special token is ordinary text */
    ids = encode(tk, "<|im_start", &n);
    REQUIRE(ids);
    CHECK(n > 1);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] < 151643);
    free(ids);
    CHECK(tokenizer_eos_id(tk, NULL) == 151643);
    tokenizer *tiny = get_tk(0);
    REQUIRE(tiny);
    CHECK(tokenizer_eos_id(tiny, TEST_DATA "/tiny-qwen35") == 4093);
    CHECK(tokenizer_vocab_size(tiny) == 4096);
}

TEST(tokenizer_rejects_invalid_utf8)
{
    tokenizer *tk = get_tk(0);
    REQUIRE(tk);
    int32_t *ids;
    size_t n;
    const char bad[] = "ok \xC3\x28 bad";
    CHECK(tokenizer_encode(tk, bad, sizeof bad - 1, &ids, &n) == -1);
    CHECK(strstr(err_msg(), "UTF-8") && strstr(err_msg(), "byte 3"));
    const char overlong[] = "\xC0\xAF";
    CHECK(tokenizer_encode(tk, overlong, 2, &ids, &n) == -1);
    const char truncated[] = "abc\xE4\xB8";
    CHECK(tokenizer_encode(tk, truncated, 5, &ids, &n) == -1);
    /* NUL bytes are ordinary characters */
    CHECK(tokenizer_encode(tk, "a\0b", 3, &ids, &n) == 0);
    CHECK(n == 3);
    free(ids);
}

TEST(tokenizer_decode_lossy_and_errors)
{
    tokenizer *tk = get_tk(1);
    REQUIRE(tk);
    /* "é" is 2 bytes, one byte token each in byte-level space: Ã (0xC3) and © (0xA9) */
    int32_t half[1] = {tokenizer_token_to_id(tk, "\xC3\x83")};
    REQUIRE(half[0] >= 0);
    size_t len;
    char *s = tokenizer_decode(tk, half, 1, &len);
    REQUIRE(s);
    CHECK(len == 3 && !memcmp(s, "\xEF\xBF\xBD", 3));
    free(s);
    int32_t bad[2] = {9707, 99999999};
    CHECK(tokenizer_decode(tk, bad, 2, &len) == NULL);
    CHECK(strstr(err_msg(), "99999999") != NULL);
}

/* ---- synthetic tokenizers: behaviours the golden files do not exercise ---- */

/* Character vocabulary a..z, ' ', '-', '.', plus merges given by the caller. */
static char *char_tokenizer(const char *extra_vocab, const char *merges, const char *pre, const char *added,
                            const char *model_extra)
{
    static char buf[16384];
    char vocab[4096] = "";
    int id = 0, o = 0;
    for (char c = 'a'; c <= 'z'; c++) o += snprintf(vocab + o, sizeof vocab - (size_t)o, "\"%c\": %d, ", c, id++);
    o += snprintf(vocab + o, sizeof vocab - (size_t)o, "\" \": %d, \"-\": %d, \".\": %d%s%s", id, id + 1, id + 2,
                  extra_vocab[0] ? ", " : "", extra_vocab);
    snprintf(buf, sizeof buf,
             "{\"version\": \"1.0\", \"normalizer\": null, \"pre_tokenizer\": %s, \"added_tokens\": [%s],"
             " \"decoder\": null, \"model\": {\"type\": \"BPE\", \"vocab\": {%s}, \"merges\": [%s]%s}}",
             pre, added, vocab, merges, model_extra);
    return buf;
}

static int ids_equal(const tokenizer *tk, const char *text, const int32_t *want, size_t want_n)
{
    size_t n;
    int32_t *got = encode(tk, text, &n);
    if (!got) return 0;
    int ok = n == want_n && !memcmp(got, want, n * sizeof *got);
    if (!ok) {
        fprintf(stderr, "  text \"%s\"\n", text);
        print_ids("want", want, want_n);
        print_ids("got ", got, n);
    }
    free(got);
    return ok;
}

#define EXPECT_IDS(tk, text, ...)                                                              \
    do {                                                                                       \
        const int32_t want_[] = {__VA_ARGS__};                                                 \
        CHECK(ids_equal(tk, text, want_, sizeof want_ / sizeof *want_));                       \
    } while (0)

/* Split behaviours on "ab-cd--e" with the delimiter '-' (a=0 b=1 ... ' '=26 '-'=27 '.'=28);
 * merges a+b, b+-, -+c, -+- make the grouping visible in the ids. */
TEST(tokenizer_split_behaviours)
{
    const char *vocab = "\"ab\": 29, \"b-\": 30, \"-c\": 31, \"--\": 32, \"d-\": 33, \"-e\": 34, \"d--\": 35, \"--e\": 36";
    const char *merges = "[\"a\", \"b\"], [\"b\", \"-\"], [\"-\", \"c\"], [\"-\", \"-\"], [\"d\", \"-\"], [\"-\", \"e\"],"
                         " [\"d\", \"--\"], [\"--\", \"e\"]";
    struct {
        const char *behavior;
        int invert;
        int32_t want[8];
        size_t n;
    } cases[] = {
        {"Removed", 0, {29, 2, 3, 4}, 4},           /* ab cd e */
        {"Isolated", 0, {29, 27, 2, 3, 27, 27, 4}, 7}, /* ab - cd - - e (each match alone) */
        {"MergedWithPrevious", 0, {29, 27, 2, 33, 27, 4}, 6}, /* ab- cd- - e */
        {"MergedWithNext", 0, {29, 31, 3, 27, 34}, 5},        /* ab -cd - -e */
        {"Contiguous", 0, {29, 27, 2, 3, 32, 4}, 6},          /* ab - cd -- e */
        {"Removed", 1, {27, 27, 27}, 3},                      /* inverted: the letters are removed */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char pre[256];
        snprintf(pre, sizeof pre,
                 "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"%s\", \"invert\": %s}",
                 cases[i].behavior, cases[i].invert ? "true" : "false");
        const char *p = test_write_tmp("split.json", char_tokenizer(vocab, merges, pre, "", ""));
        REQUIRE(p);
        tokenizer *tk = tokenizer_load(p);
        CHECK_MSG(tk, "load: %s", err_msg());
        if (!tk) continue;
        CHECK_MSG(ids_equal(tk, "ab-cd--e", cases[i].want, cases[i].n), "behavior %s invert %d", cases[i].behavior,
                  cases[i].invert);
        tokenizer_free(tk);
    }
}

/* Added tokens: longest match first, lstrip/rstrip take the spaces, single_word only matches
 * between non-word characters; merges as legacy "a b" strings. */
TEST(tokenizer_added_token_options)
{
    const char *added = "{\"id\": 100, \"content\": \"<m>\", \"special\": true, \"lstrip\": true, \"rstrip\": false,"
                        " \"single_word\": false, \"normalized\": false},"
                        "{\"id\": 101, \"content\": \"<m>x\", \"special\": true, \"lstrip\": false, \"rstrip\": true,"
                        " \"single_word\": false, \"normalized\": false},"
                        "{\"id\": 102, \"content\": \"cat\", \"special\": false, \"lstrip\": false, \"rstrip\": false,"
                        " \"single_word\": true, \"normalized\": true}";
    const char *p = test_write_tmp("added.json", char_tokenizer("\"ab\": 29", "\"a b\"", "null", added, ""));
    REQUIRE(p);
    tokenizer *tk = tokenizer_load(p);
    REQUIRE(tk);
    EXPECT_IDS(tk, "ab  <m>b", 29, 100, 1);       /* lstrip eats both spaces */
    EXPECT_IDS(tk, "a<m>x  b", 0, 101, 1);        /* longest token wins; rstrip eats the spaces */
    EXPECT_IDS(tk, "a cat b", 0, 26, 102, 26, 1); /* single word */
    EXPECT_IDS(tk, "cats", 2, 0, 19, 18);         /* inside a word: plain text */
    EXPECT_IDS(tk, "cat.", 102, 28);
    CHECK(tokenizer_token_to_id(tk, "<m>x") == 101);
    size_t len;
    int32_t ids[] = {29, 100, 1};
    char *s = tokenizer_decode(tk, ids, 3, &len);
    CHECK(s && !strcmp(s, "ab<m>b"));
    free(s);
    tokenizer_free(tk);
}

/* Unknown characters: dropped without unk, unk (fused or not), byte fallback to <0xXX>. */
TEST(tokenizer_unk_and_byte_fallback)
{
    const char *vocab = "\"<unk>\": 29, \"<0xC3>\": 30, \"<0xA9>\": 31";
    const char *p = test_write_tmp("unk0.json", char_tokenizer(vocab, "", "null", "", ""));
    tokenizer *tk = tokenizer_load(p);
    REQUIRE(tk);
    EXPECT_IDS(tk, "a\xC3\xA9" "1b", 0, 1);
    tokenizer_free(tk);
    p = test_write_tmp("unk1.json", char_tokenizer(vocab, "", "null", "", ", \"unk_token\": \"<unk>\""));
    REQUIRE((tk = tokenizer_load(p)));
    EXPECT_IDS(tk, "a\xC3\xA9" "1b", 0, 29, 29, 1);
    tokenizer_free(tk);
    p = test_write_tmp("unk2.json", char_tokenizer(vocab, "", "null", "", ", \"unk_token\": \"<unk>\", \"fuse_unk\": true"));
    REQUIRE((tk = tokenizer_load(p)));
    EXPECT_IDS(tk, "a\xC3\xA9" "1b", 0, 29, 1);
    tokenizer_free(tk);
    p = test_write_tmp("unk3.json",
                  char_tokenizer(vocab, "", "null", "", ", \"unk_token\": \"<unk>\", \"byte_fallback\": true"));
    REQUIRE((tk = tokenizer_load(p)));
    EXPECT_IDS(tk, "a\xC3\xA9" "1b", 0, 30, 31, 29, 1); /* é has byte tokens, '1' does not */
    tokenizer_free(tk);
}

/* ByteLevel with add_prefix_space and GPT-2's regex; ignore_merges. */
TEST(tokenizer_byte_level_options)
{
    /* byte-level alphabet for a few characters: 'Ġ' (U+0120) is the space */
    const char *json =
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true},"
        " \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"ignore_merges\": %s, \"vocab\":"
        " {\"\\u0120\": 0, \"h\": 1, \"i\": 2, \"\\u0120h\": 3, \"\\u0120hi\": 4, \"!\": 5, \"hi\": 6},"
        " \"merges\": [[\"\\u0120\", \"h\"], [\"\\u0120h\", \"i\"]]}}";
    char buf[1024];
    snprintf(buf, sizeof buf, json, "false");
    tokenizer *tk = tokenizer_load(test_write_tmp("bl.json", buf));
    REQUIRE(tk);
    EXPECT_IDS(tk, "hi hi!", 4, 4, 5); /* prefix space added once, words split by GPT-2's regex */
    EXPECT_IDS(tk, "hi", 4);
    size_t len;
    int32_t ids[] = {4, 4, 5};
    char *s = tokenizer_decode(tk, ids, 3, &len);
    CHECK(s && !strcmp(s, " hi hi!"));
    free(s);
    tokenizer_free(tk);
    /* ignore_merges: a word in the vocabulary is one token even without a merge path */
    const char *json2 = "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
                        " \"model\": {\"type\": \"BPE\", \"ignore_merges\": %s, \"vocab\":"
                        " {\"h\": 1, \"i\": 2, \"hi\": 6, \"!\": 5}, \"merges\": []}}";
    snprintf(buf, sizeof buf, json2, "true");
    REQUIRE((tk = tokenizer_load(test_write_tmp("bl2.json", buf))));
    EXPECT_IDS(tk, "hi!", 6, 5);
    tokenizer_free(tk);
    snprintf(buf, sizeof buf, json2, "false");
    REQUIRE((tk = tokenizer_load(test_write_tmp("bl3.json", buf))));
    EXPECT_IDS(tk, "hi!", 1, 2, 5);
    tokenizer_free(tk);
}

/* Every malformed file gives one clear line naming the file and the problem. */
TEST(tokenizer_malformed_files)
{
    struct {
        const char *name, *json, *expect;
    } cases[] = {
        {"nomodel.json", "{\"version\": \"1.0\"}", "no \"model\""},
        {"notjson.json", "{\"model\": {", "invalid JSON"},
        {"wordpiece.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model type \"WordPiece\""},
        {"novocab.json", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", "model.vocab"},
        {"badmerge1.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
         "token \"c\" is not in the vocabulary"},
        {"badmerge2.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
         "merged token \"ab\""},
        {"badmerge3.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"ab\"]}}",
         "merges[0]"},
        {"badmerge4.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}", "merges[0]"},
        {"badid.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", "vocab[\"a\"]"},
        {"dropout.json", "{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}", "dropout"},
        {"badnorm.json", "{\"normalizer\": {\"type\": \"Weird\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
         "normalizer type \"Weird\""},
        {"badregex.json",
         "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"},"
         " \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
         "pattern"},
        {"badbehavior.json",
         "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"},"
         " \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
         "Sideways"},
        {"badunk.json", "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {}, \"merges\": []}}",
         "unk_token"},
        {"badadded.json", "{\"added_tokens\": [{\"content\": \"x\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
         "added_tokens[0]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *p = test_write_tmp(cases[i].name, cases[i].json);
        REQUIRE(p);
        err_clear();
        tokenizer *tk = tokenizer_load(p);
        CHECK_MSG(!tk, "%s loaded", cases[i].name);
        tokenizer_free(tk);
        CHECK_MSG(strstr(err_msg(), cases[i].name) && strstr(err_msg(), cases[i].expect), "%s: message \"%s\"",
                  cases[i].name, err_msg());
        CHECK(!strchr(err_msg(), '\n'));
    }
    CHECK(tokenizer_load(TEST_DATA "/no/such/tokenizer.json") == NULL);
    CHECK(strstr(err_msg(), "no/such/tokenizer.json") != NULL);
}

/* Encoding from several threads (shared word cache) gives the serial ids. */
TEST(tokenizer_thread_safe)
{
    tokenizer *tk = get_tk(1);
    REQUIRE(tk);
    size_t len;
    char *text = fs_read_file(TEST_DATA "/text/eval.jsonl", &len);
    REQUIRE(text);
    enum { NDOC = 64 };
    char *docs[NDOC];
    int nd = 0;
    for (char *line = strtok(text, "\n"); line && nd < NDOC; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *t = cJSON_GetObjectItem(o, "text");
        if (cJSON_IsString(t)) docs[nd++] = strdup(t->valuestring);
        cJSON_Delete(o);
    }
    free(text);
    int32_t *serial[NDOC], *par[NDOC];
    size_t ns[NDOC], np[NDOC];
    int fails = 0;
    for (int i = 0; i < nd; i++) fails += tokenizer_encode(tk, docs[i], strlen(docs[i]), &serial[i], &ns[i]) != 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(4) reduction(+ : fails)
    for (int i = 0; i < 4 * nd; i++) {
        int d = i % nd;
        int32_t *ids;
        size_t n;
        if (tokenizer_encode(tk, docs[d], strlen(docs[d]), &ids, &n)) {
            fails++;
            continue;
        }
        if (i >= 3 * nd) {
            par[d] = ids;
            np[d] = n;
        } else {
            fails += n != ns[d] || memcmp(ids, serial[d], n * sizeof *ids) != 0;
            free(ids);
        }
    }
    CHECK(fails == 0);
    for (int i = 0; i < nd; i++) {
        CHECK(np[i] == ns[i] && !memcmp(par[i], serial[i], ns[i] * sizeof *par[i]));
        free(par[i]);
        free(serial[i]);
        free(docs[i]);
    }
}

/* A word far longer than the cache limit (heap merge path) and a huge whitespace run. */
TEST(tokenizer_long_words)
{
    tokenizer *tk = get_tk(1);
    REQUIRE(tk);
    size_t L = 20000;
    char *s = malloc(L + 1);
    for (size_t i = 0; i < L; i++) s[i] = "abcdefghij"[i % 10];
    s[L] = 0;
    size_t n;
    int32_t *ids = encode(tk, s, &n);
    REQUIRE(ids);
    CHECK(n > 0 && n < L);
    char *d = tokenizer_decode(tk, ids, n, NULL);
    CHECK(d && !strcmp(d, s));
    /* periodic text gives a periodic tokenization away from the ends */
    free(d);
    free(ids);
    memset(s, ' ', L);
    ids = encode(tk, s, &n);
    REQUIRE(ids);
    d = tokenizer_decode(tk, ids, n, NULL);
    CHECK(d && !strcmp(d, s));
    free(d);
    free(ids);
    free(s);
}

__attribute__((destructor)) static void free_tokenizers(void)
{
    tokenizer_free(tiny_tk);
    tokenizer_free(qwen_tk);
}
