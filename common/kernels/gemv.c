/* gemv.c — see gemv.h. The caller and the pool's workers (parallel.h)
 * claim blocks of weight rows, so every weight byte is streamed by exactly
 * one core. */
#include "gemv.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <stddef.h>

#include "parallel.h"

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

/* Participants claim blocks of weight rows from one counter, so a thread
 * that the OS delays (the machine may be shared) leaves its rows to the
 * others instead of stalling the product. */
#define ROWS_PER_CLAIM 64

typedef struct {
    const gemv_job *job;
    atomic_int next_row;
} gemv_claims;

static void claim_rows(void *arg, int thread, int nthreads) {
    gemv_claims *c = arg;
    const int OC = c->job->OC;
    int row;
    while ((row = atomic_fetch_add_explicit(&c->next_row, ROWS_PER_CLAIM, memory_order_relaxed)) < OC)
        gemv_slice(c->job, row, row + ROWS_PER_CLAIM < OC ? row + ROWS_PER_CLAIM : OC);
}

void gemv_forward_here(float *out, const float *inp, const float *w, const float *bias,
                       int N, int C, int OC) {
    gemv_job job = {out, inp, w, bias, N, C, OC};
    gemv_slice(&job, 0, OC);
}

void gemv_forward(float *out, const float *inp, const float *w, const float *bias,
                  int N, int C, int OC) {
    gemv_job job = {out, inp, w, bias, N, C, OC};
    /* Small products are not worth waking anyone. */
    if ((size_t)OC * C < 65536) {
        gemv_slice(&job, 0, OC);
        return;
    }
    gemv_claims claims = {.job = &job};
    atomic_init(&claims.next_row, 0);
    parallel_run(claim_rows, &claims);
}
