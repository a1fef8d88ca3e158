/* mem_bench — the memory read bandwidth decoding at batch 1 is bound by:
 * every thread sums its share of a buffer far larger than the caches, as
 * a decoding step streams the weights. For 1 and for all CPUs' threads,
 * prints the median GB/s of several passes.
 *
 *   build/bench/mem_bench [MIB]   (buffer size, default 1024) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"

#define PASSES 9

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} share;

/* Four independent sums, so that the loads, not the adds, set the pace. */
static void *sum_share(void *arg) {
    share *s = arg;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= s->n; i += 4) {
        a += s->p[i];
        b += s->p[i + 1];
        c += s->p[i + 2];
        d += s->p[i + 3];
    }
    s->sum = a + b + c + d;
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_gbs(const uint64_t *buf, size_t n, int threads, uint64_t *check) {
    double gbs[PASSES];
    for (int r = 0; r < PASSES; r++) {
        pthread_t tid[256];
        share s[256];
        double t0 = now_seconds();
        for (int t = 0; t < threads; t++) {
            s[t] = (share){buf + n / threads * t, n / threads, 0};
            if (pthread_create(&tid[t], NULL, sum_share, &s[t]) != 0) die("pthread_create failed");
        }
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            *check += s[t].sum;
        }
        gbs[r] = (double)(n / threads * threads) * sizeof *buf / (now_seconds() - t0) * 1e-9;
    }
    qsort(gbs, PASSES, sizeof *gbs, cmp_double);
    return gbs[PASSES / 2];
}

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (mib < 64 || argc > 2) die("usage: mem_bench [MIB >= 64]");
    if (cpus < 1) cpus = 1;
    if (cpus > 256) cpus = 256;
    size_t n = (size_t)mib << 17; /* 8-byte words */
    uint64_t *buf = xmalloc(n * sizeof *buf);
    for (size_t i = 0; i < n; i++) buf[i] = i; /* every page touched before timing */
    uint64_t check = 0;
    printf("read 1 thread: %.1f GB/s (median of %d passes over %ld MiB)\n", median_gbs(buf, n, 1, &check),
           PASSES, mib);
    if (cpus > 1)
        printf("read %ld threads: %.1f GB/s (median of %d passes over %ld MiB)\n", cpus,
               median_gbs(buf, n, (int)cpus, &check), PASSES, mib);
    /* the sums used, so that no pass is optimized away */
    if (check == 1) printf("\n");
    free(buf);
    return 0;
}
