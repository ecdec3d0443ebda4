/* fs/tree_file.c — the generic tree front's open value files and control entries (see
 * fs/tree_front.h): open, read, the write protocol, flush, fsync, release, create and
 * truncate, and poll.
 *
 * Value files: each write() request is one committed command on the value as it is then
 * (CMD_WRITE), so a value changes atomically per request and concurrent writers never undo
 * each other. A file created without O_EXCL comes into being with its first write (or at
 * flush/release, fsync, setattr), under the id the node picked at create. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fs/front.h"
#include "fs/metrics.h"
#include "fs/ns.h"
#include "fs/route.h"
#include "fs/tree_front.h"

enum fh_kind { FH_VALUE = 1, FH_CTL };

typedef struct fh {
    int kind;
    uint8_t ns;
    char *path;                        /* FH_VALUE: namespace-relative path */
    blob_t *snap;                      /* what reads return (FH_VALUE, FH_CTL with text) */
    pthread_mutex_t mu;                /* FH_VALUE write state; held while replying a read */
    int trunc_pending, create_pending, append;
    int dirty;                         /* FH_VALUE: a write through this open committed */
    blob_t *orig;                      /* FH_VALUE: value at open (NULL: file was new) */
    uint64_t want_id;                  /* FH_VALUE made by create: the id it will have */
    const tree_front_t *tf;            /* FH_CTL with a handle: its front ... */
    void *ctl;                         /* ... and the handle */
} fh_t;

/* ---- open files ---- */

static fh_t *fh_new(int kind)
{
    fh_t *fh = calloc(1, sizeof(*fh));
    if (!fh || pthread_mutex_init(&fh->mu, NULL) != 0) {
        free(fh);
        return NULL;
    }
    fh->kind = kind;
    return fh;
}

/* Releases what the open holds: a control entry's handle, snapshots. */
static void fh_free(fh_t *fh)
{
    if (!fh)
        return;
    if (fh->ctl)
        fh->tf->ctl_release(fh->ctl);
    blob_unref(fh->snap);
    blob_unref(fh->orig);
    free(fh->path);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

/* A value file open on ns/path, reading snap (a reference it takes over, or an empty one). */
static fh_t *fh_value(uint8_t ns, const char *path, blob_t *snap, int flags)
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

/* ---- files ---- */

/* Another open of a file created but not yet written: it shares the creation (the
 * first of them to write or close commits it, with the same id). */
static int open_pending(const treq_t *t, uint64_t ino, int flags, fh_t **out)
{
    char path[4096];
    uint8_t ns;
    if (mount_pending_find(t->m, ino, &ns, path, sizeof(path)) < 0)
        return -ENOENT;
    fh_t *fh = fh_value(ns, path, NULL, flags);
    if (!fh)
        return -ENOMEM;
    fh->want_id = ino;
    fh->create_pending = 1;
    *out = fh;
    return 0;
}

static int open_value(const treq_t *t, uint64_t ino, int flags, fh_t **out)
{
    char path[4096];
    int ns, type;
    int rc = tf_obj_path(t, ino, &ns, path, sizeof(path), &type);
    if (rc == -ENOENT)
        return open_pending(t, ino, flags, out);
    if (rc < 0)
        return rc;
    if (type == OBJ_DIR)
        return -EISDIR;
    const tree_front_t *tf = tf_of(ns);
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tf_live_obj(t, ino);
    blob_t *snap = o ? blob_ref(o->val) : NULL;
    /* A read the namespace wants to hear of (cache/: LRU order, sliding TTL). */
    int touch = o && (flags & O_ACCMODE) != O_WRONLY && tf && tf->read_touches &&
                tf->read_touches(t->st, o);
    pthread_rwlock_unlock(&t->st->lock);
    if (!snap)
        return -ENOENT;
    fh_t *fh = fh_value((uint8_t)ns, path, snap, flags);
    if (!fh)
        return -ENOMEM;
    fh->orig = blob_ref(fh->snap);
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
        fh->trunc_pending = 1;
        blob_unref(fh->snap);
        if (!(fh->snap = blob_new(NULL, 0))) {
            fh_free(fh);
            return -ENOMEM;
        }
    }
    if (touch)
        tf->note_read(ns_front_ctx(t->req, ns), path);
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

void tfile_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = NULL;
    int rc = mount_is_ctl(ino) ? open_ctl(&t, ino, fi->flags, &fh)
                               : open_value(&t, ino, fi->flags, &fh);
    metrics_op(node_metrics(t.node), MOP_open, t0, -rc);
    if (mount_reply_open(req, rc, fh, fi, NULL))
        fh_free(fh);
}

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
    pthread_mutex_lock(&fh->mu);
    size_t len = fh->snap->len;
    size_t n = off < 0 || (size_t)off >= len ? 0 : len - (size_t)off;
    if (n > size)
        n = size;
    fuse_reply_buf(req, n ? (const char *)fh->snap->data + off : NULL, n);
    pthread_mutex_unlock(&fh->mu);
    metrics_op(mt, MOP_read, t0, 0);
}

