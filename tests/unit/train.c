/* train.c — the trainer against the tiny-neox reference (Hugging Face
 * transformers, torch AdamW): per-example losses, step-0 gradients, a
 * 6-step trajectory and the parameters after it; the packed forward
 * against model_forward; packing and padding invariance; LR schedules and
 * clipping as transformers and torch define them. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/io.h"
#include "stream/dataset.h"
#include "nn/model.h"
#include "nn/model_io.h"
#include "nn/optim.h"
#include "kernels/parallel.h"
#include "base/rng.h"
#include "nn/safetensors.h"
#include "stream/stream.h"
#include "tap.h"
#include "oracle.h"
#include "nn/trainer.h"

static void load_model(neox_model *m) {
    char err[256];
    if (!model_load(m, DATA "/tiny-f32", err, sizeof err)) { printf("Bail out! %s\n", err); exit(1); }
}

/* The fixture model, its examples and a trainer on them. */
static void setup(neox_model *m, dataset *d, trainer *t, loss_mode mode, const adamw_hparams *h) {
    load_model(m);
    load_examples(d, mode);
    trainer_init(t, m, h, 1.0);
}

static void teardown(neox_model *m, dataset *d, trainer *t) {
    trainer_free(t);
    dataset_free(d);
    model_free(m);
}

static void test_losses(void) {
    for (int mode = 0; mode < 2; mode++) {
        neox_model m;
        dataset d;
        trainer t;
        setup(&m, &d, &t, mode == 0 ? LOSS_ANSWER : LOSS_ALL, &ADAMW_DEFAULTS);
        size_t order[NUM_EX], n;
        for (int i = 0; i < NUM_EX; i++) order[i] = (size_t)i;
        double got[NUM_EX];
        trainer_loss(&t, &d, order, NUM_EX, NULL, got);
        double *want = ref_tensor(mode == 0 ? "loss.answer_mean_per_example" : "loss.all_mean_per_example", &n, 1);
        double worst = 0;
        for (int i = 0; i < NUM_EX; i++) worst = fmax(worst, fabs(got[i] - want[i]) / fabs(want[i]));
        ok(worst < 1e-5, "--loss %s: per-example mean losses within 1e-5 relative (worst %.2e)",
           mode == 0 ? "answer" : "all", worst);
        free(want);
        teardown(&m, &d, &t);
    }
}

static void test_grad0_and_trajectory(void) {
    adamw_hparams h = ADAMW_DEFAULTS;
    h.weight_decay = 0.1;
    neox_model m;
    dataset d;
    trainer t;
    setup(&m, &d, &t, LOSS_ANSWER, &h);
    size_t n, step0[4] = {0, 1, 2, 3};
    double *want_loss = ref_tensor("train.loss", &n, 1);
    step_result r = trainer_gradients(&t, &d, step0, 4);
    const char *worst = "";
    double g = worst_tensor_diff(&m, t.grad, "grad0", &worst, 0, NULL);
    ok(g < 1e-4, "step-0 gradients within 1e-4 per tensor (worst %.2e, %s)", g, worst);
    ok(fabs(r.loss - want_loss[0]) / want_loss[0] < 1e-5, "step-0 loss %.6f (HF %.6f)", r.loss, want_loss[0]);
    memset(t.grad, 0, m.num_params * sizeof(float));
    free(want_loss);
    double worst_loss, worst_norm;
    run_trajectory(&t, &d, &worst_loss, &worst_norm);
    ok(worst_loss < 1e-4, "6-step loss trajectory within 1e-4 relative (worst %.2e)", worst_loss);
    ok(worst_norm < 1e-4, "6-step grad-norm trajectory within 1e-4 relative (worst %.2e)", worst_norm);
    double drift = 0;
    double f = worst_tensor_diff(&m, m.params, "final", &worst, 1, &drift);
    ok(f < 1e-4, "parameters after 6 steps within 1e-4 per tensor (worst %.2e, %s)", f, worst);
    /* Noise-driven Adam moves them by about lr/100 a step, in either run. */
    ok(drift < 6 * 1e-3 * 0.05, "softmax-invariant key biases drift by rounding noise only (max |diff| %.2e)", drift);
    teardown(&m, &d, &t);
}

/* A pack of three sequences gives each one's logits alone: positions and
 * attention restart at every sequence. */
