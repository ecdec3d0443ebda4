/* cluster/group.h — one replicated log group as fs/ sees it: propose a command, and it
 * returns once the command is committed (durable on a majority, fsynced) and applied.
 * The only implementation today is the single-node group (cluster/group_solo.c): a WAL with
 * group commit plus lz4 snapshots. A later Raft-backed group keeps this interface. */
#ifndef QFS_CLUSTER_GROUP_H
#define QFS_CLUSTER_GROUP_H

#include <stddef.h>
#include <stdint.h>
#include "cluster/hist.h"
#include "cluster/sm.h"

typedef struct group group_t;

typedef struct group_config {
    const char *dir;          /* data directory for this group; must exist and be writable */
    uint64_t snapshot_bytes;  /* snapshot + compact after this many WAL bytes; 0 = 64 MiB */
    size_t max_cmd;           /* largest command accepted; 0 = 2 MiB */
} group_config_t;

typedef struct group_stats {
    uint64_t term;            /* always 1 for the single-node group */
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t snapshot_index;  /* index covered by the newest snapshot, 0 if none */
    uint64_t snapshots;       /* snapshots taken since open */
    uint64_t wal_bytes;       /* bytes in live WAL segments */
    uint64_t wal_appends;     /* records appended since open */
    uint64_t wal_fsyncs;      /* fsync/fdatasync calls on the WAL since open */
    hist_t fsync_latency;     /* per-fsync latency */
    hist_t commit_latency;    /* propose -> applied latency */
    int failed;               /* nonzero after an unrecoverable disk error */
} group_stats_t;

/* Opens (or creates) the group in cfg->dir: restores the newest valid snapshot through
 * ops->restore, then replays the WAL through ops->apply (res = NULL). A torn tail at the end
 * of the last segment is truncated; a corrupt record before it makes this fail with
 * -QERR_CORRUPT. On any failure *errmsg gets a malloc'ed message naming the file and, for
 * corruption, the byte offset (caller frees it); on success *errmsg is NULL. Starts the
 * commit thread.
 * Returns 0 and *out, or -QERR_*. ctx is passed to every ops call; ops must outlive the group. */
int group_open(const group_config_t *cfg, const sm_ops_t *ops, void *ctx, group_t **out,
               char **errmsg);

/* Proposes cmd (copied; caller keeps ownership). Blocks until the command is durable and
 * applied, then copies apply's result into *res (may be NULL) and returns 0. Returns
 * -QERR_TOOBIG (over max_cmd), -QERR_NOSPACE (disk full: nothing was committed, the group
 * keeps working), -QERR_IO / -QERR_FAILED (disk error; the group refuses further writes),
 * -QERR_CLOSED (closing). Concurrent proposals share one fsync (group commit). Thread-safe. */
int group_propose(group_t *g, const void *cmd, size_t len, sm_result_t *res);

/* Fills *st with a consistent-enough copy of the counters. Thread-safe. */
void group_get_stats(group_t *g, group_stats_t *st);

/* Stops the commit thread after in-flight proposals finish, closes files. NULL is a no-op. */
void group_close(group_t *g);

#endif
