/* tokenizer.h — the byte-level BPE tokenizer of GPT-NeoX / Pythia, loaded
 * from a Hugging Face tokenizer.json and byte-exact with tokenizers 0.23:
 * same ids from encode, same text from decode.
 *
 * Supported tokenizer.json: model BPE (no dropout, no subword prefix/suffix,
 * no byte fallback), normalizer NFC or none, pre-tokenizer and decoder
 * ByteLevel, post-processor ByteLevel or none, added tokens without
 * single_word/lstrip/rstrip, no truncation or padding. Anything else is
 * refused at load, never approximated.
 *
 * A tokenizer caches the pieces it has encoded: one tokenizer per thread. */
#ifndef TUNEPIPE_TOKENIZER_H
#define TUNEPIPE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

typedef struct tokenizer tokenizer;

typedef struct {
    uint32_t *ids;
    size_t n, cap;
} token_ids;

void token_ids_push(token_ids *v, uint32_t id);
void token_ids_free(token_ids *v);

/* Loads path; on failure returns NULL with the reason in err. */
tokenizer *tokenizer_open(const char *path, char *err, size_t errlen);
void tokenizer_free(tokenizer *t);

/* When on, special added tokens written in text ("<|endoftext|>") are
 * encoded as the plain text they are made of (tokenizers'
 * encode_special_tokens). Off by default, as in Hugging Face. */
void tokenizer_set_special_as_text(tokenizer *t, int on);

/* Appends the ids of the n bytes at text. Returns 0, or -1 when text is not
 * valid UTF-8 (nothing appended; *bad_offset, if given, is the offset of the
 * first invalid byte). */
int tokenizer_encode(tokenizer *t, const char *text, size_t n, token_ids *out, size_t *bad_offset);

/* Appends the text of ids to out: the bytes of the tokens, with each invalid
 * UTF-8 sequence replaced by one U+FFFD. skip_special leaves out special
 * tokens. Ids that name no token are skipped, as Hugging Face does; returns
 * how many there were. */
size_t tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n, int skip_special, utf8_buf *out);

/* One more than the largest token id. */
uint32_t tokenizer_id_limit(const tokenizer *t);
/* The id of the token with exactly this content (added tokens first, then
 * the vocabulary, in its byte-level spelling), or -1. */
long tokenizer_token_id(const tokenizer *t, const char *content);

#endif
