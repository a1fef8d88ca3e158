/* metrics.c — each metric on cases computed by hand (worked in comments). */
#include "eval/metrics.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static word_vocab *V;

typedef struct {
    uint32_t *ids;
    size_t n;
} words;

static words W(const char *text) {
    words w;
    w.ids = text_words(V, text, &w.n);
    return w;
}

static int near(double a, double b) { return fabs(a - b) < 1e-9; }

static void test_words(void) {
    words w = W("Hello, World! hello");
    ok(w.n == 3 && w.ids[0] == w.ids[2] && w.ids[0] != w.ids[1], "words: lowercased, punctuation splits");
    free(w.ids);
    words a = W("Let’s go"), b = W("let's GO");
    ok(a.n == 3 && b.n == 3 && memcmp(a.ids, b.ids, 3 * sizeof *a.ids) == 0,
       "words: curly and straight apostrophes both split (let s go)");
    free(a.ids);
    free(b.ids);
    a = W("ÉCOLE, Àb"), b = W("école àb");
    ok(a.n == 2 && b.n == 2 && memcmp(a.ids, b.ids, 2 * sizeof *a.ids) == 0, "words: non-ASCII letters lowercased");
    free(a.ids);
    free(b.ids);
    w = W("GPT-3 costs 2.5");
    words g = W("gpt 3 costs 2 5");
    ok(w.n == 5 && memcmp(w.ids, g.ids, 5 * sizeof *w.ids) == 0, "words: digits are words, '-' and '.' split");
    free(w.ids);
    free(g.ids);
    w = W("  ... -- !");
    ok(w.n == 0, "words: punctuation only gives no words");
    free(w.ids);
    w = W("");
    ok(w.n == 0 && w.ids != NULL, "words: empty text");
    free(w.ids);
    w = W("ab\xff" "cd");
    ok(w.n == 2, "words: an invalid UTF-8 byte separates words");
    free(w.ids);
}

static void test_exact_match(void) {
    ok(exact_match("  Yes.\n", "Yes.\t"), "exact match: surrounding whitespace ignored");
    ok(!exact_match("Yes.", "yes."), "exact match: case matters");
    ok(!exact_match("a  b", "a b"), "exact match: inner whitespace matters");
    ok(exact_match("", " \n"), "exact match: empty equals blank");
}

static void test_f1(void) {
    ok(near(overlap_f1(0, 0, 0), 1.0), "overlap F1: both empty is 1");
    ok(overlap_f1(0, 3, 0) == 0.0 && overlap_f1(0, 0, 3) == 0.0, "overlap F1: one empty is 0");
    /* ref: the cat sat on the mat (6); gen: the cat the (3).
     * common: the min(2,2) + cat 1 = 3; P = 3/3, R = 3/6, F1 = 2*1*.5/1.5 = 2/3 */
    words r = W("The cat sat on the mat."), g = W("the cat, the");
    ok(ngram_overlap(r.ids, r.n, g.ids, g.n, 1) == 3, "unigram overlap is clipped (the: 2, cat: 1)");
    ok(near(token_f1(r.ids, r.n, g.ids, g.n), 2.0 / 3), "token F1 = 2/3");
    free(g.ids);
    g = W("dogs bark");
    ok(token_f1(r.ids, r.n, g.ids, g.n) == 0.0, "token F1: nothing in common is 0");
    free(g.ids);
    free(r.ids);
}

static void test_rouge_l(void) {
    /* CLRS example: LCS(ABCBDAB, BDCABA) = 4 (BCBA) */
    uint32_t x[] = {1, 2, 3, 2, 4, 1, 2}, y[] = {2, 4, 3, 1, 2, 1};
    ok(lcs_length(x, 7, y, 6) == 4, "LCS(ABCBDAB, BDCABA) = 4");
    ok(lcs_length(x, 7, y, 0) == 0, "LCS with an empty sequence is 0");
    /* ref: a b c d e; gen: a c x e b. LCS = a c e = 3; P = 3/5, R = 3/5, F1 = 0.6 */
    words r = W("a b c d e"), g = W("a c x e b");
    ok(near(rouge_l_f1(r.ids, r.n, g.ids, g.n), 0.6), "ROUGE-L F1 = 0.6");
    free(g.ids);
    /* word order matters to ROUGE-L, not to token F1: e d c b a has LCS 1 */
    g = W("e d c b a");
    ok(near(rouge_l_f1(r.ids, r.n, g.ids, g.n), 0.2) && near(token_f1(r.ids, r.n, g.ids, g.n), 1.0),
       "reversed: ROUGE-L 0.2, token F1 1");
    free(g.ids);
    free(r.ids);
}

