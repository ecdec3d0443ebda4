/* fs/node.c — the node: group + shard + session + namespace fronts + sweeper thread; see
 * node.h. The sweeper runs every SWEEP_MS: it renews the session and runs the fronts'
 * sweeps (cache/ proposes EXPIRE and TOUCH batches there). All of it is decided here (the
 * leader side) and committed, so apply never reads a clock. The state's delivery hook
 * (node_deliver) hands apply's effects to the fronts once the state lock is released.
 *
 * Lifetime: open creates state, group (restore + replay: effects of replayed entries find
 * no front and are dropped), session, fronts, then the sweeper; close ends the session,
 * joins the sweeper, closes the group (no apply, hence no delivery, after that), then stops
 * the fronts. front[] is written before any FUSE request and read by the applying thread,
 * hence the atomic accesses.
 *
 * Space: node_propose classifies each command by opcode; freeing ones are logged even on a
 * full disk (giving up the reserve file if the WAL says ENOSPC), the others are admitted
 * only while the disk keeps room for the next snapshot (node.h, "space").
 *
 * Cluster node (opts.id != 0): the shard's group is a Raft group (group_open_raft) over TCP
 * with the listed peers, every node a replica; apply runs on every replica, so the delivery
 * hook wakes this node's parked requests whichever node proposed. The sweeper runs on every
 * node (session renewal, cache read touches and disk space are this node's own); the fronts'
 * sweeps and the session module decide with node_is_leader what only the leader proposes. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "cluster/err.h"
#include "cluster/layout.h"
#include "cluster/meta_sm.h"
#include "cluster/mover.h"
#include "cluster/mraft.h"
#include "fs/admin.h"
#include "fs/locks_sm.h"
#include "fs/logs_sm.h"
#include "fs/jobs_sm.h"
#include "fs/services_sm.h"
#include "fs/metrics.h"
#include "fs/node.h"
#include "fs/ns.h"
#include "fs/queues_sm.h"
#include "cluster/placement.h"
#include "fs/route.h"
#include "fs/session.h"
#include "fs/session_sm.h"
#include "fs/status.h"
#include "fs/tree_sm.h"

#define PID_SLICE_BITS 48              /* cluster node i: [FIRST + (i-1) << 48, + 2^48) */
#define PID_EPOCH_MS 1704067200000ull  /* 2024-01-01: a slice's start grows with the clock */
#define PID_PER_MS_BITS 8              /* ... by 256 ids per ms (2^40 ms: 34 years) */
_Static_assert(STATE_PID_FIRST + ((uint64_t)NODE_ID_MAX << PID_SLICE_BITS) <= STATE_PID_END,
               "every cluster node's id slice fits the proposer-picked range");

#define SWEEP_MS 100

/* Space on the data disk (node.h, docs/OPERATIONS.md "Disk full"). */
#define SPACE_PROBE_MS 100             /* look at the disk at most this often */
#define SPACE_REC_OVERHEAD 64          /* WAL record header and slack per command */
#define SPACE_SLACK (64u << 10)        /* held back on top of the snapshot's room */
#define RESERVE_MIN (256u << 10)
#define RESERVE_MAX (16u << 20)
#define RESERVE_NAME "reserve"
#define RESERVE_TMP "reserve.tmp"

typedef struct space {
    pthread_mutex_t mu;          /* guards every field */
    uint64_t probed_ms;          /* monotonic ms of the last look at the disk; 0 = stale */
    int known;                   /* the last statvfs worked */
    uint64_t disk, avail;        /* size of the data disk, bytes free for us */
    uint64_t data;               /* bytes of the node's files (WAL, snapshots), reserve excluded */
    uint64_t logged;             /* bytes logged since the look */
    uint64_t inflight;           /* bytes of admitted commands still being logged */
    uint64_t reserve;            /* size of the reserve file; 0 when given up */
    uint64_t reserve_want;       /* its size when in place */
    uint64_t gone_ms;            /* wall ms the reserve was given up */
    uint64_t on_reserve;         /* freeing commands logged since */
} space_t;

/* One shard the node serves: its state and the group that feeds it. */
typedef struct shard {
    node_t *node;
    uint32_t index;
    state_t *st;
    group_t *group;
    uint64_t barrier_failed_ms;  /* atomic: monotonic ms of the last barrier timeout, 0 */
} shard_t;

/* The meta group (docs/MEMBERSHIP.md, docs/META.md): a Raft group of its own, hosted by
 * every node beside the shards, whose state is the member record; its id lies outside the
 * shard ids (at most NODE_SHARDS_MAX). */
#define META_GROUP 0xFFFF0000u

static void meta_changed(void *arg, const meta_sm_t *sm);
static void admin_request(void *arg, uint64_t token, const frame_admin_t *req);

struct node {
    shard_t *shards;
    uint32_t nshards;
    uint32_t nreplicas;          /* voters per shard */
    uint64_t status_ms;          /* sweeper: monotonic ms the status text was last published */
    group_node_t *gnode;         /* a cluster node's Raft node hosting every shard's group */
    char *data_dir;
    node_opts_t opts;            /* as opened; opts.data_dir is data_dir */
    metrics_t metrics;           /* of the node's mount (atomic counters) */
    pthread_t sweeper;
    pthread_mutex_t mu;          /* guards stop */
    pthread_cond_t cv;
    int stop;
    int sweeping;                /* the sweeper thread was started */
    int quiesced;                /* node_quiesce ran */
    uint64_t last_nospace_ms;    /* atomic */
    uint64_t start_ms;
    space_t space;
    session_local_t *sess;
    void *front[NS__COUNT];      /* atomic: fronts' contexts (fs/ns.h) */
    /* cluster node only (opts.id != 0) */
    int cluster;
    uint64_t cluster_id;         /* the cluster's id (<data>/cluster-id) */
    uint64_t incarnation;        /* the data directory's (<data>/incarnation) */
    meta_sm_t *meta;             /* the member record, applied by the meta group */
    group_t *meta_group;
    group_t **groups;            /* [nshards]: the shards' groups, for the mover */
    mover_t *mover;              /* the record's members, layout and moves (cluster/mover.h) */
    int layout_stop;             /* atomic: a layout mismatch asked the mount to stop */
    int joining;                 /* a member added with cluster add (its groups were joined) */
    pthread_t opener;            /* the thread that opened the node, which then serves the
                                    mount (woken by a signal to stop it) */
    int serving, stop_asked;     /* atomic: node_serve_begin ran; the node must stop */
    int admins;                  /* administration requests being run (under mu) */
};

uint64_t node_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int node_errno(int qerr)
{
    switch (-qerr) {
    case QERR_OK: return 0;
    case QERR_NOMEM: return -ENOMEM;
    case QERR_NOSPACE: return -ENOSPC;
    case QERR_TOOBIG: return -EFBIG;
    case QERR_INVAL: return -EINVAL;
    case QERR_NOTFOUND: return -ENOENT;
    case QERR_EXISTS: return -EEXIST;
    case QERR_TIMEOUT: return -EIO;   /* no quorum or no leader in time: outcome unknown */
    default: return -EIO;   /* disk failure, closing */
    }
}

/* ---- space ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* What a command's class lets it do on a full disk. */
enum cmd_class {
    CC_NORMAL,     /* refused with ENOSPC while the disk is short of the held-back room */
    CC_KEEP,       /* logged while the disk has room at all, but never on the reserve */
    CC_FREEING,    /* logged even then, on the reserve if it must: rm, rmdir, unlock... */
};

/* The class of the encoded command cmd (by namespace and opcode; a command that does not
 * parse is CC_NORMAL, and apply refuses it anyway). Freeing: removals (tree UNLINK, RMDIR,
 * cache EXPIRE; queue RMDIR, ACK, DEADRM; lock UNLINK; jobs RMDIR and run ends without output
 * (jobs_cmd_frees)), and what gives back or ends what a
 * reader or a session held, so that nothing stays stuck while the disk is full (queue
 * TAKE, CANCEL, UNPOP, RETURN, EXPIRE; lock UNLOCK, CANCEL, EXPIRE; session OPEN, RENEW,
 * END: a few dozen bytes each). Keep: what only keeps what a reader holds and never grows
 * the state, so the next snapshot stays as small as the room held back for it (cache reads'
 * TOUCH, which slides TTLs; a claim's EXTEND; a create lock's TOUCH). */
