/* fs/queues_sm.h — the state machine of queues/ (FILE-API §2; design in docs/QUEUES.md):
 * queues with a ready list, leased (in-flight) and dead messages, and a FIFO of waiting
 * readers. Apply decides every hand-over in log order and emits it as an EFF_QUEUE_MSG
 * effect (fs/effects.h); it never talks to FUSE. This header is all the FUSE front
 * (fs/queues_fuse.c) and the tests use: the commands' encoders, a read API over the state,
 * and the invariant check. It includes no FUSE, mount or node header. */
#ifndef QFS_FS_QUEUES_SM_H
#define QFS_FS_QUEUES_SM_H

#include <stdint.h>
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/state.h"

#define QUEUE_MSG_MAX (1u << 20)         /* bytes of one message (a line without '\n') */
#define QUEUE_VT_DEFAULT 30              /* user.visibility_timeout, seconds */
#define QUEUE_VT_MAX 604800              /* one week */
#define QUEUE_MAXDEL_DEFAULT 5           /* user.max_deliveries */
#define QUEUE_MAXDEL_MAX 1000000
#define QUEUE_MAXLEN_MAX (1ull << 40)    /* user.max_length; 0 = unbounded */
#define QUEUE_EXPIRE_MAX 4096            /* ids in one EXPIRE */

/* Command opcodes of the queues/ namespace (fields after the cmd.h header). */
enum queues_op {
    QOP_MKDIR = 1,    /* str name -> result u64 qid */
    QOP_RMDIR,        /* str name, u8 force (drop messages) */
    QOP_SET,          /* str name, u8 QSET_*, u64 value */
    /* [u64 qid] (optional, last): the queue the command's file was opened on; ENOENT (for
     * CANCEL: nothing removed) when the queue of that name is another one by now */
    QOP_PUSH,         /* str name, u32 n, n x bytes message, [u64 qid] */
    QOP_TAKE,         /* str name, u64 sid, u64 hid, u8 QTAKE_*, [u64 seen, [u64 qid]]
                         -> result u8 delivered */
    QOP_CANCEL,       /* str name, u64 sid, u64 hid, [u64 seen, [u64 qid]]
                         -> result u8 removed; hid 0 with seen: only the report of seen */
    QOP_UNPOP,        /* str name, u64 id, u32 count, bytes message: back to the head */
    QOP_ACK,          /* str name, u64 id: acknowledge a claimed message */
    QOP_EXTEND,       /* str name, u64 id: restart a claim's lease */
    QOP_RETURN,       /* str name, u64 id: claimed but never handed out: back to the head */
    QOP_EXPIRE,       /* str name, u32 n, n x u64 id: leases the leader saw expire */
    QOP_DEADRM,       /* str name, u64 id: delete from dead/ */
};
enum { QSET_VT = 1, QSET_MAXDEL, QSET_MAXLEN };
#define QTAKE_CLAIM 1     /* lease instead of remove */
#define QTAKE_NOWAIT 2    /* EAGAIN instead of waiting when empty */

/* Where a message is. */
enum qwhere { QM_READY = 1, QM_INFLIGHT, QM_DEAD };

extern const ns_sm_t queues_sm;

/* ---- command encoders (the front and the tests build every command with these) ----
 * Each starts b (cmd_begin) at time now; the caller proposes b and frees b->p. */
void queues_cmd_mkdir(cmdbuf_t *b, uint64_t now, const char *q);
void queues_cmd_rmdir(cmdbuf_t *b, uint64_t now, const char *q, int force);
void queues_cmd_set(cmdbuf_t *b, uint64_t now, const char *q, uint8_t which, uint64_t value);
/* PUSH: starts a batch of no messages; queues_cmd_push_add appends one (len > 0) and
 * counts it. queues_cmd_push_count tells how many b holds. queues_cmd_push_end (optional,
 * after the last message) names the queue id the batch is for. */
