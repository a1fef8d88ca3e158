/* checkpoint.c — atomic files and the safetensors / config.json writers;
 * see checkpoint.h. */
#include "checkpoint.h"

#include <cJSON.h>
#include <errno.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/io.h"

/* ---- atomic files ------------------------------------------------------ */

/* O_DIRECT moves whole blocks of this size (a multiple of every common
 * logical block size) from memory aligned to it. */
#define DIRECT_BLOCK 4096
#define STAGE_BYTES (1 << 20)

static void atomic_fail(atomic_file *af, const char *what) __attribute__((noreturn));
static void atomic_fail(atomic_file *af, const char *what) {
    int err = errno;
    if (af->fd >= 0) close(af->fd);
    unlink(af->tmp_path);
    die("%s: %s: %s%s", af->path, what, strerror(err),
        err == ENOSPC || err == EDQUOT ? " (the previous file is kept)" : "");
}

static int open_tmp(atomic_file *af, const char *path, int flags) {
    *af = (atomic_file){.path = xstrdup(path)};
    size_t n = strlen(path) + 32;
    af->tmp_path = xmalloc(n);
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    return open(af->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0644);
}

void atomic_open(atomic_file *af, const char *path) {
    af->fd = open_tmp(af, path, 0);
    if (af->fd < 0) die("%s: cannot create: %s", af->tmp_path, strerror(errno));
}

void atomic_open_direct(atomic_file *af, const char *path) {
    af->fd = open_tmp(af, path, O_DIRECT);
    if (af->fd < 0 && errno == EINVAL) { /* a filesystem without O_DIRECT */
        free(af->path);
        free(af->tmp_path);
        atomic_open(af, path);
        return;
    }
    if (af->fd < 0) die("%s: cannot create: %s", af->tmp_path, strerror(errno));
    af->direct = 1;
    af->stage = aligned_alloc(DIRECT_BLOCK, STAGE_BYTES);
    if (!af->stage) die("out of memory");
}

/* The rest of the file goes through the page cache. */
static void stop_direct(atomic_file *af) {
    int flags = fcntl(af->fd, F_GETFL);
    if (flags < 0 || fcntl(af->fd, F_SETFL, flags & ~O_DIRECT) != 0) atomic_fail(af, "fcntl");
    af->direct = 0;
}

static void write_out(atomic_file *af, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(af->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            /* O_DIRECT refused after all (a block size above 4 KB, a
             * short write that left the offset unaligned): go buffered. */
            if (errno == EINVAL && af->direct) {
                stop_direct(af);
                continue;
            }
            atomic_fail(af, "write error");
        }
        p += w;
        n -= (size_t)w;
    }
}

/* The whole blocks of the stage; a tail shorter than a block stays. */
static void flush_stage(atomic_file *af) {
    size_t whole = af->staged / DIRECT_BLOCK * DIRECT_BLOCK;
    write_out(af, af->stage, whole);
    memmove(af->stage, af->stage + whole, af->staged - whole);
    af->staged -= whole;
}

void atomic_write(atomic_file *af, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0 && af->direct) {
        /* The file offset is a multiple of the block and so is p: the
         * caller's memory goes to the disk as it is. */
        if (af->staged % DIRECT_BLOCK == 0 && (uintptr_t)p % DIRECT_BLOCK == 0 && n >= DIRECT_BLOCK) {
            flush_stage(af);
            size_t k = n / DIRECT_BLOCK * DIRECT_BLOCK;
            write_out(af, p, k);
            p += k;
            n -= k;
            continue;
        }
        /* Else through the stage; up to the next block boundary only when
         * p is aligned there (the rest may then go straight). */
        size_t k = STAGE_BYTES - af->staged, to_block = DIRECT_BLOCK - af->staged % DIRECT_BLOCK;
        if ((uintptr_t)(p + to_block) % DIRECT_BLOCK == 0 && to_block < k) k = to_block;
        if (n < k) k = n;
        memcpy(af->stage + af->staged, p, k);
        af->staged += k;
        p += k;
        n -= k;
        if (af->staged == STAGE_BYTES) flush_stage(af);
    }
    if (af->staged && !af->direct) { /* O_DIRECT stopped: the stage first */
        write_out(af, af->stage, af->staged);
        af->staged = 0;
    }
    write_out(af, p, n);
}

