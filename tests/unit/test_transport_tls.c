/* tests/unit/test_transport_tls.c — mutual TLS of the transport (cluster/transport.c) on
 * 127.0.0.1 with ephemeral ports. A throwaway CA and node certificates are made at start, in
 * a temp dir removed at the end, with the openssl commands docs/TRANSPORT.md gives. Cases:
 * the names certificates give (subject CN quorumfs-<id> / quorumfs-client, nothing else);
 * the TLS options are checked at creation; TLS 1.3 nodes exchange Raft messages (a
 * certificate whose subjectAltName says something else too); a certificate from another CA
 * is refused (by both ends, or by the one that verifies it); plain TCP and TLS refuse each
 * other both ways; a TLS 1.2 client is refused; a certificate must name the node it is
 * dialed as or says it is in its HELLO (old node-<id> names, client certificates and
 * subjectAltNames do not count); a reload takes new files for new connections and keeps the
 * old ones when the new are bad; garbage during a handshake closes only its connection; a
 * peer's burst of thousands of records, many per socket read (the transport reads ahead), split
 * anywhere, is delivered whole and in order with nothing more arriving after it, and a
 * close_notify or garbage right behind such a burst ends the connection only after every
 * frame before it. Every wait is bounded; each case checks it leaves no fd open. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/transport.h"
#include "tests/unit/check.h"
#include "tests/unit/nethelp.h"

/* ---- certificates -------------------------------------------------------------------- */

static int make_all(void)
{
    if (certs_dir_new("qfs-tls-") != 0)
        return -1;
    if (make_ca("ca", "quorumfs test CA") || make_ca("ca2", "another CA") ||
        make_cert("node-1", "ca", "quorumfs-1", NULL) ||
        make_cert("node-2", "ca", "quorumfs-2", NULL) ||
        make_cert("node-3", "ca", "quorumfs-3", NULL) ||
        make_cert("node-5", "ca", "quorumfs-5", NULL) ||
        make_cert("san-4", "ca", "quorumfs-4", "host4.example") ||   /* the SAN is ignored */
        make_cert("san-only-4", "ca", "host4.example", "quorumfs-4") || /* names nothing */
        make_cert("old-3", "ca", "node-3", "node-3") ||  /* the names of before: nothing */
        make_cert("client", "ca", "quorumfs-client", NULL) ||
        make_cert("other-1", "ca2", "quorumfs-1", NULL) ||
        make_cert("other-2", "ca2", "quorumfs-2", NULL))
        return -1;
    return sh("cd %s && cat ca.pem ca2.pem >both.pem", dir);
}

/* ---- fixture ------------------------------------------------------------------------- */

#define MAX_RECV 4096
#define CONNECT_MS 5000     /* connect_all waits this long at most */

typedef struct node {
    uint64_t id;
    transport_t *t;
    uint64_t ctx[MAX_RECV];  /* the sequence numbers received, in order */
    uint32_t group[MAX_RECV];
    size_t nrecv;
    uint64_t bad;            /* messages whose content did not check out */
} node_t;

static void deliver(void *ctx, uint64_t from, uint32_t group, raft_msg_t *m)
{
    node_t *n = ctx;
    if (m->from != from || m->to != n->id)
        n->bad++;
    const uint8_t *d = m->type == RAFT_MSG_SNAPSHOT ? m->data
                       : m->n_entries ? m->entries[0].data : NULL;
    uint32_t len = m->type == RAFT_MSG_SNAPSHOT ? m->len : m->n_entries ? m->entries[0].len : 0;
    for (uint32_t i = 0; i < len; i++)
        if (d[i] != (uint8_t)(m->ctx + i)) {
            n->bad++;
            break;
        }
    if (n->nrecv < MAX_RECV) {
        n->ctx[n->nrecv] = m->ctx;
        n->group[n->nrecv++] = group;
    }
}

/* A config for node id; cert names dir/<cert>.pem and .key, ca dir/<ca>.pem; cert NULL:
 * plain TCP. */
static transport_config_t config(node_t *n, uint64_t id, const char *cert, const char *ca)
{
    memset(n, 0, sizeof *n);
    n->id = id;
    transport_config_t c = base_config(id, deliver, n);
    if (cert) {
        c.tls_cert = path(cert, "pem");
        c.tls_key = path(cert, "key");
        c.tls_ca = path(ca, "pem");
    }
    npaths = 0; /* the paths are read by transport_new, before the next config */
    return c;
}

static int start_cfg(node_t *n, const transport_config_t *cfg)
{
    return start_cfg_t(cfg, &n->t);
}

static int start(node_t *n, uint64_t id, const char *cert, const char *ca)
{
    transport_config_t cfg = config(n, id, cert, ca);
    return start_cfg(n, &cfg);
}

static void stop(node_t *n)
{
    transport_free(n->t);
    n->t = NULL;
}

/* a learns that node `as` listens where b does. */
static int add_peer_as(node_t *a, uint64_t as, const node_t *b)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", transport_port(b->t));
    return transport_add_peer(a->t, as, addr);
}

static int mesh(node_t **ns, int k)
{
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++)
            if (i != j && add_peer_as(ns[i], ns[j]->id, ns[j]) != 0)
                return -1;
    return 0;
}

static transport_t *node_t_of(void *items, int i)
{
    node_t **ns = items;
    return ns[i] ? ns[i]->t : NULL;
}

static uint64_t node_id_of(void *items, int i)
{
    return ((node_t **)items)[i]->id;
}

/* Polls the k nodes' transports (1 ms each) until cond(arg) holds or timeout_ms passes. */
static int pump(node_t **ns, int k, cond_fn cond, void *arg, int timeout_ms)
{
    nh_set_t set = { ns, k, node_t_of, node_id_of };
    return nh_pump(&set, cond, arg, timeout_ms);
}

static int connect_all(node_t **ns, int k)
{
    nh_set_t set = { ns, k, node_t_of, node_id_of };
    return nh_pump(&set, nh_all_connected, &set, CONNECT_MS);
}

typedef struct want {
    node_t *n;
    size_t count;
} want_t;

static int got_count(void *arg)
{
    want_t *w = arg;
    return w->n->nrecv >= w->count;
}

/* 1 once every line of the NULL-terminated list is in the log. */
static int logged(void *arg)
{
    for (const char *const *n = arg; *n; n++)
        if (!log_has(*n))
            return 0;
    return 1;
}

