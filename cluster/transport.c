/* cluster/transport.c — the TCP transport of cluster/transport.h: one epoll set, a listener,
 * one connection per peer (the lower id dials), frames from cluster/frame.c, a byte queue per
 * connection bounded by max_queue_bytes, redial with jittered exponential backoff, PING/PONG
 * for RTT and liveness, and optionally mutual TLS (OpenSSL, non-blocking handshakes in the same
 * loop). Single-threaded: everything runs inside the owner's calls. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/transport.h"

#define MAX_PENDING 64               /* inbound connections not yet past their HELLO (or
                                        waiting for an admin answer) */
#define READ_CHUNK (64 * 1024)       /* bytes per recv() */
#define READ_BUDGET (4 * READ_CHUNK) /* bytes read from one connection per event, for fairness */
#define TLS_READ_AHEAD READ_CHUNK    /* TLS: ciphertext bytes per recv() (struct conn cin) */
#define KEEP_OUT_BYTES (256 * 1024)  /* an emptied send buffer larger than this is released */
#define MAX_EVENTS 64
#define ACCEPT_PAUSE_MS 100          /* accept() failing for lack of fds pauses accepting */

/* A connection's life: TCP connect (dialed only), TLS handshake (with TLS only), HELLO, up.
 * An inbound one whose first frame is a status request goes from C_HELLO to C_STATUS instead:
 * it writes its answer, then closes. One whose first frame is an admin request goes to
 * C_ADMIN (waiting for the owner's answer, reading only to notice the client leave), then to
 * C_ADMIN_OUT (writing the answer), then closes. */
enum { C_CONNECTING = 1, C_TLS, C_HELLO, C_UP, C_STATUS, C_ADMIN, C_ADMIN_OUT, C_DEAD };

struct conn;

/* The I/O of one connection, plain TCP (tcp_io) or a TLS session (tls_io). send and recv
 * return bytes done, or -1 with errno (EAGAIN/EWOULDBLOCK: try when the fd is ready again;
 * a TLS session says which readiness in read_needs_out/write_needs_in, and describes a
 * failure errno cannot in ioerr); recv returns 0 at end of stream. close releases the
 * session and the fd. */
struct conn_io {
    ssize_t (*send)(struct conn *c, const void *buf, size_t len);
    ssize_t (*recv)(struct conn *c, void *buf, size_t len);
    void (*close)(struct conn *c);
};

typedef struct peer peer_t;

typedef struct conn {
    transport_t *t;
    int fd;
    const struct conn_io *io;
    peer_t *peer;             /* outbound: the peer dialed; inbound: NULL until its HELLO */
    bool outbound;
    int state;                /* C_* */
    frame_decoder_t *dec;
    uint8_t *out;             /* send queue: encoded frames in out[head..tail) */
    size_t head, tail, cap;
    uint64_t opened_ms, last_rx_ms, next_ping_ms;
    uint32_t events;          /* epoll interest now registered */
    char addr[64];            /* remote address, for logs */
    struct conn *prev, *next; /* in t->conns, or in t->dead once closed */
    SSL *ssl;                 /* the TLS session, or NULL on plain TCP */
    bool tls_fatal;           /* the session failed: no close_notify */
    bool read_needs_out;      /* the last handshake step or recv waits for writability */
    bool write_needs_in;      /* the last send waits for readability */
    bool got_bytes;           /* the first bytes were seen (for the wrong-protocol checks) */
    bool rx_hold;             /* TLS: conn_read is finishing the records read already; the
                                 socket BIO reads nothing more from the socket meanwhile */
    uint8_t *cin;             /* TLS: ciphertext read ahead, cin[cin_off..cin_len), allocated
                                 (TLS_READ_AHEAD bytes) only while it holds bytes */
    uint32_t cin_off, cin_len;
    char ioerr[160];          /* why the last send/recv failed, when errno cannot say */
    char verr[200];           /* the first certificate verification refused, and why */
    uint64_t want_id;         /* TLS, dialed: the node whose name the certificate must carry */
    size_t status_len;        /* C_STATUS: bytes of status text in the answer (for the log) */
    uint64_t admin_token;     /* C_ADMIN: the request's token */
    uint64_t admin_deadline_ms; /* C_ADMIN: when the transport answers -ETIMEDOUT itself */
    int32_t admin_code;       /* C_ADMIN_OUT: the answer's code and text length (for the log) */
    size_t admin_len;
} conn_t;

struct peer {
    uint64_t id;
    struct sockaddr_storage sa;
    socklen_t salen;
    char addr[64];
    bool dialer;              /* this node dials the peer (this node's id is lower) */
    conn_t *conn;             /* current connection (any state but dead), or NULL */
    uint32_t attempt;         /* redials since the last handshake (the backoff exponent) */
    uint32_t fails;           /* dials failed in a row (for the log) */
    uint64_t next_dial_ms;
    uint64_t expect_inc;      /* the incarnation its HELLO must carry; 0: any */
    uint64_t refused_inc;     /* the last incarnation refused (logged once each) */
    transport_peer_stats_t st;
};

struct transport {
    transport_config_t cfg;
    char *listen;
    int epfd, lfd;
    uint16_t port;
    peer_t **peers;
    size_t npeers;
    conn_t *conns, *dead;
    size_t npending;
    uint64_t rng;
    uint64_t refused;
    /* the last REFUSAL_LOG_SLOTS distinct refusal reasons logged, and when: the same refusal
     * again within REFUSAL_LOG_MS is counted instead of logged (a removed member, or a
     * misconfigured one, redials every few hundred ms for as long as it runs) */
    struct refusal_log {
        char why[96];
        uint64_t ms;
        uint64_t quiet;        /* not logged since */
    } refusal_log[8];
    uint64_t status_queries;   /* answered */
    uint64_t admin_requests;   /* received well-formed */
    uint64_t next_token;       /* the last admin token given */
    uint64_t accept_retry_ms;  /* nonzero: accepting paused (out of fds) until then */
    bool in_callback;
    int delivered;
    SSL_CTX *tls;              /* NULL: plain TCP; replaced by a successful reload (open
                                  sessions hold their own reference to the one they use) */
    char *tls_path[3];         /* certificate, key, CA bundle: read again at each reload */
    unsigned reload_seen;      /* the reload requests already acted on */
    BIO_METHOD *bio_meth;      /* the socket BIO of TLS sessions (sends with MSG_NOSIGNAL) */
    uint8_t rbuf[READ_CHUNK];
};

/* The HELLO this node sends: version 1 speaks only version 1. */
static frame_hello_t my_hello(const transport_t *t)
{
    return (frame_hello_t){ .node_id = t->cfg.id, .cluster_id = t->cfg.cluster_id,
                            .proto_min = FRAME_VERSION, .proto_max = FRAME_VERSION,
                            .incarnation = t->cfg.incarnation };
}

/* ---- small helpers ------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void tlog(const transport_t *t, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tlog(const transport_t *t, int level, const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof line, "node %" PRIu64 ": ", t->cfg.id);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (t->cfg.log)
        t->cfg.log(t->cfg.log_ctx, level, line);
    else
        fprintf(stderr, "quorumfs: transport: %s\n", line);
}

uint32_t transport_backoff_ms(uint32_t min_ms, uint32_t max_ms, uint32_t attempt, uint64_t rnd)
{
    ASSERT(min_ms >= 1 && min_ms <= max_ms);
    uint64_t delay = max_ms;
    if (attempt < 32 && ((uint64_t)min_ms << attempt) < max_ms)
        delay = (uint64_t)min_ms << attempt;
    uint64_t lo = delay / 2;
    return (uint32_t)(lo + rnd % (delay - lo + 1));
}

/* Splits "HOST:PORT" / "[V6]:PORT" and resolves it. passive: an empty host or "*" means any
 * address. Returns 0, or -QERR_INVAL with *errmsg. */
static int resolve(const char *spec, bool passive, struct sockaddr_storage *sa, socklen_t *len,
                   char **errmsg)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || !colon[1] || (size_t)(colon - spec) >= sizeof host) {
        qerr_set_msg(errmsg, "address \"%s\" is not HOST:PORT", spec);
        return -QERR_INVAL;
    }
    size_t hl = (size_t)(colon - spec);
    memcpy(host, spec, hl);
    host[hl] = 0;
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        h = host + 1;
    }
    if (!*h || strcmp(h, "*") == 0)
        h = NULL;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(h, colon + 1, &hints, &res);
    if (rc != 0 || !res) {
        qerr_set_msg(errmsg, "cannot resolve \"%s\": %s", spec, gai_strerror(rc));
        return -QERR_INVAL;
    }
    ASSERT(res->ai_addrlen <= sizeof *sa);
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
    char h[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, h, sizeof h);
        port = ntohs(a->sin_port);
        snprintf(buf, cap, "%s:%u", h, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof h);
        port = ntohs(a->sin6_port);
        snprintf(buf, cap, "[%s]:%u", h, port);
    } else {
        snprintf(buf, cap, "?");
    }
}

static peer_t *find_peer(const transport_t *t, uint64_t id)
{
    for (size_t i = 0; i < t->npeers; i++)
        if (t->peers[i]->id == id)
            return t->peers[i];
    return NULL;
}

/* ---- plain TCP: the first conn_io ---------------------------------------------------- */

static ssize_t tcp_send(conn_t *c, const void *buf, size_t len)
{
    return send(c->fd, buf, len, MSG_NOSIGNAL);
}

