/* cuda_attention.cu — rotary and causal attention over a pack (one
 * sequence at a time, heads batched in strided cuBLAS products, as
 * ops.c's per-head sgemms), its backward, and cached decoding. */
#include <math.h>

#include "cuda_internal.h"

/* ---- rotary ---- */

/* Tokens [0, n) of one sequence at positions pos0.. : for each head, the
 * first rot dims of q and k, rotate_half. dir -1: the transposed rotation
 * (rotary_backward). */
__global__ void rotary_kernel(float *qkv, const float *cos_t, const float *sin_t, int n, int NH, int hd, int rot,
                              int dir) {
    int half = rot / 2;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * NH * half) return;
    int i = (int)(idx % half), h = (int)(idx / half % NH), t = (int)(idx / half / NH);
    float c = cos_t[(size_t)t * half + i], s = sin_t[(size_t)t * half + i];
    float *q = qkv + ((size_t)t * NH + h) * 3 * hd;
    for (int part = 0; part < 2; part++) {
        float *x = q + part * hd;
        float x1 = x[i], x2 = x[i + half];
        if (dir > 0) {
            x[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
            x[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
        } else {
            x[i] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
            x[i + half] = __fsub_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
        }
    }
}

static int rotary(const char *fn, float *qkv, const float *cos_t, const float *sin_t, int n, int NH, int hd,
                  int rot, int dir) {
    size_t work = (size_t)n * NH * (rot / 2);
    if (work == 0) return 0;
    rotary_kernel<<<cuda_blocks(work, 256), 256, 0, cuda_stream>>>(qkv, cos_t, sin_t, n, NH, hd, rot, dir);
    return cuda_launched(fn);
}

/* ---- causal softmax and its backward, one warp a row of [NH, n, n] ---- */

__global__ void causal_softmax_kernel(float *att, int n, int rows) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t = row % n;
    float *a = att + (size_t)row * n;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32) mx = fmaxf(mx, a[j]);
    mx = warp_max(mx);
    float sum = 0;
    for (int j = lane; j <= t; j += 32) {
        float e = expf(a[j] - mx);
        a[j] = e;
        sum += e;
    }
    float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < n; j += 32) a[j] = j <= t ? a[j] * inv : 0.0f;
}

/* datt = att ⊙ (datt - Σ att·datt) on each row, the dot in double. */
__global__ void softmax_backward_kernel(float *datt, const float *att, int n, int rows) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    int t = row % n;
    const float *a = att + (size_t)row * n;
    float *d = datt + (size_t)row * n;
    double dot = 0;
    for (int j = lane; j <= t; j += 32) dot += (double)a[j] * d[j];
    float dotf = (float)warp_sum(dot);
    for (int j = lane; j < n; j += 32) d[j] = j <= t ? a[j] * (d[j] - dotf) : 0.0f;
}

static int check_geometry(const char *fn, int NH, int hd, int rot, int C) {
    if (NH * hd != C || rot < 0 || rot > hd || rot % 2) return cuda_fail(fn, "geometry", "needs C = NH*hd, even rot <= hd");
    return cuda_ready(fn);
}

/* Strided-batched fp32 product over heads (no TF32: the handle's default math). */
static int gemm_heads(const char *fn, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                      const float *A, int lda, long long sa, const float *B, int ldb, long long sb, float *Cm,
                      int ldc, long long sc, int batch) {
    const float beta = 0.0f;
    BLAS_TRY(fn, cublasSgemmStridedBatched(cuda_blas, ta, tb, m, n, k, &alpha, A, lda, sa, B, ldb, sb, &beta, Cm,
                                           ldc, sc, batch));
    return 0;
}

