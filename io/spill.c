/* spill — activation store in RAM or in a spill file (see spill.h). */
#include "io/spill.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"

#define SPILL_MAGIC "GESPILL1"
#define SPILL_HEADER 64

struct act_store {
    int64_t rows;
    int cols;
    dtype_t dtype; /* DT_F32 in RAM; F32 or BF16 on disk */
    float *ram;    /* RAM store */
    int fd;        /* spill file, -1 for RAM */
    char *path;
};

static size_t row_bytes(const act_store *s)
{
    return (size_t)s->cols * dtype_size(s->dtype);
}

act_store *act_store_ram(int64_t rows, int cols)
{
    act_store *s = xcalloc(1, sizeof *s);
    s->rows = rows;
    s->cols = cols;
    s->dtype = DT_F32;
    s->fd = -1;
    s->ram = xcalloc((size_t)rows * (size_t)cols, sizeof(float));
    return s;
}

static int full_pread(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len > (1u << 30) ? (1u << 30) : len, off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO; /* short file */
            return -1;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

static void make_header(char *h, int64_t rows, int cols, dtype_t dt)
{
    memset(h, 0, SPILL_HEADER);
    memcpy(h, SPILL_MAGIC, 8);
    int64_t c = cols, d = dt;
    memcpy(h + 8, &rows, 8);
    memcpy(h + 16, &c, 8);
    memcpy(h + 24, &d, 8);
}

static act_store *file_store(const char *path, int fd, int64_t rows, int cols, dtype_t dt)
{
    act_store *s = xcalloc(1, sizeof *s);
    s->rows = rows;
    s->cols = cols;
    s->dtype = dt;
    s->fd = fd;
    s->path = xstrdup(path);
    return s;
}

act_store *act_store_create(const char *path, int64_t rows, int cols, dtype_t dtype)
{
    if (dtype != DT_F32 && dtype != DT_BF16) {
        err_set("%s: spill dtype must be F32 or BF16, not %s", path, dtype_name(dtype));
        return NULL;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        err_set("%s: cannot create spill file: %s", path, strerror(errno));
        return NULL;
    }
    char h[SPILL_HEADER];
    make_header(h, rows, cols, dtype);
    off_t total = SPILL_HEADER + (off_t)rows * cols * (off_t)dtype_size(dtype);
    if (fs_pwrite_all(fd, h, sizeof h, 0) != 0 || ftruncate(fd, total) != 0) {
        err_set("%s: cannot size spill file to %lld bytes: %s", path, (long long)total, strerror(errno));
        close(fd);
        unlink(path);
        return NULL;
    }
    return file_store(path, fd, rows, cols, dtype);
}

act_store *act_store_open(const char *path, int64_t rows, int cols, dtype_t dtype)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        err_set("%s: cannot open spill file: %s", path, strerror(errno));
        return NULL;
    }
    char h[SPILL_HEADER], want[SPILL_HEADER];
    make_header(want, rows, cols, dtype);
    if (full_pread(fd, h, sizeof h, 0) != 0 || memcmp(h, want, SPILL_HEADER) != 0) {
        err_set("%s: not a spill file of %lld x %d %s", path, (long long)rows, cols, dtype_name(dtype));
        close(fd);
        return NULL;
    }
    off_t total = SPILL_HEADER + (off_t)rows * cols * (off_t)dtype_size(dtype);
    if (lseek(fd, 0, SEEK_END) != total) {
        err_set("%s: spill file is truncated (expected %lld bytes)", path, (long long)total);
        close(fd);
        return NULL;
    }
    return file_store(path, fd, rows, cols, dtype);
}

void act_store_close(act_store *s)
{
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    free(s->ram);
    free(s->path);
    free(s);
}

void act_store_close_unlink(act_store *s)
{
    if (!s) return;
    if (s->path) unlink(s->path);
    act_store_close(s);
}

int64_t act_store_rows(const act_store *s) { return s->rows; }
int act_store_cols(const act_store *s) { return s->cols; }
int act_store_is_file(const act_store *s) { return s->fd >= 0; }
const char *act_store_path(const act_store *s) { return s->path; }

uint64_t act_store_bytes(const act_store *s)
{
    return (uint64_t)s->rows * row_bytes(s);
}

static int check_range(const act_store *s, int64_t row0, int64_t n)
{
    if (row0 < 0 || n < 0 || row0 + n > s->rows)
        return err_set("%s: rows [%lld, %lld) outside 0..%lld", s->path ? s->path : "activation store",
                       (long long)row0, (long long)(row0 + n), (long long)s->rows);
    return 0;
}

