/* tests/sim/sim.h — one deterministic simulated run of a quorumfs Raft cluster: 3 or 5
 * voters (plus a spare for membership changes) driven through the cluster/raft.h Ready
 * loop on virtual time, with a nemesis injecting network, crash, disk and membership
 * faults and the Raft invariants checked after every step. The replicated state machine
 * (tests/sim/smi.h) is either a KV store whose client history is checked for
 * linearizability at the end (SIM_KV), or the mount's real fs state machine fed random
 * command streams, whose replicas' snapshots must be byte-identical at equal applied
 * indexes (SIM_FS). */
#ifndef QFS_SIM_SIM_H
#define QFS_SIM_SIM_H

#include <stdint.h>
#include <stdio.h>

enum sim_sm { SIM_KV = 0, SIM_FS = 1 };

/* Opt-in faults outside what the core promises to survive (tools/sim --breach NAME): each
 * breaks the caller's side of a contract, or is an operation the core does not make safe
 * yet. The checks must catch them; they are never on by default. */
enum {
    SIM_BREACH_MERGE_TICKS = 1,   /* merge-ticks: after a pause or a persist the caller
                                     delivers one tick for all it owes (raft_tick's
                                     contract); caught in seeds with lease reads */
    SIM_BREACH_LYING_FSYNC = 2,   /* lying-fsync: some persists report success but stay in
                                     a volatile cache until the next honest one; a crash
                                     loses them */
    SIM_BREACH_HS_FIRST = 4,      /* hs-first: the hard state reaches the disk before the
                                     rest of its batch (a tear that is not a prefix) */
    SIM_BREACH_WIPE_READD = 8,    /* wipe-readd: a removed server is re-added with the same
                                     id and a wiped disk (server ids have no incarnation) */
    SIM_BREACH_RESTART_SETTINGS = 16, /* restart-settings: in seeds with mixed settings, a
                                     node may restart with other pre-vote/check-quorum/lease
                                     settings (tests/sim/FINDINGS.md, finding 4) */
};

typedef struct sim_opts {
    uint64_t seed;
    int sm;                   /* SIM_KV or SIM_FS */
    int fs_resend;            /* fs clients send again commands whose outcome is unknown, in
                                 every seed (otherwise in half of them) */
    int fs_bug;               /* fs: a planted divergence, SMI_FS_BUG_* (tests/sim/smi.h) */
    int nodes;                /* founding voters: 3 or 5 */
    FILE *trace;              /* NULL: no trace; else every event is written here */
    int lin_only;             /* broken Raft invariants are traced, not fatal: only the
                                 client-visible checks (linearizability, liveness) judge */
    unsigned breach;          /* SIM_BREACH_* bits */
    int groups;               /* Raft groups on every node (0 or 1: one); with more, the
                                 groups of a node share its process, clock, write-ahead log
                                 (one fsync per write) and links (sim.c, world_t). No
                                 breach is supported with more than one. */
} sim_opts_t;

typedef struct sim_stats {
    uint64_t vtime;           /* virtual time at the end */
    uint64_t ops, unknown;    /* client ops recorded, of which outcome unknown */
    uint64_t msgs;            /* messages sent */
    uint64_t crashes, torn, disk_faults, restarts;
    uint64_t elections;       /* distinct (term, leader) pairs seen */
    uint64_t max_term;
    uint64_t snaps_sent;      /* snapshots installed from a leader */
    uint64_t conf_changes;    /* membership changes committed */
    uint64_t applied;         /* highest index applied anywhere */
    uint64_t lin_states;      /* linearizability search states */
    uint64_t inv_broken;      /* invariant violations let through (lin_only) */
    uint64_t state_checks;    /* fs: states compared with another replica's at an index */
    uint64_t restore_checks;  /* fs: restored states that snapshot back to the same bytes */
    uint64_t lease_checks;    /* moments a leader's lease was checked against later leaders */
    uint64_t read_checks;     /* reads whose index was checked against the commit at start */
    uint64_t durable_checks;  /* commits checked durable on a quorum of voters' disks */
    uint64_t pauses, late_msgs, alloc_fails, compact_crashes;
    uint64_t live_excused;    /* runs whose liveness was not checked (FINDINGS.md 8) */
    char sm_line[600];        /* fs: the state machine's own figures for the run */
} sim_stats_t;

/* Runs one seed. Returns 0 if every check passed, 1 if one failed (why gets a one-line
 * reason, and for a linearizability failure the ops of the offending key follow on later
 * lines), -1 on an internal error (out of memory). */
int sim_run(const sim_opts_t *o, sim_stats_t *st, char *why, size_t whylen);

#endif
