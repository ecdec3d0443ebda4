/* tests/unit/test_queues.c — the queues/ state machine driven through the state's apply
 * (fs/queues.c): FIFO order, waiters served in order, non-blocking takes, claims with
 * acknowledgement, lease expiry with delivery counts and dead letters, session end, max_length
 * all-or-nothing, queue removal, malformed commands, and determinism (the same commands give
 * byte-identical snapshots, and a restored snapshot snapshots to the same bytes). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "cluster/snapshot.h"
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/queues.h"
#include "fs/session_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/statesnap.h"

static uint64_t idx;

/* Deliveries (EFF_QUEUE_MSG effects) seen by the state's delivery hook, in order. */
static struct got {
    uint64_t sid, hid, id;
    uint32_t count;
    int claim, gone;
    char msg[64];
} got[64];
static int ngot;

static void observe(void *arg, effect_t *e)
{
    (void)arg;
    if (e->kind != EFF_QUEUE_MSG || ngot >= 64)
        return;
    struct got *g = &got[ngot++];
    memset(g, 0, sizeof(*g));
    g->sid = e->sid;
    g->hid = e->wid;
    g->id = e->u.qmsg.id;
    g->count = e->u.qmsg.count;
    g->claim = e->u.qmsg.claim;
    g->gone = e->u.qmsg.gone;
    if (e->u.qmsg.msg)
        snprintf(g->msg, sizeof(g->msg), "%.*s", (int)e->u.qmsg.msg->len,
                 (const char *)e->u.qmsg.msg->data);
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

static int mkq(state_t *st, const char *name, uint64_t now)
{
    cmdbuf_t b;
    cmd_begin(&b, QOP_MKDIR, NS_QUEUES, now);
    cmd_str(&b, name);
    return run(st, &b, NULL);
}

/* Pushes n messages given as NULL-terminated strings. */
static int push(state_t *st, const char *q, uint64_t now, const char *const *msgs)
{
    cmdbuf_t b;
    uint32_t n = 0;
    while (msgs[n])
        n++;
    cmd_begin(&b, QOP_PUSH, NS_QUEUES, now);
    cmd_str(&b, q);
    cmd_u32(&b, n);
    for (uint32_t i = 0; i < n; i++)
        cmd_str(&b, msgs[i]);
    return run(st, &b, NULL);
}

static int push1(state_t *st, const char *q, uint64_t now, const char *m)
{
    const char *v[] = { m, NULL };
    return push(st, q, now, v);
}

/* Returns apply's code; *delivered gets the result flag. */
static int take(state_t *st, const char *q, uint64_t now, uint64_t sid, uint64_t hid,
                uint8_t flags, int *delivered)
{
    cmdbuf_t b;
    sm_result_t res;
    cmd_begin(&b, QOP_TAKE, NS_QUEUES, now);
    cmd_str(&b, q);
    cmd_u64(&b, sid);
    cmd_u64(&b, hid);
    cmd_u8(&b, flags);
    int rc = run(st, &b, &res);
    if (delivered)
        *delivered = rc == 0 ? res.data[0] : -1;
    return rc;
}

static int msg_op(state_t *st, uint8_t op, const char *q, uint64_t now, uint64_t id)
{
    cmdbuf_t b;
    cmd_begin(&b, op, NS_QUEUES, now);
    cmd_str(&b, q);
    cmd_u64(&b, id);
    return run(st, &b, NULL);
}

static int expire(state_t *st, const char *q, uint64_t now, uint64_t id)
{
    cmdbuf_t b;
    cmd_begin(&b, QOP_EXPIRE, NS_QUEUES, now);
    cmd_str(&b, q);
    cmd_u32(&b, 1);
    cmd_u64(&b, id);
    return run(st, &b, NULL);
}

static int set(state_t *st, const char *q, uint8_t which, uint64_t v)
{
    cmdbuf_t b;
    cmd_begin(&b, QOP_SET, NS_QUEUES, 1);
    cmd_str(&b, q);
    cmd_u8(&b, which);
    cmd_u64(&b, v);
    return run(st, &b, NULL);
}

static uint64_t open_session(state_t *st, uint64_t now)
{
    cmdbuf_t b;
    sm_result_t res;
    cmd_begin(&b, SOP_OPEN, SESSION_CMD_NS, now);
    cmd_str(&b, "test-node");
    cmd_u32(&b, 1);
    cmd_u64(&b, 10000);
    if (run(st, &b, &res) != 0)
        return 0;
    uint64_t sid;
    memcpy(&sid, res.data, 8);
    return sid;
}

static int end_session(state_t *st, uint64_t sid, uint64_t now)
{
    cmdbuf_t b;
    cmd_begin(&b, SOP_END, SESSION_CMD_NS, now);
    cmd_u64(&b, sid);
    cmd_u8(&b, 0);
    return run(st, &b, NULL);
}

static state_t *fresh(void)
{
    idx = 0;
    ngot = 0;
    state_t *st = state_new(1 << 20);
    st->deliver = observe;
    return st;
}

#define COUNTS(st, q, r, i, d)                                                   \
    do {                                                                         \
        uint64_t r_, i_, d_;                                                     \
        CHECK_EQ(queues_counts(st, q, &r_, &i_, &d_), 0);                         \
        CHECK_EQ(r_, r);                                                         \
        CHECK_EQ(i_, i);                                                         \
        CHECK_EQ(d_, d);                                                         \
    } while (0)

TEST(push_pop_fifo)
{
    state_t *st = fresh();
    CHECK_EQ(mkq(st, "orders", 1), 0);
    CHECK_EQ(mkq(st, "orders", 1), -EEXIST);
    CHECK_EQ(mkq(st, ".hidden", 1), -EINVAL);
    const char *m[] = { "a", "b", "c", NULL };
    CHECK_EQ(push(st, "orders", 2, m), 0);
    COUNTS(st, "orders", 3, 0, 0);
    int dl;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(take(st, "orders", 3, 7, (uint64_t)i + 1, 0, &dl), 0);
        CHECK_EQ(dl, 1);
    }
    CHECK_EQ(ngot, 3);
    CHECK(strcmp(got[0].msg, "a") == 0 && strcmp(got[1].msg, "b") == 0 &&
          strcmp(got[2].msg, "c") == 0);
    CHECK(got[0].hid == 1 && got[2].hid == 3 && !got[0].claim);
    COUNTS(st, "orders", 0, 0, 0);
    CHECK_EQ(take(st, "orders", 4, 7, 9, QTAKE_NOWAIT, &dl), -EAGAIN);
    CHECK_EQ(take(st, "nope", 4, 7, 9, 0, &dl), -ENOENT);
    CHECK_EQ(push1(st, "nope", 4, "x"), -ENOENT);
    state_free(st);
}

