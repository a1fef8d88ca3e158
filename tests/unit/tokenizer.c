/* tokenizer.c — the tokenizer against Hugging Face tokenizers 0.23.2: every
 * line of tests/data/{lamini_docs,tok_cases}.ref.jsonl must encode to its ids
 * and decode back to its "decoded" text. Then the edges: from_utf8_lossy,
 * special tokens as text, skipping specials, unknown ids, invalid input,
 * megabyte-long words, and tokenizer.json features that must be refused. */
#include "tap.h"
#include "base/cli.h"
#include "base/io.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tokenizer_path = TUNEPIPE_SRCDATA "/tokenizer.json";
static const char *fixtures = TUNEPIPE_SRCDATA "/../tests/data";

static int ids_equal(const token_ids *got, const cJSON *want) {
    if ((size_t)cJSON_GetArraySize(want) != got->n) return 0;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, want) if (got->ids[i++] != (uint32_t)e->valuedouble) return 0;
    return 1;
}

/* Encodes and decodes every line of a reference file; one test per file. */
static void check_reference(tokenizer *t, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fixtures, name);
    line_reader *lr = line_reader_open(open_input(path), path);
    size_t lines = 0, bad_ids = 0, bad_text = 0;
    token_ids got = {0};
    utf8_buf text = {0};
    char *line;
    size_t len;
    while ((line = line_reader_next(lr, &len))) {
        cJSON *rec = cJSON_ParseWithLength(line, len);
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(rec, "text");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rec, "ids");
        const cJSON *decoded = cJSON_GetObjectItemCaseSensitive(rec, "decoded");
        if (!cJSON_IsString(in) || !cJSON_IsArray(ids) || !cJSON_IsString(decoded)) die("%s: bad line %zu", path, lines + 1);
        lines++;
        got.n = 0;
        if (tokenizer_encode(t, in->valuestring, strlen(in->valuestring), &got, NULL) || !ids_equal(&got, ids)) {
            if (bad_ids++ < 3) diag("%s line %zu: ids differ for %.60s", name, lines, in->valuestring);
        }
        text.len = 0;
        size_t n_ids = (size_t)cJSON_GetArraySize(ids), i = 0;
        uint32_t *want = xmalloc(n_ids * sizeof *want + 1);
        const cJSON *e;
        cJSON_ArrayForEach(e, ids) want[i++] = (uint32_t)e->valuedouble;
        tokenizer_decode(t, want, n_ids, 0, &text);
        if (strcmp(utf8_buf_cstr(&text), decoded->valuestring) != 0) {
            if (bad_text++ < 3) diag("%s line %zu: decoded text differs", name, lines);
        }
        free(want);
        cJSON_Delete(rec);
    }
    line_reader_close(lr);
    ok(lines > 0 && bad_ids == 0, "%s: ids of all %zu texts match Hugging Face (%zu differ)", name, lines, bad_ids);
    ok(lines > 0 && bad_text == 0, "%s: decoded text of all %zu matches (%zu differ)", name, lines, bad_text);
    token_ids_free(&got);
    utf8_buf_free(&text);
}

static int encodes_to(tokenizer *t, const char *text, size_t n, const uint32_t *want, size_t n_want) {
    token_ids got = {0};
    int same = tokenizer_encode(t, text, n, &got, NULL) == 0 && got.n == n_want &&
               memcmp(got.ids, want, n_want * sizeof *want) == 0;
    if (!same) {
        printf("#   got:");
        for (size_t i = 0; i < got.n; i++) printf(" %u", got.ids[i]);
        printf("\n");
    }
    token_ids_free(&got);
    return same;
}

static int decodes_to(tokenizer *t, const uint32_t *ids, size_t n, int skip, const char *want) {
    utf8_buf out = {0};
    tokenizer_decode(t, ids, n, skip, &out);
    int same = strcmp(utf8_buf_cstr(&out), want) == 0;
    if (!same) printf("#   got: %s\n", out.data);
    utf8_buf_free(&out);
    return same;
}

static int lossy_is(const char *bytes, size_t n, const char *want) {
    utf8_buf out = {0};
    utf8_append_lossy(&out, bytes, n);
    int same = strcmp(utf8_buf_cstr(&out), want) == 0;
    utf8_buf_free(&out);
    return same;
}

