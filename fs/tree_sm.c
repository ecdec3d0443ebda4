/* fs/tree_sm.c — the object tree of a shard and its commands (see tree_sm.h). Objects are
 * found by id through a hash of pages of slots (ids are dense), and by name through their
 * parent's uthash of children. A namespace's behaviour comes in through its hooks
 * (tree_hooks(ns)); the tree calls them at the points tree_sm.h names, in a fixed order.
 *
 * Determinism: whatever reaches applied state, an effect or a snapshot walks children in
 * name order (tree_sorted_children); hash order is used only where the order cannot show
 * (freeing, a maximum). Every command is validated before it changes anything; allocation
 * failures abort. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/names.h"
#include "fs/ns_sm.h"
#include "fs/state.h"
#include "fs/tree_sm.h"

/* ---- blobs ---- */

static blob_t *blob_init(blob_t *b, const void *p, size_t len)
{
    if (!b)
        return NULL;
    b->refs = 1;
    b->len = (uint32_t)len;
    if (len && p)
        memcpy(b->data, p, len);
    return b;
}

blob_t *blob_new(const void *p, size_t len)
{
    return blob_init(malloc(sizeof(blob_t) + len), p, len);
}

blob_t *blob_xnew(const void *p, size_t len)
{
    return blob_init(xmalloc(sizeof(blob_t) + len), p, len);
}

blob_t *blob_ref(blob_t *b)
{
    if (b)
        __atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void blob_unref(blob_t *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(b);
}

const tree_hooks_t *tree_hooks(int ns)
{
    return ns > NS_NONE && ns < NS__COUNT && ns_sms[ns] ? ns_sms[ns]->tree : NULL;
}

/* ---- ids ---- */

/* id -> object. Ids are handed out in sequence, so a hash of pages of 1024 slots costs
 * about 8 bytes per object, where a hash handle per object would cost 56. */
#define IDPAGE_SHIFT 10
#define IDPAGE_SLOTS (1u << IDPAGE_SHIFT)

typedef struct idpage {
    uint64_t no;
    uint32_t live;
    UT_hash_handle hh;
    obj_t *slot[IDPAGE_SLOTS];
} idpage_t;

static idpage_t *page_of(const tree_t *t, uint64_t id)
{
    uint64_t no = id >> IDPAGE_SHIFT;
    idpage_t *pg;
    HASH_FIND(hh, t->idpages, &no, sizeof(no), pg);
    return pg;
}

static obj_t **slot_of(idpage_t *pg, uint64_t id) { return &pg->slot[id & (IDPAGE_SLOTS - 1)]; }

obj_t *tree_by_id(const state_t *st, uint64_t id)
{
    idpage_t *pg = page_of(&st->tree, id);
    return pg ? *slot_of(pg, id) : NULL;
}

static void id_add(tree_t *t, obj_t *o)
{
    idpage_t *pg = page_of(t, o->id);
    if (!pg) {
        pg = xcalloc(1, sizeof(*pg));
        pg->no = o->id >> IDPAGE_SHIFT;
        HASH_ADD(hh, t->idpages, no, sizeof(pg->no), pg);
    }
    ASSERT(!*slot_of(pg, o->id));
    *slot_of(pg, o->id) = o;
    pg->live++;
    t->nobjs++;
}

static void id_del(tree_t *t, obj_t *o)
{
    idpage_t *pg = page_of(t, o->id);
    ASSERT(pg && *slot_of(pg, o->id) == o);
    *slot_of(pg, o->id) = NULL;
    t->nobjs--;
    if (--pg->live == 0) {
        HASH_DELETE(hh, t->idpages, pg);
        free(pg);
    }
}

/* ---- lookups ---- */

obj_t *tree_root(const state_t *st, int ns)
{
    return ns > NS_NONE && ns < NS__COUNT ? st->tree.root[ns] : NULL;
}

obj_t *tree_child(const obj_t *dir, const char *name)
{
    obj_t *o;
    HASH_FIND(hh, dir->children, name, strlen(name), o);
    return o;
}

obj_t *tree_resolve(const state_t *st, int ns, const char *path, size_t len)
{
    obj_t *o = tree_root(st, ns);
    size_t i = 0;
    while (i < len && o) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        if (j > i) {
            obj_t *c;
            if (o->type != OBJ_DIR)
                return NULL;
            HASH_FIND(hh, o->children, path + i, j - i, c);
            o = c;
        }
        i = j + 1;
    }
    return o;
}

int tree_path(const obj_t *o, char *buf, size_t size)
{
    size_t need = 0;
    for (const obj_t *p = o; p->parent; p = p->parent)
        need += strlen(p->name) + 1;
    if (need == 0) {
        if (size < 1)
            return -ENAMETOOLONG;
        buf[0] = 0;
        return 0;
    }
    need--; /* no leading slash */
    if (need + 1 > size)
        return -ENAMETOOLONG;
    buf[need] = 0;
    size_t end = need;
    for (const obj_t *p = o; p->parent; p = p->parent) {
        size_t n = strlen(p->name);
        end -= n;
        memcpy(buf + end, p->name, n);
        if (end > 0)
            buf[--end] = '/';
    }
    return (int)need;
}

int tree_live(const obj_t *o, uint64_t now_ms)
{
    const tree_hooks_t *hk = tree_hooks(o->ns);
    return !hk || !hk->live || hk->live(o, now_ms);
}

uint32_t tree_nlink(const obj_t *o) { return o->type == OBJ_DIR ? 2 + o->nsubdirs : 1; }

int64_t tree_ns_of_ms(uint64_t ms)
{
    const uint64_t max = (uint64_t)INT64_MAX / 1000000;
    return (int64_t)((ms < max ? ms : max) * 1000000);
}

int tree_format_uint(char *buf, size_t size, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    if (size == 0)
        return n;
    if ((size_t)n > size)
        return -ERANGE;
    memcpy(buf, tmp, (size_t)n);
    return n;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp((*(const obj_t *const *)a)->name, (*(const obj_t *const *)b)->name);
}

obj_t **tree_sorted_children(const obj_t *o, size_t *n)
{
    *n = 0;
    if (!o->nchildren)
        return NULL;
    obj_t **kids = xmalloc(o->nchildren * sizeof(*kids));
    for (obj_t *c = o->children; c; c = c->hh.next)
        kids[(*n)++] = c;
    ASSERT(*n == o->nchildren);
    qsort(kids, *n, sizeof(*kids), cmp_names);
    return kids;
}

