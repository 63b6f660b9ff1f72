/* err — one error message per thread, set where a failure is detected.
 *
 * Contract: library functions that can fail return a negative int (or NULL) and call
 * err_set() with a one-line message naming what failed (file, tensor, YAML key, module).
 * Callers that add context use err_prefix(). The CLI prints err_msg() and exits 1.
 */
#ifndef IO_ERR_H
#define IO_ERR_H

#include <stddef.h>

__attribute__((format(printf, 1, 2))) int err_set(const char *fmt, ...);    /* returns -1 */
__attribute__((format(printf, 1, 2))) int err_prefix(const char *fmt, ...); /* "<prefix>: <old>", returns -1 */
const char *err_msg(void);
void err_clear(void);

/* Allocation that never returns NULL: out of memory is reported and the process exits 1,
 * since no caller can recover from it usefully. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned allocation (for BLAS panels); free with free(). */
void *xmalloc_aligned(size_t n);

#endif
