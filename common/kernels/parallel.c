/* parallel.c — the worker pool; see parallel.h.
 *
 * One job at a time. The caller publishes it in one atomic word, the
 * job's generation and its thread count, so a worker that wakes late reads
 * a consistent pair and leaves a job it has no part in without touching
 * its other fields; a counter of unfinished workers ends it. Workers are
 * started on demand, when a job first needs them. */
#include "parallel.h"

#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>


typedef void (*job_fn)(void *ctx, int thread, int nthreads);

/* Time-stamp-counter ticks (~0.1 ms at 2-3 GHz) a worker polls before it
 * sleeps: longer than the gap between a layer's products, short enough not
 * to starve other threads of a 2-core machine for long. */
#define SPIN_TICKS (1ull << 18)

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int threads, started;         /* configured; workers running (excluding caller) */
    _Atomic uint64_t state;       /* generation << 8 | threads of the job */
    atomic_int busy;              /* workers still in the current job */
    job_fn fn;
    void *ctx;
    /* state when each worker was started: the jobs it must not run */
    uint64_t state_at_start[PARALLEL_MAX_THREADS];
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

void parallel_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > PARALLEL_MAX_THREADS) n = PARALLEL_MAX_THREADS;
    /* Workers already started stay; only that many are ever used. */
    pool.threads = n;
}

int parallel_threads(void) {
    if (!pool.threads) parallel_set_threads(openblas_get_num_threads());
    return pool.threads;
}

static void *worker(void *arg) {
    const int id = (int)(size_t)arg; /* 1.. */
    uint64_t seen = pool.state_at_start[id];
    for (;;) {
        uint64_t s;
        const unsigned long long until = __rdtsc() + SPIN_TICKS;
        while ((s = atomic_load_explicit(&pool.state, memory_order_acquire)) == seen && __rdtsc() < until)
            _mm_pause();
        if (s == seen) {
            pthread_mutex_lock(&pool.lock);
            while ((s = atomic_load_explicit(&pool.state, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = s;
        const int nthreads = (int)(s & 0xff);
        if (id >= nthreads) continue;
        pool.fn(pool.ctx, id, nthreads);
        atomic_fetch_sub_explicit(&pool.busy, 1, memory_order_release);
    }
    return NULL;
}

/* Runs fn on nthreads participants (fewer if threads cannot be started). */
static void run_job(job_fn fn, void *ctx, int nthreads) {
    while (pool.started < nthreads - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pool.state_at_start[pool.started + 1] = atomic_load_explicit(&pool.state, memory_order_relaxed);
        int failed = pthread_create(&t, &attr, worker, (void *)(size_t)(pool.started + 1)) != 0;
        pthread_attr_destroy(&attr);
        if (failed) break;
        pool.started++;
    }
    if (nthreads > pool.started + 1) nthreads = pool.started + 1;
    if (nthreads <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store_explicit(&pool.busy, nthreads - 1, memory_order_relaxed);
    uint64_t next = ((atomic_load_explicit(&pool.state, memory_order_relaxed) >> 8) + 1) << 8;
    pthread_mutex_lock(&pool.lock);
    atomic_store_explicit(&pool.state, next | (uint64_t)nthreads, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    fn(ctx, 0, nthreads);
    /* Yield now and then: a worker the OS has put on our core needs it. */
    for (unsigned spins = 1; atomic_load_explicit(&pool.busy, memory_order_acquire) > 0; spins++)
        if (spins % 4096 == 0) sched_yield();
        else _mm_pause();
}

void parallel_run(job_fn fn, void *ctx) { run_job(fn, ctx, parallel_threads()); }

typedef struct {
    size_t n;
    void (*fn)(void *ctx, size_t begin, size_t end, int part);
    void *ctx;
} range_job;

static void run_range(void *arg, int part, int parts) {
    const range_job *r = arg;
    r->fn(r->ctx, r->n * (size_t)part / (size_t)parts, r->n * (size_t)(part + 1) / (size_t)parts, part);
}

void parallel_for(size_t n, size_t min_part, void (*fn)(void *ctx, size_t begin, size_t end, int part),
                  void *ctx) {
    int threads = parallel_threads();
    size_t by_size = min_part ? n / min_part : n;
    int parts = by_size < (size_t)threads ? (int)(by_size ? by_size : 1) : threads;
    range_job r = {n, fn, ctx};
    run_job(run_range, &r, parts);
}

static int owns_blas;

void parallel_take_blas_threads(void) {
    parallel_threads();
    openblas_set_num_threads(1);
    owns_blas = 1;
}

int parallel_owns_blas(void) { return owns_blas; }

typedef struct {
    int trans_a, trans_b, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    size_t blocks;
    atomic_size_t next; /* the next column block nobody has taken */
} sgemm_ctx;

/* Columns of C per sgemm call. Each block is its own single-threaded call,
 * whatever the thread count: OpenBLAS's Haswell and Zen kernels sum in an
 * order that depends on the width of the call, so parts whose width followed
 * the thread count gave other bits with 1 and 2 threads. Wide enough that
 * re-packing A for each block costs little. */
#define SGEMM_COLUMN_BLOCK 128

/* Threads take blocks as they finish one, so a core slowed by another
 * process does less of the work; which thread computes a block does not
 * change its bits. */
static void sgemm_blocks(void *arg, int thread, int nthreads) {
    sgemm_ctx *c = arg;
    for (size_t blk; (blk = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < c->blocks;) {
        size_t n0 = blk * SGEMM_COLUMN_BLOCK, n1 = n0 + SGEMM_COLUMN_BLOCK;
        if (n1 > (size_t)c->N) n1 = (size_t)c->N;
        const float *B = c->B + (c->trans_b ? n0 * (size_t)c->ldb : n0);
        cblas_sgemm(CblasRowMajor, c->trans_a ? CblasTrans : CblasNoTrans,
                    c->trans_b ? CblasTrans : CblasNoTrans, c->M, (int)(n1 - n0), c->K, c->alpha,
                    c->A, c->lda, B, c->ldb, c->beta, c->C + n0, c->ldc);
    }
}

void parallel_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (!owns_blas) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    size_t blocks = ((size_t)N + SGEMM_COLUMN_BLOCK - 1) / SGEMM_COLUMN_BLOCK;
    sgemm_ctx c = {trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C, blocks, 0};
    int threads = parallel_threads();
    run_job(sgemm_blocks, &c, blocks < (size_t)threads ? (int)blocks : threads);
}
