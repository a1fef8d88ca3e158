/* record_decode.h — a token-stream record back to one JSON line, as
 * bpe-encode -d writes it. */
#ifndef TUNEPIPE_RECORD_DECODE_H
#define TUNEPIPE_RECORD_DECODE_H

#include <stddef.h>

#include "stream.h"
#include "template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

/* Appends {"id":N,"SEGMENT":...,...} and a newline to out: each segment as
 * its text (special tokens left out with skip_special) or, with as_ids, as
 * an array of ids; a generated segment adds "stop": "eos" when it ends with
 * eos_id (-1: none), else "length". With a template (tmpl not NULL), a
 * question's text wrapped in it is written without it. text is scratch.
 * Returns how many ids tok has no token for (left out of the text). */
size_t record_to_json(const record *r, const tokenizer *tok, long eos_id, int as_ids, int skip_special,
                      const prompt_template *tmpl, utf8_buf *out, utf8_buf *text);

/* Appends the n bytes at s as a JSON string, quotes included. */
void json_put_string(utf8_buf *out, const char *s, size_t n);

#endif
