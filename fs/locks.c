/* fs/locks.c — the locks/ namespace (FILE-API §3, design in docs/LOCKS.md). The replicated
 * part keeps, per lock, its holders and a FIFO of waiters; every acquisition draws a fencing
 * token from one counter that only grows. Apply decides grants and emits them as
 * EFF_LOCK_WAIT effects (fs/effects.h), delivered as replies to parked flock/fcntl requests.
 * The FUSE side serves locks/<name> files, flock and setlk/getlk, exclusive create, TTLs and
 * `cat`. Sessions, which holds belong to, are the shard's (fs/session_sm.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/dirlist.h"
#include "fs/intr.h"
#include "fs/locks.h"
#include "fs/names.h"
#include "fs/node.h"
#include "fs/session.h"

#define LSNAP_VERSION 2   /* 2: the session table moved to the state's own section */

/* ================================================================ replicated state */

typedef struct lholder {
    uint64_t sid, owner, wid, fence, since_ms;
    uint32_t pid;
    uint8_t kind, mode;
    struct lholder *next;
} lholder_t;

typedef struct lock {
    uint64_t lid;
    char *name;
    uint64_t ctime_ms, mtime_ms;
    uint8_t ephemeral;           /* made by an exclusive create: gone when that hold ends */
    uint32_t ttl_s;              /* create holds: end after ttl without a touch (0 = never) */
    uint64_t expires_ms;         /* of the current create hold, 0 = none */
    uint64_t last_fence;
    blob_t *data;                /* bytes written into the file (may be NULL) */
    lholder_t *holders;          /* in grant order */
    lholder_t *waiters;          /* FIFO */
    struct lock *prev, *next;    /* creation order */
    UT_hash_handle hh;           /* by name */
    UT_hash_handle hl;           /* by lid */
} lock_t;

typedef struct lstate {
    lock_t *by_name, *by_lid, *head, *tail;
    uint64_t next_lid, fence;
} lstate_t;

static lstate_t *LS(state_t *st) { return st->ns_state[NS_LOCKS]; }

static lock_t *find_lock(lstate_t *ls, const char *name, size_t len)
{
    lock_t *l;
    HASH_FIND(hh, ls->by_name, name, len, l);
    return l;
}

static lock_t *find_lid(lstate_t *ls, uint64_t lid)
{
    lock_t *l;
    HASH_FIND(hl, ls->by_lid, &lid, sizeof(lid), l);
    return l;
}

static lock_t *lock_add(lstate_t *ls, const char *name, size_t len, uint64_t lid)
{
    lock_t *l = xcalloc(1, sizeof(*l));
    l->name = xstrndup(name, len);
    l->lid = lid;
    HASH_ADD_KEYPTR(hh, ls->by_name, l->name, len, l);
    HASH_ADD(hl, ls->by_lid, lid, sizeof(l->lid), l);
    l->prev = ls->tail;
    if (ls->tail)
        ls->tail->next = l;
    else
        ls->head = l;
    ls->tail = l;
    return l;
}

static void list_free(lholder_t *h)
{
    for (lholder_t *n; h; h = n) {
        n = h->next;
        free(h);
    }
}

static void lock_del(lstate_t *ls, lock_t *l)
{
    HASH_DELETE(hh, ls->by_name, l);
    HASH_DELETE(hl, ls->by_lid, l);
    if (l->prev)
        l->prev->next = l->next;
    else
        ls->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        ls->tail = l->prev;
    list_free(l->holders);
    list_free(l->waiters);
    blob_unref(l->data);
    free(l->name);
    free(l);
}

/* Wait (sid, wid) was granted with fence (rc 0) or ended with rc: an effect. */
static void outbox(effects_t *fx, uint64_t sid, uint64_t wid, uint64_t fence, int rc)
{
    effect_t *e = effects_add(fx, EFF_LOCK_WAIT, NS_LOCKS, sid, wid);
    e->u.lock.fence = fence;
    e->u.lock.rc = rc;
}

static void list_append(lholder_t **head, lholder_t *h)
{
    h->next = NULL;
    while (*head)
        head = &(*head)->next;
    *head = h;
}

static int compatible(const lock_t *l, uint8_t mode)
{
    if (!l->holders)
        return 1;
    if (mode == LM_EXCL)
        return 0;
    for (const lholder_t *h = l->holders; h; h = h->next)
        if (h->mode == LM_EXCL)
            return 0;
    return 1;
}

static void grant(lstate_t *ls, lock_t *l, lholder_t *h, uint64_t now)
{
    h->fence = ++ls->fence;
    h->since_ms = now;
    l->last_fence = h->fence;
    if (h->kind == LK_CREATE)
        l->expires_ms = l->ttl_s ? now + (uint64_t)l->ttl_s * 1000 : 0;
    list_append(&l->holders, h);
}

/* Grants waiters from the head of the FIFO while they fit (never one behind a blocked one). */
static void grant_waiters(lstate_t *ls, lock_t *l, uint64_t now, effects_t *fx)
{
    while (l->waiters && compatible(l, l->waiters->mode)) {
        lholder_t *w = l->waiters;
        l->waiters = w->next;
        grant(ls, l, w, now);
        outbox(fx, w->sid, w->wid, w->fence, 0);
    }
}

/* Removes from list *pp the entries matching (sid, kind, owner) or, when wid is nonzero,
 * (sid, wid); kind 0 matches every kind of sid. Returns how many; dropped waiters get rc. */
