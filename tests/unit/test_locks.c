/* tests/unit/test_locks.c — the locks/ state machine (fs/locks_sm.c) and the session table
 * driven through the state's apply, with every command built by the encoders of
 * fs/locks_sm.h and fs/session_sm.h and locks_sm_check (through ns_sm_check) after every
 * apply: exclusion, shared holders, strict FIFO grants, non-blocking requests, conversions,
 * fencing tokens that only grow, unlock/cancel (also of a wait that was granted meanwhile),
 * exclusive create with unlink, TTL expiry decided by the command's time, session end, the
 * read API, malformed commands, byte-identical snapshots, and restore rejecting snapshots
 * edited to break an invariant. No FUSE code is involved. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "fs/cmd.h"
#include "fs/locks_sm.h"
#include "fs/ns_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/smrun.h"
#include "tests/unit/snapraw.h"
#include "tests/unit/statesnap.h"

#define CMD_HDR_LEN 11   /* u8 version, u8 op, u8 ns, u64 now (docs/FORMATS.md §4) */

/* EFF_LOCK_WAIT effects seen by a state's delivery hook, in order. */
typedef struct grant {
    uint64_t sid, wid, fence;
    int rc;
} grant_t;

typedef struct shard {
    state_t *st;
    uint64_t idx;
    grant_t grants[64];
    int ngrants;
} shard_t;

static void observe(void *arg, effect_t *e)
{
    shard_t *sh = arg;
    if (e->kind != EFF_LOCK_WAIT)
        return;
    if (sh->ngrants < 64)
        sh->grants[sh->ngrants] = (grant_t){ e->sid, e->wid, e->u.lock.fence, e->u.lock.rc };
    sh->ngrants++;                  /* counts them all; keeps the first 64 */
}

static shard_t *fresh(void)
{
    shard_t *sh = calloc(1, sizeof(*sh));
    sh->st = smrun_state(observe, sh);
    return sh;
}

static void done(shard_t *sh)
{
    state_free(sh->st);
    free(sh);
}

/* Applies b (and frees it), checks every invariant, returns apply's code. */
static int run(shard_t *sh, cmdbuf_t *b, sm_result_t *res)
{
    return smrun_apply(sh->st, &sh->idx, b, res);
}

static uint64_t open_session(shard_t *sh, uint64_t now)
{
    cmdbuf_t b;
    sm_result_t res;
    session_cmd_open(&b, now, "node-a", 42, 10000);
    if (run(sh, &b, &res) != 0)
        return 0;
    uint64_t sid;
    memcpy(&sid, res.data, 8);
    return sid;
}

static int renew(shard_t *sh, uint64_t sid, uint64_t now)
{
    cmdbuf_t b;
    session_cmd_renew(&b, now, sid, 10000);
    return run(sh, &b, NULL);
}

static int end_session(shard_t *sh, uint64_t sid, uint64_t now, int only_if_expired)
{
    cmdbuf_t b;
    session_cmd_end(&b, now, sid, only_if_expired);
    return run(sh, &b, NULL);
}

static int create(shard_t *sh, const char *name, int excl, uint64_t sid, uint64_t now,
                  uint64_t *fence)
{
    cmdbuf_t b;
    sm_result_t res;
    locks_cmd_create(&b, now, name, excl, sid, 7);
    int rc = run(sh, &b, &res);
    if (rc == 0)
        locks_result_create(&res, NULL, NULL, fence);
    return rc;
}

/* Returns apply's code; *granted gets 1 (granted now), 0 (waiting) or -1 (failed), *fence
 * the token. */
static int lock(shard_t *sh, const char *name, uint64_t sid, uint8_t kind, uint64_t owner,
                uint8_t mode, int wait, uint64_t wid, int *granted, uint64_t *fence)
{
    cmdbuf_t b;
    sm_result_t res;
    locks_cmd_lock(&b, 100, name, sid, kind, owner, mode, wait, wid, 1234);
    int rc = run(sh, &b, &res);
    if (granted)
        *granted = -1;
    if (rc == 0)
        locks_result_lock(&res, granted, fence);
    return rc;
}

static int unlock(shard_t *sh, const char *name, uint64_t sid, uint8_t kind, uint64_t owner)
{
    cmdbuf_t b;
    locks_cmd_unlock(&b, 200, name, sid, kind, owner);
    return run(sh, &b, NULL);
}

static int cancel(shard_t *sh, const char *name, uint64_t sid, uint64_t wid)
{
    cmdbuf_t b;
    locks_cmd_cancel(&b, 200, name, sid, wid);
    return run(sh, &b, NULL);
}

