/* scheduler.h — neox-serve's continuous batching: one decoding thread owns
 * a generator per loaded model and runs their steps; HTTP threads submit
 * requests to a bounded queue and read each one's text from its channel.
 *
 * A request joins its model's batch at the next token boundary where a
 * slot is free (its prompt prefilled there) and leaves it when it is done,
 * stopped by a stop string, past its deadline or abandoned by its client;
 * the others go on decoding. */
#ifndef TUNEPIPE_SCHEDULER_H
#define TUNEPIPE_SCHEDULER_H

#include <pthread.h>

#include "nn/generate.h"
#include "nn/model.h"
#include "stream/template.h"
#include "tokenizer/tokenizer.h"

#define SERVE_MAX_STOPS 4

typedef struct {
    char *name;                 /* the API's model id */
    char *dir;
    neox_model m;
    tokenizer *tok;             /* encode under tok_lock (it caches); decode is read-only */
    pthread_mutex_t tok_lock;
    prompt_template tmpl;       /* the template it was trained with */
    char *template_text;
    generator g;
} serve_model;

typedef struct serve_request {
    /* Set by the submitter. */
    int model;
    token_ids prompt;
    gen_opts opts;              /* max_new, eos_id, seed, sampling */
    char *stop[SERVE_MAX_STOPS];
    int nstop;
    double deadline;            /* now_seconds() past which it ends */
    /* The channel: the scheduler writes under mu and signals cv. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    utf8_buf text;              /* the answer so far */
    size_t ready;               /* bytes of text that will not change */
    int completion_tokens;
    int finished;               /* the scheduler is done with it */
    const char *finish_reason;  /* "stop" (EOS or a stop string), "length" */
    int cancelled;              /* set by the submitter: the client is gone */
    /* The scheduler's. */
    gen_seq seq;
    struct serve_request *next;
} serve_request;

typedef struct {
    serve_model *models;
    int nmodels;
    int queue_cap;              /* requests waiting for a slot at most */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_request *head, *tail; /* waiting, oldest first */
    int queued;
    serve_request ***active;    /* [nmodels][batch] */
    int *nactive;
    int in_flight;              /* queued or decoding */
    int stopping;
    pthread_t thread;
} scheduler;

void request_init(serve_request *r);
void request_free(serve_request *r);

/* Starts the decoding thread over models (each generator initialised). */
int scheduler_start(scheduler *s, serve_model *models, int nmodels, int queue_cap); /* 0, or -1: no thread */
/* Queues r; returns 0, or -1 when the queue is full (r untouched). */
int scheduler_submit(scheduler *s, serve_request *r);
/* Marks r abandoned and waits until the scheduler lets go of it. */
void scheduler_cancel(serve_request *r);
/* Requests queued or decoding. */
int scheduler_in_flight(scheduler *s);
/* Stops the thread (requests in flight must be finished). */
void scheduler_stop(scheduler *s);

#endif
