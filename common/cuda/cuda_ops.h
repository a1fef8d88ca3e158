/* cuda_ops.h — the GPU twins of the model's ops (ops.h, backward.h,
 * linear.h, optim.h), on device pointers, fp32 unless said, same shapes
 * and layouts as the CPU ops. Built into libtunepipe-cuda.so (loaded by
 * the tools at run time, so they never link CUDA).
 *
 * Every op is enqueued on the one stream of the module (cuda_ops_init)
 * and returns 0, or -1 with cuda_ops_last_error() saying why; none waits
 * for the GPU, except the copies to the host, cuda_sync, and the rare
 * growth of a scratch buffer kept inside the module (which waits for the
 * stream before freeing the old one). Once the scratch buffers have
 * reached their sizes (one warm-up step), a step's ops can be captured
 * into a CUDA graph on cuda_ops_stream(). */
#ifndef TUNEPIPE_CUDA_OPS_H
#define TUNEPIPE_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates the stream, the cuBLAS handles and their workspace on the
 * current device; again after success does nothing. Without a GPU or
 * driver: -1, and the error says CUDA's reason. */
int cuda_ops_init(void);
void cuda_ops_shutdown(void);
/* The cudaStream_t everything runs on. */
void *cuda_ops_stream(void);
/* The last error, one line (e.g. "cuda_linear_forward: cublasLtMatmul: ..."). */
const char *cuda_ops_last_error(void);
/* The device's name, e.g. "NVIDIA H100 80GB HBM3". */
const char *cuda_ops_device_name(void);
/* The most bytes cuda_alloc (and the module's scratch) held at once. */
size_t cuda_ops_peak_bytes(void);
/* 1 when TUNEPIPE_CUDA_PROFILE asked for the per-op table at exit
 * (cuda_profile.cu); recording steps is then off. */
int cuda_profiling(void);

/* ---- memory ---- */
void *cuda_alloc(size_t bytes);                /* NULL on failure (error set) */
void cuda_free(void *p);
/* Page-locked host memory: cuda_to_host and cuda_to_device at full speed. */
void *cuda_host_alloc(size_t bytes);           /* NULL on failure (error set) */
void cuda_host_free(void *p);
int cuda_to_device(void *dst, const void *src, size_t bytes);  /* synchronous */
int cuda_to_host(void *dst, const void *src, size_t bytes);    /* synchronous */
int cuda_copy(void *dst, const void *src, size_t bytes);       /* device to device, async */
int cuda_zero(void *p, size_t bytes);                          /* async */
int cuda_sync(void);                                           /* waits for the stream */

/* ---- linear layers (linear.h) ----
 * out [N, OC] = inp [N, C] · w [OC, C]ᵀ + b [OC] (b may be NULL).
 * w_bf16 NULL: fp32 product, no TF32. Otherwise w_bf16 [OC, C] bf16
 * (cuda_to_bf16 of w) and inp is rounded to bf16; fp32 accumulation and
 * output. Up to 8 rows (decoding), with C % 8 == 0 and inp and the weight
 * 16-byte aligned: one kernel streams the weight once, bias included;
 * otherwise cuBLASLt with the bias in its epilogue. */
int cuda_linear_forward(float *out, const float *inp, const float *w, const void *w_bf16,
                        const float *b, int N, int OC, int C);
/* dinp [N, C] = dout · w (skipped when NULL), dw [OC, C] (+)= doutᵀ · inp,
 * db [OC] (+)= column sums of dout (when not NULL): "=" when !accumulate.
 * With w_bf16, both products take bf16 inputs (dout, inp rounded), fp32
 * accumulation. dw_sumsq: a DEVICE double, += Σ dw² of the result. */
int cuda_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const void *w_bf16, int N, int OC, int C, int accumulate,
                         double *dw_sumsq);
/* dst [n] bf16 = src [n] rounded to nearest even (gemm_fp32_to_bf16). */
int cuda_to_bf16(void *dst, const float *src, size_t n);

/* ---- element-wise ops (ops.h, backward.h) ---- */
int cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps);
/* dinp +=, dw += and db += (deterministic: per-block sums, then summed
 * over blocks in order). */
int cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C);
int cuda_gelu_forward(float *out, const float *inp, size_t N);              /* out may be inp */
int cuda_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N); /* dinp may be dout */
int cuda_residual_forward(float *out, const float *a, const float *b, size_t N);
/* out [T, C] = wte rows ids [T] (device). */
int cuda_embedding_forward(float *out, const float *wte, const uint32_t *ids, int T, int C);
/* dwte [V, C] += dout [T, C] row t into row ids[t], ids a HOST array:
 * the rows of each token added in row order, as the CPU does (the same
 * bits); waits for the stream once, to upload the grouping. */
int cuda_embedding_backward(float *dwte, const float *dout, const uint32_t *ids, int T, int C);
/* out [R, C] = inp rows rows[r] (device int). */
int cuda_gather_rows(float *out, const float *inp, const int *rows, int R, int C);
/* out rows rows[r] += inp [R, C] row r; rows distinct within a call. */
int cuda_scatter_add_rows(float *out, const float *inp, const int *rows, int R, int C);

/* ---- attention over a pack (forward.h) ----
 * qkv [T, 3C] (HF per-head q|k|v), rotated in place at positions 0..n-1
 * of each sequence; att: per sequence s its [NH, n_s, n_s] probabilities
 * after the earlier sequences' blocks; out [T, C] heads merged.
 * seq_start_host [nseq + 1] on the HOST. C = NH * hd; cos, sin
 * [max_positions, rot/2] on the device. */
int cuda_attention_forward(float *qkv, float *att, float *out, const float *rope_cos,
                           const float *rope_sin, const int *seq_start_host, int nseq, int NH,
                           int hd, int rot, int C);