/* Rows per conversion chunk of a BF16 file (bounded scratch). */
static int64_t chunk_rows(const act_store *s)
{
    int64_t r = (int64_t)((4u << 20) / (size_t)s->cols);
    return r < 1 ? 1 : r;
}

int act_store_read(const act_store *s, int64_t row0, int64_t n, float *dst)
{
    if (check_range(s, row0, n)) return -1;
    size_t cols = (size_t)s->cols;
    if (s->ram) {
        memcpy(dst, s->ram + (size_t)row0 * cols, (size_t)n * cols * sizeof(float));
        return 0;
    }
    off_t off = SPILL_HEADER + (off_t)row0 * (off_t)row_bytes(s);
    if (s->dtype == DT_F32) {
        if (full_pread(s->fd, dst, (size_t)n * cols * 4, off) != 0)
            return err_set("%s: read failed: %s", s->path, strerror(errno));
        return 0;
    }
    int64_t step = chunk_rows(s);
    uint16_t *buf = xmalloc((size_t)step * cols * 2);
    for (int64_t r = 0; r < n; r += step) {
        int64_t k = n - r < step ? n - r : step;
        if (full_pread(s->fd, buf, (size_t)k * cols * 2, off + (off_t)r * (off_t)cols * 2) != 0) {
            free(buf);
            return err_set("%s: read failed: %s", s->path, strerror(errno));
        }
        dtype_to_f32(DT_BF16, buf, dst + (size_t)r * cols, (size_t)k * cols);
    }
    free(buf);
    return 0;
}

int act_store_write(act_store *s, int64_t row0, int64_t n, const float *src)
{
    if (check_range(s, row0, n)) return -1;
    size_t cols = (size_t)s->cols;
    if (s->ram) {
        memmove(s->ram + (size_t)row0 * cols, src, (size_t)n * cols * sizeof(float));
        return 0;
    }
    off_t off = SPILL_HEADER + (off_t)row0 * (off_t)row_bytes(s);
    if (s->dtype == DT_F32) {
        if (fs_pwrite_all(s->fd, src, (size_t)n * cols * 4, off) != 0)
            return err_set("%s: write failed: %s", s->path, strerror(errno));
        return 0;
    }
    int64_t step = chunk_rows(s);
    uint16_t *buf = xmalloc((size_t)step * cols * 2);
    for (int64_t r = 0; r < n; r += step) {
        int64_t k = n - r < step ? n - r : step;
        dtype_from_f32(DT_BF16, src + (size_t)r * cols, buf, (size_t)k * cols);
        if (fs_pwrite_all(s->fd, buf, (size_t)k * cols * 2, off + (off_t)r * (off_t)cols * 2) != 0) {
            free(buf);
            return err_set("%s: write failed: %s", s->path, strerror(errno));
        }
    }
    free(buf);
    return 0;
}

int act_store_sync(act_store *s)
{
    if (s->fd >= 0 && fsync(s->fd) != 0) return err_set("%s: fsync failed: %s", s->path, strerror(errno));
    return 0;
}

int act_store_save(const act_store *s, const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    act_store *f = act_store_create(tmp, s->rows, s->cols, DT_F32);
    if (!f) return err_prefix("%s", path);
    int64_t step = chunk_rows(s);
    float *buf = xmalloc((size_t)step * (size_t)s->cols * sizeof(float));
    int rc = 0;
    for (int64_t r = 0; r < s->rows && rc == 0; r += step) {
        int64_t k = s->rows - r < step ? s->rows - r : step;
        rc = act_store_read(s, r, k, buf);
        if (rc == 0) rc = act_store_write(f, r, k, buf);
    }
    free(buf);
    if (rc != 0) {
        act_store_close_unlink(f);
        return -1;
    }
    int fd = f->fd;
    f->fd = -1;
    act_store_close(f);
    return fs_commit(fd, tmp, path);
}

act_store *act_store_load(const char *path, int64_t rows, int cols)
{
    act_store *f = act_store_open(path, rows, cols, DT_F32);
    if (!f) return NULL;
    act_store *s = act_store_ram(rows, cols);
    if (act_store_read(f, 0, rows, s->ram) != 0) {
        act_store_close(f);
        act_store_close(s);
        return NULL;
    }
    act_store_close(f);
    return s;
}

typedef struct {
    const char *const *names;
    int n;
} name_list;

static int in_list(const char *final_name, const void *ctx)
{
    const name_list *l = ctx;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(final_name, l->names[i])) return 1;
    return 0;
}

void act_store_remove_temps(const char *dir, const char *const *names, int n)
{
    name_list l = {names, n};
    fs_remove_temps(dir, in_list, &l);
}
