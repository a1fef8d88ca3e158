/* cuda_core.cu — the module's state, errors, memory, scratch, and the
 * element-wise kernels of the optimizer: bf16 rounding, sums of squares,
 * AdamW. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

cudaStream_t cuda_stream;
cublasHandle_t cuda_blas;
cublasLtHandle_t cuda_blaslt;
void *cuda_workspace;
int cuda_sm_count;
unsigned *cuda_split_counters;
int cuda_pdl;
static int initialized;
static char last_error[512];
static char device_name[256];
static void held_add(void *p, size_t bytes);

/* Small uploads (a decoding step's token ids and sequence descriptors)
 * are copied into a page-locked ring and queued, and return at once: no
 * wait for the GPU between steps. The ring starts over after a wait for
 * the stream, so no queued copy still reads what is overwritten. Larger
 * uploads wait for their copy. (Neither happens while a step is being
 * recorded: a recorded copy would replay the ring's later contents.) */
#define UPLOAD_RING_BYTES ((size_t)1 << 20)
#define UPLOAD_SMALL_BYTES ((size_t)64 << 10)
static unsigned char *upload_ring;
static size_t upload_used;

int cuda_fail(const char *fn, const char *what, const char *why) {
    snprintf(last_error, sizeof last_error, "%s: %s: %s", fn, what, why);
    return -1;
}

const char *cublas_status_text(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "cuBLAS invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "cuBLAS architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR: return "cuBLAS mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "cuBLAS execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "cuBLAS internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "cuBLAS: not supported";
    default: return "cuBLAS error";
    }
}

int cuda_launched(const char *fn) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cuda_fail(fn, "kernel launch", cudaGetErrorString(e));
}

int cuda_ready(const char *fn) {
    if (!initialized) return cuda_fail(fn, "not initialized", "call cuda_ops_init first");
    cuda_profile_mark(fn);
    return 0;
}

const char *cuda_ops_last_error(void) { return last_error; }
const char *cuda_ops_device_name(void) { return device_name; }
void *cuda_ops_stream(void) { return (void *)cuda_stream; }

int cuda_ops_init(void) {
    static const char *fn = "cuda_ops_init";
    if (initialized) return 0;
    int count = 0;
    CU_TRY(fn, cudaGetDeviceCount(&count));
    if (count == 0) return cuda_fail(fn, "cudaGetDeviceCount", "no CUDA device");
    int dev;
    cudaDeviceProp prop;
    CU_TRY(fn, cudaGetDevice(&dev));
    CU_TRY(fn, cudaGetDeviceProperties(&prop, dev));
    if (prop.major < 9) {
        char why[300];
        snprintf(why, sizeof why, "%s is sm_%d%d; this build is for sm_90", prop.name, prop.major, prop.minor);
        return cuda_fail(fn, "device", why);
    }
    snprintf(device_name, sizeof device_name, "%s", prop.name);
    cuda_sm_count = prop.multiProcessorCount;
    const char *pdl = getenv("TUNEPIPE_CUDA_PDL");
    cuda_pdl = pdl && strcmp(pdl, "1") == 0;
    CU_TRY(fn, cudaStreamCreateWithFlags(&cuda_stream, cudaStreamNonBlocking));
    CU_TRY(fn, cudaMalloc(&cuda_workspace, CUDA_WORKSPACE_BYTES));
    held_add(cuda_workspace, CUDA_WORKSPACE_BYTES);
    CU_TRY(fn, cudaMalloc(&cuda_split_counters, CUDA_SPLIT_COUNTERS * sizeof(unsigned)));
    CU_TRY(fn, cudaMemset(cuda_split_counters, 0, CUDA_SPLIT_COUNTERS * sizeof(unsigned)));
    held_add(cuda_split_counters, CUDA_SPLIT_COUNTERS * sizeof(unsigned));
    BLAS_TRY(fn, cublasCreate(&cuda_blas));
    BLAS_TRY(fn, cublasSetStream(cuda_blas, cuda_stream));
    /* fp32 products stay fp32: no TF32 tensor cores. */
    BLAS_TRY(fn, cublasSetMathMode(cuda_blas, CUBLAS_DEFAULT_MATH));
    BLAS_TRY(fn, cublasSetWorkspace(cuda_blas, cuda_workspace, CUDA_WORKSPACE_BYTES));
    BLAS_TRY(fn, cublasLtCreate(&cuda_blaslt));
    CU_TRY(fn, cudaMallocHost(&upload_ring, UPLOAD_RING_BYTES));
    upload_used = 0;
    cuda_profile_init();
    initialized = 1;
    return 0;
}

static struct {
    void *p;
    size_t bytes;
} scratch[SCRATCH_COUNT];

static unsigned scratch_moves;

unsigned cuda_scratch_moves(void) { return scratch_moves; }

