/* fs/watch.c — config watches (`.events`); see watch.h. Each watch keeps the latest batch
 * of event lines (buf[0..len) at stream offset base), so a reader may seek back within it
 * (head(1) and bash's `read` do), and a cursor: the last revision it has looked at.
 *
 * Locking. A node has one watch table. Its mu guards the parked list and, for every watch
 * of the table, waiting/want/woff and the batch (cursor, base, buf, len). Order: the state
 * lock (read), then mu; replies are sent holding mu only (the batch they point into must
 * not change or be freed meanwhile; watch_close takes mu before freeing).
 *
 * A parked read (w->waiting) is owned by the table: whoever unparks it under mu (delivery,
 * interrupt, close) answers it; nobody touches a watch's request after unlocking mu unless
 * they unparked it. The interrupt callback is registered before the read is parked, and
 * the parking thread checks fuse_req_interrupted under mu, so an interrupt is never lost
 * and never answers a request twice.
 *
 * Pollers. poll(2) on a watch that has nothing to read keeps the poll handle (w->ph, the
 * watch on the table's polled list, under mu). It is judged and kept under the state lock
 * (read), so the EFF_CONFIG_REV of any later apply finds it. Whoever takes w->ph under mu
 * (a delivery that gives the watch something to read, close, stop) notifies or destroys
 * it, and nobody else. Handles are notified only by deliveries, which end before the FUSE
 * session is destroyed (node_quiesce); stop only destroys what is left. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "fs/config.h"
#include "fs/intr.h"
#include "fs/node.h"
#include "fs/testhook.h"
#include "fs/watch.h"

#define BATCH_BYTES 65536
#define LINE_BYTES (4 * TREE_PATH_MAX + 64)   /* room for any one event line */

struct watch_table {
    node_t *node;
    pthread_mutex_t mu;
    watch_t *parked;
    watch_t *polled;             /* watches with a kept poll handle */
};

struct watch {
    watch_table_t *t;
    char *dir;                   /* namespace-relative directory watched */
    /* The shards watched, [k0, k1): the one of dir's top-level directory, or every shard
     * for the root of config/ (revisions are each shard's own: the root's stream gives each
     * shard's changes in their order, one shard after another in each batch). */
    uint32_t k0, k1;
    uint64_t *cursor;            /* per shard watched: last revision looked at */
    uint64_t base;               /* stream offset of buf[0] */
    char *buf;                   /* latest batch of lines (BATCH_BYTES, from open) */
    size_t len;
    int nonblock;
    fuse_req_t waiting;          /* parked read */
    size_t want;
    uint64_t woff;
    struct watch *next, *prev;   /* parked list; next also links a delivery's answers */
    int ans;                     /* delivery: the answer to send (bytes or -errno) ... */
    const char *ansp;            /* ... and where its bytes are (in buf) */
    uint64_t rend;               /* stream offset where the latest read's bytes ended */
    struct fuse_pollhandle *ph;  /* kept by poll while there is nothing to read */
    struct watch *pnext, *pprev; /* polled list; pnext also links a delivery's wake-ups */
};

/* Read-locks the states of the shards w watches (ascending) / unlocks them. */
static void lock_states(const watch_table_t *t, uint32_t k0, uint32_t k1)
{
    for (uint32_t k = k0; k < k1; k++)
        pthread_rwlock_rdlock(&node_state(t->node, k)->lock);
}

static void unlock_states(const watch_table_t *t, uint32_t k0, uint32_t k1)
{
    for (uint32_t k = k1; k-- > k0;)
        pthread_rwlock_unlock(&node_state(t->node, k)->lock);
}

/* Every shard the table's watches may read. */
static uint32_t all_shards(const watch_table_t *t) { return node_nshards(t->node); }

int watch_open(watch_table_t *t, const char *dirpath, uint64_t after, int nonblock,
               watch_t **out)
{
    uint32_t nsh = all_shards(t);
    int root = !dirpath[0];
    uint32_t k0 = root || nsh == 1 ? 0 : node_shard_of(t->node, NS_CONFIG, dirpath);
    uint32_t k1 = root ? nsh : k0 + 1;
    if (root && nsh > 1 && after != WATCH_NOW)
        return -EOPNOTSUPP;   /* a revision of the root: each shard counts its own */
    /* The caller holds the read lock of the shard of dirpath (0 for the root): the other
     * shards' are taken here, above it. */
    if (after != WATCH_NOW && config_sm_events_stale(node_state(t->node, k0), after))
        return -ESTALE;
    watch_t *w = calloc(1, sizeof(*w));
    if (!w || !(w->dir = strdup(dirpath)) || !(w->buf = malloc(BATCH_BYTES)) ||
        !(w->cursor = calloc(k1 - k0, sizeof(*w->cursor)))) {
        if (w) {
            free(w->dir);
            free(w->buf);
        }
        free(w);
        return -ENOMEM;
    }
    if (k1 > k0 + 1)
        lock_states(t, k0 + 1, k1);
    for (uint32_t k = k0; k < k1; k++)
        w->cursor[k - k0] = after != WATCH_NOW ? after : config_sm_rev(node_state(t->node, k));
    if (k1 > k0 + 1)
        unlock_states(t, k0 + 1, k1);
    w->t = t;
    w->k0 = k0;
    w->k1 = k1;
    w->nonblock = nonblock;
    *out = w;
    return 0;
}

