/* cuda_elementwise.cu — layer norm, GELU, residual, embedding, row
 * gathers: the CPU ops' arithmetic (ops.c, backward.c), statistics in
 * double as there. */
#include <stdlib.h>

#include "cuda_internal.h"

/* ---- layer norm ---- */

/* Row n of a layer norm: mean and variance in double over two passes,
 * then the CPU's float expression, each operation rounded on its own;
 * out2, when not NULL, gets the row normalized with w2 and b2 (the
 * statistics are the same). T threads share the row: a warp's lanes
 * (warp_sum), or a whole block's (block_sum). */
template <int T, bool BLOCK>
__device__ inline void layernorm_row(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                     const float *b, float *out2, const float *w2, const float *b2, int n, int C,
                                     float eps, int t) {
    const float *x = inp + (size_t)n * C;
    double s = 0;
    for (int i = t; i < C; i += T) s += x[i];
    double m = (BLOCK ? block_sum(s) : warp_sum(s)) / C, v = 0;
    for (int i = t; i < C; i += T) {
        double d = (double)x[i] - m;
        v += d * d;
    }
    v = BLOCK ? block_sum(v) : warp_sum(v);
    float mf = (float)m, r = (float)(1.0 / sqrt(v / C + eps));
    float *o = out + (size_t)n * C, *o2 = out2 ? out2 + (size_t)n * C : NULL;
    for (int i = t; i < C; i += T) {
        float xhat = __fmul_rn(__fsub_rn(x[i], mf), r);
        o[i] = __fadd_rn(__fmul_rn(xhat, w[i]), b[i]);
        if (o2) o2[i] = __fadd_rn(__fmul_rn(xhat, w2[i]), b2[i]);
    }
    if (t == 0) {
        if (mean) mean[n] = mf;
        if (rstd) rstd[n] = r;
    }
}

/* Many rows (training): one warp a row. */
__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                         const float *b, float *out2, const float *w2, const float *b2, int N,
                                         int C, float eps) {
    int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= N) return;
    layernorm_row<32, false>(out, mean, rstd, inp, w, b, out2, w2, b2, n, C, eps, threadIdx.x & 31);
}

/* Few rows (decoding): one block a row, since a lone warp waits on its
 * C/32 loads in turn (32 us a row of 1024 on an H100, against about 3). */
#define LN_ROW_THREADS 256
#define LN_FEW_ROWS 64
__global__ void __launch_bounds__(LN_ROW_THREADS)
layernorm_rows_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                      float *out2, const float *w2, const float *b2, int C, float eps) {
    grid_dependents_launch();
    grid_dependency_wait();
    layernorm_row<LN_ROW_THREADS, true>(out, mean, rstd, inp, w, b, out2, w2, b2, blockIdx.x, C, eps, threadIdx.x);
}

static void layernorm_launch(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                             float *out2, const float *w2, const float *b2, int N, int C, float eps) {
    if (N <= LN_FEW_ROWS)
        pdl_launch(layernorm_rows_kernel, N, LN_ROW_THREADS, 0, out, mean, rstd, inp, w, b, out2, w2, b2, C, eps);
    else
        layernorm_forward_kernel<<<cuda_blocks(N, 8), 256, 0, cuda_stream>>>(out, mean, rstd, inp, w, b, out2, w2,
                                                                             b2, N, C, eps);
}

int cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps) {
    if (cuda_ready("cuda_layernorm_forward")) return -1;
    if (N <= 0) return 0;
    layernorm_launch(out, mean, rstd, inp, w, b, NULL, NULL, NULL, N, C, eps);
    return cuda_launched("cuda_layernorm_forward");
}

int cuda_layernorm_forward2(float *out1, float *out2, const float *inp, const float *w1, const float *b1,
                            const float *w2, const float *b2, int N, int C, float eps) {
    if (cuda_ready("cuda_layernorm_forward2")) return -1;
    if (N <= 0) return 0;
    layernorm_launch(out1, NULL, NULL, inp, w1, b1, out2, w2, b2, N, C, eps);
    return cuda_launched("cuda_layernorm_forward2");
}

/* Rows per block of the backward: the blocks' sums of dw and db are
 * added in block order by a second kernel (no atomics). */
#define LNB_ROWS 16

