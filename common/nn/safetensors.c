/* safetensors.c — see safetensors.h. */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cli.h"

static const struct { const char *name; st_dtype dtype; size_t size; } dtypes[] = {
    {"BOOL", ST_BOOL, 1}, {"U8", ST_U8, 1},   {"I8", ST_I8, 1},     {"I16", ST_I16, 2},
    {"U16", ST_U16, 2},   {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2}, {"I32", ST_I32, 4},
    {"U32", ST_U32, 4},   {"F32", ST_F32, 4}, {"I64", ST_I64, 8},   {"U64", ST_U64, 8},
    {"F64", ST_F64, 8},
};
#define NUM_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *st_dtype_name(st_dtype d) {
    for (size_t i = 0; i < NUM_DTYPES; i++)
        if (dtypes[i].dtype == d) return dtypes[i].name;
    return "?";
}

size_t st_dtype_size(st_dtype d) {
    for (size_t i = 0; i < NUM_DTYPES; i++)
        if (dtypes[i].dtype == d) return dtypes[i].size;
    return 0;
}


/* Reads one header entry into t; returns 0 with the reason in err. */
static int parse_entry(const cJSON *item, size_t data_size, st_tensor *t, char *err, int errlen) {
    const char *name = item->string;
    if (!cJSON_IsObject(item)) return fail_message(err, errlen, "tensor %s: entry is not an object", name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt)) return fail_message(err, errlen, "tensor %s: no dtype", name);
    size_t i;
    for (i = 0; i < NUM_DTYPES; i++)
        if (strcmp(dtypes[i].name, dt->valuestring) == 0) break;
    if (i == NUM_DTYPES)
        return fail_message(err, errlen, "tensor %s: unsupported dtype %.20s", name, dt->valuestring);
    t->dtype = dtypes[i].dtype;
    if (!cJSON_IsArray(shape)) return fail_message(err, errlen, "tensor %s: no shape", name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS) return fail_message(err, errlen, "tensor %s: %d dimensions", name, ndim);
    t->ndim = ndim;
    size_t numel = 1;
    int d = 0;
    for (const cJSON *e = shape->child; e; e = e->next, d++) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 9.0e15 ||
            e->valuedouble != (double)(int64_t)e->valuedouble)
            return fail_message(err, errlen, "tensor %s: bad shape", name);
        t->shape[d] = (int64_t)e->valuedouble;
        if (t->shape[d] != 0 && numel > SIZE_MAX / (size_t)t->shape[d])
            return fail_message(err, errlen, "tensor %s: shape too large", name);
        numel *= (size_t)t->shape[d];
    }
    t->numel = numel;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return fail_message(err, errlen, "tensor %s: no data_offsets", name);
    double b = offs->child->valuedouble, e = offs->child->next->valuedouble;
    if (!cJSON_IsNumber(offs->child) || !cJSON_IsNumber(offs->child->next) || b < 0 || e < b ||
        e > (double)data_size || b != (double)(size_t)b || e != (double)(size_t)e)
        return fail_message(err, errlen, "tensor %s: data_offsets outside the file (truncated?)", name);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    if (numel > SIZE_MAX / dtypes[i].size || t->end - t->begin != numel * dtypes[i].size)
        return fail_message(err, errlen, "tensor %s: data_offsets do not match its shape and dtype", name);
    return 1;
}

static int by_begin(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_header(st_file *f, const char *text, size_t len, char *err, int errlen) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) return fail_message(err, errlen, "header is not valid JSON");
    while (end && (size_t)(end - text) < len && (*end == ' ' || *end == '\0')) end++;
    int ok = 1;
    if (!cJSON_IsObject(root)) ok = fail_message(err, errlen, "header is not a JSON object");
    else if (end && (size_t)(end - text) != len) ok = fail_message(err, errlen, "garbage after the header JSON");
    int n = 0;
    if (ok)
        for (const cJSON *it = root->child; it; it = it->next)
            if (strcmp(it->string, "__metadata__") != 0) n++;
    f->tensors = xcalloc((size_t)n + 1, sizeof(st_tensor));
    for (const cJSON *it = root->child; ok && it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        st_tensor *t = &f->tensors[f->num_tensors];
        if (!parse_entry(it, f->data_size, t, err, errlen)) { ok = 0; break; }
        if (st_find(f, it->string)) { ok = fail_message(err, errlen, "tensor %s appears twice", it->string); break; }
        t->name = xstrdup(it->string);
        f->num_tensors++;
    }
    cJSON_Delete(root);
    if (!ok) return 0;
    /* The data section must be tiled exactly: no overlap, no hole, no tail. */
    st_tensor *sorted = xmalloc(((size_t)n + 1) * sizeof *sorted);
    memcpy(sorted, f->tensors, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, by_begin);
    size_t pos = 0;
    for (int i = 0; i < n && ok; i++) {
        if (sorted[i].begin != pos)
            ok = fail_message(err, errlen, "tensor %s: data_offsets overlap or leave a hole", sorted[i].name);
        pos = sorted[i].end;
    }
    if (ok && pos != f->data_size)
        ok = fail_message(err, errlen, "data section is %zu bytes, tensors cover %zu", f->data_size, pos);
    free(sorted);
    return ok;
}