static int cmd_class(const void *cmd, size_t len)
{
    cmdrd_t r;
    cmd_hdr_t h;
    if (cmd_read_hdr(&r, cmd, len, &h) < 0)
        return CC_NORMAL;
    if (session_sm_owns(&h))
        return CC_FREEING;
    switch (h.ns) {
    case NS_QUEUES:
        switch (h.op) {
        case QOP_RMDIR: case QOP_TAKE: case QOP_CANCEL: case QOP_UNPOP: case QOP_ACK:
        case QOP_RETURN: case QOP_EXPIRE: case QOP_DEADRM:
            return CC_FREEING;
        case QOP_EXTEND:
            return CC_KEEP;
        }
        return CC_NORMAL;
    case NS_LOCKS:
        switch (h.op) {
        case LOP_UNLOCK: case LOP_CANCEL: case LOP_UNLINK: case LOP_EXPIRE:
            return CC_FREEING;
        case LOP_TOUCH:
            return CC_KEEP;
        }
        return CC_NORMAL;
    case NS_SERVICES:
        switch (h.op) {
        case SVOP_RMDIR: case SVOP_UNREG: case SVOP_EXPIRE:
            return CC_FREEING;
        case SVOP_TOUCH: case SVOP_PICK: case SVOP_HEALTH:   /* HEALTH: a bounded event ring */
            return CC_KEEP;
        }
        return CC_NORMAL;
    case NS_JOBS:
        /* removing a job drops its runs and their output; a run's end without output
         * gives back the run's slot (jobs_cmd_frees, docs/JOBS.md "Ending") */
        return jobs_cmd_frees(cmd, len) ? CC_FREEING : CC_NORMAL;
    case NS_LOGS:
        if (h.op == LGOP_SET) {
            /* a retention setting (other than 0, "off") can only drop segments, never add
             * bytes: lowering it on a full disk is how a log gives its space back */
            const char *name;
            cmd_get_path(&r, &name);
            uint8_t which = cmd_get_u8(&r);
            uint64_t v = cmd_get_u64(&r);
            if (!r.err && v && (which == LGSET_RETENTION_BYTES || which == LGSET_RETENTION_S))
                return CC_FREEING;
        }
        return h.op == LGOP_UNLINK || h.op == LGOP_TRIM ? CC_FREEING : CC_NORMAL;
    default:
        if (h.ns <= NS_NONE || h.ns >= NS__COUNT || !tree_hooks(h.ns))
            return CC_NORMAL;
        if (h.op == CMD_UNLINK || h.op == CMD_RMDIR || h.op == CMD_EXPIRE)
            return CC_FREEING;
        return h.op == CMD_TOUCH ? CC_KEEP : CC_NORMAL;
    }
}

/* Bytes the regular files of dir take on disk (and of its subdirectories, depth levels
 * down), leaving out the reserve; those of temp files (a snapshot being written: "*.tmp")
 * are added to *tmp instead. */
static uint64_t dir_bytes(int dfd, int depth, uint64_t *tmp)
{
    uint64_t sum = 0;
    int fd = dup(dfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    while ((e = readdir(d))) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            !strcmp(e->d_name, RESERVE_NAME) || !strcmp(e->d_name, RESERVE_TMP))
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISREG(st.st_mode)) {
            size_t l = strlen(e->d_name);
            if (l > 4 && !strcmp(e->d_name + l - 4, ".tmp"))
                *tmp += (uint64_t)st.st_blocks * 512;
            else
                sum += (uint64_t)st.st_blocks * 512;
        } else if (S_ISDIR(st.st_mode) && depth > 0) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (sub >= 0) {
                sum += dir_bytes(sub, depth - 1, tmp);
                close(sub);
            }
        }
    }
    closedir(d);
    return sum;
}

/* Looks at the disk if the last look is older than SPACE_PROBE_MS. sp->mu held. */
static void space_probe(node_t *n)
{
    space_t *sp = &n->space;
    uint64_t now = mono_ms();
    if (sp->probed_ms && now - sp->probed_ms < SPACE_PROBE_MS)
        return;
    struct statvfs sv;
    sp->probed_ms = now ? now : 1;
    sp->logged = 0;
    sp->known = statvfs(n->data_dir, &sv) == 0;
    if (!sp->known) {
        sp->disk = sp->avail = sp->data = 0;
        return;
    }
    /* A snapshot being written fills the room held back for it: count its temp file as
     * free still, so that writes are not refused (nor admitted into that room) meanwhile. */
    uint64_t tmp = 0;
    int dfd = open(n->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    sp->data = dfd >= 0 ? dir_bytes(dfd, 1, &tmp) : 0;
    /* logs/ segment files (<data>/logs/<shard>/<log>/, docs/LOGS.md) count like the WAL:
     * every retained byte of them goes into the next snapshot */
    int lfd = dfd >= 0 ? openat(dfd, "logs", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (lfd >= 0) {
        sp->data += dir_bytes(lfd, 2, &tmp);
        close(lfd);
    }
    if (dfd >= 0)
        close(dfd);
    sp->disk = (uint64_t)sv.f_blocks * sv.f_frsize;
    sp->avail = (uint64_t)sv.f_bavail * sv.f_frsize + tmp;
}

/* Free space held back for a snapshot of a state whose files take data bytes: the new
 * snapshot is at most the old one plus the WAL since (lz4 adds < 1%), and it is written
 * before they are deleted. */
static uint64_t space_held(uint64_t data)
{
    return data + data / 32 + SPACE_SLACK;
}

/* Whether w more bytes may be logged by a CC_NORMAL command. sp->mu held, probed. */
static int space_admits(const space_t *sp, uint64_t w)
{
    if (!sp->known)
        return 1;              /* cannot tell: the WAL's own ENOSPC decides */
    if (!sp->reserve)
        return 0;
    uint64_t used = sp->logged + sp->inflight + w;
    if (sp->avail < used)
        return 0;
    return sp->avail - used >= space_held(sp->data + used);
}

/* Bytes CC_NORMAL commands may still add: the largest x with
 * avail - x >= held(data + x), i.e. x <= (32 avail - 33 data - 32 slack) / 65. */
static uint64_t space_avail(const space_t *sp)
{
    if (!sp->known || !sp->reserve)
        return 0;
    uint64_t used = sp->logged + sp->inflight;
    if (sp->avail < used)
        return 0;
    unsigned __int128 f = (unsigned __int128)(sp->avail - used) * 32,
                      need = (unsigned __int128)(sp->data + used) * 33 +
                             (unsigned __int128)SPACE_SLACK * 32;
    return f > need ? (uint64_t)((f - need) / 65) : 0;
}

int node_space_check(node_t *n, size_t bytes)
{
    space_t *sp = &n->space;
    pthread_mutex_lock(&sp->mu);
    space_probe(n);
    int ok = space_admits(sp, (uint64_t)bytes + SPACE_REC_OVERHEAD);
    pthread_mutex_unlock(&sp->mu);
    return ok ? 0 : -ENOSPC;
}

void node_space(node_t *n, node_space_t *out)
{
    space_t *sp = &n->space;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&sp->mu);
    space_probe(n);
    out->known = sp->known;
    out->reserve_in_place = sp->reserve != 0;
    out->reserve_bytes = sp->reserve ? sp->reserve : sp->reserve_want;
    out->reserve_gone_ms = sp->gone_ms;
    out->frees_on_reserve = sp->on_reserve;
    out->full = !space_admits(sp, (uint64_t)TREE_VALUE_MAX + SPACE_REC_OVERHEAD);
    if (sp->known) {
        uint64_t used = sp->logged + sp->inflight;
        out->disk_bytes = sp->disk;
        out->free_bytes = sp->avail > used ? sp->avail - used : 0;
        out->data_bytes = sp->data + used;
        out->held_bytes = space_held(out->data_bytes);
        out->avail_bytes = space_avail(sp);
    }
    pthread_mutex_unlock(&sp->mu);
}

/* Gives the reserve up so that a freeing command can be logged. Returns 1 if it was in
 * place (then the caller retries), 0 if it was gone already. */
static int reserve_give_up(node_t *n)
{
    space_t *sp = &n->space;
    int was;
    pthread_mutex_lock(&sp->mu);
    was = sp->reserve != 0;
    if (was) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/" RESERVE_NAME, n->data_dir);
        if (unlink(path) < 0 && errno != ENOENT)
            fprintf(stderr, "quorumfs: cannot delete the reserve %s: %s\n", path,
                    strerror(errno));
        sp->reserve = 0;
        sp->gone_ms = node_now_ms();
        sp->on_reserve = 0;
        sp->probed_ms = 0;
        fprintf(stderr, "quorumfs: data disk full: gave up the %llu-byte reserve so that "
                "deletes can be logged; writes get ENOSPC until space is freed\n",
                (unsigned long long)sp->reserve_want);
    }
    pthread_mutex_unlock(&sp->mu);
    return was;
}

/* Fills path (of len bytes, never 0 on disk: a compressing file system must allocate it)
 * and makes it durable. Returns 0 or -errno (the file is then removed). */