static void check_lossy(void) {
    /* Rust's from_utf8_lossy: one U+FFFD per maximal invalid subpart. */
    ok(lossy_is("a\x80\x80z", 4, "a\xEF\xBF\xBD\xEF\xBF\xBDz"), "lossy: two stray continuation bytes, two U+FFFD");
    ok(lossy_is("\xE2\x82z", 3, "\xEF\xBF\xBDz"), "lossy: a truncated 3-byte sequence is one U+FFFD");
    ok(lossy_is("\xF0\x9F\x98", 3, "\xEF\xBF\xBD"), "lossy: a truncated 4-byte sequence at the end is one U+FFFD");
    ok(lossy_is("\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"), "lossy: a surrogate is three U+FFFD");
    ok(lossy_is("\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"), "lossy: an overlong form is two U+FFFD");
    ok(lossy_is("\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"),
       "lossy: above U+10FFFF is four U+FFFD");
    ok(lossy_is("\xE2\x82\xAC\xF0\x9F\x98\x80", 7, "\xE2\x82\xAC\xF0\x9F\x98\x80"), "lossy: valid text is unchanged");
}

static void check_edges(tokenizer *t) {
    /* From tokenizers 0.23.2 (npm binding), encode(text, addSpecialTokens=false);
     * special tokens as text: the same with the special added tokens removed. */
    static const uint32_t eot_eot[] = {0, 0};
    ok(encodes_to(t, "<|endoftext|><|endoftext|>", 26, eot_eot, 2), "two special tokens in a row");
    static const uint32_t partial[] = {29, 93, 423, 1171, 7109};
    ok(encodes_to(t, "<|endoftex", 10, partial, 5), "a partial special token is text");
    static const uint32_t nfc_split[] = {70, 0, 136, 212};
    ok(encodes_to(t, "e<|endoftext|>\xCC\x81", 16, nfc_split, 4),
       "NFC applies to each piece on its own (no composition across a special token)");
    static const uint32_t composed[] = {860};
    ok(encodes_to(t, "e\xCC\x81", 3, composed, 1), "NFC composes e + U+0301");

    tokenizer_set_special_as_text(t, 1);
    static const uint32_t as_text[] = {66, 29, 93, 423, 1171, 1156, 49651, 67};
    ok(encodes_to(t, "a<|endoftext|>b", 15, as_text, 8), "special tokens as text");
    tokenizer_set_special_as_text(t, 0);

    static const uint32_t with_eot[] = {12092, 0, 1533};
    ok(decodes_to(t, with_eot, 3, 0, "Hello<|endoftext|> world"), "decode keeps special tokens");
    ok(decodes_to(t, with_eot, 3, 1, "Hello world"), "decode can skip special tokens");
    static const uint32_t spaces[] = {50276, 50254};
    ok(decodes_to(t, spaces, 2, 1, "                          "), "added space tokens decode to spaces, not skipped");
    static const uint32_t half_char[] = {12092, 14931, 235}; /* "Hello" + 3 of the 4 bytes of an emoji */
    ok(decodes_to(t, half_char, 3, 0, "Hello\xEF\xBF\xBD"), "a token sequence ending inside a character gives U+FFFD");
    uint32_t unknown[] = {12092, tokenizer_id_limit(t), 1533};
    utf8_buf out = {0};
    ok(tokenizer_decode(t, unknown, 3, 0, &out) == 1 && strcmp(utf8_buf_cstr(&out), "Hello world") == 0,
       "an unknown id is skipped and counted");
    utf8_buf_free(&out);

    token_ids got = {0};
    size_t bad = 0;
    ok(tokenizer_encode(t, "ok\xC3(", 4, &got, &bad) == -1 && bad == 2 && got.n == 0,
       "invalid UTF-8 is refused with its offset");
    ok(tokenizer_token_id(t, "<|endoftext|>") == 0 && tokenizer_token_id(t, "<|padding|>") == 1 &&
           tokenizer_token_id(t, "no such token") == -1,
       "token ids by content");
    ok(tokenizer_id_limit(t) == 50277, "id limit is 50277");
    token_ids_free(&got);
}

/* A megabyte of one letter, of spaces, of newlines: must finish (the merge
 * queue and the regex are not quadratic). Checked against the expected
 * shape, not the clock. Smaller under sanitizers. */
