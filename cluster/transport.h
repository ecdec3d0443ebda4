/* cluster/transport.h — node-to-node transport: one TCP connection per node pair carries the
 * Raft messages of every group, as frames (cluster/frame.h, docs/TRANSPORT.md). A transport
 * owns a listening socket and one connection per configured peer; it performs the HELLO
 * exchange, queues outgoing frames with a bound per peer, reconnects with capped, jittered
 * exponential backoff, measures RTT with PING/PONG and hands received messages to a callback.
 *
 * Threading contract: a transport does no threading of its own. One thread (the node loop)
 * owns it and makes every transport_* call; nothing is locked. That thread drives all I/O
 * through transport_poll(), and may wait on transport_fd() in its own poll/epoll set (the fd
 * turns readable when the transport has socket work). Callbacks run inside transport_poll()
 * on that thread.
 *
 * Coalescing: transport_send() only queues. Queued frames go out at the next
 * transport_flush() or transport_poll(), all frames for one peer in as few write() calls as
 * the socket takes, so the heartbeats of many groups to one peer share one write. Queue all
 * of a Ready's messages, then flush.
 *
 * Queue bound policy: each peer's queue holds at most max_queue_bytes of encoded frames. A
 * send that would pass the bound is REFUSED (-QERR_BUSY) and counted as dropped; queued
 * frames are never dropped to make room (a frame may be partly written, and the Raft core
 * recovers lost messages by its own retries, so the newest losing is as good as the oldest).
 * While a peer is not connected, sends are refused too (-QERR_CLOSED); when a connection
 * closes, the frames still queued on it are discarded (counted in lost_bytes). Raft
 * tolerates all of it. Memory per peer is bounded by max_queue_bytes for sending and by
 * 64 KiB + max_frame for receiving (over TLS, plus 64 KiB of ciphertext read ahead and
 * OpenSSL's record buffers while bytes wait in them).
 *
 * Dialing: of each pair, the node with the lower id dials the other (so a pair never races
 * two connections); the higher-id node waits for it, and refuses a HELLO from a peer with a
 * higher id than its own. An accepted connection whose HELLO names a known lower-id peer
 * replaces that peer's current connection (the peer restarted).
 *
 * TLS: with tls_cert, tls_key and tls_ca configured, every connection, dialed or accepted,
 * is a TLS 1.3 session (no other version) with mutual certificate verification against the
 * CA bundle, and a peer's certificate must name it: its one subject CN is quorumfs-<id> for
 * the id it is dialed as or claims in its HELLO (subjectAltNames are not consulted). There
 * is no plaintext fallback: a plain peer is refused. The handshake runs inside
 * transport_poll, without blocking, bounded by idle_timeout_ms; a peer that fails it is
 * refused, counted and logged with the reason. Without them: plain TCP. Each connection does
 * its I/O through a small send/recv/close vtable (struct conn_io in transport.c), plain or
 * TLS. TLS reads are read ahead (one recv() brings in up to 64 KiB of records); a
 * connection handles every complete record it has read before it waits for readiness
 * again, and reads no more per event than plain TCP does (transport.c, above tls_recv).
 * The frames queued for a peer go out as one SSL_write per 16 KiB record. transport_reload_tls reads the three files again for the connections made after it
 * (SIGHUP in the daemon, through transport_request_tls_reload) (docs/TRANSPORT.md "TLS").
 *
 * Status queries: an inbound connection whose first frame is a STATUS_REQ instead of a HELLO
 * is a status client (cluster/status_client.h). It gets one STATUS frame with the text the
 * cfg.status callback gives ("no status yet" before anything is published), and the
 * connection closes once the answer is written. It is bounded like any connection before its
 * HELLO (the 64 pending, the idle_timeout_ms deadline, 256 bytes of request), counted
 * (transport_status_queries) and logged at INFO; a malformed request is refused like a bad
 * HELLO. With TLS the client's certificate must chain to the CA bundle and have the subject
 * CN quorumfs-client (a status client) or quorumfs-<id> for some id (a node's own
 * certificate) (docs/TRANSPORT.md "Status queries").
 *
 * Admin requests: an inbound connection whose first frame is an ADMIN_REQ is an admin client
 * (cluster/admin_client.h). Bounded like a status client until its request has arrived (the
 * same pending slots, idle deadline, request size limit and certificate rule); the request
 * is counted (transport_admin_requests), logged at INFO and handed to cfg.admin with a token;
 * the owner answers it with transport_admin_answer(token), at once or later, and the
 * connection closes once the one ADMIN frame is written. A request not answered within
 * admin_timeout_ms is answered -ETIMEDOUT by the transport itself; a client that goes away
 * first ends the request. Either way cfg.admin_gone is told and the token is forgotten: a
 * later answer gets -QERR_NOTFOUND. A waiting admin connection keeps its pending slot (at
 * most 64 connections wait for a HELLO, a request or an answer, all kinds together). */