static int unlink_lock(shard_t *sh, const char *name, uint64_t now)
{
    cmdbuf_t b;
    locks_cmd_unlink(&b, now, name);
    return run(sh, &b, NULL);
}

static int setttl(shard_t *sh, const char *name, uint64_t now, uint32_t ttl)
{
    cmdbuf_t b;
    locks_cmd_setttl(&b, now, name, ttl);
    return run(sh, &b, NULL);
}

static int touch(shard_t *sh, const char *name, uint64_t now)
{
    cmdbuf_t b;
    locks_cmd_touch(&b, now, name);
    return run(sh, &b, NULL);
}

static int expire(shard_t *sh, const char *name, uint64_t now, uint64_t fence)
{
    cmdbuf_t b;
    locks_cmd_expire(&b, now, name, fence);
    return run(sh, &b, NULL);
}

static int data_as(shard_t *sh, const char *name, uint64_t now, const char *text,
                   uint64_t fence)
{
    cmdbuf_t b;
    locks_cmd_data(&b, now, name, text, strlen(text), fence);
    return run(sh, &b, NULL);
}

static int data(shard_t *sh, const char *name, uint64_t now, const char *text)
{
    return data_as(sh, name, now, text, 0);
}

static int view(shard_t *sh, const char *name, lock_view_t *v)
{
    return locks_sm_get(sh->st, name, strlen(name), v);
}

#define INFO(sh, name, nh, md, nw)                                              \
    do {                                                                        \
        lock_view_t v_;                                                         \
        CHECK_EQ(view(sh, name, &v_), 0);                                       \
        CHECK_EQ(v_.holders, nh);                                               \
        if (nh)                                                                 \
            CHECK_EQ(v_.mode, md);                                              \
        CHECK_EQ(v_.waiters, nw);                                               \
    } while (0)

TEST(exclusive_shared_and_fifo)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK(s);
    CHECK_EQ(create(sh, "L", 0, s, 1, NULL), 0);
    int g;
    uint64_t f1, f2;
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 1, LM_SHARED, 1, 1, &g, &f1), 0);
    CHECK_EQ(g, 1);
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 2, LM_SHARED, 1, 2, &g, &f2), 0);
    CHECK_EQ(g, 1);                                  /* shared with shared */
    CHECK(f2 > f1);
    INFO(sh, "L", 2, LM_SHARED, 0);
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 3, LM_EXCL, 0, 3, &g, NULL), -EAGAIN);
    CHECK_EQ(lock(sh, "L", s, LK_POSIX, 4, LM_EXCL, 1, 4, &g, NULL), 0);
    CHECK_EQ(g, 0);                                  /* fcntl waits for flock holders */
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 5, LM_SHARED, 1, 5, &g, NULL), 0);
    CHECK_EQ(g, 0);                                  /* FIFO: no overtaking the writer */
    INFO(sh, "L", 2, LM_SHARED, 2);
    CHECK_EQ(unlock(sh, "L", s, LK_FLOCK, 1), 0);
    CHECK_EQ(sh->ngrants, 0);
    CHECK_EQ(unlock(sh, "L", s, LK_FLOCK, 2), 0);
    CHECK_EQ(sh->ngrants, 1);
    CHECK(sh->grants[0].wid == 4 && sh->grants[0].rc == 0 && sh->grants[0].fence > f2);
    INFO(sh, "L", 1, LM_EXCL, 1);
    CHECK_EQ(unlock(sh, "L", s, LK_POSIX, 4), 0);
    CHECK_EQ(sh->ngrants, 2);
    CHECK(sh->grants[1].wid == 5 && sh->grants[1].fence > sh->grants[0].fence);
    INFO(sh, "L", 1, LM_SHARED, 0);
    CHECK_EQ(lock(sh, "nope", s, LK_FLOCK, 1, LM_EXCL, 1, 9, &g, NULL), -ENOENT);
    CHECK_EQ(lock(sh, "L", 999, LK_FLOCK, 1, LM_EXCL, 1, 9, &g, NULL), -ENOLCK);
    done(sh);
}

