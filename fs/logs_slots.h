/* fs/logs_slots.h — which kernel inode a lookup of a log answers on one mount (docs/LOGS.md
 * "One kernel inode per writer").
 *
 * The kernel takes a FUSE inode's lock exclusively for every O_APPEND (or past-EOF) direct
 * write and holds it until the WRITE is answered, after the commit: through one inode, one
 * append at a time is in flight, and appenders cannot share a WAL fsync. So a log is seen
 * by the kernel through up to LGSL_SLOTS inodes (nodeids), its "slots": all of them have the
 * same attributes, st_ino included (attr.ino is slot 0's number), only the nodeid differs. A
 * lookup of the log's name answers its current slot; a write open of the current slot moves
 * the current slot to a free one (no write open on it), so the next open of the name finds
 * another inode (the entry timeout of a log is 0: every path walk asks) and the writers of
 * one log hold different inode locks. Readers share the current slot (and its page cache)
 * until the next writer opens.
 *
 * A table entry exists only while a write open of the log is counted (bounded by the open
 * write descriptors); without one, lookups answer slot 0. So when the last writer closes,
 * lookups answer slot 0 again: after a lone writer of slot 0 that no lookup followed
 * (`echo x >> log`) the kernel's name entry still holds slot 0 and nothing switches;
 * otherwise the next lookup switches the name back to slot 0's inode, once.
 *
 * Locking: one mutex, a leaf (callers may hold the state lock). */
#ifndef QFS_FS_LOGS_SLOTS_H
#define QFS_FS_LOGS_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#define LGSL_SLOTS 64u

typedef struct lgsl lgsl_t;

/* A table, or NULL when out of memory. */
lgsl_t *lgsl_new(void);
/* Frees the table (NULL: nothing). */
void lgsl_free(lgsl_t *t);

/* The slot (0 .. LGSL_SLOTS - 1) a lookup of log key answers now. */
unsigned lgsl_lookup(lgsl_t *t, uint64_t key);

/* A write open of log key through slot s was made: counted; when s is the current slot, a
 * free slot becomes the current one (when every slot has a writer, it stays: the writers
 * share inodes, correct and slower). 0, or -ENOMEM (not counted: lookups keep answering s).
 * Every successful call is matched by one lgsl_close_write. */
int lgsl_open_write(lgsl_t *t, uint64_t key, unsigned s);

/* A write open counted by lgsl_open_write(key, s) was released. */
void lgsl_close_write(lgsl_t *t, uint64_t key, unsigned s);

/* Logs with a counted write open (for tests). */
size_t lgsl_count(lgsl_t *t);

#endif
