/* backward_fd.c — every backward op of backward.h against central finite
 * differences of a float64 re-implementation of its forward.
 *
 * For an op y = f(x, w, ...) and a random dout, L = Σ dout · y. The op's
 * fp32 backward gives dL/dx; the reference is (L(x + h) - L(x - h)) / 2h of
 * the float64 forward below, h = 1e-5 (|x| <= 1) or 1e-5 |x|, which is
 * exact to about 1e-10 here (truncation h², rounding 1e-16 / h).
 * The inputs are fp32 values, so both sides differentiate the same function.
 *
 * Error: max over elements of |got - want| / (|want| + 0.01 max |want|), so
 * elements a hundred times smaller than the largest are judged on absolute
 * terms. Tolerances (and the worst error measured when they were set):
 *   TOL_GRAD  1e-4  one op's fp32 backward against float64 finite
 *                   differences (5e-6): fp32 rounding through a few
 *                   reductions; a wrong sign, dropped term, misplaced
 *                   index or missing mask is 1e-2 to 1
 *   TOL_MODEL 1e-3  model_backward, two layers of fp32 ops deep (4e-5)
 *   TOL_FWD   5e-5  the fp32 forward against the float64 one (5e-6; GELU's
 *                   vectorized erf is good to 4e-7 absolute), which makes
 *                   sure the reference is the function the code computes
 *
 * Accumulating outputs ("+=" in backward.h) start from random values that
 * are subtracted afterwards; overwritten ones start from garbage.
 * model_backward is checked too, on a tiny model in two configurations,
 * entries sampled from every parameter tensor. Residual additions have no
 * backward op (their gradient is the identity, model_backward's "+=" into
 * dresid), nor has the softmax (inside attention_backward), nor the
 * embedding's forward (a row copy in model_forward_pack). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "base/cli.h"
#include "nn/config.h"
#include "kernels/gemm.h"
#include "nn/linear.h"
#include "nn/model.h"
#include "nn/ops.h"
#include "kernels/parallel.h"
#include "base/rng.h"
#include "tap.h"

#define TOL_GRAD 1e-4
#define TOL_MODEL 1e-3
#define TOL_FWD 5e-5
#define GARBAGE 1e3f

static rng_state rng;

static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)rng_uniform(&rng); }
static float *random_floats(size_t n, float lo, float hi) {
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = uniform(lo, hi);
    return x;
}
static float *filled(size_t n, float v) {
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = v;
    return x;
}
static double *to_double(const float *x, size_t n) {
    double *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
/* got - base, in double: what an accumulating output added. */
static double *added(const float *got, const float *base, size_t n) {
    double *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = (double)got[i] - base[i];
    return d;
}

/* ---- comparing ---------------------------------------------------------- */

/* Worst |got - want| / (|want| + 0.01 max |want|) and where (NaN is worst). */
static double rel_err(const double *got, const double *want, size_t n, size_t *where) {
    double big = 0;
    for (size_t i = 0; i < n; i++) big = fmax(big, fabs(want[i]));
    double floor = big > 0 ? 0.01 * big : 1e-30, worst = 0;
    *where = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / (fabs(want[i]) + floor);
        if (!(e <= worst)) {
            worst = e;
            *where = i;
            if (e != e) break;
        }
    }
    return worst;
}

/* One TAP line: got against want [n = rows x cols]; on failure the worst
 * element on stderr (prove shows it without -v). */
static void check(const char *what, const char *against, const double *got, const double *want,
                  size_t n, int cols, double tol) {
    size_t i;
    double e = rel_err(got, want, n, &i);
    char shape[48] = "";
    if (n > 1) snprintf(shape, sizeof shape, " [%zux%d]", n / cols, cols);
    ok(e <= tol, "%s%s: vs %s, max rel err %.2e (tol %.0e)", what, shape, against, e, tol);
    if (!(e <= tol))
        fprintf(stderr, "#   %s: worst at [%zu, %zu]: got %.9g, want %.9g\n", what, i / cols, i % cols,
                got[i], want[i]);
}
#define FD "fp64 finite differences"
#define F64 "fp64 forward"

