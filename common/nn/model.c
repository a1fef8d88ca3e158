/* model.c — see model.h. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/rng.h"
#include "ops.h"

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

/* The linear layers on the views, and the table from tensors to them. */
static void link_linears(neox_model *m) {
    const neox_config *c = &m->cfg;
    const int L = c->num_layers, C = c->hidden_size, F = c->intermediate_size;
    m->lin = xcalloc((size_t)L, sizeof *m->lin);
    m->tensor_linear = xcalloc((size_t)m->num_tensors, sizeof *m->tensor_linear);
    for (int l = 0; l < L; l++) {
        const neox_layer_params *p = &m->p.layers[l];
        neox_layer_linear *ll = &m->lin[l];
        linear_init(&ll->qkv, p->qkv_w, p->qkv_b, 3 * C, C);
        linear_init(&ll->attn_proj, p->attn_proj_w, p->attn_proj_b, C, C);
        linear_init(&ll->fc, p->fc_w, p->fc_b, F, C);
        linear_init(&ll->fc_proj, p->fc_proj_w, p->fc_proj_b, C, F);
        /* the layer's tensors, in build_table's order */
        linear *by_tensor[12] = {0, 0, 0, 0, &ll->qkv, 0, &ll->attn_proj, 0, &ll->fc, 0, &ll->fc_proj, 0};
        memcpy(m->tensor_linear + 1 + 12 * l, by_tensor, sizeof by_tensor);
    }
    linear_init(&m->lm_head, m->p.lm_head, NULL, c->vocab_size, C);
    m->tensor_linear[c->tie_word_embeddings ? 0 : m->num_tensors - 1] = &m->lm_head;
}

void model_build_table(neox_model *m, const neox_config *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->dev = &device_cpu;
    build_table(m);
}

void model_allocate(neox_model *m, int without_linear) {
    const neox_config *cfg = &m->cfg;
    m->num_params = 0;
    for (int i = 0; i < m->num_tensors; i++) {
        neox_tensor *t = &m->tensors[i];
        int skip = without_linear && model_is_linear_weight(t);
        t->offset = skip ? 0 : m->num_params;
        m->num_params += skip ? 0 : t->numel;
    }
    m->params = xmalloc_aligned(m->num_params * sizeof(float));
    model_param_views(m, m->params, &m->p);
    if (without_linear) {
        for (int l = 0; l < cfg->num_layers; l++) {
            neox_layer_params *lp = &m->p.layers[l];
            lp->qkv_w = lp->attn_proj_w = lp->fc_w = lp->fc_proj_w = NULL;
        }
        if (!cfg->tie_word_embeddings) m->p.lm_head = NULL;
    }
    link_linears(m);
    size_t half = (size_t)cfg->rotary_ndims / 2;
    m->rope_cos = xmalloc(((size_t)cfg->max_positions * half + 1) * sizeof(float));
    m->rope_sin = xmalloc(((size_t)cfg->max_positions * half + 1) * sizeof(float));
    rotary_tables(m->rope_cos, m->rope_sin, cfg->max_positions, cfg->rotary_ndims, cfg->rotary_base);
}

void model_build(neox_model *m, const neox_config *cfg) {
    model_build_table(m, cfg);
    model_allocate(m, 0);
}

void model_set_dtype(neox_model *m, compute_dtype dtype, int uses) {
    m->dtype = dtype;
    m->dtype_uses = dtype == DTYPE_BF16 ? uses : 0;
    for (int i = 0; i < m->num_tensors; i++)
        if (m->tensor_linear[i]) m->dev->linear_set_dtype(m->tensor_linear[i], dtype, uses);
}

static void free_linears(neox_model *m) {
    for (int i = 0; i < m->num_tensors && m->tensor_linear; i++)
        if (m->tensor_linear[i]) m->dev->linear_free(m->tensor_linear[i]);
    free(m->lin);
    free(m->tensor_linear);
    m->lin = NULL;
    m->tensor_linear = NULL;
}

int model_to_device(neox_model *m, const device_ops *dev) {
    if (dev == m->dev) return 0;
    const neox_config *c = &m->cfg;
    size_t bytes = m->num_params * sizeof(float);
    size_t rope = ((size_t)c->max_positions * (c->rotary_ndims / 2) + 1) * sizeof(float);
    float *block = dev->alloc(bytes), *cos_t = dev->alloc(rope), *sin_t = dev->alloc(rope);
    /* a model loaded without its fp32 linear weights (model_load_bf16) stays */
    int complete = m->p.layers[0].qkv_w != NULL;
    if (!block || !cos_t || !sin_t || !complete) {
        dev->release(block);
        dev->release(cos_t);
        dev->release(sin_t);
        return -1;
    }
    dev->upload(block, m->params, bytes);
    dev->upload(cos_t, m->rope_cos, rope);
    dev->upload(sin_t, m->rope_sin, rope);
    free_linears(m);
    model_free_views(&m->p);
    m->host_params = m->params;
    m->host_rope_cos = m->rope_cos;
    m->host_rope_sin = m->rope_sin;
    m->params = block;
    m->rope_cos = cos_t;
    m->rope_sin = sin_t;
    m->dev = dev;
    model_param_views(m, m->params, &m->p);
    link_linears(m);
    model_set_dtype(m, m->dtype, m->dtype_uses);
    return 0;
}

const float *model_host_params(const neox_model *m) {
    if (m->dev->host_memory) return m->params;
    m->dev->download(m->host_params, m->params, m->num_params * sizeof(float));
    return m->host_params;
}

void model_free(neox_model *m) {
    free_linears(m);
    free(m->tensors);
    model_free_views(&m->p);
    if (m->dev && !m->dev->host_memory) {
        m->dev->release(m->params);
        m->dev->release(m->rope_cos);
        m->dev->release(m->rope_sin);
        free(m->host_params);
        free(m->host_rope_cos);
        free(m->host_rope_sin);
    } else {
        free(m->params);
        free(m->rope_cos);
        free(m->rope_sin);
    }
    memset(m, 0, sizeof *m);
}

int model_is_linear_weight(const neox_tensor *t) {
    return t->ndim == 2 && strcmp(t->name, "gpt_neox.embed_in.weight") != 0;
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