/* config_read_events over the shards w watches, into buf[0..size). */
static int read_events(watch_t *w, uint64_t *cursor, char *buf, size_t size)
{
    int total = 0;
    for (uint32_t k = w->k0; k < w->k1; k++) {
        int n = config_read_events(node_state(w->t->node, k), w->dir, &cursor[k - w->k0],
                                   buf + total, size - (size_t)total);
        if (n < 0)
            return total ? total : n;
        total += n;
        if (size - (size_t)total < LINE_BYTES)
            break;
    }
    return total;
}

static void park(watch_t *w, fuse_req_t req, size_t size, uint64_t off)
{
    watch_table_t *t = w->t;
    w->waiting = req;
    w->want = size;
    w->woff = off;
    w->next = t->parked;
    w->prev = NULL;
    if (t->parked)
        t->parked->prev = w;
    t->parked = w;
}

/* Takes w's parked read off the list and returns it (mu held). */
static fuse_req_t unpark(watch_t *w)
{
    fuse_req_t req = w->waiting;
    if (w->prev)
        w->prev->next = w->next;
    else
        w->t->parked = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->waiting = NULL;
    return req;
}

/* What a read of size bytes at off returns: *p points into w's batch. Returns the byte
 * count (0 = nothing new yet), -EINVAL for an offset before the latest batch, or -ESTALE.
 * The state lock (read) and mu held. */
static int fill(watch_t *w, uint64_t off, size_t size, const char **p)
{
    if (off < w->base)
        return -EINVAL;
    if (off >= w->base + w->len) {
        /* Writes only when it returns > 0; advances the cursor past events outside the
         * directory even when it returns 0. */
        int n = read_events(w, w->cursor, w->buf, BATCH_BYTES);
        if (n <= 0)
            return n;
        w->base += w->len;
        w->len = (size_t)n;
        off = w->base;                 /* a seek past the end reads the new batch */
    }
    size_t n = (size_t)(w->base + w->len - off);
    if (n > size)
        n = size;
    *p = w->buf + (off - w->base);
    w->rend = off + n;
    return (int)n;
}

/* Whether a read that goes on where the latest one ended would not block: 1 when it has
 * bytes of the batch left or an event below the directory is waiting, 0 when it would
 * block, -ESTALE when it fails at once. Looks without taking: the batch stays as it is
 * (a reader may still seek back into it); the cursor only skips events outside the
 * directory, as fill does. The state lock (read) and mu held. */
static int poll_ready(watch_t *w)
{
    if (w->rend < w->base + w->len)
        return 1;
    char line[LINE_BYTES];
    for (uint32_t k = w->k0; k < w->k1; k++) {
        uint64_t c = w->cursor[k - w->k0];
        int n = config_read_events(node_state(w->t->node, k), w->dir, &c, line, sizeof(line));
        if (n != 0)
            return n < 0 ? n : 1;
        w->cursor[k - w->k0] = c;
    }
    return 0;
}

/* Takes w's kept poll handle and w off the polled list (mu held); the caller owns it. */
static struct fuse_pollhandle *unpoll(watch_t *w)
{
    struct fuse_pollhandle *ph = w->ph;
    if (!ph)
        return NULL;
    if (w->pprev)
        w->pprev->pnext = w->pnext;
    else
        w->t->polled = w->pnext;
    if (w->pnext)
        w->pnext->pprev = w->pprev;
    w->pnext = w->pprev = NULL;
    w->ph = NULL;
    return ph;
}

static void reply(fuse_req_t req, int n, const char *p)
{
    if (n < 0)
        fuse_reply_err(req, -n);
    else
        fuse_reply_buf(req, p, (size_t)n);
}

/* EFF_CONFIG_REV: answers every parked read that now has something to read. No state lock
 * is held on entry; the events are read under the read lock, the replies sent after it is
 * released (under mu). Allocates nothing. */
