/* fs/locks.h — the locks/ namespace module (FILE-API §3): cluster-wide locks taken with
 * flock(2), fcntl whole-file locks or an exclusive create, granted to waiters in FIFO order,
 * with fencing tokens, TTLs for create locks, and release when the holding file description
 * closes or the holder's session ends. The module also hosts the session table
 * (fs/session.h). Design: docs/LOCKS.md. */
#ifndef QFS_FS_LOCKS_H
#define QFS_FS_LOCKS_H

#include <stdint.h>
#include "fs/ns.h"
#include "fs/session.h"

#define LOCK_DATA_MAX (64u << 10)        /* bytes written into a lock file */
#define LOCK_TTL_MAX 315360000u          /* user.ttl: ten years */

/* Command opcodes of the locks/ namespace (SOP_* of fs/session.h share the space). */
enum locks_op {
    LOP_CREATE = 1,   /* str name, u8 excl, u64 sid, u32 pid -> result u64 lid, u64 fence */
    LOP_LOCK,         /* str name, u64 sid, u8 kind, u64 owner, u8 mode, u8 wait, u64 wid,
                         u32 pid -> result u8 granted, u64 fence */
    LOP_UNLOCK,       /* str name, u64 sid, u8 kind, u64 owner */
    LOP_CANCEL,       /* str name, u64 sid, u64 wid: drop that wait, or the hold it got */
    LOP_UNLINK,       /* str name */
    LOP_SETTTL,       /* str name, u32 ttl_s (0 = none) */
    LOP_TOUCH,        /* str name: renews a create lock's TTL */
    LOP_EXPIRE,       /* str name, u64 fence: the create hold with that fence timed out */
    LOP_DATA,         /* str name, bytes content */
};
enum lock_kind { LK_FLOCK = 1, LK_POSIX, LK_CREATE };
enum lock_mode { LM_SHARED = 1, LM_EXCL };

/* A wait decided by apply: waiter (sid, wid) was granted (rc 0, with fence) or dropped. */
typedef struct locks_grant {
    uint64_t sid, wid, fence;
    int rc;
    struct locks_grant *next;
} locks_grant_t;

extern const ns_module_t locks_module;

/* The session table inside the state (state lock held). */
session_table_t *locks_sessions(state_t *st);

/* Test hook: when set, each grant goes to fn instead of this mount's parked requests. */
void locks_set_observer(void (*fn)(const locks_grant_t *g, void *arg), void *arg);

/* Holder summary for tests: number of holders, mode of the first, newest fence.
 * Returns 0 or -ENOENT. State lock held. */
int locks_info(state_t *st, const char *name, uint32_t *holders, int *mode, uint64_t *fence,
               uint32_t *waiters);

#endif
