/* fs/mount.c — the FUSE session of a node (see mount.h). It serves the mount root (the
 * namespace roots and `.cluster/`) and the `.cluster/` files itself, and routes every other
 * request to the front of the namespace that owns the inode (fs/ns.h): namespace roots
 * NS_ROOT_ID(ns), module inodes (NS_INO), objects of the shard's tree (ino = object id) and
 * pending creations (their future id), and control entries (CTL_BIT, numbered here). A
 * namespace without a front of its own is served by the generic tree front (fs/tree_fuse.h),
 * which holds only its root and refuses creation there (EOPNOTSUPP).
 *
 * Reads on a cluster node: an operation that reads the shard's state for a namespace inode
 * (lookup, getattr, open, opendir, getxattr of a user. name, listxattr, readlink) takes the
 * node's read barrier first (ROUTE_READ; node_read_barrier, a no-op on the embedded node), before even
 * looking the inode's owner up, so that it sees every write acknowledged on any node before
 * it began. Reads of an open file or directory serve the version taken at open.
 *
 * Context: one mount_t per mounted node, the session's userdata. Locking: ctl_mu guards the
 * control-entry tables and next_ctl; pending_mu guards pending. Neither is held while taking
 * the state lock, and the state lock (read) is held only to look an inode's object up. Every
 * callback replies exactly once: a do_* helper returns an errno and a thin callback replies. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uthash.h>
#include "cluster/transport.h"
#include "fs/dirlist.h"
#include "fs/front.h"
#include "fs/fuse_io.h"
#include "fs/metrics.h"
#include "fs/mount.h"
#include "fs/names.h"
#include "fs/ns.h"
#include "fs/status.h"
#include "fs/tree_fuse.h"

#define INO_ROOT FUSE_ROOT_ID
#define INO_CLUSTER 10
#define INO_STATUS0 11                 /* .cluster/<status_names[i]> = INO_STATUS0 + i */
#define CTL_BIT (1ull << 62)
#define MAX_WRITE (1u << 20)
#define STATIC_TIMEOUT 3600.0          /* root-level names never change */

typedef struct ctl_ent {
    uint64_t ino;
    mount_ctl_t key;
    uint64_t nlookup;
    UT_hash_handle hh_ino, hh_key;
} ctl_ent_t;

typedef struct pending {
    uint64_t id;
    uint8_t ns;
    UT_hash_handle hh;
    char path[];
} pending_t;

struct mount {
    node_t *node;
    struct fuse_session *se;           /* set before the first request, never changed */
    long long mnt_id;                  /* this mount's id in /proc/<pid>/mountinfo; 0 unknown */
    int root_attrs_cached;             /* namespace roots' attributes get STATIC_TIMEOUT
                                          (do_lookup); set once mounted */
    pthread_mutex_t ctl_mu;            /* guards by_ino, by_key, next_ctl */
    ctl_ent_t *by_ino, *by_key;
    uint64_t next_ctl;
    pthread_mutex_t pending_mu;        /* guards pending */
    pending_t *pending;                /* files created but not yet committed, by id */
    uint64_t next_pid;                 /* next proposer-picked id (atomic) */
    uint64_t pid_end;                  /* one past this node's slice (node_pid_range) */
};

mount_t *mount_of(fuse_req_t req) { return fuse_req_userdata(req); }
node_t *mount_node(const mount_t *m) { return m->node; }
struct fuse_session *mount_session(const mount_t *m) { return m->se; }

void mount_stat(struct stat *s, uint64_t ino, mode_t mode, off_t size, uint64_t mtime_ms)
{
    front_stat(s, ino, mode, size, mtime_ms);
    s->st_blocks = (size + 511) / 512;
}

int mount_reply_open(fuse_req_t req, int rc, void *fh, struct fuse_file_info *fi,
                     const struct fuse_entry_param *e)
{
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return 1;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;        /* the kernel page cache must never serve a stale value */
    fi->keep_cache = 0;
    return (e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi)) != 0;
}

/* ---- control entries ---- */

int mount_is_ctl(uint64_t ino) { return (ino & CTL_BIT) != 0; }

uint64_t mount_ctl_get(mount_t *m, const mount_ctl_t *c)
{
    mount_ctl_t k;
    memset(&k, 0, sizeof(k));   /* the key is hashed as bytes: no stray padding */
    k.ns = c->ns;
    k.kind = c->kind;
    k.obj = c->obj;
    k.aux = c->aux;
    ctl_ent_t *v;
    uint64_t ino = 0;
    pthread_mutex_lock(&m->ctl_mu);
    HASH_FIND(hh_key, m->by_key, &k, sizeof(k), v);
    if (!v && (v = calloc(1, sizeof(*v)))) {
        v->key = k;
        v->ino = CTL_BIT | ++m->next_ctl;
        HASH_ADD(hh_key, m->by_key, key, sizeof(k), v);
        HASH_ADD(hh_ino, m->by_ino, ino, sizeof(v->ino), v);
    }
    if (v) {
        v->nlookup++;
        ino = v->ino;
    }
    pthread_mutex_unlock(&m->ctl_mu);
    return ino;
}

int mount_ctl_find(mount_t *m, uint64_t ino, mount_ctl_t *out)
{
    ctl_ent_t *v;
    pthread_mutex_lock(&m->ctl_mu);
    HASH_FIND(hh_ino, m->by_ino, &ino, sizeof(ino), v);
    if (v)
        *out = v->key;
    pthread_mutex_unlock(&m->ctl_mu);
    return v ? 0 : -ENOENT;
}

void mount_ctl_forget(mount_t *m, uint64_t ino, uint64_t n)
{
    ctl_ent_t *v;
    pthread_mutex_lock(&m->ctl_mu);
    HASH_FIND(hh_ino, m->by_ino, &ino, sizeof(ino), v);
    if (v && (v->nlookup -= (n < v->nlookup ? n : v->nlookup)) == 0) {
        HASH_DELETE(hh_ino, m->by_ino, v);
        HASH_DELETE(hh_key, m->by_key, v);
        free(v);
    }
    pthread_mutex_unlock(&m->ctl_mu);
}

