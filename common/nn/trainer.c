/* trainer.c — packed forward, optimizer steps and eval loss; see trainer.h. */
#include "trainer.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "kernels/parallel.h"

/* ---- setup ---------------------------------------------------------------- */

static void plan_update(trainer *t);

void trainer_init(trainer *t, neox_model *model, const adamw_hparams *adam, double clip) {
    memset(t, 0, sizeof *t);
    parallel_take_blas_threads();
    t->model = model;
    t->adam = *adam;
    t->clip = clip;
    t->pack_tokens = TRAIN_PACK_TOKENS;
    const device_ops *dev = model->dev;
    size_t n = model->num_params;
    float **blocks[] = {&t->grad, &t->adam_m, &t->adam_v};
    for (int i = 0; i < 3; i++) {
        *blocks[i] = device_alloc(dev, n * sizeof(float));
        dev->zero(*blocks[i], n * sizeof(float));
    }
    t->sumsq = device_alloc(dev, sizeof(double));
    model_param_views(model, t->grad, &t->grad_views);
    t->nspans = model->num_tensors;
    t->spans = xmalloc((size_t)t->nspans * sizeof *t->spans);
    for (int i = 0; i < t->nspans; i++) {
        const neox_tensor *tt = &model->tensors[i];
        /* HF Trainer decays weights but not biases or LayerNorm parameters:
         * exactly the tensors of two dimensions here. */
        t->spans[i] = (param_span){tt->offset, tt->numel, tt->ndim >= 2};
    }
    plan_update(t);
}

/* Parameters per update piece: the four arrays AdamW walks (1 MB) stay in
 * the core's L2 cache while a weight's rows are re-packed from them. */
#define UPDATE_PIECE_PARAMS 65536

/* Parameters per update piece of tensor i: whole multiples of 16 rows for
 * a weight with bf16 copies (*gw), else UPDATE_PIECE_PARAMS. */
static size_t piece_params(trainer *t, int i, gemm_weight **gw) {
    /* the CPU's bf16 copies, re-packed piece by piece */
    linear *l = t->model->dtype == DTYPE_BF16 && t->model->dev == &device_cpu ? t->model->tensor_linear[i] : NULL;
    *gw = l ? &l->lowp : NULL;
    if (!*gw) return UPDATE_PIECE_PARAMS;
    int rows = UPDATE_PIECE_PARAMS / (*gw)->C / 16 * 16;
    return (size_t)(rows > 16 ? rows : 16) * (*gw)->C;
}

/* Cuts the parameter block into the pieces of trainer_step's update. */
static void plan_update(trainer *t) {
    size_t n = 0;
    gemm_weight *gw;
    for (int i = 0; i < t->nspans; i++) {
        size_t step = piece_params(t, i, &gw);
        n += (t->spans[i].count + step - 1) / step;
    }
    t->pieces = xrealloc(t->pieces, (n ? n : 1) * sizeof *t->pieces);
    t->npieces = 0;
    for (int i = 0; i < t->nspans; i++) {
        const param_span *sp = &t->spans[i];
        size_t step = piece_params(t, i, &gw);
        for (size_t b = 0; b < sp->count; b += step) {
            size_t e = b + step < sp->count ? b + step : sp->count;
            update_piece *p = &t->pieces[t->npieces++];
            *p = (update_piece){sp->offset + b, sp->offset + e, sp->decay, gw, 0, 0};
            if (gw) p->row0 = (int)(b / gw->C), p->row1 = (int)(e / gw->C);
        }
    }
}

void trainer_use_bf16(trainer *t) {
    model_set_dtype(t->model, DTYPE_BF16, GEMM_FOR_FORWARD | GEMM_FOR_BACKWARD);
    plan_update(t);
}

const char *trainer_kernel_name(const trainer *t) {
    if (t->model->dev != &device_cpu) return t->model->dtype == DTYPE_BF16 ? "cuda-bf16" : "cuda-fp32";
    return t->model->dtype == DTYPE_BF16 ? gemm_path_name(gemm_current_path()) : "fp32";
}

