/* cuda_linear.cu — linear layers on cuBLASLt (forward, bias in the
 * epilogue) and cuBLAS (backward). Row-major [N, C] is column-major
 * [C, N] to cuBLAS, so out [N, OC] = inp · wᵀ is
 * D (OC x N) = op_T(w as C x OC) · (inp as C x N). */
#include <stdint.h>
#include <stdio.h>

#include "cuda_internal.h"

/* ---- the forward's plans: descriptors and algorithm per shape ---- */

typedef struct {
    int N, OC, C, bf16, bias, align;
    int usable; /* 0: no algorithm; the GemmEx path instead */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} lt_plan;

#define MAX_PLANS 128
static lt_plan plans[MAX_PLANS];
static int nplans;

/* The largest power of two (at most 256) dividing every address. */
static int common_alignment(const void *const *p, int n) {
    uintptr_t bits = 256;
    for (int i = 0; i < n; i++)
        if (p[i]) bits |= (uintptr_t)p[i];
    return (int)(bits & (~bits + 1));
}

static void plan_release(lt_plan *p) {
    cublasLtMatmulDescDestroy(p->op);
    cublasLtMatrixLayoutDestroy(p->a);
    cublasLtMatrixLayoutDestroy(p->b);
    cublasLtMatrixLayoutDestroy(p->d);
    p->usable = 0;
}

static lt_plan *plan_for(int N, int OC, int C, int bf16, int bias, int align) {
    for (int i = 0; i < nplans; i++) {
        lt_plan *p = &plans[i];
        if (p->N == N && p->OC == OC && p->C == C && p->bf16 == bf16 && p->bias == bias && p->align == align)
            return p;
    }
    /* A full table starts over (shapes vary little: layers × row counts). */
    if (nplans == MAX_PLANS) {
        for (int i = 0; i < nplans; i++)
            if (plans[i].usable) plan_release(&plans[i]);
        nplans = 0;
    }
    lt_plan *p = &plans[nplans++];
    *p = (lt_plan){N, OC, C, bf16, bias, align, 0};
    cudaDataType_t in = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cudaDataType_t bias_type = CUDA_R_32F;
    if (cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return p;
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof n);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (bias) cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type);
    cublasLtMatrixLayoutCreate(&p->a, in, C, OC, C);
    cublasLtMatrixLayoutCreate(&p->b, in, C, N, C);
    cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, OC, N, OC);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    size_t ws = CUDA_WORKSPACE_BYTES;
    uint32_t al = (uint32_t)align;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(cuda_blaslt, p->op, p->a, p->b, p->d, p->d, pref, 1, &res, &found) ==
            CUBLAS_STATUS_SUCCESS && found > 0) {
        p->algo = res.algo;
        p->usable = 1;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    if (!p->usable) plan_release(p);
    return p;
}

/* out [N, OC] = b broadcast (the GemmEx path's bias, added by beta = 1). */
__global__ void bias_fill_kernel(float *out, const float *b, int N, int OC) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < (size_t)N * OC) out[i] = b[i % OC];
}

/* ---- few rows (decoding): the weight streamed once ---- */

/* Rows up to which the forward streams the weight itself: one launch
 * (no rounding pass for bf16), bias included, at memory speed. */
#define GEMV_MAX_ROWS 8
/* Output rows of a block: a warp each. */
#define GEMV_WARPS 8

/* out[i] = the epilogue of y. */
template <int EPI> __device__ inline void gemv_store(float *out, const float *res, size_t i, float y) {
    out[i] = EPI == CUDA_EPILOGUE_GELU ? gelu_erf(y) : EPI == CUDA_EPILOGUE_ADD ? res[i] + y : y;
}

/* out [NR, OC] = epi(inp [NR, C] · wᵀ + b); w fp32 or bf16 [OC, C], C a
 * multiple of 8, rows 16-byte aligned. The epilogue is that of the
 * separate ops: GELU (gelu_forward), or res + (the product)
 * (residual_forward; res may be out).
 *
 * Block (x, y) takes rows 8x .. 8x+7, a warp each, over the y-th of S
 * equal spans of C (S > 1 when there are too few rows to fill the GPU).
 * It walks its span in tiles: each lane first loads its chunks of 8
 * weights of the tile, then the block stages the tile of inp in shared
 * memory (rounded to bf16 once, for a bf16 weight), then the lanes
 * multiply. With S > 1 the spans' sums go to partial [S, NR, OC]; the
 * block that finishes a row group last adds them in span order, so the
 * bits never depend on timing, and re-arms its counter. */
