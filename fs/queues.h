/* fs/queues.h — the queues/ namespace module (FILE-API §2): FIFO message queues with push,
 * pop, leased claims with acknowledgement, redelivery and a dead-letter directory. The state
 * machine part is deterministic; blocking pop/claim reads register a waiter in the replicated
 * state and are answered when apply's effect is delivered (design: docs/QUEUES.md). */
#ifndef QFS_FS_QUEUES_H
#define QFS_FS_QUEUES_H

#include <stdint.h>
#include "fs/ns.h"
#include "fs/ns_sm.h"

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

/* The state machine (fs/ns_sm.h) and the FUSE front (fs/ns.h) of queues/. Hand-overs are
 * EFF_QUEUE_MSG effects (fs/effects.h): wid is the reader's handle id. */
extern const ns_sm_t queues_sm;
extern const ns_front_t queues_front;

/* Counts of a queue, for tests and `len`: returns 0 or -ENOENT. State lock held. */
int queues_counts(state_t *st, const char *name, uint64_t *ready, uint64_t *inflight,
                  uint64_t *dead);

#endif
