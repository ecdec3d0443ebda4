/* fs/watch.h — config watches: the `.events` and `.events@rev` streams of FILE-API §5.
 * A watch is one open of `.events`: a regular file that grows while it is read, whose
 * reads block until a change arrives below its directory. Reads honour FUSE interrupts and
 * O_NONBLOCK, poll(2) tells whether a read would block, and no thread waits per reader.
 * Parked reads and pollers are answered when apply's EFF_CONFIG_REV effect is delivered
 * (after the state lock was released): watch_front is config/'s front (fs/ns.h) and its
 * context is the node's table of watches. */
#ifndef QFS_FS_WATCH_H
#define QFS_FS_WATCH_H

#include <fuse_lowlevel.h>
#include <stdint.h>
#include "fs/ns.h"
#include "fs/state.h"

typedef struct watch watch_t;
typedef struct watch_table watch_table_t;

/* config/'s front: start creates the node's watch table, deliver answers parked reads. */
extern const ns_front_t watch_front;

/* Opens a watch in table t (node_front(node, NS_CONFIG)) of the config directory dirpath
 * ("" = all of config/), delivering the changes with a revision above after. The state's
 * read lock is held. Returns 0 and *out, -ESTALE if changes after `after` were already
 * dropped from the history, or -ENOMEM. */
/* after: WATCH_NOW for the changes from now on. On a cluster with several shards, a watch
 * of the root reads every shard's changes (each shard counts its own revisions), and a
 * revision to replay from is refused there with -EOPNOTSUPP; the read lock of dirpath's
 * shard (0 for the root) is held, and the others' are taken above it. */
#define WATCH_NOW UINT64_MAX
int watch_open(watch_table_t *t, const char *dirpath, uint64_t after, int nonblock,
               watch_t **out);

/* Answers a read of size bytes at off now, or parks it until a change arrives (EAGAIN
 * instead with O_NONBLOCK; EINTR when interrupted; EBUSY for a second concurrent read).
 * No lock held. w may be freed (by watch_close) as soon as the read is parked. */
void watch_read(fuse_req_t req, watch_t *w, size_t size, off_t off);

/* poll(2) on w: replies POLLIN when a read going on where the latest read ended would not
 * block now (bytes of the latest batch left, or an event below the directory; POLLERR too
 * when that read fails at once), else 0 and keeps ph (when given) until the next change
 * below the directory, which notifies and destroys it. ph is kept or destroyed. No lock
 * held; w stays valid for the call (the kernel holds the file open while it polls). */
void watch_poll(fuse_req_t req, watch_t *w, struct fuse_pollhandle *ph);

/* Ends a watch: a parked read gets EINTR, a kept poll handle is destroyed. Frees w. NULL is
 * a no-op. */
void watch_close(watch_t *w);

#endif