static void fsync_parent_dir(const char *path) {
    char *copy = xstrdup(path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (dfd < 0) return; /* nothing more we can make durable */
    fsync(dfd);
    close(dfd);
}

void atomic_commit(atomic_file *af) {
    if (af->staged) {
        flush_stage(af);
        if (af->staged) { /* the last partial block, through the page cache */
            if (af->direct) stop_direct(af);
            write_out(af, af->stage, af->staged);
        }
    }
    free(af->stage);
    af->stage = NULL;
    if (fsync(af->fd) != 0) atomic_fail(af, "fsync");
    if (close(af->fd) != 0) {
        af->fd = -1;
        atomic_fail(af, "close");
    }
    af->fd = -1;
    if (rename(af->tmp_path, af->path) != 0) atomic_fail(af, "rename");
    fsync_parent_dir(af->path);
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
}

void atomic_write_file(const char *path, const void *buf, size_t n) {
    atomic_file af;
    atomic_open(&af, path);
    atomic_write(&af, buf, n);
    atomic_commit(&af);
}

void atomic_copy_file(const char *src, const char *dst) {
    int in = open_input(src);
    atomic_file af;
    atomic_open(&af, dst);
    char *buf = xmalloc(1 << 20);
    for (;;) {
        ssize_t r = read(in, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("%s: read error: %s", src, strerror(errno));
        if (r == 0) break;
        atomic_write(&af, buf, (size_t)r);
    }
    free(buf);
    close(in);
    atomic_commit(&af);
}

/* ---- safetensors ------------------------------------------------------- */

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
    if (!json) die("out of memory");
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

void st_write(const char *path, const st_out_tensor *t, int n, st_dtype dtype,
              const char *const *meta_keys, const char *const *meta_values, int nmeta) {
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        die("%s: cannot save as %s", path, st_dtype_name(dtype));
    size_t hlen;
    char *header = st_header(t, n, dtype, meta_keys, meta_values, nmeta, &hlen);
    atomic_file af;
    atomic_open_direct(&af, path);
    atomic_write(&af, header, hlen);
    free(header);
    if (dtype == ST_F32) {
        for (int i = 0; i < n; i++) atomic_write(&af, t[i].data, t[i].numel * sizeof(float));
        atomic_commit(&af);
        return;
    }
    /* Converted into a block-aligned buffer that fills across tensors, so
     * that every full one goes to the disk from where it was converted. */
    enum { CHUNK = 1 << 18 };
    uint16_t *half = aligned_alloc(DIRECT_BLOCK, CHUNK * sizeof *half);
    if (!half) die("out of memory");
    size_t filled = 0;
    for (int i = 0; i < n; i++)
        for (size_t done = 0; done < t[i].numel;) {
            size_t k = t[i].numel - done < CHUNK - filled ? t[i].numel - done : CHUNK - filled;
            to_half(half + filled, t[i].data + done, k, dtype);
            done += k;
            filled += k;
            if (filled == CHUNK) {
                atomic_write(&af, half, CHUNK * sizeof *half);
                filled = 0;
            }
        }
    atomic_write(&af, half, filled * sizeof *half);
    free(half);
    atomic_commit(&af);
}

/* ---- config.json ------------------------------------------------------- */

int save_dtype_parse(const char *name, st_dtype *out) {
    if (strcmp(name, "f32") == 0) *out = ST_F32;
    else if (strcmp(name, "f16") == 0) *out = ST_F16;
    else if (strcmp(name, "bf16") == 0) *out = ST_BF16;
    else return 0;
    return 1;
}

static const char *torch_dtype_name(st_dtype d) {
    return d == ST_F16 ? "float16" : d == ST_BF16 ? "bfloat16" : "float32";
}

st_dtype config_torch_dtype(const char *config_json) {
    cJSON *root = cJSON_Parse(config_json);
    st_dtype d = ST_F32;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (!cJSON_IsString(v)) v = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "float16") == 0) d = ST_F16;
        else if (strcmp(v->valuestring, "bfloat16") == 0) d = ST_BF16;
    }
    cJSON_Delete(root);
    return d;
}

char *config_with_dtype(const char *config_json, st_dtype dtype) {
    cJSON *root = cJSON_Parse(config_json);
    if (!cJSON_IsObject(root)) die("config.json is not a JSON object");
    const char *name = torch_dtype_name(dtype);
    int has_dtype = cJSON_HasObjectItem(root, "dtype");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
    cJSON_AddStringToObject(root, "torch_dtype", name);
    if (has_dtype) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "dtype");
        cJSON_AddStringToObject(root, "dtype", name);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) die("out of memory");
    size_t n = strlen(text);
    char *out = xmalloc(n + 2);
    memcpy(out, text, n);
    out[n] = '\n';
    out[n + 1] = 0;
    free(text);
    return out;
}

