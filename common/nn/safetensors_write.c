/* safetensors_write.c — the .safetensors writer; see safetensors.h. */
#include "safetensors.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "checkpoint.h"

/* Round to nearest even, as torch's float -> bfloat16 conversion. */
static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static uint16_t f32_to_f16(float f) {
    _Float16 h = (_Float16)f; /* IEEE round to nearest even */
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

/* n floats as bf16 or f16 bits, 16 at a time where AVX-512 is (the same
 * rounding as the scalar functions, lane for lane). */
static void to_half(uint16_t *dst, const float *src, size_t n, st_dtype dtype) {
    size_t i = 0;
#ifdef __AVX512F__
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet = _mm512_set1_epi32(0x40);
    for (; i + 16 <= n; i += 16) {
        __m256i h;
        if (dtype == ST_F16) {
            h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        } else {
            __m512i u = _mm512_loadu_si512(src + i), hi = _mm512_srli_epi32(u, 16);
            __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one)));
            __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
            r = _mm512_mask_mov_epi32(_mm512_srli_epi32(r, 16), nan, _mm512_or_si512(hi, quiet));
            h = _mm512_cvtepi32_epi16(r);
        }
        _mm256_storeu_si256((__m256i *)(dst + i), h);
    }
#endif
    for (; i < n; i++) dst[i] = dtype == ST_BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
}

static const char *dtype_tag(st_dtype d) {
    return d == ST_F16 ? "F16" : d == ST_BF16 ? "BF16" : "F32";
}

/* The header JSON, space-padded so the data section starts on a block
 * boundary (which also makes it 8-aligned, as the format asks). */
static char *st_header(const st_out_tensor *t, int n, st_dtype dtype,
                       const char *const *meta_keys, const char *const *meta_values,
                       int nmeta, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    for (int i = 0; i < nmeta; i++) cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i]);
    size_t offset = 0, elem = st_dtype_size(dtype);
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON_AddStringToObject(e, "dtype", dtype_tag(dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t[i].ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        offset += t[i].numel * elem;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) out_of_memory("out of memory");
    size_t n_json = strlen(json), padded = (8 + n_json + DIRECT_BLOCK - 1) / DIRECT_BLOCK * DIRECT_BLOCK - 8;
    char *out = xmalloc(8 + padded);
    uint64_t hlen = padded;
    for (int i = 0; i < 8; i++) out[i] = (char)(hlen >> (8 * i)); /* little-endian u64 */
    memcpy(out + 8, json, n_json);
    memset(out + 8 + n_json, ' ', padded - n_json);
    free(json);
    *len = 8 + padded;
    return out;
}

int st_write(const char *path, const st_out_tensor *t, int n, st_dtype dtype, const char *const *meta_keys,
             const char *const *meta_values, int nmeta, char *err, int errlen) {
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        return fail_message(err, errlen, "%s: cannot save as %s", path, st_dtype_name(dtype));
    size_t hlen;
    char *header = st_header(t, n, dtype, meta_keys, meta_values, nmeta, &hlen);
    atomic_file af;
    int ok = atomic_open_direct(&af, path, err, errlen) && atomic_write(&af, header, hlen, err, errlen);
    free(header);
    if (!ok) return 0;
    if (dtype == ST_F32) {
        for (int i = 0; i < n; i++)
            if (!atomic_write(&af, t[i].data, t[i].numel * sizeof(float), err, errlen)) return 0;
        return atomic_commit(&af, err, errlen);
    }
    /* Converted into a block-aligned buffer that fills across tensors, so
     * that every full one goes to the disk from where it was converted. */
    enum { CHUNK = 1 << 18 };
    uint16_t *half = aligned_alloc(DIRECT_BLOCK, CHUNK * sizeof *half);
    if (!half) out_of_memory("out of memory");
    size_t filled = 0;
    for (int i = 0; ok && i < n; i++)
        for (size_t done = 0; ok && done < t[i].numel;) {
            size_t k = t[i].numel - done < CHUNK - filled ? t[i].numel - done : CHUNK - filled;
            to_half(half + filled, t[i].data + done, k, dtype);
            done += k;
            filled += k;
            if (filled == CHUNK) {
                ok = atomic_write(&af, half, CHUNK * sizeof *half, err, errlen);
                filled = 0;
            }
        }
    ok = ok && atomic_write(&af, half, filled * sizeof *half, err, errlen);
    free(half);
    return ok && atomic_commit(&af, err, errlen);
}
