/* tokenizer_bpe.c — byte-level BPE: merges by rank, with a cache of words.
 *
 * Hugging Face merges a word by popping (rank, position) from a priority
 * queue: the lowest-ranked pair, leftmost first. Short words get the same
 * result from a plain scan for that pair (no queue to maintain); long ones
 * (a megabyte of one letter is one word) use the queue, which keeps the
 * work at O(n log n). */
#include "tokenizer_internal.h"
#include "base/cli.h"

#include <stdlib.h>

#define NO_RANK UINT32_MAX
#define SCAN_MAX 64            /* longest word merged by scanning */
#define CACHE_MAX_ARENA (16u << 20)

struct bpe_merge {
    uint32_t rank, pos, id;
};

/* The merge table: open addressing with a one-byte tag per slot (0: empty),
 * so that looking up a pair that has no merge, as most lookups do, reads only
 * the small tag array instead of the 16-byte slots. */
static inline uint64_t pair_hash(uint64_t pair) { return pair * 0x9E3779B97F4A7C15ull; }

static void merges_alloc(bpe_model *m, uint32_t size) {
    m->merges = xmalloc(size * sizeof *m->merges);
    m->merge_tag = xcalloc(size, 1);
    m->merge_mask = size - 1;
}

void bpe_init(bpe_model *m, size_t n_merges) {
    *m = (bpe_model){0};
    uint32_t size = 16; /* filled to at most 7/8: the tags keep probing cheap */
    while ((size_t)size * 7 < n_merges * 8) size *= 2;
    merges_alloc(m, size);
    m->cache = xcalloc(CACHE_SLOTS, sizeof *m->cache);
}

static void merge_insert(bpe_model *m, const merge_slot *e) {
    uint64_t h = pair_hash(e->pair);
    uint32_t j = (uint32_t)(h >> 32) & m->merge_mask;
    for (; m->merge_tag[j]; j = (j + 1) & m->merge_mask)
        if (m->merges[j].pair == e->pair) break;
    if (!m->merge_tag[j]) m->n_merges++;
    m->merge_tag[j] = hash_tag(h);
    m->merges[j] = *e;
}

void bpe_add_merge(bpe_model *m, uint32_t left, uint32_t right, uint32_t rank, uint32_t id) {
    if (((size_t)m->n_merges + 1) * 8 > ((size_t)m->merge_mask + 1) * 7) {
        merge_slot *old = m->merges;
        uint8_t *old_tag = m->merge_tag;
        uint32_t old_size = m->merge_mask + 1;
        merges_alloc(m, old_size * 2);
        m->n_merges = 0;
        for (uint32_t i = 0; i < old_size; i++)
            if (old_tag[i]) merge_insert(m, &old[i]);
        free(old);
        free(old_tag);
    }
    merge_slot e = {.pair = (uint64_t)left << 32 | right, .rank = rank, .id = id};
    merge_insert(m, &e);
}

static inline const merge_slot *find_merge(const bpe_model *m, uint32_t left, uint32_t right) {
    uint64_t pair = (uint64_t)left << 32 | right, h = pair_hash(pair);
    uint8_t tag = hash_tag(h);
    for (uint32_t j = (uint32_t)(h >> 32) & m->merge_mask; m->merge_tag[j]; j = (j + 1) & m->merge_mask)
        if (m->merge_tag[j] == tag && m->merges[j].pair == pair) return &m->merges[j];
    return NULL;
}

static void scratch_reserve(bpe_model *m, size_t n) {
    if (n <= m->scratch_cap) return;
    size_t cap = m->scratch_cap ? m->scratch_cap : 256;
    while (cap < n) cap *= 2;
    m->sym = xrealloc(m->sym, cap * sizeof *m->sym);
    m->rank = xrealloc(m->rank, cap * sizeof *m->rank);
    m->next_id = xrealloc(m->next_id, cap * sizeof *m->next_id);
    m->prev = xrealloc(m->prev, cap * sizeof *m->prev);
    m->next = xrealloc(m->next, cap * sizeof *m->next);
    m->alive = xrealloc(m->alive, cap);
    m->scratch_cap = cap;
}

/* Sets rank[i]/next_id[i] for the pair sym[i], sym[i+1]. */
static inline void rank_pair(bpe_model *m, size_t i) {
    const merge_slot *e = find_merge(m, m->sym[i], m->sym[i + 1]);
    m->rank[i] = e ? e->rank : NO_RANK;
    m->next_id[i] = e ? e->id : 0;
}

/* Short words: repeatedly merge the lowest-ranked pair, leftmost first.
 * sym[0..n) holds the byte tokens; returns the number of tokens left. */
static size_t merge_by_scan(bpe_model *m, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) rank_pair(m, i);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (m->rank[i] < m->rank[best]) best = i;
        if (m->rank[best] == NO_RANK) break;
        m->sym[best] = m->next_id[best];
        memmove(m->sym + best + 1, m->sym + best + 2, (n - best - 2) * sizeof *m->sym);
        memmove(m->rank + best + 1, m->rank + best + 2, (n - best - 2) * sizeof *m->rank);
        memmove(m->next_id + best + 1, m->next_id + best + 2, (n - best - 2) * sizeof *m->next_id);
        n--;
        if (best > 0) rank_pair(m, best - 1);
        if (best + 1 < n) rank_pair(m, best);
    }
    return n;
}

