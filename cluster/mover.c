/* cluster/mover.c — reconciles the groups' configurations with the member record (see
 * mover.h; design in docs/MEMBERSHIP.md "The mover").
 *
 * Per group this node leads, with no configuration change pending, one step per round, the
 * first that applies:
 *   1. a learner (or staging server) that is no longer a member (not joining or active in
 *      the record): REMOVE it;
 *   2. once every target voter is a voter: a voter that is not a target, other than this
 *      node: REMOVE it, and if it is still a member, ADD_LEARNER it back at once (a demotion;
 *      this node, if it is the one, waits for the balancer to hand its leadership to the
 *      preferred leader, who then demotes it);
 *   3. a target voter that is a learner and caught up (heard from, replicating, within
 *      MOVER_PROMOTE_LAG entries): PROMOTE it;
 *   4. a member that is not in the configuration: ADD_LEARNER it (it then catches up from the
 *      log or by snapshot), unless MOVER_CATCHUPS_MAX groups led here are sending snapshots.
 * So a group never has fewer than R voters while members move: new voters come in before old
 * ones go. The meta group's leader also founds the record, makes a joining member active once
 * every group's configuration (as this node applied it) has it, and removes a leaving member
 * from the record once none has it. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cluster/err.h"
#include "cluster/layout.h"
#include "cluster/mover.h"
#include "cluster/mraft.h"
#include "cluster/placement.h"
#include "cluster/raft.h"

struct mover {
    mover_config_t cfg;
    group_peer_t *peers;         /* cfg->peers, copied (addresses too) */
    uint32_t ngroups;            /* nshards + 1: index nshards is the meta group */
    pthread_mutex_t mu;          /* guards everything below it up to the thread's own part */
    pthread_cond_t cv;
    int stop, kicked;
    meta_view_t view;            /* the record as last applied (cluster_id 0: not founded) */
    uint64_t *targets;           /* [ngroups * replicas]: the layout, when has_layout */
    int has_layout;
    char mismatch[160];          /* nonempty: the record's layout is not this node's (no
                                    layout then: this node must not act) */
    pthread_t th;
    int started;
    /* the thread's own */
    uint64_t *tpeers;            /* the transport's peers as this mover knows them */
    size_t ntpeers;
    uint32_t next_group;         /* where the next round starts (fairness) */
    int was_member;              /* the record listed this node once */
    int said_removed;            /* the record dropped this node (atomic: mover_removed) */
    int said_other_inc;          /* record_incarnation said the record knows another */
};

static group_t *group_at(const mover_t *m, uint32_t gi)
{
    return gi < m->cfg.nshards ? m->cfg.shards[gi] : m->cfg.meta_group;
}

static uint32_t group_id_at(const mover_t *m, uint32_t gi)
{
    return gi < m->cfg.nshards ? gi : m->cfg.meta_id;
}

/* "shard 3" or "meta group" */
static const char *group_name(const mover_t *m, uint32_t gi, char *buf, size_t size)
{
    if (gi < m->cfg.nshards)
        snprintf(buf, size, "shard %u", gi);
    else
        snprintf(buf, size, "meta group");
    return buf;
}

