/* fs/locks_fuse.c — the FUSE front of locks/ (FILE-API §3, design in docs/LOCKS.md): the flat
 * directory locks/<name>, flock and fcntl setlk/getlk, exclusive create, user.ttl and
 * user.fence, `cat` of the holders, lock requests parked until their grant is delivered,
 * and the leader-side sweep that proposes the expiry of create locks. It reads the state
 * only through the read API of fs/locks_sm.h and builds every command with its encoders.
 *
 * Context: one lfront_t per node (start), reached from a request through ns_front_ctx; it
 * begins with the front_ctx_t of fs/front.h (lf->ctx: the node and the table's mutex).
 *
 * Locking, in order (a lock is only taken after those before it, or alone):
 *   fh->mu        an open file's write buffer (wbuf, wlen); also held while a read reply
 *                 of fh->text is written (front_reply_text) and while a write proposes.
 *   state lock    st->lock, read: taken alone by the handlers, around read-API calls; a
 *                 proposal takes it for writing inside apply.
 *   lf->ctx.mu    the table of waits: by_wid, next_wid, and req/done/rc of every wait in
 *                 it. A leaf: never held with the state lock, never while proposing or
 *                 registering an interrupt callback (fuse_req_interrupt_func takes the
 *                 request's lock, which an interrupt callback holds while it takes
 *                 lf->ctx.mu).
 *
 * Waits: a LOCK request that has to wait is a lwait_t in lf->by_wid from before its
 * proposal. Whoever removes a wait from by_wid under lf->ctx.mu owns it: it answers the
 * request (if parked) and frees the wait; nobody touches a wait after unlocking unless it
 * removed it. Until its request is parked (w->req set), only the proposing thread removes
 * it; a delivery meanwhile leaves the answer in w->done/rc. Once parked, the proposing
 * thread lets go; the delivery of its grant or the interrupt callback removes it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include "fs/dirlist.h"
#include "fs/front.h"
#include "fs/intr.h"
#include "fs/locks.h"
#include "fs/names.h"
#include "fs/node.h"
#include "fs/session.h"
#include "fs/session_sm.h"

#define SWEEP_LOCKS 64                  /* create locks expired per sweep */

/* A flock/setlk request waiting for its grant (see "Waits" above). */
typedef struct lwait {
    uint64_t wid;
    uint64_t sid;                       /* the session it asks as (under lf->ctx.mu) */
    char *name;
    struct lfh *fh;                     /* the open asking; alive while its request waits */
    uint8_t kind;                       /* the lock asked: LK_FLOCK or LK_POSIX ... */
    uint64_t owner;                     /* ... for this owner */
    fuse_req_t req;                     /* the parked request, NULL until parked */
    int done, rc;                       /* the answer came before the request was parked */
    UT_hash_handle hh;                  /* lf->by_wid */
} lwait_t;

typedef struct lfront {
    front_ctx_t ctx;                    /* first: node, mu */
    lwait_t *by_wid;
    uint64_t next_wid;
    uint64_t restores[NODE_SHARDS_MAX]; /* EFF_RESTORED seen per shard (under mu) */
} lfront_t;

/* An open lock file. */
typedef struct lfh {
    char *name;
    char *text;                         /* what reads return, rendered at open; read-only */
    size_t tlen;
    pthread_mutex_t mu;
    uint8_t *wbuf;                      /* bytes written through this open (under mu) */
    size_t wlen;
    /* The mount session under which a lock was last granted through this open (atomic); 0
     * if none. Once that session has ended (the cluster released the lock: this node went
     * silent past its session timeout, docs/CLUSTER.md "Sessions"), the descriptor is stale:
     * its lock operations and its close() fail with EIO instead of going on silently. */
    uint64_t lock_sid;
    /* The (kind, owner) pairs granted through this open and not unlocked through it since
     * (under mu): lock_sid is cleared when the last goes. Past HELD_MAX pairs, or when one
     * may have gone another way, it stays (a later lost session then says EIO, as safe). */
    struct held { uint8_t kind; uint64_t owner; } held[4];
    int nheld, held_overflow;
    /* The fence of the exclusive-create hold this open took (O_CREAT|O_EXCL), 0 if none.
     * The hold is recorded as granted (LK_CREATE) under lock_sid too, so the end of that
     * session makes the descriptor stale; so does the hold being gone to another taker
     * (the lock exists with another create fence: its TTL ran out, or it was removed and
     * created again). Set once, before the create is answered. */
    uint64_t create_fence;
    /* The owner of this open's flock locks: unique per open in this process (see
     * flock_owner_seq). Not the kernel's fi->lock_owner, which is the open file's address:
     * a file closed and another opened may get the same one, and the close's unlock (sent
     * in the background RELEASE) could then reach the state after the new open's LOCK and
     * end its wait (EINTR, which the kernel turns into errno 512 for flock). */
    uint64_t flock_owner;
} lfh_t;

static uint64_t flock_owner_seq;       /* atomic */

