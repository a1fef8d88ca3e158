/* neox-gen — answer the questions of a token stream with a GPT-NeoX model
 * (appending a generated segment), score reference answers, or answer
 * questions typed at a terminal. */
#include "kernels/blas.h"
#include "base/cli.h"
#include "nn/generate.h"
#include "base/io.h"
#include "nn/model.h"
#include "nn/model_io.h"
#include "stream/stream.h"
#include "stream/template.h"
#include "tokenizer/tokenizer.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: neox-gen -m DIR [OPTION]... [FILE]\n"
    "Generate an answer for each record of a token stream with the GPT-NeoX model in\n"
    "DIR (config.json and model.safetensors, or shards with their index) and write\n"
    "the stream with a \"generated\" segment added after each question. Reads FILE\n"
    "or standard input.\n"
    "\n"
    "  -m, --model DIR           the model directory (required)\n"
    "  -n, --max-new N           generate at most N tokens per record (default 100)\n"
    "  -b, --batch B             decode B records together (default 1)\n"
    "      --dtype fp32|bf16     fp32: exact products (default); bf16: the linear\n"
    "                            layers' weights in bf16 with fp32 accumulation\n"
    "                            (AMX or AVX-512 BF16): half the bytes read per\n"
    "                            decoding step, half the memory; close to, not\n"
    "                            equal to, fp32\n"
    "      --eos-id ID           stop after emitting ID (default: the config's\n"
    "                            eos_token_id); -1 never stops early\n"
    "      --repetition-penalty R  penalize tokens already in the prompt or\n"
    "                            the generation (Hugging Face semantics; default 1)\n"
    "      --no-repeat-ngram N   never repeat an N-gram (default 0: off)\n"
    "      --temperature T       sample with temperature T (0: greedy)\n"
    "      --top-k K             sample from the K most likely tokens\n"
    "      --top-p P             sample from the most likely tokens holding P of\n"
    "                            the probability\n"
    "      --seed S              seed of the sampling (default 0)\n"
    "      --score               write one JSON line per record instead: the\n"
    "                            answer's token count, summed negative\n"
    "                            log-likelihood and perplexity given the question\n"
    "  -i, --interactive         answer questions typed one per line (text in,\n"
    "                            text out)\n"
    "      --template TEXT       interactive prompt template, {question} marks the\n"
    "                            question (default: DIR/prompt_template.txt, which\n"
    "                            neox-train --template records, else\n"
    "                            \"### Question:\\n{question}\\n\\n### Answer:\")\n"
    "      --tokenizer FILE      interactive tokenizer.json (default: DIR's, else\n"
    "                            the installed one)\n"
    "      --device DEV          cpu (default) or cuda: weights and KV cache on the GPU\n"
    "  -f, --force               write the binary stream even to a terminal\n"
    "      --progress            show progress even when stderr is not a terminal\n"
    "  -v, --verbose             say which kernels compute (bf16 on AMX or\n"
    "                            AVX512-BF16, fp32 on OpenBLAS's CORE, or the GPU)\n"
    "                            and on how many threads; at the end, the new\n"
    "                            tokens per second (and on a GPU its memory held)\n"
    "  -q, --quiet               no progress\n"
    "  -h, --help                show this help and exit\n"
    "      --version             show the version and exit\n"
    "\n"
    "Greedy decoding unless --temperature, --top-k or --top-p is given.\n";

typedef struct {
    const char *model_dir, *template, *tokenizer;
    int score, interactive, force, bf16, verbose;
    gen_opts gen;
} options;

/* One record in flight: records leave in input order, whenever they finish. */
typedef struct {
    record rec;
    gen_seq seq;
} job;

