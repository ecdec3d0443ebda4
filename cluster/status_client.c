/* cluster/status_client.c — one status query (cluster/status_client.h): resolve, connect
 * without blocking past the deadline, optional TLS (OpenSSL, the socket driven by poll(2)),
 * a STATUS_REQ frame out, frames in through the streaming decoder of cluster/frame.c until the
 * STATUS answer. Every wait is a poll(2) bounded by the one deadline of the call. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/frame.h"
#include "cluster/status_client.h"
#include "cluster/transport.h"

#define DEFAULT_TIMEOUT_MS 5000

/* One query in progress. */
typedef struct query {
    const char *hp;          /* "HOST:PORT" as given, for messages */
    int fd;
    uint64_t deadline;       /* monotonic ms */
    uint32_t timeout_ms;
    SSL_CTX *ctx;            /* TLS only */
    SSL *ssl;
    uint8_t first[4];        /* the first bytes read from the socket (to spot a plain member) */
    size_t nfirst;
    char verr[200];          /* the member's certificate refused, and why */
    char **errmsg;
    uint32_t answer_type;    /* FRAME_STATUS or FRAME_ADMIN */
    const char *kind;        /* "a status" / "an admin": names the answer in messages */
    const char *older;       /* why a plain member may close without answering */
} query_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sets *errmsg to "HOST:PORT: <fmt>" (first message wins) and returns code. */
static int qfail(query_t *q, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int qfail(query_t *q, int code, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    qerr_set_msg(q->errmsg, "%s: %s", q->hp, why);
    return code;
}

/* OpenSSL's first queued error as text, or fallback; empties the error queue. */
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

/* Waits until q->fd is ready for ev (POLLIN/POLLOUT) or the deadline passes. Returns 0, or
 * -QERR_TIMEOUT / -QERR_IO with the message set. */
static int wait_fd(query_t *q, short ev)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= q->deadline)
            return qfail(q, -QERR_TIMEOUT, "no answer within %" PRIu32 " ms", q->timeout_ms);
        uint64_t left = q->deadline - now;
        struct pollfd p = { .fd = q->fd, .events = ev };
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return 0; /* ready, or an error/hangup the next call reports */
        if (n < 0 && errno != EINTR)
            return qfail(q, -QERR_IO, "poll: %s", strerror(errno));
    }
}

