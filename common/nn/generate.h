/* generate.h — decoding several sequences at once with a KV cache, and
 * scoring an answer given its question.
 *
 * A generator holds up to `batch` sequences. Adding one prefills its prompt
 * and picks its first token; each step then feeds the last token of every
 * active sequence in one batched decoder step and picks the next ones. A
 * sequence is done after max_new tokens, after emitting the EOS token
 * (which is kept, as Hugging Face does), or when it reaches the model's
 * max_position_embeddings. Its slot is then free for the next sequence. */
#ifndef TUNEPIPE_GENERATE_H
#define TUNEPIPE_GENERATE_H

#include <stdint.h>

#include "kvcache.h"
#include "model.h"
#include "base/rng.h"
#include "sampler.h"

typedef struct {
    int batch;              /* sequences decoded together */
    int max_new;            /* tokens generated at most */
    long eos_id;            /* -1: never stop early */
    uint64_t seed;          /* sampling: sequence k draws from seed and its key */
    sampler_opts sampling;
} gen_opts;

typedef struct {
    uint32_t *ids;          /* prompt, then the generated tokens */
    int n, cap;
    int prompt_len;
    int done;
    int slot;               /* -1 when not in the generator */
    rng_state rng;
    int max_new;            /* its own limits and sampling (gen_opts's by default) */
    long eos_id;
    sampler_opts sampling;
} gen_seq;

typedef struct {
    const neox_model *m;
    gen_opts o;
    neox_decoder dec;
    sampler smp;
    gen_seq **active;       /* [batch], NULL where the slot is free */
    int num_active;
    float *logits;          /* [batch, V] */
    gen_seq **step_seqs;    /* [batch] the sequences of the current step */
    uint32_t *step_tokens;
    int *step_slots, *step_counts;
} generator;

void generator_init(generator *g, const neox_model *m, const gen_opts *o);
void generator_free(generator *g);

/* Starts s with prompt [n] (1 <= n <= max_positions, ids < vocab_size,
 * checked by the caller) in a free slot (the caller keeps num_active <
 * batch): prefills and picks the first token. key seeds its sampling, so
 * a sequence's draws do not depend on what it was batched with. s may be
 * done on return. */
void generator_add(generator *g, gen_seq *s, const uint32_t *prompt, int n, uint64_t key);
/* Same, with o's max_new, eos_id, seed and sampling for s alone (o->batch
 * is ignored): sequences with different options share the steps. */
void generator_add_with(generator *g, gen_seq *s, const uint32_t *prompt, int n, uint64_t key,
                        const gen_opts *o);
/* Ends s before it is done (a stop string, a closed connection): it
 * leaves its slot, which the next sequence may take. */
void generator_remove(generator *g, gen_seq *s);
/* One token for every active sequence; finished ones leave. */
void generator_step(generator *g);
void gen_seq_free(gen_seq *s);

/* Summed negative log-likelihood (natural log) of answer [na] following
 * question [nq] (nq >= 1, nq + na <= max_positions), using slot 0 of dec;
 * logits holds dec->max_rows rows of V. */
double score_answer(neox_decoder *dec, const uint32_t *question, int nq, const uint32_t *answer,
                    int na, float *logits);

#endif
