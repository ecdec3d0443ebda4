/* fs/mount.c — the FUSE low-level glue. Inodes: 1 is the mount root, NS_ROOT_ID(ns) the
 * namespace roots, INO_CLUSTER.. the `.cluster/` files, ids >= STATE_FIRST_ID the state's
 * objects (files created but not yet committed have their future id, see `pending`), and
 * inodes with VINO_BIT set are control entries (config `.events`, `file@rev`) tracked by
 * lookup count. Every callback replies exactly once: a do_* helper returns an errno and a
 * thin callback replies, except the blocking `.events` read (fs/watch.c), which may be
 * answered later, when apply's effect is delivered. The session's userdata is the node, so
 * namespace fronts find their context from a request (ns_front_ctx, fs/ns.h). */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "fs/cache.h"
#include "fs/config.h"
#include "fs/metrics.h"
#include "fs/mount.h"
#include "fs/dirlist.h"
#include "fs/names.h"
#include "fs/ns.h"
#include "fs/status.h"
#include "fs/watch.h"

#define INO_ROOT FUSE_ROOT_ID
#define INO_CLUSTER 10
#define INO_STATUS0 11                 /* .cluster/<status_names[i]> = INO_STATUS0 + i */
#define VINO_BIT (1ull << 62)
#define VALUE_MAX (1u << 20)
#define STATIC_TIMEOUT 3600.0          /* root-level names never change */

enum vkind { VK_EVENTS = 1, VK_HIST };

typedef struct vkey {
    uint64_t kind, obj, aux;
} vkey_t;

typedef struct vino {
    uint64_t ino;
    vkey_t key;
    uint64_t nlookup;
    uint8_t ns;
    UT_hash_handle hh_ino, hh_key;
} vino_t;

enum fh_kind { FH_VALUE = 1, FH_STATIC, FH_EVENTS, FH_DIR };

typedef struct fh {
    int kind;
    uint8_t ns;
    char *path;                        /* FH_VALUE: namespace-relative path */
    blob_t *snap;                      /* what reads return (FH_VALUE, FH_STATIC of history) */
    char *sbuf;                        /* FH_STATIC generated text */
    size_t slen;
    dirlist_t dir;                     /* FH_DIR listing, taken at opendir */
    pthread_mutex_t mu;                /* FH_VALUE write state */
    int trunc_pending, create_pending, append;
    int dirty;                         /* FH_VALUE: a write through this open committed */
    blob_t *orig;                      /* FH_VALUE: value at open (NULL: file was new) */
    uint64_t want_id;                  /* FH_VALUE made by create: the id it will have */
    watch_t *watch;                    /* FH_EVENTS */
} fh_t;

static struct {
    node_t *node;
    state_t *st;
    uid_t uid;
    gid_t gid;
    pthread_mutex_t vmu;               /* guards the vino tables */
    vino_t *by_ino, *by_key;
    uint64_t next_vino;
    pthread_mutex_t pmu;               /* guards pending */
    struct pending *pending;           /* files created but not yet committed, by id */
    uint64_t next_pid;                 /* next proposer-picked id (atomic) */
    long long mnt_id;                  /* this mount's id in /proc/<pid>/mountinfo; 0 unknown */
} M = { .vmu = PTHREAD_MUTEX_INITIALIZER, .pmu = PTHREAD_MUTEX_INITIALIZER };

/* A file created without O_EXCL is committed by its first write (or at release), but the
 * kernel needs its inode number at create. The node picks the id the object will have
 * (CMD_PUT_ID) and answers with it; until the creation commits, the id is found here so
 * that getattr (fstat on the new descriptor) works. Entries live only that long. */
struct pending {
    uint64_t id;
    uint8_t ns;
    UT_hash_handle hh;
    char path[];
};

static int pending_add(uint64_t id, uint8_t ns, const char *path)
{
    size_t n = strlen(path);
    struct pending *p = malloc(sizeof(*p) + n + 1);
    if (!p)
        return -ENOMEM;
    p->id = id;
    p->ns = ns;
    memcpy(p->path, path, n + 1);
    pthread_mutex_lock(&M.pmu);
    HASH_ADD(hh, M.pending, id, sizeof(p->id), p);
    pthread_mutex_unlock(&M.pmu);
    return 0;
}

static void pending_del(uint64_t id)
{
    struct pending *p;
    pthread_mutex_lock(&M.pmu);
    HASH_FIND(hh, M.pending, &id, sizeof(id), p);
    if (p)
        HASH_DELETE(hh, M.pending, p);
    pthread_mutex_unlock(&M.pmu);
    free(p);
}

/* Copies the pending creation with this id (ns and path); 0 or -ENOENT. */
static int pending_find(uint64_t id, uint8_t *ns, char *path, size_t size)
{
    struct pending *p;
    pthread_mutex_lock(&M.pmu);
    HASH_FIND(hh, M.pending, &id, sizeof(id), p);
    if (p) {
        *ns = p->ns;
        snprintf(path, size, "%s", p->path);
    }
    pthread_mutex_unlock(&M.pmu);
    return p ? 0 : -ENOENT;
}

/* Id of the pending creation at ns/path, or 0. */
static uint64_t pending_by_path(uint8_t ns, const char *path)
{
    struct pending *p, *tmp;
    uint64_t id = 0;
    pthread_mutex_lock(&M.pmu);
    HASH_ITER(hh, M.pending, p, tmp) {
        if (p->ns == ns && strcmp(p->path, path) == 0) {
            id = p->id;
            break;
        }
    }
    pthread_mutex_unlock(&M.pmu);
    return id;
}

/* fh's pending creation just committed. fh->mu held. */
static void created(fh_t *fh)
{
    fh->create_pending = 0;
    pending_del(fh->want_id);
}

/* Appends PUT flags (and the wanted id) for fh's next commit. */
static void put_flags(cmdbuf_t *b, const fh_t *fh, uint8_t extra)
{
    if (fh->create_pending) {
        cmd_u8(b, CMD_PUT_CREATE | CMD_PUT_ID | extra);
        cmd_u64(b, fh->want_id);
    } else {
        cmd_u8(b, extra & ~CMD_PUT_KEEP);
    }
}

static int is_obj_ino(uint64_t ino) { return !(ino & VINO_BIT) && ino > INO_ROOT && ino != INO_CLUSTER && (ino < INO_STATUS0 || ino >= INO_STATUS0 + STATUS__COUNT); }
static int is_status_ino(uint64_t ino) { return ino >= INO_STATUS0 && ino < INO_STATUS0 + STATUS__COUNT; }

static void vino_forget(uint64_t ino, uint64_t n);

/* ---- routing to namespace modules (fs/ns.h) ---- */

static int any_modules;

