#include "io/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/err.h"

char *fs_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = xmalloc(la + lb + 2);
    memcpy(p, a, la);
    size_t k = la;
    if (la && a[la - 1] != '/') p[k++] = '/';
    memcpy(p + k, b, lb + 1);
    return p;
}

int fs_fsync_dir(const char *path_in_dir)
{
    char *copy = xstrdup(path_in_dir);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0) return 0; /* best effort */
    fsync(fd);
    close(fd);
    return 0;
}

int fs_commit(int fd, const char *tmp, const char *final_path)
{
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return err_set("%s: fsync failed: %s", final_path, strerror(e));
    }
    if (close(fd) != 0) {
        unlink(tmp);
        return err_set("%s: close failed: %s", final_path, strerror(errno));
    }
    if (rename(tmp, final_path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set("%s: rename failed: %s", final_path, strerror(e));
    }
    return fs_fsync_dir(final_path);
}

/* One loop for write() and pwrite(): off < 0 writes at the current position. */
static int write_loop(int fd, const void *data, size_t len, off_t off)
{
    const char *p = data;
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t n = off < 0 ? write(fd, p, chunk) : pwrite(fd, p, chunk, off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) { /* no progress and no error: treat as a full disk rather than spin */
            errno = ENOSPC;
            return -1;
        }
        p += n;
        if (off >= 0) off += n;
        len -= (size_t)n;
    }
    return 0;
}

int fs_write_all(int fd, const void *data, size_t len) { return write_loop(fd, data, len, -1); }

int fs_pwrite_all(int fd, const void *data, size_t len, off_t off)
{
    return off < 0 ? (errno = EINVAL, -1) : write_loop(fd, data, len, off);
}

int fs_write_atomic(const char *path, const void *data, size_t len)
{
    /* a unique temp name (not just the pid): threads may write files side by side */
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= sizeof tmp)
        return err_set("%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return err_set("%s: cannot create: %s", path, strerror(errno));
    fchmod(fd, 0644); /* mkstemp creates 0600; outputs are ordinary readable files */
    if (fs_write_all(fd, data, len) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return err_set("%s: write failed: %s", path, strerror(e));
    }
    return fs_commit(fd, tmp, path);
}

int fs_mkdir_p(const char *dir)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return err_set("%s: invalid directory name", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return err_set("%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    if (!fs_is_dir(dir)) return err_set("%s: not a directory", dir);
    return 0;
}

char *fs_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        err_set("%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int fs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int fs_copy_file(const char *src, const char *dst)
{
    size_t len;
    char *data = fs_read_file(src, &len);
    if (!data) return -1;
    int rc = fs_write_atomic(dst, data, len);
    free(data);
    return rc;
}

void fs_remove_temps(const char *dir, int (*owned)(const char *final_name, const void *ctx), const void *ctx)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        size_t l = strlen(n); /* "<final>.tmp.XXXXXX", as mkstemp names them */
        if (l <= 11 || strncmp(n + l - 11, ".tmp.", 5) != 0 || memchr(n + l - 6, '.', 6)) continue;
        char *final_name = strndup(n, l - 11);
        if (final_name && owned(final_name, ctx)) {
            char *p = fs_join(dir, n);
            unlink(p);
            free(p);
        }
        free(final_name);
    }
    closedir(d);
}

cJSON *fs_read_json(const char *path)
{
    size_t len;
    char *text = fs_read_file(path, &len);
    if (!text) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) err_set("%s: invalid JSON", path);
    return j;
}
