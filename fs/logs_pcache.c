/* fs/logs_pcache.c — the kernel page cache of logs/ files on one mount: which logs (and
 * which of their slot inodes) cached opens used, and the invalidations retention and removal
 * need (see logs_pcache.h).
 *
 * Per log: tracked and ok (slot masks, ok a subset of tracked), clean (the oldest retained
 * offset below which the pages of every ok slot are known invalidated), queued (the highest
 * such offset whose invalidation is written or waiting in the queue; clean <= queued) and
 * opens (cached opens not released; 0: the entry is idle, on the idle list). An open keeps
 * the pages only on an ok slot with the log's start not past clean, so a reader never
 * depends on the queue's thread to stop serving dropped offsets from a new descriptor; a
 * descriptor already open reads them (their true bytes) until the queued invalidation is
 * written. Nothing is confirmed that the kernel did not accept: a slot becomes ok after an
 * open of it that dropped its pages was answered, clean rises after every tracked slot's
 * invalidation was accepted, and a refused one makes its slot not ok and lets the next report
 * queue the invalidation again. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>
#include "fs/logs_pcache.h"

typedef struct pcent {
    uint64_t key;
    uint64_t clean, queued;
    uint64_t tracked, ok;            /* slot masks */
    uint32_t opens;
    int idle;                        /* on the idle list (opens 0) */
    struct pcent *iprev, *inext;
    UT_hash_handle hh;
} pcent_t;

typedef struct pcitem {
    uint64_t key;
    off_t len;                       /* [0, len); 0: every page (the log is gone) */
    uint64_t slots;                  /* the tracked slots when it was queued */
} pcitem_t;

struct lgpc {
    lgpc_notify_fn notify;
    void *arg;
    size_t idle_max;
    pthread_mutex_t mu;           /* guards everything below */
    pthread_cond_t cv;            /* the queue got an item, or stop */
    pcent_t *tab;
    pcent_t *idle_head, *idle_tail;  /* least recently used first */
    size_t nidle;
    pcitem_t *q;                  /* the queue, nq items of cap */
    size_t nq, cap;
    int stop;                     /* quiesced: the thread ended */
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

static pcent_t *find_locked(lgpc_t *pc, uint64_t key)
{
    pcent_t *e = NULL;
    HASH_FIND(hh, pc->tab, &key, sizeof(key), e);
    return e;
}

static void idle_del_locked(lgpc_t *pc, pcent_t *e)
{
    if (!e->idle)
        return;
    if (e->iprev)
        e->iprev->inext = e->inext;
    else
        pc->idle_head = e->inext;
    if (e->inext)
        e->inext->iprev = e->iprev;
    else
        pc->idle_tail = e->iprev;
    e->iprev = e->inext = NULL;
    e->idle = 0;
    pc->nidle--;
}

static void forget_locked(lgpc_t *pc, pcent_t *e)
{
    idle_del_locked(pc, e);
    HASH_DEL(pc->tab, e);
    free(e);
}

/* e has no open descriptor left: it goes to the idle list's end, and the least recently used
 * idle entries beyond idle_max are forgotten (e itself too when idle_max is 0). */
static void idle_add_locked(lgpc_t *pc, pcent_t *e)
{
    e->idle = 1;
    e->inext = NULL;
    e->iprev = pc->idle_tail;
    if (pc->idle_tail)
        pc->idle_tail->inext = e;
    else
        pc->idle_head = e;
    pc->idle_tail = e;
    pc->nidle++;
    while (pc->nidle > pc->idle_max)
        forget_locked(pc, pc->idle_head);
}

/* Writes the invalidation of [off, off + len) of each slot of key in slots; no lock held.
 * Returns the slots whose notification failed (other than -ENOENT). */
static uint64_t write_slots(lgpc_t *pc, uint64_t key, uint64_t slots, off_t off, off_t len)
{
    uint64_t failed = 0;
    for (unsigned s = 0; s < LGPC_SLOTS; s++) {
        if (!(slots >> s & 1))
            continue;
        int rc = pc->notify(pc->arg, key, s, off, len);
        pthread_mutex_lock(&pc->mu);
        pc->written++;
        int first = 0;
        if (rc < 0 && rc != -ENOENT) {
            failed |= 1ull << s;
            first = pc->failed++ == 0;
        }
        pthread_mutex_unlock(&pc->mu);
        if (first)
            fprintf(stderr, "quorumfs: logs/: the kernel refused to invalidate cached pages of "
                    "log inode %llu slot %u (%s); the next report of the log tries again\n",
                    (unsigned long long)key, s, strerror(-rc));
    }
    return failed;
}

/* After the invalidation of [0, len) (len 0: none of the offsets move) of key's tracked
 * slots, of which those in failed were refused: raises the clean start when none was, else
 * makes the refused slots not ok and lets the next report queue it again. Lock held. */
static void confirm_locked(lgpc_t *pc, uint64_t key, uint64_t len, uint64_t failed)
{
    pcent_t *e = find_locked(pc, key);
    if (!e)
        return;
    if (failed) {
        e->ok &= ~failed;
        e->queued = e->clean;
    } else if (e->clean < len) {
        e->clean = len;
    }
}

static void *pc_thread(void *arg)
{
    lgpc_t *pc = arg;
    pthread_mutex_lock(&pc->mu);
    for (;;) {
        while (pc->nq == 0 && !pc->stop)
            pthread_cond_wait(&pc->cv, &pc->mu);
        if (pc->stop)
            break;                         /* what is left is dropped (lgpc_quiesce) */
        pcitem_t it = pc->q[0];
        memmove(pc->q, pc->q + 1, (pc->nq - 1) * sizeof(*pc->q));
        pc->nq--;
        pcent_t *e = find_locked(pc, it.key);
        uint64_t slots = it.slots | (e && it.len > 0 ? e->tracked : 0);
        pthread_mutex_unlock(&pc->mu);
        uint64_t failed = write_slots(pc, it.key, slots, 0, it.len);
        pthread_mutex_lock(&pc->mu);
        if (it.len > 0)
            confirm_locked(pc, it.key, (uint64_t)it.len, failed);
    }
    pthread_mutex_unlock(&pc->mu);
    return NULL;
}

lgpc_t *lgpc_new(lgpc_notify_fn notify, void *arg, size_t idle_max)
{
    lgpc_t *pc = calloc(1, sizeof(*pc));
    if (!pc)
        return NULL;
    pc->notify = notify;
    pc->arg = arg;
    pc->idle_max = idle_max;
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

int lgpc_open(lgpc_t *pc, uint64_t key, unsigned slot, uint64_t start)
{
    if (slot >= LGPC_SLOTS)
        return -1;
    pthread_mutex_lock(&pc->mu);
    pcent_t *e = find_locked(pc, key);
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e) {
            pthread_mutex_unlock(&pc->mu);
            return -1;                     /* not tracked: the open must not cache */
        }
        e->key = key;
        e->clean = e->queued = start;
        HASH_ADD(hh, pc->tab, key, sizeof(e->key), e);
    }
    idle_del_locked(pc, e);
    e->opens++;
    e->tracked |= 1ull << slot;
    int keep = (e->ok >> slot & 1) && start <= e->clean;
    pthread_mutex_unlock(&pc->mu);
    return keep;
}

