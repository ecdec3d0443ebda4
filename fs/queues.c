/* fs/queues.c — the queues/ namespace (FILE-API §2, design in docs/QUEUES.md). The first
 * half is the replicated state machine: queues with a ready list, leased (in-flight) and
 * dead messages, and a FIFO of waiting readers; apply decides every hand-over and emits it
 * as an EFF_QUEUE_MSG effect (fs/effects.h). The second half is the FUSE side: the
 * directory tree queues/<q>/{push,pop,claim,claimed/,dead/,peek,len}, the line-splitting
 * push writer, and blocking pop/claim reads parked until a delivery answers them. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/names.h"
#include "fs/node.h"
#include "fs/dirlist.h"
#include "fs/intr.h"
#include "fs/mount.h"
#include "fs/queues.h"
#include "fs/session.h"

#define QSNAP_VERSION 1
#define EXPIRE_BATCH 4096
#define PUSH_BATCH_BYTES (1u << 20)     /* split a write's lines into commands of about this */

/* ================================================================ replicated state */

enum qwhere { QM_READY = 1, QM_INFLIGHT, QM_DEAD };

typedef struct qmsg {
    uint64_t id;
    uint32_t count;              /* leases that ended without an acknowledgement */
    uint8_t where;
    uint64_t sid, expires_ms;    /* QM_INFLIGHT: claiming session and lease end */
    blob_t *data;
    struct queue *q;
    struct qmsg *prev, *next;    /* in the list of its place */
    UT_hash_handle hh;           /* in qstate.by_id while in flight or dead */
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
    uint64_t qid;
    char *name;
    uint64_t ctime_ms, mtime_ms;
    uint32_t vt_s, maxdel;
    uint64_t maxlen;
    qlist_t ready, inflight, dead;
    qwaiter_t *wh, *wt;          /* waiting readers, FIFO */
    struct queue *prev, *next;   /* creation order */
    UT_hash_handle hh;           /* by name */
    UT_hash_handle hq;           /* by qid */
} queue_t;

typedef struct qstate {
    queue_t *by_name, *by_qid, *head, *tail;
    qmsg_t *by_id;
    uint64_t next_qid, next_msg;
} qstate_t;

static qstate_t *QS(state_t *st) { return st->ns_state[NS_QUEUES]; }

static void list_push_tail(qlist_t *l, qmsg_t *m)
{
    m->prev = l->tail;
    m->next = NULL;
    if (l->tail)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
    l->n++;
}

static void list_push_head(qlist_t *l, qmsg_t *m)
{
    m->next = l->head;
    m->prev = NULL;
    if (l->head)
        l->head->prev = m;
    else
        l->tail = m;
    l->head = m;
    l->n++;
}

static void list_remove(qlist_t *l, qmsg_t *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        l->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        l->tail = m->prev;
    m->prev = m->next = NULL;
    l->n--;
}

static void msg_free(qmsg_t *m)
{
    blob_unref(m->data);
    free(m);
}

static queue_t *find_queue(qstate_t *qs, const char *name, size_t len)
{
    queue_t *q;
    HASH_FIND(hh, qs->by_name, name, len, q);
    return q;
}

static queue_t *find_qid(qstate_t *qs, uint64_t qid)
{
    queue_t *q;
    HASH_FIND(hq, qs->by_qid, &qid, sizeof(qid), q);
    return q;
}

static qmsg_t *find_msg(qstate_t *qs, uint64_t id)
{
    qmsg_t *m;
    HASH_FIND(hh, qs->by_id, &id, sizeof(id), m);
    return m;
}

/* Hands m (NULL: the queue is gone) to waiter (sid, hid) of q: an effect. */
static void outbox_add(effects_t *fx, queue_t *q, uint64_t sid, uint64_t hid, uint8_t claim,
                       qmsg_t *m)
{
    effect_t *e = effects_add(fx, EFF_QUEUE_MSG, NS_QUEUES, sid, hid);
    e->u.qmsg.claim = claim;
    e->u.qmsg.qname = xstrdup(q->name);
    if (m) {
        e->u.qmsg.id = m->id;
        e->u.qmsg.count = m->count;
        e->u.qmsg.msg = blob_ref(m->data);
    } else {
        e->u.qmsg.gone = 1;
    }
}

/* Leases m (not in any list) to session sid until now + vt. */
static void lease(qstate_t *qs, queue_t *q, qmsg_t *m, uint64_t sid, uint64_t now)
{
    m->where = QM_INFLIGHT;
    m->sid = sid;
    m->expires_ms = now + (uint64_t)q->vt_s * 1000;
    list_push_tail(&q->inflight, m);
    HASH_ADD(hh, qs->by_id, id, sizeof(m->id), m);
}

/* Gives m (in no list) to the first waiter, or puts it in the ready list (at the head when
 * at_head: a returned message keeps its place in front). */
static void offer(qstate_t *qs, queue_t *q, qmsg_t *m, int at_head, uint64_t now,
                  effects_t *fx)
{
    qwaiter_t *w = q->wh;
    if (!w) {
        m->where = QM_READY;
        if (at_head)
            list_push_head(&q->ready, m);
        else
            list_push_tail(&q->ready, m);
        return;
    }
    q->wh = w->next;
    if (!q->wh)
        q->wt = NULL;
    if (w->claim) {
        lease(qs, q, m, w->sid, now);
        outbox_add(fx, q, w->sid, w->hid, 1, m);
    } else {
        outbox_add(fx, q, w->sid, w->hid, 0, m);
        msg_free(m);
    }
    free(w);
}

/* Hands ready messages from the head to waiting readers while both exist. */
static void serve_waiters(qstate_t *qs, queue_t *q, uint64_t now, effects_t *fx)
{
    while (q->wh && q->ready.head) {
        qmsg_t *m = q->ready.head;
        list_remove(&q->ready, m);
        offer(qs, q, m, 1, now, fx);
    }
}

/* A lease ended without an acknowledgement (expiry or session end): m (in flight) goes back to
 * the head of the ready list with its count plus one, or to dead/ at max_deliveries. Waiters
 * are served by the caller (serve_waiters) once a whole batch is back in order. */
static void lease_ended(qstate_t *qs, queue_t *q, qmsg_t *m)
{
    list_remove(&q->inflight, m);
    HASH_DELETE(hh, qs->by_id, m);
    m->count++;
    m->sid = m->expires_ms = 0;
    if (m->count >= q->maxdel) {
        m->where = QM_DEAD;
        list_push_tail(&q->dead, m);
        HASH_ADD(hh, qs->by_id, id, sizeof(m->id), m);
    } else {
        m->where = QM_READY;
        list_push_head(&q->ready, m);
    }
}

/* Frees q; its waiters learn that it is gone when fx is not NULL. */
static void queue_free(qstate_t *qs, queue_t *q, effects_t *fx)
{
    qlist_t *lists[3] = { &q->ready, &q->inflight, &q->dead };
    for (int i = 0; i < 3; i++) {
        qmsg_t *m = lists[i]->head, *n;
        for (; m; m = n) {
            n = m->next;
            if (m->where != QM_READY)
                HASH_DELETE(hh, qs->by_id, m);
            msg_free(m);
        }
    }
    qwaiter_t *w = q->wh, *wn;
    for (; w; w = wn) {
        wn = w->next;
        if (fx)
            outbox_add(fx, q, w->sid, w->hid, w->claim, NULL);
        free(w);
    }
    free(q->name);
    free(q);
}

static queue_t *queue_add(qstate_t *qs, const char *name, size_t len, uint64_t qid)
{
    queue_t *q = xcalloc(1, sizeof(*q));
    q->name = xstrndup(name, len);
    q->qid = qid;
    q->vt_s = QUEUE_VT_DEFAULT;
    q->maxdel = QUEUE_MAXDEL_DEFAULT;
    HASH_ADD_KEYPTR(hh, qs->by_name, q->name, len, q);
    HASH_ADD(hq, qs->by_qid, qid, sizeof(q->qid), q);
    q->prev = qs->tail;
    if (qs->tail)
        qs->tail->next = q;
    else
        qs->head = q;
    qs->tail = q;
    return q;
}

