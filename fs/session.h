/* fs/session.h — mount sessions: every mount opens a session with a lease; locks (fs/locks.c)
 * and queue claims and waiters (fs/queues.c) belong to a session and are released when it
 * ends. The replicated session table is applied deterministically (it lives in the locks/
 * module state; its commands are locks/ commands). The node side keeps this mount's session
 * alive (renewal by the sweeper), ends expired sessions as leader-decided log entries, and runs
 * a small background proposer for commands that must not be proposed where they arise (an
 * interrupt callback, the apply hook). */
#ifndef QFS_FS_SESSION_H
#define QFS_FS_SESSION_H

#include <stdint.h>
#include "fs/cmd.h"
#include "fs/snapio.h"
#include "fs/state.h"

struct node;

#define SESSION_LEASE_MS 10000      /* FILE-API §3: session timeout, default 10 s */
#define SESSION_RENEW_MS 3000
#define SESSION_NODE_MAX 64

/* Session command opcodes, inside the locks/ namespace's opcode space (fs/locks.c routes
 * them here). */
enum session_op {
    SOP_OPEN = 100,   /* str node, u32 pid, u64 lease_ms -> result u64 sid */
    SOP_RENEW,        /* u64 sid, u64 lease_ms */
    SOP_END,          /* u64 sid, u8 only_if_expired */
};

typedef struct session {
    uint64_t id;
    char node[SESSION_NODE_MAX];
    uint32_t pid;                   /* daemon pid, for display */
    uint64_t opened_ms, lease_ms, expires_ms;
    struct session *next;           /* in opening order */
} session_t;

typedef struct session_table {
    session_t *head, *tail;
    uint64_t next_id;
} session_table_t;

/* ---- replicated side (state write lock held; deterministic) ---- */

session_t *session_find(const session_table_t *t, uint64_t sid);
/* Applies a SOP_* command. On SOP_END of a live session, *ended gets its id (else 0) and the
 * caller releases what the session held. Returns 0 or -errno. */
int session_apply(session_table_t *t, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                  uint64_t *ended);
void session_table_free(session_table_t *t);
void session_snapshot(const session_table_t *t, snapout_t *o);
int session_restore(session_table_t *t, snapin_t *in);   /* 0 or -QERR_CORRUPT */

/* ---- node side ---- */

/* This mount's session id (0 before session_start or in unit tests) and node. */
uint64_t session_local_id(void);
struct node *session_node(void);
const char *session_node_name(void);

/* Start hook: remembers n, starts the background proposer, ends the sessions of this node
 * left in the state by an earlier run (crash), and opens this mount's session. Errors are
 * logged; without a session, lock and claim operations fail with EIO. table_of gives the
 * session table inside the state (read under the state lock). */
void session_start(struct node *n, session_table_t *(*table_of)(state_t *st));
/* Sweep hook: renews this mount's session; proposes the end of expired sessions. */
void session_sweep(struct node *n);
/* Stop hook: ends this mount's session, drains and stops the background proposer. */
void session_stop(struct node *n);

/* Hands a command to the background proposer (FIFO order). Takes ownership of b->p. Returns
 * 0, or -ENOTCONN when the proposer is not running (unit tests, after stop): the command is
 * then dropped. done, if not NULL, is called with the result after the commit. */
int session_bg_propose(cmdbuf_t *b, void (*done)(void *arg, int rc), void *arg);

#endif
