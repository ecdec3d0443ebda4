/* cluster/rstore.h — the durable Raft state of every group (shard) on a node, kept in ONE
 * write-ahead log (cluster/wal.c), so that the Readies of many groups cost one fdatasync per
 * batch (as Dragonboat and TiKV's raft-engine do), whatever the number of groups.
 *
 * It persists part (b) of the Ready contract of cluster/raft.h for each group: entries
 * (with the "delete every entry >= the first new index" rule), hard state, and snapshot
 * metadata (snapshot bytes live in files the caller keeps; see cluster/snapshot.h). At open
 * it replays the log into each group's raft_boot_t. Record format: docs/CLUSTER.md "The Raft
 * store". One caller at a time (the node loop): nothing here is thread-safe. */
#ifndef QFS_CLUSTER_RSTORE_H
#define QFS_CLUSTER_RSTORE_H

#include <stddef.h>
#include <stdint.h>
#include "cluster/raft.h"
#include "cluster/wal.h"

#define RSTORE_VERSION 1     /* first byte of every record payload */

typedef struct rstore rstore_t;

/* Opens (creating if needed) the store in dir and replays it. opt as for wal_open (may be
 * NULL). Returns 0 and *out, or -QERR_* with a malloc'ed *errmsg (the caller frees it):
 * -QERR_CORRUPT for a record that parses as a WAL record but not as a store record (a
 * bad kind, a short field, an entry index that leaves a gap), -QERR_FORMAT for an unknown
 * RSTORE_VERSION. */
int rstore_open(const char *dir, const wal_options_t *opt, rstore_t **out, char **errmsg);

/* Closes the log (unsynced records may be lost, as with wal_close). NULL is a no-op. */
void rstore_close(rstore_t *s);

/* Ids of the groups the store holds (not dropped), ascending, into ids[0..max). Returns
 * how many there are (which may exceed max). */
size_t rstore_groups(const rstore_t *s, uint32_t *ids, size_t max);

/* Fills *b with group g's persisted state (hs, snap, entries); b->applied is 0. The entry
 * payloads are owned by the store and valid until rstore_boot_done(s, g) or any mutating
 * call on g. An unknown group gives an empty boot state (a new member). Returns 0. */
int rstore_boot(rstore_t *s, uint32_t g, raft_boot_t *b);

/* Frees the payload copies kept for rstore_boot (raft_new has copied them). The store then
 * keeps only what it needs to collect old segments: about 16 bytes per live entry. */
void rstore_boot_done(rstore_t *s, uint32_t g);

/* Appends what rd asks to persist for group g: rd->snapshot (metadata; the caller has made
 * the snapshot bytes durable first), rd->entries, then rd->hs if rd->hs_changed. Nothing is
 * durable before rstore_sync(). rd->snap_chunk is not the store's: the caller writes chunk
 * bytes to its snapshot file. Returns 0 or -QERR_*. After any error (including a full disk,
 * and entries that break the Ready contract) the store is failed: every later call returns
 * -QERR_FAILED, and the node reopens it, which replays exactly what is durable. */
int rstore_save(rstore_t *s, uint32_t g, const raft_ready_t *rd);

/* Group g compacted its log at meta (raft_compact + raft_snapshot_meta, the snapshot bytes
 * being durable): entries up to meta->index are no longer needed. Appends a record.
 * Returns 0 or -QERR_*. */
int rstore_compact(rstore_t *s, uint32_t g, const raft_snap_meta_t *meta);

/* Forgets group g (its replica moved away). Appends a record. Returns 0 or -QERR_*. */
int rstore_drop(rstore_t *s, uint32_t g);

/* Makes every record saved so far durable with one fdatasync. Returns 0 or -QERR_* as
 * wal_sync (after -QERR_IO the store is failed until reopened). */
int rstore_sync(rstore_t *s);

/* Deletes old log segments no group needs any more. It first makes every record saved so
 * far durable (one fdatasync), since the deletion relies on them. Hard states and snapshot metadata of
 * groups that have not changed for a long time are written again (then synced) so they never
 * hold the log back; live entries that are not yet covered by a snapshot do. The ids of the
 * groups holding live entries go to blocking[0..max), oldest first entry first (the caller
 * snapshots and compacts the first ones to free the most); *nblocking gets how many groups
 * hold live entries. Returns 0 or -QERR_*. */
int rstore_gc(rstore_t *s, uint32_t *blocking, size_t max, size_t *nblocking);

typedef struct rstore_stats {
    wal_stats_t wal;
    uint64_t groups;
    uint64_t live_entries;    /* entries held across groups (not yet compacted away) */
    uint64_t rewrites;        /* hard states / snapshot metadata written again by gc */
} rstore_stats_t;

void rstore_get_stats(const rstore_t *s, rstore_stats_t *st);

#endif
