/* fuzz_jsonl.c — bpe-encode's JSONL records: cJSON parsing, the member to
 * segment mapping, "\u0000" recovery (common/utf8_json.h), the template and
 * tokenizing, and the JSON string writer of bpe-encode -d.
 *
 * That logic is in common/record_encode.c and common/record_decode.c.
 *
 * Input: a flag byte, then lines. Flag bit 0: --text (plain lines); bit 1:
 * --template "Q: {question}\nA:"; bit 2: --no-eos; bit 3: --fields
 * prompt,completion.
 *
 * Properties: a line is either refused with a reason or becomes a
 * record whose segments decode back to text that bpe-encode -d writes as a
 * JSON string cJSON reads back unchanged; the record id is the line's "id"
 * when that is a non-negative integer, else the line number. */
#include "fuzz.h"

#include "base/cli.h"
#include "stream/record_decode.h"
#include "stream/record_encode.h"
#include "tokenizer/utf8_json.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static record_encoder plain, templated;

/* tokenizer_open, or die with the reason. */
static tokenizer *load_tokenizer(const char *path) {
    char err[512];
    tokenizer *t = tokenizer_open(path, err, sizeof err);
    if (!t) die("%s: %s", path, err);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char *path = data_file("tokenizer.json");
    tokenizer *tok = load_tokenizer(path);
    free(path);
    long eos = tokenizer_token_id(tok, "<|endoftext|>");
    if (eos < 0) die("the tokenizer has no <|endoftext|>");
    record_encoder *both[] = {&plain, &templated};
    for (int i = 0; i < 2; i++) {
        record_encoder_init(both[i]);
        both[i]->tok = tok;
        both[i]->eos_id = (uint32_t)eos;
    }
    char err[256];
    if (template_parse(&templated.tmpl, "--template", "Q: {question}\\nA:", err, sizeof err)) die("%s", err);
    return 0;
}

/* What bpe-encode -d writes for a segment must read back as its text. */
static void check_decoded(record_encoder *o, const segment *s) {
    uint32_t n;
    const uint32_t *ids = segment_content(s, &n);
    utf8_buf text = {0}, json = {0};
    tokenizer_decode(o->tok, ids, n, 0, &text);
    utf8_buf_append(&json, "{\"s\":", 5);
    json_put_string(&json, text.data ? text.data : "", text.len);
    utf8_buf_append(&json, "}", 1);
    cJSON *back = cJSON_ParseWithLength(json.data, json.len);
    FUZZ_CHECK(back != NULL, "bpe-encode -d wrote invalid JSON for a segment of %zu bytes", text.len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(back, "s");
    if (text.len && !memchr(text.data, 0, text.len)) /* cJSON's strings end at U+0000 */
        FUZZ_CHECK(cJSON_IsString(v) && strlen(v->valuestring) == text.len &&
                       memcmp(v->valuestring, text.data, text.len) == 0,
                   "bpe-encode -d's JSON string does not read back as the text");
    cJSON_Delete(back);
    utf8_buf_free(&text);
    utf8_buf_free(&json);
}

/* The position of the last member of obj called name, by cJSON's names. */
static long last_by_cjson(const cJSON *obj, const char *name) {
    long last = -1, i = 0;
    for (const cJSON *e = obj->child; e; e = e->next, i++)
        if (strcmp(e->string, name) == 0) last = i;
    return last;
}

static void check_record(record_encoder *o, int text_mode, const char *line, size_t len, uint64_t lineno,
                         const record *r) {
    if (!text_mode) {
        cJSON *obj = cJSON_ParseWithLength(line, len);
        const char *question = o->sources[RECORD_QUESTION].member;
        size_t at;
        int exact = json_has_nul_escape(line, len);
        if (!exact) /* the exact reader skips what cJSON skips and finds the same member */
            FUZZ_CHECK(json_last_member(line, len, question, &at) == last_by_cjson(obj, question),
                       "the exact reader and cJSON disagree on the last \"%s\"", question);
        long id_at = json_last_member(line, len, "id", &at); /* the last "id" counts, as in Python */
        const cJSON *id = id_at < 0 ? NULL : cJSON_GetArrayItem(obj, (int)id_at);
        int usable = cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble <= 9007199254740991.0 &&
                     id->valuedouble == floor(id->valuedouble);
        FUZZ_CHECK(r->id == (usable ? (uint64_t)id->valuedouble : lineno), "record id %llu on line %llu",
                   (unsigned long long)r->id, (unsigned long long)lineno);
        if (exact) { /* the recovered text extends cJSON's */
            long q_at = json_last_member(line, len, question, &at);
            const cJSON *q = q_at < 0 ? NULL : cJSON_GetArrayItem(obj, (int)q_at);
            utf8_buf text = {0};
            if (cJSON_IsString(q) && json_string_at(line, len, at, &text) == 0) {
                size_t cut = strlen(q->valuestring);
                FUZZ_CHECK(text.len >= cut && memcmp(text.data, q->valuestring, cut) == 0,
                           "the \\u0000 recovery disagrees with cJSON");
            }
            utf8_buf_free(&text);
        }
        cJSON_Delete(obj);
    }
    FUZZ_CHECK(record_find((record *)r, SEG_QUESTION) != NULL, "no question segment");
    for (int i = 0; i < r->nseg; i++) check_decoded(o, &r->seg[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    record_encoder *o = data[0] & 2 ? &templated : &plain;
    int text_mode = data[0] & 1;
    o->eos = !(data[0] & 4);
    char err[256];
    record_encoder_set_fields(o, data[0] & 8 ? "prompt,completion" : "question,answer", err, sizeof err); /* well-formed */
    char *text = fuzz_cstr(data + 1, size - 1);
    record r = {0};
    uint64_t lineno = 0;
    for (char *line = text, *end = text + (size - 1); line <= end; lineno++) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);
        if (!nl && len == 0) break;
        if (memchr(line, '\0', len)) { /* the line reader refuses these before bpe-encode sees them */
            line += len + 1;
            continue;
        }
        char *copy = fuzz_cstr((const uint8_t *)line, len); /* exact size, so ASan sees over-reads */
        int rc = -2;
        memset(err, 0x55, sizeof err);
        if (text_mode) rc = record_encode_text(o, copy, len, lineno + 1, &r, err, sizeof err);
        else if (strspn(copy, " \t\r") != len) rc = record_encode_json(o, copy, len, lineno + 1, &r, err, sizeof err);
        if (rc == 0) check_record(o, text_mode, copy, len, lineno + 1, &r);
        if (rc == -1) {
            size_t n = strnlen(err, sizeof err);
            FUZZ_CHECK(n > 0 && n < sizeof err, "no reason, or one not terminated");
            char msg[300];
            snprintf(msg, sizeof msg, "line %llu: %s", (unsigned long long)lineno + 1, err);
            fuzz_reject(msg); /* bpe-encode without --skip-bad stops here */
        }
        free(copy);
        line += len + 1;
    }
    record_free(&r);
    free(text);
    return 0;
}
