/* svgplot.h — a line chart as inline SVG (for the HTML report's loss plot). */
#ifndef TUNEPIPE_SVGPLOT_H
#define TUNEPIPE_SVGPLOT_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *name, *color; /* legend text, CSS colour */
    const double *x, *y;
    size_t n;
    int dots;                 /* mark each point, for sparse series */
} plot_series;

/* Writes an <svg> element width x height pixels: axes with round-number
 * ticks spanning all finite points, grid lines, one polyline per series and
 * a legend. Points that are not finite or beyond +-1e150 are skipped. */
void svg_line_plot(FILE *f, const plot_series *series, size_t nseries, const char *xlabel, const char *ylabel,
                   int width, int height);

#endif
