/* fs/queues_fuse.c — the FUSE front of queues/ (FILE-API §2, design in docs/QUEUES.md): the
 * tree queues/<q>/{push,pop,claim,claimed/,dead/,peek,len}, the line-splitting push writer,
 * blocking pop/claim reads parked until their message is delivered, and the leader-side
 * sweep that proposes lease expiry. It reads the state only through the read API of
 * fs/queues_sm.h and builds every command with its encoders.
 *
 * Context: one qfront_t per node (start), reached from a request through ns_front_ctx; it
 * begins with the front_ctx_t of fs/front.h (qf->ctx: the node and the table's mutex).
 * Locking: qf->ctx.mu guards by_hid, next_hid, the rm notes, and the take state of every
 * pop and claim file (state, req, want, got*, out*). Order: the state lock (read) is never
 * held while qf->ctx.mu is taken, and qf->ctx.mu is never held while proposing. A file's
 * own mu guards its push buffer and is held while a text reply is written (see
 * front_reply_text).
 *
 * Waiters: a parked read is fh->req of a pop/claim file in by_hid. Whoever sets fh->req to
 * NULL under qf->ctx.mu (a delivery, the interrupt callback) answers that request, and
 * nobody else touches it; the file itself leaves by_hid only at release, under qf->ctx.mu,
 * after which no delivery can find it.
 *
 * Pollers: poll(2) on a pop/claim file that would block keeps the poll handle in fh->ph,
 * and the file in the polled list. Whoever takes fh->ph under qf->ctx.mu (a delivery that
 * makes a read of the file possible, release, stop) notifies or destroys it; nobody else.
 * A handle is notified only while the FUSE session lives: deliveries end before it is
 * destroyed (node_quiesce), and stop only destroys what is left. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fs/dirlist.h"
#include "fs/front.h"
#include "fs/intr.h"
#include "fs/mount.h"
#include "fs/names.h"
#include "fs/node.h"
#include "fs/queues.h"
#include "fs/session.h"
#include "fs/session_sm.h"

#define PUSH_BATCH_BYTES (1u << 20)     /* split a write's lines into commands of about this */
#define SWEEP_IDS 256                   /* lease expiries per proposal */
#define RM_NOTES 64
#define RM_NOTE_MS 60000

/* Inodes (fs/ns.h NS_SHARD_INO: the queue's shard in bits 48..55, then a 48-bit local
 * part): the namespace root; (qid << 4 | kind) for a queue's directory and control files;
 * MSG_BIT | id << 1 | dead for the entries of claimed/ and dead/. Queue and message ids are
 * the shard's own. */
enum qkind {
    QK_ROOT = 0, QK_DIR, QK_PUSH, QK_POP, QK_CLAIM, QK_CLAIMED, QK_DEAD, QK_PEEK, QK_LEN,
    QK_CMSG, QK_DMSG,
};
#define MSG_BIT (1ull << 47)
/* Each lookup of `push` gives a new inode (PUSH_BIT | qid << 16 | n): the kernel serializes
 * direct writes to one inode, and producers on distinct inodes share fsyncs (group commit). */
#define PUSH_BIT (1ull << PUSH_BIT_NO)
#define PUSH_BIT_NO 46
#define PUSH_QID_SHIFT 16

static const struct { const char *name; int kind; } ctl_names[] = {
    { "claim", QK_CLAIM }, { "claimed", QK_CLAIMED }, { "dead", QK_DEAD }, { "len", QK_LEN },
    { "peek", QK_PEEK }, { "pop", QK_POP }, { "push", QK_PUSH },
};
#define NCTL (sizeof(ctl_names) / sizeof(ctl_names[0]))

typedef struct qref {
    int kind;
    uint32_t shard;              /* the queue's (0 for the root, which spans every shard) */
    uint64_t qid, id;
} qref_t;

typedef struct qfront qfront_t;

/* Take state of a pop/claim open file. */
enum tstate { T_IDLE = 0, T_PROPOSING, T_WAITING, T_HAVE, T_DONE, T_GONE };

/* An open file (or directory) of queues/. */
typedef struct qfh {
    qfront_t *qf;
    int kind;
    char *qname;
    uint64_t qid;                /* the queue it was opened on (commands name it too: a queue
                                    made since under the same name is another one) */
    uint32_t shard;              /* qname's shard */
    pid_t opener;                /* the thread that opened it (push: whose close settles) */
    int ended;                   /* T_GONE because the session ended, not the queue */
    pthread_mutex_t mu;
    /* push (under mu) */
    uint8_t *buf;
    size_t blen, bcap;
    int discard;                 /* 0, or the errno (EFBIG, EIO) with which the writes
                                    carrying the rest of a dropped line fail: an oversized
                                    line, or one a failed write() cut (qf_write) */
    /* pop / claim (under qf->ctx.mu from T_PROPOSING on) */
    uint64_t hid;
    uint64_t sid;                /* the session its TAKE was proposed as (0: none yet) */
    int state;
    uint8_t claim;
    uint64_t got_id;
    uint32_t got_count;
    blob_t *got;
    char *out;                   /* what reads return: "msg\n" or "<id> msg\n" */
    size_t outlen, outoff;
    fuse_req_t req;              /* parked read */
    size_t want;
    UT_hash_handle hh;           /* qf->by_hid */
    /* poll (under qf->ctx.mu): a kept poll handle, the queue whose EFF_QUEUE_READY wakes it
     * (PQID_ANY, PQID_NONE), a count of the handles kept, the polled list's links */
    struct fuse_pollhandle *ph;
    uint64_t pqid, pgen;
    struct qfh *pnext, *pprev;
    /* static text (peek, len, message files) and directory listings */
    char *text;
    size_t tlen;
    int text_empty;              /* peek of an empty queue */
    dirlist_t dir;
} qfh_t;

struct qfront {
    front_ctx_t ctx;             /* first: node, mu */
    qfh_t *by_hid;
    qfh_t *polled;               /* pop/claim files with a kept poll handle */
    uint64_t next_hid;
    /* per shard: the largest hand-over number (EFF_QUEUE_MSG seq) delivered here; each one
     * up to it that went to this node's session was delivered (effects come in log order,
     * and a restore delivers the kept ones again), so TAKE and CANCEL report it as `seen` */
    uint64_t seen[NODE_SHARDS_MAX];
    uint64_t reported[NODE_SHARDS_MAX];     /* the last seen sent, and when (node_now_ms) */
    uint64_t reported_ms[NODE_SHARDS_MAX];
    uint64_t restores[NODE_SHARDS_MAX];     /* EFF_RESTORED seen per shard */
    struct rmnote { uint64_t qkey; pid_t pid; uint64_t at_ms; } notes[RM_NOTES];
    unsigned nnotes;
    uint64_t push_lookups;       /* atomic */
};

static qfront_t *QF(fuse_req_t req) { return ns_front_ctx(req, NS_QUEUES); }
static state_t *qstate(const qfront_t *qf, uint32_t k) { return node_state(qf->ctx.node, k); }
static uint64_t qsid(const qfront_t *qf, uint32_t k)
{
    return session_local_id(node_session(qf->ctx.node), k);
}
/* Every queue lives whole on one shard (FILE-API §11): the one of its name. */
static uint32_t qshard(const qfront_t *qf, const char *qname)
{
    return node_shard_of(qf->ctx.node, NS_QUEUES, qname);
}

/* Proposes b (freed), a command on queue qname, to the queue's shard. */
static int propose(qfront_t *qf, const char *qname, cmdbuf_t *b, sm_result_t *res)
{
    return node_propose(qf->ctx.node, qshard(qf, qname), b, res);
}

/* ---------------------------------------------------------------- inodes */

static fuse_ino_t ino_of(int kind, uint32_t shard, uint64_t qid, uint64_t id)
{
    if (kind == QK_ROOT)
        return NS_ROOT_ID(NS_QUEUES);
    if (kind == QK_CMSG || kind == QK_DMSG)
        return NS_SHARD_INO(NS_QUEUES, shard, MSG_BIT | (id << 1) | (kind == QK_DMSG));
    return NS_SHARD_INO(NS_QUEUES, shard, (qid << 4) | (uint64_t)kind);
}

