/* cuda_ops.t — every op of common/cuda against its CPU twin, on random
 * inputs of pythia-410m's shapes (C 1024, 16 heads of 64, rotary 16; a
 * pack of 3 sequences of 37, 100 and 250 tokens; vocabulary 50304).
 * Each line gives the largest absolute error and the largest error
 * relative to |cpu| + rms(cpu), which must stay under the tolerance
 * named: 1e-5 for fp32 element-wise ops and products, 2e-5 for the
 * attention (two products and a softmax in a row), 2e-2 for bf16
 * products against the fp32 CPU ones (their rms error is about 2e-3 of
 * the rms; the largest of millions of elements nears 1e-2); AdamW to 1 ulp (it should match
 * bit for bit). Skips everything without a GPU. Timings are notes. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../unit/tap.h"
#include "base/rng.h"
#include "cuda/cuda_ops.h"
#include "kernels/gemm.h"
#include "kernels/parallel.h"
#include "nn/backward.h"
#include "nn/linear.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "nn/sampler.h"

enum { C = 1024, NH = 16, HD = 64, ROT = 16, F = 4096, V = 50304, MAXPOS = 2048 };
static const int seq_len[] = {37, 100, 250};
#define NSEQ 3

static rng_state rng;

static float *randv(size_t n, float a) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)((2 * rng_uniform(&rng) - 1) * a);
    return x;
}
static float *copyv(const float *x, size_t n) {
    float *y = malloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* A failed op: one not-ok line with CUDA's reason. */
static int gpu_ok(int status, const char *what) {
    if (status) ok(0, "%s: %s", what, cuda_ops_last_error());
    return status == 0;
}
#define GPU(call) gpu_ok((call), #call)

static void *up(const void *h, size_t bytes) {
    void *d = cuda_alloc(bytes);
    if (!d) {
        ok(0, "cuda_alloc(%zu): %s", bytes, cuda_ops_last_error());
        exit(done_testing());
    }
    if (h) GPU(cuda_to_device(d, h, bytes));
    return d;
}
static float *upf(const float *h, size_t n) { return up(h, n * sizeof(float)); }
static float *down(const float *d, size_t n) {
    float *h = malloc(n * sizeof *h);
    if (!GPU(cuda_to_host(h, d, n * sizeof *h))) memset(h, 0xff, n * sizeof *h); /* NaN: the compare fails */
    return h;
}

/* gpu against cpu: |g - c| <= tol (|c| + rms(c)) everywhere, no NaN. */
static void compare(const char *what, const float *g, const float *c, size_t n, double tol) {
    double ss = 0, se = 0, max_abs = 0, max_rel = 0;
    size_t worst = 0, bad = 0;
    for (size_t i = 0; i < n; i++) ss += (double)c[i] * c[i];
    double rms = sqrt(ss / (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)g[i] - c[i]), r = e / (fabs(c[i]) + rms + 1e-30);
        if (isnan(g[i]) || isnan(c[i])) r = e = INFINITY;
        se += e * e;
        if (e > max_abs) max_abs = e;
        if (r > max_rel) max_rel = r, worst = i;
        if (r > tol) bad++;
    }
    ok(bad == 0, "%s: max abs %.3g, max rel %.3g (tolerance %.0e), rms error %.3g of rms %.3g", what, max_abs,
       max_rel, tol, sqrt(se / (n ? n : 1)) / (rms + 1e-30), rms);
    if (bad) diag("%s: %zu of %zu over; worst at %zu: gpu %.9g cpu %.9g", what, bad, n, worst, g[worst], c[worst]);
}
static void compare_dev(const char *what, const float *d, const float *c, size_t n, double tol) {
    float *g = down(d, n);
    compare(what, g, c, n, tol);
    free(g);
}
static void compare_scalar(const char *what, double g, double c, double tol) {
    double r = fabs(g - c) / (fabs(c) + 1e-300);
    ok(r <= tol, "%s: gpu %.17g cpu %.17g, rel %.3g (tolerance %.0e)", what, g, c, r, tol);
}
static double down_double(const double *d) {
    double x = NAN;
    GPU(cuda_to_host(&x, d, sizeof x));
    return x;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- memory, bf16 ---- */

static void test_memory(void) {
    float *h = randv(1000, 1), *back = malloc(1000 * sizeof *back);
    float *a = upf(h, 1000), *b = upf(NULL, 1000);
    GPU(cuda_copy(b, a, 1000 * sizeof(float)));
    GPU(cuda_zero(a, 500 * sizeof(float)));
    GPU(cuda_sync());
    GPU(cuda_to_host(back, b, 1000 * sizeof(float)));
    ok(memcmp(back, h, 1000 * sizeof(float)) == 0, "cuda_copy and cuda_to_host give back what cuda_to_device gave");
    GPU(cuda_to_host(back, a, 1000 * sizeof(float)));
    int zeros = 1;
    for (int i = 0; i < 500; i++) zeros &= back[i] == 0.0f;
    ok(zeros && memcmp(back + 500, h + 500, 500 * sizeof(float)) == 0, "cuda_zero zeroes what it is asked to only");
    void *huge = cuda_alloc((size_t)1 << 50);
    ok(huge == NULL && strstr(cuda_ops_last_error(), "cudaMalloc"), "cuda_alloc(1 PiB) fails with a message: %s",
       cuda_ops_last_error());
    cuda_free(a);
    cuda_free(b);
    free(h);
    free(back);
}

static void test_bf16(void) {
    size_t n = 1 << 20;
    float *h = randv(n, 100);
    /* ties, specials */
    uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x7f800000u, 0xff800000u, 0x7fc00001u, 0x7f800001u, 0x00000001u, 0x80000000u, 0x7f7fffffu};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) memcpy(h + i, special + i, 4);
    float *d = upf(h, n);
    uint16_t *db = up(NULL, n * 2), *g = malloc(n * 2);
    GPU(cuda_to_bf16(db, d, n));
    GPU(cuda_to_host(g, db, n * 2));
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += g[i] != gemm_fp32_to_bf16(h[i]);
    ok(diff == 0, "cuda_to_bf16 rounds as gemm_fp32_to_bf16 (nearest even, NaN quiet): %zu of %zu differ", diff, n);
    cuda_free(d);
    cuda_free(db);
    free(h);
    free(g);
}

