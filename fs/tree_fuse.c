/* fs/tree_fuse.c — the generic FUSE front of the tree namespaces (see tree_fuse.h), names
 * half: lookup and attributes, directories, removal, rename, setattr and extended
 * attributes; open value files are fs/tree_file.c's (fs/tree_front.h joins the halves).
 * Inodes here are object ids (>= STATE_FIRST_ID, and the namespace roots), the future ids
 * of pending creations (fs/mount.h), and control entries, which go to the namespace's
 * tree_front_t. Every callback replies exactly once: a do_* helper returns an errno and a
 * thin callback replies.
 *
 * POSIX metadata (docs/FILE-INTERFACE.md): getattr shows the tree's mode, owner, link
 * count and ns times; a namespace root whose times are still 0 shows the time this process
 * first showed one instead of 1970. setattr turns chmod, chown and utimensat into one
 * CMD_SETATTR. Without -o default_permissions the kernel checks nothing, so setattr checks
 * the POSIX rules itself: root may do anything; the owner may chmod, set explicit times and
 * change the group to its own (primary or supplementary) group; a chmod by a non-root
 * owner whose group is not the caller's drops S_ISGID; changing the owner to another uid is
 * root's; setting times to "now" (`touch`) is allowed to any caller the kernel lets through
 * (with default_permissions, the kernel has checked write permission). Reads never update
 * atime (as noatime). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/dirlist.h"
#include "fs/front.h"
#include "fs/metrics.h"
#include "fs/names.h"
#include "fs/ns.h"
#include "fs/route.h"
#include "fs/tree_front.h"

/* An open directory: its listing, taken at opendir. */
typedef struct dirfh {
    dirlist_t dir;
} dirfh_t;

static void dirfh_free(dirfh_t *d)
{
    if (d) {
        dirlist_clear(&d->dir);
        free(d);
    }
}

/* ---- directories removed while the kernel may still hold them ---- */

/* A process whose cwd (or an open descriptor) is a directory that is then removed keeps
 * using its inode: on ext4 stat says st_nlink 0, a listing is empty and a creation in it
 * ENOENT. The tree forgets a removed object at once, and an inode the tree does not have is
 * ESTALE to getattr (a path walk's inode replaced since: the kernel walks again, see
 * tfile_open). FUSE does not say whether a getattr comes from a path walk or from a cwd or
 * descriptor, so the directories removed through this mount (rmdir, or a rename over an
 * empty one) are remembered here with their last attributes: getattr answers them with
 * st_nlink 0 and opendir with an empty listing, as ext4 does; a path walk that raced the
 * removal gets those attributes too, as it can on ext4. The newest GONE_DIRS are kept (no
 * FORGET reaches the front for an inode the tree no longer has); a directory removed through
 * another mount, or one pushed out, is ESTALE as before. */
#define GONE_DIRS 1024

static struct gone_dir {
    const mount_t *m;
    uint64_t ino;
    struct stat st;
} gone_dirs[GONE_DIRS];
static unsigned gone_next;
static pthread_mutex_t gone_mu = PTHREAD_MUTEX_INITIALIZER;

/* Directory ino (attributes st, as before its removal) was removed through mount m. */
static void gone_add(const mount_t *m, uint64_t ino, const struct stat *st)
{
    pthread_mutex_lock(&gone_mu);
    struct gone_dir *g = &gone_dirs[gone_next++ % GONE_DIRS];
    g->m = m;
    g->ino = ino;
    g->st = *st;
    g->st.st_nlink = 0;
    g->st.st_size = 0;
    clock_gettime(CLOCK_REALTIME, &g->st.st_ctim);   /* the removal changed it */
    pthread_mutex_unlock(&gone_mu);
}

/* The attributes of removed directory ino of mount m into s. 0 or -ENOENT. */
static int gone_find(const mount_t *m, uint64_t ino, struct stat *s)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&gone_mu);
    unsigned filled = gone_next < GONE_DIRS ? gone_next : GONE_DIRS;
    for (unsigned i = 0; i < filled; i++)
        if (gone_dirs[i].ino == ino && gone_dirs[i].m == m) {
            *s = gone_dirs[i].st;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&gone_mu);
    return rc;
}

