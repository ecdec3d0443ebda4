/* fs/logs_fuse.c — the FUSE front of logs/ (FILE-API §7, design in docs/LOGS.md): the flat
 * directory logs/<name> of append-only logs, one record per write(), reads by byte offset,
 * EPERM for writes off the end and truncation, the xattrs user.retention_bytes,
 * user.retention_seconds, user.segment_bytes and user.first_offset, the directory
 * logs/.follow/ whose files stream a log from its end as records commit (blocking,
 * interruptible, poll()-able), and the leader-side sweep that proposes time retention. It
 * reads the state only through fs/logs_sm.h's read API and builds every command with its
 * encoders.
 *
 * Inodes (fs/ns.h module inodes, shard in bits 48..55): a log is NS_SHARD_INO(logs, k, id)
 * with its slot (logs_slots.h) in bits 40..45 (ids up to 2^40): the kernel sees one log
 * through up to 64 nodeids, all with slot 0's number as st_ino, so that its writers hold
 * different inode locks (a lookup answers the log's current slot; a write open or a cached
 * read open of it moves lookups to another, and no cached reader shares a writer's slot);
 * the follow file of a log is slot 0's with FOLLOW_BIT, logs/.follow
 * itself NS_INO(logs, FOLLOW_BIT). All are computed from the state and the slot: nothing to
 * forget.
 *
 * Context: one lgfront_t per node (start), reached from a request through ns_front_ctx; it
 * begins with the front_ctx_t of fs/front.h (lf->ctx: the node and the mutex).
 *
 * Locking, in order (a lock is only taken after those before it, or alone):
 *   state lock    st->lock, read, around read-API calls (and a follow file's fill).
 *   lf->ctx.mu    the follow files: each one's position, parked read, kept poll handle and
 *                 the list. A leaf taken with the state's read lock held or alone; never
 *                 held while proposing or registering an interrupt callback. Replies to
 *                 parked reads are written holding it, so a release (which takes it) never
 *                 frees a file whose reply is being written.
 *
 * Page cache (docs/LOGS.md "Reads through the page cache", logs_pcache.h): a read-only open
 * of a log whose oldest retained offset is page-aligned is not direct_io, so the kernel
 * serves it from its page cache; every other open is direct_io. lf->pc is told when
 * retention moves a log's start or the log goes: at once from this mount's requests (rm,
 * setxattr, append), queued from the delivery hook (the applying thread never waits for the
 * kernel). lf->pc's mutex is a leaf below the state lock.
 *
 * Follow reads: a read that finds nothing past its position parks under both locks (so no
 * append can apply between the look and the park: apply needs the write lock), and the
 * EFF_LOG_GREW of the next append or of the removal answers it (or the one a snapshot
 * install emits for the whole shard). Whoever clears fh->waiting
 * under lf->ctx.mu answers that request (delivery, interrupt, release), nobody else. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include "fs/dirlist.h"
#include "fs/front.h"
#include "fs/intr.h"
#include "fs/logs.h"
#include "fs/logs_pcache.h"
#include "fs/logs_slots.h"
#include "fs/mount.h"
#include "fs/names.h"
#include "fs/node.h"

#define FOLLOW_BIT (1ull << 47)              /* local part of a follow inode */
#define INO_FOLLOW_DIR NS_INO(NS_LOGS, FOLLOW_BIT)
#define SLOT_SHIFT 40                        /* a log inode's slot: bits 40..45 */
#define ID_MAX ((1ull << SLOT_SHIFT) - 1)    /* log ids in inode numbers */
#define PC_IDLE_MAX 4096                     /* logs the page cache table keeps idle */
_Static_assert(LGSL_SLOTS == LGPC_SLOTS, "one slot numbering");
#define SWEEP_LOGS 64                        /* TRIMs proposed per shard and sweep */
#define POLL_READ (POLLIN | POLLRDNORM)

/* An open log file or follow file. */
typedef struct lgfh {
    int follow;
    int cached;                      /* a log file read through the page cache (2: keeping
                                      * the pages cached before the open) */
    uint32_t shard;
    uint64_t id;
    unsigned slot;                   /* a log file: the slot (inode) it was opened through */
    int wslot;                       /* a write open counted in lf->sl on this slot, or -1 */
    int rslot;                       /* a cached read open counted in lf->sl on it, or -1 */
    char *name;
    /* log files: what fstat shows once the log is removed (FILE-API §1 "Open files"): the
     * attributes at the open, the size the largest end this descriptor saw since (atomic) */
    uint64_t seen_end, seen_mtime, seen_ctime;
    /* follow files, under lf->ctx.mu */
    uint64_t pos;                    /* the next offset to stream */
    fuse_req_t waiting;              /* a parked read, or NULL */
    size_t want;                     /* its size */
    struct fuse_pollhandle *ph;      /* a kept poll handle, or NULL */
    struct lgfh *prev, *next;        /* lf->follows, or lf->opens for a log file */
    /* a delivery's answer to the parked read, between the look and the reply */
    fuse_req_t ans_req;
    long ans_n;
    char *ans_buf;
    struct lgfh *ready;
} lgfh_t;

typedef struct lgfront {
    front_ctx_t ctx;                 /* first: node, mu */
    lgfh_t *follows;                 /* open follow files */
    lgfh_t *opens;                   /* open log files (for fstat after rm) */
    lgpc_t *pc;                      /* page cache invalidations; NULL: no cached opens */
    lgsl_t *sl;                      /* the slots lookups answer; NULL: always slot 0 */
    struct fuse_session *se;         /* the mount's session, from the first cached open */
} lgfront_t;

static lgfront_t *LF(fuse_req_t req) { return ns_front_ctx(req, NS_LOGS); }
/* A log lives whole on one shard (FILE-API §11): the one of its name. */
static uint32_t lshard(const lgfront_t *lf, const char *name)
{
    return node_shard_of(lf->ctx.node, NS_LOGS, name);
}
static state_t *lstate(const lgfront_t *lf, uint32_t k) { return node_state(lf->ctx.node, k); }
static int is_follow_name(const char *name) { return strcmp(name, LOGS_FOLLOW) == 0; }

