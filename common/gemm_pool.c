/* gemm_pool.c — see gemm_pool.h. One job at a time: a generation counter
 * announces it, a counter of unfinished workers ends it. */
#include "gemm_pool.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "cli.h"

#define MAX_THREADS 64
/* Time-stamp-counter ticks (~0.1 ms at 2-3 GHz) a worker polls before it
 * sleeps: longer than the gap between a layer's products, short enough not
 * to starve other threads of a 2-core machine for long. */
#define SPIN_TICKS (1ull << 18)

static int pool_size;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static atomic_uint pool_generation;
static atomic_int pool_busy;
static gemm_pool_fn job_fn;
static void *job_arg;

static void *worker_main(void *arg) {
    const int thread = (int)(long)arg;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        const unsigned long long until = __rdtsc() + SPIN_TICKS;
        while ((gen = atomic_load_explicit(&pool_generation, memory_order_acquire)) == seen &&
               __rdtsc() < until)
            _mm_pause();
        if (gen == seen) {
            pthread_mutex_lock(&pool_lock);
            while ((gen = atomic_load_explicit(&pool_generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool_wake, &pool_lock);
            pthread_mutex_unlock(&pool_lock);
        }
        seen = gen;
        job_fn(job_arg, thread, pool_size);
        atomic_fetch_sub_explicit(&pool_busy, 1, memory_order_release);
    }
    return NULL;
}

static void pool_start(void) {
    if (!pool_size) {
        cpu_set_t set;
        pool_size = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    if (pool_size < 1) pool_size = 1;
    if (pool_size > MAX_THREADS) pool_size = MAX_THREADS;
    for (int i = 1; i < pool_size; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, worker_main, (void *)(long)i) != 0) die("cannot start a thread");
        pthread_attr_destroy(&attr);
    }
}

void gemm_pool_set_size(int n) {
    if (!pool_size) pool_size = n < 1 ? 1 : n;
}

int gemm_pool_size(void) {
    pthread_once(&pool_once, pool_start);
    return pool_size;
}

void gemm_pool_run(gemm_pool_fn fn, void *arg) {
    if (gemm_pool_size() == 1) {
        fn(arg, 0, 1);
        return;
    }
    job_fn = fn;
    job_arg = arg;
    atomic_store_explicit(&pool_busy, pool_size - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool_lock);
    atomic_fetch_add_explicit(&pool_generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool_wake);
    pthread_mutex_unlock(&pool_lock);
    fn(arg, 0, pool_size);
    while (atomic_load_explicit(&pool_busy, memory_order_acquire) > 0) _mm_pause();
}
