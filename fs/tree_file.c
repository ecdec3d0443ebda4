/* fs/tree_file.c — the generic tree front's open value files and control entries (see
 * fs/tree_front.h): open, read, saves, flush, fsync, release, create, truncate and poll.
 *
 * Saves (FILE-API §1). The writes, ftruncate()s and O_TRUNC of one open file description
 * are one save: the open keeps the whole new value (fh->buf) and publishes it as one
 * command (a whole-value PUT) at the close() that ends the writing, at fsync(), or at a
 * setattr through the open; other readers see the old value until then, never a part.
 * Reads through the writing open see the save in progress. A save that fails (EFBIG past
 * the size limit, ENOSPC) publishes nothing, so the value stays as it was and a file the
 * save would have created does not appear. The PUT names the object the open writes
 * (CMD_PUT_IFID): if that file was removed or replaced meanwhile, the save goes where the
 * object went, or nowhere if it is gone (as the data of an unlinked file on a local disk).
 *
 * O_APPEND writes are different: each write() request is one committed CMD_WRITE at the
 * value's end, so appends from many writers all land and none is torn.
 *
 * Which close() ends the writing: flush comes at every close() of a descriptor, including a
 * shell's close of the original after dup2() and before the command writes. A save is
 * published at a flush when the closing process holds no other descriptor of the same
 * description, as far as /proc tells (ends_writing), and otherwise at release (the last
 * close of the description, after close() returned).
 *
 * A file created without O_EXCL comes into being when its save is published, under the id
 * the node picked at create (fs/mount.h, pending creations). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>
#include "fs/front.h"
#include "fs/metrics.h"
#include "fs/ns.h"
#include "fs/route.h"
#include "fs/tree_front.h"

enum fh_kind { FH_VALUE = 1, FH_CTL };

typedef struct fh {
    int kind;
    uint8_t ns;
    int oflags;                        /* FH_VALUE: the open's flags */
    char *path;                        /* FH_VALUE: namespace-relative path, as last known */
    uint64_t id;                       /* FH_VALUE: its object (or pending creation) id */
    blob_t *snap;                      /* what reads return outside a save (and FH_CTL text) */
    pthread_mutex_t mu;                /* FH_VALUE: guards the save; held while a read replies */
    /* The save in progress: the whole new value, valid while saving. */
    uint8_t *buf;
    size_t len, cap;
    int saving;                        /* buf holds a value not published yet ... */
    int changed;                       /* ... changed by a write, truncate or O_TRUNC */
    int failed;                        /* errno that failed the save: it publishes nothing */
    struct timespec wtime;             /* when the save last changed (its mtime for fstat) */
    int create_pending;                /* this open creates the file; not published yet */
    int trunc_pending;                 /* O_APPEND|O_TRUNC: the first append starts empty */
    int append;                        /* O_APPEND: each write is published at once */
    const tree_front_t *tf;            /* FH_CTL with a handle: its front ... */
    void *ctl;                         /* ... and the handle */
    unsigned refs;                     /* the kernel's; publish_by's, a read's (atomic) */
    pid_t opener;                      /* FH_VALUE: the process that opened it */
    uint32_t cmode, cuid, cgid;        /* FH_VALUE creating the file: its mode and owner */
    struct fh *onext;                  /* FH_VALUE: the next open of its inode (opened_t) */
} fh_t;

/* ---- inodes known to open files (fstat of a removed file, pending creations) ---- */

/* Attributes of each inode with open value files, per mount: what a getattr gets once the
 * tree no longer has the object (removed or replaced while open: st_nlink 0). */
typedef struct opened {
    struct okey {
        const mount_t *m;
        uint64_t ino;
    } key;
    fh_t *fhs;                         /* its value opens, linked by onext */
    struct stat st;
    UT_hash_handle hh;
} opened_t;

static opened_t *opened_tab;
static pthread_mutex_t opened_mu = PTHREAD_MUTEX_INITIALIZER;

static opened_t *opened_find(const mount_t *m, uint64_t ino)
{
    struct okey k;
    memset(&k, 0, sizeof(k));
    k.m = m;
    k.ino = ino;
    opened_t *o;
    HASH_FIND(hh, opened_tab, &k, sizeof(k), o);
    return o;
}

/* Registers open fh of inode ino with attributes st. */
static void opened_add(const mount_t *m, uint64_t ino, fh_t *fh, const struct stat *st)
{
    pthread_mutex_lock(&opened_mu);
    opened_t *o = opened_find(m, ino);
    if (!o && (o = calloc(1, sizeof(*o)))) {
        o->key.m = m;
        o->key.ino = ino;
        HASH_ADD(hh, opened_tab, key, sizeof(o->key), o);
    }
    if (o) {
        o->st = *st;
        fh->onext = o->fhs;
        o->fhs = fh;
    }
    pthread_mutex_unlock(&opened_mu);
}

/* The attributes of inode ino are st now (after a save of one of its opens). */
static void opened_update(const mount_t *m, uint64_t ino, const struct stat *st)
{
    pthread_mutex_lock(&opened_mu);
    opened_t *o = opened_find(m, ino);
    if (o)
        o->st = *st;
    pthread_mutex_unlock(&opened_mu);
}

static void opened_del(const mount_t *m, uint64_t ino, fh_t *fh)
{
    pthread_mutex_lock(&opened_mu);
    opened_t *o = opened_find(m, ino);
    if (o) {
        for (fh_t **p = &o->fhs; *p; p = &(*p)->onext)
            if (*p == fh) {
                *p = fh->onext;
                break;
            }
        if (!o->fhs) {
            HASH_DEL(opened_tab, o);
            free(o);
        }
    }
    pthread_mutex_unlock(&opened_mu);
}

