/* fs/state.h — the shard: all replicated state of one shard in one value (the object tree,
 * the session table, every namespace's state), changed only by apply() of committed
 * commands (fs/cmd.h), plus snapshot and restore. It implements cluster/sm.h; a node hosts
 * one shard per group, a test as many as it likes. Readers (the fronts) take the read lock;
 * apply takes the write lock. Applying is deterministic: ids, revisions, LRU order and expiry
 * all derive from the log (time is decided at apply, see sm_apply in state.c). The type
 * keeps its historical name state_t. */
#ifndef QFS_FS_STATE_H
#define QFS_FS_STATE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>
#include "cluster/sm.h"
#include "fs/effects.h"
#include "fs/ns_ids.h"
#include "fs/session_sm.h"
#include "fs/tree_sm.h"

typedef struct state {
    pthread_rwlock_t lock;
    tree_t tree;                 /* the object tree (fs/tree_sm.h) */
    uint64_t applied_index;
    /* The time of the last applied command: max(previous, its header's now_ms). Commands
     * apply at this time, so time never goes backwards in the log; replicated (snapshot). */
    uint64_t now_ms;
    /* mount sessions (fs/session_sm.h), replicated */
    session_table_t sessions;
    /* per-namespace state (fs/ns_sm.h), owned by the namespace's module */
    void *ns_state[NS__COUNT];
    /* Which shard of its cluster this is (0 on the embedded node): where its own ids start
     * (fs/tree_sm.h STATE_SHARD_ID_BITS). Set at creation; not replicated (every replica of
     * a shard is created with the same index). */
    uint32_t shard;
    /* The cache cap a fresh shard starts from (state_new's argument); cache/'s init reads
     * it. Not replicated: the cap itself is (CMD_SETCAP). */
    uint64_t initial_cache_cap;
    /* Effects of the command being applied (fs/effects.h); not replicated. Filled under the
     * write lock, emptied by sm_apply before it returns. */
    effects_t outbox;
    /* Delivery hook, set by the owner before the state is shared (the node: fs/node.c; a
     * test: its recorder). sm_apply calls it for each effect after releasing the lock, in
     * order, on the applying thread; it may take over the effect's owned fields. NULL:
     * effects are dropped. */
    void (*deliver)(void *arg, effect_t *e);
    void *deliver_arg;
} state_t;

#define CONFIG_EVENTS_KEPT 10000     /* config/'s event history (fs/config_sm.h) */
#define STATE_DEFAULT_CACHE_CAP (256ull << 20)

/* Creates an empty shard: the namespace roots, every namespace's empty state, and the given
 * initial cache cap (a node starts from STATE_DEFAULT_CACHE_CAP and proposes CMD_SETCAP for
 * its option, so every replica has the same cap). Out of memory aborts. */
state_t *state_new(uint64_t cache_max_bytes);
/* The same for shard index shard (< 256) of a cluster: its own ids start at
 * STATE_FIRST_ID + shard * 2^32. state_new is state_new_shard(cap, 0). */
state_t *state_new_shard(uint64_t cache_max_bytes, uint32_t shard);
void state_free(state_t *st);

/* The cluster/sm.h callbacks; ctx is the state_t. */
extern const sm_ops_t state_sm_ops;

#endif
