/* fs/cache_fuse.c — the front of cache/ (FILE-API §4): its files are served by the generic
 * tree front (fs/tree_fuse.h); this adds what is cache's. Attribute writes are checked as
 * apply will check them; reads that matter to the LRU order or restart a sliding TTL are
 * noted, and the leader-side sweep turns time into log entries: TOUCH batches of those
 * reads, and EXPIRE batches of the keys whose TTL passed. At start the node's cache cap
 * option is proposed when it differs from the replicated one (CMD_SETCAP).
 *
 * Context: one cache_front_t per node. Its mu guards the set of keys read since the last
 * sweep; it is never held while the state lock is taken or a command is proposed. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/tree_fuse.h"

typedef struct touched {
    UT_hash_handle hh;
    char path[];
} touched_t;

typedef struct cache_front {
    node_t *node;
    pthread_mutex_t mu;          /* guards touched, ntouched */
    touched_t *touched;          /* keys read since the last sweep, by path */
    uint32_t ntouched;
} cache_front_t;

static int check_setxattr(const obj_t *o, const char *name, const void *v, size_t n,
                          int remove)
{
    return remove ? 0 : cache_sm_check_setxattr(o, name, v, n);
}

/* Cheap, never blocks on the log: the sweep proposes the batch. */
static void note_read(void *ctx, const char *path)
{
    cache_front_t *cf = ctx;
    touched_t *t;
    size_t len = strlen(path);
    pthread_mutex_lock(&cf->mu);
    HASH_FIND(hh, cf->touched, path, len, t);
    if (!t && cf->ntouched < CACHE_BATCH_MAX && (t = malloc(sizeof(*t) + len + 1))) {
        memcpy(t->path, path, len + 1);
        HASH_ADD(hh, cf->touched, path[0], len, t);
        cf->ntouched++;
    }
    pthread_mutex_unlock(&cf->mu);
}

static void free_touched(touched_t *list)
{
    touched_t *t, *tmp;
    HASH_ITER(hh, list, t, tmp) {
        HASH_DELETE(hh, list, t);
        free(t);
    }
}

/* The keys read since the last sweep, as one TOUCH (in the order they were first read). */
static void propose_touches(cache_front_t *cf)
{
    pthread_mutex_lock(&cf->mu);
    touched_t *list = cf->touched;
    cf->touched = NULL;
    cf->ntouched = 0;
    pthread_mutex_unlock(&cf->mu);
    if (!list)
        return;
    /* one batch per shard that holds some of the keys */
    for (uint32_t k = 0; k < node_nshards(cf->node); k++) {
        cmdbuf_t b;
        int any = 0;
        cache_cmd_touch(&b, node_now_ms());
        for (touched_t *t = list; t; t = t->hh.next)
            if (node_shard_of(cf->node, NS_CACHE, t->path) == k) {
                cache_cmd_touch_add(&b, t->path);
                any = 1;
            }
        if (!any) {
            free(b.p);
            continue;
        }
        int rc = node_propose(cf->node, k, &b, NULL);
        if (rc < 0)
            fprintf(stderr, "quorumfs: cache touch batch not committed: %s\n", strerror(-rc));
    }
    free_touched(list);
}

/* The keys whose TTL passed, as one EXPIRE (the TTL index is pruned under the write lock). */
static void propose_expiry(cache_front_t *cf, uint32_t k)
{
    state_t *st = node_state(cf->node, k);
    uint64_t now = node_now_ms();
    cmdbuf_t b;
    cache_cmd_expire(&b, now);
    pthread_rwlock_wrlock(&st->lock);
    uint32_t n = cache_sm_collect_expired(st, now, &b, CACHE_BATCH_MAX);
    pthread_rwlock_unlock(&st->lock);
    if (!n) {
        free(b.p);
        return;
    }
    int rc = node_propose(cf->node, k, &b, NULL);
    if (rc < 0)
        fprintf(stderr, "quorumfs: cache expiry batch not committed: %s\n", strerror(-rc));
}

/* Read touches are this node's own (every node proposes those it noted); expiry is the
 * leader's. */
static void sweep(void *ctx)
{
    cache_front_t *cf = ctx;
    propose_touches(cf);
    for (uint32_t k = 0; k < node_nshards(cf->node); k++)
        if (node_is_leader(cf->node, k))
            propose_expiry(cf, k);
}

/* The cache cap is replicated state: a node whose option differs proposes it. Each of S
 * shards holds 1/S of the cap (docs/CLUSTER.md "Shards"). */
static void propose_cap(node_t *n, uint32_t k, void *arg)
{
    uint64_t want = node_options(n)->cache_max_bytes / node_nshards(n);
    state_t *st = node_state(n, k);
    cache_stats_t cs;
    pthread_rwlock_rdlock(&st->lock);
    cache_sm_stats(st, &cs);
    pthread_rwlock_unlock(&st->lock);
    if (!want || want == cs.cap)
        return;
    if (node_waits_to_join(n, k)) {
        static int said;             /* one line for all the shards */
        if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
            fprintf(stderr, "quorumfs: info: the cache cap (%llu bytes) is not set from this "
                    "node: it is joining the shards (the cluster's members set it)\n",
                    (unsigned long long)want);
        return;
    }
    cmdbuf_t b;
    cache_cmd_setcap(&b, node_now_ms(), want);
    int rc = node_propose(n, k, &b, NULL);
    if (rc < 0)
        fprintf(stderr, "quorumfs: cannot set the cache cap to %llu bytes: %s\n",
                (unsigned long long)want, strerror(-rc));
}

static void *start(node_t *n)
{
    cache_front_t *cf = calloc(1, sizeof(*cf));
    if (!cf)
        return NULL;
    cf->node = n;
    pthread_mutex_init(&cf->mu, NULL);
    node_each_shard(n, propose_cap, NULL);
    return cf;
}

static void stop(void *ctx)
{
    cache_front_t *cf = ctx;
    free_touched(cf->touched);
    pthread_mutex_destroy(&cf->mu);
    free(cf);
}

static const tree_front_t cache_tree_front = {
    .check_setxattr = check_setxattr,
    .read_touches = cache_sm_read_touches,
    .note_read = note_read,
};

const ns_front_t cache_front = {
    .start = start,
    .sweep = sweep,
    .stop = stop,
    .fuse = &tree_fuse_ops,
    .tree = &cache_tree_front,
};
