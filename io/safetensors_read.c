/* safetensors reader: mmap each shard, validate its header, index tensors by name. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "io/safetensors.h"

typedef struct {
    char *path;
    void *map;
    size_t size;
    char **meta_keys, **meta_vals;
    size_t n_meta;
} st_file;

struct st_set {
    st_file *files;
    size_t n_files;
    st_tensor *tensors; /* file order */
    size_t n;
    size_t *hash;       /* open addressing over tensor indices + 1 */
    size_t hash_cap;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static const st_tensor *lookup(const st_set *s, const char *name)
{
    if (!s->hash_cap) return NULL;
    for (size_t i = hash_str(name) & (s->hash_cap - 1);; i = (i + 1) & (s->hash_cap - 1)) {
        if (!s->hash[i]) return NULL;
        const st_tensor *t = &s->tensors[s->hash[i] - 1];
        if (strcmp(t->name, name) == 0) return t;
    }
}

static int build_index(st_set *s)
{
    size_t cap = 16;
    while (cap < s->n * 2) cap <<= 1;
    s->hash = xcalloc(cap, sizeof *s->hash);
    s->hash_cap = cap;
    for (size_t k = 0; k < s->n; k++) {
        const char *name = s->tensors[k].name;
        if (lookup(s, name))
            return err_set("%s: tensor '%s' appears twice (also in %s)", s->files[s->tensors[k].file].path,
                           name, s->files[lookup(s, name)->file].path);
        size_t i = hash_str(name) & (cap - 1);
        while (s->hash[i]) i = (i + 1) & (cap - 1);
        s->hash[i] = k + 1;
    }
    return 0;
}

typedef struct {
    size_t begin, end, idx;
} range;

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int parse_shape(const char *path, const char *name, const cJSON *shape, st_tensor *t)
{
    if (!cJSON_IsArray(shape)) return err_set("%s: tensor '%s': 'shape' is not an array", path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_DIMS) return err_set("%s: tensor '%s': %d dimensions (at most %d)", path, name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    t->numel = 1;
    int k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble != (double)(int64_t)d->valuedouble ||
            d->valuedouble > 9.0e15)
            return err_set("%s: tensor '%s': shape entry %d is not a non-negative integer", path, name, k);
        t->shape[k] = (int64_t)d->valuedouble;
        if (t->shape[k] && t->numel > INT64_MAX / 16 / t->shape[k])
            return err_set("%s: tensor '%s': shape too large", path, name);
        t->numel *= t->shape[k];
        k++;
    }
    return 0;
}

