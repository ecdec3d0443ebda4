/* fs/node.c — the node: group + shard + session + namespace fronts + sweeper thread; see
 * node.h. The sweeper runs every SWEEP_MS: it renews the session and runs the fronts'
 * sweeps (cache/ proposes EXPIRE and TOUCH batches there). All of it is decided here (the
 * leader side) and committed, so apply never reads a clock. The state's delivery hook
 * (node_deliver) hands apply's effects to the fronts once the state lock is released.
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
#include "fs/metrics.h"
#include "fs/node.h"
#include "fs/ns.h"
#include "fs/session.h"

#define SWEEP_MS 100

struct node {
    state_t *st;
    group_t *group;
    char *data_dir;
    node_opts_t opts;            /* as opened; opts.data_dir is data_dir */
    metrics_t metrics;           /* of the node's mount (atomic counters) */
    pthread_t sweeper;
    pthread_mutex_t mu;          /* guards stop */
    pthread_cond_t cv;
    int stop;
    int sweeping;                /* the sweeper thread was started */
    int quiesced;                /* node_quiesce ran */
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
void node_quiesce(node_t *n)
{
    if (!n || n->quiesced)
        return;
    n->quiesced = 1;
    session_local_stop(n->sess);
    if (n->sweeping) {
        pthread_mutex_lock(&n->mu);
        n->stop = 1;
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->sweeper, NULL);
        n->sweeping = 0;
    }
}

static void teardown(node_t *n)
{
    node_quiesce(n);
    group_close(n->group);
    for (int ns = NS__COUNT - 1; ns > 0; ns--) {
        void *ctx = node_front(n, ns);
        __atomic_store_n(&n->front[ns], NULL, __ATOMIC_RELEASE);
        if (ctx)
            ns_fronts[ns]->stop(ctx);
    }
    session_local_free(n->sess);
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
    n->opts = *opts;
    n->opts.data_dir = n->data_dir;
    n->st = state_new(STATE_DEFAULT_CACHE_CAP);
    if (!n->data_dir || !n->st)
        goto fail;
    n->st->deliver = node_deliver;
    n->st->deliver_arg = n;
    group_config_t gc = { .dir = opts->data_dir, .snapshot_bytes = opts->snapshot_bytes };
    rc = group_open(&gc, &state_sm_ops, n->st, &n->group, errmsg);
    if (rc < 0)
        goto fail;
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
uint32_t node_nshards(const node_t *n) { (void)n; return 1; }
group_t *node_group(node_t *n) { return n->group; }
const char *node_data_dir(node_t *n) { return n->data_dir; }
const node_opts_t *node_options(node_t *n) { return &n->opts; }
metrics_t *node_metrics(node_t *n) { return &n->metrics; }
struct session_local *node_session(node_t *n) { return n ? n->sess : NULL; }

void *node_front(node_t *n, int ns)
{
    if (!n || ns <= NS_NONE || ns >= NS__COUNT)
        return NULL;
    return __atomic_load_n(&n->front[ns], __ATOMIC_ACQUIRE);
}
