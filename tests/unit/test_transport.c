/* tests/unit/test_transport.c — the TCP transport (cluster/transport.c) on 127.0.0.1 with
 * ephemeral ports: two and three nodes exchange Raft messages of many groups, a peer that
 * goes away is redialed with backoff and reconnected when it comes back, garbage and
 * protocol violations close only their own connection (logged), a wrong cluster id, an
 * unknown node id or a node that is not who it should be are refused, and a receiver that
 * stops reading makes the send-queue bound hold without losing what was accepted. Each test
 * drives every transport from this one thread (the transport's threading contract); every
 * wait is bounded, and each case checks that it leaves no file descriptor open. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/transport.h"
#include "tests/unit/check.h"
#include "tests/unit/nethelp.h"

/* ---- fixture ------------------------------------------------------------------------- */

#define MAX_RECV 4096
#define CONNECT_MS 3000     /* connect_all waits this long at most */

typedef struct rec {
    uint64_t from;
    uint32_t group;
    uint32_t type;
    uint64_t ctx;            /* sequence number put there by the sender */
    uint32_t len;            /* snapshot chunk or first entry bytes */
} rec_t;

typedef struct node {
    uint64_t id;
    transport_t *t;
    rec_t recv[MAX_RECV];
    size_t nrecv;
    uint64_t bad;            /* messages whose content did not check out */
} node_t;

static void deliver(void *ctx, uint64_t from, uint32_t group, raft_msg_t *m)
{
    node_t *n = ctx;
    if (m->from != from || m->to != n->id)
        n->bad++;
    /* payload bytes are (ctx + i) mod 256: check them */
    const uint8_t *d = m->type == RAFT_MSG_SNAPSHOT ? m->data
                       : m->n_entries ? m->entries[0].data : NULL;
    uint32_t len = m->type == RAFT_MSG_SNAPSHOT ? m->len : m->n_entries ? m->entries[0].len : 0;
    for (uint32_t i = 0; i < len; i++)
        if (d[i] != (uint8_t)(m->ctx + i)) {
            n->bad++;
            break;
        }
    if (n->nrecv < MAX_RECV)
        n->recv[n->nrecv++] = (rec_t){ from, group, m->type, m->ctx, len };
}

static transport_config_t config(node_t *n, uint64_t id)
{
    memset(n, 0, sizeof *n);
    n->id = id;
    return base_config(id, deliver, n);
}

static int start_cfg(node_t *n, const transport_config_t *cfg)
{
    return start_cfg_t(cfg, &n->t);
}

static int start(node_t *n, uint64_t id)
{
    transport_config_t cfg = config(n, id);
    return start_cfg(n, &cfg);
}

static void stop(node_t *n)
{
    transport_free(n->t);
    n->t = NULL;
}

static int add_peer(node_t *a, const node_t *b)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", transport_port(b->t));
    return transport_add_peer(a->t, b->id, addr);
}

/* Links every pair of the k nodes both ways. */
static int mesh(node_t **ns, int k)
{
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++)
            if (i != j && add_peer(ns[i], ns[j]) != 0)
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

/* A message from a to b of group g carrying sequence number seq; APPEND carries one entry
 * of len bytes, SNAPSHOT a chunk of len bytes, anything else nothing. */
static raft_msg_t msg(uint64_t from, uint64_t to, uint32_t type, uint64_t seq, uint32_t len,
                      raft_entry_t *e)
{
    static uint8_t buf[FRAME_DEFAULT_MAX_PAYLOAD + 1];
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq + i);
    raft_msg_t m = { .type = type, .from = from, .to = to, .term = 1, .ctx = seq };
    if (type == RAFT_MSG_APPEND && len) {
        *e = (raft_entry_t){ .term = 1, .index = seq + 1, .type = RAFT_ENTRY_NORMAL,
                             .len = len, .data = buf };
        m.n_entries = 1;
        m.entries = e;
        m.index = seq;
    } else if (type == RAFT_MSG_SNAPSHOT) {
        m.len = len;
        m.data = len ? buf : NULL;
    }
    return m;
}

