/* rng.h — a small, seedable, portable PRNG (xoshiro256** seeded through
 * splitmix64): the same seed gives the same numbers on every machine, so
 * splits, shuffles and sampling are reproducible. */
#ifndef TUNEPIPE_RNG_H
#define TUNEPIPE_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } rng_state;

void rng_seed(rng_state *r, uint64_t seed);
uint64_t rng_next(rng_state *r);
/* Uniform in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(rng_state *r, uint64_t n);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(rng_state *r);
/* Standard normal (Box-Muller). */
double rng_normal(rng_state *r);

#endif
