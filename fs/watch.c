/* fs/watch.c — config watches (`.events`); see watch.h. Each watch keeps the latest batch
 * of event lines (buf[0..len) at stream offset base), so a reader may seek back within it
 * (head(1) and bash's `read` do), and a cursor: the last revision it has looked at. Parked
 * reads hang on one list, guarded by wait_mu, and are answered by watch_on_apply. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "fs/config.h"
#include "fs/intr.h"
#include "fs/testhook.h"
#include "fs/watch.h"

#define BATCH_BYTES 65536

struct watch {
    state_t *st;
    char *dir;                   /* namespace-relative directory watched */
    uint64_t cursor;             /* last revision looked at */
    uint64_t base;               /* stream offset of buf[0] */
    char *buf;                   /* latest batch of lines */
    size_t len;
    int nonblock;
    fuse_req_t waiting;          /* parked read (under wait_mu) */
    size_t want;
    uint64_t woff;
    struct watch *next, *prev;   /* parked list */
};

static pthread_mutex_t wait_mu = PTHREAD_MUTEX_INITIALIZER;
static watch_t *parked;

int watch_open(state_t *st, const char *dirpath, uint64_t after, int nonblock, watch_t **out)
{
    if (st->nevents > CONFIG_EVENTS_KEPT && after + 1 < state_config_oldest_rev(st))
        return -ESTALE;
    watch_t *w = calloc(1, sizeof(*w));
    if (!w || !(w->dir = strdup(dirpath))) {
        free(w);
        return -ENOMEM;
    }
    w->st = st;
    w->cursor = after;
    w->nonblock = nonblock;
    *out = w;
    return 0;
}

static void unpark(watch_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        parked = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->waiting = NULL;
}

/* Serves a read at off into out. Returns the bytes copied (0 = nothing new yet), -EINVAL
 * for an offset before the latest batch, or -ESTALE. State lock held (read or write). */
static int fill(watch_t *w, uint64_t off, char *out, size_t size)
{
    if (off < w->base)
        return -EINVAL;
    if (off >= w->base + w->len) {
        if (!w->buf && !(w->buf = malloc(BATCH_BYTES)))
            return -ENOMEM;
        /* Writes only when it returns > 0; advances the cursor past events outside the
         * directory even when it returns 0. */
        int n = config_read_events(w->st, w->dir, &w->cursor, w->buf, BATCH_BYTES);
        if (n <= 0)
            return n;
        w->base += w->len;
        w->len = (size_t)n;
        off = w->base;                 /* a seek past the end reads the new batch */
    }
    size_t n = (size_t)(w->base + w->len - off);
    if (n > size)
        n = size;
    memcpy(out, w->buf + (off - w->base), n);
    return (int)n;
}

/* Tries to answer w's parked read; wait_mu and the state lock held. Returns nonzero when
 * the request was answered (and unparked). */
static int answer(watch_t *w)
{
    char *buf = malloc(w->want ? w->want : 1);
    int n = buf ? fill(w, w->woff, buf, w->want) : -ENOMEM;
    if (n == 0) {
        free(buf);
        return 0;
    }
    fuse_req_t req = w->waiting;
    unpark(w);
    if (n < 0)
        fuse_reply_err(req, -n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
    return 1;
}

void watch_on_apply(uint8_t ns)
{
    if (ns != NS_CONFIG)
        return;
    pthread_mutex_lock(&wait_mu);
    for (watch_t *w = parked, *next; w; w = next) {
        next = w->next;
        answer(w);
    }
    pthread_mutex_unlock(&wait_mu);
}

/* Interrupt callback. It never dereferences data (the watch may already be closed when a
 * late interrupt arrives); it looks the request up among the parked reads instead. */
static void interrupted(fuse_req_t req, void *data)
{
    INTR_DEFER_IF_REGISTERING();
    (void)data;
    pthread_mutex_lock(&wait_mu);
    for (watch_t *w = parked; w; w = w->next) {
        if (w->waiting == req) {
            unpark(w);
            fuse_reply_err(req, EINTR);
            break;
        }
    }
    pthread_mutex_unlock(&wait_mu);
}

void watch_read(fuse_req_t req, watch_t *w, size_t size, off_t off)
{
    /* Once the read is parked and its interrupt callback registered, another thread may
     * answer it, the reader may exit and its release may free w (watch_close): w must not
     * be touched after intr_register. Hence the state pointer is read here, once. */
    state_t *st = w->st;
    pthread_rwlock_rdlock(&st->lock);
    pthread_mutex_lock(&wait_mu);
    if (w->waiting) {
        pthread_mutex_unlock(&wait_mu);
        pthread_rwlock_unlock(&st->lock);
        fuse_reply_err(req, EBUSY);   /* one read at a time per open file */
        return;
    }
    w->waiting = req;
    w->want = size;
    w->woff = off < 0 ? 0 : (uint64_t)off;
    w->next = parked;
    w->prev = NULL;
    if (parked)
        parked->prev = w;
    parked = w;
    int answered = answer(w);
    if (!answered && w->nonblock) {
        unpark(w);
        fuse_reply_err(req, EAGAIN);
        answered = 1;
    }
    pthread_mutex_unlock(&wait_mu);
    /* Registered while the state lock is held, so apply cannot answer (and free) req
     * first; if req was already interrupted this calls interrupted() right away. */
    if (!answered && intr_register(req, interrupted, w))
        interrupted(req, w);
    testhook_pause("watch_read_registered");   /* w may be freed from here on */
    pthread_rwlock_unlock(&st->lock);
}

void watch_close(watch_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&wait_mu);
    if (w->waiting) {
        fuse_req_t r = w->waiting;
        unpark(w);
        fuse_reply_err(r, EINTR);
    }
    pthread_mutex_unlock(&wait_mu);
    free(w->dir);
    free(w->buf);
    free(w);
}
