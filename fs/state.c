/* fs/state.c — the object tree and the apply/snapshot/restore of the mount's state machine
 * (see state.h). Namespace-specific effects are delegated to fs/cache.c and fs/config.c;
 * namespace modules (fs/ns_sm.h) and the session table (fs/session_sm.h) apply their own
 * commands. sm_apply decides the command's time, applies under the write lock, and hands
 * the effects apply emitted (fs/effects.h) to the delivery hook after releasing it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/cache.h"
#include "fs/cmd.h"
#include "fs/config.h"
#include "fs/names.h"
#include "fs/ns_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"

#define VALUE_MAX (1u << 20)
#define STATE_SNAP_VERSION 2   /* 2: the applied time stamp and the session table */

const char *const ns_names[NS__COUNT] = {
    NULL, "cache", "config", "jobs", "locks", "logs", "queues", "search", "services",
};

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

static blob_t empty_blob_storage = { .refs = 1u << 30, .len = 0 };
static blob_t *empty_blob(void) { return blob_ref(&empty_blob_storage); }

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

obj_t *state_by_id(state_t *st, uint64_t id)
{
    uint64_t no = id >> IDPAGE_SHIFT;
    idpage_t *pg;
    HASH_FIND(hh, st->idpages, &no, sizeof(no), pg);
    return pg ? pg->slot[id & (IDPAGE_SLOTS - 1)] : NULL;
}

static int id_add(state_t *st, obj_t *o)
{
    uint64_t no = o->id >> IDPAGE_SHIFT;
    idpage_t *pg;
    HASH_FIND(hh, st->idpages, &no, sizeof(no), pg);
    if (!pg) {
        if (!(pg = calloc(1, sizeof(*pg))))
            return -1;
        pg->no = no;
        HASH_ADD(hh, st->idpages, no, sizeof(pg->no), pg);
    }
    pg->slot[o->id & (IDPAGE_SLOTS - 1)] = o;
    pg->live++;
    st->nobjs++;
    return 0;
}

static void id_del(state_t *st, obj_t *o)
{
    uint64_t no = o->id >> IDPAGE_SHIFT;
    idpage_t *pg;
    HASH_FIND(hh, st->idpages, &no, sizeof(no), pg);
    if (!pg || pg->slot[o->id & (IDPAGE_SLOTS - 1)] != o)
        return;
    pg->slot[o->id & (IDPAGE_SLOTS - 1)] = NULL;
    st->nobjs--;
    if (--pg->live == 0) {
        HASH_DELETE(hh, st->idpages, pg);
        free(pg);
    }
}

/* Points the id's slot at o (after o was reallocated). */
static void id_move(state_t *st, obj_t *o)
{
    uint64_t no = o->id >> IDPAGE_SHIFT;
    idpage_t *pg;
    HASH_FIND(hh, st->idpages, &no, sizeof(no), pg);
    if (pg)
        pg->slot[o->id & (IDPAGE_SLOTS - 1)] = o;
}

obj_t *state_child(obj_t *dir, const char *name)
{
    obj_t *o;
    HASH_FIND(hh, dir->children, name, strlen(name), o);
    return o;
}

