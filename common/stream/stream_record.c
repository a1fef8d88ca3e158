/* stream_record.c — the records a token stream carries; see stream.h. */
#include "stream.h"
#include "base/cli.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void segment_clear(segment *s) {
    s->n = 0;
    s->pad = s->trunc = 0;
    s->pad_side = s->trunc_side = SIDE_NONE;
}

void segment_reserve(segment *s, uint32_t n) {
    if (n <= s->cap) return;
    uint32_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap = cap > UINT32_MAX / 2 ? n : cap * 2;
    s->ids = xrealloc(s->ids, (size_t)cap * sizeof *s->ids);
    s->cap = cap;
}

void segment_push(segment *s, uint32_t id) {
    segment_reserve(s, s->n + 1);
    s->ids[s->n++] = id;
}

void segment_append(segment *s, const uint32_t *ids, uint32_t n) {
    if (n == 0) return; /* ids may be NULL then */
    segment_reserve(s, s->n + n);
    memcpy(s->ids + s->n, ids, (size_t)n * sizeof *ids);
    s->n += n;
}

const uint32_t *segment_content(const segment *s, uint32_t *n) {
    *n = s->n - s->pad;
    return s->pad_side == SIDE_LEFT ? s->ids + s->pad : s->ids;
}

void record_clear(record *r) {
    r->id = 0;
    r->nseg = 0;
}

void record_free(record *r) {
    for (int i = 0; i < STREAM_MAX_SEGMENTS; i++) free(r->seg[i].ids);
    memset(r, 0, sizeof *r);
}

segment *record_find(record *r, const char *name) {
    for (int i = 0; i < r->nseg; i++)
        if (strcmp(r->seg[i].name, name) == 0) return &r->seg[i];
    return NULL;
}

segment *record_segment(record *r, const char *name) {
    segment *s = record_find(r, name);
    if (s) return s;
    if (r->nseg == STREAM_MAX_SEGMENTS) return NULL;
    assert(strlen(name) <= STREAM_MAX_NAME && "segment names are the code's or the reader's, checked");
    s = &r->seg[r->nseg++];
    strcpy(s->name, name);
    segment_clear(s);
    return s;
}

void record_remove(record *r, const char *name) {
    segment *s = record_find(r, name);
    if (!s) return;
    /* Keep the buffers of every slot: rotate the removed one to the end. */
    segment removed = *s;
    int i = (int)(s - r->seg);
    memmove(&r->seg[i], &r->seg[i + 1], (size_t)(r->nseg - i - 1) * sizeof *s);
    r->seg[--r->nseg] = removed;
}