static void queue_unlink(qstate_t *qs, queue_t *q)
{
    HASH_DELETE(hh, qs->by_name, q);
    HASH_DELETE(hq, qs->by_qid, q);
    if (q->prev)
        q->prev->next = q->next;
    else
        qs->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        qs->tail = q->prev;
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
    queue_t *q = qs->head, *n;
    for (; q; q = n) {
        n = q->next;
        queue_unlink(qs, q);
        queue_free(qs, q, NULL);
    }
    free(qs);
    st->ns_state[NS_QUEUES] = NULL;
}

/* Reads the queue name field and finds the queue. */
static queue_t *arg_queue(qstate_t *qs, cmdrd_t *r)
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

static int apply_push(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint32_t n = cmd_get_u32(r);
    if (r->err)
        return -EINVAL;
    if (!q)
        return -ENOENT;
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
    if (q->maxlen && q->ready.n + q->inflight.n + n > q->maxlen)
        return -ENOSPC;
    r->off = save;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len = cmd_get_bytes(r, &p);
        qmsg_t *m = xcalloc(1, sizeof(*m));
        m->data = blob_xnew(p, len);
        m->id = ++qs->next_msg;
        m->q = q;
        offer(qs, q, m, 0, h->now_ms, fx);
    }
    q->mtime_ms = h->now_ms;
    return 0;
}

static int apply_take(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                      effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint64_t sid = cmd_get_u64(r), hid = cmd_get_u64(r);
    uint8_t flags = cmd_get_u8(r);
    if (r->err)
        return -EINVAL;
    if (!q)
        return -ENOENT;
    uint8_t claim = (flags & QTAKE_CLAIM) ? 1 : 0;
    qmsg_t *m = q->ready.head;
    if (m) {
        list_remove(&q->ready, m);
        if (claim) {
            lease(qs, q, m, sid, h->now_ms);
            outbox_add(fx, q, sid, hid, 1, m);
        } else {
            outbox_add(fx, q, sid, hid, 0, m);
            msg_free(m);
        }
        result_u8(res, 1);
        return 0;
    }
    if (flags & QTAKE_NOWAIT)
        return -EAGAIN;
    for (qwaiter_t *w = q->wh; w; w = w->next)
        if (w->sid == sid && w->hid == hid) {
            result_u8(res, 0);
            return 0;   /* already waiting */
        }
    qwaiter_t *w = xcalloc(1, sizeof(*w));
    w->sid = sid;
    w->hid = hid;
    w->claim = claim;
    if (q->wt)
        q->wt->next = w;
    else
        q->wh = w;
    q->wt = w;
    result_u8(res, 0);
    return 0;
}

static int apply_cancel(qstate_t *qs, cmdrd_t *r, sm_result_t *res)
{
    queue_t *q = arg_queue(qs, r);
    uint64_t sid = cmd_get_u64(r), hid = cmd_get_u64(r);
    if (r->err)
        return -EINVAL;
    result_u8(res, 0);
    if (!q)
        return 0;
    qwaiter_t **pp = &q->wh, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        qwaiter_t *w = *pp;
        if (w->sid == sid && w->hid == hid) {
            *pp = w->next;
            if (q->wt == w)
                q->wt = prev;
            free(w);
            result_u8(res, 1);
            return 0;
        }
    }
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
    qmsg_t *m = xcalloc(1, sizeof(*m));
    m->data = blob_xnew(p, len);
    m->id = id;
    m->count = count;
    m->q = q;
    offer(qs, q, m, 1, h->now_ms, fx);
    return 0;
}

/* Finds message id of queue q in place where. */
static qmsg_t *arg_msg(qstate_t *qs, queue_t *q, cmdrd_t *r, int where)
{
    uint64_t id = cmd_get_u64(r);
    qmsg_t *m = r->err || !q ? NULL : find_msg(qs, id);
    return m && m->q == q && m->where == where ? m : NULL;
}

static int apply_msg_op(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    qmsg_t *m = arg_msg(qs, q, r, h->op == QOP_DEADRM ? QM_DEAD : QM_INFLIGHT);
    if (r->err)
        return -EINVAL;
    if (!m)
        return -ENOENT;
    switch (h->op) {
    case QOP_ACK:
        list_remove(&q->inflight, m);
        HASH_DELETE(hh, qs->by_id, m);
        msg_free(m);
        q->mtime_ms = h->now_ms;
        return 0;
    case QOP_EXTEND:
        m->expires_ms = h->now_ms + (uint64_t)q->vt_s * 1000;
        return 0;
    case QOP_RETURN:
        list_remove(&q->inflight, m);
        HASH_DELETE(hh, qs->by_id, m);
        m->sid = m->expires_ms = 0;
        offer(qs, q, m, 1, h->now_ms, fx);
        return 0;
    default: /* QOP_DEADRM */
        list_remove(&q->dead, m);
        HASH_DELETE(hh, qs->by_id, m);
        msg_free(m);
        return 0;
    }
}

static int apply_expire(qstate_t *qs, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    queue_t *q = arg_queue(qs, r);
    uint32_t n = cmd_get_u32(r);
    if (r->err || n > EXPIRE_BATCH)
        return -EINVAL;
    uint64_t ids[EXPIRE_BATCH];
    for (uint32_t i = 0; i < n; i++)
        ids[i] = cmd_get_u64(r);
    if (r->err)
        return -EINVAL;
    if (!q)
        return -ENOENT;
    /* Back to the head in reverse, so the batch keeps its order in front of the queue. */
    for (uint32_t i = n; i-- > 0;) {
        qmsg_t *m = find_msg(qs, ids[i]);
        if (m && m->q == q && m->where == QM_INFLIGHT && m->expires_ms <= h->now_ms)
            lease_ended(qs, q, m);
    }
    serve_waiters(qs, q, h->now_ms, fx);
    return 0;
}

