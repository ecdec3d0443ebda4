/* tests/unit/test_admin.c — admin requests on the peer port: the member side
 * (cluster/transport.c handing ADMIN_REQ to the handler mraft_tcp / group_node installed, and
 * writing its answer) and the client (cluster/admin_client.c), on 127.0.0.1 with ephemeral
 * ports. The members run in a thread of their own while the test calls them with the blocking
 * client. Cases: a handler that answers at once (inside the handler) gets its request's
 * fields and its answer across; one that answers from another thread 200 ms later; no
 * handler: -EOPNOTSUPP; a client that goes away ends the request (a later answer gets
 * NOTFOUND); the deadline (300 ms here) answers -ETIMEDOUT; malformed requests and a frame
 * after the request are refused; TLS with a client or a node certificate (others refused);
 * cluster_admin_call against a started group node. Every wait is bounded; each case checks its
 * fds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster/admin_client.h"
#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/group.h"
#include "cluster/mraft_tcp.h"
#include "cluster/transport.h"
#include "tests/unit/check.h"
#define NETHELP_LOG_ENV "ADMIN_LOG"
#include "tests/unit/nethelp.h"

static int make_all(void)
{
    if (certs_dir_new("qfs-adm-") != 0)
        return -1;
    return make_ca("ca", "quorumfs test CA") ||
           make_cert("node-1", "ca", "quorumfs-1", NULL) ||
           make_cert("node-2", "ca", "quorumfs-2", NULL) ||
           make_cert("client", "ca", "quorumfs-client", NULL) ||
           make_cert("stranger", "ca", "stranger", NULL);
}

/* ---- fixture ------------------------------------------------------------------------- */

static void deliver(void *ctx, uint64_t from, uint32_t group, raft_msg_t *m)
{
}

static mraft_tcp_t *start_member(uint64_t id, const char *cert, uint32_t admin_timeout_ms)
{
    transport_config_t c = base_config(id, deliver, NULL);
    c.admin_timeout_ms = admin_timeout_ms;
    if (cert) {
        c.tls_cert = path(cert, "pem");
        c.tls_key = path(cert, "key");
        c.tls_ca = path("ca", "pem");
    }
    mraft_tcp_t *x = NULL;
    char *msg = NULL;
    int rc = mraft_tcp_new(&c, &x, &msg);
    npaths = 0;
    if (rc < 0)
        printf("# mraft_tcp_new: %s\n", msg ? msg : qerr_str(rc));
    free(msg);
    return x;
}

static void addr_of(const transport_t *t, char *buf, size_t cap)
{
    snprintf(buf, cap, "127.0.0.1:%u", transport_port(t));
}

/* The member's loop, in a thread of its own, as a node loop polls it. */
typedef struct runner {
    mraft_transport_t tr;
    atomic_int stop;
    pthread_t th;
} runner_t;

static void *run(void *arg)
{
    runner_t *r = arg;
    while (!atomic_load(&r->stop))
        r->tr.poll(r->tr.ctx, 5);
    return NULL;
}

static int run_start(runner_t *r, mraft_tcp_t *x)
{
    mraft_tcp_ops(x, &r->tr);
    atomic_store(&r->stop, 0);
    return pthread_create(&r->th, NULL, run, r);
}

static void run_stop(runner_t *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
}

/* What the handler saw, and how it answers. */
enum { ANSWER_AT_ONCE = 1, ANSWER_LATER, ANSWER_NEVER };
typedef struct handler {
    mraft_tcp_t *x;
    int mode;
    pthread_mutex_t mu;
    frame_admin_t req;       /* the last request seen (a copy) */
    uint64_t token;          /* its token */
    int calls;
    pthread_t th;            /* ANSWER_LATER: the answering thread */
    bool th_started;
    int later_rc;            /* what mraft_tcp_admin_answer returned to it */
} handler_t;