/* ---- pending creations ---- */

uint64_t mount_pending_id(mount_t *m)
{
    uint64_t id = __atomic_fetch_add(&m->next_pid, 1, __ATOMIC_RELAXED);
    return id < m->pid_end ? id : 0;
}

int mount_pending_add(mount_t *m, uint64_t id, uint8_t ns, const char *path)
{
    size_t n = strlen(path);
    pending_t *p = malloc(sizeof(*p) + n + 1);
    if (!p)
        return -ENOMEM;
    p->id = id;
    p->ns = ns;
    memcpy(p->path, path, n + 1);
    pthread_mutex_lock(&m->pending_mu);
    HASH_ADD(hh, m->pending, id, sizeof(p->id), p);
    pthread_mutex_unlock(&m->pending_mu);
    return 0;
}

void mount_pending_del(mount_t *m, uint64_t id)
{
    pending_t *p;
    pthread_mutex_lock(&m->pending_mu);
    HASH_FIND(hh, m->pending, &id, sizeof(id), p);
    if (p)
        HASH_DELETE(hh, m->pending, p);
    pthread_mutex_unlock(&m->pending_mu);
    free(p);
}

int mount_pending_find(mount_t *m, uint64_t id, uint8_t *ns, char *path, size_t size)
{
    pending_t *p;
    pthread_mutex_lock(&m->pending_mu);
    HASH_FIND(hh, m->pending, &id, sizeof(id), p);
    if (p) {
        *ns = p->ns;
        if (path)
            snprintf(path, size, "%s", p->path);
    }
    pthread_mutex_unlock(&m->pending_mu);
    return p ? 0 : -ENOENT;
}

uint64_t mount_pending_by_path(mount_t *m, uint8_t ns, const char *path)
{
    pending_t *p, *tmp;
    uint64_t id = 0;
    pthread_mutex_lock(&m->pending_mu);
    HASH_ITER(hh, m->pending, p, tmp) {
        if (p->ns == ns && strcmp(p->path, path) == 0) {
            id = p->id;
            break;
        }
    }
    pthread_mutex_unlock(&m->pending_mu);
    return id;
}

/* ---- routing ---- */

static int is_status_ino(uint64_t ino)
{
    return ino >= INO_STATUS0 && ino < INO_STATUS0 + STATUS__COUNT;
}

/* Who serves an inode. */
enum owner {
    OWN_MOUNT = 0,   /* the root, `.cluster/` and its files */
    OWN_NS,          /* a namespace's: its root, a module inode, an object, a pending id */
    OWN_GONE,        /* an object or control entry that no longer exists, still open */
};

/* The owner of ino, and with OWN_NS its namespace. Objects that are gone (removed while a
 * file is still open on them, or a forgotten entry) belong to the tree front, the only one
 * whose inodes are object ids and control entries: it answers ENOENT or serves the open. */
static int owner(mount_t *m, uint64_t ino, int *ns)
{
    *ns = 0;
    if (ino & NS_INO_BIT) {
        *ns = NS_INO_NS(ino);
        return OWN_NS;
    }
    if (ino & CTL_BIT) {
        mount_ctl_t c;
        if (mount_ctl_find(m, ino, &c) < 0)
            return OWN_GONE;
        *ns = c.ns;
        return OWN_NS;
    }
    if (ino >= NS_ROOT_ID(1) && ino < NS_ROOT_ID(NS__COUNT)) {
        *ns = (int)(ino - NS_ROOT_ID(0));
        return OWN_NS;
    }
    if (ino < STATE_FIRST_ID)
        return OWN_MOUNT;
    int k = node_shard_of_id(m->node, ino);
    if (k >= 0) {
        state_t *st = node_state(m->node, (uint32_t)k);
        pthread_rwlock_rdlock(&st->lock);
        obj_t *o = tree_by_id(st, ino);
        *ns = o ? o->ns : 0;
        pthread_rwlock_unlock(&st->lock);
    } else {
        *ns = 0;
    }
    uint8_t pns;
    if (!*ns && mount_pending_find(m, ino, &pns, NULL, 0) == 0)
        *ns = pns;
    return *ns ? OWN_NS : OWN_GONE;
}

/* The FUSE operations that serve ino: its namespace front's, or the generic tree's (a
 * namespace without a front of its own, or an object that is gone); NULL for the mount's
 * own inodes. */
static const struct fuse_lowlevel_ops *ops_of(mount_t *m, uint64_t ino)
{
    int ns, own = owner(m, ino, &ns);
    if (own == OWN_MOUNT)
        return NULL;
    const ns_front_t *f = own == OWN_NS ? ns_fronts[ns] : NULL;
    return f && f->fuse ? f->fuse : &tree_fuse_ops;
}

/* If ino belongs to a namespace, hands the request to its front's op (or EOPNOTSUPP when it
 * has none) and returns from the calling callback. */
#define ROUTE(ino, op, ...)                                                      \
    do {                                                                         \
        const struct fuse_lowlevel_ops *m_ = ops_of(mount_of(req), ino);         \
        if (m_) {                                                                \
            if (m_->op)                                                          \
                m_->op(__VA_ARGS__);                                             \
            else                                                                 \
                fuse_reply_err(req, EOPNOTSUPP);                                 \
            return;                                                              \
        }                                                                        \
    } while (0)

/* Whether ino is one of the mount's own (root, `.cluster/`): no read barrier for those. */
static int mount_own(uint64_t ino)
{
    return !(ino & (NS_INO_BIT | CTL_BIT)) &&
           !(ino >= NS_ROOT_ID(1) && ino < NS_ROOT_ID(NS__COUNT)) && ino < STATE_FIRST_ID;
}

