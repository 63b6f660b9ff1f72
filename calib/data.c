/* data — calibration and evaluation token windows (see calib/data.h).
 *
 * Each source becomes one token stream: text documents are tokenized (in parallel, the
 * tokenizer is thread-safe) and each is followed by the EOS id; pre-tokenized ids are taken
 * as they are (rows of an [N, T] tensor are documents; no EOS is added).
 *
 * Randomness: splitmix64 (Steele, Lea & Flood 2014), one generator per source seeded with
 * seed ^ (0xA0761D6478BD642F * (source index + 1)); integers below m by Lemire's unbiased
 * multiply-and-reject. The same seed, sources and tokenizer give the same windows on every
 * machine and thread count.
 *
 * concat windows: n non-overlapping windows at uniformly random places in the stream: draw
 *   n offsets u_i in [0, L - n·T], sort them, window i starts at u_(i) + i·T.
 * document windows: windows start at a document start and may run on into the next
 *   documents; candidates are taken in random order and kept when they overlap no kept
 *   window. If that random greedy pass comes up short although n windows fit (the maximum is
 *   found by a greedy pass from the front), a random n-subset of that maximal packing is used.
 * allow_repeat, when n windows do not fit: starts are drawn independently (uniform over the
 *   stream, or over the documents) and the stream is read cyclically.
 * Windows are stored source by source, in stream order. */
#include "calib/data.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "io/safetensors.h"

/* ---------- random numbers ---------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, m), m > 0. */
static uint64_t rand_below(uint64_t *s, uint64_t m)
{
    unsigned __int128 p = (unsigned __int128)splitmix64(s) * m;
    uint64_t lo = (uint64_t)p;
    if (lo < m) {
        uint64_t t = -m % m;
        while (lo < t) {
            p = (unsigned __int128)splitmix64(s) * m;
            lo = (uint64_t)p;
        }
    }
    return (uint64_t)(p >> 64);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---------- documents ---------- */

static const char *source_format(const data_source *src)
{
    if (src->format && src->format[0]) return src->format;
    const char *dot = strrchr(src->path, '.');
    if (dot && (!strcmp(dot, ".jsonl") || !strcmp(dot, ".json"))) return "jsonl";
    if (dot && !strcmp(dot, ".safetensors")) return "ids";
    if (strstr(src->path, ".safetensors:")) return "ids";
    return "text";
}

static void push_doc(char ***docs, size_t **lens, size_t *n, size_t *cap, char *d, size_t len)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *docs = xrealloc(*docs, *cap * sizeof **docs);
        *lens = xrealloc(*lens, *cap * sizeof **lens);
    }
    (*docs)[*n] = d;
    (*lens)[*n] = len;
    (*n)++;
}

int data_read_documents(const data_source *src, char ***docs, size_t **lens, size_t *n_docs)
{
    *docs = NULL;
    *lens = NULL;
    *n_docs = 0;
    if (!src || !src->path) return err_set("data source without a path");
    const char *fmt = source_format(src);
    size_t len, cap = 0;
    if (!strcmp(fmt, "ids")) return err_set("%s: a pre-tokenized (ids) source has no text documents", src->path);
    if (strcmp(fmt, "jsonl") && strcmp(fmt, "text"))
        return err_set("%s: unknown source format \"%s\" (jsonl, text, ids)", src->path, fmt);
    char *text = fs_read_file(src->path, &len);
    if (!text) return -1;
    if (!strcmp(fmt, "text")) { /* the whole file, bytes as they are, is one document */
        if (len) push_doc(docs, lens, n_docs, &cap, text, len);
        else free(text);
        return 0;
    }
    const char *field = src->field && src->field[0] ? src->field : "text";
    size_t lineno = 0;
    for (char *line = text; line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        if (!end) end = text + len;
        lineno++;
        char *p = line;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
        if (p < end) {
            cJSON *o = cJSON_ParseWithLength(line, (size_t)(end - line));
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, field);
            if (!o || !cJSON_IsString(t)) {
                if (!o) err_set("%s:%zu: not valid JSON", src->path, lineno);
                else err_set("%s:%zu: field \"%s\" missing or not a string", src->path, lineno, field);
                cJSON_Delete(o);
                free(text);
                for (size_t i = 0; i < *n_docs; i++) free((*docs)[i]);
                free(*docs);
                free(*lens);
                *docs = NULL;
                *lens = NULL;
                *n_docs = 0;
                return -1;
            }
            push_doc(docs, lens, n_docs, &cap, xstrdup(t->valuestring), strlen(t->valuestring));
            cJSON_Delete(o);
        }
        line = end + 1;
    }
    free(text);
    return 0;
}

