/* tokenizer_pretok.c — the GPT-2 pre-tokenizer regex, without a regex engine.
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * A backtracking engine (Oniguruma, as Hugging Face uses) takes the first
 * alternative that matches at each position. Every character matches some
 * alternative, so the matches tile the text. The lookahead alternative takes
 * a whole run of whitespace at the end of the text, else the run less its
 * last character (which then starts the next match, e.g. " word"); a single
 * whitespace character before a non-space falls through to \s+. */
#include "tokenizer_internal.h"
#include "utf8_class.h"

static inline enum char_class class_at(const unsigned char *s, size_t i, size_t *len) {
    if (s[i] < 0x80) {
        *len = 1;
        return (enum char_class)byte_class[s[i]];
    }
    uint32_t cp;
    *len = utf8_decode(s + i, &cp);
    return unicode_class(cp);
}

static int is_contraction(const unsigned char *s, size_t n, size_t i, size_t *len) {
    if (i + 1 >= n) return 0;
    unsigned char a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        *len = 2;
        return 1;
    }
    if (i + 2 >= n) return 0;
    unsigned char b = s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
        *len = 3;
        return 1;
    }
    return 0;
}

static inline size_t piece_end(const unsigned char *s, size_t n, size_t i) {
    size_t len;
    if (s[i] == '\'' && is_contraction(s, n, i, &len)) return i + len;
    enum char_class cls = class_at(s, i, &len);
    size_t run = i + len; /* the run of cls continues from here */
    if (s[i] == ' ' && run < n) {
        /* " ?" before a letter, digit or other character joins its run */
        enum char_class next = class_at(s, run, &len);
        if (next != CC_SPACE) {
            cls = next;
            run += len;
        }
    }
    if (cls != CC_SPACE) {
        for (;;) {
            while (run < n && byte_class[s[run]] == cls) run++;
            if (run == n || s[run] < 0x80 || class_at(s, run, &len) != cls) return run;
            run += len;
        }
    }
    size_t last = i; /* start of the run's last character */
    while (run < n && class_at(s, run, &len) == CC_SPACE) {
        last = run;
        run += len;
    }
    if (run == n || last == i) return run; /* at the end, or a single one: \s+ */
    return last;
}

size_t gpt2_split(const unsigned char *s, size_t n, size_t start, size_t *ends, size_t max) {
    size_t k = 0;
    for (size_t i = start; i < n && k < max; i = ends[k++]) ends[k] = piece_end(s, n, i);
    return k;
}
