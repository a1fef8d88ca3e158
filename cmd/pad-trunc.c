/* pad-trunc — truncate and pad the question and answer segments of a token
 * stream to fixed lengths, recording both as segment metadata. */
#include "base/cli.h"
#include "base/io.h"
#include "stream/stream.h"

#include <getopt.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: pad-trunc [OPTION]... [FILE]\n"
    "Truncate the question segment to at most N tokens and the answer segment to at\n"
    "most M, then pad them to exactly N and M (questions on the left, answers on the\n"
    "right). Reads a token stream from FILE or standard input, writes one to standard\n"
    "output. Padding and truncation are recorded in the stream, so later tools skip\n"
    "pad tokens by count, never by value.\n"
    "\n"
    "  -q, --question N          question length (omit: question untouched)\n"
    "  -a, --answer M            answer length (omit: answer untouched)\n"
    "      --pad-id ID           token id of padding (default 1, <|padding|>)\n"
    "      --no-pad              only truncate\n"
    "      --cut-question SIDE   end the question loses tokens from: left (default,\n"
    "                            keeps its end, next to the answer) or right\n"
    "      --cut-answer SIDE     end the answer loses tokens from: right (default,\n"
    "                            keeps its beginning) or left\n"
    "  -f, --force               write the binary stream even to a terminal\n"
    "  -h, --help                show this help and exit\n"
    "      --version             show the version and exit\n"
    "\n"
    "Existing padding is removed first, so pad-trunc can be applied again.\n";

static uint8_t parse_side(const char *opt, const char *arg) {
    if (strcmp(arg, "left") == 0) return SIDE_LEFT;
    if (strcmp(arg, "right") == 0) return SIDE_RIGHT;
    usage_error("%s: expected left or right, not '%s'", opt, arg);
}

/* Removes padding, cuts to at most limit tokens from cut_side, then pads to
 * exactly limit on pad_side (unless pad_id < 0). */
static void fit_segment(segment *s, uint32_t limit, uint8_t cut_side, uint8_t pad_side, long pad_id) {
    uint32_t n;
    const uint32_t *content = segment_content(s, &n);
    memmove(s->ids, content, (size_t)n * sizeof *s->ids);
    s->n = n;
    s->pad = 0;
    s->pad_side = SIDE_NONE;
    if (n > limit) {
        uint32_t cut = n - limit;
        if (cut_side == SIDE_LEFT) memmove(s->ids, s->ids + cut, (size_t)limit * sizeof *s->ids);
        s->n = limit;
        /* A second cut from the other end can't be described by one side:
         * the later side wins, the count stays the total. */
        s->trunc += cut;
        s->trunc_side = cut_side;
    }
    if (pad_id < 0 || s->n == limit) return;
    uint32_t pad = limit - s->n;
    if (pad_side == SIDE_LEFT) {
        uint32_t old = s->n;
        for (uint32_t i = 0; i < pad; i++) segment_push(s, 0); /* grow, then shift */
        memmove(s->ids + pad, s->ids, (size_t)old * sizeof *s->ids);
        for (uint32_t i = 0; i < pad; i++) s->ids[i] = (uint32_t)pad_id;
    } else {
        for (uint32_t i = 0; i < pad; i++) segment_push(s, (uint32_t)pad_id);
    }
    s->pad = pad;
    s->pad_side = pad_side;
}

int main(int argc, char **argv) {
    cli_init("pad-trunc");
    long q_len = -1, a_len = -1, pad_id = 1;
    int no_pad = 0, force = 0;
    uint8_t cut_q = SIDE_LEFT, cut_a = SIDE_RIGHT;
    enum { OPT_PAD_ID = 256, OPT_NO_PAD, OPT_CUT_Q, OPT_CUT_A, OPT_VERSION };
    static const struct option opts[] = {
        {"question", required_argument, 0, 'q'},     {"answer", required_argument, 0, 'a'},
        {"pad-id", required_argument, 0, OPT_PAD_ID}, {"no-pad", no_argument, 0, OPT_NO_PAD},
        {"cut-question", required_argument, 0, OPT_CUT_Q}, {"cut-answer", required_argument, 0, OPT_CUT_A},
        {"force", no_argument, 0, 'f'},              {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},    {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "q:a:fh", opts, NULL)) != -1) {
        switch (c) {
        case 'q': q_len = parse_long("--question", optarg, 0, STREAM_MAX_RECORD_BYTES / 4); break;
        case 'a': a_len = parse_long("--answer", optarg, 0, STREAM_MAX_RECORD_BYTES / 4); break;
        case OPT_PAD_ID: pad_id = parse_long("--pad-id", optarg, 0, UINT32_MAX); break;
        case OPT_NO_PAD: no_pad = 1; break;
        case OPT_CUT_Q: cut_q = parse_side("--cut-question", optarg); break;
        case OPT_CUT_A: cut_a = parse_side("--cut-answer", optarg); break;
        case 'f': force = 1; break;
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (argc - optind > 1) usage_error("at most one input file");
    if (q_len < 0 && a_len < 0) usage_error("give a question length (-q) or an answer length (-a)");
    if (no_pad) pad_id = -1;
    const char *in_name = optind < argc ? argv[optind] : "-";

    char err[ERR_MAX];
    stream_writer *sw = stream_writer_open(STDOUT_FILENO, force, err, sizeof err);
    if (!sw) die("%s", err);
    stream_reader *sr = stream_reader_open(open_input(in_name), in_name);
    record r = {0};
    int got;
    while ((got = stream_read(sr, &r, err, sizeof err)) > 0) {
        segment *s;
        if (q_len >= 0 && (s = record_find(&r, SEG_QUESTION))) fit_segment(s, (uint32_t)q_len, cut_q, SIDE_LEFT, pad_id);
        if (a_len >= 0 && (s = record_find(&r, SEG_ANSWER))) fit_segment(s, (uint32_t)a_len, cut_a, SIDE_RIGHT, pad_id);
        if (stream_write(sw, &r, err, sizeof err) < 0) die("%s", err);
    }
    if (got < 0) die("%s", err);
    stream_writer_close(sw);
    stream_reader_close(sr);
    record_free(&r);
    return 0;
}
