/* report.c — text, JSON and HTML outputs of eval-compare; see report.h. */
#include "report.h"

#include "base/cli.h"
#include "html.h"
#include "svgplot.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* the metric rows shared by the text table and the HTML table */

enum cell_format { AS_COUNT, AS_PERCENT, AS_1DP, AS_2DP };

typedef struct {
    const char *name;
    int better; /* +1 higher is better, -1 lower is better, 0 neither */
    enum cell_format format;
    double (*value)(const evalset *s, const eval_summary *m);
} metric_row;

static double records(const evalset *s, const eval_summary *m) { (void)m; return (double)s->ncompared; }
static double em(const evalset *s, const eval_summary *m) { (void)s; return m->exact_match; }
static double f1(const evalset *s, const eval_summary *m) { (void)s; return m->token_f1; }
static double rouge(const evalset *s, const eval_summary *m) { (void)s; return m->rouge_l; }
static double bleu(const evalset *s, const eval_summary *m) { (void)s; return m->bleu4; }
static double mean_len(const evalset *s, const eval_summary *m) { (void)s; return m->mean_words; }
static double median_len(const evalset *s, const eval_summary *m) { (void)s; return m->median_words; }
static double repetition(const evalset *s, const eval_summary *m) { (void)s; return m->repetition_rate; }
static double eos(const evalset *s, const eval_summary *m) { (void)s; return m->eos_stop_rate; }
static double offtopic(const evalset *s, const eval_summary *m) { (void)s; return m->offtopic_refusal_rate; }
static double false_refusal(const evalset *s, const eval_summary *m) { (void)s; return m->false_refusal_rate; }
static double ppl(const evalset *s, const eval_summary *m) { (void)s; return m->perplexity; }

static const metric_row ROWS[] = {
    {"records", 0, AS_COUNT, records},
    {"exact match %", +1, AS_PERCENT, em},
    {"token F1 %", +1, AS_PERCENT, f1},
    {"ROUGE-L F1 %", +1, AS_PERCENT, rouge},
    {"BLEU-4 %", +1, AS_PERCENT, bleu},
    {"mean length (words)", 0, AS_1DP, mean_len},
    {"median length (words)", 0, AS_1DP, median_len},
    {"repetition %", -1, AS_PERCENT, repetition},
    {"EOS stop %", +1, AS_PERCENT, eos},
    {"off-topic refused %", +1, AS_PERCENT, offtopic},
    {"false refusals %", -1, AS_PERCENT, false_refusal},
    {"perplexity", -1, AS_2DP, ppl},
};
#define NROWS (sizeof ROWS / sizeof *ROWS)

static void format_cell(char *buf, size_t n, const metric_row *row, double v) {
    if (isnan(v)) snprintf(buf, n, "-");
    else if (row->format == AS_COUNT) snprintf(buf, n, "%.0f", v);
    else if (row->format == AS_PERCENT) snprintf(buf, n, "%.1f", 100 * v);
    else if (row->format == AS_1DP) snprintf(buf, n, "%.1f", v);
    else snprintf(buf, n, "%.2f", v);
}

/* The row's name with the number of questions it is taken over where that
 * differs from the compared records. */
static void row_name(char *buf, size_t n, const metric_row *row, const evalset *s) {
    if (row->value == offtopic) snprintf(buf, n, "%s (of %zu)", row->name, s->refusal_refs);
    else if (row->value == false_refusal) snprintf(buf, n, "%s (of %zu)", row->name, s->ncompared - s->refusal_refs);
    else snprintf(buf, n, "%s", row->name);
}