void tree_walk(const obj_t *root, void (*fn)(void *arg, const obj_t *o), void *arg)
{
    size_t n;
    obj_t **kids = tree_sorted_children(root, &n);
    for (size_t i = 0; i < n; i++) {
        fn(arg, kids[i]);
        tree_walk(kids[i], fn, arg);
    }
    free(kids);
}

/* ---- changes ---- */

/* Links o into parent's children, counting it (and a directory as a subdirectory). */
static void attach(obj_t *parent, obj_t *o)
{
    o->parent = parent;
    HASH_ADD(hh, parent->children, name[0], strlen(o->name), o);
    parent->nchildren++;
    if (o->type == OBJ_DIR)
        parent->nsubdirs++;
}

/* Takes o out of its parent's children (o->parent stays set). */
static void detach(obj_t *o)
{
    obj_t *p = o->parent;
    HASH_DELETE(hh, p->children, o);
    p->nchildren--;
    if (o->type == OBJ_DIR)
        p->nsubdirs--;
}

static void set_mtime(obj_t *o, int64_t ns)
{
    o->mtime_ns = ns;
    o->mtime_ms = ns > 0 ? (uint64_t)ns / 1000000 : 0;
}

/* A change of o's content or entries at apply time now: mtime and ctime. */
static void touch_obj(obj_t *o, int64_t now)
{
    set_mtime(o, now);
    o->ctime_ns = now;
}

/* Creates an object under parent (NULL for a namespace root) with the default metadata of
 * its type and times 0; files start empty, a link without a target (the caller sets it). */
static obj_t *obj_add(tree_t *t, obj_t *parent, const char *name, size_t namelen,
                      uint8_t type, uint8_t ns, uint64_t id)
{
    obj_t *o = xcalloc(1, sizeof(*o) + namelen + 1);
    memcpy(o->name, name, namelen);
    o->id = id;
    o->type = type;
    o->ns = ns;
    o->mode = type == OBJ_DIR ? TREE_MODE_DIR : type == OBJ_LINK ? TREE_MODE_LINK
                                                                   : TREE_MODE_FILE;
    if (type == OBJ_FILE)
        o->val = blob_xnew(NULL, 0);
    id_add(t, o);
    if (parent)
        attach(parent, o);
    return o;
}

/* A new object's metadata: owner, and every time the apply time. */
static void born(obj_t *o, uint32_t mode, uint32_t uid, uint32_t gid, int64_t now)
{
    if (o->type != OBJ_LINK)
        o->mode = (uint16_t)(mode & TREE_MODE_MASK);
    o->uid = uid;
    o->gid = gid;
    o->atime_ns = now;
    touch_obj(o, now);
}

/* The owner fields of a creating command: u32 mode, uid, gid in version 2, the defaults in
 * version 1. -EINVAL for an owner of (uint32_t)-1 or a mode above the permission bits. */
typedef struct owner {
    uint32_t mode, uid, gid;
} owner_t;

static int get_owner(const cmd_hdr_t *h, cmdrd_t *r, uint32_t defmode, owner_t *ow)
{
    if (h->version < 2) {
        *ow = (owner_t){ defmode, 0, 0 };
        return 0;
    }
    ow->mode = cmd_get_u32(r);
    ow->uid = cmd_get_u32(r);
    ow->gid = cmd_get_u32(r);
    return ow->mode > TREE_MODE_MASK || ow->uid == UINT32_MAX || ow->gid == UINT32_MAX
               ? -EINVAL : 0;
}

/* Children are freed in hash order: only the teardown of a whole subtree (the tree's own
 * free) has any, and what on_free does there cannot depend on the order. */
void tree_remove(state_t *st, obj_t *o)
{
    obj_t *c, *tmp;
    HASH_ITER(hh, o->children, c, tmp)
        tree_remove(st, c);
    const tree_hooks_t *hk = tree_hooks(o->ns);
    if (hk && hk->on_free)
        hk->on_free(st, o);
    if (o->parent)
        detach(o);
    id_del(&st->tree, o);
    blob_unref(o->val);
    free(o);
}

/* In apply: an object its namespace says is gone at the command's time (a cache key whose
 * expiry passed, even before its EXPIRE entry commits) is removed; returns NULL then, else
 * o. Deterministic: the time is the command's. */
static obj_t *reap(state_t *st, obj_t *o, uint64_t now_ms)
{
    if (!o || tree_live(o, now_ms))
        return o;
    const tree_hooks_t *hk = tree_hooks(o->ns);
    if (hk->on_reap)
        hk->on_reap(st, o);
    tree_remove(st, o);
    return NULL;
}

/* Splits path into (parent directory, last name), checking the name. Returns 0 or -errno. */
static int split_parent(state_t *st, const cmd_hdr_t *h, const char *path, size_t len,
                        obj_t **parent, const char **name, size_t *namelen)
{
    if (len == 0)
        return -EPERM; /* the namespace root itself */
    if (len > TREE_PATH_MAX)
        return -ENAMETOOLONG;
    size_t k = len;
    while (k > 0 && path[k - 1] != '/')
        k--;
    obj_t *p = tree_resolve(st, h->ns, path, k ? k - 1 : 0);
    if (!p)
        return -ENOENT;
    if (p->type != OBJ_DIR)
        return -ENOTDIR;
    *parent = p;
    *name = path + k;
    *namelen = len - k;
    return names_check(*name, *namelen, tree_hooks(h->ns)->at_reserved);
}

/* The child name[0..nl) of p after reaping it if it is gone at the command's time. */
static obj_t *live_child(state_t *st, const cmd_hdr_t *h, obj_t *p, const char *name,
                         size_t nl)
{
    obj_t *o;
    HASH_FIND(hh, p->children, name, nl, o);
    return reap(st, o, h->now_ms);
}

static void result_id(sm_result_t *res, uint64_t id)
{
    if (res) {
        memcpy(res->data, &id, 8);
        res->len = 8;
    }
}

/* Decodes a path and resolves it to an existing object other than a namespace root. */
static int existing(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, obj_t **out)
{
    const char *path;
    size_t len = cmd_get_path(r, &path);
    if (r->err)
        return -EINVAL;
    obj_t *o = reap(st, tree_resolve(st, h->ns, path, len), h->now_ms);
    if (!o)
        return -ENOENT;
    if (!o->parent)
        return -EPERM;
    *out = o;
    return 0;
}

