/* fs/session.c — the node side of mount sessions (see session.h): the node's own session
 * (opened at start, renewed by the sweeper, ended at stop), leader-side expiry of silent
 * sessions, and the background proposer used by the namespace fronts.
 *
 * Locking: mu guards the job queue (head, tail), running and stopping; shard_mu[k]
 * serializes shard k's renew/reopen (sweeper) with its end at stop; closing, sid[] and
 * last_renew_ms[] are atomic. Neither mutex is held while proposing a command other than
 * under shard_mu (which nothing on the apply path takes). Order: shard_mu, then the state
 * lock (collect). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "fs/node.h"
#include "fs/session.h"

typedef struct bgjob {
    uint32_t shard;
    cmdbuf_t b;
    void (*done)(void *arg, int rc);
    void *arg;
    struct bgjob *next;
} bgjob_t;

struct session_local {
    node_t *node;
    uint32_t nshards;
    uint64_t *sid;                  /* per shard, atomic: this mount's session there */
    uint64_t *last_renew_ms;        /* per shard, atomic */
    pthread_mutex_t *shard_mu;      /* per shard */
    char name[SESSION_NODE_MAX];    /* this node's name (hostname) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bgjob_t *head, *tail;
    int running, stopping;
    pthread_t thread;
    int closing;                    /* atomic: stop began; never reopen */
};

uint64_t session_local_id(const session_local_t *s, uint32_t shard)
{
    return s && shard < s->nshards ? __atomic_load_n(&s->sid[shard], __ATOMIC_ACQUIRE) : 0;
}

/* ---------------------------------------------------------------- background proposer */