/* The front of namespace ns when it serves its own files, else NULL. */
static const ns_front_t *serving_front(int ns)
{
    return ns > 0 && ns < NS__COUNT && ns_fronts[ns] && ns_fronts[ns]->fuse ? ns_fronts[ns]
                                                                           : NULL;
}

static int ino_module_ns(uint64_t ino)
{
    int ns = 0;
    if (!any_modules)
        return 0;
    if (ino & NS_INO_BIT) {
        ns = NS_INO_NS(ino);
    } else if (ino >= NS_ROOT_ID(1) && ino < NS_ROOT_ID(NS__COUNT)) {
        ns = (int)(ino - NS_ROOT_ID(0));
    } else if (ino >= STATE_FIRST_ID && !(ino & VINO_BIT)) {
        pthread_rwlock_rdlock(&M.st->lock);
        obj_t *o = tree_by_id(M.st, ino);
        ns = o ? o->ns : 0;
        pthread_rwlock_unlock(&M.st->lock);
    }
    return serving_front(ns) ? ns : 0;
}

static const struct fuse_lowlevel_ops *route(uint64_t ino)
{
    int ns = ino_module_ns(ino);
    return ns ? ns_fronts[ns]->fuse : NULL;
}

/* If ino belongs to a module, hands the request to the module's op (or EOPNOTSUPP when it
 * has none) and returns from the calling callback. */
#define ROUTE(ino, op, ...)                                                      \
    do {                                                                         \
        const struct fuse_lowlevel_ops *m_ = route(ino);                         \
        if (m_) {                                                                \
            if (m_->op)                                                          \
                m_->op(__VA_ARGS__);                                             \
            else                                                                 \
                fuse_reply_err(req, EOPNOTSUPP);                                 \
            return;                                                              \
        }                                                                        \
    } while (0)

static void forget_one(uint64_t ino, uint64_t n)
{
    int ns = ino_module_ns(ino);
    if (ns) {
        if (ns_fronts[ns]->forget)
            ns_fronts[ns]->forget(node_front(M.node, ns), ino, n);
    } else if (ino & VINO_BIT) {
        vino_forget(ino, n);
    }
}

/* ---- control inodes ---- */

/* Returns the ino for key, creating the entry; counts one kernel lookup. */
static uint64_t vino_get(uint64_t kind, uint64_t obj, uint64_t aux, uint8_t ns)
{
    vkey_t k = { kind, obj, aux };
    vino_t *v;
    pthread_mutex_lock(&M.vmu);
    HASH_FIND(hh_key, M.by_key, &k, sizeof(k), v);
    if (!v && (v = calloc(1, sizeof(*v)))) {
        v->key = k;
        v->ino = VINO_BIT | ++M.next_vino;
        v->ns = ns;
        HASH_ADD(hh_key, M.by_key, key, sizeof(k), v);
        HASH_ADD(hh_ino, M.by_ino, ino, sizeof(v->ino), v);
    }
    uint64_t ino = 0;
    if (v) {
        v->nlookup++;
        ino = v->ino;
    }
    pthread_mutex_unlock(&M.vmu);
    return ino;
}

/* Copies the entry for ino into *out. Returns 0 or -ENOENT. */
static int vino_find(uint64_t ino, vino_t *out)
{
    vino_t *v;
    pthread_mutex_lock(&M.vmu);
    HASH_FIND(hh_ino, M.by_ino, &ino, sizeof(ino), v);
    if (v)
        *out = *v;
    pthread_mutex_unlock(&M.vmu);
    return v ? 0 : -ENOENT;
}

static void vino_forget(uint64_t ino, uint64_t n)
{
    vino_t *v;
    pthread_mutex_lock(&M.vmu);
    HASH_FIND(hh_ino, M.by_ino, &ino, sizeof(ino), v);
    if (v && (v->nlookup -= (n < v->nlookup ? n : v->nlookup)) == 0) {
        HASH_DELETE(hh_ino, M.by_ino, v);
        HASH_DELETE(hh_key, M.by_key, v);
        free(v);
    }
    pthread_mutex_unlock(&M.vmu);
}

/* ---- attributes ---- */

static void fill_stat(struct stat *s, uint64_t ino, mode_t mode, off_t size, uint64_t mtime_ms)
{
    memset(s, 0, sizeof(*s));
    s->st_ino = ino;
    s->st_mode = mode;
    s->st_nlink = S_ISDIR(mode) ? 2 : 1;
    s->st_size = size;
    s->st_blksize = 4096;
    s->st_blocks = (size + 511) / 512;
    s->st_uid = M.uid;
    s->st_gid = M.gid;
    s->st_mtim.tv_sec = (time_t)(mtime_ms / 1000);
    s->st_mtim.tv_nsec = (long)(mtime_ms % 1000) * 1000000;
    s->st_ctim = s->st_mtim;
    s->st_atim = s->st_mtim;
}

/* Looks up a visible object by inode; read lock held. */
static obj_t *live_obj(uint64_t ino)
{
    obj_t *o = tree_by_id(M.st, ino);
    if (o && !tree_live(o, node_now_ms()))
        return NULL;
    return o;
}

static void obj_stat(const obj_t *o, struct stat *s)
{
    if (o->type == OBJ_DIR)
        fill_stat(s, o->id, S_IFDIR | 0755, 0, o->mtime_ms);
    else
        fill_stat(s, o->id, S_IFREG | 0644, o->val->len, o->mtime_ms);
}

static int status_size(int which, off_t *size)
{
    char *b;
    size_t l;
    int rc = status_render(M.node, which, &b, &l);
    if (rc < 0)
        return rc;
    free(b);
    *size = (off_t)l;
    return 0;
}

/* Attributes of any inode. */
static int do_getattr(uint64_t ino, struct stat *s)
{
    if (ino == INO_ROOT) {
        fill_stat(s, ino, S_IFDIR | 0755, 0, 0);
        return 0;
    }
    if (ino == INO_CLUSTER) {
        fill_stat(s, ino, S_IFDIR | 0555, 0, 0);
        return 0;
    }
    if (is_status_ino(ino)) {
        off_t size;
        int rc = status_size((int)(ino - INO_STATUS0), &size);
        if (rc < 0)
            return rc;
        fill_stat(s, ino, S_IFREG | 0444, size, node_now_ms());
        return 0;
    }
    if (ino & VINO_BIT) {
        vino_t v;
        if (vino_find(ino, &v) < 0)
            return -ENOENT;
        int rc = 0;
        pthread_rwlock_rdlock(&M.st->lock);
        if (v.key.kind == VK_EVENTS) {
            fill_stat(s, ino, S_IFREG | 0444, 0, 0);
        } else {
            obj_t *o = tree_by_id(M.st, v.key.obj);
            blob_t *b = o ? config_sm_version(o, v.key.aux) : NULL;
            if (b)
                fill_stat(s, ino, S_IFREG | 0444, b->len, o->mtime_ms);
            else
                rc = -ENOENT;
        }
        pthread_rwlock_unlock(&M.st->lock);
        return rc;
    }
    int rc = 0;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = live_obj(ino);
    if (o)
        obj_stat(o, s);
    else
        rc = -ENOENT;
    pthread_rwlock_unlock(&M.st->lock);
    char path[8];
    uint8_t ns;
    if (rc == -ENOENT && pending_find(ino, &ns, path, sizeof(path)) == 0) {
        fill_stat(s, ino, S_IFREG | 0644, 0, node_now_ms());   /* created, not yet written */
        rc = 0;
    }
    return rc;
}

