/* train_state.h — what defines a neox-train run and where it stands, as
 * the JSON text its training_state.safetensors carries (checkpoint.h's
 * state_save), so that --resume continues with the same settings. */
#ifndef TUNEPIPE_TRAIN_STATE_H
#define TUNEPIPE_TRAIN_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "stream/dataset.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

/* Everything that defines a run; saved in the state, restored by --resume. */
typedef struct {
    long steps;
    double epochs;          /* > 0 when --epochs set the steps */
    long batch, grad_accum, warmup, eval_every, save_every;
    double lr, weight_decay, clip;
    lr_schedule schedule;
    loss_mode loss;
    uint64_t seed;
    int shuffle, keep_best, bf16;
    int ranks;              /* data-parallel processes, each taking batch x grad_accum */
    st_dtype save_dtype;
    char *eval_path;        /* NULL: no eval */
} run_settings;

/* Where the run stands; saved with the settings. */
typedef struct {
    long step;
    double elapsed;         /* training seconds, across resumes */
    long best_step;         /* -1: no eval yet */
    double best_eval;
    off_t log_bytes;        /* of log.jsonl, up to this step */
    uint64_t data_fingerprint;
    size_t data_examples;
} run_progress;

/* The state's JSON text (malloc'd). */
char *train_state_json(const run_settings *s, const run_progress *p);
/* Reads it back; returns 0 with the reason, naming path (the state file),
 * in err when it is of another version or lacks a field. s->eval_path is
 * malloc'd. */
int train_state_parse(const char *json, const char *path, run_settings *s, run_progress *p, char *err, int errlen);

#endif