/* Pumps the nodes until the log has every needle (5 s at most). */
#define PUMP_UNTIL_LOGGED(ns, k, ...) \
    pump(ns, k, logged, (void *)(const char *const[]){ __VA_ARGS__, NULL }, 5000)

/* Sends a message of group g from a to b with sequence number seq: APPEND carries one entry
 * of len bytes, SNAPSHOT a chunk of len bytes, anything else nothing. */
static int send_msg(node_t *a, node_t *b, uint32_t g, uint32_t type, uint64_t seq, uint32_t len)
{
    static uint8_t buf[1 << 16];
    if (len > sizeof buf)
        return -QERR_INVAL;
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq + i);
    raft_msg_t m = { .type = type, .from = a->id, .to = b->id, .term = 1, .ctx = seq };
    raft_entry_t e;
    if (type == RAFT_MSG_APPEND && len) {
        e = (raft_entry_t){ .term = 1, .index = seq + 1, .type = RAFT_ENTRY_NORMAL,
                            .len = len, .data = buf };
        m.n_entries = 1;
        m.entries = &e;
        m.index = seq;
    } else if (type == RAFT_MSG_SNAPSHOT) {
        m.len = len;
        m.data = len ? buf : NULL;
    }
    return transport_send(a->t, g, &m);
}

/* A raw nonblocking TCP socket to n's listener. */
static int raw_connect(const node_t *n)
{
    return tcp_connect_to(n->t, 1);
}

/* A TLS client written here, not by the transport: presents dir/<cert>.pem (or nothing),
 * sends a HELLO claiming node `claim` once its handshake is done, then reads. Driven
 * without blocking by rawtls_step from pump's condition. */
typedef struct rawtls {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int stage;               /* 0 handshake, 1 reading */
    uint64_t claim;
    bool closed;             /* the handshake failed or the server closed */
    node_t *server;          /* for rawtls_up */
} rawtls_t;

/* max_version: the highest TLS version the client offers (0: OpenSSL's highest). */
static int rawtls_open_v(rawtls_t *r, node_t *server, const char *cert, uint64_t claim,
                         int max_version)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->claim = claim;
    r->server = server;
    if (!(r->ctx = SSL_CTX_new(TLS_client_method())))
        return -1;
    if (max_version && SSL_CTX_set_max_proto_version(r->ctx, max_version) != 1)
        return -1;
    if (cert && (SSL_CTX_use_certificate_chain_file(r->ctx, path(cert, "pem")) != 1 ||
                 SSL_CTX_use_PrivateKey_file(r->ctx, path(cert, "key"), SSL_FILETYPE_PEM) != 1))
        return -1;
    npaths = 0;
    if ((r->fd = raw_connect(server)) < 0 || !(r->ssl = SSL_new(r->ctx)) ||
        SSL_set_fd(r->ssl, r->fd) != 1)
        return -1;
    SSL_set_connect_state(r->ssl);
    return 0;
}

static int rawtls_open(rawtls_t *r, node_t *server, const char *cert, uint64_t claim)
{
    return rawtls_open_v(r, server, cert, claim, 0);
}

static void rawtls_close(rawtls_t *r)
{
    SSL_free(r->ssl);
    SSL_CTX_free(r->ctx);
    if (r->fd >= 0)
        close(r->fd);
    ERR_clear_error();
    r->ssl = NULL;
    r->ctx = NULL;
    r->fd = -1;
}

/* One step; 1 once the connection is over (refused or closed). */
static int rawtls_step(void *arg)
{
    rawtls_t *r = arg;
    if (r->closed)
        return 1;
    if (r->stage == 0) {
        int rc = SSL_do_handshake(r->ssl);
        if (rc != 1) {
            int e = SSL_get_error(r->ssl, rc);
            r->closed = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
            return r->closed;
        }
        uint8_t b[64];
        size_t len;
        frame_t f = { .type = FRAME_HELLO };
        f.hello = (frame_hello_t){ r->claim, 0xABCD, 1, 1, 0 };
        if (frame_encode(&f, b, sizeof b, &len) != 0 || SSL_write(r->ssl, b, (int)len) != (int)len)
            return r->closed = true;
        r->stage = 1;
    }
    for (;;) {
        char b[4096];
        int n = SSL_read(r->ssl, b, sizeof b);
        if (n > 0)
            continue;
        int e = SSL_get_error(r->ssl, n);
        r->closed = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
        return r->closed;
    }
}

/* Steps the raw client; 1 once its server counts it connected as node `claim`. */
static int rawtls_up(void *arg)
{
    rawtls_t *r = arg;
    rawtls_step(r);
    return transport_connected(r->server->t, r->claim);
}

/* ---- cases --------------------------------------------------------------------------- */

static int new_fails(transport_config_t *c, const char *want)
{
    transport_t *t = NULL;
    char *msg = NULL;
    int rc = transport_new(c, &t, &msg);
    int ok = rc == -QERR_INVAL && !t && msg && strstr(msg, want);
    if (!ok)
        printf("# transport_new: %d, \"%s\" (wanted -QERR_INVAL, \"%s\")\n", rc,
               msg ? msg : "", want);
    free(msg);
    transport_free(t);
    return ok;
}