static lfront_t *LF(fuse_req_t req) { return ns_front_ctx(req, NS_LOCKS); }
/* Every lock lives whole on one shard (FILE-API §11): the one of its name. */
static uint32_t lshard(const lfront_t *lf, const char *name)
{
    return node_shard_of(lf->ctx.node, NS_LOCKS, name);
}
static state_t *lstate(const lfront_t *lf, uint32_t k) { return node_state(lf->ctx.node, k); }
static uint64_t lsid(const lfront_t *lf, uint32_t k)
{
    return session_local_id(node_session(lf->ctx.node), k);
}
/* The shard of a lock inode (the root's: 0; the root spans every shard). */
static uint32_t ino_shard(fuse_ino_t ino)
{
    return ino == NS_ROOT_ID(NS_LOCKS) ? 0 : NS_INO_SHARD(ino);
}
static int lpropose(lfront_t *lf, const char *name, cmdbuf_t *b, sm_result_t *res)
{
    return node_propose(lf->ctx.node, lshard(lf, name), b, res);
}

/* Whether fh held a lock under a session that has ended (see lfh_t.lock_sid), or took an
 * exclusive-create hold that another taker has now (see lfh_t.create_fence), as of a read
 * barrier (a node that was stopped or cut off learns here what the cluster decided while
 * it was away); also when that cannot be known (no quorum). */
static int stale(const lfront_t *lf, const lfh_t *fh)
{
    uint64_t held = __atomic_load_n(&fh->lock_sid, __ATOMIC_ACQUIRE);
    if (!held)
        return 0;
    uint32_t k = lshard(lf, fh->name);
    if (held != lsid(lf, k) || node_read_barrier(lf->ctx.node, k) != 0)
        return 1;
    state_t *st = lstate(lf, k);
    lock_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int gone = !session_find(&st->sessions, held);
    if (!gone && fh->create_fence &&
        (locks_sm_get(st, fh->name, strlen(fh->name), &v) < 0 ||
         v.create_fence != fh->create_fence))
        gone = 1;                /* the create hold ended (TTL) or went to another taker */
    pthread_rwlock_unlock(&st->lock);
    return gone;
}

/* A lock (kind, owner) was granted through fh under session sid. */
static void granted_to(lfh_t *fh, uint64_t sid, uint8_t kind, uint64_t owner)
{
    pthread_mutex_lock(&fh->mu);
    int i = 0;
    while (i < fh->nheld && !(fh->held[i].kind == kind && fh->held[i].owner == owner))
        i++;
    if (i == fh->nheld) {
        if (fh->nheld < (int)(sizeof(fh->held) / sizeof(fh->held[0])))
            fh->held[fh->nheld++] = (struct held){ kind, owner };
        else
            fh->held_overflow = 1;
    }
    __atomic_store_n(&fh->lock_sid, sid, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&fh->mu);
}

/* (kind, owner) was unlocked through fh: when nothing granted through it is left, a later
 * end of the session loses nothing of it and it is not stale. */
static void released_by(lfh_t *fh, uint8_t kind, uint64_t owner)
{
    pthread_mutex_lock(&fh->mu);
    for (int i = 0; i < fh->nheld; i++)
        if (fh->held[i].kind == kind && fh->held[i].owner == owner) {
            fh->held[i] = fh->held[--fh->nheld];
            break;
        }
    if (!fh->nheld && !fh->held_overflow)
        __atomic_store_n(&fh->lock_sid, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&fh->mu);
}

static void w_free(lwait_t *w)
{
    free(w->name);
    free(w);
}

/* ---------------------------------------------------------------- rendering */

static void fmt_time(uint64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03uZ", (unsigned)(ms % 1000));
}

struct render {
    FILE *f;
    const state_t *st;
    const lock_view_t *v;
};

static int render_holder(void *arg, const lock_hold_t *h)
{
    static const char *const kinds[] = { "?", "flock", "fcntl", "create" };
    struct render *rd = arg;
    const session_t *s = session_find(&rd->st->sessions, h->sid);
    char since[40];
    fmt_time(h->since_ms, since, sizeof(since));
    fprintf(rd->f, "%s node=%s session=%" PRIu64, h->mode == LM_EXCL ? "exclusive" : "shared",
            s ? s->node : "?", h->sid);
    if (h->pid)
        fprintf(rd->f, " pid=%" PRIu32, h->pid);
    fprintf(rd->f, " since=%s fence=%" PRIu64 " via=%s", since, h->fence,
            kinds[h->kind <= LK_CREATE ? h->kind : 0]);
    if (h->kind == LK_CREATE && rd->v->expires_ms) {
        fmt_time(rd->v->expires_ms, since, sizeof(since));
        fprintf(rd->f, " expires=%s", since);
    }
    fputc('\n', rd->f);
    return 0;
}

