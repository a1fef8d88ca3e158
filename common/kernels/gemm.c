/* gemm.c — see gemm.h: choosing the path, packing weights, and splitting
 * each product over the thread pool. Kernels and conversions are in
 * gemm_amx.c and gemm_avx512.c, the layouts in gemm_internal.h. */
#include "gemm.h"

#include <assert.h>
#include <cblas.h>
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "blas.h"
#include "base/cli.h"
#include "gemm_internal.h"
#include "parallel.h"

/* ---- path ---------------------------------------------------------------- */

static unsigned long long xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int cpu_has_avx512bf16(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;  /* OSXSAVE */
    if ((xcr0() & 0xe6) != 0xe6) return 0;  /* SSE, AVX, opmask, ZMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned f = 1u << 16, bw = 1u << 30, vl = 1u << 31;
    if ((b & (f | bw | vl)) != (f | bw | vl)) return 0;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1;
}

static int cpu_has_amx(void) {
    unsigned a, b, c, d;
    if (!cpu_has_avx512bf16()) return 0;  /* the conversions need it */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned tile = 1u << 24, bf16 = 1u << 22;
    if ((d & (tile | bf16)) != (tile | bf16)) return 0;
    return (xcr0() & 0x60000) == 0x60000 && gemm_amx_request();
}

static const char *const path_names[] = {"fp32", "avx512bf16", "amx"};
static gemm_path current_path;
static int path_chosen;

const char *gemm_path_name(gemm_path p) { return path_names[p]; }

int gemm_path_supported(gemm_path p) {
    static int amx = -1, bf16 = -1;
    if (bf16 < 0) bf16 = cpu_has_avx512bf16();
    if (p == GEMM_AVX512BF16) return bf16;
    if (p == GEMM_AMX) {
        if (amx < 0) amx = cpu_has_amx();
        return amx;
    }
    return 1;
}

static void choose_path(void) {
    if (path_chosen) return;
    path_chosen = 1;
    gemm_path want = GEMM_AMX;
    const char *env = getenv("TUNEPIPE_GEMM");
    if (env && *env) {
        int i = 0;
        while (i < 3 && strcasecmp(env, path_names[i])) i++;
        if (i < 3) want = (gemm_path)i;
        else warn("TUNEPIPE_GEMM=%s: unknown (amx, avx512bf16, fp32), using the fastest", env);
    }
    current_path = want;
    while (!gemm_path_supported(current_path)) current_path--;
    if (env && current_path != want)
        warn("TUNEPIPE_GEMM=%s: this CPU cannot, using %s", env, path_names[current_path]);
}

gemm_path gemm_current_path(void) {
    choose_path();
    return current_path;
}

int gemm_use_path(gemm_path p) {
    choose_path();
    if (!gemm_path_supported(p)) return 0;
    current_path = p;
    return 1;
}

int gemm_bf16_available(void) {
    if (gemm_current_path() != GEMM_FP32) return 1;
    if (gemm_path_supported(GEMM_AVX512BF16))
        warn("--dtype bf16: TUNEPIPE_GEMM=fp32 asks for fp32 products, computing in fp32");
    else
        warn("--dtype bf16: this CPU has no bf16 products (AMX or AVX512_BF16), computing in fp32");
    return 0;
}

void gemm_tell_kernels(int bf16) {
    int threads = parallel_threads();
    if (bf16)
        fprintf(stderr, "%s: linear layers in bf16 on %s, the rest in fp32 on OpenBLAS %s; %d thread%s\n",
                prog_name, gemm_current_path() == GEMM_AMX ? "AMX" : "AVX512-BF16", blas_core_name(),
                threads, threads == 1 ? "" : "s");
    else
        fprintf(stderr, "%s: fp32 on OpenBLAS %s; %d thread%s\n", prog_name, blas_core_name(), threads,
                threads == 1 ? "" : "s");
}

void gemm_set_threads(int n) { parallel_set_threads(n); }
int gemm_threads(void) { return parallel_threads(); }

/* ---- conversions ---------------------------------------------------------- */

uint16_t gemm_fp32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);  /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float gemm_bf16_to_fp32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* 64-byte aligned (tile rows and vector stores); zero-filled unless the
 * caller writes every value. */
static uint16_t *alloc_bf16_uninit(size_t count) {
    size_t bytes = (count * 2 + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) out_of_memory("out of memory (%zu bytes for bf16 weights)", bytes);
    return p;
}

