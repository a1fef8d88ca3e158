/* tokenizer_maps.c — the vocabulary's string map and the added-token trie,
 * both open-addressing hash tables. */
#include "tokenizer_internal.h"
#include "base/cli.h"

#include <assert.h>

#include <stdlib.h>

/* Tables are filled to at most 7/8: every probe compares stored hash bits
 * first, so long probe runs stay cheap, and a small table stays in cache. */
static int too_full(size_t count, uint32_t size) { return count * 8 > (size_t)size * 7; }

static uint32_t table_size(size_t expected) {
    uint32_t size = 16;
    while (too_full(expected, size)) size *= 2;
    return size;
}

/* Keys are never empty, so len 0 marks an empty slot; the stored hash bits
 * spare most probes a visit to the blob. */
void str_map_init(str_map *m, size_t expected) {
    *m = (str_map){0};
    uint32_t size = table_size(expected);
    m->slots = xcalloc(size, sizeof *m->slots);
    m->mask = size - 1;
}

static uint32_t str_map_slot(const str_map *m, const char *s, size_t n, uint64_t h, int *found) {
    uint32_t j = (uint32_t)h & m->mask, tag = (uint32_t)(h >> 32);
    for (; m->slots[j].len; j = (j + 1) & m->mask) {
        const str_slot *e = &m->slots[j];
        if (e->hash == tag && e->len == n && memcmp(m->blob + e->off, s, n) == 0) {
            *found = 1;
            return j;
        }
    }
    *found = 0;
    return j;
}

static void str_map_grow(str_map *m) {
    str_slot *old = m->slots;
    uint32_t old_size = m->mask + 1, size = old_size * 2;
    m->slots = xcalloc(size, sizeof *m->slots);
    m->mask = size - 1;
    for (uint32_t i = 0; i < old_size; i++) {
        if (!old[i].len) continue;
        uint64_t h = tok_hash(m->blob + old[i].off, old[i].len);
        uint32_t j = (uint32_t)h & m->mask;
        while (m->slots[j].len) j = (j + 1) & m->mask;
        m->slots[j] = old[i];
    }
    free(old);
}

int str_map_put(str_map *m, const char *s, size_t n, uint32_t id) { return str_map_put_hashed(m, s, n, tok_hash(s, n), id); }

int str_map_put_hashed(str_map *m, const char *s, size_t n, uint64_t h, uint32_t id) {
    assert(n > 0 && "an empty key: its slot would read as free"); /* the loader skips them */
    if (too_full(m->count + 1, m->mask + 1)) str_map_grow(m);
    int found;
    uint32_t j = str_map_slot(m, s, n, h, &found);
    if (found) return 0;
    if (m->blob_len + n > UINT32_MAX) return -1;
    if (m->blob_len + n > m->blob_cap) {
        m->blob_cap = (m->blob_len + n) * 2;
        m->blob = xrealloc(m->blob, m->blob_cap);
    }
    memcpy(m->blob + m->blob_len, s, n);
    m->slots[j] = (str_slot){.hash = (uint32_t)(h >> 32), .off = (uint32_t)m->blob_len, .len = (uint32_t)n, .id = id};
    m->blob_len += n;
    m->count++;
    return 1;
}

long str_map_get_hashed(const str_map *m, const char *s, size_t n, uint64_t h) {
    int found;
    uint32_t j = str_map_slot(m, s, n, h, &found);
    return found ? (long)m->slots[j].id : -1;
}

long str_map_get(const str_map *m, const char *s, size_t n) { return str_map_get_hashed(m, s, n, tok_hash(s, n)); }

void str_map_prefetch(const str_map *m, uint64_t h) { __builtin_prefetch(&m->slots[(uint32_t)h & m->mask]); }

void str_map_free(str_map *m) {
    free(m->slots);
    free(m->blob);
    *m = (str_map){0};
}

/* ---- added-token trie --------------------------------------------------------- */
/* Edges live in a hash table; a trie of up to DENSE_NODES nodes (Pythia's
 * have a few dozen) also keeps them in a direct table, the fast path. */
#define DENSE_NODES 1024

void added_trie_init(added_trie *t) {
    *t = (added_trie){0};
    t->cap_nodes = 16;
    t->token = xmalloc(t->cap_nodes * sizeof *t->token);
    t->token[0] = -1;
    t->n_nodes = 1;
    t->edge_mask = 63;
    t->edge_key = xcalloc(t->edge_mask + 1, sizeof *t->edge_key);
    t->edge_child = xcalloc(t->edge_mask + 1, sizeof *t->edge_child);
    t->only_first = -1;
    t->only_prefix = -1;
    t->dense = xcalloc(256, sizeof *t->dense);
}

static uint32_t edge_slot(uint64_t key, uint32_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & mask;
}

static void edges_grow(added_trie *t) {
    uint32_t old_size = t->edge_mask + 1, size = old_size * 2;
    uint64_t *keys = xcalloc(size, sizeof *keys);
    uint32_t *children = xcalloc(size, sizeof *children);
    for (uint32_t i = 0; i < old_size; i++) {
        if (!t->edge_key[i]) continue;
        uint32_t j = edge_slot(t->edge_key[i], size - 1);
        while (keys[j]) j = (j + 1) & (size - 1);
        keys[j] = t->edge_key[i];
        children[j] = t->edge_child[i];
    }
    free(t->edge_key);
    free(t->edge_child);
    t->edge_key = keys;
    t->edge_child = children;
    t->edge_mask = size - 1;
}