static int fill_file(const char *path, uint64_t len)
{
    enum { CHUNK = 64 << 10 };
    uint8_t *chunk = malloc(CHUNK);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    if (!chunk)
        return -ENOMEM;
    for (size_t i = 0; i < CHUNK; i += 8) {   /* xorshift: not compressible */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(chunk + i, &x, 8);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc = 0;
    if (fd < 0) {
        free(chunk);
        return -errno;
    }
    for (uint64_t off = 0; off < len && rc == 0;) {
        size_t k = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
        ssize_t w = pwrite(fd, chunk, k, (off_t)off);
        if (w < 0 && errno != EINTR)
            rc = -errno;
        else if (w > 0)
            off += (uint64_t)w;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    free(chunk);
    if (rc)
        unlink(path);
    return rc;
}

/* Puts the reserve in place if it is not, and the disk has room for it on top of what is
 * held back for a snapshot and one reserve's worth for writes (so it does not come and go).
 * Called at open and by the sweeper; only one thread at a time (the sweeper starts after
 * open's call). The writing happens without sp->mu. */
static void reserve_establish(node_t *n, int at_open)
{
    space_t *sp = &n->space;
    char path[4200], tmp[4200];
    pthread_mutex_lock(&sp->mu);
    space_probe(n);
    uint64_t want = sp->reserve_want;
    int go = !sp->reserve && sp->known && want &&
             sp->avail >= sp->logged + sp->inflight + want + want +
                          space_held(sp->data + sp->logged + sp->inflight);
    pthread_mutex_unlock(&sp->mu);
    if (!go)
        return;
    snprintf(path, sizeof(path), "%s/" RESERVE_NAME, n->data_dir);
    snprintf(tmp, sizeof(tmp), "%s/" RESERVE_TMP, n->data_dir);
    int rc = fill_file(tmp, want);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc == 0) {
        int dfd = open(n->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    } else {
        unlink(tmp);
    }
    pthread_mutex_lock(&sp->mu);
    sp->probed_ms = 0;
    if (rc == 0) {
        sp->reserve = want;
        if (!at_open)
            fprintf(stderr, "quorumfs: space is back on the data disk: the %llu-byte reserve "
                    "is in place again (%llu deletes ran on it)\n", (unsigned long long)want,
                    (unsigned long long)sp->on_reserve);
        sp->gone_ms = 0;
        sp->on_reserve = 0;
    }
    pthread_mutex_unlock(&sp->mu);
    if (rc && !at_open)
        fprintf(stderr, "quorumfs: cannot re-create the reserve %s: %s\n", path,
                strerror(-rc));
}

/* At open: the reserve's size from the disk's, a leftover temp file removed, and the
 * reserve taken as in place if its file is there (a restart on a full disk keeps it), else
 * created when there is room. */
static void space_open(node_t *n)
{
    space_t *sp = &n->space;
    char path[4200];
    struct statvfs sv;
    struct stat st;
    uint64_t want = RESERVE_MIN;
    if (statvfs(n->data_dir, &sv) == 0) {
        want = (uint64_t)sv.f_blocks * sv.f_frsize / 32;
        want = want < RESERVE_MIN ? RESERVE_MIN : want > RESERVE_MAX ? RESERVE_MAX : want;
        want &= ~(uint64_t)4095;
    }
    sp->reserve_want = want;
    snprintf(path, sizeof(path), "%s/" RESERVE_TMP, n->data_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/" RESERVE_NAME, n->data_dir);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        sp->reserve = (uint64_t)st.st_size;
        return;
    }
    sp->gone_ms = node_now_ms();
    reserve_establish(n, 1);
    if (!sp->reserve)
        fprintf(stderr, "quorumfs: no room for the %llu-byte reserve on the data disk: "
                "writes get ENOSPC until space is freed\n", (unsigned long long)want);
}

/* The sweeper's part: a fresh look at the disk, and the reserve back once there is room. */
static void space_sweep(node_t *n)
{
    int gone;
    pthread_mutex_lock(&n->space.mu);
    space_probe(n);
    gone = !n->space.reserve;
    pthread_mutex_unlock(&n->space.mu);
    if (gone)
        reserve_establish(n, 0);
}

int node_propose(node_t *n, uint32_t shard, cmdbuf_t *b, sm_result_t *res)
{
    space_t *sp = &n->space;
    sm_result_t local;
    int rc, cls;
    uint64_t w;
    if (b->oom) {
        free(b->p);
        return -ENOMEM;
    }
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    cls = cmd_class(b->p, b->len);
    w = (uint64_t)b->len + SPACE_REC_OVERHEAD;
    pthread_mutex_lock(&sp->mu);
    if (cls != CC_FREEING) {
        space_probe(n);
        if (cls == CC_NORMAL ? !space_admits(sp, w) : !sp->reserve) {
            pthread_mutex_unlock(&sp->mu);
            free(b->p);
            b->p = NULL;
            __atomic_store_n(&n->last_nospace_ms, node_now_ms(), __ATOMIC_RELAXED);
            return -ENOSPC;
        }
    }
    sp->inflight += w;
    pthread_mutex_unlock(&sp->mu);
    for (int tries = 0;; tries++) {
        rc = shard < n->nshards ? group_propose(n->shards[shard].group, b->p, b->len, res)
                                : -QERR_INVAL;
        if (rc != -QERR_NOSPACE || cls != CC_FREEING || tries == 1)
            break;
        reserve_give_up(n);   /* retry once, on the reserve (given up by us or another) */
    }
    free(b->p);
    b->p = NULL;
    pthread_mutex_lock(&sp->mu);
    sp->inflight -= w;
    if (rc == 0) {
        sp->logged += w;
        if (!sp->reserve && cls == CC_FREEING)
            sp->on_reserve++;
    } else if (rc == -QERR_NOSPACE) {
        sp->probed_ms = 0;    /* the disk is fuller than the last look said */
    }
    pthread_mutex_unlock(&sp->mu);
    if (rc == -QERR_NOSPACE)
        __atomic_store_n(&n->last_nospace_ms, node_now_ms(), __ATOMIC_RELAXED);
    if (rc < 0)
        return node_errno(rc);
    return res->code;
}

uint64_t node_last_nospace_ms(node_t *n)
{
    return __atomic_load_n(&n->last_nospace_ms, __ATOMIC_RELAXED);
}

#define STATUS_PUBLISH_MS 1000

/* A cluster node's answer to status queries (`quorumfs cluster status --cluster`): its view
 * of members, shards and health, published every STATUS_PUBLISH_MS from the sweeper. */
static void publish_status(node_t *n)
{
    if (!n->gnode || mono_ms() - n->status_ms < STATUS_PUBLISH_MS)
        return;
    n->status_ms = mono_ms();
    char *text;
    size_t len;
    if (status_render_summary(n, &text, &len) == 0) {
        (void)group_node_set_status(n->gnode, text, len);
        free(text);
    }
}

static void *sweeper_main(void *arg)
{
    node_t *n = arg;
    pthread_mutex_lock(&n->mu);
    while (!n->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SWEEP_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&n->cv, &n->mu, &ts);
        if (n->stop)
            break;
        pthread_mutex_unlock(&n->mu);
        space_sweep(n);
        publish_status(n);
        session_local_sweep(n->sess);
        for (int ns = 1; ns < NS__COUNT; ns++)
            if (ns_fronts[ns] && ns_fronts[ns]->sweep)
                ns_fronts[ns]->sweep(node_front(n, ns));
        pthread_mutex_lock(&n->mu);
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* The state's delivery hook: an effect goes to its namespace's front (none during replay
 * at open, and none for namespaces without a front: then it is dropped). */
static void node_deliver(void *arg, effect_t *e)
{
    shard_t *sh = arg;
    node_t *n = sh->node;
    e->shard = sh->index;
    const ns_front_t *f = e->ns < NS__COUNT ? ns_fronts[e->ns] : NULL;
    void *ctx = node_front(n, e->ns);
    if (f && f->deliver && ctx)
        f->deliver(ctx, e);
}

/* Undoes node_open from whatever point it reached (see the lifetime note at the top). */
void node_quiesce(node_t *n)
{
    if (!n || n->quiesced)
        return;
    n->quiesced = 1;
    for (int ns = 1; ns < NS__COUNT; ns++) {
        void *ctx = node_front(n, ns);
        if (ctx && ns_fronts[ns]->quiesce)
            ns_fronts[ns]->quiesce(ctx);
    }
    session_local_stop(n->sess);
    if (n->sweeping) {
        pthread_mutex_lock(&n->mu);
        n->stop = 1;
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->sweeper, NULL);
        n->sweeping = 0;
    }
}

/* ---- the cluster node's group ---- */

/* The transport's log hook (on the node's loop thread): to stderr as the default hook would
 * (syslog in the background). */
static void transport_line(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "quorumfs: transport: %s\n", line);
}

static void mover_line(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "quorumfs: %s\n", line);
}

