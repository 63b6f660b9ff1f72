/* tokenizer — Hugging Face tokenizer.json (byte-level BPE) in C: loading, the encode pipeline
 * (added tokens → normalizer → pre-tokenizers → BPE) and ByteLevel decoding.
 *
 * Encoding follows tokenizers' TokenizerImpl::encode(text, add_special_tokens=false):
 *  1. added tokens with normalized=false are split out of the raw text (leftmost-longest,
 *     single_word / lstrip / rstrip as AddedVocabulary::find_matches does);
 *  2. each remaining piece is normalized, then added tokens with normalized=true are split out;
 *  3. each remaining piece runs through the pre-tokenizers in order (Split with PCRE2 in
 *     UTF+UCP mode standing in for Oniguruma; ByteLevel, which must come last);
 *  4. each pre-token is merged by the BPE model (calib/tokenizer_bpe.c).
 * The post_processor is not applied: ByteLevel's only changes offsets, and templates that add
 * BOS/EOS belong to add_special_tokens=true, which calibration does not use. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "calib/tokenizer.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <zlib.h>

#include "calib/tokenizer_bpe.h"
#include "io/err.h"
#include "io/fsutil.h"

/* GPT-2's pattern, used by ByteLevel when use_regex is true. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD };
enum { PT_SPLIT, PT_BYTELEVEL };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { DEC_NONE, DEC_BYTELEVEL, DEC_UNSUPPORTED };

typedef struct {
    int kind;
    pcre2_code *re;  /* Split pattern, or GPT-2's for ByteLevel with use_regex; may be NULL */
    int behavior;
    int invert;
    int add_prefix_space;
} pretok;

typedef struct {
    char *content;   /* as matched: normalized when normalized=true */
    size_t len;
    int id;
    int special, single_word, lstrip, rstrip, normalized;
} added_token;

/* Added tokens of one kind (raw or normalized) indexed by first byte, longest first. */
typedef struct {
    int *idx;        /* token indices grouped by first byte */
    int start[257];  /* idx[start[b] .. start[b+1]) begin with byte b */
    int n;
} added_matcher;

struct tokenizer {
    char *path;
    int *norms;
    int n_norms;
    pretok *steps;
    int n_steps;
    bpe_model *bpe;
    added_token *added;
    int n_added;
    added_matcher raw_match, norm_match;
    int decoder;
    char *decoder_name;
    int all_jit;
    int vocab_size;
    int16_t char_byte[324]; /* ByteLevel code point → byte, -1 */
};

/* ---------- loading ---------- */

static char *read_maybe_gz(const char *path, size_t *len)
{
    gzFile f = gzopen(path, "rb"); /* reads plain files as they are */
    if (!f) {
        err_set("%s: cannot open tokenizer file", path);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        unsigned want = (unsigned)((cap - n) > (1u << 30) ? (1u << 30) : (cap - n));
        int got = gzread(f, buf + n, want);
        if (got < 0) {
            int e;
            err_set("%s: read error: %s", path, gzerror(f, &e));
            gzclose(f);
            free(buf);
            return NULL;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    gzclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static const char *json_type(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int json_flag(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int add_norms(tokenizer *tk, const cJSON *n)
{
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = json_type(n);
    if (!type) return err_set("%s: normalizer without a \"type\"", tk->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list)) return err_set("%s: normalizer Sequence without a \"normalizers\" array", tk->path);
        for (const cJSON *e = list->child; e; e = e->next)
            if (add_norms(tk, e)) return -1;
        return 0;
    }
    int kind;
    if (!strcmp(type, "NFC")) kind = NORM_NFC;
    else if (!strcmp(type, "NFD")) kind = NORM_NFD;
    else if (!strcmp(type, "NFKC")) kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) kind = NORM_NFKD;
    else return err_set("%s: normalizer type \"%s\" is not supported (NFC, NFD, NFKC, NFKD, Sequence)", tk->path, type);
    tk->norms = xrealloc(tk->norms, (size_t)(tk->n_norms + 1) * sizeof *tk->norms);
    tk->norms[tk->n_norms++] = kind;
    return 0;
}

static pcre2_code *compile_regex(const char *path, const char *pattern, int literal, int *jit_ok)
{
    int ec;
    PCRE2_SIZE off;
    uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP; /* LITERAL forbids UCP */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        err_set("%s: pre_tokenizer pattern /%s/: %s at offset %zu", path, pattern, (char *)msg, (size_t)off);
        return NULL;
    }
    size_t jit_size = 0;
    if (pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) != 0 || pcre2_pattern_info(re, PCRE2_INFO_JITSIZE, &jit_size) != 0 ||
        !jit_size)
        *jit_ok = 0; /* the interpreter still works */
    return re;
}