template <bool BF16, int EPI, int NR>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
gemv_kernel(float *out, const float *inp, const void *w, const float *b, const float *res, float *partial,
            unsigned *counters, int OC, int C, int S) {
    constexpr int TILE = BF16 ? 2048 : 1024; /* elements of a tile: 32 KB of staged x at NR = 8 */
    constexpr int LANE_CHUNKS = TILE / 8 / 32;
    __shared__ __align__(16) unsigned char staged[NR * TILE * (BF16 ? 2 : 4)];
    const int lane = threadIdx.x & 31, o = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const int span = C / S, k0 = blockIdx.y * span, k1 = k0 + span;
    float acc[NR];
#pragma unroll
    for (int n = 0; n < NR; n++) acc[n] = 0.0f;
    grid_dependents_launch();
    for (int t = k0; t < k1; t += TILE) {
        const int chunks = min(TILE, k1 - t) / 8;
        uint4 wq[BF16 ? LANE_CHUNKS : 2 * LANE_CHUNKS];
#pragma unroll
        for (int u = 0; u < LANE_CHUNKS; u++) {
            const int e = lane + 32 * u;
            if (o >= OC || e >= chunks) continue;
            if (BF16) {
                wq[u] = ((const uint4 *)((const uint16_t *)w + (size_t)o * C + t))[e];
            } else {
                const uint4 *wr = (const uint4 *)((const float *)w + (size_t)o * C + t);
                wq[2 * u] = wr[2 * e];
                wq[2 * u + 1] = wr[2 * e + 1];
            }
        }
        if (t == k0) grid_dependency_wait(); /* the first weights are on their way; inp is next */
        __syncthreads(); /* the previous tile's x is read */
        for (int i = threadIdx.x; i < NR * chunks; i += blockDim.x) {
            const int n = i / chunks, e = i % chunks;
            const float4 *src = (const float4 *)(inp + (size_t)n * C + t) + 2 * e;
            float4 a = src[0], c = src[1];
            if (BF16) {
                uint4 q = {bf16_pair(a.x, a.y), bf16_pair(a.z, a.w), bf16_pair(c.x, c.y), bf16_pair(c.z, c.w)};
                ((uint4 *)staged)[n * (TILE / 8) + e] = q;
            } else {
                ((float4 *)staged)[n * (TILE / 4) + 2 * e] = a;
                ((float4 *)staged)[n * (TILE / 4) + 2 * e + 1] = c;
            }
        }
        __syncthreads();
#pragma unroll
        for (int u = 0; u < LANE_CHUNKS; u++) {
            const int e = lane + 32 * u;
            if (o >= OC || e >= chunks) continue;
            float wv[8];
            if (BF16) {
                unpack_bf16x8(wq[u], wv);
            } else {
                unpack_f32x8(*(const float4 *)&wq[2 * u], *(const float4 *)&wq[2 * u + 1], wv);
            }
#pragma unroll
            for (int n = 0; n < NR; n++) {
                float xv[8];
                if (BF16) {
                    unpack_bf16x8(((const uint4 *)staged)[n * (TILE / 8) + e], xv);
                } else {
                    const float4 *x4 = (const float4 *)staged + n * (TILE / 4) + 2 * e;
                    unpack_f32x8(x4[0], x4[1], xv);
                }
#pragma unroll
                for (int k = 0; k < 8; k++) acc[n] += wv[k] * xv[k];
            }
        }
    }
#pragma unroll
    for (int n = 0; n < NR; n++) acc[n] = warp_sum(acc[n]);
    if (S == 1) {
#pragma unroll
        for (int n = 0; n < NR; n++)
            if (lane == n && o < OC) gemv_store<EPI>(out, res, (size_t)n * OC + o, acc[n] + (b ? b[o] : 0.0f));
        return;
    }
#pragma unroll
    for (int n = 0; n < NR; n++)
        if (lane == n && o < OC) partial[((size_t)blockIdx.y * NR + n) * OC + o] = acc[n];
    if (!last_of_group(&counters[blockIdx.x], S)) return;
    if (threadIdx.x < GEMV_WARPS * NR) {
        const int r = blockIdx.x * GEMV_WARPS + threadIdx.x / NR, n = threadIdx.x % NR;
        if (r < OC) {
            float y = 0.0f;
            for (int s = 0; s < S; s++) y += __ldcg(&partial[((size_t)s * NR + n) * OC + r]);
            gemv_store<EPI>(out, res, (size_t)n * OC + r, y + (b ? b[r] : 0.0f));
        }
    }
    if (threadIdx.x == 0) counters[blockIdx.x] = 0;
}

int cuda_gemv_fits(const float *inp, const void *w, int N, int C) {
    const void *vec[] = {inp, w};
    return N > 0 && N <= GEMV_MAX_ROWS && C % 8 == 0 && common_alignment(vec, 2) >= 16;
}