void trainer_free(trainer *t) {
    if (!t->model) return; /* never initialized: the run stopped before */
    const device_ops *dev = t->model->dev;
    dev->release(t->grad);
    dev->release(t->adam_m);
    dev->release(t->adam_v);
    dev->release(t->sumsq);
    device_pack_free(&t->dpack);
    model_free_views(&t->grad_views);
    free(t->spans);
    free(t->pieces);
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
static neox_pack next_pack(trainer *t, const dataset *d, const size_t *ex, size_t n, size_t *next) {
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
    return (neox_pack){.T = pos, .nseq = (int)nseq, .seq_start = t->seq_start, .ids = t->ids,
                        .nrows = r, .row_pos = t->row_pos, .row_target = t->row_target};
}

/* ---- steps ---------------------------------------------------------------- */

static step_result gradients(trainer *t, const dataset *d, const size_t *ex, int n, const step_share *share) {
    step_result res = {0};
    for (int i = 0; i < n; i++) res.targets += example_num_targets(&d->ex[ex[i]]);
    if (share) res.targets = share->targets;
    /* Each token's share of the step loss: the mean over all of them. */
    float scale = (float)(1.0 / (double)res.targets);
    const device_ops *dev = t->model->dev;
    double loss_sum = 0, sumsq = 0;
    dev->zero(t->sumsq, sizeof(double));
    for (size_t next = 0; next < (size_t)n;) {
        int first = next == 0;
        neox_pack pack = next_pack(t, d, ex, (size_t)n, &next);
        const device_pack *dp = device_pack_upload(&t->dpack, dev, &pack);
        int last = next == (size_t)n;
        double *sumsq_here = last && !share ? t->sumsq : NULL;
        double t0 = now_seconds(), t1;
        if (dev->head_loss) { /* the loss in the backward's time */
            model_forward_trunk(t->model, &t->acts.f, dp);
            t1 = now_seconds();
            loss_sum += model_loss_backward(t->model, &t->grad_views, &t->acts, dp, scale, !first, sumsq_here);
        } else {
            model_forward_pack(t->model, &t->acts.f, dp);
            loss_sum += dev->crossentropy(t->acts.f.logits, dp->row_target, pack.nrows, t->model->cfg.vocab_size,
                                          scale, 1);
            t1 = now_seconds();
            model_backward(t->model, &t->grad_views, &t->acts, dp, !first, sumsq_here);
        }
        t->time_forward += t1 - t0;
        t->time_backward += now_seconds() - t1;
        res.tokens += (size_t)pack.T;
    }
    /* The reduce reads and writes t->grad in place: host memory on the CPU
     * device, the only one a shared step runs on (train_run refuses ranks
     * on another device; a GPU's reduce would be NCCL's, on device memory). */
    if (share) {
        assert(dev == &device_cpu);
        double sums[2] = {loss_sum, (double)res.tokens};
        share->reduce(t->grad, t->model->num_params, sums);
        loss_sum = sums[0];
        res.tokens = (size_t)sums[1];
    }
    res.loss = loss_sum / (double)res.targets;
    /* The linear layers' squares came with their products (not those of
     * the sum of shares); the rest here. */
    double t0 = now_seconds();
    for (int i = 0; i < t->model->num_tensors; i++)
        if (share || !model_is_linear_weight(&t->model->tensors[i]))
            dev->sum_squares(t->grad + t->spans[i].offset, t->spans[i].count, t->sumsq);
    dev->download(&sumsq, t->sumsq, sizeof sumsq);
    res.grad_norm = sqrt(sumsq);
    t->time_optimizer += now_seconds() - t0;
    return res;
}

step_result trainer_gradients(trainer *t, const dataset *d, const size_t *ex, int n) {
    return gradients(t, d, ex, n, NULL);
}

step_result trainer_step_share(trainer *t, const dataset *d, const size_t *ex, int n, double lr,
                               const step_share *share) {
    step_result res = gradients(t, d, ex, n, share);
    float factor = (float)clip_factor(res.grad_norm, t->clip);
    t->step++;
    double t0 = now_seconds();
    const adamw_consts k = adamw_step_consts(&t->adam, lr, t->step, factor);
    t->model->dev->adamw_step(t, &k);
    t->time_optimizer += now_seconds() - t0;
    return res;
}

step_result trainer_step(trainer *t, const dataset *d, const size_t *ex, int n, double lr) {
    return trainer_step_share(t, d, ex, n, lr, NULL);
}

double trainer_loss(trainer *t, const dataset *d, const size_t *ex, size_t n,
                    size_t *targets, double *per_example) {
    double total = 0;
    size_t count = 0;
    for (size_t next = 0; next < n;) {
        size_t first = next;
        neox_pack pack = next_pack(t, d, ex, n, &next);
        const device_pack *dp = device_pack_upload(&t->dpack, t->model->dev, &pack);
        model_forward_pack(t->model, &t->acts.f, dp);
        int V = t->model->cfg.vocab_size, row = 0;
        for (size_t i = first; i < next; i++) {
            int k = (int)example_num_targets(&d->ex[ex[i]]);
            double s = t->model->dev->crossentropy(t->acts.f.logits + (size_t)row * V, dp->row_target + row, k,
                                                   V, 0, 0);
            if (per_example) per_example[i] = s / k;
            total += s;
            count += (size_t)k;
            row += k;
        }
    }
    if (targets) *targets = count;
    return total;
}