uint32_t mount_shard_of(mount_t *m, uint64_t ino, const char *name)
{
    node_t *n = m->node;
    if (node_nshards(n) == 1)
        return 0;
    if (ino >= NS_ROOT_ID(1) && ino < NS_ROOT_ID(NS__COUNT))
        return name ? node_shard_of(n, (int)(ino - NS_ROOT_ID(0)), name) : 0;
    if (ino & CTL_BIT) {
        mount_ctl_t c;
        return mount_ctl_find(m, ino, &c) < 0 ? 0 : mount_shard_of(m, c.obj, NULL);
    }
    if (ino & NS_INO_BIT)
        return NS_INO_SHARD(ino);
    int k = node_shard_of_id(n, ino);
    if (k >= 0)
        return (uint32_t)k;
    char path[4096];
    uint8_t ns;
    if (mount_pending_find(m, ino, &ns, path, sizeof(path)) == 0)
        return node_shard_of(n, ns, path);
    k = node_shard_of_replaced(n, ino);   /* the open or stat of a file replaced just now */
    return k < 0 ? 0 : (uint32_t)k;
}

/* The read barrier before an operation on ino (for a lookup: its child name; NULL
 * otherwise) reads the state: on the shard that holds what it reads. A namespace root
 * without a name (its listing, attributes, root-wide control files) reads every shard. An
 * inode no shard holds (gone, or a creation not committed yet) needs none: what the kernel
 * knows was applied here. open: the operation is an open (for the barrier_free hook).
 * Returns 0 or -EIO. */
static int mount_barrier(mount_t *m, uint64_t ino, const char *name, int open)
{
    node_t *n = m->node;
    if (ino >= NS_ROOT_ID(1) && ino < NS_ROOT_ID(NS__COUNT))
        return name ? node_read_barrier(n, node_shard_of(n, (int)(ino - NS_ROOT_ID(0)), name))
                    : node_read_barrier_all(n);
    if (ino & CTL_BIT) {
        mount_ctl_t c;
        return mount_ctl_find(m, ino, &c) < 0 ? 0 : mount_barrier(m, c.obj, NULL, 0);
    }
    if (ino & NS_INO_BIT) {
        int ns = NS_INO_NS(ino);
        const ns_front_t *f = ns > 0 && ns < NS__COUNT ? ns_fronts[ns] : NULL;
        if (f && f->barrier_free && f->barrier_free(ino, name, open))
            return 0;
        return node_read_barrier(n, NS_INO_SHARD(ino));
    }
    int k = node_nshards(n) > 1 ? node_shard_of_id(n, ino) : 0;
    return k < 0 ? 0 : node_read_barrier(n, (uint32_t)k);
}

/* ROUTE for an operation that reads the shard's state: on a cluster node the read barrier
 * comes first (EIO when it fails: no leader or no quorum within the timeout), unless the
 * namespace's barrier_free hook says the operation reads nothing it would refresh. name: the
 * child name of a lookup, else NULL; is_open: 1 for open, else 0. */
#define ROUTE_READ_AS(is_open, ino, name, op, ...)                               \
    do {                                                                         \
        if (!mount_own(ino)) {                                                   \
            int b_ = mount_barrier(mount_of(req), ino, name, is_open);           \
            if (b_ < 0) {                                                        \
                fuse_reply_err(req, -b_);                                        \
                return;                                                          \
            }                                                                    \
        }                                                                        \
        ROUTE(ino, op, __VA_ARGS__);                                             \
    } while (0)
#define ROUTE_READ(ino, name, op, ...) ROUTE_READ_AS(0, ino, name, op, __VA_ARGS__)

/* ---- the mount's own inodes: the root, `.cluster/` and its files ---- */

static int status_size(mount_t *m, int which, off_t *size)
{
    char *b;
    size_t l;
    int rc = status_render(m->node, which, &b, &l);
    if (rc < 0)
        return rc;
    free(b);
    *size = (off_t)l;
    return 0;
}

/* The root and `.cluster/` never change while mounted: they show the node's start time.
 * The root's links: itself, its entry, and each subdirectory's "..". */
static void root_stat(mount_t *m, uint64_t ino, struct stat *s)
{
    if (ino == INO_ROOT) {
        mount_stat(s, ino, S_IFDIR | 0755, 0, node_start_ms(m->node));
        s->st_nlink = 2 + (NS__COUNT - 1) + 1;   /* the namespaces and .cluster */
    } else {
        mount_stat(s, ino, S_IFDIR | 0555, 0, node_start_ms(m->node));
    }
}

/* The owner and permission bits a namespace root shows at lookup: its tree object's, kept
 * alike by every shard (a root setattr is proposed to each: fs/tree_fuse.c t_setattr), so
 * shard 0's copy; 0755 root:root while it has none. (How long the kernel keeps them:
 * do_lookup.) */
static void ns_root_owner(mount_t *m, int ns, struct stat *s)
{
    state_t *st = node_state(m->node, 0);
    pthread_rwlock_rdlock(&st->lock);
    const obj_t *r = tree_root(st, ns);
    if (r) {
        s->st_mode = S_IFDIR | r->mode;
        s->st_uid = r->uid;
        s->st_gid = r->gid;
    }
    pthread_rwlock_unlock(&st->lock);
}

/* The time a namespace root shows at lookup: its tree object's last change, or the node's
 * start time while it has none (its front's getattr answers after that). */
static uint64_t ns_root_ms(mount_t *m, int ns)
{
    uint64_t t = 0;
    for (uint32_t k = 0; k < node_nshards(m->node); k++) {   /* the root spans them all */
        state_t *st = node_state(m->node, k);
        pthread_rwlock_rdlock(&st->lock);
        const obj_t *r = tree_root(st, ns);
        if (r && r->mtime_ms > t)
            t = r->mtime_ms;
        pthread_rwlock_unlock(&st->lock);
    }
    return t ? t : node_start_ms(m->node);
}