static int decode(fuse_ino_t ino, qref_t *r)
{
    memset(r, 0, sizeof(*r));
    if (ino == NS_ROOT_ID(NS_QUEUES)) {
        r->kind = QK_ROOT;
        return 0;
    }
    if (!(ino & NS_INO_BIT) || NS_INO_NS(ino) != NS_QUEUES)
        return -ENOENT;
    uint64_t local = NS_INO_LOCAL(ino);
    r->shard = NS_INO_SHARD(ino);
    if (local & PUSH_BIT) {
        r->kind = QK_PUSH;
        r->qid = (local & ~PUSH_BIT) >> PUSH_QID_SHIFT;
        return 0;
    }
    if (local & MSG_BIT) {
        r->id = (local & ~MSG_BIT) >> 1;
        r->kind = (local & 1) ? QK_DMSG : QK_CMSG;
        return 0;
    }
    r->qid = local >> 4;
    r->kind = (int)(local & 15);
    return r->kind >= QK_DIR && r->kind <= QK_LEN ? 0 : -ENOENT;
}

static int is_dir_kind(int kind)
{
    return kind == QK_ROOT || kind == QK_DIR || kind == QK_CLAIMED || kind == QK_DEAD;
}

/* Resolves r against the state (lock held): the queue (not for the root) and, for message
 * files, the message. */
static int resolve(const state_t *st, const qref_t *r, queue_view_t *q, qmsg_view_t *m)
{
    if (r->kind == QK_ROOT)
        return 0;
    if (r->kind == QK_CMSG || r->kind == QK_DMSG) {
        if (queues_sm_msg(st, r->id, m) < 0 ||
            m->where != (r->kind == QK_DMSG ? QM_DEAD : QM_INFLIGHT))
            return -ENOENT;
        return queues_sm_get_qid(st, m->qid, q);
    }
    return queues_sm_get_qid(st, r->qid, q);
}

static int len_text(const queue_view_t *q, char *buf, size_t size)
{
    return snprintf(buf, size, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", q->ready, q->inflight,
                    q->dead);
}

/* Attributes of r; state lock held. */
static int attr_locked(const state_t *st, fuse_ino_t ino, const qref_t *r, struct stat *s)
{
    queue_view_t q;
    qmsg_view_t m;
    int rc = resolve(st, r, &q, &m);
    if (rc < 0)
        return rc;
    off_t size = 0;
    char tmp[80];
    if (r->kind == QK_PEEK && q.head)
        size = q.head->len + 1;
    else if (r->kind == QK_LEN)
        size = len_text(&q, tmp, sizeof(tmp));
    else if (r->kind == QK_CMSG || r->kind == QK_DMSG)
        size = m.data->len + 1;
    mode_t mode = is_dir_kind(r->kind) ? S_IFDIR | 0755
                  : r->kind == QK_PUSH ? S_IFREG | 0200 : S_IFREG | 0444;
    front_stat(s, ino, mode, size, r->kind == QK_ROOT ? 0 : q.mtime_ms);
    return 0;
}

static int do_getattr(qfront_t *qf, fuse_ino_t ino, struct stat *s)
{
    qref_t r;
    int rc = decode(ino, &r);
    if (rc < 0)
        return rc;
    state_t *st = qstate(qf, r.shard);
    pthread_rwlock_rdlock(&st->lock);
    rc = attr_locked(st, ino, &r, s);
    pthread_rwlock_unlock(&st->lock);
    if (rc == 0 && r.kind == QK_ROOT)   /* as the other fronts' roots (was the epoch) */
        front_stat(s, ino, S_IFDIR | 0755, 0, node_start_ms(qf->ctx.node));
    return rc;
}

static void qf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat s;
    front_reply_attr(req, do_getattr(QF(req), ino, &s), &s);
}

static int parse_id(const char *name, uint64_t *id)
{
    return names_parse_uint(name, strlen(name), (1ull << 53), id) < 0 || name[0] == '0' ||
                   strchr(name, '\n') ? -ENOENT : 0;
}

/* The child name of parent pr (resolved to q); state lock held. */
static int child_locked(const state_t *st, const qref_t *pr, const queue_view_t *q,
                        const char *name, qref_t *cr)
{
    memset(cr, 0, sizeof(*cr));
    switch (pr->kind) {
    case QK_ROOT: {
        queue_view_t c;
        if (queues_sm_get(st, name, strlen(name), &c) < 0)
            return -ENOENT;
        cr->kind = QK_DIR;
        cr->qid = c.qid;
        return 0;
    }
    case QK_DIR:
        for (size_t i = 0; i < NCTL; i++)
            if (strcmp(name, ctl_names[i].name) == 0) {
                cr->kind = ctl_names[i].kind;
                cr->qid = q->qid;
                return 0;
            }
        return -ENOENT;
    case QK_CLAIMED:
    case QK_DEAD: {
        uint64_t id;
        qmsg_view_t m;
        int where = pr->kind == QK_DEAD ? QM_DEAD : QM_INFLIGHT;
        if (parse_id(name, &id) < 0 || queues_sm_msg(st, id, &m) < 0 || m.qid != q->qid ||
            m.where != where)
            return -ENOENT;
        cr->kind = pr->kind == QK_DEAD ? QK_DMSG : QK_CMSG;
        cr->id = id;
        return 0;
    }
    default:
        return -ENOTDIR;
    }
}

static int do_lookup(qfront_t *qf, fuse_ino_t parent, const char *name,
                     struct fuse_entry_param *e)
{
    qref_t pr, cr;
    memset(e, 0, sizeof(*e));
    e->generation = 1;
    int rc = decode(parent, &pr);
    if (rc < 0)
        return rc;
    if (strlen(name) > NAME_MAX_BYTES)
        return -ENAMETOOLONG;
    uint32_t k = pr.kind == QK_ROOT ? qshard(qf, name) : pr.shard;
    state_t *st = qstate(qf, k);
    queue_view_t q;
    qmsg_view_t m;
    pthread_rwlock_rdlock(&st->lock);
    rc = resolve(st, &pr, &q, &m);
    if (rc == 0)
        rc = child_locked(st, &pr, &q, name, &cr);
    cr.shard = k;
    if (rc == 0 && cr.qid >= (1ull << (PUSH_BIT_NO - PUSH_QID_SHIFT)))
        rc = -EOVERFLOW;   /* a queue id past what a push inode holds (2^30 per shard) */
    if (rc == 0) {
        e->ino = ino_of(cr.kind, k, cr.qid, cr.id);
        if (cr.kind == QK_PUSH)
            e->ino = NS_SHARD_INO(NS_QUEUES, k,
                                  PUSH_BIT | (cr.qid << PUSH_QID_SHIFT) |
                                      (__atomic_add_fetch(&qf->push_lookups, 1,
                                                          __ATOMIC_RELAXED) &
                                       ((1u << PUSH_QID_SHIFT) - 1)));
        rc = attr_locked(st, e->ino, &cr, &e->attr);
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

static void qf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    front_reply_entry(req, do_lookup(QF(req), parent, name, &e), &e);
}

/* The queue of a queue-level inode: its name (strdup'ed into *name) and id; *r decoded. */
static int queue_of_ino(qfront_t *qf, fuse_ino_t ino, qref_t *r, char **name, uint64_t *qid)
{
    int rc = decode(ino, r);
    if (rc < 0)
        return rc;
    if (r->kind == QK_ROOT)
        return -EPERM;
    state_t *st = qstate(qf, r->shard);
    queue_view_t q;
    qmsg_view_t m;
    pthread_rwlock_rdlock(&st->lock);
    rc = resolve(st, r, &q, &m);
    if (rc == 0 && !(*name = strdup(q.name)))
        rc = -ENOMEM;
    if (rc == 0 && qid)
        *qid = q.qid;
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/* Looks up child name of parent: *child, its queue's name (strdup'ed) and id. */
static int child_ref(qfront_t *qf, fuse_ino_t parent, const char *name, qref_t *child,
                     char **qname, uint64_t *qid)
{
    struct fuse_entry_param e;
    int rc = do_lookup(qf, parent, name, &e);
    return rc < 0 ? rc : queue_of_ino(qf, e.ino, child, qname, qid);
}

/* ---------------------------------------------------------------- directories */

static void qf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    qfront_t *qf = QF(req);
    qref_t pr;
    int rc = decode(parent, &pr);
    if (rc == 0 && pr.kind != QK_ROOT)
        rc = -EPERM;              /* a queue holds no directories of its own */
    if (rc == 0)
        rc = names_check(name, strlen(name), 0);
    if (rc == 0) {
        cmdbuf_t b;
        queues_cmd_mkdir(&b, node_now_ms(), name);
        rc = propose(qf, name, &b, NULL);
    }
    struct fuse_entry_param e;
    if (rc == 0)
        rc = do_lookup(qf, parent, name, &e);
    front_reply_entry(req, rc, &e);
}

/* A queue's identity on the node: its shard and its id there (qids are each shard's own). */
static uint64_t qkey(uint32_t shard, uint64_t qid)
{
    return ((uint64_t)shard << NS_LOCAL_BITS) | qid;
}

/* `rm -r queues/q` first unlinks the entries inside the queue, then removes the directory.
 * Those unlinks note (queue's qkey, pid); an rmdir of the queue by the same process soon
 * after removes it with its messages. A plain rmdir of a non-empty queue gives ENOTEMPTY. */

static void note_rm(qfront_t *qf, uint64_t key, pid_t pid)
{
    uint64_t now = node_now_ms();
    pthread_mutex_lock(&qf->ctx.mu);
    unsigned slot = qf->nnotes < RM_NOTES ? qf->nnotes++ : 0;
    for (unsigned i = 0; i < qf->nnotes; i++)
        if ((qf->notes[i].qkey == key && qf->notes[i].pid == pid) ||
            now - qf->notes[i].at_ms > RM_NOTE_MS) {
            slot = i;
            break;
        }
    qf->notes[slot] = (struct rmnote){ key, pid, now };
    pthread_mutex_unlock(&qf->ctx.mu);
}

static int noted_rm(qfront_t *qf, uint64_t key, pid_t pid)
{
    uint64_t now = node_now_ms();
    int found = 0;
    pthread_mutex_lock(&qf->ctx.mu);
    for (unsigned i = 0; i < qf->nnotes; i++)
        if (qf->notes[i].qkey == key && qf->notes[i].pid == pid &&
            now - qf->notes[i].at_ms < RM_NOTE_MS) {
            found = 1;
            qf->notes[i].qkey = 0;
        }
    pthread_mutex_unlock(&qf->ctx.mu);
    return found;
}

static void qf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    qfront_t *qf = QF(req);
    qref_t c;
    char *qname = NULL;
    uint64_t qid = 0;
    int rc = child_ref(qf, parent, name, &c, &qname, &qid);
    pid_t pid = fuse_req_ctx(req)->pid;
    if (rc == 0 && c.kind == QK_DIR) {
        cmdbuf_t b;
        queues_cmd_rmdir(&b, node_now_ms(), qname, noted_rm(qf, qkey(c.shard, qid), pid));
        rc = propose(qf, qname, &b, NULL);
    } else if (rc == 0 && (c.kind == QK_CLAIMED || c.kind == QK_DEAD)) {
        /* These directories are part of the queue: removing them is a no-op when empty
         * (what `rm -r` does after emptying them). */
        state_t *st = qstate(qf, c.shard);
        queue_view_t q;
        pthread_rwlock_rdlock(&st->lock);
        rc = queues_sm_get_qid(st, qid, &q);
        if (rc == 0 && (c.kind == QK_DEAD ? q.dead : q.inflight))
            rc = -ENOTEMPTY;
        pthread_rwlock_unlock(&st->lock);
        if (rc == 0)
            note_rm(qf, qkey(c.shard, qid), pid);
    } else if (rc == 0) {
        rc = -ENOTDIR;
    }
    free(qname);
    fuse_reply_err(req, -rc);
}