static int drop(effects_t *fx, lholder_t **pp, uint64_t sid, uint8_t kind, uint64_t owner,
                uint64_t wid, int waiters, int rc)
{
    int n = 0;
    while (*pp) {
        lholder_t *h = *pp;
        int match = h->sid == sid &&
                    (wid ? h->wid == wid : (!kind || (h->kind == kind && h->owner == owner)));
        if (match) {
            *pp = h->next;
            if (waiters)
                outbox(fx, h->sid, h->wid, 0, rc);
            free(h);
            n++;
        } else {
            pp = &h->next;
        }
    }
    return n;
}

static int has_create_hold(const lock_t *l)
{
    for (const lholder_t *h = l->holders; h; h = h->next)
        if (h->kind == LK_CREATE)
            return 1;
    return 0;
}

/* After holds went away: an ephemeral lock whose create hold ended and that nobody else uses
 * disappears; otherwise waiters move up. */
static void settle(lstate_t *ls, lock_t *l, uint64_t now, effects_t *fx)
{
    if (!has_create_hold(l))
        l->expires_ms = 0;
    if (l->ephemeral && !has_create_hold(l)) {
        if (!l->holders && !l->waiters) {
            lock_del(ls, l);
            return;
        }
        l->ephemeral = 0;
    }
    grant_waiters(ls, l, now, fx);
}

static lock_t *arg_lock(lstate_t *ls, cmdrd_t *r)
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
        result_grant(res, 0, l->lid, 0);
        return 0;
    }
    if (excl && !session_find(&st->sessions, sid))
        return -ENOLCK;
    l = lock_add(ls, name, len, ++ls->next_lid);
    l->ctime_ms = l->mtime_ms = h->now_ms;
    if (!excl) {
        result_grant(res, 0, l->lid, 0);
        return 0;
    }
    lholder_t *ho = xcalloc(1, sizeof(*ho));
    l->ephemeral = 1;
    ho->sid = sid;
    ho->pid = pid;
    ho->kind = LK_CREATE;
    ho->mode = LM_EXCL;
    grant(ls, l, ho, h->now_ms);
    result_grant(res, 1, l->lid, ho->fence);
    return 0;
}

static int apply_lock(state_t *st, lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r,
                      sm_result_t *res, effects_t *fx)
{
    lock_t *l = arg_lock(ls, r);
    lholder_t req;
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
    for (lholder_t *ho = l->holders; ho; ho = ho->next)
        if (ho->sid == req.sid && ho->kind == req.kind && ho->owner == req.owner &&
            ho->mode == req.mode) {
            ho->wid = req.wid;      /* a repeated request; a cancel of an older one misses */
            result_grant(res, 1, ho->fence, 0);
            return 0;
        }
    /* A conversion gives up the old hold first (flock(2) semantics). */
    if (drop(fx, &l->holders, req.sid, req.kind, req.owner, 0, 0, 0))
        grant_waiters(ls, l, h->now_ms, fx);
    if (!l->waiters && compatible(l, req.mode)) {
        lholder_t *ho = xmalloc(sizeof(*ho));
        *ho = req;
        grant(ls, l, ho, h->now_ms);
        result_grant(res, 1, ho->fence, 0);
        return 0;
    }
    if (!wait)
        return -EAGAIN;
    lholder_t *w = xmalloc(sizeof(*w));
    *w = req;
    w->since_ms = h->now_ms;
    list_append(&l->waiters, w);
    result_grant(res, 0, 0, 0);
    return 0;
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
    while (ls->head)
        lock_del(ls, ls->head);
    free(ls);
    st->ns_state[NS_LOCKS] = NULL;
}

/* Everything session sid held or waited for goes; create locks it held end. */
static void l_session_end(state_t *st, uint64_t sid, uint64_t now, effects_t *fx)
{
    lstate_t *ls = LS(st);
    for (lock_t *l = ls->head, *next; l; l = next) {
        next = l->next;
        int n = drop(fx, &l->holders, sid, 0, 0, 0, 0, 0);
        n += drop(fx, &l->waiters, sid, 0, 0, 0, 1, -ENOLCK);
        if (n)
            settle(ls, l, now, fx);
    }
}

