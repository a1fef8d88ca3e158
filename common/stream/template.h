/* template.h — the prompt template wrapped around a question, written on
 * the command line as "### Question:\n{question}\n\n### Answer:". */
#ifndef TUNEPIPE_TEMPLATE_H
#define TUNEPIPE_TEMPLATE_H

#include <stddef.h>

#include "tokenizer/utf8.h"

typedef struct {
    char *prefix, *suffix; /* the text before and after {question} */
} prompt_template;

/* Parses arg: \n, \t and \\ become the characters, {question} marks the
 * question. 0, or -1 with the reason, naming opt, in err (ERR_MAX bytes
 * hold any) when arg is not valid UTF-8 or has no {question}: the tools
 * call it a usage error. */
int template_parse(prompt_template *t, const char *opt, const char *arg, char *err, size_t errlen);
void template_free(prompt_template *t);
/* Appends prefix ++ text ++ suffix to out (just text when t has none): one
 * string to encode, since BPE splits depend on the neighbouring bytes. */
void template_wrap(const prompt_template *t, const char *text, size_t n, utf8_buf *out);
/* The question inside text, the inverse of template_wrap: when text is
 * prefix ++ question ++ suffix (always, for a template with none), sets
 * *off and *len to the question's bytes and returns 1; else returns 0. */
int template_unwrap(const prompt_template *t, const char *text, size_t n, size_t *off, size_t *len);

#endif
