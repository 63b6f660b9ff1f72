/* safetensors writer: streams tensor data to one hidden temporary data file per shard as
 * tensors are added (memory use does not grow with model size), then at finish() writes
 * each shard as header + data under a temporary name, fsyncs, and renames.
 *
 * Commit order makes a crash visible: with several shards the index is written first, then
 * the shards are renamed, so an interrupted run leaves an index naming missing files (the
 * reader refuses it), never a set of shards that looks complete. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "io/safetensors.h"

typedef struct {
    char *name;
    dtype_t dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; /* relative to the shard's data start */
    size_t shard;
} wt_entry;

typedef struct {
    char *data_tmp;  /* hidden temp file holding this shard's tensor data */
    int fd;
    uint64_t bytes;
    char *final_tmp; /* header + data, before rename (set in finish) */
    char *final_path;
} wt_shard;

struct st_writer {
    char *dir, *base;
    char *single; /* final path in single-file mode, else NULL */
    size_t shard_bytes;
    wt_entry *ents;
    size_t n_ents, cap_ents;
    size_t *hash; /* open addressing over entry index + 1 */
    size_t hash_cap;
    wt_shard *shards;
    size_t n_shards;
    char **mkeys, **mvals;
    size_t n_meta;
    uint64_t total;
    int failed;
    char *fail_msg; /* the first I/O error: finish() reports it */
};

/* ---- names ---- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static int name_taken(const st_writer *w, const char *name)
{
    if (!w->hash_cap) return 0;
    for (size_t i = hash_name(name) & (w->hash_cap - 1); w->hash[i]; i = (i + 1) & (w->hash_cap - 1))
        if (strcmp(w->ents[w->hash[i] - 1].name, name) == 0) return 1;
    return 0;
}

static void hash_insert(size_t *hash, size_t cap, const char *name, size_t value)
{
    size_t i = hash_name(name) & (cap - 1);
    while (hash[i]) i = (i + 1) & (cap - 1);
    hash[i] = value;
}

static void remember_name(st_writer *w, size_t idx)
{
    if (2 * (w->n_ents + 1) > w->hash_cap) {
        size_t cap = w->hash_cap ? w->hash_cap * 2 : 256;
        size_t *h = xcalloc(cap, sizeof *h);
        for (size_t i = 0; i < w->n_ents; i++)
            if (i != idx) hash_insert(h, cap, w->ents[i].name, i + 1);
        free(w->hash);
        w->hash = h;
        w->hash_cap = cap;
    }
    hash_insert(w->hash, w->hash_cap, w->ents[idx].name, idx + 1);
}

/* ---- low-level I/O ---- */

/* Append len bytes of src (from offset 0) to dst: in-kernel copy where possible. */
static int copy_data(int src, int dst, uint64_t len)
{
    loff_t off = 0;
    while ((uint64_t)off < len) {
        ssize_t n = copy_file_range(src, &off, dst, NULL, (size_t)(len - (uint64_t)off > (1u << 30) ? (1u << 30) : len - (uint64_t)off), 0);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) return -1;
        break; /* fall back to read/write from where we are */
    }
    static const size_t chunk = 1 << 20;
    char *buf = NULL;
    while ((uint64_t)off < len) {
        if (!buf) buf = xmalloc(chunk);
        size_t want = len - (uint64_t)off > chunk ? chunk : (size_t)(len - (uint64_t)off);
        ssize_t n = pread(src, buf, want, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO; /* data file shorter than what we wrote */
            free(buf);
            return -1;
        }
        if (fs_write_all(dst, buf, (size_t)n)) {
            free(buf);
            return -1;
        }
        off += n;
    }
    free(buf);
    return 0;
}

/* mkstemp on "<prefix>XXXXXX"; returns fd and the malloc'd name. */
static int make_temp(const char *prefix, char **name_out)
{
    size_t n = strlen(prefix);
    char *name = xmalloc(n + 7);
    memcpy(name, prefix, n);
    memcpy(name + n, "XXXXXX", 7);
    int fd = mkstemp(name);
    if (fd < 0) {
        free(name);
        return -1;
    }
    *name_out = name;
    return fd;
}

