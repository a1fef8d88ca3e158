/* utf8.c — UTF-8 validation, encoding and lossy conversion; see utf8.h. */
#include "utf8.h"
#include "base/cli.h"

#include <stdlib.h>
#include <string.h>

void utf8_buf_reserve(utf8_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void utf8_buf_append(utf8_buf *b, const void *bytes, size_t n) {
    utf8_buf_reserve(b, n);
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
}

char *utf8_buf_cstr(utf8_buf *b) {
    utf8_buf_reserve(b, 0);
    b->data[b->len] = 0;
    return b->data;
}

void utf8_buf_free(utf8_buf *b) {
    free(b->data);
    *b = (utf8_buf){0};
}

/* The sequence starting at s (n >= 1 bytes left): returns how many bytes it
 * spans and sets *valid. An invalid sequence spans its maximal subpart: the
 * bytes that could still have begun a valid sequence, at least one. */
static size_t sequence_at(const unsigned char *s, size_t n, int *valid) {
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    *valid = 0;
    if (c < 0x80) { *valid = 1; return 1; }
    if (c < 0xC2) return 1;
    if (c < 0xE0) need = 1;
    else if (c < 0xF0) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;       /* overlong */
        else if (c == 0xED) hi = 0x9F;  /* surrogates */
    } else if (c < 0xF5) {
        need = 3;
        if (c == 0xF0) lo = 0x90;       /* overlong */
        else if (c == 0xF4) hi = 0x8F;  /* above U+10FFFF */
    } else return 1;
    for (size_t i = 1; i <= need; i++) {
        if (i >= n) return i;
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i;
    }
    *valid = 1;
    return need + 1;
}

size_t utf8_valid_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes at a time: most text is mostly ASCII. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) { i++; continue; }
        int valid;
        size_t len = sequence_at(s + i, n - i, &valid);
        if (!valid) return i;
        i += len;
    }
    return n;
}

size_t utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

void utf8_append_lossy(utf8_buf *out, const char *bytes, size_t n) {
    static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */
    const unsigned char *s = (const unsigned char *)bytes;
    size_t i = 0;
    while (i < n) {
        size_t good = utf8_valid_prefix((const char *)s + i, n - i);
        utf8_buf_append(out, s + i, good);
        i += good;
        if (i == n) break;
        int valid;
        i += sequence_at(s + i, n - i, &valid);
        utf8_buf_append(out, replacement, 3);
    }
}
