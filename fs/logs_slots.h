/* fs/logs_slots.h — which kernel inode a lookup of a log answers on one mount (docs/LOGS.md
 * "One kernel inode per writer").
 *
 * The kernel takes a FUSE inode's lock exclusively for every O_APPEND (or past-EOF) direct
 * write and holds it until the WRITE is answered, after the commit: through one inode, one
 * append at a time is in flight, and appenders cannot share a WAL fsync. So a log is seen
 * by the kernel through up to LGSL_SLOTS inodes (nodeids), its "slots": all of them have the
 * same attributes, st_ino included (attr.ino is slot 0's number), only the nodeid differs. A
 * lookup of the log's name answers its current slot; a write open of the current slot moves
 * the current slot to a free one (no open counted on it), so the next open of the name finds
 * another inode (the entry timeout of a log is 0: every path walk asks) and the writers of
 * one log hold different inode locks.
 *
 * Cached readers (page cache, logs_pcache.h) must not share a slot with a writer of this
 * mount: each slot is its own kernel inode with its own size, a write through a slot sets
 * that slot's size to the writer's stale idea of the end (its O_APPEND position), and the
 * kernel drops a GETATTR answer older than the inode's last write or invalidation, so a
 * cached reader there could read EOF before records appended through other slots, or a
 * short read ending inside one. So cached read opens are counted per slot too: a cached
 * read open of the current slot moves lookups on like a write open, the current slot never
 * has a cached reader, a read open of a writer's slot is refused (the caller reads direct),
 * and cached readers hold at most LGSL_READER_SLOTS slots (further ones read direct), so a
 * slot without readers is always left for writers. Left: a writer whose lookup answered
 * slot s before a cached reader's open of s was counted still opens s (opens racing one
 * lookup; the reader may then see the short reads above while both are open).
 *
 * A table entry exists only while an open of the log is counted (bounded by the open
 * descriptors); without one, lookups answer slot 0. A release that leaves its slot with
 * neither writer nor cached reader makes it current again (the kernel's name entry likely
 * holds it: `echo x >> log` while a reader is open switches nothing), and with the last
 * counted open gone lookups answer slot 0 again: after a lone writer of slot 0 that no
 * lookup followed (`echo x >> log`) the kernel's name entry still holds slot 0 and nothing
 * switches; otherwise the next lookup switches the name back to slot 0's inode, once.
 *
 * Locking: one mutex, a leaf (callers may hold the state lock). */
#ifndef QFS_FS_LOGS_SLOTS_H
#define QFS_FS_LOGS_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#define LGSL_SLOTS 64u
#define LGSL_READER_SLOTS (LGSL_SLOTS / 2)

typedef struct lgsl lgsl_t;

/* A table, or NULL when out of memory. */
lgsl_t *lgsl_new(void);
/* Frees the table (NULL: nothing). */
void lgsl_free(lgsl_t *t);

/* The slot (0 .. LGSL_SLOTS - 1) a lookup of log key answers now. */
unsigned lgsl_lookup(lgsl_t *t, uint64_t key);

/* A write open of log key through slot s was made: counted; when s is the current slot, a
 * slot with neither writer nor cached reader becomes the current one (none: one without a
 * cached reader; the writers share inodes, correct and slower). 0, or -ENOMEM (not counted: lookups keep answering s).
 * Every successful call is matched by one lgsl_close_write. */
int lgsl_open_write(lgsl_t *t, uint64_t key, unsigned s);

/* A write open counted by lgsl_open_write(key, s) was released. */
void lgsl_close_write(lgsl_t *t, uint64_t key, unsigned s);

/* A read open of log key through slot s that wants the page cache: 1 when counted (it may
 * read cached; when s is current, lookups move on; matched by one lgsl_close_read), 0 when
 * it must read direct (a writer of this mount holds s, readers hold LGSL_READER_SLOTS
 * other slots, out of memory, or s out of range). */
int lgsl_open_read(lgsl_t *t, uint64_t key, unsigned s);

/* A read open counted by lgsl_open_read(key, s) was released. */
void lgsl_close_read(lgsl_t *t, uint64_t key, unsigned s);

/* Logs with a counted open (for tests). */
size_t lgsl_count(lgsl_t *t);

#endif