static void check_grad(const char *what, const double *got, const double *want, size_t n, int cols) {
    check(what, FD, got, want, n, cols, TOL_GRAD);
}
static void check_grad_f(const char *what, const float *got, const double *want, size_t n, int cols) {
    double *g = to_double(got, n);
    check_grad(what, g, want, n, cols);
    free(g);
}
static void check_fwd(const char *what, const float *got, const double *want, size_t n, int cols) {
    double *g = to_double(got, n);
    check(what, F64, g, want, n, cols, TOL_FWD);
    free(g);
}

/* ---- finite differences ------------------------------------------------- */

typedef double (*loss_fn)(void *ctx);

/* g[i] = dL/dx[i] by central differences of L, x[i] moved in place. */
static void fd_gradient(loss_fn L, void *ctx, double *x, size_t n, double *g) {
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i], h = 1e-5 * fmax(1.0, fabs(x0));
        double up = x0 + h, down = x0 - h;
        x[i] = up;
        double lu = L(ctx);
        x[i] = down;
        double ld = L(ctx);
        x[i] = x0;
        g[i] = (lu - ld) / (up - down);
    }
}

static double *fd(loss_fn L, void *ctx, double *x, size_t n) {
    double *g = xmalloc(n * sizeof *g);
    fd_gradient(L, ctx, x, n, g);
    return g;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- the float64 forward ops (ops.h's conventions) ---------------------- */

static void layernorm64(double *out, const double *x, const double *w, const double *b, int N, int C,
                        double eps) {
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += xr[i];
        m /= C;
        for (int i = 0; i < C; i++) v += (xr[i] - m) * (xr[i] - m);
        double r = 1 / sqrt(v / C + eps);
        for (int i = 0; i < C; i++) out[(size_t)n * C + i] = (xr[i] - m) * r * w[i] + b[i];
    }
}

/* out [N, OC] = x [N, C] · w [OC, C]ᵀ + b (b may be NULL) */
static void linear64(double *out, const double *x, const double *w, const double *b, int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < C; i++) s += x[(size_t)n * C + i] * w[(size_t)o * C + i];
            out[(size_t)n * OC + o] = s;
        }
}

/* In place, with the fp32 tables (constants of the function). */
static void rotary64(double *qkv, const float *cos_t, const float *sin_t, int pos0, int T, int NH, int hd,
                     int rot) {
    int half = rot / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++)
            for (int part = 0; part < 2; part++) {
                double *x = qkv + ((size_t)t * NH + h) * 3 * hd + part * hd;
                for (int i = 0; i < half; i++) {
                    double c = cos_t[(size_t)(pos0 + t) * half + i], s = sin_t[(size_t)(pos0 + t) * half + i];
                    double x1 = x[i], x2 = x[i + half];
                    x[i] = x1 * c - x2 * s;
                    x[i + half] = x2 * c + x1 * s;
                }
            }
}

/* Causal attention of one sequence; att [NH, T, T] (may be NULL). */
static void attention64(double *out, double *att, const double *qkv, int T, int NH, int hd) {
    int C3 = 3 * NH * hd;
    double scale = 1 / sqrt((double)hd), *p = xmalloc((size_t)T * sizeof *p);
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) {
            const double *q = qkv + (size_t)t * C3 + h * 3 * hd;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= t; j++) {
                const double *k = qkv + (size_t)j * C3 + h * 3 * hd + hd;
                double s = 0;
                for (int i = 0; i < hd; i++) s += q[i] * k[i];
                p[j] = s * scale;
                mx = fmax(mx, p[j]);
            }
            for (int j = 0; j <= t; j++) sum += p[j] = exp(p[j] - mx);
            for (int j = 0; j <= t; j++) p[j] /= sum;
            double *o = out + (size_t)t * NH * hd + h * hd;
            for (int i = 0; i < hd; i++) {
                double s = 0;
                for (int j = 0; j <= t; j++) s += p[j] * qkv[(size_t)j * C3 + h * 3 * hd + 2 * hd + i];
                o[i] = s;
            }
            if (att)
                for (int j = 0; j < T; j++) att[((size_t)h * T + t) * T + j] = j <= t ? p[j] : 0;
        }
    free(p);
}

static double gelu64(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }

/* Σ over rows of -log softmax(row)[target] */
static double crossentropy64(const double *logits, const uint32_t *targets, int N, int V) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        const double *r = logits + (size_t)n * V;
        double mx = -INFINITY, s = 0;
        for (int i = 0; i < V; i++) mx = fmax(mx, r[i]);
        for (int i = 0; i < V; i++) s += exp(r[i] - mx);
        total += log(s) + mx - r[targets[n]];
    }
    return total;
}