/* fh's pending creation just committed. fh->mu held. */
static void created(const treq_t *t, fh_t *fh)
{
    fh->create_pending = 0;
    mount_pending_del(t->m, fh->want_id);
}

/* Commits one write request (or, with CMD_WRITE_SETLEN and no data, a truncation to off)
 * on the file's current value, carrying the open's pending O_TRUNC, creation and O_APPEND.
 * Afterwards reads through this open see the committed value. fh->mu held. */
static int write_request(const treq_t *t, fh_t *fh, uint8_t flags, uint64_t off,
                         const void *data, size_t len)
{
    if (fh->trunc_pending)
        flags |= CMD_WRITE_TRUNC;
    if (fh->append && !(flags & CMD_WRITE_SETLEN))
        flags |= CMD_WRITE_APPEND;
    if (fh->create_pending)
        flags |= CMD_PUT_CREATE;
    cmdbuf_t b;
    tree_cmd_write(&b, node_now_ms(), fh->ns, fh->path, flags,
                   fh->create_pending ? fh->want_id : 0, off, data, len);
    sm_result_t res;
    int rc = node_propose(t->node, &b, &res);
    if (rc < 0)
        return rc;
    fh->dirty = 1;
    fh->trunc_pending = 0;
    if (fh->create_pending)
        created(t, fh);
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tree_by_id(t->st, tf_result_id(&res));
    blob_t *nb = o && o->type == OBJ_FILE ? blob_ref(o->val) : NULL;
    pthread_rwlock_unlock(&t->st->lock);
    if (nb) {
        blob_unref(fh->snap);
        fh->snap = nb;
    }
    return 0;
}

/* A value grew past TREE_VALUE_MAX through several write requests: the earlier ones were
 * already committed, so put back the value the file had at open (or remove a file this open
 * created), keeping "EFBIG and the old value is kept". fh->mu held. */
static void restore_orig(const treq_t *t, fh_t *fh)
{
    if (!fh->dirty)
        return;
    cmdbuf_t b;
    if (fh->orig)
        tree_cmd_put(&b, node_now_ms(), fh->ns, fh->path, CMD_PUT_CREATE, 0, fh->orig->data,
                     fh->orig->len);
    else
        tree_cmd_path(&b, CMD_UNLINK, node_now_ms(), fh->ns, fh->path);
    int rc = node_propose(t->node, &b, NULL);
    if (rc < 0)
        fprintf(stderr, "quorumfs: %s: restoring the value after EFBIG failed: %s\n", fh->path,
                strerror(-rc));
    fh->dirty = 0;
    blob_unref(fh->snap);
    fh->snap = fh->orig ? blob_ref(fh->orig) : blob_new(NULL, 0);
    if (!fh->orig && !fh->create_pending &&
        mount_pending_add(t->m, fh->want_id, fh->ns, fh->path) == 0)
        fh->create_pending = 1;   /* it was this open's new file: it is gone again */
}

