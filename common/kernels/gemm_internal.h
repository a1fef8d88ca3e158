/* gemm_internal.h — the data layouts and kernels behind gemm.h.
 *
 * Every bf16 product is C[M, N] (fp32) = A[M, K] · B[K, N] with
 *   A: bf16, row-major, rows padded to a multiple of 16 and K to a multiple
 *      of 32 with zeros; row stride lda >= padded K, a multiple of 32;
 *   B: bf16 in AMX tiles: for each 16-column strip nt and 32-row slab kt, one
 *      tile of 16 rows x 32 values where tile row r holds, for the strip's
 *      16 columns n, the pair B[32kt + 2r][n], B[32kt + 2r + 1][n] — the
 *      layout _tile_dpbf16ps and _mm512_dpbf16_ps read. A strip's tiles are
 *      consecutive, so strip nt is one array [Kpad/2][16][2] at
 *      b + nt * Kpad * 16. Columns are padded to a multiple of 32.
 * Kernels compute up to 32 rows x 32 columns of C (two strips) at a time. */
#ifndef TUNEPIPE_GEMM_INTERNAL_H
#define TUNEPIPE_GEMM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define GEMM_TILE_K 32      /* K values per tile row block */
#define GEMM_TILE_N 16      /* columns per strip */
#define GEMM_TILE_ELEMS 512 /* bf16 values per tile */

static inline int gemm_round_up(int x, int m) { return (x + m - 1) / m * m; }

/* How a kernel starts C before adding A·B. */
enum { GEMM_INIT_ZERO, GEMM_INIT_BIAS, GEMM_INIT_LOAD };

/* One block: C[rows, 32] at c (row stride ldc floats) gets
 * init + A[rows, 32*ktiles] · B, rows <= 32. a: first A value (row stride
 * lda); b: first tile of the left strip, the right strip is bstride values
 * on. GEMM_INIT_BIAS broadcasts bias[0..31] to every row. */
typedef void (*gemm_block_fn)(float *c, long ldc, const float *bias, int init,
                              const uint16_t *a, long lda, const uint16_t *b, long bstride,
                              int ktiles, int rows);

/* AMX: per thread, gemm_amx_begin() before its blocks, gemm_amx_end() after. */
void gemm_amx_block(float *c, long ldc, const float *bias, int init, const uint16_t *a, long lda,
                    const uint16_t *b, long bstride, int ktiles, int rows);
void gemm_amx_begin(void);
void gemm_amx_end(void);
/* Asks Linux for permission to use AMX tile data; 1 when granted. */
int gemm_amx_request(void);

void gemm_avx512_block(float *c, long ldc, const float *bias, int init, const uint16_t *a, long lda,
                       const uint16_t *b, long bstride, int ktiles, int rows);

/* Conversions into the layouts above (AVX-512 BF16; rows [r0, r1) or
 * strips [s0, s1) so threads can share the work). Padding becomes zero.
 *
 * A from x[M, K] (row stride ldx): dst rows r0..r1 of the padded A. */
void gemm_pack_a(uint16_t *dst, int lda, const float *x, long ldx, int M, int K, int r0, int r1);
/* A from the transpose of x[K, M] (row stride ldx); r0, r1 multiples of 16. */
void gemm_pack_a_transposed(uint16_t *dst, int lda, const float *x, long ldx, int M, int K,
                            int r0, int r1);
/* B from x[K, N] (row stride ldx): strips s0..s1, padded rows
 * k_begin..k_end of each (even; 0, Kpad for all). stream: with
 * non-temporal stores, for weights, which are not read again before they
 * have left the caches (and so need no read of the lines they overwrite). */
void gemm_pack_b(uint16_t *dst, const float *x, long ldx, int K, int N, int s0, int s1, int k_begin,
                 int k_end, int stream);
/* B from the transpose of x[N, K] (row stride ldx): strips s0..s1; only
 * weights come this way, so always with non-temporal stores. */
void gemm_pack_b_transposed(uint16_t *dst, const float *x, long ldx, int K, int N, int s0, int s1);

#endif
