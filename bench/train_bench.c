/* train_bench — training speed of neox-train's trainer at the seed recipe
 * (batch 1, grad-accum 4, AdamW, clipping; shuffled, seed 42) on random
 * weights of a given shape.
 *
 *   build/bench/train_bench CONFIG STREAM [STEPS [fp32|bf16]]
 *
 * CONFIG is a config.json (data/pythia-410m.config.json for the issue's
 * figure), STREAM a token stream, for the figure
 *   bin/bpe-encode data/lamini_docs.jsonl | bin/pad-trunc -q1000 -a100 >lamini.tok
 * bf16 times neox-train --dtype bf16. Prints each step and the medians: tokens/s,
 * seconds per optimizer step, the forward / backward / optimizer split, and
 * peak RSS.
 * The first step is reported but left out of the medians (page faults of
 * fresh buffers). On a shared machine wall time also measures the other
 * processes: each step also shows its CPU time, and "cpu-bound tok/s" =
 * tokens / (CPU seconds / threads), what the step would take with the
 * cores to itself if it kept them all busy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kernels/blas.h"
#include "base/cli.h"
#include "nn/config.h"
#include "stream/dataset.h"
#include "kernels/gemm.h"
#include "base/io.h"
#include "nn/model.h"
#include "kernels/parallel.h"
#include "nn/trainer.h"

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    cli_init("train_bench");
    blas_setup(argv);
    if (argc < 3 || argc > 5 || (argc == 5 && strcmp(argv[4], "fp32") && strcmp(argv[4], "bf16"))) {
        fprintf(stderr, "usage: train_bench CONFIG STREAM [STEPS [fp32|bf16]]\n");
        return 2;
    }
    int bf16 = argc == 5 && strcmp(argv[4], "bf16") == 0;
    int steps = argc > 3 ? (int)parse_long("STEPS", argv[3], 2, 10000) : 6;
    neox_config cfg;
    char why[ERR_MAX];
    if (!config_load(argv[1], &cfg, why, sizeof why)) die("%s", why);
    neox_model m;
    model_build(&m, &cfg);
    model_init_random(&m, 42);
    dataset d;
    int fd = open_input(argv[2]);
    if (!dataset_read(&d, fd, argv[2], LOSS_ANSWER, cfg.vocab_size, cfg.max_positions, why, sizeof why))
        die("%s", why);
    close(fd);
    trainer t;
    trainer_init(&t, &m, &ADAMW_DEFAULTS, 1.0);
    if (bf16 && gemm_bf16_available()) trainer_use_bf16(&t);
    example_order order;
    order_init(&order, d.n, 1, 42);
    printf("# %s: %zu parameters, %zu examples, %s products (BLAS core %s, kernel %s), %d threads\n",
           argv[1], m.num_params, d.n, bf16 ? "bf16" : "fp32", blas_core_name(),
           trainer_kernel_name(&t), parallel_threads());
    double *tps = xmalloc((size_t)steps * sizeof *tps), *sec = xmalloc((size_t)steps * sizeof *sec);
    double *fw = xmalloc((size_t)steps * sizeof *fw), *bw = xmalloc((size_t)steps * sizeof *bw);
    double *op = xmalloc((size_t)steps * sizeof *op), *cpu_tps = xmalloc((size_t)steps * sizeof *cpu_tps);
    int threads = parallel_threads();
    for (int s = 0; s < steps; s++) {
        size_t ex[4];
        for (int j = 0; j < 4; j++) ex[j] = order_at(&order, (uint64_t)s * 4 + (uint64_t)j);
        double f0 = t.time_forward, b0 = t.time_backward, o0 = t.time_optimizer, t0 = now_seconds();
        double c0 = cpu_seconds();
        step_result r = trainer_step(&t, &d, ex, 4, 1e-6);
        double dt = now_seconds() - t0, cpu = cpu_seconds() - c0;
        printf("step %d: %zu tokens, %.2f s, %.1f tok/s (forward %.2f, backward %.2f, optimizer %.2f), "
               "CPU %.2f s, cpu-bound %.1f tok/s, loss %.4f\n",
               s + 1, r.tokens, dt, (double)r.tokens / dt, t.time_forward - f0, t.time_backward - b0,
               t.time_optimizer - o0, cpu, (double)r.tokens * threads / cpu, r.loss);
        fflush(stdout);
        if (s == 0) continue;
        tps[s - 1] = (double)r.tokens / dt;
        sec[s - 1] = dt;
        fw[s - 1] = t.time_forward - f0;
        bw[s - 1] = t.time_backward - b0;
        op[s - 1] = t.time_optimizer - o0;
        cpu_tps[s - 1] = (double)r.tokens * threads / cpu;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int n = steps - 1;
    printf("median of %d steps: %.1f tokens/s, %.2f s/step (forward %.2f, backward %.2f, optimizer %.2f), "
           "cpu-bound %.1f tokens/s; peak RSS %.2f GB\n",
           n, median(tps, n), median(sec, n), median(fw, n), median(bw, n), median(op, n),
           median(cpu_tps, n), ru.ru_maxrss / 1048576.0);
    return 0;
}