static uint16_t *alloc_bf16(size_t count) {
    uint16_t *p = alloc_bf16_uninit(count);
    memset(p, 0, (count * 2 + 63) / 64 * 64);
    return p;
}

/* Scratch reused by every product: A, and B of gemm_backward_weight. */
static uint16_t *scratch_a, *scratch_b;
static size_t scratch_a_size, scratch_b_size;

static uint16_t *scratch(uint16_t **buf, size_t *size, size_t count) {
    if (count > *size) {
        free(*buf);
        *buf = alloc_bf16(count);
        *size = count;
    }
    return *buf;
}

/* ---- packing jobs -------------------------------------------------------- */

typedef struct {
    uint16_t *dst;
    const float *x;
    long ldx;
    int rows, cols;     /* of x as the function takes it */
    int units;          /* A rows or B strips to share out */
    int lda;
    int kind;
    int stream;         /* non-temporal stores (weights) */
} pack_job;

enum { PACK_A, PACK_A_TRANSPOSED, PACK_B, PACK_B_TRANSPOSED };

static void pack_run(void *arg, int thread, int nthreads) {
    const pack_job *p = arg;
    /* A rows go in groups of 16 (the transposing conversion needs it). */
    const int grain = p->kind == PACK_A || p->kind == PACK_A_TRANSPOSED ? 16 : 1;
    const int groups = p->units / grain;
    const int u0 = groups * thread / nthreads * grain, u1 = groups * (thread + 1) / nthreads * grain;
    switch (p->kind) {
    case PACK_A: gemm_pack_a(p->dst, p->lda, p->x, p->ldx, p->rows, p->cols, u0, u1); break;
    case PACK_A_TRANSPOSED:
        gemm_pack_a_transposed(p->dst, p->lda, p->x, p->ldx, p->rows, p->cols, u0, u1);
        break;
    case PACK_B:
        gemm_pack_b(p->dst, p->x, p->ldx, p->rows, p->cols, u0, u1, 0, gemm_round_up(p->rows, GEMM_TILE_K),
                    p->stream);
        break;
    default: gemm_pack_b_transposed(p->dst, p->x, p->ldx, p->rows, p->cols, u0, u1); break;
    }
}

/* Small conversions are not worth waking the pool for. */
static void pack(pack_job *p, size_t values) {
    if (values <= 65536) pack_run(p, 0, 1);
    else parallel_run(pack_run, p);
}

/* Row stride of A: one cache line more than the padded K, so that the 16
 * rows of an A tile fall into different cache sets (at K = 1024 or 4096
 * they would otherwise compete for one or two and evict each other). */
static int a_stride(int K) { return gemm_round_up(K, GEMM_TILE_K) + 32; }

/* A[Mpad, K] from x[M, K] (transposed: from x[K, M]), row stride a_stride(K). */
static uint16_t *pack_a(const float *x, int M, int K, int transposed) {
    const int Mpad = gemm_round_up(M, 16), lda = a_stride(K);
    uint16_t *a = scratch(&scratch_a, &scratch_a_size, (size_t)Mpad * lda);
    pack_job p = {a, x, transposed ? M : K, M, K, Mpad, lda, transposed ? PACK_A_TRANSPOSED : PACK_A, 0};
    pack(&p, (size_t)Mpad * lda);
    return a;
}

/* Tiles of x[K, N] (transposed: of the transpose of x[N, K]); a weight's
 * tiles are written past the caches (see gemm_pack_b). */
static void pack_b_into(uint16_t *dst, const float *x, int K, int N, int transposed, int weight) {
    const int strips = gemm_round_up(N, 32) / GEMM_TILE_N;
    pack_job p = {dst, x, transposed ? K : N, K, N, strips, 0, transposed ? PACK_B_TRANSPOSED : PACK_B, weight};
    pack(&p, (size_t)gemm_round_up(K, GEMM_TILE_K) * strips * GEMM_TILE_N);
}

void gemm_weight_init(gemm_weight *gw, const float *w, int OC, int C, int uses) {
    memset(gw, 0, sizeof *gw);
    gw->w = w;
    gw->OC = OC;
    gw->C = C;
    gw->uses = uses;
}

static size_t packed_values(int K, int N) {
    return (size_t)gemm_round_up(K, GEMM_TILE_K) * gemm_round_up(N, 32);
}