static void reply_attr(fuse_req_t req, uint64_t ino)
{
    struct stat s;
    int rc = do_getattr(ino, &s);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &s, 0);
}

/* ---- lookup ---- */

static int entry_for_obj(const obj_t *o, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = o->id;
    e->generation = 1;
    obj_stat(o, &e->attr);
    if (!o->parent)
        e->entry_timeout = e->attr_timeout = 0;
    return 0;
}

/* Config control names in dir o: ".events", ".events@rev", "file@rev". */
static int lookup_config_special(obj_t *dir, const char *name, struct fuse_entry_param *e)
{
    size_t len = strlen(name), base;
    uint64_t rev;
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    if (strcmp(name, ".events") == 0 || strncmp(name, ".events@", 8) == 0) {
        uint64_t aux = 0;
        if (name[7] == '@') {
            if (len > 8 && name[len - 1] == '\n')
                return -ENOENT;
            if (names_parse_uint(name + 8, len - 8, INT64_MAX, &rev) < 0)
                return -ENOENT;
            aux = rev + 1;
        }
        e->ino = vino_get(VK_EVENTS, dir->id, aux, NS_CONFIG);
        if (!e->ino)
            return -ENOMEM;
        fill_stat(&e->attr, e->ino, S_IFREG | 0444, 0, 0);
        return 0;
    }
    if (names_split_rev(name, len, &base, &rev) < 0)
        return -ENOENT;
    obj_t *f;
    HASH_FIND(hh, dir->children, name, base, f);
    blob_t *b = f ? config_sm_version(f, rev) : NULL;
    if (!b)
        return -ENOENT;
    e->ino = vino_get(VK_HIST, f->id, rev, NS_CONFIG);
    if (!e->ino)
        return -ENOMEM;
    fill_stat(&e->attr, e->ino, S_IFREG | 0444, b->len, f->mtime_ms);
    return 0;
}

static int do_lookup(uint64_t parent, const char *name, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    if (parent == INO_ROOT) {
        e->entry_timeout = e->attr_timeout = STATIC_TIMEOUT;
        if (strcmp(name, ".cluster") == 0) {
            e->ino = INO_CLUSTER;
            fill_stat(&e->attr, INO_CLUSTER, S_IFDIR | 0555, 0, 0);
            return 0;
        }
        for (int ns = 1; ns < NS__COUNT; ns++) {
            if (strcmp(name, ns_names[ns]) == 0) {
                e->ino = NS_ROOT_ID(ns);
                fill_stat(&e->attr, e->ino, S_IFDIR | 0755, 0, 0);
                return 0;
            }
        }
        return -ENOENT;
    }
    if (parent == INO_CLUSTER) {
        for (int i = 0; i < STATUS__COUNT; i++) {
            if (strcmp(name, status_names[i]) == 0) {
                e->ino = INO_STATUS0 + (uint64_t)i;
                return do_getattr(e->ino, &e->attr);
            }
        }
        return -ENOENT;
    }
    if (!is_obj_ino(parent))
        return -ENOTDIR;
    if (strlen(name) > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *dir = live_obj(parent);
    if (!dir) {
        rc = -ENOENT;
    } else if (dir->type != OBJ_DIR) {
        rc = -ENOTDIR;
    } else {
        obj_t *o = tree_child(dir, name);
        if (o && tree_live(o, node_now_ms()))
            rc = entry_for_obj(o, e);
        else if (!o && dir->ns == NS_CONFIG)
            rc = lookup_config_special(dir, name, e);
        if (rc == -ENOENT && (dir->ns == NS_CACHE || dir->ns == NS_CONFIG)) {
            /* created by an open that has not written yet: the file exists, empty */
            char path[4096];
            int l = tree_path(dir, path, sizeof(path));
            if (l >= 0 && (size_t)l + strlen(name) + 2 <= sizeof(path)) {
                snprintf(path + l, sizeof(path) - (size_t)l, "%s%s", l ? "/" : "", name);
                uint64_t id = pending_by_path(dir->ns, path);
                if (id) {
                    e->ino = id;
                    fill_stat(&e->attr, id, S_IFREG | 0644, 0, node_now_ms());
                    rc = 0;
                }
            }
        }
    }
    pthread_rwlock_unlock(&M.st->lock);
    return rc;
}

static void q_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    ROUTE(parent, lookup, req, parent, name);
    uint64_t t0 = metrics_now_ns();
    struct fuse_entry_param e;
    int rc = do_lookup(parent, name, &e);
    metrics_op(MOP_lookup, t0, rc == -ENOENT ? 0 : -rc);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else if (fuse_reply_entry(req, &e) != 0 && (e.ino & VINO_BIT))
        vino_forget(e.ino, 1);   /* the kernel never got it: undo the lookup count */
}

static void q_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    forget_one(ino, nlookup);
    fuse_reply_none(req);
}

static void q_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
    for (size_t i = 0; i < count; i++)
        forget_one(f[i].ino, f[i].nlookup);
    fuse_reply_none(req);
}

static void q_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, getattr, req, ino, fi);
    uint64_t t0 = metrics_now_ns();
    struct stat s;
    int rc = do_getattr(ino, &s);
    metrics_op(MOP_getattr, t0, -rc);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &s, 0);
}

/* ---- paths of objects, for commands ---- */

/* Resolves (parent inode, name) into the namespace and the namespace-relative path of the
 * child, checking that parent is a directory where objects may be created. */
static int child_path(uint64_t parent, const char *name, int *ns, char *path, size_t size,
                      int check_name)
{
    if (parent == INO_ROOT || parent == INO_CLUSTER)
        return -EPERM;
    if (!is_obj_ino(parent))
        return -ENOTDIR;
    int rc = 0;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *dir = live_obj(parent);
    if (!dir)
        rc = -ENOENT;
    else if (dir->type != OBJ_DIR)
        rc = -ENOTDIR;
    else if (dir->ns != NS_CACHE && dir->ns != NS_CONFIG)
        rc = -EOPNOTSUPP;   /* queues/, locks/, logs/, jobs/, search/, services/: not yet */
    else if ((rc = tree_path(dir, path, size)) >= 0) {
        size_t l = (size_t)rc;
        size_t nl = strlen(name);
        rc = 0;
        if (l + 1 + nl + 1 > size)
            rc = -ENAMETOOLONG;
        else {
            if (l)
                path[l++] = '/';
            memcpy(path + l, name, nl + 1);
            *ns = dir->ns;
        }
    }
    pthread_rwlock_unlock(&M.st->lock);
    if (rc == 0 && check_name)
        rc = names_check(name, strlen(name), *ns == NS_CONFIG);
    return rc;
}

