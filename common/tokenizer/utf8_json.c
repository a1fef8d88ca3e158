/* utf8_json.c — decoding one string member of a JSON object exactly. */
#include "utf8_json.h"

#include <string.h>

static int is_hex(char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

int json_has_nul_escape(const char *s, size_t n) {
    int nul = 0;
    for (size_t i = 0; i + 1 < n; i += 2) { /* past the escaped character, so "\\u0000" is not one */
        const char *esc = memchr(s + i, '\\', n - 1 - i);
        if (!esc) break;
        i = (size_t)(esc - s);
        if (s[i + 1] != 'u') continue;
        if (i + 6 > n || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) || !is_hex(s[i + 4]) || !is_hex(s[i + 5]))
            return -1;
        if (memcmp(s + i + 2, "0000", 4) == 0) nul = 1;
    }
    return nul;
}

/* What cJSON skips between tokens: every byte up to the space, so a line
 * cJSON reads is read here the same way. */
static size_t skip_space(const char *s, size_t n, size_t i) {
    while (i < n && (unsigned char)s[i] <= ' ') i++;
    return i;
}

/* s[i] is '"': returns the index just past the closing quote. */
static size_t skip_string(const char *s, size_t n, size_t i) {
    for (i++; i < n && s[i] != '"'; i++)
        if (s[i] == '\\') i++;
    return i + 1;
}

/* Skips one value (string, number, literal, array or object). */
static size_t skip_value(const char *s, size_t n, size_t i) {
    if (i < n && s[i] == '"') return skip_string(s, n, i);
    int depth = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, n, i);
            continue;
        }
        if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0) return i;
            if (--depth == 0) return i + 1;
        } else if (c == ',' && depth == 0) return i;
        i++;
    }
    return i;
}

static int hex4(const char *s, unsigned *v) {
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                   : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
        if (d > 15) return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* Decodes the string starting at s[i] == '"'. */
static int decode_string(const char *s, size_t n, size_t i, utf8_buf *out) {
    for (i++; i < n && s[i] != '"'; i++) {
        if (s[i] != '\\') {
            size_t run = i;
            while (run < n && s[run] != '"' && s[run] != '\\') run++;
            utf8_buf_append(out, s + i, run - i);
            i = run - 1;
            continue;
        }
        if (++i >= n) return -1;
        char c = s[i], ch[4];
        switch (c) {
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            unsigned cp, low;
            if (i + 4 >= n || hex4(s + i + 1, &cp)) return -1;
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 6 >= n || s[i + 1] != '\\' || s[i + 2] != 'u' || hex4(s + i + 3, &low) || low < 0xDC00 ||
                    low > 0xDFFF)
                    return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
            utf8_buf_append(out, ch, utf8_encode(cp, ch));
            continue;
        }
        default: break; /* \" \\ \/ */
        }
        utf8_buf_append(out, &c, 1);
    }
    return i < n ? 0 : -1;
}

long json_last_member(const char *s, size_t n, const char *key, size_t *value) {
    size_t key_len = strlen(key);
    utf8_buf name = {0};
    long found = -1, index = 0;
    size_t i = 0;
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) i = 3; /* cJSON skips a byte-order mark */
    i = skip_space(s, n, i);
    if (i >= n || s[i] != '{') return -1;
    i = skip_space(s, n, i + 1);
    for (; i < n && s[i] == '"'; index++) {
        name.len = 0;
        if (decode_string(s, n, i, &name)) break;
        int match = name.len == key_len && memcmp(name.data, key, key_len) == 0;
        i = skip_space(s, n, skip_string(s, n, i));
        if (i >= n || s[i] != ':') break;
        i = skip_space(s, n, i + 1);
        if (match) {
            found = index;
            *value = i;
        }
        i = skip_space(s, n, skip_value(s, n, i));
        if (i < n && s[i] == ',') i = skip_space(s, n, i + 1);
    }
    utf8_buf_free(&name);
    return found;
}

int json_string_at(const char *s, size_t n, size_t at, utf8_buf *out) {
    if (at >= n || s[at] != '"') return -1;
    return decode_string(s, n, at, out);
}

int json_member_string(const char *s, size_t n, const char *key, utf8_buf *out) {
    size_t at;
    if (json_last_member(s, n, key, &at) < 0) return -1;
    return json_string_at(s, n, at, out);
}
