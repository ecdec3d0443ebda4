/* tests/unit/test_queues.c — the queues/ state machine (fs/queues_sm.c) driven through the
 * state's apply, with every command built by the encoders of fs/queues_sm.h and
 * fs/session_sm.h and queues_sm_check (through ns_sm_check) after every apply: FIFO order,
 * waiters served in order, non-blocking takes, claims with acknowledgement, lease expiry
 * with delivery counts and dead letters, unpop/return, session end, takes of sessions that
 * are gone, max_length all-or-nothing, queue removal, malformed commands, the read API,
 * two shards in one process, determinism (the same commands give byte-identical
 * snapshots, and a restored snapshot snapshots to the same bytes and behaves the same), and
 * restore rejecting snapshots edited to break an invariant. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/queues_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"
#include "tests/unit/check.h"
#include "tests/unit/snapraw.h"
#include "tests/unit/statesnap.h"

/* Deliveries (EFF_QUEUE_MSG effects) seen by a state's delivery hook, in order. */
typedef struct got {
    uint64_t sid, hid, id;
    uint32_t count;
    int claim, gone;
    char msg[64];
    uint8_t ended, again;
    uint64_t seq;
} got_t;

typedef struct shard {
    state_t *st;
    uint64_t idx;
    got_t got[64];
    int ngot;
    int restored;                /* EFF_RESTORED effects of queues/ seen */
} shard_t;

static void observe(void *arg, effect_t *e)
{
    shard_t *sh = arg;
    if (e->kind == EFF_RESTORED && e->ns == NS_QUEUES)
        sh->restored++;
    if (e->kind != EFF_QUEUE_MSG || sh->ngot >= 64)
        return;
    got_t *g = &sh->got[sh->ngot++];
    memset(g, 0, sizeof(*g));
    g->sid = e->sid;
    g->hid = e->wid;
    g->id = e->u.qmsg.id;
    g->count = e->u.qmsg.count;
    g->claim = e->u.qmsg.claim;
    g->gone = e->u.qmsg.gone;
    g->ended = e->u.qmsg.ended;
    g->again = e->u.qmsg.again;
    g->seq = e->u.qmsg.seq;
    if (e->u.qmsg.msg)
        snprintf(g->msg, sizeof(g->msg), "%.*s", (int)e->u.qmsg.msg->len,
                 (const char *)e->u.qmsg.msg->data);
}

static shard_t *fresh(void)
{
    shard_t *sh = calloc(1, sizeof(*sh));
    sh->st = state_new(1 << 20);
    sh->st->deliver = observe;
    sh->st->deliver_arg = sh;
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
    sm_result_t local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    state_sm_ops.apply(sh->st, ++sh->idx, b->p, b->len, res);
    free(b->p);
    ns_sm_check(sh->st);
    return res->code;
}

static int mkq(shard_t *sh, const char *name, uint64_t now)
{
    cmdbuf_t b;
    queues_cmd_mkdir(&b, now, name);
    return run(sh, &b, NULL);
}

/* Pushes the messages of a NULL-terminated list in one command. */
static int push(shard_t *sh, const char *q, uint64_t now, const char *const *msgs)
{
    cmdbuf_t b;
    queues_cmd_push(&b, now, q);
    for (; *msgs; msgs++)
        queues_cmd_push_add(&b, *msgs, strlen(*msgs));
    return run(sh, &b, NULL);
}

static int push1(shard_t *sh, const char *q, uint64_t now, const char *m)
{
    const char *v[] = { m, NULL };
    return push(sh, q, now, v);
}

/* Returns apply's code; *delivered gets the result flag. */
static int take(shard_t *sh, const char *q, uint64_t now, uint64_t sid, uint64_t hid,
                uint8_t flags, int *delivered)
{
    cmdbuf_t b;
    sm_result_t res;
    queues_cmd_take(&b, now, q, sid, hid, flags, 0, 0);
    int rc = run(sh, &b, &res);
    if (delivered)
        *delivered = rc == 0 ? res.data[0] : -1;
    return rc;
}

static int msg_op(shard_t *sh, uint8_t op, const char *q, uint64_t now, uint64_t id)
{
    cmdbuf_t b;
    queues_cmd_msg(&b, op, now, q, id);
    return run(sh, &b, NULL);
}

static int expire(shard_t *sh, const char *q, uint64_t now, uint64_t id)
{
    cmdbuf_t b;
    queues_cmd_expire(&b, now, q, 1, &id);
    return run(sh, &b, NULL);
}

static int set(shard_t *sh, const char *q, uint8_t which, uint64_t v)
{
    cmdbuf_t b;
    queues_cmd_set(&b, 1, q, which, v);
    return run(sh, &b, NULL);
}

static int rmq(shard_t *sh, const char *q, int force)
{
    cmdbuf_t b;
    queues_cmd_rmdir(&b, 2, q, force);
    return run(sh, &b, NULL);
}

static uint64_t open_session(shard_t *sh, uint64_t now)
{
    cmdbuf_t b;
    sm_result_t res;
    session_cmd_open(&b, now, "test-node", 1, 10000);
    if (run(sh, &b, &res) != 0)
        return 0;
    uint64_t sid;
    memcpy(&sid, res.data, 8);
    return sid;
}

static int end_session(shard_t *sh, uint64_t sid, uint64_t now)
{
    cmdbuf_t b;
    session_cmd_end(&b, now, sid, 0);
    return run(sh, &b, NULL);
}

