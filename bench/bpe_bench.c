/* bpe_bench — single-threaded speed of the tokenizer, and a checker against
 * Hugging Face reference files.
 *
 *   build/bench/bpe_bench [-t TOKENIZER] [-s MB] [-r RUNS]
 *       encodes two corpora, each repeated to MB megabytes: "lamini" (every
 *       question and answer of data/lamini_docs.jsonl, one text each) and
 *       "code+multilingual" (the C sources in common/ and cmd/, a file per
 *       text, and bench/bpe_multilingual.txt, a line per text). Each run
 *       loads a fresh tokenizer, so its piece cache starts empty. Prints the
 *       median MB/s and tokens/s, the load time and the memory it takes.
 *   build/bench/bpe_bench --dump lamini|code   the corpus as JSONL {"text"},
 *       for bench/bpe_hf.js
 *   build/bench/bpe_bench --check REF.jsonl    compares encode and decode with
 *       lines {"text","ids","decoded"} made by bench/bpe_hf.js ids; exit 1 on
 *       any difference. */
#include "base/cli.h"
#include "base/io.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/utf8_json.h"

#include <cJSON.h>
#include <dirent.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char *src_dir = TUNEPIPE_SRCDATA "/..";

typedef struct {
    char **text;
    size_t *len;
    size_t n, cap, bytes;
} corpus;

static void corpus_add(corpus *c, const char *s, size_t n) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1024;
        c->text = xrealloc(c->text, c->cap * sizeof *c->text);
        c->len = xrealloc(c->len, c->cap * sizeof *c->len);
    }
    c->text[c->n] = memcpy(xmalloc(n + 1), s, n);
    c->text[c->n][n] = 0;
    c->len[c->n++] = n;
    c->bytes += n;
}

static void corpus_free(corpus *c) {
    for (size_t i = 0; i < c->n; i++) free(c->text[i]);
    free(c->text);
    free(c->len);
    *c = (corpus){0};
}

static void load_lamini(corpus *c) {
    char path[1024];
    snprintf(path, sizeof path, "%s/data/lamini_docs.jsonl", src_dir);
    line_reader *lr = line_reader_open(open_input(path), path);
    char *line;
    size_t len;
    while ((line = line_reader_next(lr, &len))) {
        cJSON *rec = cJSON_ParseWithLength(line, len);
        static const char *const fields[] = {"question", "answer"};
        for (int i = 0; i < 2; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, fields[i]);
            if (!cJSON_IsString(v)) die("%s: line %llu: no %s", path, (unsigned long long)line_reader_lineno(lr), fields[i]);
            corpus_add(c, v->valuestring, strlen(v->valuestring));
        }
        cJSON_Delete(rec);
    }
    line_reader_close(lr);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The .c and .h files of a source directory, sorted, a file per text. */
static void add_sources(corpus *c, const char *sub) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", src_dir, sub);
    DIR *d = opendir(dir);
    if (!d) die("%s: cannot open", dir);
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 3 || e->d_name[l - 2] != '.' || (e->d_name[l - 1] != 'c' && e->d_name[l - 1] != 'h')) continue;
        names = xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *text = read_file(path, &len);
        corpus_add(c, text, len);
        free(text);
        free(names[i]);
    }
    free(names);
}

static void load_code(corpus *c) {
    add_sources(c, "common");
    add_sources(c, "cmd");
    char path[1024];
    snprintf(path, sizeof path, "%s/bench/bpe_multilingual.txt", src_dir);
    line_reader *lr = line_reader_open(open_input(path), path);
    char *line;
    size_t len;
    while ((line = line_reader_next(lr, &len))) corpus_add(c, line, len);
    line_reader_close(lr);
}

static double thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_RUNS 101

/* tokenizer_open, or die with the reason. */
static tokenizer *load_tokenizer(const char *path) {
    char err[512];
    tokenizer *t = tokenizer_open(path, err, sizeof err);
    if (!t) die("%s: %s", path, err);
    return t;
}

static void bench(const char *name, const corpus *c, const char *tok_path, double megabytes, int runs) {
    size_t reps = (size_t)(megabytes * 1e6 / (double)c->bytes) + 1;
    double mbps[MAX_RUNS], cpu_mbps[MAX_RUNS], tokps[MAX_RUNS];
    size_t tokens = 0;
    for (int r = 0; r < runs; r++) {
        tokenizer *t = load_tokenizer(tok_path);
        token_ids ids = {0};
        tokens = 0;
        double w0 = now_seconds(), c0 = thread_seconds();
        for (size_t k = 0; k < reps; k++)
            for (size_t i = 0; i < c->n; i++) {
                ids.n = 0;
                tokenizer_encode(t, c->text[i], c->len[i], &ids, NULL);
                tokens += ids.n;
            }
        double wall = now_seconds() - w0, cpu = thread_seconds() - c0;
        double mb = (double)c->bytes * (double)reps / 1e6;
        mbps[r] = mb / wall;
        cpu_mbps[r] = mb / cpu;
        tokps[r] = (double)tokens / wall;
        token_ids_free(&ids);
        tokenizer_free(t);
    }
    printf("%s: %zu texts, %.2f MB x %zu = %.1f MB, %zu tokens: %.1f MB/s, %.2f M tokens/s "
           "(median of %d runs, wall clock, one thread; by thread CPU time %.1f MB/s)\n",
           name, c->n, (double)c->bytes / 1e6, reps, (double)c->bytes * (double)reps / 1e6, tokens,
           median(mbps, runs), median(tokps, runs) / 1e6, runs, median(cpu_mbps, runs));
}