void gemm_weight_pack(gemm_weight *gw) {
    if (gemm_current_path() == GEMM_FP32) return;
    if (gw->uses & GEMM_FOR_FORWARD) {
        if (!gw->fwd) gw->fwd = alloc_bf16(packed_values(gw->C, gw->OC));
        pack_b_into(gw->fwd, gw->w, gw->C, gw->OC, 1, 1);
    }
    if (gw->uses & GEMM_FOR_BACKWARD) {
        if (!gw->bwd) gw->bwd = alloc_bf16(packed_values(gw->OC, gw->C));
        pack_b_into(gw->bwd, gw->w, gw->OC, gw->C, 0, 1);
    }
}

void gemm_weight_pack_rows(gemm_weight *gw, int o0, int o1) {
    if (gemm_current_path() == GEMM_FP32) return;
    const int OC = gw->OC, C = gw->C;
    /* The last rows also (re)write the zero padding up to the next multiple of 32. */
    const int end = o1 == OC ? gemm_round_up(OC, 32) : o1;
    if (gw->uses & GEMM_FOR_FORWARD)
        gemm_pack_b_transposed(gw->fwd, gw->w, C, C, OC, o0 / GEMM_TILE_N, end / GEMM_TILE_N);
    if (gw->uses & GEMM_FOR_BACKWARD)
        gemm_pack_b(gw->bwd, gw->w, C, OC, C, 0, gemm_round_up(C, 32) / GEMM_TILE_N, o0, end, 1);
}

typedef struct {
    uint16_t *dst;
    const float *rows;
    int n, C;
} slice_job;

static void pack_slice_strips(void *arg, size_t begin, size_t end, int part) {
    const slice_job *p = arg;
    gemm_pack_b_transposed(p->dst, p->rows, p->C, p->C, p->n, (int)begin, (int)end);
}

void gemm_weight_pack_slice(gemm_weight *gw, const float *rows, int o0, int n) {
    const int C = gw->C;
    const size_t strip = (size_t)gemm_round_up(C, GEMM_TILE_K) * GEMM_TILE_N;
    /* every strip is written whole, padding included */
    if (!gw->fwd) gw->fwd = alloc_bf16_uninit(packed_values(C, gw->OC));
    slice_job p = {gw->fwd + (size_t)(o0 / GEMM_TILE_N) * strip, rows, n, C};
    parallel_for((size_t)gemm_round_up(n, 32) / GEMM_TILE_N, 1, pack_slice_strips, &p);
}

size_t gemm_weight_bytes(const gemm_weight *gw) {
    return 2 * ((gw->fwd ? packed_values(gw->C, gw->OC) : 0) + (gw->bwd ? packed_values(gw->OC, gw->C) : 0));
}

void gemm_weight_free(gemm_weight *gw) {
    free(gw->fwd);
    free(gw->bwd);
    gw->fwd = gw->bwd = NULL;
}

/* ---- the product --------------------------------------------------------- */

/* K values per pass over C: a 32-row block of A (32 KB) stays in L1 while
 * the panel's B columns stream past it. */
#define K_CHUNK_TILES 16
/* Columns per unit of work are 32..256: enough units for the threads to
 * share out unevenly when one is delayed, wide enough to reuse A. */
#define MAX_PANEL_BLOCKS 8

typedef struct {
    gemm_block_fn block;
    int amx;
    float *c;
    long ldc;
    int M, N;
    const uint16_t *a;
    long lda;
    int Kpad;
    const uint16_t *b;
    const float *bias;
    int accumulate;
    double *block_sumsq;    /* when not NULL: per 32x32 block of C, the sum of its squares */
    int panel_blocks, panels;
    atomic_int next_panel;
} product;

/* One 32-column block of C: rows m0.. (up to 32, fewer at the end), K
 * tiles kt0..kt0+ktiles. A block reaching past N goes through a local copy. */