TEST(cancel_of_wait_and_of_late_grant)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(create(sh, "L", 0, s, 1, NULL), 0);
    int g;
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 1, LM_EXCL, 1, 1, &g, NULL), 0);
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 2, LM_EXCL, 1, 2, &g, NULL), 0);
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 3, LM_EXCL, 1, 3, &g, NULL), 0);
    CHECK_EQ(cancel(sh, "L", s, 2), 0);             /* interrupted while waiting */
    INFO(sh, "L", 1, LM_EXCL, 1);
    CHECK_EQ(unlock(sh, "L", s, LK_FLOCK, 1), 0);   /* goes to wid 3, not 2 */
    CHECK(sh->ngrants == 1 && sh->grants[0].wid == 3);
    CHECK_EQ(cancel(sh, "L", s, 3), 0);             /* the grant raced the interrupt */
    INFO(sh, "L", 0, 0, 0);
    /* a repeated request of the same owner keeps the hold; an old cancel then misses */
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 7, LM_EXCL, 1, 10, &g, NULL), 0);
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 7, LM_EXCL, 1, 11, &g, NULL), 0);
    CHECK_EQ(g, 1);
    CHECK_EQ(cancel(sh, "L", s, 10), 0);
    INFO(sh, "L", 1, LM_EXCL, 0);
    CHECK_EQ(cancel(sh, "L", s, 0), -EINVAL);       /* wait id 0 names nothing */
    done(sh);
}

TEST(unlock_ends_waits_and_conversion_gives_up_the_old_hold)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(create(sh, "L", 0, s, 1, NULL), 0);
    int g;
    uint64_t f;
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 1, LM_SHARED, 1, 1, &g, NULL), 0);
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 2, LM_SHARED, 1, 2, &g, NULL), 0);
    /* shared -> exclusive beside another shared holder, non-blocking: the old hold is
     * given up first (flock(2)), then the request fails */
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 1, LM_EXCL, 0, 3, &g, NULL), -EAGAIN);
    INFO(sh, "L", 1, LM_SHARED, 0);
    CHECK_EQ(locks_sm_owner_active(sh->st, "L", s, LK_FLOCK, 1), 0);
    /* blocking: it waits; an unlock by the same owner ends that wait with EINTR */
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 1, LM_EXCL, 1, 4, &g, NULL), 0);
    CHECK_EQ(g, 0);
    CHECK_EQ(locks_sm_owner_active(sh->st, "L", s, LK_FLOCK, 1), 1);
    CHECK_EQ(locks_sm_owner_active(sh->st, "L", s, LK_POSIX, 1), 0);
    CHECK_EQ(unlock(sh, "L", s, LK_FLOCK, 1), 0);
    CHECK(sh->ngrants == 1 && sh->grants[0].wid == 4 && sh->grants[0].rc == -EINTR);
    INFO(sh, "L", 1, LM_SHARED, 0);
    /* the last shared holder converts to exclusive at once, with a new fence */
    lock_view_t v;
    CHECK_EQ(view(sh, "L", &v), 0);
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 2, LM_EXCL, 0, 5, &g, &f), 0);
    CHECK(g == 1 && f > v.last_fence);
    INFO(sh, "L", 1, LM_EXCL, 0);
    /* a shared request of the exclusive holder's owner converts downwards */
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 2, LM_SHARED, 0, 6, &g, NULL), 0);
    CHECK_EQ(g, 1);
    INFO(sh, "L", 1, LM_SHARED, 0);
    /* an unlock of an unknown lock */
    CHECK_EQ(unlock(sh, "nope", s, LK_FLOCK, 2), -ENOENT);
    CHECK_EQ(unlock(sh, "L", s, LK_CREATE, 2), -EINVAL);
    done(sh);
}

TEST(fences_grow_strictly)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(create(sh, "a", 0, s, 1, NULL), 0);
    CHECK_EQ(create(sh, "b", 0, s, 1, NULL), 0);
    uint64_t last = 0, f;
    int g;
    for (int i = 0; i < 500; i++) {
        const char *n = i % 3 ? "a" : "b";
        CHECK_EQ(lock(sh, n, s, i % 2 ? LK_FLOCK : LK_POSIX, (uint64_t)i, LM_EXCL, 1,
                      (uint64_t)i + 1, &g, &f), 0);
        CHECK_EQ(g, 1);
        CHECK(f > last);
        last = f;
        lock_view_t v;
        CHECK_EQ(view(sh, n, &v), 0);
        CHECK_EQ(v.last_fence, f);                 /* user.fence */
        CHECK_EQ(unlock(sh, n, s, i % 2 ? LK_FLOCK : LK_POSIX, (uint64_t)i), 0);
    }
    /* deleting and recreating a lock does not restart its tokens */
    CHECK_EQ(unlink_lock(sh, "a", 2), 0);
    CHECK_EQ(create(sh, "a", 1, s, 3, &f), 0);
    CHECK(f > last);
    done(sh);
}

