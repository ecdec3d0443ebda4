/* fs/locks_sm.c — the locks/ state machine (see locks_sm.h, docs/LOCKS.md). Locks live in a
 * named-object table (fs/ntable.h, creation order); each has its holders in grant order and
 * a FIFO of waiters, both counted lists. Every acquisition draws a fencing token from one
 * counter that only grows. Whatever frees a lock grants waiters from the head and records
 * each grant (or each dropped wait) as an effect.
 *
 * Determinism: every walk that reaches applied state, an effect or a snapshot follows the
 * lists (creation, grant or FIFO order), never a hash. Out of memory aborts (x* allocators,
 * blob_xnew); a command is decoded and checked whole before it changes anything. The one
 * command that fails after a change is the documented flock(2) conversion: a non-blocking
 * LOCK that cannot be granted has first given up the owner's old hold (-EAGAIN), the same
 * on every replica. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/locks_sm.h"
#include "fs/names.h"
#include "fs/ntable.h"
#include "fs/session_sm.h"

#define LSNAP_VERSION 2   /* 2: the session table moved to the state's own section */

typedef struct lholder {
    lock_hold_t h;                   /* what the read API shows */
    struct lholder *next;
} lholder_t;

typedef struct hlist {
    lholder_t *head, *tail;
    uint32_t n;
} hlist_t;

typedef struct lock {
    nentry_t ent;                    /* name, lid (ent.id), creation order */
    uint64_t ctime_ms, mtime_ms;
    uint8_t ephemeral;               /* made by an exclusive create: gone when that hold ends */
    uint32_t ttl_s;                  /* create holds end after ttl without a touch (0 = never) */
    uint64_t expires_ms;             /* of the current create hold, 0 = none */
    uint64_t last_fence;
    blob_t *data;                    /* bytes written into the file (may be NULL) */
    hlist_t holders;                 /* in grant order */
    hlist_t waiters;                 /* FIFO */
} lock_t;

typedef struct lstate {
    ntable_t locks;
    uint64_t next_lid, fence;
} lstate_t;

static lstate_t *LS(const state_t *st) { return st->ns_state[NS_LOCKS]; }

static lock_t *lock_of(const nentry_t *e) { return e ? NTABLE_OBJ(e, lock_t, ent) : NULL; }

static lock_t *find_lock(const lstate_t *ls, const char *name, size_t len)
{
    return lock_of(ntable_find(&ls->locks, name, len));
}

static lock_t *find_lid(const lstate_t *ls, uint64_t lid)
{
    return lock_of(ntable_find_id(&ls->locks, lid));
}

/* ---------------------------------------------------------------- lists */

static void list_append(hlist_t *l, lholder_t *x)
{
    x->next = NULL;
    if (l->tail)
        l->tail->next = x;
    else
        l->head = x;
    l->tail = x;
    l->n++;
}

static lholder_t *list_pop(hlist_t *l)
{
    lholder_t *x = l->head;
    ASSERT(x && l->n > 0);
    l->head = x->next;
    if (!l->head)
        l->tail = NULL;
    l->n--;
    x->next = NULL;
    return x;
}

static void list_free(hlist_t *l)
{
    for (lholder_t *x = l->head, *n; x; x = n) {
        n = x->next;
        free(x);
    }
    memset(l, 0, sizeof(*l));
}

static lholder_t *holder_new(const lock_hold_t *h)
{
    lholder_t *x = xcalloc(1, sizeof(*x));
    x->h = *h;
    return x;
}

static lock_t *lock_add(lstate_t *ls, const char *name, size_t len, uint64_t lid)
{
    lock_t *l = xcalloc(1, sizeof(*l));
    ntable_add(&ls->locks, &l->ent, name, len, lid);
    return l;
}

static void lock_del(lstate_t *ls, lock_t *l)
{
    ntable_del(&ls->locks, &l->ent);
    list_free(&l->holders);
    list_free(&l->waiters);
    blob_unref(l->data);
    free(l);
}

/* ---------------------------------------------------------------- grants */

