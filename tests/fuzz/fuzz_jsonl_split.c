/* fuzz_jsonl_split.c — jsonl-split's records and split
 * (common/stream/jsonl_split.h), as its main() runs them with --skip-bad
 * and --test-count 1 or --test-ratio 0.5, writing the train and test
 * parts into memory files.
 *
 * Input: a flag byte (bit 0: --test-ratio 0.5 instead of --test-count 1;
 * bit 1: leave out --skip-bad, so a bad line stops the tool), then the
 * JSONL text.
 *
 * Properties: every input line that is a JSON object comes out exactly
 * once, in one of the two parts, as a JSON object with an "id" member;
 * nothing else comes out. */
#include "fuzz.h"

#include "base/cli.h"
#include "base/io.h"
#include "stream/jsonl_split.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The records of one part, as jsonl-split writes it. */
static char *write_part(const split_set *set, int test, size_t *len) {
    char *text;
    FILE *f = open_memstream(&text, len);
    for (size_t i = 0; i < set->n; i++)
        if (set->recs[i].is_test == test) split_write_record(f, &set->recs[i]);
    fclose(f);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || memchr(data + 1, '\0', size - 1)) return 0; /* NUL lines: the line reader's, fuzzed elsewhere */
    int in = fuzz_memfd(data + 1, size - 1);
    line_reader *lr = line_reader_open(in, "-");
    split_set set = {0};
    char err[ERR_MAX];
    int ok = split_read(&set, lr, !(data[0] & 2), err, sizeof err);
    line_reader_close(lr);
    size_t n_test = data[0] & 1 ? (size_t)llround(0.5 * (double)set.n) : 1;
    if (ok && n_test > set.n)
        ok = fail_message(err, sizeof err, "--test-count %zu exceeds the %zu records", n_test, set.n);
    if (ok) {
        split_pick(&set, n_test, 123);
        size_t in_len, train_len, test_len;
        char *in_text = fuzz_fd_read(in, &in_len), *train_text = write_part(&set, 0, &train_len),
             *test_text = write_part(&set, 1, &test_len);
        size_t expected = count_objects(in_text, in_len, 0);
        size_t got = count_objects(train_text, train_len, 1) + count_objects(test_text, test_len, 1);
        FUZZ_CHECK(got == expected, "%zu records in, %zu out", expected, got);
        free(in_text);
        free(train_text);
        free(test_text);
    }
    split_free(&set);
    close(in);
    if (!ok) fuzz_reject(err);
    return 0;
}
