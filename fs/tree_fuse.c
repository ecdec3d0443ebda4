/* fs/tree_fuse.c — the generic FUSE front of the tree namespaces (see tree_fuse.h). Inodes
 * here are object ids (>= STATE_FIRST_ID, and the namespace roots), the future ids of
 * pending creations (fs/mount.h), and control entries, which go to the namespace's
 * tree_front_t. Every callback replies exactly once: a do_* helper returns an errno and a
 * thin callback replies, except a control entry's read, which its front may answer later.
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
#include "fs/dirlist.h"
#include "fs/front.h"
#include "fs/metrics.h"
#include "fs/names.h"
#include "fs/ns.h"
#include "fs/route.h"
#include "fs/tree_fuse.h"

enum fh_kind { FH_VALUE = 1, FH_DIR, FH_CTL };

typedef struct fh {
    int kind;
    uint8_t ns;
    char *path;                        /* FH_VALUE: namespace-relative path */
    blob_t *snap;                      /* what reads return (FH_VALUE, FH_CTL with text) */
    dirlist_t dir;                     /* FH_DIR listing, taken at opendir */
    pthread_mutex_t mu;                /* FH_VALUE write state; held while replying a read */
    int trunc_pending, create_pending, append;
    int dirty;                         /* FH_VALUE: a write through this open committed */
    blob_t *orig;                      /* FH_VALUE: value at open (NULL: file was new) */
    uint64_t want_id;                  /* FH_VALUE made by create: the id it will have */
    const tree_front_t *tf;            /* FH_CTL with a handle: its front ... */
    void *ctl;                         /* ... and the handle */
} fh_t;

/* What a handler works on: the request's mount, node and shard. */
typedef struct treq {
    fuse_req_t req;
    mount_t *m;
    node_t *node;
    state_t *st;
} treq_t;

static treq_t treq(fuse_req_t req)
{
    treq_t t = { .req = req, .m = mount_of(req) };
    t.node = mount_node(t.m);
    t.st = node_state(t.node);
    return t;
}

/* The namespace's additions (NULL for a namespace not built yet). */
static const tree_front_t *tf_of(int ns)
{
    return ns > NS_NONE && ns < NS__COUNT && ns_fronts[ns] ? ns_fronts[ns]->tree : NULL;
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
    return fh;
}

