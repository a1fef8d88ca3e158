/* gemm_bench — GFLOPS of the linear layer's three products (forward,
 * backward to the input, backward to the weight) on every gemm path this
 * CPU runs, at pythia-410m's layer shapes and lamini-like token counts,
 * with OpenBLAS sgemm (the fp32 path) in the same run as the baseline.
 * Decode shapes (few rows) cycle through enough copies of the weight to
 * miss every cache, as a model's layers do, and also report the weight
 * bytes streamed per second. Each figure is the median of several runs. */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blas.h"
#include "base/cli.h"
#include "kernels/gemm.h"

static const char usage[] =
    "Usage: gemm_bench [OPTION]...\n"
    "  -T, --tokens LIST   token counts for the training shapes (default 64,128,256,512)\n"
    "  -d, --decode LIST   row counts for the decode shapes (default 1,8)\n"
    "  -r, --runs N        timed runs per figure; the median is reported (default 5)\n"
    "  -s, --shape NAME    only this layer (qkv, proj, fc, fcproj, head); repeatable\n"
    "  -h, --help\n"
    "Set TUNEPIPE_GEMM_THREADS to change the thread count (default: all CPUs).\n";

typedef struct {
    const char *name;
    int C, OC;
} layer;

/* pythia-410m: hidden 1024, 4x MLP, vocabulary 50304. */
static const layer layers[] = {
    {"qkv", 1024, 3072}, {"proj", 1024, 1024}, {"fc", 1024, 4096}, {"fcproj", 4096, 1024},
    {"head", 1024, 50304},
};
#define NLAYERS (int)(sizeof layers / sizeof layers[0])
#define MAX_LIST 16
#define NPATHS 3
/* Decode products sweep over at least this many bytes of weights. */
#define DECODE_SWEEP_BYTES (512u << 20)

enum { OP_FORWARD, OP_BACKWARD_INPUT, OP_BACKWARD_WEIGHT, NOPS };
static const char *const op_names[] = {"forward", "bwd-input", "bwd-weight"};

static int runs = 5;

static float *random_array(size_t n) {
    float *x = xmalloc(n * sizeof *x);
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) * 0x1.0p-24f - 0.5f;
    }
    return x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const gemm_weight *gw;
    float *inp, *out, *dout, *dinp, *dw;
} buffers;

static void run_op(int op, const buffers *b, int T) {
    const gemm_weight *gw = b->gw;
    switch (op) {
    case OP_FORWARD: gemm_forward(b->out, b->inp, gw, NULL, T); break;
    case OP_BACKWARD_INPUT: gemm_backward_input(b->dinp, b->dout, gw, T); break;
    default: gemm_backward_weight(b->dw, NULL, b->dout, b->inp, T, gw->OC, gw->C, 1, NULL); break;
    }
}

/* Median seconds of one forward product at T rows, each run a sweep over
 * the n weights gws (reported per product). */
static double time_decode(const gemm_weight *gws, int n, const buffers *b, int T) {
    double t[64];
    for (int i = 0; i < n; i++) gemm_forward(b->out, b->inp, &gws[i], NULL, T);
    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        for (int i = 0; i < n; i++) gemm_forward(b->out, b->inp, &gws[i], NULL, T);
        t[r] = (now_seconds() - t0) / n;
    }
    qsort(t, runs, sizeof t[0], cmp_double);
    return t[runs / 2];
}

/* Median seconds of one op after a warm-up run. */
static double time_op(int op, const buffers *b, int T) {
    double t[64];
    run_op(op, b, T);
    for (int i = 0; i < runs; i++) {
        double t0 = now_seconds();
        run_op(op, b, T);
        t[i] = now_seconds() - t0;
    }
    qsort(t, runs, sizeof t[0], cmp_double);
    return t[runs / 2];
}

static int parse_list(const char *opt, const char *arg, int *list) {
    int n = 0;
    char *copy = xstrdup(arg), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_LIST) usage_error("%s: at most %d values", opt, MAX_LIST);
        list[n++] = (int)parse_long(opt, tok, 1, 1 << 16);
    }
    free(copy);
    if (!n) usage_error("%s: empty list", opt);
    return n;
}