void lgpc_opened(lgpc_t *pc, uint64_t key, unsigned slot, int keep)
{
    if (keep || slot >= LGPC_SLOTS)
        return;
    pthread_mutex_lock(&pc->mu);
    pcent_t *e = find_locked(pc, key);
    if (e)
        e->ok |= 1ull << slot;             /* the kernel dropped every page at the open */
    pthread_mutex_unlock(&pc->mu);
}

void lgpc_close(lgpc_t *pc, uint64_t key)
{
    pthread_mutex_lock(&pc->mu);
    pcent_t *e = find_locked(pc, key);
    if (e && e->opens > 0 && --e->opens == 0)
        idle_add_locked(pc, e);
    pthread_mutex_unlock(&pc->mu);
}

/* Appends an item to the queue and wakes the thread; after quiesce, drops it. Lock held. */
static void enqueue_locked(lgpc_t *pc, uint64_t key, off_t len, uint64_t slots)
{
    if (pc->stop)
        return;
    if (pc->nq == pc->cap) {
        size_t cap = pc->cap ? pc->cap * 2 : 16;
        pcitem_t *q = realloc(pc->q, cap * sizeof(*q));
        if (!q) {
            fprintf(stderr, "quorumfs: logs/: out of memory queueing a page cache "
                    "invalidation of log inode %llu\n", (unsigned long long)key);
            return;
        }
        pc->q = q;
        pc->cap = cap;
    }
    pc->q[pc->nq++] = (pcitem_t){ key, len, slots };
    pthread_cond_signal(&pc->cv);
}

void lgpc_report(lgpc_t *pc, uint64_t key, int exists, uint64_t start, int now)
{
    pthread_mutex_lock(&pc->mu);
    pcent_t *e = find_locked(pc, key);
    off_t len = -1;
    uint64_t slots = 0;
    if (e && !exists) {
        slots = e->tracked;
        forget_locked(pc, e);
        len = 0;                           /* every page */
    } else if (e && (now ? start > e->clean : start > e->queued)) {
        /* a request handler writes what is not confirmed yet, even when the delivery (which
         * runs first, on the applying thread) queued it already: its caller must not return
         * before the pages are gone */
        if (e->queued < start)
            e->queued = start;
        slots = e->tracked;
        len = (off_t)start;
    }
    if (len >= 0 && !now)
        enqueue_locked(pc, key, len, slots);
    pthread_mutex_unlock(&pc->mu);
    if (len >= 0 && now) {
        uint64_t failed = write_slots(pc, key, slots, 0, len);
        if (len > 0) {
            pthread_mutex_lock(&pc->mu);
            confirm_locked(pc, key, (uint64_t)len, failed);
            pthread_mutex_unlock(&pc->mu);
        }
    }
}

uint64_t lgpc_tracked(lgpc_t *pc, uint64_t key)
{
    pthread_mutex_lock(&pc->mu);
    pcent_t *e = find_locked(pc, key);
    uint64_t m = e ? e->tracked : 0;
    pthread_mutex_unlock(&pc->mu);
    return m;
}

void lgpc_inval_now(lgpc_t *pc, uint64_t key, uint64_t slots, off_t off, off_t len)
{
    uint64_t failed = write_slots(pc, key, slots, off, len);
    if (failed) {
        pthread_mutex_lock(&pc->mu);
        confirm_locked(pc, key, 0, failed);
        pthread_mutex_unlock(&pc->mu);
    }
}

size_t lgpc_list(lgpc_t *pc, int (*match)(void *arg, uint64_t key), void *arg, uint64_t **out)
{
    size_t n = 0;
    pthread_mutex_lock(&pc->mu);
    size_t all = HASH_COUNT(pc->tab);
    *out = all ? malloc(all * sizeof(**out)) : NULL;
    for (pcent_t *e = pc->tab; e && *out; e = e->hh.next)
        if (match(arg, e->key))
            (*out)[n++] = e->key;
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

size_t lgpc_size(lgpc_t *pc, size_t *idle)
{
    pthread_mutex_lock(&pc->mu);
    size_t n = HASH_COUNT(pc->tab);
    if (idle)
        *idle = pc->nidle;
    pthread_mutex_unlock(&pc->mu);
    return n;
}
