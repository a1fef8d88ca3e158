/* dist.c — see dist.h. */
#include "dist.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"

static int started, rank, size = 1;
static double wait_seconds, comm_seconds;
static char rank_name[64];

/* The variables Open MPI's mpirun, PMIx launchers (Slurm's srun, prterun)
 * and PMI ones (MPICH's hydra) give the processes they start. */
static int launched(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

/* A rank that cannot go on takes the others with it: they would wait
 * for it forever. */
static void abort_job(void) { MPI_Abort(MPI_COMM_WORLD, 1); }

int dist_init(int *argc, char ***argv, char *err, int errlen) {
    if (!launched()) return 1;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return fail_message(err, errlen, "MPI_Init failed");
    started = 1;
    /* A failed call (a peer gone) ends the job rather than return. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size == 1) return 1;
    cli_set_die_hook(abort_job);
    if (rank > 0) {
        snprintf(rank_name, sizeof rank_name, "%s: rank %d", prog_name, rank);
        prog_name = rank_name;
    }
    return 1;
}

void dist_finish(void) {
    if (started) MPI_Finalize();
}

int dist_rank(void) { return rank; }
int dist_size(void) { return size; }

/* The ring's messages: small enough that the receive buffer is no cost,
 * large enough that a message's latency is (4 MB: 3 ms at 10 Gb/s). */
#define SEGMENT_FLOATS (1 << 20)

/* Chunk c of N of a block of n: [n c / N, n (c + 1) / N). */
static size_t chunk_at(size_t n, int c) { return n * (size_t)c / (size_t)size; }

/* One step of the ring: chunk cs of grad goes right while chunk cr comes
 * from the left, in segments; add: summed into grad, else copied. Every
 * rank takes the same number of segments (the chunks differ by one float
 * at most), so each send meets its receive. */
static void ring_step(float *grad, size_t n, int cs, int cr, int add, float *in) {
    int right = (rank + 1) % size, left = (rank + size - 1) % size;
    size_t sb = chunk_at(n, cs), se = chunk_at(n, cs + 1), rb = chunk_at(n, cr), re = chunk_at(n, cr + 1);
    size_t segments = (n / (size_t)size + 1 + SEGMENT_FLOATS - 1) / SEGMENT_FLOATS;
    for (size_t k = 0; k < segments; k++) {
        int ns = (int)(se - sb < SEGMENT_FLOATS ? se - sb : SEGMENT_FLOATS);
        int nr = (int)(re - rb < SEGMENT_FLOATS ? re - rb : SEGMENT_FLOATS);
        MPI_Sendrecv(grad + sb, ns, MPI_FLOAT, right, add, add ? in : grad + rb, nr, MPI_FLOAT, left, add,
                     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (add)
            for (int i = 0; i < nr; i++) grad[rb + (size_t)i] += in[i];
        sb += (size_t)ns;
        rb += (size_t)nr;
    }
}

static int mod(int a) { return (a % size + size) % size; }

void dist_reduce(float *grad, size_t n, double scalars[2]) {
    if (size == 1) return;
    /* The ranks' shares differ in tokens: the wait for the slowest is
     * told apart from the transfer. */
    double t0 = MPI_Wtime();
    MPI_Barrier(MPI_COMM_WORLD);
    double t1 = MPI_Wtime();
    wait_seconds += t1 - t0;
    float *in = xmalloc_aligned(SEGMENT_FLOATS * sizeof *in);
    /* Reduce-scatter: at step s chunk rank - s goes right and chunk
     * rank - s - 1 comes from the left and is added here; after N - 1
     * steps this rank holds the whole sum of chunk rank + 1, added in
     * ring order. All-gather: the finished chunks go round, copied. */
    for (int s = 0; s < size - 1; s++) ring_step(grad, n, mod(rank - s), mod(rank - s - 1), 1, in);
    for (int s = 0; s < size - 1; s++) ring_step(grad, n, mod(rank + 1 - s), mod(rank - s), 0, in);
    free(in);
    dist_sum(scalars, 2);
    comm_seconds += MPI_Wtime() - t1;
}

void dist_sum(double *x, int n) {
    if (size == 1) return;
    double *all = xmalloc((size_t)size * (size_t)n * sizeof *all);
    MPI_Allgather(x, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int r = 0; r < size; r++) s += all[(size_t)r * (size_t)n + (size_t)i];
        x[i] = s;
    }
    free(all);
}

int dist_any(int flag) {
    if (size == 1) return flag != 0;
    int in = flag != 0, out;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

void dist_barrier(void) {
    if (size > 1) MPI_Barrier(MPI_COMM_WORLD);
}

/* MPI counts are ints: big arrays go in pieces of 1 GB. */
static void bcast_bytes(void *p, size_t n) {
    for (size_t off = 0; off < n; off += (size_t)1 << 30) {
        size_t k = n - off < (size_t)1 << 30 ? n - off : (size_t)1 << 30;
        MPI_Bcast((char *)p + off, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
}

void dist_share_dataset(dataset *d) {
    if (size == 1) return;
    uint64_t head[4] = {d->num_tokens, d->n, d->num_targets, d->fingerprint};
    MPI_Bcast(head, 4, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (rank > 0) {
        memset(d, 0, sizeof *d);
        d->num_tokens = d->cap_ids = head[0];
        d->n = d->cap_ex = head[1];
        d->num_targets = head[2];
        d->fingerprint = head[3];
        d->ids = xmalloc(d->num_tokens * sizeof *d->ids);
        d->ex = xmalloc(d->n * sizeof *d->ex);
    }
    bcast_bytes(d->ids, d->num_tokens * sizeof *d->ids);
    bcast_bytes(d->ex, d->n * sizeof *d->ex);
}

void dist_reduce_seconds(double *wait, double *comm) {
    *wait = wait_seconds;
    *comm = comm_seconds;
}
