/* neox-train — full fine-tuning of a GPT-NeoX / Pythia model on a token
 * stream, writing a checkpoint Hugging Face transformers loads and a state
 * that --resume continues from. The math is in common/trainer.c. */
#include <cJSON.h>
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "checkpoint.h"
#include "cli.h"
#include "config.h"
#include "dataset.h"
#include "gemm.h"
#include "io.h"
#include "model.h"
#include "optim.h"
#include "parallel.h"
#include "trainer.h"

static const char usage[] =
    "Usage: neox-train (-m DIR | --init CONFIG) -o OUT [OPTION]... [FILE]\n"
    "  or:  neox-train --resume OUT [OPTION]... [FILE]\n"
    "Fine-tune every parameter of a GPT-NeoX model on the token stream in FILE or\n"
    "standard input (records with question and answer segments, as bpe-encode and\n"
    "pad-trunc write them). Writes OUT/config.json, OUT/model.safetensors and\n"
    "OUT/tokenizer.json for transformers' from_pretrained, OUT/log.jsonl, and\n"
    "OUT/training_state.safetensors, from which --resume continues.\n"
    "\n"
    "Model:\n"
    "  -m, --model DIR          start from the checkpoint in DIR\n"
    "      --init CONFIG        start from random weights for config.json CONFIG\n"
    "  -o, --output OUT         output directory (created if missing)\n"
    "      --resume OUT         continue the run saved in OUT, with its settings\n"
    "      --overwrite          start afresh even where OUT holds a run\n"
    "      --tokenizer FILE     tokenizer.json to copy into OUT (default: DIR's,\n"
    "                           else the GPT-NeoX tokenizer shipped with tunepipe)\n"
    "      --save-dtype TYPE    f32, f16 or bf16 (default: the dtype of DIR,\n"
    "                           f32 with --init)\n"
    "Training (defaults are the seed recipe):\n"
    "      --steps N            optimizer steps (default 100)\n"
    "      --epochs E           instead of --steps: E passes over the examples\n"
    "      --batch N            examples per micro-batch (default 1)\n"
    "      --grad-accum N       micro-batches per optimizer step (default 4)\n"
    "      --lr X               peak learning rate (default 1e-6)\n"
    "      --schedule NAME      linear (default), cosine or constant\n"
    "      --warmup N           steps of linear warmup from 0 (default 1)\n"
    "      --weight-decay X     AdamW decoupled weight decay on 2-D weights (default 0)\n"
    "      --clip X             clip the global gradient norm to X; 0: off (default 1)\n"
    "      --loss WHAT          answer (default): loss on the answer tokens;\n"
    "                           all: on question and answer tokens\n"
    "      --seed N             shuffling (and --init) seed (default 42)\n"
    "      --no-shuffle         keep the input order every epoch\n"
    "      --dtype TYPE         fp32 (default): the exact reference; bf16: linear\n"
    "                           layers' products in bf16 with fp32 accumulation (AMX\n"
    "                           where available), as Hugging Face's bf16=True: faster,\n"
    "                           not bit-exact; weights and AdamW stay fp32\n"
    "Evaluation and saving:\n"
    "      --eval FILE          token stream whose loss is computed at the end\n"
    "      --eval-every N       ... and every N steps (default 0: end only)\n"
    "      --keep-best          the final model is the one with the lowest eval loss\n"
    "      --save-every N       checkpoint every N steps; 0: only at the end\n"
    "                           (default 50)\n"
    "Running:\n"
    "      --threads N          worker threads (default: all CPUs)\n"
    "      --progress           show progress even when stderr is not a terminal\n"
    "  -q, --quiet              no progress, no closing message\n"
    "  -h, --help               show this help and exit\n"
    "      --version            show the version and exit\n"
    "\n"
    "The step loss is the cross-entropy summed over every target token of the\n"
    "step's batch x grad-accum examples, divided by their number. Padding is\n"
    "dropped before the math and costs nothing.\n"
    "\n"
    "SIGINT or SIGTERM stops the run at the end of the current step, keeping (or\n"
    "writing) a checkpoint --resume continues from; exit status 130 or 143.\n";

