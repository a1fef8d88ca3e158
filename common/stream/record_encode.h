/* record_encode.h — one input line of bpe-encode to a token-stream record:
 * a JSONL object whose members feed the question, answer and generated
 * segments (as text, or as arrays of token ids), or a plain text line that
 * is a question; the prompt template around the question; the end-of-text
 * token after the answer. */
#ifndef TUNEPIPE_RECORD_ENCODE_H
#define TUNEPIPE_RECORD_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"
#include "template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

/* The segments a JSONL record feeds, in the order they are written. */
enum { RECORD_QUESTION, RECORD_ANSWER, RECORD_GENERATED, RECORD_SEGMENTS };

typedef struct {
    const char *member;     /* the JSON member */
    int required;           /* named by --fields: a record without it is bad */
} record_source;

/* Set tok and eos_id, and maybe tmpl and eos, after record_encoder_init. */
typedef struct {
    tokenizer *tok;
    record_source sources[RECORD_SEGMENTS];
    prompt_template tmpl;   /* around the question; prefix NULL when none */
    int eos;                /* end the answer with eos_id */
    uint32_t eos_id;
    char *fields_buf;       /* what the sources' member names point into */
    token_ids ids;          /* scratch */
    utf8_buf value, text;
} record_encoder;

/* Fields "question,answer", eos on, no template. */
void record_encoder_init(record_encoder *e);
/* --fields Q[,A]: Q feeds the question, A the answer, except that a member
 * named after a segment (question, answer, generated) feeds that segment.
 * 0, or -1 with the reason, naming --fields, in err (ERR_MAX bytes hold
 * any) for a malformed list: the tool calls it a usage error. */
int record_encoder_set_fields(record_encoder *e, const char *fields, char *err, size_t errlen);
void record_encoder_free(record_encoder *e);

/* The record of one JSONL line (lineno is its id unless the line has a
 * usable "id"); 0, or -1 with the one-line reason in err. */
int record_encode_json(record_encoder *e, const char *line, size_t len, uint64_t lineno, record *r, char *err,
                       size_t errlen);
/* The record of one text line: its question only, id lineno. */
int record_encode_text(record_encoder *e, const char *line, size_t len, uint64_t lineno, record *r, char *err,
                       size_t errlen);

#endif
