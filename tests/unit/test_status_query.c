/* tests/unit/test_status_query.c — status queries on the peer port: the member side
 * (cluster/transport.c answering STATUS_REQ with what mraft_tcp_set_status published) and the
 * client (cluster/status_client.c), on 127.0.0.1 with ephemeral ports. The members run in a
 * thread of their own while the test queries them with the blocking client. Cases: a
 * published status is answered ("no status yet" before), long and invalid texts; a dead port,
 * a silent listener and a garbage server fail with clear errors; malformed requests are
 * refused while two transports keep exchanging Raft messages; a TLS member answers clients
 * of its CA whose certificate has the subject CN quorumfs-client or quorumfs-<id>, and
 * refuses plain queries, another CA's certificates and other names (the client names of
 * before, a name given only as a subjectAltName). Certificates are made at test time (openssl command),
 * in a temp dir removed at the end. Every wait is bounded; each case checks its fds. */
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

#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/mraft_tcp.h"
#include "cluster/status_client.h"
#include "cluster/transport.h"
#include "tests/unit/check.h"
#define NETHELP_LOG_ENV "STATUS_LOG"
#include "tests/unit/nethelp.h"

/* ---- certificates (as tests/unit/test_transport_tls.c makes them) --------------------- */

static int make_all(void)
{
    if (certs_dir_new("qfs-stq-") != 0)
        return -1;
    return make_ca("ca", "quorumfs test CA") || make_ca("ca2", "another CA") ||
           make_cert("node-1", "ca", "quorumfs-1", NULL) ||
           make_cert("node-2", "ca", "quorumfs-2", NULL) ||
           make_cert("client", "ca", "quorumfs-client", NULL) ||
           make_cert("san-node-9", "ca", "quorumfs-9", "monitor.example") ||
           make_cert("old-client", "ca", "client", "client") ||      /* the name of before */
           make_cert("san-client", "ca", "monitor", "quorumfs-client") || /* SAN: no name */
           make_cert("stranger", "ca", "stranger", NULL) ||
           make_cert("other-client", "ca2", "quorumfs-client", NULL);
}

/* ---- fixture ------------------------------------------------------------------------- */

static uint64_t received[3];     /* Raft messages delivered to node id 1, 2 */

static void deliver(void *ctx, uint64_t from, uint32_t group, raft_msg_t *m)
{
    uint64_t *n = ctx;
    (*n)++;
}

/* A config for node id (cert NULL: plain TCP). */
static transport_config_t config(uint64_t id, const char *cert)
{
    transport_config_t c = base_config(id, deliver, &received[id < 3 ? id : 0]);
    if (cert) {
        c.tls_cert = path(cert, "pem");
        c.tls_key = path(cert, "key");
        c.tls_ca = path("ca", "pem");
    }
    npaths = 0;
    return c;
}

static transport_t *start(uint64_t id, const char *cert)
{
    transport_config_t c = config(id, cert);
    transport_t *t = NULL;
    start_cfg_t(&c, &t);
    return t;
}

static mraft_tcp_t *start_member(uint64_t id, const char *cert)
{
    transport_config_t c = config(id, cert);
    mraft_tcp_t *x = NULL;
    char *msg = NULL;
    int rc = mraft_tcp_new(&c, &x, &msg);
    if (rc < 0)
        printf("# mraft_tcp_new: %s\n", msg ? msg : qerr_str(rc));
    free(msg);
    return x;
}

static void addr_of(const transport_t *t, char *buf, size_t cap)
{
    snprintf(buf, cap, "127.0.0.1:%u", transport_port(t));
}

static int peer(transport_t *a, uint64_t id, const transport_t *b)
{
    char addr[64];
    addr_of(b, addr, sizeof addr);
    return transport_add_peer(a, id, addr);
}

static transport_t *ts_of(void *items, int i)
{
    return ((transport_t **)items)[i];
}

/* Polls the k transports (1 ms each) on this thread until cond(arg) or timeout_ms. */
static int pump(transport_t **ts, int k, cond_fn cond, void *arg, int timeout_ms)
{
    nh_set_t set = { ts, k, ts_of, NULL };
    return nh_pump(&set, cond, arg, timeout_ms);
}

