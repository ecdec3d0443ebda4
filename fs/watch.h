/* fs/watch.h — config watches: the `.events` and `.events@rev` streams of FILE-API §5.
 * A watch is one open of `.events`: a regular file that grows while it is read, whose
 * reads block (answered later, from the apply hook) until a change arrives below its
 * directory. Reads honour FUSE interrupts and O_NONBLOCK; no thread waits per reader. */
#ifndef QFS_FS_WATCH_H
#define QFS_FS_WATCH_H

#include <fuse_lowlevel.h>
#include <stdint.h>
#include "fs/state.h"

typedef struct watch watch_t;

/* Opens a watch of the config directory dirpath ("" = all of config/) in st, delivering
 * the changes with a revision above after. Read lock held. Returns 0 and *out, -ESTALE if
 * changes after `after` were already dropped from the history, or -ENOMEM. */
int watch_open(state_t *st, const char *dirpath, uint64_t after, int nonblock, watch_t **out);

/* Answers a read of size bytes at off now, or parks it until a change arrives (EAGAIN
 * instead with O_NONBLOCK; EINTR when interrupted; EBUSY for a second concurrent read). */
void watch_read(fuse_req_t req, watch_t *w, size_t size, off_t off);

/* Ends a watch: a parked read gets EINTR. Frees w. NULL is a no-op. */
void watch_close(watch_t *w);

/* Apply hook: after a command of namespace ns was applied (state write lock held), answers
 * the parked reads that now have something to read. */
void watch_on_apply(uint8_t ns);

#endif