static ssize_t tcp_recv(conn_t *c, void *buf, size_t len)
{
    return recv(c->fd, buf, len, 0);
}

static void tcp_close(conn_t *c)
{
    close(c->fd);
    c->fd = -1;
}

static const struct conn_io tcp_io = { tcp_send, tcp_recv, tcp_close };

/* ---- TLS: the second conn_io --------------------------------------------------------- */

/* The subject CN a node's certificate must have: quorumfs-<id>. */
static void node_name(uint64_t id, char *buf, size_t cap)
{
    snprintf(buf, cap, "quorumfs-%" PRIu64, id);
}

#define CLIENT_NAME "quorumfs-client" /* the subject CN of a status client's certificate */

/* Copies the one subject CN of cert into buf (NUL-terminated) and returns true; false when
 * the subject has no CN, more than one, one holding a NUL byte, or one of cap bytes or more. */
static bool one_cn(const X509 *cert, char *buf, size_t cap)
{
    const X509_NAME *subj = X509_get_subject_name(cert);
    int i = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    if (i < 0 || X509_NAME_get_index_by_NID(subj, NID_commonName, i) >= 0)
        return false;
    const ASN1_STRING *a = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
    int len = a ? ASN1_STRING_length(a) : -1;
    if (len < 0 || (size_t)len >= cap || memchr(ASN1_STRING_get0_data(a), 0, (size_t)len))
        return false;
    memcpy(buf, ASN1_STRING_get0_data(a), (size_t)len);
    buf[len] = 0;
    return true;
}

int transport_cert_identity(const struct x509_st *cert, uint64_t *id)
{
    char cn[32];
    *id = 0;
    if (!cert || !one_cn(cert, cn, sizeof cn))
        return TRANSPORT_CERT_OTHER;
    if (strcmp(cn, CLIENT_NAME) == 0)
        return TRANSPORT_CERT_CLIENT;
    const char *d = cn + 9;
    if (strncmp(cn, "quorumfs-", 9) != 0 || *d < '1' || *d > '9')
        return TRANSPORT_CERT_OTHER;
    uint64_t v = 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9')
            return TRANSPORT_CERT_OTHER;
        unsigned k = (unsigned)(*d - '0');
        if (v > (UINT64_MAX - k) / 10)
            return TRANSPORT_CERT_OTHER;
        v = v * 10 + k;
    }
    *id = v;
    return TRANSPORT_CERT_NODE;
}

/* True iff cert names node id (its one subject CN is quorumfs-<id>). */
static bool cert_names_node(const X509 *cert, uint64_t id)
{
    uint64_t got;
    return transport_cert_identity(cert, &got) == TRANSPORT_CERT_NODE && got == id;
}

static void subject_of(const X509 *cert, char *buf, size_t cap)
{
    snprintf(buf, cap, "?");
    if (cert)
        X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)cap);
}

/* OpenSSL's first queued error as text ("certificate verify failed"), or fallback; empties
 * this thread's error queue. */
static void tls_errstr(char *buf, size_t cap, const char *fallback)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(buf, cap, "%s", r);
    else if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "%s", fallback);
    ERR_clear_error();
}

/* The socket BIO of TLS sessions: OpenSSL's own writes with write(2), which raises SIGPIPE
 * on a connection the peer reset; this one sends with MSG_NOSIGNAL like tcp_send. Its data is
 * the conn (whose fd it reads and writes). It reads ahead: one recv() of up to
 * TLS_READ_AHEAD bytes into c->cin, from which OpenSSL's reads (a record's 5-byte header,
 * then its body) are served, so many records come in per syscall. (OpenSSL's own read-ahead,
 * SSL_set_read_ahead, was tried first: OpenSSL 3.0 moves buffered bytes to the front of its
 * buffer as it goes, and it took 20-30% more CPU per 64 KiB message than no read-ahead at
 * all; this buffer costs one memcpy per byte: docs/bench-tls-20261203.txt.) */
