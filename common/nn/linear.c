/* linear.c — see linear.h. */
#include "linear.h"

#include <string.h>

#include "kernels/gemv.h"
#include "kernels/parallel.h"
#include "optim.h"

void linear_init(linear *l, const float *w, const float *b, int OC, int C) {
    memset(l, 0, sizeof *l);
    l->w = w;
    l->b = b;
    l->OC = OC;
    l->C = C;
}

void linear_set_dtype(linear *l, compute_dtype dtype, int uses) {
    if (dtype == DTYPE_FP32) uses = 0;
    if (uses != l->lowp.uses) {
        gemm_weight_free(&l->lowp);
        gemm_weight_init(&l->lowp, l->w, l->OC, l->C, uses);
    }
    if (uses) gemm_weight_pack(&l->lowp);
}

void linear_free(linear *l) { gemm_weight_free(&l->lowp); }

linear_kernel linear_forward_kernel(const linear *l, int N) {
    const int few = N <= GEMV_MAX_ROWS && !parallel_owns_blas();
    /* On the fp32 gemm path the bf16 copies stay unpacked and gemm_forward
     * computes from w. */
    if (l->lowp.uses & GEMM_FOR_FORWARD) return few && l->lowp.fwd ? LINEAR_GEMV_BF16 : LINEAR_GEMM_BF16;
    return few ? LINEAR_GEMV : LINEAR_SGEMM;
}

void linear_forward(const linear *l, float *out, const float *inp, int N) {
    const int OC = l->OC, C = l->C;
    switch (linear_forward_kernel(l, N)) {
    case LINEAR_GEMV_BF16: gemv_bf16_forward(out, inp, &l->lowp, l->b, N); break;
    case LINEAR_GEMM_BF16: gemm_forward(out, inp, &l->lowp, l->b, N); break;
    case LINEAR_GEMV: gemv_forward(out, inp, l->w, l->b, N, C, OC); break;
    case LINEAR_SGEMM:
        if (l->b)
            for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, l->b, (size_t)OC * sizeof(float));
        parallel_sgemm(0, 1, N, OC, C, 1.0f, inp, C, l->w, C, l->b ? 1.0f : 0.0f, out, OC);
        break;
    }
}

typedef struct {
    float *sum;
    const float *rows;
    int N, OC;
} column_sum_ctx;

/* sum[o] += column o of rows [N, OC], for o in [begin, end). */
static void column_sums(void *arg, size_t begin, size_t end, int part) {
    column_sum_ctx *c = arg;
    for (int n = 0; n < c->N; n++) {
        const float *d = c->rows + (size_t)n * c->OC;
        for (size_t o = begin; o < end; o++) c->sum[o] += d[o];
    }
}

void linear_backward(const linear *l, float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, int N, int accumulate, double *dw_sumsq) {
    const int OC = l->OC, C = l->C;
    if (l->lowp.uses & GEMM_FOR_BACKWARD) {
        if (dinp) {
            memset(dinp, 0, (size_t)N * C * sizeof(float));
            gemm_backward_input(dinp, dout, &l->lowp, N);
        }
        double s;
        gemm_backward_weight(dw, NULL, dout, inp, N, OC, C, accumulate, dw_sumsq ? &s : NULL);
        if (dw_sumsq) *dw_sumsq += s;
    } else {
        if (dinp) parallel_sgemm(0, 0, N, C, OC, 1.0f, dout, OC, l->w, C, 0.0f, dinp, C);
        parallel_sgemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, accumulate ? 1.0f : 0.0f, dw, C);
        /* dw may still be in the last-level cache */
        if (dw_sumsq) *dw_sumsq += grad_sum_squares(dw, (size_t)OC * C);
    }
    if (db) {
        if (!accumulate) memset(db, 0, (size_t)OC * sizeof *db);
        column_sum_ctx c = {db, dout, N, OC};
        parallel_for((size_t)OC, 64, column_sums, &c);
    }
}