/* Wait (sid, wid) was granted with fence (rc 0) or ended with rc: an effect. */
static void outbox(effects_t *fx, uint64_t sid, uint64_t wid, uint64_t fence, int rc)
{
    effect_t *e = effects_add(fx, EFF_LOCK_WAIT, NS_LOCKS, sid, wid);
    e->u.lock.fence = fence;
    e->u.lock.rc = rc;
}

/* Whether a request for mode fits beside l's holders. */
static int compatible(const lock_t *l, uint8_t mode)
{
    if (!l->holders.head)
        return 1;
    if (mode == LM_EXCL)
        return 0;
    for (const lholder_t *x = l->holders.head; x; x = x->next)
        if (x->h.mode == LM_EXCL)
            return 0;
    return 1;
}

static void grant(lstate_t *ls, lock_t *l, lholder_t *x, uint64_t now)
{
    x->h.fence = ++ls->fence;
    x->h.since_ms = now;
    l->last_fence = x->h.fence;
    if (x->h.kind == LK_CREATE)
        l->expires_ms = l->ttl_s ? now + (uint64_t)l->ttl_s * 1000 : 0;
    list_append(&l->holders, x);
}

/* Grants waiters from the head of the FIFO while they fit (never one behind a blocked one). */
static void grant_waiters(lstate_t *ls, lock_t *l, uint64_t now, effects_t *fx)
{
    while (l->waiters.head && compatible(l, l->waiters.head->h.mode)) {
        lholder_t *w = list_pop(&l->waiters);
        grant(ls, l, w, now);
        outbox(fx, w->h.sid, w->h.wid, w->h.fence, 0);
    }
}

/* Removes from list l the entries matching (sid, kind, owner) or, when wid is nonzero,
 * (sid, wid); kind 0 matches every kind of sid. Returns how many; dropped waiters (waiters
 * set) are told rc. */
static int drop(effects_t *fx, hlist_t *l, uint64_t sid, uint8_t kind, uint64_t owner,
                uint64_t wid, int waiters, int rc)
{
    int n = 0;
    lholder_t **pp = &l->head, *last = NULL;
    while (*pp) {
        lholder_t *x = *pp;
        const lock_hold_t *h = &x->h;
        int match = h->sid == sid &&
                    (wid ? h->wid == wid : (!kind || (h->kind == kind && h->owner == owner)));
        if (match) {
            *pp = x->next;
            if (waiters)
                outbox(fx, h->sid, h->wid, 0, rc);
            free(x);
            l->n--;
            n++;
        } else {
            last = x;
            pp = &x->next;
        }
    }
    l->tail = last;
    return n;
}

static const lholder_t *create_hold(const lock_t *l)
{
    for (const lholder_t *x = l->holders.head; x; x = x->next)
        if (x->h.kind == LK_CREATE)
            return x;
    return NULL;
}

/* After holds went away: an ephemeral lock whose create hold ended and that nobody else uses
 * disappears; otherwise waiters move up. */
static void settle(lstate_t *ls, lock_t *l, uint64_t now, effects_t *fx)
{
    int created = create_hold(l) != NULL;
    if (!created)
        l->expires_ms = 0;
    if (l->ephemeral && !created) {
        if (!l->holders.head && !l->waiters.head) {
            lock_del(ls, l);
            return;
        }
        l->ephemeral = 0;
    }
    grant_waiters(ls, l, now, fx);
}

/* ---------------------------------------------------------------- apply */

static lock_t *arg_lock(const lstate_t *ls, cmdrd_t *r)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    if (r->err || len == 0)
        return NULL;
    return find_lock(ls, name, len);
}

static void result_grant(sm_result_t *res, uint8_t granted, uint64_t a, uint64_t b)
{
    if (!res)
        return;
    res->data[0] = granted;
    memcpy(res->data + 1, &a, 8);
    memcpy(res->data + 9, &b, 8);
    res->len = 17;
}

