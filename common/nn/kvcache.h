/* kvcache.h — inference with a key/value cache: prefill and decode steps
 * for several sequences at once, each with its own positions and cache.
 *
 * A step appends count[b] tokens to each of nseq sequences. Their rows go
 * through every linear layer together (one pass over the weights for the
 * whole batch); rotary positions and attention are per sequence, over its
 * cached keys and values only, so sequences of different lengths never see
 * each other or any padding. */
#ifndef TUNEPIPE_KVCACHE_H
#define TUNEPIPE_KVCACHE_H

#include <stdint.h>

#include "model.h"

/* Rows per prefill step: enough for sgemm to run near its peak while the
 * weights are streamed once per step. */
#define DECODER_PREFILL_ROWS 256

typedef struct neox_decoder {
    const neox_model *m;    /* its products in its dtype (model_set_dtype) */
    int num_slots;          /* sequences held at once */
    int capacity;           /* positions per sequence at most (<= max_positions) */
    int max_rows;           /* tokens per step, all sequences together */
    int *len;               /* [num_slots] positions cached */
    int *room;              /* [num_slots] positions allocated, grown on demand */
    float **k, **v;         /* [num_slots] each [L, NH, room, hd]; keys rotated */
    /* scratch for one step, max_rows rows each; these and k, v are on m's device */
    float *x, *ln, *qkv, *atty, *branch, *fch, *scores;
    float *ln2, *branch2;   /* the MLP's input; its output when it runs beside the attention */
    uint32_t *tokens;       /* [max_rows] the step's tokens */
    float *logits;          /* [max_rows, V]; NULL where the device's memory is the host's */
    void *device_state;     /* the device's own (device.h's decode_begin), or NULL */
} neox_decoder;

/* capacity 0 means max_positions. A slot's cache grows as its sequence
 * does. Any number of decoders may share m, whose tensors stay where they
 * are and whose dtype stays as it is while a decoder lives (a GPU records
 * steps that read them there). */
void decoder_init(neox_decoder *d, const neox_model *m, int num_slots, int capacity, int max_rows);
void decoder_free(neox_decoder *d);
/* Empties a slot for a new sequence. */
void decoder_reset(neox_decoder *d, int slot);
/* Makes room for n positions in a slot (n <= capacity) at once, so a
 * sequence whose final length is known grows its cache only once. */
void decoder_reserve(neox_decoder *d, int slot, int n);

/* Appends tokens to sequences: sequence b is slot[b] and takes the next
 * count[b] >= 1 ids of tokens. Needs sum(count) <= max_rows and
 * len[slot] + count <= capacity (the caller checks). logits: when all,
 * [sum(count), V], one row per token; otherwise [nseq, V], the row of each
 * sequence's last token. */
void decoder_step(neox_decoder *d, int nseq, const int *slot, const int *count,
                  const uint32_t *tokens, float *logits, int all);

/* decoder_step (not all) on a device that chooses greedily itself
 * (dev->argmax_rows): next [nseq] (host; may be tokens) = the argmax of
 * each sequence's last logits, which stay on the device. */
void decoder_step_greedy(neox_decoder *d, int nseq, const int *slot, const int *count, const uint32_t *tokens,
                         uint32_t *next);

/* Feeds n tokens to one sequence in steps of max_rows; last_logits [V]
 * receives the logits after the last one. */
void decoder_prefill(neox_decoder *d, int slot, const uint32_t *tokens, int n, float *last_logits);

#endif
