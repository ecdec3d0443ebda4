/* fs/session_sm.h — the replicated session table of a shard. Every mount opens a session
 * with a lease; locks, queue claims and queue waiters belong to a session and are released
 * when it ends. The table lives in the state itself (state_t.sessions), not in a namespace:
 * applying SOP_END calls every namespace's session_end in namespace order (fs/ns_sm.h).
 * Deterministic; no FUSE, mount or node header. The node side (this mount's own session,
 * renewal, leader-side expiry) is fs/session.h. */
#ifndef QFS_FS_SESSION_SM_H
#define QFS_FS_SESSION_SM_H

#include <stdint.h>
#include "cluster/sm.h"
#include "fs/cmd.h"
#include "fs/effects.h"
#include "fs/snapio.h"

struct state;

#define SESSION_NODE_MAX 64
#define SESSION_LEASE_MAX_MS 86400000ull  /* a session lease over a day is rejected (EINVAL) */

/* Session commands keep their historical wire place: opcodes >= SOP_OPEN in the locks/
 * namespace (ns 4, docs/LOCKS.md). fs/state.c routes them here (session_sm_owns). */
#define SESSION_CMD_NS 4   /* NS_LOCKS */
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
    session_t *head, *tail;         /* opening order (= id order) */
    uint64_t next_id;               /* ids ever handed out */
} session_table_t;

/* Nonzero when the command with header h is a session command. */
static inline int session_sm_owns(const cmd_hdr_t *h)
{
    return h->ns == SESSION_CMD_NS && h->op >= SOP_OPEN;
}

session_t *session_find(const session_table_t *t, uint64_t sid);

/* Encoders of the session commands (cmd_begin at time now; the caller proposes b). */
void session_cmd_open(cmdbuf_t *b, uint64_t now, const char *node, uint32_t pid,
                      uint64_t lease_ms);
void session_cmd_renew(cmdbuf_t *b, uint64_t now, uint64_t sid, uint64_t lease_ms);
void session_cmd_end(cmdbuf_t *b, uint64_t now, uint64_t sid, int only_if_expired);

/* Applies a SOP_* command to st->sessions; SOP_END of a live session then ends it in every
 * namespace (ns_sm_session_end). Write lock held. Returns 0 or -errno. */
int session_sm_apply(struct state *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                     effects_t *fx);
void session_sm_free(session_table_t *t);
void session_sm_snapshot(const session_table_t *t, snapout_t *o);
int session_sm_restore(session_table_t *t, uint64_t now, snapin_t *in);   /* 0 or -QERR_* */
/* Asserts the table's invariants: ids strictly growing in list order, at most next_id,
 * tail is the last, node names non-empty and terminated. */
void session_sm_check(const session_table_t *t, uint64_t now);

#endif
