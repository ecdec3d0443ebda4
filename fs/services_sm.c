/* fs/services_sm.c — the services/ state machine (see services_sm.h, docs/SERVICES.md).
 * Services live in a named-object table (fs/ntable.h, creation order); each has its own
 * table of instances, whose ids come from one counter of the namespace (so an instance id
 * names one instance on the shard), and a ring of its last SVC_EVENTS_KEPT events (grown
 * as events come, see ev_reserve).
 *
 * An instance is "up" (visible) while it is healthy and its TTL end, if any, is still to
 * come. Events record the commands that change that: up when one is registered healthy,
 * re-registered at a new address or passes its check again; down when one is removed
 * (rm, TTL expiry, end of its session) while it was healthy, or fails its check. A TTL end
 * that passed is only an event once the leader's EXPIRE is applied.
 *
 * Determinism: every walk follows creation order, never a hash. Out of memory aborts
 * (x* allocators); each command is decoded and checked whole before it changes anything. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/names.h"
#include "fs/ntable.h"
#include "fs/services_sm.h"
#include "fs/session_sm.h"

#define SVSNAP_VERSION 1

typedef struct svev {
    uint64_t rev;
    uint8_t up;
    char *inst, *addr;
} svev_t;

typedef struct inst {
    nentry_t ent;                        /* name, id */
    char *addr;
    uint64_t sid;
    uint32_t weight, load;
    uint64_t ctime_ms, mtime_ms, expires_ms;
    uint8_t healthy;
    uint64_t since_ms;
} inst_t;

typedef struct svc {
    nentry_t ent;
    uint64_t ctime_ms, mtime_ms;
    uint8_t lb, check;
    uint32_t ttl_s, interval_s;
    uint64_t cursor;
    ntable_t insts;
    uint64_t rev;                        /* newest event's revision */
    uint32_t nev;                        /* events kept: revs (rev - nev, rev] */
    svev_t *ev;                          /* ring of evcap slots, slot rev % evcap */
    uint32_t evcap;                      /* 0 (no event yet), 8, 16, .. SVC_EVENTS_KEPT */
} svc_t;

typedef struct svstate {
    ntable_t svcs;
    uint64_t next_svc, next_iid;
} svstate_t;

static svstate_t *SV(const state_t *st) { return st->ns_state[NS_SERVICES]; }
static svc_t *svc_of(const nentry_t *e) { return e ? NTABLE_OBJ(e, svc_t, ent) : NULL; }
static inst_t *inst_of(const nentry_t *e) { return e ? NTABLE_OBJ(e, inst_t, ent) : NULL; }

int services_reserved(const char *name, size_t len)
{
    return (len == 5 && memcmp(name, ".pick", 5) == 0) ||
           (len == 4 && memcmp(name, ".all", 4) == 0) ||
           (len == 7 && memcmp(name, ".events", 7) == 0) ||
           (len > 7 && memcmp(name, ".events@", 8) == 0);
}

static const char *const lb_names[] = { NULL, "round-robin", "random", "weighted", "p2c" };

const char *services_lb_name(int lb)
{
    return lb >= SVLB_RR && lb <= SVLB_P2C ? lb_names[lb] : "?";
}

int services_lb_parse(const char *v, size_t len)
{
    if (len && v[len - 1] == '\n')
        len--;
    for (int i = SVLB_RR; i <= SVLB_P2C; i++)
        if (strlen(lb_names[i]) == len && memcmp(v, lb_names[i], len) == 0)
            return i;
    return -EINVAL;
}

/* An address: 1..SVC_ADDR_MAX bytes, no newline, NUL or other control byte, valid UTF-8. */
static int addr_ok(const char *a, size_t len)
{
    if (len == 0 || len > SVC_ADDR_MAX || !names_utf8_valid(a, len))
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)a[i] < 0x20 || a[i] == 0x7f)
            return 0;
    return 1;
}

static int inst_visible(const inst_t *i, uint64_t now)
{
    return i->healthy && (!i->expires_ms || i->expires_ms > now);
}

int services_visible(const inst_view_t *v, uint64_t now)
{
    return v->healthy && (!v->expires_ms || v->expires_ms > now);
}

/* ---------------------------------------------------------------- objects */

static void inst_del(svc_t *s, inst_t *i)
{
    ntable_del(&s->insts, &i->ent);
    free(i->addr);
    free(i);
}

static svc_t *svc_add(svstate_t *sv, const char *name, size_t len, uint64_t id)
{
    svc_t *s = xcalloc(1, sizeof(*s));
    ntable_add(&sv->svcs, &s->ent, name, len, id);
    return s;
}

