/* backward.c — the training backward pass; see backward.h. */
#include "backward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "kernels/parallel.h"
#include "kernels/vecmath.h"

/* Rows per chunk of layernorm_backward's weight-gradient sums: the chunks,
 * not the threads, fix the summation order, so results do not depend on
 * the thread count. */
#define LN_CHUNK_ROWS 32

typedef struct {
    float *dinp, *partial; /* partial [chunks, 2C]: dw then db of each chunk */
    const float *dout, *inp, *w, *mean, *rstd;
    int N, C;
} layernorm_bw_ctx;

static void layernorm_backward_chunks(void *arg, size_t begin, size_t end, int part) {
    layernorm_bw_ctx *c = arg;
    int C = c->C;
    for (size_t chunk = begin; chunk < end; chunk++) {
        float *dw = c->partial + chunk * 2 * C, *db = dw + C;
        memset(dw, 0, 2 * (size_t)C * sizeof(float));
        size_t last = (chunk + 1) * LN_CHUNK_ROWS < (size_t)c->N ? (chunk + 1) * LN_CHUNK_ROWS : (size_t)c->N;
        for (size_t n = chunk * LN_CHUNK_ROWS; n < last; n++) {
            const float *x = c->inp + n * C, *dy = c->dout + n * C;
            float *dx = c->dinp + n * C;
            float mu = c->mean[n], r = c->rstd[n];
            /* The two means the input gradient needs: of dnorm and dnorm·norm. */
            double s1 = 0, s2 = 0;
#if VECMATH_WIDTH
            __m512d a1 = _mm512_setzero_pd(), a2 = _mm512_setzero_pd();
            for (int i = 0; i < C; i += VECMATH_WIDTH) {
                __mmask16 k = vec_mask(i, C);
                __m512 norm = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_set1_ps(mu)),
                                            _mm512_set1_ps(r));
                __m512 dnorm = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, c->w + i), _mm512_maskz_loadu_ps(k, dy + i));
                a1 = _mm512_add_pd(a1, _mm512_add_pd(vec_lo_pd(dnorm), vec_hi_pd(dnorm)));
                a2 = _mm512_fmadd_pd(vec_lo_pd(dnorm), vec_lo_pd(norm), a2);
                a2 = _mm512_fmadd_pd(vec_hi_pd(dnorm), vec_hi_pd(norm), a2);
            }
            s1 = _mm512_reduce_add_pd(a1);
            s2 = _mm512_reduce_add_pd(a2);
#else
            for (int i = 0; i < C; i++) {
                float norm = (x[i] - mu) * r, dnorm = c->w[i] * dy[i];
                s1 += dnorm;
                s2 += (double)dnorm * norm;
            }
#endif
            float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
            for (int i = 0; i < C; i++) {
                float norm = (x[i] - mu) * r, dnorm = c->w[i] * dy[i];
                dx[i] += (dnorm - m1 - norm * m2) * r;
                dw[i] += norm * dy[i];
                db[i] += dy[i];
            }
        }
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C) {
    size_t chunks = ((size_t)N + LN_CHUNK_ROWS - 1) / LN_CHUNK_ROWS;
    layernorm_bw_ctx c = {dinp, xmalloc(chunks * 2 * C * sizeof(float)), dout, inp, w, mean, rstd, N, C};
    parallel_for(chunks, 1, layernorm_backward_chunks, &c);
    for (size_t k = 0; k < chunks; k++) {
        const float *pw = c.partial + k * 2 * C, *pb = pw + C;
        for (int i = 0; i < C; i++) {
            dw[i] += pw[i];
            db[i] += pb[i];
        }
    }
    free(c.partial);
}

