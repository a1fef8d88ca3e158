/* gemv.c — see gemv.h. A tiny thread pool: the caller and its workers
 * claim blocks of weight rows, so every weight byte is streamed by exactly
 * one core. */
#include "gemv.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    float *out;
    const float *inp, *w, *bias;
    int N, C, OC;
} gemv_job;

#if defined(__AVX512F__)
#define VEC 16
/* Dot products of NX input rows with NW weight rows: acc[x][j] = x_x · w_j.
 * Constant NX, NW after inlining keep all accumulators in registers. */
static inline __attribute__((always_inline)) void dot_tile(const float *const *x, int NX,
                                                           const float *w, size_t ldw, int NW,
                                                           int C, float *res) {
    __m512 acc[4][4];
    #pragma GCC unroll 4
    for (int a = 0; a < NX; a++)
        #pragma GCC unroll 4
        for (int b = 0; b < NW; b++) acc[a][b] = _mm512_setzero_ps();
    int k = 0;
    for (; k + VEC <= C; k += VEC) {
        __m512 wv[4], xv[4];
        #pragma GCC unroll 4
        for (int b = 0; b < NW; b++) wv[b] = _mm512_loadu_ps(w + b * ldw + k);
        #pragma GCC unroll 4
        for (int a = 0; a < NX; a++) xv[a] = _mm512_loadu_ps(x[a] + k);
        #pragma GCC unroll 4
        for (int a = 0; a < NX; a++)
            #pragma GCC unroll 4
            for (int b = 0; b < NW; b++) acc[a][b] = _mm512_fmadd_ps(xv[a], wv[b], acc[a][b]);
    }
    if (k < C) {
        __mmask16 m = (__mmask16)((1u << (C - k)) - 1);
        __m512 wv[4], xv[4];
        #pragma GCC unroll 4
        for (int b = 0; b < NW; b++) wv[b] = _mm512_maskz_loadu_ps(m, w + b * ldw + k);
        #pragma GCC unroll 4
        for (int a = 0; a < NX; a++) xv[a] = _mm512_maskz_loadu_ps(m, x[a] + k);
        #pragma GCC unroll 4
        for (int a = 0; a < NX; a++)
            #pragma GCC unroll 4
            for (int b = 0; b < NW; b++) acc[a][b] = _mm512_fmadd_ps(xv[a], wv[b], acc[a][b]);
    }
    #pragma GCC unroll 4
    for (int a = 0; a < NX; a++)
        #pragma GCC unroll 4
        for (int b = 0; b < NW; b++) res[a * 4 + b] = _mm512_reduce_add_ps(acc[a][b]);
}
#else
static inline void dot_tile(const float *const *x, int NX, const float *w, size_t ldw, int NW,
                            int C, float *res) {
    for (int a = 0; a < NX; a++)
        for (int b = 0; b < NW; b++) {
            float s = 0;
            for (int k = 0; k < C; k++) s += x[a][k] * w[b * ldw + k];
            res[a * 4 + b] = s;
        }
}
#endif

/* Weight rows [j0, j1) for every input row. Weight rows go in blocks that
 * stay in L2 while every group of 4 input rows passes over them. */
static void gemv_slice(const gemv_job *jb, int j0, int j1) {
    const int C = jb->C, OC = jb->OC, N = jb->N;
    const int block = 16;
    for (int jblk = j0; jblk < j1; jblk += block) {
        int jend = jblk + block < j1 ? jblk + block : j1;
        for (int n0 = 0; n0 < N; n0 += 4) {
            int nx = N - n0 < 4 ? N - n0 : 4;
            const float *x[4];
            for (int a = 0; a < 4; a++) x[a] = jb->inp + (size_t)(n0 + (a < nx ? a : 0)) * C;
            for (int j = jblk; j < jend; j += 4) {
                int nw = jend - j < 4 ? jend - j : 4;
                float res[16];
                const float *w = jb->w + (size_t)j * C;
                if (nw == 4) {
                    switch (nx) {
                    case 1: dot_tile(x, 1, w, (size_t)C, 4, C, res); break;
                    case 2: dot_tile(x, 2, w, (size_t)C, 4, C, res); break;
                    case 3: dot_tile(x, 3, w, (size_t)C, 4, C, res); break;
                    default: dot_tile(x, 4, w, (size_t)C, 4, C, res); break;
                    }
                } else {
                    for (int b = 0; b < nw; b++) dot_tile(x, 4, w + (size_t)b * C, (size_t)C, 1, C, res + b);
                }
                for (int a = 0; a < nx; a++)
                    for (int b = 0; b < nw; b++)
                        jb->out[(size_t)(n0 + a) * OC + j + b] =
                            res[a * 4 + b] + (jb->bias ? jb->bias[j + b] : 0.0f);
            }
        }
    }
}

