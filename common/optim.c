/* optim.c — AdamW, clipping and schedules; see optim.h. */
#include "optim.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "cli.h"

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

/* ---- threading: a range [0, n) split evenly over the BLAS threads ------- */

typedef struct {
    void (*fn)(void *ctx, size_t begin, size_t end, int part);
    void *ctx;
    size_t begin, end;
    int part;
} range_job;

static void *range_job_run(void *arg) {
    range_job *j = arg;
    j->fn(j->ctx, j->begin, j->end, j->part);
    return NULL;
}

#define MAX_PARTS 64

static int parts_for(size_t n) {
    int threads = openblas_get_num_threads();
    if (threads < 1) threads = 1;
    if (threads > MAX_PARTS) threads = MAX_PARTS;
    /* Small ranges are not worth a thread. */
    size_t max_by_size = n / (1u << 16) + 1;
    return (size_t)threads < max_by_size ? threads : (int)max_by_size;
}

static void parallel_ranges(size_t n, int parts, void (*fn)(void *, size_t, size_t, int), void *ctx) {
    range_job jobs[MAX_PARTS];
    pthread_t tids[MAX_PARTS];
    for (int i = 0; i < parts; i++)
        jobs[i] = (range_job){fn, ctx, n * i / parts, n * (i + 1) / parts, i};
    int started = 0;
    for (int i = 1; i < parts; i++) {
        if (pthread_create(&tids[i], NULL, range_job_run, &jobs[i]) != 0) break;
        started = i;
    }
    /* Jobs whose thread could not start run here, in order. */
    range_job_run(&jobs[0]);
    for (int i = started + 1; i < parts; i++) range_job_run(&jobs[i]);
    for (int i = 1; i <= started; i++) pthread_join(tids[i], NULL);
}

/* ---- gradient norm ----------------------------------------------------- */

typedef struct {
    const float *grad;
    double partial[MAX_PARTS];
} sumsq_ctx;

static void sumsq_range(void *arg, size_t begin, size_t end, int part) {
    sumsq_ctx *c = arg;
    double s = 0;
    for (size_t i = begin; i < end; i++) s += (double)c->grad[i] * c->grad[i];
    c->partial[part] = s;
}

double grad_sum_squares(const float *grad, size_t n) {
    sumsq_ctx c = {.grad = grad};
    int parts = parts_for(n);
    parallel_ranges(n, parts, sumsq_range, &c);
    double s = 0;
    for (int i = 0; i < parts; i++) s += c.partial[i];
    return s;
}

/* ---- AdamW ------------------------------------------------------------- */

typedef struct {
    float *param, *grad, *m, *v;
    const param_span *spans;
    int nspans;
    float beta1, beta2, eps, decay_keep, step_size, bc2_sqrt, grad_factor;
} adamw_ctx;

/* torch's single-tensor AdamW in float32, operation by operation. */
static void adamw_elements(const adamw_ctx *c, size_t begin, size_t end, int decay) {
    float *restrict p = c->param, *restrict g = c->grad, *restrict m = c->m, *restrict v = c->v;
    const float b2 = c->beta2, one_b2 = 1.0f - c->beta2, w1 = 1.0f - c->beta1;
    for (size_t i = begin; i < end; i++) {
        float gi = g[i] * c->grad_factor;
        float pi = p[i];
        if (decay) pi *= c->decay_keep;
        /* lerp(m, g, w) with w < 0.5: m + w * (g - m) */
        float mi = m[i] + w1 * (gi - m[i]);
        float vi = v[i] * b2 + one_b2 * (gi * gi);
        float denom = sqrtf(vi) / c->bc2_sqrt + c->eps;
        p[i] = pi + (-c->step_size) * (mi / denom);
        m[i] = mi;
        v[i] = vi;
        g[i] = 0.0f;
    }
}

static void adamw_range(void *arg, size_t begin, size_t end, int part) {
    const adamw_ctx *c = arg;
    for (int s = 0; s < c->nspans; s++) {
        size_t lo = c->spans[s].offset, hi = lo + c->spans[s].count;
        if (lo < begin) lo = begin;
        if (hi > end) hi = end;
        if (lo < hi) adamw_elements(c, lo, hi, c->spans[s].decay);
    }
}

void adamw_step(float *param, float *grad, float *m, float *v,
                const param_span *spans, int nspans,
                const adamw_hparams *h, double lr, long t, float grad_factor) {
    size_t n = 0;
    for (int s = 0; s < nspans; s++)
        if (spans[s].offset + spans[s].count > n) n = spans[s].offset + spans[s].count;
    double bc1 = 1.0 - pow(h->beta1, (double)t);
    double bc2 = 1.0 - pow(h->beta2, (double)t);
    adamw_ctx c = {
        .param = param, .grad = grad, .m = m, .v = v, .spans = spans, .nspans = nspans,
        .beta1 = (float)h->beta1, .beta2 = (float)h->beta2, .eps = (float)h->eps,
        .decay_keep = (float)(1.0 - lr * h->weight_decay),
        .step_size = (float)(lr / bc1), .bc2_sqrt = (float)sqrt(bc2),
        .grad_factor = grad_factor,
    };
    parallel_ranges(n, parts_for(n), adamw_range, &c);
}
