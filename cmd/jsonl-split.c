/* jsonl-split — deterministic, seeded train/test split of JSONL records. */
#include "base/cli.h"
#include "base/io.h"
#include "base/rng.h"

#include <cJSON.h>
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

typedef struct {
    char *text;     /* the line as read */
    uint64_t line;  /* its line number */
    int has_id;
    int is_test;
} line_rec;

/* Writes one record, adding "id" as the first member unless present. */
static void write_record(FILE *f, const line_rec *r) {
    if (r->has_id) {
        fprintf(f, "%s\n", r->text);
        return;
    }
    const char *brace = strchr(r->text, '{'); /* validated: an object */
    const char *after = brace + 1;
    /* Whitespace as cJSON accepted it: any byte up to ' ', control bytes too. */
    while (*after && (unsigned char)*after <= ' ') after++;
    fprintf(f, "%.*s{\"id\":%llu%s%s\n", (int)(brace - r->text), r->text,
            (unsigned long long)r->line, *after == '}' ? "" : ",", brace + 1);
}

static void write_part(const char *path, const line_rec *recs, size_t n, int test) {
    FILE *f = stdout;
    if (path && strcmp(path, "-") != 0) {
        f = fopen(path, "w");
        if (!f) die("%s: %m", path);
    }
    for (size_t i = 0; i < n; i++)
        if (recs[i].is_test == test) write_record(f, &recs[i]);
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
    line_rec *recs = NULL;
    size_t n = 0, cap = 0, bad = 0;
    char *line;
    size_t len;
    while ((line = line_reader_next(lr, &len))) {
        if (strspn(line, " \t\r") == len) continue;
        uint64_t lineno = line_reader_lineno(lr);
        cJSON *obj = cJSON_ParseWithLengthOpts(line, len + 1, NULL, 1) /* + the NUL cJSON checks for */;
        if (!cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            if (!skip_bad) die("line %llu: not a JSON object", (unsigned long long)lineno);
            bad++;
            continue;
        }
        if (n == cap) recs = xrealloc(recs, (cap = cap ? cap * 2 : 1024) * sizeof *recs);
        recs[n] = (line_rec){xstrdup(line), lineno, cJSON_GetObjectItemCaseSensitive(obj, "id") != NULL, 0};
        n++;
        cJSON_Delete(obj);
    }
    line_reader_close(lr);
    if (bad && !quiet) warn("skipped %zu bad line%s", bad, bad == 1 ? "" : "s");

    /* The first n_test positions of a seeded Fisher-Yates permutation are
     * the test records: the same seed and input give the same split. */
    size_t n_test = test_count >= 0 ? (size_t)test_count : (size_t)llround(ratio * (double)n);
    if (n_test > n) die("--test-count %zu exceeds the %zu records", n_test, n);
    size_t *perm = xmalloc((n ? n : 1) * sizeof *perm);
    for (size_t i = 0; i < n; i++) perm[i] = i;
    rng_state rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < n_test; i++) {
        size_t j = i + (size_t)rng_below(&rng, n - i);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        recs[perm[i]].is_test = 1;
    }

    if (part) write_part("-", recs, n, strcmp(part, "test") == 0);
    if (train_path) write_part(train_path, recs, n, 0);
    if (test_path) write_part(test_path, recs, n, 1);
    for (size_t i = 0; i < n; i++) free(recs[i].text);
    free(recs);
    free(perm);
    return 0;
}
