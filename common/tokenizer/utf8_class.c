/* utf8_class.c — regex character classes from utf8proc's general categories.
 *
 * Hugging Face tokenizers runs the GPT-2 regex with Oniguruma 6.9.10, whose
 * tables are Unicode 16.0; Debian 12's utf8proc 2.8 has Unicode 15.0. The
 * letters and digits assigned in Unicode 15.1 and 16.0 are listed below so
 * that text using them splits as it does in tokenizers 0.23 (found by
 * classifying every code point with both; see bench/bpe_hf.js). They
 * only apply to code points utf8proc calls unassigned, so a newer utf8proc
 * agrees with them. \s is Unicode White_Space in both, which is stable. */
#include "utf8_class.h"

#include <pthread.h>
#include <utf8proc.h>

#define L CC_LETTER
#define N CC_NUMBER
#define S CC_SPACE
#define X CC_NOT_ASCII
#define X16 X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X
const unsigned char byte_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, S, S, S, S, S, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    S, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    N, N, N, N, N, N, N, N, N, N, 0, 0, 0, 0, 0, 0,
    0, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L, L, L, L, 0, 0, 0, 0, 0,
    0, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L, L, L, L, 0, 0, 0, 0, 0,
    X16, X16, X16, X16, X16, X16, X16, X16,
};
#undef X16
#undef X
#undef L
#undef N
#undef S

typedef struct { uint32_t first, last; unsigned char cls; } cp_range;

/* Letters (Lu Ll Lt Lm Lo) and numbers (Nd Nl No) new in Unicode 15.1/16.0. */
static const cp_range newer_assigned[] = {
    {0x1C89, 0x1C8A, CC_LETTER},   {0xA7CB, 0xA7CD, CC_LETTER},   {0xA7DA, 0xA7DC, CC_LETTER},
    {0x105C0, 0x105F3, CC_LETTER}, {0x10D40, 0x10D49, CC_NUMBER}, {0x10D4A, 0x10D65, CC_LETTER},
    {0x10D6F, 0x10D85, CC_LETTER}, {0x10EC2, 0x10EC4, CC_LETTER}, {0x11380, 0x11389, CC_LETTER},
    {0x1138B, 0x1138B, CC_LETTER}, {0x1138E, 0x1138E, CC_LETTER}, {0x11390, 0x113B5, CC_LETTER},
    {0x113B7, 0x113B7, CC_LETTER}, {0x113D1, 0x113D1, CC_LETTER}, {0x113D3, 0x113D3, CC_LETTER},
    {0x116D0, 0x116E3, CC_NUMBER}, {0x11BC0, 0x11BE0, CC_LETTER}, {0x11BF0, 0x11BF9, CC_NUMBER},
    {0x13460, 0x143FA, CC_LETTER}, {0x16100, 0x1611D, CC_LETTER}, {0x16130, 0x16139, CC_NUMBER},
    {0x16D40, 0x16D6C, CC_LETTER}, {0x16D70, 0x16D79, CC_NUMBER}, {0x18CFF, 0x18CFF, CC_LETTER},
    {0x1CCF0, 0x1CCF9, CC_NUMBER}, {0x1E5D0, 0x1E5ED, CC_LETTER}, {0x1E5F0, 0x1E5F0, CC_LETTER},
    {0x1E5F1, 0x1E5FA, CC_NUMBER}, {0x2EBF0, 0x2EE5D, CC_LETTER},
};

static enum char_class newer_class(uint32_t cp) {
    size_t lo = 0, hi = sizeof newer_assigned / sizeof newer_assigned[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < newer_assigned[mid].first) hi = mid;
        else if (cp > newer_assigned[mid].last) lo = mid + 1;
        else return (enum char_class)newer_assigned[mid].cls;
    }
    return CC_OTHER;
}

static enum char_class class_from_tables(uint32_t cp) {
    switch (cp) { /* White_Space beyond ASCII */
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return CC_SPACE;
    }
    if (cp >= 0x2000 && cp <= 0x200A) return CC_SPACE;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return CC_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return CC_NUMBER;
    case UTF8PROC_CATEGORY_CN:
        return newer_class(cp);
    default:
        return CC_OTHER;
    }
}

/* The Basic Multilingual Plane, where most text lives, from a table filled
 * once (65,536 lookups, well under a millisecond). */
static unsigned char bmp_class[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

static void fill_bmp_class(void) {
    for (uint32_t cp = 0x80; cp < 0x10000; cp++) bmp_class[cp] = (unsigned char)class_from_tables(cp);
}

enum char_class unicode_class(uint32_t cp) {
    if (cp >= 0x10000) return class_from_tables(cp);
    pthread_once(&bmp_once, fill_bmp_class);
    return (enum char_class)bmp_class[cp];
}