void rotary_backward(float *dqkv, const float *cos_t, const float *sin_t, int pos0,
                     int T, int NH, int hd, int rot) {
    int half = rot / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cos_t + (size_t)(pos0 + t) * half, *s = sin_t + (size_t)(pos0 + t) * half;
        for (int h = 0; h < NH; h++) {
            float *dq = dqkv + ((size_t)t * NH + h) * 3 * hd;
            for (int part = 0; part < 2; part++) { /* q, then k */
                float *d = dq + part * hd;
                for (int i = 0; i < half; i++) {
                    float d1 = d[i], d2 = d[i + half];
                    d[i] = d1 * c[i] + d2 * s[i];
                    d[i + half] = d2 * c[i] - d1 * s[i];
                }
            }
        }
    }
}

typedef struct {
    float *dqkv, *datt;
    const float *dout, *qkv, *att;
    int T, NH, hd;
} attention_bw_ctx;

/* Heads [begin, end) of attention_backward, with datt part's scratch. */
static void attention_backward_heads(void *arg, size_t begin, size_t end, int part) {
    const attention_bw_ctx *c = arg;
    int T = c->T, hd = c->hd, C = c->NH * hd, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hd);
    float *datt = c->datt + (size_t)part * T * T;
    for (size_t h = begin; h < end; h++) {
        const float *q = c->qkv + h * 3 * hd, *k = q + hd, *v = q + 2 * hd;
        float *dq = c->dqkv + h * 3 * hd, *dk = dq + hd, *dv = dq + 2 * hd;
        const float *a = c->att + h * T * T, *dy = c->dout + h * hd;
        /* dv = attᵀ dy; datt = dy vᵀ */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, a, T, dy, C, 0.0f, dv, C3);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dy, C, v, C3, 0.0f, datt, T);
        /* Through the softmax: dscore = att ⊙ (datt - Σ att·datt), row by row;
         * the masked entries (att 0) get 0. */
        for (int t = 0; t < T; t++) {
            const float *ar = a + (size_t)t * T;
            float *dr = datt + (size_t)t * T;
            double dot = 0;
            for (int j = 0; j <= t; j++) dot += (double)ar[j] * dr[j];
            float dotf = (float)dot;
            for (int j = 0; j <= t; j++) dr[j] = ar[j] * (dr[j] - dotf);
            memset(dr + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
        }
        /* score = scale q kᵀ: dq = scale dscore k, dk = scale dscoreᵀ q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, datt, T, k, C3, 0.0f, dq, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, datt, T, q, C3, 0.0f, dk, C3);
    }
}

void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                        const float *att, int T, int NH, int hd) {
    attention_bw_ctx c = {dqkv, datt, dout, qkv, att, T, NH, hd};
    parallel_for((size_t)NH, 1, attention_backward_heads, &c);
}

typedef struct {
    float *dinp;
    const float *inp, *dout;
} gelu_bw_ctx;

static void gelu_backward_range(void *arg, size_t begin, size_t end, int part) {
    const gelu_bw_ctx *c = arg;
    const float inv_sqrt_2pi = 0.3989422804014327f;
    size_t i = begin;
#if VECMATH_WIDTH
    const __m512 half = _mm512_set1_ps(0.5f), sqrt1_2 = _mm512_set1_ps((float)M_SQRT1_2);
    const __m512 neg_half = _mm512_set1_ps(-0.5f), pdf_scale = _mm512_set1_ps(inv_sqrt_2pi);
    for (; i < end; i += VECMATH_WIDTH) {
        __mmask16 k = vec_mask(i, end);
        __m512 x = _mm512_maskz_loadu_ps(k, c->inp + i);
        __m512 cdf = _mm512_fmadd_ps(half, vec_erf(_mm512_mul_ps(x, sqrt1_2)), half);
        __m512 pdf = _mm512_mul_ps(pdf_scale, vec_exp(_mm512_mul_ps(neg_half, _mm512_mul_ps(x, x))));
        __m512 dgelu = _mm512_fmadd_ps(x, pdf, cdf);
        _mm512_mask_storeu_ps(c->dinp + i, k, _mm512_mul_ps(dgelu, _mm512_maskz_loadu_ps(k, c->dout + i)));
    }
#endif
    for (; i < end; i++) {
        float x = c->inp[i];
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
        c->dinp[i] = (cdf + x * pdf) * c->dout[i];
    }
}

void gelu_backward(float *dinp, const float *inp, const float *dout, int N) {
    gelu_bw_ctx c = {dinp, inp, dout};
    parallel_for((size_t)N, 4096, gelu_backward_range, &c);
}

void embedding_backward(float *dwte, const float *dout, const uint32_t *ids, int T, int C) {
    for (int t = 0; t < T; t++) {
        float *row = dwte + (size_t)ids[t] * C;
        const float *d = dout + (size_t)t * C;
        for (int i = 0; i < C; i++) row[i] += d[i];
    }
}

/* -log softmax(row)[target], with exp(row - max) left in ex when not NULL
 * and their sum in *sum. */
static double row_crossentropy(const float *row, uint32_t target, int V, float *ex, double *sum) {
    double target_logit = row[target]; /* ex may be row */
#if VECMATH_WIDTH
    float mx = vec_max(row, (size_t)V);
    /* the sum in double, as the scalar loop below, over 16 lanes */
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int i = 0; i < V; i += VECMATH_WIDTH) {
        __mmask16 k = vec_mask(i, V);
        __m512 e = vec_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + i), _mm512_set1_ps(mx)));
        e = _mm512_maskz_mov_ps(k, e);
        if (ex) _mm512_mask_storeu_ps(ex + i, k, e);
        lo = _mm512_add_pd(lo, vec_lo_pd(e));
        hi = _mm512_add_pd(hi, vec_hi_pd(e));
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
#else
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++) {
        float e = expf(row[i] - mx);
        if (ex) ex[i] = e;
        s += e;
    }
