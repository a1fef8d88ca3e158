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

/* ---- few rows (decoding): the weight streamed once, one warp a row ---- */

/* Rows up to which the forward streams the weight itself: one launch
 * (no rounding pass for bf16), bias included, at memory speed. */
#define GEMV_MAX_ROWS 8

/* x rounded to bf16 and back (gemm_fp32_to_bf16), as the products see it. */
__device__ inline float bf16_round(float x) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x;
    u += 0x7fffu + ((u >> 16) & 1u);
    return __uint_as_float(u & 0xffff0000u);
}

/* Chunks of 8 weights a lane loads before it multiplies: enough bytes in
 * flight for the weight to stream near the memory's speed. */
#define GEMV_UNROLL 4

/* out [N, OC] = epi(inp [N, C] · wᵀ + b), N <= GEMV_MAX_ROWS; w fp32 or
 * bf16 [OC, C], C a multiple of 8, rows 16-byte aligned. The epilogue is
 * that of the separate ops: GELU (gelu_forward), or res + (the product)
 * (residual_forward; res may be out). */
template <bool BF16, int EPI>
__global__ void gemv_kernel(float *out, const float *inp, const void *w, const float *b, const float *res, int N,
                            int OC, int C) {
    const int lane = threadIdx.x & 31, o = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (o >= OC) return;
    float acc[GEMV_MAX_ROWS];
#pragma unroll
    for (int n = 0; n < GEMV_MAX_ROWS; n++) acc[n] = 0.0f;
    const float4 *x4 = (const float4 *)inp;
    const int C4 = C / 4, chunks = C / 8;
    for (int e0 = lane; e0 < chunks; e0 += 32 * GEMV_UNROLL) {
        float wv[GEMV_UNROLL][8];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int e = e0 + 32 * u;
            if (e >= chunks) break;
            if (BF16) {
                uint4 q = ((const uint4 *)((const uint16_t *)w + (size_t)o * C))[e];
                uint32_t p[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    wv[u][2 * k] = __uint_as_float(p[k] << 16);
                    wv[u][2 * k + 1] = __uint_as_float(p[k] & 0xffff0000u);
                }
            } else {
                const float4 *wr = (const float4 *)((const float *)w + (size_t)o * C);
                float4 a = wr[2 * e], c = wr[2 * e + 1];
                wv[u][0] = a.x, wv[u][1] = a.y, wv[u][2] = a.z, wv[u][3] = a.w;
                wv[u][4] = c.x, wv[u][5] = c.y, wv[u][6] = c.z, wv[u][7] = c.w;
            }
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int e = e0 + 32 * u;
            if (e >= chunks) break;
#pragma unroll
            for (int n = 0; n < GEMV_MAX_ROWS; n++) {
                if (n >= N) break;
                float4 a = x4[(size_t)n * C4 + 2 * e], c = x4[(size_t)n * C4 + 2 * e + 1];
                float xv[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
#pragma unroll
                for (int k = 0; k < 8; k++) acc[n] += wv[u][k] * (BF16 ? bf16_round(xv[k]) : xv[k]);
            }
        }
    }
    const float bias = b ? b[o] : 0.0f;
#pragma unroll
    for (int n = 0; n < GEMV_MAX_ROWS; n++) {
        if (n >= N) break;
        float y = warp_sum(acc[n]) + bias;
        if (lane == 0) {
            size_t i = (size_t)n * OC + o;
            out[i] = EPI == CUDA_EPILOGUE_GELU ? gelu_erf(y) : EPI == CUDA_EPILOGUE_ADD ? res[i] + y : y;
        }
    }
}

int cuda_gemv_fits(const float *inp, const void *w, int N, int C) {
    const void *vec[] = {inp, w};
    return N > 0 && N <= GEMV_MAX_ROWS && C % 8 == 0 && common_alignment(vec, 2) >= 16;
}

template <bool BF16>
static void gemv_launch(float *out, const float *inp, const void *w, const float *b, const float *res, int N,
                        int OC, int C, int epilogue) {
    unsigned blocks = cuda_blocks(OC, 8);
    if (epilogue == CUDA_EPILOGUE_GELU)
        gemv_kernel<BF16, CUDA_EPILOGUE_GELU><<<blocks, 256, 0, cuda_stream>>>(out, inp, w, b, res, N, OC, C);
    else if (epilogue == CUDA_EPILOGUE_ADD)
        gemv_kernel<BF16, CUDA_EPILOGUE_ADD><<<blocks, 256, 0, cuda_stream>>>(out, inp, w, b, res, N, OC, C);
    else
        gemv_kernel<BF16, CUDA_EPILOGUE_NONE><<<blocks, 256, 0, cuda_stream>>>(out, inp, w, b, res, N, OC, C);
}

/* The streamed product of a shape cuda_gemv_fits takes, for fn. */
static int gemv_forward(const char *fn, float *out, const float *inp, const float *w, const void *w_bf16,
                        const float *b, const float *res, int N, int OC, int C, int epilogue) {
    if (w_bf16) gemv_launch<true>(out, inp, w_bf16, b, res, N, OC, C, epilogue);
    else gemv_launch<false>(out, inp, w, b, res, N, OC, C, epilogue);
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
