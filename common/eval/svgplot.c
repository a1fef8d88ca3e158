/* svgplot.c — see svgplot.h. */
#include "svgplot.h"

#include "html.h"

#include <math.h>

#define MARGIN_LEFT 64
#define MARGIN_RIGHT 16
#define MARGIN_TOP 16
#define MARGIN_BOTTOM 48
#define TARGET_TICKS 6
/* Points beyond this magnitude are skipped like non-finite ones: no loss
 * or step is that large, and their differences would overflow. */
#define PLOT_LIMIT 1e150

static int plottable(double x, double y) { return fabs(x) <= PLOT_LIMIT && fabs(y) <= PLOT_LIMIT; }

/* A round tick spacing (1, 2 or 5 times a power of ten) giving about
 * TARGET_TICKS ticks over range. */
static double tick_step(double range) {
    double raw = range / TARGET_TICKS, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

typedef struct {
    double lo, hi, step;
} axis;

static axis make_axis(double lo, double hi) {
    /* One value, or values too close together to space ticks between at
     * their magnitude (a few ulps apart, or subnormal): centre them in a
     * range around them (a unit range for ordinary values). */
    double mag = fmax(fabs(lo), fabs(hi));
    if (!(hi - lo > mag * 1e-9 + 1e-100)) {
        double mid = lo / 2 + hi / 2, half = fmax(0.5, fabs(mid) * 1e-3);
        lo = mid - half;
        hi = mid + half;
    }
    axis a;
    a.step = tick_step(hi - lo);
    a.lo = floor(lo / a.step) * a.step;
    a.hi = ceil(hi / a.step) * a.step;
    return a;
}

static int tick_decimals(double step) {
    int d = (int)-floor(log10(step) + 1e-9);
    return d > 0 ? d : 0;
}

void svg_line_plot(FILE *f, const plot_series *series, size_t nseries, const char *xlabel, const char *ylabel,
                   int width, int height) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t s = 0; s < nseries; s++)
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!plottable(x, y)) continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
        }
    int empty = !(xlo <= xhi);
    if (empty) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
    axis ax = make_axis(xlo, xhi), ay = make_axis(ylo, yhi);
    double pw = width - MARGIN_LEFT - MARGIN_RIGHT, ph = height - MARGIN_TOP - MARGIN_BOTTOM;
#define PX(x) (MARGIN_LEFT + ((x) - ax.lo) / (ax.hi - ax.lo) * pw)
#define PY(y) (MARGIN_TOP + (ay.hi - (y)) / (ay.hi - ay.lo) * ph)

    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\" role=\"img\">\n", width, height, width, height);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" stroke=\"#999\"/>\n",
            MARGIN_LEFT, MARGIN_TOP, pw, ph);
    int dx = tick_decimals(ax.step), dy = tick_decimals(ay.step);
    for (long i = 0, nt = lround((ax.hi - ax.lo) / ax.step); i <= nt; i++) {
        double x = ax.lo + (double)i * ax.step, px = PX(x);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", px, MARGIN_TOP, px,
                MARGIN_TOP + ph);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.*f</text>\n", px, MARGIN_TOP + ph + 16, dx, x);
    }
    for (long i = 0, nt = lround((ay.hi - ay.lo) / ay.step); i <= nt; i++) {
        double y = ay.lo + (double)i * ay.step, py = PY(y);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", MARGIN_LEFT, py,
                MARGIN_LEFT + pw, py);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n", MARGIN_LEFT - 6, py + 4, dy, y);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", MARGIN_LEFT + pw / 2, height - 8);
    html_escape(f, xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">",
            MARGIN_TOP + ph / 2);
    html_escape(f, ylabel);
    fputs("</text>\n", f);
    if (empty)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#666\">no data</text>\n",
                MARGIN_LEFT + pw / 2, MARGIN_TOP + ph / 2);

    for (size_t s = 0; s < nseries; s++) {
        const plot_series *ps = &series[s];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", ps->color);
        for (size_t i = 0; i < ps->n; i++)
            if (plottable(ps->x[i], ps->y[i])) fprintf(f, "%.1f,%.1f ", PX(ps->x[i]), PY(ps->y[i]));
        fputs("\"/>\n", f);
        if (ps->dots || ps->n == 1)
            for (size_t i = 0; i < ps->n; i++)
                if (plottable(ps->x[i], ps->y[i]))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", PX(ps->x[i]), PY(ps->y[i]),
                            ps->color);
        /* legend, top right of the plot area */
        double ly = MARGIN_TOP + 16 + 18 * (double)s, lx = MARGIN_LEFT + pw - 150;
        fprintf(f, "\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>", lx,
                ly - 4, lx + 24, ly - 4, ps->color);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", lx + 30, ly);
        html_escape(f, ps->name);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
#undef PX
#undef PY
}