static int send_msg(node_t *a, node_t *b, uint32_t group, uint32_t type, uint64_t seq,
                    uint32_t len)
{
    raft_entry_t e;
    raft_msg_t m = msg(a->id, b->id, type, seq, len, &e);
    return transport_send(a->t, group, &m);
}

/* A raw TCP socket to n's listener, for speaking bytes the transport did not write. */
static int raw_connect(const node_t *n)
{
    return tcp_connect_to(n->t, 0);
}

static int raw_send_frame(int fd, const frame_t *f)
{
    uint8_t b[512];
    size_t len;
    if (frame_encode(f, b, sizeof b, &len) != 0)
        return -1;
    return send(fd, b, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static int raw_hello(int fd, uint64_t id, uint64_t cluster, uint32_t pmin, uint32_t pmax)
{
    frame_t f = { .type = FRAME_HELLO };
    f.hello = (frame_hello_t){ id, cluster, pmin, pmax, 0 };
    return raw_send_frame(fd, &f);
}

/* ---- cases --------------------------------------------------------------------------- */

TEST(backoff_is_exponential_capped_and_jittered)
{
    uint32_t prev_hi = 0;
    for (uint32_t a = 0; a < 40; a++) {
        uint64_t d = a < 5 ? 50u << a : 1000;
        if (d > 1000)
            d = 1000;
        uint32_t lo = UINT32_MAX, hi = 0;
        for (uint64_t r = 0; r < 2000; r++) {
            uint32_t v = transport_backoff_ms(50, 1000, a, r * 0x9E3779B97F4A7C15ull);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        CHECK(lo >= d / 2 && hi <= d);
        CHECK(hi - lo >= d / 4); /* jitter spreads the redials */
        CHECK(hi >= prev_hi);
        prev_hi = hi;
    }
    CHECK_EQ(transport_backoff_ms(50, 1000, UINT32_MAX, 7), transport_backoff_ms(50, 1000, 99, 7));
    CHECK_EQ(transport_backoff_ms(1, 1, 0, 12345), 1);
}

TEST(send_refusals)
{
    int fds = count_fds();
    node_t a, b;
    log_reset();
    CHECK_EQ(start(&a, 1), 0);
    CHECK_EQ(start(&b, 2), 0);
    CHECK_EQ(send_msg(&a, &b, 1, RAFT_MSG_HEARTBEAT, 0, 0), -QERR_NOTFOUND);
    CHECK_EQ(add_peer(&a, &b), 0);
    CHECK_EQ(add_peer(&a, &b), -QERR_EXISTS);
    CHECK_EQ(transport_add_peer(a.t, 1, "127.0.0.1:1"), -QERR_INVAL);
    CHECK_EQ(transport_add_peer(a.t, 3, "no-port"), -QERR_INVAL);
    CHECK_EQ(add_peer(&b, &a), 0);
    /* not connected yet: refused and counted */
    CHECK_EQ(send_msg(&a, &b, 1, RAFT_MSG_HEARTBEAT, 0, 0), -QERR_CLOSED);
    transport_peer_stats_t st;
    CHECK_EQ(transport_peer_stats(a.t, 2, &st), 0);
    CHECK_EQ(st.dropped, 1);
    CHECK_EQ(st.rtt_us, -1);
    node_t *ns[] = { &a, &b };
    CHECK(connect_all(ns, 2));
    raft_msg_t m = { .type = RAFT_MSG_HEARTBEAT, .from = 5, .to = 2, .term = 1 };
    CHECK_EQ(transport_send(a.t, 1, &m), -QERR_INVAL); /* not from this node */
    m.from = 1;
    m.type = 0;
    CHECK_EQ(transport_send(a.t, 1, &m), -QERR_INVAL); /* malformed */
    CHECK_EQ(send_msg(&a, &b, 1, RAFT_MSG_SNAPSHOT, 0, FRAME_DEFAULT_MAX_PAYLOAD),
             -QERR_TOOBIG);
    CHECK_EQ(transport_remove_peer(a.t, 2), 0);
    CHECK_EQ(transport_remove_peer(a.t, 2), -QERR_NOTFOUND);
    stop(&a);
    stop(&b);
    CHECK_EQ(count_fds(), fds);
}

TEST(two_nodes_many_groups)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    log_reset();
    CHECK_EQ(start(a, 1), 0);
    CHECK_EQ(start(b, 2), 0);
    node_t *ns[] = { a, b };
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(connect_all(ns, 2));
    CHECK(log_has("node 1: connected to peer 2 (dialed at 127.0.0.1:"));
    CHECK(log_has("node 2: connected to peer 1 (inbound from 127.0.0.1:"));
    /* 16 groups x 20 heartbeats one way, 8 groups x 10 appends of 1000 bytes the other */
    for (uint64_t s = 0; s < 20; s++)
        for (uint32_t g = 0; g < 16; g++)
            CHECK_EQ(send_msg(a, b, g, RAFT_MSG_HEARTBEAT, s * 16 + g, 0), 0);
    for (uint64_t s = 0; s < 10; s++)
        for (uint32_t g = 100; g < 108; g++)
            CHECK_EQ(send_msg(b, a, g, RAFT_MSG_APPEND, s * 8 + g, 1000), 0);
    transport_flush(a->t);
    transport_flush(b->t);
    want_t wb = { b, 320 }, wa = { a, 80 };
    CHECK(pump(ns, 2, got_count, &wb, 3000));
    CHECK(pump(ns, 2, got_count, &wa, 3000));
    CHECK_EQ(b->nrecv, 320);
    CHECK_EQ(a->nrecv, 80);
    CHECK_EQ(a->bad + b->bad, 0);
    /* in order, every group, nothing twice */
    for (size_t i = 0; i < 320; i++) {
        CHECK_EQ(b->recv[i].ctx, i);
        CHECK_EQ(b->recv[i].group, i % 16);
        CHECK_EQ(b->recv[i].from, 1);
        CHECK_EQ(b->recv[i].type, RAFT_MSG_HEARTBEAT);
    }
    for (size_t i = 0; i < 80; i++) {
        CHECK_EQ(a->recv[i].group, 100 + i % 8);
        CHECK_EQ(a->recv[i].len, 1000);
    }
    transport_peer_stats_t sa, sb;
    CHECK_EQ(transport_peer_stats(a->t, 2, &sa), 0);
    CHECK_EQ(transport_peer_stats(b->t, 1, &sb), 0);
    CHECK(sa.connected && sb.connected);
    CHECK_EQ(sa.msgs_out, 320);
    CHECK_EQ(sb.msgs_in, 320);
    CHECK_EQ(sb.msgs_out, 80);
    CHECK_EQ(sa.msgs_in, 80);
    CHECK(sa.bytes_out > 320 * (FRAME_HDR_BYTES + 4) && sa.bytes_out == sb.bytes_in);
    CHECK(sa.frames_in > 80); /* the HELLO and PONGs too */
    CHECK_EQ(sa.connects, 1);
    CHECK_EQ(sa.reconnects, 0);
    CHECK_EQ(sa.errors + sb.errors + sa.dropped + sb.dropped, 0);
    /* the first PING goes out at connect: an RTT comes back soon */
    transport_peer_stats_t *sp = &sa;
    for (uint64_t end = ms_now() + 2000; sp->rtt_us < 0 && ms_now() < end;) {
        pump(ns, 2, NULL, NULL, 5);
        transport_peer_stats(a->t, 2, sp);
    }
    CHECK(sa.rtt_us >= 0 && sa.rtt_us < 1000000);
    stop(a);
    stop(b);
    free(a);
    free(b);
    CHECK_EQ(count_fds(), fds);
}

TEST(three_nodes_full_mesh)
{
    int fds = count_fds();
    node_t *n[3];
    log_reset();
    for (int i = 0; i < 3; i++) {
        n[i] = malloc(sizeof *n[i]);
        CHECK_EQ(start(n[i], (uint64_t)i + 1), 0);
    }
    CHECK_EQ(mesh(n, 3), 0);
    CHECK(connect_all(n, 3));
    for (uint64_t s = 0; s < 30; s++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (i != j)
                    CHECK_EQ(send_msg(n[i], n[j], (uint32_t)(s % 5), RAFT_MSG_APPEND, s, 64),
                             0);
    want_t w[3] = { { n[0], 60 }, { n[1], 60 }, { n[2], 60 } };
    for (int i = 0; i < 3; i++)
        CHECK(pump(n, 3, got_count, &w[i], 3000));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(n[i]->nrecv, 60);
        CHECK_EQ(n[i]->bad, 0);
        uint64_t next[4] = { 0, 0, 0, 0 };
        for (size_t r = 0; r < 60; r++) {
            const rec_t *e = &n[i]->recv[r];
            CHECK(e->from >= 1 && e->from <= 3 && e->from != (uint64_t)i + 1);
            CHECK_EQ(e->ctx, next[e->from]); /* per sender, in order, no gap */
            next[e->from]++;
        }
        /* one connection per pair, made once */
        for (int j = 0; j < 3; j++) {
            transport_peer_stats_t st;
            if (i == j)
                continue;
            CHECK_EQ(transport_peer_stats(n[i]->t, (uint64_t)j + 1, &st), 0);
            CHECK_EQ(st.connects, 1);
        }
    }
    for (int i = 0; i < 3; i++) {
        stop(n[i]);
        free(n[i]);
    }
    CHECK_EQ(count_fds(), fds);
}

/* Starts n again on the port in cfg->listen. Another socket may briefly hold that port (an
 * outgoing connection elsewhere can get it as its ephemeral port): retry for up to 2 s,
 * driving the other nodes meanwhile. */
static int restart_on(node_t *n, const transport_config_t *cfg, node_t **others, int k)
{
    int rc = -QERR_IO;
    for (int i = 0; i < 40 && rc == -QERR_IO; i++) {
        char *msg = NULL;
        rc = transport_new(cfg, &n->t, &msg);
        if (rc == -QERR_IO)
            pump(others, k, NULL, NULL, 50);
        free(msg);
    }
    return rc;
}

static int disconnected(void *arg)
{
    node_t *a = arg;
    return !transport_connected(a->t, 2);
}

TEST(peer_that_returns_is_redialed_with_backoff)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    log_reset();
    CHECK_EQ(start(a, 1), 0);
    CHECK_EQ(start(b, 2), 0);
    uint16_t port = transport_port(b->t);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
    node_t *ns[] = { a, b };
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(connect_all(ns, 2));
    stop(b);
    node_t *only_a[] = { a };
    CHECK(pump(only_a, 1, disconnected, a, 2000));
    /* 1.2 s of redials with delays 10-20, 20-40, 40-80, then 80-160 ms: some 9 to 17
       attempts; a redial loop without backoff would make hundreds */
    uint64_t t0 = ms_now();
    pump(only_a, 1, NULL, NULL, 1200);
    transport_peer_stats_t st;
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    printf("# %" PRIu64 " failed dials in %" PRIu64 " ms\n", st.dial_failures, ms_now() - t0);
    CHECK(st.dial_failures >= 6 && st.dial_failures <= 20);
    CHECK(log_has("failed dial(s)"));
    CHECK_EQ(send_msg(a, b, 1, RAFT_MSG_HEARTBEAT, 0, 0), -QERR_CLOSED);
    /* b comes back on the same port: a finds it within one capped delay */
    transport_config_t cfg = config(b, 2);
    cfg.listen = listen;
    CHECK_EQ(restart_on(b, &cfg, only_a, 1), 0);
    CHECK_EQ(add_peer(b, a), 0);
    CHECK(connect_all(ns, 2));
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    CHECK_EQ(st.connects, 2);
    CHECK_EQ(st.reconnects, 1);
    CHECK_EQ(send_msg(a, b, 1, RAFT_MSG_HEARTBEAT, 0, 0), 0);
    want_t w = { b, 1 };
    CHECK(pump(ns, 2, got_count, &w, 2000));
    /* and the other way: a goes and comes back; b waits for a's dial */
    uint16_t aport = transport_port(a->t);
    stop(a);
    node_t *only_b[] = { b };
    CHECK(pump(only_b, 1, NULL, NULL, 50));
    snprintf(listen, sizeof listen, "127.0.0.1:%u", aport);
    cfg = config(a, 1);
    cfg.listen = listen;
    CHECK_EQ(restart_on(a, &cfg, only_b, 1), 0);
    CHECK_EQ(add_peer(a, b), 0);
    CHECK(connect_all(ns, 2));
    CHECK_EQ(transport_peer_stats(b->t, 1, &st), 0);
    CHECK_EQ(st.reconnects, 1);
    stop(a);
    stop(b);
    free(a);
    free(b);
    CHECK_EQ(count_fds(), fds);
}

TEST(garbage_closes_only_its_connection)
{
    int fds = count_fds();
    node_t *n[3];
    log_reset();
    for (int i = 0; i < 3; i++) {
        n[i] = malloc(sizeof *n[i]);
        CHECK_EQ(start(n[i], (uint64_t)(i + 1) * 10), 0);
    }
    CHECK_EQ(mesh(n, 3), 0);
    /* node 30 also knows node 5, which never runs (5 < 30: node 5 would dial node 30) */
    CHECK_EQ(transport_add_peer(n[2]->t, 5, "127.0.0.1:1"), 0);
    CHECK(connect_all(n, 3));
    /* 1. bytes that are no frame at all */
    int fd = raw_connect(n[2]);
    CHECK(fd >= 0);
    CHECK(send(fd, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL) == 18);
    CHECK(pump(n, 3, fd_closed, &fd, 3000));
    close(fd);
    CHECK(log_has("closing inbound connection from 127.0.0.1:"));
    CHECK(log_has("bad magic"));
    CHECK_EQ(transport_refused(n[2]->t), 1);

    /* 2. a good HELLO from a known node, then a frame with a broken CRC */
    fd = raw_connect(n[2]);
    CHECK(fd >= 0);
    CHECK_EQ(raw_hello(fd, 5, 0xABCD, 1, 1), 0);
    uint8_t bad[FRAME_HDR_BYTES + 8];
    size_t len;
    frame_t ping = { .type = FRAME_PING, .ping = 1 };
    CHECK_EQ(frame_encode(&ping, bad, sizeof bad, &len), 0);
    bad[len - 1] ^= 1;
    CHECK(send(fd, bad, len, MSG_NOSIGNAL) == (ssize_t)len);
    CHECK(pump(n, 3, fd_closed, &fd, 3000));
    close(fd);
    CHECK(log_has("closing peer 5 (inbound from 127.0.0.1:"));
    CHECK(log_has("CRC mismatch"));
    transport_peer_stats_t st;
    CHECK_EQ(transport_peer_stats(n[2]->t, 5, &st), 0);
    CHECK_EQ(st.errors, 1);
    CHECK(!st.connected);

    /* 3. a good HELLO, then a Raft message pretending to come from node 10 */
    fd = raw_connect(n[2]);
    CHECK(fd >= 0);
    CHECK_EQ(raw_hello(fd, 5, 0xABCD, 1, 1), 0);
    frame_t spoof = { .type = FRAME_RAFT, .group = 1 };
    spoof.msg = (raft_msg_t){ .type = RAFT_MSG_HEARTBEAT, .from = 10, .to = 30, .term = 9 };
    CHECK_EQ(raw_send_frame(fd, &spoof), 0);
    CHECK(pump(n, 3, fd_closed, &fd, 3000));
    close(fd);
    CHECK(log_has("protocol error: Raft message from 10 to 30"));
    /* 4. a frame before the HELLO */
    fd = raw_connect(n[2]);
    CHECK(fd >= 0);
    CHECK_EQ(raw_send_frame(fd, &ping), 0);
    CHECK(pump(n, 3, fd_closed, &fd, 3000));
    close(fd);
    CHECK(log_has("first frame has type 3, not HELLO"));

    /* nothing was delivered from them, and the real peers kept their connections */
    CHECK_EQ(n[2]->nrecv, 0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j)
                CHECK_EQ(send_msg(n[i], n[j], 7, RAFT_MSG_HEARTBEAT, 0, 0), 0);
    for (int i = 0; i < 3; i++) {
        want_t w = { n[i], 2 };
        CHECK(pump(n, 3, got_count, &w, 3000));
        for (int j = 0; j < 3; j++) {
            if (i == j)
                continue;
            CHECK_EQ(transport_peer_stats(n[i]->t, (uint64_t)(j + 1) * 10, &st), 0);
            CHECK_EQ(st.connects, 1);
            CHECK_EQ(st.errors, 0);
        }
    }
    for (int i = 0; i < 3; i++) {
        stop(n[i]);
        free(n[i]);
    }
    CHECK_EQ(count_fds(), fds);
}

static int never(void *arg)
{
    return 0;
}

TEST(hello_incarnation_is_checked)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    log_reset();
    transport_config_t ca = config(a, 1), cb = config(b, 2);
    ca.incarnation = 0xA1;
    cb.incarnation = 0xB1;
    CHECK_EQ(start_cfg(a, &ca), 0);
    CHECK_EQ(start_cfg(b, &cb), 0);
    node_t *ns[] = { a, b };
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK_EQ(transport_expect_incarnation(a->t, 2, 0xB1), 0);   /* the record's: passes */
    CHECK_EQ(transport_expect_incarnation(a->t, 9, 0xB1), -QERR_NOTFOUND);
    CHECK(connect_all(ns, 2));
    transport_peer_stats_t st;
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    CHECK_EQ(st.incarnation, 0xB1);
    CHECK_EQ(transport_peer_stats(b->t, 1, &st), 0);
    CHECK_EQ(st.incarnation, 0xA1);
    /* the record knows b by another incarnation: the connection up is closed, and every
     * redial of a (the lower id) is refused at b's HELLO, logged once as a warning */
    CHECK_EQ(transport_expect_incarnation(a->t, 2, 0xB0), 0);
    CHECK(!transport_connected(a->t, 2));
    pump(ns, 2, never, NULL, 600);
    CHECK(!transport_connected(a->t, 2));   /* (b may see a up a moment before a closes) */
    CHECK(log_has("refused: node 2 has a new data directory (incarnation 00000000000000b1, "
                  "the member record has 00000000000000b0)"));
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    CHECK(st.refused_incarnations >= 2 && st.refused_incarnation_now);
    /* on the inbound side too: b expects another a */
    CHECK_EQ(transport_expect_incarnation(a->t, 2, 0xB1), 0);
    CHECK_EQ(transport_expect_incarnation(b->t, 1, 0xA0), 0);
    pump(ns, 2, never, NULL, 600);
    CHECK(!transport_connected(b->t, 1));
    CHECK(log_has("refused: node 1 has a new data directory"));
    /* expecting any (0: a member re-added) lets them connect again */
    CHECK_EQ(transport_expect_incarnation(b->t, 1, 0), 0);
    CHECK(connect_all(ns, 2));
    CHECK_EQ(transport_peer_stats(b->t, 1, &st), 0);
    CHECK(st.refused_incarnations >= 1 && !st.refused_incarnation_now);
    stop(a);
    stop(b);
    free(a);
    free(b);
    CHECK_EQ(count_fds(), fds);
}

