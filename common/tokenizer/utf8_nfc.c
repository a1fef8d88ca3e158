/* utf8_nfc.c — NFC with utf8proc, fast on text that is already normalized.
 *
 * Text splits into segments that normalize independently: a segment begins
 * at an "inert" character (combining class 0, unchanged by NFC, never
 * composing with what precedes it), so only the segments holding other
 * characters go through utf8proc. Most text has none: every code point below
 * U+0300 is inert, and so are most letters of other scripts.
 *
 * Hugging Face tokenizers normalizes with the unicode-normalization-alignments
 * crate, whose tables are Unicode 9.0. The combining marks assigned since then
 * have combining class 0 there (they are not reordered), and the one newer
 * canonical composition (Dives Akuru U+11935 U+11930 -> U+11938, Unicode 13)
 * is not applied; utf8proc 2.8 knows both. These characters, listed below
 * (found by normalizing probes around every code point with both; see
 * bench/bpe_hf.js), are treated as starters that compose with nothing,
 * which is what they are to tokenizers 0.23. */
#include "utf8_nfc.h"
#include "base/cli.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define CP_COUNT 0x110000u

typedef struct { uint32_t first, last; } cp_span;

static const cp_span unknown_to_hf[] = {
    {0x07FD, 0x07FD},   {0x0898, 0x089F},   {0x08CA, 0x08D3},   {0x09FE, 0x09FE},   {0x0C3C, 0x0C3C},
    {0x0D3B, 0x0D3C},   {0x0EBA, 0x0EBA},   {0x1715, 0x1715},   {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C},   {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x11930, 0x11930}, {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97},
    {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

/* Bit set: the code point is inert (see above), or, in opaque, one of
 * unknown_to_hf. Built once, on the first text that needs them. */
static uint64_t inert[CP_COUNT / 64], opaque[CP_COUNT / 64];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static int bit(const uint64_t *set, uint32_t cp) { return (int)(set[cp >> 6] >> (cp & 63)) & 1; }
static void set_bit(uint64_t *set, uint32_t cp) { set[cp >> 6] |= 1ull << (cp & 63); }

/* Canonical decomposition of cp into d (at most 8); returns its length. */
static int decompose(uint32_t cp, utf8proc_int32_t *d) {
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, d, 8, UTF8PROC_DECOMPOSE, &boundclass);
    /* Canonical decompositions are at most 4 long: else utf8proc is broken. */
    assert(n >= 1 && n <= 8 && "utf8proc cannot decompose a code point it says decomposes");
    return (int)n;
}

/* Whether NFC keeps cp, whose canonical decomposition d[0..n) is given: it
 * is a primary composite (not a singleton, not excluded). */
static int nfc_keeps(uint32_t cp, utf8proc_int32_t *d, int n) {
    utf8proc_ssize_t m = utf8proc_normalize_utf32(d, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    return m == 1 && d[0] == (utf8proc_int32_t)cp;
}

/* Whether cp has a canonical decomposition (utf8proc keeps compatibility ones
 * in the same field; Hangul syllables decompose by algorithm). */
static int decomposes(uint32_t cp, const utf8proc_property_t *p) {
    return (cp >= 0xAC00 && cp <= 0xD7A3) || (p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0);
}

static void build_tables(void) {
    /* Characters that may compose with something before them: every
     * non-initial character of a canonical decomposition (a superset). */
    static uint64_t composes_back[CP_COUNT / 64], has_decomposition[CP_COUNT / 64];
    utf8proc_int32_t d[8];
    for (uint32_t cp = 0; cp < CP_COUNT; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
        if (!decomposes(cp, p)) {
            if (p->combining_class == 0) set_bit(inert, cp); /* for now; see below */
            continue;
        }
        set_bit(has_decomposition, cp);
        int n = decompose(cp, d);
        for (int i = 1; i < n; i++) set_bit(composes_back, (uint32_t)d[i]);
    }
    for (size_t w = 0; w < CP_COUNT / 64; w++) inert[w] &= ~composes_back[w];
    for (uint32_t cp = 0; cp < CP_COUNT; cp++) {
        if (!bit(has_decomposition, cp) || bit(composes_back, cp)) continue;
        if (utf8proc_get_property((utf8proc_int32_t)cp)->combining_class != 0) continue;
        int n = decompose(cp, d);
        if (bit(composes_back, (uint32_t)d[0]) || utf8proc_get_property(d[0])->combining_class != 0) continue;
        if (nfc_keeps(cp, d, n)) set_bit(inert, cp);
    }
    /* utf8_nfc skips code points below U+0300 unseen: they must be inert. */
    for (uint32_t cp = 0; cp < 0x300; cp++) assert(bit(inert, cp) && "utf8proc's tables are not Unicode's");
    for (size_t i = 0; i < sizeof unknown_to_hf / sizeof unknown_to_hf[0]; i++)
        for (uint32_t cp = unknown_to_hf[i].first; cp <= unknown_to_hf[i].last; cp++) {
            set_bit(opaque, cp);
            inert[cp >> 6] &= ~(1ull << (cp & 63));
        }
}

/* Appends NFC of the segment s[0..n) and reports whether it changed. */
static int normalize_segment(const char *s, size_t n, utf8_buf *out) {
    const utf8proc_option_t nfc = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    utf8proc_int32_t stack[64], *cps = stack;
    utf8proc_ssize_t cap = 64, len;
    while ((len = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, cps, cap, nfc)) > cap) {
        cap = len;
        cps = cps == stack ? xmalloc((size_t)cap * sizeof *cps) : xrealloc(cps, (size_t)cap * sizeof *cps);
    }
    /* s is valid UTF-8 and the options are fixed: only memory can fail. */
    if (len < 0) out_of_memory("utf8proc: %s", utf8proc_errmsg(len));
    len = utf8proc_normalize_utf32(cps, len, nfc);
    size_t start = out->len;
    utf8_buf_reserve(out, (size_t)len * 4);
    for (utf8proc_ssize_t i = 0; i < len; i++) out->len += utf8_encode((uint32_t)cps[i], out->data + out->len);
    if (cps != stack) free(cps);
    return out->len - start != n || memcmp(out->data + start, s, n) != 0;
}

/* From the character boundary i, the first byte at or above 0xCC: the lead
 * byte of the first character at or above U+0300 (n: none). */
static size_t skip_below_u0300(const unsigned char *s, size_t n, size_t i) {
    for (uint64_t w; i + 8 <= n && (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ull));) i += 8; /* ASCII */
    while (i < n && s[i] < 0xCC) i++;
    return i;
}

