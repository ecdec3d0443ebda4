/* cluster/sm.h — the state-machine interface between cluster/ and whatever it replicates.
 * cluster/ knows nothing about files: fs/ implements these three callbacks. A group calls
 * apply() for each committed command in log order, snapshot() to compact its log, and
 * restore() to load a snapshot at start-up or after an InstallSnapshot. */
#ifndef QFS_CLUSTER_SM_H
#define QFS_CLUSTER_SM_H

#include <stddef.h>
#include <stdint.h>

/* Small result handed from apply() back to the proposer (ids, fencing tokens, revisions). */
#define SM_RESULT_MAX 64
typedef struct sm_result {
    int code;                    /* apply's verdict: 0 or a negative errno chosen by the SM */
    uint32_t len;                /* bytes used in data */
    uint8_t data[SM_RESULT_MAX];
} sm_result_t;

/* Streams a snapshot out or in; implemented by cluster/snapshot.c (lz4 frames + checksum). */
typedef struct snap_writer snap_writer_t;
typedef struct snap_reader snap_reader_t;

/* Appends len bytes to the snapshot being written. Returns 0 or -QERR_*. */
int snap_writer_put(snap_writer_t *w, const void *buf, size_t len);
/* Reads exactly len bytes; a short snapshot gives -QERR_CORRUPT. Returns 0 or -QERR_*. */
int snap_reader_get(snap_reader_t *r, void *buf, size_t len);

typedef struct sm_ops {
    /* Applies one committed command. Called by one thread at a time, in log order, for
     * every index exactly once per process lifetime (after restore, from the snapshot's
     * index + 1). cmd is owned by the caller and valid only during the call. Must be
     * deterministic: the same commands give byte-identical state on every replica. res
     * may be NULL (replay at start-up, or a follower); otherwise it starts zeroed. */
    void (*apply)(void *ctx, uint64_t index, const void *cmd, size_t len, sm_result_t *res);
    /* Writes the whole state. Called between applies (no apply runs concurrently).
     * Returns 0 or -QERR_*. */
    int (*snapshot)(void *ctx, snap_writer_t *w);
    /* Replaces the whole state with a snapshot's. On error the state is left empty-but-valid
     * and the caller refuses to start. Returns 0 or -QERR_*. */
    int (*restore)(void *ctx, snap_reader_t *r);
    /* Optional (NULL: commands are appended as proposed). The LEADER's stamp: called on the
     * leader's node loop thread right before a command is appended to its log, for commands
     * proposed on the leader and forwarded to it alike (cluster/mraft.c), never on a
     * follower, at replay or for received entries; a command that is retried (a leader
     * change, a resend) is stamped again by the leader that appends it. It may rewrite bytes
     * of cmd in place (its length is fixed) and should leave a command it does not know
     * alone. It must not read or change the state machine's state, fail or block. What it
     * writes is part of the entry: every replica applies the same bytes, so apply stays
     * deterministic. Used by fs/ to put the leader's clock in each command's header (leader-
     * stamped time: fs/state.c). */
    void (*stamp)(void *ctx, void *cmd, size_t len);
} sm_ops_t;

#endif