/* ---- linear ---- */

static void test_linear(int N, int OC, int Cin, int bias, int accumulate) {
    char what[160];
    float *w = randv((size_t)OC * Cin, 0.05f), *b = bias ? randv(OC, 0.5f) : NULL, *x = randv((size_t)N * Cin, 1);
    float *dy = randv((size_t)N * OC, 0.1f);
    float *out = malloc((size_t)N * OC * sizeof *out), *dx = malloc((size_t)N * Cin * sizeof *dx);
    float *dw = randv((size_t)OC * Cin, 0.1f), *dbias = randv(OC, 0.1f);
    float *dw0 = copyv(dw, (size_t)OC * Cin), *db0 = copyv(dbias, OC);
    linear l;
    linear_init(&l, w, b, OC, Cin);
    linear_forward(&l, out, x, N);
    double sumsq = 0;
    linear_backward(&l, dx, dw, bias ? dbias : NULL, dy, x, N, accumulate, &sumsq);

    float *gw = upf(w, (size_t)OC * Cin), *gb = bias ? upf(b, OC) : NULL, *gx = upf(x, (size_t)N * Cin);
    float *gdy = upf(dy, (size_t)N * OC), *gout = upf(NULL, (size_t)N * OC), *gdx = upf(NULL, (size_t)N * Cin);
    float *gdw = upf(dw0, (size_t)OC * Cin), *gdb = upf(db0, OC);
    void *gw16 = up(NULL, (size_t)OC * Cin * 2);
    double *gsum = up(NULL, sizeof(double));
    GPU(cuda_to_bf16(gw16, gw, (size_t)OC * Cin));

    snprintf(what, sizeof what, "linear forward fp32 N=%d OC=%d C=%d%s", N, OC, Cin, bias ? " +bias" : "");
    if (GPU(cuda_linear_forward(gout, gx, gw, NULL, gb, N, OC, Cin))) compare_dev(what, gout, out, (size_t)N * OC, 1e-5);
    snprintf(what, sizeof what, "linear forward bf16 N=%d OC=%d C=%d%s (against fp32)", N, OC, Cin, bias ? " +bias" : "");
    if (GPU(cuda_linear_forward(gout, gx, gw, gw16, gb, N, OC, Cin))) compare_dev(what, gout, out, (size_t)N * OC, 2e-2);

    GPU(cuda_zero(gsum, sizeof(double)));
    snprintf(what, sizeof what, "linear backward fp32 N=%d OC=%d C=%d accumulate=%d", N, OC, Cin, accumulate);
    if (GPU(cuda_linear_backward(gdx, gdw, bias ? gdb : NULL, gdy, gx, gw, NULL, N, OC, Cin, accumulate, gsum))) {
        char w2[200];
        snprintf(w2, sizeof w2, "%s: dinp", what);
        compare_dev(w2, gdx, dx, (size_t)N * Cin, 1e-5);
        snprintf(w2, sizeof w2, "%s: dw", what);
        compare_dev(w2, gdw, dw, (size_t)OC * Cin, 1e-5);
        if (bias) {
            snprintf(w2, sizeof w2, "%s: db", what);
            compare_dev(w2, gdb, dbias, OC, 1e-5);
        }
        snprintf(w2, sizeof w2, "%s: sum of dw squared", what);
        compare_scalar(w2, down_double(gsum), sumsq, 1e-5);
    }
    GPU(cuda_to_device(gdw, dw0, (size_t)OC * Cin * sizeof(float)));
    GPU(cuda_to_device(gdb, db0, (size_t)OC * sizeof(float)));
    snprintf(what, sizeof what, "linear backward bf16 N=%d OC=%d C=%d accumulate=%d (against fp32)", N, OC, Cin, accumulate);
    if (GPU(cuda_linear_backward(gdx, gdw, bias ? gdb : NULL, gdy, gx, gw, gw16, N, OC, Cin, accumulate, NULL))) {
        char w2[220];
        snprintf(w2, sizeof w2, "%s: dinp", what);
        compare_dev(w2, gdx, dx, (size_t)N * Cin, 2e-2);
        snprintf(w2, sizeof w2, "%s: dw", what);
        compare_dev(w2, gdw, dw, (size_t)OC * Cin, 2e-2);
        if (bias) {
            snprintf(w2, sizeof w2, "%s: db (fp32 sums)", what);
            compare_dev(w2, gdb, dbias, OC, 1e-5);
        }
    }
    void *g[] = {gw, gb, gx, gdy, gout, gdx, gdw, gdb, gw16, gsum};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) cuda_free(g[i]);
    float *h[] = {w, b, x, dy, out, dx, dw, dbias, dw0, db0};
    for (size_t i = 0; i < sizeof h / sizeof *h; i++) free(h[i]);
}

/* Views one float off 16-byte alignment take the other paths: a bias so
 * placed the GemmEx one (bias added first), few rows so placed cuBLASLt
 * at 4-byte alignment. */
/* Decoding's fused ops against the separate ones they replace, on the
 * GPU: the same arithmetic, so the same bits. */
