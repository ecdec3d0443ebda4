/* fs/locks.h — the locks/ namespace (FILE-API §3): cluster-wide locks taken with flock(2),
 * fcntl whole-file locks or an exclusive create, granted to waiters in FIFO order, with
 * fencing tokens, TTLs for create locks, and release when the holding file description
 * closes or the holder's session ends (sessions: fs/session_sm.h). Two halves: the
 * deterministic state machine, fs/locks_sm.h (commands, read API, invariants), and the FUSE
 * front, fs/locks_fuse.c, registered here. Design: docs/LOCKS.md. */
#ifndef QFS_FS_LOCKS_H
#define QFS_FS_LOCKS_H

#include "fs/locks_sm.h"
#include "fs/ns.h"

/* The front of locks/ (fs/ns.h): a per-node table of parked lock requests, to which
 * EFF_LOCK_WAIT effects are delivered (wid = the request's wait id). */
extern const ns_front_t locks_front;

#endif
