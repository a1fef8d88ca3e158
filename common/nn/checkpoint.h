/* checkpoint.h — crash-safe files, and the trainer's resumable state.
 * (model.safetensors and config.json for from_pretrained: model_io.h.)
 *
 * Every file is written to a temporary name in the same directory, fsync'd,
 * renamed over the final name, and the directory fsync'd: a process killed
 * at any moment leaves either the old or the new file, never a partial one.
 * A write error (a full disk) removes the temporary file and returns 0 with
 * "path: what: why" in err (ERR_MAX bytes hold any); the previous file
 * stays. */
#ifndef TUNEPIPE_CHECKPOINT_H
#define TUNEPIPE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "safetensors.h"

/* O_DIRECT moves whole blocks of this size (a multiple of every common
 * logical block size) from memory aligned to it. */
#define DIRECT_BLOCK 4096

typedef struct {
    char *path, *tmp_path;
    int fd;
    /* atomic_open_direct: whole 4 KB blocks go by O_DIRECT from the caller's
     * memory to the disk, the rest through stage. */
    int direct;
    char *stage;
    size_t staged;
} atomic_file;

/* Creates path's temporary sibling; 0 with the reason in err on failure. */
int atomic_open(atomic_file *af, const char *path, char *err, int errlen);
/* The same for a big file: written with O_DIRECT where the filesystem
 * takes it, bypassing the page cache. A buffered write of gigabytes runs
 * into the kernel's dirty-page limit and goes at its writeback pace (the
 * 4.9 GB state of pythia-410m: 11-12 s on this project's machines, 2.6-3.6 s
 * by O_DIRECT), and leaves as much cache to reclaim. Data whose address is
 * congruent to its file offset modulo 4 KB is not copied at all. */
int atomic_open_direct(atomic_file *af, const char *path, char *err, int errlen);
/* Writes n bytes; on failure removes the temporary file (af is then
 * done with) and returns 0. */
int atomic_write(atomic_file *af, const void *buf, size_t n, char *err, int errlen);
/* fsync, rename over path, fsync the directory; on failure removes the
 * temporary file and returns 0. */
int atomic_commit(atomic_file *af, char *err, int errlen);

/* Whole-file convenience: the n bytes of buf become path. */
int atomic_write_file(const char *path, const void *buf, size_t n, char *err, int errlen);
/* Copies src to dst atomically (src that cannot be opened ends the
 * process: open_input in io.h). */
int atomic_copy_file(const char *src, const char *dst, char *err, int errlen);

/* Tensor t of a model's block (params, a gradient or a moment) to save. */
static inline st_out_tensor st_out_of(const neox_tensor *t, const float *block, const char *name) {
    return (st_out_tensor){.name = name, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]},
                           .data = block + t->offset, .numel = t->numel};
}

/* The resumable training state in one file (so a crash can never pair
 * parameters with moments of another step): fp32 parameters, AdamW's
 * exp_avg and exp_avg_sq of every tensor, and the trainer's JSON text. */
int state_save(const char *path, const neox_model *m, const float *adam_m, const float *adam_v, const char *json,
               char *err, int errlen);
/* Reads state_save's file into m->params, adam_m and adam_v (m built from
 * the same config); returns the JSON text (malloc'd), or NULL with the
 * reason, naming path, in err when the file is damaged or made for other
 * shapes. */
char *state_load(const char *path, neox_model *m, float *adam_m, float *adam_v, char *err, int errlen);

#endif