TEST(tls_options_are_checked)
{
    int fds = count_fds();
    node_t *n = malloc(sizeof *n);
    log_reset();
    /* all three or none */
    transport_config_t c = config(n, 1, "node-1", "ca");
    c.tls_key = NULL;
    CHECK(new_fails(&c, "TLS needs a certificate, a private key and a CA bundle together; "
                        "the private key is missing"));
    c = config(n, 1, "node-1", "ca");
    c.tls_cert = NULL;
    CHECK(new_fails(&c, "the certificate is missing"));
    c = config(n, 1, "node-1", "ca");
    c.tls_ca = NULL;
    c.tls_key = NULL;
    CHECK(new_fails(&c, "the private key is missing"));
    /* unreadable, mismatched, not naming this node */
    char nofile[128];
    snprintf(nofile, sizeof nofile, "%s/nothing.pem", dir);
    c = config(n, 1, "node-1", "ca");
    c.tls_cert = nofile;
    CHECK(new_fails(&c, "TLS certificate /tmp/qfs-tls-"));
    c = config(n, 1, "node-1", "ca");
    c.tls_ca = nofile;
    CHECK(new_fails(&c, "TLS CA bundle /tmp/qfs-tls-"));
    c = config(n, 1, "node-1", "ca");
    char key2[128];
    snprintf(key2, sizeof key2, "%s/node-2.key", dir);
    c.tls_key = key2;
    CHECK(new_fails(&c, "TLS private key /tmp/qfs-tls-"));
    CHECK(new_fails(&c, "/node-2.key does not match the certificate /tmp/qfs-tls-"));
    c = config(n, 1, "node-1", "ca");
    c.tls_key = c.tls_cert; /* a certificate is no key */
    CHECK(new_fails(&c, "TLS private key"));
    c = config(n, 1, "node-2", "ca");
    CHECK(new_fails(&c, "/node-2.pem does not name this node: its subject must have the one "
                        "CN quorumfs-1 (it is /CN=quorumfs-2)"));
    c = config(n, 4, "san-only-4", "ca"); /* DNS:quorumfs-4 in its SAN does not count */
    CHECK(new_fails(&c, "the one CN quorumfs-4 (it is /CN=host4.example)"));
    c = config(n, 3, "old-3", "ca");      /* node-3, the name of before */
    CHECK(new_fails(&c, "the one CN quorumfs-3 (it is /CN=node-3)"));
    c = config(n, 3, "client", "ca");
    CHECK(new_fails(&c, "the one CN quorumfs-3 (it is /CN=quorumfs-client)"));
    /* a certificate of another CA than the bundle's: allowed, with a warning */
    CHECK(!log_has("does not verify against the CA bundle"));
    CHECK_EQ(start(n, 1, "other-1", "ca"), 0);
    CHECK(log_has("node 1: this node's TLS certificate /tmp/qfs-tls-"));
    CHECK(log_has("does not verify against the CA bundle"));
    stop(n);
    log_reset();
    CHECK_EQ(start(n, 4, "san-4", "ca"), 0);
    CHECK(!log_has("does not verify"));
    stop(n);
    free(n);
    CHECK_EQ(count_fds(), fds);
}

TEST(tls_nodes_exchange_raft_messages)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *b = malloc(sizeof *b), *d = malloc(sizeof *d);
    log_reset();
    CHECK_EQ(start(a, 1, "node-1", "ca"), 0);
    CHECK_EQ(start(b, 2, "node-2", "ca"), 0);
    CHECK_EQ(start(d, 4, "san-4", "ca"), 0);
    node_t *ns[] = { a, b, d };
    CHECK_EQ(mesh(ns, 3), 0);
    CHECK(connect_all(ns, 3));
    CHECK(log_has("node 1: connected to peer 2 (dialed at 127.0.0.1:"));
    CHECK(log_has("node 2: connected to peer 1 (inbound from 127.0.0.1:"));
    CHECK(log_has(") over TLSv1.3"));
    CHECK(!log_has("over TLSv1.2"));
    /* 16 groups x 20 heartbeats one way, appends of 1000 bytes the other */
    for (uint64_t s = 0; s < 20; s++)
        for (uint32_t g = 0; g < 16; g++)
            CHECK_EQ(send_msg(a, b, g, RAFT_MSG_HEARTBEAT, s * 16 + g, 0), 0);
    for (uint64_t s = 0; s < 80; s++)
        CHECK_EQ(send_msg(b, a, 100 + (uint32_t)(s % 8), RAFT_MSG_APPEND, s, 1000), 0);
    /* 8 MB of 64 KiB snapshot chunks to node 4: many records, full sockets,
       partial writes retried from a moved queue */
    for (uint64_t s = 0; s < 120; s++)
        CHECK_EQ(send_msg(a, d, 7, RAFT_MSG_SNAPSHOT, s, 65536), 0);
    want_t wb = { b, 320 }, wa = { a, 80 }, wd = { d, 120 };
    CHECK(pump(ns, 3, got_count, &wb, 5000));
    CHECK(pump(ns, 3, got_count, &wa, 5000));
    CHECK(pump(ns, 3, got_count, &wd, 10000));
    CHECK_EQ(a->bad + b->bad + d->bad, 0);
    CHECK_EQ(b->nrecv, 320);
    CHECK_EQ(d->nrecv, 120);
    for (size_t i = 0; i < 320; i++) {
        CHECK_EQ(b->ctx[i], i);
        CHECK_EQ(b->group[i], i % 16);
    }
    for (size_t i = 0; i < 80; i++)
        CHECK_EQ(a->ctx[i], i);
    for (size_t i = 0; i < 120; i++)
        CHECK_EQ(d->ctx[i], i);
    transport_peer_stats_t sa, sb, sd;
    CHECK_EQ(transport_peer_stats(a->t, 2, &sa), 0);
    CHECK_EQ(transport_peer_stats(b->t, 1, &sb), 0);
    CHECK(sa.connected && sa.tls && sb.connected && sb.tls);
    CHECK_EQ(sa.msgs_out, 320);
    CHECK_EQ(sb.msgs_in, 320);
    CHECK_EQ(sa.connects, 1);
    CHECK_EQ(sa.errors + sb.errors + sa.dropped + sb.dropped, 0);
    CHECK_EQ(transport_peer_stats(a->t, 4, &sa), 0);
    CHECK_EQ(transport_peer_stats(d->t, 1, &sd), 0);
    CHECK(sa.tls && sd.tls);
    CHECK(sd.bytes_in >= 120ull * 65536);
    CHECK_EQ(transport_refused(a->t) + transport_refused(b->t) + transport_refused(d->t), 0);
    stop(a);
    stop(b);
    stop(d);
    free(a);
    free(b);
    free(d);
    CHECK_EQ(count_fds(), fds);
}

