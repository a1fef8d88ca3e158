/* device_cpu_attention.c — the CPU device's attention: over a training
 * pack (each sequence's heads, its probabilities kept for the backward),
 * over the KV cache of a decoding step, and the fused decoding step of a
 * layer. See device.h, forward.h and kvcache.h. */
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "base/cli.h"
#include "device_cpu.h"
#include "kernels/gemv.h"
#include "kernels/parallel.h"
#include "ops.h"

/* ---- a training pack ------------------------------------------------------------ */

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

void cpu_attention_forward(const neox_model *m, const device_pack *p, float *qkv, float *att, float *atty) {
    const neox_pack *pack = p->host;
    const int NH = m->cfg.num_heads;
    size_t *att_offset = xmalloc((size_t)pack->nseq * sizeof *att_offset), sum_sq = 0;
    for (int s = 0; s < pack->nseq; s++) {
        size_t n = (size_t)(pack->seq_start[s + 1] - pack->seq_start[s]);
        att_offset[s] = (size_t)NH * sum_sq;
        sum_sq += n * n;
    }
    attention_ctx c = {m, pack, qkv, atty, att, att_offset};
    parallel_for((size_t)pack->nseq, 1, attention_sequences, &c);
    free(att_offset);
}

/* One [T_s, T_s] scratch per thread that may run attention_backward. */
size_t cpu_attention_scratch(const neox_model *m, size_t max_sq) { return max_sq * (size_t)parallel_threads(); }

void cpu_attention_backward(const neox_model *m, const device_pack *p, float *dqkv, float *scratch,
                            const float *datty, const float *qkv, const float *att) {
    const neox_pack *pack = p->host;
    const neox_config *cfg = &m->cfg;
    const int C = cfg->hidden_size, NH = cfg->num_heads, hd = cfg->head_dim;
    for (int s = 0; s < pack->nseq; s++) {
        int t0 = pack->seq_start[s], n = pack->seq_start[s + 1] - t0;
        attention_backward(dqkv + (size_t)t0 * 3 * C, scratch, datty + (size_t)t0 * C,
                           qkv + (size_t)t0 * 3 * C, att, n, NH, hd);
        rotary_backward(dqkv + (size_t)t0 * 3 * C, m->rope_cos, m->rope_sin, 0, n, NH, hd, cfg->rotary_ndims);
        att += (size_t)NH * n * n;
    }
}

/* ---- the KV cache of a decoding step ---------------------------------------------- */

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

void cpu_decoder_reserve(neox_decoder *d, int slot, int room) {
    float *k = regrow(d, d->k[slot], d->room[slot], d->len[slot], room);
    float *v = regrow(d, d->v[slot], d->room[slot], d->len[slot], room);
    free(d->k[slot]);
    free(d->v[slot]);
    d->k[slot] = k;
    d->v[slot] = v;
}

/* o [hd] = sum over j of s[j] · V[j, hd], adding in order of j and each
 * product rounded first, as a plain loop under -ffp-contract=off. */
static void weighted_sum(float *o, const float *s, const float *V, int P, int hd) {
#if defined(__AVX512F__)
    for (int i0 = 0; i0 < hd; i0 += 64) { /* four independent sums at a time */
        __mmask16 m[4];
        __m512 acc[4];
        for (int k = 0; k < 4; k++) {
            int left = hd - i0 - 16 * k;
            m[k] = left <= 0 ? 0 : left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            acc[k] = _mm512_setzero_ps();
        }
        for (int j = 0; j < P; j++) {
            const __m512 sj = _mm512_set1_ps(s[j]);
            const float *vj = V + (size_t)j * hd + i0;
            for (int k = 0; k < 4; k++)
                acc[k] = _mm512_add_ps(acc[k], _mm512_mul_ps(sj, _mm512_maskz_loadu_ps(m[k], vj + 16 * k)));
        }
        for (int k = 0; k < 4; k++) _mm512_mask_storeu_ps(o + i0 + 16 * k, m[k], acc[k]);
    }
#else
    memset(o, 0, (size_t)hd * sizeof(float));
    for (int j = 0; j < P; j++)
        for (int i = 0; i < hd; i++) o[i] += s[j] * V[(size_t)j * hd + i];
#endif
}

