/* gemm_avx512.c — the AVX-512 BF16 kernel and the conversions into the
 * bf16 layouts (gemm_internal.h). Everything here runs only on CPUs with
 * AVX-512 F/BW/VL/BF16, which gemm.c checks first; the conversions serve
 * the AMX path too (vcvtne2ps2bf16 rounds to nearest even). */
#include <immintrin.h>
#include <string.h>

#include "gemm_internal.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16")

/* Bytes ahead of each B stream to prefetch: enough to cover the memory
 * latency at one core's share of the bandwidth when decoding streams the
 * weights from memory (gemv_bf16.c). */
#define PREFETCH_AHEAD 2048

/* nr <= 8 rows x 32 columns of C in registers; per K pair: two B rows,
 * nr broadcast A pairs. nr is a constant after inlining. */
static inline __attribute__((always_inline)) void rows_block(float *c, long ldc, const float *bias,
                                                             int init, const uint16_t *a, long lda,
                                                             const uint16_t *b0, const uint16_t *b1,
                                                             int pairs, const int nr) {
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int i = 0; i < nr; i++)
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++)
            acc[i][j] = init == GEMM_INIT_LOAD   ? _mm512_loadu_ps(c + i * ldc + 16 * j)
                        : init == GEMM_INIT_BIAS ? _mm512_loadu_ps(bias + 16 * j)
                                                 : _mm512_setzero_ps();
    for (int r = 0; r < pairs; r++) {
        _mm_prefetch((const char *)(b0 + 32 * r) + PREFETCH_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(b1 + 32 * r) + PREFETCH_AHEAD, _MM_HINT_T0);
        __m512bh w0 = (__m512bh)_mm512_load_si512(b0 + 32 * r);
        __m512bh w1 = (__m512bh)_mm512_load_si512(b1 + 32 * r);
#pragma GCC unroll 8
        for (int i = 0; i < nr; i++) {
            int32_t pair;
            memcpy(&pair, a + i * lda + 2 * r, sizeof pair);
            __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], x, w0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], x, w1);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < nr; i++)
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) _mm512_storeu_ps(c + i * ldc + 16 * j, acc[i][j]);
}

/* Groups of 8 rows; a last group of fewer (decoding: often 1) computes
 * just its rows. */
void gemm_avx512_block(float *c, long ldc, const float *bias, int init, const uint16_t *a, long lda,
                       const uint16_t *b, long bstride, int ktiles, int rows) {
    const int pairs = ktiles * GEMM_TILE_K / 2;
    const uint16_t *b1 = b + bstride;
    for (int g = 0; g < rows; g += 8) {
        float *cg = c + g * ldc;
        const uint16_t *ag = a + g * lda;
        switch (rows - g) {
        case 1: rows_block(cg, ldc, bias, init, ag, lda, b, b1, pairs, 1); break;
        case 2: rows_block(cg, ldc, bias, init, ag, lda, b, b1, pairs, 2); break;
        case 3: rows_block(cg, ldc, bias, init, ag, lda, b, b1, pairs, 3); break;
        case 4: rows_block(cg, ldc, bias, init, ag, lda, b, b1, pairs, 4); break;
        case 5: rows_block(cg, ldc, bias, init, ag, lda, b, b1, pairs, 5); break;
        case 6: rows_block(cg, ldc, bias, init, ag, lda, b, b1, pairs, 6); break;
        case 7: rows_block(cg, ldc, bias, init, ag, lda, b, b1, pairs, 7); break;
        default: rows_block(cg, ldc, bias, init, ag, lda, b, b1, pairs, 8); break;
        }
    }
}

/* ---- conversions -------------------------------------------------------- */

static inline __mmask16 first_n(int n) {
    return n <= 0 ? 0 : n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
}

/* bf16 of lo[0..15] in the even and hi[0..15] in the odd 16-bit slots:
 * sixteen (lo[i], hi[i]) pairs. */
static inline __m512i interleave_bf16(__m512 lo, __m512 hi) {
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                           24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                           16, 0);
    return _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* In-register transpose of a 16x16 matrix of 32-bit values. */