static pretok *new_step(tokenizer *tk)
{
    tk->steps = xrealloc(tk->steps, (size_t)(tk->n_steps + 1) * sizeof *tk->steps);
    pretok *p = &tk->steps[tk->n_steps++];
    memset(p, 0, sizeof *p);
    return p;
}

static int add_pretoks(tokenizer *tk, const cJSON *p)
{
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = json_type(p);
    if (!type) return err_set("%s: pre_tokenizer without a \"type\"", tk->path);
    if (tk->n_steps && tk->steps[tk->n_steps - 1].kind == PT_BYTELEVEL)
        return err_set("%s: pre_tokenizer \"%s\" after ByteLevel is not supported", tk->path, type);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list)) return err_set("%s: pre_tokenizer Sequence without a \"pretokenizers\" array", tk->path);
        for (const cJSON *e = list->child; e; e = e->next)
            if (add_pretoks(tk, e)) return -1;
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        if (!cJSON_IsString(rx) && !cJSON_IsString(str))
            return err_set("%s: pre_tokenizer Split needs pattern {\"Regex\": ...} or {\"String\": ...}", tk->path);
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int b = -1;
        for (int i = 0; i < 5 && cJSON_IsString(beh); i++)
            if (!strcmp(beh->valuestring, names[i])) b = i;
        if (b < 0)
            return err_set("%s: pre_tokenizer Split behavior %s%s%s is not one of Removed, Isolated, "
                           "MergedWithPrevious, MergedWithNext, Contiguous",
                           tk->path, cJSON_IsString(beh) ? "\"" : "", cJSON_IsString(beh) ? beh->valuestring : "(missing)",
                           cJSON_IsString(beh) ? "\"" : "");
        pretok *s = new_step(tk);
        s->kind = PT_SPLIT;
        s->behavior = b;
        s->invert = json_flag(p, "invert", 0);
        s->re = cJSON_IsString(rx) ? compile_regex(tk->path, rx->valuestring, 0, &tk->all_jit)
                                   : compile_regex(tk->path, str->valuestring, 1, &tk->all_jit);
        return s->re ? 0 : -1;
    }
    if (!strcmp(type, "ByteLevel")) {
        pretok *s = new_step(tk);
        s->kind = PT_BYTELEVEL;
        s->behavior = B_ISOLATED;
        s->add_prefix_space = json_flag(p, "add_prefix_space", 1);
        if (json_flag(p, "use_regex", 1)) {
            s->re = compile_regex(tk->path, GPT2_PATTERN, 0, &tk->all_jit);
            if (!s->re) return -1;
        }
        return 0;
    }
    return err_set("%s: pre_tokenizer type \"%s\" is not supported (Split, ByteLevel, Sequence)", tk->path, type);
}

/* ByteLevel's byte → code point table: printable Latin-1 bytes map to themselves, the others
 * to 256, 257, ... in byte order. */