/* The other opens of fh's inode that process pid made with fh's access mode and O_APPEND:
 * a lower bound of the descriptors of that process that are not fh's. */
static int opened_siblings(const mount_t *m, const fh_t *fh, pid_t pid)
{
    const int mask = O_ACCMODE | O_APPEND;
    int n = 0;
    pthread_mutex_lock(&opened_mu);
    opened_t *o = opened_find(m, fh->id);
    for (const fh_t *f = o ? o->fhs : NULL; f; f = f->onext)
        n += f != fh && f->opener == pid && (f->oflags & mask) == (fh->oflags & mask);
    pthread_mutex_unlock(&opened_mu);
    return n;
}

/* ---- open files ---- */

static fh_t *fh_new(int kind)
{
    fh_t *fh = calloc(1, sizeof(*fh));
    if (!fh || pthread_mutex_init(&fh->mu, NULL) != 0) {
        free(fh);
        return NULL;
    }
    fh->kind = kind;
    fh->refs = 1;
    return fh;
}

/* Releases what the open holds: a control entry's handle, snapshots, a save. */
static void fh_free(fh_t *fh)
{
    if (!fh)
        return;
    if (fh->ctl)
        fh->tf->ctl_release(fh->ctl);
    blob_unref(fh->snap);
    free(fh->buf);
    free(fh->path);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

/* A value file open on ns/path (object or creation id), reading snap (a reference it takes
 * over, or an empty one). */
static fh_t *fh_value(uint8_t ns, const char *path, uint64_t id, blob_t *snap, int flags)
{
    fh_t *fh = fh_new(FH_VALUE);
    if (!fh) {
        blob_unref(snap);
        return NULL;
    }
    fh->snap = snap ? snap : blob_new(NULL, 0);
    if (!fh->snap || !(fh->path = strdup(path))) {
        fh_free(fh);
        return NULL;
    }
    fh->ns = ns;
    fh->id = id;
    fh->oflags = flags;
    fh->append = !!(flags & O_APPEND);
    return fh;
}

/* A value file is always ready; a control entry's handle may block (config/ .events). */
void tfile_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                   struct fuse_pollhandle *ph)
{
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    if (fh && fh->ctl && fh->tf->ctl_poll) {
        fh->tf->ctl_poll(req, fh->ctl, ph);
        return;
    }
    fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
}

/* ---- opening ---- */

static int writable(int flags) { return (flags & O_ACCMODE) != O_RDONLY; }

/* The attributes a new file will have, for getattr before its creation is published. */
static void pending_stat(const fh_t *fh, struct stat *s)
{
    mount_stat(s, fh->id, S_IFREG | (fh->cmode & TREE_MODE_MASK), 0, node_now_ms());
    s->st_uid = fh->cuid;
    s->st_gid = fh->cgid;
}

/* The process (thread group) of thread tid: FUSE gives the calling thread's id, while the
 * descriptors belong to the process. tid itself when /proc cannot tell. */
static pid_t tgid_of(pid_t tid)
{
    char path[64], text[512];
    /* A pidfd opens (without PIDFD_THREAD) only for a thread-group leader: the common case,
     * two cheap calls instead of generating /proc/<tid>/status. */
    int pfd = (int)syscall(SYS_pidfd_open, tid, 0);
    if (pfd >= 0) {
        close(pfd);
        return tid;
    }
    snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tid;
    ssize_t len = read(fd, text, sizeof(text) - 1);   /* Tgid is among the first lines */
    close(fd);
    if (len <= 0)
        return tid;
    text[len] = 0;
    const char *p = strstr(text, "\nTgid:");
    long v = p ? strtol(p + 6, NULL, 10) : 0;
    return v > 0 ? (pid_t)v : tid;
}

/* Registers fh with its inode's attributes as they are now. The opener's process matters
 * only to a writer (ends_writing). */
static void fh_opened(const treq_t *t, fh_t *fh, const struct stat *st)
{
    pid_t tid = fuse_req_ctx(t->req)->pid;
    fh->opener = writable(fh->oflags) && tid > 0 ? tgid_of(tid) : tid;
    opened_add(t->m, fh->id, fh, st);
}

/* An O_TRUNC open for writing starts its save empty (published at close even if nothing
 * is written); with O_APPEND the first append truncates instead. */
static void start_trunc(fh_t *fh, int flags)
{
    if (!(flags & O_TRUNC) || !writable(flags))
        return;
    if (fh->append) {
        fh->trunc_pending = 1;
    } else {
        fh->saving = fh->changed = 1;
        fh->len = 0;
        clock_gettime(CLOCK_REALTIME, &fh->wtime);
    }
}

/* Another open of a file created but not yet published: it shares the creation (the first
 * of them to publish commits it, with the same id). own: the creator's mode and owner
 * (NULL: those the other opens of the creation have, or the defaults). */
static int open_pending(const treq_t *t, uint64_t ino, int flags, const uint32_t *own,
                        fh_t **out)
{
    char path[4096];
    uint8_t ns;
    if (mount_pending_find(t->m, ino, &ns, path, sizeof(path)) < 0)
        return -ENOENT;
    fh_t *fh = fh_value(ns, path, ino, NULL, flags);
    if (!fh)
        return -ENOMEM;
    fh->create_pending = 1;
    start_trunc(fh, flags);
    struct stat st;
    fh->cmode = own ? own[0] : TREE_MODE_FILE;
    fh->cuid = own ? own[1] : 0;
    fh->cgid = own ? own[2] : 0;
    if (!own && tfile_open_stat(t, ino, &st) == 0) {
        fh->cmode = st.st_mode & TREE_MODE_MASK;
        fh->cuid = st.st_uid;
        fh->cgid = st.st_gid;
    }
    pending_stat(fh, &st);
    fh_opened(t, fh, &st);
    *out = fh;
    return 0;
}

