/* records.c — bpe-encode's line to record (common/record_encode.h) and
 * record to JSON line (common/record_decode.h), the prompt template
 * around a question, and neox-train's state JSON read back as written
 * (common/train_state.h). The tools' behaviour end to end is in
 * tests/t30-bpe-encode.sh and t50-neox-train.sh. */
#include "tap.h"
#include "base/cli.h"
#include "stream/record_decode.h"
#include "stream/record_encode.h"
#include "stream/template.h"
#include "train/train_state.h"

#include <stdlib.h>
#include <string.h>

static tokenizer *tok;
static uint32_t eos_id;

/* The record of line as bpe-encode -d --ids (or as text) writes it; err
 * gets the reason when the line is refused. */
static char *encode_json(record_encoder *e, const char *line, int as_ids, char *err, size_t errlen) {
    record r = {0};
    utf8_buf out = {0}, text = {0};
    if (record_encode_json(e, line, strlen(line), 9, &r, err, errlen) == 0)
        record_to_json(&r, tok, eos_id, as_ids, 0, NULL, &out, &text);
    record_free(&r);
    utf8_buf_free(&text);
    return out.len ? utf8_buf_cstr(&out) : NULL;
}

static void test_encode(void) {
    record_encoder e;
    record_encoder_init(&e);
    e.tok = tok;
    e.eos_id = eos_id;
    char err[256] = "", *json;

    json = encode_json(&e, "{\"question\":\"Hi there\",\"answer\":\"Yes\"}", 0, err, sizeof err);
    ok(json && strcmp(json, "{\"id\":9,\"question\":\"Hi there\",\"answer\":\"Yes<|endoftext|>\"}\n") == 0,
       "text members round-trip, the answer ends with EOS, the line number is the id");
    free(json);
    json = encode_json(&e, "{\"id\":4,\"question\":[1,2],\"answer\":[3],\"generated\":[5,0]}", 1, err, sizeof err);
    ok(json && strcmp(json, "{\"id\":4,\"question\":[1,2],\"answer\":[3,0],\"generated\":[5,0],\"stop\":\"eos\"}\n") == 0,
       "arrays of ids pass through, a usable id is kept, generated ending in EOS stops by eos");
    free(json);
    json = encode_json(&e, "{\"question\":\"a\\u0000b\",\"answer\":\"\"}", 0, err, sizeof err);
    ok(json && strcmp(json, "{\"id\":9,\"question\":\"a\\u0000b\",\"answer\":\"<|endoftext|>\"}\n") == 0,
       "a \\u0000 in a member survives");
    free(json);

    ok(template_parse(&e.tmpl, "--template", "Q: {question}\\nA:", err, sizeof err) == 0, "a template parses");
    json = encode_json(&e, "{\"question\":\"why\",\"answer\":\"so\"}", 0, err, sizeof err);
    ok(json && strcmp(json, "{\"id\":9,\"question\":\"Q: why\\nA:\",\"answer\":\"so<|endoftext|>\"}\n") == 0,
       "the template wraps the question");
    free(json);

    ok(record_encoder_set_fields(&e, "prompt,completion", err, sizeof err) == 0, "--fields prompt,completion parses");
    e.eos = 0;
    template_free(&e.tmpl);
    json = encode_json(&e, "{\"prompt\":\"p\",\"completion\":\"c\",\"question\":\"no\"}", 0, err, sizeof err);
    ok(json && strcmp(json, "{\"id\":9,\"question\":\"p\",\"answer\":\"c\"}\n") == 0,
       "--fields picks the members; --no-eos leaves EOS off");
    free(json);

    struct { const char *line, *why; } bad[] = {
        {"[1]", "not a JSON object"},
        {"{\"prompt\":\"p\"}", "no \"completion\" member"},
        {"{\"prompt\":7,\"completion\":\"c\"}", "\"prompt\" is neither a string nor an array of token ids"},
        {"{\"prompt\":[1,-1],\"completion\":\"c\"}", "\"prompt\": not an array of token ids (integers from 0 to 4294967295)"},
        {"{\"prompt\":\"a\xff\",\"completion\":\"c\"}", "\"prompt\" is not valid UTF-8 (byte 2)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        json = encode_json(&e, bad[i].line, 0, err, sizeof err);
        ok(!json && strcmp(err, bad[i].why) == 0, "%s is refused: %s", bad[i].line, err);
        free(json);
    }
    record_encoder_free(&e);
}

static void test_text_line(void) {
    record_encoder e;
    record_encoder_init(&e);
    e.tok = tok;
    char why[256];
    ok(template_parse(&e.tmpl, "--template", "<{question}>", why, sizeof why) == 0, "a template parses");
    record r = {0};
    utf8_buf out = {0}, text = {0};
    char err[256];
    ok(record_encode_text(&e, "x y", 3, 3, &r, err, sizeof err) == 0, "a text line encodes");
    record_to_json(&r, tok, eos_id, 0, 0, NULL, &out, &text);
    ok(strcmp(utf8_buf_cstr(&out), "{\"id\":3,\"question\":\"<x y>\"}\n") == 0, "a question only, in the template");
    out.len = 0;
    record_to_json(&r, tok, eos_id, 0, 0, &e.tmpl, &out, &text);
    ok(strcmp(utf8_buf_cstr(&out), "{\"id\":3,\"question\":\"x y\"}\n") == 0, "decoded with the template: without it");
    size_t off = 9, len = 9;
    ok(template_unwrap(&e.tmpl, "<>", 2, &off, &len) && off == 1 && len == 0, "an empty question unwraps");
    ok(!template_unwrap(&e.tmpl, "<x", 2, &off, &len) && !template_unwrap(&e.tmpl, ">", 1, &off, &len) && off == 1,
       "text not wrapped in the template is left as it is");
    ok(record_encode_text(&e, "\xff", 1, 4, &r, err, sizeof err) == -1 && strcmp(err, "not valid UTF-8 (byte 1)") == 0,
       "invalid UTF-8 is refused: %s", err);
    record_free(&r);
    utf8_buf_free(&out);
    utf8_buf_free(&text);
    record_encoder_free(&e);
}

static void test_json_string(void) {
    utf8_buf out = {0};
    json_put_string(&out, "a\"\\\n\t\r\x01\0z", 9);
    ok(strcmp(utf8_buf_cstr(&out), "\"a\\\"\\\\\\n\\t\\r\\u0001\\u0000z\"") == 0, "JSON string escapes: %s", out.data);
    utf8_buf_free(&out);
}

static void test_state_json(void) {
    run_settings s = {.steps = 7, .epochs = 1.5, .batch = 2, .grad_accum = 3, .warmup = 1, .eval_every = 4,
                      .save_every = 5, .lr = 1e-5, .weight_decay = 0.01, .clip = 0.5, .schedule = SCHEDULE_COSINE,
                      .loss = LOSS_ALL, .seed = 0xfedcba9876543210ull, .shuffle = 1, .keep_best = 1, .bf16 = 1,
                      .save_dtype = ST_BF16, .eval_path = (char[]){"ev.tok"}};
    run_progress p = {.step = 3, .elapsed = 2.25, .best_step = 2, .best_eval = 4.5, .log_bytes = 321,
                      .data_fingerprint = 0x0123456789abcdefull, .data_examples = 40};
    char *json = train_state_json(&s, &p);
    run_settings s2;
    run_progress p2;
    char why[ERR_MAX];
    ok(train_state_parse(json, "state", &s2, &p2, why, sizeof why), "the state parses");
    ok(s2.steps == s.steps && s2.epochs == s.epochs && s2.batch == s.batch && s2.grad_accum == s.grad_accum &&
           s2.warmup == s.warmup && s2.eval_every == s.eval_every && s2.save_every == s.save_every && s2.lr == s.lr &&
           s2.weight_decay == s.weight_decay && s2.clip == s.clip && s2.schedule == s.schedule && s2.loss == s.loss &&
           s2.seed == s.seed && s2.shuffle && s2.keep_best && s2.bf16 && s2.save_dtype == s.save_dtype &&
           strcmp(s2.eval_path, s.eval_path) == 0,
       "the settings read back as written");
    ok(p2.step == p.step && p2.elapsed == p.elapsed && p2.best_step == p.best_step && p2.best_eval == p.best_eval &&
           p2.log_bytes == p.log_bytes && p2.data_fingerprint == p.data_fingerprint &&
           p2.data_examples == p.data_examples,
       "the progress reads back as written");
    free(s2.eval_path);
    free(json);
}

/* tokenizer_open, or die with the reason. */
static tokenizer *load_tokenizer(const char *path) {
    char err[512];
    tokenizer *t = tokenizer_open(path, err, sizeof err);
    if (!t) die("%s: %s", path, err);
    return t;
}

int main(void) {
    cli_init("records.t");
    char *path = data_file("tokenizer.json");
    tok = load_tokenizer(path);
    free(path);
    eos_id = (uint32_t)tokenizer_token_id(tok, "<|endoftext|>");
    test_encode();
    test_text_line();
    test_json_string();
    test_state_json();
    tokenizer_free(tok);
    return done_testing();
}
