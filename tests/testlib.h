/* testlib — a minimal test harness. Each tests/test_*.c is its own binary.
 *
 *   TEST(name) { CHECK(cond); CHECK_NEAR(a, b, tol); ... }
 *
 * Tests register themselves at load time. The binary runs every test (or those whose name
 * contains argv[1]), prints "ok"/"FAIL" per test and ends with "N passed, N failed".
 * Data paths: TEST_DATA ("tests/data") is relative to the repository root, where make runs. */
#ifndef TESTS_TESTLIB_H
#define TESTS_TESTLIB_H

#include <math.h>
#include <stdio.h>

#define TEST_DATA "tests/data"

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_register_slow(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* scratch directory for this test binary (created on first use, removed at exit if all pass) */
const char *test_tmpdir(void);

#define TEST(name)                                                                   \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void register_##name(void)                   \
    {                                                                                \
        test_register(#name, test_##name);                                           \
    }                                                                                \
    static void test_##name(void)

/* A test that runs the full end-to-end protocol (minutes under a sanitizer). It runs in
 * `make test`; `make test-asan` sets TEST_SKIP_SLOW=1 and reports it as skipped, since the code
 * paths it exercises are covered there by the smaller tests. */
#define TEST_SLOW(name)                                                              \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void register_##name(void)                   \
    {                                                                                \
        test_register_slow(#name, test_##name);                                      \
    }                                                                                \
    static void test_##name(void)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__);                     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                        \
    do {                                                                             \
        double a_ = (a), b_ = (b), t_ = (tol);                                       \
        if (!(fabs(a_ - b_) <= t_))                                                  \
            test_fail(__FILE__, __LINE__, "%s = %.9g vs %s = %.9g (tol %.3g)", #a, a_, #b, b_, t_); \
    } while (0)

/* Stop the current test (after a failed precondition). */
#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                     \
            return;                                                                  \
        }                                                                            \
    } while (0)

#endif
