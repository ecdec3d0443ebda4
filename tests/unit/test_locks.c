/* tests/unit/test_locks.c — the locks/ state machine and the session table driven through the
 * state's apply (fs/locks.c, fs/session.c): exclusion, shared holders, strict FIFO grants,
 * non-blocking requests, fencing tokens that only grow, unlock/cancel (also of a wait that
 * was granted meanwhile), exclusive create with unlink, TTL expiry decided by the leader's
 * time, session end, malformed commands, and byte-identical snapshots. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "cluster/snapshot.h"
#include "fs/cmd.h"
#include "fs/locks.h"
#include "fs/ns_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/statesnap.h"

static uint64_t idx;

static struct grant {
    uint64_t sid, wid, fence;
    int rc;
} grants[64];
static int ngrants;

/* The state's delivery hook: records EFF_LOCK_WAIT effects in order. */
static void observe(void *arg, effect_t *e)
{
    (void)arg;
    if (e->kind == EFF_LOCK_WAIT && ngrants < 64)
        grants[ngrants++] = (struct grant){ e->sid, e->wid, e->u.lock.fence, e->u.lock.rc };
}

static int run(state_t *st, cmdbuf_t *b, sm_result_t *res)
{
    sm_result_t local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    state_sm_ops.apply(st, ++idx, b->p, b->len, res);
    free(b->p);
    ns_sm_check(st);
    return res->code;
}

static uint64_t open_session(state_t *st, uint64_t now)
{
    cmdbuf_t b;
    sm_result_t res;
    cmd_begin(&b, SOP_OPEN, SESSION_CMD_NS, now);
    cmd_str(&b, "node-a");
    cmd_u32(&b, 42);
    cmd_u64(&b, 10000);
    if (run(st, &b, &res) != 0)
        return 0;
    uint64_t sid;
    memcpy(&sid, res.data, 8);
    return sid;
}

static int sess(state_t *st, uint8_t op, uint64_t sid, uint64_t now, int flag)
{
    cmdbuf_t b;
    cmd_begin(&b, op, SESSION_CMD_NS, now);
    cmd_u64(&b, sid);
    if (op == SOP_END)
        cmd_u8(&b, (uint8_t)flag);
    else
        cmd_u64(&b, 10000);
    return run(st, &b, NULL);
}

static int create(state_t *st, const char *name, int excl, uint64_t sid, uint64_t now,
                  uint64_t *fence)
{
    cmdbuf_t b;
    sm_result_t res;
    cmd_begin(&b, LOP_CREATE, NS_LOCKS, now);
    cmd_str(&b, name);
    cmd_u8(&b, (uint8_t)excl);
    cmd_u64(&b, sid);
    cmd_u32(&b, 7);
    int rc = run(st, &b, &res);
    if (rc == 0 && fence)
        memcpy(fence, res.data + 9, 8);
    return rc;
}

/* Returns apply's code; *granted gets 1 (granted now) or 0 (waiting), *fence the token. */
static int lock(state_t *st, const char *name, uint64_t sid, uint8_t kind, uint64_t owner,
                uint8_t mode, int wait, uint64_t wid, int *granted, uint64_t *fence)
{
    cmdbuf_t b;
    sm_result_t res;
    cmd_begin(&b, LOP_LOCK, NS_LOCKS, 100);
    cmd_str(&b, name);
    cmd_u64(&b, sid);
    cmd_u8(&b, kind);
    cmd_u64(&b, owner);
    cmd_u8(&b, mode);
    cmd_u8(&b, (uint8_t)wait);
    cmd_u64(&b, wid);
    cmd_u32(&b, 1234);
    int rc = run(st, &b, &res);
    if (granted)
        *granted = rc == 0 ? res.data[0] : -1;
    if (fence)
        memcpy(fence, res.data + 1, 8);
    return rc;
}

static int unlock(state_t *st, const char *name, uint64_t sid, uint8_t kind, uint64_t owner)
{
    cmdbuf_t b;
    cmd_begin(&b, LOP_UNLOCK, NS_LOCKS, 200);
    cmd_str(&b, name);
    cmd_u64(&b, sid);
    cmd_u8(&b, kind);
    cmd_u64(&b, owner);
    return run(st, &b, NULL);
}

static int cancel(state_t *st, const char *name, uint64_t sid, uint64_t wid)
{
    cmdbuf_t b;
    cmd_begin(&b, LOP_CANCEL, NS_LOCKS, 200);
    cmd_str(&b, name);
    cmd_u64(&b, sid);
    cmd_u64(&b, wid);
    return run(st, &b, NULL);
}

static int name_op(state_t *st, uint8_t op, const char *name, uint64_t now)
{
    cmdbuf_t b;
    cmd_begin(&b, op, NS_LOCKS, now);
    cmd_str(&b, name);
    return run(st, &b, NULL);
}