static int apply_set(queue_t *q, cmdrd_t *r, const cmd_hdr_t *h)
{
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

static int q_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                   effects_t *fx)
{
    qstate_t *qs = QS(st);
    switch (h->op) {
    case QOP_MKDIR: {
        const char *name;
        size_t len = cmd_get_path(r, &name);
        if (r->err || names_check(name, len, 0) < 0)
            return -EINVAL;
        if (find_queue(qs, name, len))
            return -EEXIST;
        queue_t *q = queue_add(qs, name, len, ++qs->next_qid);
        q->ctime_ms = q->mtime_ms = h->now_ms;
        result_u64(res, q->qid);
        return 0;
    }
    case QOP_RMDIR: {
        queue_t *q = arg_queue(qs, r);
        uint8_t force = cmd_get_u8(r);
        if (r->err)
            return -EINVAL;
        if (!q)
            return -ENOENT;
        if (!force && (q->ready.n || q->inflight.n || q->dead.n))
            return -ENOTEMPTY;
        queue_unlink(qs, q);
        queue_free(qs, q, fx);
        return 0;
    }
    case QOP_SET:
        return apply_set(arg_queue(qs, r), r, h);
    case QOP_PUSH:
        return apply_push(qs, h, r, fx);
    case QOP_TAKE:
        return apply_take(qs, h, r, res, fx);
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

/* A session ended: its waiters are dropped and its claims end as if their leases expired. */
static void q_session_end(state_t *st, uint64_t sid, uint64_t now_ms, effects_t *fx)
{
    qstate_t *qs = QS(st);
    for (queue_t *q = qs->head; q; q = q->next) {
        qwaiter_t **pp = &q->wh, *prev = NULL;
        while (*pp) {
            qwaiter_t *w = *pp;
            if (w->sid == sid) {
                *pp = w->next;
                if (q->wt == w)
                    q->wt = prev;
                free(w);
            } else {
                prev = w;
                pp = &w->next;
            }
        }
        /* Claims of the session end as if their leases expired, in reverse so that they
         * keep their order at the head. */
        qmsg_t *m = q->inflight.tail, *p;
        for (; m; m = p) {
            p = m->prev;
            if (m->sid == sid)
                lease_ended(qs, q, m);
        }
        serve_waiters(qs, q, now_ms, fx);
    }
}

int queues_counts(state_t *st, const char *name, uint64_t *ready, uint64_t *inflight,
                  uint64_t *dead)
{
    queue_t *q = find_queue(QS(st), name, strlen(name));
    if (!q)
        return -ENOENT;
    *ready = q->ready.n;
    *inflight = q->inflight.n;
    *dead = q->dead.n;
    return 0;
}

/* ---- snapshot (format: docs/QUEUES.md "Snapshot section") ---- */

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

static void q_snapshot(const state_t *st, snapout_t *o)
{
    const qstate_t *qs = st->ns_state[NS_QUEUES];
    uint32_t n = HASH_CNT(hh, qs->by_name);
    so_u32(o, QSNAP_VERSION);
    so_u64(o, qs->next_qid);
    so_u64(o, qs->next_msg);
    so_u32(o, n);
    for (const queue_t *q = qs->head; q; q = q->next) {
        so_u64(o, q->qid);
        so_blob(o, q->name, (uint32_t)strlen(q->name));
        so_u64(o, q->ctime_ms);
        so_u64(o, q->mtime_ms);
        so_u32(o, q->vt_s);
        so_u32(o, q->maxdel);
        so_u64(o, q->maxlen);
        snap_list(o, &q->ready, 0);
        snap_list(o, &q->inflight, 1);
        snap_list(o, &q->dead, 0);
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
}

static int restore_list(snapin_t *in, qstate_t *qs, queue_t *q, qlist_t *l, int where)
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
        if (len == 0 || len > QUEUE_MSG_MAX || id == 0 || id > qs->next_msg ||
            (where != QM_READY && find_msg(qs, id)))
            return -QERR_CORRUPT;
        qmsg_t *m = xcalloc(1, sizeof(*m));
        m->data = blob_xnew(NULL, len);
        si_bytes(in, m->data->data, len);
        m->id = id;
        m->count = count;
        m->sid = sid;
        m->expires_ms = exp;
        m->where = (uint8_t)where;
        m->q = q;
        list_push_tail(l, m);
        if (where != QM_READY)
            HASH_ADD(hh, qs->by_id, id, sizeof(m->id), m);
    }
    return in->err;
}

static int q_restore(state_t *st, snapin_t *in)
{
    qstate_t *qs = QS(st);
    if (si_u32(in) != QSNAP_VERSION)
        return in->err ? in->err : -QERR_FORMAT;
    qs->next_qid = si_u64(in);
    qs->next_msg = si_u64(in);
    uint32_t n = si_u32(in);
    for (uint32_t i = 0; i < n && !in->err; i++) {
        uint64_t qid = si_u64(in);
        char name[NAME_MAX_BYTES + 1];
        int nlen = si_str(in, name, sizeof(name));
        if (nlen < 0)
            return nlen;
        size_t nl = (size_t)nlen;
        if (find_queue(qs, name, nl) || find_qid(qs, qid) || qid > qs->next_qid)
            return -QERR_CORRUPT;
        queue_t *q = queue_add(qs, name, nl, qid);
        q->ctime_ms = si_u64(in);
        q->mtime_ms = si_u64(in);
        q->vt_s = si_u32(in);
        q->maxdel = si_u32(in);
        q->maxlen = si_u64(in);
        int rc = restore_list(in, qs, q, &q->ready, QM_READY);
        if (rc == 0)
            rc = restore_list(in, qs, q, &q->inflight, QM_INFLIGHT);
        if (rc == 0)
            rc = restore_list(in, qs, q, &q->dead, QM_DEAD);
        if (rc < 0)
            return rc;
        uint32_t nw = si_u32(in);
        for (uint32_t j = 0; j < nw && !in->err; j++) {
            qwaiter_t *w = xcalloc(1, sizeof(*w));
            w->sid = si_u64(in);
            w->hid = si_u64(in);
            w->claim = si_u8(in);
            if (q->wt)
                q->wt->next = w;
            else
                q->wh = w;
            q->wt = w;
        }
    }
    return in->err;
}

/* ================================================================ FUSE side */

/* Inodes: the namespace root; (qid << 4 | kind) for a queue's directory and control files;
 * MSG_BIT | id << 1 | dead for the entries of claimed/ and dead/. */
enum qkind {
    QK_ROOT = 0, QK_DIR, QK_PUSH, QK_POP, QK_CLAIM, QK_CLAIMED, QK_DEAD, QK_PEEK, QK_LEN,
    QK_CMSG, QK_DMSG,
};
#define MSG_BIT (1ull << 55)
/* Each lookup of `push` gives a new inode (PUSH_BIT | qid << 24 | n): the kernel serializes
 * direct writes to one inode, and producers on distinct inodes share fsyncs (group commit). */
#define PUSH_BIT (1ull << 54)
static uint64_t push_lookups;   /* atomic */

static const struct { const char *name; int kind; } ctl_names[] = {
    { "claim", QK_CLAIM }, { "claimed", QK_CLAIMED }, { "dead", QK_DEAD }, { "len", QK_LEN },
    { "peek", QK_PEEK }, { "pop", QK_POP }, { "push", QK_PUSH },
};
#define NCTL (sizeof(ctl_names) / sizeof(ctl_names[0]))

typedef struct qref {
    int kind;
    uint64_t qid, id;
} qref_t;

static fuse_ino_t ino_of(int kind, uint64_t qid, uint64_t id)
{
    if (kind == QK_ROOT)
        return NS_ROOT_ID(NS_QUEUES);
    if (kind == QK_CMSG || kind == QK_DMSG)
        return NS_INO(NS_QUEUES, MSG_BIT | (id << 1) | (kind == QK_DMSG));
    return NS_INO(NS_QUEUES, (qid << 4) | (uint64_t)kind);
}

static int decode(fuse_ino_t ino, qref_t *r)
{
    memset(r, 0, sizeof(*r));
    if (ino == NS_ROOT_ID(NS_QUEUES)) {
        r->kind = QK_ROOT;
        return 0;
    }
    if (!(ino & NS_INO_BIT) || NS_INO_NS(ino) != NS_QUEUES)
        return -ENOENT;
    uint64_t local = ino & ((1ull << 56) - 1);
    if (local & PUSH_BIT) {
        r->kind = QK_PUSH;
        r->qid = (local & ~PUSH_BIT) >> 24;
        return 0;
    }
    if (local & MSG_BIT) {
        r->id = (local & ~MSG_BIT) >> 1;
        r->kind = (local & 1) ? QK_DMSG : QK_CMSG;
        return 0;
    }
    r->qid = local >> 4;
    r->kind = (int)(local & 15);
    return r->kind >= QK_DIR && r->kind <= QK_LEN ? 0 : -ENOENT;
}

/* Resolves r against the state (lock held): the queue and, for message files, the message. */
static int resolve(state_t *st, const qref_t *r, queue_t **qp, qmsg_t **mp)
{
    qstate_t *qs = QS(st);
    *qp = NULL;
    if (mp)
        *mp = NULL;
    if (r->kind == QK_ROOT)
        return 0;
    if (r->kind == QK_CMSG || r->kind == QK_DMSG) {
        qmsg_t *m = find_msg(qs, r->id);
        if (!m || m->where != (r->kind == QK_DMSG ? QM_DEAD : QM_INFLIGHT))
            return -ENOENT;
        *qp = m->q;
        if (mp)
            *mp = m;
        return 0;
    }
    *qp = find_qid(qs, r->qid);
    return *qp ? 0 : -ENOENT;
}

/* Open file of a queue control file. */
enum tstate { T_IDLE = 0, T_PROPOSING, T_WAITING, T_HAVE, T_DONE, T_GONE };

typedef struct qfh {
    int kind;
    char *qname;
    int nonblock;
    /* push */
    pthread_mutex_t mu;
    uint8_t *buf;
    size_t blen, bcap;
    int discard;                 /* dropping the rest of an oversized line */
    /* pop / claim (under QL.mu from T_PROPOSING on) */
    uint64_t hid;
    int state;
    uint8_t claim;
    uint64_t got_id;
    uint32_t got_count;
    blob_t *got;
    char *out;                   /* what reads return: "msg\n" or "<id> msg\n" */
    size_t outlen, outoff;
    fuse_req_t req;              /* parked read */
    size_t want;
    UT_hash_handle hh;           /* QL.by_hid */
    /* static text (peek, len, message files) and directory listings */
    char *text;
    size_t tlen;
    int text_empty;              /* peek of an empty queue */
    dirlist_t dir;
} qfh_t;

static struct {
    pthread_mutex_t mu;          /* guards by_hid, the take state of open files, notes */
    qfh_t *by_hid;
    uint64_t next_hid;
    struct rmnote { uint64_t qid; pid_t pid; uint64_t at_ms; } notes[64];
    unsigned nnotes;
    node_t *node;                /* set by start */
} QL = { .mu = PTHREAD_MUTEX_INITIALIZER };

static state_t *ST(void) { return node_state(QL.node); }
static uint64_t SID(void) { return session_local_id(node_session(QL.node)); }

static void fill_attr(struct stat *s, fuse_ino_t ino, int kind, off_t size, uint64_t mtime)
{
    memset(s, 0, sizeof(*s));
    s->st_ino = ino;
    switch (kind) {
    case QK_ROOT: case QK_DIR: case QK_CLAIMED: case QK_DEAD:
        s->st_mode = S_IFDIR | 0755;
        s->st_nlink = 2;
        break;
    case QK_PUSH:
        s->st_mode = S_IFREG | 0200;
        s->st_nlink = 1;
        break;
    default:
        s->st_mode = S_IFREG | 0444;
        s->st_nlink = 1;
    }
    s->st_size = size;
    s->st_blksize = 4096;
    s->st_uid = getuid();
    s->st_gid = getgid();
    s->st_mtim.tv_sec = (time_t)(mtime / 1000);
    s->st_mtim.tv_nsec = (long)(mtime % 1000) * 1000000;
    s->st_ctim = s->st_atim = s->st_mtim;
}

static int len_text(const queue_t *q, char *buf, size_t size)
{
    return snprintf(buf, size, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", q->ready.n,
                    q->inflight.n, q->dead.n);
}

/* Attributes of r; state lock held. */
static int attr_locked(state_t *st, fuse_ino_t ino, const qref_t *r, struct stat *s)
{
    queue_t *q;
    qmsg_t *m;
    int rc = resolve(st, r, &q, &m);
    if (rc < 0)
        return rc;
    off_t size = 0;
    char tmp[80];
    if (r->kind == QK_PEEK && q->ready.head)
        size = q->ready.head->data->len + 1;
    else if (r->kind == QK_LEN)
        size = len_text(q, tmp, sizeof(tmp));
    else if (m)
        size = m->data->len + 1;
    fill_attr(s, ino, r->kind, size, q ? q->mtime_ms : 0);
    return 0;
}

static int do_getattr(fuse_ino_t ino, struct stat *s)
{
    qref_t r;
    int rc = decode(ino, &r);
    if (rc < 0)
        return rc;
    state_t *st = ST();
    pthread_rwlock_rdlock(&st->lock);
    rc = attr_locked(st, ino, &r, s);
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static void qf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat s;
    int rc = do_getattr(ino, &s);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &s, 0);
}