static void *bg_main(void *arg)
{
    session_local_t *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        bgjob_t *j = s->head;
        if (!j)
            break;                  /* stopping and drained */
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        int rc = node_propose(s->node, j->shard, &j->b, NULL);
        if (rc < 0 && rc != -ENOENT && rc != -EAGAIN)
            fprintf(stderr, "quorumfs: background proposal failed: %s\n", strerror(-rc));
        if (j->done)
            j->done(j->arg, rc);
        free(j);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int session_bg_propose(session_local_t *s, uint32_t shard, cmdbuf_t *b,
                       void (*done)(void *arg, int rc), void *arg)
{
    bgjob_t *j = s ? calloc(1, sizeof(*j)) : NULL;
    if (s)
        pthread_mutex_lock(&s->mu);
    if (!j || !s->running || s->stopping) {
        if (s)
            pthread_mutex_unlock(&s->mu);
        free(j);
        free(b->p);
        b->p = NULL;
        return s && !j ? -ENOMEM : -ENOTCONN;
    }
    j->shard = shard;
    j->b = *b;
    b->p = NULL;
    j->done = done;
    j->arg = arg;
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---------------------------------------------------------------- node's own session */

static int propose_end(node_t *n, uint32_t k, uint64_t sid, int only_expired)
{
    cmdbuf_t b;
    session_cmd_end(&b, node_now_ms(), sid, only_expired);
    return node_propose(n, k, &b, NULL);
}

/* Opens this mount's session in shard k (shard_mu[k] held, or at start before the
 * sweeper). */
static int open_session(session_local_t *s, uint32_t k)
{
    cmdbuf_t b;
    sm_result_t res;
    session_cmd_open(&b, node_now_ms(), s->name, (uint32_t)getpid(), SESSION_LEASE_MS);
    int rc = node_propose(s->node, k, &b, &res);
    if (rc == 0 && res.len >= 8) {
        uint64_t sid;
        memcpy(&sid, res.data, 8);
        __atomic_store_n(&s->sid[k], sid, __ATOMIC_RELEASE);
        __atomic_store_n(&s->last_renew_ms[k], node_now_ms(), __ATOMIC_RELAXED);
    }
    return rc;
}

/* Ids of sessions matching (node name == mine) or (expired at now), excluding mine.
 * Returns a malloc'ed array (caller frees) and its length in *cnt. */
static uint64_t *collect(session_local_t *s, uint32_t k, int mine, uint64_t now, size_t *cnt)
{
    state_t *st = node_state(s->node, k);
    uint64_t *ids = NULL, self = session_local_id(s, k);
    size_t n = 0, cap = 0;
    pthread_rwlock_rdlock(&st->lock);
    for (const session_t *x = st->sessions.head; x; x = x->next) {
        if (x->id == self)
            continue;
        if (mine ? strcmp(x->node, s->name) != 0 : x->expires_ms > now)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            uint64_t *p = realloc(ids, nc * sizeof(*p));
            if (!p)
                break;
            ids = p;
            cap = nc;
        }
        ids[n++] = x->id;
    }
    pthread_rwlock_unlock(&st->lock);
    *cnt = n;
    return ids;
}

/* At start, in shard k: an earlier run of this node that crashed left its sessions
 * behind: end them now, which releases their locks, claims and waiters; then open this
 * mount's session. */
static void start_in_shard(node_t *n, uint32_t k, void *arg)
{
    session_local_t *s = arg;
    size_t cnt;
    uint64_t *ids = collect(s, k, 1, 0, &cnt);
    for (size_t i = 0; i < cnt; i++)
        propose_end(n, k, ids[i], 0);
    free(ids);
    if (node_waits_to_join(n, k))
        return;          /* the sweep opens it once a leader added this node to the shard */
    int rc = open_session(s, k);
    if (rc < 0)
        fprintf(stderr, "quorumfs: cannot open the mount session (shard %u): %s\n", k,
                strerror(-rc));
}

session_local_t *session_local_start(struct node *n)
{
    session_local_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->node = n;
    s->nshards = node_nshards(n);
    s->sid = calloc(s->nshards, sizeof(*s->sid));
    s->last_renew_ms = calloc(s->nshards, sizeof(*s->last_renew_ms));
    s->shard_mu = calloc(s->nshards, sizeof(*s->shard_mu));
    if (!s->sid || !s->last_renew_ms || !s->shard_mu) {
        free(s->sid);
        free(s->last_renew_ms);
        free(s->shard_mu);
        free(s);
        return NULL;
    }
    for (uint32_t k = 0; k < s->nshards; k++)
        pthread_mutex_init(&s->shard_mu[k], NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (gethostname(s->name, sizeof(s->name) - 1) != 0 || !s->name[0])
        snprintf(s->name, sizeof(s->name), "localhost");
    s->name[sizeof(s->name) - 1] = 0;
    /* A cluster node's sessions are named after its host AND its node id: several nodes on
     * one machine must not end each other's sessions as "left by an earlier run" below. */
    uint64_t id = node_cluster_id(n);
    if (id) {
        char suffix[24];
        int k = snprintf(suffix, sizeof(suffix), "#%llu", (unsigned long long)id);
        size_t hl = strlen(s->name), room = sizeof(s->name) - 1 - (size_t)k;
        memcpy(s->name + (hl < room ? hl : room), suffix, (size_t)k + 1);
    }
    pthread_mutex_lock(&s->mu);
    s->running = pthread_create(&s->thread, NULL, bg_main, s) == 0;
    pthread_mutex_unlock(&s->mu);
    node_each_shard(n, start_in_shard, s);
    return s;
}

/* The sweep's part in shard k: renew (or reopen) this mount's session there; on the
 * shard's leader, end the sessions whose lease passed. */
static void sweep_shard(session_local_t *s, uint32_t k, uint64_t now)
{
    pthread_mutex_lock(&s->shard_mu[k]);
    uint64_t sid = session_local_id(s, k);
    int closing = __atomic_load_n(&s->closing, __ATOMIC_ACQUIRE);
    if (!closing && !(!sid && node_waits_to_join(s->node, k)) &&
        (!sid || now - __atomic_load_n(&s->last_renew_ms[k], __ATOMIC_RELAXED) >=
                     SESSION_RENEW_MS)) {
        int rc = -ENOENT;
        if (sid) {
            cmdbuf_t b;
            session_cmd_renew(&b, now, sid, SESSION_LEASE_MS);
            rc = node_propose(s->node, k, &b, NULL);
            if (rc == 0)
                __atomic_store_n(&s->last_renew_ms[k], now, __ATOMIC_RELAXED);
        }
        if (rc == -ENOENT) {
            /* Our session was ended (expired while we were stalled): open a new one. */
            if (open_session(s, k) == 0 && sid)
                fprintf(stderr, "quorumfs: the mount session had ended; opened session %llu"
                        " (shard %u)\n", (unsigned long long)session_local_id(s, k), k);
        }
    }
    pthread_mutex_unlock(&s->shard_mu[k]);
    if (closing || !node_is_leader(s->node, k))
        return;
    size_t cnt;
    uint64_t *ids = collect(s, k, 0, now, &cnt);
    for (size_t i = 0; i < cnt; i++)
        propose_end(s->node, k, ids[i], 1);
    free(ids);
}

struct sweep_arg {
    session_local_t *s;
    uint64_t now;
};

static void sweep_in_shard(node_t *n, uint32_t k, void *arg)
{
    struct sweep_arg *a = arg;
    (void)n;
    sweep_shard(a->s, k, a->now);
}

uint64_t session_local_refresh(session_local_t *s, uint32_t k, uint64_t dead)
{
    if (!s || k >= s->nshards)
        return 0;
    pthread_mutex_lock(&s->shard_mu[k]);
    /* the caller's command said the session is gone (ENOLCK): no renew, just open anew */
    if (session_local_id(s, k) == dead && !__atomic_load_n(&s->closing, __ATOMIC_ACQUIRE)) {
        if (open_session(s, k) == 0)
            fprintf(stderr, "quorumfs: the mount session had ended; opened session %llu"
                    " (shard %u)\n", (unsigned long long)session_local_id(s, k), k);
    }
    uint64_t sid = session_local_id(s, k);
    pthread_mutex_unlock(&s->shard_mu[k]);
    return sid;
}

void session_local_sweep(session_local_t *s)
{
    if (!s)
        return;
    uint64_t now = node_now_ms();
    /* When renewals are due, every shard renews at once: one shard slow to commit must not
     * hold the others' renewals back past their lease. */
    int due = 0;
    for (uint32_t k = 0; k < s->nshards && !due; k++)
        due = !session_local_id(s, k) ||
              now - __atomic_load_n(&s->last_renew_ms[k], __ATOMIC_RELAXED) >= SESSION_RENEW_MS;
    struct sweep_arg a = { s, now };
    if (due) {
        node_each_shard(s->node, sweep_in_shard, &a);
        return;
    }
    for (uint32_t k = 0; k < s->nshards; k++)
        sweep_shard(s, k, now);
}

/* At stop, in shard k: ends this mount's session there. */
static void end_in_shard(node_t *n, uint32_t k, void *arg)
{
    session_local_t *s = arg;
    pthread_mutex_lock(&s->shard_mu[k]);   /* after a renew or reopen in progress */
    uint64_t sid = session_local_id(s, k);
    if (sid && node_removed(n)) {
        /* removed from the cluster: no proposal can commit; the members end the session
         * when its lease passes */
        __atomic_store_n(&s->sid[k], 0, __ATOMIC_RELEASE);
    } else if (sid) {
        int rc = propose_end(n, k, sid, 0);
        if (rc < 0 && rc != -ENOENT)
            fprintf(stderr, "quorumfs: cannot end the mount session (shard %u): %s\n", k,
                    strerror(-rc));
        __atomic_store_n(&s->sid[k], 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&s->shard_mu[k]);
}

void session_local_stop(session_local_t *s)
{
    if (!s)
        return;
    __atomic_store_n(&s->closing, 1, __ATOMIC_RELEASE);   /* no reopen from now on */
    node_each_shard(s->node, end_in_shard, s);
    pthread_mutex_lock(&s->mu);
    int running = s->running;
    s->stopping = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (running)
        pthread_join(s->thread, NULL);
    pthread_mutex_lock(&s->mu);
    s->running = 0;
    pthread_mutex_unlock(&s->mu);
}

void session_local_free(session_local_t *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    for (uint32_t k = 0; k < s->nshards; k++)
        pthread_mutex_destroy(&s->shard_mu[k]);
    free(s->shard_mu);
    free(s->sid);
    free(s->last_renew_ms);
    free(s);
}