static state_t *fresh(void)
{
    idx = 0;
    ngrants = 0;
    state_t *st = state_new(1 << 20);
    st->deliver = observe;
    return st;
}

#define INFO(st, name, nh, md, nw)                                              \
    do {                                                                        \
        uint32_t h_, w_;                                                        \
        int m_;                                                                 \
        uint64_t f_;                                                            \
        CHECK_EQ(locks_info(st, name, &h_, &m_, &f_, &w_), 0);                   \
        CHECK_EQ(h_, nh);                                                       \
        if (nh)                                                                 \
            CHECK_EQ(m_, md);                                                   \
        CHECK_EQ(w_, nw);                                                       \
    } while (0)

TEST(exclusive_shared_and_fifo)
{
    state_t *st = fresh();
    uint64_t s = open_session(st, 1);
    CHECK(s);
    CHECK_EQ(create(st, "L", 0, s, 1, NULL), 0);
    int g;
    uint64_t f1, f2;
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 1, LM_SHARED, 1, 1, &g, &f1), 0);
    CHECK_EQ(g, 1);
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 2, LM_SHARED, 1, 2, &g, &f2), 0);
    CHECK_EQ(g, 1);                                  /* shared with shared */
    CHECK(f2 > f1);
    INFO(st, "L", 2, LM_SHARED, 0);
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 3, LM_EXCL, 0, 3, &g, NULL), -EAGAIN);
    CHECK_EQ(lock(st, "L", s, LK_POSIX, 4, LM_EXCL, 1, 4, &g, NULL), 0);
    CHECK_EQ(g, 0);                                  /* fcntl waits for flock holders */
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 5, LM_SHARED, 1, 5, &g, NULL), 0);
    CHECK_EQ(g, 0);                                  /* FIFO: no overtaking the writer */
    INFO(st, "L", 2, LM_SHARED, 2);
    CHECK_EQ(unlock(st, "L", s, LK_FLOCK, 1), 0);
    CHECK_EQ(ngrants, 0);
    CHECK_EQ(unlock(st, "L", s, LK_FLOCK, 2), 0);
    CHECK_EQ(ngrants, 1);
    CHECK(grants[0].wid == 4 && grants[0].rc == 0 && grants[0].fence > f2);
    INFO(st, "L", 1, LM_EXCL, 1);
    CHECK_EQ(unlock(st, "L", s, LK_POSIX, 4), 0);
    CHECK_EQ(ngrants, 2);
    CHECK(grants[1].wid == 5 && grants[1].fence > grants[0].fence);
    INFO(st, "L", 1, LM_SHARED, 0);
    CHECK_EQ(lock(st, "nope", s, LK_FLOCK, 1, LM_EXCL, 1, 9, &g, NULL), -ENOENT);
    CHECK_EQ(lock(st, "L", 999, LK_FLOCK, 1, LM_EXCL, 1, 9, &g, NULL), -ENOLCK);
    state_free(st);
}

TEST(cancel_of_wait_and_of_late_grant)
{
    state_t *st = fresh();
    uint64_t s = open_session(st, 1);
    CHECK_EQ(create(st, "L", 0, s, 1, NULL), 0);
    int g;
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 1, LM_EXCL, 1, 1, &g, NULL), 0);
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 2, LM_EXCL, 1, 2, &g, NULL), 0);
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 3, LM_EXCL, 1, 3, &g, NULL), 0);
    CHECK_EQ(cancel(st, "L", s, 2), 0);             /* interrupted while waiting */
    INFO(st, "L", 1, LM_EXCL, 1);
    CHECK_EQ(unlock(st, "L", s, LK_FLOCK, 1), 0);   /* goes to wid 3, not 2 */
    CHECK(ngrants == 1 && grants[0].wid == 3);
    CHECK_EQ(cancel(st, "L", s, 3), 0);             /* the grant raced the interrupt */
    INFO(st, "L", 0, 0, 0);
    /* a repeated request of the same owner keeps the hold; an old cancel then misses */
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 7, LM_EXCL, 1, 10, &g, NULL), 0);
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 7, LM_EXCL, 1, 11, &g, NULL), 0);
    CHECK_EQ(g, 1);
    CHECK_EQ(cancel(st, "L", s, 10), 0);
    INFO(st, "L", 1, LM_EXCL, 0);
    state_free(st);
}

