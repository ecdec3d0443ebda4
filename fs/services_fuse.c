/* fs/services_fuse.c — the FUSE front of services/ (FILE-API §6, design in
 * docs/SERVICES.md): services/<svc>/ directories; instance files registered by a save
 * (`echo ADDR > services/web/node-a`, published at the close that ends the writing or at
 * fsync), renewed by touch, removed by rm; `ls` of the live and healthy instances; the
 * control files `.pick` (one pick per open), `.all` (every instance with its state) and
 * `.events` / `.events@rev` (a blocking watch of up/down lines); the xattrs user.lb,
 * user.ttl, user.check, user.check_interval (service) and user.weight, user.load
 * (instance); the leader-side sweep that proposes TTL expiry; and the TCP checker.
 *
 * Inodes (fs/ns.h NS_SHARD_INO: the service's shard in bits 48..55, then a 48-bit local
 * part): id << 3 | kind, where id is a service id (K_DIR, K_PICK, K_ALL, K_EVENTS), an
 * instance id (K_INST), or the serial of an entry of the front's name table (K_NEW: an
 * instance created and not yet saved; K_EVREV: `.events@rev`), freed when the kernel
 * forgets it.
 *
 * Context: one sfront_t per node. Locks, in order (each only after those before it):
 *   state lock  (read) around read-API calls; never held while proposing.
 *   sf->events  the `.events` streams (fs/evstream.h): its mutex guards every watch;
 *               replies to parked reads are sent holding it only.
 *   sf->ctx.mu  a leaf: the name table and the checker's probe table.
 *   fh->mu      an open file's write buffer; held while a text reply is written (release
 *               takes it before freeing) and while its save is proposed.
 *
 * The checker. One thread per node probes (nonblocking TCP connects, up to PROBES_AT_ONCE
 * under way, each with its own timeout); it never reads the state and never proposes. The sweep (on the node's sweeper
 * thread, every 100 ms) lists, for the shards this node leads, the instances of services
 * with user.check=tcp into the probe table, and proposes a HEALTH command for each probe
 * result that differs from the instance's committed health: a stable fleet costs no log
 * entry. Each instance is checked by one node at a time: its shard's leader. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "fs/dirlist.h"
#include "fs/front.h"
#include "fs/names.h"
#include "fs/evstream.h"
#include "fs/node.h"
#include "fs/services.h"
#include "fs/session.h"

enum skind { K_ROOT = 0, K_DIR, K_PICK, K_ALL, K_EVENTS, K_INST, K_NEW, K_EVREV };
#define KIND_BITS 3
#define SAVE_MAX 4096                   /* bytes of an instance file's save */
#define SWEEP_MAX 64                    /* expiries or health changes proposed per sweep */
#define PROBE_TIMEOUT_MS 800            /* a TCP check's connect timeout */
#define PROBES_AT_ONCE 256

/* An entry of the name table (K_NEW, K_EVREV inodes). */
typedef struct sname {
    uint64_t serial;
    int kind;
    uint32_t shard;
    uint64_t svc_id, rev;               /* K_EVREV */
    char *svc, *inst;                   /* K_NEW */
    int unlinked;                       /* K_NEW: rm'ed before its save was published */
    int opens;                          /* K_NEW: open files still to publish it */
    uint64_t nlookup;
    UT_hash_handle hh;
} sname_t;

/* A probe of the checker (see the top). */
typedef struct probe {
    uint32_t shard;
    uint64_t iid;
    char *svc, *inst, *addr;
    uint64_t interval_ms, next_ms;      /* next_ms: when the thread checks it next */
    int result;                         /* -1 none yet, 0 failed, 1 passed */
    int fresh;                          /* a result the sweep has not looked at */
    int seen;                           /* sweep: still an instance to check */
} probe_t;

typedef struct sfront {
    front_ctx_t ctx;                    /* first: node, mu */
    evs_table_t *events;                /* the open `.events` */
    sname_t *names;
    uint64_t next_serial;
    probe_t *probes;
    size_t nprobes, cap;
    pthread_t checker;
    int checker_on, stopping;           /* stopping: the checker sees it within 100 ms */
} sfront_t;

/* An open file or directory of services/. */
typedef struct sfh {
    int kind;
    uint32_t shard;
    uint64_t svc_id;
    char *svc, *inst;
    uint64_t iid;                       /* instance: the one opened (0: a creation) */
    uint64_t serial;                    /* a creation: its K_NEW name entry */
    pthread_mutex_t mu;
    char *text;                         /* what reads return (instance, .pick, .all) */
    size_t tlen;
    char *wbuf;                         /* the save in progress (under mu) */
    size_t wlen;
    int dirty;                          /* written since the last publish */
    evs_t *w;                           /* .events */
    dirlist_t dir;
} sfh_t;

static sfront_t *SF(fuse_req_t req) { return ns_front_ctx(req, NS_SERVICES); }
static state_t *sstate(const sfront_t *sf, uint32_t k) { return node_state(sf->ctx.node, k); }
static uint32_t sshard(const sfront_t *sf, const char *svc)
{
    return node_shard_of(sf->ctx.node, NS_SERVICES, svc);
}
static uint64_t ssid(const sfront_t *sf, uint32_t k)
{
    return session_local_id(node_session(sf->ctx.node), k);
}
static int spropose(sfront_t *sf, const char *svc, cmdbuf_t *b, sm_result_t *res)
{
    return node_propose(sf->ctx.node, sshard(sf, svc), b, res);
}
static fuse_ino_t mkino(uint32_t k, uint64_t id, int kind)
{
    return NS_SHARD_INO(NS_SERVICES, k, (id << KIND_BITS) | (uint64_t)kind);
}
static int ino_kind(fuse_ino_t ino)
{
    return ino == NS_ROOT_ID(NS_SERVICES) ? K_ROOT : (int)(NS_INO_LOCAL(ino) & 7);
}
static uint64_t ino_id(fuse_ino_t ino) { return NS_INO_LOCAL(ino) >> KIND_BITS; }
static uint32_t ino_shard(fuse_ino_t ino)
{
    return ino == NS_ROOT_ID(NS_SERVICES) ? 0 : NS_INO_SHARD(ino);
}

/* ---------------------------------------------------------------- name table */

static fuse_ino_t name_add(sfront_t *sf, int kind, uint32_t k, uint64_t svc_id, uint64_t rev,
                           const char *svc, const char *inst)
{
    sname_t *x = calloc(1, sizeof(*x));
    if (!x)
        return 0;
    if (kind == K_NEW && (!(x->svc = strdup(svc)) || !(x->inst = strdup(inst)))) {
        free(x->svc);
        free(x);
        return 0;
    }
    x->kind = kind;
    x->shard = k;
    x->svc_id = svc_id;
    x->rev = rev;
    x->nlookup = 1;
    pthread_mutex_lock(&sf->ctx.mu);
    x->serial = ++sf->next_serial;
    HASH_ADD(hh, sf->names, serial, sizeof(x->serial), x);
    pthread_mutex_unlock(&sf->ctx.mu);
    return mkino(k, x->serial, kind);
}

