/* fs/logs_pcache.c — the kernel page cache of logs/ files on one mount: which inodes a
 * cached open used, and the invalidations retention and removal need (see logs_pcache.h).
 *
 * Per inode: clean, the oldest retained offset below which its pages are known invalidated
 * (the notification was written, or an open dropped every page), and queued, the highest
 * such offset whose invalidation is written or waiting in the queue. Invariant:
 * clean <= queued. An open that finds the log's start above clean drops the inode's pages
 * itself (keep_cache off), so a reader never depends on the queue's thread to stop serving
 * dropped offsets from a new descriptor; a descriptor already open reads them (their true
 * bytes) until the queued invalidation is written. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>
#include "fs/logs_pcache.h"

typedef struct pcent {
    uint64_t ino;
    uint64_t clean, queued;
    UT_hash_handle hh;
} pcent_t;

typedef struct pcitem {
    uint64_t ino;
    off_t off, len;
} pcitem_t;

struct lgpc {
    lgpc_notify_fn notify;
    void *arg;
    pthread_mutex_t mu;           /* guards everything below */
    pthread_cond_t cv;            /* the queue got an item, or stop */
    pcent_t *tab;
    pcitem_t *q;                  /* the queue, nq items of cap */
    size_t nq, cap;
    int stop;                     /* quiesced: the thread drained the queue and ended */
    int started;
    pthread_t thr;
    uint64_t written, failed;
};

static long page_size(void)
{
    static long ps;
    long v = __atomic_load_n(&ps, __ATOMIC_RELAXED);
    if (v <= 0) {
        v = sysconf(_SC_PAGESIZE);
        if (v <= 0)
            v = 4096;
        __atomic_store_n(&ps, v, __ATOMIC_RELAXED);
    }
    return v;
}

int lgpc_cacheable(uint64_t start)
{
    return start % (uint64_t)page_size() == 0;
}

/* Writes one invalidation; no lock held. */
static void write_one(lgpc_t *pc, uint64_t ino, off_t off, off_t len)
{
    int rc = pc->notify(pc->arg, ino, off, len);
    pthread_mutex_lock(&pc->mu);
    pc->written++;
    int first = 0;
    if (rc < 0 && rc != -ENOENT)
        first = pc->failed++ == 0;
    pthread_mutex_unlock(&pc->mu);
    if (first)
        fprintf(stderr, "quorumfs: logs/: the kernel refused to invalidate cached pages of "
                "inode %llu (%s); reads may serve dropped offsets from the page cache\n",
                (unsigned long long)ino, strerror(-rc));
}

/* After [0, start) of ino was invalidated: raises its clean start. Lock held. */
static void confirm_locked(lgpc_t *pc, uint64_t ino, uint64_t start)
{
    pcent_t *e = NULL;
    HASH_FIND(hh, pc->tab, &ino, sizeof(ino), e);
    if (e && e->clean < start)
        e->clean = start;
}

static void *pc_thread(void *arg)
{
    lgpc_t *pc = arg;
    pthread_mutex_lock(&pc->mu);
    for (;;) {
        while (pc->nq == 0 && !pc->stop)
            pthread_cond_wait(&pc->cv, &pc->mu);
        if (pc->nq == 0)
            break;                         /* stop, and nothing left */
        pcitem_t *items = pc->q;
        size_t n = pc->nq;
        pc->q = NULL;
        pc->nq = pc->cap = 0;
        pthread_mutex_unlock(&pc->mu);
        for (size_t i = 0; i < n; i++)
            write_one(pc, items[i].ino, items[i].off, items[i].len);
        pthread_mutex_lock(&pc->mu);
        for (size_t i = 0; i < n; i++)
            if (items[i].off == 0 && items[i].len > 0)
                confirm_locked(pc, items[i].ino, (uint64_t)items[i].len);
        free(items);
    }
    pthread_mutex_unlock(&pc->mu);
    return NULL;
}

lgpc_t *lgpc_new(lgpc_notify_fn notify, void *arg)
{
    lgpc_t *pc = calloc(1, sizeof(*pc));
    if (!pc)
        return NULL;
    pc->notify = notify;
    pc->arg = arg;
    pthread_mutex_init(&pc->mu, NULL);
    pthread_cond_init(&pc->cv, NULL);
    if (pthread_create(&pc->thr, NULL, pc_thread, pc) != 0) {
        pthread_cond_destroy(&pc->cv);
        pthread_mutex_destroy(&pc->mu);
        free(pc);
        return NULL;
    }
    pc->started = 1;
    return pc;
}

void lgpc_quiesce(lgpc_t *pc)
{
    if (!pc)
        return;
    pthread_mutex_lock(&pc->mu);
    int join = pc->started;
    pc->started = 0;
    pc->stop = 1;
    /* the mount is ending (its requests are no longer read): what is queued is dropped, not
     * written, since an invalidation could wait forever for a page locked by a read the
     * kernel still holds; the pages go with the mount */
    pc->nq = 0;
    pthread_cond_signal(&pc->cv);
    pthread_mutex_unlock(&pc->mu);
    if (join)
        pthread_join(pc->thr, NULL);
}