TEST(fences_grow_strictly)
{
    state_t *st = fresh();
    uint64_t s = open_session(st, 1);
    CHECK_EQ(create(st, "a", 0, s, 1, NULL), 0);
    CHECK_EQ(create(st, "b", 0, s, 1, NULL), 0);
    uint64_t last = 0, f;
    int g;
    for (int i = 0; i < 500; i++) {
        const char *n = i % 3 ? "a" : "b";
        CHECK_EQ(lock(st, n, s, i % 2 ? LK_FLOCK : LK_POSIX, (uint64_t)i, LM_EXCL, 1,
                      (uint64_t)i + 1, &g, &f), 0);
        CHECK_EQ(g, 1);
        CHECK(f > last);
        last = f;
        CHECK_EQ(unlock(st, n, s, i % 2 ? LK_FLOCK : LK_POSIX, (uint64_t)i), 0);
    }
    /* deleting and recreating a lock does not restart its tokens */
    CHECK_EQ(name_op(st, LOP_UNLINK, "a", 2), 0);
    CHECK_EQ(create(st, "a", 1, s, 3, &f), 0);
    CHECK(f > last);
    state_free(st);
}

TEST(exclusive_create_unlink_and_ttl)
{
    state_t *st = fresh();
    uint64_t s = open_session(st, 1);
    uint64_t f;
    CHECK_EQ(create(st, "deploy", 1, s, 1000, &f), 0);
    CHECK(f > 0);
    CHECK_EQ(create(st, "deploy", 1, s, 1000, NULL), -EEXIST);
    INFO(st, "deploy", 1, LM_EXCL, 0);
    int g;
    CHECK_EQ(lock(st, "deploy", s, LK_FLOCK, 1, LM_SHARED, 0, 1, &g, NULL), -EAGAIN);
    CHECK_EQ(name_op(st, LOP_UNLINK, "deploy", 1001), 0);      /* rm releases */
    uint32_t h, w;
    int m;
    CHECK_EQ(locks_info(st, "deploy", &h, &m, &f, &w), -ENOENT);
    /* TTL: set 2 s at t=2000; touch at 3000 moves the end to 5000 */
    CHECK_EQ(create(st, "t", 1, s, 2000, &f), 0);
    cmdbuf_t b;
    cmd_begin(&b, LOP_SETTTL, NS_LOCKS, 2000);
    cmd_str(&b, "t");
    cmd_u32(&b, 2);
    CHECK_EQ(run(st, &b, NULL), 0);
    CHECK_EQ(name_op(st, LOP_TOUCH, "t", 3000), 0);
    cmd_begin(&b, LOP_EXPIRE, NS_LOCKS, 4500);
    cmd_str(&b, "t");
    cmd_u64(&b, f);
    CHECK_EQ(run(st, &b, NULL), -EAGAIN);                      /* touched: not yet */
    cmd_begin(&b, LOP_EXPIRE, NS_LOCKS, 5000);
    cmd_str(&b, "t");
    cmd_u64(&b, f);
    CHECK_EQ(run(st, &b, NULL), 0);
    CHECK_EQ(locks_info(st, "t", &h, &m, &f, &w), -ENOENT);    /* ephemeral: gone */
    /* unlink refuses while a flock holds the lock */
    CHECK_EQ(create(st, "k", 0, s, 1, NULL), 0);
    CHECK_EQ(lock(st, "k", s, LK_FLOCK, 1, LM_EXCL, 1, 1, &g, NULL), 0);
    CHECK_EQ(name_op(st, LOP_UNLINK, "k", 1), -EBUSY);
    state_free(st);
}

TEST(session_end_releases_everything)
{
    state_t *st = fresh();
    uint64_t s1 = open_session(st, 1), s2 = open_session(st, 1);
    CHECK(s1 && s2);
    CHECK_EQ(create(st, "c", 1, s1, 1, NULL), 0);             /* s1's create lock */
    CHECK_EQ(create(st, "f", 0, s1, 1, NULL), 0);
    int g;
    CHECK_EQ(lock(st, "f", s1, LK_FLOCK, 1, LM_EXCL, 1, 1, &g, NULL), 0);
    CHECK_EQ(lock(st, "f", s2, LK_FLOCK, 2, LM_EXCL, 1, 2, &g, NULL), 0);
    CHECK_EQ(g, 0);
    CHECK_EQ(lock(st, "f", s1, LK_FLOCK, 3, LM_EXCL, 1, 3, &g, NULL), 0);
    /* renewals keep it; an expiry proposal before the lease end is refused */
    CHECK_EQ(sess(st, SOP_RENEW, s1, 5000, 0), 0);
    CHECK_EQ(sess(st, SOP_END, s1, 14000, 1), -EAGAIN);
    CHECK_EQ(sess(st, SOP_END, s1, 15000, 1), 0);
    CHECK(ngrants == 2);
    /* s1's own wait is dropped (ENOLCK), then s2's wait is granted */
    CHECK(grants[0].sid == s1 && grants[0].wid == 3 && grants[0].rc == -ENOLCK);
    CHECK(grants[1].sid == s2 && grants[1].wid == 2 && grants[1].rc == 0);
    INFO(st, "f", 1, LM_EXCL, 0);
    uint32_t h, w;
    int m;
    uint64_t f;
    CHECK_EQ(locks_info(st, "c", &h, &m, &f, &w), -ENOENT);
    CHECK_EQ(sess(st, SOP_RENEW, s1, 15001, 0), -ENOENT);
    state_free(st);
}

