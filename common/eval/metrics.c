/* metrics.c — text-comparison metrics; see metrics.h. */
#include "metrics.h"

#include "base/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ------------------------------------------------------------------------ */
/* word vocabulary: open addressing over malloc'd strings */

struct word_vocab {
    char **words;     /* by id */
    uint32_t nwords;
    uint32_t *slots;  /* id + 1, 0 = empty */
    size_t nslots;    /* power of two, kept at most half full */
};

word_vocab *word_vocab_new(void) {
    word_vocab *v = xcalloc(1, sizeof *v);
    v->nslots = 1024;
    v->slots = xcalloc(v->nslots, sizeof *v->slots);
    return v;
}

void word_vocab_free(word_vocab *v) {
    if (!v) return;
    for (uint32_t i = 0; i < v->nwords; i++) free(v->words[i]);
    free(v->words);
    free(v->slots);
    free(v);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void vocab_grow(word_vocab *v) {
    size_t nslots = v->nslots * 2;
    uint32_t *slots = xcalloc(nslots, sizeof *slots);
    for (uint32_t id = 0; id < v->nwords; id++) {
        size_t i = hash_bytes(v->words[id], strlen(v->words[id])) & (nslots - 1);
        while (slots[i]) i = (i + 1) & (nslots - 1);
        slots[i] = id + 1;
    }
    free(v->slots);
    v->slots = slots;
    v->nslots = nslots;
}

static uint32_t vocab_id(word_vocab *v, const char *w, size_t n) {
    size_t i = hash_bytes(w, n) & (v->nslots - 1);
    for (; v->slots[i]; i = (i + 1) & (v->nslots - 1)) {
        const char *s = v->words[v->slots[i] - 1];
        if (strncmp(s, w, n) == 0 && s[n] == '\0') return v->slots[i] - 1;
    }
    uint32_t id = v->nwords++;
    if ((id & (id - 1)) == 0) v->words = xrealloc(v->words, (id ? 2 * (size_t)id : 1) * sizeof *v->words);
    char *copy = xmalloc(n + 1);
    memcpy(copy, w, n);
    copy[n] = '\0';
    v->words[id] = copy;
    v->slots[i] = id + 1;
    if (2 * (size_t)v->nwords > v->nslots) vocab_grow(v);
    return id;
}

static int is_word_char(utf8proc_int32_t c) {
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

uint32_t *text_words(word_vocab *v, const char *text, size_t *n) {
    size_t len = strlen(text), count = 0, cap = 16;
    uint32_t *ids = xmalloc(cap * sizeof *ids);
    /* Lowercasing maps a code point to at most 4 UTF-8 bytes. */
    char *word = xmalloc(4 * len + 1);
    size_t wlen = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)text;
    for (size_t i = 0; i <= len;) {
        utf8proc_int32_t c = -1;
        utf8proc_ssize_t step = 1;
        if (i < len) {
            step = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &c);
            if (step < 1) { step = 1; c = -1; } /* an invalid byte separates words */
        }
        if (c >= 0 && is_word_char(c)) {
            wlen += (size_t)utf8proc_encode_char(utf8proc_tolower(c), (utf8proc_uint8_t *)word + wlen);
        } else if (wlen) {
            if (count == cap) ids = xrealloc(ids, (cap *= 2) * sizeof *ids);
            ids[count++] = vocab_id(v, word, wlen);
            wlen = 0;
        }
        i += (size_t)step;
    }
    free(word);
    *n = count;
    return ids;
}

/* ------------------------------------------------------------------------ */
/* metrics */

static int is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static void trimmed(const char *s, const char **start, size_t *n) {
    size_t len = strlen(s), a = 0;
    while (a < len && is_ascii_space(s[a])) a++;
    while (len > a && is_ascii_space(s[len - 1])) len--;
    *start = s + a;
    *n = len - a;
}

int exact_match(const char *reference, const char *generated) {
    const char *r, *g;
    size_t nr, ng;
    trimmed(reference, &r, &nr);
    trimmed(generated, &g, &ng);
    return nr == ng && memcmp(r, g, nr) == 0;
}

typedef struct {
    const uint32_t *ids;
    size_t n;
} ngram_ctx;

