/* vecmath: the vectorized exp and erf against double precision, and GELU
 * forward/backward (which use them) against the exact formula. */
#include <math.h>
#include <stdlib.h>

#include "nn/backward.h"
#include "nn/ops.h"
#include "tap.h"
#include "kernels/vecmath.h"

/* Ulps between a and the correctly rounded fp32 of the exact value e. */
static double ulps(float a, double e) {
    float r = (float)e;
    double ulp = nextafterf(fabsf(r), INFINITY) - fabsf(r);
    return fabs(a - e) / ulp;
}

int main(void) {
#if !VECMATH_WIDTH
    skip_all("no AVX-512: callers use libm");
#else
    enum { N = 2000000 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++) x[i] = -10.0f + 20.0f * (float)i / N;

    double worst_exp = 0, worst_erf = 0;
    for (int i = 0; i < N; i += 16) {
        _mm512_storeu_ps(y + i, vec_exp(_mm512_loadu_ps(x + i)));
        for (int j = i; j < i + 16; j++) {
            double u = ulps(y[j], exp((double)x[j]));
            if (u > worst_exp) worst_exp = u;
        }
        _mm512_storeu_ps(y + i, vec_erf(_mm512_loadu_ps(x + i)));
        for (int j = i; j < i + 16; j++) {
            double e = fabs(y[j] - erf((double)x[j]));
            if (e > worst_erf) worst_erf = e;
        }
    }
    ok(worst_exp <= 2, "vec_exp within 2 ulp on [-10, 10] (worst %.2f)", worst_exp);
    ok(worst_erf < 4e-7, "vec_erf absolute error below 4e-7 on [-10, 10] (worst %.3g)", worst_erf);

    float tiny[16] = {1e-30f, -1e-30f, 0.0f, -0.0f, 1e-7f, -1e-7f, 0.49999f, 0.25f, 1e-3f, -1e-3f};
    _mm512_storeu_ps(y, vec_erf(_mm512_loadu_ps(tiny)));
    double worst_rel = 0;
    for (int j = 0; j < 10; j++)
        if (tiny[j] != 0) worst_rel = fmax(worst_rel, fabs(y[j] / erf((double)tiny[j]) - 1));
    ok(worst_rel < 3e-7, "vec_erf relative error below 0.5 under 3e-7 (worst %.3g)", worst_rel);
    ok(y[2] == 0 && y[3] == 0, "vec_erf(±0) = 0");
    float big[16] = {-100, -88.5f, -87.5f, 88.5f, 100, INFINITY, -INFINITY, NAN};
    _mm512_storeu_ps(y, vec_exp(_mm512_loadu_ps(big)));
    ok(y[0] >= 0 && y[0] < 1e-37f && y[3] > 2e38f && isinf(y[4]) && y[6] >= 0 && y[6] < 1e-37f && isnan(y[7]),
       "vec_exp saturates and keeps NaN: e^-100 = %g, e^88.5 = %g, e^100 = %g", y[0], y[3], y[4]);

    /* GELU on [-6, 6] over an odd length, so the masked tail runs too. */
    const int n = 100001;
    float *v = malloc(n * sizeof *v), *g = malloc(n * sizeof *g), *dg = malloc(n * sizeof *dg);
    float *ones = malloc(n * sizeof *ones);
    for (int i = 0; i < n; i++) v[i] = -6.0f + 12.0f * (float)i / (n - 1), ones[i] = 1.0f;
    gelu_forward(g, v, n);
    gelu_backward(dg, v, ones, n);
    double worst_g = 0, worst_dg = 0;
    for (int i = 0; i < n; i++) {
        double cdf = 0.5 * (1 + erf(v[i] / sqrt(2))), pdf = exp(-0.5 * v[i] * v[i]) / sqrt(2 * M_PI);
        worst_g = fmax(worst_g, fabs(g[i] - v[i] * cdf) / fmax(1e-3, fabs(v[i])));
        worst_dg = fmax(worst_dg, fabs(dg[i] - (cdf + v[i] * pdf)));
    }
    ok(worst_g < 3e-7, "gelu_forward within 3e-7 of x * Phi(x), relative to |x| (worst %.3g)", worst_g);
    ok(worst_dg < 4e-7, "gelu_backward within 4e-7 of Phi(x) + x phi(x) (worst %.3g)", worst_dg);
    free(v), free(g), free(dg), free(ones);
    free(x), free(y);
    return done_testing();
#endif
}