#define COUNTS(sh, q, r, i, d)                                                   \
    do {                                                                         \
        queue_view_t v_;                                                         \
        CHECK_EQ(queues_sm_get((sh)->st, q, strlen(q), &v_), 0);                 \
        CHECK_EQ(v_.ready, r);                                                   \
        CHECK_EQ(v_.inflight, i);                                                \
        CHECK_EQ(v_.dead, d);                                                    \
    } while (0)

TEST(push_pop_fifo)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK(s);
    CHECK_EQ(mkq(sh, "orders", 1), 0);
    CHECK_EQ(mkq(sh, "orders", 1), -EEXIST);
    CHECK_EQ(mkq(sh, "..", 1), -EINVAL);
    const char *m[] = { "a", "b", "c", NULL };
    CHECK_EQ(push(sh, "orders", 2, m), 0);
    COUNTS(sh, "orders", 3, 0, 0);
    int dl;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(take(sh, "orders", 3, s, (uint64_t)i + 1, 0, &dl), 0);
        CHECK_EQ(dl, 1);
    }
    CHECK_EQ(sh->ngot, 3);
    CHECK(strcmp(sh->got[0].msg, "a") == 0 && strcmp(sh->got[1].msg, "b") == 0 &&
          strcmp(sh->got[2].msg, "c") == 0);
    CHECK(sh->got[0].hid == 1 && sh->got[2].hid == 3 && !sh->got[0].claim);
    COUNTS(sh, "orders", 0, 0, 0);
    CHECK_EQ(take(sh, "orders", 4, s, 9, QTAKE_NOWAIT, &dl), -EAGAIN);
    CHECK_EQ(take(sh, "nope", 4, s, 9, 0, &dl), -ENOENT);
    CHECK_EQ(push1(sh, "nope", 4, "x"), -ENOENT);
    done(sh);
}

TEST(waiters_are_served_in_order_and_cancel)
{
    shard_t *sh = fresh();
    uint64_t s1 = open_session(sh, 1), s2 = open_session(sh, 1), s3 = open_session(sh, 1);
    CHECK_EQ(mkq(sh, "q", 1), 0);
    int dl;
    CHECK_EQ(take(sh, "q", 2, s1, 10, 0, &dl), 0);
    CHECK_EQ(dl, 0);                         /* waiting */
    CHECK_EQ(take(sh, "q", 2, s2, 20, 0, &dl), 0);
    CHECK_EQ(take(sh, "q", 2, s3, 30, 0, &dl), 0);
    CHECK_EQ(take(sh, "q", 2, s3, 30, 0, &dl), 0);   /* repeated: not registered twice */
    queue_view_t v;
    CHECK_EQ(queues_sm_get(sh->st, "q", 1, &v), 0);
    CHECK_EQ(v.waiters, 3);
    /* cancel the second waiter */
    cmdbuf_t b;
    sm_result_t res;
    queues_cmd_cancel(&b, 3, "q", s2, 20, 0, 0);
    CHECK_EQ(run(sh, &b, &res), 0);
    CHECK_EQ(res.data[0], 1);
    queues_cmd_cancel(&b, 3, "q", s2, 20, 0, 0);
    CHECK_EQ(run(sh, &b, &res), 0);
    CHECK_EQ(res.data[0], 0);                /* gone already */
    const char *m[] = { "one", "two", "three", NULL };
    CHECK_EQ(push(sh, "q", 4, m), 0);
    CHECK_EQ(sh->ngot, 2);
    CHECK(sh->got[0].hid == 10 && sh->got[0].sid == s1 && strcmp(sh->got[0].msg, "one") == 0);
    CHECK(sh->got[1].hid == 30 && strcmp(sh->got[1].msg, "two") == 0);
    COUNTS(sh, "q", 1, 0, 0);                /* "three" waits for the next reader */
    done(sh);
}

