/* vecmath.h — exp and erf on 16 floats at once (AVX-512), for the
 * element-wise passes that libm's scalar expf/erff would dominate: GELU
 * forward and backward over [T, 4C] activations, softmax rows.
 *
 * Accuracy, measured against double precision over [-10, 10] (tests/unit/vecmath.c):
 *   vec_exp   within 2 ulp; 0 far below -87.3, +inf above 88.7, NaN stays
 *   vec_erf   absolute error below 4e-7 (Abramowitz & Stegun 7.1.26,
 *             1.5e-7, plus rounding) for |x| >= 0.5; below, the Taylor
 *             series, where A&S's absolute error would be a large
 *             relative one
 * which is PyTorch's own CPU GELU's accuracy (it uses the same A&S form).
 * Without AVX-512 the callers use libm (VECMATH_WIDTH is then 0). */
#ifndef TUNEPIPE_VECMATH_H
#define TUNEPIPE_VECMATH_H

#ifdef __AVX512F__
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#define VECMATH_WIDTH 16

/* e^x: x = n ln2 + r, |r| <= ln2/2, e^r by Cephes expf's polynomial.
 * The clamps keep n finite (e^89 overflows to +inf, e^-104 is 0) and,
 * with x as their second operand, let NaN through. */
static inline __m512 vec_exp(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* The lanes a loop at i of n still has: all 16, or the first n - i. */
static inline __mmask16 vec_mask(size_t i, size_t n) {
    return n - i >= VECMATH_WIDTH ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
}

/* max of x[0..n), n >= 1. */
static inline float vec_max(const float *x, size_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < n; i += VECMATH_WIDTH) {
        __mmask16 k = vec_mask(i, n);
        m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x + i));
    }
    return _mm512_reduce_max_ps(m);
}

/* The 16 floats of x as two vectors of 8 doubles. */
static inline __m512d vec_lo_pd(__m512 x) { return _mm512_cvtps_pd(_mm512_castps512_ps256(x)); }
static inline __m512d vec_hi_pd(__m512 x) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
}

/* erf(x), odd: sign(x) * erf(|x|). */
static inline __m512 vec_erf(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 a = _mm512_abs_ps(x), a2 = _mm512_mul_ps(a, a);
    /* |x| >= 0.5: 1 - (a1 t + ... + a5 t^5) e^(-x^2), t = 1 / (1 + p|x|) */
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), a, one));
    __m512 poly = _mm512_set1_ps(1.061405429f);
    poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-1.453152027f));
    poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(1.421413741f));
    poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-0.284496736f));
    poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(0.254829592f));
    poly = _mm512_mul_ps(poly, t);
    __m512 far = _mm512_fnmadd_ps(poly, vec_exp(_mm512_sub_ps(_mm512_setzero_ps(), a2)), one);
    /* |x| < 0.5: 2/sqrt(pi) (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320 + x^13/9360) */
    const float c = 1.12837916709551257f;
    __m512 s = _mm512_set1_ps(c / 9360);
    s = _mm512_fmadd_ps(s, a2, _mm512_set1_ps(-c / 1320));
    s = _mm512_fmadd_ps(s, a2, _mm512_set1_ps(c / 216));
    s = _mm512_fmadd_ps(s, a2, _mm512_set1_ps(-c / 42));
    s = _mm512_fmadd_ps(s, a2, _mm512_set1_ps(c / 10));
    s = _mm512_fmadd_ps(s, a2, _mm512_set1_ps(-c / 3));
    __m512 near = _mm512_fmadd_ps(_mm512_mul_ps(s, a2), a, _mm512_mul_ps(_mm512_set1_ps(c), a));
    __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.5f), _CMP_LT_OQ);
    __m512 r = _mm512_mask_blend_ps(small, far, near);
    /* copy x's sign bit onto r */
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r),
                                               _mm512_and_si512(_mm512_castps_si512(x), sign)));
}

#else
#define VECMATH_WIDTH 0
#endif

#endif
