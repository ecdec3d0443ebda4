/* cluster/wal.h — the write-ahead log: numbered records (index, term, payload) in segment
 * files of one directory, CRC32C per record, group commit by the caller (append many, sync
 * once). The single-node group stores its commands here; Raft will store its entries here.
 * On-disk format, recovery rules and the fsync contract: docs/FORMATS.md, section "WAL". */
#ifndef QFS_CLUSTER_WAL_H
#define QFS_CLUSTER_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/hist.h"

#define WAL_VERSION 1
#define WAL_SEGMENT_HEADER 32         /* bytes of segment header */
#define WAL_RECORD_HEADER 24          /* bytes of record header before the payload */
#define WAL_MAX_PAYLOAD (256u << 20)  /* largest payload of one record */
/* Bit 31 of a record's len field: set after the batch ending with this record was synced
 * (docs/FORMATS.md "Recovery"). Not covered by the CRC. */
#define WAL_LEN_SYNCED 0x80000000u
#define WAL_DEFAULT_SEGMENT (64u << 20)
/* Free bytes the file system must keep after a zero-tail extension (wal_sync); with less,
 * no tail is made and the WAL grows its file batch by batch, so near a full disk every byte
 * goes to records and the node's full-disk rules (fs/node.c: room held back for a snapshot,
 * the reserve given up on the WAL's ENOSPC) see exactly what they saw without a tail. */
#define WAL_TAIL_MIN_FREE (64ull << 20)

typedef struct wal wal_t;

/* Called for each record in index order. payload is only valid during the call. Return 0 to
 * go on; any other value stops the scan, which then returns that value. */
typedef int (*wal_record_fn)(void *arg, uint64_t index, uint64_t term, const void *payload,
                             size_t len);

typedef struct wal_options {
    uint64_t segment_bytes; /* roll to a new segment past this size; 0 = 64 MiB */
    /* fdatasync replacement for fault-injection tests; NULL = fdatasync. Returns 0 or -1
     * with errno set, like fdatasync. */
    int (*sync_fn)(int fd);
    /* free bytes needed for a zero-tail extension; 0 = WAL_TAIL_MIN_FREE (tests: 1) */
    uint64_t tail_min_free;
} wal_options_t;

/* Opens (creating if needed) the WAL in directory dir (created if missing, parent must
 * exist). Scans every segment in order and calls fn (may be NULL) for each record.
 * Recovery: a torn tail of the LAST segment (incomplete record at EOF, or records failing
 * their CRC with no valid record after them) is cut off with ftruncate + fsync; a tail of
 * nothing but zeros there is the preallocated zero tail, kept and written over. Anything
 * else that does not parse — a bad record in an earlier segment, a bad record followed by a
 * valid one, an index gap, a bad segment header — fails with -QERR_CORRUPT (-QERR_FORMAT for
 * an unknown version) and a malloc'ed *errmsg naming the file and byte offset. Leftover
 * *.tmp files (an interrupted segment creation) are deleted. The last segment is
 * fdatasynced once, so records a crashed process wrote without syncing are durable before
 * the caller acts on them.
 * Returns 0 with *out (and *errmsg NULL), or -QERR_* (and nothing is left open; the caller
 * frees *errmsg). If fn returns nonzero, open stops and returns that value. opt may be NULL. */
int wal_open(const char *dir, const wal_options_t *opt, wal_record_fn fn, void *arg,
             wal_t **out, char **errmsg);

/* Appends one record. index must be wal_last_index() + 1, or anything >= 1 when the WAL
 * holds no record; term must be >= the last record's term. payload is copied (into an
 * internal buffer or straight to the file); nothing is durable until wal_sync() returns 0.
 * Returns 0, -QERR_INVAL (bad index/term), -QERR_TOOBIG (len > WAL_MAX_PAYLOAD),
 * -QERR_NOSPACE, -QERR_IO or -QERR_FAILED (the WAL failed earlier).
 * On -QERR_NOSPACE every record appended since the last successful wal_sync() (the current
 * batch) is dropped again: the files are cut back to their size at the last sync and
 * segments created since are deleted, so the WAL stays usable. On -QERR_IO the WAL is
 * failed. Not thread-safe: one caller at a time for every function on one wal_t. */
int wal_append(wal_t *w, uint64_t index, uint64_t term, const void *payload, size_t len);

