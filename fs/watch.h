/* fs/watch.h — config watches: the `.events` and `.events@rev` streams of FILE-API §5.
 * A watch is one open of `.events`, an event stream (fs/evstream.h) of the changes below
 * its directory. Parked reads and pollers are answered when apply's EFF_CONFIG_REV effect
 * is delivered (after the state lock was released): watch_front is config/'s front
 * (fs/ns.h) and its context is the node's table of streams. */
#ifndef QFS_FS_WATCH_H
#define QFS_FS_WATCH_H

#include <fuse_lowlevel.h>
#include <stdint.h>
#include "fs/ns.h"
#include "fs/evstream.h"
#include "fs/state.h"

typedef evs_t watch_t;
typedef evs_table_t watch_table_t;

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

/* evs_read with the O_NONBLOCK of the open. */
void watch_read(fuse_req_t req, watch_t *w, size_t size, off_t off);

/* evs_poll and evs_close. */
void watch_poll(fuse_req_t req, watch_t *w, struct fuse_pollhandle *ph);

void watch_close(watch_t *w);

#endif