/* Display width of UTF-8 text: code points, not bytes. */
static size_t text_width(const char *s) {
    size_t w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void pad(FILE *f, size_t n) {
    while (n--) fputc(' ', f);
}

void report_table(FILE *f, const evalset *s) {
    char cell[64], name[64];
    size_t name_w = strlen("metric");
    for (size_t r = 0; r < NROWS; r++) {
        row_name(name, sizeof name, &ROWS[r], s);
        if (strlen(name) > name_w) name_w = strlen(name);
    }
    size_t *col_w = xmalloc((s->ninputs ? s->ninputs : 1) * sizeof *col_w);
    for (size_t i = 0; i < s->ninputs; i++) {
        col_w[i] = text_width(s->inputs[i].label);
        for (size_t r = 0; r < NROWS; r++) {
            format_cell(cell, sizeof cell, &ROWS[r], ROWS[r].value(s, &s->inputs[i].sum));
            if (strlen(cell) > col_w[i]) col_w[i] = strlen(cell);
        }
    }
    fputs("metric", f);
    pad(f, name_w - strlen("metric"));
    for (size_t i = 0; i < s->ninputs; i++) {
        pad(f, 2 + col_w[i] - text_width(s->inputs[i].label));
        fputs(s->inputs[i].label, f);
    }
    fputc('\n', f);
    for (size_t r = 0; r < NROWS; r++) {
        row_name(name, sizeof name, &ROWS[r], s);
        fputs(name, f);
        pad(f, name_w - strlen(name));
        for (size_t i = 0; i < s->ninputs; i++) {
            format_cell(cell, sizeof cell, &ROWS[r], ROWS[r].value(s, &s->inputs[i].sum));
            pad(f, 2 + col_w[i] - strlen(cell));
            fputs(cell, f);
        }
        fputc('\n', f);
    }
    fprintf(f, "reference answers: mean %.1f words, median %.1f; %zu of %zu are refusals\n", s->ref_mean_words,
            s->ref_median_words, s->refusal_refs, s->ncompared);
    free(col_w);
}

/* ------------------------------------------------------------------------ */
/* JSON */

static void add_number(cJSON *o, const char *key, double v) {
    cJSON_AddItemToObject(o, key, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

void report_json(FILE *f, const evalset *s) {
    cJSON *root = cJSON_CreateObject();
    add_number(root, "records", (double)s->ncompared);
    add_number(root, "problems", (double)s->problems);
    cJSON *ref = cJSON_AddObjectToObject(root, "reference");
    add_number(ref, "words", (double)s->ref_words);
    add_number(ref, "mean_words", s->ref_mean_words);
    add_number(ref, "median_words", s->ref_median_words);
    add_number(ref, "refusals", (double)s->refusal_refs);
    cJSON *inputs = cJSON_AddArrayToObject(root, "inputs");
    for (size_t i = 0; i < s->ninputs; i++) {
        const eval_input *in = &s->inputs[i];
        const eval_summary *m = &in->sum;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(inputs, o);
        cJSON_AddStringToObject(o, "label", in->label);
        cJSON_AddStringToObject(o, "file", in->path);
        if (in->score_path) cJSON_AddStringToObject(o, "score_file", in->score_path);
        else cJSON_AddNullToObject(o, "score_file");
        add_number(o, "exact_match", m->exact_match);
        add_number(o, "token_f1", m->token_f1);
        add_number(o, "rouge_l_f1", m->rouge_l);
        add_number(o, "bleu4", m->bleu4);
        cJSON *p = cJSON_AddArrayToObject(o, "bleu_precisions");
        for (int n = 0; n < BLEU_MAX_N; n++) cJSON_AddItemToArray(p, cJSON_CreateNumber(m->bleu_precision[n]));
        add_number(o, "brevity_penalty", m->brevity_penalty);
        add_number(o, "words", (double)m->gen_words);
        add_number(o, "mean_words", m->mean_words);
        add_number(o, "median_words", m->median_words);
        add_number(o, "repetition_rate", m->repetition_rate);
        add_number(o, "eos_stop_rate", m->eos_stop_rate);
        add_number(o, "stop_known", (double)m->stop_known);
        add_number(o, "offtopic_refusal_rate", m->offtopic_refusal_rate);
        add_number(o, "offtopic_refused", (double)m->offtopic_refused);
        add_number(o, "false_refusal_rate", m->false_refusal_rate);
        add_number(o, "false_refusals", (double)m->false_refusals);
        add_number(o, "perplexity", m->perplexity);
        add_number(o, "scored_records", (double)m->scored);
        add_number(o, "scored_tokens", (double)m->scored_tokens);
        add_number(o, "nll_sum", m->nll_sum);
    }
    char *text = cJSON_Print(root);
    if (!text) out_of_memory("out of memory printing JSON");
    fputs(text, f);
    fputc('\n', f);
    free(text);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------------ */
/* HTML */

static const char STYLE[] =
    "body{font-family:sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222;line-height:1.4}\n"
    "h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\n"
    "table.metrics{border-collapse:collapse}\n"
    "table.metrics th,table.metrics td{padding:.25em .8em;border-bottom:1px solid #ddd}\n"
    "table.metrics td,table.metrics thead th{text-align:right;font-variant-numeric:tabular-nums}\n"
    "table.metrics thead th:first-child{text-align:left}\n"
    "table.metrics th[scope=row]{text-align:left;font-weight:normal}\n"
    "td.best{font-weight:bold;background:#eef6ee}\n"
    ".note{color:#555;font-size:.9em}\n"
    ".lead{background:#fff8e0;border-left:4px solid #e0b000;padding:.4em .8em}\n"
    ".example{border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.6em 1em}\n"
    ".example h3{margin:.2em 0;font-size:1em;color:#555}\n"
    ".question{font-weight:bold;margin:.4em 0 .8em}\n"
    ".answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(16em,1fr));gap:1em}\n"
    ".answer h4{margin:0 0 .3em;font-size:.95em}\n"
    ".answer .text{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;font-size:.9em}\n"
    ".reference .text{color:#234}\n"
    ".tags{font-weight:normal;color:#666;font-size:.85em}\n"
    ".loop{color:#a00}\n";

/* Index of the best input for a row, or -1 (no direction, a tie, a single
 * input, or nothing defined). */
static long best_input(const evalset *s, const metric_row *row) {
    if (!row->better || s->ninputs < 2) return -1;
    long best = -1;
    int tie = 0;
    for (size_t i = 0; i < s->ninputs; i++) {
        double v = row->value(s, &s->inputs[i].sum);
        if (isnan(v)) continue;
        double b = best < 0 ? NAN : row->value(s, &s->inputs[best].sum);
        if (best < 0 || (row->better > 0 ? v > b : v < b)) best = (long)i, tie = 0;
        else if (v == b) tie = 1;
    }
    return tie ? -1 : best;
}

static void html_table(FILE *f, const evalset *s) {
    char cell[64], name[64];
    fputs("<table class=\"metrics\">\n<thead><tr><th scope=\"col\">metric</th>", f);
    for (size_t i = 0; i < s->ninputs; i++) {
        fputs("<th scope=\"col\">", f);
        html_escape(f, s->inputs[i].label);
        fputs("</th>", f);
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    for (size_t r = 0; r < NROWS; r++) {
        row_name(name, sizeof name, &ROWS[r], s);
        fputs("<tr><th scope=\"row\">", f);
        html_escape(f, name);
        fputs("</th>", f);
        long best = best_input(s, &ROWS[r]);
        for (size_t i = 0; i < s->ninputs; i++) {
            format_cell(cell, sizeof cell, &ROWS[r], ROWS[r].value(s, &s->inputs[i].sum));
            fprintf(f, "<td%s>%s</td>", (long)i == best ? " class=\"best\"" : "", cell);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody>\n</table>\n", f);
    fprintf(f, "<p class=\"note\">Reference answers: mean %.1f words, median %.1f; %zu of %zu are refusals. "
               "Best value per row in bold. Definitions: eval-compare(1).</p>\n",
            s->ref_mean_words, s->ref_median_words, s->refusal_refs, s->ncompared);
}

static void html_loss(FILE *f, const loss_log *log) {
    fputs("<h2>Training loss</h2>\n", f);
    if (!log) {
        fputs("<p class=\"note\">No training log was given (--log).</p>\n", f);
        return;
    }
    plot_series series[] = {
        {"training loss", "#1f77b4", log->train_step, log->train_loss, log->ntrain, 0},
        {"eval loss", "#ff7f0e", log->eval_step, log->eval_loss, log->neval, 1},
    };
    svg_line_plot(f, series, 2, "step", "loss (nats per token)", 900, 380);
    fprintf(f, "<p class=\"note\">%zu training and %zu eval points.</p>\n", log->ntrain, log->neval);
}

static void html_answer(FILE *f, const char *cls, const char *heading, const char *tags, const char *text) {
    fprintf(f, "<div class=\"answer %s\"><h4>", cls);
    html_escape(f, heading);
    if (tags) fprintf(f, " <span class=\"tags\">%s</span>", tags);
    fputs("</h4><p class=\"text\">", f);
    html_escape(f, text);
    fputs("</p></div>\n", f);
}

static void html_examples(FILE *f, const evalset *s, size_t examples) {
    if (examples > s->ncompared) examples = s->ncompared;
    fprintf(f, "<h2>Answers</h2>\n<p class=\"note\">The first %zu of %zu compared records, by id.</p>\n", examples,
            s->ncompared);
    for (size_t k = 0; k < examples; k++) {
        const eval_record *first = &s->inputs[0].recs[s->inputs[0].rows[k]];
        fprintf(f, "<div class=\"example\"><h3>id %llu</h3>\n<p class=\"question\">",
                (unsigned long long)s->compared[k]);
        html_escape(f, first->question);
        fputs("</p>\n<div class=\"answers\">\n", f);
        html_answer(f, "reference", "reference", NULL, first->answer);
        for (size_t i = 0; i < s->ninputs; i++) {
            const eval_input *in = &s->inputs[i];
            const eval_record *r = &in->recs[in->rows[k]];
            char tags[128];
            snprintf(tags, sizeof tags, "ROUGE-L %.2f%s%s", in->rouge_l[k],
                     r->stop == STOP_EOS ? " · stopped at EOS" : r->stop == STOP_LENGTH ? " · hit the length limit" : "",
                     in->loops[k] ? " · <span class=\"loop\">loops</span>" : "");
            html_answer(f, "", in->label, tags, r->generated);
        }
        fputs("</div></div>\n", f);
    }
}

void report_html(FILE *f, const evalset *s, const char *title, const char *const *notes, size_t nnotes,
                 size_t examples, const loss_log *log) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<link rel=\"icon\" href=\"data:,\">\n<title>", f);
    html_escape(f, title);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", STYLE);
    html_escape(f, title);
    fputs("</h1>\n", f);
    for (size_t i = 0; i < nnotes; i++) {
        fputs("<p class=\"lead\">", f);
        html_escape(f, notes[i]);
        fputs("</p>\n", f);
    }
    fprintf(f, "<p class=\"note\">%zu records compared:", s->ncompared);
    for (size_t i = 0; i < s->ninputs; i++) {
        const eval_input *in = &s->inputs[i];
        fputs(i ? "; " : " ", f);
        html_escape(f, in->label);
        fputs(" (", f);
        html_escape(f, in->path);
        if (in->score_path) {
            fputs(", scores ", f);
            html_escape(f, in->score_path);
        }
        fputs(")", f);
    }
    if (s->problems) fprintf(f, ". %zu problems were reported while joining the inputs", s->problems);
    fputs(".</p>\n<h2>Metrics</h2>\n", f);
    html_table(f, s);
    html_loss(f, log);
    html_examples(f, s, examples);
    fputs("</body>\n</html>\n", f);
}