TEST(claim_ack_extend_expire_dead)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(mkq(sh, "q", 1), 0);
    CHECK_EQ(set(sh, "q", QSET_VT, 2), 0);
    CHECK_EQ(set(sh, "q", QSET_MAXDEL, 2), 0);
    CHECK_EQ(set(sh, "q", QSET_VT, 0), -EINVAL);
    const char *m[] = { "m1", "m2", NULL };
    CHECK_EQ(push(sh, "q", 1000, m), 0);
    int dl;
    CHECK_EQ(take(sh, "q", 1000, s, 1, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(dl, 1);
    uint64_t id1 = sh->got[0].id;
    CHECK(sh->got[0].claim && strcmp(sh->got[0].msg, "m1") == 0);
    COUNTS(sh, "q", 1, 1, 0);
    qmsg_view_t mv;
    CHECK_EQ(queues_sm_msg(sh->st, id1, &mv), 0);
    CHECK(mv.where == QM_INFLIGHT && mv.sid == s && mv.expires_ms == 3000);
    /* a lease that has not ended is not expired, even if proposed */
    CHECK_EQ(expire(sh, "q", 2500, id1), 0);
    COUNTS(sh, "q", 1, 1, 0);
    CHECK_EQ(msg_op(sh, QOP_EXTEND, "q", 2500, id1), 0);   /* now ends at 4500 */
    /* a proposer whose clock is behind extends from the log's time, never shortens */
    CHECK_EQ(msg_op(sh, QOP_EXTEND, "q", 100, id1), 0);
    CHECK_EQ(queues_sm_msg(sh->st, id1, &mv), 0);
    CHECK_EQ(mv.expires_ms, 4500);
    CHECK_EQ(expire(sh, "q", 4000, id1), 0);
    COUNTS(sh, "q", 1, 1, 0);
    CHECK_EQ(expire(sh, "q", 4500, id1), 0);               /* back at the head, count 1 */
    COUNTS(sh, "q", 2, 0, 0);
    CHECK_EQ(take(sh, "q", 5000, s, 2, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(sh->got[1].id, id1);
    CHECK_EQ(sh->got[1].count, 1);
    CHECK_EQ(expire(sh, "q", 8000, id1), 0);               /* count 2 = max: dead */
    COUNTS(sh, "q", 1, 0, 1);
    CHECK_EQ(msg_op(sh, QOP_ACK, "q", 8000, id1), -ENOENT); /* not in flight any more */
    CHECK_EQ(take(sh, "q", 8000, s, 3, QTAKE_CLAIM, &dl), 0);
    CHECK(strcmp(sh->got[2].msg, "m2") == 0);
    CHECK_EQ(msg_op(sh, QOP_ACK, "q", 8001, sh->got[2].id), 0);
    COUNTS(sh, "q", 0, 0, 1);
    CHECK_EQ(msg_op(sh, QOP_DEADRM, "q", 8002, id1), 0);
    COUNTS(sh, "q", 0, 0, 0);
    done(sh);
}

TEST(unpop_and_return_go_to_the_head)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(mkq(sh, "q", 1), 0);
    const char *m[] = { "first", "second", NULL };
    CHECK_EQ(push(sh, "q", 1, m), 0);
    int dl;
    CHECK_EQ(take(sh, "q", 2, s, 1, 0, &dl), 0);          /* pops "first" */
    cmdbuf_t b;
    queues_cmd_unpop(&b, 3, "q", sh->got[0].id, 0, "first", 5);
    CHECK_EQ(run(sh, &b, NULL), 0);
    queues_cmd_unpop(&b, 3, "q", sh->got[0].id, 0, "first", 5);
    CHECK_EQ(run(sh, &b, NULL), -EEXIST);                   /* given back once only */
    CHECK_EQ(take(sh, "q", 4, s, 2, QTAKE_CLAIM, &dl), 0);
    CHECK(strcmp(sh->got[1].msg, "first") == 0);
    CHECK_EQ(msg_op(sh, QOP_RETURN, "q", 5, sh->got[1].id), 0);
    CHECK_EQ(take(sh, "q", 6, s, 3, 0, &dl), 0);
    CHECK(strcmp(sh->got[2].msg, "first") == 0);
    CHECK_EQ(sh->got[2].count, 0);                           /* a return is no redelivery */
    done(sh);
}

/* Messages whose leases end in different sweeps come back in the order they were pushed
 * (queues.sh's redelivered-keeps-order failed under load when r2 and r3 expired one sweep
 * after r1 and were put in front of it). */
TEST(returns_in_separate_sweeps_keep_push_order)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(mkq(sh, "q", 1), 0);
    CHECK_EQ(set(sh, "q", QSET_VT, 1), 0);
    const char *m[] = { "r1", "r2", "r3", "r4", NULL };
    CHECK_EQ(push(sh, "q", 1000, m), 0);
    int dl;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(take(sh, "q", 1000 + (uint64_t)i, s, 1 + (uint64_t)i, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(expire(sh, "q", 2000, sh->got[0].id), 0);        /* r1 in one sweep */
    CHECK_EQ(expire(sh, "q", 2100, sh->got[2].id), 0);        /* r3, then r2, later */
    CHECK_EQ(expire(sh, "q", 2200, sh->got[1].id), 0);
    COUNTS(sh, "q", 4, 0, 0);
    const char *want[] = { "r1", "r2", "r3", "r4" };
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(take(sh, "q", 3000, s, 10 + (uint64_t)i, 0, &dl), 0);
        CHECK(strcmp(sh->got[3 + i].msg, want[i]) == 0);
    }
    done(sh);
}

TEST(session_end_drops_waiters_and_returns_claims)
{
    shard_t *sh = fresh();
    uint64_t s1 = open_session(sh, 1), s2 = open_session(sh, 1);
    CHECK(s1 && s2 && s1 != s2);
    CHECK_EQ(mkq(sh, "q", 1), 0);
    const char *m[] = { "x", "y", NULL };
    CHECK_EQ(push(sh, "q", 1, m), 0);
    int dl;
    CHECK_EQ(take(sh, "q", 2, s1, 1, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(take(sh, "q", 2, s1, 2, QTAKE_CLAIM, &dl), 0);
    CHECK_EQ(take(sh, "q", 2, s1, 3, 0, &dl), 0);
    CHECK_EQ(dl, 0);                                          /* s1 waits */
    CHECK_EQ(take(sh, "q", 2, s2, 4, 0, &dl), 0);            /* s2 waits behind */
    COUNTS(sh, "q", 0, 2, 0);
    sh->ngot = 0;
    CHECK_EQ(end_session(sh, s1, 3), 0);
    /* s1's waiter is told its session ended (so the read parked on it ends); s1's claims
     * come back (x first), and s2's waiter gets x */
    CHECK_EQ(sh->ngot, 2);
    CHECK(sh->got[0].sid == s1 && sh->got[0].hid == 3 && sh->got[0].gone && sh->got[0].ended);
    CHECK(sh->got[1].sid == s2 && strcmp(sh->got[1].msg, "x") == 0 && !sh->got[1].ended);
    COUNTS(sh, "q", 1, 0, 0);
    CHECK_EQ(end_session(sh, s1, 3), -ENOENT);
    /* An ended (or never opened) session cannot take: nobody would collect its claim or
     * its wait. */
    CHECK_EQ(take(sh, "q", 4, s1, 5, QTAKE_CLAIM, &dl), -ENOLCK);
    CHECK_EQ(take(sh, "q", 4, 999, 5, 0, &dl), -ENOLCK);
    COUNTS(sh, "q", 1, 0, 0);
    done(sh);
}

TEST(max_length_is_all_or_nothing)
{
    shard_t *sh = fresh();
    CHECK_EQ(mkq(sh, "q", 1), 0);
    CHECK_EQ(set(sh, "q", QSET_MAXLEN, 3), 0);
    const char *two[] = { "a", "b", NULL };
    CHECK_EQ(push(sh, "q", 1, two), 0);
    CHECK_EQ(push(sh, "q", 1, two), -ENOSPC);
    COUNTS(sh, "q", 2, 0, 0);
    CHECK_EQ(push1(sh, "q", 1, "c"), 0);
    CHECK_EQ(push1(sh, "q", 1, "d"), -ENOSPC);
    CHECK_EQ(set(sh, "q", QSET_MAXLEN, 0), 0);
    CHECK_EQ(push1(sh, "q", 1, "d"), 0);
    COUNTS(sh, "q", 4, 0, 0);
    /* a batch with one bad message applies none of it */
    const char *bad[] = { "e", "", NULL };
    CHECK_EQ(push(sh, "q", 1, bad), -EINVAL);
    COUNTS(sh, "q", 4, 0, 0);
    done(sh);
}

TEST(rmdir_needs_empty_unless_forced)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(mkq(sh, "q", 1), 0);
    CHECK_EQ(push1(sh, "q", 1, "m"), 0);
    CHECK_EQ(rmq(sh, "q", 0), -ENOTEMPTY);
    int dl;
    CHECK_EQ(mkq(sh, "w", 1), 0);
    CHECK_EQ(take(sh, "w", 2, s, 77, 0, &dl), 0);
    CHECK_EQ(rmq(sh, "w", 0), 0);
    CHECK_EQ(sh->ngot, 1);
    CHECK(sh->got[0].gone && sh->got[0].hid == 77);          /* the waiter learns */
    CHECK_EQ(rmq(sh, "q", 1), 0);
    queue_view_t v;
    CHECK_EQ(queues_sm_get(sh->st, "q", 1, &v), -ENOENT);
    done(sh);
}

TEST(malformed_commands_are_rejected)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(mkq(sh, "q", 1), 0);
    cmdbuf_t b;
    /* a batch whose count says 2 but that carries one message */
    queues_cmd_push(&b, 1, "q");
    queues_cmd_push_add(&b, "only", 4);
    size_t one = b.len;
    queues_cmd_push_add(&b, "cut", 3);
    CHECK_EQ(queues_cmd_push_count(&b), 2);
    b.len = one;
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    /* an unknown opcode */
    queues_cmd_mkdir(&b, 1, "r");
    b.p[1] = 99;
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    COUNTS(sh, "q", 0, 0, 0);
    /* every command, cut short or with random bytes after its header, is refused or
     * applied whole, and never breaks an invariant (run checks them) */
    srand(7);
    for (int i = 0; i < 3000; i++) {
        uint64_t id = (uint64_t)(rand() % 8), ids[3] = { id, id + 1, 2 };
        switch (rand() % 9) {
        case 0: queues_cmd_push(&b, 1, "q"); queues_cmd_push_add(&b, "m", 1); break;
        case 1: queues_cmd_take(&b, 1, "q", s, id, (uint8_t)(rand() % 4), (uint64_t)(rand() % 8), (uint64_t)(rand() % 3)); break;
        case 2: queues_cmd_cancel(&b, 1, "q", s, id, (uint64_t)(rand() % 8), (uint64_t)(rand() % 3)); break;
        case 3: queues_cmd_unpop(&b, 1, "q", id, 0, "u", 1); break;
        case 4: queues_cmd_msg(&b, (uint8_t)(QOP_ACK + rand() % 3), 1, "q", id); break;
        case 5: queues_cmd_expire(&b, 1, "q", 3, ids); break;
        case 6: queues_cmd_set(&b, 1, "q", (uint8_t)(rand() % 4), id); break;
        case 7: queues_cmd_msg(&b, QOP_DEADRM, 1, "q", id); break;
        default: queues_cmd_rmdir(&b, 1, "q", 0); break;
        }
        if (rand() % 2)
            b.len = 11 + (size_t)rand() % (b.len - 10);          /* cut short */
        for (size_t j = 11; j < b.len; j++)
            if (rand() % 4 == 0)
                b.p[j] = (uint8_t)(rand() % 3 == 0 ? rand() : rand() % 3);
        run(sh, &b, NULL);
    }
    done(sh);
}

/* ---- the read API ---- */

static int name_of_queue(void *arg, const queue_view_t *v)
{
    strcat(arg, v->name);
    strcat(arg, " ");
    return 0;
}

static int id_of_msg(void *arg, const qmsg_view_t *m)
{
    char *out = arg;
    snprintf(out + strlen(out), 16, "%llu ", (unsigned long long)m->id);
    return strlen(out) >= 4;         /* stops after the second id */
}

TEST(read_api_walks_in_list_order)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    CHECK_EQ(mkq(sh, "zeta", 1), 0);
    CHECK_EQ(mkq(sh, "alpha", 1), 0);
    CHECK_EQ(mkq(sh, "mid", 1), 0);
    char names[64] = "";
    CHECK_EQ(queues_sm_each(sh->st, name_of_queue, names), 0);
    CHECK(strcmp(names, "zeta alpha mid ") == 0);          /* creation order */
    const char *m[] = { "1", "2", "3", NULL };
    CHECK_EQ(push(sh, "mid", 2, m), 0);
    queue_view_t v;
    CHECK_EQ(queues_sm_get(sh->st, "mid", 3, &v), 0);
    CHECK(v.head && v.head->len == 1 && v.head->data[0] == '1' && v.ready == 3);
    char ids[64] = "";
    CHECK_EQ(queues_sm_each_msg(sh->st, v.qid, QM_READY, id_of_msg, ids), 1);
    CHECK(strcmp(ids, "1 2 ") == 0);
    int dl;
    CHECK_EQ(take(sh, "mid", 3, s, 1, QTAKE_CLAIM, &dl), 0);
    ids[0] = 0;
    CHECK_EQ(queues_sm_each_msg(sh->st, v.qid, QM_INFLIGHT, id_of_msg, ids), 0);
    CHECK(strcmp(ids, "1 ") == 0);
    CHECK_EQ(queues_sm_each_msg(sh->st, 999, QM_READY, id_of_msg, ids), -ENOENT);
    qmsg_view_t mv;
    CHECK_EQ(queues_sm_msg(sh->st, 2, &mv), 0);
    CHECK(mv.where == QM_READY && mv.qid == v.qid && mv.count == 0);
    CHECK_EQ(queues_sm_msg(sh->st, 77, &mv), -ENOENT);
    done(sh);
}

/* ---- shards ---- */

TEST(two_shards_in_one_process_are_independent)
{
    shard_t *a = fresh(), *b = fresh();
    uint64_t sa = open_session(a, 1), sb = open_session(b, 1);
    CHECK(sa == 1 && sb == 1);                    /* each shard has its own counters */
    CHECK_EQ(mkq(a, "jobs", 1), 0);
    CHECK_EQ(mkq(b, "jobs", 1), 0);
    CHECK_EQ(mkq(b, "only-b", 1), 0);
    int dl;
    CHECK_EQ(take(b, "jobs", 2, sb, 5, 0, &dl), 0);
    CHECK_EQ(dl, 0);                              /* b's reader waits */
    const char *m[] = { "for-a-1", "for-a-2", NULL };
    CHECK_EQ(push(a, "jobs", 3, m), 0);
    CHECK_EQ(b->ngot, 0);                         /* a's push reaches no reader of b */
    COUNTS(a, "jobs", 2, 0, 0);
    COUNTS(b, "jobs", 0, 0, 0);
    CHECK_EQ(push1(b, "jobs", 4, "for-b"), 0);
    CHECK_EQ(b->ngot, 1);                         /* b's effect went to b's hook only */
    CHECK(strcmp(b->got[0].msg, "for-b") == 0 && b->got[0].hid == 5);
    CHECK_EQ(a->ngot, 0);
    CHECK_EQ(take(a, "jobs", 5, sa, 1, QTAKE_CLAIM, &dl), 0);
    CHECK(a->ngot == 1 && strcmp(a->got[0].msg, "for-a-1") == 0);
    CHECK_EQ(a->got[0].id, 1);                    /* message ids count per shard */
    CHECK_EQ(b->got[0].id, 1);
    queue_view_t v;
    CHECK_EQ(queues_sm_get(a->st, "only-b", 6, &v), -ENOENT);
    /* ending a's session returns a's claim and touches nothing in b */
    CHECK_EQ(end_session(a, sa, 6), 0);
    COUNTS(a, "jobs", 2, 0, 0);
    CHECK(b->st->sessions.head && b->st->sessions.head->id == sb);
    done(a);
    done(b);
}

/* ---- determinism ---- */

static void build_log(shard_t *sh)
{
    uint64_t s1 = open_session(sh, 1);
    open_session(sh, 1);
    char name[32], msg[64];
    for (int q = 0; q < 5; q++) {
        snprintf(name, sizeof(name), "q%d", 4 - q);
        mkq(sh, name, 1);
        set(sh, name, QSET_VT, 5);
        for (int i = 0; i < 40; i++) {
            snprintf(msg, sizeof(msg), "message %d of %s", i, name);
            push1(sh, name, 10 + (uint64_t)i, msg);
        }
        for (int i = 0; i < 10; i++)
            take(sh, name, 100, s1, (uint64_t)(q * 100 + i + 1), i % 2 ? QTAKE_CLAIM : 0,
                 NULL);
    }
    expire(sh, "q3", 10000, 83);
    msg_op(sh, QOP_ACK, "q2", 200, 124);
    mkq(sh, "waiting", 1);
    take(sh, "waiting", 300, s1, 999, 0, NULL);
}

TEST(determinism_and_snapshot_round_trip)
{
    char d1[] = "/tmp/qfs-test-queues-XXXXXX", d2[] = "/tmp/qfs-test-queues-XXXXXX",
         d3[] = "/tmp/qfs-test-queues-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2) && mkdtemp(d3));
    shard_t *a = fresh(), *b = fresh(), *c = fresh();
    build_log(a);
    build_log(b);
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
    /* and the restored state behaves the same: the next pop of q0 gives the same message */
    a->ngot = c->ngot = 0;
    int dl;
    CHECK_EQ(take(a, "q0", 400, 1, 5000, 0, &dl), 0);
    CHECK_EQ(take(c, "q0", 400, 1, 5000, 0, &dl), 0);
    CHECK(a->ngot == 1 && c->ngot == 1);
    CHECK(strcmp(a->got[0].msg, c->got[0].msg) == 0 && a->got[0].id == c->got[0].id);
    /* the waiter survived the round trip: a push to "waiting" goes to it */
    c->ngot = 0;
    CHECK_EQ(push1(c, "waiting", 500, "hello"), 0);
    CHECK(c->ngot == 1 && c->got[0].hid == 999);
    free(sa);
    free(sb);
    free(sc);
    done(a);
    done(b);
    done(c);
    char cmdline[200];
    snprintf(cmdline, sizeof(cmdline), "rm -rf %s %s %s", d1, d2, d3);
    CHECK_EQ(system(cmdline), 0);
}

/* Offsets in a queue's snapshot record after its name (docs/QUEUES.md "Snapshot
 * section"), and in its message records (I_: in flight), for messages of 2 bytes. */
enum {
    Q_MTIME = 8, Q_VT = 16, Q_READY = 32, Q_MSG1 = 40, MSG_LEN = 18, INFLIGHT_LEN = 34,
    M_ID = 0, M_COUNT = 8, M_LEN = 12, I_SID = 12, I_EXPIRES = 20,
    W_SID = 0, W_HID = 8,
};

/* Edits of a valid snapshot that break one invariant each: restore rejects every one with
 * -QERR_CORRUPT and a log line naming it, and leaves an empty, valid shard (the invariant
 * checks, which would abort on such a state, pass). The unedited bytes restore. */
TEST(restore_rejects_broken_queues)
{
    char d1[] = "/tmp/qfs-test-queues-XXXXXX", d2[] = "/tmp/qfs-test-queues-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2));
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1000);
    const char *msgs[] = { "m1", "m2", "m3", NULL };
    CHECK_EQ(mkq(sh, "victim", 1000), 0);
    CHECK_EQ(push(sh, "victim", 1000, msgs), 0);                   /* ids 1, 2, 3 */
    CHECK_EQ(take(sh, "victim", 2000, s, 5, QTAKE_CLAIM, NULL), 0); /* 1 leased to 32000 */
    CHECK_EQ(mkq(sh, "wq", 1000), 0);
    CHECK_EQ(take(sh, "wq", 2000, s, 9, 0, NULL), 0);               /* a waiter */
    size_t n = 0;
    uint8_t *raw = raw_snapshot(sh->st, d1, &n);
    CHECK(raw != NULL);
    size_t v = raw_after_name(raw, n, "victim"), w = raw_after_name(raw, n, "wq");
    CHECK(v && w);
    size_t m2 = v + Q_MSG1, m3 = m2 + MSG_LEN, m1 = m3 + MSG_LEN + 8;   /* m1 in flight */
    size_t wt = w + Q_READY + 3 * 8 + 4;                                /* wq's waiter */
    CHECK_EQ(raw_get64(raw + m2 + M_ID), 2);                       /* the offsets are right */
    CHECK_EQ(raw_get64(raw + m1 + M_ID), 1);
    CHECK_EQ(raw_get64(raw + m1 + I_EXPIRES), 32000);
    CHECK_EQ(raw_get64(raw + wt + W_HID), 9);
    const raw_edit_t edits[] = {
        { m1 + I_EXPIRES, 8, 0, "a claim without a lease end" },
        { m1 + I_EXPIRES, 8, 2001 + (uint64_t)QUEUE_VT_MAX * 1000, "past the longest timeout" },
        { m1 + I_SID, 8, s + 1, "a claim of a session that is not live" },
        { m3 + M_ID, 8, 4, "above the ids handed out" },
        { m3 + M_ID, 8, 0, "a message id of 0" },
        { m3 + M_ID, 8, 2, "a message id held twice" },
        { m3 + M_LEN, 4, 0, "a message of no bytes" },
        { v + Q_VT, 4, 0, "a visibility timeout, max_deliveries or max_length out of range" },
        { v + Q_VT, 4, QUEUE_VT_MAX + 1, "a visibility timeout" },
        { v + Q_MTIME, 8, 999, "changed before it was made" },
        { v + Q_MTIME, 8, 2001, "at a time to come" },
        { wt + W_HID, 8, 0, "a waiter without a handle" },
        { wt + W_SID, 8, s + 1, "of a session that is not live" },
    };
    CHECK_EQ(raw_all_rejected(raw, n, edits, sizeof(edits) / sizeof(edits[0]), d2, "queues"),
             -1);
    char log[1024];
    uint8_t *p = malloc(n);
    /* the longest lease is fine */
    memcpy(p, raw, n);
    raw_put64(p + m1 + I_EXPIRES, 2000 + (uint64_t)QUEUE_VT_MAX * 1000);
    state_t *dst = state_new(1 << 20);
    CHECK_EQ(restore_raw(dst, d2, p, n, log, sizeof(log)), 0);
    /* the unedited bytes restore, to the same state */
    CHECK_EQ(restore_raw(dst, d2, raw, n, log, sizeof(log)), 0);
    CHECK_EQ(log[0], 0);
    queue_view_t qv;
    CHECK_EQ(queues_sm_get(dst, "victim", 6, &qv), 0);
    CHECK(qv.ready == 2 && qv.inflight == 1);
    CHECK_EQ(queues_sm_get(dst, "wq", 2, &qv), 0);
    CHECK_EQ(qv.waiters, 1);
    state_free(dst);
    free(p);
    free(raw);
    done(sh);
    CHECK_EQ(raw_rmdirs(d1, d2), 0);
}

