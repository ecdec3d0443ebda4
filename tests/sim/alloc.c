/* tests/sim/alloc.c — the allocation wrappers behind tests/sim/alloc.h (linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc). One process runs one seed at a time on
 * one thread, so the armed state is a plain global. */
#include "tests/sim/alloc.h"

#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

static rng_t *armed;
static unsigned armed_ppm;
static uint64_t failed;

void alloc_arm(rng_t *r, unsigned ppm)
{
    armed = ppm ? r : NULL;
    armed_ppm = ppm;
}

void alloc_disarm(void)
{
    armed = NULL;
}

uint64_t alloc_failures(void)
{
    return failed;
}

static int fail_now(void)
{
    if (!armed || rng_below(armed, 1000000) >= armed_ppm)
        return 0;
    failed++;
    return 1;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    return fail_now() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}