static void say(const mover_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const mover_t *m, const char *fmt, ...)
{
    if (!m->cfg.log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    m->cfg.log(m->cfg.log_ctx, line);
}

/* ---------------------------------------------------------------- layout (under mu) */

static int is_member_state(uint8_t s) { return s == META_JOINING || s == META_ACTIVE; }

/* Recomputes the targets from the record (or the founding peers) and sets every group's
 * preferred leader. mu held. */
static void relayout(mover_t *m)
{
    const uint32_t R = m->cfg.replicas;
    uint64_t ids[LAYOUT_MAX_MEMBERS];
    size_t n = 0;
    m->mismatch[0] = 0;
    if (m->view.replicas && (m->view.replicas != R || m->view.shards != m->cfg.nshards))
        snprintf(m->mismatch, sizeof(m->mismatch), "this node runs with --shards %u "
                 "--replicas %u, the cluster with --shards %u --replicas %u", m->cfg.nshards,
                 R, m->view.shards, m->view.replicas);
    if (m->view.cluster_id) {
        for (uint32_t i = 0; i < m->view.n && n < LAYOUT_MAX_MEMBERS; i++)
            if (m->view.members[i].state == META_ACTIVE)
                ids[n++] = m->view.members[i].id;
    } else if (m->cfg.found) {
        for (size_t i = 0; i < m->cfg.npeers && n < LAYOUT_MAX_MEMBERS; i++)
            ids[n++] = m->cfg.peers[i].id;
    }
    m->has_layout = !m->mismatch[0] && n >= R &&
                    layout_plan(m->cfg.nshards, R, ids, n, m->targets) == 0;
    if (m->has_layout)
        replicas_for_shard(m->cfg.meta_id, ids, n, R, m->targets + (size_t)m->cfg.nshards * R);
    for (uint32_t gi = 0; gi < m->ngroups; gi++) {
        uint64_t pref = 0;
        for (uint32_t j = 0; m->has_layout && j < R && !pref; j++) {
            uint64_t v = m->targets[(size_t)gi * R + j];
            int drained = 0;
            for (uint32_t i = 0; i < m->view.n; i++)
                if (m->view.members[i].id == v)
                    drained = m->view.members[i].drained;
            if (!drained)
                pref = v;
        }
        (void)group_node_set_preferred(m->cfg.gnode, group_id_at(m, gi), pref);
    }
}

void mover_record_changed(mover_t *m)
{
    if (!m)
        return;
    meta_view_t v = { 0 };
    if (meta_sm_copy(m->cfg.meta, &v) < 0)
        return;                  /* out of memory: the next change retries */
    pthread_mutex_lock(&m->mu);
    meta_view_free(&m->view);
    m->view = v;
    relayout(m);
    m->kicked = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static uint32_t index_of_group(const mover_t *m, uint32_t g)
{
    return g == m->cfg.meta_id ? m->cfg.nshards : g;
}

size_t mover_target(mover_t *m, uint32_t g, uint64_t *out)
{
    uint32_t gi = index_of_group(m, g);
    if (gi >= m->ngroups)
        return 0;
    pthread_mutex_lock(&m->mu);
    size_t n = m->has_layout ? m->cfg.replicas : 0;
    if (n)
        memcpy(out, m->targets + (size_t)gi * m->cfg.replicas, n * sizeof(*out));
    pthread_mutex_unlock(&m->mu);
    return n;
}

uint64_t mover_first_undrained(mover_t *m, uint32_t g, uint64_t also)
{
    uint64_t t[LAYOUT_MAX_MEMBERS];
    size_t n = mover_target(m, g, t);
    for (size_t j = 0; j < n; j++)
        if (t[j] != also && !meta_sm_is_drained(m->cfg.meta, t[j]))
            return t[j];
    return 0;
}

int mover_mismatch(mover_t *m, char *why, size_t size)
{
    pthread_mutex_lock(&m->mu);
    int bad = m->mismatch[0] != 0;
    if (bad && why)
        snprintf(why, size, "%s", m->mismatch);
    pthread_mutex_unlock(&m->mu);
    return bad;
}

int mover_removed(mover_t *m)
{
    return m && __atomic_load_n(&m->said_removed, __ATOMIC_ACQUIRE);
}

size_t mover_members(mover_t *m, meta_member_t *out, size_t cap)
{
    pthread_mutex_lock(&m->mu);
    size_t n;
    if (m->view.cluster_id) {
        n = m->view.n;
        for (size_t i = 0; i < n && i < cap; i++)
            out[i] = m->view.members[i];
    } else {
        n = m->cfg.npeers;
        for (size_t i = 0; i < n && i < cap; i++) {
            memset(&out[i], 0, sizeof(out[i]));
            out[i].id = m->peers[i].id;
            snprintf(out[i].addr, sizeof(out[i].addr), "%s", m->peers[i].addr);
        }
    }
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* ---------------------------------------------------------------- the thread's steps */

/* A copy of what one round works from: the members (joining or active) and the layout. */
typedef struct snap {
    uint64_t members[LAYOUT_MAX_MEMBERS * 2];   /* joining or active */
    size_t nmembers;
    uint64_t leaving[LAYOUT_MAX_MEMBERS * 2];
    size_t nleaving;
    meta_member_t *all;          /* the whole record, for the meta leader's duties */
    uint32_t nall;
    uint64_t *targets;           /* NULL: no layout */
    uint32_t replicas;           /* the record's (0: not recorded yet) */
    int mismatch;                /* the record's layout is not this node's */
} snap_t;

static int snap_take(mover_t *m, snap_t *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_lock(&m->mu);
    size_t tb = (size_t)m->ngroups * m->cfg.replicas * sizeof(uint64_t);
    s->all = m->view.n ? malloc(m->view.n * sizeof(*s->all)) : NULL;
    s->targets = m->has_layout ? malloc(tb) : NULL;
    int ok = (!m->view.n || s->all) && (!m->has_layout || s->targets);
    s->replicas = m->view.replicas;
    s->mismatch = m->mismatch[0] != 0;
    if (ok) {
        s->nall = m->view.n;
        if (s->nall)
            memcpy(s->all, m->view.members, s->nall * sizeof(*s->all));
        if (s->targets)
            memcpy(s->targets, m->targets, tb);
        for (uint32_t i = 0; i < s->nall && s->nmembers < LAYOUT_MAX_MEMBERS * 2; i++)
            if (is_member_state(s->all[i].state))
                s->members[s->nmembers++] = s->all[i].id;
            else if (s->all[i].state == META_LEAVING && s->nleaving < LAYOUT_MAX_MEMBERS * 2)
                s->leaving[s->nleaving++] = s->all[i].id;
    }
    pthread_mutex_unlock(&m->mu);
    if (!ok) {
        free(s->all);
        free(s->targets);
    }
    return ok ? 0 : -QERR_NOMEM;
}

static void snap_free(snap_t *s)
{
    free(s->all);
    free(s->targets);
}

static int in_list(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

static uint32_t role_in(const raft_conf_t *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n; i++)
        if (c->s[i].id == id)
            return c->s[i].role;
    return 0;
}

static const mraft_member_progress_t *progress_of(const mraft_group_status_t *st, uint64_t id)
{
    for (uint32_t i = 0; i < st->n_progress; i++)
        if (st->progress[i].id == id)
            return &st->progress[i];
    return NULL;
}

static int caught_up(const mraft_group_status_t *st, uint64_t id)
{
    const mraft_member_progress_t *p = progress_of(st, id);
    return p && p->active && p->state == RAFT_PR_REPLICATE && p->match > 0 &&
           p->match + MOVER_PROMOTE_LAG >= st->last_index;
}

static const char *op_name(uint32_t op)
{
    switch (op) {
    case RAFT_CONF_ADD_LEARNER: return "add as learner";
    case RAFT_CONF_PROMOTE: return "promote to voter";
    case RAFT_CONF_REMOVE: return "remove";
    default: return "change";
    }
}

/* One configuration change on group gi; 1 if it went through, else 0 (logged). */
static int change(mover_t *m, uint32_t gi, uint32_t op, uint64_t id)
{
    uint64_t leader = 0;
    char gn[32];
    int rc = group_change_member(group_at(m, gi), op, id, MOVER_CHANGE_TIMEOUT_MS, &leader);
    if (rc == 0 || rc == -QERR_EXISTS || rc == -QERR_NOTFOUND) {
        say(m, "mover: %s: %s node %" PRIu64 "%s", group_name(m, gi, gn, sizeof(gn)),
            op_name(op), id, rc ? " (already done)" : "");
        return rc == 0;
    }
    if (rc != -QERR_CONFCHANGE && rc != -QERR_NOTLEADER && rc != -QERR_TRANSFER)
        say(m, "mover: %s: %s node %" PRIu64 " failed: %s (retried)",
            group_name(m, gi, gn, sizeof(gn)), op_name(op), id, qerr_str(rc));
    return 0;
}

/* A step for one group: op on id, and for a demotion ADD_LEARNER of id right after. */
typedef struct step {
    uint32_t op;                 /* RAFT_CONF_*; 0: nothing to do */
    uint64_t id;
    int readd;
} step_t;

/* The next step for group gi, which this node leads (see the file comment), from its status
 * st. catchups: the groups led here sending snapshots (rule 4 waits while it is at the
 * limit). */
static step_t decide(const mover_t *m, uint32_t gi, const mraft_group_status_t *st,
                     const snap_t *s, int catchups)
{
    step_t none = { 0 };
    if (st->role != RAFT_LEADER || st->conf_pending)
        return none;
    const uint32_t R = m->cfg.replicas;
    const uint64_t *T = s->targets ? s->targets + (size_t)gi * R : NULL;
    const raft_conf_t *c = &st->conf;
    /* the meta group keeps a leaving member (as a learner) until the record drops it, so
     * that it still learns the record, and its read barriers work, while it hands its
     * shards on */
    const int meta = gi == m->cfg.nshards;
    for (uint32_t i = 0; i < c->n; i++) {                                /* 1 */
        uint64_t x = c->s[i].id;
        if (c->s[i].role != RAFT_VOTER && x != m->cfg.self &&
            !in_list(s->members, s->nmembers, x) && !(meta && in_list(s->leaving, s->nleaving, x)))
            return (step_t){ RAFT_CONF_REMOVE, x, 0 };
    }
    int all_voters = T != NULL;
    for (uint32_t j = 0; T && j < R; j++)
        all_voters &= role_in(c, T[j]) == RAFT_VOTER;
    for (uint32_t i = 0; all_voters && i < c->n; i++) {                 /* 2 */
        uint64_t x = c->s[i].id;
        if (c->s[i].role == RAFT_VOTER && x != m->cfg.self && !in_list(T, R, x))
            return (step_t){ RAFT_CONF_REMOVE, x,
                             in_list(s->members, s->nmembers, x) ||
                             (meta && in_list(s->leaving, s->nleaving, x)) };
    }
    /* this node leads but the layout no longer wants it as a voter, and every target is a
     * voter: it removes itself (the core then hands leadership to the most caught-up voter
     * and steps down; the next leader adds it back as a learner if it is still a member).
     * Not only the balancer's transfer to the preferred leader: that one may be down. */
    if (all_voters && !in_list(T, R, m->cfg.self) && role_in(c, m->cfg.self) == RAFT_VOTER)
        return (step_t){ RAFT_CONF_REMOVE, m->cfg.self, 0 };
    for (uint32_t j = 0; T && j < R; j++)                                /* 3 */
        if (role_in(c, T[j]) == RAFT_LEARNER && caught_up(st, T[j]))
            return (step_t){ RAFT_CONF_PROMOTE, T[j], 0 };
    for (size_t i = 0; i < s->nmembers && catchups < MOVER_CATCHUPS_MAX; i++)
        if (!role_in(c, s->members[i]))                                  /* 4 */
            return (step_t){ RAFT_CONF_ADD_LEARNER, s->members[i], 0 };
    for (size_t i = 0; meta && i < s->nleaving; i++)    /* a leaving one that removed itself */
        if (!role_in(c, s->leaving[i]))
            return (step_t){ RAFT_CONF_ADD_LEARNER, s->leaving[i], 0 };
    return none;
}

/* Group gi's status into *st; 0 when this node leads it (a hint), else -1. */
static int led_status(const mover_t *m, uint32_t gi, mraft_group_status_t *st)
{
    return group_raft_status(group_at(m, gi), st) == 0 && st->role == RAFT_LEADER ? 0 : -1;
}

/* Takes group gi's next step; returns the changes made (0, 1 or 2). */
static int step_group(mover_t *m, uint32_t gi, const snap_t *s, int *catchups,
                      mraft_group_status_t *st)
{
    if (led_status(m, gi, st) < 0)
        return 0;
    step_t a = decide(m, gi, st, s, *catchups);
    if (!a.op)
        return 0;
    int done = change(m, gi, a.op, a.id);
    if (done && a.readd)
        done += change(m, gi, RAFT_CONF_ADD_LEARNER, a.id);
    if (done && a.op == RAFT_CONF_ADD_LEARNER)
        ++*catchups;
    return done;
}

/* The groups led here that are sending a snapshot to some member. */
static int count_catchups(mover_t *m)
{
    int n = 0;
    mraft_group_status_t *st = malloc(sizeof(*st));
    for (uint32_t gi = 0; st && gi < m->ngroups; gi++) {
        if (group_raft_status(group_at(m, gi), st) < 0 || st->role != RAFT_LEADER)
            continue;
        for (uint32_t i = 0; i < st->n_progress; i++)
            if (st->progress[i].state == RAFT_PR_SNAPSHOT) {
                n++;
                break;
            }
    }
    free(st);
    return n;
}

static int propose_meta(mover_t *m, meta_cmd_t *c, const char *what, uint64_t id)
{
    sm_result_t res;
    int rc = group_propose(m->cfg.meta_group, c->p, c->len, &res);
    meta_cmd_free(c);
    if (rc == 0 && res.code == 0) {
        say(m, "mover: member record: %s node %" PRIu64, what, id);
        return 1;
    }
    say(m, "mover: member record: %s node %" PRIu64 " failed: %s", what, id,
        rc ? qerr_str(rc) : strerror(-res.code));
    return 0;
}

/* Whether the record has a member joining or leaving (the meta leader's duties below). */
static int meta_pending(const snap_t *s)
{
    for (uint32_t i = 0; i < s->nall; i++)
        if (s->all[i].state == META_JOINING || s->all[i].state == META_LEAVING)
            return 1;
    return 0;
}

/* The meta leader's duties: a joining member that every group has, and that is caught up
 * on the meta group (so it runs and is connected), becomes active; a leaving member that no
 * shard group has (each checked after a read barrier, so a lagging local view of a group
 * cannot pass for "gone") is dropped from the record, after which the meta group drops it. */
static int meta_duties(mover_t *m, const snap_t *s)
{
    mraft_group_status_t *st = malloc(sizeof(*st)), *ms = malloc(sizeof(*ms));
    int done = 0;
    if (!st || !ms || group_raft_status(m->cfg.meta_group, ms) < 0 || ms->role != RAFT_LEADER) {
        free(st);
        free(ms);
        return 0;
    }
    for (uint32_t i = 0; i < s->nall && !done; i++) {
        const meta_member_t *x = &s->all[i];
        if (x->state != META_JOINING && x->state != META_LEAVING)
            continue;
        uint32_t in_all = 0, in_any = 0, known = 0;   /* shard groups with it */
        for (uint32_t gi = 0; gi < m->cfg.nshards; gi++) {
            if (x->state == META_LEAVING &&
                group_read_barrier(group_at(m, gi), MOVER_CHANGE_TIMEOUT_MS) < 0)
                break;
            if (group_raft_status(group_at(m, gi), st) == 0) {
                int a = role_in(&st->applied_conf, x->id) != 0, f = role_in(&st->conf, x->id) != 0;
                known++;
                in_all += a && f;
                in_any += a || f;
            }
        }
        if (known != m->cfg.nshards)
            continue;
        meta_cmd_t c = { 0 };
        if (x->state == META_JOINING && in_all == known && role_in(&ms->conf, x->id) &&
            caught_up(ms, x->id) && meta_cmd_set_state(&c, x->id, META_ACTIVE) == 0)
            done = propose_meta(m, &c, "activate", x->id);
        else if (x->state == META_LEAVING && in_any == 0 && x->id != m->cfg.self &&
                 role_in(&ms->conf, x->id) != RAFT_VOTER &&
                 role_in(&ms->applied_conf, x->id) != RAFT_VOTER &&
                 meta_cmd_remove(&c, x->id) == 0)
            done = propose_meta(m, &c, "remove", x->id);
        else
            meta_cmd_free(&c);
    }
    free(st);
    free(ms);
    return done;
}

/* SET_LAYOUT with this node's shards and replicas (once: the record keeps the first). */
static void record_layout(mover_t *m)
{
    meta_cmd_t c = { 0 };
    if (meta_cmd_set_layout(&c, m->cfg.nshards, m->cfg.replicas) == 0)
        (void)propose_meta(m, &c, "layout recorded by", m->cfg.self);
}

/* FOUND with the founding peers (only the first one anybody commits counts). */
static void found(mover_t *m)
{
    const char **addrs = calloc(m->cfg.npeers, sizeof(*addrs));
    uint64_t *ids = calloc(m->cfg.npeers, sizeof(*ids));
    meta_cmd_t c = { 0 };
    if (addrs && ids) {
        for (size_t i = 0; i < m->cfg.npeers; i++) {
            ids[i] = m->peers[i].id;
            addrs[i] = m->peers[i].addr;
        }
        if (meta_cmd_found(&c, m->cfg.cluster_id, (uint32_t)m->cfg.npeers, ids, addrs) == 0) {
            sm_result_t res;
            int rc = group_propose(m->cfg.meta_group, c.p, c.len, &res);
            if (rc == 0 && res.code < 0 && res.code != -EALREADY)
                say(m, "the member record was not founded: %s", strerror(-res.code));
        }
    }
    meta_cmd_free(&c);
    free(addrs);
    free(ids);
}

/* The transport's peers follow the record: members added, members gone removed, each one's
 * HELLO held to the incarnation the record has for it (0: any). */
static void sync_peers(mover_t *m, const snap_t *s)
{
    for (uint32_t i = 0; i < s->nall; i++) {
        const meta_member_t *x = &s->all[i];
        if (x->id == m->cfg.self || in_list(m->tpeers, m->ntpeers, x->id))
            continue;
        uint64_t *t = realloc(m->tpeers, (m->ntpeers + 1) * sizeof(*t));
        if (!t)
            return;
        m->tpeers = t;
        int rc = group_node_add_peer(m->cfg.gnode, x->id, x->addr);
        if (rc == 0 || rc == -QERR_EXISTS) {
            m->tpeers[m->ntpeers++] = x->id;
            if (rc == 0)
                say(m, "mover: peer %" PRIu64 " at %s added", x->id, x->addr);
        }
    }
    for (uint32_t i = 0; i < s->nall; i++)
        if (s->all[i].id != m->cfg.self)
            (void)group_node_expect_incarnation(m->cfg.gnode, s->all[i].id,
                                                s->all[i].incarnation);
    mraft_group_status_t *ms = malloc(sizeof(*ms));
    if (!ms || group_raft_status(m->cfg.meta_group, ms) < 0) {
        free(ms);
        return;
    }
    for (size_t i = 0; i < m->ntpeers;) {
        /* a member dropped from the record stays a peer until the meta group no longer has
         * it, so that it learns it was removed (it then says so and stops acting) */
        int member = role_in(&ms->conf, m->tpeers[i]) || role_in(&ms->applied_conf, m->tpeers[i]);
        for (uint32_t j = 0; j < s->nall; j++)
            member |= s->all[j].id == m->tpeers[i];
        if (member) {
            i++;
            continue;
        }
        (void)group_node_remove_peer(m->cfg.gnode, m->tpeers[i]);
        say(m, "mover: peer %" PRIu64 " removed (no longer a member)", m->tpeers[i]);
        m->tpeers[i] = m->tpeers[--m->ntpeers];
    }
    free(ms);
}

/* This node's member entry gets its incarnation while it has none (the first start that
 * finds it there: founding, a join, an upgrade from a build without incarnations). An entry
 * with another one means this data directory is not the one the record knows: the peers
 * refuse this node (sync_peers), and this says why, once. */
static void record_incarnation(mover_t *m, const snap_t *s)
{
    const meta_member_t *me = NULL;
    for (uint32_t i = 0; i < s->nall; i++)
        if (s->all[i].id == m->cfg.self)
            me = &s->all[i];
    if (!me || !m->cfg.incarnation || me->incarnation == m->cfg.incarnation)
        return;
    if (me->incarnation) {
        if (!m->said_other_inc)
            say(m, "error: the member record knows node %" PRIu64 " with another data "
                "directory (incarnation %016" PRIx64 ", this one %016" PRIx64 "): the peers "
                "refuse this node; replace it: quorumfs cluster add a node with an empty data "
                "directory, and quorumfs cluster remove %" PRIu64, m->cfg.self, me->incarnation,
                m->cfg.incarnation, m->cfg.self);
        m->said_other_inc = 1;
        return;
    }
    meta_cmd_t c = { 0 };
    sm_result_t res;
    if (meta_cmd_set_incarnation(&c, m->cfg.self, m->cfg.incarnation) == 0 &&
        group_propose(m->cfg.meta_group, c.p, c.len, &res) == 0 && res.code < 0)
        say(m, "the incarnation of node %" PRIu64 " was not recorded: %s", m->cfg.self,
            strerror(-res.code));
    meta_cmd_free(&c);
}

static void round_once(mover_t *m)
{
    snap_t s;
    if (snap_take(m, &s) < 0)
        return;
    if (s.nall)
        sync_peers(m, &s);
    int self_member = 0;
    for (uint32_t i = 0; i < s.nall; i++)
        self_member |= s.all[i].id == m->cfg.self;
    if (s.nall && !self_member && m->cfg.found + m->was_member > 0) {
        if (!m->said_removed)
            say(m, "this node is no longer a member of the cluster (it was removed): stop it; "
                   "to bring the machine back, add it again with an empty data directory");
        __atomic_store_n(&m->said_removed, 1, __ATOMIC_RELEASE);
        snap_free(&s);
        return;
    }
    m->was_member |= self_member;
    if (self_member) {
        __atomic_store_n(&m->said_removed, 0, __ATOMIC_RELEASE);   /* added again */
        record_incarnation(m, &s);
    }
    int leads_meta = group_is_leader(m->cfg.meta_group);
    if (!s.nall) {
        if (leads_meta && m->cfg.found)
            found(m);
        snap_free(&s);
        return;
    }
    if (leads_meta && !s.replicas)
        record_layout(m);
    if (s.mismatch) {
        snap_free(&s);
        return;
    }
    /* anything to do, as this node sees it? (an idle cluster costs no barrier) */
    mraft_group_status_t *st = malloc(sizeof(*st));
    int catchups = count_catchups(m), work = leads_meta && meta_pending(&s);
    for (uint32_t gi = 0; st && gi < m->ngroups && !work; gi++)
        work = led_status(m, gi, st) == 0 && decide(m, gi, st, &s, catchups).op != 0;
    /* then act on a record at least as new as any leader acted on: the barrier makes this
     * node apply everything committed before it */
    if (!st || !work || group_read_barrier(m->cfg.meta_group, MOVER_CHANGE_TIMEOUT_MS) < 0) {
        free(st);
        snap_free(&s);
        return;
    }
    snap_free(&s);
    if (snap_take(m, &s) < 0) {
        free(st);
        return;
    }
    int budget = MOVER_CHANGES_PER_ROUND;
    for (uint32_t k = 0; k < m->ngroups && budget > 0; k++)
        budget -= step_group(m, (m->next_group + k) % m->ngroups, &s, &catchups, st);
    m->next_group = (m->next_group + 1) % m->ngroups;
    if (budget > 0 && group_is_leader(m->cfg.meta_group))
        (void)meta_duties(m, &s);
    free(st);
    snap_free(&s);
}

static void *mover_main(void *arg)
{
    mover_t *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->mu);
        round_once(m);
        pthread_mutex_lock(&m->mu);
        if (m->stop)
            break;
        if (!m->kicked) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)MOVER_PERIOD_MS * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&m->cv, &m->mu, &ts);
        }
        m->kicked = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* ---------------------------------------------------------------- lifetime */

