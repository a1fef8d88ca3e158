/* device.h — the seam between the model code and the processor it runs on.
 *
 * The forward (forward.c), the backward (backward.c), the trainer and the
 * decoder (kvcache.c) are written once, over the operations below; a
 * device supplies them. The CPU (device_cpu.c) is the first device: its
 * "device memory" is host memory and its ops are those of ops.h,
 * backward.h, linear.h and optim.h on the worker pool. A GPU device
 * (common/cuda/, loaded at run time by device_open) keeps the weights,
 * activations, gradients, AdamW moments and KV caches in its own memory
 * and enqueues every op on one stream: nothing returns to the host inside
 * a step but the loss sums and the sampled logits (or, decoding
 * greedily, the chosen tokens).
 *
 * Every pointer an op takes is device memory unless its comment says
 * "host". Ops are asynchronous on a GPU; download waits for the work
 * enqueued before it. Shapes are those of the CPU ops the comments name. */
#ifndef TUNEPIPE_DEVICE_H
#define TUNEPIPE_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "linear.h"
#include "optim.h"

struct neox_model;
struct neox_decoder;
struct trainer;
struct layer_bufs;
struct layer_attention;

/* A pack of sequences (forward.h's neox_pack) as a device sees it: the
 * host pack, and device copies of what ops read on the device. */
typedef struct {
    const struct neox_pack *host;
    const uint32_t *ids, *row_target;   /* [T], [nrows] */
    const int *row_pos;                 /* [nrows] */
} device_pack;

/* The new rows of a decoding step: sequence b is decoder slot slot[b],
 * its count[b] rows after those of sequences 0..b-1; host arrays. */
typedef struct {
    int nseq;
    const int *slot, *count;
} decode_rows;

