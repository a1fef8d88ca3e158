/* neox_gen.c — bin/neox-gen end to end against the tiny-neox reference:
 * Hugging Face's greedy, repetition-penalty, no-repeat-ngram and EOS
 * generations token for token, batching with different lengths and left
 * padding, --score against the reference answer losses, reproducible
 * sampling, and one-line errors for bad records. */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"
#include "nn/safetensors.h"
#include "stream/stream.h"
#include "tap.h"

#define DATA "tests/data/tiny-neox"

static st_file ref;
static char tmp[256], bin[1024];

static uint32_t *ref_ids(const char *name, uint32_t *n) {
    const st_tensor *t = st_find(&ref, name);
    if (!t) { printf("Bail out! no %s\n", name); exit(1); }
    int64_t *x = xmalloc(t->numel * sizeof *x);
    st_read_i64(&ref, t, x);
    uint32_t *ids = xmalloc(t->numel * sizeof *ids);
    for (size_t i = 0; i < t->numel; i++) ids[i] = (uint32_t)x[i];
    free(x);
    *n = (uint32_t)t->numel;
    return ids;
}

/* Writes records to tmp/name: record i has question q[i] (with lpad[i] pad
 * tokens on the left; none when q is NULL) and, when a[i], an answer. */
static void write_stream(const char *name, int nrec, uint32_t *const *q, const uint32_t *nq,
                         const uint32_t *lpad, uint32_t *const *a, const uint32_t *na) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char why[ERR_MAX];
    stream_writer *sw = stream_writer_open(fd, 1, why, sizeof why);
    for (int i = 0; i < nrec; i++) {
        record r = {0};
        r.id = (uint64_t)i + 1;
        segment *s = q ? record_segment(&r, SEG_QUESTION) : NULL;
        for (uint32_t k = 0; s && lpad && k < lpad[i]; k++) segment_push(s, 1);
        if (s) segment_append(s, q[i], nq[i]);
        if (s && lpad) {
            s->pad = lpad[i];
            s->pad_side = lpad[i] ? SIDE_LEFT : SIDE_NONE;
        }
        if (a && a[i]) segment_append(record_segment(&r, SEG_ANSWER), a[i], na[i]);
        if (stream_write(sw, &r, why, sizeof why) < 0) die("%s", why);
        record_free(&r);
    }
    stream_writer_close(sw);
    close(fd);
}

/* Runs neox-gen with args on tmp/in, output to tmp/out; returns its status. */
static int run(const char *in, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/neox-gen' -m " DATA "/tiny-f32 %s <'%s/%s' >'%s/out' 2>'%s/err'", bin,
             args, tmp, in, tmp, tmp);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The generated segments of tmp/out, record by record. */
typedef struct { uint32_t ids[512]; uint32_t n; uint64_t id; } gen_out;
static int read_generated(gen_out *out, int max) {
    char path[512];
    snprintf(path, sizeof path, "%s/out", tmp);
    int fd = open(path, O_RDONLY);
    stream_reader *sr = stream_reader_open(fd, path);
    record r = {0};
    int k = 0;
    char why[ERR_MAX];
    while (k < max && stream_read(sr, &r, why, sizeof why) > 0) {
        segment *g = record_find(&r, SEG_GENERATED);
        out[k].n = g && g->n <= 512 ? g->n : 0;
        if (g) memcpy(out[k].ids, g->ids, out[k].n * sizeof(uint32_t));
        out[k].id = r.id;
        k++;
    }
    record_free(&r);
    stream_reader_close(sr);
    close(fd);
    return k;
}

static int same(const gen_out *g, const uint32_t *want, uint32_t n) {
    return g->n == n && memcmp(g->ids, want, n * sizeof *want) == 0;
}

