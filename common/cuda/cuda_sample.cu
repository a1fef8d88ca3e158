/* cuda_sample.cu — greedy decoding's choice on the GPU (sampler.c's
 * argmax), so that a step's logits need not cross to the host. */
#include <limits.h>

#include "cuda_internal.h"

#define ARGMAX_THREADS 1024

/* The better of two candidates: the larger value, the smaller index on
 * ties; an empty candidate has index INT_MAX. */
__device__ inline void argmax_merge(float &v, int &i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

/* ids[r] = the first index of the largest logit of row r, NaN never
 * chosen unless it is element 0 (sampler.c's scan: best = 0, then each
 * element that compares greater). One block a row. */
__global__ void __launch_bounds__(ARGMAX_THREADS) argmax_kernel(uint32_t *ids, const float *x, int V) {
    __shared__ float part_v[32];
    __shared__ int part_i[32];
    grid_dependency_wait();
    const float *row = x + (size_t)blockIdx.x * V;
    float v = -INFINITY;
    int i = INT_MAX;
    for (int j = threadIdx.x; j < V; j += ARGMAX_THREADS) argmax_merge(v, i, row[j], j);
    for (int o = 16; o > 0; o >>= 1)
        argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) part_v[warp] = v, part_i[warp] = i;
    __syncthreads();
    if (warp) return;
    v = lane < ARGMAX_THREADS / 32 ? part_v[lane] : -INFINITY;
    i = lane < ARGMAX_THREADS / 32 ? part_i[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1)
        argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    if (lane == 0) ids[blockIdx.x] = isnan(row[0]) ? 0u : (uint32_t)i;
}

int cuda_argmax_rows(uint32_t *host_ids, const float *x, int R, int V) {
    static const char *fn = "cuda_argmax_rows";
    if (cuda_ready(fn)) return -1;
    if (R <= 0) return 0;
    uint32_t *ids = (uint32_t *)cuda_scratch(SCRATCH_ARGMAX, (size_t)R * sizeof *ids);
    if (!ids) return -1;
    pdl_launch(argmax_kernel, R, ARGMAX_THREADS, 0, ids, x, V);
    if (cuda_launched(fn)) return -1;
    CU_TRY(fn, cudaMemcpyAsync(host_ids, ids, (size_t)R * sizeof *ids, cudaMemcpyDeviceToHost, cuda_stream));
    CU_TRY(fn, cudaStreamSynchronize(cuda_stream));
    return 0;
}
