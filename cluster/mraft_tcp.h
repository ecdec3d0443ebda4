/* cluster/mraft_tcp.h — plugs the TCP transport (cluster/transport.h) into a node loop
 * (cluster/mraft.h). The transport does no threading: the node's loop thread drives it,
 * waiting in poll(2) on the transport's epoll fd and an eventfd that client threads write to
 * wake the loop, then running transport_poll; every Ready batch is flushed with one
 * transport_poll as well, so a busy loop still reads. Received messages are moved into the
 * node's inbox (mraft_recv), forwarded proposals and their results too (mraft_recv_fwd). */
#ifndef QFS_CLUSTER_MRAFT_TCP_H
#define QFS_CLUSTER_MRAFT_TCP_H

#include "cluster/mraft.h"
#include "cluster/transport.h"

typedef struct mraft_tcp mraft_tcp_t;

/* Creates the transport (transport_new with cfg; cfg->deliver, deliver_fwd, deliver_ctx,
 * status, status_ctx, admin, admin_gone and admin_ctx are replaced by this module's) and the wake-up eventfd. Returns 0 and *out, or -QERR_* with *errmsg as
 * transport_new (errmsg may be NULL; the caller frees *errmsg). */
int mraft_tcp_new(const transport_config_t *cfg, mraft_tcp_t **out, char **errmsg);

/* The transport itself, for transport_port, and for anything else only before mraft_start
 * or once the loop has stopped (mraft_close): while the node runs, the loop thread owns it
 * (peers are added and removed through mraft_tcp_add_peer / _remove_peer). */
transport_t *mraft_tcp_transport(mraft_tcp_t *x);

/* Adds peer id at addr ("HOST:PORT") to the transport, from any thread, before or while the
 * node runs (transport_add_peer under the module's lock; the loop dials it at once if this
 * node's id is the lower one, else waits for its dial), and tracks its statistics
 * (mraft_tcp_track). Returns 0, or -QERR_EXISTS (id known), -QERR_INVAL (id 0, this node,
 * bad address), -QERR_TOOBIG (MRAFT_TCP_MAX_PEERS peers already), -QERR_NOMEM. */
#define MRAFT_TCP_MAX_PEERS 4096
int mraft_tcp_add_peer(mraft_tcp_t *x, uint64_t id, const char *addr);
/* Both may be called on the node's loop thread too (e.g. from a state machine's apply, as a
 * member record's will be), but never from inside the transport's own callbacks (a delivery
 * runs under the module's lock, which is not recursive).
 * Removes peer id, from any thread, at any time: its connection is closed, the frames
 * queued for it are freed (counted nowhere: the peer is gone), its statistics are no longer
 * tracked, and a later dial or HELLO from it is refused as an unknown node. Messages the
 * loop sends to it afterwards are refused by the transport (lost, as Raft allows).
 * Returns 0 or -QERR_NOTFOUND. */
int mraft_tcp_remove_peer(mraft_tcp_t *x, uint64_t id);
/* transport_expect_incarnation, from any thread, with the same rules as _remove_peer. */
int mraft_tcp_expect_incarnation(mraft_tcp_t *x, uint64_t id, uint64_t inc);

/* Fills *tr with the table for mraft_open. */
void mraft_tcp_ops(mraft_tcp_t *x, mraft_transport_t *tr);

/* Names the node received messages go to; call after mraft_open, before mraft_start.
 * Messages arriving with no node attached are dropped. */
void mraft_tcp_attach(mraft_tcp_t *x, mraft_node_t *n);

/* Peer statistics readable from any thread: track(id) (any thread, any time; a second
 * track of an id is a no-op; mraft_tcp_add_peer does it) makes the loop copy transport_peer_stats of id at most every
 * MRAFT_TCP_STATS_MS into a table that peer_stats reads under a mutex. peer_stats returns 0
 * and *st (a copy at most that old; all zero until the first copy), or -QERR_NOTFOUND. */
#define MRAFT_TCP_STATS_MS 500
int mraft_tcp_track(mraft_tcp_t *x, uint64_t id);
int mraft_tcp_peer_stats(mraft_tcp_t *x, uint64_t id, transport_peer_stats_t *st);
/* The transport's transport_status_queries and transport_refused, from any thread, as the
 * loop copied them at most MRAFT_TCP_STATS_MS ago (0 before the first copy). */
void mraft_tcp_counters(mraft_tcp_t *x, uint64_t *status_queries, uint64_t *refused);

/* The text status queries are answered with (docs/TRANSPORT.md "Status queries"), from any
 * thread, at any time: copies text[0..len) (UTF-8 without NUL) under a mutex; the loop thread
 * answers each query from the latest copy, with its age. A text over STATUS_MAX_TEXT is cut
 * to the whole lines that fit with the line MRAFT_TCP_STATUS_CUT after them (whole characters
 * if its first line alone is too long). Returns 0, 1 when the text was cut, -QERR_INVAL (not
 * valid UTF-8 or holds a NUL: the previous text stays), -QERR_NOMEM (the same). */
#define MRAFT_TCP_STATUS_CUT "[status cut at 64 KiB]\n"
int mraft_tcp_set_status(mraft_tcp_t *x, const char *text, size_t len);

/* Admin requests (docs/TRANSPORT.md "Admin requests"). The handler is called on the loop
 * thread for each request, with a token; it must not block (copy *req, answer later). It
 * runs inside transport_poll under the module's transport lock: mraft_tcp_add_peer and
 * _remove_peer must not be called from it (mraft_tcp_admin_answer may). */
typedef void (*mraft_tcp_admin_fn)(void *arg, uint64_t token, const frame_admin_t *req);
/* Installs the handler (any thread, any time; meant for before the loop runs; NULL: every
 * request is answered -EOPNOTSUPP with "not supported by this node"). */
void mraft_tcp_set_admin(mraft_tcp_t *x, mraft_tcp_admin_fn fn, void *arg);
/* Answers request `token` from any thread (the handler's too): the answer (code, a copy of
 * text[0..len)) is queued under a mutex and the loop is woken to write it
 * (transport_admin_answer: codes and texts are made valid there). Returns 0, -QERR_NOTFOUND
 * (token unknown: answered already, the client went away, the deadline passed), -QERR_NOMEM. */
int mraft_tcp_admin_answer(mraft_tcp_t *x, uint64_t token, int32_t code, const char *text,
                           size_t len);
/* The transport's transport_admin_requests, as mraft_tcp_counters copies it. */
uint64_t mraft_tcp_admin_requests(mraft_tcp_t *x);

/* Frees the transport (after mraft_close of the node using it). NULL is a no-op. */
void mraft_tcp_free(mraft_tcp_t *x);

#endif