static int parse_id(const char *name, uint64_t *id)
{
    return names_parse_uint(name, strlen(name), (1ull << 53), id) < 0 || name[0] == '0' ||
                   strchr(name, '\n') ? -ENOENT : 0;
}

static int do_lookup(fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
    qref_t pr;
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    int rc = decode(parent, &pr);
    if (rc < 0)
        return rc;
    if (strlen(name) > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    state_t *st = ST();
    qstate_t *qs = QS(st);
    qref_t cr = { 0, 0, 0 };
    pthread_rwlock_rdlock(&st->lock);
    queue_t *q;
    rc = resolve(st, &pr, &q, NULL);
    if (rc == 0) {
        rc = -ENOENT;
        if (pr.kind == QK_ROOT) {
            queue_t *c = find_queue(qs, name, strlen(name));
            if (c) {
                cr.kind = QK_DIR;
                cr.qid = c->qid;
                rc = 0;
            }
        } else if (pr.kind == QK_DIR) {
            for (size_t i = 0; i < NCTL; i++)
                if (strcmp(name, ctl_names[i].name) == 0) {
                    cr.kind = ctl_names[i].kind;
                    cr.qid = q->qid;
                    rc = 0;
                }
        } else if (pr.kind == QK_CLAIMED || pr.kind == QK_DEAD) {
            uint64_t id;
            qmsg_t *m;
            if (parse_id(name, &id) == 0 && (m = find_msg(qs, id)) && m->q == q &&
                m->where == (pr.kind == QK_DEAD ? QM_DEAD : QM_INFLIGHT)) {
                cr.kind = pr.kind == QK_DEAD ? QK_DMSG : QK_CMSG;
                cr.id = id;
                rc = 0;
            }
        } else {
            rc = -ENOTDIR;
        }
    }
    if (rc == 0) {
        e->ino = ino_of(cr.kind, cr.qid, cr.id);
        if (cr.kind == QK_PUSH)
            e->ino = NS_INO(NS_QUEUES, PUSH_BIT | (cr.qid << 24) |
                            (__atomic_add_fetch(&push_lookups, 1, __ATOMIC_RELAXED) & 0xffffff));
        rc = attr_locked(st, e->ino, &cr, &e->attr);
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static void qf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int rc = do_lookup(parent, name, &e);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

/* Queue name of a queue-level inode, strdup'ed into *name. */
static int queue_name_of(fuse_ino_t ino, char **name, int *kind, uint64_t *id)
{
    qref_t r;
    int rc = decode(ino, &r);
    if (rc < 0)
        return rc;
    if (r.kind == QK_ROOT)
        return -EPERM;
    state_t *st = ST();
    pthread_rwlock_rdlock(&st->lock);
    queue_t *q;
    rc = resolve(st, &r, &q, NULL);
    if (rc == 0 && !(*name = strdup(q->name)))
        rc = -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    if (kind)
        *kind = r.kind;
    if (id)
        *id = r.id;
    return rc;
}

static int propose_name(uint8_t op, const char *name, sm_result_t *res)
{
    cmdbuf_t b;
    cmd_begin(&b, op, NS_QUEUES, node_now_ms());
    cmd_str(&b, name);
    return node_propose(QL.node, &b, res);
}

static int propose_id(uint8_t op, const char *qname, uint64_t id)
{
    cmdbuf_t b;
    cmd_begin(&b, op, NS_QUEUES, node_now_ms());
    cmd_str(&b, qname);
    cmd_u64(&b, id);
    return node_propose(QL.node, &b, NULL);
}

static void qf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    qref_t pr;
    int rc = decode(parent, &pr);
    if (rc == 0 && pr.kind != QK_ROOT)
        rc = -EPERM;              /* a queue holds no directories of its own */
    if (rc == 0)
        rc = names_check(name, strlen(name), 0);
    sm_result_t res;
    if (rc == 0)
        rc = propose_name(QOP_MKDIR, name, &res);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    struct fuse_entry_param e;
    rc = do_lookup(parent, name, &e);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

/* `rm -r queues/q` first unlinks the entries inside the queue, then removes the directory.
 * Those unlinks note (queue, pid); an rmdir of the queue by the same process soon after
 * removes it with its messages. A plain rmdir of a non-empty queue gives ENOTEMPTY. */
static void note_rm(uint64_t qid, pid_t pid)
{
    uint64_t now = node_now_ms();
    pthread_mutex_lock(&QL.mu);
    unsigned slot = QL.nnotes < 64 ? QL.nnotes++ : 0;
    for (unsigned i = 0; i < QL.nnotes; i++)
        if ((QL.notes[i].qid == qid && QL.notes[i].pid == pid) ||
            now - QL.notes[i].at_ms > 60000) {
            slot = i;
            break;
        }
    QL.notes[slot] = (struct rmnote){ qid, pid, now };
    pthread_mutex_unlock(&QL.mu);
}

static int noted_rm(uint64_t qid, pid_t pid)
{
    uint64_t now = node_now_ms();
    int found = 0;
    pthread_mutex_lock(&QL.mu);
    for (unsigned i = 0; i < QL.nnotes; i++)
        if (QL.notes[i].qid == qid && QL.notes[i].pid == pid && now - QL.notes[i].at_ms < 60000) {
            found = 1;
            QL.notes[i].qid = 0;
        }
    pthread_mutex_unlock(&QL.mu);
    return found;
}

/* Looks up child name of parent; fills *child. */
static int child_ref(fuse_ino_t parent, const char *name, qref_t *child, char **qname)
{
    struct fuse_entry_param e;
    int rc = do_lookup(parent, name, &e);
    if (rc < 0)
        return rc;
    decode(e.ino, child);
    if (qname)
        rc = queue_name_of(e.ino, qname, NULL, NULL);
    return rc;
}

static void qf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    qref_t c;
    char *qname = NULL;
    int rc = child_ref(parent, name, &c, &qname);
    pid_t pid = fuse_req_ctx(req)->pid;
    if (rc == 0) {
        if (c.kind == QK_DIR) {
            cmdbuf_t b;
            cmd_begin(&b, QOP_RMDIR, NS_QUEUES, node_now_ms());
            cmd_str(&b, qname);
            cmd_u8(&b, noted_rm(c.qid, pid) ? 1 : 0);
            rc = node_propose(QL.node, &b, NULL);
        } else if (c.kind == QK_CLAIMED || c.kind == QK_DEAD) {
            /* These directories are part of the queue: removing them is a no-op when empty
             * (what `rm -r` does after emptying them). */
            state_t *st = ST();
            pthread_rwlock_rdlock(&st->lock);
            queue_t *q = find_qid(QS(st), c.qid);
            rc = !q ? -ENOENT : (c.kind == QK_DEAD ? q->dead.n : q->inflight.n) ? -ENOTEMPTY : 0;
            pthread_rwlock_unlock(&st->lock);
            if (rc == 0)
                note_rm(c.qid, pid);
        } else {
            rc = -ENOTDIR;
        }
    }
    free(qname);
    fuse_reply_err(req, -rc);
}

static void qf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    qref_t c, pr;
    char *qname = NULL;
    int rc = decode(parent, &pr);
    if (rc == 0 && pr.kind == QK_ROOT)
        rc = -EISDIR;
    if (rc == 0)
        rc = child_ref(parent, name, &c, &qname);
    if (rc == 0) {
        switch (c.kind) {
        case QK_CMSG:
            rc = propose_id(QOP_ACK, qname, c.id);
            break;
        case QK_DMSG:
            rc = propose_id(QOP_DEADRM, qname, c.id);
            break;
        case QK_CLAIMED: case QK_DEAD:
            rc = -EISDIR;
            break;
        default:
            /* The control files stay; see note_rm for why this succeeds. */
            note_rm(c.qid, fuse_req_ctx(req)->pid);
            rc = 0;
        }
        if ((c.kind == QK_CMSG || c.kind == QK_DMSG) && rc == 0) {
            state_t *st = ST();
            pthread_rwlock_rdlock(&st->lock);
            queue_t *q = find_queue(QS(st), qname, strlen(qname));
            uint64_t qid = q ? q->qid : 0;
            pthread_rwlock_unlock(&st->lock);
            if (qid)
                note_rm(qid, fuse_req_ctx(req)->pid);
        }
    }
    free(qname);
    fuse_reply_err(req, -rc);
}

static void qf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EPERM);   /* queues and their files cannot be renamed */
}

