/* cluster/mraft_tcp.c — the TCP transport behind a node loop (see mraft_tcp.h). */
#include "cluster/mraft_tcp.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cluster/assert.h"
#include "cluster/err.h"

struct mraft_tcp {
    /* t_mu guards every call into the transport (which does no locking of its own): the
     * loop thread holds it around each send, flush, poll and stats copy (never while it
     * sleeps in poll(2)), and mraft_tcp_add_peer / _remove_peer take it from any thread.
     * Lock order: t_mu, then the node's lock (deliveries run inside transport_poll); wake,
     * called under the node's lock, does not take it. */
    pthread_mutex_t t_mu;
    size_t n_peers;              /* peers added (open and at run time), under t_mu */
    transport_t *t;
    mraft_node_t *node;
    int efd;                     /* written by wake, drained by poll */
    /* peer statistics for other threads (mraft_tcp_track) */
    pthread_mutex_t stats_mu;    /* guards stats[] */
    struct peer_copy {
        uint64_t id;
        transport_peer_stats_t st;
    } *stats;
    size_t nstats;
    uint64_t status_queries, refused; /* copies of the transport's counters, under stats_mu */
    uint64_t stats_ms;           /* loop thread: monotonic ms of the last copy */
    /* the published status text (mraft_tcp_set_status), read by the loop for queries */
    pthread_mutex_t status_mu;   /* guards the four below */
    char *status;
    size_t status_len;
    bool status_set;
    uint64_t status_ms;          /* monotonic ms of the last publication */
    /* admin requests: the handler, the tokens handed to it and not yet answered or gone, and
     * the answers waiting for the loop to write them */
    pthread_mutex_t admin_mu;    /* guards the seven below */
    mraft_tcp_admin_fn admin_fn;
    void *admin_arg;
    uint64_t *live;              /* tokens handed to the handler, unanswered */
    size_t nlive, caplive;
    struct admin_ans *answers;   /* queued answers, newest first (order does not matter) */
    uint64_t admin_requests;     /* copy of the transport's counter, under stats_mu */
};