static int apply_create(state_t *st, lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r,
                        sm_result_t *res)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    uint8_t excl = cmd_get_u8(r);
    uint64_t sid = cmd_get_u64(r);
    uint32_t pid = cmd_get_u32(r);
    if (r->err || names_check(name, len, 0) < 0)
        return -EINVAL;
    lock_t *l = find_lock(ls, name, len);
    if (l) {
        if (excl)
            return -EEXIST;
        result_grant(res, 0, l->ent.id, 0);
        return 0;
    }
    if (excl && !session_find(&st->sessions, sid))
        return -ENOLCK;
    l = lock_add(ls, name, len, ++ls->next_lid);
    l->ctime_ms = l->mtime_ms = h->now_ms;
    if (!excl) {
        result_grant(res, 0, l->ent.id, 0);
        return 0;
    }
    lock_hold_t ho = { .sid = sid, .pid = pid, .kind = LK_CREATE, .mode = LM_EXCL };
    lholder_t *x = holder_new(&ho);
    l->ephemeral = 1;
    grant(ls, l, x, h->now_ms);
    result_grant(res, 1, l->ent.id, x->h.fence);
    return 0;
}

static int apply_lock(state_t *st, lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r,
                      sm_result_t *res, effects_t *fx)
{
    lock_t *l = arg_lock(ls, r);
    lock_hold_t req;
    memset(&req, 0, sizeof(req));
    req.sid = cmd_get_u64(r);
    req.kind = cmd_get_u8(r);
    req.owner = cmd_get_u64(r);
    req.mode = cmd_get_u8(r);
    uint8_t wait = cmd_get_u8(r);
    req.wid = cmd_get_u64(r);
    req.pid = cmd_get_u32(r);
    if (r->err || (req.kind != LK_FLOCK && req.kind != LK_POSIX) ||
        (req.mode != LM_SHARED && req.mode != LM_EXCL))
        return -EINVAL;
    if (!l)
        return -ENOENT;
    if (!session_find(&st->sessions, req.sid))
        return -ENOLCK;
    for (lholder_t *x = l->holders.head; x; x = x->next)
        if (x->h.sid == req.sid && x->h.kind == req.kind && x->h.owner == req.owner &&
            x->h.mode == req.mode) {
            x->h.wid = req.wid;     /* a repeated request; a cancel of an older one misses */
            result_grant(res, 1, x->h.fence, 0);
            return 0;
        }
    /* A conversion gives up the old hold first (flock(2) semantics), also when the new
     * request then fails with EAGAIN (see the note at the top). */
    if (drop(fx, &l->holders, req.sid, req.kind, req.owner, 0, 0, 0))
        grant_waiters(ls, l, h->now_ms, fx);
    if (!l->waiters.head && compatible(l, req.mode)) {
        lholder_t *x = holder_new(&req);
        grant(ls, l, x, h->now_ms);
        result_grant(res, 1, x->h.fence, 0);
        return 0;
    }
    if (!wait)
        return -EAGAIN;
    lholder_t *w = holder_new(&req);
    w->h.since_ms = h->now_ms;
    list_append(&l->waiters, w);
    result_grant(res, 0, 0, 0);
    return 0;
}

static int apply_unlock(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    lock_t *l = arg_lock(ls, r);
    uint64_t sid = cmd_get_u64(r);
    uint8_t kind = cmd_get_u8(r);
    uint64_t owner = cmd_get_u64(r);
    if (r->err || (kind != LK_FLOCK && kind != LK_POSIX))
        return -EINVAL;
    if (!l)
        return -ENOENT;
    int n = drop(fx, &l->holders, sid, kind, owner, 0, 0, 0);
    n += drop(fx, &l->waiters, sid, kind, owner, 0, 1, -EINTR);
    if (n)
        settle(ls, l, h->now_ms, fx);
    return 0;
}

static int apply_cancel(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    lock_t *l = arg_lock(ls, r);
    uint64_t sid = cmd_get_u64(r), wid = cmd_get_u64(r);
    if (r->err || !wid)
        return -EINVAL;
    if (!l)
        return -ENOENT;
    int n = drop(fx, &l->waiters, sid, 0, 0, wid, 0, 0);
    n += drop(fx, &l->holders, sid, 0, 0, wid, 0, 0);
    if (n)
        settle(ls, l, h->now_ms, fx);
    return 0;
}