static int l_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                   effects_t *fx)
{
    lstate_t *ls = LS(st);
    switch (h->op) {
    case LOP_CREATE:
        return apply_create(st, ls, h, r, res);
    case LOP_LOCK:
        return apply_lock(st, ls, h, r, res, fx);
    case LOP_UNLOCK: {
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
    case LOP_CANCEL: {
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
    case LOP_UNLINK: {
        lock_t *l = arg_lock(ls, r);
        if (r->err)
            return -EINVAL;
        if (!l)
            return -ENOENT;
        if (l->waiters)
            return -EBUSY;
        for (lholder_t *ho = l->holders; ho; ho = ho->next)
            if (ho->kind != LK_CREATE)
                return -EBUSY;    /* held through flock/fcntl: close it first */
        lock_del(ls, l);
        return 0;
    }
    case LOP_SETTTL: {
        lock_t *l = arg_lock(ls, r);
        uint32_t ttl = cmd_get_u32(r);
        if (r->err || ttl > LOCK_TTL_MAX)
            return -EINVAL;
        if (!l)
            return -ENOENT;
        l->ttl_s = ttl;
        if (has_create_hold(l))
            l->expires_ms = ttl ? h->now_ms + (uint64_t)ttl * 1000 : 0;
        return 0;
    }
    case LOP_TOUCH: {
        lock_t *l = arg_lock(ls, r);
        if (r->err)
            return -EINVAL;
        if (!l)
            return -ENOENT;
        l->mtime_ms = h->now_ms;
        if (has_create_hold(l) && l->ttl_s)
            l->expires_ms = h->now_ms + (uint64_t)l->ttl_s * 1000;
        return 0;
    }
    case LOP_EXPIRE: {
        lock_t *l = arg_lock(ls, r);
        uint64_t fence = cmd_get_u64(r);
        if (r->err)
            return -EINVAL;
        if (!l)
            return -ENOENT;
        if (!l->expires_ms || l->expires_ms > h->now_ms)
            return -EAGAIN;       /* touched since the leader looked */
        lholder_t **pp = &l->holders;
        for (; *pp; pp = &(*pp)->next)
            if ((*pp)->kind == LK_CREATE && (*pp)->fence == fence) {
                lholder_t *ho = *pp;
                *pp = ho->next;
                free(ho);
                settle(ls, l, h->now_ms, fx);
                return 0;
            }
        return -ENOENT;
    }
    case LOP_DATA: {
        lock_t *l = arg_lock(ls, r);
        const uint8_t *p;
        size_t len = cmd_get_bytes(r, &p);
        if (r->err)
            return -EINVAL;
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
    default:
        return -EINVAL;
    }
}

int locks_info(state_t *st, const char *name, uint32_t *holders, int *mode, uint64_t *fence,
               uint32_t *waiters)
{
    lock_t *l = find_lock(LS(st), name, strlen(name));
    if (!l)
        return -ENOENT;
    *holders = *waiters = 0;
    *mode = l->holders ? l->holders->mode : 0;
    *fence = l->last_fence;
    for (lholder_t *h = l->holders; h; h = h->next)
        (*holders)++;
    for (lholder_t *h = l->waiters; h; h = h->next)
        (*waiters)++;
    return 0;
}

/* ---- snapshot (format: docs/LOCKS.md "Snapshot section") ---- */

static void snap_holders(snapout_t *o, const lholder_t *h)
{
    uint32_t n = 0;
    for (const lholder_t *x = h; x; x = x->next)
        n++;
    so_u32(o, n);
    for (; h; h = h->next) {
        so_u64(o, h->sid);
        so_u64(o, h->owner);
        so_u64(o, h->wid);
        so_u64(o, h->fence);
        so_u64(o, h->since_ms);
        so_u32(o, h->pid);
        so_u8(o, h->kind);
        so_u8(o, h->mode);
    }
}

static void l_snapshot(const state_t *st, snapout_t *o)
{
    const lstate_t *ls = st->ns_state[NS_LOCKS];
    so_u32(o, LSNAP_VERSION);
    so_u64(o, ls->next_lid);
    so_u64(o, ls->fence);
    so_u32(o, HASH_CNT(hh, ls->by_name));
    for (const lock_t *l = ls->head; l; l = l->next) {
        so_u64(o, l->lid);
        so_blob(o, l->name, (uint32_t)strlen(l->name));
        so_u64(o, l->ctime_ms);
        so_u64(o, l->mtime_ms);
        so_u8(o, l->ephemeral);
        so_u32(o, l->ttl_s);
        so_u64(o, l->expires_ms);
        so_u64(o, l->last_fence);
        so_blob(o, l->data ? (const void *)l->data->data : "", l->data ? l->data->len : 0);
        snap_holders(o, l->holders);
        snap_holders(o, l->waiters);
    }
}

static int restore_holders(snapin_t *in, lholder_t **head)
{
    uint32_t n = si_u32(in);
    for (uint32_t i = 0; i < n && !in->err; i++) {
        lholder_t *h = xcalloc(1, sizeof(*h));
        h->sid = si_u64(in);
        h->owner = si_u64(in);
        h->wid = si_u64(in);
        h->fence = si_u64(in);
        h->since_ms = si_u64(in);
        h->pid = si_u32(in);
        h->kind = si_u8(in);
        h->mode = si_u8(in);
        list_append(head, h);
    }
    return in->err;
}

static int l_restore(state_t *st, snapin_t *in)
{
    lstate_t *ls = LS(st);
    if (si_u32(in) != LSNAP_VERSION)
        return in->err ? in->err : -QERR_FORMAT;
    int rc;
    ls->next_lid = si_u64(in);
    ls->fence = si_u64(in);
    uint32_t n = si_u32(in);
    for (uint32_t i = 0; i < n && !in->err; i++) {
        uint64_t lid = si_u64(in);
        char name[NAME_MAX_BYTES + 1];
        int nlen = si_str(in, name, sizeof(name));
        if (nlen < 0)
            return nlen;
        size_t nl = (size_t)nlen;
        if (find_lock(ls, name, nl) || find_lid(ls, lid) || lid > ls->next_lid)
            return -QERR_CORRUPT;
        lock_t *l = lock_add(ls, name, nl, lid);
        l->ctime_ms = si_u64(in);
        l->mtime_ms = si_u64(in);
        l->ephemeral = si_u8(in);
        l->ttl_s = si_u32(in);
        l->expires_ms = si_u64(in);
        l->last_fence = si_u64(in);
        uint32_t dl = si_u32(in);
        if (in->err || dl > LOCK_DATA_MAX)
            return in->err ? in->err : -QERR_CORRUPT;
        if (dl) {
            l->data = blob_xnew(NULL, dl);
            si_bytes(in, l->data->data, dl);
        }
        if ((rc = restore_holders(in, &l->holders)) < 0 ||
            (rc = restore_holders(in, &l->waiters)) < 0)
            return rc;
    }
    return in->err;
}

/* ================================================================ FUSE side */

/* A flock/setlk request waiting for its grant. */
typedef struct lwait {
    uint64_t wid;
    fuse_req_t req;              /* parked request (under LL.mu) */
    int done, rc;                /* the answer came before the request was parked */
    int cancelled;               /* interrupted: the cancel is on its way */
    char *name;
    UT_hash_handle hh;
} lwait_t;

typedef struct lfh {
    uint64_t lid;
    char *name;
    char *text;                  /* what reads return, rendered at open */
    size_t tlen;
    pthread_mutex_t mu;
    uint8_t *wbuf;               /* bytes written through this open */
    size_t wlen;
    int writable;
} lfh_t;

static struct {
    pthread_mutex_t mu;
    lwait_t *by_wid;
    uint64_t next_wid;
    node_t *node;                /* set by start */
} LL = { .mu = PTHREAD_MUTEX_INITIALIZER };

static state_t *ST(void) { return node_state(LL.node); }
static uint64_t SID(void) { return session_local_id(node_session(LL.node)); }

static void fmt_time(uint64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03uZ", (unsigned)(ms % 1000));
}

/* The text of `cat locks/<name>`; state lock held. Returns a malloc'ed string. */
static char *render(state_t *st, const lock_t *l, size_t *len)
{
    static const char *const kinds[] = { "?", "flock", "fcntl", "create" };
    char *out = NULL;
    size_t sz = 0;
    FILE *f = open_memstream(&out, &sz);
    if (!f)
        return NULL;
    if (!l->holders)
        fprintf(f, "free fence=%" PRIu64 "\n", l->last_fence);
    for (const lholder_t *h = l->holders; h; h = h->next) {
        const session_t *s = session_find(&st->sessions, h->sid);
        char since[40];
        fmt_time(h->since_ms, since, sizeof(since));
        fprintf(f, "%s node=%s session=%" PRIu64, h->mode == LM_EXCL ? "exclusive" : "shared",
                s ? s->node : "?", h->sid);
        if (h->pid)
            fprintf(f, " pid=%" PRIu32, h->pid);
        fprintf(f, " since=%s fence=%" PRIu64 " via=%s", since, h->fence,
                kinds[h->kind <= LK_CREATE ? h->kind : 0]);
        if (h->kind == LK_CREATE && l->expires_ms) {
            fmt_time(l->expires_ms, since, sizeof(since));
            fprintf(f, " expires=%s", since);
        }
        fputc('\n', f);
    }
    uint32_t nw = 0;
    for (const lholder_t *w = l->waiters; w; w = w->next)
        nw++;
    if (nw)
        fprintf(f, "waiting %" PRIu32 "\n", nw);
    if (l->data && l->data->len) {
        fputs("data ", f);
        fwrite(l->data->data, 1, l->data->len, f);
        if (l->data->data[l->data->len - 1] != '\n')
            fputc('\n', f);
    }
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    *len = sz;
    return out;
}

static void fill_attr(struct stat *s, fuse_ino_t ino, int dir, off_t size, uint64_t mtime)
{
    memset(s, 0, sizeof(*s));
    s->st_ino = ino;
    s->st_mode = dir ? S_IFDIR | 0755 : S_IFREG | 0644;
    s->st_nlink = dir ? 2 : 1;
    s->st_size = size;
    s->st_blksize = 4096;
    s->st_uid = getuid();
    s->st_gid = getgid();
    s->st_mtim.tv_sec = (time_t)(mtime / 1000);
    s->st_mtim.tv_nsec = (long)(mtime % 1000) * 1000000;
    s->st_ctim = s->st_atim = s->st_mtim;
}

/* Lock of inode ino (state lock held): NULL and *rc for the root or an unknown inode. */
static lock_t *lock_of(state_t *st, fuse_ino_t ino, int *rc)
{
    *rc = 0;
    if (ino == NS_ROOT_ID(NS_LOCKS))
        return NULL;
    if (!(ino & NS_INO_BIT) || NS_INO_NS(ino) != NS_LOCKS) {
        *rc = -ENOENT;
        return NULL;
    }
    lock_t *l = find_lid(LS(st), ino & ((1ull << 56) - 1));
    if (!l)
        *rc = -ENOENT;
    return l;
}

static int attr_locked(state_t *st, fuse_ino_t ino, struct stat *s)
{
    int rc;
    lock_t *l = lock_of(st, ino, &rc);
    if (rc < 0)
        return rc;
    if (!l) {
        fill_attr(s, ino, 1, 0, 0);
        return 0;
    }
    size_t len = 0;
    char *t = render(st, l, &len);
    free(t);
    fill_attr(s, ino, 0, (off_t)len, l->mtime_ms);
    return 0;
}

static int do_getattr(fuse_ino_t ino, struct stat *s)
{
    state_t *st = ST();
    pthread_rwlock_rdlock(&st->lock);
    int rc = attr_locked(st, ino, s);
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static void lf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat s;
    int rc = do_getattr(ino, &s);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &s, 0);
}

static int do_lookup(fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    if (parent != NS_ROOT_ID(NS_LOCKS))
        return -ENOTDIR;
    if (strlen(name) > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    state_t *st = ST();
    pthread_rwlock_rdlock(&st->lock);
    lock_t *l = find_lock(LS(st), name, strlen(name));
    int rc = -ENOENT;
    if (l) {
        e->ino = NS_INO(NS_LOCKS, l->lid);
        rc = attr_locked(st, e->ino, &e->attr);
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static void lf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int rc = do_lookup(parent, name, &e);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

/* Name of the lock of ino, strdup'ed. */
static int name_of(fuse_ino_t ino, char **name)
{
    state_t *st = ST();
    int rc;
    pthread_rwlock_rdlock(&st->lock);
    lock_t *l = lock_of(st, ino, &rc);
    if (rc == 0 && !l)
        rc = -EISDIR;
    if (rc == 0 && !(*name = strdup(l->name)))
        rc = -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static int propose_simple(uint8_t op, const char *name)
{
    cmdbuf_t b;
    cmd_begin(&b, op, NS_LOCKS, node_now_ms());
    cmd_str(&b, name);
    return node_propose(LL.node, &b, NULL);
}

static lfh_t *fh_new(uint64_t lid, const char *name)
{
    lfh_t *fh = calloc(1, sizeof(*fh));
    if (!fh || !(fh->name = strdup(name))) {
        free(fh);
        return NULL;
    }
    fh->lid = lid;
    pthread_mutex_init(&fh->mu, NULL);
    return fh;
}

static void fh_free(lfh_t *fh)
{
    if (!fh)
        return;
    free(fh->name);
    free(fh->text);
    free(fh->wbuf);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

static int open_lock(fuse_ino_t ino, int flags, lfh_t **out)
{
    state_t *st = ST();
    int rc;
    pthread_rwlock_rdlock(&st->lock);
    lock_t *l = lock_of(st, ino, &rc);
    lfh_t *fh = NULL;
    if (rc == 0 && !l)
        rc = -EISDIR;
    if (rc == 0 && !(fh = fh_new(l->lid, l->name)))
        rc = -ENOMEM;
    if (rc == 0 && (flags & O_ACCMODE) != O_WRONLY && !(fh->text = render(st, l, &fh->tlen)))
        rc = -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    fh->writable = (flags & O_ACCMODE) != O_RDONLY;
    *out = fh;
    return 0;
}

static void lf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lfh_t *fh;
    int rc = open_lock(ino, fi->flags, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if (fuse_reply_open(req, fi) != 0)
        fh_free(fh);
}

static void lf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    int rc = parent == NS_ROOT_ID(NS_LOCKS) ? names_check(name, strlen(name), 0) : -ENOTDIR;
    int excl = !!(fi->flags & O_EXCL);
    uint64_t sid = SID();
    if (rc == 0 && excl && !sid)
        rc = -EIO;
    if (rc == 0) {
        cmdbuf_t b;
        cmd_begin(&b, LOP_CREATE, NS_LOCKS, node_now_ms());
        cmd_str(&b, name);
        cmd_u8(&b, (uint8_t)excl);
        cmd_u64(&b, sid);
        cmd_u32(&b, (uint32_t)fuse_req_ctx(req)->pid);
        rc = node_propose(LL.node, &b, NULL);
    }
    struct fuse_entry_param e;
    lfh_t *fh = NULL;
    if (rc == 0)
        rc = do_lookup(parent, name, &e);
    if (rc == 0)
        rc = open_lock(e.ino, fi->flags, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if (fuse_reply_create(req, &e, fi) != 0)
        fh_free(fh);
}

static void lf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    if (!fh->text) {
        fuse_reply_err(req, EBADF);
        return;
    }
    size_t n = off < 0 || (size_t)off >= fh->tlen ? 0 : fh->tlen - (size_t)off;
    if (n > size)
        n = size;
    /* Under mu: the reader may see the reply and close before writev() returns here, and
     * release must not free the text while it is still being written. */
    pthread_mutex_lock(&fh->mu);
    fuse_reply_buf(req, n ? fh->text + off : NULL, n);
    pthread_mutex_unlock(&fh->mu);
}

/* Writes set the lock file's content (e.g. "$HOSTNAME $$"), kept next to the holder. */
static void lf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    pthread_mutex_lock(&fh->mu);
    size_t end = (size_t)off + size;
    if (off < 0)
        rc = -EINVAL;
    else if (end > LOCK_DATA_MAX)
        rc = -EFBIG;
    uint8_t *nb = NULL;
    if (rc == 0 && !(nb = realloc(fh->wbuf, end > fh->wlen ? end : fh->wlen ? fh->wlen : 1)))
        rc = -ENOMEM;
    if (rc == 0) {
        fh->wbuf = nb;
        if ((size_t)off > fh->wlen)
            memset(fh->wbuf + fh->wlen, 0, (size_t)off - fh->wlen);
        memcpy(fh->wbuf + off, buf, size);
        if (end > fh->wlen)
            fh->wlen = end;
        cmdbuf_t b;
        cmd_begin(&b, LOP_DATA, NS_LOCKS, node_now_ms());
        cmd_str(&b, fh->name);
        cmd_bytes(&b, fh->wbuf, fh->wlen);
        rc = node_propose(LL.node, &b, NULL);
    }
    pthread_mutex_unlock(&fh->mu);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

static void lf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    int rc = parent == NS_ROOT_ID(NS_LOCKS) ? 0 : -ENOTDIR;
    if (rc == 0)
        rc = propose_simple(LOP_UNLINK, name);
    fuse_reply_err(req, -rc);
}

static void lf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    fuse_reply_err(req, EPERM);   /* locks/ is flat */
}

static void lf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int rc = do_lookup(parent, name, &e);
    fuse_reply_err(req, rc < 0 ? -rc : ENOTDIR);
}

static void lf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EPERM);   /* a lock keeps its name for life */
}

static void lf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    int rc = 0;
    char *name = NULL;
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
        rc = -EPERM;
    if (rc == 0)
        rc = name_of(ino, &name);
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
        if (attr->st_size != 0) {
            rc = -EINVAL;
        } else {
            cmdbuf_t b;
            cmd_begin(&b, LOP_DATA, NS_LOCKS, node_now_ms());
            cmd_str(&b, name);
            cmd_bytes(&b, "", 0);
            rc = node_propose(LL.node, &b, NULL);
        }
    }
    if (rc == 0 && (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW |
                              FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)))
        rc = propose_simple(LOP_TOUCH, name);   /* touch renews a TTL */
    free(name);
    struct stat s;
    if (rc == 0)
        rc = do_getattr(ino, &s);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &s, 0);
}

