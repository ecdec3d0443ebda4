/* fs/queues.h — the queues/ namespace module (FILE-API §2): FIFO message queues with push,
 * pop, leased claims with acknowledgement, redelivery and a dead-letter directory. The state
 * machine part is deterministic; blocking pop/claim reads register a waiter in the replicated
 * state and are answered from the apply hook (design: docs/QUEUES.md). */
#ifndef QFS_FS_QUEUES_H
#define QFS_FS_QUEUES_H

#include <stdint.h>
#include "fs/ns.h"

#define QUEUE_MSG_MAX (1u << 20)         /* bytes of one message (a line without '\n') */
#define QUEUE_VT_DEFAULT 30              /* user.visibility_timeout, seconds */
#define QUEUE_VT_MAX 604800              /* one week */
#define QUEUE_MAXDEL_DEFAULT 5           /* user.max_deliveries */
#define QUEUE_MAXDEL_MAX 1000000
#define QUEUE_MAXLEN_MAX (1ull << 40)    /* user.max_length; 0 = unbounded */

/* Command opcodes of the queues/ namespace (fields after the cmd.h header). */
enum queues_op {
    QOP_MKDIR = 1,    /* str name -> result u64 qid */
    QOP_RMDIR,        /* str name, u8 force (drop messages) */
    QOP_SET,          /* str name, u8 QSET_*, u64 value */
    QOP_PUSH,         /* str name, u32 n, n x bytes message */
    QOP_TAKE,         /* str name, u64 sid, u64 hid, u8 QTAKE_* -> result u8 delivered */
    QOP_CANCEL,       /* str name, u64 sid, u64 hid -> result u8 removed */
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

/* One hand-over decided by apply: message id (with its bytes) to waiter (sid, hid). gone means
 * the queue was removed while the waiter waited (msg NULL). */
typedef struct queues_delivery {
    uint64_t sid, hid, id;
    uint32_t count;
    uint8_t claim, gone;
    blob_t *msg;                  /* reference owned by the delivery */
    char *qname;                  /* owned */
    struct queues_delivery *next;
} queues_delivery_t;

extern const ns_module_t queues_module;

/* A session ended (fs/session.c via fs/locks.c): its waiters are dropped and its claims end as
 * if their leases expired. State write lock held; deterministic. */
void queues_session_end(state_t *st, uint64_t sid, uint64_t now_ms);

/* Hands out the deliveries decided by the last applies (the module's on_apply; also called by
 * locks/ after a session end). State write lock held. */
void queues_on_apply(state_t *st);

/* Test hook: when set, each delivery goes to fn (which must not keep d) instead of this
 * mount's open files. */
void queues_set_observer(void (*fn)(const queues_delivery_t *d, void *arg), void *arg);

/* Counts of a queue, for tests and `len`: returns 0 or -ENOENT. State lock held. */
int queues_counts(state_t *st, const char *name, uint64_t *ready, uint64_t *inflight,
                  uint64_t *dead);

#endif