TEST(wrong_cluster_or_identity_is_refused)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *x = malloc(sizeof *x), *y = malloc(sizeof *y);
    log_reset();
    CHECK_EQ(start(a, 1), 0);
    transport_config_t cx = config(x, 2);
    cx.cluster_id = 0xBEEF;
    CHECK_EQ(start_cfg(x, &cx), 0);
    CHECK_EQ(start(y, 3), 0);
    /* a dials x, of another cluster: both ends refuse */
    CHECK_EQ(add_peer(a, x), 0);
    CHECK_EQ(add_peer(x, a), 0);
    /* a believes node 4 lives where y (node 3) listens */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", transport_port(y->t));
    CHECK_EQ(transport_add_peer(a->t, 4, addr), 0);
    CHECK_EQ(add_peer(y, a), 0);
    node_t *ns[] = { a, x, y };
    pump(ns, 3, never, NULL, 400);
    CHECK(!transport_connected(a->t, 2) && !transport_connected(x->t, 1));
    CHECK(!transport_connected(a->t, 4));
    CHECK(log_has("node 2: closing inbound connection from 127.0.0.1:"));
    CHECK(log_has("refused: node 1 is in cluster 0xabcd, this node in cluster 0xbeef"));
    CHECK(log_has("refused: node 2 is in cluster 0xbeef, this node in cluster 0xabcd"));
    CHECK(log_has("refused: the node at this address says it is node 3"));
    CHECK(transport_refused(x->t) >= 1);
    transport_peer_stats_t st;
    CHECK_EQ(transport_peer_stats(a->t, 2, &st), 0);
    CHECK(st.dial_failures >= 2 && st.errors >= 2 && st.connects == 0);

    /* unknown ids, a higher id that should wait to be dialed, no common version */
    const struct { uint64_t id; uint32_t pmin, pmax; const char *why; } hs[] = {
        { 9, 1, 1, "refused: unknown node id 9" },
        { 2, 1, 1, "refused: node 2 has a higher id than this node" },
        { 3, 2, 5, "refused: node 3 speaks protocol versions 2..5, this node 1" },
    };
    CHECK_EQ(add_peer(a, y), 0); /* node 3 is now known to a */
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        uint64_t before = transport_refused(a->t);
        int fd = raw_connect(a);
        CHECK(fd >= 0);
        CHECK_EQ(raw_hello(fd, hs[i].id, 0xABCD, hs[i].pmin, hs[i].pmax), 0);
        node_t *only_a[] = { a };
        CHECK(pump(only_a, 1, fd_closed, &fd, 3000));
        close(fd);
        CHECK(log_has(hs[i].why));
        CHECK_EQ(transport_refused(a->t), before + 1);
    }
    stop(a);
    stop(x);
    stop(y);
    free(a);
    free(x);
    free(y);
    CHECK_EQ(count_fds(), fds);
}