/* dqkv [T, 3C] overwritten: the gradient at qkv before the rotation.
 * datt_scratch: NH * max_s n_s² floats. */
int cuda_attention_backward(float *dqkv, float *datt_scratch, const float *dout, const float *qkv,
                            const float *att, const float *rope_cos, const float *rope_sin,
                            const int *seq_start_host, int nseq, int NH, int hd, int rot, int C);

/* ---- decoding's fused ops ----
 * The products of a few rows (cuda_gemv_fits: N <= 8, C % 8 == 0, inp and
 * the weight 16-byte aligned), which stream the weight once, with the
 * next element-wise op done on their output: out = gelu(inp · wᵀ + b), or
 * out = res + (inp · wᵀ + b) (res may be out); the same arithmetic as
 * cuda_linear_forward then cuda_gelu_forward or cuda_residual_forward. */
enum { CUDA_EPILOGUE_NONE, CUDA_EPILOGUE_GELU, CUDA_EPILOGUE_ADD };
int cuda_gemv_fits(const float *inp, const void *w, int N, int C);
int cuda_linear_forward_fused(float *out, const float *inp, const float *w, const void *w_bf16, const float *b,
                              const float *res, int N, int OC, int C, int epilogue);
/* Two layer norms of the same rows (cuda_layernorm_forward twice, the
 * statistics computed once, not kept). */
int cuda_layernorm_forward2(float *out1, float *out2, const float *inp, const float *w1, const float *b1,
                            const float *w2, const float *b2, int N, int C, float eps);

/* ---- recorded work: CUDA graphs ----
 * cuda_record_begin starts capturing what the module enqueues (nothing
 * runs); cuda_record_end stops, makes the capture replayable into *rec
 * and launches it once. cuda_replay launches it again: the same kernels
 * with the same arguments, so whatever changes between replays must be
 * read by the kernels from device memory, and the buffers it uses must
 * stay where they were. */
int cuda_record_begin(void);
/* How many times a scratch buffer of the module has moved (grown): a
 * recording made before a move reads the old buffer, so it is stale. */
unsigned cuda_scratch_moves(void);
int cuda_record_end(void **rec);
int cuda_replay(void *rec);
void cuda_record_free(void *rec);

/* ---- cached decoding (kvcache.c) ----
 * One sequence of a step: its slot's caches, [L, NH, room, hd] each, keys
 * rotated; p0 positions already cached; its n new rows are rows
 * row0 .. row0+n-1 of the step's qkv and out. */
typedef struct {
    float *k, *v;
    int room, p0, row0, n;
} cuda_decode_seq;
/* Layer l of a step of R rows: seqs [nseq] a DEVICE array (upload it once
 * per step; every layer reads it), in row order. Rotates each new row's
 * q and k at positions p0.., appends k and v to the caches at p0.., and
 * writes out [R, C] = the attention of each new row i over positions
 * 0..p0+i of its sequence. qkv [R, 3C] is read only (left unrotated).
 * max_pos: at least the largest p0 + n (sizes the shared memory; a
 * recorded step passes the decoder's capacity). One launch for all rows
 * and heads. Needs hd % 4 == 0, hd <= 512, and qkv, out and the caches
 * 16-byte aligned (read and written four floats at a time). */
int cuda_attention_decode(float *out, const float *qkv, const cuda_decode_seq *seqs, int nseq, int R,
                          int max_pos, int l, const float *rope_cos, const float *rope_sin, int NH,
                          int hd, int rot);

/* ---- loss (backward.h) ----
 * logits [N, V] become scale * (softmax - onehot(targets)); targets [N]
 * device; loss_sum a DEVICE double += Σ_rows -log softmax[target] (rows
 * summed in order). */
int cuda_crossentropy_forward_backward(float *logits, const uint32_t *targets, int N, int V,
                                       float scale, double *loss_sum);
int cuda_crossentropy_forward(const float *logits, const uint32_t *targets, int N, int V,
                              double *loss_sum);
/* The cross-entropy fused with the vocabulary projection and its backward,
 * CUDA_HEAD_LOSS_ROWS rows at a time (the logits of one chunk held at
 * once, not [R, V]): for each chunk, logits = inp · wᵀ (cuda_linear_forward,
 * w_bf16f its bf16 copy or NULL), their cross-entropy into loss_sum and
 * gradient (cuda_crossentropy_forward_backward, scale), then that
 * chunk's dinp [R, C] and dw [V, C] (cuda_linear_backward with w_bf16b;
 * the chunks after the first add to dw, the first only when accumulate).
 * dw_sumsq (a DEVICE double; may be NULL) += Σ dw² after the last. */
#define CUDA_HEAD_LOSS_ROWS 256
int cuda_head_loss(float *dinp, float *dw, const float *inp, const uint32_t *targets, const float *w,
                   const void *w_bf16f, const void *w_bf16b, int R, int V, int C, float scale, int accumulate,
                   double *loss_sum, double *dw_sumsq);

/* ---- greedy decoding (sampler.h) ----
 * host_ids [R] (HOST) = each row's argmax of x [R, V] as sampler_next
 * picks it without penalties: the first largest, NaN never unless first.
 * Synchronous, like cuda_to_host. */
int cuda_argmax_rows(uint32_t *host_ids, const float *x, int R, int V);

/* ---- optimizer (optim.h) ----
 * adamw_update's arithmetic on elements [0, n), operation by operation. */
int cuda_adamw(const adamw_consts *k, float *param, const float *grad, float *m, float *v, size_t n,
               int decay);
/* out (a DEVICE double) += Σ x², in double, in a fixed order. */
int cuda_sum_squares(const float *x, size_t n, double *out);

#ifdef __cplusplus
}
#endif

#endif
