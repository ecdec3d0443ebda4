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

/* Cluster node ids are 1..NODE_ID_MAX: each id owns one slice of the proposer-picked id
 * range (node_pid_range). */
#define NODE_ID_MAX 4095
#define NODE_DEFAULT_SHARDS 16
#define NODE_SHARDS_MAX 256
#define NODE_DEFAULT_REPLICAS 3

typedef struct node_opts {
    const char *data_dir;
    uint64_t cache_max_bytes;     /* LRU cap on cache value bytes */
    uint64_t snapshot_bytes;      /* 0 = group default */
    /* A cluster node (docs/CLUSTER.md): id != 0 and peers given. id 0: the embedded single
     * node (group_open), and the fields below are ignored. */
    uint64_t id;                  /* 1..NODE_ID_MAX, one of peers[] */
    const char *listen;           /* HOST:PORT for peers; NULL: this node's address in peers */
    const group_peer_t *peers;    /* every member, this node included (copied at open) */
    size_t n_peers;
    uint64_t cluster_id;          /* nodes of another cluster id are refused */
    uint32_t timeout_ms;          /* proposals and read barriers; 0 = 5000 */
    const char *tls_cert, *tls_key, *tls_ca;   /* mutual TLS between nodes: all or none
                                                  (docs/TRANSPORT.md "TLS") */
    uint32_t shards;              /* shards (Raft groups) of the cluster, the same on every
                                     node and at every start; 0 = NODE_DEFAULT_SHARDS */
    uint32_t replicas;            /* voters of each shard, 1..n_peers, fixed at the first
                                     start; 0 = min(n_peers, NODE_DEFAULT_REPLICAS). The other
                                     nodes follow the shard as learners */
    int no_lease_reads;           /* read barriers without leader leases (--no-lease-reads) */
    int join;                     /* a member added with `cluster add`, first start: its groups
                                     wait to be added (cluster_id is the cluster's, from
                                     --join) instead of founding with peers[] */
    /* jobs/ runs on this node (docs/JOBS.md): 0 = the default (on for the embedded node,
     * off on a cluster node), 1 = on (--jobs), -1 = off (--no-jobs). jobs_user: the user
     * runs execute as (--jobs-user); NULL = the mounting user, or nobody for a root mount. */
    int jobs;
    const char *jobs_user;
} node_opts_t;

typedef struct node node_t;

/* Opens the group in data_dir (restore + replay) and starts the sweeper thread.
 * On failure returns -errno-like negative QERR code and a malloc'ed *errmsg. */
int node_open(const node_opts_t *opts, node_t **out, char **errmsg);
/* Shards this node serves: 0..node_nshards-1. The embedded node has one, which holds every
 * unit; a cluster node has --shards of them (every node a replica of every shard), and a
 * unit's is fs/route.h's route_shard (node_shard_of). */
uint32_t node_nshards(const node_t *n);
/* The voters of each shard (R); the embedded node: 1. */
uint32_t node_nreplicas(const node_t *n);
/* Shard k's preferred leader (the first of its voters by rendezvous hash,
 * cluster/placement.h), 0 on the embedded node. */
uint64_t node_preferred_leader(const node_t *n, uint32_t k);
/* The shard of the object at path (namespace-relative) in namespace ns: route_shard with
 * this node's shard count. A namespace root spans every shard: 0 here, and callers that
 * list or count a root visit each shard. */
uint32_t node_shard_of(const node_t *n, int ns, const char *path);
/* The shard holding tree object id (an inode number of cache/, config/...), or -1 when no
 * shard has it now. Object ids are unique across shards: state-picked ones come from each
 * shard's own range (state_new_shard), proposer-picked ones from the node's slice. Takes
 * each shard's read lock in turn (none held by the caller). */
int node_shard_of_id(node_t *n, uint64_t id);
/* The shard keeping file id as lately replaced by a rename (tree_replaced), or -1. */
int node_shard_of_replaced(node_t *n, uint64_t id);
/* Runs fn(n, k, arg) for every shard k, all at once (one thread each, joined before it
 * returns; inline when there is one shard or a thread cannot start): for the start-up
 * proposals every shard needs, so that shards without a quorum yet cost one timeout, not
 * one each. */
void node_each_shard(node_t *n, void (*fn)(node_t *n, uint32_t k, void *arg), void *arg);

/* Stops everything that proposes or delivers on the node's own: ends this mount's session
 * (its lock waits are answered, its claims end), stops the background proposer, joins the
 * sweeper. After it returns no apply runs unless a FUSE handler proposes, so no effect is
 * delivered to a request any more. The mount calls it after the FUSE loop ends and BEFORE
 * it destroys the FUSE session, so that every answer those ends cause goes out on a live
 * session. Idempotent; node_close calls it too. */