static int same_dev(const float *a, const float *b, size_t n) {
    float *x = down(a, n), *y = down(b, n);
    int same = memcmp(x, y, n * sizeof *x) == 0;
    free(x);
    free(y);
    return same;
}

static void test_fused_decoding(int N) {
    float *w = randv((size_t)F * C, 0.05f), *b = randv(F, 0.5f), *x = randv((size_t)N * F, 1);
    float *res = randv((size_t)N * F, 1), *lnw = randv(C, 1), *lnb = randv(C, 0.5f);
    float *gw = upf(w, (size_t)F * C), *gb = upf(b, F), *gx = upf(x, (size_t)N * F), *gres = upf(res, (size_t)N * F);
    float *glnw = upf(lnw, C), *glnb = upf(lnb, C);
    float *ga = upf(NULL, (size_t)N * F), *gsep = upf(NULL, (size_t)N * F), *gc = upf(NULL, (size_t)N * F);
    void *gw16 = up(NULL, (size_t)F * C * 2);
    GPU(cuda_to_bf16(gw16, gw, (size_t)F * C));
    for (int bf = 0; bf < 2; bf++) {
        const void *w16 = bf ? gw16 : NULL;
        const char *dt = bf ? "bf16" : "fp32";
        /* the MLP's first product [F, C], then GELU */
        if (GPU(cuda_linear_forward_fused(ga, gx, gw, w16, gb, NULL, N, F, C, CUDA_EPILOGUE_GELU)) &&
            GPU(cuda_linear_forward(gsep, gx, gw, w16, gb, N, F, C)) && GPU(cuda_gelu_forward(gsep, gsep, (size_t)N * F)))
            ok(same_dev(ga, gsep, (size_t)N * F), "%s N=%d: gelu(x·wᵀ + b) in the product equals linear then gelu", dt, N);
        /* the MLP's output product [C, F] added to the residual, in place */
        GPU(cuda_copy(ga, gres, (size_t)N * C * sizeof(float)));
        if (GPU(cuda_linear_forward_fused(ga, gx, gw, w16, gb, ga, N, C, F, CUDA_EPILOGUE_ADD)) &&
            GPU(cuda_linear_forward(gsep, gx, gw, w16, gb, N, C, F)) &&
            GPU(cuda_residual_forward(gc, gres, gsep, (size_t)N * C)))
            ok(same_dev(ga, gc, (size_t)N * C), "%s N=%d: res + (x·wᵀ + b) in place equals linear then residual", dt, N);
    }
    /* both layer norms of a parallel-residual layer from one statistics pass */
    if (GPU(cuda_layernorm_forward2(ga, gc, gres, glnw, glnb, gb, gw, N, C, 1e-5f)) &&
        GPU(cuda_layernorm_forward(gsep, NULL, NULL, gres, glnw, glnb, N, C, 1e-5f)))
        ok(same_dev(ga, gsep, (size_t)N * C), "N=%d: the first of two layer norms equals layernorm", N);
    if (GPU(cuda_layernorm_forward(gsep, NULL, NULL, gres, gb, gw, N, C, 1e-5f)))
        ok(same_dev(gc, gsep, (size_t)N * C), "N=%d: the second of two layer norms equals layernorm", N);
    void *gpu_bufs[] = {gw, gb, gx, gres, glnw, glnb, ga, gsep, gc, gw16};
    for (size_t i = 0; i < sizeof gpu_bufs / sizeof *gpu_bufs; i++) cuda_free(gpu_bufs[i]);
    free(w), free(b), free(x), free(res), free(lnw), free(lnb);
}

static void test_linear_views(int N, int misalign_bias, int misalign_inp) {
    const int OC = 1024, Cin = 1024;
    char what[160];
    float *w = randv((size_t)OC * Cin, 0.05f), *b = randv(OC, 0.5f), *x = randv((size_t)N * Cin, 1);
    float *out = malloc((size_t)N * OC * sizeof *out);
    linear l;
    linear_init(&l, w, b, OC, Cin);
    linear_forward(&l, out, x, N);
    float *gw = upf(w, (size_t)OC * Cin), *gb = upf(NULL, OC + 1), *gx = upf(NULL, (size_t)N * Cin + 1);
    float *gout = upf(NULL, (size_t)N * OC);
    GPU(cuda_to_device(gb + misalign_bias, b, OC * sizeof(float)));
    GPU(cuda_to_device(gx + misalign_inp, x, (size_t)N * Cin * sizeof(float)));
    void *gw16 = up(NULL, (size_t)OC * Cin * 2);
    GPU(cuda_to_bf16(gw16, gw, (size_t)OC * Cin));
    for (int bf = 0; bf < 2; bf++) {
        snprintf(what, sizeof what, "linear forward %s N=%d, bias %s, input %s", bf ? "bf16" : "fp32", N,
                 misalign_bias ? "4-byte aligned" : "aligned", misalign_inp ? "4-byte aligned" : "aligned");
        if (GPU(cuda_linear_forward(gout, gx + misalign_inp, gw, bf ? gw16 : NULL, gb + misalign_bias, N, OC, Cin)))
            compare_dev(what, gout, out, (size_t)N * OC, bf ? 2e-2 : 1e-5);
    }
    cuda_free(gw);
    cuda_free(gb);
    cuda_free(gx);
    cuda_free(gout);
    cuda_free(gw16);
    free(w);
    free(b);
    free(x);
    free(out);
}

/* ---- element-wise ---- */

