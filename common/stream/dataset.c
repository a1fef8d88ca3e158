/* dataset.c — training examples in memory; see dataset.h. */
#include "dataset.h"

#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/rng.h"
#include "stream.h"

int loss_mode_parse(const char *name, loss_mode *out) {
    if (strcmp(name, "answer") == 0) *out = LOSS_ANSWER;
    else if (strcmp(name, "all") == 0) *out = LOSS_ALL;
    else return 0;
    return 1;
}

/* FNV-1a over 32-bit words. */
static uint64_t fnv_mix(uint64_t h, uint32_t word) {
    for (int i = 0; i < 4; i++) {
        h ^= (word >> (8 * i)) & 0xff;
        h *= 0x100000001b3ULL;
    }
    return h;
}

int dataset_add(dataset *d, const uint32_t *question, uint32_t nq, const uint32_t *answer,
                uint32_t na, loss_mode mode, uint64_t record_id) {
    example e = {.start = d->num_tokens, .len = nq + na, .prompt_len = nq, .record_id = record_id};
    /* Position 0 has nothing before it to predict it from. */
    e.target_begin = mode == LOSS_ANSWER ? nq : 0;
    if (e.target_begin < 1) e.target_begin = 1;
    if (e.target_begin >= e.len) return 0;
    if (d->num_tokens + e.len > d->cap_ids) {
        d->cap_ids = (d->num_tokens + e.len) * 2;
        d->ids = xrealloc(d->ids, d->cap_ids * sizeof *d->ids);
    }
    uint32_t *dst = d->ids + d->num_tokens;
    if (nq) memcpy(dst, question, nq * sizeof *question);
    memcpy(dst + nq, answer, na * sizeof *answer);
    if (d->fingerprint == 0) d->fingerprint = 0xcbf29ce484222325ULL;
    for (uint32_t i = 0; i < e.len; i++) d->fingerprint = fnv_mix(d->fingerprint, dst[i]);
    d->fingerprint = fnv_mix(fnv_mix(d->fingerprint, e.len), e.target_begin);
    d->num_tokens += e.len;
    d->num_targets += example_num_targets(&e);
    if (d->n == d->cap_ex) {
        d->cap_ex = d->cap_ex ? d->cap_ex * 2 : 256;
        d->ex = xrealloc(d->ex, d->cap_ex * sizeof *d->ex);
    }
    d->ex[d->n++] = e;
    return 1;
}

/* One record's checks: 1, or 0 with the reason in err. */
static int check_record(const record *r, unsigned long long recno, const char *name, int vocab_size,
                        int max_positions, char *err, int errlen) {
    const segment *question = record_find((record *)r, SEG_QUESTION);
    const segment *answer = record_find((record *)r, SEG_ANSWER);
    if (!answer) return fail_message(err, errlen, "%s: record %llu: no \"%s\" segment", name, recno, SEG_ANSWER);
    uint32_t nq = 0, na = 0;
    const uint32_t *q = question ? segment_content(question, &nq) : NULL;
    const uint32_t *a = segment_content(answer, &na);
    uint64_t len = (uint64_t)nq + na;
    if (len > (uint64_t)max_positions)
        return fail_message(err, errlen, "%s: record %llu: %llu tokens, more than the model's %d positions", name,
                            recno, (unsigned long long)len, max_positions);
    for (int part = 0; part < 2; part++) {
        const uint32_t *ids = part ? a : q;
        for (uint32_t i = 0, n = part ? na : nq; i < n; i++)
            if (ids[i] >= (uint32_t)vocab_size)
                return fail_message(err, errlen, "%s: record %llu: token id %u is outside the vocabulary (%d)",
                                    name, recno, ids[i], vocab_size);
    }
    return 1;
}

int dataset_read(dataset *d, int fd, const char *name, loss_mode mode, int vocab_size, int max_positions,
                 char *err, int errlen) {
    memset(d, 0, sizeof *d);
    stream_reader *sr = stream_reader_open(fd, name);
    record r = {0};
    unsigned long long skipped = 0, first_skipped = 0;
    int got;
    while ((got = stream_read(sr, &r, err, errlen)) > 0) {
        unsigned long long recno = stream_records_read(sr);
        if (!check_record(&r, recno, name, vocab_size, max_positions, err, errlen)) {
            got = -1;
            break;
        }
        const segment *question = record_find(&r, SEG_QUESTION), *answer = record_find(&r, SEG_ANSWER);
        uint32_t nq = 0, na = 0;
        const uint32_t *q = question ? segment_content(question, &nq) : NULL;
        const uint32_t *a = segment_content(answer, &na);
        if (!dataset_add(d, q, nq, a, na, mode, r.id) && skipped++ == 0) first_skipped = recno;
    }
    record_free(&r);
    stream_reader_close(sr);
    if (got < 0) {
        dataset_free(d);
        return 0;
    }
    /* An empty answer (lamini_docs has one) gives no loss term; say so
     * rather than stop a run over it. */
    if (skipped)
        warn("%s: skipped %llu record%s with no %s token to predict (record %llu%s)", name,
             skipped, skipped > 1 ? "s" : "", mode == LOSS_ANSWER ? "answer" : "target",
             first_skipped, skipped > 1 ? ", ..." : "");
    if (d->n == 0) {
        dataset_free(d);
        return fail_message(err, errlen, "%s: no examples to train on", name);
    }
    return 1;
}

void dataset_free(dataset *d) {
    free(d->ids);
    free(d->ex);
    memset(d, 0, sizeof *d);
}

void order_init(example_order *o, size_t n, int shuffle, uint64_t seed) {
    o->n = n;
    o->shuffle = shuffle;
    o->seed = seed;
    o->epoch = UINT64_MAX;
    o->perm = xmalloc(n * sizeof *o->perm);
}

static void order_fill(example_order *o, uint64_t epoch) {
    for (size_t i = 0; i < o->n; i++) o->perm[i] = i;
    if (o->shuffle) {
        rng_state r;
        rng_seed(&r, o->seed ^ (0x9e3779b97f4a7c15ULL * (epoch + 1)));
        for (size_t i = o->n - 1; i > 0; i--) {
            size_t j = (size_t)rng_below(&r, i + 1);
            size_t t = o->perm[i];
            o->perm[i] = o->perm[j];
            o->perm[j] = t;
        }
    }
    o->epoch = epoch;
}

size_t order_at(example_order *o, uint64_t k) {
    uint64_t epoch = k / o->n;
    if (epoch != o->epoch) order_fill(o, epoch);
    return o->perm[k % o->n];
}

void order_free(example_order *o) {
    free(o->perm);
    o->perm = NULL;
}
