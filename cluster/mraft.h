/* cluster/mraft.h — one node hosting many Raft groups (shards): one loop thread drives the
 * ticks, the Ready loop and message batching of every group, and all groups share one Raft
 * store (cluster/rstore.h), so a batch of Readies from any number of groups costs one
 * fdatasync. Each group replicates its own state machine (cluster/sm.h), takes snapshots to
 * files (cluster/snapshot.h), compacts its log, and catches followers up by InstallSnapshot
 * in chunks. Clients propose (blocking until applied locally) and take read barrers
 * (ReadIndex, thesis §6.4) from any thread. The network is a table of function pointers
 * (mraft_transport_t), so tests use an in-process network and the TCP transport plugs in.
 * Design and on-disk layout: docs/CLUSTER.md, "The node loop". */
#ifndef QFS_CLUSTER_MRAFT_H
#define QFS_CLUSTER_MRAFT_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/frame.h"
#include "cluster/raft.h"
#include "cluster/rstore.h"
#include "cluster/sm.h"

typedef struct mraft_node mraft_node_t;

/* The network, as the node loop sees it. */
typedef struct mraft_transport {
    /* Sends m, a message of group `group`, to node `to` (== m->to). Called on the loop thread
     * only, never with a node lock held. m and everything it points to are borrowed for the
     * duration of the call: copy (raft_msg_clone) or encode it before returning. It may drop
     * the message (Raft retries) and must not block on the network. */
    void (*send)(void *ctx, uint64_t to, uint32_t group, const raft_msg_t *m);
    /* Optional (may be NULL): called once per loop iteration after its last send, so the
     * transport can write each peer's batch of messages (all groups) at once. */
    void (*flush)(void *ctx);
    /* Optional, for a transport the loop thread drives (cluster/transport.h does no
     * threading of its own). When set, the idle loop waits here instead of on its condition
     * variable: poll runs the transport's I/O for at most timeout_ms, delivering what arrives
     * through mraft_recv, and returns early once wake is called. Called on the loop thread,
     * with no node lock held. wake is thread-safe and must not block (e.g. an eventfd write
     * that poll's epoll set watches); it is called with the node lock held. Both or none. */
    void (*poll)(void *ctx, int timeout_ms);
    void (*wake)(void *ctx);
    /* Optional (NULL: mraft_propose_any cannot forward and fails on a follower with
     * -QERR_NOTLEADER). Sends a forwarding message (cluster/frame.h: a PROPOSE to the leader,
     * or a RESULT back) to node `to`. Loop thread only, no node lock held; f is borrowed.
     * Returns 0 if queued, or < 0 if `to` certainly never gets it (not connected, queue
     * full): the loop then retries later. Received ones enter through mraft_recv_fwd. */
    int (*send_fwd)(void *ctx, uint64_t to, const frame_fwd_t *f);
    /* Optional (NULL: every peer counts as up). Nonzero if node `id` is connected now (a
     * view a little stale is fine). Loop thread only, no node lock held. Leader balancing
     * (mraft_members_t.preferred) hands leadership only to a peer that is up. */
    int (*peer_up)(void *ctx, uint64_t id);
    void *ctx;
} mraft_transport_t;

