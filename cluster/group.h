/* cluster/group.h — one replicated log group as fs/ sees it: propose a command, and it
 * returns once the command is committed (durable on a majority, fsynced) and applied.
 * Two implementations behind one handle type: the single-node group (cluster/group_solo.c,
 * group_open: a WAL with group commit plus lz4 snapshots), and the Raft-backed group
 * (cluster/group_raft.c, group_open_raft or a group_node_t hosting several: a Raft group of a
 * multi-group node loop, cluster/mraft.h, over TCP). Design: docs/CLUSTER.md. */
#ifndef QFS_CLUSTER_GROUP_H
#define QFS_CLUSTER_GROUP_H

#include <stddef.h>
#include <stdint.h>
#include "cluster/frame.h"
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
    uint64_t node_id;         /* this node's id; 0 for the single-node group */
    uint64_t leader;          /* the leader's node id as this node knows it, 0 if none (the
                                 single-node group: 0, it always leads) */
    int is_leader;            /* this node leads the group (the single-node group: 1) */
    int is_learner;           /* this node is a non-voting learner of the group (Raft group
                                 added with learners, group_node_add_members); else 0 */
    uint64_t preferred_leader; /* the group's preferred leader (voters[0] of
                                 group_node_add_members, balancing on), 0 if none */
    uint64_t leader_transfers; /* leadership transfers to it started by this node */
    uint64_t installs;        /* snapshots received from a leader and installed since open */
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t snapshot_index;  /* index covered by the newest snapshot, 0 if none */
    uint64_t snapshots;       /* snapshots taken since open */
    uint64_t wal_bytes;       /* bytes in live WAL segments (Raft group: the node's shared
                                 store, all its groups) */
    uint64_t wal_appends;     /* records appended since open (Raft group: node-wide) */
    uint64_t wal_fsyncs;      /* fsync/fdatasync calls on the WAL since open (Raft group:
                                 node-wide) */
    uint64_t lease_reads;     /* read barriers the calling thread answered from the leader's
                                 lease, without the node loop (Raft group: node-wide; the
                                 single-node group: 0) */
    hist_t fsync_latency;     /* per-fsync latency (Raft group: fdatasyncs of the node's
                                 shared store) */
    hist_t commit_latency;    /* propose -> applied latency */
    int failed;               /* nonzero after an unrecoverable disk error */
    /* on the leader of a Raft group: the snapshots it is sending to members catching up
     * (the first GROUP_SNAP_SENDS_MAX of them), bytes of the file sent so far (a transfer
     * that restarts starts again at 0) and the file's size (0 if unknown) */
    uint32_t n_snap_sends;
    struct group_snap_send { uint64_t to, index, sent, total; } snap_sends[4];
} group_stats_t;
#define GROUP_SNAP_SENDS_MAX 4

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
 * -QERR_CLOSED (closing). Concurrent proposals share one fsync (group commit). Thread-safe.
 * A Raft group takes proposals on ANY member: a follower forwards the command to the leader
 * and returns once the entry is committed by a majority AND applied on this node, so a read
 * here right after sees it. Each call is applied AT MOST ONCE: the group wraps the command
 * in an envelope (this node's client id, a sequence number; docs/FORMATS.md §7) and every
 * replica skips a sequence number it has applied already, so the call itself resends the
 * same envelope when an attempt gets no answer within the retry interval (a lost forward or
 * answer, a leader that died or changed), until the timeout; *res then holds the result
 * saved when it was first applied. It returns -QERR_TIMEOUT (fs/ gives EIO) when no attempt
 * is answered within the group's timeout (no quorum or no leader all along): the outcome
 * is then unknown, but the command applies at most once, and not at all once a call this
 * node began after the timeout has applied. (-QERR_TIMEOUT also when this node's oldest
 * unfinished call on the group stays 1024 calls back for the whole timeout: then nothing
 * was proposed.) A caller that retries after it makes a NEW command, which may apply in
 * addition. A node's client id is new at every open, so a call in flight when its node
 * closed is not resent by the next run. It never blocks longer than the timeout (plus one
 * tick). */
int group_propose(group_t *g, const void *cmd, size_t len, sm_result_t *res);

/* A linearizable read barrier: returns 0 once the local state machine has applied
 * everything committed before the call began, so a read of it afterwards sees every
 * proposal acknowledged (on any node) before the barrier. The Raft group asks the leader
 * for its commit index (ReadIndex, Raft thesis §6.4; answered from the leader's lease unless
 * no_lease_reads) and waits to apply up to it; the single-node group returns 0 at once.
 * timeout_ms 0 = the group's timeout.
 * Returns 0, -QERR_TIMEOUT (no quorum or no leader in time), -QERR_CLOSED, -QERR_FAILED.
 * Thread-safe. */
int group_read_barrier(group_t *g, uint32_t timeout_ms);

/* 1 if this node leads the group now (always for the single-node group), else 0. A hint:
 * leadership can change right after. Thread-safe. */
int group_is_leader(group_t *g);

/* Fills *st with a consistent-enough copy of the counters. Thread-safe. */
void group_get_stats(group_t *g, group_stats_t *st);

/* Stops the commit thread after in-flight proposals finish, closes files. NULL is a no-op.
 * A Raft group from group_open_raft closes its whole node (waiting proposals get
 * -QERR_CLOSED); one from group_node_add is owned by its node: this is a no-op, and
 * group_node_close frees it. */
void group_close(group_t *g);

/* ---- the Raft-backed group ---------------------------------------------------------------
 * A node (group_node_t) is one Raft node loop (cluster/mraft.h) with its TCP transport
 * (cluster/mraft_tcp.h) and one data directory; it hosts one or more groups (shards), each a
 * group_t with its own state machine. Usage for several groups:
 *     group_node_open(cfg) ; group_node_add(...) per group ; group_node_start ;
 *     ... group_propose / group_read_barrier on each group_t ... ; group_node_close
 * and for one group per node, group_open_raft does all of it (group_close undoes it).
 * ------------------------------------------------------------------------------------------ */
typedef struct group_node group_node_t;

typedef struct group_peer {
    uint64_t id;              /* nonzero */
    const char *addr;         /* "HOST:PORT" the peer listens on (resolved once, at open) */
} group_peer_t;

typedef struct group_raft_config {
    uint64_t id;              /* this node's id, nonzero, unique in the cluster */
    const char *listen;       /* "HOST:PORT" to listen on for peers ("[v6]:PORT" too) */
    const group_peer_t *peers; /* the cluster's nodes; an entry with this node's id is skipped.
                                 Copied */
    size_t n_peers;
    uint64_t cluster_id;      /* nodes of another cluster id are refused at the handshake */
    uint64_t data_incarnation; /* sent in the HELLO: names dir's contents (docs/MEMBERSHIP.md
                                 "A wiped node"); 0 = none */
    const char *dir;          /* data directory; must exist and be writable: holds raft/ (the
                                 shared Raft log) and snap-<group>/ per group */
    uint32_t tick_ms;         /* Raft tick period; 0 = 100 */
    uint32_t election_tick;   /* election timeout in ticks; 0 = 10; the same on every node */
    uint32_t heartbeat_tick;  /* 0 = 1 */
    uint32_t timeout_ms;      /* default wait of group_propose and group_read_barrier;
                                 0 = 5000 */
    uint32_t retry_ms;        /* group_propose resends a proposal not answered after this
                                 long (same envelope; never applied twice); 0 = the election
                                 timeout (tick_ms * election_tick); at most timeout_ms */
    uint64_t snapshot_bytes;  /* a group snapshots after applying this many bytes; 0 = 16 MiB */
    uint32_t snap_chunk_bytes; /* InstallSnapshot chunk; 0 = 1 MiB */
    uint64_t segment_bytes;   /* the Raft log's segment size; 0 = 64 MiB */
    size_t max_cmd;           /* largest command; 0 = 2 MiB */
    uint64_t seed;            /* election timer seed; 0 = from the clock */
    /* Optional: receives the transport's log lines (connections, refusals, malformed frames;
     * no trailing newline; called on the node's loop thread). NULL: stderr, prefixed
     * "quorumfs: transport: ". */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    /* Optional mutual TLS between the nodes (docs/TRANSPORT.md "TLS"): PEM paths of this
     * node's certificate (its subject CN must be quorumfs-<id>), its unencrypted private key,
     * and the CA bundle peers' certificates must chain to. All three or none (none: plain
     * TCP); read at open (a bad set fails the open with -QERR_INVAL and *errmsg) and again
     * on transport_request_tls_reload (SIGHUP), which keeps the old set if the new is bad. */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_ca;
    /* Leader balancing of the groups added with group_node_add_members (see there). 0: on;
     * nonzero: off (no group has a preferred leader: whoever wins an election keeps
     * leading, e.g. tests that need a fixed leader). */
    int leader_balance_off;
    uint32_t balance_ms;      /* a group tries at most one transfer per this long; 0 = 3000 */
    uint32_t balance_backoff_ms; /* a target whose transfer failed is left alone this long;
                                 0 = 30000 */
    int no_lease_reads;       /* 0: leaders answer read barriers from their lease (docs/
                                 CLUSTER.md "Lease reads"); nonzero: a heartbeat round each.
                                 The same on every node */
} group_raft_config_t;

/* Opens the node: binds cfg->listen, adds the peers, opens the Raft log in cfg->dir (a first
 * start creates it; a later one replays it). Nothing runs until group_node_start. Returns 0
 * and *out, or -QERR_INVAL (bad id, address, or peer list), -QERR_IO (listen failed, e.g.
 * the port is taken), -QERR_CORRUPT..., with a malloc'ed *errmsg (caller frees; may be
 * NULL). */
int group_node_open(const group_raft_config_t *cfg, group_node_t **out, char **errmsg);

/* Adds group `group` to a node not started yet. voters[0..n_voters) are its founding members
 * (node ids; this node must be one), the same list on every one; a later start ignores them
 * (the configuration is in the log). ops/ctx is the group's state machine, holding an EMPTY
 * state; its snapshot is restored and its committed log re-applied before this returns.
 * ops and ctx must outlive the node. *out is owned by the node (group_node_close frees it).
 * Returns 0, or -QERR_EXISTS, -QERR_INVAL, -QERR_CORRUPT, -QERR_IO... with *errmsg. */
int group_node_add(group_node_t *nd, uint32_t group, const uint64_t *voters, size_t n_voters,
                   const sm_ops_t *ops, void *ctx, group_t **out, char **errmsg);

/* A group's founding members for group_node_add_members: the same lists, in the same order,
 * on every node. */
typedef struct group_members {
    const uint64_t *voters;   /* node ids, at least one, distinct. voters[0] is the group's
                                 preferred leader */
    size_t n_voters;
    const uint64_t *learners; /* node ids distinct from the voters (NULL if n_learners is 0):
                                 they receive and apply the log but never vote nor count for
                                 a quorum (Raft learners) */
    size_t n_learners;        /* voters + learners <= 16 (RAFT_MAX_SERVERS) */
} group_members_t;

/* group_node_add with founding voters AND learners, and a preferred leader. This node must
 * be one of the voters or one of the learners. As for group_node_add, a later start ignores
 * the lists (the configuration is in the log), so they are what the group is founded with.
 * On a learner: group_propose works (forwarded to the leader, returns once applied here),
 * group_read_barrier works (ReadIndex through the leader, then wait to apply), so reads of
 * the local state machine are as linearizable as on a voter; group_is_leader is always 0;
 * group_get_stats says is_learner. A learner adds no fault tolerance: with a majority of the
 * voters down, proposals and barriers time out everywhere.
 * Leader balancing (unless cfg.leader_balance_off): voters[0] is the preferred leader. The
 * node leading the group hands leadership to it (Raft leadership transfer) once it is a
 * voter, connected and holding the leader's whole log; at most once per cfg.balance_ms per
 * group, never while a transfer runs, and not to a node whose transfer failed within
 * cfg.balance_backoff_ms (so a flapping node cannot bounce leadership around). Ordering each
 * group's voters differently spreads the leaders over the nodes. The preference is taken at
 * every start (it is not in the log). Returns as group_node_add (-QERR_INVAL: this node in
 * neither list, an id zero or listed twice, learners without voters, over 16 members). */
int group_node_add_members(group_node_t *nd, uint32_t group, const group_members_t *m,
                           const sm_ops_t *ops, void *ctx, group_t **out, char **errmsg);

/* Adds group `group` to a node not started yet, as a node that is not (yet) one of its
 * members: it founds nothing, and waits until a leader of the group adds it
 * (group_change_member GROUP_ADD_LEARNER on the leader's node), then catches up from the
 * leader's log or snapshot. A later start takes the configuration from its log as usual.
 * Returns as group_node_add. (docs/MEMBERSHIP.md) */
int group_node_add_joining(group_node_t *nd, uint32_t group, const sm_ops_t *ops, void *ctx,
                           group_t **out, char **errmsg);

/* Membership changes of a Raft group, one server at a time (docs/MEMBERSHIP.md). The values
 * are raft.h's RAFT_CONF_*. group_change_member is mraft_change_member (cluster/mraft.h: it
 * proposes on THIS node, which must lead the group, and waits until the change applied here;
 * ADD_VOTER/PROMOTE wait until the leader promoted the server), and returns its codes
 * (-QERR_NOTLEADER with *leader, -QERR_CONFCHANGE, -QERR_EXISTS, -QERR_NOTFOUND,
 * -QERR_TIMEOUT, ...); -QERR_INVAL for the single-node group. */
enum { GROUP_ADD_LEARNER = 1, GROUP_ADD_VOTER = 2, GROUP_PROMOTE = 3, GROUP_REMOVE = 4 };
int group_change_member(group_t *g, uint32_t op, uint64_t id, uint32_t timeout_ms,
                        uint64_t *leader);
/* The group's status with its membership and the leader's view of each member's progress
 * (struct mraft_group_status, cluster/mraft.h). Returns 0, or -QERR_INVAL for the
 * single-node group. */
struct mraft_group_status;
int group_raft_status(group_t *g, struct mraft_group_status *st);

/* The node's transport peers, from any thread, before or while it runs: add a peer before
 * adding it to any group, remove it once it is in none (mraft_tcp_add_peer/_remove_peer:
 * -QERR_EXISTS, -QERR_INVAL, -QERR_TOOBIG; -QERR_NOTFOUND). A removed peer's connection is
 * closed, its queued frames freed, and its later dials refused as an unknown node. */
int group_node_add_peer(group_node_t *nd, uint64_t id, const char *addr);
int group_node_remove_peer(group_node_t *nd, uint64_t id);
/* From now on peer id's HELLO must carry incarnation inc (0: any): the member record's
 * (transport_expect_incarnation). Any thread; -QERR_NOTFOUND for an unknown peer. */
int group_node_expect_incarnation(group_node_t *nd, uint64_t id, uint64_t inc);
/* The transport's status queries answered and connections refused (mraft_tcp_counters: as of
 * at most 500 ms ago). */
void group_node_transport_counters(group_node_t *nd, uint64_t *status_queries,
                                   uint64_t *refused);

/* Starts the node's loop thread; from now on its groups take calls. Returns 0 or -QERR_*. */
int group_node_start(group_node_t *nd, char **errmsg);

/* The port the node listens on (the bound one when cfg->listen asked for port 0). */
uint16_t group_node_port(const group_node_t *nd);

/* The transport's view of peer id (docs/TRANSPORT.md "Metrics"), as of at most 500 ms ago
 * (all zero, rtt -1, before the first look). Any thread. Returns 0 or -QERR_NOTFOUND. */
typedef struct group_peer_stats {
    int connected;               /* HELLO exchanged: frames flow */
    int tls;                     /* ... over TLS */
    uint64_t bytes_in, bytes_out;
    uint64_t msgs_in, msgs_out;  /* Raft messages */
    uint64_t dropped;            /* Raft messages refused (peer down, queue full) */
    uint64_t connects, reconnects, dial_failures;
    uint64_t errors;             /* connections closed for a malformed frame or a violation */
    uint64_t queued_bytes;
    int64_t rtt_us;              /* last PING round trip, -1 unknown */
    uint64_t incarnation;        /* its last accepted HELLO's (0: none yet) */
    uint64_t refused_incarnations; /* HELLOs refused: another incarnation than the record's */
    int refused_now;             /* ... one since its last accepted HELLO */
} group_peer_stats_t;
int group_node_peer_stats(group_node_t *nd, uint64_t id, group_peer_stats_t *out);

/* Publishes the text status queries are answered with (docs/TRANSPORT.md "Status queries",
 * `quorumfs cluster status --cluster HOST:PORT` at this node's peer address). Any thread, any
 * time after group_node_open; text (UTF-8, no NUL) is copied. Over 64 KiB it is cut after its
 * last whole line with "[status cut at 64 KiB]". Returns 0, 1 (cut), -QERR_INVAL (not UTF-8:
 * the previous text stays), -QERR_NOMEM. */
int group_node_set_status(group_node_t *nd, const char *text, size_t len);

/* Admin requests (docs/TRANSPORT.md "Admin requests", `quorumfs cluster drain ID --cluster
 * HOST:PORT` at this node's peer address). The handler is called on the node loop's thread
 * and must not block: the fs layer copies req and answers later with
 * group_node_admin_answer(token) (which it may also call from inside the handler). It runs
 * under the transport's lock: it must not call group_node_add_peer / _remove_peer (they
 * would deadlock); it may propose from another thread. */
typedef void (*group_admin_fn)(void *arg, uint64_t token, const frame_admin_t *req);
/* Installs the handler (before group_node_start; NULL: every request is answered
 * -EOPNOTSUPP with text "not supported by this node"). Returns 0. */
int group_node_set_admin(group_node_t *nd, group_admin_fn fn, void *arg);
/* Answers request `token` from any thread (the handler's too): code 0 or -errno, text UTF-8
 * (cut to ADMIN_MAX_TEXT at a character boundary; one that is not valid UTF-8 is replaced by
 * a line saying so). The node writes one ADMIN frame and closes the connection after it.
 * Returns 0, or -QERR_NOTFOUND when the token is unknown (the client went away, or the
 * request's deadline (30 s) passed and it was answered -ETIMEDOUT already), -QERR_NOMEM. */
int group_node_admin_answer(group_node_t *nd, uint64_t token, int32_t code, const char *text,
                            size_t len);

/* Changes a hosted group's preferred leader (group_node_add_members: voters[0]; 0: none),
 * as draining a node does (mraft_set_preferred). A no-op with leader balancing off.
 * Thread-safe. Returns 0 or -QERR_NOTFOUND. */
int group_node_set_preferred(group_node_t *nd, uint32_t group, uint64_t preferred);

/* Stops the loop (waiting calls return -QERR_CLOSED), closes the transport and the log, and
 * frees the node and every group_t it hosts. What was synced is what the next open sees.
 * NULL is a no-op. */
void group_node_close(group_node_t *nd);

/* One node hosting one group, started: group_node_open + group_node_add(group, voters = every
 * id in cfg->peers plus cfg->id) + group_node_start. group_close(*out) closes the node.
 * Returns 0 and *out, or -QERR_* with *errmsg (caller frees; may be NULL). */
int group_open_raft(const group_raft_config_t *cfg, uint32_t group, const sm_ops_t *ops,
                    void *ctx, group_t **out, char **errmsg);

/* Deduplication counters of a Raft group (docs/CLUSTER.md "Exactly-once retries"). */
typedef struct group_dedup_stats {
    uint64_t node_id, incarnation; /* this node's client id in the group's envelopes */
    uint32_t retry_ms;        /* the retry interval in force */
    uint64_t retries;         /* resends by group_propose on this node (attempts after the
                                 first) */
    uint64_t dup_hits;        /* entries applied here whose sequence number was applied
                                 before: skipped, saved result handed back */
    uint64_t stale;           /* entries skipped because their client had finished with
                                 their sequence number (result code -EALREADY) */
    uint64_t bad_envelopes;   /* entries with an envelope of another version or a broken
                                 rule: skipped (result code -EPROTO) */
    uint64_t evictions;       /* clients dropped from the table beyond its cap */
    uint64_t clients;         /* clients in the table now (at most 1024) */
} group_dedup_stats_t;

/* Fills *st for a Raft group. Thread-safe. Returns 0, or -QERR_INVAL for the single-node
 * group (which needs no deduplication: nothing is ever resent). */
int group_dedup_stats(group_t *g, group_dedup_stats_t *st);

/* TEST ONLY (tests/unit/test_group_raft.c), not for fs/: fault injection and raw envelopes.
 * group_node_test_drop_fwd: the next `count` forwarding frames of kind `kind` (FWD_PROPOSE or
 * FWD_RESULT, cluster/frame.h) this node sends are lost (reported to the loop as queued).
 * group_test_propose_as: proposes cmd wrapped in an envelope with the given client
 * (node, incarnation), seq and low, once (no resend), as a client that is not this node would;
 * returns as mraft_propose_any (cluster/mraft.h). */
void group_node_test_drop_fwd(group_node_t *nd, uint32_t kind, uint32_t count);
int group_test_propose_as(group_t *g, uint64_t node, uint64_t incarnation, uint64_t seq,
                          uint64_t low, const void *cmd, size_t len, sm_result_t *res);

/* ---- private to cluster/ -----------------------------------------------------------------
 * Every group_t begins with a pointer to its implementation's table: NULL for the
 * single-node group (whose functions are the ones above), the Raft group's table otherwise,
 * so the calls above reach the implementation that made the handle. */
typedef struct group_impl {
    int (*propose)(group_t *g, const void *cmd, size_t len, sm_result_t *res);
    int (*read_barrier)(group_t *g, uint32_t timeout_ms);
    int (*is_leader)(group_t *g);
    void (*get_stats)(group_t *g, group_stats_t *st);
    void (*close)(group_t *g);
} group_impl_t;

static inline const group_impl_t *group_impl_of(const group_t *g)
{
    return *(const group_impl_t *const *)(const void *)g;
}

#endif