static int apply_unlink(lstate_t *ls, cmdrd_t *r)
{
    lock_t *l = arg_lock(ls, r);
    if (r->err)
        return -EINVAL;
    if (!l)
        return -ENOENT;
    if (l->waiters.head)
        return -EBUSY;
    for (const lholder_t *x = l->holders.head; x; x = x->next)
        if (x->h.kind != LK_CREATE)
            return -EBUSY;        /* held through flock/fcntl: close it first */
    lock_del(ls, l);
    return 0;
}

static int apply_setttl(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r)
{
    lock_t *l = arg_lock(ls, r);
    uint32_t ttl = cmd_get_u32(r);
    if (r->err || ttl > LOCK_TTL_MAX)
        return -EINVAL;
    if (!l)
        return -ENOENT;
    l->ttl_s = ttl;
    if (create_hold(l))
        l->expires_ms = ttl ? h->now_ms + (uint64_t)ttl * 1000 : 0;
    return 0;
}

static int apply_touch(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r)
{
    lock_t *l = arg_lock(ls, r);
    if (r->err)
        return -EINVAL;
    if (!l)
        return -ENOENT;
    l->mtime_ms = h->now_ms;
    if (create_hold(l) && l->ttl_s)
        l->expires_ms = h->now_ms + (uint64_t)l->ttl_s * 1000;
    return 0;
}

static int apply_expire(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    lock_t *l = arg_lock(ls, r);
    uint64_t fence = cmd_get_u64(r);
    if (r->err)
        return -EINVAL;
    if (!l)
        return -ENOENT;
    if (!l->expires_ms || l->expires_ms > h->now_ms)
        return -EAGAIN;           /* touched since the leader looked */
    const lholder_t *x = create_hold(l);
    if (!x || x->h.fence != fence)
        return -ENOENT;
    /* The create hold is the only holder (it is exclusive), so it is the head. */
    ASSERT(l->holders.head == x && l->holders.n == 1);
    free(list_pop(&l->holders));
    settle(ls, l, h->now_ms, fx);
    return 0;
}

/* DATA may end with the create fence of the descriptor it was written through (commands
 * written before it existed, and writes through descriptors that hold no create lock, carry
 * none: 0). With one, the write lands only while that hold is still the lock's: a
 * descriptor whose TTL ran out, or whose lock another taker now has, gets EIO even when its
 * front's own check passed just before. */
static int apply_data(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r)
{
    lock_t *l = arg_lock(ls, r);
    const uint8_t *p;
    size_t len = cmd_get_bytes(r, &p);
    uint64_t fence = r->off < r->len ? cmd_get_u64(r) : 0;
    if (r->err)
        return -EINVAL;
    if (fence && (!l || !create_hold(l) || create_hold(l)->h.fence != fence))
        return -EIO;
    if (!l)
        return -ENOENT;
    if (len > LOCK_DATA_MAX)
        return -EFBIG;
    blob_t *b = blob_xnew(p, len);
    blob_unref(l->data);
    l->data = b;
    l->mtime_ms = h->now_ms;
    return 0;
}

static int l_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                   effects_t *fx)
{
    lstate_t *ls = LS(st);
    switch (h->op) {
    case LOP_CREATE: return apply_create(st, ls, h, r, res);
    case LOP_LOCK:   return apply_lock(st, ls, h, r, res, fx);
    case LOP_UNLOCK: return apply_unlock(ls, h, r, fx);
    case LOP_CANCEL: return apply_cancel(ls, h, r, fx);
    case LOP_UNLINK: return apply_unlink(ls, r);
    case LOP_SETTTL: return apply_setttl(ls, h, r);
    case LOP_TOUCH:  return apply_touch(ls, h, r);
    case LOP_EXPIRE: return apply_expire(ls, h, r, fx);
    case LOP_DATA:   return apply_data(ls, h, r);
    default:         return -EINVAL;
    }
}