TEST(certificate_of_another_ca_is_refused)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *x = malloc(sizeof *x);
    log_reset();
    /* 1. x (node 2) has a certificate of another CA and trusts only that CA: a refuses x's
       certificate, x closes on a's alert */
    CHECK_EQ(start(a, 1, "node-1", "ca"), 0);
    CHECK_EQ(start(x, 2, "other-2", "ca2"), 0);
    node_t *ns[] = { a, x };
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(PUMP_UNTIL_LOGGED(ns, 2, "node 1: peer 2 at 127.0.0.1:", "(2 failed dial(s) in a row",
                            "TLS handshake failed: certificate verify failed (certificate "
                            "/CN=quorumfs-2 issued by /CN=another CA: ",
                            "node 2: closing inbound connection from 127.0.0.1:"));
    CHECK(!transport_connected(a->t, 2) && !transport_connected(x->t, 1));
    CHECK(transport_refused(x->t) >= 1);
    transport_peer_stats_t st;
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    CHECK(st.dial_failures >= 2 && st.errors >= 2 && st.connects == 0 && !st.tls);
    stop(a);
    stop(x);
    /* 2. only the acceptor refuses: x (node 1, another CA's certificate) trusts both CAs and
       dials a (node 2); TLS 1.3 finishes the dialer's handshake before the acceptor has
       checked its certificate, so the dialer learns it from an alert */
    log_reset();
    CHECK_EQ(start(x, 1, "other-1", "both"), 0);
    CHECK_EQ(start(a, 2, "node-2", "ca"), 0);
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(PUMP_UNTIL_LOGGED(ns, 2, "node 2: closing inbound connection from 127.0.0.1:",
                            "TLS handshake failed: certificate verify failed (certificate "
                            "/CN=quorumfs-1 issued by /CN=another CA: ",
                            "node 1: peer 2 at 127.0.0.1:", "alert unknown ca"));
    CHECK(!transport_connected(a->t, 1) && !transport_connected(x->t, 2));
    CHECK(transport_refused(a->t) >= 1);
    CHECK_EQ(transport_peer_stats(x->t, 2, &st), 0);
    CHECK(st.errors >= 1 && st.connects == 0);
    stop(a);
    stop(x);
    free(a);
    free(x);
    CHECK_EQ(count_fds(), fds);
}

TEST(plain_and_tls_refuse_each_other)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    node_t *ns[] = { a, b };
    transport_peer_stats_t st;
    /* a TLS node dials a plain one */
    log_reset();
    CHECK_EQ(start(a, 1, "node-1", "ca"), 0);
    CHECK_EQ(start(b, 2, NULL, NULL), 0);
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(PUMP_UNTIL_LOGGED(ns, 2, "node 2: closing inbound connection from 127.0.0.1:",
                            "refused: the peer speaks TLS, and this node has no TLS configured",
                            "node 1: peer 2 at 127.0.0.1:"));
    CHECK(!transport_connected(a->t, 2) && !transport_connected(b->t, 1));
    CHECK(transport_refused(b->t) >= 1);
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    CHECK(st.dial_failures >= 1 && st.errors >= 1);
    stop(a);
    stop(b);
    /* a plain node dials a TLS one */
    log_reset();
    CHECK_EQ(start(a, 1, NULL, NULL), 0);
    CHECK_EQ(start(b, 2, "node-2", "ca"), 0);
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(PUMP_UNTIL_LOGGED(ns, 2, "node 2: closing inbound connection from 127.0.0.1:",
                            "refused: the peer speaks plain TCP (its first bytes are a quorumfs "
                            "frame), and this node requires TLS", "node 1: peer 2 at 127.0.0.1:"));
    CHECK(!transport_connected(a->t, 2) && !transport_connected(b->t, 1));
    CHECK(transport_refused(b->t) >= 1);
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    CHECK(st.dial_failures >= 1 && st.connects == 0);
    stop(a);
    stop(b);
    free(a);
    free(b);
    CHECK_EQ(count_fds(), fds);
}

TEST(certificate_must_name_the_node)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *y = malloc(sizeof *y), *s = malloc(sizeof *s);
    log_reset();
    /* 1. dialed: a believes node 4 lives where y (node 3, certificate quorumfs-3) listens */
    CHECK_EQ(start(a, 1, "node-1", "ca"), 0);
    CHECK_EQ(start(y, 3, "node-3", "ca"), 0);
    CHECK_EQ(add_peer_as(a, 4, y), 0);
    CHECK_EQ(add_peer_as(y, 1, a), 0);
    node_t *ns[] = { a, y };
    CHECK(PUMP_UNTIL_LOGGED(ns, 2, "node 1: peer 4 at 127.0.0.1:",
                            "TLS handshake failed: certificate verify failed (certificate "
                            "/CN=quorumfs-3 does not name node 4: its subject CN must be "
                            "quorumfs-4)",
                            "node 3: closing inbound connection from 127.0.0.1:"));
    CHECK(!transport_connected(a->t, 4));
    CHECK(transport_refused(y->t) >= 1);
    stop(a);
    stop(y);

    /* 2. accepted: raw TLS clients with good certificates say who they are in the HELLO */
    log_reset();
    CHECK_EQ(start(s, 5, "node-5", "ca"), 0);
    CHECK_EQ(transport_add_peer(s->t, 2, "127.0.0.1:1"), 0);
    CHECK_EQ(transport_add_peer(s->t, 3, "127.0.0.1:1"), 0);
    node_t *only_s[] = { s };
    rawtls_t r;
    /* certificate quorumfs-3, HELLO node 2 */
    CHECK_EQ(rawtls_open(&r, s, "node-3", 2), 0);
    CHECK(pump(only_s, 1, rawtls_step, &r, 3000));
    rawtls_close(&r);
    CHECK(log_has("node 5: closing inbound connection from 127.0.0.1:"));
    CHECK(log_has("refused: the peer says it is node 2, but its TLS certificate "
                  "/CN=quorumfs-3 does not name it (its subject CN must be quorumfs-2)"));
    CHECK_EQ(transport_refused(s->t), 1);
    CHECK(!transport_connected(s->t, 2));
    /* the names of before (CN and DNS node-3), a client's, one given only as a SAN: HELLOs
       of node 3 refused */
    const char *nameless[] = { "old-3", "client", "san-only-4" };
    const char *subj[] = { "/CN=node-3", "/CN=quorumfs-client", "/CN=host4.example" };
    for (int i = 0; i < 3; i++) {
        char want[160];
        snprintf(want, sizeof want, "refused: the peer says it is node 3, but its TLS "
                 "certificate %s does not name it (its subject CN must be quorumfs-3)", subj[i]);
        CHECK_EQ(rawtls_open(&r, s, nameless[i], 3), 0);
        CHECK(pump(only_s, 1, rawtls_step, &r, 3000));
        rawtls_close(&r);
        CHECK(log_has(want));
        CHECK_EQ(transport_refused(s->t), 2 + (uint64_t)i);
    }
    CHECK(!transport_connected(s->t, 3));
    /* no certificate at all */
    CHECK_EQ(rawtls_open(&r, s, NULL, 3), 0);
    CHECK(pump(only_s, 1, rawtls_step, &r, 3000));
    rawtls_close(&r);
    CHECK(log_has("TLS handshake failed: peer did not return a certificate"));
    CHECK_EQ(transport_refused(s->t), 5);
    /* certificate quorumfs-3, HELLO node 3: accepted (the same client, honest) */
    CHECK_EQ(rawtls_open(&r, s, "node-3", 3), 0);
    CHECK(pump(only_s, 1, rawtls_up, &r, 3000));
    transport_peer_stats_t st;
    CHECK_EQ(transport_peer_stats(s->t, 3, &st), 0);
    CHECK(st.connected && st.tls);
    rawtls_close(&r);
    CHECK_EQ(transport_refused(s->t), 5);
    stop(s);
    free(a);
    free(y);
    free(s);
    CHECK_EQ(count_fds(), fds);
}