static void byte_level_table(uint32_t map[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        map[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

/* Normalize s[0..n) with the tokenizer's normalizers; returns a malloc'd string, or NULL with
 * *out_len = n when the text is unchanged (no normalizer, or pure ASCII). -1 on error. */
static int normalize(const tokenizer *tk, const char *s, size_t n, char **out, size_t *out_len);

static int add_added_tokens(tokenizer *tk, const cJSON *list)
{
    if (!list || cJSON_IsNull(list)) return 0;
    if (!cJSON_IsArray(list)) return err_set("%s: added_tokens must be an array", tk->path);
    int n = cJSON_GetArraySize(list);
    tk->added = xcalloc((size_t)n + 1, sizeof *tk->added);
    for (const cJSON *e = list->child; e; e = e->next) {
        int i = tk->n_added;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 16e6 || !cJSON_IsString(content))
            return err_set("%s: added_tokens[%d] needs an integer \"id\" and a string \"content\"", tk->path, i);
        if (!content->valuestring[0]) continue; /* empty tokens are ignored, as in tokenizers */
        added_token *a = &tk->added[tk->n_added++];
        a->id = id->valueint;
        a->special = json_flag(e, "special", 0);
        a->single_word = json_flag(e, "single_word", 0);
        a->lstrip = json_flag(e, "lstrip", 0);
        a->rstrip = json_flag(e, "rstrip", 0);
        a->normalized = json_flag(e, "normalized", !a->special);
        a->content = xstrdup(content->valuestring);
        a->len = strlen(a->content);
        if (a->normalized && tk->n_norms) { /* matched against normalized text: normalize it too */
            char *nc;
            size_t nl;
            if (normalize(tk, a->content, a->len, &nc, &nl)) return err_prefix("%s: added_tokens[%d]", tk->path, i);
            if (nc) {
                free(a->content);
                a->content = nc;
                a->len = nl;
            }
        }
        if (a->id + 1 > tk->vocab_size) tk->vocab_size = a->id + 1;
    }
    return 0;
}

static int cmp_len_desc(const void *a, const void *b, void *ctx)
{
    const added_token *t = ctx;
    size_t la = t[*(const int *)a].len, lb = t[*(const int *)b].len;
    return la < lb ? 1 : la > lb ? -1 : (*(const int *)a - *(const int *)b);
}

static void build_matcher(tokenizer *tk, added_matcher *m, int normalized)
{
    m->idx = xmalloc(((size_t)tk->n_added + 1) * sizeof *m->idx);
    m->n = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b] = m->n;
        int first = m->n;
        for (int i = 0; i < tk->n_added; i++)
            if (tk->added[i].normalized == normalized && (uint8_t)tk->added[i].content[0] == b) m->idx[m->n++] = i;
        qsort_r(m->idx + first, (size_t)(m->n - first), sizeof *m->idx, cmp_len_desc, tk->added);
    }
    m->start[256] = m->n;
}

void tokenizer_free(tokenizer *tk)
{
    if (!tk) return;
    for (int i = 0; i < tk->n_steps; i++) pcre2_code_free(tk->steps[i].re);
    for (int i = 0; i < tk->n_added; i++) free(tk->added[i].content);
    free(tk->added);
    free(tk->raw_match.idx);
    free(tk->norm_match.idx);
    free(tk->steps);
    free(tk->norms);
    bpe_free(tk->bpe);
    free(tk->decoder_name);
    free(tk->path);
    free(tk);
}