static void *answer_later(void *arg)
{
    handler_t *h = arg;
    usleep(200 * 1000);
    pthread_mutex_lock(&h->mu);
    uint64_t token = h->token;
    pthread_mutex_unlock(&h->mu);
    static const char text[] = "drained after a while\n";
    int rc = mraft_tcp_admin_answer(h->x, token, -EBUSY, text, sizeof text - 1);
    pthread_mutex_lock(&h->mu);
    h->later_rc = rc;
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static void on_admin(void *arg, uint64_t token, const frame_admin_t *req)
{
    handler_t *h = arg;
    pthread_mutex_lock(&h->mu);
    h->req = *req;
    h->token = token;
    h->calls++;
    pthread_mutex_unlock(&h->mu);
    if (h->mode == ANSWER_AT_ONCE) {
        char text[400];
        int n = snprintf(text, sizeof text, "op %" PRIu32 " id %" PRIu64 " flags %" PRIu32
                         " addr \"%s\" \xe2\x9c\x93\n", req->op, req->id, req->flags, req->addr);
        (void)mraft_tcp_admin_answer(h->x, token, 0, text, (size_t)n);
    } else if (h->mode == ANSWER_LATER && !h->th_started) {
        h->th_started = pthread_create(&h->th, NULL, answer_later, h) == 0;
    }
}

static uint64_t token_of(handler_t *h)
{
    pthread_mutex_lock(&h->mu);
    uint64_t t = h->calls ? h->token : 0;
    pthread_mutex_unlock(&h->mu);
    return t;
}

/* Calls addr; prints the error of a failure. cert NULL: plain; else TLS, CA "ca". */
static int call(const char *addr, const char *cert, const frame_admin_t *req,
                cluster_admin_answer_t *a, char **msg)
{
    cluster_status_tls_t tls = { 0 };
    if (cert) {
        tls.cert = path(cert, "pem");
        tls.key = path(cert, "key");
        tls.ca = path("ca", "pem");
    }
    *msg = NULL;
    int rc = cluster_admin_call(addr, cert ? &tls : NULL, 5000, req, a, msg);
    npaths = 0;
    if (rc < 0)
        printf("# call %s: %s\n", addr, *msg ? *msg : qerr_str(rc));
    return rc;
}

static frame_admin_t a_request(uint32_t op, uint64_t id, const char *addr)
{
    frame_admin_t r = { .op = op, .id = id, .flags = 5 };
    snprintf(r.addr, sizeof r.addr, "%s", addr);
    return r;
}

/* ---- cases --------------------------------------------------------------------------- */

TEST(handler_answers_at_once)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, NULL, 0);
    CHECK(x != NULL);
    handler_t h = { .x = x, .mode = ANSWER_AT_ONCE, .mu = PTHREAD_MUTEX_INITIALIZER };
    mraft_tcp_set_admin(x, on_admin, &h);
    char addr[64];
    addr_of(mraft_tcp_transport(x), addr, sizeof addr);
    runner_t r;
    CHECK_EQ(run_start(&r, x), 0);
    frame_admin_t req = a_request(7, 3, "10.0.0.3:9000");
    cluster_admin_answer_t a;
    char *msg;
    int rc = call(addr, NULL, &req, &a, &msg);
    free(msg);
    const char *want = "op 7 id 3 flags 5 addr \"10.0.0.3:9000\" \xe2\x9c\x93\n";
    int ok = rc == 0 && a.code == 0 && a.node_id == 1 && !a.tls && a.len == strlen(want) &&
             strcmp(a.text, want) == 0;
    cluster_admin_answer_free(&a);
    /* an empty address, id 0 */
    req = a_request(1, 0, "");
    rc = call(addr, NULL, &req, &a, &msg);
    free(msg);
    int ok2 = rc == 0 && a.code == 0 && strcmp(a.text, "op 1 id 0 flags 5 addr \"\" "
                                               "\xe2\x9c\x93\n") == 0;
    cluster_admin_answer_free(&a);
    uint64_t seen = 0, end = ms_now() + 3000;
    while (seen < 2 && ms_now() < end) {
        seen = mraft_tcp_admin_requests(x);
        usleep(10000);
    }
    run_stop(&r);
    CHECK(ok);
    CHECK(ok2);
    CHECK_EQ(seen, 2);
    CHECK_EQ(h.calls, 2);
    CHECK_EQ(h.req.version, ADMIN_VERSION);
    /* a token is answered once */
    CHECK_EQ(mraft_tcp_admin_answer(x, h.token, 0, "again", 5), -QERR_NOTFOUND);
    CHECK_EQ(transport_refused(mraft_tcp_transport(x)), 0);
    CHECK(log_has("node 1: admin request op 7 from 127.0.0.1:"));
    CHECK(log_has("admin request answered (code 0, 43 bytes of text)"));
    mraft_tcp_free(x);
    CHECK_EQ(count_fds(), fds);
}