/* A read-only open of a file that a rename replaced since the path walk that found it
 * (entry timeout 0: the walk's LOOKUP came just before): it reads the version the walk
 * found, which was the current one at that lookup, so the open is linearizable (FILE-API
 * §1 Atomic replace: readers see the old or the new value). The kernel's one retry after
 * ESTALE was not always enough: on a follower a walk's and an open's read barriers leave
 * room for a second replace (tests/integration/atomic_replace.sh). -ENOENT for an open
 * that may write, or when the tree no longer keeps the file (tree_replaced). */
static int open_replaced(const treq_t *t, uint64_t ino, int flags, fh_t **out)
{
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC))
        return -ENOENT;
    char path[TREE_PATH_MAX + 1];
    struct stat st;
    uint8_t ns = 0;
    pthread_rwlock_rdlock(&t->st->lock);
    const obj_t *o = tree_replaced(t->st, ino);
    blob_t *snap = o ? blob_ref(o->val) : NULL;
    if (o) {
        tf_obj_stat(o, &st);
        ns = o->ns;
        snprintf(path, sizeof(path), "%s", o->name);
    }
    pthread_rwlock_unlock(&t->st->lock);
    if (!snap)
        return -ENOENT;
    fh_t *fh = fh_value(ns, path, ino, snap, flags);
    if (!fh)
        return -ENOMEM;
    st.st_nlink = 0;   /* what fstat shows: it has no name any more */
    fh_opened(t, fh, &st);
    *out = fh;
    return 0;
}

static int open_value(const treq_t *t, uint64_t ino, int flags, fh_t **out)
{
    char path[4096];
    int ns, type;
    int rc = tf_obj_path(t, ino, &ns, path, sizeof(path), &type);
    if (rc == -ENOENT) {
        rc = open_pending(t, ino, flags, NULL, out);
        return rc == -ENOENT ? open_replaced(t, ino, flags, out) : rc;
    }
    if (rc < 0)
        return rc;
    if (type == OBJ_DIR)
        return -EISDIR;
    const tree_front_t *tf = tf_of(ns);
    struct stat st;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tf_live_obj(t, ino);
    blob_t *snap = o ? blob_ref(o->val) : NULL;
    if (o)
        tf_obj_stat(o, &st);
    /* A read the namespace wants to hear of (cache/: LRU order, sliding TTL). */
    int touch = o && (flags & O_ACCMODE) != O_WRONLY && tf && tf->read_touches &&
                tf->read_touches(t->st, o);
    pthread_rwlock_unlock(&t->st->lock);
    if (!snap)   /* replaced since tf_obj_path looked */
        return open_replaced(t, ino, flags, out);
    fh_t *fh = fh_value((uint8_t)ns, path, ino, snap, flags);
    if (!fh)
        return -ENOMEM;
    start_trunc(fh, flags);
    if (touch)
        tf->note_read(ns_front_ctx(t->req, ns), path);
    fh_opened(t, fh, &st);
    *out = fh;
    return 0;
}

/* A control entry, read-only: its front gives the text, or a handle it reads itself. */
static int open_ctl(const treq_t *t, uint64_t ino, int flags, fh_t **out)
{
    mount_ctl_t c;
    if ((flags & O_ACCMODE) != O_RDONLY)
        return -EPERM;
    if (mount_ctl_find(t->m, ino, &c) < 0)
        return -ENOENT;
    const tree_front_t *tf = tf_of(c.ns);
    fh_t *fh = fh_new(FH_CTL);
    if (!fh)
        return -ENOMEM;
    fh->tf = tf;
    pthread_rwlock_rdlock(&t->st->lock);
    int rc = tf && tf->ctl_open ? tf->ctl_open(ns_front_ctx(t->req, c.ns), t->st, &c, flags,
                                                &fh->snap, &fh->ctl)
                                : -ENOENT;
    pthread_rwlock_unlock(&t->st->lock);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

/* Undoes what opening a value file registered, and frees fh. */
static void fh_unref(fh_t *fh)
{
    if (fh && __atomic_sub_fetch(&fh->refs, 1, __ATOMIC_ACQ_REL) == 0)
        fh_free(fh);
}

static void fh_close(const treq_t *t, fh_t *fh)
{
    if (fh && fh->kind == FH_VALUE) {
        if (fh->create_pending)
            mount_pending_del(t->m, fh->id);
        opened_del(t->m, fh->id, fh);
    }
    fh_unref(fh);
}

/* For a request through open file fh: a value's shard is its path's (renames never leave
 * a shard), a control entry's its inode's. */
static treq_t treq_fh(fuse_req_t req, fuse_ino_t ino, const fh_t *fh)
{
    if (fh && fh->kind == FH_VALUE && fh->path)
        return treq_shard(req, node_shard_of(mount_node(mount_of(req)), fh->ns, fh->path));
    return treq_at(req, ino, NULL);
}

void tfile_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq_at(req, ino, NULL);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = NULL;
    int rc = mount_is_ctl(ino) ? open_ctl(&t, ino, fi->flags, &fh)
                               : open_value(&t, ino, fi->flags, &fh);
    /* The inode came from the path walk just before (entry timeout 0), and the object is
     * gone since: removed, or replaced by a rename over its name (sed -i, editors,
     * os.replace). ESTALE makes the kernel walk the path once more (LOOKUP_REVAL), which
     * finds the new file, or answers ENOENT if there is none; ENOENT here told a reader that
     * a file which always existed did not (FILE-API §1 "Atomic replace"). */
    if (rc == -ENOENT && !mount_is_ctl(ino))
        rc = -ESTALE;
    metrics_op(node_metrics(t.node), MOP_open, t0, -rc);
    if (mount_reply_open(req, rc, fh, fi, NULL)) {
        if (fh && fh->kind == FH_VALUE)
            fh->create_pending = 0;   /* a shared creation stays with the other opens */
        fh_close(&t, fh);
    }
}

