/* cluster/status_client.h — the client side of status queries (docs/TRANSPORT.md "Status
 * queries"): asks any member of a cluster, at its peer address, for the status text it last
 * published (mraft_tcp_set_status), as `quorumfs cluster status --cluster HOST:PORT` does.
 * One blocking call, bounded by its timeout; plain TCP or TLS like the member. Thread-safe;
 * raises no SIGPIPE. */
#ifndef QFS_CLUSTER_STATUS_CLIENT_H
#define QFS_CLUSTER_STATUS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PEM files for a query to a TLS member (TLS 1.3 only): a certificate chained to the
 * member's CA whose subject CN is quorumfs-client (or quorumfs-<id>: a node's own), its
 * unencrypted key, and the CA bundle the member's certificate must chain to. All three are
 * required. */
typedef struct cluster_status_tls {
    const char *cert;
    const char *key;
    const char *ca;
} cluster_status_tls_t;

typedef struct cluster_status {
    char *text;              /* the status text, UTF-8, NUL-terminated (len bytes before it) */
    size_t len;
    uint64_t node_id;        /* the member that answered */
    uint64_t age_ms;         /* ms since it published the text; STATUS_AGE_NONE (frame.h):
                                it has published nothing, and the text says "no status yet" */
    bool tls;                /* the answer came over TLS, the member's certificate verified */
} cluster_status_t;

/* Asks the member at hostport ("HOST:PORT", "[V6]:PORT"; each address HOST resolves to is
 * tried in turn) for its status: connects, does TLS if tls is not NULL (verifying that the
 * member's certificate chains to tls->ca and has the subject CN quorumfs-<id> of the id it
 * answers as), sends
 * a STATUS_REQ and reads the STATUS answer (a HELLO before it is skipped). Everything after
 * name resolution is bounded by timeout_ms in total (0: 5000).
 * Returns 0 and *out (release with cluster_status_free), or, with *errmsg naming hostport
 * and the cause (errmsg may be NULL; the caller frees *errmsg):
 *   -QERR_INVAL    hostport is not HOST:PORT or does not resolve; a TLS file cannot be read,
 *                  or the key does not match the certificate;
 *   -QERR_IO       connection refused or reset, the member closed without answering (it
 *                  refused the request: a TLS member asked in plain TCP, a certificate it
 *                  does not accept, or a node without status queries), a TLS handshake failed;
 *   -QERR_TIMEOUT  no answer within timeout_ms;
 *   -QERR_CORRUPT  the bytes that came back are not a status answer (garbage; TLS spoken to
 *                  a plain member gives an I/O error that says so instead);
 *   -QERR_FORMAT   an answer of a status version this code does not read;
 *   -QERR_NOMEM.
 * *out is zeroed on failure. */
int cluster_status_query(const char *hostport, const cluster_status_tls_t *tls,
                         uint32_t timeout_ms, cluster_status_t *out, char **errmsg);

/* Frees out->text and zeroes *out. NULL is a no-op. */
void cluster_status_free(cluster_status_t *out);

/* The one exchange under cluster_status_query and cluster_admin_call (cluster/admin_client.h),
 * for those two: as cluster_status_query, but sends req (a STATUS_REQ or an ADMIN_REQ frame)
 * and reads the answer of the matching type (STATUS or ADMIN; one HELLO may come first) into
 * *answer, which the caller frame_free()s; with TLS the member's certificate must name the
 * node the answer comes from. Same codes and *errmsg; -QERR_INVAL also for a req
 * frame_encode refuses. *answer is zeroed on failure. */
struct frame;
int cluster_peer_request(const char *hostport, const cluster_status_tls_t *tls,
                         uint32_t timeout_ms, const struct frame *req, struct frame *answer,
                         char **errmsg);

#endif
