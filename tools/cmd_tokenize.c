/* tokenize — encode text to ids (or decode ids to text) with a Hugging Face tokenizer.json.
 *   gptq-eora tokenize --tokenizer FILE [--text STR | --text-file FILE|- | --jsonl FILE [--field F]]
 *                      [--json] [--decode]
 * Encode: one line of space-separated ids per text, or with --json one JSON array of arrays.
 * Decode: the inputs are ids; one decoded text per line, or with --json a JSON array of strings. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/data.h"
#include "calib/tokenizer.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "tools/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gptq-eora tokenize --tokenizer FILE [input] [--json] [--decode]\n"
            "Encodes text with a Hugging Face tokenizer.json (byte-level BPE; .json.gz accepted), ids\n"
            "identical to tokenizers' encode(text, add_special_tokens=False).\n"
            "  --tokenizer FILE   tokenizer.json, tokenizer.json.gz, or a model directory holding one\n"
            "input (default: standard input as one text):\n"
            "  --text STR         one text\n"
            "  --text-file FILE   the whole file, bytes as they are, is one text ('-' = stdin)\n"
            "  --jsonl FILE       one text per line, from the field given by --field (default text)\n"
            "output:\n"
            "  (default)          one line per text: ids separated by spaces\n"
            "  --json             a JSON array of arrays of ids\n"
            "  --decode           reverse: inputs are ids (spaces/commas, or JSON arrays; with --jsonl\n"
            "                     an array per line or in --field); prints one text per line, or\n"
            "                     with --json a JSON array of strings\n"
            "examples:\n"
            "  gptq-eora tokenize --tokenizer model/tokenizer.json --text 'Hello, world!'\n"
            "  gptq-eora tokenize --tokenizer model --jsonl data/calib.jsonl --json > ids.json\n"
            "  gptq-eora tokenize --tokenizer model --decode --text '9707 11 1879 0'\n"
            "exit status: 0 ok, 1 error, 2 usage error\n");
}

typedef struct {
    char **v;
    size_t *len;
    size_t n, cap;
} textlist;

static void tl_push(textlist *t, char *s, size_t len)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = xrealloc(t->v, t->cap * sizeof *t->v);
        t->len = xrealloc(t->len, t->cap * sizeof *t->len);
    }
    t->v[t->n] = s;
    t->len[t->n++] = len;
}

static void tl_free(textlist *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->v[i]);
    free(t->v);
    free(t->len);
}

static char *read_stream(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0, got;
    char *buf = xmalloc(cap + 1);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = xrealloc(buf, (cap *= 2) + 1);
    }
    if (ferror(f)) {
        free(buf);
        err_set("standard input: read error");
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* ---- ids for --decode ---- */

typedef struct {
    int32_t *v;
    size_t n;
} idseq;

static int json_ids(const cJSON *a, idseq *out, const char *where)
{
    out->n = 0;
    out->v = xmalloc(((size_t)cJSON_GetArraySize(a) + 1) * sizeof *out->v);
    for (const cJSON *x = a->child; x; x = x->next) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 2147483647.0 ||
            x->valuedouble != (double)(int32_t)x->valuedouble) {
            free(out->v);
            return err_set("%s: expected an array of token ids (non-negative integers)", where);
        }
        out->v[out->n++] = (int32_t)x->valuedouble;
    }
    return 0;
}

/* "1 2, 3" → ids. */
static int text_ids(const char *s, size_t len, idseq *out, const char *where)
{
    out->n = 0;
    out->v = xmalloc((len / 2 + 2) * sizeof *out->v);
    const char *p = s, *end = s + len;
    while (p < end) {
        if (*p == ' ' || *p == '\t' || *p == ',' || *p == '\r' || *p == '\n') {
            p++;
            continue;
        }
        char *q;
        long long v = strtoll(p, &q, 10);
        if (q == p || v < 0 || v > 2147483647LL || (q < end && !strchr(" \t,\r\n", *q))) {
            free(out->v);
            return err_set("%s: \"%.20s\" is not a token id", where, p);
        }
        out->v[out->n++] = (int32_t)v;
        p = q;
    }
    return 0;
}