/* ---- layernorm ---------------------------------------------------------- */

typedef struct {
    double *x, *w, *b, *dout, *y;
    int N, C;
} ln_ctx;

static double ln_loss(void *arg) {
    ln_ctx *c = arg;
    layernorm64(c->y, c->x, c->w, c->b, c->N, c->C, 1e-5);
    return dot(c->dout, c->y, (size_t)c->N * c->C);
}

/* N > 32 crosses layernorm_backward's row chunks; C = 16 + 5 a vector tail. */
static void test_layernorm(void) {
    enum { N = 37, C = 21 };
    float *x = random_floats(N * C, -2, 3), *w = random_floats(C, 0.5f, 1.5f), *b = random_floats(C, -0.5f, 0.5f);
    float *dout = random_floats(N * C, -1, 1), *y = xmalloc(N * C * sizeof *y), mean[N], rstd[N];
    layernorm_forward(y, mean, rstd, x, w, b, N, C, 1e-5f);
    float *dx0 = random_floats(N * C, -1, 1), *dw0 = random_floats(C, -1, 1), *db0 = random_floats(C, -1, 1);
    float *dx = xmalloc(sizeof(float[N * C])), *dw = xmalloc(sizeof(float[C])), *db = xmalloc(sizeof(float[C]));
    memcpy(dx, dx0, sizeof(float[N * C]));
    memcpy(dw, dw0, sizeof(float[C]));
    memcpy(db, db0, sizeof(float[C]));
    layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, C);

    ln_ctx c = {to_double(x, N * C), to_double(w, C), to_double(b, C), to_double(dout, N * C),
                xmalloc(sizeof(double[N * C])), N, C};
    ln_loss(&c);
    check_fwd("layernorm_forward", y, c.y, N * C, C);
    double *gx = fd(ln_loss, &c, c.x, N * C), *gw = fd(ln_loss, &c, c.w, C), *gb = fd(ln_loss, &c, c.b, C);
    double *ax = added(dx, dx0, N * C), *aw = added(dw, dw0, C), *ab = added(db, db0, C);
    check_grad("layernorm_backward dinp +=", ax, gx, N * C, C);
    check_grad("layernorm_backward dw +=", aw, gw, C, C);
    check_grad("layernorm_backward db +=", ab, gb, C, C);
    free(ax), free(aw), free(ab), free(gx), free(gw), free(gb);
    free(c.x), free(c.w), free(c.b), free(c.dout), free(c.y);
    free(x), free(w), free(b), free(dout), free(y), free(dx0), free(dw0), free(db0), free(dx), free(dw), free(db);
}

/* ---- matmul ------------------------------------------------------------- */

typedef struct {
    double *x, *w, *b, *dout, *y;
    int N, C, OC;
} mm_ctx;

static double mm_loss(void *arg) {
    mm_ctx *c = arg;
    linear64(c->y, c->x, c->w, c->b, c->N, c->C, c->OC);
    return dot(c->dout, c->y, (size_t)c->N * c->OC);
}

/* N <= 16 runs linear_forward's decoding path, N > 16 sgemm; C > 64 splits
 * the backward products' columns over the pool. The backward three ways:
 * fp32 accumulating, fp32 overwriting without dinp, and through a
 * gemm_weight on the GEMM_FP32 path (the bf16 paths' rounding is gemm.c's
 * test). */