TEST(handler_answers_later_from_another_thread)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, NULL, 0);
    CHECK(x != NULL);
    handler_t h = { .x = x, .mode = ANSWER_LATER, .mu = PTHREAD_MUTEX_INITIALIZER };
    mraft_tcp_set_admin(x, on_admin, &h);
    char addr[64];
    addr_of(mraft_tcp_transport(x), addr, sizeof addr);
    runner_t r;
    CHECK_EQ(run_start(&r, x), 0);
    frame_admin_t req = a_request(2, 9, "");
    cluster_admin_answer_t a;
    char *msg;
    int rc = call(addr, NULL, &req, &a, &msg);
    free(msg);
    int ok = rc == 0 && a.code == -EBUSY && a.node_id == 1 &&
             strcmp(a.text, "drained after a while\n") == 0;
    cluster_admin_answer_free(&a);
    if (h.th_started)
        pthread_join(h.th, NULL);
    run_stop(&r);
    CHECK(ok);
    CHECK(h.th_started);
    CHECK_EQ(h.later_rc, 0);
    CHECK_EQ(h.req.op, 2);
    CHECK_EQ(h.req.id, 9);
    CHECK(log_has("admin request answered (code -16, 22 bytes of text)"));
    mraft_tcp_free(x);
    CHECK_EQ(count_fds(), fds);
}

TEST(no_handler_answers_not_supported)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, NULL, 0);
    CHECK(x != NULL);
    char addr[64];
    addr_of(mraft_tcp_transport(x), addr, sizeof addr);
    runner_t r;
    CHECK_EQ(run_start(&r, x), 0);
    frame_admin_t req = a_request(4, 2, "");
    cluster_admin_answer_t a;
    char *msg;
    int rc = call(addr, NULL, &req, &a, &msg);
    free(msg);
    int ok = rc == 0 && a.code == -EOPNOTSUPP && strcmp(a.text, "not supported by this node")
             == 0;
    cluster_admin_answer_free(&a);
    /* requests the client refuses to send */
    frame_admin_t bad = a_request(0, 2, "");
    int r0 = call(addr, NULL, &bad, &a, &msg);
    free(msg);
    bad = a_request(1, 2, "tab\there");
    int r1 = call(addr, NULL, &bad, &a, &msg);
    free(msg);
    run_stop(&r);
    CHECK(ok);
    CHECK_EQ(r0, -QERR_INVAL);
    CHECK_EQ(r1, -QERR_INVAL);
    CHECK_EQ(transport_admin_requests(mraft_tcp_transport(x)), 1);
    mraft_tcp_free(x);
    CHECK_EQ(count_fds(), fds);
}