/* The transports run in a thread of their own while the test thread queries them. */
typedef struct runner {
    transport_t *ts[4];
    int k;
    mraft_transport_t *tr;   /* set: polls through this node-loop table instead */
    atomic_int stop;
    pthread_t th;
} runner_t;

static void *run(void *arg)
{
    runner_t *r = arg;
    while (!atomic_load(&r->stop)) {
        if (r->tr)
            r->tr->poll(r->tr->ctx, 5);
        for (int i = 0; i < r->k; i++)
            transport_poll(r->ts[i], 5);
    }
    return NULL;
}

static int run_start(runner_t *r)
{
    atomic_store(&r->stop, 0);
    return pthread_create(&r->th, NULL, run, r);
}

static void run_stop(runner_t *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
}

/* Queries addr; prints the error of a failure. cert NULL: plain; else TLS with dir/<cert>
 * and CA dir/<ca>. */
static int query(const char *addr, const char *cert, const char *ca, uint32_t timeout_ms,
                 cluster_status_t *st, char **msg)
{
    cluster_status_tls_t tls = { 0 };
    if (cert) {
        tls.cert = path(cert, "pem");
        tls.key = path(cert, "key");
        tls.ca = path(ca, "pem");
    }
    *msg = NULL;
    int rc = cluster_status_query(addr, cert ? &tls : NULL, timeout_ms, st, msg);
    npaths = 0;
    if (rc < 0)
        printf("# query %s: %s\n", addr, *msg ? *msg : qerr_str(rc));
    return rc;
}

/* A query expected to fail with code and a message containing needle. */
static int query_fails(const char *addr, const char *cert, const char *ca, int code,
                       const char *needle)
{
    cluster_status_t st;
    char *msg = NULL;
    int rc = query(addr, cert, ca, 5000, &st, &msg);
    int ok = rc == code && msg && strstr(msg, needle) && !st.text;
    if (!ok)
        printf("# wanted %d with \"%s\"\n", code, needle);
    free(msg);
    return ok;
}

/* ---- cases --------------------------------------------------------------------------- */

TEST(published_status_is_answered)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, NULL);
    CHECK(x != NULL);
    char addr[64];
    addr_of(mraft_tcp_transport(x), addr, sizeof addr);
    mraft_transport_t tr;
    mraft_tcp_ops(x, &tr);
    runner_t r = { .tr = &tr }; /* as a node loop polls it (and copies its counters) */
    CHECK_EQ(run_start(&r), 0);
    cluster_status_t st;
    char *msg;
    /* before anything is published */
    int rc = query(addr, NULL, NULL, 5000, &st, &msg);
    free(msg);
    if (rc == 0) {
        rc = strcmp(st.text, "no status yet\n") == 0 && st.age_ms == STATUS_AGE_NONE &&
             st.node_id == 1 && !st.tls ? 0 : -1;
        cluster_status_free(&st);
    }
    /* published text, then one that is not UTF-8 (refused: the first stays) */
    const char *text = "members: 1 2 3\nshard 0: leader node 2 (term 4) \xe2\x9c\x93\n";
    if (rc == 0)
        rc = mraft_tcp_set_status(x, text, strlen(text));
    if (rc == 0 && mraft_tcp_set_status(x, "bad \xc3(", 6) != -QERR_INVAL)
        rc = -1;
    if (rc == 0 && (rc = query(addr, NULL, NULL, 5000, &st, &msg)) == 0) {
        free(msg);
        rc = st.len == strlen(text) && strcmp(st.text, text) == 0 && st.node_id == 1 &&
             st.age_ms < 60000 ? 0 : -1;
        cluster_status_free(&st);
    }
    /* a text over 64 KiB is cut after its last whole line that fits, and says so */
    static char big[80000];
    size_t n = 0;
    for (int i = 0; n + 16 < sizeof big; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "line %08d\n", i);
    int set = rc == 0 ? mraft_tcp_set_status(x, big, n) : 0;
    if (rc == 0 && (rc = query(addr, NULL, NULL, 5000, &st, &msg)) == 0) {
        free(msg);
        size_t cut = strlen(MRAFT_TCP_STATUS_CUT);
        rc = st.len <= STATUS_MAX_TEXT && st.len > STATUS_MAX_TEXT - 32 &&
             strcmp(st.text + st.len - cut, MRAFT_TCP_STATUS_CUT) == 0 &&
             memcmp(st.text, big, st.len - cut) == 0 && st.text[st.len - cut - 1] == '\n'
             ? 0 : -1;
        cluster_status_free(&st);
    }
    /* the counters, as other threads see them (copied by the loop every 500 ms) */
    uint64_t answered = 0, refused = 1, end = ms_now() + 3000;
    while (rc == 0 && answered < 3 && ms_now() < end) {
        mraft_tcp_counters(x, &answered, &refused);
        usleep(10000);
    }
    run_stop(&r);
    CHECK_EQ(rc, 0);
    CHECK_EQ(answered, 3);
    CHECK_EQ(refused, 0);
    CHECK_EQ(set, 1);
    CHECK_EQ(transport_status_queries(mraft_tcp_transport(x)), 3);
    CHECK_EQ(transport_refused(mraft_tcp_transport(x)), 0);
    CHECK(log_has("node 1: closing inbound connection from 127.0.0.1:"));
    CHECK(log_has(": status query answered (14 bytes of text)"));
    mraft_tcp_free(x);
    CHECK_EQ(count_fds(), fds);
}

