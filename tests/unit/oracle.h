/* oracle.h — the tiny-neox reference (tests/data/tiny-neox/reference.json
 * explains each tensor) as the trainer's tests read and compare it: on the
 * CPU (tests/unit/train.c) and on a GPU (tests/gpu/fidelity.c). Include
 * it after tap.h. */
#ifndef TUNEPIPE_ORACLE_H
#define TUNEPIPE_ORACLE_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "nn/trainer.h"
#include "stream/dataset.h"

#define DATA "tests/data/tiny-neox"
#define NUM_EX 8

static st_file ref;

static void *ref_tensor(const char *name, size_t *n, int as_f64) {
    const st_tensor *t = st_find(&ref, name);
    if (!t) { printf("Bail out! reference has no %s\n", name); exit(1); }
    void *x = xmalloc(t->numel * (as_f64 ? sizeof(double) : sizeof(float)));
    if (as_f64) st_read_f64(&ref, t, x);
    else {
        char why[ERR_MAX];
        if (st_read_f32(&ref, t, x, why, sizeof why) != 1) { printf("Bail out! %s: %s\n", name, why); exit(1); }
    }
    *n = t->numel;
    return x;
}

static uint32_t *ref_ids(const char *name, uint32_t *n) {
    const st_tensor *t = st_find(&ref, name);
    if (!t) { printf("Bail out! reference has no %s\n", name); exit(1); }
    int64_t *ids = xmalloc(t->numel * sizeof *ids);
    st_read_i64(&ref, t, ids);
    uint32_t *out = xmalloc(t->numel * sizeof *out);
    for (size_t i = 0; i < t->numel; i++) out[i] = (uint32_t)ids[i];
    free(ids);
    *n = (uint32_t)t->numel;
    return out;
}

/* Training example i: its prompt and answer ids (the caller frees them). */
static void ref_example(int i, uint32_t **q, uint32_t *nq, uint32_t **a, uint32_t *na) {
    char name[64];
    snprintf(name, sizeof name, "train.ex%d.prompt", i);
    *q = ref_ids(name, nq);
    snprintf(name, sizeof name, "train.ex%d.answer", i);
    *a = ref_ids(name, na);
}

static void load_examples(dataset *d, loss_mode mode) {
    memset(d, 0, sizeof *d);
    for (int i = 0; i < NUM_EX; i++) {
        uint32_t *q, *a, nq, na;
        ref_example(i, &q, &nq, &a, &na);
        if (!dataset_add(d, q, nq, a, na, mode, (uint64_t)i + 1)) { printf("Bail out! example %d\n", i); exit(1); }
        free(q);
        free(a);
    }
}

/* The larger of a worst error w and e; unlike fmax, a NaN stays. */
static double worse(double w, double e) { return isnan(w) || e <= w ? w : e; }

/* ‖got - want‖ / ‖want‖ */
static double rel_diff(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1);
}

/* Whether element i of query_key_value.bias is a key bias outside the
 * rotary dimensions. Adding such a bias adds the same q·b to every score
 * of a query, which softmax ignores: its gradient is exactly zero, and
 * what any fp32 implementation computes is rounding noise of about 1e-10,
 * which Adam (eps 1e-8) turns into updates of about lr/100 per step. These
 * elements follow the rounding of the implementation, not the model. */
static int is_softmax_invariant(const neox_model *m, size_t i) {
    int hd = m->cfg.head_dim;
    int part = (int)(i % (3 * (size_t)hd)) / hd, dim = (int)(i % (size_t)hd);
    return part == 1 && dim >= m->cfg.rotary_ndims;
}

static int is_qkv_bias(const char *name) {
    size_t n = strlen(name), k = strlen("query_key_value.bias");
    return n > k && strcmp(name + n - k, "query_key_value.bias") == 0;
}

/* Worst per-tensor relative difference of block against prefix.<name>;
 * with skip_invariant, the softmax-invariant key biases are left out and
 * *invariant_drift gets the largest absolute difference among them. */
static double worst_tensor_diff(const neox_model *m, const float *block, const char *prefix,
                                const char **worst, int skip_invariant, double *invariant_drift) {
    double w = 0;
    for (int i = 0; i < m->num_tensors; i++) {
        const neox_tensor *t = &m->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%s.%s", prefix, t->name);
        size_t n;
        float *want = ref_tensor(name, &n, 0);
        if (n != t->numel) { printf("Bail out! %s has %zu elements\n", name, n); exit(1); }
        float *got = xmalloc(n * sizeof *got);
        memcpy(got, block + t->offset, n * sizeof *got);
        if (skip_invariant && is_qkv_bias(t->name))
            for (size_t k = 0; k < n; k++)
                if (is_softmax_invariant(m, k)) {
                    *invariant_drift = worse(*invariant_drift, fabs((double)got[k] - want[k]));
                    got[k] = want[k];
                }
        double d = rel_diff(got, want, n);
        free(got);
        if (d > w || d != d) {
            w = d;
            *worst = m->tensors[i].name;
        }
        free(want);
    }
    return w;
}

/* reference.json's trajectory on t: 6 AdamW steps of examples
 * (4s + j) % NUM_EX, j < 4, at the constant lr 1e-3; the worst relative
 * errors of the steps' losses and pre-clip gradient norms against HF's,
 * each step in a note. */
static void run_trajectory(trainer *t, const dataset *d, double *worst_loss, double *worst_norm) {
    size_t n;
    double *want_loss = ref_tensor("train.loss", &n, 1);
    double *want_norm = ref_tensor("train.gradnorm", &n, 1);
    *worst_loss = *worst_norm = 0;
    for (int s = 0; s < 6; s++) {
        size_t ex[4];
        for (int j = 0; j < 4; j++) ex[j] = (size_t)((4 * s + j) % NUM_EX);
        step_result r = trainer_step(t, d, ex, 4, lr_at_step(SCHEDULE_CONSTANT, 1e-3, s, 0, 6));
        *worst_loss = worse(*worst_loss, fabs(r.loss - want_loss[s]) / want_loss[s]);
        *worst_norm = worse(*worst_norm, fabs(r.grad_norm - want_norm[s]) / want_norm[s]);
        note("step %d: loss %.6f (HF %.6f), grad norm %.6f (HF %.6f)", s, r.loss, want_loss[s], r.grad_norm,
             want_norm[s]);
    }
    free(want_loss);
    free(want_norm);
}

#endif
