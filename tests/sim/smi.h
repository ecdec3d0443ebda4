/* tests/sim/smi.h — the replicated state machine every simulated node runs, behind one
 * interface with two backends, picked by `tools/sim --sm kv|fs`:
 *   kv  tests/sim/kv.c: put/CAS registers; client histories are checked for linearizability.
 *   fs  tests/sim/fsm.c: the mount's real state machine (fs/state.h, every namespace), fed
 *       random but valid command streams; replicas' snapshots are compared byte for byte.
 * sim.c talks to a state machine only through these calls. All of a backend's knowledge of
 * its commands and state lives in its one file (for fs: fsm.c is the only sim file that
 * includes fs/ headers). */
#ifndef QFS_SIM_SMI_H
#define QFS_SIM_SMI_H

#include <stddef.h>
#include <stdint.h>

#include "tests/sim/rng.h"

/* What one apply tells the simulator. */
typedef struct smi_res {
    int client;               /* kv: the command's client, -1 for a non-command; fs: -1 */
    uint32_t seq;             /* kv: the client's op number */
    int ok;                   /* kv: 1 put done or CAS swapped, else 0 */
    int code;                 /* fs: apply's verdict, 0 or -errno (identical on every replica) */
} smi_res_t;

/* Receives one command a backend builds (the fs leader's sweeper); the bytes are the
 * callee's to copy, valid only during the call. */
typedef void (*smi_emit_fn)(void *ctx, const uint8_t *cmd, size_t len);

typedef struct smi_ops {
    const char *name;
    /* Bytes in front of the state in a snapshot (applied index, hash chain): the state's
     * own bytes, as state_bytes() gives them, follow. */
    size_t snap_hdr;

    /* One run's shared context (the fs command generator and what it learned); NULL for kv.
     * seed: the run's seed; bug: a known divergence to switch on (0: none), to show that
     * the checks catch it (fs: SMI_FS_BUG_*); shard: the group's shard index, so fs states
     * are made as fs/node.c makes shard k's (state_new_shard: own ids start at
     * STATE_FIRST_ID + k * 2^32). */
    void *(*run_new)(uint64_t seed, int bug, uint32_t shard);
    void (*run_free)(void *run);

    /* An empty state machine (index 0) of the run. NULL on no memory. */
    void *(*new)(void *run);
    void (*free)(void *sm);           /* NULL is a no-op */
    /* Applies the entry at index (must be applied() + 1). is_cmd says whether the entry is
     * an application command (RAFT_ENTRY_NORMAL); another entry (no-op, configuration)
     * only advances the index and the hash. Returns 0, or -1 on an index gap (nothing
     * changed). */
    int (*apply)(void *sm, uint64_t index, int is_cmd, const void *data, size_t len,
                 smi_res_t *res);
    uint64_t (*applied)(const void *sm);
    /* A hash chained over (index, payload, result) of everything applied. */
    uint64_t (*hash)(const void *sm);
    /* The whole state machine, malloc'ed into *buf (caller frees). Returns 0 or -1. */
    int (*snapshot)(void *sm, uint8_t **buf, size_t *len);
    /* Replaces the state with a snapshot's. Returns 0, or -1 (why in err) if the bytes are
     * refused; the state is then empty. */
    int (*restore)(void *sm, const void *buf, size_t len, char *err, size_t errlen);
    /* The state's canonical bytes, equal on two replicas iff their states are equal
     * (malloc'ed; caller frees). Returns 0 or -1. */
    int (*state_bytes)(void *sm, uint8_t **buf, size_t *len);
    /* Says where two different state_bytes() differ (section, object, offset). */
    void (*diff)(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, char *out,
                 size_t outlen);

    /* ---- fs only (NULL for kv, whose clients live in sim.c) ---- */
    /* The next client command, malloc'ed into *cmd (caller frees). Returns 0 or -1. */
    int (*next_cmd)(void *run, rng_t *rng, uint8_t **cmd, size_t *len);
    /* Sets the command's time (the proposer's clock) in place. */
    void (*stamp)(uint8_t *cmd, size_t len, uint64_t now_ms);
    /* The leader's periodic proposals built from its own state: expiries of cache keys,
     * queue claims, create locks and sessions. */
    void (*sweep)(void *sm, void *run, rng_t *rng, uint64_t now_ms, smi_emit_fn emit,
                  void *ctx);
    /* A one-line description of a command, for traces and failure reports. */
    void (*describe)(const uint8_t *cmd, size_t len, char *out, size_t outlen);
    /* One line of per-run figures (commands by namespace, verdicts), for --stats. */
    void (*run_stats)(void *run, char *out, size_t outlen);
} smi_ops_t;

/* Divergences the fs backend can plant in some replicas (tools/sim --sm fs --fs-bug n);
 * tests/sim/bugs_caught.sh checks that each is caught. */
enum {
    SMI_FS_BUG_CLOCK = 1,     /* a replica applies commands at its own clock (header + 1 ms) */
    SMI_FS_BUG_SKIP,          /* a replica skips every 16th command (applies nothing) */
    SMI_FS_BUG_RESTORE,       /* a replica restored from a snapshot gets one field wrong */
    SMI_FS_BUGS = SMI_FS_BUG_RESTORE
};

extern const smi_ops_t smi_kv;   /* tests/sim/kv.c */
extern const smi_ops_t smi_fs;   /* tests/sim/fsm.c */

#endif
