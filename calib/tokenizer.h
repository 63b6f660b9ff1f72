/* tokenizer — Hugging Face tokenizer.json (byte-level BPE), ids identical to `tokenizers`.
 * Normalizer NFC (utf8proc), pre-tokenizer Split (PCRE2, UTF+UCP) / ByteLevel, BPE merges by
 * rank, added tokens matched before pre-tokenization. A .json.gz file is accepted. */
#ifndef CALIB_TOKENIZER_H
#define CALIB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

tokenizer *tokenizer_load(const char *path);
void tokenizer_free(tokenizer *tk);
/* ids: malloc'd. Thread-safe (the word cache is per tokenizer and locked, or per call). */
int tokenizer_encode(const tokenizer *tk, const char *text, size_t len, int32_t **ids, size_t *n);
/* malloc'd UTF-8, NUL-terminated. */
char *tokenizer_decode(const tokenizer *tk, const int32_t *ids, size_t n, size_t *len);
int tokenizer_token_to_id(const tokenizer *tk, const char *token); /* -1 if absent */
int tokenizer_vocab_size(const tokenizer *tk);

#endif