/* Namespace-relative path of an existing object inode. */
static int obj_path(uint64_t ino, int *ns, char *path, size_t size, int *type)
{
    if (!is_obj_ino(ino))
        return ino == INO_ROOT || ino == INO_CLUSTER || is_status_ino(ino) ? -EPERM : -ENOENT;
    int rc;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = live_obj(ino);
    if (!o) {
        rc = -ENOENT;
    } else {
        rc = tree_path(o, path, size);
        *ns = o->ns;
        if (type)
            *type = o->type;
    }
    pthread_rwlock_unlock(&M.st->lock);
    return rc < 0 ? rc : 0;
}

static int propose_path(uint8_t op, int ns, const char *path, sm_result_t *res)
{
    cmdbuf_t b;
    cmd_begin(&b, op, (uint8_t)ns, node_now_ms());
    cmd_str(&b, path);
    return node_propose(M.node, &b, res);
}

static uint64_t result_id(const sm_result_t *res)
{
    uint64_t id = 0;
    if (res->len >= 8)
        memcpy(&id, res->data, 8);
    return id;
}

/* Replies an entry for a freshly created object id. */
static void reply_new_entry(fuse_req_t req, uint64_t id)
{
    struct fuse_entry_param e;
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = tree_by_id(M.st, id);
    if (o)
        rc = entry_for_obj(o, &e);
    pthread_rwlock_unlock(&M.st->lock);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

/* ---- directories ---- */

static void q_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    ROUTE(parent, mkdir, req, parent, name, mode);
    uint64_t t0 = metrics_now_ns();
    char path[4096];
    int ns;
    sm_result_t res;
    int rc = child_path(parent, name, &ns, path, sizeof(path), 1);
    if (rc == 0)
        rc = propose_path(CMD_MKDIR, ns, path, &res);
    metrics_op(MOP_mkdir, t0, -rc);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        reply_new_entry(req, result_id(&res));
}

static int do_remove(uint8_t op, uint64_t parent, const char *name)
{
    char path[4096];
    int ns;
    if (parent == INO_ROOT || parent == INO_CLUSTER)
        return -EPERM;
    int rc = child_path(parent, name, &ns, path, sizeof(path), 0);
    if (rc < 0)
        return rc;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = tree_resolve(M.st, ns, path, strlen(path));
    int live = o && tree_live(o, node_now_ms());
    pthread_rwlock_unlock(&M.st->lock);
    if (!live) {
        /* control names (".events", "file@rev") are read-only; others simply do not exist */
        if (ns == NS_CONFIG && (name[0] == '.' || strchr(name, '@')))
            return -EPERM;
        return -ENOENT;
    }
    return propose_path(op, ns, path, NULL);
}

static void q_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    ROUTE(parent, rmdir, req, parent, name);
    uint64_t t0 = metrics_now_ns();
    int rc = do_remove(CMD_RMDIR, parent, name);
    metrics_op(MOP_rmdir, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void q_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    ROUTE(parent, unlink, req, parent, name);
    uint64_t t0 = metrics_now_ns();
    int rc = do_remove(CMD_UNLINK, parent, name);
    metrics_op(MOP_unlink, t0, -rc);
    fuse_reply_err(req, -rc);
}

static int do_rename(uint64_t parent, const char *name, uint64_t newparent,
                     const char *newname, unsigned flags)
{
    char from[4096], to[4096];
    int ns1, ns2;
    if (flags & ~(unsigned)RENAME_NOREPLACE)
        return -EINVAL;       /* RENAME_EXCHANGE / WHITEOUT: not supported */
    int rc = child_path(parent, name, &ns1, from, sizeof(from), 0);
    if (rc < 0)
        return rc;
    rc = child_path(newparent, newname, &ns2, to, sizeof(to), 1);
    if (rc == -EPERM || rc == -EOPNOTSUPP)
        return rc;
    if (rc == 0 && ns1 != ns2)
        return -EXDEV;
    if (rc < 0)
        return rc;
    cmdbuf_t b;
    cmd_begin(&b, CMD_RENAME, (uint8_t)ns1, node_now_ms());
    cmd_str(&b, from);
    cmd_str(&b, to);
    cmd_u8(&b, (flags & RENAME_NOREPLACE) ? CMD_RENAME_NOREPLACE : 0);
    return node_propose(M.node, &b, NULL);
}