static void qf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    qfront_t *qf = QF(req);
    qref_t c, pr;
    char *qname = NULL;
    uint64_t qid = 0;
    int rc = decode(parent, &pr);
    if (rc == 0 && pr.kind == QK_ROOT)
        rc = -EISDIR;
    if (rc == 0)
        rc = child_ref(qf, parent, name, &c, &qname, &qid);
    if (rc == 0) {
        cmdbuf_t b;
        switch (c.kind) {
        case QK_CMSG:
        case QK_DMSG:
            queues_cmd_msg(&b, c.kind == QK_CMSG ? QOP_ACK : QOP_DEADRM, node_now_ms(), qname,
                           c.id);
            rc = propose(qf, qname, &b, NULL);
            break;
        case QK_CLAIMED:
        case QK_DEAD:
            rc = -EISDIR;
            break;
        default:
            break;       /* the control files stay; see note_rm for why this succeeds */
        }
        if (rc == 0)
            note_rm(qf, qkey(c.shard, qid), fuse_req_ctx(req)->pid);
    }
    free(qname);
    fuse_reply_err(req, -rc);
}

static void qf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EPERM);   /* queues and their files cannot be renamed */
}

static void qf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    qref_t pr;
    int rc = decode(parent, &pr);
    fuse_reply_err(req, rc < 0 ? -rc : EPERM);   /* only queues (mkdir) can be created */
}

/* ---------------------------------------------------------------- open files */

static qfh_t *fh_new(qfront_t *qf, int kind)
{
    qfh_t *fh = calloc(1, sizeof(*fh));
    if (fh) {
        fh->qf = qf;
        fh->kind = kind;
        pthread_mutex_init(&fh->mu, NULL);
    }
    return fh;
}

static void fh_free(qfh_t *fh)
{
    if (!fh)
        return;
    free(fh->qname);
    free(fh->buf);
    blob_unref(fh->got);
    free(fh->out);
    free(fh->text);
    dirlist_clear(&fh->dir);
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

static int set_text(qfh_t *fh, const void *p, size_t len, int nl)
{
    fh->text = malloc(len + 1);
    if (!fh->text)
        return -ENOMEM;
    memcpy(fh->text, p, len);
    if (nl)
        fh->text[len++] = '\n';
    fh->tlen = len;
    return 0;
}

/* Takes what a read of r's file returns (its name, peek/len/message text); lock held. */
static int open_locked(const state_t *st, const qref_t *r, qfh_t *fh)
{
    queue_view_t q;
    qmsg_view_t m;
    char tmp[80];
    int rc = resolve(st, r, &q, &m);
    if (rc == 0 && !(fh->qname = strdup(q.name)))
        rc = -ENOMEM;
    if (rc < 0)
        return rc;
    switch (r->kind) {
    case QK_PEEK:
        if (!q.head) {
            fh->text_empty = 1;
            return 0;
        }
        return set_text(fh, q.head->data, q.head->len, 1);
    case QK_LEN:
        return set_text(fh, tmp, (size_t)len_text(&q, tmp, sizeof(tmp)), 0);
    case QK_CMSG:
    case QK_DMSG:
        return set_text(fh, m.data->data, m.data->len, 1);
    default:
        return 0;
    }
}

static int do_open(qfront_t *qf, fuse_ino_t ino, int flags, qfh_t **out)
{
    qref_t r;
    int rc = decode(ino, &r);
    if (rc < 0)
        return rc;
    int acc = flags & O_ACCMODE;
    if (is_dir_kind(r.kind))
        return -EISDIR;
    if (r.kind == QK_PUSH ? acc != O_WRONLY : acc != O_RDONLY)
        return -EPERM;            /* push is write-only; the others are read-only */
    qfh_t *fh = fh_new(qf, r.kind);
    if (!fh)
        return -ENOMEM;
    fh->shard = r.shard;
    fh->qid = r.qid;
    state_t *st = qstate(qf, r.shard);
    pthread_rwlock_rdlock(&st->lock);
    rc = open_locked(st, &r, fh);
    pthread_rwlock_unlock(&st->lock);
    if (rc < 0) {
        fh_free(fh);
        return rc;
    }
    if (r.kind == QK_POP || r.kind == QK_CLAIM) {
        fh->claim = r.kind == QK_CLAIM;
        pthread_mutex_lock(&qf->ctx.mu);
        fh->hid = ++qf->next_hid;
        HASH_ADD(hh, qf->by_hid, hid, sizeof(fh->hid), fh);
        pthread_mutex_unlock(&qf->ctx.mu);
    }
    *out = fh;
    return 0;
}

/* Takes a pop/claim file out of by_hid: no delivery can find it afterwards. */
static void fh_unregister(qfh_t *fh)
{
    if (!fh->hid)
        return;
    pthread_mutex_lock(&fh->qf->ctx.mu);
    HASH_DELETE(hh, fh->qf->by_hid, fh);
    pthread_mutex_unlock(&fh->qf->ctx.mu);
}

static void qf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    qfh_t *fh = NULL;
    int rc = do_open(QF(req), ino, fi->flags, &fh);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)fh;
    fh->opener = fuse_req_ctx(req)->pid;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    fi->nonseekable = fh->kind == QK_POP || fh->kind == QK_CLAIM || fh->kind == QK_PUSH;
    if (fuse_reply_open(req, fi) != 0) {
        fi->fh = 0;
        fh_unregister(fh);
        fh_free(fh);
    }
}

/* ---------------------------------------------------------------- poll */

#define PQID_ANY 0               /* fh->pqid: any queue's EFF_QUEUE_READY wakes the handle */
#define PQID_NONE UINT64_MAX     /* none does: only the delivery of the file's own message */
#define POLL_READ (POLLIN | POLLRDNORM)

/* Takes fh's kept poll handle, and fh off the polled list; qf->ctx.mu held. The caller owns
 * the handle returned (NULL: none was kept). */