static void load_stats(const char *tok_path, int runs) {
    double ms[MAX_RUNS];
    struct rusage usage;
    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        tokenizer *t = load_tokenizer(tok_path);
        ms[r] = (now_seconds() - t0) * 1e3;
        tokenizer_free(t);
    }
    getrusage(RUSAGE_SELF, &usage);
    printf("load: %.1f ms (median of %d), peak memory %.1f MB (the whole process, before any corpus)\n",
           median(ms, runs), runs, (double)usage.ru_maxrss / 1024);
}

static void dump(const corpus *c) {
    utf8_buf out = {0};
    for (size_t i = 0; i < c->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", c->text[i]);
        char *s = cJSON_PrintUnformatted(o);
        utf8_buf_append(&out, s, strlen(s));
        utf8_buf_append(&out, "\n", 1);
        free(s);
        cJSON_Delete(o);
    }
    fwrite(out.data, 1, out.len, stdout);
    checked_fflush(stdout);
    utf8_buf_free(&out);
}

/* Compares with a reference file; returns the number of differing lines. */
static size_t check(const char *tok_path, const char *ref) {
    tokenizer *t = load_tokenizer(tok_path);
    line_reader *lr = line_reader_open(open_input(ref), ref);
    token_ids got = {0};
    utf8_buf text = {0}, want_text = {0}, decoded = {0};
    size_t lines = 0, bad = 0;
    char *line;
    size_t len;
    while ((line = line_reader_next(lr, &len))) {
        cJSON *rec = cJSON_ParseWithLength(line, len);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rec, "ids");
        text.len = want_text.len = decoded.len = 0;
        if (!cJSON_IsArray(ids) || json_member_string(line, len, "text", &text) ||
            json_member_string(line, len, "decoded", &want_text))
            die("%s: line %zu: not a reference line", ref, lines + 1);
        lines++;
        got.n = 0;
        int same = tokenizer_encode(t, text.data ? text.data : "", text.len, &got, NULL) == 0 &&
                   got.n == (size_t)cJSON_GetArraySize(ids);
        size_t i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ids) if (same && got.ids[i++] != (uint32_t)e->valuedouble) same = 0;
        uint32_t *want = xmalloc(((size_t)cJSON_GetArraySize(ids) + 1) * sizeof *want);
        i = 0;
        cJSON_ArrayForEach(e, ids) want[i++] = (uint32_t)e->valuedouble;
        tokenizer_decode(t, want, i, 0, &decoded);
        same &= decoded.len == want_text.len && memcmp(decoded.data, want_text.data, decoded.len) == 0;
        if (!same && bad++ < 10) printf("line %zu differs: %.*s\n", lines, (int)(len < 200 ? len : 200), line);
        free(want);
        cJSON_Delete(rec);
    }
    printf("%s: %zu lines, %zu differ\n", ref, lines, bad);
    line_reader_close(lr);
    token_ids_free(&got);
    utf8_buf_free(&text);
    utf8_buf_free(&want_text);
    utf8_buf_free(&decoded);
    tokenizer_free(t);
    return bad;
}

int main(int argc, char **argv) {
    cli_init("bpe_bench");
    char *tok_path = data_file("tokenizer.json");
    double megabytes = 5;
    int runs = 5;
    const char *dump_name = NULL, *check_ref = NULL;
    enum { OPT_DUMP = 256, OPT_CHECK };
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"megabytes", required_argument, 0, 's'},
                                         {"runs", required_argument, 0, 'r'},
                                         {"dump", required_argument, 0, OPT_DUMP},
                                         {"check", required_argument, 0, OPT_CHECK},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "t:s:r:", opts, NULL)) != -1) {
        switch (c) {
        case 't': free(tok_path); tok_path = xstrdup(optarg); break;
        case 's': megabytes = parse_double("--megabytes", optarg, 0.001, 1e4); break;
        case 'r': runs = (int)parse_long("--runs", optarg, 1, MAX_RUNS); break;
        case OPT_DUMP: dump_name = optarg; break;
        case OPT_CHECK: check_ref = optarg; break;
        default: usage_error("usage: bpe_bench [-t TOKENIZER] [-s MB] [-r RUNS] [--dump lamini|code] [--check REF]");
        }
    }
    int rc = 0;
    if (check_ref) {
        rc = check(tok_path, check_ref) != 0;
    } else if (dump_name) {
        corpus cp = {0};
        if (strcmp(dump_name, "lamini") == 0) load_lamini(&cp);
        else if (strcmp(dump_name, "code") == 0) load_code(&cp);
        else usage_error("--dump: lamini or code, not '%s'", dump_name);
        dump(&cp);
        corpus_free(&cp);
    } else {
        load_stats(tok_path, runs);
        corpus lamini = {0}, code = {0};
        load_lamini(&lamini);
        load_code(&code);
        bench("lamini", &lamini, tok_path, megabytes, runs);
        bench("code+multilingual", &code, tok_path, megabytes, runs);
        corpus_free(&lamini);
        corpus_free(&code);
    }
    free(tok_path);
    return rc;
}
