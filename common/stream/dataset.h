/* dataset.h — training examples held in memory: each record of a token
 * stream becomes question ++ answer (padding dropped by its metadata), with
 * the range of tokens the loss is computed on; and the example order of
 * every epoch (shuffled from a seed, or the input order). */
#ifndef TUNEPIPE_DATASET_H
#define TUNEPIPE_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LOSS_ANSWER, LOSS_ALL } loss_mode;

/* "answer" or "all"; returns 0 for anything else. */
int loss_mode_parse(const char *name, loss_mode *out);

typedef struct {
    size_t start;          /* first token in dataset.ids */
    uint32_t len;          /* question + answer tokens */
    uint32_t prompt_len;   /* question tokens */
    uint32_t target_begin; /* positions p in [target_begin, len) are targets: */
                           /* ids[p] is predicted from position p - 1 */
    uint64_t record_id;    /* source line id carried by the stream */
} example;

typedef struct {
    uint32_t *ids;
    size_t num_tokens;
    example *ex;
    size_t n;
    size_t num_targets;    /* over all examples */
    uint64_t fingerprint;  /* of the token content and targets: a resumed run checks it */
    size_t cap_ids, cap_ex;
} dataset;

/* Appends question ++ answer as an example (d zeroed to start). Returns 0,
 * adding nothing, when it has no target token under mode. */
int dataset_add(dataset *d, const uint32_t *question, uint32_t nq, const uint32_t *answer,
                uint32_t na, loss_mode mode, uint64_t record_id);

/* Reads every record of the stream on fd (name for messages). Each record
 * needs an "answer" segment; a "question" segment is optional, others are
 * ignored. Returns 0 with "name: record N: what is wrong" in err (ERR_MAX
 * bytes hold any) for a malformed stream, a token id outside the
 * vocabulary or an example longer than max_positions, and when no example
 * is left (d is then empty); records with no target token are skipped with
 * a warning. */
int dataset_read(dataset *d, int fd, const char *name, loss_mode mode, int vocab_size, int max_positions,
                 char *err, int errlen);
void dataset_free(dataset *d);

static inline uint32_t example_num_targets(const example *e) { return e->len - e->target_begin; }

/* The order examples are visited in: the sequence k = 0, 1, ... runs over
 * epochs back to back; epoch e = k / n visits a permutation of the
 * examples that depends only on (seed, e), so any position can be resumed. */
typedef struct {
    size_t n;
    int shuffle;
    uint64_t seed;
    uint64_t epoch;        /* the epoch perm holds */
    size_t *perm;
} example_order;

void order_init(example_order *o, size_t n, int shuffle, uint64_t seed);
/* Index of the k-th visited example. */
size_t order_at(example_order *o, uint64_t k);
void order_free(example_order *o);

#endif