static int open_shard(st_writer *w)
{
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s/.%s.part%zu.", w->dir, w->base, w->n_shards + 1);
    char *tmp;
    int fd = make_temp(prefix, &tmp);
    if (fd < 0) return err_set("%s: cannot create a temporary data file: %s", w->dir, strerror(errno));
    w->shards = xrealloc(w->shards, (w->n_shards + 1) * sizeof *w->shards);
    wt_shard *sh = &w->shards[w->n_shards++];
    memset(sh, 0, sizeof *sh);
    sh->data_tmp = tmp;
    sh->fd = fd;
    return 0;
}

/* ---- open / add ---- */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

st_writer *st_writer_open(const char *path, const char *basename, size_t shard_bytes)
{
    if (!path || !*path) {
        err_set("safetensors writer: empty output path");
        return NULL;
    }
    st_writer *w = xcalloc(1, sizeof *w);
    if (ends_with(path, ".safetensors")) {
        w->single = xstrdup(path);
        char *slash = strrchr(w->single, '/');
        w->dir = slash ? strndup(w->single, (size_t)(slash - w->single)) : xstrdup(".");
        if (!w->dir) w->dir = xstrdup(".");
        if (!*w->dir) {
            free(w->dir);
            w->dir = xstrdup("/");
        }
        const char *b = slash ? slash + 1 : w->single;
        w->base = strndup(b, strlen(b) - 12);
        if (!w->base) w->base = xstrdup("model");
        w->shard_bytes = 0;
    } else {
        const char *b = basename && *basename ? basename : "model";
        if (strchr(b, '/')) {
            err_set("%s: basename '%s' must not contain '/'", path, b);
            free(w);
            return NULL;
        }
        w->dir = xstrdup(path);
        w->base = xstrdup(b);
        w->shard_bytes = shard_bytes;
    }
    if (fs_mkdir_p(w->dir) || open_shard(w)) {
        st_writer_abort(w);
        return NULL;
    }
    return w;
}

static int mark_failed(st_writer *w);

static const char *writer_label(const st_writer *w) { return w->single ? w->single : w->dir; }

/* Checks shared by add and add_f32; reserves the entry. Returns its byte size via *nbytes. */
static int begin_add(st_writer *w, const char *name, dtype_t dtype, int ndim, const int64_t *shape,
                     const void *data, uint64_t *nbytes)
{
    if (w->failed)
        return err_set("%s: tensor '%s': writer already failed (%s)", writer_label(w), name ? name : "", w->fail_msg);
    if (!name || !*name) return err_set("%s: a tensor needs a non-empty name", writer_label(w));
    if (strcmp(name, "__metadata__") == 0) return err_set("%s: '__metadata__' is not a valid tensor name", writer_label(w));
    if ((unsigned)dtype >= DT_COUNT) return err_set("%s: tensor '%s': invalid dtype %d", writer_label(w), name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return err_set("%s: tensor '%s': %d dimensions (0..%d allowed)", writer_label(w), name, ndim, ST_MAX_DIMS);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return err_set("%s: tensor '%s': negative dimension %lld", writer_label(w), name, (long long)shape[i]);
        if (shape[i] && numel > (uint64_t)(INT64_MAX / 16) / (uint64_t)shape[i])
            return err_set("%s: tensor '%s': shape has too many elements", writer_label(w), name);
        numel *= (uint64_t)shape[i];
    }
    if (name_taken(w, name)) return err_set("%s: tensor '%s' added twice", writer_label(w), name);
    *nbytes = numel * dtype_size(dtype);
    /* before any shard rollover: a rejected tensor must not leave an empty shard behind */
    if (*nbytes && !data) return err_set("%s: tensor '%s': no data", writer_label(w), name);
    wt_shard *cur = &w->shards[w->n_shards - 1];
    if (w->shard_bytes && cur->bytes > 0 && cur->bytes + *nbytes > w->shard_bytes) {
        if (open_shard(w)) return mark_failed(w);
        cur = &w->shards[w->n_shards - 1];
    }
    if (w->n_ents == w->cap_ents) {
        w->cap_ents = w->cap_ents ? w->cap_ents * 2 : 64;
        w->ents = xrealloc(w->ents, w->cap_ents * sizeof *w->ents);
    }
    wt_entry *e = &w->ents[w->n_ents];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->shard = w->n_shards - 1;
    e->begin = cur->bytes;
    e->end = cur->bytes + *nbytes;
    return 0;
}

/* The data of the reserved entry is in the shard file: make it count. */
static void commit_add(st_writer *w)
{
    wt_entry *e = &w->ents[w->n_ents];
    w->shards[e->shard].bytes = e->end;
    w->total += e->end - e->begin;
    remember_name(w, w->n_ents);
    w->n_ents++;
}

