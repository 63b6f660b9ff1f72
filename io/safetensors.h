/* safetensors — memory-mapped reader over one file or a sharded checkpoint, and a
 * streaming writer that shards like Hugging Face.
 *
 * Reader: st_open() accepts a .safetensors file, a model.safetensors.index.json, or a
 * directory (index if present, else model.safetensors, else every *.safetensors in name
 * order). Tensors are zero-copy views into the mapping, listed in file order (shard by
 * shard, by data offset). Every violation of the format is reported as one line naming
 * the file and, where there is one, the tensor.
 *
 * Writer: tensors are streamed to the current shard's data file as they are added; a shard
 * is closed when the next tensor would pass shard_bytes. st_writer_finish() writes each
 * shard's header in front of its data under a temporary name, fsyncs and renames, then
 * writes model.safetensors.index.json when there is more than one shard.
 */
#ifndef IO_SAFETENSORS_H
#define IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u * 1024u * 1024u)

typedef struct {
    char *name;
    dtype_t dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data; /* view into the mapping */
    size_t nbytes;
    int file;         /* index of the shard holding it */
} st_tensor;

typedef struct st_set st_set;

st_set *st_open(const char *path);
void st_close(st_set *s);

size_t st_count(const st_set *s);
const st_tensor *st_get(const st_set *s, size_t i);       /* file order */
const st_tensor *st_find(const st_set *s, const char *name); /* NULL if absent (no error set) */
size_t st_file_count(const st_set *s);
const char *st_file_path(const st_set *s, size_t i);
/* __metadata__ of the first shard (or of shard `file` with st_file_metadata). NULL if absent. */
const char *st_metadata(const st_set *s, const char *key);
const char *st_file_metadata(const st_set *s, size_t file, const char *key);
size_t st_file_metadata_count(const st_set *s, size_t file);
void st_file_metadata_at(const st_set *s, size_t file, size_t i, const char **key, const char **value);

/* Convert a float tensor (F16/BF16/F32/F64) to fp32 into dst (numel floats). */
int st_to_f32(const st_tensor *t, float *dst);
/* Find `name`, check it is a float tensor, return a malloc'd fp32 copy. On error NULL with a
 * message naming the tensor and file. */
float *st_load_f32(const st_set *s, const char *name, const st_tensor **info);

/* "[d0, d1, ...]" into buf (truncated to len bytes); returns buf. For messages and listings. */
char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t len);

/* "FILE:TENSOR" or "FILE" (the only tensor) → opened set + tensor. The set must be closed. */
int st_open_spec(const char *spec, st_set **set, const st_tensor **t);

/* ---- writer ---- */
typedef struct st_writer st_writer;

/* path ending in ".safetensors": a single file, never sharded. Otherwise path is a directory
 * (created if needed) receiving <basename>.safetensors or
 * <basename>-0000k-of-0000n.safetensors + <basename>.safetensors.index.json. */
st_writer *st_writer_open(const char *path, const char *basename, size_t shard_bytes);
int st_writer_add(st_writer *w, const char *name, dtype_t dtype, int ndim, const int64_t *shape,
                  const void *data);
/* Converts fp32 data to `dtype` (F16/BF16/F32/F64) on the way out. */
int st_writer_add_f32(st_writer *w, const char *name, dtype_t dtype, int ndim,
                      const int64_t *shape, const float *data);
int st_writer_set_metadata(st_writer *w, const char *key, const char *value);
/* Writes headers, fsyncs, renames; frees w. Returns 0 or -1 (temp files removed). */
int st_writer_finish(st_writer *w);
/* Discards everything written; frees w. */
void st_writer_abort(st_writer *w);
/* Total bytes of tensor data added so far. */
uint64_t st_writer_bytes(const st_writer *w);
/* Removes the temporary files a killed writer of this base left in dir: data parts
 * (.<base>.part<k>.XXXXXX) and shards / index being committed (<name>.tmp.XXXXXX). Only for a
 * dir no live writer of the same base is using. */
void st_writer_remove_temps(const char *dir, const char *base);

#endif