static int bio_write(BIO *b, const char *buf, int len)
{
    conn_t *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = send(c->fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    conn_t *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (c->cin_off == c->cin_len) {
        if (c->rx_hold) { /* as if the socket were empty: see tls_recv */
            BIO_set_retry_read(b);
            errno = EAGAIN;
            return -1;
        }
        if (!c->cin && !(c->cin = malloc(TLS_READ_AHEAD))) {
            errno = ENOMEM;
            return -1;
        }
        ssize_t n = recv(c->fd, c->cin, TLS_READ_AHEAD, 0);
        if (n <= 0) {
            int e = errno;
            free(c->cin);
            c->cin = NULL;
            errno = e;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                BIO_set_retry_read(b);
            return (int)n;
        }
        c->cin_off = 0;
        c->cin_len = (uint32_t)n;
    }
    uint32_t k = c->cin_len - c->cin_off;
    if (k > (uint32_t)len)
        k = (uint32_t)len;
    memcpy(buf, c->cin + c->cin_off, k);
    c->cin_off += k;
    if (c->cin_off == c->cin_len) { /* emptied: give the buffer back */
        free(c->cin);
        c->cin = NULL;
        c->cin_off = c->cin_len = 0;
    }
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH; /* nothing is buffered here; other controls unsupported */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* A failed SSL_read/SSL_write/SSL_do_handshake (ret <= 0; err: errno right after it), as the
 * conn_io contract wants it: -1 with errno EAGAIN and the readiness it waits for, 0 for a
 * closed session (reading), or -1 with errno and c->ioerr describing the failure. */
static ssize_t tls_fail(conn_t *c, int ret, int err, bool writing)
{
    switch (SSL_get_error(c->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        if (writing)
            c->write_needs_in = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (!writing)
            c->read_needs_out = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN: /* close_notify, or end of stream (IGNORE_UNEXPECTED_EOF) */
        ERR_clear_error();
        if (!writing)
            return 0;
        errno = EPIPE;
        return -1;
    case SSL_ERROR_SYSCALL:
        c->tls_fatal = true;
        ERR_clear_error();
        errno = err ? err : ECONNRESET;
        return -1;
    default:
        c->tls_fatal = true;
        snprintf(c->ioerr, sizeof c->ioerr, "TLS: ");
        tls_errstr(c->ioerr + 5, sizeof c->ioerr - 5, "unknown TLS error");
        errno = EPROTO;
        return -1;
    }
}

static ssize_t tls_send(conn_t *c, const void *buf, size_t len)
{
    c->write_needs_in = false;
    ERR_clear_error();
    int n = SSL_write(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    return tls_fail(c, n, errno, true);
}

/* Reading a TLS session: the socket BIO reads ahead (bio_read: one recv() of up to
 * TLS_READ_AHEAD bytes of ciphertext into c->cin, so many small records come in per
 * syscall, not two syscalls per record), and each SSL_read decrypts one record, whose
 * plaintext (16 KiB at most) fits the read buffer whole. Bytes in c->cin, and a record
 * OpenSSL has partly read, are invisible to epoll, so conn_read keeps this contract: it
 * returns only (a) after SSL_read said WANT_READ with the BIO's buffer empty and the
 * socket saying EAGAIN (with SSL_MODE_AUTO_RETRY, SSL_read says WANT_READ only when it
 * needs bytes the BIO does not have), or (b) once its budget is spent, after draining with
 * rx_hold set: every complete record left in c->cin is read and handled, and the BIO
 * refuses to touch the socket, so the drain ends at WANT_READ with c->cin empty. Either
 * way what is left is at most the first part of one record inside OpenSSL, whose rest is
 * still to come through the socket, where (level-triggered) epoll sees it: a record is
 * never complete inside the process while the connection waits for readiness. Only
 * SSL_read and SSL_do_handshake read from the BIO (tls_handshake calls conn_read once done);
 * SSL_write does not after the handshake (TLS 1.3, no renegotiation, no post-handshake
 * authentication). */
_Static_assert(READ_CHUNK >= SSL3_RT_MAX_PLAIN_LENGTH, "a TLS record's plaintext fits the "
               "read buffer: one SSL_read takes a whole record");
_Static_assert(TLS_READ_AHEAD >= 2 * SSL3_RT_MAX_PACKET_SIZE, "one recv() brings in several "
               "records");
_Static_assert(READ_BUDGET >= 2 * TLS_READ_AHEAD, "over TLS, conn_read reads the socket until "
               "TLS_READ_AHEAD of its budget is left, then drains what was read");

static ssize_t tls_recv(conn_t *c, void *buf, size_t len)
{
    c->read_needs_out = false;
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    return tls_fail(c, n, errno, false);
}

static void tls_close(conn_t *c)
{
    ERR_clear_error();
    if (SSL_is_init_finished(c->ssl) && !c->tls_fatal)
        (void)SSL_shutdown(c->ssl); /* one try at a close_notify; never waits */
    SSL_free(c->ssl);               /* and its BIO */
    ERR_clear_error();
    c->ssl = NULL;
    free(c->cin);
    c->cin = NULL;
    c->cin_off = c->cin_len = 0;
    close(c->fd);
    c->fd = -1;
}

static const struct conn_io tls_io = { tls_send, tls_recv, tls_close };

/* Verification callback: a dialed peer's own certificate (depth 0), once its chain verified,
 * must also name the node dialed; keeps the first refusal of a connection's handshake (which
 * certificate, and why) for its log line; the refusal itself stands. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    conn_t *c = ssl ? SSL_get_app_data(ssl) : NULL;
    if (ok) {
        if (!c || !c->want_id || X509_STORE_CTX_get_error_depth(x) != 0)
            return 1;
        X509 *cert = X509_STORE_CTX_get_current_cert(x);
        if (cert && cert_names_node(cert, c->want_id))
            return 1;
        X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
        if (!c->verr[0]) {
            char subj[80], want[32];
            subject_of(cert, subj, sizeof subj);
            node_name(c->want_id, want, sizeof want);
            snprintf(c->verr, sizeof c->verr, "certificate %s does not name node %" PRIu64
                     ": its subject CN must be %s", subj, c->want_id, want);
        }
        return 0;
    }
    if (!c || c->verr[0])
        return 0;
    X509 *cert = X509_STORE_CTX_get0_cert(x); /* the peer's own, whichever link failed */
    char subj[80] = "?", iss[80] = "?";
    if (cert) {
        X509_NAME_oneline(X509_get_subject_name(cert), subj, sizeof subj);
        X509_NAME_oneline(X509_get_issuer_name(cert), iss, sizeof iss);
    }
    snprintf(c->verr, sizeof c->verr, "certificate %s issued by %s: %s", subj, iss,
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
    return 0;
}

/* A passphrase prompt would block the node on its terminal: encrypted keys are refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* A TLS context from the three files: TLS 1.3 only, mutual verification against the CA
 * bundle, and this node's certificate, which must name it. Returns 0 and *out, or
 * -QERR_INVAL / -QERR_NOMEM with *errmsg (naming the file and OpenSSL's reason; no prefix).
 * A certificate that does not verify against the bundle is only logged (see below). */
static int tls_ctx_new(transport_t *t, const char *cert, const char *key, const char *ca,
                       SSL_CTX **out, char **errmsg)
{
    char why[200], name[32], subj[80];
    int rc = -QERR_INVAL;
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *x = SSL_CTX_new(TLS_method());
    if (!x)
        goto nomem;
    if (SSL_CTX_set_min_proto_version(x, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(x, TLS1_3_VERSION) != 1) {
        tls_errstr(why, sizeof why, "not supported by this OpenSSL");
        qerr_set_msg(errmsg, "TLS 1.3: %s", why);
        goto fail;
    }
    /* no renegotiation, no resumption: every connection is fully verified */
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION |
                           SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(x, 0);
    /* the send queue may move (out_reserve) between a write and its retry; idle sessions
       give their buffers back; SSL_read handles non-application records itself (conn_read
       relies on WANT_READ meaning the BIO had nothing more: see tls_recv). The socket BIO
       reads ahead, not OpenSSL (see bio_read). */
    SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                        SSL_MODE_RELEASE_BUFFERS | SSL_MODE_AUTO_RETRY);
    SSL_CTX_set_default_passwd_cb(x, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(x, cert) != 1) {
        tls_errstr(why, sizeof why, "unreadable");
        qerr_set_msg(errmsg, "TLS certificate %s: %s", cert, why);
        goto fail;
    }
    /* (OpenSSL 3 already refuses a key that does not match here; older ones at the check) */
    int loaded = SSL_CTX_use_PrivateKey_file(x, key, SSL_FILETYPE_PEM);
    unsigned long e = loaded == 1 ? 0 : ERR_peek_error();
    if (loaded == 1 ? SSL_CTX_check_private_key(x) != 1
                    : ERR_GET_LIB(e) == ERR_LIB_X509 &&
                      ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        qerr_set_msg(errmsg, "TLS private key %s does not match the certificate %s", key, cert);
        goto fail;
    }
    if (loaded != 1) {
        tls_errstr(why, sizeof why, "unreadable");
        qerr_set_msg(errmsg, "TLS private key %s: %s (the key must be an unencrypted PEM "
                     "file)", key, why);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(x, ca, NULL) != 1) {
        tls_errstr(why, sizeof why, "unreadable");
        qerr_set_msg(errmsg, "TLS CA bundle %s: %s", ca, why);
        goto fail;
    }
    node_name(t->cfg.id, name, sizeof name);
    X509 *own = SSL_CTX_get0_certificate(x);
    subject_of(own, subj, sizeof subj);
    if (!own || !cert_names_node(own, t->cfg.id)) {
        ERR_clear_error();
        qerr_set_msg(errmsg, "TLS certificate %s does not name this node: its subject must have "
                     "the one CN %s (it is %s)", cert, name, subj);
        goto fail;
    }
    SSL_CTX_set_verify(x, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    /* Peers trusting the same bundle would refuse this node's own certificate: say so now
       (a warning only: peers may trust another bundle, during a CA change for example). */
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(x, &chain);
    if (vc && X509_STORE_CTX_init(vc, SSL_CTX_get_cert_store(x), own, chain) == 1 &&
        X509_verify_cert(vc) != 1)
        tlog(t, TRANSPORT_LOG_WARN, "this node's TLS certificate %s does not verify against "
             "the CA bundle %s: %s", cert, ca,
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)));
    X509_STORE_CTX_free(vc);
    ERR_clear_error();
    *out = x;
    return 0;
nomem:
    rc = -QERR_NOMEM;
    qerr_set_msg(errmsg, "cannot set up TLS: out of memory");
fail:
    ERR_clear_error();
    SSL_CTX_free(x);
    return rc;
}

/* Sets up t->tls from cfg's three paths (none: plain TCP, nothing to do) and keeps copies of
 * the paths for reloads. Returns 0, or -QERR_INVAL / -QERR_NOMEM with *errmsg (prefixed
 * "transport: "); what is set on failure is released by transport_free. */
static int tls_setup(transport_t *t, const transport_config_t *cfg, char **errmsg)
{
    int n = !!cfg->tls_cert + !!cfg->tls_key + !!cfg->tls_ca;
    if (n == 0)
        return 0;
    if (n != 3) {
        qerr_set_msg(errmsg, "transport: TLS needs a certificate, a private key and a CA "
                     "bundle together; the %s is missing", !cfg->tls_cert ? "certificate"
                     : !cfg->tls_key ? "private key" : "CA bundle");
        return -QERR_INVAL;
    }
    const char *in[3] = { cfg->tls_cert, cfg->tls_key, cfg->tls_ca };
    for (int i = 0; i < 3; i++)
        if (!(t->tls_path[i] = strdup(in[i])))
            goto nomem;
    int idx = BIO_get_new_index();
    if (idx < 0 || !(t->bio_meth = BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "quorumfs socket")))
        goto nomem;
    BIO_meth_set_write(t->bio_meth, bio_write);
    BIO_meth_set_read(t->bio_meth, bio_read);
    BIO_meth_set_ctrl(t->bio_meth, bio_ctrl);
    BIO_meth_set_create(t->bio_meth, bio_create);
    char *msg = NULL;
    int rc = tls_ctx_new(t, in[0], in[1], in[2], &t->tls, &msg);
    if (rc < 0)
        qerr_set_msg(errmsg, "transport: %s", msg ? msg : qerr_str(rc));
    free(msg);
    return rc;
nomem:
    ERR_clear_error();
    qerr_set_msg(errmsg, "transport: cannot set up TLS: out of memory");
    return -QERR_NOMEM;
}

/* Process-wide count of reload requests (transport_request_tls_reload); each transport acts
 * on a new one in its next transport_poll. An unsigned int is lock-free: async-signal-safe. */
static unsigned tls_reload_requests;

void transport_request_tls_reload(void)
{
    __atomic_add_fetch(&tls_reload_requests, 1, __ATOMIC_RELAXED);
}

int transport_reload_tls(transport_t *t, char **errmsg)
{
    ASSERT(!t->in_callback);
    if (!t->tls) {
        tlog(t, TRANSPORT_LOG_INFO, "TLS reload requested: this node has no TLS configured, "
             "nothing to reload");
        qerr_set_msg(errmsg, "this transport has no TLS configured");
        return -QERR_INVAL;
    }
    SSL_CTX *x = NULL;
    char *msg = NULL;
    int rc = tls_ctx_new(t, t->tls_path[0], t->tls_path[1], t->tls_path[2], &x, &msg);
    if (rc < 0) {
        tlog(t, TRANSPORT_LOG_WARN, "TLS reload failed, the certificates loaded before stay in "
             "use: %s", msg ? msg : qerr_str(rc));
        if (errmsg) {
            *errmsg = msg;
            msg = NULL;
        }
        free(msg);
        return rc;
    }
    SSL_CTX_free(t->tls); /* the sessions of open connections keep their own reference */
    t->tls = x;
    char subj[80];
    subject_of(SSL_CTX_get0_certificate(x), subj, sizeof subj);
    tlog(t, TRANSPORT_LOG_INFO, "TLS reloaded: certificate %s (%s), key %s, CA bundle %s; new "
         "connections use them, open ones keep their session", t->tls_path[0], subj,
         t->tls_path[1], t->tls_path[2]);
    return 0;
}

/* Gives c (just created, fd set) its TLS session: it dials node peer_id (whose certificate
 * must then name it), or accepts (peer_id 0; the name is checked against its HELLO).
 * Returns false when out of memory. */
static bool tls_attach(conn_t *c, uint64_t peer_id)
{
    ERR_clear_error();
    if (!(c->ssl = SSL_new(c->t->tls)))
        goto fail;
    BIO *b = BIO_new(c->t->bio_meth);
    if (!b)
        goto fail;
    BIO_set_data(b, c);
    SSL_set_bio(c->ssl, b, b);
    SSL_set_app_data(c->ssl, c);
    if (peer_id) {
        c->want_id = peer_id; /* checked by verify_cb */
        SSL_set_connect_state(c->ssl);
    } else {
        SSL_set_accept_state(c->ssl);
    }
    c->io = &tls_io;
    return true;
fail:
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
    return false;
}

/* ---- connections --------------------------------------------------------------------- */

static const char *conn_name(const conn_t *c, char *buf, size_t cap)
{
    if (c->peer)
        snprintf(buf, cap, "peer %" PRIu64 " (%s %s)", c->peer->id,
                 c->outbound ? "dialed at" : "inbound from", c->addr);
    else
        snprintf(buf, cap, "inbound connection from %s", c->addr);
    return buf;
}

/* Registers the readiness c waits for: always readable; writable while connecting, while a
 * TLS step waits for it, or while frames are queued (unless the TLS send waits to read). */
static void set_events(conn_t *c)
{
    uint32_t want = EPOLLIN;
    if (c->state == C_STATUS || c->state == C_ADMIN_OUT) /* only the answer's writes: what the
                                                              client sends is ignored */
        want = c->write_needs_in ? EPOLLIN : EPOLLOUT;
    else if (c->state == C_CONNECTING || c->read_needs_out ||
        (c->state != C_DEAD && c->state != C_TLS && c->head < c->tail && !c->write_needs_in))
        want |= EPOLLOUT;
    if (want == c->events)
        return;
    struct epoll_event ev = { .events = want, .data.ptr = c };
    int rc = epoll_ctl(c->t->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    ASSERT_MSG(rc == 0, "epoll_ctl MOD: %s", strerror(errno));
    c->events = want;
}

/* Creates a connection on fd (already nonblocking) to peer_id (dialed) or from anyone
 * (accepted: peer_id 0), and registers it. Its HELLO is queued first, so it is the first
 * frame either way (over TLS, once the handshake is done). state: C_CONNECTING or C_HELLO
 * (which becomes C_TLS on a TLS transport). Returns NULL when out of memory (fd closed). */
static conn_t *conn_new(transport_t *t, int fd, uint64_t peer_id, int state, const char *addr)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c || !(c->dec = frame_decoder_new(t->cfg.max_frame)))
        goto fail;
    c->t = t;
    c->fd = fd;
    c->io = &tcp_io;
    c->outbound = peer_id != 0;
    c->state = t->tls && state == C_HELLO ? C_TLS : state;
    if (t->tls && !tls_attach(c, peer_id))
        goto fail;
    c->opened_ms = c->last_rx_ms = now_ms();
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    frame_t f = { .type = FRAME_HELLO, .hello = my_hello(t) };
    c->cap = frame_encoded_size(&f);
    if (!(c->out = malloc(c->cap)) || frame_encode(&f, c->out, c->cap, &c->tail) != 0)
        goto fail;
    c->events = EPOLLIN | EPOLLOUT;
    struct epoll_event ev = { .events = c->events, .data.ptr = c };
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        goto fail;
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    return c;
fail:
    if (c) {
        SSL_free(c->ssl);
        frame_decoder_free(c->dec);
        free(c->out);
        free(c);
    }
    close(fd);
    return NULL;
}

static void schedule_dial(transport_t *t, peer_t *p)
{
    uint32_t d = transport_backoff_ms(t->cfg.backoff_min_ms, t->cfg.backoff_max_ms, p->attempt,
                                      splitmix64(&t->rng));
    if (p->attempt < UINT32_MAX)
        p->attempt++;
    p->next_dial_ms = now_ms() + d;
}

/* Counts a failed dial of p; logs it after 1, 2, 4, 8... failures in a row. */
static void dial_failed_log(transport_t *t, peer_t *p, int level, const char *why)
{
    p->st.dial_failures++;
    if (p->fails < UINT32_MAX)
        p->fails++;
    if ((p->fails & (p->fails - 1)) == 0)
        tlog(t, level, "peer %" PRIu64 " at %s: %s (%" PRIu32 " failed dial(s) in a row, next "
             "in %" PRIu64 " ms)", p->id, p->addr, why, p->fails, p->next_dial_ms - now_ms());
}

#define REFUSAL_LOG_MS 60000

/* Whether refusal `why` was logged within REFUSAL_LOG_MS (then it is counted, not logged);
 * else it is noted as logged now and *quiet says how many went unlogged before. */
static bool refusal_repeated(transport_t *t, const char *why, uint64_t *quiet)
{
    const size_t n = sizeof(t->refusal_log) / sizeof(t->refusal_log[0]);
    uint64_t now = now_ms();
    size_t slot = 0;
    for (size_t i = 0; i < n; i++) {
        struct refusal_log *r = &t->refusal_log[i];
        if (r->ms && !strncmp(r->why, why, sizeof(r->why) - 1)) {
            if (now - r->ms < REFUSAL_LOG_MS) {
                r->quiet++;
                return true;
            }
            slot = i;
            break;
        }
        if (r->ms < t->refusal_log[slot].ms)
            slot = i;                       /* the oldest (or an empty) slot */
    }
    struct refusal_log *r = &t->refusal_log[slot];
    *quiet = !strncmp(r->why, why, sizeof(r->why) - 1) ? r->quiet : 0;
    size_t l = strnlen(why, sizeof(r->why) - 1);
    memcpy(r->why, why, l);
    r->why[l] = 0;
    r->ms = now;
    r->quiet = 0;
    return false;
}

/* Closes c (once): unregisters it, discards its queue, detaches it from its peer and schedules
 * the peer's redial if this node dials it. protocol_error: count it against the peer (or as a
 * refused inbound connection). c itself is freed later, at the end of transport_poll, so
 * events already fetched for it are skipped safely. */
static void conn_close(conn_t *c, bool protocol_error, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_close(conn_t *c, bool protocol_error, int level, const char *fmt, ...)
{
    if (c->state == C_DEAD)
        return;
    transport_t *t = c->t;
    char why[300], name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    peer_t *p = c->peer;
    int was = c->state;
    uint64_t gone_token = was == C_ADMIN ? c->admin_token : 0;
    /* A dial that fails is logged with its redial below, at growing intervals. */
    bool dial_failed = p && p->dialer && p->conn == c && was != C_UP;
    uint64_t quiet = 0;
    if (!dial_failed && (p || !protocol_error || !refusal_repeated(t, why, &quiet)))
        tlog(t, level, "closing %s: %s%s", conn_name(c, name, sizeof name), why,
             quiet ? " (the same refusal happened more times since it was last logged: each "
                     "is logged at most once a minute)" : "");
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->io->close(c);
    c->state = C_DEAD;
    /* unlink from t->conns, push onto t->dead */
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = t->dead;
    t->dead = c;
    c->peer = NULL;
    if (!p) {
        if (!c->outbound)
            t->npending--;
        if (protocol_error)
            t->refused++;
        if (gone_token && t->cfg.admin_gone) {
            bool was_in = t->in_callback;
            t->in_callback = true;
            t->cfg.admin_gone(t->cfg.admin_ctx, gone_token);
            t->in_callback = was_in;
        }
        return;
    }
    p->st.lost_bytes += c->tail - c->head;
    if (protocol_error)
        p->st.errors++;
    if (p->conn != c)
        return;
    p->conn = NULL;
    p->st.connected = false;
    p->st.tls = false;
    if (!p->dialer)
        return;
    schedule_dial(t, p);
    if (dial_failed)
        dial_failed_log(t, p, level, why);
}

static void reap(transport_t *t)
{
    while (t->dead) {
        conn_t *c = t->dead;
        t->dead = c->next;
        frame_decoder_free(c->dec);
        free(c->out);
        free(c);
    }
}

/* Makes room for n more bytes at the tail of c's queue, never allocating more than
 * max_queue_bytes. Returns 0 or -QERR_NOMEM. */
static int out_reserve(conn_t *c, size_t n)
{
    if (c->cap - c->tail >= n)
        return 0;
    if (c->head > 0) {
        memmove(c->out, c->out + c->head, c->tail - c->head);
        c->tail -= c->head;
        c->head = 0;
        if (c->cap - c->tail >= n)
            return 0;
    }
    /* c->tail + n <= max_queue_bytes here (enqueue checked), so the cap holds the bound */
    size_t cap = c->cap ? c->cap * 2 : 4096;
    if (cap > c->t->cfg.max_queue_bytes)
        cap = c->t->cfg.max_queue_bytes;
    if (cap < c->tail + n)
        cap = c->tail + n;
    uint8_t *b = realloc(c->out, cap);
    if (!b)
        return -QERR_NOMEM;
    c->out = b;
    c->cap = cap;
    return 0;
}

/* Queues frame f on c unless the queue bound would be passed. Returns 0, -QERR_BUSY,
 * -QERR_NOMEM or frame_encode's error (nothing is queued then). */
static int enqueue(conn_t *c, const frame_t *f)
{
    size_t n = frame_encoded_size(f), len;
    if (n - FRAME_HDR_BYTES > c->t->cfg.max_frame)
        return -QERR_TOOBIG;
    if (c->tail - c->head + n > c->t->cfg.max_queue_bytes)
        return -QERR_BUSY;
    int rc = out_reserve(c, n);
    if (rc < 0)
        return rc;
    rc = frame_encode(f, c->out + c->tail, c->cap - c->tail, &len);
    if (rc < 0)
        return rc;
    ASSERT(len == n);
    c->tail += n;
    if (c->peer)
        c->peer->st.frames_out++;
    return 0;
}

/* Writes as much of c's queue as the socket takes (nothing before the TLS handshake is
 * done). May close c. */
static void conn_flush(conn_t *c)
{
    if (c->state == C_DEAD || c->state == C_CONNECTING || c->state == C_TLS)
        return;
    while (c->head < c->tail) {
        ssize_t n = c->io->send(c, c->out + c->head, c->tail - c->head);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close(c, c->ioerr[0] != 0, TRANSPORT_LOG_WARN, "write failed: %s",
                       c->ioerr[0] ? c->ioerr : strerror(errno));
            return;
        }
        c->head += (size_t)n;
        if (c->peer)
            c->peer->st.bytes_out += (uint64_t)n;
    }
    if (c->head == c->tail && c->state == C_ADMIN_OUT) {
        conn_close(c, false, TRANSPORT_LOG_INFO, "admin request answered (code %" PRId32 ", %zu "
                   "bytes of text%s)", c->admin_code, c->admin_len, c->ssl ? ", over TLS" : "");
        return;
    }
    if (c->head == c->tail && c->state == C_STATUS) {
        c->t->status_queries++;
        conn_close(c, false, TRANSPORT_LOG_INFO, "status query answered (%zu bytes of text%s)",
                   c->status_len, c->ssl ? ", over TLS" : "");
        return;
    }
    if (c->head == c->tail) {
        c->head = c->tail = 0;
        if (c->cap > KEEP_OUT_BYTES) {
            free(c->out);
            c->out = NULL;
            c->cap = 0;
        }
    }
    set_events(c);
}

static void became_up(conn_t *c)
{
    peer_t *p = c->peer;
    char name[128];
    c->state = C_UP;
    c->next_ping_ms = now_ms(); /* a first RTT sample right away */
    p->attempt = 0;
    p->fails = 0;
    p->st.connected = true;
    p->st.tls = c->ssl != NULL;
    if (p->st.connects++)
        p->st.reconnects++;
    tlog(c->t, TRANSPORT_LOG_INFO, "connected to %s%s%s", conn_name(c, name, sizeof name),
         c->ssl ? " over " : "", c->ssl ? SSL_get_version(c->ssl) : "");
}

/* Whether the HELLO's incarnation is the one expected of peer p (transport_expect_incarnation):
 * a node whose data directory was replaced lost its Raft state and must not be counted as
 * the member it was. A HELLO without one (0: an older build) passes. Closes c (refused) and
 * returns false if not; the warning is logged once per refused incarnation. */
static bool incarnation_ok(conn_t *c, peer_t *p, const frame_hello_t *h)
{
    if (!p->expect_inc || !h->incarnation || h->incarnation == p->expect_inc)
        return true;
    bool again = p->refused_inc == h->incarnation;
    p->refused_inc = h->incarnation;
    p->st.refused_incarnations++;
    p->st.refused_incarnation_now = true;
    conn_close(c, true, again ? TRANSPORT_LOG_INFO : TRANSPORT_LOG_WARN,
               "refused: node %" PRIu64 " has a new data directory (incarnation %016" PRIx64
               ", the member record has %016" PRIx64 "): it lost its Raft state and cannot "
               "rejoin as the member it was; replace it: quorumfs cluster add a node with an "
               "empty data directory, and quorumfs cluster remove %" PRIu64, h->node_id,
               h->incarnation, p->expect_inc, h->node_id);
    return false;
}

/* Checks the peer's HELLO and, for an inbound connection, attaches it to the peer it names.
 * Returns false if c was closed. */
static bool on_hello(conn_t *c, const frame_hello_t *h)
{
    transport_t *t = c->t;
    if (h->cluster_id != t->cfg.cluster_id) {
        conn_close(c, true, TRANSPORT_LOG_WARN, "refused: node %" PRIu64 " is in cluster %#"
                   PRIx64 ", this node in cluster %#" PRIx64, h->node_id, h->cluster_id,
                   t->cfg.cluster_id);
        return false;
    }
    if (h->proto_min > FRAME_VERSION || h->proto_max < FRAME_VERSION) {
        conn_close(c, true, TRANSPORT_LOG_WARN, "refused: node %" PRIu64 " speaks protocol "
                   "versions %" PRIu32 "..%" PRIu32 ", this node %d", h->node_id, h->proto_min,
                   h->proto_max, FRAME_VERSION);
        return false;
    }
    if (c->outbound) {
        if (h->node_id != c->peer->id) {
            conn_close(c, true, TRANSPORT_LOG_WARN, "refused: the node at this address says "
                       "it is node %" PRIu64, h->node_id);
            return false;
        }
    } else {
        /* (a dialed peer's certificate was checked against its id in the handshake) */
        if (c->ssl) {
            char name[32], subj[80];
            node_name(h->node_id, name, sizeof name);
            X509 *cert = SSL_get0_peer_certificate(c->ssl);
            subject_of(cert, subj, sizeof subj);
            if (!cert || !cert_names_node(cert, h->node_id)) {
                ERR_clear_error();
                conn_close(c, true, TRANSPORT_LOG_WARN, "refused: the peer says it is node %"
                           PRIu64 ", but its TLS certificate %s does not name it (its subject "
                           "CN must be %s)", h->node_id, subj, name);
                return false;
            }
        }
        peer_t *p = find_peer(t, h->node_id);
        if (!p) {
            conn_close(c, true, TRANSPORT_LOG_WARN, "refused: unknown node id %" PRIu64,
                       h->node_id);
            return false;
        }
        if (p->dialer) {
            conn_close(c, true, TRANSPORT_LOG_WARN, "refused: node %" PRIu64 " has a higher id "
                       "than this node, which dials it instead", h->node_id);
            return false;
        }
        if (!incarnation_ok(c, p, h))
            return false;      /* (before the replacement: it must not evict the real one) */
        if (p->conn)
            conn_close(p->conn, false, TRANSPORT_LOG_INFO, "replaced by a new connection "
                       "from the peer");
        t->npending--;
        c->peer = p;
        p->conn = c;
    }
    if (c->outbound && !incarnation_ok(c, c->peer, h))
        return false;
    c->peer->st.frames_in++;
    c->peer->st.incarnation = h->incarnation;
    c->peer->st.refused_incarnation_now = false;
    became_up(c);
    return true;
}

/* With TLS: a status or admin client's certificate must name the client or a node. Returns
 * false if c was closed (refused, logged as a refused `what`). */
static bool client_cert_ok(conn_t *c, const char *what)
{
    if (!c->ssl)
        return true;
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    char subj[80];
    uint64_t id;
    subject_of(cert, subj, sizeof subj);
    if (!cert || transport_cert_identity(cert, &id) == TRANSPORT_CERT_OTHER) {
        ERR_clear_error();
        conn_close(c, true, TRANSPORT_LOG_WARN, "refused %s: its TLS certificate %s names "
                   "neither the client nor a node (its subject CN must be " CLIENT_NAME
                   " or quorumfs-<id>)", what, subj);
        return false;
    }
    return true;
}

/* The bytes of text an answer frame with a head of head bytes may carry on c: at most
 * max_text, and no more than the frame size and c's queue bound leave. */
static size_t answer_room(const conn_t *c, size_t max_text, size_t head)
{
    const transport_t *t = c->t;
    size_t room = max_text;
    size_t in_frame = t->cfg.max_frame, in_queue = t->cfg.max_queue_bytes - (c->tail - c->head);
    in_frame = in_frame > head ? in_frame - head : 0;
    in_queue = in_queue > FRAME_HDR_BYTES + head ? in_queue - FRAME_HDR_BYTES - head : 0;
    if (in_frame < room)
        room = in_frame;
    if (in_queue < room)
        room = in_queue;
    return room;
}

/* Queues the ADMIN answer on c (C_ADMIN) and moves it to C_ADMIN_OUT, where it closes once
 * the answer is written (or after idle_timeout_ms if the client takes nothing). The code and
 * text are made valid as transport_admin_answer says. Returns 0 or -QERR_NOMEM (c closed). */
static int admin_reply(conn_t *c, int32_t code, const char *text, size_t len)
{
    transport_t *t = c->t;
    if (code > 0)
        code = -code;
    if (code < ADMIN_CODE_MIN)
        code = -EIO;
    size_t room = answer_room(c, ADMIN_MAX_TEXT, ADMIN_HEAD_BYTES);
    if (!text)
        len = 0;
    if (len > room) {
        /* cut at a character boundary of the longest valid prefix */
        len = frame_utf8_cut(text, len, room);
    }
    if (!frame_utf8_valid(text, len)) {
        text = "the answer's text is not valid UTF-8\n";
        len = strlen(text);
    }
    frame_t f = { .type = FRAME_ADMIN, .admin = { .version = ADMIN_VERSION, .node_id = t->cfg.id,
                  .code = code, .text = text, .len = len } };
    int rc = enqueue(c, &f);
    if (rc < 0) {
        conn_close(c, false, TRANSPORT_LOG_WARN, "admin request: cannot queue the answer: %s",
                   qerr_str(rc));
        return -QERR_NOMEM;
    }
    c->admin_code = code;
    c->admin_len = len;
    c->admin_token = 0;
    c->state = C_ADMIN_OUT;
    c->opened_ms = now_ms(); /* the idle deadline now bounds the answer's writing */
    conn_flush(c);
    return 0;
}

/* An admin request arrived as the first frame of inbound connection c (docs/TRANSPORT.md
 * "Admin requests"): checks a TLS client's certificate name, counts and logs the request,
 * moves c to C_ADMIN with a new token and hands the request to cfg.admin (or answers it
 * -EOPNOTSUPP without one). Returns false if c was closed. */
static bool on_admin_request(conn_t *c, const frame_admin_t *req)
{
    transport_t *t = c->t;
    if (!client_cert_ok(c, "an admin request"))
        return false;
    t->admin_requests++;
    tlog(t, TRANSPORT_LOG_INFO, "admin request op %" PRIu32 " from %s%s", req->op, c->addr,
         c->ssl ? " over TLS" : "");
    c->state = C_ADMIN;
    c->admin_token = ++t->next_token;
    c->admin_deadline_ms = now_ms() + t->cfg.admin_timeout_ms;
    set_events(c);
    if (!t->cfg.admin) {
        static const char no[] = "not supported by this node";
        admin_reply(c, -EOPNOTSUPP, no, sizeof no - 1);
        return c->state != C_DEAD;
    }
    bool was_in = t->in_callback;
    t->in_callback = true;
    t->cfg.admin(t->cfg.admin_ctx, c->admin_token, req);
    t->in_callback = was_in;
    return c->state != C_DEAD;
}

/* A status request arrived as the first frame of inbound connection c (docs/TRANSPORT.md
 * "Status queries"): checks a TLS client's certificate name, queues one STATUS frame with the
 * published text (after this node's HELLO, queued when c was made) and moves c to C_STATUS,
 * where it closes once the answer is written. Returns false if c was closed. */
static bool on_status_request(conn_t *c)
{
    transport_t *t = c->t;
    if (!client_cert_ok(c, "a status query"))
        return false;
    /* Every request (version >= 1) is answered in version 1, the only one there is. The
       text is cut to fit the frame and queue bounds (the defaults are far above it). */
    size_t room = answer_room(c, STATUS_MAX_TEXT, STATUS_HEAD_BYTES), len = 0;
    char *buf = malloc(room ? room : 1);
    if (!buf) {
        conn_close(c, false, TRANSPORT_LOG_WARN, "status query: out of memory");
        return false;
    }
    uint64_t age = STATUS_AGE_NONE;
    const char *text = buf;
    if (!t->cfg.status || t->cfg.status(t->cfg.status_ctx, buf, room, &len, &age) < 0) {
        text = "no status yet\n";
        len = strlen(text);
        age = STATUS_AGE_NONE;
    } else {
        len = frame_utf8_cut(buf, len < room ? len : room, room);
        if (!frame_utf8_valid(buf, len)) {
            text = "the published status is not valid UTF-8\n";
            len = strlen(text);
        }
    }
    frame_t f = { .type = FRAME_STATUS, .status = { .version = STATUS_VERSION,
                  .node_id = t->cfg.id, .age_ms = age, .text = text, .len = len } };
    int rc = enqueue(c, &f);
    free(buf);
    if (rc < 0) {
        conn_close(c, false, TRANSPORT_LOG_WARN, "status query: cannot queue the answer: %s",
                   qerr_str(rc));
        return false;
    }
    c->status_len = len;
    c->state = C_STATUS;
    conn_flush(c);
    return c->state != C_DEAD;
}

/* Handles one decoded frame. Returns false if c was closed. */
static bool on_frame(conn_t *c, frame_t *f)
{
    transport_t *t = c->t;
    if (c->state == C_ADMIN) {
        conn_close(c, true, TRANSPORT_LOG_WARN, "protocol error: a frame of type %" PRIu32
                   " after the admin request", f->type);
        return false;
    }
    if (c->state != C_UP) {
        if (f->type == FRAME_STATUS_REQ && !c->outbound)
            return on_status_request(c);
        if (f->type == FRAME_ADMIN_REQ && !c->outbound)
            return on_admin_request(c, &f->admin);
        if (f->type != FRAME_HELLO) {
            conn_close(c, true, TRANSPORT_LOG_WARN, "protocol error: first frame has type %"
                       PRIu32 ", not HELLO", f->type);
            return false;
        }
        return on_hello(c, &f->hello);
    }
    peer_t *p = c->peer;
    p->st.frames_in++;
    switch (f->type) {
    case FRAME_RAFT:
        if (f->msg.from != p->id || f->msg.to != t->cfg.id) {
            conn_close(c, true, TRANSPORT_LOG_WARN, "protocol error: Raft message from %"
                       PRIu64 " to %" PRIu64 " on this connection", f->msg.from, f->msg.to);
            return false;
        }
        p->st.msgs_in++;
        t->delivered++;
        t->in_callback = true;
        t->cfg.deliver(t->cfg.deliver_ctx, p->id, f->group, &f->msg);
        t->in_callback = false;
        return true;
    case FRAME_FWD:
        p->st.fwd_in++;
        if (t->cfg.deliver_fwd) {
            t->in_callback = true;
            t->cfg.deliver_fwd(t->cfg.deliver_ctx, p->id, &f->fwd);
            t->in_callback = false;
        }
        return true;
    case FRAME_PING: {
        frame_t pong = { .type = FRAME_PONG, .ping = f->ping };
        (void)enqueue(c, &pong); /* a full queue skips the answer: one RTT sample less */
        return true;
    }
    case FRAME_PONG: {
        uint64_t now = now_us();
        if (f->ping <= now)
            p->st.rtt_us = (int64_t)(now - f->ping);
        return true;
    }
    case FRAME_HELLO:
        conn_close(c, true, TRANSPORT_LOG_WARN, "protocol error: a second HELLO");
        return false;
    default: /* STATUS_REQ, STATUS, ADMIN_REQ, ADMIN: only a client's first frame and the
                answer to it */
        conn_close(c, true, TRANSPORT_LOG_WARN, "protocol error: frame type %" PRIu32 " on a "
                   "peer connection", f->type);
        return false;
    }
}

/* Reads what c has, up to about READ_BUDGET bytes, and handles its frames; over TLS, also
 * every record complete in what the socket BIO read ahead once the budget is spent (the
 * contract above tls_recv), all within READ_BUDGET + READ_CHUNK bytes, what plain TCP may
 * take. The rest stays in the socket for the next readiness event. May close c. */
static void conn_read_budget(conn_t *c)
{
    size_t budget = READ_BUDGET;
    while (c->state != C_DEAD) {
        /* Plain: stop at the budget. TLS: stop reading the socket when the budget left may
           not cover a full read-ahead buffer, then finish what was read (at most
           TLS_READ_AHEAD of ciphertext in c->cin and the rest of one record in OpenSSL). */
        if (!c->ssl ? budget == 0 : budget < TLS_READ_AHEAD) {
            if (!c->ssl || (c->cin_off == c->cin_len && !SSL_has_pending(c->ssl)))
                return;
            c->rx_hold = true;
        }
        ssize_t n = c->io->recv(c, c->t->rbuf, sizeof c->t->rbuf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_close(c, c->ioerr[0] != 0, TRANSPORT_LOG_WARN, "read failed: %s",
                           c->ioerr[0] ? c->ioerr : strerror(errno));
            else
                set_events(c); /* a TLS read may wait for writability */
            return;
        }
        if (n == 0) {
            conn_close(c, false, TRANSPORT_LOG_INFO, "closed by the other end");
            return;
        }
        /* TLS records (0x16 handshake, 0x15 alert, then version 3.x) where a HELLO belongs */
        if (!c->got_bytes && !c->ssl && c->state == C_HELLO && n >= 2 &&
            (c->t->rbuf[0] == 0x16 || c->t->rbuf[0] == 0x15) && c->t->rbuf[1] == 0x03) {
            conn_close(c, true, TRANSPORT_LOG_WARN, "refused: the peer speaks TLS, and this "
                       "node has no TLS configured");
            return;
        }
        c->got_bytes = true;
        c->last_rx_ms = now_ms();
        budget -= (size_t)n < budget ? (size_t)n : budget;
        size_t off = 0;
        while (off < (size_t)n) {
            frame_t f;
            size_t used;
            int rc = frame_decoder_feed(c->dec, c->t->rbuf + off, (size_t)n - off, &used, &f);
            off += used;
            if (rc < 0) {
                conn_close(c, true, TRANSPORT_LOG_WARN, "malformed input: %s",
                           frame_decoder_error(c->dec));
                return;
            }
            if (rc == 0)
                break;
            bool alive = on_frame(c, &f);
            frame_free(&f);
            if (!alive || c->state == C_STATUS || c->state == C_ADMIN_OUT)
                return; /* a status or answered admin client's further bytes: ignored */
        }
        if (c->peer)
            c->peer->st.bytes_in += (uint64_t)n;
    }
}

static void conn_read(conn_t *c)
{
    conn_read_budget(c);
    c->rx_hold = false; /* (c stays allocated until reap, also when closed) */
}

/* One step of c's TLS handshake (C_TLS), on any readiness of its fd. Done: the peer's
 * certificate chains to the CA bundle, and a dialed peer's names the node dialed; c moves
 * on to the HELLO (queued since c was made). A failure closes c as refused (inbound) or as
 * a failed dial, logged with OpenSSL's reason. Never blocks. */
static void tls_handshake(conn_t *c)
{
    if (!c->got_bytes) {
        /* a quorumfs frame where a TLS record belongs: the peer runs without TLS */
        uint8_t b[4];
        ssize_t n = recv(c->fd, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
        if (n == 4 && le_get32(b) == FRAME_MAGIC) {
            conn_close(c, true, TRANSPORT_LOG_WARN, "refused: the peer speaks plain TCP (its "
                       "first bytes are a quorumfs frame), and this node requires TLS");
            return;
        }
        c->got_bytes = n == 4 || (n > 0 && b[0] != (FRAME_MAGIC & 0xFF));
    }
    c->read_needs_out = false;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    int err = errno;
    if (r == 1) {
        if (!SSL_get0_peer_certificate(c->ssl) || SSL_get_verify_result(c->ssl) != X509_V_OK) {
            /* cannot happen with SSL_VERIFY_FAIL_IF_NO_PEER_CERT; refused all the same */
            conn_close(c, true, TRANSPORT_LOG_WARN, "TLS handshake failed: the peer's "
                       "certificate is not verified");
            return;
        }
        c->state = C_HELLO;
        conn_flush(c);      /* the HELLO */
        if (c->state != C_DEAD)
            conn_read(c);   /* the peer's HELLO may be here already */
        return;
    }
    char why[160];
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        set_events(c);
        return;
    case SSL_ERROR_WANT_WRITE:
        c->read_needs_out = true;
        set_events(c);
        return;
    case SSL_ERROR_SYSCALL:
        tls_errstr(why, sizeof why, err ? strerror(err) : "the peer closed the connection");
        break;
    default:
        tls_errstr(why, sizeof why, "unknown TLS error");
        break;
    }
    c->tls_fatal = true;
    conn_close(c, true, TRANSPORT_LOG_WARN, "TLS handshake failed: %s%s%s%s", why,
               c->verr[0] ? " (" : "", c->verr, c->verr[0] ? ")" : "");
}

static void finish_connect(conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        conn_close(c, false, TRANSPORT_LOG_INFO, "connect failed: %s", strerror(err));
        return;
    }
    if (c->ssl) {
        c->state = C_TLS;
        tls_handshake(c);
        return;
    }
    c->state = C_HELLO;
    conn_flush(c);
}

