/* fs/session.c — mount sessions (see session.h): the replicated session table, the node's own
 * session (opened at start, renewed by the sweeper, ended at stop), leader-side expiry of
 * silent sessions, and the background proposer used by the queues/ and locks/ modules. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cluster/err.h"
#include "fs/node.h"
#include "fs/session.h"

/* ---------------------------------------------------------------- replicated table */

session_t *session_find(const session_table_t *t, uint64_t sid)
{
    for (session_t *s = t->head; s; s = s->next)
        if (s->id == sid)
            return s;
    return NULL;
}

static void unlink_session(session_table_t *t, session_t *s)
{
    session_t **pp = &t->head, *prev = NULL;
    while (*pp && *pp != s) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = s->next;
    if (t->tail == s)
        t->tail = prev;
    free(s);
}

static session_t *append_session(session_table_t *t)
{
    session_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
    return s;
}

int session_apply(session_table_t *t, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                  uint64_t *ended)
{
    *ended = 0;
    switch (h->op) {
    case SOP_OPEN: {
        const uint8_t *node;
        size_t nl = cmd_get_bytes(r, &node);
        uint32_t pid = cmd_get_u32(r);
        uint64_t lease = cmd_get_u64(r);
        if (r->err || nl == 0 || nl >= SESSION_NODE_MAX || lease == 0)
            return -EINVAL;
        session_t *s = append_session(t);
        if (!s)
            return -ENOMEM;
        s->id = ++t->next_id;
        memcpy(s->node, node, nl);
        s->pid = pid;
        s->opened_ms = h->now_ms;
        s->lease_ms = lease;
        s->expires_ms = h->now_ms + lease;
        if (res) {
            memcpy(res->data, &s->id, 8);
            res->len = 8;
        }
        return 0;
    }
    case SOP_RENEW: {
        uint64_t sid = cmd_get_u64(r), lease = cmd_get_u64(r);
        if (r->err || lease == 0)
            return -EINVAL;
        session_t *s = session_find(t, sid);
        if (!s)
            return -ENOENT;
        s->lease_ms = lease;
        s->expires_ms = h->now_ms + lease;
        return 0;
    }
    case SOP_END: {
        uint64_t sid = cmd_get_u64(r);
        uint8_t only_expired = cmd_get_u8(r);
        if (r->err)
            return -EINVAL;
        session_t *s = session_find(t, sid);
        if (!s)
            return -ENOENT;
        if (only_expired && s->expires_ms > h->now_ms)
            return -EAGAIN;     /* renewed since the leader decided: keep it */
        unlink_session(t, s);
        *ended = sid;
        return 0;
    }
    default:
        return -EINVAL;
    }
}

void session_table_free(session_table_t *t)
{
    session_t *s = t->head, *n;
    for (; s; s = n) {
        n = s->next;
        free(s);
    }
    t->head = t->tail = NULL;
}

void session_snapshot(const session_table_t *t, snapout_t *o)
{
    uint32_t n = 0;
    for (session_t *s = t->head; s; s = s->next)
        n++;
    so_u64(o, t->next_id);
    so_u32(o, n);
    for (session_t *s = t->head; s; s = s->next) {
        so_u64(o, s->id);
        so_blob(o, s->node, (uint32_t)strlen(s->node));
        so_u32(o, s->pid);
        so_u64(o, s->opened_ms);
        so_u64(o, s->lease_ms);
        so_u64(o, s->expires_ms);
    }
}

int session_restore(session_table_t *t, snapin_t *in)
{
    t->next_id = si_u64(in);
    uint32_t n = si_u32(in);
    for (uint32_t i = 0; i < n && !in->err; i++) {
        session_t *s = append_session(t);
        if (!s)
            return -QERR_NOMEM;
        s->id = si_u64(in);
        uint32_t nl = si_u32(in);
        if (in->err || nl == 0 || nl >= SESSION_NODE_MAX || s->id > t->next_id)
            return -QERR_CORRUPT;
        si_bytes(in, s->node, nl);
        s->pid = si_u32(in);
        s->opened_ms = si_u64(in);
        s->lease_ms = si_u64(in);
        s->expires_ms = si_u64(in);
    }
    return in->err;
}

