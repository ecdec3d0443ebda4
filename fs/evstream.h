/* fs/evstream.h — the blocking event streams behind the `.events` files of config/,
 * services/ and jobs/ (FILE-API §5, §6, §8). A stream is one open of such a file: a
 * regular file that grows while it is read, whose reads block until an event arrives.
 * Reads honour FUSE interrupts and O_NONBLOCK, poll(2) tells whether a read would block,
 * no thread waits per reader, and the latest batch of lines stays readable, so a reader
 * may seek back within it (head(1) and bash's `read` do).
 *
 * The lines come from a source (evs_ops_t: a namespace's reader of its state machine's
 * event history, with its cursor). A front keeps one table per node and calls evs_deliver
 * when apply's effect telling of new events is delivered (no state lock held): parked
 * reads that have something now are answered and pollers woken.
 *
 * Locks, in order: the read locks of the node's states (ascending shard numbers), then the
 * table's mutex; replies to parked reads are sent holding the mutex only. */
#ifndef QFS_FS_EVSTREAM_H
#define QFS_FS_EVSTREAM_H

#include <fuse_lowlevel.h>
#include <stdint.h>

struct node;
typedef struct evs evs_t;
typedef struct evs_table evs_table_t;

/* A stream's source. Both calls run with the read locks of the stream's shards held (and
 * the table's mutex). */
typedef struct evs_ops {
    /* Writes the event lines after the source's cursor into buf[0..size) (size is at
     * least 64 KiB) and advances the cursor past them. Returns the byte count; 0 when
     * there is nothing new (it may still advance the cursor past events that are not the
     * stream's); -ENOENT when the stream has ended (its subject is gone: reads return
     * EOF); -ESTALE (events after the cursor were dropped) or another -errno. */
    int (*read)(void *src, char *buf, size_t size);
    /* Whether read would return nonzero now, without consuming what it would return:
     * 1 or 0, or -errno when read would fail (poll then says POLLERR too). */
    int (*pending)(void *src);
    /* Frees the source (at evs_close). */
    void (*free)(void *src);
} evs_ops_t;

/* A table for node n (NULL when out of memory). */
evs_table_t *evs_table_new(struct node *n);

/* The node of t. */
struct node *evs_table_node(const evs_table_t *t);

/* At front stop, when no request, delivery or release can reach the table any more: the
 * streams of files still open are detached (their poll handles destroyed, never notified);
 * evs_close then only frees them. Frees t; NULL is a no-op. */
void evs_table_free(evs_table_t *t);

/* Opens a stream in t over the states of shards [k0, k1) from source src, which it owns
 * from now on (freed by ops->free at close, or at once when this fails). Takes only the
 * table's mutex (state locks may be held). Returns 0 and *out, or -ENOMEM. */
int evs_open(evs_table_t *t, uint32_t k0, uint32_t k1, const evs_ops_t *ops, void *src,
             evs_t **out);

/* The source s was opened with. */
void *evs_src(const evs_t *s);

/* Answers a read of size bytes at off now, or parks it until an event arrives (EAGAIN
 * instead when nonblock; EINTR when interrupted; EBUSY for a second concurrent read;
 * EINVAL for an offset before the latest batch). No lock held. s may be freed (by
 * evs_close) as soon as the read is parked. */
void evs_read(fuse_req_t req, evs_t *s, size_t size, off_t off, int nonblock);

/* poll(2) on s: replies POLLIN when a read going on where the latest read ended would not
 * block now (POLLERR too when that read fails at once), else 0 and keeps ph (when given)
 * until a delivery gives s something to read, which notifies and destroys it. ph is kept
 * or destroyed. No lock held. */
void evs_poll(fuse_req_t req, evs_t *s, struct fuse_pollhandle *ph);

/* Ends a stream: a parked read gets EINTR, a kept poll handle is destroyed, the source is
 * freed. NULL is a no-op. */
void evs_close(evs_t *s);

/* New events may be in the states of shards [k0, k1): answers the parked reads and wakes
 * the pollers of the streams that read only shards in that range and have something now.
 * No state lock held on entry; allocates nothing. */
void evs_deliver(evs_table_t *t, uint32_t k0, uint32_t k1);

#endif