static int do_getattr(mount_t *m, uint64_t ino, struct stat *s)
{
    if (ino == INO_ROOT || ino == INO_CLUSTER) {
        root_stat(m, ino, s);
        return 0;
    }
    if (!is_status_ino(ino))
        return -ENOENT;
    off_t size;
    int rc = status_size(m, (int)(ino - INO_STATUS0), &size);
    if (rc == 0)
        mount_stat(s, ino, S_IFREG | 0444, size, node_now_ms());
    return rc;
}

static int do_lookup(mount_t *m, uint64_t parent, const char *name, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    if (parent == INO_ROOT) {
        e->entry_timeout = e->attr_timeout = STATIC_TIMEOUT;
        if (strcmp(name, ".cluster") == 0) {
            e->ino = INO_CLUSTER;
            root_stat(m, INO_CLUSTER, &e->attr);
            return 0;
        }
        for (int ns = 1; ns < NS__COUNT; ns++) {
            if (strcmp(name, ns_names[ns]) == 0) {
                /* the name is for good, its attributes not always: a chmod, chgrp or new
                 * entry made through another node must show at the next stat (FILE-API §1
                 * Consistency), so on a cluster the kernel asks each time (a getattr takes
                 * the read barrier of every shard: mount_barrier); without -o
                 * default_permissions a path walk through the root does not ask for them.
                 * See root_attrs_cached. */
                if (!m->root_attrs_cached)
                    e->attr_timeout = 0;
                e->ino = NS_ROOT_ID(ns);
                mount_stat(&e->attr, e->ino, S_IFDIR | 0755, 0, ns_root_ms(m, ns));
                ns_root_owner(m, ns, &e->attr);
                return 0;
            }
        }
        return -ENOENT;
    }
    if (parent == INO_CLUSTER) {
        for (int i = 0; i < STATUS__COUNT; i++) {
            if (strcmp(name, status_names[i]) == 0) {
                e->ino = INO_STATUS0 + (uint64_t)i;
                return do_getattr(m, e->ino, &e->attr);
            }
        }
        return -ENOENT;
    }
    return -ENOTDIR;
}

static void q_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    ROUTE_READ(parent, name, lookup, req, parent, name);
    uint64_t t0 = metrics_now_ns();
    struct fuse_entry_param e;
    int rc = do_lookup(mount_of(req), parent, name, &e);
    metrics_op(node_metrics(mount_of(req)->node), MOP_lookup, t0, rc == -ENOENT ? 0 : -rc);
    front_reply_entry(req, rc, &e);
}

static void forget_one(mount_t *m, uint64_t ino, uint64_t n)
{
    if (ino & CTL_BIT) {
        mount_ctl_forget(m, ino, n);
        return;
    }
    int ns;
    const ns_front_t *f = owner(m, ino, &ns) == OWN_NS ? ns_fronts[ns] : NULL;
    if (f && f->forget)
        f->forget(node_front(m->node, ns), ino, n);
}

static void q_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    forget_one(mount_of(req), ino, nlookup);
    fuse_reply_none(req);
}

static void q_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
    for (size_t i = 0; i < count; i++)
        forget_one(mount_of(req), f[i].ino, f[i].nlookup);
    fuse_reply_none(req);
}

static void q_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE_READ(ino, NULL, getattr, req, ino, fi);
    uint64_t t0 = metrics_now_ns();
    struct stat s;
    int rc = do_getattr(mount_of(req), ino, &s);
    metrics_op(node_metrics(mount_of(req)->node), MOP_getattr, t0, -rc);
    front_reply_attr(req, rc, &s);
}

/* Ownership and permission bits are fixed, and nothing of the mount's own can change. */
static void q_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    ROUTE(ino, setattr, req, ino, attr, to_set, fi);
    fuse_reply_err(req, EPERM);
}

/* Creating or removing something in the root or `.cluster/`: EPERM; below a file: ENOTDIR. */
static int below_mount_inode(uint64_t parent)
{
    return parent == INO_ROOT || parent == INO_CLUSTER ? -EPERM : -ENOTDIR;
}

static void q_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    ROUTE(parent, mkdir, req, parent, name, mode);
    fuse_reply_err(req, -below_mount_inode(parent));
}

static void q_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    ROUTE(parent, unlink, req, parent, name);
    fuse_reply_err(req, -below_mount_inode(parent));
}

static void q_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    ROUTE(parent, rmdir, req, parent, name);
    fuse_reply_err(req, -below_mount_inode(parent));
}

static void q_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     struct fuse_file_info *fi)
{
    ROUTE(parent, create, req, parent, name, mode, fi);
    fuse_reply_err(req, -below_mount_inode(parent));
}

/* Whether namespace ns is built (has a front, or files on the tree). */
static int built(int ns) { return ns_fronts[ns] || tree_hooks(ns); }

/* A rename within one namespace is its front's. Otherwise: from or to the mount's own
 * directories EPERM, from or to a directory that is gone ENOENT, from or to a namespace not
 * built yet EOPNOTSUPP, else EXDEV. */
static void q_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                     const char *newname, unsigned int flags)
{
    mount_t *m = mount_of(req);
    int ns1, ns2, own1 = owner(m, parent, &ns1), own2 = owner(m, newparent, &ns2);
    int rc = EXDEV;
    if (own1 == OWN_MOUNT || own2 == OWN_MOUNT)
        rc = EPERM;
    else if (own1 == OWN_GONE || own2 == OWN_GONE)
        rc = ENOENT;
    else if (ns1 == ns2)
        ROUTE(parent, rename, req, parent, name, newparent, newname, flags);
    else if (!built(ns1) || !built(ns2))
        rc = EOPNOTSUPP;
    fuse_reply_err(req, rc);
}

