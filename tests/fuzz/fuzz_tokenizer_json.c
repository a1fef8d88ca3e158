/* fuzz_tokenizer_json.c — loading a tokenizer.json (common/tokenizer.h).
 *
 * Properties: tokenizer_open never crashes or leaks; it refuses what it does
 * not support with a reason (not by dying), and a tokenizer it accepts encodes and
 * decodes sample texts to ids below its id limit without crashing. */
#include "fuzz.h"

#include "base/cli.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const samples[] = {
    "Hello world", "  two  spaces\n\ttab", "caf\xc3\xa9 Cafe\xcc\x81 \xe6\x97\xa5\xe6\x9c\xac", "<|endoftext|>x<|padding|>",
    "1234 it's DON'T!?", "",
};

static void exercise(tokenizer *t) {
    uint32_t limit = tokenizer_id_limit(t);
    token_ids ids = {0};
    utf8_buf text = {0};
    for (int special = 0; special < 2; special++) {
        tokenizer_set_special_as_text(t, special);
        for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
            ids.n = 0;
            FUZZ_CHECK(tokenizer_encode(t, samples[i], strlen(samples[i]), &ids, NULL) == 0, "valid UTF-8 refused");
            for (size_t k = 0; k < ids.n; k++) FUZZ_CHECK(ids.ids[k] < limit, "id %u beyond the limit %u", ids.ids[k], limit);
            text.len = 0;
            tokenizer_decode(t, ids.ids, ids.n, special, &text);
        }
    }
    uint32_t probe[] = {0, 1, limit ? limit - 1 : 0, limit, UINT32_MAX};
    text.len = 0;
    tokenizer_decode(t, probe, sizeof probe / sizeof *probe, 0, &text);
    tokenizer_token_id(t, "<|endoftext|>");
    token_ids_free(&ids);
    utf8_buf_free(&text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = fuzz_memfd(data, size);
    char path[32], err[512];
    memset(err, 0x55, sizeof err);
    tokenizer *t = tokenizer_open(fuzz_fd_path(fd, path), err, sizeof err);
    if (t) {
        exercise(t);
        tokenizer_free(t);
    } else {
        size_t n = strnlen(err, sizeof err);
        FUZZ_CHECK(n > 0 && n < sizeof err, "no reason, or one not terminated");
        fuzz_reject(err);
    }
    close(fd);
    return 0;
}