static int apply_mkdir(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *path, *name;
    size_t len = cmd_get_path(r, &path), nl;
    owner_t ow;
    obj_t *p;
    int rc = get_owner(h, r, TREE_MODE_DIR, &ow);
    if (r->err)
        return -EINVAL;
    if (rc < 0)
        return rc;
    rc = split_parent(st, h, path, len, &p, &name, &nl);
    if (rc < 0)
        return rc;
    if (live_child(st, h, p, name, nl))
        return -EEXIST;
    int64_t now = tree_ns_of_ms(h->now_ms);
    obj_t *o = obj_add(&st->tree, p, name, nl, OBJ_DIR, h->ns, st->tree.next_id++);
    born(o, ow.mode, ow.uid, ow.gid, now);
    touch_obj(p, now);
    result_id(res, o->id);
    return 0;
}

static int apply_rmdir(state_t *st, const cmd_hdr_t *h, cmdrd_t *r)
{
    obj_t *o;
    int rc = existing(st, h, r, &o);
    if (rc < 0)
        return rc;
    if (o->type != OBJ_DIR)
        return -ENOTDIR;
    if (o->nchildren)
        return -ENOTEMPTY;
    touch_obj(o->parent, tree_ns_of_ms(h->now_ms));
    tree_remove(st, o);
    return 0;
}

/* Where a PUT or WRITE of a path goes: the existing file (after reaping one that is gone),
 * or none, and then the directory and name where CMD_PUT_CREATE may create it. */
typedef struct target {
    obj_t *file, *parent;
    const char *name;
    size_t nl;
} target_t;

/* With CMD_PUT_IFID, the path must hold the object ifid (or, with CMD_PUT_CREATE, nothing):
 * -ESTALE otherwise, also when the directory is gone. */
static int find_target(state_t *st, const cmd_hdr_t *h, const char *path, size_t len,
                       uint8_t flags, uint64_t ifid, target_t *t)
{
    int rc = split_parent(st, h, path, len, &t->parent, &t->name, &t->nl);
    if (rc < 0)
        return (flags & CMD_PUT_IFID) && (rc == -ENOENT || rc == -ENOTDIR) ? -ESTALE : rc;
    t->file = live_child(st, h, t->parent, t->name, t->nl);
    if ((flags & CMD_PUT_IFID) &&
        (t->file ? t->file->id != ifid : !(flags & CMD_PUT_CREATE)))
        return -ESTALE;
    if (t->file && (flags & CMD_PUT_EXCL))
        return -EEXIST;
    if (t->file && t->file->type == OBJ_DIR)
        return -EISDIR;
    if (t->file && t->file->type == OBJ_LINK)
        return -ELOOP;      /* a value is never written through a link here */
    if (!t->file && !(flags & CMD_PUT_CREATE))
        return -ENOENT;
    return 0;
}

/* Creates the target's file. want: a proposer-picked id, taken when it is valid and unused
 * (that proposer told the kernel already); otherwise an id of apply's own, and that
 * proposer's inode goes stale. The file is empty until set_value gives it its first
 * value, which the caller does before returning. */
static obj_t *create_file(state_t *st, const cmd_hdr_t *h, const target_t *t, uint64_t want,
                          const owner_t *ow)
{
    tree_t *tr = &st->tree;
    uint64_t id = tr->next_id;
    if (want >= STATE_PID_FIRST && want < STATE_PID_END && !tree_by_id(st, want))
        id = want;
    else
        tr->next_id++;
    if (id >= STATE_PID_FIRST && id >= tr->next_pid)
        tr->next_pid = id + 1;
    obj_t *o = obj_add(tr, t->parent, t->name, t->nl, OBJ_FILE, h->ns, id);
    int64_t now = tree_ns_of_ms(h->now_ms);
    born(o, ow->mode, ow->uid, ow->gid, now);
    touch_obj(t->parent, now);
    const tree_hooks_t *hk = tree_hooks(h->ns);
    if (hk->on_create)
        hk->on_create(st, o);
    return o;
}

/* Makes b (a reference the callee takes over) the value of file o, with the namespace's
 * effects (cache TTL/LRU/eviction, config revision and history). */
static void set_value(state_t *st, const cmd_hdr_t *h, obj_t *o, blob_t *b, sm_result_t *res)
{
    uint32_t oldlen = o->val->len;
    blob_unref(o->val);
    o->val = b;
    touch_obj(o, tree_ns_of_ms(h->now_ms));
    result_id(res, o->id);
    const tree_hooks_t *hk = tree_hooks(h->ns);
    if (hk->on_put)
        hk->on_put(st, o, oldlen, h->now_ms);   /* cache: may evict other keys, never o */
}

/* The fields PUT and WRITE share after the path: flags, [id], [ifid], [owner]. */
typedef struct value_head {
    uint8_t flags;
    uint64_t want, ifid;
    owner_t ow;
    int rc;           /* the owner's check */
} value_head_t;

static void get_value_head(const cmd_hdr_t *h, cmdrd_t *r, value_head_t *v)
{
    v->flags = cmd_get_u8(r);
    v->want = (v->flags & CMD_PUT_ID) ? cmd_get_u64(r) : 0;
    v->ifid = (v->flags & CMD_PUT_IFID) ? cmd_get_u64(r) : 0;
    v->ow = (owner_t){ TREE_MODE_FILE, 0, 0 };
    v->rc = (v->flags & CMD_PUT_CREATE) ? get_owner(h, r, TREE_MODE_FILE, &v->ow) : 0;
}

static int apply_put(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *path;
    const uint8_t *val;
    size_t len = cmd_get_path(r, &path);
    value_head_t v;
    get_value_head(h, r, &v);
    uint8_t flags = v.flags;
    size_t vlen = cmd_get_bytes(r, &val);
    target_t t;
    if (r->err || v.rc < 0)
        return -EINVAL;
    if (vlen > TREE_VALUE_MAX)
        return -EFBIG;
    int rc = find_target(st, h, path, len, flags, v.ifid, &t);
    if (rc < 0)
        return rc;
    if (t.file && (flags & CMD_PUT_KEEP)) {
        result_id(res, t.file->id);     /* it existed: left unchanged */
        return 0;
    }
    const tree_hooks_t *hk = tree_hooks(h->ns);
    if (!t.file && (flags & CMD_PUT_EXCL) && vlen == 0 && hk->on_excl_create) {
        obj_t *o = create_file(st, h, &t, v.want, &v.ow);
        result_id(res, o->id);
        hk->on_excl_create(st, o, h->now_ms);
        return 0;
    }
    obj_t *o = t.file ? t.file : create_file(st, h, &t, v.want, &v.ow);
    set_value(st, h, o, blob_xnew(val, vlen), res);
    return 0;
}