static void test_matmul(int N, int C, int OC) {
    size_t NC = (size_t)N * C, WC = (size_t)OC * C, NO = (size_t)N * OC;
    float *x = random_floats(NC, -1, 1), *w = random_floats(WC, -1, 1), *b = random_floats(OC, -1, 1);
    float *dout = random_floats(NO, -1, 1), *y = xmalloc(NO * sizeof *y);
    linear lin;
    linear_init(&lin, w, b, OC, C);
    linear_forward(&lin, y, x, N);
    mm_ctx c = {to_double(x, NC), to_double(w, WC), to_double(b, OC), to_double(dout, NO),
                xmalloc(NO * sizeof(double)), N, C, OC};
    mm_loss(&c);
    char what[96];
    snprintf(what, sizeof what, "linear_forward N=%d", N);
    check_fwd(what, y, c.y, NO, OC);
    double *fx = fd(mm_loss, &c, c.x, NC), *fw = fd(mm_loss, &c, c.w, WC), *fb = fd(mm_loss, &c, c.b, OC);

    static const char *name[] = {"fp32 +=", "fp32 = (no dinp)"};
    float *dw0 = random_floats(WC, -1, 1), *db0 = random_floats(OC, -1, 1);
    float *dx = xmalloc(NC * sizeof *dx), *dw = xmalloc(WC * sizeof *dw), *db = xmalloc(OC * sizeof *db);
    for (int way = 0; way < 2; way++) {
        int accumulate = way != 1;
        for (size_t i = 0; i < NC; i++) dx[i] = GARBAGE;
        for (size_t i = 0; i < WC; i++) dw[i] = accumulate ? dw0[i] : GARBAGE;
        for (int o = 0; o < OC; o++) db[o] = accumulate ? db0[o] : GARBAGE;
        linear_backward(&lin, way == 1 ? NULL : dx, dw, db, dout, x, N, accumulate, NULL);
        double *aw = accumulate ? added(dw, dw0, WC) : to_double(dw, WC);
        double *ab = accumulate ? added(db, db0, OC) : to_double(db, OC);
        if (way != 1) {
            snprintf(what, sizeof what, "linear_backward %s N=%d: dinp", name[way], N);
            check_grad_f(what, dx, fx, NC, C);
        }
        snprintf(what, sizeof what, "linear_backward %s N=%d: dw", name[way], N);
        check_grad(what, aw, fw, WC, C);
        snprintf(what, sizeof what, "linear_backward %s N=%d: dbias", name[way], N);
        check_grad(what, ab, fb, OC, OC);
        free(aw), free(ab);
    }
    free(fx), free(fw), free(fb), free(c.x), free(c.w), free(c.b), free(c.dout), free(c.y);
    free(x), free(w), free(b), free(dout), free(y), free(dw0), free(db0), free(dx), free(dw), free(db);
}

/* ---- rotary ------------------------------------------------------------- */

typedef struct {
    double *qkv, *dout, *y;
    const float *cos, *sin;
    int pos0, T, NH, hd, rot;
} rot_ctx;

static double rot_loss(void *arg) {
    rot_ctx *c = arg;
    size_t n = (size_t)c->T * c->NH * 3 * c->hd;
    memcpy(c->y, c->qkv, n * sizeof *c->y);
    rotary64(c->y, c->cos, c->sin, c->pos0, c->T, c->NH, c->hd, c->rot);
    return dot(c->dout, c->y, n);
}

/* Partial rotary (rot < hd) from position pos0: v and the dimensions past
 * rot pass through. */
static void test_rotary(void) {
    enum { T = 5, NH = 2, hd = 10, rot = 6, pos0 = 3, n = T * NH * 3 * hd };
    float cos_t[(T + pos0) * rot / 2], sin_t[(T + pos0) * rot / 2];
    rotary_tables(cos_t, sin_t, T + pos0, rot, 10000);
    float *qkv = random_floats(n, -1, 1), *dout = random_floats(n, -1, 1), *y = xmalloc(sizeof(float[n]));
    memcpy(y, qkv, sizeof(float[n]));
    rotary_forward(y, cos_t, sin_t, pos0, T, NH, hd, rot);
    rot_ctx c = {to_double(qkv, n), to_double(dout, n), xmalloc(sizeof(double[n])), cos_t, sin_t, pos0, T, NH, hd, rot};
    rot_loss(&c);
    check_fwd("rotary_forward", y, c.y, n, NH * 3 * hd);
    double *f = fd(rot_loss, &c, c.qkv, n);
    float *d = xmalloc(sizeof(float[n]));
    memcpy(d, dout, sizeof(float[n]));
    rotary_backward(d, cos_t, sin_t, pos0, T, NH, hd, rot);
    check_grad_f("rotary_backward dqkv", d, f, n, NH * 3 * hd);
    free(f), free(d), free(c.qkv), free(c.dout), free(c.y), free(qkv), free(dout), free(y);
}

/* ---- attention ---------------------------------------------------------- */