/* Attention of n new rows of one sequence, positions p0..p0+n-1, over its
 * cache (which already holds their own keys and values).
 * qkv [n, 3C] rotated; out [n, C]; scores [n, p0+n] scratch. here: on
 * this thread alone (inside a job of the pool; n == 1 only). */
static void cached_attention(neox_decoder *d, int slot, int l, const float *qkv, float *out,
                             int p0, int n, int here) {
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
            if (here) gemv_forward_here(s, q, K, NULL, 1, hd, P);
            else gemv_forward(s, q, K, NULL, 1, hd, P);
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
            weighted_sum(o, s, V, P, hd);
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

/* Appends the step's keys and values to the cache and computes the
 * attention of every sequence's new rows: qkv to atty. here: as
 * cached_attention's. */
void cpu_attention_decode(neox_decoder *d, int l, const decode_rows *rows, float *qkv_all, float *atty,
                          int here) {
    const int C = d->m->cfg.hidden_size, *slot = rows->slot, *count = rows->count;
    for (int b = 0, r = 0; b < rows->nseq; r += count[b], b++) {
        float *qkv = qkv_all + (size_t)r * 3 * C;
        store_kv(d, slot[b], l, qkv, d->len[slot[b]], count[b]);
        cached_attention(d, slot[b], l, qkv, atty + (size_t)r * C, d->len[slot[b]], count[b], here);
    }
}

/* ---- the fused decoding step of a layer ------------------------------------------- */

typedef struct {
    const layer_attention *att;
    int l;
    float *qkv, *atty;
} attention_first_ctx;

static void attention_first(void *arg) {
    const attention_first_ctx *a = arg;
    a->att->fn(a->att->ctx, a->l, a->qkv, a->atty, 1);
}

/* layer_forward's decoding step in bf16 with a parallel residual, whose
 * products all stream the weights (LINEAR_GEMV_BF16): qkv and the MLP's
 * first product share one pass of the pool, the two output products the
 * next, where the caller computes the attention while the other threads
 * start on the MLP's. The same arithmetic as the generic layer, two
 * wake-ups and waits of the pool instead of four; fch is not written,
 * only fch_gelu. */
int cpu_decode_layer(const neox_model *m, int l, const layer_bufs *b, int R, const layer_attention *att) {
    const neox_config *c = &m->cfg;
    const neox_layer_params *lp = &m->p.layers[l];
    const neox_layer_linear *L = &m->lin[l];
    const int C = c->hidden_size;
    const float eps = (float)c->layer_norm_eps;
    if (!c->use_parallel_residual || linear_forward_kernel(&L->qkv, R) != LINEAR_GEMV_BF16) return 0;
    cpu_layernorm_forward(b->ln1, b->ln1_mean, b->ln1_rstd, b->in, lp->ln1_w, lp->ln1_b, R, C, eps);
    cpu_layernorm_forward(b->ln2, b->ln2_mean, b->ln2_rstd, b->in, lp->ln2_w, lp->ln2_b, R, C, eps);
    gemv_bf16_product in[2] = {{b->qkv, b->ln1, &L->qkv.lowp, L->qkv.b, 0},
                               {b->fch_gelu, b->ln2, &L->fc.lowp, L->fc.b, 1}};
    gemv_bf16_forward_many(in, 2, R);
    gemv_bf16_product out[2] = {{b->branch2, b->fch_gelu, &L->fc_proj.lowp, L->fc_proj.b, 0},
                                {b->branch, b->atty, &L->attn_proj.lowp, L->attn_proj.b, 0}};
    attention_first_ctx a = {att, l, b->qkv, b->atty};
    gemv_bf16_forward_after(out, 2, R, 1, attention_first, &a);
    cpu_residual_forward(b->out, b->in, b->branch, (size_t)R * C);
    cpu_residual_forward(b->out, b->out, b->branch2, (size_t)R * C);
    return 1;
}