static void q_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                     const char *newname, unsigned int flags)
{
    if (ino_module_ns(parent) != ino_module_ns(newparent)) {
        fuse_reply_err(req, EXDEV);
        return;
    }
    ROUTE(parent, rename, req, parent, name, newparent, newname, flags);
    uint64_t t0 = metrics_now_ns();
    int rc = do_rename(parent, name, newparent, newname, flags);
    metrics_op(MOP_rename, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void fh_free(fh_t *fh)
{
    if (!fh)
        return;
    free(fh->path);
    blob_unref(fh->snap);
    free(fh->sbuf);
    dirlist_clear(&fh->dir);
    blob_unref(fh->orig);
    watch_close(fh->watch);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

static fh_t *fh_new(int kind)
{
    fh_t *fh = calloc(1, sizeof(*fh));
    if (fh) {
        fh->kind = kind;
        pthread_mutex_init(&fh->mu, NULL);
    }
    return fh;
}

static int do_opendir(uint64_t ino, fh_t **out)
{
    fh_t *fh = fh_new(FH_DIR);
    int rc = 0;
    if (!fh)
        return -ENOMEM;
    dirlist_t *d = &fh->dir;
    rc = dirlist_add(d, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(d, "..", INO_ROOT, S_IFDIR);
    if (rc < 0)
        goto fail;
    if (ino == INO_ROOT) {
        for (int ns = 1; ns < NS__COUNT && rc == 0; ns++)
            rc = dirlist_add(d, ns_names[ns], NS_ROOT_ID(ns), S_IFDIR);
        if (rc == 0)
            rc = dirlist_add(d, ".cluster", INO_CLUSTER, S_IFDIR);
    } else if (ino == INO_CLUSTER) {
        for (int i = 0; i < STATUS__COUNT && rc == 0; i++)
            rc = dirlist_add(d, status_names[i], INO_STATUS0 + (uint64_t)i, S_IFREG);
    } else if (is_obj_ino(ino)) {
        pthread_rwlock_rdlock(&M.st->lock);
        obj_t *o = live_obj(ino), *c;
        uint64_t now = node_now_ms();
        if (!o)
            rc = -ENOENT;
        else if (o->type != OBJ_DIR)
            rc = -ENOTDIR;
        else {
            d->ents[1].ino = o->parent ? o->parent->id : INO_ROOT;
            for (c = o->children; c && rc == 0; c = c->hh.next)
                if (tree_live(c, now))
                    rc = dirlist_add(d, c->name, c->id,
                                     c->type == OBJ_DIR ? S_IFDIR : S_IFREG);
        }
        pthread_rwlock_unlock(&M.st->lock);
    } else {
        rc = -ENOTDIR;
    }
    if (rc < 0)
        goto fail;
    dirlist_sort(d, 2);
    *out = fh;
    return 0;
fail:
    fh_free(fh);
    return rc;
}

static void q_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, opendir, req, ino, fi);
    fh_t *fh;
    int rc = do_opendir(ino, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_open(req, fi) != 0)
        fh_free(fh);
}

static void q_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    ROUTE(ino, readdir, req, ino, size, off, fi);
    uint64_t t0 = metrics_now_ns();
    dirlist_reply(req, &((fh_t *)(uintptr_t)fi->fh)->dir, size, off);
    metrics_op(MOP_readdir, t0, 0);
}

static void q_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, releasedir, req, ino, fi);
    fh_free((fh_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ---- files ---- */

/* Another open of a file created but not yet written: it shares the creation (the
 * first of them to write or close commits it, with the same id). */
static int open_pending(uint64_t ino, int flags, fh_t **out)
{
    char path[4096];
    uint8_t ns;
    if (pending_find(ino, &ns, path, sizeof(path)) < 0)
        return -ENOENT;
    fh_t *fh = fh_new(FH_VALUE);
    if (!fh || !(fh->path = strdup(path)) || !(fh->snap = blob_new(NULL, 0))) {
        fh_free(fh);
        return -ENOMEM;
    }
    fh->ns = ns;
    fh->append = !!(flags & O_APPEND);
    fh->want_id = ino;
    fh->create_pending = 1;
    *out = fh;
    return 0;
}

static int open_value(uint64_t ino, int flags, fh_t **out)
{
    char path[4096];
    int ns, type;
    int rc = obj_path(ino, &ns, path, sizeof(path), &type);
    if (rc == -ENOENT)
        return open_pending(ino, flags, out);
    if (rc < 0)
        return rc;
    if (type == OBJ_DIR)
        return -EISDIR;
    fh_t *fh = fh_new(FH_VALUE);
    if (!fh || !(fh->path = strdup(path))) {
        fh_free(fh);
        return -ENOMEM;
    }
    fh->ns = (uint8_t)ns;
    fh->append = !!(flags & O_APPEND);
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
        fh->trunc_pending = 1;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = live_obj(ino);
    if (o)
        fh->snap = blob_ref(o->val);
    /* A read is logged (a TOUCH batch) when it restarts a sliding TTL, or when the cache
     * is past half its cap so that the LRU order will soon decide an eviction. Below
     * that, LRU order follows writes only, and reads cost no log traffic. */
    int touch = o && (flags & O_ACCMODE) != O_WRONLY && cache_sm_read_touches(M.st, o);
    pthread_rwlock_unlock(&M.st->lock);
    if (!fh->snap) {
        fh_free(fh);
        return -ENOENT;
    }
    fh->orig = blob_ref(fh->snap);
    if (fh->trunc_pending) {
        blob_unref(fh->snap);
        fh->snap = blob_new(NULL, 0);
    }
    if (touch)
        node_note_read(M.node, path);
    *out = fh;
    return 0;
}

static int open_control(uint64_t ino, int flags, fh_t **out)
{
    fh_t *fh;
    if ((flags & O_ACCMODE) != O_RDONLY)
        return -EPERM;           /* read-only control file */
    if (is_status_ino(ino)) {
        fh = fh_new(FH_STATIC);
        if (!fh)
            return -ENOMEM;
        int rc = status_render(M.node, (int)(ino - INO_STATUS0), &fh->sbuf, &fh->slen);
        if (rc < 0) {
            fh_free(fh);
            return rc;
        }
        *out = fh;
        return 0;
    }
    vino_t v;
    if (vino_find(ino, &v) < 0)
        return -ENOENT;
    int rc = 0;
    fh = fh_new(v.key.kind == VK_EVENTS ? FH_EVENTS : FH_STATIC);
    if (!fh)
        return -ENOMEM;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = tree_by_id(M.st, v.key.obj);
    if (!o) {
        rc = -ENOENT;
    } else if (v.key.kind == VK_HIST) {
        fh->snap = blob_ref(config_sm_version(o, v.key.aux));
        if (!fh->snap)
            rc = -ENOENT;
    } else {
        char path[4096];
        rc = tree_path(o, path, sizeof(path));
        if (rc >= 0)
            rc = watch_open(node_front(M.node, NS_CONFIG), path,
                            v.key.aux ? v.key.aux - 1 : config_sm_rev(M.st),
                            !!(flags & O_NONBLOCK), &fh->watch);
    }
    pthread_rwlock_unlock(&M.st->lock);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

static void q_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, open, req, ino, fi);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = NULL;
    int rc;
    if ((ino & VINO_BIT) || is_status_ino(ino)) {
        rc = open_control(ino, fi->flags, &fh);
    } else {
        rc = open_value(ino, fi->flags, &fh);
    }
    metrics_op(MOP_open, t0, -rc);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;        /* the kernel page cache must never serve a stale value */
    fi->keep_cache = 0;
    if (fuse_reply_open(req, fi) != 0)
        fh_free(fh);
}

static void q_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    ROUTE(ino, read, req, ino, size, off, fi);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    if (fh->kind == FH_EVENTS) {
        metrics_op(MOP_read, t0, 0);
        watch_read(req, fh->watch, size, off);
        return;
    }
    const uint8_t *data;
    size_t len;
    pthread_mutex_lock(&fh->mu);
    if (fh->kind == FH_STATIC && !fh->snap) {
        data = (const uint8_t *)fh->sbuf;
        len = fh->slen;
    } else {
        data = fh->snap->data;
        len = fh->snap->len;
    }
    size_t n = off < 0 || (size_t)off >= len ? 0 : len - (size_t)off;
    if (n > size)
        n = size;
    fuse_reply_buf(req, n ? (const char *)data + off : NULL, n);
    pthread_mutex_unlock(&fh->mu);
    metrics_op(MOP_read, t0, 0);
}

/* Commits fh's working copy [0, newlen) as the value. fh->mu held. */
/* Commits one write request (or, with CMD_WRITE_SETLEN and no data, a truncation to off)
 * on the file's current value, carrying the open's pending O_TRUNC, creation and O_APPEND.
 * Afterwards reads through this open see the committed value. fh->mu held. */
