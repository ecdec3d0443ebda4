/* fs/node.c — the node: group + state + session + namespace fronts + sweeper thread; see
 * node.h. The sweeper runs every SWEEP_MS: it proposes EXPIRE for cache keys whose TTL
 * passed and TOUCH for the keys read since the last sweep, renews the session and runs the
 * fronts' sweeps. All of it is decided here (the leader side) and committed, so apply never
 * reads a clock. The state's delivery hook (node_deliver) hands apply's effects to the
 * fronts once the state lock is released.
 *
 * Lifetime: open creates state, group (restore + replay: effects of replayed entries find
 * no front and are dropped), session, fronts, then the sweeper; close ends the session,
 * joins the sweeper, closes the group (no apply, hence no delivery, after that), then stops
 * the fronts. front[] is written before any FUSE request and read by the applying thread,
 * hence the atomic accesses. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cluster/err.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/ns.h"
#include "fs/session.h"

#define SWEEP_MS 100
#define TOUCH_BATCH_MAX 4096
#define EXPIRE_BATCH_MAX 4096

typedef struct touched {
    UT_hash_handle hh;
    char path[];
} touched_t;

struct node {
    state_t *st;
    group_t *group;
    char *data_dir;
    pthread_t sweeper;
    pthread_mutex_t mu;          /* guards touched, ntouched, stop */
    pthread_cond_t cv;
    touched_t *touched;
    uint32_t ntouched;
    int stop;
    int sweeping;                /* the sweeper thread was started */
    uint64_t last_nospace_ms;    /* atomic */
    session_local_t *sess;
    void *front[NS__COUNT];      /* atomic: fronts' contexts (fs/ns.h) */
};

uint64_t node_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int node_errno(int qerr)
{
    switch (-qerr) {
    case QERR_OK: return 0;
    case QERR_NOMEM: return -ENOMEM;
    case QERR_NOSPACE: return -ENOSPC;
    case QERR_TOOBIG: return -EFBIG;
    case QERR_INVAL: return -EINVAL;
    case QERR_NOTFOUND: return -ENOENT;
    case QERR_EXISTS: return -EEXIST;
    default: return -EIO;   /* no quorum, timeout, disk failure, closing */
    }
}

int node_propose(node_t *n, cmdbuf_t *b, sm_result_t *res)
{
    sm_result_t local;
    int rc;
    if (b->oom) {
        free(b->p);
        return -ENOMEM;
    }
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    rc = group_propose(n->group, b->p, b->len, res);
    free(b->p);
    b->p = NULL;
    if (rc == -QERR_NOSPACE)
        __atomic_store_n(&n->last_nospace_ms, node_now_ms(), __ATOMIC_RELAXED);
    if (rc < 0)
        return node_errno(rc);
    return res->code;
}

uint64_t node_last_nospace_ms(node_t *n)
{
    return __atomic_load_n(&n->last_nospace_ms, __ATOMIC_RELAXED);
}

void node_note_read(node_t *n, const char *path)
{
    touched_t *t;
    size_t len = strlen(path);
    pthread_mutex_lock(&n->mu);
    HASH_FIND(hh, n->touched, path, len, t);
    if (!t && n->ntouched < TOUCH_BATCH_MAX && (t = malloc(sizeof(*t) + len + 1))) {
        memcpy(t->path, path, len + 1);
        HASH_ADD(hh, n->touched, path[0], len, t);
        n->ntouched++;
    }
    pthread_mutex_unlock(&n->mu);
}

static void propose_touches(node_t *n)
{
    pthread_mutex_lock(&n->mu);
    touched_t *list = n->touched, *t, *tmp;
    uint32_t cnt = n->ntouched;
    n->touched = NULL;
    n->ntouched = 0;
    pthread_mutex_unlock(&n->mu);
    if (!cnt)
        return;
    cmdbuf_t b;
    cache_cmd_touch(&b, node_now_ms());
    HASH_ITER(hh, list, t, tmp) {
        cache_cmd_touch_add(&b, t->path);
        HASH_DELETE(hh, list, t);
        free(t);
    }
    int rc = node_propose(n, &b, NULL);
    if (rc < 0)
        fprintf(stderr, "quorumfs: cache touch batch not committed: %s\n", strerror(-rc));
}

static void propose_expiry(node_t *n)
{
    uint64_t now = node_now_ms();
    cmdbuf_t b;
    cache_cmd_expire(&b, now);
    pthread_rwlock_wrlock(&n->st->lock);
    uint32_t cnt = cache_sm_collect_expired(n->st, now, &b, EXPIRE_BATCH_MAX);
    pthread_rwlock_unlock(&n->st->lock);
    if (!cnt) {
        free(b.p);
        return;
    }
    int rc = node_propose(n, &b, NULL);
    if (rc < 0)
        fprintf(stderr, "quorumfs: cache expiry batch not committed: %s\n", strerror(-rc));
}

