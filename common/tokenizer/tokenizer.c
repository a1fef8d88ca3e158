/* tokenizer.c — loading tokenizer.json, the encode pipeline, decoding.
 *
 * Encoding follows Hugging Face tokenizers 0.23 stage by stage:
 *   1. added tokens with normalized:false are split out of the raw text
 *      (leftmost-longest);
 *   2. each remaining piece is normalized (NFC) on its own;
 *   3. added tokens with normalized:true are split out of the normalized
 *      pieces;
 *   4. each remaining piece is pre-tokenized (ByteLevel: optional prefix
 *      space, the GPT-2 regex) and each word is BPE-merged over its bytes. */
#include "tokenizer.h"
#include "tokenizer_internal.h"
#include "base/cli.h"
#include "utf8_json.h"
#include "utf8_nfc.h"

#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t id;
    int special;
} added_token;

struct tokenizer {
    bpe_model bpe;
    str_map vocab;            /* byte-level spelling -> id */
    str_map added_ids;        /* added token content -> id */
    int nfc, add_prefix_space, use_regex;
    int special_as_text;
    added_token *added;
    size_t n_added;
    added_trie raw_trie;      /* normalized:false tokens, matched on raw text */
    added_trie norm_trie;     /* normalized:true tokens, matched after NFC */
    /* decoding: the bytes of each id */
    uint32_t id_limit;
    uint32_t *dec_off, *dec_len;
    unsigned char *dec_flags;
    char *dec_bytes;
    /* scratch */
    utf8_buf normalized, prefixed;
};

enum { DEC_KNOWN = 1, DEC_SPECIAL = 2 };

void token_ids_grow(token_ids *v, size_t extra) {
    size_t cap = v->cap ? v->cap : 256;
    while (cap < v->n + extra) cap *= 2;
    v->ids = xrealloc(v->ids, cap * sizeof *v->ids);
    v->cap = cap;
}

void token_ids_push(token_ids *v, uint32_t id) { ids_append(v, &id, 1); }

void token_ids_free(token_ids *v) {
    free(v->ids);
    *v = (token_ids){0};
}

/* ---- byte-level characters ------------------------------------------------------ */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the others (controls, space, soft hyphen...) for U+0100 onwards in order. */
static uint32_t byte_to_char(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    uint32_t n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) n++;
    return 256 + n;
}

#define CHAR_BYTE_LIMIT 324 /* byte-level characters are below this */

/* Appends what the ByteLevel decoder makes of one token's string: its bytes
 * when every character is a byte-level one, else the string unchanged. */
static void token_bytes(const int *char_byte, const char *tok, size_t n, utf8_buf *out) {
    size_t start = out->len;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode((const unsigned char *)tok + i, &cp);
        if (cp >= CHAR_BYTE_LIMIT || char_byte[cp] < 0) {
            out->len = start;
            utf8_buf_append(out, tok, n);
            return;
        }
        char b = (char)char_byte[cp];
        utf8_buf_append(out, &b, 1);
    }
}

/* ---- loading ---------------------------------------------------------------------- */

typedef struct {
    char *err;
    size_t errlen;
} load_ctx;