/* A data directory holds one kind of node: the embedded node's log is <dir>/wal, a cluster
 * node's <dir>/raft. Returns 0, or -QERR_INVAL with *errmsg when dir holds the other kind
 * (nothing converts one into the other yet). */
static int check_dir_kind(const char *dir, int cluster, char **errmsg)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, cluster ? "wal" : "raft");
    if (stat(path, &st) != 0)
        return 0;
    if (asprintf(errmsg, cluster
                 ? "%s holds an embedded (single) node's data (%s); a cluster node needs its "
                   "own fresh data directory (converting one is not supported yet)"
                 : "%s holds a cluster node's data (%s); start it with --id, --listen and "
                   "--peers, or give the embedded node another data directory", dir, path) < 0)
        *errmsg = NULL;
    return -QERR_INVAL;
}

/* Writes text to <dir>/<name> through <name>.tmp, fsynced, renamed over. Returns 0, or
 * -QERR_IO / -QERR_NOMEM with *errmsg. */
static int write_small_file(const char *dir, const char *name, const char *text, char **errmsg)
{
    char path[4200], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name);
    FILE *f = fopen(tmp, "we");
    int ok = f && fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return asprintf(errmsg, "cannot write %s: %s", path, strerror(errno)) < 0
               ? -QERR_NOMEM : -QERR_IO;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);   /* the rename, durable */
    ok = dfd >= 0 && fsync(dfd) == 0;
    if (dfd >= 0)
        close(dfd);
    if (!ok)
        return asprintf(errmsg, "cannot sync %s: %s", dir, strerror(errno)) < 0
               ? -QERR_NOMEM : -QERR_IO;
    return 0;
}

/* The layout a cluster's data directory was made with (<dir>/shards: "S R\n", written at
 * the first start; a file of a build before --replicas holds "S": R was every node, n): a
 * later start must ask for the same, since the placement of every unit and replica depends
 * on it (changing it is not supported yet). *replicas 0 (no --replicas) takes the one the
 * directory was made with, or at the first start min(n, NODE_DEFAULT_REPLICAS). Returns 0,
 * or -QERR_* with *errmsg. */
static int check_layout(const char *dir, uint32_t shards, uint32_t *replicas, uint32_t n,
                        char **errmsg)
{
    char path[4200], tmp[4200], buf[64];
    snprintf(path, sizeof(path), "%s/shards", dir);
    FILE *f = fopen(path, "re");
    struct stat sb;
    snprintf(tmp, sizeof(tmp), "%s/raft", dir);
    int old = !f && stat(tmp, &sb) == 0;   /* made before the layout was kept: 1 shard */
    if (f || old) {
        unsigned long have = 1, have_r = n;
        int ok = old;
        if (f) {
            ok = 0;
            if (fgets(buf, sizeof(buf), f)) {
                /* "S" or "S R", decimal, then at most a newline */
                char *p = buf, *e;
                ok = *p >= '0' && *p <= '9';
                have = ok ? strtoul(p, &e, 10) : 0;
                p = ok ? e : p;
                if (ok && *p == ' ') {
                    p++;
                    ok = *p >= '0' && *p <= '9';
                    have_r = ok ? strtoul(p, &e, 10) : 0;
                    p = ok ? e : p;
                }
                ok = ok && (*p == '\n' || !*p) && (!*p || !p[1]) && have > 0 &&
                     have <= NODE_SHARDS_MAX && have_r > 0 && have_r <= 4095;
            }
            fclose(f);
        }
        if (!ok)
            return asprintf(errmsg, "%s: not a shard layout", path) < 0 ? -QERR_NOMEM
                                                                      : -QERR_CORRUPT;
        if (have != shards || (*replicas && have_r != *replicas))
            return asprintf(errmsg, "%s was made with --shards %lu --replicas %lu (asked: %u, "
                            "%u); changing the layout of a cluster is not supported yet", dir,
                            have, have_r, shards, *replicas) < 0 ? -QERR_NOMEM : -QERR_INVAL;
        *replicas = (uint32_t)have_r;
        return 0;
    }
    if (!*replicas)
        *replicas = n < NODE_DEFAULT_REPLICAS ? n : NODE_DEFAULT_REPLICAS;
    if (*replicas > n || *replicas > LAYOUT_MAX_MEMBERS)
        return asprintf(errmsg, "--replicas %u: from 1 to the number of peers (%u)", *replicas,
                        n) < 0 ? -QERR_NOMEM : -QERR_INVAL;
    snprintf(buf, sizeof(buf), "%u %u\n", shards, *replicas);
    return write_small_file(dir, "shards", buf, errmsg);
}

/* Whether <dir>/raft exists: the directory holds a cluster node's Raft state already. */
static int has_raft_state(const char *dir)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/raft", dir);
    return stat(path, &st) == 0;
}

/* Reads <dir>/<name>'s one line (at most size - 1 bytes, newline included) into buf: 1, or 0
 * when the file does not exist, or -QERR_* with *errmsg (unreadable, longer). */
static int read_line_file(const char *dir, const char *name, char *buf, size_t size,
                          char **errmsg)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0
               : asprintf(errmsg, "cannot read %s: %s", path, strerror(errno)) < 0
               ? -QERR_NOMEM : -QERR_IO;
    int ok = fgets(buf, (int)size, f) != NULL && strchr(buf, '\n') && fgetc(f) == EOF;
    fclose(f);
    return ok ? 1 : asprintf(errmsg, "%s: not what quorumfs wrote there (one line)", path) < 0
                    ? -QERR_NOMEM : -QERR_CORRUPT;
}

/* The cluster this data directory belongs to (<dir>/cluster-id: "<id, 16 hex digits>\n", or
 * "<id> join\n" for a member added with `cluster add`, written at the first start): a later
 * start keeps that id (the one computed from --peers changes once members come and go) and
 * stays a joining member (its groups wait to be added rather than found a cluster, even
 * without --join). A directory made before the file existed takes *id and gets the file.
 * --join (*join on entry) is refused for a directory that holds a founding member's state.
 * Returns 0, or -QERR_* with *errmsg. */
static int cluster_id_file(const char *dir, uint64_t *id, int *join, char **errmsg)
{
    char buf[64], text[64];
    int rc = read_line_file(dir, "cluster-id", buf, sizeof(buf), errmsg);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        size_t h = strspn(buf, "0123456789abcdef");
        int have_join = !strcmp(buf + h, " join\n");
        unsigned long long have = h ? strtoull(buf, NULL, 16) : 0;
        if (h < 1 || h > 16 || !have || (strcmp(buf + h, "\n") != 0 && !have_join))
            return asprintf(errmsg, "%s/cluster-id: not a cluster id (1 to 16 hex digits, "
                            "then \" join\" or nothing)", dir) < 0 ? -QERR_NOMEM
                                                                : -QERR_CORRUPT;
        if (*join && (!have_join || have != *id))
            return asprintf(errmsg, have_join ? "%s belongs to cluster %016llx, not %016llx "
                            "(--join): give the new member an empty data directory"
                            : "%s holds a founding member of cluster %016llx: start it without "
                            "--join (%016llx)", dir, have, (unsigned long long)*id) < 0
                   ? -QERR_NOMEM : -QERR_INVAL;
        *id = have;
        *join = have_join;
        return 0;
    }
    if (*join && has_raft_state(dir))
        return asprintf(errmsg, "%s holds a cluster node's state already: --join needs an empty "
                        "data directory", dir) < 0 ? -QERR_NOMEM : -QERR_INVAL;
    snprintf(text, sizeof(text), "%016llx%s\n", (unsigned long long)*id, *join ? " join" : "");
    return write_small_file(dir, "cluster-id", text, errmsg);
}

/* This data directory's incarnation (<dir>/incarnation: 16 hex digits and a newline), drawn
 * at random when the file does not exist yet (a new directory, or one made by a build
 * before incarnations), or when the directory holds no Raft state (raft/ was deleted and
 * the file kept: the votes and entries it named are gone). Peers refuse a member whose HELLO carries another incarnation than
 * the member record's, so a node restarted on an emptied directory cannot count as the
 * member whose Raft state it lost (docs/MEMBERSHIP.md "A wiped node"). Returns 0, or
 * -QERR_* with *errmsg. */
