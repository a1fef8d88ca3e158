/* stream.c — token stream round trip, concatenation, and every kind of
 * corruption: each must end in exit 1 with a one-line message, never a
 * signal or a silently short read. */
#include "tap.h"
#include "base/cli.h"
#include "base/rng.h"
#include "stream/stream.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

static char tmpdir[] = "/tmp/tunepipe-stream.XXXXXX";

static void make_record(record *r, uint64_t id, uint32_t seed) {
    record_clear(r);
    r->id = id;
    segment *q = record_segment(r, SEG_QUESTION);
    for (uint32_t i = 0; i < 5 + seed % 7; i++) segment_push(q, 70000 + i * seed); /* beyond 65535 */
    segment *a = record_segment(r, SEG_ANSWER);
    for (uint32_t i = 0; i < seed % 4; i++) segment_push(a, i);
    segment_push(a, 1);
    a->pad = 1;
    a->pad_side = SIDE_RIGHT;
    a->trunc = seed;
    a->trunc_side = seed ? SIDE_LEFT : SIDE_NONE;
}

/* Writes nrec records to path, one writer; flush_every forces more frames. */
static void write_stream(const char *path, int nrec, int flush_every) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char why[ERR_MAX];
    stream_writer *sw = stream_writer_open(fd, 0, why, sizeof why);
    if (!sw) die("%s", why);
    record r = {0};
    for (int i = 0; i < nrec; i++) {
        make_record(&r, (uint64_t)i + 1, (uint32_t)i);
        if (stream_write(sw, &r, why, sizeof why) < 0) die("%s", why);
        if (flush_every && (i + 1) % flush_every == 0) stream_flush(sw);
    }
    stream_writer_close(sw);
    close(fd);
    record_free(&r);
}

static int same_record(record *a, record *b) {
    if (a->id != b->id || a->nseg != b->nseg) return 0;
    for (int i = 0; i < a->nseg; i++) {
        segment *x = &a->seg[i], *y = &b->seg[i];
        if (strcmp(x->name, y->name) || x->n != y->n || x->pad != y->pad || x->pad_side != y->pad_side ||
            x->trunc != y->trunc || x->trunc_side != y->trunc_side || memcmp(x->ids, y->ids, x->n * 4))
            return 0;
    }
    return 1;
}

/* Reads path fully in a child; returns its exit status (or 128+signal) and
 * the number of records read via *count, stderr's first line into msg. */
