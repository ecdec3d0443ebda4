/* fs/cache.c — cache/ semantics (FILE-API §4) on top of the object tree: TTLs decided by
 * the proposer's clock and committed (EXPIRE, TOUCH commands), sliding TTL, and the LRU
 * cap. LRU order changes only in apply (puts, and TOUCH batches of reads), so eviction is
 * identical on every replica. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fs/cache.h"
#include "fs/names.h"

#define TTL_MAX_S (10ull * 365 * 24 * 3600)

static int is_linked(const state_t *st, const obj_t *o)
{
    return o->u.cache.lru_prev || st->lru_head == o;
}

static void lru_unlink(state_t *st, obj_t *o)
{
    if (!is_linked(st, o))
        return;
    if (o->u.cache.lru_prev)
        o->u.cache.lru_prev->u.cache.lru_next = o->u.cache.lru_next;
    else
        st->lru_head = o->u.cache.lru_next;
    if (o->u.cache.lru_next)
        o->u.cache.lru_next->u.cache.lru_prev = o->u.cache.lru_prev;
    else
        st->lru_tail = o->u.cache.lru_prev;
    o->u.cache.lru_prev = o->u.cache.lru_next = NULL;
}

static void lru_push_head(state_t *st, obj_t *o)
{
    o->u.cache.lru_prev = NULL;
    o->u.cache.lru_next = st->lru_head;
    if (st->lru_head)
        st->lru_head->u.cache.lru_prev = o;
    st->lru_head = o;
    if (!st->lru_tail)
        st->lru_tail = o;
}

/* TTL index (min-heap on expires_ms). */
static void heap_swap(struct ttl_ent *a, struct ttl_ent *b)
{
    struct ttl_ent t = *a;
    *a = *b;
    *b = t;
}

static void heap_down(state_t *st, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < st->ttl_n && st->ttl_heap[l].expires_ms < st->ttl_heap[m].expires_ms)
            m = l;
        if (l + 1 < st->ttl_n && st->ttl_heap[l + 1].expires_ms < st->ttl_heap[m].expires_ms)
            m = l + 1;
        if (m == i)
            return;
        heap_swap(&st->ttl_heap[i], &st->ttl_heap[m]);
        i = m;
    }
}

static void heap_pop(state_t *st)
{
    st->ttl_heap[0] = st->ttl_heap[--st->ttl_n];
    heap_down(st, 0);
}

static int heap_stale(state_t *st, const struct ttl_ent *e)
{
    obj_t *o = state_by_id(st, e->id);
    return !o || o->ns != NS_CACHE || o->type != OBJ_FILE || o->u.cache.expires_ms != e->expires_ms;
}

/* Rebuilds the index from the live keys when stale entries dominate it. */
static void heap_compact(state_t *st)
{
    size_t n = 0;
    for (size_t i = 0; i < st->ttl_n; i++)
        if (!heap_stale(st, &st->ttl_heap[i]))
            st->ttl_heap[n++] = st->ttl_heap[i];
    st->ttl_n = n;
    for (size_t i = n / 2; i-- > 0;)
        heap_down(st, i);
}