/* An unsigned certificate whose subject is the given CNs (n of them), for the name rules. */
static X509 *cert_with_cns(const char *const *cns, int n)
{
    X509 *x = X509_new();
    X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
    for (int i = 0; name && i < n; i++)
        if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cns[i],
                                       -1, -1, 0) != 1) {
            X509_free(x);
            return NULL;
        }
    return x;
}

static int identity_of(const char *const *cns, int n, uint64_t *id)
{
    X509 *x = cert_with_cns(cns, n);
    if (!x)
        return -1;
    int k = transport_cert_identity(x, id);
    X509_free(x);
    return k;
}

TEST(certificates_name_by_their_one_subject_cn)
{
    uint64_t id = 99;
    const char *one[1];
    struct { const char *cn; int kind; uint64_t id; } cases[] = {
        { "quorumfs-1", TRANSPORT_CERT_NODE, 1 },
        { "quorumfs-4095", TRANSPORT_CERT_NODE, 4095 },
        { "quorumfs-18446744073709551615", TRANSPORT_CERT_NODE, UINT64_MAX },
        { "quorumfs-client", TRANSPORT_CERT_CLIENT, 0 },
        { "quorumfs-18446744073709551616", TRANSPORT_CERT_OTHER, 0 }, /* over UINT64_MAX */
        { "quorumfs-0", TRANSPORT_CERT_OTHER, 0 },
        { "quorumfs-01", TRANSPORT_CERT_OTHER, 0 },
        { "quorumfs-", TRANSPORT_CERT_OTHER, 0 },
        { "quorumfs-1x", TRANSPORT_CERT_OTHER, 0 },
        { "quorumfs-+1", TRANSPORT_CERT_OTHER, 0 },
        { "Quorumfs-1", TRANSPORT_CERT_OTHER, 0 },
        { "node-1", TRANSPORT_CERT_OTHER, 0 },
        { "quorumfs-Client", TRANSPORT_CERT_OTHER, 0 },
        { "quorumfs-client2", TRANSPORT_CERT_OTHER, 0 },
        { "*.quorumfs-1", TRANSPORT_CERT_OTHER, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        one[0] = cases[i].cn;
        id = 99;
        int k = identity_of(one, 1, &id);
        if (k != cases[i].kind || id != cases[i].id)
            printf("# CN \"%s\": kind %d id %" PRIu64 "\n", cases[i].cn, k, id);
        CHECK_EQ(k, cases[i].kind);
        CHECK_EQ(id, cases[i].id);
    }
    /* no CN, two CNs (even equal ones): nothing */
    CHECK_EQ(identity_of(NULL, 0, &id), TRANSPORT_CERT_OTHER);
    const char *two[] = { "quorumfs-1", "quorumfs-1" };
    CHECK_EQ(identity_of(two, 2, &id), TRANSPORT_CERT_OTHER);
    const char *mixed[] = { "quorumfs-client", "quorumfs-2" };
    CHECK_EQ(identity_of(mixed, 2, &id), TRANSPORT_CERT_OTHER);
    CHECK_EQ(id, 0);
    CHECK_EQ(transport_cert_identity(NULL, &id), TRANSPORT_CERT_OTHER);
}

TEST(tls12_client_is_refused)
{
    int fds = count_fds();
    node_t *s = malloc(sizeof *s);
    log_reset();
    CHECK_EQ(start(s, 5, "node-5", "ca"), 0);
    CHECK_EQ(transport_add_peer(s->t, 3, "127.0.0.1:1"), 0);
    node_t *only_s[] = { s };
    rawtls_t r;
    /* a good certificate and an honest HELLO, but at most TLS 1.2 */
    CHECK_EQ(rawtls_open_v(&r, s, "node-3", 3, TLS1_2_VERSION), 0);
    CHECK(pump(only_s, 1, rawtls_step, &r, 3000));
    rawtls_close(&r);
    CHECK(PUMP_UNTIL_LOGGED(only_s, 1, "node 5: closing inbound connection from 127.0.0.1:",
                            "TLS handshake failed: unsupported protocol"));
    CHECK_EQ(transport_refused(s->t), 1);
    CHECK(!transport_connected(s->t, 3));
    /* the same client with TLS 1.3 is taken */
    CHECK_EQ(rawtls_open(&r, s, "node-3", 3), 0);
    CHECK(pump(only_s, 1, rawtls_up, &r, 3000));
    rawtls_close(&r);
    stop(s);
    free(s);
    CHECK_EQ(count_fds(), fds);
}

/* Copies dir/<from>.pem (and .key, when key) over dir/<to>.pem (.key). */
static int put(const char *from, const char *to, int key)
{
    if (sh("cd %s && cp %s.pem %s.pem.new && mv %s.pem.new %s.pem", dir, from, to, to, to))
        return -1;
    return key ? sh("cd %s && cp %s.key %s.key.new && mv %s.key.new %s.key", dir, from, to,
                    to, to) : 0;
}

/* 1 once a is connected to the peer (a new peer after redial: its stats start at 0). */
typedef struct reconn {
    node_t *a;
    uint64_t peer;
} reconn_t;

static int reconnected(void *arg)
{
    reconn_t *w = arg;
    transport_peer_stats_t st;
    return transport_peer_stats(w->a->t, w->peer, &st) == 0 && st.connected &&
           st.connects == 1;
}

/* Makes a dial peer `id` again at b's address, as a new peer: a new connection. */
static int redial(node_t *a, uint64_t id, node_t *b)
{
    return transport_remove_peer(a->t, id) == 0 ? add_peer_as(a, id, b) : -1;
}

TEST(reload_takes_new_files_for_new_connections_and_keeps_old_ones_when_bad)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *b = malloc(sizeof *b), *o = malloc(sizeof *o);
    node_t *ns[] = { a, b };
    log_reset();
    /* a (node 1) and b (node 2) run from files that are replaced below */
    CHECK_EQ(put("node-1", "live-1", 1) | put("node-2", "live-2", 1) | put("ca", "live-ca-1", 0) |
             put("ca", "live-ca-2", 0), 0);
    transport_config_t ca = config(a, 1, "live-1", "live-ca-1");
    CHECK_EQ(start_cfg(a, &ca), 0);
    transport_config_t cb = config(b, 2, "live-2", "live-ca-2");
    CHECK_EQ(start_cfg(b, &cb), 0);
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(connect_all(ns, 2));
    transport_peer_stats_t st;
    char *msg = NULL;

    /* 1. bad files: garbage, a key of another certificate, a certificate of another node.
       Each reload fails with the reason, and the old files stay in use: a new connection
       still works */
    CHECK_EQ(sh("cd %s && echo garbage >live-2.pem", dir), 0);
    CHECK_EQ(transport_reload_tls(b->t, &msg), -QERR_INVAL);
    CHECK(msg && strstr(msg, "/live-2.pem: "));
    free(msg);
    msg = NULL;
    CHECK(log_has("node 2: TLS reload failed, the certificates loaded before stay in use: TLS "
                  "certificate /tmp/qfs-tls-"));
    CHECK_EQ(put("other-2", "live-2", 0), 0); /* its key stays node-2's */
    CHECK_EQ(transport_reload_tls(b->t, NULL), -QERR_INVAL);
    CHECK(log_has("/live-2.key does not match the certificate /tmp/qfs-tls-"));
    CHECK_EQ(put("node-3", "live-2", 1), 0);
    CHECK_EQ(transport_reload_tls(b->t, NULL), -QERR_INVAL);
    CHECK(log_has("/live-2.pem does not name this node: its subject must have the one CN "
                  "quorumfs-2 (it is /CN=quorumfs-3)"));
    reconn_t w = { a, 2 };
    CHECK_EQ(redial(a, 2, b), 0);
    CHECK(pump(ns, 2, reconnected, &w, 5000));

    /* 2. the CA changes: both trust old and new (a bundle of both, reloaded by a request as
       SIGHUP makes it), then b takes a certificate of the new CA */
    CHECK_EQ(put("node-2", "live-2", 1), 0); /* b's own files again */
    CHECK_EQ(put("both", "live-ca-1", 0) | put("both", "live-ca-2", 0), 0);
    transport_request_tls_reload();
    CHECK(PUMP_UNTIL_LOGGED(ns, 2, "node 1: TLS reloaded: certificate /tmp/qfs-tls-",
                            "node 2: TLS reloaded: certificate /tmp/qfs-tls-"));
    CHECK_EQ(put("other-2", "live-2", 1), 0);
    CHECK_EQ(transport_reload_tls(b->t, NULL), 0);
    CHECK(log_has("/live-2.pem (/CN=quorumfs-2), key /tmp/qfs-tls-"));
    /* the open connection was not touched */
    CHECK(transport_connected(a->t, 2));
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    CHECK_EQ(st.connects, 1);
    /* a new one works, with b's new certificate */
    CHECK_EQ(redial(a, 2, b), 0);
    CHECK(pump(ns, 2, reconnected, &w, 5000));
    /* which only the new CA signed: a node trusting the old CA alone refuses it */
    CHECK_EQ(start(o, 1, "node-1", "ca"), 0);
    CHECK_EQ(add_peer_as(o, 2, b), 0);
    node_t *ob[] = { o, b };
    CHECK(PUMP_UNTIL_LOGGED(ob, 2, "TLS handshake failed: certificate verify failed "
                            "(certificate /CN=quorumfs-2 issued by /CN=another CA: "));
    CHECK(!transport_connected(o->t, 2));
    stop(o);

    /* 3. a plain transport has nothing to reload */
    CHECK_EQ(start(o, 3, NULL, NULL), 0);
    CHECK_EQ(transport_reload_tls(o->t, NULL), -QERR_INVAL);
    CHECK(log_has("node 3: TLS reload requested: this node has no TLS configured, nothing to "
                  "reload"));
    stop(o);
    stop(a);
    stop(b);
    free(a);
    free(b);
    free(o);
    CHECK_EQ(count_fds(), fds);
}