static struct fuse_pollhandle *unpoll_locked(qfh_t *fh)
{
    qfront_t *qf = fh->qf;
    struct fuse_pollhandle *ph = fh->ph;
    if (!ph)
        return NULL;
    if (fh->pprev)
        fh->pprev->pnext = fh->pnext;
    else
        qf->polled = fh->pnext;
    if (fh->pnext)
        fh->pnext->pprev = fh->pprev;
    fh->pnext = fh->pprev = NULL;
    fh->ph = NULL;
    return ph;
}

/* Keeps ph for fh, woken as pqid says; returns the handle kept before (the caller destroys
 * it: every handle of one open file names the same kernel file, so the new one wakes all
 * its pollers). qf->ctx.mu held. */
static struct fuse_pollhandle *keep_locked(qfh_t *fh, struct fuse_pollhandle *ph,
                                           uint64_t pqid)
{
    qfront_t *qf = fh->qf;
    struct fuse_pollhandle *old = unpoll_locked(fh);
    fh->ph = ph;
    fh->pqid = pqid;
    fh->pgen++;
    fh->pprev = NULL;
    fh->pnext = qf->polled;
    if (qf->polled)
        qf->polled->pprev = fh;
    qf->polled = fh;
    return old;
}

/* A read of fh would not block any more: notifies its pollers and destroys the handle kept
 * (if any). qf->ctx.mu held; the notification is a write to /dev/fuse that never waits for
 * a request. The kernel ignores one for a file it has released meanwhile. */
static void wake_locked(qfh_t *fh)
{
    struct fuse_pollhandle *ph = unpoll_locked(fh);
    if (ph) {
        fuse_lowlevel_notify_poll(ph);
        fuse_pollhandle_destroy(ph);
    }
}

/* poll(2) on a pop/claim file: what a read would do now. Its message was delivered (or the
 * queue removed, or it already read its one message): ready. A read in progress or an
 * interrupted one still registered (T_PROPOSING, T_WAITING): not ready until this file's
 * message is delivered. Idle: a read would take the head of the queue, so ready while the
 * queue (by name, as the read finds it) has ready messages, or an error when it is gone.
 * When not ready, ph is kept (if given). It is kept before the queue is looked at, so an
 * EFF_QUEUE_READY delivered in between finds it (PQID_ANY until the lookup says which queue;
 * the state lock is never held with qf->ctx.mu). Returns the poll events; ph is kept or
 * destroyed. */
static unsigned take_poll(qfh_t *fh, struct fuse_pollhandle *ph)
{
    qfront_t *qf = fh->qf;
    struct fuse_pollhandle *old = NULL;
    uint64_t gen = 0;
    int idle = 0;
    pthread_mutex_lock(&qf->ctx.mu);
    int done = fh->state == T_HAVE || fh->state == T_DONE || fh->state == T_GONE;
    if (!done) {
        idle = fh->state == T_IDLE;
        if (ph) {
            old = keep_locked(fh, ph, idle ? PQID_ANY : PQID_NONE);
            gen = fh->pgen;
            ph = NULL;
        }
    }
    pthread_mutex_unlock(&qf->ctx.mu);
    fuse_pollhandle_destroy(old);
    if (done || !idle) {
        fuse_pollhandle_destroy(ph);
        return done ? POLL_READ : 0;
    }
    state_t *st = qstate(qf, fh->shard);
    queue_view_t q;
    pthread_rwlock_rdlock(&st->lock);
    int rc = queues_sm_get(st, fh->qname, strlen(fh->qname), &q);
    unsigned ev = rc < 0 ? POLL_READ | POLLERR : q.ready ? POLL_READ : 0;
    uint64_t qid = rc < 0 ? PQID_ANY : q.qid;
    pthread_rwlock_unlock(&st->lock);
    if (gen) {
        pthread_mutex_lock(&qf->ctx.mu);
        if (fh->ph && fh->pgen == gen) {     /* still ours: nobody woke or replaced it */
            if (ev)
                ph = unpoll_locked(fh);
            else
                fh->pqid = qid;
        }
        pthread_mutex_unlock(&qf->ctx.mu);
        fuse_pollhandle_destroy(ph);
    }
    return ev;
}

/* EFF_QUEUE_READY: queue qid has ready messages or is gone; wakes the idle pollers of it. */
static void ready_deliver(qfront_t *qf, uint32_t shard, uint64_t qid)
{
    pthread_mutex_lock(&qf->ctx.mu);
    for (qfh_t *fh = qf->polled, *next; fh; fh = next) {
        next = fh->pnext;
        if (fh->pqid == PQID_ANY || (fh->pqid == qid && fh->shard == shard))
            wake_locked(fh);
    }
    pthread_mutex_unlock(&qf->ctx.mu);
}

static void qf_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                    struct fuse_pollhandle *ph)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    if (!fh || (fh->kind != QK_POP && fh->kind != QK_CLAIM)) {
        fuse_pollhandle_destroy(ph);    /* never blocks: push, peek, len, message files */
        fuse_reply_poll(req, POLL_READ | POLLOUT | POLLWRNORM);
        return;
    }
    fuse_reply_poll(req, take_poll(fh, ph));
}

/* ---------------------------------------------------------------- pop / claim */

/* Replies to req from fh's delivered message; qf->ctx.mu held. */
static void serve_locked(fuse_req_t req, qfh_t *fh, size_t size)
{
    if (fh->state == T_GONE) {
        /* the queue was removed, or this node's session ended while the read waited (the
         * node was stopped or cut off past its lease): the take is no more */
        fuse_reply_err(req, fh->ended ? EIO : ENOENT);
        return;
    }
    if (fh->state != T_HAVE) {
        fuse_reply_buf(req, NULL, 0);     /* one message per open: EOF after it */
        return;
    }
    if (!fh->out) {
        size_t len = fh->got->len;
        char head[32];
        int hl = fh->claim ? snprintf(head, sizeof(head), "%" PRIu64 " ", fh->got_id) : 0;
        fh->out = malloc((size_t)hl + len + 1);
        if (!fh->out) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        memcpy(fh->out, head, (size_t)hl);
        memcpy(fh->out + hl, fh->got->data, len);
        fh->out[(size_t)hl + len] = '\n';
        fh->outlen = (size_t)hl + len + 1;
    }
    size_t n = fh->outlen - fh->outoff;
    if (n > size)
        n = size;
    if (fuse_reply_buf(req, fh->out + fh->outoff, n) == 0) {
        fh->outoff += n;
        if (fh->outoff == fh->outlen)
            fh->state = T_DONE;
    }
}

/* Interrupt callback. A late interrupt may arrive after the open file was released, so it
 * does not trust data: it looks the request up among the front's take files. */
static void take_interrupt(fuse_req_t req, void *data)
{
    INTR_DEFER_IF_REGISTERING();
    (void)data;
    qfront_t *qf = QF(req);
    qfh_t *fh, *tmp;
    pthread_mutex_lock(&qf->ctx.mu);
    HASH_ITER(hh, qf->by_hid, fh, tmp) {
        if (fh->req == req) {
            fh->req = NULL;
            fuse_reply_err(req, EINTR);   /* the waiter stays registered: see QUEUES.md */
            break;
        }
    }
    pthread_mutex_unlock(&qf->ctx.mu);
}

static void end_dead_takes(qfront_t *qf, uint32_t k);

/* nonblock: the descriptor's O_NONBLOCK at this read (fi->flags; fcntl may have changed it
 * since the open). */