static int incarnation_file(const char *dir, uint64_t *inc, char **errmsg)
{
    char buf[64];
    int rc = read_line_file(dir, "incarnation", buf, sizeof(buf), errmsg);
    if (rc < 0)
        return rc;
    if (rc == 1 && has_raft_state(dir)) {
        size_t h = strspn(buf, "0123456789abcdef");
        *inc = h == 16 && !strcmp(buf + h, "\n") ? strtoull(buf, NULL, 16) : 0;
        if (!*inc)
            return asprintf(errmsg, "%s/incarnation: not an incarnation (16 hex digits, not "
                            "all zero)", dir) < 0 ? -QERR_NOMEM : -QERR_CORRUPT;
        return 0;
    }
    *inc = 0;
    while (!*inc)
        if (getrandom(inc, sizeof(*inc), 0) != (ssize_t)sizeof(*inc))
            return asprintf(errmsg, "cannot draw an incarnation: getrandom: %s",
                            strerror(errno)) < 0 ? -QERR_NOMEM : -QERR_IO;
    snprintf(buf, sizeof(buf), "%016llx\n", (unsigned long long)*inc);
    return write_small_file(dir, "incarnation", buf, errmsg);
}

/* How a founding member's groups were founded (<dir>/founders: "layout ID,ID,...\n" or
 * "rendezvous ID,...\n", written at the first start): the founding members and the
 * placement of their voters. Every start founds its groups' boot lists from it, never from
 * the --peers of that start: where a group has no snapshot yet, the node rebuilds its
 * configuration from those lists plus the log, so they must never change (a different list
 * would silently move votes). A directory made before the file existed was founded with
 * rendezvous placement over its --peers, which did not change before membership changes
 * existed. Fills ids[0..*n) and *layout (1: cluster/layout.h, 0: rendezvous). */
static int founders_file(const char *dir, int had_cluster_id, const uint64_t *peers,
                         size_t npeers, uint64_t *ids, size_t *n, int *layout, char **errmsg)
{
    char buf[512];
    int rc = read_line_file(dir, "founders", buf, sizeof(buf), errmsg);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        size_t len = 0;
        /* builds that wrote cluster-id founded with the layout; earlier ones (no cluster-id)
         * with rendezvous placement */
        *layout = !has_raft_state(dir) || had_cluster_id;
        len += (size_t)snprintf(buf, sizeof(buf), "%s ", *layout ? "layout" : "rendezvous");
        for (size_t i = 0; i < npeers && len < sizeof(buf); i++)
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%llu", i ? "," : "",
                                    (unsigned long long)peers[i]);
        if (len + 2 > sizeof(buf))
            return -QERR_INVAL;
        strcat(buf, "\n");
        rc = write_small_file(dir, "founders", buf, errmsg);
        if (rc < 0)
            return rc;
    }
    char *p = buf;
    *layout = !strncmp(p, "layout ", 7);
    p += *layout ? 7 : !strncmp(p, "rendezvous ", 11) ? 11 : 0;
    *n = 0;
    int ok = p != buf;
    while (ok && *n < LAYOUT_MAX_MEMBERS) {
        char *end;
        errno = 0;
        unsigned long long v = *p >= '0' && *p <= '9' ? strtoull(p, &end, 10) : 0;
        ok = !errno && v >= 1 && v <= NODE_ID_MAX;
        for (size_t i = 0; ok && i < *n; i++)
            ok = ids[i] != v;
        if (!ok)
            break;
        ids[(*n)++] = v;
        p = end;
        if (*p != ',')
            break;
        p++;
    }
    if (!ok || strcmp(p, "\n") != 0)
        return asprintf(errmsg, "%s/founders: not a founding member list", dir) < 0
               ? -QERR_NOMEM : -QERR_CORRUPT;
    return 0;
}

/* Adds group g, founding it with voters[0..r) (the first its preferred leader) and every
 * other id of ids[0..n) as a learner, or, on a joining member, waiting to be added. */
static int add_group(node_t *n, uint32_t g, const uint64_t *voters, uint32_t r,
                     const uint64_t *ids, size_t nids, int join, const sm_ops_t *ops,
                     void *ctx, group_t **out, char **errmsg)
{
    if (join)
        return group_node_add_joining(n->gnode, g, ops, ctx, out, errmsg);
    uint64_t learners[LAYOUT_MAX_MEMBERS];
    size_t nl = 0;
    for (size_t i = 0; i < nids; i++) {
        int voter = 0;
        for (uint32_t j = 0; j < r; j++)
            voter |= voters[j] == ids[i];
        if (!voter)
            learners[nl++] = ids[i];
    }
    group_members_t gm = { .voters = voters, .n_voters = r, .learners = learners,
                           .n_learners = nl };
    return group_node_add_members(n->gnode, g, &gm, ops, ctx, out, errmsg);
}

/* Opens the shards' groups: the embedded node's one (group_open) or, on a cluster node, one
 * Raft group per shard (group k for shard k) and the meta group, all on one Raft node (one
 * transport and one shared log). A founding member founds each shard with the voters the
 * layout gives its --peers (cluster/layout.h) and every other member as a learner; a joining
 * one waits to be added (docs/MEMBERSHIP.md). */
static int open_groups(node_t *n, const node_opts_t *opts, char **errmsg)
{
    int rc = check_dir_kind(opts->data_dir, opts->id != 0, errmsg);
    if (rc < 0)
        return rc;
    if (!opts->id) {
        group_config_t gc = { .dir = opts->data_dir, .snapshot_bytes = opts->snapshot_bytes };
        return group_open(&gc, &state_sm_ops, n->shards[0].st, &n->shards[0].group, errmsg);
    }
    n->cluster = 1;
    const char *self_addr = NULL;
    uint64_t ids[LAYOUT_MAX_MEMBERS];
    if (opts->n_peers > LAYOUT_MAX_MEMBERS)
        return asprintf(errmsg, "%zu peers: at most %d", opts->n_peers, LAYOUT_MAX_MEMBERS) < 0
               ? -QERR_NOMEM : -QERR_INVAL;
    for (size_t i = 0; i < opts->n_peers; i++) {
        ids[i] = opts->peers[i].id;
        if (opts->peers[i].id == opts->id)
            self_addr = opts->peers[i].addr;
    }
    if (!self_addr) {
        *errmsg = strdup("this node's id is not in the peer list");
        return -QERR_INVAL;
    }
    n->nreplicas = opts->replicas;
    int join = opts->join;
    n->cluster_id = opts->cluster_id;
    rc = check_layout(opts->data_dir, n->nshards, &n->nreplicas, (uint32_t)opts->n_peers,
                      errmsg);
    char cidpath[4200];
    struct stat cidst;
    snprintf(cidpath, sizeof(cidpath), "%s/cluster-id", opts->data_dir);
    int had_cluster_id = stat(cidpath, &cidst) == 0;
    if (rc == 0)
        rc = cluster_id_file(opts->data_dir, &n->cluster_id, &join, errmsg);
    n->joining = join;
    if (rc == 0)
        rc = incarnation_file(opts->data_dir, &n->incarnation, errmsg);
    /* a founding member's boot lists come from its founders file, whatever --peers says now */
    uint64_t fids[LAYOUT_MAX_MEMBERS];
    size_t nf = 0;
    int by_layout = 1;
    if (rc == 0 && !join)
        rc = founders_file(opts->data_dir, had_cluster_id, ids, opts->n_peers, fids, &nf,
                           &by_layout, errmsg);
    if (rc == 0 && !join) {
        int self_founder = 0;
        for (size_t i = 0; i < nf; i++)
            self_founder |= fids[i] == opts->id;
        if (!self_founder)
            rc = asprintf(errmsg, "%s/founders does not list node %llu: this directory is "
                          "another node's", opts->data_dir, (unsigned long long)opts->id) < 0
                 ? -QERR_NOMEM : -QERR_INVAL;
    }
    if (rc < 0)
        return rc;
    group_raft_config_t rc_cfg = {
        .id = opts->id,
        .listen = opts->listen ? opts->listen : self_addr,
        .peers = opts->peers,
        .n_peers = opts->n_peers,
        .cluster_id = n->cluster_id,
        .data_incarnation = n->incarnation,
        .dir = opts->data_dir,
        .timeout_ms = opts->timeout_ms,
        .snapshot_bytes = opts->snapshot_bytes,
        .log = transport_line,
        .log_ctx = n,
        .tls_cert = opts->tls_cert,
        .tls_key = opts->tls_key,
        .tls_ca = opts->tls_ca,
        .no_lease_reads = opts->no_lease_reads,
    };
    rc = group_node_open(&rc_cfg, &n->gnode, errmsg);
    const uint32_t R = n->nreplicas;
    /* the founding lists: R voters by the founders' placement (every founder when there are
     * fewer, which check_layout refuses at a first start), the other founders learners */
    const uint32_t RB = R < nf ? R : (uint32_t)nf;
    uint64_t *targets = calloc((size_t)n->nshards * R + R, sizeof(*targets));
    n->groups = calloc(n->nshards, sizeof(*n->groups));
    if (rc == 0 && (!targets || !n->groups))
        rc = -QERR_NOMEM;
    if (rc == 0 && !join && by_layout && layout_plan(n->nshards, RB, fids, nf, targets) < 0)
        rc = -QERR_INVAL;
    for (uint32_t k = 0; rc == 0 && !join && !by_layout && k < n->nshards; k++) {
        uint64_t order[LAYOUT_MAX_MEMBERS];     /* the placement of builds before the layout */
        replicas_for_shard(k, fids, nf, nf, order);
        memcpy(targets + (size_t)k * RB, order, RB * sizeof(*order));
    }
    for (uint32_t k = 0; rc == 0 && k < n->nshards; k++) {
        rc = add_group(n, k, targets + (size_t)k * RB, RB, fids, nf, join,
                       &state_sm_ops, n->shards[k].st, &n->shards[k].group, errmsg);
        n->groups[k] = n->shards[k].group;
    }
    /* the meta group, its voters the first R of its rendezvous order; added last (its replay
     * calls meta_changed, which does nothing before the mover exists) */
    if (rc == 0 && !(n->meta = meta_sm_new(meta_changed, n)))
        rc = -QERR_NOMEM;
    if (rc == 0) {
        uint64_t *mv = targets + (size_t)n->nshards * R;
        if (!join)
            replicas_for_shard(META_GROUP, fids, nf, RB, mv);
        rc = add_group(n, META_GROUP, mv, RB, fids, nf, join, &meta_sm_ops, n->meta,
                       &n->meta_group, errmsg);
    }
    free(targets);
    /* until the cluster is founded, --peers must be the founding list (a typo at the first
     * start would otherwise be kept in the founders file for good) */
    meta_view_t rec = { 0 };
    if (rc == 0 && !join && meta_sm_copy(n->meta, &rec) == 0 && !rec.cluster_id) {
        int same = nf == opts->n_peers;
        for (size_t i = 0; same && i < nf; i++) {
            int found = 0;
            for (size_t j = 0; j < opts->n_peers; j++)
                found |= ids[j] == fids[i];
            same = found;
        }
        if (!same)
            rc = asprintf(errmsg, "--peers lists other node ids than the first start of %s did "
                          "(see %s/founders), and the cluster was never formed: start with the "
                          "same --peers, or with an empty data directory", opts->data_dir,
                          opts->data_dir) < 0 ? -QERR_NOMEM : -QERR_INVAL;
    }
    meta_view_free(&rec);
    if (rc == 0) {
        mover_config_t mc = {
            .gnode = n->gnode, .self = opts->id, .nshards = n->nshards, .shards = n->groups,
            .meta_id = META_GROUP, .meta_group = n->meta_group, .meta = n->meta,
            .replicas = R, .peers = opts->peers, .npeers = opts->n_peers, .found = !join,
            .cluster_id = n->cluster_id, .incarnation = n->incarnation, .log = mover_line,
            .log_ctx = n,
        };
        mover_t *m;
        char why[200];
        rc = mover_new(&mc, &m);
        if (rc == 0)
            __atomic_store_n(&n->mover, m, __ATOMIC_RELEASE);
        if (rc == 0 && mover_mismatch(m, why, sizeof(why)))
            rc = asprintf(errmsg, "%s (the member record says so)", why) < 0 ? -QERR_NOMEM
                                                                           : -QERR_INVAL;
    }
    if (rc == 0)
        rc = group_node_set_admin(n->gnode, admin_request, n);
    if (rc == 0)
        rc = group_node_start(n->gnode, errmsg);
    if (rc == 0)
        rc = mover_start(n->mover);
    return rc;
}