static const uint32_t *question_of(record *r, uint64_t recno, const neox_model *m, uint32_t *n) {
    segment *q = record_find(r, SEG_QUESTION);
    if (!q) die("record %llu: no question segment", (unsigned long long)recno);
    const uint32_t *ids = segment_content(q, n);
    if (*n == 0) die("record %llu: empty question", (unsigned long long)recno);
    if (*n > (uint32_t)m->cfg.max_positions)
        die("record %llu: question of %u tokens, more than the model's %d positions",
            (unsigned long long)recno, *n, m->cfg.max_positions);
    for (uint32_t i = 0; i < *n; i++)
        if (ids[i] >= (uint32_t)m->cfg.vocab_size)
            die("record %llu: token id %u is outside the model's vocabulary (%d)",
                (unsigned long long)recno, ids[i], m->cfg.vocab_size);
    return ids;
}

static void finish_record(stream_writer *sw, job *j) {
    record_remove(&j->rec, SEG_GENERATED);
    segment *g = record_segment(&j->rec, SEG_GENERATED);
    if (!g) die("record %llu: too many segments", (unsigned long long)j->rec.id);
    uint32_t n = (uint32_t)(j->seq.n - j->seq.prompt_len);
    if (n) segment_append(g, j->seq.ids + j->seq.prompt_len, n);
    char err[ERR_MAX];
    if (stream_write(sw, &j->rec, err, sizeof err) < 0) die("%s", err);
    record_free(&j->rec);
    gen_seq_free(&j->seq);
}

static void run_generate(const neox_model *m, const options *o, stream_reader *sr, stream_writer *sw) {
    generator g;
    generator_init(&g, m, &o->gen);
    /* The queue holds every record read and not yet written, in input order. */
    size_t cap = 16, head = 0, tail = 0;
    job **queue = xmalloc(cap * sizeof *queue);
    int eof = 0;
    uint64_t tokens = 0, generated = 0;
    double t0 = now_seconds();
    for (;;) {
        while (head < tail && queue[head]->seq.done) { /* write before any read can block */
            generated += (uint64_t)(queue[head]->seq.n - queue[head]->seq.prompt_len);
            finish_record(sw, queue[head]);
            free(queue[head++]);
        }
        if (head == tail) head = tail = 0;
        while (!eof && g.num_active < o->gen.batch) {
            job *j = xcalloc(1, sizeof *j);
            char err[ERR_MAX];
            int got = stream_read(sr, &j->rec, err, sizeof err);
            if (got < 0) die("%s", err);
            if (!got) {
                eof = 1;
                record_free(&j->rec);
                free(j);
                break;
            }
            uint32_t n;
            const uint32_t *q = question_of(&j->rec, stream_records_read(sr), m, &n);
            if (tail == cap && head > 0) { /* reuse the space of written records */
                memmove(queue, queue + head, (tail - head) * sizeof *queue);
                tail -= head;
                head = 0;
            }
            if (tail == cap) queue = xrealloc(queue, (cap *= 2) * sizeof *queue);
            queue[tail++] = j;
            generator_add(&g, &j->seq, q, (int)n, j->rec.id);
            if (j->seq.done) break; /* let it be written before the next read */
        }
        if (g.num_active == 0) {
            if (eof && head == tail) break;
            continue;
        }
        tokens += (uint64_t)g.num_active;
        generator_step(&g);
        progress("%llu records, %.1f tokens/s", (unsigned long long)stream_records_read(sr),
                 tokens / (now_seconds() - t0));
    }
    progress_done();
    if (o->verbose) {
        double s = now_seconds() - t0;
        fprintf(stderr, "neox-gen: %llu new tokens in %.2f s: %.1f tokens/s (prefill included, loading not)\n",
                (unsigned long long)generated, s, s > 0 ? generated / s : 0.0);
    }
    free(queue);
    generator_free(&g);
}

static void flush_stdout(void *unused) {
    (void)unused;
    checked_fflush(stdout);
}

