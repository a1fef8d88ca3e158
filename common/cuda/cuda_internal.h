/* cuda_internal.h — what the .cu files of common/cuda share: the module's
 * state, error reporting, scratch buffers, block reductions. */
#ifndef TUNEPIPE_CUDA_INTERNAL_H
#define TUNEPIPE_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda_ops.h"

extern cudaStream_t cuda_stream;
extern cublasHandle_t cuda_blas;
extern cublasLtHandle_t cuda_blaslt;
extern void *cuda_workspace;
#define CUDA_WORKSPACE_BYTES ((size_t)32 << 20)
/* The device's streaming multiprocessors, for sizing grids. */
extern int cuda_sm_count;
/* Zeroed counters, one per block group of a split op (the streamed
 * product, the decoding attention); the group's last block re-arms its. */
extern unsigned *cuda_split_counters;
#define CUDA_SPLIT_COUNTERS 65536
/* After every thread of the block has written its part of a group of
 * parts blocks: 1 in the block that wrote the group's last part (it may
 * then read the others' and must set *counter back to 0), else 0. */
__device__ inline int last_of_group(unsigned *counter, int parts) {
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == (unsigned)parts - 1;
    __syncthreads();
    if (last) __threadfence();
    return last;
}

/* Programmatic dependent launch (sm_90): a kernel that pdl_launch starts
 * may begin while the kernel before it on the stream is still running, so
 * that its launch, and its reads of what no kernel writes (the weights),
 * overlap that kernel's end. Such a kernel calls grid_dependents_launch()
 * (the next kernel may start) and must call grid_dependency_wait() before
 * it reads anything an earlier kernel wrote, or writes anything: the wait
 * returns once the kernel before it has finished and its writes are
 * visible. Both are no-ops in a kernel launched the plain way, as every
 * kernel is unless TUNEPIPE_CUDA_PDL=1 (cuda_pdl): off until it has run
 * on a GPU against the plain launch. A failed launch shows in
 * cuda_launched, as a plain one's does. */
extern int cuda_pdl;
__device__ inline void grid_dependency_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ inline void grid_dependents_launch() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
template <typename... Params, typename... Args>
inline void pdl_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shmem, Args... args) {
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = cuda_pdl;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = shmem;
    cfg.stream = cuda_stream;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    cudaLaunchKernelEx(&cfg, kernel, args...);
}

/* Records "fn: what: why" as the last error; returns -1. */
int cuda_fail(const char *fn, const char *what, const char *why);
const char *cublas_status_text(cublasStatus_t s);
/* 0 when the launches so far went in, else -1 with CUDA's reason. */
int cuda_launched(const char *fn);
/* -1 with an error unless cuda_ops_init succeeded; marks fn's start
 * for the profile. */
int cuda_ready(const char *fn);

/* TUNEPIPE_CUDA_PROFILE (cuda_profile.cu): init reads it; a mark starts
 * an op's interval; shape adds the product's N x OC x C to the last mark. */
void cuda_profile_init(void);
void cuda_profile_mark(const char *key);
void cuda_profile_shape(int N, int OC, int C);

#define CU_TRY(fn, call)                                                     \
    do {                                                                     \
        cudaError_t e_ = (call);                                             \
        if (e_ != cudaSuccess) return cuda_fail(fn, #call, cudaGetErrorString(e_)); \
    } while (0)
#define BLAS_TRY(fn, call)                                                   \
    do {                                                                     \
        cublasStatus_t s_ = (call);                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS) return cuda_fail(fn, #call, cublas_status_text(s_)); \
    } while (0)

/* Scratch buffers of the module, each grown on demand (never shrunk). */
enum {
    SCRATCH_BF16_A, SCRATCH_BF16_B, SCRATCH_PARTIAL, SCRATCH_ROWS, SCRATCH_SUMSQ, SCRATCH_EMBED, SCRATCH_SPANS,
    SCRATCH_DECODE_SPANS, SCRATCH_ARGMAX, SCRATCH_HEAD_LOGITS, SCRATCH_COUNT
};
void *cuda_scratch(int which, size_t bytes);

static inline unsigned cuda_blocks(size_t n, unsigned threads) {
    return (unsigned)((n + threads - 1) / threads);
}

/* x as bf16 bits (gemm_fp32_to_bf16): nearest even, NaN kept quiet. */
__device__ inline uint16_t bf16_bits(float x) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
/* Two floats as packed bf16, the first in the low half (memory order). */
__device__ inline uint32_t bf16_pair(float lo, float hi) {
    return (uint32_t)bf16_bits(lo) | (uint32_t)bf16_bits(hi) << 16;
}
/* Eight floats of two float4s. */
__device__ inline void unpack_f32x8(float4 a, float4 c, float *v) {
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = c.x, v[5] = c.y, v[6] = c.z, v[7] = c.w;
}
/* Eight bf16 (16 bytes, memory order) as floats. */
__device__ inline void unpack_bf16x8(uint4 q, float *v) {
    const uint32_t p[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v[2 * k] = __uint_as_float(p[k] << 16);
        v[2 * k + 1] = __uint_as_float(p[k] & 0xffff0000u);
    }
}

/* GELU with erf, gelu_forward's expression. */
__device__ inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }

/* Sums and maxima over a block (blockDim.x a multiple of 32, at most
 * 1024), in a fixed order; every thread gets the result. */
template <typename T> __device__ inline T warp_sum(T x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ inline float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
template <typename T> __device__ inline T block_sum(T x) {
    __shared__ T part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    x = warp_sum(x);
    __syncthreads(); /* part may still be read by a previous call */
    if (lane == 0) part[warp] = x;
    __syncthreads();
    x = lane < nw ? part[lane] : (T)0;
    return warp_sum(x);
}
__device__ inline float block_max(float x) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    x = warp_max(x);
    __syncthreads();
    if (lane == 0) part[warp] = x;
    __syncthreads();
    x = lane < nw ? part[lane] : -INFINITY;
    return warp_max(x);
}

#endif
