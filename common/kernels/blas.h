/* blas.h — getting OpenBLAS's fast kernels without the user doing anything.
 *
 * OpenBLAS picks its kernels once, when the library loads. Debian's 0.3.21
 * does not know Sapphire Rapids and falls back to "Prescott" (SSE3 kernels,
 * ~8x slower sgemm). When the CPU and OS support AVX-512 (F, DQ, BW, VL)
 * and OpenBLAS chose a core without it, blas_setup() re-executes the tool
 * with OPENBLAS_CORETYPE=SkylakeX. A user's OPENBLAS_CORETYPE is never
 * overridden; without AVX-512 nothing changes. */
#ifndef TUNEPIPE_BLAS_H
#define TUNEPIPE_BLAS_H

/* Call right after cli_init(), before reading any input. Returns only when
 * no re-exec is needed or it failed (the tool then runs as it is). Under an
 * address-space limit (ulimit -v) it also has OpenBLAS take its work buffer
 * at once, or dies saying the limit is too low: OpenBLAS itself would retry
 * the allocation forever. */
void blas_setup(char **argv);

/* The decision blas_setup() makes: 1 when the tool should re-execute with
 * OPENBLAS_CORETYPE=SkylakeX, given the variable's value (NULL: unset),
 * AVX-512 support, and the core OpenBLAS chose. */
int blas_needs_reexec(const char *coretype_env, int has_avx512, const char *core);

/* 1 when this CPU and OS can run AVX-512 F/DQ/BW/VL code. */
int blas_cpu_has_avx512(void);

/* The kernel set OpenBLAS chose ("SkylakeX", "Prescott", ...). */
const char *blas_core_name(void);

#endif
