/* safetensors reader: mmap each shard, validate its header, index tensors by name.
 *
 * Validation follows the reference implementation (huggingface/safetensors): 8-byte
 * little-endian header length <= 100 MB, header is UTF-8 JSON starting with '{' (trailing
 * spaces allowed), one entry per tensor {dtype, shape, data_offsets}, an optional
 * "__metadata__" string->string map, and the tensors' byte ranges tile the data area exactly:
 * sorted by offset each starts where the previous ended, the last one ends at end of file.
 * Anything else is one line naming the file and, where there is one, the tensor. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

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

/* ---- a small string set (duplicate detection: cJSON keeps duplicate keys) ---- */

typedef struct {
    const char **slot;
    size_t cap, n;
} name_set;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* Adds name (not copied; must outlive the set). Returns 1 if it was already there. */
static int name_set_add(name_set *ns, const char *name)
{
    if (2 * (ns->n + 1) > ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 64;
        const char **slot = xcalloc(cap, sizeof *slot);
        for (size_t i = 0; i < ns->cap; i++) {
            if (!ns->slot[i]) continue;
            size_t k = hash_str(ns->slot[i]) & (cap - 1);
            while (slot[k]) k = (k + 1) & (cap - 1);
            slot[k] = ns->slot[i];
        }
        free(ns->slot);
        ns->slot = slot;
        ns->cap = cap;
    }
    size_t k = hash_str(name) & (ns->cap - 1);
    for (; ns->slot[k]; k = (k + 1) & (ns->cap - 1))
        if (strcmp(ns->slot[k], name) == 0) return 1;
    ns->slot[k] = name;
    ns->n++;
    return 0;
}

static void name_set_free(name_set *ns) { free(ns->slot); }

/* ---- name index over the whole set ---- */

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
        const st_tensor *prev = lookup(s, name);
        if (prev)
            return err_set("%s: tensor '%s' appears in two shards (also in %s)", s->files[s->tensors[k].file].path,
                           name, s->files[prev->file].path);
        size_t i = hash_str(name) & (cap - 1);
        while (s->hash[i]) i = (i + 1) & (cap - 1);
        s->hash[i] = k + 1;
    }
    return 0;
}

/* ---- one shard ---- */

/* JSON numbers are doubles in cJSON: integers are exact only up to 2^53. Checking the range
 * before converting also avoids the undefined double->integer cast of huge values. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int parse_shape(const char *path, const char *name, const cJSON *shape, st_tensor *t)
{
    if (!shape) return err_set("%s: tensor '%s': missing 'shape'", path, name);
    if (!cJSON_IsArray(shape)) return err_set("%s: tensor '%s': 'shape' is not an array", path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_DIMS) return err_set("%s: tensor '%s': %d dimensions (at most %d)", path, name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    t->numel = 1;
    int k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (cJSON_IsNumber(d) && d->valuedouble < 0)
            return err_set("%s: tensor '%s': shape entry %d is negative (%g)", path, name, k, d->valuedouble);
        if (json_uint(d, &v))
            return err_set("%s: tensor '%s': shape entry %d is not a non-negative integer", path, name, k);
        t->shape[k] = (int64_t)v;
        /* keep numel * 8 bytes representable */
        if (v && (uint64_t)t->numel > (uint64_t)(INT64_MAX / 16) / v)
            return err_set("%s: tensor '%s': shape has too many elements", path, name);
        t->numel *= (int64_t)v;
        k++;
    }
    return 0;
}

static int parse_metadata(st_file *f, const cJSON *e)
{
    const char *path = f->path;
    if (f->meta_keys) return err_set("%s: '__metadata__' appears twice in the header", path);
    if (!cJSON_IsObject(e)) return err_set("%s: '__metadata__' is not an object", path);
    size_t nm = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, e) nm++;
    f->meta_keys = xcalloc(nm, sizeof(char *));
    f->meta_vals = xcalloc(nm, sizeof(char *));
    name_set keys = {0};
    int rc = 0;
    cJSON_ArrayForEach(m, e) {
        if (!cJSON_IsString(m)) {
            rc = err_set("%s: '__metadata__' value of '%s' is not a string", path, m->string);
            break;
        }
        if (name_set_add(&keys, m->string)) {
            rc = err_set("%s: '__metadata__' key '%s' appears twice", path, m->string);
            break;
        }
        f->meta_keys[f->n_meta] = xstrdup(m->string);
        f->meta_vals[f->n_meta++] = xstrdup(m->valuestring);
    }
    name_set_free(&keys);
    return rc;
}