static void take_read(fuse_req_t req, qfh_t *fh, size_t size, int nonblock)
{
    qfront_t *qf = fh->qf;
    pthread_mutex_lock(&qf->ctx.mu);
    if (fh->req || fh->state == T_PROPOSING) {
        pthread_mutex_unlock(&qf->ctx.mu);
        fuse_reply_err(req, EBUSY);   /* one read at a time per open file */
        return;
    }
    if (fh->state != T_IDLE && fh->state != T_WAITING) {
        serve_locked(req, fh, size);
        pthread_mutex_unlock(&qf->ctx.mu);
        return;
    }
    int first = fh->state == T_IDLE;
    if (first)
        fh->state = T_PROPOSING;
    uint64_t restores = qf->restores[fh->shard];
    pthread_mutex_unlock(&qf->ctx.mu);
    if (first) {
        uint64_t sid = qsid(qf, fh->shard);
        int rc = -EIO;            /* no session: see fs/session.h */
        for (int attempt = 0; sid && attempt < 2; attempt++) {
            pthread_mutex_lock(&qf->ctx.mu);
            fh->sid = sid;
            uint64_t seen = qf->seen[fh->shard];
            qf->reported[fh->shard] = seen;
            qf->reported_ms[fh->shard] = node_now_ms();
            pthread_mutex_unlock(&qf->ctx.mu);
            cmdbuf_t b;
            queues_cmd_take(&b, node_now_ms(), fh->qname, sid, fh->hid,
                            (uint8_t)((fh->claim ? QTAKE_CLAIM : 0) |
                                      (nonblock ? QTAKE_NOWAIT : 0)), seen, fh->qid);
            rc = propose(qf, fh->qname, &b, NULL);
            if (rc != -ENOLCK)
                break;
            /* our session ended while we were away and is not reopened yet */
            uint64_t now_sid = session_local_refresh(node_session(qf->ctx.node), fh->shard, sid);
            sid = now_sid != sid ? now_sid : 0;
        }
        pthread_mutex_lock(&qf->ctx.mu);
        if (fh->state == T_PROPOSING)
            fh->state = rc < 0 ? T_IDLE : T_WAITING;
        /* a failure the outcome contradicts (a take that committed after all, its message
         * delivered again by a restore meanwhile) is served below instead */
        int failed = rc < 0 && fh->state == T_IDLE;
        if (failed && fh->ph && fh->pqid == PQID_NONE)
            wake_locked(fh);      /* kept while proposing, idle again: poll anew */
        /* a restore while proposing looked only at waiting takes: look at this one now */
        int recheck = fh->state == T_WAITING && qf->restores[fh->shard] != restores;
        pthread_mutex_unlock(&qf->ctx.mu);
        if (failed) {
            fuse_reply_err(req, -rc);
            return;
        }
        if (recheck)
            end_dead_takes(qf, fh->shard);
    }
    /* Park, unless a delivery came meanwhile. The interrupt callback is registered first;
     * an interrupt that came before (deferred) or while the callback could not find the
     * request yet shows in fuse_req_interrupted, checked under qf->ctx.mu before parking. */
    int intr = intr_register(req, take_interrupt, NULL);
    pthread_mutex_lock(&qf->ctx.mu);
    if (fh->state == T_WAITING && nonblock) {
        fuse_reply_err(req, EAGAIN);      /* still registered after an interrupted wait */
    } else if (fh->state == T_WAITING && (intr || fuse_req_interrupted(req))) {
        fuse_reply_err(req, EINTR);       /* the waiter stays registered: see QUEUES.md */
    } else if (fh->state == T_WAITING) {
        fh->req = req;                    /* owned by the table from here on */
        fh->want = size;
    } else {
        serve_locked(req, fh, size);
    }
    pthread_mutex_unlock(&qf->ctx.mu);
}

/* A delivery for a local open file that is gone: give the message back (proposed later, by
 * the background proposer: this runs on the applying thread). */
struct given { char *qname; uint64_t id; };

/* The give-back's outcome (on the background proposer's thread): a failure other than "it
 * is back already" is logged, since the message is then lost (the proposer does not retry). */
static void given_back(void *arg, int rc)
{
    struct given *g = arg;
    if (rc < 0 && rc != -EEXIST)
        fprintf(stderr, "quorumfs: queue %s: message %" PRIu64 " not given back: %s\n",
                g->qname ? g->qname : "?", g->id, strerror(-rc));
    free(g->qname);
    free(g);
}

static void give_back(qfront_t *qf, const effect_t *e)
{
    cmdbuf_t b;
    uint64_t now = node_now_ms();
    if (e->u.qmsg.claim)
        queues_cmd_msg(&b, QOP_RETURN, now, e->u.qmsg.qname, e->u.qmsg.id);
    else
        queues_cmd_unpop(&b, now, e->u.qmsg.qname, e->u.qmsg.id, e->u.qmsg.count,
                         e->u.qmsg.msg->data, e->u.qmsg.msg->len);
    struct given *g = calloc(1, sizeof(*g));
    if (g) {
        g->qname = strdup(e->u.qmsg.qname);
        g->id = e->u.qmsg.id;
    }
    if (session_bg_propose(node_session(qf->ctx.node), e->shard, &b, g ? given_back : NULL,
                           g) < 0) {
        fprintf(stderr, "quorumfs: queue %s: message %" PRIu64 " could not be given back\n",
                e->u.qmsg.qname, e->u.qmsg.id);
        if (g)
            given_back(g, 0);     /* frees it */
    }
}

/* Ends the take of fh (waiting or proposing) with what it got: the message of e, or gone
 * (ended: its session ended, not the queue); answers a parked read and wakes a poller.
 * qf->ctx.mu held. */
static void settle_locked(qfh_t *fh, effect_t *e, int gone, int ended)
{
    if (gone) {
        fh->state = T_GONE;
        fh->ended = ended;
    } else {
        fh->state = T_HAVE;
        fh->got = e->u.qmsg.msg;
        e->u.qmsg.msg = NULL;
        fh->got_id = e->u.qmsg.id;
        fh->got_count = e->u.qmsg.count;
    }
    if (fh->req) {
        fuse_req_t r = fh->req;
        fh->req = NULL;
        serve_locked(r, fh, fh->want);
    }
    wake_locked(fh);
}

static int taking(const qfh_t *fh) { return fh->state == T_PROPOSING || fh->state == T_WAITING; }

/* After a restore of shard k: a take of this node on k waiting as a session that is no
 * longer live had its waiter dropped by a session end in the entries the snapshot replaced
 * (no effect told it): it ends (EIO). Only waiting takes: one still being proposed finds
 * out from its proposal (ENOLCK, then a retry as the new session), and take_read calls
 * this again for it once it waits, if a restore came meanwhile (qf->restores). The
 * sessions are looked up under the state's read lock, which is never held with
 * qf->ctx.mu: the candidates are collected first. */
static void end_dead_takes(qfront_t *qf, uint32_t k)
{
    uint64_t *hids = NULL, *sids = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&qf->ctx.mu);
    for (qfh_t *fh = qf->by_hid; fh; fh = fh->hh.next) {
        if (fh->shard != k || fh->state != T_WAITING || !fh->sid)
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            uint64_t *a = realloc(hids, nc * sizeof(*a));
            if (a)
                hids = a;
            uint64_t *b = a ? realloc(sids, nc * sizeof(*b)) : NULL;
            if (!b)
                break;        /* out of memory: the takes not looked at keep waiting */
            sids = b;
            cap = nc;
        }
        hids[n] = fh->hid;
        sids[n++] = fh->sid;
    }
    pthread_mutex_unlock(&qf->ctx.mu);
    if (!n)
        goto out;
    state_t *st = qstate(qf, k);
    pthread_rwlock_rdlock(&st->lock);
    for (size_t i = 0; i < n; i++)
        if (session_find(&st->sessions, sids[i]))
            sids[i] = 0;          /* live: its waiter (or its delivery) is still to come */
    pthread_rwlock_unlock(&st->lock);
    pthread_mutex_lock(&qf->ctx.mu);
    for (size_t i = 0; i < n; i++) {
        qfh_t *fh;
        HASH_FIND(hh, qf->by_hid, &hids[i], sizeof(hids[i]), fh);
        if (sids[i] && fh && fh->state == T_WAITING && fh->sid == sids[i])
            settle_locked(fh, NULL, 1, 1);
    }
    pthread_mutex_unlock(&qf->ctx.mu);
out:
    free(hids);
    free(sids);
}

/* EFF_RESTORED of shard k: the kept hand-overs were delivered again just before it; takes
 * of dead sessions end, and every poller of k polls anew. */
static void restored(qfront_t *qf, uint32_t k)
{
    pthread_mutex_lock(&qf->ctx.mu);
    qf->restores[k]++;
    for (qfh_t *fh = qf->polled, *next; fh; fh = next) {
        next = fh->pnext;
        if (fh->shard == k)
            wake_locked(fh);      /* polls anew: ready now, or keeps a new handle */
    }
    pthread_mutex_unlock(&qf->ctx.mu);
    end_dead_takes(qf, k);
}

/* EFF_QUEUE_MSG for this mount's session: attach the message to the open file with that
 * handle id and answer its parked read; give a pop's message back when no take of that
 * handle waits for it (the file is gone, or idle after a take whose proposal failed but
 * committed). A redelivery after a restore (again) numbered up to what this front had been
 * given before reached it then, and is ignored; a later one never did, and is handled as a
 * first delivery, except that a claim nobody takes is left to its lease (a RETURN names no
 * owner). No state lock is held. */
