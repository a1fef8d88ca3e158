/* evalset.c — reading, joining and summarizing eval-compare's inputs; see
 * evalset.h. */
#include "evalset.h"

#include "base/cli.h"
#include "base/io.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* At most this many example ids are listed per reported problem. */
#define SHOWN_IDS 5

eval_input *evalset_add(evalset *s, const char *path, const char *label) {
    s->inputs = xrealloc(s->inputs, (s->ninputs + 1) * sizeof *s->inputs);
    eval_input *in = &s->inputs[s->ninputs++];
    memset(in, 0, sizeof *in);
    in->path = xstrdup(path);
    if (label) {
        in->label = xstrdup(label);
    } else {
        const char *base = strrchr(path, '/');
        in->label = xstrdup(base ? base + 1 : path);
        size_t n = strlen(in->label);
        if (n > 6 && strcmp(in->label + n - 6, ".jsonl") == 0) in->label[n - 6] = '\0';
    }
    return in;
}

/* ------------------------------------------------------------------------ */
/* reading */

/* The line being read, and its first problem: the getters below, once
 * one has failed, only return placeholders, and the reader stops after
 * the line. */
typedef struct {
    const char *path;
    uint64_t line;
    char *err;
    int errlen, failed;
} where;

static void bad(where *w, const char *fmt, const char *what) {
    if (w->failed) return;
    char msg[256];
    snprintf(msg, sizeof msg, fmt, what);
    fail_message(w->err, w->errlen, "%s: line %llu: %s", w->path, (unsigned long long)w->line, msg);
    w->failed = 1;
}

static cJSON *parse_object(where *w, const char *line, size_t len) {
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o) bad(w, "%s", "not valid JSON");
    else if (!cJSON_IsObject(o)) bad(w, "%s", "not a JSON object");
    return o;
}

static uint64_t get_count(where *w, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        bad(w, "no \"%s\"", key);
        return 0;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d < 0 || d > 9007199254740992.0 || d != floor(d)) {
        bad(w, "\"%s\" is not a non-negative integer", key);
        return 0;
    }
    return (uint64_t)d;
}

static char *get_string(where *w, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) bad(w, "no \"%s\"", key);
    else if (!cJSON_IsString(v)) bad(w, "\"%s\" is not a string", key);
    return w->failed ? NULL : xstrdup(v->valuestring);
}

static int get_stop(where *w, const cJSON *o) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (!v || cJSON_IsNull(v)) return STOP_UNKNOWN;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "eos") == 0) return STOP_EOS;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "length") == 0) return STOP_LENGTH;
    bad(w, "%s", "\"stop\" is neither \"eos\" nor \"length\"");
    return STOP_UNKNOWN;
}