static void test_bleu(void) {
    bleu_stats s = {0};
    double p[BLEU_MAX_N], bp;
    /* ref: the cat is on the mat (6); gen: the cat the cat on the mat (7).
     * 1-grams: the min(3,2) + cat min(2,1) + on + mat = 5 of 7
     * 2-grams: the-cat 1, on-the 1, the-mat 1 = 3 of 6
     * 3-grams: on-the-mat = 1 of 5;  4-grams: 0 of 4 */
    words r = W("the cat is on the mat"), g = W("the cat the cat on the mat");
    bleu_add(&s, r.ids, r.n, g.ids, g.n);
    ok(s.matches[0] == 5 && s.totals[0] == 7 && s.matches[1] == 3 && s.totals[1] == 6 && s.matches[2] == 1 &&
           s.totals[2] == 5 && s.matches[3] == 0 && s.totals[3] == 4,
       "BLEU counts: 5/7 3/6 1/5 0/4");
    ok(bleu_score(&s, p, &bp) == 0.0 && near(p[0], 5.0 / 7) && near(p[3], 0.0),
       "BLEU without smoothing is 0 when a precision is 0");
    free(r.ids);
    free(g.ids);
    /* second pair: ref a b c d e, gen a b c d: 4/4 3/3 2/2 1/1.
     * corpus: p = 9/11, 6/9, 3/7, 1/5; c = 11 = r so BP = 1;
     * BLEU = (9*6*3*1 / (11*9*7*5))^(1/4) = (162/3465)^(1/4) = 0.4649999903... */
    r = W("a b c d e"), g = W("a b c d");
    bleu_add(&s, r.ids, r.n, g.ids, g.n);
    double b = bleu_score(&s, p, &bp);
    ok(fabs(b - 0.46499999037) < 1e-9 && bp == 1.0 && near(p[1], 6.0 / 9), "corpus BLEU-4 = 0.4650");
    free(r.ids);
    free(g.ids);
    /* brevity: ref a b c d e f, gen a b c d e: all p_n = 1, BP = exp(1 - 6/5) = 0.818730753 */
    bleu_stats t = {0};
    r = W("a b c d e f"), g = W("a b c d e");
    bleu_add(&t, r.ids, r.n, g.ids, g.n);
    ok(fabs(bleu_score(&t, NULL, &bp) - 0.8187307531) < 1e-9 && fabs(bp - 0.8187307531) < 1e-9,
       "BLEU brevity penalty exp(1 - 6/5)");
    free(r.ids);
    free(g.ids);
    bleu_stats empty = {0};
    ok(bleu_score(&empty, p, &bp) == 0.0 && bp == 0.0, "BLEU of nothing generated is 0");
}

static int loops(const char *text) {
    words w = W(text);
    int l = has_word_loop(w.ids, w.n);
    free(w.ids);
    return l;
}

static void test_loops(void) {
    ok(loops("a b a b a b"), "loop: 2-word block three times");
    ok(!loops("a b a b a"), "no loop: block two and a half times");
    ok(loops("well no no no"), "loop: one word three times");
    ok(loops("Lamini is great. Lamini is great. Lamini is great"), "loop: a sentence three times");
    ok(!loops("the cat and the dog and the cat and the bird"), "no loop: repeated words not back to back");
    ok(!loops(""), "no loop: empty");
}

static void test_contains(void) {
    words h = W("Let's keep the discussion relevant to Lamini, please."),
          n = W("keep the discussion relevant to lamini"), o = W("relevant to lamini keep");
    ok(contains_words(h.ids, h.n, n.ids, n.n), "refusal phrase found");
    ok(!contains_words(h.ids, h.n, o.ids, o.n), "out-of-order words not found");
    ok(!contains_words(n.ids, n.n, h.ids, h.n), "longer needle not found");
    ok(!contains_words(h.ids, h.n, n.ids, 0), "empty needle not found");
    free(h.ids);
    free(n.ids);
    free(o.ids);
}

static void test_median_perplexity(void) {
    double odd[] = {3, 1, 2}, even[] = {4, 1, 3, 2};
    ok(median(odd, 3) == 2.0, "median of 3 1 2 is 2");
    ok(median(even, 4) == 2.5, "median of 4 1 3 2 is 2.5");
    ok(isnan(median(odd, 0)), "median of nothing is NaN");
    /* two tokens with probability 1/4 each: nll = 2 ln 4, ppl = 4 */
    ok(near(perplexity(2 * log(4.0), 2), 4.0), "perplexity exp(2 ln 4 / 2) = 4");
    ok(isnan(perplexity(0, 0)), "perplexity of no tokens is NaN");
}

int main(void) {
    V = word_vocab_new();
    test_words();
    test_exact_match();
    test_f1();
    test_rouge_l();
    test_bleu();
    test_loops();
    test_contains();
    test_median_perplexity();
    /* the vocabulary keeps ids stable across its growth */
    words a = W("stable");
    for (int i = 0; i < 5000; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "w%d", i);
        free(W(buf).ids);
    }
    words b = W("stable");
    ok(a.ids[0] == b.ids[0], "word ids survive vocabulary growth");
    free(a.ids);
    free(b.ids);
    word_vocab_free(V);
    return done_testing();
}