/* ---------------------------------------------------------------- inodes */

enum { K_ROOT, K_LOG, K_FOLLOW_DIR, K_FOLLOW };

/* What inode ino is: its kind, and for a log or follow file its shard and log id. */
static int ino_kind(fuse_ino_t ino, uint32_t *k, uint64_t *id)
{
    if (ino == NS_ROOT_ID(NS_LOGS))
        return K_ROOT;
    if (ino == INO_FOLLOW_DIR)
        return K_FOLLOW_DIR;
    if (!(ino & NS_INO_BIT) || NS_INO_NS(ino) != NS_LOGS)
        return -ENOENT;
    uint64_t local = NS_INO_LOCAL(ino);
    *k = NS_INO_SHARD(ino);
    *id = local & ID_MAX;
    return local & FOLLOW_BIT ? K_FOLLOW : K_LOG;
}

/* The nodeid of log id of shard k seen through slot (logs_slots.h); slot 0's is the log's
 * st_ino through every slot. */
static fuse_ino_t log_ino(uint32_t k, uint64_t id, unsigned slot)
{
    return NS_SHARD_INO(NS_LOGS, k, id | (uint64_t)slot << SLOT_SHIFT);
}

/* The slot of a log's nodeid. */
static unsigned ino_slot(fuse_ino_t ino)
{
    return (unsigned)(NS_INO_LOCAL(ino) >> SLOT_SHIFT) & (LGSL_SLOTS - 1);
}

/* The nodeid of slot 0 of the log of ino (the log's st_ino and table key). */
static fuse_ino_t ino_base(fuse_ino_t ino)
{
    return ino & ~((uint64_t)(LGSL_SLOTS - 1) << SLOT_SHIFT);
}

static void log_stat(struct stat *s, fuse_ino_t ino, const log_view_t *v)
{
    front_stat(s, ino, S_IFREG | 0644, (off_t)v->end, v->mtime_ms);
    s->st_blocks = (blkcnt_t)((v->disk_bytes + 511) / 512);
    s->st_ctim.tv_sec = (time_t)(v->ctime_ms / 1000);
    s->st_ctim.tv_nsec = (long)(v->ctime_ms % 1000) * 1000000;
}

/* The attributes of ino; 0 or -errno. */
static int do_getattr(lgfront_t *lf, fuse_ino_t ino, struct stat *s)
{
    uint32_t k = 0;
    uint64_t id = 0;
    int kind = ino_kind(ino, &k, &id);
    if (kind < 0)
        return kind;
    if (kind == K_ROOT || kind == K_FOLLOW_DIR) {
        front_stat(s, ino, S_IFDIR | (kind == K_ROOT ? 0755 : 0555), 0,
                   node_start_ms(lf->ctx.node));
        return 0;
    }
    if (k >= node_nshards(lf->ctx.node))
        return -ENOENT;
    state_t *st = lstate(lf, k);
    log_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = logs_sm_get_id(st, id, &v);
    if (rc == 0 && kind == K_LOG)
        log_stat(s, ino_base(ino), &v);
    else if (rc == 0)
        front_stat(s, ino, S_IFREG | 0444, 0, v.mtime_ms);
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/* The attributes of a removed log that a descriptor of this node still holds open: those it
 * saw, with st_nlink 0 (FILE-API §1 "Open files"). 0 or -ENOENT. */
static int removed_getattr(lgfront_t *lf, fuse_ino_t ino, struct stat *s)
{
    uint32_t k = 0;
    uint64_t id = 0;
    if (ino_kind(ino, &k, &id) != K_LOG)
        return -ENOENT;
    int rc = -ENOENT;
    pthread_mutex_lock(&lf->ctx.mu);
    for (lgfh_t *fh = lf->opens; fh; fh = fh->next)
        if (fh->shard == k && fh->id == id) {
            off_t size = (off_t)__atomic_load_n(&fh->seen_end, __ATOMIC_RELAXED);
            front_stat(s, ino_base(ino), S_IFREG | 0644, size, fh->seen_mtime);
            s->st_ctim.tv_sec = (time_t)(fh->seen_ctime / 1000);
            s->st_ctim.tv_nsec = (long)(fh->seen_ctime % 1000) * 1000000;
            s->st_nlink = 0;
            s->st_blocks = 0;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&lf->ctx.mu);
    return rc;
}

static void lg_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lgfront_t *lf = LF(req);
    struct stat s;
    int rc = do_getattr(lf, ino, &s);
    if (rc == -ENOENT)
        rc = removed_getattr(lf, ino, &s);
    front_reply_attr(req, rc, &s);
}