/* ---------------------------------------------------------------- background proposer */

typedef struct bgjob {
    cmdbuf_t b;
    void (*done)(void *arg, int rc);
    void *arg;
    struct bgjob *next;
} bgjob_t;

static struct {
    node_t *node;
    session_table_t *(*table_of)(state_t *st);
    uint64_t sid;                   /* atomic: this mount's session */
    char name[SESSION_NODE_MAX];
    uint64_t last_renew_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bgjob_t *head, *tail;
    int running, stopping;
    pthread_t thread;
    pthread_mutex_t own_mu;         /* serializes renew/open (sweeper) with the end at stop */
    int closing;                    /* under own_mu: stop began; never reopen */
} S = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
        .own_mu = PTHREAD_MUTEX_INITIALIZER };

uint64_t session_local_id(void) { return __atomic_load_n(&S.sid, __ATOMIC_ACQUIRE); }
struct node *session_node(void) { return S.node; }
const char *session_node_name(void) { return S.name; }

static void *bg_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&S.mu);
    for (;;) {
        while (!S.head && !S.stopping)
            pthread_cond_wait(&S.cv, &S.mu);
        bgjob_t *j = S.head;
        if (!j)
            break;                  /* stopping and drained */
        S.head = j->next;
        if (!S.head)
            S.tail = NULL;
        pthread_mutex_unlock(&S.mu);
        int rc = node_propose(S.node, &j->b, NULL);
        if (rc < 0 && rc != -ENOENT && rc != -EAGAIN)
            fprintf(stderr, "quorumfs: background proposal failed: %s\n", strerror(-rc));
        if (j->done)
            j->done(j->arg, rc);
        free(j);
        pthread_mutex_lock(&S.mu);
    }
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

int session_bg_propose(cmdbuf_t *b, void (*done)(void *arg, int rc), void *arg)
{
    bgjob_t *j = calloc(1, sizeof(*j));
    pthread_mutex_lock(&S.mu);
    if (!j || !S.running || S.stopping) {
        pthread_mutex_unlock(&S.mu);
        free(j);
        free(b->p);
        b->p = NULL;
        return j ? -ENOTCONN : -ENOMEM;
    }
    j->b = *b;
    b->p = NULL;
    j->done = done;
    j->arg = arg;
    if (S.tail)
        S.tail->next = j;
    else
        S.head = j;
    S.tail = j;
    pthread_cond_signal(&S.cv);
    pthread_mutex_unlock(&S.mu);
    return 0;
}

/* ---------------------------------------------------------------- node's own session */

static int propose_end(node_t *n, uint64_t sid, int only_expired)
{
    cmdbuf_t b;
    cmd_begin(&b, SOP_END, NS_LOCKS, node_now_ms());
    cmd_u64(&b, sid);
    cmd_u8(&b, (uint8_t)only_expired);
    return node_propose(n, &b, NULL);
}

static int open_session(node_t *n)
{
    cmdbuf_t b;
    sm_result_t res;
    cmd_begin(&b, SOP_OPEN, NS_LOCKS, node_now_ms());
    cmd_str(&b, S.name);
    cmd_u32(&b, (uint32_t)getpid());
    cmd_u64(&b, SESSION_LEASE_MS);
    int rc = node_propose(n, &b, &res);
    if (rc == 0 && res.len >= 8) {
        uint64_t sid;
        memcpy(&sid, res.data, 8);
        __atomic_store_n(&S.sid, sid, __ATOMIC_RELEASE);
        S.last_renew_ms = node_now_ms();
    }
    return rc;
}

/* Ids of sessions matching (node name == mine) or (expired at now), excluding mine.
 * Returns a malloc'ed array (caller frees) and its length in *n. */