/* ---- lock requests: flock, setlk ---- */

static void lock_interrupt(fuse_req_t req, void *data);

static void cancel_done(void *arg, int rc)
{
    lwait_t *w = arg;
    pthread_mutex_lock(&LL.mu);
    HASH_DELETE(hh, LL.by_wid, w);
    pthread_mutex_unlock(&LL.mu);
    free(w->name);
    free(w);
}

/* w was interrupted (w->cancelled set under LL.mu, its request answered or being
 * answered by the caller): the background proposer drops the wait, or the hold it got
 * meanwhile, and then forgets w (cancel_done). It cannot be proposed here: this may run in
 * an interrupt callback. */
static void cancel_wait(lwait_t *w)
{
    cmdbuf_t b;
    cmd_begin(&b, LOP_CANCEL, NS_LOCKS, node_now_ms());
    cmd_str(&b, w->name);
    cmd_u64(&b, SID());
    cmd_u64(&b, w->wid);
    if (session_bg_propose(node_session(LL.node), &b, cancel_done, w) < 0)
        cancel_done(w, -ENOTCONN);
}

/* Interrupt callback. A late interrupt may arrive after the wait was forgotten, so it
 * does not trust data: it looks the request up among the registered waits. */
static void lock_interrupt(fuse_req_t req, void *data)
{
    INTR_DEFER_IF_REGISTERING();
    (void)data;
    lwait_t *w = NULL, *x, *tmp;
    pthread_mutex_lock(&LL.mu);
    HASH_ITER(hh, LL.by_wid, x, tmp) {
        if (x->req == req) {
            w = x;
            w->req = NULL;          /* the request is ours to answer now */
            w->cancelled = 1;
            break;
        }
    }
    pthread_mutex_unlock(&LL.mu);
    if (w) {
        fuse_reply_err(req, EINTR);
        cancel_wait(w);
    }
}