/* One header entry → t (name not yet set). */
static int parse_entry(const char *path, const cJSON *e, size_t data_len, st_tensor *t, uint64_t *begin)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return err_set("%s: tensor '%s': entry is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) return err_set("%s: tensor '%s': missing 'dtype'", path, name);
    if (!cJSON_IsString(dt)) return err_set("%s: tensor '%s': 'dtype' is not a string", path, name);
    if (dtype_from_name(dt->valuestring, &t->dtype))
        return err_set("%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);
    if (parse_shape(path, name, cJSON_GetObjectItemCaseSensitive(e, "shape"), t)) return -1;
    if (!off) return err_set("%s: tensor '%s': missing 'data_offsets'", path, name);
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(cJSON_GetArrayItem(off, 0), &b) ||
        json_uint(cJSON_GetArrayItem(off, 1), &en))
        return err_set("%s: tensor '%s': 'data_offsets' must be [begin, end] non-negative integers", path, name);
    if (en < b)
        return err_set("%s: tensor '%s': data_offsets begin %llu is after end %llu", path, name,
                       (unsigned long long)b, (unsigned long long)en);
    if (en > data_len)
        return err_set("%s: tensor '%s': data_offsets end %llu is past end of file (data area is %zu bytes)", path, name,
                       (unsigned long long)en, data_len);
    uint64_t want = (uint64_t)t->numel * dtype_size(t->dtype);
    if (en - b != want)
        return err_set("%s: tensor '%s': %s shape needs %llu bytes but data_offsets span %llu", path, name,
                       dtype_name(t->dtype), (unsigned long long)want, (unsigned long long)(en - b));
    t->nbytes = (size_t)want;
    *begin = b;
    return 0;
}

typedef struct {
    uint64_t begin, end;
    size_t idx;
} range;

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Ranges must tile [0, data_len): sorted by offset, each begins where the previous ended.
 * On success the shard's tensors are reordered into offset (= file) order. */
static int check_tiling(st_set *s, size_t first, const st_file *f, const unsigned char *data, size_t data_len)
{
    size_t nt = s->n - first;
    range *r = xmalloc((nt ? nt : 1) * sizeof *r);
    for (size_t i = 0; i < nt; i++) {
        const st_tensor *t = &s->tensors[first + i];
        r[i].begin = (uint64_t)((const unsigned char *)t->data - data);
        r[i].end = r[i].begin + t->nbytes;
        r[i].idx = first + i;
    }
    qsort(r, nt, sizeof *r, cmp_range);
    uint64_t cursor = 0;
    int rc = 0;
    for (size_t i = 0; i < nt && !rc; i++) {
        const char *name = s->tensors[r[i].idx].name;
        if (r[i].begin < cursor)
            rc = err_set("%s: tensor '%s': data range [%llu, %llu) overlaps tensor '%s'", f->path, name,
                         (unsigned long long)r[i].begin, (unsigned long long)r[i].end, s->tensors[r[i - 1].idx].name);
        else if (r[i].begin > cursor)
            rc = err_set("%s: tensor '%s': gap of %llu unused bytes before its data at offset %llu", f->path, name,
                         (unsigned long long)(r[i].begin - cursor), (unsigned long long)r[i].begin);
        cursor = r[i].end;
    }
    if (!rc && cursor != data_len)
        rc = err_set("%s: %llu trailing bytes after the last tensor's data", f->path,
                     (unsigned long long)(data_len - cursor));
    if (!rc) {
        st_tensor *sorted = xmalloc((nt ? nt : 1) * sizeof *sorted);
        for (size_t i = 0; i < nt; i++) sorted[i] = s->tensors[r[i].idx];
        memcpy(s->tensors + first, sorted, nt * sizeof *sorted);
        free(sorted);
    }
    free(r);
    return rc;
}