TEST(exclusive_create_unlink_and_ttl)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    uint64_t f;
    CHECK_EQ(create(sh, "deploy", 1, s, 1000, &f), 0);
    CHECK(f > 0);
    CHECK_EQ(create(sh, "deploy", 1, s, 1000, NULL), -EEXIST);
    CHECK_EQ(create(sh, "other", 1, 999, 1000, NULL), -ENOLCK);   /* no such session */
    INFO(sh, "deploy", 1, LM_EXCL, 0);
    int g;
    CHECK_EQ(lock(sh, "deploy", s, LK_FLOCK, 1, LM_SHARED, 0, 1, &g, NULL), -EAGAIN);
    CHECK_EQ(unlink_lock(sh, "deploy", 1001), 0);      /* rm releases */
    lock_view_t v;
    CHECK_EQ(view(sh, "deploy", &v), -ENOENT);
    /* TTL: set 2 s at t=2000; touch at 3000 moves the end to 5000 */
    CHECK_EQ(create(sh, "t", 1, s, 2000, &f), 0);
    CHECK_EQ(view(sh, "t", &v), 0);
    CHECK(v.create_fence == f && v.expires_ms == 0 && v.ttl_s == 0);
    CHECK_EQ(setttl(sh, "t", 2000, 2), 0);
    CHECK_EQ(view(sh, "t", &v), 0);
    CHECK(v.ttl_s == 2 && v.expires_ms == 4000);
    CHECK_EQ(touch(sh, "t", 3000), 0);
    CHECK_EQ(view(sh, "t", &v), 0);
    CHECK(v.expires_ms == 5000 && v.mtime_ms == 3000);
    CHECK_EQ(expire(sh, "t", 4500, f), -EAGAIN);       /* touched: not yet */
    CHECK_EQ(expire(sh, "t", 5000, f + 1), -ENOENT);   /* not that hold */
    CHECK_EQ(data_as(sh, "t", 4600, "mine", f), 0);    /* the hold's writer */
    CHECK_EQ(data_as(sh, "t", 4600, "old", f + 1), -EIO);   /* not the hold's */
    CHECK_EQ(expire(sh, "t", 5000, f), 0);
    CHECK_EQ(view(sh, "t", &v), -ENOENT);              /* ephemeral: gone */
    CHECK_EQ(data_as(sh, "t", 5000, "late", f), -EIO); /* its hold ended: EIO, not ENOENT */
    CHECK_EQ(data(sh, "t", 5000, "late"), -ENOENT);
    uint64_t f2;
    CHECK_EQ(create(sh, "t", 1, s, 5100, &f2), 0);     /* taken again */
    CHECK_EQ(data_as(sh, "t", 5100, "late", f), -EIO); /* the old hold's write is refused */
    CHECK_EQ(data_as(sh, "t", 5100, "new", f2), 0);
    CHECK_EQ(unlink_lock(sh, "t", 5100), 0);
    CHECK_EQ(setttl(sh, "t", 5000, LOCK_TTL_MAX + 1), -EINVAL);
    /* removing the TTL of a create lock ends its expiry */
    CHECK_EQ(create(sh, "u", 1, s, 6000, &f), 0);
    CHECK_EQ(setttl(sh, "u", 6000, 1), 0);
    CHECK_EQ(setttl(sh, "u", 6000, 0), 0);
    CHECK_EQ(expire(sh, "u", 9000, f), -EAGAIN);
    /* unlink refuses while a flock holds the lock */
    CHECK_EQ(create(sh, "k", 0, s, 9000, NULL), 0);
    CHECK_EQ(lock(sh, "k", s, LK_FLOCK, 1, LM_EXCL, 1, 1, &g, NULL), 0);
    CHECK_EQ(unlink_lock(sh, "k", 9000), -EBUSY);
    done(sh);
}

TEST(create_lock_with_waiters_outlives_its_hold)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    uint64_t f;
    CHECK_EQ(create(sh, "c", 1, s, 1, &f), 0);
    int g;
    CHECK_EQ(lock(sh, "c", s, LK_FLOCK, 1, LM_EXCL, 1, 1, &g, NULL), 0);
    CHECK_EQ(g, 0);
    CHECK_EQ(unlink_lock(sh, "c", 2), -EBUSY);         /* a waiter uses it */
    CHECK_EQ(setttl(sh, "c", 2, 1), 0);
    CHECK_EQ(expire(sh, "c", 3000, f), 0);             /* the create hold ends ... */
    CHECK(sh->ngrants == 1 && sh->grants[0].wid == 1 && sh->grants[0].fence > f);
    lock_view_t v;
    CHECK_EQ(view(sh, "c", &v), 0);                    /* ... the file stays, held by flock */
    CHECK(v.holders == 1 && v.create_fence == 0 && v.expires_ms == 0);
    done(sh);
}