TEST(silent_connections_time_out)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a);
    log_reset();
    transport_config_t ca = config(a, 1);
    ca.idle_timeout_ms = 300;
    ca.ping_ms = 100;
    CHECK_EQ(start_cfg(a, &ca), 0);
    CHECK_EQ(transport_add_peer(a->t, 0, "127.0.0.1:1"), -QERR_INVAL);
    CHECK_EQ(transport_add_peer(a->t, 0x7, "127.0.0.1:1"), 0); /* dialed, refused: fine */
    node_t *ns[] = { a };
    /* no HELLO at all */
    int fd = raw_connect(a);
    CHECK(fd >= 0);
    uint64_t t0 = ms_now();
    CHECK(pump(ns, 1, fd_closed, &fd, 3000));
    uint64_t waited = ms_now() - t0;
    close(fd);
    CHECK(waited >= 250 && waited < 1500);
    CHECK(log_has("no HELLO within 300 ms"));
    /* a HELLO, then silence (no PING answered, none sent) */
    CHECK_EQ(transport_remove_peer(a->t, 7), 0);
    stop(a);
    ca.id = 9; /* a higher id than the raw peer's, so it may dial in */
    CHECK_EQ(start_cfg(a, &ca), 0);
    CHECK_EQ(transport_add_peer(a->t, 7, "127.0.0.1:1"), 0);
    fd = raw_connect(a);
    CHECK(fd >= 0);
    CHECK_EQ(raw_hello(fd, 7, 0xABCD, 1, 1), 0);
    t0 = ms_now();
    CHECK(pump(ns, 1, fd_closed, &fd, 3000));
    waited = ms_now() - t0;
    close(fd);
    CHECK(waited >= 250 && waited < 1500);
    CHECK(log_has("closing peer 7 (inbound from 127.0.0.1:"));
    CHECK(log_has("silent for 3"));
    stop(a);
    free(a);
    CHECK_EQ(count_fds(), fds);
}