/* ---------------------------------------------------------------- administration */

struct admin_job {
    node_t *n;
    uint64_t token;
    frame_admin_t req;
};

static void *admin_main(void *arg)
{
    struct admin_job *j = arg;
    node_t *n = j->n;
    char *text = NULL;
    int rc = admin_run(n, &j->req, &text);
    (void)group_node_admin_answer(n->gnode, j->token, rc, text ? text : "",
                                  text ? strlen(text) : 0);
    free(text);
    free(j);
    pthread_mutex_lock(&n->mu);
    n->admins--;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* An administration request arrived (on the node loop's thread, which must not block): it
 * runs on a thread of its own, which answers it; at most ADMIN_JOBS_MAX at once (more are
 * answered EBUSY at once). Node close waits for the running ones (each bounded by the
 * operation timeout). */
#define ADMIN_JOBS_MAX 8
static void admin_request(void *arg, uint64_t token, const frame_admin_t *req)
{
    node_t *n = arg;
    struct admin_job *j = malloc(sizeof(*j));
    pthread_mutex_lock(&n->mu);
    int ok = j && !n->stop && n->admins < ADMIN_JOBS_MAX;
    if (ok)
        n->admins++;
    pthread_mutex_unlock(&n->mu);
    pthread_t th;
    pthread_attr_t at;
    if (ok) {
        *j = (struct admin_job){ .n = n, .token = token, .req = *req };
        j->req.text = NULL;
        j->req.mem = NULL;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&th, &at, admin_main, j) == 0;
        pthread_attr_destroy(&at);
        if (!ok) {
            pthread_mutex_lock(&n->mu);
            n->admins--;
            pthread_mutex_unlock(&n->mu);
        }
    }
    if (!ok) {
        static const char busy[] = "busy: too many administration requests, or stopping";
        free(j);
        (void)group_node_admin_answer(n->gnode, token, -EBUSY, busy, sizeof(busy) - 1);
    }
}

/* Waits until no administration request runs (node close; n->stop is set, so no new one
 * starts). */
static void admin_wait(node_t *n)
{
    pthread_mutex_lock(&n->mu);
    while (n->admins)
        pthread_cond_wait(&n->cv, &n->mu);
    pthread_mutex_unlock(&n->mu);
}

/* ---------------------------------------------------------------- the meta group */

/* The meta group's change hook (on its applying thread, no lock held): the mover recomputes
 * the layout, sets every group's preferred leader (the first target voter not drained: a
 * drained member's leaderships move away, an undrained one's come back) and moves replicas.
 * Every node applies the same record, so every node's balancer agrees. */
static void meta_changed(void *arg, const meta_sm_t *sm)
{
    node_t *n = arg;
    (void)sm;
    mover_t *m = __atomic_load_n(&n->mover, __ATOMIC_ACQUIRE);
    mover_record_changed(m);
    /* a node started with another --shards or --replicas than the cluster's (a joining one
     * learns the cluster's here) would route files to other shards than its peers: it
     * stops (SIGTERM: the mount's clean unmount), once */
    char why[200];
    if (!m || !mover_mismatch(m, why, sizeof(why)) ||
        __atomic_exchange_n(&n->layout_stop, 1, __ATOMIC_RELAXED))
        return;
    meta_member_t me;
    if (meta_sm_get(n->meta, n->opts.id, &me) == 0 && me.state != META_JOINING) {
        /* a member serving already: its mover does nothing, health says why */
        fprintf(stderr, "quorumfs: error: %s; this node moves no replica until restarted with "
                "the cluster's values\n", why);
        return;
    }
    /* a joining node would route files to other shards than its peers: it stops, by the
     * signal the mount's clean unmount answers, sent to the thread serving the mount (or,
     * before it serves, by node_serve_begin's answer) */
    fprintf(stderr, "quorumfs: error: %s; stopping (start it with the cluster's values)\n", why);
    __atomic_store_n(&n->stop_asked, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&n->serving, __ATOMIC_SEQ_CST))
        pthread_kill(n->opener, SIGTERM);
}

int node_waits_to_join(node_t *n, uint32_t k)
{
    if (!n->cluster || !n->joining || k >= n->nshards)
        return 0;
    mraft_group_status_t *st = malloc(sizeof(*st));
    int waits = st && group_raft_status(n->shards[k].group, st) == 0 && st->member == 0;
    free(st);
    return waits;
}

int node_removed(node_t *n)
{
    return n->cluster && mover_removed(__atomic_load_n(&n->mover, __ATOMIC_ACQUIRE));
}

int node_serve_begin(node_t *n)
{
    __atomic_store_n(&n->serving, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&n->stop_asked, __ATOMIC_SEQ_CST);
}

int node_stop_requested(node_t *n) { return __atomic_load_n(&n->stop_asked, __ATOMIC_SEQ_CST); }

/* Whether every group would still have a target voter that is not drained once id is too. */
static int drain_leaves_leaders(node_t *n, uint64_t id)
{
    for (uint32_t g = 0; g <= n->nshards; g++)
        if (!mover_first_undrained(n->mover, g < n->nshards ? g : META_GROUP, id))
            return 0;
    return 1;
}

/* Proposes meta command c (freed) and returns apply's code, or a proposal's error. */
static int propose_meta(node_t *n, meta_cmd_t *c)
{
    sm_result_t res;
    int rc = group_propose(n->meta_group, c->p, c->len, &res);
    meta_cmd_free(c);
    return rc < 0 ? node_errno(rc) : res.code;
}