TEST(session_end_releases_everything)
{
    shard_t *sh = fresh();
    uint64_t s1 = open_session(sh, 1), s2 = open_session(sh, 1);
    CHECK(s1 && s2);
    CHECK_EQ(create(sh, "c", 1, s1, 1, NULL), 0);             /* s1's create lock */
    CHECK_EQ(create(sh, "f", 0, s1, 1, NULL), 0);
    int g;
    CHECK_EQ(lock(sh, "f", s1, LK_FLOCK, 1, LM_EXCL, 1, 1, &g, NULL), 0);
    CHECK_EQ(lock(sh, "f", s2, LK_FLOCK, 2, LM_EXCL, 1, 2, &g, NULL), 0);
    CHECK_EQ(g, 0);
    CHECK_EQ(lock(sh, "f", s1, LK_FLOCK, 3, LM_EXCL, 1, 3, &g, NULL), 0);
    /* renewals keep it; an expiry proposal before the lease end is refused */
    CHECK_EQ(renew(sh, s1, 5000), 0);
    CHECK_EQ(end_session(sh, s1, 14000, 1), -EAGAIN);
    CHECK_EQ(end_session(sh, s1, 15000, 1), 0);
    CHECK(sh->ngrants == 2);
    /* s1's own wait is dropped (ENOLCK), then s2's wait is granted */
    CHECK(sh->grants[0].sid == s1 && sh->grants[0].wid == 3 && sh->grants[0].rc == -ENOLCK);
    CHECK(sh->grants[1].sid == s2 && sh->grants[1].wid == 2 && sh->grants[1].rc == 0);
    INFO(sh, "f", 1, LM_EXCL, 0);
    lock_view_t v;
    CHECK_EQ(view(sh, "c", &v), -ENOENT);
    CHECK_EQ(renew(sh, s1, 15001), -ENOENT);
    CHECK_EQ(lock(sh, "f", s1, LK_FLOCK, 9, LM_SHARED, 1, 9, &g, NULL), -ENOLCK);
    done(sh);
}

struct seen {
    char names[8][16];
    uint64_t vals[8];
    int n;
};

static int see_lock(void *arg, const lock_view_t *v)
{
    struct seen *s = arg;
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", v->name);
    s->vals[s->n++] = v->lid;
    return 0;
}

static int see_hold(void *arg, const lock_hold_t *h)
{
    struct seen *s = arg;
    snprintf(s->names[s->n], sizeof(s->names[0]), "%u/%u", h->kind, h->mode);
    s->vals[s->n++] = h->owner;
    return s->n == 2;           /* stops after two */
}

TEST(read_api)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(create(sh, "zeta", 0, s, 10, NULL), 0);
    CHECK_EQ(create(sh, "alpha", 0, s, 11, NULL), 0);
    CHECK_EQ(create(sh, "mid", 1, s, 12, NULL), 0);
    struct seen sn = { .n = 0 };
    CHECK_EQ(locks_sm_each(sh->st, see_lock, &sn), 0);
    CHECK_EQ(sn.n, 3);                              /* creation order, not name order */
    CHECK(!strcmp(sn.names[0], "zeta") && !strcmp(sn.names[1], "alpha") &&
          !strcmp(sn.names[2], "mid"));
    CHECK(sn.vals[0] < sn.vals[1] && sn.vals[1] < sn.vals[2]);
    lock_view_t v, w;
    CHECK_EQ(view(sh, "alpha", &v), 0);
    CHECK_EQ(locks_sm_get_lid(sh->st, v.lid, &w), 0);
    CHECK(!strcmp(w.name, "alpha") && w.ctime_ms == 11 && w.data == NULL);
    CHECK_EQ(locks_sm_get_lid(sh->st, 999, &w), -ENOENT);
    CHECK_EQ(data(sh, "alpha", 20, "host 1234\n"), 0);
    CHECK_EQ(view(sh, "alpha", &v), 0);
    CHECK(v.data && v.data->len == 10 && !memcmp(v.data->data, "host 1234\n", 10));
    CHECK_EQ(v.mtime_ms, 20);
    /* holders in grant order, waiters in FIFO order; fn stops the walk */
    int g;
    CHECK_EQ(lock(sh, "alpha", s, LK_FLOCK, 1, LM_SHARED, 1, 1, &g, NULL), 0);
    CHECK_EQ(lock(sh, "alpha", s, LK_POSIX, 2, LM_SHARED, 1, 2, &g, NULL), 0);
    CHECK_EQ(lock(sh, "alpha", s, LK_POSIX, 3, LM_SHARED, 1, 3, &g, NULL), 0);
    CHECK_EQ(lock(sh, "alpha", s, LK_FLOCK, 4, LM_EXCL, 1, 4, &g, NULL), 0);
    CHECK_EQ(lock(sh, "alpha", s, LK_FLOCK, 5, LM_SHARED, 1, 5, &g, NULL), 0);
    sn.n = 0;
    CHECK_EQ(locks_sm_each_hold(sh->st, v.lid, 0, see_hold, &sn), 1);
    CHECK(sn.n == 2 && sn.vals[0] == 1 && sn.vals[1] == 2 && !strcmp(sn.names[1], "2/1"));
    sn.n = 0;
    CHECK_EQ(locks_sm_each_hold(sh->st, v.lid, 1, see_hold, &sn), 1);
    CHECK(sn.n == 2 && sn.vals[0] == 4 && sn.vals[1] == 5 && !strcmp(sn.names[0], "1/2"));
    CHECK_EQ(locks_sm_each_hold(sh->st, 999, 0, see_hold, &sn), -ENOENT);
    INFO(sh, "alpha", 3, LM_SHARED, 2);
    CHECK_EQ(locks_sm_owner_active(sh->st, "alpha", s, LK_FLOCK, 5), 1);   /* waits */
    CHECK_EQ(locks_sm_owner_active(sh->st, "alpha", s + 1, LK_FLOCK, 5), 0);
    CHECK_EQ(locks_sm_owner_active(sh->st, "nope", s, LK_FLOCK, 5), 0);
    done(sh);
}