static int do_lookup(lgfront_t *lf, fuse_ino_t parent, const char *name,
                     struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    if (parent != NS_ROOT_ID(NS_LOGS) && parent != INO_FOLLOW_DIR)
        return -ENOTDIR;
    if (strlen(name) > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    if (parent == NS_ROOT_ID(NS_LOGS) && is_follow_name(name)) {
        e->ino = INO_FOLLOW_DIR;
        return do_getattr(lf, e->ino, &e->attr);
    }
    uint32_t k = lshard(lf, name);
    /* the mount's barrier covered a root lookup's shard; .follow/'s is taken here */
    int rc = parent == INO_FOLLOW_DIR ? node_read_barrier(lf->ctx.node, k) : 0;
    if (rc < 0)
        return rc;
    state_t *st = lstate(lf, k);
    log_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    rc = logs_sm_get(st, name, strlen(name), &v);
    if (rc == 0 && v.id > ID_MAX)
        rc = -EOVERFLOW;                   /* 2^40 logs created on this shard */
    if (rc == 0 && parent == NS_ROOT_ID(NS_LOGS)) {
        log_stat(&e->attr, log_ino(k, v.id, 0), &v);
        e->ino = log_ino(k, v.id, lf->sl ? lgsl_lookup(lf->sl, e->attr.st_ino) : 0);
    } else if (rc == 0) {
        e->ino = NS_SHARD_INO(NS_LOGS, k, FOLLOW_BIT | v.id);
        front_stat(&e->attr, e->ino, S_IFREG | 0444, 0, v.mtime_ms);
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static void lg_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    front_reply_entry(req, do_lookup(LF(req), parent, name, &e), &e);
}

/* ---------------------------------------------------------------- open files */

static void fh_free(lgfh_t *fh)
{
    if (fh) {
        free(fh->name);
        free(fh);
    }
}

/* fh's list: lf->follows for a follow file, lf->opens for a log file. */
static lgfh_t **fh_list(lgfront_t *lf, const lgfh_t *fh)
{
    return fh->follow ? &lf->follows : &lf->opens;
}

static void fh_link_locked(lgfront_t *lf, lgfh_t *fh)
{
    lgfh_t **head = fh_list(lf, fh);
    fh->prev = NULL;
    fh->next = *head;
    if (*head)
        (*head)->prev = fh;
    *head = fh;
}

static void fh_unlink_locked(lgfront_t *lf, lgfh_t *fh)
{
    lgfh_t **head = fh_list(lf, fh);
    if (fh->prev)
        fh->prev->next = fh->next;
    else if (*head == fh)
        *head = fh->next;
    if (fh->next)
        fh->next->prev = fh->prev;
    fh->prev = fh->next = NULL;
}

/* Opens inode ino with open flags: a log (O_TRUNC of a non-empty one is EPERM) or a follow
 * file (read-only, positioned at the log's end). 0 and *out, or -errno. */
static int open_ino(lgfront_t *lf, fuse_ino_t ino, int flags, lgfh_t **out)
{
    uint32_t k = 0;
    uint64_t id = 0;
    int kind = ino_kind(ino, &k, &id);
    if (kind < 0)
        return kind;
    if (kind == K_ROOT || kind == K_FOLLOW_DIR)
        return -EISDIR;
    if (k >= node_nshards(lf->ctx.node))
        return -ENOENT;
    int wr = (flags & O_ACCMODE) != O_RDONLY;
    if (kind == K_FOLLOW && wr)
        return -EPERM;              /* read-only (FILE-API §1) */
    lgfh_t *fh = calloc(1, sizeof(*fh));
    if (!fh)
        return -ENOMEM;
    state_t *st = lstate(lf, k);
    log_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = logs_sm_get_id(st, id, &v);
    if (rc == 0 && !(fh->name = strdup(v.name)))
        rc = -ENOMEM;
    if (rc == 0 && kind == K_LOG && wr && (flags & O_TRUNC) && v.end > 0)
        rc = -EPERM;                       /* a log is never truncated */
    /* Read-only opens of a log read through the page cache when no page can begin below
     * the oldest retained offset (logs_pcache.h); registered under the state lock, so a
     * drop applied after this look is reported to the table (the delivery finds it). */
    fh->cached = rc == 0 && kind == K_LOG && !wr && lf->pc && lgpc_cacheable(v.start);
    if (fh->cached && !__atomic_load_n(&lf->se, __ATOMIC_ACQUIRE))
        fh->cached = 0;                    /* no session to notify yet (note_session) */
    /* never cached on a slot a writer of this mount writes through: its kernel size is
     * that writer's stale end (logs_slots.h); counted, so writers keep off this slot */
    fh->rslot = -1;
    if (fh->cached && lf->sl) {
        if (lgsl_open_read(lf->sl, ino_base(ino), ino_slot(ino)))
            fh->rslot = (int)ino_slot(ino);
        else
            fh->cached = 0;
    }
    if (fh->cached)                        /* 2: keep the pages; 1: drop them; 0: direct */
        fh->cached = 1 + lgpc_open(lf->pc, ino_base(ino), ino_slot(ino), v.start);
    fh->pos = v.end;
    fh->seen_end = v.end;
    fh->seen_mtime = v.mtime_ms;
    fh->seen_ctime = v.ctime_ms;
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    fh->follow = kind == K_FOLLOW;
    fh->shard = k;
    fh->id = id;
    fh->slot = kind == K_LOG ? ino_slot(ino) : 0;
    fh->wslot = -1;
    /* a writer of the log's current slot moves lookups to another one (logs_slots.h) */
    if (kind == K_LOG && wr && lf->sl &&
        lgsl_open_write(lf->sl, ino_base(ino), ino_slot(ino)) == 0)
        fh->wslot = (int)ino_slot(ino);
    pthread_mutex_lock(&lf->ctx.mu);
    fh_link_locked(lf, fh);
    pthread_mutex_unlock(&lf->ctx.mu);
    *out = fh;
    return 0;
}

static void release_fh(lgfront_t *lf, lgfh_t *fh)
{
    struct fuse_pollhandle *ph = NULL;
    pthread_mutex_lock(&lf->ctx.mu);
    if (fh->waiting) {                     /* its reader is gone: ours to answer */
        fuse_reply_err(fh->waiting, EINTR);
        fh->waiting = NULL;
    }
    ph = fh->ph;
    fh->ph = NULL;
    fh_unlink_locked(lf, fh);
    pthread_mutex_unlock(&lf->ctx.mu);
    if (fh->wslot >= 0)
        lgsl_close_write(lf->sl, log_ino(fh->shard, fh->id, 0), (unsigned)fh->wslot);
    if (fh->rslot >= 0)
        lgsl_close_read(lf->sl, log_ino(fh->shard, fh->id, 0), (unsigned)fh->rslot);
    if (fh->cached)
        lgpc_close(lf->pc, log_ino(fh->shard, fh->id, 0));
    fuse_pollhandle_destroy(ph);
    fh_free(fh);
}

/* ---------------------------------------------------------------- page cache */

/* Tells the kernel to drop the cached pages of the log key (slot 0's nodeid) seen through
 * slot in [off, off + len) (len 0: to the end); lgpc_notify_fn. Without a session no open
 * was cached, so there is nothing to drop. */
static int pc_notify(void *arg, uint64_t key, unsigned slot, off_t off, off_t len)
{
    lgfront_t *lf = arg;
    struct fuse_session *se = __atomic_load_n(&lf->se, __ATOMIC_ACQUIRE);
    fuse_ino_t ino = key | (uint64_t)slot << SLOT_SHIFT;
    return se ? fuse_lowlevel_notify_inval_inode(se, ino, off, len) : -ENOENT;
}

/* Reports log id of shard k as it is now to the page cache table: its retention may have
 * dropped segments, or it may be gone. now: from a request handler (written at once). For
 * a log no cached open used on this mount it costs one table look-up. */
static void pc_report(lgfront_t *lf, uint32_t k, uint64_t id, int now)
{
    fuse_ino_t key = log_ino(k, id, 0);
    if (!lf->pc || !lgpc_tracked(lf->pc, key))
        return;
    state_t *st = lstate(lf, k);
    log_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int exists = logs_sm_get_id(st, id, &v) == 0;
    pthread_rwlock_unlock(&st->lock);
    lgpc_report(lf->pc, key, exists, exists ? v.start : 0, now);
}

/* Raises fh->seen_end to end (reads and writes of one descriptor may run concurrently). */
static void note_seen(lgfh_t *fh, uint64_t end)
{
    uint64_t seen = __atomic_load_n(&fh->seen_end, __ATOMIC_RELAXED);
    while (seen < end && !__atomic_compare_exchange_n(&fh->seen_end, &seen, end, 1,
                                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Answers an open (e NULL) or a create (entry *e) with the open file fh, or with -rc. */
static void reply_opened(fuse_req_t req, lgfront_t *lf, int rc, lgfh_t *fh,
                         struct fuse_file_info *fi, const struct fuse_entry_param *e)
{
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    /* Writes always go direct (an O_APPEND write's offset is the kernel's idea of the end,
     * stale when other mounts append: such bytes must never enter the page cache), and so
     * do follow files and opens that may not use the cache (open_ino). */
    fi->direct_io = !fh->cached;
    fi->keep_cache = fh->cached == 2;
    fi->nonseekable = fh->follow;
    /* fh is the opener's once the reply is out: it may close it and another thread's
     * RELEASE free fh before the reply call returns, so what follows is taken now */
    int cached = fh->cached;
    uint64_t key = log_ino(fh->shard, fh->id, 0);
    unsigned slot = fh->slot;
    if ((e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi)) != 0)
        release_fh(lf, fh);
    else if (cached)                       /* the kernel has the answer: keep_cache or not */
        lgpc_opened(lf->pc, key, slot, cached == 2);
}

/* Keeps the mount's session for the page cache invalidations (the first request suffices:
 * the session outlives every request and is set before the first one). */
static void note_session(lgfront_t *lf, fuse_req_t req)
{
    if (!__atomic_load_n(&lf->se, __ATOMIC_RELAXED))
        __atomic_store_n(&lf->se, mount_session(mount_of(req)), __ATOMIC_RELEASE);
}

static void lg_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lgfront_t *lf = LF(req);
    note_session(lf, req);
    lgfh_t *fh = NULL;
    int rc = open_ino(lf, ino, fi->flags, &fh);
    reply_opened(req, lf, rc, fh, fi, NULL);
}

/* `>>`, `>` of a new name, touch: the log is created (committed) before the open returns;
 * O_EXCL on an existing log is EEXIST. */
static void lg_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    lgfront_t *lf = LF(req);
    note_session(lf, req);
    int rc = parent == NS_ROOT_ID(NS_LOGS) ? 0 : parent == INO_FOLLOW_DIR ? -EPERM : -ENOTDIR;
    if (rc == 0 && is_follow_name(name))
        rc = -EINVAL;                      /* the reserved control name */
    if (rc == 0)
        rc = names_check(name, strlen(name), 0);
    if (rc == 0)
        rc = node_space_check(lf->ctx.node, strlen(name) + 64);
    if (rc == 0) {
        cmdbuf_t b;
        logs_cmd_create(&b, node_now_ms(), name, !!(fi->flags & O_EXCL));
        rc = node_propose(lf->ctx.node, lshard(lf, name), &b, NULL);
    }
    struct fuse_entry_param e;
    lgfh_t *fh = NULL;
    if (rc == 0)
        rc = do_lookup(lf, parent, name, &e);
    if (rc == 0)
        rc = open_ino(lf, e.ino, fi->flags, &fh);
    reply_opened(req, lf, rc, fh, fi, &e);
}

static void lg_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    release_fh(LF(req), (lgfh_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void lg_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);   /* every write is committed when it returns */
}

static void lg_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);
}