static void q_deliver(void *ctx, effect_t *e)
{
    qfront_t *qf = ctx;
    if (e->kind == EFF_QUEUE_READY) {
        ready_deliver(qf, e->shard, e->u.qready.qid);
        return;
    }
    if (e->kind == EFF_RESTORED && e->shard < NODE_SHARDS_MAX) {
        restored(qf, e->shard);
        return;
    }
    if (e->kind != EFF_QUEUE_MSG || e->shard >= NODE_SHARDS_MAX)
        return;
    uint64_t self = qsid(qf, e->shard);
    pthread_mutex_lock(&qf->ctx.mu);
    uint64_t before = qf->seen[e->shard];
    if (e->u.qmsg.seq > before)
        qf->seen[e->shard] = e->u.qmsg.seq;
    if (!self || e->sid != self || (e->u.qmsg.again && e->u.qmsg.seq <= before)) {
        pthread_mutex_unlock(&qf->ctx.mu);
        return;                   /* other nodes' sessions are theirs; a repeat */
    }
    qfh_t *fh;
    HASH_FIND(hh, qf->by_hid, &e->wid, sizeof(e->wid), fh);
    if (fh && taking(fh))
        settle_locked(fh, e, e->u.qmsg.gone, e->u.qmsg.ended);
    else if (!e->u.qmsg.gone && !(e->u.qmsg.again && e->u.qmsg.claim))
        give_back(qf, e);
    pthread_mutex_unlock(&qf->ctx.mu);
}

static void qf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    int nonblock = !!(fi->flags & O_NONBLOCK);
    if (fh->kind == QK_POP || fh->kind == QK_CLAIM)
        take_read(req, fh, size, nonblock);
    else if (fh->kind == QK_PUSH)
        fuse_reply_err(req, EBADF);
    else if (fh->text_empty && nonblock)
        fuse_reply_err(req, EAGAIN);
    else
        front_reply_text(req, &fh->mu, fh->text, fh->tlen, size, off);
}

/* Release of a pop/claim file: cancel its wait, then give back a message committed to it
 * but never read (an interrupted reader). */
static void take_release(qfh_t *fh)
{
    qfront_t *qf = fh->qf;
    pthread_mutex_lock(&qf->ctx.mu);
    int waiting = fh->state == T_WAITING;
    uint64_t seen = qf->seen[fh->shard];
    if (waiting) {
        qf->reported[fh->shard] = seen;
        qf->reported_ms[fh->shard] = node_now_ms();
    }
    pthread_mutex_unlock(&qf->ctx.mu);
    if (waiting) {
        cmdbuf_t b;
        queues_cmd_cancel(&b, node_now_ms(), fh->qname, qsid(qf, fh->shard), fh->hid, seen,
                          fh->qid);
        int rc = propose(qf, fh->qname, &b, NULL);
        if (rc < 0 && rc != -ENOENT)   /* a wait already gone (delivered first): no failure */
            fprintf(stderr, "quorumfs: queue %s: cancel of a waiting read failed: %s\n",
                    fh->qname, strerror(-rc));
    }
    pthread_mutex_lock(&qf->ctx.mu);
    HASH_DELETE(hh, qf->by_hid, fh);
    struct fuse_pollhandle *ph = unpoll_locked(fh);
    int undelivered = fh->state == T_HAVE && fh->outoff == 0;
    pthread_mutex_unlock(&qf->ctx.mu);
    fuse_pollhandle_destroy(ph);
    if (!undelivered)
        return;
    cmdbuf_t b;
    if (fh->claim)
        queues_cmd_msg(&b, QOP_RETURN, node_now_ms(), fh->qname, fh->got_id);
    else
        queues_cmd_unpop(&b, node_now_ms(), fh->qname, fh->got_id, fh->got_count,
                         fh->got->data, fh->got->len);
    int rc = propose(qf, fh->qname, &b, NULL);
    if (rc < 0 && rc != -ENOENT)
        fprintf(stderr, "quorumfs: queue %s: message %" PRIu64 " not given back: %s\n",
                fh->qname, fh->got_id, strerror(-rc));
}

/* ---------------------------------------------------------------- push */

/* Proposes the PUSH being built in *b (if any); b is empty afterwards. */
static int batch_flush(qfh_t *fh, cmdbuf_t *b)
{
    if (!b->p)
        return 0;
    queues_cmd_push_end(b, fh->qid);
    int rc = propose(fh->qf, fh->qname, b, NULL);
    memset(b, 0, sizeof(*b));
    return rc;
}

/* Adds one line to the PUSH being built, proposing the batch first when it is full. */
static int batch_add(qfh_t *fh, cmdbuf_t *b, const void *p, size_t len)
{
    if (len == 0)
        return 0;                /* empty lines are ignored */
    int rc = 0;
    if (b->p && b->len + len > PUSH_BATCH_BYTES)
        rc = batch_flush(fh, b);
    if (!b->p)
        queues_cmd_push(b, node_now_ms(), fh->qname);
    queues_cmd_push_add(b, p, len);
    return rc;
}

static int buf_append(qfh_t *fh, const char *p, size_t len)
{
    if (fh->blen + len > fh->bcap) {
        size_t cap = fh->bcap ? fh->bcap : 4096;
        while (cap < fh->blen + len)
            cap *= 2;
        uint8_t *nb = realloc(fh->buf, cap);
        if (!nb)
            return -ENOMEM;
        fh->buf = nb;
        fh->bcap = cap;
    }
    memcpy(fh->buf + fh->blen, p, len);
    fh->blen += len;
    return 0;
}

/* Splits data into lines; each complete line is committed before this returns. A partial
 * last line waits in fh->buf for the next write or the release. fh->mu held. */
static int push_write(qfh_t *fh, const char *data, size_t size)
{
    cmdbuf_t b;
    memset(&b, 0, sizeof(b));
    int rc = 0, err = 0;
    size_t i = 0;
    while (i < size && rc == 0) {
        const char *nl = memchr(data + i, '\n', size - i);
        size_t seg = nl ? (size_t)(nl - (data + i)) : size - i;
        if (fh->discard) {
            /* Still inside a dropped line: every write() that carries part of it fails
             * (the kernel may have split the first one and reported a short count). */
            err = -fh->discard;
            if (nl)
                fh->discard = 0;
        } else if (fh->blen + seg > QUEUE_MSG_MAX) {
            err = -EFBIG;         /* the line is dropped; the next line starts clean */
            fh->blen = 0;
            fh->discard = nl ? 0 : EFBIG;
        } else if (nl && fh->blen == 0) {
            rc = batch_add(fh, &b, data + i, seg);
        } else {
            rc = buf_append(fh, data + i, seg);
            if (rc == 0 && nl) {
                rc = batch_add(fh, &b, fh->buf, fh->blen);
                fh->blen = 0;
            }
        }
        i += seg + (nl ? 1 : 0);
    }
    if (rc == 0)
        rc = batch_flush(fh, &b);
    free(b.p);
    return rc < 0 ? rc : err;
}

static void qf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    if (fh->kind != QK_PUSH) {
        fuse_reply_err(req, EBADF);
        return;
    }
    /* FILE-API §1 Durability: a write() fails with EIO when the node knows it has no
     * quorum for the queue's shard, at once, so that bash's echo reports it: a last line
     * without a newline would otherwise be buffered, the write() succeed and only the
     * close() fail (complete lines waited for the operation timeout). */
    if (node_quorum_lost(fh->qf->ctx.node, fh->shard)) {
        /* The line this write() continued is dropped whole: its buffered start (else a
         * later close would enqueue a torn message), and, if the write ended inside a
         * line, the rest of that line in later writes (they fail with EIO too). */
        pthread_mutex_lock(&fh->mu);
        fh->blen = 0;
        if (size > 0)
            fh->discard = buf[size - 1] == '\n' ? 0 : EIO;
        pthread_mutex_unlock(&fh->mu);
        fuse_reply_err(req, EIO);
        return;
    }
    pthread_mutex_lock(&fh->mu);
    int rc = push_write(fh, buf, size);
    pthread_mutex_unlock(&fh->mu);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

/* Enqueues the unterminated last line of a push open (at the last close, fsync or release). */
static int push_settle(qfh_t *fh)
{
    pthread_mutex_lock(&fh->mu);
    int rc = 0;
    if (fh->blen && !fh->discard) {
        cmdbuf_t b;
        memset(&b, 0, sizeof(b));
        rc = batch_add(fh, &b, fh->buf, fh->blen);
        if (rc == 0)
            rc = batch_flush(fh, &b);
        free(b.p);
    }
    fh->blen = 0;
    pthread_mutex_unlock(&fh->mu);
    return rc;
}