static void dial(transport_t *t, peer_t *p)
{
    ASSERT(p->dialer && !p->conn);
    int fd = socket(p->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        schedule_dial(t, p);
        dial_failed_log(t, p, TRANSPORT_LOG_WARN, strerror(e));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, (struct sockaddr *)&p->sa, p->salen);
    if (rc != 0 && errno != EINPROGRESS) {
        char why[128];
        snprintf(why, sizeof why, "connect failed: %s", strerror(errno));
        close(fd);
        schedule_dial(t, p);
        dial_failed_log(t, p, TRANSPORT_LOG_INFO, why);
        return;
    }
    conn_t *c = conn_new(t, fd, p->id, rc == 0 ? C_HELLO : C_CONNECTING, p->addr);
    if (!c) {
        schedule_dial(t, p);
        dial_failed_log(t, p, TRANSPORT_LOG_WARN, "out of memory");
        return;
    }
    c->peer = p;
    p->conn = c;
}

static void on_accept(transport_t *t)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(t->lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* out of fds or memory: the listener would stay readable and spin the loop, so
               stop watching it for a while */
            tlog(t, TRANSPORT_LOG_WARN, "accept: %s; not accepting for %d ms", strerror(errno),
                 ACCEPT_PAUSE_MS);
            struct epoll_event ev = { .events = 0, .data.ptr = NULL };
            epoll_ctl(t->epfd, EPOLL_CTL_MOD, t->lfd, &ev);
            t->accept_retry_ms = now_ms() + ACCEPT_PAUSE_MS;
            return;
        }
        char addr[64];
        addr_str((struct sockaddr *)&sa, addr, sizeof addr);
        if (t->npending >= MAX_PENDING) {
            tlog(t, TRANSPORT_LOG_WARN, "refusing inbound connection from %s: %d connections "
                 "already wait for their HELLO", addr, MAX_PENDING);
            t->refused++;
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (conn_new(t, fd, 0, C_HELLO, addr))
            t->npending++;
    }
}