/* An open `.cluster/` file: its text, rendered at open. */
typedef struct text {
    char *buf;
    size_t len;
} text_t;

static void q_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE_READ_AS(1, ino, NULL, open, req, ino, fi);
    uint64_t t0 = metrics_now_ns();
    text_t *t = NULL;
    int rc = -EISDIR;
    if (is_status_ino(ino)) {
        rc = (fi->flags & O_ACCMODE) != O_RDONLY ? -EPERM : (t = calloc(1, sizeof(*t))) ? 0
                                                                                     : -ENOMEM;
        if (rc == 0 && (rc = status_render(mount_of(req)->node, (int)(ino - INO_STATUS0),
                                           &t->buf, &t->len)) < 0) {
            free(t);
            t = NULL;
        }
    }
    metrics_op(node_metrics(mount_of(req)->node), MOP_open, t0, -rc);
    if (mount_reply_open(req, rc, t, fi, NULL) && t) {
        free(t->buf);
        free(t);
    }
}

/* The text never changes while the file is open, and release cannot run before the reply
 * to a read is written. The bytes go out from a copy all the same: AddressSanitizer checks
 * a writev's buffers after the call returns, when the reader may have closed the file and
 * its release freed the text, and reported that as a use after free (cluster scripts under
 * ASAN stopped there). */
static void q_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    ROUTE(ino, read, req, ino, size, off, fi);
    uint64_t t0 = metrics_now_ns();
    metrics_t *mt = node_metrics(mount_of(req)->node);   /* req is gone once answered */
    const text_t *t = (const text_t *)(uintptr_t)fi->fh;
    size_t n = off < 0 || (size_t)off >= t->len ? 0 : t->len - (size_t)off;
    if (n > size)
        n = size;
    char *copy = n ? malloc(n) : NULL;
    if (n && !copy) {
        fuse_reply_err(req, ENOMEM);
    } else {
        if (n)
            memcpy(copy, t->buf + off, n);
        fuse_reply_buf(req, copy, n);
        free(copy);
    }
    metrics_op(mt, MOP_read, t0, 0);
}

static void q_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    ROUTE(ino, write, req, ino, buf, size, off, fi);
    fuse_reply_err(req, EBADF);
}

static void q_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, flush, req, ino, fi);
    fuse_reply_err(req, 0);
}

static void q_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    ROUTE(ino, fsync, req, ino, datasync, fi);
    fuse_reply_err(req, 0);
}

static void q_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, release, req, ino, fi);
    text_t *t = (text_t *)(uintptr_t)fi->fh;
    if (t)
        free(t->buf);
    free(t);
    fuse_reply_err(req, 0);
}

static int do_opendir(uint64_t ino, dirlist_t *d)
{
    if (ino != INO_ROOT && ino != INO_CLUSTER)
        return -ENOTDIR;
    int rc = dirlist_add(d, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", INO_ROOT, S_IFDIR);
    if (ino == INO_ROOT) {
        for (int ns = 1; ns < NS__COUNT && rc == 0; ns++)
            rc = dirlist_add(d, ns_names[ns], NS_ROOT_ID(ns), S_IFDIR);
        if (rc == 0)
            rc = dirlist_add(d, ".cluster", INO_CLUSTER, S_IFDIR);
    } else {
        for (int i = 0; i < STATUS__COUNT && rc == 0; i++)
            rc = dirlist_add(d, status_names[i], INO_STATUS0 + (uint64_t)i, S_IFREG);
    }
    if (rc == 0)
        dirlist_sort(d, 2);
    return rc;
}

static void q_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE_READ(ino, NULL, opendir, req, ino, fi);
    dirlist_t *d = calloc(1, sizeof(*d));
    int rc = d ? do_opendir(ino, d) : -ENOMEM;
    if (rc == 0) {
        fi->fh = (uintptr_t)d;
        if (fuse_reply_open(req, fi) == 0)
            return;
    } else {
        fuse_reply_err(req, -rc);
    }
    if (d)
        dirlist_clear(d);
    free(d);
}

static void q_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    ROUTE(ino, readdir, req, ino, size, off, fi);
    uint64_t t0 = metrics_now_ns();
    metrics_t *mt = node_metrics(mount_of(req)->node);   /* req is gone once answered */
    dirlist_reply(req, (dirlist_t *)(uintptr_t)fi->fh, size, off);
    metrics_op(mt, MOP_readdir, t0, 0);
}

static void q_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, releasedir, req, ino, fi);
    dirlist_t *d = (dirlist_t *)(uintptr_t)fi->fh;
    dirlist_clear(d);
    free(d);
    fuse_reply_err(req, 0);
}

static void q_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                       size_t size, int flags)
{
    ROUTE(ino, setxattr, req, ino, name, value, size, flags);
    fuse_reply_err(req, ENOTSUP);
}

static void q_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    ROUTE(ino, removexattr, req, ino, name);
    fuse_reply_err(req, ENOTSUP);
}

/* Only `user.` attributes hold replicated data (every front answers others ENODATA or
 * ENOTSUP from the inode alone), so only they take the read barrier. The kernel asks for
 * security.capability at every O_TRUNC open of an existing file (to drop privileges): on a
 * cluster node that was a read barrier, one more round trip to the leader, per cache set. */
static void q_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    if (strncmp(name, "user.", 5) == 0)
        ROUTE_READ(ino, NULL, getxattr, req, ino, name, size);
    else
        ROUTE(ino, getxattr, req, ino, name, size);
    fuse_reply_err(req, ENODATA);
}

static void q_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    ROUTE_READ(ino, NULL, listxattr, req, ino, size);
    front_reply_xattr(req, "", 0, size);
}

/* Locks are served by the front that owns the inode (locks/); elsewhere they are not
 * supported (EOPNOTSUPP). */
