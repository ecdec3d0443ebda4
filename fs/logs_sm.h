/* fs/logs_sm.h — the state machine of logs/ (FILE-API §7; design in docs/LOGS.md):
 * append-only logs whose bytes live in segment files under a directory bound to the shard,
 * while the replicated state keeps only an index (per log its settings and, per segment,
 * base offset, length, sealed flag, time of its last record and CRC32C). Apply writes each
 * record into the active segment file at its offset (pwrite: a replay writes the same
 * bytes), seals a segment into an lz4 block file once it reaches the log's segment size,
 * and drops whole old segments by retention. Deterministic: every replica's index is the
 * same, and its files hold the same bytes. This header is what the front (fs/logs_fuse.c)
 * and the tests use: the binding of the directory, the encoders, a read API and the check.
 * No FUSE, mount or node header. */
#ifndef QFS_FS_LOGS_SM_H
#define QFS_FS_LOGS_SM_H

#include <stddef.h>
#include <stdint.h>
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/state.h"

#define LOGS_RECORD_MAX (128u << 10)            /* bytes of one record (one write()) */
#define LOGS_SEGMENT_DEFAULT (64ull << 20)      /* user.segment_bytes */
#define LOGS_SEGMENT_MIN 4096ull
#define LOGS_SEGMENT_MAX (1ull << 30)
#define LOGS_RETENTION_BYTES_MAX (1ull << 50)   /* user.retention_bytes; 0 = off */
#define LOGS_RETENTION_S_MAX (10ull * 366 * 86400) /* user.retention_seconds; 0 = off */
#define LOGS_AT_END UINT64_MAX                  /* APPEND's `at` of an O_APPEND write */
#define LOGS_FOLLOW ".follow"                   /* the reserved control name of logs/ */

/* The effect apply emits when a log grew, was removed or lost old segments to retention
 * (APPEND, UNLINK, and a SET or TRIM that dropped segments): to nobody (sid, wid 0), payload
 * u.qready.qid = the log's id. Followers (`.follow/`) are answered from it. It reuses the
 * queues' "ready" kind with ns = NS_LOGS, so fs/effects.h needs no change until the kind
 * gets its own name (node_deliver routes by ns). */
#define EFF_LOG_GREW EFF_QUEUE_READY
/* The qid of the EFF_LOG_GREW a restore emits (ids start at 1): every log of the shard may
 * have grown or gone (installed snapshot), so every follower of the shard re-checks. */
#define LOGS_ALL_IDS 0

/* Command opcodes of the logs/ namespace (fields after the cmd.h header). */
enum logs_op {
    LGOP_CREATE = 1,   /* str name, u8 excl -> result u64 id */
    LGOP_APPEND,       /* str name, u64 id (0: any), u64 at (LOGS_AT_END: any), bytes record
                         -> result u64 offset of the record */
    LGOP_UNLINK,       /* str name */
    LGOP_SET,          /* str name, u8 LGSET_*, u64 value */
    LGOP_TRIM,         /* str name -> result u32 segments dropped */
};
enum { LGSET_RETENTION_BYTES = 1, LGSET_RETENTION_S, LGSET_SEGMENT_BYTES };

extern const ns_sm_t logs_sm;

/* ---- the directory of a shard's segment files (not replicated) ----
 * logs_sm_bind gives shard st the directory dir (created with its parents if missing) and
 * empties it: call it while st is empty of logs and not yet shared (the node: after
 * state_new_shard, before the group opens and restores). The binding outlives restores;
 * logs_sm_unbind drops it (before state_free). A shard without one refuses every logs/
 * command with -ENOTSUP. Returns 0 or -errno. */
int logs_sm_bind(state_t *st, const char *dir);
void logs_sm_unbind(state_t *st);

/* ---- command encoders: each starts b (cmd_begin) at time now; the caller proposes b and
 * frees b->p ---- */
void logs_cmd_create(cmdbuf_t *b, uint64_t now, const char *name, int excl);
void logs_cmd_append(cmdbuf_t *b, uint64_t now, const char *name, uint64_t id, uint64_t at,
                     const void *rec, size_t len);
void logs_cmd_unlink(cmdbuf_t *b, uint64_t now, const char *name);
void logs_cmd_set(cmdbuf_t *b, uint64_t now, const char *name, uint8_t which, uint64_t value);
void logs_cmd_trim(cmdbuf_t *b, uint64_t now, const char *name);

/* ---- read API (the caller holds the state lock, read or write) ---- */

typedef struct log_view {
    uint64_t id;
    const char *name;             /* valid while the lock is held */
    uint64_t ctime_ms, mtime_ms;
    uint64_t start, end;          /* oldest retained offset, end offset */
    uint64_t records;             /* records ever appended */
    uint64_t retention_bytes, retention_s, segment_bytes;
    uint32_t segments, sealed;    /* retained segments, how many of them sealed */
    uint64_t disk_bytes;          /* bytes of its segment files on this node */
    int broken;                   /* a file error on this node: reads give EIO */
} log_view_t;

/* The log named name (len bytes) / with id: 0 and *v, or -ENOENT. */
int logs_sm_get(const state_t *st, const char *name, size_t len, log_view_t *v);
int logs_sm_get_id(const state_t *st, uint64_t id, log_view_t *v);
/* Calls fn for each log in creation order until fn returns nonzero; returns that value. */
int logs_sm_each(const state_t *st, int (*fn)(void *arg, const log_view_t *v), void *arg);
/* Reads up to n bytes of log id at offset off into buf. Returns the bytes read (0 at or
 * after the end; a read stops at the end), -ESPIPE when off is below the oldest retained
 * offset, -ENOENT for an unknown log, -EIO when its files fail on this node. */
long logs_sm_read(const state_t *st, uint64_t id, uint64_t off, void *buf, size_t n);
/* Nonzero when a TRIM of log id at time now_ms would drop a segment (the sweep asks). */
int logs_sm_trim_due(const state_t *st, uint64_t id, uint64_t now_ms);

/* The first broken invariant of logs/, or NULL (restore rejects a snapshot that breaks
 * one): ids at most next_id and names valid and not reserved; per log ctime <= mtime <= the
 * state's time, settings in range, at least one segment, segments contiguous from start
 * to end, all sealed and non-empty but the last (active) one, each one's last record not
 * after the state's time, records at most the bytes ever appended. */
const char *logs_sm_verify(const state_t *st);
/* ASSERTs the table's structure (fs/ntable.h) and logs_sm_verify. */
void logs_sm_check(const state_t *st);

#endif