#endif
    if (sum) *sum = s;
    return log(s) - (target_logit - mx);
}

typedef struct {
    float *logits;
    const uint32_t *targets;
    int V, backward;
    float scale;
    double *row_loss;
} crossentropy_ctx;

static void crossentropy_rows(void *arg, size_t begin, size_t end, int part) {
    crossentropy_ctx *c = arg;
    for (size_t n = begin; n < end; n++) {
        float *row = c->logits + n * c->V;
        if (!c->backward) {
            c->row_loss[n] = row_crossentropy(row, c->targets[n], c->V, NULL, NULL);
            continue;
        }
        double s;
        c->row_loss[n] = row_crossentropy(row, c->targets[n], c->V, row, &s);
        float f = (float)(c->scale / s);
        for (int i = 0; i < c->V; i++) row[i] *= f;
        row[c->targets[n]] -= c->scale;
    }
}

/* The rows in parallel, their losses summed in row order. */
static double crossentropy_run(crossentropy_ctx *c, int N) {
    c->row_loss = xmalloc((size_t)(N > 0 ? N : 1) * sizeof(double));
    parallel_for((size_t)N, 1, crossentropy_rows, c);
    double total = 0;
    for (int n = 0; n < N; n++) total += c->row_loss[n];
    free(c->row_loss);
    return total;
}

double crossentropy_forward_backward(float *logits, const uint32_t *targets, int N, int V,
                                     float scale) {
    crossentropy_ctx c = {.logits = logits, .targets = targets, .V = V, .backward = 1, .scale = scale};
    return crossentropy_run(&c, N);
}

double crossentropy_forward(const float *logits, const uint32_t *targets, int N, int V) {
    crossentropy_ctx c = {.logits = (float *)logits, .targets = targets, .V = V};
    return crossentropy_run(&c, N);
}

/* ---- activations -------------------------------------------------------- */