static void q_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock)
{
    ROUTE(ino, getlk, req, ino, fi, lock);
    fuse_reply_err(req, EOPNOTSUPP);
}

static void q_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock,
                    int sleep)
{
    ROUTE(ino, setlk, req, ino, fi, lock, sleep);
    fuse_reply_err(req, EOPNOTSUPP);
}

static void q_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
    ROUTE(ino, flock, req, ino, fi, op);
    fuse_reply_err(req, EOPNOTSUPP);
}

/* poll(2), select(2), epoll(7): a front that can block (queues/ pop and claim, config/
 * .events) answers with what a read would do now and notifies ph later. Every other file
 * is always ready, as a regular file is; ENOSYS is never answered, so the kernel keeps
 * asking. */
static void q_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                   struct fuse_pollhandle *ph)
{
    const struct fuse_lowlevel_ops *o = ops_of(mount_of(req), ino);
    if (o && o->poll) {
        o->poll(req, ino, fi, ph);
        return;
    }
    fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
}

/* df: the data disk's size and free blocks, and as available what writes may still add
 * before ENOSPC (node_space: the reserve and the room held back for the next snapshot are
 * not available; docs/OPERATIONS.md "df"). df -i: the objects in use (namespace roots
 * included), and as free an estimate of how many more fit in the available space (at
 * STATFS_OBJ_BYTES each, at most STATFS_FFREE_MAX): 0 on a full disk, where creating gives
 * ENOSPC. f_files = used + free, so IUsed is the object count. */
#define STATFS_BSIZE 4096
#define STATFS_OBJ_BYTES 256
#define STATFS_FFREE_MAX (1ull << 31)
static void q_statfs(fuse_req_t req, fuse_ino_t ino)
{
    mount_t *m = mount_of(req);
    uint64_t t0 = metrics_now_ns();
    struct statvfs sv;
    node_space_t sp;
    node_space(m->node, &sp);
    memset(&sv, 0, sizeof(sv));
    sv.f_bsize = sv.f_frsize = STATFS_BSIZE;
    sv.f_blocks = sp.disk_bytes / STATFS_BSIZE;
    sv.f_bfree = sp.free_bytes / STATFS_BSIZE;
    sv.f_bavail = sp.avail_bytes / STATFS_BSIZE;
    uint64_t used = 0;
    for (uint32_t k = 0; k < node_nshards(m->node); k++) {
        state_t *st = node_state(m->node, k);
        pthread_rwlock_rdlock(&st->lock);
        used += st->tree.nobjs;
        pthread_rwlock_unlock(&st->lock);
    }
    uint64_t ffree = sp.known ? sp.avail_bytes / STATFS_OBJ_BYTES : STATFS_FFREE_MAX;
    sv.f_ffree = sv.f_favail = ffree < STATFS_FFREE_MAX ? ffree : STATFS_FFREE_MAX;
    sv.f_files = used + sv.f_ffree;
    sv.f_namemax = NAME_MAX_BYTES;
    metrics_op(node_metrics(mount_of(req)->node), MOP_statfs, t0, 0);
    fuse_reply_statfs(req, &sv);
}

static void q_init(void *userdata, struct fuse_conn_info *conn)
{
    /* O_TRUNC arrives with open(), so truncation can take effect with the first write. */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    /* Not libfuse's default FUSE_CAP_AUTO_INVAL_DATA: with it the kernel refreshes the
     * attributes before every read() of a file read through the page cache (attribute
     * timeout 0: one GETATTR round trip per read) and drops its pages when the mtime moves.
     * Only logs/ reads through the page cache, and a log's bytes never change once
     * appended: a read past the cached size still refreshes it and a new size drops the
     * pages, and fs/logs_pcache.c has retention and removal invalidated. (Value files are
     * direct_io; a shared mmap's pages come from its own open, dropped at the next open.) */
    conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
    conn->max_write = MAX_WRITE;
    /* Forward flock(2) and fcntl locks when a front serves them (locks/). */
    for (int ns = 1; ns < NS__COUNT; ns++) {
        const struct fuse_lowlevel_ops *o = ns_fronts[ns] && ns_fronts[ns]->fuse
                                                ? ns_fronts[ns]->fuse : &tree_fuse_ops;
        if (o->flock && (conn->capable & FUSE_CAP_FLOCK_LOCKS))
            conn->want |= FUSE_CAP_FLOCK_LOCKS;
        if (o->setlk && (conn->capable & FUSE_CAP_POSIX_LOCKS))
            conn->want |= FUSE_CAP_POSIX_LOCKS;
    }
}

/* Hard links, FIFOs, device nodes and sockets have no place in a replicated store: EPERM
 * (FILE-API §1), as on a filesystem that does not allow them. A regular file made by mknod
 * (tar --xattrs -x does so) goes to the namespaces that take it (cache/, config/). */
static void q_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                    dev_t rdev)
{
    /* the tree namespaces check the name first (a reserved one: EINVAL), then EPERM */
    const struct fuse_lowlevel_ops *m = ops_of(mount_of(req), parent);
    if (m && m->mknod)
        m->mknod(req, parent, name, mode, rdev);
    else
        fuse_reply_err(req, EPERM);
}

static void q_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    fuse_reply_err(req, EPERM);
}

/* Symbolic links live in the namespaces that have them (cache/, config/); elsewhere EPERM,
 * the errno FILE-API §1 gives a type of node a place does not keep (never ENOSYS, which
 * would switch them off for the whole mount). */
static void q_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    const struct fuse_lowlevel_ops *m = ops_of(mount_of(req), parent);
    if (m && m->symlink)
        m->symlink(req, link, parent, name);
    else if (m)
        fuse_reply_err(req, EPERM);
    else
        fuse_reply_err(req, -below_mount_inode(parent));
}

static void q_readlink(fuse_req_t req, fuse_ino_t ino)
{
    ROUTE_READ(ino, NULL, readlink, req, ino);
    fuse_reply_err(req, EINVAL);   /* the mount's own inodes are no links */
}

