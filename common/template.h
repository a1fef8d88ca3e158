/* template.h — the prompt template wrapped around a question, written on
 * the command line as "### Question:\n{question}\n\n### Answer:". */
#ifndef TUNEPIPE_TEMPLATE_H
#define TUNEPIPE_TEMPLATE_H

typedef struct {
    char *prefix, *suffix; /* the text before and after {question} */
} prompt_template;

/* Parses arg: \n, \t and \\ become the characters, {question} marks the
 * question. Not valid UTF-8 or no {question}: a usage error naming opt. */
void template_parse(prompt_template *t, const char *opt, const char *arg);
void template_free(prompt_template *t);

#endif
