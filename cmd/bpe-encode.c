/* bpe-encode — JSONL or text lines to a token stream with the GPT-NeoX
 * tokenizer, and (-d) a token stream back to JSONL. */
#include "base/cli.h"
#include "base/io.h"
#include "stream/record_decode.h"
#include "stream/record_encode.h"
#include "stream/stream.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: bpe-encode [OPTION]... [FILE]\n"
    "   or: bpe-encode -d [--ids | --template T] [--skip-special] [FILE]\n"
    "Encode JSONL records (one JSON object per line) into a token stream with the\n"
    "GPT-NeoX / Pythia tokenizer, byte-exact with Hugging Face tokenizers. Each line\n"
    "becomes a record with a \"question\" and an \"answer\" segment; an end-of-text\n"
    "token ends the answer. With -d, decode a token stream back into JSONL.\n"
    "Reads FILE or standard input, writes standard output.\n"
    "\n"
    "  -t, --tokenizer FILE  tokenizer.json to use (default: the model's with -m,\n"
    "                        else the installed one)\n"
    "  -m, --model DIR       use DIR/tokenizer.json\n"
    "      --fields Q[,A]    JSON members holding the question and the answer\n"
    "                        (default question,answer; a member called generated\n"
    "                        gives a generated segment); a member may hold a JSON\n"
    "                        array of token ids instead of text\n"
    "      --text            plain text: each line is a record with a question only\n"
    "      --template T      wrap each question in T, where {question} stands for it;\n"
    "                        \\n, \\t and \\\\ in T are a newline, a tab, a backslash;\n"
    "                        with -d: write a question wrapped in T without it\n"
    "      --no-eos          do not end the answer with <|endoftext|>\n"
    "      --special-as-text encode <|endoftext|> written in the text as plain text\n"
    "      --skip-bad        skip bad lines (their count goes to standard error)\n"
    "  -d, --decode          read a token stream, write one JSON object per record\n"
    "      --ids             with -d: token ids instead of text\n"
    "      --skip-special    with -d: leave special tokens out of the text\n"
    "  -f, --force           write the binary stream even to a terminal\n"
    "      --progress        show progress even when standard error is not a terminal\n"
    "  -q, --quiet           no progress, no warnings\n"
    "  -h, --help            show this help and exit\n"
    "      --version         show the version and exit\n"
    "\n"
    "A record's id is the line's \"id\" member when it is a non-negative integer,\n"
    "else its line number. Blank JSONL lines are skipped but counted. Of members\n"
    "with the same name the last counts, as in Python's json.\n";

/* How lines become records; the encoding itself is in common/record_encode.c. */
typedef struct {
    record_encoder enc;
    int text_mode, skip_bad, quiet;
} encode_opts;

static void encode_stream(encode_opts *o, const char *in_name, int force) {
    char why[ERR_MAX];
    stream_writer *sw = stream_writer_open(STDOUT_FILENO, force, why, sizeof why);
    if (!sw) die("%s", why);
    line_reader *lr = line_reader_open(open_input(in_name), in_name);
    record r = {0};
    uint64_t written = 0, bad = 0;
    double last_progress = now_seconds();
    char *line, err[256];
    size_t len;
    while ((line = line_reader_next(lr, &len))) {
        uint64_t lineno = line_reader_lineno(lr);
        int rc;
        if (o->text_mode) rc = record_encode_text(&o->enc, line, len, lineno, &r, err, sizeof err);
        else if (strspn(line, " \t\r") == len) continue;
        else rc = record_encode_json(&o->enc, line, len, lineno, &r, err, sizeof err);
        if (rc) {
            if (!o->skip_bad) die("line %llu: %s", (unsigned long long)lineno, err);
            bad++;
            continue;
        }
        if (stream_write(sw, &r, why, sizeof why) < 0) die("%s", why);
        written++;
        if (progress_enabled && (written & 255) == 0 && now_seconds() - last_progress > 0.5) {
            progress("%llu records", (unsigned long long)written);
            last_progress = now_seconds();
        }
    }
    progress_done();
    stream_writer_close(sw);
    line_reader_close(lr);
    record_free(&r);
    if (bad && !o->quiet) warn("skipped %llu bad line%s", (unsigned long long)bad, bad == 1 ? "" : "s");
}

static void flush_stdout(void *unused) { checked_fflush(stdout); }

static void decode_stream(tokenizer *tok, const prompt_template *tmpl, const char *in_name, int as_ids,
                          int skip_special, int quiet) {
    stream_reader *sr = stream_reader_open(open_input(in_name), in_name);
    long eos_id = tokenizer_token_id(tok, "<|endoftext|>");
    io_set_idle_hook(flush_stdout, NULL); /* answer each record as it comes */
    record r = {0};
    utf8_buf out = {0}, text = {0};
    uint64_t unknown = 0;
    char err[ERR_MAX];
    int got;
    while ((got = stream_read(sr, &r, err, sizeof err)) > 0) {
        out.len = 0;
        unknown += record_to_json(&r, tok, eos_id, as_ids, skip_special, tmpl, &out, &text);
        if (fwrite(out.data, 1, out.len, stdout) != out.len) checked_fflush(stdout);
    }
    if (got < 0) die("%s", err);
    checked_fflush(stdout);
    if (unknown && !quiet)
        warn("%llu token id%s beyond the tokenizer's vocabulary left out of the text", (unsigned long long)unknown,
             unknown == 1 ? "" : "s");
    stream_reader_close(sr);
    record_free(&r);
    utf8_buf_free(&out);
    utf8_buf_free(&text);
}