/* Copies the entry of ino into *out (svc, inst strdup'ed for K_NEW). 0 or -ENOENT. */
static int name_get(sfront_t *sf, fuse_ino_t ino, sname_t *out)
{
    uint64_t serial = ino_id(ino);
    sname_t *x;
    int rc = 0;
    pthread_mutex_lock(&sf->ctx.mu);
    HASH_FIND(hh, sf->names, &serial, sizeof(serial), x);
    if (!x) {
        rc = -ENOENT;
    } else {
        *out = *x;
        out->svc = x->svc ? strdup(x->svc) : NULL;
        out->inst = x->inst ? strdup(x->inst) : NULL;
        if (x->kind == K_NEW && (!out->svc || !out->inst)) {
            free(out->svc);
            free(out->inst);
            rc = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&sf->ctx.mu);
    return rc;
}

/* The inode of this mount's pending creation of inst in service svc_id of shard k (one more
 * lookup of it), or 0. */
static fuse_ino_t pending_lookup(sfront_t *sf, uint32_t k, uint64_t svc_id, const char *inst)
{
    fuse_ino_t ino = 0;
    sname_t *x, *tmp;
    pthread_mutex_lock(&sf->ctx.mu);
    HASH_ITER(hh, sf->names, x, tmp) {
        if (x->kind == K_NEW && !x->unlinked && x->opens > 0 && x->shard == k &&
            x->svc_id == svc_id &&
            strcmp(x->inst, inst) == 0) {
            x->nlookup++;
            ino = mkino(k, x->serial, K_NEW);
            break;
        }
    }
    pthread_mutex_unlock(&sf->ctx.mu);
    return ino;
}

/* An open file of pending creation serial starts (delta 1) or stops (-1) owing its save:
 * lookups and rm find the creation only while one does. */
static void pending_ref(sfront_t *sf, uint64_t serial, int delta)
{
    sname_t *x;
    pthread_mutex_lock(&sf->ctx.mu);
    HASH_FIND(hh, sf->names, &serial, sizeof(serial), x);
    if (x)
        x->opens += delta;
    pthread_mutex_unlock(&sf->ctx.mu);
}

static void sname_free(sname_t *x)
{
    free(x->svc);
    free(x->inst);
    free(x);
}

static void sv_forget(void *ctx, fuse_ino_t ino, uint64_t nlookup)
{
    sfront_t *sf = ctx;
    int kind = ino_kind(ino);
    if (kind != K_NEW && kind != K_EVREV)
        return;
    uint64_t serial = ino_id(ino);
    sname_t *x;
    pthread_mutex_lock(&sf->ctx.mu);
    HASH_FIND(hh, sf->names, &serial, sizeof(serial), x);
    if (x && x->nlookup <= nlookup)
        HASH_DELETE(hh, sf->names, x);
    else if (x) {
        x->nlookup -= nlookup;
        x = NULL;
    }
    pthread_mutex_unlock(&sf->ctx.mu);
    if (x)
        sname_free(x);
}

/* ---------------------------------------------------------------- rendering */

static size_t escape(const char *p, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        if (*c == '\\' || *c == '\n') {
            out[n++] = '\\';
            out[n++] = *c == '\n' ? 'n' : '\\';
        } else if (*c < 0x20) {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[*c >> 4];
            out[n++] = hex[*c & 15];
        } else {
            out[n++] = (char)*c;
        }
    }
    out[n] = 0;
    return n;
}

static void fmt_time(uint64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03uZ", (unsigned)(ms % 1000));
}

struct render_all {
    FILE *f;
    uint64_t now;
};

/* One line of `.all`: name address state [since ...] expires weight load. */
static int render_inst(void *arg, const inst_view_t *v)
{
    struct render_all *ra = arg;
    char name[4 * NAME_MAX_BYTES + 1], since[40];
    escape(v->name, name);
    fmt_time(v->since_ms, since, sizeof(since));
    const char *state = !v->healthy ? "failing"
                        : v->expires_ms && v->expires_ms <= ra->now ? "expired" : "healthy";
    fprintf(ra->f, "%s %s %s since=%s", name, v->addr, state, since);
    if (v->expires_ms && v->expires_ms > ra->now)
        fprintf(ra->f, " expires_in=%" PRIu64 ".%03" PRIu64 "s", (v->expires_ms - ra->now) / 1000,
                (v->expires_ms - ra->now) % 1000);
    else if (!v->expires_ms)
        fputs(" expires_in=never", ra->f);
    else
        fputs(" expires_in=0", ra->f);
    fprintf(ra->f, " weight=%" PRIu32 " load=%" PRIu32 "\n", v->weight, v->load);
    return 0;
}

static char *render_all(const state_t *st, uint64_t svc, size_t *len)
{
    char *out = NULL;
    size_t sz = 0;
    struct render_all ra = { .f = open_memstream(&out, &sz), .now = node_now_ms() };
    if (!ra.f)
        return NULL;
    services_sm_each_inst(st, svc, render_inst, &ra);
    if (fclose(ra.f) != 0) {
        free(out);
        return NULL;
    }
    *len = sz;
    return out;
}

/* ---------------------------------------------------------------- inodes */

typedef struct sref {
    int kind;
    uint32_t shard;
    svc_view_t s;
    inst_view_t i;
} sref_t;

/* Resolves ino (state of its shard read-locked by the caller; K_NEW and K_EVREV are
 * resolved before, see resolve_ino). 0 and *r, or -ENOENT. */
static int resolve_locked(const state_t *st, fuse_ino_t ino, sref_t *r)
{
    r->kind = ino_kind(ino);
    r->shard = ino_shard(ino);
    if (r->kind == K_ROOT)
        return 0;
    if (!(ino & NS_INO_BIT) || NS_INO_NS(ino) != NS_SERVICES)
        return -ENOENT;
    if (r->kind == K_INST) {
        uint64_t svc;
        if (services_sm_inst_id(st, ino_id(ino), &svc, &r->i) < 0)
            return -ENOENT;
        return services_sm_get_id(st, svc, &r->s);
    }
    if (r->kind >= K_DIR && r->kind <= K_EVENTS)
        return services_sm_get_id(st, ino_id(ino), &r->s);
    return -ENOENT;
}

static int attr_of(sfront_t *sf, fuse_ino_t ino, struct stat *s)
{
    int kind = ino_kind(ino);
    if (kind == K_ROOT) {
        front_stat(s, ino, S_IFDIR | 0755, 0, node_start_ms(sf->ctx.node));
        return 0;
    }
    if (kind == K_NEW || kind == K_EVREV) {
        sname_t x;
        int rc = name_get(sf, ino, &x);
        if (rc < 0)
            return rc;
        free(x.svc);
        free(x.inst);
        front_stat(s, ino, kind == K_NEW ? S_IFREG | 0644 : S_IFREG | 0444, 0, node_now_ms());
        return 0;
    }
    state_t *st = sstate(sf, ino_shard(ino));
    sref_t r;
    pthread_rwlock_rdlock(&st->lock);
    int rc = resolve_locked(st, ino, &r);
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0)
        return rc;
    switch (kind) {
    case K_DIR: front_stat(s, ino, S_IFDIR | 0755, 0, r.s.mtime_ms); break;
    case K_INST:
        front_stat(s, ino, S_IFREG | 0644, (off_t)strlen(r.i.addr) + 1, r.i.mtime_ms);
        break;
    case K_PICK: case K_ALL:
        front_stat(s, ino, S_IFREG | 0444, 0, r.s.mtime_ms);
        break;
    default: front_stat(s, ino, S_IFREG | 0444, 0, r.s.mtime_ms); break;
    }
    return 0;
}

static void sv_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat s;
    front_reply_attr(req, attr_of(SF(req), ino, &s), &s);
}

/* The service of directory inode dir: its name strdup'ed into *svc and its shard. 0,
 * -ENOTDIR (not a service directory) or -ENOENT. */
static int dir_service(sfront_t *sf, fuse_ino_t dir, char **svc, uint32_t *k, uint64_t *id)
{
    if (ino_kind(dir) != K_DIR)
        return ino_kind(dir) == K_ROOT ? -EISDIR : -ENOTDIR;
    state_t *st = sstate(sf, ino_shard(dir));
    svc_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = services_sm_get_id(st, ino_id(dir), &v);
    if (rc == 0 && !(*svc = strdup(v.name)))
        rc = -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    *k = ino_shard(dir);
    if (id)
        *id = ino_id(dir);
    return rc;
}