/* A raw ADMIN_REQ frame (any fields, a right CRC) into out; returns its length. */
static size_t raw_admin_req(uint8_t *out, uint32_t version, uint32_t op, const char *addr,
                            uint32_t addr_len_field, size_t addr_len)
{
    uint8_t *p = out + FRAME_HDR_BYTES;
    le_put32(p, version);
    le_put32(p + 4, op);
    le_put64(p + 8, 1);
    le_put32(p + 16, 0);
    le_put32(p + 20, addr_len_field);
    memcpy(p + ADMIN_REQ_HEAD_BYTES, addr, addr_len);
    uint32_t plen = ADMIN_REQ_HEAD_BYTES + (uint32_t)addr_len;
    le_put32(out, FRAME_MAGIC);
    out[4] = FRAME_VERSION;
    out[5] = FRAME_ADMIN_REQ;
    out[6] = out[7] = 0;
    le_put32(out + 8, plen);
    le_put32(out + 12, crc32c(crc32c(0, out, 12), p, plen));
    return FRAME_HDR_BYTES + plen;
}

typedef struct gone_wait {
    handler_t *h;
    const char *needle;
} gone_wait_t;

TEST(client_that_goes_away_ends_the_request)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, NULL, 0);
    CHECK(x != NULL);
    handler_t h = { .x = x, .mode = ANSWER_NEVER, .mu = PTHREAD_MUTEX_INITIALIZER };
    mraft_tcp_set_admin(x, on_admin, &h);
    transport_t *t = mraft_tcp_transport(x);
    runner_t r;
    CHECK_EQ(run_start(&r, x), 0);
    int fd = tcp_connect_to(t, 0);
    CHECK(fd >= 0);
    uint8_t b[512];
    size_t n = raw_admin_req(b, 1, 3, "x", 1, 1);
    CHECK_EQ(send(fd, b, n, MSG_NOSIGNAL), (ssize_t)n);
    uint64_t end = ms_now() + 5000, token = 0;
    while (!(token = token_of(&h)) && ms_now() < end)
        usleep(5000);
    CHECK(token != 0);
    close(fd);
    /* the loop notices the close (its log says so) and forgets the token: the answer then
       finds nothing. The log is read with the loop stopped. */
    bool gone = false;
    end = ms_now() + 5000;
    for (;;) {
        usleep(20000);
        run_stop(&r);
        gone = log_has("closing inbound connection from"); /* a reset or an end of stream */
        if (gone || ms_now() >= end)
            break;
        CHECK_EQ(run_start(&r, x), 0);
    }
    CHECK(gone);
    int rc = mraft_tcp_admin_answer(x, token, 0, "too late", 8);
    CHECK_EQ(rc, -QERR_NOTFOUND);
    CHECK_EQ(transport_refused(t), 0);
    mraft_tcp_free(x);
    CHECK_EQ(count_fds(), fds);
}

TEST(deadline_answers_timed_out)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, NULL, 300);
    CHECK(x != NULL);
    handler_t h = { .x = x, .mode = ANSWER_NEVER, .mu = PTHREAD_MUTEX_INITIALIZER };
    mraft_tcp_set_admin(x, on_admin, &h);
    char addr[64];
    addr_of(mraft_tcp_transport(x), addr, sizeof addr);
    runner_t r;
    CHECK_EQ(run_start(&r, x), 0);
    frame_admin_t req = a_request(6, 1, "");
    cluster_admin_answer_t a;
    char *msg;
    int rc = call(addr, NULL, &req, &a, &msg);
    free(msg);
    int ok = rc == 0 && a.code == -ETIMEDOUT && strcmp(a.text, "no answer within 300 ms") == 0;
    cluster_admin_answer_free(&a);
    int late = mraft_tcp_admin_answer(x, h.token, 0, "late", 4);
    run_stop(&r);
    CHECK(ok);
    CHECK_EQ(h.calls, 1);
    CHECK_EQ(late, -QERR_NOTFOUND);
    CHECK(log_has("admin request from 127.0.0.1:"));
    CHECK(log_has(": no answer within 300 ms"));
    mraft_tcp_free(x);
    CHECK_EQ(count_fds(), fds);
}