static int write_request(fh_t *fh, uint8_t flags, uint64_t off, const void *data, size_t len)
{
    cmdbuf_t b;
    cmd_begin(&b, CMD_WRITE, fh->ns, node_now_ms());
    cmd_str(&b, fh->path);
    if (fh->trunc_pending)
        flags |= CMD_WRITE_TRUNC;
    if (fh->append && !(flags & CMD_WRITE_SETLEN))
        flags |= CMD_WRITE_APPEND;
    if (fh->create_pending) {
        cmd_u8(&b, flags | CMD_PUT_CREATE | CMD_PUT_ID);
        cmd_u64(&b, fh->want_id);
    } else {
        cmd_u8(&b, flags);
    }
    cmd_u64(&b, off);
    cmd_bytes(&b, data, len);
    sm_result_t res;
    int rc = node_propose(M.node, &b, &res);
    if (rc < 0)
        return rc;
    fh->dirty = 1;
    fh->trunc_pending = 0;
    if (fh->create_pending)
        created(fh);
    uint64_t id = result_id(&res);
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = tree_by_id(M.st, id);
    blob_t *nb = o && o->type == OBJ_FILE ? blob_ref(o->val) : NULL;
    pthread_rwlock_unlock(&M.st->lock);
    if (nb) {
        blob_unref(fh->snap);
        fh->snap = nb;
    }
    return 0;
}

/* A value grew past VALUE_MAX through several write requests: the earlier ones were already
 * committed, so put back the value the file had at open (or remove a file this open
 * created), keeping "EFBIG and the old value is kept". fh->mu held. */
static void restore_orig(fh_t *fh)
{
    if (!fh->dirty)
        return;
    cmdbuf_t b;
    if (fh->orig) {
        cmd_begin(&b, CMD_PUT, fh->ns, node_now_ms());
        cmd_str(&b, fh->path);
        cmd_u8(&b, CMD_PUT_CREATE);
        cmd_bytes(&b, fh->orig->data, fh->orig->len);
    } else {
        cmd_begin(&b, CMD_UNLINK, fh->ns, node_now_ms());
        cmd_str(&b, fh->path);
    }
    int rc = node_propose(M.node, &b, NULL);
    if (rc < 0)
        fprintf(stderr, "quorumfs: %s: restoring the value after EFBIG failed: %s\n", fh->path,
                strerror(-rc));
    fh->dirty = 0;
    blob_unref(fh->snap);
    fh->snap = blob_ref(fh->orig ? fh->orig : NULL);
    if (!fh->snap)
        fh->snap = blob_new(NULL, 0);
    if (!fh->orig && !fh->create_pending && pending_add(fh->want_id, fh->ns, fh->path) == 0)
        fh->create_pending = 1;   /* it was this open's new file: it is gone again */
}

static int do_write(fh_t *fh, const char *buf, size_t size, off_t off)
{
    if (fh->kind != FH_VALUE)
        return -EBADF;
    if (off < 0)
        return -EINVAL;
    pthread_mutex_lock(&fh->mu);
    int rc = -EFBIG;   /* apply checks again, against the value's length for O_APPEND */
    if (fh->append || (uint64_t)off + size <= VALUE_MAX)
        rc = write_request(fh, 0, (uint64_t)off, buf, size);
    if (rc == -EFBIG)
        restore_orig(fh);
    pthread_mutex_unlock(&fh->mu);
    return rc;
}

static void q_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    ROUTE(ino, write, req, ino, buf, size, off, fi);
    uint64_t t0 = metrics_now_ns();
    int rc = do_write((fh_t *)(uintptr_t)fi->fh, buf, size, off);
    metrics_op(MOP_write, t0, -rc);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* Commits what an open still owes: the truncation of O_TRUNC, or the creation of a new
 * file, when nothing was written. */
static int settle(fh_t *fh)
{
    if (fh->kind != FH_VALUE)
        return 0;
    pthread_mutex_lock(&fh->mu);
    int rc = 0;
    if (fh->create_pending || fh->trunc_pending) {
        cmdbuf_t b;
        cmd_begin(&b, CMD_PUT, fh->ns, node_now_ms());
        cmd_str(&b, fh->path);
        put_flags(&b, fh, CMD_PUT_KEEP);
        cmd_bytes(&b, "", 0);
        rc = node_propose(M.node, &b, NULL);
        if (rc == 0) {
            fh->trunc_pending = 0;
            if (fh->create_pending)
                created(fh);
        }
    }
    pthread_mutex_unlock(&fh->mu);
    return rc;
}

/* See mount.h. Judged from the mnt_id and ino lines of /proc/<pid>/fdinfo/<fd>. */
int mount_still_open_by(pid_t pid, uint64_t ino)
{
    char path[64], line[128];
    if (!M.mnt_id || pid <= 0)
        return 1;
    snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 1;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/fdinfo/%.16s", (int)pid, e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        long long mnt = -1;
        unsigned long long i = 0;
        while (fgets(line, sizeof(line), f)) {
            sscanf(line, "mnt_id: %lld", &mnt);
            sscanf(line, "ino: %llu", &i);
        }
        fclose(f);
        found = mnt == M.mnt_id && i == ino;
    }
    closedir(d);
    return found;
}

/* flush comes at every close() of a descriptor, including a shell's close of the original
 * after dup2() and before its first write. An open that still owes its O_TRUNC or its
 * creation settles here only if the closing process holds no other descriptor on the file
 * (then no write can follow, and close() returns once the truncation is durable);
 * otherwise release settles it. Every write has already reported its own error. */
static void q_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, flush, req, ino, fi);
    uint64_t t0 = metrics_now_ns();
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->kind == FH_VALUE && (fh->trunc_pending || fh->create_pending) &&
        !mount_still_open_by(fuse_req_ctx(req)->pid, ino))
        rc = settle(fh);
    metrics_op(MOP_flush, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void q_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    ROUTE(ino, fsync, req, ino, datasync, fi);
    /* Every acknowledged write is already durable; only a pending create/truncate is owed. */
    fuse_reply_err(req, -settle((fh_t *)(uintptr_t)fi->fh));
}

static void q_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ROUTE(ino, release, req, ino, fi);
    fh_t *fh = (fh_t *)(uintptr_t)fi->fh;
    /* The last descriptor is gone: an O_TRUNC or a create with nothing written lands now. */
    int rc = settle(fh);
    if (rc < 0)
        fprintf(stderr, "quorumfs: %s: truncate/create at close not committed: %s\n",
                fh->path ? fh->path : "?", strerror(-rc));
    if (fh->kind == FH_VALUE && fh->create_pending)
        pending_del(fh->want_id);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

/* Id of the live object at ns/path, or 0. */
static uint64_t live_id(int ns, const char *path)
{
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = tree_resolve(M.st, ns, path, strlen(path));
    uint64_t id = o && tree_live(o, node_now_ms()) ? o->id : 0;
    pthread_rwlock_unlock(&M.st->lock);
    return id;
}

