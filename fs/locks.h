/* fs/locks.h — the locks/ namespace module (FILE-API §3): cluster-wide locks taken with
 * flock(2), fcntl whole-file locks or an exclusive create, granted to waiters in FIFO order,
 * with fencing tokens, TTLs for create locks, and release when the holding file description
 * closes or the holder's session ends (sessions: fs/session_sm.h). Design: docs/LOCKS.md. */
#ifndef QFS_FS_LOCKS_H
#define QFS_FS_LOCKS_H

#include <stdint.h>
#include "fs/ns.h"
#include "fs/ns_sm.h"
#include "fs/session_sm.h"

#define LOCK_DATA_MAX (64u << 10)        /* bytes written into a lock file */
#define LOCK_TTL_MAX 315360000u          /* user.ttl: ten years */

/* Command opcodes of the locks/ namespace (SOP_* of fs/session_sm.h share the space). */
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

/* The state machine (fs/ns_sm.h) and the FUSE front (fs/ns.h) of locks/. Grants are
 * EFF_LOCK_WAIT effects (fs/effects.h): wid is the request's wait id. */
extern const ns_sm_t locks_sm;
extern const ns_front_t locks_front;

/* Holder summary for tests: number of holders, mode of the first, newest fence.
 * Returns 0 or -ENOENT. State lock held. */
int locks_info(state_t *st, const char *name, uint32_t *holders, int *mode, uint64_t *fence,
               uint32_t *waiters);

#endif