typedef struct {
    double *qkv, *dout, *y;
    int T, NH, hd;
} att_ctx;

static double att_loss(void *arg) {
    att_ctx *c = arg;
    attention64(c->y, NULL, c->qkv, c->T, c->NH, c->hd);
    return dot(c->dout, c->y, (size_t)c->T * c->NH * c->hd);
}

/* Several heads (on the pool), scores large enough that the softmax is far
 * from uniform; T = 17 crosses a vector width in softmax_row. */
static void test_attention(int T, int NH, int hd) {
    size_t C = (size_t)NH * hd, n = (size_t)T * 3 * C, no = (size_t)T * C, na = (size_t)NH * T * T;
    float *qkv = random_floats(n, -1.5f, 1.5f), *dout = random_floats(no, -1, 1);
    float *y = xmalloc(no * sizeof *y), *att = xmalloc(na * sizeof *att);
    attention_forward(y, att, qkv, T, NH, hd);
    att_ctx c = {to_double(qkv, n), to_double(dout, no), xmalloc(no * sizeof(double)), T, NH, hd};
    double *att64 = xmalloc(na * sizeof *att64);
    attention64(c.y, att64, c.qkv, T, NH, hd);
    char what[96];
    snprintf(what, sizeof what, "attention_forward T=%d NH=%d hd=%d: out", T, NH, hd);
    check_fwd(what, y, c.y, no, (int)C);
    snprintf(what, sizeof what, "attention_forward T=%d NH=%d hd=%d: att", T, NH, hd);
    check_fwd(what, att, att64, na, T);
    double *f = fd(att_loss, &c, c.qkv, n);
    float *d = filled(n, GARBAGE), *datt = xmalloc((size_t)parallel_threads() * T * T * sizeof *datt);
    attention_backward(d, datt, dout, qkv, att, T, NH, hd);
    /* q, k and v apart: per head, [q | k | v] of hd each */
    double *got = xmalloc(no * sizeof *got), *want = xmalloc(no * sizeof *want);
    for (int part = 0; part < 3; part++) {
        for (size_t t = 0; t < (size_t)T; t++)
            for (size_t h = 0; h < (size_t)NH; h++)
                for (size_t i = 0; i < (size_t)hd; i++) {
                    size_t src = t * 3 * C + h * 3 * hd + part * hd + i, dst = t * C + h * hd + i;
                    got[dst] = d[src];
                    want[dst] = f[src];
                }
        snprintf(what, sizeof what, "attention_backward T=%d NH=%d hd=%d: d%c", T, NH, hd, "qkv"[part]);
        check_grad(what, got, want, no, (int)C);
    }
    free(got), free(want), free(f), free(d), free(datt), free(att64);
    free(c.qkv), free(c.dout), free(c.y), free(qkv), free(dout), free(y), free(att);
}

/* ---- GELU --------------------------------------------------------------- */

typedef struct {
    double *x, *dout;
    int N;
} gelu_ctx;

static double gelu_loss(void *arg) {
    gelu_ctx *c = arg;
    double s = 0;
    for (int i = 0; i < c->N; i++) s += c->dout[i] * gelu64(c->x[i]);
    return s;
}

static void test_gelu(void) {
    enum { N = 45 };
    float *x = random_floats(N, -5, 5), *dout = random_floats(N, -1, 1), y[N], d[N], alias[N];
    gelu_forward(y, x, N);
    gelu_ctx c = {to_double(x, N), to_double(dout, N), N};
    double y64[N];
    for (int i = 0; i < N; i++) y64[i] = gelu64(c.x[i]);
    check_fwd("gelu_forward", y, y64, N, N);
    double *f = fd(gelu_loss, &c, c.x, N);
    gelu_backward(d, x, dout, N);
    check_grad_f("gelu_backward dinp", d, f, N, N);
    memcpy(alias, dout, sizeof alias);
    gelu_backward(alias, x, alias, N);
    ok(memcmp(alias, d, sizeof d) == 0, "gelu_backward with dinp == dout gives the same bits");
    free(f), free(c.x), free(c.dout), free(x), free(dout);
}

/* ---- embedding ---------------------------------------------------------- */

typedef struct {
    double *wte, *dout;
    const uint32_t *ids;
    int T, C;
} emb_ctx;

