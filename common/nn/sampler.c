/* sampler.c — see sampler.h. Each step mirrors a Hugging Face logits
 * processor, in the order generate() applies them. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"

int sampler_plain_greedy(const sampler_opts *o) {
    return !o->sample && o->repetition_penalty == 1.0 && o->no_repeat_ngram <= 0;
}

void sampler_init(sampler *s, const sampler_opts *o, int V) {
    s->o = *o;
    s->V = V;
    s->seen = xmalloc((size_t)V);
    s->order = xmalloc((size_t)V * sizeof(int));
    s->work = xmalloc((size_t)V * sizeof(float));
}

void sampler_free(sampler *s) {
    free(s->seen);
    free(s->order);
    free(s->work);
}

/* RepetitionPenaltyLogitsProcessor: each distinct id once. */
static void repetition_penalty(sampler *s, float *logits, const uint32_t *ids, int n) {
    float p = (float)s->o.repetition_penalty;
    memset(s->seen, 0, (size_t)s->V);
    for (int i = 0; i < n; i++) {
        uint32_t id = ids[i];
        if (s->seen[id]) continue;
        s->seen[id] = 1;
        logits[id] = logits[id] < 0 ? logits[id] * p : logits[id] / p;
    }
}

/* NoRepeatNGramLogitsProcessor: ban every token that would complete an
 * n-gram already present in ids. */
static void no_repeat_ngram(int ngram, float *logits, const uint32_t *ids, int n) {
    if (n + 1 < ngram) return;
    const uint32_t *prefix = ids + n - (ngram - 1);
    for (int i = 0; i + ngram <= n; i++)
        if (memcmp(ids + i, prefix, (size_t)(ngram - 1) * sizeof *ids) == 0)
            logits[ids[i + ngram - 1]] = -INFINITY;
}

static uint32_t argmax(const float *x, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best]) best = i;
    return (uint32_t)best;
}

/* The k-th largest of x [n] (1-based k), by quickselect on a copy in work. */
static float kth_largest(float *work, const float *x, int n, int k) {
    memcpy(work, x, (size_t)n * sizeof *work);
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = work[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (work[i] > pivot) i++;
            while (work[j] < pivot) j--;
            if (i <= j) {
                float t = work[i];
                work[i++] = work[j];
                work[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return work[want];
}

static int by_logit_ascending(const void *a, const void *b, void *logits) {
    const float *keys = logits;
    float x = keys[*(const int *)a], y = keys[*(const int *)b];
    return (x > y) - (x < y);
}

/* TopPLogitsWarper: drop the tokens whose ascending cumulative probability
 * is <= 1 - top_p, always keeping the most likely one. */
static void top_p_filter(sampler *s, float *logits, double top_p) {
    int m = 0;
    for (int i = 0; i < s->V; i++)
        if (logits[i] != -INFINITY) s->order[m++] = i;
    qsort_r(s->order, (size_t)m, sizeof(int), by_logit_ascending, logits);
    float mx = logits[s->order[m - 1]];
    double total = 0;
    for (int i = 0; i < m; i++) total += exp((double)logits[s->order[i]] - mx);
    double cum = 0;
    for (int i = 0; i < m - 1; i++) {
        cum += exp((double)logits[s->order[i]] - mx) / total;
        if (cum > 1 - top_p) break;
        logits[s->order[i]] = -INFINITY;
    }
}

uint32_t sampler_next(sampler *s, float *logits, const uint32_t *ids, int n, rng_state *rng) {
    const sampler_opts *o = &s->o;
    int V = s->V;
    if (o->repetition_penalty != 1.0) repetition_penalty(s, logits, ids, n);
    if (o->no_repeat_ngram > 0) no_repeat_ngram(o->no_repeat_ngram, logits, ids, n);
    uint32_t best = argmax(logits, V);
    if (!o->sample || logits[best] == -INFINITY) return best;
    float t = (float)o->temperature;
    for (int i = 0; i < V; i++) logits[i] /= t;
    if (o->top_k > 0 && o->top_k < V) {
        float kth = kth_largest(s->work, logits, V, o->top_k);
        for (int i = 0; i < V; i++)
            if (logits[i] < kth) logits[i] = -INFINITY;
    }
    if (o->top_p < 1.0) top_p_filter(s, logits, o->top_p);
    /* softmax and one draw */
    float mx = logits[argmax(logits, V)];
    double total = 0;
    for (int i = 0; i < V; i++) total += s->work[i] = expf(logits[i] - mx);
    double u = rng_uniform(rng) * total, cum = 0;
    for (int i = 0; i < V; i++) {
        cum += s->work[i];
        if (u < cum && s->work[i] > 0) return (uint32_t)i;
    }
    return best;
}