/* Byte-level checks before JSON: valid UTF-8, no NUL (JSON never needs one). */
static int check_header_text(const char *path, const unsigned char *h, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (h[i] == 0) return err_set("%s: header contains a NUL byte at offset %zu", path, i);
        if (h[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(h + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return err_set("%s: header is not valid UTF-8 at offset %zu", path, i);
        i += (size_t)k;
    }
    return 0;
}

/* Parse one shard's header; append its tensors (in offset order) to s->tensors. */
static int parse_file(st_set *s, size_t fi)
{
    st_file *f = &s->files[fi];
    const char *path = f->path;
    if (f->size < 8) return err_set("%s: file too short for a safetensors header (%zu bytes)", path, f->size);
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER)
        return err_set("%s: header length %llu exceeds the 100 MB limit", path, (unsigned long long)hlen);
    if (hlen > f->size - 8)
        return err_set("%s: header length %llu runs past end of file (%zu bytes)", path, (unsigned long long)hlen, f->size);
    if (hlen < 2) return err_set("%s: header of %llu bytes is too short to be a JSON object", path, (unsigned long long)hlen);
    if (check_header_text(path, p + 8, (size_t)hlen)) return -1;
    /* Parse a NUL-terminated copy: cJSON must never read past the header. */
    char *text = xmalloc((size_t)hlen + 1);
    memcpy(text, p + 8, (size_t)hlen);
    text[hlen] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    int rc = 0;
    if (!root) {
        size_t at = end && end >= text && end <= text + hlen ? (size_t)(end - text) : 0;
        rc = err_set("%s: header is not valid JSON (error near byte %zu)", path, at);
        goto out;
    }
    for (const char *q = end; q < text + hlen; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            rc = err_set("%s: unexpected characters after the header JSON at byte %zu", path, (size_t)(q - text));
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        rc = err_set("%s: header is not a JSON object", path);
        goto out;
    }
    if (text[0] != '{') {
        rc = err_set("%s: header must start with '{'", path);
        goto out;
    }
    size_t data_start = 8 + (size_t)hlen, data_len = f->size - data_start;
    size_t first = s->n, count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) count++;
    s->tensors = xrealloc(s->tensors, (s->n + count) * sizeof *s->tensors);
    name_set names = {0};
    cJSON_ArrayForEach(e, root) {
        const char *name = e->string;
        if (strcmp(name, "__metadata__") == 0) {
            if ((rc = parse_metadata(f, e))) break;
            continue;
        }
        if (!*name) {
            rc = err_set("%s: a tensor has an empty name", path);
            break;
        }
        if (name_set_add(&names, name)) {
            rc = err_set("%s: tensor '%s' appears twice in the header", path, name);
            break;
        }
        st_tensor t = {0};
        uint64_t begin = 0;
        t.file = (int)fi;
        if ((rc = parse_entry(path, e, data_len, &t, &begin))) break;
        t.data = p + data_start + begin;
        t.name = xstrdup(name);
        s->tensors[s->n++] = t;
    }
    name_set_free(&names);
    if (!rc) rc = check_tiling(s, first, f, p + data_start, data_len);
out:
    cJSON_Delete(root);
    free(text);
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

/* ---- model.safetensors.index.json ---- */

/* Parse the index, add its shards (unique file names, sorted) to s; *root_out keeps the
 * parsed index for check_index once the shards are loaded. */
static int files_from_index(st_set *s, const char *index_path, cJSON **root_out)
{
    size_t len;
    char *text = fs_read_file(index_path, &len);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return err_set("%s: index is not valid JSON", index_path);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set("%s: index is not a JSON object", index_path);
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int rc = 0;
    if (meta && !cJSON_IsObject(meta) && !cJSON_IsNull(meta))
        rc = err_set("%s: 'metadata' is not an object", index_path);
    else if (!wm)
        rc = err_set("%s: missing 'weight_map'", index_path);
    else if (!cJSON_IsObject(wm))
        rc = err_set("%s: 'weight_map' is not an object", index_path);
    else if (!wm->child)
        rc = err_set("%s: 'weight_map' is empty", index_path);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    char *dir = xstrdup(index_path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else strcpy(dir, "");
    const char **names = NULL;
    size_t nn = 0;
    name_set files = {0}, tensors = {0};
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !*e->valuestring || strchr(e->valuestring, '/') || !strcmp(e->valuestring, ".") ||
            !strcmp(e->valuestring, "..")) {
            rc = err_set("%s: weight_map entry '%s' is not a plain file name", index_path, e->string);
            break;
        }
        if (name_set_add(&tensors, e->string)) {
            rc = err_set("%s: tensor '%s' appears twice in weight_map", index_path, e->string);
            break;
        }
        if (!name_set_add(&files, e->valuestring)) {
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
    name_set_free(&files);
    name_set_free(&tensors);
    free(names);
    free(dir);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    *root_out = root;
    return 0;
}

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* The index and the shards must agree both ways: every listed tensor is in the shard it
 * names, and every tensor of a shard is listed. */
static int check_index(st_set *s, const cJSON *root, const char *index_path)
{
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *e;
    size_t listed = 0;
    cJSON_ArrayForEach(e, wm) {
        const st_tensor *t = lookup(s, e->string);
        if (!t) return err_set("%s: tensor '%s' listed in weight_map is missing from %s", index_path, e->string, e->valuestring);
        const char *base = base_name(s->files[t->file].path);
        if (strcmp(base, e->valuestring) != 0)
            return err_set("%s: tensor '%s' is in %s, index says %s", index_path, e->string, base, e->valuestring);
        listed++;
    }
    if (listed != s->n)
        for (size_t i = 0; i < s->n; i++)
            if (!cJSON_GetObjectItemCaseSensitive(wm, s->tensors[i].name))
                return err_set("%s: tensor '%s' of %s is not listed in weight_map", index_path, s->tensors[i].name,
                               base_name(s->files[s->tensors[i].file].path));
    return 0;
}

/* ---- open / close ---- */

/* Directory without index or model.safetensors: every *.safetensors, in name order. */
static void add_dir_files(st_set *s, const char *path)
{
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
    if (nn) qsort(names, nn, sizeof *names, cmp_str);
    for (size_t i = 0; i < nn; i++) {
        char *p = fs_join(path, names[i]);
        add_file(s, p);
        free(p);
        free(names[i]);
    }
    free(names);
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
            add_dir_files(s, path);
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
    if (index_path && files_from_index(s, index_path, &index_root)) goto fail;
    for (size_t i = 0; i < s->n_files; i++) {
        if (map_file(&s->files[i])) {
            if (index_path) err_prefix("%s: shard named in weight_map", index_path);
            goto fail;
        }
        if (parse_file(s, i)) goto fail;
    }
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

/* ---- queries ---- */

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
    if (file >= s->n_files || i >= s->files[file].n_meta) {
        *key = *value = NULL;
        return;
    }
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

char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    if (!len) return buf;
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}