/* Makes every record appended so far durable: writes what is buffered, then one fdatasync
 * of the active segment (segments closed by a roll were synced when they were closed).
 * The active segment keeps a zero-filled tail ahead of its end, so that this fdatasync
 * usually does not change the file size; when it runs low, this call first writes more
 * zeros (see TAIL_CHUNK in wal.c), which the same fdatasync makes durable.
 * Returns 0, -QERR_NOSPACE (batch dropped as in wal_append, WAL usable), -QERR_IO or
 * -QERR_FAILED. After a failed fdatasync the WAL is failed for good: the kernel may have
 * dropped the dirty pages and cleared the error, so a retry could "succeed" without the
 * data ever reaching the disk (the 2018 PostgreSQL "fsyncgate" lesson). Only a restart,
 * which re-reads what is really on disk, is safe. */
int wal_sync(wal_t *w);

/* Deletes every segment whose records all have index <= upto (compaction after a snapshot
 * covering upto), oldest first, then fsyncs the directory. The segment being appended to is
 * never deleted. Records are only ever removed whole-segment, so the WAL may still hold some
 * records <= upto afterwards. Returns 0 or -QERR_*. */
int wal_truncate_prefix(wal_t *w, uint64_t upto);

/* Removes every record with index >= from (Raft dropping a conflicting suffix), durably:
 * first writes out the current batch, deletes later segments newest first, then cuts the
 * segment holding from and fdatasyncs it. The next append must use index from (or any index
 * if the WAL became empty). from <= wal_first_index() empties the WAL. Returns 0 or -QERR_*. */
int wal_truncate_suffix(wal_t *w, uint64_t from);

/* Reads back records with index >= from, in order, from the files (buffered records are
 * written out first). fn as in wal_open. Returns 0, fn's nonzero value, or -QERR_*
 * (with *errmsg when errmsg is not NULL). */
int wal_read(wal_t *w, uint64_t from, wal_record_fn fn, void *arg, char **errmsg);

/* Index of the first / last record held; 0 when the WAL is empty. */
uint64_t wal_first_index(const wal_t *w);
uint64_t wal_last_index(const wal_t *w);
uint64_t wal_last_term(const wal_t *w);
/* Index the active (newest) segment starts at: records below it sit in older segments,
 * which wal_truncate_prefix can delete. 0 when there is no segment. */
uint64_t wal_active_first_index(const wal_t *w);

typedef struct wal_stats {
    uint64_t bytes;     /* bytes in live segment files, including buffered appends */
    uint64_t segments;  /* live segment files */
    uint64_t appends;   /* records appended since open */
    uint64_t syncs;     /* fdatasync calls on segments since open */
    uint64_t tail_bytes; /* zero-filled bytes past the end of the active segment's records
                            (preallocated room on disk; not counted in bytes) */
    hist_t sync_latency; /* latency of each of those fdatasync calls */
    int failed;         /* nonzero after an unrecoverable I/O error */
} wal_stats_t;

void wal_get_stats(const wal_t *w, wal_stats_t *st);

/* Closes files and frees w; records not yet synced are written but not fsynced (they may or
 * may not survive a crash), and the zero tail is cut off (not synced either). NULL is a
 * no-op. */
void wal_close(wal_t *w);

/* Result of wal_scan_buffer(). */
typedef struct wal_scan {
    uint64_t first_index;  /* from the segment header */
    uint64_t last_index;   /* last valid record, or first_index - 1 if none */
    uint64_t last_term;    /* term of the last valid record, or the prev_term passed in */
    uint64_t records;      /* valid records */
    size_t valid_end;      /* byte offset just past the last valid record */
    size_t bad_off;        /* on error: offset of the offending bytes */
    int zero_tail;         /* is_last only: valid_end < len and every byte from valid_end
                              on is zero (the preallocated tail, not damage) */
    char why[96];          /* on error or torn tail: what was wrong */
} wal_scan_t;

/* Parses one whole segment (header + records) held in memory: the fuzzer's entry point and
 * the reader behind wal_open. expect_first, if nonzero, is the index the segment header must
 * carry; prev_term is the term of the record before this segment (0 if none). If is_last,
 * a torn tail or a zero tail is reported by returning 0 with res->valid_end < len (and
 * res->zero_tail set for the latter); otherwise any trailing bytes, zeros too, are
 * -QERR_CORRUPT. Calls fn (may be NULL) for each valid record, in order, never on
 * bytes past a bad record. Returns 0, fn's nonzero value, -QERR_CORRUPT or -QERR_FORMAT
 * (res->bad_off and res->why say where and what). Never reads outside buf[0..len). */
int wal_scan_buffer(const void *buf, size_t len, uint64_t expect_first, uint64_t prev_term,
                    int is_last, wal_record_fn fn, void *arg, wal_scan_t *res);

#endif