/* ---- model and trainer state ------------------------------------------ */

#define STATE_KEY "tunepipe_train_state"
static const char *const state_prefixes[3] = {"param.", "exp_avg.", "exp_avg_sq."};

static st_out_tensor out_tensor(const neox_tensor *t, const float *block, char *name) {
    return (st_out_tensor){.name = name, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]},
                           .data = block + t->offset, .numel = t->numel};
}

void model_save(const char *path, const neox_model *m, st_dtype dtype) {
    st_out_tensor *out = xmalloc((size_t)m->num_tensors * sizeof *out);
    for (int i = 0; i < m->num_tensors; i++)
        out[i] = out_tensor(&m->tensors[i], model_host_params(m), (char *)m->tensors[i].name);
    st_write(path, out, m->num_tensors, dtype, NULL, NULL, 0);
    free(out);
}

void state_save(const char *path, const neox_model *m, const float *adam_m,
                const float *adam_v, const char *json) {
    int n = m->num_tensors * 3;
    st_out_tensor *out = xmalloc((size_t)n * sizeof *out);
    char (*names)[MODEL_MAX_TENSOR_NAME + 16] = xmalloc((size_t)n * sizeof *names);
    /* off the CPU, the moments through host copies */
    const float *blocks[3] = {model_host_params(m), adam_m, adam_v};
    float *host[2] = {NULL, NULL};
    for (int k = 0; k < 2 && !m->dev->host_memory; k++) {
        host[k] = xmalloc(m->num_params * sizeof(float));
        m->dev->download(host[k], blocks[k + 1], m->num_params * sizeof(float));
        blocks[k + 1] = host[k];
    }
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < m->num_tensors; i++) {
            int j = k * m->num_tensors + i;
            snprintf(names[j], sizeof names[j], "%s%s", state_prefixes[k], m->tensors[i].name);
            out[j] = out_tensor(&m->tensors[i], blocks[k], names[j]);
        }
    const char *key = STATE_KEY;
    st_write(path, out, n, ST_F32, &key, &json, 1);
    free(host[0]);
    free(host[1]);
    free(names);
    free(out);
}

/* The value of key in the file's __metadata__ (the reader keeps only the
 * tensors), parsed from the header; malloc'd, or NULL. */
static char *st_metadata_value(const st_file *f, const char *key) {
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)f->map[i] << (8 * i);
    char *text = xmalloc(hlen + 1);
    memcpy(text, f->map + 8, hlen);
    text[hlen] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    char *out = cJSON_IsString(v) ? xstrdup(v->valuestring) : NULL;
    cJSON_Delete(root);
    return out;
}

char *state_load(const char *path, neox_model *m, float *adam_m, float *adam_v) {
    st_file f;
    char err[256];
    if (!st_open(&f, path, err, sizeof err)) die("%s: %s", path, err);
    float *blocks[3] = {m->params, adam_m, adam_v}, *on_device[3] = {m->params, adam_m, adam_v};
    if (!m->dev->host_memory) { /* read on the host, then moved over */
        blocks[0] = m->host_params;
        blocks[1] = xmalloc(m->num_params * sizeof(float));
        blocks[2] = xmalloc(m->num_params * sizeof(float));
    }
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < m->num_tensors; i++) {
            const neox_tensor *t = &m->tensors[i];
            char name[MODEL_MAX_TENSOR_NAME + 16];
            snprintf(name, sizeof name, "%s%s", state_prefixes[k], t->name);
            const st_tensor *st = st_find(&f, name);
            if (!st) die("%s: no tensor %s", path, name);
            if (st->dtype != ST_F32 || st->numel != t->numel)
                die("%s: tensor %s does not fit the model in config.json", path, name);
            st_read_f32(&f, st, blocks[k] + t->offset);
            st_release(&f, st);
        }
    for (int k = 0; k < 3 && !m->dev->host_memory; k++) {
        m->dev->upload(on_device[k], blocks[k], m->num_params * sizeof(float));
        if (k) free(blocks[k]);
    }
    char *json = st_metadata_value(&f, STATE_KEY);
    if (!json) die("%s: not a neox-train state (no %s)", path, STATE_KEY);
    st_close(&f);
    return json;
}
