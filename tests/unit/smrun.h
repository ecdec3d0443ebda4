/* tests/unit/smrun.h — driving the shard's state machine in a unit test (test_locks; meant
 * for test_queues and test_state too): a fresh state whose effects go to the test's
 * recorder, and the apply of one encoded command followed by every invariant check
 * (ns_sm_check), as the conventions ask of every state-machine test. */
#ifndef QFS_TESTS_SMRUN_H
#define QFS_TESTS_SMRUN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/state.h"

/* A new empty state that hands each effect to deliver(arg, e); aborts on OOM. */
static inline state_t *smrun_state(void (*deliver)(void *arg, effect_t *e), void *arg)
{
    state_t *st = state_new(1 << 20);
    if (!st)
        abort();
    st->deliver = deliver;
    st->deliver_arg = arg;
    return st;
}

/* Applies b at log index ++*idx and frees b->p, then asserts every invariant of st.
 * Returns apply's code; res (may be NULL) gets the whole result. */
static inline int smrun_apply(state_t *st, uint64_t *idx, cmdbuf_t *b, sm_result_t *res)
{
    sm_result_t local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    state_sm_ops.apply(st, ++*idx, b->p, b->len, res);
    free(b->p);
    b->p = NULL;
    ns_sm_check(st);
    return res->code;
}

#endif