static void svc_del(svstate_t *sv, svc_t *s)
{
    while (s->insts.head)
        inst_del(s, inst_of(s->insts.head));
    for (uint32_t k = 0; k < s->evcap; k++) {
        free(s->ev[k].inst);
        free(s->ev[k].addr);
    }
    free(s->ev);
    ntable_del(&sv->svcs, &s->ent);
    free(s);
}

static void set_defaults(svc_t *s)
{
    s->lb = SVLB_RR;
    s->check = SVCHECK_NONE;
    s->ttl_s = SVC_TTL_DEFAULT;
    s->interval_s = SVC_INTERVAL_DEFAULT;
}

static uint64_t ttl_end(const svc_t *s, uint64_t at)
{
    return s->ttl_s ? at + (uint64_t)s->ttl_s * 1000 : 0;
}

/* The slot of revision rev in s's ring (evcap > 0). */
static svev_t *ev_at(const svc_t *s, uint64_t rev)
{
    return &s->ev[rev % s->evcap];
}

/* Makes s's ring hold at least n events (n <= SVC_EVENTS_KEPT): it grows by doubling from 8
 * slots, so a service costs memory for the events it had, not 1,024 slots from its mkdir
 * (32 KiB each: 10,000 empty services took 320 MB). The kept events move to their slots of
 * the larger ring. */
static void ev_reserve(svc_t *s, uint32_t n)
{
    if (n <= s->evcap)
        return;
    uint32_t cap = s->evcap ? s->evcap : 8;
    while (cap < n)
        cap *= 2;
    if (cap > SVC_EVENTS_KEPT)
        cap = SVC_EVENTS_KEPT;
    svev_t *ev = xcalloc(cap, sizeof(*ev));
    for (uint64_t rev = s->rev - s->nev + 1; s->nev && rev <= s->rev; rev++)
        ev[rev % cap] = *ev_at(s, rev);
    free(s->ev);
    s->ev = ev;
    s->evcap = cap;
}

/* Records an event of s and tells watchers (an EFF_CONFIG_REV of NS_SERVICES). */
static void event(svc_t *s, int up, const inst_t *i, effects_t *fx)
{
    if (s->nev < SVC_EVENTS_KEPT)
        ev_reserve(s, s->nev + 1);
    svev_t *e = ev_at(s, ++s->rev);
    free(e->inst);
    free(e->addr);
    e->rev = s->rev;
    e->up = (uint8_t)up;
    e->inst = xstrdup(i->ent.name);
    e->addr = xstrdup(i->addr);
    if (s->nev < SVC_EVENTS_KEPT)
        s->nev++;
    effect_t *x = effects_add(fx, EFF_CONFIG_REV, NS_SERVICES, 0, 0);
    x->u.config.rev = s->rev;
}

/* Removes instance i (a down event when it was healthy). */
static void inst_remove(svc_t *s, inst_t *i, uint64_t now, effects_t *fx)
{
    if (i->healthy)
        event(s, 0, i, fx);
    s->mtime_ms = now;
    inst_del(s, i);
}

/* ---------------------------------------------------------------- apply */

typedef struct args {
    svc_t *s;
    const char *inst;
    size_t ilen;
} args_t;

/* Reads "str svc" (and "str inst" when with_inst) into *a. 0, -EINVAL (malformed) or
 * -ENOENT (no such service). */
static int get_svc(svstate_t *sv, cmdrd_t *r, int with_inst, args_t *a)
{
    const char *name;
    memset(a, 0, sizeof(*a));
    size_t len = cmd_get_path(r, &name);
    a->ilen = with_inst ? cmd_get_path(r, &a->inst) : 0;
    if (r->err || len == 0 || (with_inst && a->ilen == 0))
        return -EINVAL;
    a->s = svc_of(ntable_find(&sv->svcs, name, len));
    return a->s ? 0 : -ENOENT;
}

static int apply_mkdir(svstate_t *sv, const cmd_hdr_t *h, cmdrd_t *r)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    if (r->err || names_check(name, len, 0) < 0)
        return -EINVAL;
    if (ntable_find(&sv->svcs, name, len))
        return -EEXIST;
    svc_t *s = svc_add(sv, name, len, ++sv->next_svc);
    set_defaults(s);
    s->ctime_ms = s->mtime_ms = h->now_ms;
    return 0;
}

/* Watchers of a removed service are told (an EFF_CONFIG_REV with its last revision): their
 * reads end (EOF). */
static int apply_rmdir(svstate_t *sv, cmdrd_t *r, effects_t *fx)
{
    args_t a;
    int rc = get_svc(sv, r, 0, &a);
    if (rc < 0)
        return rc;
    if (a.s->insts.head)
        return -ENOTEMPTY;
    effect_t *x = effects_add(fx, EFF_CONFIG_REV, NS_SERVICES, 0, 0);
    x->u.config.rev = a.s->rev;
    svc_del(sv, a.s);
    return 0;
}

