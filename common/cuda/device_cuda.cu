/* device_cuda.cu — the GPU as a device (nn/device.h), on the ops of
 * cuda_ops.h. libtunepipe-cuda.so exports tunepipe_cuda_device(), which
 * nn/device_open.c finds with dlsym. Everything stays on the GPU; the
 * host gets the loss sums, the squared gradient norm and the logits that
 * sampling reads (or, decoding greedily, the chosen tokens). An op's
 * failure (a CUDA error mid-run) ends the process with CUDA's message:
 * the tools cannot go on without their device. */
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
static void *gpu_host_alloc(size_t bytes) { return cuda_host_alloc(bytes); }

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
static void gpu_embedding_backward(float *dwte, const float *dout, const device_pack *p, int C) {
    check(cuda_embedding_backward(dwte, dout, p->host->ids, p->host->T, C));
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

/* What the GPU keeps for a decoder: the step's sequence descriptors,
 * uploaded by decode_begin and read by every layer's attention, and the
 * steps recorded so far, one for each number of sequences with one new
 * row each. A step is recorded the second time its shape comes (the
 * first grows the module's scratch buffers, which must not move within a
 * recording), and again when a scratch buffer has moved since; the
 * attention sizes its shared memory for the decoder's capacity, so a
 * recording holds for every length. */
typedef struct {
    cuda_decode_seq *host, *dev; /* [max_rows] */
    void **recorded;             /* [max_rows + 1] by nseq */
    unsigned *scratch_moves;     /* [max_rows + 1] cuda_scratch_moves() when recorded */
    unsigned char *seen;         /* [max_rows + 1] */
    int recording;               /* the nseq being recorded, or 0 */
} gpu_decoder;

/* TUNEPIPE_CUDA_GRAPHS=0 turns recording off (to measure what it saves). */
static int record_steps = 1;

static gpu_decoder *decoder_state(neox_decoder *d) {
    gpu_decoder *g = (gpu_decoder *)d->device_state;
    if (g) return g;
    size_t n = (size_t)d->max_rows;
    g = (gpu_decoder *)calloc(1, sizeof *g);
    if (g) {
        g->host = (cuda_decode_seq *)malloc(n * sizeof *g->host);
        g->dev = (cuda_decode_seq *)cuda_alloc(n * sizeof *g->dev);
        g->recorded = (void **)calloc(n + 1, sizeof *g->recorded);
        g->scratch_moves = (unsigned *)calloc(n + 1, sizeof *g->scratch_moves);
        g->seen = (unsigned char *)calloc(n + 1, 1);
    }
    if (!g || !g->host || !g->dev || !g->recorded || !g->scratch_moves || !g->seen) {
        fprintf(stderr, "cuda: out of memory for a decoder\n");
        exit(1);
    }
    d->device_state = g;
    return g;
}

static void gpu_decoder_forget(neox_decoder *d) {
    gpu_decoder *g = (gpu_decoder *)d->device_state;
    if (!g) return;
    for (int i = 0; i <= d->max_rows; i++) cuda_record_free(g->recorded[i]);
    free(g->recorded);
    free(g->scratch_moves);
    free(g->seen);
    free(g->host);
    gpu_release(g->dev);
    free(g);
    d->device_state = NULL;
}

static int gpu_decode_begin(neox_decoder *d, const decode_rows *rows) {
    gpu_decoder *g = decoder_state(d);
    int R = 0;
    for (int b = 0; b < rows->nseq; b++) {
        int s = rows->slot[b];
        g->host[b] = (cuda_decode_seq){d->k[s], d->v[s], d->room[s], d->len[s], R, rows->count[b]};
        R += rows->count[b];
    }
    check(cuda_to_device(g->dev, g->host, (size_t)rows->nseq * sizeof *g->dev));
    if (R != rows->nseq || !record_steps) return 0;
    if (g->recorded[R] && g->scratch_moves[R] == cuda_scratch_moves()) {
        check(cuda_replay(g->recorded[R]));
        return 1;
    }
    if (g->recorded[R]) { /* a scratch buffer grew since (a longer prefill): record again */
        cuda_record_free(g->recorded[R]);
        g->recorded[R] = NULL;
    }
    if (g->seen[R]) {
        check(cuda_record_begin());
        g->recording = R;
    }
    g->seen[R] = 1;
    return 0;
}

static void gpu_decode_end(neox_decoder *d) {
    gpu_decoder *g = (gpu_decoder *)d->device_state;
    if (!g->recording) return;
    check(cuda_record_end(&g->recorded[g->recording]));
    g->scratch_moves[g->recording] = cuda_scratch_moves();
    g->recording = 0;
}

static void gpu_attention_decode(neox_decoder *d, int l, const decode_rows *rows, float *qkv, float *atty,
                                 int here) {
    const neox_config *c = &d->m->cfg;
    const gpu_decoder *g = (const gpu_decoder *)d->device_state;
    int R = 0;
    for (int b = 0; b < rows->nseq; b++) R += rows->count[b];
    check(cuda_attention_decode(atty, qkv, g->dev, rows->nseq, R, d->capacity, l, d->m->rope_cos,
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

/* layer_forward's decoding step with a parallel residual (Pythia), when
 * every product streams its weight (a few rows): both layer norms in one
 * launch, GELU and the residual additions inside the products. Six
 * launches instead of ten, the same arithmetic: out = (in + attn) + mlp. */
static int gpu_decode_layer(const neox_model *m, int l, const layer_bufs *b, int R, const layer_attention *att) {
    const neox_config *c = &m->cfg;
    const neox_layer_params *lp = &m->p.layers[l];
    const neox_layer_linear *L = &m->lin[l];
    const linear *ops[4] = {&L->qkv, &L->attn_proj, &L->fc, &L->fc_proj};
    const float *inputs[4] = {b->ln1, b->atty, b->ln2, b->fch_gelu};
    if (!c->use_parallel_residual) return 0;
    for (int i = 0; i < 4; i++) {
        const void *w = copy_for(ops[i], GEMM_FOR_FORWARD);
        if (!cuda_gemv_fits(inputs[i], w ? w : ops[i]->w, R, ops[i]->C)) return 0;
    }
    check(cuda_layernorm_forward2(b->ln1, b->ln2, b->in, lp->ln1_w, lp->ln1_b, lp->ln2_w, lp->ln2_b, R,
                                  c->hidden_size, (float)c->layer_norm_eps));
    const struct {
        float *out;
        const float *res;
        int epilogue;
    } step[4] = {{b->qkv, NULL, CUDA_EPILOGUE_NONE},
                 {b->out, b->in, CUDA_EPILOGUE_ADD},
                 {b->fch_gelu, NULL, CUDA_EPILOGUE_GELU},
                 {b->out, b->out, CUDA_EPILOGUE_ADD}};
    for (int i = 0; i < 4; i++) {
        const linear *op = ops[i];
        check(cuda_linear_forward_fused(step[i].out, inputs[i], op->w, copy_for(op, GEMM_FOR_FORWARD), op->b,
                                        step[i].res, R, op->OC, op->C, step[i].epilogue));
        if (i == 0) att->fn(att->ctx, l, b->qkv, b->atty, 0);
    }
    return 1;
}

static void gpu_argmax_rows(uint32_t *host_ids, const float *logits, int R, int V) {
    check(cuda_argmax_rows(host_ids, logits, R, V));
}

/* ---- loss and optimizer ------------------------------------------------------------ */

/* The loss ops add their sum into one device double: zeroed before the
 * op, brought back after. */
static double *loss_sum;

static double *zeroed_loss_sum(void) {
    if (!loss_sum && !(loss_sum = (double *)cuda_alloc(sizeof(double)))) check(-1);
    check(cuda_zero(loss_sum, sizeof(double)));
    return loss_sum;
}

static double loss_sum_to_host(void) {
    double s;
    check(cuda_to_host(&s, loss_sum, sizeof s));
    return s;
}

static double gpu_crossentropy(float *logits, const uint32_t *targets, int N, int V, float scale, int backward) {
    double *sum = zeroed_loss_sum();
    check(backward ? cuda_crossentropy_forward_backward(logits, targets, N, V, scale, sum)
                   : cuda_crossentropy_forward(logits, targets, N, V, sum));
    return loss_sum_to_host();
}

static double gpu_head_loss(const linear *head, const float *inp, const uint32_t *targets, int R, float scale,
                            float *dinp, float *dw, int accumulate, double *dw_sumsq) {
    check(cuda_head_loss(dinp, dw, inp, targets, head->w, copy_for(head, GEMM_FOR_FORWARD),
                         copy_for(head, GEMM_FOR_BACKWARD), R, head->OC, head->C, scale, accumulate,
                         zeroed_loss_sum(), dw_sumsq));
    return loss_sum_to_host();
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
    const char *graphs = getenv("TUNEPIPE_CUDA_GRAPHS");
    record_steps = (!graphs || strcmp(graphs, "0") != 0) && !cuda_profiling();
    gpu.name = "cuda";
    gpu.card = cuda_ops_device_name();
    gpu.peak_memory = cuda_ops_peak_bytes;
    gpu.host_memory = 0;
    gpu.alloc = gpu_alloc;
    gpu.release = gpu_release;
    gpu.upload = gpu_upload;
    gpu.download = gpu_download;
    gpu.copy = gpu_copy;
    gpu.zero = gpu_zero;
    gpu.host_alloc = gpu_host_alloc;
    gpu.host_release = cuda_host_free;
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
    gpu.head_loss = gpu_head_loss;
    gpu.sum_squares = gpu_sum_squares;
    gpu.adamw_step = gpu_adamw_step;
    gpu.argmax_rows = gpu_argmax_rows;
    gpu.decode_begin = gpu_decode_begin;
    gpu.decode_end = gpu_decode_end;
    gpu.decoder_forget = gpu_decoder_forget;
    gpu.decode_layer = gpu_decode_layer;
    return &gpu;
}

/* The card, for -v and the logs. */
extern "C" const char *tunepipe_cuda_device_name(void) { return cuda_ops_device_name(); }