/* The text of `cat locks/<name>`; state lock held. Returns a malloc'ed string or NULL. */
static char *render(const state_t *st, const lock_view_t *v, size_t *len)
{
    char *out = NULL;
    size_t sz = 0;
    struct render rd = { .f = open_memstream(&out, &sz), .st = st, .v = v };
    if (!rd.f)
        return NULL;
    if (!v->holders)
        fprintf(rd.f, "free fence=%" PRIu64 "\n", v->last_fence);
    locks_sm_each_hold(st, v->lid, 0, render_holder, &rd);
    if (v->waiters)
        fprintf(rd.f, "waiting %" PRIu32 "\n", v->waiters);
    if (v->data && v->data->len) {
        fputs("data ", rd.f);
        fwrite(v->data->data, 1, v->data->len, rd.f);
        if (v->data->data[v->data->len - 1] != '\n')
            fputc('\n', rd.f);
    }
    if (fclose(rd.f) != 0) {
        free(out);
        return NULL;
    }
    *len = sz;
    return out;
}

/* ---------------------------------------------------------------- inodes */

/* The lock of inode ino (state lock held): 1 and *v, 0 for the namespace root, -ENOENT. */
static int resolve(const state_t *st, fuse_ino_t ino, lock_view_t *v)
{
    if (ino == NS_ROOT_ID(NS_LOCKS))
        return 0;
    if (!(ino & NS_INO_BIT) || NS_INO_NS(ino) != NS_LOCKS)
        return -ENOENT;
    int rc = locks_sm_get_lid(st, NS_INO_LOCAL(ino), v);
    return rc < 0 ? rc : 1;
}

static int attr_locked(const state_t *st, fuse_ino_t ino, struct stat *s)
{
    lock_view_t v;
    int rc = resolve(st, ino, &v);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        front_stat(s, ino, S_IFDIR | 0755, 0, 0);
        return 0;
    }
    size_t len = 0;
    free(render(st, &v, &len));
    front_stat(s, ino, S_IFREG | 0644, (off_t)len, v.mtime_ms);
    return 0;
}

static int do_getattr(lfront_t *lf, fuse_ino_t ino, struct stat *s)
{
    state_t *st = lstate(lf, ino_shard(ino));
    pthread_rwlock_rdlock(&st->lock);
    int rc = attr_locked(st, ino, s);
    pthread_rwlock_unlock(&st->lock);
    if (rc == 0 && S_ISDIR(s->st_mode))   /* the root: as the other fronts' (was the epoch) */
        front_stat(s, ino, S_IFDIR | 0755, 0, node_start_ms(lf->ctx.node));
    return rc;
}

static void lf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat s;
    front_reply_attr(req, do_getattr(LF(req), ino, &s), &s);
}

static int do_lookup(lfront_t *lf, fuse_ino_t parent, const char *name,
                     struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    if (parent != NS_ROOT_ID(NS_LOCKS))
        return -ENOTDIR;
    if (strlen(name) > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    uint32_t k = lshard(lf, name);
    state_t *st = lstate(lf, k);
    lock_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = locks_sm_get(st, name, strlen(name), &v);
    if (rc == 0) {
        e->ino = NS_SHARD_INO(NS_LOCKS, k, v.lid);
        rc = attr_locked(st, e->ino, &e->attr);
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static void lf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    front_reply_entry(req, do_lookup(LF(req), parent, name, &e), &e);
}

/* The name of the lock of ino, strdup'ed into *name (-EISDIR for the root). */
static int name_of(lfront_t *lf, fuse_ino_t ino, char **name)
{
    state_t *st = lstate(lf, ino_shard(ino));
    lock_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = resolve(st, ino, &v);
    if (rc == 0)
        rc = -EISDIR;
    else if (rc == 1)
        rc = (*name = strdup(v.name)) ? 0 : -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/* ---------------------------------------------------------------- files */

static lfh_t *fh_new(const char *name)
{
    lfh_t *fh = calloc(1, sizeof(*fh));
    if (fh)
        fh->flock_owner = __atomic_add_fetch(&flock_owner_seq, 1, __ATOMIC_RELAXED);
    if (!fh || !(fh->name = strdup(name))) {
        free(fh);
        return NULL;
    }
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

static int open_lock(lfront_t *lf, fuse_ino_t ino, int flags, lfh_t **out)
{
    state_t *st = lstate(lf, ino_shard(ino));
    lock_view_t v;
    lfh_t *fh = NULL;
    pthread_rwlock_rdlock(&st->lock);
    int rc = resolve(st, ino, &v);
    if (rc == 0)
        rc = -EISDIR;
    else if (rc == 1)
        rc = (fh = fh_new(v.name)) ? 0 : -ENOMEM;
    if (rc == 0 && (flags & O_ACCMODE) != O_WRONLY && !(fh->text = render(st, &v, &fh->tlen)))
        rc = -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

/* Answers an open (e NULL) or a create (entry *e) with the open file fh, or with -rc. */
static void reply_opened(fuse_req_t req, int rc, lfh_t *fh, struct fuse_file_info *fi,
                         const struct fuse_entry_param *e)
{
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if ((e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi)) != 0)
        fh_free(fh);
}

static void lf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lfh_t *fh = NULL;
    int rc = open_lock(LF(req), ino, fi->flags, &fh);
    reply_opened(req, rc, fh, fi, NULL);
}

static void lf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    lfront_t *lf = LF(req);
    int rc = parent == NS_ROOT_ID(NS_LOCKS) ? names_check(name, strlen(name), 0) : -ENOTDIR;
    int excl = !!(fi->flags & O_EXCL);
    uint64_t sid = rc == 0 ? lsid(lf, lshard(lf, name)) : 0;
    if (rc == 0 && excl && !sid)
        rc = -EIO;
    int held = 0;
    uint64_t fence = 0;
    if (rc == 0) {
        cmdbuf_t b;
        sm_result_t res;
        locks_cmd_create(&b, node_now_ms(), name, excl, sid, (uint32_t)fuse_req_ctx(req)->pid);
        rc = lpropose(lf, name, &b, &res);
        if (rc == 0)
            locks_result_create(&res, &held, NULL, &fence);
    }
    struct fuse_entry_param e;
    lfh_t *fh = NULL;
    if (rc == 0)
        rc = do_lookup(lf, parent, name, &e);
    if (rc == 0)
        rc = open_lock(lf, e.ino, fi->flags, &fh);
    if (rc == 0 && held && fence) {
        fh->create_fence = fence;
        granted_to(fh, sid, LK_CREATE, 0);
    }
    reply_opened(req, rc, fh, fi, &e);
}

static void lf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    if (!fh->text)
        fuse_reply_err(req, EBADF);
    else
        front_reply_text(req, &fh->mu, fh->text, fh->tlen, size, off);
}

/* Writes set the lock file's content (e.g. "$HOSTNAME $$"), kept next to the holder. */
static void lf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    lfront_t *lf = LF(req);
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    /* Content written through a descriptor whose lock was lost would land beside another
     * holder's: EIO instead (checked before the write, not atomically with it). */
    int rc = stale(lf, fh) ? -EIO : 0;
    /* FILE-API §1 Durability: with no quorum known, EIO at once (not after the operation
     * timeout), as a save's write() gives it (fs/tree_file.c do_write). */
    if (rc == 0 && node_quorum_lost(lf->ctx.node, lshard(lf, fh->name)))
        rc = -EIO;
    pthread_mutex_lock(&fh->mu);
    size_t end = (size_t)off + size;
    if (rc < 0)
        ;                        /* stale */
    else if (off < 0)
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
        locks_cmd_data(&b, node_now_ms(), fh->name, fh->wbuf, fh->wlen, fh->create_fence);
        rc = lpropose(lf, fh->name, &b, NULL);
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
    if (rc == 0) {
        cmdbuf_t b;
        locks_cmd_unlink(&b, node_now_ms(), name);
        rc = lpropose(LF(req), name, &b, NULL);
    }
    fuse_reply_err(req, -rc);
}