typedef struct mraft_config {
    uint64_t id;                 /* this node's id, nonzero; the Raft server id in every group */
    const char *dir;             /* data directory; must exist. Holds raft/ (the store's WAL)
                                    and snap-<group>/ (each group's snapshot files) */
    uint32_t tick_ms;            /* tick period of the monotonic clock; 0 = 100 */
    uint32_t election_tick;      /* election timeout in ticks; 0 = 10 (the same on all nodes) */
    uint32_t heartbeat_tick;     /* 0 = 1 */
    uint64_t snapshot_bytes;     /* a group snapshots and compacts once it has applied this many
                                    bytes (payload + RAFT_ENTRY_OVERHEAD) since its last
                                    snapshot; 0 = 16 MiB */
    uint32_t snap_chunk_bytes;   /* InstallSnapshot chunk size; 0 = 1 MiB */
    uint64_t snap_trailing;      /* entries kept in memory behind a snapshot; default 0 */
    uint32_t max_msg_bytes;      /* as raft_config_t; 0 = 1 MiB */
    uint32_t max_inflight;       /* as raft_config_t; 0 = 256 */
    uint64_t segment_bytes;      /* the store's WAL segment size; 0 = 64 MiB */
    uint64_t gc_bytes;           /* run rstore_gc whenever the store's WAL has grown this much
                                    since the last collection; 0 = 2 * segment_bytes */
    uint32_t timeout_ms;         /* default wait of propose / read_barrier; 0 = 10000 */
    size_t max_cmd;              /* largest command accepted; 0 = 2 MiB */
    size_t inbox_max;            /* messages queued for the loop beyond this are dropped;
                                    0 = 65536 */
    uint64_t seed;               /* seeds the election timers; 0 = from the clock */
    uint8_t snap_tag;            /* 0: snapshot metadata headers are written as version 1.
                                    Else they are version 2 and carry this tag, saying how
                                    the state machine stream after them is laid out, for a
                                    wrapper of the state machine (cluster/group_raft.c); the
                                    loop does not interpret it. Both versions are read */
    uint32_t balance_ms;         /* leader balancing: a group tries a transfer to its
                                    preferred leader at most once per this long; 0 = 3000 */
    uint32_t balance_backoff_ms; /* ... and not to a target whose transfer failed (this node
                                    still led when the core aborted it) within this long;
                                    0 = 30000 */
    uint32_t test_hold_after_timeout_now_ms; /* tests only (0 in production): the loop
                                    sleeps this long after a Ready that sent a TimeoutNow,
                                    widening the window in which a lease not withdrawn
                                    before the send would serve stale reads
                                    (test_multiraft test_lease_churn) */
    bool no_lease_reads;         /* false (default): a leader answers read barriers from its
                                    lease (raft_config_t.lease_reads, max_clock_drift_ticks
                                    lease_drift_ticks() in mraft.c), sound under the clock assumption of
                                    docs/CLUSTER.md "Lease reads"; true: every barrier takes a
                                    heartbeat round. The same on every node of a cluster. */
} mraft_config_t;

/* Opens the node's Raft store in cfg->dir (replaying it) without starting anything. The
 * transport table is copied; tr->ctx must outlive the node. Returns 0 and *out, or -QERR_*
 * with a malloc'ed *errmsg (caller frees). */
int mraft_open(const mraft_config_t *cfg, const mraft_transport_t *tr, mraft_node_t **out,
               char **errmsg);

/* Adds group `group` to a node that is not started yet. ops/ctx is the group's state
 * machine: ctx must hold an EMPTY state, ops and ctx must outlive the node, and every ops
 * call comes from one thread at a time (the loop, or this call). voters[0..n_voters) are the
 * founding voters (node ids), the same on every founding member; they are used only while the
 * group has no snapshot (later configurations come from the log and snapshots).
 *
 * Rebuilds the group: restores the newest snapshot file through ops->restore, boots the Raft
 * core from the store, and re-applies (ops->apply with res NULL) every entry known to be
 * committed, all before returning. A snapshot file newer than the store's record (a crash
 * between the two writes) is adopted and recorded. Returns 0, or -QERR_EXISTS (group already
 * added), -QERR_INVAL, -QERR_CORRUPT (snapshot and store disagree, or a damaged snapshot),
 * -QERR_IO... with *errmsg (caller frees); the node is then unchanged except that the state
 * machine may hold a partial state (discard it). */
int mraft_add_group(mraft_node_t *n, uint32_t group, const uint64_t *voters, size_t n_voters,
                    const sm_ops_t *ops, void *ctx, char **errmsg);

/* A group's founding members and preferred leader (mraft_add_group_members). */
typedef struct mraft_members {
    const uint64_t *voters;      /* founding voters: nonzero, distinct (none, and no
                                    learners: this node waits to be added) */
    size_t n_voters;
    const uint64_t *learners;    /* founding learners (RAFT_LEARNER: they receive and apply
                                    the log, never vote, never count for a quorum); may be
                                    NULL when n_learners is 0. Distinct from the voters;
                                    voters + learners <= RAFT_MAX_SERVERS */
    size_t n_learners;
    uint64_t preferred;          /* 0: none. Else the node that should lead: whenever THIS
                                    node leads the group, preferred is another voter of its
                                    configuration in force, up (tr.peer_up), heard from
                                    since the last check-quorum and holding the leader's
                                    whole log (match = last index, everything committed),
                                    the loop hands it leadership (raft_transfer, thesis
                                    §3.10): at most once per balance_ms per group, never
                                    while a transfer runs, never to a target whose transfer
                                    from here failed within balance_backoff_ms. Not
                                    persisted: every start passes it again */
} mraft_members_t;

