/* tokenizer_bpe — BPE model: vocabulary, ranked merges, word merging, word cache.
 * Semantics follow Hugging Face tokenizers' models/bpe (see tokenizer_bpe.h). */
#include "calib/tokenizer_bpe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"

/* ---------- small helpers ---------- */

void i32vec_push(i32vec *a, int32_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 256;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = x;
}

void i32vec_append(i32vec *a, const int32_t *x, size_t n)
{
    if (a->n + n > a->cap) {
        while (a->n + n > a->cap) a->cap = a->cap ? a->cap * 2 : 256;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    memcpy(a->v + a->n, x, n * sizeof *x);
    a->n += n;
}

int utf8_put(uint32_t cp, char *b)
{
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (char)(0xF0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A fast 64-bit string hash (8 bytes per step, multiply-xorshift mixing). */
static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        h = (h ^ x) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, s, n);
    h = (h ^ x) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---------- model ---------- */

typedef struct {
    uint64_t hash;
    const char *s;
    uint32_t len;
    int32_t id; /* -1: empty slot */
} vslot;

typedef struct {
    uint64_t key; /* (left << 32) | right; UINT64_MAX: empty */
    uint32_t rank;
    int32_t id;
} mslot;

typedef struct centry {
    uint64_t hash;
    uint32_t klen, nids;
    int32_t data[]; /* nids ids, then klen key bytes */
} centry;

#define CACHE_SHARDS 64
#define CACHE_SHARD_SLOTS 4096
#define CACHE_MAX_WORD 256

typedef struct {
    uint64_t hash; /* kept next to the pointer: a probe touches one cache line */
    centry *e;
} cslot;

typedef struct {
    pthread_mutex_t mu;
    cslot *slot;
    size_t count;
    uint64_t hits, misses;
} cshard;

struct bpe_model {
    char *arena;          /* every vocabulary string, back to back */
    vslot *vtab;
    size_t vcap;
    const char **id_str;  /* [max_id + 1], NULL where no token */
    uint32_t *id_len;
    int max_id;
    mslot *mtab;
    size_t mcap;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix (NULL = none) */
    int unk_id;            /* -1: no unk token */
    int fuse_unk, byte_fallback, ignore_merges;
    int byte_fallback_id[256]; /* <0xXX> ids, -1 where absent */
    int byte_level;
    uint32_t byte_char[256];  /* byte → ByteLevel code point */
    int32_t byte_sym[4][256]; /* [is_first | is_last << 1][byte] → initial symbol id, -1 */
    cshard cache[CACHE_SHARDS];
};

int bpe_token_to_id(const bpe_model *m, const char *s, size_t len)
{
    uint64_t h = hash_bytes(s, len);
    for (size_t i = h & (m->vcap - 1);; i = (i + 1) & (m->vcap - 1)) {
        const vslot *v = &m->vtab[i];
        if (v->id < 0) return -1;
        if (v->hash == h && v->len == len && !memcmp(v->s, s, len)) return v->id;
    }
}

const char *bpe_id_to_token(const bpe_model *m, int id, size_t *len)
{
    if (id < 0 || id > m->max_id || !m->id_str[id]) return NULL;
    if (len) *len = m->id_len[id];
    return m->id_str[id];
}

int bpe_max_id(const bpe_model *m) { return m->max_id; }

static void vocab_insert(bpe_model *m, const char *s, uint32_t len, int32_t id)
{
    uint64_t h = hash_bytes(s, len);
    for (size_t i = h & (m->vcap - 1);; i = (i + 1) & (m->vcap - 1)) {
        vslot *v = &m->vtab[i];
        if (v->id < 0 || (v->hash == h && v->len == len && !memcmp(v->s, s, len))) {
            *v = (vslot){h, s, len, id}; /* a repeated key keeps its last id, like serde */
            return;
        }
    }
}

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static inline size_t pair_hash(uint64_t k, size_t cap) { return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1); }

static void merge_insert(bpe_model *m, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t k = pair_key(a, b);
    for (size_t i = pair_hash(k, m->mcap);; i = (i + 1) & (m->mcap - 1)) {
        mslot *s = &m->mtab[i];
        if (s->key == UINT64_MAX || s->key == k) {
            *s = (mslot){k, rank, id};
            return;
        }
    }
}

static inline const mslot *merge_find(const bpe_model *m, int32_t a, int32_t b)
{
    uint64_t k = pair_key(a, b);
    for (size_t i = pair_hash(k, m->mcap);; i = (i + 1) & (m->mcap - 1)) {
        const mslot *s = &m->mtab[i];
        if (s->key == k) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

void bpe_free(bpe_model *m)
{
    if (!m) return;
    for (int s = 0; s < CACHE_SHARDS; s++) {
        if (m->cache[s].slot) {
            for (size_t i = 0; i < CACHE_SHARD_SLOTS; i++) free(m->cache[s].slot[i].e);
            free(m->cache[s].slot);
        }
        pthread_mutex_destroy(&m->cache[s].mu);
    }
    free(m->arena);
    free(m->vtab);
    free(m->id_str);
    free(m->id_len);
    free(m->mtab);
    free(m->prefix);
    free(m->suffix);
    free(m);
}

static int opt_string(const cJSON *model, const char *key, char **out, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return err_set("%s: model.%s must be a string or null", path, key);
    *out = xstrdup(v->valuestring);
    return 0;
}

static int opt_bool(const cJSON *model, const char *key, int *out, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, key);
    *out = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return err_set("%s: model.%s must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int load_vocab(bpe_model *m, const cJSON *vocab, const char *path)
{
    if (!cJSON_IsObject(vocab)) return err_set("%s: model.vocab missing or not an object", path);
    size_t n = 0, bytes = 0;
    int max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 16e6 ||
            e->valuedouble != (double)(int)e->valuedouble)
            return err_set("%s: model.vocab[\"%s\"]: id must be an integer in [0, 16M]", path, e->string);
        n++;
        bytes += strlen(e->string) + 1;
        if (e->valueint > max_id) max_id = e->valueint;
    }
    m->arena = xmalloc(bytes);
    m->vcap = pow2_at_least(2 * n + 16);
    m->vtab = xmalloc(m->vcap * sizeof *m->vtab);
    for (size_t i = 0; i < m->vcap; i++) m->vtab[i].id = -1;
    m->max_id = max_id;
    m->id_str = xcalloc((size_t)max_id + 2, sizeof *m->id_str);
    m->id_len = xcalloc((size_t)max_id + 2, sizeof *m->id_len);
    char *p = m->arena;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        size_t len = strlen(e->string);
        memcpy(p, e->string, len + 1);
        vocab_insert(m, p, (uint32_t)len, e->valueint);
        m->id_str[e->valueint] = p;
        m->id_len[e->valueint] = (uint32_t)len;
        p += len + 1;
    }
    return 0;
}

static int load_merges(bpe_model *m, const cJSON *merges, const char *path)
{
    if (!merges || cJSON_IsNull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges)) return err_set("%s: model.merges must be an array", path);
    size_t n = merges ? (size_t)cJSON_GetArraySize(merges) : 0;
    m->mcap = pow2_at_least(2 * n + 16);
    m->mtab = xmalloc(m->mcap * sizeof *m->mtab);
    for (size_t i = 0; i < m->mcap; i++) m->mtab[i].key = UINT64_MAX;
    size_t plen = m->prefix ? strlen(m->prefix) : 0;
    char *buf = NULL;
    size_t bufcap = 0;
    uint32_t rank = 0;
    for (const cJSON *e = merges ? merges->child : NULL; e; e = e->next, rank++) {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(e)) { /* legacy "a b" */
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp) {
                free(buf);
                return err_set("%s: model.merges[%u]: \"%s\" is not two tokens separated by a space", path,
                               rank, e->valuestring);
            }
            a = e->valuestring;
            alen = (size_t)(sp - a);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            alen = strlen(a);
            b = e->child->next->valuestring;
            blen = strlen(b);
        } else {
            free(buf);
            return err_set("%s: model.merges[%u]: expected [\"a\", \"b\"] or \"a b\"", path, rank);
        }
        int ia = bpe_token_to_id(m, a, alen), ib = bpe_token_to_id(m, b, blen);
        if (ia < 0 || ib < 0) {
            int bad_a = ia < 0;
            free(buf);
            return err_set("%s: model.merges[%u]: token \"%.*s\" is not in the vocabulary", path, rank,
                           (int)(bad_a ? alen : blen), bad_a ? a : b);
        }
        size_t skip = (plen && blen >= plen && !memcmp(b, m->prefix, plen)) ? plen : 0;
        if (alen + blen + 1 > bufcap) {
            bufcap = 2 * (alen + blen + 1);
            buf = xrealloc(buf, bufcap);
        }
        memcpy(buf, a, alen);
        memcpy(buf + alen, b + skip, blen - skip);
        size_t mlen = alen + blen - skip;
        int id = bpe_token_to_id(m, buf, mlen);
        if (id < 0) {
            err_set("%s: model.merges[%u]: merged token \"%.*s\" is not in the vocabulary", path, rank, (int)mlen,
                    buf);
            free(buf);
            return -1;
        }
        merge_insert(m, ia, ib, rank, id);
    }
    free(buf);
    return 0;
}