static int fail(load_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(load_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int is_null_or_absent(const cJSON *x) { return !x || cJSON_IsNull(x); }

static const char *type_of(const cJSON *obj) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int flag(const cJSON *obj, const char *name, int dflt) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsBool(x) ? cJSON_IsTrue(x) : dflt;
}

static int check_components(tokenizer *t, const cJSON *root, load_ctx *c) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!is_null_or_absent(norm)) {
        const char *type = type_of(norm);
        if (!type || strcmp(type, "NFC") != 0)
            return fail(c, "normalizer %s is not supported (only NFC or none)", type ? type : "(untyped)");
        t->nfc = 1;
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const char *pre_type = is_null_or_absent(pre) ? "none" : type_of(pre);
    if (!pre_type || strcmp(pre_type, "ByteLevel") != 0)
        return fail(c, "pre_tokenizer %s is not supported (only ByteLevel)", pre_type ? pre_type : "(untyped)");
    t->add_prefix_space = flag(pre, "add_prefix_space", 1);
    t->use_regex = flag(pre, "use_regex", 1);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *dec_type = is_null_or_absent(dec) ? "none" : type_of(dec);
    if (!dec_type || strcmp(dec_type, "ByteLevel") != 0)
        return fail(c, "decoder %s is not supported (only ByteLevel)", dec_type ? dec_type : "(untyped)");
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (!is_null_or_absent(post)) {
        const char *type = type_of(post);
        if (!type || strcmp(type, "ByteLevel") != 0)
            return fail(c, "post_processor %s is not supported (only ByteLevel or none)", type ? type : "(untyped)");
    }
    if (!is_null_or_absent(cJSON_GetObjectItemCaseSensitive(root, "truncation")))
        return fail(c, "truncation is not supported (it must be null)");
    if (!is_null_or_absent(cJSON_GetObjectItemCaseSensitive(root, "padding")))
        return fail(c, "padding is not supported (it must be null)");
    return 0;
}

static int check_model_options(tokenizer *t, const cJSON *model, load_ctx *c) {
    const char *type = type_of(model);
    if (!type || strcmp(type, "BPE") != 0) return fail(c, "model %s is not supported (only BPE)", type ? type : "(untyped)");
    bpe_init(&t->bpe, (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(model, "merges")));
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!is_null_or_absent(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return fail(c, "BPE dropout is not supported");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (!is_null_or_absent(x) && !(cJSON_IsString(x) && x->valuestring[0] == 0))
            return fail(c, "BPE %s is not supported", affixes[i]);
    }
    if (flag(model, "byte_fallback", 0)) return fail(c, "BPE byte_fallback is not supported");
    if (flag(model, "ignore_merges", 0)) t->bpe.whole_words = &t->vocab;
    return 0;
}

#define MERGE_BATCH 16 /* entries whose hash-table slots are fetched together */

/* Ids must be below the number of tokens the file lists (vocabulary and
 * added tokens): the decoding tables are as long as the largest id, and a
 * real vocabulary numbers its tokens without gaps. */
static int load_vocab(tokenizer *t, const cJSON *root, const cJSON *model, load_ctx *c) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return fail(c, "model.vocab is not an object");
    size_t n_vocab = (size_t)cJSON_GetArraySize(vocab);
    double id_bound = (double)n_vocab + cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    str_map_init(&t->vocab, n_vocab);
    /* A batch at a time, prefetching the slots, as in load_merges. */
    const cJSON *e = vocab->child;
    while (e) {
        const cJSON *batch[MERGE_BATCH];
        size_t len[MERGE_BATCH];
        uint64_t hash[MERGE_BATCH];
        int n = 0;
        for (; e && n < MERGE_BATCH; e = e->next, n++) {
            double id = cJSON_IsNumber(e) ? e->valuedouble : -1;
            if (id >= id_bound)
                return fail(c, "model.vocab: token \"%s\" has id %.0f, not below the number of tokens listed (%.0f)",
                            e->string, id, id_bound);
            if (id < 0 || id != (double)(uint32_t)id) return fail(c, "model.vocab: bad id for token \"%s\"", e->string);
            len[n] = strlen(e->string);
            if (len[n] == 0) return fail(c, "model.vocab: an empty token");
            if (utf8_valid_prefix(e->string, len[n]) != len[n]) return fail(c, "model.vocab: a token is not valid UTF-8");
            batch[n] = e;
            hash[n] = tok_hash(e->string, len[n]);
            str_map_prefetch(&t->vocab, hash[n]);
        }
        for (int i = 0; i < n; i++) {
            uint32_t id = (uint32_t)batch[i]->valuedouble;
            /* Hugging Face would take the last id of a token listed twice; such a
             * file is refused, as for added tokens. */
            int added = str_map_put_hashed(&t->vocab, batch[i]->string, len[i], hash[i], id);
            if (added < 0) return fail(c, "vocabulary too large");
            if (!added) return fail(c, "model.vocab: token \"%s\" is listed twice", batch[i]->string);
            if (id >= t->id_limit) t->id_limit = id + 1;
        }
    }
    for (unsigned b = 0; b < 256; b++) {
        char ch[4];
        size_t n = utf8_encode(byte_to_char(b), ch);
        memcpy(t->bpe.byte_char[b], ch, n);
        t->bpe.byte_char_len[b] = (unsigned char)n;
        long id = str_map_get(&t->vocab, ch, n);
        /* Bytes that never occur in UTF-8 text may be missing (Pythia's lack them). */
        int in_utf8 = b != 0xC0 && b != 0xC1 && b < 0xF5;
        if (id < 0 && in_utf8) return fail(c, "model.vocab lacks the byte-level token of byte 0x%02X", b);
        t->bpe.byte_id[b] = id < 0 ? UINT32_MAX : (uint32_t)id;
    }
    return 0;
}