static void qf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    qref_t pr;
    int rc = decode(parent, &pr);
    if (rc == 0 && (pr.kind == QK_CLAIMED || pr.kind == QK_DEAD))
        rc = -EPERM;
    fuse_reply_err(req, rc < 0 ? -rc : EPERM);   /* only queues (mkdir) can be created */
}

/* ---- open files ---- */

static qfh_t *fh_new(int kind)
{
    qfh_t *fh = calloc(1, sizeof(*fh));
    if (fh) {
        fh->kind = kind;
        pthread_mutex_init(&fh->mu, NULL);
    }
    return fh;
}

static void fh_free(qfh_t *fh)
{
    if (!fh)
        return;
    free(fh->qname);
    free(fh->buf);
    blob_unref(fh->got);
    free(fh->out);
    free(fh->text);
    dirlist_clear(&fh->dir);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

static int set_text(qfh_t *fh, const void *p, size_t len, int nl)
{
    fh->text = malloc(len + 1);
    if (!fh->text)
        return -ENOMEM;
    memcpy(fh->text, p, len);
    if (nl)
        fh->text[len++] = '\n';
    fh->tlen = len;
    return 0;
}

static int do_open(fuse_ino_t ino, int flags, qfh_t **out)
{
    qref_t r;
    int rc = decode(ino, &r);
    if (rc < 0)
        return rc;
    int acc = flags & O_ACCMODE;
    if (r.kind == QK_ROOT || r.kind == QK_DIR || r.kind == QK_CLAIMED || r.kind == QK_DEAD)
        return -EISDIR;
    if (r.kind == QK_PUSH ? acc != O_WRONLY : acc != O_RDONLY)
        return -EPERM;            /* push is write-only; the others are read-only */
    qfh_t *fh = fh_new(r.kind);
    if (!fh)
        return -ENOMEM;
    fh->nonblock = !!(flags & O_NONBLOCK);
    state_t *st = ST();
    pthread_rwlock_rdlock(&st->lock);
    queue_t *q;
    qmsg_t *m;
    rc = resolve(st, &r, &q, &m);
    if (rc == 0 && !(fh->qname = strdup(q->name)))
        rc = -ENOMEM;
    if (rc == 0) {
        char tmp[80];
        switch (r.kind) {
        case QK_PEEK:
            if (q->ready.head)
                rc = set_text(fh, q->ready.head->data->data, q->ready.head->data->len, 1);
            else
                fh->text_empty = 1;
            break;
        case QK_LEN:
            rc = set_text(fh, tmp, (size_t)len_text(q, tmp, sizeof(tmp)), 0);
            break;
        case QK_CMSG: case QK_DMSG:
            rc = set_text(fh, m->data->data, m->data->len, 1);
            break;
        default:
            break;
        }
    }
    pthread_rwlock_unlock(&st->lock);
    if (rc == 0 && (r.kind == QK_POP || r.kind == QK_CLAIM)) {
        fh->claim = r.kind == QK_CLAIM;
        pthread_mutex_lock(&QL.mu);
        fh->hid = ++QL.next_hid;
        HASH_ADD(hh, QL.by_hid, hid, sizeof(fh->hid), fh);
        pthread_mutex_unlock(&QL.mu);
    }
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

static void qf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    qfh_t *fh = NULL;
    int rc = do_open(ino, fi->flags, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    fi->nonseekable = fh->kind == QK_POP || fh->kind == QK_CLAIM || fh->kind == QK_PUSH;
    if (fuse_reply_open(req, fi) != 0) {
        fi->fh = 0;
        if (fh->hid) {
            pthread_mutex_lock(&QL.mu);
            HASH_DELETE(hh, QL.by_hid, fh);
            pthread_mutex_unlock(&QL.mu);
        }
        fh_free(fh);
    }
}

/* ---- pop / claim ---- */

/* Replies to req from fh's delivered message; QL.mu held. */
static void serve_locked(fuse_req_t req, qfh_t *fh, size_t size)
{
    if (fh->state == T_GONE) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (fh->state != T_HAVE) {
        fuse_reply_buf(req, NULL, 0);     /* one message per open: EOF after it */
        return;
    }
    if (!fh->out) {
        size_t len = fh->got->len;
        char head[32];
        int hl = fh->claim ? snprintf(head, sizeof(head), "%" PRIu64 " ", fh->got_id) : 0;
        fh->out = malloc((size_t)hl + len + 1);
        if (!fh->out) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        memcpy(fh->out, head, (size_t)hl);
        memcpy(fh->out + hl, fh->got->data, len);
        fh->out[(size_t)hl + len] = '\n';
        fh->outlen = (size_t)hl + len + 1;
    }
    size_t n = fh->outlen - fh->outoff;
    if (n > size)
        n = size;
    if (fuse_reply_buf(req, fh->out + fh->outoff, n) == 0) {
        fh->outoff += n;
        if (fh->outoff == fh->outlen)
            fh->state = T_DONE;
    }
}

/* Interrupt callback. A late interrupt may arrive after the open file was released, so it
 * does not trust data: it looks the request up among the open take files. */
static void take_interrupt(fuse_req_t req, void *data)
{
    INTR_DEFER_IF_REGISTERING();
    (void)data;
    qfh_t *fh, *tmp;
    pthread_mutex_lock(&QL.mu);
    HASH_ITER(hh, QL.by_hid, fh, tmp) {
        if (fh->req == req) {
            fh->req = NULL;
            fuse_reply_err(req, EINTR);   /* the waiter stays registered: see QUEUES.md */
            break;
        }
    }
    pthread_mutex_unlock(&QL.mu);
}

static void take_read(fuse_req_t req, qfh_t *fh, size_t size)
{
    pthread_mutex_lock(&QL.mu);
    if (fh->req || fh->state == T_PROPOSING) {
        pthread_mutex_unlock(&QL.mu);
        fuse_reply_err(req, EBUSY);   /* one read at a time per open file */
        return;
    }
    if (fh->state != T_IDLE && fh->state != T_WAITING) {
        serve_locked(req, fh, size);
        pthread_mutex_unlock(&QL.mu);
        return;
    }
    int propose = fh->state == T_IDLE;
    if (propose)
        fh->state = T_PROPOSING;
    pthread_mutex_unlock(&QL.mu);
    if (propose) {
        uint64_t sid = SID();
        cmdbuf_t b;
        cmd_begin(&b, QOP_TAKE, NS_QUEUES, node_now_ms());
        cmd_str(&b, fh->qname);
        cmd_u64(&b, sid);
        cmd_u64(&b, fh->hid);
        cmd_u8(&b, (uint8_t)((fh->claim ? QTAKE_CLAIM : 0) | (fh->nonblock ? QTAKE_NOWAIT : 0)));
        int rc = sid ? node_propose(QL.node, &b, NULL) : (free(b.p), -EIO);
        pthread_mutex_lock(&QL.mu);
        if (fh->state == T_PROPOSING)
            fh->state = rc < 0 ? T_IDLE : T_WAITING;
        pthread_mutex_unlock(&QL.mu);
        if (rc < 0) {
            fuse_reply_err(req, -rc);
            return;
        }
    }
    /* Park, unless a delivery came meanwhile. The interrupt callback is registered first;
     * an interrupt that came before (deferred) or while the callback could not find the
     * request yet shows in fuse_req_interrupted, checked under QL.mu before parking. */
    int intr = intr_register(req, take_interrupt, NULL);
    pthread_mutex_lock(&QL.mu);
    if (fh->state == T_WAITING && fh->nonblock) {
        fuse_reply_err(req, EAGAIN);      /* still registered after an interrupted wait */
    } else if (fh->state == T_WAITING && (intr || fuse_req_interrupted(req))) {
        fuse_reply_err(req, EINTR);       /* the waiter stays registered: see QUEUES.md */
    } else if (fh->state == T_WAITING) {
        fh->req = req;                    /* owned by QL from here: see take_interrupt */
        fh->want = size;
    } else {
        serve_locked(req, fh, size);
    }
    pthread_mutex_unlock(&QL.mu);
}

/* A delivery for a local open file that is gone: give the message back (proposed later, by
 * the background proposer: this runs on the applying thread). */
static void give_back(const effect_t *e)
{
    cmdbuf_t b;
    if (e->u.qmsg.claim) {
        cmd_begin(&b, QOP_RETURN, NS_QUEUES, node_now_ms());
        cmd_str(&b, e->u.qmsg.qname);
        cmd_u64(&b, e->u.qmsg.id);
    } else {
        cmd_begin(&b, QOP_UNPOP, NS_QUEUES, node_now_ms());
        cmd_str(&b, e->u.qmsg.qname);
        cmd_u64(&b, e->u.qmsg.id);
        cmd_u32(&b, e->u.qmsg.count);
        cmd_bytes(&b, e->u.qmsg.msg->data, e->u.qmsg.msg->len);
    }
    if (session_bg_propose(node_session(QL.node), &b, NULL, NULL) < 0)
        fprintf(stderr, "quorumfs: queue %s: message %" PRIu64 " could not be given back\n",
                e->u.qmsg.qname, e->u.qmsg.id);
}

/* EFF_QUEUE_MSG for this mount's session: attach the message to the open file with that
 * handle id and answer its parked read; give it back when that file is gone. No state lock
 * is held. */
static void queues_deliver(void *ctx, effect_t *e)
{
    (void)ctx;
    uint64_t self = SID();
    if (e->kind != EFF_QUEUE_MSG || !self || e->sid != self)
        return;                   /* other nodes' sessions are theirs to hand out */
    qfh_t *fh;
    pthread_mutex_lock(&QL.mu);
    HASH_FIND(hh, QL.by_hid, &e->wid, sizeof(e->wid), fh);
    if (fh && (fh->state == T_PROPOSING || fh->state == T_WAITING)) {
        if (e->u.qmsg.gone) {
            fh->state = T_GONE;
        } else {
            fh->state = T_HAVE;
            fh->got = e->u.qmsg.msg;
            e->u.qmsg.msg = NULL;
            fh->got_id = e->u.qmsg.id;
            fh->got_count = e->u.qmsg.count;
        }
        if (fh->req) {
            fuse_req_t r = fh->req;
            fh->req = NULL;
            serve_locked(r, fh, fh->want);
        }
    } else if (!e->u.qmsg.gone) {
        give_back(e);
    }
    pthread_mutex_unlock(&QL.mu);
}

static void qf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    if (fh->kind == QK_POP || fh->kind == QK_CLAIM) {
        take_read(req, fh, size);
        return;
    }
    if (fh->kind == QK_PUSH) {
        fuse_reply_err(req, EBADF);
        return;
    }
    if (fh->text_empty && fh->nonblock) {
        fuse_reply_err(req, EAGAIN);
        return;
    }
    size_t n = off < 0 || (size_t)off >= fh->tlen ? 0 : fh->tlen - (size_t)off;
    if (n > size)
        n = size;
    /* Under mu: the reader may see the reply and close before writev() returns here. */
    pthread_mutex_lock(&fh->mu);
    fuse_reply_buf(req, n ? fh->text + off : NULL, n);
    pthread_mutex_unlock(&fh->mu);
}

/* ---- push ---- */

typedef struct batch {
    cmdbuf_t body;
    uint32_t n;
} batch_t;

static int batch_flush(batch_t *bt, const char *qname)
{
    if (!bt->n)
        return 0;
    if (bt->body.oom) {
        free(bt->body.p);
        memset(bt, 0, sizeof(*bt));
        return -ENOMEM;
    }
    cmdbuf_t b;
    cmd_begin(&b, QOP_PUSH, NS_QUEUES, node_now_ms());
    cmd_str(&b, qname);
    cmd_u32(&b, bt->n);
    cmd_raw(&b, bt->body.p, bt->body.len);
    free(bt->body.p);
    memset(bt, 0, sizeof(*bt));
    return node_propose(QL.node, &b, NULL);
}

static int batch_add(batch_t *bt, const char *qname, const void *p, size_t len)
{
    if (len == 0)
        return 0;                /* empty lines are ignored */
    int rc = 0;
    if (bt->body.len + len > PUSH_BATCH_BYTES)
        rc = batch_flush(bt, qname);
    cmd_bytes(&bt->body, p, len);
    bt->n++;
    return rc;
}

static int buf_append(qfh_t *fh, const char *p, size_t len)
{
    if (fh->blen + len > fh->bcap) {
        size_t cap = fh->bcap ? fh->bcap : 4096;
        while (cap < fh->blen + len)
            cap *= 2;
        uint8_t *nb = realloc(fh->buf, cap);
        if (!nb)
            return -ENOMEM;
        fh->buf = nb;
        fh->bcap = cap;
    }
    memcpy(fh->buf + fh->blen, p, len);
    fh->blen += len;
    return 0;
}

/* Splits data into lines; each complete line is committed before this returns. A partial
 * last line waits in fh->buf for the next write or the release. fh->mu held. */
static int push_write(qfh_t *fh, const char *data, size_t size)
{
    batch_t bt;
    memset(&bt, 0, sizeof(bt));
    int rc = 0, err = 0;
    size_t i = 0;
    while (i < size && rc == 0) {
        const char *nl = memchr(data + i, '\n', size - i);
        size_t seg = nl ? (size_t)(nl - (data + i)) : size - i;
        if (fh->discard) {
            /* Still inside an oversized line: every write() that carries part of it fails
             * (the kernel may have split the first one and reported a short count). */
            err = -EFBIG;
            if (nl)
                fh->discard = 0;
        } else if (fh->blen + seg > QUEUE_MSG_MAX) {
            err = -EFBIG;         /* the line is dropped; the next line starts clean */
            fh->blen = 0;
            fh->discard = !nl;
        } else if (nl && fh->blen == 0) {
            rc = batch_add(&bt, fh->qname, data + i, seg);
        } else {
            rc = buf_append(fh, data + i, seg);
            if (rc == 0 && nl) {
                rc = batch_add(&bt, fh->qname, fh->buf, fh->blen);
                fh->blen = 0;
            }
        }
        i += seg + (nl ? 1 : 0);
    }
    if (rc == 0)
        rc = batch_flush(&bt, fh->qname);
    free(bt.body.p);
    return rc < 0 ? rc : err;
}

static void qf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    if (fh->kind != QK_PUSH) {
        fuse_reply_err(req, EBADF);
        return;
    }
    pthread_mutex_lock(&fh->mu);
    int rc = push_write(fh, buf, size);
    pthread_mutex_unlock(&fh->mu);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* Enqueues the unterminated last line of a push open (at the last close, fsync or release). */
static int push_settle(qfh_t *fh)
{
    pthread_mutex_lock(&fh->mu);
    int rc = 0;
    if (fh->blen && !fh->discard) {
        batch_t bt;
        memset(&bt, 0, sizeof(bt));
        rc = batch_add(&bt, fh->qname, fh->buf, fh->blen);
        if (rc == 0)
            rc = batch_flush(&bt, fh->qname);
        free(bt.body.p);
    }
    fh->blen = 0;
    pthread_mutex_unlock(&fh->mu);
    return rc;
}

static void qf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    /* flush comes at every close(), also of a shell's dup'ed descriptor before it writes
     * (see q_flush in fs/mount.c): an unterminated last line is enqueued here only when the
     * closing process holds no other descriptor on this push file; else at release. */
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->kind == QK_PUSH && !mount_still_open_by(fuse_req_ctx(req)->pid, ino))
        rc = push_settle(fh);
    fuse_reply_err(req, -rc);
}

