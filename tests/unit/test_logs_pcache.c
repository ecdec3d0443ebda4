/* tests/unit/test_logs_pcache.c — fs/logs_pcache.c, the table of logs/ read through the page
 * cache, with a recording notify in place of the kernel: which opens may keep the cache, the
 * invalidations retention and removal cause (written at once from a handler, queued from the
 * delivery hook and written by the module's thread) to every slot inode cached opens used, an
 * open racing a queued invalidation dropping the pages itself, an open whose reply failed
 * confirming nothing, a refused invalidation confirming nothing (the next report writes it
 * again), idle logs bounded, quiesce dropping what is queued (behind a write in progress) and
 * later reports, a handler's report writing what the delivery queued, the shard filter of
 * lgpc_list and the failure count. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs/logs_pcache.h"
#include "tests/unit/check.h"

typedef struct call {
    uint64_t key;
    unsigned slot;
    off_t off, len;
} call_t;

/* The recorder: every notification, and a gate that holds the notifying thread. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    call_t calls[64];
    int n;
    int closed;            /* the gate: notify waits while it is closed */
    int held;              /* notifications waiting at the gate now */
    int rc;                /* what notify returns */
} rec = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static int rec_notify(void *arg, uint64_t key, unsigned slot, off_t off, off_t len)
{
    (void)arg;
    pthread_mutex_lock(&rec.mu);
    rec.held++;
    pthread_cond_broadcast(&rec.cv);
    while (rec.closed)
        pthread_cond_wait(&rec.cv, &rec.mu);
    rec.held--;
    if (rec.n < 64)
        rec.calls[rec.n++] = (call_t){ key, slot, off, len };
    int rc = rec.rc;
    pthread_cond_broadcast(&rec.cv);
    pthread_mutex_unlock(&rec.mu);
    return rc;
}

static void rec_reset(void)
{
    pthread_mutex_lock(&rec.mu);
    rec.n = 0;
    rec.rc = 0;
    pthread_mutex_unlock(&rec.mu);
}

static void gate(int closed)
{
    pthread_mutex_lock(&rec.mu);
    rec.closed = closed;
    pthread_cond_broadcast(&rec.cv);
    pthread_mutex_unlock(&rec.mu);
}

/* Waits (at most 10 s) until *count (a field of rec) reaches n; returns its value then. */
static int wait_count(const int *count, int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&rec.mu);
    while (*count < n && pthread_cond_timedwait(&rec.cv, &rec.mu, &until) == 0)
        ;
    int got = *count;
    pthread_mutex_unlock(&rec.mu);
    return got;
}

/* ... until n notifications were recorded, or are held at the gate. */
static int wait_calls(int n) { return wait_count(&rec.n, n); }
static int wait_held(int n) { return wait_count(&rec.held, n); }

static int ncalls(void)
{
    pthread_mutex_lock(&rec.mu);
    int n = rec.n;
    pthread_mutex_unlock(&rec.mu);
    return n;
}

/* A cached open of key through slot at start whose reply reached the kernel; its keep. */
static int open_ok(lgpc_t *pc, uint64_t key, unsigned slot, uint64_t start)
{
    int keep = lgpc_open(pc, key, slot, start);
    if (keep >= 0)
        lgpc_opened(pc, key, slot, keep);
    return keep;
}

/* Opens (answered) key through slot at start until one may keep the pages, closing each;
 * bounded (2 s): the confirmation follows the thread's write. Returns the last keep. */
static int wait_keep(lgpc_t *pc, uint64_t key, unsigned slot, uint64_t start)
{
    int keep = 0;
    for (int i = 0; i < 2000 && keep != 1; i++) {
        keep = open_ok(pc, key, slot, start);
        lgpc_close(pc, key);
        if (keep != 1)
            usleep(1000);
    }
    return keep;
}