/* Parse one shard's header; append its tensors (sorted by offset) to s->tensors. */
static int parse_file(st_set *s, size_t fi)
{
    st_file *f = &s->files[fi];
    const char *path = f->path;
    if (f->size < 8) return err_set("%s: file too short for a safetensors header (%zu bytes)", path, f->size);
    uint64_t hlen = 0;
    const unsigned char *p = f->map;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER) return err_set("%s: header length %llu exceeds the 100 MB limit", path, (unsigned long long)hlen);
    if (hlen > f->size - 8)
        return err_set("%s: header length %llu runs past end of file (%zu bytes)", path, (unsigned long long)hlen, f->size);
    if (hlen < 2) return err_set("%s: header too short to be a JSON object", path);
    cJSON *root = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
    if (!root) return err_set("%s: header is not valid JSON", path);
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = err_set("%s: header is not a JSON object", path);
        goto out;
    }
    size_t data_start = 8 + (size_t)hlen, data_len = f->size - data_start;
    size_t first = s->n, count = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, root) count++;
    s->tensors = xrealloc(s->tensors, (s->n + count) * sizeof *s->tensors);
    cJSON_ArrayForEach(e, root) {
        const char *name = e->string;
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) { rc = err_set("%s: __metadata__ is not an object", path); goto out; }
            cJSON *m;
            size_t nm = 0;
            cJSON_ArrayForEach(m, e) nm++;
            f->meta_keys = xcalloc(nm, sizeof(char *));
            f->meta_vals = xcalloc(nm, sizeof(char *));
            cJSON_ArrayForEach(m, e) {
                if (!cJSON_IsString(m)) { rc = err_set("%s: __metadata__ value of '%s' is not a string", path, m->string); goto out; }
                f->meta_keys[f->n_meta] = xstrdup(m->string);
                f->meta_vals[f->n_meta++] = xstrdup(m->valuestring);
            }
            continue;
        }
        if (!cJSON_IsObject(e)) { rc = err_set("%s: tensor '%s': entry is not an object", path, name); goto out; }
        st_tensor t = {0};
        t.file = (int)fi;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt)) { rc = err_set("%s: tensor '%s': missing 'dtype'", path, name); goto out; }
        if (dtype_from_name(dt->valuestring, &t.dtype)) { rc = err_set("%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring); goto out; }
        if (!shape) { rc = err_set("%s: tensor '%s': missing 'shape'", path, name); goto out; }
        if ((rc = parse_shape(path, name, shape, &t))) goto out;
        if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2) { rc = err_set("%s: tensor '%s': 'data_offsets' must be [begin, end]", path, name); goto out; }
        double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
        if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) || b < 0 || en < b ||
            b != (double)(uint64_t)b || en != (double)(uint64_t)en) {
            rc = err_set("%s: tensor '%s': invalid data_offsets", path, name); goto out;
        }
        if (en > (double)data_len) { rc = err_set("%s: tensor '%s': data_offsets end %.0f past end of data (%zu bytes)", path, name, en, data_len); goto out; }
        size_t want = (size_t)t.numel * dtype_size(t.dtype);
        t.nbytes = (size_t)(en - b);
        if (t.nbytes != want) {
            rc = err_set("%s: tensor '%s': %s shape needs %zu bytes but data_offsets span %zu", path, name, dtype_name(t.dtype), want, t.nbytes);
            goto out;
        }
        t.data = p + data_start + (size_t)b;
        t.name = xstrdup(name);
        s->tensors[s->n++] = t;
    }
    /* Ranges must not overlap (the spec also wants them to tile the buffer; we accept gaps). */
    size_t nt = s->n - first;
    range *r = xmalloc((nt ? nt : 1) * sizeof *r);
    for (size_t i = 0; i < nt; i++) {
        const st_tensor *t = &s->tensors[first + i];
        r[i].begin = (size_t)((const unsigned char *)t->data - p - data_start);
        r[i].end = r[i].begin + t->nbytes;
        r[i].idx = first + i;
    }
    qsort(r, nt, sizeof *r, cmp_range);
    for (size_t i = 1; i < nt; i++)
        if (r[i].begin < r[i - 1].end && r[i].end > r[i].begin) {
            rc = err_set("%s: tensor '%s': data range [%zu, %zu) overlaps tensor '%s'", path, s->tensors[r[i].idx].name,
                         r[i].begin, r[i].end, s->tensors[r[i - 1].idx].name);
            free(r);
            goto out;
        }
    /* file order = order of data offsets */
    st_tensor *sorted = xmalloc((nt ? nt : 1) * sizeof *sorted);
    for (size_t i = 0; i < nt; i++) sorted[i] = s->tensors[r[i].idx];
    memcpy(s->tensors + first, sorted, nt * sizeof *sorted);
    free(sorted);
    free(r);
out:
    cJSON_Delete(root);
    return rc;
}

static int map_file(st_file *f)
{
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return err_set("%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set("%s: not a regular file", f->path);
    }
    f->size = (size_t)st.st_size;
    if (f->size) {
        f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            close(fd);
            return err_set("%s: mmap failed: %s", f->path, strerror(errno));
        }
    }
    close(fd);
    return 0;
}