int cuda_attention_forward(float *qkv, float *att, float *out, const float *rope_cos, const float *rope_sin,
                           const int *seq_start_host, int nseq, int NH, int hd, int rot, int C) {
    static const char *fn = "cuda_attention_forward";
    if (check_geometry(fn, NH, hd, rot, C)) return -1;
    const int C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hd);
    const cublasOperation_t N_ = CUBLAS_OP_N, T_ = CUBLAS_OP_T;
    for (int s = 0; s < nseq; s++) {
        int t0 = seq_start_host[s], n = seq_start_host[s + 1] - t0;
        if (n <= 0) continue;
        float *q = qkv + (size_t)t0 * C3, *k = q + hd, *v = q + 2 * hd, *o = out + (size_t)t0 * C;
        long long nn = (long long)n * n;
        if (rotary(fn, q, rope_cos, rope_sin, n, NH, hd, rot, 1)) return -1;
        /* scoresᵀ (n x n) = kᵀᵀ q: column-major views of the row-major [n, hd] slices */
        if (gemm_heads(fn, T_, N_, n, n, hd, scale, k, C3, 3 * hd, q, C3, 3 * hd, att, n, nn, NH)) return -1;
        int rows = NH * n;
        causal_softmax_kernel<<<cuda_blocks(rows, 8), 256, 0, cuda_stream>>>(att, n, rows);
        if (cuda_launched(fn)) return -1;
        /* outᵀ (hd x n) = vᵀ · attᵀ */
        if (gemm_heads(fn, N_, N_, hd, n, n, 1.0f, v, C3, 3 * hd, att, n, nn, o, C, hd, NH)) return -1;
        att += (size_t)NH * nn;
    }
    return 0;
}

int cuda_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                            const float *rope_cos, const float *rope_sin, const int *seq_start_host, int nseq,
                            int NH, int hd, int rot, int C) {
    static const char *fn = "cuda_attention_backward";
    if (check_geometry(fn, NH, hd, rot, C)) return -1;
    const int C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hd);
    const cublasOperation_t N_ = CUBLAS_OP_N, T_ = CUBLAS_OP_T;
    for (int s = 0; s < nseq; s++) {
        int t0 = seq_start_host[s], n = seq_start_host[s + 1] - t0;
        if (n <= 0) continue;
        const float *q = qkv + (size_t)t0 * C3, *k = q + hd, *v = q + 2 * hd, *dy = dout + (size_t)t0 * C;
        float *dq = dqkv + (size_t)t0 * C3, *dk = dq + hd, *dv = dq + 2 * hd;
        long long nn = (long long)n * n;
        /* dv = attᵀ dy: dvᵀ (hd x n) = dyᵀ · att */
        if (gemm_heads(fn, N_, T_, hd, n, n, 1.0f, dy, C, hd, att, n, nn, dv, C3, 3 * hd, NH)) return -1;
        /* datt = dy vᵀ: dattᵀ (n x n) = vᵀᵀ dyᵀ */
        if (gemm_heads(fn, T_, N_, n, n, hd, 1.0f, v, C3, 3 * hd, dy, C, hd, datt, n, nn, NH)) return -1;
        int rows = NH * n;
        softmax_backward_kernel<<<cuda_blocks(rows, 8), 256, 0, cuda_stream>>>(datt, att, n, rows);
        if (cuda_launched(fn)) return -1;
        /* dq = scale dscore k: dqᵀ = kᵀ · dscoreᵀ */
        if (gemm_heads(fn, N_, N_, hd, n, n, scale, k, C3, 3 * hd, datt, n, nn, dq, C3, 3 * hd, NH)) return -1;
        /* dk = scale dscoreᵀ q: dkᵀ = qᵀ · dscore */
        if (gemm_heads(fn, N_, T_, hd, n, n, scale, q, C3, 3 * hd, datt, n, nn, dk, C3, 3 * hd, NH)) return -1;
        if (rotary(fn, dq, rope_cos, rope_sin, n, NH, hd, rot, -1)) return -1;
        att += (size_t)NH * nn;
    }
    return 0;
}

/* ---- cached decoding ---- */

/* Threads of a block: a (row, head, span) is a short job, so blocks are
 * many and small. */
#define DECODE_THREADS 128
/* Spans a row's positions are split into at most. */
#define DECODE_MAX_SPANS 32

/* Element d of a rotated q or k row x at the angles c, s of its position. */
__device__ inline float rotated(const float *x, int d, const float *c, const float *s, int half) {
    if (d < half) return __fsub_rn(__fmul_rn(x[d], c[d]), __fmul_rn(x[d + half], s[d]));
    if (d < 2 * half) return __fadd_rn(__fmul_rn(x[d], c[d - half]), __fmul_rn(x[d - half], s[d - half]));
    return x[d];
}

/* Block (r, h, s) attends new row r, head h, over the s-th of S equal
 * spans of its positions 0..pos. Keys before p0 come from the cache; the
 * step's own keys (positions p0..) straight from qkv, rotated here, so no
 * block waits for another; the span-0 block appends its row's key and
 * value. Each span keeps its maximum score m, Σ e = Σ exp(score - m) and
 * Σ e·v; with S > 1 they go to partial [R, NH, S, hd + 4] and the block
 * that finishes (r, h) last merges the spans in order (the bits never
 * depend on timing) and re-arms the counter. G lanes share a cached key,
 * G a power of two dividing hd/4, at most 32. Shared memory: q [hd], the
 * value sums' partials [DECODE_THREADS * 4], the span's scores. */