/* Splits a merge ("a b", or ["a", "b"] in newer files) into its two parts. */
static int merge_parts(const cJSON *m, const char **a, size_t *na, const char **b, size_t *nb) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *space = strchr(s, ' ');
        if (!space || strchr(space + 1, ' ')) return -1;
        *a = s;
        *na = (size_t)(space - s);
        *b = space + 1;
        *nb = strlen(space + 1);
        return 0;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring;
        *na = strlen(*a);
        *b = m->child->next->valuestring;
        *nb = strlen(*b);
        return 0;
    }
    return -1;
}

/* Merges are resolved a batch at a time: the hash-table slots of a batch's
 * tokens are prefetched before any is looked up, so the cache misses overlap. */
static int load_merges(tokenizer *t, const cJSON *model, load_ctx *c) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) return fail(c, "model.merges is not an array");
    /* Token ids made by merges, to notice one made twice. */
    unsigned char *made = xcalloc(t->id_limit, 1);
    struct {
        const char *part[2];
        size_t len[2], joined_off;
        uint64_t hash[3];    /* left, right, joined */
    } batch[MERGE_BATCH];
    utf8_buf joined = {0};
    uint32_t rank = 0;
    int rc = 0;
    const cJSON *m = merges->child;
    while (m && !rc) {
        int n = 0;
        joined.len = 0;
        for (; m && n < MERGE_BATCH; m = m->next, n++) {
            if (merge_parts(m, &batch[n].part[0], &batch[n].len[0], &batch[n].part[1], &batch[n].len[1])) {
                rc = fail(c, "model.merges[%u] is not a pair of tokens", rank + (uint32_t)n);
                break;
            }
            batch[n].joined_off = joined.len;
            for (int k = 0; k < 2; k++) utf8_buf_append(&joined, batch[n].part[k], batch[n].len[k]);
        }
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < 2; k++) batch[i].hash[k] = tok_hash(batch[i].part[k], batch[i].len[k]);
            batch[i].hash[2] = tok_hash(joined.data + batch[i].joined_off, batch[i].len[0] + batch[i].len[1]);
            for (int k = 0; k < 3; k++) str_map_prefetch(&t->vocab, batch[i].hash[k]);
        }
        for (int i = 0; i < n && !rc; i++, rank++) {
            long left = str_map_get_hashed(&t->vocab, batch[i].part[0], batch[i].len[0], batch[i].hash[0]);
            long right = str_map_get_hashed(&t->vocab, batch[i].part[1], batch[i].len[1], batch[i].hash[1]);
            long id = str_map_get_hashed(&t->vocab, joined.data + batch[i].joined_off, batch[i].len[0] + batch[i].len[1],
                                         batch[i].hash[2]);
            if (left < 0 || right < 0 || id < 0) {
                rc = fail(c, "model.merges[%u]: \"%.*s\" + \"%.*s\": a token missing from the vocabulary", rank,
                          (int)batch[i].len[0], batch[i].part[0], (int)batch[i].len[1], batch[i].part[1]);
                break;
            }
            if (made[id]) t->bpe.queue_only = 1;
            made[id] = 1;
            bpe_add_merge(&t->bpe, (uint32_t)left, (uint32_t)right, rank, (uint32_t)id);
        }
    }
    free(made);
    utf8_buf_free(&joined);
    return rc;
}