#define STATE_FILE "training_state.safetensors"
#define BEST_FILE "best.safetensors"
#define STATE_VERSION 1

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
    st_dtype save_dtype;
    char *eval_path;        /* NULL: no eval */
} run_settings;

/* Where the run stands; saved with the settings. */
typedef struct {
    long step;
    double elapsed;         /* training seconds, across resumes */
    long best_step;         /* -1: no eval yet */
    double best_eval;
    off_t log_bytes;
    uint64_t data_fingerprint;
    size_t data_examples;
} run_progress;

typedef struct {
    const char *model_dir, *init_config, *out_dir, *resume_dir, *tokenizer, *input;
    int overwrite, progress, quiet, threads;
    int given_save_dtype, given_steps, given_eval_every, given_save_every;
    const char *fixed_option;     /* a setting --resume does not take */
    run_settings s;
} options;

static void parse_args(int argc, char **argv, options *o) {
    enum { OPT_INIT = 256, OPT_RESUME, OPT_OVERWRITE, OPT_TOKENIZER, OPT_SAVE_DTYPE, OPT_STEPS,
           OPT_EPOCHS, OPT_BATCH, OPT_GRAD_ACCUM, OPT_LR, OPT_SCHEDULE, OPT_WARMUP, OPT_WD,
           OPT_CLIP, OPT_LOSS, OPT_SEED, OPT_NO_SHUFFLE, OPT_EVAL, OPT_EVAL_EVERY, OPT_KEEP_BEST,
           OPT_SAVE_EVERY, OPT_THREADS, OPT_PROGRESS, OPT_DTYPE, OPT_VERSION };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"init", required_argument, 0, OPT_INIT},
        {"output", required_argument, 0, 'o'}, {"resume", required_argument, 0, OPT_RESUME},
        {"overwrite", no_argument, 0, OPT_OVERWRITE}, {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"save-dtype", required_argument, 0, OPT_SAVE_DTYPE}, {"steps", required_argument, 0, OPT_STEPS},
        {"epochs", required_argument, 0, OPT_EPOCHS}, {"batch", required_argument, 0, OPT_BATCH},
        {"grad-accum", required_argument, 0, OPT_GRAD_ACCUM}, {"lr", required_argument, 0, OPT_LR},
        {"schedule", required_argument, 0, OPT_SCHEDULE}, {"warmup", required_argument, 0, OPT_WARMUP},
        {"weight-decay", required_argument, 0, OPT_WD}, {"clip", required_argument, 0, OPT_CLIP},
        {"loss", required_argument, 0, OPT_LOSS}, {"seed", required_argument, 0, OPT_SEED},
        {"no-shuffle", no_argument, 0, OPT_NO_SHUFFLE}, {"eval", required_argument, 0, OPT_EVAL},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"eval-every", required_argument, 0, OPT_EVAL_EVERY}, {"keep-best", no_argument, 0, OPT_KEEP_BEST},
        {"save-every", required_argument, 0, OPT_SAVE_EVERY}, {"threads", required_argument, 0, OPT_THREADS},
        {"progress", no_argument, 0, OPT_PROGRESS}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, OPT_VERSION}, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    run_settings *s = &o->s;
    *s = (run_settings){.steps = 100, .batch = 1, .grad_accum = 4, .warmup = 1, .save_every = 50,
                        .lr = 1e-6, .clip = 1.0, .schedule = SCHEDULE_LINEAR, .loss = LOSS_ANSWER,
                        .seed = 42, .shuffle = 1, .save_dtype = ST_F32};
    int c;
    while ((c = getopt_long(argc, argv, "m:o:qh", opts, NULL)) != -1) {
        /* Settings of the run itself: --resume takes them from the state. */
        int fixed = 1;
        switch (c) {
        case 'm': o->model_dir = optarg; fixed = 0; break;
        case OPT_INIT: o->init_config = optarg; fixed = 0; break;
        case 'o': o->out_dir = optarg; fixed = 0; break;
        case OPT_RESUME: o->resume_dir = optarg; fixed = 0; break;
        case OPT_OVERWRITE: o->overwrite = 1; fixed = 0; break;
        case OPT_TOKENIZER: o->tokenizer = optarg; fixed = 0; break;
        case OPT_SAVE_DTYPE:
            if (!save_dtype_parse(optarg, &s->save_dtype))
                usage_error("--save-dtype: expected f32, f16 or bf16, not '%s'", optarg);
            o->given_save_dtype = 1;
            break;
        case OPT_STEPS: s->steps = parse_long("--steps", optarg, 0, 1L << 40); s->epochs = 0; o->given_steps = 1; fixed = 0; break;
        case OPT_EPOCHS: s->epochs = parse_double("--epochs", optarg, 1e-9, 1e9); o->given_steps = 1; fixed = 0; break;
        case OPT_BATCH: s->batch = parse_long("--batch", optarg, 1, 1 << 20); break;
        case OPT_GRAD_ACCUM: s->grad_accum = parse_long("--grad-accum", optarg, 1, 1 << 20); break;
        case OPT_LR: s->lr = parse_double("--lr", optarg, 0, 1e3); break;
        case OPT_SCHEDULE:
            if (!lr_schedule_parse(optarg, &s->schedule))
                usage_error("--schedule: expected linear, cosine or constant, not '%s'", optarg);
            break;
        case OPT_WARMUP: s->warmup = parse_long("--warmup", optarg, 0, 1L << 40); break;
        case OPT_WD: s->weight_decay = parse_double("--weight-decay", optarg, 0, 1e3); break;
        case OPT_CLIP: s->clip = parse_double("--clip", optarg, 0, 1e30); break;
        case OPT_LOSS:
            if (!loss_mode_parse(optarg, &s->loss)) usage_error("--loss: expected answer or all, not '%s'", optarg);
            break;
        case OPT_SEED: s->seed = (uint64_t)parse_long("--seed", optarg, 0, (1L << 62)); break;
        case OPT_NO_SHUFFLE: s->shuffle = 0; break;
        case OPT_DTYPE:
            if (strcmp(optarg, "fp32") != 0 && strcmp(optarg, "bf16") != 0)
                usage_error("--dtype: expected fp32 or bf16, not '%s'", optarg);
            s->bf16 = optarg[0] == 'b';
            break;
        case OPT_EVAL: s->eval_path = optarg; fixed = 0; break;
        case OPT_EVAL_EVERY: s->eval_every = parse_long("--eval-every", optarg, 0, 1L << 40); o->given_eval_every = 1; fixed = 0; break;
        case OPT_KEEP_BEST: s->keep_best = 1; break;
        case OPT_SAVE_EVERY: s->save_every = parse_long("--save-every", optarg, 0, 1L << 40); o->given_save_every = 1; fixed = 0; break;
        case OPT_THREADS: o->threads = (int)parse_long("--threads", optarg, 1, 1024); fixed = 0; break;
        case OPT_PROGRESS: o->progress = 1; fixed = 0; break;
        case 'q': o->quiet = 1; fixed = 0; break;
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
        for (int i = 0; fixed && !o->fixed_option && opts[i].name; i++)
            if (opts[i].val == c) o->fixed_option = opts[i].name;
    }
    if (argc - optind > 1) usage_error("at most one input file");
    o->input = optind < argc ? argv[optind] : "-";
    if (o->resume_dir) {
        if (o->model_dir || o->init_config)
            usage_error("--resume continues from OUT's state; -m and --init do not apply");
        if (o->fixed_option)
            usage_error("--%s: a resumed run keeps its settings (only --steps, --epochs, --eval, "
                        "--eval-every, --save-every and the running options may be given)", o->fixed_option);
        if (o->out_dir && strcmp(o->out_dir, o->resume_dir) != 0)
            usage_error("--resume writes to the directory it resumes; -o must name it or be left out");
        o->out_dir = o->resume_dir;
    } else {
        if (!!o->model_dir + !!o->init_config != 1) usage_error("give exactly one of -m DIR and --init CONFIG");
        if (!o->out_dir) usage_error("give an output directory with -o");
    }
    if (s->keep_best && !s->eval_path) usage_error("--keep-best needs --eval");
    int reads_input = o->resume_dir || s->steps > 0 || s->epochs > 0;
    if (reads_input && o->input[0] == '-' && !o->input[1] && isatty(STDIN_FILENO))
        usage_error("no training stream: give FILE or pipe one in (see bpe-encode)");
}

