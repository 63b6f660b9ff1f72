#include "tests/testlib.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/err.h"
#include "tools/blas_env.h"

typedef struct {
    const char *name;
    test_fn fn;
    int slow;
} test_case;

static test_case *tests;
static int n_tests, cap_tests;
static int cur_failed;
static char tmpdir[256];

static void add_test(const char *name, test_fn fn, int slow);
void test_register(const char *name, test_fn fn) { add_test(name, fn, 0); }
void test_register_slow(const char *name, test_fn fn) { add_test(name, fn, 1); }

static void add_test(const char *name, test_fn fn, int slow)
{
    if (n_tests == cap_tests) {
        cap_tests = cap_tests ? cap_tests * 2 : 64;
        tests = realloc(tests, (size_t)cap_tests * sizeof *tests);
    }
    tests[n_tests].name = name;
    tests[n_tests].slow = slow;
    tests[n_tests++].fn = fn;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    cur_failed = 1;
}

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/gptq-eora-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tmpdir;
}

int main(int argc, char **argv)
{
    /* the same OpenBLAS kernels and OpenMP wait policy as bin/gptq-eora (tools/blas_env.h) */
    blas_env_reexec(argv);
    const char *filter = argc > 1 ? argv[1] : getenv("T");
    const char *skip_env = getenv("TEST_SKIP_SLOW");
    int skip_slow = skip_env && *skip_env && strcmp(skip_env, "0") != 0;
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < n_tests; i++) {
        if (filter && *filter && !strstr(tests[i].name, filter)) continue;
        if (tests[i].slow && skip_slow) {
            printf("skip %s (slow; TEST_SKIP_SLOW)\n", tests[i].name);
            skipped++;
            continue;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cur_failed = 0;
        err_clear();
        tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("%s %s (%.2fs)\n", cur_failed ? "FAIL" : "ok  ", tests[i].name, sec);
        fflush(stdout);
        if (cur_failed) failed++; else passed++;
    }
    if (tmpdir[0] && failed == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