/* One text holding ids: a JSON array (of ids, or of arrays) or whitespace-separated ids, one
 * sequence per line. */
static int parse_id_text(const char *s, size_t len, idseq **seqs, size_t *n, const char *where)
{
    const char *p = s;
    while (p < s + len && strchr(" \t\r\n", *p)) p++;
    if (p < s + len && *p == '[') {
        cJSON *a = cJSON_ParseWithLength(s, len);
        if (!cJSON_IsArray(a)) {
            cJSON_Delete(a);
            return err_set("%s: not a valid JSON array", where);
        }
        int nested = a->child && cJSON_IsArray(a->child);
        size_t k = nested ? (size_t)cJSON_GetArraySize(a) : 1;
        *seqs = xcalloc(k + 1, sizeof **seqs);
        *n = 0;
        int rc = 0;
        if (nested) {
            for (const cJSON *x = a->child; x && !rc; x = x->next)
                if (!(rc = cJSON_IsArray(x) ? json_ids(x, &(*seqs)[*n], where) : err_set("%s: mixed array", where)))
                    (*n)++;
        } else if (!(rc = json_ids(a, &(*seqs)[0], where))) {
            *n = 1;
        }
        cJSON_Delete(a);
        return rc;
    }
    size_t cap = 16;
    *seqs = xmalloc(cap * sizeof **seqs);
    *n = 0;
    for (const char *line = s; line < s + len;) {
        const char *e = memchr(line, '\n', (size_t)(s + len - line));
        if (!e) e = s + len;
        const char *q = line;
        while (q < e && strchr(" \t\r,", *q)) q++;
        if (q < e) {
            if (*n == cap) *seqs = xrealloc(*seqs, (cap *= 2) * sizeof **seqs);
            if (text_ids(line, (size_t)(e - line), &(*seqs)[*n], where)) return -1;
            (*n)++;
        }
        line = e + 1;
    }
    return 0;
}

/* ---- output ---- */

static int out_ok(void)
{
    if (fflush(stdout) || ferror(stdout)) return err_set("writing to standard output failed");
    return 0;
}

static void print_ids(const int32_t *ids, size_t n, int json)
{
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? (json ? ", %d" : " %d") : "%d", ids[i]);
    if (json) putchar(']');
}

static int do_decode(const tokenizer *tk, const textlist *in, int json, const char *field, int from_jsonl,
                     const char *src_name)
{
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    int rc = 0;
    for (size_t t = 0; t < in->n && !rc; t++) {
        idseq *seqs = NULL;
        size_t ns = 0;
        char where[512];
        snprintf(where, sizeof where, "%s%s%zu", src_name, from_jsonl ? ":" : "", from_jsonl ? t + 1 : (size_t)0);
        if (!from_jsonl) snprintf(where, sizeof where, "%s", src_name);
        if (from_jsonl) { /* a line: an array of ids, or an object whose field holds one */
            cJSON *o = cJSON_ParseWithLength(in->v[t], in->len[t]);
            const cJSON *a = cJSON_IsArray(o) ? o : cJSON_GetObjectItemCaseSensitive(o, field);
            if (cJSON_IsArray(a)) {
                seqs = xcalloc(1, sizeof *seqs);
                if (!(rc = json_ids(a, seqs, where))) ns = 1;
            } else {
                rc = err_set("%s: expected an array of ids or an object with an array in \"%s\"", where, field);
            }
            cJSON_Delete(o);
        } else {
            rc = parse_id_text(in->v[t], in->len[t], &seqs, &ns, where);
        }
        for (size_t i = 0; i < ns; i++) {
            size_t len;
            char *s = rc ? NULL : tokenizer_decode(tk, seqs[i].v, seqs[i].n, &len);
            if (!rc && !s) rc = -1;
            if (s) {
                if (json) cJSON_AddItemToArray(arr, cJSON_CreateString(s));
                else {
                    fwrite(s, 1, len, stdout);
                    putchar('\n');
                }
            }
            free(s);
            free(seqs[i].v);
        }
        free(seqs);
    }
    if (json && !rc) {
        char *txt = cJSON_PrintUnformatted(arr);
        puts(txt);
        free(txt);
    }
    cJSON_Delete(arr);
    return rc ? -1 : out_ok();
}

