/* generate.c — see generate.h. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"

void generator_init(generator *g, const neox_model *m, const gen_opts *o) {
    memset(g, 0, sizeof *g);
    g->m = m;
    g->o = *o;
    int rows = o->batch > DECODER_PREFILL_ROWS ? o->batch : DECODER_PREFILL_ROWS;
    decoder_init(&g->dec, m, o->batch, 0, rows);
    sampler_init(&g->smp, &o->sampling, m->cfg.vocab_size);
    g->active = xcalloc((size_t)o->batch, sizeof *g->active);
    g->logits = device_host_alloc(m->dev, (size_t)o->batch * m->cfg.vocab_size * sizeof(float));
    g->step_seqs = xmalloc((size_t)o->batch * sizeof *g->step_seqs);
    g->step_tokens = xmalloc((size_t)o->batch * sizeof(uint32_t));
    g->step_slots = xmalloc((size_t)o->batch * sizeof(int));
    g->step_counts = xmalloc((size_t)o->batch * sizeof(int));
}

void generator_free(generator *g) {
    if (!g->m) return;
    decoder_free(&g->dec);
    sampler_free(&g->smp);
    free(g->active);
    device_host_release(g->m->dev, g->logits);
    free(g->step_seqs);
    free(g->step_tokens);
    free(g->step_slots);
    free(g->step_counts);
    memset(g, 0, sizeof *g);
}

void gen_seq_free(gen_seq *s) {
    free(s->ids);
    memset(s, 0, sizeof *s);
}

/* Appends tok to s and decides if s is done. */
static void append_token(generator *g, gen_seq *s, uint32_t tok) {
    s->ids[s->n++] = tok;
    int generated = s->n - s->prompt_len;
    if (generated >= s->max_new || (s->eos_id >= 0 && tok == (uint32_t)s->eos_id) ||
        s->n >= g->dec.capacity)
        s->done = 1;
}

/* Picks s's next token from logits [V] and appends it. */
static void take_token(generator *g, gen_seq *s, float *logits) {
    g->smp.o = s->sampling; /* the one sampler's scratch serves every sequence */
    append_token(g, s, sampler_next(&g->smp, logits, s->ids, s->n, &s->rng));
}

static void leave(generator *g, gen_seq *s) {
    g->active[s->slot] = NULL;
    s->slot = -1;
    g->num_active--;
}

void generator_add(generator *g, gen_seq *s, const uint32_t *prompt, int n, uint64_t key) {
    generator_add_with(g, s, prompt, n, key, &g->o);
}

void generator_remove(generator *g, gen_seq *s) {
    if (s->slot >= 0) leave(g, s);
    s->done = 1;
}

void generator_add_with(generator *g, gen_seq *s, const uint32_t *prompt, int n, uint64_t key,
                        const gen_opts *o) {
    memset(s, 0, sizeof *s);
    s->max_new = o->max_new;
    s->eos_id = o->eos_id;
    s->sampling = o->sampling;
    long final_len = (long)n + (o->max_new > 0 ? o->max_new : 0);
    if (final_len > g->dec.capacity) final_len = g->dec.capacity > n ? g->dec.capacity : n;
    s->cap = (int)final_len + 1;
    s->ids = xmalloc((size_t)s->cap * sizeof *s->ids);
    memcpy(s->ids, prompt, (size_t)n * sizeof *prompt);
    s->n = s->prompt_len = n;
    s->slot = -1;
    rng_seed(&s->rng, o->seed ^ (key * 0x9e3779b97f4a7c15ull));
    if (o->max_new <= 0) {
        s->done = 1;
        return;
    }
    int slot = 0;
    while (g->active[slot]) slot++;
    g->active[slot] = s;
    s->slot = slot;
    g->num_active++;
    decoder_reset(&g->dec, slot);
    decoder_reserve(&g->dec, slot, (int)final_len);
    decoder_prefill(&g->dec, slot, prompt, n, g->logits);
    take_token(g, s, g->logits);
    if (s->done) leave(g, s);
}

void generator_step(generator *g) {
    int k = 0, greedy_on_device = g->m->dev->argmax_rows != NULL;
    gen_seq **order = g->step_seqs;
    for (int slot = 0; slot < g->o.batch; slot++) {
        gen_seq *s = g->active[slot];
        if (!s) continue;
        order[k] = s;
        g->step_slots[k] = slot;
        g->step_counts[k] = 1;
        g->step_tokens[k] = s->ids[s->n - 1];
        greedy_on_device &= sampler_plain_greedy(&s->sampling);
        k++;
    }
    if (!k) return;
    if (greedy_on_device) {
        decoder_step_greedy(&g->dec, k, g->step_slots, g->step_counts, g->step_tokens, g->step_tokens);
        for (int b = 0; b < k; b++) append_token(g, order[b], g->step_tokens[b]);
    } else {
        decoder_step(&g->dec, k, g->step_slots, g->step_counts, g->step_tokens, g->logits, 0);
        for (int b = 0; b < k; b++) take_token(g, order[b], g->logits + (size_t)b * g->m->cfg.vocab_size);
    }
    for (int b = 0; b < k; b++)
        if (order[b]->done) leave(g, order[b]);
}

/* -log softmax(row)[target], in double. */
static double token_nll(const float *row, int V, uint32_t target) {
    float mx = row[0];
    for (int i = 1; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    return log(sum) + mx - row[target];
}

double score_answer(neox_decoder *dec, const uint32_t *question, int nq, const uint32_t *answer,
                    int na, float *logits) {
    const int V = dec->m->cfg.vocab_size, slot = 0;
    decoder_reset(dec, slot);
    /* The question's last token predicts the answer's first, and so on:
     * positions nq-1 .. total-2 are scored; the answer's last token is never fed. */
    decoder_prefill(dec, slot, question, nq - 1, logits);
    uint32_t *rest = xmalloc((size_t)(na + 1) * sizeof *rest);
    rest[0] = question[nq - 1];
    memcpy(rest + 1, answer, (size_t)na * sizeof *answer);
    double nll = 0;
    for (int done = 0; done < na;) {
        int chunk = na - done < dec->max_rows ? na - done : dec->max_rows;
        decoder_step(dec, 1, &slot, &chunk, rest + done, logits, 1);
        for (int i = 0; i < chunk; i++) nll += token_nll(logits + (size_t)i * V, V, answer[done + i]);
        done += chunk;
    }
    free(rest);
    return nll;
}
