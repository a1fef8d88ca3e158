/* optim.h — AdamW, global-norm gradient clipping and learning-rate
 * schedules, each matching what a Hugging Face Trainer run does:
 * torch.optim.AdamW, torch.nn.utils.clip_grad_norm_, and transformers'
 * get_linear_schedule_with_warmup / get_cosine_schedule_with_warmup /
 * get_constant_schedule_with_warmup. */
#ifndef TUNEPIPE_OPTIM_H
#define TUNEPIPE_OPTIM_H

#include <stddef.h>

typedef enum { SCHEDULE_LINEAR, SCHEDULE_COSINE, SCHEDULE_CONSTANT } lr_schedule;

/* "linear", "cosine" or "constant"; returns 0 for anything else. */
int lr_schedule_parse(const char *name, lr_schedule *out);
const char *lr_schedule_name(lr_schedule s);

/* The learning rate of optimizer step `step` (0-based) of `total`: warmup
 * rises linearly from 0 over the first `warmup` steps, then linear decays to
 * 0 at `total`, cosine follows half a cosine down to 0, constant stays. */
double lr_at_step(lr_schedule s, double base_lr, long step, long warmup, long total);

typedef struct {
    double beta1, beta2, eps;
    double weight_decay;   /* decoupled; applied only where a span says so */
} adamw_hparams;

#define ADAMW_DEFAULTS ((adamw_hparams){0.9, 0.999, 1e-8, 0.0})

/* A run of parameters in the flat block that share the decay flag (one
 * tensor: HF Trainer decays weights, not biases or LayerNorm). */
typedef struct {
    size_t offset, count;
    int decay;
} param_span;

/* One torch.optim.AdamW step, in pieces: adamw_step_consts gives the
 * step's constants (t is the 1-based step count after this update, for
 * bias correction; the gradient is taken times grad_factor, the clipping
 * factor, applied on the fly as clip_grad_norm_ would have beforehand);
 * adamw_update applies it to elements [begin, end) of the flat arrays, on
 * the calling thread, with weight decay when decay is set (a span's flag).
 * Each element's result depends on nothing else, so any split of the
 * block over threads gives the same bits; the trainer splits it by weight
 * rows, to re-pack each weight's bf16 copies right after. grad is left as
 * it is: the trainer's next backward overwrites it. */
typedef struct {
    float beta1, beta2, eps, decay_keep, step_size, bc2_sqrt, grad_factor;
} adamw_consts;
adamw_consts adamw_step_consts(const adamw_hparams *h, double lr, long t, float grad_factor);
void adamw_update(const adamw_consts *k, float *param, float *grad, float *m, float *v,
                  size_t begin, size_t end, int decay);

/* Sum of squares of grad[0..n), accumulated in double. */
double grad_sum_squares(const float *grad, size_t n);

/* clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); max_norm <= 0
 * means no clipping (factor 1). */
double clip_factor(double norm, double max_norm);

#endif