/* Appends a random command of locks/ or sessions to b, built by the encoders with arguments
 * that are often wrong. */
static void random_cmd(cmdbuf_t *b, uint64_t s)
{
    const char *names[] = { "L", "M", "", ".x" };
    const char *n = names[rand() % 4];
    uint64_t v = (uint64_t)(rand() % 4);
    uint8_t kind = (uint8_t)(rand() % 5), mode = (uint8_t)(rand() % 4);
    switch (rand() % 12) {
    case 0: locks_cmd_create(b, 1, n, rand() % 2, rand() % 4 ? s : v, 1); break;
    case 1: locks_cmd_lock(b, 1, n, rand() % 4 ? s : v, kind, v, mode, rand() % 2, v, 1); break;
    case 2: locks_cmd_unlock(b, 1, n, s, kind, v); break;
    case 3: locks_cmd_cancel(b, 1, n, s, v); break;
    case 4: locks_cmd_unlink(b, 1, n); break;
    case 5: locks_cmd_setttl(b, 1, n, (uint32_t)v); break;
    case 6: locks_cmd_touch(b, 1, n); break;
    case 7: locks_cmd_expire(b, 1, n, v); break;
    case 8: locks_cmd_data(b, 1, n, "abc", v, (uint64_t)(rand() % 3)); break;
    case 9: session_cmd_open(b, 1, n, 1, 10000); break;
    case 10: session_cmd_renew(b, 1, v, 10000); break;
    default: session_cmd_end(b, 1, v + 2, rand() % 2); break;   /* never s itself */
    }
}

TEST(malformed_commands_are_rejected)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(create(sh, "L", 0, s, 1, NULL), 0);
    CHECK_EQ(create(sh, "..", 0, s, 1, NULL), -EINVAL);
    int g;
    CHECK_EQ(lock(sh, "L", s, 9, 1, LM_EXCL, 1, 1, &g, NULL), -EINVAL);
    CHECK_EQ(lock(sh, "L", s, LK_CREATE, 1, LM_EXCL, 1, 1, &g, NULL), -EINVAL);
    CHECK_EQ(lock(sh, "L", s, LK_FLOCK, 1, 7, 1, 1, &g, NULL), -EINVAL);
    cmdbuf_t b;
    /* an unknown opcode; a command cut short */
    locks_cmd_touch(&b, 1, "L");
    b.p[1] = 50;
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    locks_cmd_lock(&b, 1, "L", s, LK_FLOCK, 1, LM_EXCL, 1, 1, 1);
    b.len -= 4;
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    INFO(sh, "L", 0, 0, 0);
    /* every command, cut short or with random bytes after its header, is refused or
     * applied whole, and never breaks an invariant (run checks them) */
    srand(11);
    int applied = 0, refused = 0;
    for (int i = 0; i < 5000; i++) {
        random_cmd(&b, s);
        int how = rand() % 3;
        if (how == 1)
            b.len = CMD_HDR_LEN + (size_t)rand() % (b.len - CMD_HDR_LEN + 1);
        else if (how == 2)
            for (int j = rand() % 4; j >= 0; j--)
                b.p[CMD_HDR_LEN + (size_t)rand() % (b.len - CMD_HDR_LEN)] =
                    (uint8_t)(rand() % 4 == 0 ? rand() : rand() % 3);
        if (run(sh, &b, NULL) == 0)
            applied++;
        else
            refused++;
    }
    CHECK(applied > 500 && refused > 500);
    done(sh);
}