static void heap_push(state_t *st, uint64_t expires, uint64_t id)
{
    if (st->ttl_n > 2 * st->cache_keys + 1024)
        heap_compact(st);
    if (st->ttl_n == st->ttl_cap) {
        size_t cap = st->ttl_cap ? st->ttl_cap * 2 : 1024;
        struct ttl_ent *h = realloc(st->ttl_heap, cap * sizeof(*h));
        if (!h)
            return; /* the key still expires for readers; it is swept on a later rebuild */
        st->ttl_heap = h;
        st->ttl_cap = cap;
    }
    size_t i = st->ttl_n++;
    st->ttl_heap[i].expires_ms = expires;
    st->ttl_heap[i].id = id;
    while (i > 0 && st->ttl_heap[(i - 1) / 2].expires_ms > st->ttl_heap[i].expires_ms) {
        heap_swap(&st->ttl_heap[i], &st->ttl_heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
}

static void set_expiry(state_t *st, obj_t *o, uint64_t now_ms)
{
    o->u.cache.expires_ms = o->u.cache.ttl_s ? now_ms + (uint64_t)o->u.cache.ttl_s * 1000 : 0;
    if (o->u.cache.expires_ms)
        heap_push(st, o->u.cache.expires_ms, o->id);
}

void cache_on_create(state_t *st, obj_t *o)
{
    for (obj_t *d = o->parent; d; d = d->parent) {
        if (d->u.cache.ttl_s) {
            o->u.cache.ttl_s = d->u.cache.ttl_s;
            break;
        }
    }
}

/* Evicts least recently used keys until the cap holds; never the key just written. */
static void evict(state_t *st, obj_t *keep)
{
    while (st->cache_bytes > st->cache_max_bytes && st->lru_tail && st->lru_tail != keep) {
        state_remove(st, st->lru_tail);
        st->cache_evictions++;
    }
}

void cache_set_cap(state_t *st, uint64_t cap)
{
    st->cache_max_bytes = cap;
    evict(st, NULL);
}

void cache_on_put(state_t *st, obj_t *o, uint64_t now_ms, uint32_t oldlen)
{
    if (!is_linked(st, o))
        st->cache_keys++;
    st->cache_bytes += o->val->len;
    st->cache_bytes -= oldlen;
    set_expiry(st, o, now_ms);
    lru_unlink(st, o);
    lru_push_head(st, o);
    evict(st, o);
}

void cache_on_renew(state_t *st, obj_t *o, uint64_t now_ms)
{
    set_expiry(st, o, now_ms);
    lru_unlink(st, o);
    lru_push_head(st, o);
}

void cache_restore_link(state_t *st, obj_t *o)
{
    lru_push_head(st, o);
    st->cache_keys++;
    st->cache_bytes += o->val->len;
    if (o->u.cache.expires_ms)
        heap_push(st, o->u.cache.expires_ms, o->id);
}

void cache_on_remove(state_t *st, obj_t *o)
{
    if (!is_linked(st, o))
        return; /* only during a failed restore */
    lru_unlink(st, o);
    st->cache_bytes -= o->val->len;
    st->cache_keys--;
}

int cache_check_setxattr(const obj_t *o, const char *name, const void *v, size_t n)
{
    uint64_t x;
    if (strcmp(name, "user.ttl") == 0)
        return names_parse_uint(v, n, TTL_MAX_S, &x);
    if (strcmp(name, "user.ttl_sliding") == 0) {
        if (o->type != OBJ_DIR)
            return -EINVAL;
        if (names_parse_uint(v, n, 1, &x) < 0)
            return -EINVAL;
        return 0;
    }
    return -ENOTSUP;
}

int cache_setxattr(state_t *st, obj_t *o, const char *name, const uint8_t *v, size_t n,
                   uint64_t now_ms)
{
    int rc = cache_check_setxattr(o, name, v, n);
    uint64_t x;
    if (rc < 0)
        return rc;
    names_parse_uint((const char *)v, n, TTL_MAX_S, &x);
    if (strcmp(name, "user.ttl") == 0) {
        o->u.cache.ttl_s = (uint32_t)x;
        if (o->type == OBJ_FILE)
            set_expiry(st, o, now_ms);   /* TTL counts from the moment it is set */
    } else {
        o->u.cache.sliding = (uint8_t)x;
    }
    return 0;
}

int cache_removexattr(state_t *st, obj_t *o, const char *name)
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


int cache_getxattr(const obj_t *o, const char *name, char *buf, size_t size)
{
    if (strcmp(name, "user.ttl") == 0 && o->u.cache.ttl_s)
        return state_format_uint(buf, size, o->u.cache.ttl_s);
    if (strcmp(name, "user.ttl_sliding") == 0 && o->type == OBJ_DIR && o->u.cache.sliding)
        return state_format_uint(buf, size, 1);
    return -ENODATA;
}

size_t cache_listxattr(const obj_t *o, char *buf, size_t size)
{
    static const char ttl[] = "user.ttl", sl[] = "user.ttl_sliding";
    size_t n = 0;
    if (o->u.cache.ttl_s) {
        if (n + sizeof(ttl) <= size)
            memcpy(buf + n, ttl, sizeof(ttl));
        n += sizeof(ttl);
    }
    if (o->type == OBJ_DIR && o->u.cache.sliding) {
        if (n + sizeof(sl) <= size)
            memcpy(buf + n, sl, sizeof(sl));
        n += sizeof(sl);
    }
    return n;
}

int cache_sliding(const obj_t *o)
{
    if (!o->u.cache.ttl_s)
        return 0;
    for (const obj_t *d = o->parent; d; d = d->parent)
        if (d->u.cache.sliding)
            return 1;
    return 0;
}

void cache_apply_expire(state_t *st, cmdrd_t *r, uint64_t now_ms)
{
    uint32_t n = cmd_get_u32(r);
    for (uint32_t i = 0; i < n && !r->err; i++) {
        const char *path;
        size_t len = cmd_get_path(r, &path);
        uint64_t exp = cmd_get_u64(r);
        if (r->err)
            return;
        obj_t *o = state_resolve(st, NS_CACHE, path, len);
        /* Only the exact version that was due: a key rewritten or renewed since lives on. */
        if (o && o->type == OBJ_FILE && o->u.cache.expires_ms == exp && exp && exp <= now_ms) {
            state_remove(st, o);
            st->cache_expirations++;
        }
    }
}

void cache_apply_touch(state_t *st, cmdrd_t *r, uint64_t now_ms)
{
    uint32_t n = cmd_get_u32(r);
    for (uint32_t i = 0; i < n && !r->err; i++) {
        const char *path;
        size_t len = cmd_get_path(r, &path);
        if (r->err)
            return;
        obj_t *o = state_resolve(st, NS_CACHE, path, len);
        if (!o || o->type != OBJ_FILE || !state_cache_live(o, now_ms))
            continue;
        lru_unlink(st, o);
        lru_push_head(st, o);
        if (cache_sliding(o))
            set_expiry(st, o, now_ms);
    }
}

uint32_t cache_collect_expired(state_t *st, uint64_t now_ms, cmdbuf_t *b, uint32_t max)
{
    while (st->ttl_n && st->ttl_heap[0].expires_ms <= now_ms && heap_stale(st, &st->ttl_heap[0]))
        heap_pop(st);
    /* Depth-first over the heap, pruning subtrees whose root is not yet due. */
    size_t stack[128], sp = 0;
    uint32_t n = 0;
    char path[4096];
    if (st->ttl_n)
        stack[sp++] = 0;
    while (sp && n < max) {
        size_t i = stack[--sp];
        const struct ttl_ent *e = &st->ttl_heap[i];
        if (e->expires_ms > now_ms)
            continue;
        if (!heap_stale(st, e)) {
            obj_t *o = state_by_id(st, e->id);
            if (state_path(o, path, sizeof(path)) >= 0) {
                cmd_str(b, path);
                cmd_u64(b, e->expires_ms);
                n++;
            }
        }
        for (size_t c = 2 * i + 1; c <= 2 * i + 2 && c < st->ttl_n; c++)
            if (sp < sizeof(stack) / sizeof(stack[0]))
                stack[sp++] = c;
    }
    return n;
}

void cache_snap_fields(snapout_t *o, const obj_t *ob)
{
    so_u64(o, ob->u.cache.expires_ms);
    so_u32(o, ob->u.cache.ttl_s);
    so_u8(o, ob->u.cache.sliding);
}

void cache_restore_fields(snapin_t *in, obj_t *ob)
{
    ob->u.cache.expires_ms = si_u64(in);
    ob->u.cache.ttl_s = si_u32(in);
    ob->u.cache.sliding = si_u8(in);
    if (ob->u.cache.ttl_s > TTL_MAX_S)
        ob->u.cache.ttl_s = TTL_MAX_S;
}
