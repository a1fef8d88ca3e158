/* gemm.c — the bf16 products against a double-precision reference, on every
 * path this CPU can run (TUNEPIPE_GEMM picks the first one), at odd sizes,
 * T = 1, and sizes that cross the kernels' K chunks and column panels.
 *
 * Tolerances, per output element, with S = Σ_k |a_k b_k| (+ |bias|):
 *   - against the product of the bf16-rounded inputs in double: 1e-5 S
 *     (only fp32 accumulation differs; a misplaced or dropped term is
 *     ~2^-8 S or more);
 *   - against the product of the fp32 inputs in double: 2^-7 S, the worst
 *     case of rounding both factors to bf16 (relative error 2^-8 each).
 * The fp32 path must meet 1e-5 S against the fp32 inputs. */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/gemm.h"
#include "tap.h"

static unsigned long long rng_state = 88172645463325252ull;
static float uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * 0x1.0p-53 * 2 - 1);
}
static float *random_array(size_t n) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = uniform();
    return x;
}

#define GUARD 2048
#define GUARD_VALUE 12345.0f
/* x[0..n) followed by GUARD guard values (x is reallocated). */
static float *guarded(float *x, size_t n) {
    x = realloc(x, (n + GUARD) * sizeof *x);
    for (size_t i = n; i < n + GUARD; i++) x[i] = GUARD_VALUE;
    return x;
}
static int guard_intact(const float *x, size_t n) {
    for (size_t i = n; i < n + GUARD; i++)
        if (x[i] != GUARD_VALUE) return 0;
    return 1;
}

static double as_input(float x, int rounded) { return rounded ? gemm_bf16_to_fp32(gemm_fp32_to_bf16(x)) : x; }

/* Checks got[i] against ref[i] within tol * scale[i]; reports the worst. */
static int within(const float *got, const double *ref, const double *scale, size_t n, double tol,
                  const char *what) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / (scale[i] + 1e-30);
        if (!(e <= worst)) worst = e;  /* NaN counts as worst */
    }
    if (!(worst <= tol)) diag("%s: worst error %.3g x S, allowed %.3g", what, worst, tol);
    return worst <= tol;
}