static void w_forget(lwait_t *w)
{
    pthread_mutex_lock(&LL.mu);
    HASH_DELETE(hh, LL.by_wid, w);
    pthread_mutex_unlock(&LL.mu);
    free(w->name);
    free(w);
}

/* Proposes one lock request and replies now or once apply grants it. */
static void do_lock(fuse_req_t req, const char *name, uint8_t kind, uint64_t owner,
                    uint8_t mode, int wait, uint32_t pid)
{
    uint64_t sid = SID();
    if (!sid) {
        fuse_reply_err(req, EIO);
        return;
    }
    lwait_t *w = calloc(1, sizeof(*w));
    if (!w || !(w->name = strdup(name))) {
        free(w);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_mutex_lock(&LL.mu);
    w->wid = ++LL.next_wid;
    HASH_ADD(hh, LL.by_wid, wid, sizeof(w->wid), w);
    pthread_mutex_unlock(&LL.mu);
    cmdbuf_t b;
    sm_result_t res;
    cmd_begin(&b, LOP_LOCK, NS_LOCKS, node_now_ms());
    cmd_str(&b, name);
    cmd_u64(&b, sid);
    cmd_u8(&b, kind);
    cmd_u64(&b, owner);
    cmd_u8(&b, mode);
    cmd_u8(&b, (uint8_t)wait);
    cmd_u64(&b, w->wid);
    cmd_u32(&b, pid);
    int rc = node_propose(LL.node, &b, &res);
    if (rc < 0 || res.data[0] == 1) {
        w_forget(w);
        fuse_reply_err(req, rc == -EAGAIN ? EWOULDBLOCK : -rc);
        return;
    }
    /* Waiting: park, unless the grant came meanwhile. The interrupt callback is registered
     * first; an interrupt that came before (deferred) or while the callback could not find
     * the request yet shows in fuse_req_interrupted, checked under LL.mu before parking. */
    int intr = intr_register(req, lock_interrupt, NULL);
    pthread_mutex_lock(&LL.mu);
    int done = w->done, cancel = !done && (intr || fuse_req_interrupted(req));
    rc = w->rc;
    if (cancel)
        w->cancelled = 1;
    else if (!done)
        w->req = req;               /* owned by LL from here: see l_deliver, lock_interrupt */
    pthread_mutex_unlock(&LL.mu);
    if (done) {
        fuse_reply_err(req, -rc);
        w_forget(w);
    } else if (cancel) {
        fuse_reply_err(req, EINTR);
        cancel_wait(w);
    }
}

static void do_unlock(fuse_req_t req, const char *name, uint8_t kind, uint64_t owner)
{
    cmdbuf_t b;
    cmd_begin(&b, LOP_UNLOCK, NS_LOCKS, node_now_ms());
    cmd_str(&b, name);
    cmd_u64(&b, SID());
    cmd_u8(&b, kind);
    cmd_u64(&b, owner);
    int rc = node_propose(LL.node, &b, NULL);
    if (req)
        fuse_reply_err(req, rc == -ENOENT ? 0 : -rc);
}

static void lf_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    uint32_t pid = (uint32_t)fuse_req_ctx(req)->pid;
    if (op & LOCK_UN)
        do_unlock(req, fh->name, LK_FLOCK, fi->lock_owner);
    else if (op & (LOCK_SH | LOCK_EX))
        do_lock(req, fh->name, LK_FLOCK, fi->lock_owner, (op & LOCK_EX) ? LM_EXCL : LM_SHARED,
                !(op & LOCK_NB), pid);
    else
        fuse_reply_err(req, EINVAL);
}