static int apply_set(svstate_t *sv, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    args_t a;
    int rc = get_svc(sv, r, 0, &a);
    uint8_t which = cmd_get_u8(r);
    uint64_t v = cmd_get_u64(r);
    if (r->err)
        return -EINVAL;
    int ok = (which == SVSET_LB && v >= SVLB_RR && v <= SVLB_P2C) ||
             (which == SVSET_TTL && v <= SVC_TTL_MAX) ||
             (which == SVSET_CHECK && v <= SVCHECK_TCP) ||
             (which == SVSET_INTERVAL && v >= 1 && v <= SVC_INTERVAL_MAX);
    if (!ok)
        return -EINVAL;
    if (rc < 0)
        return rc;
    svc_t *s = a.s;
    switch (which) {
    case SVSET_LB: s->lb = (uint8_t)v; break;
    case SVSET_CHECK:
        s->check = (uint8_t)v;
        /* without checks nothing keeps an instance failing: all are healthy again */
        for (nentry_t *e = s->insts.head; e && v == SVCHECK_NONE; e = e->next) {
            inst_t *i = inst_of(e);
            if (!i->healthy) {
                i->healthy = 1;
                i->since_ms = h->now_ms;
                event(s, 1, i, fx);
            }
        }
        break;
    case SVSET_INTERVAL: s->interval_s = (uint32_t)v; break;
    case SVSET_TTL:
        s->ttl_s = (uint32_t)v;
        for (nentry_t *e = s->insts.head; e; e = e->next)
            inst_of(e)->expires_ms = ttl_end(s, inst_of(e)->mtime_ms);
        break;
    }
    s->mtime_ms = h->now_ms;
    return 0;
}

/* REG, and REG_IF (if_id: only instance iid, never a creation). */
static int apply_reg(state_t *st, svstate_t *sv, const cmd_hdr_t *h, cmdrd_t *r,
                     effects_t *fx, int if_id)
{
    args_t a;
    int rc = get_svc(sv, r, 1, &a);
    uint64_t sid = cmd_get_u64(r);
    uint64_t iid = if_id ? cmd_get_u64(r) : 0;
    const uint8_t *p;
    size_t alen = cmd_get_bytes(r, &p);
    if (r->err || rc == -EINVAL || names_check(a.inst, a.ilen, 0) < 0 ||
        services_reserved(a.inst, a.ilen) || !addr_ok((const char *)p, alen))
        return -EINVAL;
    if (rc < 0)
        return rc;
    if (!session_find(&st->sessions, sid))
        return -ENOLCK;
    svc_t *s = a.s;
    inst_t *i = inst_of(ntable_find(&s->insts, a.inst, a.ilen));
    if (if_id && (!i || i->ent.id != iid))
        return -ENOENT;
    if (!i) {
        if (s->insts.n >= SVC_INST_MAX)
            return -ENOSPC;
        i = xcalloc(1, sizeof(*i));
        ntable_add(&s->insts, &i->ent, a.inst, a.ilen, ++sv->next_iid);
        i->addr = xstrndup((const char *)p, alen);
        i->weight = SVC_WEIGHT_DEFAULT;
        i->ctime_ms = h->now_ms;
        i->healthy = 1;
        i->since_ms = h->now_ms;
        event(s, 1, i, fx);
    } else if (strlen(i->addr) != alen || memcmp(i->addr, p, alen) != 0) {
        free(i->addr);
        i->addr = xstrndup((const char *)p, alen);
        if (i->healthy)
            event(s, 1, i, fx);      /* up again, at its new address */
    }
    i->sid = sid;
    i->mtime_ms = h->now_ms;
    i->expires_ms = ttl_end(s, h->now_ms);
    s->mtime_ms = h->now_ms;
    return 0;
}

/* The instance of a (after get_svc with_inst), or NULL. */
static inst_t *arg_inst(const args_t *a)
{
    return inst_of(ntable_find(&a->s->insts, a->inst, a->ilen));
}

static int apply_touch(svstate_t *sv, const cmd_hdr_t *h, cmdrd_t *r)
{
    args_t a;
    int rc = get_svc(sv, r, 1, &a);
    inst_t *i = rc == 0 ? arg_inst(&a) : NULL;
    if (rc < 0)
        return rc;
    if (!i)
        return -ENOENT;
    i->mtime_ms = h->now_ms;
    i->expires_ms = ttl_end(a.s, h->now_ms);
    return 0;
}

static int apply_unreg(svstate_t *sv, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    args_t a;
    int rc = get_svc(sv, r, 1, &a);
    inst_t *i = rc == 0 ? arg_inst(&a) : NULL;
    if (rc < 0)
        return rc;
    if (!i)
        return -ENOENT;
    inst_remove(a.s, i, h->now_ms, fx);
    return 0;
}

