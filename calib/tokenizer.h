/* tokenizer — Hugging Face tokenizer.json (byte-level BPE), ids identical to `tokenizers`.
 * Normalizer NFC/NFD/NFKC/NFKD (utf8proc, Sequence), pre-tokenizer Split (PCRE2, UTF+UCP) /
 * ByteLevel / Sequence, BPE merges by rank, added tokens matched before pre-tokenization.
 * A .json.gz file is accepted. Encoding equals tokenizers' encode(text,
 * add_special_tokens=False): special tokens written in the text become their single ids, and
 * the post_processor adds nothing. Details: docs/tokenizer.md. */
#ifndef CALIB_TOKENIZER_H
#define CALIB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* NULL + err naming the file on a missing model, an unsupported type, bad merges, ... */
tokenizer *tokenizer_load(const char *path);
void tokenizer_free(tokenizer *tk);
/* ids: malloc'd (also when *n == 0). Thread-safe (the word cache is sharded and locked).
 * Text must be valid UTF-8 (error otherwise, naming the byte offset). */
int tokenizer_encode(const tokenizer *tk, const char *text, size_t len, int32_t **ids, size_t *n);
/* malloc'd UTF-8, NUL-terminated; invalid byte sequences become U+FFFD. NULL + err on an
 * unknown id or an unsupported decoder. */
char *tokenizer_decode(const tokenizer *tk, const int32_t *ids, size_t n, size_t *len);
int tokenizer_token_to_id(const tokenizer *tk, const char *token); /* -1 if absent */
/* Max id + 1 over the model vocabulary and the added tokens. */
int tokenizer_vocab_size(const tokenizer *tk);
/* EOS id: model_dir/tokenizer_config.json "eos_token" when present (model_dir may be NULL),
 * else the first of <|endoftext|>, </s>, <|end_of_text|>, <eos> that exists. -1 + err. */
int tokenizer_eos_id(const tokenizer *tk, const char *model_dir);

#endif
