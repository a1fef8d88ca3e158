/* fuzz_dataset.c — neox-train's reading of a token stream into training
 * examples (common/dataset.h), on top of the stream reader.
 *
 * Input: like fuzz_stream.c's mode 1: a byte giving the frame size, then
 * the decompressed stream, compressed here into frames. The model has a
 * vocabulary of 512 and 64 positions; the second byte's low bit picks the
 * loss on all tokens instead of the answer's.
 *
 * Properties: the reader either refuses the input with a one-line reason
 * or returns examples
 * that fit the model (ids in the vocabulary, at most 64 tokens, targets
 * inside the example) and whose totals add up; every epoch of the example
 * order is a permutation. */
#include "fuzz.h"

#include "base/cli.h"
#include "stream/dataset.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define VOCAB 512
#define POSITIONS 64

static void check_examples(const dataset *d) {
    size_t targets = 0, tokens = 0;
    for (size_t i = 0; i < d->n; i++) {
        const example *e = &d->ex[i];
        FUZZ_CHECK(e->len >= 1 && e->len <= POSITIONS && e->start + e->len <= d->num_tokens,
                   "example %zu: %u tokens at %zu of %zu", i, e->len, e->start, d->num_tokens);
        FUZZ_CHECK(e->prompt_len <= e->len && e->target_begin >= 1 && e->target_begin < e->len,
                   "example %zu: targets [%u, %u)", i, e->target_begin, e->len);
        for (uint32_t k = 0; k < e->len; k++) FUZZ_CHECK(d->ids[e->start + k] < VOCAB, "id outside the vocabulary");
        targets += example_num_targets(e);
        tokens += e->len;
    }
    FUZZ_CHECK(targets == d->num_targets && tokens == d->num_tokens, "totals do not add up");
    example_order order;
    order_init(&order, d->n, 1, 7);
    unsigned char *seen = xcalloc(d->n, 1);
    for (uint64_t epoch = 0; epoch < 2; epoch++) {
        memset(seen, 0, d->n);
        for (size_t k = 0; k < d->n; k++) {
            size_t at = order_at(&order, epoch * d->n + k);
            FUZZ_CHECK(at < d->n && !seen[at], "epoch %llu is not a permutation", (unsigned long long)epoch);
            seen[at] = 1;
        }
    }
    free(seen);
    order_free(&order);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int fd = fuzz_framed_memfd(data + 2, size - 2, 16 * ((size_t)data[0] + 1));
    dataset d;
    char err[ERR_MAX];
    int ok = dataset_read(&d, fd, "-", data[1] & 1 ? LOSS_ALL : LOSS_ANSWER, VOCAB, POSITIONS, err, sizeof err);
    close(fd);
    if (ok) {
        check_examples(&d);
        dataset_free(&d);
    } else {
        size_t n = strnlen(err, sizeof err);
        FUZZ_CHECK(n > 0 && n < sizeof err, "no reason, or one not terminated");
        FUZZ_CHECK(d.ex == NULL && d.ids == NULL, "a failed read left examples");
        fuzz_reject(err);
    }
    return 0;
}
