/* tests/sim/fsm.c — the simulator's fs backend (smi_fs, tests/sim/smi.h): every replica is
 * the mount's real state machine (fs/state.h with all its namespaces: cache/, config/,
 * queues/, locks/, services/, search/, jobs/, logs/ and the session table). A generator makes
 * random but valid command streams, with invalid and edge commands mixed in; the leader's
 * sweeper proposes expiries, due job ticks, run starts and log trims from its own state;
 * snapshots are real snapshot files (cluster/snapshot.c, written and read through
 * tests/unit/statesnap.h) in a scratch directory, and every replica binds its own directory
 * for logs/ segment files. This is the only simulator file that includes fs/ headers, so an
 * fs/ API change touches the simulator here alone. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "fs/cache.h"
#include "fs/cmd.h"
#include "fs/effects.h"
#include "fs/jobs_sm.h"
#include "fs/locks.h"
#include "fs/logs_sm.h"
#include "fs/ns_sm.h"
#include "fs/queues.h"
#include "fs/search_sm.h"
#include "fs/services_sm.h"
#include "fs/session_sm.h"
#include "fs/state.h"
#include "tests/sim/smi.h"
#include "tests/unit/statesnap.h"

#define HDR 16                 /* snapshot: u64 applied, u64 hash, then the snapshot file */
#define NQ 4                   /* queues q0..q3 */
#define NL 4                   /* locks l0..l3 */
#define NI 3                   /* search/ indexes i0..i2 */
#define NJ 3                   /* jobs j0..j2 */
#define NG 3                   /* logs l0..l2 */
#define RING 32

/* ---------------------------------------------------------------------------------------- */
/* Scratch directory for snapshot files (one per process; every use is complete before the
 * next starts, so one directory serves every replica). */

static char scratch[256];

static void scratch_cleanup(void)
{
    DIR *d = opendir(scratch);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char p[512];
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s", scratch, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(scratch);
}

static const char *scratch_dir(void)
{
    if (scratch[0])
        return scratch;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(scratch, sizeof(scratch), "%s/qfs-sim-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(scratch)) {
        scratch[0] = 0;
        return NULL;
    }
    atexit(scratch_cleanup);
    return scratch;
}

/* Where the replicas' logs/ segment files go: one directory per process (made at the first
 * use, removed with everything under it at exit), and in it one directory per state machine
 * ever made, removed when the state machine is freed. */
static char logs_root[256];
static uint64_t logs_serial;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void logs_root_cleanup(void)
{
    rm_tree(logs_root);
}