void node_quiesce(node_t *n);
void node_close(node_t *n);

state_t *node_state(node_t *n, uint32_t shard);
group_t *node_group(node_t *n, uint32_t shard);
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

/* 1 if this node may run what only the shard's leader runs (the sweeps that turn time into
 * log entries: cache expiry, lease expiry, silent sessions): always on the embedded node;
 * on a cluster node when it leads the shard now (a hint: leadership may move right after,
 * and apply re-checks what such a command decides). */
int node_is_leader(node_t *n, uint32_t shard);

/* A linearizable read barrier (group_read_barrier) before a FUSE operation reads the shard's
 * state: returns 0 once the local state has applied everything committed before the call
 * (at once on the embedded node), or -EIO when that cannot be known in the node's timeout
 * (no leader, no quorum) or the node is closing. Thread-safe. */
int node_read_barrier(node_t *n, uint32_t shard);
/* Nonzero when this node knows the shard cannot commit now, without waiting: it is not the
 * shard's leader (a leader cut off steps down by check-quorum), reaches no leader, and
 * reaches fewer than a majority of the shard's voters (so no leader it reaches can be
 * elected either). A write() of a save
 * then fails with EIO at once (FILE-API §1 "Durability": errors at the earliest call that
 * can know them), instead of its close() after the timeout. 0 on the embedded node, and
 * while the member record is not known yet. Thread-safe. */
int node_quorum_lost(node_t *n, uint32_t shard);
/* The barrier on every shard at once (for what spans them: a namespace root's listing and
 * attributes): 0 or the -EIO of a shard that failed. */
int node_read_barrier_all(node_t *n);

/* The node's own slice of the proposer-picked ids (fs/tree_sm.h STATE_PID_FIRST..END):
 * *next is where this run starts handing them out, *end one past the last. The embedded
 * node has the whole range from the state's next_pid on; cluster node i has
 * [FIRST + (i-1)*2^48, FIRST + i*2^48), starting at an offset that grows with the wall
 * clock (256 ids per ms since 2024), so that a restarted node does not hand out again an
 * id it gave before (and never one another node can give). */
void node_pid_range(node_t *n, uint64_t *next, uint64_t *end);

/* Cluster membership as .cluster/ shows it. node_cluster_id: this node's id, 0 for the
 * embedded node. node_member(n, i, &m) for i < node_nmembers(n) (0 on the embedded node):
 * the peers in id order, with whether the transport holds a connection to them (this node
 * itself is always connected) and the transport's statistics of the peer (as of at most
 * 500 ms ago; zero for this node). */
typedef struct node_member {
    uint64_t id;
    uint8_t state;                /* the record's: 1 joining, 2 active, 3 leaving (cluster/
                                     meta_sm.h); 0 before the record is known (founding) */
    char addr[128];
    int self;
    int connected;
    group_peer_stats_t stats;
} node_member_t;
uint64_t node_cluster_id(const node_t *n);
size_t node_nmembers(const node_t *n);

/* Drains (on) or undrains member id (`quorumfs cluster drain|undrain ID`): the drained flag
 * goes into the member record of the meta group (docs/MEMBERSHIP.md), and every node's
 * leader balancer then moves each shard's leadership to its first voter that is not
 * drained (or back). Blocks until committed and applied here. Returns 0, -ENOENT (no such
 * member), -EBUSY (draining it would leave some shard no undrained voter), -EOPNOTSUPP (the
 * embedded node), or a proposal's error (-EIO: no quorum). */
int node_drain(node_t *n, uint64_t id, int on);
/* `quorumfs cluster add ID=ADDR`: records member id (1..NODE_ID_MAX) at addr as joining;
 * the mover then adds it to every group once it runs (docs/MEMBERSHIP.md). *text gets the
 * command line to start it with (malloc'ed; may be NULL). Returns 0, -EEXIST, -EADDRINUSE,
 * -ENOSPC (16 members), -EINVAL (id), -EDESTADDRREQ (address), -EOPNOTSUPP (embedded
 * node), or a proposal's error. */
int node_member_add(node_t *n, uint64_t id, const char *addr, char **text);
/* `quorumfs cluster remove ID`: marks member id leaving; the mover moves its replicas and
 * leaderships away, then drops it from the record and every node's transport. Returns 0
 * (also when it is leaving already), -ENOENT, -EBUSY (fewer active members than replicas
 * would be left), -EOPNOTSUPP, or a proposal's error. */
int node_member_remove(node_t *n, uint64_t id);
/* `quorumfs cluster rebalance --dry-run`: the moves the layout still asks for, as this node
 * sees the groups (malloc'ed text). Returns 0, -EOPNOTSUPP, -ENOMEM. */