static void q_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     struct fuse_file_info *fi)
{
    ROUTE(parent, create, req, parent, name, mode, fi);
    uint64_t t0 = metrics_now_ns();
    char path[4096];
    int ns;
    fh_t *fh = NULL;
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.generation = 1;
    int rc = child_path(parent, name, &ns, path, sizeof(path), 1);
    if (rc == 0 && (fi->flags & O_EXCL)) {
        /* O_CREAT|O_EXCL is committed before the open returns. */
        cmdbuf_t b;
        sm_result_t res;
        cmd_begin(&b, CMD_PUT, (uint8_t)ns, node_now_ms());
        cmd_str(&b, path);
        cmd_u8(&b, CMD_PUT_CREATE | CMD_PUT_EXCL);
        cmd_bytes(&b, "", 0);
        rc = node_propose(M.node, &b, &res);
        if (rc == 0)
            rc = open_value(result_id(&res), fi->flags & ~O_TRUNC, &fh);
        if (rc == 0)
            rc = do_getattr(result_id(&res), &e.attr);
        e.ino = result_id(&res);
    } else if (rc == 0 && ((e.ino = live_id(ns, path)) != 0 ||
                           (e.ino = pending_by_path((uint8_t)ns, path)) != 0)) {
        /* It was created meanwhile (the kernel's lookup missed it), or another open is
         * creating it: open that, as open(2) with O_CREAT and without O_EXCL does. */
        rc = open_value(e.ino, fi->flags, &fh);
        if (rc == 0)
            rc = do_getattr(e.ino, &e.attr);
    } else if (rc == 0) {
        /* Plain O_CREAT: the file comes into being with its first write (or at close), so
         * readers never see it empty-then-filled and config gets one revision. */
        fh = fh_new(FH_VALUE);
        if (!fh || !(fh->path = strdup(path)) || !(fh->snap = blob_new(NULL, 0))) {
            rc = -ENOMEM;
        } else {
            fh->ns = (uint8_t)ns;
            fh->append = !!(fi->flags & O_APPEND);
            fh->want_id = __atomic_fetch_add(&M.next_pid, 1, __ATOMIC_RELAXED);
            rc = fh->want_id < STATE_PID_END ? pending_add(fh->want_id, fh->ns, path) : -ENOSPC;
            if (rc == 0) {
                fh->create_pending = 1;
                e.ino = fh->want_id;
                fill_stat(&e.attr, e.ino, S_IFREG | 0644, 0, node_now_ms());
            }
        }
    }
    metrics_op(MOP_create, t0, -rc);
    if (rc < 0) {
        fh_free(fh);
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if (fuse_reply_create(req, &e, fi) != 0) {
        if (fh->create_pending)
            pending_del(fh->want_id);
        fh_free(fh);
    }
}

/* truncate(2)/ftruncate(2): one committed step to the new size. */
static int do_truncate(uint64_t ino, off_t size, fh_t *fh)
{
    if (size < 0)
        return -EINVAL;
    if ((uint64_t)size > VALUE_MAX)
        return -EFBIG;
    fh_t *tmp = NULL;
    int rc = 0;
    if (!fh || fh->kind != FH_VALUE) {
        rc = open_value(ino, O_RDWR, &tmp);
        if (rc < 0)
            return rc;
        fh = tmp;
    }
    pthread_mutex_lock(&fh->mu);
    rc = write_request(fh, CMD_WRITE_SETLEN, (uint64_t)size, NULL, 0);
    pthread_mutex_unlock(&fh->mu);
    fh_free(tmp);
    return rc;
}

/* A setattr (touch, truncate) of a file created but not yet written commits the creation
 * first, through its own open if it comes with one. */
static int settle_pending(uint64_t ino, fh_t *fh)
{
    if (fh && fh->kind == FH_VALUE && fh->create_pending)
        return settle(fh);
    char path[4096];
    uint8_t ns;
    if (pending_find(ino, &ns, path, sizeof(path)) < 0)
        return 0;
    cmdbuf_t b;
    cmd_begin(&b, CMD_PUT, ns, node_now_ms());
    cmd_str(&b, path);
    cmd_u8(&b, CMD_PUT_CREATE | CMD_PUT_KEEP | CMD_PUT_ID);
    cmd_u64(&b, ino);
    cmd_bytes(&b, "", 0);
    return node_propose(M.node, &b, NULL);
}

static int do_setattr(uint64_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
    fh_t *fh = fi ? (fh_t *)(uintptr_t)fi->fh : NULL;
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
        return -EPERM;           /* ownership and permission bits are fixed */
    if (ino & VINO_BIT)
        return -EPERM;           /* control files */
    int rc = settle_pending(ino, fh);
    if (rc < 0)
        return rc;
    if (!is_obj_ino(ino))
        return -EPERM;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        int rc = do_truncate(ino, attr->st_size, fh);
        if (rc < 0)
            return rc;
    }
    if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_ATIME |
                  FUSE_SET_ATTR_ATIME_NOW)) {
        char path[4096];
        int ns;
        int rc = obj_path(ino, &ns, path, sizeof(path), NULL);
        if (rc == 0 && (ns == NS_CACHE || ns == NS_CONFIG))
            rc = propose_path(CMD_SETMTIME, ns, path, NULL);
        if (rc < 0 && rc != -EPERM)
            return rc;
    }
    return 0;
}

static void q_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    ROUTE(ino, setattr, req, ino, attr, to_set, fi);
    uint64_t t0 = metrics_now_ns();
    int rc = do_setattr(ino, attr, to_set, fi);
    metrics_op(MOP_setattr, t0, -rc);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        reply_attr(req, ino);
}

/* ---- extended attributes ---- */

static int do_setxattr(uint64_t ino, const char *name, const char *value, size_t size,
                       int remove)
{
    char path[4096];
    int ns, rc;
    if (strncmp(name, "user.", 5) != 0)
        return -ENOTSUP;
    rc = obj_path(ino, &ns, path, sizeof(path), NULL);
    if (rc < 0)
        return rc == -EPERM ? -ENOTSUP : rc;
    if (ns == NS_CONFIG)
        return strcmp(name, "user.version") == 0 ? -EPERM : -ENOTSUP;
    if (ns != NS_CACHE)
        return -ENOTSUP;
    if (!remove) {
        pthread_rwlock_rdlock(&M.st->lock);
        obj_t *o = live_obj(ino);
        rc = o ? cache_sm_check_setxattr(o, name, value, size) : -ENOENT;
        pthread_rwlock_unlock(&M.st->lock);
        if (rc < 0)
            return rc;
    }
    cmdbuf_t b;
    cmd_begin(&b, remove ? CMD_REMOVEXATTR : CMD_SETXATTR, (uint8_t)ns, node_now_ms());
    cmd_str(&b, path);
    cmd_str(&b, name);
    if (!remove)
        cmd_bytes(&b, value, size);
    return node_propose(M.node, &b, NULL);
}