static int do_write(const treq_t *t, fh_t *fh, const char *buf, size_t size, off_t off)
{
    if (fh->kind != FH_VALUE)
        return -EBADF;
    if (off < 0)
        return -EINVAL;
    pthread_mutex_lock(&fh->mu);
    int rc = -EFBIG;   /* apply checks again, against the value's length for O_APPEND */
    if (fh->append || (uint64_t)off + size <= TREE_VALUE_MAX)
        rc = write_request(t, fh, 0, (uint64_t)off, buf, size);
    if (rc == -EFBIG)
        restore_orig(t, fh);
    pthread_mutex_unlock(&fh->mu);
    return rc;
}

void tfile_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    int rc = do_write(&t, (fh_t *)(uintptr_t)fi->fh, buf, size, off);
    metrics_op(node_metrics(t.node), MOP_write, t0, -rc);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* Commits what an open still owes: the truncation of O_TRUNC, or the creation of a new
 * file, when nothing was written. */
static int settle(const treq_t *t, fh_t *fh)
{
    if (fh->kind != FH_VALUE)
        return 0;
    pthread_mutex_lock(&fh->mu);
    int rc = 0;
    if (fh->create_pending || fh->trunc_pending) {
        cmdbuf_t b;
        tree_cmd_put(&b, node_now_ms(), fh->ns, fh->path,
                     fh->create_pending ? CMD_PUT_CREATE | CMD_PUT_KEEP : 0,
                     fh->create_pending ? fh->want_id : 0, "", 0);
        rc = node_propose(t->node, &b, NULL);
        if (rc == 0) {
            fh->trunc_pending = 0;
            if (fh->create_pending)
                created(t, fh);
        }
    }
    pthread_mutex_unlock(&fh->mu);
    return rc;
}

/* flush comes at every close() of a descriptor, including a shell's close of the original
 * after dup2() and before its first write. An open that still owes its O_TRUNC or its
 * creation settles here only if the closing process holds no other descriptor on the file
 * (then no write can follow, and close() returns once the truncation is durable);
 * otherwise release settles it. Every write has already reported its own error. */
void tfile_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->kind == FH_VALUE && (fh->trunc_pending || fh->create_pending) &&
        !mount_still_open(t.m, fuse_req_ctx(req)->pid, ino, -1))
        rc = settle(&t, fh);
    metrics_op(node_metrics(t.node), MOP_flush, t0, -rc);
    fuse_reply_err(req, -rc);
}

void tfile_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    /* Every acknowledged write is already durable; only a pending create/truncate is owed. */
    fuse_reply_err(req, -settle(&t, (fh_t *)(uintptr_t)fi->fh));
}

void tfile_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    /* The last descriptor is gone: an O_TRUNC or a create with nothing written lands now. */
    int rc = settle(&t, fh);
    if (rc < 0)
        fprintf(stderr, "quorumfs: %s: truncate/create at close not committed: %s\n",
                fh->path ? fh->path : "?", strerror(-rc));
    if (fh->kind == FH_VALUE && fh->create_pending)
        mount_pending_del(t.m, fh->want_id);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

/* Id of the live object at ns/path, or 0. */
static uint64_t live_id(const treq_t *t, int ns, const char *path)
{
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tree_resolve(t->st, ns, path, strlen(path));
    uint64_t id = o && tree_live(o, node_now_ms()) ? o->id : 0;
    pthread_rwlock_unlock(&t->st->lock);
    return id;
}