#ifndef QFS_CLUSTER_TRANSPORT_H
#define QFS_CLUSTER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cluster/frame.h"
#include "cluster/raft.h"

typedef struct transport transport_t;

/* A Raft message of group `group` arrived from peer `from` (already checked: m->from ==
 * from, m->to == this node). *m belongs to the transport and is freed when the callback
 * returns; to keep it, copy the struct and zero *m (a move), or raft_msg_clone() it.
 * From inside the callback, only transport_send() and the getters may be called. */
typedef void (*transport_deliver_fn)(void *ctx, uint64_t from, uint32_t group, raft_msg_t *m);

/* A forwarding message (FRAME_FWD, cluster/frame.h) arrived from peer `from`. *f belongs to
 * the transport and is freed when the callback returns; to keep its command, copy the struct
 * and zero *f (a move). Same calling rules as transport_deliver_fn. */
typedef void (*transport_deliver_fwd_fn)(void *ctx, uint64_t from, frame_fwd_t *f);

/* The text to answer a status query with, asked on the owning thread inside transport_poll:
 * copies at most cap bytes of UTF-8 text (no NUL) into buf, sets *len and *age_ms (ms since it
 * was published) and returns 0; or returns -QERR_NOTFOUND when nothing was published yet
 * (the answer then says "no status yet"). A text cut at cap mid-character is trimmed to whole
 * characters; one that is not valid UTF-8 is answered with a line saying so instead. */
typedef int (*transport_status_fn)(void *ctx, char *buf, size_t cap, size_t *len,
                                   uint64_t *age_ms);

/* An admin request (FRAME_ADMIN_REQ, checked by the decoder) arrived on an inbound
 * connection; token (nonzero, never reused by this transport) names it for
 * transport_admin_answer. Called on the owning thread inside transport_poll; must not block.
 * *req belongs to the transport (copy what is needed). transport_admin_answer may be called
 * from inside it. */
typedef void (*transport_admin_fn)(void *ctx, uint64_t token, const frame_admin_t *req);
/* Request `token` ended without transport_admin_answer: the client went away, or
 * admin_timeout_ms passed (answered -ETIMEDOUT by the transport). Same thread and rules. */
typedef void (*transport_admin_gone_fn)(void *ctx, uint64_t token);

enum { TRANSPORT_LOG_WARN = 1, TRANSPORT_LOG_INFO = 2 };
/* One log line (no trailing newline): why a connection was refused or closed, reconnects. */
typedef void (*transport_log_fn)(void *ctx, int level, const char *line);

