/* losslog.c — reading neox-train's log.jsonl; see losslog.h. */
#include "losslog.h"

#include "base/cli.h"
#include "base/io.h"

#include <cJSON.h>
#include <stdlib.h>
#include <unistd.h>

static void append(double **xs, double **ys, size_t *n, double x, double y) {
    if ((*n & (*n - 1)) == 0) { /* capacity doubles at powers of two */
        size_t cap = *n ? 2 * *n : 1;
        *xs = xrealloc(*xs, cap * sizeof **xs);
        *ys = xrealloc(*ys, cap * sizeof **ys);
    }
    (*xs)[*n] = x;
    (*ys)[*n] = y;
    (*n)++;
}

/* 1 when o has key as a number (stored in *v), 0 when absent or null, -1
 * (the reason in err) when it is something else. */
static int number_field(const cJSON *o, const char *key, double *v, const char *path, unsigned long long line,
                        char *err, int errlen) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsNumber(f)) {
        fail_message(err, errlen, "%s: line %llu: \"%s\" is not a number", path, line, key);
        return -1;
    }
    *v = f->valuedouble;
    return 1;
}

/* One line's points into log; 1, or 0 with the reason in err. */
static int read_line(loss_log *log, const cJSON *o, const char *path, unsigned long long n, char *err, int errlen) {
    if (!cJSON_IsObject(o)) return fail_message(err, errlen, "%s: line %llu: not a JSON object", path, n);
    double step, loss;
    int got = number_field(o, "step", &step, path, n, err, errlen);
    if (got <= 0) return got < 0 ? 0 : fail_message(err, errlen, "%s: line %llu: no \"step\"", path, n);
    if ((got = number_field(o, "loss", &loss, path, n, err, errlen)) < 0) return 0;
    if (got) append(&log->train_step, &log->train_loss, &log->ntrain, step, loss);
    if ((got = number_field(o, "eval_loss", &loss, path, n, err, errlen)) < 0) return 0;
    if (got) append(&log->eval_step, &log->eval_loss, &log->neval, step, loss);
    return 1;
}

loss_log *loss_log_read(const char *path, char *err, int errlen) {
    loss_log *log = xcalloc(1, sizeof *log);
    int fd = open_input(path);
    line_reader *lr = line_reader_open(fd, path);
    size_t len;
    char *line;
    while (log && (line = line_reader_next(lr, &len))) {
        unsigned long long n = (unsigned long long)line_reader_lineno(lr);
        if (len == 0) continue;
        cJSON *o = cJSON_ParseWithLength(line, len);
        if (!read_line(log, o, path, n, err, errlen)) {
            loss_log_free(log);
            log = NULL;
        }
        cJSON_Delete(o);
    }
    line_reader_close(lr);
    if (fd != STDIN_FILENO) close(fd);
    return log;
}

void loss_log_free(loss_log *log) {
    if (!log) return;
    free(log->train_step);
    free(log->train_loss);
    free(log->eval_step);
    free(log->eval_loss);
    free(log);
}