/* One write() is one record, committed before the reply. Through an O_APPEND descriptor it
 * goes at the end whatever the offset; otherwise apply accepts it only at the end (EPERM).
 * O_APPEND is the descriptor's flag at this write (fi->flags: fcntl F_SETFL changes it),
 * not the one it was opened with. */
static void lg_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    lgfront_t *lf = LF(req);
    lgfh_t *fh = (lgfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->follow)
        rc = -EBADF;
    else if (off < 0)
        rc = -EINVAL;
    else if (size > LOGS_RECORD_MAX)
        rc = -EFBIG;
    else if (size > 0)
        rc = node_space_check(lf->ctx.node, size);
    if (rc == 0 && size > 0) {
        cmdbuf_t b;
        logs_cmd_append(&b, node_now_ms(), fh->name, fh->id,
                        (fi->flags & O_APPEND) ? LOGS_AT_END : (uint64_t)off, buf, size);
        sm_result_t res = { 0 };
        rc = node_propose(lf->ctx.node, fh->shard, &b, &res);
        if (rc == -ENOENT)
            rc = -ESTALE;                  /* removed since the open */
        uint64_t at = 0;
        if (rc == 0 && res.len >= 8) {     /* the record's offset: fstat after rm sees it */
            memcpy(&at, res.data, 8);
            note_seen(fh, at + size);
        }
        /* Cached readers of this mount must see the record when write() returns: the page
         * at the kernel's idea of the end (off: stale when other mounts appended) may be
         * cached with zeros past the old end. The kernel (6.18 here) drops the written
         * range after a direct write itself; this covers the kernel's range and the
         * record's, from the lower one to the end, without relying on it. The append may
         * have sealed and dropped old segments too. */
        uint64_t tracked = rc == 0 && lf->pc ? lgpc_tracked(lf->pc, ino_base(ino)) : 0;
        uint64_t mine = 1ull << ino_slot(ino);
        if (tracked & mine)
            lgpc_inval_now(lf->pc, ino_base(ino), mine, (uint64_t)off < at ? off : (off_t)at,
                           0);
        if (tracked)                       /* every slot: retention may have moved */
            pc_report(lf, fh->shard, fh->id, 1);
    }
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* ---------------------------------------------------------------- reads */