/* ---------- token streams ---------- */

typedef struct {
    int32_t *tok;
    int64_t len;
    int64_t *doc; /* document start offsets */
    int64_t n_doc;
} stream;

static void stream_free(stream *s)
{
    free(s->tok);
    free(s->doc);
    memset(s, 0, sizeof *s);
}

static int stream_from_ids(const data_source *src, stream *s)
{
    st_set *set;
    const st_tensor *t;
    if (st_open_spec(src->path, &set, &t)) { /* several tensors and none named: try input_ids */
        set = fs_exists(src->path) ? st_open(src->path) : NULL;
        t = set ? st_find(set, "input_ids") : NULL;
        if (!t) {
            if (set) err_set("%s: holds %zu tensors and none is 'input_ids'; name one as FILE:TENSOR", src->path,
                             st_count(set));
            st_close(set);
            return -1;
        }
    }
    int rc = 0;
    if (t->dtype != DT_I32 && t->dtype != DT_I64) {
        rc = err_set("%s: tensor '%s' is %s; token ids must be I32 or I64", src->path, t->name, dtype_name(t->dtype));
    } else if (t->ndim != 1 && t->ndim != 2) {
        rc = err_set("%s: tensor '%s' has %d dimensions; token ids must be [N, T] or flat", src->path, t->name, t->ndim);
    } else {
        int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
        s->len = rows * cols;
        s->tok = xmalloc(((size_t)s->len + 1) * sizeof *s->tok);
        s->n_doc = cols > 0 ? rows : 0;
        s->doc = xmalloc(((size_t)s->n_doc + 1) * sizeof *s->doc);
        for (int64_t r = 0; r < s->n_doc; r++) s->doc[r] = r * cols;
        for (int64_t i = 0; i < s->len && !rc; i++) {
            /* mapped tensor data need not be aligned: copy each element out */
            int64_t v;
            if (t->dtype == DT_I32) {
                int32_t v32;
                memcpy(&v32, (const char *)t->data + (size_t)i * sizeof v32, sizeof v32);
                v = v32;
            } else {
                memcpy(&v, (const char *)t->data + (size_t)i * sizeof v, sizeof v);
            }
            if (v < 0 || v > INT32_MAX) rc = err_set("%s: tensor '%s': element %lld = %lld is not a token id", src->path, t->name, (long long)i, (long long)v);
            else s->tok[i] = (int32_t)v;
        }
    }
    st_close(set);
    if (rc) stream_free(s);
    return rc;
}

static int stream_from_text(const tokenizer *tk, int eos_id, const data_source *src, stream *s)
{
    if (!tk) return err_set("%s: a tokenizer is needed for text sources", src->path);
    char **docs;
    size_t *lens, n;
    if (data_read_documents(src, &docs, &lens, &n)) return -1;
    int32_t **ids = xcalloc(n + 1, sizeof *ids);
    size_t *cnt = xcalloc(n + 1, sizeof *cnt);
    long long bad = -1;
    char msg[1024] = "";
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < n; i++) {
        if (tokenizer_encode(tk, docs[i], lens[i], &ids[i], &cnt[i])) {
#pragma omp critical(data_tokenize_error)
            if (bad < 0 || (long long)i < bad) { /* report the first failing document */
                bad = (long long)i;
                snprintf(msg, sizeof msg, "%s", err_msg()); /* err_msg() is per thread */
            }
        }
    }
    int rc = 0;
    if (bad >= 0) {
        rc = err_set("%s: document %lld: %s", src->path, bad + 1, msg);
    } else {
        int64_t total = 0;
        for (size_t i = 0; i < n; i++) total += (int64_t)cnt[i] + (eos_id >= 0);
        s->tok = xmalloc(((size_t)total + 1) * sizeof *s->tok);
        s->doc = xmalloc((n + 1) * sizeof *s->doc);
        for (size_t i = 0; i < n; i++) {
            s->doc[s->n_doc++] = s->len;
            memcpy(s->tok + s->len, ids[i], cnt[i] * sizeof *s->tok);
            s->len += (int64_t)cnt[i];
            if (eos_id >= 0) s->tok[s->len++] = eos_id;
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
        free(docs[i]);
    }
    free(ids);
    free(cnt);
    free(docs);
    free(lens);
    return rc;
}

