/* parallel.h — a small pool of worker threads for the trainer's loops over
 * memory (optimizer, GELU, layer norms, cross-entropy): the matrix products
 * have OpenBLAS's threads, everything between them would otherwise run on
 * one core. Work is split by index range only, so results never depend on
 * timing. */
#ifndef TUNEPIPE_PARALLEL_H
#define TUNEPIPE_PARALLEL_H

#include <stddef.h>

#define PARALLEL_MAX_THREADS 64

/* Threads parallel_for uses (the caller counts as one); default, set on
 * first use: OpenBLAS's thread count. */
void parallel_set_threads(int n);
int parallel_threads(void);

/* Splits [0, n) into at most parallel_threads() contiguous parts of at
 * least min_part indices (one part when n is smaller), calls fn(ctx, begin,
 * end, part) for each on its own thread, and returns when all are done.
 * The split depends only on n, min_part and the thread count. Call from
 * one thread at a time (not from inside fn). */
void parallel_for(size_t n, size_t min_part, void (*fn)(void *ctx, size_t begin, size_t end, int part),
                  void *ctx);

/* Moves OpenBLAS's threads to this pool: the pool gets OpenBLAS's thread
 * count (unless parallel_set_threads chose one) and OpenBLAS runs single
 * threaded from then on, inside parallel_sgemm's parts. One set of threads
 * that sleep between jobs, instead of OpenBLAS's workers spinning while
 * the pool runs the element-wise ops. */
void parallel_take_blas_threads(void);

/* cblas_sgemm (row-major) with the columns of C split over the pool, in
 * multiples of 64; each part is one single-threaded sgemm. */
void parallel_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