/* After an I/O error the writer only accepts abort/finish, which remove its files. */
static int mark_failed(st_writer *w)
{
    w->failed = 1;
    if (!w->fail_msg) w->fail_msg = xstrdup(err_msg());
    return -1;
}

static int write_failed(st_writer *w, const char *name)
{
    int e = errno;
    wt_shard *cur = &w->shards[w->n_shards - 1];
    free(w->ents[w->n_ents].name);
    err_set("%s: writing tensor '%s' failed: %s", cur->data_tmp, name, strerror(e));
    return mark_failed(w);
}

int st_writer_add(st_writer *w, const char *name, dtype_t dtype, int ndim, const int64_t *shape, const void *data)
{
    uint64_t nbytes;
    if (begin_add(w, name, dtype, ndim, shape, data, &nbytes)) return -1;
    if (nbytes && fs_write_all(w->shards[w->n_shards - 1].fd, data, (size_t)nbytes)) return write_failed(w, name);
    commit_add(w);
    return 0;
}

int st_writer_add_f32(st_writer *w, const char *name, dtype_t dtype, int ndim, const int64_t *shape, const float *data)
{
    if (!w->failed && !dtype_is_float(dtype))
        return err_set("%s: tensor '%s': cannot convert fp32 to %s", writer_label(w), name ? name : "",
                       (unsigned)dtype < DT_COUNT ? dtype_name(dtype) : "an invalid dtype");
    uint64_t nbytes;
    if (begin_add(w, name, dtype, ndim, shape, data, &nbytes)) return -1;
    size_t numel = (size_t)(nbytes / dtype_size(dtype));
    /* convert in fixed-size chunks: memory stays bounded whatever the tensor size */
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = numel ? xmalloc(CHUNK * 8) : NULL;
    int fd = w->shards[w->n_shards - 1].fd;
    for (size_t i = 0; i < numel; i += CHUNK) {
        size_t n = numel - i < CHUNK ? numel - i : CHUNK;
        dtype_from_f32(dtype, data + i, buf, n);
        if (fs_write_all(fd, buf, n * dtype_size(dtype))) {
            free(buf);
            return write_failed(w, name);
        }
    }
    free(buf);
    commit_add(w);
    return 0;
}

int st_writer_set_metadata(st_writer *w, const char *key, const char *value)
{
    if (!key || !value) return err_set("%s: metadata key and value must be strings", writer_label(w));
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->mkeys[i], key) == 0) {
            free(w->mvals[i]);
            w->mvals[i] = xstrdup(value);
            return 0;
        }
    w->mkeys = xrealloc(w->mkeys, (w->n_meta + 1) * sizeof *w->mkeys);
    w->mvals = xrealloc(w->mvals, (w->n_meta + 1) * sizeof *w->mvals);
    w->mkeys[w->n_meta] = xstrdup(key);
    w->mvals[w->n_meta++] = xstrdup(value);
    return 0;
}

uint64_t st_writer_bytes(const st_writer *w) { return w ? w->total : 0; }

/* ---- finish ---- */

static char *shard_name(const st_writer *w, size_t k)
{
    char name[4096];
    if (w->single) return xstrdup(w->single);
    if (w->n_shards == 1)
        snprintf(name, sizeof name, "%s/%s.safetensors", w->dir, w->base);
    else
        snprintf(name, sizeof name, "%s/%s-%05zu-of-%05zu.safetensors", w->dir, w->base, k + 1, w->n_shards);
    return xstrdup(name);
}

/* Header JSON of shard k, padded with spaces to a multiple of 8. */
static char *shard_header(const st_writer *w, size_t k, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    const char *fmt = "pt";
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->mkeys[i], "format") == 0) fmt = w->mvals[i];
    cJSON_AddItemToObject(meta, "format", cJSON_CreateString(fmt));
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->mkeys[i], "format") != 0) cJSON_AddItemToObject(meta, w->mkeys[i], cJSON_CreateString(w->mvals[i]));
    cJSON_AddItemToObject(root, "__metadata__", meta);
    for (size_t i = 0; i < w->n_ents; i++) {
        const wt_entry *e = &w->ents[i];
        if (e->shard != k) continue;
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *off = cJSON_CreateArray();
        cJSON_AddItemToObject(t, "dtype", cJSON_CreateString(dtype_name(e->dtype)));
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)e->begin));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)e->end));
        cJSON_AddItemToObject(t, "data_offsets", off);
        cJSON_AddItemToObject(root, e->name, t);
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return NULL;
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    char *h = xmalloc(padded + 1);
    memcpy(h, json, n);
    memset(h + n, ' ', padded - n);
    h[padded] = 0;
    free(json);
    *len = padded;
    return h;
}