static inline int64_t edge_find(const added_trie *t, uint32_t node, unsigned char byte, uint32_t *slot) {
    if (t->dense && !slot) return (int64_t)t->dense[node << 8 | byte] - 1;
    uint64_t key = ((uint64_t)node << 8 | byte) + 1;
    uint32_t j = edge_slot(key, t->edge_mask);
    for (; t->edge_key[j]; j = (j + 1) & t->edge_mask)
        if (t->edge_key[j] == key) return t->edge_child[j];
    if (slot) *slot = j;
    return -1;
}

void added_trie_add(added_trie *t, const char *s, size_t n, int32_t token) {
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        uint32_t slot;
        int64_t child = edge_find(t, node, b, &slot);
        if (child < 0) {
            if ((t->n_edges + 1) * 2 > t->edge_mask + 1) {
                edges_grow(t);
                edge_find(t, node, b, &slot);
            }
            if (t->n_nodes == t->cap_nodes) {
                t->cap_nodes *= 2;
                t->token = xrealloc(t->token, t->cap_nodes * sizeof *t->token);
            }
            child = t->n_nodes++;
            t->token[child] = -1;
            if (t->n_nodes <= DENSE_NODES) {
                t->dense = xrealloc(t->dense, (size_t)t->n_nodes * 256 * sizeof *t->dense);
                memset(t->dense + (size_t)child * 256, 0, 256 * sizeof *t->dense);
                t->dense[node << 8 | b] = (uint32_t)child + 1;
            } else {
                free(t->dense);
                t->dense = NULL;
            }
            t->edge_key[slot] = ((uint64_t)node << 8 | b) + 1;
            t->edge_child[slot] = (uint32_t)child;
            t->n_edges++;
        }
        node = (uint32_t)child;
    }
    unsigned char b0 = (unsigned char)s[0];
    t->only_first = t->n_tokens == 0 || t->only_first == b0 ? b0 : -1;
    t->first[b0] = 1;
    if (n == 1) {
        t->has_one_byte_token = 1;
        t->only_prefix = -1;
    } else {
        int prefix = b0 << 8 | (unsigned char)s[1];
        t->second[prefix >> 6] |= 1ull << (prefix & 63);
        t->only_prefix = t->n_tokens == 0 || t->only_prefix == prefix ? prefix : -1;
    }
    t->n_tokens++;
    t->token[node] = token;
}

typedef unsigned char bytes16 __attribute__((vector_size(16)));

/* The first position from i on where s holds the bytes a, b (n: none),
 * sixteen positions at a time. */
static size_t find_pair(const unsigned char *s, size_t n, size_t i, unsigned char a, unsigned char b) {
    for (; i + 17 <= n; i += 16) {
        bytes16 x, y;
        memcpy(&x, s + i, 16);
        memcpy(&y, s + i + 1, 16);
        bytes16 hit = (bytes16)((x == a) & (y == b));
        uint64_t lo, hi;
        memcpy(&lo, &hit, 8);
        memcpy(&hi, (const char *)&hit + 8, 8);
        if (lo) return i + (size_t)__builtin_ctzll(lo) / 8;
        if (hi) return i + 8 + (size_t)__builtin_ctzll(hi) / 8;
    }
    for (; i + 1 < n; i++)
        if (s[i] == a && s[i + 1] == b) return i;
    return n;
}

size_t added_trie_next(const added_trie *t, const unsigned char *s, size_t n, size_t i) {
    if (t->n_tokens == 0 || i >= n) return n;
    if (t->only_prefix >= 0) return find_pair(s, n, i, (unsigned char)(t->only_prefix >> 8), (unsigned char)t->only_prefix);
    if (t->only_first >= 0) {
        const unsigned char *p = memchr(s + i, t->only_first, n - i);
        return p ? (size_t)(p - s) : n;
    }
    while (i < n && !t->first[s[i]]) i++;
    return i;
}

size_t added_trie_match(const added_trie *t, const unsigned char *s, size_t n, size_t i, int32_t *token) {
    if (!t->has_one_byte_token) { /* most candidates fail on their second byte */
        if (i + 1 >= n) return 0;
        unsigned prefix = (unsigned)s[i] << 8 | s[i + 1];
        if (!(t->second[prefix >> 6] >> (prefix & 63) & 1)) return 0;
    }
    size_t best = 0;
    uint32_t node = 0;
    for (size_t j = i; j < n; j++) {
        int64_t child = edge_find(t, node, s[j], NULL);
        if (child < 0) break;
        node = (uint32_t)child;
        if (t->token[node] >= 0) {
            best = j + 1 - i;
            *token = t->token[node];
        }
    }
    return best;
}

void added_trie_free(added_trie *t) {
    free(t->dense);
    free(t->token);
    free(t->edge_key);
    free(t->edge_child);
    *t = (added_trie){0};
}
