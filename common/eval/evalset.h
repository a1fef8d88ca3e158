/* evalset.h — the inputs of eval-compare: result files (one JSON object per
 * line: id, question, answer = reference, generated, optional stop) with
 * optional score files (id, tokens, nll, optional ppl), joined by id across
 * inputs, and what each input scores on the records they share. */
#ifndef TUNEPIPE_EVALSET_H
#define TUNEPIPE_EVALSET_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

enum stop_reason { STOP_UNKNOWN, STOP_EOS, STOP_LENGTH };

typedef struct {
    uint64_t id;
    uint64_t line;      /* where it was read, for messages */
    char *question, *answer, *generated;
    int stop;           /* enum stop_reason */
    int scored;         /* a score line was joined */
    uint64_t tokens;    /* scored answer tokens */
    double nll;         /* their summed negative log-likelihood, nats */
} eval_record;

/* What one input scores on the compared records; NAN where undefined
 * (EOS rate without stop fields, off-topic rate without refusal
 * references, perplexity without scores). Rates are fractions. */
typedef struct {
    double exact_match, token_f1, rouge_l, bleu4;
    double bleu_precision[BLEU_MAX_N], brevity_penalty;
    uint64_t gen_words;
    double mean_words, median_words;
    double repetition_rate;
    size_t stop_known, eos_stops;
    double eos_stop_rate;
    size_t offtopic_refused, false_refusals;
    double offtopic_refusal_rate, false_refusal_rate;
    size_t scored;
    uint64_t scored_tokens;
    double nll_sum, perplexity;
} eval_summary;

typedef struct {
    char *label, *path, *score_path; /* score_path may be NULL */
    eval_record *recs;               /* sorted by id */
    size_t n;
    size_t *rows;                    /* rows[k]: index in recs of the k-th compared id */
    double *rouge_l;                 /* per compared record, for the examples */
    unsigned char *loops;            /* per compared record: has_word_loop */
    eval_summary sum;
} eval_input;

typedef struct {
    eval_input *inputs;
    size_t ninputs;
    size_t ncompared;      /* ids present, and with the same question and answer, in every input */
    uint64_t *compared;    /* those ids, ascending */
    size_t problems;       /* records left out or lacking a score (reported on stderr) */
    /* reference answers of the compared records */
    uint64_t ref_words;
    double ref_mean_words, ref_median_words;
    size_t refusal_refs;   /* references that are refusals */
} evalset;

/* Adds an input; label NULL means the file name without its directory and
 * ".jsonl". Returns it so the caller can set score_path. */
eval_input *evalset_add(evalset *s, const char *path, const char *label);
/* Reads every input's results and scores; returns 0 with "FILE: line N:
 * ..." in err (ERR_MAX bytes hold any) on bad input (not JSON, missing or
 * mistyped fields, duplicate ids). Scores for ids the results lack are
 * reported and counted in s->problems. */
int evalset_load(evalset *s, char *err, int errlen);
/* Joins the inputs by id. Every id missing from an input, every record whose
 * question or answer differs from the first input's, every record without a
 * score and every score without a record is counted and reported on stderr
 * with example ids. Returns s->problems, which counts them too; the
 * comparison covers only records complete in every input. */
size_t evalset_join(evalset *s);
/* Computes each input's eval_summary. refusal is the phrase whose presence
 * (as a run of words) makes a text a refusal. */
void evalset_summarize(evalset *s, const char *refusal);
void evalset_free(evalset *s);

#endif