/* ---- the state's JSON ------------------------------------------------------ */

static char *state_json(const run_settings *s, const run_progress *p) {
    cJSON *j = cJSON_CreateObject();
    char hex[17];
    cJSON_AddNumberToObject(j, "version", STATE_VERSION);
    cJSON_AddNumberToObject(j, "step", (double)p->step);
    cJSON_AddNumberToObject(j, "elapsed", p->elapsed);
    cJSON_AddNumberToObject(j, "log_bytes", (double)p->log_bytes);
    cJSON_AddNumberToObject(j, "best_step", (double)p->best_step);
    cJSON_AddNumberToObject(j, "best_eval_loss", p->best_step >= 0 ? p->best_eval : 0);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)p->data_fingerprint);
    cJSON_AddStringToObject(j, "data_fingerprint", hex);
    cJSON_AddNumberToObject(j, "data_examples", (double)p->data_examples);
    cJSON_AddNumberToObject(j, "steps", (double)s->steps);
    cJSON_AddNumberToObject(j, "epochs", s->epochs);
    cJSON_AddNumberToObject(j, "batch", (double)s->batch);
    cJSON_AddNumberToObject(j, "grad_accum", (double)s->grad_accum);
    cJSON_AddNumberToObject(j, "lr", s->lr);
    cJSON_AddStringToObject(j, "schedule", lr_schedule_name(s->schedule));
    cJSON_AddNumberToObject(j, "warmup", (double)s->warmup);
    cJSON_AddNumberToObject(j, "weight_decay", s->weight_decay);
    cJSON_AddNumberToObject(j, "clip", s->clip);
    cJSON_AddStringToObject(j, "loss", s->loss == LOSS_ANSWER ? "answer" : "all");
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)s->seed);
    cJSON_AddStringToObject(j, "seed", hex);
    cJSON_AddBoolToObject(j, "shuffle", s->shuffle);
    cJSON_AddBoolToObject(j, "keep_best", s->keep_best);
    cJSON_AddBoolToObject(j, "bf16", s->bf16);
    cJSON_AddStringToObject(j, "save_dtype", s->save_dtype == ST_F16 ? "f16" : s->save_dtype == ST_BF16 ? "bf16" : "f32");
    cJSON_AddNumberToObject(j, "eval_every", (double)s->eval_every);
    cJSON_AddNumberToObject(j, "save_every", (double)s->save_every);
    if (s->eval_path) cJSON_AddStringToObject(j, "eval", s->eval_path);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) die("out of memory");
    return text;
}

