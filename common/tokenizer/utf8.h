/* utf8.h — UTF-8 decoding, validation and Rust's from_utf8_lossy, plus the
 * growable byte buffer the tokenizer writes text into. */
#ifndef TUNEPIPE_UTF8_H
#define TUNEPIPE_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;          /* not NUL-terminated unless utf8_buf_cstr() is called */
    size_t len, cap;
} utf8_buf;

void utf8_buf_reserve(utf8_buf *b, size_t extra);
void utf8_buf_append(utf8_buf *b, const void *bytes, size_t n);
/* NUL-terminates (without counting the NUL in len) and returns data. */
char *utf8_buf_cstr(utf8_buf *b);
void utf8_buf_free(utf8_buf *b);

/* Length of the longest valid UTF-8 prefix of s (n when all of s is valid).
 * Valid means RFC 3629: shortest form, no surrogates, at most U+10FFFF. */
size_t utf8_valid_prefix(const char *s, size_t n);

/* Decodes the character at s, which must be valid UTF-8 with at least one
 * byte left; returns its length in bytes. */
static inline size_t utf8_decode(const unsigned char *s, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xE0) { *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu); return 2; }
    if (c < 0xF0) { *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu); return 3; }
    *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
    return 4;
}

/* Writes cp (at most U+10FFFF, not a surrogate) as UTF-8; returns the length. */
size_t utf8_encode(uint32_t cp, char *out);

/* Appends bytes to out as text the way Rust's String::from_utf8_lossy does:
 * valid sequences are copied, and each maximal invalid subpart (Unicode's
 * "substitution of maximal subparts") becomes one U+FFFD. */
void utf8_append_lossy(utf8_buf *out, const char *bytes, size_t n);

#endif