static int do_lookup(sfront_t *sf, fuse_ino_t parent, const char *name,
                     struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    size_t len = strlen(name);
    if (len > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    if (ino_kind(parent) == K_ROOT) {
        uint32_t k = sshard(sf, name);
        state_t *st = sstate(sf, k);
        svc_view_t v;
        pthread_rwlock_rdlock(&st->lock);
        int rc = services_sm_get(st, name, len, &v);
        pthread_rwlock_unlock(&st->lock);
        if (rc < 0)
            return rc;
        e->ino = mkino(k, v.id, K_DIR);
        return attr_of(sf, e->ino, &e->attr);
    }
    if (ino_kind(parent) != K_DIR)
        return -ENOTDIR;
    uint32_t k = ino_shard(parent);
    state_t *st = sstate(sf, k);
    svc_view_t v = { 0 };
    inst_view_t iv;
    int kind = strcmp(name, ".pick") == 0 ? K_PICK : strcmp(name, ".all") == 0 ? K_ALL
               : strcmp(name, ".events") == 0 ? K_EVENTS
               : strncmp(name, ".events@", 8) == 0 ? K_EVREV : K_INST;
    uint64_t rev = 0;
    if (kind == K_EVREV && (names_parse_uint(name + 8, len - 8, INT64_MAX, &rev) < 0 ||
                            name[len - 1] == '\n'))
        return -ENOENT;
    pthread_rwlock_rdlock(&st->lock);
    int rc = services_sm_get_id(st, ino_id(parent), &v);
    if (rc == 0 && kind == K_INST)
        rc = services_sm_inst(st, v.id, name, len, &iv);
    pthread_rwlock_unlock(&st->lock);
    if (rc == -ENOENT && kind == K_INST && v.id) {
        /* a name this mount created and has not saved yet: its K_NEW inode (so a stat, or
         * the rm of it, finds it) */
        fuse_ino_t ino = pending_lookup(sf, k, v.id, name);
        if (ino) {
            e->ino = ino;
            return attr_of(sf, e->ino, &e->attr);
        }
    }
    if (rc < 0)
        return rc;
    if (kind == K_EVREV) {
        if (!(e->ino = name_add(sf, K_EVREV, k, v.id, rev, NULL, NULL)))
            return -ENOMEM;
    } else {
        e->ino = mkino(k, kind == K_INST ? iv.id : v.id, kind);
    }
    return attr_of(sf, e->ino, &e->attr);
}

/* A do_lookup whose entry is not handed to the kernel (an error reply follows): the name
 * table's count of it goes back. */
static void lookup_drop(sfront_t *sf, fuse_ino_t ino)
{
    if (ino_kind(ino) == K_NEW || ino_kind(ino) == K_EVREV)
        sv_forget(sf, ino, 1);
}

static void sv_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    front_reply_entry(req, do_lookup(SF(req), parent, name, &e), &e);
}

/* ---------------------------------------------------------------- directories */

static int sv_mkdir_do(sfront_t *sf, fuse_ino_t parent, const char *name,
                       struct fuse_entry_param *e)
{
    if (ino_kind(parent) != K_ROOT)
        return ino_kind(parent) == K_DIR ? -EPERM : -ENOTDIR;   /* services are flat */
    int rc = names_check(name, strlen(name), 0);
    if (rc < 0)
        return rc;
    if (services_reserved(name, strlen(name)))
        return -EINVAL;     /* `.pick`, `.all`, `.events`: FILE-API §1 "Names" */
    cmdbuf_t b;
    services_cmd_mkdir(&b, node_now_ms(), name);
    rc = spropose(sf, name, &b, NULL);
    return rc < 0 ? rc : do_lookup(sf, parent, name, e);
}

static void sv_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct fuse_entry_param e;
    front_reply_entry(req, sv_mkdir_do(SF(req), parent, name, &e), &e);
}

static void sv_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    sfront_t *sf = SF(req);
    int rc = 0;
    if (ino_kind(parent) == K_DIR) {
        struct fuse_entry_param e;
        rc = do_lookup(sf, parent, name, &e);
        if (rc == 0)
            lookup_drop(sf, e.ino);
        rc = rc < 0 ? rc : -ENOTDIR;
    } else if (ino_kind(parent) != K_ROOT) {
        rc = -ENOTDIR;
    } else {
        cmdbuf_t b;
        services_cmd_rmdir(&b, node_now_ms(), name);
        rc = spropose(sf, name, &b, NULL);
    }
    fuse_reply_err(req, -rc);
}

static void sv_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EPERM);   /* a service or an instance keeps its name */
}

struct listing {
    dirlist_t *d;
    uint32_t shard;
    uint64_t now;
    int kind;
};

static int list_svc(void *arg, const svc_view_t *v)
{
    struct listing *l = arg;
    return dirlist_add(l->d, v->name, mkino(l->shard, v->id, K_DIR), S_IFDIR);
}

static int list_inst(void *arg, const inst_view_t *v)
{
    struct listing *l = arg;
    if (!services_visible(v, l->now))
        return 0;                       /* ls: live, healthy instances only */
    return dirlist_add(l->d, v->name, mkino(l->shard, v->id, K_INST), S_IFREG);
}

static void sv_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    int kind = ino_kind(ino);
    if (kind != K_ROOT && kind != K_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    sfh_t *fh = calloc(1, sizeof(*fh));
    int rc = fh ? 0 : -ENOMEM;
    if (rc == 0)
        rc = dirlist_add(&fh->dir, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(&fh->dir, "..", kind == K_ROOT ? FUSE_ROOT_ID : NS_ROOT_ID(NS_SERVICES),
                         S_IFDIR);
    uint32_t k0 = kind == K_ROOT ? 0 : ino_shard(ino);
    uint32_t k1 = kind == K_ROOT ? node_nshards(sf->ctx.node) : k0 + 1;
    for (uint32_t k = k0; rc == 0 && k < k1; k++) {
        state_t *st = sstate(sf, k);
        struct listing l = { &fh->dir, k, node_now_ms(), kind };
        pthread_rwlock_rdlock(&st->lock);
        if (kind == K_ROOT)
            rc = services_sm_each(st, list_svc, &l);
        else
            rc = services_sm_each_inst(st, ino_id(ino), list_inst, &l);
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc < 0) {
        if (fh)
            dirlist_clear(&fh->dir);
        free(fh);
        fuse_reply_err(req, -rc);
        return;
    }
    dirlist_sort(&fh->dir, 2);
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_open(req, fi) != 0) {
        dirlist_clear(&fh->dir);
        free(fh);
    }
}

static void sv_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    dirlist_reply(req, &((sfh_t *)(uintptr_t)fi->fh)->dir, size, off);
}

static void sv_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    dirlist_clear(&fh->dir);
    free(fh);
    fuse_reply_err(req, 0);
}

/* ---------------------------------------------------------------- watches */

/* An open `.events` is an event stream (fs/evstream.h) whose source is its service on its
 * shard and the last revision looked at. */
typedef struct swatch {
    state_t *st;
    uint64_t svc;
    uint64_t cursor;
} swatch_t;

static int sw_read(void *src, char *buf, size_t size)
{
    swatch_t *w = src;
    return services_read_events(w->st, w->svc, &w->cursor, buf, size);
}

/* Something to read: an event after the cursor, or the end (the service is gone), or
 * ESTALE. */
static int sw_pending(void *src)
{
    swatch_t *w = src;
    svc_view_t v;
    return services_sm_get_id(w->st, w->svc, &v) < 0 || v.rev > w->cursor ||
           services_events_stale(w->st, w->svc, w->cursor);
}

static const evs_ops_t sw_ops = { .read = sw_read, .pending = sw_pending, .free = free };