int main(int argc, char **argv) {
    cli_init("gemm_bench");
    blas_setup(argv);
    int tokens[MAX_LIST] = {64, 128, 256, 512}, ntokens = 4;
    int decode[MAX_LIST] = {1, 8}, ndecode = 2;
    int only[NLAYERS] = {0}, any_only = 0;
    static const struct option options[] = {
        {"tokens", required_argument, NULL, 'T'}, {"decode", required_argument, NULL, 'd'},
        {"runs", required_argument, NULL, 'r'},   {"shape", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "T:d:r:s:h", options, NULL)) != -1) {
        switch (c) {
        case 'T': ntokens = parse_list("--tokens", optarg, tokens); break;
        case 'd': ndecode = parse_list("--decode", optarg, decode); break;
        case 'r': runs = (int)parse_long("--runs", optarg, 1, 64); break;
        case 's': {
            int i = 0;
            while (i < NLAYERS && strcmp(optarg, layers[i].name)) i++;
            if (i == NLAYERS) usage_error("--shape: unknown layer '%s'", optarg);
            only[i] = any_only = 1;
            break;
        }
        case 'h': print_help_and_exit(usage);
        case 'V': print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    const char *threads_env = getenv("TUNEPIPE_GEMM_THREADS");
    if (threads_env) gemm_set_threads((int)parse_long("TUNEPIPE_GEMM_THREADS", threads_env, 1, 64));

    int paths[NPATHS], npaths = 0;
    for (int p = GEMM_FP32; p <= GEMM_AMX; p++)
        if (gemm_path_supported((gemm_path)p)) paths[npaths++] = p;
    printf("gemm_bench: %d threads; OpenBLAS core %s, %d threads; median of %d runs\n", gemm_threads(),
           blas_core_name(), openblas_get_num_threads(), runs);
    printf("GFLOPS (2*T*C*OC per product); fp32 = OpenBLAS sgemm; x = best bf16 / fp32\n\n");
    printf("%-7s %5s %5s %5s  %-10s", "layer", "C", "OC", "T", "product");
    for (int p = 0; p < npaths; p++) printf(" %10s", gemm_path_name((gemm_path)paths[p]));
    printf(" %6s\n", "x");

    int maxT = 1;
    for (int i = 0; i < ntokens; i++) maxT = tokens[i] > maxT ? tokens[i] : maxT;
    for (int i = 0; i < ndecode; i++) maxT = decode[i] > maxT ? decode[i] : maxT;

    for (int l = 0; l < NLAYERS; l++) {
        if (any_only && !only[l]) continue;
        const int C = layers[l].C, OC = layers[l].OC;
        float *w = random_array((size_t)OC * C);
        buffers b = {
            .inp = random_array((size_t)maxT * C), .out = xmalloc((size_t)maxT * OC * sizeof(float)),
            .dout = random_array((size_t)maxT * OC), .dinp = random_array((size_t)maxT * C),
            .dw = random_array((size_t)OC * C),
        };
        /* Results per path, filled one path at a time so that OpenBLAS's
         * and gemm's worker threads do not compete for the cores. */
        double gflops[NPATHS][2 * MAX_LIST][NOPS], pack_ms[NPATHS] = {0};
        for (int p = 0; p < npaths; p++) {
            gemm_use_path((gemm_path)paths[p]);
            gemm_weight gw;
            gemm_weight_init(&gw, w, OC, C, GEMM_FOR_FORWARD | GEMM_FOR_BACKWARD);
            gemm_weight_pack(&gw);
            double t0 = now_seconds();
            gemm_weight_pack(&gw);
            pack_ms[p] = (now_seconds() - t0) * 1e3;
            b.gw = &gw;
            for (int i = 0; i < ntokens; i++)
                for (int op = 0; op < NOPS; op++)
                    gflops[p][i][op] = 2.0 * tokens[i] * C * OC / time_op(op, &b, tokens[i]) * 1e-9;
            gemm_weight_free(&gw);

            /* decode: forward only, over copies that together miss the caches */
            const int fp32 = paths[p] == GEMM_FP32;
            const size_t bytes = (size_t)OC * C * (fp32 ? 4 : 2);
            const int copies = (int)((DECODE_SWEEP_BYTES + bytes - 1) / bytes);
            gemm_weight *gws = xcalloc(copies, sizeof *gws);
            for (int k = 0; k < copies; k++) {
                float *wk = w;
                if (fp32) {
                    wk = xmalloc((size_t)OC * C * sizeof *wk);
                    memcpy(wk, w, (size_t)OC * C * sizeof *wk);
                }
                gemm_weight_init(&gws[k], wk, OC, C, GEMM_FOR_FORWARD);
                gemm_weight_pack(&gws[k]);
            }
            for (int i = 0; i < ndecode; i++)
                gflops[p][ntokens + i][OP_FORWARD] =
                    2.0 * decode[i] * C * OC / time_decode(gws, copies, &b, decode[i]) * 1e-9;
            for (int k = 0; k < copies; k++) {
                if (fp32) free((float *)gws[k].w);
                gemm_weight_free(&gws[k]);
            }
            free(gws);
        }
        for (int i = 0; i < ntokens + ndecode; i++) {
            int T = i < ntokens ? tokens[i] : decode[i - ntokens];
            for (int op = 0; op < NOPS; op++) {
                if (i >= ntokens && op != OP_FORWARD) continue;
                printf("%-7s %5d %5d %5d  %-10s", layers[l].name, C, OC, T,
                       i < ntokens ? op_names[op] : "decode");
                double best = 0;
                for (int p = 0; p < npaths; p++) {
                    printf(" %10.1f", gflops[p][i][op]);
                    if (paths[p] != GEMM_FP32 && gflops[p][i][op] > best) best = gflops[p][i][op];
                }
                printf(" %6.2f\n", best / gflops[0][i][op]);
            }
        }
        /* Decode reads every weight once per product: bytes per second. */
        printf("%-7s decode weight stream GB/s:", layers[l].name);
        for (int i = ntokens; i < ntokens + ndecode; i++)
            for (int p = 0; p < npaths; p++)
                printf(" T=%d %s %.1f", decode[i - ntokens], gemm_path_name((gemm_path)paths[p]),
                       gflops[p][i][OP_FORWARD] / (2.0 * decode[i - ntokens]) *
                           (paths[p] == GEMM_FP32 ? 4 : 2));
        printf("\n%-7s packing both bf16 copies: %.1f ms\n\n", layers[l].name,
               pack_ms[npaths - 1]);
        free(w), free(b.inp), free(b.out), free(b.dout), free(b.dinp), free(b.dw);
    }
    return 0;
}
