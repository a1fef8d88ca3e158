/* report.h — eval-compare's outputs: an aligned text table, JSON, and a
 * self-contained HTML page (metric table, loss plot, side-by-side answers). */
#ifndef TUNEPIPE_REPORT_H
#define TUNEPIPE_REPORT_H

#include <stdio.h>

#include "evalset.h"
#include "losslog.h"

/* One row per metric, one column per input; undefined values print "-". */
void report_table(FILE *f, const evalset *s);
/* One JSON object: the compared records, the reference answers, and each
 * input's metrics (rates as fractions, undefined values null). */
void report_json(FILE *f, const evalset *s);
/* The HTML page: the title and the notes under it (a paragraph each), the
 * table (best value per row in bold), an SVG plot of log's training and
 * eval loss (log may be NULL), and the question, reference and every
 * input's answer for the first `examples` compared records. Uses no
 * external resources. */
void report_html(FILE *f, const evalset *s, const char *title, const char *const *notes, size_t nnotes,
                 size_t examples, const loss_log *log);

#endif