static void lf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    fuse_reply_err(req, EPERM);   /* locks/ is flat */
}

static void lf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int rc = do_lookup(LF(req), parent, name, &e);
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
    lfront_t *lf = LF(req);
    int rc = 0;
    char *name = NULL;
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
        rc = -EPERM;
    if (rc == 0)
        rc = name_of(lf, ino, &name);
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
        if (attr->st_size != 0) {
            rc = -EINVAL;
        } else {
            cmdbuf_t b;
            locks_cmd_data(&b, node_now_ms(), name, "", 0, 0);
            rc = lpropose(lf, name, &b, NULL);
        }
    }
    if (rc == 0 && (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW |
                              FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))) {
        cmdbuf_t b;
        locks_cmd_touch(&b, node_now_ms(), name);   /* touch renews a TTL */
        rc = lpropose(lf, name, &b, NULL);
    }
    free(name);
    struct stat s;
    if (rc == 0)
        rc = do_getattr(lf, ino, &s);
    front_reply_attr(req, rc, &s);
}

/* ---------------------------------------------------------------- lock requests */

/* w was removed from the table by the caller, which answered its request with EINTR: the
 * background proposer drops the wait, or the hold it was granted meanwhile. It cannot be
 * proposed here: this may run in an interrupt callback. Frees w. */
static void cancel_wait(lfront_t *lf, lwait_t *w)
{
    cmdbuf_t b;
    uint32_t k = lshard(lf, w->name);
    locks_cmd_cancel(&b, node_now_ms(), w->name, lsid(lf, k), w->wid);
    w_free(w);
    /* On failure (the node is stopping) b is dropped; the session's end drops the wait. */
    (void)session_bg_propose(node_session(lf->ctx.node), k, &b, NULL, NULL);
}

/* Interrupt callback (data: the front). A late interrupt may come for a request that is no
 * longer parked, so it looks the request up among the parked waits. */
static void lock_interrupt(fuse_req_t req, void *data)
{
    INTR_DEFER_IF_REGISTERING();
    lfront_t *lf = data;
    lwait_t *w = NULL, *x, *tmp;
    pthread_mutex_lock(&lf->ctx.mu);
    HASH_ITER(hh, lf->by_wid, x, tmp) {
        if (x->req == req) {
            w = x;
            HASH_DELETE(hh, lf->by_wid, w);     /* ours to answer and free */
            break;
        }
    }
    pthread_mutex_unlock(&lf->ctx.mu);
    if (w) {
        fuse_reply_err(req, EINTR);
        cancel_wait(lf, w);
    }
}

/* Answers parked wait w (taken out of by_wid by the caller) with rc: 0 granted, else the
 * error. */
