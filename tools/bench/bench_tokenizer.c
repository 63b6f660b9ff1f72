/* bench_tokenizer — single-threaded encode throughput (MB/s of UTF-8 input) on a JSON Lines
 * corpus, cold (empty word cache) and warm, plus the multi-threaded rate.
 *
 *   bench_tokenizer [TOKENIZER] [JSONL] [REPEATS]
 *   defaults: tests/data/qwen3-tokenizer/tokenizer.json.gz tests/data/text/calib.jsonl 3
 *
 * The tokenizer is not floating-point work, so the line reports MB/s and tokens/s rather
 * than a share of the sgemm peak (the target is >= 20 MB/s single-threaded). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/blas_env.h"
#include "calib/data.h"
#include "calib/tokenizer.h"
#include "io/err.h"
#include "tools/bench_util.h"

static double run(const tokenizer *tk, char **docs, size_t *lens, size_t n, int threads, size_t *tokens)
{
    size_t ntok = 0;
    int fails = 0;
    double t0 = bench_now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(+ : ntok, fails)
    for (size_t i = 0; i < n; i++) {
        int32_t *ids;
        size_t k;
        if (tokenizer_encode(tk, docs[i], lens[i], &ids, &k)) {
            fails++;
            continue;
        }
        ntok += k;
        free(ids);
    }
    double dt = bench_now() - t0;
    if (fails) fprintf(stderr, "bench_tokenizer: %d documents failed: %s\n", fails, err_msg());
    *tokens = ntok;
    return dt;
}

int main(int argc, char **argv)
{
    blas_env_reexec(argv); /* measure the kernels and wait policy bin/gptq-eora runs with */
    const char *tpath = argc > 1 ? argv[1] : "tests/data/qwen3-tokenizer/tokenizer.json.gz";
    const char *dpath = argc > 2 ? argv[2] : "tests/data/text/calib.jsonl";
    int repeats = argc > 3 ? atoi(argv[3]) : 3;
    double t0 = bench_now();
    tokenizer *tk = tokenizer_load(tpath);
    if (!tk) {
        fprintf(stderr, "bench_tokenizer: %s\n", err_msg());
        return 1;
    }
    double t_load = bench_now() - t0;
    data_source src = {.path = (char *)dpath, .format = "jsonl", .field = "text", .weight = 1};
    char **docs;
    size_t *lens, n;
    if (data_read_documents(&src, &docs, &lens, &n)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err_msg());
        return 1;
    }
    size_t bytes = 0, tokens = 0;
    for (size_t i = 0; i < n; i++) bytes += lens[i];
    double mb = (double)bytes / 1e6;
    double cold = run(tk, docs, lens, n, 1, &tokens), warm = 1e30;
    for (int r = 0; r < repeats; r++) {
        double t = run(tk, docs, lens, n, 1, &tokens);
        if (t < warm) warm = t;
    }
    int nthreads = omp_get_max_threads();
    double par = run(tk, docs, lens, n, nthreads, &tokens);
    printf("bench %-40s %9.3f s  load of %s\n", "tokenizer_load", t_load, tpath);
    char name[64];
    snprintf(name, sizeof name, "tokenizer_encode cold (1 thread)");
    printf("bench %-40s %9.3f s %9.1f MB/s %9.2f Mtok/s (%zu docs, %.2f MB, %zu tokens)\n", name, cold, mb / cold,
           (double)tokens / cold / 1e6, n, mb, tokens);
    printf("bench %-40s %9.3f s %9.1f MB/s %9.2f Mtok/s (best of %d, target >= 20 MB/s)\n",
           "tokenizer_encode warm (1 thread)", warm, mb / warm, (double)tokens / warm / 1e6, repeats);
    printf("bench %-40s %9.3f s %9.1f MB/s %9.2f Mtok/s (%d threads)\n", "tokenizer_encode warm (all threads)", par,
           mb / par, (double)tokens / par / 1e6, nthreads);
    for (size_t i = 0; i < n; i++) free(docs[i]);
    free(docs);
    free(lens);
    tokenizer_free(tk);
    return 0;
}
