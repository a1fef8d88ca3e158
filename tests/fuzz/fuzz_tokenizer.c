/* fuzz_tokenizer.c — encoding arbitrary bytes and decoding arbitrary ids
 * with the Pythia tokenizer (data/tokenizer.json, common/tokenizer.h).
 *
 * Input: a flag byte, then the bytes. Flag bit 0: special tokens written in
 * the text are plain text; bit 1: the bytes are little-endian token ids to
 * decode instead of text to encode; bit 2: decoding skips special tokens.
 *
 * Properties: valid UTF-8 encodes to ids below the id limit that decode
 * back to the text with each piece between special tokens in NFC form;
 * invalid UTF-8 is refused at the offset of its first bad byte, appending
 * nothing; any ids decode to valid UTF-8, counting the unknown ones. */
#include "fuzz.h"

#include "base/cli.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/utf8_nfc.h"

#include <stdlib.h>
#include <string.h>

static tokenizer *tok;

/* tokenizer_open, or die with the reason. */
static tokenizer *load_tokenizer(const char *path) {
    char err[512];
    tokenizer *t = tokenizer_open(path, err, sizeof err);
    if (!t) die("%s: %s", path, err);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char *path = data_file("tokenizer.json");
    tok = load_tokenizer(path);
    free(path);
    return 0;
}

static void append_nfc(utf8_buf *out, const char *s, size_t n) {
    if (!utf8_nfc(s, n, out)) utf8_buf_append(out, s, n);
}

/* What decode(encode(text)) gives: Hugging Face normalizes each piece of the
 * text between its normalized:false added tokens on its own (so
 * "<|endoftext|>\u0338" keeps its ">"). In Pythia's tokenizer those are the
 * two special tokens, which stay in the text when special_as_text is on. */
static void expected_text(const char *text, size_t n, int special_as_text, utf8_buf *out) {
    static const char *const raw_tokens[] = {"<|endoftext|>", "<|padding|>"};
    size_t piece = 0, i = 0;
    while (i < n && !special_as_text) {
        size_t len = 0;
        for (size_t k = 0; k < 2 && !len; k++)
            if (n - i >= strlen(raw_tokens[k]) && memcmp(text + i, raw_tokens[k], strlen(raw_tokens[k])) == 0)
                len = strlen(raw_tokens[k]);
        if (!len) {
            i++;
            continue;
        }
        append_nfc(out, text + piece, i - piece);
        utf8_buf_append(out, text + i, len);
        piece = i += len;
    }
    append_nfc(out, text + piece, n - piece);
}

static void check_encode(const char *text, size_t n, int special_as_text) {
    token_ids ids = {0};
    token_ids_push(&ids, 7); /* encode appends: what is there must stay */
    size_t bad = (size_t)-1;
    int rc = tokenizer_encode(tok, text, n, &ids, &bad);
    size_t valid = utf8_valid_prefix(text, n);
    FUZZ_CHECK(ids.ids[0] == 7, "encode overwrote what out held");
    if (valid < n) {
        FUZZ_CHECK(rc == -1 && bad == valid && ids.n == 1, "invalid UTF-8 at %zu: rc %d, bad %zu, %zu ids", valid,
                   rc, bad, ids.n);
        token_ids_free(&ids);
        return;
    }
    FUZZ_CHECK(rc == 0, "valid UTF-8 refused");
    uint32_t limit = tokenizer_id_limit(tok);
    for (size_t i = 1; i < ids.n; i++) FUZZ_CHECK(ids.ids[i] < limit, "id %u beyond the limit", ids.ids[i]);
    utf8_buf back = {0}, want = {0};
    size_t unknown = tokenizer_decode(tok, ids.ids + 1, ids.n - 1, 0, &back);
    FUZZ_CHECK(unknown == 0, "encode made %zu ids that decode does not know", unknown);
    expected_text(text, n, special_as_text, &want);
    FUZZ_CHECK(back.len == want.len && (want.len == 0 || memcmp(back.data, want.data, want.len) == 0),
               "decode(encode(text)) is not the text normalized piece by piece (%zu bytes back, %zu expected)",
               back.len, want.len);
    utf8_buf_free(&back);
    utf8_buf_free(&want);
    token_ids_free(&ids);
}

static void check_decode(const uint8_t *data, size_t size, int skip_special) {
    size_t n = size / 4;
    uint32_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
    size_t beyond = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(&ids[i], data + 4 * i, 4);
        ids[i] %= tokenizer_id_limit(tok) + 1024; /* mostly real ids, some unknown */
        beyond += ids[i] >= tokenizer_id_limit(tok);
    }
    utf8_buf out = {0};
    size_t unknown = tokenizer_decode(tok, ids, n, skip_special, &out);
    FUZZ_CHECK(unknown >= beyond && unknown <= n, "decode counted %zu unknown ids of %zu (%zu beyond the limit)",
               unknown, n, beyond);
    FUZZ_CHECK(utf8_valid_prefix(out.data ? out.data : "", out.len) == out.len, "decode wrote invalid UTF-8");
    utf8_buf_free(&out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    tokenizer_set_special_as_text(tok, data[0] & 1);
    if (data[0] & 2) {
        check_decode(data + 1, size - 1, (data[0] & 4) != 0);
    } else {
        char *text = fuzz_cstr(data + 1, size - 1); /* exact length, so ASan sees any over-read */
        check_encode(text, size - 1, data[0] & 1);
        free(text);
    }
    return 0;
}