bpe_model *bpe_from_json(const cJSON *model, const char *path)
{
    bpe_model *m = xcalloc(1, sizeof *m);
    for (int s = 0; s < CACHE_SHARDS; s++) pthread_mutex_init(&m->cache[s].mu, NULL);
    m->unk_id = -1;
    m->max_id = -1;
    char *unk = NULL;
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (drop && !cJSON_IsNull(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0)) {
        err_set("%s: model.dropout is set; BPE dropout is random and not supported", path);
        goto fail;
    }
    if (opt_string(model, "continuing_subword_prefix", &m->prefix, path) ||
        opt_string(model, "end_of_word_suffix", &m->suffix, path) || opt_string(model, "unk_token", &unk, path) ||
        opt_bool(model, "fuse_unk", &m->fuse_unk, path) || opt_bool(model, "byte_fallback", &m->byte_fallback, path) ||
        opt_bool(model, "ignore_merges", &m->ignore_merges, path))
        goto fail;
    if (load_vocab(m, cJSON_GetObjectItemCaseSensitive(model, "vocab"), path)) goto fail;
    if (load_merges(m, cJSON_GetObjectItemCaseSensitive(model, "merges"), path)) goto fail;
    if (unk) {
        m->unk_id = bpe_token_to_id(m, unk, strlen(unk));
        if (m->unk_id < 0) {
            err_set("%s: model.unk_token \"%s\" is not in the vocabulary", path, unk);
            goto fail;
        }
    }
    for (int b = 0; b < 256; b++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", b);
        m->byte_fallback_id[b] = bpe_token_to_id(m, t, 6);
    }
    free(unk);
    return m;
fail:
    free(unk);
    bpe_free(m);
    return NULL;
}