static void check_long_runs(tokenizer *t) {
    size_t n = getenv("TUNEPIPE_SANITIZE") ? 100000 : 1000000;
    char *buf = xmalloc(n);
    token_ids got = {0};
    double t0 = now_seconds();

    memset(buf, 'x', n);
    tokenizer_encode(t, buf, n, &got, NULL);
    utf8_buf text = {0};
    tokenizer_decode(t, got.ids, got.n, 0, &text);
    ok(text.len == n && memcmp(text.data, buf, n) == 0 && got.n < n / 4, "%zu x's: %zu tokens, round trip", n, got.n);

    memset(buf, ' ', n);
    got.n = 0;
    tokenizer_encode(t, buf, n, &got, NULL);
    size_t all24 = 1;
    for (size_t i = 0; i + 1 < got.n; i++) all24 &= got.ids[i] == 50254;
    ok(all24 && got.n == (n + 23) / 24, "%zu spaces: runs of 24-space tokens", n);

    memset(buf, '\n', n);
    got.n = 0;
    tokenizer_encode(t, buf, n, &got, NULL);
    text.len = 0;
    tokenizer_decode(t, got.ids, got.n, 0, &text);
    ok(text.len == n && memcmp(text.data, buf, n) == 0, "%zu newlines: %zu tokens, round trip", n, got.n);
    note("long runs took %.2f s", now_seconds() - t0);
    utf8_buf_free(&text);
    token_ids_free(&got);
    free(buf);
}

/* Writes tokenizer.json with one substitution and tries to load it. */
static int refused(const char *from, const char *to, const char *expect) {
    size_t len;
    char *json = read_file(tokenizer_path, &len);
    char *at = strstr(json, from);
    if (!at) die("test setup: '%s' not in tokenizer.json", from);
    char path[] = "/tmp/tunepipe-tok.XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fwrite(json, 1, (size_t)(at - json), f);
    fputs(to, f);
    fputs(at + strlen(from), f);
    fclose(f);
    free(json);
    char err[512] = "";
    tokenizer *t = tokenizer_open(path, err, sizeof err);
    unlink(path);
    int ok_refused = !t && strstr(err, expect);
    if (!ok_refused) diag("message: %s", err);
    tokenizer_free(t);
    return ok_refused;
}

static void check_refusals(void) {
    ok(refused("\"type\": \"NFC\"", "\"type\": \"NFKC\"", "normalizer NFKC is not supported"), "another normalizer is refused");
    ok(refused("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model WordPiece is not supported"), "another model is refused");
    ok(refused("\"pre_tokenizer\": {\n    \"type\": \"ByteLevel\"", "\"pre_tokenizer\": {\n    \"type\": \"Metaspace\"",
               "pre_tokenizer Metaspace"),
       "another pre-tokenizer is refused");
    ok(refused("\"lstrip\": false", "\"lstrip\": true", "lstrip"), "lstrip on an added token is refused");
    ok(refused("\"truncation\": null", "\"truncation\": {\"max_length\": 5}", "truncation"), "truncation is refused");
    ok(refused("\"dropout\": null", "\"dropout\": 0.1", "dropout"), "BPE dropout is refused");
    ok(refused("\"content\": \"<|padding|>\"", "\"content\": \"<|endoftext|>\"", "listed twice"),
       "an added token listed twice is refused");
    ok(refused("\"id\": 1,", "\"id\": 7,", "would give it"), "an added token id Hugging Face would not give is refused");
    ok(refused("\"!\": 2,", "\"\": 2,", "model.vocab: an empty token"), "an empty vocabulary token is refused");
    ok(refused("\"!\": 2,", "\"!\\u0000x\": 2,", "\\u0000 or malformed \\u escape"),
       "a \\u0000 escape (cJSON would cut the token there) is refused");
    ok(refused("\"!\": 2,", "\"!\": 16777215,", "not below the number of tokens listed (50279)"),
       "a vocabulary id beyond the tokens listed is refused before the tables are made");
    ok(refused("\"!\": 2,", "\"!\": 2, \"!\": 3,", "token \"!\" is listed twice"),
       "a vocabulary token listed twice is refused");
    char err[256];
    ok(!tokenizer_open("/no/such/tokenizer.json", err, sizeof err) && strstr(err, "No such file"),
       "a missing file is an error");
}

/* tokenizer_open, or die with the reason. */
static tokenizer *load_tokenizer(const char *path) {
    char err[512];
    tokenizer *t = tokenizer_open(path, err, sizeof err);
    if (!t) die("%s: %s", path, err);
    return t;
}

int main(void) {
    double t0 = now_seconds();
    tokenizer *t = load_tokenizer(tokenizer_path);
    note("tokenizer loaded in %.1f ms", (now_seconds() - t0) * 1e3);
    check_reference(t, "lamini_docs.ref.jsonl");
    check_reference(t, "tok_cases.ref.jsonl");
    check_lossy();
    check_edges(t);
    check_long_runs(t);
    check_refusals();
    tokenizer_free(t);
    return done_testing();
}