/* ---- objects ---- */

static int is_ns_root(uint64_t ino)
{
    return ino >= NS_ROOT_ID(1) && ino < NS_ROOT_ID(NS__COUNT);
}

obj_t *tf_live_obj(const treq_t *t, uint64_t ino)
{
    obj_t *o = tree_by_id(t->st, ino);
    return o && tree_live(o, node_now_ms()) ? o : NULL;
}

static struct timespec ts_of_ns(int64_t ns)
{
    struct timespec ts;
    int64_t sec = ns / 1000000000, rem = ns % 1000000000;
    if (rem < 0) {
        rem += 1000000000;
        sec--;
    }
    ts.tv_sec = (time_t)sec;
    ts.tv_nsec = (long)rem;
    return ts;
}

/* A time in ns from a timespec the kernel gave, clamped to what an int64 of ns holds
 * (years 1678 to 2262). */
static int64_t ns_of_ts(const struct timespec *ts)
{
    const int64_t lim = INT64_MAX / 1000000000 - 1;
    if (ts->tv_sec > lim)
        return INT64_MAX;
    if (ts->tv_sec < -lim)
        return INT64_MIN;
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* What a namespace root whose times are 0 (nothing changed it yet) shows: the time this
 * process first showed such a root, so that no root shows 1970. */
static int64_t root_time_ns(void)
{
    static int64_t first;
    int64_t v = __atomic_load_n(&first, __ATOMIC_RELAXED);
    if (v == 0) {
        int64_t now = tree_ns_of_ms(node_now_ms());
        if (!__atomic_compare_exchange_n(&first, &v, now, 0, __ATOMIC_RELAXED,
                                         __ATOMIC_RELAXED))
            return v;
        v = now;
    }
    return v;
}

void tf_obj_stat(const obj_t *o, struct stat *s)
{
    mode_t type = o->type == OBJ_DIR ? S_IFDIR : o->type == OBJ_LINK ? S_IFLNK : S_IFREG;
    mount_stat(s, o->id, type | o->mode, o->type == OBJ_DIR ? 0 : (off_t)o->val->len, 0);
    s->st_nlink = tree_nlink(o);
    s->st_uid = o->uid;
    s->st_gid = o->gid;
    int64_t at = o->atime_ns, mt = o->mtime_ns, ct = o->ctime_ns;
    if (is_ns_root(o->id)) {   /* (not !o->parent: a kept replaced file has none either) */
        int64_t r = at && mt && ct ? 0 : root_time_ns();
        at = at ? at : r;
        mt = mt ? mt : r;
        ct = ct ? ct : r;
    }
    s->st_atim = ts_of_ns(at);
    s->st_mtim = ts_of_ns(mt);
    s->st_ctim = ts_of_ns(ct);
}

static void entry_for_obj(const obj_t *o, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = o->id;
    e->generation = 1;
    tf_obj_stat(o, &e->attr);
}

int tf_getattr(const treq_t *t, uint64_t ino, struct stat *s)
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
        obj_t *o = tf_live_obj(t, ino);
        if (o) {
            tf_obj_stat(o, s);
            rc = 0;
        }
    }
    pthread_rwlock_unlock(&t->st->lock);
    if (rc == 0 && is_ns_root(ino))
        for (uint32_t k = 0; k < node_nshards(t->node); k++) {   /* the root spans them all */
            if (k == t->shard)
                continue;
            treq_t tk = treq_shard(t->req, k);
            pthread_rwlock_rdlock(&tk.st->lock);
            obj_t *o = tf_live_obj(&tk, ino);
            if (o) {
                struct stat ks;
                tf_obj_stat(o, &ks);
                s->st_nlink += ks.st_nlink - 2;   /* its subdirectories' ".." */
                if (ks.st_mtim.tv_sec > s->st_mtim.tv_sec ||
                    (ks.st_mtim.tv_sec == s->st_mtim.tv_sec &&
                     ks.st_mtim.tv_nsec > s->st_mtim.tv_nsec))
                    s->st_mtim = ks.st_mtim;
            }
            pthread_rwlock_unlock(&tk.st->lock);
        }
    if (rc == -ENOENT && !mount_is_ctl(ino))
        rc = tfile_open_stat(t, ino, s);
    if (rc == -ENOENT && !mount_is_ctl(ino))
        rc = gone_find(t->m, ino, s);
    if (rc == -ENOENT && !mount_is_ctl(ino)) {
        /* a file replaced by a rename since the path walk that found it: its attributes as
         * that lookup saw them (see open_replaced in fs/tree_file.c) */
        pthread_rwlock_rdlock(&t->st->lock);
        const obj_t *o = tree_replaced(t->st, ino);
        if (o) {
            tf_obj_stat(o, s);
            rc = 0;
        }
        pthread_rwlock_unlock(&t->st->lock);
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
    uint64_t pending = 0;
    memset(e, 0, sizeof(*e));
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *dir = tf_live_obj(t, parent);
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
        /* created by an open that has not published yet: the file exists, empty */
        char path[4096];
        if (rc == -ENOENT && tf && join(dir, name, path, sizeof(path)) == 0)
            pending = mount_pending_by_path(t->m, dir->ns, path);
    }
    pthread_rwlock_unlock(&t->st->lock);
    if (pending && tfile_open_stat(t, pending, &e->attr) == 0) {
        e->ino = pending;
        e->generation = 1;
        rc = 0;
    }
    return rc;
}