/* ---- reading ---- */

void tfile_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi)
{
    uint64_t t0 = metrics_now_ns();
    metrics_t *mt = node_metrics(mount_node(mount_of(req)));   /* req is gone once answered */
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    if (fh->ctl) {
        metrics_op(mt, MOP_read, t0, 0);
        fh->tf->ctl_read(req, fh->ctl, size, off);
        return;
    }
    /* The reply lets the reader go on, and it may close at once: the RELEASE, on another
     * worker, would free fh before the unlock below (a use after free that aborted the
     * daemon reading config/ `file@rev` texts, whose release takes no lock) but for this
     * reference. The reply is made under the lock: a save's buffer may grow meanwhile. */
    __atomic_add_fetch(&fh->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_lock(&fh->mu);
    const uint8_t *data = fh->saving ? fh->buf : fh->snap->data;
    size_t len = fh->saving ? fh->len : fh->snap->len;
    size_t n = off < 0 || (size_t)off >= len ? 0 : len - (size_t)off;
    if (n > size)
        n = size;
    fuse_reply_buf(req, n ? (const char *)data + off : NULL, n);
    pthread_mutex_unlock(&fh->mu);
    fh_unref(fh);
    metrics_op(mt, MOP_read, t0, 0);
}

/* ---- saves ---- */


/* The current value of fh's object into *b (a reference), or NULL when the tree has no
 * such file any more. */
static blob_t *current_value(const treq_t *t, uint64_t id)
{
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tf_live_obj(t, id);
    blob_t *b = o && o->type == OBJ_FILE ? blob_ref(o->val) : NULL;
    pthread_rwlock_unlock(&t->st->lock);
    return b;
}

/* How often a publish follows its object to a new path before giving up with EIO. */
#define PUBLISH_TRIES 4

/* Whether fh's creation is still pending on this mount (no other open published it). */
static int still_pending(const treq_t *t, const fh_t *fh)
{
    uint8_t ns;
    return mount_pending_find(t->m, fh->id, &ns, NULL, 0) == 0;
}

/* Whether the tree still has object id, live. */
static int object_exists(const treq_t *t, uint64_t id)
{
    pthread_rwlock_rdlock(&t->st->lock);
    int live = tf_live_obj(t, id) != NULL;
    pthread_rwlock_unlock(&t->st->lock);
    return live;
}

/* Room for n bytes in fh's save. 0 or -ENOMEM. */
static int save_reserve(fh_t *fh, size_t n)
{
    if (n <= fh->cap)
        return 0;
    size_t cap = fh->cap ? fh->cap : 4096;
    while (cap < n)
        cap *= 2;
    if (cap > TREE_VALUE_MAX)
        cap = TREE_VALUE_MAX;
    uint8_t *p = realloc(fh->buf, cap);
    if (!p)
        return -ENOMEM;
    fh->buf = p;
    fh->cap = cap;
    return 0;
}

/* Starts a save from the file's value as it is now (a write since this open saw it is
 * kept), or from what the open read when the file is gone. fh->mu held. */
static int save_begin(const treq_t *t, fh_t *fh)
{
    if (fh->saving)
        return 0;
    if (fh->create_pending && !still_pending(t, fh))
        fh->create_pending = 0;   /* another open of the creation published it */
    blob_t *cur = fh->create_pending ? NULL : current_value(t, fh->id);
    const blob_t *from = cur ? cur : fh->snap;
    int rc = save_reserve(fh, from->len);
    if (rc == 0) {
        if (from->len)
            memcpy(fh->buf, from->data, from->len);
        fh->len = from->len;
        fh->saving = 1;
    }
    blob_unref(cur);
    return rc;
}

/* The save fails with errno e: nothing of it will be published. fh->mu held. */
static int save_fail(fh_t *fh, int e)
{
    fh->failed = e;
    fh->saving = fh->changed = 0;
    fh->len = 0;
    return -e;
}

/* Sets the save's length to n, zero-filling what it adds. fh->mu held. */
static int save_setlen(fh_t *fh, size_t n)
{
    int rc = save_reserve(fh, n);
    if (rc < 0)
        return rc;
    if (n > fh->len)
        memset(fh->buf + fh->len, 0, n - fh->len);
    fh->len = n;
    fh->changed = 1;
    clock_gettime(CLOCK_REALTIME, &fh->wtime);
    return 0;
}

/* After a save was published or dropped: reads see v (a reference taken over). */
static void save_done(fh_t *fh, blob_t *v)
{
    if (v) {
        blob_unref(fh->snap);
        fh->snap = v;
    }
    fh->saving = fh->changed = 0;
    fh->trunc_pending = 0;
    fh->len = 0;
}

/* fh's path as the tree has it now, if its object moved (renamed). 0 or -ENOENT. */
static int refresh_path(const treq_t *t, fh_t *fh)
{
    char path[4096];
    int ns;
    int rc = tf_obj_path(t, fh->id, &ns, path, sizeof(path), NULL);
    if (rc < 0)
        return rc;
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    free(fh->path);
    fh->path = p;
    return 0;
}

static int owes(const fh_t *fh)
{
    return fh->kind == FH_VALUE &&
           (fh->saving || fh->create_pending || fh->trunc_pending || fh->failed);
}

/* Publishes what fh owes as one command: its save (the whole value), or the creation or
 * truncation it still owes with nothing written. A failed save is dropped instead, with
 * its creation, and its errno returned. Returns 0 or -errno; on an error of the publish
 * itself (no quorum, no space) the save is dropped too and the old value stays. fh->mu
 * held. */
static int publish(const treq_t *t, fh_t *fh)
{
    if (fh->failed) {
        int e = fh->failed;
        fh->failed = 0;
        save_done(fh, NULL);
        if (fh->create_pending) {
            fh->create_pending = 0;   /* the save created nothing */
            mount_pending_del(t->m, fh->id);
        }
        return -e;
    }
    if (!owes(fh))
        return 0;
    const void *v = fh->saving ? (const void *)fh->buf : "";
    size_t n = fh->saving ? fh->len : 0;
    if (fh->create_pending && !still_pending(t, fh))
        fh->create_pending = 0;   /* another open of the creation published it */
    int rc;
    for (int tries = 0;; tries++) {
        cmdbuf_t b;
        if (fh->create_pending)
            tree_cmd_create(&b, node_now_ms(), fh->ns, fh->path,
                            fh->saving || fh->trunc_pending ? 0 : CMD_PUT_KEEP, fh->id,
                            fh->cmode, fh->cuid, fh->cgid, v, n);
        else
            tree_cmd_put_full(&b, node_now_ms(), fh->ns, fh->path, 0, 0, fh->id, 0, 0, 0, v,
                              n);
        rc = node_propose(t->node, t->shard, &b, NULL);
        /* Renamed meanwhile: the save follows the object (a few times, if it keeps moving). */
        if (rc != -ESTALE || tries == PUBLISH_TRIES || refresh_path(t, fh) < 0)
            break;
    }
    if (rc == -ESTALE && !object_exists(t, fh->id)) {
        /* The file was removed (or its TTL ran out): the save goes nowhere, as the data
         * written to an unlinked file on a local disk. */
        save_done(fh, fh->saving ? blob_new(fh->buf, fh->len) : NULL);
        return 0;
    }
    if (rc == -ESTALE)
        rc = -EIO;   /* it kept moving: not published, and close() says so */
    if (rc < 0) {
        save_fail(fh, -rc);
        return publish(t, fh);
    }
    if (fh->create_pending) {
        fh->create_pending = 0;
        mount_pending_del(t->m, fh->id);
    }
    blob_t *now = current_value(t, fh->id);
    struct stat st;
    int have = 0;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tf_live_obj(t, fh->id);
    if (o) {
        tf_obj_stat(o, &st);
        have = 1;
    }
    pthread_rwlock_unlock(&t->st->lock);
    if (have)
        opened_update(t->m, fh->id, &st);
    save_done(fh, now);
    return 0;
}

/* Commits one O_APPEND write request (or, with CMD_WRITE_SETLEN and no data, a truncation
 * to off) on the file's current value, carrying the open's pending O_TRUNC and creation.
 * Afterwards reads through this open see the committed value. fh->mu held. */
static int write_now(const treq_t *t, fh_t *fh, uint8_t flags, uint64_t off, const void *data,
                     size_t len)
{
    if (fh->trunc_pending)
        flags |= CMD_WRITE_TRUNC;
    if (!(flags & CMD_WRITE_SETLEN))
        flags |= CMD_WRITE_APPEND;
    if (fh->create_pending && !still_pending(t, fh))
        fh->create_pending = 0;   /* another open of the creation published it */
    if (fh->create_pending)
        flags |= CMD_PUT_CREATE;
    sm_result_t res;
    int rc;
    for (int tries = 0;; tries++) {
        cmdbuf_t b;
        tree_cmd_write_full(&b, node_now_ms(), fh->ns, fh->path, flags,
                            fh->create_pending ? fh->id : 0, fh->create_pending ? 0 : fh->id,
                            fh->cmode, fh->cuid, fh->cgid, off, data, len);
        rc = node_propose(t->node, t->shard, &b, &res);
        /* Renamed (logrotate): the write follows the object. */
        if (rc != -ESTALE || tries == PUBLISH_TRIES || refresh_path(t, fh) < 0)
            break;
    }
    if (rc == -ESTALE && !object_exists(t, fh->id))
        return 0;   /* removed: the write goes nowhere, as on a local disk */
    if (rc == -ESTALE)
        rc = -EIO;
    if (rc < 0)
        return rc;
    fh->trunc_pending = 0;
    if (fh->create_pending) {
        fh->create_pending = 0;
        mount_pending_del(t->m, fh->id);
    }
    blob_t *nb = current_value(t, tf_result_id(&res));
    if (nb) {
        blob_unref(fh->snap);
        fh->snap = nb;
    }
    return 0;
}

static int do_write(const treq_t *t, fh_t *fh, const char *buf, size_t size, off_t off)
{
    if (fh->kind != FH_VALUE)
        return -EBADF;
    if (off < 0)
        return -EINVAL;
    pthread_mutex_lock(&fh->mu);
    int rc;
    if (fh->append) {
        /* apply checks the size at the end */
        rc = node_quorum_lost(t->node, t->shard) ? -EIO : write_now(t, fh, 0, 0, buf, size);
    } else if (fh->failed) {
        rc = -fh->failed;                         /* the save already failed */
    } else if (node_quorum_lost(t->node, t->shard)) {
        rc = save_fail(fh, EIO);                  /* known now: the save cannot publish */
    } else if ((uint64_t)off + size > TREE_VALUE_MAX) {
        rc = save_fail(fh, EFBIG);
    } else if ((rc = node_space_check(t->node, (uint64_t)off + size)) < 0) {
        rc = save_fail(fh, -rc);
    } else if ((rc = save_begin(t, fh)) == 0) {
        size_t end = (size_t)off + size;
        if ((rc = save_setlen(fh, end > fh->len ? end : fh->len)) == 0)
            memcpy(fh->buf + off, buf, size);
    }
    pthread_mutex_unlock(&fh->mu);
    return rc;
}

void tfile_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
    treq_t t = treq_fh(req, ino, (fh_t *)(uintptr_t)fi->fh);
    uint64_t t0 = metrics_now_ns();
    int rc = do_write(&t, (fh_t *)(uintptr_t)fi->fh, buf, size, off);
    metrics_op(node_metrics(t.node), MOP_write, t0, -rc);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* Publishes fh's save under its lock. */
static int publish_locked(const treq_t *t, fh_t *fh)
{
    if (fh->kind != FH_VALUE)
        return 0;
    pthread_mutex_lock(&fh->mu);
    int rc = publish(t, fh);
    pthread_mutex_unlock(&fh->mu);
    return rc;
}

/* Whether process pid holds a descriptor of fh's description, as far as /proc tells: the
 * descriptors it holds on the file with fh's flags are counted, and as many as pid has
 * other such opens are taken to be theirs (so two opens of one file in one process each
 * publish at their own close). -1 when /proc cannot tell. */
static int holds(const treq_t *t, const fh_t *fh, pid_t pid)
{
    int n = mount_open_count(t->m, pid, fh->id, fh->oflags);
    return n < 0 ? -1 : n > opened_siblings(t->m, fh, pid);
}

/* Whether the close() by process pid that flushes fh ends its writing: neither pid nor
 * the process that opened fh holds a descriptor of it any more. (A child that inherited
 * the descriptor flushes it when it exits or execs, which must not publish the parent's
 * save.) When /proc cannot tell, release publishes. */
static int ends_writing(const treq_t *t, const fh_t *fh, pid_t pid)
{
    if (holds(t, fh, pid) != 0)
        return 0;
    return pid == fh->opener || holds(t, fh, fh->opener) <= 0;
}

/* The close() that ends the writing publishes the save, and close() returns its error
 * (a failed save's error was returned by its write() already: not again). */
void tfile_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq_fh(req, ino, (fh_t *)(uintptr_t)fi->fh);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    int rc = 0, owed = 0;
    if (fh->kind == FH_VALUE) {
        pthread_mutex_lock(&fh->mu);
        owed = owes(fh);
        pthread_mutex_unlock(&fh->mu);
    }
    pid_t tid = fuse_req_ctx(req)->pid;
    /* The opener is a process id: a thread with that id is its main thread. */
    if (owed && ends_writing(&t, fh, tid == fh->opener ? tid : tgid_of(tid))) {
        pthread_mutex_lock(&fh->mu);
        int failed = fh->failed;
        rc = publish(&t, fh);
        pthread_mutex_unlock(&fh->mu);
        if (failed)
            rc = 0;
    }
    metrics_op(node_metrics(t.node), MOP_flush, t0, -rc);
    fuse_reply_err(req, -rc);
}