static void qf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    /* Every complete line is already durable; fsync also commits a pending partial line. */
    fuse_reply_err(req, fh->kind == QK_PUSH ? -push_settle(fh) : 0);
}

static void take_release(qfh_t *fh)
{
    pthread_mutex_lock(&QL.mu);
    int waiting = fh->state == T_WAITING;
    pthread_mutex_unlock(&QL.mu);
    if (waiting) {
        cmdbuf_t b;
        cmd_begin(&b, QOP_CANCEL, NS_QUEUES, node_now_ms());
        cmd_str(&b, fh->qname);
        cmd_u64(&b, SID());
        cmd_u64(&b, fh->hid);
        int rc = node_propose(QL.node, &b, NULL);
        if (rc < 0)
            fprintf(stderr, "quorumfs: queue %s: cancel of a waiting read failed: %s\n",
                    fh->qname, strerror(-rc));
    }
    pthread_mutex_lock(&QL.mu);
    HASH_DELETE(hh, QL.by_hid, fh);
    int undelivered = fh->state == T_HAVE && fh->outoff == 0;
    pthread_mutex_unlock(&QL.mu);
    if (undelivered) {
        /* Committed to this open but never read (interrupted reader): give it back. */
        int rc;
        if (fh->claim) {
            rc = propose_id(QOP_RETURN, fh->qname, fh->got_id);
        } else {
            cmdbuf_t b;
            cmd_begin(&b, QOP_UNPOP, NS_QUEUES, node_now_ms());
            cmd_str(&b, fh->qname);
            cmd_u64(&b, fh->got_id);
            cmd_u32(&b, fh->got_count);
            cmd_bytes(&b, fh->got->data, fh->got->len);
            rc = node_propose(QL.node, &b, NULL);
        }
        if (rc < 0 && rc != -ENOENT)
            fprintf(stderr, "quorumfs: queue %s: message %" PRIu64 " not given back: %s\n",
                    fh->qname, fh->got_id, strerror(-rc));
    }
}

