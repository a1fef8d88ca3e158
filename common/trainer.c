/* trainer.c — packed forward, optimizer steps and eval loss; see trainer.h. */
#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops.h"

void train_forward(const neox_model *m, train_acts *a, const train_pack *pack) {
    const neox_config *c = &m->cfg;
    train_acts_reserve(a, c, pack);
    const int T = pack->T, C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    const int NH = c->num_heads, hd = c->head_dim, L = c->num_layers;
    const float eps = (float)c->layer_norm_eps;
    const size_t TC = (size_t)T * C, TF = (size_t)T * F;
    float *branch = a->dln; /* the backward's scratch is free during the forward */
    for (int t = 0; t < T; t++)
        memcpy(a->resid + (size_t)t * C, m->p.wte + (size_t)pack->ids[t] * C, (size_t)C * sizeof(float));
    for (int l = 0; l < L; l++) {
        const neox_layer_params *lp = &m->p.layers[l];
        float *res = a->resid + l * TC, *next = a->resid + (l + 1) * TC;
        float *ln1 = a->ln1 + l * TC, *qkv = a->qkv + l * 3 * TC, *atty = a->atty + l * TC;
        float *ln2 = a->ln2 + l * TC, *fch = a->fch + l * TF, *fch_gelu = a->fch_gelu + l * TF;
        layernorm_forward(ln1, a->ln1_mean + (size_t)l * T, a->ln1_rstd + (size_t)l * T, res,
                          lp->ln1_w, lp->ln1_b, T, C, eps);
        matmul_forward(qkv, ln1, lp->qkv_w, lp->qkv_b, T, C, 3 * C);
        float *att = a->att + (size_t)l * a->A;
        for (int s = 0; s < pack->nseq; s++) {
            int t0 = pack->seq_start[s], n = pack->seq_start[s + 1] - t0;
            rotary_forward(qkv + (size_t)t0 * 3 * C, m->rope_cos, m->rope_sin, 0, n, NH, hd,
                           c->rotary_ndims);
            attention_forward(atty + (size_t)t0 * C, att, qkv + (size_t)t0 * 3 * C, n, NH, hd);
            att += (size_t)NH * n * n;
        }
        matmul_forward(branch, atty, lp->attn_proj_w, lp->attn_proj_b, T, C, C);
        const float *ln2_in = res;
        if (c->use_parallel_residual) {
            residual_forward(next, res, branch, (int)TC);
        } else {
            float *mid = a->resid_mid + l * TC;
            residual_forward(mid, res, branch, (int)TC);
            memcpy(next, mid, TC * sizeof(float));
            ln2_in = mid;
        }
        layernorm_forward(ln2, a->ln2_mean + (size_t)l * T, a->ln2_rstd + (size_t)l * T, ln2_in,
                          lp->ln2_w, lp->ln2_b, T, C, eps);
        matmul_forward(fch, ln2, lp->fc_w, lp->fc_b, T, C, F);
        gelu_forward(fch_gelu, fch, (int)TF);
        matmul_forward(branch, fch_gelu, lp->fc_proj_w, lp->fc_proj_b, T, F, C);
        residual_forward(next, next, branch, (int)TC);
    }
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->resid + L * TC, m->p.lnf_w, m->p.lnf_b,
                      T, C, eps);
    /* Logits only where there is a loss: the vocabulary projection is the
     * largest single product, and --loss answer skips the question's rows. */
    for (int r = 0; r < pack->nrows; r++)
        memcpy(a->lnf_rows + (size_t)r * C, a->lnf + (size_t)pack->row_pos[r] * C, (size_t)C * sizeof(float));
    matmul_forward(a->logits, a->lnf_rows, m->p.lm_head, NULL, pack->nrows, C, V);
}

/* ---- setup ---------------------------------------------------------------- */

void trainer_init(trainer *t, neox_model *model, const adamw_hparams *adam, double clip) {
    memset(t, 0, sizeof *t);
    t->model = model;
    t->adam = *adam;
    t->clip = clip;
    t->pack_tokens = TRAIN_PACK_TOKENS;
    size_t n = model->num_params;
    t->grad = xcalloc(n, sizeof(float));
    t->adam_m = xcalloc(n, sizeof(float));
    t->adam_v = xcalloc(n, sizeof(float));
    model_param_views(model, t->grad, &t->grad_views);
    t->nspans = model->num_tensors;
    t->spans = xmalloc((size_t)t->nspans * sizeof *t->spans);
    for (int i = 0; i < t->nspans; i++) {
        const neox_tensor *tt = &model->tensors[i];
        /* HF Trainer decays weights but not biases or LayerNorm parameters:
         * exactly the tensors of two dimensions here. */
        t->spans[i] = (param_span){tt->offset, tt->numel, tt->ndim >= 2};
    }
}