/* Opens a watch of service svc on shard k after revision `after` (UINT64_MAX: from now). */
static int watch_open(sfront_t *sf, uint32_t k, uint64_t svc, uint64_t after, evs_t **out)
{
    swatch_t *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    state_t *st = w->st = sstate(sf, k);
    w->svc = svc;
    svc_view_t v;
    pthread_rwlock_rdlock(&st->lock);
    int rc = services_sm_get_id(st, svc, &v);
    if (rc == 0 && after != UINT64_MAX && services_events_stale(st, svc, after))
        rc = -ESTALE;
    w->cursor = after == UINT64_MAX ? v.rev : after;
    if (rc == 0)
        rc = evs_open(sf->events, k, k + 1, &sw_ops, w, out);   /* owns w now */
    else
        free(w);
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/* ---------------------------------------------------------------- files */

static void fh_free(sfh_t *fh)
{
    if (!fh)
        return;
    evs_close(fh->w);
    free(fh->svc);
    free(fh->inst);
    free(fh->text);
    free(fh->wbuf);
    dirlist_clear(&fh->dir);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

static sfh_t *fh_new(int kind, uint32_t k, uint64_t svc_id, const char *svc, const char *inst)
{
    sfh_t *fh = calloc(1, sizeof(*fh));
    if (!fh)
        return NULL;
    pthread_mutex_init(&fh->mu, NULL);
    fh->kind = kind;
    fh->shard = k;
    fh->svc_id = svc_id;
    if ((svc && !(fh->svc = strdup(svc))) || (inst && !(fh->inst = strdup(inst)))) {
        fh_free(fh);
        return NULL;
    }
    return fh;
}

/* A uniform 64-bit number for the local picks: a per-thread xoshiro256** seeded from
 * getrandom(2). */
static uint64_t rnd64(void *arg)
{
    static __thread uint64_t s[4];
    static __thread int seeded;
    if (!seeded) {
        if (getrandom(s, sizeof(s), 0) != (ssize_t)sizeof(s))
            s[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&seeded, s[1] = 0x9e3779b97f4a7c15ull;
        seeded = 1;
    }
    uint64_t r = s[1] * 5;
    r = ((r << 7) | (r >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return r;
}

/* One pick of service svc (id on shard k): round-robin through a committed PICK (one
 * rotation for the cluster), the other policies on this node. Returns a malloc'ed
 * "address\n" or NULL with *rc: -EAGAIN when no instance is up. */
static char *do_pick(sfront_t *sf, uint32_t k, uint64_t id, const char *svc, int *rc)
{
    state_t *st = sstate(sf, k);
    svc_view_t v;
    inst_view_t iv;
    pthread_rwlock_rdlock(&st->lock);
    *rc = services_sm_get_id(st, id, &v);
    if (*rc == 0 && v.lb != SVLB_RR)
        *rc = services_sm_pick_local(st, id, node_now_ms(), rnd64, NULL, &iv);
    char *out = NULL;
    if (*rc == 0 && v.lb != SVLB_RR && asprintf(&out, "%s\n", iv.addr) < 0)
        out = NULL, *rc = -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    if (*rc < 0 || v.lb != SVLB_RR)
        return out;
    /* The picked instance may be removed before it is read: pick again (bounded). */
    for (int tries = 0; tries < 4; tries++) {
        cmdbuf_t b;
        sm_result_t res;
        services_cmd_pick(&b, node_now_ms(), svc);
        *rc = node_propose(sf->ctx.node, k, &b, &res);
        if (*rc < 0)
            return NULL;
        uint64_t iid = services_result_pick(&res);
        pthread_rwlock_rdlock(&st->lock);
        *rc = services_sm_inst_id(st, iid, NULL, &iv);
        if (*rc == 0 && asprintf(&out, "%s\n", iv.addr) < 0)
            out = NULL, *rc = -ENOMEM;
        pthread_rwlock_unlock(&st->lock);
        if (*rc != -ENOENT)
            return out;
    }
    *rc = -EAGAIN;
    return NULL;
}

static int do_open(sfront_t *sf, fuse_ino_t ino, int flags, sfh_t **out)
{
    int kind = ino_kind(ino), acc = flags & O_ACCMODE;
    if (kind == K_ROOT || kind == K_DIR)
        return -EISDIR;
    if (kind != K_INST && kind != K_NEW && acc != O_RDONLY)
        return -EPERM;                  /* control files are read-only (FILE-API §1) */
    sfh_t *fh = NULL;
    int rc = 0;
    if (kind == K_NEW || kind == K_EVREV) {
        sname_t x;
        if ((rc = name_get(sf, ino, &x)) < 0)
            return rc;
        if (kind == K_NEW) {
            if ((fh = fh_new(K_INST, x.shard, 0, x.svc, x.inst))) {
                fh->serial = x.serial;
                pending_ref(sf, fh->serial, 1);
            }
        } else if ((fh = fh_new(K_EVENTS, x.shard, x.svc_id, NULL, NULL)) &&
                 (rc = watch_open(sf, x.shard, x.svc_id, x.rev, &fh->w)) < 0) {
            fh_free(fh);
            fh = NULL;
        }
        free(x.svc);
        free(x.inst);
        if (rc < 0)
            return rc;
        if (!fh)
            return -ENOMEM;
        *out = fh;
        return 0;
    }
    uint32_t k = ino_shard(ino);
    state_t *st = sstate(sf, k);
    sref_t r;
    pthread_rwlock_rdlock(&st->lock);
    rc = resolve_locked(st, ino, &r);
    if (rc == 0 && !(fh = fh_new(kind, k, r.s.id, r.s.name, kind == K_INST ? r.i.name : NULL)))
        rc = -ENOMEM;
    if (rc == 0 && kind == K_INST)
        fh->iid = r.i.id;
    if (rc == 0 && kind == K_INST && acc != O_WRONLY) {
        if (asprintf(&fh->text, "%s\n", r.i.addr) < 0)
            fh->text = NULL, rc = -ENOMEM;
        else
            fh->tlen = strlen(fh->text);
    }
    if (rc == 0 && kind == K_ALL && !(fh->text = render_all(st, r.s.id, &fh->tlen)))
        rc = -ENOMEM;
    pthread_rwlock_unlock(&st->lock);
    if (rc == 0 && kind == K_PICK) {
        fh->text = do_pick(sf, k, fh->svc_id, fh->svc, &rc);
        if (fh->text)
            fh->tlen = strlen(fh->text);
    }
    if (rc == 0 && kind == K_EVENTS)
        rc = watch_open(sf, k, fh->svc_id, UINT64_MAX, &fh->w);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    *out = fh;
    return 0;
}

static void reply_opened(fuse_req_t req, int rc, sfh_t *fh, struct fuse_file_info *fi,
                         const struct fuse_entry_param *e)
{
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if (fh->kind == K_EVENTS)
        fi->nonseekable = 0;
    sfront_t *sf = SF(req);   /* req is freed by the reply, even a failed one */
    if ((e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi)) != 0) {
        if (fh->serial)
            pending_ref(sf, fh->serial, -1);
        fh_free(fh);
    }
}

static void sv_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfh_t *fh = NULL;
    int rc = do_open(SF(req), ino, fi->flags, &fh);
    reply_opened(req, rc, fh, fi, NULL);
}

/* create: an instance file; it exists once its save is published (an instance needs an
 * address). Until then its inode is a K_NEW entry of the name table. */
static void sv_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    struct fuse_entry_param e;
    sfh_t *fh = NULL;
    char *svc = NULL;
    uint32_t k = 0;
    uint64_t id = 0;
    size_t len = strlen(name);
    int rc = dir_service(sf, parent, &svc, &k, &id);
    if (rc == -EISDIR)
        rc = -EPERM;                    /* only directories (services) at the top */
    if (rc == 0 && (rc = names_check(name, len, 0)) == 0 && services_reserved(name, len))
        rc = -EINVAL;
    if (rc == 0) {
        rc = do_lookup(sf, parent, name, &e);
        if (rc == 0 && (fi->flags & O_EXCL)) {
            lookup_drop(sf, e.ino);
            rc = -EEXIST;
        }
        else if (rc == 0 && (rc = do_open(sf, e.ino, fi->flags, &fh)) < 0)
            lookup_drop(sf, e.ino);
        else if (rc == -ENOENT) {
            memset(&e, 0, sizeof(e));
            e.generation = 1;
            rc = (e.ino = name_add(sf, K_NEW, k, id, 0, svc, name)) ? 0 : -ENOMEM;
            if (rc == 0)
                rc = attr_of(sf, e.ino, &e.attr);
            if (rc == 0 && !(fh = fh_new(K_INST, k, id, svc, name)))
                rc = -ENOMEM;
            if (rc == 0) {
                fh->serial = ino_id(e.ino);
                pending_ref(sf, fh->serial, 1);
            }
        }
    }
    if (rc == 0 && fh)
        fh->dirty = 0;
    free(svc);
    reply_opened(req, rc, fh, fi, &e);
}

static void sv_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    if (fh->w) {
        evs_read(req, fh->w, size, off, !!(fi->flags & O_NONBLOCK));
        return;
    }
    pthread_mutex_lock(&fh->mu);
    if (fh->dirty || (fh->wbuf && !fh->text)) {
        /* the writing descriptor reads its own save in progress */
        size_t n = off < 0 || (size_t)off >= fh->wlen ? 0 : fh->wlen - (size_t)off;
        fuse_reply_buf(req, n ? fh->wbuf + off : NULL, n < size ? n : size);
        pthread_mutex_unlock(&fh->mu);
        return;
    }
    pthread_mutex_unlock(&fh->mu);
    if (!fh->text)
        fuse_reply_buf(req, NULL, 0);
    else
        front_reply_text(req, &fh->mu, fh->text, fh->tlen, size, off);
}

static void sv_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                    struct fuse_pollhandle *ph)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    if (fh && fh->w) {
        evs_poll(req, fh->w, ph);
        return;
    }
    fuse_pollhandle_destroy(ph);
    fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
}