__global__ void layernorm_backward_kernel(float *dinp, float *partial, const float *dout, const float *inp,
                                          const float *w, const float *mean, const float *rstd, int N, int C) {
    const int r0 = blockIdx.x * LNB_ROWS, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    const int rows = N - r0 < LNB_ROWS ? N - r0 : LNB_ROWS;
    for (int k = threadIdx.x >> 5; k < rows; k += nw) {
        int n = r0 + k;
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float mu = mean[n], r = rstd[n];
        double s1 = 0, s2 = 0;
        for (int i = lane; i < C; i += 32) {
            float norm = __fmul_rn(__fsub_rn(x[i], mu), r), dnorm = __fmul_rn(w[i], dy[i]);
            s1 += dnorm;
            s2 += (double)dnorm * norm;
        }
        float m1 = (float)(warp_sum(s1) / C), m2 = (float)(warp_sum(s2) / C);
        float *dx = dinp + (size_t)n * C;
        for (int i = lane; i < C; i += 32) {
            float norm = __fmul_rn(__fsub_rn(x[i], mu), r), dnorm = __fmul_rn(w[i], dy[i]);
            dx[i] = __fadd_rn(dx[i], __fmul_rn(__fsub_rn(__fsub_rn(dnorm, m1), __fmul_rn(norm, m2)), r));
        }
    }
    /* this block's rows, column by column, in row order */
    float *pw = partial + (size_t)blockIdx.x * 2 * C, *pb = pw + C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float sw = 0, sb = 0;
        for (int k = 0; k < rows; k++) {
            size_t at = (size_t)(r0 + k) * C + i;
            float norm = __fmul_rn(__fsub_rn(inp[at], mean[r0 + k]), rstd[r0 + k]);
            sw = __fadd_rn(sw, __fmul_rn(norm, dout[at]));
            sb = __fadd_rn(sb, dout[at]);
        }
        pw[i] = sw;
        pb[i] = sb;
    }
}

__global__ void layernorm_partials_kernel(float *dw, float *db, const float *partial, int blocks, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) return;
    float sw = 0, sb = 0;
    for (int k = 0; k < blocks; k++) {
        sw += partial[(size_t)k * 2 * C + i];
        sb += partial[(size_t)k * 2 * C + C + i];
    }
    dw[i] += sw;
    db[i] += sb;
}

int cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C) {
    static const char *fn = "cuda_layernorm_backward";
    if (cuda_ready(fn)) return -1;
    if (N <= 0) return 0;
    int blocks = (N + LNB_ROWS - 1) / LNB_ROWS;
    float *partial = (float *)cuda_scratch(SCRATCH_PARTIAL, (size_t)blocks * 2 * C * sizeof(float));
    if (!partial) return -1;
    layernorm_backward_kernel<<<blocks, 256, 0, cuda_stream>>>(dinp, partial, dout, inp, w, mean, rstd, N, C);
    layernorm_partials_kernel<<<cuda_blocks(C, 256), 256, 0, cuda_stream>>>(dw, db, partial, blocks, C);
    return cuda_launched(fn);
}

/* ---- GELU, residual ---- */

__global__ void gelu_forward_kernel(float *out, const float *inp, size_t N) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= N) return;
    out[i] = gelu_erf(inp[i]);
}

int cuda_gelu_forward(float *out, const float *inp, size_t N) {
    if (cuda_ready("cuda_gelu_forward")) return -1;
    if (N == 0) return 0;
    gelu_forward_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream>>>(out, inp, N);
    return cuda_launched("cuda_gelu_forward");
}

__global__ void gelu_backward_kernel(float *dinp, const float *inp, const float *dout, size_t N) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= N) return;
    const float inv_sqrt_2pi = 0.3989422804014327f;
    float x = inp[i];
    float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
    float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
    dinp[i] = (cdf + x * pdf) * dout[i];
}

int cuda_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
    if (cuda_ready("cuda_gelu_backward")) return -1;
    if (N == 0) return 0;
    gelu_backward_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream>>>(dinp, inp, dout, N);
    return cuda_launched("cuda_gelu_backward");
}

__global__ void residual_kernel(float *out, const float *a, const float *b, size_t N) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < N) out[i] = a[i] + b[i];
}

int cuda_residual_forward(float *out, const float *a, const float *b, size_t N) {
    if (cuda_ready("cuda_residual_forward")) return -1;
    if (N == 0) return 0;
    residual_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream>>>(out, a, b, N);
    return cuda_launched("cuda_residual_forward");
}

