/* cuda_loss.cu — softmax cross-entropy (backward.c's row_crossentropy):
 * the max in float, the sum of exponentials in double, one block a row;
 * the rows' losses summed in row order. And the same fused with the
 * vocabulary projection and its backward, a chunk of rows at a time. */
#include <math.h>

#include "cuda_internal.h"

#define CE_THREADS 1024

__global__ void __launch_bounds__(CE_THREADS)
crossentropy_kernel(float *logits, const uint32_t *targets, int V, float scale, double *row_loss, int backward) {
    float *row = logits + (size_t)blockIdx.x * V;
    const uint32_t target = targets[blockIdx.x];
    const double target_logit = row[target]; /* read before any thread writes the row */
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += CE_THREADS) mx = fmaxf(mx, row[i]);
    mx = block_max(mx);
    double s = 0;
    for (int i = threadIdx.x; i < V; i += CE_THREADS) s += (double)expf(row[i] - mx);
    s = block_sum(s);
    if (threadIdx.x == 0) row_loss[blockIdx.x] = log(s) - (target_logit - mx);
    if (!backward) return;
    const float f = (float)(scale / s);
    for (int i = threadIdx.x; i < V; i += CE_THREADS) {
        float g = expf(row[i] - mx) * f;
        row[i] = i == (int)target ? g - scale : g;
    }
}

__global__ void sum_rows_kernel(double *out, const double *row_loss, int N) {
    double total = 0;
    for (int n = 0; n < N; n++) total += row_loss[n];
    *out += total;
}

static int crossentropy(const char *fn, float *logits, const uint32_t *targets, int N, int V, float scale,
                        double *loss_sum, int backward) {
    if (cuda_ready(fn)) return -1;
    if (N <= 0) return 0;
    double *row_loss = (double *)cuda_scratch(SCRATCH_ROWS, (size_t)N * sizeof(double));
    if (!row_loss) return -1;
    crossentropy_kernel<<<N, CE_THREADS, 0, cuda_stream>>>(logits, targets, V, scale, row_loss, backward);
    sum_rows_kernel<<<1, 1, 0, cuda_stream>>>(loss_sum, row_loss, N);
    return cuda_launched(fn);
}

int cuda_crossentropy_forward_backward(float *logits, const uint32_t *targets, int N, int V, float scale,
                                       double *loss_sum) {
    return crossentropy("cuda_crossentropy_forward_backward", logits, targets, N, V, scale, loss_sum, 1);
}

int cuda_crossentropy_forward(const float *logits, const uint32_t *targets, int N, int V, double *loss_sum) {
    return crossentropy("cuda_crossentropy_forward", (float *)logits, targets, N, V, 0.0f, loss_sum, 0);
}

int cuda_head_loss(float *dinp, float *dw, const float *inp, const uint32_t *targets, const float *w,
                   const void *w_bf16f, const void *w_bf16b, int R, int V, int C, float scale, int accumulate,
                   double *loss_sum, double *dw_sumsq) {
    if (cuda_ready("cuda_head_loss")) return -1;
    if (R <= 0) /* no rows: dw as linear_backward leaves it */
        return cuda_linear_backward(NULL, dw, NULL, NULL, inp, w, w_bf16b, 0, V, C, accumulate, dw_sumsq);
    const int rows = R < CUDA_HEAD_LOSS_ROWS ? R : CUDA_HEAD_LOSS_ROWS;
    float *logits = (float *)cuda_scratch(SCRATCH_HEAD_LOGITS, (size_t)rows * V * sizeof(float));
    if (!logits) return -1;
    for (int r0 = 0; r0 < R; r0 += rows) {
        const int n = R - r0 < rows ? R - r0 : rows;
        const float *x = inp + (size_t)r0 * C;
        if (cuda_linear_forward(logits, x, w, w_bf16f, NULL, n, V, C) ||
            cuda_crossentropy_forward_backward(logits, targets + r0, n, V, scale, loss_sum) ||
            cuda_linear_backward(dinp + (size_t)r0 * C, dw, NULL, logits, x, w, w_bf16b, n, V, C, accumulate || r0 > 0,
                                 r0 + n == R ? dw_sumsq : NULL))
            return -1;
    }
    return 0;
}
