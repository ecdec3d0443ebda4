/* fs/queues_sm.c — the queues/ state machine (see queues_sm.h, docs/QUEUES.md). Queues live
 * in a named-object table (fs/ntable.h, creation order); every message, wherever it is, is
 * in the by_id hash (ids are unique) and in exactly one list of its queue: ready (FIFO),
 * in flight (claim order) or dead. Waiters are a FIFO per queue. Apply hands messages to
 * waiters first (a queue never has both) and records each hand-over as an effect.
 *
 * Determinism: every walk that reaches applied state, an effect or a snapshot follows the
 * lists (creation, FIFO or claim order), never a hash. Out of memory aborts (x* allocators,
 * blob_xnew); a command is validated whole before it changes anything. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "fs/names.h"
#include "fs/ntable.h"
#include "fs/queues_sm.h"
#include "fs/session_sm.h"

/* 3: a kept hand-over names its queue's id too; 2 (still read): kept hand-overs after the
 * queues, without it; 1 (still read): none. */
#define QSNAP_VERSION 3

typedef struct qmsg {
    uint64_t id;
    uint32_t count;              /* leases that ended without an acknowledgement */
    uint8_t where;               /* enum qwhere: the list it is in */
    uint64_t sid, expires_ms;    /* QM_INFLIGHT: claiming session and lease end */
    blob_t *data;
    struct queue *q;
    struct qmsg *prev, *next;    /* in the list of its place */
    UT_hash_handle hh;           /* qstate.by_id */
} qmsg_t;

typedef struct qlist {
    qmsg_t *head, *tail;
    uint64_t n;
} qlist_t;

typedef struct qwaiter {
    uint64_t sid, hid;
    uint8_t claim;
    struct qwaiter *next;
} qwaiter_t;

typedef struct queue {
    nentry_t ent;                /* name, qid (ent.id), creation order */
    uint64_t ctime_ms, mtime_ms;
    uint32_t vt_s, maxdel;
    uint64_t maxlen;
    qlist_t lists[3];            /* indexed by where - 1 */
    qwaiter_t *wh, *wt;          /* waiting readers, FIFO */
} queue_t;

/* A hand-over kept until the session it went to has collected it (docs/QUEUES.md
 * "Hand-overs kept"): a node that learns the handing-over entry inside a snapshot it
 * installs never sees its effect, and for a pop the message has left the queue, so restore
 * hands the kept ones out again. */
typedef struct qkept {
    uint64_t seq, sid, hid;      /* seq: the shard's hand-over number, growing */
    char *qname;
    uint64_t qid;                /* the queue's id (0: read from a version 2 snapshot) */
    uint64_t id;                 /* the message (0 when gone) */
    uint32_t count;
    uint8_t claim, gone;         /* gone: the queue was removed; no message */
    blob_t *data;                /* NULL when gone */
    struct qkept *next;
} qkept_t;

typedef struct qstate {
    ntable_t queues;
    qmsg_t *by_id;
    uint64_t next_qid, next_msg;
    qkept_t *kh, *kt;            /* kept hand-overs, in seq order */
    uint64_t next_seq;           /* the last seq handed out */
} qstate_t;

static qstate_t *QS(const state_t *st) { return st->ns_state[NS_QUEUES]; }

static qlist_t *list_of(queue_t *q, int where)
{
    ASSERT(where >= QM_READY && where <= QM_DEAD);
    return &q->lists[where - 1];
}

static queue_t *queue_of(nentry_t *e) { return e ? NTABLE_OBJ(e, queue_t, ent) : NULL; }

static queue_t *find_queue(const qstate_t *qs, const char *name, size_t len)
{
    return queue_of(ntable_find(&qs->queues, name, len));
}

static queue_t *find_qid(const qstate_t *qs, uint64_t qid)
{
    return queue_of(ntable_find_id(&qs->queues, qid));
}

static qmsg_t *find_msg(const qstate_t *qs, uint64_t id)
{
    qmsg_t *m, *head = qs->by_id;
    HASH_FIND(hh, head, &id, sizeof(id), m);
    return m;
}

/* ---------------------------------------------------------------- messages and places */

/* Puts m (in no list) in place where of its queue, at the tail, or, when at_head (a message
 * that comes back), at the front but in its original order among the messages before the
 * first later one: ids grow in push order, so returned messages keep the order they were
 * pushed in however many sweeps or session ends returned them. */
static void place(queue_t *q, qmsg_t *m, int where, int at_head)
{
    qlist_t *l = list_of(q, where);
    m->where = (uint8_t)where;
    if (at_head) {
        qmsg_t *after = NULL, *before = l->head;
        while (before && before->id < m->id) {
            after = before;
            before = before->next;
        }
        m->prev = after;
        m->next = before;
        if (after)
            after->next = m;
        else
            l->head = m;
        if (before)
            before->prev = m;
        else
            l->tail = m;
    } else {
        m->next = NULL;
        m->prev = l->tail;
        if (l->tail)
            l->tail->next = m;
        else
            l->head = m;
        l->tail = m;
    }
    l->n++;
}

/* Takes m out of the list of its place (it stays in by_id). */
static void unplace(qmsg_t *m)
{
    qlist_t *l = list_of(m->q, m->where);
    if (m->prev)
        m->prev->next = m->next;
    else
        l->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        l->tail = m->prev;
    m->prev = m->next = NULL;
    m->where = 0;
    l->n--;
}

/* A new message of q (in no list yet), indexed by id. */
static qmsg_t *msg_new(qstate_t *qs, queue_t *q, uint64_t id, uint32_t count, blob_t *data)
{
    qmsg_t *m = xcalloc(1, sizeof(*m));
    m->id = id;
    m->count = count;
    m->data = data;
    m->q = q;
    HASH_ADD(hh, qs->by_id, id, sizeof(m->id), m);
    return m;
}

