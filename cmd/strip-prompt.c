/* strip-prompt — keep only the answer of generated records: drop the prompt,
 * cut the generation at its first EOS and, optionally, where it starts to
 * loop. */
#include "base/cli.h"
#include "base/io.h"
#include "stream/stream.h"

#include <getopt.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: strip-prompt [OPTION]... [FILE]\n"
    "For each record of a token stream that has a generated segment: drop the\n"
    "question (the prompt) and its padding, cut the generation after its first EOS,\n"
    "and optionally where an n-gram starts repeating. Other records pass unchanged.\n"
    "Reads FILE or standard input, writes a token stream to standard output.\n"
    "\n"
    "  -e, --eos-id ID        end-of-sequence token (default 0, <|endoftext|>);\n"
    "                         -1 cuts nothing at EOS\n"
    "      --drop-eos         drop the EOS token too (default: keep it, so readers\n"
    "                         can tell that the model stopped by itself)\n"
    "  -r, --cut-repeats N    cut where an N-token n-gram first occurs again\n"
    "  -k, --keep-prompt      keep the question segment\n"
    "  -f, --force            write the binary stream even to a terminal\n"
    "  -h, --help             show this help and exit\n"
    "      --version          show the version and exit\n"
    "\n"
    "Cut tokens are counted in the generated segment's truncation metadata.\n";

/* Index of the first position where an n-gram of length n equals one that
 * started earlier, or len when none repeats. Generations are short
 * (hundreds of tokens), so the quadratic scan is cheap. */
static uint32_t first_repeat(const uint32_t *ids, uint32_t len, uint32_t n) {
    for (uint32_t j = 1; j + n <= len; j++)
        for (uint32_t i = 0; i < j; i++)
            if (memcmp(ids + i, ids + j, (size_t)n * sizeof *ids) == 0) return j;
    return len;
}

static void cut_generated(segment *g, uint32_t keep) {
    if (keep >= g->n) return;
    g->trunc += g->n - keep;
    g->trunc_side = SIDE_RIGHT;
    g->n = keep;
}

int main(int argc, char **argv) {
    cli_init("strip-prompt");
    long eos_id = 0, cut_repeats = 0;
    int drop_eos = 0, keep_prompt = 0, force = 0;
    enum { OPT_DROP_EOS = 256, OPT_VERSION };
    static const struct option opts[] = {
        {"eos-id", required_argument, 0, 'e'},    {"drop-eos", no_argument, 0, OPT_DROP_EOS},
        {"cut-repeats", required_argument, 0, 'r'}, {"keep-prompt", no_argument, 0, 'k'},
        {"force", no_argument, 0, 'f'},           {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "e:r:kfh", opts, NULL)) != -1) {
        switch (c) {
        case 'e': eos_id = parse_long("--eos-id", optarg, -1, UINT32_MAX); break;
        case OPT_DROP_EOS: drop_eos = 1; break;
        case 'r': cut_repeats = parse_long("--cut-repeats", optarg, 1, 1 << 20); break;
        case 'k': keep_prompt = 1; break;
        case 'f': force = 1; break;
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (argc - optind > 1) usage_error("at most one input file");
    const char *in_name = optind < argc ? argv[optind] : "-";

    char err[ERR_MAX];
    stream_writer *sw = stream_writer_open(STDOUT_FILENO, force, err, sizeof err);
    if (!sw) die("%s", err);
    stream_reader *sr = stream_reader_open(open_input(in_name), in_name);
    record r = {0};
    int got;
    while ((got = stream_read(sr, &r, err, sizeof err)) > 0) {
        segment *g = record_find(&r, SEG_GENERATED);
        if (g) {
            if (!keep_prompt) record_remove(&r, SEG_QUESTION);
            g = record_find(&r, SEG_GENERATED); /* removal may move it */
            uint32_t n;
            const uint32_t *ids = segment_content(g, &n);
            memmove(g->ids, ids, (size_t)n * sizeof *ids); /* generations carry no padding */
            g->n = n;
            g->pad = 0;
            g->pad_side = SIDE_NONE;
            if (eos_id >= 0)
                for (uint32_t i = 0; i < g->n; i++)
                    if (g->ids[i] == (uint32_t)eos_id) {
                        cut_generated(g, drop_eos ? i : i + 1);
                        break;
                    }
            if (cut_repeats) cut_generated(g, first_repeat(g->ids, g->n, (uint32_t)cut_repeats));
        }
        if (stream_write(sw, &r, err, sizeof err) < 0) die("%s", err);
    }
    if (got < 0) die("%s", err);
    stream_writer_close(sw);
    stream_reader_close(sr);
    record_free(&r);
    return 0;
}