/* Scratch for the backward of the pack a->f was computed on. */
static void train_acts_reserve(train_acts *a, const neox_model *m, const neox_pack *pack) {
    const device_ops *dev = m->dev;
    const neox_config *cfg = &m->cfg;
    size_t C = cfg->hidden_size, F = cfg->intermediate_size, T = pack->T, R = pack->nrows;
    size_t max_sq = 0;
    for (int s = 0; s < pack->nseq; s++) {
        size_t n = (size_t)(pack->seq_start[s + 1] - pack->seq_start[s]);
        if (n * n > max_sq) max_sq = n * n;
    }
    if (T > a->cap_T) {
        a->cap_T = T;
        device_regrow(dev, &a->dresid, T * C);
        device_regrow(dev, &a->dln, T * C);
        device_regrow(dev, &a->datty, T * C);
        device_regrow(dev, &a->dqkv, T * 3 * C);
        device_regrow(dev, &a->dfch, T * F);
    }
    size_t scratch = dev->attention_scratch(m, max_sq);
    if (scratch > a->cap_datt) {
        a->cap_datt = scratch;
        device_regrow(dev, &a->datt, a->cap_datt);
    }
    if (R > a->cap_rows) {
        a->cap_rows = R;
        device_regrow(dev, &a->dlnf_rows, R * C);
    }
}

void train_acts_free(train_acts *a) {
    const device_ops *dev = a->f.dev;
    float **all[] = {&a->dresid, &a->dln, &a->datty, &a->dqkv, &a->dfch, &a->datt, &a->dlnf_rows};
    if (dev)
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) dev->release(*all[i]);
    acts_free(&a->f);
    memset(a, 0, sizeof *a);
}

/* ---- the model ---------------------------------------------------------- */

/* Backward of one layer's attention branch: from datty (the gradient at
 * the input of attention.dense, already computed) down to the gradient at
 * ln1, accumulated into dresid through input_layernorm. */
static void attention_branch_backward(const neox_model *m, const neox_layer_params *gl,
                                      const neox_layer_params *pl, train_acts *a, const device_pack *pack,
                                      int l, const float *resid_in, int accumulate, double *sumsq) {
    const device_ops *dev = m->dev;
    const int T = a->f.T, C = m->cfg.hidden_size;
    const size_t TC = (size_t)T * C;
    dev->attention_backward(m, pack, a->dqkv, a->datt, a->datty, a->f.qkv + (size_t)l * T * 3 * C,
                            a->f.att + (size_t)l * a->f.A);
    dev->linear_backward(&m->lin[l].qkv, a->dln, gl->qkv_w, gl->qkv_b, a->dqkv, a->f.ln1 + l * TC, T,
                         accumulate, sumsq);
    dev->layernorm_backward(a->dresid, gl->ln1_w, gl->ln1_b, a->dln, resid_in, pl->ln1_w,
                            a->f.ln1_mean + (size_t)l * T, a->f.ln1_rstd + (size_t)l * T, T, C);
}

/* The gradients that are only ever added to: the layer norms', and the
 * input embedding's unless tied to embed_out (whose product writes it). */
static void zero_accumulated_only(const neox_model *m, const neox_params *grads) {
    const device_ops *dev = m->dev;
    size_t C = (size_t)m->cfg.hidden_size;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const neox_layer_params *gl = &grads->layers[l];
        float *ln[] = {gl->ln1_w, gl->ln1_b, gl->ln2_w, gl->ln2_b};
        for (int i = 0; i < 4; i++) dev->zero(ln[i], C * sizeof(float));
    }
    dev->zero(grads->lnf_w, C * sizeof(float));
    dev->zero(grads->lnf_b, C * sizeof(float));
    if (grads->wte != grads->lm_head) dev->zero(grads->wte, (size_t)m->cfg.vocab_size * C * sizeof(float));
}

/* The backward below embed_out: from a->dlnf_rows, the gradient at the
 * loss rows of final_layer_norm's output, through final_layer_norm over
 * every token (rows without a loss get zero gradient) and the layers. */