static const struct fuse_lowlevel_ops ops = {
    .mknod = q_mknod,
    .link = q_link,
    .symlink = q_symlink,
    .readlink = q_readlink,
    .init = q_init,
    .lookup = q_lookup,
    .forget = q_forget,
    .forget_multi = q_forget_multi,
    .getattr = q_getattr,
    .setattr = q_setattr,
    .mkdir = q_mkdir,
    .unlink = q_unlink,
    .rmdir = q_rmdir,
    .rename = q_rename,
    .open = q_open,
    .read = q_read,
    .write = q_write,
    .flush = q_flush,
    .release = q_release,
    .fsync = q_fsync,
    .opendir = q_opendir,
    .readdir = q_readdir,
    .releasedir = q_releasedir,
    .statfs = q_statfs,
    .setxattr = q_setxattr,
    .getxattr = q_getxattr,
    .listxattr = q_listxattr,
    .removexattr = q_removexattr,
    .create = q_create,
    .getlk = q_getlk,
    .setlk = q_setlk,
    .flock = q_flock,
    .poll = q_poll,
};

/* ---- mount ids and open descriptors ---- */

/* The id of the newest mount at mountpoint (ours, just made), or 0; *perms: whether its
 * super options have default_permissions (the kernel checks modes at every path walk). */
static long long find_mnt_id(const char *mountpoint, int *perms)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[8192], mp[4096];
    long long id, found = 0;
    *perms = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%lld %*s %*s %*s %4095s", &id, mp) != 2)
            continue;
        const char *sep = strstr(line, " - ");   /* then: type, source, super options */
        int dp = sep && strstr(sep, "default_permissions") != NULL;
        /* mountinfo escapes space, tab, newline and backslash as \ooo */
        char *w = mp;
        for (const char *r = mp; *r; r++) {
            if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                r[3] >= '0' && r[3] <= '7') {
                *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
                r += 3;
            } else {
                *w++ = *r;
            }
        }
        *w = 0;
        if (strcmp(mp, mountpoint) == 0) {
            found = id;   /* later lines are mounted on top of earlier ones */
            *perms = dp;
        }
    }
    fclose(f);
    return found;
}

/* Descriptor name of a process, from its fdinfo (dfd: its /proc/<pid>/fdinfo directory):
 * open flags, mount id and inode. Returns 0; 1 when it is closed (or the process gone); -1
 * when it cannot tell (another error, or a kernel whose fdinfo lacks them: mnt_id since
 * 3.15, ino since 5.14; then saves publish at the last close of their description,
 * docs/FILE-INTERFACE.md "Saves"). */
static int fd_info(int dfd, const char *name, long *flags, long long *mnt_id, uint64_t *ino)
{
    char text[512];
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? 1 : -1;   /* EMFILE...: cannot tell */
    ssize_t len = read(fd, text, sizeof(text) - 1);
    int e = errno;
    close(fd);
    if (len <= 0)
        return len == 0 || e == ENOENT || e == ESRCH ? 1 : -1;
    text[len] = 0;
    const char *f = strstr(text, "\nflags:"), *m = strstr(text, "\nmnt_id:");
    const char *i = strstr(text, "\nino:");
    if (!f || !m || !i)
        return -1;
    *flags = strtol(f + 7, NULL, 8);
    *mnt_id = strtoll(m + 8, NULL, 10);
    *ino = strtoull(i + 5, NULL, 10);
    return 0;
}

/* How many descriptors process pid holds on inode ino of mount mnt_id; -1 when it cannot
 * tell. flags < 0: any descriptor; otherwise only those whose access mode and O_APPEND are
 * flags'.
 * Called at every publishing flush, so it is kept cheap: /proc/<pid>/fdinfo is listed and
 * each entry opened relative to it (the listing leaves the entries in the dentry cache),
 * about 20% less than listing /proc/<pid>/fd and opening each fdinfo by its full path.
 * Never are the /proc/<pid>/fd/<n> links followed: following one waits for an execve of
 * pid to end, and a close-on-exec descriptor of ours is flushed inside that execve, which
 * waits for this very flush (a deadlock: `exec >file; /bin/true` in bash hung for good). */
