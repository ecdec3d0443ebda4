/* fs/state.h — the replicated state machine behind the mount: a tree of objects per
 * namespace, changed only by apply() of committed commands (fs/cmd.h), plus snapshot and
 * restore. It implements cluster/sm.h. Readers (FUSE threads) take the read lock; apply takes
 * the write lock. Applying is deterministic: ids, revisions, LRU order and expiry all derive
 * from the log (times come from the command header, chosen by the proposer/leader). */
#ifndef QFS_FS_STATE_H
#define QFS_FS_STATE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>
#include "cluster/sm.h"
#include "fs/effects.h"
#include "fs/session_sm.h"

/* Namespaces; each has a root directory object whose id is NS_ROOT_ID(ns). */
enum ns_id {
    NS_NONE = 0,
    NS_CACHE, NS_CONFIG, NS_JOBS, NS_LOCKS, NS_LOGS, NS_QUEUES, NS_SEARCH, NS_SERVICES,
    NS__COUNT
};
#define NS_ROOT_ID(ns) ((uint64_t)(ns) + 1)   /* mount root is 1 (FUSE_ROOT_ID) */
#define STATE_FIRST_ID 1000                  /* ids of created objects start here */
/* Ids a proposer picks for a file it creates (CMD_PUT_ID), so that the kernel can be given
 * the file's inode number before the creation commits: [STATE_PID_FIRST, STATE_PID_END).
 * A cluster will give each node its own slice of this range. */
#define STATE_PID_FIRST (1ull << 40)
#define STATE_PID_END (1ull << 60)

extern const char *const ns_names[NS__COUNT];  /* "cache", "config", ...; [0] = NULL */

enum obj_type { OBJ_DIR = 1, OBJ_FILE = 2 };

/* Immutable, reference-counted value bytes. Readers keep a reference for the life of an open
 * file, which is what gives "one version per open". */
typedef struct blob {
    uint32_t refs;     /* atomic */
    uint32_t len;
    uint8_t data[];
} blob_t;

blob_t *blob_new(const void *p, size_t len);     /* refs = 1; NULL on OOM */
blob_t *blob_xnew(const void *p, size_t len);    /* the same; OOM aborts (for apply) */
blob_t *blob_ref(blob_t *b);                     /* NULL-safe */
void blob_unref(blob_t *b);                      /* NULL-safe */

#define CONFIG_HISTORY 10

typedef struct cfg_version {
    uint64_t rev;
    blob_t *val;
} cfg_version_t;

typedef struct obj {
    uint64_t id;
    struct obj *parent;
    struct obj *children;      /* uthash head of children, keyed by name */
    UT_hash_handle hh;         /* in parent->children */
    blob_t *val;               /* OBJ_FILE: current value (never NULL for files) */
    uint64_t mtime_ms;         /* leader time of the last change */
    uint32_t nchildren;
    uint8_t ns, type;
    union {
        struct {               /* NS_CACHE */
            uint64_t expires_ms;       /* file: 0 = never */
            uint32_t ttl_s;            /* file: own TTL; dir: default for new keys */
            uint8_t sliding;           /* dir: reads restart TTLs below */
            struct obj *lru_prev, *lru_next;   /* file: LRU list, head = most recent */
        } cache;
        struct {               /* NS_CONFIG */
            uint64_t rev;              /* file: last change; dir: newest change below */
            cfg_version_t *hist;       /* file: ring of CONFIG_HISTORY versions */
            uint8_t nhist, hist_head;
        } config;
    } u;
    char name[];               /* NUL-terminated */
} obj_t;

/* One config change, kept in the event history for `.events` / `.events@rev`. */
typedef struct cfg_event {
    uint64_t rev;
    uint8_t op;                /* CFG_EV_PUT / CFG_EV_DELETE */
    char *path;                /* path below config/, e.g. "app/prod/db_url"; owned */
} cfg_event_t;
enum { CFG_EV_PUT = 1, CFG_EV_DELETE = 2 };
#define CONFIG_EVENTS_KEPT 10000

typedef struct state {
    pthread_rwlock_t lock;
    struct idpage *idpages;      /* id -> object: uthash of pages of slots (dense ids) */
    uint64_t nobjs;              /* objects in the tree, namespace roots included */
    obj_t *ns_root[NS__COUNT];
    uint64_t next_id;
    uint64_t next_pid;           /* above every proposer-picked id ever applied */
    uint64_t applied_index;
    /* The time of the last applied command: max(previous, its header's now_ms). Commands
     * apply at this time, so time never goes backwards in the log; replicated (snapshot). */
    uint64_t now_ms;
    /* mount sessions (fs/session_sm.h), replicated */
    session_table_t sessions;
    /* cache */
    obj_t *lru_head, *lru_tail;
    uint64_t cache_bytes, cache_keys;
    uint64_t cache_max_bytes;    /* eviction cap: replicated (CMD_SETCAP), in snapshots */
    uint64_t cache_evictions, cache_expirations;
    /* TTL index: a min-heap of (expires, id) with lazy deletion; derived, not replicated
     * (rebuilt by restore); used only to find due keys for EXPIRE proposals. */
    struct ttl_ent { uint64_t expires_ms, id; } *ttl_heap;
    size_t ttl_n, ttl_cap;
    /* config */
    uint64_t config_rev;
    cfg_event_t *events;         /* ring of CONFIG_EVENTS_KEPT */
    uint64_t nevents;            /* events ever recorded (ring position = n % kept) */
    /* per-namespace module state (fs/ns_sm.h), owned by the module */
    void *ns_state[NS__COUNT];
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

#define STATE_DEFAULT_CACHE_CAP (256ull << 20)

/* Creates the empty state with the namespace roots and the given initial cache cap (a node
 * starts from STATE_DEFAULT_CACHE_CAP and proposes CMD_SETCAP for its option, so every
 * replica has the same cap). Returns NULL on OOM. */
state_t *state_new(uint64_t cache_max_bytes);
void state_free(state_t *st);

/* The cluster/sm.h callbacks; ctx is the state_t. */
extern const sm_ops_t state_sm_ops;

/* Lookups; the caller holds st->lock (read or write). */
obj_t *state_by_id(state_t *st, uint64_t id);
obj_t *state_child(obj_t *dir, const char *name);
/* Removes o and everything below it from the tree (namespace hooks run) and frees them.
 * Write lock held. */
void state_remove(state_t *st, obj_t *o);
/* Resolves a '/'-separated path below namespace ns ("" is the root). NULL if absent. */
obj_t *state_resolve(state_t *st, int ns, const char *path, size_t len);
/* Writes obj's path below its namespace root into buf ("" for the root). Returns the length,
 * or -ENAMETOOLONG if it does not fit in size (including the NUL). */
int state_path(const obj_t *o, char *buf, size_t size);

/* Formats v in decimal into buf as an xattr value (no NUL). size 0 asks for the length.
 * Returns the length or -ERANGE. */
int state_format_uint(char *buf, size_t size, uint64_t v);

/* Cache visibility at wall time now_ms: a key whose expiry passed is gone for readers even
 * before the expiry command commits. */
int state_cache_live(const obj_t *o, uint64_t now_ms);

/* Config: the version of file o with revision rev, or NULL. */
blob_t *state_config_version(const obj_t *o, uint64_t rev);
/* Config events: oldest revision still in the history (0 if none recorded). */
uint64_t state_config_oldest_rev(const state_t *st);
/* Event with the smallest revision > after, or NULL. */
const cfg_event_t *state_config_event_after(const state_t *st, uint64_t after);

#endif
