/* scheduler.c — see scheduler.h. */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>

#include "base/cli.h"

void request_init(serve_request *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->seq.slot = -1;
}

void request_free(serve_request *r) {
    token_ids_free(&r->prompt);
    for (int i = 0; i < r->nstop; i++) free(r->stop[i]);
    utf8_buf_free(&r->text);
    gen_seq_free(&r->seq);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

/* Hands the answer to the submitter; the scheduler never touches r again. */
static void finish(scheduler *s, serve_request *r, const char *reason) {
    gen_seq_free(&r->seq);
    pthread_mutex_lock(&r->mu);
    r->ready = r->text.len;
    r->finish_reason = reason;
    r->finished = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&s->mu);
    s->in_flight--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The longest suffix of text [n] that begins one of the stop strings:
 * held back, since the next token may complete it. */
static size_t stop_prefix_tail(const serve_request *r, const char *text, size_t n) {
    size_t hold = 0;
    for (int i = 0; i < r->nstop; i++) {
        size_t ls = strlen(r->stop[i]);
        for (size_t k = ls - 1 < n ? ls - 1 : n; k > hold; k--)
            if (memcmp(text + n - k, r->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* Publishes the text of r's tokens so far. Returns 1 when a stop string
 * ended it (the text cut before it). */
static int publish(const serve_model *sm, serve_request *r) {
    const gen_seq *q = &r->seq;
    utf8_buf t = {0};
    int final = q->done;
    size_t safe = tokenizer_decode_partial(sm->tok, q->ids + q->prompt_len, (size_t)(q->n - q->prompt_len),
                                           final, &t);
    int stopped = 0;
    size_t cut = t.len;
    for (int i = 0; i < r->nstop; i++) {
        char *at = memmem(t.data, t.len, r->stop[i], strlen(r->stop[i]));
        if (at && (size_t)(at - t.data) < cut) cut = (size_t)(at - t.data), stopped = 1;
    }
    if (stopped) t.len = safe = cut;
    else if (!final) safe -= stop_prefix_tail(r, t.data, safe);
    pthread_mutex_lock(&r->mu);
    utf8_buf_free(&r->text);
    r->text = t;
    if (safe > r->ready) r->ready = safe;
    r->completion_tokens = q->n - q->prompt_len;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return stopped;
}

/* After r's latest token: publishes it and ends r when it is over. */
static void after_token(scheduler *s, int mi, int k) {
    serve_model *sm = &s->models[mi];
    serve_request *r = s->active[mi][k];
    int stopped = publish(sm, r);
    int cancelled = __atomic_load_n(&r->cancelled, __ATOMIC_ACQUIRE);
    int late = now_seconds() > r->deadline;
    if (!r->seq.done && !stopped && !cancelled && !late) return;
    const gen_seq *q = &r->seq;
    const char *reason = stopped || (q->done && r->opts.eos_id >= 0 && q->n > q->prompt_len &&
                                     q->ids[q->n - 1] == (uint32_t)r->opts.eos_id)
                             ? "stop"
                             : "length";
    generator_remove(&sm->g, &r->seq);
    s->active[mi][k] = s->active[mi][--s->nactive[mi]];
    finish(s, r, reason);
}

static void *run(void *arg) {
    scheduler *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int busy = 0;
        for (int i = 0; i < s->nmodels; i++) busy |= s->nactive[i] > 0;
        while (!busy && !s->queued && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping && !busy && !s->queued) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        /* Admit, oldest first, every waiting request whose model has a slot. */
        serve_request *admit = NULL, **tail = &admit, **p = &s->head;
        int room[s->nmodels];
        for (int i = 0; i < s->nmodels; i++) room[i] = s->models[i].g.o.batch - s->nactive[i];
        s->tail = NULL;
        while (*p) {
            serve_request *r = *p;
            int gone = __atomic_load_n(&r->cancelled, __ATOMIC_ACQUIRE) || now_seconds() > r->deadline;
            if (gone || room[r->model] > 0) {
                if (!gone) room[r->model]--;
                *p = r->next;
                r->next = NULL;
                *tail = r;
                tail = &r->next;
                s->queued--;
            } else {
                s->tail = r;
                p = &r->next;
            }
        }
        pthread_mutex_unlock(&s->mu);
        while (admit) {
            serve_request *r = admit;
            admit = r->next;
            if (__atomic_load_n(&r->cancelled, __ATOMIC_ACQUIRE) || now_seconds() > r->deadline) {
                finish(s, r, "length");
                continue;
            }
            serve_model *sm = &s->models[r->model];
            generator_add_with(&sm->g, &r->seq, r->prompt.ids, (int)r->prompt.n, 0, &r->opts);
            int k = s->nactive[r->model]++;
            s->active[r->model][k] = r;
            after_token(s, r->model, k);
        }
        for (int mi = 0; mi < s->nmodels; mi++) {
            if (!s->nactive[mi]) continue;
            generator_step(&s->models[mi].g);
            for (int k = s->nactive[mi] - 1; k >= 0; k--) after_token(s, mi, k);
        }
    }
}

int scheduler_start(scheduler *s, serve_model *models, int nmodels, int queue_cap) {
    memset(s, 0, sizeof *s);
    s->models = models;
    s->nmodels = nmodels;
    s->queue_cap = queue_cap;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->active = xcalloc((size_t)nmodels, sizeof *s->active);
    s->nactive = xcalloc((size_t)nmodels, sizeof *s->nactive);
    for (int i = 0; i < nmodels; i++) s->active[i] = xcalloc((size_t)models[i].g.o.batch, sizeof **s->active);
    return pthread_create(&s->thread, NULL, run, s) != 0 ? -1 : 0;
}

int scheduler_submit(scheduler *s, serve_request *r) {
    pthread_mutex_lock(&s->mu);
    if (s->queued >= s->queue_cap) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    r->next = NULL;
    if (s->tail) s->tail->next = r;
    else s->head = r;
    s->tail = r;
    s->queued++;
    s->in_flight++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void scheduler_cancel(serve_request *r) {
    __atomic_store_n(&r->cancelled, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&r->mu);
    while (!r->finished) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

int scheduler_in_flight(scheduler *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->in_flight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void scheduler_stop(scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->nmodels; i++) free(s->active[i]);
    free(s->active);
    free(s->nactive);
}
