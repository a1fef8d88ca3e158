/* cuda_profile.cu — TUNEPIPE_CUDA_PROFILE=1: where a run's time goes on
 * the GPU. Each op marks the stream with an event as it begins; the GPU
 * time from one mark to the next is the first op's (its kernels, and any
 * wait for the host before the next op begins), and so is the host time
 * between the two calls. At exit, a table on stderr: per op (products
 * per shape), calls, GPU and host milliseconds. Steps are not recorded as
 * graphs while profiling, so that every op is seen. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"

#define PROFILE_MARKS 4096
#define PROFILE_ROWS 256
#define PROFILE_KEY 64

typedef struct {
    char key[PROFILE_KEY];
    long calls;
    double gpu_ms, host_ms;
} profile_row;

static int profiling;
static cudaEvent_t events[PROFILE_MARKS];
static char keys[PROFILE_MARKS][PROFILE_KEY];
static double host_s[PROFILE_MARKS];
static int marks;
static profile_row rows[PROFILE_ROWS];
static int nrows;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The row of key; past PROFILE_ROWS keys, the last row takes the rest. */
static profile_row *row_for(const char *key) {
    for (int i = 0; i < nrows; i++)
        if (!strcmp(rows[i].key, key)) return &rows[i];
    profile_row *r = &rows[nrows < PROFILE_ROWS ? nrows++ : PROFILE_ROWS - 1];
    snprintf(r->key, sizeof r->key, "%s", nrows < PROFILE_ROWS ? key : "(other ops)");
    return r;
}

/* Every interval but the last mark's, which stays as the next first. */
static void tally(void) {
    if (marks < 2) return;
    cudaEventSynchronize(events[marks - 1]);
    for (int i = 0; i + 1 < marks; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, events[i], events[i + 1]);
        profile_row *r = row_for(keys[i]);
        r->calls++;
        r->gpu_ms += ms;
        r->host_ms += (host_s[i + 1] - host_s[i]) * 1e3;
    }
    cudaEvent_t last = events[marks - 1];
    events[marks - 1] = events[0];
    events[0] = last;
    memcpy(keys[0], keys[marks - 1], PROFILE_KEY);
    host_s[0] = host_s[marks - 1];
    marks = 1;
}

static int by_gpu_time(const void *a, const void *b) {
    double x = ((const profile_row *)a)->gpu_ms, y = ((const profile_row *)b)->gpu_ms;
    return (x < y) - (x > y);
}

static void report(void) {
    cuda_profile_mark("(end)");
    tally();
    qsort(rows, (size_t)nrows, sizeof *rows, by_gpu_time);
    double gpu = 0, host = 0;
    for (int i = 0; i < nrows; i++) gpu += rows[i].gpu_ms, host += rows[i].host_ms;
    fprintf(stderr, "cuda profile: %.1f ms on the GPU's stream, %.1f ms on the host, between the first op and exit\n",
            gpu, host);
    fprintf(stderr, "%-52s %9s %11s %9s %11s\n", "op", "calls", "gpu ms", "gpu us/op", "host ms");
    for (int i = 0; i < nrows; i++)
        fprintf(stderr, "%-52s %9ld %11.2f %9.2f %11.2f\n", rows[i].key, rows[i].calls, rows[i].gpu_ms,
                rows[i].calls ? 1e3 * rows[i].gpu_ms / rows[i].calls : 0.0, rows[i].host_ms);
}

void cuda_profile_init(void) {
    const char *e = getenv("TUNEPIPE_CUDA_PROFILE");
    if (!e || !strcmp(e, "0") || profiling) return;
    for (int i = 0; i < PROFILE_MARKS; i++)
        if (cudaEventCreate(&events[i]) != cudaSuccess) return;
    profiling = 1;
    atexit(report); /* after CUDA's own exit handler was registered: runs before it */
}

int cuda_profiling(void) { return profiling; }

void cuda_profile_mark(const char *key) {
    if (!profiling) return;
    if (marks == PROFILE_MARKS) tally();
    cudaEventRecord(events[marks], cuda_stream);
    snprintf(keys[marks], PROFILE_KEY, "%s", key);
    host_s[marks++] = now_s();
}

void cuda_profile_shape(int N, int OC, int C) {
    if (!profiling || !marks) return;
    char *k = keys[marks - 1];
    size_t used = strlen(k);
    snprintf(k + used, PROFILE_KEY - used, " %dx%dx%d", N, OC, C);
}