/* Sends bytes b[0..n) on a new connection and waits until the member closes it. */
static int refused_bytes(transport_t *t, const uint8_t *b, size_t n)
{
    int fd = tcp_connect_to(t, 0);
    if (fd < 0 || send(fd, b, n, MSG_NOSIGNAL) != (ssize_t)n) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    uint64_t end = ms_now() + 5000;
    int closed = 0;
    while (!(closed = fd_closed(&fd)) && ms_now() < end)
        usleep(5000);
    close(fd);
    return closed;
}

TEST(malformed_requests_are_refused)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, NULL, 0);
    CHECK(x != NULL);
    handler_t h = { .x = x, .mode = ANSWER_NEVER, .mu = PTHREAD_MUTEX_INITIALIZER };
    mraft_tcp_set_admin(x, on_admin, &h);
    transport_t *t = mraft_tcp_transport(x);
    runner_t r;
    CHECK_EQ(run_start(&r, x), 0);
    uint8_t b[1024];
    int ok[7];
    ok[0] = refused_bytes(t, b, raw_admin_req(b, 0, 1, "a", 1, 1));           /* version 0 */
    ok[1] = refused_bytes(t, b, raw_admin_req(b, 1, 0, "a", 1, 1));           /* op 0 */
    ok[2] = refused_bytes(t, b, raw_admin_req(b, 1, 1, "a\x01", 2, 2));       /* control */
    ok[3] = refused_bytes(t, b, raw_admin_req(b, 1, 1, "abc", 2, 3));         /* length */
    char big[300];
    memset(big, 'a', sizeof big);
    ok[4] = refused_bytes(t, b, raw_admin_req(b, 1, 1, big, 300, 300));       /* too long */
    /* a well-formed request followed by another frame */
    size_t n = raw_admin_req(b, 1, 1, "a", 1, 1);
    n += raw_admin_req(b + n, 1, 1, "b", 1, 1);
    ok[5] = refused_bytes(t, b, n);
    ok[6] = refused_bytes(t, b, raw_admin_req(b, 1, 1, "\x80", 1, 1));        /* not ASCII */
    run_stop(&r);
    for (int i = 0; i < 7; i++)
        if (!ok[i])
            printf("# malformed case %d not closed\n", i);
    for (int i = 0; i < 7; i++)
        CHECK(ok[i]);
    CHECK_EQ(transport_refused(t), 7);
    CHECK_EQ(h.calls, 1);               /* only the request followed by a frame */
    CHECK(log_has("admin request of version 0"));
    CHECK(log_has("admin request with op 0"));
    CHECK(log_has("admin request address is not printable ASCII"));
    CHECK(log_has("admin request address length does not match the payload"));
    CHECK(log_has("payload of 324 bytes is over the limit of frame type 8"));
    CHECK(log_has("protocol error: a frame of type 8 after the admin request"));
    CHECK_EQ(mraft_tcp_admin_answer(x, h.token, 0, "x", 1), -QERR_NOTFOUND);
    mraft_tcp_free(x);
    CHECK_EQ(count_fds(), fds);
}

TEST(tls_member_answers_client_and_node_certificates)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, "node-1", 0);
    CHECK(x != NULL);
    handler_t h = { .x = x, .mode = ANSWER_AT_ONCE, .mu = PTHREAD_MUTEX_INITIALIZER };
    mraft_tcp_set_admin(x, on_admin, &h);
    char addr[64];
    addr_of(mraft_tcp_transport(x), addr, sizeof addr);
    runner_t r;
    CHECK_EQ(run_start(&r, x), 0);
    frame_admin_t req = a_request(8, 2, "");
    cluster_admin_answer_t a;
    char *msg;
    int ok[4] = { 0 };
    const char *good[] = { "client", "node-2" };
    for (int i = 0; i < 2; i++) {
        if (call(addr, good[i], &req, &a, &msg) == 0)
            ok[i] = a.code == 0 && a.tls && a.node_id == 1 && strstr(a.text, "op 8 id 2");
        cluster_admin_answer_free(&a);
        free(msg);
    }
    int rc = call(addr, "stranger", &req, &a, &msg);
    ok[2] = rc == -QERR_IO && msg && strstr(msg, "it refused this client");
    free(msg);
    rc = call(addr, NULL, &req, &a, &msg);
    ok[3] = rc == -QERR_IO && msg && strstr(msg, "a member with TLS configured refuses plain");
    free(msg);
    run_stop(&r);
    for (int i = 0; i < 4; i++)
        CHECK(ok[i]);
    CHECK_EQ(h.calls, 2);
    CHECK(log_has("refused an admin request: its TLS certificate /CN=stranger names neither"));
    CHECK(log_has("admin request op 8 from 127.0.0.1:"));
    CHECK(log_has(" over TLS"));
    mraft_tcp_free(x);
    CHECK_EQ(count_fds(), fds);
}