/* mraft_add_group with founding learners and a preferred leader. The founding lists (voters
 * and learners, the same on every founding member) are used only while the group has no
 * snapshot and no configuration in its log, as in mraft_add_group; preferred is used at
 * every start. This node may be a voter, a learner, or neither (then it waits to be added).
 * Returns as mraft_add_group (-QERR_INVAL for learners without voters, a zero, duplicate or
 * overlapping id, or more than RAFT_MAX_SERVERS members). */
int mraft_add_group_members(mraft_node_t *n, uint32_t group, const mraft_members_t *m,
                            const sm_ops_t *ops, void *ctx, char **errmsg);

/* Starts the loop thread. Groups are fixed from now on. Returns 0 or -QERR_NOMEM. */
int mraft_start(mraft_node_t *n);

/* Stops the loop between two iterations (nothing more is synced), fails every waiting call
 * with -QERR_CLOSED, waits until they have returned, then frees everything. What was synced
 * is what a reopen sees, as after a crash. No call on n may start once close has begun.
 * NULL is a no-op. */
void mraft_close(mraft_node_t *n);

/* Hands the loop a message that arrived for `group` (thread-safe; the transport's receive
 * path). A message owning its memory (m->mem, as raft_msg_decode gives) is moved into the
 * inbox and *m is zeroed; a borrowed one is cloned. Messages for unknown groups, or past
 * inbox_max, are dropped (counted in the stats). Returns 0, or -QERR_CLOSED / -QERR_NOMEM /
 * -QERR_BUSY (dropped; *m is then freed too). */
int mraft_recv(mraft_node_t *n, uint32_t group, raft_msg_t *m);

/* Proposes cmd (copied) to `group` and blocks until it is committed by a majority and applied
 * on THIS node; apply's result goes to *res (may be NULL). timeout_ms 0 = cfg.timeout_ms.
 * Thread-safe. Returns 0, or
 *   -QERR_NOTLEADER  this node does not lead the group; *leader (may be NULL) gets the leader
 *                    this node knows, 0 if none: propose there;
 *   -QERR_DROPPED    certainly not applied: another entry took its index (leader change);
 *   -QERR_TIMEOUT    outcome unknown: it may still commit and apply (also when a snapshot
 *                    installed on this node covered its index);
 *   -QERR_BUSY / -QERR_TRANSFER (as raft_propose), -QERR_TOOBIG (over max_cmd),
 *   -QERR_NOTFOUND (no such group), -QERR_CLOSED, -QERR_FAILED (the node's disk failed).
 * NOT exactly-once: a caller that retries after -QERR_TIMEOUT (or after a leader change that
 * hid the outcome) may get its command applied twice, unless the commands carry their own
 * deduplication (cluster/group_raft.c wraps every command in a client id and sequence number
 * and keeps a dedup table in the group's snapshots; docs/FORMATS.md §7). */
int mraft_propose(mraft_node_t *n, uint32_t group, const void *cmd, size_t len,
                  sm_result_t *res, uint32_t timeout_ms, uint64_t *leader);

/* Proposes cmd (copied) to `group` from ANY replica and blocks until it is committed and
 * applied on THIS node (so a local read right after sees it); apply's result (as computed on
 * the leader; apply is deterministic) goes to *res (may be NULL), the entry's index to *index
 * (may be NULL). timeout_ms 0 = cfg.timeout_ms. Thread-safe.
 * On the leader it is mraft_propose. Elsewhere the loop FORWARDS it to the leader it knows
 * (a FWD PROPOSE through tr.send_fwd, docs/FORMATS.md "Forwarded proposals"); the leader
 * proposes it and answers once the entry applied there (a RESULT with its index), and this
 * node then waits until it has applied that index itself. Answers that say the command was
 * certainly not appended (NOTLEADER, with a hint; DROPPED; BUSY; TRANSFER; a leader closing)
 * are retried, following leader changes, until the timeout; so is a local proposal whose
 * entry was dropped by a leader change. A request that was sent and got no answer is NOT
 * sent again. Returns 0, or
 *   -QERR_TIMEOUT   no answer in time: no quorum, no leader, or a lost request or answer;
 *                   the outcome is unknown (it may still apply);
 *   -QERR_TOOBIG, -QERR_INVAL, -QERR_NOTFOUND, -QERR_CLOSED, -QERR_FAILED as mraft_propose;
 *   -QERR_NOTLEADER only when the transport cannot forward (no send_fwd).
 * NOT exactly-once (see mraft_propose): a command whose request reached a leader that then
 * lost its leadership can be retried elsewhere after the old entry was dropped, which is
 * safe; but a caller retrying after -QERR_TIMEOUT may apply it twice (group_raft's
 * envelope and dedup table make such retries safe). */