/* A server thread for the garbage-server case: accepts one connection, writes an HTTP
 * answer, closes. */
static void *http_server(void *arg)
{
    int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
    if (fd >= 0) {
        const char *s = "HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        ssize_t w = send(fd, s, strlen(s), MSG_NOSIGNAL);
        (void)w;
        shutdown(fd, SHUT_WR);
        char b[256];
        struct timeval tv = { .tv_sec = 2 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (recv(fd, b, sizeof b, 0) > 0) /* until the client closes */
            ;
        close(fd);
    }
    return NULL;
}

/* A TCP socket bound to 127.0.0.1 on a free port, listening (backlog) or not. */
static int bound_socket(bool listening, char *addr, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        (listening && listen(fd, 4) != 0) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(addr, cap, "127.0.0.1:%u", ntohs(sa.sin_port));
    return fd;
}

TEST(dead_silent_and_garbage_servers_fail_clearly)
{
    int fds = count_fds();
    char addr[64];
    /* a port nothing listens on (held bound, so nobody else takes it): refused at once,
       well inside the generous timeout */
    int fd = bound_socket(false, addr, sizeof addr);
    CHECK(fd >= 0);
    int ok = query_fails(addr, NULL, NULL, -QERR_IO, "cannot connect: Connection refused");
    close(fd);
    CHECK(ok);
    /* a listener that never answers: the timeout */
    fd = bound_socket(true, addr, sizeof addr);
    CHECK(fd >= 0);
    cluster_status_t st;
    char *msg = NULL;
    int rc = cluster_status_query(addr, NULL, 300, &st, &msg);
    close(fd);
    ok = rc == -QERR_TIMEOUT && msg && strstr(msg, "no answer within 300 ms") && !st.text;
    if (!ok)
        printf("# %d: %s\n", rc, msg ? msg : "");
    free(msg);
    CHECK(ok);
    /* an HTTP server: garbage */
    fd = bound_socket(true, addr, sizeof addr);
    CHECK(fd >= 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, http_server, &fd), 0);
    ok = query_fails(addr, NULL, NULL, -QERR_CORRUPT, "not a status answer: frame 1 at stream "
                     "byte 0: bad magic");
    pthread_join(th, NULL);
    close(fd);
    CHECK(ok);
    /* addresses */
    CHECK(query_fails("localhost", NULL, NULL, -QERR_INVAL, "not HOST:PORT"));
    CHECK(query_fails("127.0.0.1:", NULL, NULL, -QERR_INVAL, "not HOST:PORT"));
    CHECK(query_fails("127.0.0.1:80x", NULL, NULL, -QERR_INVAL, "not HOST:PORT"));
    /* TLS files */
    CHECK(query_fails("127.0.0.1:1", "no-such-cert", "ca", -QERR_INVAL, "TLS certificate"));
    CHECK_EQ(count_fds(), fds);
}

