/* tokenizer_internal.h — the parts of the tokenizer, shared by its files:
 * tokenizer.c (loading, the encode pipeline, decoding), tokenizer_bpe.c (the
 * merges), tokenizer_pretok.c (the GPT-2 regex), tokenizer_maps.c (hash maps
 * and the added-token trie). Not for use outside them. */
#ifndef TUNEPIPE_TOKENIZER_INTERNAL_H
#define TUNEPIPE_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

#include <stdint.h>
#include <string.h>

static inline uint64_t hash_finish(uint64_t h) {
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

/* A hash of n bytes. The tail is read with overlapping loads rather than
 * copied byte by byte (which would stall on store forwarding). */
static inline uint64_t tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull), w = 0;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, s + i, 8);
            h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
            h ^= h >> 31;
        }
        if (i == n) return hash_finish(h);
        memcpy(&w, s + n - 8, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        w = (uint64_t)a << 32 | b;
    } else if (n > 0) {
        w = (uint64_t)s[0] | (uint64_t)s[n / 2] << 8 | (uint64_t)s[n - 1] << 16;
    }
    return hash_finish((h ^ w) * 0x94D049BB133111EBull);
}

/* A one-byte tag of a hash for a table slot; 0 marks an empty slot. */
static inline uint8_t hash_tag(uint64_t h) { return (uint8_t)(0x80 | (h >> 57)); }

/* ---- string -> id (the vocabulary) ---------------------------------------- */
typedef struct {
    uint32_t hash;           /* high bits of the key's hash */
    uint32_t off, len, id;   /* the key is blob[off .. off+len); len 0: empty slot */
} str_slot;

typedef struct {
    str_slot *slots;
    uint32_t mask, count;
    char *blob;
    size_t blob_len, blob_cap;
} str_map;

void str_map_init(str_map *m, size_t expected);
/* Maps s (n > 0) to id and returns 1; a key already present keeps its
 * first id, returns 0; -1 when the keys would pass 4 GB. */
int str_map_put(str_map *m, const char *s, size_t n, uint32_t id);
long str_map_get(const str_map *m, const char *s, size_t n);
/* The same with the key's tok_hash given; and a hint that a key will be
 * looked up or added soon (loading does so for many keys, each a likely cache
 * miss). */
long str_map_get_hashed(const str_map *m, const char *s, size_t n, uint64_t h);
int str_map_put_hashed(str_map *m, const char *s, size_t n, uint64_t h, uint32_t id);
void str_map_prefetch(const str_map *m, uint64_t h);
void str_map_free(str_map *m);

/* ---- added tokens: leftmost-longest matching ------------------------------ */
typedef struct {
    int32_t *token;          /* per node: the token ending there, or -1 */
    uint32_t n_nodes, cap_nodes;
    uint64_t *edge_key;      /* (node << 8 | byte) + 1; 0 is empty */
    uint32_t *edge_child;
    uint32_t edge_mask, n_edges;
    uint32_t *dense;         /* small tries: child + 1 by (node << 8 | byte), 0 none */
    uint32_t n_tokens;
    unsigned char first[256]; /* bytes some token begins with */
    int only_first;           /* the byte all tokens begin with, or -1 */
    int only_prefix;          /* the two bytes all tokens begin with (b0 << 8 | b1), or -1 */
    int has_one_byte_token;
    uint64_t second[65536 / 64]; /* two-byte prefixes of tokens */
} added_trie;

void added_trie_init(added_trie *t);
void added_trie_add(added_trie *t, const char *s, size_t n, int32_t token);
/* The first position from i on where a token may begin (n: none). */
size_t added_trie_next(const added_trie *t, const unsigned char *s, size_t n, size_t i);
/* Length of the longest token that s[i..n) begins with (0: none), *token it. */
size_t added_trie_match(const added_trie *t, const unsigned char *s, size_t n, size_t i, int32_t *token);
void added_trie_free(added_trie *t);

/* ---- BPE ------------------------------------------------------------------ */
typedef struct {
    uint64_t pair;   /* left id << 32 | right id */
    uint32_t rank, id;
} merge_slot;

/* A cached word, in one 16-byte slot: short words (the most) are compared
 * and answered from the slot alone. */
typedef struct {
    uint64_t head;               /* the word's first 8 bytes, zero-padded */
    uint8_t tag;                 /* 0: empty slot, else hash_tag() */
    uint8_t key_len;
    uint16_t n_ids;
    uint32_t data;               /* the id when there is one and key_len <= 8; else
                                    where the bytes after the 8th, then the ids, are
                                    in cache_arena */
} cache_slot;

typedef struct {
    uint32_t byte_id[256];       /* the token of each single byte */
    merge_slot *merges;
    uint8_t *merge_tag;          /* per slot: 0 empty, else hash_tag() */
    uint32_t merge_mask, n_merges;
    /* Two merges yield the same token: only Hugging Face's queue order then
     * gives its results (its stale-entry check compares results). */
    int queue_only;
    /* ignore_merges: a word found in the vocabulary is one token. */
    const str_map *whole_words;
    char byte_char[256][3];      /* byte -> its byte-level character (UTF-8) */
    unsigned char byte_char_len[256];
    /* words already encoded */
    cache_slot *cache;
    uint32_t cache_count;
    unsigned char *cache_arena;
    size_t cache_arena_len, cache_arena_cap;
    /* scratch */
    uint32_t *sym, *rank, *next_id;
    int32_t *prev, *next;
    unsigned char *alive;
    struct bpe_merge *heap;
    size_t scratch_cap, heap_cap;
    utf8_buf spelling;
} bpe_model;