static void test_packed_forward(void) {
    neox_model m;
    dataset d;
    trainer t;
    setup(&m, &d, &t, LOSS_ALL, &ADAMW_DEFAULTS);
    size_t ex[3] = {3, 0, 6};
    /* Pack all three; loss rows are every position but the last of each. */
    int seq_start[4], pos = 0, rows = 0;
    uint32_t ids[256], targets[256];
    int row_pos[256];
    for (int s = 0; s < 3; s++) {
        const example *e = &d.ex[ex[s]];
        seq_start[s] = pos;
        memcpy(ids + pos, d.ids + e->start, e->len * sizeof *ids);
        for (uint32_t p = 1; p < e->len; p++) {
            row_pos[rows] = pos + (int)p - 1;
            targets[rows++] = d.ids[e->start + p];
        }
        pos += (int)e->len;
    }
    seq_start[3] = pos;
    neox_pack pack = {.T = pos, .nseq = 3, .seq_start = seq_start, .ids = ids, .nrows = rows,
                       .row_pos = row_pos, .row_target = targets};
    device_pack_buf buf = {0};
    model_forward_pack(&m, &t.acts.f, device_pack_upload(&buf, m.dev, &pack));
    double worst = 0;
    int V = m.cfg.vocab_size, row = 0;
    for (int s = 0; s < 3; s++) {
        int T = seq_start[s + 1] - seq_start[s];
        neox_acts a;
        acts_alloc(&a, &m, T);
        model_forward(&m, &a, ids + seq_start[s], T);
        for (int p = 0; p < T - 1; p++, row++)
            for (int v = 0; v < V; v++)
                worst = fmax(worst, fabs(a.logits[(size_t)p * V + v] - t.acts.f.logits[(size_t)row * V + v]));
        acts_free(&a);
    }
    ok(worst < 1e-5, "packed forward of 3 sequences equals the forward of each alone (max |diff| %.2e)", worst);
    teardown(&m, &d, &t);
}