/* ---- a group node -------------------------------------------------------------------- */

typedef struct gnode_handler {
    group_node_t *nd;
    int calls;
    uint32_t op;
    uint64_t token;
    pthread_t th;
    bool th_started;
    int rc;
} gnode_handler_t;

static void *gnode_answer(void *arg)
{
    gnode_handler_t *h = arg;
    usleep(100 * 1000);
    h->rc = group_node_admin_answer(h->nd, h->token, -EAGAIN, "try again", 9);
    return NULL;
}

static void on_gnode_admin(void *arg, uint64_t token, const frame_admin_t *req)
{
    gnode_handler_t *h = arg;
    h->calls++;
    h->op = req->op;
    h->token = token;
    if (!h->th_started)
        h->th_started = pthread_create(&h->th, NULL, gnode_answer, h) == 0;
}

static void glog(void *ctx, const char *line)
{
}

TEST(group_node_answers_cluster_admin_call)
{
    char base[64] = "/tmp/qfs-admin-XXXXXX";
    CHECK(mkdtemp(base));
    group_raft_config_t cfg = { .id = 4, .listen = "127.0.0.1:0", .dir = base, .log = glog };
    group_node_t *nd = NULL;
    char *msg = NULL;
    int rc = group_node_open(&cfg, &nd, &msg);
    free(msg);
    CHECK_EQ(rc, 0);
    gnode_handler_t h = { .nd = nd };
    CHECK_EQ(group_node_set_admin(nd, on_gnode_admin, &h), 0);
    rc = group_node_start(nd, &msg);
    free(msg);
    CHECK_EQ(rc, 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", group_node_port(nd));
    frame_admin_t req = a_request(11, 4, "127.0.0.1:1");
    cluster_admin_answer_t a;
    rc = call(addr, NULL, &req, &a, &msg);
    free(msg);
    int ok = rc == 0 && a.code == -EAGAIN && a.node_id == 4 && strcmp(a.text, "try again") == 0;
    cluster_admin_answer_free(&a);
    CHECK_EQ(group_node_admin_answer(nd, 12345, 0, "", 0), -QERR_NOTFOUND);
    if (h.th_started)
        pthread_join(h.th, NULL);
    group_node_close(nd);
    CHECK_EQ(h.rc, 0);
    CHECK(ok);
    CHECK_EQ(h.calls, 1);
    CHECK_EQ(h.op, 11);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    CHECK_EQ(system(cmd), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (make_all() != 0) {
        printf("# could not make the test certificates (log: %s/openssl.log)\n", dir);
        printf("not ok make_certificates\n");
        return 1;
    }
    RUN(handler_answers_at_once);
    RUN(handler_answers_later_from_another_thread);
    RUN(no_handler_answers_not_supported);
    RUN(client_that_goes_away_ends_the_request);
    RUN(deadline_answers_timed_out);
    RUN(malformed_requests_are_refused);
    RUN(tls_member_answers_client_and_node_certificates);
    RUN(group_node_answers_cluster_admin_call);
    if (CHECK_DONE() || getenv("ADMIN_LOG"))
        printf("# transport log of the last case:\n%s", logbuf);
    certs_remove();
    return CHECK_DONE();
}