static int whole_file(const struct flock *lk)
{
    return lk->l_whence == SEEK_SET && lk->l_start == 0 && lk->l_len == 0;
}

static void lf_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                     struct flock *lk, int sleep)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    if (lk->l_type == F_UNLCK) {
        do_unlock(req, fh->name, LK_POSIX, fi->lock_owner);
        return;
    }
    if (!whole_file(lk)) {
        fuse_reply_err(req, EINVAL);  /* byte-range locks are not supported */
        return;
    }
    uint32_t pid = lk->l_pid ? (uint32_t)lk->l_pid : (uint32_t)fuse_req_ctx(req)->pid;
    do_lock(req, fh->name, LK_POSIX, fi->lock_owner, lk->l_type == F_WRLCK ? LM_EXCL : LM_SHARED,
            sleep, pid);
}

static void lf_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                     struct flock *lk)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    state_t *st = ST();
    uint64_t sid = SID();
    struct flock out = *lk;
    out.l_type = F_UNLCK;
    pthread_rwlock_rdlock(&st->lock);
    lock_t *l = find_lock(LS(st), fh->name, strlen(fh->name));
    for (const lholder_t *h = l ? l->holders : NULL; h; h = h->next) {
        if (h->sid == sid && h->kind == LK_POSIX && h->owner == fi->lock_owner)
            continue;
        if (lk->l_type == F_WRLCK || h->mode == LM_EXCL) {
            out.l_type = h->mode == LM_EXCL ? F_WRLCK : F_RDLCK;
            out.l_whence = SEEK_SET;
            out.l_start = 0;
            out.l_len = 0;
            out.l_pid = h->sid == sid ? (pid_t)h->pid : 0;
            break;
        }
    }
    pthread_rwlock_unlock(&st->lock);
    fuse_reply_lock(req, &out);
}