/* Gradients do not depend on how the step's examples are packed. */
static void test_packing_invariance(void) {
    neox_model m;
    dataset d;
    trainer t;
    setup(&m, &d, &t, LOSS_ANSWER, &ADAMW_DEFAULTS);
    size_t ex[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    step_result a = trainer_gradients(&t, &d, ex, 8);
    float *g1 = xmalloc(m.num_params * sizeof(float));
    memcpy(g1, t.grad, m.num_params * sizeof(float));
    memset(t.grad, 0, m.num_params * sizeof(float));
    t.pack_tokens = 1; /* one example per pack */
    step_result b = trainer_gradients(&t, &d, ex, 8);
    double diff = rel_diff(t.grad, g1, m.num_params);
    ok(fabs(a.loss - b.loss) < 1e-6 * a.loss && diff < 1e-5,
       "one pack or one example per pack: same loss (%.8f, %.8f) and gradients (rel diff %.2e)",
       a.loss, b.loss, diff);
    free(g1);
    teardown(&m, &d, &t);
}

/* The thread count changes no bit of the loss or the gradients (so a run
 * resumed with other --threads continues exactly). */
static void test_thread_invariance(void) {
    neox_model m;
    dataset d;
    trainer t;
    setup(&m, &d, &t, LOSS_ANSWER, &ADAMW_DEFAULTS);
    size_t ex[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    int threads = parallel_threads();
    parallel_set_threads(1);
    step_result a = trainer_gradients(&t, &d, ex, 8);
    float *g1 = xmalloc(m.num_params * sizeof(float));
    memcpy(g1, t.grad, m.num_params * sizeof(float));
    memset(t.grad, 0, m.num_params * sizeof(float));
    parallel_set_threads(3);
    step_result b = trainer_gradients(&t, &d, ex, 8);
    parallel_set_threads(threads);
    ok(a.loss == b.loss && a.grad_norm == b.grad_norm && memcmp(g1, t.grad, m.num_params * sizeof(float)) == 0,
       "1 and 3 threads give the same loss, norm and gradients, bit for bit");
    free(g1);
    teardown(&m, &d, &t);
}

/* AdamW over every span, in one pass on this thread: the reference the
 * trainer's piecewise update on the pool must equal. */
static void adamw_spans(const adamw_consts *k, float *p, float *g, float *m, float *v,
                        const param_span *spans, int nspans) {
    for (int s = 0; s < nspans; s++)
        adamw_update(k, p, g, m, v, spans[s].offset, spans[s].offset + spans[s].count, spans[s].decay);
}

/* In bf16, the optimizer step re-packs each weight's bf16 copies as it
 * updates it: after some steps they are what packing the weights anew
 * gives, byte for byte, and the step is AdamW's over the whole block. */
static void test_bf16_update(void) {
    if (gemm_current_path() == GEMM_FP32) {
        ok(1, "# SKIP no bf16 products on this CPU");
        ok(1, "# SKIP no bf16 products on this CPU");
        return;
    }
    adamw_hparams h = {0.9, 0.999, 1e-8, 0.1};
    neox_model m, twin;
    dataset d;
    trainer t;
    setup(&m, &d, &t, LOSS_ANSWER, &h);
    load_model(&twin);
    trainer_use_bf16(&t);
    float *m1 = xcalloc(m.num_params, sizeof(float)), *v1 = xcalloc(m.num_params, sizeof(float));
    size_t ex[4] = {0, 1, 2, 3};
    int same_update = 1;
    for (int s = 0; s < 3; s++) {
        step_result r = trainer_gradients(&t, &d, ex, 4);
        float *g = xmalloc(m.num_params * sizeof(float));
        memcpy(g, t.grad, m.num_params * sizeof(float));
        memset(t.grad, 0, m.num_params * sizeof(float));
        trainer_step(&t, &d, ex, 4, 1e-3);
        adamw_consts k = adamw_step_consts(&h, 1e-3, s + 1, (float)clip_factor(r.grad_norm, 1.0));
        adamw_spans(&k, twin.params, g, m1, v1, t.spans, t.nspans);
        same_update &= memcmp(m.params, twin.params, m.num_params * sizeof(float)) == 0;
        memcpy(twin.params, m.params, m.num_params * sizeof(float));
        free(g);
    }
    ok(same_update, "bf16: the update on the pool, piece by piece, is AdamW's over the whole block, bit for bit");
    /* twin holds the same weights now */
    model_set_dtype(&twin, DTYPE_BF16, GEMM_FOR_FORWARD | GEMM_FOR_BACKWARD);
    int same = 1;
    for (int i = 0; i < m.num_tensors; i++) {
        if (!m.tensor_linear[i]) continue;
        const gemm_weight *a = &m.tensor_linear[i]->lowp, *b = &twin.tensor_linear[i]->lowp;
        size_t half = gemm_weight_bytes(b) / 2;
        same &= memcmp(a->fwd, b->fwd, half) == 0 && memcmp(a->bwd, b->bwd, half) == 0;
    }
    ok(same, "bf16: after 3 steps the copies re-packed in the update equal a fresh packing");
    free(m1), free(v1);
    teardown(&m, &d, &t);
    model_free(&twin);
}

/* A step's gradients overwrite whatever the buffer held (the first pack
 * writes, later packs add), in fp32 and in bf16. */
static void test_gradients_overwrite(int bf16) {
    neox_model m;
    dataset d;
    trainer t;
    setup(&m, &d, &t, LOSS_ANSWER, &ADAMW_DEFAULTS);
    if (bf16) trainer_use_bf16(&t);
    t.pack_tokens = 40; /* several packs */
    size_t ex[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    step_result a = trainer_gradients(&t, &d, ex, 8);
    float *g1 = xmalloc(m.num_params * sizeof(float));
    memcpy(g1, t.grad, m.num_params * sizeof(float));
    for (size_t i = 0; i < m.num_params; i++) t.grad[i] = NAN;
    step_result b = trainer_gradients(&t, &d, ex, 8);
    ok(a.grad_norm == b.grad_norm && memcmp(g1, t.grad, m.num_params * sizeof(float)) == 0,
       "%s: gradients over several packs overwrite the buffer (norm %.6f, then %.6f)",
       bf16 ? "bf16" : "fp32", a.grad_norm, b.grad_norm);
    double direct = sqrt(grad_sum_squares(t.grad, m.num_params));
    ok(fabs(b.grad_norm - direct) <= 1e-12 * direct,
       "%s: the norm summed as the products finish is the gradients' norm (%.17g, %.17g)",
       bf16 ? "bf16" : "fp32", b.grad_norm, direct);
    free(g1);
    teardown(&m, &d, &t);
}

/* Writes the 8 examples as a stream, padded (as pad-trunc pads) or not. */
static void write_stream(const char *path, int padded) {
    FILE *f = fopen(path, "wb");
    if (!f) { printf("Bail out! cannot create %s\n", path); exit(1); }
    char why[ERR_MAX];
    stream_writer *sw = stream_writer_open(fileno(f), 1, why, sizeof why);
    record r = {0};
    for (int i = 0; i < NUM_EX; i++) {
        record_clear(&r);
        r.id = (uint64_t)i + 1;
        uint32_t *q, *a, nq, na;
        ref_example(i, &q, &nq, &a, &na);
        segment *sq = record_segment(&r, SEG_QUESTION), *sa = record_segment(&r, SEG_ANSWER);
        segment_clear(sq);
        segment_clear(sa);
        if (padded) /* question padded on the left to 40, answer on the right to 30 */
            for (uint32_t k = nq; k < 40; k++) segment_push(sq, 1);
        segment_append(sq, q, nq);
        segment_append(sa, a, na);
        if (padded) {
            for (uint32_t k = na; k < 30; k++) segment_push(sa, 1);
            sq->pad = 40 - nq;
            sq->pad_side = SIDE_LEFT;
            sa->pad = 30 - na;
            sa->pad_side = SIDE_RIGHT;
        }
        if (stream_write(sw, &r, why, sizeof why) < 0) die("%s", why);
        free(q);
        free(a);
    }
    stream_writer_close(sw);
    record_free(&r);
    fclose(f);
}

static step_result step_from_stream(const char *path) {
    neox_model m;
    load_model(&m);
    dataset d;
    int fd = open_input(path);
    char why[ERR_MAX];
    if (!dataset_read(&d, fd, path, LOSS_ANSWER, m.cfg.vocab_size, m.cfg.max_positions, why, sizeof why)) {
        printf("Bail out! %s\n", why);
        exit(1);
    }
    close(fd);
    trainer t;
    trainer_init(&t, &m, &ADAMW_DEFAULTS, 1.0);
    size_t ex[4] = {0, 1, 2, 3};
    step_result r = trainer_step(&t, &d, ex, 4, 1e-3);
    teardown(&m, &d, &t);
    return r;
}

static void test_padding_invariance(void) {
    char plain[256], padded[256];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(plain, sizeof plain, "%s/tunepipe-train-plain.%ld", tmp, (long)getpid());
    snprintf(padded, sizeof padded, "%s/tunepipe-train-padded.%ld", tmp, (long)getpid());
    write_stream(plain, 0);
    write_stream(padded, 1);
    step_result a = step_from_stream(plain), b = step_from_stream(padded);
    ok(a.loss == b.loss && a.grad_norm == b.grad_norm && a.tokens == b.tokens,
       "padded input trains exactly like unpadded: loss %.8f/%.8f, %zu/%zu tokens",
       a.loss, b.loss, a.tokens, b.tokens);
    unlink(plain);
    unlink(padded);
}

static void test_schedules(void) {
    /* transformers: linear warmup to step `warmup`, then (total-s)/(total-warmup) */
    ok(lr_at_step(SCHEDULE_LINEAR, 1e-6, 0, 1, 100) == 0.0, "linear, warmup 1: step 0 has lr 0");
    ok(fabs(lr_at_step(SCHEDULE_LINEAR, 1e-6, 1, 1, 100) - 1e-6) < 1e-20, "linear: full lr after warmup");
    ok(fabs(lr_at_step(SCHEDULE_LINEAR, 1.0, 50, 1, 100) - 50.0 / 99) < 1e-15, "linear: step 50 of 100 is 50/99");
    ok(fabs(lr_at_step(SCHEDULE_LINEAR, 1.0, 5, 10, 100) - 0.5) < 1e-15, "linear: warmup is s/warmup");
    ok(fabs(lr_at_step(SCHEDULE_COSINE, 1.0, 60, 10, 110) - 0.5) < 1e-12, "cosine: half-way is 0.5");
    ok(fabs(lr_at_step(SCHEDULE_COSINE, 1.0, 10, 10, 110) - 1.0) < 1e-15, "cosine: 1 right after warmup");
    ok(lr_at_step(SCHEDULE_CONSTANT, 2.0, 7, 0, 10) == 2.0 && lr_at_step(SCHEDULE_CONSTANT, 2.0, 1, 4, 10) == 0.5,
       "constant, with and without warmup");
    ok(clip_factor(0.5, 1.0) == 1.0 && fabs(clip_factor(4.0, 1.0) - 1.0 / (4.0 + 1e-6)) < 1e-15 &&
       clip_factor(4.0, 0) == 1.0, "clip factor as clip_grad_norm_");
}

/* AdamW over odd-sized spans (vector body and scalar tail) against torch's
 * formula in double; the thread count changes nothing. */
static void test_adamw(void) {
    enum { N = 100003 };
    param_span spans[2] = {{0, 40001, 1}, {40001, N - 40001, 0}};
    float *p[2], *g[2], *m[2], *v[2];
    double *want = xmalloc(N * sizeof *want);
    rng_state r;
    rng_seed(&r, 5);
    for (int k = 0; k < 2; k++) {
        p[k] = xmalloc(N * sizeof(float));
        g[k] = xmalloc(N * sizeof(float));
        m[k] = xmalloc(N * sizeof(float));
        v[k] = xmalloc(N * sizeof(float));
    }
    for (int i = 0; i < N; i++) {
        p[0][i] = (float)rng_normal(&r);
        g[0][i] = (float)(rng_normal(&r) * 0.01);
        m[0][i] = (float)(rng_normal(&r) * 0.001);
        v[0][i] = (float)(rng_uniform(&r) * 1e-5);
    }
    for (int k = 1; k < 2; k++) {
        memcpy(p[k], p[0], N * sizeof(float));
        memcpy(g[k], g[0], N * sizeof(float));
        memcpy(m[k], m[0], N * sizeof(float));
        memcpy(v[k], v[0], N * sizeof(float));
    }
    adamw_hparams h = ADAMW_DEFAULTS;
    h.weight_decay = 0.1;
    double lr = 1e-3, factor = 0.5;
    long t = 3;
    for (int i = 0; i < N; i++) {
        double gi = g[0][i] * factor, pi = p[0][i] * (i < 40001 ? 1 - lr * 0.1 : 1);
        double mi = 0.9 * m[0][i] + 0.1 * gi, vi = 0.999 * v[0][i] + 0.001 * gi * gi;
        double mh = mi / (1 - pow(0.9, t)), vh = vi / (1 - pow(0.999, t));
        want[i] = pi - lr * mh / (sqrt(vh) + 1e-8);
    }
    adamw_consts consts = adamw_step_consts(&h, lr, t, (float)factor);
    adamw_spans(&consts, p[0], g[0], m[0], v[0], spans, 2);
    /* One element at a time: the scalar loop only. */
    for (int s = 0; s < 2; s++)
        for (size_t i = spans[s].offset; i < spans[s].offset + spans[s].count; i++)
            adamw_update(&consts, p[1], g[1], m[1], v[1], i, i + 1, spans[s].decay);
    double worst = 0;
    for (int i = 0; i < N; i++) worst = fmax(worst, fabs(p[0][i] - want[i]) / fmax(fabs(want[i]), 1e-3));
    ok(worst < 1e-5, "AdamW matches torch's formula (worst relative %.2e)", worst);
    ok(memcmp(p[0], p[1], N * sizeof(float)) == 0 && memcmp(m[0], m[1], N * sizeof(float)) == 0 &&
           memcmp(v[0], v[1], N * sizeof(float)) == 0,
       "AdamW's vector and scalar loops give the same bits");
    for (int k = 0; k < 2; k++) {
        free(p[k]);
        free(g[k]);
        free(m[k]);
        free(v[k]);
    }
    free(want);
}

int main(void) {
    char err[256];
    if (!st_open(&ref, DATA "/reference.safetensors", err, sizeof err)) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    test_schedules();
    test_adamw();
    test_losses();
    test_grad0_and_trajectory();
    test_packed_forward();
    test_packing_invariance();
    test_thread_invariance();
    test_padding_invariance();
    test_gradients_overwrite(0);
    if (gemm_current_path() != GEMM_FP32) test_gradients_overwrite(1);
    test_bf16_update();
    st_close(&ref);
    return done_testing();
}
