/* dist — the few collective operations a multi-process (MPI) quantization run needs.
 *
 * Built with -DGPTQ_EORA_MPI (`make MPI=1`) these wrap Open MPI on MPI_COMM_WORLD; otherwise
 * they are single-process no-ops (rank 0 of 1), so the pipeline calls them unconditionally
 * and has no #ifdefs. Every function must be called by all ranks in the same order (they are
 * collectives), from the main thread only, never inside an OpenMP region.
 *
 * Errors: an MPI failure cannot be recovered from (the other ranks would wait forever), so a
 * failing collective prints one line and aborts the whole job (dist_abort). */
#ifndef TOOLS_DIST_H
#define TOOLS_DIST_H

#include <stddef.h>
#include <stdint.h>

/* 1 when this binary was built with MPI. */
int dist_available(void);
/* MPI_Init (once; later calls do nothing). Single-process build: nothing. */
void dist_init(int *argc, char ***argv);
/* MPI_Finalize when dist_init ran. */
void dist_finalize(void);
int dist_rank(void); /* 0 before dist_init */
int dist_size(void); /* 1 before dist_init */

/* In-place elementwise sums over all ranks (fp64: the Hessian sums; int64: token counts). */
void dist_allreduce_f64(double *buf, size_t n);
void dist_allreduce_i64(int64_t *buf, size_t n);
/* root's `bytes` bytes at buf → every rank's buf. */
void dist_bcast(void *buf, size_t bytes, int root);
/* Returns when every rank has called it. */
void dist_barrier(void);
/* Ends every rank of the job with exit status `code` (MPI_Abort); exit(code) without MPI. */
__attribute__((noreturn)) void dist_abort(int code);

/* Contiguous shard of n items for rank r of R: [*first, *first + *count), sizes differing
 * by at most one, lower ranks taking the larger ones. Deterministic. */
void dist_shard(int64_t n, int r, int R, int64_t *first, int64_t *count);

#endif