/* fsync publishes the save (every O_APPEND write is durable already). */
void tfile_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    treq_t t = treq_fh(req, ino, (fh_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, -publish_locked(&t, (fh_t *)(uintptr_t)fi->fh));
}

void tfile_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq_fh(req, ino, (fh_t *)(uintptr_t)fi->fh);
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    /* The last descriptor is gone: whatever no flush published lands now. */
    int failed = fh->kind == FH_VALUE && fh->failed;
    int rc = publish_locked(&t, fh);
    if (rc < 0 && !failed)
        fprintf(stderr, "quorumfs: %s: save at the last close not published: %s\n",
                fh->path ? fh->path : "?", strerror(-rc));
    fh_close(&t, fh);
    fuse_reply_err(req, 0);
}

/* ---- creating ---- */

/* Id of the live object at ns/path, or 0. */
static uint64_t live_id(const treq_t *t, int ns, const char *path)
{
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tree_resolve(t->st, ns, path, strlen(path));
    uint64_t id = o && tree_live(o, node_now_ms()) ? o->id : 0;
    pthread_rwlock_unlock(&t->st->lock);
    return id;
}

static int do_create(const treq_t *t, uint64_t parent, const char *name, mode_t mode,
                     int flags, struct fuse_entry_param *e, fh_t **out)
{
    const struct fuse_ctx *cx = fuse_req_ctx(t->req);
    uint32_t own[3] = { (uint32_t)mode & TREE_MODE_MASK, (uint32_t)cx->uid,
                        (uint32_t)cx->gid };
    tf_new_owner(t, parent, 0, &own[0], &own[2]);   /* a set-group-ID parent's group */
    char path[4096];
    int ns;
    fh_t *fh = NULL;
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    int rc = tf_child_path(t, parent, name, &ns, path, sizeof(path), 1);
    if (rc < 0)
        return rc;
    if (flags & O_EXCL) {
        /* O_CREAT|O_EXCL is committed before the open returns. */
        cmdbuf_t b;
        sm_result_t res;
        tree_cmd_create(&b, node_now_ms(), ns, path, CMD_PUT_EXCL, 0, own[0], own[1], own[2],
                        "", 0);
        rc = node_propose(t->node, t->shard, &b, &res);
        e->ino = rc == 0 ? tf_result_id(&res) : 0;
        if (rc == 0)
            rc = open_value(t, e->ino, flags & ~O_TRUNC, &fh);
        /* The open publishes the new file's first value (config/: its first revision; the
         * exclusive create took none), even if nothing is written. */
        if (rc == 0 && !fh->append)
            fh->saving = 1;
    } else if ((e->ino = live_id(t, ns, path)) != 0 ||
               (e->ino = mount_pending_by_path(t->m, (uint8_t)ns, path)) != 0) {
        /* It was created meanwhile (the kernel's lookup missed it), or another open is
         * creating it: open that, as open(2) with O_CREAT and without O_EXCL does. */
        rc = open_value(t, e->ino, flags, &fh);
    } else {
        /* Plain O_CREAT: the file comes into being when its save is published, so readers
         * never see it empty-then-filled and config gets one revision. */
        uint64_t id = mount_pending_id(t->m);
        if (!id)
            return -ENOSPC;
        if ((rc = mount_pending_add(t->m, id, (uint8_t)ns, path)) < 0)
            return rc;
        if ((rc = open_pending(t, id, flags, own, &fh)) < 0) {
            mount_pending_del(t->m, id);
            return rc;
        }
        e->ino = id;
        pending_stat(fh, &e->attr);
        *out = fh;
        return 0;
    }
    if (rc == 0)
        rc = tf_getattr(t, e->ino, &e->attr);
    if (rc < 0) {
        fh_close(t, fh);
        return rc;
    }
    *out = fh;
    return 0;
}

