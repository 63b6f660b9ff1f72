/* data — calibration and evaluation token windows from the job's sources.
 * Sources: JSON Lines (text field), plain text files, pre-tokenized ids (safetensors I32/I64
 * [N, T] or flat). Documents are tokenized, joined with EOS, windows cut deterministically
 * for a seed. */
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

/* N windows of T tokens drawn from the sources (weights split N). Error when N·T cannot be
 * met without repeats (unless allow_repeat), naming tokens available vs needed. */
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