void queues_cmd_push(cmdbuf_t *b, uint64_t now, const char *q);
void queues_cmd_push_end(cmdbuf_t *b, uint64_t qid);
void queues_cmd_push_add(cmdbuf_t *b, const void *msg, size_t len);
uint32_t queues_cmd_push_count(const cmdbuf_t *b);
/* TAKE and CANCEL carry `seen`: session sid has collected every hand-over to it numbered
 * up to seen (the largest EFF_QUEUE_MSG seq its node's front has been given for the shard),
 * so the state stops keeping those (docs/QUEUES.md "Hand-overs kept"). */
void queues_cmd_take(cmdbuf_t *b, uint64_t now, const char *q, uint64_t sid, uint64_t hid,
                     uint8_t flags, uint64_t seen, uint64_t qid);
void queues_cmd_cancel(cmdbuf_t *b, uint64_t now, const char *q, uint64_t sid, uint64_t hid,
                       uint64_t seen, uint64_t qid);
void queues_cmd_unpop(cmdbuf_t *b, uint64_t now, const char *q, uint64_t id, uint32_t count,
                      const void *msg, size_t len);
/* ACK, EXTEND, RETURN or DEADRM of message id. */
void queues_cmd_msg(cmdbuf_t *b, uint8_t op, uint64_t now, const char *q, uint64_t id);
void queues_cmd_expire(cmdbuf_t *b, uint64_t now, const char *q, uint32_t n,
                       const uint64_t *ids);

/* ---- read API (the caller holds the state lock, read or write; what the views point to
 * is valid while it is held: blob_ref a message to keep it) ---- */

typedef struct queue_view {
    uint64_t qid;
    const char *name;
    uint64_t ctime_ms, mtime_ms;
    uint32_t vt_s, maxdel;
    uint64_t maxlen;
    uint64_t ready, inflight, dead;      /* message counts */
    uint32_t waiters;
    blob_t *head;                        /* bytes of the ready head, NULL when none */
} queue_view_t;

typedef struct qmsg_view {
    uint64_t id, qid;
    uint32_t count;                      /* leases that ended without an acknowledgement */
    uint8_t where;                       /* enum qwhere */
    uint64_t sid, expires_ms;            /* QM_INFLIGHT: claiming session, lease end */
    blob_t *data;
} qmsg_view_t;

/* The queue named name (len bytes) / with id qid: 0 and *v, or -ENOENT. */
int queues_sm_get(const state_t *st, const char *name, size_t len, queue_view_t *v);
int queues_sm_get_qid(const state_t *st, uint64_t qid, queue_view_t *v);
/* How many hand-overs to session sid numbered up to upto the state keeps. */
uint32_t queues_sm_kept(const state_t *st, uint64_t sid, uint64_t upto);
/* Message id (ready, in flight or dead): 0 and *v, or -ENOENT. */
int queues_sm_msg(const state_t *st, uint64_t id, qmsg_view_t *v);
/* Calls fn for each queue in creation order until fn returns nonzero; returns that value
 * (0 when fn never stopped). */
int queues_sm_each(const state_t *st, int (*fn)(void *arg, const queue_view_t *v), void *arg);
/* Calls fn for each message of queue qid in place where, in list order (ready and dead:
 * FIFO; in flight: claim order), until fn returns nonzero; returns that value, or -ENOENT
 * for an unknown queue. */
int queues_sm_each_msg(const state_t *st, uint64_t qid, int where,
                       int (*fn)(void *arg, const qmsg_view_t *m), void *arg);

/* The first broken invariant of queues/, or NULL (restore rejects a snapshot that breaks
 * one): ids at most next_qid and names valid; per queue, ctime <= mtime <= the state's
 * time and settings in range; each list's count, links and places; message ids unique,
 * nonzero and at most next_msg, every message of 1..QUEUE_MSG_MAX bytes; every in-flight
 * message has a lease that ends within QUEUE_VT_MAX of the state's time and a live owner
 * session, ready and dead ones neither; waiters are a FIFO of distinct (session, handle)
 * of live sessions, and never wait beside ready messages; kept hand-overs numbered in order,
 * to handles of live sessions, with a message that fits their kind, message and queue ids
 * at most the ids handed out. */
const char *queues_sm_verify(const state_t *st);
/* ASSERTs the queue table's structure (fs/ntable.h) and queues_sm_verify. */
void queues_sm_check(const state_t *st);

#endif
