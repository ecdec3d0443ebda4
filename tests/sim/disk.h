/* tests/sim/disk.h — one simulated node's durable storage: hard state, log entries, the
 * current snapshot and a snapshot being received. A Ready's writes become a batch of
 * records (chunk; snapshot install as two records, making it current then dropping the
 * entries it replaced; entries; hard state, in the contract's order) that reaches the
 * "disk" only when the sim's persist step completes; a crash before that keeps a random
 * prefix of the batch (a torn write) and loses the rest. A disk with hs_first set writes
 * the hard state first instead (a contract breach the checks must catch). */
#ifndef QFS_SIM_DISK_H
#define QFS_SIM_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/raft.h"

typedef struct disk_entry {
    uint64_t term, index;
    uint32_t type, len;
    uint8_t *data;            /* owned */
} disk_entry_t;

typedef struct disk {
    raft_hard_state_t hs;
    raft_snap_meta_t snap;    /* current snapshot (index 0: none; conf = boot conf) */
    uint8_t *snap_data;       /* owned */
    size_t snap_len;
    raft_snap_meta_t recv;    /* snapshot being received */
    uint8_t *recv_data;       /* owned */
    size_t recv_len;
    disk_entry_t *ents;       /* consecutive indexes */
    size_t n, cap;
    int lax;                  /* skip the committed-entry check (sim --lin-only) */
    int hs_first;             /* breach: a batch's hard state is its first record, as if
                                 kept in a file written before the log */
} disk_t;

/* One Ready's writes, copied so they survive raft_advance. */
typedef struct disk_batch {
    int has_chunk;
    raft_snap_chunk_t chunk;  /* data owned (chunk_data) */
    uint8_t *chunk_data;
    int has_snap;
    raft_snap_meta_t snap;
    disk_entry_t *ents;       /* owned, data owned */
    size_t n;
    int has_hs;
    raft_hard_state_t hs;
} disk_batch_t;

/* An empty disk whose snapshot slot holds index 0 with conf boot_conf. */
void disk_init(disk_t *d, const raft_conf_t *boot_conf);
void disk_free(disk_t *d);

/* Copies the writes of rd into *b. Returns 0 or -1 on no memory (b left empty). */
int disk_batch_from_ready(disk_batch_t *b, const raft_ready_t *rd);
/* Number of records in b (each entry is one record, a snapshot install two). 0 = nothing
 * to persist. */
size_t disk_batch_records(const disk_batch_t *b);
/* Writes the first k records of b to d (k >= records: all of it). Returns 0, or -1 if a
 * record does not fit what is on disk (an entry leaving a gap, a chunk out of order, a
 * snapshot install with no matching chunks): the sim reports that as a core bug. */
int disk_write(disk_t *d, const disk_batch_t *b, size_t k, char *err, size_t errlen);
void disk_batch_free(disk_batch_t *b);

/* Saves a snapshot taken locally (atomic, like write-temp-then-rename): data copied.
 * Returns 0 or -1 on no memory. */
int disk_save_snapshot(disk_t *d, const raft_snap_meta_t *meta, const void *data, size_t len);
/* Deletes entries with index < first. */
void disk_drop_before(disk_t *d, uint64_t first);

/* Fills *boot from the disk; entries borrow the disk's memory (valid until next write). */
void disk_boot(const disk_t *d, raft_boot_t *boot, raft_entry_t **tmp);
/* What a caller's recovery does after a successful boot: drops the entries a snapshot
 * replaced (a crash between an install's two records leaves them), as raft_new did. */
void disk_recover(disk_t *d);
/* Whether the entry (index, term) is durable: in the log, or covered by the snapshot. */
int disk_holds(const disk_t *d, uint64_t index, uint64_t term);

/* Last entry index on disk (snapshot index if the log is empty). */
uint64_t disk_last_index(const disk_t *d);

#endif
