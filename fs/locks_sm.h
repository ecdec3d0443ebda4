/* fs/locks_sm.h — the state machine of locks/ (FILE-API §3; design in docs/LOCKS.md):
 * per lock, its holders in grant order and a FIFO of waiters, fencing tokens from one
 * counter that only grows, create locks with a TTL. Apply decides every grant in log order
 * and emits it as an EFF_LOCK_WAIT effect (fs/effects.h); it never talks to FUSE. This
 * header is all the FUSE front (fs/locks_fuse.c) and the tests use: the commands' encoders
 * and result decoders, a read API over the state, and the invariant check. It includes no
 * FUSE, mount or node header. Sessions, which holds belong to, are the shard's
 * (fs/session_sm.h). */
#ifndef QFS_FS_LOCKS_SM_H
#define QFS_FS_LOCKS_SM_H

#include <stddef.h>
#include <stdint.h>
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/state.h"

#define LOCK_DATA_MAX (64u << 10)        /* bytes written into a lock file */
#define LOCK_TTL_MAX 315360000u          /* user.ttl: ten years */

/* Command opcodes of the locks/ namespace (SOP_* of fs/session_sm.h share the space). */
enum locks_op {
    LOP_CREATE = 1,   /* str name, u8 excl, u64 sid, u32 pid -> result u8 held, u64 lid,
                         u64 fence */
    LOP_LOCK,         /* str name, u64 sid, u8 kind, u64 owner, u8 mode, u8 wait, u64 wid,
                         u32 pid -> result u8 granted, u64 fence */
    LOP_UNLOCK,       /* str name, u64 sid, u8 kind, u64 owner */
    LOP_CANCEL,       /* str name, u64 sid, u64 wid: drop that wait, or the hold it got */
    LOP_UNLINK,       /* str name */
    LOP_SETTTL,       /* str name, u32 ttl_s (0 = none) */
    LOP_TOUCH,        /* str name: renews a create lock's TTL */
    LOP_EXPIRE,       /* str name, u64 fence: the create hold with that fence timed out */
    LOP_DATA,         /* str name, bytes content, [u64 create fence] */
};
enum lock_kind { LK_FLOCK = 1, LK_POSIX, LK_CREATE };
enum lock_mode { LM_SHARED = 1, LM_EXCL };

/* The state machine (fs/ns_sm.h). Grants are EFF_LOCK_WAIT effects: wid is the request's
 * wait id. */
extern const ns_sm_t locks_sm;

/* ---- command encoders (the front and the tests build every command with these) ----
 * Each starts b (cmd_begin) at time now; the caller proposes b and frees b->p. */

/* CREATE: a lock file; excl: holding it exclusively as session sid (process pid). */
void locks_cmd_create(cmdbuf_t *b, uint64_t now, const char *name, int excl, uint64_t sid,
                      uint32_t pid);
/* LOCK: (sid, kind, owner) asks for mode; wait: queue up instead of EAGAIN; wid: the
 * request's wait id, which its grant effect and a CANCEL name. */
void locks_cmd_lock(cmdbuf_t *b, uint64_t now, const char *name, uint64_t sid, uint8_t kind,
                    uint64_t owner, uint8_t mode, int wait, uint64_t wid, uint32_t pid);
void locks_cmd_unlock(cmdbuf_t *b, uint64_t now, const char *name, uint64_t sid,
                      uint8_t kind, uint64_t owner);
void locks_cmd_cancel(cmdbuf_t *b, uint64_t now, const char *name, uint64_t sid,
                      uint64_t wid);
void locks_cmd_unlink(cmdbuf_t *b, uint64_t now, const char *name);
void locks_cmd_setttl(cmdbuf_t *b, uint64_t now, const char *name, uint32_t ttl_s);
void locks_cmd_touch(cmdbuf_t *b, uint64_t now, const char *name);
/* EXPIRE: the create hold with that fence, if its TTL passed at the command's time. */
void locks_cmd_expire(cmdbuf_t *b, uint64_t now, const char *name, uint64_t fence);
/* DATA: the file's content; fence: the create hold the writer's descriptor holds (0: none):
 * with one, apply refuses the write (EIO) unless that hold is still the lock's. */