static void watch_deliver(void *ctx, effect_t *e)
{
    watch_table_t *t = ctx;
    if (e->kind != EFF_CONFIG_REV)
        return;
    watch_t *ready = NULL;
    lock_states(t, 0, all_shards(t));
    pthread_mutex_lock(&t->mu);
    for (watch_t *w = t->parked, *next; w; w = next) {
        next = w->next;
        w->ans = fill(w, w->woff, w->want, &w->ansp);
        if (w->ans == 0)
            continue;
        fuse_req_t req = unpark(w);
        w->waiting = req;              /* off the list; answered below */
        w->next = ready;
        ready = w;
    }
    /* Pollers that have something to read now: off the polled list onto woke (through
     * pnext, still holding their handles), notified below. */
    watch_t *woke = NULL;
    for (watch_t *w = t->polled, *next; w; w = next) {
        next = w->pnext;
        if (poll_ready(w) == 0)
            continue;
        w->ph = unpoll(w);
        w->pnext = woke;
        woke = w;
    }
    unlock_states(t, 0, all_shards(t));
    for (watch_t *w = ready, *next; w; w = next) {
        next = w->next;
        fuse_req_t req = w->waiting;
        w->waiting = NULL;
        w->next = NULL;
        reply(req, w->ans, w->ansp);
    }
    for (watch_t *w = woke, *next; w; w = next) {
        next = w->pnext;
        w->pnext = NULL;
        fuse_lowlevel_notify_poll(w->ph);
        fuse_pollhandle_destroy(w->ph);
        w->ph = NULL;
    }
    pthread_mutex_unlock(&t->mu);
}

/* Interrupt callback. It never dereferences data (the watch may already be closed when a
 * late interrupt arrives); it looks the request up among the parked reads of the node's
 * table instead. */
static void interrupted(fuse_req_t req, void *data)
{
    INTR_DEFER_IF_REGISTERING();
    (void)data;
    watch_table_t *t = ns_front_ctx(req, NS_CONFIG);
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    for (watch_t *w = t->parked; w; w = w->next) {
        if (w->waiting == req) {
            unpark(w);
            fuse_reply_err(req, EINTR);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void watch_read(fuse_req_t req, watch_t *w, size_t size, off_t off)
{
    /* Once the read is parked, another thread may answer it, the reader may exit and its
     * release may free w (watch_close): w must not be touched after mu is unlocked. */
    watch_table_t *t = w->t;
    if (intr_register(req, interrupted, NULL)) {
        fuse_reply_err(req, EINTR);    /* interrupted before it could be parked */
        return;
    }
    uint64_t woff = off < 0 ? 0 : (uint64_t)off;
    lock_states(t, w->k0, w->k1);
    pthread_mutex_lock(&t->mu);
    const char *p = NULL;
    int n = w->waiting ? -EBUSY : fill(w, woff, size, &p);   /* one read at a time */
    unlock_states(t, w->k0, w->k1);
    if (n == 0 && w->nonblock)
        n = -EAGAIN;
    else if (n == 0 && fuse_req_interrupted(req))
        n = -EINTR;                    /* its callback ran before the read was parked */
    if (n == 0)
        park(w, req, size, woff);
    else
        reply(req, n, p);
    pthread_mutex_unlock(&t->mu);
    testhook_pause("watch_read_registered");   /* w may be freed from here on */
}

void watch_poll(fuse_req_t req, watch_t *w, struct fuse_pollhandle *ph)
{
    watch_table_t *t = w->t;
    struct fuse_pollhandle *old = NULL;
    lock_states(t, w->k0, w->k1);
    pthread_mutex_lock(&t->mu);
    int r = poll_ready(w);
    if (r == 0 && ph) {
        old = unpoll(w);               /* same kernel file: the new handle wakes all */
        w->ph = ph;
        w->pprev = NULL;
        w->pnext = t->polled;
        if (t->polled)
            t->polled->pprev = w;
        t->polled = w;
        ph = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    unlock_states(t, w->k0, w->k1);
    fuse_pollhandle_destroy(old);
    fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, r < 0 ? POLLIN | POLLRDNORM | POLLERR : r ? POLLIN | POLLRDNORM : 0);
}

void watch_close(watch_t *w)
{
    if (!w)
        return;
    watch_table_t *t = w->t;
    pthread_mutex_lock(&t->mu);
    if (w->waiting)
        fuse_reply_err(unpark(w), EINTR);
    struct fuse_pollhandle *ph = unpoll(w);
    pthread_mutex_unlock(&t->mu);
    fuse_pollhandle_destroy(ph);
    free(w->dir);
    free(w->buf);
    free(w->cursor);
    free(w);
}

static void *watch_start(struct node *n)
{
    watch_table_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->node = n;
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

/* At node close no request, delivery or release reaches the table any more and the FUSE
 * session is gone. Watches of files left open at unmount stay with their open files; the
 * poll handles they kept are destroyed here, never notified. */
static void watch_stop(void *ctx)
{
    watch_table_t *t = ctx;
    pthread_mutex_lock(&t->mu);
    while (t->polled)
        fuse_pollhandle_destroy(unpoll(t->polled));
    pthread_mutex_unlock(&t->mu);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

const ns_front_t watch_front = {
    .start = watch_start,
    .stop = watch_stop,
    .deliver = watch_deliver,
};