static double json_number(const cJSON *j, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v)) die("%s: state has no number \"%s\"", path, key);
    return v->valuedouble;
}

static const char *json_string(const cJSON *j, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v)) die("%s: state has no string \"%s\"", path, key);
    return v->valuestring;
}

/* Restores the run from the state's JSON; options given now (steps, eval,
 * saving) replace the saved ones. */
static void state_parse(const char *text, const char *path, const options *o, run_settings *s,
                        run_progress *p) {
    cJSON *j = cJSON_Parse(text);
    if (!j || json_number(j, "version", path) != STATE_VERSION) die("%s: unknown state version", path);
    run_settings saved = {0};
    saved.steps = (long)json_number(j, "steps", path);
    saved.epochs = json_number(j, "epochs", path);
    saved.batch = (long)json_number(j, "batch", path);
    saved.grad_accum = (long)json_number(j, "grad_accum", path);
    saved.lr = json_number(j, "lr", path);
    if (!lr_schedule_parse(json_string(j, "schedule", path), &saved.schedule)) die("%s: bad schedule", path);
    saved.warmup = (long)json_number(j, "warmup", path);
    saved.weight_decay = json_number(j, "weight_decay", path);
    saved.clip = json_number(j, "clip", path);
    if (!loss_mode_parse(json_string(j, "loss", path), &saved.loss)) die("%s: bad loss", path);
    saved.seed = strtoull(json_string(j, "seed", path), NULL, 16);
    saved.shuffle = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "shuffle"));
    saved.keep_best = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "keep_best"));
    saved.bf16 = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "bf16"));
    if (!save_dtype_parse(json_string(j, "save_dtype", path), &saved.save_dtype)) die("%s: bad save_dtype", path);
    saved.eval_every = (long)json_number(j, "eval_every", path);
    saved.save_every = (long)json_number(j, "save_every", path);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "eval");
    saved.eval_path = cJSON_IsString(ev) ? xstrdup(ev->valuestring) : NULL;
    p->step = (long)json_number(j, "step", path);
    p->elapsed = json_number(j, "elapsed", path);
    p->log_bytes = (off_t)json_number(j, "log_bytes", path);
    p->best_step = (long)json_number(j, "best_step", path);
    p->best_eval = json_number(j, "best_eval_loss", path);
    p->data_fingerprint = strtoull(json_string(j, "data_fingerprint", path), NULL, 16);
    p->data_examples = (size_t)json_number(j, "data_examples", path);
    cJSON_Delete(j);
    if (o->given_steps) {
        saved.steps = o->s.steps;
        saved.epochs = o->s.epochs;
    }
    if (o->s.eval_path) saved.eval_path = o->s.eval_path;
    if (o->given_eval_every) saved.eval_every = o->s.eval_every;
    if (o->given_save_every) saved.save_every = o->s.save_every;
    *s = saved;
}