/* Start of the character that ends just before i. */
static size_t char_before(const unsigned char *s, size_t i) {
    do i--;
    while (i > 0 && (s[i] & 0xC0) == 0x80);
    return i;
}

int utf8_nfc(const char *str, size_t n, utf8_buf *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = skip_below_u0300(s, n, 0);
    if (i == n) return 0;
    pthread_once(&tables_once, build_tables);

    size_t start = out->len;
    size_t copied = 0;    /* input before this is in out */
    size_t seg = 0;       /* where the current segment begins: the last inert character */
    int changed = 0;
    if (i > 0) seg = char_before(s, i);
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode(s + i, &cp);
        if (bit(inert, cp)) {
            size_t next = skip_below_u0300(s, n, i + len);
            seg = next > i + len ? char_before(s, next) : i;
            i = next;
            continue;
        }
        /* A segment that needs utf8proc: from seg to the next inert or opaque
         * character (an opaque one is a segment by itself). */
        if (bit(opaque, cp)) {
            seg = i + len;
            i += len;
            continue;
        }
        size_t end = i + len;
        while (end < n) {
            uint32_t next;
            size_t l = utf8_decode(s + end, &next);
            if (next < 0x300 || bit(inert, next) || bit(opaque, next)) break;
            end += l;
        }
        utf8_buf_append(out, s + copied, seg - copied);
        changed |= normalize_segment((const char *)s + seg, end - seg, out);
        copied = end;
        seg = end;
        i = end;
    }
    if (!changed) {
        out->len = start;
        return 0;
    }
    utf8_buf_append(out, s + copied, n - copied);
    return 1;
}