static void sooner(uint64_t *next, uint64_t now, uint64_t at)
{
    uint64_t d = at > now ? at - now : 0;
    if (d < *next)
        *next = d;
}

/* Closes timed-out connections, queues PINGs and redials; returns ms until the next of
 * these timers (UINT64_MAX if none). */
static uint64_t run_timers(transport_t *t)
{
    uint64_t now = now_ms(), next = UINT64_MAX, idle = t->cfg.idle_timeout_ms;
    if (t->accept_retry_ms && now >= t->accept_retry_ms) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        epoll_ctl(t->epfd, EPOLL_CTL_MOD, t->lfd, &ev);
        t->accept_retry_ms = 0;
    } else if (t->accept_retry_ms) {
        sooner(&next, now, t->accept_retry_ms);
    }
    for (conn_t *c = t->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->state == C_ADMIN) {
            if (now >= c->admin_deadline_ms) {
                char why[96];
                uint64_t token = c->admin_token;
                snprintf(why, sizeof why, "no answer within %" PRIu32 " ms",
                         t->cfg.admin_timeout_ms);
                tlog(t, TRANSPORT_LOG_WARN, "admin request from %s: %s", c->addr, why);
                /* the owner forgets the token before the client can see the answer */
                c->admin_token = 0;
                if (t->cfg.admin_gone) {
                    t->in_callback = true;
                    t->cfg.admin_gone(t->cfg.admin_ctx, token);
                    t->in_callback = false;
                }
                (void)admin_reply(c, -ETIMEDOUT, why, strlen(why));
                if (c->state != C_DEAD)
                    sooner(&next, now, c->opened_ms + idle);
            } else {
                sooner(&next, now, c->admin_deadline_ms);
            }
            continue;
        }
        if (c->state != C_UP) {
            if (now - c->opened_ms >= idle)
                conn_close(c, !c->outbound, TRANSPORT_LOG_WARN, "%s within %" PRIu64 " ms",
                           c->state == C_TLS ? "TLS handshake not done"
                           : c->state == C_STATUS ? "status answer not taken"
                           : c->state == C_ADMIN_OUT ? "admin answer not taken" : "no HELLO",
                           idle);
            else
                sooner(&next, now, c->opened_ms + idle);
            continue;
        }
        if (now - c->last_rx_ms >= idle) {
            conn_close(c, false, TRANSPORT_LOG_WARN, "silent for %" PRIu64 " ms",
                       now - c->last_rx_ms);
            continue;
        }
        sooner(&next, now, c->last_rx_ms + idle);
        if (now >= c->next_ping_ms) {
            frame_t ping = { .type = FRAME_PING, .ping = now_us() };
            (void)enqueue(c, &ping); /* a full queue skips this PING */
            c->next_ping_ms = now + t->cfg.ping_ms;
        }
        sooner(&next, now, c->next_ping_ms);
    }
    for (size_t i = 0; i < t->npeers; i++) {
        peer_t *p = t->peers[i];
        if (!p->dialer || p->conn)
            continue;
        if (now >= p->next_dial_ms)
            dial(t, p);
        if (p->conn)
            sooner(&next, now, now + idle); /* the new connection's handshake deadline */
        else
            sooner(&next, now, p->next_dial_ms);
    }
    return next;
}