/* ---- output directory ------------------------------------------------------ */

static char *out_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void make_dirs(const char *dir) {
    char *p = xstrdup(dir);
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) die("%s: cannot create: %s", p, strerror(errno));
        *q = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) die("%s: cannot create: %s", p, strerror(errno));
    free(p);
}

/* Temporary files a killed run left (atomic_open names them NAME.tmp.PID). */
static void remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    static const char *ours[] = {"config.json", "model.safetensors", STATE_FILE, BEST_FILE,
                                 "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    while ((e = readdir(d))) {
        int stale = 0;
        for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) {
            size_t n = strlen(ours[i]);
            stale |= strncmp(e->d_name, ours[i], n) == 0 && strncmp(e->d_name + n, ".tmp.", 5) == 0;
        }
        if (!stale) continue;
        char *p = out_path(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
}

/* Copies the tokenizer files of the source into OUT. */
static void copy_tokenizer(const options *o, const char *out) {
    static const char *extras[] = {"tokenizer_config.json", "special_tokens_map.json"};
    char *src = o->tokenizer ? xstrdup(o->tokenizer) : NULL;
    if (!src && o->model_dir) {
        src = out_path(o->model_dir, "tokenizer.json");
        if (!file_exists(src)) {
            free(src);
            src = NULL;
        }
    }
    if (!src) src = data_file("tokenizer.json");
    char *dst = out_path(out, "tokenizer.json");
    atomic_copy_file(src, dst);
    free(dst);
    free(src);
    for (size_t i = 0; o->model_dir && !o->tokenizer && i < sizeof extras / sizeof *extras; i++) {
        char *from = out_path(o->model_dir, extras[i]), *to = out_path(out, extras[i]);
        if (file_exists(from)) atomic_copy_file(from, to);
        free(from);
        free(to);
    }
}

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
    const options *o;
    run_settings s;
    run_progress p;
    neox_model model;
    trainer t;
    dataset train, eval;
    int has_eval;
    example_order order;
    int log_fd;
    char *config_json;
    long saved_step;        /* step of OUT's resumable checkpoint; -1: none */
} run;