static void add_file(st_set *s, const char *path)
{
    s->files = xrealloc(s->files, (s->n_files + 1) * sizeof *s->files);
    memset(&s->files[s->n_files], 0, sizeof *s->files);
    s->files[s->n_files++].path = xstrdup(path);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Shards named by an index: unique file names in order of first appearance sorted by name. */
static int files_from_index(st_set *s, const char *index_path)
{
    size_t len;
    char *text = fs_read_file(index_path, &len);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set("%s: not a JSON object", index_path);
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return err_set("%s: missing 'weight_map' object", index_path);
    }
    char *dir = xstrdup(index_path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else strcpy(dir, "");
    char **names = NULL;
    size_t nn = 0;
    const cJSON *e;
    int rc = 0;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
            rc = err_set("%s: weight_map entry '%s' is not a plain file name", index_path, e->string);
            break;
        }
        int seen = 0;
        for (size_t i = 0; i < nn && !seen; i++) seen = strcmp(names[i], e->valuestring) == 0;
        if (!seen) {
            names = xrealloc(names, (nn + 1) * sizeof *names);
            names[nn++] = e->valuestring;
        }
    }
    if (!rc) {
        qsort(names, nn, sizeof *names, cmp_str);
        for (size_t i = 0; i < nn; i++) {
            char *p = fs_join(*dir ? dir : ".", names[i]);
            add_file(s, p);
            free(p);
        }
    }
    /* Every weight_map entry must then be found in the shard it names (checked after load). */
    free(names);
    free(dir);
    if (rc) { cJSON_Delete(root); return rc; }
    s->hash = (size_t *)root; /* stash for validation, replaced by build_index */
    return 0;
}

static int check_index(st_set *s, cJSON *root, const char *index_path)
{
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *e;
    cJSON_ArrayForEach(e, wm) {
        const st_tensor *t = lookup(s, e->string);
        if (!t) return err_set("%s: tensor '%s' listed in weight_map is missing from %s", index_path, e->string, e->valuestring);
        const char *base = strrchr(s->files[t->file].path, '/');
        base = base ? base + 1 : s->files[t->file].path;
        if (strcmp(base, e->valuestring) != 0)
            return err_set("%s: tensor '%s' is in %s, index says %s", index_path, e->string, base, e->valuestring);
    }
    return 0;
}

st_set *st_open(const char *path)
{
    st_set *s = xcalloc(1, sizeof *s);
    char *index_path = NULL;
    size_t plen = strlen(path);
    if (fs_is_dir(path)) {
        char *ip = fs_join(path, "model.safetensors.index.json");
        char *single = fs_join(path, "model.safetensors");
        if (fs_exists(ip)) {
            index_path = ip;
            ip = NULL;
        } else if (fs_exists(single)) {
            add_file(s, single);
        } else {
            DIR *d = opendir(path);
            struct dirent *de;
            char **names = NULL;
            size_t nn = 0;
            while (d && (de = readdir(d))) {
                size_t l = strlen(de->d_name);
                if (l > 12 && strcmp(de->d_name + l - 12, ".safetensors") == 0) {
                    names = xrealloc(names, (nn + 1) * sizeof *names);
                    names[nn++] = xstrdup(de->d_name);
                }
            }
            if (d) closedir(d);
            qsort(names, nn, sizeof *names, cmp_str);
            for (size_t i = 0; i < nn; i++) {
                char *p = fs_join(path, names[i]);
                add_file(s, p);
                free(p);
                free(names[i]);
            }
            free(names);
        }
        free(ip);
        free(single);
        if (!index_path && s->n_files == 0) {
            err_set("%s: no .safetensors files in directory", path);
            st_close(s);
            return NULL;
        }
    } else if (plen >= 5 && strcmp(path + plen - 5, ".json") == 0) {
        index_path = xstrdup(path);
    } else {
        add_file(s, path);
    }
    cJSON *index_root = NULL;
    if (index_path) {
        if (files_from_index(s, index_path)) goto fail;
        index_root = (cJSON *)s->hash;
        s->hash = NULL;
    }
    for (size_t i = 0; i < s->n_files; i++)
        if (map_file(&s->files[i]) || parse_file(s, i)) goto fail;
    if (build_index(s)) goto fail;
    if (index_root && check_index(s, index_root, index_path)) goto fail;
    cJSON_Delete(index_root);
    free(index_path);
    return s;
fail:
    cJSON_Delete(index_root);
    free(index_path);
    st_close(s);
    return NULL;
}

