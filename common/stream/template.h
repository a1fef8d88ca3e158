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

/* A model directory records the template its model was trained with in
 * this file, written as on the command line (one line, \n escapes), so
 * that neox-gen -i and neox-serve wrap questions the same way. */
#define TEMPLATE_FILE "prompt_template.txt"
/* The template of a model directory without one: the lamini recipe's. */
#define TEMPLATE_DEFAULT "### Question:\\n{question}\\n\\n### Answer:"
/* DIR's recorded template into *text, malloc'd, or NULL when it has none;
 * 1, or 0 with the reason in err when the file is not one line of UTF-8
 * or has no {question}. */
int template_read_dir(const char *dir, char **text, char *err, int errlen);
/* Writes text as DIR's template file (atomically); 1, or 0 with the reason. */
int template_write_dir(const char *dir, const char *text, char *err, int errlen);
/* Appends prefix ++ text ++ suffix to out (just text when t has none): one
 * string to encode, since BPE splits depend on the neighbouring bytes. */
void template_wrap(const prompt_template *t, const char *text, size_t n, utf8_buf *out);
/* The question inside text, the inverse of template_wrap: when text is
 * prefix ++ question ++ suffix (always, for a template with none), sets
 * *off and *len to the question's bytes and returns 1; else returns 0. */
int template_unwrap(const prompt_template *t, const char *text, size_t n, size_t *off, size_t *len);

#endif