TEST(test_cacheable)
{
    gate(0);
    long ps = sysconf(_SC_PAGESIZE);
    CHECK(lgpc_cacheable(0));
    CHECK(lgpc_cacheable((uint64_t)ps * 5));
    CHECK(!lgpc_cacheable(20000 % ps ? 20000 : 20001));
    CHECK(!lgpc_cacheable((uint64_t)ps + 1));
}

TEST(test_open_and_report_now)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL, 16);
    CHECK(pc != NULL);
    CHECK_EQ(lgpc_tracked(pc, 7), 0);
    lgpc_report(pc, 7, 1, 8192, 1);            /* never opened cached: nothing to drop */
    lgpc_report(pc, 7, 0, 0, 1);
    CHECK_EQ(ncalls(), 0);
    CHECK_EQ(lgpc_open(pc, 7, LGPC_SLOTS, 0), -1);   /* no such slot: not tracked */
    CHECK_EQ(lgpc_tracked(pc, 7), 0);
    CHECK_EQ(open_ok(pc, 7, 0, 0), 0);         /* the first cached open drops the pages */
    CHECK_EQ(lgpc_tracked(pc, 7), 1);
    CHECK_EQ(open_ok(pc, 7, 0, 0), 1);         /* then they are kept */
    lgpc_report(pc, 7, 1, 0, 1);               /* start unchanged: nothing */
    CHECK_EQ(ncalls(), 0);
    lgpc_report(pc, 7, 1, 8192, 1);            /* retention moved the start */
    CHECK_EQ(ncalls(), 1);
    CHECK_EQ(rec.calls[0].key, 7);
    CHECK_EQ(rec.calls[0].slot, 0);
    CHECK_EQ(rec.calls[0].off, 0);
    CHECK_EQ(rec.calls[0].len, 8192);
    CHECK_EQ(open_ok(pc, 7, 0, 8192), 1);      /* confirmed: the open keeps the cache */
    lgpc_report(pc, 7, 1, 8192, 1);
    CHECK_EQ(ncalls(), 1);
    lgpc_report(pc, 7, 0, 0, 1);               /* removed: every page, and forgotten */
    CHECK_EQ(ncalls(), 2);
    CHECK_EQ(rec.calls[1].off, 0);
    CHECK_EQ(rec.calls[1].len, 0);
    CHECK_EQ(lgpc_tracked(pc, 7), 0);
    lgpc_close(pc, 7);                         /* descriptors open across the rm: no-ops */
    lgpc_close(pc, 7);
    CHECK_EQ(lgpc_size(pc, NULL), 0);
    lgpc_inval_now(pc, 9, 1ull << 5, 100, 0);
    CHECK_EQ(ncalls(), 3);
    CHECK_EQ(rec.calls[2].key, 9);
    CHECK_EQ(rec.calls[2].slot, 5);
    CHECK_EQ(rec.calls[2].off, 100);
    uint64_t w = 0, f = 0;
    lgpc_counts(pc, &w, &f);
    CHECK_EQ(w, 3);
    CHECK_EQ(f, 0);
    lgpc_free(pc);
}

/* A log seen through several slot inodes: every invalidation goes to each slot a cached
 * open used, and a slot keeps its pages only once an open of it dropped them. */
