/* device_cuda.cu — the GPU as a device (nn/device.h), on the ops of
 * cuda_ops.h. libtunepipe-cuda.so exports tunepipe_cuda_device(), which
 * nn/device_open.c finds with dlsym. Everything stays on the GPU; the
 * host gets the loss sums, the squared gradient norm and the logits that
 * sampling reads. An op's failure (a CUDA error mid-run) ends the process
 * with CUDA's message: the tools cannot go on without their device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"
#include "nn/device.h"
#include "nn/forward.h"
#include "nn/kvcache.h"
#include "nn/model.h"
#include "nn/trainer.h"

static void check(int status) {
    if (status) {
        fprintf(stderr, "cuda: %s\n", cuda_ops_last_error());
        exit(1);
    }
}

/* ---- memory ---------------------------------------------------------------------- */

static void *gpu_alloc(size_t bytes) { return cuda_alloc(bytes ? bytes : 1); }
static void gpu_release(void *p) {
    if (p) cuda_free(p);
}
static void gpu_upload(void *dst, const void *src, size_t bytes) { check(cuda_to_device(dst, src, bytes)); }
static void gpu_download(void *dst, const void *src, size_t bytes) { check(cuda_to_host(dst, src, bytes)); }
static void gpu_copy(void *dst, const void *src, size_t bytes) {
    if (dst != src) check(cuda_copy(dst, src, bytes));
}
static void gpu_zero(void *dst, size_t bytes) { check(cuda_zero(dst, bytes)); }

/* ---- linear layers: the bf16 copy of the weight in l->device_copy ------------------- */

static void gpu_linear_free(linear *l) {
    gpu_release(l->device_copy);
    l->device_copy = NULL;
    l->device_uses = 0;
}

static void gpu_linear_set_dtype(linear *l, compute_dtype dtype, int uses) {
    if (dtype == DTYPE_FP32 || !uses || !l->w) {
        gpu_linear_free(l);
        return;
    }
    size_t n = (size_t)l->OC * l->C;
    if (!l->device_copy) {
        l->device_copy = cuda_alloc(n * 2);
        if (!l->device_copy) check(-1);
    }
    l->device_uses = uses;
    check(cuda_to_bf16(l->device_copy, l->w, n));
}

static const void *copy_for(const linear *l, int use) { return l->device_uses & use ? l->device_copy : NULL; }

static void gpu_linear_forward(const linear *l, float *out, const float *inp, int N) {
    check(cuda_linear_forward(out, inp, l->w, copy_for(l, GEMM_FOR_FORWARD), l->b, N, l->OC, l->C));
}

static void gpu_linear_backward(const linear *l, float *dinp, float *dw, float *db, const float *dout,
                                const float *inp, int N, int accumulate, double *dw_sumsq) {
    check(cuda_linear_backward(dinp, dw, db, dout, inp, l->w, copy_for(l, GEMM_FOR_BACKWARD), N, l->OC, l->C,
                               accumulate, dw_sumsq));
}

/* ---- element-wise ----------------------------------------------------------------- */

static void gpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                  const float *b, int N, int C, float eps) {
    check(cuda_layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps));
}
static void gpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                   const float *w, const float *mean, const float *rstd, int N, int C) {
    check(cuda_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C));
}
static void gpu_gelu_forward(float *out, const float *inp, size_t N) { check(cuda_gelu_forward(out, inp, N)); }
static void gpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
    check(cuda_gelu_backward(dinp, inp, dout, N));
}
static void gpu_residual_forward(float *out, const float *a, const float *b, size_t N) {
    check(cuda_residual_forward(out, a, b, N));
}
static void gpu_embedding_forward(float *out, const float *wte, const uint32_t *ids, int T, int C) {
    check(cuda_embedding_forward(out, wte, ids, T, C));
}
static void gpu_embedding_backward(float *dwte, const float *dout, const uint32_t *ids, int T, int C) {
    check(cuda_embedding_backward(dwte, dout, ids, T, C));
}
static void gpu_gather_rows(float *out, const float *inp, const int *rows, int R, int C) {
    check(cuda_gather_rows(out, inp, rows, R, C));
}
static void gpu_scatter_add_rows(float *out, const float *inp, const int *rows, int R, int C) {
    check(cuda_scatter_add_rows(out, inp, rows, R, C));
}

/* ---- attention -------------------------------------------------------------------- */

static void gpu_attention_forward(const neox_model *m, const device_pack *p, float *qkv, float *att, float *atty) {
    const neox_config *c = &m->cfg;
    check(cuda_attention_forward(qkv, att, atty, m->rope_cos, m->rope_sin, p->host->seq_start, p->host->nseq,
                                 c->num_heads, c->head_dim, c->rotary_ndims, c->hidden_size));
}

static size_t gpu_attention_scratch(const neox_model *m, size_t max_sq) { return (size_t)m->cfg.num_heads * max_sq; }

static void gpu_attention_backward(const neox_model *m, const device_pack *p, float *dqkv, float *scratch,
                                   const float *datty, const float *qkv, const float *att) {
    const neox_config *c = &m->cfg;
    check(cuda_attention_backward(dqkv, scratch, datty, qkv, att, m->rope_cos, m->rope_sin, p->host->seq_start,
                                  p->host->nseq, c->num_heads, c->head_dim, c->rotary_ndims, c->hidden_size));
}

/* The step's sequence descriptors, made and uploaded at its first layer
 * (the caches do not move within a step: decoder_step reserves first). */
static struct {
    cuda_decode_seq *host, *dev;
    int cap, max_pos;
} steps;

