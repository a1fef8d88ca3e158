/* curve_plot — the plot of `make bf16-curve` (scripts/bf16-curve.sh): two
 * neox-train log.jsonl files of the same run, fp32 and bf16, as one SVG on
 * standard output: both training-loss curves, and below them the per-step
 * |loss_bf16 - loss_fp32|.
 *
 *   build/bench/curve_plot FP32/log.jsonl BF16/log.jsonl >loss.svg */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/cli.h"
#include "eval/losslog.h"
#include "eval/svgplot.h"

#define WIDTH 900
#define HEIGHT 380

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: curve_plot FP32/log.jsonl BF16/log.jsonl >loss.svg\n");
        return 2;
    }
    char err[ERR_MAX];
    loss_log *a = loss_log_read(argv[1], err, sizeof err), *b = a ? loss_log_read(argv[2], err, sizeof err) : NULL;
    if (!b) {
        fprintf(stderr, "curve_plot: %s\n", err);
        return 1;
    }
    size_t n = a->ntrain < b->ntrain ? a->ntrain : b->ntrain;
    double *dx = malloc((n ? n : 1) * sizeof *dx), *dy = malloc((n ? n : 1) * sizeof *dy);
    if (!dx || !dy) {
        fprintf(stderr, "curve_plot: out of memory\n");
        return 1;
    }
    /* Steps are matched by number: both logs come from the same recipe. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (a->train_step[i] == b->train_step[i])
            dx[m] = a->train_step[i], dy[m] = fabs(b->train_loss[i] - a->train_loss[i]), m++;

    plot_series curves[] = {
        {"fp32", "#1f77b4", a->train_step, a->train_loss, a->ntrain, 0},
        {"bf16", "#ff7f0e", b->train_step, b->train_loss, b->ntrain, 0},
    };
    plot_series gap[] = {{"|loss bf16 - loss fp32|", "#d62728", dx, dy, m, 1}};
    printf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", WIDTH,
           2 * HEIGHT, WIDTH, 2 * HEIGHT);
    printf("<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n<g>\n", WIDTH, 2 * HEIGHT);
    svg_line_plot(stdout, curves, 2, "optimizer step", "training loss (nats per token)", WIDTH, HEIGHT);
    printf("</g>\n<g transform=\"translate(0 %d)\">\n", HEIGHT);
    svg_line_plot(stdout, gap, 1, "optimizer step", "|difference| (nats)", WIDTH, HEIGHT);
    printf("</g>\n</svg>\n");
    free(dx), free(dy);
    loss_log_free(a), loss_log_free(b);
    return ferror(stdout) || fflush(stdout) ? 1 : 0;
}