/* ---- rows: embedding, gather, scatter ---- */

/* One block a row. */
__global__ void gather_kernel(float *out, const float *inp, const uint32_t *ids, const int *rows, int C) {
    size_t src = ids ? ids[blockIdx.x] : (size_t)rows[blockIdx.x];
    const float *s = inp + src * C;
    float *d = out + (size_t)blockIdx.x * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) d[i] = s[i];
}

int cuda_embedding_forward(float *out, const float *wte, const uint32_t *ids, int T, int C) {
    if (cuda_ready("cuda_embedding_forward")) return -1;
    if (T <= 0) return 0;
    gather_kernel<<<T, 256, 0, cuda_stream>>>(out, wte, ids, NULL, C);
    return cuda_launched("cuda_embedding_forward");
}

int cuda_gather_rows(float *out, const float *inp, const int *rows, int R, int C) {
    if (cuda_ready("cuda_gather_rows")) return -1;
    if (R <= 0) return 0;
    gather_kernel<<<R, 256, 0, cuda_stream>>>(out, inp, NULL, rows, C);
    return cuda_launched("cuda_gather_rows");
}

/* Block g adds to row uniq[g] of dwte its rows of dout, in row order:
 * groups = uniq [n], start [n + 1], rows [T] (embedding_backward's sums,
 * no atomics, so the same bits every run and as the CPU's). */
__global__ void embedding_backward_kernel(float *dwte, const float *dout, const int *groups, int n, int C) {
    const int *uniq = groups, *start = groups + n, *rows = groups + 2 * n + 1, g = blockIdx.x;
    float *d = dwte + (size_t)uniq[g] * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float acc = d[i];
        for (int k = start[g]; k < start[g + 1]; k++) acc += dout[(size_t)rows[k] * C + i];
        d[i] = acc;
    }
}

static int by_id_then_row(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int cuda_embedding_backward(float *dwte, const float *dout, const uint32_t *ids_host, int T, int C) {
    static const char *fn = "cuda_embedding_backward";
    if (cuda_ready(fn)) return -1;
    if (T <= 0) return 0;
    /* the rows grouped by token on the host: (id << 32 | row) sorted */
    static uint64_t *keys;
    static int *groups, cap;
    if (T > cap) {
        free(keys);
        free(groups);
        keys = (uint64_t *)malloc((size_t)T * sizeof *keys);
        groups = (int *)malloc((3 * (size_t)T + 1) * sizeof *groups);
        cap = keys && groups ? T : 0;
        if (!cap) return cuda_fail(fn, "malloc", "out of host memory");
    }
    for (int t = 0; t < T; t++) keys[t] = (uint64_t)ids_host[t] << 32 | (uint32_t)t;
    qsort(keys, (size_t)T, sizeof *keys, by_id_then_row);
    int n = 0;
    for (int t = 0; t < T; t++)
        if (t == 0 || keys[t] >> 32 != keys[t - 1] >> 32) n++;
    int *uniq = groups, *start = groups + n, *rows = groups + 2 * n + 1;
    for (int t = 0, g = -1; t < T; t++) {
        if (t == 0 || keys[t] >> 32 != keys[t - 1] >> 32) {
            uniq[++g] = (int)(keys[t] >> 32);
            start[g] = t;
        }
        rows[t] = (int)(uint32_t)keys[t];
    }
    start[n] = T;
    size_t bytes = (2 * (size_t)n + 1 + T) * sizeof *groups;
    int *dev = (int *)cuda_scratch(SCRATCH_EMBED, bytes);
    if (!dev || cuda_to_device(dev, groups, bytes)) return -1;
    embedding_backward_kernel<<<n, 256, 0, cuda_stream>>>(dwte, dout, dev, n, C);
    return cuda_launched(fn);
}

__global__ void scatter_add_kernel(float *out, const float *inp, const int *rows, int C) {
    float *d = out + (size_t)rows[blockIdx.x] * C;
    const float *s = inp + (size_t)blockIdx.x * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) d[i] += s[i];
}

int cuda_scatter_add_rows(float *out, const float *inp, const int *rows, int R, int C) {
    if (cuda_ready("cuda_scatter_add_rows")) return -1;
    if (R <= 0) return 0;
    scatter_add_kernel<<<R, 256, 0, cuda_stream>>>(out, inp, rows, C);
    return cuda_launched("cuda_scatter_add_rows");
}
