/* tests/sim/rng.h — the simulator's one source of randomness: a seeded xoshiro256** whose
 * state is expanded from the run's seed by splitmix64. Every random choice of a simulated
 * run (faults, delays, client ops, election timeouts fed to the core) is drawn from it, so a
 * seed replays exactly. No rand(), no wall clock. */
#ifndef QFS_SIM_RNG_H
#define QFS_SIM_RNG_H

#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng_t;

/* Seeds r from seed (any value, 0 included). */
void rng_seed(rng_t *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t rng_next(rng_t *r);
/* Uniform integer in [0, n); n == 0 gives 0. */
uint64_t rng_below(rng_t *r, uint64_t n);
/* Uniform integer in [lo, hi]; requires lo <= hi. */
uint64_t rng_range(rng_t *r, uint64_t lo, uint64_t hi);
/* 1 with probability permille/1000, else 0. */
int rng_chance(rng_t *r, unsigned permille);

#endif