static int apply_seti(svstate_t *sv, cmdrd_t *r)
{
    args_t a;
    int rc = get_svc(sv, r, 1, &a);
    uint8_t which = cmd_get_u8(r);
    uint64_t v = cmd_get_u64(r);
    if (r->err || !((which == SVISET_WEIGHT && v <= SVC_WEIGHT_MAX) ||
                    (which == SVISET_LOAD && v <= SVC_LOAD_MAX)))
        return -EINVAL;
    inst_t *i = rc == 0 ? arg_inst(&a) : NULL;
    if (rc < 0)
        return rc;
    if (!i)
        return -ENOENT;
    if (which == SVISET_WEIGHT)
        i->weight = (uint32_t)v;
    else
        i->load = (uint32_t)v;
    return 0;
}

/* Round-robin: the first visible instance after the cursor in creation order (ids grow
 * along it), wrapping around. */
static int apply_pick(svstate_t *sv, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    args_t a;
    int rc = get_svc(sv, r, 0, &a);
    if (rc < 0)
        return rc;
    svc_t *s = a.s;
    inst_t *first = NULL, *next = NULL;
    for (nentry_t *e = s->insts.head; e && !next; e = e->next) {
        inst_t *i = inst_of(e);
        if (!inst_visible(i, h->now_ms))
            continue;
        if (!first)
            first = i;
        if (e->id > s->cursor)
            next = i;
    }
    if (!next)
        next = first;
    if (!next)
        return -EAGAIN;
    s->cursor = next->ent.id;
    if (res) {
        memcpy(res->data, &s->cursor, 8);
        res->len = 8;
    }
    return 0;
}

static int apply_health(svstate_t *sv, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    args_t a;
    int rc = get_svc(sv, r, 1, &a);
    uint64_t iid = cmd_get_u64(r);
    uint8_t healthy = cmd_get_u8(r);
    if (r->err || healthy > 1)
        return -EINVAL;
    inst_t *i = rc == 0 ? arg_inst(&a) : NULL;
    if (rc < 0)
        return rc;
    if (!i || i->ent.id != iid)
        return -ENOENT;               /* removed, or registered anew, since the check */
    if (a.s->check != SVCHECK_TCP)
        return -EAGAIN;               /* checks were turned off since */
    if (i->healthy == healthy)
        return 0;
    i->healthy = healthy;
    i->since_ms = h->now_ms;
    event(a.s, healthy, i, fx);
    return 0;
}

static int apply_expire(svstate_t *sv, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    args_t a;
    int rc = get_svc(sv, r, 1, &a);
    uint64_t iid = cmd_get_u64(r);
    if (r->err)
        return -EINVAL;
    inst_t *i = rc == 0 ? arg_inst(&a) : NULL;
    if (rc < 0)
        return rc;
    if (!i || i->ent.id != iid)
        return -ENOENT;
    if (!i->expires_ms || i->expires_ms > h->now_ms)
        return -EAGAIN;               /* renewed since the leader looked */
    inst_remove(a.s, i, h->now_ms, fx);
    return 0;
}

static int sv_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                    effects_t *fx)
{
    svstate_t *sv = SV(st);
    switch (h->op) {
    case SVOP_MKDIR:  return apply_mkdir(sv, h, r);
    case SVOP_RMDIR:  return apply_rmdir(sv, r, fx);
    case SVOP_SET:    return apply_set(sv, h, r, fx);
    case SVOP_REG:    return apply_reg(st, sv, h, r, fx, 0);
    case SVOP_REG_IF: return apply_reg(st, sv, h, r, fx, 1);
    case SVOP_TOUCH:  return apply_touch(sv, h, r);
    case SVOP_UNREG:  return apply_unreg(sv, h, r, fx);
    case SVOP_SETI:   return apply_seti(sv, r);
    case SVOP_PICK:   return apply_pick(sv, h, r, res);
    case SVOP_HEALTH: return apply_health(sv, h, r, fx);
    case SVOP_EXPIRE: return apply_expire(sv, h, r, fx);
    default:          return -EINVAL;
    }
}

static void sv_init(state_t *st)
{
    st->ns_state[NS_SERVICES] = xcalloc(1, sizeof(svstate_t));
}

static void sv_free(state_t *st)
{
    svstate_t *sv = SV(st);
    if (!sv)
        return;
    while (sv->svcs.head)
        svc_del(sv, svc_of(sv->svcs.head));
    free(sv);
    st->ns_state[NS_SERVICES] = NULL;
}

/* The instances session sid registered go (down events for the healthy ones), services and
 * instances in creation order. */