static void *sweeper_main(void *arg)
{
    node_t *n = arg;
    pthread_mutex_lock(&n->mu);
    while (!n->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SWEEP_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&n->cv, &n->mu, &ts);
        if (n->stop)
            break;
        pthread_mutex_unlock(&n->mu);
        propose_touches(n);
        propose_expiry(n);
        session_local_sweep(n->sess);
        for (int ns = 1; ns < NS__COUNT; ns++)
            if (ns_fronts[ns] && ns_fronts[ns]->sweep)
                ns_fronts[ns]->sweep(node_front(n, ns));
        pthread_mutex_lock(&n->mu);
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* The state's delivery hook: an effect goes to its namespace's front (none during replay
 * at open, and none for namespaces without a front: then it is dropped). */
static void node_deliver(void *arg, effect_t *e)
{
    node_t *n = arg;
    const ns_front_t *f = e->ns < NS__COUNT ? ns_fronts[e->ns] : NULL;
    void *ctx = node_front(n, e->ns);
    if (f && f->deliver && ctx)
        f->deliver(ctx, e);
}

/* Undoes node_open from whatever point it reached (see the lifetime note at the top). */
static void teardown(node_t *n)
{
    session_local_stop(n->sess);
    if (n->sweeping) {
        pthread_mutex_lock(&n->mu);
        n->stop = 1;
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->sweeper, NULL);
    }
    group_close(n->group);
    for (int ns = NS__COUNT - 1; ns > 0; ns--) {
        void *ctx = node_front(n, ns);
        __atomic_store_n(&n->front[ns], NULL, __ATOMIC_RELEASE);
        if (ctx)
            ns_fronts[ns]->stop(ctx);
    }
    session_local_free(n->sess);
    touched_t *t, *tmp;
    HASH_ITER(hh, n->touched, t, tmp) {
        HASH_DELETE(hh, n->touched, t);
        free(t);
    }
    state_free(n->st);
    free(n->data_dir);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
}

int node_open(const node_opts_t *opts, node_t **out, char **errmsg)
{
    int rc = -QERR_NOMEM;
    *errmsg = NULL;
    node_t *n = calloc(1, sizeof(*n));
    if (!n)
        goto fail;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    n->data_dir = strdup(opts->data_dir);
    n->st = state_new(STATE_DEFAULT_CACHE_CAP);
    if (!n->data_dir || !n->st)
        goto fail;
    n->st->deliver = node_deliver;
    n->st->deliver_arg = n;
    group_config_t gc = { .dir = opts->data_dir, .snapshot_bytes = opts->snapshot_bytes };
    rc = group_open(&gc, &state_sm_ops, n->st, &n->group, errmsg);
    if (rc < 0)
        goto fail;
    /* The cache cap is replicated state: a node whose option differs proposes it. */
    pthread_rwlock_rdlock(&n->st->lock);
    cache_stats_t cs;
    cache_sm_stats(n->st, &cs);
    uint64_t cap = cs.cap;
    pthread_rwlock_unlock(&n->st->lock);
    if (opts->cache_max_bytes && opts->cache_max_bytes != cap) {
        cmdbuf_t b;
        cache_cmd_setcap(&b, node_now_ms(), opts->cache_max_bytes);
        int prc = node_propose(n, &b, NULL);
        if (prc < 0)
            fprintf(stderr, "quorumfs: cannot set the cache cap to %llu bytes: %s\n",
                    (unsigned long long)opts->cache_max_bytes, strerror(-prc));
    }
    rc = -QERR_NOMEM;
    if (!(n->sess = session_local_start(n)))
        goto fail;
    for (int ns = 1; ns < NS__COUNT; ns++) {
        if (!ns_fronts[ns] || !ns_fronts[ns]->start)
            continue;
        void *ctx = ns_fronts[ns]->start(n);
        if (!ctx)
            goto fail;
        __atomic_store_n(&n->front[ns], ctx, __ATOMIC_RELEASE);
    }
    if (pthread_create(&n->sweeper, NULL, sweeper_main, n) != 0)
        goto fail;
    n->sweeping = 1;
    *out = n;
    return 0;
fail:
    if (n)
        teardown(n);
    if (!*errmsg) {
        char buf[256];
        snprintf(buf, sizeof(buf), "cannot open node: %s", qerr_str(rc));
        *errmsg = strdup(buf);
    }
    return rc;
}

void node_close(node_t *n)
{
    if (n)
        teardown(n);
}

state_t *node_state(node_t *n) { return n->st; }
group_t *node_group(node_t *n) { return n->group; }
const char *node_data_dir(node_t *n) { return n->data_dir; }
struct session_local *node_session(node_t *n) { return n ? n->sess : NULL; }

void *node_front(node_t *n, int ns)
{
    if (!n || ns <= NS_NONE || ns >= NS__COUNT)
        return NULL;
    return __atomic_load_n(&n->front[ns], __ATOMIC_ACQUIRE);
}