tokenizer *tokenizer_load(const char *path)
{
    size_t len;
    char *text = read_maybe_gz(path, &len);
    if (!text) return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = (at && at >= text && at <= text + len) ? (size_t)(at - text) : 0;
        err_set("%s: invalid JSON near byte %zu", path, off);
        free(text);
        return NULL;
    }
    free(text);
    tokenizer *tk = xcalloc(1, sizeof *tk);
    tk->path = xstrdup(path);
    tk->all_jit = 1;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) {
        err_set("%s: no \"model\" object (not a tokenizer.json?)", path);
        goto fail;
    }
    const char *mtype = json_type(model);
    if (mtype ? strcmp(mtype, "BPE") != 0 : !cJSON_GetObjectItemCaseSensitive(model, "merges")) {
        err_set("%s: model type \"%s\" is not supported (only BPE)", path, mtype ? mtype : "(missing)");
        goto fail;
    }
    if (!(tk->bpe = bpe_from_json(model, path))) goto fail;
    tk->vocab_size = bpe_max_id(tk->bpe) + 1;
    if (add_norms(tk, cJSON_GetObjectItemCaseSensitive(root, "normalizer"))) goto fail;
    if (add_pretoks(tk, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"))) goto fail;
    if (add_added_tokens(tk, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"))) goto fail;
    build_matcher(tk, &tk->raw_match, 0);
    build_matcher(tk, &tk->norm_match, 1);

    uint32_t map[256];
    byte_level_table(map);
    for (int i = 0; i < 324; i++) tk->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) tk->char_byte[map[b]] = (int16_t)b;
    if (tk->n_steps && tk->steps[tk->n_steps - 1].kind == PT_BYTELEVEL) bpe_set_byte_level(tk->bpe, map);

    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *dtype = json_type(dec);
    if (!dec || cJSON_IsNull(dec)) tk->decoder = DEC_NONE;
    else if (dtype && !strcmp(dtype, "ByteLevel")) tk->decoder = DEC_BYTELEVEL;
    else {
        tk->decoder = DEC_UNSUPPORTED; /* encoding still works; decode() reports it */
        tk->decoder_name = xstrdup(dtype ? dtype : "(no type)");
    }
    cJSON_Delete(root);
    return tk;
fail:
    cJSON_Delete(root);
    tokenizer_free(tk);
    return NULL;
}

int tokenizer_token_to_id(const tokenizer *tk, const char *token)
{
    size_t len = strlen(token);
    for (int i = 0; i < tk->n_added; i++)
        if (!tk->added[i].normalized || !tk->n_norms) {
            if (tk->added[i].len == len && !memcmp(tk->added[i].content, token, len)) return tk->added[i].id;
        }
    int id = bpe_token_to_id(tk->bpe, token, len);
    if (id >= 0) return id;
    for (int i = 0; i < tk->n_added; i++) /* normalized tokens: compare with the original text too */
        if (tk->added[i].len == len && !memcmp(tk->added[i].content, token, len)) return tk->added[i].id;
    return -1;
}

int tokenizer_vocab_size(const tokenizer *tk) { return tk->vocab_size; }

int tokenizer_eos_id(const tokenizer *tk, const char *model_dir)
{
    char *eos = NULL;
    if (model_dir) {
        char *cfg = fs_join(model_dir, "tokenizer_config.json");
        size_t len;
        char *text = fs_exists(cfg) ? fs_read_file(cfg, &len) : NULL;
        cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token");
        if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(e)) eos = xstrdup(e->valuestring);
        cJSON_Delete(root);
        free(text);
        free(cfg);
    }
    if (eos) {
        int id = tokenizer_token_to_id(tk, eos);
        if (id < 0) err_set("%s: eos_token \"%s\" of tokenizer_config.json is not a token", tk->path, eos);
        free(eos);
        return id;
    }
    static const char *guesses[] = {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"};
    for (size_t i = 0; i < sizeof guesses / sizeof *guesses; i++) {
        int id = tokenizer_token_to_id(tk, guesses[i]);
        if (id >= 0) return id;
    }
    return err_set("%s: no eos_token in tokenizer_config.json and none of <|endoftext|>, </s>, "
                   "<|end_of_text|>, <eos> is a token",
                   tk->path);
}

/* ---------- Unicode helpers ---------- */

/* Length of the valid UTF-8 prefix of s (== n when all valid). */
static size_t utf8_valid_prefix(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, p + i, 8);
            if (!(x & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return i;
        if (i + k >= n) return i; /* truncated */
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t j = 2; j <= k; j++)
            if ((p[i + j] & 0xC0) != 0x80) return i;
        i += k + 1;
    }
    return n;
}

static uint32_t utf8_decode_at(const char *s, size_t n, size_t i, size_t *clen)
{
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
    *clen = k > 0 ? (size_t)k : 1;
    return k > 0 ? (uint32_t)cp : 0xFFFD;
}

/* Start of the character that ends at byte i (exclusive). */
static size_t utf8_prev(const char *s, size_t i)
{
    do i--;
    while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80);
    return i;
}

/* Unicode White_Space (Rust's char::is_whitespace / regex \s). */
static int is_ws(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* regex \w: letters, marks, decimal digits, letter numbers, connector punctuation. */
static int is_word(uint32_t c)
{
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ME) || cat == UTF8PROC_CATEGORY_ND ||
           cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_PC;
}

