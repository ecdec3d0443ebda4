/* cluster/snapshot.h — snapshot files: a state machine's whole state as one lz4-frame stream
 * behind a checksummed header (last included index and term), written atomically to
 * snap-<index>.snap in a directory. Streaming both ways, so a large state never sits in one
 * buffer; raw chunk access lets Raft ship a snapshot file to a follower. Format and rules:
 * docs/FORMATS.md, section "Snapshot". */
#ifndef QFS_CLUSTER_SNAPSHOT_H
#define QFS_CLUSTER_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/sm.h"

#define SNAP_VERSION 1
#define SNAP_HEADER 64 /* bytes of the file header before the lz4 frame */

/* What snapshot_open_read() found: a file whose header is valid. */
typedef struct snapshot_info {
    uint64_t index;     /* last log index included in the state */
    uint64_t term;      /* term of that entry */
    uint64_t raw_len;   /* bytes of the uncompressed state stream */
    uint64_t file_size; /* bytes of the whole file (header + compressed stream) */
    char *path;         /* malloc'ed; free with snapshot_info_free() */
} snapshot_info_t;

void snapshot_info_free(snapshot_info_t *info);

/* ---- writing a snapshot from a state machine ---- */

/* Starts writing the snapshot of the state after applying index (of term) into dir (must
 * exist), as a temp file snap-<index>.snap.tmp. Returns 0 and *out, or -QERR_*. The caller
 * then calls ops->snapshot(ctx, w) and ends with exactly one of commit or abort. */
int snapshot_begin(const char *dir, uint64_t index, uint64_t term, snap_writer_t **out);

/* Ends the lz4 frame and writes the header: the temp file is whole, not yet durable, and
 * the state machine is no longer read. Returns 0 or -QERR_* (also a put() error earlier);
 * either way w is then ended with commit (which returns the same error) or abort. Calling it
 * again returns the same result. Lets a caller fsync off its own thread: finish under its
 * lock, commit elsewhere. */
int snapshot_finish(snap_writer_t *w);

/* Deletes every snap-*.snap in dir older than index (a newer snapshot made it unneeded). */
void snapshot_prune(const char *dir, uint64_t index);

/* Finishes w if not done yet (snapshot_finish), fsyncs, renames the file to snap-<index>.snap,
 * fsyncs dir, then deletes every older snap-*.snap. Always frees w. Returns 0, or -QERR_*
 * (-QERR_NOSPACE when the disk is full) and then the temp file is gone and older snapshots
 * are untouched. A put() error earlier is returned here again. */
int snapshot_commit(snap_writer_t *w);

/* Drops the snapshot being written (deletes the temp file) and frees w. NULL is a no-op. */
void snapshot_abort(snap_writer_t *w);

/* ---- reading ---- */

/* Finds the newest snap-<index>.snap in dir (temp files are ignored) and checks its header:
 * magic, version, header checksum, index matching the name, file size. Returns 0 and *info,
 * -QERR_NOTFOUND if dir holds no snapshot, -QERR_FORMAT (unknown version) or -QERR_CORRUPT
 * with a malloc'ed *errmsg naming the file (caller frees). It never falls back to an older
 * snapshot: the WAL before the newest one may be gone. */
int snapshot_open_read(const char *dir, snapshot_info_t *info, char **errmsg);

/* Opens the snapshot described by info for streaming its state: first checks the CRC32C of
 * the whole compressed stream (one read pass), so restore() never sees damaged bytes.
 * Returns 0 and *out, or -QERR_CORRUPT / -QERR_IO with *errmsg (caller frees). */
int snapshot_reader_open(const snapshot_info_t *info, snap_reader_t **out, char **errmsg);

/* Ends reading and frees r (NULL is a no-op). Returns 0 if the state machine read the whole
 * stream and the CRC32C of the uncompressed bytes matched; else -QERR_CORRUPT, and a
 * malloc'ed message goes to *errmsg if errmsg is not NULL and *errmsg is NULL. */
int snapshot_reader_close(snap_reader_t *r, char **errmsg);

/* ---- raw chunks (shipping a snapshot file between nodes) ---- */

/* Reads up to len raw file bytes at off into buf; *got is 0 at end of file. Returns 0 or
 * -QERR_IO. */
int snapshot_read_chunk(const snapshot_info_t *info, uint64_t off, void *buf, size_t len,
                        size_t *got);

typedef struct snap_recv snap_recv_t;

/* Starts receiving a snapshot file into dir as a temp file. Returns 0 and *out or -QERR_*. */
int snapshot_recv_begin(const char *dir, snap_recv_t **out);
/* Writes len raw bytes at off. Returns 0, -QERR_NOSPACE or -QERR_IO. */
int snapshot_recv_write(snap_recv_t *r, uint64_t off, const void *buf, size_t len);
/* Checks the received file (header, size, CRC32C of the compressed stream), fsyncs it,
 * renames it to snap-<index>.snap, fsyncs dir and deletes older snapshots. Always frees r.
 * Returns 0 and *info (may be NULL), or -QERR_* with *errmsg and the temp file deleted. */
int snapshot_recv_commit(snap_recv_t *r, snapshot_info_t *info, char **errmsg);
void snapshot_recv_abort(snap_recv_t *r);

/* Deletes leftover temp files (snap-*.tmp) from interrupted writes in dir. Returns the
 * number deleted, or -QERR_IO. */
int snapshot_remove_temps(const char *dir);

#endif