static void build_log(shard_t *sh)
{
    uint64_t s1 = open_session(sh, 1), s2 = open_session(sh, 2);
    char name[32];
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof(name), "lock-%d", (i * 7) % 30);
        create(sh, name, i % 4 == 0, i % 2 ? s1 : s2, 10 + (uint64_t)i, NULL);
        lock(sh, name, s1, LK_FLOCK, (uint64_t)i, i % 3 ? LM_SHARED : LM_EXCL, 1,
             (uint64_t)i + 1, NULL, NULL);
        lock(sh, name, s2, LK_POSIX, (uint64_t)i, LM_EXCL, 1, (uint64_t)i + 100, NULL, NULL);
    }
    data(sh, "lock-7", 50, "host 1234\n");
    setttl(sh, "lock-0", 60, 30);
    unlock(sh, "lock-14", s1, LK_FLOCK, 2);
}

TEST(determinism_and_snapshot_round_trip)
{
    char d1[] = "/tmp/qfs-test-locks-XXXXXX", d2[] = "/tmp/qfs-test-locks-XXXXXX",
         d3[] = "/tmp/qfs-test-locks-XXXXXX", d4[] = "/tmp/qfs-test-locks-XXXXXX",
         d5[] = "/tmp/qfs-test-locks-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2) && mkdtemp(d3) && mkdtemp(d4) && mkdtemp(d5));
    shard_t *a = fresh();
    build_log(a);
    shard_t *b = fresh();
    build_log(b);
    shard_t *c = fresh();
    size_t la = 0, lb = 0, lc = 0;
    char *sa = snap_bytes(a->st, d1, &la), *sb = snap_bytes(b->st, d2, &lb);
    CHECK(sa && sb && la > 0);
    CHECK_EQ(la, lb);
    CHECK(memcmp(sa, sb, la) == 0);
    CHECK_EQ(restore_dir(c->st, d1), 0);
    ns_sm_check(c->st);
    char *sc = snap_bytes(c->st, d3, &lc);
    CHECK(sc);
    CHECK_EQ(lc, la);
    CHECK(memcmp(sa, sc, la) == 0);
    /* the restored state grants the same next fence and behaves the same */
    uint64_t fa, fc;
    int na = a->ngrants;
    CHECK_EQ(create(a, "new", 1, 1, 60, &fa), 0);
    CHECK_EQ(create(c, "new", 1, 1, 60, &fc), 0);
    CHECK_EQ(fa, fc);
    CHECK_EQ(end_session(a, 1, 70, 0), 0);     /* s1's holds and waits go in both */
    CHECK_EQ(end_session(c, 1, 70, 0), 0);
    CHECK(c->ngrants > 0);
    CHECK_EQ(a->ngrants - na, c->ngrants);
    free(sa);
    free(sc);
    sa = snap_bytes(a->st, d4, &la);
    sc = snap_bytes(c->st, d5, &lc);
    CHECK(sa && sc && la == lc && memcmp(sa, sc, la) == 0);
    free(sa);
    free(sb);
    free(sc);
    done(a);
    done(b);
    done(c);
    char cmdline[300];
    snprintf(cmdline, sizeof(cmdline), "rm -rf %s %s %s %s %s", d1, d2, d3, d4, d5);
    CHECK_EQ(system(cmdline), 0);
}

/* Offsets in a lock's snapshot record after its name (docs/LOCKS.md "Snapshot section"),
 * for a lock without data; holder and waiter records are HOLD_LEN bytes. */
enum {
    L_CTIME = 0, L_MTIME = 8, L_EPHEMERAL = 16, L_TTL = 17, L_EXPIRES = 21, L_LAST_FENCE = 29,
    L_DATA = 37, L_HOLDERS = 41, L_HOLDER1 = 45,
    H_SID = 0, H_OWNER = 8, H_WID = 16, H_FENCE = 24, H_SINCE = 32, H_PID = 40, H_KIND = 44,
    H_MODE = 45, HOLD_LEN = 46,
};

/* Edits of a valid snapshot that break one invariant each: restore rejects every one with
 * -QERR_CORRUPT and a log line naming it, and leaves an empty, valid shard (the invariant
 * checks, which would abort on such a state, pass). The unedited bytes restore. */
