/* train_run.h — a whole neox-train run: the model from a checkpoint,
 * random weights or OUT's saved state; the training and eval data, all
 * read and checked before OUT is touched; the step loop with its log.jsonl
 * line per step, evals, checkpoints and --keep-best; and a clean stop at a
 * step boundary on SIGINT or SIGTERM. The math is in trainer.h. Under an
 * MPI launcher every rank runs it on its share of each step (dist.h);
 * rank 0 alone reads the streams and writes OUT. */
#ifndef TUNEPIPE_TRAIN_RUN_H
#define TUNEPIPE_TRAIN_RUN_H

#include "train_state.h"

typedef struct {
    const char *model_dir;      /* a fresh run starts from this checkpoint, */
    const char *init_config;    /* or from random weights for this config.json */
    const char *out_dir;
    int resume;                 /* continue the run saved in out_dir instead */
    int overwrite;              /* start afresh even where out_dir holds a run */
    const char *tokenizer;      /* copied into out_dir; NULL: model_dir's or the shipped one */
    const char *template;       /* recorded in out_dir; NULL: model_dir's, if any */
    const char *input;          /* the training stream; "-": standard input */
    int quiet;                  /* no closing message */
    int verbose;                /* say which kernels compute */
    const char *device;         /* device_open's name; NULL: the CPU */
    /* Which of s were given: a fresh run keeps model_dir's dtype unless
     * given_save_dtype; a resumed run takes only the given steps (or
     * epochs), eval, eval_every and save_every from s. */
    int given_save_dtype, given_steps, given_eval_every, given_save_every;
    run_settings s;
} train_options;

/* Runs it; returns the exit status: 0, or 128 + the signal that stopped it
 * (its checkpoint written); or -1 with the one-line reason in err (ERR_MAX
 * bytes hold any) on bad input or a failed write. */
int train_run(const train_options *o, char *err, int errlen);

#endif
