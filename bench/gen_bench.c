/* gen_bench — inference speed of the GPT-NeoX forward with the KV cache:
 * prefill and decode tokens/s at batch 1 and at a larger batch, and the
 * peak RSS while generating (that of neox-gen with the same model and
 * batch; making random weights is not counted). Weights: random, shaped
 * by a config (default pythia-410m), or a checkpoint directory (-m).
 * Reports the median of several runs. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kernels/blas.h"
#include "nn/checkpoint.h"
#include "base/cli.h"
#include "base/io.h"
#include "nn/config.h"
#include "kernels/gemm.h"
#include "nn/kvcache.h"
#include "nn/model.h"
#include "nn/model_io.h"
#include "kernels/parallel.h"

static const char usage[] =
    "Usage: gen_bench [OPTION]...\n"
    "  -c, --config FILE   random weights shaped by FILE (default data/pythia-410m.config.json)\n"
    "  -m, --model DIR     load a checkpoint instead, as neox-gen does\n"
    "  -p, --prompt N      prompt tokens (default 128)\n"
    "  -d, --decode N      decode steps per run (default 32)\n"
    "  -b, --batch B       the larger batch (default 8)\n"
    "  -r, --runs N        runs; medians are reported (default 3)\n"
    "      --prefill-rows N  tokens per prefill step (default as neox-gen)\n"
    "  -s, --save DIR      write the random weights as a checkpoint (config.json,\n"
    "                      model.safetensors) to DIR and exit\n"
    "      --dtype D       products in fp32 (default, exact) or bf16 (bf16 copies\n"
    "                      of the linear weights, fp32 accumulation)\n"
    "      --save-dtype D  dtype of --save: f32 (default), f16 or bf16\n"
    "  -h, --help\n";

/* Writes m with the config file it was built from as a Hugging Face
 * checkpoint directory. */
static void save_checkpoint(const neox_model *m, const char *config_path, const char *dir, st_dtype dtype) {
    st_out_tensor *t = xcalloc((size_t)m->num_tensors, sizeof *t);
    for (int i = 0; i < m->num_tensors; i++) {
        t[i].name = m->tensors[i].name;
        t[i].ndim = m->tensors[i].ndim;
        t[i].shape[0] = m->tensors[i].shape[0];
        t[i].shape[1] = m->tensors[i].shape[1];
        t[i].data = m->params + m->tensors[i].offset;
        t[i].numel = m->tensors[i].numel;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    char why[ERR_MAX];
    if (!st_write(path, t, m->num_tensors, dtype, NULL, NULL, 0, why, sizeof why)) die("%s", why);
    char *json = read_file(config_path, NULL), *with_dtype = config_with_dtype(json, dtype, why, sizeof why);
    if (!with_dtype) die("%s: %s", config_path, why);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!atomic_write_file(path, with_dtype, strlen(with_dtype), why, sizeof why)) die("%s", why);
    free(json);
    free(with_dtype);
    free(t);
}

/* Random weights are made in fp32. With bf16 products their linear
 * layers' fp32 pages are let go, as neox-gen, which loads them straight
 * into bf16, never has them; the decoder does not read them. */
static void drop_fp32_linear(neox_model *m) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < m->num_tensors; i++) {
        const neox_tensor *t = &m->tensors[i];
        if (t->ndim != 2 || m->params + t->offset == m->p.wte) continue;
        uintptr_t lo = (uintptr_t)(m->params + t->offset), hi = (uintptr_t)(m->params + t->offset + t->numel);
        lo = (lo + page - 1) & ~(page - 1);
        hi &= ~(page - 1);
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
}

/* The peak RSS from here on (Linux: resets VmHWM), and in MB. */
static void reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f) && sscanf(line, "VmHWM: %lf kB", &kb) != 1) continue;
    if (f) fclose(f);
    if (kb < 0) { /* the process's peak, setup included */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = (double)ru.ru_maxrss;
    }
    return kb / 1024;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

/* Prefills `batch` prompts of `prompt` tokens (one after another, as
 * neox-gen does), then decodes `decode` steps of all of them together.
 * Returns prefill and decode tokens/s. */
static void run_once(const neox_model *m, int batch, int prompt, int decode, int rows,
                     double *prefill_tps, double *decode_tps) {
    int V = m->cfg.vocab_size;
    neox_decoder d;
    decoder_init(&d, m, batch, prompt + decode + 1, batch > rows ? batch : rows);
    uint32_t *ids = xmalloc((size_t)prompt * sizeof *ids);
    float *logits = xmalloc((size_t)batch * V * sizeof(float));
    int *slots = xmalloc((size_t)batch * sizeof(int)), *counts = xmalloc((size_t)batch * sizeof(int));
    uint32_t *toks = xmalloc((size_t)batch * sizeof(uint32_t));
    double t0 = now_seconds();
    for (int b = 0; b < batch; b++) {
        for (int t = 0; t < prompt; t++) ids[t] = (uint32_t)((t * 7919 + b * 104729) % V);
        decoder_prefill(&d, b, ids, prompt, logits);
    }
    double t1 = now_seconds();
    for (int b = 0; b < batch; b++) {
        slots[b] = b;
        counts[b] = 1;
        toks[b] = (uint32_t)(b * 31 % V);
    }
    for (int s = 0; s < decode; s++) {
        decoder_step(&d, batch, slots, counts, toks, logits, 0);
        for (int b = 0; b < batch; b++) { /* greedy, so the work is the real one */
            int best = 0;
            for (int i = 1; i < V; i++)
                if (logits[(size_t)b * V + i] > logits[(size_t)b * V + best]) best = i;
            toks[b] = (uint32_t)best;
        }
    }
    double t2 = now_seconds();
    *prefill_tps = (double)batch * prompt / (t1 - t0);
    *decode_tps = (double)batch * decode / (t2 - t1);
    free(ids);
    free(logits);
    free(slots);
    free(counts);
    free(toks);
    decoder_free(&d);
}

