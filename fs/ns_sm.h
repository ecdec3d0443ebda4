/* fs/ns_sm.h — the state-machine half of a namespace module: how a namespace with its own
 * replicated state (cache/, config/, queues/, locks/, later logs/, jobs/, search/,
 * services/) plugs into the shard's apply, snapshot and restore. A namespace whose files are
 * plain objects builds on the shard's object tree (fs/tree_sm.h) by giving its tree hooks.
 * Everything here is deterministic and includes no FUSE, mount or node header, so
 * state-machine tests, fuzzers and the simulator link it alone. The FUSE half of a
 * namespace registers in fs/ns.h.
 *
 * All hooks run on one state (shard) and touch only st->ns_state[ns], the shard's session
 * table (read) and the effects outbox they are handed. */
#ifndef QFS_FS_NS_SM_H
#define QFS_FS_NS_SM_H

#include "cluster/assert.h"
#include "cluster/sm.h"
#include "fs/cmd.h"
#include "fs/effects.h"
#include "fs/snapio.h"
#include "fs/state.h"

typedef struct ns_sm {
    /* Allocates st->ns_state[ns] (empty). Out of memory aborts. */
    void (*init)(state_t *st);
    /* Releases st->ns_state[ns] and sets it NULL (also before a restore). */
    void (*free)(state_t *st);
    /* Applies a command whose header names this namespace; write lock held. h->now_ms is the
     * command's time as decided by apply (never below an earlier command's). Appends what
     * must be told to waiters to fx. Returns 0 or -errno; an error leaves the state as it
     * was (all or nothing). Out of memory aborts. */
    int (*apply)(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res, effects_t *fx);
    /* Session sid ended at now_ms (st->sessions no longer has it): release what it held and
     * drop its waits. Write lock held. NULL when the namespace keeps nothing per session. */
    void (*session_end)(state_t *st, uint64_t sid, uint64_t now_ms, effects_t *fx);
    void (*snapshot)(const state_t *st, snapout_t *o);   /* read lock held */
    int (*restore)(state_t *st, snapin_t *in);           /* after init; 0 or -QERR_* */
    /* Walks the whole namespace state and ASSERTs its invariants (NULL: none yet). */
    void (*check)(const state_t *st);
    /* A namespace built on the object tree: its hooks (NULL: none of its files are tree
     * objects; the tree holds only its root). Its apply passes tree commands to
     * tree_sm_apply. */
    const tree_hooks_t *tree;
} ns_sm_t;

/* The registry, indexed by enum ns_id; NULL where the namespace is not built yet (commands
 * in it are refused with -ENOTSUP). Defined in fs/ns_sm.c. */
extern const ns_sm_t *const ns_sms[NS__COUNT];

/* For the *_verify walks behind the checks: records msg in *why as the first broken
 * invariant when cond is false (later ones are not looked at). */
#define SM_VERIFY(why, cond, msg)                                              \
    do {                                                                       \
        if (!*(why) && !(cond))                                                \
            *(why) = (msg);                                                    \
    } while (0)

/* ASSERTs that a *_verify walk found nothing broken; the failure names what broke. */
#define SM_ASSERT_VERIFIED(verify_call)                                        \
    do {                                                                       \
        const char *why_ = (verify_call);                                      \
        ASSERT_MSG(!why_, "%s", why_);                                         \
    } while (0)

/* Session sid ended: every namespace's session_end, in namespace order. */
void ns_sm_session_end(state_t *st, uint64_t sid, uint64_t now_ms, effects_t *fx);

/* Asserts the invariants of the object tree, of the session table and of every namespace
 * module. Tests, fuzzers and the simulator call it after every apply. Lock held (read or
 * write). */
void ns_sm_check(const state_t *st);

#endif
