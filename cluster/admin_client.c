/* cluster/admin_client.c — one admin request (cluster/admin_client.h), over the exchange
 * cluster/status_client.c does for status queries (cluster_peer_request). */
#include <stdlib.h>
#include <string.h>

#include "cluster/admin_client.h"
#include "cluster/err.h"

int cluster_admin_call(const char *hostport, const cluster_status_tls_t *tls, uint32_t timeout_ms,
                       const frame_admin_t *req, cluster_admin_answer_t *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    if (!req) {
        qerr_set_msg(errmsg, "%s: no admin request", hostport ? hostport : "(null)");
        return -QERR_INVAL;
    }
    frame_t f = { .type = FRAME_ADMIN_REQ }, a;
    f.admin.version = ADMIN_VERSION;
    f.admin.op = req->op;
    f.admin.id = req->id;
    f.admin.flags = req->flags;
    memcpy(f.admin.addr, req->addr, sizeof f.admin.addr);
    int rc = cluster_peer_request(hostport, tls, timeout_ms, &f, &a, errmsg);
    if (rc < 0)
        return rc;
    out->code = a.admin.code;
    out->text = a.admin.mem; /* a move: NUL-terminated, len bytes before it */
    out->len = a.admin.len;
    out->node_id = a.admin.node_id;
    out->tls = tls != NULL;
    a.admin.mem = NULL;
    frame_free(&a);
    return 0;
}

void cluster_admin_answer_free(cluster_admin_answer_t *a)
{
    if (!a)
        return;
    free(a->text);
    memset(a, 0, sizeof *a);
}
