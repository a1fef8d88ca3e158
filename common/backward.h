/* backward.h — the backward pass of GPT-NeoX for training: the backward of
 * each op in ops.h, the fused softmax cross-entropy, and model_backward
 * over the activations of a packed forward (train_forward in trainer.h).
 *
 * A pack is several sequences laid end to end: the per-token ops (layer
 * norms, linear layers, GELU) run over all of its T tokens at once, so the
 * matrix products are large; rotary positions and causal attention restart
 * at each sequence. Shapes are in the comment above each function;
 * "+=" marks an output that accumulates (weight gradients do, over packs). */
#ifndef TUNEPIPE_BACKWARD_H
#define TUNEPIPE_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h"
#include "model.h"

/* dinp [N, C] +=, dw, db [C] +=; dout, inp [N, C]; w [C]; mean, rstd [N]
 * from layernorm_forward. */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C);

/* The bf16 copies of the linear layers' weights, for training with the
 * products of gemm.h (bf16 inputs, fp32 accumulation; fp32 master weights
 * and optimizer). Functions below take a gemm_weight *gw: NULL computes in
 * fp32 with cblas_sgemm, else through gw. */
typedef struct {
    gemm_weight *qkv, *attn_proj, *fc, *fc_proj; /* [L] */
    gemm_weight lm_head;
} model_gemm;

void model_gemm_init(model_gemm *g, const neox_model *m);
/* Converts the current fp32 weights: after every change to them. */
void model_gemm_pack(model_gemm *g, const neox_model *m);
void model_gemm_free(model_gemm *g, const neox_model *m);

/* out [N, OC] = inp [N, C] · w[OC, C]ᵀ + bias [OC] (bias may be NULL), the
 * fp32 product split over the worker threads (see parallel_sgemm). */
void train_matmul_forward(float *out, const float *inp, const float *w, const gemm_weight *gw,
                          const float *bias, int N, int C, int OC);

/* Of out [N, OC] = inp [N, C] · w[OC, C]ᵀ + bias:
 * dinp [N, C] = dout · w (overwritten; skipped when NULL),
 * dw [OC, C] += doutᵀ · inp, dbias [OC] += column sums of dout (when
 * not NULL). */
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                     const float *inp, const float *w, const gemm_weight *gw, int N, int C, int OC);

/* dqkv [T, NH*3*hd] in place: the gradient with respect to the rotated q
 * and k becomes the gradient with respect to them before rotary_forward
 * (the transposed rotation). Same arguments as rotary_forward. */
void rotary_backward(float *dqkv, const float *cos, const float *sin, int pos0,
                     int T, int NH, int hd, int rot);

/* Causal self-attention of one sequence, as attention_forward:
 * dqkv [T, NH*3*hd] (overwritten) from dout [T, NH*hd], qkv (rotated) and
 * att [NH, T, T]; datt [parallel_threads(), T, T] is scratch (heads run on
 * the worker threads). */
void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                        const float *att, int T, int NH, int hd);

/* dinp [N] = gelu'(inp) * dout (exact GELU). dinp may alias dout. */
void gelu_backward(float *dinp, const float *inp, const float *dout, int N);

/* dwte [V, C] += dout [T, C] row t into row ids[t]. */
void embedding_backward(float *dwte, const float *dout, const uint32_t *ids, int T, int C);

/* logits [N, V] becomes scale * (softmax(logits) - onehot(targets)), the
 * gradient of scale * sum of cross-entropies. Returns the sum over the N
 * rows of -log softmax(logits)[target] (before scaling), in double. */
double crossentropy_forward_backward(float *logits, const uint32_t *targets, int N, int V,
                                     float scale);
/* The same sum without the gradient (logits left as they are). */
double crossentropy_forward(const float *logits, const uint32_t *targets, int N, int V);

/* A pack of sequences and the rows the loss is computed on. */
typedef struct {
    int T;                 /* tokens, all sequences */
    int nseq;
    const int *seq_start;  /* [nseq + 1]: sequence s is tokens seq_start[s] .. seq_start[s+1]-1 */
    const uint32_t *ids;   /* [T] */
    int nrows;             /* loss rows */
    const int *row_pos;    /* [nrows] the pack position whose logits predict ... */
    const uint32_t *row_target; /* [nrows] ... this token */
} train_pack;

/* Activations of train_forward over a pack (T tokens, R = nrows), the
 * same quantities as neox_acts for one sequence:
 *   resid [L+1, T, C], ln1 [L, T, C], ln1_mean, ln1_rstd [L, T],
 *   qkv [L, T, 3C] (rotated), att [L, A] where A = NH * sum of T_s² and
 *   sequence s's [NH, T_s, T_s] block follows those of the earlier ones,
 *   atty [L, T, C], resid_mid [L, T, C] (sequential residual only, else
 *   NULL), ln2 [L, T, C], ln2_mean, ln2_rstd [L, T], fch, fch_gelu [L, T, I],
 *   lnf [T, C], lnf_mean, lnf_rstd [T],
 *   lnf_rows [R, C] (lnf at row_pos), logits [R, V] (the gradient after
 *   the loss).
 * And the backward's scratch: dresid [T, C], dln [T, C], datty [T, C],
 * dqkv [T, 3C], dfch [T, I], datt [threads, max T_s²], dlnf_rows [R, C]. */
typedef struct {
    size_t cap_T, cap_att, cap_rows, cap_datt;
    int T, A, R;
    float *resid, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *resid_mid;
    float *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu;
    float *lnf, *lnf_mean, *lnf_rstd, *lnf_rows, *logits;
    float *dresid, *dln, *datty, *dqkv, *dfch, *datt, *dlnf_rows;
} train_acts;

/* Grows the buffers to hold pack (keeps them when big enough). */
void train_acts_reserve(train_acts *a, const neox_config *cfg, const train_pack *pack);
void train_acts_free(train_acts *a);

/* Backward of train_forward, given a->logits already turned into the
 * gradient of the loss (crossentropy_forward_backward): accumulates the
 * parameter gradients into grads (views of a block laid out like
 * m->params, see model_param_views). g: NULL for fp32 products, else the
 * packed bf16 weights. */
void model_backward(const neox_model *m, const model_gemm *g, const neox_params *grads,
                    train_acts *a, const train_pack *pack);

#endif