static void test_layernorm(int N) {
    size_t n = (size_t)N * C;
    float *x = randv(n, 2), *w = randv(C, 1), *b = randv(C, 1), *dy = randv(n, 1);
    for (size_t i = 0; i < n; i++) x[i] += 3.0f; /* a mean away from zero */
    float *out = malloc(n * sizeof *out), *mean = malloc(N * sizeof *mean), *rstd = malloc(N * sizeof *rstd);
    float *dx = randv(n, 1), *dw = randv(C, 1), *db = randv(C, 1);
    float *gx = upf(x, n), *gw = upf(w, C), *gb = upf(b, C), *gdy = upf(dy, n), *gout = upf(NULL, n);
    float *gmean = upf(NULL, N), *grstd = upf(NULL, N), *gdx = upf(dx, n), *gdw = upf(dw, C), *gdb = upf(db, C);
    layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-5f);
    if (GPU(cuda_layernorm_forward(gout, gmean, grstd, gx, gw, gb, N, C, 1e-5f))) {
        compare_dev("layernorm forward: out", gout, out, n, 1e-5);
        compare_dev("layernorm forward: mean", gmean, mean, N, 1e-5);
        compare_dev("layernorm forward: rstd", grstd, rstd, N, 1e-5);
    }
    if (GPU(cuda_layernorm_forward(gout, NULL, NULL, gx, gw, gb, N, C, 1e-5f)))
        compare_dev("layernorm forward without statistics", gout, out, n, 1e-5);
    layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, N, C);
    if (GPU(cuda_to_device(gmean, mean, N * sizeof(float))) && GPU(cuda_to_device(grstd, rstd, N * sizeof(float))) &&
        GPU(cuda_layernorm_backward(gdx, gdw, gdb, gdy, gx, gw, gmean, grstd, N, C))) {
        compare_dev("layernorm backward: dinp +=", gdx, dx, n, 1e-5);
        compare_dev("layernorm backward: dw +=", gdw, dw, C, 1e-5);
        compare_dev("layernorm backward: db +=", gdb, db, C, 1e-5);
    }
    void *g[] = {gx, gw, gb, gdy, gout, gmean, grstd, gdx, gdw, gdb};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) cuda_free(g[i]);
    float *h[] = {x, w, b, dy, out, mean, rstd, dx, dw, db};
    for (size_t i = 0; i < sizeof h / sizeof *h; i++) free(h[i]);
}

static void test_pointwise(void) {
    size_t n = (size_t)500 * F;
    float *x = randv(n, 4), *dy = randv(n, 1), *y = randv(n, 1), *out = malloc(n * sizeof *out);
    float *gx = upf(x, n), *gdy = upf(dy, n), *gy = upf(y, n), *gout = upf(NULL, n);
    gelu_forward(out, x, (int)n);
    if (GPU(cuda_gelu_forward(gout, gx, n))) compare_dev("gelu forward (erf)", gout, out, n, 1e-5);
    gelu_backward(out, x, dy, (int)n);
    if (GPU(cuda_gelu_backward(gout, gx, gdy, n))) compare_dev("gelu backward", gout, out, n, 1e-5);
    if (GPU(cuda_gelu_backward(gdy, gx, gdy, n))) compare_dev("gelu backward in place (dinp = dout)", gdy, out, n, 1e-5);
    residual_forward(out, x, y, (int)n);
    if (GPU(cuda_residual_forward(gout, gx, gy, n))) compare_dev("residual", gout, out, n, 0);
    cuda_free(gx);
    cuda_free(gdy);
    cuda_free(gy);
    cuda_free(gout);
    free(x);
    free(dy);
    free(y);
    free(out);
}

static void test_rows(void) {
    const int T = 500, Vs = 1000, R = 120;
    uint32_t ids[500];
    int rows[120];
    for (int t = 0; t < T; t++) ids[t] = (uint32_t)rng_below(&rng, 300); /* repeats */
    for (int r = 0; r < R; r++) rows[r] = 4 * r + (int)rng_below(&rng, 4);
    float *wte = randv((size_t)Vs * C, 1), *dout = randv((size_t)T * C, 1), *dwte = randv((size_t)Vs * C, 1);
    float *out = malloc((size_t)T * C * sizeof *out);
    float *gwte = upf(wte, (size_t)Vs * C), *gdout = upf(dout, (size_t)T * C), *gdwte = upf(dwte, (size_t)Vs * C);
    float *gout = upf(NULL, (size_t)T * C);
    uint32_t *gids = up(ids, sizeof ids);
    int *grows = up(rows, sizeof rows);
    for (int t = 0; t < T; t++) memcpy(out + (size_t)t * C, wte + (size_t)ids[t] * C, C * sizeof(float));
    if (GPU(cuda_embedding_forward(gout, gwte, gids, T, C))) compare_dev("embedding forward", gout, out, (size_t)T * C, 0);
    embedding_backward(dwte, dout, ids, T, C);
    if (GPU(cuda_embedding_backward(gdwte, gdout, ids, T, C)))
        compare_dev("embedding backward (repeated ids, added in row order)", gdwte, dwte, (size_t)Vs * C, 0);
    for (int r = 0; r < R; r++) memcpy(out + (size_t)r * C, dout + (size_t)rows[r] * C, C * sizeof(float));
    if (GPU(cuda_gather_rows(gout, gdout, grows, R, C))) compare_dev("gather_rows", gout, out, (size_t)R * C, 0);
    /* scatter: dout rows rows[r] += wte row r */
    float *sc = copyv(dout, (size_t)T * C);
    for (int r = 0; r < R; r++)
        for (int i = 0; i < C; i++) sc[(size_t)rows[r] * C + i] += wte[(size_t)r * C + i];
    if (GPU(cuda_scatter_add_rows(gdout, gwte, grows, R, C))) compare_dev("scatter_add_rows", gdout, sc, (size_t)T * C, 0);
    void *g[] = {gwte, gdout, gdwte, gout, gids, grows};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) cuda_free(g[i]);
    free(wte);
    free(dout);
    free(dwte);
    free(out);
    free(sc);
}

