/* fs/logs.h — the logs/ namespace (FILE-API §7): replicated append-only logs, one record
 * per write() of up to 128 KiB, read by stable byte offsets, segments sealed into lz4 files
 * and dropped whole by retention, and `.follow/<name>` streaming records as they commit.
 * Two halves: the deterministic state machine, fs/logs_sm.h (commands, read API,
 * invariants; segment files under a directory bound to each shard), and the FUSE front,
 * fs/logs_fuse.c, registered here. Design: docs/LOGS.md. */
#ifndef QFS_FS_LOGS_H
#define QFS_FS_LOGS_H

#include "fs/logs_sm.h"
#include "fs/ns.h"

/* The front of logs/ (fs/ns.h): per node, the open follow files with their parked reads and
 * poll handles, answered from the EFF_LOG_GREW effects of appends and removals; the sweep
 * proposes time retention (TRIM) on the shards this node leads. */
extern const ns_front_t logs_front;

#endif
