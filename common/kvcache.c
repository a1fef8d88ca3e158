/* kvcache.c — see kvcache.h. */
#include "kvcache.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gemv.h"
#include "ops.h"

static void bf16_weight(gemm_weight *gw, const float *w, int OC, int C) {
    gemm_weight_init(gw, w, OC, C, GEMM_FOR_FORWARD);
    gemm_weight_pack(gw);
}

void decoder_bf16_init(decoder_bf16 *w, const neox_model *m) {
    const neox_config *c = &m->cfg;
    const int L = c->num_layers, C = c->hidden_size, F = c->intermediate_size;
    w->num_layers = L;
    w->qkv = xcalloc((size_t)L, sizeof(gemm_weight));
    w->attn_proj = xcalloc((size_t)L, sizeof(gemm_weight));
    w->fc = xcalloc((size_t)L, sizeof(gemm_weight));
    w->fc_proj = xcalloc((size_t)L, sizeof(gemm_weight));
    for (int l = 0; l < L; l++) {
        const neox_layer_params *lp = &m->p.layers[l];
        bf16_weight(&w->qkv[l], lp->qkv_w, 3 * C, C);
        bf16_weight(&w->attn_proj[l], lp->attn_proj_w, C, C);
        bf16_weight(&w->fc[l], lp->fc_w, F, C);
        bf16_weight(&w->fc_proj[l], lp->fc_proj_w, C, F);
    }
    bf16_weight(&w->lm_head, m->p.lm_head, c->vocab_size, C);
}

void decoder_bf16_free(decoder_bf16 *w) {
    for (int l = 0; l < w->num_layers; l++) {
        gemm_weight_free(&w->qkv[l]);
        gemm_weight_free(&w->attn_proj[l]);
        gemm_weight_free(&w->fc[l]);
        gemm_weight_free(&w->fc_proj[l]);
    }
    gemm_weight_free(&w->lm_head);
    free(w->qkv);
    free(w->attn_proj);
    free(w->fc);
    free(w->fc_proj);
    memset(w, 0, sizeof *w);
}

void decoder_init(neox_decoder *d, const neox_model *m, const decoder_bf16 *bf16, int num_slots,
                  int capacity, int max_rows) {
    const neox_config *c = &m->cfg;
    memset(d, 0, sizeof *d);
    d->m = m;
    d->bf16 = bf16;
    d->num_slots = num_slots;
    d->capacity = capacity > 0 && capacity < c->max_positions ? capacity : c->max_positions;
    d->max_rows = max_rows;
    d->len = xcalloc((size_t)num_slots, sizeof(int));
    d->room = xcalloc((size_t)num_slots, sizeof(int));
    d->k = xcalloc((size_t)num_slots, sizeof(float *));
    d->v = xcalloc((size_t)num_slots, sizeof(float *));
    size_t R = (size_t)max_rows, C = (size_t)c->hidden_size;
    d->x = xmalloc(R * C * sizeof(float));
    d->ln = xmalloc(R * C * sizeof(float));
    d->qkv = xmalloc(R * 3 * C * sizeof(float));
    d->atty = xmalloc(R * C * sizeof(float));
    d->branch = xmalloc(R * C * sizeof(float));
    d->fch = xmalloc(R * (size_t)c->intermediate_size * sizeof(float));
    d->scores = xmalloc(R * (size_t)d->capacity * sizeof(float));
}

void decoder_free(neox_decoder *d) {
    for (int i = 0; i < d->num_slots; i++) {
        free(d->k[i]);
        free(d->v[i]);
    }
    free(d->len);
    free(d->room);
    free(d->k);
    free(d->v);
    free(d->x);
    free(d->ln);
    free(d->qkv);
    free(d->atty);
    free(d->branch);
    free(d->fch);
    free(d->scores);
    memset(d, 0, sizeof *d);
}

void decoder_reset(neox_decoder *d, int slot) { d->len[slot] = 0; }

/* The cache of one slot, layer and head: [room, hd]. */
static size_t cache_offset(const neox_decoder *d, int slot, int l, int h) {
    const neox_config *c = &d->m->cfg;
    return ((size_t)l * c->num_heads + h) * d->room[slot] * c->head_dim;
}

