/* dist.h — neox-train's data parallelism: N processes (ranks) started by
 * an MPI launcher (mpirun -np N neox-train ...) each compute the gradients
 * of their share of every step; dist_reduce sums them, with the step's
 * loss sum and token count, so that every rank applies the same AdamW
 * step to the same weights. Rank 0 alone reads the training and eval
 * streams (dist_share_dataset) and writes OUT.
 *
 * A process no launcher started is one rank and never initializes MPI:
 * MPI_Init as a singleton costs 0.3 s and leaves allocations that
 * LeakSanitizer reports. All of tunepipe's MPI calls are in dist.c. */
#ifndef TUNEPIPE_DIST_H
#define TUNEPIPE_DIST_H

#include <stddef.h>

#include "stream/dataset.h"

/* Starts MPI when a launcher started this process (its environment says
 * so); from then on any rank's exit through base/cli.h (die, or running
 * out of memory) ends the whole job (MPI_Abort), and the messages of
 * ranks other than 0 say "rank N".
 * Returns 0 with the reason in err where MPI does not start. */
int dist_init(int *argc, char ***argv, char *err, int errlen);
/* MPI_Finalize, where dist_init started MPI. */
void dist_finish(void);
int dist_rank(void);
int dist_size(void);

/* The gradient reduce (trainer.h's grad_reduce_fn): sums grad[0..n) and
 * scalars[0..2) over the ranks, in place. Every rank gets the same bits,
 * and the same inputs give the same bits run after run: each piece of the
 * block is summed once, by a ring in a fixed order (reduce-scatter, then
 * all-gather, 2 (N-1)/N of the block sent and received per rank, as NCCL
 * does on GPUs), and the scalars are added in rank order. */
void dist_reduce(float *grad, size_t n, double scalars[2]);
/* x[0..n) summed over the ranks in rank order, on every rank. */
void dist_sum(double *x, int n);
/* Whether flag is nonzero on any rank (every rank gets the answer). */
int dist_any(int flag);
void dist_barrier(void);
/* Rank 0's dataset, copied to every other rank (whose d is filled). */
void dist_share_dataset(dataset *d);
/* Seconds spent in dist_reduce so far: waiting for the slowest rank to
 * reach it, and summing (the transfers and the additions). */
void dist_reduce_seconds(double *wait, double *comm);

#endif