static void qf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    if (fh->kind == QK_PUSH) {
        int rc = push_settle(fh);
        if (rc < 0)
            fprintf(stderr, "quorumfs: queue %s: last line at close not enqueued: %s\n",
                    fh->qname, strerror(-rc));
    } else if (fh->kind == QK_POP || fh->kind == QK_CLAIM) {
        take_release(fh);
    }
    pthread_mutex_lock(&fh->mu);      /* a reply still being written (see qf_read) */
    pthread_mutex_unlock(&fh->mu);
    pthread_mutex_lock(&QL.mu);       /* and for pop/claim, one sent under QL.mu */
    pthread_mutex_unlock(&QL.mu);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

/* ---- directories ---- */

static void qf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    qref_t r;
    int rc = decode(ino, &r);
    if (rc == 0 && r.kind != QK_ROOT && r.kind != QK_DIR && r.kind != QK_CLAIMED &&
        r.kind != QK_DEAD)
        rc = -ENOTDIR;
    qfh_t *fh = rc == 0 ? fh_new(0) : NULL;
    if (rc == 0 && !fh)
        rc = -ENOMEM;
    dirlist_t *d = fh ? &fh->dir : NULL;
    if (rc == 0)
        rc = dirlist_add(d, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", FUSE_ROOT_ID, S_IFDIR);
    if (rc == 0) {
        state_t *st = ST();
        pthread_rwlock_rdlock(&st->lock);
        queue_t *q;
        rc = resolve(st, &r, &q, NULL);
        char num[32];
        if (rc == 0 && r.kind == QK_ROOT) {
            for (queue_t *c = QS(st)->head; c && rc == 0; c = c->next)
                rc = dirlist_add(d, c->name, ino_of(QK_DIR, c->qid, 0), S_IFDIR);
        } else if (rc == 0 && r.kind == QK_DIR) {
            for (size_t i = 0; i < NCTL && rc == 0; i++) {
                int k = ctl_names[i].kind;
                rc = dirlist_add(d, ctl_names[i].name, ino_of(k, q->qid, 0),
                                 k == QK_CLAIMED || k == QK_DEAD ? S_IFDIR : S_IFREG);
            }
        } else if (rc == 0) {
            const qlist_t *l = r.kind == QK_DEAD ? &q->dead : &q->inflight;
            for (const qmsg_t *m = l->head; m && rc == 0; m = m->next) {
                snprintf(num, sizeof(num), "%" PRIu64, m->id);
                rc = dirlist_add(d, num, ino_of(r.kind == QK_DEAD ? QK_DMSG : QK_CMSG, 0, m->id),
                                 S_IFREG);
            }
        }
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc < 0) {
        fh_free(fh);
        fuse_reply_err(req, -rc);
        return;
    }
    if (r.kind == QK_ROOT)
        dirlist_sort(d, 2);
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_open(req, fi) != 0)
        fh_free(fh);
}