static int string_member(const cJSON *obj, const char *name, const char **out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(x)) return -1;
    *out = x->valuestring;
    return 0;
}

/* Added tokens get their ids the way Hugging Face assigns them (the vocabulary's
 * id for a token it has, else the next free id); the file's ids must agree.
 * Hugging Face would let a token listed twice take the settings of the last
 * listing; such a file is refused rather than half-followed. */
static int load_added_tokens(tokenizer *t, const cJSON *root, load_ctx *c) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    str_map_init(&t->added_ids, 64);
    added_trie_init(&t->raw_trie);
    added_trie_init(&t->norm_trie);
    if (is_null_or_absent(list)) return 0;
    if (!cJSON_IsArray(list)) return fail(c, "added_tokens is not an array");
    t->added = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *t->added);
    uint32_t next_id = t->vocab.count; /* the model's vocabulary size, as Hugging Face counts it */
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, list) {
        const char *content;
        const cJSON *id_item = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsObject(e) || string_member(e, "content", &content) || !cJSON_IsNumber(id_item))
            return fail(c, "added_tokens[%d] lacks a content or an id", i);
        i++;
        if (!content[0]) continue; /* Hugging Face ignores empty ones */
        size_t len = strlen(content);
        if (utf8_valid_prefix(content, len) != len) return fail(c, "added_tokens[%d] is not valid UTF-8", i - 1);
        if (flag(e, "single_word", 0) || flag(e, "lstrip", 0) || flag(e, "rstrip", 0))
            return fail(c, "added token \"%s\": single_word, lstrip and rstrip are not supported", content);
        if (str_map_get(&t->added_ids, content, len) >= 0)
            return fail(c, "added token \"%s\" is listed twice", content);
        long id = str_map_get(&t->vocab, content, len);
        if (id < 0) id = next_id++;
        if ((double)id != id_item->valuedouble)
            return fail(c, "added token \"%s\" has id %g, but Hugging Face would give it %ld", content,
                        id_item->valuedouble, id);
        if ((uint32_t)id >= t->id_limit) t->id_limit = (uint32_t)id + 1;
        if (str_map_put(&t->added_ids, content, len, (uint32_t)id) < 0) return fail(c, "vocabulary too large");
        int normalized = flag(e, "normalized", !flag(e, "special", 0));
        t->added[t->n_added] = (added_token){.id = (uint32_t)id, .special = flag(e, "special", 0)};
        if (normalized) {
            utf8_buf nfc = {0};
            if (t->nfc && utf8_nfc(content, len, &nfc))
                added_trie_add(&t->norm_trie, nfc.data, nfc.len, (int32_t)t->n_added);
            else
                added_trie_add(&t->norm_trie, content, len, (int32_t)t->n_added);
            utf8_buf_free(&nfc);
        } else {
            added_trie_add(&t->raw_trie, content, len, (int32_t)t->n_added);
        }
        t->n_added++;
    }
    return 0;
}

/* The bytes each id decodes to, and whether it is special. Hugging Face looks
 * an id up among added tokens first (a normalized one by its normalized form),
 * then in the vocabulary; a special token is skipped by its string. */