TEST(blocked_receiver_queue_bound_holds)
{
    int fds = count_fds();
    node_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    log_reset();
    const size_t bound = 1 << 20;
    transport_config_t ca = config(a, 1);
    ca.max_queue_bytes = bound;
    ca.max_frame = 128 * 1024;
    ca.idle_timeout_ms = 20000; /* b is silent while blocked */
    CHECK_EQ(start_cfg(a, &ca), 0);
    transport_config_t cb = config(b, 2);
    cb.idle_timeout_ms = 20000;
    CHECK_EQ(start_cfg(b, &cb), 0);
    node_t *ns[] = { a, b };
    CHECK_EQ(mesh(ns, 2), 0);
    CHECK(connect_all(ns, 2));
    /* b stops reading: a's sends fill the sockets, then its queue, then are refused */
    uint64_t seq = 0, accepted = 0, busy = 0;
    size_t max_queued = 0;
    transport_peer_stats_t st;
    for (int i = 0; i < 4000 && busy < 100; i++) {
        int rc = send_msg(a, b, 3, RAFT_MSG_SNAPSHOT, seq, 60000);
        if (rc == 0) {
            accepted++;
            seq++;
        } else {
            CHECK_EQ(rc, -QERR_BUSY);
            busy++;
        }
        transport_poll(a->t, 0);
        transport_peer_stats(a->t, 2, &st);
        if (st.queued_bytes > max_queued)
            max_queued = st.queued_bytes;
    }
    printf("# %" PRIu64 " messages of 60000 bytes accepted, %" PRIu64 " refused, queue peak "
           "%zu bytes\n", accepted, busy, max_queued);
    CHECK_EQ(busy, 100);
    CHECK(max_queued <= bound);
    CHECK(max_queued > bound - 70000); /* the bound, not the sockets, refused them */
    CHECK_EQ(st.dropped, 100);
    CHECK(transport_connected(a->t, 2));
    /* b reads again: exactly the accepted messages arrive, in order */
    want_t w = { b, accepted };
    CHECK(pump(ns, 2, got_count, &w, 10000));
    CHECK_EQ(b->nrecv, accepted);
    CHECK_EQ(b->bad, 0);
    for (size_t i = 0; i < b->nrecv; i++)
        CHECK_EQ(b->recv[i].ctx, i);
    CHECK(pump(ns, 2, NULL, NULL, 50));
    CHECK_EQ(b->nrecv, accepted);
    transport_peer_stats(a->t, 2, &st);
    CHECK_EQ(st.queued_bytes, 0);
    CHECK_EQ(send_msg(a, b, 3, RAFT_MSG_SNAPSHOT, seq, 60000), 0);
    stop(a);
    stop(b);
    free(a);
    free(b);
    CHECK_EQ(count_fds(), fds);
}

int main(void)
{
    RUN(backoff_is_exponential_capped_and_jittered);
    RUN(send_refusals);
    RUN(two_nodes_many_groups);
    RUN(three_nodes_full_mesh);
    RUN(peer_that_returns_is_redialed_with_backoff);
    RUN(garbage_closes_only_its_connection);
    RUN(hello_incarnation_is_checked);
    RUN(wrong_cluster_or_identity_is_refused);
    RUN(silent_connections_time_out);
    RUN(blocked_receiver_queue_bound_holds);
    if (CHECK_DONE() || getenv("TRANSPORT_LOG"))
        printf("# transport log of the last case:\n%s", logbuf);
    return CHECK_DONE();
}