static uint64_t *collect(int mine, uint64_t now, size_t *cnt)
{
    state_t *st = node_state(S.node);
    uint64_t *ids = NULL, self = session_local_id();
    size_t n = 0, cap = 0;
    pthread_rwlock_rdlock(&st->lock);
    session_table_t *t = S.table_of(st);
    for (session_t *s = t ? t->head : NULL; s; s = s->next) {
        if (s->id == self)
            continue;
        if (mine ? strcmp(s->node, S.name) != 0 : s->expires_ms > now)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            uint64_t *p = realloc(ids, nc * sizeof(*p));
            if (!p)
                break;
            ids = p;
            cap = nc;
        }
        ids[n++] = s->id;
    }
    pthread_rwlock_unlock(&st->lock);
    *cnt = n;
    return ids;
}

void session_start(struct node *n, session_table_t *(*table_of)(state_t *st))
{
    S.node = n;
    S.table_of = table_of;
    S.closing = 0;
    if (gethostname(S.name, sizeof(S.name) - 1) != 0 || !S.name[0])
        snprintf(S.name, sizeof(S.name), "localhost");
    S.name[sizeof(S.name) - 1] = 0;
    pthread_mutex_lock(&S.mu);
    S.stopping = 0;
    S.running = pthread_create(&S.thread, NULL, bg_main, NULL) == 0;
    pthread_mutex_unlock(&S.mu);
    /* An earlier run of this node that crashed left its sessions behind: end them now,
     * which releases their locks, claims and waiters. */
    size_t cnt;
    uint64_t *ids = collect(1, 0, &cnt);
    for (size_t i = 0; i < cnt; i++)
        propose_end(n, ids[i], 0);
    free(ids);
    int rc = open_session(n);
    if (rc < 0)
        fprintf(stderr, "quorumfs: cannot open the mount session: %s\n", strerror(-rc));
}

void session_sweep(struct node *n)
{
    if (!S.node)
        return;
    uint64_t now = node_now_ms();
    pthread_mutex_lock(&S.own_mu);
    uint64_t sid = session_local_id();
    if (!S.closing && (!sid || now - S.last_renew_ms >= SESSION_RENEW_MS)) {
        int rc = -ENOENT;
        if (sid) {
            cmdbuf_t b;
            cmd_begin(&b, SOP_RENEW, NS_LOCKS, now);
            cmd_u64(&b, sid);
            cmd_u64(&b, SESSION_LEASE_MS);
            rc = node_propose(n, &b, NULL);
            if (rc == 0)
                S.last_renew_ms = now;
        }
        if (rc == -ENOENT) {
            /* Our session was ended (expired while we were stalled): open a new one. */
            if (open_session(n) == 0)
                fprintf(stderr, "quorumfs: the mount session had ended; opened session %llu\n",
                        (unsigned long long)session_local_id());
        }
    }
    pthread_mutex_unlock(&S.own_mu);
    /* The leader ends sessions that went silent (their node stopped renewing). */
    size_t cnt;
    uint64_t *ids = collect(0, now, &cnt);
    for (size_t i = 0; i < cnt; i++)
        propose_end(n, ids[i], 1);
    free(ids);
}

void session_stop(struct node *n)
{
    pthread_mutex_lock(&S.own_mu);
    S.closing = 1;
    uint64_t sid = session_local_id();
    if (sid && S.node) {
        int rc = propose_end(n, sid, 0);
        if (rc < 0 && rc != -ENOENT)
            fprintf(stderr, "quorumfs: cannot end the mount session: %s\n", strerror(-rc));
        __atomic_store_n(&S.sid, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&S.own_mu);
    pthread_mutex_lock(&S.mu);
    int running = S.running;
    S.stopping = 1;
    pthread_cond_signal(&S.cv);
    pthread_mutex_unlock(&S.mu);
    if (running)
        pthread_join(S.thread, NULL);
    pthread_mutex_lock(&S.mu);
    S.running = 0;
    pthread_mutex_unlock(&S.mu);
    /* S.node stays: the sweeper may still run until node_close joins it (closing is set). */
}
