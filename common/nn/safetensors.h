/* safetensors.h — a strict reader for .safetensors files through mmap,
 * and the writer.
 *
 * Everything in the header is checked before the tensors are trusted: the
 * header length against the file size and a 100 MB limit (checked before
 * allocating), JSON syntax, known dtypes, shapes, and data_offsets that
 * lie inside the file and tile the data section exactly (as the reference
 * implementation requires). */
#ifndef TUNEPIPE_SAFETENSORS_H
#define TUNEPIPE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_HEADER (100u << 20)
#define ST_MAX_DIMS 8

typedef enum { ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32,
               ST_U32, ST_F32, ST_I64, ST_U64, ST_F64 } st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    size_t begin, end;          /* byte offsets into the data section */
} st_tensor;

typedef struct {
    char *path;
    int fd;
    const uint8_t *map;         /* the whole file */
    size_t size;
    const uint8_t *data;        /* the data section (after the header) */
    size_t data_size;
    st_tensor *tensors;
    int num_tensors;
} st_file;

/* Opens and validates path. Returns 0 with a one-line reason in err
 * (without the path) on failure; f is then empty. */
int st_open(st_file *f, const char *path, char *err, int errlen);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);

/* Converts a float tensor (F32, F16, BF16 or F64) to fp32; returns 1, or
 * 0 for any other dtype. out holds t->numel floats. F32 is read() straight
 * into out, without faulting in the map's pages; a read error returns -1
 * with "path: read error: why" in err. */
int st_read_f32(const st_file *f, const st_tensor *t, float *out, char *err, int errlen);
/* Converts an integer tensor (I64, I32, U32, U8, I8, I16, U16, U64, BOOL) to
 * int64; returns 0 for float dtypes. */
int st_read_i64(const st_file *f, const st_tensor *t, int64_t *out);
/* F64 or F32 to double; returns 0 otherwise. */
int st_read_f64(const st_file *f, const st_tensor *t, double *out);
/* Lets the kernel drop the pages of t from this process (they were copied). */
void st_release(const st_file *f, const st_tensor *t);

/* ---- writing (safetensors_write.c) ------------------------------------------ */

/* One tensor to save, from fp32 data (converted to dtype on the way). */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    const float *data;
    size_t numel;
} st_out_tensor;

/* Writes a .safetensors file crash-safely (checkpoint.h): the tensors in
 * the order given, each stored as dtype (ST_F32, ST_F16 or ST_BF16,
 * rounded to nearest even as torch does), and __metadata__ with "format":
 * "pt" plus the given key/value string pairs (nmeta of them, may be 0).
 * The header is padded with spaces (as the format allows) to end on a 4 KB
 * boundary, so that f32 tensors of a page-aligned array go to the disk
 * straight from it. Returns 0 with the reason in err on failure. */
int st_write(const char *path, const st_out_tensor *tensors, int n, st_dtype dtype, const char *const *meta_keys,
             const char *const *meta_values, int nmeta, char *err, int errlen);

#endif