/* One (T, C, OC) case of the three products on the current path. */
static void check_shape(int T, int C, int OC) {
    const int bf16 = gemm_current_path() != GEMM_FP32;
    const char *path = gemm_path_name(gemm_current_path());
    float *w = random_array((size_t)OC * C), *inp = random_array((size_t)T * C);
    float *bias = random_array(OC), *dout = random_array((size_t)T * OC);
    /* Outputs are followed by guard values: the AMX tile stores are
     * invisible to AddressSanitizer. */
    float *out = guarded(random_array((size_t)T * OC), (size_t)T * OC);
    float *dinp = guarded(random_array((size_t)T * C), (size_t)T * C);
    float *dw = guarded(random_array((size_t)OC * C), (size_t)OC * C);
    float *dbias = random_array(OC);
    size_t most = (size_t)OC * C > (size_t)T * OC ? (size_t)OC * C : (size_t)T * OC;
    if ((size_t)T * C > most) most = (size_t)T * C;
    double *ref[2], *scale = malloc(most * sizeof *scale);
    ref[0] = malloc(most * sizeof(double));
    ref[1] = malloc(most * sizeof(double));
    const double tight = 1e-5, loose = 0x1.0p-7;

    gemm_weight gw;
    gemm_weight_init(&gw, w, OC, C, GEMM_FOR_FORWARD | GEMM_FOR_BACKWARD);
    gemm_weight_pack(&gw);

    /* forward, with bias and without */
    for (int with_bias = 1; with_bias >= 0; with_bias--) {
        gemm_forward(out, inp, &gw, with_bias ? bias : NULL, T);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < T; t++)
                for (int o = 0; o < OC; o++) {
                    double s = with_bias ? bias[o] : 0, sa = with_bias ? fabs(bias[o]) : 0;
                    for (int c = 0; c < C; c++) {
                        double p = as_input(inp[t * C + c], r) * as_input(w[o * C + c], r);
                        s += p;
                        sa += fabs(p);
                    }
                    ref[r][t * OC + o] = s;
                    scale[t * OC + o] = sa;
                }
        size_t n = (size_t)T * OC;
        ok(within(out, ref[bf16], scale, n, tight, "forward") &&
               within(out, ref[0], scale, n, bf16 ? loose : tight, "forward vs fp32"),
           "%s forward T=%d C=%d OC=%d %s bias", path, T, C, OC, with_bias ? "with" : "without");
    }

    /* backward to the input, added to what dinp holds */
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double s = dinp[t * C + c], sa = fabs(dinp[t * C + c]);
                for (int o = 0; o < OC; o++) {
                    double p = as_input(dout[t * OC + o], r) * as_input(w[o * C + c], r);
                    s += p;
                    sa += fabs(p);
                }
                ref[r][t * C + c] = s;
                scale[t * C + c] = sa;
            }
    gemm_backward_input(dinp, dout, &gw, T);
    ok(within(dinp, ref[bf16], scale, (size_t)T * C, tight, "backward input") &&
           within(dinp, ref[0], scale, (size_t)T * C, bf16 ? loose : tight, "backward input vs fp32"),
       "%s backward input T=%d C=%d OC=%d", path, T, C, OC);

    /* backward to the weight and bias, added to dw and dbias */
    double *dbias_ref = malloc(OC * sizeof *dbias_ref), *dbias_scale = malloc(OC * sizeof *dbias_scale);
    for (int o = 0; o < OC; o++) {
        dbias_ref[o] = dbias[o];
        dbias_scale[o] = fabs(dbias[o]);
        for (int t = 0; t < T; t++) {
            dbias_ref[o] += dout[t * OC + o];
            dbias_scale[o] += fabs(dout[t * OC + o]);
        }
    }
    for (int r = 0; r < 2; r++)
        for (int o = 0; o < OC; o++)
            for (int c = 0; c < C; c++) {
                double s = dw[o * C + c], sa = fabs(dw[o * C + c]);
                for (int t = 0; t < T; t++) {
                    double p = as_input(dout[t * OC + o], r) * as_input(inp[t * C + c], r);
                    s += p;
                    sa += fabs(p);
                }
                ref[r][o * C + c] = s;
                scale[o * C + c] = sa;
            }
    double sumsq;
    gemm_backward_weight(dw, dbias, dout, inp, T, OC, C, 1, &sumsq);
    ok(within(dw, ref[bf16], scale, (size_t)OC * C, tight, "backward weight") &&
           within(dw, ref[0], scale, (size_t)OC * C, bf16 ? loose : tight, "backward weight vs fp32"),
       "%s backward weight T=%d C=%d OC=%d", path, T, C, OC);
    double want = 0;
    for (size_t i = 0; i < (size_t)OC * C; i++) want += (double)dw[i] * dw[i];
    ok(fabs(sumsq - want) <= 1e-12 * want, "%s backward weight: its sum of squares %.17g (want %.17g)",
       path, sumsq, want);
    /* Without accumulate the product overwrites: from NaNs it gives what
     * adding it to zeros gives, bit for bit. */
    float *zeros = calloc((size_t)OC * C, sizeof *zeros), *nans = malloc((size_t)OC * C * sizeof *nans);
    for (size_t i = 0; i < (size_t)OC * C; i++) nans[i] = NAN;
    gemm_backward_weight(zeros, NULL, dout, inp, T, OC, C, 1, NULL);
    gemm_backward_weight(nans, NULL, dout, inp, T, OC, C, 0, NULL);
    ok(memcmp(zeros, nans, (size_t)OC * C * sizeof *nans) == 0, "%s backward weight overwrites without accumulate", path);
    free(zeros), free(nans);
    ok(within(dbias, dbias_ref, dbias_scale, OC, tight, "dbias"), "%s backward bias (fp32) OC=%d", path, OC);
    ok(guard_intact(out, (size_t)T * OC) && guard_intact(dinp, (size_t)T * C) &&
           guard_intact(dw, (size_t)OC * C),
       "%s writes nothing past the outputs", path);

    gemm_weight_free(&gw);
    free(w), free(inp), free(bias), free(dout), free(out), free(dinp), free(dw), free(dbias);
    free(ref[0]), free(ref[1]), free(scale), free(dbias_ref), free(dbias_scale);
}

/* Re-packing a changed weight 16 rows at a time (and the rest at the end)
 * gives the same bytes as packing it whole. */
