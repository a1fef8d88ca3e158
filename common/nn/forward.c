/* forward.c — see forward.h. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "kernels/gemv.h"
#include "kernels/parallel.h"
#include "ops.h"

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

/* ---- the element-wise ops on the worker threads --------------------------------- */

typedef struct {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int C;
    float eps;
} layernorm_ctx;

static void layernorm_rows(void *arg, size_t begin, size_t end, int part) {
    const layernorm_ctx *c = arg;
    layernorm_forward(c->out + begin * c->C, c->mean ? c->mean + begin : NULL,
                      c->rstd ? c->rstd + begin : NULL, c->inp + begin * c->C, c->w, c->b,
                      (int)(end - begin), c->C, c->eps);
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

/* ---- a layer ------------------------------------------------------------------ */

typedef struct {
    const layer_attention *att;
    int l;
    float *qkv, *atty;
} attention_first_ctx;

static void attention_first(void *arg) {
    const attention_first_ctx *a = arg;
    a->att->fn(a->att->ctx, a->l, a->qkv, a->atty, 1);
}

/* layer_forward's decoding step: qkv and the MLP's first product share one
 * pass of the pool, the two output products the next, where the caller
 * computes the attention while the other threads start on the MLP's. */
static void layer_fused(const neox_model *m, int l, const layer_bufs *b, int R, const layer_attention *att) {
    const neox_config *c = &m->cfg;
    const neox_layer_params *lp = &m->p.layers[l];
    const neox_layer_linear *L = &m->lin[l];
    const int C = c->hidden_size;
    const float eps = (float)c->layer_norm_eps;
    parallel_layernorm(b->ln1, b->ln1_mean, b->ln1_rstd, b->in, lp->ln1_w, lp->ln1_b, R, C, eps);
    parallel_layernorm(b->ln2, b->ln2_mean, b->ln2_rstd, b->in, lp->ln2_w, lp->ln2_b, R, C, eps);
    gemv_bf16_product in[2] = {{b->qkv, b->ln1, &L->qkv.lowp, L->qkv.b, 0},
                               {b->fch_gelu, b->ln2, &L->fc.lowp, L->fc.b, 1}};
    gemv_bf16_forward_many(in, 2, R);
    gemv_bf16_product out[2] = {{b->branch2, b->fch_gelu, &L->fc_proj.lowp, L->fc_proj.b, 0},
                                {b->branch, b->atty, &L->attn_proj.lowp, L->attn_proj.b, 0}};
    attention_first_ctx a = {att, l, b->qkv, b->atty};
    gemv_bf16_forward_after(out, 2, R, 1, attention_first, &a);
    residual_forward(b->out, b->in, b->branch, R * C);
    residual_forward(b->out, b->out, b->branch2, R * C);
}

void layer_forward(const neox_model *m, int l, const layer_bufs *b, int R, const layer_attention *att) {
    const neox_config *c = &m->cfg;
    const neox_layer_params *lp = &m->p.layers[l];
    const neox_layer_linear *L = &m->lin[l];
    const int C = c->hidden_size, F = c->intermediate_size;
    const size_t RC = (size_t)R * C;
    const float eps = (float)c->layer_norm_eps;
    if (att->one_row_each && c->use_parallel_residual && linear_forward_kernel(&L->qkv, R) == LINEAR_GEMV_BF16) {
        layer_fused(m, l, b, R, att);
        return;
    }
    parallel_layernorm(b->ln1, b->ln1_mean, b->ln1_rstd, b->in, lp->ln1_w, lp->ln1_b, R, C, eps);
    linear_forward(&L->qkv, b->qkv, b->ln1, R);
    att->fn(att->ctx, l, b->qkv, b->atty, 0);
    linear_forward(&L->attn_proj, b->branch, b->atty, R);
    /* out = in + attn now, + mlp below */
    if (c->use_parallel_residual) {
        /* ln2 first: out may be in */
        parallel_layernorm(b->ln2, b->ln2_mean, b->ln2_rstd, b->in, lp->ln2_w, lp->ln2_b, R, C, eps);
        residual_forward(b->out, b->in, b->branch, (int)RC);
    } else {
        float *mid = b->resid_mid ? b->resid_mid : b->out;
        residual_forward(mid, b->in, b->branch, (int)RC);
        if (mid != b->out) memcpy(b->out, mid, RC * sizeof(float));
        parallel_layernorm(b->ln2, b->ln2_mean, b->ln2_rstd, mid, lp->ln2_w, lp->ln2_b, R, C, eps);
    }
    linear_forward(&L->fc, b->fch, b->ln2, R);
    parallel_for((size_t)R * F, 4096, gelu_range, &(gelu_ctx){b->fch_gelu, b->fch});
    linear_forward(&L->fc_proj, b->branch, b->fch_gelu, R);
    residual_forward(b->out, b->out, b->branch, (int)RC);
}

/* ---- the packed forward ------------------------------------------------------- */

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

typedef struct {
    const neox_model *m;
    const neox_pack *pack;
    neox_acts *a;
    const size_t *att_offset;
} pack_ctx;

/* Causal attention within each sequence, its probabilities kept. */
static void pack_attention(void *arg, int l, float *qkv, float *atty, int here) {
    const pack_ctx *p = arg;
    attention_ctx c = {p->m, p->pack, qkv, atty, p->a->att + (size_t)l * p->a->A, p->att_offset};
    parallel_for((size_t)p->pack->nseq, 1, attention_sequences, &c);
}

void model_forward_pack(const neox_model *m, neox_acts *a, const neox_pack *pack) {
    const neox_config *c = &m->cfg;
    const int T = pack->T, C = c->hidden_size, NH = c->num_heads, L = c->num_layers;
    const size_t TC = (size_t)T * C, TF = (size_t)T * c->intermediate_size;
    size_t *att_offset = xmalloc((size_t)pack->nseq * sizeof *att_offset), sum_sq = 0;
    for (int s = 0; s < pack->nseq; s++) {
        size_t n = (size_t)(pack->seq_start[s + 1] - pack->seq_start[s]);
        att_offset[s] = (size_t)NH * sum_sq;
        sum_sq += n * n;
    }
    acts_reserve(a, c, (size_t)T, sum_sq, (size_t)pack->nrows);
    for (int t = 0; t < T; t++)
        memcpy(a->resid + (size_t)t * C, m->p.wte + (size_t)pack->ids[t] * C, (size_t)C * sizeof(float));
    pack_ctx pc = {m, pack, a, att_offset};
    const layer_attention att = {pack_attention, &pc, 0};
    for (int l = 0; l < L; l++) {
        const size_t lT = (size_t)l * T;
        layer_bufs b = {
            .in = a->resid + l * TC, .out = a->resid + (l + 1) * TC,
            .ln1 = a->ln1 + l * TC, .ln1_mean = a->ln1_mean + lT, .ln1_rstd = a->ln1_rstd + lT,
            .qkv = a->qkv + l * 3 * TC, .atty = a->atty + l * TC,
            .resid_mid = c->use_parallel_residual ? NULL : a->resid_mid + l * TC,
            .ln2 = a->ln2 + l * TC, .ln2_mean = a->ln2_mean + lT, .ln2_rstd = a->ln2_rstd + lT,
            .fch = a->fch + l * TF, .fch_gelu = a->fch_gelu + l * TF, .branch = a->branch,
        };
        layer_forward(m, l, &b, T, &att);
    }
    free(att_offset);
    parallel_layernorm(a->lnf, a->lnf_mean, a->lnf_rstd, a->resid + L * TC, m->p.lnf_w, m->p.lnf_b,
                       T, C, (float)c->layer_norm_eps);
    /* Logits only where they are wanted: the vocabulary projection is the
     * largest single product, and --loss answer skips the question's rows. */
    for (int r = 0; r < pack->nrows; r++)
        memcpy(a->lnf_rows + (size_t)r * C, a->lnf + (size_t)pack->row_pos[r] * C, (size_t)C * sizeof(float));
    linear_forward(&m->lm_head, a->logits, a->lnf_rows, pack->nrows);
}

void model_forward(const neox_model *m, neox_acts *a, const uint32_t *ids, int T) {
    int *row_pos = xmalloc((size_t)T * sizeof *row_pos), seq_start[2] = {0, T};
    for (int t = 0; t < T; t++) row_pos[t] = t;
    neox_pack pack = {.T = T, .nseq = 1, .seq_start = seq_start, .ids = ids, .nrows = T,
                      .row_pos = row_pos};
    model_forward_pack(m, a, &pack);
    free(row_pos);
}