static void q_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                       size_t size, int flags)
{
    ROUTE(ino, setxattr, req, ino, name, value, size, flags);
    uint64_t t0 = metrics_now_ns();
    int rc = do_setxattr(ino, name, value, size, 0);
    metrics_op(MOP_setxattr, t0, -rc);
    fuse_reply_err(req, -rc);
}

static void q_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    ROUTE(ino, removexattr, req, ino, name);
    uint64_t t0 = metrics_now_ns();
    int rc = do_setxattr(ino, name, NULL, 0, 1);
    metrics_op(MOP_removexattr, t0, -rc);
    fuse_reply_err(req, -rc);
}

/* Fills buf (size 0 = size query) with attribute name of ino. Returns length or -errno. */
static int do_getxattr(uint64_t ino, const char *name, char *buf, size_t size, int list)
{
    if (!is_obj_ino(ino))
        return list ? 0 : (ino & VINO_BIT) || is_status_ino(ino) || ino <= INO_CLUSTER
                              ? -ENODATA : -ENOENT;
    int rc;
    pthread_rwlock_rdlock(&M.st->lock);
    obj_t *o = live_obj(ino);
    if (!o)
        rc = -ENOENT;
    else if (list)
        rc = (int)(tree_hooks(o->ns) ? tree_hooks(o->ns)->listxattr(o, buf, size) : 0);
    else
        rc = tree_hooks(o->ns) ? tree_hooks(o->ns)->getxattr(o, name, buf, size) : -ENODATA;
    pthread_rwlock_unlock(&M.st->lock);
    if (list && size && (size_t)rc > size)
        return -ERANGE;
    return rc;
}

static void reply_xattr(fuse_req_t req, int rc, const char *buf, size_t size)
{
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)rc);
    else
        fuse_reply_buf(req, buf, (size_t)rc);
}

static void q_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    ROUTE(ino, getxattr, req, ino, name, size);
    uint64_t t0 = metrics_now_ns();
    char *buf = size ? malloc(size) : NULL;
    int rc = size && !buf ? -ENOMEM : do_getxattr(ino, name, buf, size, 0);
    metrics_op(MOP_getxattr, t0, rc == -ENODATA ? 0 : (rc < 0 ? -rc : 0));
    reply_xattr(req, rc, buf, size);
    free(buf);
}

static void q_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    ROUTE(ino, listxattr, req, ino, size);
    uint64_t t0 = metrics_now_ns();
    char *buf = size ? malloc(size) : NULL;
    int rc = size && !buf ? -ENOMEM : do_getxattr(ino, NULL, buf, size, 1);
    metrics_op(MOP_listxattr, t0, rc < 0 ? -rc : 0);
    reply_xattr(req, rc, buf, size);
    free(buf);
}

/* Locks are served by the module that owns the inode (locks/); elsewhere they are not
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

static void q_statfs(fuse_req_t req, fuse_ino_t ino)
{
    uint64_t t0 = metrics_now_ns();
    struct statvfs sv;
    if (statvfs(node_data_dir(M.node), &sv) != 0)
        memset(&sv, 0, sizeof(sv));
    pthread_rwlock_rdlock(&M.st->lock);
    sv.f_files = M.st->tree.nobjs;
    pthread_rwlock_unlock(&M.st->lock);
    sv.f_ffree = 1u << 30;
    sv.f_favail = sv.f_ffree;
    sv.f_namemax = NAME_MAX_BYTES;
    metrics_op(MOP_statfs, t0, 0);
    fuse_reply_statfs(req, &sv);
}

static void q_init(void *userdata, struct fuse_conn_info *conn)
{
    /* O_TRUNC arrives with open(), so truncation can take effect with the first write. */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    conn->max_write = VALUE_MAX;
    /* Forward flock(2) and fcntl locks when a module serves them (locks/). */
    for (int ns = 1; ns < NS__COUNT; ns++) {
        const ns_front_t *m = serving_front(ns);
        if (m && m->fuse->flock && (conn->capable & FUSE_CAP_FLOCK_LOCKS))
            conn->want |= FUSE_CAP_FLOCK_LOCKS;
        if (m && m->fuse->setlk && (conn->capable & FUSE_CAP_POSIX_LOCKS))
            conn->want |= FUSE_CAP_POSIX_LOCKS;
    }
}

static const struct fuse_lowlevel_ops ops = {
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
};

/* The id of the newest mount at mountpoint (ours, just made), or 0. */
static long long find_mnt_id(const char *mountpoint)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[8192], mp[4096];
    long long id, found = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%lld %*s %*s %*s %4095s", &id, mp) != 2)
            continue;
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
        if (strcmp(mp, mountpoint) == 0)
            found = id;   /* later lines are mounted on top of earlier ones */
    }
    fclose(f);
    return found;
}

int mount_serve(node_t *node, const char *mountpoint, struct fuse_args *args,
                void (*ready)(void *arg), void *ready_arg)
{
    M.node = node;
    M.st = node_state(node);
    M.uid = getuid();
    for (int ns = 1; ns < NS__COUNT; ns++)
        any_modules |= serving_front(ns) != NULL;
    M.gid = getgid();
    pthread_rwlock_rdlock(&M.st->lock);
    M.next_pid = M.st->tree.next_pid;
    pthread_rwlock_unlock(&M.st->lock);
    int ret = -1;
    /* The node is the requests' userdata: fronts reach their context through it. */
    struct fuse_session *se = fuse_session_new(args, &ops, sizeof(ops), node);
    if (!se)
        goto out;
    if (fuse_set_signal_handlers(se) != 0)
        goto out_destroy;
    if (fuse_session_mount(se, mountpoint) != 0) {
        fprintf(stderr, "quorumfs: cannot mount at %s\n", mountpoint);
        goto out_signals;
    }
    M.mnt_id = find_mnt_id(mountpoint);
    if (ready)
        ready(ready_arg);
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg) {
        /* Proposals block a worker until their commit: enough workers let concurrent
         * writers share one fsync (group commit). Blocking reads do not hold workers. */
        fuse_loop_cfg_set_max_threads(cfg, 64);
        fuse_loop_cfg_set_idle_threads(cfg, 16);
        /* A signal ends the loop with the signal number: that is a clean unmount too. */
        ret = fuse_session_loop_mt(se, cfg) >= 0 ? 0 : -1;
        fuse_loop_cfg_destroy(cfg);
    }
    fuse_session_unmount(se);
out_signals:
    fuse_remove_signal_handlers(se);
out_destroy:
    fuse_session_destroy(se);
out:
    return ret;
}