/* header + data → final_tmp, fsynced and closed. */
static int build_shard(st_writer *w, size_t k)
{
    wt_shard *sh = &w->shards[k];
    sh->final_path = shard_name(w, k);
    size_t hlen;
    char *header = shard_header(w, k, &hlen);
    if (!header) return err_set("%s: cannot build the header", sh->final_path);
    if (hlen > ST_MAX_HEADER) {
        free(header);
        return err_set("%s: header of %zu bytes exceeds the 100 MB limit", sh->final_path, hlen);
    }
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s.tmp.", sh->final_path);
    int fd = make_temp(prefix, &sh->final_tmp);
    if (fd < 0) {
        free(header);
        return err_set("%s: cannot create temporary file: %s", sh->final_path, strerror(errno));
    }
    fchmod(fd, 0644); /* mkstemp made it 0600 */
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int rc = fs_write_all(fd, len8, 8) || fs_write_all(fd, header, hlen) || copy_data(sh->fd, fd, sh->bytes) ? -1 : 0;
    int e = errno;
    free(header);
    if (rc) {
        close(fd);
        return err_set("%s: write failed: %s", sh->final_tmp, strerror(e));
    }
    if (fsync(fd) != 0) {
        e = errno;
        close(fd);
        return err_set("%s: fsync failed: %s", sh->final_tmp, strerror(e));
    }
    if (close(fd) != 0) return err_set("%s: close failed: %s", sh->final_tmp, strerror(errno));
    /* the data copy is no longer needed: free the disk space now */
    close(sh->fd);
    sh->fd = -1;
    unlink(sh->data_tmp);
    return 0;
}

static char *index_path(const st_writer *w)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.safetensors.index.json", w->dir, w->base);
    return xstrdup(p);
}

/* Does `name` (a file name in the dir) look like a shard of a set with this base:
 * <base>.safetensors or <base>-<digits>-of-<digits>.safetensors? */
static int is_shard_file_of(const char *name, const char *base)
{
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0) return 0;
    const char *p = name + bl;
    if (strcmp(p, ".safetensors") == 0) return 1;
    if (*p++ != '-' || !isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p)) p++;
    if (strncmp(p, "-of-", 4) != 0) return 0;
    p += 4;
    if (!isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p)) p++;
    return strcmp(p, ".safetensors") == 0;
}

/* Before the new set is committed into a directory: remove the old index and every file that
 * looks like a shard of this base (old sets of any count, and the new set's own final paths), then
 * fsync the dir. A crash mid-commit then never leaves old and new shards under a valid index. */
static int remove_old_set(const st_writer *w, const char *ipath)
{
    if (unlink(ipath) != 0 && errno != ENOENT)
        return err_set("%s: cannot remove stale index: %s", ipath, strerror(errno));
    DIR *d = opendir(w->dir);
    if (!d) return err_set("%s: cannot list directory: %s", w->dir, strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        if (!is_shard_file_of(de->d_name, w->base)) continue;
        char *p = fs_join(w->dir, de->d_name);
        if (unlink(p) != 0 && errno != ENOENT) rc = err_set("%s: cannot remove stale shard: %s", p, strerror(errno));
        free(p);
    }
    closedir(d);
    for (size_t k = 0; !rc && k < w->n_shards; k++)
        if (unlink(w->shards[k].final_path) != 0 && errno != ENOENT)
            rc = err_set("%s: cannot remove old file: %s", w->shards[k].final_path, strerror(errno));
    if (!rc) fs_fsync_dir(ipath);
    return rc;
}

static int cmp_ent_name(const void *a, const void *b)
{
    return strcmp((*(const wt_entry *const *)a)->name, (*(const wt_entry *const *)b)->name);
}

