/* parallel.c — the worker pool; see parallel.h. Workers sleep on a
 * condition variable between jobs and are started on first use. */
#include "parallel.h"

#include <cblas.h>
#include <pthread.h>

#include "cli.h"

typedef void (*range_fn)(void *ctx, size_t begin, size_t end, int part);

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int threads, started;        /* configured; workers running (excluding caller) */
    unsigned long generation;    /* bumped for every job */
    int parts, pending;
    size_t n;
    range_fn fn;
    void *ctx;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

void parallel_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > PARALLEL_MAX_THREADS) n = PARALLEL_MAX_THREADS;
    pthread_mutex_lock(&pool.lock);
    /* Workers already started stay; only that many are ever used. */
    pool.threads = n;
    pthread_mutex_unlock(&pool.lock);
}

int parallel_threads(void) {
    if (!pool.threads) parallel_set_threads(openblas_get_num_threads());
    return pool.threads;
}

static void run_part(int part) {
    size_t begin = pool.n * (size_t)part / (size_t)pool.parts;
    size_t end = pool.n * (size_t)(part + 1) / (size_t)pool.parts;
    pool.fn(pool.ctx, begin, end, part);
}

static void *worker(void *arg) {
    int id = (int)(size_t)arg; /* 1.. */
    unsigned long seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        if (id >= pool.parts) continue;
        pthread_mutex_unlock(&pool.lock);
        run_part(id);
        pthread_mutex_lock(&pool.lock);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

void parallel_for(size_t n, size_t min_part, range_fn fn, void *ctx) {
    int threads = parallel_threads();
    size_t by_size = min_part ? n / min_part : n;
    int parts = by_size < (size_t)threads ? (int)(by_size ? by_size : 1) : threads;
    if (parts <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    while (pool.started < parts - 1) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(size_t)(pool.started + 1)) != 0) break;
        pthread_detach(t);
        pool.started++;
    }
    if (parts > pool.started + 1) parts = pool.started + 1;
    pool.n = n;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.parts = parts;
    pool.pending = parts - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_part(0);
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}

void parallel_take_blas_threads(void) {
    parallel_threads();
    openblas_set_num_threads(1);
}

typedef struct {
    int trans_a, trans_b, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
} sgemm_ctx;

#define SGEMM_COLUMN_BLOCK 64

/* Column blocks [begin, end) of C. */
static void sgemm_columns(void *arg, size_t begin, size_t end, int part) {
    const sgemm_ctx *c = arg;
    size_t n0 = begin * SGEMM_COLUMN_BLOCK, n1 = end * SGEMM_COLUMN_BLOCK;
    if (n1 > (size_t)c->N) n1 = (size_t)c->N;
    const float *B = c->B + (c->trans_b ? n0 * (size_t)c->ldb : n0);
    cblas_sgemm(CblasRowMajor, c->trans_a ? CblasTrans : CblasNoTrans,
                c->trans_b ? CblasTrans : CblasNoTrans, c->M, (int)(n1 - n0), c->K, c->alpha,
                c->A, c->lda, B, c->ldb, c->beta, c->C + n0, c->ldc);
}

void parallel_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    sgemm_ctx c = {trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    size_t blocks = ((size_t)N + SGEMM_COLUMN_BLOCK - 1) / SGEMM_COLUMN_BLOCK;
    parallel_for(blocks, 1, sgemm_columns, &c);
}