static void check_pack_rows(int OC, int C) {
    const char *path = gemm_path_name(gemm_current_path());
    float *w = malloc((size_t)OC * C * sizeof *w);
    for (size_t i = 0; i < (size_t)OC * C; i++) w[i] = (float)i * 0.25f - 3.0f;
    gemm_weight piecewise, whole;
    gemm_weight_init(&piecewise, w, OC, C, GEMM_FOR_FORWARD | GEMM_FOR_BACKWARD);
    gemm_weight_init(&whole, w, OC, C, GEMM_FOR_FORWARD | GEMM_FOR_BACKWARD);
    gemm_weight_pack(&piecewise);
    for (size_t i = 0; i < (size_t)OC * C; i++) w[i] = 1.0f / (float)(i + 1);
    for (int o = 0; o < OC; o += 16) gemm_weight_pack_rows(&piecewise, o, o + 16 < OC ? o + 16 : OC);
    gemm_weight_pack(&whole);
    size_t bytes = gemm_weight_bytes(&whole);
    ok(bytes == gemm_weight_bytes(&piecewise) && memcmp(piecewise.fwd, whole.fwd, bytes / 2) == 0 &&
           memcmp(piecewise.bwd, whole.bwd, bytes / 2) == 0,
       "%s re-packing %dx%d by 16 rows equals packing it whole", path, OC, C);
    gemm_weight_free(&piecewise);
    gemm_weight_free(&whole);
    free(w);
}

static void check_conversion(void) {
    ok(gemm_fp32_to_bf16(1.0f) == 0x3f80 && gemm_bf16_to_fp32(0x3f80) == 1.0f, "1.0 converts exactly");
    ok(gemm_fp32_to_bf16(1.0f + 0x1.0p-8f) == 0x3f80, "a tie rounds down to even");
    ok(gemm_fp32_to_bf16(1.0f + 0x3.0p-8f) == 0x3f82, "a tie rounds up to even");
    ok(gemm_fp32_to_bf16(1.0f + 0x1.2p-8f) == 0x3f81, "above a tie rounds up");
    ok(gemm_fp32_to_bf16(-2.5f) == 0xc020, "the sign is kept");
    ok(gemm_fp32_to_bf16(0x1.fffffep127f) == 0x7f80, "the largest float rounds to infinity");
    ok(isnan(gemm_bf16_to_fp32(gemm_fp32_to_bf16(NAN))), "NaN stays NaN");
    ok(gemm_fp32_to_bf16(INFINITY) == 0x7f80, "infinity stays infinity");
}

/* The path a fresh process picks with TUNEPIPE_GEMM=value (read once, at
 * the first call, hence a child per value; its warning is discarded). */
static int path_chosen_with(const char *value) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2);
        setenv("TUNEPIPE_GEMM", value, 1);
        _exit((int)gemm_current_path());
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

static void check_selection(void) {
    gemm_path best = GEMM_AMX;
    while (!gemm_path_supported(best)) best--;
    for (int p = GEMM_FP32; p <= GEMM_AMX; p++) {
        const char *name = gemm_path_name((gemm_path)p);
        int expect = p <= (int)best ? p : (int)best;  /* a missing one falls back */
        ok(path_chosen_with(name) == expect, "TUNEPIPE_GEMM=%s selects %s", name,
           gemm_path_name((gemm_path)expect));
    }
    ok(path_chosen_with("AMX") == (int)best, "names are case-blind");
    ok(path_chosen_with("nonsense") == (int)best, "an unknown name selects the fastest (%s)",
       gemm_path_name(best));
}

int main(void) {
    check_selection();
    setenv("TUNEPIPE_GEMM", "fp32", 1);
    ok(gemm_current_path() == GEMM_FP32, "TUNEPIPE_GEMM=fp32 selects the fp32 path here too");
    ok(gemm_threads() >= 1, "%d threads", gemm_threads());
    check_conversion();

    /* Shapes: T = 1; nothing a multiple of 16; K beyond one 512-value chunk;
     * columns spanning several multi-block panels; a decode-like batch. */
    static const int shapes[][3] = {
        {1, 64, 96}, {1, 33, 17}, {7, 33, 50}, {37, 100, 70}, {45, 600, 200},
        {20, 70, 520}, {8, 256, 64}, {64, 128, 96},
    };
    const int sanitized = getenv("TUNEPIPE_SANITIZE") != NULL;
    for (int p = GEMM_FP32; p <= GEMM_AMX; p++) {
        if (!gemm_use_path((gemm_path)p)) {
            ok(1, "# SKIP %s: not supported by this CPU", gemm_path_name((gemm_path)p));
            continue;
        }
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            if (sanitized && shapes[s][1] * shapes[s][2] > 50000) continue;
            check_shape(shapes[s][0], shapes[s][1], shapes[s][2]);
        }
        if (p != GEMM_FP32) {
            check_pack_rows(50, 33);
            check_pack_rows(96, 64);
            check_pack_rows(520, 70);
        }
    }
    return done_testing();
}
