/* sampler.h — choosing the next token from logits with Hugging Face's
 * generate() semantics: repetition penalty (CTRL: a logit of a token seen
 * in the prompt or generation is divided by the penalty when positive,
 * multiplied when negative), no-repeat n-grams, then greedy argmax, or
 * temperature, top-k, top-p and a draw from a seeded generator. */
#ifndef TUNEPIPE_SAMPLER_H
#define TUNEPIPE_SAMPLER_H

#include <stdint.h>

#include "base/rng.h"

typedef struct {
    int sample;                /* 0: greedy argmax (the first on ties) */
    double temperature;        /* > 0, used when sampling */
    int top_k;                 /* 0: off */
    double top_p;              /* 1: off */
    double repetition_penalty; /* 1: off */
    int no_repeat_ngram;       /* 0: off */
} sampler_opts;

typedef struct {
    sampler_opts o;
    int V;
    uint8_t *seen;             /* [V] */
    int *order;                /* [V] */
    float *work;               /* [V] */
} sampler;

/* 1 when o picks the argmax of the raw logits (greedy, no penalties):
 * then a device may choose itself (device.h's argmax_rows). */
int sampler_plain_greedy(const sampler_opts *o);

void sampler_init(sampler *s, const sampler_opts *o, int V);
void sampler_free(sampler *s);

/* The next token after ids [n] (prompt then generated, no padding; every id
 * < V) from logits [V], which it modifies. rng is used only when sampling. */
uint32_t sampler_next(sampler *s, float *logits, const uint32_t *ids, int n, rng_state *rng);

#endif