/* Moves one of a slot's caches (keys or values) to a larger room. */
static float *regrow(const neox_decoder *d, const float *old, int old_room, int len, int room) {
    const neox_config *c = &d->m->cfg;
    size_t hd = (size_t)c->head_dim, heads = (size_t)c->num_layers * c->num_heads;
    float *fresh = xmalloc(heads * room * hd * sizeof(float));
    for (size_t i = 0; i < heads && len > 0; i++)
        memcpy(fresh + i * room * hd, old + i * old_room * hd, (size_t)len * hd * sizeof(float));
    return fresh;
}

void decoder_reserve(neox_decoder *d, int slot, int n) {
    if (n <= d->room[slot]) return;
    int room = d->room[slot] * 2 > n ? d->room[slot] * 2 : n;
    if (room > d->capacity) room = d->capacity;
    float *k = regrow(d, d->k[slot], d->room[slot], d->len[slot], room);
    float *v = regrow(d, d->v[slot], d->room[slot], d->len[slot], room);
    free(d->k[slot]);
    free(d->v[slot]);
    d->k[slot] = k;
    d->v[slot] = v;
    d->room[slot] = room;
}

/* Attention of n new rows of one sequence, positions p0..p0+n-1, over its
 * cache (which already holds their own keys and values).
 * qkv [n, 3C] rotated; out [n, C]; scores [n, p0+n] scratch. */
static void cached_attention(neox_decoder *d, int slot, int l, const float *qkv, float *out,
                             int p0, int n) {
    const neox_config *c = &d->m->cfg;
    const int NH = c->num_heads, hd = c->head_dim, C = c->hidden_size, C3 = 3 * C, P = p0 + n;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < NH; h++) {
        const float *K = d->k[slot] + cache_offset(d, slot, l, h), *V = d->v[slot] + cache_offset(d, slot, l, h);
        const float *q = qkv + (size_t)h * 3 * hd;
        float *o = out + (size_t)h * hd, *s = d->scores;
        /* One query (decoding): no OpenBLAS call, whose threads would then
         * spin against the decoding threads. */
        if (n == 1) {
            gemv_forward(s, q, K, NULL, 1, hd, P);
            for (int j = 0; j < P; j++) s[j] *= scale;
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, P, hd, scale, q, C3, K, hd, 0.0f, s, P);
        }
        for (int i = 0; i < n; i++) { /* row i sees positions 0..p0+i */
            float *row = s + (size_t)i * P;
            int visible = p0 + i + 1;
            float mx = -INFINITY, sum = 0;
            for (int j = 0; j < visible; j++) mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < visible; j++) sum += row[j] = expf(row[j] - mx);
            float inv = 1.0f / sum;
            for (int j = 0; j < visible; j++) row[j] *= inv;
            memset(row + visible, 0, (size_t)(P - visible) * sizeof(float));
        }
        if (n == 1) {
            memset(o, 0, (size_t)hd * sizeof(float));
            for (int j = 0; j < P; j++) {
                const float *vj = V + (size_t)j * hd;
                for (int i = 0; i < hd; i++) o[i] += s[j] * vj[i];
            }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, P, 1.0f, s, P, V, hd, 0.0f, o, C);
        }
    }
}

/* Rotates the n new rows of one sequence and appends their keys and values
 * to its cache. */
static void store_kv(neox_decoder *d, int slot, int l, float *qkv, int p0, int n) {
    const neox_model *m = d->m;
    const int NH = m->cfg.num_heads, hd = m->cfg.head_dim;
    rotary_forward(qkv, m->rope_cos, m->rope_sin, p0, n, NH, hd, m->cfg.rotary_ndims);
    for (int h = 0; h < NH; h++) {
        float *K = d->k[slot] + cache_offset(d, slot, l, h), *V = d->v[slot] + cache_offset(d, slot, l, h);
        for (int i = 0; i < n; i++) {
            const float *src = qkv + ((size_t)i * NH + h) * 3 * hd;
            memcpy(K + (size_t)(p0 + i) * hd, src + hd, (size_t)hd * sizeof(float));
            memcpy(V + (size_t)(p0 + i) * hd, src + 2 * hd, (size_t)hd * sizeof(float));
        }
    }
}

