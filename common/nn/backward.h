/* backward.h — the backward pass of GPT-NeoX for training: the backward of
 * each op in ops.h, the fused softmax cross-entropy, and model_backward
 * over the activations of a packed forward (model_forward_pack,
 * forward.h). A linear layer's backward is linear_backward (linear.h).
 * Shapes are in the comment above each function; "+=" marks an output that accumulates (weight gradients do, over packs). */
#ifndef TUNEPIPE_BACKWARD_H
#define TUNEPIPE_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"

/* dinp [N, C] +=, dw, db [C] +=; dout, inp [N, C]; w [C]; mean, rstd [N]
 * from layernorm_forward. */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C);

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

/* The activations of a forward and the backward's scratch: dresid [T, C],
 * dln [T, C], datty [T, C], dqkv [T, 3C], dfch [T, I],
 * datt (the device's attention_scratch), dlnf_rows [R, C]; on the
 * model's device. */
typedef struct {
    neox_acts f;
    size_t cap_T, cap_rows, cap_datt;
    float *dresid, *dln, *datty, *dqkv, *dfch, *datt, *dlnf_rows;
} train_acts;

void train_acts_free(train_acts *a);

/* Backward of model_forward_pack, given a->f.logits already turned into the
 * gradient of the loss (the device's crossentropy): accumulates the
 * parameter gradients into grads (views of a block laid out like
 * m->params, see model_param_views), or overwrites them when !accumulate
 * (the first pack of a step: no pass to zero them, no reading zeros back).
 * The products are in m's dtype, as the forward's, on m's device. sumsq
 * (a device double; may be NULL; only on a step's last pack) += the sum
 * of the squares of the linear layers' weight gradients
 * (model_is_linear_weight), taken as the products write them. */
void model_backward(const neox_model *m, const neox_params *grads, train_acts *a, const device_pack *pack,
                    int accumulate, double *sumsq);
/* On a device with head_loss (device.h), after model_forward_trunk: the
 * logits, their cross-entropy (the sum over the loss rows is returned)
 * and its gradient scaled by scale, then model_backward, with embed_out's
 * product and its backward a chunk of rows at a time. */
double model_loss_backward(const neox_model *m, const neox_params *grads, train_acts *a, const device_pack *pack,
                           float scale, int accumulate, double *sumsq);

#endif
