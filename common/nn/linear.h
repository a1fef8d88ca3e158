/* linear.h — a linear layer, out [N, OC] = inp [N, C] · w[OC, C]ᵀ + b [OC],
 * and its backward, in fp32 or with bf16 products (gemm.h: bf16 inputs,
 * fp32 accumulation and output; the fp32 master weight stays).
 *
 * Which kernel computes a product follows from the layer's dtype, the row
 * count and the process (linear_forward_kernel):
 *   - The trainer's process, whose pool owns OpenBLAS's threads
 *     (parallel_owns_blas): fp32 products in fixed column blocks on the
 *     pool (parallel_sgemm), bf16 ones through gemm.h, for any row count.
 *   - Otherwise (the inference tools): products of at most GEMV_MAX_ROWS
 *     rows stream the weight once on the pool (gemv.h; bf16 ones through
 *     the forward copy), larger ones are one cblas_sgemm threaded by
 *     OpenBLAS, or go through gemm.h in bf16.
 * Each process thus gets the bits it always got. */
#ifndef TUNEPIPE_LINEAR_H
#define TUNEPIPE_LINEAR_H

#include "kernels/gemm.h"

/* The dtype of the products of a model's linear layers. Weights,
 * gradients, activations and everything else stay fp32. */
typedef enum { DTYPE_FP32, DTYPE_BF16 } compute_dtype;

typedef struct {
    const float *w;     /* fp32 master [OC, C]; NULL when only the bf16 copy is held */
    const float *b;     /* [OC], or NULL */
    int OC, C;
    gemm_weight lowp;   /* the CPU's bf16 copies; lowp.uses is 0 in fp32 */
    void *device_copy;  /* another device's bf16 copy (device.h), for device_uses */
    int device_uses;
} linear;

typedef enum { LINEAR_SGEMM, LINEAR_GEMV, LINEAR_GEMM_BF16, LINEAR_GEMV_BF16 } linear_kernel;

/* An fp32 layer (no copies). */
void linear_init(linear *l, const float *w, const float *b, int OC, int C);
/* In bf16: the copies for uses (GEMM_FOR_* bits), made from the current w
 * (again after every change to w); in fp32: none, and any held are freed. */
void linear_set_dtype(linear *l, compute_dtype dtype, int uses);
void linear_free(linear *l);

/* The kernel linear_forward takes for N rows (see above). */
linear_kernel linear_forward_kernel(const linear *l, int N);
/* out [N, OC] = inp [N, C] · wᵀ + b. */
void linear_forward(const linear *l, float *out, const float *inp, int N);
/* The backward of linear_forward, in bf16 when l holds GEMM_FOR_BACKWARD
 * copies: dinp [N, C] = dout · w (overwritten; skipped when NULL),
 * dw [OC, C] += doutᵀ · inp, db [OC] += column sums of dout (when not
 * NULL); "=" for both when !accumulate. dw_sumsq (may be NULL) += Σ dw² of
 * the result, in double, taken while dw is still in cache. */
void linear_backward(const linear *l, float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, int N, int accumulate, double *dw_sumsq);

#endif