void *cuda_scratch(int which, size_t bytes) {
    if (bytes <= scratch[which].bytes) return scratch[which].p;
    scratch_moves++;
    /* Kernels queued before may still use the old buffer. */
    if (scratch[which].p) {
        cudaStreamSynchronize(cuda_stream);
        cuda_free(scratch[which].p);
    }
    size_t grown = bytes + bytes / 4;
    scratch[which].bytes = 0;
    scratch[which].p = cuda_alloc(grown);
    if (!scratch[which].p) return NULL;
    scratch[which].bytes = grown;
    return scratch[which].p;
}

void cuda_ops_shutdown(void) {
    if (!initialized) return;
    cudaStreamSynchronize(cuda_stream);
    for (int i = 0; i < SCRATCH_COUNT; i++) {
        cuda_free(scratch[i].p);
        scratch[i].p = NULL;
        scratch[i].bytes = 0;
    }
    cublasLtDestroy(cuda_blaslt);
    cublasDestroy(cuda_blas);
    cudaFree(cuda_workspace);
    cudaFree(cuda_split_counters);
    cudaFreeHost(upload_ring);
    upload_ring = NULL;
    cudaStreamDestroy(cuda_stream);
    initialized = 0;
}

/* ---- memory ---- */

/* What cuda_alloc holds, for cuda_ops_peak_bytes: each block's size (a
 * few hundred blocks: the model's, the activations', the caches'). */
static struct {
    void **p;
    size_t *bytes, n, cap, held, peak;
} blocks;

static void held_add(void *p, size_t bytes) {
    if (blocks.n == blocks.cap) {
        size_t cap = blocks.cap ? 2 * blocks.cap : 256;
        void **np = (void **)realloc(blocks.p, cap * sizeof *np);
        if (np) blocks.p = np;
        size_t *nb = (size_t *)realloc(blocks.bytes, cap * sizeof *nb);
        if (nb) blocks.bytes = nb;
        if (!np || !nb) return; /* the figure then misses this block */
        blocks.cap = cap;
    }
    blocks.p[blocks.n] = p;
    blocks.bytes[blocks.n++] = bytes;
    blocks.held += bytes;
    if (blocks.held > blocks.peak) blocks.peak = blocks.held;
}

static void held_remove(void *p) {
    for (size_t i = blocks.n; i-- > 0;)
        if (blocks.p[i] == p) {
            blocks.held -= blocks.bytes[i];
            blocks.p[i] = blocks.p[--blocks.n];
            blocks.bytes[i] = blocks.bytes[blocks.n];
            return;
        }
}

size_t cuda_ops_peak_bytes(void) { return blocks.peak; }

void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    if (cuda_ready("cuda_alloc")) return NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        char what[64];
        snprintf(what, sizeof what, "cudaMalloc(%zu bytes)", bytes);
        cuda_fail("cuda_alloc", what, cudaGetErrorString(e));
        cudaGetLastError(); /* not sticky: the next launch must not report it */
        return NULL;
    }
    held_add(p, bytes);
    return p;
}

void cuda_free(void *p) {
    if (!p) return;
    held_remove(p);
    cudaFree(p);
}

void *cuda_host_alloc(size_t bytes) {
    void *p = NULL;
    if (cuda_ready("cuda_host_alloc")) return NULL;
    cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cuda_fail("cuda_host_alloc", "cudaMallocHost", cudaGetErrorString(e));
        cudaGetLastError();
        return NULL;
    }
    return p;
}

void cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

int cuda_to_device(void *dst, const void *src, size_t bytes) {
    static const char *fn = "cuda_to_device";
    if (cuda_ready(fn)) return -1;
    if (bytes > UPLOAD_SMALL_BYTES) {
        CU_TRY(fn, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream));
        CU_TRY(fn, cudaStreamSynchronize(cuda_stream));
        return 0;
    }
    const size_t room = (bytes + 15) & ~(size_t)15;
    if (upload_used + room > UPLOAD_RING_BYTES) {
        CU_TRY(fn, cudaStreamSynchronize(cuda_stream));
        upload_used = 0;
    }
    unsigned char *staged = upload_ring + upload_used;
    upload_used += room;
    memcpy(staged, src, bytes);
    CU_TRY(fn, cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyHostToDevice, cuda_stream));
    return 0;
}

int cuda_to_host(void *dst, const void *src, size_t bytes) {
    if (cuda_ready("cuda_to_host")) return -1;
    CU_TRY("cuda_to_host", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream));
    CU_TRY("cuda_to_host", cudaStreamSynchronize(cuda_stream));
    return 0;
}