static inline __attribute__((always_inline)) void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + j], 128-bit lane L: column 4L + j of rows 4g..4g+3. */
#pragma GCC unroll 16
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
#pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);  /* lanes 0, 2 */
        __m512i w0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);  /* lanes 1, 3 */
        __m512i v1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
        r[j] = _mm512_shuffle_i32x4(v0, v1, 0x88);
        r[4 + j] = _mm512_shuffle_i32x4(w0, w1, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(v0, v1, 0xdd);
        r[12 + j] = _mm512_shuffle_i32x4(w0, w1, 0xdd);
    }
}

void gemm_pack_a(uint16_t *dst, int lda, const float *x, long ldx, int M, int K, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        uint16_t *d = dst + (size_t)r * lda;
        if (r >= M) {
            memset(d, 0, (size_t)lda * 2);
            continue;
        }
        const float *s = x + (size_t)r * ldx;
        for (int k = 0; k < lda; k += 32) {
            __m512 lo = _mm512_maskz_loadu_ps(first_n(K - k), s + k);
            __m512 hi = _mm512_maskz_loadu_ps(first_n(K - k - 16), s + k + 16);
            _mm512_storeu_si512(d + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

void gemm_pack_a_transposed(uint16_t *dst, int lda, const float *x, long ldx, int M, int K,
                            int r0, int r1) {
    for (int m = r0; m < r1; m += 16) {
        __mmask16 cols = first_n(M - m);
        for (int k = 0; k < lda; k += 32) {
            __m512i p[16];
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++) {
                int k0 = k + 2 * r;
                __m512 v0 = k0 < K ? _mm512_maskz_loadu_ps(cols, x + (size_t)k0 * ldx + m)
                                   : _mm512_setzero_ps();
                __m512 v1 = k0 + 1 < K ? _mm512_maskz_loadu_ps(cols, x + (size_t)(k0 + 1) * ldx + m)
                                       : _mm512_setzero_ps();
                p[r] = interleave_bf16(v0, v1);
            }
            transpose16(p);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) _mm512_storeu_si512(dst + (size_t)(m + i) * lda + k, p[i]);
        }
    }
}

void gemm_pack_b(uint16_t *dst, const float *x, long ldx, int K, int N, int s0, int s1, int k_begin,
                 int k_end, int stream) {
    const int Kpad = gemm_round_up(K, GEMM_TILE_K);
    for (int s = s0; s < s1; s++) {
        const int n = s * GEMM_TILE_N;
        __mmask16 cols = first_n(N - n);
        uint16_t *d = dst + (size_t)s * Kpad * GEMM_TILE_N;
        for (int r = k_begin / 2; r < k_end / 2; r++) {
            int k0 = 2 * r;
            __m512 v0 = k0 < K ? _mm512_maskz_loadu_ps(cols, x + (size_t)k0 * ldx + n) : _mm512_setzero_ps();
            __m512 v1 = k0 + 1 < K ? _mm512_maskz_loadu_ps(cols, x + (size_t)(k0 + 1) * ldx + n)
                                   : _mm512_setzero_ps();
            if (stream) _mm512_stream_si512((__m512i *)(d + 32 * r), interleave_bf16(v0, v1));
            else _mm512_store_si512(d + 32 * r, interleave_bf16(v0, v1));
        }
    }
    if (stream) _mm_sfence();
}

void gemm_pack_b_transposed(uint16_t *dst, const float *x, long ldx, int K, int N, int s0, int s1) {
    const int Kpad = gemm_round_up(K, GEMM_TILE_K);
    for (int s = s0; s < s1; s++) {
        uint16_t *d = dst + (size_t)s * Kpad * GEMM_TILE_N;
        for (int k = 0; k < Kpad; k += 32) {
            __mmask16 lo_mask = first_n(K - k), hi_mask = first_n(K - k - 16);
            __m512i rows[16];
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++) {
                int n = s * GEMM_TILE_N + c;
                const float *src = x + (size_t)n * ldx + k;
                rows[c] = n < N ? (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi_mask, src + 16),
                                                             _mm512_maskz_loadu_ps(lo_mask, src))
                                : _mm512_setzero_si512();
            }
            transpose16(rows);
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++) _mm512_stream_si512((__m512i *)(d + (size_t)k * GEMM_TILE_N + 32 * r), rows[r]);
        }
    }
    _mm_sfence();
}