TEST(restore_rejects_broken_locks)
{
    char d1[] = "/tmp/qfs-test-locks-XXXXXX", d2[] = "/tmp/qfs-test-locks-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2));
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1000), f;
    CHECK_EQ(create(sh, "guard", 1, s, 1000, &f), 0);          /* a create hold, TTL 5 s */
    CHECK_EQ(setttl(sh, "guard", 1000, 5), 0);
    CHECK_EQ(create(sh, "shared", 0, s, 1000, NULL), 0);       /* a holder and a waiter */
    CHECK_EQ(lock(sh, "shared", s, LK_FLOCK, 1, LM_SHARED, 1, 1, NULL, NULL), 0);
    CHECK_EQ(lock(sh, "shared", s, LK_POSIX, 2, LM_EXCL, 1, 2, NULL, NULL), 0);
    size_t n = 0;
    uint8_t *raw = raw_snapshot(sh->st, d1, &n);
    CHECK(raw != NULL);
    size_t g = raw_after_name(raw, n, "guard"), sl = raw_after_name(raw, n, "shared");
    CHECK(g && sl);
    size_t gh = g + L_HOLDER1, sw = sl + L_HOLDER1 + HOLD_LEN + 4;   /* shared's waiter */
    CHECK_EQ(raw_get64(raw + gh + H_FENCE), f);                /* the offsets are right */
    CHECK_EQ(raw_get64(raw + g + L_EXPIRES), 6000);
    CHECK_EQ(raw[sw + H_KIND], LK_POSIX);
    const raw_edit_t edits[] = {
        { gh + H_OWNER, 8, 1, "a create hold that is shared or has an owner or a wait id" },
        { gh + H_MODE, 1, LM_SHARED, "a create hold that is shared" },
        { gh + H_FENCE, 8, f + 1, "holder fences not growing" },
        { g + L_LAST_FENCE, 8, 1000, "last fence above the fence counter" },
        { g + L_MTIME, 8, 999, "changed before it was made" },
        { g + L_MTIME, 8, 1u << 30, "at a time to come" },
        { gh + H_SINCE, 8, 1u << 30, "since a time to come" },
        { g + L_EXPIRES, 8, 0, "a TTL end without a create hold with a TTL" },
        { g + L_EXPIRES, 8, 5999, "a TTL end that is not a renewal's time plus the TTL" },
        { g + L_TTL, 1, 0, "a TTL end without a create hold with a TTL" },
        { g + L_TTL, 4, LOCK_TTL_MAX + 1, "a TTL or data over its maximum" },
        { g + L_EPHEMERAL, 1, 0, "an ephemeral flag that differs from the create hold" },
        { sw + H_FENCE, 8, 1, "a waiter with a fence" },
        { sw + H_SID, 8, s + 1, "of a session that is not live" },
        { sw + H_MODE, 1, LM_SHARED, "a first waiter that could be granted" },
        { sw + H_KIND, 1, LK_CREATE, "a waiting create" },
    };
    CHECK_EQ(raw_all_rejected(raw, n, edits, sizeof(edits) / sizeof(edits[0]), d2, "locks"),
             -1);
    char log[1024];
    uint8_t *p = malloc(n);
    /* the TTL at its maximum is fine */
    memcpy(p, raw, n);
    raw_put64(p + g + L_EXPIRES, 1000 + (uint64_t)LOCK_TTL_MAX * 1000);
    for (int i = 0; i < 4; i++)
        p[g + L_TTL + i] = (uint8_t)(LOCK_TTL_MAX >> (8 * i));
    state_t *dst = state_new(1 << 20);
    CHECK_EQ(restore_raw(dst, d2, p, n, log, sizeof(log)), 0);
    /* the unedited bytes restore, to the same state */
    CHECK_EQ(restore_raw(dst, d2, raw, n, log, sizeof(log)), 0);
    CHECK_EQ(log[0], 0);
    lock_view_t v;
    CHECK_EQ(locks_sm_get(dst, "shared", 6, &v), 0);
    CHECK(v.holders == 1 && v.waiters == 1);
    state_free(dst);
    free(p);
    free(raw);
    done(sh);
    CHECK_EQ(raw_rmdirs(d1, d2), 0);
}

int main(void)
{
    RUN(exclusive_shared_and_fifo);
    RUN(cancel_of_wait_and_of_late_grant);
    RUN(unlock_ends_waits_and_conversion_gives_up_the_old_hold);
    RUN(fences_grow_strictly);
    RUN(exclusive_create_unlink_and_ttl);
    RUN(create_lock_with_waiters_outlives_its_hold);
    RUN(session_end_releases_everything);
    RUN(read_api);
    RUN(malformed_commands_are_rejected);
    RUN(determinism_and_snapshot_round_trip);
    RUN(restore_rejects_broken_locks);
    return CHECK_DONE();
}