TEST(garbage_during_handshake_closes_only_its_connection)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    log_reset();
    CHECK_EQ(start(a, 1, "node-1", "ca"), 0);
    transport_config_t cb = config(b, 2, "node-2", "ca");
    cb.idle_timeout_ms = 600;
    CHECK_EQ(start_cfg(b, &cb), 0);
    node_t *ns[] = { a, b };
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(connect_all(ns, 2));
    /* 1. plain text where a ClientHello belongs */
    int fd = raw_connect(b);
    CHECK(fd >= 0);
    CHECK(send(fd, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL) == 18);
    CHECK(pump(ns, 2, fd_closed, &fd, 3000));
    close(fd);
    CHECK(log_has("node 2: closing inbound connection from 127.0.0.1:"));
    CHECK(log_has("TLS handshake failed: "));
    CHECK_EQ(transport_refused(b->t), 1);
    /* 2. a handshake record with a broken body */
    fd = raw_connect(b);
    CHECK(fd >= 0);
    const uint8_t rec[] = { 0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04,
                            0xde, 0xad, 0xbe, 0xef };
    CHECK(send(fd, rec, sizeof rec, MSG_NOSIGNAL) == (ssize_t)sizeof rec);
    CHECK(pump(ns, 2, fd_closed, &fd, 3000));
    close(fd);
    CHECK_EQ(transport_refused(b->t), 2);
    /* 3. a record header promising bytes that never come: the handshake times out */
    fd = raw_connect(b);
    CHECK(fd >= 0);
    CHECK(send(fd, rec, 5, MSG_NOSIGNAL) == 5);
    uint64_t t0 = ms_now();
    CHECK(pump(ns, 2, fd_closed, &fd, 3000));
    close(fd);
    CHECK(ms_now() - t0 >= 400);
    CHECK(log_has("TLS handshake not done within 600 ms"));
    CHECK_EQ(transport_refused(b->t), 3);
    /* the real peers kept their connection and still talk */
    CHECK_EQ(send_msg(a, b, 1, RAFT_MSG_HEARTBEAT, 0, 0), 0);
    CHECK_EQ(send_msg(b, a, 1, RAFT_MSG_HEARTBEAT, 0, 0), 0);
    want_t wa = { a, 1 }, wb = { b, 1 };
    CHECK(pump(ns, 2, got_count, &wa, 3000));
    CHECK(pump(ns, 2, got_count, &wb, 3000));
    transport_peer_stats_t st;
    CHECK_EQ(transport_peer_stats(b->t, 1, &st), 0);
    CHECK(st.connected && st.tls);
    CHECK_EQ(st.connects, 1);
    CHECK_EQ(st.errors, 0);
    stop(a);
    stop(b);
    free(a);
    free(b);
    CHECK_EQ(count_fds(), fds);
}

