/* fs/evstream.c — blocking event streams; see evstream.h. Each stream keeps the latest
 * batch of lines (buf[0..len) at stream offset base) and its source keeps the cursor.
 *
 * The table's mu guards its lists of streams (all of them, and those waiting: with a parked
 * read or a kept poll handle, the only ones a delivery visits) and, for every stream, the
 * batch, the source's cursor, the parked read and the kept poll handle.
 *
 * A parked read (s->waiting) is owned by the table: whoever takes it under mu (delivery,
 * interrupt, close) answers it; nobody touches a stream's request after unlocking mu unless
 * they took it. The interrupt callback is registered before the read is parked, and the
 * parking thread checks fuse_req_interrupted under mu, so an interrupt is never lost and
 * never answers a request twice. Its data is the table, which lives until the front stops
 * (after the FUSE session: no interrupt comes later).
 *
 * A kept poll handle is judged and kept under the state locks (read), so the delivery of
 * any later apply finds it. Whoever takes s->ph under mu (a delivery that gives the stream
 * something to read, close, the table's end) notifies or destroys it, and nobody else. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include "fs/evstream.h"
#include "fs/intr.h"
#include "fs/node.h"
#include "fs/testhook.h"

#define BATCH_BYTES 65536

struct evs_table {
    struct node *node;
    pthread_mutex_t mu;
    evs_t *streams;
    evs_t *waiting;              /* the streams with a parked read or a kept poll handle */
};

struct evs {
    evs_table_t *t;              /* NULL once detached by evs_table_free */
    uint32_t k0, k1;             /* the shards read */
    const evs_ops_t *ops;
    void *src;
    uint64_t base;               /* stream offset of buf[0] */
    char *buf;                   /* latest batch of lines (BATCH_BYTES) */
    size_t len;
    uint64_t rend;               /* stream offset where the latest read's bytes ended */
    fuse_req_t waiting;          /* parked read ... */
    size_t want;                 /* ... of want bytes ... */
    uint64_t woff;               /* ... at woff */
    struct fuse_pollhandle *ph;  /* kept by poll while there is nothing to read */
    evs_t *next, *prev;          /* the table's streams */
    evs_t *wnext, *wprev;        /* the table's waiting streams ... */
    bool on_waiting;             /* ... this one among them */
    evs_t *rnext;                /* a delivery's answers ... */
    int ans;                     /* ... with the answer (bytes or -errno) ... */
    const char *ansp;            /* ... and where its bytes are (in buf) */
    evs_t *pnext;                /* a delivery's wake-ups */
};

static void lock_states(const evs_table_t *t, uint32_t k0, uint32_t k1)
{
    for (uint32_t k = k0; k < k1; k++)
        pthread_rwlock_rdlock(&node_state(t->node, k)->lock);
}

static void unlock_states(const evs_table_t *t, uint32_t k0, uint32_t k1)
{
    for (uint32_t k = k1; k-- > k0;)
        pthread_rwlock_unlock(&node_state(t->node, k)->lock);
}