static void l_init_state(state_t *st)
{
    st->ns_state[NS_LOCKS] = xcalloc(1, sizeof(lstate_t));
}

static void l_free_state(state_t *st)
{
    lstate_t *ls = LS(st);
    if (!ls)
        return;
    while (ls->locks.head)
        lock_del(ls, lock_of(ls->locks.head));
    free(ls);
    st->ns_state[NS_LOCKS] = NULL;
}

/* Everything session sid held or waited for goes (its waits are told -ENOLCK); create
 * locks it held end. Locks in creation order. */
static void l_session_end(state_t *st, uint64_t sid, uint64_t now, effects_t *fx)
{
    lstate_t *ls = LS(st);
    for (nentry_t *e = ls->locks.head, *next; e; e = next) {
        next = e->next;
        lock_t *l = lock_of(e);
        int n = drop(fx, &l->holders, sid, 0, 0, 0, 0, 0);
        n += drop(fx, &l->waiters, sid, 0, 0, 0, 1, -ENOLCK);
        if (n)
            settle(ls, l, now, fx);
    }
}

/* ---------------------------------------------------------------- snapshot
 * Format: docs/LOCKS.md "Snapshot section". */

/* The record of a holder or waiter: these u64 fields in this order, then u32 pid, u8 kind,
 * u8 mode. Writing and reading share the list, so they cannot drift apart. */
#define HOLD_U64S(h) { &(h)->sid, &(h)->owner, &(h)->wid, &(h)->fence, &(h)->since_ms }
#define HOLD_NU64 5

static void snap_list(snapout_t *o, const hlist_t *l)
{
    so_u32(o, l->n);
    for (const lholder_t *x = l->head; x; x = x->next) {
        const uint64_t *v[HOLD_NU64] = HOLD_U64S(&x->h);
        for (int i = 0; i < HOLD_NU64; i++)
            so_u64(o, *v[i]);
        so_u32(o, x->h.pid);
        so_u8(o, x->h.kind);
        so_u8(o, x->h.mode);
    }
}

/* The rest of a lock's record, after its key. */
static void snap_lock(void *arg, snapout_t *o, const nentry_t *e)
{
    const lock_t *l = lock_of(e);
    so_u64(o, l->ctime_ms);
    so_u64(o, l->mtime_ms);
    so_u8(o, l->ephemeral);
    so_u32(o, l->ttl_s);
    so_u64(o, l->expires_ms);
    so_u64(o, l->last_fence);
    so_blob(o, l->data ? (const void *)l->data->data : "", l->data ? l->data->len : 0);
    snap_list(o, &l->holders);
    snap_list(o, &l->waiters);
}

static void l_snapshot(const state_t *st, snapout_t *o)
{
    const lstate_t *ls = LS(st);
    so_u32(o, LSNAP_VERSION);
    so_u64(o, ls->next_lid);
    so_u64(o, ls->fence);
    ntable_snapshot(o, &ls->locks, snap_lock, NULL);
}

/* Reads one list as it is; locks_sm_verify judges it with the rest of the section. */
static int restore_list(snapin_t *in, hlist_t *l)
{
    uint32_t n = si_u32(in);
    for (uint32_t i = 0; i < n && !in->err; i++) {
        lock_hold_t h;
        memset(&h, 0, sizeof(h));
        uint64_t *v[HOLD_NU64] = HOLD_U64S(&h);
        for (int j = 0; j < HOLD_NU64; j++)
            *v[j] = si_u64(in);
        h.pid = si_u32(in);
        h.kind = si_u8(in);
        h.mode = si_u8(in);
        if (!in->err)
            list_append(l, holder_new(&h));
    }
    return in->err;
}