static int read_in_child(const char *path, int *count, char *msg, size_t msg_size) {
    int out[2], err[2];
    if (pipe(out) || pipe(err)) abort();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(err[1], 2);
        int fd = open(path, O_RDONLY);
        stream_reader *sr = stream_reader_open(fd, "-");
        record r = {0};
        int n = 0, got;
        char why[ERR_MAX];
        while ((got = stream_read(sr, &r, why, sizeof why)) > 0) n++;
        if (got < 0) die("%s", why); /* as a tool does */
        dprintf(out[1], "%d", n);
        _exit(0);
    }
    close(out[1]);
    close(err[1]);
    char buf[64] = {0};
    ssize_t k = read(out[0], buf, sizeof buf - 1);
    *count = k > 0 ? atoi(buf) : -1;
    ssize_t m = read(err[0], msg, msg_size - 1);
    msg[m > 0 ? m : 0] = '\0';
    /* One line: exactly one '\n', at the end; chomp it for the report. */
    char *nl = strchr(msg, '\n');
    if (nl && nl[1] == '\0') *nl = '\0';
    else if (nl) strcpy(msg, "(more than one line)");
    close(out[0]);
    close(err[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static size_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static unsigned char *slurp(const char *path, size_t *n) {
    *n = file_size(path);
    unsigned char *buf = malloc(*n + 1);
    int fd = open(path, O_RDONLY);
    if (read(fd, buf, *n) != (ssize_t)*n) abort();
    close(fd);
    return buf;
}

static void spit(const char *path, const void *buf, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (write(fd, buf, n) != (ssize_t)n) abort();
    close(fd);
}

/* A stream whose one frame decompresses to the given bytes: lets tests put
 * malformed chunks behind valid zstd framing. */
static void write_raw_frame(const char *path, const void *raw, size_t n) {
    size_t cap = ZSTD_compressBound(n);
    void *dst = malloc(cap);
    size_t z = ZSTD_compress(dst, cap, raw, n, 3);
    spit(path, dst, z);
    free(dst);
}

int main(void) {
    cli_init("stream-test");
    if (!mkdtemp(tmpdir)) abort();
    char a[256], b[256], cat[256], bad[256], msg[512];
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b", tmpdir);
    snprintf(cat, sizeof cat, "%s/cat", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad", tmpdir);

    /* Round trip, with many frames. */
    write_stream(a, 50, 7);
    int fd = open(a, O_RDONLY);
    stream_reader *sr = stream_reader_open(fd, a);
    record got = {0}, want = {0};
    int n = 0, all_same = 1;
    char why[ERR_MAX];
    while (stream_read(sr, &got, why, sizeof why) > 0) {
        make_record(&want, (uint64_t)n + 1, (uint32_t)n);
        all_same &= same_record(&got, &want);
        n++;
    }
    stream_reader_close(sr);
    close(fd);
    ok(n == 50 && all_same, "round trip of 50 records over 8 frames (read %d)", n);
    uint32_t cn;
    make_record(&want, 3, 3);
    const uint32_t *content = segment_content(record_find(&want, SEG_ANSWER), &cn);
    ok(cn == 3 && content[0] == 0 && content[2] == 2, "segment_content skips right padding by count");

    /* Concatenation, as `cat a b | tool` does. */
    write_stream(b, 3, 0);
    size_t na, nb;
    unsigned char *da = slurp(a, &na), *db = slurp(b, &nb);
    unsigned char *both = malloc(na + nb);
    memcpy(both, da, na);
    memcpy(both + na, db, nb);
    spit(cat, both, na + nb);
    int count, st = read_in_child(cat, &count, msg, sizeof msg);
    ok(st == 0 && count == 53, "concatenated streams read as one (status %d, %d records)", st, count);

    /* An empty stream (header only) is valid; an empty file is not. */
    write_stream(b, 0, 0);
    st = read_in_child(b, &count, msg, sizeof msg);
    ok(st == 0 && count == 0, "a stream with no records reads as empty");
    spit(bad, "", 0);
    st = read_in_child(bad, &count, msg, sizeof msg);
    ok(st == 1 && strstr(msg, "empty input"), "empty file: exit 1 (%s)", msg);

    /* Text where a stream is expected. */
    spit(bad, "{\"question\": \"hi\"}\n", 19);
    st = read_in_child(bad, &count, msg, sizeof msg);
    ok(st == 1 && strstr(msg, "record 1: not a neox token stream") && strstr(msg, "bpe-encode"),
       "text input: exit 1 with a hint (%s)", msg);

    /* Truncation at every byte of the multi-frame stream, frame boundaries
     * included (the end marker is missing then): always exit 1. */
    int bad_trunc = 0;
    for (size_t cut = 1; cut < na; cut++) {
        spit(bad, da, cut);
        st = read_in_child(bad, &count, msg, sizeof msg);
        if (st != 1 || !strstr(msg, "record ")) {
            bad_trunc++;
            diag("cut at %zu: status %d, msg %s", cut, st, msg);
        }
    }
    ok(bad_trunc == 0, "truncation at each of %zu positions: exit 1 with a one-line message", na - 1);

    /* Bit flips everywhere: exit 0 only if zstd's checksum can't see it
     * (then records must still parse), else exit 1; never a signal. */
    int signals = 0, other = 0;
    for (size_t pos = 0; pos < na; pos++) {
        for (int bit = 0; bit < 8; bit += 3) {
            unsigned char *copy = malloc(na);
            memcpy(copy, da, na);
            copy[pos] ^= (unsigned char)(1 << bit);
            spit(bad, copy, na);
            free(copy);
            st = read_in_child(bad, &count, msg, sizeof msg);
            if (st >= 128) signals++;
            else if (st != 0 && st != 1) other++;
        }
    }
    ok(signals == 0 && other == 0, "bit flips: no signals (%d), no odd exits (%d)", signals, other);

    /* Random bytes. */
    rng_state rng;
    rng_seed(&rng, 7);
    int rand_bad = 0;
    for (int t = 0; t < 50; t++) {
        unsigned char junk[512];
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)rng_next(&rng);
        if (t % 2) memcpy(junk, "\x28\xb5\x2f\xfd", 4); /* zstd magic, garbage after */
        spit(bad, junk, sizeof junk);
        st = read_in_child(bad, &count, msg, sizeof msg);
        if (st != 1) rand_bad++;
    }
    ok(rand_bad == 0, "random bytes (half behind a zstd magic): exit 1 every time");

    /* Well-framed but malformed content. */
    struct { const char *what; const char *raw; size_t n; const char *expect; } cases[] = {
        {"wrong magic", "NEOXTOKZ\1\0\0\0\0\0\0\0", 16, "wrong magic"},
        {"wrong version", "NEOXTOKS\2\0\0\0\0\0\0\0", 16, "unsupported stream version 2"},
        {"bad chunk tag", "NEOXTOKS\1\0\0\0\0\0\0\0JUNK\0\0\0\0", 24, "bad chunk tag"},
        {"huge record length", "NEOXTOKS\1\0\0\0\0\0\0\0RECD\xff\xff\xff\xff", 24, "claims"},
        {"no end marker", "NEOXTOKS\1\0\0\0\0\0\0\0", 16, "truncated stream"},
        {"end marker miscounts", "NEOXTOKS\1\0\0\0\0\0\0\0ENDS\1\0\0\0\0\0\0\0", 28, "end marker counts 1"},
        {"record past the end", "NEOXTOKS\1\0\0\0\0\0\0\0RECD\x20\0\0\0\1\0\0\0", 28, "truncated record"},
        {"segment past its record",
         "NEOXTOKS\1\0\0\0\0\0\0\0RECD\x1a\0\0\0" "\1\0\0\0\0\0\0\0\1\0\0\0" "\1a\0\0\x09\0\0\0\0\0\0\0\0\0\0\0",
         16 + 8 + 12 + 16, "run past"},
        {"padding beyond the segment",
         "NEOXTOKS\1\0\0\0\0\0\0\0RECD\x1e\0\0\0" "\1\0\0\0\0\0\0\0\1\0\0\0" "\1a\1\0\1\0\0\0\2\0\0\0\0\0\0\0" "\5\0\0\0",
         16 + 8 + 12 + 16 + 4, "inconsistent padding"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_raw_frame(bad, cases[i].raw, cases[i].n);
        st = read_in_child(bad, &count, msg, sizeof msg);
        ok(st == 1 && strstr(msg, cases[i].expect), "%s: exit 1 (%s)", cases[i].what, msg);
    }

    free(da);
    free(db);
    free(both);
    record_free(&got);
    record_free(&want);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) diag("could not remove %s", tmpdir);
    return done_testing();
}
