/* fs/state.c — the shard (see state.h): its lifetime, and the cluster/sm.h callbacks that
 * apply, snapshot and restore it. Apply decides the command's time, hands the command to the
 * session table (fs/session_sm.h) or to the namespace module that owns it (fs/ns_sm.h; the
 * tree commands of cache/ and config/ reach fs/tree_sm.c through theirs), and delivers the
 * effects it emitted (fs/effects.h) after releasing the write lock. This file knows no
 * namespace. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cluster/assert.h"
#include "cluster/err.h"
#include "fs/cmd.h"
#include "fs/ns_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"

/* 8: a search/ section (docs/SEARCH.md "Snapshot section");
 * 7: a jobs/ section (docs/JOBS.md "Snapshot section");
 * 6: a logs/ section (docs/LOGS.md "Snapshots");
 * 5: a services/ section (docs/FORMATS.md); 4: tree objects carry POSIX metadata (mode,
 * uid, gid, atime/mtime/ctime in ns) and may be symbolic links; 3: the tree, then the
 * session table, then one section per namespace module (cache/ and config/ included); 2:
 * the applied time stamp and the session table. */
#define STATE_SNAP_VERSION 8

/* Gives every namespace module its empty state (out of memory aborts). */
static void modules_init(state_t *st)
{
    for (int ns = 1; ns < NS__COUNT; ns++)
        if (ns_sms[ns]) {
            ns_sms[ns]->init(st);
            ASSERT(st->ns_state[ns]);
        }
}

/* Releases the modules' state and the session table. The tree goes first: its objects'
 * on_free hooks still use their namespace's state. */
static void shard_clear(state_t *st)
{
    tree_sm_free(st);
    for (int ns = 1; ns < NS__COUNT; ns++)
        if (ns_sms[ns] && st->ns_state[ns]) {
            ns_sms[ns]->free(st);
            ASSERT(!st->ns_state[ns]);
        }
    session_sm_free(&st->sessions);
    st->now_ms = 0;
}

/* An empty shard: every module's empty state, then the tree's roots. */
static void shard_init(state_t *st)
{
    modules_init(st);
    tree_sm_init(st);
}

state_t *state_new(uint64_t cache_max_bytes)
{
    return state_new_shard(cache_max_bytes, 0);
}

state_t *state_new_shard(uint64_t cache_max_bytes, uint32_t shard)
{
    ASSERT(shard < (STATE_PID_FIRST >> STATE_SHARD_ID_BITS));
    state_t *st = xcalloc(1, sizeof(*st));
    st->shard = shard;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* Apply must not starve behind a stream of readers. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    st->initial_cache_cap = cache_max_bytes;
    shard_init(st);
    return st;
}

void state_free(state_t *st)
{
    if (!st)
        return;
    shard_clear(st);
    effects_clear(&st->outbox);
    pthread_rwlock_destroy(&st->lock);
    free(st);
}

/* Applies the command whose header (with the time apply decided) is h and whose body r
 * reads. */
static int apply_one(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    if (session_sm_owns(h))
        return session_sm_apply(st, h, r, res, &st->outbox);
    if (h->ns > NS_NONE && h->ns < NS__COUNT && ns_sms[h->ns])
        return ns_sms[h->ns]->apply(st, h, r, res, &st->outbox);
    return -ENOTSUP;
}

/* sm_ops.apply: a malformed command is rejected identically on every replica (its result
 * code says so) and changes nothing.
 *
 * Time is decided here, once, from the log: the command applies at
 * max(previous command's time, its header's now_ms), so time never goes backwards in the
 * log, across leader changes too (a new leader whose clock is behind continues from the
 * time kept in the state and its snapshots). On a cluster the header's now_ms is the LEADER's
 * clock (sm_stamp below), not the proposer's; on the embedded node the proposer is the leader.
 *
 * Effects apply emitted are handed to the delivery hook after the write lock is released,
 * then freed. */
static void sm_apply(void *ctx, uint64_t index, const void *cmd, size_t len, sm_result_t *res)
{
    state_t *st = ctx;
    cmdrd_t r;
    cmd_hdr_t h;
    int rc = -EINVAL;
    pthread_rwlock_wrlock(&st->lock);
    ASSERT(!st->outbox.head);
    if (cmd_read_hdr(&r, cmd, len, &h) == 0) {
        if (h.now_ms < st->now_ms)
            h.now_ms = st->now_ms;
        st->now_ms = h.now_ms;
        rc = apply_one(st, &h, &r, res);
    }
    st->applied_index = index;
    if (res)
        res->code = rc;
    effects_t fx = effects_take(&st->outbox);
    void (*deliver)(void *, effect_t *) = st->deliver;
    void *arg = st->deliver_arg;
    pthread_rwlock_unlock(&st->lock);
    for (effect_t *e = fx.head; e; e = e->next)
        if (deliver)
            deliver(arg, e);
    effects_clear(&fx);
}