static void answer_wait(lwait_t *w, fuse_req_t req, int rc)
{
    if (rc == 0)
        granted_to(w->fh, w->sid, w->kind, w->owner);
    /* A wait ended by its owner's own unlock (not a signal) must not answer EINTR: the
     * kernel turns EINTR of a lock request into ERESTARTSYS, which with no signal pending
     * reaches the caller as errno 512. ENOLCK says the lock was not taken. */
    fuse_reply_err(req, rc == -EINTR ? ENOLCK : -rc);
    w_free(w);
}

/* What the state says of wait (sid, wid) on lock name: 0 granted (a holder), 1 still
 * waiting, -EINTR gone while its session lives (its owner unlocked meanwhile, as apply
 * would have said), -ENOLCK gone with its session. State lock held. */
struct holdq { uint64_t sid, wid; };
static int is_hold(void *arg, const lock_hold_t *h)
{
    const struct holdq *q = arg;
    return h->sid == q->sid && h->wid == q->wid;
}

static int wait_outcome(const state_t *st, const char *name, uint64_t sid, uint64_t wid)
{
    struct holdq q = { sid, wid };
    lock_view_t v;
    if (locks_sm_get(st, name, strlen(name), &v) == 0) {
        if (locks_sm_each_hold(st, v.lid, 0, is_hold, &q) == 1)
            return 0;
        if (locks_sm_each_hold(st, v.lid, 1, is_hold, &q) == 1)
            return 1;
    }
    return session_find(&st->sessions, sid) ? -EINTR : -ENOLCK;
}

/* After shard k was restored from a snapshot (EFF_RESTORED), or when a wait parks after
 * such a restore: the grants and session ends the snapshot replaced were never delivered,
 * so every parked wait of k is looked up in the state and answered when it is no longer
 * waiting. The state lock is never held with lf->ctx.mu: the waits are collected first. */
static void recheck_waits(lfront_t *lf, uint32_t k)
{
    struct pending { uint64_t wid, sid; char *name; int rc; } *p = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&lf->ctx.mu);
    for (lwait_t *w = lf->by_wid; w; w = w->hh.next) {
        if (!w->req || lshard(lf, w->name) != k)
            continue;
        if (n == cap) {
            struct pending *np = realloc(p, (cap = cap ? 2 * cap : 16) * sizeof(*p));
            if (!np)
                break;                  /* out of memory: the rest keep waiting */
            p = np;
        }
        if (!(p[n].name = strdup(w->name)))
            break;
        p[n].wid = w->wid;
        p[n++].sid = w->sid;
    }
    pthread_mutex_unlock(&lf->ctx.mu);
    state_t *st = lstate(lf, k);
    pthread_rwlock_rdlock(&st->lock);
    for (size_t i = 0; i < n; i++)
        p[i].rc = wait_outcome(st, p[i].name, p[i].sid, p[i].wid);
    pthread_rwlock_unlock(&st->lock);
    for (size_t i = 0; i < n; i++) {
        lwait_t *w = NULL;
        fuse_req_t req = NULL;
        pthread_mutex_lock(&lf->ctx.mu);
        if (p[i].rc != 1)
            HASH_FIND(hh, lf->by_wid, &p[i].wid, sizeof(p[i].wid), w);
        if (w && w->req && w->sid == p[i].sid) {
            req = w->req;
            HASH_DELETE(hh, lf->by_wid, w);     /* ours to answer and free */
        }
        pthread_mutex_unlock(&lf->ctx.mu);
        if (req)
            answer_wait(w, req, p[i].rc);
        free(p[i].name);
    }
    free(p);
}