static double emb_loss(void *arg) {
    emb_ctx *c = arg;
    double s = 0;
    for (int t = 0; t < c->T; t++)
        for (int i = 0; i < c->C; i++) s += c->dout[(size_t)t * c->C + i] * c->wte[(size_t)c->ids[t] * c->C + i];
    return s;
}

/* Repeated ids add up; rows of unused ids stay as they were. */
static void test_embedding(void) {
    enum { V = 11, C = 19, T = 13 };
    const uint32_t ids[T] = {3, 0, 7, 3, 10, 3, 5, 0, 9, 1, 7, 2, 3};
    float *wte = random_floats(V * C, -1, 1), *dout = random_floats(T * C, -1, 1);
    float *d0 = random_floats(V * C, -1, 1), *d = xmalloc(sizeof(float[V * C]));
    memcpy(d, d0, sizeof(float[V * C]));
    embedding_backward(d, dout, ids, T, C);
    emb_ctx c = {to_double(wte, V * C), to_double(dout, T * C), ids, T, C};
    double *f = fd(emb_loss, &c, c.wte, V * C), *a = added(d, d0, V * C);
    check_grad("embedding_backward dwte +=", a, f, V * C, C);
    free(a), free(f), free(c.wte), free(c.dout), free(wte), free(dout), free(d0), free(d);
}

/* ---- cross-entropy ------------------------------------------------------ */

typedef struct {
    double *logits;
    const uint32_t *targets;
    int N, V;
    double scale;
} ce_ctx;

static double ce_loss(void *arg) {
    ce_ctx *c = arg;
    return c->scale * crossentropy64(c->logits, c->targets, c->N, c->V);
}

/* The gradient of scale * Σ CE; one row shifted by +40 (the max
 * subtraction), V = 37 and 300 (vector tails, several blocks). */
static void test_crossentropy(int N, int V) {
    size_t n = (size_t)N * V;
    float *logits = random_floats(n, -3, 3);
    for (int i = 0; i < V; i++) logits[i] += 40;
    uint32_t *targets = xmalloc((size_t)N * sizeof *targets);
    for (int r = 0; r < N; r++) targets[r] = (uint32_t)rng_below(&rng, (uint64_t)V);
    float scale = 0.37f, *g = xmalloc(n * sizeof *g);
    memcpy(g, logits, n * sizeof *g);
    double loss = crossentropy_forward(logits, targets, N, V);
    double loss_bw = crossentropy_forward_backward(g, targets, N, V, scale);
    ce_ctx c = {to_double(logits, n), targets, N, V, scale};
    double want = crossentropy64(c.logits, targets, N, V);
    char what[96];
    snprintf(what, sizeof what, "crossentropy_forward N=%d V=%d", N, V);
    check(what, F64, &loss, &want, 1, 1, TOL_FWD);
    ok(loss_bw == loss, "crossentropy_forward_backward N=%d V=%d returns crossentropy_forward's loss (%.17g, %.17g)",
       N, V, loss_bw, loss);
    double *f = fd(ce_loss, &c, c.logits, n);
    snprintf(what, sizeof what, "crossentropy_forward_backward N=%d V=%d: dlogits", N, V);
    check_grad_f(what, g, f, n, V);
    free(f), free(c.logits), free(targets), free(logits), free(g);
}

/* ---- model_backward ----------------------------------------------------- */

/* The float64 forward of model.h's layer equations over a pack, from a
 * float64 copy P of the parameter block (same layout as m->params); returns
 * scale * Σ CE over the loss rows. */
typedef struct {
    const neox_model *m;
    const neox_pack *pack;
    double *P, scale;
} model_ctx;