static void t_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    treq_t t = treq_at(req, parent, name);
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
    treq_t t = treq_at(req, ino, NULL);
    uint64_t t0 = metrics_now_ns();
    struct stat s;
    int rc = tf_getattr(&t, ino, &s);
    if (rc == 0 && fi)
        tfile_adjust_stat(fi, &s);   /* through an open file: its save in progress */
    else if (rc == 0 && !mount_is_ctl(ino))
        tfile_adjust_stat_caller(&t, ino, &s);   /* the caller's own save in progress */
    else if (rc == -ENOENT && !fi && !mount_is_ctl(ino))
        rc = -ESTALE;                /* see tfile_open: a path walk's inode, replaced since */
    metrics_op(node_metrics(t.node), MOP_getattr, t0, -rc);
    front_reply_attr(req, rc, &s);
}

/* ---- paths of objects, for commands ---- */

/* Resolves (parent inode, name) into the namespace and the namespace-relative path of the
 * child, checking that parent is a directory where objects may be created. */
int tf_child_path(const treq_t *t, uint64_t parent, const char *name, int *ns, char *path,
                      size_t size, int check_name)
{
    if (mount_is_ctl(parent))
        return -ENOTDIR;
    int rc;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *dir = tf_live_obj(t, parent);
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

/* Whether the caller of req is in group g (its primary or a supplementary group). */
static int in_group(fuse_req_t req, uint32_t g);

void tf_new_owner(const treq_t *t, uint64_t parent, int is_dir, uint32_t *mode, uint32_t *gid)
{
    uint32_t dgid = 0;
    int sgid = 0;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *dir = mount_is_ctl(parent) ? NULL : tf_live_obj(t, parent);
    if (dir && dir->type == OBJ_DIR && (dir->mode & S_ISGID)) {
        sgid = 1;
        dgid = dir->gid;
    }
    pthread_rwlock_unlock(&t->st->lock);
    if (!sgid)
        return;
    *gid = dgid;
    if (is_dir)
        *mode |= S_ISGID;
    else if ((*mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) &&
             fuse_req_ctx(t->req)->uid != 0 && !in_group(t->req, dgid))
        *mode &= ~(uint32_t)S_ISGID;   /* a set-group-ID file of a group not the caller's */
}

/* Namespace-relative path of an existing object inode (and its type). */
int tf_obj_path(const treq_t *t, uint64_t ino, int *ns, char *path, size_t size, int *type)
{
    if (mount_is_ctl(ino))
        return -ENOENT;
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tf_live_obj(t, ino);
    if (o) {
        rc = tree_path(o, path, size);
        *ns = o->ns;
        if (type)
            *type = o->type;
    }
    pthread_rwlock_unlock(&t->st->lock);
    return rc < 0 ? rc : 0;
}

uint64_t tf_result_id(const sm_result_t *res)
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
    return node_propose(t->node, t->shard, &b, res);
}

