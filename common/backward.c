/* backward.c — the training backward pass; see backward.h. */
#include "backward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float mu = mean[n], r = rstd[n];
        /* The two means the input gradient needs: of dnorm and dnorm·norm. */
        double s1 = 0, s2 = 0;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - mu) * r, dnorm = w[i] * dy[i];
            s1 += dnorm;
            s2 += (double)dnorm * norm;
        }
        float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - mu) * r, dnorm = w[i] * dy[i];
            dx[i] += (dnorm - m1 - norm * m2) * r;
            dw[i] += norm * dy[i];
            db[i] += dy[i];
        }
    }
}

void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                     const float *inp, const float *w, int N, int C, int OC) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C,
                    0.0f, dinp, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C,
                1.0f, dw, C);
    if (dbias)
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * OC;
            for (int o = 0; o < OC; o++) dbias[o] += d[o];
        }
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

void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                        const float *att, int T, int NH, int hd) {
    int C = NH * hd, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < NH; h++) {
        const float *q = qkv + (size_t)h * 3 * hd, *k = q + hd, *v = q + 2 * hd;
        float *dq = dqkv + (size_t)h * 3 * hd, *dk = dq + hd, *dv = dq + 2 * hd;
        const float *a = att + (size_t)h * T * T, *dy = dout + (size_t)h * hd;
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

void gelu_backward(float *dinp, const float *inp, const float *dout, int N) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (int i = 0; i < N; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
        dinp[i] = (cdf + x * pdf) * dout[i];
    }
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
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++) {
        float e = expf(row[i] - mx);
        if (ex) ex[i] = e;
        s += e;
    }
    if (sum) *sum = s;
    return log(s) - (target_logit - mx);
}

double crossentropy_forward_backward(float *logits, const uint32_t *targets, int N, int V,
                                     float scale) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        float *row = logits + (size_t)n * V;
        double s;
        total += row_crossentropy(row, targets[n], V, row, &s);
        float f = (float)(scale / s);
        for (int i = 0; i < V; i++) row[i] *= f;
        row[targets[n]] -= scale;
    }
    return total;
}

double crossentropy_forward(const float *logits, const uint32_t *targets, int N, int V) {
    double total = 0;
    for (int n = 0; n < N; n++)
        total += row_crossentropy(logits + (size_t)n * V, targets[n], V, NULL, NULL);
    return total;
}

/* ---- activations -------------------------------------------------------- */

static void grow(float **p, size_t n) {
    free(*p);
    *p = xmalloc(n * sizeof(float));
}

void train_acts_reserve(train_acts *a, const neox_config *cfg, const train_pack *pack) {
    size_t L = cfg->num_layers, C = cfg->hidden_size, F = cfg->intermediate_size;
    size_t V = cfg->vocab_size, NH = cfg->num_heads, T = pack->T, R = pack->nrows;
    size_t sum_sq = 0, max_sq = 0;
    for (int s = 0; s < pack->nseq; s++) {
        size_t n = (size_t)(pack->seq_start[s + 1] - pack->seq_start[s]);
        sum_sq += n * n;
        if (n * n > max_sq) max_sq = n * n;
    }
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
        grow(&a->dresid, T * C);
        grow(&a->dln, T * C);
        grow(&a->datty, T * C);
        grow(&a->dqkv, T * 3 * C);
        grow(&a->dfch, T * F);
    }
    if (NH * sum_sq > a->cap_att) {
        a->cap_att = NH * sum_sq;
        grow(&a->att, L * NH * sum_sq);
    }
    if (max_sq > a->cap_seq_sq) {
        a->cap_seq_sq = max_sq;
        grow(&a->datt, max_sq);
    }
    if (R > a->cap_rows) {
        a->cap_rows = R;
        grow(&a->lnf_rows, R * C);
        grow(&a->dlnf_rows, R * C);
        grow(&a->logits, R * V);
    }
    a->T = (int)T;
    a->A = (int)(NH * sum_sq);
    a->R = (int)R;
}

void train_acts_free(train_acts *a) {
    float **all[] = {&a->resid, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->att, &a->atty,
                     &a->resid_mid, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu,
                     &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->lnf_rows, &a->logits, &a->dresid,
                     &a->dln, &a->datty, &a->dqkv, &a->dfch, &a->datt, &a->dlnf_rows};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(*all[i]);
    memset(a, 0, sizeof *a);
}

/* ---- the model ---------------------------------------------------------- */

/* Backward of one layer's attention branch: from datty (the gradient at
 * the input of attention.dense, already computed) down to the gradient at
 * ln1, accumulated into dresid through input_layernorm. */
