/* gemm_pool.h — a persistent pool of worker threads for the bf16 products.
 * The calling thread works too; workers spin briefly after a job (a layer
 * issues products back to back) and then sleep. */
#ifndef TUNEPIPE_GEMM_POOL_H
#define TUNEPIPE_GEMM_POOL_H

/* fn(arg, thread, nthreads) runs once on each of the nthreads participants
 * (thread 0 is the caller); returns when all have finished. */
typedef void (*gemm_pool_fn)(void *arg, int thread, int nthreads);
void gemm_pool_run(gemm_pool_fn fn, void *arg);

/* Participants, counting the caller (starts the pool on first use). */
int gemm_pool_size(void);
/* Sets the size before the pool starts; ignored afterwards. */
void gemm_pool_set_size(int n);

#endif