/* A write adds to the save of this open (published at close or fsync). */
static void sv_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->kind != K_INST) {
        fuse_reply_err(req, EBADF);
        return;
    }
    pthread_mutex_lock(&fh->mu);
    if (fi->flags & O_APPEND)
        off = (off_t)fh->wlen;
    size_t end = (size_t)off + size;
    if (off < 0)
        rc = -EINVAL;
    else if (end > SAVE_MAX)
        rc = -EFBIG;
    else
        rc = node_space_check(SF(req)->ctx.node, size);   /* ENOSPC at the write(), as
                                                              bash's echo ignores close() */
    char *nb = NULL;
    if (rc == 0 && !(nb = realloc(fh->wbuf, end > fh->wlen ? end : fh->wlen ? fh->wlen : 1)))
        rc = -ENOMEM;
    if (rc == 0) {
        fh->wbuf = nb;
        if ((size_t)off > fh->wlen)
            memset(fh->wbuf + fh->wlen, 0, (size_t)off - fh->wlen);
        memcpy(fh->wbuf + off, buf, size);
        if (end > fh->wlen)
            fh->wlen = end;
        fh->dirty = 1;
    }
    pthread_mutex_unlock(&fh->mu);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* Whether the pending creation of name entry serial was rm'ed (sv_unlink). */
static int pending_unlinked(sfront_t *sf, uint64_t serial)
{
    sname_t *x;
    pthread_mutex_lock(&sf->ctx.mu);
    HASH_FIND(hh, sf->names, &serial, sizeof(serial), x);
    int gone = x && x->unlinked;
    pthread_mutex_unlock(&sf->ctx.mu);
    return gone;
}

/* Marks this mount's pending creations of svc/inst as rm'ed; 1 if there was one. */
static int pending_unlink(sfront_t *sf, const char *svc, const char *inst)
{
    int found = 0;
    sname_t *x, *tmp;
    pthread_mutex_lock(&sf->ctx.mu);
    HASH_ITER(hh, sf->names, x, tmp) {
        if (x->kind == K_NEW && !x->unlinked && x->opens > 0 && strcmp(x->svc, svc) == 0 &&
            strcmp(x->inst, inst) == 0) {
            x->unlinked = 1;
            found = 1;
        }
    }
    pthread_mutex_unlock(&sf->ctx.mu);
    return found;
}

/* Proposes fh's save as sid's registration: REG_IF of the instance the save was opened on,
 * REG for a creation. */
static int propose_reg(sfront_t *sf, sfh_t *fh, uint32_t k, uint64_t sid, size_t alen)
{
    cmdbuf_t b;
    if (fh->iid)
        services_cmd_reg_if(&b, node_now_ms(), fh->svc, fh->inst, sid, fh->iid, fh->wbuf,
                            alen);
    else
        services_cmd_reg(&b, node_now_ms(), fh->svc, fh->inst, sid, fh->wbuf, alen);
    return node_propose(sf->ctx.node, k, &b, NULL);
}

/* Publishes fh's save if it has one: REG with the first line as the address (under
 * fh->mu). 0 or -errno (EINVAL: no address on the first line). */
static int publish_locked(sfront_t *sf, sfh_t *fh)
{
    if (!fh->dirty)
        return 0;
    size_t alen = 0;
    while (alen < fh->wlen && fh->wbuf[alen] != '\n')
        alen++;
    while (alen > 0 && (fh->wbuf[alen - 1] == '\r' || fh->wbuf[alen - 1] == ' '))
        alen--;
    if (alen == 0 || alen > SVC_ADDR_MAX)
        return -EINVAL;
    if (fh->serial && pending_unlinked(sf, fh->serial)) {
        fh->dirty = 0;                  /* rm'ed before its first save: goes nowhere */
        return 0;
    }
    uint32_t k = sshard(sf, fh->svc);
    uint64_t sid = ssid(sf, k);
    if (!sid)
        return -EIO;
    int rc = propose_reg(sf, fh, k, sid, alen);
    if (rc == -ENOLCK) {
        /* our session ended while we were away and is not reopened yet: reopen, retry */
        uint64_t now_sid = session_local_refresh(node_session(sf->ctx.node), k, sid);
        if (now_sid && now_sid != sid)
            rc = propose_reg(sf, fh, k, now_sid, alen);
    }
    if (rc == -ENOENT && fh->iid) {
        /* The instance this save was opened on was removed (rm, TTL, end of its session)
         * or replaced: the save goes nowhere, as the data written to an unlinked file on a
         * local disk; it never brings the name back. */
        fh->dirty = 0;
        return 0;
    }
    if (rc == 0) {
        fh->dirty = 0;
        if (!fh->iid) {
            /* a creation is now that instance: later saves through this open go to it only */
            state_t *st = sstate(sf, k);
            svc_view_t v;
            inst_view_t iv;
            pthread_rwlock_rdlock(&st->lock);
            if (services_sm_get(st, fh->svc, strlen(fh->svc), &v) == 0 &&
                services_sm_inst(st, v.id, fh->inst, strlen(fh->inst), &iv) == 0)
                fh->iid = iv.id;
            pthread_rwlock_unlock(&st->lock);
            pending_ref(sf, fh->serial, -1);
            fh->serial = 0;
        }
    }
    return rc;
}

static void sv_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    if (fh->kind == K_INST) {
        pthread_mutex_lock(&fh->mu);
        rc = publish_locked(SF(req), fh);
        pthread_mutex_unlock(&fh->mu);
    }
    fuse_reply_err(req, -rc);
}

static void sv_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    sv_flush(req, ino, fi);
}

static void sv_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
    /* Taking mu also waits for a read reply still being written from fh->text (see
     * front_reply_text: the reader may close before that write returns). */
    pthread_mutex_lock(&fh->mu);
    if (fh->kind == K_INST)
        (void)publish_locked(SF(req), fh);   /* a save whose flush failed: a last try */
    if (fh->serial)
        pending_ref(SF(req), fh->serial, -1);   /* a creation never published: gone */
    pthread_mutex_unlock(&fh->mu);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

static void sv_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    sfront_t *sf = SF(req);
    char *svc = NULL;
    uint32_t k;
    int rc = dir_service(sf, parent, &svc, &k, NULL);
    if (rc == -EISDIR) {
        struct fuse_entry_param e;
        rc = do_lookup(sf, parent, name, &e);
        rc = rc < 0 ? rc : -EISDIR;
    } else if (rc == 0 && services_reserved(name, strlen(name))) {
        rc = -EPERM;
    } else if (rc == 0) {
        cmdbuf_t b;
        services_cmd_unreg(&b, node_now_ms(), svc, name);
        rc = spropose(sf, svc, &b, NULL);
        /* a name this mount created and has not saved yet: its save will go nowhere */
        if (rc == -ENOENT && pending_unlink(sf, svc, name))
            rc = 0;
    }
    free(svc);
    fuse_reply_err(req, -rc);
}

