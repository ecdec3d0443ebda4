/* fs/logs_pcache.h — the kernel page cache of logs/ files on one mount (docs/LOGS.md
 * "Reads through the page cache"). A read-only open of a log may be served from the kernel's
 * page cache (FUSE direct_io off, keep_cache on): a log's byte at an offset never changes
 * once appended, so cached pages stay right while the log grows. Two things make them
 * wrong, and this module has them invalidated: retention dropping old segments (reads below
 * the oldest retained offset must fail with ESPIPE, not answer from the cache) and the
 * removal of the log (a descriptor open across `rm` reads EOF). A new log of the same name
 * is another inode (ids are never reused), so it never meets the old one's pages.
 *
 * A log is seen by the kernel through up to LGPC_SLOTS inodes (its slots, fs/logs_slots.h),
 * each with its own pages. The module keeps, per log (key: slot 0's nodeid) that a cached
 * open used on this mount: the slots cached opens used ("tracked": every invalidation goes to
 * each of them), the slots whose pages are known to hold nothing below the log's "clean
 * start" ("ok"), that clean start, and the count of cached opens not released. An open keeps
 * the pages (keep_cache) only on an ok slot while the log's start is not past the clean
 * start. The clean start rises only when the kernel accepted the invalidation of every tracked
 * slot; an open that drops its slot's pages makes that slot ok only once its reply reached the
 * kernel (lgpc_opened). An entry without open descriptors ("idle") may be forgotten at any
 * time (the table keeps at most idle_max of them, least recently used first): no descriptor
 * can read its pages then, and the next cached open finds no entry and drops them.
 *
 * The front reports each log's state: from a FUSE request handler (the notification is
 * written at once, before the request is answered) or from the applying thread's delivery
 * hook, which must never wait for the kernel (an invalidation waits for pages under read,
 * and a read may wait for apply through a read barrier): those go to a queue that the
 * module's own thread writes. The kernel is told through notify
 * (fuse_lowlevel_notify_inval_inode in the node; a recorder in the unit test).
 *
 * Locking: one mutex, a leaf (callers may hold the state lock and the front's mutex); it is
 * never held while notify runs. */
#ifndef QFS_FS_LOGS_PCACHE_H
#define QFS_FS_LOGS_PCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LGPC_SLOTS 64u

/* Invalidates the cached pages of the inode of log key seen through slot covering
 * [off, off + len) (len 0: to the end of the file). Returns 0 or -errno (-ENOENT: the kernel
 * does not know the inode, so it caches nothing of it). */
typedef int (*lgpc_notify_fn)(void *arg, uint64_t key, unsigned slot, off_t off, off_t len);

typedef struct lgpc lgpc_t;

/* A table with its notifier thread started, keeping at most idle_max idle entries; NULL when
 * out of memory or the thread cannot start. */
lgpc_t *lgpc_new(lgpc_notify_fn notify, void *arg, size_t idle_max);
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

/* A cached open of log key through slot (< LGPC_SLOTS), whose oldest retained offset is start
 * now. The slot is tracked from now on and the open counted until lgpc_close. Returns 1 when
 * the open may keep the slot's pages (keep_cache), 0 when it must drop them (the kernel then
 * invalidates every page of the slot's inode at the open); -1 when the log cannot be tracked
 * (out of memory, bad slot): the open must not use the page cache (and is not counted). */
int lgpc_open(lgpc_t *pc, uint64_t key, unsigned slot, uint64_t start);
/* The reply of an open counted by lgpc_open (its answer keep) reached the kernel: after
 * keep 0, the slot's pages are known clean. Not called when the reply failed. */
void lgpc_opened(lgpc_t *pc, uint64_t key, unsigned slot, int keep);
/* A cached open counted by lgpc_open was released (its reply failed, or the file closed). */
void lgpc_close(lgpc_t *pc, uint64_t key);

/* The log key now: gone (exists 0) or with oldest retained offset start. Does nothing for a
 * log the table does not hold. Else, when the log is gone, every page of every tracked slot is
 * invalidated and the log forgotten; when start is past the clean start (and past what is
 * already queued), pages [0, start) of every tracked slot are. now: write the notifications
 * before returning (a FUSE request handler, no lock held) unless start is confirmed clean
 * already (what the delivery queued is written again), else queue them (the delivery
 * hook). A failed notification (other than -ENOENT) confirms nothing: the slot is not ok
 * any more and the next report writes it again. */
void lgpc_report(lgpc_t *pc, uint64_t key, int exists, uint64_t start, int now);

/* The tracked slots of log key (bit s: slot s); 0 when the table does not hold it. */
uint64_t lgpc_tracked(lgpc_t *pc, uint64_t key);

/* Writes at once (a FUSE request handler) the invalidation of [off, off + len) of each slot
 * of log key in the mask slots. */
void lgpc_inval_now(lgpc_t *pc, uint64_t key, uint64_t slots, off_t off, off_t len);

/* The logs of the table for which match(arg, key) is nonzero, in *out (malloc'ed, the caller
 * frees it; NULL when there are none or out of memory); returns how many. */
size_t lgpc_list(lgpc_t *pc, int (*match)(void *arg, uint64_t key), void *arg,
                 uint64_t **out);

/* Invalidations written so far and their failures other than -ENOENT (for tests). */
void lgpc_counts(lgpc_t *pc, uint64_t *written, uint64_t *failed);
/* Invalidations queued and not taken by the thread yet (for tests). */
size_t lgpc_queued(lgpc_t *pc);
/* Logs held, and how many of them are idle (for tests). */
size_t lgpc_size(lgpc_t *pc, size_t *idle);

#endif
