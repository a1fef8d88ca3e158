/* train_run.c — see train_run.h. */
#include "train_run.h"

#include "nn/checkpoint.h"
#include "base/cli.h"
#include "nn/config.h"
#include "stream/dataset.h"
#include "kernels/gemm.h"
#include "kernels/blas.h"
#include "base/io.h"
#include "nn/model.h"
#include "nn/model_io.h"
#include "dist.h"
#include "train_outdir.h"
#include "nn/trainer.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- stopping on a signal ------------------------------------------------------ */

/* The first SIGINT or SIGTERM: the run stops at the next step boundary.
 * Later ones change nothing, so a second ^C cannot cut the checkpoint
 * being written (the writes are atomic anyway). */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (!stop_signal) stop_signal = sig;
}

/* A signal ignored at start stays ignored: a shell starts a background job
 * with SIGINT ignored, and the job's owner did not mean ^C for it. */
static void catch_stop_signals(void) {
    const int sigs[] = {SIGINT, SIGTERM};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old, sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sigs[i], &sa, NULL);
    }
}

/* ---- the run --------------------------------------------------------------- */

typedef struct {
    const train_options *o;
    run_settings s;
    run_progress p;
    neox_model model;
    trainer t;
    dataset train, eval;
    int has_eval;
    example_order order;
    int log_fd;
    char *config_json;
    char *state_eval_path;  /* the resumed state's --eval, which s.eval_path may be */
    long saved_step;        /* step of OUT's resumable checkpoint; -1: none */
    /* Where the run's wall time goes, for -v: from the start, and the
     * seconds spent in steps, evaluation and checkpoint writes. */
    double started, steps_s, eval_s, save_s;
    char *err;              /* train_run's caller's buffer, for what stops the run */
    int errlen;
} run;