void lgpc_free(lgpc_t *pc)
{
    if (!pc)
        return;
    lgpc_quiesce(pc);
    pcent_t *e, *tmp;
    HASH_ITER(hh, pc->tab, e, tmp) {
        HASH_DEL(pc->tab, e);
        free(e);
    }
    free(pc->q);
    pthread_cond_destroy(&pc->cv);
    pthread_mutex_destroy(&pc->mu);
    free(pc);
}

int lgpc_open(lgpc_t *pc, uint64_t ino, uint64_t start)
{
    pthread_mutex_lock(&pc->mu);
    pcent_t *e = NULL;
    HASH_FIND(hh, pc->tab, &ino, sizeof(ino), e);
    int keep = 0;
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e) {
            pthread_mutex_unlock(&pc->mu);
            return -1;                     /* not tracked: the open must not cache */
        }
        e->ino = ino;
        e->clean = e->queued = start;
        HASH_ADD(hh, pc->tab, ino, sizeof(e->ino), e);
    } else if (start > e->clean) {
        e->clean = start;                  /* the open's own invalidation covers it */
        if (e->queued < start)
            e->queued = start;
    } else {
        keep = 1;
    }
    pthread_mutex_unlock(&pc->mu);
    return keep;
}

/* Appends an item to the queue and wakes the thread; after quiesce, drops it. Lock held. */
static void enqueue_locked(lgpc_t *pc, uint64_t ino, off_t off, off_t len)
{
    if (pc->stop)
        return;
    if (pc->nq == pc->cap) {
        size_t cap = pc->cap ? pc->cap * 2 : 16;
        pcitem_t *q = realloc(pc->q, cap * sizeof(*q));
        if (!q) {
            fprintf(stderr, "quorumfs: logs/: out of memory queueing a page cache "
                    "invalidation of inode %llu\n", (unsigned long long)ino);
            return;
        }
        pc->q = q;
        pc->cap = cap;
    }
    pc->q[pc->nq++] = (pcitem_t){ ino, off, len };
    pthread_cond_signal(&pc->cv);
}

void lgpc_report(lgpc_t *pc, uint64_t ino, int exists, uint64_t start, int now)
{
    pthread_mutex_lock(&pc->mu);
    pcent_t *e = NULL;
    HASH_FIND(hh, pc->tab, &ino, sizeof(ino), e);
    off_t len = -1;
    if (e && !exists) {
        HASH_DEL(pc->tab, e);
        free(e);
        len = 0;                           /* every page */
    } else if (e && (now ? start > e->clean : start > e->queued)) {
        /* a request handler writes what is not confirmed yet, even when the delivery (which
         * runs first, on the applying thread) queued it already: its caller must not return
         * before the pages are gone */
        if (e->queued < start)
            e->queued = start;
        len = (off_t)start;
    }
    if (len >= 0 && !now)
        enqueue_locked(pc, ino, 0, len);
    pthread_mutex_unlock(&pc->mu);
    if (len >= 0 && now) {
        write_one(pc, ino, 0, len);
        if (len > 0) {
            pthread_mutex_lock(&pc->mu);
            confirm_locked(pc, ino, (uint64_t)len);
            pthread_mutex_unlock(&pc->mu);
        }
    }
}

int lgpc_known(lgpc_t *pc, uint64_t ino)
{
    pthread_mutex_lock(&pc->mu);
    pcent_t *e = NULL;
    HASH_FIND(hh, pc->tab, &ino, sizeof(ino), e);
    pthread_mutex_unlock(&pc->mu);
    return e != NULL;
}

void lgpc_inval_now(lgpc_t *pc, uint64_t ino, off_t off, off_t len)
{
    write_one(pc, ino, off, len);
}

size_t lgpc_list(lgpc_t *pc, int (*match)(void *arg, uint64_t ino), void *arg, uint64_t **out)
{
    size_t n = 0;
    pthread_mutex_lock(&pc->mu);
    size_t all = HASH_COUNT(pc->tab);
    *out = all ? malloc(all * sizeof(**out)) : NULL;
    for (pcent_t *e = pc->tab; e && *out; e = e->hh.next)
        if (match(arg, e->ino))
            (*out)[n++] = e->ino;
    pthread_mutex_unlock(&pc->mu);
    return n;
}

void lgpc_counts(lgpc_t *pc, uint64_t *written, uint64_t *failed)
{
    pthread_mutex_lock(&pc->mu);
    *written = pc->written;
    *failed = pc->failed;
    pthread_mutex_unlock(&pc->mu);
}

size_t lgpc_queued(lgpc_t *pc)
{
    pthread_mutex_lock(&pc->mu);
    size_t n = pc->nq;
    pthread_mutex_unlock(&pc->mu);
    return n;
}