static void sv_session_end(state_t *st, uint64_t sid, uint64_t now, effects_t *fx)
{
    svstate_t *sv = SV(st);
    for (nentry_t *e = sv->svcs.head; e; e = e->next) {
        svc_t *s = svc_of(e);
        for (nentry_t *x = s->insts.head, *next; x; x = next) {
            next = x->next;
            if (inst_of(x)->sid == sid)
                inst_remove(s, inst_of(x), now, fx);
        }
    }
}

/* ---------------------------------------------------------------- snapshot
 * Format: docs/FORMATS.md "services/ section". */

static void so_str(snapout_t *o, const char *s) { so_blob(o, s, (uint32_t)strlen(s)); }

static void snap_inst(void *arg, snapout_t *o, const nentry_t *e)
{
    const inst_t *i = inst_of(e);
    so_str(o, i->addr);
    so_u64(o, i->sid);
    so_u32(o, i->weight);
    so_u32(o, i->load);
    so_u64(o, i->ctime_ms);
    so_u64(o, i->mtime_ms);
    so_u64(o, i->expires_ms);
    so_u8(o, i->healthy);
    so_u64(o, i->since_ms);
}

static void snap_svc(void *arg, snapout_t *o, const nentry_t *e)
{
    const svc_t *s = svc_of(e);
    so_u64(o, s->ctime_ms);
    so_u64(o, s->mtime_ms);
    so_u8(o, s->lb);
    so_u8(o, s->check);
    so_u32(o, s->ttl_s);
    so_u32(o, s->interval_s);
    so_u64(o, s->cursor);
    so_u64(o, s->rev);
    so_u32(o, s->nev);
    for (uint64_t rev = s->rev - s->nev + 1; rev <= s->rev && s->nev; rev++) {
        const svev_t *ev = ev_at(s, rev);
        so_u8(o, ev->up);
        so_str(o, ev->inst);
        so_str(o, ev->addr);
    }
    ntable_snapshot(o, &s->insts, snap_inst, NULL);
}

static void sv_snapshot(const state_t *st, snapout_t *o)
{
    const svstate_t *sv = SV(st);
    so_u32(o, SVSNAP_VERSION);
    so_u64(o, sv->next_svc);
    so_u64(o, sv->next_iid);
    ntable_snapshot(o, &sv->svcs, snap_svc, NULL);
}

/* Reads a u32-prefixed string of 1..max bytes as a new malloc'ed C string, or NULL (error
 * latched). */
static char *si_cstr(snapin_t *in, size_t max, const char *what)
{
    char buf[SVC_ADDR_MAX > NAME_MAX_BYTES ? SVC_ADDR_MAX + 1 : NAME_MAX_BYTES + 1];
    ASSERT(max < sizeof(buf));
    int n = si_str(in, buf, max + 1);
    if (n < 0) {
        if (!in->err)
            si_corrupt(in, what);
        return NULL;
    }
    return xstrndup(buf, (size_t)n);
}

struct rarg {
    svstate_t *sv;
    svc_t *s;
};

static int restore_inst(void *arg, snapin_t *in, const nkey_t *k)
{
    svc_t *s = arg;
    char *addr = si_cstr(in, SVC_ADDR_MAX, "services: a bad instance address");
    if (!addr)
        return in->err;
    inst_t *i = xcalloc(1, sizeof(*i));
    ntable_add(&s->insts, &i->ent, k->name, k->len, k->id);
    i->addr = addr;
    i->sid = si_u64(in);
    i->weight = si_u32(in);
    i->load = si_u32(in);
    i->ctime_ms = si_u64(in);
    i->mtime_ms = si_u64(in);
    i->expires_ms = si_u64(in);
    i->healthy = si_u8(in);
    i->since_ms = si_u64(in);
    return in->err;
}

static int restore_svc(void *arg, snapin_t *in, const nkey_t *k)
{
    struct rarg *ra = arg;
    svc_t *s = svc_add(ra->sv, k->name, k->len, k->id);
    s->ctime_ms = si_u64(in);
    s->mtime_ms = si_u64(in);
    s->lb = si_u8(in);
    s->check = si_u8(in);
    s->ttl_s = si_u32(in);
    s->interval_s = si_u32(in);
    s->cursor = si_u64(in);
    s->rev = si_u64(in);
    uint32_t nev = si_u32(in);
    if (in->err)
        return in->err;
    if (nev > SVC_EVENTS_KEPT || nev > s->rev)
        return si_corrupt(in, "services: more events than revisions or than are kept");
    ev_reserve(s, nev);
    for (uint32_t j = 0; j < nev; j++) {
        svev_t *ev = ev_at(s, s->rev - nev + 1 + j);
        ev->rev = s->rev - nev + 1 + j;
        ev->up = si_u8(in);
        if (!(ev->inst = si_cstr(in, NAME_MAX_BYTES, "services: a bad event instance")) ||
            !(ev->addr = si_cstr(in, SVC_ADDR_MAX, "services: a bad event address")))
            return in->err;
        s->nev++;
    }
    return ntable_restore(&s->insts, in, ra->sv->next_iid, "services instances",
                          restore_inst, s);
}

