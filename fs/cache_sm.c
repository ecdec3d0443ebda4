/* fs/cache_sm.c — the cache/ state machine (see cache_sm.h): tree hooks for TTLs and the
 * LRU list, the EXPIRE, TOUCH and SETCAP commands, the namespace section of the snapshot
 * (cap, counters, LRU order) and the invariant check. The LRU list and the counters are
 * replicated; the TTL index (a min-heap of (expires, id) with lazy deletion) is derived,
 * rebuilt by restore, and only tells the leader which keys to propose for expiry. Keys are
 * files; symbolic links have no TTL, no LRU place and do not count towards the cap (every
 * hook here passes them by: is_key). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "fs/cache_sm.h"
#include "fs/names.h"

typedef struct ttl_ent {
    uint64_t expires_ms, id;
} ttl_ent_t;

typedef struct cache_state {
    obj_t *lru_head, *lru_tail;  /* keys, most recently used first */
    uint64_t bytes, keys;
    uint64_t cap;                /* eviction cap: replicated (CMD_SETCAP), in snapshots */
    uint64_t evictions, expirations;
    ttl_ent_t *heap;             /* TTL index; not replicated */
    size_t heap_n, heap_cap;
} cache_state_t;

static cache_state_t *CS(const state_t *st) { return st->ns_state[NS_CACHE]; }

static int is_key(const obj_t *o) { return o->ns == NS_CACHE && o->type == OBJ_FILE; }

/* ---- LRU list ---- */

static int is_linked(const cache_state_t *cs, const obj_t *o)
{
    return o->u.cache.lru_prev || cs->lru_head == o;
}

static void lru_unlink(cache_state_t *cs, obj_t *o)
{
    if (!is_linked(cs, o))
        return;
    if (o->u.cache.lru_prev)
        o->u.cache.lru_prev->u.cache.lru_next = o->u.cache.lru_next;
    else
        cs->lru_head = o->u.cache.lru_next;
    if (o->u.cache.lru_next)
        o->u.cache.lru_next->u.cache.lru_prev = o->u.cache.lru_prev;
    else
        cs->lru_tail = o->u.cache.lru_prev;
    o->u.cache.lru_prev = o->u.cache.lru_next = NULL;
}

static void lru_push_head(cache_state_t *cs, obj_t *o)
{
    o->u.cache.lru_prev = NULL;
    o->u.cache.lru_next = cs->lru_head;
    if (cs->lru_head)
        cs->lru_head->u.cache.lru_prev = o;
    cs->lru_head = o;
    if (!cs->lru_tail)
        cs->lru_tail = o;
}

static void lru_touch(cache_state_t *cs, obj_t *o)
{
    lru_unlink(cs, o);
    lru_push_head(cs, o);
}

/* ---- TTL index ---- */

static void heap_swap(ttl_ent_t *a, ttl_ent_t *b)
{
    ttl_ent_t t = *a;
    *a = *b;
    *b = t;
}

static void heap_down(cache_state_t *cs, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < cs->heap_n && cs->heap[l].expires_ms < cs->heap[m].expires_ms)
            m = l;
        if (l + 1 < cs->heap_n && cs->heap[l + 1].expires_ms < cs->heap[m].expires_ms)
            m = l + 1;
        if (m == i)
            return;
        heap_swap(&cs->heap[i], &cs->heap[m]);
        i = m;
    }
}

static void heap_pop(cache_state_t *cs)
{
    cs->heap[0] = cs->heap[--cs->heap_n];
    heap_down(cs, 0);
}

/* An entry whose key is gone or expires at another time now. */
static int heap_stale(const state_t *st, const ttl_ent_t *e)
{
    obj_t *o = tree_by_id(st, e->id);
    return !o || !is_key(o) || o->u.cache.expires_ms != e->expires_ms;
}

/* Rebuilds the index from the live keys when stale entries dominate it. */
static void heap_compact(const state_t *st, cache_state_t *cs)
{
    size_t n = 0;
    for (size_t i = 0; i < cs->heap_n; i++)
        if (!heap_stale(st, &cs->heap[i]))
            cs->heap[n++] = cs->heap[i];
    cs->heap_n = n;
    for (size_t i = n / 2; i-- > 0;)
        heap_down(cs, i);
}

