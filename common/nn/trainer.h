/* trainer.h — full fine-tuning of a GPT-NeoX model: one optimizer step
 * over a set of examples (token-weighted cross-entropy, global-norm
 * clipping, AdamW), and eval loss. The forward is model_forward_pack
 * (forward.h), the backward model_backward (backward.h).
 *
 * The examples of a step are laid end to end in packs of up to
 * pack_tokens tokens (an example longer than that is a pack of its own),
 * so the matrix products see hundreds of rows even at --batch 1; padding
 * never enters (the dataset dropped it). Since the step loss is the sum of
 * the cross-entropies of all target tokens of the step divided by their
 * count, how examples are grouped into micro-batches or packs changes
 * nothing but float rounding. */
#ifndef TUNEPIPE_TRAINER_H
#define TUNEPIPE_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "backward.h"
#include "stream/dataset.h"
#include "model.h"
#include "optim.h"

/* Default pack size: large enough for efficient matrix products, small
 * enough that activations of pythia-410m stay around a gigabyte. */
#define TRAIN_PACK_TOKENS 512

/* A piece of the optimizer step: parameters [begin, end) of the flat
 * block; when gw is set, they are rows [row0, row1) of its weight, whose
 * bf16 copies the step re-packs. */
typedef struct {
    size_t begin, end;
    int decay;
    gemm_weight *gw;
    int row0, row1;
} update_piece;

typedef struct trainer {
    neox_model *model;
    float *grad, *adam_m, *adam_v;  /* flat blocks like model->params */
    neox_params grad_views;
    param_span *spans;              /* one per tensor, decay on 2-D weights */
    int nspans;
    update_piece *pieces;           /* the step's update, in order */
    int npieces;
    adamw_hparams adam;
    double clip;                    /* max global norm; <= 0: none */
    int pack_tokens;
    long step;                      /* optimizer steps taken */
    /* seconds spent, cumulative (for benchmarks) */
    double time_forward, time_backward, time_optimizer;
    train_acts acts;
    device_pack_buf dpack;          /* the current pack on the model's device */
    double *sumsq;                  /* a device double: the step's Σ grad² */
    /* pack assembly */
    int *seq_start, *row_pos;
    uint32_t *ids, *row_target;
    size_t cap_seq, cap_tokens, cap_rows;
} trainer;

/* The model stays the caller's; moments start at zero. Moves OpenBLAS's
 * threads into the worker pool (parallel_take_blas_threads): from then on
 * OpenBLAS runs single-threaded in this process. */
void trainer_init(trainer *t, neox_model *model, const adamw_hparams *adam, double clip);
/* Also on a zeroed trainer never initialized (a run that failed first). */
void trainer_free(trainer *t);
/* Computes the linear layers' products in bf16 with fp32 accumulation
 * (gemm.h: AMX where the CPU has it), as Hugging Face's bf16=True autocast
 * does; weights, gradients and AdamW stay fp32. Faster, not bit-exact.
 * Sets the model's dtype (model_set_dtype: the copies are made from the
 * current weights); each step then re-packs the rows it updates. */
void trainer_use_bf16(trainer *t);
/* The products' kernel path: "amx", "avx512bf16" (bf16) or "fp32". */
const char *trainer_kernel_name(const trainer *t);

typedef struct {
    double loss;        /* mean CE over the step's target tokens */
    double grad_norm;   /* global norm before clipping */
    size_t tokens;      /* tokens forwarded */
    size_t targets;     /* target tokens */
} step_result;

/* Loss and gradients of examples ex[0..n) of d, without an update;
 * gradients are left in t->grad (scaled for the token-weighted mean),
 * overwriting what it held. n >= 1. */
step_result trainer_gradients(trainer *t, const dataset *d, const size_t *ex, int n);
/* trainer_gradients, clipping, and one AdamW step at learning rate lr. */
step_result trainer_step(trainer *t, const dataset *d, const size_t *ex, int n, double lr);

/* The seam of data parallelism (train/dist.h over MPI; NCCL on device
 * buffers for a GPU backend): sums the gradient block grad[0..n) and
 * scalars[0..2) (a share's loss sum and tokens forwarded) over the
 * processes, in place, the same bits on every one. */
typedef void grad_reduce_fn(float *grad, size_t n, double scalars[2]);

/* One process's share of a data-parallel step. */
typedef struct {
    grad_reduce_fn *reduce;
    size_t targets;     /* target tokens of the whole step: the loss's divisor */
} step_share;

/* trainer_step on this process's share ex[0..n) of a step: its gradients,
 * scaled by 1 / share->targets, are summed by share->reduce between the
 * backward and the norm, clipping and AdamW; the result is the whole
 * step's. share NULL: trainer_step. The reduce gets the model's gradient
 * block itself, so a shared step runs on the CPU device only. */
step_result trainer_step_share(trainer *t, const dataset *d, const size_t *ex, int n, double lr,
                               const step_share *share);

/* Sum of target CE over examples ex[0..n) of d (forward only); *targets
 * gets their count. per_example (may be NULL) gets each example's mean. */
double trainer_loss(trainer *t, const dataset *d, const size_t *ex, size_t n,
                    size_t *targets, double *per_example);

#endif