/* Reads the rest of lock k's record and adds it (ntable_restore's fn; arg: the lstate). */
static int restore_lock(void *arg, snapin_t *in, const nkey_t *k)
{
    lock_t *l = lock_add(arg, k->name, k->len, k->id);
    l->ctime_ms = si_u64(in);
    l->mtime_ms = si_u64(in);
    l->ephemeral = si_u8(in);
    l->ttl_s = si_u32(in);
    l->expires_ms = si_u64(in);
    l->last_fence = si_u64(in);
    uint32_t dl = si_u32(in);
    if (in->err)
        return in->err;
    if (dl > LOCK_DATA_MAX)   /* before allocating it */
        return si_corrupt(in, "locks: lock data over LOCK_DATA_MAX");
    if (dl) {
        l->data = blob_xnew(NULL, dl);
        si_bytes(in, l->data->data, dl);
    }
    int rc = restore_list(in, &l->holders);
    return rc < 0 ? rc : restore_list(in, &l->waiters);
}

/* Reads the section, then rejects it (si_corrupt, naming the reason) unless it passes
 * locks_sm_verify: whatever restore accepts, locks_sm_check accepts too. The session
 * table is restored before. */
static int l_restore(state_t *st, snapin_t *in)
{
    lstate_t *ls = LS(st);
    if (si_u32(in) != LSNAP_VERSION)
        return in->err ? in->err : -QERR_FORMAT;
    ls->next_lid = si_u64(in);
    ls->fence = si_u64(in);
    int rc = ntable_restore(&ls->locks, in, ls->next_lid, "locks", restore_lock, ls);
    if (rc < 0)
        return rc;
    const char *why = locks_sm_verify(st);
    if (why)
        return si_corrupt(in, why);
    /* A grant or a dropped wait may be in the entries the snapshot replaced: the front
     * re-checks its parked waits against the state (fs/state.c delivers it after the lock). */
    effects_add(&st->outbox, EFF_RESTORED, NS_LOCKS, 0, 0);
    return 0;
}

/* ---------------------------------------------------------------- invariants */

/* The first broken invariant of one list of l (holders: waiters 0), or NULL; *excl gets
 * the number of its exclusive entries. Holders have fences growing strictly up to the
 * lock's last one; waiters have none. Both are in time order, of live sessions. */
static const char *verify_list(const state_t *st, const lock_t *l, const hlist_t *list,
                               int waiters, uint32_t *excl)
{
    uint32_t n = 0;
    uint64_t fence = 0, since = 0;
    const lholder_t *last = NULL;
    *excl = 0;
    for (const lholder_t *x = list->head; x; last = x, x = x->next) {
        const lock_hold_t *h = &x->h;
        if (++n > list->n)      /* also ends a cycle */
            return "locks: a list longer than its count";
        if (!session_find(&st->sessions, h->sid))
            return "locks: a holder or waiter of a session that is not live";
        if (h->mode != LM_SHARED && h->mode != LM_EXCL)
            return "locks: a holder or waiter of an unknown mode";
        if (h->kind != LK_FLOCK && h->kind != LK_POSIX && (waiters || h->kind != LK_CREATE))
            return "locks: a holder of an unknown kind, or a waiting create";
        if (h->kind == LK_CREATE && (h->mode != LM_EXCL || h->owner || h->wid))
            return "locks: a create hold that is shared or has an owner or a wait id";
        if (h->since_ms < since || h->since_ms > st->now_ms)
            return "locks: holders or waiters out of time order, or since a time to come";
        since = h->since_ms;
        if (waiters && h->fence)
            return "locks: a waiter with a fence";
        if (!waiters && (h->fence <= fence || h->fence > l->last_fence))
            return "locks: holder fences not growing in grant order up to the lock's last";
        fence = h->fence;
        *excl += h->mode == LM_EXCL;
    }
    if (list->tail != last || list->n != n)
        return "locks: a list's tail or count differs from its entries";
    return NULL;
}