/* Takes up to size bytes of fh's log at fh->pos into *out (malloc'ed) and moves pos past
 * them. Returns the bytes, 0 when nothing is there yet, -ENOENT when the log is gone (end
 * of the stream), -ESPIPE when retention dropped pos, or -errno. State read lock and
 * lf->ctx.mu held. */
static long fill(const state_t *st, lgfh_t *fh, size_t size, char **out)
{
    log_view_t v;
    *out = NULL;
    if (logs_sm_get_id(st, fh->id, &v) < 0)
        return -ENOENT;
    if (fh->pos < v.start)
        return -ESPIPE;
    if (v.end <= fh->pos || size == 0)
        return 0;
    size_t n = v.end - fh->pos < size ? (size_t)(v.end - fh->pos) : size;
    char *buf = malloc(n);
    if (!buf)
        return -ENOMEM;
    long got = logs_sm_read(st, fh->id, fh->pos, buf, n);
    if (got <= 0) {
        free(buf);
        return got < 0 ? got : -EIO;
    }
    fh->pos += (uint64_t)got;
    *out = buf;
    return got;
}

/* Answers a follow read with what fill returned (the log gone: end of file). */
static void reply_fill(fuse_req_t req, long n, const char *buf)
{
    if (n > 0)
        fuse_reply_buf(req, buf, (size_t)n);
    else if (n == -ENOENT)
        fuse_reply_buf(req, NULL, 0);
    else
        fuse_reply_err(req, (int)-n);
}

/* Interrupt callback: looks the request up among the parked follow reads (a late interrupt
 * may come for a request answered meanwhile; data is never used). */
static void follow_interrupt(fuse_req_t req, void *data)
{
    INTR_DEFER_IF_REGISTERING();
    (void)data;
    lgfront_t *lf = LF(req);
    if (!lf)
        return;
    pthread_mutex_lock(&lf->ctx.mu);
    for (lgfh_t *fh = lf->follows; fh; fh = fh->next)
        if (fh->waiting == req) {
            fh->waiting = NULL;
            fuse_reply_err(req, EINTR);
            break;
        }
    pthread_mutex_unlock(&lf->ctx.mu);
}

/* A read of a follow file; nonblock: the descriptor's O_NONBLOCK at this read (fcntl may
 * have changed it since the open). */
static void follow_read(fuse_req_t req, lgfront_t *lf, lgfh_t *fh, size_t size, int nonblock)
{
    if (intr_register(req, follow_interrupt, NULL)) {
        fuse_reply_err(req, EINTR);        /* interrupted before it could be parked */
        return;
    }
    state_t *st = lstate(lf, fh->shard);
    char *buf = NULL;
    pthread_rwlock_rdlock(&st->lock);
    pthread_mutex_lock(&lf->ctx.mu);
    long n = fh->waiting ? -EBUSY : fill(st, fh, size, &buf);   /* one read at a time */
    pthread_rwlock_unlock(&st->lock);
    if (n == 0 && nonblock)
        n = -EAGAIN;
    else if (n == 0 && fuse_req_interrupted(req))
        n = -EINTR;                        /* its callback ran before the read was parked */
    if (n == 0) {
        fh->waiting = req;                 /* parked: a delivery, interrupt or release */
        fh->want = size;
    } else {
        reply_fill(req, n, buf);
    }
    pthread_mutex_unlock(&lf->ctx.mu);
    free(buf);
}

static void lg_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    lgfront_t *lf = LF(req);
    lgfh_t *fh = (lgfh_t *)(uintptr_t)fi->fh;
    if (fh->follow) {
        follow_read(req, lf, fh, size, !!(fi->flags & O_NONBLOCK));
        return;
    }
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    char *buf = size ? malloc(size) : NULL;
    if (size && !buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    state_t *st = lstate(lf, fh->shard);
    long n = 0;
    for (int pass = 0; pass < 2; pass++) {
        pthread_rwlock_rdlock(&st->lock);
        n = logs_sm_read(st, fh->id, (uint64_t)off, buf, size);
        pthread_rwlock_unlock(&st->lock);
        if (n == -ENOENT) {
            n = 0;                         /* removed since the open: end of file, for good */
            break;                         /* (ids are never reused: no barrier needed) */
        }
        if (pass == 1 || n < 0 || (size_t)n == size)
            break;
        /* The read reached this node's end of the log: what the majority acknowledged may
         * lie past it (a lagging or cut-off node). A read barrier on the log's shard makes
         * this node apply everything committed before the read began, then it reads again;
         * a node that cannot reach the leader fails the read with EIO instead of giving
         * stale data or EOF. Reads inside the local end need no barrier: a log's bytes
         * never change once appended. (Embedded node: the barrier is a no-op.) */
        int rc = node_read_barrier(lf->ctx.node, fh->shard);
        if (rc < 0) {
            n = -EIO;
            break;
        }
    }
    if (n > 0)
        note_seen(fh, (uint64_t)off + (uint64_t)n);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

/* What a follow read would do now: readable (bytes, the log gone or behind retention) or
 * not. State read lock and lf->ctx.mu held. */
static unsigned follow_events(const state_t *st, const lgfh_t *fh)
{
    log_view_t v;
    if (logs_sm_get_id(st, fh->id, &v) < 0)
        return POLL_READ | POLLHUP;
    if (fh->pos < v.start)
        return POLL_READ | POLLERR;
    return v.end > fh->pos ? POLL_READ : 0;
}

static void lg_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                    struct fuse_pollhandle *ph)
{
    lgfront_t *lf = LF(req);
    lgfh_t *fh = (lgfh_t *)(uintptr_t)fi->fh;
    if (!fh->follow) {
        fuse_pollhandle_destroy(ph);
        fuse_reply_poll(req, POLL_READ | POLLOUT | POLLWRNORM);
        return;
    }
    struct fuse_pollhandle *old = NULL;
    state_t *st = lstate(lf, fh->shard);
    pthread_rwlock_rdlock(&st->lock);
    pthread_mutex_lock(&lf->ctx.mu);
    unsigned ev = follow_events(st, fh);
    if (ev == 0 && ph) {
        old = fh->ph;                      /* same kernel file: the new handle wakes all */
        fh->ph = ph;
        ph = NULL;
    }
    pthread_mutex_unlock(&lf->ctx.mu);
    pthread_rwlock_unlock(&st->lock);
    fuse_pollhandle_destroy(old);
    fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, ev);
}