/* One write() request applied to the value as it is now, so concurrent writers through
 * different opens never undo each other (each request is one atomic step). A file it
 * would create is created only once the request is known to fit. */
static int apply_write(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *path;
    const uint8_t *data;
    size_t len = cmd_get_path(r, &path);
    value_head_t v;
    get_value_head(h, r, &v);
    uint8_t flags = v.flags;
    uint64_t off = cmd_get_u64(r);
    size_t dlen = cmd_get_bytes(r, &data);
    target_t t;
    if (r->err || v.rc < 0 || (dlen && (flags & CMD_WRITE_SETLEN)))
        return -EINVAL;
    if (off > TREE_VALUE_MAX || dlen > TREE_VALUE_MAX)
        return -EFBIG;
    int rc = find_target(st, h, path, len,
                         flags & (CMD_PUT_CREATE | CMD_PUT_EXCL | CMD_PUT_IFID), v.ifid, &t);
    if (rc < 0)
        return rc;
    const blob_t *cur = t.file ? t.file->val : NULL;
    size_t base = (flags & CMD_WRITE_TRUNC) || !cur ? 0 : cur->len;
    if (flags & CMD_WRITE_APPEND)
        off = base;
    size_t end = (flags & CMD_WRITE_SETLEN) ? (size_t)off : (size_t)off + dlen;
    if (end > TREE_VALUE_MAX)
        return -EFBIG;
    size_t newlen = (flags & CMD_WRITE_SETLEN) ? end : (end > base ? end : base);
    blob_t *b = blob_xnew(NULL, newlen);
    size_t keep = base < newlen ? base : newlen;
    if (keep)
        memcpy(b->data, cur->data, keep);
    memset(b->data + keep, 0, newlen - keep);
    if (dlen)
        memcpy(b->data + off, data, dlen);
    obj_t *o = t.file ? t.file : create_file(st, h, &t, v.want, &v.ow);
    set_value(st, h, o, b, res);
    return 0;
}

static int apply_unlink(state_t *st, const cmd_hdr_t *h, cmdrd_t *r)
{
    obj_t *o;
    int rc = existing(st, h, r, &o);
    if (rc < 0)
        return rc;
    if (o->type == OBJ_DIR)
        return -EISDIR;
    const tree_hooks_t *hk = tree_hooks(h->ns);
    if (hk->on_unlink)
        hk->on_unlink(st, o);
    touch_obj(o->parent, tree_ns_of_ms(h->now_ms));
    tree_remove(st, o);
    return 0;
}

/* Calls on_unlink (now 0) or on_move_in for every file and link at or below o, in name
 * order. */
static void each_file(state_t *st, obj_t *o, int in, uint64_t now)
{
    const tree_hooks_t *hk = tree_hooks(o->ns);
    if (in ? !hk->on_move_in : !hk->on_unlink)
        return;
    if (o->type != OBJ_DIR) {
        if (in)
            hk->on_move_in(st, o, now);
        else
            hk->on_unlink(st, o);
    }
    size_t n;
    obj_t **kids = tree_sorted_children(o, &n);
    for (size_t i = 0; i < n; i++)
        each_file(st, kids[i], in, now);
    free(kids);
}

/* Gives o a new name by reallocating it (names are stored inline), fixing every pointer
 * that referred to the old allocation. o must already be out of its parent's hash. */
static obj_t *obj_rename(state_t *st, obj_t *o, const char *name, size_t nl)
{
    obj_t *n = xmalloc(sizeof(*n) + nl + 1);
    memcpy(n, o, sizeof(*n));
    memcpy(n->name, name, nl);
    n->name[nl] = 0;
    obj_t *c, *tmp;
    HASH_ITER(hh, n->children, c, tmp)
        c->parent = n;
    idpage_t *pg = page_of(&st->tree, o->id);
    ASSERT(pg && *slot_of(pg, o->id) == o);
    *slot_of(pg, o->id) = n;
    const tree_hooks_t *hk = tree_hooks(o->ns);
    if (hk && hk->on_realloc)
        hk->on_realloc(st, o, n);
    free(o);
    return n;
}

/* Length of the longest path below o, relative to o ("" for a file: 0). */
static size_t subtree_path_len(const obj_t *o)
{
    size_t best = 0;
    for (const obj_t *c = o->children; c; c = c->hh.next) {
        size_t l = 1 + strlen(c->name) + subtree_path_len(c);
        if (l > best)
            best = l;
    }
    return best;
}

static int is_ancestor(const obj_t *a, const obj_t *o)
{
    for (; o; o = o->parent)
        if (o == a)
            return 1;
    return 0;
}

/* Keeps a detached copy of file o, which a rename over path (len plen) replaces, in the
 * tree's replaced list, dropping the oldest beyond TREE_REPLACED_KEEP entries or
 * TREE_REPLACED_BYTES of values (a value larger than that is not kept). */
static void keep_replaced(tree_t *t, const obj_t *o, const char *path, size_t plen)
{
    if (o->val->len > TREE_REPLACED_BYTES)
        return;
    while (t->nreplaced == TREE_REPLACED_KEEP ||
           (t->nreplaced && t->replaced_bytes + o->val->len > TREE_REPLACED_BYTES)) {
        obj_t *old = t->replaced[0];
        t->replaced_bytes -= old->val->len;
        blob_unref(old->val);
        free(old);
        memmove(t->replaced, t->replaced + 1, --t->nreplaced * sizeof(t->replaced[0]));
    }
    obj_t *c = xmalloc(sizeof(*c) + plen + 1);
    memcpy(c, o, sizeof(*c));
    c->parent = c->children = NULL;
    memset(&c->hh, 0, sizeof(c->hh));
    memset(&c->u, 0, sizeof(c->u));
    c->val = blob_ref(o->val);
    memcpy(c->name, path, plen);
    c->name[plen] = 0;
    t->replaced[t->nreplaced++] = c;
    t->replaced_bytes += c->val->len;
}

const obj_t *tree_replaced(const state_t *st, uint64_t id)
{
    const tree_t *t = &st->tree;
    for (uint32_t i = t->nreplaced; i-- > 0;)
        if (t->replaced[i]->id == id)
            return t->replaced[i];
    return NULL;
}

