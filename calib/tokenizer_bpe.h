/* tokenizer_bpe — the BPE model of a tokenizer.json (private to calib/tokenizer*.c).
 *
 * Vocabulary: string → id hash map and id → string table. Merges: a hash map from the pair
 * (left id, right id) to (rank, merged id); the rank is the merge's position in the file (a
 * repeated pair keeps its last rank, as Hugging Face's HashMap insert does). A word is merged
 * lowest rank first, leftmost first among equal ranks, with a binary heap over a linked list of
 * symbols: O(n log n) for words of any length.
 *
 * Byte-level mode: the pre-tokenizer's ByteLevel step maps each byte to one printable
 * character, so the initial symbols are per byte; bpe_set_byte_level() precomputes the id of
 * each byte's symbol and words are passed as raw bytes (no mapping per call).
 *
 * Word cache: raw word bytes → ids, 64 shards each behind its own mutex (thread-safe), a shard
 * is emptied when it fills up; words of 256 bytes or more are not cached. */
#ifndef CALIB_TOKENIZER_BPE_H
#define CALIB_TOKENIZER_BPE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *v;
    size_t n, cap;
} i32vec;

void i32vec_push(i32vec *a, int32_t x);
void i32vec_append(i32vec *a, const int32_t *x, size_t n);

typedef struct bpe_model bpe_model;

/* `model` is the "model" object of tokenizer.json; errors name `path`. */
bpe_model *bpe_from_json(const cJSON *model, const char *path);
void bpe_free(bpe_model *m);

int bpe_token_to_id(const bpe_model *m, const char *s, size_t len); /* -1 if absent */
const char *bpe_id_to_token(const bpe_model *m, int id, size_t *len); /* NULL if absent */
int bpe_max_id(const bpe_model *m);                                   /* -1 if empty */

/* Switch to byte-level words (raw bytes in, one initial symbol per byte). */
void bpe_set_byte_level(bpe_model *m, const uint32_t byte_to_char[256]);
/* Append the ids of one pre-tokenized word. Byte-level: raw bytes; otherwise UTF-8 text. */
void bpe_encode_word(const bpe_model *m, const char *w, size_t len, i32vec *out);
/* Cache statistics (hits, misses) since load. */
void bpe_cache_stats(const bpe_model *m, uint64_t *hits, uint64_t *misses);

/* UTF-8 encode one code point into buf (≥ 4 bytes); returns the byte count. */
int utf8_put(uint32_t cp, char *buf);

#endif