TEST(test_slots)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL, 16);
    CHECK(pc != NULL);
    CHECK_EQ(open_ok(pc, 40, 0, 0), 0);
    CHECK_EQ(open_ok(pc, 40, 0, 0), 1);
    CHECK_EQ(open_ok(pc, 40, 3, 0), 0);        /* another slot: its own pages dropped */
    CHECK_EQ(open_ok(pc, 40, 3, 0), 1);
    CHECK_EQ(lgpc_tracked(pc, 40), (1ull << 0) | (1ull << 3));
    lgpc_report(pc, 40, 1, 4096, 1);
    CHECK_EQ(ncalls(), 2);
    CHECK_EQ(rec.calls[0].slot, 0);
    CHECK_EQ(rec.calls[1].slot, 3);
    CHECK_EQ(rec.calls[1].len, 4096);
    CHECK_EQ(open_ok(pc, 40, 3, 4096), 1);
    lgpc_report(pc, 40, 1, 8192, 0);           /* queued: the thread writes both */
    CHECK_EQ(wait_calls(4), 4);
    CHECK_EQ(rec.calls[2].slot + rec.calls[3].slot, 3);
    CHECK_EQ(wait_keep(pc, 40, 0, 8192), 1);
    lgpc_report(pc, 40, 0, 0, 0);              /* removed: both, whole */
    CHECK_EQ(wait_calls(6), 6);
    CHECK_EQ(rec.calls[4].len + rec.calls[5].len, 0);
    CHECK_EQ(rec.calls[4].slot + rec.calls[5].slot, 3);
    lgpc_free(pc);
}

/* R1: an open that finds the start moved drops its slot's pages itself, but if its reply
 * never reached the kernel nothing was dropped: descriptors opened before still hold the
 * pages, so the delivery's report must still queue the invalidation, and the next open must
 * not keep them. (The old table raised the clean start at the open: nothing was queued.) */
TEST(test_open_reply_failed_confirms_nothing)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL, 16);
    CHECK(pc != NULL);
    CHECK_EQ(open_ok(pc, 50, 0, 0), 0);        /* an older descriptor, kept open */
    CHECK_EQ(lgpc_open(pc, 50, 0, 8192), 0);   /* sees the new start before the delivery */
    lgpc_close(pc, 50);                        /* ... and its reply failed */
    CHECK_EQ(open_ok(pc, 50, 0, 8192), 0);     /* nothing confirmed: still dropping */
    lgpc_close(pc, 50);
    gate(1);
    lgpc_report(pc, 50, 1, 8192, 0);           /* the delivery queues it */
    CHECK_EQ(wait_held(1), 1);
    CHECK_EQ(open_ok(pc, 50, 0, 8192), 0);     /* not written yet */
    lgpc_close(pc, 50);
    gate(0);
    CHECK_EQ(wait_calls(1), 1);
    CHECK_EQ(rec.calls[0].len, 8192);
    CHECK_EQ(wait_keep(pc, 50, 0, 8192), 1);
    lgpc_free(pc);
}

/* R2: a refused invalidation confirms nothing: opens keep dropping the pages, and the next
 * report (from a handler or the delivery) writes it again. (The old table confirmed it.) */
TEST(test_refused_invalidation_confirms_nothing)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL, 16);
    CHECK(pc != NULL);
    CHECK_EQ(open_ok(pc, 60, 0, 0), 0);
    CHECK_EQ(open_ok(pc, 60, 0, 0), 1);
    rec.rc = -EIO;
    lgpc_report(pc, 60, 1, 4096, 1);           /* refused */
    CHECK_EQ(ncalls(), 1);
    CHECK_EQ(open_ok(pc, 60, 0, 4096), 0);
    CHECK_EQ(open_ok(pc, 60, 0, 4096), 0);     /* clean did not rise: still dropping */
    lgpc_report(pc, 60, 1, 4096, 0);           /* the delivery queues it again: refused */
    CHECK_EQ(wait_calls(2), 2);
    for (int i = 0; i < 2000 && lgpc_queued(pc); i++)
        usleep(1000);
    usleep(20000);
    CHECK_EQ(open_ok(pc, 60, 0, 4096), 0);
    rec.rc = 0;
    lgpc_report(pc, 60, 1, 4096, 0);           /* and again: accepted */
    CHECK_EQ(wait_calls(3), 3);
    CHECK_EQ(wait_keep(pc, 60, 0, 4096), 1);
    /* a refused append invalidation of a slot: that slot's next open drops its pages */
    rec.rc = -EIO;
    lgpc_inval_now(pc, 60, 1, 4096, 0);
    rec.rc = 0;
    CHECK_EQ(open_ok(pc, 60, 0, 4096), 0);
    CHECK_EQ(open_ok(pc, 60, 0, 4096), 1);
    uint64_t w = 0, f = 0;
    lgpc_counts(pc, &w, &f);
    CHECK_EQ(f, 3);
    lgpc_free(pc);
}