static void run_score(const neox_model *m, const options *o, stream_reader *sr) {
    neox_decoder dec;
    decoder_init(&dec, m, 1, 0, DECODER_PREFILL_ROWS);
    float *logits = device_host_alloc(m->dev, (size_t)dec.max_rows * m->cfg.vocab_size * sizeof(float));
    io_set_idle_hook(flush_stdout, NULL);
    record r = {0};
    char err[ERR_MAX];
    int got;
    while ((got = stream_read(sr, &r, err, sizeof err)) > 0) {
        uint64_t recno = stream_records_read(sr);
        uint32_t nq, na;
        const uint32_t *q = question_of(&r, recno, m, &nq);
        segment *a = record_find(&r, SEG_ANSWER);
        if (!a) die("record %llu: no answer segment to score", (unsigned long long)recno);
        const uint32_t *ans = segment_content(a, &na);
        if ((uint64_t)nq + na > (uint64_t)m->cfg.max_positions)
            die("record %llu: question and answer of %u tokens, more than the model's %d positions",
                (unsigned long long)recno, nq + na, m->cfg.max_positions);
        for (uint32_t i = 0; i < na; i++)
            if (ans[i] >= (uint32_t)m->cfg.vocab_size)
                die("record %llu: token id %u is outside the model's vocabulary (%d)",
                    (unsigned long long)recno, ans[i], m->cfg.vocab_size);
        double nll = score_answer(&dec, q, (int)nq, ans, (int)na, logits);
        if (na)
            printf("{\"id\":%llu,\"tokens\":%u,\"nll\":%.17g,\"ppl\":%.17g}\n", (unsigned long long)r.id,
                   na, nll, exp(nll / na));
        else
            printf("{\"id\":%llu,\"tokens\":0,\"nll\":0,\"ppl\":null}\n", (unsigned long long)r.id);
        progress("%llu records scored", (unsigned long long)recno);
    }
    if (got < 0) die("%s", err);
    progress_done();
    checked_fflush(stdout);
    record_free(&r);
    device_host_release(m->dev, logits);
    decoder_free(&dec);
}

/* Writes the generated text decoded so far beyond the *shown bytes. */
static void show_answer(const tokenizer *tok, const gen_seq *s, size_t *shown, int final) {
    utf8_buf text = {0};
    size_t len = tokenizer_decode_partial(tok, s->ids + s->prompt_len, (size_t)(s->n - s->prompt_len),
                                          final, &text);
    if (len > *shown) {
        fwrite(text.data + *shown, 1, len - *shown, stdout);
        *shown = len;
    }
    checked_fflush(stdout);
    utf8_buf_free(&text);
}

static void run_interactive(const neox_model *m, const options *o) {
    /* The model's own tokenizer.json first, as bpe-encode -m does. */
    char *path;
    if (o->tokenizer) {
        path = xstrdup(o->tokenizer);
    } else {
        path = xmalloc(strlen(o->model_dir) + 16);
        sprintf(path, "%s/tokenizer.json", o->model_dir);
        if (access(path, R_OK) != 0) {
            free(path);
            path = data_file("tokenizer.json");
        }
    }
    char err[512];
    tokenizer *tok = tokenizer_open(path, err, sizeof err);
    if (!tok) die("%s: %s", path, err);
    free(path);
    prompt_template tmpl;
    char why[ERR_MAX];
    if (template_parse(&tmpl, "--template", o->template, why, sizeof why)) usage_error("%s", why);
    gen_opts go = o->gen;
    go.batch = 1;
    generator g;
    generator_init(&g, m, &go);
    int tty = isatty(STDIN_FILENO);
    line_reader *lr = line_reader_open(STDIN_FILENO, "-");
    size_t len;
    char *line;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            checked_fflush(stdout);
        }
        if (!(line = line_reader_next(lr, &len))) break;
        if (len == 0) continue;
        utf8_buf prompt = {0};
        template_wrap(&tmpl, line, len, &prompt);
        token_ids ids = {0};
        int bad = tokenizer_encode(tok, prompt.data, prompt.len, &ids, NULL) != 0;
        utf8_buf_free(&prompt);
        if (bad || ids.n == 0) {
            warn("line %llu: not valid UTF-8", (unsigned long long)line_reader_lineno(lr));
            token_ids_free(&ids);
            continue;
        }
        /* Refused as the stream path refuses such a record (never answered
         * from a cut prompt), but the session goes on. */
        if (ids.n > (size_t)m->cfg.max_positions) {
            warn("line %llu: question of %zu tokens, more than the model's %d positions; skipped",
                 (unsigned long long)line_reader_lineno(lr), ids.n, m->cfg.max_positions);
            token_ids_free(&ids);
            continue;
        }
        gen_seq s;
        size_t shown = 0;
        generator_add(&g, &s, ids.ids, (int)ids.n, line_reader_lineno(lr));
        show_answer(tok, &s, &shown, s.done);
        while (!s.done) {
            generator_step(&g);
            show_answer(tok, &s, &shown, s.done);
        }
        fputs("\n", stdout);
        checked_fflush(stdout);
        gen_seq_free(&s);
        token_ids_free(&ids);
    }
    line_reader_close(lr);
    generator_free(&g);
    tokenizer_free(tok);
    template_free(&tmpl);
}

