#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>

#include "io/fsutil.h"
#include "tests/testlib.h"

char *test_tmp_path(const char *name) { return fs_join(test_tmpdir(), name); }

const char *test_write_tmp(const char *name, const char *text)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? NULL : path;
}

void test_rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

uint64_t test_xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}
