/* testutil — small helpers several test binaries share (scratch files, a seeded generator).
 * Linked into every test binary next to testlib. */
#ifndef TESTS_TESTUTIL_H
#define TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* malloc'd "<test_tmpdir()>/name". */
char *test_tmp_path(const char *name);
/* Write text to <test_tmpdir()>/name; returns the path (a static buffer, valid until the next
 * call), or NULL when the file cannot be written. */
const char *test_write_tmp(const char *name, const char *text);
/* Remove a file or directory tree (rm -rf); reports to stderr when that fails. */
void test_rm_rf(const char *path);
/* A safetensors file whose header is `json` and whose data area is data_len bytes, sparse: only
 * the header and `tail` (placed at the very end of the data) are written, so layouts past 4 GiB
 * cost no disk. 0, or -1 when the file cannot be written. */
int test_write_sparse_st(const char *path, const char *json, uint64_t data_len, const void *tail, size_t tail_len);
/* One step of Marsaglia's xorshift64 (13, 7, 17) on *state (must start non-zero). */
uint64_t test_xorshift64(uint64_t *state);

/* Every file of two quantize output trees (and their eora/) identical, report.json skipped
 * (timings) and quant_log.csv compared without its time column; differing files printed.
 * Returns the number of differing or missing files; *n_files = files compared. */
int test_compare_outputs(const char *ref, const char *got, int *n_files);

#endif