static void open_log(run *r, int resume) {
    char *path = out_path(r->o->out_dir, "log.jsonl");
    r->log_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0644);
    if (r->log_fd < 0) die("%s: %s", path, strerror(errno));
    /* Lines logged after the checkpoint belong to steps that will run again. */
    if (resume && ftruncate(r->log_fd, r->p.log_bytes) != 0) die("%s: %s", path, strerror(errno));
    if (lseek(r->log_fd, 0, SEEK_END) < 0) die("%s: %s", path, strerror(errno));
    free(path);
}

static void log_step(run *r, const step_result *res, double lr, double seconds, double eval_loss) {
    char line[512];
    int n = snprintf(line, sizeof line,
                     "{\"step\":%ld,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%zu,"
                     "\"tokens_per_s\":%.2f,\"elapsed\":%.3f",
                     r->p.step, res->loss, lr, res->grad_norm, res->tokens,
                     seconds > 0 ? (double)res->tokens / seconds : 0.0, r->p.elapsed);
    if (!isnan(eval_loss)) n += snprintf(line + n, sizeof line - (size_t)n, ",\"eval_loss\":%.9g", eval_loss);
    n += snprintf(line + n, sizeof line - (size_t)n, "}\n");
    const char *q = line;
    for (size_t left = (size_t)n; left > 0;) {
        ssize_t w = write(r->log_fd, q, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) die("%s/log.jsonl: write error: %s", r->o->out_dir, strerror(errno));
        q += w;
        left -= (size_t)w;
    }
    r->p.log_bytes += n;
}

static double eval_loss(run *r) {
    size_t *all = xmalloc(r->eval.n * sizeof *all), targets;
    for (size_t i = 0; i < r->eval.n; i++) all[i] = i;
    double sum = trainer_loss(&r->t, &r->eval, all, r->eval.n, &targets, NULL);
    free(all);
    return sum / (double)targets;
}

/* config.json, the model, then (when resumable) the state: after a crash
 * between any two renames, each file is whole and the state is
 * self-contained. */
static void save_checkpoint(run *r, int resumable) {
    const char *out = r->o->out_dir;
    if (fsync(r->log_fd) != 0) die("%s/log.jsonl: %s", out, strerror(errno));
    char *path = out_path(out, "config.json");
    char *cfg = config_with_dtype(r->config_json, r->s.save_dtype);
    atomic_write_file(path, cfg, strlen(cfg));
    free(cfg);
    free(path);
    path = out_path(out, "model.safetensors");
    model_save(path, &r->model, r->s.save_dtype);
    free(path);
    /* Without training there is nothing to resume: -m OUT starts from
     * this checkpoint just as well. */
    if (!resumable) return;
    path = out_path(out, STATE_FILE);
    char *json = state_json(&r->s, &r->p);
    state_save(path, &r->model, r->t.adam_m, r->t.adam_v, json);
    free(json);
    free(path);
    r->saved_step = r->p.step;
}

static void format_eta(char *buf, size_t n, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
}

