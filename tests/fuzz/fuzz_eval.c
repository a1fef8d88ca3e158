/* fuzz_eval.c — eval-compare's library end to end, as its main() drives
 * it with --json --allow-missing --html -n 3: it reads two result files, a
 * score file and a training log (common/evalset.h, common/losslog.h) and
 * writes the JSON report and the HTML page (common/report.h,
 * common/svgplot.h).
 *
 * Input: up to four parts separated by lines "----": the first results,
 * their scores, the second results, the log. An empty part leaves that
 * file out (the second results: one input only).
 *
 * Properties: the input is either refused with a one-line reason or gives
 * JSON that parses, and an HTML page whose text is escaped (no "<script"
 * from the input) and whose loss plot has only finite coordinates. */
#include "fuzz.h"

#include "base/cli.h"
#include "eval/evalset.h"
#include "eval/losslog.h"
#include "eval/report.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PARTS 4

static void check_html(const char *html, size_t len) {
    FUZZ_CHECK(!memmem(html, len, "<script", 7), "input text reached the HTML unescaped");
    const char *svg = memmem(html, len, "<svg", 4), *end = svg ? memmem(svg, len - (size_t)(svg - html), "</svg>", 6) : NULL;
    if (!svg || !end) return;
    FUZZ_CHECK(!memmem(svg, (size_t)(end - svg), "nan", 3) && !memmem(svg, (size_t)(end - svg), "inf", 3),
               "the loss plot has a non-finite coordinate");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (memchr(data, '\0', size)) return 0; /* NUL lines: the line reader's, fuzzed elsewhere */
    int part_fd[MAX_PARTS];
    size_t part_len[MAX_PARTS] = {0};
    const uint8_t *p = data, *end = data + size;
    for (int i = 0; i < MAX_PARTS; i++) {
        const uint8_t *from = p;
        /* the part runs to a line "----" (the last one to the end) */
        while (p < end) {
            const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
            const uint8_t *next = nl ? nl + 1 : end;
            if (i < MAX_PARTS - 1 && next - p == 5 && memcmp(p, "----\n", 5) == 0) break;
            p = next;
        }
        part_len[i] = (size_t)(p - from);
        part_fd[i] = fuzz_memfd(from, part_len[i]);
        if (p < end && i < MAX_PARTS - 1) p += 5;
    }
    char paths[MAX_PARTS][32], err[ERR_MAX];
    evalset set = {0};
    evalset_add(&set, fuzz_fd_path(part_fd[0], paths[0]), "a")->score_path =
        part_len[1] ? xstrdup(fuzz_fd_path(part_fd[1], paths[1])) : NULL;
    if (part_len[2]) evalset_add(&set, fuzz_fd_path(part_fd[2], paths[2]), "b");
    loss_log *log = NULL;
    int ok = evalset_load(&set, err, sizeof err) &&
             (!part_len[3] || (log = loss_log_read(fuzz_fd_path(part_fd[3], paths[3]), err, sizeof err)));
    if (ok) {
        evalset_join(&set); /* --allow-missing: its problems are warnings */
        if (!set.ncompared) ok = fail_message(err, sizeof err, "no record is complete in every input");
    }
    if (ok) {
        evalset_summarize(&set, "keep the discussion relevant to Lamini");
        char *json, *page;
        size_t n, page_len;
        FILE *f = open_memstream(&json, &n);
        report_json(f, &set);
        fclose(f);
        f = open_memstream(&page, &page_len);
        report_html(f, &set, "fuzz", NULL, 0, 3, log);
        fclose(f);
        cJSON *parsed = cJSON_ParseWithLength(json, n);
        FUZZ_CHECK(cJSON_IsObject(parsed), "the JSON report does not parse");
        cJSON_Delete(parsed);
        check_html(page, page_len);
        free(json);
        free(page);
    }
    loss_log_free(log);
    evalset_free(&set);
    for (int i = 0; i < MAX_PARTS; i++) close(part_fd[i]);
    if (!ok) {
        size_t n = strnlen(err, sizeof err);
        FUZZ_CHECK(n > 0 && n < sizeof err, "no reason, or one not terminated");
        fuzz_reject(err);
    }
    return 0;
}
