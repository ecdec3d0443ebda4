/* tests/sim/alloc.h — allocation failures injected into the Raft core. The core has no hook
 * of its own, so the simulator is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc
 * (mk/raft.mk): every allocation of the program's own objects goes through alloc.c, which
 * fails one only while armed (the simulator arms it around its calls into cluster/raft.c)
 * and only when the run's allocation PRNG says so. Unarmed, the wrappers just allocate. */
#ifndef QFS_SIM_ALLOC_H
#define QFS_SIM_ALLOC_H

#include <stdint.h>

#include "tests/sim/rng.h"

/* Until alloc_disarm, each allocation fails with probability ppm / 1,000,000, drawn from r
 * (which must outlive the armed period). ppm 0 arms nothing. */
void alloc_arm(rng_t *r, unsigned ppm);
void alloc_disarm(void);
/* Allocations failed since the process started. */
uint64_t alloc_failures(void);

#endif
