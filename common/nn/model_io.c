/* model_io.c — loading and saving a Hugging Face checkpoint directory;
 * see model_io.h. */
#include "model_io.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cli.h"
#include "base/io.h"
#include "checkpoint.h"
#include "safetensors.h"

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Buffers that old checkpoints carry and the model recomputes. */
static int is_ignored_buffer(const char *name) {
    static const char *suffixes[] = {".attention.bias", ".attention.masked_bias",
                                     ".attention.rotary_emb.inv_freq", ".rotary_emb.inv_freq"};
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len > sl && strcmp(name + len - sl, suffixes[i]) == 0) return 1;
    }
    return 0;
}

typedef struct {
    st_file *files;
    int num_files;
} shard_set;

static void shards_close(shard_set *s) {
    for (int i = 0; i < s->num_files; i++) st_close(&s->files[i]);
    free(s->files);
    memset(s, 0, sizeof *s);
}

static int open_shard(shard_set *s, const char *dir, const char *name, char *err, int errlen) {
    for (int i = 0; i < s->num_files; i++)
        if (strcmp(strrchr(s->files[i].path, '/') + 1, name) == 0) return 1;
    if (strchr(name, '/') || strcmp(name, "..") == 0 || !*name)
        return fail_message(err, errlen, "model.safetensors.index.json names a shard outside %s: %s", dir, name);
    char *path = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    s->files = xrealloc(s->files, (size_t)(s->num_files + 1) * sizeof(st_file));
    char why[200];
    int ok = st_open(&s->files[s->num_files], path, why, sizeof why);
    if (ok) s->num_files++;
    else fail_message(err, errlen, "%s: %s", path, why);
    free(path);
    return ok;
}