void locks_cmd_data(cmdbuf_t *b, uint64_t now, const char *name, const void *p, size_t len,
                    uint64_t fence);

/* ---- results of applied commands (res->code == 0) ---- */

/* CREATE: *held is 1 when the create took the lock (exclusive), *lid the lock's id, *fence
 * the token of that hold (0 when not held). Any pointer may be NULL. */
void locks_result_create(const sm_result_t *res, int *held, uint64_t *lid, uint64_t *fence);
/* LOCK: *granted is 1 when granted now (then *fence is its token), 0 when waiting. */
void locks_result_lock(const sm_result_t *res, int *granted, uint64_t *fence);

/* ---- read API (the caller holds the state lock, read or write; what a view points to is
 * valid while it is held: blob_ref the data to keep it) ---- */

typedef struct lock_view {
    uint64_t lid;
    const char *name;
    uint64_t ctime_ms, mtime_ms;
    uint32_t ttl_s;                  /* user.ttl, 0 = none */
    uint64_t expires_ms;             /* end of the create hold's TTL, 0 = none */
    uint64_t create_fence;           /* fence of the create hold, 0 = none */
    uint64_t last_fence;             /* token of the newest acquisition (user.fence) */
    uint32_t holders, waiters;
    uint8_t mode;                    /* of the holders (enum lock_mode), 0 when free */
    const blob_t *data;              /* bytes written into the file, NULL when none */
} lock_view_t;

/* One holder or waiter. */
typedef struct lock_hold {
    uint64_t sid, owner, wid;
    uint64_t fence;                  /* 0 for a waiter */
    uint64_t since_ms;               /* granted (holder) or queued (waiter) at */
    uint32_t pid;
    uint8_t kind, mode;              /* enum lock_kind, enum lock_mode */
} lock_hold_t;

/* The lock named name (len bytes) / with id lid: 0 and *v, or -ENOENT. */
int locks_sm_get(const state_t *st, const char *name, size_t len, lock_view_t *v);
int locks_sm_get_lid(const state_t *st, uint64_t lid, lock_view_t *v);
/* Calls fn for each lock in creation order until fn returns nonzero; returns that value
 * (0 when fn never stopped). */
int locks_sm_each(const state_t *st, int (*fn)(void *arg, const lock_view_t *v), void *arg);
/* Calls fn for each holder (waiters 0: in grant order) or waiter (waiters 1: in FIFO
 * order) of lock lid until fn returns nonzero; returns that value, or -ENOENT for an
 * unknown lock. */
int locks_sm_each_hold(const state_t *st, uint64_t lid, int waiters,
                       int (*fn)(void *arg, const lock_hold_t *h), void *arg);
/* 1 when (sid, kind, owner) holds or waits on lock name, else 0 (also for no such lock). */
int locks_sm_owner_active(const state_t *st, const char *name, uint64_t sid, uint8_t kind,
                          uint64_t owner);

/* The first broken invariant of locks/, or NULL (restore rejects a snapshot that breaks
 * one): ids at most next_lid and names valid; per lock, ctime <= mtime <= the state's time,
 * TTL and data within their maximums; holders compatible (one exclusive, or only shared),
 * fences strictly growing in grant order up to the lock's last fence, itself at most the
 * global counter; waiters a FIFO (queued in time order, no fence) whose head cannot be
 * granted; every holder and waiter of a live session, of a known kind and mode, since a
 * time not to come; list counts and tails; the create hold (exclusive, no owner or wait
 * id), the ephemeral flag and the TTL end consistent. */
const char *locks_sm_verify(const state_t *st);
/* ASSERTs the lock table's structure (fs/ntable.h) and locks_sm_verify. */
void locks_sm_check(const state_t *st);

#endif
