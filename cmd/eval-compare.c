/* eval-compare — compare generated answers of one or more models with the
 * reference answers: a metric table, JSON, or an HTML report. */
#include "base/cli.h"
#include "eval/evalset.h"
#include "eval/losslog.h"
#include "eval/report.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_REFUSAL "keep the discussion relevant to Lamini"
#define DEFAULT_EXAMPLES 10

static const char HELP[] =
    "Usage: eval-compare [OPTIONS] [--label NAME] [--score SCORES.jsonl] RESULTS.jsonl ...\n"
    "Compare generated answers with the reference answers, one column per RESULTS\n"
    "file (JSON lines with id, question, answer, generated and optionally stop, as\n"
    "bpe-encode -d writes them). Records are joined by id across the files.\n"
    "\n"
    "  -l, --label NAME      name of the next RESULTS file in the output\n"
    "                        (default: its file name without .jsonl)\n"
    "  -s, --score FILE      neox-gen --score output (id, tokens, nll) for the\n"
    "                        next RESULTS file: adds perplexity\n"
    "  -j, --json            print JSON instead of the table\n"
    "      --html FILE       also write a self-contained HTML report to FILE\n"
    "  -n, --examples N      side-by-side answers in the HTML report (default 10)\n"
    "      --log FILE        neox-train log.jsonl to plot in the HTML report\n"
    "      --title TEXT      title of the HTML report\n"
    "      --note TEXT       a paragraph under the HTML report's title (repeatable)\n"
    "      --refusal TEXT    phrase that marks a refusal (default: \"" DEFAULT_REFUSAL "\")\n"
    "      --allow-missing   compare the records complete in every file even when\n"
    "                        ids are missing, differ, or lack a score (still reported)\n"
    "  -h, --help            show this help\n"
    "      --version         show the version\n"
    "\n"
    "Metrics (eval-compare(1) defines each): exact match, token F1, ROUGE-L F1,\n"
    "corpus BLEU-4, answer length, repetition, EOS stops, off-topic refusals,\n"
    "false refusals, perplexity.\n";

enum { OPT_HTML = 256, OPT_LOG, OPT_TITLE, OPT_NOTE, OPT_REFUSAL, OPT_ALLOW_MISSING, OPT_VERSION };

int main(int argc, char **argv) {
    cli_init("eval-compare");
    static const struct option longopts[] = {
        {"label", required_argument, NULL, 'l'},
        {"score", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"html", required_argument, NULL, OPT_HTML},
        {"examples", required_argument, NULL, 'n'},
        {"log", required_argument, NULL, OPT_LOG},
        {"title", required_argument, NULL, OPT_TITLE},
        {"note", required_argument, NULL, OPT_NOTE},
        {"refusal", required_argument, NULL, OPT_REFUSAL},
        {"allow-missing", no_argument, NULL, OPT_ALLOW_MISSING},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {0, 0, 0, 0},
    };
    evalset set = {0};
    const char *html = NULL, *log_path = NULL, *title = "tunepipe evaluation", *refusal = DEFAULT_REFUSAL;
    const char *label = NULL, *score = NULL; /* for the next results file */
    const char **notes = xmalloc((size_t)argc * sizeof *notes); /* at most one per argument */
    size_t nnotes = 0;
    long examples = -1;
    int json = 0, allow_missing = 0;
    int c;
    /* The leading '-' returns the files in order among the options (as
     * option 1), so --label and --score can apply to the file after them. */
    while ((c = getopt_long(argc, argv, "-l:s:jn:h", longopts, NULL)) != -1) {
        switch (c) {
        case 1:
            evalset_add(&set, optarg, label)->score_path = score ? xstrdup(score) : NULL;
            label = score = NULL;
            break;
        case 'l':
            if (label) usage_error("--label %s: --label %s already names the next file", optarg, label);
            if (!*optarg) usage_error("--label: empty label");
            label = optarg;
            break;
        case 's':
            if (score) usage_error("--score %s: --score %s already scores the next file", optarg, score);
            score = optarg;
            break;
        case 'j': json = 1; break;
        case OPT_HTML: html = optarg; break;
        case 'n': examples = parse_long("--examples", optarg, 0, 1000000); break;
        case OPT_LOG: log_path = optarg; break;
        case OPT_TITLE: title = optarg; break;
        case OPT_NOTE: notes[nnotes++] = optarg; break;
        case OPT_REFUSAL: refusal = optarg; break;
        case OPT_ALLOW_MISSING: allow_missing = 1; break;
        case 'h': print_help_and_exit(HELP);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (label || score) usage_error("--label and --score go before the results file they describe");
    if (!set.ninputs) usage_error("no results file given");
    if (!html && (log_path || examples >= 0 || nnotes)) usage_error("--log, --examples and --note need --html");
    for (size_t i = 0; i < set.ninputs; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(set.inputs[i].label, set.inputs[j].label) == 0)
                usage_error("two inputs are labelled '%s': name them with --label", set.inputs[i].label);

    char err[ERR_MAX];
    if (!evalset_load(&set, err, sizeof err)) die("%s", err);
    loss_log *log = NULL;
    if (log_path && !(log = loss_log_read(log_path, err, sizeof err))) die("%s", err);
    if (evalset_join(&set)) {
        if (!allow_missing)
            die("%zu problem%s joining the inputs (above); --allow-missing compares the %zu records complete in "
                "every input", set.problems, set.problems == 1 ? "" : "s", set.ncompared);
        warn("comparing the %zu records complete in every input", set.ncompared);
    }
    if (!set.ncompared) die("no record is complete in every input");
    evalset_summarize(&set, refusal);

    if (json) report_json(stdout, &set);
    else report_table(stdout, &set);
    checked_fflush(stdout);
    if (html) {
        FILE *f = fopen(html, "w");
        if (!f) die("%s: %s", html, strerror(errno));
        report_html(f, &set, title, notes, nnotes, examples >= 0 ? (size_t)examples : DEFAULT_EXAMPLES, log);
        if (fflush(f) != 0 || ferror(f) || fclose(f) != 0) die("%s: write error: %s", html, strerror(errno));
    }
    loss_log_free(log);
    evalset_free(&set);
    free(notes);
    return 0;
}