static int do_encode(const tokenizer *tk, const textlist *in, int json, const char *src_name, int from_jsonl)
{
    if (json) putchar('[');
    for (size_t t = 0; t < in->n; t++) {
        int32_t *ids;
        size_t n;
        if (tokenizer_encode(tk, in->v[t], in->len[t], &ids, &n)) {
            if (json) putchar('\n'); /* leave no line that looks complete */
            fflush(stdout);
            return from_jsonl ? err_prefix("%s: text %zu", src_name, t + 1) : err_prefix("%s", src_name);
        }
        if (json && t) fputs(", ", stdout);
        print_ids(ids, n, json);
        if (!json) putchar('\n');
        free(ids);
    }
    if (json) puts("]");
    return out_ok();
}

int cmd_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"text", required_argument, 0, 's'},
        {"text-file", required_argument, 0, 'f'}, {"jsonl", required_argument, 0, 'j'},
        {"field", required_argument, 0, 'F'},     {"json", no_argument, 0, 'J'},
        {"decode", no_argument, 0, 'd'},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *tpath = NULL, *text = NULL, *text_file = NULL, *jsonl = NULL, *field = "text";
    int json = 0, decode = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': tpath = optarg; break;
        case 's': text = optarg; break;
        case 'f': text_file = optarg; break;
        case 'j': jsonl = optarg; break;
        case 'F': field = optarg; break;
        case 'J': json = 1; break;
        case 'd': decode = 1; break;
        case 'h': usage(stdout); return 0;
        default:
            return cli_usage_error("tokenize", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("tokenize", "unexpected argument '%s'", argv[optind]);
    if (!tpath) return cli_usage_error("tokenize", "--tokenizer FILE is required");
    if ((text != NULL) + (text_file != NULL) + (jsonl != NULL) > 1)
        return cli_usage_error("tokenize", "give only one of --text, --text-file, --jsonl");

    char *tfile = fs_is_dir(tpath) ? fs_join(tpath, "tokenizer.json") : xstrdup(tpath);
    tokenizer *tk = tokenizer_load(tfile);
    free(tfile);
    if (!tk) return cli_fail();

    textlist in = {0};
    const char *src_name = "text";
    int rc = 0;
    if (text) {
        tl_push(&in, xstrdup(text), strlen(text));
        src_name = "--text";
    } else if (jsonl) { /* one text per line, read as documents */
        src_name = jsonl;
        if (decode) { /* lines hold ids: keep them raw */
            size_t len;
            char *all = fs_read_file(jsonl, &len);
            if (!all) rc = -1;
            for (char *line = all; !rc && line < all + len;) {
                char *e = memchr(line, '\n', (size_t)(all + len - line));
                if (!e) e = all + len;
                char *q = line;
                while (q < e && strchr(" \t\r", *q)) q++;
                if (q < e) {
                    char *copy = xmalloc((size_t)(e - line) + 1);
                    memcpy(copy, line, (size_t)(e - line));
                    copy[e - line] = 0;
                    tl_push(&in, copy, (size_t)(e - line));
                }
                line = e + 1;
            }
            free(all);
        } else {
            data_source src = {.path = (char *)jsonl, .format = "jsonl", .field = (char *)field, .weight = 1};
            char **docs;
            size_t *lens, n;
            if (data_read_documents(&src, &docs, &lens, &n)) rc = -1;
            else {
                for (size_t i = 0; i < n; i++) tl_push(&in, docs[i], lens[i]);
                free(docs);
                free(lens);
            }
        }
    } else {
        const char *f = text_file ? text_file : "-";
        size_t len;
        char *all = strcmp(f, "-") ? fs_read_file(f, &len) : read_stream(stdin, &len);
        src_name = strcmp(f, "-") ? f : "standard input";
        if (!all) rc = -1;
        else tl_push(&in, all, len);
    }
    if (!rc) rc = decode ? do_decode(tk, &in, json, field, jsonl != NULL, src_name)
                         : do_encode(tk, &in, json, src_name, jsonl != NULL);
    tl_free(&in);
    tokenizer_free(tk);
    return rc ? cli_fail() : 0;
}