/* Id of the initial symbol `piece` (one character) with the prefix/suffix rules. */
static int symbol_id(const bpe_model *m, const char *piece, size_t len, int first, int last)
{
    if ((first || !m->prefix) && (!last || !m->suffix)) return bpe_token_to_id(m, piece, len);
    char buf[256];
    size_t pl = (!first && m->prefix) ? strlen(m->prefix) : 0, sl = (last && m->suffix) ? strlen(m->suffix) : 0;
    if (pl + len + sl > sizeof buf) return -1;
    memcpy(buf, m->prefix ? m->prefix : "", pl);
    memcpy(buf + pl, piece, len);
    memcpy(buf + pl + len, m->suffix ? m->suffix : "", sl);
    return bpe_token_to_id(m, buf, pl + len + sl);
}

void bpe_set_byte_level(bpe_model *m, const uint32_t byte_to_char[256])
{
    m->byte_level = 1;
    memcpy(m->byte_char, byte_to_char, sizeof m->byte_char);
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 256; b++) {
            char c[4];
            int n = utf8_put(byte_to_char[b], c);
            m->byte_sym[k][b] = symbol_id(m, c, (size_t)n, k & 1, (k >> 1) & 1);
        }
}

/* ---------- merging ---------- */

typedef struct {
    int32_t *sym;
    size_t n, cap;
    int32_t unk_pending; /* -1 none */
} symbuf;

/* The buffer is sized for the worst case up front (see bpe_encode_word). */
static void sym_push(symbuf *s, int32_t id)
{
    if (s->n < s->cap) s->sym[s->n++] = id;
}

/* Append one initial symbol whose id is `id` (-1: not in the vocabulary; `piece` are the
 * character's bytes as the model sees them) following byte_fallback / unk / fuse_unk. */