/* A node that learns a hand-over inside a snapshot it installs gets it from the restore
 * (docs/QUEUES.md "Hand-overs kept"): a pop's message (gone from the queue), a claim's, and
 * a removed queue's notice go out again, marked again, then EFF_RESTORED. A TAKE or CANCEL
 * reporting `seen` drops what its session collected; a session's end drops the rest. Raw
 * edits of a kept hand-over are refused. */
TEST(kept_hand_overs_go_out_again_after_restore)
{
    char d1[] = "/tmp/qfs-test-queues-XXXXXX", d2[] = "/tmp/qfs-test-queues-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2));
    shard_t *a = fresh();
    uint64_t s = open_session(a, 1000), t = open_session(a, 1000);
    CHECK(mkq(a, "p", 1000) == 0 && mkq(a, "c", 1000) == 0 && mkq(a, "kq", 1000) == 0);
    CHECK_EQ(take(a, "p", 1000, s, 1, 0, NULL), 0);              /* waiting pop */
    CHECK_EQ(take(a, "c", 1000, s, 2, QTAKE_CLAIM, NULL), 0);    /* waiting claim */
    CHECK_EQ(take(a, "kq", 1000, s, 3, 0, NULL), 0);             /* waits on a queue removed */
    CHECK_EQ(push1(a, "p", 1100, "mp"), 0);
    CHECK_EQ(push1(a, "c", 1100, "mc"), 0);
    CHECK_EQ(rmq(a, "kq", 1), 0);
    CHECK_EQ(push1(a, "p", 1200, "other"), 0);
    int dl;
    CHECK_EQ(take(a, "p", 1200, t, 9, 0, &dl), 0);               /* t's, collected at once */
    CHECK(dl == 1 && a->ngot == 4);
    queue_view_t v;
    CHECK(queues_sm_get(a->st, "p", 1, &v) == 0 && v.ready == 0);   /* the pops left */

    /* a restored replica hands the four out again, then says it was restored */
    size_t n = 0;
    uint8_t *raw = raw_snapshot(a->st, d1, &n);
    CHECK(raw != NULL);
    shard_t *b = fresh();
    CHECK_EQ(restore_dir(b->st, d1), 0);
    ns_sm_check(b->st);
    CHECK(b->ngot == 4 && b->restored == 1);
    for (int i = 0; i < b->ngot; i++)
        CHECK(b->got[i].again && b->got[i].seq == a->got[i].seq &&
              b->got[i].sid == a->got[i].sid && b->got[i].hid == a->got[i].hid);
    CHECK(strcmp(b->got[0].msg, "mp") == 0 && !b->got[0].claim);
    CHECK(strcmp(b->got[1].msg, "mc") == 0 && b->got[1].claim && b->got[1].id);
    CHECK(b->got[2].gone && !b->got[2].ended && b->got[2].hid == 3);
    CHECK(b->got[3].sid == t && b->got[3].hid == 9);

    /* raw edits of the kept hand-over of the removed queue (only it still names "kq") */
    size_t k = raw_after_name(raw, n, "kq");
    CHECK(k > 32);
    size_t ks = k - 2 - 4 - 24;          /* seq, sid, hid, then the name's length and bytes */
    CHECK_EQ(raw_get64(raw + ks + 16), 3);
    const raw_edit_t edits[] = {
        { ks + 8, 8, s + t, "a kept hand-over without a handle, of an unknown kind, or of a "
                            "session that is not live" },
        { ks + 16, 8, 0, "a kept hand-over without a handle" },
        { ks, 8, 1000, "numbered past the last one" },
        { ks, 8, 1, "kept hand-overs out of order" },
        { k + 8, 8, 77, "a kept hand-over whose message does not fit its kind" },
        { k, 8, 77, "a message or queue id above the ids handed out" },
    };
    CHECK_EQ(raw_all_rejected(raw, n, edits, sizeof(edits) / sizeof(edits[0]), d2, "queues"),
             -1);
    free(raw);

    /* a take needs a handle; a cancel of handle 0 only reports seen (and needs it) */
    cmdbuf_t cb;
    queues_cmd_take(&cb, 1300, "p", s, 0, 0, 0, 0);
    CHECK_EQ(run(a, &cb, NULL), -EINVAL);
    queues_cmd_cancel(&cb, 1300, "", s, 0, 0, 0);
    CHECK_EQ(run(a, &cb, NULL), -EINVAL);
    CHECK_EQ(queues_sm_kept(a->st, s, UINT64_MAX), 3);
    /* s reports seen up to the pop's number (a report alone), then up to the claim's: the
     * pop's and the claim's are dropped */
    queues_cmd_cancel(&cb, 1300, "", s, 0, a->got[0].seq, 0);
    CHECK_EQ(run(a, &cb, NULL), 0);
    CHECK_EQ(queues_sm_kept(a->st, s, UINT64_MAX), 2);
    queues_cmd_cancel(&cb, 1300, "p", s, 77, a->got[1].seq, 0);
    CHECK_EQ(run(a, &cb, NULL), 0);
    CHECK_EQ(queues_sm_kept(a->st, s, UINT64_MAX), 1);
    /* t's TAKE reports all: its own is dropped */
    queues_cmd_take(&cb, 1300, "p", t, 10, QTAKE_NOWAIT, a->got[3].seq, 0);
    CHECK_EQ(run(a, &cb, NULL), -EAGAIN);
    shard_t *c = fresh();
    char *snap;
    free(snap = snap_bytes(a->st, d1, &n));
    CHECK(snap != NULL);
    CHECK_EQ(restore_dir(c->st, d1), 0);
    CHECK(c->ngot == 1 && c->got[0].hid == 3 && c->got[0].gone && c->restored == 1);
    /* a session that ends with a pop handed to it and not reported collected gets it put
     * back at the head of its queue (its node may never have received it); one reported
     * is not */
    uint64_t u = open_session(a, 1300);
    CHECK_EQ(mkq(a, "rq", 1300), 0);
    CHECK_EQ(take(a, "rq", 1300, u, 5, 0, NULL), 0);
    CHECK_EQ(take(a, "rq", 1300, u, 6, 0, NULL), 0);
    const char *two[] = { "r1", "r2", NULL };
    CHECK_EQ(push(a, "rq", 1310, two), 0);                      /* r1 to 5, r2 to 6 */
    uint64_t r1seq = a->got[a->ngot - 2].seq;
    queues_cmd_cancel(&cb, 1320, "", u, 0, r1seq, 0);           /* u collected r1 only */
    CHECK_EQ(run(a, &cb, NULL), 0);
    CHECK_EQ(push1(a, "rq", 1330, "r3"), 0);
    CHECK_EQ(end_session(a, u, 1400), 0);
    queue_view_t rv;
    CHECK(queues_sm_get(a->st, "rq", 2, &rv) == 0 && rv.ready == 2);
    CHECK(rv.head && rv.head->len == 2 && memcmp(rv.head->data, "r2", 2) == 0);
    /* s's end drops the rest (a removed queue's notice: nothing to put back) */
    CHECK_EQ(end_session(a, s, 1400), 0);
    shard_t *e = fresh();
    free(snap = snap_bytes(a->st, d1, &n));
    CHECK(snap != NULL);
    CHECK_EQ(restore_dir(e->st, d1), 0);
    CHECK(e->ngot == 0 && e->restored == 1);
    done(a);
    done(b);
    done(c);
    done(e);
    CHECK_EQ(raw_rmdirs(d1, d2), 0);
}