static int sv_restore(state_t *st, snapin_t *in)
{
    svstate_t *sv = SV(st);
    if (si_u32(in) != SVSNAP_VERSION)
        return in->err ? in->err : -QERR_FORMAT;
    sv->next_svc = si_u64(in);
    sv->next_iid = si_u64(in);
    struct rarg ra = { sv, NULL };
    int rc = ntable_restore(&sv->svcs, in, sv->next_svc, "services", restore_svc, &ra);
    if (rc < 0)
        return rc;
    const char *why = services_sm_verify(st);
    if (why)
        return si_corrupt(in, why);
    /* A "restored" wake-up (rev 0): the events a parked `.events` read or a poller waits
     * for may be in the entries the snapshot replaced, and no apply would tell them; the
     * front re-checks every watch of the shard (fs/state.c delivers it after the lock). */
    effects_add(&st->outbox, EFF_CONFIG_REV, NS_SERVICES, 0, 0)->u.config.rev = 0;
    return 0;
}

/* ---------------------------------------------------------------- invariants */

static const char *verify_inst(const state_t *st, const svstate_t *sv, const svc_t *s,
                               const inst_t *i)
{
    if (i->ent.id > sv->next_iid || names_check(i->ent.name, i->ent.namelen, 0) < 0 ||
        services_reserved(i->ent.name, i->ent.namelen))
        return "services: an instance id above the ids handed out, or a bad name";
    if (!addr_ok(i->addr, strlen(i->addr)))
        return "services: a bad instance address";
    if (!session_find(&st->sessions, i->sid))
        return "services: an instance of a session that is not live";
    if (i->weight > SVC_WEIGHT_MAX || i->load > SVC_LOAD_MAX || i->healthy > 1)
        return "services: an instance weight, load or health out of range";
    if (i->ctime_ms > i->mtime_ms || i->mtime_ms > st->now_ms || i->since_ms < i->ctime_ms ||
        i->since_ms > st->now_ms)
        return "services: an instance changed before it was made, or at a time to come";
    if (i->expires_ms != ttl_end(s, i->mtime_ms))
        return "services: a TTL end that is not the last renewal plus the service's TTL";
    return NULL;
}

const char *services_sm_verify(const state_t *st)
{
    const svstate_t *sv = SV(st);
    for (const nentry_t *e = sv->svcs.head; e; e = e->next) {
        const svc_t *s = svc_of(e);
        if (e->id > sv->next_svc || names_check(e->name, e->namelen, 0) < 0)
            return "services: a service id above the ids handed out, or a bad name";
        if (s->ctime_ms > s->mtime_ms || s->mtime_ms > st->now_ms)
            return "services: a service changed before it was made, or at a time to come";
        if (s->lb < SVLB_RR || s->lb > SVLB_P2C || s->check > SVCHECK_TCP ||
            s->ttl_s > SVC_TTL_MAX || s->interval_s < 1 || s->interval_s > SVC_INTERVAL_MAX)
            return "services: a setting out of range";
        if (s->cursor > sv->next_iid)
            return "services: a round-robin cursor above the instance ids handed out";
        if (s->nev > SVC_EVENTS_KEPT || s->nev > s->rev || s->nev > s->evcap)
            return "services: more events kept than revisions";
        for (uint64_t rev = s->rev - s->nev + 1; s->nev && rev <= s->rev; rev++) {
            const svev_t *ev = s->evcap ? ev_at(s, rev) : NULL;
            if (!ev || ev->rev != rev || ev->up > 1 || !ev->inst || !ev->addr)
                return "services: an event ring out of revision order";
        }
        if (s->insts.n > SVC_INST_MAX)
            return "services: more instances than a service holds";
        for (const nentry_t *x = s->insts.head; x && s->check == SVCHECK_NONE; x = x->next)
            if (!inst_of(x)->healthy)
                return "services: a failing instance of a service without checks";
        for (const nentry_t *x = s->insts.head; x; x = x->next) {
            const char *why = verify_inst(st, sv, s, inst_of(x));
            if (why)
                return why;
        }
    }
    return NULL;
}

void services_sm_check(const state_t *st)
{
    const svstate_t *sv = SV(st);
    ASSERT(sv);
    ntable_check(&sv->svcs);
    for (const nentry_t *e = sv->svcs.head; e; e = e->next)
        ntable_check(&svc_of(e)->insts);
    SM_ASSERT_VERIFIED(services_sm_verify(st));
}

/* ---------------------------------------------------------------- read API */