static void add_symbol(const bpe_model *m, symbuf *s, int32_t id, const char *piece, size_t len)
{
    if (id >= 0) {
        if (s->unk_pending >= 0) sym_push(s, s->unk_pending);
        s->unk_pending = -1;
        sym_push(s, id);
        return;
    }
    if (m->byte_fallback) {
        int ok = 1;
        for (size_t i = 0; i < len; i++) ok &= m->byte_fallback_id[(uint8_t)piece[i]] >= 0;
        if (ok) {
            /* Like Hugging Face: byte tokens do not flush a pending unk. */
            for (size_t i = 0; i < len; i++) sym_push(s, m->byte_fallback_id[(uint8_t)piece[i]]);
            return;
        }
    }
    if (m->unk_id < 0) return; /* no unk token: the character is dropped */
    if (s->unk_pending >= 0 && !m->fuse_unk) sym_push(s, s->unk_pending);
    s->unk_pending = m->unk_id;
}

typedef struct {
    uint32_t rank, pos;
} hent;

static inline int hless(hent a, hent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(hent *h, size_t *n, hent x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static hent heap_pop(hent *h, size_t *n)
{
    hent top = h[0], x = h[--*n];
    size_t i = 0, len = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= len) break;
        if (c + 1 < len && hless(h[c + 1], h[c])) c++;
        if (!hless(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    if (len) h[i] = x;
    return top;
}

/* Merge sym[0..n) in place; returns the number of symbols left (compacted to the front). */
static size_t merge_all(const bpe_model *m, int32_t *sym, size_t n)
{
    if (n < 2) return n;
    int32_t stack_buf[3 * 64];
    hent stack_heap[3 * 64];
    int32_t *next = n <= 64 ? stack_buf : xmalloc(3 * n * sizeof *next), *prev = next + n;
    hent *heap = n <= 64 ? stack_heap : xmalloc(3 * n * sizeof *heap);
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        if (i + 1 < n) {
            const mslot *ms = merge_find(m, sym[i], sym[i + 1]);
            if (ms) heap_push(heap, &hn, (hent){ms->rank, (uint32_t)i});
        }
    }
    while (hn) {
        hent t = heap_pop(heap, &hn);
        int32_t p = (int32_t)t.pos, q;
        if (sym[p] < 0 || (q = next[p]) < 0) continue;
        const mslot *ms = merge_find(m, sym[p], sym[q]);
        if (!ms || ms->rank != t.rank) continue; /* stale: a neighbour changed since the push */
        sym[p] = ms->id;
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0) {
            const mslot *l = merge_find(m, sym[prev[p]], sym[p]);
            if (l) heap_push(heap, &hn, (hent){l->rank, (uint32_t)prev[p]});
        }
        if (next[p] >= 0) {
            const mslot *r = merge_find(m, sym[p], sym[next[p]]);
            if (r) heap_push(heap, &hn, (hent){r->rank, (uint32_t)p});
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (sym[i] >= 0) sym[k++] = sym[i];
    if (n > 64) {
        free(next);
        free(heap);
    }
    return k;
}

/* ---------- cache ---------- */

static int cache_get(const bpe_model *m, const char *w, size_t len, uint64_t h, i32vec *out)
{
    cshard *s = (cshard *)&m->cache[h & (CACHE_SHARDS - 1)];
    int hit = 0;
    pthread_mutex_lock(&s->mu);
    if (s->slot) {
        for (size_t i = (h >> 6) & (CACHE_SHARD_SLOTS - 1);; i = (i + 1) & (CACHE_SHARD_SLOTS - 1)) {
            const centry *e = s->slot[i].e;
            if (!e) break;
            if (s->slot[i].hash == h && e->klen == len && !memcmp(e->data + e->nids, w, len)) {
                i32vec_append(out, e->data, e->nids);
                hit = 1;
                break;
            }
        }
    }
    if (hit) s->hits++;
    else s->misses++;
    pthread_mutex_unlock(&s->mu);
    return hit;
}

static void cache_put(const bpe_model *m, const char *w, size_t len, uint64_t h, const int32_t *ids, size_t n)
{
    cshard *s = (cshard *)&m->cache[h & (CACHE_SHARDS - 1)];
    centry *e = xmalloc(sizeof *e + n * sizeof(int32_t) + len);
    e->hash = h;
    e->klen = (uint32_t)len;
    e->nids = (uint32_t)n;
    memcpy(e->data, ids, n * sizeof *ids);
    memcpy(e->data + n, w, len);
    pthread_mutex_lock(&s->mu);
    if (!s->slot) s->slot = xcalloc(CACHE_SHARD_SLOTS, sizeof *s->slot);
    if (4 * (s->count + 1) > 3 * CACHE_SHARD_SLOTS) { /* full: start the shard over */
        for (size_t i = 0; i < CACHE_SHARD_SLOTS; i++) {
            free(s->slot[i].e);
            s->slot[i].e = NULL;
        }
        s->count = 0;
    }
    size_t i = (h >> 6) & (CACHE_SHARD_SLOTS - 1);
    for (;; i = (i + 1) & (CACHE_SHARD_SLOTS - 1)) {
        const centry *o = s->slot[i].e;
        if (!o) break;
        if (s->slot[i].hash == h && o->klen == len && !memcmp(o->data + o->nids, w, len)) { /* raced: keep one */
            free(e);
            e = NULL;
            break;
        }
    }
    if (e) {
        s->slot[i] = (cslot){h, e};
        s->count++;
    }
    pthread_mutex_unlock(&s->mu);
}

void bpe_cache_stats(const bpe_model *m, uint64_t *hits, uint64_t *misses)
{
    *hits = *misses = 0;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        cshard *s = (cshard *)&m->cache[i];
        pthread_mutex_lock(&s->mu);
        *hits += s->hits;
        *misses += s->misses;
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---------- encoding one word ---------- */

static size_t utf8_char_len(const char *w, size_t i, size_t len)
{
    uint8_t c = (uint8_t)w[i];
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return i + n <= len ? n : len - i;
}

void bpe_encode_word(const bpe_model *m, const char *w, size_t len, i32vec *out)
{
    if (!len) return;
    if (m->ignore_merges) { /* the whole word as one token when the vocabulary has it */
        int id;
        if (m->byte_level) {
            char *bl = xmalloc(2 * len);
            size_t k = 0;
            for (size_t i = 0; i < len; i++) k += (size_t)utf8_put(m->byte_char[(uint8_t)w[i]], bl + k);
            id = bpe_token_to_id(m, bl, k);
            free(bl);
        } else {
            id = bpe_token_to_id(m, w, len);
        }
        if (id >= 0) {
            i32vec_push(out, id);
            return;
        }
    }
    uint64_t h = 0;
    int cacheable = len < CACHE_MAX_WORD;
    if (cacheable) {
        h = hash_bytes(w, len);
        if (cache_get(m, w, len, h, out)) return;
    }
    /* Capacity bound: a byte-level symbol is at most 2 UTF-8 bytes, so byte fallback gives at
     * most 2 symbols per byte (1 per byte otherwise), plus one pending unk. */
    int32_t local[2 * CACHE_MAX_WORD + 1];
    size_t cap = 2 * len + 1;
    symbuf s = {cap <= sizeof local / sizeof *local ? local : xmalloc(cap * sizeof(int32_t)), 0, cap, -1};
    if (m->byte_level) {
        for (size_t i = 0; i < len; i++) {
            int k = (i == 0) | ((i + 1 == len) << 1);
            uint8_t b = (uint8_t)w[i];
            int32_t id = m->byte_sym[k][b];
            if (id >= 0 && s.unk_pending < 0) {
                s.sym[s.n++] = id; /* the common case */
            } else {
                char c[4];
                int cl = utf8_put(m->byte_char[b], c);
                add_symbol(m, &s, id, c, (size_t)cl);
            }
        }
    } else {
        for (size_t i = 0; i < len;) {
            size_t cl = utf8_char_len(w, i, len);
            add_symbol(m, &s, symbol_id(m, w + i, cl, i == 0, i + cl == len), w + i, cl);
            i += cl;
        }
    }
    if (s.unk_pending >= 0) sym_push(&s, s.unk_pending);
    size_t n = merge_all(m, s.sym, s.n);
    i32vec_append(out, s.sym, n);
    if (cacheable) cache_put(m, w, len, h, s.sym, n);
    if (s.sym != local) free(s.sym);
}