static const int norm_opts[] = {
    [NORM_NFC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE,
    [NORM_NFD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
    [NORM_NFKC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
    [NORM_NFKD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
};

typedef struct {
    utf8proc_int32_t *u;
    size_t ucap;
    char *b;
    size_t bcap;
} norm_scratch;

/* Normalize one island s[0..n) with every normalizer in turn; appends to *out (grown). */
static int norm_island(const tokenizer *tk, norm_scratch *sc, const char *s, size_t n, char **out, size_t *len,
                       size_t *cap)
{
    const char *src = s;
    size_t src_len = n;
    for (int k = 0; k < tk->n_norms; k++) {
        utf8proc_option_t o = (utf8proc_option_t)norm_opts[tk->norms[k]];
        utf8proc_ssize_t cnt;
        for (;;) {
            cnt = utf8proc_decompose((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)src_len, sc->u,
                                     (utf8proc_ssize_t)sc->ucap, o);
            if (cnt < 0) return err_set("%s: normalizer: %s", tk->path, utf8proc_errmsg(cnt));
            if ((size_t)cnt <= sc->ucap) break;
            sc->ucap = 2 * (size_t)cnt;
            sc->u = xrealloc(sc->u, sc->ucap * sizeof *sc->u);
        }
        cnt = utf8proc_normalize_utf32(sc->u, cnt, o);
        if (cnt < 0) return err_set("%s: normalizer: %s", tk->path, utf8proc_errmsg(cnt));
        if (4 * (size_t)cnt > sc->bcap) {
            sc->bcap = 8 * (size_t)cnt + 16;
            sc->b = xrealloc(sc->b, sc->bcap);
        }
        size_t bl = 0;
        for (utf8proc_ssize_t i = 0; i < cnt; i++) bl += (size_t)utf8_put((uint32_t)sc->u[i], sc->b + bl);
        src = sc->b;
        src_len = bl;
    }
    if (*len + src_len + 1 > *cap) {
        *cap = 2 * (*len + src_len + 1);
        *out = xrealloc(*out, *cap);
    }
    memcpy(*out + *len, src, src_len);
    *len += src_len;
    return 0;
}

/* Every normalization form leaves ASCII alone, and no ASCII character composes with what
 * precedes it or is reordered, so only "islands" need utf8proc: a run of non-ASCII characters
 * together with the ASCII character before it (which could start a composition). */
static int normalize(const tokenizer *tk, const char *s, size_t n, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = n;
    if (!tk->n_norms) return 0;
    size_t i = 0;
    while (i < n && !((uint8_t)s[i] & 0x80)) i++;
    if (i == n) return 0;
    size_t cap = n + n / 4 + 16, len = 0, done = 0;
    char *res = xmalloc(cap);
    norm_scratch sc = {0};
    int rc = 0;
    while (i < n && !rc) {
        size_t a = i > done ? i - 1 : i; /* island start: the ASCII character before, if any */
        size_t b = i;
        while (b < n && ((uint8_t)s[b] & 0x80)) b++;
        if (len + (a - done) + 1 > cap) {
            cap = 2 * (len + (a - done) + 1);
            res = xrealloc(res, cap);
        }
        memcpy(res + len, s + done, a - done);
        len += a - done;
        rc = norm_island(tk, &sc, s + a, b - a, &res, &len, &cap);
        done = b;
        i = b;
        while (i < n && !((uint8_t)s[i] & 0x80)) i++;
    }
    free(sc.u);
    free(sc.b);
    if (rc) {
        free(res);
        return -1;
    }
    if (len + (n - done) + 1 > cap) {
        cap = len + (n - done) + 1;
        res = xrealloc(res, cap);
    }
    memcpy(res + len, s + done, n - done);
    len += n - done;
    res[len] = 0;
    *out = res;
    *out_len = len;
    return 0;
}

/* ---------- encoding ---------- */

typedef struct {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
    i32vec out;
    int failed;
    int jit; /* every pattern is JIT-compiled: call pcre2_jit_match directly */
} enc_ctx;

typedef struct {
    size_t s, e;
    int match;
} span;

typedef struct {
    span *v;
    size_t n, cap;
} spanvec;

static void span_push(spanvec *a, size_t s, size_t e, int match)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = (span){s, e, match};
}

static void pretokenize(const tokenizer *tk, enc_ctx *c, int step, const char *s, size_t n);

/* The first match of re in s[0..n) at or after pos: 1 with [*ms, *me), 0 when there is none,
 * -1 on a regex error. */
static int next_match(const tokenizer *tk, enc_ctx *c, const pcre2_code *re, const char *s, size_t n, size_t pos,
                      size_t *ms, size_t *me)
{
    int rc = c->jit ? pcre2_jit_match(re, (PCRE2_SPTR)s, n, pos, 0, c->md, c->mc)
                    : pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md, c->mc);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return err_set("%s: pre_tokenizer regex failed: %s", tk->path, (char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

/* Where the search resumes after the match [ms, me): an empty match steps over one
 * character. 0 when an empty match sits at the end of s (nothing left to search). */
static int resume_at(const char *s, size_t n, size_t ms, size_t me, size_t *pos)
{
    if (me > ms) {
        *pos = me;
        return 1;
    }
    if (ms >= n) return 0;
    size_t cl;
    utf8_decode_at(s, n, ms, &cl);
    *pos = ms + cl;
    return 1;
}

/* All regex matches and the gaps between them, covering s[0..n), like tokenizers'
 * Pattern::find_matches (empty matches split but are dropped later). */
static int find_spans(const tokenizer *tk, enc_ctx *c, const pcre2_code *re, int invert, const char *s, size_t n,
                      spanvec *out)
{
    size_t pos = 0, prev = 0, ms, me;
    while (pos <= n) {
        int rc = next_match(tk, c, re, s, n, pos, &ms, &me);
        if (rc < 0) return -1;
        if (rc == 0) break;
        if (prev < ms) span_push(out, prev, ms, invert);
        span_push(out, ms, me, !invert);
        prev = me;
        if (!resume_at(s, n, ms, me, &pos)) break;
    }
    if (prev < n) span_push(out, prev, n, invert);
    return 0;
}

/* Isolated and Removed need no look-ahead: pre-tokenize each kept piece as it is found. */
static int for_each_match(const tokenizer *tk, enc_ctx *c, const pretok *p, int step, const char *s, size_t n)
{
    size_t pos = 0, prev = 0, ms, me;
    int keep_match = p->behavior == B_ISOLATED || p->invert, keep_gap = p->behavior == B_ISOLATED || !p->invert;
    while (pos <= n && !c->failed) {
        int rc = next_match(tk, c, p->re, s, n, pos, &ms, &me);
        if (rc < 0) return -1;
        if (rc == 0) break;
        if (prev < ms && keep_gap) pretokenize(tk, c, step + 1, s + prev, ms - prev);
        if (me > ms && keep_match) pretokenize(tk, c, step + 1, s + ms, me - ms);
        prev = me;
        if (!resume_at(s, n, ms, me, &pos)) break;
    }
    if (prev < n && keep_gap) pretokenize(tk, c, step + 1, s + prev, n - prev);
    return 0;
}

/* Apply a split behaviour to spans (in place) per NormalizedString::split; removed spans
 * keep match = 1, kept spans 0. */
static void apply_behavior(int behavior, spanvec *sp)
{
    size_t k = 0;
    int prev_match = 0;
    switch (behavior) {
    case B_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = 0;
        return;
    case B_REMOVED:
        return;
    case B_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            span x = sp->v[i];
            if (k && x.match == prev_match) sp->v[k - 1].e = x.e;
            else sp->v[k++] = (span){x.s, x.e, 0};
            prev_match = x.match;
        }
        break;
    case B_MERGED_PREV:
        for (size_t i = 0; i < sp->n; i++) {
            span x = sp->v[i];
            if (k && x.match && !prev_match) sp->v[k - 1].e = x.e;
            else sp->v[k++] = (span){x.s, x.e, 0};
            prev_match = x.match;
        }
        break;
    case B_MERGED_NEXT: /* the mirror image: walk backwards, merge a match into the span after it */
        k = sp->n;
        for (size_t i = sp->n; i-- > 0;) {
            span x = sp->v[i];
            if (k < sp->n && x.match && !prev_match) sp->v[k].s = x.s;
            else sp->v[--k] = (span){x.s, x.e, 0};
            prev_match = x.match;
        }
        memmove(sp->v, sp->v + k, (sp->n - k) * sizeof *sp->v);
        k = sp->n - k;
        break;
    }
    sp->n = k;
}

static void pretokenize(const tokenizer *tk, enc_ctx *c, int step, const char *s, size_t n)
{
    if (!n || c->failed) return;
    if (step == tk->n_steps) {
        bpe_encode_word(tk->bpe, s, n, &c->out);
        return;
    }
    const pretok *p = &tk->steps[step];
    char *tmp = NULL;
    if (p->kind == PT_BYTELEVEL && p->add_prefix_space && s[0] != ' ') {
        tmp = xmalloc(n + 1);
        tmp[0] = ' ';
        memcpy(tmp + 1, s, n);
        s = tmp;
        n++;
    }
    if (!p->re) {
        pretokenize(tk, c, step + 1, s, n);
        free(tmp);
        return;
    }
    if (p->behavior == B_ISOLATED || p->behavior == B_REMOVED) { /* no merging: stream the pieces */
        if (for_each_match(tk, c, p, step, s, n)) c->failed = 1;
        free(tmp);
        return;
    }
    spanvec sp = {0};
    if (find_spans(tk, c, p->re, p->invert, s, n, &sp)) {
        c->failed = 1;
    } else {
        apply_behavior(p->behavior, &sp);
        for (size_t i = 0; i < sp.n; i++)
            if (!sp.v[i].match && sp.v[i].e > sp.v[i].s) pretokenize(tk, c, step + 1, s + sp.v[i].s, sp.v[i].e - sp.v[i].s);
    }
    free(sp.v);
    free(tmp);
}

/* Next leftmost-longest occurrence of an added token in s at or after `from`. */
static int next_added(const tokenizer *tk, const added_matcher *m, const char *s, size_t n, size_t from, size_t *ms,
                      int *tok)
{
    if (!m->n) return 0;
    for (size_t i = from; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        for (int j = m->start[b]; j < m->start[b + 1]; j++) {
            const added_token *a = &tk->added[m->idx[j]];
            if (a->len <= n - i && !memcmp(s + i, a->content, a->len)) {
                *ms = i;
                *tok = m->idx[j];
                return 1;
            }
        }
    }
    return 0;
}

static void encode_normalized(const tokenizer *tk, enc_ctx *c, const char *s, size_t n);

/* Split s on added tokens of matcher m (AddedVocabulary::find_matches); pieces between tokens
 * go to `rest` (raw pass: normalize then the normalized pass; normalized pass: pre-tokenize). */
static void split_added(const tokenizer *tk, enc_ctx *c, const added_matcher *m, const char *s, size_t n, int raw)
{
    size_t start_offset = 0, scan = 0, ms;
    int t;
    while (!c->failed && next_added(tk, m, s, n, scan, &ms, &t)) {
        const added_token *a = &tk->added[t];
        size_t start = ms, stop = ms + a->len, cl;
        scan = stop; /* the search resumes after the raw match, as aho-corasick's iterator does */
        if (ms < start_offset) continue;
        if (a->single_word) {
            int word_before = start > 0 && is_word(utf8_decode_at(s, n, utf8_prev(s, start), &cl));
            int word_after = stop < n && is_word(utf8_decode_at(s, n, stop, &cl));
            if (word_before || word_after) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > start_offset) {
                size_t p = utf8_prev(s, ns);
                if (!is_ws(utf8_decode_at(s, n, p, &cl))) break;
                ns = p;
            }
            start = ns;
        }
        if (a->rstrip)
            while (stop < n && is_ws(utf8_decode_at(s, n, stop, &cl))) stop += cl;
        if (start_offset < start) {
            if (raw) encode_normalized(tk, c, s + start_offset, start - start_offset);
            else pretokenize(tk, c, 0, s + start_offset, start - start_offset);
        }
        i32vec_push(&c->out, a->id);
        start_offset = stop;
    }
    if (start_offset < n) {
        if (raw) encode_normalized(tk, c, s + start_offset, n - start_offset);
        else pretokenize(tk, c, 0, s + start_offset, n - start_offset);
    }
}

static void encode_normalized(const tokenizer *tk, enc_ctx *c, const char *s, size_t n)
{
    char *norm;
    size_t nl;
    if (normalize(tk, s, n, &norm, &nl)) {
        c->failed = 1;
        return;
    }
    split_added(tk, c, &tk->norm_match, norm ? norm : s, nl, 0);
    free(norm);
}

int tokenizer_encode(const tokenizer *tk, const char *text, size_t len, int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    size_t valid = utf8_valid_prefix(text, len);
    if (valid != len) return err_set("%s: input text is not valid UTF-8 (byte %zu)", tk->path, valid);
    enc_ctx c = {0};
    c.md = pcre2_match_data_create(1, NULL);
    c.mc = pcre2_match_context_create(NULL);
    c.js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!c.md || !c.mc || !c.js) { /* the pcre2 free functions accept NULL */
        pcre2_jit_stack_free(c.js);
        pcre2_match_context_free(c.mc);
        pcre2_match_data_free(c.md);
        return err_set("%s: out of memory for regex matching", tk->path);
    }
    pcre2_jit_stack_assign(c.mc, NULL, c.js);
    c.jit = tk->all_jit;
    split_added(tk, &c, &tk->raw_match, text, len, 1);
    pcre2_jit_stack_free(c.js);
    pcre2_match_context_free(c.mc);
    pcre2_match_data_free(c.md);
    if (c.failed) {
        free(c.out.v);
        return -1;
    }
    *ids = c.out.v ? c.out.v : xmalloc(sizeof(int32_t));
    *n = c.out.n;
    return 0;
}

/* ---------- decoding ---------- */

static const char *id_token(const tokenizer *tk, int id, size_t *len)
{
    for (int i = 0; i < tk->n_added; i++)
        if (tk->added[i].id == id) {
            *len = tk->added[i].len;
            return tk->added[i].content;
        }
    return bpe_id_to_token(tk->bpe, id, len);
}

/* Append bytes b[0..n) to out, replacing each maximal invalid UTF-8 subsequence by U+FFFD
 * (what String::from_utf8_lossy does). */
static size_t utf8_lossy(const char *b, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t v = utf8_valid_prefix(b + i, n - i);
        memcpy(out + o, b + i, v);
        o += v;
        i += v;
        if (i >= n) break;
        /* skip the longest prefix of a would-be sequence that is still plausible */
        const uint8_t *p = (const uint8_t *)b + i;
        size_t k = 1, need = p[0] >= 0xF0 ? 3 : p[0] >= 0xE0 ? 2 : p[0] >= 0xC2 ? 1 : 0;
        uint8_t lo = p[0] == 0xE0 ? 0xA0 : p[0] == 0xF0 ? 0x90 : 0x80;
        uint8_t hi = p[0] == 0xED ? 0x9F : p[0] == 0xF4 ? 0x8F : 0xBF;
        if (p[0] > 0xF4) need = 0;
        if (need && i + 1 < n && p[1] >= lo && p[1] <= hi) {
            k = 2;
            while (k <= need && i + k < n && (p[k] & 0xC0) == 0x80) k++;
        }
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += k;
    }
    return o;
}

char *tokenizer_decode(const tokenizer *tk, const int32_t *ids, size_t n, size_t *len)
{
    if (tk->decoder == DEC_UNSUPPORTED) {
        err_set("%s: decoder type \"%s\" is not supported (ByteLevel or none)", tk->path, tk->decoder_name);
        return NULL;
    }
    size_t cap = 64, o = 0;
    char *raw = xmalloc(cap);
    for (size_t i = 0; i < n; i++) {
        size_t tl;
        const char *t = id_token(tk, ids[i], &tl);
        if (!t) {
            free(raw);
            err_set("%s: decode: id %d is not in the vocabulary", tk->path, (int)ids[i]);
            return NULL;
        }
        if (o + tl + 4 > cap) {
            while (o + tl + 4 > cap) cap *= 2;
            raw = xrealloc(raw, cap);
        }
        size_t start = o, cl;
        int mapped = tk->decoder == DEC_BYTELEVEL;
        for (size_t j = 0; mapped && j < tl; j += cl) {
            uint32_t cp = utf8_decode_at(t, tl, j, &cl);
            if (cp >= 324 || tk->char_byte[cp] < 0) mapped = 0;
            else raw[o++] = (char)tk->char_byte[cp];
        }
        if (!mapped) { /* a token with characters outside the byte map keeps its own bytes */
            o = start;
            memcpy(raw + o, t, tl);
            o += tl;
        }
    }
    char *out = xmalloc(3 * o + 1);
    size_t m = utf8_lossy(raw, o, out);
    free(raw);
    out[m] = 0;
    if (len) *len = m;
    return out;
}