/* ---- directories ---- */

/* Replies with the entry of the object a creation's result names (mkdir, symlink). */
static int created_entry(const treq_t *t, const sm_result_t *res, struct fuse_entry_param *e)
{
    int rc = 0;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tree_by_id(t->st, tf_result_id(res));
    if (o)
        entry_for_obj(o, e);
    else
        rc = -ENOENT;
    pthread_rwlock_unlock(&t->st->lock);
    return rc;
}

/* mode comes with the umask applied by the kernel; the owner is the caller. */
static void t_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    treq_t t = treq_at(req, parent, name);
    uint64_t t0 = metrics_now_ns();
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    char path[4096];
    int ns;
    sm_result_t res;
    struct fuse_entry_param e;
    int rc = tf_child_path(&t, parent, name, &ns, path, sizeof(path), 1);
    if (rc == 0) {
        uint32_t m = mode & TREE_MODE_MASK, gid = ctx->gid;
        tf_new_owner(&t, parent, 1, &m, &gid);
        cmdbuf_t b;
        tree_cmd_mkdir(&b, node_now_ms(), ns, path, m, ctx->uid, gid);
        rc = node_propose(t.node, t.shard, &b, &res);
    }
    if (rc == 0)
        rc = created_entry(&t, &res, &e);
    metrics_op(node_metrics(t.node), MOP_mkdir, t0, -rc);
    front_reply_entry(req, rc, &e);
}

static void t_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    treq_t t = treq_at(req, parent, name);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    char path[4096];
    int ns;
    sm_result_t res;
    struct fuse_entry_param e;
    size_t tl = strlen(link);
    int rc = tl == 0 ? -ENOENT : tl > TREE_LINK_MAX ? -ENAMETOOLONG : 0;
    if (rc == 0)
        rc = tf_child_path(&t, parent, name, &ns, path, sizeof(path), 1);
    if (rc == 0) {
        uint32_t m = 0777, gid = ctx->gid;
        tf_new_owner(&t, parent, 0, &m, &gid);
        cmdbuf_t b;
        tree_cmd_symlink(&b, node_now_ms(), ns, path, link, ctx->uid, gid);
        rc = node_propose(t.node, t.shard, &b, &res);
    }
    if (rc == 0)
        rc = created_entry(&t, &res, &e);
    front_reply_entry(req, rc, &e);
}