int st_open(st_file *f, const char *path, char *err, int errlen) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_message(err, errlen, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail_message(err, errlen, "not a regular file");
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return fail_message(err, errlen, "too short for a safetensors file (%zu bytes)", size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return fail_message(err, errlen, "mmap: %s", strerror(errno));
    }
    f->fd = fd;
    f->map = map;
    f->size = size;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->map[i];
    int ok = 1;
    if (hlen > ST_MAX_HEADER)
        ok = fail_message(err, errlen, "header length %llu exceeds the %u-byte limit",
                  (unsigned long long)hlen, ST_MAX_HEADER);
    else if (hlen > size - 8)
        ok = fail_message(err, errlen, "header length %llu runs past the end of the file (truncated?)",
                  (unsigned long long)hlen);
    else if (hlen < 2 || f->map[8] != '{')
        ok = fail_message(err, errlen, "header does not start with '{'");
    if (ok) {
        f->data = f->map + 8 + hlen;
        f->data_size = size - 8 - hlen;
        ok = parse_header(f, (const char *)f->map + 8, (size_t)hlen, err, errlen);
    }
    if (!ok) {
        st_close(f);
        return 0;
    }
    f->path = xstrdup(path);
    return 1;
}

void st_close(st_file *f) {
    if (f->map) {
        munmap((void *)f->map, f->size);
        close(f->fd);
    }
    for (int i = 0; i < f->num_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->num_tensors; i++)
        if (f->tensors[i].name && strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | mant << 13;
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | mant << 13;
    } else if (mant == 0) {
        bits = sign;
    } else { /* subnormal: normalize */
        int e = -1;
        do { mant <<= 1; e++; } while (!(mant & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (mant & 0x3ff) << 13;
    }
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

int st_read_f32(const st_file *f, const st_tensor *t, float *out, char *err, int errlen) {
    const uint8_t *src = f->data + t->begin;
    switch (t->dtype) {
    case ST_F32: {
        /* One copy, from the page cache; the map's page faults cost more. */
        char *p = (char *)out;
        off_t at = (off_t)(src - f->map);
        for (size_t left = t->numel * 4; left > 0;) {
            ssize_t r = pread(f->fd, p, left, at);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                fail_message(err, errlen, "%s: read error: %s", f->path, r < 0 ? strerror(errno) : "file shrank");
                return -1;
            }
            p += r;
            at += r;
            left -= (size_t)r;
        }
        return 1;
    }
    case ST_F16:
    case ST_BF16: {
        size_t i = 0;
#ifdef __AVX512F__
        /* 16 at a time; both conversions are exact, as the scalar ones. */
        for (; i + 16 <= t->numel; i += 16) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(src + 2 * i));
            __m512 x = t->dtype == ST_F16 ? _mm512_cvtph_ps(h)
                                          : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            _mm512_storeu_ps(out + i, x);
        }
#endif
        for (; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            if (t->dtype == ST_F16) out[i] = half_to_float(h);
            else memcpy(&out[i], &bits, 4);
        }
        return 1;
    }
    case ST_F64:
        for (size_t i = 0; i < t->numel; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            out[i] = (float)d;
        }
        return 1;
    default:
        return 0;
    }
}

int st_read_f64(const st_file *f, const st_tensor *t, double *out) {
    const uint8_t *src = f->data + t->begin;
    if (t->dtype == ST_F64) {
        memcpy(out, src, t->numel * 8);
        return 1;
    }
    if (t->dtype != ST_F32) return 0;
    for (size_t i = 0; i < t->numel; i++) {
        float x;
        memcpy(&x, src + 4 * i, 4);
        out[i] = x;
    }
    return 1;
}

int st_read_i64(const st_file *f, const st_tensor *t, int64_t *out) {
    switch (t->dtype) { /* before the loop: an empty float tensor is still a float */
    case ST_BOOL: case ST_U8: case ST_I8: case ST_I16: case ST_U16: case ST_I32: case ST_U32:
    case ST_I64: case ST_U64: break;
    default: return 0;
    }
    const uint8_t *src = f->data + t->begin;
    size_t es = st_dtype_size(t->dtype);
    for (size_t i = 0; i < t->numel; i++) {
        const uint8_t *p = src + i * es;
        union { int8_t i8; uint8_t u8; int16_t i16; uint16_t u16; int32_t i32; uint32_t u32;
                int64_t i64; uint64_t u64; } v;
        memcpy(&v, p, es);
        switch (t->dtype) {
        case ST_BOOL: case ST_U8: out[i] = v.u8; break;
        case ST_I8: out[i] = v.i8; break;
        case ST_I16: out[i] = v.i16; break;
        case ST_U16: out[i] = v.u16; break;
        case ST_I32: out[i] = v.i32; break;
        case ST_U32: out[i] = v.u32; break;
        case ST_I64: out[i] = v.i64; break;
        default: out[i] = (int64_t)v.u64; break; /* ST_U64 */
        }
    }
    return 1;
}

void st_release(const st_file *f, const st_tensor *t) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)(f->data + t->begin), hi = (uintptr_t)(f->data + t->end);
    lo = (lo + page - 1) & ~(uintptr_t)(page - 1);
    hi &= ~(uintptr_t)(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}