/* A file opened on a queue names its id too: once that queue is removed and another made
 * under the same name, its PUSH and TAKE fail (ENOENT) and its CANCEL removes nothing,
 * instead of landing in the new queue. Without an id (older commands) the name decides. */
TEST(commands_naming_a_removed_queue_id_miss_the_new_queue)
{
    shard_t *sh = fresh();
    uint64_t s = open_session(sh, 1);
    queue_view_t v;
    CHECK_EQ(mkq(sh, "r", 1), 0);
    CHECK_EQ(queues_sm_get(sh->st, "r", 1, &v), 0);
    uint64_t old = v.qid;
    CHECK_EQ(rmq(sh, "r", 0), 0);
    CHECK_EQ(mkq(sh, "r", 2), 0);
    CHECK_EQ(queues_sm_get(sh->st, "r", 1, &v), 0);
    CHECK(v.qid != old);
    cmdbuf_t b;
    for (int i = 0; i < 3; i++) {     /* the old id, the new one, none */
        uint64_t id = i == 0 ? old : i == 1 ? v.qid : 0;
        queues_cmd_push(&b, 3, "r");
        queues_cmd_push_add(&b, "m", 1);
        queues_cmd_push_end(&b, id);
        CHECK_EQ(run(sh, &b, NULL), i == 0 ? -ENOENT : 0);
    }
    queue_view_t now;
    CHECK(queues_sm_get(sh->st, "r", 1, &now) == 0 && now.ready == 2);
    queues_cmd_take(&b, 4, "r", s, 1, 0, 0, old);
    CHECK_EQ(run(sh, &b, NULL), -ENOENT);
    queues_cmd_take(&b, 4, "r", s, 2, 0, 0, v.qid);
    CHECK_EQ(run(sh, &b, NULL), 0);
    CHECK(queues_sm_get(sh->st, "r", 1, &now) == 0 && now.ready == 1);
    /* a waiter of the new queue is not cancelled through the old id */
    CHECK_EQ(take(sh, "r", 5, s, 3, 0, NULL), 0);
    CHECK_EQ(take(sh, "r", 5, s, 4, 0, NULL), 0);    /* waits */
    sm_result_t res;
    queues_cmd_cancel(&b, 6, "r", s, 4, 0, old);
    CHECK(run(sh, &b, &res) == 0 && res.data[0] == 0);
    queues_cmd_cancel(&b, 6, "r", s, 4, 0, v.qid);
    CHECK(run(sh, &b, &res) == 0 && res.data[0] == 1);
    /* a trailing field cut short is malformed */
    queues_cmd_push(&b, 3, "r");
    queues_cmd_push_add(&b, "m", 1);
    queues_cmd_push_end(&b, v.qid);
    b.len -= 3;
    CHECK_EQ(run(sh, &b, NULL), -EINVAL);
    done(sh);
}

int main(void)
{
    RUN(push_pop_fifo);
    RUN(waiters_are_served_in_order_and_cancel);
    RUN(claim_ack_extend_expire_dead);
    RUN(unpop_and_return_go_to_the_head);
    RUN(returns_in_separate_sweeps_keep_push_order);
    RUN(session_end_drops_waiters_and_returns_claims);
    RUN(max_length_is_all_or_nothing);
    RUN(rmdir_needs_empty_unless_forced);
    RUN(malformed_commands_are_rejected);
    RUN(read_api_walks_in_list_order);
    RUN(two_shards_in_one_process_are_independent);
    RUN(determinism_and_snapshot_round_trip);
    RUN(restore_rejects_broken_queues);
    RUN(kept_hand_overs_go_out_again_after_restore);
    RUN(commands_naming_a_removed_queue_id_miss_the_new_queue);
    return CHECK_DONE();
}
