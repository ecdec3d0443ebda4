/* fs/logs_pcache.h — the kernel page cache of logs/ files on one mount (docs/LOGS.md
 * "Reads through the page cache"). A read-only open of a log may be served from the kernel's
 * page cache (FUSE direct_io off, keep_cache on): a log's byte at an offset never changes
 * once appended, so cached pages stay right while the log grows. Two things make them
 * wrong, and this module has them invalidated: retention dropping old segments (reads below
 * the oldest retained offset must fail with ESPIPE, not answer from the cache) and the
 * removal of the log (a descriptor open across `rm` reads EOF). A new log of the same name
 * is another inode (ids are never reused), so it never meets the old one's pages.
 *
 * The module keeps, per inode that a cached open used on this mount, the oldest retained
 * offset below which its pages are known invalidated ("clean start"). The front reports
 * each log's state: from a FUSE request handler (the notification is written at once,
 * before the request is answered) or from the applying thread's delivery hook, which must
 * never wait for the kernel (an invalidation waits for pages under read, and a read may wait
 * for apply through a read barrier): those go to a queue that the module's own thread
 * writes. The kernel is told through notify (fuse_lowlevel_notify_inval_inode in the node;
 * a recorder in the unit test).
 *
 * Locking: one mutex, a leaf (callers may hold the state lock and the front's mutex); it is
 * never held while notify runs. */
#ifndef QFS_FS_LOGS_PCACHE_H
#define QFS_FS_LOGS_PCACHE_H

#include <stdint.h>
#include <sys/types.h>

/* Invalidates the cached pages of inode ino covering [off, off + len) (len 0: to the end
 * of the file). Returns 0 or -errno (-ENOENT: the kernel does not know the inode). */
typedef int (*lgpc_notify_fn)(void *arg, uint64_t ino, off_t off, off_t len);

typedef struct lgpc lgpc_t;

/* A table with its notifier thread started; NULL when out of memory or the thread cannot
 * start. */
lgpc_t *lgpc_new(lgpc_notify_fn notify, void *arg);
/* Stops the thread, dropping what is queued (the mount's session is ending and its requests
 * are no longer read: an invalidation could wait for a page a pending read holds; the pages
 * go with the mount); reports after it are dropped. Idempotent. */
void lgpc_quiesce(lgpc_t *pc);
/* Quiesces and frees (NULL: nothing). */
void lgpc_free(lgpc_t *pc);

/* Whether an open of a log whose oldest retained offset is start may use the page cache:
 * start must be a multiple of the page size (0 included), so that no page the kernel reads
 * begins below it (a read there is ESPIPE). */
int lgpc_cacheable(uint64_t start);

/* A cached open of inode ino, whose log's oldest retained offset is start now. Returns 1
 * when the open may keep the pages cached before it (keep_cache), 0 when the open must drop
 * them (the first cached open of the inode on this mount, or start moved past the clean
 * start and its invalidation is not confirmed yet): the kernel then invalidates every page
 * of the inode at the open, synchronously, and start becomes the clean start. -1 when the
 * inode cannot be tracked (out of memory): the open must not use the page cache. */
int lgpc_open(lgpc_t *pc, uint64_t ino, uint64_t start);

/* The log of inode ino now: gone (exists 0) or with oldest retained offset start. Does
 * nothing for an inode no cached open used. Else, when the log is gone, every page is
 * invalidated and the inode forgotten; when start is past the clean start (and past what is
 * already queued), pages [0, start) are invalidated. now: write the notification before
 * returning (a FUSE request handler, no lock held) unless start is confirmed clean already
 * (what the delivery queued is written again), else queue it (the delivery hook). */
void lgpc_report(lgpc_t *pc, uint64_t ino, int exists, uint64_t start, int now);

/* Whether a cached open used inode ino on this mount (its pages may be cached). */
int lgpc_known(lgpc_t *pc, uint64_t ino);

/* Writes one invalidation at once (a FUSE request handler). */
void lgpc_inval_now(lgpc_t *pc, uint64_t ino, off_t off, off_t len);

/* The inodes of the table for which match(arg, ino) is nonzero, in *out (malloc'ed, the
 * caller frees it; NULL when there are none or out of memory); returns how many. */
size_t lgpc_list(lgpc_t *pc, int (*match)(void *arg, uint64_t ino), void *arg,
                 uint64_t **out);

/* Invalidations written so far and their failures other than -ENOENT (for tests). */
void lgpc_counts(lgpc_t *pc, uint64_t *written, uint64_t *failed);
/* Invalidations queued and not taken by the thread yet (for tests). */
size_t lgpc_queued(lgpc_t *pc);

#endif