static void build_decoder(tokenizer *t, const cJSON *root) {
    int char_byte[CHAR_BYTE_LIMIT];
    for (int i = 0; i < CHAR_BYTE_LIMIT; i++) char_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) char_byte[byte_to_char(b)] = (int)b;

    const char **token_str = xcalloc(t->id_limit, sizeof *token_str);
    size_t *token_len = xcalloc(t->id_limit, sizeof *token_len);
    for (uint32_t j = 0; j <= t->vocab.mask; j++) {
        const str_slot *e = &t->vocab.slots[j];
        if (!e->len) continue;
        token_str[e->id] = t->vocab.blob + e->off;
        token_len[e->id] = e->len;
    }
    str_map specials;
    str_map_init(&specials, 16);
    utf8_buf *norm_forms = xcalloc(t->n_added + 1, sizeof *norm_forms);
    const cJSON *e;
    size_t k = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        const char *content = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        if (!content[0]) continue;
        size_t len = strlen(content);
        uint32_t id = t->added[k].id;
        token_str[id] = content;
        token_len[id] = len;
        int normalized = flag(e, "normalized", !flag(e, "special", 0));
        if (normalized && t->nfc && utf8_nfc(content, len, &norm_forms[k])) {
            token_str[id] = norm_forms[k].data;
            token_len[id] = norm_forms[k].len;
        }
        if (t->added[k].special) str_map_put(&specials, content, len, id); /* fits: added_ids held it */
        k++;
    }

    utf8_buf bytes = {0};
    t->dec_off = xcalloc(t->id_limit, sizeof *t->dec_off);
    t->dec_len = xcalloc(t->id_limit, sizeof *t->dec_len);
    t->dec_flags = xcalloc(t->id_limit, 1);
    for (uint32_t id = 0; id < t->id_limit; id++) {
        if (!token_str[id]) continue;
        t->dec_off[id] = (uint32_t)bytes.len;
        token_bytes(char_byte, token_str[id], token_len[id], &bytes);
        t->dec_len[id] = (uint32_t)(bytes.len - t->dec_off[id]);
        t->dec_flags[id] = DEC_KNOWN;
        if (str_map_get(&specials, token_str[id], token_len[id]) >= 0) t->dec_flags[id] |= DEC_SPECIAL;
    }
    t->dec_bytes = bytes.data;
    for (size_t i = 0; i < k; i++) utf8_buf_free(&norm_forms[i]);
    free(norm_forms);
    str_map_free(&specials);
    free(token_str);
    free(token_len);
}

static char *read_whole(const char *path, size_t *len, load_ctx *c) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(c, "%s", strerror(errno));
        return NULL;
    }
    utf8_buf b = {0};
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) utf8_buf_append(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fail(c, "read error");
        utf8_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return utf8_buf_cstr(&b);
}

tokenizer *tokenizer_open(const char *path, char *err, size_t errlen) {
    load_ctx c = {err, errlen};
    size_t len;
    char *text = read_whole(path, &len, &c);
    if (!text) return NULL;
    /* cJSON would cut a token at a \u0000 escape (or a malformed \u one) and
     * load another token. */
    if (json_has_nul_escape(text, len)) {
        free(text);
        fail(&c, "a \\u0000 or malformed \\u escape in a string: tokens holding U+0000 are not supported");
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        fail(&c, "not a JSON object (is it a tokenizer.json?)");
        return NULL;
    }
    tokenizer *t = xcalloc(1, sizeof *t);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    int rc = check_components(t, root, &c);
    if (!rc && !cJSON_IsObject(model)) rc = fail(&c, "no model");
    if (!rc) rc = check_model_options(t, model, &c);
    if (!rc) rc = load_vocab(t, root, model, &c);
    if (!rc) rc = load_merges(t, model, &c);
    if (!rc) rc = load_added_tokens(t, root, &c);
    if (!rc) build_decoder(t, root);
    cJSON_Delete(root);
    if (rc) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    bpe_free(&t->bpe);
    str_map_free(&t->vocab);
    str_map_free(&t->added_ids);
    added_trie_free(&t->raw_trie);
    added_trie_free(&t->norm_trie);
    free(t->added);
    free(t->dec_off);
    free(t->dec_len);
    free(t->dec_flags);
    free(t->dec_bytes);
    utf8_buf_free(&t->normalized);
    utf8_buf_free(&t->prefixed);
    free(t);
}

void tokenizer_set_special_as_text(tokenizer *t, int on) { t->special_as_text = on; }