static char *err_text(void) {
    static char buf[1024];
    char path[512];
    snprintf(path, sizeof path, "%s/err", tmp);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

int main(void) {
    char err[256];
    if (!st_open(&ref, DATA "/reference.safetensors", err, sizeof err)) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    snprintf(bin, sizeof bin, "%s", getenv("TUNEPIPE_BIN") ? getenv("TUNEPIPE_BIN") : "bin");
    snprintf(tmp, sizeof tmp, "%s/tunepipe-gen.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) { printf("Bail out! mkdtemp\n"); return 1; }

    uint32_t np, ng, nr, nn, n0;
    uint32_t *prompt = ref_ids("gen.prompt", &np), *greedy = ref_ids("gen.greedy", &ng);
    uint32_t *rep = ref_ids("gen.rep1.3", &nr), *norep = ref_ids("gen.norep3", &nn);
    uint32_t *eos0 = ref_ids("gen.greedy_eos0", &n0);
    write_stream("prompt", 1, &prompt, &np, NULL, NULL, NULL);
    gen_out g[8];

    ok(run("prompt", "-n 40") == 0 && read_generated(g, 8) == 1 && same(&g[0], greedy, ng),
       "greedy: gen.greedy token for token");
    ok(same(&g[0], eos0, n0), "default EOS (config's 0) never hit: gen.greedy_eos0");
    ok(run("prompt", "-n 40 --repetition-penalty 1.3") == 0 && read_generated(g, 8) == 1 && same(&g[0], rep, nr),
       "--repetition-penalty 1.3: gen.rep1.3");
    ok(run("prompt", "-n 40 --no-repeat-ngram 3") == 0 && read_generated(g, 8) == 1 && same(&g[0], norep, nn),
       "--no-repeat-ngram 3: gen.norep3");
    uint32_t upto = 0;
    while (upto < ng && greedy[upto] != 457) upto++;
    ok(upto < ng && run("prompt", "-n 40 --eos-id 457") == 0 && read_generated(g, 8) == 1 &&
       same(&g[0], greedy, upto + 1),
       "--eos-id 457: gen.greedy up to and including its first 457 (%u tokens)", upto + 1);
    ok(run("prompt", "-n 40 --eos-id -1") == 0 && read_generated(g, 8) == 1 && same(&g[0], greedy, ng),
       "--eos-id -1 never stops early");
    {
        uint32_t same_tokens = 0;
        int ran = run("prompt", "-n 40 --dtype bf16") == 0 && read_generated(g, 8) == 1;
        for (uint32_t t = 0; ran && t < g[0].n && t < ng; t++) same_tokens += g[0].ids[t] == greedy[t];
        ok(ran && g[0].n == ng && same_tokens * 100 >= 95 * ng,
           "--dtype bf16: %u of gen.greedy's %u tokens", same_tokens, ng);
    }
    ok(run("prompt", "-n 7") == 0 && read_generated(g, 8) == 1 && same(&g[0], greedy, 7), "--max-new 7");

    /* Batching: different lengths and left padding; each equals its batch-1 run. */
    uint32_t *qs[4] = {prompt, prompt + 4, prompt, greedy};
    uint32_t nqs[4] = {np, np - 4, np, 25}, pads[4] = {0, 0, 3, 0};
    write_stream("mixed", 4, qs, nqs, pads, NULL, NULL);
    gen_out one[4], batched[4];
    int ok1 = 1;
    for (int i = 0; i < 4; i++) {
        write_stream("single", 1, &qs[i], &nqs[i], &pads[i], NULL, NULL);
        ok1 &= run("single", "-n 40 --eos-id 457") == 0 && read_generated(&one[i], 1) == 1;
    }
    ok(ok1 && same(&one[2], greedy, upto + 1), "a left-padded question: padding is never attended");
    ok(run("mixed", "-n 40 --eos-id 457 --batch 3") == 0 && read_generated(batched, 4) == 4 &&
       same(&batched[0], one[0].ids, one[0].n) && same(&batched[1], one[1].ids, one[1].n) &&
       same(&batched[2], one[2].ids, one[2].n) && same(&batched[3], one[3].ids, one[3].n) &&
       batched[0].id == 1 && batched[3].id == 4,
       "--batch 3: 4 records of lengths 10, 6, 10+3 pad, 25 decode as alone, in input order");

    /* A generated segment already present is replaced. */
    {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp '%s/out' '%s/again'", tmp, tmp);
        ok(run("prompt", "-n 5") == 0 && system(cmd) == 0 && run("again", "-n 40") == 0 && read_generated(g, 8) == 1 &&
           same(&g[0], greedy, ng), "an existing generated segment is replaced, not extended");
    }

    /* Sampling: reproducible for a seed, independent of batching. */
    const char *sample = "-n 30 --eos-id -1 --temperature 0.9 --top-k 40 --top-p 0.95 --seed 11";
    gen_out s1[4], s2[4], s3[4];
    int r1 = run("mixed", sample) == 0 && read_generated(s1, 4) == 4;
    char args[300];
    snprintf(args, sizeof args, "%s --batch 4", sample);
    int r2 = run("mixed", args) == 0 && read_generated(s2, 4) == 4;
    ok(r1 && r2 && same(&s1[0], s2[0].ids, s2[0].n) && same(&s1[3], s2[3].ids, s2[3].n) && s1[0].n == 30,
       "sampling with --seed is reproducible, batched or not");
    ok(run("mixed", "-n 30 --eos-id -1 --temperature 0.9 --top-k 40 --top-p 0.95 --seed 12") == 0 &&
       read_generated(s3, 4) == 4 && !same(&s3[0], s1[0].ids, s1[0].n), "another seed, another sample");
    ok(run("mixed", "-n 30 --eos-id -1 --top-k 1 --seed 3") == 0 && read_generated(s3, 4) == 4 &&
       same(&s3[0], greedy, 30), "--top-k 1 sampling is greedy");

    /* --score: the answer's NLL given the question, per training example. */
    const st_tensor *lt = st_find(&ref, "loss.answer_mean_per_example");
    double want[8];
    st_read_f64(&ref, lt, want);
    uint32_t *eq[8], *ea[8], enq[8], ena[8];
    for (int i = 0; i < 8; i++) {
        char name[64];
        snprintf(name, sizeof name, "train.ex%d.prompt", i);
        eq[i] = ref_ids(name, &enq[i]);
        snprintf(name, sizeof name, "train.ex%d.answer", i);
        ea[i] = ref_ids(name, &ena[i]);
    }
    write_stream("train", 8, eq, enq, NULL, ea, ena);
    int scored = run("train", "--score") == 0;
    char path[512];
    snprintf(path, sizeof path, "%s/out", tmp);
    FILE *f = fopen(path, "r");
    double worst = 0;
    int lines = 0;
    char line[512];
    while (scored && f && fgets(line, sizeof line, f)) {
        unsigned long long id;
        unsigned tokens;
        double nll, ppl;
        if (sscanf(line, "{\"id\":%llu,\"tokens\":%u,\"nll\":%lf,\"ppl\":%lf}", &id, &tokens, &nll, &ppl) != 4 ||
            id != (unsigned long long)lines + 1 || tokens != ena[lines] || fabs(ppl - exp(nll / tokens)) > 1e-9 * ppl) {
            diag("bad line %s", line);
            worst = 1;
        } else {
            worst = fmax(worst, fabs(nll / tokens - want[lines]) / want[lines]);
        }
        lines++;
    }
    if (f) fclose(f);
    ok(scored && lines == 8 && worst <= 1e-5,
       "--score: loss.answer_mean_per_example within 1e-5 relative (worst %.2g)", worst);

    /* Bad records: one line naming the record, exit 1. */
    write_stream("noq", 1, NULL, NULL, NULL, &prompt, &np);
    ok(run("noq", "-n 3") == 1 && strstr(err_text(), "neox-gen: record 1: no question segment"),
       "a record without a question: %s", err_text());
    uint32_t big[2] = {5, 99999}, nbig = 2;
    uint32_t *bigp = big;
    uint32_t *two[2] = {prompt, bigp}, ntwo[2] = {np, nbig};
    write_stream("oov", 2, two, ntwo, NULL, NULL, NULL);
    ok(run("oov", "-n 3") == 1 && strstr(err_text(), "neox-gen: record 2: token id 99999"),
       "an id outside the vocabulary: %s", err_text());
    ok(run("prompt", "--score") == 1 && strstr(err_text(), "record 1: no answer segment"),
       "--score without an answer: %s", err_text());
    ok(run("prompt", "-m /nonexistent") == 1 && strstr(err_text(), "no config.json"),
       "a missing model directory: %s", err_text());
    ok(run("prompt", "--top-p 2") == 2, "--top-p 2 is a usage error");

    for (int i = 0; i < 8; i++) {
        free(eq[i]);
        free(ea[i]);
    }
    free(prompt);
    free(greedy);
    free(rep);
    free(norep);
    free(eos0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) diag("cannot remove %s", tmp);
    st_close(&ref);
    return done_testing();
}