typedef struct transport_config {
    uint64_t id;                /* this node, nonzero */
    uint64_t cluster_id;        /* peers claiming another cluster id are refused */
    const char *listen;         /* "HOST:PORT" (numeric or resolvable; "[v6]:PORT"); port 0
                                   picks a free port (transport_port); NULL: no listener */
    uint32_t max_frame;         /* largest frame payload sent or accepted, bytes;
                                   0 = FRAME_DEFAULT_MAX_PAYLOAD */
    size_t max_queue_bytes;     /* bound of each peer's send queue; 0 = 16 MiB; at least
                                   FRAME_HDR_BYTES + max_frame */
    uint32_t backoff_min_ms;    /* first redial delay; 0 = 50 */
    uint32_t backoff_max_ms;    /* cap of the redial delay; 0 = 5000 */
    uint32_t ping_ms;           /* PING period on every connection; 0 = 1000 */
    uint32_t idle_timeout_ms;   /* a connection that receives nothing (not even a PING) for
                                   this long, or finishes no HELLO in this time, is closed;
                                   0 = 5000; must exceed ping_ms */
    uint64_t seed;              /* seeds the backoff jitter; 0 = derived from id */
    uint64_t incarnation;       /* sent in the HELLO: this node's data directory; 0 = none */
    transport_deliver_fn deliver; /* required */
    void *deliver_ctx;
    transport_deliver_fwd_fn deliver_fwd; /* optional: NULL drops FWD frames (counted in
                                             the peer's fwd_in) */
    transport_status_fn status; /* optional: NULL answers every status query "no status yet" */
    void *status_ctx;
    transport_admin_fn admin;   /* optional: NULL answers every admin request -EOPNOTSUPP
                                   with "not supported by this node" */
    transport_admin_gone_fn admin_gone; /* optional */
    void *admin_ctx;
    uint32_t admin_timeout_ms;  /* an admin request not answered in this time is answered
                                   -ETIMEDOUT by the transport; 0 = 30000 */
    transport_log_fn log;       /* NULL: lines go to stderr prefixed "quorumfs: transport: " */
    void *log_ctx;
    /* Mutual TLS (docs/TRANSPORT.md "TLS"): PEM files of this node's certificate (chain, leaf
     * first; its subject CN must be quorumfs-<id>), its private key (unencrypted) and the CA
     * bundle that peers' certificates must chain to. All three or none (NULL: plain TCP).
     * Read by transport_new and again by each transport_reload_tls; the paths are copied. */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_ca;
} transport_config_t;

/* Creates a transport and binds its listener. cfg is copied (listen too). Returns 0 and *out,
 * or -QERR_INVAL (bad config or address; a partial TLS set, a TLS file that cannot be read or
 * parsed, a key that does not match the certificate, a certificate whose subject CN is not
 * quorumfs-<id>, an OpenSSL without TLS 1.3: *errmsg says which, with OpenSSL's reason), -QERR_IO (bind/listen failed,
 * e.g. the port is taken: *errmsg names it), -QERR_NOMEM. errmsg may be NULL; the caller frees
 * *errmsg. Peers are added with transport_add_peer. Ignores SIGPIPE for its sockets by using
 * MSG_NOSIGNAL; installs no signal handlers. */
int transport_new(const transport_config_t *cfg, transport_t **out, char **errmsg);
/* Closes every socket and frees everything; queued frames are dropped, nothing is delivered.
 * NULL is a no-op. Not from inside a callback. */
void transport_free(transport_t *t);

/* The bound listening port (useful after port 0), or 0 without a listener. */
uint16_t transport_port(const transport_t *t);
/* An epoll fd that is readable when transport_poll has work; for the caller's own loop. */
int transport_fd(const transport_t *t);

/* Adds peer id at addr ("HOST:PORT", resolved now, once). If this node's id is lower, it
 * starts dialing at the next transport_poll. Returns 0, -QERR_EXISTS (id known), -QERR_INVAL
 * (id 0 or this node's id, bad address), -QERR_NOMEM. */
int transport_add_peer(transport_t *t, uint64_t id, const char *addr);
/* Forgets peer id: closes its connection and drops its queue. Returns 0 or -QERR_NOTFOUND.
 * Not from inside a callback. */