/* ---- the queue: a binary min-heap on (rank, pos) ---------------------------- */
static inline int merge_before(const struct bpe_merge *a, const struct bpe_merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(bpe_model *m, size_t *len, struct bpe_merge x) {
    if (*len == m->heap_cap) {
        m->heap_cap = m->heap_cap ? m->heap_cap * 2 : 256;
        m->heap = xrealloc(m->heap, m->heap_cap * sizeof *m->heap);
    }
    size_t i = (*len)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!merge_before(&x, &m->heap[parent])) break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = x;
}

static struct bpe_merge heap_pop(bpe_model *m, size_t *len) {
    struct bpe_merge top = m->heap[0], last = m->heap[--*len];
    size_t i = 0, n = *len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && merge_before(&m->heap[child + 1], &m->heap[child])) child++;
        if (!merge_before(&m->heap[child], &last)) break;
        m->heap[i] = m->heap[child];
        i = child;
    }
    if (n > 0) m->heap[i] = last;
    return top;
}

static void push_pair(bpe_model *m, size_t *len, int32_t pos) {
    const merge_slot *e = find_merge(m, m->sym[pos], m->sym[m->next[pos]]);
    if (e) heap_push(m, len, (struct bpe_merge){e->rank, (uint32_t)pos, e->id});
}

/* Hugging Face's Word::merge_all: symbols in a linked list, a queue of
 * candidate merges, stale entries recognized by the token they would make.
 * Returns the number of tokens left, compacted into sym. */
static size_t merge_by_queue(bpe_model *m, size_t n) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        m->prev[i] = (int32_t)i - 1;
        m->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        m->alive[i] = 1;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(m, &len, (int32_t)i);
    while (len > 0) {
        struct bpe_merge top = heap_pop(m, &len);
        int32_t pos = (int32_t)top.pos, right = m->next[pos];
        if (!m->alive[pos] || right < 0) continue;
        const merge_slot *e = find_merge(m, m->sym[pos], m->sym[right]);
        if (!e || e->id != top.id) continue;
        m->sym[pos] = top.id;
        m->alive[right] = 0;
        m->next[pos] = m->next[right];
        if (m->next[right] >= 0) m->prev[m->next[right]] = pos;
        if (m->prev[pos] >= 0) push_pair(m, &len, m->prev[pos]);
        if (m->next[pos] >= 0) push_pair(m, &len, pos);
    }
    size_t out = 0;
    for (int32_t i = 0; i >= 0; i = m->next[i]) m->sym[out++] = m->sym[i];
    return out;
}

/* ---- the cache of encoded words ---------------------------------------------- */
static void cache_clear(bpe_model *m) {
    memset(m->cache, 0, CACHE_SLOTS * sizeof *m->cache);
    m->cache_count = 0;
    m->cache_arena_len = 0;
}

static void cache_store(bpe_model *m, const unsigned char *w, size_t n, uint64_t h, uint64_t head,
                        const uint32_t *ids, size_t n_ids) {
    size_t tail = n > 8 ? n - 8 : 0, need = tail + 3 + n_ids * sizeof *ids;
    if ((m->cache_count + 1) * 8 > CACHE_SLOTS * 7 || m->cache_arena_len + need > CACHE_MAX_ARENA) cache_clear(m);
    uint32_t slot;
    if (bpe_cache_find(m, w, n, h, head, &slot)) return;
    cache_slot e = {.head = head, .tag = hash_tag(h), .key_len = (uint8_t)n, .n_ids = (uint16_t)n_ids};
    if (inline_ids(&e)) {
        e.data = ids[0];
    } else {
        if (m->cache_arena_len + need > m->cache_arena_cap) {
            m->cache_arena_cap = m->cache_arena_cap ? m->cache_arena_cap * 2 : 1u << 18;
            m->cache_arena = xrealloc(m->cache_arena, m->cache_arena_cap);
        }
        size_t off = m->cache_arena_len, id_off = (off + tail + 3) & ~(size_t)3;
        memcpy(m->cache_arena + off, w + 8 * (tail > 0), tail);
        memcpy(m->cache_arena + id_off, ids, n_ids * sizeof *ids);
        e.data = (uint32_t)off;
        m->cache_arena_len = id_off + n_ids * sizeof *ids;
    }
    m->cache[slot] = e;
    m->cache_count++;
}

void bpe_encode_uncached(bpe_model *m, const unsigned char *w, size_t n, token_ids *out) {
    if (m->whole_words) { /* ignore_merges: the vocabulary first, then the cache */
        m->spelling.len = 0;
        for (size_t i = 0; i < n; i++) utf8_buf_append(&m->spelling, m->byte_char[w[i]], m->byte_char_len[w[i]]);
        long id = str_map_get(m->whole_words, m->spelling.data, m->spelling.len);
        if (id >= 0) {
            token_ids_push(out, (uint32_t)id);
            return;
        }
        if (bpe_encode_cached(m, w, n, out)) return;
    }
    scratch_reserve(m, n);
    for (size_t i = 0; i < n; i++) m->sym[i] = m->byte_id[w[i]];
    size_t left = n <= SCAN_MAX && !m->queue_only ? merge_by_scan(m, n) : merge_by_queue(m, n);
    ids_append(out, m->sym, left);
    if (n <= CACHE_MAX_WORD) {
        uint64_t head = word_head(w, n);
        cache_store(m, w, n, word_hash(w, n, head), head, m->sym, left);
    }
}

void bpe_free(bpe_model *m) {
    free(m->merges);
    free(m->merge_tag);
    free(m->cache);
    free(m->cache_arena);
    free(m->sym);
    free(m->rank);
    free(m->next_id);
    free(m->prev);
    free(m->next);
    free(m->alive);
    free(m->heap);
    utf8_buf_free(&m->spelling);
    *m = (bpe_model){0};
}
