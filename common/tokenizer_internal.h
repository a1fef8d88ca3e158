/* tokenizer_internal.h — the parts of the tokenizer, shared by its files:
 * tokenizer.c (loading, the encode pipeline, decoding), tokenizer_bpe.c (the
 * merges), tokenizer_pretok.c (the GPT-2 regex), tokenizer_maps.c (hash maps
 * and the added-token trie). Not for use outside them. */
#ifndef TUNEPIPE_TOKENIZER_INTERNAL_H
#define TUNEPIPE_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

#include <stdint.h>
#include <string.h>

static inline uint64_t tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

/* ---- string -> id (the vocabulary) ---------------------------------------- */
typedef struct {
    uint64_t hash;
    uint32_t off, len, id, used;
} str_slot;

typedef struct {
    str_slot *slots;
    uint32_t mask, count;
    char *blob;
    size_t blob_len, blob_cap;
} str_map;

void str_map_init(str_map *m, size_t expected);
/* Maps s to id; a key already present keeps its first id, returns 0. */
int str_map_put(str_map *m, const char *s, size_t n, uint32_t id);
long str_map_get(const str_map *m, const char *s, size_t n);
void str_map_free(str_map *m);

/* ---- added tokens: leftmost-longest matching ------------------------------ */
typedef struct {
    int32_t *token;          /* per node: the token ending there, or -1 */
    uint32_t n_nodes, cap_nodes;
    uint64_t *edge_key;      /* (node << 8 | byte) + 1; 0 is empty */
    uint32_t *edge_child;
    uint32_t edge_mask, n_edges;
    uint32_t n_tokens;
    unsigned char first[256]; /* bytes some token begins with */
    int only_first;           /* the byte all tokens begin with, or -1 */
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

typedef struct {
    uint32_t off;                /* in cache_arena: the word's bytes, then its ids */
    uint16_t key_len, n_ids;
} cache_slot;

typedef struct {
    uint32_t byte_id[256];       /* the token of each single byte */
    merge_slot *merges;
    uint8_t *merge_tag;          /* per slot: 0 empty, else 0x80 | 7 bits of the hash */
    uint32_t merge_mask, n_merges;
    /* Two merges yield the same token: only Hugging Face's queue order then
     * gives its results (its stale-entry check compares results). */
    int queue_only;
    /* ignore_merges: a word found in the vocabulary is one token. */
    const str_map *whole_words;
    char byte_char[256][3];      /* byte -> its byte-level character (UTF-8) */
    unsigned char byte_char_len[256];
    /* words already encoded; tags as in the merge table */
    cache_slot *cache;
    uint8_t *cache_tag;
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
/* Appends the tokens of the word w (raw bytes, n >= 1). */
void bpe_encode_word(bpe_model *m, const unsigned char *w, size_t n, token_ids *out);
void bpe_free(bpe_model *m);

/* ---- pre-tokenizer ---------------------------------------------------------- */
/* End of the GPT-2 regex match that starts at i (< n) of the valid UTF-8
 * s[0..n): 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
size_t gpt2_piece_end(const unsigned char *s, size_t n, size_t i);

#endif
