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
    char sm_line[600];        /* fs: the state machine's own figures for the run */
} sim_stats_t;

/* Runs one seed. Returns 0 if every check passed, 1 if one failed (why gets a one-line
 * reason, and for a linearizability failure the ops of the offending key follow on later
 * lines), -1 on an internal error (out of memory). */
int sim_run(const sim_opts_t *o, sim_stats_t *st, char *why, size_t whylen);

#endif