/* Proposes one lock request and replies now or once apply grants it. */
static void do_lock(fuse_req_t req, lfh_t *fh, uint8_t kind, uint64_t owner, uint8_t mode,
                    int wait, uint32_t pid)
{
    lfront_t *lf = LF(req);
    const char *name = fh->name;
    uint32_t k = lshard(lf, name);
    uint64_t sid = lsid(lf, k);
    if (!sid || stale(lf, fh)) {
        fuse_reply_err(req, EIO);
        return;
    }
    lwait_t *w = calloc(1, sizeof(*w));
    if (!w || !(w->name = strdup(name))) {
        free(w);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_mutex_lock(&lf->ctx.mu);
    w->wid = ++lf->next_wid;
    w->sid = sid;
    w->fh = fh;
    w->kind = kind;
    w->owner = owner;
    HASH_ADD(hh, lf->by_wid, wid, sizeof(w->wid), w);
    uint64_t restores = lf->restores[k];
    pthread_mutex_unlock(&lf->ctx.mu);
    cmdbuf_t b;
    sm_result_t res;
    locks_cmd_lock(&b, node_now_ms(), name, sid, kind, owner, mode, wait, w->wid, pid);
    int rc = node_propose(lf->ctx.node, k, &b, &res), granted = 0;
    if (rc == -ENOLCK) {
        /* our session ended while we were away and is not reopened yet: reopen, retry */
        uint64_t now_sid = session_local_refresh(node_session(lf->ctx.node), k, sid);
        if (now_sid && now_sid != sid) {
            sid = now_sid;
            pthread_mutex_lock(&lf->ctx.mu);
            w->sid = sid;
            pthread_mutex_unlock(&lf->ctx.mu);
            locks_cmd_lock(&b, node_now_ms(), name, sid, kind, owner, mode, wait, w->wid, pid);
            rc = node_propose(lf->ctx.node, k, &b, &res);
        }
    }
    if (rc == 0)
        locks_result_lock(&res, &granted, NULL);
    if (granted)
        granted_to(fh, sid, kind, owner);
    if (rc < 0 || granted) {
        pthread_mutex_lock(&lf->ctx.mu);
        HASH_DELETE(hh, lf->by_wid, w);         /* not parked: only we remove it */
        pthread_mutex_unlock(&lf->ctx.mu);
        w_free(w);
        fuse_reply_err(req, rc == -EAGAIN ? EWOULDBLOCK : -rc);
        return;
    }
    /* Waiting: park, unless the grant came meanwhile. The interrupt callback is registered
     * first; an interrupt that came before (deferred) or while the callback could not find
     * the request yet shows in fuse_req_interrupted, checked under lf->ctx.mu before
     * parking. */
    int intr = intr_register(req, lock_interrupt, lf);
    pthread_mutex_lock(&lf->ctx.mu);
    int done = w->done, cancel = !done && (intr || fuse_req_interrupted(req));
    rc = w->rc;
    if (done || cancel)
        HASH_DELETE(hh, lf->by_wid, w);         /* ours to answer and free */
    else
        w->req = req;                           /* parked: l_deliver or lock_interrupt */
    /* a restore of the shard since the proposal may have held this wait's answer, and its
     * re-check looked only at parked waits: look again, now that this one is parked */
    int recheck = !done && !cancel && lf->restores[k] != restores;
    pthread_mutex_unlock(&lf->ctx.mu);
    if (recheck)
        recheck_waits(lf, k);
    if (done) {
        w->sid = sid;
        answer_wait(w, req, rc);
    } else if (cancel) {
        fuse_reply_err(req, EINTR);
        cancel_wait(lf, w);
    }
}

/* An unlock asked for by req (NULL: the one a close implies, answered by the caller). An
 * explicit unlock through a stale descriptor fails with EIO: the lock was lost. */
static void do_unlock(fuse_req_t req, lfront_t *lf, lfh_t *fh, uint8_t kind, uint64_t owner)
{
    if (req && stale(lf, fh)) {
        fuse_reply_err(req, EIO);
        return;
    }
    const char *name = fh->name;
    uint32_t k = lshard(lf, name);
    cmdbuf_t b;
    locks_cmd_unlock(&b, node_now_ms(), name, lsid(lf, k), kind, owner);
    int rc = node_propose(lf->ctx.node, k, &b, NULL);
    if (req && (rc == 0 || rc == -ENOENT))
        released_by(fh, kind, owner);
    if (req)
        fuse_reply_err(req, rc == -ENOENT ? 0 : -rc);
}

static void lf_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    uint32_t pid = (uint32_t)fuse_req_ctx(req)->pid;
    if (op & LOCK_UN)
        do_unlock(req, LF(req), fh, LK_FLOCK, fh->flock_owner);
    else if (op & (LOCK_SH | LOCK_EX))
        do_lock(req, fh, LK_FLOCK, fh->flock_owner, (op & LOCK_EX) ? LM_EXCL : LM_SHARED,
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
        do_unlock(req, LF(req), fh, LK_POSIX, fi->lock_owner);
        return;
    }
    if (!whole_file(lk)) {
        fuse_reply_err(req, EINVAL);  /* byte-range locks are not supported */
        return;
    }
    uint32_t pid = lk->l_pid ? (uint32_t)lk->l_pid : (uint32_t)fuse_req_ctx(req)->pid;
    do_lock(req, fh, LK_POSIX, fi->lock_owner, lk->l_type == F_WRLCK ? LM_EXCL : LM_SHARED,
            sleep, pid);
}

/* getlk: the first holder (in grant order) that conflicts with the request, other than the
 * asking owner itself. */
struct getlk {
    uint64_t sid, owner;
    short want;                         /* F_RDLCK or F_WRLCK */
    struct flock *out;
};

static int getlk_holder(void *arg, const lock_hold_t *h)
{
    struct getlk *g = arg;
    if (h->sid == g->sid && h->kind == LK_POSIX && h->owner == g->owner)
        return 0;
    if (g->want != F_WRLCK && h->mode != LM_EXCL)
        return 0;
    g->out->l_type = h->mode == LM_EXCL ? F_WRLCK : F_RDLCK;
    g->out->l_whence = SEEK_SET;
    g->out->l_start = 0;
    g->out->l_len = 0;
    g->out->l_pid = h->sid == g->sid ? (pid_t)h->pid : 0;
    return 1;
}

