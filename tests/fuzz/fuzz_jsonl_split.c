/* fuzz_jsonl_split.c — jsonl-split end to end: its main() (renamed) runs
 * on the input with --skip-bad, writing the train and test parts into
 * memory files.
 *
 * Input: a flag byte (bit 0: --test-ratio 0.5 instead of --test-count 1;
 * bit 1: leave out --skip-bad, so a bad line stops the tool), then the
 * JSONL text.
 *
 * Properties: every input line that is a JSON object comes out exactly
 * once, in one of the two parts, as a JSON object with an "id" member;
 * nothing else comes out. */
#include "fuzz.h"

#define main jsonl_split_main
#include "../../cmd/jsonl-split.c"
#undef main

#include <unistd.h>

/* JSON object lines of text (the records jsonl-split must keep). */
static size_t count_objects(const char *text, size_t len, int need_id) {
    size_t n = 0;
    for (const char *line = text, *end = text + len; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t l = nl ? (size_t)(nl - line) : (size_t)(end - line);
        char *copy = fuzz_cstr((const uint8_t *)line, l);
        cJSON *o = cJSON_ParseWithLengthOpts(copy, l + 1, NULL, 1);
        if (cJSON_IsObject(o)) {
            n++;
            if (need_id) FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(o, "id"), "an output record has no \"id\"");
        } else if (need_id) {
            FUZZ_CHECK(0, "an output line is not a JSON object");
        }
        cJSON_Delete(o);
        free(copy);
        line += l + 1;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || memchr(data + 1, '\0', size - 1)) return 0; /* NUL lines: the line reader's, fuzzed elsewhere */
    int in = fuzz_memfd(data + 1, size - 1), train = fuzz_memfd(NULL, 0), test = fuzz_memfd(NULL, 0);
    char in_path[32], train_path[32], test_path[32];
    char *argv[] = {"jsonl-split", "--train", (char *)fuzz_fd_path(train, train_path), "--test",
                    (char *)fuzz_fd_path(test, test_path), data[0] & 1 ? "--test-ratio" : "--test-count",
                    data[0] & 1 ? "0.5" : "1", data[0] & 2 ? "-q" : "--skip-bad", (char *)fuzz_fd_path(in, in_path),
                    NULL};
    optind = 0; /* glibc: start getopt afresh */
    volatile int finished = 0;
    fuzz_catch_die();
    fuzz_track_begin();
    if (setjmp(fuzz_die_jump) == 0) {
        jsonl_split_main(sizeof argv / sizeof *argv - 1, argv);
        finished = 1;
    }
    fuzz_track_end(!finished); /* what main() held when die() jumped out of it */
    cli_set_die_hook(NULL);
    if (finished) {
        size_t in_len, train_len, test_len;
        char *in_text = fuzz_fd_read(in, &in_len), *train_text = fuzz_fd_read(train, &train_len),
             *test_text = fuzz_fd_read(test, &test_len);
        size_t expected = count_objects(in_text, in_len, 0);
        size_t got = count_objects(train_text, train_len, 1) + count_objects(test_text, test_len, 1);
        FUZZ_CHECK(got == expected, "%zu records in, %zu out", expected, got);
        free(in_text);
        free(train_text);
        free(test_text);
    }
    close(in);
    close(train);
    close(test);
    return 0;
}