static void qf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    dirlist_reply(req, &((qfh_t *)(uintptr_t)fi->fh)->dir, size, off);
}

static void qf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fh_free((qfh_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ---- attributes: touch claimed/<id> extends the lease ---- */

static void qf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    qref_t r;
    int rc = decode(ino, &r);
    if (rc == 0 && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
        rc = -EPERM;
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE) && r.kind != QK_PUSH)
        rc = r.kind == QK_ROOT || r.kind == QK_DIR || r.kind == QK_CLAIMED ||
             r.kind == QK_DEAD ? -EISDIR : -EPERM;
    if (rc == 0 && r.kind == QK_CMSG &&
        (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_ATIME |
                   FUSE_SET_ATTR_ATIME_NOW))) {
        char *qname = NULL;
        rc = queue_name_of(ino, &qname, NULL, NULL);
        if (rc == 0)
            rc = propose_id(QOP_EXTEND, qname, r.id);
        free(qname);
    }
    struct stat s;
    if (rc == 0)
        rc = do_getattr(ino, &s);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &s, 0);
}

/* ---- xattrs: queue settings on the queue directory ---- */

static const struct { const char *name; int which; } q_attrs[] = {
    { "user.visibility_timeout", QSET_VT },
    { "user.max_deliveries", QSET_MAXDEL },
    { "user.max_length", QSET_MAXLEN },
};

static int attr_which(const char *name)
{
    for (size_t i = 0; i < 3; i++)
        if (strcmp(name, q_attrs[i].name) == 0)
            return q_attrs[i].which;
    return 0;
}

static void qf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    char *qname = NULL;
    int kind = 0;
    uint64_t v = 0;
    int which = attr_which(name);
    int rc = queue_name_of(ino, &qname, &kind, NULL);
    if (rc == -EPERM || (rc == 0 && (kind != QK_DIR || strncmp(name, "user.", 5) != 0)))
        rc = -ENOTSUP;
    if (rc == 0 && !which)
        rc = -ENOTSUP;
    if (rc == 0) {
        uint64_t lo = which == QSET_MAXLEN ? 0 : 1;
        uint64_t hi = which == QSET_VT ? QUEUE_VT_MAX : which == QSET_MAXDEL ? QUEUE_MAXDEL_MAX
                                                                             : QUEUE_MAXLEN_MAX;
        if (names_parse_uint(value, size, hi, &v) < 0 || v < lo)
            rc = -EINVAL;
    }
    if (rc == 0) {
        cmdbuf_t b;
        cmd_begin(&b, QOP_SET, NS_QUEUES, node_now_ms());
        cmd_str(&b, qname);
        cmd_u8(&b, (uint8_t)which);
        cmd_u64(&b, v);
        rc = node_propose(QL.node, &b, NULL);
    }
    free(qname);
    fuse_reply_err(req, -rc);
}

static void qf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    /* Back to the default. */
    int which = attr_which(name);
    char *qname = NULL;
    int kind = 0;
    int rc = queue_name_of(ino, &qname, &kind, NULL);
    if (rc == -EPERM || (rc == 0 && kind != QK_DIR))
        rc = -ENODATA;
    if (rc == 0 && !which)
        rc = -ENODATA;
    if (rc == 0) {
        cmdbuf_t b;
        cmd_begin(&b, QOP_SET, NS_QUEUES, node_now_ms());
        cmd_str(&b, qname);
        cmd_u8(&b, (uint8_t)which);
        cmd_u64(&b, which == QSET_VT ? QUEUE_VT_DEFAULT
                    : which == QSET_MAXDEL ? QUEUE_MAXDEL_DEFAULT : 0);
        rc = node_propose(QL.node, &b, NULL);
    }
    free(qname);
    fuse_reply_err(req, -rc);
}

static void reply_xattr(fuse_req_t req, const char *text, size_t len, size_t size)
{
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (len > size)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, text, len);
}

static void qf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    qref_t r;
    int rc = decode(ino, &r);
    char text[32];
    int len = 0;
    if (rc == 0) {
        state_t *st = ST();
        pthread_rwlock_rdlock(&st->lock);
        queue_t *q;
        qmsg_t *m;
        rc = resolve(st, &r, &q, &m);
        int which = attr_which(name);
        if (rc == 0 && r.kind == QK_DIR && which)
            len = snprintf(text, sizeof(text), "%" PRIu64,
                           which == QSET_VT ? q->vt_s : which == QSET_MAXDEL ? q->maxdel
                                                                               : q->maxlen);
        else if (rc == 0 && m && strcmp(name, "user.deliveries") == 0)
            len = snprintf(text, sizeof(text), "%" PRIu32, m->count);
        else if (rc == 0)
            rc = -ENODATA;
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        reply_xattr(req, text, (size_t)len, size);
}

static void qf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    qref_t r;
    int rc = decode(ino, &r);
    static const char dir_list[] =
        "user.visibility_timeout\0user.max_deliveries\0user.max_length";
    static const char msg_list[] = "user.deliveries";
    if (rc < 0) {
        fuse_reply_err(req, -rc);
    } else if (r.kind == QK_DIR) {
        reply_xattr(req, dir_list, sizeof(dir_list), size);
    } else if (r.kind == QK_CMSG || r.kind == QK_DMSG) {
        reply_xattr(req, msg_list, sizeof(msg_list), size);
    } else {
        reply_xattr(req, "", 0, size);
    }
}

static const struct fuse_lowlevel_ops queues_fuse = {
    .lookup = qf_lookup,
    .getattr = qf_getattr,
    .setattr = qf_setattr,
    .mkdir = qf_mkdir,
    .unlink = qf_unlink,
    .rmdir = qf_rmdir,
    .rename = qf_rename,
    .create = qf_create,
    .open = qf_open,
    .read = qf_read,
    .write = qf_write,
    .flush = qf_flush,
    .release = qf_release,
    .fsync = qf_fsync,
    .opendir = qf_opendir,
    .readdir = qf_readdir,
    .releasedir = qf_releasedir,
    .setxattr = qf_setxattr,
    .getxattr = qf_getxattr,
    .listxattr = qf_listxattr,
    .removexattr = qf_removexattr,
};

/* ================================================================ leader side */

/* Proposes EXPIRE for leases that passed their end. */
static void q_sweep(void *ctx)
{
    (void)ctx;
    node_t *n = QL.node;
    state_t *st = node_state(n);
    uint64_t now = node_now_ms();
    for (int round = 0; round < 64; round++) {
        char *qname = NULL;
        uint64_t ids[256];
        uint32_t cnt = 0;
        pthread_rwlock_rdlock(&st->lock);
        for (queue_t *q = QS(st)->head; q && !qname; q = q->next) {
            for (qmsg_t *m = q->inflight.head; m && cnt < 256; m = m->next)
                if (m->expires_ms <= now)
                    ids[cnt++] = m->id;
            if (cnt)
                qname = strdup(q->name);
        }
        pthread_rwlock_unlock(&st->lock);
        if (!qname)
            return;
        cmdbuf_t b;
        cmd_begin(&b, QOP_EXPIRE, NS_QUEUES, now);
        cmd_str(&b, qname);
        cmd_u32(&b, cnt);
        for (uint32_t i = 0; i < cnt; i++)
            cmd_u64(&b, ids[i]);
        int rc = node_propose(n, &b, NULL);
        free(qname);
        if (rc < 0) {
            fprintf(stderr, "quorumfs: queue lease expiry not committed: %s\n", strerror(-rc));
            return;
        }
    }
}

static void *q_start(struct node *n)
{
    QL.node = n;
    return &QL;
}

static void q_stop(void *ctx)
{
    (void)ctx;
    QL.node = NULL;
}

const ns_sm_t queues_sm = {
    .init = q_init_state,
    .free = q_free_state,
    .apply = q_apply,
    .session_end = q_session_end,
    .snapshot = q_snapshot,
    .restore = q_restore,
};

const ns_front_t queues_front = {
    .start = q_start,
    .sweep = q_sweep,
    .stop = q_stop,
    .deliver = queues_deliver,
    .fuse = &queues_fuse,
};
