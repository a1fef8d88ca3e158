/* neox-train — full fine-tuning of a GPT-NeoX / Pythia model on a token
 * stream, writing a checkpoint Hugging Face transformers loads and a state
 * that --resume continues from. The run is in common/train_run.c, the math
 * in common/trainer.c, the data parallelism in common/train/dist.c. */
#include <cblas.h>
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "kernels/blas.h"
#include "nn/model_io.h"
#include "base/cli.h"
#include "kernels/gemm.h"
#include "kernels/parallel.h"
#include "stream/template.h"
#include "train/dist.h"
#include "train/train_run.h"

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
    "      --template TEXT      the prompt template the training stream was\n"
    "                           encoded with, recorded in OUT/prompt_template.txt\n"
    "                           for neox-gen -i and neox-serve (default: DIR's)\n"
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
    "      --device DEV         cpu (default) or cuda: the whole run on the GPU\n"
    "                           (weights, activations, AdamW), checkpoints as on\n"
    "                           the CPU\n"
    "      --threads N          worker threads (default: all CPUs)\n"
    "      --progress           show progress even when stderr is not a terminal\n"
    "  -v, --verbose            say which kernels compute (bf16 on AMX or\n"
    "                           AVX512-BF16, fp32 on OpenBLAS's CORE, or the GPU)\n"
    "                           and on how many threads; on a GPU, at the end,\n"
    "                           the most GPU memory held\n"
    "  -q, --quiet              no progress, no closing message\n"
    "  -h, --help               show this help and exit\n"
    "      --version            show the version and exit\n"
    "\n"
    "The step loss is the cross-entropy summed over every target token of the\n"
    "step's batch x grad-accum examples, divided by their number. Padding is\n"
    "dropped before the math and costs nothing.\n"
    "\n"
    "Started by mpirun -np N, N processes train one model, data-parallel: each step\n"
    "takes N x batch x grad-accum examples, the processes' gradients summed (see\n"
    "neox-train(1), Several processes).\n"
    "\n"
    "SIGINT or SIGTERM stops the run at the end of the current step, keeping (or\n"
    "writing) a checkpoint --resume continues from; exit status 130 or 143.\n";

typedef struct {
    train_options run;
    int progress, threads;
} options;