int node_drain(node_t *n, uint64_t id, int on)
{
    if (!n->cluster || !n->meta)
        return -EOPNOTSUPP;       /* the embedded node has nobody to hand leadership to */
    meta_member_t m;
    if (meta_sm_get(n->meta, id, &m) < 0)
        return -ENOENT;
    if (on && !m.drained && !drain_leaves_leaders(n, id))
        return -EBUSY;
    meta_cmd_t c = { 0 };
    int rc = meta_cmd_drain(&c, id, on ? 1 : 0);
    return rc < 0 ? node_errno(rc) : propose_meta(n, &c);
}

int node_member_drained(node_t *n, uint64_t id)
{
    return n->meta && meta_sm_is_drained(n->meta, id);
}

int node_member_add(node_t *n, uint64_t id, const char *addr, char **text)
{
    *text = NULL;
    if (!n->cluster || !n->meta)
        return -EOPNOTSUPP;
    if (id == 0 || id > NODE_ID_MAX)
        return -EINVAL;
    if (!addr || !meta_addr_valid(addr, strlen(addr)))
        return -EDESTADDRREQ;
    meta_member_t all[LAYOUT_MAX_MEMBERS + 1];
    size_t nm = mover_members(n->mover, all, LAYOUT_MAX_MEMBERS + 1);
    for (size_t i = 0; i < nm && i < LAYOUT_MAX_MEMBERS; i++)
        if (all[i].id == id)
            return -EEXIST;
    if (nm >= LAYOUT_MAX_MEMBERS)
        return -ENOSPC;            /* a Raft group holds at most 16 members */
    meta_cmd_t c = { 0 };
    int rc = meta_cmd_add(&c, id, addr);
    rc = rc < 0 ? node_errno(rc) : propose_meta(n, &c);
    if (rc < 0)
        return rc;
    /* the command line the new member starts with: every member, itself included */
    char *peers = NULL;
    size_t plen = 0;
    FILE *f = open_memstream(&peers, &plen);
    nm = mover_members(n->mover, all, LAYOUT_MAX_MEMBERS + 1);
    int have_self = 0;
    for (size_t i = 0; f && i < nm && i <= LAYOUT_MAX_MEMBERS; i++) {
        fprintf(f, "%s%llu=%s", i ? "," : "", (unsigned long long)all[i].id, all[i].addr);
        have_self |= all[i].id == id;
    }
    if (f && !have_self)          /* (this node has not applied the add yet) */
        fprintf(f, "%s%llu=%s", nm ? "," : "", (unsigned long long)id, addr);
    if (!f || fclose(f) != 0) {
        free(peers);
        return 0;
    }
    if (asprintf(text, "node %llu added (joining); start it with an empty data directory:\n"
                 "  quorumfs mount --id %llu --peers %s --join %016llx --shards %u "
                 "--replicas %u --data DIR MOUNTPOINT%s\n"
                 "it joins every shard as a learner, catches up, and takes its share of the "
                 "replicas and leaders (quorumfs cluster rebalance --dry-run shows what is left "
                 "to move)", (unsigned long long)id, (unsigned long long)id, peers,
                 (unsigned long long)n->cluster_id, n->nshards, n->nreplicas,
                 n->opts.tls_cert ? " --tls-cert F --tls-key F --tls-ca F" : "") < 0)
        *text = NULL;
    free(peers);
    return 0;
}

int node_member_remove(node_t *n, uint64_t id)
{
    if (!n->cluster || !n->meta)
        return -EOPNOTSUPP;
    meta_member_t all[LAYOUT_MAX_MEMBERS + 1];
    size_t nm = mover_members(n->mover, all, LAYOUT_MAX_MEMBERS + 1), active = 0;
    int found = 0;
    uint8_t state = 0;
    for (size_t i = 0; i < nm && i <= LAYOUT_MAX_MEMBERS; i++) {
        if (all[i].id == id) {
            found = 1;
            state = all[i].state;
        } else {
            active += all[i].state == META_ACTIVE;
        }
    }
    if (!found)
        return -ENOENT;
    if (state == META_LEAVING)
        return 0;
    if (state == META_ACTIVE && active < n->nreplicas)
        return -EBUSY;             /* the shards would have fewer members than voters (the
                                      record's apply judges it again, in log order) */
    meta_cmd_t c = { 0 };
    int rc = meta_cmd_set_state(&c, id, META_LEAVING);
    return rc < 0 ? node_errno(rc) : propose_meta(n, &c);
}

int node_rebalance_plan(node_t *n, char **text)
{
    *text = NULL;
    if (!n->cluster || !n->mover)
        return -EOPNOTSUPP;
    return mover_plan_text(n->mover, text) < 0 ? -ENOMEM : 0;
}

uint32_t node_shard_of(const node_t *n, int ns, const char *path)
{
    return n->nshards > 1 ? route_shard(ns, path, n->nshards) : 0;
}

/* The first shard whose tree has id live (replaced 0) or kept as replaced (1), or -1. */
static int shard_having(node_t *n, uint64_t id, int replaced)
{
    for (uint32_t k = 0; k < n->nshards; k++) {
        state_t *st = n->shards[k].st;
        pthread_rwlock_rdlock(&st->lock);
        int found = replaced ? tree_replaced(st, id) != NULL : tree_by_id(st, id) != NULL;
        pthread_rwlock_unlock(&st->lock);
        if (found)
            return (int)k;
    }
    return -1;
}

int node_shard_of_id(node_t *n, uint64_t id) { return shard_having(n, id, 0); }
int node_shard_of_replaced(node_t *n, uint64_t id) { return shard_having(n, id, 1); }

struct each {
    node_t *n;
    uint32_t k;
    void (*fn)(node_t *n, uint32_t k, void *arg);
    void *arg;
    pthread_t th;
    int started;
};

static void *each_main(void *p)
{
    struct each *e = p;
    e->fn(e->n, e->k, e->arg);
    return NULL;
}

void node_each_shard(node_t *n, void (*fn)(node_t *n, uint32_t k, void *arg), void *arg)
{
    struct each *es = n->nshards > 1 ? calloc(n->nshards, sizeof(*es)) : NULL;
    for (uint32_t k = 0; k < n->nshards; k++) {
        if (es) {
            es[k] = (struct each){ .n = n, .k = k, .fn = fn, .arg = arg };
            es[k].started = pthread_create(&es[k].th, NULL, each_main, &es[k]) == 0;
            if (es[k].started)
                continue;
        }
        fn(n, k, arg);
    }
    for (uint32_t k = 0; es && k < n->nshards; k++)
        if (es[k].started)
            pthread_join(es[k].th, NULL);
    free(es);
}

int node_is_leader(node_t *n, uint32_t shard)
{
    return !n->cluster || (shard < n->nshards && group_is_leader(n->shards[shard].group));
}

/* After a barrier timed out, later ones fail at once for BARRIER_FAST_FAIL_MS while no
 * leader is known: a path walk of several components would otherwise wait out the timeout
 * once per component. A known leader (or a success) ends that. */
#define BARRIER_FAST_FAIL_MS 2000

int node_read_barrier(node_t *n, uint32_t shard)
{
    if (!n->cluster)
        return 0;
    if (shard >= n->nshards)
        return -EIO;
    shard_t *sh = &n->shards[shard];
    uint64_t failed = __atomic_load_n(&sh->barrier_failed_ms, __ATOMIC_RELAXED);
    if (failed && mono_ms() - failed < BARRIER_FAST_FAIL_MS) {
        group_stats_t gs;
        group_get_stats(sh->group, &gs);
        if (!gs.leader)
            return -EIO;
    }
    int rc = group_read_barrier(sh->group, 0);
    __atomic_store_n(&sh->barrier_failed_ms, rc == -QERR_TIMEOUT ? mono_ms() : 0,
                     __ATOMIC_RELAXED);
    return rc < 0 ? node_errno(rc) : 0;
}

int node_quorum_lost(node_t *n, uint32_t shard)
{
    if (!n->cluster || shard >= n->nshards)
        return 0;
    mraft_group_status_t st;
    if (group_raft_status(n->shards[shard].group, &st) < 0 || st.role == RAFT_LEADER)
        return 0;                       /* a leader cut off steps down (check-quorum) */
    if (st.leader)
        return 0;                       /* a known leader decides (the peers' connection
                                           states lag up to 500 ms: just after a partition
                                           heals they still say down) */
    group_peer_stats_t ps;
    /* no leader known: lost when it cannot reach a majority of the shard's voters
     * (then no leader can be elected that it reaches either). A peer counts as out of reach
     * only once known so: not connected after a connection or a failed dial (just after
     * start, before the first dial ends, it is given the benefit of the doubt). */
    uint32_t voters = 0, up = 0;
    for (uint32_t i = 0; i < st.conf.n; i++) {
        const raft_server_t *sv = &st.conf.s[i];
        if (sv->role != RAFT_VOTER)
            continue;
        voters++;
        up += sv->id == n->opts.id || group_node_peer_stats(n->gnode, sv->id, &ps) < 0 ||
              ps.connected || (ps.connects == 0 && ps.dial_failures == 0);
    }
    return voters > 0 && up < voters / 2 + 1;
}