TEST(waiters_are_served_in_order_and_cancel)
{
    state_t *st = fresh();
    CHECK_EQ(mkq(st, "q", 1), 0);
    int dl;
    CHECK_EQ(take(st, "q", 2, 1, 10, 0, &dl), 0);
    CHECK_EQ(dl, 0);                         /* waiting */
    CHECK_EQ(take(st, "q", 2, 2, 20, 0, &dl), 0);
    CHECK_EQ(take(st, "q", 2, 3, 30, 0, &dl), 0);
    CHECK_EQ(take(st, "q", 2, 3, 30, 0, &dl), 0);   /* repeated: not registered twice */
    /* cancel the second waiter */
    cmdbuf_t b;
    sm_result_t res;
    cmd_begin(&b, QOP_CANCEL, NS_QUEUES, 3);
    cmd_str(&b, "q");
    cmd_u64(&b, 2);
    cmd_u64(&b, 20);
    CHECK_EQ(run(st, &b, &res), 0);
    CHECK_EQ(res.data[0], 1);
    const char *m[] = { "one", "two", "three", NULL };
    CHECK_EQ(push(st, "q", 4, m), 0);
    CHECK_EQ(ngot, 2);
    CHECK(got[0].hid == 10 && strcmp(got[0].msg, "one") == 0);
    CHECK(got[1].hid == 30 && strcmp(got[1].msg, "two") == 0);
    COUNTS(st, "q", 1, 0, 0);                /* "three" waits for the next reader */
    state_free(st);
}

