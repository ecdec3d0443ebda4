/* fs/watch.c — config watches (`.events`); see watch.h. A watch is an event stream
 * (fs/evstream.h) whose source reads config/'s event history below one directory: the
 * cursor is the last revision looked at, per shard watched. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "fs/config.h"
#include "fs/evstream.h"
#include "fs/node.h"
#include "fs/watch.h"

#define LINE_BYTES (4 * TREE_PATH_MAX + 64)   /* room for any one event line */

/* The source: the shards watched, [k0, k1): the one of dir's top-level directory, or every
 * shard for the root of config/ (revisions are each shard's own: the root's stream gives
 * each shard's changes in their order, one shard after another in each batch). */
typedef struct cwatch {
    node_t *node;
    char *dir;                   /* namespace-relative directory watched */
    uint32_t k0, k1;
    uint64_t *cursor;            /* per shard watched: last revision looked at */
    int nonblock;                /* O_NONBLOCK at open */
} cwatch_t;

static int cw_read(void *src, char *buf, size_t size)
{
    cwatch_t *c = src;
    int total = 0;
    for (uint32_t k = c->k0; k < c->k1; k++) {
        int n = config_read_events(node_state(c->node, k), c->dir, &c->cursor[k - c->k0],
                                   buf + total, size - (size_t)total);
        if (n < 0)
            return total ? total : n;
        total += n;
        if (size - (size_t)total < LINE_BYTES)
            break;
    }
    return total;
}

/* Looks without taking; the cursor only skips events outside the directory, as cw_read
 * does. */
static int cw_pending(void *src)
{
    cwatch_t *c = src;
    char line[LINE_BYTES];
    for (uint32_t k = c->k0; k < c->k1; k++) {
        uint64_t cur = c->cursor[k - c->k0];
        int n = config_read_events(node_state(c->node, k), c->dir, &cur, line, sizeof(line));
        if (n != 0)
            return n < 0 ? n : 1;
        c->cursor[k - c->k0] = cur;
    }
    return 0;
}

static void cw_free(void *src)
{
    cwatch_t *c = src;
    if (!c)
        return;
    free(c->dir);
    free(c->cursor);
    free(c);
}

static const evs_ops_t cw_ops = { .read = cw_read, .pending = cw_pending, .free = cw_free };

int watch_open(watch_table_t *t, const char *dirpath, uint64_t after, int nonblock,
               watch_t **out)
{
    node_t *node = evs_table_node(t);
    uint32_t nsh = node_nshards(node);
    int root = !dirpath[0];
    uint32_t k0 = root || nsh == 1 ? 0 : node_shard_of(node, NS_CONFIG, dirpath);
    uint32_t k1 = root ? nsh : k0 + 1;
    if (root && nsh > 1 && after != WATCH_NOW)
        return -EOPNOTSUPP;   /* a revision of the root: each shard counts its own */
    /* The caller holds the read lock of the shard of dirpath (0 for the root): the other
     * shards' are taken here, above it. */
    if (after != WATCH_NOW && config_sm_events_stale(node_state(node, k0), after))
        return -ESTALE;
    cwatch_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->dir = strdup(dirpath)) || !(c->cursor = calloc(k1 - k0, sizeof(*c->cursor)))) {
        cw_free(c);
        return -ENOMEM;
    }
    c->node = node;
    c->k0 = k0;
    c->k1 = k1;
    c->nonblock = nonblock;
    for (uint32_t k = k0; k < k1; k++) {
        if (k > k0)
            pthread_rwlock_rdlock(&node_state(node, k)->lock);
        c->cursor[k - k0] = after != WATCH_NOW ? after : config_sm_rev(node_state(node, k));
        if (k > k0)
            pthread_rwlock_unlock(&node_state(node, k)->lock);
    }
    return evs_open(t, k0, k1, &cw_ops, c, out);
}

void watch_read(fuse_req_t req, watch_t *w, size_t size, off_t off)
{
    evs_read(req, w, size, off, ((cwatch_t *)evs_src(w))->nonblock);
}

void watch_poll(fuse_req_t req, watch_t *w, struct fuse_pollhandle *ph) { evs_poll(req, w, ph); }

void watch_close(watch_t *w) { evs_close(w); }

static void *watch_start(struct node *n) { return evs_table_new(n); }

static void watch_stop(void *ctx) { evs_table_free(ctx); }

/* EFF_CONFIG_REV: every watch may read the shard that changed (a watch of the root reads
 * them all), so every shard is locked for the delivery. */
static void watch_deliver(void *ctx, effect_t *e)
{
    evs_table_t *t = ctx;
    if (e->kind == EFF_CONFIG_REV)
        evs_deliver(t, 0, node_nshards(evs_table_node(t)));
}

const ns_front_t watch_front = {
    .start = watch_start,
    .stop = watch_stop,
    .deliver = watch_deliver,
};