/* Whether (this session, kind, owner) holds or waits on lock name; state lock taken. */
static int owner_active(const char *name, uint8_t kind, uint64_t owner)
{
    state_t *st = ST();
    uint64_t sid = SID();
    int found = 0;
    pthread_rwlock_rdlock(&st->lock);
    lock_t *l = find_lock(LS(st), name, strlen(name));
    for (int pass = 0; l && pass < 2 && !found; pass++)
        for (const lholder_t *h = pass ? l->waiters : l->holders; h && !found; h = h->next)
            found = h->sid == sid && h->kind == kind && h->owner == owner;
    pthread_rwlock_unlock(&st->lock);
    return found;
}

static void lf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    /* POSIX locks of the closing process go with any close of the file. */
    if (owner_active(fh->name, LK_POSIX, fi->lock_owner))
        do_unlock(NULL, fh->name, LK_POSIX, fi->lock_owner);
    fuse_reply_err(req, 0);
}

static void lf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    /* The file description is gone (also when its process was killed): its flock goes. */
    if (fi->flock_release && owner_active(fh->name, LK_FLOCK, fi->lock_owner))
        do_unlock(NULL, fh->name, LK_FLOCK, fi->lock_owner);
    pthread_mutex_lock(&fh->mu);      /* a reply still being written (see lf_read) */
    pthread_mutex_unlock(&fh->mu);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

static void lf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);   /* every write is committed when it returns */
}

/* ---- directory ---- */

static void ldir_free(dirlist_t *d)
{
    if (d)
        dirlist_clear(d);
    free(d);
}

static void lf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (ino != NS_ROOT_ID(NS_LOCKS)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    state_t *st = ST();
    dirlist_t *d = calloc(1, sizeof(*d));
    int rc = d ? 0 : -ENOMEM;
    if (rc == 0)
        rc = dirlist_add(d, ".", NS_ROOT_ID(NS_LOCKS), S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", FUSE_ROOT_ID, S_IFDIR);
    pthread_rwlock_rdlock(&st->lock);
    for (lock_t *l = LS(st)->head; l && rc == 0; l = l->next)
        rc = dirlist_add(d, l->name, NS_INO(NS_LOCKS, l->lid), S_IFREG);
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0) {
        ldir_free(d);
        fuse_reply_err(req, -rc);
        return;
    }
    dirlist_sort(d, 2);
    fi->fh = (uintptr_t)d;
    if (fuse_reply_open(req, fi) != 0)
        ldir_free(d);
}

static void lf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    dirlist_reply(req, (dirlist_t *)(uintptr_t)fi->fh, size, off);
}

static void lf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ldir_free((dirlist_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ---- xattrs: user.fence (read-only), user.ttl ---- */

static void lf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    char *lname = NULL;
    uint64_t v = 0;
    int rc = name_of(ino, &lname);
    if (rc == -EISDIR || (rc == 0 && strncmp(name, "user.", 5) != 0))
        rc = -ENOTSUP;
    else if (rc == 0 && strcmp(name, "user.fence") == 0)
        rc = -EPERM;
    else if (rc == 0 && strcmp(name, "user.ttl") != 0)
        rc = -ENOTSUP;
    else if (rc == 0 && names_parse_uint(value, size, LOCK_TTL_MAX, &v) < 0)
        rc = -EINVAL;
    if (rc == 0) {
        cmdbuf_t b;
        cmd_begin(&b, LOP_SETTTL, NS_LOCKS, node_now_ms());
        cmd_str(&b, lname);
        cmd_u32(&b, (uint32_t)v);
        rc = node_propose(LL.node, &b, NULL);
    }
    free(lname);
    fuse_reply_err(req, -rc);
}

static void lf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    char *lname = NULL;
    int rc = name_of(ino, &lname);
    if (rc == 0 && strcmp(name, "user.fence") == 0)
        rc = -EPERM;
    else if (rc == -EISDIR || (rc == 0 && strcmp(name, "user.ttl") != 0))
        rc = -ENODATA;
    if (rc == 0) {
        cmdbuf_t b;
        cmd_begin(&b, LOP_SETTTL, NS_LOCKS, node_now_ms());
        cmd_str(&b, lname);
        cmd_u32(&b, 0);
        rc = node_propose(LL.node, &b, NULL);
    }
    free(lname);
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

static void lf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    state_t *st = ST();
    int rc;
    char text[32];
    int len = 0;
    pthread_rwlock_rdlock(&st->lock);
    lock_t *l = lock_of(st, ino, &rc);
    if (rc == 0 && !l)
        rc = -ENODATA;
    else if (rc == 0 && strcmp(name, "user.fence") == 0)
        len = snprintf(text, sizeof(text), "%" PRIu64, l->last_fence);
    else if (rc == 0 && strcmp(name, "user.ttl") == 0 && l->ttl_s)
        len = snprintf(text, sizeof(text), "%" PRIu32, l->ttl_s);
    else if (rc == 0)
        rc = -ENODATA;
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        reply_xattr(req, text, (size_t)len, size);
}

