/* forward.c — see forward.h. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "base/cli.h"

/* ---- activations ------------------------------------------------------------- */

/* Room for T tokens, attention blocks summing to sum_sq (of T_s^2), R rows. */
static void acts_reserve(neox_acts *a, const neox_config *cfg, size_t T, size_t sum_sq, size_t R) {
    const device_ops *dev = a->dev;
    size_t L = cfg->num_layers, C = cfg->hidden_size, F = cfg->intermediate_size;
    size_t NH = cfg->num_heads;
    if (T > a->cap_T) {
        a->cap_T = T;
        device_regrow(dev, &a->resid, (L + 1) * T * C);
        device_regrow(dev, &a->ln1, L * T * C);
        device_regrow(dev, &a->ln1_mean, L * T);
        device_regrow(dev, &a->ln1_rstd, L * T);
        device_regrow(dev, &a->qkv, L * T * 3 * C);
        device_regrow(dev, &a->atty, L * T * C);
        if (!cfg->use_parallel_residual) device_regrow(dev, &a->resid_mid, L * T * C);
        device_regrow(dev, &a->ln2, L * T * C);
        device_regrow(dev, &a->ln2_mean, L * T);
        device_regrow(dev, &a->ln2_rstd, L * T);
        device_regrow(dev, &a->fch, L * T * F);
        device_regrow(dev, &a->fch_gelu, L * T * F);
        device_regrow(dev, &a->lnf, T * C);
        device_regrow(dev, &a->lnf_mean, T);
        device_regrow(dev, &a->lnf_rstd, T);
        device_regrow(dev, &a->branch, T * C);
    }
    if (NH * sum_sq > a->cap_att) {
        a->cap_att = NH * sum_sq;
        device_regrow(dev, &a->att, L * NH * sum_sq);
    }
    if (R > a->cap_rows) {
        a->cap_rows = R;
        device_regrow(dev, &a->lnf_rows, R * C);
    }
    a->T = (int)T;
    a->A = (int)(NH * sum_sq);
    a->R = (int)R;
}

/* Room for R rows of logits: apart, since a device with head_loss never
 * holds them all. */
static void logits_reserve(neox_acts *a, const neox_config *cfg, size_t R) {
    if (R > a->cap_logits) {
        a->cap_logits = R;
        device_regrow(a->dev, &a->logits, R * cfg->vocab_size);
    }
}

void acts_alloc(neox_acts *a, const neox_model *m, int max_T) {
    memset(a, 0, sizeof *a);
    a->dev = m->dev;
    acts_reserve(a, &m->cfg, (size_t)max_T, (size_t)max_T * max_T, (size_t)max_T);
    logits_reserve(a, &m->cfg, (size_t)max_T);
}

void acts_free(neox_acts *a) {
    float **all[] = {&a->resid, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->att, &a->atty,
                     &a->resid_mid, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu,
                     &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->lnf_rows, &a->logits, &a->branch};
    if (a->dev)
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) a->dev->release(*all[i]);
    memset(a, 0, sizeof *a);
}

/* ---- a layer ------------------------------------------------------------------ */

void layer_forward(const neox_model *m, int l, const layer_bufs *b, int R, const layer_attention *att) {
    const device_ops *dev = m->dev;
    const neox_config *c = &m->cfg;
    const neox_layer_params *lp = &m->p.layers[l];
    const neox_layer_linear *L = &m->lin[l];
    const int C = c->hidden_size, F = c->intermediate_size;
    const size_t RC = (size_t)R * C;
    const float eps = (float)c->layer_norm_eps;
    if (att->one_row_each && dev->decode_layer && dev->decode_layer(m, l, b, R, att)) return;
    dev->layernorm_forward(b->ln1, b->ln1_mean, b->ln1_rstd, b->in, lp->ln1_w, lp->ln1_b, R, C, eps);
    dev->linear_forward(&L->qkv, b->qkv, b->ln1, R);
    att->fn(att->ctx, l, b->qkv, b->atty, 0);
    dev->linear_forward(&L->attn_proj, b->branch, b->atty, R);
    /* out = in + attn now, + mlp below */
    if (c->use_parallel_residual) {
        /* ln2 first: out may be in */
        dev->layernorm_forward(b->ln2, b->ln2_mean, b->ln2_rstd, b->in, lp->ln2_w, lp->ln2_b, R, C, eps);
        dev->residual_forward(b->out, b->in, b->branch, RC);
    } else {
        float *mid = b->resid_mid ? b->resid_mid : b->out;
        dev->residual_forward(mid, b->in, b->branch, RC);
        if (mid != b->out) dev->copy(b->out, mid, RC * sizeof(float));
        dev->layernorm_forward(b->ln2, b->ln2_mean, b->ln2_rstd, mid, lp->ln2_w, lp->ln2_b, R, C, eps);
    }
    dev->linear_forward(&L->fc, b->fch, b->ln2, R);
    dev->gelu_forward(b->fch_gelu, b->fch, (size_t)R * F);
    dev->linear_forward(&L->fc_proj, b->branch, b->fch_gelu, R);
    dev->residual_forward(b->out, b->out, b->branch, RC);
}

