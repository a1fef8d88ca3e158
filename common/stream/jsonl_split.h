/* jsonl_split.h — jsonl-split's records and its seeded train/test split. */
#ifndef TUNEPIPE_JSONL_SPLIT_H
#define TUNEPIPE_JSONL_SPLIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/io.h"

typedef struct {
    char *text;     /* the line as read */
    uint64_t line;  /* its line number */
    int has_id;
    int is_test;
} split_record;

typedef struct {
    split_record *recs;
    size_t n, cap;
    size_t bad;     /* lines skipped for not being JSON objects */
} split_set;

/* Appends the JSON object lines of lr to s (zeroed to start); blank lines
 * are ignored. A line that is not a JSON object is counted in s->bad when
 * skip_bad, else 0 is returned with "line N: not a JSON object" in err. */
int split_read(split_set *s, line_reader *lr, int skip_bad, char *err, int errlen);
/* Marks n_test (at most s->n) records as test ones: the first n_test
 * positions of a Fisher-Yates permutation from seed, so the same seed and
 * input give the same split. */
void split_pick(split_set *s, size_t n_test, uint64_t seed);
/* Writes one record, adding "id" as the first member unless present. */
void split_write_record(FILE *f, const split_record *r);
void split_free(split_set *s);

#endif