static void unlink_stream(evs_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        s->t->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

/* Puts s on the table's waiting list or takes it off, as it has a parked read or a kept poll
 * handle or not (mu held). Call after every change of either. */
static void update_waiting(evs_t *s)
{
    evs_table_t *t = s->t;
    bool want = s->waiting || s->ph;
    if (want == s->on_waiting)
        return;
    if (want) {
        s->wprev = NULL;
        s->wnext = t->waiting;
        if (t->waiting)
            t->waiting->wprev = s;
        t->waiting = s;
    } else {
        if (s->wprev)
            s->wprev->wnext = s->wnext;
        else
            t->waiting = s->wnext;
        if (s->wnext)
            s->wnext->wprev = s->wprev;
        s->wnext = s->wprev = NULL;
    }
    s->on_waiting = want;
}

static void free_stream(evs_t *s)
{
    s->ops->free(s->src);
    free(s->buf);
    free(s);
}

evs_table_t *evs_table_new(struct node *n)
{
    evs_table_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->node = n;
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

struct node *evs_table_node(const evs_table_t *t) { return t->node; }

void evs_table_free(evs_table_t *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    while (t->streams) {
        evs_t *s = t->streams;
        unlink_stream(s);
        fuse_pollhandle_destroy(s->ph);
        s->ph = NULL;
        s->waiting = NULL;       /* the session is gone: nothing to answer */
        s->on_waiting = false;
        s->wnext = s->wprev = NULL;
        s->t = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int evs_open(evs_table_t *t, uint32_t k0, uint32_t k1, const evs_ops_t *ops, void *src,
             evs_t **out)
{
    evs_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->buf = malloc(BATCH_BYTES))) {
        free(s);
        ops->free(src);
        return -ENOMEM;
    }
    s->t = t;
    s->k0 = k0;
    s->k1 = k1;
    s->ops = ops;
    s->src = src;
    pthread_mutex_lock(&t->mu);
    s->next = t->streams;
    if (t->streams)
        t->streams->prev = s;
    t->streams = s;
    pthread_mutex_unlock(&t->mu);
    *out = s;
    return 0;
}

void *evs_src(const evs_t *s) { return s->src; }

/* What a read of size bytes at off returns: *p points into the batch. Returns the byte
 * count, 0 (nothing new yet: block), -EINVAL (an offset before the batch) or the source's
 * -errno (-ENOENT: EOF). The state locks (read) and mu held. */
static int fill(evs_t *s, uint64_t off, size_t size, const char **p)
{
    if (off < s->base)
        return -EINVAL;
    if (off >= s->base + s->len) {
        int n = s->ops->read(s->src, s->buf, BATCH_BYTES);
        if (n <= 0)
            return n;
        s->base += s->len;
        s->len = (size_t)n;
        off = s->base;           /* a seek past the end reads the new batch */
    }
    size_t n = (size_t)(s->base + s->len - off);
    if (n > size)
        n = size;
    *p = s->buf + (off - s->base);
    s->rend = off + n;
    return (int)n;
}

/* 1 when a read going on where the latest one ended would not block, 0 when it would,
 * -errno when it fails at once. The state locks (read) and mu held. */
static int ready(evs_t *s)
{
    return s->rend < s->base + s->len ? 1 : s->ops->pending(s->src);
}

static void reply(fuse_req_t req, int n, const char *p)
{
    if (n == -ENOENT)
        fuse_reply_buf(req, NULL, 0);
    else if (n < 0)
        fuse_reply_err(req, -n);
    else
        fuse_reply_buf(req, p, (size_t)n);
}

static void interrupted(fuse_req_t req, void *data)
{
    INTR_DEFER_IF_REGISTERING();
    evs_table_t *t = data;
    pthread_mutex_lock(&t->mu);
    for (evs_t *s = t->waiting; s; s = s->wnext)
        if (s->waiting == req) {
            s->waiting = NULL;
            update_waiting(s);
            fuse_reply_err(req, EINTR);
            break;
        }
    pthread_mutex_unlock(&t->mu);
}

void evs_read(fuse_req_t req, evs_t *s, size_t size, off_t off, int nonblock)
{
    /* Once the read is parked another thread may answer it, the reader may exit and its
     * release may free s: s must not be touched after mu is unlocked. */
    evs_table_t *t = s->t;
    if (!t) {
        fuse_reply_err(req, EIO);      /* detached: its namespace has stopped */
        return;
    }
    if (intr_register(req, interrupted, t)) {
        fuse_reply_err(req, EINTR);    /* interrupted before it could be parked */
        return;
    }
    uint64_t woff = off < 0 ? 0 : (uint64_t)off;
    uint32_t k0 = s->k0, k1 = s->k1;
    lock_states(t, k0, k1);
    pthread_mutex_lock(&t->mu);
    const char *p = NULL;
    int n = s->waiting ? -EBUSY : fill(s, woff, size, &p);   /* one read at a time */
    unlock_states(t, k0, k1);
    if (n == 0 && nonblock)
        n = -EAGAIN;
    else if (n == 0 && fuse_req_interrupted(req))
        n = -EINTR;                    /* its callback ran before the read was parked */
    if (n == 0) {
        s->waiting = req;
        s->want = size;
        s->woff = woff;
        update_waiting(s);
    } else {
        reply(req, n, p);
    }
    pthread_mutex_unlock(&t->mu);
    testhook_pause("watch_read_registered");   /* s may be freed from here on */
}

void evs_poll(fuse_req_t req, evs_t *s, struct fuse_pollhandle *ph)
{
    evs_table_t *t = s->t;
    if (!t) {
        fuse_pollhandle_destroy(ph);
        fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLERR);
        return;
    }
    struct fuse_pollhandle *old = NULL;
    lock_states(t, s->k0, s->k1);
    pthread_mutex_lock(&t->mu);
    int r = ready(s);
    if (r == 0 && ph) {
        old = s->ph;                   /* same kernel file: the new handle wakes all */
        s->ph = ph;
        ph = NULL;
        update_waiting(s);
    }
    pthread_mutex_unlock(&t->mu);
    unlock_states(t, s->k0, s->k1);
    fuse_pollhandle_destroy(old);
    fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, r < 0 ? POLLIN | POLLRDNORM | POLLERR : r ? POLLIN | POLLRDNORM : 0);
}

void evs_close(evs_t *s)
{
    if (!s)
        return;
    evs_table_t *t = s->t;
    if (t) {
        pthread_mutex_lock(&t->mu);
        if (s->waiting)
            fuse_reply_err(s->waiting, EINTR);
        s->waiting = NULL;
        struct fuse_pollhandle *ph = s->ph;
        s->ph = NULL;
        update_waiting(s);
        unlink_stream(s);
        pthread_mutex_unlock(&t->mu);
        fuse_pollhandle_destroy(ph);
    }
    free_stream(s);
}

void evs_deliver(evs_table_t *t, uint32_t k0, uint32_t k1)
{
    evs_t *answers = NULL, *wakes = NULL;
    lock_states(t, k0, k1);
    pthread_mutex_lock(&t->mu);
    for (evs_t *s = t->waiting; s; s = s->wnext) {
        if (s->k0 < k0 || s->k1 > k1)
            continue;
        if (s->waiting) {
            s->ans = fill(s, s->woff, s->want, &s->ansp);
            if (s->ans != 0) {
                s->rnext = answers;
                answers = s;
            }
        }
        if (s->ph && ready(s) != 0) {
            s->pnext = wakes;
            wakes = s;
        }
    }
    unlock_states(t, k0, k1);
    for (evs_t *s = answers; s; s = s->rnext) {
        fuse_req_t req = s->waiting;
        s->waiting = NULL;
        update_waiting(s);
        reply(req, s->ans, s->ansp);
    }
    for (evs_t *s = wakes; s; s = s->pnext) {
        fuse_lowlevel_notify_poll(s->ph);
        fuse_pollhandle_destroy(s->ph);
        s->ph = NULL;
        update_waiting(s);
    }
    pthread_mutex_unlock(&t->mu);
}