/* Deletes m: out of its list, out of by_id, freed. */
static void msg_del(qstate_t *qs, qmsg_t *m)
{
    if (m->where)
        unplace(m);
    HASH_DELETE(hh, qs->by_id, m);
    blob_unref(m->data);
    free(m);
}

/* ---------------------------------------------------------------- hand-overs */

/* The effect that tells waiter (k->sid, k->hid) of hand-over k; again: a redelivery. */
static void kept_effect(effects_t *fx, const qkept_t *k, uint8_t again)
{
    effect_t *e = effects_add(fx, EFF_QUEUE_MSG, NS_QUEUES, k->sid, k->hid);
    e->u.qmsg.claim = k->claim;
    e->u.qmsg.gone = k->gone;
    e->u.qmsg.again = again;
    e->u.qmsg.seq = k->seq;
    e->u.qmsg.qname = xstrdup(k->qname);
    e->u.qmsg.id = k->id;
    e->u.qmsg.count = k->count;
    e->u.qmsg.msg = k->data ? blob_ref(k->data) : NULL;
}

static void kept_free(qkept_t *k)
{
    free(k->qname);
    blob_unref(k->data);
    free(k);
}

static void kept_append(qstate_t *qs, qkept_t *k)
{
    if (qs->kt)
        qs->kt->next = k;
    else
        qs->kh = k;
    qs->kt = k;
}

/* Drops the hand-overs to session sid numbered up to seen (all of sid's: UINT64_MAX). */
static void kept_drop(qstate_t *qs, uint64_t sid, uint64_t seen)
{
    qkept_t **pp = &qs->kh, *prev = NULL;
    while (*pp) {
        qkept_t *k = *pp;
        if (k->sid == sid && k->seq <= seen) {
            *pp = k->next;
            if (qs->kt == k)
                qs->kt = prev;
            kept_free(k);
        } else {
            prev = k;
            pp = &k->next;
        }
    }
}

/* Hands m (NULL: the queue is gone) to waiter (sid, hid) of q: kept until collected, and
 * an effect. */
static void hand_over(qstate_t *qs, effects_t *fx, queue_t *q, uint64_t sid, uint64_t hid,
                      uint8_t claim, const qmsg_t *m)
{
    qkept_t *k = xcalloc(1, sizeof(*k));
    k->seq = ++qs->next_seq;
    k->sid = sid;
    k->hid = hid;
    k->qname = xstrdup(q->ent.name);
    k->qid = q->ent.id;
    k->claim = claim;
    if (m) {
        k->id = m->id;
        k->count = m->count;
        k->data = blob_ref(m->data);
    } else {
        k->gone = 1;
    }
    kept_append(qs, k);
    kept_effect(fx, k, 0);
}

/* Pollers of pop and claim (poll(2)) wait for a queue without ready messages to get one, or
 * to be removed: EFF_QUEUE_READY, an effect to nobody, says so. note_ready emits it when q
 * has ready messages now and had none before the command (had = ready_now before it). */
static int ready_now(const queue_t *q) { return q->lists[QM_READY - 1].head != NULL; }

static void note_ready(effects_t *fx, const queue_t *q, int had)
{
    if (!had && ready_now(q))
        effects_add(fx, EFF_QUEUE_READY, NS_QUEUES, 0, 0)->u.qready.qid = q->ent.id;
}

/* Gives m (in no list) to reader (sid, hid): leased to it until now + vt for a claim,
 * deleted for a pop. */
static void give(qstate_t *qs, queue_t *q, qmsg_t *m, uint64_t sid, uint64_t hid,
                 uint8_t claim, uint64_t now, effects_t *fx)
{
    hand_over(qs, fx, q, sid, hid, claim, m);
    if (!claim) {
        msg_del(qs, m);
        return;
    }
    m->sid = sid;
    m->expires_ms = now + (uint64_t)q->vt_s * 1000;
    place(q, m, QM_INFLIGHT, 0);
}

/* Gives m (in no list) to the first waiter, or makes it ready (at the head when at_head: a
 * message that comes back keeps its place in front). */
static void offer(qstate_t *qs, queue_t *q, qmsg_t *m, int at_head, uint64_t now,
                  effects_t *fx)
{
    qwaiter_t *w = q->wh;
    if (!w) {
        place(q, m, QM_READY, at_head);
        return;
    }
    q->wh = w->next;
    if (!q->wh)
        q->wt = NULL;
    give(qs, q, m, w->sid, w->hid, w->claim, now, fx);
    free(w);
}

/* Hands ready messages from the head to waiting readers while both exist. */
static void serve_waiters(qstate_t *qs, queue_t *q, uint64_t now, effects_t *fx)
{
    while (q->wh && list_of(q, QM_READY)->head) {
        qmsg_t *m = list_of(q, QM_READY)->head;
        unplace(m);
        offer(qs, q, m, 1, now, fx);
    }
}

/* A lease ended without an acknowledgement (expiry or session end): m (in flight) goes back
 * to the head of the ready list with its count plus one, or to dead/ at max_deliveries.
 * Waiters are served by the caller (serve_waiters) once a whole batch is back in order. */
static void lease_ended(queue_t *q, qmsg_t *m)
{
    unplace(m);
    m->count++;
    m->sid = m->expires_ms = 0;
    if (m->count >= q->maxdel)
        place(q, m, QM_DEAD, 0);
    else
        place(q, m, QM_READY, 1);
}

/* Removes waiters of session sid from q: the one with handle hid, or all of sid when hid is
 * 0. Returns how many. */