/* Releases what the open holds: a control entry's handle, snapshots, a listing. */
static void fh_free(fh_t *fh)
{
    if (!fh)
        return;
    if (fh->ctl)
        fh->tf->ctl_release(fh->ctl);
    blob_unref(fh->snap);
    blob_unref(fh->orig);
    dirlist_clear(&fh->dir);
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

/* ---- objects ---- */

/* The object with id ino if readers see it now; read lock held. */
static obj_t *live_obj(const treq_t *t, uint64_t ino)
{
    obj_t *o = tree_by_id(t->st, ino);
    return o && tree_live(o, node_now_ms()) ? o : NULL;
}

static void obj_stat(const obj_t *o, struct stat *s)
{
    if (o->type == OBJ_DIR)
        mount_stat(s, o->id, S_IFDIR | 0755, 0, o->mtime_ms);
    else
        mount_stat(s, o->id, S_IFREG | 0644, o->val->len, o->mtime_ms);
}

static void entry_for_obj(const obj_t *o, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = o->id;
    e->generation = 1;
    obj_stat(o, &e->attr);
}

/* An entry for a file created but not yet written: it exists, empty. */
static void entry_pending(uint64_t id, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = id;
    e->generation = 1;
    mount_stat(&e->attr, id, S_IFREG | 0644, 0, node_now_ms());
}

static int do_getattr(const treq_t *t, uint64_t ino, struct stat *s)
{
    int rc = -ENOENT;
    mount_ctl_t c;
    if (mount_is_ctl(ino) && mount_ctl_find(t->m, ino, &c) < 0)
        return -ENOENT;
    pthread_rwlock_rdlock(&t->st->lock);
    if (mount_is_ctl(ino)) {
        const tree_front_t *tf = tf_of(c.ns);
        rc = tf && tf->ctl_getattr ? tf->ctl_getattr(t->st, ino, &c, s) : -ENOENT;
    } else {
        obj_t *o = live_obj(t, ino);
        if (o) {
            obj_stat(o, s);
            rc = 0;
        }
    }
    pthread_rwlock_unlock(&t->st->lock);
    uint8_t ns;
    if (rc == -ENOENT && !mount_is_ctl(ino) && mount_pending_find(t->m, ino, &ns, NULL, 0) == 0) {
        mount_stat(s, ino, S_IFREG | 0644, 0, node_now_ms());   /* created, not yet written */
        rc = 0;
    }
    return rc;
}

/* Path of dir/name into path (size bytes). Returns 0 or -ENAMETOOLONG. */
static int join(const obj_t *dir, const char *name, char *path, size_t size)
{
    int l = tree_path(dir, path, size);
    if (l < 0 || (size_t)l + strlen(name) + 2 > size)
        return -ENAMETOOLONG;
    snprintf(path + l, size - (size_t)l, "%s%s", l ? "/" : "", name);
    return 0;
}

static int do_lookup(const treq_t *t, uint64_t parent, const char *name,
                     struct fuse_entry_param *e)
{
    if (mount_is_ctl(parent))
        return -ENOTDIR;
    if (strlen(name) > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *dir = live_obj(t, parent);
    const tree_front_t *tf = dir ? tf_of(dir->ns) : NULL;
    if (!dir) {
        rc = -ENOENT;
    } else if (dir->type != OBJ_DIR) {
        rc = -ENOTDIR;
    } else {
        obj_t *o = tree_child(dir, name);
        if (o && tree_live(o, node_now_ms())) {
            entry_for_obj(o, e);
            rc = 0;
        } else if (!o && tf && tf->ctl_lookup) {
            rc = tf->ctl_lookup(t->m, t->st, dir, name, e);
        }
        /* created by an open that has not written yet: the file exists, empty */
        char path[4096];
        uint64_t id;
        if (rc == -ENOENT && tf && join(dir, name, path, sizeof(path)) == 0 &&
            (id = mount_pending_by_path(t->m, dir->ns, path)) != 0) {
            entry_pending(id, e);
            rc = 0;
        }
    }
    pthread_rwlock_unlock(&t->st->lock);
    return rc;
}

static void t_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    struct fuse_entry_param e;
    int rc = do_lookup(&t, parent, name, &e);
    metrics_op(node_metrics(t.node), MOP_lookup, t0, rc == -ENOENT ? 0 : -rc);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else if (fuse_reply_entry(req, &e) != 0 && mount_is_ctl(e.ino))
        mount_ctl_forget(t.m, e.ino, 1);   /* the kernel never got it: undo the lookup count */
}

static void t_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    struct stat s;
    int rc = do_getattr(&t, ino, &s);
    metrics_op(node_metrics(t.node), MOP_getattr, t0, -rc);
    front_reply_attr(req, rc, &s);
}

/* ---- paths of objects, for commands ---- */

/* Resolves (parent inode, name) into the namespace and the namespace-relative path of the
 * child, checking that parent is a directory where objects may be created. */
static int child_path(const treq_t *t, uint64_t parent, const char *name, int *ns, char *path,
                      size_t size, int check_name)
{
    if (mount_is_ctl(parent))
        return -ENOTDIR;
    int rc;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *dir = live_obj(t, parent);
    if (!dir)
        rc = -ENOENT;
    else if (dir->type != OBJ_DIR)
        rc = -ENOTDIR;
    else if (!tree_hooks(dir->ns))
        rc = -EOPNOTSUPP;   /* a namespace not built yet */
    else if ((rc = join(dir, name, path, size)) == 0)
        *ns = dir->ns;
    pthread_rwlock_unlock(&t->st->lock);
    if (rc == 0 && check_name)
        rc = names_check(name, strlen(name), tree_hooks(*ns)->at_reserved);
    return rc;
}

/* Namespace-relative path of an existing object inode (and its type). */
static int obj_path(const treq_t *t, uint64_t ino, int *ns, char *path, size_t size, int *type)
{
    if (mount_is_ctl(ino))
        return -ENOENT;
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = live_obj(t, ino);
    if (o) {
        rc = tree_path(o, path, size);
        *ns = o->ns;
        if (type)
            *type = o->type;
    }
    pthread_rwlock_unlock(&t->st->lock);
    return rc < 0 ? rc : 0;
}