int node_rebalance_plan(node_t *n, char **text);
/* The mount is about to serve (its SIGTERM handler in place): from now on a node that must
 * stop (a joining node started with another --shards/--replicas than the cluster's) signals
 * the thread that opened it. Returns 1 when it asked to stop already (then do not serve). */
int node_serve_begin(node_t *n);
/* Whether the node asked its mount to stop (it said why on stderr). */
int node_stop_requested(node_t *n);
/* 1 when this node joined a cluster (cluster add, --join) and is not yet in shard k's
 * configuration as it sees it: proposals there cannot commit until a leader adds it (its
 * start-up proposals wait for the sweep instead). 0 otherwise, and on founding members. */
int node_waits_to_join(node_t *n, uint32_t k);
/* 1 when this cluster node was removed from the cluster (the member record no longer lists
 * it): its proposals cannot commit anywhere any more, so nothing should wait for them (its
 * sessions end by their lease on the members). 0 otherwise. */
int node_removed(node_t *n);
/* Whether member id is drained, as this node applied the record. */
int node_member_drained(node_t *n, uint64_t id);
int node_member(node_t *n, size_t i, node_member_t *out);

/* Wall-clock milliseconds: the leader's time written into commands. */
uint64_t node_now_ms(void);

/* Proposes the command in b (and frees b->p). Blocks until applied. Returns apply's result
 * (0 or -errno) or a group error mapped to -errno (ENOSPC, EFBIG, EIO). res may be NULL.
 * A command that frees space (see "space" below) is logged even on a full disk, giving up
 * the reserve if it must; any other one gets -ENOSPC while node_space_check would refuse
 * its size. */
int node_propose(node_t *n, uint32_t shard, cmdbuf_t *b, sm_result_t *res);

/* Wall time (ms) of the last proposal refused because the data disk was full; 0 if never. */
uint64_t node_last_nospace_ms(node_t *n);

/* ---- space on the data disk (docs/OPERATIONS.md, "Disk full") ----
 * The node keeps two things free on the data disk so that a full disk can always be emptied
 * from the mount: the reserve, a file <data>/reserve (1/32 of the disk, 256 KiB to 16 MiB)
 * that is given up (deleted) when a freeing command (rm, rmdir, queue acknowledge and
 * delete, unlock, session upkeep) meets ENOSPC, and room for the next snapshot, which must
 * be written whole before the WAL and the old snapshot it replaces can be deleted: other
 * writes are refused while less than the node's own files (WAL + snapshots) plus 1/32 plus
 * 64 KiB would stay free after them. node_propose classifies commands by opcode; while the
 * reserve is given up only freeing commands are logged. The sweeper re-creates the reserve
 * when the space is back. */

/* Returns 0 when a command carrying `bytes` more bytes of data can be logged now, or
 * -ENOSPC when it cannot (the disk is short of the held-back room above, the reserve is
 * given up, or the WAL reported ENOSPC since the last look at the disk). Cheap: a mutex
 * and a comparison; the disk is looked at (statvfs of the data dir and the sizes of the
 * node's files) at most every 100 ms. A hint, not a reservation: the command's proposal is
 * checked again and may still fail with ENOSPC. For write(): call it with the bytes the
 * write adds to the save before buffering them, and fail the write with its result. */
int node_space_check(node_t *n, size_t bytes);

typedef struct node_space {
    uint64_t disk_bytes;          /* size of the data disk */
    uint64_t free_bytes;          /* free on it for the daemon's user (statvfs f_bavail) */
    uint64_t data_bytes;          /* held by the node's WAL and snapshots */
    uint64_t held_bytes;          /* free space held back for the next snapshot */
    uint64_t reserve_bytes;       /* size of the reserve when in place */
    uint64_t avail_bytes;         /* bytes new writes may still add; 0 while full */
    int reserve_in_place;         /* 0: given up, deletes are running on it */
    uint64_t reserve_gone_ms;     /* wall ms it was given up (0 when in place) */
    uint64_t frees_on_reserve;    /* freeing commands logged since it was given up */
    int full;                     /* a write of a largest value (1 MiB) gets ENOSPC now */
    int known;                    /* 0 when statvfs of the data dir failed (all 0 then) */
} node_space_t;

/* Fills *out from the latest look at the disk (taken now if older than 100 ms). */
void node_space(node_t *n, node_space_t *out);

/* Wall time (ms) node_open began: the mount's own directories show it as their times. */
uint64_t node_start_ms(const node_t *n);

/* Maps a cluster/ QERR code (negative) to a negative errno. */
int node_errno(int qerr);

#endif