/* A fresh directory name for one state machine's logs/ files (not created): 0 or -errno. */
static int logs_dir(char *buf, size_t size)
{
    if (!logs_root[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(logs_root, sizeof(logs_root), "%s/qfs-simlogs-XXXXXX",
                 base && *base ? base : "/tmp");
        if (!mkdtemp(logs_root)) {
            int e = errno;
            logs_root[0] = 0;
            return -e;
        }
        atexit(logs_root_cleanup);
    }
    snprintf(buf, size, "%s/%llu", logs_root, (unsigned long long)++logs_serial);
    return 0;
}

/* Installs snapshot file bytes in the scratch directory, the way a follower installs a
 * shipped snapshot (the receiver checks the header and the CRC). Returns 0 or -QERR_*. */
static int install_file(const uint8_t *file, size_t len, char **msg)
{
    const char *dir = scratch_dir();
    snap_recv_t *rv;
    if (!dir)
        return -QERR_IO;
    int rc = snapshot_recv_begin(dir, &rv);
    if (rc < 0)
        return rc;
    if ((rc = snapshot_recv_write(rv, 0, file, len)) < 0) {
        snapshot_recv_abort(rv);
        return rc;
    }
    return snapshot_recv_commit(rv, NULL, msg);
}

/* The uncompressed state stream inside snapshot file bytes (malloc'ed), or NULL. */
static uint8_t *raw_stream(const uint8_t *file, size_t len, size_t *rawlen)
{
    char *msg = NULL;
    snapshot_info_t info = { 0 };
    snap_reader_t *r = NULL;
    uint8_t *raw = NULL;
    if (install_file(file, len, &msg) < 0 || snapshot_open_read(scratch, &info, &msg) < 0 ||
        snapshot_reader_open(&info, &r, &msg) < 0)
        goto out;
    raw = malloc(info.raw_len ? info.raw_len : 1);
    if (raw && snap_reader_get(r, raw, info.raw_len) < 0) {
        free(raw);
        raw = NULL;
    }
    *rawlen = info.raw_len;
out:
    if (r)
        snapshot_reader_close(r, NULL);
    snapshot_info_free(&info);
    free(msg);
    return raw;
}

/* ---------------------------------------------------------------------------------------- */
/* A run: what the generator learned from applies and deliveries, and figures. Learning
 * happens at the first apply of an index anywhere (replays after a restart teach nothing
 * new, and would bring back stale facts). */

/* Pool names. Queues q0..q3 and locks l0..l3; directories of cache/ and config/ that
 * MKDIR and RENAME use, and that paths are built under. */
static const char *const cache_mk[] = { "a", "b", "a/x", "b/y", "a/x/z", "k0" };
static const char *const conf_mk[] = { "app", "app/prod", "app/dev", "db", "db/old", "url" };
#define NMK 6

/* Facts: a random filled one is picked to build a command on. */
typedef struct fact {
    uint64_t a, b;             /* a == 0: empty slot */
    uint8_t k;                 /* queue or lock number */
} fact_t;

typedef struct ring {
    fact_t v[RING];
    uint64_t n;
} ring_t;

static void ring_add(ring_t *g, uint8_t k, uint64_t a, uint64_t b)
{
    for (int i = 0; i < RING; i++)
        if (g->v[i].a == a && g->v[i].k == k)
            return;
    g->v[g->n++ % RING] = (fact_t){ .a = a, .b = b, .k = k };
}

static void ring_del(ring_t *g, uint8_t k, uint64_t a)
{
    for (int i = 0; i < RING; i++)
        if (g->v[i].a == a && g->v[i].k == k)
            g->v[i].a = 0;
}

/* A random filled slot, or NULL. */
static const fact_t *ring_pick(const ring_t *g, rng_t *r)
{
    int n = 0;
    for (int i = 0; i < RING; i++)
        n += g->v[i].a != 0;
    if (!n)
        return NULL;
    int k = (int)rng_below(r, (uint64_t)n);
    for (int i = 0; i < RING; i++)
        if (g->v[i].a && k-- == 0)
            return &g->v[i];
    return NULL;
}

typedef struct fsrun {
    ring_t sids;               /* a = session id (k 0) */
    ring_t claims;             /* k = queue, a = claimed message id */
    ring_t fences;             /* k = lock, a = fence of a create hold */
    ring_t waits;              /* k = lock, a = wait id, b = session of a lock request */
    ring_t takes;              /* k = queue, a = handle id, b = session of a waiting take */
    struct { uint8_t q, len; uint64_t id; uint32_t count; char msg[24]; } pops[8];
    uint64_t npops;
    ring_t jruns;              /* k = job, a = run number, b = session of a running run */
    ring_t jpend;              /* k = job, a = run number of a pending run */
    uint8_t qlive[NQ], llive[NL];        /* created and not removed, as far as we know */
    uint8_t ilive[NI], jlive[NJ];        /* search/ indexes declared, jobs made */
    uint8_t sdocs[NI];                   /* search/: bit i: index has document d<i> */
    uint8_t jcmd[NJ], jsched[NJ];        /* jobs: has a cmd, has a schedule */
    uint64_t jhi[NJ];                    /* jobs: runs created (the newest run's number) */
    uint64_t gid[NG], gend[NG];          /* logs: id (0: none known) and end offset */
    uint64_t gseg[NG];                   /* logs: segment size setting */
    uint64_t now_ms;                     /* the newest command time applied */
    uint8_t cache_dirs, conf_dirs;       /* bit i: cache_mk[i] / conf_mk[i] is a directory */
    int fresh;                 /* the command being applied is applied for the first time */
    int bug;                   /* SMI_FS_BUG_* planted in some replicas, or 0 */
    uint32_t shard;            /* the shard index its states are made for (state_new_shard) */
    uint64_t first_id;         /* where that shard's own object ids start */
    uint64_t nsm;              /* state machines made (a replica's serial number) */
    uint64_t next_wid, next_hid, next_pid;
    /* figures, counted at the first apply of each index */
    uint64_t counted, by_ns[NS__COUNT + 1], ok, edge, sweeps;
    uint64_t by_errno[136];    /* verdicts -errno (the last slot: any other) */
} fsrun_t;

/* The number of name in a pool "<c>0".."<c>(n-1)", or -1. */
static int num(char c, int n, const char *name, size_t len)
{
    return len == 2 && name[0] == c && name[1] >= '0' && name[1] < '0' + n ? name[1] - '0' : -1;
}

static int mk_index(const char *const *mk, const char *path, size_t len)
{
    for (int i = 0; i < NMK; i++)
        if (strlen(mk[i]) == len && memcmp(mk[i], path, len) == 0)
            return i;
    return -1;
}

/* The effects a replica's apply emits (fs/effects.h): what a node would hand to its parked
 * readers. The simulator learns claimed and popped message ids from queue hand-overs; lock
 * grants and config revisions teach it nothing it needs. */
static void learn_effect(fsrun_t *run, const effect_t *e)
{
    if (!run || !run->fresh || e->kind != EFF_QUEUE_MSG)
        return;
    const char *qn = e->u.qmsg.qname;
    int q = qn ? num('q', NQ, qn, strlen(qn)) : -1;
    const blob_t *m = e->u.qmsg.msg;
    if (q < 0 || e->u.qmsg.gone || !m)
        return;
    if (e->u.qmsg.claim) {
        ring_add(&run->claims, (uint8_t)q, e->u.qmsg.id, 0);
    } else if (m->len < sizeof(run->pops[0].msg)) {
        typeof(run->pops[0]) *p = &run->pops[run->npops++ % 8];
        p->q = (uint8_t)q;
        p->id = e->u.qmsg.id;
        p->count = e->u.qmsg.count;
        p->len = (uint8_t)m->len;
        memcpy(p->msg, m->data, m->len);
    }
}

static void *run_new(uint64_t seed, int bug, uint32_t shard)
{
    fsrun_t *run = calloc(1, sizeof(*run));
    if (!run)
        return NULL;
    run->next_pid = seed % 1000;
    run->bug = bug;
    run->shard = shard;
    run->first_id = STATE_FIRST_ID + ((uint64_t)shard << 32);
    return run;
}

static void run_free(void *run) { free(run); }

/* jobs/: the runs of job k that are running or pending, read from a state. */
typedef struct jlearn {
    fsrun_t *run;
    uint8_t k;
} jlearn_t;

static int learn_run(void *arg, const run_view_t *v)
{
    jlearn_t *x = arg;
    if (v->state == JR_RUNNING)
        ring_add(&x->run->jruns, x->k, v->n, v->sid);
    else if (v->state == JR_PENDING)
        ring_add(&x->run->jpend, x->k, v->n, 0);
    return 0;
}

/* What jobs/ and logs/ hold after a command applied for the first time, read from the state
 * that applied it (its apply is deterministic, so any replica would say the same): each
 * job's run count and its running and pending runs, each log's id and end. */
static void learn_state(fsrun_t *run, state_t *st, uint8_t ns)
{
    char name[16];
    pthread_rwlock_rdlock(&st->lock);
    if (ns == NS_JOBS || ns == NS_LOCKS) {            /* a session's end loses its runs */
        memset(&run->jruns, 0, sizeof(run->jruns));
        memset(&run->jpend, 0, sizeof(run->jpend));
        for (uint8_t k = 0; k < NJ; k++) {
            job_view_t v;
            snprintf(name, sizeof(name), "j%u", k);
            run->jlive[k] = jobs_sm_get(st, name, strlen(name), &v) == 0;
            if (!run->jlive[k])
                continue;
            run->jhi[k] = v.runs_total;
            run->jcmd[k] = v.cmd[0] != 0;
            run->jsched[k] = v.schedule[0] != 0;
            jlearn_t x = { run, k };
            jobs_sm_each_run(st, v.id, learn_run, &x);
        }
    } else if (ns == NS_SEARCH) {
        for (int k = 0; k < NI; k++) {
            snprintf(name, sizeof(name), "i%d", k);
            const sindex_t *ix = search_sm_index(st, name);
            run->sdocs[k] = 0;
            for (int d = 0; ix && d < 6; d++) {
                snprintf(name, sizeof(name), "d%d", d);
                if (search_sm_doc(ix, name))
                    run->sdocs[k] |= (uint8_t)(1u << d);
            }
        }
    } else if (ns == NS_LOGS) {
        for (int k = 0; k < NG; k++) {
            log_view_t v;
            snprintf(name, sizeof(name), "l%d", k);
            int ok = logs_sm_get(st, name, strlen(name), &v) == 0;
            run->gid[k] = ok ? v.id : 0;
            run->gend[k] = ok ? v.end : 0;
            run->gseg[k] = ok ? v.segment_bytes : 0;
        }
    }
    pthread_rwlock_unlock(&st->lock);
}

/* Learns from a command applied for the first time: ids it handed out, what exists. */
static void learn(fsrun_t *run, state_t *st, const void *cmd, size_t len,
                  const sm_result_t *res)
{
    cmdrd_t r;
    cmd_hdr_t h;
    int hdr = cmd_read_hdr(&r, cmd, len, &h) == 0;
    run->by_ns[hdr && h.ns < NS__COUNT ? h.ns : NS__COUNT]++;
    run->ok += res->code == 0;
    if (res->code < 0)
        run->by_errno[-res->code < 135 ? -res->code : 135]++;
    if (!hdr || res->code != 0)
        return;
    if (h.now_ms > run->now_ms)
        run->now_ms = h.now_ms;
    if (h.ns == NS_JOBS || h.ns == NS_LOGS || h.ns == NS_SEARCH ||
        (h.ns == NS_LOCKS && h.op == SOP_END))
        learn_state(run, st, h.ns);
    if (h.ns == NS_SEARCH && (h.op == SROP_MKIDX || h.op == SROP_RMIDX)) {
        const char *name;
        size_t nl = cmd_get_path(&r, &name);
        int i = r.err ? -1 : num('i', NI, name, nl);
        if (i >= 0)
            run->ilive[i] = h.op == SROP_MKIDX;
        return;
    }
    const char *name;
    size_t nl;
    if (h.ns == NS_CACHE || h.ns == NS_CONFIG) {
        const char *const *mk = h.ns == NS_CACHE ? cache_mk : conf_mk;
        uint8_t *dirs = h.ns == NS_CACHE ? &run->cache_dirs : &run->conf_dirs;
        if (h.op != CMD_MKDIR && h.op != CMD_RMDIR && h.op != CMD_RENAME)
            return;
        nl = cmd_get_path(&r, &name);
        int i = r.err ? -1 : mk_index(mk, name, nl);
        if (i >= 0 && h.op == CMD_MKDIR)
            *dirs |= (uint8_t)(1u << i);
        else if (i >= 0)
            *dirs &= (uint8_t)~(1u << i);       /* removed, or moved away */
        return;
    }
    if (h.ns == NS_QUEUES) {
        nl = cmd_get_path(&r, &name);
        int q = r.err ? -1 : num('q', NQ, name, nl);
        if (q < 0)
            return;
        if (h.op == QOP_MKDIR || h.op == QOP_RMDIR)
            run->qlive[q] = h.op == QOP_MKDIR;
        else if (h.op == QOP_ACK)
            ring_del(&run->claims, (uint8_t)q, cmd_get_u64(&r));
        return;
    }
    if (h.ns != NS_LOCKS)
        return;
    if (h.op == SOP_OPEN && res->len == 8) {
        uint64_t sid;
        memcpy(&sid, res->data, 8);
        ring_add(&run->sids, 0, sid, 0);
    } else if (h.op == SOP_END) {
        ring_del(&run->sids, 0, cmd_get_u64(&r));
    } else if (h.op == LOP_CREATE || h.op == LOP_UNLINK) {
        nl = cmd_get_path(&r, &name);
        int l = r.err ? -1 : num('l', NL, name, nl);
        if (l < 0)
            return;
        run->llive[l] = h.op == LOP_CREATE;
        if (h.op == LOP_CREATE && res->len == 17 && res->data[0]) {
            uint64_t fence;
            memcpy(&fence, res->data + 9, 8);
            ring_add(&run->fences, (uint8_t)l, fence, 0);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The state machine */

typedef struct fsm {
    state_t *st;
    uint64_t applied, hash;
    fsrun_t *run;
    int buggy;                 /* the run's planted bug applies to this replica */
    char logdir[320];          /* its logs/ segment files (bound to st) */
} fsm_t;

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The state's delivery hook: effects go to the run, never to a mount's parked requests. */
static void fsm_deliver(void *arg, effect_t *e)
{
    learn_effect(((fsm_t *)arg)->run, e);
}

static void *fsm_new(void *run)
{
    fsm_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    /* Every replica starts from the node's default cap; CMD_SETCAP changes it. */
    f->st = state_new_shard(STATE_DEFAULT_CACHE_CAP, run ? ((fsrun_t *)run)->shard : 0);
    if (!f->st) {
        free(f);
        return NULL;
    }
    /* Its own directory for logs/ files, as a node binds <data>/logs/<shard>/. */
    int rc = logs_dir(f->logdir, sizeof(f->logdir));
    if (rc < 0 || (rc = logs_sm_bind(f->st, f->logdir)) < 0) {
        fprintf(stderr, "sim: cannot bind a directory for logs/ files (%s): %s\n",
                f->logdir[0] ? f->logdir : "no root", strerror(rc < 0 ? -rc : EIO));
        state_free(f->st);
        free(f);
        return NULL;
    }
    f->run = run;
    f->st->deliver = fsm_deliver;
    f->st->deliver_arg = f;
    /* A planted bug hits one state machine in three (replicas are remade at each boot). */
    f->buggy = f->run && f->run->bug && f->run->nsm++ % 3 == 1;
    return f;
}

static void fsm_free(void *sm)
{
    fsm_t *f = sm;
    if (!f)
        return;
    logs_sm_unbind(f->st);
    state_free(f->st);
    rm_tree(f->logdir);
    free(f);
}

static int fsm_apply(void *sm, uint64_t index, int is_cmd, const void *data, size_t len,
                     smi_res_t *res)
{
    fsm_t *f = sm;
    if (index != f->applied + 1)
        return -1;
    sm_result_t r;
    memset(&r, 0, sizeof(r));
    memset(res, 0, sizeof(*res));
    res->client = -1;
    uint8_t *late = NULL;
    if (is_cmd && f->buggy && f->run->bug == SMI_FS_BUG_CLOCK && len >= 11 &&
        (late = malloc(len))) {
        memcpy(late, data, len);                          /* apply "reads its own clock" */
        le_put64(late + 3, le_get64(late + 3) + 1);
    }
    if (is_cmd && f->buggy && f->run->bug == SMI_FS_BUG_SKIP && index % 16 == 0)
        is_cmd = 0;                                       /* "refuses" what others accept */
    if (is_cmd) {
        int fresh = f->run && index > f->run->counted;
        if (f->run)
            f->run->fresh = fresh;
        state_sm_ops.apply(f->st, index, late ? late : data, len, &r);
        free(late);
        res->code = r.code;
        /* Every namespace's invariants, after every apply (they abort if broken). */
        pthread_rwlock_rdlock(&f->st->lock);
        ns_sm_check(f->st);
        pthread_rwlock_unlock(&f->st->lock);
        if (fresh)
            learn(f->run, f->st, data, len, &r);
    }
    if (f->run && index > f->run->counted) {
        f->run->counted = index;
        f->run->fresh = 0;
    }
    /* The chain covers the verdict and the result bytes too, so replicas that answer a
     * command differently are caught at that very index. */
    uint8_t b[16];
    le_put64(b, index);
    le_put32(b + 8, (uint32_t)r.code);
    le_put32(b + 12, r.len);
    f->hash = mix(mix(mix(f->hash, b, sizeof(b)), data, len), r.data, r.len);
    f->applied = index;
    return 0;
}

static uint64_t fsm_applied(const void *sm) { return ((const fsm_t *)sm)->applied; }
static uint64_t fsm_hash(const void *sm) { return ((const fsm_t *)sm)->hash; }

/* The state's snapshot file bytes: a real snapshot file (header, lz4 frame, CRCs), always
 * written as index 1, term 1, so that equal states give equal bytes (replicas are compared
 * at equal applied indexes; the Raft snapshot keeps the real index in front, see HDR). */
static int fsm_state_bytes(void *sm, uint8_t **buf, size_t *len)
{
    const char *dir = scratch_dir();
    size_t n = 0;
    char *b = dir ? snap_bytes(((fsm_t *)sm)->st, dir, &n) : NULL;
    if (!b || n <= SNAP_HEADER) {
        free(b);
        return -1;
    }
    *buf = (uint8_t *)b;
    *len = n;
    return 0;
}

static int fsm_snapshot(void *sm, uint8_t **buf, size_t *len)
{
    fsm_t *f = sm;
    uint8_t *st;
    size_t n;
    if (fsm_state_bytes(sm, &st, &n) < 0)
        return -1;
    uint8_t *b = malloc(HDR + n);
    if (!b) {
        free(st);
        return -1;
    }
    le_put64(b, f->applied);
    le_put64(b + 8, f->hash);
    memcpy(b + HDR, st, n);
    free(st);
    *buf = b;
    *len = HDR + n;
    return 0;
}

static int fsm_restore(void *sm, const void *buf, size_t len, char *err, size_t errlen)
{
    fsm_t *f = sm;
    const uint8_t *p = buf;
    char *msg = NULL;
    f->applied = f->hash = 0;
    if (len <= HDR + SNAP_HEADER) {
        snprintf(err, errlen, "snapshot of %zu bytes is too short", len);
        return -1;
    }
    int rc = install_file(p + HDR, len - HDR, &msg);
    if (rc < 0) {
        snprintf(err, errlen, "snapshot file refused by the receiver: %s (%s)", qerr_str(rc),
                 msg ? msg : "");
        free(msg);
        return -1;
    }
    if ((rc = restore_dir(f->st, scratch)) < 0) {
        snprintf(err, errlen, "fs restore refused the snapshot: %s", qerr_str(rc));
        return -1;
    }
    if (f->buggy && f->run->bug == SMI_FS_BUG_RESTORE) {
        /* "Restore gets one field wrong": the cache cap, changed by a command of its own
         * (through apply only, so this keeps working whatever the state's layout). */
        cmdbuf_t b;
        sm_result_t r;
        memset(&r, 0, sizeof(r));
        cmd_begin(&b, CMD_SETCAP, NS_CACHE, 0);
        cmd_u64(&b, 12345);
        if (!b.oom)
            state_sm_ops.apply(f->st, le_get64(p), b.p, b.len, &r);
        free(b.p);
    }
    f->applied = le_get64(p);
    f->hash = le_get64(p + 8);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Where two snapshots differ: a walk over the state stream as docs/FORMATS.md ("fs state
 * snapshot"), docs/QUEUES.md and docs/LOCKS.md ("Snapshot section") lay it out, stopping at
 * the field that holds the first differing byte. If the walk loses its way (the format
 * changed), the report still gives the offset. Layout: snapshot version 2 (now_ms in the
 * header, the session table after the config events, locks/ section version 2). */

typedef struct walk {
    const uint8_t *p;
    size_t len, pos, target;
    int done;
    char ctx[200];
    char out[400];
} walk_t;

static int w_hit(walk_t *w, size_t n, const char *field)
{
    if (w->done)
        return 1;
    if (w->pos + n > w->len) {
        snprintf(w->out, sizeof(w->out), "%s: the stream ends inside %s (walk lost)", w->ctx,
                 field);
        return w->done = 1;
    }
    if (w->target < w->pos + n) {
        snprintf(w->out, sizeof(w->out), "%s: %s", w->ctx, field);
        return w->done = 1;
    }
    return 0;
}

static uint64_t w_int(walk_t *w, size_t n, const char *field)
{
    if (w_hit(w, n, field))
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)w->p[w->pos + i] << (8 * i);
    w->pos += n;
    return v;
}

/* A u32-length-prefixed string; copies up to cap-1 bytes into s (may be NULL). */
static void w_str(walk_t *w, const char *field, char *s, size_t cap)
{
    char f[96];
    snprintf(f, sizeof(f), "%.80s (length)", field);
    uint64_t n = w_int(w, 4, f);
    if (w_hit(w, (size_t)n, field))
        return;
    if (s) {
        size_t k = n < cap - 1 ? (size_t)n : cap - 1;
        memcpy(s, w->p + w->pos, k);
        s[k] = 0;
        for (size_t i = 0; i < k; i++)
            if (s[i] < 32 || s[i] > 126)
                s[i] = '?';
    }
    w->pos += (size_t)n;
}

static void w_holders(walk_t *w, const char *what)
{
    char f[64];
    uint64_t n = w_int(w, 4, what);
    for (uint64_t i = 0; i < n && !w->done; i++) {
        static const char *const fl[] = { "sid", "owner", "wid", "fence", "since_ms" };
        for (int k = 0; k < 5; k++) {
            snprintf(f, sizeof(f), "%s[%llu].%s", what, (unsigned long long)i, fl[k]);
            w_int(w, 8, f);
        }
        snprintf(f, sizeof(f), "%s[%llu].pid/kind/mode", what, (unsigned long long)i);
        w_int(w, 4, f);
        w_int(w, 1, f);
        w_int(w, 1, f);
    }
}

static void walk_sessions(walk_t *w)
{
    snprintf(w->ctx, sizeof(w->ctx), "session table");
    w_int(w, 8, "next session id");
    uint64_t n = w_int(w, 4, "session count");
    for (uint64_t i = 0; i < n && !w->done; i++) {
        uint64_t sid = w_int(w, 8, "session id");
        snprintf(w->ctx, sizeof(w->ctx), "session table, session %llu", (unsigned long long)sid);
        w_str(w, "node", NULL, 0);
        w_int(w, 4, "pid");
        w_int(w, 8, "opened_ms");
        w_int(w, 8, "lease_ms");
        w_int(w, 8, "expires_ms");
    }
}

static void walk_locks(walk_t *w)
{
    char name[64];
    snprintf(w->ctx, sizeof(w->ctx), "locks/ section");
    w_int(w, 4, "version");
    w_int(w, 8, "next lock id");
    w_int(w, 8, "fence counter");
    uint64_t n = w_int(w, 4, "lock count");
    for (uint64_t i = 0; i < n && !w->done; i++) {
        uint64_t lid = w_int(w, 8, "lock id");
        snprintf(w->ctx, sizeof(w->ctx), "locks/ section, lock #%llu (id %llu)",
                 (unsigned long long)i, (unsigned long long)lid);
        w_str(w, "name", name, sizeof(name));
        snprintf(w->ctx, sizeof(w->ctx), "locks/ section, lock '%s' (id %llu)", name,
                 (unsigned long long)lid);
        w_int(w, 8, "ctime_ms");
        w_int(w, 8, "mtime_ms");
        w_int(w, 1, "ephemeral");
        w_int(w, 4, "ttl_s");
        w_int(w, 8, "expires_ms");
        w_int(w, 8, "last fence");
        w_str(w, "data", NULL, 0);
        w_holders(w, "holders");
        w_holders(w, "waiters");
    }
}

static void walk_queues(walk_t *w)
{
    char name[64], f[64];
    snprintf(w->ctx, sizeof(w->ctx), "queues/ section");
    w_int(w, 4, "version");
    w_int(w, 8, "next queue id");
    w_int(w, 8, "next message id");
    uint64_t n = w_int(w, 4, "queue count");
    for (uint64_t i = 0; i < n && !w->done; i++) {
        uint64_t qid = w_int(w, 8, "queue id");
        snprintf(w->ctx, sizeof(w->ctx), "queues/ section, queue #%llu (id %llu)",
                 (unsigned long long)i, (unsigned long long)qid);
        w_str(w, "name", name, sizeof(name));
        snprintf(w->ctx, sizeof(w->ctx), "queues/ section, queue '%s' (id %llu)", name,
                 (unsigned long long)qid);
        w_int(w, 8, "ctime_ms");
        w_int(w, 8, "mtime_ms");
        w_int(w, 4, "visibility timeout");
        w_int(w, 4, "max deliveries");
        w_int(w, 8, "max length");
        static const char *const lists[] = { "ready", "in flight", "dead" };
        for (int l = 0; l < 3 && !w->done; l++) {
            snprintf(f, sizeof(f), "%s count", lists[l]);
            uint64_t m = w_int(w, 8, f);
            for (uint64_t j = 0; j < m && !w->done; j++) {
                snprintf(f, sizeof(f), "%s[%llu].id", lists[l], (unsigned long long)j);
                w_int(w, 8, f);
                snprintf(f, sizeof(f), "%s[%llu].count", lists[l], (unsigned long long)j);
                w_int(w, 4, f);
                if (l == 1) {
                    snprintf(f, sizeof(f), "%s[%llu].sid", lists[l], (unsigned long long)j);
                    w_int(w, 8, f);
                    snprintf(f, sizeof(f), "%s[%llu].expires_ms", lists[l],
                             (unsigned long long)j);
                    w_int(w, 8, f);
                }
                snprintf(f, sizeof(f), "%s[%llu].data", lists[l], (unsigned long long)j);
                w_str(w, f, NULL, 0);
            }
        }
        uint64_t nw = w_int(w, 4, "waiter count");
        for (uint64_t j = 0; j < nw && !w->done; j++) {
            snprintf(f, sizeof(f), "waiter[%llu] (sid, hid, claim)", (unsigned long long)j);
            w_int(w, 8, f);
            w_int(w, 8, f);
            w_int(w, 1, f);
        }
    }
}

static void walk_state(walk_t *w)
{
    static const char *const hdr[] = { "next_id", "next_pid", "config_rev", "cache_evictions",
                                       "cache_expirations", "cache_max_bytes", "now_ms" };
    char name[64], f[64];
    snprintf(w->ctx, sizeof(w->ctx), "state header");
    w_int(w, 4, "version");
    for (int i = 0; i < 7; i++)
        w_int(w, 8, hdr[i]);
    for (uint64_t k = 0; !w->done; k++) {
        snprintf(w->ctx, sizeof(w->ctx), "object tree, record %llu", (unsigned long long)k);
        if (w_int(w, 1, "tag") == 0)
            break;
        uint64_t id = w_int(w, 8, "id"), pid = w_int(w, 8, "parent id");
        unsigned ns = (unsigned)w_int(w, 1, "namespace"), type = (unsigned)w_int(w, 1, "type");
        w_str(w, "name", name, sizeof(name));
        snprintf(w->ctx, sizeof(w->ctx), "object tree, %s/ %s '%s' (id %llu, parent %llu)",
                 ns < NS__COUNT && ns ? ns_names[ns] : "?",
                 type == OBJ_DIR ? "dir" : type == OBJ_LINK ? "link" : "file",
                 name, (unsigned long long)id, (unsigned long long)pid);
        w_int(w, 4, "mode");
        w_int(w, 4, "uid");
        w_int(w, 4, "gid");
        w_int(w, 8, "atime_ns");
        w_int(w, 8, "mtime_ns");
        w_int(w, 8, "ctime_ns");
        if (type == OBJ_FILE || type == OBJ_LINK)
            w_str(w, type == OBJ_LINK ? "target" : "value", NULL, 0);
        if (ns == NS_CACHE) {
            w_int(w, 8, "expires_ms");
            w_int(w, 4, "ttl_s");
            w_int(w, 1, "sliding");
        } else if (ns == NS_CONFIG) {
            w_int(w, 8, "revision");
            uint64_t n = w_int(w, 1, "history count");
            for (uint64_t i = 0; i < n && !w->done; i++) {
                snprintf(f, sizeof(f), "history[%llu] revision", (unsigned long long)i);
                w_int(w, 8, f);
                snprintf(f, sizeof(f), "history[%llu] value", (unsigned long long)i);
                w_str(w, f, NULL, 0);
            }
        }
    }
    snprintf(w->ctx, sizeof(w->ctx), "cache LRU order");
    uint64_t n = w_int(w, 8, "key count");
    for (uint64_t i = 0; i < n && !w->done; i++) {
        snprintf(f, sizeof(f), "entry %llu (least recent first)", (unsigned long long)i);
        w_int(w, 8, f);
    }
    snprintf(w->ctx, sizeof(w->ctx), "config events");
    uint64_t ev = w_int(w, 8, "events recorded");
    for (uint64_t i = ev > CONFIG_EVENTS_KEPT ? ev - CONFIG_EVENTS_KEPT : 0; i < ev && !w->done;
         i++) {
        snprintf(w->ctx, sizeof(w->ctx), "config events, event %llu", (unsigned long long)i);
        w_int(w, 8, "revision");
        w_int(w, 1, "op");
        w_str(w, "path", NULL, 0);
    }
    walk_sessions(w);
    for (;;) {
        snprintf(w->ctx, sizeof(w->ctx), "module sections");
        unsigned ns = (unsigned)w_int(w, 1, "namespace tag");
        if (w->done || ns == 0)
            break;
        if (ns == NS_LOCKS)
            walk_locks(w);
        else if (ns == NS_QUEUES)
            walk_queues(w);
        else {
            snprintf(w->ctx, sizeof(w->ctx), "module section of namespace %u", ns);
            w_hit(w, w->len - w->pos, "(not parsed)");
            break;
        }
    }
    if (!w->done)
        snprintf(w->out, sizeof(w->out), "after the end of the walk (offset %zu)", w->pos);
}

static void fsm_diff(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, char *out,
                     size_t outlen)
{
    size_t ra = 0, rb = 0;
    uint8_t *x = raw_stream(a, alen, &ra), *y = raw_stream(b, blen, &rb);
    if (!x || !y) {
        snprintf(out, outlen, "snapshot files of %zu and %zu bytes (a stream could not be "
                 "read back)", alen, blen);
        free(x);
        free(y);
        return;
    }
    size_t i = 0;
    while (i < ra && i < rb && x[i] == y[i])
        i++;
    walk_t w = { .p = x, .len = ra, .target = i };
    walk_state(&w);
    char ex[2][80];
    for (int k = 0; k < 2; k++) {
        const uint8_t *s = k ? y : x;
        size_t n = k ? rb : ra, e = 0;
        for (size_t j = i; j < n && j < i + 16 && e + 4 < sizeof(ex[k]); j++)
            e += (size_t)snprintf(ex[k] + e, sizeof(ex[k]) - e, "%02x ", s[j]);
        if (!e)
            snprintf(ex[k], sizeof(ex[k]), "(end)");
    }
    /* The text around it names the objects whatever the layout (if the walk got lost). */
    char ctx[2][50];
    for (int k = 0; k < 2; k++) {
        const uint8_t *s = k ? y : x;
        size_t n = k ? rb : ra, from = i > 24 ? i - 24 : 0, e = 0;
        for (size_t j = from; j < n && j < i + 24; j++)
            ctx[k][e++] = s[j] >= 32 && s[j] < 127 ? (char)s[j] : '.';
        ctx[k][e] = 0;
    }
    snprintf(out, outlen, "state streams of %zu and %zu bytes first differ at byte %zu, in %s; "
             "bytes there: [%s] vs [%s]; text around: \"%s\" vs \"%s\"", ra, rb, i, w.out,
             ex[0], ex[1], ctx[0], ctx[1]);
    free(x);
    free(y);
}

/* ---------------------------------------------------------------------------------------- */
/* The command generator. Names come from small sets, so commands collide on the same
 * objects often. Most commands are valid and take effect (they are built on what the run
 * learned exists: directories, queues, locks, sessions, claims, waits); many fail as a
 * user's would (ENOENT, EEXIST, ENOTEMPTY, a stale session...); some are malformed. */

static const char *pick(rng_t *r, const char *const *v, size_t n)
{
    return v[rng_below(r, n)];
}
#define PICK(r, v) pick(r, v, sizeof(v) / sizeof(v[0]))
#define PICK64(r, v) (v)[rng_below(r, sizeof(v) / sizeof(v[0]))]

static void rand_text(rng_t *r, char *buf, size_t len)
{
    static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789 -_=:/.";
    for (size_t i = 0; i < len; i++)
        buf[i] = al[rng_below(r, sizeof(al) - 1)];
}

static const char *const cache_leaves[] = { "k0", "k1", "k2", "k3", "k4", "a", "b", "x" };
static const char *const conf_leaves[] = { "url", "pool", "size", "app", "prod", "dev", "db" };
static const char *const conf_mv[] = { "app/prod", "app/dev", "db", "db/old", "old", "app" };

/* A directory of the pool (mk) that the run believes exists, or "" (the root). */
static const char *a_dir(rng_t *r, const char *const *mk, uint8_t known)
{
    if (rng_chance(r, 400))
        return "";
    if (rng_chance(r, 100) || !known)
        return mk[rng_below(r, NMK)];                     /* maybe not a directory */
    int n = __builtin_popcount(known), k = (int)rng_below(r, (uint64_t)n);
    for (int i = 0; i < NMK; i++)
        if ((known >> i & 1) && k-- == 0)
            return mk[i];
    return "";
}

static void a_path(fsrun_t *run, rng_t *r, int cfg, char *buf, size_t size)
{
    const char *d = cfg ? a_dir(r, conf_mk, run->conf_dirs) : a_dir(r, cache_mk, run->cache_dirs);
    const char *leaf = cfg ? PICK(r, conf_leaves) : PICK(r, cache_leaves);
    snprintf(buf, size, "%s%s%s", d, *d ? "/" : "", leaf);
}

static void value(rng_t *r, cmdbuf_t *b, size_t max)
{
    char v[700];
    size_t n = rng_below(r, max + 1);
    if (n > sizeof(v))
        n = sizeof(v);
    rand_text(r, v, n);
    cmd_bytes(b, v, n);
}

static uint64_t pid_id(fsrun_t *run, rng_t *r)
{
    unsigned k = (unsigned)rng_below(r, 10);
    if (k == 0)
        return 5000;                                      /* not a proposer id: ignored */
    if (k == 1)
        return STATE_PID_FIRST + rng_below(r, 8);         /* often taken already */
    return STATE_PID_FIRST + 16 + run->next_pid++;
}

/* The owner of a creation (version 2): mostly valid, sometimes a mode above 07777 or an
 * owner of -1 (refused). */
static void an_owner(rng_t *r, cmdbuf_t *b)
{
    static const uint32_t modes[] = { 0644, 0600, 0755, 04755, 07777, 0, 010000 };
    cmd_u32(b, modes[rng_below(r, 7)]);
    cmd_u32(b, rng_chance(r, 20) ? UINT32_MAX : (uint32_t)rng_below(r, 3) * 1000);
    cmd_u32(b, (uint32_t)rng_below(r, 3));
}

/* An object id for CMD_PUT_IFID / SETATTR: one the run may have seen, or a stray one. */
static uint64_t an_ifid(const fsrun_t *run, rng_t *r)
{
    return rng_chance(r, 500) ? run->first_id + rng_below(r, 40)
                              : STATE_PID_FIRST + rng_below(r, 24);
}

/* cache/ and config/: the generic tree commands. */
static void gen_tree(fsrun_t *run, rng_t *r, cmdbuf_t *b, uint8_t ns)
{
    char p[128], q[128];
    int cfg = ns == NS_CONFIG;
    const char *const *mk = cfg ? conf_mk : cache_mk;
    unsigned k = (unsigned)rng_below(r, 100);
    a_path(run, r, cfg, p, sizeof(p));
    if (k < 28) {                                         /* PUT */
        static const uint8_t fl[] = { CMD_PUT_CREATE, CMD_PUT_CREATE, CMD_PUT_CREATE,
                                      CMD_PUT_CREATE, CMD_PUT_CREATE | CMD_PUT_EXCL,
                                      CMD_PUT_CREATE | CMD_PUT_KEEP, 0,
                                      CMD_PUT_CREATE | CMD_PUT_ID };
        uint8_t f = fl[rng_below(r, sizeof(fl))];
        if (rng_chance(r, 100))
            f |= CMD_PUT_IFID;
        cmd_begin(b, CMD_PUT, ns, 0);
        cmd_str(b, p);
        cmd_u8(b, f);
        if (f & CMD_PUT_ID)
            cmd_u64(b, pid_id(run, r));
        if (f & CMD_PUT_IFID)
            cmd_u64(b, an_ifid(run, r));
        if (f & CMD_PUT_CREATE)
            an_owner(r, b);
        value(r, b, !cfg && rng_chance(r, 100) ? 600 : 40);
    } else if (k < 42) {                                  /* WRITE */
        uint8_t f = rng_chance(r, 700) ? CMD_PUT_CREATE : 0;
        if (rng_chance(r, 200))
            f |= CMD_WRITE_TRUNC;
        if (rng_chance(r, 200))
            f |= CMD_WRITE_APPEND;
        if (rng_chance(r, 100))
            f |= CMD_PUT_ID;
        if (rng_chance(r, 30))
            f |= CMD_PUT_EXCL;
        int setlen = rng_chance(r, 100);
        if (setlen)
            f |= CMD_WRITE_SETLEN;
        if (rng_chance(r, 50))
            f |= CMD_PUT_IFID;
        cmd_begin(b, CMD_WRITE, ns, 0);
        cmd_str(b, p);
        cmd_u8(b, f);
        if (f & CMD_PUT_ID)
            cmd_u64(b, pid_id(run, r));
        if (f & CMD_PUT_IFID)
            cmd_u64(b, an_ifid(run, r));
        if (f & CMD_PUT_CREATE)
            an_owner(r, b);
        cmd_u64(b, rng_below(r, setlen ? 80 : 40));
        if (setlen)
            cmd_bytes(b, "", 0);
        else
            value(r, b, 24);
    } else if (k < 52) {                                  /* MKDIR */
        cmd_begin(b, CMD_MKDIR, ns, 0);
        cmd_str(b, rng_chance(r, 800) ? mk[rng_below(r, NMK)] : p);
        an_owner(r, b);
    } else if (k < 56) {                                  /* RMDIR */
        cmd_begin(b, CMD_RMDIR, ns, 0);
        cmd_str(b, rng_chance(r, 700) ? mk[rng_below(r, NMK)] : p);
    } else if (k < 66) {                                  /* UNLINK */
        cmd_begin(b, CMD_UNLINK, ns, 0);
        cmd_str(b, p);
    } else if (k < 75) {                                  /* RENAME: files, or whole trees */
        cmd_begin(b, CMD_RENAME, ns, 0);
        if (rng_chance(r, 400)) {
            cmd_str(b, cfg ? PICK(r, conf_mv) : mk[rng_below(r, NMK)]);
            cmd_str(b, cfg ? PICK(r, conf_mv) : mk[rng_below(r, NMK)]);
        } else {
            a_path(run, r, cfg, q, sizeof(q));
            cmd_str(b, p);
            cmd_str(b, q);
        }
        cmd_u8(b, rng_chance(r, 200) ? CMD_RENAME_NOREPLACE : 0);
    } else if (k < 86) {                                  /* SETXATTR / REMOVEXATTR */
        static const char *const names[] = { "user.ttl", "user.ttl", "user.ttl",
                                             "user.ttl_sliding", "user.other" };
        static const char *const vals[] = { "1", "2", "3", "5", "0", "4\n", "1", "x1",
                                            "99999999999999" };
        const char *nm = PICK(r, names);
        if (rng_chance(r, 400))
            snprintf(p, sizeof(p), "%s", mk[rng_below(r, NMK)]);  /* a directory's default */
        if (rng_chance(r, 150)) {
            cmd_begin(b, CMD_REMOVEXATTR, ns, 0);
            cmd_str(b, p);
            cmd_str(b, nm);
        } else {
            cmd_begin(b, CMD_SETXATTR, ns, 0);
            cmd_str(b, p);
            cmd_str(b, nm);
            cmd_str(b, strcmp(nm, "user.ttl_sliding") ? PICK(r, vals)
                                                      : rng_chance(r, 800) ? "1" : "0");
        }
    } else if (k < 87) {                                  /* SETMTIME (a v1 touch(1)) */
        cmd_begin(b, CMD_SETMTIME, ns, 0);
        cmd_str(b, p);
    } else if (k < 89) {                                  /* SETATTR: chmod, chown, touch */
        static const uint8_t masks[] = { CMD_SETATTR_MODE, CMD_SETATTR_UID | CMD_SETATTR_GID,
                                         CMD_SETATTR_MTIME_NOW | CMD_SETATTR_ATIME_NOW,
                                         CMD_SETATTR_MTIME | CMD_SETATTR_ATIME, 0,
                                         CMD_SETATTR_ALL, CMD_SETATTR_MODE | CMD_SETATTR_MTIME };
        static const int64_t times[] = { 0, -1, 981173106123456789ll, INT64_MAX, INT64_MIN };
        cmd_begin(b, CMD_SETATTR, ns, 0);
        cmd_str(b, rng_chance(r, 100) ? "" : rng_chance(r, 200) ? mk[rng_below(r, NMK)] : p);
        cmd_u64(b, rng_chance(r, 200) ? an_ifid(run, r) : 0);
        cmd_u8(b, masks[rng_below(r, 7)]);
        an_owner(r, b);
        cmd_u64(b, (uint64_t)times[rng_below(r, 5)]);
        cmd_u64(b, (uint64_t)times[rng_below(r, 5)]);
    } else if (k < 90) {                                  /* SYMLINK */
        static const char *const targets[] = { "k0", "../x", "/abs/path", "", "a\nb" };
        cmd_begin(b, CMD_SYMLINK, ns, 0);
        cmd_str(b, p);
        cmd_str(b, PICK(r, targets));
        cmd_u32(b, (uint32_t)rng_below(r, 2));
        cmd_u32(b, rng_chance(r, 20) ? UINT32_MAX : 0);
    } else if (k < 96) {                                  /* TOUCH: reads of sliding keys */
        uint32_t n = (uint32_t)rng_range(r, 1, 3);
        cmd_begin(b, CMD_TOUCH, ns, 0);
        cmd_u32(b, n);
        for (uint32_t i = 0; i < n; i++) {
            a_path(run, r, cfg, q, sizeof(q));
            cmd_str(b, q);
        }
    } else if (k < 98) {                                  /* SETCAP */
        static const uint64_t caps[] = { 0, 300, 1000, 4000, 1u << 20,
                                         STATE_DEFAULT_CACHE_CAP };
        cmd_begin(b, CMD_SETCAP, ns, 0);
        cmd_u64(b, caps[rng_below(r, 6)]);
    } else {                                              /* EXPIRE from a stale reader */
        cmd_begin(b, CMD_EXPIRE, ns, 0);
        cmd_u32(b, 1);
        cmd_str(b, p);
        cmd_u64(b, rng_below(r, 4));
    }
}

static uint64_t a_sid(fsrun_t *run, rng_t *r)
{
    const fact_t *f = ring_pick(&run->sids, r);
    if (rng_chance(r, 80) || !f)
        return rng_below(r, 12);                          /* maybe unknown or ended */
    return f->a;
}

/* A queue or lock number: one that exists as far as the run knows, mostly. */
static unsigned a_num(rng_t *r, const uint8_t *live, unsigned n)
{
    unsigned k = 0, c[8];
    for (unsigned i = 0; i < n; i++)
        if (live[i])
            c[k++] = i;
    if (!k || rng_chance(r, 120))
        return (unsigned)rng_below(r, n);
    return c[rng_below(r, k)];
}

static void gen_queues(fsrun_t *run, rng_t *r, cmdbuf_t *b)
{
    char q[16];
    unsigned qi = a_num(r, run->qlive, NQ);
    snprintf(q, sizeof(q), "q%u", qi);
    unsigned k = (unsigned)rng_below(r, 100);
    if (k < 5 || (!run->qlive[qi] && rng_chance(r, 700))) {
        cmd_begin(b, QOP_MKDIR, NS_QUEUES, 0);
        cmd_str(b, rng_chance(r, 50) ? ".q" : q);
    } else if (k < 7) {
        cmd_begin(b, QOP_RMDIR, NS_QUEUES, 0);
        cmd_str(b, q);
        cmd_u8(b, (uint8_t)rng_chance(r, 300));
    } else if (k < 12) {
        static const uint64_t lo[] = { 0, 1, 1, 0 }, hi[] = { 0, 6, 4, 12 };
        uint8_t which = (uint8_t)(rng_chance(r, 30) ? 4 : rng_range(r, 1, 3));
        cmd_begin(b, QOP_SET, NS_QUEUES, 0);
        cmd_str(b, q);
        cmd_u8(b, which);
        cmd_u64(b, which < 4 && rng_chance(r, 950) ? rng_range(r, lo[which], hi[which])
                                                   : QUEUE_VT_MAX + 1);
    } else if (k < 40) {
        uint32_t n = (uint32_t)rng_range(r, 1, 3);
        cmd_begin(b, QOP_PUSH, NS_QUEUES, 0);
        cmd_str(b, q);
        cmd_u32(b, rng_chance(r, 20) ? n + 1 : n);        /* one more than follows: EINVAL */
        for (uint32_t i = 0; i < n; i++) {
            char m[20];
            size_t len = rng_chance(r, 20) ? 0 : rng_range(r, 1, sizeof(m));
            rand_text(r, m, len);
            cmd_bytes(b, m, len);
        }
    } else if (k < 64) {
        uint64_t sid = a_sid(run, r), hid = ++run->next_hid;
        const fact_t *t = rng_chance(r, 150) ? ring_pick(&run->takes, r) : NULL;
        if (t) {                                          /* a retried take */
            snprintf(q, sizeof(q), "q%u", t->k);
            sid = t->b;
            hid = t->a;
        }
        uint8_t f = (uint8_t)((rng_chance(r, 550) ? QTAKE_CLAIM : 0) |
                              (rng_chance(r, 500) ? QTAKE_NOWAIT : 0));
        if (!(f & QTAKE_NOWAIT))
            ring_add(&run->takes, (uint8_t)(q[1] - '0'), hid, sid);
        cmd_begin(b, QOP_TAKE, NS_QUEUES, 0);
        cmd_str(b, q);
        cmd_u64(b, sid);
        cmd_u64(b, hid);
        cmd_u8(b, f);
    } else if (k < 68) {
        const fact_t *t = ring_pick(&run->takes, r);
        if (t)
            snprintf(q, sizeof(q), "q%u", t->k);
        cmd_begin(b, QOP_CANCEL, NS_QUEUES, 0);
        cmd_str(b, q);
        cmd_u64(b, t ? t->b : a_sid(run, r));
        cmd_u64(b, t ? t->a : rng_range(r, 1, 9));
    } else if (k < 92) {                                  /* claim operations */
        static const uint8_t ops[] = { QOP_ACK, QOP_ACK, QOP_ACK, QOP_ACK, QOP_EXTEND,
                                       QOP_EXTEND, QOP_RETURN, QOP_DEADRM, QOP_EXPIRE };
        uint8_t op = ops[rng_below(r, sizeof(ops))];
        const fact_t *c = rng_chance(r, 900) ? ring_pick(&run->claims, r) : NULL;
        if (c)
            snprintf(q, sizeof(q), "q%u", c->k);
        cmd_begin(b, op, NS_QUEUES, 0);
        cmd_str(b, q);
        if (op == QOP_EXPIRE)
            cmd_u32(b, 1);
        cmd_u64(b, c ? c->a : rng_range(r, 1, 30));
    } else if (k < 95) {
        /* A popped message handed back (its reader went away): each once, as a node's
         * give_back does. */
        typeof(run->pops[0]) *p = &run->pops[rng_below(r, 8)];
        cmd_begin(b, QOP_UNPOP, NS_QUEUES, 0);
        if (p->id) {
            snprintf(q, sizeof(q), "q%u", p->q);
            cmd_str(b, q);
            cmd_u64(b, p->id);
            cmd_u32(b, p->count);
            cmd_bytes(b, p->msg, p->len);
            p->id = 0;
        } else {
            cmd_str(b, q);
            cmd_u64(b, 0);                                /* EINVAL */
            cmd_u32(b, 0);
            cmd_bytes(b, "m", 1);
        }
    } else {
        cmd_begin(b, QOP_TAKE, NS_QUEUES, 0);             /* short: EINVAL */
        cmd_str(b, q);
        cmd_u64(b, a_sid(run, r));
    }
}

static void gen_locks(fsrun_t *run, rng_t *r, cmdbuf_t *b)
{
    char l[16];
    unsigned li = a_num(r, run->llive, NL);
    snprintf(l, sizeof(l), "l%u", li);
    unsigned k = (unsigned)rng_below(r, 100);
    if (k < 8 || (k < 16 && !ring_pick(&run->sids, r))) { /* sessions */
        char node[80];
        cmd_begin(b, SOP_OPEN, NS_LOCKS, 0);
        if (rng_chance(r, 30)) {
            memset(node, 'n', 70);
            cmd_bytes(b, node, 70);                       /* too long: EINVAL */
        } else {
            snprintf(node, sizeof(node), "n%u", (unsigned)rng_range(r, 1, 5));
            cmd_str(b, node);
        }
        cmd_u32(b, (uint32_t)rng_range(r, 100, 9999));
        cmd_u64(b, rng_chance(r, 20) ? 0 : rng_range(r, 1000, 20000));
    } else if (k < 13) {
        cmd_begin(b, SOP_RENEW, NS_LOCKS, 0);
        cmd_u64(b, a_sid(run, r));
        cmd_u64(b, rng_range(r, 1000, 20000));
    } else if (k < 16) {
        cmd_begin(b, SOP_END, NS_LOCKS, 0);
        cmd_u64(b, a_sid(run, r));
        cmd_u8(b, (uint8_t)rng_below(r, 2));
    } else if (k < 30 || (!run->llive[li] && rng_chance(r, 600))) {
        cmd_begin(b, LOP_CREATE, NS_LOCKS, 0);
        cmd_str(b, rng_chance(r, 30) ? "l/x" : l);
        cmd_u8(b, (uint8_t)rng_chance(r, 400));
        cmd_u64(b, a_sid(run, r));
        cmd_u32(b, (uint32_t)rng_range(r, 100, 9999));
    } else if (k < 56) {
        uint64_t sid = a_sid(run, r), wid = ++run->next_wid;
        uint8_t wait = (uint8_t)rng_chance(r, 600);
        if (wait)
            ring_add(&run->waits, (uint8_t)li, wid, sid);
        cmd_begin(b, LOP_LOCK, NS_LOCKS, 0);
        cmd_str(b, l);
        cmd_u64(b, sid);
        cmd_u8(b, rng_chance(r, 20) ? LK_CREATE : rng_chance(r, 600) ? LK_FLOCK : LK_POSIX);
        cmd_u64(b, rng_range(r, 1, 3));
        cmd_u8(b, rng_chance(r, 20) ? 0 : rng_chance(r, 500) ? LM_SHARED : LM_EXCL);
        cmd_u8(b, wait);
        cmd_u64(b, wid);
        cmd_u32(b, (uint32_t)rng_range(r, 100, 9999));
    } else if (k < 66) {
        const fact_t *w = ring_pick(&run->waits, r);
        if (w)
            snprintf(l, sizeof(l), "l%u", w->k);
        cmd_begin(b, LOP_UNLOCK, NS_LOCKS, 0);
        cmd_str(b, l);
        cmd_u64(b, w ? w->b : a_sid(run, r));
        cmd_u8(b, rng_chance(r, 600) ? LK_FLOCK : LK_POSIX);
        cmd_u64(b, rng_range(r, 1, 3));
    } else if (k < 71) {
        const fact_t *w = ring_pick(&run->waits, r);
        if (w)
            snprintf(l, sizeof(l), "l%u", w->k);
        cmd_begin(b, LOP_CANCEL, NS_LOCKS, 0);
        cmd_str(b, l);
        cmd_u64(b, w ? w->b : a_sid(run, r));
        cmd_u64(b, rng_chance(r, 30) ? 0 : w ? w->a : rng_range(r, 1, 9));  /* 0: EINVAL */
    } else if (k < 74) {
        cmd_begin(b, LOP_UNLINK, NS_LOCKS, 0);
        cmd_str(b, l);
    } else if (k < 80) {
        cmd_begin(b, LOP_SETTTL, NS_LOCKS, 0);
        cmd_str(b, l);
        cmd_u32(b, rng_chance(r, 20) ? LOCK_TTL_MAX + 1 : (uint32_t)rng_below(r, 6));
    } else if (k < 85) {
        cmd_begin(b, LOP_TOUCH, NS_LOCKS, 0);
        cmd_str(b, l);
    } else if (k < 89) {
        const fact_t *f = ring_pick(&run->fences, r);
        if (f)
            snprintf(l, sizeof(l), "l%u", f->k);
        cmd_begin(b, LOP_EXPIRE, NS_LOCKS, 0);
        cmd_str(b, l);
        cmd_u64(b, f ? f->a : rng_range(r, 1, 20));
    } else {
        cmd_begin(b, LOP_DATA, NS_LOCKS, 0);
        cmd_str(b, l);
        value(r, b, 30);
    }
}

/* services/: services s0..s2, instances i0..i3 with addresses; settings, picks, health
 * changes and expiries (apply judges each: unknown names, dead sessions, values out of
 * range and expiries not due yet are refused alike on every replica). */
static void gen_services(fsrun_t *run, rng_t *r, cmdbuf_t *b)
{
    char svc[8], inst[8], addr[32];
    snprintf(svc, sizeof(svc), "s%u", (unsigned)rng_below(r, 3));
    snprintf(inst, sizeof(inst), "i%u", (unsigned)rng_below(r, 4));
    unsigned k = (unsigned)rng_below(r, 100);
    if (k < 10) {
        cmd_begin(b, SVOP_MKDIR, NS_SERVICES, 0);
        cmd_str(b, rng_chance(r, 30) ? ".." : svc);
    } else if (k < 13) {
        cmd_begin(b, SVOP_RMDIR, NS_SERVICES, 0);
        cmd_str(b, svc);
    } else if (k < 23) {
        cmd_begin(b, SVOP_SET, NS_SERVICES, 0);
        cmd_str(b, svc);
        cmd_u8(b, (uint8_t)rng_range(r, 1, 4));
        cmd_u64(b, rng_chance(r, 30) ? SVC_TTL_MAX + 1ull : rng_below(r, 5));
    } else if (k < 48) {
        snprintf(addr, sizeof(addr), "10.0.0.%u:%u", (unsigned)rng_below(r, 4),
                 (unsigned)rng_range(r, 1, 3));
        cmd_begin(b, SVOP_REG, NS_SERVICES, 0);
        cmd_str(b, svc);
        cmd_str(b, rng_chance(r, 30) ? ".pick" : inst);
        cmd_u64(b, a_sid(run, r));
        if (rng_chance(r, 30))
            cmd_bytes(b, "a\nb", 3);                     /* a newline: EINVAL */
        else
            cmd_str(b, addr);
    } else if (k < 56) {
        cmd_begin(b, SVOP_TOUCH, NS_SERVICES, 0);
        cmd_str(b, svc);
        cmd_str(b, inst);
    } else if (k < 62) {
        cmd_begin(b, SVOP_UNREG, NS_SERVICES, 0);
        cmd_str(b, svc);
        cmd_str(b, inst);
    } else if (k < 70) {
        cmd_begin(b, SVOP_SETI, NS_SERVICES, 0);
        cmd_str(b, svc);
        cmd_str(b, inst);
        cmd_u8(b, (uint8_t)rng_range(r, 1, 2));
        cmd_u64(b, rng_chance(r, 30) ? SVC_LOAD_MAX + 1ull : rng_below(r, 10));
    } else if (k < 85) {
        cmd_begin(b, SVOP_PICK, NS_SERVICES, 0);
        cmd_str(b, svc);
    } else if (k < 95) {
        cmd_begin(b, SVOP_HEALTH, NS_SERVICES, 0);
        cmd_str(b, svc);
        cmd_str(b, inst);
        cmd_u64(b, rng_range(r, 1, 40));                  /* instance ids: a guess */
        cmd_u8(b, (uint8_t)rng_below(r, rng_chance(r, 30) ? 3 : 2));
    } else {
        cmd_begin(b, SVOP_EXPIRE, NS_SERVICES, 0);
        cmd_str(b, svc);
        cmd_str(b, inst);
        cmd_u64(b, rng_range(r, 1, 40));
    }
}

/* search/: indexes i0..i2 (declared or not: a document makes its index's container),
 * documents d0..d5 whose texts take a few words of a small vocabulary, so postings overlap,
 * and documents replace, rename over and delete one another. */
static void a_text(rng_t *r, char *buf, size_t size, size_t *len)
{
    static const char *const words[] = { "alpha", "beta", "gamma", "raft", "log", "node",
                                         "Alpha", "RAFT", "the", "a", "x1", "2026",
                                         "\xc3\xa9tat", "na\xc3\xafve", "foo-bar", "foo_bar",
                                         "don't", "beta.gamma" };
    static const char *const seps[] = { " ", " ", " ", "\n", ", ", ". ", "\t", "--" };
    size_t n = 0, words_n = rng_below(r, 9);
    for (size_t i = 0; i < words_n; i++) {
        const char *w = rng_chance(r, 5) ? "\xff\xfe" : PICK(r, words);  /* not UTF-8 */
        int k = snprintf(buf + n, size - n, "%s%s", i ? PICK(r, seps) : "", w);
        if (k < 0 || (size_t)k >= size - n)
            break;
        n += (size_t)k;
    }
    *len = n;
}

static const char *const bad_leaf[] = { ".hidden", "a/b", "", "x\n", "\xff" };

static void gen_search(fsrun_t *run, rng_t *r, cmdbuf_t *b)
{
    char ix[16], d[16], d2[16], text[200];
    size_t tl;
    unsigned ii = rng_chance(r, 500) ? 0 : a_num(r, run->ilive, NI), di = 0;
    unsigned k = (unsigned)rng_below(r, 100), have = run->sdocs[ii];
    if (k >= 60 && have && rng_chance(r, 700)) {         /* DEL, RENAME: mostly a document */
        int c = (int)rng_below(r, (uint64_t)__builtin_popcount(have));
        while (!(have >> di & 1) || c-- > 0)
            di++;
    } else {
        di = (unsigned)rng_below(r, 6);
    }
    snprintf(ix, sizeof(ix), "i%u", ii);
    snprintf(d, sizeof(d), "d%u", di);
    if (k < 8) {
        if (rng_chance(r, 40)) {                         /* excl 2: EINVAL */
            cmd_begin(b, SROP_MKIDX, NS_SEARCH, 0);
            cmd_str(b, ix);
            cmd_u8(b, 2);
        } else {
            search_cmd_mkidx(b, 0, rng_chance(r, 40) ? SEARCH_Q : rng_chance(r, 30) ?
                             PICK(r, bad_leaf) : ix, (int)rng_below(r, 2));
        }
    } else if (k < 12) {
        search_cmd_rmidx(b, 0, ix);
    } else if (k < 60) {
        static const uint8_t fl[] = { 0, 0, 0, 0, 0, 0, SEARCH_PUT_EXCL, SEARCH_PUT_MUSTEXIST };
        uint8_t f = rng_chance(r, 15) ? 4 : fl[rng_below(r, sizeof(fl))];   /* 4: EINVAL */
        if (rng_chance(r, 1)) {                          /* one byte too long: EFBIG */
            size_t n = SEARCH_DOC_MAX + 1;
            char *big = malloc(n);
            if (!big) {
                b->oom = 1;
                return;
            }
            memset(big, 'w', n);
            search_cmd_put(b, 0, ix, d, f, big, n);
            free(big);
        } else {
            a_text(r, text, sizeof(text), &tl);
            search_cmd_put(b, 0, ix, rng_chance(r, 20) ? SEARCH_Q : d, f, text, tl);
        }
    } else if (k < 76) {
        search_cmd_del(b, 0, ix, rng_chance(r, 20) ? PICK(r, bad_leaf) : d);
    } else if (k < 94) {
        snprintf(d2, sizeof(d2), "d%u", (unsigned)rng_below(r, 6));
        if (rng_chance(r, 40)) {                          /* noreplace 2: EINVAL */
            cmd_begin(b, SROP_RENAME, NS_SEARCH, 0);
            cmd_str(b, ix);
            cmd_str(b, d);
            cmd_str(b, d2);
            cmd_u8(b, 2);
        } else {
            search_cmd_rename(b, 0, ix, d, rng_chance(r, 30) ? SEARCH_Q : d2,
                              (int)rng_below(r, 2));
        }
    } else {
        cmd_begin(b, SROP_PUT, NS_SEARCH, 0);             /* no flags, no text: EINVAL */
        cmd_str(b, ix);
        cmd_str(b, d);
        if (rng_chance(r, 500))
            cmd_u8(b, 0);
    }
}

/* jobs/: jobs j0..j2 with valid and invalid settings; ticks before, at and after the
 * newest decided one (and some that are no fire time), manual runs, and runs started,
 * written to and finished by live sessions, by ended ones and by the wrong ones. What
 * exists is read back from the state after each jobs/ command (learn_state). */
static uint64_t a_tick(const fsrun_t *run, rng_t *r)
{
    uint64_t now = run->now_ms ? run->now_ms : 1700000000000ull, t = now / 1000 * 1000;
    unsigned k = (unsigned)rng_below(r, 20);
    if (k < 11)
        return t - 1000 * rng_below(r, 4);               /* due, or decided already */
    if (k < 15)
        return t + 1000 * rng_range(r, 1, 3);            /* to come: EAGAIN */
    if (k < 17)
        return t - 1000 * rng_range(r, 4, 40);           /* long ago */
    if (k < 19)
        return t - rng_range(r, 1, 999);                 /* no fire time: EINVAL */
    return rng_below(r, 2);
}

static uint64_t a_run(const fsrun_t *run, rng_t *r, unsigned j)
{
    uint64_t hi = run->jhi[j];
    if (!hi || rng_chance(r, 80))
        return rng_below(r, hi + 3);                      /* 0, or not made yet: ENOENT */
    return hi - rng_below(r, hi < 4 ? hi : 4);
}

static void gen_jobs(fsrun_t *run, rng_t *r, cmdbuf_t *b)
{
    static const char *const bad_jobs[] = { ".events", ".events@3", "a/b", "", ".hidden" };
    static const char *const cmds[] = { "true", "echo hi", "exit 3\n", "", "a\0b" };
    static const char *const scheds[] = { "@every 1s", "@every 2s", "@every 3s\n",
                                          "* * * * *", "@every 1m", "@hourly", "", "bad",
                                          "@every 0s", "0 0 30 2 *", "@every 1s" };
    static const char *const timeouts[] = { "0", "5", "604800", "604801", "x", "5\n" };
    static const char *const retries[] = { "0", "1", "3", "20", "21", "-1" };
    static const char *const concs[] = { "forbid", "allow", "allow", "replace", "replace\n",
                                         "sometimes" };
    static const uint8_t states[] = { JR_OK, JR_OK, JR_FAILED, JR_FAILED, JR_TIMEOUT,
                                      JR_KILLED, JR_LOST, JR_PENDING };
    static const int32_t exits[] = { 0, 0, 1, 3, -9, -15, INT32_MIN };
    char j[16], chunk[48];
    unsigned ji = a_num(r, run->jlive, NJ);
    snprintf(j, sizeof(j), "j%u", ji);
    unsigned k = (unsigned)rng_below(r, 100);
    /* Runs move on: a pending run is started, a running one written to or ended, often. */
    if (run->jpend.n && rng_chance(r, 250))
        k = 50;
    else if (run->jruns.n && rng_chance(r, 300))
        k = (unsigned)rng_range(r, 62, 85);
    if (k < 6 || (!run->jlive[ji] && rng_chance(r, 500))) {
        jobs_cmd_mkdir(b, 0, rng_chance(r, 50) ? PICK(r, bad_jobs) : j);
    } else if (k < 9) {
        jobs_cmd_rmdir(b, 0, j);
    } else if (k < 27 || (run->jlive[ji] && !run->jcmd[ji] && rng_chance(r, 400)) ||
               (run->jlive[ji] && !run->jsched[ji] && rng_chance(r, 150))) {  /* settings */
        uint8_t which = (uint8_t)(rng_chance(r, 20) ? rng_below(r, 2) * 6 : rng_range(r, 1, 5));
        if (k >= 27)
            which = run->jcmd[ji] ? JSET_SCHEDULE : JSET_CMD;
        const char *t = "";
        char *big = NULL;
        size_t tl;
        if (which == JSET_CMD && rng_chance(r, 10)) {     /* one byte too long: EINVAL */
            tl = JOBS_CMD_MAX + 1;
            if (!(big = malloc(tl))) {
                b->oom = 1;
                return;
            }
            memset(big, 'x', tl);
            t = big;
        } else if (which == JSET_CMD) {
            unsigned c = (unsigned)rng_below(r, k >= 27 ? 3 : 5);
            t = cmds[c];
            tl = c == 4 ? 3 : strlen(t);                  /* a NUL inside: EINVAL */
        } else {
            t = which == JSET_SCHEDULE ? PICK(r, scheds) : which == JSET_TIMEOUT ?
                PICK(r, timeouts) : which == JSET_RETRIES ? PICK(r, retries) : PICK(r, concs);
            tl = strlen(t);
        }
        jobs_cmd_set(b, 0, j, which, t, tl);
        free(big);
    } else if (k < 40) {
        jobs_cmd_tick(b, 0, j, a_tick(run, r));
    } else if (k < 50) {
        jobs_cmd_run(b, 0, j);
    } else if (k < 62) {                                  /* k 50: a pending run */
        const fact_t *p = rng_chance(r, 800) ? ring_pick(&run->jpend, r) : NULL;
        if (p)
            snprintf(j, sizeof(j), "j%u", p->k);
        jobs_cmd_start(b, 0, j, p ? p->a : a_run(run, r, ji), a_sid(run, r));
    } else if (k < 86) {                                  /* output and ends of runs */
        const fact_t *x = rng_chance(r, 850) ? ring_pick(&run->jruns, r) : NULL;
        uint64_t n = x ? x->a : a_run(run, r, ji), sid = x ? x->b : a_sid(run, r);
        if (x)
            snprintf(j, sizeof(j), "j%u", x->k);
        if (x && rng_chance(r, 60))
            sid = a_sid(run, r);                          /* another session: ESTALE */
        if (k < 74) {
            uint8_t stream = (uint8_t)(rng_chance(r, 30) ? rng_below(r, 2) * 3 :
                                       rng_range(r, 1, 2));
            size_t len = rng_below(r, sizeof(chunk));
            char *big = NULL;
            if (rng_chance(r, 4)) {                       /* past the 1 MiB cap */
                len = JOBS_OUT_MAX - 16 + rng_below(r, 48);
                if (!(big = malloc(len))) {
                    b->oom = 1;
                    return;
                }
                for (size_t i = 0; i < len; i++)
                    big[i] = "output line\n"[i % 12];
            } else {
                rand_text(r, chunk, len);
            }
            uint64_t total = len + (rng_chance(r, 50) ? 0 : rng_chance(r, 250) ?
                                    (2u << 20) + rng_below(r, 1000) : rng_range(r, 200, 5000));
            if (rng_chance(r, 30) && len)
                total = len - 1;                          /* less than it wrote: EINVAL */
            jobs_cmd_output(b, 0, j, n, sid, stream, total, big ? big : chunk, len);
            free(big);
        } else if (rng_chance(r, 500)) {
            jobs_cmd_finish(b, 0, j, n, sid, states[rng_below(r, sizeof(states))],
                            exits[rng_below(r, sizeof(exits) / sizeof(exits[0]))]);
        } else {                                          /* a sweep's FINISHES */
            jobs_fin_t f[4];
            char fb[4][16];
            rand_text(r, chunk, 64);
            uint32_t nf = (uint32_t)rng_range(r, 1, 4);
            for (uint32_t i = 0; i < nf; i++) {
                const fact_t *y = i ? (rng_chance(r, 700) ? ring_pick(&run->jruns, r) : NULL) : x;
                unsigned q = y ? y->k : (unsigned)rng_below(r, NJ);
                snprintf(fb[i], sizeof(fb[i]), "j%u", i ? q : (x ? x->k : (unsigned)ji));
                size_t l0 = rng_chance(r, 500) ? rng_below(r, 64) : 0;
                f[i] = (jobs_fin_t){
                    .job = i ? fb[i] : j, .run = i ? (y ? y->a : a_run(run, r, q)) : n,
                    .state = states[rng_below(r, sizeof(states))],
                    .exit_code = exits[rng_below(r, sizeof(exits) / sizeof(exits[0]))],
                    .out = { chunk, chunk }, .len = { l0, rng_chance(r, 200) ? 16 : 0 },
                    .total = { l0 + (rng_chance(r, 100) ? 3000 : 0), 16 } };
                if (!f[i].len[1])
                    f[i].total[1] = 0;
            }
            jobs_cmd_finishes(b, 0, sid, nf, f);
        }
    } else if (k < 96) {                                  /* what sweeps batch */
        const char *names[5];
        char nb[5][16];
        uint64_t v[5];
        uint32_t n = rng_chance(r, 30) ? 0 : (uint32_t)rng_range(r, 1, 5);  /* 0: EINVAL */
        int starts = (int)rng_below(r, 2);
        for (uint32_t i = 0; i < n; i++) {
            const fact_t *p = starts && rng_chance(r, 700) ? ring_pick(&run->jpend, r) : NULL;
            unsigned q = p ? p->k : (unsigned)rng_below(r, NJ);
            snprintf(nb[i], sizeof(nb[i]), "j%u", q);
            names[i] = rng_chance(r, 20) ? "" : nb[i];    /* an empty name: EINVAL */
            v[i] = p ? p->a : starts ? a_run(run, r, q) : a_tick(run, r);
        }
        if (n) {
            jobs_cmd_batch(b, 0, starts ? JOP_STARTS : JOP_TICKS, a_sid(run, r), n, names, v);
        } else {                                          /* the encoder asserts n >= 1 */
            cmd_begin(b, starts ? JOP_STARTS : JOP_TICKS, NS_JOBS, 0);
            if (starts)
                cmd_u64(b, a_sid(run, r));
            cmd_u32(b, 0);
        }
    } else {
        static const uint8_t ops[] = { JOP_TICK, JOP_START, JOP_OUTPUT, JOP_FINISH,
                                       JOP_FINISHES, 0, 200 };
        cmd_begin(b, ops[rng_below(r, sizeof(ops))], NS_JOBS, 0);   /* cut short: EINVAL */
        cmd_str(b, j);
        if (rng_chance(r, 500))
            cmd_u64(b, a_run(run, r, ji));
    }
}

/* logs/: logs l0..l2; appends of small and larger records (at the end, at the offset the run
 * believes is the end, or elsewhere; with the log's id or another), retention and segment
 * settings small enough that segments seal and drop within a run, trims, removals. */
static void gen_logs(fsrun_t *run, rng_t *r, cmdbuf_t *b)
{
    static const uint64_t ret_bytes[] = { 0, 0, 3000, 10000, 50000, LOGS_RETENTION_BYTES_MAX,
                                          LOGS_RETENTION_BYTES_MAX + 1 };
    static const uint64_t ret_s[] = { 0, 0, 1, 2, 5, 30, LOGS_RETENTION_S_MAX,
                                      LOGS_RETENTION_S_MAX + 1 };
    static const uint64_t segs[] = { LOGS_SEGMENT_MIN, LOGS_SEGMENT_MIN, 5000, 8192, 16384,
                                     LOGS_SEGMENT_DEFAULT, LOGS_SEGMENT_MIN - 1,
                                     LOGS_SEGMENT_MAX, LOGS_SEGMENT_MAX + 1 };
    uint8_t live[NG];
    for (int i = 0; i < NG; i++)
        live[i] = run->gid[i] != 0;
    unsigned gi = rng_chance(r, 500) ? 0 : a_num(r, live, NG);
    char g[16];
    snprintf(g, sizeof(g), "l%u", gi);
    unsigned k = (unsigned)rng_below(r, 100);
    if (live[gi] && run->gseg[gi] == LOGS_SEGMENT_DEFAULT && rng_chance(r, 250)) {
        logs_cmd_set(b, 0, g, LGSET_SEGMENT_BYTES, PICK64(r, segs));  /* so that it seals */
    } else if (live[gi] && run->gseg[gi] < 20000 && rng_chance(r, 80)) {  /* and drops */
        logs_cmd_set(b, 0, g, rng_chance(r, 500) ? LGSET_RETENTION_BYTES : LGSET_RETENTION_S,
                     rng_range(r, 1, 9000));
    } else if (k < 8 || (!live[gi] && rng_chance(r, 500))) {
        if (rng_chance(r, 30)) {                          /* excl 2: EINVAL */
            cmd_begin(b, LGOP_CREATE, NS_LOGS, 0);
            cmd_str(b, g);
            cmd_u8(b, 2);
        } else {
            logs_cmd_create(b, 0, rng_chance(r, 40) ? LOGS_FOLLOW : rng_chance(r, 30) ?
                            PICK(r, bad_leaf) : g, (int)rng_below(r, 2));
        }
    } else if (k < 62) {
        uint64_t id = 0, at = LOGS_AT_END;
        unsigned c = (unsigned)rng_below(r, 100);
        if (c < 12)
            id = run->gid[gi];
        else if (c < 18)
            id = run->gid[gi] + rng_range(r, 1, 3);       /* another log: ESTALE */
        c = (unsigned)rng_below(r, 100);
        if (c < 12)
            at = run->gend[gi];                           /* the end, if nobody appended */
        else if (c < 16)
            at = run->gend[gi] ? run->gend[gi] - 1 : 1;   /* not the end: EPERM */
        size_t len = rng_chance(r, 400) ? rng_range(r, 1, 100) : rng_range(r, 500, 4000);
        if (rng_chance(r, 30))
            len = 0;                                      /* EINVAL */
        if (rng_chance(r, 3))
            len = LOGS_RECORD_MAX + rng_below(r, 2);      /* the largest, and one too many */
        char *rec = malloc(len ? len : 1);
        if (!rec) {
            b->oom = 1;
            return;
        }
        /* Larger records repeat a short random line: segments still fill and seal, while
         * every state comparison compresses them cheaply. */
        size_t unit = len > 100 ? 16 : len;
        rand_text(r, rec, unit);
        for (size_t i = unit; i < len; i++)
            rec[i] = rec[i % unit];
        logs_cmd_append(b, 0, g, id, at, rec, len);
        free(rec);
    } else if (k < 67) {
        logs_cmd_unlink(b, 0, g);
    } else if (k < 85) {
        uint8_t which = (uint8_t)(rng_chance(r, 20) ? rng_below(r, 2) * 4 : rng_range(r, 1, 3));
        uint64_t v = which == LGSET_RETENTION_BYTES ? PICK64(r, ret_bytes) :
                     which == LGSET_RETENTION_S ? PICK64(r, ret_s) :
                     which == LGSET_SEGMENT_BYTES ? PICK64(r, segs) : 1;
        logs_cmd_set(b, 0, g, which, v);
    } else if (k < 97) {
        logs_cmd_trim(b, 0, g);
    } else {
        cmd_begin(b, rng_chance(r, 500) ? LGOP_APPEND : LGOP_SET, NS_LOGS, 0);  /* short */
        cmd_str(b, g);
        cmd_u64(b, 0);
    }
}

/* Malformed and edge commands: apply must refuse (or take) them identically everywhere. */
static void gen_edge(fsrun_t *run, rng_t *r, cmdbuf_t *b)
{
    static const char *const bad_names[] = { ".hidden", "a//b", "a/", "/a", "x@1", "\xff\xfe",
                                              "a/.b" };
    unsigned k = (unsigned)rng_below(r, 9);
    if (k <= 1) {
        /* A valid command, cut short or with one byte changed (header kept). */
        uint8_t ns = (uint8_t)(rng_below(r, 7));
        if (ns == 0)
            gen_tree(run, r, b, NS_CACHE);
        else if (ns == 1)
            gen_tree(run, r, b, NS_CONFIG);
        else if (ns == 2)
            gen_queues(run, r, b);
        else if (ns == 3)
            gen_locks(run, r, b);
        else if (ns == 4)
            gen_search(run, r, b);
        else if (ns == 5)
            gen_jobs(run, r, b);
        else
            gen_logs(run, r, b);
        if (b->oom || b->len <= 11)
            return;
        if (k == 0)
            b->len = (size_t)rng_range(r, 0, b->len - 1);
        else
            b->p[rng_range(r, 11, b->len - 1)] ^= (uint8_t)rng_range(r, 1, 255);
    } else if (k == 2) {
        gen_tree(run, r, b, NS_CACHE);
        if (!b->oom)
            b->p[0] = (uint8_t)(rng_chance(r, 500) ? 0 : CMD_VERSION + 1);  /* version */
    } else if (k == 3) {
        static const uint8_t ops[] = { 0, 13, 50, 99, 103, 255 };
        static const uint8_t nss[] = { NS_CACHE, NS_CONFIG, NS_QUEUES, NS_LOCKS };
        cmd_begin(b, ops[rng_below(r, 6)], nss[rng_below(r, 4)], 0);
        cmd_str(b, "k0");
    } else if (k == 4) {
        static const uint8_t nss[] = { NS_NONE, NS_JOBS, NS_LOGS, NS_SEARCH, NS_SERVICES,
                                       NS__COUNT, 200 };
        cmd_begin(b, CMD_MKDIR, nss[rng_below(r, 7)], 0);
        cmd_str(b, "a");
    } else if (k == 5) {
        static const uint8_t nss[] = { NS_CACHE, NS_CONFIG, NS_QUEUES, NS_LOCKS };
        uint8_t ns = nss[rng_below(r, 4)];
        cmd_begin(b, ns == NS_QUEUES ? QOP_MKDIR : ns == NS_LOCKS ? LOP_CREATE : CMD_MKDIR, ns,
                  0);
        if (rng_chance(r, 200)) {
            char longname[300];
            memset(longname, 'n', sizeof(longname) - 1);
            longname[rng_chance(r, 500) ? 255 : 256] = 0;  /* 255 is the limit */
            cmd_str(b, longname);
        } else
            cmd_str(b, PICK(r, bad_names));
        if (ns == NS_CACHE || ns == NS_CONFIG)
            an_owner(r, b);
        if (ns == NS_LOCKS) {
            cmd_u8(b, 0);
            cmd_u64(b, 1);
            cmd_u32(b, 1);
        }
    } else if (k == 6 && rng_chance(r, 500)) {
        cmd_begin(b, CMD_PUT, NS_CACHE, 0);               /* a path with a NUL inside */
        cmd_bytes(b, "k0\0k1", 5);
        cmd_u8(b, CMD_PUT_CREATE);
        cmd_bytes(b, "v", 1);
    } else if (k == 6) {
        cmd_begin(b, SOP_OPEN, NS_LOCKS, 0);              /* a node name with a NUL in it */
        cmd_bytes(b, rng_chance(r, 500) ? "\0n1" : "n\0x", 3);
        cmd_u32(b, 1);
        cmd_u64(b, 5000);
    } else if (k == 7) {
        cmd_begin(b, CMD_PUT, rng_chance(r, 500) ? NS_CACHE : NS_CONFIG, 0);
        cmd_str(b, "k1");
        cmd_u8(b, CMD_PUT_CREATE);
        cmd_u32(b, 1000);                                 /* claims more than follows */
        cmd_raw(b, "abc", 3);
    } else {
        cmd_begin(b, CMD_EXPIRE, NS_CACHE, 0);            /* a huge count, short body */
        cmd_u32(b, 0xffffffffu);
        cmd_str(b, "k0");
        cmd_u64(b, 1);
    }
}

static int fs_next_cmd(void *runp, rng_t *r, uint8_t **cmd, size_t *len)
{
    fsrun_t *run = runp;
    cmdbuf_t b;
    memset(&b, 0, sizeof(b));
    unsigned k = (unsigned)rng_below(r, 1000);
    if (k < 232)
        gen_tree(run, r, &b, NS_CACHE);
    else if (k < 386)
        gen_tree(run, r, &b, NS_CONFIG);
    else if (k < 608)
        gen_queues(run, r, &b);
    else if (k < 770)
        gen_locks(run, r, &b);
    else if (k < 821)
        gen_services(run, r, &b);
    else if (k < 861)
        gen_search(run, r, &b);
    else if (k < 926)
        gen_jobs(run, r, &b);
    else if (k < 966)
        gen_logs(run, r, &b);
    else {
        gen_edge(run, r, &b);
        run->edge++;
    }
    if (b.oom) {
        free(b.p);
        return -1;
    }
    if (!b.p && !(b.p = malloc(1)))
        return -1;
    *cmd = b.p;
    *len = b.len;
    return 0;
}

static void fs_stamp(uint8_t *cmd, size_t len, uint64_t now_ms)
{
    if (len >= 11)
        le_put64(cmd + 3, now_ms);
}

/* ---------------------------------------------------------------------------------------- */
/* The leader's sweeper: what fs/node.c and the modules' sweep hooks propose, built from the
 * leader's own state where the state's API shows it (cache expiry, sessions), and from
 * what the run learned otherwise (claims and create locks: apply judges them due or not). */

static void emit_buf(cmdbuf_t *b, smi_emit_fn emit, void *ctx)
{
    if (!b->oom && b->len)
        emit(ctx, b->p, b->len);
    free(b->p);
}

/* What the leader's sweep reads of jobs/ and logs/ under its lock: due ticks (the
 * scheduler's TICKS), pending runs (a runner's STARTS) and logs whose retention is due. */
typedef struct sweepx {
    const state_t *st;
    uint64_t now;
    uint32_t nt, np, ng;
    char tick_job[NJ + 1][16], pend_job[8][16], trim_log[NG + 1][16];
    uint64_t tick[NJ + 1], pend[8];
} sweepx_t;

static int sweep_run(void *arg, const run_view_t *v)
{
    sweepx_t *x = arg;
    if (v->state == JR_PENDING && x->np < 8) {
        snprintf(x->pend_job[x->np], sizeof(x->pend_job[0]), "%s", x->tick_job[NJ]);
        x->pend[x->np++] = v->n;
    }
    return x->np == 8;
}

static int sweep_job(void *arg, const job_view_t *v)
{
    sweepx_t *x = arg;
    uint64_t t = jobs_due_tick(v, x->now);
    if (t && x->nt < NJ) {
        snprintf(x->tick_job[x->nt], sizeof(x->tick_job[0]), "%s", v->name);
        x->tick[x->nt++] = t;
    }
    if (v->active && x->np < 8) {
        snprintf(x->tick_job[NJ], sizeof(x->tick_job[0]), "%s", v->name);
        jobs_sm_each_run(x->st, v->id, sweep_run, x);
    }
    return 0;
}

static int sweep_log(void *arg, const log_view_t *v)
{
    sweepx_t *x = arg;
    if (x->ng < NG && logs_sm_trim_due(x->st, v->id, x->now))
        snprintf(x->trim_log[x->ng++], sizeof(x->trim_log[0]), "%s", v->name);
    return 0;
}

static void fs_sweep(void *sm, void *runp, rng_t *r, uint64_t now, smi_emit_fn emit, void *ctx)
{
    fsm_t *f = sm;
    fsrun_t *run = runp;
    state_t *st = f->st;
    cmdbuf_t b, body;
    run->sweeps++;
    memset(&body, 0, sizeof(body));
    pthread_rwlock_wrlock(&st->lock);
    uint32_t cnt = cache_collect_expired(st, now, &body, 64);
    uint64_t ends[4];
    int nend = 0;
    for (session_t *s = st->sessions.head; s && nend < 4; s = s->next)
        if (s->expires_ms <= now)
            ends[nend++] = s->id;
    sweepx_t x = { .st = st, .now = now };
    jobs_sm_each(st, sweep_job, &x);
    logs_sm_each(st, sweep_log, &x);
    pthread_rwlock_unlock(&st->lock);
    if (cnt && !body.oom) {
        cmd_begin(&b, CMD_EXPIRE, NS_CACHE, now);
        cmd_u32(&b, cnt);
        cmd_raw(&b, body.p, body.len);
        emit_buf(&b, emit, ctx);
    }
    free(body.p);
    for (int i = 0; i < nend; i++) {
        cmd_begin(&b, SOP_END, NS_LOCKS, now);
        cmd_u64(&b, ends[i]);
        cmd_u8(&b, 1);
        emit_buf(&b, emit, ctx);
    }
    if (rng_chance(r, 400)) {                             /* queue leases */
        unsigned q = (unsigned)rng_below(r, NQ);
        uint64_t ids[8];
        uint32_t n = 0;
        for (int i = 0; i < RING && n < 8; i++)
            if (run->claims.v[i].a && run->claims.v[i].k == q)
                ids[n++] = run->claims.v[i].a;
        if (n) {
            char name[8];
            snprintf(name, sizeof(name), "q%u", q);
            cmd_begin(&b, QOP_EXPIRE, NS_QUEUES, now);
            cmd_str(&b, name);
            cmd_u32(&b, n);
            for (uint32_t i = 0; i < n; i++)
                cmd_u64(&b, ids[i]);
            emit_buf(&b, emit, ctx);
        }
    }
    /* The scheduler's ticks, a runner's starts (on a session it may no longer have) and
     * retention, now and then only: several leaders, or a late one, race for the same ones. */
    if (x.nt && rng_chance(r, 250)) {
        const char *names[NJ];
        for (uint32_t i = 0; i < x.nt; i++)
            names[i] = x.tick_job[i];
        jobs_cmd_batch(&b, now, JOP_TICKS, 0, x.nt, names, x.tick);
        emit_buf(&b, emit, ctx);
    }
    if (x.np && rng_chance(r, 250)) {
        const char *names[8];
        for (uint32_t i = 0; i < x.np; i++)
            names[i] = x.pend_job[i];
        jobs_cmd_batch(&b, now, JOP_STARTS, a_sid(run, r), x.np, names, x.pend);
        emit_buf(&b, emit, ctx);
    }
    for (uint32_t i = 0; i < x.ng; i++)
        if (rng_chance(r, 300)) {
            logs_cmd_trim(&b, now, x.trim_log[i]);
            emit_buf(&b, emit, ctx);
        }
    const fact_t *fe = rng_chance(r, 300) ? ring_pick(&run->fences, r) : NULL;
    if (fe) {                                             /* create-lock TTLs */
        char name[8];
        snprintf(name, sizeof(name), "l%u", fe->k);
        cmd_begin(&b, LOP_EXPIRE, NS_LOCKS, now);
        cmd_str(&b, name);
        cmd_u64(&b, fe->a);
        emit_buf(&b, emit, ctx);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Descriptions */

typedef struct opdesc {
    uint8_t ns, op;
    const char *name, *fields;   /* s str, b bytes, 1/4/8 integers, '.' stop */
} opdesc_t;

static const opdesc_t opdescs[] = {
    { 0, CMD_MKDIR, "MKDIR", "s" }, { 0, CMD_RMDIR, "RMDIR", "s" },
    { 0, CMD_PUT, "PUT", "s1" }, { 0, CMD_UNLINK, "UNLINK", "s" },
    { 0, CMD_RENAME, "RENAME", "ss1" }, { 0, CMD_SETXATTR, "SETXATTR", "sbb" },
    { 0, CMD_REMOVEXATTR, "REMOVEXATTR", "sb" }, { 0, CMD_EXPIRE, "EXPIRE", "4s8" },
    { 0, CMD_TOUCH, "TOUCH", "4s" }, { 0, CMD_SETMTIME, "SETMTIME", "s" },
    { 0, CMD_SETCAP, "SETCAP", "8" }, { 0, CMD_WRITE, "WRITE", "s1" },
    { 0, CMD_SETATTR, "SETATTR", "s81444" "88" }, { 0, CMD_SYMLINK, "SYMLINK", "sb44" },
    { NS_QUEUES, QOP_MKDIR, "MKDIR", "s" }, { NS_QUEUES, QOP_RMDIR, "RMDIR", "s1" },
    { NS_QUEUES, QOP_SET, "SET", "s18" }, { NS_QUEUES, QOP_PUSH, "PUSH", "s4b" },
    { NS_QUEUES, QOP_TAKE, "TAKE", "s881" }, { NS_QUEUES, QOP_CANCEL, "CANCEL", "s88" },
    { NS_QUEUES, QOP_UNPOP, "UNPOP", "s84b" }, { NS_QUEUES, QOP_ACK, "ACK", "s8" },
    { NS_QUEUES, QOP_EXTEND, "EXTEND", "s8" }, { NS_QUEUES, QOP_RETURN, "RETURN", "s8" },
    { NS_QUEUES, QOP_EXPIRE, "EXPIRE", "s48" }, { NS_QUEUES, QOP_DEADRM, "DEADRM", "s8" },
    { NS_LOCKS, LOP_CREATE, "CREATE", "s184" }, { NS_LOCKS, LOP_LOCK, "LOCK", "s8181184" },
    { NS_LOCKS, LOP_UNLOCK, "UNLOCK", "s818" }, { NS_LOCKS, LOP_CANCEL, "CANCEL", "s88" },
    { NS_LOCKS, LOP_UNLINK, "UNLINK", "s" }, { NS_LOCKS, LOP_SETTTL, "SETTTL", "s4" },
    { NS_LOCKS, LOP_TOUCH, "TOUCH", "s" }, { NS_LOCKS, LOP_EXPIRE, "EXPIRE", "s8" },
    { NS_LOCKS, LOP_DATA, "DATA", "sb" }, { NS_LOCKS, SOP_OPEN, "SESSION_OPEN", "b48" },
    { NS_LOCKS, SOP_RENEW, "SESSION_RENEW", "88" }, { NS_LOCKS, SOP_END, "SESSION_END", "81" },
    { NS_SERVICES, SVOP_MKDIR, "MKDIR", "s" }, { NS_SERVICES, SVOP_RMDIR, "RMDIR", "s" },
    { NS_SERVICES, SVOP_SET, "SET", "s18" }, { NS_SERVICES, SVOP_REG, "REG", "ss8b" },
    { NS_SERVICES, SVOP_TOUCH, "TOUCH", "ss" }, { NS_SERVICES, SVOP_UNREG, "UNREG", "ss" },
    { NS_SERVICES, SVOP_SETI, "SETI", "ss18" }, { NS_SERVICES, SVOP_PICK, "PICK", "s" },
    { NS_SERVICES, SVOP_HEALTH, "HEALTH", "ss81" }, { NS_SERVICES, SVOP_EXPIRE, "EXPIRE", "ss8" },
    { NS_SERVICES, SVOP_REG_IF, "REG_IF", "ss88b" },
    { NS_SEARCH, SROP_MKIDX, "MKIDX", "s1" }, { NS_SEARCH, SROP_RMIDX, "RMIDX", "s" },
    { NS_SEARCH, SROP_PUT, "PUT", "ss1b" }, { NS_SEARCH, SROP_DEL, "DEL", "ss" },
    { NS_SEARCH, SROP_RENAME, "RENAME", "sss1" },
    { NS_JOBS, JOP_MKDIR, "MKDIR", "s" }, { NS_JOBS, JOP_RMDIR, "RMDIR", "s" },
    { NS_JOBS, JOP_SET, "SET", "s1b" }, { NS_JOBS, JOP_TICK, "TICK", "s8" },
    { NS_JOBS, JOP_RUN, "RUN", "s" }, { NS_JOBS, JOP_START, "START", "s88" },
    { NS_JOBS, JOP_OUTPUT, "OUTPUT", "s8818b" }, { NS_JOBS, JOP_FINISH, "FINISH", "s8814" },
    { NS_JOBS, JOP_TICKS, "TICKS", "4s8" }, { NS_JOBS, JOP_STARTS, "STARTS", "84s8" },
    { NS_JOBS, JOP_FINISHES, "FINISHES", "84s814" },
    { NS_LOGS, LGOP_CREATE, "CREATE", "s1" }, { NS_LOGS, LGOP_APPEND, "APPEND", "s88b" },
    { NS_LOGS, LGOP_UNLINK, "UNLINK", "s" }, { NS_LOGS, LGOP_SET, "SET", "s18" },
    { NS_LOGS, LGOP_TRIM, "TRIM", "s" },
};

static void fs_describe(const uint8_t *cmd, size_t len, char *out, size_t outlen)
{
    cmdrd_t r;
    cmd_hdr_t h;
    if (cmd_read_hdr(&r, cmd, len, &h) < 0) {
        snprintf(out, outlen, "(not a command: %zu bytes, version %u)", len,
                 len ? cmd[0] : 0u);
        return;
    }
    const opdesc_t *d = NULL;
    uint8_t key = h.ns == NS_CACHE || h.ns == NS_CONFIG ? 0 : h.ns;
    for (size_t i = 0; i < sizeof(opdescs) / sizeof(opdescs[0]); i++)
        if (opdescs[i].ns == key && opdescs[i].op == h.op)
            d = &opdescs[i];
    size_t k = (size_t)snprintf(out, outlen, "%s/%s t=%llu", h.ns && h.ns < NS__COUNT ?
                                ns_names[h.ns] : "ns?", d ? d->name : "op?",
                                (unsigned long long)h.now_ms);
    if (!d) {
        snprintf(out + k, outlen > k ? outlen - k : 0, " (op %u, %zu bytes)", h.op, len);
        return;
    }
    for (const char *f = d->fields; *f && k < outlen; f++) {
        const uint8_t *p = NULL;
        size_t n = 0;
        uint64_t v = 0;
        if (*f == 's' || *f == 'b')
            n = cmd_get_bytes(&r, &p);
        else
            v = *f == '1' ? cmd_get_u8(&r) : *f == '4' ? cmd_get_u32(&r) : cmd_get_u64(&r);
        if (r.err) {
            k += (size_t)snprintf(out + k, outlen - k, " (malformed)");
            break;
        }
        if (*f == 's' || *f == 'b') {
            char s[40];
            size_t m = n < sizeof(s) - 1 ? n : sizeof(s) - 1;
            for (size_t i = 0; i < m; i++)
                s[i] = p[i] >= 32 && p[i] < 127 ? (char)p[i] : '?';
            s[m] = 0;
            if (*f == 's')
                k += (size_t)snprintf(out + k, outlen - k, " '%s'", s);
            else
                k += (size_t)snprintf(out + k, outlen - k, " [%zu]'%s'", n, s);
        } else
            k += (size_t)snprintf(out + k, outlen - k, " %llu", (unsigned long long)v);
    }
}

static void fs_run_stats(void *runp, char *out, size_t outlen)
{
    fsrun_t *run = runp;
    uint64_t tot = 0;
    for (int i = 0; i <= NS__COUNT; i++)
        tot += run->by_ns[i];
    size_t k = (size_t)snprintf(out, outlen, "%llu commands applied (", (unsigned long long)tot);
    for (int ns = 1; ns < NS__COUNT && k < outlen; ns++) {
        k += (size_t)snprintf(out + k, outlen - k, "%s %llu, ", ns_names[ns],
                              (unsigned long long)run->by_ns[ns]);
        tot -= run->by_ns[ns];
    }
    if (k < outlen)
        k += (size_t)snprintf(out + k, outlen - k, "other %llu), %llu ok;",
                              (unsigned long long)tot, (unsigned long long)run->ok);
    for (int e = 1; e < 136 && k < outlen; e++)
        if (run->by_errno[e])
            k += (size_t)snprintf(out + k, outlen - k, " %s %llu", e == 135 ? "other" :
                                  strerrorname_np(e) ? strerrorname_np(e) : "?",
                                  (unsigned long long)run->by_errno[e]);
    if (k < outlen)
        snprintf(out + k, outlen - k, "; %llu edge commands, %llu sweeps",
                 (unsigned long long)run->edge, (unsigned long long)run->sweeps);
}

const smi_ops_t smi_fs = {
    .name = "fs",
    .snap_hdr = HDR,
    .run_new = run_new,
    .run_free = run_free,
    .new = fsm_new,
    .free = fsm_free,
    .apply = fsm_apply,
    .applied = fsm_applied,
    .hash = fsm_hash,
    .snapshot = fsm_snapshot,
    .restore = fsm_restore,
    .state_bytes = fsm_state_bytes,
    .diff = fsm_diff,
    .next_cmd = fs_next_cmd,
    .stamp = fs_stamp,
    .sweep = fs_sweep,
    .describe = fs_describe,
    .run_stats = fs_run_stats,
};