/* The service and instance names of instance inode ino (strdup'ed). */
static int inst_names(sfront_t *sf, fuse_ino_t ino, char **svc, char **inst)
{
    int kind = ino_kind(ino);
    *svc = *inst = NULL;
    if (kind == K_NEW) {
        sname_t x;
        int rc = name_get(sf, ino, &x);
        if (rc == 0) {
            *svc = x.svc;
            *inst = x.inst;
        }
        return rc;
    }
    if (kind != K_INST)
        return kind == K_DIR || kind == K_ROOT ? -EISDIR : -EPERM;
    state_t *st = sstate(sf, ino_shard(ino));
    sref_t r;
    pthread_rwlock_rdlock(&st->lock);
    int rc = resolve_locked(st, ino, &r);
    if (rc == 0 && (!(*svc = strdup(r.s.name)) || !(*inst = strdup(r.i.name)))) {
        free(*svc);
        rc = -ENOMEM;
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static void sv_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    sfront_t *sf = SF(req);
    int rc = 0, kind = ino_kind(ino);
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
        rc = -EPERM;
    else if ((to_set & FUSE_SET_ATTR_SIZE) && kind != K_INST && kind != K_NEW)
        rc = kind == K_DIR || kind == K_ROOT ? -EISDIR : -EPERM;
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE) && fi) {
        /* truncate through the writing descriptor: part of its save */
        sfh_t *fh = (sfh_t *)(uintptr_t)fi->fh;
        pthread_mutex_lock(&fh->mu);
        /* (an O_TRUNC to 0 starts the save; it publishes once something is written) */
        if ((size_t)attr->st_size > SAVE_MAX)
            rc = -EFBIG;
        else if ((size_t)attr->st_size <= fh->wlen)
            fh->wlen = (size_t)attr->st_size;
        else
            rc = -EINVAL;
        if (rc == 0 && fh->wlen > 0)
            fh->dirty = 1;
        pthread_mutex_unlock(&fh->mu);
    }
    /* a truncate by path (O_TRUNC) only starts the save that follows: nothing to do */
    if (rc == 0 && kind == K_INST &&
        (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_ATIME |
                   FUSE_SET_ATTR_ATIME_NOW))) {
        char *svc, *inst;
        rc = inst_names(sf, ino, &svc, &inst);
        if (rc == 0) {
            cmdbuf_t b;
            services_cmd_touch(&b, node_now_ms(), svc, inst);   /* touch renews */
            rc = spropose(sf, svc, &b, NULL);
            free(svc);
            free(inst);
        }
    }
    struct stat s;
    if (rc == 0)
        rc = attr_of(sf, ino, &s);
    front_reply_attr(req, rc, &s);
}

/* ---------------------------------------------------------------- xattrs */

static const char svc_xattrs[] = "user.lb\0user.ttl\0user.check\0user.check_interval";
static const char inst_xattrs[] = "user.weight\0user.load";

/* Parses a service or instance xattr value into (which, v) for SVSET_* / SVISET_*. */
static int parse_xattr(int dir, const char *name, const char *value, size_t size,
                       uint8_t *which, uint64_t *v)
{
    if (dir && strcmp(name, "user.lb") == 0) {
        int lb = services_lb_parse(value, size);
        *which = SVSET_LB;
        *v = (uint64_t)lb;
        return lb < 0 ? -EINVAL : 0;
    }
    if (dir && strcmp(name, "user.check") == 0) {
        size_t n = size && value[size - 1] == '\n' ? size - 1 : size;
        *which = SVSET_CHECK;
        if (n == 3 && memcmp(value, "tcp", 3) == 0)
            *v = SVCHECK_TCP;
        else if (n == 4 && memcmp(value, "none", 4) == 0)
            *v = SVCHECK_NONE;
        else
            return -EINVAL;
        return 0;
    }
    struct { int dir; const char *name; uint8_t which; uint64_t min, max; } nums[] = {
        { 1, "user.ttl", SVSET_TTL, 0, SVC_TTL_MAX },
        { 1, "user.check_interval", SVSET_INTERVAL, 1, SVC_INTERVAL_MAX },
        { 0, "user.weight", SVISET_WEIGHT, 0, SVC_WEIGHT_MAX },
        { 0, "user.load", SVISET_LOAD, 0, SVC_LOAD_MAX },
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        if (nums[i].dir == dir && strcmp(name, nums[i].name) == 0) {
            *which = nums[i].which;
            if (names_parse_uint(value, size, nums[i].max, v) < 0 || *v < nums[i].min)
                return -EINVAL;
            return 0;
        }
    return -ENOTSUP;                    /* not an attribute of this kind of file */
}

static int set_xattr(sfront_t *sf, fuse_ino_t ino, const char *name, const char *value,
                     size_t size)
{
    int kind = ino_kind(ino);
    if (kind != K_DIR && kind != K_INST)
        return kind == K_ROOT ? -ENOTSUP : -EPERM;
    uint8_t which = 0;
    uint64_t v = 0;
    int rc = parse_xattr(kind == K_DIR, name, value, size, &which, &v);
    if (rc < 0)
        return rc;
    char *svc = NULL, *inst = NULL;
    uint32_t k;
    rc = kind == K_DIR ? dir_service(sf, ino, &svc, &k, NULL) : inst_names(sf, ino, &svc, &inst);
    if (rc < 0)
        return rc;
    cmdbuf_t b;
    if (kind == K_DIR)
        services_cmd_set(&b, node_now_ms(), svc, which, v);
    else
        services_cmd_seti(&b, node_now_ms(), svc, inst, which, v);
    rc = spropose(sf, svc, &b, NULL);
    free(svc);
    free(inst);
    return rc;
}

static void sv_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    fuse_reply_err(req, -set_xattr(SF(req), ino, name, value, size));
}

/* removexattr: back to the default. */
static void sv_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    static const struct { const char *name, *def; } defs[] = {
        { "user.lb", "round-robin" }, { "user.ttl", "30" }, { "user.check", "none" },
        { "user.check_interval", "5" }, { "user.weight", "1" }, { "user.load", "0" },
    };
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
        if (strcmp(name, defs[i].name) == 0) {
            fuse_reply_err(req, -set_xattr(SF(req), ino, name, defs[i].def,
                                           strlen(defs[i].def)));
            return;
        }
    fuse_reply_err(req, ENODATA);
}

static void sv_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    sfront_t *sf = SF(req);
    int kind = ino_kind(ino);
    char text[64];
    int len = -1, rc = 0;
    if (kind != K_DIR && kind != K_INST) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    state_t *st = sstate(sf, ino_shard(ino));
    sref_t r;
    pthread_rwlock_rdlock(&st->lock);
    rc = resolve_locked(st, ino, &r);
    pthread_rwlock_unlock(&st->lock);
    if (rc == 0 && kind == K_DIR) {
        if (strcmp(name, "user.lb") == 0)
            len = snprintf(text, sizeof(text), "%s", services_lb_name(r.s.lb));
        else if (strcmp(name, "user.ttl") == 0)
            len = snprintf(text, sizeof(text), "%" PRIu32, r.s.ttl_s);
        else if (strcmp(name, "user.check") == 0)
            len = snprintf(text, sizeof(text), "%s", r.s.check == SVCHECK_TCP ? "tcp" : "none");
        else if (strcmp(name, "user.check_interval") == 0)
            len = snprintf(text, sizeof(text), "%" PRIu32, r.s.interval_s);
    } else if (rc == 0) {
        if (strcmp(name, "user.weight") == 0)
            len = snprintf(text, sizeof(text), "%" PRIu32, r.i.weight);
        else if (strcmp(name, "user.load") == 0)
            len = snprintf(text, sizeof(text), "%" PRIu32, r.i.load);
    }
    if (rc == 0 && len < 0)
        rc = -ENODATA;
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        front_reply_xattr(req, text, (size_t)len, size);
}

