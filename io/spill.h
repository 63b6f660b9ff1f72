/* spill — the calibration activations X_L ([rows, cols] fp32 values) of the pipeline, held
 * either in RAM (fp32) or in a spill file (bf16 or f32), read and written in row ranges
 * (one batch of whole sequences at a time).
 *
 * A spill file has a 64-byte header (magic "GESPILL1", rows, cols, dtype) followed by the
 * rows. With dtype F32 the values read back are exactly the values written, so a spilled
 * run is bit-identical to an in-RAM one; BF16 halves the disk traffic and rounds to nearest
 * even. act_store_save()/act_store_load() make a durable copy of a RAM store (the resume
 * point of an in-RAM run); act_store_open() reopens an existing spill file after a crash. */
#ifndef IO_SPILL_H
#define IO_SPILL_H

#include <stdint.h>

#include "io/dtype.h"

typedef struct act_store act_store;

/* In-RAM fp32 store (zero-filled). */
act_store *act_store_ram(int64_t rows, int cols);
/* New spill file (truncated/created) of the given dtype (DT_F32 or DT_BF16). NULL + err. */
act_store *act_store_create(const char *path, int64_t rows, int cols, dtype_t dtype);
/* Existing spill file; its header must match rows/cols/dtype. NULL + err. */
act_store *act_store_open(const char *path, int64_t rows, int cols, dtype_t dtype);
void act_store_close(act_store *s);          /* keeps the file */
void act_store_close_unlink(act_store *s);   /* removes a spill file */

int64_t act_store_rows(const act_store *s);
int act_store_cols(const act_store *s);
int act_store_is_file(const act_store *s);
const char *act_store_path(const act_store *s); /* NULL for RAM */
/* Bytes the store occupies (RAM or disk). */
uint64_t act_store_bytes(const act_store *s);

/* Rows [row0, row0+n) ↔ dst/src ([n, cols] fp32). */
int act_store_read(const act_store *s, int64_t row0, int64_t n, float *dst);
int act_store_write(act_store *s, int64_t row0, int64_t n, const float *src);
/* Make the file's contents durable (no-op for RAM). */
int act_store_sync(act_store *s);

/* Durable fp32 copy of any store at path (tmp + fsync + rename). */
int act_store_save(const act_store *s, const char *path);
/* Load a file written by act_store_save (or any F32 spill file) into a RAM store. */
act_store *act_store_load(const char *path, int64_t rows, int cols);
/* Remove the temp files act_store_save leaves behind when killed ("<name>.tmp.<pid>" in dir,
 * name from names[0..n)); a missing dir is fine. */
void act_store_remove_temps(const char *dir, const char *const *names, int n);

#endif
