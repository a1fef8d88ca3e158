/* checkpoint.h — writing what Hugging Face's from_pretrained loads, and
 * the trainer's resumable state, crash-safely.
 *
 * Every file is written to a temporary name in the same directory, fsync'd,
 * renamed over the final name, and the directory fsync'd: a process killed
 * at any moment leaves either the old or the new file, never a partial one.
 * A write error (a full disk) removes the temporary file and dies with the
 * reason; the previous file stays. */
#ifndef TUNEPIPE_CHECKPOINT_H
#define TUNEPIPE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "safetensors.h"

typedef struct {
    char *path, *tmp_path;
    int fd;
    /* atomic_open_direct: whole 4 KB blocks go by O_DIRECT from the caller's
     * memory to the disk, the rest through stage. */
    int direct;
    char *stage;
    size_t staged;
} atomic_file;

/* Creates path's temporary sibling; dies on failure. */
void atomic_open(atomic_file *af, const char *path);
/* The same for a big file: written with O_DIRECT where the filesystem
 * takes it, bypassing the page cache. A buffered write of gigabytes runs
 * into the kernel's dirty-page limit and goes at its writeback pace (the
 * 4.9 GB state of pythia-410m: 11-12 s on this project's machines, 2.6-3.6 s
 * by O_DIRECT), and leaves as much cache to reclaim. Data whose address is
 * congruent to its file offset modulo 4 KB is not copied at all. */
void atomic_open_direct(atomic_file *af, const char *path);
/* Writes n bytes; on failure removes the temporary file and dies. */
void atomic_write(atomic_file *af, const void *buf, size_t n);
/* fsync, rename over path, fsync the directory; dies (removing the
 * temporary file) on failure. */
void atomic_commit(atomic_file *af);

/* Whole-file convenience: the n bytes of buf become path. */
void atomic_write_file(const char *path, const void *buf, size_t n);
/* Copies src to dst atomically. */
void atomic_copy_file(const char *src, const char *dst);

/* One tensor to save, from fp32 data (converted to dtype on the way). */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    const float *data;
    size_t numel;
} st_out_tensor;

/* Writes a .safetensors file: the tensors in the order given, each stored
 * as dtype (ST_F32, ST_F16 or ST_BF16, rounded to nearest even as torch
 * does), and __metadata__ with "format": "pt" plus the given key/value
 * string pairs (nmeta of them, may be 0). The header is padded with
 * spaces (as the format allows) to end on a 4 KB boundary, so that f32
 * tensors of a page-aligned array go to the disk straight from it. */
void st_write(const char *path, const st_out_tensor *tensors, int n, st_dtype dtype,
              const char *const *meta_keys, const char *const *meta_values, int nmeta);

/* "f32", "f16", "bf16" -> dtype; returns 0 for anything else. */
int save_dtype_parse(const char *name, st_dtype *out);
/* The torch_dtype (or dtype) a config.json names, as ST_F32/F16/BF16;
 * ST_F32 when it names none or another. */
st_dtype config_torch_dtype(const char *config_json);
/* config_json with torch_dtype (and dtype, when present) set to dtype's
 * torch name; the result is malloc'd. Dies when config_json is not JSON. */
char *config_with_dtype(const char *config_json, st_dtype dtype);

/* model.safetensors for from_pretrained: every tensor of m under its
 * Hugging Face name, stored as dtype. */
void model_save(const char *path, const neox_model *m, st_dtype dtype);

/* The resumable training state in one file (so a crash can never pair
 * parameters with moments of another step): fp32 parameters, AdamW's
 * exp_avg and exp_avg_sq of every tensor, and the trainer's JSON text. */
void state_save(const char *path, const neox_model *m, const float *adam_m,
                const float *adam_v, const char *json);
/* Reads state_save's file into m->params, adam_m and adam_v (m built from
 * the same config); returns the JSON text (malloc'd). Dies, naming path,
 * when the file is missing, damaged or made for other shapes. */
char *state_load(const char *path, neox_model *m, float *adam_m, float *adam_v);

#endif