void tfile_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi)
{
    treq_t t = treq_at(req, parent, name);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = NULL;
    struct fuse_entry_param e;
    int rc = do_create(&t, parent, name, mode, fi->flags, &e, &fh);
    metrics_op(node_metrics(t.node), MOP_create, t0, -rc);
    if (mount_reply_open(req, rc, fh, fi, &e))
        fh_close(&t, fh);
}

void tfile_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                 dev_t rdev)
{
    treq_t t = treq_at(req, parent, name);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = NULL;
    struct fuse_entry_param e;
    int rc;
    if (S_ISREG(mode)) {
        rc = do_create(&t, parent, name, mode, O_CREAT | O_EXCL | O_WRONLY, &e, &fh);
    } else {
        /* The name first, as mkdir and symlink check it: a reserved or malformed name gives
         * EINVAL (FILE-API §1 Names) whatever the type; a valid one EPERM (no FIFOs...). */
        char path[4096];
        int ns;
        rc = tf_child_path(&t, parent, name, &ns, path, sizeof(path), 1);
        if (rc == 0)
            rc = -EPERM;
    }
    if (rc == 0) {
        rc = publish_locked(&t, fh);        /* its first value (config/: first revision) */
        fh_close(&t, fh);
    }
    if (rc == 0)
        rc = tf_getattr(&t, e.ino, &e.attr);
    metrics_op(node_metrics(t.node), MOP_create, t0, -rc);
    front_reply_entry(req, rc, &e);
}