static void lf_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                     struct flock *lk)
{
    lfront_t *lf = LF(req);
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    uint32_t k = lshard(lf, fh->name);
    state_t *st = lstate(lf, k);
    struct flock out = *lk;
    out.l_type = F_UNLCK;
    struct getlk g = { .sid = lsid(lf, k), .owner = fi->lock_owner, .want = lk->l_type, .out = &out };
    lock_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    if (locks_sm_get(st, fh->name, strlen(fh->name), &v) == 0)
        locks_sm_each_hold(st, v.lid, 0, getlk_holder, &g);
    pthread_rwlock_unlock(&st->lock);
    fuse_reply_lock(req, &out);
}

/* Whether (this session, kind, owner) holds or waits on lock name; takes the state lock. */
static int owner_active(lfront_t *lf, const char *name, uint8_t kind, uint64_t owner)
{
    uint32_t k = lshard(lf, name);
    state_t *st = lstate(lf, k);
    uint64_t sid = lsid(lf, k);
    pthread_rwlock_rdlock(&st->lock);
    int found = locks_sm_owner_active(st, name, sid, kind, owner);
    pthread_rwlock_unlock(&st->lock);
    return found;
}

static void lf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lfront_t *lf = LF(req);
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    /* POSIX locks of the closing process go with any close of the file. */
    int rc = stale(lf, fh) ? EIO : 0;           /* tell the closer its lock was lost */
    if (owner_active(lf, fh->name, LK_POSIX, fi->lock_owner))
        do_unlock(NULL, lf, fh, LK_POSIX, fi->lock_owner);
    fuse_reply_err(req, rc);
}

static void lf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lfront_t *lf = LF(req);
    lfh_t *fh = (lfh_t *)(uintptr_t)fi->fh;
    /* The file description is gone (also when its process was killed): its flock goes. */
    if (fi->flock_release && owner_active(lf, fh->name, LK_FLOCK, fh->flock_owner))
        do_unlock(NULL, lf, fh, LK_FLOCK, fh->flock_owner);
    pthread_mutex_lock(&fh->mu);      /* a reply still being written (see lf_read) */
    pthread_mutex_unlock(&fh->mu);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

static void lf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);   /* every write is committed when it returns */
}

/* ---------------------------------------------------------------- directory */

static void ldir_free(dirlist_t *d)
{
    if (d)
        dirlist_clear(d);
    free(d);
}

struct listing {
    dirlist_t *d;
    uint32_t shard;
};

static int list_lock(void *arg, const lock_view_t *v)
{
    struct listing *l = arg;
    return dirlist_add(l->d, v->name, NS_SHARD_INO(NS_LOCKS, l->shard, v->lid), S_IFREG);
}

static void lf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (ino != NS_ROOT_ID(NS_LOCKS)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    lfront_t *lf = LF(req);
    dirlist_t *d = calloc(1, sizeof(*d));
    int rc = d ? 0 : -ENOMEM;
    if (rc == 0)
        rc = dirlist_add(d, ".", NS_ROOT_ID(NS_LOCKS), S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", FUSE_ROOT_ID, S_IFDIR);
    /* the root spans every shard */
    for (uint32_t k = 0; rc == 0 && k < node_nshards(lf->ctx.node); k++) {
        state_t *st = lstate(lf, k);
        struct listing l = { d, k };
        pthread_rwlock_rdlock(&st->lock);
        rc = locks_sm_each(st, list_lock, &l);
        pthread_rwlock_unlock(&st->lock);
    }
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

/* ---------------------------------------------------------------- xattrs
 * user.fence (read-only), user.ttl. */

/* Proposes user.ttl = ttl_s (0: none) for lock lname. */
static int set_ttl(lfront_t *lf, const char *lname, uint32_t ttl_s)
{
    cmdbuf_t b;
    locks_cmd_setttl(&b, node_now_ms(), lname, ttl_s);
    return lpropose(lf, lname, &b, NULL);
}

static void lf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    lfront_t *lf = LF(req);
    char *lname = NULL;
    uint64_t v = 0;
    int rc = name_of(lf, ino, &lname);
    if (rc == -EISDIR || (rc == 0 && strncmp(name, "user.", 5) != 0))
        rc = -ENOTSUP;
    else if (rc == 0 && strcmp(name, "user.fence") == 0)
        rc = -EPERM;
    else if (rc == 0 && strcmp(name, "user.ttl") != 0)
        rc = -ENOTSUP;
    else if (rc == 0 && names_parse_uint(value, size, LOCK_TTL_MAX, &v) < 0)
        rc = -EINVAL;
    if (rc == 0)
        rc = set_ttl(lf, lname, (uint32_t)v);
    free(lname);
    fuse_reply_err(req, -rc);
}

static void lf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    lfront_t *lf = LF(req);
    char *lname = NULL;
    int rc = name_of(lf, ino, &lname);
    if (rc == 0 && strcmp(name, "user.fence") == 0)
        rc = -EPERM;
    else if (rc == -EISDIR || (rc == 0 && strcmp(name, "user.ttl") != 0))
        rc = -ENODATA;
    if (rc == 0)
        rc = set_ttl(lf, lname, 0);
    free(lname);
    fuse_reply_err(req, -rc);
}