static void view_svc(const svc_t *s, svc_view_t *v)
{
    v->id = s->ent.id;
    v->name = s->ent.name;
    v->ctime_ms = s->ctime_ms;
    v->mtime_ms = s->mtime_ms;
    v->lb = s->lb;
    v->check = s->check;
    v->ttl_s = s->ttl_s;
    v->interval_s = s->interval_s;
    v->cursor = s->cursor;
    v->rev = s->rev;
    v->ninst = (uint32_t)s->insts.n;
}

static void view_inst(const inst_t *i, inst_view_t *v)
{
    v->id = i->ent.id;
    v->name = i->ent.name;
    v->addr = i->addr;
    v->sid = i->sid;
    v->weight = i->weight;
    v->load = i->load;
    v->ctime_ms = i->ctime_ms;
    v->mtime_ms = i->mtime_ms;
    v->expires_ms = i->expires_ms;
    v->healthy = i->healthy;
    v->since_ms = i->since_ms;
}

static const svc_t *find_id(const state_t *st, uint64_t id)
{
    return svc_of(ntable_find_id(&SV(st)->svcs, id));
}

int services_sm_get(const state_t *st, const char *name, size_t len, svc_view_t *v)
{
    const svc_t *s = svc_of(ntable_find(&SV(st)->svcs, name, len));
    if (!s)
        return -ENOENT;
    view_svc(s, v);
    return 0;
}

int services_sm_get_id(const state_t *st, uint64_t id, svc_view_t *v)
{
    const svc_t *s = find_id(st, id);
    if (!s)
        return -ENOENT;
    view_svc(s, v);
    return 0;
}

int services_sm_inst(const state_t *st, uint64_t svc, const char *inst, size_t len,
                     inst_view_t *v)
{
    const svc_t *s = find_id(st, svc);
    const inst_t *i = s ? inst_of(ntable_find(&s->insts, inst, len)) : NULL;
    if (!i)
        return -ENOENT;
    view_inst(i, v);
    return 0;
}

int services_sm_inst_id(const state_t *st, uint64_t iid, uint64_t *svc_id, inst_view_t *v)
{
    for (const nentry_t *e = SV(st)->svcs.head; e; e = e->next) {
        const inst_t *i = inst_of(ntable_find_id(&svc_of(e)->insts, iid));
        if (i) {
            if (svc_id)
                *svc_id = e->id;
            view_inst(i, v);
            return 0;
        }
    }
    return -ENOENT;
}