/* Spans of C a product is split into: doubled while the blocks fill less
 * than three waves of the GPU's SMs and a span keeps at least 512
 * elements (a multiple of 8). */
static int gemv_spans(int OC, int C) {
    const int groups = (OC + GEMV_WARPS - 1) / GEMV_WARPS;
    int S = 1;
    while (groups * S < 3 * cuda_sm_count && C % (16 * S) == 0 && C / (2 * S) >= 512 && groups <= CUDA_SPLIT_COUNTERS)
        S *= 2;
    return S;
}

template <bool BF16, int EPI, int NR>
static void gemv_launch_rows(float *out, const float *inp, const void *w, const float *b, const float *res,
                             float *partial, int OC, int C, int S) {
    dim3 grid((OC + GEMV_WARPS - 1) / GEMV_WARPS, S);
    pdl_launch(gemv_kernel<BF16, EPI, NR>, grid, GEMV_WARPS * 32, 0, out, inp, w, b, res, partial,
               cuda_split_counters, OC, C, S);
}

template <bool BF16, int EPI>
static void gemv_launch_epi(float *out, const float *inp, const void *w, const float *b, const float *res,
                            float *partial, int N, int OC, int C, int S) {
    switch (N) {
    case 1: gemv_launch_rows<BF16, EPI, 1>(out, inp, w, b, res, partial, OC, C, S); break;
    case 2: gemv_launch_rows<BF16, EPI, 2>(out, inp, w, b, res, partial, OC, C, S); break;
    case 3: gemv_launch_rows<BF16, EPI, 3>(out, inp, w, b, res, partial, OC, C, S); break;
    case 4: gemv_launch_rows<BF16, EPI, 4>(out, inp, w, b, res, partial, OC, C, S); break;
    case 5: gemv_launch_rows<BF16, EPI, 5>(out, inp, w, b, res, partial, OC, C, S); break;
    case 6: gemv_launch_rows<BF16, EPI, 6>(out, inp, w, b, res, partial, OC, C, S); break;
    case 7: gemv_launch_rows<BF16, EPI, 7>(out, inp, w, b, res, partial, OC, C, S); break;
    default: gemv_launch_rows<BF16, EPI, 8>(out, inp, w, b, res, partial, OC, C, S); break;
    }
}

template <bool BF16>
static void gemv_launch(float *out, const float *inp, const void *w, const float *b, const float *res,
                        float *partial, int N, int OC, int C, int S, int epilogue) {
    if (epilogue == CUDA_EPILOGUE_GELU)
        gemv_launch_epi<BF16, CUDA_EPILOGUE_GELU>(out, inp, w, b, res, partial, N, OC, C, S);
    else if (epilogue == CUDA_EPILOGUE_ADD)
        gemv_launch_epi<BF16, CUDA_EPILOGUE_ADD>(out, inp, w, b, res, partial, N, OC, C, S);
    else
        gemv_launch_epi<BF16, CUDA_EPILOGUE_NONE>(out, inp, w, b, res, partial, N, OC, C, S);
}

/* The streamed product of a shape cuda_gemv_fits takes, for fn. */
static int gemv_forward(const char *fn, float *out, const float *inp, const float *w, const void *w_bf16,
                        const float *b, const float *res, int N, int OC, int C, int epilogue) {
    const int S = gemv_spans(OC, C);
    float *partial = NULL;
    if (S > 1 && !(partial = (float *)cuda_scratch(SCRATCH_SPANS, (size_t)S * N * OC * sizeof(float)))) return -1;
    if (w_bf16) gemv_launch<true>(out, inp, w_bf16, b, res, partial, N, OC, C, S, epilogue);
    else gemv_launch<false>(out, inp, w, b, res, partial, N, OC, C, S, epilogue);
    return cuda_launched(fn);
}

int cuda_linear_forward_fused(float *out, const float *inp, const float *w, const void *w_bf16, const float *b,
                              const float *res, int N, int OC, int C, int epilogue) {
    static const char *fn = "cuda_linear_forward_fused";
    if (cuda_ready(fn)) return -1;
    cuda_profile_shape(N, OC, C);
    if (!cuda_gemv_fits(inp, w_bf16 ? w_bf16 : (const void *)w, N, C))
        return cuda_fail(fn, "shape", "more rows than a streamed product takes, or unaligned");
    return gemv_forward(fn, out, inp, w, w_bf16, b, res, N, OC, C, epilogue);
}