int main(int argc, char **argv) {
    cli_init("neox-gen");
    blas_setup(argv);
    options o = {
                 .gen = {.batch = 1, .max_new = 100, .eos_id = -2,
                         .sampling = {.temperature = 1.0, .top_p = 1.0, .repetition_penalty = 1.0}}};
    int progress_forced = 0, quiet = 0, temperature_set = 0;
    const char *device_name = device_default_name();
    enum { OPT_EOS = 256, OPT_REP, OPT_NGRAM, OPT_TEMP, OPT_TOPK, OPT_TOPP, OPT_SEED, OPT_SCORE,
           OPT_TEMPLATE, OPT_TOKENIZER, OPT_PROGRESS, OPT_VERSION, OPT_DTYPE, OPT_DEVICE };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},        {"max-new", required_argument, 0, 'n'},
        {"batch", required_argument, 0, 'b'},        {"eos-id", required_argument, 0, OPT_EOS},
        {"dtype", required_argument, 0, OPT_DTYPE},  {"device", required_argument, 0, OPT_DEVICE},
        {"repetition-penalty", required_argument, 0, OPT_REP},
        {"no-repeat-ngram", required_argument, 0, OPT_NGRAM},
        {"temperature", required_argument, 0, OPT_TEMP}, {"top-k", required_argument, 0, OPT_TOPK},
        {"top-p", required_argument, 0, OPT_TOPP},   {"seed", required_argument, 0, OPT_SEED},
        {"score", no_argument, 0, OPT_SCORE},        {"interactive", no_argument, 0, 'i'},
        {"template", required_argument, 0, OPT_TEMPLATE},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"force", no_argument, 0, 'f'},              {"progress", no_argument, 0, OPT_PROGRESS},
        {"quiet", no_argument, 0, 'q'},              {"help", no_argument, 0, 'h'},
        {"verbose", no_argument, 0, 'v'},
        {"version", no_argument, 0, OPT_VERSION},    {0, 0, 0, 0}};
    sampler_opts *so = &o.gen.sampling;
    int c;
    while ((c = getopt_long(argc, argv, "m:n:b:ifqvh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model_dir = optarg; break;
        case 'n': o.gen.max_new = (int)parse_long("--max-new", optarg, 0, 1 << 20); break;
        case 'b': o.gen.batch = (int)parse_long("--batch", optarg, 1, 256); break;
        case OPT_DTYPE:
            if (strcmp(optarg, "fp32") && strcmp(optarg, "bf16")) usage_error("--dtype: fp32 or bf16");
            o.bf16 = optarg[0] == 'b';
            break;
        case OPT_DEVICE: device_name = optarg; break;
        case OPT_EOS: o.gen.eos_id = parse_long("--eos-id", optarg, -1, UINT32_MAX); break;
        case OPT_REP: so->repetition_penalty = parse_double("--repetition-penalty", optarg, 1e-6, 1e6); break;
        case OPT_NGRAM: so->no_repeat_ngram = (int)parse_long("--no-repeat-ngram", optarg, 0, 1 << 20); break;
        case OPT_TEMP:
            so->temperature = parse_double("--temperature", optarg, 0, 1e6);
            temperature_set = 1;
            break;
        case OPT_TOPK: so->top_k = (int)parse_long("--top-k", optarg, 1, 1 << 30); so->sample = 1; break;
        case OPT_TOPP: so->top_p = parse_double("--top-p", optarg, 1e-9, 1); so->sample = 1; break;
        case OPT_SEED: o.gen.seed = (uint64_t)parse_long("--seed", optarg, 0, INT64_MAX); break;
        case OPT_SCORE: o.score = 1; break;
        case 'i': o.interactive = 1; break;
        case OPT_TEMPLATE: o.template = optarg; break;
        case OPT_TOKENIZER: o.tokenizer = optarg; break;
        case 'f': o.force = 1; break;
        case OPT_PROGRESS: progress_forced = 1; break;
        case 'q': quiet = 1; break;
        case 'v': o.verbose = 1; break;
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (!o.model_dir) usage_error("no model: give -m DIR");
    if (argc - optind > 1) usage_error("at most one input file");
    if (o.score && o.interactive) usage_error("--score and --interactive do not go together");
    if (o.interactive && optind < argc) usage_error("--interactive reads standard input, not a file");
    if (temperature_set) so->sample = so->temperature > 0;
    progress_setup(progress_forced, quiet || o.interactive);

    char err[600];
    const device_ops *dev = device_open(device_name, err, sizeof err);
    if (!dev) die("%s", err);
    int on_cpu = dev == &device_cpu;
    if (on_cpu && o.bf16 && !gemm_bf16_available()) o.bf16 = 0;
    if (o.verbose) device_tell_kernels(dev, o.bf16);
    neox_model m;
    /* bf16 on the CPU: the linear weights are loaded into their bf16 copies
     * only; a GPU makes its copies from the fp32 weights it was given. */
    if (!(o.bf16 && on_cpu ? model_load_bf16(&m, o.model_dir, err, sizeof err)
                           : model_load(&m, o.model_dir, err, sizeof err)))
        die("%s", err);
    if (!on_cpu) {
        if (model_to_device(&m, dev)) die("--device %s: too little memory for the model", dev->name);
        if (o.bf16) model_set_dtype(&m, DTYPE_BF16, GEMM_FOR_FORWARD);
    }
    if (o.gen.eos_id == -2) o.gen.eos_id = m.cfg.eos_token_id;

    if (o.interactive) {
        char *recorded = NULL;
        if (!o.template && !template_read_dir(o.model_dir, &recorded, err, sizeof err)) die("%s", err);
        if (!o.template) o.template = recorded ? recorded : TEMPLATE_DEFAULT;
        run_interactive(&m, &o);
        free(recorded);
    } else {
        const char *in_name = optind < argc ? argv[optind] : "-";
        stream_writer *sw = o.score ? NULL : stream_writer_open(STDOUT_FILENO, o.force, err, sizeof err);
        if (!o.score && !sw) die("%s", err);
        stream_reader *sr = stream_reader_open(open_input(in_name), in_name);
        if (o.score) {
            run_score(&m, &o, sr);
        } else {
            run_generate(&m, &o, sr, sw);
            stream_writer_close(sw);
        }
        stream_reader_close(sr);
    }
    if (o.verbose) device_tell_peak_memory(dev);
    model_free(&m);
    return 0;
}