/* model.safetensors.index.json as Hugging Face writes it: total_size + weight_map sorted by name. */
static int write_index(const st_writer *w, const char *path)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *wm = cJSON_CreateObject();
    cJSON_AddItemToObject(meta, "total_size", cJSON_CreateNumber((double)w->total));
    cJSON_AddItemToObject(root, "metadata", meta);
    const wt_entry **order = xmalloc((w->n_ents ? w->n_ents : 1) * sizeof *order);
    for (size_t i = 0; i < w->n_ents; i++) order[i] = &w->ents[i];
    qsort(order, w->n_ents, sizeof *order, cmp_ent_name);
    for (size_t i = 0; i < w->n_ents; i++) {
        const char *f = strrchr(w->shards[order[i]->shard].final_path, '/');
        cJSON_AddItemToObject(wm, order[i]->name, cJSON_CreateString(f ? f + 1 : w->shards[order[i]->shard].final_path));
    }
    free(order);
    cJSON_AddItemToObject(root, "weight_map", wm);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    if (!json) return err_set("%s: cannot build the index", path);
    size_t n = strlen(json);
    json = xrealloc(json, n + 2);
    json[n] = '\n';
    json[n + 1] = 0;
    int rc = fs_write_atomic(path, json, n + 1);
    free(json);
    return rc;
}

static void free_writer(st_writer *w)
{
    for (size_t i = 0; i < w->n_shards; i++) {
        wt_shard *sh = &w->shards[i];
        if (sh->fd >= 0) close(sh->fd);
        if (sh->data_tmp) unlink(sh->data_tmp);
        if (sh->final_tmp) unlink(sh->final_tmp);
        free(sh->data_tmp);
        free(sh->final_tmp);
        free(sh->final_path);
    }
    for (size_t i = 0; i < w->n_ents; i++) free(w->ents[i].name);
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->mkeys[i]);
        free(w->mvals[i]);
    }
    free(w->mkeys);
    free(w->mvals);
    free(w->ents);
    free(w->hash);
    free(w->shards);
    free(w->dir);
    free(w->base);
    free(w->single);
    free(w->fail_msg);
    free(w);
}

int st_writer_finish(st_writer *w)
{
    if (!w) return err_set("safetensors writer: finish called on NULL");
    if (w->failed) {
        err_set("%s", w->fail_msg);
        free_writer(w);
        return -1;
    }
    int rc = 0;
    for (size_t k = 0; k < w->n_shards && !rc; k++) rc = build_shard(w, k);
    char *ipath = index_path(w);
    int index_written = 0;
    if (!rc && !w->single) {
        /* a stale index would make readers ignore a new single file; stale shards would mix in */
        rc = remove_old_set(w, ipath);
        if (!rc && w->n_shards > 1) {
            rc = write_index(w, ipath);
            index_written = !rc;
        }
    }
    size_t renamed = 0;
    for (; !rc && renamed < w->n_shards; renamed++) {
        wt_shard *sh = &w->shards[renamed];
        if (rename(sh->final_tmp, sh->final_path) != 0) {
            rc = err_set("%s: rename failed: %s", sh->final_path, strerror(errno));
            break;
        }
        free(sh->final_tmp);
        sh->final_tmp = NULL;
    }
    if (rc) { /* undo what was committed: nothing may look finished */
        for (size_t k = 0; k < renamed; k++) unlink(w->shards[k].final_path);
        if (index_written) unlink(ipath);
    } else {
        fs_fsync_dir(w->shards[0].final_path);
    }
    free(ipath);
    free_writer(w);
    return rc;
}

void st_writer_abort(st_writer *w)
{
    if (w) free_writer(w);
}

/* <base>.safetensors, <base>-k-of-n.safetensors or <base>.safetensors.index.json */
static int is_output_of(const char *final_name, const void *base)
{
    char index[512];
    snprintf(index, sizeof index, "%s.safetensors.index.json", (const char *)base);
    return is_shard_file_of(final_name, base) || !strcmp(final_name, index);
}

void st_writer_remove_temps(const char *dir, const char *base)
{
    fs_remove_temps(dir, is_output_of, base); /* shards being committed, the index */
    DIR *d = opendir(dir);
    if (!d) return;
    const size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name; /* ".<base>.part<digits>.<6 chars>" as make_temp names them */
        if (n[0] != '.' || strncmp(n + 1, base, bl) != 0 || strncmp(n + 1 + bl, ".part", 5) != 0) continue;
        const char *p = n + 1 + bl + 5;
        if (!isdigit((unsigned char)*p)) continue;
        while (isdigit((unsigned char)*p)) p++;
        if (*p != '.' || strlen(p + 1) != 6) continue;
        char *path = fs_join(dir, n);
        unlink(path);
        free(path);
    }
    closedir(d);
}