static void qf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    /* flush comes at every close(), also of a shell's dup'ed descriptor before it writes
     * (see q_flush in fs/mount.c): an unterminated last line is enqueued here only when the
     * closing process holds no other descriptor on this push file; else at release. */
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    int rc = 0;
    pid_t pid = fuse_req_ctx(req)->pid;
    /* ... and not by a child that inherited it (a close-on-exec descriptor is flushed in
     * the child's execve: Python's subprocess did that right after a partial line) while
     * the opener still holds it (/proc/<tid> reads the fd table of tid's process) */
    if (fh->kind == QK_PUSH && !mount_still_open_by(pid, ino) &&
        (pid == fh->opener || !mount_still_open_by(fh->opener, ino)))
        rc = push_settle(fh);
    fuse_reply_err(req, -rc);
}

static void qf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    /* Every complete line is already durable; fsync also commits a pending partial line. */
    fuse_reply_err(req, fh->kind == QK_PUSH ? -push_settle(fh) : 0);
}

static void qf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    qfh_t *fh = (qfh_t *)(uintptr_t)fi->fh;
    if (fh->kind == QK_PUSH) {
        int rc = push_settle(fh);
        if (rc < 0)
            fprintf(stderr, "quorumfs: queue %s: last line at close not enqueued: %s\n",
                    fh->qname, strerror(-rc));
    } else if (fh->kind == QK_POP || fh->kind == QK_CLAIM) {
        take_release(fh);        /* out of by_hid: no delivery reaches fh any more */
    }
    pthread_mutex_lock(&fh->mu);      /* a text reply still being written (qf_read) */
    pthread_mutex_unlock(&fh->mu);
    fh_free(fh);
    fuse_reply_err(req, 0);
}

/* ---------------------------------------------------------------- listings */

struct listing {
    dirlist_t *d;
    int kind;                    /* of the entries: QK_DIR, QK_CMSG or QK_DMSG */
    int rc;
    uint32_t shard;              /* of the state listed */
};

static int list_queue(void *arg, const queue_view_t *q)
{
    struct listing *l = arg;
    l->rc = dirlist_add(l->d, q->name, ino_of(QK_DIR, l->shard, q->qid, 0), S_IFDIR);
    return l->rc;
}

static int list_msg(void *arg, const qmsg_view_t *m)
{
    struct listing *l = arg;
    char num[32];
    snprintf(num, sizeof(num), "%" PRIu64, m->id);
    l->rc = dirlist_add(l->d, num, ino_of(l->kind, l->shard, 0, m->id), S_IFREG);
    return l->rc;
}

/* The entries of directory r (besides . and ..); state lock held. */
/* Lists r in st, the state of shard k (for the root: the queues of that shard). */
static int list_locked(const state_t *st, uint32_t k, const qref_t *r, dirlist_t *d)
{
    queue_view_t q;
    qmsg_view_t m;
    int rc = resolve(st, r, &q, &m);
    struct listing l = { d, 0, 0, k };
    if (rc < 0)
        return rc;
    switch (r->kind) {
    case QK_ROOT:
        queues_sm_each(st, list_queue, &l);
        return l.rc;
    case QK_DIR:
        for (size_t i = 0; i < NCTL && rc == 0; i++) {
            int k = ctl_names[i].kind;
            rc = dirlist_add(d, ctl_names[i].name, ino_of(k, r->shard, q.qid, 0),
                             is_dir_kind(k) ? S_IFDIR : S_IFREG);
        }
        return rc;
    case QK_CLAIMED:
    case QK_DEAD:
        l.kind = r->kind == QK_DEAD ? QK_DMSG : QK_CMSG;
        queues_sm_each_msg(st, q.qid, r->kind == QK_DEAD ? QM_DEAD : QM_INFLIGHT, list_msg, &l);
        return l.rc;
    default:
        return -ENOTDIR;
    }
}

static void qf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    qfront_t *qf = QF(req);
    qref_t r;
    int rc = decode(ino, &r);
    qfh_t *fh = rc == 0 ? fh_new(qf, 0) : NULL;
    if (rc == 0 && !fh)
        rc = -ENOMEM;
    if (rc == 0)
        rc = dirlist_add(&fh->dir, ".", ino, S_IFDIR);
    if (rc == 0)
        rc = dirlist_add(&fh->dir, "..", FUSE_ROOT_ID, S_IFDIR);
    /* the root lists the queues of every shard; anything else is in its queue's shard */
    uint32_t k0 = r.kind == QK_ROOT ? 0 : r.shard;
    uint32_t k1 = r.kind == QK_ROOT ? node_nshards(qf->ctx.node) : r.shard + 1;
    for (uint32_t k = k0; rc == 0 && k < k1; k++) {
        state_t *st = qstate(qf, k);
        pthread_rwlock_rdlock(&st->lock);
        rc = list_locked(st, k, &r, &fh->dir);
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc < 0) {
        fh_free(fh);
        fuse_reply_err(req, -rc);
        return;
    }
    if (r.kind == QK_ROOT)
        dirlist_sort(&fh->dir, 2);
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_open(req, fi) != 0)
        fh_free(fh);
}

static void qf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    dirlist_reply(req, &((qfh_t *)(uintptr_t)fi->fh)->dir, size, off);
}

static void qf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fh_free((qfh_t *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ---------------------------------------------------------------- attributes */

/* touch claimed/<id> extends the lease. */
static void qf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    qfront_t *qf = QF(req);
    qref_t r;
    int rc = decode(ino, &r);
    if (rc == 0 && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
        rc = -EPERM;
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE) && r.kind != QK_PUSH)
        rc = is_dir_kind(r.kind) ? -EISDIR : -EPERM;
    if (rc == 0 && r.kind == QK_CMSG &&
        (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_ATIME |
                   FUSE_SET_ATTR_ATIME_NOW))) {
        char *qname = NULL;
        rc = queue_of_ino(qf, ino, &r, &qname, NULL);
        if (rc == 0) {
            cmdbuf_t b;
            queues_cmd_msg(&b, QOP_EXTEND, node_now_ms(), qname, r.id);
            rc = propose(qf, qname, &b, NULL);
        }
        free(qname);
    }
    struct stat s;
    if (rc == 0)
        rc = do_getattr(qf, ino, &s);
    front_reply_attr(req, rc, &s);
}

/* ---------------------------------------------------------------- xattrs */

/* Queue settings are xattrs of the queue directory. */
static const struct { const char *name; int which; uint64_t lo, hi, dflt; } q_attrs[] = {
    { "user.visibility_timeout", QSET_VT, 1, QUEUE_VT_MAX, QUEUE_VT_DEFAULT },
    { "user.max_deliveries", QSET_MAXDEL, 1, QUEUE_MAXDEL_MAX, QUEUE_MAXDEL_DEFAULT },
    { "user.max_length", QSET_MAXLEN, 0, QUEUE_MAXLEN_MAX, 0 },
};
#define NATTRS (sizeof(q_attrs) / sizeof(q_attrs[0]))

static int attr_index(const char *name)
{
    for (size_t i = 0; i < NATTRS; i++)
        if (strcmp(name, q_attrs[i].name) == 0)
            return (int)i;
    return -1;
}

/* Sets setting a of ino's queue to the decimal value[0..size), or back to its default when
 * value is NULL. notq: the errno for an unknown setting or an inode that is not a queue
 * directory. */
static int set_setting(qfront_t *qf, fuse_ino_t ino, int a, const char *value, size_t size,
                       int notq)
{
    qref_t r;
    char *qname = NULL;
    int rc = queue_of_ino(qf, ino, &r, &qname, NULL);
    if (rc == -EPERM || (rc == 0 && r.kind != QK_DIR) || (rc == 0 && a < 0))
        rc = -notq;
    uint64_t v = a >= 0 ? q_attrs[a].dflt : 0;
    if (rc == 0 && value &&
        (names_parse_uint(value, size, q_attrs[a].hi, &v) < 0 || v < q_attrs[a].lo))
        rc = -EINVAL;
    if (rc == 0) {
        cmdbuf_t b;
        queues_cmd_set(&b, node_now_ms(), qname, (uint8_t)q_attrs[a].which, v);
        rc = propose(qf, qname, &b, NULL);
    }
    free(qname);
    return rc;
}

static void qf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    fuse_reply_err(req, -set_setting(QF(req), ino, attr_index(name), value, size, ENOTSUP));
}

static void qf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    fuse_reply_err(req, -set_setting(QF(req), ino, attr_index(name), NULL, 0, ENODATA));
}

