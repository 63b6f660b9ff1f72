#include "tests/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/err.h"
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

static int files_equal(const char *a, const char *b)
{
    size_t la, lb;
    char *x = fs_read_file(a, &la), *y = fs_read_file(b, &lb);
    int eq = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return eq;
}

/* quant_log.csv without its time column. */
static char *quant_log_sans_time(const char *path)
{
    size_t n;
    char *t = fs_read_file(path, &n);
    if (!t) return NULL;
    char *out = xmalloc(n + 1), *o = out;
    for (char *line = t, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *last = strrchr(line, ',');
        size_t keep = last ? (size_t)(last - line) : strlen(line);
        memcpy(o, line, keep);
        o += keep;
        *o++ = '\n';
    }
    *o = 0;
    free(t);
    return out;
}

/* Every file of two output trees identical (report.json skipped: timings; quant_log.csv
 * without its time column). Returns the number of differing or missing files. */
int test_compare_outputs(const char *ref, const char *got, int *n_files)
{
    static const char *subdirs[] = {"", "eora"};
    int diffs = 0;
    *n_files = 0;
    for (int s = 0; s < 2; s++) {
        char *dr = fs_join(ref, subdirs[s]), *dg = fs_join(got, subdirs[s]);
        DIR *d = opendir(dr);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || !strcmp(e->d_name, "eora") || !strcmp(e->d_name, "report.json")) continue;
            char *a = fs_join(dr, e->d_name), *b = fs_join(dg, e->d_name);
            (*n_files)++;
            int same;
            if (!strcmp(e->d_name, "quant_log.csv")) {
                char *x = quant_log_sans_time(a), *y = quant_log_sans_time(b);
                same = x && y && !strcmp(x, y);
                free(x);
                free(y);
            } else {
                same = files_equal(a, b);
            }
            if (!same) {
                printf("    differs: %s vs %s\n", a, b);
                diffs++;
            }
            free(a);
            free(b);
        }
        if (d) closedir(d);
        free(dr);
        free(dg);
    }
    err_clear();
    return diffs;
}

int test_write_sparse_st(const char *path, const char *json, uint64_t data_len, const void *tail, size_t tail_len)
{
    size_t n = strlen(json), hlen = (n + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    char *h = xmalloc(hlen);
    memcpy(h, json, n);
    memset(h + n, ' ', hlen - n);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int rc = fd < 0 || fs_write_all(fd, len8, 8) || fs_write_all(fd, h, hlen) ||
                     ftruncate(fd, (off_t)(8 + hlen + data_len)) != 0 ||
                     (tail_len && fs_pwrite_all(fd, tail, tail_len, (off_t)(8 + hlen + data_len - tail_len)))
                 ? -1
                 : 0;
    if (fd >= 0) close(fd);
    free(h);
    return rc;
}
