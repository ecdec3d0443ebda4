/* fs/cache_sm.h — the state machine of cache/ (FILE-API §4): keys with per-key and
 * per-directory TTL, sliding TTL and an LRU memory cap, on the shard's object tree
 * (fs/tree_sm.h, through its hooks). Namespace-wide state (the LRU list, bytes and keys,
 * the cap, the counters, the TTL index) lives in st->ns_state[NS_CACHE]. TTL expiry and
 * read touches are decided by the leader and committed (EXPIRE, TOUCH); the LRU order
 * changes only in apply, so eviction is identical on every replica. This header is all the
 * front (fs/cache_fuse.c) and the tests use. No FUSE. */
#ifndef QFS_FS_CACHE_SM_H
#define QFS_FS_CACHE_SM_H

#include <stdint.h>
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/state.h"

#define CACHE_TTL_MAX_S (10ull * 365 * 24 * 3600)
#define CACHE_BATCH_MAX 4096            /* keys in one EXPIRE or TOUCH */

extern const ns_sm_t cache_sm;

/* ---- command encoders (each starts b at time now; the caller proposes b) ----
 * EXPIRE and TOUCH start empty; each _add appends a key and counts it. */
void cache_cmd_expire(cmdbuf_t *b, uint64_t now);
void cache_cmd_expire_add(cmdbuf_t *b, const char *path, uint64_t expires_ms);
void cache_cmd_touch(cmdbuf_t *b, uint64_t now);
void cache_cmd_touch_add(cmdbuf_t *b, const char *path);
/* The keys an EXPIRE or TOUCH in b holds. */
uint32_t cache_cmd_count(const cmdbuf_t *b);
void cache_cmd_setcap(cmdbuf_t *b, uint64_t now, uint64_t cap);

/* ---- read API (state lock held, read or write) ---- */

typedef struct cache_stats {
    uint64_t bytes, keys;          /* value bytes and keys held */
    uint64_t cap;                  /* the LRU cap (replicated) */
    uint64_t evictions, expirations;
} cache_stats_t;

void cache_sm_stats(const state_t *st, cache_stats_t *out);
/* Whether key o is there at wall time now_ms: a key whose expiry passed is gone for readers
 * even before the EXPIRE commits. Nonzero for anything that is not a cache key. */
int cache_sm_live(const obj_t *o, uint64_t now_ms);
/* Whether a read of key o should be logged as a TOUCH: it restarts a sliding TTL, or the
 * cache holds more than half its cap (the LRU order will soon decide an eviction). */
int cache_sm_read_touches(const state_t *st, const obj_t *o);
/* Checks an attribute set before proposing it (apply checks the same). 0 or -errno. */
int cache_sm_check_setxattr(const obj_t *o, const char *name, const void *v, size_t n);
/* Keys due at now_ms, for an EXPIRE the leader proposes: appends at most max of them to b,
 * which cache_cmd_expire began, and returns how many. The caller holds the write lock (stale
 * entries of the TTL index, which is not replicated, are dropped). Cost: proportional to
 * the due entries. */
uint32_t cache_sm_collect_expired(state_t *st, uint64_t now_ms, cmdbuf_t *b, uint32_t max);
/* Transitional, for tests/sim/fsm.c: the same keys appended as bare (path, expires_ms)
 * pairs to body, which holds no header and no count. */
uint32_t cache_collect_expired(state_t *st, uint64_t now_ms, cmdbuf_t *body, uint32_t max);

/* The first broken invariant of cache/, or NULL: the LRU list's links, count and bytes
 * match the cache files of the tree (every key is in it once), and the TTL index holds an
 * entry for every key that expires. */
const char *cache_sm_verify(const state_t *st);
void cache_sm_check(const state_t *st);

#endif