static void product_block(const product *p, int m0, int n0, int kt0, int ktiles, int init) {
    const int rows = p->M - m0 < 32 ? p->M - m0 : 32;
    const uint16_t *a = p->a + (size_t)m0 * p->lda + (size_t)kt0 * GEMM_TILE_K;
    const long bstride = (long)p->Kpad * GEMM_TILE_N;
    const uint16_t *b = p->b + (size_t)(n0 / GEMM_TILE_N) * bstride + (size_t)kt0 * GEMM_TILE_ELEMS;
    float *c = p->c + (size_t)m0 * p->ldc + n0;
    const float *bias = p->bias ? p->bias + n0 : NULL;
    const int cols = p->N - n0 < 32 ? p->N - n0 : 32;
    if (cols == 32) {
        p->block(c, p->ldc, bias, init, a, p->lda, b, bstride, ktiles, rows);
        return;
    }
    float tmp[32 * 32] __attribute__((aligned(64)));
    for (int i = 0; i < rows; i++) {
        const float *from = init == GEMM_INIT_LOAD ? c + (size_t)i * p->ldc : bias;
        if (init == GEMM_INIT_ZERO) memset(tmp + 32 * i, 0, 32 * sizeof *tmp);
        else memcpy(tmp + 32 * i, from, (size_t)cols * sizeof *tmp);
    }
    p->block(tmp, 32, NULL, init == GEMM_INIT_ZERO ? GEMM_INIT_ZERO : GEMM_INIT_LOAD, a, p->lda, b,
             bstride, ktiles, rows);
    for (int i = 0; i < rows; i++) memcpy(c + (size_t)i * p->ldc, tmp + 32 * i, (size_t)cols * 4);
}

/* Asks for the C rows of a block that will be loaded next: its 32 rows are
 * 32 separate streams, more than the hardware prefetcher follows, and with
 * few K tiles per block (gemm_backward_weight) loading C dominates. */
static void prefetch_c(const product *p, int m0, int n0) {
    const int rows = p->M - m0 < 32 ? p->M - m0 : 32;
    const int cols = p->N - n0 < 32 ? p->N - n0 : 32;
    for (int i = 0; i < rows; i++) {
        const float *c = p->c + (size_t)(m0 + i) * p->ldc + n0;
        _mm_prefetch((const char *)c, _MM_HINT_T0);
        _mm_prefetch((const char *)(c + cols - 1), _MM_HINT_T0);
    }
}

/* Sum of the squares of a block of C just computed (still in L1), in double. */
static double block_sum_squares(const product *p, int m0, int n0) {
    const int rows = p->M - m0 < 32 ? p->M - m0 : 32;
    const int cols = p->N - n0 < 32 ? p->N - n0 : 32;
    double s = 0;
    for (int i = 0; i < rows; i++) {
        const float *c = p->c + (size_t)(m0 + i) * p->ldc + n0;
        int j = 0;
#ifdef __AVX512F__
        __m512d acc = _mm512_setzero_pd();
        for (; j + 8 <= cols; j += 8) {
            __m512d x = _mm512_cvtps_pd(_mm256_loadu_ps(c + j));
            acc = _mm512_fmadd_pd(x, x, acc);
        }
        s += _mm512_reduce_add_pd(acc);
#endif
        for (; j < cols; j++) s += (double)c[j] * c[j];
    }
    return s;
}

static void product_panel(const product *p, int nb0, int nb1) {
    const int KT = p->Kpad / GEMM_TILE_K, nblocks = gemm_round_up(p->N, 32) / 32;
    const int first_init = p->accumulate ? GEMM_INIT_LOAD : p->bias ? GEMM_INIT_BIAS : GEMM_INIT_ZERO;
    for (int kt0 = 0; kt0 < KT; kt0 += K_CHUNK_TILES) {
        int ktiles = KT - kt0 < K_CHUNK_TILES ? KT - kt0 : K_CHUNK_TILES;
        int init = kt0 == 0 ? first_init : GEMM_INIT_LOAD;
        for (int m0 = 0; m0 < p->M; m0 += 32)
            for (int nb = nb0; nb < nb1; nb++) {
                if (init == GEMM_INIT_LOAD) {
                    int pm = nb + 1 < nb1 ? m0 : m0 + 32, pn = nb + 1 < nb1 ? 32 * (nb + 1) : 32 * nb0;
                    if (pm < p->M) prefetch_c(p, pm, pn);
                }
                product_block(p, m0, 32 * nb, kt0, ktiles, init);
                if (p->block_sumsq && kt0 + ktiles == KT)
                    p->block_sumsq[(size_t)(m0 / 32) * nblocks + nb] = block_sum_squares(p, m0, 32 * nb);
            }
    }
}

static void product_run(void *arg, int thread, int nthreads) {
    product *p = arg;
    (void)thread;
    (void)nthreads;
    if (p->amx) gemm_amx_begin();
    int panel;
    while ((panel = atomic_fetch_add_explicit(&p->next_panel, 1, memory_order_relaxed)) < p->panels) {
        int nb0 = panel * p->panel_blocks, nb1 = nb0 + p->panel_blocks;
        int nblocks = gemm_round_up(p->N, 32) / 32;
        product_panel(p, nb0, nb1 < nblocks ? nb1 : nblocks);
    }
    if (p->amx) gemm_amx_end();
}

