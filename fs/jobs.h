/* fs/jobs.h — the jobs/ namespace (FILE-API §8): scheduled and on-demand jobs run exactly
 * once per scheduled time across the cluster. Two halves: the deterministic state machine,
 * fs/jobs_sm.h (commands, read API, invariants), and the FUSE front, fs/jobs_fuse.c,
 * registered here, which also holds the node's scheduler (on shard leaders) and runners
 * (on nodes with jobs enabled). Design: docs/JOBS.md. */
#ifndef QFS_FS_JOBS_H
#define QFS_FS_JOBS_H

#include "fs/jobs_sm.h"
#include "fs/ns.h"

/* The front of jobs/ (fs/ns.h): its context holds the open `.events` watches (to which
 * EFF_CONFIG_REV effects of NS_JOBS are delivered), the runs this node is running (one
 * thread each), and the identity runs take. */
extern const ns_front_t jobs_front;

#endif
