/* template.c — see template.h. */
#include "template.h"
#include "base/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARK "{question}"

int template_parse(prompt_template *t, const char *opt, const char *arg, char *err, size_t errlen) {
    size_t n = strlen(arg);
    if (utf8_valid_prefix(arg, n) != n) {
        snprintf(err, errlen, "%s: not valid UTF-8", opt);
        return -1;
    }
    char *text = xmalloc(n + 1), *o = text;
    for (const char *s = arg; *s; s++) {
        if (*s == '\\' && (s[1] == 'n' || s[1] == 't' || s[1] == '\\')) {
            s++;
            *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : '\\';
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    char *at = strstr(text, MARK);
    if (!at) {
        free(text);
        snprintf(err, errlen, "%s: no %s in '%s'", opt, MARK, arg);
        return -1;
    }
    t->suffix = xstrdup(at + strlen(MARK));
    *at = '\0';
    t->prefix = text;
    return 0;
}

void template_free(prompt_template *t) {
    free(t->prefix);
    free(t->suffix);
    t->prefix = t->suffix = NULL;
}

void template_wrap(const prompt_template *t, const char *text, size_t n, utf8_buf *out) {
    if (t->prefix) utf8_buf_append(out, t->prefix, strlen(t->prefix));
    utf8_buf_append(out, text, n);
    if (t->suffix) utf8_buf_append(out, t->suffix, strlen(t->suffix));
}

int template_unwrap(const prompt_template *t, const char *text, size_t n, size_t *off, size_t *len) {
    size_t np = t->prefix ? strlen(t->prefix) : 0, ns = t->suffix ? strlen(t->suffix) : 0;
    if (np + ns > n || memcmp(text, t->prefix ? t->prefix : "", np) != 0 ||
        memcmp(text + n - ns, t->suffix ? t->suffix : "", ns) != 0)
        return 0;
    *off = np;
    *len = n - np - ns;
    return 1;
}
