/* dist — MPI collectives or their single-process stand-ins (see dist.h). */
#include "tools/dist.h"

#include <stdio.h>
#include <stdlib.h>

void dist_shard(int64_t n, int r, int R, int64_t *first, int64_t *count)
{
    if (R < 1) R = 1;
    int64_t base = n / R, extra = n % R;
    *count = base + (r < extra ? 1 : 0);
    *first = (int64_t)r * base + (r < extra ? r : extra);
}

#ifdef GPTQ_EORA_MPI

#include <mpi.h>

static int initialised;

/* MPI counts are ints: move big buffers in pieces. */
#define CHUNK ((size_t)1 << 26)

static void check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "gptq-eora: error: rank %d: MPI %s failed: %s\n", dist_rank(), what, msg);
    dist_abort(1);
}

int dist_available(void)
{
    return 1;
}

void dist_init(int *argc, char ***argv)
{
    int done = 0;
    MPI_Initialized(&done);
    if (done) return;
    int provided;
    /* only the main thread calls MPI; OpenMP/OpenBLAS threads never do */
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "init");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    initialised = 1;
}

void dist_finalize(void)
{
    if (initialised) MPI_Finalize();
    initialised = 0;
}

int dist_rank(void)
{
    int r = 0;
    if (initialised) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int dist_size(void)
{
    int n = 1;
    if (initialised) MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

void dist_allreduce_f64(double *buf, size_t n)
{
    if (dist_size() == 1) return;
    for (size_t o = 0; o < n; o += CHUNK) {
        int k = (int)(n - o < CHUNK ? n - o : CHUNK);
        check(MPI_Allreduce(MPI_IN_PLACE, buf + o, k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "allreduce");
    }
}

void dist_allreduce_i64(int64_t *buf, size_t n)
{
    if (dist_size() == 1) return;
    for (size_t o = 0; o < n; o += CHUNK) {
        int k = (int)(n - o < CHUNK ? n - o : CHUNK);
        check(MPI_Allreduce(MPI_IN_PLACE, buf + o, k, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD), "allreduce");
    }
}

void dist_bcast(void *buf, size_t bytes, int root)
{
    if (dist_size() == 1) return;
    char *p = buf;
    for (size_t o = 0; o < bytes; o += CHUNK) {
        int k = (int)(bytes - o < CHUNK ? bytes - o : CHUNK);
        check(MPI_Bcast(p + o, k, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
    }
}

void dist_barrier(void)
{
    if (dist_size() > 1) check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
}

void dist_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    if (initialised) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* single process */

int dist_available(void)
{
    return 0;
}

void dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
}

void dist_finalize(void) {}

int dist_rank(void)
{
    return 0;
}

int dist_size(void)
{
    return 1;
}

void dist_allreduce_f64(double *buf, size_t n)
{
    (void)buf;
    (void)n;
}

void dist_allreduce_i64(int64_t *buf, size_t n)
{
    (void)buf;
    (void)n;
}

void dist_bcast(void *buf, size_t bytes, int root)
{
    (void)buf;
    (void)bytes;
    (void)root;
}

void dist_barrier(void) {}

void dist_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    exit(code);
}

#endif