static void lf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    state_t *st = lstate(LF(req), ino_shard(ino));
    char text[32];
    int len = 0;
    lock_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = resolve(st, ino, &v);
    if (rc == 0)
        rc = -ENODATA;
    else if (rc == 1 && strcmp(name, "user.fence") == 0)
        len = snprintf(text, sizeof(text), "%" PRIu64, v.last_fence);
    else if (rc == 1 && strcmp(name, "user.ttl") == 0 && v.ttl_s)
        len = snprintf(text, sizeof(text), "%" PRIu32, v.ttl_s);
    else if (rc == 1)
        rc = -ENODATA;
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        front_reply_xattr(req, text, (size_t)len, size);
}

static void lf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    static const char both[] = "user.fence\0user.ttl";
    state_t *st = lstate(LF(req), ino_shard(ino));
    lock_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = resolve(st, ino, &v);
    int ttl = rc == 1 && v.ttl_s;
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else if (rc == 0)
        front_reply_xattr(req, "", 0, size);
    else
        front_reply_xattr(req, both, ttl ? sizeof(both) : sizeof("user.fence"), size);
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

/* ---------------------------------------------------------------- node side */

/* EFF_LOCK_WAIT for this mount's session: answer the parked request of that wait, or leave
 * the answer for the proposing thread when it is not parked yet. No state lock is held. */
static void l_deliver(void *ctx, effect_t *e)
{
    lfront_t *lf = ctx;
    if (e->kind == EFF_RESTORED && e->shard < NODE_SHARDS_MAX) {
        pthread_mutex_lock(&lf->ctx.mu);
        lf->restores[e->shard]++;
        pthread_mutex_unlock(&lf->ctx.mu);
        recheck_waits(lf, e->shard);
        return;
    }
    uint64_t self = lsid(lf, e->shard);
    if (e->kind != EFF_LOCK_WAIT || !self || e->sid != self)
        return;                     /* other nodes' sessions answer their own waits */
    lwait_t *w;
    fuse_req_t req = NULL;
    pthread_mutex_lock(&lf->ctx.mu);
    HASH_FIND(hh, lf->by_wid, &e->wid, sizeof(e->wid), w);
    if (w && w->req) {
        req = w->req;
        HASH_DELETE(hh, lf->by_wid, w);         /* ours to answer and free */
    } else if (w) {
        w->done = 1;                            /* the proposing thread answers */
        w->rc = e->u.lock.rc;
    }
    pthread_mutex_unlock(&lf->ctx.mu);
    if (req)
        answer_wait(w, req, e->u.lock.rc);
}

/* Collects create locks past their TTL end at now (at most SWEEP_LOCKS). */
struct due {
    uint64_t now;
    char *names[SWEEP_LOCKS];
    uint64_t fences[SWEEP_LOCKS];
    int n;
};

static int due_lock(void *arg, const lock_view_t *v)
{
    struct due *d = arg;
    if (v->expires_ms && v->expires_ms <= d->now && v->create_fence &&
        (d->names[d->n] = strdup(v->name)))
        d->fences[d->n++] = v->create_fence;
    return d->n == SWEEP_LOCKS;
}

/* Leader side: proposes EXPIRE for create locks past their TTL; apply re-checks each
 * against the command's time, so a touch committed in between wins (EAGAIN). */
static void sweep_shard(lfront_t *lf, uint32_t k)
{
    state_t *st = lstate(lf, k);
    struct due d = { .now = node_now_ms() };
    if (!node_is_leader(lf->ctx.node, k))
        return;
    pthread_rwlock_rdlock(&st->lock);
    locks_sm_each(st, due_lock, &d);
    pthread_rwlock_unlock(&st->lock);
    for (int i = 0; i < d.n; i++) {
        cmdbuf_t b;
        locks_cmd_expire(&b, d.now, d.names[i], d.fences[i]);
        int rc = node_propose(lf->ctx.node, k, &b, NULL);
        if (rc < 0 && rc != -EAGAIN && rc != -ENOENT)
            fprintf(stderr, "quorumfs: lock %s: TTL expiry not committed: %s\n", d.names[i],
                    strerror(-rc));
        free(d.names[i]);
    }
}

static void l_sweep(void *ctx)
{
    lfront_t *lf = ctx;
    for (uint32_t k = 0; k < node_nshards(lf->ctx.node); k++)
        sweep_shard(lf, k);
}

static void *l_start(struct node *n)
{
    _Static_assert(offsetof(lfront_t, ctx) == 0, "front_ctx_new makes the head of the context");
    return front_ctx_new(sizeof(lfront_t), n);
}

/* At node close no request, delivery or interrupt reaches lf any more. Waits still parked
 * belong to a FUSE session that is gone: they are freed without an answer. */
static void l_stop(void *ctx)
{
    lfront_t *lf = ctx;
    lwait_t *w, *tmp;
    HASH_ITER(hh, lf->by_wid, w, tmp) {
        HASH_DELETE(hh, lf->by_wid, w);
        w_free(w);
    }
    front_ctx_free(lf);
}

const ns_front_t locks_front = {
    .start = l_start,
    .sweep = l_sweep,
    .stop = l_stop,
    .deliver = l_deliver,
    .fuse = &locks_fuse,
};