/* R3: the table holds the logs with open cached descriptors, and at most idle_max others
 * (least recently used forgotten first; a forgotten log's next open drops its pages). */
TEST(test_idle_bounded)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL, 2);
    CHECK(pc != NULL);
    for (uint64_t k = 1; k <= 5; k++)
        CHECK_EQ(open_ok(pc, k, 0, 0), 0);
    size_t idle = 9;
    CHECK_EQ(lgpc_size(pc, &idle), 5);         /* all open: none forgotten */
    CHECK_EQ(idle, 0);
    for (uint64_t k = 1; k <= 4; k++)
        lgpc_close(pc, k);
    CHECK_EQ(lgpc_size(pc, &idle), 3);         /* 5 open, 3 and 4 idle */
    CHECK_EQ(idle, 2);
    CHECK_EQ(lgpc_tracked(pc, 1), 0);
    CHECK_EQ(lgpc_tracked(pc, 3), 1);
    CHECK_EQ(open_ok(pc, 3, 0, 0), 1);         /* in use again: not idle */
    CHECK_EQ(open_ok(pc, 1, 0, 0), 0);         /* forgotten: drops its pages */
    CHECK_EQ(lgpc_size(pc, &idle), 4);
    CHECK_EQ(idle, 1);                         /* 4 */
    lgpc_close(pc, 3);
    lgpc_close(pc, 1);                         /* 4 (least recent) goes */
    CHECK_EQ(lgpc_size(pc, &idle), 3);
    CHECK_EQ(idle, 2);
    CHECK_EQ(lgpc_tracked(pc, 4), 0);
    lgpc_free(pc);
    pc = lgpc_new(rec_notify, NULL, 0);        /* nothing idle is kept */
    CHECK(pc != NULL);
    CHECK_EQ(open_ok(pc, 1, 0, 0), 0);
    lgpc_close(pc, 1);
    CHECK_EQ(lgpc_size(pc, NULL), 0);
    CHECK_EQ(open_ok(pc, 1, 0, 0), 0);
    lgpc_free(pc);
}

/* A request handler's report (now = 1) of log 31 at start 8192. */
static void *handler_main(void *arg)
{
    lgpc_report(*(lgpc_t **)arg, 31, 1, 8192, 1);
    return NULL;
}

static void *quiesce_main(void *arg)
{
    lgpc_quiesce(arg);
    return NULL;
}

TEST(test_queued)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL, 16);
    CHECK(pc != NULL);
    CHECK_EQ(open_ok(pc, 11, 0, 0), 0);
    gate(1);                                   /* hold the thread inside notify */
    lgpc_report(pc, 11, 1, 4096, 0);           /* from the delivery hook: queued */
    lgpc_report(pc, 11, 1, 4096, 0);           /* already queued: not twice */
    /* not confirmed yet: opens drop the pages themselves */
    CHECK_EQ(open_ok(pc, 11, 0, 4096), 0);
    CHECK_EQ(open_ok(pc, 11, 0, 4096), 0);
    lgpc_report(pc, 11, 1, 12288, 0);
    gate(0);
    CHECK_EQ(wait_calls(2), 2);
    CHECK_EQ(rec.calls[0].len, 4096);
    CHECK_EQ(rec.calls[1].len, 12288);
    /* the thread confirms after writing (bounded wait): then opens keep the cache */
    CHECK_EQ(wait_keep(pc, 11, 0, 12288), 1);
    /* quiesce drops what is still queued: here an invalidation queued behind a write the
     * thread is held in; then later reports */
    CHECK_EQ(open_ok(pc, 13, 0, 0), 0);
    gate(1);
    lgpc_report(pc, 11, 0, 0, 0);              /* the removal: the thread takes it, held */
    CHECK_EQ(lgpc_tracked(pc, 11), 0);
    CHECK_EQ(wait_held(1), 1);
    CHECK_EQ(lgpc_queued(pc), 0);
    lgpc_report(pc, 13, 1, 4096, 0);           /* queued behind it */
    CHECK_EQ(lgpc_queued(pc), 1);
    pthread_t q;
    CHECK_EQ(pthread_create(&q, NULL, quiesce_main, pc), 0);
    for (int i = 0; i < 10000 && lgpc_queued(pc); i++)
        usleep(1000);                          /* quiesce dropped it (the thread is held) */
    CHECK_EQ(lgpc_queued(pc), 0);
    gate(0);
    pthread_join(q, NULL);
    CHECK_EQ(ncalls(), 3);
    CHECK_EQ(rec.calls[2].len, 0);
    CHECK_EQ(open_ok(pc, 12, 0, 0), 0);
    lgpc_report(pc, 12, 1, 4096, 0);
    CHECK_EQ(ncalls(), 3);
    lgpc_quiesce(pc);                          /* idempotent */
    lgpc_free(pc);
}