int services_sm_each(const state_t *st, int (*fn)(void *arg, const svc_view_t *v), void *arg)
{
    for (const nentry_t *e = SV(st)->svcs.head; e; e = e->next) {
        svc_view_t v;
        view_svc(svc_of(e), &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

int services_sm_each_inst(const state_t *st, uint64_t svc,
                          int (*fn)(void *arg, const inst_view_t *v), void *arg)
{
    const svc_t *s = find_id(st, svc);
    if (!s)
        return -ENOENT;
    for (const nentry_t *e = s->insts.head; e; e = e->next) {
        inst_view_t v;
        view_inst(inst_of(e), &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

/* The n-th (from 0) visible instance of s at now. */
static const inst_t *nth_visible(const svc_t *s, uint64_t now, uint64_t n)
{
    for (const nentry_t *e = s->insts.head; e; e = e->next)
        if (inst_visible(inst_of(e), now) && n-- == 0)
            return inst_of(e);
    return NULL;
}

int services_sm_pick_local(const state_t *st, uint64_t svc, uint64_t now,
                           uint64_t (*rnd)(void *arg), void *arg, inst_view_t *v)
{
    const svc_t *s = find_id(st, svc);
    if (!s)
        return -ENOENT;
    uint64_t n = 0, wsum = 0;
    for (const nentry_t *e = s->insts.head; e; e = e->next)
        if (inst_visible(inst_of(e), now)) {
            n++;
            wsum += inst_of(e)->weight;
        }
    if (n == 0)
        return -EAGAIN;
    const inst_t *pick = NULL;
    if (s->lb == SVLB_WEIGHTED && wsum > 0) {
        uint64_t x = rnd(arg) % wsum;     /* wsum <= 2^34: the bias is below 2^-29 */
        for (const nentry_t *e = s->insts.head; e && !pick; e = e->next) {
            const inst_t *i = inst_of(e);
            if (!inst_visible(i, now))
                continue;
            if (x < i->weight)
                pick = i;
            else
                x -= i->weight;
        }
    } else if (s->lb == SVLB_P2C && n >= 2) {
        uint64_t a = rnd(arg) % n, b = rnd(arg) % (n - 1);
        if (b >= a)
            b++;                           /* two distinct candidates */
        const inst_t *ia = nth_visible(s, now, a), *ib = nth_visible(s, now, b);
        pick = ib->load < ia->load ? ib : ia;
    } else {
        pick = nth_visible(s, now, rnd(arg) % n);
    }
    ASSERT(pick);
    view_inst(pick, v);
    return 0;
}

int services_events_stale(const state_t *st, uint64_t svc, uint64_t after)
{
    const svc_t *s = find_id(st, svc);
    return s && after < s->rev - s->nev;
}

/* Escapes p for an event line (room for 4 bytes per input byte + 1); returns the length. */
static size_t escape(const char *p, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        if (*c == '\\' || *c == '\n') {
            out[n++] = '\\';
            out[n++] = *c == '\n' ? 'n' : '\\';
        } else if (*c < 0x20) {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[*c >> 4];
            out[n++] = hex[*c & 15];
        } else {
            out[n++] = (char)*c;
        }
    }
    out[n] = 0;
    return n;
}

int services_read_events(const state_t *st, uint64_t svc, uint64_t *cursor, char *buf,
                         size_t size)
{
    const svc_t *s = find_id(st, svc);
    if (!s)
        return -ENOENT;
    if (*cursor < s->rev - s->nev)
        return -ESTALE;
    size_t used = 0;
    for (uint64_t rev = *cursor + 1; rev <= s->rev; rev++) {
        const svev_t *ev = ev_at(s, rev);
        char ei[4 * NAME_MAX_BYTES + 1], ea[4 * SVC_ADDR_MAX + 1], line[SVC_EVENT_LINE_MAX];
        escape(ev->inst, ei);
        escape(ev->addr, ea);
        int n = snprintf(line, sizeof(line), "%llu %s %s %s\n", (unsigned long long)rev,
                         ev->up ? "up" : "down", ei, ea);
        ASSERT(n > 0 && (size_t)n < sizeof(line));
        if (used + (size_t)n > size)
            break;
        memcpy(buf + used, line, (size_t)n);
        used += (size_t)n;
        *cursor = rev;
    }
    return (int)used;
}

/* ---------------------------------------------------------------- encoders */

static void begin(cmdbuf_t *b, uint8_t op, uint64_t now, const char *svc, const char *inst)
{
    cmd_begin(b, op, NS_SERVICES, now);
    cmd_str(b, svc);
    if (inst)
        cmd_str(b, inst);
}

void services_cmd_mkdir(cmdbuf_t *b, uint64_t now, const char *svc)
{
    begin(b, SVOP_MKDIR, now, svc, NULL);
}

void services_cmd_rmdir(cmdbuf_t *b, uint64_t now, const char *svc)
{
    begin(b, SVOP_RMDIR, now, svc, NULL);
}

void services_cmd_set(cmdbuf_t *b, uint64_t now, const char *svc, uint8_t which,
                      uint64_t value)
{
    begin(b, SVOP_SET, now, svc, NULL);
    cmd_u8(b, which);
    cmd_u64(b, value);
}

void services_cmd_reg(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                      uint64_t sid, const void *addr, size_t len)
{
    begin(b, SVOP_REG, now, svc, inst);
    cmd_u64(b, sid);
    cmd_bytes(b, addr, len);
}

void services_cmd_reg_if(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                         uint64_t sid, uint64_t iid, const void *addr, size_t len)
{
    begin(b, SVOP_REG_IF, now, svc, inst);
    cmd_u64(b, sid);
    cmd_u64(b, iid);
    cmd_bytes(b, addr, len);
}

void services_cmd_touch(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst)
{
    begin(b, SVOP_TOUCH, now, svc, inst);
}

void services_cmd_unreg(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst)
{
    begin(b, SVOP_UNREG, now, svc, inst);
}

void services_cmd_seti(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                       uint8_t which, uint64_t value)
{
    begin(b, SVOP_SETI, now, svc, inst);
    cmd_u8(b, which);
    cmd_u64(b, value);
}

void services_cmd_pick(cmdbuf_t *b, uint64_t now, const char *svc)
{
    begin(b, SVOP_PICK, now, svc, NULL);
}

void services_cmd_health(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                         uint64_t iid, int healthy)
{
    begin(b, SVOP_HEALTH, now, svc, inst);
    cmd_u64(b, iid);
    cmd_u8(b, healthy ? 1 : 0);
}

void services_cmd_expire(cmdbuf_t *b, uint64_t now, const char *svc, const char *inst,
                         uint64_t iid)
{
    begin(b, SVOP_EXPIRE, now, svc, inst);
    cmd_u64(b, iid);
}

uint64_t services_result_pick(const sm_result_t *res)
{
    uint64_t id;
    ASSERT(res->code == 0 && res->len == 8);
    memcpy(&id, res->data, 8);
    return id;
}

const ns_sm_t services_sm = {
    .init = sv_init,
    .free = sv_free,
    .apply = sv_apply,
    .session_end = sv_session_end,
    .snapshot = sv_snapshot,
    .restore = sv_restore,
    .check = services_sm_check,
};