static void free_replaced(tree_t *t)
{
    for (uint32_t i = 0; i < t->nreplaced; i++) {
        blob_unref(t->replaced[i]->val);
        free(t->replaced[i]);
    }
    t->nreplaced = 0;
    t->replaced_bytes = 0;
}

/* A rename is validated whole, then applied: the files below src leave their paths (in name
 * order), a replaced dst is removed, src moves, and the files arrive (in name order). */
static int apply_rename(state_t *st, const cmd_hdr_t *h, cmdrd_t *r)
{
    const char *from, *to, *name;
    size_t flen = cmd_get_path(r, &from);
    size_t tlen = cmd_get_path(r, &to), nl;
    uint8_t flags = cmd_get_u8(r);
    obj_t *tp;
    if (r->err)
        return -EINVAL;
    obj_t *src = reap(st, tree_resolve(st, h->ns, from, flen), h->now_ms);
    if (!src)
        return -ENOENT;
    if (!src->parent)
        return -EPERM;
    int rc = split_parent(st, h, to, tlen, &tp, &name, &nl);
    if (rc < 0)
        return rc;
    if (src->type == OBJ_DIR && is_ancestor(src, tp))
        return -EINVAL;
    if (src->type == OBJ_DIR && tlen + subtree_path_len(src) > TREE_PATH_MAX)
        return -ENAMETOOLONG;   /* something below would get a path too long to serve */
    obj_t *dst = live_child(st, h, tp, name, nl);
    if (dst == src)
        return 0;
    if (dst) {
        if (flags & CMD_RENAME_NOREPLACE)
            return -EEXIST;
        if (dst->type == OBJ_DIR && src->type != OBJ_DIR)
            return -EISDIR;
        if (dst->type != OBJ_DIR && src->type == OBJ_DIR)
            return -ENOTDIR;
        if (dst->type == OBJ_DIR && dst->nchildren)
            return -ENOTEMPTY;
    }
    int64_t now = tree_ns_of_ms(h->now_ms);
    const tree_hooks_t *hk = tree_hooks(h->ns);
    each_file(st, src, 0, h->now_ms);
    if (dst && dst->type == OBJ_FILE && src->type == OBJ_FILE && hk->on_replace)
        hk->on_replace(st, src, dst);
    if (dst && dst->type == OBJ_FILE)
        keep_replaced(&st->tree, dst, to, tlen);
    if (dst)
        tree_remove(st, dst);  /* replaced: what arrives below stands for it */
    touch_obj(src->parent, now);
    detach(src);
    obj_t *n = obj_rename(st, src, name, nl);
    attach(tp, n);
    touch_obj(tp, now);
    n->ctime_ns = now;         /* as Linux file systems do: the moved inode changed */
    each_file(st, n, 1, h->now_ms);
    return 0;
}

static int apply_xattr(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, int remove)
{
    const char *path;
    const uint8_t *name, *val = NULL;
    size_t len = cmd_get_path(r, &path);
    size_t nlen = cmd_get_bytes(r, &name), vlen = 0;
    char nm[256];
    if (!remove)
        vlen = cmd_get_bytes(r, &val);
    if (r->err || nlen == 0 || nlen >= sizeof(nm) || memchr(name, 0, nlen))
        return -EINVAL;
    memcpy(nm, name, nlen);
    nm[nlen] = 0;
    obj_t *o = reap(st, tree_resolve(st, h->ns, path, len), h->now_ms);
    if (!o)
        return -ENOENT;
    if (o->type == OBJ_LINK)
        return -EPERM;      /* as Linux: no user. attributes on a link */
    const tree_hooks_t *hk = tree_hooks(h->ns);
    int rc;
    if (remove)
        rc = hk->removexattr ? hk->removexattr(st, o, nm) : -ENOTSUP;
    else
        rc = hk->setxattr ? hk->setxattr(st, o, nm, val, vlen, h->now_ms) : -ENOTSUP;
    if (rc == 0)
        o->ctime_ns = tree_ns_of_ms(h->now_ms);
    return rc;
}

/* The mtime of o was set at apply time now_ms: a file's namespace hears it (cache/: its TTL
 * restarts, as `touch` always did). */
static void mtime_set(state_t *st, const cmd_hdr_t *h, obj_t *o)
{
    const tree_hooks_t *hk = tree_hooks(h->ns);
    if (o->type == OBJ_FILE && hk->on_touch)
        hk->on_touch(st, o, h->now_ms);
}

/* The version 1 `touch` (a v1 log may hold it): mtime and ctime = now. */
static int apply_setmtime(state_t *st, const cmd_hdr_t *h, cmdrd_t *r)
{
    obj_t *o;
    int rc = existing(st, h, r, &o);
    if (rc < 0)
        return rc;
    touch_obj(o, tree_ns_of_ms(h->now_ms));
    mtime_set(st, h, o);
    return 0;
}

/* chmod, chown, utimensat in one command, validated whole. The namespace root may be
 * changed too (`chmod 1777 cache`, tar restoring "."). */
static int apply_setattr(state_t *st, const cmd_hdr_t *h, cmdrd_t *r)
{
    const char *path;
    size_t len = cmd_get_path(r, &path);
    uint64_t ifid = cmd_get_u64(r);
    uint8_t mask = cmd_get_u8(r);
    uint32_t mode = cmd_get_u32(r), uid = cmd_get_u32(r), gid = cmd_get_u32(r);
    int64_t at = (int64_t)cmd_get_u64(r), mt = (int64_t)cmd_get_u64(r);
    if (r->err || (mask & ~CMD_SETATTR_ALL) ||
        ((mask & CMD_SETATTR_ATIME) && (mask & CMD_SETATTR_ATIME_NOW)) ||
        ((mask & CMD_SETATTR_MTIME) && (mask & CMD_SETATTR_MTIME_NOW)) ||
        ((mask & CMD_SETATTR_MODE) && mode > TREE_MODE_MASK) ||
        ((mask & CMD_SETATTR_UID) && uid == UINT32_MAX) ||
        ((mask & CMD_SETATTR_GID) && gid == UINT32_MAX))
        return -EINVAL;
    obj_t *o = reap(st, tree_resolve(st, h->ns, path, len), h->now_ms);
    if (!o)
        return -ENOENT;
    if (ifid && o->id != ifid)
        return -ESTALE;
    if ((mask & CMD_SETATTR_MODE) && o->type == OBJ_LINK)
        return -EOPNOTSUPP;
    int64_t now = tree_ns_of_ms(h->now_ms);
    if (mask & CMD_SETATTR_MODE)
        o->mode = (uint16_t)mode;
    if (mask & CMD_SETATTR_UID)
        o->uid = uid;
    if (mask & CMD_SETATTR_GID)
        o->gid = gid;
    if (mask & (CMD_SETATTR_ATIME | CMD_SETATTR_ATIME_NOW))
        o->atime_ns = (mask & CMD_SETATTR_ATIME) ? at : now;
    if (mask & (CMD_SETATTR_MTIME | CMD_SETATTR_MTIME_NOW))
        set_mtime(o, (mask & CMD_SETATTR_MTIME) ? mt : now);
    o->ctime_ns = now;
    if (mask & (CMD_SETATTR_MTIME | CMD_SETATTR_MTIME_NOW))
        mtime_set(st, h, o);
    return 0;
}