typedef struct device_ops {
    const char *name;                   /* "cpu", "cuda" */
    const char *card;                   /* the processor, for -v ("NVIDIA H100 80GB HBM3"); NULL: the host's */
    int host_memory;                    /* its memory is the host's: no copies needed */
    /* bytes of device memory held at once at most so far (NULL: not kept) */
    size_t (*peak_memory)(void);
    /* memory */
    void *(*alloc)(size_t bytes);       /* uninitialized; NULL when out of memory */
    void (*release)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*zero)(void *dst, size_t bytes);
    /* Host memory that download and upload move fastest (page-locked on a
     * GPU), for what crosses every step: the logits. NULL: malloc's. */
    void *(*host_alloc)(size_t bytes);
    void (*host_release)(void *p);
    /* the linear layers (linear.h): their copies for a dtype, their products */
    void (*linear_set_dtype)(linear *l, compute_dtype dtype, int uses);
    void (*linear_free)(linear *l);
    void (*linear_forward)(const linear *l, float *out, const float *inp, int N);
    void (*linear_backward)(const linear *l, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, int N, int accumulate, double *dw_sumsq);
    /* element-wise (ops.h, backward.h) */
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int N, int C, float eps);
    void (*layernorm_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, int N, int C);
    void (*gelu_forward)(float *out, const float *inp, size_t N);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t N);
    void (*residual_forward)(float *out, const float *a, const float *b, size_t N);
    /* out [T, C] = rows ids of wte; dwte rows p's ids += dout [T, C], each
     * row's additions in the pack's order */
    void (*embedding_forward)(float *out, const float *wte, const uint32_t *ids, int T, int C);
    void (*embedding_backward)(float *dwte, const float *dout, const device_pack *p, int C);
    /* out [R, C] = inp rows rows[r]; out rows rows[r] += inp [R, C] (rows distinct) */
    void (*gather_rows)(float *out, const float *inp, const int *rows, int R, int C);
    void (*scatter_add_rows)(float *out, const float *inp, const int *rows, int R, int C);
    /* Rotary then causal attention of every sequence of the pack (forward.h:
     * qkv rotated in place, att the probabilities, atty the output). */
    void (*attention_forward)(const struct neox_model *m, const device_pack *p, float *qkv, float *att,
                              float *atty);
    /* Its backward: dqkv [T, 3C] from datty [T, C], before rotary. scratch
     * holds attention_scratch(max T_s²) floats. */
    size_t (*attention_scratch)(const struct neox_model *m, size_t max_sq);
    void (*attention_backward)(const struct neox_model *m, const device_pack *p, float *dqkv,
                               float *scratch, const float *datty, const float *qkv, const float *att);
    /* A decoding step's attention in layer l: rotate the new rows' q and k,
     * append k and v to each slot's cache, attend over it (kvcache.h).
     * here: on the calling thread alone (the CPU's fused step). */
    void (*attention_decode)(struct neox_decoder *d, int l, const decode_rows *rows, float *qkv,
                             float *atty, int here);
    /* Grows a slot's cache to room positions, keeping its len (kvcache.h). */
    void (*decoder_reserve)(struct neox_decoder *d, int slot, int room);
    /* The loss rows' cross-entropy summed (returned, host) and, when
     * backward, logits turned into scale * (softmax - onehot). */
    double (*crossentropy)(float *logits, const uint32_t *targets, int N, int V, float scale, int backward);
    /* crossentropy fused with the loss rows' embed_out, and that product's
     * backward: logits = inp [R, C] · headᵀ, the cross-entropy sum over
     * the R rows returned (host), dinp [R, C] = the gradient at inp and dw
     * (+)= head's weight gradient, of scale * that sum; *dw_sumsq (a device
     * double; may be NULL) += Σ dw² after. A chunk of rows at a time: the
     * [R, V] logits are never held at once. NULL: the trainer projects
     * all rows, then crossentropy, then linear_backward. */
    double (*head_loss)(const linear *head, const float *inp, const uint32_t *targets, int R, float scale,
                        float *dinp, float *dw, int accumulate, double *dw_sumsq);
    /* *acc (a device double) += Σ x² over [0, n), accumulated in double. */
    void (*sum_squares)(const float *x, size_t n, double *acc);
    /* One AdamW step over the trainer's parameters (optim.h), re-making the
     * linear layers' copies from the updated weights. */
    void (*adamw_step)(struct trainer *t, const adamw_consts *k);
    /* Greedy decoding's choice made on the device: host_ids [R] (host) =
     * the argmax of each row of logits [R, V], as sampler_next picks it
     * without penalties. NULL: the logits cross and the sampler picks. */
    void (*argmax_rows)(uint32_t *host_ids, const float *logits, int R, int V);
    /* A decoding step's bracket (NULL where a device has no use for it).
     * decode_begin comes before the step's first op, the tokens uploaded;
     * it returns 1 when it has enqueued the whole step itself (replaying
     * one it recorded: one new row for each of as many sequences, the
     * same buffers, the per-step values read from device memory) and the
     * ops are not called; otherwise decode_end follows the last op.
     * decoder_forget frees what the device keeps for d. */
    int (*decode_begin)(struct neox_decoder *d, const decode_rows *rows);
    void (*decode_end)(struct neox_decoder *d);
    void (*decoder_forget)(struct neox_decoder *d);
    /* A device's own decoding step of layer l (forward.h's layer_forward
     * with one new row per sequence), or 0 where it has none for this
     * layer, its dtype or its rows: then the generic one runs. */
    int (*decode_layer)(const struct neox_model *m, int l, const struct layer_bufs *b, int R,
                        const struct layer_attention *att);
} device_ops;

extern const device_ops device_cpu;

/* The device called name ("cpu", "cuda"), or NULL with a one-line reason
 * in err: "cuda" loads the CUDA backend built beside the tools (or named by
 * TUNEPIPE_CUDA_LIB) and needs a GPU and its driver. */
const device_ops *device_open(const char *name, char *err, size_t errlen);
/* dev->alloc, ending the process when dev's memory is short (as
 * xmalloc does for the host's). */
void *device_alloc(const device_ops *dev, size_t bytes);
/* dev->host_alloc (else malloc), ending the process when memory is short;
 * device_host_release frees it. */
void *device_host_alloc(const device_ops *dev, size_t bytes);
void device_host_release(const device_ops *dev, void *p);
/* Frees *p and allocates n floats there (device_alloc). */
void device_regrow(const device_ops *dev, float **p, size_t n);

/* -v's lines: where the products run, and at the end the device memory
 * the process held at most (nothing on the CPU, whose tools report RSS). */
void device_tell_kernels(const device_ops *dev, int bf16);
void device_tell_peak_memory(const device_ops *dev);

/* The tools' device when --device is not given: TUNEPIPE_DEVICE, else "cpu". */
const char *device_default_name(void);

#endif
