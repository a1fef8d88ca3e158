/* gemv.h — matrix products with few rows (decoding), memory-bound: each
 * weight row is read from memory once for all input rows, the output rows
 * split across the threads of the pool (parallel.h). */
#ifndef TUNEPIPE_GEMV_H
#define TUNEPIPE_GEMV_H

#include "gemm.h"

/* Above this many input rows, cblas_sgemm is faster. */
#define GEMV_MAX_ROWS 16

/* out [N, OC] = inp [N, C] · w[OC, C]ᵀ + bias [OC] (bias may be NULL),
 * N <= GEMV_MAX_ROWS. */
void gemv_forward(float *out, const float *inp, const float *w, const float *bias,
                  int N, int C, int OC);
/* The same on the calling thread alone (the same results): for use inside
 * a job of the pool, which must not start another. */
void gemv_forward_here(float *out, const float *inp, const float *w, const float *bias,
                       int N, int C, int OC);

/* The same through gw's bf16 forward tiles (gemm.h; packed, on a bf16
 * path): out [N, OC] = bf16(inp [N, C]) · wᵀ + bias, fp32 accumulation,
 * N <= GEMV_MAX_ROWS. Like gemm.h, from one thread at a time. */
void gemv_bf16_forward(float *out, const float *inp, const gemm_weight *gw, const float *bias, int N);

/* Several independent such products (count <= GEMV_BF16_MAX_PRODUCTS) in
 * one pass of the pool (one wake-up and one wait instead of several):
 * out = bf16(inp) · gw's wᵀ + bias, then GELU when gelu. No out may
 * overlap an inp. */
#define GEMV_BF16_MAX_PRODUCTS 4
typedef struct {
    float *out;
    const float *inp;
    const gemm_weight *gw;
    const float *bias;
    int gelu;
} gemv_bf16_product;
void gemv_bf16_forward_many(const gemv_bf16_product *p, int count, int N);
/* The same, where products after..count-1 take their inputs from
 * first(ctx): the caller runs it while the other threads start on the
 * products before `after`, and their blocks wait until it is done. */
void gemv_bf16_forward_after(const gemv_bf16_product *p, int count, int N, int after,
                             void (*first)(void *ctx), void *ctx);

#endif