static int drop_waiters(queue_t *q, uint64_t sid, uint64_t hid)
{
    int n = 0;
    qwaiter_t **pp = &q->wh, *prev = NULL;
    while (*pp) {
        qwaiter_t *w = *pp;
        if (w->sid == sid && (!hid || w->hid == hid)) {
            *pp = w->next;
            if (q->wt == w)
                q->wt = prev;
            free(w);
            n++;
        } else {
            prev = w;
            pp = &w->next;
        }
    }
    return n;
}

static const qwaiter_t *find_waiter(const queue_t *q, uint64_t sid, uint64_t hid)
{
    for (const qwaiter_t *w = q->wh; w; w = w->next)
        if (w->sid == sid && w->hid == hid)
            return w;
    return NULL;
}

static void add_waiter(queue_t *q, uint64_t sid, uint64_t hid, uint8_t claim)
{
    qwaiter_t *w = xcalloc(1, sizeof(*w));
    w->sid = sid;
    w->hid = hid;
    w->claim = claim;
    if (q->wt)
        q->wt->next = w;
    else
        q->wh = w;
    q->wt = w;
}

/* ---------------------------------------------------------------- queues */

static queue_t *queue_add(qstate_t *qs, const char *name, size_t len, uint64_t qid)
{
    queue_t *q = xcalloc(1, sizeof(*q));
    ntable_add(&qs->queues, &q->ent, name, len, qid);
    q->vt_s = QUEUE_VT_DEFAULT;
    q->maxdel = QUEUE_MAXDEL_DEFAULT;
    return q;
}

/* Removes q with its messages; its waiters learn that it is gone when fx is not NULL. */
static void queue_del(qstate_t *qs, queue_t *q, effects_t *fx)
{
    for (int where = QM_READY; where <= QM_DEAD; where++)
        while (list_of(q, where)->head)
            msg_del(qs, list_of(q, where)->head);
    for (qwaiter_t *w = q->wh, *n; w; w = n) {
        n = w->next;
        if (fx)
            hand_over(qs, fx, q, w->sid, w->hid, w->claim, NULL);
        free(w);
    }
    if (fx)
        effects_add(fx, EFF_QUEUE_READY, NS_QUEUES, 0, 0)->u.qready.qid = q->ent.id;
    ntable_del(&qs->queues, &q->ent);
    free(q);
}

static void q_init_state(state_t *st)
{
    st->ns_state[NS_QUEUES] = xcalloc(1, sizeof(qstate_t));
}

static void q_free_state(state_t *st)
{
    qstate_t *qs = QS(st);
    if (!qs)
        return;
    while (qs->queues.head)
        queue_del(qs, queue_of(qs->queues.head), NULL);
    for (qkept_t *k = qs->kh, *n; k; k = n) {
        n = k->next;
        kept_free(k);
    }
    free(qs);
    st->ns_state[NS_QUEUES] = NULL;
}

/* ---------------------------------------------------------------- apply */

/* Reads the queue name field and finds the queue (NULL also on a decoding error). */
static queue_t *arg_queue(const qstate_t *qs, cmdrd_t *r)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    if (r->err || len == 0)
        return NULL;
    return find_queue(qs, name, len);
}

static void result_u64(sm_result_t *res, uint64_t v)
{
    if (res) {
        memcpy(res->data, &v, 8);
        res->len = 8;
    }
}

static void result_u8(sm_result_t *res, uint8_t v)
{
    if (res) {
        res->data[0] = v;
        res->len = 1;
    }
}

static int apply_mkdir(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    if (r->err || names_check(name, len, 0) < 0)
        return -EINVAL;
    if (find_queue(qs, name, len))
        return -EEXIST;
    queue_t *q = queue_add(qs, name, len, ++qs->next_qid);
    q->ctime_ms = q->mtime_ms = h->now_ms;
    result_u64(res, q->ent.id);
    return 0;
}

static int apply_rmdir(qstate_t *qs, cmdrd_t *r, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint8_t force = cmd_get_u8(r);
    if (r->err)
        return -EINVAL;
    if (!q)
        return -ENOENT;
    if (!force && (q->lists[0].n || q->lists[1].n || q->lists[2].n))
        return -ENOTEMPTY;
    queue_del(qs, q, fx);
    return 0;
}

static int apply_set(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r)
{
    queue_t *q = arg_queue(qs, r);
    uint8_t which = cmd_get_u8(r);
    uint64_t v = cmd_get_u64(r);
    if (r->err)
        return -EINVAL;
    if (!q)
        return -ENOENT;
    switch (which) {
    case QSET_VT:
        if (v < 1 || v > QUEUE_VT_MAX)
            return -EINVAL;
        q->vt_s = (uint32_t)v;
        break;
    case QSET_MAXDEL:
        if (v < 1 || v > QUEUE_MAXDEL_MAX)
            return -EINVAL;
        q->maxdel = (uint32_t)v;
        break;
    case QSET_MAXLEN:
        if (v > QUEUE_MAXLEN_MAX)
            return -EINVAL;
        q->maxlen = v;
        break;
    default:
        return -EINVAL;
    }
    q->mtime_ms = h->now_ms;
    return 0;
}

/* An optional last u64 field (commands written before it existed end without it: 0). */
static uint64_t arg_opt(cmdrd_t *r)
{
    return r->off < r->len ? cmd_get_u64(r) : 0;
}

/* The queue a command names, unless it also names a queue id (PUSH, TAKE and CANCEL of a
 * file opened on that queue) that is not this queue's: the queue the file was opened on
 * was removed, and one of the same name made since is another queue. */
static queue_t *same_queue(queue_t *q, uint64_t qid)
{
    return q && (!qid || q->ent.id == qid) ? q : NULL;
}