int mover_new(const mover_config_t *cfg, mover_t **out)
{
    *out = NULL;
    if (!cfg->gnode || !cfg->meta || !cfg->meta_group || (cfg->nshards && !cfg->shards) ||
        cfg->replicas < 1 || cfg->npeers > LAYOUT_MAX_MEMBERS)
        return -QERR_INVAL;
    mover_t *m = calloc(1, sizeof(*m));
    if (!m)
        return -QERR_NOMEM;
    m->cfg = *cfg;
    m->ngroups = cfg->nshards + 1;
    m->peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*m->peers));
    m->tpeers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*m->tpeers));
    m->targets = calloc((size_t)m->ngroups * cfg->replicas, sizeof(*m->targets));
    int ok = m->peers && m->tpeers && m->targets;
    for (size_t i = 0; ok && i < cfg->npeers; i++) {
        m->peers[i].id = cfg->peers[i].id;
        ok = (m->peers[i].addr = strdup(cfg->peers[i].addr)) != NULL;
        if (ok && cfg->peers[i].id != cfg->self)
            m->tpeers[m->ntpeers++] = cfg->peers[i].id;
    }
    m->cfg.peers = m->peers;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    if (!ok) {
        mover_free(m);
        return -QERR_NOMEM;
    }
    if (meta_sm_copy(cfg->meta, &m->view) < 0)
        memset(&m->view, 0, sizeof(m->view));
    pthread_mutex_lock(&m->mu);
    relayout(m);
    pthread_mutex_unlock(&m->mu);
    /* the record restored at open holds the peers' incarnations: expected from the first
     * connection on (before the node starts), not from the first round */
    for (uint32_t i = 0; i < m->view.n; i++)
        if (m->view.members[i].id != cfg->self)
            (void)group_node_expect_incarnation(cfg->gnode, m->view.members[i].id,
                                                m->view.members[i].incarnation);
    *out = m;
    return 0;
}

