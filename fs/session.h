/* fs/session.h — the node side of mount sessions (the replicated table is fs/session_sm.h).
 * A node keeps its own session alive (opened at start, renewed by the sweeper, ended at
 * stop), ends expired sessions as leader-decided log entries, and runs a small background
 * proposer for commands that must not be proposed where they arise (an interrupt callback,
 * an effect delivery). One session_local_t per node; nothing here is process-wide. */
#ifndef QFS_FS_SESSION_H
#define QFS_FS_SESSION_H

#include <stdint.h>
#include "fs/cmd.h"
#include "fs/session_sm.h"

struct node;

#define SESSION_LEASE_MS 10000      /* FILE-API §3: session timeout, default 10 s */
#define SESSION_RENEW_MS 3000

typedef struct session_local session_local_t;

/* Starts the node side for n: the background proposer; ends the sessions of this node's
 * name left in the state by an earlier run (crash), which releases their locks, claims and
 * waiters; opens this mount's session. Errors are logged; without a session, lock and claim
 * operations fail with EIO. Returns NULL only on out of memory. */
session_local_t *session_local_start(struct node *n);
/* Sweeper: renews this mount's session (reopens it if it had ended); proposes the end of
 * sessions whose lease passed. */
void session_local_sweep(session_local_t *s);
/* Ends this mount's session and drains and stops the background proposer. The sweeper may
 * still call session_local_sweep afterwards (it does nothing then). */
void session_local_stop(session_local_t *s);
/* Frees s, after session_local_stop and once no thread can use it. NULL is a no-op. */
void session_local_free(session_local_t *s);

/* This mount's session id in shard `shard` (each shard has its own session table, so the
 * node has one session per shard): 0 before it opened, after stop, or for a NULL s. */
uint64_t session_local_id(const session_local_t *s, uint32_t shard);

/* When a command of shard k was refused because session `dead` is not in the state any more
 * (-ENOLCK: it ended while this node was stopped or cut off, and the sweeper has not
 * reopened it yet): reopens this mount's session there now, unless that happened already,
 * and returns the id to use (0 when none could be opened). Blocks for the proposals. */
uint64_t session_local_refresh(session_local_t *s, uint32_t shard, uint64_t dead);

/* Hands a command to the background proposer of s (FIFO order). Takes ownership of b->p.
 * Returns 0, or -ENOTCONN when the proposer is not running (before start, after stop): the
 * command is then dropped and done is not called. done, if not NULL, is called with the
 * result after the commit, on the proposer's thread. */
int session_bg_propose(session_local_t *s, uint32_t shard, cmdbuf_t *b,
                       void (*done)(void *arg, int rc), void *arg);

#endif
