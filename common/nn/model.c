/* model.c — see model.h. */
#include "model.h"
#include "base/rng.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cli.h"
#include "kernels/gemm_internal.h"
#include "base/io.h"
#include "ops.h"
#include "kernels/parallel.h"
#include "safetensors.h"

/* ---- the tensor table ---------------------------------------------------- */

static void add_tensor(neox_model *m, const char *name, int rows, int cols) {
    neox_tensor *t = &m->tensors[m->num_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->numel = (size_t)rows * (cols ? (size_t)cols : 1);
    t->offset = m->num_params;
    m->num_params += t->numel;
}

/* HF state_dict order. */
static void build_table(neox_model *m) {
    const neox_config *c = &m->cfg;
    int C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    m->tensors = xcalloc((size_t)c->num_layers * 12 + 4, sizeof(neox_tensor));
    add_tensor(m, "gpt_neox.embed_in.weight", V, C);
    for (int l = 0; l < c->num_layers; l++) {
        char n[MODEL_MAX_TENSOR_NAME];
#define LAYER_TENSOR(suffix, rows, cols) \
        (snprintf(n, sizeof n, "gpt_neox.layers.%d.%s", l, suffix), add_tensor(m, n, rows, cols))
        LAYER_TENSOR("input_layernorm.weight", C, 0);
        LAYER_TENSOR("input_layernorm.bias", C, 0);
        LAYER_TENSOR("post_attention_layernorm.weight", C, 0);
        LAYER_TENSOR("post_attention_layernorm.bias", C, 0);
        LAYER_TENSOR("attention.query_key_value.weight", 3 * C, C);
        LAYER_TENSOR("attention.query_key_value.bias", 3 * C, 0);
        LAYER_TENSOR("attention.dense.weight", C, C);
        LAYER_TENSOR("attention.dense.bias", C, 0);
        LAYER_TENSOR("mlp.dense_h_to_4h.weight", I, C);
        LAYER_TENSOR("mlp.dense_h_to_4h.bias", I, 0);
        LAYER_TENSOR("mlp.dense_4h_to_h.weight", C, I);
        LAYER_TENSOR("mlp.dense_4h_to_h.bias", C, 0);
#undef LAYER_TENSOR
    }
    add_tensor(m, "gpt_neox.final_layer_norm.weight", C, 0);
    add_tensor(m, "gpt_neox.final_layer_norm.bias", C, 0);
    if (!c->tie_word_embeddings) add_tensor(m, "embed_out.weight", V, C);
}

void model_param_views(const neox_model *m, float *block, neox_params *out) {
    int L = m->cfg.num_layers;
    const neox_tensor *t = m->tensors;
    out->wte = block + t++->offset;
    out->layers = xcalloc((size_t)L, sizeof(neox_layer_params));
    for (int l = 0; l < L; l++) {
        neox_layer_params *lp = &out->layers[l];
        float **order[] = {&lp->ln1_w, &lp->ln1_b, &lp->ln2_w, &lp->ln2_b, &lp->qkv_w, &lp->qkv_b,
                           &lp->attn_proj_w, &lp->attn_proj_b, &lp->fc_w, &lp->fc_b,
                           &lp->fc_proj_w, &lp->fc_proj_b};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) *order[i] = block + t++->offset;
    }
    out->lnf_w = block + t++->offset;
    out->lnf_b = block + t++->offset;
    out->lm_head = m->cfg.tie_word_embeddings ? out->wte : block + t->offset;
}

void model_free_views(neox_params *views) {
    free(views->layers);
    views->layers = NULL;
}

