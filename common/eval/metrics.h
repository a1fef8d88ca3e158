/* metrics.h — text-comparison metrics for generated answers against
 * reference answers. Each metric is a pure function; man/man1/eval-compare.1
 * gives the exact definitions and tests/unit/metrics.c checks them on
 * hand-computed cases.
 *
 * Most metrics work on words: maximal runs of Unicode letters, digits and
 * combining marks, lowercased code point by code point. Everything else
 * (spaces, punctuation, symbols, invalid UTF-8 bytes) separates words. A
 * word_vocab maps each distinct word to a small integer so that metrics
 * compare integers. */
#ifndef TUNEPIPE_METRICS_H
#define TUNEPIPE_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct word_vocab word_vocab;
word_vocab *word_vocab_new(void);
void word_vocab_free(word_vocab *v);

/* Splits text into words and returns their ids in a malloc'd array (*n of
 * them; never NULL, even when empty). */
uint32_t *text_words(word_vocab *v, const char *text, size_t *n);

/* 1 when the two texts are byte-identical after removing leading and
 * trailing ASCII whitespace (space, \t, \n, \v, \f, \r). */
int exact_match(const char *reference, const char *generated);

/* Size of the multiset intersection of the n-grams of a and b: the sum over
 * distinct n-grams of min(count in a, count in b). */
uint64_t ngram_overlap(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t n);

/* F1 of precision and recall given the overlap: 2PR/(P+R) with
 * P = common/n_generated, R = common/n_reference. Two empty texts score 1,
 * one empty text scores 0. */
double overlap_f1(uint64_t common, size_t n_reference, size_t n_generated);

/* Token F1 (SQuAD style): overlap_f1 of the word multisets. */
double token_f1(const uint32_t *ref, size_t nref, const uint32_t *gen, size_t ngen);

/* Length of the longest common subsequence of two word sequences. */
size_t lcs_length(const uint32_t *a, size_t na, const uint32_t *b, size_t nb);

/* ROUGE-L F1 (beta = 1): overlap_f1 with the LCS length as the overlap. */
double rouge_l_f1(const uint32_t *ref, size_t nref, const uint32_t *gen, size_t ngen);

/* Corpus BLEU-4 (Papineni et al. 2002, one reference, no smoothing):
 * clipped n-gram matches and generated n-gram totals summed over the corpus
 * for n = 1..4, then combined by bleu_score. */
#define BLEU_MAX_N 4
typedef struct {
    uint64_t matches[BLEU_MAX_N]; /* clipped matches of (n+1)-grams */
    uint64_t totals[BLEU_MAX_N];  /* (n+1)-grams in the generated texts */
    uint64_t gen_words, ref_words;
} bleu_stats;
void bleu_add(bleu_stats *s, const uint32_t *ref, size_t nref, const uint32_t *gen, size_t ngen);
/* BP * exp(mean of log p_n) with p_n = matches/totals and
 * BP = min(1, exp(1 - ref_words/gen_words)); 0 when any p_n is 0 or
 * nothing was generated. precisions (may be NULL) receives p_1..p_4 (0 when
 * a total is 0), brevity_penalty (may be NULL) the BP. */
double bleu_score(const bleu_stats *s, double precisions[BLEU_MAX_N], double *brevity_penalty);

/* A generation loops when some run of k >= 1 words appears LOOP_REPEATS
 * times back to back ("a b a b a b", "no no no"). */
#define LOOP_REPEATS 3
int has_word_loop(const uint32_t *w, size_t n);

/* 1 when needle (m > 0 words) occurs as a contiguous run in haystack. */
int contains_words(const uint32_t *haystack, size_t n, const uint32_t *needle, size_t m);

/* Median of v[0..n-1] (mean of the two middle values when n is even);
 * sorts v in place. NAN when n is 0. */
double median(double *v, size_t n);

/* exp(nll_sum / tokens), NAN when tokens is 0. */
double perplexity(double nll_sum, uint64_t tokens);

#endif