/* The delivery (on the applying thread) runs before the handler that proposed: the handler's
 * report must still write what the delivery only queued, before it returns. */
TEST(test_handler_writes_what_delivery_queued)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL, 16);
    CHECK(pc != NULL);
    CHECK_EQ(open_ok(pc, 31, 0, 0), 0);
    gate(1);                                   /* the thread cannot write it */
    lgpc_report(pc, 31, 1, 8192, 0);           /* the delivery: queued */
    CHECK_EQ(wait_held(1), 1);                 /* taken by the thread, held at the gate */
    pthread_t h;
    struct hargs { lgpc_t *pc; } ha = { pc };
    CHECK_EQ(pthread_create(&h, NULL, handler_main, &ha), 0);
    CHECK_EQ(wait_held(2), 2);                 /* the handler writes too (held as well) */
    gate(0);
    pthread_join(h, NULL);
    /* both wrote [0, 8192): the handler did not rely on the queued one */
    CHECK_EQ(wait_calls(2), 2);
    CHECK_EQ(rec.calls[0].len, 8192);
    CHECK_EQ(rec.calls[1].len, 8192);
    lgpc_free(pc);
}

static int odd(void *arg, uint64_t key)
{
    (void)arg;
    return key % 2 == 1;
}

TEST(test_list_and_failures)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL, 16);
    CHECK(pc != NULL);
    uint64_t *keys = NULL;
    CHECK_EQ(lgpc_list(pc, odd, NULL, &keys), 0);
    free(keys);
    for (uint64_t i = 1; i <= 6; i++)
        open_ok(pc, i, 0, 0);
    size_t n = lgpc_list(pc, odd, NULL, &keys);
    CHECK_EQ(n, 3);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += keys[i];
    CHECK_EQ(sum, 1 + 3 + 5);
    free(keys);
    rec.rc = -ENOENT;                          /* the kernel forgot the inode: not a failure */
    lgpc_report(pc, 1, 0, 0, 1);
    rec.rc = -EIO;
    lgpc_report(pc, 2, 0, 0, 1);
    lgpc_report(pc, 3, 0, 0, 1);
    uint64_t w = 0, f = 0;
    lgpc_counts(pc, &w, &f);
    CHECK_EQ(w, 3);
    CHECK_EQ(f, 2);
    lgpc_free(pc);
}

int main(void)
{
    RUN(test_cacheable);
    RUN(test_open_and_report_now);
    RUN(test_slots);
    RUN(test_open_reply_failed_confirms_nothing);
    RUN(test_refused_invalidation_confirms_nothing);
    RUN(test_idle_bounded);
    RUN(test_queued);
    RUN(test_handler_writes_what_delivery_queued);
    RUN(test_list_and_failures);
    return CHECK_DONE();
}