const neox_tensor *model_find_tensor(const neox_model *m, const char *name) {
    for (int i = 0; i < m->num_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* The parameter block, its views and the rotary tables, for the table. */
static void allocate(neox_model *m) {
    const neox_config *cfg = &m->cfg;
    m->params = xmalloc_aligned(m->num_params * sizeof(float));
    model_param_views(m, m->params, &m->p);
    size_t half = (size_t)cfg->rotary_ndims / 2;
    m->rope_cos = xmalloc(((size_t)cfg->max_positions * half + 1) * sizeof(float));
    m->rope_sin = xmalloc(((size_t)cfg->max_positions * half + 1) * sizeof(float));
    rotary_tables(m->rope_cos, m->rope_sin, cfg->max_positions, cfg->rotary_ndims, cfg->rotary_base);
}

void model_build(neox_model *m, const neox_config *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    build_table(m);
    allocate(m);
}

void model_free(neox_model *m) {
    free(m->params);
    free(m->tensors);
    model_free_views(&m->p);
    free(m->rope_cos);
    free(m->rope_sin);
    memset(m, 0, sizeof *m);
}

/* ---- random init ----------------------------------------------------------- */

void model_init_random(neox_model *m, uint64_t seed) {
    rng_state rng;
    rng_seed(&rng, seed);
    float sd = (float)m->cfg.initializer_range;
    for (int i = 0; i < m->num_tensors; i++) {
        const neox_tensor *t = &m->tensors[i];
        float *x = m->params + t->offset;
        size_t len = strlen(t->name);
        int is_bias = len > 5 && strcmp(t->name + len - 5, ".bias") == 0;
        int is_norm = strstr(t->name, "layernorm") || strstr(t->name, "layer_norm");
        if (t->ndim == 2) {
            for (size_t k = 0; k < t->numel; k += 2) { /* Box-Muller, two at a time */
                /* two uniforms in (0, 1] of 24 bits from one draw: the init
                 * needs speed, not tails beyond 5.8 sd */
                uint64_t bits = rng_next(&rng);
                float u1 = (float)((bits & 0xffffff) + 1) * 0x1.0p-24f;
                float u2 = (float)((bits >> 40) + 1) * 0x1.0p-24f;
                float r = sd * sqrtf(-2 * logf(u1)), c, sn;
                sincosf(2 * (float)M_PI * u2, &sn, &c);
                x[k] = r * c;
                if (k + 1 < t->numel) x[k + 1] = r * sn;
            }
        } else {
            float v = is_norm && !is_bias ? 1.0f : 0.0f;
            for (size_t k = 0; k < t->numel; k++) x[k] = v;
        }
    }
}

/* ---- loading ------------------------------------------------------------- */


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

int model_is_linear_weight(const neox_tensor *t) {
    return t->ndim == 2 && strcmp(t->name, "gpt_neox.embed_in.weight") != 0;
}

static void read_tensors(neox_model *m, const shard_set *s, int skip_linear) {
    for (int i = 0; i < m->num_tensors; i++) {
        const neox_tensor *t = &m->tensors[i];
        if (skip_linear && model_is_linear_weight(t)) continue;
        const st_file *f;
        const st_tensor *st = find_in_shards(s, t, &f);
        st_read_f32(f, st, m->params + t->offset);
        st_release(f, st);
    }
}

/* Rows converted at a time into the bf16 tiles: a multiple of 32, so each
 * slice fills whole pairs of strips; at most a few MB of fp32. */
#define SLICE_ROWS 256

typedef struct {
    uint16_t *dst;
    const float *rows;
    int n, C;
} slice_pack;

static void pack_strips(void *arg, size_t begin, size_t end, int part) {
    const slice_pack *p = arg;
    gemm_pack_b_transposed(p->dst, p->rows, p->C, p->C, p->n, (int)begin, (int)end);
}

/* gw's forward tiles (gemm_internal.h) from the checkpoint's tensor t
 * [OC, C], SLICE_ROWS rows at a time through buf [SLICE_ROWS, C]. */
static void read_packed(gemm_weight *gw, const shard_set *s, const neox_tensor *t, float *buf) {
    const int OC = t->shape[0], C = t->shape[1], Kpad = gemm_round_up(C, GEMM_TILE_K);
    const size_t strip = (size_t)Kpad * GEMM_TILE_N, bytes = strip * (gemm_round_up(OC, 32) / GEMM_TILE_N) * 2;
    gemm_weight_init(gw, NULL, OC, C, GEMM_FOR_FORWARD);
    gw->fwd = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!gw->fwd) die("out of memory (%zu bytes for bf16 weights)", bytes);
    const st_file *f;
    const st_tensor *st = find_in_shards(s, t, &f);
    const size_t row_bytes = (size_t)C * st_dtype_size(st->dtype);
    for (int r0 = 0; r0 < OC; r0 += SLICE_ROWS) {
        const int n = OC - r0 < SLICE_ROWS ? OC - r0 : SLICE_ROWS;
        st_tensor rows = *st;
        rows.begin = st->begin + (size_t)r0 * row_bytes;
        rows.end = rows.begin + (size_t)n * row_bytes;
        rows.numel = (size_t)n * C;
        st_read_f32(f, &rows, buf);
        st_release(f, &rows);
        slice_pack p = {gw->fwd + (size_t)(r0 / GEMM_TILE_N) * strip, buf, n, C};
        parallel_for((size_t)gemm_round_up(n, 32) / GEMM_TILE_N, 1, pack_strips, &p);
    }
}

/* The linear layers' weights of the checkpoint into g's forward tiles. */
static void read_bf16(neox_model *m, model_gemm *g, const shard_set *s) {
    const neox_config *c = &m->cfg;
    model_gemm_init_for(g, m, GEMM_FOR_FORWARD);
    const int widest = c->hidden_size > c->intermediate_size ? c->hidden_size : c->intermediate_size;
    float *buf = xmalloc((size_t)SLICE_ROWS * widest * sizeof(float));
    for (int l = 0, i = 0; i < m->num_tensors; i++) {
        const neox_tensor *t = &m->tensors[i];
        if (!model_is_linear_weight(t)) continue;
        gemm_weight *gw = strcmp(t->name, "embed_out.weight") == 0 ? &g->lm_head
                          : strstr(t->name, "query_key_value")      ? &g->qkv[l]
                          : strstr(t->name, "attention.dense")      ? &g->attn_proj[l]
                          : strstr(t->name, "dense_h_to_4h")        ? &g->fc[l]
                                                                    : &g->fc_proj[l++];
        read_packed(gw, s, t, buf);
    }
    free(buf);
    if (c->tie_word_embeddings) gemm_weight_pack(&g->lm_head); /* from embed_in, kept in fp32 */
}

/* The parameter block without the linear layers' weights: their views
 * become NULL. */
static void allocate_without_linear(neox_model *m) {
    m->num_params = 0;
    for (int i = 0; i < m->num_tensors; i++) {
        neox_tensor *t = &m->tensors[i];
        t->offset = model_is_linear_weight(t) ? 0 : m->num_params;
        m->num_params += model_is_linear_weight(t) ? 0 : t->numel;
    }
    allocate(m);
    for (int l = 0; l < m->cfg.num_layers; l++) {
        neox_layer_params *lp = &m->p.layers[l];
        lp->qkv_w = lp->attn_proj_w = lp->fc_w = lp->fc_proj_w = NULL;
    }
    if (!m->cfg.tie_word_embeddings) m->p.lm_head = NULL;
}

/* model_load, or model_load_bf16 when g is not NULL. */
static int load(neox_model *m, model_gemm *g, const char *dir, char *err, int errlen) {
    memset(m, 0, sizeof *m);
    if (g && gemm_current_path() == GEMM_FP32)
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
    m->cfg = cfg;
    build_table(m);
    ok = check_tensors(m, &shards, err, errlen);
    if (ok && g) {
        allocate_without_linear(m);
        read_tensors(m, &shards, 1);
        read_bf16(m, g, &shards);
    } else if (ok) {
        allocate(m);
        read_tensors(m, &shards, 0);
    }
    shards_close(&shards);
    if (!ok) model_free(m);
    return ok;
}

int model_load(neox_model *m, const char *dir, char *err, int errlen) {
    return load(m, NULL, dir, err, errlen);
}

int model_load_bf16(neox_model *m, model_gemm *g, const char *dir, char *err, int errlen) {
    return load(m, g, dir, err, errlen);
}

/* ---- bf16 weights ------------------------------------------------------------ */

void model_gemm_init(model_gemm *g, const neox_model *m) {
    model_gemm_init_for(g, m, GEMM_FOR_FORWARD | GEMM_FOR_BACKWARD);
}

void model_gemm_init_for(model_gemm *g, const neox_model *m, int uses) {
    int L = m->cfg.num_layers, C = m->cfg.hidden_size, F = m->cfg.intermediate_size;
    g->qkv = xcalloc((size_t)L, sizeof *g->qkv);
    g->attn_proj = xcalloc((size_t)L, sizeof *g->attn_proj);
    g->fc = xcalloc((size_t)L, sizeof *g->fc);
    g->fc_proj = xcalloc((size_t)L, sizeof *g->fc_proj);
    for (int l = 0; l < L; l++) {
        const neox_layer_params *p = &m->p.layers[l];
        gemm_weight_init(&g->qkv[l], p->qkv_w, 3 * C, C, uses);
        gemm_weight_init(&g->attn_proj[l], p->attn_proj_w, C, C, uses);
        gemm_weight_init(&g->fc[l], p->fc_w, F, C, uses);
        gemm_weight_init(&g->fc_proj[l], p->fc_proj_w, C, F, uses);
    }
    gemm_weight_init(&g->lm_head, m->p.lm_head, m->cfg.vocab_size, C, uses);
}

void model_gemm_pack(model_gemm *g, const neox_model *m) {
    for (int l = 0; l < m->cfg.num_layers; l++) {
        gemm_weight_pack(&g->qkv[l]);
        gemm_weight_pack(&g->attn_proj[l]);
        gemm_weight_pack(&g->fc[l]);
        gemm_weight_pack(&g->fc_proj[l]);
    }
    gemm_weight_pack(&g->lm_head);
}

void model_gemm_free(model_gemm *g, const neox_model *m) {
    for (int l = 0; l < m->cfg.num_layers; l++) {
        gemm_weight_free(&g->qkv[l]);
        gemm_weight_free(&g->attn_proj[l]);
        gemm_weight_free(&g->fc[l]);
        gemm_weight_free(&g->fc_proj[l]);
    }
    gemm_weight_free(&g->lm_head);
    free(g->qkv);
    free(g->attn_proj);
    free(g->fc);
    free(g->fc_proj);
    memset(g, 0, sizeof *g);
}

/* ---- activations ------------------------------------------------------------- */

static void grow(float **p, size_t n) {
    free(*p);
    *p = xmalloc(n * sizeof(float));
}

/* Room for T tokens, attention blocks summing to sum_sq (of T_s^2), R rows. */
static void acts_reserve(neox_acts *a, const neox_config *cfg, size_t T, size_t sum_sq, size_t R) {
    size_t L = cfg->num_layers, C = cfg->hidden_size, F = cfg->intermediate_size;
    size_t V = cfg->vocab_size, NH = cfg->num_heads;
    if (T > a->cap_T) {
        a->cap_T = T;
        grow(&a->resid, (L + 1) * T * C);
        grow(&a->ln1, L * T * C);
        grow(&a->ln1_mean, L * T);
        grow(&a->ln1_rstd, L * T);
        grow(&a->qkv, L * T * 3 * C);
        grow(&a->atty, L * T * C);
        if (!cfg->use_parallel_residual) grow(&a->resid_mid, L * T * C);
        grow(&a->ln2, L * T * C);
        grow(&a->ln2_mean, L * T);
        grow(&a->ln2_rstd, L * T);
        grow(&a->fch, L * T * F);
        grow(&a->fch_gelu, L * T * F);
        grow(&a->lnf, T * C);
        grow(&a->lnf_mean, T);
        grow(&a->lnf_rstd, T);
        grow(&a->branch, T * C);
    }
    if (NH * sum_sq > a->cap_att) {
        a->cap_att = NH * sum_sq;
        grow(&a->att, L * NH * sum_sq);
    }
    if (R > a->cap_rows) {
        a->cap_rows = R;
        grow(&a->lnf_rows, R * C);
        grow(&a->logits, R * V);
    }
    a->T = (int)T;
    a->A = (int)(NH * sum_sq);
    a->R = (int)R;
}

void acts_alloc(neox_acts *a, const neox_config *cfg, int max_T) {
    memset(a, 0, sizeof *a);
    acts_reserve(a, cfg, (size_t)max_T, (size_t)max_T * max_T, (size_t)max_T);
}

void acts_free(neox_acts *a) {
    float **all[] = {&a->resid, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->att, &a->atty,
                     &a->resid_mid, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu,
                     &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->lnf_rows, &a->logits, &a->branch};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(*all[i]);
    memset(a, 0, sizeof *a);
}

/* ---- the forward's ops on the worker threads ------------------------------------ */

/* out [N, OC] = inp [N, C] · w[OC, C]ᵀ + bias [OC] (bias may be NULL): through
 * gw's bf16 weights, else the fp32 product split over the threads. */
static void linear_forward(float *out, const float *inp, const float *w, const gemm_weight *gw,
                           const float *bias, int N, int C, int OC) {
    if (gw) {
        gemm_forward(out, inp, gw, bias, N);
        return;
    }
    if (bias)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
    parallel_sgemm(0, 1, N, OC, C, 1.0f, inp, C, w, C, bias ? 1.0f : 0.0f, out, OC);
}

typedef struct {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int C;
    float eps;
} layernorm_ctx;

static void layernorm_rows(void *arg, size_t begin, size_t end, int part) {
    const layernorm_ctx *c = arg;
    layernorm_forward(c->out + begin * c->C, c->mean + begin, c->rstd + begin, c->inp + begin * c->C,
                      c->w, c->b, (int)(end - begin), c->C, c->eps);
}

static void parallel_layernorm(float *out, float *mean, float *rstd, const float *inp, const float *w,
                               const float *b, int N, int C, float eps) {
    layernorm_ctx c = {out, mean, rstd, inp, w, b, C, eps};
    parallel_for((size_t)N, 16, layernorm_rows, &c);
}

typedef struct {
    float *out;
    const float *inp;
} gelu_ctx;

static void gelu_range(void *arg, size_t begin, size_t end, int part) {
    const gelu_ctx *c = arg;
    gelu_forward(c->out + begin, c->inp + begin, (int)(end - begin));
}

typedef struct {
    const neox_model *m;
    const neox_pack *pack;
    float *qkv, *atty, *att;
    const size_t *att_offset;
} attention_ctx;

/* Rotary and attention of sequences [begin, end) of the pack. */
static void attention_sequences(void *arg, size_t begin, size_t end, int part) {
    const attention_ctx *c = arg;
    const neox_config *cfg = &c->m->cfg;
    int C = cfg->hidden_size, NH = cfg->num_heads, hd = cfg->head_dim;
    for (size_t s = begin; s < end; s++) {
        int t0 = c->pack->seq_start[s], n = c->pack->seq_start[s + 1] - t0;
        float *qkv = c->qkv + (size_t)t0 * 3 * C;
        rotary_forward(qkv, c->m->rope_cos, c->m->rope_sin, 0, n, NH, hd, cfg->rotary_ndims);
        attention_forward(c->atty + (size_t)t0 * C, c->att + c->att_offset[s], qkv, n, NH, hd);
    }
}

/* ---- the forward ------------------------------------------------------------- */

void model_forward_pack(const neox_model *m, const model_gemm *g, neox_acts *a, const neox_pack *pack) {
    const neox_config *c = &m->cfg;
    const int T = pack->T, C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    const int NH = c->num_heads, L = c->num_layers;
    const float eps = (float)c->layer_norm_eps;
    const size_t TC = (size_t)T * C, TF = (size_t)T * F;
    size_t *att_offset = xmalloc((size_t)pack->nseq * sizeof *att_offset), sum_sq = 0;
    for (int s = 0; s < pack->nseq; s++) {
        size_t n = (size_t)(pack->seq_start[s + 1] - pack->seq_start[s]);
        att_offset[s] = (size_t)NH * sum_sq;
        sum_sq += n * n;
    }
    acts_reserve(a, c, (size_t)T, sum_sq, (size_t)pack->nrows);
    for (int t = 0; t < T; t++)
        memcpy(a->resid + (size_t)t * C, m->p.wte + (size_t)pack->ids[t] * C, (size_t)C * sizeof(float));
    for (int l = 0; l < L; l++) {
        const neox_layer_params *lp = &m->p.layers[l];
        float *res = a->resid + l * TC, *next = a->resid + (l + 1) * TC;
        float *ln1 = a->ln1 + l * TC, *qkv = a->qkv + l * 3 * TC, *atty = a->atty + l * TC;
        float *ln2 = a->ln2 + l * TC, *fch = a->fch + l * TF, *fch_gelu = a->fch_gelu + l * TF;
        parallel_layernorm(ln1, a->ln1_mean + (size_t)l * T, a->ln1_rstd + (size_t)l * T, res,
                           lp->ln1_w, lp->ln1_b, T, C, eps);
        linear_forward(qkv, ln1, lp->qkv_w, g ? &g->qkv[l] : NULL, lp->qkv_b, T, C, 3 * C);
        attention_ctx actx = {m, pack, qkv, atty, a->att + (size_t)l * a->A, att_offset};
        parallel_for((size_t)pack->nseq, 1, attention_sequences, &actx);
        linear_forward(a->branch, atty, lp->attn_proj_w, g ? &g->attn_proj[l] : NULL,
                       lp->attn_proj_b, T, C, C);
        /* next = res + attn now, + mlp below */
        const float *ln2_in = res;
        if (c->use_parallel_residual) {
            residual_forward(next, res, a->branch, (int)TC);
        } else {
            float *mid = a->resid_mid + l * TC;
            residual_forward(mid, res, a->branch, (int)TC);
            memcpy(next, mid, TC * sizeof(float));
            ln2_in = mid;
        }
        parallel_layernorm(ln2, a->ln2_mean + (size_t)l * T, a->ln2_rstd + (size_t)l * T, ln2_in,
                           lp->ln2_w, lp->ln2_b, T, C, eps);
        linear_forward(fch, ln2, lp->fc_w, g ? &g->fc[l] : NULL, lp->fc_b, T, C, F);
        parallel_for(TF, 4096, gelu_range, &(gelu_ctx){fch_gelu, fch});
        linear_forward(a->branch, fch_gelu, lp->fc_proj_w, g ? &g->fc_proj[l] : NULL,
                       lp->fc_proj_b, T, F, C);
        residual_forward(next, next, a->branch, (int)TC);
    }
    free(att_offset);
    parallel_layernorm(a->lnf, a->lnf_mean, a->lnf_rstd, a->resid + L * TC, m->p.lnf_w, m->p.lnf_b,
                       T, C, eps);
    /* Logits only where they are wanted: the vocabulary projection is the
     * largest single product, and --loss answer skips the question's rows. */
    for (int r = 0; r < pack->nrows; r++)
        memcpy(a->lnf_rows + (size_t)r * C, a->lnf + (size_t)pack->row_pos[r] * C, (size_t)C * sizeof(float));
    linear_forward(a->logits, a->lnf_rows, m->p.lm_head, g ? &g->lm_head : NULL, NULL,
                   pack->nrows, C, V);
}

void model_forward(const neox_model *m, neox_acts *a, const uint32_t *ids, int T) {
    int *row_pos = xmalloc((size_t)T * sizeof *row_pos), seq_start[2] = {0, T};
    for (int t = 0; t < T; t++) row_pos[t] = t;
    neox_pack pack = {.T = T, .nseq = 1, .seq_start = seq_start, .ids = ids, .nrows = T,
                      .row_pos = row_pos};
    model_forward_pack(m, NULL, a, &pack);
    free(row_pos);
}