static void t_readlink(fuse_req_t req, fuse_ino_t ino)
{
    treq_t t = treq_at(req, ino, NULL);
    char *target = NULL;
    int rc = 0;
    if (mount_is_ctl(ino)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    pthread_rwlock_rdlock(&t.st->lock);
    obj_t *o = tf_live_obj(&t, ino);
    if (!o)
        rc = -ENOENT;
    else if (o->type != OBJ_LINK)
        rc = -EINVAL;
    else if (!(target = strndup((const char *)o->val->data, o->val->len)))
        rc = -ENOMEM;
    pthread_rwlock_unlock(&t.st->lock);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_readlink(req, target);
    free(target);
}

/* A file created on this mount and not yet published (its creating open has not closed)
 * exists for rename and unlink as for lookup: its creation is published first. */
static int publish_pending(const treq_t *t, int ns, const char *path)
{
    uint64_t id = mount_pending_by_path(t->m, (uint8_t)ns, path);
    return id ? tfile_settle_pending(t, id, NULL, 0) : 0;
}

static int do_remove(const treq_t *t, uint8_t op, uint64_t parent, const char *name)
{
    char path[4096];
    int ns;
    int rc = tf_child_path(t, parent, name, &ns, path, sizeof(path), 0);
    if (rc == 0)
        rc = publish_pending(t, ns, path);
    if (rc < 0)
        return rc;
    struct stat st;
    uint64_t dir_id = 0;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tree_resolve(t->st, ns, path, strlen(path));
    int live = o && tree_live(o, node_now_ms());
    if (live && o->type == OBJ_DIR) {
        tf_obj_stat(o, &st);
        dir_id = o->id;
    }
    pthread_rwlock_unlock(&t->st->lock);
    if (!live) {
        /* control names are read-only; others simply do not exist */
        const tree_front_t *tf = tf_of(ns);
        return tf && tf->ctl_name && tf->ctl_name(name) ? -EPERM : -ENOENT;
    }
    rc = propose_path(t, op, ns, path, NULL);
    if (rc == 0 && op == CMD_RMDIR && dir_id)
        gone_add(t->m, dir_id, &st);
    return rc;
}

static void t_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    treq_t t = treq_at(req, parent, name);
    uint64_t t0 = metrics_now_ns();
    int rc = do_remove(&t, CMD_RMDIR, parent, name);
    metrics_op(node_metrics(t.node), MOP_rmdir, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void t_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    treq_t t = treq_at(req, parent, name);
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
    treq_t dst = treq_at(t->req, newparent, newname);   /* newparent is on to's shard */
    int rc = tf_child_path(t, parent, name, &ns1, from, sizeof(from), 0);
    if (rc == 0)
        rc = tf_child_path(&dst, newparent, newname, &ns2, to, sizeof(to), 1);
    if (rc == 0)
        rc = publish_pending(t, ns1, from);
    if (rc < 0)
        return rc;
    /* A control entry (config/ `.events`, `file@rev`) is read-only: moving it away is EPERM,
     * as unlinking it is (do_remove); no object ever has such a name. */
    const tree_front_t *tf = tf_of(ns1);
    if (tf && tf->ctl_name && tf->ctl_name(name))
        return -EPERM;
    /* A rename between units on different shards cannot be one command: EXDEV, as between
     * filesystems (FILE-API §11; mv then copies and deletes). A two-step move (put at the
     * target, then remove the source) was tried and withdrawn: a save still open on the
     * source was lost, and two concurrent renames of one file both succeeded (docs/CLUSTER.md
     * "Rename across shards"). */
    if (!route_same_shard(ns1, from, to, node_nshards(t->node)))
        return -EXDEV;
    /* A directory the rename replaces (an empty one) is removed as by rmdir. */
    struct stat st;
    uint64_t dir_id = 0;
    pthread_rwlock_rdlock(&dst.st->lock);
    obj_t *o = tree_resolve(dst.st, ns2, to, strlen(to));
    if (o && o->type == OBJ_DIR && tree_live(o, node_now_ms())) {
        tf_obj_stat(o, &st);
        dir_id = o->id;
    }
    pthread_rwlock_unlock(&dst.st->lock);
    cmdbuf_t b;
    tree_cmd_rename(&b, node_now_ms(), ns1, from, to,
                    (flags & RENAME_NOREPLACE) ? CMD_RENAME_NOREPLACE : 0);
    rc = node_propose(t->node, t->shard, &b, NULL);
    if (rc == 0 && dir_id) {
        pthread_rwlock_rdlock(&dst.st->lock);
        int replaced = !tf_live_obj(&dst, dir_id);
        pthread_rwlock_unlock(&dst.st->lock);
        if (replaced)
            gone_add(t->m, dir_id, &st);
    }
    return rc;
}

static void t_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                     const char *newname, unsigned int flags)
{
    treq_t t = treq_at(req, parent, name);
    uint64_t t0 = metrics_now_ns();
    int rc = do_rename(&t, parent, name, newparent, newname, flags);
    metrics_op(node_metrics(t.node), MOP_rename, t0, -rc);
    fuse_reply_err(req, -rc);
}

