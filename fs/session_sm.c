/* fs/session_sm.c — the replicated session table (see session_sm.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/ns_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"

_Static_assert(SESSION_CMD_NS == NS_LOCKS, "session commands live in the locks/ opcode space");

session_t *session_find(const session_table_t *t, uint64_t sid)
{
    for (session_t *s = t->head; s; s = s->next)
        if (s->id == sid)
            return s;
    return NULL;
}

void session_cmd_open(cmdbuf_t *b, uint64_t now, const char *node, uint32_t pid,
                      uint64_t lease_ms)
{
    cmd_begin(b, SOP_OPEN, SESSION_CMD_NS, now);
    cmd_str(b, node);
    cmd_u32(b, pid);
    cmd_u64(b, lease_ms);
}

void session_cmd_renew(cmdbuf_t *b, uint64_t now, uint64_t sid, uint64_t lease_ms)
{
    cmd_begin(b, SOP_RENEW, SESSION_CMD_NS, now);
    cmd_u64(b, sid);
    cmd_u64(b, lease_ms);
}

void session_cmd_end(cmdbuf_t *b, uint64_t now, uint64_t sid, int only_if_expired)
{
    cmd_begin(b, SOP_END, SESSION_CMD_NS, now);
    cmd_u64(b, sid);
    cmd_u8(b, only_if_expired ? 1 : 0);
}

static void unlink_session(session_table_t *t, session_t *s)
{
    session_t **pp = &t->head, *prev = NULL;
    while (*pp != s) {
        ASSERT(*pp);
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = s->next;
    if (t->tail == s)
        t->tail = prev;
    free(s);
}

static session_t *append_session(session_table_t *t)
{
    session_t *s = xcalloc(1, sizeof(*s));
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
    return s;
}

int session_sm_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                     effects_t *fx)
{
    session_table_t *t = &st->sessions;
    switch (h->op) {
    case SOP_OPEN: {
        const uint8_t *node;
        size_t nl = cmd_get_bytes(r, &node);
        uint32_t pid = cmd_get_u32(r);
        uint64_t lease = cmd_get_u64(r);
        if (r->err || nl == 0 || nl >= SESSION_NODE_MAX || lease == 0 ||
            lease > SESSION_LEASE_MAX_MS || memchr(node, 0, nl))
            return -EINVAL;
        session_t *s = append_session(t);
        s->id = ++t->next_id;
        memcpy(s->node, node, nl);
        s->pid = pid;
        s->opened_ms = h->now_ms;
        s->lease_ms = lease;
        s->expires_ms = h->now_ms + lease;
        if (res) {
            memcpy(res->data, &s->id, 8);
            res->len = 8;
        }
        return 0;
    }
    case SOP_RENEW: {
        uint64_t sid = cmd_get_u64(r), lease = cmd_get_u64(r);
        if (r->err || lease == 0 || lease > SESSION_LEASE_MAX_MS)
            return -EINVAL;
        session_t *s = session_find(t, sid);
        if (!s)
            return -ENOENT;
        s->lease_ms = lease;
        s->expires_ms = h->now_ms + lease;
        return 0;
    }
    case SOP_END: {
        uint64_t sid = cmd_get_u64(r);
        uint8_t only_expired = cmd_get_u8(r);
        if (r->err)
            return -EINVAL;
        session_t *s = session_find(t, sid);
        if (!s)
            return -ENOENT;
        if (only_expired && s->expires_ms > h->now_ms)
            return -EAGAIN;     /* renewed since the leader decided: keep it */
        unlink_session(t, s);
        ns_sm_session_end(st, sid, h->now_ms, fx);
        return 0;
    }
    default:
        return -EINVAL;
    }
}

void session_sm_free(session_table_t *t)
{
    for (session_t *s = t->head, *n; s; s = n) {
        n = s->next;
        free(s);
    }
    t->head = t->tail = NULL;
    t->next_id = 0;
}

void session_sm_snapshot(const session_table_t *t, snapout_t *o)
{
    uint32_t n = 0;
    for (session_t *s = t->head; s; s = s->next)
        n++;
    so_u64(o, t->next_id);
    so_u32(o, n);
    for (session_t *s = t->head; s; s = s->next) {
        so_u64(o, s->id);
        so_blob(o, s->node, (uint32_t)strlen(s->node));
        so_u32(o, s->pid);
        so_u64(o, s->opened_ms);
        so_u64(o, s->lease_ms);
        so_u64(o, s->expires_ms);
    }
}

/* The invariants of the table: NULL, or what is broken. One walk for the check and for
 * restore, so a snapshot is accepted exactly when its table would pass the check. */
static const char *session_sm_verify(const session_table_t *t, uint64_t now)
{
    const char *why = NULL;
    uint64_t last = 0;
    const session_t *prev = NULL;
    for (const session_t *s = t->head; s && !why; prev = s, s = s->next) {
        SM_VERIFY(&why, s->id > last && s->id <= t->next_id,
                  "sessions: ids do not grow in opening order up to the next id");
        SM_VERIFY(&why, s->node[0] && memchr(s->node, 0, sizeof(s->node)),
                  "sessions: a session without a node name");
        SM_VERIFY(&why, s->lease_ms > 0 && s->lease_ms <= SESSION_LEASE_MAX_MS,
                  "sessions: a session with no lease or one over the maximum");
        /* opened, then renewed (expires - lease) at or after opening, never after now */
        SM_VERIFY(&why, s->opened_ms <= now && s->expires_ms >= s->lease_ms &&
                  s->expires_ms - s->lease_ms >= s->opened_ms &&
                  s->expires_ms - s->lease_ms <= now,
                  "sessions: opening or renewal times past the shard's time");
        last = s->id;
    }
    if (!why)
        SM_VERIFY(&why, t->tail == prev, "sessions: the tail is not the last session");
    return why;
}

int session_sm_restore(session_table_t *t, uint64_t now, snapin_t *in)
{
    t->next_id = si_u64(in);
    uint32_t n = si_u32(in);
    for (uint32_t i = 0; i < n && !in->err; i++) {
        uint64_t id = si_u64(in);
        char node[SESSION_NODE_MAX];
        int nl = si_str(in, node, sizeof(node));
        if (nl < 0)
            return nl;
        if (memchr(node, 0, (size_t)nl))
            return si_corrupt(in, "sessions: a node name with a NUL byte");
        session_t *s = append_session(t);
        s->id = id;
        memcpy(s->node, node, (size_t)nl);
        s->pid = si_u32(in);
        s->opened_ms = si_u64(in);
        s->lease_ms = si_u64(in);
        s->expires_ms = si_u64(in);
    }
    if (in->err)
        return in->err;
    const char *why = session_sm_verify(t, now);
    return why ? si_corrupt(in, why) : 0;
}

void session_sm_check(const session_table_t *t, uint64_t now)
{
    SM_ASSERT_VERIFIED(session_sm_verify(t, now));
}