/* ---- the pool ----------------------------------------------------------
 * Participants claim blocks of weight rows from one atomic word holding the
 * job's generation and its next free row, so a thread that the OS delays
 * (the machine may be shared) leaves its rows to the others instead of
 * stalling the product, and a thread that wakes late can never claim rows
 * of a job that has moved on. Jobs alternate between two slots: the slot
 * of job g is rewritten only for job g+2, which cannot start before every
 * row of g (hence every claim on it) is done. */
#define ROWS_PER_CLAIM 64

static int pool_size;              /* threads including the caller */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static gemv_job pool_jobs[2];
static atomic_int pool_rows[2];    /* OC of each slot, read before claiming */
static _Atomic uint64_t pool_state; /* generation << 32 | next row */
static atomic_int pool_done;       /* rows finished in the current job */

static void claim_rows(uint32_t gen) {
    for (;;) {
        uint64_t s = atomic_load_explicit(&pool_state, memory_order_acquire);
        if ((uint32_t)(s >> 32) != gen) return;
        int row = (int)(uint32_t)s, OC = atomic_load_explicit(&pool_rows[gen & 1], memory_order_relaxed);
        if (row >= OC) return;
        if (!atomic_compare_exchange_weak_explicit(&pool_state, &s, s + ROWS_PER_CLAIM,
                                                   memory_order_acq_rel, memory_order_relaxed))
            continue;
        int end = row + ROWS_PER_CLAIM < OC ? row + ROWS_PER_CLAIM : OC;
        gemv_slice(&pool_jobs[gen & 1], row, end);
        atomic_fetch_add_explicit(&pool_done, end - row, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    (void)arg;
    uint32_t seen = 0;
    for (;;) {
        /* Spin briefly (decoding issues ~100 products per token), then sleep. */
        uint32_t gen;
        int spins = 0;
        while ((gen = (uint32_t)(atomic_load_explicit(&pool_state, memory_order_acquire) >> 32)) == seen &&
               spins < 20000) {
            _mm_pause();
            spins++;
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool_lock);
            while ((gen = (uint32_t)(atomic_load(&pool_state) >> 32)) == seen)
                pthread_cond_wait(&pool_wake, &pool_lock);
            pthread_mutex_unlock(&pool_lock);
        }
        seen = gen;
        claim_rows(gen);
    }
    return NULL;
}

static int affinity_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n < 1 ? 1 : n;
}

void gemv_set_threads(int n) {
    if (!pool_size) pool_size = n < 1 ? 1 : n;
}

static void pool_start(void) {
    if (!pool_size) pool_size = affinity_cpus();
    if (pool_size > 64) pool_size = 64;
    for (int i = 1; i < pool_size; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, worker_main, NULL) != 0) die("cannot start a thread");
        pthread_attr_destroy(&attr);
    }
}

void gemv_forward(float *out, const float *inp, const float *w, const float *bias,
                  int N, int C, int OC) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    gemv_job job = {out, inp, w, bias, N, C, OC};
    /* Small products are not worth waking anyone. */
    if ((size_t)OC * C < 65536) {
        gemv_slice(&job, 0, OC);
        return;
    }
    pthread_once(&once, pool_start);
    if (pool_size == 1) {
        gemv_slice(&job, 0, OC);
        return;
    }
    uint32_t gen = (uint32_t)(atomic_load(&pool_state) >> 32) + 1;
    pool_jobs[gen & 1] = job;
    atomic_store_explicit(&pool_rows[gen & 1], OC, memory_order_relaxed);
    atomic_store_explicit(&pool_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool_lock);
    atomic_store_explicit(&pool_state, (uint64_t)gen << 32, memory_order_release);
    pthread_cond_broadcast(&pool_wake);
    pthread_mutex_unlock(&pool_lock);
    claim_rows(gen);
    while (atomic_load_explicit(&pool_done, memory_order_acquire) < OC) _mm_pause();
}
