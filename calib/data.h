/* data — calibration and evaluation token windows from the job's sources.
 * Sources (data_source.format; NULL/"" infers from the extension: .jsonl/.json → jsonl,
 * .safetensors → ids, else text):
 *   jsonl  one document per non-blank line, the string in `field` (default "text");
 *   text   the whole file, bytes as they are, is one document;
 *   ids    pre-tokenized: safetensors I32/I64, [N, T] (each row a document) or flat [L];
 *          "FILE:TENSOR" names the tensor, else the only one, else "input_ids".
 * Text documents are tokenized (in parallel) and each is followed by EOS (none if eos_id < 0);
 * ids are used as they are. Windows are cut deterministically for a seed (splitmix64; the
 * placement rules are in calib/data.c's header comment and docs/tokenizer.md). */
#ifndef CALIB_DATA_H
#define CALIB_DATA_H

#include <stdint.h>

#include "calib/tokenizer.h"
#include "io/job.h"

typedef struct {
    int n, T;
    int32_t *ids;              /* [n, T] */
    int64_t tokens_available;  /* in the joined stream(s) */
} token_windows;

typedef struct {
    uint64_t seed;
    int document_windows;      /* 1: windows start at a document start; 0: concat stream */
    int allow_repeat;
} sample_opts;

/* N windows of T tokens drawn from the sources (weights split N by largest remainder; windows
 * stored source by source, in stream order). Error when N·T cannot be met without repeats
 * (unless allow_repeat), naming tokens available vs needed. tk may be NULL for ids sources. */
int calib_sample(const tokenizer *tk, int eos_id, const data_source *src, int n_src, int n,
                 int T, const sample_opts *o, token_windows *out);

/* Evaluation protocol: tokenize every document, append EOS, concatenate in file order, cut
 * consecutive non-overlapping windows of T from the start, keep the first n (fewer if the
 * text runs out; out->n says how many). */
int eval_windows(const tokenizer *tk, int eos_id, const data_source *src, int n, int T,
                 token_windows *out);

void token_windows_free(token_windows *w);

/* Read the text documents of a source (jsonl field or whole text file). */
int data_read_documents(const data_source *src, char ***docs, size_t **lens, size_t *n_docs);

#endif