static int apply_symlink(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *path, *name;
    const uint8_t *target;
    size_t len = cmd_get_path(r, &path), nl;
    size_t tlen = cmd_get_bytes(r, &target);
    uint32_t uid = cmd_get_u32(r), gid = cmd_get_u32(r);
    obj_t *p;
    if (r->err || uid == UINT32_MAX || gid == UINT32_MAX || memchr(target, 0, tlen))
        return -EINVAL;
    if (tlen == 0)
        return -ENOENT;     /* symlink(2) with an empty target */
    if (tlen > TREE_LINK_MAX)
        return -ENAMETOOLONG;
    int rc = split_parent(st, h, path, len, &p, &name, &nl);
    if (rc < 0)
        return rc;
    if (live_child(st, h, p, name, nl))
        return -EEXIST;
    int64_t now = tree_ns_of_ms(h->now_ms);
    obj_t *o = obj_add(&st->tree, p, name, nl, OBJ_LINK, h->ns, st->tree.next_id++);
    o->val = blob_xnew(target, tlen);
    born(o, TREE_MODE_LINK, uid, gid, now);
    touch_obj(p, now);
    const tree_hooks_t *hk = tree_hooks(h->ns);
    if (hk->on_symlink)
        hk->on_symlink(st, o, h->now_ms);
    result_id(res, o->id);
    return 0;
}

int tree_sm_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    if (!tree_hooks(h->ns))
        return -ENOTSUP;
    switch (h->op) {
    case CMD_MKDIR: return apply_mkdir(st, h, r, res);
    case CMD_RMDIR: return apply_rmdir(st, h, r);
    case CMD_PUT: return apply_put(st, h, r, res);
    case CMD_WRITE: return apply_write(st, h, r, res);
    case CMD_UNLINK: return apply_unlink(st, h, r);
    case CMD_RENAME: return apply_rename(st, h, r);
    case CMD_SETXATTR: return apply_xattr(st, h, r, 0);
    case CMD_REMOVEXATTR: return apply_xattr(st, h, r, 1);
    case CMD_SETMTIME: return apply_setmtime(st, h, r);
    case CMD_SETATTR: return apply_setattr(st, h, r);
    case CMD_SYMLINK: return apply_symlink(st, h, r, res);
    default: return -EINVAL;
    }
}

/* ---- lifetime ---- */

void tree_sm_init(state_t *st)
{
    tree_t *t = &st->tree;
    ASSERT(!t->nobjs && !t->idpages);
    t->next_id = STATE_FIRST_ID + ((uint64_t)st->shard << STATE_SHARD_ID_BITS);
    t->next_pid = STATE_PID_FIRST;
    for (int ns = 1; ns < NS__COUNT; ns++)
        t->root[ns] = obj_add(t, NULL, ns_names[ns], strlen(ns_names[ns]), OBJ_DIR,
                              (uint8_t)ns, NS_ROOT_ID(ns));
}

void tree_sm_free(state_t *st)
{
    tree_t *t = &st->tree;
    for (int ns = 1; ns < NS__COUNT; ns++) {
        if (t->root[ns])
            tree_remove(st, t->root[ns]);
        t->root[ns] = NULL;
    }
    ASSERT(t->nobjs == 0 && !t->idpages);
    t->next_id = t->next_pid = 0;
    free_replaced(t);
}

/* ---- snapshot ---- */

/* Tree section (docs/FORMATS.md "fs state snapshot"): next ids, then every object, parent
 * before child, namespaces in order, children in name order, so the same tree gives the
 * same bytes on every replica; a 0 tag ends it. */
static void snap_obj(snapout_t *o, const obj_t *ob)
{
    so_u8(o, 1);
    so_u64(o, ob->id);
    so_u64(o, ob->parent ? ob->parent->id : 0);
    so_u8(o, ob->ns);
    so_u8(o, ob->type);
    so_blob(o, ob->name, (uint32_t)strlen(ob->name));
    so_u32(o, ob->mode);
    so_u32(o, ob->uid);
    so_u32(o, ob->gid);
    so_u64(o, (uint64_t)ob->atime_ns);
    so_u64(o, (uint64_t)ob->mtime_ns);
    so_u64(o, (uint64_t)ob->ctime_ns);
    if (ob->type != OBJ_DIR)
        so_blob(o, ob->val->data, ob->val->len);
    const tree_hooks_t *hk = tree_hooks(ob->ns);
    if (hk && hk->snap_fields)
        hk->snap_fields(o, ob);
}

static void snap_each(void *arg, const obj_t *ob) { snap_obj(arg, ob); }

void tree_sm_snapshot(const state_t *st, snapout_t *o)
{
    so_u64(o, st->tree.next_id);
    so_u64(o, st->tree.next_pid);
    for (int ns = 1; ns < NS__COUNT; ns++) {
        snap_obj(o, st->tree.root[ns]);
        tree_walk(st->tree.root[ns], snap_each, o);
    }
    so_u8(o, 0);
}

