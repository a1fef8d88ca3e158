/* kvcache.c — see kvcache.h. */
#include "kvcache.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "forward.h"
#include "kernels/gemv.h"
#include "ops.h"

void decoder_init(neox_decoder *d, const neox_model *m, int num_slots, int capacity, int max_rows) {
    const neox_config *c = &m->cfg;
    memset(d, 0, sizeof *d);
    d->m = m;
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
    d->ln2 = xmalloc(R * C * sizeof(float));
    d->branch2 = xmalloc(R * C * sizeof(float));
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
    free(d->ln2);
    free(d->branch2);
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
static void attend(neox_decoder *d, int l, int nseq, const int *slot, const int *count, float *qkv_all,
                   float *atty, int here) {
    const int C = d->m->cfg.hidden_size;
    for (int b = 0, r = 0; b < nseq; r += count[b], b++) {
        float *qkv = qkv_all + (size_t)r * 3 * C;
        store_kv(d, slot[b], l, qkv, d->len[slot[b]], count[b]);
        cached_attention(d, slot[b], l, qkv, atty + (size_t)r * C, d->len[slot[b]], count[b], here);
    }
}

typedef struct {
    neox_decoder *d;
    int nseq;
    const int *slot, *count;
} step_ctx;

static void step_attention(void *arg, int l, float *qkv, float *atty, int here) {
    const step_ctx *s = arg;
    attend(s->d, l, s->nseq, s->slot, s->count, qkv, atty, here);
}

void decoder_step(neox_decoder *d, int nseq, const int *slot, const int *count,
                  const uint32_t *tokens, float *logits, int all) {
    const neox_model *m = d->m;
    const neox_config *c = &m->cfg;
    const int C = c->hidden_size;
    int R = 0;
    for (int b = 0; b < nseq; b++) {
        R += count[b];
        decoder_reserve(d, slot[b], d->len[slot[b]] + count[b]);
    }
    for (int r = 0; r < R; r++)
        memcpy(d->x + (size_t)r * C, m->p.wte + (size_t)tokens[r] * C, (size_t)C * sizeof(float));
    step_ctx sc = {d, nseq, slot, count};
    const layer_attention att = {step_attention, &sc, R == nseq};
    /* in place on x; no statistics kept, GELU in place */
    const layer_bufs bufs = {.in = d->x, .out = d->x, .ln1 = d->ln, .qkv = d->qkv, .atty = d->atty,
                             .ln2 = d->ln2, .fch = d->fch, .fch_gelu = d->fch, .branch = d->branch,
                             .branch2 = d->branch2};
    for (int l = 0; l < c->num_layers; l++) layer_forward(m, l, &bufs, R, &att);
    for (int b = 0; b < nseq; b++) d->len[slot[b]] += count[b];
    int rows = R;
    if (!all) { /* only each sequence's last row */
        rows = nseq;
        for (int b = 0, r = 0; b < nseq; b++) {
            r += count[b];
            memmove(d->x + (size_t)b * C, d->x + (size_t)(r - 1) * C, (size_t)C * sizeof(float));
        }
    }
    layernorm_forward(d->ln, NULL, NULL, d->x, m->p.lnf_w, m->p.lnf_b, rows, C, (float)c->layer_norm_eps);
    linear_forward(&m->lm_head, logits, d->ln, rows);
}

void decoder_prefill(neox_decoder *d, int slot, const uint32_t *tokens, int n, float *last_logits) {
    for (int done = 0; done < n;) {
        int chunk = n - done < d->max_rows ? n - done : d->max_rows;
        decoder_step(d, 1, &slot, &chunk, tokens + done, last_logits, 0);
        done += chunk;
    }
}
