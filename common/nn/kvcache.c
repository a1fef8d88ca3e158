/* kvcache.c — see kvcache.h. */
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "forward.h"

void decoder_init(neox_decoder *d, const neox_model *m, int num_slots, int capacity, int max_rows) {
    const neox_config *c = &m->cfg;
    const device_ops *dev = m->dev;
    memset(d, 0, sizeof *d);
    d->m = m;
    d->num_slots = num_slots;
    d->capacity = capacity > 0 && capacity < c->max_positions ? capacity : c->max_positions;
    d->max_rows = max_rows;
    d->len = xcalloc((size_t)num_slots, sizeof(int));
    d->room = xcalloc((size_t)num_slots, sizeof(int));
    d->k = xcalloc((size_t)num_slots, sizeof(float *));
    d->v = xcalloc((size_t)num_slots, sizeof(float *));
    size_t R = (size_t)max_rows, C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    float **rc[] = {&d->x, &d->ln, &d->atty, &d->branch, &d->ln2, &d->branch2};
    for (size_t i = 0; i < sizeof rc / sizeof *rc; i++) *rc[i] = device_alloc(dev, R * C * sizeof(float));
    d->qkv = device_alloc(dev, R * 3 * C * sizeof(float));
    d->fch = device_alloc(dev, R * F * sizeof(float));
    d->scores = device_alloc(dev, R * (size_t)d->capacity * sizeof(float));
    d->tokens = device_alloc(dev, R * sizeof *d->tokens);
    if (!dev->host_memory) d->logits = device_alloc(dev, R * (size_t)c->vocab_size * sizeof(float));
}

void decoder_free(neox_decoder *d) {
    const device_ops *dev = d->m ? d->m->dev : NULL;
    if (!dev) return;
    if (dev->decoder_forget) dev->decoder_forget(d);
    for (int i = 0; i < d->num_slots; i++) {
        dev->release(d->k[i]);
        dev->release(d->v[i]);
    }
    free(d->len);
    free(d->room);
    free(d->k);
    free(d->v);
    void *all[] = {d->x, d->ln, d->qkv, d->atty, d->branch, d->ln2, d->branch2, d->fch, d->scores,
                   d->tokens, d->logits};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dev->release(all[i]);
    memset(d, 0, sizeof *d);
}

void decoder_reset(neox_decoder *d, int slot) { d->len[slot] = 0; }

void decoder_reserve(neox_decoder *d, int slot, int n) {
    if (n <= d->room[slot]) return;
    int room = d->room[slot] * 2 > n ? d->room[slot] * 2 : n;
    if (room > d->capacity) room = d->capacity;
    d->m->dev->decoder_reserve(d, slot, room);
    d->room[slot] = room;
}

typedef struct {
    neox_decoder *d;
    int nseq;
    const int *slot, *count;
} step_ctx;

static void step_attention(void *arg, int l, float *qkv, float *atty, int here) {
    const step_ctx *s = arg;
    const decode_rows rows = {s->nseq, s->slot, s->count};
    s->d->m->dev->attention_decode(s->d, l, &rows, qkv, atty, here);
}

/* The step of decoder_step; the logits stay where the device put them
 * (host_logits on a device whose memory is the host's, else d->logits).
 * Returns their rows. */
static int run_step(neox_decoder *d, int nseq, const int *slot, const int *count, const uint32_t *tokens,
                    float *host_logits, int all) {
    const neox_model *m = d->m;
    const device_ops *dev = m->dev;
    const neox_config *c = &m->cfg;
    const int C = c->hidden_size;
    int R = 0;
    for (int b = 0; b < nseq; b++) {
        R += count[b];
        decoder_reserve(d, slot[b], d->len[slot[b]] + count[b]);
    }
    dev->upload(d->tokens, tokens, (size_t)R * sizeof *tokens);
    const decode_rows step_rows = {nseq, slot, count};
    /* only each sequence's last row unless all (R == nseq: the same) */
    const int rows = all ? R : nseq;
    if (!dev->decode_begin || !dev->decode_begin(d, &step_rows)) {
        dev->embedding_forward(d->x, m->p.wte, d->tokens, R, C);
        step_ctx sc = {d, nseq, slot, count};
        const layer_attention att = {step_attention, &sc, R == nseq};
        /* in place on x; no statistics kept, GELU in place */
        const layer_bufs bufs = {.in = d->x, .out = d->x, .ln1 = d->ln, .qkv = d->qkv, .atty = d->atty,
                                 .ln2 = d->ln2, .fch = d->fch, .fch_gelu = d->fch, .branch = d->branch,
                                 .branch2 = d->branch2};
        for (int l = 0; l < c->num_layers; l++) layer_forward(m, l, &bufs, R, &att);
        if (!all) /* earlier rows: no overlap */
            for (int b = 0, r = 0; b < nseq; b++) {
                r += count[b];
                dev->copy(d->x + (size_t)b * C, d->x + (size_t)(r - 1) * C, (size_t)C * sizeof(float));
            }
        dev->layernorm_forward(d->ln, NULL, NULL, d->x, m->p.lnf_w, m->p.lnf_b, rows, C,
                               (float)c->layer_norm_eps);
        dev->linear_forward(&m->lm_head, dev->host_memory ? host_logits : d->logits, d->ln, rows);
        if (dev->decode_end) dev->decode_end(d);
    }
    for (int b = 0; b < nseq; b++) d->len[slot[b]] += count[b];
    return rows;
}

void decoder_step(neox_decoder *d, int nseq, const int *slot, const int *count,
                  const uint32_t *tokens, float *logits, int all) {
    const device_ops *dev = d->m->dev;
    int rows = run_step(d, nseq, slot, count, tokens, logits, all);
    if (!dev->host_memory) dev->download(logits, d->logits, (size_t)rows * d->m->cfg.vocab_size * sizeof(float));
}

void decoder_step_greedy(neox_decoder *d, int nseq, const int *slot, const int *count, const uint32_t *tokens,
                         uint32_t *next) {
    run_step(d, nseq, slot, count, tokens, NULL, 0);
    d->m->dev->argmax_rows(next, d->logits, nseq, d->m->cfg.vocab_size);
}

void decoder_prefill(neox_decoder *d, int slot, const uint32_t *tokens, int n, float *last_logits) {
    for (int done = 0; done < n;) {
        int chunk = n - done < d->max_rows ? n - done : d->max_rows;
        decoder_step(d, 1, &slot, &chunk, tokens + done, last_logits, 0);
        done += chunk;
    }
}
