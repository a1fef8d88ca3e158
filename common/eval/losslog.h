/* losslog.h — the training and eval loss curves of a neox-train log.jsonl
 * (one JSON object per line: "step", and "loss" and/or "eval_loss"; other
 * fields such as "lr" are ignored). */
#ifndef TUNEPIPE_LOSSLOG_H
#define TUNEPIPE_LOSSLOG_H

#include <stddef.h>

typedef struct {
    double *train_step, *train_loss; /* ntrain points */
    size_t ntrain;
    double *eval_step, *eval_loss;   /* neval points */
    size_t neval;
} loss_log;

/* Reads path; NULL with "PATH: line N: ..." in err (ERR_MAX bytes hold
 * any) on a line that is not a JSON object with a numeric "step" or whose
 * losses are not numbers. */
loss_log *loss_log_read(const char *path, char *err, int errlen);
void loss_log_free(loss_log *log);

#endif
