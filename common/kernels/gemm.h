/* gemm.h — the matrix products of a linear layer in bf16 with fp32
 * accumulation, on both cores.
 *
 * A layer's weight w[OC, C] (fp32 master copy, owned by the caller) is
 * converted once per optimizer step into bf16 copies laid out for the
 * hardware (gemm_weight_pack); activations and gradients stay fp32 and are
 * rounded to bf16 on the fly; every product accumulates in fp32 and
 * writes fp32.
 *
 * Three ways to compute, chosen at run time (gemm_path):
 *   GEMM_AMX         Intel AMX tiles (Sapphire Rapids and later)
 *   GEMM_AVX512BF16  AVX-512 BF16 dot products (Cooper Lake, Zen 4)
 *   GEMM_FP32        cblas_sgemm on the fp32 master weights: exact, no bf16
 * The default is the fastest the CPU and OS allow; TUNEPIPE_GEMM=amx,
 * avx512bf16 or fp32 in the environment asks for one (a path the CPU lacks
 * falls back to the next one down, with a warning).
 *
 * Rounding: fp32 -> bf16 is round-to-nearest-even (the hardware conversion,
 * which also flushes subnormal inputs to zero). Each product of length K
 * then differs from the exact one by about 2^-8 * sqrt(K) * rms(terms).
 *
 * Not reentrant: call from one thread at a time. */
#ifndef TUNEPIPE_GEMM_H
#define TUNEPIPE_GEMM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { GEMM_FP32, GEMM_AVX512BF16, GEMM_AMX } gemm_path;

/* The path in use (decided at first call, from the CPU and TUNEPIPE_GEMM). */
gemm_path gemm_current_path(void);
/* Switches path; returns 0 (and changes nothing) when the CPU or OS cannot
 * run it. Weights packed before must be packed again after switching from
 * GEMM_FP32 to a bf16 path. */
int gemm_use_path(gemm_path p);
/* 1 when this CPU and OS can run path p. */
int gemm_path_supported(gemm_path p);
/* "amx", "avx512bf16", "fp32". */
const char *gemm_path_name(gemm_path p);

/* For --dtype bf16, the one rule of both tools: 1 when a bf16 path runs
 * here; else a warning that the tool computes in fp32 instead, and 0. */
int gemm_bf16_available(void);

/* For --verbose: one line on stderr naming the kernels that compute (the
 * bf16 path when bf16, OpenBLAS's kernel set) and the thread count. */
void gemm_tell_kernels(int bf16);

/* Threads the products use, counting the caller: those of the process's
 * one pool (parallel_set_threads, parallel_threads). */
void gemm_set_threads(int n);
int gemm_threads(void);

/* Bf16 copies of w[OC, C] for the products that need them. */
enum {
    GEMM_FOR_FORWARD = 1,   /* gemm_forward */
    GEMM_FOR_BACKWARD = 2,  /* gemm_backward_input */
};
typedef struct {
    const float *w;     /* fp32 master weight [OC, C], borrowed */
    int OC, C;
    int uses;           /* GEMM_FOR_* bits */
    uint16_t *fwd;      /* tiles of wᵀ (K = C, N = OC), NULL until packed */
    uint16_t *bwd;      /* tiles of w (K = OC, N = C), NULL until packed */
} gemm_weight;

/* Records w (not copied, must outlive gw) and what it is used for. */
void gemm_weight_init(gemm_weight *gw, const float *w, int OC, int C, int uses);
/* (Re)makes the bf16 copies from the current w: call after every change
 * to w (each optimizer step). Does nothing on the GEMM_FP32 path. Memory:
 * 2 bytes per weight per use, dimensions rounded up to multiples of 32. */
void gemm_weight_pack(gemm_weight *gw);
/* gemm_weight_pack for rows [o0, o1) of w only, on the calling thread:
 * o0 a multiple of 16, o1 too or OC; gw packed once before. Threads may
 * re-pack disjoint rows of a weight at once, each right after updating
 * them, while they are still in its cache. */
void gemm_weight_pack_rows(gemm_weight *gw, int o0, int o1);
/* The forward copy (GEMM_FOR_FORWARD) from a slice of the weight held
 * elsewhere: rows [n, C] are rows o0 .. o0+n-1 of w, o0 a multiple of 32
 * and n too unless the slice ends at OC. For loading a weight a slice at a
 * time, never holding all of it in fp32 (gw->w may then be NULL). The
 * first slice allocates the copy; the conversion runs on the pool. On a
 * bf16 path only. */
void gemm_weight_pack_slice(gemm_weight *gw, const float *rows, int o0, int n);
/* Bytes the bf16 copies of gw take (0 when not packed). */
size_t gemm_weight_bytes(const gemm_weight *gw);
void gemm_weight_free(gemm_weight *gw);

/* out[T, OC] = inp[T, C] · wᵀ + bias[OC]  (bias may be NULL).
 * Needs GEMM_FOR_FORWARD. */
void gemm_forward(float *out, const float *inp, const gemm_weight *gw, const float *bias, int T);

/* dinp[T, C] += dout[T, OC] · w.  Needs GEMM_FOR_BACKWARD. */
void gemm_backward_input(float *dinp, const float *dout, const gemm_weight *gw, int T);

/* dw[OC, C] = (accumulate ? dw : 0) + doutᵀ · inp[T, C];
 * dbias[OC] += Σ_t dout[t, ·] in fp32 (dbias may be NULL). sumsq (may be
 * NULL) gets Σ dw² of the result in double, summed in an order that does
 * not depend on the thread count: the bf16 paths take each block of dw
 * while it is still in cache, sparing a pass over memory (the gradient
 * norm). Needs no packed weight. */
void gemm_backward_weight(float *dw, float *dbias, const float *dout, const float *inp,
                          int T, int OC, int C, int accumulate, double *sumsq);

/* Round-to-nearest-even conversions (NaN stays NaN, subnormals kept). */
uint16_t gemm_fp32_to_bf16(float f);
float gemm_bf16_to_fp32(uint16_t h);

#endif