/* Reads one object record (tag already consumed). Returns 0 or -QERR_*. */
static int restore_obj(snapin_t *in, state_t *st)
{
    tree_t *t = &st->tree;
    uint64_t id = si_u64(in), pid = si_u64(in);
    uint8_t ns = si_u8(in), type = si_u8(in);
    char name[NAME_MAX_BYTES + 1];
    int nlen = si_str(in, name, sizeof(name));
    if (nlen < 0)
        return nlen;
    size_t nl = (size_t)nlen;
    if (ns <= NS_NONE || ns >= NS__COUNT ||
        (type != OBJ_DIR && type != OBJ_FILE && type != OBJ_LINK))
        return -QERR_CORRUPT;
    const tree_hooks_t *hk = tree_hooks(ns);
    obj_t *ob;
    if (pid == 0) {
        ob = t->root[ns];
        if (id != NS_ROOT_ID(ns) || type != OBJ_DIR || strcmp(name, ns_names[ns]) != 0)
            return -QERR_CORRUPT;
    } else {
        obj_t *p = tree_by_id(st, pid);
        if (!hk || !p || p->type != OBJ_DIR || p->ns != ns || tree_by_id(st, id) ||
            names_check(name, nl, hk->at_reserved) < 0 ||
            id < STATE_FIRST_ID || (id >= t->next_id && id < STATE_PID_FIRST) ||
            (id >= STATE_PID_FIRST && id >= t->next_pid) || tree_child(p, name))
            return -QERR_CORRUPT;
        ob = obj_add(t, p, name, nl, type, ns, id);
    }
    uint32_t mode = si_u32(in);
    ob->uid = si_u32(in);
    ob->gid = si_u32(in);
    ob->atime_ns = (int64_t)si_u64(in);
    set_mtime(ob, (int64_t)si_u64(in));
    ob->ctime_ns = (int64_t)si_u64(in);
    if (in->err)
        return in->err;
    if (mode > TREE_MODE_MASK)
        return si_corrupt(in, "tree: a mode above 07777");
    ob->mode = (uint16_t)mode;
    if (type != OBJ_DIR) {
        uint32_t vl = si_u32(in);
        if (in->err || vl > (type == OBJ_LINK ? TREE_LINK_MAX : TREE_VALUE_MAX))
            return in->err ? in->err : si_corrupt(in, "tree: a value or link target too long");
        blob_t *b = blob_xnew(NULL, vl);
        si_bytes(in, b->data, vl);
        blob_unref(ob->val);
        ob->val = b;
    }
    if (hk && hk->restore_fields) {
        int rc = hk->restore_fields(in, ob);
        if (rc < 0)
            return rc;
    }
    return in->err;
}

int tree_sm_restore(state_t *st, snapin_t *in)
{
    tree_t *t = &st->tree;
    t->next_id = si_u64(in);
    t->next_pid = si_u64(in);
    if (in->err)
        return in->err;
    if (t->next_id < STATE_FIRST_ID || t->next_id > STATE_PID_FIRST ||
        t->next_pid < STATE_PID_FIRST || t->next_pid > STATE_PID_END)
        return -QERR_CORRUPT;
    for (;;) {
        uint8_t tag = si_u8(in);
        if (in->err)
            return in->err;
        if (tag == 0)
            break;
        int rc = tag == 1 ? restore_obj(in, st) : -QERR_CORRUPT;
        if (rc < 0)
            return rc;
    }
    const char *why = tree_sm_verify(st);
    return why ? si_corrupt(in, why) : 0;
}

/* ---- invariants ---- */

typedef struct verify {
    const state_t *st;
    int64_t now;       /* the shard's time in ns: no ctime is later */
    uint64_t seen;
    const char *why;
} verify_t;

static void verify_obj(verify_t *v, const obj_t *o, size_t pathlen)
{
    const tree_t *t = &v->st->tree;
    const char **why = &v->why;
    v->seen++;
    SM_VERIFY(why, tree_by_id(v->st, o->id) == o, "tree: an object is not found by its id");
    SM_VERIFY(why, o->type == OBJ_DIR || o->type == OBJ_FILE || o->type == OBJ_LINK,
              "tree: an object of no type");
    SM_VERIFY(why, (o->type != OBJ_DIR) == (o->val != NULL),
              "tree: a file or link without a value, or a directory with one");
    SM_VERIFY(why, o->mode <= TREE_MODE_MASK, "tree: a mode above 07777");
    SM_VERIFY(why, o->ctime_ns <= v->now, "tree: a ctime after the shard's time");
    SM_VERIFY(why, o->mtime_ms == (o->mtime_ns > 0 ? (uint64_t)o->mtime_ns / 1000000 : 0),
              "tree: mtime_ms is not derived from mtime_ns");
    if (o->type == OBJ_LINK && o->val) {
        SM_VERIFY(why, o->val->len >= 1 && o->val->len <= TREE_LINK_MAX &&
                           !memchr(o->val->data, 0, o->val->len),
                  "tree: a link target empty, too long or with a NUL byte");
        SM_VERIFY(why, o->mode == TREE_MODE_LINK, "tree: a link whose mode is not 0777");
    }
    SM_VERIFY(why, pathlen <= TREE_PATH_MAX, "tree: a path over TREE_PATH_MAX");
    if (o->parent) {
        const tree_hooks_t *hk = tree_hooks(o->ns);
        SM_VERIFY(why, hk, "tree: an object below the root of a namespace without hooks");
        SM_VERIFY(why, o->ns == o->parent->ns, "tree: a child in another namespace");
        SM_VERIFY(why, o->parent->type == OBJ_DIR, "tree: a child of a file");
        SM_VERIFY(why, !hk || names_check(o->name, strlen(o->name), hk->at_reserved) == 0,
                  "tree: an invalid name");
        SM_VERIFY(why, tree_child(o->parent, o->name) == o, "tree: a child not found by name");
        SM_VERIFY(why, o->id >= STATE_FIRST_ID &&
                           (o->id < t->next_id ||
                            (o->id >= STATE_PID_FIRST && o->id < t->next_pid)),
                  "tree: an id outside the ranges handed out");
    }
    uint32_t n = 0, nd = 0;
    for (const obj_t *c = o->children; c && !*why; c = c->hh.next) {
        n++;
        nd += c->type == OBJ_DIR;
        SM_VERIFY(why, c->parent == o, "tree: a child whose parent link points elsewhere");
        if (!*why)
            verify_obj(v, c, pathlen + (pathlen ? 1 : 0) + strlen(c->name));
    }
    SM_VERIFY(why, n == o->nchildren, "tree: nchildren differs from the children");
    SM_VERIFY(why, nd == o->nsubdirs,
              "tree: a directory's link count differs from its subdirectories");
}

