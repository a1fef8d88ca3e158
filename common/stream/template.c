/* template.c — see template.h. */
#include "template.h"
#include "base/cli.h"
#include "base/io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MARK "{question}"

void template_parse(prompt_template *t, const char *opt, const char *arg) {
    size_t n = strlen(arg);
    if (utf8_valid_prefix(arg, n) != n) usage_error("%s: not valid UTF-8", opt);
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
    if (!at) usage_error("%s: no %s in '%s'", opt, MARK, arg);
    t->suffix = xstrdup(at + strlen(MARK));
    *at = '\0';
    t->prefix = text;
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

char *template_read_dir(const char *dir) {
    char *path = xmalloc(strlen(dir) + sizeof TEMPLATE_FILE + 1);
    sprintf(path, "%s/%s", dir, TEMPLATE_FILE);
    if (access(path, F_OK) != 0) {
        free(path);
        return NULL;
    }
    size_t n;
    char *text = read_file(path, &n);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
    if (strlen(text) != n || utf8_valid_prefix(text, n) != n) die("%s: not one line of UTF-8", path);
    if (!strstr(text, MARK)) die("%s: no %s in '%s'", path, MARK, text);
    free(path);
    return text;
}

void template_write_dir(const char *dir, const char *text) {
    char *path = xmalloc(strlen(dir) + sizeof TEMPLATE_FILE + 32);
    sprintf(path, "%s/%s.tmp.%ld", dir, TEMPLATE_FILE, (long)getpid());
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) die("%s: %s", path, strerror(errno));
    char *final = xstrdup(path);
    *strstr(final, ".tmp.") = '\0';
    if (rename(path, final) != 0) die("%s: %s", final, strerror(errno));
    free(final);
    free(path);
}