static uint64_t result_id(const sm_result_t *res)
{
    uint64_t id = 0;
    if (res->len >= 8)
        memcpy(&id, res->data, 8);
    return id;
}

static int propose_path(const treq_t *t, uint8_t op, int ns, const char *path,
                        sm_result_t *res)
{
    cmdbuf_t b;
    tree_cmd_path(&b, op, node_now_ms(), ns, path);
    return node_propose(t->node, &b, res);
}

/* ---- directories ---- */

static void t_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    char path[4096];
    int ns;
    sm_result_t res;
    struct fuse_entry_param e;
    int rc = child_path(&t, parent, name, &ns, path, sizeof(path), 1);
    if (rc == 0)
        rc = propose_path(&t, CMD_MKDIR, ns, path, &res);
    if (rc == 0) {
        pthread_rwlock_rdlock(&t.st->lock);
        obj_t *o = tree_by_id(t.st, result_id(&res));
        if (o)
            entry_for_obj(o, &e);
        else
            rc = -ENOENT;
        pthread_rwlock_unlock(&t.st->lock);
    }
    metrics_op(node_metrics(t.node), MOP_mkdir, t0, -rc);
    front_reply_entry(req, rc, &e);
}

static int do_remove(const treq_t *t, uint8_t op, uint64_t parent, const char *name)
{
    char path[4096];
    int ns;
    int rc = child_path(t, parent, name, &ns, path, sizeof(path), 0);
    if (rc < 0)
        return rc;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tree_resolve(t->st, ns, path, strlen(path));
    int live = o && tree_live(o, node_now_ms());
    pthread_rwlock_unlock(&t->st->lock);
    if (!live) {
        /* control names are read-only; others simply do not exist */
        const tree_front_t *tf = tf_of(ns);
        return tf && tf->ctl_name && tf->ctl_name(name) ? -EPERM : -ENOENT;
    }
    return propose_path(t, op, ns, path, NULL);
}

static void t_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    int rc = do_remove(&t, CMD_RMDIR, parent, name);
    metrics_op(node_metrics(t.node), MOP_rmdir, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void t_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    int rc = do_remove(&t, CMD_UNLINK, parent, name);
    metrics_op(node_metrics(t.node), MOP_unlink, t0, -rc);
    fuse_reply_err(req, -rc);
}

/* Both parents are in one namespace (mount.c routes renames across to EXDEV). */
static int do_rename(const treq_t *t, uint64_t parent, const char *name, uint64_t newparent,
                     const char *newname, unsigned flags)
{
    char from[4096], to[4096];
    int ns1, ns2;
    if (flags & ~(unsigned)RENAME_NOREPLACE)
        return -EINVAL;       /* RENAME_EXCHANGE / WHITEOUT: not supported */
    int rc = child_path(t, parent, name, &ns1, from, sizeof(from), 0);
    if (rc == 0)
        rc = child_path(t, newparent, newname, &ns2, to, sizeof(to), 1);
    if (rc < 0)
        return rc;
    /* A rename between units on different shards cannot be one command: EXDEV, and mv
     * copies and deletes (FILE-API §1 "Atomic replace"). */
    if (!route_same_shard(ns1, from, to, node_nshards(t->node)))
        return -EXDEV;
    cmdbuf_t b;
    tree_cmd_rename(&b, node_now_ms(), ns1, from, to,
                    (flags & RENAME_NOREPLACE) ? CMD_RENAME_NOREPLACE : 0);
    return node_propose(t->node, &b, NULL);
}

static void t_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                     const char *newname, unsigned int flags)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    int rc = do_rename(&t, parent, name, newparent, newname, flags);
    metrics_op(node_metrics(t.node), MOP_rename, t0, -rc);
    fuse_reply_err(req, -rc);
}

