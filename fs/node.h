/* fs/node.h — one quorumfs node as the FUSE side sees it: the shard (fs/state.h), the
 * replicated group that feeds it, the node's mount session (fs/session.h), the namespace
 * fronts' contexts (fs/ns.h) with the delivery of apply's effects to them, and the sweeper
 * thread that runs the session's renewal and the fronts' leader-side sweeps (which turn
 * time into log entries: cache expiry and read touches, lease expiry...). */
#ifndef QFS_FS_NODE_H
#define QFS_FS_NODE_H

#include <stdint.h>
#include "cluster/group.h"
#include "fs/cmd.h"
#include "fs/state.h"

typedef struct node_opts {
    const char *data_dir;
    uint64_t cache_max_bytes;     /* LRU cap on cache value bytes */
    uint64_t snapshot_bytes;      /* 0 = group default */
} node_opts_t;

typedef struct node node_t;

/* Opens the group in data_dir (restore + replay) and starts the sweeper thread.
 * On failure returns -errno-like negative QERR code and a malloc'ed *errmsg. */
int node_open(const node_opts_t *opts, node_t **out, char **errmsg);
/* Shards this node serves. The embedded node has one, which holds every unit; a cluster
 * node will hold several and reach the one of a unit with fs/route.h's route_shard. */
uint32_t node_nshards(const node_t *n);

/* Stops everything that proposes or delivers on the node's own: ends this mount's session
 * (its lock waits are answered, its claims end), stops the background proposer, joins the
 * sweeper. After it returns no apply runs unless a FUSE handler proposes, so no effect is
 * delivered to a request any more. The mount calls it after the FUSE loop ends and BEFORE
 * it destroys the FUSE session, so that every answer those ends cause goes out on a live
 * session. Idempotent; node_close calls it too. */
void node_quiesce(node_t *n);
void node_close(node_t *n);

state_t *node_state(node_t *n);
group_t *node_group(node_t *n);
const char *node_data_dir(node_t *n);
/* The node's operation counters and latencies (fs/metrics.h). */
struct metrics *node_metrics(node_t *n);
/* The options the node was opened with (data_dir as node_data_dir). */
const node_opts_t *node_options(node_t *n);
/* The context namespace ns's front (fs/ns.h) created at open; NULL if it has none, or for
 * a NULL n. Valid until node_close. */
void *node_front(node_t *n, int ns);
/* The node's mount session (fs/session.h); NULL for a NULL n. */
struct session_local *node_session(node_t *n);

/* Wall-clock milliseconds: the leader's time written into commands. */
uint64_t node_now_ms(void);

/* Proposes the command in b (and frees b->p). Blocks until applied. Returns apply's result
 * (0 or -errno) or a group error mapped to -errno (ENOSPC, EFBIG, EIO). res may be NULL. */
int node_propose(node_t *n, cmdbuf_t *b, sm_result_t *res);

/* Wall time (ms) of the last proposal refused because the data disk was full; 0 if never. */
uint64_t node_last_nospace_ms(node_t *n);

/* Maps a cluster/ QERR code (negative) to a negative errno. */
int node_errno(int qerr);

#endif