static int by_id(const void *x, const void *y) {
    const eval_record *a = x, *b = y;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

static eval_record *find_record(eval_input *in, uint64_t id) {
    size_t lo = 0, hi = in->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (in->recs[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < in->n && in->recs[lo].id == id ? &in->recs[lo] : NULL;
}

static int load_results(eval_input *in, char *err, int errlen) {
    int fd = open_input(in->path);
    line_reader *lr = line_reader_open(fd, in->path);
    size_t cap = 0, len;
    char *line;
    where w = {in->path, 0, err, errlen, 0};
    while (!w.failed && (line = line_reader_next(lr, &len))) {
        w.line = line_reader_lineno(lr);
        if (len == 0) continue;
        cJSON *o = parse_object(&w, line, len);
        if (w.failed) {
            cJSON_Delete(o);
            break;
        }
        if (in->n == cap) in->recs = xrealloc(in->recs, (cap = cap ? 2 * cap : 256) * sizeof *in->recs);
        eval_record *r = &in->recs[in->n++];
        memset(r, 0, sizeof *r);
        r->line = w.line;
        r->id = get_count(&w, o, "id");
        r->question = get_string(&w, o, "question");
        r->answer = get_string(&w, o, "answer");
        r->generated = get_string(&w, o, "generated");
        r->stop = get_stop(&w, o);
        cJSON_Delete(o);
    }
    line_reader_close(lr);
    if (fd != STDIN_FILENO) close(fd);
    if (w.failed) return 0;
    if (in->n) qsort(in->recs, in->n, sizeof *in->recs, by_id); /* recs is NULL when empty */
    for (size_t i = 1; i < in->n; i++)
        if (in->recs[i].id == in->recs[i - 1].id)
            return fail_message(err, errlen, "%s: line %llu: id %llu already appeared on line %llu", in->path,
                                (unsigned long long)in->recs[i].line, (unsigned long long)in->recs[i].id,
                                (unsigned long long)in->recs[i - 1].line);
    return 1;
}

/* Joins the score lines to the records; returns the problems reported, or
 * -1 with the reason in err. */
static long load_scores(eval_input *in, char *err, int errlen) {
    int fd = open_input(in->score_path);
    line_reader *lr = line_reader_open(fd, in->score_path);
    size_t len, unmatched = 0;
    uint64_t shown[SHOWN_IDS];
    char *line;
    where w = {in->score_path, 0, err, errlen, 0};
    while (!w.failed && (line = line_reader_next(lr, &len))) {
        w.line = line_reader_lineno(lr);
        if (len == 0) continue;
        cJSON *o = parse_object(&w, line, len);
        uint64_t id = get_count(&w, o, "id"), tokens = get_count(&w, o, "tokens");
        const cJSON *nll = cJSON_GetObjectItemCaseSensitive(o, "nll"), *ppl = cJSON_GetObjectItemCaseSensitive(o, "ppl");
        if (!cJSON_IsNumber(nll) || !isfinite(nll->valuedouble) || nll->valuedouble < 0)
            bad(&w, "%s", "\"nll\" is not a non-negative number");
        if (w.failed) {
            cJSON_Delete(o);
            break;
        }
        /* ppl, when given, guards against a file whose nll is a per-token
         * mean rather than the sum eval-compare expects. */
        if (ppl && tokens > 0) {
            double expect = exp(nll->valuedouble / (double)tokens);
            if (!cJSON_IsNumber(ppl) || fabs(ppl->valuedouble - expect) > 1e-2 * expect)
                bad(&w, "%s", "\"ppl\" is not exp(nll / tokens): is \"nll\" the sum over the tokens?");
        }
        eval_record *r = find_record(in, id);
        if (!r) {
            if (unmatched < SHOWN_IDS) shown[unmatched] = id;
            unmatched++;
        } else if (r->scored) {
            bad(&w, "%s", "a second score for the same id");
        } else {
            r->scored = 1;
            r->tokens = tokens;
            r->nll = nll->valuedouble;
        }
        cJSON_Delete(o);
    }
    line_reader_close(lr);
    if (fd != STDIN_FILENO) close(fd);
    if (w.failed) return -1;
    if (unmatched) {
        char ids[128] = "";
        for (size_t i = 0; i < unmatched && i < SHOWN_IDS; i++)
            snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%llu", i ? ", " : "", (unsigned long long)shown[i]);
        warn("%s: %zu score%s for ids not in %s (id %s%s)", in->score_path, unmatched, unmatched == 1 ? "" : "s",
             in->path, ids, unmatched > SHOWN_IDS ? ", ..." : "");
    }
    return (long)unmatched;
}

int evalset_load(evalset *s, char *err, int errlen) {
    for (size_t i = 0; i < s->ninputs; i++) {
        if (!load_results(&s->inputs[i], err, errlen)) return 0;
        if (!s->inputs[i].score_path) continue;
        long unmatched = load_scores(&s->inputs[i], err, errlen);
        if (unmatched < 0) return 0;
        s->problems += (size_t)unmatched;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* joining */

/* Collects up to SHOWN_IDS ids of one kind of problem and reports them. */
typedef struct {
    size_t count;
    uint64_t ids[SHOWN_IDS];
} id_list;

static void id_list_add(id_list *l, uint64_t id) {
    if (l->count < SHOWN_IDS) l->ids[l->count] = id;
    l->count++;
}

static void report(const id_list *l, const char *file, const char *what) {
    if (!l->count) return;
    char ids[128] = "";
    for (size_t i = 0; i < l->count && i < SHOWN_IDS; i++)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%llu", i ? ", " : "", (unsigned long long)l->ids[i]);
    warn("%s: %zu %s (id %s%s)", file, l->count, what, ids, l->count > SHOWN_IDS ? ", ..." : "");
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

size_t evalset_join(evalset *s) {
    size_t total = 0;
    for (size_t i = 0; i < s->ninputs; i++) total += s->inputs[i].n;
    uint64_t *all = xmalloc(total * sizeof *all);
    size_t nall = 0;
    for (size_t i = 0; i < s->ninputs; i++)
        for (size_t k = 0; k < s->inputs[i].n; k++) all[nall++] = s->inputs[i].recs[k].id;
    qsort(all, nall, sizeof *all, cmp_u64);
    size_t nunion = 0;
    for (size_t k = 0; k < nall; k++)
        if (k == 0 || all[k] != all[k - 1]) all[nunion++] = all[k];

    id_list *missing = xcalloc(s->ninputs, sizeof *missing), *differ = xcalloc(s->ninputs, sizeof *differ),
            *unscored = xcalloc(s->ninputs, sizeof *unscored);
    s->compared = xmalloc((nunion ? nunion : 1) * sizeof *s->compared);
    for (size_t i = 0; i < s->ninputs; i++) s->inputs[i].rows = xmalloc((nunion ? nunion : 1) * sizeof(size_t));
    s->ncompared = 0;
    for (size_t u = 0; u < nunion; u++) {
        int complete = 1;
        eval_record *first = NULL;
        for (size_t i = 0; i < s->ninputs; i++) {
            eval_input *in = &s->inputs[i];
            eval_record *r = find_record(in, all[u]);
            if (!r) {
                id_list_add(&missing[i], all[u]);
                complete = 0;
                continue;
            }
            if (in->score_path && !r->scored) id_list_add(&unscored[i], all[u]);
            if (!first) {
                first = r;
            } else if (strcmp(first->question, r->question) || strcmp(first->answer, r->answer)) {
                id_list_add(&differ[i], all[u]);
                complete = 0;
            }
            in->rows[s->ncompared] = (size_t)(r - in->recs);
        }
        if (complete) s->compared[s->ncompared++] = all[u];
    }
    for (size_t i = 0; i < s->ninputs; i++) {
        eval_input *in = &s->inputs[i];
        char what[256];
        snprintf(what, sizeof what, "of the %zu ids in the inputs %s missing", nunion,
                 missing[i].count == 1 ? "is" : "are");
        report(&missing[i], in->path, what);
        snprintf(what, sizeof what, "record%s whose question or answer differ%s from the first input's with the same id",
                 differ[i].count == 1 ? "" : "s", differ[i].count == 1 ? "s" : "");
        report(&differ[i], in->path, what);
        snprintf(what, sizeof what, "record%s of %s without a score", unscored[i].count == 1 ? "" : "s", in->path);
        report(&unscored[i], in->score_path ? in->score_path : in->path, what);
        s->problems += missing[i].count + differ[i].count + unscored[i].count;
    }
    free(missing);
    free(differ);
    free(unscored);
    free(all);
    return s->problems;
}

/* ------------------------------------------------------------------------ */
/* summarizing */

void evalset_summarize(evalset *s, const char *refusal) {
    word_vocab *v = word_vocab_new();
    size_t nrefusal;
    uint32_t *refusal_words = text_words(v, refusal, &nrefusal);
    size_t n = s->ncompared;
    uint32_t **ref = xmalloc((n ? n : 1) * sizeof *ref);
    size_t *nref = xmalloc((n ? n : 1) * sizeof *nref);
    unsigned char *ref_refuses = xmalloc(n ? n : 1);
    double *lengths = xmalloc((n ? n : 1) * sizeof *lengths);

    s->ref_words = 0;
    s->refusal_refs = 0;
    for (size_t k = 0; k < n; k++) {
        const eval_record *r = &s->inputs[0].recs[s->inputs[0].rows[k]];
        ref[k] = text_words(v, r->answer, &nref[k]);
        ref_refuses[k] = contains_words(ref[k], nref[k], refusal_words, nrefusal);
        s->refusal_refs += ref_refuses[k];
        s->ref_words += nref[k];
        lengths[k] = (double)nref[k];
    }
    s->ref_mean_words = n ? (double)s->ref_words / (double)n : NAN;
    s->ref_median_words = median(lengths, n);

    for (size_t i = 0; i < s->ninputs; i++) {
        eval_input *in = &s->inputs[i];
        eval_summary *m = &in->sum;
        memset(m, 0, sizeof *m);
        in->rouge_l = xmalloc((n ? n : 1) * sizeof *in->rouge_l);
        in->loops = xmalloc(n ? n : 1);
        bleu_stats bleu = {0};
        size_t exact = 0, loops = 0;
        double f1_sum = 0, rouge_sum = 0;
        for (size_t k = 0; k < n; k++) {
            const eval_record *r = &in->recs[in->rows[k]];
            size_t ngen;
            uint32_t *gen = text_words(v, r->generated, &ngen);
            exact += exact_match(r->answer, r->generated);
            f1_sum += token_f1(ref[k], nref[k], gen, ngen);
            in->rouge_l[k] = rouge_l_f1(ref[k], nref[k], gen, ngen);
            rouge_sum += in->rouge_l[k];
            bleu_add(&bleu, ref[k], nref[k], gen, ngen);
            in->loops[k] = (unsigned char)has_word_loop(gen, ngen);
            loops += in->loops[k];
            m->gen_words += ngen;
            lengths[k] = (double)ngen;
            if (r->stop != STOP_UNKNOWN) m->stop_known++;
            if (r->stop == STOP_EOS) m->eos_stops++;
            int refuses = contains_words(gen, ngen, refusal_words, nrefusal);
            if (ref_refuses[k]) m->offtopic_refused += refuses;
            else m->false_refusals += refuses;
            if (r->scored) {
                m->scored++;
                m->scored_tokens += r->tokens;
                m->nll_sum += r->nll;
            }
            free(gen);
        }
        double dn = (double)n;
        m->exact_match = n ? exact / dn : NAN;
        m->token_f1 = n ? f1_sum / dn : NAN;
        m->rouge_l = n ? rouge_sum / dn : NAN;
        m->bleu4 = bleu_score(&bleu, m->bleu_precision, &m->brevity_penalty);
        m->mean_words = n ? (double)m->gen_words / dn : NAN;
        m->median_words = median(lengths, n);
        m->repetition_rate = n ? loops / dn : NAN;
        m->eos_stop_rate = m->stop_known ? (double)m->eos_stops / (double)m->stop_known : NAN;
        m->offtopic_refusal_rate = s->refusal_refs ? (double)m->offtopic_refused / (double)s->refusal_refs : NAN;
        m->false_refusal_rate = n > s->refusal_refs ? (double)m->false_refusals / (double)(n - s->refusal_refs) : NAN;
        m->perplexity = perplexity(m->nll_sum, m->scored_tokens);
    }
    for (size_t k = 0; k < n; k++) free(ref[k]);
    free(ref);
    free(nref);
    free(ref_refuses);
    free(lengths);
    free(refusal_words);
    word_vocab_free(v);
}

void evalset_free(evalset *s) {
    for (size_t i = 0; i < s->ninputs; i++) {
        eval_input *in = &s->inputs[i];
        for (size_t k = 0; k < in->n; k++) {
            free(in->recs[k].question);
            free(in->recs[k].answer);
            free(in->recs[k].generated);
        }
        free(in->recs);
        free(in->rows);
        free(in->rouge_l);
        free(in->loops);
        free(in->label);
        free(in->path);
        free(in->score_path);
    }
    free(s->inputs);
    free(s->compared);
    memset(s, 0, sizeof *s);
}