static void barrier_one(node_t *n, uint32_t k, void *arg)
{
    int rc = node_read_barrier(n, k);
    if (rc < 0)
        __atomic_store_n((int *)arg, rc, __ATOMIC_RELAXED);
}

int node_read_barrier_all(node_t *n)
{
    int rc = 0;
    if (n->cluster)
        node_each_shard(n, barrier_one, &rc);
    return rc;
}

void node_pid_range(node_t *n, uint64_t *next, uint64_t *end)
{
    uint64_t applied = 0;   /* above every picked id ever applied, in any shard */
    for (uint32_t k = 0; k < n->nshards; k++) {
        state_t *st = n->shards[k].st;
        pthread_rwlock_rdlock(&st->lock);
        if (st->tree.next_pid > applied)
            applied = st->tree.next_pid;
        pthread_rwlock_unlock(&st->lock);
    }
    if (!n->cluster) {
        *next = applied;
        *end = STATE_PID_END;
        return;
    }
    uint64_t lo = STATE_PID_FIRST + ((n->opts.id - 1) << PID_SLICE_BITS);
    uint64_t hi = lo + (1ull << PID_SLICE_BITS);
    uint64_t now = node_now_ms();
    uint64_t off = now > PID_EPOCH_MS ? (now - PID_EPOCH_MS) << PID_PER_MS_BITS : 0;
    uint64_t start = off < (hi - lo) / 2 ? lo + off : lo + (hi - lo) / 2;
    /* The highest picked id applied is in this slice when this node has the highest id
     * among those that picked: then it is this node's own newest. */
    if (applied > start && applied < hi)
        start = applied;
    *next = start;
    *end = hi;
}

uint64_t node_cluster_id(const node_t *n) { return n->cluster ? n->opts.id : 0; }
size_t node_nmembers(const node_t *n)
{
    if (!n->cluster || !n->mover)
        return 0;
    size_t k = mover_members(n->mover, NULL, 0);
    return k < LAYOUT_MAX_MEMBERS * 2 ? k : LAYOUT_MAX_MEMBERS * 2;
}

int node_member(node_t *n, size_t i, node_member_t *out)
{
    meta_member_t all[LAYOUT_MAX_MEMBERS * 2];
    if (!n->cluster || !n->mover || i >= mover_members(n->mover, all, LAYOUT_MAX_MEMBERS * 2) ||
        i >= LAYOUT_MAX_MEMBERS * 2)
        return -ENOENT;
    memset(out, 0, sizeof(*out));
    out->id = all[i].id;
    out->state = all[i].state;
    snprintf(out->addr, sizeof(out->addr), "%s", all[i].addr);
    out->self = out->id == n->opts.id;
    out->stats.rtt_us = -1;
    if (!out->self)
        (void)group_node_peer_stats(n->gnode, out->id, &out->stats);
    out->connected = out->self || out->stats.connected;
    return 0;
}

static void teardown(node_t *n)
{
    node_quiesce(n);
    pthread_mutex_lock(&n->mu);
    n->stop = 1;                  /* no new administration request starts */
    pthread_mutex_unlock(&n->mu);
    admin_wait(n);
    mover_stop(n->mover);         /* before the groups it changes close; the meta group's
                                     last applies may still call mover_record_changed */
    if (n->gnode)
        group_node_close(n->gnode);   /* frees every shard's group */
    else if (n->shards)
        group_close(n->shards[0].group);
    mover_free(n->mover);
    for (int ns = NS__COUNT - 1; ns > 0; ns--) {
        void *ctx = node_front(n, ns);
        __atomic_store_n(&n->front[ns], NULL, __ATOMIC_RELEASE);
        if (ctx)
            ns_fronts[ns]->stop(ctx);
    }
    session_local_free(n->sess);
    for (uint32_t k = 0; n->shards && k < n->nshards; k++) {
        logs_sm_unbind(n->shards[k].st);
        state_free(n->shards[k].st);
    }
    free(n->shards);
    free(n->data_dir);
    free(n->groups);
    meta_sm_free(n->meta);       /* its group closed with gnode */
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->space.mu);
    free(n);
}

int node_open(const node_opts_t *opts, node_t **out, char **errmsg)
{
    int rc = -QERR_NOMEM;
    *errmsg = NULL;
    node_t *n = calloc(1, sizeof(*n));
    if (!n)
        goto fail;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    pthread_mutex_init(&n->space.mu, NULL);
    n->start_ms = node_now_ms();
    n->opener = pthread_self();
    n->data_dir = strdup(opts->data_dir);
    n->opts = *opts;
    n->opts.data_dir = n->data_dir;
    n->opts.peers = NULL;        /* not kept: the members table is the node's copy */
    n->opts.n_peers = 0;
    n->opts.listen = NULL;
    n->nshards = !opts->id ? 1 : opts->shards ? opts->shards : NODE_DEFAULT_SHARDS;
    if (n->nshards > NODE_SHARDS_MAX) {
        rc = -QERR_INVAL;
        *errmsg = strdup("too many shards");
        goto fail;
    }
    n->shards = calloc(n->nshards, sizeof(*n->shards));
    if (!n->data_dir || !n->shards)
        goto fail;
    for (uint32_t k = 0; k < n->nshards; k++) {
        shard_t *sh = &n->shards[k];
        sh->node = n;
        sh->index = k;
        if (!(sh->st = state_new_shard(STATE_DEFAULT_CACHE_CAP, k)))
            goto fail;
        sh->st->deliver = node_deliver;
        sh->st->deliver_arg = sh;
        /* logs/ keeps its segment files under <data>/logs/<shard> (docs/LOGS.md): bound
         * before the group restores and replays into the shard */
        char ldir[4200];
        snprintf(ldir, sizeof(ldir), "%s/logs/%u", n->data_dir, k);
        int lrc = logs_sm_bind(sh->st, ldir);
        if (lrc < 0) {
            rc = -QERR_IO;
            if (asprintf(errmsg, "cannot prepare %s: %s", ldir, strerror(-lrc)) < 0)
                *errmsg = NULL;
            goto fail;
        }
    }
    rc = open_groups(n, opts, errmsg);
    if (rc < 0)
        goto fail;
    space_open(n);
    rc = -QERR_NOMEM;
    if (!(n->sess = session_local_start(n)))
        goto fail;
    for (int ns = 1; ns < NS__COUNT; ns++) {
        if (!ns_fronts[ns] || !ns_fronts[ns]->start)
            continue;
        void *ctx = ns_fronts[ns]->start(n);
        if (!ctx)
            goto fail;
        __atomic_store_n(&n->front[ns], ctx, __ATOMIC_RELEASE);
    }
    if (pthread_create(&n->sweeper, NULL, sweeper_main, n) != 0)
        goto fail;
    n->sweeping = 1;
    *out = n;
    return 0;
fail:
    if (n)
        teardown(n);
    if (!*errmsg) {
        char buf[256];
        snprintf(buf, sizeof(buf), "cannot open node: %s", qerr_str(rc));
        *errmsg = strdup(buf);
    }
    return rc;
}

void node_close(node_t *n)
{
    if (n)
        teardown(n);
}

state_t *node_state(node_t *n, uint32_t shard)
{
    return n->shards[shard < n->nshards ? shard : 0].st;
}
uint64_t node_start_ms(const node_t *n) { return n->start_ms; }
uint32_t node_nshards(const node_t *n) { return n->nshards; }
uint32_t node_nreplicas(const node_t *n) { return n->cluster ? n->nreplicas : 1; }
uint64_t node_preferred_leader(const node_t *n, uint32_t k)
{
    return n->cluster && n->mover && k < n->nshards ? mover_first_undrained(n->mover, k, 0) : 0;
}
group_t *node_group(node_t *n, uint32_t shard)
{
    return n->shards[shard < n->nshards ? shard : 0].group;
}
const char *node_data_dir(node_t *n) { return n->data_dir; }
const node_opts_t *node_options(node_t *n) { return &n->opts; }
metrics_t *node_metrics(node_t *n) { return &n->metrics; }
struct session_local *node_session(node_t *n) { return n ? n->sess : NULL; }

void *node_front(node_t *n, int ns)
{
    if (!n || ns <= NS_NONE || ns >= NS__COUNT)
        return NULL;
    return __atomic_load_n(&n->front[ns], __ATOMIC_ACQUIRE);
}