/* ---- setattr's part ---- */

/* truncate(2)/ftruncate(2). Through a saving open: part of its save. Through an O_APPEND
 * open: committed at once, like its writes. By path: a save of its own, published now. */
static int do_truncate(const treq_t *t, uint64_t ino, off_t size, fh_t *fh)
{
    if (size < 0)
        return -EINVAL;
    fh_t *tmp = NULL;
    if (!fh || fh->kind != FH_VALUE) {
        if ((uint64_t)size > TREE_VALUE_MAX)
            return -EFBIG;
        int rc = open_value(t, ino, O_RDWR, &tmp);
        if (rc < 0)
            return rc;
        fh = tmp;
    }
    pthread_mutex_lock(&fh->mu);
    int rc;
    if (fh->append)
        rc = (uint64_t)size > TREE_VALUE_MAX
                 ? -EFBIG : write_now(t, fh, CMD_WRITE_SETLEN, (uint64_t)size, NULL, 0);
    else if (fh->failed)
        rc = -fh->failed;
    else if ((uint64_t)size > TREE_VALUE_MAX)
        rc = save_fail(fh, EFBIG);
    else if ((rc = save_begin(t, fh)) == 0)
        rc = save_setlen(fh, (size_t)size);
    if (rc == 0 && tmp)
        rc = publish(t, fh);
    pthread_mutex_unlock(&fh->mu);
    fh_close(t, tmp);
    return rc;
}

int tfile_truncate(const treq_t *t, uint64_t ino, off_t size, struct fuse_file_info *fi)
{
    return do_truncate(t, ino, size, fi ? (fh_t *)(uintptr_t)fi->fh : NULL);
}

/* A setattr (touch, chmod, ...) publishes first the saves in progress on the file that
 * changed something: the one of the open it came with, or those of the calling process (cp
 * -p and tar set attributes on the descriptor they wrote, before closing it), so the
 * attributes apply to the new value and the close has nothing left to publish. A save
 * that changed nothing yet (a file an exclusive create just made) is published first only
 * by a setattr of times, which writers do last (tar, cp -p, for an empty file too); a
 * chmod or chown leaves it to its close (mkstemp, then fchmod before writing, in sed -i:
 * one revision, not an empty one first). A creation not published yet by any of those
 * is published as an empty file. */
/* Publishes the saves in progress of process pid on inode ino (futimens, fchmod and
 * fchown reach setattr without their descriptor). 0 or the first error. */
