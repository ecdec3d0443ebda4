/* cluster/admin_client.h — the client side of admin requests (docs/TRANSPORT.md "Admin
 * requests"): sends one ADMIN_REQ to any member of a cluster at its peer address and waits for
 * the member's ADMIN answer, as `quorumfs cluster drain ID --cluster HOST:PORT` does. One
 * blocking call, bounded by its timeout; plain TCP or TLS like the member (the connection,
 * TLS and error rules of cluster/status_client.h). Thread-safe; raises no SIGPIPE. */
#ifndef QFS_CLUSTER_ADMIN_CLIENT_H
#define QFS_CLUSTER_ADMIN_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cluster/frame.h"
#include "cluster/status_client.h"

typedef struct cluster_admin_answer {
    int32_t code;            /* 0 or a negative errno value, as the member's handler said */
    char *text;              /* UTF-8, NUL-terminated (len bytes before it) */
    size_t len;
    uint64_t node_id;        /* the member that answered */
    bool tls;                /* the answer came over TLS, the member's certificate verified */
} cluster_admin_answer_t;

/* One blocking request to the member at hostport (as cluster_status_query: resolution, TLS
 * with tls (NULL: plain TCP), everything after resolution bounded by timeout_ms, 0 = 5000;
 * the member itself gives up after 30 s and answers -ETIMEDOUT). req: op (nonzero), id, flags
 * and addr (NUL-terminated printable ASCII, at most ADMIN_ADDR_MAX bytes) are sent; version is
 * sent as ADMIN_VERSION; the other fields are ignored. Returns 0 and *out (release with
 * cluster_admin_answer_free; out->code is the member's answer, which may be an error), or the
 * error codes and *errmsg rules of cluster_status_query (-QERR_INVAL also for a req that
 * cannot be sent: op 0, a bad addr). *out is zeroed on failure. */
int cluster_admin_call(const char *hostport, const cluster_status_tls_t *tls, uint32_t timeout_ms,
                       const frame_admin_t *req, cluster_admin_answer_t *out, char **errmsg);

/* Frees a->text and zeroes *a. NULL is a no-op. */
void cluster_admin_answer_free(cluster_admin_answer_t *a);

#endif