static void sv_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    int kind = ino_kind(ino);
    if (kind == K_DIR)
        front_reply_xattr(req, svc_xattrs, sizeof(svc_xattrs), size);
    else if (kind == K_INST)
        front_reply_xattr(req, inst_xattrs, sizeof(inst_xattrs), size);
    else
        front_reply_xattr(req, "", 0, size);
}

static const struct fuse_lowlevel_ops services_fuse = {
    .lookup = sv_lookup,
    .getattr = sv_getattr,
    .setattr = sv_setattr,
    .mkdir = sv_mkdir,
    .unlink = sv_unlink,
    .rmdir = sv_rmdir,
    .rename = sv_rename,
    .create = sv_create,
    .open = sv_open,
    .read = sv_read,
    .write = sv_write,
    .flush = sv_flush,
    .release = sv_release,
    .fsync = sv_fsync,
    .opendir = sv_opendir,
    .readdir = sv_readdir,
    .releasedir = sv_releasedir,
    .setxattr = sv_setxattr,
    .getxattr = sv_getxattr,
    .listxattr = sv_listxattr,
    .removexattr = sv_removexattr,
    .poll = sv_poll,
};

/* ---------------------------------------------------------------- the checker */

/* host:port ([v6]:port too) into a sockaddr. Numeric hosts first; names are resolved
 * (getaddrinfo, on the checker thread). The port is decimal, 1..65535: getaddrinfo itself
 * takes "70000" as 4464 and "65536" as 0, and would check another port. 0 or -1. */
static int resolve_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[SVC_ADDR_MAX + 1];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1])
        return -1;
    unsigned long port = 0;
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9' || port > 65535)
            return -1;
        port = port * 10 + (unsigned long)(*c - '0');
    }
    if (port == 0 || port > 65535)
        return -1;
    size_t hl = (size_t)(colon - addr);
    if (addr[0] == '[' && addr[hl - 1] == ']') {
        memcpy(host, addr + 1, hl - 2);
        host[hl - 2] = 0;
    } else {
        memcpy(host, addr, hl);
        host[hl] = 0;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV },
                    *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static uint64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* A connect of the checker under way. */
typedef struct flight {
    int fd;
    uint32_t shard;
    uint64_t iid;
    char *addr;
    uint64_t deadline;                  /* mono_ms */
} flight_t;

/* Records result ok of the check of (shard, iid) at addr in the probe table (ctx.mu held):
 * the probe is still there with that address, else the result is dropped. */
static void probe_result(sfront_t *sf, const flight_t *f, int ok)
{
    for (size_t i = 0; i < sf->nprobes; i++) {
        probe_t *p = &sf->probes[i];
        if (p->shard == f->shard && p->iid == f->iid && strcmp(p->addr, f->addr) == 0) {
            p->result = ok;
            p->fresh = 1;
        }
    }
}

/* The checker thread: a continuous loop of up to PROBES_AT_ONCE nonblocking connects, each
 * with its own PROBE_TIMEOUT_MS deadline. A probe due is started as soon as a slot is free,
 * so connects that hang (a dead host) delay no other check beyond their own timeout: with
 * N hanging addresses the table goes round in about N / PROBES_AT_ONCE * the timeout, not
 * in N / PROBES_AT_ONCE rounds of the slowest connect each. It never reads the state; it
 * wakes at least every 100 ms (a stop, new probes). */
static void *checker_main(void *arg)
{
    sfront_t *sf = arg;
    flight_t fl[PROBES_AT_ONCE];
    int nfl = 0;
    for (;;) {
        /* start what is due, as far as slots are free (addresses copied: the table may
         * change while they run) */
        flight_t start[PROBES_AT_ONCE];
        int nstart = 0;
        pthread_mutex_lock(&sf->ctx.mu);
        int stop = sf->stopping;
        uint64_t now = node_now_ms();
        for (size_t i = 0; !stop && i < sf->nprobes && nfl + nstart < PROBES_AT_ONCE; i++) {
            probe_t *p = &sf->probes[i];
            if (p->next_ms > now || !(start[nstart].addr = strdup(p->addr)))
                continue;
            p->next_ms = now + p->interval_ms;
            start[nstart].shard = p->shard;
            start[nstart++].iid = p->iid;
        }
        pthread_mutex_unlock(&sf->ctx.mu);
        if (stop)
            break;
        int done_ok[PROBES_AT_ONCE];
        flight_t done[PROBES_AT_ONCE];
        int ndone = 0;
        for (int j = 0; j < nstart; j++) {
            flight_t *f = &start[j];
            struct sockaddr_storage ss;
            socklen_t sl;
            int fd = -1, ok = 0, pending = 0;
            if (resolve_addr(f->addr, &ss, &sl) == 0 &&
                (fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) >= 0) {
                if (connect(fd, (struct sockaddr *)&ss, sl) == 0)
                    ok = 1;
                else if (errno == EINPROGRESS)
                    pending = 1;
            }
            if (pending) {
                f->fd = fd;
                f->deadline = mono_ms() + PROBE_TIMEOUT_MS;
                fl[nfl++] = *f;
            } else {
                if (fd >= 0)
                    close(fd);
                done_ok[ndone] = ok;
                done[ndone++] = *f;
            }
        }
        /* wait for connects to complete, up to the nearest deadline (100 ms at most) */
        struct pollfd pf[PROBES_AT_ONCE];
        uint64_t t = mono_ms(), wait = 100;
        for (int j = 0; j < nfl; j++) {
            pf[j].fd = fl[j].fd;
            pf[j].events = POLLOUT;
            pf[j].revents = 0;
            if (fl[j].deadline <= t)
                wait = 0;
            else if (fl[j].deadline - t < wait)
                wait = fl[j].deadline - t;
        }
        if (ndone)
            wait = 0;
        if (nfl)
            (void)poll(pf, (nfds_t)nfl, (int)wait);
        else if (wait)
            poll(NULL, 0, (int)wait);
        t = mono_ms();
        for (int j = 0; j < nfl;) {
            int fin = 0, ok = 0;
            if (pf[j].revents) {
                int err = 0;
                socklen_t el = sizeof(err);
                ok = getsockopt(fl[j].fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0;
                fin = 1;
            } else if (fl[j].deadline <= t) {
                fin = 1;                /* timed out: a failure */
            }
            if (!fin) {
                j++;
                continue;
            }
            close(fl[j].fd);
            done_ok[ndone] = ok;
            done[ndone++] = fl[j];
            fl[j] = fl[--nfl];          /* keep pf in step */
            pf[j] = pf[nfl];
        }
        if (ndone) {
            pthread_mutex_lock(&sf->ctx.mu);
            for (int j = 0; j < ndone; j++)
                probe_result(sf, &done[j], done_ok[j]);
            pthread_mutex_unlock(&sf->ctx.mu);
            for (int j = 0; j < ndone; j++)
                free(done[j].addr);
        }
    }
    for (int j = 0; j < nfl; j++) {
        close(fl[j].fd);
        free(fl[j].addr);
    }
    return NULL;
}

static void probe_free(probe_t *p)
{
    free(p->svc);
    free(p->inst);
    free(p->addr);
}

/* A health change to propose (collected under the lock, proposed after). */
struct change {
    char *svc, *inst;
    uint64_t iid;
    int healthy;
};

struct collect {
    sfront_t *sf;
    uint32_t k;
    const state_t *st;
    const svc_view_t *s;
    struct change *ch;
    int nch;
    uint64_t now;
    /* expiries */
    char *esvc[SWEEP_MAX], *einst[SWEEP_MAX];
    uint64_t eiid[SWEEP_MAX];
    int nexp;
    /* the shard's probes by instance id (sorted), so each instance finds its probe in
     * log time: a linear search per instance made a sweep of N checked instances cost N^2
     * under the state lock (10,000 instances: 10^8 steps every 100 ms) */
    struct pidx { uint64_t iid; size_t at; } *idx;
    size_t nidx;
};

static int pidx_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct pidx *)a)->iid, y = ((const struct pidx *)b)->iid;
    return x < y ? -1 : x > y;
}