static int apply_push(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint32_t n = cmd_get_u32(r);
    if (r->err)
        return -EINVAL;
    /* Validate the whole batch first: a command is applied all or nothing. */
    size_t save = r->off;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len = cmd_get_bytes(r, &p);
        if (r->err || len == 0)
            return -EINVAL;
        if (len > QUEUE_MSG_MAX)
            return -EFBIG;
    }
    q = same_queue(q, arg_opt(r));
    if (r->err)
        return -EINVAL;
    if (!q)
        return -ENOENT;
    if (q->maxlen && q->lists[0].n + q->lists[1].n + n > q->maxlen)
        return -ENOSPC;
    r->off = save;
    int had = ready_now(q);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len = cmd_get_bytes(r, &p);
        qmsg_t *m = msg_new(qs, q, ++qs->next_msg, 0, blob_xnew(p, len));
        offer(qs, q, m, 0, h->now_ms, fx);
    }
    q->mtime_ms = h->now_ms;
    note_ready(fx, q, had);
    return 0;
}

static int apply_take(const state_t *st, qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r,
                      sm_result_t *res, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint64_t sid = cmd_get_u64(r), hid = cmd_get_u64(r);
    uint8_t flags = cmd_get_u8(r);
    /* then, optional: `seen` (the session collected every hand-over to it numbered up to
     * it) and the queue id */
    uint64_t seen = arg_opt(r);
    q = same_queue(q, arg_opt(r));
    if (r->err || !hid)
        return -EINVAL;
    if (!session_find(&st->sessions, sid))
        return -ENOLCK;           /* ended (or never opened): nobody would collect it */
    kept_drop(qs, sid, seen);
    if (!q)
        return -ENOENT;
    uint8_t claim = (flags & QTAKE_CLAIM) ? 1 : 0;
    qmsg_t *m = list_of(q, QM_READY)->head;
    if (m) {
        unplace(m);
        give(qs, q, m, sid, hid, claim, h->now_ms, fx);
        result_u8(res, 1);
        return 0;
    }
    if (flags & QTAKE_NOWAIT)
        return -EAGAIN;
    result_u8(res, 0);
    if (!find_waiter(q, sid, hid))    /* a repeated take is not registered twice */
        add_waiter(q, sid, hid, claim);
    return 0;
}

static int apply_cancel(qstate_t *qs, cmdrd_t *r, sm_result_t *res)
{
    queue_t *q = arg_queue(qs, r);
    uint64_t sid = cmd_get_u64(r), hid = cmd_get_u64(r);
    uint64_t seen = arg_opt(r);   /* optional, as for TAKE */
    q = same_queue(q, arg_opt(r));
    if (r->err || (!hid && !seen))
        return -EINVAL;
    kept_drop(qs, sid, seen);
    if (!hid) {                   /* only a report of what the session collected */
        result_u8(res, 0);
        return 0;
    }
    result_u8(res, q && drop_waiters(q, sid, hid) ? 1 : 0);
    return 0;
}

static int apply_unpop(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint64_t id = cmd_get_u64(r);
    uint32_t count = cmd_get_u32(r);
    const uint8_t *p;
    size_t len = cmd_get_bytes(r, &p);
    if (r->err || len == 0 || len > QUEUE_MSG_MAX || id == 0 || id > qs->next_msg)
        return -EINVAL;
    if (!q)
        return -ENOENT;
    if (find_msg(qs, id))
        return -EEXIST;           /* given back already */
    int had = ready_now(q);
    offer(qs, q, msg_new(qs, q, id, count, blob_xnew(p, len)), 1, h->now_ms, fx);
    note_ready(fx, q, had);
    return 0;
}

static int apply_msg_op(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint64_t id = cmd_get_u64(r);
    if (r->err)
        return -EINVAL;
    qmsg_t *m = q ? find_msg(qs, id) : NULL;
    if (!m || m->q != q || m->where != (h->op == QOP_DEADRM ? QM_DEAD : QM_INFLIGHT))
        return -ENOENT;
    switch (h->op) {
    case QOP_ACK:
        msg_del(qs, m);
        q->mtime_ms = h->now_ms;
        return 0;
    case QOP_EXTEND:
        m->expires_ms = h->now_ms + (uint64_t)q->vt_s * 1000;
        return 0;
    case QOP_RETURN: {
        int had = ready_now(q);
        unplace(m);
        m->sid = m->expires_ms = 0;
        offer(qs, q, m, 1, h->now_ms, fx);
        note_ready(fx, q, had);
        return 0;
    }
    default: /* QOP_DEADRM */
        msg_del(qs, m);
        return 0;
    }
}

static int apply_expire(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint32_t n = cmd_get_u32(r);
    if (r->err || n > QUEUE_EXPIRE_MAX)
        return -EINVAL;
    uint64_t ids[QUEUE_EXPIRE_MAX];
    for (uint32_t i = 0; i < n; i++)
        ids[i] = cmd_get_u64(r);
    if (r->err)
        return -EINVAL;
    if (!q)
        return -ENOENT;
    /* Back to the head in reverse, so the batch keeps its order in front of the queue.
     * Each lease is judged at the command's time: a touch committed since wins. */
    int had = ready_now(q);
    for (uint32_t i = n; i-- > 0;) {
        qmsg_t *m = find_msg(qs, ids[i]);
        if (m && m->q == q && m->where == QM_INFLIGHT && m->expires_ms <= h->now_ms)
            lease_ended(q, m);
    }
    serve_waiters(qs, q, h->now_ms, fx);
    note_ready(fx, q, had);
    return 0;
}