/* ---- attention ---- */

static float *rope_cos, *rope_sin, *grope_cos, *grope_sin;

static void test_attention(void) {
    int seq_start[NSEQ + 1] = {0};
    size_t A = 0, max_sq = 0;
    for (int s = 0; s < NSEQ; s++) {
        seq_start[s + 1] = seq_start[s] + seq_len[s];
        A += (size_t)NH * seq_len[s] * seq_len[s];
        if ((size_t)seq_len[s] * seq_len[s] > max_sq) max_sq = (size_t)seq_len[s] * seq_len[s];
    }
    const int T = seq_start[NSEQ];
    float *qkv = randv((size_t)T * 3 * C, 1), *dout = randv((size_t)T * C, 1);
    float *gqkv = upf(qkv, (size_t)T * 3 * C), *gdout = upf(dout, (size_t)T * C);
    float *att = calloc(A, sizeof *att), *out = malloc((size_t)T * C * sizeof *out);
    float *dqkv = malloc((size_t)T * 3 * C * sizeof *dqkv);
    float *datt = malloc(max_sq * parallel_threads() * sizeof *datt);
    float *gatt = upf(NULL, A), *gout = upf(NULL, (size_t)T * C), *gdqkv = upf(NULL, (size_t)T * 3 * C);
    float *gdatt = upf(NULL, NH * max_sq);
    float *a = att;
    for (int s = 0; s < NSEQ; s++) {
        float *q = qkv + (size_t)seq_start[s] * 3 * C;
        rotary_forward(q, rope_cos, rope_sin, 0, seq_len[s], NH, HD, ROT);
        attention_forward(out + (size_t)seq_start[s] * C, a, q, seq_len[s], NH, HD);
        a += (size_t)NH * seq_len[s] * seq_len[s];
    }
    if (GPU(cuda_attention_forward(gqkv, gatt, gout, grope_cos, grope_sin, seq_start, NSEQ, NH, HD, ROT, C))) {
        compare_dev("attention forward (pack 37+100+250): rotated qkv", gqkv, qkv, (size_t)T * 3 * C, 1e-5);
        compare_dev("attention forward: probabilities", gatt, att, A, 2e-5);
        compare_dev("attention forward: out", gout, out, (size_t)T * C, 2e-5);
    }
    a = att;
    for (int s = 0; s < NSEQ; s++) {
        size_t o = (size_t)seq_start[s] * 3 * C;
        attention_backward(dqkv + o, datt, dout + (size_t)seq_start[s] * C, qkv + o, a, seq_len[s], NH, HD);
        rotary_backward(dqkv + o, rope_cos, rope_sin, 0, seq_len[s], NH, HD, ROT);
        a += (size_t)NH * seq_len[s] * seq_len[s];
    }
    /* the CPU's rotated qkv and probabilities, so the backward is compared alone */
    GPU(cuda_to_device(gqkv, qkv, (size_t)T * 3 * C * sizeof(float)));
    GPU(cuda_to_device(gatt, att, A * sizeof(float)));
    GPU(cuda_zero(gdqkv, (size_t)T * 3 * C * sizeof(float)));
    if (GPU(cuda_attention_backward(gdqkv, gdatt, gdout, gqkv, gatt, grope_cos, grope_sin, seq_start, NSEQ, NH, HD,
                                    ROT, C)))
        compare_dev("attention backward: dqkv (through rotary)", gdqkv, dqkv, (size_t)T * 3 * C, 2e-5);
    void *g[] = {gqkv, gdout, gatt, gout, gdqkv, gdatt};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) cuda_free(g[i]);
    float *h[] = {qkv, dout, att, out, dqkv, datt};
    for (size_t i = 0; i < sizeof h / sizeof *h; i++) free(h[i]);
}

/* Cached decoding: 3 sequences of 37, 100 and 250 cached positions in
 * layer 1 of 2, a step of count[] new rows each. Reference: rotary_forward
 * at p0, then attention in double over the cache plus the new keys. */