/* A frame with any header fields and a right CRC; returns its length. */
static size_t raw_frame(uint8_t *out, uint8_t type, uint32_t plen_field, const void *payload,
                        uint32_t plen)
{
    le_put32(out, FRAME_MAGIC);
    out[4] = FRAME_VERSION;
    out[5] = type;
    out[6] = out[7] = 0;
    le_put32(out + 8, plen_field);
    if (plen)
        memcpy(out + FRAME_HDR_BYTES, payload, plen);
    le_put32(out + 12, crc32c(crc32c(0, out, 12), out + FRAME_HDR_BYTES, plen));
    return FRAME_HDR_BYTES + plen;
}

/* A raw client: what it read, and whether the other end closed. */
typedef struct raw {
    int fd;
    uint8_t in[8192];
    size_t len;
    bool closed;
} raw_t;

static int raw_closed(void *arg)
{
    raw_t *r = arg;
    for (;;) {
        uint8_t b[4096];
        ssize_t n = recv(r->fd, b, sizeof b, MSG_DONTWAIT);
        if (n > 0) {
            size_t k = (size_t)n < sizeof r->in - r->len ? (size_t)n : sizeof r->in - r->len;
            memcpy(r->in + r->len, b, k);
            r->len += k;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return r->closed = true;
        return 0;
    }
}

typedef struct twonodes {
    transport_t *a, *b;
    uint64_t want_a, want_b;
} twonodes_t;

static int both_connected(void *arg)
{
    twonodes_t *w = arg;
    return transport_connected(w->a, 2) && transport_connected(w->b, 1);
}

static int both_received(void *arg)
{
    twonodes_t *w = arg;
    return received[1] >= w->want_a && received[2] >= w->want_b;
}

/* Sends n heartbeats each way; 0 if all were queued. */
static int heartbeats(transport_t *a, transport_t *b, int n)
{
    for (int i = 0; i < n; i++) {
        raft_msg_t m = { .type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 1 };
        if (transport_send(a, (uint32_t)i, &m) != 0)
            return -1;
        m.from = 2;
        m.to = 1;
        if (transport_send(b, (uint32_t)i, &m) != 0)
            return -1;
    }
    return 0;
}

TEST(malformed_requests_are_refused_and_peers_keep_talking)
{
    int fds = count_fds();
    log_reset();
    received[1] = received[2] = 0;
    transport_t *a = start(1, NULL), *b = start(2, NULL);
    CHECK(a && b);
    CHECK_EQ(peer(a, 2, b), 0);
    CHECK_EQ(peer(b, 1, a), 0);
    transport_t *ts[] = { a, b };
    twonodes_t w = { a, b, 0, 0 };
    CHECK(pump(ts, 2, both_connected, &w, 5000));
    uint8_t buf[256], p[64];
    memset(p, 0, sizeof p);
    le_put32(p, STATUS_VERSION);
    le_put32(p + 4, 1);
    /* each bad first frame, with Raft traffic between a and b around it */
    struct { size_t len; const char *log; } bad[5];
    size_t k = 0;
    bad[k].len = raw_frame(buf, FRAME_STATUS_REQ, 8, p, 8); /* nonzero flags */
    bad[k++].log = "status request with nonzero flags";
    bad[k].len = raw_frame(buf + 64, FRAME_STATUS_REQ, 100000, NULL, 0); /* oversize */
    bad[k++].log = "payload of 100000 bytes is over the limit of frame type 6";
    le_put32(p + 4, 0);
    le_put64(p + 8, 5); /* a well-formed answer from node 5, sent to a member */
    bad[k].len = raw_frame(buf + 128, FRAME_STATUS, STATUS_HEAD_BYTES, p, STATUS_HEAD_BYTES);
    bad[k++].log = "protocol error: first frame has type 7, not HELLO";
    memcpy(buf + 192, "GET / HTTP/1.0\r\n\r\n", 18);
    bad[k].len = 18;
    bad[k++].log = "bad magic";
    for (size_t i = 0; i < k; i++) {
        raw_t r = { .fd = tcp_connect_to(b, 1) };
        CHECK(r.fd >= 0);
        CHECK(send(r.fd, buf + 64 * i, bad[i].len, MSG_NOSIGNAL) == (ssize_t)bad[i].len);
        CHECK_EQ(heartbeats(a, b, 10), 0);
        w.want_a += 10;
        w.want_b += 10;
        int closed = pump(ts, 2, raw_closed, &r, 5000);
        close(r.fd);
        CHECK(closed);
        CHECK(pump(ts, 2, both_received, &w, 5000));
        if (!log_has(bad[i].log))
            printf("# no log line \"%s\"\n", bad[i].log);
        CHECK(log_has(bad[i].log));
    }
    CHECK_EQ(transport_refused(b), 4);
    /* a good request twice in a row: one answer (after the node's HELLO), then the close */
    raw_t r = { .fd = tcp_connect_to(b, 1) };
    CHECK(r.fd >= 0);
    frame_t q = { .type = FRAME_STATUS_REQ, .status.version = 5 }; /* a later client */
    size_t n;
    CHECK_EQ(frame_encode(&q, buf, sizeof buf, &n), 0);
    memcpy(buf + n, buf, n);
    CHECK(send(r.fd, buf, 2 * n, MSG_NOSIGNAL) == (ssize_t)(2 * n));
    int closed = pump(ts, 2, raw_closed, &r, 5000);
    close(r.fd);
    CHECK(closed);
    frame_decoder_t *d = frame_decoder_new(0);
    frame_t f1, f2;
    size_t u1 = 0, u2 = 0;
    int rc1 = frame_decoder_feed(d, r.in, r.len, &u1, &f1);
    int rc2 = rc1 == 1 ? frame_decoder_feed(d, r.in + u1, r.len - u1, &u2, &f2) : -1;
    frame_decoder_free(d);
    CHECK_EQ(rc1, 1);
    CHECK_EQ(f1.type, FRAME_HELLO);
    CHECK_EQ(rc2, 1);
    CHECK_EQ(f2.type, FRAME_STATUS);
    CHECK_EQ(u1 + u2, r.len);
    int same = f2.status.version == STATUS_VERSION && f2.status.node_id == 2 &&
               strcmp(f2.status.text, "no status yet\n") == 0;
    frame_free(&f2);
    CHECK(same);
    CHECK_EQ(transport_status_queries(b), 1);
    /* the client, with both nodes running in their thread */
    runner_t run = { .ts = { a, b }, .k = 2 };
    CHECK_EQ(run_start(&run), 0);
    cluster_status_t st;
    char *msg, addr[64];
    addr_of(b, addr, sizeof addr);
    int rc = query(addr, NULL, NULL, 5000, &st, &msg);
    free(msg);
    run_stop(&run);
    CHECK_EQ(rc, 0);
    CHECK(strcmp(st.text, "no status yet\n") == 0 && st.node_id == 2);
    cluster_status_free(&st);
    /* the peers never noticed */
    CHECK(both_connected(&w));
    CHECK_EQ(heartbeats(a, b, 10), 0);
    w.want_a += 10;
    w.want_b += 10;
    CHECK(pump(ts, 2, both_received, &w, 5000));
    transport_peer_stats_t sa, sb;
    CHECK_EQ(transport_peer_stats(a, 2, &sa), 0);
    CHECK_EQ(transport_peer_stats(b, 1, &sb), 0);
    CHECK_EQ(sa.connects, 1);
    CHECK_EQ(sb.connects, 1);
    CHECK_EQ(sa.errors + sb.errors, 0);
    CHECK_EQ(transport_status_queries(b), 2);
    CHECK_EQ(transport_refused(b), 4);
    transport_free(a);
    transport_free(b);
    CHECK_EQ(count_fds(), fds);
}

static int refused_count(void *arg)
{
    void **v = arg;
    return transport_refused(v[0]) >= (uint64_t)(uintptr_t)v[1];
}

TEST(tls_member_answers_only_tls_clients_of_its_ca)
{
    int fds = count_fds();
    log_reset();
    mraft_tcp_t *x = start_member(1, "node-1");
    transport_t *b = start(2, "node-2");
    CHECK(x && b);
    transport_t *m = mraft_tcp_transport(x);
    CHECK_EQ(mraft_tcp_set_status(x, "tls status\n", 11), 0);
    CHECK_EQ(peer(m, 2, b), 0);
    CHECK_EQ(peer(b, 1, m), 0);
    transport_t *ts[] = { m, b };
    twonodes_t w = { m, b, 0, 0 };
    CHECK(pump(ts, 2, both_connected, &w, 5000));
    char addr[64], plain_addr[64];
    addr_of(m, addr, sizeof addr);
    transport_t *plain = start(3, NULL); /* a member without TLS */
    CHECK(plain != NULL);
    addr_of(plain, plain_addr, sizeof plain_addr);
    runner_t run = { .ts = { m, b, plain }, .k = 3 };
    CHECK_EQ(run_start(&run), 0);
    int ok[10] = { 0 };
    cluster_status_t st;
    char *msg;
    /* the client's certificate, and nodes' (any id; a SAN beside the CN changes nothing) */
    const char *good[] = { "client", "node-2", "san-node-9" };
    for (int i = 0; i < 3; i++) {
        if (query(addr, good[i], "ca", 5000, &st, &msg) == 0) {
            ok[i] = strcmp(st.text, "tls status\n") == 0 && st.node_id == 1 && st.tls;
            cluster_status_free(&st);
        }
        free(msg);
    }
    ok[3] = query_fails(addr, NULL, NULL, -QERR_IO, "a member with TLS configured refuses "
                        "plain queries");
    ok[4] = query_fails(addr, "other-client", "ca", -QERR_IO, "TLS");
    ok[5] = query_fails(addr, "stranger", "ca", -QERR_IO, "it refused this client: its log "
                        "says why; the subject CN of this client's certificate must be "
                        "quorumfs-client or quorumfs-<id>");
    ok[6] = query_fails(addr, "client", "ca2", -QERR_IO, "TLS handshake failed: certificate "
                        "verify failed (certificate /CN=quorumfs-1 issued by /CN=quorumfs test "
                        "CA");
    ok[7] = query_fails(plain_addr, "client", "ca", -QERR_IO, "the member speaks plain TCP");
    ok[8] = query_fails(addr, "old-client", "ca", -QERR_IO, "it refused this client");
    ok[9] = query_fails(addr, "san-client", "ca", -QERR_IO, "it refused this client");
    run_stop(&run);
    for (int i = 0; i < 10; i++)
        if (!ok[i])
            printf("# query %d failed\n", i);
    for (int i = 0; i < 10; i++)
        CHECK(ok[i]);
    CHECK_EQ(transport_status_queries(m), 3);
    /* refused: the plain query, the other CA's client, the stranger, the old and the SAN-only
       client, the client that did not trust the member (its alert may still be on its way) */
    void *arg[2] = { m, (void *)(uintptr_t)6 };
    CHECK(pump(ts, 2, refused_count, arg, 3000));
    CHECK_EQ(transport_refused(m), 6);
    CHECK(log_has("refused: the peer speaks plain TCP (its first bytes are a quorumfs frame)"));
    CHECK(log_has("refused a status query: its TLS certificate /CN=stranger names neither the "
                  "client nor a node (its subject CN must be quorumfs-client or quorumfs-<id>)"));
    CHECK(log_has("refused a status query: its TLS certificate /CN=client names neither"));
    CHECK(log_has("refused a status query: its TLS certificate /CN=monitor names neither"));
    CHECK(log_has("status query answered (11 bytes of text, over TLS)"));
    CHECK(log_has("node 3: closing inbound connection from 127.0.0.1:"));
    CHECK(log_has("refused: the peer speaks TLS, and this node has no TLS configured"));
    /* the peer link never noticed */
    CHECK(both_connected(&w));
    transport_peer_stats_t sb;
    CHECK_EQ(transport_peer_stats(b, 1, &sb), 0);
    CHECK(sb.tls);
    CHECK_EQ(sb.connects, 1);
    CHECK_EQ(sb.errors, 0);
    mraft_tcp_free(x);
    transport_free(b);
    transport_free(plain);
    CHECK_EQ(count_fds(), fds);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the raw clients write with send(2) without MSG_NOSIGNAL */
    if (make_all() != 0) {
        printf("# could not make the test certificates (log: %s/openssl.log)\n", dir);
        printf("not ok make_certificates\n");
        return 1;
    }
    RUN(published_status_is_answered);
    RUN(dead_silent_and_garbage_servers_fail_clearly);
    RUN(malformed_requests_are_refused_and_peers_keep_talking);
    RUN(tls_member_answers_only_tls_clients_of_its_ca);
    if (CHECK_DONE() || getenv("STATUS_LOG"))
        printf("# transport log of the last case:\n%s", logbuf);
    certs_remove();
    return CHECK_DONE();
}