TEST(malformed_commands_are_rejected)
{
    state_t *st = fresh();
    uint64_t s = open_session(st, 1);
    CHECK_EQ(create(st, "L", 0, s, 1, NULL), 0);
    CHECK_EQ(create(st, ".x", 0, s, 1, NULL), -EINVAL);
    int g;
    CHECK_EQ(lock(st, "L", s, 9, 1, LM_EXCL, 1, 1, &g, NULL), -EINVAL);
    CHECK_EQ(lock(st, "L", s, LK_FLOCK, 1, 7, 1, 1, &g, NULL), -EINVAL);
    cmdbuf_t b;
    srand(11);
    for (int i = 0; i < 3000; i++) {
        int op = rand() % 12;
        cmd_begin(&b, (uint8_t)(op < 10 ? op : SOP_OPEN + op - 10), NS_LOCKS, 1);
        int n = rand() % 40;
        for (int j = 0; j < n; j++)
            cmd_u8(&b, (uint8_t)(rand() % 4 == 0 ? rand() : rand() % 3));
        run(st, &b, NULL);
    }
    uint32_t h, w;
    int m;
    uint64_t f;
    CHECK_EQ(locks_info(st, "L", &h, &m, &f, &w), 0);
    state_free(st);
}

static void build_log(state_t *st)
{
    uint64_t s1 = open_session(st, 1), s2 = open_session(st, 2);
    char name[32];
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof(name), "lock-%d", (i * 7) % 30);
        create(st, name, i % 4 == 0, i % 2 ? s1 : s2, 10 + (uint64_t)i, NULL);
        lock(st, name, s1, LK_FLOCK, (uint64_t)i, i % 3 ? LM_SHARED : LM_EXCL, 1,
             (uint64_t)i + 1, NULL, NULL);
        lock(st, name, s2, LK_POSIX, (uint64_t)i, LM_EXCL, 1, (uint64_t)i + 100, NULL, NULL);
    }
    cmdbuf_t b;
    cmd_begin(&b, LOP_DATA, NS_LOCKS, 50);
    cmd_str(&b, "lock-7");
    cmd_str(&b, "host 1234\n");
    run(st, &b, NULL);
    unlock(st, "lock-14", s1, LK_FLOCK, 2);
}

TEST(determinism_and_snapshot_round_trip)
{
    char d1[] = "/tmp/qfs-test-locks-XXXXXX", d2[] = "/tmp/qfs-test-locks-XXXXXX",
         d3[] = "/tmp/qfs-test-locks-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2) && mkdtemp(d3));
    state_t *a = fresh();
    build_log(a);
    state_t *b = fresh();
    build_log(b);
    state_t *c = fresh();
    size_t la = 0, lb = 0, lc = 0;
    char *sa = snap_bytes(a, d1, &la), *sb = snap_bytes(b, d2, &lb);
    CHECK(sa && sb && la > 0);
    CHECK_EQ(la, lb);
    CHECK(memcmp(sa, sb, la) == 0);
    CHECK_EQ(restore_dir(c, d1), 0);
    char *sc = snap_bytes(c, d3, &lc);
    CHECK(sc);
    CHECK_EQ(lc, la);
    CHECK(memcmp(sa, sc, la) == 0);
    /* the restored state grants the same next fence */
    uint64_t fa, fc;
    int g;
    CHECK_EQ(create(a, "new", 1, 1, 60, &fa), 0);
    CHECK_EQ(create(c, "new", 1, 1, 60, &fc), 0);
    CHECK_EQ(fa, fc);
    (void)g;
    free(sa);
    free(sb);
    free(sc);
    state_free(a);
    state_free(b);
    state_free(c);
    char cmdline[200];
    snprintf(cmdline, sizeof(cmdline), "rm -rf %s %s %s", d1, d2, d3);
    CHECK_EQ(system(cmdline), 0);
}

int main(void)
{
    RUN(exclusive_shared_and_fifo);
    RUN(cancel_of_wait_and_of_late_grant);
    RUN(fences_grow_strictly);
    RUN(exclusive_create_unlink_and_ttl);
    RUN(session_end_releases_everything);
    RUN(malformed_commands_are_rejected);
    RUN(determinism_and_snapshot_round_trip);
    return CHECK_DONE();
}