/* c[M, N] (row stride N) = (accumulate ? c : bias or 0) + A · B, A packed
 * from M rows of K values, B tiles of K x N. sumsq (may be NULL) gets the
 * sum of the squares of the result, added up block by block in a fixed
 * order (the same for any thread count). */
static void product_compute(float *c, int M, int N, int K, const uint16_t *a, const uint16_t *b,
                            const float *bias, int accumulate, double *sumsq) {
    const int nblocks = gemm_round_up(N, 32) / 32, threads = parallel_threads();
    const size_t all_blocks = (size_t)(M + 31) / 32 * nblocks;
    product p = {
        .block = current_path == GEMM_AMX ? gemm_amx_block : gemm_avx512_block,
        .amx = current_path == GEMM_AMX,
        .c = c, .ldc = N, .M = M, .N = N,
        .a = a, .lda = a_stride(K), .Kpad = gemm_round_up(K, GEMM_TILE_K),
        .b = b, .bias = bias, .accumulate = accumulate,
        .block_sumsq = sumsq ? xmalloc(all_blocks * sizeof(double)) : NULL,
    };
    p.panel_blocks = nblocks / (4 * threads);
    if (p.panel_blocks < 1) p.panel_blocks = 1;
    if (p.panel_blocks > MAX_PANEL_BLOCKS) p.panel_blocks = MAX_PANEL_BLOCKS;
    p.panels = (nblocks + p.panel_blocks - 1) / p.panel_blocks;
    atomic_init(&p.next_panel, 0);
    parallel_run(product_run, &p);
    if (sumsq) {
        *sumsq = 0;
        for (size_t i = 0; i < all_blocks; i++) *sumsq += p.block_sumsq[i];
        free(p.block_sumsq);
    }
}

void gemm_forward(float *out, const float *inp, const gemm_weight *gw, const float *bias, int T) {
    const int C = gw->C, OC = gw->OC;
    if (T <= 0) return;
    if (gemm_current_path() == GEMM_FP32) {
        if (bias)
            for (int t = 0; t < T; t++) memcpy(out + (size_t)t * OC, bias, (size_t)OC * sizeof *out);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OC, C, 1.0f, inp, C, gw->w, C,
                    bias ? 1.0f : 0.0f, out, OC);
        return;
    }
    /* A caller's bug, not bad input: the fuzz targets and tests abort on it. */
    assert(gw->fwd && "forward weights used on a bf16 path before gemm_weight_pack");
    product_compute(out, T, OC, C, pack_a(inp, T, C, 0), gw->fwd, bias, 0, NULL);
}

void gemm_backward_input(float *dinp, const float *dout, const gemm_weight *gw, int T) {
    const int C = gw->C, OC = gw->OC;
    if (T <= 0) return;
    if (gemm_current_path() == GEMM_FP32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, OC, 1.0f, dout, OC, gw->w, C,
                    1.0f, dinp, C);
        return;
    }
    assert(gw->bwd && "backward weights used on a bf16 path before gemm_weight_pack");
    product_compute(dinp, T, C, OC, pack_a(dout, T, OC, 0), gw->bwd, NULL, 1, NULL);
}

/* Sum of squares in double, for the fp32 path's result (the bf16 path adds
 * them up as blocks finish). */
static double sum_squares(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void gemm_backward_weight(float *dw, float *dbias, const float *dout, const float *inp,
                          int T, int OC, int C, int accumulate, double *sumsq) {
    if (T <= 0) {
        if (!accumulate) memset(dw, 0, (size_t)OC * C * sizeof *dw);
        if (sumsq) *sumsq = sum_squares(dw, (size_t)OC * C);
        return;
    }
    if (dbias)
        for (int t = 0; t < T; t++)
            for (int o = 0; o < OC; o++) dbias[o] += dout[(size_t)t * OC + o];
    if (gemm_current_path() == GEMM_FP32) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, T, 1.0f, dout, OC, inp, C,
                    accumulate ? 1.0f : 0.0f, dw, C);
        if (sumsq) *sumsq = sum_squares(dw, (size_t)OC * C);
        return;
    }
    uint16_t *b = scratch(&scratch_b, &scratch_b_size, packed_values(T, C));
    pack_b_into(b, inp, T, C, 0, 0);
    product_compute(dw, OC, C, T, pack_a(dout, OC, T, 1), b, NULL, accumulate, sumsq);
}