const char *tree_sm_verify(const state_t *st)
{
    const tree_t *t = &st->tree;
    verify_t v = { .st = st, .now = tree_ns_of_ms(st->now_ms) };
    SM_VERIFY(&v.why, t->next_id >= STATE_FIRST_ID && t->next_id <= STATE_PID_FIRST &&
                          t->next_pid >= STATE_PID_FIRST && t->next_pid <= STATE_PID_END,
              "tree: next ids outside their ranges");
    for (int ns = 1; ns < NS__COUNT && !v.why; ns++) {
        const obj_t *r = t->root[ns];
        SM_VERIFY(&v.why, r && r->id == NS_ROOT_ID(ns) && r->ns == ns && !r->parent &&
                              r->type == OBJ_DIR && strcmp(r->name, ns_names[ns]) == 0,
                  "tree: a namespace root is missing or wrong");
        if (!v.why)
            verify_obj(&v, r, 0);
    }
    SM_VERIFY(&v.why, v.seen == t->nobjs, "tree: nobjs differs from the objects in the tree");
    uint64_t live = 0;
    for (const idpage_t *pg = t->idpages; pg; pg = pg->hh.next)
        live += pg->live;
    SM_VERIFY(&v.why, live == t->nobjs, "tree: the id index holds other objects than the tree");
    return v.why;
}

void tree_sm_check(const state_t *st) { SM_ASSERT_VERIFIED(tree_sm_verify(st)); }

/* ---- encoders ---- */

static void owner(cmdbuf_t *b, uint32_t mode, uint32_t uid, uint32_t gid)
{
    cmd_u32(b, mode & TREE_MODE_MASK);
    cmd_u32(b, uid);
    cmd_u32(b, gid);
}

void tree_cmd_mkdir(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint32_t mode,
                    uint32_t uid, uint32_t gid)
{
    cmd_begin(b, CMD_MKDIR, (uint8_t)ns, now);
    cmd_str(b, path);
    owner(b, mode, uid, gid);
}

void tree_cmd_path(cmdbuf_t *b, uint8_t op, uint64_t now, int ns, const char *path)
{
    ASSERT(op == CMD_MKDIR || op == CMD_RMDIR || op == CMD_UNLINK || op == CMD_SETMTIME);
    if (op == CMD_MKDIR) {
        tree_cmd_mkdir(b, now, ns, path, TREE_MODE_DIR, 0, 0);
        return;
    }
    cmd_begin(b, op, (uint8_t)ns, now);
    cmd_str(b, path);
}

/* The path, the flags, the ids they announce and the owner of a creation, common to PUT
 * and WRITE. */
static void begin_value(cmdbuf_t *b, uint8_t op, uint64_t now, int ns, const char *path,
                        uint8_t flags, uint64_t id, uint64_t ifid, uint32_t mode,
                        uint32_t uid, uint32_t gid)
{
    flags &= (uint8_t)~(CMD_PUT_ID | CMD_PUT_IFID);
    flags |= (id ? CMD_PUT_ID : 0) | (ifid ? CMD_PUT_IFID : 0);
    cmd_begin(b, op, (uint8_t)ns, now);
    cmd_str(b, path);
    cmd_u8(b, flags);
    if (id)
        cmd_u64(b, id);
    if (ifid)
        cmd_u64(b, ifid);
    if (flags & CMD_PUT_CREATE)
        owner(b, mode, uid, gid);
}

void tree_cmd_put_full(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                       uint64_t id, uint64_t ifid, uint32_t mode, uint32_t uid, uint32_t gid,
                       const void *val, size_t len)
{
    begin_value(b, CMD_PUT, now, ns, path, flags, id, ifid, mode, uid, gid);
    cmd_bytes(b, val, len);
}

void tree_cmd_put(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                  uint64_t id, const void *val, size_t len)
{
    tree_cmd_put_full(b, now, ns, path, flags, id, 0, TREE_MODE_FILE, 0, 0, val, len);
}

void tree_cmd_create(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                     uint64_t id, uint32_t mode, uint32_t uid, uint32_t gid, const void *val,
                     size_t len)
{
    tree_cmd_put_full(b, now, ns, path, flags | CMD_PUT_CREATE, id, 0, mode, uid, gid, val,
                      len);
}

void tree_cmd_write_full(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                         uint64_t id, uint64_t ifid, uint32_t mode, uint32_t uid,
                         uint32_t gid, uint64_t off, const void *data, size_t len)
{
    begin_value(b, CMD_WRITE, now, ns, path, flags, id, ifid, mode, uid, gid);
    cmd_u64(b, off);
    cmd_bytes(b, data, len);
}

void tree_cmd_write(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                    uint64_t id, uint64_t off, const void *data, size_t len)
{
    tree_cmd_write_full(b, now, ns, path, flags, id, 0, TREE_MODE_FILE, 0, 0, off, data, len);
}

void tree_cmd_symlink(cmdbuf_t *b, uint64_t now, int ns, const char *path,
                      const char *target, uint32_t uid, uint32_t gid)
{
    cmd_begin(b, CMD_SYMLINK, (uint8_t)ns, now);
    cmd_str(b, path);
    cmd_str(b, target);
    cmd_u32(b, uid);
    cmd_u32(b, gid);
}

void tree_cmd_setattr(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint64_t ifid,
                      uint8_t mask, uint32_t mode, uint32_t uid, uint32_t gid,
                      int64_t atime_ns, int64_t mtime_ns)
{
    cmd_begin(b, CMD_SETATTR, (uint8_t)ns, now);
    cmd_str(b, path);
    cmd_u64(b, ifid);
    cmd_u8(b, mask);
    cmd_u32(b, mode);
    cmd_u32(b, uid);
    cmd_u32(b, gid);
    cmd_u64(b, (uint64_t)atime_ns);
    cmd_u64(b, (uint64_t)mtime_ns);
}

void tree_cmd_rename(cmdbuf_t *b, uint64_t now, int ns, const char *from, const char *to,
                     uint8_t flags)
{
    cmd_begin(b, CMD_RENAME, (uint8_t)ns, now);
    cmd_str(b, from);
    cmd_str(b, to);
    cmd_u8(b, flags);
}

void tree_cmd_setxattr(cmdbuf_t *b, uint64_t now, int ns, const char *path, const char *name,
                       const void *val, size_t len)
{
    cmd_begin(b, CMD_SETXATTR, (uint8_t)ns, now);
    cmd_str(b, path);
    cmd_str(b, name);
    cmd_bytes(b, val, len);
}

void tree_cmd_removexattr(cmdbuf_t *b, uint64_t now, int ns, const char *path,
                          const char *name)
{
    cmd_begin(b, CMD_REMOVEXATTR, (uint8_t)ns, now);
    cmd_str(b, path);
    cmd_str(b, name);
}
