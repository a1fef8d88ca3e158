/* checkpoint.c — atomic files and the safetensors / config.json writers;
 * see checkpoint.h. */
#include "checkpoint.h"

#include <cJSON.h>
#include <errno.h>
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

static void atomic_fail(atomic_file *af, const char *what) __attribute__((noreturn));
static void atomic_fail(atomic_file *af, const char *what) {
    int err = errno;
    if (af->fd >= 0) close(af->fd);
    unlink(af->tmp_path);
    die("%s: %s: %s%s", af->path, what, strerror(err),
        err == ENOSPC || err == EDQUOT ? " (the previous file is kept)" : "");
}

void atomic_open(atomic_file *af, const char *path) {
    af->path = xstrdup(path);
    size_t n = strlen(path) + 32;
    af->tmp_path = xmalloc(n);
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (af->fd < 0) die("%s: cannot create: %s", af->tmp_path, strerror(errno));
}

void atomic_write(atomic_file *af, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(af->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            atomic_fail(af, "write error");
        }
        p += w;
        n -= (size_t)w;
    }
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

static const char *dtype_tag(st_dtype d) {
    return d == ST_F16 ? "F16" : d == ST_BF16 ? "BF16" : "F32";
}

/* The header JSON, space-padded so the data section starts 8-aligned. */
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
    size_t n_json = strlen(json), padded = (n_json + 7) / 8 * 8;
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
    atomic_open(&af, path);
    atomic_write(&af, header, hlen);
    free(header);
    enum { CHUNK = 1 << 18 };
    uint16_t *half = dtype == ST_F32 ? NULL : xmalloc(CHUNK * sizeof *half);
    for (int i = 0; i < n; i++) {
        if (dtype == ST_F32) {
            atomic_write(&af, t[i].data, t[i].numel * sizeof(float));
            continue;
        }
        for (size_t done = 0; done < t[i].numel; done += CHUNK) {
            size_t k = t[i].numel - done < CHUNK ? t[i].numel - done : CHUNK;
            const float *src = t[i].data + done;
            if (dtype == ST_BF16)
                for (size_t j = 0; j < k; j++) half[j] = f32_to_bf16(src[j]);
            else
                for (size_t j = 0; j < k; j++) half[j] = f32_to_f16(src[j]);
            atomic_write(&af, half, k * sizeof *half);
        }
    }
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
        out[i] = out_tensor(&m->tensors[i], m->params, (char *)m->tensors[i].name);
    st_write(path, out, m->num_tensors, dtype, NULL, NULL, 0);
    free(out);
}

void state_save(const char *path, const neox_model *m, const float *adam_m,
                const float *adam_v, const char *json) {
    int n = m->num_tensors * 3;
    st_out_tensor *out = xmalloc((size_t)n * sizeof *out);
    char (*names)[MODEL_MAX_TENSOR_NAME + 16] = xmalloc((size_t)n * sizeof *names);
    const float *blocks[3] = {m->params, adam_m, adam_v};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < m->num_tensors; i++) {
            int j = k * m->num_tensors + i;
            snprintf(names[j], sizeof names[j], "%s%s", state_prefixes[k], m->tensors[i].name);
            out[j] = out_tensor(&m->tensors[i], blocks[k], names[j]);
        }
    const char *key = STATE_KEY;
    st_write(path, out, n, ST_F32, &key, &json, 1);
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
    float *blocks[3] = {m->params, adam_m, adam_v};
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
    char *json = st_metadata_value(&f, STATE_KEY);
    if (!json) die("%s: not a neox-train state (no %s)", path, STATE_KEY);
    st_close(&f);
    return json;
}