static int q_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                   effects_t *fx)
{
    qstate_t *qs = QS(st);
    switch (h->op) {
    case QOP_MKDIR:
        return apply_mkdir(qs, h, r, res);
    case QOP_RMDIR:
        return apply_rmdir(qs, r, fx);
    case QOP_SET:
        return apply_set(qs, h, r);
    case QOP_PUSH:
        return apply_push(qs, h, r, fx);
    case QOP_TAKE:
        return apply_take(st, qs, h, r, res, fx);
    case QOP_CANCEL:
        return apply_cancel(qs, r, res);
    case QOP_UNPOP:
        return apply_unpop(qs, h, r, fx);
    case QOP_ACK:
    case QOP_EXTEND:
    case QOP_RETURN:
    case QOP_DEADRM:
        return apply_msg_op(qs, h, r, fx);
    case QOP_EXPIRE:
        return apply_expire(qs, h, r, fx);
    default:
        return -EINVAL;
    }
}

/* The pops handed to session sid that it has not reported collected go back to the head of
 * their queues (when the queue is still the same one and the message is not there
 * already): the session ended, so its node was stopped or cut off past its lease, and may
 * never have received them (it learns the hand-over only inside a snapshot, or not at
 * all). Readiness is noted for pollers; waiters are served by the caller. */
static void kept_requeue(qstate_t *qs, uint64_t sid, effects_t *fx)
{
    for (const qkept_t *k = qs->kh; k; k = k->next) {
        if (k->sid != sid || k->gone || k->claim)
            continue;
        queue_t *q = same_queue(find_queue(qs, k->qname, strlen(k->qname)), k->qid);
        if (!q || find_msg(qs, k->id))
            continue;
        int had = ready_now(q);
        place(q, msg_new(qs, q, k->id, k->count, blob_ref(k->data)), QM_READY, 1);
        note_ready(fx, q, had);
    }
}

/* A session ended: the pops handed to it and not reported collected go back to their
 * queues (kept_requeue), the hand-overs kept for it are dropped, its waiters are dropped
 * and its claims end as if their leases expired. */
static void q_session_end(state_t *st, uint64_t sid, uint64_t now_ms, effects_t *fx)
{
    qstate_t *qs = QS(st);
    kept_requeue(qs, sid, fx);
    kept_drop(qs, sid, UINT64_MAX);
    for (nentry_t *e = qs->queues.head; e; e = e->next) {
        queue_t *q = queue_of(e);
        /* each dropped waiter is told, so that the read parked on it ends (EIO) */
        for (const qwaiter_t *w = q->wh; w; w = w->next)
            if (w->sid == sid) {
                effect_t *x = effects_add(fx, EFF_QUEUE_MSG, NS_QUEUES, sid, w->hid);
                x->u.qmsg.claim = w->claim;
                x->u.qmsg.qname = xstrdup(q->ent.name);
                x->u.qmsg.gone = x->u.qmsg.ended = 1;
            }
        drop_waiters(q, sid, 0);
        /* In reverse, so that the claims keep their order at the head. */
        int had = ready_now(q);
        for (qmsg_t *m = list_of(q, QM_INFLIGHT)->tail, *p; m; m = p) {
            p = m->prev;
            if (m->sid == sid)
                lease_ended(q, m);
        }
        serve_waiters(qs, q, now_ms, fx);
        note_ready(fx, q, had);
    }
}

/* ---------------------------------------------------------------- snapshot */

/* Format: docs/QUEUES.md "Snapshot section". */
static void snap_list(snapout_t *o, const qlist_t *l, int inflight)
{
    so_u64(o, l->n);
    for (const qmsg_t *m = l->head; m; m = m->next) {
        so_u64(o, m->id);
        so_u32(o, m->count);
        if (inflight) {
            so_u64(o, m->sid);
            so_u64(o, m->expires_ms);
        }
        so_blob(o, m->data->data, m->data->len);
    }
}

/* The rest of a queue's record, after its key. */
static void snap_queue(void *arg, snapout_t *o, const nentry_t *e)
{
    const queue_t *q = NTABLE_OBJ(e, const queue_t, ent);
    so_u64(o, q->ctime_ms);
    so_u64(o, q->mtime_ms);
    so_u32(o, q->vt_s);
    so_u32(o, q->maxdel);
    so_u64(o, q->maxlen);
    for (int where = QM_READY; where <= QM_DEAD; where++)
        snap_list(o, &q->lists[where - 1], where == QM_INFLIGHT);
    uint32_t nw = 0;
    for (const qwaiter_t *w = q->wh; w; w = w->next)
        nw++;
    so_u32(o, nw);
    for (const qwaiter_t *w = q->wh; w; w = w->next) {
        so_u64(o, w->sid);
        so_u64(o, w->hid);
        so_u8(o, w->claim);
    }
}

static void q_snapshot(const state_t *st, snapout_t *o)
{
    const qstate_t *qs = QS(st);
    so_u32(o, QSNAP_VERSION);
    so_u64(o, qs->next_qid);
    so_u64(o, qs->next_msg);
    ntable_snapshot(o, &qs->queues, snap_queue, NULL);
    so_u64(o, qs->next_seq);
    uint64_t n = 0;
    for (const qkept_t *k = qs->kh; k; k = k->next)
        n++;
    so_u64(o, n);
    for (const qkept_t *k = qs->kh; k; k = k->next) {
        so_u64(o, k->seq);
        so_u64(o, k->sid);
        so_u64(o, k->hid);
        so_blob(o, k->qname, (uint32_t)strlen(k->qname));
        so_u64(o, k->qid);
        so_u64(o, k->id);
        so_u32(o, k->count);
        so_u8(o, k->claim);
        so_u8(o, k->gone);
        if (!k->gone)
            so_blob(o, k->data->data, k->data->len);
    }
}