/* ---- public API ---------------------------------------------------------------------- */

int transport_new(const transport_config_t *cfg, transport_t **out, char **errmsg)
{
    *out = NULL;
    if (cfg->id == 0 || !cfg->deliver) {
        qerr_set_msg(errmsg, "transport: node id 0 or no deliver callback");
        return -QERR_INVAL;
    }
    transport_t *t = calloc(1, sizeof *t);
    if (!t)
        return -QERR_NOMEM;
    int rc = -QERR_INVAL;
    t->cfg = *cfg;
    t->epfd = t->lfd = -1;
    transport_config_t *c = &t->cfg;
    c->listen = NULL;
    if (!c->max_frame)
        c->max_frame = FRAME_DEFAULT_MAX_PAYLOAD;
    if (!c->max_queue_bytes)
        c->max_queue_bytes = 16u << 20;
    if (!c->backoff_min_ms)
        c->backoff_min_ms = 50;
    if (!c->backoff_max_ms)
        c->backoff_max_ms = 5000;
    if (!c->ping_ms)
        c->ping_ms = 1000;
    if (!c->idle_timeout_ms)
        c->idle_timeout_ms = 5000;
    if (!c->admin_timeout_ms)
        c->admin_timeout_ms = 30000;
    t->rng = c->seed ? c->seed : c->id * 0x9E3779B97F4A7C15ull;
    t->reload_seen = __atomic_load_n(&tls_reload_requests, __ATOMIC_RELAXED);
    c->tls_cert = c->tls_key = c->tls_ca = NULL; /* read below, not kept */
    if (c->max_frame > FRAME_LIMIT_MAX_PAYLOAD ||
        c->max_queue_bytes < FRAME_HDR_BYTES + (size_t)c->max_frame ||
        c->backoff_min_ms > c->backoff_max_ms || c->idle_timeout_ms <= c->ping_ms) {
        qerr_set_msg(errmsg, "transport: inconsistent limits (max_frame %" PRIu32 ", "
                     "max_queue_bytes %zu, backoff %" PRIu32 "..%" PRIu32 " ms, ping %" PRIu32
                     " ms, idle timeout %" PRIu32 " ms)", c->max_frame, c->max_queue_bytes,
                     c->backoff_min_ms, c->backoff_max_ms, c->ping_ms, c->idle_timeout_ms);
        goto fail;
    }
    if ((rc = tls_setup(t, cfg, errmsg)) < 0)
        goto fail;
    rc = -QERR_INVAL;
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (t->epfd < 0) {
        rc = qerr_from_errno(errno);
        qerr_set_msg(errmsg, "transport: epoll_create1: %s", strerror(errno));
        goto fail;
    }
    if (cfg->listen) {
        struct sockaddr_storage sa;
        socklen_t len;
        if (!(t->listen = strdup(cfg->listen))) {
            rc = -QERR_NOMEM;
            goto fail;
        }
        c->listen = t->listen;
        if ((rc = resolve(cfg->listen, true, &sa, &len, errmsg)) < 0)
            goto fail;
        t->lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (t->lfd < 0 || setsockopt(t->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
            bind(t->lfd, (struct sockaddr *)&sa, len) || listen(t->lfd, 128)) {
            rc = -QERR_IO;
            qerr_set_msg(errmsg, "transport: cannot listen on %s: %s", cfg->listen,
                         strerror(errno));
            goto fail;
        }
        len = sizeof sa;
        getsockname(t->lfd, (struct sockaddr *)&sa, &len);
        t->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                 : ((struct sockaddr_in *)&sa)->sin_port);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->lfd, &ev) != 0) {
            rc = qerr_from_errno(errno);
            qerr_set_msg(errmsg, "transport: epoll_ctl: %s", strerror(errno));
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
    transport_free(t);
    return rc;
}