const char *locks_sm_verify(const state_t *st)
{
    const lstate_t *ls = LS(st);
    const char *why;
    for (const nentry_t *e = ls->locks.head; e; e = e->next) {
        const lock_t *l = lock_of(e);
        if (e->id > ls->next_lid || names_check(e->name, e->namelen, 0) < 0)
            return "locks: a lock id above the ids handed out, or an invalid name";
        if (l->ctime_ms > l->mtime_ms || l->mtime_ms > st->now_ms)
            return "locks: a lock changed before it was made, or at a time to come";
        if (l->last_fence > ls->fence)
            return "locks: a lock's last fence above the fence counter";
        if (l->ttl_s > LOCK_TTL_MAX || (l->data && l->data->len > LOCK_DATA_MAX))
            return "locks: a TTL or data over its maximum";
        /* Holders are compatible: one exclusive holder, or shared ones only. */
        uint32_t excl;
        if ((why = verify_list(st, l, &l->holders, 0, &excl)))
            return why;
        if (excl && l->holders.n != 1)
            return "locks: an exclusive holder beside other holders";
        /* FIFO: a waiter that fits would have been granted, so the head does not. */
        if ((why = verify_list(st, l, &l->waiters, 1, &excl)))
            return why;
        if (l->waiters.head && compatible(l, l->waiters.head->h.mode))
            return "locks: a first waiter that could be granted";
        /* A create lock: the exclusive create's hold, its flag and its TTL end agree; the
         * end is the time of the grant or of a renewal since, plus the TTL. */
        const lholder_t *c = create_hold(l);
        if (l->ephemeral != (c != NULL))
            return "locks: an ephemeral flag that differs from the create hold";
        if ((l->expires_ms != 0) != (c && l->ttl_s))
            return "locks: a TTL end without a create hold with a TTL, or none with one";
        uint64_t span = (uint64_t)l->ttl_s * 1000;
        if (l->expires_ms && (l->expires_ms < span || l->expires_ms - span < c->h.since_ms ||
                              l->expires_ms - span > st->now_ms))
            return "locks: a TTL end that is not a renewal's time plus the TTL";
    }
    return NULL;
}

void locks_sm_check(const state_t *st)
{
    ASSERT(LS(st));
    ntable_check(&LS(st)->locks);
    SM_ASSERT_VERIFIED(locks_sm_verify(st));
}

/* ---------------------------------------------------------------- read API */

static void view_lock(const lock_t *l, lock_view_t *v)
{
    const lholder_t *c = create_hold(l);
    v->lid = l->ent.id;
    v->name = l->ent.name;
    v->ctime_ms = l->ctime_ms;
    v->mtime_ms = l->mtime_ms;
    v->ttl_s = l->ttl_s;
    v->expires_ms = l->expires_ms;
    v->create_fence = c ? c->h.fence : 0;
    v->last_fence = l->last_fence;
    v->holders = l->holders.n;
    v->waiters = l->waiters.n;
    v->mode = l->holders.head ? l->holders.head->h.mode : 0;
    v->data = l->data;
}

int locks_sm_get(const state_t *st, const char *name, size_t len, lock_view_t *v)
{
    const lock_t *l = find_lock(LS(st), name, len);
    if (!l)
        return -ENOENT;
    view_lock(l, v);
    return 0;
}

int locks_sm_get_lid(const state_t *st, uint64_t lid, lock_view_t *v)
{
    const lock_t *l = find_lid(LS(st), lid);
    if (!l)
        return -ENOENT;
    view_lock(l, v);
    return 0;
}

