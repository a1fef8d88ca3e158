/* trainer.c — packed forward, optimizer steps and eval loss; see trainer.h. */
#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops.h"
#include "parallel.h"

/* ---- the forward's per-row ops on the worker threads ------------------------ */

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
    const train_pack *pack;
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

void train_forward(const neox_model *m, const model_gemm *g, train_acts *a, const train_pack *pack) {
    const neox_config *c = &m->cfg;
    train_acts_reserve(a, c, pack);
    const int T = pack->T, C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    const int NH = c->num_heads, L = c->num_layers;
    const float eps = (float)c->layer_norm_eps;
    const size_t TC = (size_t)T * C, TF = (size_t)T * F;
    float *branch = a->dln; /* the backward's scratch is free during the forward */
    size_t *att_offset = xmalloc((size_t)pack->nseq * sizeof *att_offset), off = 0;
    for (int s = 0; s < pack->nseq; s++) {
        size_t n = (size_t)(pack->seq_start[s + 1] - pack->seq_start[s]);
        att_offset[s] = off;
        off += (size_t)NH * n * n;
    }
    for (int t = 0; t < T; t++)
        memcpy(a->resid + (size_t)t * C, m->p.wte + (size_t)pack->ids[t] * C, (size_t)C * sizeof(float));
    for (int l = 0; l < L; l++) {
        const neox_layer_params *lp = &m->p.layers[l];
        float *res = a->resid + l * TC, *next = a->resid + (l + 1) * TC;
        float *ln1 = a->ln1 + l * TC, *qkv = a->qkv + l * 3 * TC, *atty = a->atty + l * TC;
        float *ln2 = a->ln2 + l * TC, *fch = a->fch + l * TF, *fch_gelu = a->fch_gelu + l * TF;
        parallel_layernorm(ln1, a->ln1_mean + (size_t)l * T, a->ln1_rstd + (size_t)l * T, res,
                           lp->ln1_w, lp->ln1_b, T, C, eps);
        train_matmul_forward(qkv, ln1, lp->qkv_w, g ? &g->qkv[l] : NULL, lp->qkv_b, T, C, 3 * C);
        attention_ctx actx = {m, pack, qkv, atty, a->att + (size_t)l * a->A, att_offset};
        parallel_for((size_t)pack->nseq, 1, attention_sequences, &actx);
        train_matmul_forward(branch, atty, lp->attn_proj_w, g ? &g->attn_proj[l] : NULL,
                             lp->attn_proj_b, T, C, C);
        const float *ln2_in = res;
        if (c->use_parallel_residual) {
            residual_forward(next, res, branch, (int)TC);
        } else {
            float *mid = a->resid_mid + l * TC;
            residual_forward(mid, res, branch, (int)TC);
            memcpy(next, mid, TC * sizeof(float));
            ln2_in = mid;
        }
        parallel_layernorm(ln2, a->ln2_mean + (size_t)l * T, a->ln2_rstd + (size_t)l * T, ln2_in,
                           lp->ln2_w, lp->ln2_b, T, C, eps);
        train_matmul_forward(fch, ln2, lp->fc_w, g ? &g->fc[l] : NULL, lp->fc_b, T, C, F);
        parallel_for(TF, 4096, gelu_range, &(gelu_ctx){fch_gelu, fch});
        train_matmul_forward(branch, fch_gelu, lp->fc_proj_w, g ? &g->fc_proj[l] : NULL,
                             lp->fc_proj_b, T, F, C);
        residual_forward(next, next, branch, (int)TC);
    }
    free(att_offset);
    parallel_layernorm(a->lnf, a->lnf_mean, a->lnf_rstd, a->resid + L * TC, m->p.lnf_w, m->p.lnf_b,
                       T, C, eps);
    /* Logits only where there is a loss: the vocabulary projection is the
     * largest single product, and --loss answer skips the question's rows. */
    for (int r = 0; r < pack->nrows; r++)
        memcpy(a->lnf_rows + (size_t)r * C, a->lnf + (size_t)pack->row_pos[r] * C, (size_t)C * sizeof(float));
    train_matmul_forward(a->logits, a->lnf_rows, m->p.lm_head, g ? &g->lm_head : NULL, NULL,
                         pack->nrows, C, V);
}

/* ---- setup ---------------------------------------------------------------- */

void trainer_init(trainer *t, neox_model *model, const adamw_hparams *adam, double clip) {
    memset(t, 0, sizeof *t);
    parallel_take_blas_threads();
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

void trainer_use_bf16(trainer *t) {
    if (t->bf16) return;
    model_gemm_init(&t->gemm, t->model);
    t->bf16 = t->bf16_stale = 1;
}

/* The products' view of the weights, packed when they changed. */
static const model_gemm *current_gemm(trainer *t) {
    if (!t->bf16) return NULL;
    if (t->bf16_stale) model_gemm_pack(&t->gemm, t->model);
    t->bf16_stale = 0;
    return &t->gemm;
}

void trainer_free(trainer *t) {
    if (t->bf16) model_gemm_free(&t->gemm, t->model);
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
    const model_gemm *g = current_gemm(t);
    for (size_t next = 0; next < (size_t)n;) {
        train_pack pack = next_pack(t, d, ex, (size_t)n, &next);
        double t0 = now_seconds();
        train_forward(t->model, g, &t->acts, &pack);
        loss_sum += crossentropy_forward_backward(t->acts.logits, pack.row_target, pack.nrows,
                                                  t->model->cfg.vocab_size, scale);
        double t1 = now_seconds();
        model_backward(t->model, g, &t->grad_views, &t->acts, &pack);
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
    t->bf16_stale = 1;
    t->time_optimizer += now_seconds() - t0;
    return res;
}

double trainer_loss(trainer *t, const dataset *d, const size_t *ex, size_t n,
                    size_t *targets, double *per_example) {
    double total = 0;
    size_t count = 0;
    const model_gemm *g = current_gemm(t);
    for (size_t next = 0; next < n;) {
        size_t first = next;
        train_pack pack = next_pack(t, d, ex, n, &next);
        train_forward(t->model, g, &t->acts, &pack);
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
