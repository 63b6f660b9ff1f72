/* fsutil — durable file output: write to a temporary name, fsync, rename. */
#ifndef IO_FSUTIL_H
#define IO_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Write `len` bytes to path atomically (unique path.tmp.XXXXXX → fsync → rename → fsync dir). */
int fs_write_atomic(const char *path, const void *data, size_t len);
/* fsync and close fd (open on tmp), rename tmp → final_path and fsync the directory; on
 * failure tmp is removed. fd is closed either way. */
int fs_commit(int fd, const char *tmp, const char *final_path);
/* write() all of data to fd, retrying short writes and EINTR. 0, or -1 with errno set. */
int fs_write_all(int fd, const void *data, size_t len);
/* The same at byte offset off (pwrite), for files written out of order (spill files). */
int fs_pwrite_all(int fd, const void *data, size_t len, off_t off);
int fs_mkdir_p(const char *dir);
int fs_fsync_dir(const char *path_in_dir);
/* Read a whole file (NUL-terminated, *len excludes the NUL). NULL + err on failure. */
char *fs_read_file(const char *path, size_t *len);
/* Read and parse a JSON file. NULL + err ("PATH: invalid JSON", or the read error) on failure. */
struct cJSON *fs_read_json(const char *path);
int fs_is_dir(const char *path);
int fs_exists(const char *path);
/* Copy a file byte for byte (atomically). */
int fs_copy_file(const char *src, const char *dst);
/* Remove the temporaries a killed fs_write_atomic / fs_commit writer left in dir: entries
 * "<final>.tmp.XXXXXX" whose <final> name satisfies owned(final, ctx). Only for a dir no live
 * writer of those names is using. */
void fs_remove_temps(const char *dir, int (*owned)(const char *final_name, const void *ctx), const void *ctx);
/* join: returns malloc'd "a/b" */
char *fs_join(const char *a, const char *b);

#endif