int locks_sm_each(const state_t *st, int (*fn)(void *arg, const lock_view_t *v), void *arg)
{
    for (const nentry_t *e = LS(st)->locks.head; e; e = e->next) {
        lock_view_t v;
        view_lock(lock_of(e), &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int locks_sm_each_hold(const state_t *st, uint64_t lid, int waiters,
                       int (*fn)(void *arg, const lock_hold_t *h), void *arg)
{
    const lock_t *l = find_lid(LS(st), lid);
    if (!l)
        return -ENOENT;
    for (const lholder_t *x = (waiters ? &l->waiters : &l->holders)->head; x; x = x->next) {
        int rc = fn(arg, &x->h);
        if (rc)
            return rc;
    }
    return 0;
}

int locks_sm_owner_active(const state_t *st, const char *name, uint64_t sid, uint8_t kind,
                          uint64_t owner)
{
    const lock_t *l = find_lock(LS(st), name, strlen(name));
    if (!l)
        return 0;
    for (int pass = 0; pass < 2; pass++)
        for (const lholder_t *x = (pass ? &l->waiters : &l->holders)->head; x; x = x->next)
            if (x->h.sid == sid && x->h.kind == kind && x->h.owner == owner)
                return 1;
    return 0;
}

/* ---------------------------------------------------------------- encoders */

static void begin(cmdbuf_t *b, uint8_t op, uint64_t now, const char *name)
{
    cmd_begin(b, op, NS_LOCKS, now);
    cmd_str(b, name);
}

void locks_cmd_create(cmdbuf_t *b, uint64_t now, const char *name, int excl, uint64_t sid,
                      uint32_t pid)
{
    begin(b, LOP_CREATE, now, name);
    cmd_u8(b, excl ? 1 : 0);
    cmd_u64(b, sid);
    cmd_u32(b, pid);
}

void locks_cmd_lock(cmdbuf_t *b, uint64_t now, const char *name, uint64_t sid, uint8_t kind,
                    uint64_t owner, uint8_t mode, int wait, uint64_t wid, uint32_t pid)
{
    begin(b, LOP_LOCK, now, name);
    cmd_u64(b, sid);
    cmd_u8(b, kind);
    cmd_u64(b, owner);
    cmd_u8(b, mode);
    cmd_u8(b, wait ? 1 : 0);
    cmd_u64(b, wid);
    cmd_u32(b, pid);
}

void locks_cmd_unlock(cmdbuf_t *b, uint64_t now, const char *name, uint64_t sid,
                      uint8_t kind, uint64_t owner)
{
    begin(b, LOP_UNLOCK, now, name);
    cmd_u64(b, sid);
    cmd_u8(b, kind);
    cmd_u64(b, owner);
}

void locks_cmd_cancel(cmdbuf_t *b, uint64_t now, const char *name, uint64_t sid,
                      uint64_t wid)
{
    begin(b, LOP_CANCEL, now, name);
    cmd_u64(b, sid);
    cmd_u64(b, wid);
}

void locks_cmd_unlink(cmdbuf_t *b, uint64_t now, const char *name)
{
    begin(b, LOP_UNLINK, now, name);
}

void locks_cmd_setttl(cmdbuf_t *b, uint64_t now, const char *name, uint32_t ttl_s)
{
    begin(b, LOP_SETTTL, now, name);
    cmd_u32(b, ttl_s);
}

void locks_cmd_touch(cmdbuf_t *b, uint64_t now, const char *name)
{
    begin(b, LOP_TOUCH, now, name);
}

void locks_cmd_expire(cmdbuf_t *b, uint64_t now, const char *name, uint64_t fence)
{
    begin(b, LOP_EXPIRE, now, name);
    cmd_u64(b, fence);
}

void locks_cmd_data(cmdbuf_t *b, uint64_t now, const char *name, const void *p, size_t len,
                    uint64_t fence)
{
    begin(b, LOP_DATA, now, name);
    cmd_bytes(b, p, len);
    cmd_u64(b, fence);
}

/* ---------------------------------------------------------------- results */

void locks_result_create(const sm_result_t *res, int *held, uint64_t *lid, uint64_t *fence)
{
    ASSERT(res->code == 0 && res->len == 17);
    if (held)
        *held = res->data[0];
    if (lid)
        memcpy(lid, res->data + 1, 8);
    if (fence)
        memcpy(fence, res->data + 9, 8);
}

void locks_result_lock(const sm_result_t *res, int *granted, uint64_t *fence)
{
    ASSERT(res->code == 0 && res->len == 17);
    if (granted)
        *granted = res->data[0];
    if (fence)
        memcpy(fence, res->data + 1, 8);
}

const ns_sm_t locks_sm = {
    .init = l_init_state,
    .free = l_free_state,
    .apply = l_apply,
    .session_end = l_session_end,
    .snapshot = l_snapshot,
    .restore = l_restore,
    .check = locks_sm_check,
};