int transport_remove_peer(transport_t *t, uint64_t id);
/* From now on a HELLO of peer id must carry incarnation inc (0: any; a HELLO without one,
 * from an older build, always passes): another is refused, logged once per incarnation
 * ("has a new data directory ... remove it and add it again"), and counted in the peer's
 * refused_incarnations; a connection up with another one is closed now. The setting goes
 * with the peer (transport_remove_peer). Returns 0 or -QERR_NOTFOUND. Not from inside a
 * callback. */
int transport_expect_incarnation(transport_t *t, uint64_t id, uint64_t inc);

/* Queues one Raft message of `group` for peer m->to (m is encoded now; the caller keeps it,
 * it may be a Ready's borrowed message). Returns 0, or
 *   -QERR_NOTFOUND  m->to is no known peer;
 *   -QERR_CLOSED    the peer is not connected (handshake not done): dropped;
 *   -QERR_BUSY      the peer's queue would pass max_queue_bytes: dropped;
 *   -QERR_TOOBIG    the frame's payload would pass max_frame (the peer would refuse it);
 *   -QERR_INVAL     m->from is not this node, or raft_msg_encode refuses m;
 *   -QERR_NOMEM.
 * Every refusal but NOTFOUND/INVAL counts in the peer's `dropped`. */
int transport_send(transport_t *t, uint32_t group, const raft_msg_t *m);

/* Queues one forwarding message for peer `to` (f is encoded now; the caller keeps it).
 * Returns 0, or -QERR_NOTFOUND (no such peer), -QERR_CLOSED (not connected: dropped),
 * -QERR_BUSY (queue full: dropped), -QERR_TOOBIG (over max_frame), -QERR_INVAL
 * (frame_fwd_encode refuses f), -QERR_NOMEM. A refusal means the peer certainly never
 * sees f; 0 means it was queued (it may still be lost if the connection closes). */
int transport_send_fwd(transport_t *t, uint64_t to, const frame_fwd_t *f);

/* Writes queued frames to every connected peer until done or the socket is full (the rest
 * goes out from later transport_poll calls). Never blocks. Not from inside a callback. */
void transport_flush(transport_t *t);

/* Runs the transport for at most timeout_ms (0: only what is ready now; < 0: until some
 * event): accepts, dials, reads and delivers, answers PINGs, runs timers (redial, ping,
 * idle and handshake timeouts) and flushes. Returns the number of Raft messages delivered,
 * or -QERR_IO if epoll itself failed. Not from inside a callback. */
int transport_poll(transport_t *t, int timeout_ms);

typedef struct transport_peer_stats {
    bool connected;             /* HELLO exchanged, frames flow */
    bool tls;                   /* connected over TLS (the peer's certificate verified) */
    uint64_t bytes_in, bytes_out;   /* frame bytes, HELLO and PING included (over TLS, the
                                       plaintext: records add their own overhead) */
    uint64_t frames_in, frames_out; /* frames_out counts frames queued for sending */
    uint64_t msgs_in, msgs_out;     /* Raft messages delivered / accepted by transport_send */
    uint64_t dropped;           /* Raft messages refused by transport_send */
    uint64_t fwd_in, fwd_out;   /* forwarding messages received / queued */
    uint64_t lost_bytes;        /* queued bytes discarded when a connection closed */
    uint64_t connects;          /* handshakes completed */
    uint64_t reconnects;        /* handshakes completed after the first */
    uint64_t dial_failures;     /* dials that failed before a handshake completed */
    uint64_t errors;            /* connections closed for a malformed frame, a protocol
                                   violation or a failed TLS handshake or session */
    size_t queued_bytes;        /* in the send queue now */
    int64_t rtt_us;             /* last PING round trip, -1 until one is measured */
    uint64_t incarnation;       /* its last accepted HELLO's (0: none yet, or not sent) */
    uint64_t refused_incarnations; /* HELLOs refused for another incarnation than expected */
    bool refused_incarnation_now; /* one was refused since its last accepted HELLO */
} transport_peer_stats_t;