void bpe_init(bpe_model *m, size_t n_merges);
/* Adds a merge; a pair given twice keeps the later rank, as in Hugging Face. */
void bpe_add_merge(bpe_model *m, uint32_t left, uint32_t right, uint32_t rank, uint32_t id);
/* Appends the tokens of w without looking in the cache first (unless the
 * vocabulary comes first), and caches them. */
void bpe_encode_uncached(bpe_model *m, const unsigned char *w, size_t n, token_ids *out);
void bpe_free(bpe_model *m);

/* The hot path, inline: single bytes and words seen before. */
#define CACHE_SLOTS (1u << 16)   /* emptied when 7/8 full */
#define CACHE_MAX_WORD 255       /* longer words are not cached */

void token_ids_grow(token_ids *v, size_t extra);

static inline void ids_append(token_ids *out, const uint32_t *ids, size_t n) {
    if (out->n + n > out->cap) token_ids_grow(out, n);
    for (size_t i = 0; i < n; i++) out->ids[out->n + i] = ids[i];
    out->n += n;
}

/* memcmp(a, b, n) == 0 for the short keys of the cache, without a call. */
static inline int same_bytes(const unsigned char *a, const unsigned char *b, size_t n) {
    uint64_t x, y;
    for (; n >= 8; a += 8, b += 8, n -= 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
    }
    for (; n > 0; n--)
        if (*a++ != *b++) return 0;
    return 1;
}

/* The first min(n, 8) bytes of w, zero-padded, read without a byte loop. */
static inline uint64_t word_head(const unsigned char *w, size_t n) {
    uint64_t head = 0;
    if (n >= 8) {
        memcpy(&head, w, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, w, 4);
        memcpy(&b, w + n - 4, 4);
        head = a | (uint64_t)b << (8 * (n - 4));
    } else if (n >= 2) {
        uint16_t a;
        memcpy(&a, w, 2);
        head = a | (uint64_t)(n == 3 ? w[2] : 0) << 16;
    } else if (n == 1) {
        head = w[0];
    }
    return head;
}

/* The cache's hash of a word: a word of up to 8 bytes is all in its head. */
static inline uint64_t word_hash(const unsigned char *w, size_t n, uint64_t head) {
    if (n > 8) return tok_hash(w, n);
    return hash_finish((head ^ (n * 0xFF51AFD7ED558CCDull)) * 0x94D049BB133111EBull);
}

static inline int inline_ids(const cache_slot *e) { return e->n_ids == 1 && e->key_len <= 8; }

static inline const uint32_t *cached_ids(const bpe_model *m, const cache_slot *e) {
    if (inline_ids(e)) return &e->data;
    size_t tail = e->key_len > 8 ? e->key_len - 8u : 0;
    return (const uint32_t *)(m->cache_arena + ((e->data + tail + 3) & ~(size_t)3));
}

/* The slot holding w, or (returning NULL) the empty slot where it would go. */
static inline const cache_slot *bpe_cache_find(const bpe_model *m, const unsigned char *w, size_t n, uint64_t h,
                                               uint64_t head, uint32_t *slot) {
    uint8_t tag = hash_tag(h);
    uint32_t j = (uint32_t)h & (CACHE_SLOTS - 1);
    for (; m->cache[j].tag; j = (j + 1) & (CACHE_SLOTS - 1)) {
        const cache_slot *e = &m->cache[j];
        if (e->tag == tag && e->head == head && e->key_len == n &&
            (n <= 8 || same_bytes(m->cache_arena + e->data, w + 8, n - 8)))
            return e;
    }
    *slot = j;
    return NULL;
}

/* Appends the cached tokens of w; 0 when w is not in the cache. */
static inline __attribute__((always_inline)) int bpe_encode_cached(const bpe_model *m, const unsigned char *w,
                                                                   size_t n, token_ids *out) {
    if (n > CACHE_MAX_WORD) return 0;
    uint32_t slot;
    uint64_t head = word_head(w, n);
    const cache_slot *hit = bpe_cache_find(m, w, n, word_hash(w, n, head), head, &slot);
    if (!hit) return 0;
    ids_append(out, cached_ids(m, hit), hit->n_ids);
    return 1;
}

/* Appends the tokens of the word w (raw bytes, n >= 1). */
static inline __attribute__((always_inline)) void bpe_encode_word(bpe_model *m, const unsigned char *w, size_t n,
                                                                   token_ids *out) {
    if (n == 1) {
        ids_append(out, &m->byte_id[w[0]], 1);
        return;
    }
    if (!m->whole_words && bpe_encode_cached(m, w, n, out)) return;
    bpe_encode_uncached(m, w, n, out);
}

/* ---- pre-tokenizer ---------------------------------------------------------- */
/* Splits the valid UTF-8 s[0..n) by the GPT-2 regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * from offset start: writes the end offsets of up to max matches to ends
 * and returns how many (0 only when start == n). */
size_t gpt2_split(const unsigned char *s, size_t n, size_t start, size_t *ends, size_t max);

#endif
