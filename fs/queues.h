/* fs/queues.h — the queues/ namespace (FILE-API §2): FIFO message queues with push, pop,
 * leased claims with acknowledgement, redelivery and a dead-letter directory. Two halves:
 * the deterministic state machine, fs/queues_sm.h (commands, read API, invariants), and the
 * FUSE front, fs/queues_fuse.c, registered here. Design: docs/QUEUES.md. */
#ifndef QFS_FS_QUEUES_H
#define QFS_FS_QUEUES_H

#include "fs/ns.h"
#include "fs/queues_sm.h"

/* The front of queues/ (fs/ns.h): a per-node table of open pop/claim files, to which
 * EFF_QUEUE_MSG effects are delivered (wid = the reader's handle id). */
extern const ns_front_t queues_front;

#endif