/* ---------------------------------------------------------------- names */

static void lg_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    lgfront_t *lf = LF(req);
    int rc = parent == NS_ROOT_ID(NS_LOGS) ? 0 : parent == INO_FOLLOW_DIR ? -EPERM : -ENOTDIR;
    if (rc == 0 && is_follow_name(name))
        rc = -EPERM;
    uint64_t id = 0;                       /* the log's id before the removal, if known */
    uint64_t tracked = 0;                  /* the slots cached opens used on this mount */
    if (rc == 0) {
        state_t *st = lstate(lf, lshard(lf, name));
        log_view_t v;
        pthread_rwlock_rdlock(&st->lock);
        if (logs_sm_get(st, name, strlen(name), &v) == 0)
            id = v.id;
        pthread_rwlock_unlock(&st->lock);
        if (id && lf->pc)
            tracked = lgpc_tracked(lf->pc, log_ino(lshard(lf, name), id, 0));
        cmdbuf_t b;
        logs_cmd_unlink(&b, node_now_ms(), name);
        rc = node_propose(lf->ctx.node, lshard(lf, name), &b, NULL);
    }
    /* descriptors of this mount open across the rm read EOF from its return: their cached
     * pages go before it (other mounts drop theirs from the delivery of the removal, which
     * on this mount ran already, on the applying thread, and only queued it) */
    if (rc == 0 && tracked)
        lgpc_inval_now(lf->pc, log_ino(lshard(lf, name), id, 0), tracked, 0, 0);
    fuse_reply_err(req, -rc);
}

static void lg_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    fuse_reply_err(req, EPERM);   /* logs/ is flat */
}

static void lg_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (parent == NS_ROOT_ID(NS_LOGS) && is_follow_name(name)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    struct fuse_entry_param e;
    int rc = do_lookup(LF(req), parent, name, &e);
    fuse_reply_err(req, rc < 0 ? -rc : ENOTDIR);
}

static void lg_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EPERM);   /* a log keeps its name (and its offsets) for life */
}

/* Truncation is EPERM unless it keeps the size (`: > log` of an empty log); times are
 * accepted and change nothing (a log's mtime is its last append); owners and modes are
 * fixed. */
static void lg_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    lgfront_t *lf = LF(req);
    struct stat s;
    int rc = do_getattr(lf, ino, &s);
    if (rc == 0 && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
        rc = -EPERM;
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE) &&
        (!S_ISREG(s.st_mode) || attr->st_size != s.st_size))
        rc = S_ISDIR(s.st_mode) ? -EISDIR : -EPERM;
    front_reply_attr(req, rc, &s);
}

/* ---------------------------------------------------------------- directories */

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

static int list_log(void *arg, const log_view_t *v)
{
    struct listing *l = arg;
    return dirlist_add(l->d, v->name, NS_SHARD_INO(NS_LOGS, l->shard, v->id), S_IFREG);
}

/* logs/ lists the logs of every shard (not .follow, a control entry); .follow/ lists
 * nothing. */
