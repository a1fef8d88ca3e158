/* record_decode.c — see record_decode.h. */
#include "record_decode.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

void json_put_string(utf8_buf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    utf8_buf_append(out, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            utf8_buf_append(out, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (named) utf8_buf_append(out, named, 2);
            else utf8_buf_append(out, esc, 6);
        } else {
            utf8_buf_append(out, s + i, 1);
        }
    }
    utf8_buf_append(out, "\"", 1);
}

size_t record_to_json(const record *r, const tokenizer *tok, long eos_id, int as_ids, int skip_special,
                      const prompt_template *tmpl, utf8_buf *out, utf8_buf *text) {
    size_t unknown = 0;
    char num[32];
    utf8_buf_append(out, num, (size_t)snprintf(num, sizeof num, "{\"id\":%llu", (unsigned long long)r->id));
    const char *stop = NULL;
    for (int s = 0; s < r->nseg; s++) {
        uint32_t n;
        const uint32_t *ids = segment_content(&r->seg[s], &n);
        /* Whether the model stopped by itself shows as a final EOS
         * (neox-gen emits it; strip-prompt keeps it). */
        if (strcmp(r->seg[s].name, SEG_GENERATED) == 0)
            stop = n && eos_id >= 0 && ids[n - 1] == (uint32_t)eos_id ? "eos" : "length";
        utf8_buf_append(out, ",\"", 2);
        utf8_buf_append(out, r->seg[s].name, strlen(r->seg[s].name));
        utf8_buf_append(out, "\":", 2);
        if (as_ids) {
            utf8_buf_append(out, "[", 1);
            for (uint32_t i = 0; i < n; i++)
                utf8_buf_append(out, num, (size_t)snprintf(num, sizeof num, i ? ",%u" : "%u", ids[i]));
            utf8_buf_append(out, "]", 1);
        } else {
            text->len = 0;
            unknown += tokenizer_decode(tok, ids, n, skip_special, text);
            const char *t = text->data ? text->data : "";
            size_t off = 0, len = text->len;
            if (tmpl && strcmp(r->seg[s].name, SEG_QUESTION) == 0) template_unwrap(tmpl, t, text->len, &off, &len);
            json_put_string(out, t + off, len);
        }
    }
    if (stop) {
        utf8_buf_append(out, ",\"stop\":\"", 9);
        utf8_buf_append(out, stop, strlen(stop));
        utf8_buf_append(out, "\"", 1);
    }
    utf8_buf_append(out, "}\n", 2);
    return unknown;
}