void st_close(st_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) {
        st_file *f = &s->files[i];
        if (f->map) munmap(f->map, f->size);
        for (size_t k = 0; k < f->n_meta; k++) {
            free(f->meta_keys[k]);
            free(f->meta_vals[k]);
        }
        free(f->meta_keys);
        free(f->meta_vals);
        free(f->path);
    }
    for (size_t i = 0; i < s->n; i++) free(s->tensors[i].name);
    free(s->files);
    free(s->tensors);
    free(s->hash);
    free(s);
}

size_t st_count(const st_set *s) { return s->n; }
const st_tensor *st_get(const st_set *s, size_t i) { return i < s->n ? &s->tensors[i] : NULL; }
const st_tensor *st_find(const st_set *s, const char *name) { return lookup(s, name); }
size_t st_file_count(const st_set *s) { return s->n_files; }
const char *st_file_path(const st_set *s, size_t i) { return i < s->n_files ? s->files[i].path : NULL; }

const char *st_file_metadata(const st_set *s, size_t file, const char *key)
{
    if (file >= s->n_files) return NULL;
    const st_file *f = &s->files[file];
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

const char *st_metadata(const st_set *s, const char *key) { return st_file_metadata(s, 0, key); }
size_t st_file_metadata_count(const st_set *s, size_t file) { return file < s->n_files ? s->files[file].n_meta : 0; }

void st_file_metadata_at(const st_set *s, size_t file, size_t i, const char **key, const char **value)
{
    *key = s->files[file].meta_keys[i];
    *value = s->files[file].meta_vals[i];
}

int st_to_f32(const st_tensor *t, float *dst)
{
    if (dtype_to_f32(t->dtype, t->data, dst, (size_t)t->numel))
        return err_set("tensor '%s': dtype %s is not a float type", t->name, dtype_name(t->dtype));
    return 0;
}

float *st_load_f32(const st_set *s, const char *name, const st_tensor **info)
{
    const st_tensor *t = st_find(s, name);
    if (!t) {
        err_set("%s: tensor '%s' not found", s->n_files ? s->files[0].path : "?", name);
        return NULL;
    }
    if (!dtype_is_float(t->dtype)) {
        err_set("%s: tensor '%s': dtype %s is not a float type", s->files[t->file].path, name, dtype_name(t->dtype));
        return NULL;
    }
    float *out = xmalloc_aligned((size_t)t->numel * sizeof(float));
    st_to_f32(t, out);
    if (info) *info = t;
    return out;
}

int st_open_spec(const char *spec, st_set **set, const st_tensor **t)
{
    char *path = xstrdup(spec);
    char *colon = strrchr(path, ':');
    const char *tname = NULL;
    if (colon && !fs_exists(path)) {
        *colon = 0;
        tname = colon + 1;
    }
    st_set *s = st_open(path);
    if (!s) {
        free(path);
        return -1;
    }
    const st_tensor *found = NULL;
    if (tname) {
        found = st_find(s, tname);
        if (!found) err_set("%s: tensor '%s' not found", path, tname);
    } else if (st_count(s) == 1) {
        found = st_get(s, 0);
    } else {
        err_set("%s: holds %zu tensors; name one as FILE:TENSOR", path, st_count(s));
    }
    free(path);
    if (!found) {
        st_close(s);
        return -1;
    }
    *set = s;
    *t = found;
    return 0;
}