/* Under sf->ctx.mu: the probe of instance v of service c->s, made or updated; a fresh
 * result that differs from v's health becomes a change. */
static int collect_inst(void *arg, const inst_view_t *v)
{
    struct collect *c = arg;
    if (v->expires_ms && v->expires_ms <= c->now && c->nexp < SWEEP_MAX &&
        (c->esvc[c->nexp] = strdup(c->s->name)) && (c->einst[c->nexp] = strdup(v->name)))
        c->eiid[c->nexp++] = v->id;
    if (c->s->check != SVCHECK_TCP)
        return 0;
    sfront_t *sf = c->sf;
    probe_t *p = NULL;
    if (c->idx) {
        struct pidx key = { v->id, 0 }, *hit = bsearch(&key, c->idx, c->nidx, sizeof(key),
                                                       pidx_cmp);
        if (hit)
            p = &sf->probes[hit->at];
    } else {
        for (size_t i = 0; i < sf->nprobes && !p; i++)
            if (sf->probes[i].shard == c->k && sf->probes[i].iid == v->id)
                p = &sf->probes[i];
    }
    if (p && strcmp(p->addr, v->addr) != 0) {
        char *a = strdup(v->addr);
        if (!a)
            return 0;
        free(p->addr);
        p->addr = a;
        p->result = -1;
        p->fresh = 0;
        p->next_ms = 0;
    }
    if (!p) {
        if (sf->nprobes == sf->cap) {
            size_t cap = sf->cap ? sf->cap * 2 : 16;
            probe_t *np = realloc(sf->probes, cap * sizeof(*np));
            if (!np)
                return 0;
            sf->probes = np;
            sf->cap = cap;
        }
        p = &sf->probes[sf->nprobes];
        memset(p, 0, sizeof(*p));
        p->shard = c->k;
        p->iid = v->id;
        p->result = -1;
        if (!(p->svc = strdup(c->s->name)) || !(p->inst = strdup(v->name)) ||
            !(p->addr = strdup(v->addr))) {
            probe_free(p);
            return 0;
        }
        sf->nprobes++;
    }
    p->interval_ms = (uint64_t)c->s->interval_s * 1000;
    if (p->next_ms > c->now + p->interval_ms)
        p->next_ms = c->now;            /* the interval was shortened */
    p->seen = 1;
    if (p->fresh) {
        p->fresh = 0;
        if (p->result >= 0 && p->result != v->healthy && c->nch < SWEEP_MAX) {
            struct change *x = &c->ch[c->nch];
            if ((x->svc = strdup(c->s->name)) && (x->inst = strdup(v->name))) {
                x->iid = v->id;
                x->healthy = p->result;
                c->nch++;
            } else {
                free(x->svc);
            }
        }
    }
    return 0;
}

static int collect_svc(void *arg, const svc_view_t *s)
{
    struct collect *c = arg;
    c->s = s;
    services_sm_each_inst(c->st, s->id, collect_inst, c);
    return 0;
}

/* Leader side, shard k: proposes EXPIRE for instances past their TTL end (apply re-checks
 * with the command's time) and HEALTH for check results that changed. Not the leader: its
 * probes go (another node checks). */
static void sweep_shard(sfront_t *sf, uint32_t k)
{
    int leader = node_is_leader(sf->ctx.node, k);
    struct change ch[SWEEP_MAX];
    struct collect c = { .sf = sf, .k = k, .st = sstate(sf, k), .ch = ch,
                         .now = node_now_ms() };
    state_t *st = sstate(sf, k);
    pthread_rwlock_rdlock(&st->lock);
    pthread_mutex_lock(&sf->ctx.mu);
    for (size_t i = 0; i < sf->nprobes; i++)
        if (sf->probes[i].shard == k)
            sf->probes[i].seen = 0;
    /* (an instance is visited once per sweep: the probes added meanwhile need no index;
     * without memory for it, collect_inst searches linearly) */
    if (leader && (c.idx = malloc((sf->nprobes ? sf->nprobes : 1) * sizeof(*c.idx)))) {
        for (size_t i = 0; i < sf->nprobes; i++)
            if (sf->probes[i].shard == k)
                c.idx[c.nidx++] = (struct pidx){ sf->probes[i].iid, i };
        qsort(c.idx, c.nidx, sizeof(*c.idx), pidx_cmp);
    }
    if (leader)
        services_sm_each(st, collect_svc, &c);
    free(c.idx);
    for (size_t i = 0; i < sf->nprobes;) {
        if (sf->probes[i].shard == k && !sf->probes[i].seen) {
            probe_free(&sf->probes[i]);
            sf->probes[i] = sf->probes[--sf->nprobes];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&sf->ctx.mu);
    pthread_rwlock_unlock(&st->lock);
    for (int i = 0; i < c.nexp; i++) {
        cmdbuf_t b;
        services_cmd_expire(&b, node_now_ms(), c.esvc[i], c.einst[i], c.eiid[i]);
        int rc = node_propose(sf->ctx.node, k, &b, NULL);
        if (rc < 0 && rc != -EAGAIN && rc != -ENOENT)
            fprintf(stderr, "quorumfs: service %s instance %s: TTL expiry not committed: %s\n",
                    c.esvc[i], c.einst[i], strerror(-rc));
        free(c.esvc[i]);
        free(c.einst[i]);
    }
    for (int i = 0; i < c.nch; i++) {
        cmdbuf_t b;
        services_cmd_health(&b, node_now_ms(), ch[i].svc, ch[i].inst, ch[i].iid,
                            ch[i].healthy);
        int rc = node_propose(sf->ctx.node, k, &b, NULL);
        if (rc < 0 && rc != -ENOENT)
            fprintf(stderr, "quorumfs: service %s instance %s: health change not committed: "
                    "%s\n", ch[i].svc, ch[i].inst, strerror(-rc));
        free(ch[i].svc);
        free(ch[i].inst);
    }
}

static void sv_sweep(void *ctx)
{
    sfront_t *sf = ctx;
    for (uint32_t k = 0; k < node_nshards(sf->ctx.node); k++)
        sweep_shard(sf, k);
}

/* ---------------------------------------------------------------- node side */

static void sv_deliver(void *ctx, effect_t *e)
{
    if (e->kind == EFF_CONFIG_REV)
        evs_deliver(((sfront_t *)ctx)->events, e->shard, e->shard + 1);
}

static void *sv_start(struct node *n)
{
    _Static_assert(offsetof(sfront_t, ctx) == 0, "front_ctx_new makes the head of the context");
    sfront_t *sf = front_ctx_new(sizeof(sfront_t), n);
    if (!sf)
        return NULL;
    if (!(sf->events = evs_table_new(n))) {
        front_ctx_free(sf);
        return NULL;
    }
    if (pthread_create(&sf->checker, NULL, checker_main, sf) == 0)
        sf->checker_on = 1;
    else
        fprintf(stderr, "quorumfs: services/: the TCP checker thread did not start: "
                "user.check=tcp is not supported on this node\n");
    return sf;
}

static void sv_stop(void *ctx)
{
    sfront_t *sf = ctx;
    if (sf->checker_on) {
        pthread_mutex_lock(&sf->ctx.mu);
        sf->stopping = 1;
        pthread_mutex_unlock(&sf->ctx.mu);
        pthread_join(sf->checker, NULL);
    }
    for (size_t i = 0; i < sf->nprobes; i++)
        probe_free(&sf->probes[i]);
    free(sf->probes);
    sname_t *x, *tmp;
    HASH_ITER(hh, sf->names, x, tmp) {
        HASH_DELETE(hh, sf->names, x);
        sname_free(x);
    }
    evs_table_free(sf->events);   /* watches of files still open stay with them, detached */
    front_ctx_free(sf);
}

const ns_front_t services_front = {
    .start = sv_start,
    .sweep = sv_sweep,
    .stop = sv_stop,
    .deliver = sv_deliver,
    .forget = sv_forget,
    .fuse = &services_fuse,
};