static int do_opendir(const treq_t *t, uint64_t ino, dirfh_t **out)
{
    if (mount_is_ctl(ino))
        return -ENOTDIR;
    dirfh_t *fh = calloc(1, sizeof(*fh));
    if (!fh)
        return -ENOMEM;
    dirlist_t *d = &fh->dir;
    int rc = dirlist_add(d, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", FUSE_ROOT_ID, S_IFDIR);
    /* A namespace root spans every shard: its listing is theirs together. */
    int root = is_ns_root(ino);
    uint32_t k1 = root ? node_nshards(t->node) : t->shard + 1;
    for (uint32_t k = root ? 0 : t->shard; k < k1 && rc == 0; k++) {
        treq_t tk = treq_shard(t->req, k);
        pthread_rwlock_rdlock(&tk.st->lock);
        obj_t *o = tf_live_obj(&tk, ino);
        uint64_t now = node_now_ms();
        if (!o) {
            rc = -ENOENT;
        } else if (o->type != OBJ_DIR) {
            rc = -ENOTDIR;
        } else {
            d->ents[1].ino = o->parent ? o->parent->id : FUSE_ROOT_ID;
            for (obj_t *c = o->children; c && rc == 0; c = c->hh.next)
                if (tree_live(c, now))
                    rc = dirlist_add(d, c->name, c->id,
                                     c->type == OBJ_DIR    ? S_IFDIR
                                     : c->type == OBJ_LINK ? S_IFLNK
                                                           : S_IFREG);
        }
        pthread_rwlock_unlock(&tk.st->lock);
    }
    struct stat gst;
    if (rc == -ENOENT && !root && gone_find(t->m, ino, &gst) == 0)
        rc = 0;       /* a directory removed through this mount: empty, as on ext4 */
    if (rc < 0) {
        dirfh_free(fh);
        return rc;
    }
    dirlist_sort(d, 2);
    *out = fh;
    return 0;
}

static void t_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    treq_t t = treq_at(req, ino, NULL);
    dirfh_t *fh;
    int rc = do_opendir(&t, ino, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_open(req, fi) != 0)
        dirfh_free(fh);
}

static void t_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    uint64_t t0 = metrics_now_ns();
    metrics_t *mt = node_metrics(mount_node(mount_of(req)));   /* req is gone once answered */
    dirlist_reply(req, &((dirfh_t *)(uintptr_t)fi->fh)->dir, size, off);
    metrics_op(mt, MOP_readdir, t0, 0);
}

static void t_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    dirfh_free((dirfh_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* Whether the caller of req is in group g (its primary or a supplementary group). */
static int in_group(fuse_req_t req, uint32_t g)
{
    if (fuse_req_ctx(req)->gid == g)
        return 1;
    gid_t groups[64];
    int n = fuse_req_getgroups(req, 64, groups);
    for (int i = 0; i < n && i < 64; i++)
        if (groups[i] == g)
            return 1;
    return 0;
}

#define SET_TIMES (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW | \
                   FUSE_SET_ATTR_MTIME_NOW)
#define SET_META (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | SET_TIMES)

/* The POSIX rules for a setattr by the caller of req on an object owned by ouid:ogid (see
 * the top of this file). 0 or -EPERM; *mode may lose S_ISGID. */
static int may_setattr(fuse_req_t req, uint32_t ouid, uint32_t ogid, int to_set,
                       const struct stat *attr, uint32_t *mode)
{
    const struct fuse_ctx *c = fuse_req_ctx(req);
    if (c->uid == 0)
        return 0;
    int owner = c->uid == ouid;
    int explicit_times = ((to_set & FUSE_SET_ATTR_ATIME) && !(to_set & FUSE_SET_ATTR_ATIME_NOW)) ||
                         ((to_set & FUSE_SET_ATTR_MTIME) && !(to_set & FUSE_SET_ATTR_MTIME_NOW));
    if (!owner && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
        return -EPERM;
    if (!owner && explicit_times)
        return -EPERM;
    if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != ouid)
        return -EPERM;
    if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != ogid && !in_group(req, attr->st_gid))
        return -EPERM;
    uint32_t g = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : ogid;
    if ((to_set & FUSE_SET_ATTR_MODE) && !in_group(req, g))
        *mode &= ~(uint32_t)S_ISGID;
    return 0;
}

/* chmod, chown and utimensat of object ino in one CMD_SETATTR, after the POSIX checks. The
 * command names the object by path and id (ifid), so a rename in between gives ESTALE
 * rather than changing another object; it is then resolved and tried again. */