obj_t *state_resolve(state_t *st, int ns, const char *path, size_t len)
{
    if (ns <= NS_NONE || ns >= NS__COUNT)
        return NULL;
    obj_t *o = st->ns_root[ns];
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

int state_path(const obj_t *o, char *buf, size_t size)
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

int state_format_uint(char *buf, size_t size, uint64_t v)
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

int state_cache_live(const obj_t *o, uint64_t now_ms)
{
    return o->ns != NS_CACHE || o->type != OBJ_FILE || o->u.cache.expires_ms == 0 ||
           o->u.cache.expires_ms > now_ms;
}

/* In apply: a cache key whose expiry has passed at the command's time is gone, even if
 * its EXPIRE entry has not been committed yet (readers already treat it as gone). Removes
 * it and returns NULL; otherwise returns o. Deterministic: the time is the command's. */
static obj_t *reap(state_t *st, obj_t *o, uint64_t now_ms)
{
    if (o && !state_cache_live(o, now_ms)) {
        state_remove(st, o);
        st->cache_expirations++;
        return NULL;
    }
    return o;
}

/* Creates an object under parent (NULL for a namespace root). Returns NULL on OOM. */
static obj_t *obj_add(state_t *st, obj_t *parent, const char *name, size_t namelen,
                      uint8_t type, uint8_t ns, uint64_t id)
{
    obj_t *o = calloc(1, sizeof(*o) + namelen + 1);
    if (!o)
        return NULL;
    memcpy(o->name, name, namelen);
    o->id = id;
    o->type = type;
    o->ns = ns;
    o->parent = parent;
    if (type == OBJ_FILE)
        o->val = empty_blob();
    if (id_add(st, o) < 0) {
        blob_unref(o->val);
        free(o);
        return NULL;
    }
    if (parent) {
        HASH_ADD(hh, parent->children, name[0], namelen, o);
        parent->nchildren++;
    }
    return o;
}

void state_remove(state_t *st, obj_t *o)
{
    obj_t *c, *tmp;
    HASH_ITER(hh, o->children, c, tmp)
        state_remove(st, c);
    if (o->ns == NS_CACHE && o->type == OBJ_FILE)
        cache_on_remove(st, o);
    if (o->ns == NS_CONFIG)
        config_on_free(o);
    if (o->parent) {
        HASH_DELETE(hh, o->parent->children, o);
        o->parent->nchildren--;
    }
    id_del(st, o);
    blob_unref(o->val);
    free(o);
}

/* Releases the namespace modules' state and the session table. */
static void modules_free(state_t *st)
{
    for (int ns = 1; ns < NS__COUNT; ns++)
        if (ns_sms[ns] && st->ns_state[ns]) {
            ns_sms[ns]->free(st);
            st->ns_state[ns] = NULL;
        }
    session_sm_free(&st->sessions);
}

/* Gives every namespace module its empty state (out of memory aborts). */
static void modules_init(state_t *st)
{
    for (int ns = 1; ns < NS__COUNT; ns++)
        if (ns_sms[ns]) {
            ns_sms[ns]->init(st);
            ASSERT(st->ns_state[ns]);
        }
}

state_t *state_new(uint64_t cache_max_bytes)
{
    state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* Apply must not starve behind a stream of readers. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    st->cache_max_bytes = cache_max_bytes;
    st->next_id = STATE_FIRST_ID;
    st->next_pid = STATE_PID_FIRST;
    st->events = calloc(CONFIG_EVENTS_KEPT, sizeof(cfg_event_t));
    if (!st->events)
        goto fail;
    for (int ns = 1; ns < NS__COUNT; ns++) {
        st->ns_root[ns] = obj_add(st, NULL, ns_names[ns], strlen(ns_names[ns]), OBJ_DIR,
                                  (uint8_t)ns, NS_ROOT_ID(ns));
        if (!st->ns_root[ns])
            goto fail;
    }
    modules_init(st);
    return st;
fail:
    state_free(st);
    return NULL;
}

static void state_clear(state_t *st)
{
    modules_free(st);
    for (int ns = 1; ns < NS__COUNT; ns++) {
        if (st->ns_root[ns])
            state_remove(st, st->ns_root[ns]);
        st->ns_root[ns] = NULL;
    }
    if (st->events) {
        for (size_t i = 0; i < CONFIG_EVENTS_KEPT; i++) {
            free(st->events[i].path);
            st->events[i].path = NULL;
        }
    }
    st->nevents = 0;
}

void state_free(state_t *st)
{
    if (!st)
        return;
    state_clear(st);
    effects_clear(&st->outbox);
    free(st->events);
    free(st->ttl_heap);
    pthread_rwlock_destroy(&st->lock);
    free(st);
}

/* Splits path into (parent object, last name). Returns 0 or -errno. */
/* Longest namespace-relative path an object may have, so that every object's path fits
 * the PATH_MAX-sized buffers of the FUSE side (expiry, events, opens). */
#define PATH_LEN_MAX 4000

static int split_parent(state_t *st, int ns, const char *path, size_t len, obj_t **parent,
                        const char **name, size_t *namelen)
{
    if (len == 0)
        return -EPERM; /* the namespace root itself */
    if (len > PATH_LEN_MAX)
        return -ENAMETOOLONG;
    size_t k = len;
    while (k > 0 && path[k - 1] != '/')
        k--;
    obj_t *p = state_resolve(st, ns, path, k ? k - 1 : 0);
    if (!p)
        return -ENOENT;
    if (p->type != OBJ_DIR)
        return -ENOTDIR;
    *parent = p;
    *name = path + k;
    *namelen = len - k;
    return names_check(*name, *namelen, ns == NS_CONFIG);
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
    obj_t *o = reap(st, state_resolve(st, h->ns, path, len), h->now_ms);
    if (!o)
        return -ENOENT;
    if (!o->parent)
        return -EPERM;
    *out = o;
    return 0;
}

static int ns_takes_objects(int ns)
{
    return ns == NS_CACHE || ns == NS_CONFIG;
}

static int apply_mkdir(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *path, *name;
    size_t len = cmd_get_path(r, &path), nl;
    obj_t *p;
    if (r->err)
        return -EINVAL;
    int rc = split_parent(st, h->ns, path, len, &p, &name, &nl);
    if (rc < 0)
        return rc;
    obj_t *o;
    HASH_FIND(hh, p->children, name, nl, o);
    if (reap(st, o, h->now_ms))
        return -EEXIST;
    o = obj_add(st, p, name, nl, OBJ_DIR, h->ns, st->next_id++);
    if (!o)
        return -ENOMEM;
    o->mtime_ms = h->now_ms;
    p->mtime_ms = h->now_ms;
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
    o->parent->mtime_ms = h->now_ms;
    state_remove(st, o);
    return 0;
}

/* Finds (or, with CMD_PUT_CREATE, creates) the file at path for PUT and WRITE, after
 * reaping an expired key of that name. want: a proposer-picked id for a new file, or 0. */
static int file_for_write(state_t *st, const cmd_hdr_t *h, const char *path, size_t len,
                          uint8_t flags, uint64_t want, obj_t **out, int *created)
{
    *created = 0;
    const char *name;
    size_t nl;
    obj_t *p, *o;
    int rc = split_parent(st, h->ns, path, len, &p, &name, &nl);
    if (rc < 0)
        return rc;
    HASH_FIND(hh, p->children, name, nl, o);
    o = reap(st, o, h->now_ms);
    if (o && (flags & CMD_PUT_EXCL))
        return -EEXIST;
    if (o && o->type == OBJ_DIR)
        return -EISDIR;
    if (!o && !(flags & CMD_PUT_CREATE))
        return -ENOENT;
    if (!o) {
        /* The proposer's id when it is valid and unused (it told the kernel already);
         * otherwise an id of our own, and that proposer's inode goes stale. */
        uint64_t id = st->next_id;
        if (want >= STATE_PID_FIRST && want < STATE_PID_END && !state_by_id(st, want))
            id = want;
        else
            st->next_id++;
        if (id >= STATE_PID_FIRST && id >= st->next_pid)
            st->next_pid = id + 1;
        o = obj_add(st, p, name, nl, OBJ_FILE, h->ns, id);
        if (!o)
            return -ENOMEM;
        p->mtime_ms = h->now_ms;
        if (h->ns == NS_CACHE)
            cache_on_create(st, o);
        *created = 1;              /* empty until set_value gives it its first value */
    }
    *out = o;
    return 0;
}

/* Makes b (a reference the callee takes over) the value of file o, with the namespace's
 * effects (cache TTL/LRU/eviction, config revision and history). */
static void set_value(state_t *st, const cmd_hdr_t *h, obj_t *o, blob_t *b, sm_result_t *res)
{
    uint32_t oldlen = o->val->len;
    blob_unref(o->val);
    o->val = b;
    o->mtime_ms = h->now_ms;
    result_id(res, o->id);
    if (h->ns == NS_CACHE)
        cache_on_put(st, o, h->now_ms, oldlen);  /* may evict other keys, never o */
    else if (h->ns == NS_CONFIG)
        config_on_put(st, o, h->now_ms);
}

static int apply_put(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *path;
    const uint8_t *val;
    size_t len = cmd_get_path(r, &path);
    uint8_t flags = cmd_get_u8(r);
    uint64_t want = (flags & CMD_PUT_ID) ? cmd_get_u64(r) : 0;
    size_t vlen = cmd_get_bytes(r, &val);
    obj_t *o;
    int created;
    if (r->err)
        return -EINVAL;
    if (vlen > VALUE_MAX)
        return -EFBIG;
    int rc = file_for_write(st, h, path, len, flags, want, &o, &created);
    if (rc < 0)
        return rc;
    if ((flags & CMD_PUT_KEEP) && !created) {
        result_id(res, o->id);     /* it existed: left unchanged */
        return 0;
    }
    blob_t *b = vlen ? blob_new(val, vlen) : empty_blob();
    if (!b)
        return -ENOMEM;
    set_value(st, h, o, b, res);
    return 0;
}

/* One write() request applied to the value as it is now, so concurrent writers through
 * different opens never undo each other (each request is one atomic step). */
static int apply_write(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *path;
    const uint8_t *data;
    size_t len = cmd_get_path(r, &path);
    uint8_t flags = cmd_get_u8(r);
    uint64_t want = (flags & CMD_PUT_ID) ? cmd_get_u64(r) : 0;
    uint64_t off = cmd_get_u64(r);
    size_t dlen = cmd_get_bytes(r, &data);
    obj_t *o;
    int created;
    if (r->err || (dlen && (flags & CMD_WRITE_SETLEN)))
        return -EINVAL;
    if (off > VALUE_MAX || dlen > VALUE_MAX)
        return -EFBIG;
    int rc = file_for_write(st, h, path, len, flags & (CMD_PUT_CREATE | CMD_PUT_EXCL), want, &o,
                            &created);
    if (rc < 0)
        return rc;
    size_t base = (flags & CMD_WRITE_TRUNC) ? 0 : o->val->len;
    if (flags & CMD_WRITE_APPEND)
        off = base;
    size_t end = (flags & CMD_WRITE_SETLEN) ? (size_t)off : (size_t)off + dlen;
    if (end > VALUE_MAX)
        return -EFBIG;
    size_t newlen = (flags & CMD_WRITE_SETLEN) ? end : (end > base ? end : base);
    blob_t *b = blob_new(NULL, newlen);
    if (!b)
        return -ENOMEM;
    size_t keep = base < newlen ? base : newlen;
    memcpy(b->data, o->val->data, keep);
    memset(b->data + keep, 0, newlen - keep);
    if (dlen)
        memcpy(b->data + off, data, dlen);
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
    if (h->ns == NS_CONFIG)
        config_on_delete(st, o);
    o->parent->mtime_ms = h->now_ms;
    state_remove(st, o);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp((*(const obj_t *const *)a)->name, (*(const obj_t *const *)b)->name);
}

/* The children of o in name order (malloc'ed; NULL when there are none or on OOM, with
 * *n = 0 then). Whatever walks children to produce replicated effects must use this order:
 * hash order differs between a replica that applied the log and one restored from a
 * snapshot. */
static obj_t **sorted_children(const obj_t *o, size_t *n)
{
    *n = 0;
    if (!o->nchildren)
        return NULL;
    obj_t **kids = malloc(o->nchildren * sizeof(*kids));
    if (!kids)
        return NULL;
    for (obj_t *c = o->children; c; c = c->hh.next)
        kids[(*n)++] = c;
    qsort(kids, *n, sizeof(*kids), cmp_names);
    return kids;
}

/* Config emits a delete event for every file below o (before a move), in name order. */
static void config_delete_tree(state_t *st, obj_t *o)
{
    size_t n;
    if (o->type == OBJ_FILE)
        config_on_delete(st, o);
    obj_t **kids = sorted_children(o, &n);
    for (size_t i = 0; i < n; i++)
        config_delete_tree(st, kids[i]);
    free(kids);
}

static void config_put_tree(state_t *st, obj_t *o, uint64_t now)
{
    size_t n;
    if (o->type == OBJ_FILE)
        config_on_put(st, o, now);
    obj_t **kids = sorted_children(o, &n);
    for (size_t i = 0; i < n; i++)
        config_put_tree(st, kids[i], now);
    free(kids);
}

/* Gives o a new name by reallocating it (names are stored inline), fixing every pointer
 * that referred to the old allocation. o must already be out of its parent's hash. */
static obj_t *obj_rename(state_t *st, obj_t *o, const char *name, size_t nl)
{
    obj_t *n = malloc(sizeof(*n) + nl + 1);
    if (!n)
        return NULL;
    memcpy(n, o, sizeof(*n));
    memcpy(n->name, name, nl);
    n->name[nl] = 0;
    obj_t *c, *tmp;
    HASH_ITER(hh, n->children, c, tmp)
        c->parent = n;
    if (n->ns == NS_CACHE && n->type == OBJ_FILE) {
        if (n->u.cache.lru_prev)
            n->u.cache.lru_prev->u.cache.lru_next = n;
        else if (st->lru_head == o)
            st->lru_head = n;
        if (n->u.cache.lru_next)
            n->u.cache.lru_next->u.cache.lru_prev = n;
        else if (st->lru_tail == o)
            st->lru_tail = n;
    }
    id_move(st, n);
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

static int apply_rename(state_t *st, const cmd_hdr_t *h, cmdrd_t *r)
{
    const char *from, *to, *name;
    size_t flen = cmd_get_path(r, &from);
    size_t tlen = cmd_get_path(r, &to), nl;
    uint8_t flags = cmd_get_u8(r);
    obj_t *tp;
    if (r->err)
        return -EINVAL;
    obj_t *src = reap(st, state_resolve(st, h->ns, from, flen), h->now_ms);
    if (!src)
        return -ENOENT;
    if (!src->parent)
        return -EPERM;
    int rc = split_parent(st, h->ns, to, tlen, &tp, &name, &nl);
    if (rc < 0)
        return rc;
    if (src->type == OBJ_DIR && is_ancestor(src, tp))
        return -EINVAL;
    if (src->type == OBJ_DIR && tlen + subtree_path_len(src) > PATH_LEN_MAX)
        return -ENAMETOOLONG;   /* something below would get a path too long to serve */
    obj_t *dst;
    HASH_FIND(hh, tp->children, name, nl, dst);
    dst = reap(st, dst, h->now_ms);
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
    if (h->ns == NS_CONFIG)
        config_delete_tree(st, src);
    if (dst)
        state_remove(st, dst); /* replaced: config's put event comes from the move below */
    src->parent->mtime_ms = h->now_ms;
    HASH_DELETE(hh, src->parent->children, src);
    src->parent->nchildren--;
    obj_t *n = obj_rename(st, src, name, nl);
    if (!n) {
        /* Out of memory: put it back under its old name so the tree stays valid. */
        HASH_ADD(hh, src->parent->children, name[0], strlen(src->name), src);
        src->parent->nchildren++;
        return -ENOMEM;
    }
    n->parent = tp;
    HASH_ADD(hh, tp->children, name[0], nl, n);
    tp->nchildren++;
    tp->mtime_ms = h->now_ms;
    if (h->ns == NS_CONFIG)
        config_put_tree(st, n, h->now_ms);
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
    obj_t *o = reap(st, state_resolve(st, h->ns, path, len), h->now_ms);
    if (!o)
        return -ENOENT;
    if (h->ns != NS_CACHE)
        return -ENOTSUP;
    return remove ? cache_removexattr(st, o, nm) : cache_setxattr(st, o, nm, val, vlen, h->now_ms);
}

static int apply_setmtime(state_t *st, const cmd_hdr_t *h, cmdrd_t *r)
{
    obj_t *o;
    int rc = existing(st, h, r, &o);
    if (rc < 0)
        return rc;
    o->mtime_ms = h->now_ms;
    if (o->ns == NS_CACHE && o->type == OBJ_FILE)
        cache_on_renew(st, o, h->now_ms);
    return 0;
}

/* Applies the command whose header (with the time apply decided) is h and whose body r
 * reads. */
static int apply_one(state_t *st, const cmd_hdr_t *hp, cmdrd_t *rp, sm_result_t *res)
{
    const cmd_hdr_t h = *hp;
    cmdrd_t r = *rp;
    if (session_sm_owns(&h))
        return session_sm_apply(st, &h, &r, res, &st->outbox);
    if (h.ns > NS_NONE && h.ns < NS__COUNT && ns_sms[h.ns])
        return ns_sms[h.ns]->apply(st, &h, &r, res, &st->outbox);
    if (!ns_takes_objects(h.ns))
        return -ENOTSUP;
    switch (h.op) {
    case CMD_MKDIR: return apply_mkdir(st, &h, &r, res);
    case CMD_RMDIR: return apply_rmdir(st, &h, &r);
    case CMD_PUT: return apply_put(st, &h, &r, res);
    case CMD_WRITE: return apply_write(st, &h, &r, res);
    case CMD_UNLINK: return apply_unlink(st, &h, &r);
    case CMD_RENAME: return apply_rename(st, &h, &r);
    case CMD_SETXATTR: return apply_xattr(st, &h, &r, 0);
    case CMD_REMOVEXATTR: return apply_xattr(st, &h, &r, 1);
    case CMD_SETMTIME: return apply_setmtime(st, &h, &r);
    case CMD_EXPIRE:
        if (h.ns != NS_CACHE)
            return -EINVAL;
        cache_apply_expire(st, &r, h.now_ms);
        return r.err ? -EINVAL : 0;
    case CMD_TOUCH:
        if (h.ns != NS_CACHE)
            return -EINVAL;
        cache_apply_touch(st, &r, h.now_ms);
        return r.err ? -EINVAL : 0;
    case CMD_SETCAP: {
        uint64_t cap = cmd_get_u64(&r);
        if (h.ns != NS_CACHE || r.err || cap == 0)
            return -EINVAL;
        cache_set_cap(st, cap);
        return 0;
    }
    default:
        return -EINVAL;
    }
}

/* sm_ops.apply: a malformed command is rejected identically on every replica (its result
 * code says so) and changes nothing.
 *
 * Time is decided here, once, from the log: the command applies at
 * max(previous command's time, its header's now_ms), so time never goes backwards in the
 * log even when proposers' clocks race or step back. That is a pure function of the log
 * order, so it is the same as stamping at append, and a restored replica or a later leader
 * continues from the stamp kept in the snapshot.
 *
 * Effects apply emitted are handed to the delivery hook after the write lock is released,
 * then freed. */
static void sm_apply(void *ctx, uint64_t index, const void *cmd, size_t len, sm_result_t *res)
{
    state_t *st = ctx;
    cmdrd_t r;
    cmd_hdr_t h;
    int rc = -EINVAL;
    pthread_rwlock_wrlock(&st->lock);
    ASSERT(!st->outbox.head);
    if (cmd_read_hdr(&r, cmd, len, &h) == 0) {
        if (h.now_ms < st->now_ms)
            h.now_ms = st->now_ms;
        st->now_ms = h.now_ms;
        uint64_t rev = st->config_rev;
        rc = apply_one(st, &h, &r, res);
        if (st->config_rev != rev)
            effects_add(&st->outbox, EFF_CONFIG_REV, NS_CONFIG, 0, 0)->u.config.rev =
                st->config_rev;
    }
    st->applied_index = index;
    if (res)
        res->code = rc;
    effects_t fx = effects_take(&st->outbox);
    void (*deliver)(void *, effect_t *) = st->deliver;
    void *arg = st->deliver_arg;
    pthread_rwlock_unlock(&st->lock);
    for (effect_t *e = fx.head; e; e = e->next)
        if (deliver)
            deliver(arg, e);
    effects_clear(&fx);
}

/* Snapshot body (version STATE_SNAP_VERSION), see docs/FORMATS.md "fs state snapshot".
 * Objects are written parent before child, children in name order, so the same state gives
 * the same bytes on every replica. */
static void snap_obj(snapout_t *o, const obj_t *ob)
{
    so_u8(o, 1);
    so_u64(o, ob->id);
    so_u64(o, ob->parent ? ob->parent->id : 0);
    so_u8(o, ob->ns);
    so_u8(o, ob->type);
    so_blob(o, ob->name, (uint32_t)strlen(ob->name));
    so_u64(o, ob->mtime_ms);
    if (ob->type == OBJ_FILE)
        so_blob(o, ob->val->data, ob->val->len);
    if (ob->ns == NS_CACHE)
        cache_snap_fields(o, ob);
    else if (ob->ns == NS_CONFIG)
        config_snap_fields(o, ob);
    size_t n;
    obj_t **kids = sorted_children(ob, &n);
    if (ob->nchildren && !kids) {
        o->err = -QERR_NOMEM;
        return;
    }
    for (size_t i = 0; i < n && !o->err; i++)
        snap_obj(o, kids[i]);
    free(kids);
}

static int sm_snapshot(void *ctx, snap_writer_t *w)
{
    state_t *st = ctx;
    snapout_t *o = calloc(1, sizeof(*o));
    if (!o)
        return -QERR_NOMEM;
    o->w = w;
    pthread_rwlock_rdlock(&st->lock);
    so_u32(o, STATE_SNAP_VERSION);
    so_u64(o, st->next_id);
    so_u64(o, st->next_pid);
    so_u64(o, st->config_rev);
    so_u64(o, st->cache_evictions);
    so_u64(o, st->cache_expirations);
    so_u64(o, st->cache_max_bytes);
    so_u64(o, st->now_ms);
    for (int ns = 1; ns < NS__COUNT; ns++)
        snap_obj(o, st->ns_root[ns]);
    so_u8(o, 0);
    /* LRU order, least recent first. */
    so_u64(o, st->cache_keys);
    for (const obj_t *c = st->lru_tail; c; c = c->u.cache.lru_prev)
        so_u64(o, c->id);
    config_snap_events(o, st);
    session_sm_snapshot(&st->sessions, o);
    /* Module sections: (u8 ns, module bytes)..., then u8 0. */
    for (int ns = 1; ns < NS__COUNT; ns++) {
        if (ns_sms[ns]) {
            so_u8(o, (uint8_t)ns);
            ns_sms[ns]->snapshot(st, o);
        }
    }
    so_u8(o, 0);
    pthread_rwlock_unlock(&st->lock);
    int rc = so_flush(o);
    free(o);
    return rc;
}

/* Reads one object record (tag already consumed). Returns 0 or -QERR_*. */
static int restore_obj(snapin_t *in, state_t *st)
{
    uint64_t id = si_u64(in), pid = si_u64(in);
    uint8_t ns = si_u8(in), type = si_u8(in);
    char name[NAME_MAX_BYTES + 1];
    int nlen = si_str(in, name, sizeof(name));
    if (nlen < 0)
        return nlen;
    size_t nl = (size_t)nlen;
    if (ns <= NS_NONE || ns >= NS__COUNT || (type != OBJ_DIR && type != OBJ_FILE))
        return -QERR_CORRUPT;
    obj_t *ob;
    if (pid == 0) {
        ob = st->ns_root[ns];
        if (id != NS_ROOT_ID(ns) || type != OBJ_DIR)
            return -QERR_CORRUPT;
    } else {
        obj_t *p = state_by_id(st, pid);
        if (!p || p->type != OBJ_DIR || p->ns != ns || state_by_id(st, id) ||
            names_check(name, nl, ns == NS_CONFIG) < 0 ||
            id < STATE_FIRST_ID || (id >= st->next_id && id < STATE_PID_FIRST) ||
            (id >= STATE_PID_FIRST && id >= st->next_pid) || state_child(p, name))
            return -QERR_CORRUPT;
        ob = obj_add(st, p, name, nl, type, ns, id);
        if (!ob)
            return -QERR_NOMEM;
    }
    ob->mtime_ms = si_u64(in);
    if (type == OBJ_FILE) {
        uint32_t vl = si_u32(in);
        if (in->err || vl > VALUE_MAX)
            return in->err ? in->err : -QERR_CORRUPT;
        blob_t *b = blob_new(NULL, vl);
        if (!b)
            return -QERR_NOMEM;
        si_bytes(in, b->data, vl);
        blob_unref(ob->val);
        ob->val = b;
    }
    if (ns == NS_CACHE)
        cache_restore_fields(in, ob);
    else if (ns == NS_CONFIG && config_restore_fields(in, ob) < 0)
        return -QERR_CORRUPT;
    return in->err;
}

static int sm_restore(void *ctx, snap_reader_t *r)
{
    state_t *st = ctx;
    snapin_t in = { .r = r };
    int rc = 0;
    pthread_rwlock_wrlock(&st->lock);
    state_clear(st);
    st->lru_head = st->lru_tail = NULL;
    st->cache_bytes = st->cache_keys = 0;
    st->ttl_n = 0;
    for (int ns = 1; ns < NS__COUNT; ns++) {
        st->ns_root[ns] = obj_add(st, NULL, ns_names[ns], strlen(ns_names[ns]), OBJ_DIR,
                                  (uint8_t)ns, NS_ROOT_ID(ns));
        if (!st->ns_root[ns]) {
            rc = -QERR_NOMEM;
            goto out;
        }
    }
    if (si_u32(&in) != STATE_SNAP_VERSION) {
        rc = in.err ? in.err : -QERR_FORMAT;
        goto out;
    }
    st->next_id = si_u64(&in);
    st->next_pid = si_u64(&in);
    st->config_rev = si_u64(&in);
    st->cache_evictions = si_u64(&in);
    st->cache_expirations = si_u64(&in);
    st->cache_max_bytes = si_u64(&in);
    st->now_ms = si_u64(&in);
    for (;;) {
        uint8_t tag = si_u8(&in);
        if (in.err || tag == 0)
            break;
        if (tag != 1 || (rc = restore_obj(&in, st)) < 0) {
            rc = rc < 0 ? rc : -QERR_CORRUPT;
            goto out;
        }
    }
    uint64_t nkeys = si_u64(&in);
    for (uint64_t i = 0; i < nkeys && !in.err; i++) {
        obj_t *o = state_by_id(st, si_u64(&in));
        if (!o || o->ns != NS_CACHE || o->type != OBJ_FILE || o->u.cache.lru_prev ||
            st->lru_head == o) {   /* unknown, not a key, or listed twice */
            rc = -QERR_CORRUPT;
            goto out;
        }
        cache_restore_link(st, o);
    }
    if (!in.err && (nkeys != st->cache_keys || st->next_id < STATE_FIRST_ID ||
                    st->next_id > STATE_PID_FIRST || st->next_pid < STATE_PID_FIRST ||
                    st->next_pid > STATE_PID_END)) {
        rc = -QERR_CORRUPT;
        goto out;
    }
    if (!in.err && config_restore_events(&in, st) < 0) {
        rc = -QERR_CORRUPT;
        goto out;
    }
    if (!in.err && (rc = session_sm_restore(&st->sessions, &in)) < 0)
        goto out;
    modules_init(st);
    for (;;) {
        uint8_t ns = si_u8(&in);
        if (in.err || ns == 0)
            break;
        if (ns >= NS__COUNT || !ns_sms[ns]) {
            rc = -QERR_CORRUPT;
            goto out;
        }
        if ((rc = ns_sms[ns]->restore(st, &in)) < 0)
            goto out;
    }
    if (in.err)
        rc = in.err;
out:
    if (rc < 0) {   /* leave an empty, valid state (the caller refuses to start) */
        state_clear(st);
        st->lru_head = st->lru_tail = NULL;
        st->cache_bytes = st->cache_keys = 0;
        st->ttl_n = 0;
        st->next_id = STATE_FIRST_ID;
        st->next_pid = STATE_PID_FIRST;
        st->config_rev = st->cache_evictions = st->cache_expirations = 0;
        st->now_ms = 0;
        st->cache_max_bytes = STATE_DEFAULT_CACHE_CAP;
        for (int ns = 1; ns < NS__COUNT; ns++)
            st->ns_root[ns] = obj_add(st, NULL, ns_names[ns], strlen(ns_names[ns]),
                                      OBJ_DIR, (uint8_t)ns, NS_ROOT_ID(ns));
        modules_init(st);
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

const sm_ops_t state_sm_ops = {
    .apply = sm_apply,
    .snapshot = sm_snapshot,
    .restore = sm_restore,
};