static int publish_by(const treq_t *t, uint64_t ino, pid_t pid, int times)
{
    fh_t *got[8];
    size_t n = 0;
    pthread_mutex_lock(&opened_mu);
    opened_t *o = opened_find(t->m, ino);
    for (fh_t *f = o ? o->fhs : NULL; f && n < 8; f = f->onext)
        if (f->opener == pid && !f->append) {
            __atomic_add_fetch(&f->refs, 1, __ATOMIC_ACQ_REL);
            got[n++] = f;
        }
    pthread_mutex_unlock(&opened_mu);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        fh_t *f = got[i];
        pthread_mutex_lock(&f->mu);
        int r = f->changed || f->create_pending || (times && f->saving) ? publish(t, f) : 0;
        pthread_mutex_unlock(&f->mu);
        if (rc == 0)
            rc = r;
        fh_unref(f);
    }
    return rc;
}

int tfile_settle_pending(const treq_t *t, uint64_t ino, struct fuse_file_info *fi, int times)
{
    fh_t *fh = fi ? (fh_t *)(uintptr_t)fi->fh : NULL;
    if (fh && fh->kind == FH_VALUE && !fh->append) {
        pthread_mutex_lock(&fh->mu);
        int owed = fh->changed || fh->create_pending || (times && fh->saving);
        int rc = owed ? publish(t, fh) : 0;
        pthread_mutex_unlock(&fh->mu);
        if (owed)
            return rc;
    }
    int rc = publish_by(t, ino, tgid_of(fuse_req_ctx(t->req)->pid), times);
    if (rc < 0)
        return rc;
    char path[4096];
    uint8_t ns;
    if (mount_pending_find(t->m, ino, &ns, path, sizeof(path)) < 0)
        return 0;
    struct stat st;
    if (tfile_open_stat(t, ino, &st) < 0) {
        st.st_mode = TREE_MODE_FILE;
        st.st_uid = st.st_gid = 0;
    }
    cmdbuf_t b;
    tree_cmd_create(&b, node_now_ms(), ns, path, CMD_PUT_KEEP, ino, st.st_mode & TREE_MODE_MASK,
                    st.st_uid, st.st_gid, "", 0);
    return node_propose(t->node, t->shard, &b, NULL);
}

/* ---- attributes known to open files ---- */

int tfile_open_stat(const treq_t *t, uint64_t ino, struct stat *s)
{
    uint8_t ns;
    int pending = mount_pending_find(t->m, ino, &ns, NULL, 0) == 0;
    pthread_mutex_lock(&opened_mu);
    opened_t *o = opened_find(t->m, ino);
    if (o)
        *s = o->st;
    pthread_mutex_unlock(&opened_mu);
    if (!o)
        return -ENOENT;
    s->st_nlink = pending ? 1 : 0;   /* created and not yet published, or removed */
    return 0;
}

/* s shows fh's save in progress, if it has one that changed the value. */
static void save_stat(fh_t *fh, struct stat *s)
{
    pthread_mutex_lock(&fh->mu);
    if (fh->saving) {
        s->st_size = (off_t)fh->len;
        if (fh->changed)
            s->st_mtim = s->st_ctim = fh->wtime;
    }
    pthread_mutex_unlock(&fh->mu);
}

void tfile_adjust_stat(struct fuse_file_info *fi, struct stat *s)
{
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    if (fh && fh->kind == FH_VALUE)
        save_stat(fh, s);
}

void tfile_adjust_stat_caller(const treq_t *t, uint64_t ino, struct stat *s)
{
    /* Cheap first: only an inode with a save-capable open (writable, not O_APPEND, whose
     * writes are published at once) on this mount costs a look at the caller's process. */
    int any = 0, mine = 0;
    pid_t tid = fuse_req_ctx(t->req)->pid;
    pthread_mutex_lock(&opened_mu);
    opened_t *o = opened_find(t->m, ino);
    for (const fh_t *f = o ? o->fhs : NULL; f; f = f->onext)
        if (writable(f->oflags) && !f->append) {
            any = 1;
            mine |= f->opener == tid;   /* the writer's main thread: no syscall below */
        }
    pthread_mutex_unlock(&opened_mu);
    if (!any || tid <= 0)
        return;
    pid_t pid = mine ? tid : tgid_of(tid);
    /* The caller's opens (references: a release may run meanwhile), each read under its own
     * lock (fh->mu is taken before opened_mu elsewhere, never inside it). */
    fh_t *got[8];
    size_t n = 0;
    pthread_mutex_lock(&opened_mu);
    o = opened_find(t->m, ino);
    for (fh_t *f = o ? o->fhs : NULL; f && n < 8; f = f->onext)
        if (f->opener == pid && writable(f->oflags) && !f->append) {
            __atomic_add_fetch(&f->refs, 1, __ATOMIC_ACQ_REL);
            got[n++] = f;
        }
    pthread_mutex_unlock(&opened_mu);
    /* The newest save that changed the value wins (fstat cannot say which descriptor). */
    struct timespec best = { 0, 0 };
    for (size_t i = 0; i < n; i++) {
        fh_t *f = got[i];
        pthread_mutex_lock(&f->mu);
        if (f->saving && f->changed &&
            (f->wtime.tv_sec > best.tv_sec ||
             (f->wtime.tv_sec == best.tv_sec && f->wtime.tv_nsec > best.tv_nsec))) {
            best = f->wtime;
            s->st_size = (off_t)f->len;
            s->st_mtim = s->st_ctim = f->wtime;
        }
        pthread_mutex_unlock(&f->mu);
        fh_unref(f);
    }
}