/* The reason the run stops into r->err; returns 0. */
static int run_fail(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_fail(run *r, const char *fmt, ...) {
    char msg[ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail_message(r->err, r->errlen, "%s", msg);
}

static int open_log(run *r, int resume) {
    char *path = path_join(r->o->out_dir, "log.jsonl");
    int ok = 1;
    r->log_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0644);
    if (r->log_fd < 0) ok = run_fail(r, "%s: %s", path, strerror(errno));
    /* Lines logged after the checkpoint belong to steps that will run again. */
    else if (resume && ftruncate(r->log_fd, r->p.log_bytes) != 0) ok = run_fail(r, "%s: %s", path, strerror(errno));
    else if (lseek(r->log_fd, 0, SEEK_END) < 0) ok = run_fail(r, "%s: %s", path, strerror(errno));
    free(path);
    return ok;
}

static int log_step(run *r, const step_result *res, double lr, double seconds, const double comm[2],
                    double eval_loss) {
    char line[512];
    int n = snprintf(line, sizeof line,
                     "{\"step\":%ld,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%zu,"
                     "\"tokens_per_s\":%.2f,\"elapsed\":%.3f,\"kernel\":\"%s\",\"blas\":\"%s\"",
                     r->p.step, res->loss, lr, res->grad_norm, res->tokens,
                     seconds > 0 ? (double)res->tokens / seconds : 0.0, r->p.elapsed,
                     trainer_kernel_name(&r->t), blas_core_name());
    if (!isnan(eval_loss)) n += snprintf(line + n, sizeof line - (size_t)n, ",\"eval_loss\":%.9g", eval_loss);
    if (dist_size() > 1)
        n += snprintf(line + n, sizeof line - (size_t)n, ",\"ranks\":%d,\"wait_s\":%.3f,\"comm_s\":%.3f",
                      dist_size(), comm[0], comm[1]);
    n += snprintf(line + n, sizeof line - (size_t)n, "}\n");
    const char *q = line;
    for (size_t left = (size_t)n; left > 0;) {
        ssize_t w = write(r->log_fd, q, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return run_fail(r, "%s/log.jsonl: write error: %s", r->o->out_dir, strerror(errno));
        q += w;
        left -= (size_t)w;
    }
    r->p.log_bytes += n;
    return 1;
}

/* Each rank takes its slice of the eval examples; the sums are added. */
static double eval_loss(run *r) {
    size_t begin = r->eval.n * (size_t)dist_rank() / (size_t)dist_size();
    size_t end = r->eval.n * (size_t)(dist_rank() + 1) / (size_t)dist_size();
    size_t *part = xmalloc((end - begin + 1) * sizeof *part), targets;
    for (size_t i = begin; i < end; i++) part[i - begin] = i;
    double sums[2];
    sums[0] = trainer_loss(&r->t, &r->eval, part, end - begin, &targets, NULL);
    sums[1] = (double)targets;
    free(part);
    dist_sum(sums, 2);
    return sums[0] / sums[1];
}

/* config.json, the model, then (when resumable) the state: after a crash
 * between any two renames, each file is whole and the state is
 * self-contained. */
static int write_checkpoint(run *r, int resumable) {
    const char *out = r->o->out_dir;
    if (fsync(r->log_fd) != 0) return run_fail(r, "%s/log.jsonl: %s", out, strerror(errno));
    char *path = path_join(out, "config.json");
    char *cfg = config_with_dtype(r->config_json, r->s.save_dtype, r->err, r->errlen);
    int ok = cfg && atomic_write_file(path, cfg, strlen(cfg), r->err, r->errlen);
    free(cfg);
    free(path);
    if (!ok) return 0;
    path = path_join(out, "model.safetensors");
    ok = model_save(path, &r->model, r->s.save_dtype, r->err, r->errlen);
    free(path);
    /* Without training there is nothing to resume: -m OUT starts from
     * this checkpoint just as well. */
    if (!ok || !resumable) return ok;
    path = path_join(out, TRAIN_STATE_FILE);
    char *json = train_state_json(&r->s, &r->p);
    ok = state_save(path, &r->model, r->t.adam_m, r->t.adam_v, json, r->err, r->errlen);
    free(json);
    free(path);
    if (ok) r->saved_step = r->p.step;
    return ok;
}

/* write_checkpoint, timed for -v. */
static int save_checkpoint(run *r, int resumable) {
    if (dist_rank() > 0) return 1; /* rank 0 writes OUT */
    double t0 = now_seconds();
    int ok = write_checkpoint(r, resumable);
    r->save_s += now_seconds() - t0;
    return ok;
}

static void format_eta(char *buf, size_t n, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
}

static int train_loop(run *r) {
    const run_settings *s = &r->s;
    /* A step's examples are split among the ranks in order: rank k takes
     * the k-th run of per_rank of them. */
    long per_rank = s->batch * s->grad_accum, per_step = per_rank * dist_size();
    size_t *ex = xmalloc((size_t)per_rank * sizeof *ex);
    double tokens_done = 0;
    long steps_done = 0;
    int ok = 1;
    /* The ranks stop at the same step, whichever got the signal. */
    while (ok && r->p.step < s->steps && !dist_any(stop_signal)) {
        long step = r->p.step;
        step_share share = {dist_reduce, 0};
        for (long j = 0; j < per_step; j++) {
            size_t e = order_at(&r->order, (uint64_t)step * per_step + j);
            share.targets += example_num_targets(&r->train.ex[e]);
            if (j / per_rank == dist_rank()) ex[j % per_rank] = e;
        }
        double lr = lr_at_step(s->schedule, s->lr, step, s->warmup, s->steps);
        double t0 = now_seconds(), comm0[2], comm[2];
        dist_reduce_seconds(&comm0[0], &comm0[1]);
        step_result res = trainer_step_share(&r->t, &r->train, ex, (int)per_rank, lr,
                                             dist_size() > 1 ? &share : NULL);
        double dt = now_seconds() - t0;
        dist_reduce_seconds(&comm[0], &comm[1]);
        comm[0] -= comm0[0];
        comm[1] -= comm0[1];
        r->p.step++;
        r->p.elapsed += dt;
        r->steps_s += dt;
        tokens_done += (double)res.tokens;
        int last = r->p.step == s->steps;
        double ev = NAN;
        if (r->has_eval && (last || (s->eval_every && r->p.step % s->eval_every == 0))) {
            double te = now_seconds();
            ev = eval_loss(r);
            r->eval_s += now_seconds() - te;
            if (s->keep_best && (r->p.best_step < 0 || ev < r->p.best_eval)) {
                r->p.best_step = r->p.step;
                r->p.best_eval = ev;
                char *path = path_join(r->o->out_dir, TRAIN_BEST_FILE);
                double ts = now_seconds();
                if (dist_rank() == 0) ok = model_save(path, &r->model, s->save_dtype, r->err, r->errlen);
                r->save_s += now_seconds() - ts;
                free(path);
                if (!ok) break;
            }
        }
        if (dist_rank() == 0 && !(ok = log_step(r, &res, lr, dt, comm, ev))) break;
        if (last || (s->save_every && r->p.step % s->save_every == 0))
            if (!(ok = save_checkpoint(r, 1))) break;
        steps_done++;
        char eta[32];
        format_eta(eta, sizeof eta, (double)(s->steps - r->p.step) * r->steps_s / steps_done);
        progress("step %ld/%ld  loss %.4f  lr %.3g  %.1f tok/s  ETA %s", r->p.step, s->steps, res.loss,
                 lr, tokens_done / r->steps_s, eta);
    }
    free(ex);
    return ok;
}

/* Rank 0 reads it (standard input reaches rank 0 alone) and sends it on;
 * a rank 0 that fails ends the job (dist.h), so no rank waits for it. */
static int read_dataset(dataset *d, const char *path, const run *r) {
    if (dist_rank() == 0) {
        int fd = open_input(path);
        int ok = dataset_read(d, fd, path, r->s.loss, r->model.cfg.vocab_size, r->model.cfg.max_positions,
                              r->err, r->errlen);
        if (fd != STDIN_FILENO) close(fd);
        if (!ok) return 0;
    }
    dist_share_dataset(d);
    return 1;
}

/* The model onto the device of --device (or TUNEPIPE_DEVICE). */
static int to_device(run *r) {
    const char *name = r->o->device ? r->o->device : device_default_name();
    /* The gradient reduce sums host memory (trainer.h's step_share). Every
     * rank finds this alike: rank 0 says so, and its end ends the others,
     * which wait at a barrier it never reaches. */
    if (dist_size() > 1 && strcmp(name, device_cpu.name) != 0) {
        if (dist_rank() > 0) dist_barrier();
        return run_fail(r, "--device %s: several processes (mpirun -np %d) train on the CPU only", name,
                        dist_size());
    }
    const device_ops *dev = device_open(name, r->err, r->errlen);
    if (!dev) return 0;
    if (model_to_device(&r->model, dev)) return run_fail(r, "--device %s: too little memory for the model", dev->name);
    return 1;
}

/* A new run: the model from -m or --init. */
static int start_fresh(run *r) {
    const train_options *o = r->o;
    char *state = path_join(o->out_dir, TRAIN_STATE_FILE);
    int held = file_exists(state) && !o->overwrite;
    free(state);
    if (held)
        return run_fail(r, "%s holds a training run; continue it with --resume %s, or start afresh with --overwrite",
                        o->out_dir, o->out_dir);
    if (o->model_dir) {
        char err[512];
        if (!model_load(&r->model, o->model_dir, err, sizeof err)) return run_fail(r, "%s", err);
        char *path = path_join(o->model_dir, "config.json");
        r->config_json = read_file(path, NULL);
        free(path);
        if (!o->given_save_dtype) r->s.save_dtype = config_torch_dtype(r->config_json);
    } else {
        neox_config cfg;
        if (!config_load(o->init_config, &cfg, r->err, r->errlen)) return 0;
        r->config_json = read_file(o->init_config, NULL);
        model_build(&r->model, &cfg);
        model_init_random(&r->model, r->s.seed);
    }
    if (!to_device(r)) return 0;
    trainer_init(&r->t, &r->model, &(adamw_hparams){0.9, 0.999, 1e-8, r->s.weight_decay}, r->s.clip);
    r->p.best_step = -1;
    r->s.ranks = dist_size();
    return 1;
}

/* A resumed run: settings, parameters and moments from OUT's state; of
 * the settings given now, those a resumed run takes replace the saved. */
static int start_resumed(run *r) {
    const train_options *o = r->o;
    char *path = path_join(o->out_dir, "config.json");
    neox_config cfg;
    int ok = file_exists(path) ? config_load(path, &cfg, r->err, r->errlen)
                               : run_fail(r, "%s: no config.json: not a neox-train output directory", o->out_dir);
    if (ok) r->config_json = read_file(path, NULL);
    free(path);
    if (!ok) return 0;
    model_build(&r->model, &cfg);
    path = path_join(o->out_dir, TRAIN_STATE_FILE);
    char *json = NULL;
    if (!file_exists(path)) {
        ok = run_fail(r, "%s: no %s to resume from", o->out_dir, TRAIN_STATE_FILE);
    } else if ((ok = to_device(r))) {
        /* The moments are read straight into the trainer's blocks. */
        trainer_init(&r->t, &r->model, &ADAMW_DEFAULTS, 0);
        json = state_load(path, &r->model, r->t.adam_m, r->t.adam_v, r->err, r->errlen);
        ok = json && train_state_parse(json, path, &r->s, &r->p, r->err, r->errlen);
    }
    free(json);
    free(path);
    if (!ok) return 0;
    r->state_eval_path = r->s.eval_path;
    /* The ranks take shares of each step: another count is another step. */
    if (r->s.ranks != dist_size())
        return run_fail(r, "%s: the run was trained on %d rank%s (batch %ld x grad-accum %ld each); resume it on "
                        "as many (mpirun -np %d), not %d", o->out_dir, r->s.ranks, r->s.ranks > 1 ? "s" : "",
                        r->s.batch, r->s.grad_accum, r->s.ranks, dist_size());
    if (o->given_steps) {
        r->s.steps = o->s.steps;
        r->s.epochs = o->s.epochs;
    }
    if (o->s.eval_path) r->s.eval_path = o->s.eval_path;
    if (o->given_eval_every) r->s.eval_every = o->s.eval_every;
    if (o->given_save_every) r->s.save_every = o->s.save_every;
    r->t.adam.weight_decay = r->s.weight_decay;
    r->t.clip = r->s.clip;
    r->t.step = r->p.step;
    r->saved_step = r->p.step;
    return 1;
}

/* With --keep-best, model.safetensors becomes the best one (hard link, so
 * best.safetensors stays for a later --resume). */
static int install_best(run *r) {
    const char *out = r->o->out_dir;
    char *best = path_join(out, TRAIN_BEST_FILE), *model = path_join(out, "model.safetensors");
    char *tmp = path_join(out, "model.safetensors.tmp.best");
    unlink(tmp);
    int ok = 1;
    if (link(best, tmp) != 0 || rename(tmp, model) != 0) {
        unlink(tmp);
        ok = atomic_copy_file(best, model, r->err, r->errlen);
    }
    if (ok && !r->o->quiet)
        fprintf(stderr, "%s: %s is the model of step %ld, the lowest eval loss (%.6g)\n", prog_name,
                model, r->p.best_step, r->p.best_eval);
    free(best);
    free(model);
    free(tmp);
    return ok;
}

/* Every input is read and checked; OUT is not touched yet. */
static int read_inputs(run *r) {
    const train_options *o = r->o;
    if (!read_dataset(&r->train, o->input, r)) return 0;
    if (o->resume && (r->train.fingerprint != r->p.data_fingerprint || r->train.n != r->p.data_examples))
        return run_fail(r, "%s: not the training data of the run in %s (%zu examples; the run had %zu)",
                        o->input, o->out_dir, r->train.n, r->p.data_examples);
    r->p.data_fingerprint = r->train.fingerprint;
    r->p.data_examples = r->train.n;
    if (r->s.eval_path) {
        if (!read_dataset(&r->eval, r->s.eval_path, r)) return 0;
        r->has_eval = 1;
    }
    long per_step = r->s.batch * r->s.grad_accum * dist_size();
    if (r->s.epochs > 0) r->s.steps = (long)ceil(r->s.epochs * (double)r->train.n / (double)per_step);
    return 1;
}

/* The bits of a run depend on the kernels (not on the thread count): a run
 * resumed on others, or on another device, continues, but not as the
 * uninterrupted run would have. The last step logged before the checkpoint
 * says which it began on. */
static void warn_if_kernels_changed(run *r) {
    char tail[1024];
    off_t end = (off_t)r->p.log_bytes, start = end > (off_t)sizeof tail - 1 ? end - (off_t)sizeof tail + 1 : 0;
    ssize_t n = pread(r->log_fd, tail, (size_t)(end - start), start);
    if (n <= 1) return;
    tail[n - 1] = '\0'; /* the last line's newline */
    char *line = strrchr(tail, '\n');
    cJSON *j = cJSON_Parse(line ? line + 1 : tail);
    const char *kernel = cJSON_GetStringValue(cJSON_GetObjectItem(j, "kernel"));
    const char *blas = cJSON_GetStringValue(cJSON_GetObjectItem(j, "blas"));
    const char *now_kernel = trainer_kernel_name(&r->t), *now_blas = blas_core_name();
    /* A GPU's kernels are named "cuda-..." (trainer_kernel_name); OpenBLAS
     * computes nothing of a step there, so its kernel set only counts
     * where both parts are on the CPU. */
    int was_gpu = kernel && strncmp(kernel, "cuda-", 5) == 0, now_gpu = r->model.dev != &device_cpu;
    if (kernel && blas && was_gpu != now_gpu) {
        char before[96], now[96];
        snprintf(before, sizeof before, was_gpu ? "cuda (%s)" : "cpu (%s with OpenBLAS %s)", kernel, blas);
        snprintf(now, sizeof now, now_gpu ? "%s (%s)" : "%s (%s with OpenBLAS %s)", r->model.dev->name, now_kernel,
                 now_blas);
        warn("the run so far trained on %s, this one on %s: from step %ld on, the numbers differ from an "
             "uninterrupted run in the last bits", before, now, r->p.step + 1);
    } else if (kernel && blas && (strcmp(kernel, now_kernel) != 0 || (!now_gpu && strcmp(blas, now_blas) != 0))) {
        warn("the run so far computed on the %s kernels with OpenBLAS %s, this one on %s with OpenBLAS %s: "
             "from step %ld on, the numbers differ from an uninterrupted run in the last bits",
             kernel, blas, now_kernel, now_blas, r->p.step + 1);
    }
    cJSON_Delete(j);
}

/* Trains to the last step or a stop signal; returns the exit status, or
 * -1 with the reason in r->err. */
static int train(run *r) {
    const train_options *o = r->o;
    int exit_status = 0;
    order_init(&r->order, r->train.n, r->s.shuffle, r->s.seed);
    /* a GPU always has bf16 products; the CPU's rule and message are gemm.h's */
    if (r->s.bf16 && (r->model.dev != &device_cpu || gemm_bf16_available())) trainer_use_bf16(&r->t);
    if (o->resume && dist_rank() == 0) warn_if_kernels_changed(r);
    if (o->verbose && dist_rank() == 0) device_tell_kernels(r->model.dev, r->model.dtype == DTYPE_BF16);
    catch_stop_signals();
    double loop_started = now_seconds();
    long first_step = r->p.step;
    int ok = train_loop(r);
    progress_done();
    if (o->verbose && dist_rank() == 0) device_tell_peak_memory(r->model.dev);
    if (!ok) {
        exit_status = -1;
    } else if (r->p.step < r->s.steps) { /* stopped by a signal */
        if (r->saved_step != r->p.step && !save_checkpoint(r, 1)) return -1;
        /* A rank that exits non-zero makes mpirun kill the others: not
         * before rank 0 has its checkpoint. */
        dist_barrier();
        int stdin_input = strcmp(o->input, "-") == 0;
        char launcher[32] = "";
        if (dist_size() > 1) snprintf(launcher, sizeof launcher, "mpirun -np %d ", dist_size());
        if (dist_rank() == 0)
            fprintf(stderr, "%s: interrupted at step %ld of %ld; continue with: %sneox-train --resume %s %s\n",
                    prog_name, r->p.step, r->s.steps, launcher, o->out_dir,
                    stdin_input ? "and the same training stream" : o->input);
        /* The signal may have come to another rank. */
        exit_status = 128 + (stop_signal ? stop_signal : SIGTERM);
    } else if (r->s.keep_best && r->p.best_step >= 0 && dist_rank() == 0 && !install_best(r)) {
        exit_status = -1;
    }
    if (o->verbose && dist_rank() == 0 && exit_status >= 0)
        fprintf(stderr, "%s: %.1f s in all: %.1f s starting (model, data, device), %.1f s in %ld steps, "
                "%.1f s evaluating, %.1f s writing checkpoints\n", prog_name, now_seconds() - r->started,
                loop_started - r->started, r->steps_s, r->p.step - first_step, r->eval_s, r->save_s);
    return exit_status;
}

int train_run(const train_options *o, char *err, int errlen) {
    run r = {.o = o, .s = o->s, .saved_step = -1, .log_fd = -1, .err = err, .errlen = errlen,
             .started = now_seconds()};
    int trains = 0, ok = o->resume ? start_resumed(&r) : start_fresh(&r);
    if (ok) trains = o->resume || r.s.steps > 0 || r.s.epochs > 0;
    if (ok && trains) ok = read_inputs(&r);
    /* Every rank has read what it needs before rank 0 changes OUT. */
    if (ok) dist_barrier();
    if (ok && dist_rank() == 0) {
        ok = make_dirs(o->out_dir, err, errlen);
        if (ok) {
            outdir_remove_stale_temporaries(o->out_dir);
            if (!o->resume) outdir_forget_run(o->out_dir);
            ok = open_log(&r, o->resume);
        }
        if (ok && !o->resume) ok = outdir_copy_tokenizer(o->out_dir, o->model_dir, o->tokenizer, err, errlen);
        if (ok && !o->resume) ok = outdir_record_template(o->out_dir, o->model_dir, o->template, err, errlen);
    }
    int exit_status = -1;
    if (ok && trains) exit_status = train(&r);
    else if (ok) exit_status = save_checkpoint(&r, 0) ? 0 : -1; /* the starting point alone, e.g. --init */
    if (r.log_fd >= 0) close(r.log_fd);
    order_free(&r.order);
    dataset_free(&r.train);
    dataset_free(&r.eval);
    trainer_free(&r.t);
    model_free(&r.model);
    free(r.config_json);
    free(r.state_eval_path);
    return exit_status;
}