TEST(claim_ack_extend_expire_dead)
{
    state_t *st = fresh();
    CHECK_EQ(mkq(st, "q", 1), 0);
    CHECK_EQ(set(st, "q", QSET_VT, 2), 0);
    CHECK_EQ(set(st, "q", QSET_MAXDEL, 2), 0);
    CHECK_EQ(set(st, "q", QSET_VT, 0), -EINVAL);
    const char *m[] = { "m1", "m2", NULL };
    CHECK_EQ(push(st, "q", 1000, m), 0);
    int dl;
    CHECK_EQ(take(st, "q", 1000, 5, 1, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(dl, 1);
    uint64_t id1 = got[0].id;
    CHECK(got[0].claim && strcmp(got[0].msg, "m1") == 0);
    COUNTS(st, "q", 1, 1, 0);
    /* a lease that has not ended is not expired, even if proposed */
    CHECK_EQ(expire(st, "q", 2500, id1), 0);
    COUNTS(st, "q", 1, 1, 0);
    CHECK_EQ(msg_op(st, QOP_EXTEND, "q", 2500, id1), 0);   /* now ends at 4500 */
    CHECK_EQ(expire(st, "q", 4000, id1), 0);
    COUNTS(st, "q", 1, 1, 0);
    CHECK_EQ(expire(st, "q", 4500, id1), 0);               /* back at the head, count 1 */
    COUNTS(st, "q", 2, 0, 0);
    CHECK_EQ(take(st, "q", 5000, 5, 2, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(got[1].id, id1);
    CHECK_EQ(got[1].count, 1);
    CHECK_EQ(expire(st, "q", 8000, id1), 0);               /* count 2 = max: dead */
    COUNTS(st, "q", 1, 0, 1);
    CHECK_EQ(msg_op(st, QOP_ACK, "q", 8000, id1), -ENOENT); /* not in flight any more */
    CHECK_EQ(take(st, "q", 8000, 5, 3, QTAKE_CLAIM, &dl), 0);
    CHECK(strcmp(got[2].msg, "m2") == 0);
    CHECK_EQ(msg_op(st, QOP_ACK, "q", 8001, got[2].id), 0);
    COUNTS(st, "q", 0, 0, 1);
    CHECK_EQ(msg_op(st, QOP_DEADRM, "q", 8002, id1), 0);
    COUNTS(st, "q", 0, 0, 0);
    state_free(st);
}

TEST(unpop_and_return_go_to_the_head)
{
    state_t *st = fresh();
    CHECK_EQ(mkq(st, "q", 1), 0);
    const char *m[] = { "first", "second", NULL };
    CHECK_EQ(push(st, "q", 1, m), 0);
    int dl;
    CHECK_EQ(take(st, "q", 2, 1, 1, 0, &dl), 0);          /* pops "first" */
    cmdbuf_t b;
    cmd_begin(&b, QOP_UNPOP, NS_QUEUES, 3);
    cmd_str(&b, "q");
    cmd_u64(&b, got[0].id);
    cmd_u32(&b, 0);
    cmd_str(&b, "first");
    CHECK_EQ(run(st, &b, NULL), 0);
    CHECK_EQ(take(st, "q", 4, 1, 2, QTAKE_CLAIM, &dl), 0);
    CHECK(strcmp(got[1].msg, "first") == 0);
    CHECK_EQ(msg_op(st, QOP_RETURN, "q", 5, got[1].id), 0);
    CHECK_EQ(take(st, "q", 6, 1, 3, 0, &dl), 0);
    CHECK(strcmp(got[2].msg, "first") == 0);
    CHECK_EQ(got[2].count, 0);                               /* a return is no redelivery */
    state_free(st);
}

TEST(session_end_drops_waiters_and_returns_claims)
{
    state_t *st = fresh();
    uint64_t s1 = open_session(st, 1), s2 = open_session(st, 1);
    CHECK(s1 && s2 && s1 != s2);
    CHECK_EQ(mkq(st, "q", 1), 0);
    const char *m[] = { "x", "y", NULL };
    CHECK_EQ(push(st, "q", 1, m), 0);
    int dl;
    CHECK_EQ(take(st, "q", 2, s1, 1, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(take(st, "q", 2, s1, 2, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(take(st, "q", 2, s1, 3, 0, &dl), 0);
    CHECK_EQ(dl, 0);                                          /* s1 waits */
    CHECK_EQ(take(st, "q", 2, s2, 4, 0, &dl), 0);            /* s2 waits behind */
    COUNTS(st, "q", 0, 2, 0);
    ngot = 0;
    CHECK_EQ(end_session(st, s1, 3), 0);
    /* s1's claims come back (x first); its waiter is gone, so s2's waiter gets x */
    CHECK_EQ(ngot, 1);
    CHECK(got[0].sid == s2 && strcmp(got[0].msg, "x") == 0);
    COUNTS(st, "q", 1, 0, 0);
    CHECK_EQ(end_session(st, s1, 3), -ENOENT);
    state_free(st);
}

TEST(max_length_is_all_or_nothing)
{
    state_t *st = fresh();
    CHECK_EQ(mkq(st, "q", 1), 0);
    CHECK_EQ(set(st, "q", QSET_MAXLEN, 3), 0);
    const char *two[] = { "a", "b", NULL };
    CHECK_EQ(push(st, "q", 1, two), 0);
    CHECK_EQ(push(st, "q", 1, two), -ENOSPC);
    COUNTS(st, "q", 2, 0, 0);
    CHECK_EQ(push1(st, "q", 1, "c"), 0);
    CHECK_EQ(push1(st, "q", 1, "d"), -ENOSPC);
    CHECK_EQ(set(st, "q", QSET_MAXLEN, 0), 0);
    CHECK_EQ(push1(st, "q", 1, "d"), 0);
    COUNTS(st, "q", 4, 0, 0);
    state_free(st);
}

TEST(rmdir_needs_empty_unless_forced)
{
    state_t *st = fresh();
    CHECK_EQ(mkq(st, "q", 1), 0);
    CHECK_EQ(push1(st, "q", 1, "m"), 0);
    cmdbuf_t b;
    cmd_begin(&b, QOP_RMDIR, NS_QUEUES, 2);
    cmd_str(&b, "q");
    cmd_u8(&b, 0);
    CHECK_EQ(run(st, &b, NULL), -ENOTEMPTY);
    int dl;
    CHECK_EQ(mkq(st, "w", 1), 0);
    CHECK_EQ(take(st, "w", 2, 1, 77, 0, &dl), 0);
    cmd_begin(&b, QOP_RMDIR, NS_QUEUES, 2);
    cmd_str(&b, "w");
    cmd_u8(&b, 0);
    CHECK_EQ(run(st, &b, NULL), 0);
    CHECK_EQ(ngot, 1);
    CHECK(got[0].gone && got[0].hid == 77);                  /* the waiter learns */
    cmd_begin(&b, QOP_RMDIR, NS_QUEUES, 2);
    cmd_str(&b, "q");
    cmd_u8(&b, 1);
    CHECK_EQ(run(st, &b, NULL), 0);
    uint64_t r, i, d;
    CHECK_EQ(queues_counts(st, "q", &r, &i, &d), -ENOENT);
    state_free(st);
}

TEST(malformed_commands_are_rejected)
{
    state_t *st = fresh();
    CHECK_EQ(mkq(st, "q", 1), 0);
    cmdbuf_t b;
    cmd_begin(&b, QOP_PUSH, NS_QUEUES, 1);
    cmd_str(&b, "q");
    cmd_u32(&b, 5);                 /* claims 5 messages, carries one */
    cmd_str(&b, "only");
    CHECK_EQ(run(st, &b, NULL), -EINVAL);
    cmd_begin(&b, QOP_PUSH, NS_QUEUES, 1);
    cmd_str(&b, "q");
    cmd_u32(&b, 1);
    cmd_str(&b, "");                /* empty message */
    CHECK_EQ(run(st, &b, NULL), -EINVAL);
    cmd_begin(&b, 99, NS_QUEUES, 1);
    CHECK_EQ(run(st, &b, NULL), -EINVAL);
    /* random bytes after a valid header never crash */
    srand(7);
    for (int i = 0; i < 2000; i++) {
        cmd_begin(&b, (uint8_t)(1 + rand() % 12), NS_QUEUES, 1);
        int n = rand() % 40;
        for (int j = 0; j < n; j++)
            cmd_u8(&b, (uint8_t)(rand() % 4 == 0 ? rand() : rand() % 3));
        run(st, &b, NULL);
    }
    COUNTS(st, "q", 0, 0, 0);
    state_free(st);
}

/* ---- determinism ---- */

static void build_log(state_t *st)
{
    uint64_t s1 = open_session(st, 1);
    open_session(st, 1);
    char name[32], msg[64];
    for (int q = 0; q < 5; q++) {
        snprintf(name, sizeof(name), "q%d", 4 - q);
        mkq(st, name, 1);
        set(st, name, QSET_VT, 5);
        for (int i = 0; i < 40; i++) {
            snprintf(msg, sizeof(msg), "message %d of %s", i, name);
            push1(st, name, 10 + (uint64_t)i, msg);
        }
        for (int i = 0; i < 10; i++)
            take(st, name, 100, s1, (uint64_t)(q * 100 + i), i % 2 ? QTAKE_CLAIM : 0, NULL);
    }
    expire(st, "q3", 10000, 83);
    msg_op(st, QOP_ACK, "q2", 200, 124);
    mkq(st, "waiting", 1);
    take(st, "waiting", 300, s1, 999, 0, NULL);
}

TEST(determinism_and_snapshot_round_trip)
{
    char d1[] = "/tmp/qfs-test-queues-XXXXXX", d2[] = "/tmp/qfs-test-queues-XXXXXX",
         d3[] = "/tmp/qfs-test-queues-XXXXXX";
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
    /* and the restored state behaves the same: the next pop of q0 gives the same message */
    ngot = 0;
    int dl;
    CHECK_EQ(take(a, "q0", 400, 1, 5000, 0, &dl), 0);
    CHECK_EQ(take(c, "q0", 400, 1, 5000, 0, &dl), 0);
    CHECK_EQ(ngot, 2);
    CHECK(strcmp(got[0].msg, got[1].msg) == 0 && got[0].id == got[1].id);
    /* the waiter survived the round trip: a push to "waiting" goes to it */
    ngot = 0;
    CHECK_EQ(push1(c, "waiting", 500, "hello"), 0);
    CHECK(ngot == 1 && got[0].hid == 999);
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
    RUN(push_pop_fifo);
    RUN(waiters_are_served_in_order_and_cancel);
    RUN(claim_ack_extend_expire_dead);
    RUN(unpop_and_return_go_to_the_head);
    RUN(session_end_drops_waiters_and_returns_claims);
    RUN(max_length_is_all_or_nothing);
    RUN(rmdir_needs_empty_unless_forced);
    RUN(malformed_commands_are_rejected);
    RUN(determinism_and_snapshot_round_trip);
    return CHECK_DONE();
}