static void parse_args(int argc, char **argv, options *o) {
    enum { OPT_INIT = 256, OPT_RESUME, OPT_OVERWRITE, OPT_TOKENIZER, OPT_SAVE_DTYPE, OPT_STEPS,
           OPT_EPOCHS, OPT_BATCH, OPT_GRAD_ACCUM, OPT_LR, OPT_SCHEDULE, OPT_WARMUP, OPT_WD,
           OPT_CLIP, OPT_LOSS, OPT_SEED, OPT_NO_SHUFFLE, OPT_EVAL, OPT_EVAL_EVERY, OPT_KEEP_BEST,
           OPT_SAVE_EVERY, OPT_THREADS, OPT_PROGRESS, OPT_DTYPE, OPT_DEVICE, OPT_VERSION, OPT_TEMPLATE };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"init", required_argument, 0, OPT_INIT},
        {"output", required_argument, 0, 'o'}, {"resume", required_argument, 0, OPT_RESUME},
        {"overwrite", no_argument, 0, OPT_OVERWRITE}, {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"template", required_argument, 0, OPT_TEMPLATE},
        {"save-dtype", required_argument, 0, OPT_SAVE_DTYPE}, {"steps", required_argument, 0, OPT_STEPS},
        {"epochs", required_argument, 0, OPT_EPOCHS}, {"batch", required_argument, 0, OPT_BATCH},
        {"grad-accum", required_argument, 0, OPT_GRAD_ACCUM}, {"lr", required_argument, 0, OPT_LR},
        {"schedule", required_argument, 0, OPT_SCHEDULE}, {"warmup", required_argument, 0, OPT_WARMUP},
        {"weight-decay", required_argument, 0, OPT_WD}, {"clip", required_argument, 0, OPT_CLIP},
        {"loss", required_argument, 0, OPT_LOSS}, {"seed", required_argument, 0, OPT_SEED},
        {"no-shuffle", no_argument, 0, OPT_NO_SHUFFLE}, {"eval", required_argument, 0, OPT_EVAL},
        {"dtype", required_argument, 0, OPT_DTYPE}, {"device", required_argument, 0, OPT_DEVICE},
        {"eval-every", required_argument, 0, OPT_EVAL_EVERY}, {"keep-best", no_argument, 0, OPT_KEEP_BEST},
        {"save-every", required_argument, 0, OPT_SAVE_EVERY}, {"threads", required_argument, 0, OPT_THREADS},
        {"progress", no_argument, 0, OPT_PROGRESS}, {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, OPT_VERSION}, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    train_options *t = &o->run;
    run_settings *s = &t->s;
    const char *resume_dir = NULL;
    const char *fixed_option = NULL; /* the first setting given that --resume does not take */
    *s = (run_settings){.steps = 100, .batch = 1, .grad_accum = 4, .warmup = 1, .save_every = 50,
                        .lr = 1e-6, .clip = 1.0, .schedule = SCHEDULE_LINEAR, .loss = LOSS_ANSWER,
                        .seed = 42, .shuffle = 1, .save_dtype = ST_F32};
    int c;
    while ((c = getopt_long(argc, argv, "m:o:qvh", opts, NULL)) != -1) {
        /* Settings of the run itself: --resume takes them from the state. */
        int fixed = 1;
        switch (c) {
        case 'm': t->model_dir = optarg; fixed = 0; break;
        case OPT_INIT: t->init_config = optarg; fixed = 0; break;
        case 'o': t->out_dir = optarg; fixed = 0; break;
        case OPT_RESUME: resume_dir = optarg; t->resume = 1; fixed = 0; break;
        case OPT_OVERWRITE: t->overwrite = 1; fixed = 0; break;
        case OPT_TOKENIZER: t->tokenizer = optarg; fixed = 0; break;
        case OPT_TEMPLATE: {
            prompt_template check;
            char why[ERR_MAX];
            if (template_parse(&check, "--template", optarg, why, sizeof why)) usage_error("%s", why);
            template_free(&check);
            t->template = optarg;
            break;
        }
        case OPT_SAVE_DTYPE:
            if (!save_dtype_parse(optarg, &s->save_dtype))
                usage_error("--save-dtype: expected f32, f16 or bf16, not '%s'", optarg);
            t->given_save_dtype = 1;
            break;
        case OPT_STEPS: s->steps = parse_long("--steps", optarg, 0, 1L << 40); s->epochs = 0; t->given_steps = 1; fixed = 0; break;
        case OPT_EPOCHS: s->epochs = parse_double("--epochs", optarg, 1e-9, 1e9); t->given_steps = 1; fixed = 0; break;
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
        case OPT_EVAL_EVERY: s->eval_every = parse_long("--eval-every", optarg, 0, 1L << 40); t->given_eval_every = 1; fixed = 0; break;
        case OPT_KEEP_BEST: s->keep_best = 1; break;
        case OPT_SAVE_EVERY: s->save_every = parse_long("--save-every", optarg, 0, 1L << 40); t->given_save_every = 1; fixed = 0; break;
        case OPT_DEVICE: t->device = optarg; fixed = 0; break;
        case OPT_THREADS: o->threads = (int)parse_long("--threads", optarg, 1, 1024); fixed = 0; break;
        case OPT_PROGRESS: o->progress = 1; fixed = 0; break;
        case 'q': t->quiet = 1; fixed = 0; break;
        case 'v': t->verbose = 1; fixed = 0; break;
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
        for (int i = 0; fixed && !fixed_option && opts[i].name; i++)
            if (opts[i].val == c) fixed_option = opts[i].name;
    }
    if (argc - optind > 1) usage_error("at most one input file");
    t->input = optind < argc ? argv[optind] : "-";
    if (resume_dir) {
        if (t->model_dir || t->init_config)
            usage_error("--resume continues from OUT's state; -m and --init do not apply");
        if (fixed_option)
            usage_error("--%s: a resumed run keeps its settings (only --steps, --epochs, --eval, "
                        "--eval-every, --save-every and the running options may be given)", fixed_option);
        if (t->out_dir && strcmp(t->out_dir, resume_dir) != 0)
            usage_error("--resume writes to the directory it resumes; -o must name it or be left out");
        t->out_dir = resume_dir;
    } else {
        if (!!t->model_dir + !!t->init_config != 1) usage_error("give exactly one of -m DIR and --init CONFIG");
        if (!t->out_dir) usage_error("give an output directory with -o");
    }
    if (s->keep_best && !s->eval_path) usage_error("--keep-best needs --eval");
    int reads_input = resume_dir || s->steps > 0 || s->epochs > 0;
    if (reads_input && t->input[0] == '-' && !t->input[1] && isatty(STDIN_FILENO))
        usage_error("no training stream: give FILE or pipe one in (see bpe-encode)");
}

int main(int argc, char **argv) {
    cli_init("neox-train");
    blas_setup(argv);
    options o;
    parse_args(argc, argv, &o);
    char err[ERR_MAX];
    if (!dist_init(&argc, &argv, err, sizeof err)) die("%s", err);
    progress_setup(o.progress, o.run.quiet || dist_rank() > 0);
    if (o.threads) {
        openblas_set_num_threads(o.threads);
        parallel_set_threads(o.threads);
        gemm_set_threads(o.threads);
    }
    int status = train_run(&o.run, err, sizeof err);
    if (status < 0) die("%s", err);
    dist_finish();
    return status;
}