int main(int argc, char **argv) {
    cli_init("gen_bench");
    blas_setup(argv);
    const char *config = NULL, *dir = NULL, *save = NULL;
    st_dtype save_dtype = ST_F32;
    int prompt = 128, decode = 32, batch = 8, runs = 3, rows = DECODER_PREFILL_ROWS, use_bf16 = 0;
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"model", required_argument, 0, 'm'},
        {"prompt", required_argument, 0, 'p'}, {"decode", required_argument, 0, 'd'},
        {"batch", required_argument, 0, 'b'},  {"runs", required_argument, 0, 'r'},
        {"prefill-rows", required_argument, 0, 'R'}, {"save", required_argument, 0, 's'},
        {"save-dtype", required_argument, 0, 'S'}, {"dtype", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:m:p:d:b:r:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'm': dir = optarg; break;
        case 'p': prompt = (int)parse_long("--prompt", optarg, 1, 1 << 16); break;
        case 'd': decode = (int)parse_long("--decode", optarg, 1, 1 << 16); break;
        case 'b': batch = (int)parse_long("--batch", optarg, 1, 256); break;
        case 'r': runs = (int)parse_long("--runs", optarg, 1, 100); break;
        case 'R': rows = (int)parse_long("--prefill-rows", optarg, 1, 1 << 14); break;
        case 's': save = optarg; break;
        case 'S':
            if (!save_dtype_parse(optarg, &save_dtype)) usage_error("--save-dtype: f32, f16 or bf16");
            break;
        case 'D':
            if (strcmp(optarg, "fp32") && strcmp(optarg, "bf16")) usage_error("--dtype: fp32 or bf16");
            use_bf16 = optarg[0] == 'b';
            break;
        case 'h': print_help_and_exit(usage);
        default: usage_error("unknown option");
        }
    }
    if (use_bf16 && !gemm_bf16_available()) use_bf16 = 0;
    neox_model m;
    double t0 = now_seconds();
    if (dir) { /* as neox-gen loads it */
        char err[512];
        if (!(use_bf16 ? model_load_bf16(&m, dir, err, sizeof err) : model_load(&m, dir, err, sizeof err)))
            die("%s", err);
    } else {
        char *path = config ? xstrdup(config) : data_file("pythia-410m.config.json");
        neox_config cfg;
        char why[ERR_MAX];
        if (!config_load(path, &cfg, why, sizeof why)) die("%s", why);
        model_build(&m, &cfg);
        model_init_random(&m, 1);
        if (save) {
            save_checkpoint(&m, path, save, save_dtype);
            free(path);
            model_free(&m);
            return 0;
        }
        free(path);
    }
    if (prompt + decode >= m.cfg.max_positions) die("prompt + decode exceed max_position_embeddings");
    if (use_bf16 && !dir) {
        model_set_dtype(&m, DTYPE_BF16, GEMM_FOR_FORWARD);
        drop_fp32_linear(&m);
    }
    reset_peak_rss();
    /* What a decoding step at batch 1 must read: every linear weight once
     * (bench.sh holds it against mem_bench's bandwidth). */
    double weights = (double)m.lm_head.OC * m.lm_head.C;
    for (int l = 0; l < m.cfg.num_layers; l++) {
        const neox_layer_linear *k = &m.lin[l];
        weights += (double)k->qkv.OC * k->qkv.C + (double)k->attn_proj.OC * k->attn_proj.C +
                   (double)k->fc.OC * k->fc.C + (double)k->fc_proj.OC * k->fc_proj.C;
    }
    const double stream_bytes = weights * (use_bf16 ? 2 : 4);
    printf("model: %s, %.2f GB fp32 parameters, ready in %.1f s; BLAS core %s\n",
           dir ? dir : "random", m.num_params * 4e-9, now_seconds() - t0, blas_core_name());
    printf("dtype %s (products: %s), %d threads\n", use_bf16 ? "bf16" : "fp32",
           use_bf16 ? gemm_path_name(gemm_current_path()) : "fp32", parallel_threads());
    int batches[2] = {1, batch};
    for (int k = 0; k < (batch > 1 ? 2 : 1); k++) {
        double pre[100], dec[100];
        for (int r = 0; r < runs; r++) run_once(&m, batches[k], prompt, decode, rows, &pre[r], &dec[r]);
        printf("batch %d: prefill %.1f tok/s, decode %.2f tok/s (medians of %d; prompt %d, %d decode steps)\n",
               batches[k], median(pre, runs), median(dec, runs), runs, prompt, decode);
    }
    printf("linear weights read per decoded token: %.3f GB\n", stream_bytes * 1e-9);
    printf("peak RSS: %.0f MB\n", peak_rss_mb());
    model_free(&m);
    return 0;
}