static void attention_branch_backward(const neox_model *m, const neox_layer_params *gl,
                                      const neox_layer_params *pl, train_acts *a,
                                      const train_pack *pack, int l, const float *resid_in) {
    const neox_config *cfg = &m->cfg;
    int T = a->T, C = cfg->hidden_size, NH = cfg->num_heads, hd = cfg->head_dim;
    size_t TC = (size_t)T * C;
    const float *qkv = a->qkv + (size_t)l * T * 3 * C;
    const float *att = a->att + (size_t)l * a->A;
    for (int s = 0; s < pack->nseq; s++) {
        int t0 = pack->seq_start[s], n = pack->seq_start[s + 1] - t0;
        attention_backward(a->dqkv + (size_t)t0 * 3 * C, a->datt, a->datty + (size_t)t0 * C,
                           qkv + (size_t)t0 * 3 * C, att, n, NH, hd);
        rotary_backward(a->dqkv + (size_t)t0 * 3 * C, m->rope_cos, m->rope_sin, 0, n, NH, hd,
                        cfg->rotary_ndims);
        att += (size_t)NH * n * n;
    }
    matmul_backward(a->dln, gl->qkv_w, gl->qkv_b, a->dqkv, a->ln1 + l * TC, pl->qkv_w, T, C, 3 * C);
    layernorm_backward(a->dresid, gl->ln1_w, gl->ln1_b, a->dln, resid_in,
                       pl->ln1_w, a->ln1_mean + (size_t)l * T, a->ln1_rstd + (size_t)l * T, T, C);
}

void model_backward(const neox_model *m, const neox_params *grads, train_acts *a,
                    const train_pack *pack) {
    const neox_config *cfg = &m->cfg;
    int T = a->T, R = a->R, C = cfg->hidden_size, F = cfg->intermediate_size;
    int V = cfg->vocab_size, L = cfg->num_layers;
    size_t TC = (size_t)T * C, TF = (size_t)T * F;

    /* embed_out on the loss rows, then final_layer_norm over every token
     * (rows without a loss get zero gradient). */
    matmul_backward(a->dlnf_rows, grads->lm_head, NULL, a->logits, a->lnf_rows, m->p.lm_head, R, C, V);
    memset(a->dln, 0, TC * sizeof(float));
    for (int r = 0; r < R; r++) {
        float *dst = a->dln + (size_t)pack->row_pos[r] * C;
        const float *src = a->dlnf_rows + (size_t)r * C;
        for (int i = 0; i < C; i++) dst[i] += src[i];
    }
    memset(a->dresid, 0, TC * sizeof(float));
    layernorm_backward(a->dresid, grads->lnf_w, grads->lnf_b, a->dln, a->resid + L * TC,
                       m->p.lnf_w, a->lnf_mean, a->lnf_rstd, T, C);

    /* a->dresid holds the gradient at the output of layer l; each layer
     * adds its branches' contributions, leaving the gradient at its input. */
    for (int l = L - 1; l >= 0; l--) {
        const neox_layer_params *pl = &m->p.layers[l], *gl = &grads->layers[l];
        const float *resid_in = a->resid + l * TC;
        const float *ln2_in = cfg->use_parallel_residual ? resid_in : a->resid_mid + l * TC;
        if (cfg->use_parallel_residual)
            /* Both branches read the layer's output gradient: take the
             * attention branch's share before the MLP adds to it. */
            matmul_backward(a->datty, gl->attn_proj_w, gl->attn_proj_b, a->dresid,
                            a->atty + l * TC, pl->attn_proj_w, T, C, C);
        matmul_backward(a->dfch, gl->fc_proj_w, gl->fc_proj_b, a->dresid, a->fch_gelu + l * TF,
                        pl->fc_proj_w, T, F, C);
        gelu_backward(a->dfch, a->fch + l * TF, a->dfch, (int)TF);
        matmul_backward(a->dln, gl->fc_w, gl->fc_b, a->dfch, a->ln2 + l * TC, pl->fc_w, T, C, F);
        layernorm_backward(a->dresid, gl->ln2_w, gl->ln2_b, a->dln, ln2_in, pl->ln2_w,
                           a->ln2_mean + (size_t)l * T, a->ln2_rstd + (size_t)l * T, T, C);
        if (!cfg->use_parallel_residual)
            /* dresid is now the gradient at resid_mid = resid + attention. */
            matmul_backward(a->datty, gl->attn_proj_w, gl->attn_proj_b, a->dresid,
                            a->atty + l * TC, pl->attn_proj_w, T, C, C);
        attention_branch_backward(m, gl, pl, a, pack, l, resid_in);
    }
    embedding_backward(grads->wte, a->dresid, pack->ids, T, C);
}