static void qf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    qfront_t *qf = QF(req);
    qref_t r;
    int rc = decode(ino, &r), len = 0, a = attr_index(name);
    char text[32];
    if (rc == 0) {
        state_t *st = qstate(qf, r.shard);
        queue_view_t q = { 0 };
        qmsg_view_t m = { 0 };
        pthread_rwlock_rdlock(&st->lock);
        rc = resolve(st, &r, &q, &m);
        uint64_t vals[NATTRS] = { q.vt_s, q.maxdel, q.maxlen };
        if (rc == 0 && r.kind == QK_DIR && a >= 0)
            len = snprintf(text, sizeof(text), "%" PRIu64, vals[a]);
        else if (rc == 0 && (r.kind == QK_CMSG || r.kind == QK_DMSG) &&
                 strcmp(name, "user.deliveries") == 0)
            len = snprintf(text, sizeof(text), "%" PRIu32, m.count);
        else if (rc == 0)
            rc = -ENODATA;
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        front_reply_xattr(req, text, (size_t)len, size);
}

static void qf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    static const char dir_list[] =
        "user.visibility_timeout\0user.max_deliveries\0user.max_length";
    static const char msg_list[] = "user.deliveries";
    qref_t r;
    int rc = decode(ino, &r);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else if (r.kind == QK_DIR)
        front_reply_xattr(req, dir_list, sizeof(dir_list), size);
    else if (r.kind == QK_CMSG || r.kind == QK_DMSG)
        front_reply_xattr(req, msg_list, sizeof(msg_list), size);
    else
        front_reply_xattr(req, "", 0, size);
}

static const struct fuse_lowlevel_ops queues_fuse = {
    .lookup = qf_lookup,
    .getattr = qf_getattr,
    .setattr = qf_setattr,
    .mkdir = qf_mkdir,
    .unlink = qf_unlink,
    .rmdir = qf_rmdir,
    .rename = qf_rename,
    .create = qf_create,
    .open = qf_open,
    .read = qf_read,
    .write = qf_write,
    .flush = qf_flush,
    .release = qf_release,
    .fsync = qf_fsync,
    .opendir = qf_opendir,
    .readdir = qf_readdir,
    .releasedir = qf_releasedir,
    .setxattr = qf_setxattr,
    .getxattr = qf_getxattr,
    .listxattr = qf_listxattr,
    .removexattr = qf_removexattr,
    .poll = qf_poll,
};

/* ---------------------------------------------------------------- leader side */

/* Leases due at now, of the first queue that has some (at most SWEEP_IDS). */
struct due {
    const state_t *st;
    uint64_t now;
    char *qname;
    uint64_t ids[SWEEP_IDS];
    uint32_t n;
};

static int due_msg(void *arg, const qmsg_view_t *m)
{
    struct due *d = arg;
    if (m->expires_ms <= d->now)
        d->ids[d->n++] = m->id;
    return d->n == SWEEP_IDS;
}

static int due_queue(void *arg, const queue_view_t *q)
{
    struct due *d = arg;
    if (q->inflight)
        queues_sm_each_msg(d->st, q->qid, QM_INFLIGHT, due_msg, d);
    if (d->n && !(d->qname = strdup(q->name)))
        d->n = 0;
    return d->n > 0;
}

/* Proposes EXPIRE for leases that passed their end; apply re-checks each against the
 * command's time, so a touch committed in between wins. */
static void sweep_shard(qfront_t *qf, uint32_t k)
{
    state_t *st = qstate(qf, k);
    uint64_t now = node_now_ms();
    if (!node_is_leader(qf->ctx.node, k))
        return;   /* lease expiry is the leader's */
    for (int round = 0; round < 64; round++) {
        struct due d = { .st = st, .now = now };
        pthread_rwlock_rdlock(&st->lock);
        queues_sm_each(st, due_queue, &d);
        pthread_rwlock_unlock(&st->lock);
        if (!d.n)
            return;
        cmdbuf_t b;
        queues_cmd_expire(&b, now, d.qname, d.n, d.ids);
        int rc = node_propose(qf->ctx.node, k, &b, NULL);
        free(d.qname);
        if (rc < 0) {
            fprintf(stderr, "quorumfs: queue lease expiry not committed: %s\n", strerror(-rc));
            return;
        }
    }
}

#define REPORT_IDLE_MS 250

/* Every node: hand-overs this node collected stay kept in the state until its session
 * reports them seen, which every TAKE and CANCEL does. When none has for REPORT_IDLE_MS
 * and the state still keeps some up to what this front was given (readers that took one
 * message and went away), a CANCEL of handle 0 reports it alone, in the background. */
struct report { qfront_t *qf; uint32_t k; uint64_t seen; };

/* A report's outcome (background proposer's thread): one that failed (a leader change)
 * is made again at a later sweep, not left until the next take. The front outlives the
 * proposer (it stops first, at node close). */
static void reported(void *arg, int rc)
{
    struct report *r = arg;
    if (rc < 0) {
        pthread_mutex_lock(&r->qf->ctx.mu);
        if (r->qf->reported[r->k] == r->seen)
            r->qf->reported[r->k] = 0;
        pthread_mutex_unlock(&r->qf->ctx.mu);
    }
    free(r);
}

static void report_seen(qfront_t *qf, uint32_t k)
{
    uint64_t sid = qsid(qf, k), now = node_now_ms();
    pthread_mutex_lock(&qf->ctx.mu);
    uint64_t seen = qf->seen[k];
    int due = sid && seen > qf->reported[k] && now - qf->reported_ms[k] >= REPORT_IDLE_MS;
    pthread_mutex_unlock(&qf->ctx.mu);
    if (!due)
        return;
    state_t *st = qstate(qf, k);
    pthread_rwlock_rdlock(&st->lock);
    uint32_t kept = queues_sm_kept(st, sid, seen);
    pthread_rwlock_unlock(&st->lock);
    pthread_mutex_lock(&qf->ctx.mu);
    if (seen > qf->reported[k]) {
        qf->reported[k] = seen;
        qf->reported_ms[k] = now;
    }
    pthread_mutex_unlock(&qf->ctx.mu);
    if (!kept)
        return;
    cmdbuf_t b;
    queues_cmd_cancel(&b, now, "", sid, 0, seen, 0);
    struct report *r = malloc(sizeof(*r));
    if (r)
        *r = (struct report){ qf, k, seen };
    if (session_bg_propose(node_session(qf->ctx.node), k, &b, r ? reported : NULL, r) < 0 && r)
        reported(r, -ENOTCONN);
}

static void q_sweep(void *ctx)
{
    qfront_t *qf = ctx;
    for (uint32_t k = 0; k < node_nshards(qf->ctx.node); k++) {
        sweep_shard(qf, k);
        report_seen(qf, k);
    }
}

static void *q_start(struct node *n)
{
    _Static_assert(offsetof(qfront_t, ctx) == 0, "front_ctx_new makes the head of the context");
    return front_ctx_new(sizeof(qfront_t), n);
}

/* At node close no request, delivery or release reaches the front any more, and the FUSE
 * session is gone: the poll handles still kept (files left open at unmount) are destroyed,
 * never notified. */
static void q_stop(void *ctx)
{
    qfront_t *qf = ctx;
    pthread_mutex_lock(&qf->ctx.mu);
    while (qf->polled)
        fuse_pollhandle_destroy(unpoll_locked(qf->polled));
    pthread_mutex_unlock(&qf->ctx.mu);
    front_ctx_free(qf);
}

/* The cycle of a producer or consumer (open push/pop/claim, write or read, close) needs no
 * read barrier before its lookup and open (fs/ns.h barrier_free): those files exist exactly
 * while their queue does, and what comes next is a proposal (a PUSH, or a TAKE whose apply
 * on the leader decides what it gets), which fails with ENOENT on a queue removed meanwhile
 * on another node. So a node that has not applied that removal yet may still open such a
 * file, and the write or read then fails instead. The other entries (peek, len, claimed/,
 * dead/) read the queue's state and keep the barrier. Without it, every cycle paid three
 * barriers, two of them on one dentry that the kernel looks up for one opener at a time
 * (push gives a new inode per lookup), so producers on a cluster were served one at a time
 * (docs/PERFORMANCE.md "The cluster against etcd"). */
static int take_or_push(int kind)
{
    return kind == QK_PUSH || kind == QK_POP || kind == QK_CLAIM;
}

static int q_barrier_free(fuse_ino_t ino, const char *name, int open)
{
    qref_t r;
    if (decode(ino, &r) < 0)
        return 0;
    if (name) {
        if (r.kind != QK_DIR)
            return 0;
        for (size_t i = 0; i < NCTL; i++)
            if (strcmp(name, ctl_names[i].name) == 0)
                return take_or_push(ctl_names[i].kind);
        return 0;
    }
    return open && take_or_push(r.kind);
}

const ns_front_t queues_front = {
    .start = q_start,
    .sweep = q_sweep,
    .stop = q_stop,
    .deliver = q_deliver,
    .fuse = &queues_fuse,
    .barrier_free = q_barrier_free,
};