static double model_loss(void *arg) {
    const model_ctx *c = arg;
    const neox_model *m = c->m;
    const neox_config *cfg = &m->cfg;
    const neox_pack *pk = c->pack;
    int T = pk->T, C = cfg->hidden_size, F = cfg->intermediate_size, V = cfg->vocab_size, NH = cfg->num_heads;
    int hd = cfg->head_dim;
    double eps = (float)cfg->layer_norm_eps; /* the fp32 code's eps */
#define P64(view) (c->P + ((view) - m->params))
    double *x = xmalloc((size_t)T * C * sizeof *x), *ln = xmalloc((size_t)T * C * sizeof *ln);
    double *qkv = xmalloc((size_t)T * 3 * C * sizeof *qkv), *atty = xmalloc((size_t)T * C * sizeof *atty);
    double *attn = xmalloc((size_t)T * C * sizeof *attn), *mid = xmalloc((size_t)T * C * sizeof *mid);
    double *h = xmalloc((size_t)T * F * sizeof *h), *mlp = xmalloc((size_t)T * C * sizeof *mlp);
    for (int t = 0; t < T; t++)
        memcpy(x + (size_t)t * C, P64(m->p.wte) + (size_t)pk->ids[t] * C, (size_t)C * sizeof *x);
    for (int l = 0; l < cfg->num_layers; l++) {
        const neox_layer_params *lp = &m->p.layers[l];
        layernorm64(ln, x, P64(lp->ln1_w), P64(lp->ln1_b), T, C, eps);
        linear64(qkv, ln, P64(lp->qkv_w), P64(lp->qkv_b), T, C, 3 * C);
        for (int s = 0; s < pk->nseq; s++) {
            int t0 = pk->seq_start[s], n = pk->seq_start[s + 1] - t0;
            rotary64(qkv + (size_t)t0 * 3 * C, m->rope_cos, m->rope_sin, 0, n, NH, hd, cfg->rotary_ndims);
            attention64(atty + (size_t)t0 * C, NULL, qkv + (size_t)t0 * 3 * C, n, NH, hd);
        }
        linear64(attn, atty, P64(lp->attn_proj_w), P64(lp->attn_proj_b), T, C, C);
        for (size_t i = 0; i < (size_t)T * C; i++) mid[i] = x[i] + attn[i];
        layernorm64(ln, cfg->use_parallel_residual ? x : mid, P64(lp->ln2_w), P64(lp->ln2_b), T, C, eps);
        linear64(h, ln, P64(lp->fc_w), P64(lp->fc_b), T, C, F);
        for (size_t i = 0; i < (size_t)T * F; i++) h[i] = gelu64(h[i]);
        linear64(mlp, h, P64(lp->fc_proj_w), P64(lp->fc_proj_b), T, F, C);
        for (size_t i = 0; i < (size_t)T * C; i++) x[i] = mid[i] + mlp[i];
    }
    layernorm64(ln, x, P64(m->p.lnf_w), P64(m->p.lnf_b), T, C, eps);
    double *rows = xmalloc((size_t)pk->nrows * C * sizeof *rows), *logits = xmalloc((size_t)pk->nrows * V * sizeof *logits);
    for (int r = 0; r < pk->nrows; r++) memcpy(rows + (size_t)r * C, ln + (size_t)pk->row_pos[r] * C, (size_t)C * sizeof *rows);
    linear64(logits, rows, P64(m->p.lm_head), NULL, pk->nrows, C, V);
#undef P64
    double loss = c->scale * crossentropy64(logits, pk->row_target, pk->nrows, V);
    free(x), free(ln), free(qkv), free(atty), free(attn), free(mid), free(h), free(mlp), free(rows), free(logits);
    return loss;
}

/* A tiny model with every parameter random (layer norm weights near 1),
 * large enough that attention and GELU are far from linear. A pack of
 * sequences (lengths len[], one of them maybe 1) with loss rows in each;
 * model_backward's gradients (overwriting a block of garbage) against
 * finite differences at SAMPLES entries of every tensor (rows of wte:
 * those of the pack's ids). */
