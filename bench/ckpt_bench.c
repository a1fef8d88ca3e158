/* ckpt_bench — what neox-train's checkpoints cost: writing model.safetensors
 * (f16, bf16 and f32) and training_state.safetensors, and reading them back, for
 * a model of a given shape, in a scratch directory on the disk to measure.
 *
 *   build/bench/ckpt_bench CONFIG DIR [REPEATS]
 *
 * f16 is the dtype of EleutherAI's Pythia checkpoints: neox-train -m loads
 * it and saves in it by default. Every write is the real one (temporary
 * file, fsync, rename, fsync of the directory). Reads are timed twice: warm
 * (the file in the page cache, as right after a buffered write) and cold
 * (its pages dropped first with posix_fadvise, as after a reboot or a
 * write that bypassed the cache).
 * Prints the median seconds and GB/s of each; removes its files at the end. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nn/checkpoint.h"
#include "base/cli.h"
#include "nn/config.h"
#include "base/io.h"
#include "nn/model.h"
#include "nn/model_io.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *in_dir(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static double file_gb(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size / 1e9 : 0;
}

/* Drops path's pages from the page cache (written back first). */
static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static void report(const char *what, double *t, int n, double gb) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    printf("%s: %.2f s, %.2f GB/s (%.2f GB; min %.2f, max %.2f s)\n", what, med, gb / med, gb, t[0], t[n - 1]);
    fflush(stdout);
}

int main(int argc, char **argv) {
    cli_init("ckpt_bench");
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: ckpt_bench CONFIG DIR [REPEATS]\n");
        return 2;
    }
    const char *dir = argv[2];
    int reps = argc > 3 ? (int)parse_long("REPEATS", argv[3], 1, 100) : 3;
    neox_config cfg;
    char why[ERR_MAX];
    if (!config_load(argv[1], &cfg, why, sizeof why)) die("%s", why);
    neox_model m;
    model_build(&m, &cfg);
    size_t n = m.num_params;
    float *am = xmalloc_aligned(n * sizeof(float)), *av = xmalloc_aligned(n * sizeof(float));
    for (size_t i = 0; i < n; i++) { /* any values: the cost does not depend on them */
        m.params[i] = (float)(i % 1000) * 1e-3f - 0.5f;
        am[i] = m.params[i] * 1e-3f;
        av[i] = m.params[i] * m.params[i] * 1e-6f;
    }
    char *cfg_text = read_file(argv[1], NULL), *config = in_dir(dir, "config.json");
    char *model = in_dir(dir, "model.safetensors"), *state = in_dir(dir, "training_state.safetensors");
    if (!atomic_write_file(config, cfg_text, strlen(cfg_text), why, sizeof why)) die("%s", why);
    printf("%s: %zu parameters, %d repeats, in %s\n", argv[1], n, reps, dir);
    double *t = xmalloc((size_t)reps * sizeof *t);

    char err[256], what[64];
    const st_dtype dtypes[3] = {ST_F16, ST_BF16, ST_F32};
    const char *names[3] = {"f16", "bf16", "f32"};
    for (int k = 0; k < 3; k++) {
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            if (!model_save(model, &m, dtypes[k], why, sizeof why)) die("%s", why);
            t[r] = now() - t0;
        }
        snprintf(what, sizeof what, "save model %s", names[k]);
        report(what, t, reps, file_gb(model));
        for (int cold = 0; cold < 2; cold++) {
            for (int r = 0; r < reps; r++) {
                neox_model back;
                if (cold) drop_cache(model);
                else model_load(&back, dir, err, sizeof err), model_free(&back); /* into the cache */
                double t0 = now();
                if (!model_load(&back, dir, err, sizeof err)) die("%s", err);
                t[r] = now() - t0;
                model_free(&back);
            }
            snprintf(what, sizeof what, "load model %s, %s", names[k], cold ? "cold" : "warm");
            report(what, t, reps, file_gb(model));
        }
    }
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (!state_save(state, &m, am, av, "{}", why, sizeof why)) die("%s", why);
        t[r] = now() - t0;
    }
    report("save state", t, reps, file_gb(state));
    for (int cold = 0; cold < 2; cold++) {
        for (int r = 0; r < reps; r++) {
            if (cold) drop_cache(state);
            else free(state_load(state, &m, am, av, why, sizeof why));
            double t0 = now();
            char *json = state_load(state, &m, am, av, why, sizeof why);
            if (!json) die("%s", why);
            free(json);
            t[r] = now() - t0;
        }
        report(cold ? "load state, cold" : "load state, warm", t, reps,
               file_gb(state));
    }
    unlink(model);
    unlink(state);
    unlink(config);
    free(model);
    free(state);
    free(config);
    free(t);
    free(cfg_text);
    free(am);
    free(av);
    model_free(&m);
    return 0;
}
