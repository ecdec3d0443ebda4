/* tests/sim/scale.h — the scale model of issue 10 item 5: many nodes, each hosting many Raft
 * groups (real cluster/raft.c cores, 3 voters per group placed by rendezvous hashing), on a
 * discrete-event clock in simulated microseconds. It measures what the cluster costs when
 * idle and under load, and how fast the groups of a lost node elect, under two transport
 * accountings (one frame per Raft message, or heartbeats coalesced per node pair) and with or
 * without quiescence (idle groups stop ticking; a node-pair liveness beat stands in for their
 * heartbeats). docs/SCALING.md gives the design and the figures; tests/sim/scale_main.c
 * drives the phases. Single-threaded and deterministic: one seed gives one run. */
#ifndef QFS_SIM_SCALE_H
#define QFS_SIM_SCALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/raft.h"

#define SCALE_R 3                 /* voters per group */
#define SCALE_MAX_NODES 1000
#define SCALE_MAX_GROUPS 1000000

typedef struct scale_config {
    uint32_t nodes;               /* 3..SCALE_MAX_NODES; node ids are 1..nodes */
    uint32_t groups;              /* >= 1 */
    uint64_t seed;
    bool quiesce;                 /* the quiescence rules (docs/SCALING.md "Quiescence") */
    uint32_t tick_ms;             /* tick period of every node (production: 100) */
    uint32_t election_tick;       /* election timeout in ticks (production: 10) */
    uint32_t heartbeat_tick;      /* heartbeat interval in ticks (production: 1) */
    uint32_t max_inflight;        /* as raft_config_t (production: 256) */
    uint32_t live_ms;             /* liveness beat period per node pair (quiesce only),
                                     rounded down to whole ticks */
    uint32_t live_timeout_ms;     /* a peer silent this long is dead (quiesce only) */
    uint32_t lat_min_us, lat_jitter_us; /* one-way latency: min + uniform [0, jitter) */
    uint32_t payload;             /* bytes per proposed command */
} scale_config_t;

/* What one node sent, counted from the last scale_reset_counters. Frames are transport
 * messages: "plain" sends every Raft message and every driver item as its own frame (what
 * cluster/mraft.c + transport.c do today); "coal" puts every heartbeat, heartbeat answer,
 * quiesce marker and wake request a flush sends to one peer into one frame. Bytes count a
 * 16-byte frame header, a 4-byte group id and the wire codec's size of each message (plain),
 * or compact per-group beat entries (coal; docs/SCALING.md "Coalescing"). */
typedef struct scale_counters {
    uint64_t raft[RAFT_MSG__COUNT];   /* Raft messages sent, by type */
    uint64_t frames_plain, frames_coal;
    uint64_t bytes_plain, bytes_coal;
    uint64_t markers, wakes, beats;   /* quiesce markers, wake requests, liveness beats */
    uint64_t ticks, steps;            /* raft_tick and raft_step calls on this node */
} scale_counters_t;

/* Outcome of a kill: per group the killed node led, simulated µs from the kill until a
 * replica on a live node became leader of a higher term (elected) and until that leader
 * applied an entry of its term (serving: its NOOP committed). */
typedef struct scale_kill_stats {
    size_t n;                     /* groups the node led */
    int64_t *elected_us;          /* n values, -1: not yet */
    int64_t *serving_us;
    uint64_t other_elections;     /* new leader terms in groups it did not lead */
} scale_kill_stats_t;

/* Safety and liveness checks over the whole run. */
typedef struct scale_checks {
    uint64_t leader_terms;        /* (group, term) leaders seen: at most one per term */
    uint64_t applies;             /* entries applied and compared with the group's record */
    uint64_t completeness;        /* new leaders checked to hold every committed entry */
    uint64_t violations;          /* any failed check */
    char first[256];              /* the first violation */
    uint64_t proposals, acked, lost, no_leader;
    uint64_t wake_requests;       /* follower safety net fired (docs/SCALING.md) */
    uint64_t commit_lat_n;        /* proposals acknowledged, with latencies kept */
    int64_t *commit_lat_us;       /* propose -> applied on the leader, per acked proposal */
} scale_checks_t;

typedef struct scale scale_t;

/* Fills defaults (production values) for every zero field of *cfg. */
void scale_config_defaults(scale_config_t *cfg);
/* Builds the cluster: every group's replicas booted as founding voters, every node's tick
 * scheduled. Returns NULL on a bad configuration (message on stderr). */
scale_t *scale_new(const scale_config_t *cfg);
void scale_free(scale_t *s);

/* Runs every event before simulated time t_us. */
void scale_run_until(scale_t *s, uint64_t t_us);
uint64_t scale_now(const scale_t *s);
/* Proposals per simulated second, spread uniformly over groups (0: none). */
void scale_set_load(scale_t *s, uint32_t per_s);
/* Leader balancing as cluster/mraft.c does it: every group led elsewhere than by its
 * preferred replica (the first by rendezvous weight) gets a raft_transfer to it, now. */
void scale_balance(scale_t *s);
uint64_t scale_transfers(const scale_t *s);
bool scale_node_dead(const scale_t *s, uint32_t id);
/* One proposal to every group now (liveness check); acknowledged ones count in checks. */
void scale_propose_all(scale_t *s);
/* Kills node id now: it stops ticking, receiving and sending; for good. */
void scale_kill(scale_t *s, uint32_t id);
/* The node leading the most groups (ties: lowest id). */
uint32_t scale_busiest_leader(const scale_t *s);

void scale_reset_counters(scale_t *s);
const scale_counters_t *scale_node_counters(const scale_t *s, uint32_t id);
const scale_kill_stats_t *scale_kill_stats(const scale_t *s);
/* Runs the end-of-run checks (convergence: every live replica applied the group's whole
 * committed record) and returns the checks. */
const scale_checks_t *scale_checks(scale_t *s);

/* Groups: how many have a leader on a live node, how many are quiesced (leader quiet), and
 * per-node leader counts (min, max over live nodes). */
void scale_group_summary(const scale_t *s, uint32_t *led, uint32_t *quiet, uint32_t *min_lead,
                         uint32_t *max_lead);
/* Heap bytes held by the Raft cores (malloc accounting: in-use bytes minus the model's own,
 * since scale_new began creating cores). */
int64_t scale_core_bytes(const scale_t *s);
uint64_t scale_replicas(const scale_t *s);

#endif