/* Reads the kept hand-overs (version 2 on; the queue id from version 3). */
static int restore_kept(snapin_t *in, qstate_t *qs, uint32_t version)
{
    qs->next_seq = si_u64(in);
    uint64_t n = si_u64(in);
    for (uint64_t i = 0; i < n && !in->err; i++) {
        qkept_t *k = xcalloc(1, sizeof(*k));
        kept_append(qs, k);       /* freed with the state if what follows is refused */
        k->seq = si_u64(in);
        k->sid = si_u64(in);
        k->hid = si_u64(in);
        char name[NAME_MAX_BYTES + 1];
        if (si_str(in, name, sizeof(name)) < 0)
            return in->err ? in->err : si_corrupt(in, "queues: a kept hand-over's queue name");
        k->qname = xstrdup(name);
        k->qid = version >= 3 ? si_u64(in) : 0;
        k->id = si_u64(in);
        k->count = si_u32(in);
        k->claim = si_u8(in);
        k->gone = si_u8(in);
        if (in->err || k->gone)
            continue;
        uint32_t len = si_u32(in);
        if (in->err)
            break;
        if (len == 0 || len > QUEUE_MSG_MAX)
            return si_corrupt(in, "queues: a kept message of no bytes or over QUEUE_MSG_MAX");
        k->data = blob_xnew(NULL, len);
        si_bytes(in, k->data->data, len);
    }
    return in->err;
}

/* Reads one list of q into place where. What the index and the allocation need is checked
 * here; queues_sm_verify judges the rest with the whole section. */
static int restore_list(snapin_t *in, qstate_t *qs, queue_t *q, int where)
{
    uint64_t n = si_u64(in);
    for (uint64_t i = 0; i < n && !in->err; i++) {
        uint64_t id = si_u64(in);
        uint32_t count = si_u32(in);
        uint64_t sid = 0, exp = 0;
        if (where == QM_INFLIGHT) {
            sid = si_u64(in);
            exp = si_u64(in);
        }
        uint32_t len = si_u32(in);
        if (in->err)
            break;
        if (len == 0 || len > QUEUE_MSG_MAX)
            return si_corrupt(in, "queues: a message of no bytes or over QUEUE_MSG_MAX");
        if (find_msg(qs, id))
            return si_corrupt(in, "queues: a message id held twice");
        qmsg_t *m = msg_new(qs, q, id, count, blob_xnew(NULL, len));
        si_bytes(in, m->data->data, len);
        m->sid = sid;
        m->expires_ms = exp;
        place(q, m, where, 0);
    }
    return in->err;
}

/* Reads the rest of queue k's record and adds it (ntable_restore's fn; arg: the qstate). */
static int restore_queue(void *arg, snapin_t *in, const nkey_t *k)
{
    qstate_t *qs = arg;
    queue_t *q = queue_add(qs, k->name, k->len, k->id);
    q->ctime_ms = si_u64(in);
    q->mtime_ms = si_u64(in);
    q->vt_s = si_u32(in);
    q->maxdel = si_u32(in);
    q->maxlen = si_u64(in);
    for (int where = QM_READY; where <= QM_DEAD; where++) {
        int rc = restore_list(in, qs, q, where);
        if (rc < 0)
            return rc;
    }
    uint32_t nw = si_u32(in);
    for (uint32_t j = 0; j < nw && !in->err; j++) {
        uint64_t sid = si_u64(in), hid = si_u64(in);
        uint8_t claim = si_u8(in);
        if (!in->err)
            add_waiter(q, sid, hid, claim);
    }
    return in->err;
}

/* Reads the section, then rejects it (si_corrupt, naming the reason) unless it passes
 * queues_sm_verify: whatever restore accepts, queues_sm_check accepts too. The session
 * table is restored before. */
static int q_restore(state_t *st, snapin_t *in)
{
    qstate_t *qs = QS(st);
    uint32_t version = si_u32(in);
    if (in->err)
        return in->err;
    if (version < 1 || version > QSNAP_VERSION)
        return -QERR_FORMAT;
    qs->next_qid = si_u64(in);
    qs->next_msg = si_u64(in);
    int rc = ntable_restore(&qs->queues, in, qs->next_qid, "queues", restore_queue, qs);
    if (rc == 0 && version >= 2)
        rc = restore_kept(in, qs, version);
    if (rc < 0)
        return rc;
    const char *why = queues_sm_verify(st);
    if (why)
        return si_corrupt(in, why);
    /* What this node's parked reads wait for may be in the entries the snapshot replaced:
     * the kept hand-overs go out again, then the front re-checks the rest (fs/state.c
     * delivers these after the lock). */
    for (const qkept_t *k = qs->kh; k; k = k->next)
        kept_effect(&st->outbox, k, 1);
    effects_add(&st->outbox, EFF_RESTORED, NS_QUEUES, 0, 0);
    return 0;
}

/* ---------------------------------------------------------------- invariants */

