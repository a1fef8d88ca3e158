/* fuzz_safetensors.c — the safetensors header and tensor table
 * (common/safetensors.h), through a file as the model loader opens it.
 *
 * Properties: st_open never crashes or over-reads the mapping; it either
 * fails with a one-line reason or returns tensors that lie inside the data
 * section, match their shape and dtype, and tile it exactly; reading every
 * tensor stays inside them. */
#include "fuzz.h"

#include "base/cli.h"
#include "nn/safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int by_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static void check_tensors(const st_file *f) {
    const st_tensor **sorted = xmalloc(((size_t)f->num_tensors + 1) * sizeof *sorted);
    for (int i = 0; i < f->num_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS && numel == t->numel, "tensor %s: shape", t->name);
        FUZZ_CHECK(t->begin <= t->end && t->end <= f->data_size, "tensor %s: outside the data", t->name);
        FUZZ_CHECK(t->end - t->begin == t->numel * st_dtype_size(t->dtype), "tensor %s: size", t->name);
        FUZZ_CHECK(st_find(f, t->name) == t, "tensor %s: not found by name", t->name);
        sorted[i] = t;
    }
    qsort(sorted, (size_t)f->num_tensors, sizeof *sorted, by_begin);
    size_t pos = 0;
    for (int i = 0; i < f->num_tensors; i++) {
        FUZZ_CHECK(sorted[i]->begin == pos, "tensors do not tile the data section");
        pos = sorted[i]->end;
    }
    FUZZ_CHECK(pos == f->data_size, "tensors leave a tail");
    free(sorted);
}

/* Every tensor through each reader that takes its dtype: ASan sees any
 * byte read outside the tensor's range. */
static void read_tensors(const st_file *f) {
    for (int i = 0; i < f->num_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        size_t n = t->numel ? t->numel : 1;
        float *f32 = xmalloc(n * sizeof *f32);
        double *f64 = xmalloc(n * sizeof *f64);
        int64_t *i64 = xmalloc(n * sizeof *i64);
        char err[ERR_MAX];
        int as_float = st_read_f32(f, t, f32, err, sizeof err), as_int = st_read_i64(f, t, i64);
        FUZZ_CHECK(as_float >= 0, "tensor %s: %s", t->name, err); /* a memory file cannot fail a read */
        FUZZ_CHECK(as_float != as_int, "tensor %s (%s) is read as both or neither float and integer", t->name,
                   st_dtype_name(t->dtype));
        FUZZ_CHECK(st_read_f64(f, t, f64) == (t->dtype == ST_F32 || t->dtype == ST_F64), "st_read_f64 dtypes");
        st_release(f, t);
        free(f32);
        free(f64);
        free(i64);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = fuzz_memfd(data, size);
    char path[32], err[256];
    memset(err, 0x55, sizeof err);
    st_file f;
    if (st_open(&f, fuzz_fd_path(fd, path), err, sizeof err)) {
        check_tensors(&f);
        read_tensors(&f);
        st_close(&f);
    } else {
        size_t n = strnlen(err, sizeof err);
        FUZZ_CHECK(n > 0 && n < sizeof err, "no reason, or one not terminated");
        FUZZ_CHECK(f.map == NULL && f.tensors == NULL && f.num_tensors == 0, "a failed st_open left state");
        fuzz_reject(err);
    }
    close(fd);
    return 0;
}
