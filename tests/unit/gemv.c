/* gemv.c — the few-row matrix product against a plain double-precision
 * loop: every row count up to GEMV_MAX_ROWS, lengths with vector tails,
 * products small enough to stay on the caller and large enough for the
 * worker threads, and many calls in a row (the pool's hand-over). The bf16
 * one against the same loop over bf16-rounded inputs and weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/cli.h"
#include "kernels/gemv.h"
#include "base/rng.h"
#include "tap.h"

/* Largest |out - reference| relative to the row's magnitude. */
static double check(int N, int C, int OC, int with_bias, rng_state *r) {
    float *x = xmalloc((size_t)N * C * sizeof *x), *w = xmalloc((size_t)OC * C * sizeof *w);
    float *b = xmalloc((size_t)OC * sizeof *b), *out = xmalloc((size_t)N * OC * sizeof *out);
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] = (float)(rng_uniform(r) * 2 - 1);
    for (size_t i = 0; i < (size_t)OC * C; i++) w[i] = (float)(rng_uniform(r) * 2 - 1);
    for (int i = 0; i < OC; i++) b[i] = (float)(rng_uniform(r) * 2 - 1);
    gemv_forward(out, x, w, with_bias ? b : NULL, N, C, OC);
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < OC; j++) {
            double s = with_bias ? b[j] : 0, mag = fabs(s);
            for (int k = 0; k < C; k++) {
                s += (double)x[(size_t)n * C + k] * w[(size_t)j * C + k];
                mag += fabs((double)x[(size_t)n * C + k] * w[(size_t)j * C + k]);
            }
            worst = fmax(worst, fabs(out[(size_t)n * OC + j] - s) / (mag + 1e-30));
        }
    free(x);
    free(w);
    free(b);
    free(out);
    return worst;
}

/* The same for gemv_bf16_forward: the reference multiplies the
 * bf16-rounded values, so only the order of the fp32 sums differs. */
static double check_bf16(int N, int C, int OC, int with_bias, rng_state *r) {
    float *x = xmalloc((size_t)N * C * sizeof *x), *w = xmalloc((size_t)OC * C * sizeof *w);
    float *b = xmalloc((size_t)OC * sizeof *b), *out = xmalloc((size_t)N * OC * sizeof *out);
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] = (float)(rng_uniform(r) * 2 - 1);
    for (size_t i = 0; i < (size_t)OC * C; i++) w[i] = (float)(rng_uniform(r) * 2 - 1);
    for (int i = 0; i < OC; i++) b[i] = (float)(rng_uniform(r) * 2 - 1);
    gemm_weight gw;
    gemm_weight_init(&gw, w, OC, C, GEMM_FOR_FORWARD);
    gemm_weight_pack(&gw);
    gemv_bf16_forward(out, x, &gw, with_bias ? b : NULL, N);
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < OC; j++) {
            double s = with_bias ? b[j] : 0, mag = fabs(s);
            for (int k = 0; k < C; k++) {
                double p = (double)gemm_bf16_to_fp32(gemm_fp32_to_bf16(x[(size_t)n * C + k])) *
                           gemm_bf16_to_fp32(gemm_fp32_to_bf16(w[(size_t)j * C + k]));
                s += p;
                mag += fabs(p);
            }
            worst = fmax(worst, fabs(out[(size_t)n * OC + j] - s) / (mag + 1e-30));
        }
    gemm_weight_free(&gw);
    free(x);
    free(w);
    free(b);
    free(out);
    return worst;
}

int main(void) {
    rng_state r;
    rng_seed(&r, 42);
    double small = 0, large = 0;
    for (int N = 1; N <= GEMV_MAX_ROWS; N++) {
        small = fmax(small, check(N, 37, 19, N % 2, &r));        /* tails everywhere, on the caller */
        large = fmax(large, check(N, 300, 1027, N % 2, &r));     /* on the worker threads */
    }
    ok(small < 1e-6, "rows 1..%d, 19x37 (caller only): relative error %.2g", GEMV_MAX_ROWS, small);
    ok(large < 1e-6, "rows 1..%d, 1027x300 (worker threads): relative error %.2g", GEMV_MAX_ROWS, large);
    double many = 0;
    int calls = getenv("TUNEPIPE_SANITIZE") ? 200 : 1000;
    for (int i = 0; i < calls; i++) many = fmax(many, check(1 + i % 3, 256 + i % 17, 260 + i % 61, i % 2, &r));
    ok(many < 1e-6, "%d calls in a row of varying shapes: relative error %.2g", calls, many);
    if (gemm_current_path() == GEMM_FP32) {
        ok(1, "# SKIP no bf16 products on this CPU");
        ok(1, "# SKIP no bf16 products on this CPU");
    } else {
        small = large = 0;
        for (int N = 1; N <= GEMV_MAX_ROWS; N++) {
            small = fmax(small, check_bf16(N, 37, 19, N % 2, &r));
            large = fmax(large, check_bf16(N, 300, 1027, N % 2, &r));
        }
        ok(small < 1e-6, "bf16 rows 1..%d, 19x37 (caller only): relative error %.2g", GEMV_MAX_ROWS, small);
        ok(large < 1e-6, "bf16 rows 1..%d, 1027x300 (worker threads): relative error %.2g", GEMV_MAX_ROWS,
           large);
    }
    return done_testing();
}