/* ---- the packed forward ------------------------------------------------------- */

typedef struct {
    const neox_model *m;
    const device_pack *pack;
    neox_acts *a;
} pack_ctx;

/* Causal attention within each sequence, its probabilities kept. */
static void pack_attention(void *arg, int l, float *qkv, float *atty, int here) {
    const pack_ctx *p = arg;
    p->m->dev->attention_forward(p->m, p->pack, qkv, p->a->att + (size_t)l * p->a->A, atty);
}

void model_forward_trunk(const neox_model *m, neox_acts *a, const device_pack *dp) {
    const device_ops *dev = m->dev;
    const neox_pack *pack = dp->host;
    const neox_config *c = &m->cfg;
    const int T = pack->T, C = c->hidden_size, L = c->num_layers;
    const size_t TC = (size_t)T * C, TF = (size_t)T * c->intermediate_size;
    size_t sum_sq = 0;
    for (int s = 0; s < pack->nseq; s++) {
        size_t n = (size_t)(pack->seq_start[s + 1] - pack->seq_start[s]);
        sum_sq += n * n;
    }
    if (!a->dev) a->dev = dev;
    acts_reserve(a, c, (size_t)T, sum_sq, (size_t)pack->nrows);
    dev->embedding_forward(a->resid, m->p.wte, dp->ids, T, C);
    pack_ctx pc = {m, dp, a};
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
    dev->layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->resid + L * TC, m->p.lnf_w, m->p.lnf_b,
                           T, C, (float)c->layer_norm_eps);
    /* Logits only where they are wanted: the vocabulary projection is the
     * largest single product, and --loss answer skips the question's rows. */
    dev->gather_rows(a->lnf_rows, a->lnf, dp->row_pos, pack->nrows, C);
}

void model_forward_pack(const neox_model *m, neox_acts *a, const device_pack *dp) {
    model_forward_trunk(m, a, dp);
    logits_reserve(a, &m->cfg, (size_t)dp->host->nrows);
    m->dev->linear_forward(&m->lm_head, a->logits, a->lnf_rows, dp->host->nrows);
}

void model_forward(const neox_model *m, neox_acts *a, const uint32_t *ids, int T) {
    int *row_pos = xmalloc((size_t)T * sizeof *row_pos), seq_start[2] = {0, T};
    for (int t = 0; t < T; t++) row_pos[t] = t;
    neox_pack pack = {.T = T, .nseq = 1, .seq_start = seq_start, .ids = ids, .nrows = T,
                      .row_pos = row_pos};
    device_pack_buf buf = {0};
    model_forward_pack(m, a, device_pack_upload(&buf, m->dev, &pack));
    device_pack_free(&buf);
    free(row_pos);
}

/* ---- packs on the device ------------------------------------------------------ */

const device_pack *device_pack_upload(device_pack_buf *b, const device_ops *dev, const neox_pack *pack) {
    b->dev = dev;
    if (dev->host_memory) {
        b->p = (device_pack){pack, pack->ids, pack->row_target, pack->row_pos};
        return &b->p;
    }
    size_t T = (size_t)pack->T, R = (size_t)pack->nrows;
    if (T > b->cap_T || !b->ids) {
        b->cap_T = T;
        dev->release(b->ids);
        b->ids = device_alloc(dev, T * sizeof *b->ids);
    }
    if (R > b->cap_rows || !b->row_pos) {
        b->cap_rows = R;
        dev->release(b->row_pos);
        dev->release(b->row_target);
        b->row_pos = device_alloc(dev, R * sizeof *b->row_pos);
        b->row_target = device_alloc(dev, R * sizeof *b->row_target);
    }
    dev->upload(b->ids, pack->ids, T * sizeof *b->ids);
    dev->upload(b->row_pos, pack->row_pos, R * sizeof *b->row_pos);
    if (pack->row_target) dev->upload(b->row_target, pack->row_target, R * sizeof *b->row_target);
    b->p = (device_pack){pack, b->ids, pack->row_target ? b->row_target : NULL, b->row_pos};
    return &b->p;
}

void device_pack_free(device_pack_buf *b) {
    if (b->dev) {
        b->dev->release(b->ids);
        b->dev->release(b->row_pos);
        b->dev->release(b->row_target);
    }
    memset(b, 0, sizeof *b);
}