int mover_start(mover_t *m)
{
    if (pthread_create(&m->th, NULL, mover_main, m) != 0)
        return -QERR_NOMEM;
    m->started = 1;
    return 0;
}

void mover_stop(mover_t *m)
{
    if (!m || !m->started)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->th, NULL);
    m->started = 0;
}

void mover_free(mover_t *m)
{
    if (!m)
        return;
    mover_stop(m);
    for (size_t i = 0; m->peers && i < m->cfg.npeers; i++)
        free((char *)m->peers[i].addr);
    free(m->peers);
    free(m->tpeers);
    free(m->targets);
    meta_view_free(&m->view);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
}

/* ---------------------------------------------------------------- the plan */

int mover_plan_text(mover_t *m, char **text)
{
    char *b = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&b, &len);
    snap_t s;
    if (!f)
        return -QERR_NOMEM;
    if (snap_take(m, &s) < 0) {
        fclose(f);
        free(b);
        return -QERR_NOMEM;
    }
    const uint32_t R = m->cfg.replicas;
    uint32_t now_v[LAYOUT_MAX_MEMBERS * 2] = { 0 }, want_v[LAYOUT_MAX_MEMBERS * 2] = { 0 };
    uint32_t now_l[LAYOUT_MAX_MEMBERS * 2] = { 0 }, want_l[LAYOUT_MAX_MEMBERS * 2] = { 0 };
    unsigned changes = 0;
    mraft_group_status_t *st = malloc(sizeof(*st));
    if (!s.targets)
        fprintf(f, "no layout: the record has fewer active members than the %u replicas, or "
                   "this node has not learned it yet\n", R);
    for (uint32_t gi = 0; st && gi < m->ngroups; gi++) {
        char gn[32];
        if (group_raft_status(group_at(m, gi), st) < 0)
            continue;
        fprintf(f, "%s: leader %" PRIu64 ", voters", group_name(m, gi, gn, sizeof(gn)),
                st->leader);
        for (uint32_t i = 0; i < st->conf.n; i++)
            if (st->conf.s[i].role != RAFT_LEARNER)
                fprintf(f, " %" PRIu64, st->conf.s[i].id);
        const uint64_t *T = s.targets ? s.targets + (size_t)gi * R : NULL;
        if (T) {
            fprintf(f, "; target");
            for (uint32_t j = 0; j < R; j++)
                fprintf(f, " %" PRIu64, T[j]);
            fprintf(f, " (preferred leader %" PRIu64 ")", T[0]);
        }
        unsigned before = changes;
        for (size_t i = 0; i < s.nmembers; i++)
            if (!role_in(&st->conf, s.members[i])) {
                fprintf(f, "; add %" PRIu64 " as learner", s.members[i]);
                changes++;
            }
        for (uint32_t j = 0; T && j < R; j++)
            if (role_in(&st->conf, T[j]) != RAFT_VOTER) {
                fprintf(f, "; promote %" PRIu64, T[j]);
                changes++;
            }
        for (uint32_t i = 0; i < st->conf.n; i++) {
            uint64_t x = st->conf.s[i].id;
            int member = in_list(s.members, s.nmembers, x);
            if (!member) {
                fprintf(f, "; remove %" PRIu64, x);
                changes++;
            } else if (T && st->conf.s[i].role == RAFT_VOTER && !in_list(T, R, x)) {
                fprintf(f, "; demote %" PRIu64, x);
                changes++;
            }
        }
        if (T && st->leader && st->leader != T[0] && gi < m->cfg.nshards)
            fprintf(f, "; leader moves to %" PRIu64 " unless drained", T[0]);
        fprintf(f, before == changes ? "; in place\n" : "\n");
        for (uint32_t i = 0; gi < m->cfg.nshards && i < s.nall && i < LAYOUT_MAX_MEMBERS * 2; i++) {
            uint64_t x = s.all[i].id;
            now_v[i] += role_in(&st->conf, x) == RAFT_VOTER;
            now_l[i] += st->leader == x;
            want_v[i] += T && in_list(T, R, x);
            want_l[i] += T && T[0] == x;
        }
    }
    fprintf(f, "members (id state: voter of N shards now -> in the layout, leads N -> N):\n");
    static const char *const states[] = { "founding", "joining", "active", "leaving" };
    for (uint32_t i = 0; i < s.nall && i < LAYOUT_MAX_MEMBERS * 2; i++)
        fprintf(f, "%" PRIu64 " %s: voter of %u -> %u, leads %u -> %u\n", s.all[i].id,
                s.all[i].state < 4 ? states[s.all[i].state] : "?", now_v[i], want_v[i],
                now_l[i], want_l[i]);
    if (s.targets)
        fprintf(f, "%u changes to make\n", changes);
    else
        fprintf(f, "stalled: no layout, so no change can be made (the shards keep their "
                   "voters)\n");
    free(st);
    snap_free(&s);
    if (fclose(f) != 0) {
        free(b);
        return -QERR_NOMEM;
    }
    *text = b;
    return 0;
}
