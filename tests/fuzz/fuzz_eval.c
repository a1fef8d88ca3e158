/* fuzz_eval.c — eval-compare end to end: its main() (renamed) reads two
 * result files, a score file and a training log (common/evalset.h,
 * common/losslog.h) and writes the JSON report and the HTML page
 * (common/report.h, common/svgplot.h).
 *
 * Input: up to four parts separated by lines "----": the first results,
 * their scores, the second results, the log. An empty part leaves that
 * file out (the second results: one input only).
 *
 * Properties: eval-compare either dies with a message or writes JSON that
 * parses, and an HTML page whose text is escaped (no "<script" from the
 * input) and whose loss plot has only finite coordinates. */
#include "fuzz.h"

#define main eval_compare_main
#include "../../cmd/eval-compare.c"
#undef main

#include <cJSON.h>
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
    int out = fuzz_memfd(NULL, 0), html = fuzz_memfd(NULL, 0);
    char paths[MAX_PARTS + 1][32];
    char *argv[20];
    int argc = 0;
    argv[argc++] = "eval-compare";
    argv[argc++] = "--json";
    argv[argc++] = "--allow-missing";
    argv[argc++] = "--html";
    argv[argc++] = (char *)fuzz_fd_path(html, paths[MAX_PARTS]);
    argv[argc++] = "-n";
    argv[argc++] = "3";
    if (part_len[3]) {
        argv[argc++] = "--log";
        argv[argc++] = (char *)fuzz_fd_path(part_fd[3], paths[3]);
    }
    if (part_len[1]) {
        argv[argc++] = "--score";
        argv[argc++] = (char *)fuzz_fd_path(part_fd[1], paths[1]);
    }
    argv[argc++] = "--label=a";
    argv[argc++] = (char *)fuzz_fd_path(part_fd[0], paths[0]);
    if (part_len[2]) {
        argv[argc++] = "--label=b";
        argv[argc++] = (char *)fuzz_fd_path(part_fd[2], paths[2]);
    }
    argv[argc] = NULL;

    fflush(stdout);
    int saved_stdout = dup(STDOUT_FILENO);
    dup2(out, STDOUT_FILENO);
    optind = 0; /* glibc: start getopt afresh */
    volatile int finished = 0;
    fuzz_catch_die();
    fuzz_track_begin();
    if (setjmp(fuzz_die_jump) == 0) {
        eval_compare_main(argc, argv);
        finished = 1;
    }
    fuzz_track_end(!finished); /* what main() held when die() jumped out of it */
    cli_set_die_hook(NULL);
    fflush(stdout);
    dup2(saved_stdout, STDOUT_FILENO);
    close(saved_stdout);
    if (finished) {
        size_t n;
        char *json = fuzz_fd_read(out, &n);
        cJSON *parsed = cJSON_ParseWithLength(json, n);
        FUZZ_CHECK(cJSON_IsObject(parsed), "the JSON report does not parse");
        cJSON_Delete(parsed);
        free(json);
        char *page = fuzz_fd_read(html, &n);
        check_html(page, n);
        free(page);
    }
    for (int i = 0; i < MAX_PARTS; i++) close(part_fd[i]);
    close(out);
    close(html);
    return 0;
}