int main(int argc, char **argv) {
    cli_init("bpe-encode");
    encode_opts o = {0};
    record_encoder_init(&o.enc);
    char why[ERR_MAX];
    const char *tokenizer_path = NULL, *model_dir = NULL;
    int decode = 0, as_ids = 0, skip_special = 0, special_as_text = 0, force = 0, progress_forced = 0;
    int fields_given = 0;
    int encode_option_given = 0; /* one that only encoding uses */
    enum {
        OPT_FIELDS = 256, OPT_TEXT, OPT_TEMPLATE, OPT_NO_EOS, OPT_SPECIAL_AS_TEXT, OPT_SKIP_BAD, OPT_IDS,
        OPT_SKIP_SPECIAL, OPT_PROGRESS, OPT_VERSION
    };
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'},
        {"model", required_argument, 0, 'm'},
        {"fields", required_argument, 0, OPT_FIELDS},
        {"text", no_argument, 0, OPT_TEXT},
        {"template", required_argument, 0, OPT_TEMPLATE},
        {"no-eos", no_argument, 0, OPT_NO_EOS},
        {"special-as-text", no_argument, 0, OPT_SPECIAL_AS_TEXT},
        {"skip-bad", no_argument, 0, OPT_SKIP_BAD},
        {"decode", no_argument, 0, 'd'},
        {"ids", no_argument, 0, OPT_IDS},
        {"skip-special", no_argument, 0, OPT_SKIP_SPECIAL},
        {"force", no_argument, 0, 'f'},
        {"progress", no_argument, 0, OPT_PROGRESS},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "t:m:dfqh", opts, NULL)) != -1) {
        switch (c) {
        case 't': tokenizer_path = optarg; break;
        case 'm': model_dir = optarg; break;
        case OPT_FIELDS:
            if (record_encoder_set_fields(&o.enc, optarg, why, sizeof why)) usage_error("%s", why);
            fields_given = encode_option_given = 1;
            break;
        case OPT_TEXT: o.text_mode = encode_option_given = 1; break;
        case OPT_TEMPLATE:
            template_free(&o.enc.tmpl);
            if (template_parse(&o.enc.tmpl, "--template", optarg, why, sizeof why)) usage_error("%s", why);
            break;
        case OPT_NO_EOS: o.enc.eos = 0; encode_option_given = 1; break;
        case OPT_SPECIAL_AS_TEXT: special_as_text = encode_option_given = 1; break;
        case OPT_SKIP_BAD: o.skip_bad = encode_option_given = 1; break;
        case 'd': decode = 1; break;
        case OPT_IDS: as_ids = 1; break;
        case OPT_SKIP_SPECIAL: skip_special = 1; break;
        case 'f': force = 1; break;
        case OPT_PROGRESS: progress_forced = 1; break;
        case 'q': o.quiet = 1; break;
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (argc - optind > 1) usage_error("at most one input file");
    if ((as_ids || skip_special) && !decode) usage_error("--ids and --skip-special go with -d");
    if (decode && (encode_option_given || force)) usage_error("-d takes none of the encoding options");
    if (decode && as_ids && o.enc.tmpl.prefix) usage_error("--template with -d unwraps text, not --ids");
    if (o.text_mode && fields_given) usage_error("--text and --fields do not go together");
    const char *in_name = optind < argc ? argv[optind] : "-";
    progress_setup(progress_forced, o.quiet);

    char *path;
    if (tokenizer_path) path = xstrdup(tokenizer_path);
    else if (model_dir) {
        size_t n = strlen(model_dir) + sizeof "/tokenizer.json";
        path = xmalloc(n);
        snprintf(path, n, "%s/tokenizer.json", model_dir);
    } else path = data_file("tokenizer.json");
    char err[512];
    tokenizer *tok = o.enc.tok = tokenizer_open(path, err, sizeof err);
    if (!tok) die("%s: %s", path, err);
    tokenizer_set_special_as_text(tok, special_as_text);

    if (decode) {
        decode_stream(tok, o.enc.tmpl.prefix ? &o.enc.tmpl : NULL, in_name, as_ids, skip_special, o.quiet);
    } else {
        long eos = tokenizer_token_id(tok, "<|endoftext|>");
        if (o.enc.eos && !o.text_mode && eos < 0) die("%s has no <|endoftext|> token (use --no-eos)", path);
        o.enc.eos_id = (uint32_t)eos;
        encode_stream(&o, in_name, force);
    }
    tokenizer_free(tok);
    record_encoder_free(&o.enc);
    free(path);
    return 0;
}
