/* ops.c — see ops.h. */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/vecmath.h"

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        /* Two passes in double: this keeps the statistics exact to fp32
         * whatever C is. */
        double v = 0, m;
#if VECMATH_WIDTH
        __m512d acc = _mm512_setzero_pd();
        for (int i = 0; i < C; i += VECMATH_WIDTH) {
            __m512 xi = _mm512_maskz_loadu_ps(vec_mask(i, C), x + i);
            acc = _mm512_add_pd(acc, _mm512_add_pd(vec_lo_pd(xi), vec_hi_pd(xi)));
        }
        m = _mm512_reduce_add_pd(acc) / C;
        __m512d vm = _mm512_set1_pd(m);
        acc = _mm512_setzero_pd();
        for (int i = 0; i < C; i += VECMATH_WIDTH) {
            __mmask16 k = vec_mask(i, C);
            __m512 xi = _mm512_maskz_loadu_ps(k, x + i);
            __m512d lo = _mm512_maskz_sub_pd((__mmask8)k, vec_lo_pd(xi), vm);
            __m512d hi = _mm512_maskz_sub_pd((__mmask8)(k >> 8), vec_hi_pd(xi), vm);
            acc = _mm512_fmadd_pd(lo, lo, _mm512_fmadd_pd(hi, hi, acc));
        }
        v = _mm512_reduce_add_pd(acc);
#else
        double s = 0;
        for (int i = 0; i < C; i++) s += x[i];
        m = s / C;
        for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
#endif
        float mf = (float)m, r = (float)(1.0 / sqrt(v / C + eps));
        for (int i = 0; i < C; i++) o[i] = (x[i] - mf) * r * w[i] + b[i];
        if (mean) mean[n] = mf;
        if (rstd) rstd[n] = r;
    }
}

void rotary_tables(float *cos_t, float *sin_t, int max_positions, int rot, double base) {
    int half = rot / 2;
    /* Hugging Face computes the angles in fp32 (inv_freq, then pos * inv_freq)
     * even for a float64 model; the same roundings give the same tables. */
    for (int i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf((float)base, (float)(2 * i) / (float)rot);
        for (int p = 0; p < max_positions; p++) {
            float angle = (float)p * inv_freq;
            cos_t[(size_t)p * half + i] = (float)cos((double)angle);
            sin_t[(size_t)p * half + i] = (float)sin((double)angle);
        }
    }
}

void rotary_forward(float *qkv, const float *cos_t, const float *sin_t, int pos0,
                    int T, int NH, int hd, int rot) {
    int half = rot / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cos_t + (size_t)(pos0 + t) * half, *s = sin_t + (size_t)(pos0 + t) * half;
        for (int h = 0; h < NH; h++) {
            float *q = qkv + ((size_t)t * NH + h) * 3 * hd;
            for (int part = 0; part < 2; part++) { /* q, then k */
                float *x = q + part * hd;
                for (int i = 0; i < half; i++) {
                    float x1 = x[i], x2 = x[i + half];
                    x[i] = x1 * c[i] - x2 * s[i];
                    x[i + half] = x2 * c[i] + x1 * s[i];
                }
            }
        }
    }
}

/* row [n]: softmax in place over its first n entries. */
static void softmax_row(float *row, int n) {
#if VECMATH_WIDTH
    __m512 mx = _mm512_set1_ps(vec_max(row, (size_t)n)), vsum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += VECMATH_WIDTH) {
        __mmask16 k = vec_mask(i, n);
        __m512 e = _mm512_maskz_mov_ps(k, vec_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + i), mx)));
        _mm512_mask_storeu_ps(row + i, k, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    float sum = _mm512_reduce_add_ps(vsum);
#else
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = row[i] > mx ? row[i] : mx;
    float sum = 0;
    for (int i = 0; i < n; i++) {
        row[i] = expf(row[i] - mx);
        sum += row[i];
    }
#endif
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) row[i] *= inv;
}

void attention_forward(float *out, float *att, const float *qkv, int T, int NH, int hd) {
    int C = NH * hd, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < NH; h++) {
        const float *q = qkv + (size_t)h * 3 * hd, *k = q + hd, *v = q + 2 * hd;
        float *a = att + (size_t)h * T * T;
        /* scores [T, T] = scale q kᵀ; the upper triangle is computed and
         * then overwritten, which BLAS makes cheaper than skipping it. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, C3, k, C3, 0.0f, a, T);
        for (int t = 0; t < T; t++) {
            float *row = a + (size_t)t * T;
            softmax_row(row, t + 1);
            memset(row + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, a, T, v, C3, 0.0f,
                    out + (size_t)h * hd, C);
    }
}

static float gelu_scalar(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }

void gelu_forward(float *out, const float *inp, int N) {
    int i = 0;
#if VECMATH_WIDTH
    const __m512 half = _mm512_set1_ps(0.5f), sqrt1_2 = _mm512_set1_ps((float)M_SQRT1_2);
    for (; i < N; i += VECMATH_WIDTH) {
        __mmask16 k = vec_mask(i, N);
        __m512 x = _mm512_maskz_loadu_ps(k, inp + i);
        __m512 cdf = _mm512_fmadd_ps(half, vec_erf(_mm512_mul_ps(x, sqrt1_2)), half);
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(x, cdf));
    }
#endif
    for (; i < N; i++) out[i] = gelu_scalar(inp[i]);
}

void residual_forward(float *out, const float *a, const float *b, int N) {
    for (int i = 0; i < N; i++) out[i] = a[i] + b[i];
}