/* Reads the TLS files again (the paths given to transport_new) and checks them as
 * transport_new does. Success: connections made from now on use the new certificate, key
 * and CA bundle; open connections keep their session. Failure (a file unreadable or
 * unparsable, a key that does not match, a certificate not naming this node): the files
 * loaded before stay in use. Either way one log line says what happened. Returns 0, or
 * -QERR_INVAL (also: no TLS configured) / -QERR_NOMEM with *errmsg (may be NULL; the caller
 * frees it). On the owning thread; not from inside a callback. */
int transport_reload_tls(transport_t *t, char **errmsg);
/* Asks every transport of the process to reload its TLS files (transport_reload_tls) at the
 * start of its next transport_poll; a transport without TLS logs that it has nothing to
 * reload. Async-signal-safe and thread-safe: meant for a SIGHUP handler. Requests made
 * before a transport was created do not concern it. */
void transport_request_tls_reload(void);

/* Who a certificate names (docs/TRANSPORT.md "TLS"), by its one subject CN (none, or more
 * than one, name nothing; subjectAltNames are not consulted): TRANSPORT_CERT_NODE and *id
 * for "quorumfs-<id>" (id in decimal, 1 to UINT64_MAX, no leading zero),
 * TRANSPORT_CERT_CLIENT for "quorumfs-client" (a status client), TRANSPORT_CERT_OTHER for
 * anything else (*id = 0). cert is an X509 *; NULL names nothing. */
struct x509_st;
enum { TRANSPORT_CERT_OTHER = 0, TRANSPORT_CERT_NODE = 1, TRANSPORT_CERT_CLIENT = 2 };
int transport_cert_identity(const struct x509_st *cert, uint64_t *id);

/* Fills *st for peer id. Returns 0 or -QERR_NOTFOUND. */
int transport_peer_stats(const transport_t *t, uint64_t id, transport_peer_stats_t *st);
/* True iff peer id is connected (HELLO exchanged). */
bool transport_connected(const transport_t *t, uint64_t id);
/* Inbound connections refused at the HELLO (unknown id, other cluster, no common version, a
 * certificate that does not name the id) or closed before one (malformed bytes, a failed TLS
 * handshake or certificate verification, a plain peer on a TLS node or the reverse,
 * handshake timeout), and status queries refused (malformed, a TLS certificate naming
 * neither the client nor a node, an answer not taken in time), since creation. */
uint64_t transport_refused(const transport_t *t);
/* Status queries answered since creation (refused ones count in transport_refused). */
uint64_t transport_status_queries(const transport_t *t);
/* Admin requests received since creation (well-formed ones handed on, answered or not;
 * refused ones count in transport_refused). */
uint64_t transport_admin_requests(const transport_t *t);

/* Answers admin request `token` (transport_admin_fn): queues one ADMIN frame with code and
 * text[0..len) and writes it (the rest from later polls); the connection closes once it is
 * written. code must be 0 or a negative errno value (a positive one is negated, one under
 * ADMIN_CODE_MIN becomes -EIO); text is cut to ADMIN_MAX_TEXT at a character boundary, and
 * one that is not valid UTF-8 is replaced by a line saying so. Owning thread only (inside
 * the admin callback too). Returns 0, -QERR_NOTFOUND (token unknown: already answered, the
 * client went away, the deadline passed), or -QERR_NOMEM (the connection is closed). */
int transport_admin_answer(transport_t *t, uint64_t token, int32_t code, const char *text,
                           size_t len);

/* The redial delay after `attempt` consecutive failures (0 for the first redial): the
 * exponential delay min(max_ms, min_ms * 2^attempt), with "equal jitter": uniformly in
 * [delay/2, delay], drawn from rnd. Pure; exposed for tests. */
uint32_t transport_backoff_ms(uint32_t min_ms, uint32_t max_ms, uint32_t attempt, uint64_t rnd);

#endif