static void test_model(int parallel, int tied, const int *len, int nseq) {
    enum { SAMPLES = 24 };
    char json[512], err[256];
    snprintf(json, sizeof json,
             "{\"vocab_size\":23,\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
             "\"intermediate_size\":40,\"rotary_pct\":0.5,\"max_position_embeddings\":16,"
             "\"use_parallel_residual\":%s,\"tie_word_embeddings\":%s}",
             parallel ? "true" : "false", tied ? "true" : "false");
    neox_config cfg;
    if (!config_parse(json, &cfg, err, sizeof err)) { printf("Bail out! %s\n", err); exit(1); }
    neox_model m;
    model_build(&m, &cfg);
    for (size_t i = 0; i < m.num_params; i++) m.params[i] = uniform(-0.4f, 0.4f);
    for (int l = 0; l < cfg.num_layers; l++)
        for (int i = 0; i < cfg.hidden_size; i++) {
            m.p.layers[l].ln1_w[i] += 1;
            m.p.layers[l].ln2_w[i] += 1;
        }
    for (int i = 0; i < cfg.hidden_size; i++) m.p.lnf_w[i] += 1;

    int seq_start[8], T = 0, row_pos[64], R = 0;
    uint32_t ids[64], targets[64];
    seq_start[0] = 0;
    for (int s = 0; s < nseq; s++) {
        for (int j = 0; j < len[s]; j++) {
            ids[T + j] = (uint32_t)rng_below(&rng, (uint64_t)cfg.vocab_size);
            if (j == 0 || rng_below(&rng, 4)) { /* most positions, first always, as the trainer's --loss all */
                row_pos[R] = T + j;
                targets[R++] = (uint32_t)rng_below(&rng, (uint64_t)cfg.vocab_size);
            }
        }
        T += len[s];
        seq_start[s + 1] = T;
    }
    neox_pack pack = {T, nseq, seq_start, ids, R, row_pos, targets};
    float scale = 1.0f / R;

    train_acts a;
    memset(&a, 0, sizeof a);
    device_pack_buf buf = {0};
    const device_pack *dp = device_pack_upload(&buf, m.dev, &pack);
    model_forward_pack(&m, &a.f, dp);
    double loss = scale * crossentropy_forward_backward(a.f.logits, targets, R, cfg.vocab_size, scale);
    float *block = filled(m.num_params, GARBAGE);
    neox_params grads;
    model_param_views(&m, block, &grads);
    model_backward(&m, &grads, &a, dp, 0, NULL);

    model_ctx c = {&m, &pack, to_double(m.params, m.num_params), scale};
    double want = model_loss(&c);
    char what[160];
    snprintf(what, sizeof what, "model_forward_pack %s residual, %s, %d sequences: loss",
             parallel ? "parallel" : "sequential", tied ? "tied" : "untied", nseq);
    check(what, F64, &loss, &want, 1, 1, TOL_FWD);

    /* worst tensor over the samples */
    double worst = 0;
    const char *worst_name = "";
    size_t checked = 0;
    for (int k = 0; k < m.num_tensors; k++) {
        const neox_tensor *t = &m.tensors[k];
        double got[SAMPLES], fdg[SAMPLES];
        size_t idx[SAMPLES], ns = t->numel < SAMPLES ? t->numel : SAMPLES;
        for (size_t j = 0; j < ns; j++) {
            size_t i = ns == t->numel ? j : rng_below(&rng, t->numel);
            if (strcmp(t->name, "gpt_neox.embed_in.weight") == 0)
                i = (size_t)ids[rng_below(&rng, (uint64_t)T)] * cfg.hidden_size + i % cfg.hidden_size;
            idx[j] = i;
            fd_gradient(model_loss, &c, c.P + t->offset + i, 1, &fdg[j]);
            got[j] = block[t->offset + i];
        }
        size_t where;
        double e = rel_err(got, fdg, ns, &where);
        checked += ns;
        if (!(e <= TOL_MODEL))
            fprintf(stderr, "#   %s: max rel err %.2e at element %zu: got %.9g, want %.9g\n", t->name, e,
                    idx[where], got[where], fdg[where]);
        if (!(e <= worst)) {
            worst = e;
            worst_name = t->name;
        }
    }
    ok(worst <= TOL_MODEL, "model_backward %s residual, %s, %d sequences: %zu entries of %d tensors vs " FD
       ", max rel err %.2e (tol %.0e, worst %s)", parallel ? "parallel" : "sequential", tied ? "tied" : "untied",
       nseq, checked, m.num_tensors, worst, TOL_MODEL, worst_name);
    free(c.P);
    free(block);
    model_free_views(&grads);
    train_acts_free(&a);
    model_free(&m);
}

int main(void) {
    rng_seed(&rng, 20251207);
    test_layernorm();
    test_matmul(9, 67, 21);
    test_matmul(20, 67, 21);
    test_rotary();
    test_attention(7, 3, 5);
    test_attention(17, 2, 8);
    test_gelu();
    test_embedding();
    test_crossentropy(6, 37);
    test_crossentropy(2, 300);
    test_model(1, 0, (const int[]){5, 4}, 2);
    test_model(0, 1, (const int[]){3, 1, 6}, 3);
    return done_testing();
}