int mraft_propose_any(mraft_node_t *n, uint32_t group, const void *cmd, size_t len,
                      sm_result_t *res, uint32_t timeout_ms, uint64_t *index);

/* Hands the loop a forwarding message that arrived from node `from` (thread-safe; the
 * transport's receive path). *f is moved (its command included) and zeroed. Messages past
 * inbox_max are dropped. Returns 0, or -QERR_CLOSED / -QERR_BUSY (dropped and freed). */
int mraft_recv_fwd(mraft_node_t *n, uint64_t from, frame_fwd_t *f);

/* A linearizable read barrier (ReadIndex, thesis §6.4) that works on any replica: returns 0
 * once this node's state machine of `group` has applied at least the leader's commit index
 * as of some moment after the call began, so a read of the local state machine afterwards
 * sees every write acknowledged before the call. The request is forwarded to the leader and
 * retried across leader changes and lost messages until timeout_ms (0 = cfg.timeout_ms).
 * *index (may be NULL) gets the read index. Thread-safe. Returns 0, -QERR_TIMEOUT,
 * -QERR_NOTFOUND, -QERR_CLOSED or -QERR_FAILED. */
int mraft_read_barrier(mraft_node_t *n, uint32_t group, uint32_t timeout_ms, uint64_t *index);

/* The tag in the metadata header (mraft_config_t.snap_tag) of the snapshot file whose state
 * machine stream is being restored, 0 if that header is version 1 (no tag). Meaningful only
 * when called from inside ops->restore, on the thread running it (a wrapper's restore uses it
 * to tell its own layout from an older file's); elsewhere 0. */
uint8_t mraft_restoring_snap_tag(void);

/* Membership changes, one server at a time (raft.h raft_propose_conf; docs/MEMBERSHIP.md).
 * Proposes op (RAFT_CONF_ADD_LEARNER, RAFT_CONF_ADD_VOTER, RAFT_CONF_PROMOTE, RAFT_CONF_REMOVE)
 * for server `id` in `group`, on THIS node, which must lead the group (it is not forwarded:
 * the caller retries at the leader named by *leader), and blocks until the configuration
 * entry has committed and applied here. ADD_VOTER and PROMOTE make the server STAGING; they
 * return once the leader has promoted it to VOTER (it does so by itself once the server's log
 * is within promote_lag entries of its own) and this node applied that: a PROMOTE or
 * ADD_VOTER of a server already STAGING just waits for it. Removing the leader itself is
 * allowed: it leads until the entry commits, hands leadership to the most caught-up voter and
 * steps down, and never campaigns again (it is in no configuration). The group's transport
 * peers are the caller's (mraft_tcp_add_peer / _remove_peer): add the peer before adding the
 * member, remove it after removing the member. timeout_ms 0 = cfg.timeout_ms. Thread-safe.
 * Returns 0, or
 *   -QERR_NOTLEADER   this node does not lead the group; *leader (may be NULL) gets the
 *                     leader it knows, 0 if none (the change was not proposed);
 *   -QERR_CONFCHANGE  another change is not yet committed, or the leader has not yet
 *                     committed an entry of its term: retry shortly (not proposed);
 *   -QERR_EXISTS      the server already has that role (ADD_LEARNER of a member, PROMOTE or
 *                     ADD_VOTER of a voter);
 *   -QERR_NOTFOUND    PROMOTE or REMOVE of a server not in the configuration;
 *   -QERR_TRANSFER    a leadership transfer is running (not proposed);
 *   -QERR_TOOBIG      RAFT_MAX_SERVERS members already; -QERR_INVAL: id 0, an unknown op,
 *                     removing the last voter, or no such group;
 *   -QERR_DROPPED     the entry was lost to a leader change (certainly not in force), or,
 *                     for ADD_VOTER/PROMOTE, another change removed or demoted the server
 *                     before it was promoted;
 *   -QERR_TIMEOUT     not known in time: the entry may still commit; for ADD_VOTER/PROMOTE
 *                     the server may be STAGING, still catching up (call again to wait);
 *   -QERR_CLOSED, -QERR_FAILED as mraft_propose. */
int mraft_change_member(mraft_node_t *n, uint32_t group, uint32_t op, uint64_t id,
                        uint32_t timeout_ms, uint64_t *leader);