static void train_loop(run *r) {
    const run_settings *s = &r->s;
    long per_step = s->batch * s->grad_accum;
    size_t *ex = xmalloc((size_t)per_step * sizeof *ex);
    double tokens_done = 0, seconds_done = 0;
    long steps_done = 0;
    while (r->p.step < s->steps && !stop_signal) {
        long step = r->p.step;
        for (long j = 0; j < per_step; j++) ex[j] = order_at(&r->order, (uint64_t)step * per_step + j);
        double lr = lr_at_step(s->schedule, s->lr, step, s->warmup, s->steps);
        double t0 = now_seconds();
        step_result res = trainer_step(&r->t, &r->train, ex, (int)per_step, lr);
        double dt = now_seconds() - t0;
        r->p.step++;
        r->p.elapsed += dt;
        tokens_done += (double)res.tokens;
        seconds_done += dt;
        int last = r->p.step == s->steps;
        double ev = NAN;
        if (r->has_eval && (last || (s->eval_every && r->p.step % s->eval_every == 0))) {
            ev = eval_loss(r);
            if (s->keep_best && (r->p.best_step < 0 || ev < r->p.best_eval)) {
                r->p.best_step = r->p.step;
                r->p.best_eval = ev;
                char *path = out_path(r->o->out_dir, BEST_FILE);
                model_save(path, &r->model, s->save_dtype);
                free(path);
            }
        }
        log_step(r, &res, lr, dt, ev);
        if (last || (s->save_every && r->p.step % s->save_every == 0)) save_checkpoint(r, 1);
        steps_done++;
        char eta[32];
        format_eta(eta, sizeof eta, (double)(s->steps - r->p.step) * seconds_done / steps_done);
        progress("step %ld/%ld  loss %.4f  lr %.3g  %.1f tok/s  ETA %s", r->p.step, s->steps, res.loss,
                 lr, tokens_done / seconds_done, eta);
    }
    free(ex);
}

static void read_dataset(dataset *d, const char *path, const run *r) {
    int fd = open_input(path);
    dataset_read(d, fd, path, r->s.loss, r->model.cfg.vocab_size, r->model.cfg.max_positions);
    if (fd != STDIN_FILENO) close(fd);
}

/* A new run: the model from -m or --init, OUT prepared. */
static void start_fresh(run *r) {
    const options *o = r->o;
    char *state = out_path(o->out_dir, STATE_FILE);
    if (file_exists(state) && !o->overwrite)
        die("%s holds a training run; continue it with --resume %s, or start afresh with --overwrite",
            o->out_dir, o->out_dir);
    free(state);
    if (o->model_dir) {
        char err[512];
        if (!model_load(&r->model, o->model_dir, err, sizeof err)) die("%s", err);
        char *path = out_path(o->model_dir, "config.json");
        r->config_json = read_file(path, NULL);
        free(path);
        if (!o->given_save_dtype) r->s.save_dtype = config_torch_dtype(r->config_json);
    } else {
        neox_config cfg;
        config_load(o->init_config, &cfg);
        r->config_json = read_file(o->init_config, NULL);
        model_build(&r->model, &cfg);
        model_init_random(&r->model, r->s.seed);
    }
    trainer_init(&r->t, &r->model, &(adamw_hparams){0.9, 0.999, 1e-8, r->s.weight_decay}, r->s.clip);
    r->p.best_step = -1;
}

/* A resumed run: settings, parameters and moments from OUT's state. */
static void start_resumed(run *r) {
    const options *o = r->o;
    char *path = out_path(o->out_dir, "config.json");
    if (!file_exists(path)) die("%s: no config.json: not a neox-train output directory", o->out_dir);
    neox_config cfg;
    config_load(path, &cfg);
    r->config_json = read_file(path, NULL);
    free(path);
    model_build(&r->model, &cfg);
    path = out_path(o->out_dir, STATE_FILE);
    if (!file_exists(path)) die("%s: no %s to resume from", o->out_dir, STATE_FILE);
    /* The moments are read straight into the trainer's blocks. */
    trainer_init(&r->t, &r->model, &ADAMW_DEFAULTS, 0);
    char *json = state_load(path, &r->model, r->t.adam_m, r->t.adam_v);
    state_parse(json, path, o, &r->s, &r->p);
    free(json);
    free(path);
    r->t.adam.weight_decay = r->s.weight_decay;
    r->t.clip = r->s.clip;
    r->t.step = r->p.step;
    r->saved_step = r->p.step;
}

/* With --keep-best, model.safetensors becomes the best one (hard link, so
 * best.safetensors stays for a later --resume). */