uint32_t tokenizer_id_limit(const tokenizer *t) { return t->id_limit; }

long tokenizer_token_id(const tokenizer *t, const char *content) {
    size_t n = strlen(content);
    long id = str_map_get(&t->added_ids, content, n);
    return id >= 0 ? id : str_map_get(&t->vocab, content, n);
}

/* ---- encoding ---------------------------------------------------------------------- */

/* Stage 4: pre-tokenize a piece and merge each word. */
static void encode_words(tokenizer *t, const unsigned char *s, size_t n, token_ids *out) {
    if (n == 0) return;
    if (t->add_prefix_space && s[0] != ' ') {
        t->prefixed.len = 0;
        utf8_buf_append(&t->prefixed, " ", 1);
        utf8_buf_append(&t->prefixed, s, n);
        s = (const unsigned char *)t->prefixed.data;
        n = t->prefixed.len;
    }
    if (!t->use_regex) {
        bpe_encode_word(&t->bpe, s, n, out);
        return;
    }
    size_t ends[256];
    for (size_t i = 0, k; (k = gpt2_split(s, n, i, ends, 256)) > 0;)
        for (size_t j = 0; j < k; j++) {
            bpe_encode_word(&t->bpe, s + i, ends[j] - i, out);
            i = ends[j];
        }
}

/* Splits s[0..n) around the tokens of trie; calls piece_fn on the text in
 * between, in order. A special token matched while special_as_text is set
 * stays in the text (the match is still consumed, as in Hugging Face). */
static void split_added(tokenizer *t, const added_trie *trie, const unsigned char *s, size_t n, token_ids *out,
                        void (*piece_fn)(tokenizer *, const unsigned char *, size_t, token_ids *)) {
    size_t piece = 0;
    for (size_t i = added_trie_next(trie, s, n, 0); i < n; i = added_trie_next(trie, s, n, i)) {
        int32_t tok;
        size_t len = added_trie_match(trie, s, n, i, &tok);
        if (!len) {
            i++;
            continue;
        }
        if (t->special_as_text && t->added[tok].special) {
            i += len;
            continue;
        }
        piece_fn(t, s + piece, i - piece, out);
        token_ids_push(out, t->added[tok].id);
        i += len;
        piece = i;
    }
    piece_fn(t, s + piece, n - piece, out);
}

static void encode_normalized(tokenizer *t, const unsigned char *s, size_t n, token_ids *out) {
    split_added(t, &t->norm_trie, s, n, out, encode_words);
}

/* Stages 2 and 3 for a piece of raw text. */
static void encode_raw_piece(tokenizer *t, const unsigned char *s, size_t n, token_ids *out) {
    if (n == 0) return;
    if (t->nfc) {
        t->normalized.len = 0;
        if (utf8_nfc((const char *)s, n, &t->normalized)) {
            s = (const unsigned char *)t->normalized.data;
            n = t->normalized.len;
        }
    }
    encode_normalized(t, s, n, out);
}

int tokenizer_encode(tokenizer *t, const char *text, size_t n, token_ids *out, size_t *bad_offset) {
    size_t valid = utf8_valid_prefix(text, n);
    if (valid != n) {
        if (bad_offset) *bad_offset = valid;
        return -1;
    }
    split_added(t, &t->raw_trie, (const unsigned char *)text, n, out, encode_raw_piece);
    return 0;
}

/* ---- decoding ---------------------------------------------------------------------- */

size_t tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n, int skip_special, utf8_buf *out) {
    utf8_buf bytes = {0};
    size_t unknown = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = ids[i];
        if (id >= t->id_limit || !(t->dec_flags[id] & DEC_KNOWN)) {
            unknown++;
            continue;
        }
        if (skip_special && (t->dec_flags[id] & DEC_SPECIAL)) continue;
        utf8_buf_append(&bytes, t->dec_bytes + t->dec_off[id], t->dec_len[id]);
    }
    utf8_append_lossy(out, bytes.data, bytes.len);
    utf8_buf_free(&bytes);
    return unknown;
}
