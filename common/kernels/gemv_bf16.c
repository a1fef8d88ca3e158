/* gemv_bf16.c — see gemv.h: the few-row product on a layer's bf16 forward
 * tiles (gemm_internal.h), the same copy gemm_forward reads. Decoding is
 * bound by memory bandwidth, so each weight byte is read once, by one
 * core, in one pass over the whole K (no K chunks), with the next lines
 * prefetched; the few input rows are rounded to bf16 once, by the caller.
 * Up to GEMV_DOT_ROWS rows take AVX-512 BF16 dot products; more take AMX
 * tiles where there are, which do a row's work in far fewer instructions
 * and so keep up with memory. */
#include "gemv.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <string.h>

#include "base/cli.h"
#include "gemm_internal.h"
#include "nn/ops.h"
#include "parallel.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16")

/* Weight bytes per claim, about: claiming is an atomic add on a line
 * every core writes, so it should stay a small part of the work, and the
 * last claim of a job, which one core may finish alone, short. */
#define CLAIM_BYTES (128 << 10)
/* Most rows for the dot products when AMX is there. */
#define GEMV_DOT_ROWS 4

/* One product of a job, its input rounded to bf16. */
typedef struct {
    const gemv_bf16_product *p;
    uint16_t *x;            /* [N, ldx] bf16, zero-padded */
    int Kpad, ldx, first;   /* first: the job's index of its first block */
} product16;

typedef struct {
    product16 *prods;
    int count, N, blocks, amx;
    int per_claim;          /* blocks */
    atomic_int next;
    /* first(ctx) makes the inputs of products after..count-1, whose
     * blocks wait for ready */
    void (*first)(void *ctx);
    void *ctx;
    int after;
    atomic_int ready;
} gemv16_job;

/* Rounds the inputs of products [q0, q1) to bf16, into x. */
static void pack_inputs(gemv16_job *j, int q0, int q1) {
    for (int q = q0; q < q1; q++) {
        const gemv_bf16_product *p = j->prods[q].p;
        gemm_pack_a(j->prods[q].x, j->prods[q].ldx, p->inp, p->gw->C, j->N, p->gw->C, 0, j->N);
    }
}

/* Output columns 32 nb .. 32 nb + 31 of every row of product q: on AMX,
 * or by dot products in groups of 8 rows (a group after the first finds
 * the block in L2). A block reaching past OC goes through a local copy. */
static void block_x32(const gemv16_job *j, const product16 *q, int nb) {
    const gemv_bf16_product *p = q->p;
    const int N = j->N, OC = p->gw->OC, Kpad = q->Kpad, ldx = q->ldx;
    const long strip = (long)Kpad * GEMM_TILE_N;
    const uint16_t *b0 = p->gw->fwd + (size_t)2 * nb * strip;
    const int n0 = 32 * nb, cols = OC - n0 < 32 ? OC - n0 : 32;
    float edge[GEMV_MAX_ROWS * 32], bias_edge[32];
    const float *bias = p->bias ? p->bias + n0 : NULL;
    if (bias && cols < 32) { /* a bias vector load must not read past OC */
        memset(bias_edge, 0, sizeof bias_edge);
        memcpy(bias_edge, bias, (size_t)cols * sizeof *bias);
        bias = bias_edge;
    }
    float *out = cols < 32 ? edge : p->out + n0;
    const long ldo = cols < 32 ? 32 : OC;
    gemm_block_fn block = j->amx ? gemm_amx_block : gemm_avx512_block;
    block(out, ldo, bias, bias ? GEMM_INIT_BIAS : GEMM_INIT_ZERO, q->x, ldx, b0, strip, Kpad / GEMM_TILE_K, N);
    for (int i = 0; i < N; i++) {
        float *row = p->out + (size_t)i * OC + n0;
        if (cols < 32) memcpy(row, edge + 32 * i, (size_t)cols * sizeof *edge);
        if (p->gelu) gelu_forward(row, row, cols);
    }
}

/* Participants claim blocks, of all the job's products in turn, from one
 * counter, as in gemv.c; the caller runs first() before it claims any. */
static void claim_blocks(void *arg, int thread, int nthreads) {
    gemv16_job *j = arg;
    if (thread == 0 && j->first) {
        j->first(j->ctx);
        pack_inputs(j, j->after, j->count);
        atomic_store_explicit(&j->ready, 1, memory_order_release);
    }
    if (j->amx) gemm_amx_begin();
    int nb, q = 0;
    while ((nb = atomic_fetch_add_explicit(&j->next, j->per_claim, memory_order_relaxed)) < j->blocks)
        for (int end = nb + j->per_claim < j->blocks ? nb + j->per_claim : j->blocks; nb < end; nb++) {
            while (q + 1 < j->count && nb >= j->prods[q + 1].first) q++;
            if (q >= j->after)
                while (!atomic_load_explicit(&j->ready, memory_order_acquire)) _mm_pause();
            block_x32(j, &j->prods[q], nb - j->prods[q].first);
        }
    if (j->amx) gemm_amx_end();
}

void gemv_bf16_forward_after(const gemv_bf16_product *p, int count, int N, int after,
                             void (*first)(void *ctx), void *ctx) {
    static uint16_t *x; /* the inputs in bf16, grown to the largest seen */
    static size_t x_size;
    product16 prods[GEMV_BF16_MAX_PRODUCTS];
    size_t need = 0, weights = 0;
    int blocks = 0, widest = 0;
    for (int i = 0; i < count; i++) {
        /* Rows one cache line longer than K, as gemm.c's A: an AMX tile's
         * rows then fall into different cache sets. */
        const int Kpad = gemm_round_up(p[i].gw->C, GEMM_TILE_K);
        prods[i] = (product16){&p[i], NULL, Kpad, Kpad + 32, blocks};
        need += (size_t)N * prods[i].ldx;
        blocks += gemm_round_up(p[i].gw->OC, 32) / 32;
        weights += (size_t)p[i].gw->OC * p[i].gw->C;
        widest = Kpad > widest ? Kpad : widest;
    }
    if (need > x_size) x = xrealloc(x, (x_size = need) * sizeof *x);
    for (int i = 0, at = 0; i < count; at += N * prods[i++].ldx) prods[i].x = x + at;
    gemv16_job j = {.prods = prods, .count = count, .N = N, .blocks = blocks,
                    .amx = N > GEMV_DOT_ROWS && gemm_current_path() == GEMM_AMX,
                    .per_claim = CLAIM_BYTES / (widest * 64) > 1 ? CLAIM_BYTES / (widest * 64) : 1,
                    .first = first, .ctx = ctx, .after = first ? after : count};
    atomic_init(&j.next, 0);
    atomic_init(&j.ready, 0);
    pack_inputs(&j, 0, j.after);
    if (weights < 65536) claim_blocks(&j, 0, 1); /* not worth waking anyone */
    else parallel_run(claim_blocks, &j);
}

void gemv_bf16_forward_many(const gemv_bf16_product *p, int count, int N) {
    gemv_bf16_forward_after(p, count, N, count, NULL, NULL);
}

void gemv_bf16_forward(float *out, const float *inp, const gemm_weight *gw, const float *bias, int N) {
    gemv_bf16_product p = {out, inp, gw, bias, 0};
    gemv_bf16_forward_many(&p, 1, N);
}