static void heap_push(const state_t *st, cache_state_t *cs, uint64_t expires, uint64_t id)
{
    if (cs->heap_n > 2 * cs->keys + 1024)
        heap_compact(st, cs);
    if (cs->heap_n == cs->heap_cap) {
        cs->heap_cap = cs->heap_cap ? cs->heap_cap * 2 : 1024;
        cs->heap = xrealloc(cs->heap, cs->heap_cap * sizeof(*cs->heap));
    }
    size_t i = cs->heap_n++;
    cs->heap[i].expires_ms = expires;
    cs->heap[i].id = id;
    while (i > 0 && cs->heap[(i - 1) / 2].expires_ms > cs->heap[i].expires_ms) {
        heap_swap(&cs->heap[i], &cs->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
}

static void set_expiry(state_t *st, obj_t *o, uint64_t now_ms)
{
    o->u.cache.expires_ms = o->u.cache.ttl_s ? now_ms + (uint64_t)o->u.cache.ttl_s * 1000 : 0;
    if (o->u.cache.expires_ms)
        heap_push(st, CS(st), o->u.cache.expires_ms, o->id);
}

/* Links key o at the head of the LRU list, counting it. */
static void link_key(state_t *st, obj_t *o)
{
    cache_state_t *cs = CS(st);
    lru_push_head(cs, o);
    cs->keys++;
    cs->bytes += o->val->len;
}

/* ---- tree hooks ---- */

int cache_sm_live(const obj_t *o, uint64_t now_ms)
{
    return !is_key(o) || o->u.cache.expires_ms == 0 || o->u.cache.expires_ms > now_ms;
}

static void on_reap(state_t *st, obj_t *o) { CS(st)->expirations++; }

/* A new key takes the TTL of the nearest directory above that has one. */
static void on_create(state_t *st, obj_t *o)
{
    for (obj_t *d = o->parent; d; d = d->parent) {
        if (d->u.cache.ttl_s) {
            o->u.cache.ttl_s = d->u.cache.ttl_s;
            break;
        }
    }
}

/* Evicts least recently used keys until the cap holds; never keep (the key just written). */
static void evict(state_t *st, const obj_t *keep)
{
    cache_state_t *cs = CS(st);
    while (cs->bytes > cs->cap && cs->lru_tail && cs->lru_tail != keep) {
        tree_remove(st, cs->lru_tail);
        cs->evictions++;
    }
}

static void on_put(state_t *st, obj_t *o, uint32_t oldlen, uint64_t now_ms)
{
    cache_state_t *cs = CS(st);
    if (is_linked(cs, o)) {
        cs->bytes -= oldlen;
        lru_touch(cs, o);
        cs->bytes += o->val->len;
    } else {
        link_key(st, o);
    }
    set_expiry(st, o, now_ms);
    evict(st, o);
}

/* `touch` of a key restarts its TTL and makes it the most recently used. */
static void on_touch(state_t *st, obj_t *o, uint64_t now_ms)
{
    set_expiry(st, o, now_ms);
    lru_touch(CS(st), o);
}

static void on_free(state_t *st, obj_t *o)
{
    cache_state_t *cs = CS(st);
    if (!is_key(o) || !is_linked(cs, o))
        return;   /* a directory, or a key of a restore that failed before linking it */
    lru_unlink(cs, o);
    cs->bytes -= o->val->len;
    cs->keys--;
}

static void on_realloc(state_t *st, const obj_t *o, obj_t *n)
{
    cache_state_t *cs = CS(st);
    if (!is_key(n))
        return;
    if (n->u.cache.lru_prev)
        n->u.cache.lru_prev->u.cache.lru_next = n;
    else if (cs->lru_head == o)
        cs->lru_head = n;
    if (n->u.cache.lru_next)
        n->u.cache.lru_next->u.cache.lru_prev = n;
    else if (cs->lru_tail == o)
        cs->lru_tail = n;
}

int cache_sm_check_setxattr(const obj_t *o, const char *name, const void *v, size_t n)
{
    uint64_t x;
    if (strcmp(name, "user.ttl") == 0)
        return names_parse_uint(v, n, CACHE_TTL_MAX_S, &x);
    if (strcmp(name, "user.ttl_sliding") == 0) {
        if (o->type != OBJ_DIR)
            return -EINVAL;
        return names_parse_uint(v, n, 1, &x) < 0 ? -EINVAL : 0;
    }
    return -ENOTSUP;
}

static int setxattr(state_t *st, obj_t *o, const char *name, const uint8_t *v, size_t n,
                    uint64_t now_ms)
{
    int rc = cache_sm_check_setxattr(o, name, v, n);
    uint64_t x;
    if (rc < 0)
        return rc;
    names_parse_uint((const char *)v, n, CACHE_TTL_MAX_S, &x);
    if (strcmp(name, "user.ttl") == 0) {
        o->u.cache.ttl_s = (uint32_t)x;
        if (o->type == OBJ_FILE)
            set_expiry(st, o, now_ms);   /* TTL counts from the moment it is set */
    } else {
        o->u.cache.sliding = (uint8_t)x;
    }
    return 0;
}

static int removexattr(state_t *st, obj_t *o, const char *name)
{
    if (strcmp(name, "user.ttl") == 0) {
        if (!o->u.cache.ttl_s)
            return -ENODATA;
        o->u.cache.ttl_s = 0;
        o->u.cache.expires_ms = 0;
        return 0;
    }
    if (strcmp(name, "user.ttl_sliding") == 0 && o->type == OBJ_DIR) {
        if (!o->u.cache.sliding)
            return -ENODATA;
        o->u.cache.sliding = 0;
        return 0;
    }
    return -ENODATA;
}

static int getxattr(const obj_t *o, const char *name, char *buf, size_t size)
{
    if (strcmp(name, "user.ttl") == 0 && o->u.cache.ttl_s)
        return tree_format_uint(buf, size, o->u.cache.ttl_s);
    if (strcmp(name, "user.ttl_sliding") == 0 && o->type == OBJ_DIR && o->u.cache.sliding)
        return tree_format_uint(buf, size, 1);
    return -ENODATA;
}

static void list_name(char *buf, size_t size, size_t *n, const char *name)
{
    size_t l = strlen(name) + 1;
    if (*n + l <= size)
        memcpy(buf + *n, name, l);
    *n += l;
}

static size_t listxattr(const obj_t *o, char *buf, size_t size)
{
    size_t n = 0;
    if (o->u.cache.ttl_s)
        list_name(buf, size, &n, "user.ttl");
    if (o->type == OBJ_DIR && o->u.cache.sliding)
        list_name(buf, size, &n, "user.ttl_sliding");
    return n;
}

static void snap_fields(snapout_t *o, const obj_t *ob)
{
    so_u64(o, ob->u.cache.expires_ms);
    so_u32(o, ob->u.cache.ttl_s);
    so_u8(o, ob->u.cache.sliding);
}

static int restore_fields(snapin_t *in, obj_t *ob)
{
    ob->u.cache.expires_ms = si_u64(in);
    ob->u.cache.ttl_s = si_u32(in);
    ob->u.cache.sliding = si_u8(in);
    return in->err;   /* the values are judged by cache_sm_verify after the section */
}

static const tree_hooks_t cache_tree = {
    .live = cache_sm_live,
    .on_reap = on_reap,
    .on_create = on_create,
    .on_put = on_put,
    .on_touch = on_touch,
    .on_free = on_free,
    .on_realloc = on_realloc,
    .setxattr = setxattr,
    .removexattr = removexattr,
    .getxattr = getxattr,
    .listxattr = listxattr,
    .snap_fields = snap_fields,
    .restore_fields = restore_fields,
};

/* ---- commands ---- */

/* Reads a batch (u32 n, n x (path [, u64 expires_ms])) whole, calling fn for each key only
 * once all of it decoded: a malformed batch changes nothing. */
static int each_in_batch(state_t *st, cmdrd_t *r, int with_exp,
                         void (*fn)(state_t *st, obj_t *o, uint64_t exp, uint64_t now),
                         uint64_t now)
{
    for (int pass = 0; pass < 2; pass++) {
        cmdrd_t rr = *r;
        uint32_t n = cmd_get_u32(&rr);
        for (uint32_t i = 0; i < n && !rr.err; i++) {
            const char *path;
            size_t len = cmd_get_path(&rr, &path);
            uint64_t exp = with_exp ? cmd_get_u64(&rr) : 0;
            if (pass == 1 && !rr.err) {
                obj_t *o = tree_resolve(st, NS_CACHE, path, len);
                if (o && is_key(o))
                    fn(st, o, exp, now);
            }
        }
        if (rr.err)
            return -EINVAL;
    }
    return 0;
}

/* EXPIRE: only the exact version that was due goes; a key rewritten or renewed since
 * lives on. */
static void expire_one(state_t *st, obj_t *o, uint64_t exp, uint64_t now)
{
    if (o->u.cache.expires_ms == exp && exp && exp <= now) {
        tree_remove(st, o);
        CS(st)->expirations++;
    }
}

static int sliding(const obj_t *o)
{
    if (!o->u.cache.ttl_s)
        return 0;
    for (const obj_t *d = o->parent; d; d = d->parent)
        if (d->u.cache.sliding)
            return 1;
    return 0;
}

/* TOUCH: a read of a live key makes it the most recently used and restarts a sliding TTL. */
static void touch_one(state_t *st, obj_t *o, uint64_t exp, uint64_t now)
{
    if (!cache_sm_live(o, now))
        return;
    lru_touch(CS(st), o);
    if (sliding(o))
        set_expiry(st, o, now);
}

static int apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res, effects_t *fx)
{
    switch (h->op) {
    case CMD_EXPIRE:
        return each_in_batch(st, r, 1, expire_one, h->now_ms);
    case CMD_TOUCH:
        return each_in_batch(st, r, 0, touch_one, h->now_ms);
    case CMD_SETCAP: {
        uint64_t cap = cmd_get_u64(r);
        if (r->err || cap == 0)
            return -EINVAL;
        CS(st)->cap = cap;
        evict(st, NULL);
        return 0;
    }
    default:
        return tree_sm_apply(st, h, r, res);
    }
}

/* ---- lifetime and snapshot ---- */

static void init(state_t *st)
{
    cache_state_t *cs = xcalloc(1, sizeof(*cs));
    cs->cap = st->initial_cache_cap;
    st->ns_state[NS_CACHE] = cs;
}

/* The tree was freed first (tree_sm_free): no key is left to unlink. */
static void fini(state_t *st)
{
    cache_state_t *cs = CS(st);
    free(cs->heap);
    free(cs);
    st->ns_state[NS_CACHE] = NULL;
}

/* Section: u64 cap, evictions, expirations, u64 keys, then their ids least recent first. */
static void snapshot(const state_t *st, snapout_t *o)
{
    const cache_state_t *cs = CS(st);
    so_u64(o, cs->cap);
    so_u64(o, cs->evictions);
    so_u64(o, cs->expirations);
    so_u64(o, cs->keys);
    for (const obj_t *c = cs->lru_tail; c; c = c->u.cache.lru_prev)
        so_u64(o, c->id);
}

static int restore(state_t *st, snapin_t *in)
{
    cache_state_t *cs = CS(st);
    cs->cap = si_u64(in);
    cs->evictions = si_u64(in);
    cs->expirations = si_u64(in);
    uint64_t n = si_u64(in);
    for (uint64_t i = 0; i < n && !in->err; i++) {
        obj_t *o = tree_by_id(st, si_u64(in));
        if (in->err)
            break;
        if (!o || !is_key(o) || is_linked(cs, o))
            return -QERR_CORRUPT;   /* unknown, not a key, or listed twice */
        link_key(st, o);
        if (o->u.cache.expires_ms)
            heap_push(st, cs, o->u.cache.expires_ms, o->id);
    }
    if (in->err)
        return in->err;
    const char *why = cache_sm_verify(st);
    return why ? si_corrupt(in, why) : 0;
}

/* ---- read API ---- */

void cache_sm_stats(const state_t *st, cache_stats_t *out)
{
    const cache_state_t *cs = CS(st);
    out->bytes = cs->bytes;
    out->keys = cs->keys;
    out->cap = cs->cap;
    out->evictions = cs->evictions;
    out->expirations = cs->expirations;
}

int cache_sm_read_touches(const state_t *st, const obj_t *o)
{
    const cache_state_t *cs = CS(st);
    return is_key(o) && (sliding(o) || cs->bytes > cs->cap / 2);
}

/* Depth-first over the heap, pruning subtrees whose root is not yet due. */
static uint32_t collect(state_t *st, uint64_t now_ms, cmdbuf_t *b, uint32_t max,
                        void (*add)(cmdbuf_t *b, const char *path, uint64_t exp))
{
    cache_state_t *cs = CS(st);
    while (cs->heap_n && cs->heap[0].expires_ms <= now_ms && heap_stale(st, &cs->heap[0]))
        heap_pop(cs);
    size_t stack[128], sp = 0;
    uint32_t n = 0;
    char path[4096];
    if (cs->heap_n)
        stack[sp++] = 0;
    while (sp && n < max) {
        size_t i = stack[--sp];
        const ttl_ent_t *e = &cs->heap[i];
        if (e->expires_ms > now_ms)
            continue;
        if (!heap_stale(st, e) && tree_path(tree_by_id(st, e->id), path, sizeof(path)) >= 0) {
            add(b, path, e->expires_ms);
            n++;
        }
        for (size_t c = 2 * i + 1; c <= 2 * i + 2 && c < cs->heap_n; c++)
            if (sp < sizeof(stack) / sizeof(stack[0]))
                stack[sp++] = c;
    }
    return n;
}

uint32_t cache_sm_collect_expired(state_t *st, uint64_t now_ms, cmdbuf_t *b, uint32_t max)
{
    return collect(st, now_ms, b, max, cache_cmd_expire_add);
}

static void add_pair(cmdbuf_t *b, const char *path, uint64_t exp)
{
    cmd_str(b, path);
    cmd_u64(b, exp);
}

uint32_t cache_collect_expired(state_t *st, uint64_t now_ms, cmdbuf_t *body, uint32_t max)
{
    return collect(st, now_ms, body, max, add_pair);
}

/* ---- encoders ---- */

static void begin_batch(cmdbuf_t *b, uint8_t op, uint64_t now)
{
    cmd_begin(b, op, NS_CACHE, now);
    cmd_u32(b, 0);
}

uint32_t cache_cmd_count(const cmdbuf_t *b)
{
    return b->oom ? 0 : le_get32(b->p + CMD_HDR_LEN);
}

static void count_one(cmdbuf_t *b)
{
    if (!b->oom)
        le_put32(b->p + CMD_HDR_LEN, cache_cmd_count(b) + 1);
}

void cache_cmd_expire(cmdbuf_t *b, uint64_t now) { begin_batch(b, CMD_EXPIRE, now); }
void cache_cmd_touch(cmdbuf_t *b, uint64_t now) { begin_batch(b, CMD_TOUCH, now); }

void cache_cmd_expire_add(cmdbuf_t *b, const char *path, uint64_t expires_ms)
{
    add_pair(b, path, expires_ms);
    count_one(b);
}

void cache_cmd_touch_add(cmdbuf_t *b, const char *path)
{
    cmd_str(b, path);
    count_one(b);
}

void cache_cmd_setcap(cmdbuf_t *b, uint64_t now, uint64_t cap)
{
    cmd_begin(b, CMD_SETCAP, NS_CACHE, now);
    cmd_u64(b, cap);
}

/* ---- invariants ---- */

typedef struct cverify {
    const cache_state_t *cs;
    uint64_t keys, bytes;
    const char *why;
} cverify_t;

static void verify_obj(void *arg, const obj_t *o)
{
    cverify_t *v = arg;
    const char **why = &v->why;
    const struct obj *prev = o->u.cache.lru_prev, *next = o->u.cache.lru_next;
    SM_VERIFY(why, o->u.cache.ttl_s <= CACHE_TTL_MAX_S && o->u.cache.sliding <= 1,
              "cache: a TTL or sliding flag out of range");
    if (o->type == OBJ_LINK) {
        SM_VERIFY(why, !o->u.cache.expires_ms && !o->u.cache.ttl_s && !o->u.cache.sliding &&
                           !prev && !next && v->cs->lru_head != o,
                  "cache: a link with a TTL or in the LRU list");
        return;
    }
    if (o->type == OBJ_DIR) {
        SM_VERIFY(why, !o->u.cache.expires_ms && !prev && !next,
                  "cache: a directory with an expiry or in the LRU list");
        return;
    }
    SM_VERIFY(why, !o->u.cache.sliding, "cache: a key with the sliding flag of a directory");
    SM_VERIFY(why, is_linked(v->cs, o), "cache: a key missing from the LRU list");
    v->keys++;
    v->bytes += o->val->len;
}

static int cmp_ids(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The TTL index is a heap, and every key that expires has an entry (expires, id) in it
 * (a key renewed to the same instant twice may have two). */
static const char *verify_heap(const state_t *st, const cache_state_t *cs)
{
    for (size_t i = 1; i < cs->heap_n; i++)
        if (cs->heap[(i - 1) / 2].expires_ms > cs->heap[i].expires_ms)
            return "cache: the TTL index is not a heap";
    uint64_t due = 0, found = 0;
    for (const obj_t *o = cs->lru_head; o; o = o->u.cache.lru_next)
        due += o->u.cache.expires_ms != 0;
    uint64_t *ids = xmalloc((cs->heap_n + 1) * sizeof(*ids));
    size_t n = 0;
    for (size_t i = 0; i < cs->heap_n; i++)
        if (!heap_stale(st, &cs->heap[i]))
            ids[n++] = cs->heap[i].id;
    qsort(ids, n, sizeof(*ids), cmp_ids);
    for (size_t i = 0; i < n; i++)
        found += i == 0 || ids[i] != ids[i - 1];
    free(ids);
    return found == due ? NULL : "cache: a key that expires is missing from the TTL index";
}

const char *cache_sm_verify(const state_t *st)
{
    const cache_state_t *cs = CS(st);
    cverify_t v = { .cs = cs };
    tree_walk(tree_root(st, NS_CACHE), verify_obj, &v);
    if (v.why)
        return v.why;
    if (v.keys != cs->keys || v.bytes != cs->bytes)
        return "cache: keys or bytes differ from the keys of the tree";
    uint64_t n = 0, bytes = 0;
    const obj_t *prev = NULL;
    for (const obj_t *o = cs->lru_head; o; prev = o, o = o->u.cache.lru_next) {
        if (++n > cs->keys || !is_key(o) || o->u.cache.lru_prev != prev ||
            tree_by_id(st, o->id) != o)
            return "cache: the LRU list is broken (links, or an object that is not a key)";
        bytes += o->val->len;
    }
    if (n != cs->keys || bytes != cs->bytes || cs->lru_tail != prev)
        return "cache: the LRU list's count, bytes or tail differ";
    if (cs->cap == 0 || (cs->bytes > cs->cap && cs->keys > 1))
        return "cache: over the cap with more than the key just written";
    return verify_heap(st, cs);
}

void cache_sm_check(const state_t *st) { SM_ASSERT_VERIFIED(cache_sm_verify(st)); }

const ns_sm_t cache_sm = {
    .init = init,
    .free = fini,
    .apply = apply,
    .snapshot = snapshot,
    .restore = restore,
    .check = cache_sm_check,
    .tree = &cache_tree,
};