/* The first broken invariant of the list of q in place where, or NULL. */
static const char *verify_list(const state_t *st, const qstate_t *qs, queue_t *q, int where)
{
    const qlist_t *l = list_of(q, where);
    const uint64_t span = (uint64_t)QUEUE_VT_MAX * 1000;
    uint64_t n = 0;
    const qmsg_t *prev = NULL;
    for (const qmsg_t *m = l->head; m; prev = m, m = m->next) {
        if (++n > l->n)         /* also ends a cycle */
            return "queues: a list longer than its count";
        if (m->prev != prev || m->q != q || m->where != where)
            return "queues: a message linked as if in another list";
        if (m->id == 0 || m->id > qs->next_msg || find_msg(qs, m->id) != m)
            return "queues: a message id of 0, above the ids handed out, or not indexed";
        if (!m->data || m->data->len == 0 || m->data->len > QUEUE_MSG_MAX)
            return "queues: a message of no bytes or over QUEUE_MSG_MAX";
        if (where != QM_INFLIGHT) {
            if (m->sid || m->expires_ms)
                return "queues: a ready or dead message with a claim";
            continue;
        }
        /* A lease ends at the time of its claim or extension plus the visibility timeout
         * then (at most QUEUE_VT_MAX). */
        if (!session_find(&st->sessions, m->sid))
            return "queues: a claim of a session that is not live";
        if (m->expires_ms == 0 || (m->expires_ms > span && m->expires_ms - span > st->now_ms))
            return "queues: a claim without a lease end, or one past the longest timeout";
    }
    if (l->tail != prev || l->n != n)
        return "queues: a list's tail or count differs from its messages";
    return NULL;
}

const char *queues_sm_verify(const state_t *st)
{
    const qstate_t *qs = QS(st);
    const char *why;
    uint64_t msgs = 0;
    for (nentry_t *e = qs->queues.head; e; e = e->next) {
        queue_t *q = queue_of(e);
        if (e->id > qs->next_qid || names_check(e->name, e->namelen, 0) < 0)
            return "queues: a queue id above the ids handed out, or an invalid name";
        if (q->ctime_ms > q->mtime_ms || q->mtime_ms > st->now_ms)
            return "queues: a queue changed before it was made, or at a time to come";
        if (q->vt_s < 1 || q->vt_s > QUEUE_VT_MAX || q->maxdel < 1 ||
            q->maxdel > QUEUE_MAXDEL_MAX || q->maxlen > QUEUE_MAXLEN_MAX)
            return "queues: a visibility timeout, max_deliveries or max_length out of range";
        for (int where = QM_READY; where <= QM_DEAD; where++) {
            if ((why = verify_list(st, qs, q, where)))
                return why;
            msgs += list_of(q, where)->n;
        }
        /* Waiters: a FIFO of distinct (session, handle) of live sessions, never beside
         * ready messages (a message that arrives goes to the first waiter). */
        if (q->wh && q->lists[QM_READY - 1].head)
            return "queues: a queue with waiters and ready messages";
        const qwaiter_t *last = NULL;
        for (const qwaiter_t *w = q->wh; w; last = w, w = w->next) {
            if (w->hid == 0 || w->claim > 1 || !session_find(&st->sessions, w->sid))
                return "queues: a waiter without a handle, of an unknown kind, or of a "
                       "session that is not live";
            if (find_waiter(q, w->sid, w->hid) != w)
                return "queues: a waiter twice";
        }
        if (q->wt != last)
            return "queues: the waiters' tail is not the last waiter";
    }
    /* Every indexed message sits in one of the lists walked above. */
    if (HASH_CNT(hh, qs->by_id) != msgs)
        return "queues: the message index holds messages of no list";
    /* Kept hand-overs: numbered in order up to the last number handed out, to a handle of
     * a live session, a message of 1..QUEUE_MSG_MAX bytes or none when gone. */
    uint64_t seq = 0;
    const qkept_t *last = NULL;
    for (const qkept_t *k = qs->kh; k; last = k, k = k->next) {
        if (k->seq <= seq || k->seq > qs->next_seq)
            return "queues: kept hand-overs out of order or numbered past the last one";
        seq = k->seq;
        if (k->hid == 0 || k->claim > 1 || k->gone > 1 || !session_find(&st->sessions, k->sid))
            return "queues: a kept hand-over without a handle, of an unknown kind, or of a "
                   "session that is not live";
        if (!k->qname || names_check(k->qname, strlen(k->qname), 0) < 0)
            return "queues: a kept hand-over of an invalid queue name";
        if (k->gone ? (k->data || k->id) :
                      (!k->data || k->data->len == 0 || k->data->len > QUEUE_MSG_MAX || !k->id))
            return "queues: a kept hand-over whose message does not fit its kind";
        if (k->id > qs->next_msg || k->qid > qs->next_qid)
            return "queues: a kept hand-over of a message or queue id above the ids handed out";
    }
    if (qs->kt != last)
        return "queues: the kept hand-overs' tail is not the last one";
    return NULL;
}

void queues_sm_check(const state_t *st)
{
    ASSERT(QS(st));
    ntable_check(&QS(st)->queues);
    SM_ASSERT_VERIFIED(queues_sm_verify(st));
}

/* ---------------------------------------------------------------- read API */

/* Fills *v from q; -ENOENT for a NULL q. */
static int view_queue(const queue_t *q, queue_view_t *v)
{
    if (!q)
        return -ENOENT;
    v->qid = q->ent.id;
    v->name = q->ent.name;
    v->ctime_ms = q->ctime_ms;
    v->mtime_ms = q->mtime_ms;
    v->vt_s = q->vt_s;
    v->maxdel = q->maxdel;
    v->maxlen = q->maxlen;
    v->ready = q->lists[QM_READY - 1].n;
    v->inflight = q->lists[QM_INFLIGHT - 1].n;
    v->dead = q->lists[QM_DEAD - 1].n;
    v->waiters = 0;
    for (const qwaiter_t *w = q->wh; w; w = w->next)
        v->waiters++;
    v->head = q->lists[QM_READY - 1].head ? q->lists[QM_READY - 1].head->data : NULL;
    return 0;
}

static int view_msg(const qmsg_t *m, qmsg_view_t *v)
{
    if (!m)
        return -ENOENT;
    v->id = m->id;
    v->qid = m->q->ent.id;
    v->count = m->count;
    v->where = m->where;
    v->sid = m->sid;
    v->expires_ms = m->expires_ms;
    v->data = m->data;
    return 0;
}