/* ---- bursts of records from a raw TLS peer -------------------------------------------- */

#define BURST_FRAMES 4000   /* < MAX_RECV */

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

static int bytes_add(bytes_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* Moves what the raw client's memory BIO holds (its records) to the end of out. */
static int take_records(BIO *mem, bytes_t *out)
{
    char *p;
    long n = BIO_get_mem_data(mem, &p);
    if (n < 0 || bytes_add(out, p, (size_t)n) != 0)
        return -1;
    (void)BIO_reset(mem);
    return 0;
}

/* Frame seq of the burst from node `from` to `to`, encoded into b (cap bytes): every 100th an
 * APPEND of 40,000 bytes (over two records), every 3rd a heartbeat, the others APPENDs of
 * 0-899 bytes; contents as send_msg makes them, so deliver checks them. */
static int burst_frame(uint64_t from, uint64_t to, uint64_t seq, uint8_t *b, size_t cap,
                       size_t *len)
{
    static uint8_t data[40000];
    uint32_t dlen = seq % 100 == 99 ? 40000 : (uint32_t)(seq * 37 % 900);
    for (uint32_t i = 0; i < dlen; i++)
        data[i] = (uint8_t)(seq + i);
    raft_msg_t m = { .type = RAFT_MSG_APPEND, .from = from, .to = to, .term = 1, .ctx = seq,
                     .index = seq };
    raft_entry_t e = { .term = 1, .index = seq + 1, .type = RAFT_ENTRY_NORMAL, .len = dlen,
                       .data = data };
    if (seq % 3 == 1) {
        m.type = RAFT_MSG_HEARTBEAT;
        m.index = 0;
    } else {
        m.n_entries = 1;
        m.entries = &e;
    }
    frame_t f = { .type = FRAME_RAFT, .group = (uint32_t)(seq % 13), .msg = m };
    return frame_encode(&f, b, cap, len);
}

/* 1 once node s has received `upto` frames (an nh_pump condition). */
typedef struct upto {
    node_t *s;
    size_t n;
} upto_t;

static int got_upto(void *arg)
{
    const upto_t *u = arg;
    return u->s->nrecv >= u->n;
}

#define BURST_ROUNDS 8
#define BURST_LAST (230 * 1024) /* bytes of records ending each round, sent in one go */

/* Sends out[*off, to) on r's socket. While *pieces is nonzero, in pieces of 1 to 600 bytes,
 * each followed by a poll of s (record headers and bodies split across reads; decremented
 * per piece); then as fast as the socket takes them, s polled only when the socket is full.
 * Returns 0 once all is sent, -1 on an error or after 10 s. */
static int send_bytes(rawtls_t *r, node_t *s, const bytes_t *out, size_t *off, size_t to,
                      unsigned *pieces)
{
    static const size_t piece[] = { 1, 4, 2, 9, 3, 70, 5, 600 };
    uint64_t end = ms_now() + 10000;
    while (*off < to) {
        if (ms_now() >= end) {
            printf("# %zu bytes not sent in 10 s\n", to - *off);
            return -1;
        }
        size_t want = to - *off;
        if (*pieces && want > piece[*pieces % 8])
            want = piece[*pieces % 8];
        ssize_t n = send(r->fd, out->p + *off, want, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            printf("# send: %s\n", strerror(errno));
            return -1;
        }
        if (n > 0)
            *off += (size_t)n;
        if ((*pieces || n < 0) && transport_poll(s->t, *pieces ? 0 : 1) < 0)
            return -1;
        if (*pieces)
            (*pieces)--;
    }
    return 0;
}

/* The raw client r, connected to s as node 3, sends BURST_FRAMES Raft frames as records, in
 * BURST_ROUNDS rounds: mostly one frame per SSL_write (one small record each), every 50th
 * write seven frames together, the 40 KB frames over several records; after the last, tail:
 * 0 nothing, 1 a close_notify, 2 a garbage record. The first 400 pieces of bytes are small
 * (send_bytes). Each round goes out in two parts, and nothing more is sent until s has
 * delivered each: the records before the last BURST_LAST bytes of the round, then those,
 * in one send when the socket takes them. s finds them all at once, more than the budget of
 * one read event leaves room for, so it spends its budget with records still in its
 * read-ahead buffer and the socket empty: records left waiting there would never be
 * delivered, as no further bytes come to make the socket readable (each wait is 8 s at
 * most). Returns 0, or -1 (with a line saying why). */
static int send_burst(rawtls_t *r, node_t *s, int tail)
{
    BIO *mem = BIO_new(BIO_s_mem());
    if (!mem)
        return -1;
    SSL_set0_wbio(r->ssl, mem); /* the records now go to mem; reads stay on the socket */
    bytes_t out = { 0 }, batch = { 0 };
    static size_t wend[BURST_FRAMES], wframes[BURST_FRAMES]; /* per write: bytes, frames */
    size_t nw = 0, round_w[BURST_ROUNDS];
    static uint8_t fb[64 * 1024];
    int rc = -1;
    for (uint64_t seq = 0; seq < BURST_FRAMES; seq++) {
        size_t len;
        if (burst_frame(3, s->id, seq, fb, sizeof fb, &len) != 0 || bytes_add(&batch, fb, len))
            goto out;
        bool last_of_round = (seq + 1) % (BURST_FRAMES / BURST_ROUNDS) == 0;
        if (seq % 50 < 43 || seq % 50 == 49 || last_of_round) {
            if (SSL_write(r->ssl, batch.p, (int)batch.len) != (int)batch.len)
                goto out;
            batch.len = 0;
            if (seq == BURST_FRAMES - 1 && tail == 1 && SSL_shutdown(r->ssl) < 0)
                goto out;
            if (take_records(mem, &out) != 0)
                goto out;
            wend[nw] = out.len;
            wframes[nw++] = seq + 1;
        }
        if (last_of_round)
            round_w[seq / (BURST_FRAMES / BURST_ROUNDS)] = nw - 1;
    }
    if (tail == 2) {
        /* an application-data record whose authentication cannot check out */
        uint8_t junk[5 + 48] = { 0x17, 0x03, 0x03, 0x00, 48 };
        for (size_t i = 5; i < sizeof junk; i++)
            junk[i] = (uint8_t)(i * 29);
        if (bytes_add(&out, junk, sizeof junk) != 0)
            goto out;
        wend[nw - 1] = out.len;
    }
    size_t off = 0, w = 0;
    unsigned pieces = 400;
    node_t *only_s[] = { s };
    for (int k = 0; k < BURST_ROUNDS; k++) {
        /* part 1: the writes up to the last one ending BURST_LAST bytes before the round */
        size_t last = round_w[k], split = last;
        while (split > w && wend[split - 1] + BURST_LAST > wend[last])
            split--;
        size_t parts[2] = { split - 1, last };
        for (int j = 0; j < 2; j++) {
            if (j == 0 && split == w)
                continue; /* a round too short for two parts */
            upto_t u = { s, wframes[parts[j]] };
            if (send_bytes(r, s, &out, &off, wend[parts[j]], &pieces) != 0 ||
                !pump(only_s, 1, got_upto, &u, 8000)) {
                printf("# round %d part %d: %zu of %zu bytes sent, %zu of %zu frames "
                       "delivered\n", k, j, off, wend[parts[j]], s->nrecv, u.n);
                goto out;
            }
        }
        w = last + 1;
    }
    rc = 0;
out:
    free(out.p);
    free(batch.p);
    ERR_clear_error();
    return rc;
}

/* 1 once n has received the whole burst. */
static int got_burst(void *arg)
{
    return ((node_t *)arg)->nrecv >= BURST_FRAMES;
}

/* Checks s got the whole burst, in order, intact. */
static int burst_delivered(const node_t *s)
{
    if (s->nrecv != BURST_FRAMES || s->bad) {
        printf("# %zu of %d frames delivered, %" PRIu64 " bad\n", s->nrecv, BURST_FRAMES, s->bad);
        return 0;
    }
    for (size_t i = 0; i < BURST_FRAMES; i++)
        if (s->ctx[i] != i || s->group[i] != i % 13) {
            printf("# frame %zu: seq %" PRIu64 " group %" PRIu32 "\n", i, s->ctx[i], s->group[i]);
            return 0;
        }
    return 1;
}

TEST(burst_of_records_is_delivered_whole_with_nothing_after_it)
{
    int fds = count_fds();
    node_t *s = malloc(sizeof *s);
    node_t *only_s[] = { s };
    rawtls_t r;
    transport_peer_stats_t st;
    const char *what[] = { "nothing", "a close_notify", "garbage" };
    for (int tail = 0; tail < 3; tail++) {
        printf("# burst followed by %s\n", what[tail]);
        log_reset();
        CHECK_EQ(start(s, 5, "node-5", "ca"), 0);
        CHECK_EQ(transport_add_peer(s->t, 3, "127.0.0.1:1"), 0);
        CHECK_EQ(rawtls_open(&r, s, "node-3", 3), 0);
        CHECK(pump(only_s, 1, rawtls_up, &r, 3000));
        CHECK_EQ(send_burst(&r, s, tail), 0);
        /* nothing more comes: whatever OpenSSL read ahead must be handled by now or at the
           next poll, not wait for a readiness that never comes (the idle timeout is 3 s) */
        CHECK(pump(only_s, 1, got_burst, s, 8000));
        CHECK(burst_delivered(s));
        CHECK_EQ(transport_peer_stats(s->t, 3, &st), 0);
        CHECK_EQ(st.msgs_in, BURST_FRAMES);
        CHECK_EQ(st.frames_in, BURST_FRAMES + 1); /* and the HELLO */
        if (tail == 0) {
            CHECK(st.connected && st.tls);
            CHECK_EQ(st.errors, 0);
        } else if (tail == 1) {
            CHECK(PUMP_UNTIL_LOGGED(only_s, 1, "node 5: closing peer 3 (inbound from "
                                    "127.0.0.1:", "): closed by the other end"));
            CHECK_EQ(transport_peer_stats(s->t, 3, &st), 0);
            CHECK(!st.connected);
            CHECK_EQ(st.errors, 0);
        } else {
            CHECK(PUMP_UNTIL_LOGGED(only_s, 1, "node 5: closing peer 3 (inbound from "
                                    "127.0.0.1:", "): read failed: TLS: "));
            CHECK_EQ(transport_peer_stats(s->t, 3, &st), 0);
            CHECK(!st.connected);
            CHECK_EQ(st.errors, 1);
        }
        rawtls_close(&r);
        stop(s);
    }
    free(s);
    CHECK_EQ(count_fds(), fds);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the raw TLS client writes with plain write(2) */
    if (make_all() != 0) {
        printf("# could not make the test certificates (log: %s/openssl.log)\n", dir);
        printf("not ok make_certificates\n");
        return 1;
    }
    RUN(certificates_name_by_their_one_subject_cn);
    RUN(tls_options_are_checked);
    RUN(tls_nodes_exchange_raft_messages);
    RUN(certificate_of_another_ca_is_refused);
    RUN(plain_and_tls_refuse_each_other);
    RUN(certificate_must_name_the_node);
    RUN(tls12_client_is_refused);
    RUN(reload_takes_new_files_for_new_connections_and_keeps_old_ones_when_bad);
    RUN(garbage_during_handshake_closes_only_its_connection);
    RUN(burst_of_records_is_delivered_whole_with_nothing_after_it);
    if (CHECK_DONE() || getenv("TRANSPORT_LOG"))
        printf("# transport log of the last case:\n%s", logbuf);
    certs_remove();
    return CHECK_DONE();
}