static int load_stream(const tokenizer *tk, int eos_id, const data_source *src, stream *s)
{
    memset(s, 0, sizeof *s);
    if (!src || !src->path) return err_set("data source without a path");
    return !strcmp(source_format(src), "ids") ? stream_from_ids(src, s) : stream_from_text(tk, eos_id, src, s);
}

/* ---------- window placement ---------- */

/* Index of the document holding token position p. */
static int64_t doc_of(const stream *s, int64_t p)
{
    int64_t lo = 0, hi = s->n_doc - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (s->doc[mid] <= p) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static int place_concat(const stream *s, int c, int T, int allow_repeat, uint64_t *rng, int64_t *starts,
                        const char *path)
{
    int64_t need = (int64_t)c * T;
    if (need <= s->len) {
        uint64_t slack = (uint64_t)(s->len - need);
        for (int i = 0; i < c; i++) starts[i] = (int64_t)rand_below(rng, slack + 1);
        qsort(starts, (size_t)c, sizeof *starts, cmp_i64);
        for (int i = 0; i < c; i++) starts[i] += (int64_t)i * T;
        return 0;
    }
    if (!allow_repeat || s->len == 0)
        return err_set("%s: %d windows x %d tokens need %lld tokens, the source has %lld%s", path, c, T,
                       (long long)need, (long long)s->len,
                       s->len ? " (set allow_repeat, or lower calibration.samples / calibration.seq_len)" : "");
    for (int i = 0; i < c; i++) starts[i] = (int64_t)rand_below(rng, (uint64_t)s->len);
    qsort(starts, (size_t)c, sizeof *starts, cmp_i64);
    return 0;
}

static int place_document(const stream *s, int c, int T, int allow_repeat, uint64_t *rng, int64_t *starts,
                          const char *path)
{
    /* Maximal packing: greedy from the front (all windows have the same length). */
    int64_t *pack = xmalloc(((size_t)s->n_doc + 1) * sizeof *pack), m = 0, last_end = 0;
    for (int64_t d = 0; d < s->n_doc; d++)
        if (s->doc[d] >= last_end && s->doc[d] + T <= s->len) {
            pack[m++] = d;
            last_end = s->doc[d] + T;
        }
    if (m < c) {
        free(pack);
        if (!allow_repeat || s->n_doc == 0)
            return err_set("%s: %d document windows x %d tokens need %lld tokens; at most %lld non-overlapping "
                           "windows start at a document (%lld tokens in %lld documents)%s",
                           path, c, T, (long long)c * T, (long long)m, (long long)s->len, (long long)s->n_doc,
                           s->n_doc ? " (set allow_repeat, or lower calibration.samples / calibration.seq_len)" : "");
        for (int i = 0; i < c; i++) starts[i] = s->doc[rand_below(rng, (uint64_t)s->n_doc)];
        qsort(starts, (size_t)c, sizeof *starts, cmp_i64);
        return 0;
    }
    /* Random greedy: candidates in random order, kept when their documents are still free. */
    int64_t *cand = xmalloc(((size_t)s->n_doc + 1) * sizeof *cand), nc = 0;
    for (int64_t d = 0; d < s->n_doc; d++)
        if (s->doc[d] + T <= s->len) cand[nc++] = d;
    unsigned char *used = xcalloc((size_t)s->n_doc + 1, 1);
    int got = 0;
    for (int64_t i = 0; i < nc && got < c; i++) {
        int64_t j = i + (int64_t)rand_below(rng, (uint64_t)(nc - i)), d = cand[j];
        cand[j] = cand[i];
        cand[i] = d;
        int64_t e = doc_of(s, s->doc[d] + T - 1), k;
        for (k = d; k <= e && !used[k]; k++) {}
        if (k <= e) continue;
        memset(used + d, 1, (size_t)(e - d + 1));
        starts[got++] = s->doc[d];
    }
    if (got < c) { /* fall back to a random c-subset of the maximal packing */
        for (int i = 0; i < c; i++) {
            int64_t j = i + (int64_t)rand_below(rng, (uint64_t)(m - i)), t = pack[j];
            pack[j] = pack[i];
            pack[i] = t;
            starts[i] = s->doc[t];
        }
    }
    qsort(starts, (size_t)c, sizeof *starts, cmp_i64);
    free(used);
    free(cand);
    free(pack);
    return 0;
}

static void copy_window(const stream *s, int64_t start, int T, int32_t *dst)
{
    for (int j = 0; j < T; j++) dst[j] = s->tok[(start + j) % s->len]; /* cyclic only with allow_repeat */
}

/* ---------- public ---------- */

int calib_sample(const tokenizer *tk, int eos_id, const data_source *src, int n_src, int n, int T,
                 const sample_opts *o, token_windows *out)
{
    memset(out, 0, sizeof *out);
    sample_opts dflt = {0};
    if (!o) o = &dflt;
    if (n <= 0 || T <= 0) return err_set("calibration: calibration.samples (%d) and calibration.seq_len (%d) must be positive", n, T);
    if (n_src <= 0) return err_set("calibration: no data sources");
    double wsum = 0;
    for (int s = 0; s < n_src; s++) {
        if (!(src[s].weight >= 0)) return err_set("%s: source weight %g must be >= 0", src[s].path, src[s].weight);
        wsum += src[s].weight;
    }
    if (!(wsum > 0)) return err_set("calibration: the source weights sum to 0");
    /* Split n by weight: floors, then the remainder to the largest fractions (lower index on ties). */
    int *cnt = xcalloc((size_t)n_src, sizeof *cnt), given = 0;
    double *frac = xcalloc((size_t)n_src, sizeof *frac);
    for (int s = 0; s < n_src; s++) {
        double share = n * src[s].weight / wsum;
        cnt[s] = (int)share;
        frac[s] = share - cnt[s];
        given += cnt[s];
    }
    while (given < n) {
        int best = -1;
        for (int s = 0; s < n_src; s++)
            if (src[s].weight > 0 && (best < 0 || frac[s] > frac[best])) best = s;
        cnt[best]++;
        frac[best] = -1;
        given++;
    }
    free(frac);
    out->n = n;
    out->T = T;
    out->ids = xmalloc((size_t)n * (size_t)T * sizeof *out->ids);
    int64_t *starts = xmalloc(((size_t)n + 1) * sizeof *starts);
    int row = 0, rc = 0;
    for (int s = 0; s < n_src && !rc; s++) {
        stream st;
        if (load_stream(tk, eos_id, &src[s], &st)) {
            rc = -1;
            break;
        }
        out->tokens_available += st.len;
        if (cnt[s] > 0) {
            uint64_t rng = o->seed ^ (0xA0761D6478BD642Full * (uint64_t)(s + 1));
            rc = o->document_windows ? place_document(&st, cnt[s], T, o->allow_repeat, &rng, starts, src[s].path)
                                     : place_concat(&st, cnt[s], T, o->allow_repeat, &rng, starts, src[s].path);
            for (int i = 0; i < cnt[s] && !rc; i++, row++) copy_window(&st, starts[i], T, out->ids + (size_t)row * T);
        }
        stream_free(&st);
    }
    free(starts);
    free(cnt);
    if (rc) token_windows_free(out);
    return rc;
}

int eval_windows(const tokenizer *tk, int eos_id, const data_source *src, int n, int T, token_windows *out)
{
    memset(out, 0, sizeof *out);
    if (T <= 0) return err_set("evaluation: seq_len (%d) must be positive", T);
    stream st;
    if (load_stream(tk, eos_id, src, &st)) return -1;
    int64_t fit = st.len / T;
    if (n <= 0 || n > fit) n = (int)(fit < INT32_MAX ? fit : INT32_MAX);
    out->n = n;
    out->T = T;
    out->tokens_available = st.len;
    out->ids = xmalloc(((size_t)n * (size_t)T + 1) * sizeof *out->ids);
    memcpy(out->ids, st.tok, (size_t)n * (size_t)T * sizeof *out->ids);
    stream_free(&st);
    return 0;
}

void token_windows_free(token_windows *w)
{
    if (!w) return;
    free(w->ids);
    memset(w, 0, sizeof *w);
}
