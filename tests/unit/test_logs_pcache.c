/* tests/unit/test_logs_pcache.c — fs/logs_pcache.c, the table of logs/ inodes read through
 * the page cache, with a recording notify in place of the kernel: which opens may keep the
 * cache, the invalidations retention and removal cause (written at once from a handler,
 * queued from the delivery hook and written by the module's thread), an open racing a
 * queued invalidation dropping the pages itself, quiesce writing what is queued and
 * dropping later reports, the shard filter of lgpc_list and the failure count. */
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
    int rc;                /* what notify returns */
} rec = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static int rec_notify(void *arg, uint64_t ino, off_t off, off_t len)
{
    (void)arg;
    pthread_mutex_lock(&rec.mu);
    while (rec.closed)
        pthread_cond_wait(&rec.cv, &rec.mu);
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

/* Waits (at most 10 s) until n notifications were recorded; returns how many there are. */
static int wait_calls(int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&rec.mu);
    while (rec.n < n && pthread_cond_timedwait(&rec.cv, &rec.mu, &until) == 0)
        ;
    int got = rec.n;
    pthread_mutex_unlock(&rec.mu);
    return got;
}

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
    /* quiesce writes what is queued, then drops later reports */
    gate(1);
    lgpc_report(pc, 11, 0, 0, 0);
    CHECK(!lgpc_known(pc, 11));
    gate(0);
    lgpc_quiesce(pc);
    CHECK_EQ(ncalls(), 3);
    CHECK_EQ(rec.calls[2].len, 0);
    CHECK_EQ(lgpc_open(pc, 12, 0), 0);
    lgpc_report(pc, 12, 1, 4096, 0);
    CHECK_EQ(ncalls(), 3);
    lgpc_quiesce(pc);                          /* idempotent */
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
    RUN(test_confirmed_by_thread);
    RUN(test_list_and_failures);
    return CHECK_DONE();
}