static void test_decode(const int *count, const char *label) {
    const int L = 2, l = 1, room = 300;
    size_t slot_floats = (size_t)L * NH * room * HD;
    int R = 0, row0[NSEQ], max_pos = 0;
    for (int b = 0; b < NSEQ; b++) {
        row0[b] = R;
        R += count[b];
        if (seq_len[b] + count[b] > max_pos) max_pos = seq_len[b] + count[b];
    }
    float *qkv = randv((size_t)R * 3 * C, 1), *out = malloc((size_t)R * C * sizeof *out);
    float *K[NSEQ], *Vv[NSEQ];
    cuda_decode_seq seqs[NSEQ];
    float *gqkv = upf(qkv, (size_t)R * 3 * C), *gout = upf(NULL, (size_t)R * C);
    for (int b = 0; b < NSEQ; b++) {
        K[b] = randv(slot_floats, 1);
        Vv[b] = randv(slot_floats, 1);
        seqs[b] = (cuda_decode_seq){upf(K[b], slot_floats), upf(Vv[b], slot_floats), room, seq_len[b], row0[b], count[b]};
    }
    cuda_decode_seq *gseqs = up(seqs, sizeof seqs);
    /* CPU */
    for (int b = 0; b < NSEQ; b++) {
        float *x = qkv + (size_t)row0[b] * 3 * C;
        rotary_forward(x, rope_cos, rope_sin, seq_len[b], count[b], NH, HD, ROT);
        for (int h = 0; h < NH; h++) {
            float *Kh = K[b] + ((size_t)l * NH + h) * room * HD, *Vh = Vv[b] + ((size_t)l * NH + h) * room * HD;
            for (int i = 0; i < count[b]; i++) {
                memcpy(Kh + (size_t)(seq_len[b] + i) * HD, x + ((size_t)i * NH + h) * 3 * HD + HD, HD * sizeof(float));
                memcpy(Vh + (size_t)(seq_len[b] + i) * HD, x + ((size_t)i * NH + h) * 3 * HD + 2 * HD, HD * sizeof(float));
            }
            for (int i = 0; i < count[b]; i++) {
                const float *q = x + ((size_t)i * NH + h) * 3 * HD;
                int P = seq_len[b] + i + 1;
                double *s = malloc(P * sizeof *s), mx = -INFINITY, sum = 0;
                for (int j = 0; j < P; j++) {
                    double d = 0;
                    for (int e = 0; e < HD; e++) d += (double)q[e] * Kh[(size_t)j * HD + e];
                    s[j] = d / sqrt((double)HD);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < P; j++) sum += s[j] = exp(s[j] - mx);
                for (int e = 0; e < HD; e++) {
                    double o = 0;
                    for (int j = 0; j < P; j++) o += s[j] / sum * Vh[(size_t)j * HD + e];
                    out[(size_t)(row0[b] + i) * C + h * HD + e] = (float)o;
                }
                free(s);
            }
        }
    }
    char what[160];
    int ran = 0;
    if ((ran = GPU(cuda_attention_decode(gout, gqkv, gseqs, NSEQ, R, max_pos, l, grope_cos, grope_sin, NH, HD, ROT)))) {
        snprintf(what, sizeof what, "attention decode (%s): out", label);
        compare_dev(what, gout, out, (size_t)R * C, 2e-5);
        for (int b = 0; b < NSEQ; b++) {
            snprintf(what, sizeof what, "attention decode (%s): keys and values cached, sequence %d", label, b);
            float *gk = down(seqs[b].k, slot_floats), *gv = down(seqs[b].v, slot_floats);
            /* all of the slot: the other layer and the old positions untouched too */
            float *both = malloc(2 * slot_floats * sizeof *both), *ref = malloc(2 * slot_floats * sizeof *ref);
            memcpy(both, gk, slot_floats * sizeof(float));
            memcpy(both + slot_floats, gv, slot_floats * sizeof(float));
            memcpy(ref, K[b], slot_floats * sizeof(float));
            memcpy(ref + slot_floats, Vv[b], slot_floats * sizeof(float));
            compare(what, both, ref, 2 * slot_floats, 1e-6);
            free(gk);
            free(gv);
            free(both);
            free(ref);
        }
    }
    if (ran && count[0] == 1 && count[1] == 1 && count[2] == 1) {
        GPU(cuda_sync());
        double t0 = now();
        for (int it = 0; it < 100; it++)
            cuda_attention_decode(gout, gqkv, gseqs, NSEQ, R, max_pos, 0, grope_cos, grope_sin, NH, HD, ROT);
        GPU(cuda_sync());
        note("attention decode, 3 sequences x 1 row, 16 heads, up to 251 positions: %.1f us a launch",
             (now() - t0) / 100 * 1e6);
    }
    for (int b = 0; b < NSEQ; b++) {
        cuda_free(seqs[b].k);
        cuda_free(seqs[b].v);
        free(K[b]);
        free(Vv[b]);
    }
    cuda_free(gseqs);
    cuda_free(gqkv);
    cuda_free(gout);
    free(qkv);
    free(out);
}

/* ---- greedy choice ---- */

/* cuda_argmax_rows against the sampler's greedy choice, row by row: random
 * rows, and rows whose answer depends on the scan's rules (a tie, all
 * -inf, NaN first, NaN beside the maximum). */
static void test_argmax(void) {
    enum { R = 8 };
    float *x = randv((size_t)R * V, 3), *copy = malloc((size_t)V * sizeof *copy);
    float *r4 = x + 4 * (size_t)V, *r5 = x + 5 * (size_t)V, *r6 = x + 6 * (size_t)V, *r7 = x + 7 * (size_t)V;
    r4[7] = r4[40000] = 100.0f;
    for (int i = 0; i < V; i++) r5[i] = -INFINITY;
    r6[0] = NAN;
    r7[3] = NAN, r7[50000] = 100.0f, r7[50001] = NAN;
    uint32_t want[R], got[R] = {0};
    sampler smp;
    sampler_init(&smp, &(sampler_opts){.temperature = 1, .top_p = 1, .repetition_penalty = 1}, V);
    for (int r = 0; r < R; r++) {
        memcpy(copy, x + (size_t)r * V, (size_t)V * sizeof *copy);
        want[r] = sampler_next(&smp, copy, NULL, 0, NULL);
    }
    sampler_free(&smp);
    float *gx = upf(x, (size_t)R * V);
    if (GPU(cuda_argmax_rows(got, gx, R, V))) {
        int same = memcmp(got, want, sizeof want) == 0;
        ok(same, "argmax of 8 rows of %d equals the sampler's greedy choice (tie, -inf, NaN rows included)", V);
        if (!same)
            for (int r = 0; r < R; r++) diag("row %d: gpu %u, sampler %u", r, got[r], want[r]);
        GPU(cuda_sync());
        double t0 = now();
        for (int it = 0; it < 100; it++) cuda_argmax_rows(got, gx, R, V);
        note("argmax of 8 rows of %d, the ids copied back: %.1f us", V, (now() - t0) / 100 * 1e6);
    }
    cuda_free(gx);
    free(x);
    free(copy);
}

/* ---- loss, optimizer ---- */