__global__ void __launch_bounds__(DECODE_THREADS)
decode_kernel(float *out, const float *qkv, const cuda_decode_seq *seqs, int nseq, int l, const float *cos_t,
              const float *sin_t, int NH, int hd, int rot, int G, float *partial, unsigned *counters) {
    extern __shared__ float4 smem4[];
    __shared__ int seq_of_row;
    const int r = blockIdx.x, h = blockIdx.y, span = blockIdx.z, S = gridDim.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int nwarps = DECODE_THREADS / 32, C = NH * hd, half = rot / 2, D4 = hd / 4;
    grid_dependents_launch();
    grid_dependency_wait();
    if (tid == 0) { /* seqs are in row order */
        int lo = 0, hi = nseq - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (seqs[mid].row0 <= r) lo = mid;
            else hi = mid - 1;
        }
        seq_of_row = lo;
    }
    __syncthreads();
    const cuda_decode_seq sq = seqs[seq_of_row];
    const int p0 = sq.p0, pos = p0 + (r - sq.row0), P = pos + 1;
    const int per_span = (P + S - 1) / S, j0 = min(P, span * per_span), j1 = min(P, j0 + per_span);
    const size_t head = ((size_t)l * NH + h) * sq.room * hd;
    float *Kc = sq.k + head, *Vc = sq.v + head;
    const float *x = qkv + (size_t)r * 3 * C + (size_t)h * 3 * hd;
    const float *newrows = qkv + (size_t)sq.row0 * 3 * C + (size_t)h * 3 * hd; /* row p0's q of this head */
    float *q = (float *)smem4;
    float4 *part = smem4 + D4;
    float *sc = (float *)(part + DECODE_THREADS);
    {
        const float *c = cos_t + (size_t)pos * half, *s = sin_t + (size_t)pos * half;
        for (int d = tid; d < hd; d += DECODE_THREADS) {
            q[d] = rotated(x, d, c, s, half);
            if (span == 0) {
                Kc[(size_t)pos * hd + d] = rotated(x + hd, d, c, s, half);
                Vc[(size_t)pos * hd + d] = x[2 * hd + d];
            }
        }
    }
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)hd);
    /* cached keys of the span: 32/G keys a warp at a time */
    const int per_warp = 32 / G, gid = lane / G, gl = lane % G, cached_end = min(j1, p0);
    for (int jb = j0 + warp * per_warp; jb < cached_end; jb += nwarps * per_warp) {
        int j = jb + gid;
        float acc = 0;
        if (j < cached_end) {
            const float4 *kr = (const float4 *)(Kc + (size_t)j * hd);
#pragma unroll 4
            for (int e = gl; e < D4; e += G) {
                float4 kv = kr[e], qv = ((const float4 *)q)[e];
                acc += kv.x * qv.x + kv.y * qv.y + kv.z * qv.z + kv.w * qv.w;
            }
        }
        for (int o = G / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (j < cached_end && gl == 0) sc[j - j0] = acc * scale;
    }
    /* this step's keys in the span, a warp each */
    for (int j = max(j0, p0) + warp; j < j1; j += nwarps) {
        const float *kx = newrows + (size_t)(j - p0) * 3 * C + hd;
        const float *c = cos_t + (size_t)j * half, *s = sin_t + (size_t)j * half;
        float acc = 0;
        for (int d = lane; d < hd; d += 32) acc += q[d] * rotated(kx, d, c, s, half);
        acc = warp_sum(acc);
        if (lane == 0) sc[j - j0] = acc * scale;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int j = tid; j < j1 - j0; j += DECODE_THREADS) mx = fmaxf(mx, sc[j]);
    mx = block_max(mx);
    float sum = 0;
    for (int j = tid; j < j1 - j0; j += DECODE_THREADS) {
        float e = expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    sum = block_sum(sum); /* block_sum's barriers publish sc */
    /* Σ e_j v_j: D4 threads a value row, J rows at a time */
    const int J = DECODE_THREADS / D4, d4 = tid % D4, jg = tid / D4;
    float4 acc = make_float4(0, 0, 0, 0);
    if (jg < J)
#pragma unroll 4
        for (int j = j0 + jg; j < j1; j += J) {
            const float *vr = j < p0 ? Vc + (size_t)j * hd : newrows + (size_t)(j - p0) * 3 * C + 2 * hd;
            float4 vv = ((const float4 *)vr)[d4];
            float e = sc[j - j0];
            acc.x += e * vv.x;
            acc.y += e * vv.y;
            acc.z += e * vv.z;
            acc.w += e * vv.w;
        }
    part[tid] = acc;
    __syncthreads();
    float4 o = make_float4(0, 0, 0, 0);
    if (tid < D4)
        for (int g = 0; g < J; g++) {
            float4 p = part[g * D4 + tid];
            o.x += p.x;
            o.y += p.y;
            o.z += p.z;
            o.w += p.w;
        }
    float4 *dst = (float4 *)(out + (size_t)r * C + (size_t)h * hd);
    if (S == 1) {
        if (tid < D4) {
            const float inv = 1.0f / sum;
            dst[tid] = make_float4(o.x * inv, o.y * inv, o.z * inv, o.w * inv);
        }
        return;
    }
    const size_t job = (size_t)r * NH + h, stride = (size_t)hd + 4; /* rows 16-byte aligned */
    float *mine = partial + (job * S + span) * stride;
    if (tid < D4) ((float4 *)mine)[tid] = o;
    if (tid == 0) mine[hd] = mx, mine[hd + 1] = sum;
    if (!last_of_group(&counters[job], S)) return;
    if (tid < D4) {
        const float *spans = partial + job * S * stride;
        float M = -INFINITY;
        for (int t = 0; t < S; t++) M = fmaxf(M, __ldcg(&spans[t * stride + hd]));
        float4 v = make_float4(0, 0, 0, 0);
        float L = 0;
        for (int t = 0; t < S; t++) {
            const float w = expf(__ldcg(&spans[t * stride + hd]) - M); /* an empty span: m = -inf, w = 0 */
            const float4 a = __ldcg((const float4 *)(spans + t * stride) + tid);
            v.x += w * a.x;
            v.y += w * a.y;
            v.z += w * a.z;
            v.w += w * a.w;
            L += w * __ldcg(&spans[t * stride + hd + 1]);
        }
        const float inv = 1.0f / L;
        dst[tid] = make_float4(v.x * inv, v.y * inv, v.z * inv, v.w * inv);
    }
    if (tid == 0) counters[job] = 0;
}

int cuda_attention_decode(float *out, const float *qkv, const cuda_decode_seq *seqs, int nseq, int R, int max_pos,
                          int l, const float *rope_cos, const float *rope_sin, int NH, int hd, int rot) {
    static const char *fn = "cuda_attention_decode";
    if (check_geometry(fn, NH, hd, rot, NH * hd)) return -1;
    if (hd % 4 || hd > 512) return cuda_fail(fn, "geometry", "needs hd % 4 == 0 and hd <= 512");
    if (R <= 0 || nseq <= 0) return 0;
    /* Lanes a key: as few as leave each lane 4 of its float4 loads in flight. */
    int D4 = hd / 4, G = 1;
    while (G < 32 && D4 % (2 * G) == 0 && D4 / (2 * G) >= 4) G *= 2;
    /* Spans: enough (row, head, span) blocks for four a multiprocessor. */
    const int jobs = R * NH;
    int S = (4 * cuda_sm_count + jobs - 1) / jobs;
    if (S > DECODE_MAX_SPANS) S = DECODE_MAX_SPANS;
    if (S < 2 || jobs > CUDA_SPLIT_COUNTERS) S = 1;
    float *partial = NULL;
    if (S > 1 && !(partial = (float *)cuda_scratch(SCRATCH_DECODE_SPANS, (size_t)jobs * S * (hd + 4) * sizeof(float))))
        return -1;
    size_t shmem = (size_t)D4 * 16 + DECODE_THREADS * 16 + (size_t)((max_pos + S - 1) / S) * 4;
    static size_t shmem_set = 48 << 10;
    if (shmem > shmem_set) {
        CU_TRY(fn, cudaFuncSetAttribute(decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shmem));
        shmem_set = shmem;
    }
    pdl_launch(decode_kernel, dim3(R, NH, S), DECODE_THREADS, shmem, out, qkv, seqs, nseq, l, rope_cos, rope_sin, NH,
               hd, rot, G, partial, cuda_split_counters);
    return cuda_launched(fn);
}