int cuda_linear_forward(float *out, const float *inp, const float *w, const void *w_bf16,
                        const float *b, int N, int OC, int C) {
    static const char *fn = "cuda_linear_forward";
    if (cuda_ready(fn)) return -1;
    cuda_profile_shape(N, OC, C);
    if (N <= 0) return 0;
    const int bf16 = w_bf16 != NULL;
    if (cuda_gemv_fits(inp, bf16 ? w_bf16 : (const void *)w, N, C))
        return gemv_forward(fn, out, inp, w, w_bf16, b, NULL, N, OC, C, CUDA_EPILOGUE_NONE);
    const void *A = w, *B = inp;
    cudaDataType_t in = CUDA_R_32F;
    if (bf16) {
        void *x = cuda_scratch(SCRATCH_BF16_A, (size_t)N * C * 2);
        if (!x || cuda_to_bf16(x, inp, (size_t)N * C)) return -1;
        A = w_bf16;
        B = x;
        in = CUDA_R_16BF;
    }
    const void *ptrs[] = {A, B, out};
    const float one = 1.0f, zero = 0.0f;
    /* The epilogue's bias wants 16-byte alignment; a bias view that lacks
     * it takes the GemmEx path. */
    if (!b || ((uintptr_t)b & 15) == 0) {
        lt_plan *p = plan_for(N, OC, C, bf16, b != NULL, common_alignment(ptrs, 3));
        if (p->usable) {
            if (b) cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b);
            if (cublasLtMatmul(cuda_blaslt, p->op, &one, A, p->a, B, p->b, &zero, out, p->d, out, p->d, &p->algo,
                               cuda_workspace, CUDA_WORKSPACE_BYTES, cuda_stream) == CUBLAS_STATUS_SUCCESS)
                return 0;
            plan_release(p); /* refused at run time: this shape takes GemmEx from now on */
        }
    }
    if (b) {
        bias_fill_kernel<<<cuda_blocks((size_t)N * OC, 256), 256, 0, cuda_stream>>>(out, b, N, OC);
        if (cuda_launched(fn)) return -1;
    }
    BLAS_TRY(fn, cublasGemmEx(cuda_blas, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, A, in, C, B, in, C,
                              b ? &one : &zero, out, CUDA_R_32F, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* db [OC] (+)= column sums of dout [N, OC]: 32 columns a block, 16 rows
 * at a time, the 16 partial sums added in order. */
__global__ void column_sum_kernel(float *db, const float *dout, int N, int OC, int accumulate) {
    __shared__ float part[16][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    float s = 0;
    if (col < OC)
        for (int r = threadIdx.y; r < N; r += 16) s += dout[(size_t)r * OC + col];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < OC) {
        float t = 0;
        for (int y = 0; y < 16; y++) t += part[y][threadIdx.x];
        db[col] = accumulate ? db[col] + t : t;
    }
}

int cuda_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const void *w_bf16, int N, int OC, int C, int accumulate,
                         double *dw_sumsq) {
    static const char *fn = "cuda_linear_backward";
    if (cuda_ready(fn)) return -1;
    cuda_profile_shape(N, OC, C);
    const float one = 1.0f, zero = 0.0f, beta = accumulate ? 1.0f : 0.0f;
    if (N <= 0) {
        if (!accumulate) {
            if (cuda_zero(dw, (size_t)OC * C * sizeof(float))) return -1;
            if (db && cuda_zero(db, (size_t)OC * sizeof(float))) return -1;
        }
        return dw_sumsq ? cuda_sum_squares(dw, (size_t)OC * C, dw_sumsq) : 0;
    }
    const void *W = w, *DY = dout, *X = inp;
    cudaDataType_t in = CUDA_R_32F;
    if (w_bf16) {
        void *dy = cuda_scratch(SCRATCH_BF16_A, (size_t)N * OC * 2);
        void *x = cuda_scratch(SCRATCH_BF16_B, (size_t)N * C * 2);
        if (!dy || !x || cuda_to_bf16(dy, dout, (size_t)N * OC) || cuda_to_bf16(x, inp, (size_t)N * C)) return -1;
        W = w_bf16;
        DY = dy;
        X = x;
        in = CUDA_R_16BF;
    }
    if (db) {
        column_sum_kernel<<<cuda_blocks(OC, 32), dim3(32, 16), 0, cuda_stream>>>(db, dout, N, OC, accumulate);
        if (cuda_launched(fn)) return -1;
    }
    /* dinpᵀ (C x N) = w as (C x OC) · doutᵀ as (OC x N) */
    if (dinp)
        BLAS_TRY(fn, cublasGemmEx(cuda_blas, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one, W, in, C, DY, in, OC, &zero,
                                  dinp, CUDA_R_32F, C, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    /* dwᵀ (C x OC) = inp as (C x N) · (doutᵀ as OC x N)ᵀ */
    BLAS_TRY(fn, cublasGemmEx(cuda_blas, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one, X, in, C, DY, in, OC, &beta,
                              dw, CUDA_R_32F, C, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return dw_sumsq ? cuda_sum_squares(dw, (size_t)OC * C, dw_sumsq) : 0;
}