static void test_crossentropy(void) {
    const int N = 300;
    size_t n = (size_t)N * V;
    float *logits = randv(n, 4), *cpu = copyv(logits, n);
    uint32_t *tg = malloc(N * sizeof *tg);
    for (int i = 0; i < N; i++) tg[i] = (uint32_t)rng_below(&rng, V);
    float *gl = upf(logits, n);
    uint32_t *gtg = up(tg, N * sizeof *tg);
    double *gsum = up(NULL, sizeof(double));
    double loss = crossentropy_forward(cpu, tg, N, V);
    GPU(cuda_zero(gsum, sizeof(double)));
    if (GPU(cuda_crossentropy_forward(gl, gtg, N, V, gsum))) {
        compare_scalar("crossentropy forward: loss sum", down_double(gsum), loss, 1e-6);
        compare_dev("crossentropy forward leaves the logits", gl, logits, n, 0);
    }
    float scale = 1.0f / N;
    double loss2 = crossentropy_forward_backward(cpu, tg, N, V, scale);
    /* += onto what is there */
    if (GPU(cuda_crossentropy_forward_backward(gl, gtg, N, V, scale, gsum))) {
        compare_scalar("crossentropy forward_backward: loss sum += ", down_double(gsum), loss + loss2, 1e-6);
        compare_dev("crossentropy forward_backward: gradient", gl, cpu, n, 1e-5);
    }
    cuda_free(gl);
    cuda_free(gtg);
    cuda_free(gsum);
    free(logits);
    free(cpu);
    free(tg);
}

/* The fused projection + cross-entropy + backward against the three CPU
 * ops in a row, over three chunks (the last short), adding to dw. */
static void test_head_loss(void) {
    const int R = 2 * CUDA_HEAD_LOSS_ROWS + 88, HV = 5000;
    const size_t nw = (size_t)HV * C, nx = (size_t)R * C;
    float *w = randv(nw, 0.05f), *x = randv(nx, 1), *dw = randv(nw, 0.1f), *dw0 = copyv(dw, nw);
    float *logits = malloc((size_t)R * HV * sizeof *logits), *dx = malloc(nx * sizeof *dx);
    uint32_t *tg = malloc(R * sizeof *tg);
    for (int i = 0; i < R; i++) tg[i] = (uint32_t)rng_below(&rng, HV);
    const float scale = 1.0f / R;
    linear l;
    linear_init(&l, w, NULL, HV, C);
    linear_forward(&l, logits, x, R);
    double sumsq = 0, loss = crossentropy_forward_backward(logits, tg, R, HV, scale);
    linear_backward(&l, dx, dw, NULL, logits, x, R, 1, &sumsq);

    float *gw = upf(w, nw), *gx = upf(x, nx), *gdx = upf(NULL, nx), *gdw = upf(NULL, nw);
    uint32_t *gtg = up(tg, R * sizeof *tg);
    void *gw16 = up(NULL, nw * 2);
    double *gsums = up(NULL, 2 * sizeof(double));
    GPU(cuda_to_bf16(gw16, gw, nw));
    for (int bf = 0; bf < 2; bf++) {
        char what[200];
        const double tol = bf ? 2e-2 : 1e-5;
        GPU(cuda_to_device(gdw, dw0, nw * sizeof(float)));
        GPU(cuda_zero(gsums, 2 * sizeof(double)));
        if (!GPU(cuda_head_loss(gdx, gdw, gx, gtg, gw, bf ? gw16 : NULL, bf ? gw16 : NULL, R, HV, C, scale, 1, gsums,
                                gsums + 1)))
            continue;
        double sums[2];
        GPU(cuda_to_host(sums, gsums, sizeof sums));
        snprintf(what, sizeof what, "head loss %s, %d rows in chunks of %d, V=%d: loss sum", bf ? "bf16" : "fp32", R,
                 CUDA_HEAD_LOSS_ROWS, HV);
        compare_scalar(what, sums[0], loss, bf ? 1e-3 : 1e-6);
        snprintf(what, sizeof what, "head loss %s: dinp", bf ? "bf16" : "fp32");
        compare_dev(what, gdx, dx, nx, tol);
        snprintf(what, sizeof what, "head loss %s: dw added to", bf ? "bf16" : "fp32");
        compare_dev(what, gdw, dw, nw, tol);
        snprintf(what, sizeof what, "head loss %s: sum of dw squared", bf ? "bf16" : "fp32");
        compare_scalar(what, sums[1], sumsq, bf ? 1e-3 : 1e-5);
    }
    void *g[] = {gw, gx, gdx, gdw, gtg, gw16, gsums};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) cuda_free(g[i]);
    void *h[] = {w, x, dw, dw0, logits, dx, tg};
    for (size_t i = 0; i < sizeof h / sizeof *h; i++) free(h[i]);
}

static void test_adamw(int decay) {
    size_t n = ((size_t)1 << 20) + 17;
    float *p = randv(n, 1), *g = randv(n, 0.1f), *m = randv(n, 0.01f), *v = randv(n, 0.001f);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *gp = upf(p, n), *gg = upf(g, n), *gm = upf(m, n), *gv = upf(v, n);
    adamw_hparams hp = ADAMW_DEFAULTS;
    hp.weight_decay = 0.01;
    adamw_consts k = adamw_step_consts(&hp, 1e-4, 3, 0.7f);
    adamw_update(&k, p, g, m, v, 0, n, decay);
    if (GPU(cuda_adamw(&k, gp, gg, gm, gv, n, decay))) {
        float *r[3] = {down(gp, n), down(gm, n), down(gv, n)}, *c[3] = {p, m, v};
        const char *names[3] = {"param", "m", "v"};
        for (int a = 0; a < 3; a++) {
            size_t exact = 0;
            long max_ulp = 0;
            for (size_t i = 0; i < n; i++) {
                int32_t x, y;
                memcpy(&x, r[a] + i, 4);
                memcpy(&y, c[a] + i, 4);
                long d = labs((long)x - (long)y);
                exact += d == 0;
                if (d > max_ulp || isnan(r[a][i])) max_ulp = isnan(r[a][i]) ? 1L << 30 : d;
            }
            ok(max_ulp <= 1, "adamw decay=%d: %s matches the CPU in %zu of %zu, max %ld ulp (tolerance 1)", decay,
               names[a], exact, n, max_ulp);
            free(r[a]);
        }
    }
    cuda_free(gp);
    cuda_free(gg);
    cuda_free(gm);
    cuda_free(gv);
    free(p);
    free(g);
    free(m);
    free(v);
}

