/* tests/unit/test_logs_pcache.c — fs/logs_pcache.c, the table of logs/ inodes read through
 * the page cache, with a recording notify in place of the kernel: which opens may keep the
 * cache, the invalidations retention and removal cause (written at once from a handler,
 * queued from the delivery hook and written by the module's thread), an open racing a
 * queued invalidation dropping the pages itself, quiesce dropping what is queued (behind a
 * write in progress) and later reports, a handler's report writing what the delivery
 * queued, the shard filter of lgpc_list and the failure count. */
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
    uint64_t ino;
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

static int rec_notify(void *arg, uint64_t ino, off_t off, off_t len)
{
    (void)arg;
    pthread_mutex_lock(&rec.mu);
    rec.held++;
    pthread_cond_broadcast(&rec.cv);
    while (rec.closed)
        pthread_cond_wait(&rec.cv, &rec.mu);
    rec.held--;
    if (rec.n < 64)
        rec.calls[rec.n++] = (call_t){ ino, off, len };
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
    lgpc_t *pc = lgpc_new(rec_notify, NULL);
    CHECK(pc != NULL);
    CHECK(!lgpc_known(pc, 7));
    lgpc_report(pc, 7, 1, 8192, 1);            /* never opened cached: nothing to drop */
    lgpc_report(pc, 7, 0, 0, 1);
    CHECK_EQ(ncalls(), 0);
    CHECK_EQ(lgpc_open(pc, 7, 0), 0);          /* the first cached open drops the pages */
    CHECK(lgpc_known(pc, 7));
    CHECK_EQ(lgpc_open(pc, 7, 0), 1);          /* then they are kept */
    lgpc_report(pc, 7, 1, 0, 1);               /* start unchanged: nothing */
    CHECK_EQ(ncalls(), 0);
    lgpc_report(pc, 7, 1, 8192, 1);            /* retention moved the start */
    CHECK_EQ(ncalls(), 1);
    CHECK_EQ(rec.calls[0].ino, 7);
    CHECK_EQ(rec.calls[0].off, 0);
    CHECK_EQ(rec.calls[0].len, 8192);
    CHECK_EQ(lgpc_open(pc, 7, 8192), 1);       /* confirmed: the open keeps the cache */
    lgpc_report(pc, 7, 1, 8192, 1);
    CHECK_EQ(ncalls(), 1);
    lgpc_report(pc, 7, 0, 0, 1);               /* removed: every page, and forgotten */
    CHECK_EQ(ncalls(), 2);
    CHECK_EQ(rec.calls[1].off, 0);
    CHECK_EQ(rec.calls[1].len, 0);
    CHECK(!lgpc_known(pc, 7));
    lgpc_inval_now(pc, 9, 100, 0);
    CHECK_EQ(ncalls(), 3);
    CHECK_EQ(rec.calls[2].ino, 9);
    CHECK_EQ(rec.calls[2].off, 100);
    uint64_t w = 0, f = 0;
    lgpc_counts(pc, &w, &f);
    CHECK_EQ(w, 3);
    CHECK_EQ(f, 0);
    lgpc_free(pc);
}

/* A request handler's report (now = 1) of inode 31 at start 8192. */
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
    lgpc_t *pc = lgpc_new(rec_notify, NULL);
    CHECK(pc != NULL);
    CHECK_EQ(lgpc_open(pc, 11, 0), 0);
    gate(1);                                   /* hold the thread inside notify */
    lgpc_report(pc, 11, 1, 4096, 0);           /* from the delivery hook: queued */
    lgpc_report(pc, 11, 1, 4096, 0);           /* already queued: not twice */
    /* not confirmed yet: an open drops the pages itself */
    CHECK_EQ(lgpc_open(pc, 11, 4096), 0);
    CHECK_EQ(lgpc_open(pc, 11, 4096), 1);
    lgpc_report(pc, 11, 1, 12288, 0);
    gate(0);
    CHECK_EQ(wait_calls(2), 2);
    CHECK_EQ(rec.calls[0].len, 4096);
    CHECK_EQ(rec.calls[1].len, 12288);
    /* the thread confirms after writing (bounded wait): then opens keep the cache */
    int keep = 0;
    for (int i = 0; i < 2000 && !keep; i++) {
        keep = lgpc_open(pc, 11, 12288);
        if (!keep)
            usleep(1000);
    }
    CHECK(keep);
    /* quiesce drops what is still queued: here an invalidation queued behind a write the
     * thread is held in; then later reports */
    CHECK_EQ(lgpc_open(pc, 13, 0), 0);
    gate(1);
    lgpc_report(pc, 11, 0, 0, 0);              /* the removal: the thread takes it, held */
    CHECK(!lgpc_known(pc, 11));
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
    CHECK_EQ(lgpc_open(pc, 12, 0), 0);
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
    lgpc_t *pc = lgpc_new(rec_notify, NULL);
    CHECK(pc != NULL);
    CHECK_EQ(lgpc_open(pc, 31, 0), 0);
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

TEST(test_confirmed_by_thread)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL);
    CHECK(pc != NULL);
    CHECK_EQ(lgpc_open(pc, 21, 0), 0);
    lgpc_report(pc, 21, 1, 8192, 0);
    CHECK_EQ(wait_calls(1), 1);
    int keep = 0;                              /* confirmation follows the write: bounded */
    for (int i = 0; i < 2000 && !keep; i++) {
        keep = lgpc_open(pc, 21, 8192);
        if (!keep)
            usleep(1000);
    }
    CHECK(keep);
    lgpc_free(pc);
}

static int odd(void *arg, uint64_t ino)
{
    (void)arg;
    return ino % 2 == 1;
}

TEST(test_list_and_failures)
{
    gate(0);
    rec_reset();
    lgpc_t *pc = lgpc_new(rec_notify, NULL);
    CHECK(pc != NULL);
    uint64_t *inos = NULL;
    CHECK_EQ(lgpc_list(pc, odd, NULL, &inos), 0);
    free(inos);
    for (uint64_t i = 1; i <= 6; i++)
        lgpc_open(pc, i, 0);
    size_t n = lgpc_list(pc, odd, NULL, &inos);
    CHECK_EQ(n, 3);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += inos[i];
    CHECK_EQ(sum, 1 + 3 + 5);
    free(inos);
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
    RUN(test_queued);
    RUN(test_handler_writes_what_delivery_queued);
    RUN(test_confirmed_by_thread);
    RUN(test_list_and_failures);
    return CHECK_DONE();
}