static int setattr_meta(const treq_t *t, uint64_t ino, const struct stat *attr, int to_set)
{
    for (int tries = 0;; tries++) {
        char path[4096];
        int ns = 0, rc = -ENOENT;
        uint32_t ouid = 0, ogid = 0;
        pthread_rwlock_rdlock(&t->st->lock);
        obj_t *o = tf_live_obj(t, ino);
        if (o) {
            rc = tree_path(o, path, sizeof(path));
            ns = o->ns;
            ouid = o->uid;
            ogid = o->gid;
        }
        pthread_rwlock_unlock(&t->st->lock);
        if (rc < 0)
            return rc;
        if (!tree_hooks(ns))   /* the root of a namespace not built yet: fixed */
            return (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
                       ? -EPERM : 0;
        uint32_t mode = attr->st_mode & TREE_MODE_MASK;
        rc = may_setattr(t->req, ouid, ogid, to_set, attr, &mode);
        if (rc < 0)
            return rc;
        uint8_t mask = 0;
        if (to_set & FUSE_SET_ATTR_MODE)
            mask |= CMD_SETATTR_MODE;
        if (to_set & FUSE_SET_ATTR_UID)
            mask |= CMD_SETATTR_UID;
        if (to_set & FUSE_SET_ATTR_GID)
            mask |= CMD_SETATTR_GID;
        /* The kernel sends ATIME with ATIME_NOW for "now". */
        if (to_set & FUSE_SET_ATTR_ATIME_NOW)
            mask |= CMD_SETATTR_ATIME_NOW;
        else if (to_set & FUSE_SET_ATTR_ATIME)
            mask |= CMD_SETATTR_ATIME;
        if (to_set & FUSE_SET_ATTR_MTIME_NOW)
            mask |= CMD_SETATTR_MTIME_NOW;
        else if (to_set & FUSE_SET_ATTR_MTIME)
            mask |= CMD_SETATTR_MTIME;
        cmdbuf_t b;
        tree_cmd_setattr(&b, node_now_ms(), ns, path, ino, mask, mode, attr->st_uid,
                         attr->st_gid, ns_of_ts(&attr->st_atim), ns_of_ts(&attr->st_mtim));
        rc = node_propose(t->node, t->shard, &b, NULL);
        if (rc != -ESTALE || tries == 2)
            return rc;
    }
}

/* Size first (through tree_file.c: an ftruncate is part of its open's save), then the
 * metadata in one command, after the saves in progress on the file were published (so the
 * attributes apply to the new value). Control entries keep their fixed attributes. */
static int do_setattr(const treq_t *t, uint64_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    if (mount_is_ctl(ino))
        return -EPERM;           /* control files */
    int rc = 0;
    if (to_set & SET_META)
        rc = tfile_settle_pending(t, ino, fi,
                                  (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
                                             FUSE_SET_ATTR_ATIME_NOW |
                                             FUSE_SET_ATTR_MTIME_NOW)) != 0);
    if (rc < 0)
        return rc;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        rc = tfile_truncate(t, ino, attr->st_size, fi);
        if (rc < 0)
            return rc;
    }
    if (to_set & SET_META)
        return setattr_meta(t, ino, attr, to_set);
    return 0;
}

/* A namespace root's mode, owner and times are kept by every shard (each holds a copy of
 * the root, and a new entry takes its group and set-group-ID bit from its own shard's
 * copy): a setattr of a root is proposed to each, in order; the first failure is returned
 * (the shards before it have the change), as set_or_remove_xattr does for settings. */
