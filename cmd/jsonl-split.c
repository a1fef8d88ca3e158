/* jsonl-split — deterministic, seeded train/test split of JSONL records. */
#include "base/cli.h"
#include "base/io.h"
#include "stream/jsonl_split.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: jsonl-split [OPTION]... [FILE]\n"
    "Split JSONL records (one JSON object per line) into a train and a test part,\n"
    "deterministically from a seed. Reads FILE, or standard input.\n"
    "Each record gets an \"id\" field, its line number in FILE, unless it has one.\n"
    "\n"
    "  -p, --part train|test   write that part to standard output\n"
    "      --train FILE        write the train part to FILE\n"
    "      --test FILE         write the test part to FILE\n"
    "  -r, --test-ratio R      fraction of records in the test part (default 0.1)\n"
    "  -n, --test-count N      exact number of test records (overrides -r)\n"
    "  -s, --seed S            seed of the shuffle that picks test records (default 123)\n"
    "      --skip-bad          skip lines that are not JSON objects (count on stderr)\n"
    "  -q, --quiet             no warnings\n"
    "  -h, --help              show this help and exit\n"
    "      --version           show the version and exit\n"
    "\n"
    "Blank lines are ignored. Records keep their input order in each part.\n";

static void write_part(const char *path, const split_set *s, int test) {
    FILE *f = stdout;
    if (path && strcmp(path, "-") != 0) {
        f = fopen(path, "w");
        if (!f) die("%s: %m", path);
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->recs[i].is_test == test) split_write_record(f, &s->recs[i]);
    if (f == stdout) checked_fflush(f);
    else if (fclose(f) != 0) die("%s: write error: %m", path);
}

int main(int argc, char **argv) {
    cli_init("jsonl-split");
    const char *part = NULL, *train_path = NULL, *test_path = NULL;
    double ratio = 0.1;
    long test_count = -1;
    uint64_t seed = 123;
    int skip_bad = 0, quiet = 0;
    enum { OPT_TRAIN = 256, OPT_TEST, OPT_SKIP_BAD, OPT_VERSION };
    static const struct option opts[] = {
        {"part", required_argument, 0, 'p'},        {"train", required_argument, 0, OPT_TRAIN},
        {"test", required_argument, 0, OPT_TEST},   {"test-ratio", required_argument, 0, 'r'},
        {"test-count", required_argument, 0, 'n'},  {"seed", required_argument, 0, 's'},
        {"skip-bad", no_argument, 0, OPT_SKIP_BAD}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},              {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "p:r:n:s:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (strcmp(optarg, "train") && strcmp(optarg, "test")) usage_error("--part: expected train or test, not '%s'", optarg);
            part = optarg;
            break;
        case OPT_TRAIN: train_path = optarg; break;
        case OPT_TEST: test_path = optarg; break;
        case 'r': ratio = parse_double("--test-ratio", optarg, 0, 1); break;
        case 'n': test_count = parse_long("--test-count", optarg, 0, LONG_MAX); break;
        case 's': seed = (uint64_t)parse_long("--seed", optarg, 0, LONG_MAX); break;
        case OPT_SKIP_BAD: skip_bad = 1; break;
        case 'q': quiet = 1; break;
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (argc - optind > 1) usage_error("at most one input file");
    if (!part && !train_path && !test_path) usage_error("nothing to write: give --part, --train or --test");
    if (part && ((train_path && strcmp(train_path, "-") == 0) || (test_path && strcmp(test_path, "-") == 0)))
        usage_error("--part and a '-' output both write to standard output");
    const char *in_name = optind < argc ? argv[optind] : "-";

    line_reader *lr = line_reader_open(open_input(in_name), in_name);
    split_set set = {0};
    char err[ERR_MAX];
    if (!split_read(&set, lr, skip_bad, err, sizeof err)) die("%s", err);
    line_reader_close(lr);
    if (set.bad && !quiet) warn("skipped %zu bad line%s", set.bad, set.bad == 1 ? "" : "s");

    size_t n_test = test_count >= 0 ? (size_t)test_count : (size_t)llround(ratio * (double)set.n);
    if (n_test > set.n) die("--test-count %zu exceeds the %zu records", n_test, set.n);
    split_pick(&set, n_test, seed);
    if (part) write_part("-", &set, strcmp(part, "test") == 0);
    if (train_path) write_part(train_path, &set, 0);
    if (test_path) write_part(test_path, &set, 1);
    split_free(&set);
    return 0;
}