static void gpu_attention_decode(neox_decoder *d, int l, const decode_rows *rows, float *qkv, float *atty,
                                 int here) {
    const neox_config *c = &d->m->cfg;
    int R = 0;
    for (int b = 0; b < rows->nseq; b++) R += rows->count[b];
    if (l == 0) {
        if (rows->nseq > steps.cap) {
            gpu_release(steps.dev);
            free(steps.host);
            steps.cap = rows->nseq * 2;
            steps.host = (cuda_decode_seq *)malloc((size_t)steps.cap * sizeof *steps.host);
            steps.dev = (cuda_decode_seq *)cuda_alloc((size_t)steps.cap * sizeof *steps.dev);
            if (!steps.host || !steps.dev) check(-1);
        }
        steps.max_pos = 0;
        int row = 0;
        for (int b = 0; b < rows->nseq; b++) {
            int s = rows->slot[b];
            steps.host[b] = (cuda_decode_seq){d->k[s], d->v[s], d->room[s], d->len[s], row, rows->count[b]};
            row += rows->count[b];
            if (d->len[s] + rows->count[b] > steps.max_pos) steps.max_pos = d->len[s] + rows->count[b];
        }
        check(cuda_to_device(steps.dev, steps.host, (size_t)rows->nseq * sizeof *steps.dev));
    }
    check(cuda_attention_decode(atty, qkv, steps.dev, rows->nseq, R, steps.max_pos, l, d->m->rope_cos,
                                d->m->rope_sin, c->num_heads, c->head_dim, c->rotary_ndims));
}

/* Caches [L, NH, room, hd]: each head's first len positions move over. */
static void gpu_decoder_reserve(neox_decoder *d, int slot, int room) {
    const neox_config *c = &d->m->cfg;
    size_t hd = (size_t)c->head_dim, heads = (size_t)c->num_layers * c->num_heads;
    float **caches[2] = {&d->k[slot], &d->v[slot]};
    for (int i = 0; i < 2; i++) {
        float *fresh = (float *)cuda_alloc(heads * room * hd * sizeof(float));
        if (!fresh) check(-1);
        for (size_t h = 0; h < heads && d->len[slot] > 0; h++)
            check(cuda_copy(fresh + h * room * hd, *caches[i] + h * d->room[slot] * hd,
                            (size_t)d->len[slot] * hd * sizeof(float)));
        if (*caches[i]) {
            check(cuda_sync()); /* the copies read the old cache */
            cuda_free(*caches[i]);
        }
        *caches[i] = fresh;
    }
}

/* ---- loss and optimizer ------------------------------------------------------------ */

static double *loss_sum;

static double gpu_crossentropy(float *logits, const uint32_t *targets, int N, int V, float scale, int backward) {
    if (!loss_sum && !(loss_sum = (double *)cuda_alloc(sizeof(double)))) check(-1);
    check(cuda_zero(loss_sum, sizeof(double)));
    check(backward ? cuda_crossentropy_forward_backward(logits, targets, N, V, scale, loss_sum)
                   : cuda_crossentropy_forward(logits, targets, N, V, loss_sum));
    double s;
    check(cuda_to_host(&s, loss_sum, sizeof s));
    return s;
}

static void gpu_sum_squares(const float *x, size_t n, double *acc) { check(cuda_sum_squares(x, n, acc)); }

static void gpu_adamw_step(trainer *t, const adamw_consts *k) {
    neox_model *m = t->model;
    for (int i = 0; i < t->nspans; i++) {
        const param_span *s = &t->spans[i];
        check(cuda_adamw(k, m->params + s->offset, t->grad + s->offset, t->adam_m + s->offset,
                         t->adam_v + s->offset, s->count, s->decay));
    }
    for (int i = 0; i < m->num_tensors; i++) {
        linear *l = m->tensor_linear[i];
        if (l && l->device_copy) check(cuda_to_bf16(l->device_copy, l->w, (size_t)l->OC * l->C));
    }
}

static device_ops gpu;

extern "C" const device_ops *tunepipe_cuda_device(char *err, size_t errlen) {
    if (cuda_ops_init()) {
        snprintf(err, errlen, "%s", cuda_ops_last_error());
        return NULL;
    }
    gpu.name = "cuda";
    gpu.host_memory = 0;
    gpu.alloc = gpu_alloc;
    gpu.release = gpu_release;
    gpu.upload = gpu_upload;
    gpu.download = gpu_download;
    gpu.copy = gpu_copy;
    gpu.zero = gpu_zero;
    gpu.linear_set_dtype = gpu_linear_set_dtype;
    gpu.linear_free = gpu_linear_free;
    gpu.linear_forward = gpu_linear_forward;
    gpu.linear_backward = gpu_linear_backward;
    gpu.layernorm_forward = gpu_layernorm_forward;
    gpu.layernorm_backward = gpu_layernorm_backward;
    gpu.gelu_forward = gpu_gelu_forward;
    gpu.gelu_backward = gpu_gelu_backward;
    gpu.residual_forward = gpu_residual_forward;
    gpu.embedding_forward = gpu_embedding_forward;
    gpu.embedding_backward = gpu_embedding_backward;
    gpu.gather_rows = gpu_gather_rows;
    gpu.scatter_add_rows = gpu_scatter_add_rows;
    gpu.attention_forward = gpu_attention_forward;
    gpu.attention_scratch = gpu_attention_scratch;
    gpu.attention_backward = gpu_attention_backward;
    gpu.attention_decode = gpu_attention_decode;
    gpu.decoder_reserve = gpu_decoder_reserve;
    gpu.crossentropy = gpu_crossentropy;
    gpu.sum_squares = gpu_sum_squares;
    gpu.adamw_step = gpu_adamw_step;
    gpu.decode_layer = NULL;
    return &gpu;
}

/* The card, for -v and the logs. */
extern "C" const char *tunepipe_cuda_device_name(void) { return cuda_ops_device_name(); }
