/* fuzz_stream.c — the token stream reader (common/stream.c).
 *
 * Input: a mode byte, then the bytes. Mode bit 0 clear: the bytes are the
 * stream as read from a pipe (zstd frames). Set: they are the decompressed
 * content, which the harness compresses into frames of 16 x (the second
 * byte + 1) bytes each, so the fuzzer reaches the chunk and record parser
 * instead of spending itself on zstd's checksums.
 *
 * Properties: the reader never crashes, hangs or over-reads; it either
 * accepts the input or refuses it with a one-line reason; every record it
 * accepts is
 * consistent (padding within the segment) and survives a write/read round
 * trip through stream_writer unchanged. */
#include "fuzz.h"

#include "base/cli.h"
#include "stream/stream.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static void check_equal(const record *a, const record *b, uint64_t k) {
    FUZZ_CHECK(a->id == b->id && a->nseg == b->nseg, "record %llu: id or segment count changed",
               (unsigned long long)k);
    for (int i = 0; i < a->nseg; i++) {
        const segment *x = &a->seg[i], *y = &b->seg[i];
        FUZZ_CHECK(strcmp(x->name, y->name) == 0 && x->n == y->n && x->pad == y->pad &&
                       x->pad_side == y->pad_side && x->trunc == y->trunc && x->trunc_side == y->trunc_side &&
                       (x->n == 0 || memcmp(x->ids, y->ids, x->n * sizeof *x->ids) == 0),
                   "record %llu: segment %d changed in the round trip", (unsigned long long)k, i);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int in_fd = data[0] & 1 ? fuzz_framed_memfd(data + 2, size - 2, 16 * ((size_t)data[1] + 1))
                            : fuzz_memfd(data + 1, size - 1);
    int out_fd = fuzz_memfd(NULL, 0);
    stream_reader *sr = stream_reader_open(in_fd, "-");
    char err[ERR_MAX];
    stream_writer *sw = stream_writer_open(out_fd, 1, err, sizeof err); /* forced: cannot fail */
    record r = {0}, back = {0};
    int got;
    while ((got = stream_read(sr, &r, err, sizeof err)) > 0) {
        for (int i = 0; i < r.nseg; i++) {
            uint32_t n;
            const uint32_t *ids = segment_content(&r.seg[i], &n);
            const segment *s = &r.seg[i];
            FUZZ_CHECK(n <= s->n && (n == 0 || (ids >= s->ids && ids + n <= s->ids + s->n)),
                       "segment content outside the segment");
        }
        /* The reader's record limit is the writer's: what was read fits. */
        FUZZ_CHECK(stream_write(sw, &r, err, sizeof err) == 0, "an accepted record cannot be written: %s", err);
    }
    stream_writer_close(sw);
    stream_reader_close(sr);

    if (got == 0) { /* everything read must read back the same */
        lseek(in_fd, 0, SEEK_SET);
        lseek(out_fd, 0, SEEK_SET);
        stream_reader *a = stream_reader_open(in_fd, "input"), *b = stream_reader_open(out_fd, "rewritten");
        uint64_t k = 0;
        while (stream_read(a, &r, err, sizeof err) > 0) {
            FUZZ_CHECK(stream_read(b, &back, err, sizeof err) > 0, "record %llu lost in the round trip",
                       (unsigned long long)k);
            check_equal(&r, &back, k++);
        }
        FUZZ_CHECK(stream_read(b, &back, err, sizeof err) == 0, "the round trip added a record");
        stream_reader_close(a);
        stream_reader_close(b);
    }
    record_free(&r);
    record_free(&back);
    close(in_fd);
    close(out_fd);
    if (got < 0) {
        size_t n = strnlen(err, sizeof err);
        FUZZ_CHECK(n > 0 && n < sizeof err, "no reason, or one not terminated");
        fuzz_reject(err);
    }
    return 0;
}