static void trunk_backward(const neox_model *m, const neox_params *grads, train_acts *a, const device_pack *dp,
                           int accumulate, double *sumsq) {
    const device_ops *dev = m->dev;
    const neox_config *cfg = &m->cfg;
    int T = a->f.T, R = a->f.R, C = cfg->hidden_size, F = cfg->intermediate_size;
    int L = cfg->num_layers;
    size_t TC = (size_t)T * C, TF = (size_t)T * F;
    dev->zero(a->dln, TC * sizeof(float));
    dev->scatter_add_rows(a->dln, a->dlnf_rows, dp->row_pos, R, C);
    dev->zero(a->dresid, TC * sizeof(float));
    dev->layernorm_backward(a->dresid, grads->lnf_w, grads->lnf_b, a->dln, a->f.resid + L * TC,
                            m->p.lnf_w, a->f.lnf_mean, a->f.lnf_rstd, T, C);
    /* a->dresid holds the gradient at the output of layer l; each layer
     * adds its branches' contributions, leaving the gradient at its input. */
    for (int l = L - 1; l >= 0; l--) {
        const neox_layer_params *pl = &m->p.layers[l], *gl = &grads->layers[l];
        const neox_layer_linear *ll = &m->lin[l];
        const float *resid_in = a->f.resid + l * TC;
        const float *ln2_in = cfg->use_parallel_residual ? resid_in : a->f.resid_mid + l * TC;
        if (cfg->use_parallel_residual)
            /* Both branches read the layer's output gradient: take the
             * attention branch's share before the MLP adds to it. */
            dev->linear_backward(&ll->attn_proj, a->datty, gl->attn_proj_w, gl->attn_proj_b, a->dresid,
                                 a->f.atty + l * TC, T, accumulate, sumsq);
        dev->linear_backward(&ll->fc_proj, a->dfch, gl->fc_proj_w, gl->fc_proj_b, a->dresid,
                             a->f.fch_gelu + l * TF, T, accumulate, sumsq);
        dev->gelu_backward(a->dfch, a->f.fch + l * TF, a->dfch, TF);
        dev->linear_backward(&ll->fc, a->dln, gl->fc_w, gl->fc_b, a->dfch, a->f.ln2 + l * TC, T, accumulate,
                             sumsq);
        dev->layernorm_backward(a->dresid, gl->ln2_w, gl->ln2_b, a->dln, ln2_in, pl->ln2_w,
                                a->f.ln2_mean + (size_t)l * T, a->f.ln2_rstd + (size_t)l * T, T, C);
        if (!cfg->use_parallel_residual)
            /* dresid is now the gradient at resid_mid = resid + attention. */
            dev->linear_backward(&ll->attn_proj, a->datty, gl->attn_proj_w, gl->attn_proj_b, a->dresid,
                                 a->f.atty + l * TC, T, accumulate, sumsq);
        attention_branch_backward(m, gl, pl, a, dp, l, resid_in, accumulate, sumsq);
    }
    dev->embedding_backward(grads->wte, a->dresid, dp, C);
}

/* embed_out's weight gradient goes into sumsq with the others, unless
 * tied to embed_in, whose rows the embedding's backward adds to after. */
static double *head_sumsq(const neox_params *grads, double *sumsq) {
    return grads->lm_head == grads->wte ? NULL : sumsq;
}

void model_backward(const neox_model *m, const neox_params *grads, train_acts *a, const device_pack *dp,
                    int accumulate, double *sumsq) {
    train_acts_reserve(a, m, dp->host);
    if (!accumulate) zero_accumulated_only(m, grads);
    m->dev->linear_backward(&m->lm_head, a->dlnf_rows, grads->lm_head, NULL, a->f.logits, a->f.lnf_rows, a->f.R,
                            accumulate, head_sumsq(grads, sumsq));
    trunk_backward(m, grads, a, dp, accumulate, sumsq);
}

double model_loss_backward(const neox_model *m, const neox_params *grads, train_acts *a, const device_pack *dp,
                           float scale, int accumulate, double *sumsq) {
    train_acts_reserve(a, m, dp->host);
    if (!accumulate) zero_accumulated_only(m, grads);
    double loss = m->dev->head_loss(&m->lm_head, a->f.lnf_rows, dp->row_target, a->f.R, scale, a->dlnf_rows,
                                    grads->lm_head, accumulate, head_sumsq(grads, sumsq));
    trunk_backward(m, grads, a, dp, accumulate, sumsq);
    return loss;
}