static int do_opendir(const treq_t *t, uint64_t ino, fh_t **out)
{
    if (mount_is_ctl(ino))
        return -ENOTDIR;
    fh_t *fh = fh_new(FH_DIR);
    if (!fh)
        return -ENOMEM;
    dirlist_t *d = &fh->dir;
    int rc = dirlist_add(d, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", FUSE_ROOT_ID, S_IFDIR);
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = live_obj(t, ino);
    uint64_t now = node_now_ms();
    if (rc < 0) {
    } else if (!o) {
        rc = -ENOENT;
    } else if (o->type != OBJ_DIR) {
        rc = -ENOTDIR;
    } else {
        d->ents[1].ino = o->parent ? o->parent->id : FUSE_ROOT_ID;
        for (obj_t *c = o->children; c && rc == 0; c = c->hh.next)
            if (tree_live(c, now))
                rc = dirlist_add(d, c->name, c->id, c->type == OBJ_DIR ? S_IFDIR : S_IFREG);
    }
    pthread_rwlock_unlock(&t->st->lock);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    dirlist_sort(d, 2);
    *out = fh;
    return 0;
}

static void t_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    fh_t *fh;
    int rc = do_opendir(&t, ino, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_open(req, fi) != 0)
        fh_free(fh);
}

static void t_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    uint64_t t0 = metrics_now_ns();
    metrics_t *mt = node_metrics(mount_node(mount_of(req)));   /* req is gone once answered */
    dirlist_reply(req, &((fh_t *)(uintptr_t)fi->fh)->dir, size, off);
    metrics_op(mt, MOP_readdir, t0, 0);
}

/* A value file is always ready; a control entry's handle may block (config/ .events). */
static void t_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
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

static void t_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fh_free((fh_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
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
    int rc = obj_path(t, ino, &ns, path, sizeof(path), &type);
    if (rc == -ENOENT)
        return open_pending(t, ino, flags, out);
    if (rc < 0)
        return rc;
    if (type == OBJ_DIR)
        return -EISDIR;
    const tree_front_t *tf = tf_of(ns);
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = live_obj(t, ino);
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

static void t_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

static void t_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
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
    obj_t *o = tree_by_id(t->st, result_id(&res));
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

static void t_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
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
static void t_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->kind == FH_VALUE && (fh->trunc_pending || fh->create_pending) &&
        !mount_still_open(t.m, fuse_req_ctx(req)->pid, ino))
        rc = settle(&t, fh);
    metrics_op(node_metrics(t.node), MOP_flush, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void t_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    /* Every acknowledged write is already durable; only a pending create/truncate is owed. */
    fuse_reply_err(req, -settle(&t, (fh_t *)(uintptr_t)fi->fh));
}

static void t_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
    int rc = child_path(t, parent, name, &ns, path, sizeof(path), 1);
    if (rc < 0)
        return rc;
    if (flags & O_EXCL) {
        /* O_CREAT|O_EXCL is committed before the open returns. */
        cmdbuf_t b;
        sm_result_t res;
        tree_cmd_put(&b, node_now_ms(), ns, path, CMD_PUT_CREATE | CMD_PUT_EXCL, 0, "", 0);
        rc = node_propose(t->node, &b, &res);
        e->ino = rc == 0 ? result_id(&res) : 0;
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
            entry_pending(id, e);
            *out = fh;
            return 0;
        }
    }
    if (rc == 0)
        rc = do_getattr(t, e->ino, &e->attr);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

static void t_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
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

static int do_setattr(const treq_t *t, uint64_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    fh_t *fh = fi ? (fh_t *)(uintptr_t)fi->fh : NULL;
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
        return -EPERM;           /* ownership and permission bits are fixed */
    if (mount_is_ctl(ino))
        return -EPERM;           /* control files */
    int rc = settle_pending(t, ino, fh);
    if (rc < 0)
        return rc;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        rc = do_truncate(t, ino, attr->st_size, fh);
        if (rc < 0)
            return rc;
    }
    if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_ATIME |
                  FUSE_SET_ATTR_ATIME_NOW)) {
        char path[4096];
        int ns;
        rc = obj_path(t, ino, &ns, path, sizeof(path), NULL);
        if (rc == 0 && tree_hooks(ns))
            rc = propose_path(t, CMD_SETMTIME, ns, path, NULL);
        if (rc < 0 && rc != -EPERM)
            return rc;
    }
    return 0;
}