/* Opens the single file or every shard of the index. */
static int open_checkpoint(shard_set *s, const char *dir, char *err, int errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (is_file(path)) return open_shard(s, dir, "model.safetensors", err, errlen);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!is_file(path)) {
        char bin[4096];
        snprintf(bin, sizeof bin, "%s/pytorch_model.bin", dir);
        int has_bin = is_file(bin);
        snprintf(bin, sizeof bin, "%s/pytorch_model.bin.index.json", dir);
        has_bin |= is_file(bin);
        if (has_bin)
            return fail_message(err, errlen,
                        "%s has only pytorch_model.bin weights; convert them to safetensors "
                        "(in Python: model.save_pretrained(dir, safe_serialization=True))", dir);
        return fail_message(err, errlen, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    char *text = read_file(path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int ok = 1;
    if (!cJSON_IsObject(map)) ok = fail_message(err, errlen, "%s: no weight_map object", path);
    for (const cJSON *e = ok ? map->child : NULL; e && ok; e = e->next) {
        if (!cJSON_IsString(e)) ok = fail_message(err, errlen, "%s: weight_map entry %s is not a file name", path, e->string);
        else ok = open_shard(s, dir, e->valuestring, err, errlen);
    }
    cJSON_Delete(root);
    return ok;
}

/* The checkpoint's entry for tensor t (and its file in *f), or NULL. */
static const st_tensor *find_in_shards(const shard_set *s, const neox_tensor *t, const st_file **f) {
    const st_tensor *st = NULL;
    *f = NULL;
    for (int k = 0; k < s->num_files && !st; k++) st = st_find(*f = &s->files[k], t->name);
    return st;
}

/* Every tensor of the table is in the checkpoint with the shape the config
 * implies, and nothing else is: checked before the parameters are
 * allocated, so a config.json that does not match fails as a mismatch. */
static int check_tensors(const neox_model *m, const shard_set *s, char *err, int errlen) {
    for (int i = 0; i < m->num_tensors; i++) {
        const neox_tensor *t = &m->tensors[i];
        const st_file *f;
        const st_tensor *st = find_in_shards(s, t, &f);
        if (!st) return fail_message(err, errlen, "checkpoint has no tensor %s", t->name);
        if (st->dtype != ST_F32 && st->dtype != ST_F16 && st->dtype != ST_BF16)
            return fail_message(err, errlen, "tensor %s has dtype %s (F32, F16 or BF16 expected)", t->name,
                        st_dtype_name(st->dtype));
        int match = st->ndim == t->ndim && st->shape[0] == t->shape[0] &&
                    (t->ndim == 1 || st->shape[1] == t->shape[1]);
        if (!match) {
            char got[96] = "";
            for (int d = 0; d < st->ndim && d < 4; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                         (long long)st->shape[d]);
            if (t->ndim == 2)
                return fail_message(err, errlen, "tensor %s has shape [%s], config.json implies [%d, %d]",
                            t->name, got, t->shape[0], t->shape[1]);
            return fail_message(err, errlen, "tensor %s has shape [%s], config.json implies [%d]", t->name,
                        got, t->shape[0]);
        }
    }
    /* Anything else is not a GPTNeoXForCausalLM tensor. */
    for (int k = 0; k < s->num_files; k++)
        for (int i = 0; i < s->files[k].num_tensors; i++) {
            const char *name = s->files[k].tensors[i].name;
            if (model_find_tensor(m, name) || is_ignored_buffer(name)) continue;
            if (m->cfg.tie_word_embeddings && strcmp(name, "embed_out.weight") == 0) continue;
            return fail_message(err, errlen, "unexpected tensor %s (not a GPTNeoXForCausalLM checkpoint?)", name);
        }
    return 1;
}

static int read_tensors(neox_model *m, const shard_set *s, int skip_linear, char *err, int errlen) {
    for (int i = 0; i < m->num_tensors; i++) {
        const neox_tensor *t = &m->tensors[i];
        if (skip_linear && model_is_linear_weight(t)) continue;
        const st_file *f;
        const st_tensor *st = find_in_shards(s, t, &f);
        int ok = st_read_f32(f, st, m->params + t->offset, err, errlen) > 0;
        st_release(f, st);
        if (!ok) return 0;
    }
    return 1;
}

/* Rows converted at a time into the bf16 tiles: a multiple of 32, so each
 * slice fills whole pairs of strips; at most a few MB of fp32. */
#define SLICE_ROWS 256

/* gw's forward copy from the checkpoint's tensor t [OC, C], SLICE_ROWS
 * rows at a time through buf [SLICE_ROWS, C]. */
static int read_packed(gemm_weight *gw, const shard_set *s, const neox_tensor *t, float *buf, char *err,
                       int errlen) {
    const int OC = t->shape[0], C = t->shape[1];
    gemm_weight_init(gw, NULL, OC, C, GEMM_FOR_FORWARD);
    const st_file *f;
    const st_tensor *st = find_in_shards(s, t, &f);
    const size_t row_bytes = (size_t)C * st_dtype_size(st->dtype);
    for (int r0 = 0; r0 < OC; r0 += SLICE_ROWS) {
        const int n = OC - r0 < SLICE_ROWS ? OC - r0 : SLICE_ROWS;
        st_tensor rows = *st;
        rows.begin = st->begin + (size_t)r0 * row_bytes;
        rows.end = rows.begin + (size_t)n * row_bytes;
        rows.numel = (size_t)n * C;
        int ok = st_read_f32(f, &rows, buf, err, errlen) > 0;
        st_release(f, &rows);
        if (!ok) return 0;
        gemm_weight_pack_slice(gw, buf, r0, n);
    }
    return 1;
}

/* The linear layers' weights of the checkpoint into their forward copies. */
static int read_bf16(neox_model *m, const shard_set *s, char *err, int errlen) {
    const neox_config *c = &m->cfg;
    const int widest = c->hidden_size > c->intermediate_size ? c->hidden_size : c->intermediate_size;
    float *buf = xmalloc((size_t)SLICE_ROWS * widest * sizeof(float));
    int ok = 1;
    for (int i = 0; ok && i < m->num_tensors; i++)
        if (model_is_linear_weight(&m->tensors[i]))
            ok = read_packed(&m->tensor_linear[i]->lowp, s, &m->tensors[i], buf, err, errlen);
    free(buf);
    if (!ok) return 0;
    /* tied: from embed_in, kept in fp32 */
    if (c->tie_word_embeddings) linear_set_dtype(&m->lm_head, DTYPE_BF16, GEMM_FOR_FORWARD);
    m->dtype = DTYPE_BF16;
    m->dtype_uses = GEMM_FOR_FORWARD;
    return 1;
}

/* model_load, or model_load_bf16 when bf16. */
static int load(neox_model *m, int bf16, const char *dir, char *err, int errlen) {
    memset(m, 0, sizeof *m);
    if (bf16 && gemm_current_path() == GEMM_FP32)
        return fail_message(err, errlen, "bf16 weights need bf16 products (gemm.h), and the fp32 path is in use");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!is_file(path)) return fail_message(err, errlen, "%s: no config.json", dir);
    char *text = read_file(path, NULL);
    neox_config cfg;
    char why[200];
    int ok = config_parse(text, &cfg, why, sizeof why);
    free(text);
    if (!ok) return fail_message(err, errlen, "%s: %s", path, why);
    shard_set shards = {0};
    if (!open_checkpoint(&shards, dir, err, errlen)) {
        shards_close(&shards);
        return 0;
    }
    model_build_table(m, &cfg);
    ok = check_tensors(m, &shards, err, errlen);
    if (ok) {
        model_allocate(m, bf16);
        ok = read_tensors(m, &shards, bf16, err, errlen) && (!bf16 || read_bf16(m, &shards, err, errlen));
    }
    shards_close(&shards);
    if (!ok) model_free(m);
    return ok;
}

int model_load(neox_model *m, const char *dir, char *err, int errlen) {
    return load(m, 0, dir, err, errlen);
}

int model_load_bf16(neox_model *m, const char *dir, char *err, int errlen) {
    return load(m, 1, dir, err, errlen);
}

/* ---- saving: config.json and model.safetensors ------------------------- */

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

char *config_with_dtype(const char *config_json, st_dtype dtype, char *err, int errlen) {
    cJSON *root = cJSON_Parse(config_json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        fail_message(err, errlen, "config.json is not a JSON object");
        return NULL;
    }
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
    if (!text) out_of_memory("out of memory");
    size_t n = strlen(text);
    char *out = xmalloc(n + 2);
    memcpy(out, text, n);
    out[n] = '\n';
    out[n + 1] = 0;
    free(text);
    return out;
}

int model_save(const char *path, const neox_model *m, st_dtype dtype, char *err, int errlen) {
    st_out_tensor *out = xmalloc((size_t)m->num_tensors * sizeof *out);
    for (int i = 0; i < m->num_tensors; i++) out[i] = st_out_of(&m->tensors[i], model_host_params(m), m->tensors[i].name);
    int ok = st_write(path, out, m->num_tensors, dtype, NULL, NULL, 0, err, errlen);
    free(out);
    return ok;
}