static void lf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    state_t *st = ST();
    int rc;
    pthread_rwlock_rdlock(&st->lock);
    lock_t *l = lock_of(st, ino, &rc);
    int ttl = l && l->ttl_s;
    pthread_rwlock_unlock(&st->lock);
    static const char both[] = "user.fence\0user.ttl";
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else if (!l)
        reply_xattr(req, "", 0, size);
    else
        reply_xattr(req, both, ttl ? sizeof(both) : sizeof("user.fence"), size);
}

static const struct fuse_lowlevel_ops locks_fuse = {
    .lookup = lf_lookup,
    .getattr = lf_getattr,
    .setattr = lf_setattr,
    .mkdir = lf_mkdir,
    .unlink = lf_unlink,
    .rmdir = lf_rmdir,
    .rename = lf_rename,
    .create = lf_create,
    .open = lf_open,
    .read = lf_read,
    .write = lf_write,
    .flush = lf_flush,
    .release = lf_release,
    .fsync = lf_fsync,
    .opendir = lf_opendir,
    .readdir = lf_readdir,
    .releasedir = lf_releasedir,
    .setxattr = lf_setxattr,
    .getxattr = lf_getxattr,
    .listxattr = lf_listxattr,
    .removexattr = lf_removexattr,
    .getlk = lf_getlk,
    .setlk = lf_setlk,
    .flock = lf_flock,
};

/* ================================================================ hooks */

/* EFF_LOCK_WAIT for this mount's session: answer the parked request of that wait (or leave
 * the answer for the proposing thread when it is not parked yet). No state lock is held. */
static void l_deliver(void *ctx, effect_t *e)
{
    (void)ctx;
    uint64_t self = SID();
    if (e->kind != EFF_LOCK_WAIT || !self || e->sid != self)
        return;                     /* other nodes' sessions answer their own waits */
    lwait_t *w;
    fuse_req_t req = NULL;
    pthread_mutex_lock(&LL.mu);
    HASH_FIND(hh, LL.by_wid, &e->wid, sizeof(e->wid), w);
    if (w && !w->cancelled) {
        if (w->req) {
            req = w->req;
            HASH_DELETE(hh, LL.by_wid, w);
        } else {
            w->done = 1;            /* the proposing thread replies */
            w->rc = e->u.lock.rc;
        }
    }
    pthread_mutex_unlock(&LL.mu);
    if (req) {                      /* w is ours alone now */
        fuse_reply_err(req, -e->u.lock.rc);
        free(w->name);
        free(w);
    }
}

static void *l_start(struct node *n)
{
    LL.node = n;
    return &LL;
}

/* Leader side: create locks past their TTL. */
static void l_sweep(void *ctx)
{
    (void)ctx;
    node_t *n = LL.node;
    state_t *st = node_state(n);
    uint64_t now = node_now_ms();
    char *names[64];
    uint64_t fences[64];
    int cnt = 0;
    pthread_rwlock_rdlock(&st->lock);
    for (lock_t *l = LS(st)->head; l && cnt < 64; l = l->next) {
        if (!l->expires_ms || l->expires_ms > now)
            continue;
        for (lholder_t *h = l->holders; h; h = h->next)
            if (h->kind == LK_CREATE && (names[cnt] = strdup(l->name))) {
                fences[cnt++] = h->fence;
                break;
            }
    }
    pthread_rwlock_unlock(&st->lock);
    for (int i = 0; i < cnt; i++) {
        cmdbuf_t b;
        cmd_begin(&b, LOP_EXPIRE, NS_LOCKS, now);
        cmd_str(&b, names[i]);
        cmd_u64(&b, fences[i]);
        int rc = node_propose(n, &b, NULL);
        if (rc < 0 && rc != -EAGAIN && rc != -ENOENT)
            fprintf(stderr, "quorumfs: lock %s: TTL expiry not committed: %s\n", names[i],
                    strerror(-rc));
        free(names[i]);
    }
}

static void l_stop(void *ctx)
{
    (void)ctx;
    LL.node = NULL;
}

const ns_sm_t locks_sm = {
    .init = l_init_state,
    .free = l_free_state,
    .apply = l_apply,
    .session_end = l_session_end,
    .snapshot = l_snapshot,
    .restore = l_restore,
};

const ns_front_t locks_front = {
    .start = l_start,
    .sweep = l_sweep,
    .stop = l_stop,
    .deliver = l_deliver,
    .fuse = &locks_fuse,
};