void trainer_free(trainer *t) {
    free(t->grad);
    free(t->adam_m);
    free(t->adam_v);
    model_free_views(&t->grad_views);
    free(t->spans);
    train_acts_free(&t->acts);
    free(t->seq_start);
    free(t->row_pos);
    free(t->ids);
    free(t->row_target);
    memset(t, 0, sizeof *t);
}

/* ---- packs ---------------------------------------------------------------- */

/* Lays examples ex[*next ..] end to end while they fit in pack_tokens
 * (at least one), advancing *next. */
static train_pack next_pack(trainer *t, const dataset *d, const size_t *ex, size_t n, size_t *next) {
    size_t first = *next, last = first, tokens = 0, rows = 0;
    while (last < n) {
        const example *e = &d->ex[ex[last]];
        if (last > first && tokens + e->len > (size_t)t->pack_tokens) break;
        tokens += e->len;
        rows += example_num_targets(e);
        last++;
    }
    size_t nseq = last - first;
    if (nseq + 1 > t->cap_seq) {
        t->cap_seq = nseq + 1;
        t->seq_start = xrealloc(t->seq_start, t->cap_seq * sizeof *t->seq_start);
    }
    if (tokens > t->cap_tokens) {
        t->cap_tokens = tokens;
        t->ids = xrealloc(t->ids, tokens * sizeof *t->ids);
    }
    if (rows > t->cap_rows) {
        t->cap_rows = rows;
        t->row_pos = xrealloc(t->row_pos, rows * sizeof *t->row_pos);
        t->row_target = xrealloc(t->row_target, rows * sizeof *t->row_target);
    }
    int pos = 0, r = 0;
    for (size_t s = 0; s < nseq; s++) {
        const example *e = &d->ex[ex[first + s]];
        const uint32_t *src = d->ids + e->start;
        t->seq_start[s] = pos;
        memcpy(t->ids + pos, src, e->len * sizeof *src);
        /* Token p is predicted from the logits at position p - 1. */
        for (uint32_t p = e->target_begin; p < e->len; p++, r++) {
            t->row_pos[r] = pos + (int)p - 1;
            t->row_target[r] = src[p];
        }
        pos += (int)e->len;
    }
    t->seq_start[nseq] = pos;
    *next = last;
    return (train_pack){.T = pos, .nseq = (int)nseq, .seq_start = t->seq_start, .ids = t->ids,
                        .nrows = r, .row_pos = t->row_pos, .row_target = t->row_target};
}

/* ---- steps ---------------------------------------------------------------- */

step_result trainer_gradients(trainer *t, const dataset *d, const size_t *ex, int n) {
    step_result res = {0};
    for (int i = 0; i < n; i++) res.targets += example_num_targets(&d->ex[ex[i]]);
    /* Each token's share of the step loss: the mean over all of them. */
    float scale = (float)(1.0 / (double)res.targets);
    double loss_sum = 0;
    for (size_t next = 0; next < (size_t)n;) {
        train_pack pack = next_pack(t, d, ex, (size_t)n, &next);
        double t0 = now_seconds();
        train_forward(t->model, &t->acts, &pack);
        loss_sum += crossentropy_forward_backward(t->acts.logits, pack.row_target, pack.nrows,
                                                  t->model->cfg.vocab_size, scale);
        double t1 = now_seconds();
        model_backward(t->model, &t->grad_views, &t->acts, &pack);
        t->time_forward += t1 - t0;
        t->time_backward += now_seconds() - t1;
        res.tokens += (size_t)pack.T;
    }
    res.loss = loss_sum / (double)res.targets;
    double t0 = now_seconds();
    res.grad_norm = sqrt(grad_sum_squares(t->grad, t->model->num_params));
    t->time_optimizer += now_seconds() - t0;
    return res;
}

step_result trainer_step(trainer *t, const dataset *d, const size_t *ex, int n, double lr) {
    step_result res = trainer_gradients(t, d, ex, n);
    float factor = (float)clip_factor(res.grad_norm, t->clip);
    t->step++;
    double t0 = now_seconds();
    adamw_step(t->model->params, t->grad, t->adam_m, t->adam_v, t->spans, t->nspans, &t->adam,
               lr, t->step, factor);
    t->time_optimizer += now_seconds() - t0;
    return res;
}

double trainer_loss(trainer *t, const dataset *d, const size_t *ex, size_t n,
                    size_t *targets, double *per_example) {
    double total = 0;
    size_t count = 0;
    for (size_t next = 0; next < n;) {
        size_t first = next;
        train_pack pack = next_pack(t, d, ex, n, &next);
        train_forward(t->model, &t->acts, &pack);
        int V = t->model->cfg.vocab_size, row = 0;
        for (size_t i = first; i < next; i++) {
            int k = (int)example_num_targets(&d->ex[ex[i]]);
            double s = crossentropy_forward(t->acts.logits + (size_t)row * V, pack.row_target + row, k, V);
            if (per_example) per_example[i] = s / k;
            total += s;
            count += (size_t)k;
            row += k;
        }
    }
    if (targets) *targets = count;
    return total;
}