/* out [N, OC] = inp [N, C] · wᵀ + bias: fp32 w, or its bf16 copy gw. */
static void linear(const neox_decoder *d, float *out, const float *inp, const float *w,
                   const gemm_weight *gw, const float *bias, int N, int C, int OC) {
    if (d->bf16) gemm_forward(out, inp, gw, bias, N);
    else matmul_forward(out, inp, w, bias, N, C, OC);
}

void decoder_step(neox_decoder *d, int nseq, const int *slot, const int *count,
                  const uint32_t *tokens, float *logits, int all) {
    const neox_model *m = d->m;
    const neox_config *c = &m->cfg;
    const int C = c->hidden_size, F = c->intermediate_size;
    const float eps = (float)c->layer_norm_eps;
    int R = 0;
    for (int b = 0; b < nseq; b++) {
        R += count[b];
        decoder_reserve(d, slot[b], d->len[slot[b]] + count[b]);
    }
    for (int r = 0; r < R; r++)
        memcpy(d->x + (size_t)r * C, m->p.wte + (size_t)tokens[r] * C, (size_t)C * sizeof(float));
    const decoder_bf16 *w16 = d->bf16;
    for (int l = 0; l < c->num_layers; l++) {
        const neox_layer_params *lp = &m->p.layers[l];
        layernorm_forward(d->ln, NULL, NULL, d->x, lp->ln1_w, lp->ln1_b, R, C, eps);
        linear(d, d->qkv, d->ln, lp->qkv_w, w16 ? &w16->qkv[l] : NULL, lp->qkv_b, R, C, 3 * C);
        for (int b = 0, r = 0; b < nseq; r += count[b], b++) {
            float *qkv = d->qkv + (size_t)r * 3 * C;
            store_kv(d, slot[b], l, qkv, d->len[slot[b]], count[b]);
            cached_attention(d, slot[b], l, qkv, d->atty + (size_t)r * C, d->len[slot[b]], count[b]);
        }
        linear(d, d->branch, d->atty, lp->attn_proj_w, w16 ? &w16->attn_proj[l] : NULL, lp->attn_proj_b,
               R, C, C);
        if (c->use_parallel_residual) {
            layernorm_forward(d->ln, NULL, NULL, d->x, lp->ln2_w, lp->ln2_b, R, C, eps);
            residual_forward(d->x, d->x, d->branch, R * C);
        } else {
            residual_forward(d->x, d->x, d->branch, R * C);
            layernorm_forward(d->ln, NULL, NULL, d->x, lp->ln2_w, lp->ln2_b, R, C, eps);
        }
        linear(d, d->fch, d->ln, lp->fc_w, w16 ? &w16->fc[l] : NULL, lp->fc_b, R, C, F);
        gelu_forward(d->fch, d->fch, R * F);
        linear(d, d->branch, d->fch, lp->fc_proj_w, w16 ? &w16->fc_proj[l] : NULL, lp->fc_proj_b, R, F, C);
        residual_forward(d->x, d->x, d->branch, R * C);
    }
    for (int b = 0; b < nseq; b++) d->len[slot[b]] += count[b];
    int rows = R;
    if (!all) { /* only each sequence's last row */
        rows = nseq;
        for (int b = 0, r = 0; b < nseq; b++) {
            r += count[b];
            memmove(d->x + (size_t)b * C, d->x + (size_t)(r - 1) * C, (size_t)C * sizeof(float));
        }
    }
    layernorm_forward(d->ln, NULL, NULL, d->x, m->p.lnf_w, m->p.lnf_b, rows, C, eps);
    linear(d, logits, d->ln, m->p.lm_head, w16 ? &w16->lm_head : NULL, NULL, rows, C, c->vocab_size);
}

void decoder_prefill(neox_decoder *d, int slot, const uint32_t *tokens, int n, float *last_logits) {
    for (int done = 0; done < n;) {
        int chunk = n - done < d->max_rows ? n - done : d->max_rows;
        decoder_step(d, 1, &slot, &chunk, tokens + done, last_logits, 0);
        done += chunk;
    }
}