void transport_free(transport_t *t)
{
    if (!t)
        return;
    ASSERT(!t->in_callback);
    while (t->conns) {
        conn_t *c = t->conns;
        if (c->peer)
            c->peer->dialer = false; /* no redial scheduling while tearing down */
        conn_close(c, false, TRANSPORT_LOG_INFO, "transport shutting down");
    }
    reap(t);
    SSL_CTX_free(t->tls);       /* after every session: conn_close freed them */
    BIO_meth_free(t->bio_meth);
    for (int i = 0; i < 3; i++)
        free(t->tls_path[i]);
    for (size_t i = 0; i < t->npeers; i++)
        free(t->peers[i]);
    free(t->peers);
    if (t->lfd >= 0)
        close(t->lfd);
    if (t->epfd >= 0)
        close(t->epfd);
    free(t->listen);
    free(t);
}

uint16_t transport_port(const transport_t *t)
{
    return t->port;
}

int transport_fd(const transport_t *t)
{
    return t->epfd;
}

int transport_add_peer(transport_t *t, uint64_t id, const char *addr)
{
    if (id == 0 || id == t->cfg.id || !addr)
        return -QERR_INVAL;
    if (find_peer(t, id))
        return -QERR_EXISTS;
    peer_t *p = calloc(1, sizeof *p);
    if (!p)
        return -QERR_NOMEM;
    char *msg = NULL;
    int rc = resolve(addr, false, &p->sa, &p->salen, &msg);
    if (rc < 0) {
        tlog(t, TRANSPORT_LOG_WARN, "peer %" PRIu64 ": %s", id, msg ? msg : "bad address");
        free(msg);
        free(p);
        return rc;
    }
    peer_t **v = realloc(t->peers, (t->npeers + 1) * sizeof *v);
    if (!v) {
        free(p);
        return -QERR_NOMEM;
    }
    t->peers = v;
    p->id = id;
    addr_str((struct sockaddr *)&p->sa, p->addr, sizeof p->addr);
    p->dialer = t->cfg.id < id;
    p->next_dial_ms = now_ms();
    p->st.rtt_us = -1;
    t->peers[t->npeers++] = p;
    return 0;
}