static void test_sum_squares(void) {
    size_t n = ((size_t)10 << 20) + 3;
    float *x = randv(n, 1);
    float *gx = upf(x, n);
    double *gs = up(NULL, sizeof(double));
    double first = 0, again = 0;
    GPU(cuda_zero(gs, sizeof(double)));
    if (GPU(cuda_sum_squares(gx, n, gs))) {
        first = down_double(gs);
        compare_scalar("sum_squares (10M floats, double)", first, grad_sum_squares(x, n), 1e-10);
    }
    GPU(cuda_zero(gs, sizeof(double)));
    if (GPU(cuda_sum_squares(gx, n, gs))) {
        again = down_double(gs);
        ok(memcmp(&first, &again, sizeof first) == 0, "sum_squares gives the same bits twice");
    }
    cuda_free(gx);
    cuda_free(gs);
    free(x);
}

/* ---- speed notes ---- */

static void bench_linear(int N, int OC, int Cin) {
    float *w = upf(NULL, (size_t)OC * Cin), *x = upf(NULL, (size_t)N * Cin), *o = upf(NULL, (size_t)N * OC);
    float *b = upf(NULL, OC);
    void *w16 = up(NULL, (size_t)OC * Cin * 2);
    GPU(cuda_zero(w, (size_t)OC * Cin * 4));
    GPU(cuda_zero(x, (size_t)N * Cin * 4));
    GPU(cuda_zero(b, (size_t)OC * 4));
    GPU(cuda_zero(w16, (size_t)OC * Cin * 2));
    for (int bf = 0; bf < 2; bf++) {
        cuda_linear_forward(o, x, w, bf ? w16 : NULL, b, N, OC, Cin);
        GPU(cuda_sync());
        int iters = 50;
        double t0 = now();
        for (int i = 0; i < iters; i++) cuda_linear_forward(o, x, w, bf ? w16 : NULL, b, N, OC, Cin);
        GPU(cuda_sync());
        double dt = (now() - t0) / iters;
        note("linear forward %s N=%d OC=%d C=%d: %.1f us, %.2f TFLOPS, %.0f GB/s of weights", bf ? "bf16" : "fp32", N, OC,
             Cin, dt * 1e6, 2.0 * N * OC * Cin / dt * 1e-12, (double)OC * Cin * (bf ? 2 : 4) / dt * 1e-9);
    }
    cuda_free(w);
    cuda_free(x);
    cuda_free(o);
    cuda_free(b);
    cuda_free(w16);
}

int main(void) {
    if (cuda_ops_init()) {
        char reason[600];
        snprintf(reason, sizeof reason, "no GPU: %s", cuda_ops_last_error());
        skip_all(reason);
    }
    note("device: %s", cuda_ops_device_name());
    rng_seed(&rng, 42);
    rope_cos = malloc((size_t)MAXPOS * ROT / 2 * sizeof(float));
    rope_sin = malloc((size_t)MAXPOS * ROT / 2 * sizeof(float));
    rotary_tables(rope_cos, rope_sin, MAXPOS, ROT, 10000.0);
    grope_cos = upf(rope_cos, (size_t)MAXPOS * ROT / 2);
    grope_sin = upf(rope_sin, (size_t)MAXPOS * ROT / 2);

    test_memory();
    test_bf16();
    test_linear(387, 3 * C, C, 1, 1);  /* qkv over the pack */
    test_linear(500, C, F, 1, 0);      /* MLP out, first pack of a step */
    test_linear(1, F, C, 1, 1);        /* a decoding row */
    test_linear(3, C, C, 0, 0);        /* odd shape, no bias; C split in two */
    test_linear(8, C, F, 1, 0);        /* decoding's MLP out at batch 8: F split in four */
    test_linear(5, 3 * C, C, 1, 1);    /* qkv of 5 rows */
    test_linear(64, V, C, 0, 1);       /* embed_out on the loss rows */
    test_linear_views(387, 1, 0);
    test_linear_views(3, 0, 1);
    test_layernorm(387);
    test_layernorm(1);
    test_fused_decoding(1);
    test_fused_decoding(8);
    test_pointwise();
    test_rows();
    test_attention();
    test_decode((const int[]){1, 1, 1}, "one row each");
    test_decode((const int[]){1, 5, 3}, "1, 5 and 3 rows");
    test_decode((const int[]){1, 40, 3}, "1, 40 and 3 rows: positions not split");
    test_argmax();
    test_crossentropy();
    test_head_loss();
    test_adamw(1);
    test_adamw(0);
    test_sum_squares();

    bench_linear(387, 3 * C, C);
    for (int n = 1; n <= 8; n += 7) { /* decoding's four products */
        bench_linear(n, 3 * C, C);
        bench_linear(n, C, C);
        bench_linear(n, F, C);
        bench_linear(n, C, F);
    }
    bench_linear(1, V, C);
    cuda_free(grope_cos);
    cuda_free(grope_sin);
    free(rope_cos);
    free(rope_sin);
    cuda_ops_shutdown();
    return done_testing();
}