static void t_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    treq_t t = treq_at(req, ino, NULL);
    uint64_t t0 = metrics_now_ns();
    struct stat s;
    int rc = 0;
    if (is_ns_root(ino)) {
        for (uint32_t k = 0; k < node_nshards(t.node) && rc == 0; k++) {
            treq_t tk = treq_shard(req, k);
            rc = do_setattr(&tk, ino, attr, to_set, fi);
        }
    } else {
        rc = do_setattr(&t, ino, attr, to_set, fi);
    }
    metrics_op(node_metrics(t.node), MOP_setattr, t0, -rc);
    if (rc == 0)
        rc = tf_getattr(&t, ino, &s);
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
    if (mount_is_ctl(ino))
        return -EPERM;   /* a read-only control entry (config/ `.events`): as chmod of it */
    rc = tf_obj_path(t, ino, &ns, path, sizeof(path), NULL);
    if (rc < 0)
        return rc;
    const tree_front_t *tf = tf_of(ns);
    if (!tf || !tf->check_setxattr)
        return -ENOTSUP;
    pthread_rwlock_rdlock(&t->st->lock);
    obj_t *o = tf_live_obj(t, ino);
    rc = o ? tf->check_setxattr(o, name, value, size, remove) : -ENOENT;
    pthread_rwlock_unlock(&t->st->lock);
    if (rc < 0)
        return rc;
    cmdbuf_t b;
    if (remove)
        tree_cmd_removexattr(&b, node_now_ms(), ns, path, name);
    else
        tree_cmd_setxattr(&b, node_now_ms(), ns, path, name, value, size);
    return node_propose(t->node, t->shard, &b, NULL);
}

/* A setting on a namespace root (cache/'s default TTL...) holds for every shard: it is
 * proposed to each, in order; the first failure is returned (the shards before it have the
 * new setting). */
static int set_or_remove_xattr(fuse_req_t req, uint64_t ino, const char *name,
                               const char *value, size_t size, int remove)
{
    treq_t t = treq_at(req, ino, NULL);
    if (!is_ns_root(ino))
        return do_setxattr(&t, ino, name, value, size, remove);
    int rc = 0;
    for (uint32_t k = 0; k < node_nshards(t.node) && rc == 0; k++) {
        treq_t tk = treq_shard(req, k);
        rc = do_setxattr(&tk, ino, name, value, size, remove);
    }
    return rc;
}

static void t_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                       size_t size, int flags)
{
    uint64_t t0 = metrics_now_ns();
    metrics_t *mt = node_metrics(mount_node(mount_of(req)));
    int rc = set_or_remove_xattr(req, ino, name, value, size, 0);
    metrics_op(mt, MOP_setxattr, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void t_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    uint64_t t0 = metrics_now_ns();
    metrics_t *mt = node_metrics(mount_node(mount_of(req)));
    int rc = set_or_remove_xattr(req, ino, name, NULL, 0, 1);
    metrics_op(mt, MOP_removexattr, t0, -rc);
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
    obj_t *o = tf_live_obj(t, ino);
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

/* For a namespace root's user.version: the shard with the newest revision (each shard
 * counts its own; the other root attributes are set on every shard alike). */
static treq_t newest_version_shard(fuse_req_t req, uint64_t ino)
{
    treq_t best = treq_shard(req, 0);
    uint64_t max = 0;
    for (uint32_t k = 0; k < node_nshards(best.node); k++) {
        treq_t tk = treq_shard(req, k);
        char v[32];
        int n = do_getxattr(&tk, ino, "user.version", v, sizeof(v) - 1, 0);
        if (n <= 0)
            continue;
        v[n] = 0;
        uint64_t r = strtoull(v, NULL, 10);
        if (r > max) {
            max = r;
            best = tk;
        }
    }
    return best;
}

static void getxattr_reply(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size,
                           int list)
{
    treq_t t = list || !is_ns_root(ino) || strcmp(name, "user.version")
                   ? treq_at(req, ino, NULL) : newest_version_shard(req, ino);
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
    .symlink = t_symlink,
    .readlink = t_readlink,
    .unlink = t_unlink,
    .rmdir = t_rmdir,
    .rename = t_rename,
    .open = tfile_open,
    .read = tfile_read,
    .write = tfile_write,
    .flush = tfile_flush,
    .release = tfile_release,
    .fsync = tfile_fsync,
    .opendir = t_opendir,
    .readdir = t_readdir,
    .releasedir = t_releasedir,
    .setxattr = t_setxattr,
    .getxattr = t_getxattr,
    .listxattr = t_listxattr,
    .removexattr = t_removexattr,
    .create = tfile_create,
    .mknod = tfile_mknod,
    .poll = tfile_poll,
};