static void lg_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (ino != NS_ROOT_ID(NS_LOGS) && ino != INO_FOLLOW_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    lgfront_t *lf = LF(req);
    dirlist_t *d = calloc(1, sizeof(*d));
    int rc = d ? 0 : -ENOMEM;
    if (rc == 0)
        rc = dirlist_add(d, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", ino == INO_FOLLOW_DIR ? NS_ROOT_ID(NS_LOGS) : FUSE_ROOT_ID,
                         S_IFDIR);
    for (uint32_t k = 0; rc == 0 && ino == NS_ROOT_ID(NS_LOGS) &&
                         k < node_nshards(lf->ctx.node); k++) {
        state_t *st = lstate(lf, k);
        struct listing l = { d, k };
        pthread_rwlock_rdlock(&st->lock);
        rc = logs_sm_each(st, list_log, &l);
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

static void lg_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    dirlist_reply(req, (dirlist_t *)(uintptr_t)fi->fh, size, off);
}

static void lg_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ldir_free((dirlist_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ---------------------------------------------------------------- xattrs */

static const struct lattr {
    const char *name;
    uint8_t which;                         /* LGSET_*; 0: read-only */
    uint64_t min, max, dflt;
} lattrs[] = {
    { "user.retention_bytes", LGSET_RETENTION_BYTES, 0, LOGS_RETENTION_BYTES_MAX, 0 },
    { "user.retention_seconds", LGSET_RETENTION_S, 0, LOGS_RETENTION_S_MAX, 0 },
    { "user.segment_bytes", LGSET_SEGMENT_BYTES, LOGS_SEGMENT_MIN, LOGS_SEGMENT_MAX,
      LOGS_SEGMENT_DEFAULT },
    { "user.first_offset", 0, 0, 0, 0 },
};
#define NLATTRS (sizeof(lattrs) / sizeof(lattrs[0]))

static const struct lattr *find_lattr(const char *name)
{
    for (size_t i = 0; i < NLATTRS; i++)
        if (strcmp(lattrs[i].name, name) == 0)
            return &lattrs[i];
    return NULL;
}

/* The name and shard of the log of inode ino (-ENOTSUP for any other inode). */
static int log_of_ino(lgfront_t *lf, fuse_ino_t ino, char **name, uint32_t *shard)
{
    uint32_t k = 0;
    uint64_t id = 0;
    int kind = ino_kind(ino, &k, &id);
    if (kind < 0)
        return kind;
    if (kind != K_LOG)
        return -ENOTSUP;
    if (k >= node_nshards(lf->ctx.node))
        return -ENOENT;
    state_t *st = lstate(lf, k);
    log_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = logs_sm_get_id(st, id, &v);
    if (rc == 0 && !(*name = strdup(v.name)))
        rc = -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    *shard = k;
    return rc;
}

static int set_attr(lgfront_t *lf, fuse_ino_t ino, const struct lattr *a, uint64_t v)
{
    char *lname = NULL;
    uint32_t k = 0;
    int rc = log_of_ino(lf, ino, &lname, &k);
    if (rc == 0) {
        cmdbuf_t b;
        logs_cmd_set(&b, node_now_ms(), lname, a->which, v);
        rc = node_propose(lf->ctx.node, k, &b, NULL);
    }
    free(lname);
    return rc;
}

static void lg_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    const struct lattr *a = find_lattr(name);
    uint64_t v = 0;
    int rc = 0;
    if (!a)
        rc = -ENOTSUP;
    else if (!a->which)
        rc = -EPERM;
    else if (flags & XATTR_CREATE)
        rc = -EEXIST;                      /* every setting exists (listed, with a default) */
    else if (names_parse_uint(value, size, a->max, &v) < 0 || v < a->min)
        rc = -EINVAL;
    if (rc == 0)
        rc = set_attr(LF(req), ino, a, v);
    uint32_t k = 0;
    uint64_t id = 0;
    if (rc == 0 && ino_kind(ino, &k, &id) == K_LOG)
        pc_report(LF(req), k, id, 1);      /* retention may have dropped segments */
    fuse_reply_err(req, -rc);
}

/* Removing a setting gives it back its default. */
static void lg_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    const struct lattr *a = find_lattr(name);
    int rc = !a ? -ENODATA : !a->which ? -EPERM : set_attr(LF(req), ino, a, a->dflt);
    fuse_reply_err(req, -rc);
}

static void lg_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    lgfront_t *lf = LF(req);
    const struct lattr *a = find_lattr(name);
    uint32_t k = 0;
    uint64_t id = 0;
    int kind = ino_kind(ino, &k, &id);
    int rc = kind < 0 ? kind : kind != K_LOG || !a ? -ENODATA : 0;
    if (rc == 0 && k >= node_nshards(lf->ctx.node))
        rc = -ENOENT;
    char text[32];
    int len = 0;
    if (rc == 0) {
        state_t *st = lstate(lf, k);
        log_view_t v;
        pthread_rwlock_rdlock(&st->lock);
        rc = logs_sm_get_id(st, id, &v);
        pthread_rwlock_unlock(&st->lock);
        uint64_t val = a->which == LGSET_RETENTION_BYTES ? v.retention_bytes
                       : a->which == LGSET_RETENTION_S ? v.retention_s
                       : a->which == LGSET_SEGMENT_BYTES ? v.segment_bytes : v.start;
        len = snprintf(text, sizeof(text), "%" PRIu64, val);
    }
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        front_reply_xattr(req, text, (size_t)len, size);
}

static void lg_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    uint32_t k = 0;
    uint64_t id = 0;
    int kind = ino_kind(ino, &k, &id);
    if (kind < 0) {
        fuse_reply_err(req, -kind);
        return;
    }
    if (kind != K_LOG) {
        front_reply_xattr(req, "", 0, size);
        return;
    }
    char all[256];
    size_t n = 0;
    for (size_t i = 0; i < NLATTRS; i++) {
        size_t l = strlen(lattrs[i].name) + 1;
        memcpy(all + n, lattrs[i].name, l);
        n += l;
    }
    front_reply_xattr(req, all, n, size);
}

static const struct fuse_lowlevel_ops logs_fuse = {
    .lookup = lg_lookup,
    .getattr = lg_getattr,
    .setattr = lg_setattr,
    .mkdir = lg_mkdir,
    .unlink = lg_unlink,
    .rmdir = lg_rmdir,
    .rename = lg_rename,
    .create = lg_create,
    .open = lg_open,
    .read = lg_read,
    .write = lg_write,
    .flush = lg_flush,
    .release = lg_release,
    .fsync = lg_fsync,
    .opendir = lg_opendir,
    .readdir = lg_readdir,
    .releasedir = lg_releasedir,
    .setxattr = lg_setxattr,
    .getxattr = lg_getxattr,
    .listxattr = lg_listxattr,
    .removexattr = lg_removexattr,
    .poll = lg_poll,
};

/* ---------------------------------------------------------------- node side */

/* lgpc_list's filter: the inodes of shard *arg. */
static int ino_on_shard(void *arg, uint64_t ino)
{
    return NS_INO_SHARD(ino) == *(const uint32_t *)arg;
}

/* EFF_LOG_GREW (log u.qready.qid of shard e->shard grew or is gone; LOGS_ALL_IDS after a
 * snapshot install: any log of the shard): answers the parked follow reads of that log
 * and wakes its pollers. No state lock is held on entry. */