static int open_count(long long mnt_id, pid_t pid, uint64_t ino, int flags)
{
    char path[64];
    if (!mnt_id || pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    const long mask = O_ACCMODE | O_APPEND;
    int n = 0;
    char buf[4096] __attribute__((aligned(8)));
    long got;
    while (n >= 0 && (got = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < got;) {
            const struct dirent64 *e = (const struct dirent64 *)(buf + off);
            off += e->d_reclen;
            long fl;
            long long mid;
            uint64_t fino;
            if (e->d_name[0] == '.')
                continue;
            int r = fd_info(dfd, e->d_name, &fl, &mid, &fino);
            if (r > 0)
                continue;              /* closed meanwhile */
            if (r < 0) {
                n = -1;                /* a kernel whose fdinfo lacks them: cannot tell */
                break;
            }
            if (mid == mnt_id && fino == ino && (flags < 0 || (fl & mask) == (flags & mask)))
                n++;
        }
    }
    if (got < 0)
        n = -1;
    close(dfd);
    return n;
}

int mount_open_count(const mount_t *m, pid_t pid, uint64_t ino, int flags)
{
    return open_count(m->mnt_id, pid, ino, flags);
}

/* Transitional, for fs/queues_fuse.c until it calls mount_open_count: whether pid holds a
 * descriptor on ino (or cannot tell) on the mount this process made last (the one
 * process-wide value left on the FUSE side). */
static long long last_mnt_id;

int mount_still_open_by(pid_t pid, uint64_t ino)
{
    return open_count(__atomic_load_n(&last_mnt_id, __ATOMIC_RELAXED), pid, ino, -1) != 0;
}

/* ---- SIGHUP: reload, not stop. fuse_set_signal_handlers makes SIGHUP, SIGINT and SIGTERM
 * end the session; SIGHUP is then taken over: on a cluster node it asks the transport to
 * read its TLS files again (transport_request_tls_reload: the node loop does it and logs the
 * outcome), on the embedded node it only logs that there is nothing to reload. The handler
 * only does async-signal-safe things (an atomic increment, write(2) to stderr, which is the
 * log in the foreground and the syslog pump in the background). ---- */

static volatile sig_atomic_t hup_cluster;

static void on_sighup(int sig)
{
    (void)sig;
    int e = errno;
    static const char cl[] = "quorumfs: info: SIGHUP: reloading the TLS certificates "
                             "(the transport logs the outcome)\n";
    static const char em[] = "quorumfs: info: SIGHUP: an embedded node has no certificates "
                             "to reload; ignored (SIGTERM or SIGINT unmounts)\n";
    if (hup_cluster)
        transport_request_tls_reload();
    ssize_t w = hup_cluster ? write(2, cl, sizeof cl - 1) : write(2, em, sizeof em - 1);
    (void)w;
    errno = e;
}

/* Installs on_sighup, keeping the disposition it replaces in *old. 0 or -1. */
static int sighup_install(node_t *node, struct sigaction *old)
{
    hup_cluster = node_cluster_id(node) != 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sighup;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return sigaction(SIGHUP, &sa, old);
}

/* Every request was answered and every file released: nothing refers to m any more. */
static void mount_free(mount_t *m)
{
    ctl_ent_t *v, *vt;
    HASH_ITER(hh_ino, m->by_ino, v, vt) {
        HASH_DELETE(hh_ino, m->by_ino, v);
        HASH_DELETE(hh_key, m->by_key, v);
        free(v);
    }
    pending_t *p, *pt;
    HASH_ITER(hh, m->pending, p, pt) {
        HASH_DELETE(hh, m->pending, p);
        free(p);
    }
    pthread_mutex_destroy(&m->ctl_mu);
    pthread_mutex_destroy(&m->pending_mu);
    free(m);
}

int mount_serve(node_t *node, const char *mountpoint, struct fuse_args *args,
                void (*ready)(void *arg), void *ready_arg)
{
    mount_t *m = calloc(1, sizeof(*m));
    if (!m)
        return -1;
    m->node = node;
    pthread_mutex_init(&m->ctl_mu, NULL);
    pthread_mutex_init(&m->pending_mu, NULL);
    node_pid_range(node, &m->next_pid, &m->pid_end);
    int ret = -1;
    /* The mount is the requests' userdata: handlers reach the node and the fronts' contexts
     * through it. */
    struct fuse_session *se = fuse_session_new(args, &ops, sizeof(ops), m);
    if (!se)
        goto out;
    m->se = se;
    if (fuse_set_signal_handlers(se) != 0)
        goto out_destroy;
    struct sigaction old_hup;
    if (sighup_install(node, &old_hup) != 0) {
        fprintf(stderr, "quorumfs: cannot install the SIGHUP handler: %s\n", strerror(errno));
        fuse_remove_signal_handlers(se);
        goto out_destroy;
    }
    if (fuse_session_mount(se, mountpoint) != 0) {
        fprintf(stderr, "quorumfs: cannot mount at %s\n", mountpoint);
        goto out_signals;
    }
    int perms;
    m->mnt_id = find_mnt_id(mountpoint, &perms);
    /* A namespace root's attributes change through other nodes only on a cluster. There the
     * kernel asks for them each time (FILE-API §1 Consistency), except with
     * default_permissions, where it would ask at every path walk through the root and each
     * answer takes a read barrier on every shard (and fails while any shard has no quorum):
     * such a mount keeps them an hour (tests/integration/KNOWN.md). */
    m->root_attrs_cached = !node_cluster_id(node) || perms;
    __atomic_store_n(&last_mnt_id, m->mnt_id, __ATOMIC_RELAXED);
    int io = fuse_io_install(se);   /* for shared read-only mmap (fs/fuse_io.c) */
    if (io < 0)
        fprintf(stderr, "quorumfs: own /dev/fuse I/O not installed (%s): mmap of files "
                "with MAP_SHARED will give ENODEV\n", strerror(-io));
    if (ready)
        ready(ready_arg);
    /* the node may have asked to stop before the signal handlers were in place (a joining
     * node started with the wrong layout): then the loop is not entered */
    struct fuse_loop_config *cfg = node_serve_begin(node) ? NULL : fuse_loop_cfg_create();
    if (node_stop_requested(node))
        ret = 0;
    if (cfg) {
        /* Proposals block a worker until their commit: enough workers let concurrent
         * writers share one fsync (group commit). Blocking reads do not hold workers.
         * Idle workers are kept up to the maximum: with fewer kept (16 before), 64 writers
         * made libfuse end and start threads all the time (clone3, stack munmap: 4.5% of
         * the workers' CPU in a 3-node profile). A parked worker costs its stack's
         * touched pages only. */
        fuse_loop_cfg_set_max_threads(cfg, 64);
        fuse_loop_cfg_set_idle_threads(cfg, 64);
        /* A signal ends the loop with the signal number: that is a clean unmount too. */
        ret = fuse_session_loop_mt(se, cfg) >= 0 ? 0 : -1;
        fuse_loop_cfg_destroy(cfg);
    }
    /* Ending the session answers parked lock waits and the sweeper may hand out queue
     * messages: both must reach a live FUSE session (node_quiesce's contract). */
    node_quiesce(node);
    fuse_session_unmount(se);
out_signals:
    sigaction(SIGHUP, &old_hup, NULL);
    fuse_remove_signal_handlers(se);
out_destroy:
    fuse_session_destroy(se);
out:
    mount_free(m);
    return ret;
}