/* Splits "HOST:PORT" / "[V6]:PORT" and resolves it. Returns 0 and *res, or -QERR_INVAL. */
static int resolve(query_t *q, struct addrinfo **res)
{
    char host[256];
    const char *spec = q->hp, *colon = strrchr(spec, ':');
    if (!colon || !colon[1] || colon == spec || (size_t)(colon - spec) >= sizeof host ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return qfail(q, -QERR_INVAL, "not HOST:PORT");
    size_t hl = (size_t)(colon - spec);
    memcpy(host, spec, hl);
    host[hl] = 0;
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        h = host + 1;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    int rc = getaddrinfo(h, colon + 1, &hints, res);
    if (rc != 0 || !*res)
        return qfail(q, -QERR_INVAL, "cannot resolve: %s", gai_strerror(rc));
    return 0;
}

/* Connects q->fd to one of the addresses, in turn, before the deadline. */
static int connect_any(query_t *q, const struct addrinfo *ai)
{
    int err = 0;
    for (; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        q->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return 0;
        err = errno;
        if (err == EINPROGRESS) {
            int rc = wait_fd(q, POLLOUT);
            if (rc < 0)
                return rc; /* the deadline is shared: no time left for the others */
            socklen_t len = sizeof err;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
            if (err == 0)
                return 0;
        }
        close(fd);
        q->fd = -1;
    }
    return qfail(q, -QERR_IO, "cannot connect: %s", strerror(err ? err : ECONNREFUSED));
}

/* ---- TLS ------------------------------------------------------------------------------ */

/* A socket BIO that sends with MSG_NOSIGNAL (no SIGPIPE in the caller's process) and keeps
 * the first bytes read. Its data is the query. */
static int bio_write(BIO *b, const char *buf, int len)
{
    query_t *q = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = send(q->fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    query_t *q = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = recv(q->fd, buf, (size_t)len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    for (ssize_t i = 0; i < n && q->nfirst < sizeof q->first; i++)
        q->first[q->nfirst++] = (uint8_t)buf[i];
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* The BIO method, made once per process (BIO type indexes are a small global pool). */
static BIO_METHOD *bio_meth;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void make_bio_meth(void)
{
    int idx = BIO_get_new_index();
    if (idx < 0 || !(bio_meth = BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "quorumfs status")))
        return;
    BIO_meth_set_write(bio_meth, bio_write);
    BIO_meth_set_read(bio_meth, bio_read);
    BIO_meth_set_ctrl(bio_meth, bio_ctrl);
    BIO_meth_set_create(bio_meth, bio_create);
}

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (ok)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    query_t *q = ssl ? SSL_get_app_data(ssl) : NULL;
    if (q && !q->verr[0]) {
        X509 *cert = X509_STORE_CTX_get0_cert(x);
        char subj[80] = "?", iss[80] = "?";
        if (cert) {
            X509_NAME_oneline(X509_get_subject_name(cert), subj, sizeof subj);
            X509_NAME_oneline(X509_get_issuer_name(cert), iss, sizeof iss);
        }
        snprintf(q->verr, sizeof q->verr, "certificate %s issued by %s: %s", subj, iss,
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
    }
    return 0;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* Makes q->ctx and q->ssl from the three files. Returns 0, -QERR_INVAL or -QERR_NOMEM. */
static int tls_setup(query_t *q, const cluster_status_tls_t *tls)
{
    char why[200];
    if (!tls->cert || !tls->key || !tls->ca)
        return qfail(q, -QERR_INVAL, "TLS needs a certificate, a private key and a CA bundle");
    ERR_clear_error();
    if (!(q->ctx = SSL_CTX_new(TLS_client_method())))
        goto nomem;
    if (SSL_CTX_set_min_proto_version(q->ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(q->ctx, TLS1_3_VERSION) != 1) {
        tls_errstr(why, sizeof why, "not supported by this OpenSSL");
        return qfail(q, -QERR_INVAL, "TLS 1.3: %s", why);
    }
    SSL_CTX_set_options(q->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(q->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_default_passwd_cb(q->ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(q->ctx, tls->cert) != 1) {
        tls_errstr(why, sizeof why, "unreadable");
        return qfail(q, -QERR_INVAL, "TLS certificate %s: %s", tls->cert, why);
    }
    if (SSL_CTX_use_PrivateKey_file(q->ctx, tls->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(q->ctx) != 1) {
        tls_errstr(why, sizeof why, "unreadable");
        return qfail(q, -QERR_INVAL, "TLS private key %s: %s (it must be the unencrypted PEM "
                     "key of %s)", tls->key, why, tls->cert);
    }
    if (SSL_CTX_load_verify_locations(q->ctx, tls->ca, NULL) != 1) {
        tls_errstr(why, sizeof why, "unreadable");
        return qfail(q, -QERR_INVAL, "TLS CA bundle %s: %s", tls->ca, why);
    }
    /* the member's name is checked once it says which node it is (in its answer) */
    SSL_CTX_set_verify(q->ctx, SSL_VERIFY_PEER, verify_cb);
    pthread_once(&bio_once, make_bio_meth);
    if (!bio_meth)
        goto nomem;
    return 0;
nomem:
    ERR_clear_error();
    return qfail(q, -QERR_NOMEM, "cannot set up TLS: out of memory");
}

/* 1 iff the first bytes the member sent are a quorumfs frame: it has no TLS configured. */
static bool member_is_plain(const query_t *q)
{
    return q->nfirst == sizeof q->first && le_get32(q->first) == FRAME_MAGIC;
}

/* A TLS call's failure (ret <= 0): 1 to wait and retry (after waiting for the readiness it
 * wants), 0 for a closed session, or a negative code with the message set. */
static int tls_retry(query_t *q, int ret, int err, const char *what)
{
    char why[200];
    switch (SSL_get_error(q->ssl, ret)) {
    case SSL_ERROR_WANT_READ: {
        int rc = wait_fd(q, POLLIN);
        return rc < 0 ? rc : 1;
    }
    case SSL_ERROR_WANT_WRITE: {
        int rc = wait_fd(q, POLLOUT);
        return rc < 0 ? rc : 1;
    }
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (!err || err == ECONNRESET) /* a refusal closes with our bytes unread: a reset */
            return 0;
        snprintf(why, sizeof why, "%s", strerror(err));
        break;
    default:
        tls_errstr(why, sizeof why, "unknown TLS error");
        break;
    }
    if (member_is_plain(q))
        return qfail(q, -QERR_IO, "%s: the member speaks plain TCP (its first bytes are a "
                     "quorumfs frame): it has no TLS configured", what);
    return qfail(q, -QERR_IO, "%s: %s%s%s%s", what, why, q->verr[0] ? " (" : "", q->verr,
                 q->verr[0] ? ")" : "");
}

static int tls_connect(query_t *q)
{
    ERR_clear_error();
    BIO *b;
    if (!(q->ssl = SSL_new(q->ctx)) || !(b = BIO_new(bio_meth)))
        return qfail(q, -QERR_NOMEM, "cannot set up TLS: out of memory");
    BIO_set_data(b, q);
    SSL_set_bio(q->ssl, b, b);
    SSL_set_app_data(q->ssl, q);
    SSL_set_connect_state(q->ssl);
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(q->ssl);
        if (r == 1)
            return 0;
        int rc = tls_retry(q, r, errno, "TLS handshake failed");
        if (rc == 0 && member_is_plain(q))
            return qfail(q, -QERR_IO, "TLS handshake failed: the member speaks plain TCP (its "
                         "first bytes are a quorumfs frame): it has no TLS configured");
        if (rc == 0)
            return qfail(q, -QERR_IO, "TLS handshake failed: the member closed the connection");
        if (rc < 0)
            return rc;
    }
}

/* ---- I/O ------------------------------------------------------------------------------ */

static int send_all(query_t *q, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n;
        if (q->ssl) {
            ERR_clear_error();
            int r = SSL_write(q->ssl, buf, (int)len);
            if (r <= 0) {
                int rc = tls_retry(q, r, errno, "cannot send the request");
                if (rc == 0)
                    return qfail(q, -QERR_IO, "the member closed the connection");
                if (rc < 0)
                    return rc;
                continue;
            }
            n = r;
        } else {
            n = send(q->fd, buf, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    return qfail(q, -QERR_IO, "cannot send the request: %s", strerror(errno));
                int rc = wait_fd(q, POLLOUT);
                if (rc < 0)
                    return rc;
                continue;
            }
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads some bytes: > 0, 0 at end of stream, or a negative code with the message set. */
static ssize_t recv_some(query_t *q, uint8_t *buf, size_t cap)
{
    for (;;) {
        if (q->ssl) {
            ERR_clear_error();
            int r = SSL_read(q->ssl, buf, (int)cap);
            if (r > 0)
                return r;
            int rc = tls_retry(q, r, errno, "TLS session failed");
            if (rc <= 0)
                return rc;
            continue;
        }
        ssize_t n = recv(q->fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET) /* a refusal closes with our request unread: a reset */
            return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return qfail(q, -QERR_IO, "read failed: %s", strerror(errno));
        int rc = wait_fd(q, POLLIN);
        if (rc < 0)
            return rc;
    }
}

/* The node id an answer (STATUS or ADMIN) names. */
static uint64_t answer_node(const frame_t *f)
{
    return f->type == FRAME_ADMIN ? f->admin.node_id : f->status.node_id;
}

/* Reads frames until the answer of type q->answer_type (one HELLO may come first); moves it
 * into *out. */
static int read_answer(query_t *q, frame_t *out)
{
    frame_decoder_t *d = frame_decoder_new(q->answer_type == FRAME_ADMIN
                                           ? ADMIN_HEAD_BYTES + ADMIN_MAX_TEXT
                                           : STATUS_HEAD_BYTES + STATUS_MAX_TEXT);
    if (!d)
        return qfail(q, -QERR_NOMEM, "out of memory");
    uint8_t buf[16 * 1024];
    uint64_t hello_id = 0;
    int rc;
    for (;;) {
        ssize_t n = recv_some(q, buf, sizeof buf);
        if (n < 0) {
            rc = (int)n;
            goto done;
        }
        if (n == 0) {
            rc = qfail(q, -QERR_IO, "the member closed the connection without answering (%s)",
                       q->ssl ? "it refused this client: its log says why; the subject CN of "
                                "this client's certificate must be quorumfs-client or "
                                "quorumfs-<id>"
                       : hello_id ? q->older
                                  : "a member with TLS configured refuses plain queries");
            goto done;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            frame_t f;
            size_t used;
            int r = frame_decoder_feed(d, buf + off, (size_t)n - off, &used, &f);
            off += used;
            if (r < 0) {
                rc = qfail(q, r, "not %s answer: %s", q->kind, frame_decoder_error(d));
                goto done;
            }
            if (r == 0)
                break;
            if (f.type == FRAME_HELLO && !hello_id) {
                hello_id = f.hello.node_id;
                frame_free(&f);
                continue;
            }
            if (f.type != q->answer_type) {
                rc = qfail(q, -QERR_CORRUPT, "not %s answer: frame type %" PRIu32, q->kind,
                           f.type);
                frame_free(&f);
                goto done;
            }
            if (hello_id && hello_id != answer_node(&f)) {
                rc = qfail(q, -QERR_CORRUPT, "the member said it is node %" PRIu64 " and "
                           "answers as node %" PRIu64, hello_id, answer_node(&f));
                frame_free(&f);
                goto done;
            }
            *out = f; /* a move */
            rc = 0;
            goto done;
        }
    }
done:
    frame_decoder_free(d);
    return rc;
}

/* With TLS: the member's certificate must name the node it answered as (its subject CN is
 * quorumfs-<id>, transport_cert_identity). */
static int check_member_name(query_t *q, uint64_t id)
{
    char subj[80] = "?";
    uint64_t got;
    X509 *cert = SSL_get0_peer_certificate(q->ssl);
    if (cert)
        X509_NAME_oneline(X509_get_subject_name(cert), subj, sizeof subj);
    if (transport_cert_identity(cert, &got) != TRANSPORT_CERT_NODE || got != id) {
        ERR_clear_error();
        return qfail(q, -QERR_IO, "the member answers as node %" PRIu64 ", but its TLS "
                     "certificate %s does not name it (its subject CN must be quorumfs-%"
                     PRIu64 ")", id, subj, id);
    }
    return 0;
}

int cluster_peer_request(const char *hostport, const cluster_status_tls_t *tls,
                         uint32_t timeout_ms, const frame_t *req, frame_t *answer,
                         char **errmsg)
{
    memset(answer, 0, sizeof *answer);
    bool admin = req->type == FRAME_ADMIN_REQ;
    query_t q = { .hp = hostport ? hostport : "(null)", .fd = -1, .errmsg = errmsg,
                  .timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS,
                  .answer_type = admin ? FRAME_ADMIN : FRAME_STATUS,
                  .kind = admin ? "an admin" : "a status",
                  .older = admin ? "it refused the request: its log says why; a node older "
                                   "than admin requests refuses it as an unknown frame type"
                                 : "it refused the request: its log says why; a node older "
                                   "than status queries refuses it as an unknown frame type" };
    struct addrinfo *ai = NULL;
    uint8_t b[FRAME_HDR_BYTES + ADMIN_REQ_HEAD_BYTES + ADMIN_ADDR_MAX + STATUS_REQ_BYTES];
    size_t n = 0;
    int rc;
    if (!hostport) {
        rc = qfail(&q, -QERR_INVAL, "no address");
        goto done;
    }
    if ((rc = frame_encode(req, b, sizeof b, &n)) < 0) {
        rc = qfail(&q, rc == -QERR_TOOBIG ? -QERR_INVAL : rc, "cannot encode the request: %s",
                   qerr_str(rc));
        goto done;
    }
    if (tls && (rc = tls_setup(&q, tls)) < 0)
        goto done;
    if ((rc = resolve(&q, &ai)) < 0)
        goto done;
    q.deadline = now_ms() + q.timeout_ms; /* name resolution is not bounded by it */
    if ((rc = connect_any(&q, ai)) < 0)
        goto done;
    if (tls && (rc = tls_connect(&q)) < 0)
        goto done;
    rc = send_all(&q, b, n);
    if (rc == 0)
        rc = read_answer(&q, answer);
    if (rc == 0 && tls)
        rc = check_member_name(&q, answer_node(answer));
done:
    if (q.ssl) {
        ERR_clear_error();
        if (rc == 0)
            (void)SSL_shutdown(q.ssl); /* one try at a close_notify; never waits */
        SSL_free(q.ssl);
    }
    SSL_CTX_free(q.ctx);
    ERR_clear_error();
    if (q.fd >= 0)
        close(q.fd);
    if (ai)
        freeaddrinfo(ai);
    if (rc < 0)
        frame_free(answer);
    return rc;
}

int cluster_status_query(const char *hostport, const cluster_status_tls_t *tls,
                         uint32_t timeout_ms, cluster_status_t *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    frame_t req = { .type = FRAME_STATUS_REQ, .status.version = STATUS_VERSION }, f;
    int rc = cluster_peer_request(hostport, tls, timeout_ms, &req, &f, errmsg);
    if (rc < 0)
        return rc;
    out->text = f.status.mem; /* a move: NUL-terminated, len bytes before it */
    out->len = f.status.len;
    out->node_id = f.status.node_id;
    out->age_ms = f.status.age_ms;
    out->tls = tls != NULL;
    f.status.mem = NULL;
    frame_free(&f);
    return 0;
}

void cluster_status_free(cluster_status_t *out)
{
    if (!out)
        return;
    free(out->text);
    memset(out, 0, sizeof *out);
}