int cuda_copy(void *dst, const void *src, size_t bytes) {
    if (cuda_ready("cuda_copy")) return -1;
    CU_TRY("cuda_copy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream));
    return 0;
}

int cuda_zero(void *p, size_t bytes) {
    if (cuda_ready("cuda_zero")) return -1;
    CU_TRY("cuda_zero", cudaMemsetAsync(p, 0, bytes, cuda_stream));
    return 0;
}

int cuda_sync(void) {
    if (cuda_ready("cuda_sync")) return -1;
    CU_TRY("cuda_sync", cudaStreamSynchronize(cuda_stream));
    return 0;
}

/* ---- recorded work ---- */

int cuda_record_begin(void) {
    /* Relaxed: the libraries' own setup calls during a capture (cuBLASLt
     * making a plan) are not refused. */
    CU_TRY("cuda_record_begin", cudaStreamBeginCapture(cuda_stream, cudaStreamCaptureModeRelaxed));
    return 0;
}

int cuda_record_end(void **rec) {
    static const char *fn = "cuda_record_end";
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    *rec = NULL;
    CU_TRY(fn, cudaStreamEndCapture(cuda_stream, &graph));
    cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return cuda_fail(fn, "cudaGraphInstantiate", cudaGetErrorString(e));
    *rec = exec;
    return cuda_replay(exec);
}

int cuda_replay(void *rec) {
    if (cuda_ready("cuda_replay")) return -1;
    CU_TRY("cuda_replay", cudaGraphLaunch((cudaGraphExec_t)rec, cuda_stream));
    return 0;
}

void cuda_record_free(void *rec) {
    if (rec) cudaGraphExecDestroy((cudaGraphExec_t)rec);
}

/* ---- bf16 ---- */

/* gemm_fp32_to_bf16: nearest even, NaN kept quiet. */
__global__ void to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    dst[i] = bf16_bits(src[i]);
}

int cuda_to_bf16(void *dst, const float *src, size_t n) {
    if (cuda_ready("cuda_to_bf16")) return -1;
    if (n == 0) return 0;
    to_bf16_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream>>>((uint16_t *)dst, src, n);
    return cuda_launched("cuda_to_bf16");
}

/* ---- sums of squares ---- */

#define SUMSQ_THREADS 256
#define SUMSQ_BLOCKS 1024 /* at most; fixed by n alone, so the order is too */

/* Four loads in flight a thread; the order depends on n alone. */
__global__ void sumsq_partial_kernel(double *partial, const float *x, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (; i + 3 * stride < n; i += 4 * stride) {
        double a = x[i], b = x[i + stride], c = x[i + 2 * stride], d = x[i + 3 * stride];
        s0 += a * a;
        s1 += b * b;
        s2 += c * c;
        s3 += d * d;
    }
    for (; i < n; i += stride) {
        double a = x[i];
        s0 += a * a;
    }
    double s = block_sum((s0 + s1) + (s2 + s3));
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(double *out, const double *partial, int n) {
    double s = threadIdx.x < n ? partial[threadIdx.x] : 0.0;
    s = block_sum(s);
    if (threadIdx.x == 0) *out += s;
}

int cuda_sum_squares(const float *x, size_t n, double *out) {
    static const char *fn = "cuda_sum_squares";
    if (cuda_ready(fn)) return -1;
    unsigned blocks = cuda_blocks(n, SUMSQ_THREADS * 8);
    if (blocks > SUMSQ_BLOCKS) blocks = SUMSQ_BLOCKS;
    if (blocks == 0) return 0;
    double *partial = (double *)cuda_scratch(SCRATCH_SUMSQ, SUMSQ_BLOCKS * sizeof(double));
    if (!partial) return -1;
    sumsq_partial_kernel<<<blocks, SUMSQ_THREADS, 0, cuda_stream>>>(partial, x, n);
    sum_partials_kernel<<<1, SUMSQ_BLOCKS, 0, cuda_stream>>>(out, partial, (int)blocks);
    return cuda_launched(fn);
}

/* ---- AdamW ---- */

/* adamw_update's scalar loop, each operation rounded on its own (no
 * fused multiply-adds), so every element matches the CPU's bits. */
__global__ void adamw_kernel(adamw_consts c, float *p, const float *g, float *m, float *v, size_t n, int decay) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float b2 = c.beta2, one_b2 = __fsub_rn(1.0f, c.beta2), w1 = __fsub_rn(1.0f, c.beta1);
    const float keep = decay ? c.decay_keep : 1.0f, neg_step = -c.step_size;
    float gi = __fmul_rn(g[i], c.grad_factor);
    float pi = p[i];
    if (decay) pi = __fmul_rn(pi, keep);
    float mi = __fadd_rn(m[i], __fmul_rn(w1, __fsub_rn(gi, m[i])));
    float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(one_b2, __fmul_rn(gi, gi)));
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
    p[i] = __fadd_rn(pi, __fmul_rn(neg_step, __fdiv_rn(mi, denom)));
    m[i] = mi;
    v[i] = vi;
}

int cuda_adamw(const adamw_consts *k, float *param, const float *grad, float *m, float *v, size_t n, int decay) {
    if (cuda_ready("cuda_adamw")) return -1;
    if (n == 0) return 0;
    adamw_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream>>>(*k, param, grad, m, v, n, decay);
    return cuda_launched("cuda_adamw");
}