static void lg_deliver(void *ctx, effect_t *e)
{
    lgfront_t *lf = ctx;
    if (e->kind != EFF_LOG_GREW || e->shard >= node_nshards(lf->ctx.node))
        return;
    uint64_t id = e->u.qready.qid;
    state_t *st = lstate(lf, e->shard);
    lgfh_t *ready = NULL;
    struct fuse_pollhandle *woke[16];
    size_t nwoke = 0;
    pthread_rwlock_rdlock(&st->lock);
    pthread_mutex_lock(&lf->ctx.mu);
    for (lgfh_t *fh = lf->follows; fh; fh = fh->next) {
        if (fh->shard != e->shard || (id != LOGS_ALL_IDS && fh->id != id))
            continue;
        if (fh->waiting) {
            long n = fill(st, fh, fh->want, &fh->ans_buf);
            if (n != 0) {
                fh->ans_req = fh->waiting;
                fh->ans_n = n;
                fh->waiting = NULL;        /* ours to answer, below */
                fh->ready = ready;
                ready = fh;
            }
        }
        if (fh->ph && follow_events(st, fh)) {
            if (nwoke == sizeof(woke) / sizeof(woke[0])) {
                fuse_lowlevel_notify_poll(fh->ph);   /* a write to /dev/fuse, no wait */
                fuse_pollhandle_destroy(fh->ph);
            } else {
                woke[nwoke++] = fh->ph;
            }
            fh->ph = NULL;
        }
    }
    /* the page cache table: queued, never written here (this is the applying thread) */
    if (lf->pc && id != LOGS_ALL_IDS) {
        log_view_t v;
        int exists = logs_sm_get_id(st, id, &v) == 0;
        lgpc_report(lf->pc, log_ino(e->shard, id, 0), exists, exists ? v.start : 0, 0);
    } else if (lf->pc) {
        uint64_t *inos = NULL;
        uint32_t shard = e->shard;
        size_t n = lgpc_list(lf->pc, ino_on_shard, &shard, &inos);
        for (size_t i = 0; i < n; i++) {
            log_view_t v;
            int exists = logs_sm_get_id(st, NS_INO_LOCAL(inos[i]) & ID_MAX, &v) == 0;
            lgpc_report(lf->pc, inos[i], exists, exists ? v.start : 0, 0);
        }
        free(inos);
    }
    pthread_rwlock_unlock(&st->lock);
    for (lgfh_t *fh = ready, *next; fh; fh = next) {
        next = fh->ready;
        fh->ready = NULL;
        reply_fill(fh->ans_req, fh->ans_n, fh->ans_buf);
        free(fh->ans_buf);
        fh->ans_buf = NULL;
        fh->ans_req = NULL;
    }
    pthread_mutex_unlock(&lf->ctx.mu);
    for (size_t i = 0; i < nwoke; i++) {
        fuse_lowlevel_notify_poll(woke[i]);
        fuse_pollhandle_destroy(woke[i]);
    }
}

/* Collects logs whose oldest sealed segment has passed its retention_seconds at now. */
struct due {
    const state_t *st;
    uint64_t now;
    char *names[SWEEP_LOGS];
    int n;
};

static int due_log(void *arg, const log_view_t *v)
{
    struct due *d = arg;
    if (v->retention_s && v->sealed && logs_sm_trim_due(d->st, v->id, d->now) &&
        (d->names[d->n] = strdup(v->name)))
        d->n++;
    return d->n == SWEEP_LOGS;
}

/* Leader side: proposes TRIM for logs with expired segments; apply judges again at the
 * command's time. */
static void sweep_shard(lgfront_t *lf, uint32_t k)
{
    if (!node_is_leader(lf->ctx.node, k))
        return;
    state_t *st = lstate(lf, k);
    struct due d = { .st = st, .now = node_now_ms() };
    pthread_rwlock_rdlock(&st->lock);
    logs_sm_each(st, due_log, &d);
    pthread_rwlock_unlock(&st->lock);
    for (int i = 0; i < d.n; i++) {
        cmdbuf_t b;
        logs_cmd_trim(&b, d.now, d.names[i]);
        int rc = node_propose(lf->ctx.node, k, &b, NULL);
        if (rc < 0 && rc != -ENOENT)
            fprintf(stderr, "quorumfs: log %s: retention not committed: %s\n", d.names[i],
                    strerror(-rc));
        free(d.names[i]);
    }
}

static void lg_sweep(void *ctx)
{
    lgfront_t *lf = ctx;
    for (uint32_t k = 0; k < node_nshards(lf->ctx.node); k++)
        sweep_shard(lf, k);
}

static void *lg_start(struct node *n)
{
    _Static_assert(offsetof(lgfront_t, ctx) == 0, "front_ctx_new makes the head of the context");
    lgfront_t *lf = front_ctx_new(sizeof(lgfront_t), n);
    if (lf && !(lf->sl = lgsl_new()))
        fprintf(stderr, "quorumfs: logs/: no slot table; the writers of a log share one "
                "kernel inode\n");
    if (lf && !(lf->pc = lgpc_new(pc_notify, lf, PC_IDLE_MAX)))
        fprintf(stderr, "quorumfs: logs/: no page cache invalidation thread; logs are read "
                "with direct I/O\n");
    return lf;
}

/* Before the session ends: the invalidation thread stops, dropping what is queued (what is
 * reported later is dropped too; no open can be cached after the mount ends). */
static void lg_quiesce(void *ctx)
{
    lgfront_t *lf = ctx;
    lgpc_quiesce(lf->pc);
}

/* At node close no request, delivery or interrupt reaches lf any more and the FUSE session
 * is gone: parked reads are dropped unanswered, kept poll handles destroyed, and the follow
 * files left open are let go (their release never comes). */
static void lg_stop(void *ctx)
{
    lgfront_t *lf = ctx;
    pthread_mutex_lock(&lf->ctx.mu);
    while (lf->follows) {
        lgfh_t *fh = lf->follows;
        fh->waiting = NULL;
        fuse_pollhandle_destroy(fh->ph);
        fh->ph = NULL;
        fh_unlink_locked(lf, fh);
    }
    while (lf->opens)
        fh_unlink_locked(lf, lf->opens);
    pthread_mutex_unlock(&lf->ctx.mu);
    lgpc_free(lf->pc);
    lgsl_free(lf->sl);
    front_ctx_free(lf);
}

const ns_front_t logs_front = {
    .start = lg_start,
    .sweep = lg_sweep,
    .quiesce = lg_quiesce,
    .stop = lg_stop,
    .deliver = lg_deliver,
    .fuse = &logs_fuse,
};