/* One answer waiting for the loop. */
struct admin_ans {
    struct admin_ans *next;
    uint64_t token;
    int32_t code;
    size_t len;
    char text[];
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* On the loop thread: refreshes the copies of the tracked peers' statistics and of the
 * transport's counters. */
static void copy_stats(mraft_tcp_t *x)
{
    uint64_t now = mono_ms();
    if (now - x->stats_ms < MRAFT_TCP_STATS_MS)
        return;
    x->stats_ms = now;
    pthread_mutex_lock(&x->t_mu);
    pthread_mutex_lock(&x->stats_mu);
    for (size_t i = 0; i < x->nstats; i++)
        (void)transport_peer_stats(x->t, x->stats[i].id, &x->stats[i].st);
    x->status_queries = transport_status_queries(x->t);
    x->admin_requests = transport_admin_requests(x->t);
    x->refused = transport_refused(x->t);
    pthread_mutex_unlock(&x->stats_mu);
    pthread_mutex_unlock(&x->t_mu);
}

void mraft_tcp_counters(mraft_tcp_t *x, uint64_t *status_queries, uint64_t *refused)
{
    pthread_mutex_lock(&x->stats_mu);
    *status_queries = x->status_queries;
    *refused = x->refused;
    pthread_mutex_unlock(&x->stats_mu);
}

/* transport_status_fn, on the loop thread: copies the published text. */
static int answer_status(void *ctx, char *buf, size_t cap, size_t *len, uint64_t *age_ms)
{
    mraft_tcp_t *x = ctx;
    int rc = -QERR_NOTFOUND;
    pthread_mutex_lock(&x->status_mu);
    if (x->status_set) {
        size_t n = frame_utf8_cut(x->status, x->status_len, cap);
        memcpy(buf, x->status, n);
        *len = n;
        uint64_t now = mono_ms();
        *age_ms = now > x->status_ms ? now - x->status_ms : 0;
        rc = 0;
    }
    pthread_mutex_unlock(&x->status_mu);
    return rc;
}

int mraft_tcp_set_status(mraft_tcp_t *x, const char *text, size_t len)
{
    if ((len && !text) || !frame_utf8_valid(text, len))
        return -QERR_INVAL;
    static const char cut_line[] = MRAFT_TCP_STATUS_CUT;
    size_t keep = len, total = len;
    bool cut = len > STATUS_MAX_TEXT;
    if (cut) {
        size_t max = STATUS_MAX_TEXT - (sizeof cut_line - 1);
        keep = 0;
        for (size_t i = 0; i < max; i++) /* through the last newline that fits */
            if (text[i] == '\n')
                keep = i + 1;
        if (keep == 0)
            keep = frame_utf8_cut(text, len, max);
        total = keep + sizeof cut_line - 1;
    }
    char *copy = malloc(total ? total : 1);
    if (!copy)
        return -QERR_NOMEM;
    if (keep)
        memcpy(copy, text, keep);
    if (cut)
        memcpy(copy + keep, cut_line, sizeof cut_line - 1);
    pthread_mutex_lock(&x->status_mu);
    char *old = x->status;
    x->status = copy;
    x->status_len = total;
    x->status_set = true;
    x->status_ms = mono_ms();
    pthread_mutex_unlock(&x->status_mu);
    free(old);
    return cut ? 1 : 0;
}

uint64_t mraft_tcp_admin_requests(mraft_tcp_t *x)
{
    pthread_mutex_lock(&x->stats_mu);
    uint64_t n = x->admin_requests;
    pthread_mutex_unlock(&x->stats_mu);
    return n;
}

/* Removes token from the live set under admin_mu; returns whether it was there. */
static bool live_take(mraft_tcp_t *x, uint64_t token)
{
    for (size_t i = 0; i < x->nlive; i++)
        if (x->live[i] == token) {
            x->live[i] = x->live[--x->nlive];
            return true;
        }
    return false;
}

/* transport_admin_fn, on the loop thread under t_mu. */
static void admin_request(void *ctx, uint64_t token, const frame_admin_t *req)
{
    mraft_tcp_t *x = ctx;
    static const char no[] = "not supported by this node";
    pthread_mutex_lock(&x->admin_mu);
    mraft_tcp_admin_fn fn = x->admin_fn;
    void *fn_arg = x->admin_arg;
    if (!fn) {
        pthread_mutex_unlock(&x->admin_mu);
        (void)transport_admin_answer(x->t, token, -EOPNOTSUPP, no, sizeof no - 1);
        return;
    }
    bool ok = true;
    if (x->nlive == x->caplive) {
        size_t cap = x->caplive ? x->caplive * 2 : 16;
        uint64_t *v = realloc(x->live, cap * sizeof *v);
        if (v) {
            x->live = v;
            x->caplive = cap;
        } else {
            ok = false;
        }
    }
    if (ok)
        x->live[x->nlive++] = token;
    pthread_mutex_unlock(&x->admin_mu);
    if (!ok) {
        static const char nomem[] = "out of memory";
        (void)transport_admin_answer(x->t, token, -ENOMEM, nomem, sizeof nomem - 1);
        return;
    }
    fn(fn_arg, token, req);   /* may answer at once: admin_mu is free */
}

/* transport_admin_gone_fn: the client left or the deadline passed; forget the token. */
static void admin_gone(void *ctx, uint64_t token)
{
    mraft_tcp_t *x = ctx;
    pthread_mutex_lock(&x->admin_mu);
    (void)live_take(x, token);
    pthread_mutex_unlock(&x->admin_mu);
}

/* On the loop thread under t_mu: writes the queued answers. */
static void admin_drain(mraft_tcp_t *x)
{
    pthread_mutex_lock(&x->admin_mu);
    struct admin_ans *a = x->answers;
    x->answers = NULL;
    pthread_mutex_unlock(&x->admin_mu);
    while (a) {
        struct admin_ans *nx = a->next;
        (void)transport_admin_answer(x->t, a->token, a->code, a->text, a->len); /* NOTFOUND:
                                                       the client left meanwhile */
        free(a);
        a = nx;
    }
}

void mraft_tcp_set_admin(mraft_tcp_t *x, mraft_tcp_admin_fn fn, void *arg)
{
    pthread_mutex_lock(&x->admin_mu);
    x->admin_fn = fn;
    x->admin_arg = arg;
    pthread_mutex_unlock(&x->admin_mu);
}

static void tcp_wake(void *ctx);

int mraft_tcp_admin_answer(mraft_tcp_t *x, uint64_t token, int32_t code, const char *text,
                           size_t len)
{
    if (!text)
        len = 0;
    if (len > ADMIN_MAX_TEXT)
        len = frame_utf8_cut(text, len, ADMIN_MAX_TEXT);
    struct admin_ans *a = malloc(sizeof *a + (len ? len : 1));
    if (!a)
        return -QERR_NOMEM;
    a->token = token;
    a->code = code;
    a->len = len;
    if (len)
        memcpy(a->text, text, len);
    pthread_mutex_lock(&x->admin_mu);
    bool known = live_take(x, token);
    if (known) {
        a->next = x->answers;
        x->answers = a;
    }
    pthread_mutex_unlock(&x->admin_mu);
    if (!known) {
        free(a);
        return -QERR_NOTFOUND;
    }
    tcp_wake(x);
    return 0;
}

static void deliver(void *ctx, uint64_t from, uint32_t group, raft_msg_t *m)
{
    mraft_tcp_t *x = ctx;
    (void)from;
    if (x->node)
        mraft_recv(x->node, group, m);   /* moves m (or clones it); a refusal drops it */
}

static void deliver_fwd(void *ctx, uint64_t from, frame_fwd_t *f)
{
    mraft_tcp_t *x = ctx;
    if (x->node)
        mraft_recv_fwd(x->node, from, f);   /* moves *f; a refusal drops it */
}

static int tcp_send_fwd(void *ctx, uint64_t to, const frame_fwd_t *f)
{
    mraft_tcp_t *x = ctx;
    pthread_mutex_lock(&x->t_mu);
    int rc = transport_send_fwd(x->t, to, f);
    pthread_mutex_unlock(&x->t_mu);
    return rc;
}

static void tcp_send(void *ctx, uint64_t to, uint32_t group, const raft_msg_t *m)
{
    mraft_tcp_t *x = ctx;
    ASSERT(m->to == to);
    pthread_mutex_lock(&x->t_mu);
    transport_send(x->t, group, m);     /* a refusal is a lost message: Raft retries */
    pthread_mutex_unlock(&x->t_mu);
}

static void tcp_flush(void *ctx)
{
    mraft_tcp_t *x = ctx;
    pthread_mutex_lock(&x->t_mu);
    admin_drain(x);
    transport_poll(x->t, 0);            /* writes the batch, and reads what has come */
    pthread_mutex_unlock(&x->t_mu);
}

static void tcp_poll(void *ctx, int timeout_ms)
{
    mraft_tcp_t *x = ctx;
    struct pollfd p[2] = { { .fd = transport_fd(x->t), .events = POLLIN },
                           { .fd = x->efd, .events = POLLIN } };
    if (poll(p, 2, timeout_ms) > 0 && (p[1].revents & POLLIN)) {
        uint64_t v;
        ssize_t r = read(x->efd, &v, sizeof(v));
        (void)r;
    }
    pthread_mutex_lock(&x->t_mu);
    admin_drain(x);
    transport_poll(x->t, 0);            /* also runs its timers: at least once per tick */
    pthread_mutex_unlock(&x->t_mu);
    copy_stats(x);
}

static void tcp_wake(void *ctx)
{
    mraft_tcp_t *x = ctx;
    uint64_t one = 1;
    ssize_t r = write(x->efd, &one, sizeof(one));   /* EAGAIN: already pending */
    (void)r;
}

int mraft_tcp_new(const transport_config_t *cfg, mraft_tcp_t **out, char **errmsg)
{
    *out = NULL;
    mraft_tcp_t *x = xcalloc(1, sizeof(*x));
    transport_config_t c = *cfg;
    c.deliver = deliver;
    c.deliver_ctx = x;
    c.deliver_fwd = deliver_fwd;
    c.status = answer_status;
    c.status_ctx = x;
    c.admin = admin_request;
    c.admin_gone = admin_gone;
    c.admin_ctx = x;
    x->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (x->efd < 0) {
        int rc = qerr_from_errno(errno);
        qerr_set_msg(errmsg, "mraft_tcp: eventfd failed");
        free(x);
        return rc;
    }
    int rc = transport_new(&c, &x->t, errmsg);
    if (rc) {
        close(x->efd);
        free(x);
        return rc;
    }
    pthread_mutex_init(&x->stats_mu, NULL);
    pthread_mutex_init(&x->status_mu, NULL);
    pthread_mutex_init(&x->t_mu, NULL);
    pthread_mutex_init(&x->admin_mu, NULL);
    *out = x;
    return 0;
}

int mraft_tcp_track(mraft_tcp_t *x, uint64_t id)
{
    pthread_mutex_lock(&x->stats_mu);
    for (size_t i = 0; i < x->nstats; i++)
        if (x->stats[i].id == id) {
            pthread_mutex_unlock(&x->stats_mu);
            return 0;
        }
    struct peer_copy *p = realloc(x->stats, (x->nstats + 1) * sizeof(*p));
    if (!p) {
        pthread_mutex_unlock(&x->stats_mu);
        return -QERR_NOMEM;
    }
    x->stats = p;
    memset(&p[x->nstats], 0, sizeof(p[x->nstats]));
    p[x->nstats].id = id;
    p[x->nstats].st.rtt_us = -1;
    x->nstats++;
    pthread_mutex_unlock(&x->stats_mu);
    return 0;
}

/* Stops tracking id (its copy goes). */
static void untrack(mraft_tcp_t *x, uint64_t id)
{
    pthread_mutex_lock(&x->stats_mu);
    for (size_t i = 0; i < x->nstats; i++)
        if (x->stats[i].id == id) {
            x->stats[i] = x->stats[--x->nstats];
            break;
        }
    pthread_mutex_unlock(&x->stats_mu);
}

int mraft_tcp_add_peer(mraft_tcp_t *x, uint64_t id, const char *addr)
{
    pthread_mutex_lock(&x->t_mu);
    int rc = x->n_peers >= MRAFT_TCP_MAX_PEERS ? -QERR_TOOBIG
                                               : transport_add_peer(x->t, id, addr);
    if (rc == 0)
        x->n_peers++;
    pthread_mutex_unlock(&x->t_mu);
    if (rc)
        return rc;
    if ((rc = mraft_tcp_track(x, id)) < 0) {
        pthread_mutex_lock(&x->t_mu);
        if (transport_remove_peer(x->t, id) == 0)
            x->n_peers--;
        pthread_mutex_unlock(&x->t_mu);
        return rc;
    }
    tcp_wake(x);                         /* the loop dials it (or waits for its dial) now */
    return 0;
}

int mraft_tcp_expect_incarnation(mraft_tcp_t *x, uint64_t id, uint64_t inc)
{
    pthread_mutex_lock(&x->t_mu);
    int rc = transport_expect_incarnation(x->t, id, inc);
    pthread_mutex_unlock(&x->t_mu);
    return rc;
}

int mraft_tcp_remove_peer(mraft_tcp_t *x, uint64_t id)
{
    pthread_mutex_lock(&x->t_mu);
    int rc = transport_remove_peer(x->t, id);   /* closes it; its queue is freed */
    if (rc == 0 && x->n_peers)      /* (peers added straight to the transport are not counted) */
        x->n_peers--;
    pthread_mutex_unlock(&x->t_mu);
    if (rc == 0)
        untrack(x, id);
    return rc;
}

int mraft_tcp_peer_stats(mraft_tcp_t *x, uint64_t id, transport_peer_stats_t *st)
{
    int rc = -QERR_NOTFOUND;
    pthread_mutex_lock(&x->stats_mu);
    for (size_t i = 0; i < x->nstats; i++)
        if (x->stats[i].id == id) {
            *st = x->stats[i].st;
            rc = 0;
        }
    pthread_mutex_unlock(&x->stats_mu);
    return rc;
}

transport_t *mraft_tcp_transport(mraft_tcp_t *x)
{
    return x->t;
}

void mraft_tcp_ops(mraft_tcp_t *x, mraft_transport_t *tr)
{
    *tr = (mraft_transport_t){ .send = tcp_send, .flush = tcp_flush, .poll = tcp_poll,
                               .wake = tcp_wake, .send_fwd = tcp_send_fwd, .ctx = x };
}

void mraft_tcp_attach(mraft_tcp_t *x, mraft_node_t *n)
{
    x->node = n;
}

void mraft_tcp_free(mraft_tcp_t *x)
{
    if (!x)
        return;
    transport_free(x->t);
    close(x->efd);
    pthread_mutex_destroy(&x->stats_mu);
    pthread_mutex_destroy(&x->status_mu);
    pthread_mutex_destroy(&x->t_mu);
    while (x->answers) {
        struct admin_ans *a = x->answers;
        x->answers = a->next;
        free(a);
    }
    free(x->live);
    pthread_mutex_destroy(&x->admin_mu);
    free(x->status);
    free(x->stats);
    free(x);
}
