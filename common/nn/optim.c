/* optim.c — AdamW, clipping and schedules; see optim.h. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "base/cli.h"
#include "kernels/parallel.h"

static const char *const schedule_names[] = {
    [SCHEDULE_LINEAR] = "linear", [SCHEDULE_COSINE] = "cosine", [SCHEDULE_CONSTANT] = "constant"};

int lr_schedule_parse(const char *name, lr_schedule *out) {
    for (int i = 0; i < (int)(sizeof schedule_names / sizeof *schedule_names); i++)
        if (strcmp(name, schedule_names[i]) == 0) {
            *out = (lr_schedule)i;
            return 1;
        }
    return 0;
}

const char *lr_schedule_name(lr_schedule s) { return schedule_names[s]; }

/* transformers' lr_lambda functions, evaluated in double as Python does. */
double lr_at_step(lr_schedule s, double base_lr, long step, long warmup, long total) {
    if (step < warmup) return base_lr * (double)step / (double)(warmup > 1 ? warmup : 1);
    double after = (double)(total - warmup > 1 ? total - warmup : 1);
    switch (s) {
    case SCHEDULE_LINEAR: {
        double f = (double)(total - step) / after;
        return base_lr * (f > 0 ? f : 0);
    }
    case SCHEDULE_COSINE: {
        double progress = (double)(step - warmup) / after;
        double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
        return base_lr * (f > 0 ? f : 0);
    }
    case SCHEDULE_CONSTANT:
        break;
    }
    return base_lr;
}

double clip_factor(double norm, double max_norm) {
    if (max_norm <= 0) return 1.0;
    double f = max_norm / (norm + 1e-6);
    return f < 1.0 ? f : 1.0;
}

/* ---- gradient norm ----------------------------------------------------- */

/* Elements per partial sum: fixed, so the sum does not depend on the
 * thread count. */
#define SUMSQ_CHUNK (1u << 18)

typedef struct {
    const float *grad;
    size_t n;
    double *partial;
} sumsq_ctx;

static void sumsq_chunks(void *arg, size_t begin, size_t end, int part) {
    sumsq_ctx *c = arg;
    for (size_t chunk = begin; chunk < end; chunk++) {
        const float *g = c->grad;
        size_t i = chunk * SUMSQ_CHUNK, last = i + SUMSQ_CHUNK < c->n ? i + SUMSQ_CHUNK : c->n;
        double s = 0;
#ifdef __AVX512F__
        __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
        for (; i + 16 <= last; i += 16) {
            __m512 x = _mm512_loadu_ps(g + i);
            __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
            __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
            acc0 = _mm512_fmadd_pd(lo, lo, acc0);
            acc1 = _mm512_fmadd_pd(hi, hi, acc1);
        }
        s = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
#endif
        for (; i < last; i++) s += (double)g[i] * g[i];
        c->partial[chunk] = s;
    }
}

double grad_sum_squares(const float *grad, size_t n) {
    size_t chunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    sumsq_ctx c = {grad, n, xmalloc((chunks ? chunks : 1) * sizeof(double))};
    parallel_for(chunks, 1, sumsq_chunks, &c);
    double s = 0;
    for (size_t k = 0; k < chunks; k++) s += c.partial[k];
    free(c.partial);
    return s;
}

/* ---- AdamW ------------------------------------------------------------- */

adamw_consts adamw_step_consts(const adamw_hparams *h, double lr, long t, float grad_factor) {
    double bc1 = 1.0 - pow(h->beta1, (double)t);
    double bc2 = 1.0 - pow(h->beta2, (double)t);
    return (adamw_consts){
        .beta1 = (float)h->beta1, .beta2 = (float)h->beta2, .eps = (float)h->eps,
        .decay_keep = (float)(1.0 - lr * h->weight_decay),
        .step_size = (float)(lr / bc1), .bc2_sqrt = (float)sqrt(bc2),
        .grad_factor = grad_factor,
    };
}

/* torch's single-tensor AdamW in float32, operation by operation (no fused
 * multiply-adds, so the vector and scalar paths agree bit for bit):
 *   p *= 1 - lr wd (decayed tensors); m = lerp(m, g, 1 - b1) = m + (1-b1)(g - m);
 *   v = v b2 + (1-b2) g²; p += -step_size · m / (sqrt(v) / sqrt(bc2) + eps). */
void adamw_update(const adamw_consts *c, float *restrict p, float *restrict g, float *restrict m,
                  float *restrict v, size_t begin, size_t end, int decay) {
    const float b2 = c->beta2, one_b2 = 1.0f - c->beta2, w1 = 1.0f - c->beta1;
    const float keep = decay ? c->decay_keep : 1.0f, neg_step = -c->step_size;
    size_t i = begin;
#ifdef __AVX512F__
    const __m512 vf = _mm512_set1_ps(c->grad_factor), vkeep = _mm512_set1_ps(keep);
    const __m512 vw1 = _mm512_set1_ps(w1), vb2 = _mm512_set1_ps(b2), vone_b2 = _mm512_set1_ps(one_b2);
    const __m512 vbc = _mm512_set1_ps(c->bc2_sqrt), veps = _mm512_set1_ps(c->eps);
    const __m512 vstep = _mm512_set1_ps(neg_step);
    for (; i + 16 <= end; i += 16) {
        __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), vf);
        __m512 pi = _mm512_loadu_ps(p + i), mi = _mm512_loadu_ps(m + i), vi = _mm512_loadu_ps(v + i);
        if (decay) pi = _mm512_mul_ps(pi, vkeep);
        mi = _mm512_add_ps(mi, _mm512_mul_ps(vw1, _mm512_sub_ps(gi, mi)));
        vi = _mm512_add_ps(_mm512_mul_ps(vi, vb2), _mm512_mul_ps(vone_b2, _mm512_mul_ps(gi, gi)));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc), veps);
        pi = _mm512_add_ps(pi, _mm512_mul_ps(vstep, _mm512_div_ps(mi, denom)));
        _mm512_storeu_ps(p + i, pi);
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
    }
#endif
    for (; i < end; i++) {
        float gi = g[i] * c->grad_factor;
        float pi = p[i];
        if (decay) pi *= keep;
        float mi = m[i] + w1 * (gi - m[i]);
        float vi = v[i] * b2 + one_b2 * (gi * gi);
        float denom = sqrtf(vi) / c->bc2_sqrt + c->eps;
        p[i] = pi + neg_step * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}