static void t_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    struct stat s;
    int rc = do_setattr(&t, ino, attr, to_set, fi);
    metrics_op(node_metrics(t.node), MOP_setattr, t0, -rc);
    if (rc == 0)
        rc = do_getattr(&t, ino, &s);
    front_reply_attr(req, rc, &s);
}

/* ---- extended attributes ---- */

static int do_setxattr(const treq_t *t, uint64_t ino, const char *name, const char *value,
                       size_t size, int remove)
{
    char path[4096];
    int ns, rc;
    if (strncmp(name, "user.", 5) != 0)
        return -ENOTSUP;
    rc = obj_path(t, ino, &ns, path, sizeof(path), NULL);
    if (rc < 0)
        return rc;
    const tree_front_t *tf = tf_of(ns);
    if (!tf || !tf->check_setxattr)
        return -ENOTSUP;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = live_obj(t, ino);
    rc = o ? tf->check_setxattr(o, name, value, size, remove) : -ENOENT;
    pthread_rwlock_unlock(&t->st->lock);
    if (rc < 0)
        return rc;
    cmdbuf_t b;
    if (remove)
        tree_cmd_removexattr(&b, node_now_ms(), ns, path, name);
    else
        tree_cmd_setxattr(&b, node_now_ms(), ns, path, name, value, size);
    return node_propose(t->node, &b, NULL);
}

static void t_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                       size_t size, int flags)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    int rc = do_setxattr(&t, ino, name, value, size, 0);
    metrics_op(node_metrics(t.node), MOP_setxattr, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void t_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    int rc = do_setxattr(&t, ino, name, NULL, 0, 1);
    metrics_op(node_metrics(t.node), MOP_removexattr, t0, -rc);
    fuse_reply_err(req, -rc);
}

/* Fills buf (size 0 = size query) with attribute name of ino, or with the list of names.
 * Returns the length or -errno. */
static int do_getxattr(const treq_t *t, uint64_t ino, const char *name, char *buf, size_t size,
                       int list)
{
    if (mount_is_ctl(ino))
        return list ? 0 : -ENODATA;
    int rc;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = live_obj(t, ino);
    const tree_hooks_t *hk = o ? tree_hooks(o->ns) : NULL;
    if (!o)
        rc = -ENOENT;
    else if (list)
        rc = (int)(hk && hk->listxattr ? hk->listxattr(o, buf, size) : 0);
    else
        rc = hk && hk->getxattr ? hk->getxattr(o, name, buf, size) : -ENODATA;
    pthread_rwlock_unlock(&t->st->lock);
    return rc;
}

static void getxattr_reply(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size,
                           int list)
{
    treq_t t = treq(req);
    uint64_t t0 = metrics_now_ns();
    char *buf = size ? malloc(size) : NULL;
    int rc = size && !buf ? -ENOMEM : do_getxattr(&t, ino, name, buf, size, list);
    metrics_op(node_metrics(t.node), list ? MOP_listxattr : MOP_getxattr, t0,
               rc == -ENODATA && !list ? 0 : (rc < 0 ? -rc : 0));
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        front_reply_xattr(req, buf, (size_t)rc, size);
    free(buf);
}

static void t_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    getxattr_reply(req, ino, name, size, 0);
}

static void t_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    getxattr_reply(req, ino, NULL, size, 1);
}

const struct fuse_lowlevel_ops tree_fuse_ops = {
    .lookup = t_lookup,
    .getattr = t_getattr,
    .setattr = t_setattr,
    .mkdir = t_mkdir,
    .unlink = t_unlink,
    .rmdir = t_rmdir,
    .rename = t_rename,
    .open = t_open,
    .read = t_read,
    .write = t_write,
    .flush = t_flush,
    .release = t_release,
    .fsync = t_fsync,
    .opendir = t_opendir,
    .readdir = t_readdir,
    .releasedir = t_releasedir,
    .setxattr = t_setxattr,
    .getxattr = t_getxattr,
    .listxattr = t_listxattr,
    .removexattr = t_removexattr,
    .create = t_create,
    .poll = t_poll,
};