/* A member as the leader sees it (mraft_group_status_t.progress). */
typedef struct mraft_member_progress {
    uint64_t id;
    uint32_t role;               /* RAFT_VOTER / RAFT_LEARNER / RAFT_STAGING */
    uint32_t state;              /* RAFT_PR_PROBE / REPLICATE / SNAPSHOT */
    uint64_t match, next;        /* last index known replicated there; next to send */
    bool active;                 /* heard from since the leader's last check-quorum */
    uint64_t snap_index;         /* state SNAPSHOT: the snapshot being sent (else 0) */
    uint64_t snap_sent;          /* ... bytes of its file sent so far (the end of the last
                                    chunk sent; a restarted transfer starts again at 0) */
    uint64_t snap_total;         /* ... the file's size in bytes (0 if unknown) */
} mraft_member_progress_t;

typedef struct mraft_group_status {
    uint32_t group;
    uint32_t role;               /* RAFT_FOLLOWER ... RAFT_LEADER */
    uint64_t leader, term;       /* known leader (0 = none) and current term */
    uint64_t commit, applied;    /* commit index; last index applied to the state machine */
    uint64_t last_index;         /* last log index */
    uint64_t snap_index;         /* index covered by the group's current snapshot */
    uint64_t snapshots;          /* snapshots taken here since open */
    uint64_t installs;           /* snapshots received from a leader and installed */
    uint32_t member;             /* this node in the configuration in force: RAFT_VOTER,
                                    RAFT_LEARNER, RAFT_STAGING, or 0 (not a member) */
    uint64_t preferred;          /* the preferred leader given at add (0: none) */
    uint64_t transfers;          /* leadership transfers the balancer started here */
    uint64_t transfers_failed;   /* ... that the core aborted with this node still leading */
    /* membership (docs/MEMBERSHIP.md) */
    raft_conf_t conf;            /* the configuration in force: the latest in this node's
                                    log (thesis §4.1), committed or not */
    raft_conf_t applied_conf;    /* the configuration as of `applied` */
    bool conf_pending;           /* conf differs from applied_conf: a change is in the log,
                                    not yet applied here */
    uint32_t n_progress;         /* leader only (else 0): one entry per other member of conf,
                                    with how far it has caught up (match vs last_index) */
    mraft_member_progress_t progress[RAFT_MAX_SERVERS];
} mraft_group_status_t;

/* Changes group's preferred leader (mraft_members_t.preferred; 0: no balancing), as a
 * drain does: from the next tick, whenever this node leads the group, it hands leadership to
 * that voter once it is up and caught up (the same rules as at add). Every node of the group
 * should be given the same preferred leader, or leaders move back and forth. Thread-safe.
 * Returns 0 or -QERR_NOTFOUND. */
int mraft_set_preferred(mraft_node_t *n, uint32_t group, uint64_t preferred);

/* Copies group's status as of the end of the loop's last iteration. Thread-safe. Returns 0
 * or -QERR_NOTFOUND. */
int mraft_status(mraft_node_t *n, uint32_t group, mraft_group_status_t *st);

typedef struct mraft_stats {
    uint64_t loops;              /* loop iterations that did work */
    uint64_t ticks;              /* ticks delivered (to every group) */
    uint64_t syncs;              /* fdatasyncs of the Ready phase: at most one per iteration,
                                    whatever the number of groups (a gc run, rare, adds one
                                    of its own, and rstore_gc may add one more) */
    uint64_t persists;           /* group Readies that wrote to the store */
    uint64_t entries;            /* entries persisted */
    uint64_t applied;            /* entries applied */
    uint64_t msgs_sent, msgs_recv;
    uint64_t msgs_dropped;       /* unknown group, full inbox, or refused by raft_step */
    uint64_t snapshots;          /* snapshots taken, all groups */
    uint64_t installs;           /* snapshots installed, all groups */
    uint64_t gcs;                /* rstore_gc runs */
    uint64_t fwd_out, fwd_in;    /* forwarding messages sent (queued) and received */
    uint64_t fwd_served;         /* forwarded proposals received (as leader or not) */
    uint64_t lease_reads;        /* read barriers the calling thread answered from the
                                    leader's lease, without the loop */
    rstore_stats_t store;        /* as of the end of the last iteration */
    int failed;                  /* 0, or the -QERR_* that failed the node */
} mraft_stats_t;

void mraft_get_stats(mraft_node_t *n, mraft_stats_t *st);

#endif