static void install_best(run *r) {
    char *best = out_path(r->o->out_dir, BEST_FILE), *model = out_path(r->o->out_dir, "model.safetensors");
    char *tmp = out_path(r->o->out_dir, "model.safetensors.tmp.best");
    unlink(tmp);
    if (link(best, tmp) != 0 || rename(tmp, model) != 0) {
        unlink(tmp);
        atomic_copy_file(best, model);
    }
    if (!r->o->quiet)
        fprintf(stderr, "%s: %s is the model of step %ld, the lowest eval loss (%.6g)\n", prog_name,
                model, r->p.best_step, r->p.best_eval);
    free(best);
    free(model);
    free(tmp);
}

int main(int argc, char **argv) {
    cli_init("neox-train");
    blas_setup(argv);
    options o;
    parse_args(argc, argv, &o);
    progress_setup(o.progress, o.quiet);
    if (o.threads) {
        openblas_set_num_threads(o.threads);
        parallel_set_threads(o.threads);
        gemm_set_threads(o.threads);
    }
    run r = {.o = &o, .s = o.s, .saved_step = -1};
    int exit_status = 0;
    if (o.resume_dir) start_resumed(&r);
    else start_fresh(&r);
    /* All input is read and checked before OUT is touched. */
    int train = o.resume_dir || r.s.steps > 0 || r.s.epochs > 0;
    if (train) {
        read_dataset(&r.train, o.input, &r);
        if (o.resume_dir && (r.train.fingerprint != r.p.data_fingerprint || r.train.n != r.p.data_examples))
            die("%s: not the training data of the run in %s (%zu examples; the run had %zu)",
                o.input, o.out_dir, r.train.n, r.p.data_examples);
        r.p.data_fingerprint = r.train.fingerprint;
        r.p.data_examples = r.train.n;
        if (r.s.eval_path) {
            read_dataset(&r.eval, r.s.eval_path, &r);
            r.has_eval = 1;
        }
        long per_step = r.s.batch * r.s.grad_accum;
        if (r.s.epochs > 0) r.s.steps = (long)ceil(r.s.epochs * (double)r.train.n / (double)per_step);
    }
    make_dirs(o.out_dir);
    remove_stale_temporaries(o.out_dir);
    if (!o.resume_dir) {
        /* What a previous run left must not be resumed or kept as best. */
        const char *old_run[] = {STATE_FILE, BEST_FILE};
        for (size_t i = 0; i < sizeof old_run / sizeof *old_run; i++) {
            char *p = out_path(o.out_dir, old_run[i]);
            unlink(p);
            free(p);
        }
    }
    open_log(&r, o.resume_dir != NULL);
    if (!o.resume_dir) copy_tokenizer(&o, o.out_dir);
    if (!train) {
        save_checkpoint(&r, 0); /* the starting point alone, e.g. --init */
    } else {
        order_init(&r.order, r.train.n, r.s.shuffle, r.s.seed);
        if (r.s.bf16) trainer_use_bf16(&r.t);
        catch_stop_signals();
        train_loop(&r);
        progress_done();
        if (r.p.step < r.s.steps) { /* stopped by a signal */
            if (r.saved_step != r.p.step) save_checkpoint(&r, 1);
            int stdin_input = strcmp(o.input, "-") == 0;
            fprintf(stderr, "%s: interrupted at step %ld of %ld; continue with: neox-train --resume %s %s\n",
                    prog_name, r.p.step, r.s.steps, o.out_dir,
                    stdin_input ? "and the same training stream" : o.input);
            exit_status = 128 + stop_signal;
        } else if (r.s.keep_best && r.p.best_step >= 0) {
            install_best(&r);
        }
        order_free(&r.order);
        dataset_free(&r.train);
        if (r.has_eval) dataset_free(&r.eval);
    }
    close(r.log_fd);
    trainer_free(&r.t);
    model_free(&r.model);
    free(r.config_json);
    return exit_status;
}