static int ngram_cmp(const uint32_t *a, const uint32_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

static int ngram_pos_cmp(const void *x, const void *y, void *arg) {
    const ngram_ctx *c = arg;
    return ngram_cmp(c->ids + *(const size_t *)x, c->ids + *(const size_t *)y, c->n);
}

/* Start positions of the n-grams of ids, sorted by n-gram. */
static size_t *sorted_ngrams(const uint32_t *ids, size_t len, size_t n, size_t *count) {
    *count = len >= n ? len - n + 1 : 0;
    size_t *pos = xmalloc(*count * sizeof *pos);
    for (size_t i = 0; i < *count; i++) pos[i] = i;
    ngram_ctx c = {ids, n};
    qsort_r(pos, *count, sizeof *pos, ngram_pos_cmp, &c);
    return pos;
}

uint64_t ngram_overlap(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t n) {
    if (n == 0) return 0;
    size_t ca, cb;
    size_t *pa = sorted_ngrams(a, na, n, &ca), *pb = sorted_ngrams(b, nb, n, &cb);
    uint64_t common = 0;
    size_t i = 0, j = 0;
    while (i < ca && j < cb) {
        int c = ngram_cmp(a + pa[i], b + pb[j], n);
        if (c < 0) { i++; continue; }
        if (c > 0) { j++; continue; }
        size_t ra = 1, rb = 1; /* how often this n-gram occurs in a and in b */
        while (i + ra < ca && ngram_cmp(a + pa[i], a + pa[i + ra], n) == 0) ra++;
        while (j + rb < cb && ngram_cmp(b + pb[j], b + pb[j + rb], n) == 0) rb++;
        common += ra < rb ? ra : rb;
        i += ra;
        j += rb;
    }
    free(pa);
    free(pb);
    return common;
}

double overlap_f1(uint64_t common, size_t n_reference, size_t n_generated) {
    if (n_reference == 0 || n_generated == 0) return n_reference == n_generated ? 1.0 : 0.0;
    if (common == 0) return 0.0;
    double p = (double)common / (double)n_generated, r = (double)common / (double)n_reference;
    return 2 * p * r / (p + r);
}

double token_f1(const uint32_t *ref, size_t nref, const uint32_t *gen, size_t ngen) {
    return overlap_f1(ngram_overlap(ref, nref, gen, ngen, 1), nref, ngen);
}

size_t lcs_length(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    /* Two rows of the classic table: row[j] = LCS of a[0..i) and b[0..j). */
    size_t *prev = xcalloc(nb + 1, sizeof *prev), *cur = xcalloc(nb + 1, sizeof *cur);
    for (size_t i = 0; i < na; i++) {
        for (size_t j = 0; j < nb; j++)
            cur[j + 1] = a[i] == b[j] ? prev[j] + 1 : (prev[j + 1] > cur[j] ? prev[j + 1] : cur[j]);
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    size_t len = prev[nb];
    free(prev);
    free(cur);
    return len;
}

double rouge_l_f1(const uint32_t *ref, size_t nref, const uint32_t *gen, size_t ngen) {
    return overlap_f1(lcs_length(ref, nref, gen, ngen), nref, ngen);
}

void bleu_add(bleu_stats *s, const uint32_t *ref, size_t nref, const uint32_t *gen, size_t ngen) {
    for (size_t n = 1; n <= BLEU_MAX_N; n++) {
        s->matches[n - 1] += ngram_overlap(gen, ngen, ref, nref, n);
        s->totals[n - 1] += ngen >= n ? ngen - n + 1 : 0;
    }
    s->gen_words += ngen;
    s->ref_words += nref;
}

double bleu_score(const bleu_stats *s, double precisions[BLEU_MAX_N], double *brevity_penalty) {
    double log_sum = 0;
    int any_zero = 0;
    for (int n = 0; n < BLEU_MAX_N; n++) {
        double p = s->totals[n] ? (double)s->matches[n] / (double)s->totals[n] : 0.0;
        if (precisions) precisions[n] = p;
        if (p == 0) any_zero = 1;
        else log_sum += log(p);
    }
    double bp = 0;
    if (s->gen_words > 0)
        bp = s->gen_words > s->ref_words ? 1.0 : exp(1.0 - (double)s->ref_words / (double)s->gen_words);
    if (brevity_penalty) *brevity_penalty = bp;
    if (any_zero || s->gen_words == 0) return 0.0;
    return bp * exp(log_sum / BLEU_MAX_N);
}

int has_word_loop(const uint32_t *w, size_t n) {
    for (size_t k = 1; k * LOOP_REPEATS <= n; k++) {
        /* run counts consecutive positions where w[i] == w[i-k]; (R-1)*k of
         * them in a row means a k-word block repeated R times. */
        size_t run = 0;
        for (size_t i = k; i < n; i++) {
            if (w[i] != w[i - k]) { run = 0; continue; }
            if (++run >= (LOOP_REPEATS - 1) * k) return 1;
        }
    }
    return 0;
}

int contains_words(const uint32_t *haystack, size_t n, const uint32_t *needle, size_t m) {
    if (m == 0) return 0;
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(haystack + i, needle, m * sizeof *needle) == 0) return 1;
    return 0;
}

static int double_cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

double median(double *v, size_t n) {
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, double_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double perplexity(double nll_sum, uint64_t tokens) {
    return tokens ? exp(nll_sum / (double)tokens) : NAN;
}