int transport_expect_incarnation(transport_t *t, uint64_t id, uint64_t inc)
{
    ASSERT(!t->in_callback);
    peer_t *p = find_peer(t, id);
    if (!p)
        return -QERR_NOTFOUND;
    p->expect_inc = inc;
    if (inc && p->conn && p->conn->state == C_UP && p->st.incarnation &&
        p->st.incarnation != inc) {
        frame_hello_t h = { .node_id = id, .incarnation = p->st.incarnation };
        incarnation_ok(p->conn, p, &h);   /* connected before the record knew: closed */
    }
    return 0;
}

int transport_remove_peer(transport_t *t, uint64_t id)
{
    ASSERT(!t->in_callback);
    for (size_t i = 0; i < t->npeers; i++) {
        peer_t *p = t->peers[i];
        if (p->id != id)
            continue;
        p->dialer = false;
        if (p->conn)
            conn_close(p->conn, false, TRANSPORT_LOG_INFO, "peer removed");
        t->peers[i] = t->peers[--t->npeers];
        free(p);
        return 0;
    }
    return -QERR_NOTFOUND;
}

int transport_send(transport_t *t, uint32_t group, const raft_msg_t *m)
{
    peer_t *p = find_peer(t, m->to);
    if (!p)
        return -QERR_NOTFOUND;
    if (m->from != t->cfg.id)
        return -QERR_INVAL;
    if (!p->conn || p->conn->state != C_UP) {
        p->st.dropped++;
        return -QERR_CLOSED;
    }
    frame_t f = { .type = FRAME_RAFT, .group = group, .msg = *m };
    f.msg.mem = NULL;
    int rc = enqueue(p->conn, &f);
    if (rc == -QERR_INVAL)
        return rc;
    if (rc < 0) {
        p->st.dropped++;
        return rc;
    }
    p->st.msgs_out++;
    return 0;
}

int transport_send_fwd(transport_t *t, uint64_t to, const frame_fwd_t *f)
{
    peer_t *p = find_peer(t, to);
    if (!p)
        return -QERR_NOTFOUND;
    if (!p->conn || p->conn->state != C_UP) {
        p->st.dropped++;
        return -QERR_CLOSED;
    }
    frame_t fr = { .type = FRAME_FWD, .fwd = *f };
    fr.fwd.mem = NULL;
    int rc = enqueue(p->conn, &fr);
    if (rc == -QERR_INVAL)
        return rc;
    if (rc < 0) {
        p->st.dropped++;
        return rc;
    }
    p->st.fwd_out++;
    return 0;
}

void transport_flush(transport_t *t)
{
    ASSERT(!t->in_callback);
    for (conn_t *c = t->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->head < c->tail)
            conn_flush(c);
    }
}

int transport_poll(transport_t *t, int timeout_ms)
{
    ASSERT(!t->in_callback);
    unsigned req = __atomic_load_n(&tls_reload_requests, __ATOMIC_RELAXED);
    if (req != t->reload_seen) {
        t->reload_seen = req;
        (void)transport_reload_tls(t, NULL); /* logs how it went */
    }
    t->delivered = 0;
    uint64_t next = run_timers(t);
    transport_flush(t);
    int wait = timeout_ms;
    if (next < (uint64_t)INT32_MAX && (wait < 0 || (uint64_t)wait > next))
        wait = (int)next;
    struct epoll_event ev[MAX_EVENTS];
    int n = epoll_wait(t->epfd, ev, MAX_EVENTS, wait);
    if (n < 0 && errno != EINTR) {
        tlog(t, TRANSPORT_LOG_WARN, "epoll_wait: %s", strerror(errno));
        return -QERR_IO;
    }
    for (int i = 0; i < n; i++) {
        conn_t *c = ev[i].data.ptr;
        if (!c) {
            on_accept(t);
            continue;
        }
        uint32_t e = ev[i].events;
        if (c->state == C_CONNECTING && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            finish_connect(c);
        else if (c->state == C_TLS)
            tls_handshake(c);
        if ((c->state == C_HELLO || c->state == C_UP || c->state == C_ADMIN) &&
            ((e & (EPOLLIN | EPOLLERR | EPOLLHUP)) || (c->read_needs_out && (e & EPOLLOUT))))
            conn_read(c);
        if ((c->state == C_HELLO || c->state == C_UP || c->state == C_ADMIN) && (e & EPOLLOUT))
            conn_flush(c);
        else if (c->state == C_STATUS || c->state == C_ADMIN_OUT)
            conn_flush(c); /* writable, or the readability a TLS write waits for, or HUP */
    }
    run_timers(t);
    transport_flush(t);
    reap(t);
    return t->delivered;
}

int transport_peer_stats(const transport_t *t, uint64_t id, transport_peer_stats_t *st)
{
    const peer_t *p = find_peer(t, id);
    if (!p)
        return -QERR_NOTFOUND;
    *st = p->st;
    st->queued_bytes = p->conn ? p->conn->tail - p->conn->head : 0;
    return 0;
}

bool transport_connected(const transport_t *t, uint64_t id)
{
    const peer_t *p = find_peer(t, id);
    return p && p->conn && p->conn->state == C_UP;
}

uint64_t transport_refused(const transport_t *t)
{
    return t->refused;
}

uint64_t transport_status_queries(const transport_t *t)
{
    return t->status_queries;
}

uint64_t transport_admin_requests(const transport_t *t)
{
    return t->admin_requests;
}

int transport_admin_answer(transport_t *t, uint64_t token, int32_t code, const char *text,
                           size_t len)
{
    if (token == 0)
        return -QERR_NOTFOUND;
    for (conn_t *c = t->conns; c; c = c->next)
        if (c->state == C_ADMIN && c->admin_token == token)
            return admin_reply(c, code, text, len);
    return -QERR_NOTFOUND;
}