int queues_sm_get(const state_t *st, const char *name, size_t len, queue_view_t *v)
{
    return view_queue(find_queue(QS(st), name, len), v);
}

int queues_sm_get_qid(const state_t *st, uint64_t qid, queue_view_t *v)
{
    return view_queue(find_qid(QS(st), qid), v);
}

uint32_t queues_sm_kept(const state_t *st, uint64_t sid, uint64_t upto)
{
    uint32_t n = 0;
    for (const qkept_t *k = QS(st)->kh; k; k = k->next)
        n += k->sid == sid && k->seq <= upto;
    return n;
}

int queues_sm_msg(const state_t *st, uint64_t id, qmsg_view_t *v)
{
    return view_msg(find_msg(QS(st), id), v);
}

int queues_sm_each(const state_t *st, int (*fn)(void *arg, const queue_view_t *v), void *arg)
{
    for (const nentry_t *e = QS(st)->queues.head; e; e = e->next) {
        queue_view_t v;
        view_queue(NTABLE_OBJ(e, const queue_t, ent), &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int queues_sm_each_msg(const state_t *st, uint64_t qid, int where,
                       int (*fn)(void *arg, const qmsg_view_t *m), void *arg)
{
    queue_t *q = find_qid(QS(st), qid);
    if (!q || where < QM_READY || where > QM_DEAD)
        return -ENOENT;
    for (const qmsg_t *m = list_of(q, where)->head; m; m = m->next) {
        qmsg_view_t v;
        view_msg(m, &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- encoders */

static void begin(cmdbuf_t *b, uint8_t op, uint64_t now, const char *q)
{
    cmd_begin(b, op, NS_QUEUES, now);
    cmd_str(b, q);
}

void queues_cmd_mkdir(cmdbuf_t *b, uint64_t now, const char *q)
{
    begin(b, QOP_MKDIR, now, q);
}

void queues_cmd_rmdir(cmdbuf_t *b, uint64_t now, const char *q, int force)
{
    begin(b, QOP_RMDIR, now, q);
    cmd_u8(b, force ? 1 : 0);
}

void queues_cmd_set(cmdbuf_t *b, uint64_t now, const char *q, uint8_t which, uint64_t value)
{
    begin(b, QOP_SET, now, q);
    cmd_u8(b, which);
    cmd_u64(b, value);
}

/* Offset of a PUSH's u32 count: the header (u8 version, u8 op, u8 ns, u64 now: 11 bytes,
 * docs/FORMATS.md §4), then the name (u32 length, bytes). */
static size_t push_count_at(const cmdbuf_t *b)
{
    ASSERT(b->len >= 19 && b->p[1] == QOP_PUSH && b->p[2] == NS_QUEUES);
    return 11 + 4 + le_get32(b->p + 11);
}

void queues_cmd_push(cmdbuf_t *b, uint64_t now, const char *q)
{
    begin(b, QOP_PUSH, now, q);
    cmd_u32(b, 0);
}

void queues_cmd_push_end(cmdbuf_t *b, uint64_t qid)
{
    cmd_u64(b, qid);
}

void queues_cmd_push_add(cmdbuf_t *b, const void *msg, size_t len)
{
    cmd_bytes(b, msg, len);
    if (!b->oom)
        le_put32(b->p + push_count_at(b), queues_cmd_push_count(b) + 1);
}

uint32_t queues_cmd_push_count(const cmdbuf_t *b)
{
    return b->oom ? 0 : le_get32(b->p + push_count_at(b));
}

void queues_cmd_take(cmdbuf_t *b, uint64_t now, const char *q, uint64_t sid, uint64_t hid,
                     uint8_t flags, uint64_t seen, uint64_t qid)
{
    begin(b, QOP_TAKE, now, q);
    cmd_u64(b, sid);
    cmd_u64(b, hid);
    cmd_u8(b, flags);
    cmd_u64(b, seen);
    cmd_u64(b, qid);
}

void queues_cmd_cancel(cmdbuf_t *b, uint64_t now, const char *q, uint64_t sid, uint64_t hid,
                       uint64_t seen, uint64_t qid)
{
    begin(b, QOP_CANCEL, now, q);
    cmd_u64(b, sid);
    cmd_u64(b, hid);
    cmd_u64(b, seen);
    cmd_u64(b, qid);
}

void queues_cmd_unpop(cmdbuf_t *b, uint64_t now, const char *q, uint64_t id, uint32_t count,
                      const void *msg, size_t len)
{
    begin(b, QOP_UNPOP, now, q);
    cmd_u64(b, id);
    cmd_u32(b, count);
    cmd_bytes(b, msg, len);
}

void queues_cmd_msg(cmdbuf_t *b, uint8_t op, uint64_t now, const char *q, uint64_t id)
{
    ASSERT(op == QOP_ACK || op == QOP_EXTEND || op == QOP_RETURN || op == QOP_DEADRM);
    begin(b, op, now, q);
    cmd_u64(b, id);
}

void queues_cmd_expire(cmdbuf_t *b, uint64_t now, const char *q, uint32_t n,
                       const uint64_t *ids)
{
    begin(b, QOP_EXPIRE, now, q);
    cmd_u32(b, n);
    for (uint32_t i = 0; i < n; i++)
        cmd_u64(b, ids[i]);
}

const ns_sm_t queues_sm = {
    .init = q_init_state,
    .free = q_free_state,
    .apply = q_apply,
    .session_end = q_session_end,
    .snapshot = q_snapshot,
    .restore = q_restore,
    .check = queues_sm_check,
};
