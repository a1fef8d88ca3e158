/* parallel.h — the one pool of worker threads of a process: the trainer's
 * loops over memory (optimizer, GELU, layer norms, cross-entropy), the
 * decoding products (gemv.h) and the bf16 products (gemm.h) all run on it,
 * so no two sets of workers spin against each other on a small machine.
 * Workers poll briefly after a job (a layer issues products back to back)
 * and then sleep. */
#ifndef TUNEPIPE_PARALLEL_H
#define TUNEPIPE_PARALLEL_H

#include <stddef.h>

#define PARALLEL_MAX_THREADS 64

/* Threads the pool uses (the caller counts as one); default, set on first
 * use: OpenBLAS's thread count. May change between jobs. */
void parallel_set_threads(int n);
int parallel_threads(void);

/* Runs fn(ctx, thread, nthreads) once on each of nthreads =
 * parallel_threads() participants (thread 0 is the caller) and returns when
 * all have finished. Call from one thread at a time (not from inside fn). */
void parallel_run(void (*fn)(void *ctx, int thread, int nthreads), void *ctx);

/* Splits [0, n) into at most parallel_threads() contiguous parts of at
 * least min_part indices (one part when n is smaller), calls fn(ctx, begin,
 * end, part) for each on its own thread, and returns when all are done.
 * The split depends only on n, min_part and the thread count. Same calling
 * rule as parallel_run. */
void parallel_for(size_t n, size_t min_part, void (*fn)(void *ctx, size_t begin, size_t end, int part),
                  void *ctx);

/* Moves OpenBLAS's threads to this pool: the pool gets OpenBLAS's thread
 * count (unless parallel_set_threads chose one) and OpenBLAS runs single
 * threaded from then on, inside parallel_sgemm's parts. One set of threads
 * that sleep between jobs, instead of OpenBLAS's workers spinning while
 * the pool runs the element-wise ops. The trainer does this; the
 * inference tools leave OpenBLAS its own threads. */
void parallel_take_blas_threads(void);
/* 1 once parallel_take_blas_threads has run. */
int parallel_owns_blas(void);

/* cblas_sgemm (row-major). Once the pool owns OpenBLAS's threads, the
 * columns of C are split over the pool in blocks of a fixed width, one
 * single-threaded sgemm each: the result does not depend on the thread
 * count, for any OpenBLAS kernel set. Before, it is one cblas_sgemm call,
 * threaded by OpenBLAS. */
void parallel_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