static int do_create(const treq_t *t, uint64_t parent, const char *name, int flags,
                     struct fuse_entry_param *e, fh_t **out)
{
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
        tree_cmd_put(&b, node_now_ms(), ns, path, CMD_PUT_CREATE | CMD_PUT_EXCL, 0, "", 0);
        rc = node_propose(t->node, &b, &res);
        e->ino = rc == 0 ? tf_result_id(&res) : 0;
        if (rc == 0)
            rc = open_value(t, e->ino, flags & ~O_TRUNC, &fh);
    } else if ((e->ino = live_id(t, ns, path)) != 0 ||
               (e->ino = mount_pending_by_path(t->m, (uint8_t)ns, path)) != 0) {
        /* It was created meanwhile (the kernel's lookup missed it), or another open is
         * creating it: open that, as open(2) with O_CREAT and without O_EXCL does. */
        rc = open_value(t, e->ino, flags, &fh);
    } else {
        /* Plain O_CREAT: the file comes into being with its first write (or at close), so
         * readers never see it empty-then-filled and config gets one revision. */
        uint64_t id = mount_pending_id(t->m);
        if (!id)
            return -ENOSPC;
        if (!(fh = fh_value((uint8_t)ns, path, NULL, flags)))
            return -ENOMEM;
        fh->want_id = id;
        if ((rc = mount_pending_add(t->m, id, fh->ns, path)) == 0) {
            fh->create_pending = 1;
            tf_entry_pending(id, e);
            *out = fh;
            return 0;
        }
    }
    if (rc == 0)
        rc = tf_getattr(t, e->ino, &e->attr);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

void tfile_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = NULL;
    struct fuse_entry_param e;
    int rc = do_create(&t, parent, name, fi->flags, &e, &fh);
    metrics_op(node_metrics(t.node), MOP_create, t0, -rc);
    if (mount_reply_open(req, rc, fh, fi, &e) && fh) {
        if (fh->create_pending)
            mount_pending_del(t.m, fh->want_id);
        fh_free(fh);
    }
}

/* truncate(2)/ftruncate(2): one committed step to the new size. */
static int do_truncate(const treq_t *t, uint64_t ino, off_t size, fh_t *fh)
{
    if (size < 0)
        return -EINVAL;
    if ((uint64_t)size > TREE_VALUE_MAX)
        return -EFBIG;
    fh_t *tmp = NULL;
    if (!fh || fh->kind != FH_VALUE) {
        int rc = open_value(t, ino, O_RDWR, &tmp);
        if (rc < 0)
            return rc;
        fh = tmp;
    }
    pthread_mutex_lock(&fh->mu);
    int rc = write_request(t, fh, CMD_WRITE_SETLEN, (uint64_t)size, NULL, 0);
    pthread_mutex_unlock(&fh->mu);
    fh_free(tmp);
    return rc;
}

/* A setattr (touch, truncate) of a file created but not yet written commits the creation
 * first, through its own open if it comes with one. */
static int settle_pending(const treq_t *t, uint64_t ino, fh_t *fh)
{
    if (fh && fh->kind == FH_VALUE && fh->create_pending)
        return settle(t, fh);
    char path[4096];
    uint8_t ns;
    if (mount_pending_find(t->m, ino, &ns, path, sizeof(path)) < 0)
        return 0;
    cmdbuf_t b;
    tree_cmd_put(&b, node_now_ms(), ns, path, CMD_PUT_CREATE | CMD_PUT_KEEP, ino, "", 0);
    return node_propose(t->node, &b, NULL);
}

int tfile_truncate(const treq_t *t, uint64_t ino, off_t size, struct fuse_file_info *fi)
{
    return do_truncate(t, ino, size, fi ? (fh_t *)(uintptr_t)fi->fh : NULL);
}

int tfile_settle_pending(const treq_t *t, uint64_t ino, struct fuse_file_info *fi)
{
    return settle_pending(t, ino, fi ? (fh_t *)(uintptr_t)fi->fh : NULL);
}

int tfile_open_stat(const treq_t *t, uint64_t ino, struct stat *s)
{
    uint8_t ns;
    if (mount_pending_find(t->m, ino, &ns, NULL, 0) < 0)
        return -ENOENT;
    mount_stat(s, ino, S_IFREG | 0644, 0, node_now_ms());   /* created, not yet written */
    return 0;
}

void tfile_adjust_stat(struct fuse_file_info *fi, struct stat *s)
{
    (void)fi;
    (void)s;
}
