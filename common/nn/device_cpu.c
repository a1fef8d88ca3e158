/* device_cpu.c — the CPU as a device (device.h): host memory, and the ops
 * of ops.h, backward.h, linear.h and optim.h on the worker pool. The
 * attention ops are in device_cpu_attention.c. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "base/cli.h"
#include "device_cpu.h"
#include "kernels/parallel.h"
#include "ops.h"
#include "trainer.h"

/* ---- memory ------------------------------------------------------------------ */

/* base/cli.h's malloc_aligned: 64 bytes (a cache line, AVX-512's aligned
 * loads), large blocks on huge pages. */
static void *cpu_alloc(size_t bytes) { return malloc_aligned(bytes); }

static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (dst != src) memcpy(dst, src, bytes);
}

static void cpu_zero(void *dst, size_t bytes) { memset(dst, 0, bytes); }

/* ---- element-wise ops on the worker threads ---------------------------------------- */

typedef struct {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int C;
    float eps;
} layernorm_ctx;

static void layernorm_rows(void *arg, size_t begin, size_t end, int part) {
    const layernorm_ctx *c = arg;
    layernorm_forward(c->out + begin * c->C, c->mean ? c->mean + begin : NULL,
                      c->rstd ? c->rstd + begin : NULL, c->inp + begin * c->C, c->w, c->b,
                      (int)(end - begin), c->C, c->eps);
}

void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps) {
    layernorm_ctx c = {out, mean, rstd, inp, w, b, C, eps};
    parallel_for((size_t)N, 16, layernorm_rows, &c);
}

typedef struct {
    float *out;
    const float *inp;
} gelu_ctx;

static void gelu_range(void *arg, size_t begin, size_t end, int part) {
    const gelu_ctx *c = arg;
    gelu_forward(c->out + begin, c->inp + begin, (int)(end - begin));
}

static void cpu_gelu_forward(float *out, const float *inp, size_t N) {
    parallel_for(N, 4096, gelu_range, &(gelu_ctx){out, inp});
}

static void cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
    gelu_backward(dinp, inp, dout, (int)N);
}

void cpu_residual_forward(float *out, const float *a, const float *b, size_t N) {
    residual_forward(out, a, b, (int)N);
}

static void cpu_embedding_forward(float *out, const float *wte, const uint32_t *ids, int T, int C) {
    for (int t = 0; t < T; t++)
        memcpy(out + (size_t)t * C, wte + (size_t)ids[t] * C, (size_t)C * sizeof(float));
}

static void cpu_embedding_backward(float *dwte, const float *dout, const device_pack *p, int C) {
    embedding_backward(dwte, dout, p->ids, p->host->T, C);
}

static void cpu_gather_rows(float *out, const float *inp, const int *rows, int R, int C) {
    for (int r = 0; r < R; r++)
        memcpy(out + (size_t)r * C, inp + (size_t)rows[r] * C, (size_t)C * sizeof(float));
}

static void cpu_scatter_add_rows(float *out, const float *inp, const int *rows, int R, int C) {
    for (int r = 0; r < R; r++) {
        float *dst = out + (size_t)rows[r] * C;
        const float *src = inp + (size_t)r * C;
        for (int i = 0; i < C; i++) dst[i] += src[i];
    }
}

/* ---- loss and optimizer ------------------------------------------------------- */

static double cpu_crossentropy(float *logits, const uint32_t *targets, int N, int V, float scale,
                               int backward) {
    return backward ? crossentropy_forward_backward(logits, targets, N, V, scale)
                    : crossentropy_forward(logits, targets, N, V);
}

static void cpu_sum_squares(const float *x, size_t n, double *acc) { *acc += grad_sum_squares(x, n); }

typedef struct {
    trainer *t;
    const adamw_consts *k;
    atomic_int next;
} update_ctx;

/* Pieces are taken in turn as threads free up: they differ in cost. Each
 * weight's bf16 copies of its rows are re-made right after their update,
 * while the rows are in cache. */
static void update_pieces(void *arg, int thread, int nthreads) {
    update_ctx *c = arg;
    trainer *t = c->t;
    int i;
    while ((i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < t->npieces) {
        const update_piece *p = &t->pieces[i];
        adamw_update(c->k, t->model->params, t->grad, t->adam_m, t->adam_v, p->begin, p->end, p->decay);
        if (p->gw) gemm_weight_pack_rows(p->gw, p->row0, p->row1);
    }
}

static void cpu_adamw_step(trainer *t, const adamw_consts *k) {
    update_ctx c = {.t = t, .k = k};
    atomic_init(&c.next, 0);
    parallel_run(update_pieces, &c);
}

const device_ops device_cpu = {
    .name = "cpu",
    .host_memory = 1,
    .alloc = cpu_alloc,
    .release = free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .linear_set_dtype = linear_set_dtype,
    .linear_free = linear_free,
    .linear_forward = linear_forward,
    .linear_backward = linear_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .residual_forward = cpu_residual_forward,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .attention_forward = cpu_attention_forward,
    .attention_scratch = cpu_attention_scratch,
    .attention_backward = cpu_attention_backward,
    .attention_decode = cpu_attention_decode,
    .decoder_reserve = cpu_decoder_reserve,
    .crossentropy = cpu_crossentropy,
    .sum_squares = cpu_sum_squares,
    .adamw_step = cpu_adamw_step,
    .decode_layer = cpu_decode_layer,
};