/* Snapshot body (version STATE_SNAP_VERSION, docs/FORMATS.md "fs state snapshot"): the
 * time stamp, the tree, the session table, then (u8 ns, section) for every namespace module
 * in namespace order and a 0. Every part is written in a fixed order, so the same state
 * gives the same bytes on every replica. */
static int sm_snapshot(void *ctx, snap_writer_t *w)
{
    state_t *st = ctx;
    snapout_t *o = calloc(1, sizeof(*o));
    if (!o)
        return -QERR_NOMEM;
    o->w = w;
    pthread_rwlock_rdlock(&st->lock);
    so_u32(o, STATE_SNAP_VERSION);
    so_u64(o, st->now_ms);
    tree_sm_snapshot(st, o);
    session_sm_snapshot(&st->sessions, o);
    for (int ns = 1; ns < NS__COUNT; ns++) {
        if (ns_sms[ns]) {
            so_u8(o, (uint8_t)ns);
            ns_sms[ns]->snapshot(st, o);
        }
    }
    so_u8(o, 0);
    pthread_rwlock_unlock(&st->lock);
    int rc = so_flush(o);
    free(o);
    return rc;
}

/* Reads the snapshot into st, emptied and initialized. 0 or -QERR_*. Every section checks
 * what it read against its invariants (the *_verify functions the checks assert), so a
 * restored shard passes ns_sm_check. */
static int restore_body(state_t *st, snapin_t *in)
{
    uint32_t version = si_u32(in);
    if (in->err)
        return in->err;
    if (version != STATE_SNAP_VERSION)
        return -QERR_FORMAT;
    st->now_ms = si_u64(in);
    int rc = tree_sm_restore(st, in);
    if (rc == 0)
        rc = session_sm_restore(&st->sessions, st->now_ms, in);
    for (int ns = 1; ns < NS__COUNT && rc == 0; ns++) {
        if (!ns_sms[ns])
            continue;
        uint8_t tag = si_u8(in);
        if (in->err)
            return in->err;
        if (tag != ns)
            return si_corrupt(in, "namespace sections missing or out of order");
        rc = ns_sms[ns]->restore(st, in);
    }
    if (rc == 0 && si_u8(in) != 0)
        rc = in->err ? in->err : si_corrupt(in, "data after the last namespace section");
    return rc < 0 ? rc : in->err;
}

static int sm_restore(void *ctx, snap_reader_t *r)
{
    state_t *st = ctx;
    snapin_t in = { .r = r };
    pthread_rwlock_wrlock(&st->lock);
    shard_clear(st);
    shard_init(st);
    int rc = restore_body(st, &in);
    if (rc < 0) {   /* leave an empty, valid shard (the caller refuses to start) */
        shard_clear(st);
        shard_init(st);
        effects_clear(&st->outbox);
    }
    /* A namespace's restore may emit effects (a "restored" wake-up: what waiters wait for
     * may have happened in the entries the snapshot replaced); they are delivered as
     * apply's, after the lock is released. */
    effects_t fx = effects_take(&st->outbox);
    void (*deliver)(void *, effect_t *) = st->deliver;
    void *arg = st->deliver_arg;
    pthread_rwlock_unlock(&st->lock);
    for (effect_t *e = fx.head; e; e = e->next)
        if (deliver)
            deliver(arg, e);
    effects_clear(&fx);
    return rc;
}

/* Leader-stamped time (sm_ops_t.stamp): the leader of a shard's Raft group overwrites the
 * header time of every command right before appending it to its log, with its own wall clock
 * (CLOCK_REALTIME in ms, as node_now_ms), whichever node proposed it. So a node whose clock
 * runs ahead no longer advances the shard's time (apply takes the largest time seen) and
 * cannot end other nodes' sessions early, or expire cache entries, leases and create locks
 * early; only the leaders' clocks count. A header of a version this build does not know, or
 * a command too short for one, is left alone (apply refuses it anyway).
 *
 * The clock assumption: the skew between the shard's voters (any of which may lead) is
 * bounded and small next to the session lease (10 s) and the TTLs in use. A leader whose
 * clock is ahead still makes time jump ahead when it takes over (ending sessions, expiring
 * entries early by its skew), and because apply takes the maximum, time then stays there
 * until the clocks catch up; a leader whose clock is behind makes time stand still until its
 * clock passes the time already applied. Time stays monotone in the log either way. */
static void sm_stamp(void *ctx, void *cmd, size_t len)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    (void)cmd_set_hdr_time(cmd, len, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

const sm_ops_t state_sm_ops = {
    .apply = sm_apply,
    .snapshot = sm_snapshot,
    .restore = sm_restore,
    .stamp = sm_stamp,
};
