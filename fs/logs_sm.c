/* fs/logs_sm.c — the logs/ state machine (see logs_sm.h, docs/LOGS.md). Logs live in a
 * named-object table (fs/ntable.h, creation order). The replicated state of a log is its
 * settings and the index of its retained segments; the bytes are in files under the
 * directory bound to the shard:
 *
 *   <dir>/<log id, 16 hex>/<base offset, 16 hex>.seg   the active segment, raw
 *   <dir>/<log id, 16 hex>/<base offset, 16 hex>.lz4   a sealed segment, lz4 blocks
 *
 * A sealed file: a 32-byte header (magic "QLOGSEG1", u32 block size, u32 blocks, u64 raw
 * length, u32 CRC32C of the raw bytes, u32 CRC32C of the 28 bytes before it), a table of
 * blocks + 1 u64 file offsets (block k is [off[k], off[k+1])), then the blocks: each
 * LOGS_BLOCK raw bytes (the last may be shorter) compressed alone with LZ4, or stored raw
 * when that is not smaller (a block whose stored length equals its raw length is raw).
 *
 * Determinism: the index changes only in apply, from the command and its time; file
 * operations at apply are pwrite at a fixed offset (idempotent), whole-file seal and
 * unlink, so a replay after a crash rewrites the same bytes. A file error at apply cannot
 * change the index (other replicas did not fail): the log is marked broken on this node
 * only, and its reads and this node's snapshots fail with EIO until a restore rewrites it.
 * Out of memory aborts (x* allocators); a command is validated whole before it changes
 * anything. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lz4.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cluster/assert.h"
#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "fs/logs_sm.h"
#include "fs/names.h"
#include "fs/ntable.h"

#define LGSNAP_VERSION 1
#define LOGS_BLOCK (64u << 10)            /* raw bytes of a sealed file's block */
#define SEG_HDR 32
#define SEG_MAGIC "QLOGSEG1"
#define SEGS_MAX (1u << 24)               /* segments of one log a snapshot may hold */
#define SEG_LEN_MAX (LOGS_SEGMENT_MAX + LOGS_RECORD_MAX)

typedef struct lseg {
    uint64_t base, len;
    uint64_t last_ms;                     /* time of its last record (0: none yet) */
    uint32_t crc;                         /* CRC32C of its bytes */
    uint8_t sealed;
} lseg_t;

typedef struct logobj {
    nentry_t ent;                         /* name, id (ent.id), creation order */
    uint64_t ctime_ms, mtime_ms;
    uint64_t start, end, records;
    uint64_t ret_bytes, ret_s, seg_bytes;
    lseg_t *segs;                         /* retained, in offset order; the last is active */
    uint32_t nseg, cap;
    /* node-local, not replicated */
    int afd;                              /* the active segment's file, or -1 */
    int broken;                           /* a file operation failed on this node */
} logobj_t;

typedef struct lstate {
    ntable_t logs;
    uint64_t next_id;
    int dirfd;                            /* the bound directory (borrowed), or -1 */
} lstate_t;

static lstate_t *LS(const state_t *st) { return st->ns_state[NS_LOGS]; }
static logobj_t *log_of(nentry_t *e) { return e ? NTABLE_OBJ(e, logobj_t, ent) : NULL; }

/* ---------------------------------------------------------------- directory bindings */

/* Which directory each shard's segment files live in. A process-wide table keyed by the
 * shard's address, because the binding must outlive the free + init of a restore; it is
 * node configuration (like the delivery hook), never replicated state. */
typedef struct lbind {
    const state_t *st;
    int dirfd;
    struct lbind *next;
} lbind_t;

static pthread_mutex_t bind_mu = PTHREAD_MUTEX_INITIALIZER;
static lbind_t *binds;

static int bound_dirfd(const state_t *st)
{
    int fd = -1;
    pthread_mutex_lock(&bind_mu);
    for (lbind_t *b = binds; b; b = b->next)
        if (b->st == st)
            fd = b->dirfd;
    pthread_mutex_unlock(&bind_mu);
    return fd;
}

/* Removes everything in directory dfd (log directories and their files). 0 or -errno. */
static int wipe_dir(int dfd, int depth)
{
    int fd = dup(dfd);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return -e;
    }
    rewinddir(d);
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (unlinkat(dfd, de->d_name, 0) == 0)
            continue;
        if ((errno == EISDIR || errno == EPERM) && depth > 0) {
            int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (sub >= 0) {
                int r = wipe_dir(sub, depth - 1);
                close(sub);
                if (r < 0 && !rc)
                    rc = r;
            }
            if (unlinkat(dfd, de->d_name, AT_REMOVEDIR) == 0)
                continue;
        }
        if (!rc)
            rc = -errno;
    }
    closedir(d);
    return rc;
}

/* mkdir -p of path (0755). 0 or -errno. */
static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        buf[i] = c;
    }
    return 0;
}

int logs_sm_bind(state_t *st, const char *dir)
{
    ASSERT(!LS(st) || !LS(st)->logs.n);
    int rc = mkdir_p(dir);
    if (rc < 0)
        return rc;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if ((rc = wipe_dir(fd, 1)) < 0) {
        close(fd);
        return rc;
    }
    logs_sm_unbind(st);
    lbind_t *b = xcalloc(1, sizeof(*b));
    b->st = st;
    b->dirfd = fd;
    pthread_mutex_lock(&bind_mu);
    b->next = binds;
    binds = b;
    pthread_mutex_unlock(&bind_mu);
    if (LS(st))
        LS(st)->dirfd = fd;
    return 0;
}

void logs_sm_unbind(state_t *st)
{
    lbind_t *gone = NULL;
    pthread_mutex_lock(&bind_mu);
    for (lbind_t **p = &binds; *p; p = &(*p)->next)
        if ((*p)->st == st) {
            gone = *p;
            *p = gone->next;
            break;
        }
    pthread_mutex_unlock(&bind_mu);
    if (!gone)
        return;
    if (LS(st) && LS(st)->dirfd == gone->dirfd)
        LS(st)->dirfd = -1;
    close(gone->dirfd);
    free(gone);
}

/* ---------------------------------------------------------------- segment files */

static void log_dirname(char *buf, size_t n, uint64_t id)
{
    snprintf(buf, n, "%016" PRIx64, id);
}

static void seg_path(char *buf, size_t n, uint64_t id, uint64_t base, int sealed,
                     const char *suffix)
{
    snprintf(buf, n, "%016" PRIx64 "/%016" PRIx64 ".%s", id, base,
             suffix ? suffix : sealed ? "lz4" : "seg");
}

/* Notes a file error of log lg on this node (once per log). */
static void log_broken(logobj_t *lg, const char *what, int err)
{
    if (!lg->broken)
        fprintf(stderr, "logs: %s of log %s failed: %s; its reads give EIO on this node until "
                "a restart or snapshot restores it\n", what, lg->ent.name, strerror(err));
    lg->broken = 1;
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Reads exactly n bytes at off; a short file is -EIO. */
static int pread_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Writing a sealed file block by block (at a seal, and at a restore). */
typedef struct segw {
    int fd;
    uint64_t raw_len, pos;
    uint32_t nblocks, k;
    uint64_t *offs;
    uint32_t crc;
    size_t fill;
    uint8_t raw[LOGS_BLOCK];
    char cbuf[LZ4_COMPRESSBOUND(LOGS_BLOCK)];
} segw_t;

static segw_t *segw_open(int fd, uint64_t raw_len)
{
    segw_t *w = xmalloc(sizeof(*w));
    w->fd = fd;
    w->raw_len = raw_len;
    w->nblocks = (uint32_t)((raw_len + LOGS_BLOCK - 1) / LOGS_BLOCK);
    w->offs = xcalloc((size_t)w->nblocks + 1, sizeof(uint64_t));
    w->k = 0;
    w->pos = SEG_HDR + 8ull * (w->nblocks + 1);
    w->crc = 0;
    w->fill = 0;
    return w;
}

static int segw_flush_block(segw_t *w)
{
    if (w->fill == 0)
        return 0;
    if (w->k >= w->nblocks)
        return -EIO;
    int c = LZ4_compress_default((const char *)w->raw, w->cbuf, (int)w->fill,
                                 (int)sizeof(w->cbuf));
    const void *p = w->cbuf;
    size_t n = (size_t)c;
    if (c <= 0 || (size_t)c >= w->fill) {
        p = w->raw;
        n = w->fill;
    }
    int rc = pwrite_all(w->fd, p, n, w->pos);
    w->offs[w->k++] = w->pos;
    w->pos += n;
    w->fill = 0;
    return rc;
}

static int segw_put(segw_t *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    w->crc = crc32c(w->crc, p, n);
    while (n > 0) {
        size_t take = LOGS_BLOCK - w->fill;
        if (take > n)
            take = n;
        memcpy(w->raw + w->fill, b, take);
        w->fill += take;
        b += take;
        n -= take;
        if (w->fill == LOGS_BLOCK) {
            int rc = segw_flush_block(w);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Writes the last block, the table and the header; frees w (not its fd). */
static int segw_finish(segw_t *w)
{
    int rc = segw_flush_block(w);
    if (rc == 0 && w->k != w->nblocks)
        rc = -EIO;
    if (rc == 0) {
        w->offs[w->nblocks] = w->pos;
        uint8_t hdr[SEG_HDR];
        memcpy(hdr, SEG_MAGIC, 8);
        le_put32(hdr + 8, LOGS_BLOCK);
        le_put32(hdr + 12, w->nblocks);
        le_put64(hdr + 16, w->raw_len);
        le_put32(hdr + 24, w->crc);
        le_put32(hdr + 28, crc32c(0, hdr, 28));
        size_t tn = 8ull * (w->nblocks + 1);
        uint8_t *t = xmalloc(tn);
        for (uint32_t i = 0; i <= w->nblocks; i++)
            le_put64(t + 8ull * i, w->offs[i]);
        rc = pwrite_all(w->fd, t, tn, SEG_HDR);
        if (rc == 0)
            rc = pwrite_all(w->fd, hdr, SEG_HDR, 0);
        free(t);
    }
    free(w->offs);
    free(w);
    return rc;
}

/* Reading one segment's bytes by offset, from its file. */
typedef struct segr {
    int fd;
    int sealed;
    uint64_t len;
    uint32_t nblocks;
    int64_t cached;                       /* block held in raw, or -1 */
    uint8_t raw[LOGS_BLOCK];
    char cbuf[LOGS_BLOCK];
} segr_t;

/* Opens segment s of log lg for reading. 0 and *out, or -errno (-EIO for a sealed file
 * whose header does not describe s). */
static int segr_open(int dirfd, const logobj_t *lg, const lseg_t *s, segr_t **out)
{
    char path[64];
    seg_path(path, sizeof(path), lg->ent.id, s->base, s->sealed, NULL);
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    segr_t *r = xmalloc(sizeof(*r));
    r->fd = fd;
    r->sealed = s->sealed;
    r->len = s->len;
    r->cached = -1;
    r->nblocks = 0;
    if (s->sealed) {
        uint8_t hdr[SEG_HDR];
        int rc = pread_all(fd, hdr, SEG_HDR, 0);
        if (rc == 0 && (memcmp(hdr, SEG_MAGIC, 8) || le_get32(hdr + 8) != LOGS_BLOCK ||
                        le_get64(hdr + 16) != s->len || le_get32(hdr + 24) != s->crc ||
                        le_get32(hdr + 28) != crc32c(0, hdr, 28) ||
                        le_get32(hdr + 12) != (s->len + LOGS_BLOCK - 1) / LOGS_BLOCK))
            rc = -EIO;
        if (rc < 0) {
            close(fd);
            free(r);
            return rc;
        }
        r->nblocks = le_get32(hdr + 12);
    }
    *out = r;
    return 0;
}

static void segr_close(segr_t *r)
{
    if (r) {
        close(r->fd);
        free(r);
    }
}

/* The raw length of block k of a sealed segment. */
static size_t segr_block_len(const segr_t *r, uint32_t k)
{
    return (uint64_t)k + 1 < r->nblocks ? LOGS_BLOCK : (size_t)(r->len - (uint64_t)k * LOGS_BLOCK);
}

/* Decodes block k of a sealed file into dst (segr_block_len bytes). 0 or -errno. */
static int segr_decode(segr_t *r, uint32_t k, uint8_t *dst)
{
    uint8_t t[16];
    int rc = pread_all(r->fd, t, 16, SEG_HDR + 8ull * k);
    if (rc < 0)
        return rc;
    uint64_t a = le_get64(t), b = le_get64(t + 8);
    size_t want = segr_block_len(r, k);
    if (b < a || b - a > want)
        return -EIO;
    size_t clen = (size_t)(b - a);
    if (clen == want)
        return pread_all(r->fd, dst, clen, a);
    rc = pread_all(r->fd, r->cbuf, clen, a);
    if (rc == 0 && LZ4_decompress_safe(r->cbuf, (char *)dst, (int)clen, (int)want) != (int)want)
        rc = -EIO;
    return rc;
}

/* Loads block k of a sealed file into r->raw. 0 or -errno. */
static int segr_block(segr_t *r, uint32_t k)
{
    if (r->cached == (int64_t)k)
        return 0;
    int rc = segr_decode(r, k, r->raw);
    r->cached = rc == 0 ? (int64_t)k : -1;
    return rc;
}

/* Reads n bytes at offset off of the segment (off + n <= its length). 0 or -errno. */
static int segr_read(segr_t *r, uint64_t off, void *buf, size_t n)
{
    if (off + n > r->len)
        return -EIO;
    if (!r->sealed)
        return pread_all(r->fd, buf, n, off);
    uint8_t *b = buf;
    while (n > 0) {
        uint32_t k = (uint32_t)(off / LOGS_BLOCK);
        size_t in = (size_t)(off % LOGS_BLOCK);
        size_t take = LOGS_BLOCK - in;
        if (take > n)
            take = n;
        int rc;
        if (in == 0 && take == segr_block_len(r, k) && r->cached != (int64_t)k) {
            rc = segr_decode(r, k, b);     /* a whole block: straight into the caller's */
            if (rc < 0)
                return rc;
        } else {
            rc = segr_block(r, k);
            if (rc < 0)
                return rc;
            memcpy(b, r->raw + in, take);
        }
        b += take;
        n -= take;
        off += take;
    }
    return 0;
}

/* The active segment's file of lg, opened (and created) on demand. -1 and errno on error. */
static int active_fd(lstate_t *ls, logobj_t *lg)
{
    if (lg->afd >= 0)
        return lg->afd;
    char path[64];
    log_dirname(path, sizeof(path), lg->ent.id);
    if (mkdirat(ls->dirfd, path, 0755) < 0 && errno != EEXIST)
        return -1;
    const lseg_t *s = &lg->segs[lg->nseg - 1];
    seg_path(path, sizeof(path), lg->ent.id, s->base, 0, NULL);
    lg->afd = openat(ls->dirfd, path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    return lg->afd;
}

static void close_active(logobj_t *lg)
{
    if (lg->afd >= 0)
        close(lg->afd);
    lg->afd = -1;
}

/* Compresses the active segment's raw file into its sealed file and removes the raw one.
 * 0 or -errno. */
static int seal_file(lstate_t *ls, logobj_t *lg, const lseg_t *s)
{
    char raw[64], tmp[64], fin[64];
    seg_path(raw, sizeof(raw), lg->ent.id, s->base, 0, NULL);
    seg_path(tmp, sizeof(tmp), lg->ent.id, s->base, 1, "tmp");
    seg_path(fin, sizeof(fin), lg->ent.id, s->base, 1, NULL);
    int in = lg->afd >= 0 ? dup(lg->afd) : openat(ls->dirfd, raw, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = openat(ls->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return -e;
    }
    segw_t *w = segw_open(out, s->len);
    uint8_t *buf = xmalloc(LOGS_BLOCK);
    int rc = 0;
    for (uint64_t off = 0; off < s->len && rc == 0; off += LOGS_BLOCK) {
        size_t n = s->len - off < LOGS_BLOCK ? (size_t)(s->len - off) : LOGS_BLOCK;
        rc = pread_all(in, buf, n, off);
        if (rc == 0)
            rc = segw_put(w, buf, n);
    }
    uint32_t crc = w->crc;
    int rc2 = segw_finish(w);
    rc = rc ? rc : rc2;
    if (rc == 0 && crc != s->crc)
        rc = -EIO;
    free(buf);
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && renameat(ls->dirfd, tmp, ls->dirfd, fin) < 0)
        rc = -errno;
    if (rc < 0)
        unlinkat(ls->dirfd, tmp, 0);
    else
        unlinkat(ls->dirfd, raw, 0);
    return rc;
}

/* Removes segment s's file (a missing one is fine). */
static void seg_unlink(lstate_t *ls, const logobj_t *lg, const lseg_t *s)
{
    char path[64];
    seg_path(path, sizeof(path), lg->ent.id, s->base, s->sealed, NULL);
    unlinkat(ls->dirfd, path, 0);
}

/* ---------------------------------------------------------------- the table */

static logobj_t *find_log(const lstate_t *ls, const char *name, size_t len)
{
    return log_of(ntable_find(&ls->logs, name, len));
}

static void push_seg(logobj_t *lg, uint64_t base)
{
    if (lg->nseg == lg->cap) {
        lg->cap = lg->cap ? lg->cap * 2 : 4;
        lg->segs = xrealloc(lg->segs, lg->cap * sizeof(*lg->segs));
    }
    lg->segs[lg->nseg++] = (lseg_t){ .base = base };
}

static logobj_t *log_add(lstate_t *ls, const char *name, size_t len, uint64_t id)
{
    logobj_t *lg = xcalloc(1, sizeof(*lg));
    ntable_add(&ls->logs, &lg->ent, name, len, id);
    lg->seg_bytes = LOGS_SEGMENT_DEFAULT;
    lg->afd = -1;
    return lg;
}

/* Unlinks lg from the table and frees it; with files, removes its files too. */
static void log_del(lstate_t *ls, logobj_t *lg, int files)
{
    close_active(lg);
    if (files && ls->dirfd >= 0) {
        for (uint32_t i = 0; i < lg->nseg; i++)
            seg_unlink(ls, lg, &lg->segs[i]);
        char path[64];
        log_dirname(path, sizeof(path), lg->ent.id);
        int sub = openat(ls->dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (sub >= 0) {     /* leftovers of a failed seal or restore */
            wipe_dir(sub, 0);
            close(sub);
        }
        unlinkat(ls->dirfd, path, AT_REMOVEDIR);
    }
    ntable_del(&ls->logs, &lg->ent);
    free(lg->segs);
    free(lg);
}

static void l_init(state_t *st)
{
    lstate_t *ls = xcalloc(1, sizeof(*ls));
    ls->dirfd = bound_dirfd(st);
    if (ls->dirfd >= 0) {
        int rc = wipe_dir(ls->dirfd, 1);
        if (rc < 0)
            fprintf(stderr, "logs: cannot empty the segment directory: %s\n", strerror(-rc));
    }
    st->ns_state[NS_LOGS] = ls;
}

static void l_free(state_t *st)
{
    lstate_t *ls = LS(st);
    if (!ls)
        return;
    while (ls->logs.head)
        log_del(ls, log_of(ls->logs.head), 0);
    free(ls);
    st->ns_state[NS_LOGS] = NULL;
}

/* ---------------------------------------------------------------- apply */

static void result_u64(sm_result_t *res, uint64_t v)
{
    if (res) {
        memcpy(res->data, &v, 8);
        res->len = 8;
    }
}

static void note_grew(effects_t *fx, const logobj_t *lg)
{
    effects_add(fx, EFF_LOG_GREW, NS_LOGS, 0, 0)->u.qready.qid = lg->ent.id;
}

/* Whether the oldest segment of lg goes by its retention at time now. */
static int first_expired(const logobj_t *lg, uint64_t now)
{
    if (lg->nseg < 2)
        return 0;                         /* the active segment never goes */
    const lseg_t *s = &lg->segs[0];
    if (lg->ret_bytes && (lg->end - lg->start) - s->len >= lg->ret_bytes)
        return 1;
    if (lg->ret_s && s->last_ms + lg->ret_s * 1000 <= now)
        return 1;
    return 0;
}

/* Drops the old segments lg's retention lets go at time now; returns how many. */
static uint32_t apply_retention(lstate_t *ls, logobj_t *lg, uint64_t now)
{
    uint32_t n = 0;
    while (first_expired(lg, now)) {
        seg_unlink(ls, lg, &lg->segs[0]);
        memmove(lg->segs, lg->segs + 1, (lg->nseg - 1) * sizeof(*lg->segs));
        lg->nseg--;
        lg->start = lg->segs[0].base;
        n++;
    }
    return n;
}

/* Reads the name field and finds the log: 0 and *out, -EINVAL or -ENOENT. */
static int arg_log(const lstate_t *ls, cmdrd_t *r, logobj_t **out)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    if (r->err || len == 0)
        return -EINVAL;
    *out = find_log(ls, name, len);
    return *out ? 0 : -ENOENT;
}

static int apply_create(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res)
{
    const char *name;
    size_t len = cmd_get_path(r, &name);
    uint8_t excl = cmd_get_u8(r);
    if (r->err || excl > 1 || names_check(name, len, 0) < 0 ||
        (len == strlen(LOGS_FOLLOW) && !memcmp(name, LOGS_FOLLOW, len)))
        return -EINVAL;
    logobj_t *lg = find_log(ls, name, len);
    if (lg) {
        if (excl)
            return -EEXIST;
        result_u64(res, lg->ent.id);
        return 0;
    }
    lg = log_add(ls, name, len, ++ls->next_id);
    lg->ctime_ms = lg->mtime_ms = h->now_ms;
    push_seg(lg, 0);
    char path[32];
    log_dirname(path, sizeof(path), lg->ent.id);
    if (mkdirat(ls->dirfd, path, 0755) < 0 && errno != EEXIST)
        log_broken(lg, "creating the directory", errno);
    result_u64(res, lg->ent.id);
    return 0;
}

/* Seals lg's active segment (its file is compressed) and starts a new empty one. */
static void seal(lstate_t *ls, logobj_t *lg)
{
    lseg_t *s = &lg->segs[lg->nseg - 1];
    if (!lg->broken) {
        int rc = seal_file(ls, lg, s);
        if (rc < 0)
            log_broken(lg, "sealing a segment", -rc);
    }
    close_active(lg);
    s->sealed = 1;
    push_seg(lg, lg->end);
}

static int apply_append(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                        effects_t *fx)
{
    logobj_t *lg;
    int rc = arg_log(ls, r, &lg);
    uint64_t id = cmd_get_u64(r);
    uint64_t at = cmd_get_u64(r);
    const uint8_t *rec;
    size_t len = cmd_get_bytes(r, &rec);
    if (r->err || (rc < 0 && rc != -ENOENT))
        return -EINVAL;
    if (len == 0)
        return -EINVAL;
    if (len > LOGS_RECORD_MAX)
        return -EFBIG;
    if (rc < 0)
        return rc;
    if (id && id != lg->ent.id)
        return -ESTALE;
    if (at != LOGS_AT_END && at != lg->end)
        return -EPERM;
    if (lg->end > (UINT64_MAX >> 2))
        return -EFBIG;
    lseg_t *s = &lg->segs[lg->nseg - 1];
    if (!lg->broken) {
        int fd = active_fd(ls, lg);
        int e = fd < 0 ? -errno : pwrite_all(fd, rec, len, s->len);
        if (e < 0)
            log_broken(lg, "writing a record", -e);
    }
    uint64_t off = lg->end;
    s->len += len;
    s->crc = crc32c(s->crc, rec, len);
    s->last_ms = h->now_ms;
    lg->end += len;
    lg->records++;
    lg->mtime_ms = h->now_ms;
    if (s->len >= lg->seg_bytes)
        seal(ls, lg);
    apply_retention(ls, lg, h->now_ms);
    note_grew(fx, lg);
    result_u64(res, off);
    return 0;
}

static int apply_unlink(lstate_t *ls, cmdrd_t *r, effects_t *fx)
{
    logobj_t *lg;
    int rc = arg_log(ls, r, &lg);
    if (rc < 0)
        return rc;
    note_grew(fx, lg);
    log_del(ls, lg, 1);
    return 0;
}

static int apply_set(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r, effects_t *fx)
{
    logobj_t *lg;
    int rc = arg_log(ls, r, &lg);
    uint8_t which = cmd_get_u8(r);
    uint64_t v = cmd_get_u64(r);
    if (r->err || (rc < 0 && rc != -ENOENT))
        return -EINVAL;
    switch (which) {
    case LGSET_RETENTION_BYTES:
        if (v > LOGS_RETENTION_BYTES_MAX)
            return -EINVAL;
        break;
    case LGSET_RETENTION_S:
        if (v > LOGS_RETENTION_S_MAX)
            return -EINVAL;
        break;
    case LGSET_SEGMENT_BYTES:
        if (v < LOGS_SEGMENT_MIN || v > LOGS_SEGMENT_MAX)
            return -EINVAL;
        break;
    default:
        return -EINVAL;
    }
    if (rc < 0)
        return rc;
    if (which == LGSET_RETENTION_BYTES)
        lg->ret_bytes = v;
    else if (which == LGSET_RETENTION_S)
        lg->ret_s = v;
    else
        lg->seg_bytes = v;
    /* mtime stays the last append's time (a setting is not content; docs/LOGS.md) */
    if (apply_retention(ls, lg, h->now_ms) > 0)
        note_grew(fx, lg);                /* pages below the new start go (logs_pcache.h) */
    return 0;
}

static int apply_trim(lstate_t *ls, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                      effects_t *fx)
{
    logobj_t *lg;
    int rc = arg_log(ls, r, &lg);
    if (rc < 0)
        return rc;
    uint32_t n = apply_retention(ls, lg, h->now_ms);
    if (n > 0)
        note_grew(fx, lg);
    if (res) {
        memcpy(res->data, &n, 4);
        res->len = 4;
    }
    return 0;
}

static int l_apply(state_t *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res,
                   effects_t *fx)
{
    lstate_t *ls = LS(st);
    if (ls->dirfd < 0)
        return -ENOTSUP;
    switch (h->op) {
    case LGOP_CREATE:
        return apply_create(ls, h, r, res);
    case LGOP_APPEND:
        return apply_append(ls, h, r, res, fx);
    case LGOP_UNLINK:
        return apply_unlink(ls, r, fx);
    case LGOP_SET:
        return apply_set(ls, h, r, fx);
    case LGOP_TRIM:
        return apply_trim(ls, h, r, res, fx);
    default:
        return -EINVAL;
    }
}

/* ---------------------------------------------------------------- snapshot */

/* Streams segment s's bytes into o in LOGS_BLOCK chunks, checking them against its CRC. */
static void snap_seg_bytes(const lstate_t *ls, const logobj_t *lg, const lseg_t *s,
                           snapout_t *o)
{
    if (s->len == 0 || o->err)
        return;
    segr_t *rd;
    int rc = lg->broken || ls->dirfd < 0 ? -EIO : segr_open(ls->dirfd, lg, s, &rd);
    if (rc < 0) {
        o->err = -QERR_IO;
        return;
    }
    uint8_t *buf = xmalloc(LOGS_BLOCK);
    uint32_t crc = 0;
    for (uint64_t off = 0; off < s->len && !o->err; off += LOGS_BLOCK) {
        size_t n = s->len - off < LOGS_BLOCK ? (size_t)(s->len - off) : LOGS_BLOCK;
        if (segr_read(rd, off, buf, n) < 0) {
            o->err = -QERR_IO;
            break;
        }
        crc = crc32c(crc, buf, n);
        so_bytes(o, buf, n);
    }
    if (!o->err && crc != s->crc) {
        /* damaged on this node: its reads give EIO from now on, as after a file error (the
         * flag is node-local; snapshot holds the read lock, readers only load it) */
        fprintf(stderr, "logs: a segment file of log %s does not match its checksum; its "
                "reads give EIO on this node until a restart or snapshot restores it\n",
                lg->ent.name);
        __atomic_store_n((int *)&lg->broken, 1, __ATOMIC_RELAXED);
        o->err = -QERR_IO;
    }
    free(buf);
    segr_close(rd);
}

/* The rest of a log's record, after its key: settings, then each segment's index fields
 * followed by its raw bytes. */
static void snap_log(void *arg, snapout_t *o, const nentry_t *e)
{
    const lstate_t *ls = arg;
    const logobj_t *lg = NTABLE_OBJ(e, const logobj_t, ent);
    so_u64(o, lg->ctime_ms);
    so_u64(o, lg->mtime_ms);
    so_u64(o, lg->start);
    so_u64(o, lg->end);
    so_u64(o, lg->records);
    so_u64(o, lg->ret_bytes);
    so_u64(o, lg->ret_s);
    so_u64(o, lg->seg_bytes);
    so_u32(o, lg->nseg);
    for (uint32_t i = 0; i < lg->nseg; i++) {
        const lseg_t *s = &lg->segs[i];
        so_u64(o, s->base);
        so_u64(o, s->len);
        so_u64(o, s->last_ms);
        so_u32(o, s->crc);
        so_u8(o, s->sealed);
        snap_seg_bytes(ls, lg, s, o);
    }
}

static void l_snapshot(const state_t *st, snapout_t *o)
{
    const lstate_t *ls = LS(st);
    so_u32(o, LGSNAP_VERSION);
    so_u64(o, ls->next_id);
    ntable_snapshot(o, &ls->logs, snap_log, (void *)ls);
}

/* Reads segment s's bytes from the snapshot into its file (sealed: compressed as they
 * arrive), checking their CRC. 0 or the latched error. */
static int restore_seg_bytes(lstate_t *ls, logobj_t *lg, const lseg_t *s, snapin_t *in)
{
    if (s->len == 0)
        return in->err;
    char path[64], fin[64];
    seg_path(fin, sizeof(fin), lg->ent.id, s->base, s->sealed, NULL);
    seg_path(path, sizeof(path), lg->ent.id, s->base, s->sealed, "tmp");
    int fd = openat(ls->dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "logs: restore cannot create a segment file: %s\n", strerror(errno));
        return in->err ? in->err : (in->err = -QERR_IO);
    }
    segw_t *w = s->sealed ? segw_open(fd, s->len) : NULL;
    uint8_t *buf = xmalloc(LOGS_BLOCK);
    uint32_t crc = 0;
    int rc = 0;
    for (uint64_t off = 0; off < s->len && rc == 0; off += LOGS_BLOCK) {
        size_t n = s->len - off < LOGS_BLOCK ? (size_t)(s->len - off) : LOGS_BLOCK;
        si_bytes(in, buf, n);
        if (in->err)
            break;
        crc = crc32c(crc, buf, n);
        rc = w ? segw_put(w, buf, n) : pwrite_all(fd, buf, n, off);
    }
    if (w) {
        int rc2 = segw_finish(w);
        rc = rc ? rc : rc2;
    }
    free(buf);
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && !in->err && renameat(ls->dirfd, path, ls->dirfd, fin) < 0)
        rc = -errno;
    if (rc < 0 || in->err)
        unlinkat(ls->dirfd, path, 0);
    if (in->err)
        return in->err;
    if (rc < 0) {
        fprintf(stderr, "logs: restore cannot write a segment file: %s\n", strerror(-rc));
        return in->err = -QERR_IO;
    }
    if (crc != s->crc)
        return si_corrupt(in, "logs: segment bytes do not match their checksum");
    return 0;
}

/* Reads the rest of log k's record and adds it (ntable_restore's fn; arg: the lstate). */
static int restore_log(void *arg, snapin_t *in, const nkey_t *k)
{
    lstate_t *ls = arg;
    if (ls->dirfd < 0)
        return si_corrupt(in, "logs: a log, but the shard has no segment directory");
    logobj_t *lg = log_add(ls, k->name, k->len, k->id);
    lg->ctime_ms = si_u64(in);
    lg->mtime_ms = si_u64(in);
    lg->start = si_u64(in);
    lg->end = si_u64(in);
    lg->records = si_u64(in);
    lg->ret_bytes = si_u64(in);
    lg->ret_s = si_u64(in);
    lg->seg_bytes = si_u64(in);
    uint32_t n = si_u32(in);
    if (in->err)
        return in->err;
    if (n == 0 || n > SEGS_MAX)
        return si_corrupt(in, "logs: a log without segments or with too many");
    char path[32];
    log_dirname(path, sizeof(path), lg->ent.id);
    if (mkdirat(ls->dirfd, path, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "logs: restore cannot create a log directory: %s\n", strerror(errno));
        return in->err = -QERR_IO;
    }
    uint64_t next = lg->start;
    for (uint32_t i = 0; i < n; i++) {
        lseg_t s;
        s.base = si_u64(in);
        s.len = si_u64(in);
        s.last_ms = si_u64(in);
        s.crc = si_u32(in);
        s.sealed = si_u8(in);
        if (in->err)
            return in->err;
        /* what the file writing relies on; logs_sm_verify judges the rest */
        if (s.base != next || s.len > SEG_LEN_MAX || s.sealed > 1 ||
            s.sealed != (i + 1 < n) || (s.sealed && s.len == 0))
            return si_corrupt(in, "logs: segments not contiguous, too long or sealed out "
                                  "of place");
        push_seg(lg, s.base);
        lg->segs[lg->nseg - 1] = s;
        next = s.base + s.len;
        int rc = restore_seg_bytes(ls, lg, &lg->segs[lg->nseg - 1], in);
        if (rc < 0)
            return rc;
    }
    return in->err;
}

/* Reads the section, then rejects it (si_corrupt, naming the reason) unless it passes
 * logs_sm_verify. */
static int l_restore(state_t *st, snapin_t *in)
{
    lstate_t *ls = LS(st);
    if (si_u32(in) != LGSNAP_VERSION)
        return in->err ? in->err : -QERR_FORMAT;
    ls->next_id = si_u64(in);
    int rc = ntable_restore(&ls->logs, in, ls->next_id, "logs", restore_log, ls);
    if (rc < 0)
        return rc;
    const char *why = logs_sm_verify(st);
    if (why)
        return si_corrupt(in, why);
    /* any log may have grown or gone meanwhile: followers re-check them all (state.c
     * delivers a restore's effects as apply's) */
    effects_add(&st->outbox, EFF_LOG_GREW, NS_LOGS, 0, 0)->u.qready.qid = LOGS_ALL_IDS;
    return 0;
}

/* ---------------------------------------------------------------- invariants */

static const char *verify_log(const state_t *st, const logobj_t *lg)
{
    const char *why = NULL;
    SM_VERIFY(&why, names_check(lg->ent.name, lg->ent.namelen, 0) == 0 &&
                    strcmp(lg->ent.name, LOGS_FOLLOW) != 0, "logs: an invalid or reserved name");
    SM_VERIFY(&why, lg->ctime_ms <= lg->mtime_ms && lg->mtime_ms <= st->now_ms,
              "logs: times out of order or in the future");
    SM_VERIFY(&why, lg->ret_bytes <= LOGS_RETENTION_BYTES_MAX &&
                    lg->ret_s <= LOGS_RETENTION_S_MAX &&
                    lg->seg_bytes >= LOGS_SEGMENT_MIN && lg->seg_bytes <= LOGS_SEGMENT_MAX,
              "logs: a setting out of range");
    SM_VERIFY(&why, lg->nseg >= 1 && lg->nseg <= lg->cap && lg->segs,
              "logs: a log without segments");
    if (why)
        return why;
    SM_VERIFY(&why, lg->segs[0].base == lg->start, "logs: the first segment is not at start");
    for (uint32_t i = 0; i < lg->nseg && !why; i++) {
        const lseg_t *s = &lg->segs[i];
        int last = i + 1 == lg->nseg;
        SM_VERIFY(&why, last || s[1].base == s->base + s->len, "logs: segments not contiguous");
        SM_VERIFY(&why, s->sealed == !last, "logs: the active segment is not the last");
        SM_VERIFY(&why, !s->sealed || s->len > 0, "logs: an empty sealed segment");
        SM_VERIFY(&why, s->len <= SEG_LEN_MAX, "logs: a segment over the size limit");
        SM_VERIFY(&why, s->last_ms <= st->now_ms, "logs: a record from the future");
        SM_VERIFY(&why, s->len > 0 || s->crc == 0, "logs: an empty segment with a checksum");
    }
    const lseg_t *a = &lg->segs[lg->nseg - 1];
    SM_VERIFY(&why, a->base + a->len == lg->end, "logs: the last segment does not end at end");
    SM_VERIFY(&why, lg->records <= lg->end &&
                    lg->records >= (lg->end + LOGS_RECORD_MAX - 1) / LOGS_RECORD_MAX,
              "logs: a record count that the bytes cannot hold");
    return why;
}

const char *logs_sm_verify(const state_t *st)
{
    const lstate_t *ls = LS(st);
    const char *why = NULL;
    for (const nentry_t *e = ls->logs.head; e && !why; e = e->next) {
        SM_VERIFY(&why, e->id <= ls->next_id, "logs: a log id above next_id");
        if (!why)
            why = verify_log(st, NTABLE_OBJ(e, const logobj_t, ent));
    }
    SM_VERIFY(&why, ls->dirfd >= 0 || !ls->logs.n, "logs: logs without a segment directory");
    return why;
}

void logs_sm_check(const state_t *st)
{
    ntable_check(&LS(st)->logs);
    SM_ASSERT_VERIFIED(logs_sm_verify(st));
}

/* ---------------------------------------------------------------- read API */

static void view_log(const logobj_t *lg, log_view_t *v)
{
    memset(v, 0, sizeof(*v));
    v->id = lg->ent.id;
    v->name = lg->ent.name;
    v->ctime_ms = lg->ctime_ms;
    v->mtime_ms = lg->mtime_ms;
    v->start = lg->start;
    v->end = lg->end;
    v->records = lg->records;
    v->retention_bytes = lg->ret_bytes;
    v->retention_s = lg->ret_s;
    v->segment_bytes = lg->seg_bytes;
    v->segments = lg->nseg;
    v->sealed = lg->nseg - 1;
    v->disk_bytes = lg->end - lg->start;
    v->broken = lg->broken;
}

int logs_sm_get(const state_t *st, const char *name, size_t len, log_view_t *v)
{
    const logobj_t *lg = find_log(LS(st), name, len);
    if (!lg)
        return -ENOENT;
    view_log(lg, v);
    return 0;
}

int logs_sm_get_id(const state_t *st, uint64_t id, log_view_t *v)
{
    const logobj_t *lg = log_of(ntable_find_id(&LS(st)->logs, id));
    if (!lg)
        return -ENOENT;
    view_log(lg, v);
    return 0;
}

int logs_sm_each(const state_t *st, int (*fn)(void *arg, const log_view_t *v), void *arg)
{
    for (const nentry_t *e = LS(st)->logs.head; e; e = e->next) {
        log_view_t v;
        view_log(NTABLE_OBJ(e, const logobj_t, ent), &v);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
    }
    return 0;
}

/* The index of the segment of lg holding offset off (start <= off < end). */
static uint32_t seg_at(const logobj_t *lg, uint64_t off)
{
    uint32_t lo = 0, hi = lg->nseg - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (lg->segs[mid].base <= off)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

long logs_sm_read(const state_t *st, uint64_t id, uint64_t off, void *buf, size_t n)
{
    const lstate_t *ls = LS(st);
    const logobj_t *lg = log_of(ntable_find_id(&ls->logs, id));
    if (!lg)
        return -ENOENT;
    if (off < lg->start)
        return -ESPIPE;
    if (off >= lg->end || n == 0)
        return 0;
    if (lg->broken || ls->dirfd < 0)
        return -EIO;
    if (n > lg->end - off)
        n = (size_t)(lg->end - off);
    if (n > LONG_MAX)
        n = LONG_MAX;
    size_t done = 0;
    for (uint32_t i = seg_at(lg, off); done < n && i < lg->nseg; i++) {
        const lseg_t *s = &lg->segs[i];
        uint64_t in = off + done - s->base;
        size_t take = s->len - in < n - done ? (size_t)(s->len - in) : n - done;
        if (take == 0)
            continue;
        segr_t *rd;
        int rc = segr_open(ls->dirfd, lg, s, &rd);
        if (rc == 0) {
            rc = segr_read(rd, in, (uint8_t *)buf + done, take);
            segr_close(rd);
        }
        if (rc < 0)
            return done ? (long)done : -EIO;
        done += take;
    }
    return (long)done;
}

int logs_sm_trim_due(const state_t *st, uint64_t id, uint64_t now_ms)
{
    const logobj_t *lg = log_of(ntable_find_id(&LS(st)->logs, id));
    return lg && first_expired(lg, now_ms);
}

/* ---------------------------------------------------------------- encoders */

static void begin(cmdbuf_t *b, uint8_t op, uint64_t now, const char *name)
{
    cmd_begin(b, op, NS_LOGS, now);
    cmd_str(b, name);
}

void logs_cmd_create(cmdbuf_t *b, uint64_t now, const char *name, int excl)
{
    begin(b, LGOP_CREATE, now, name);
    cmd_u8(b, excl ? 1 : 0);
}

void logs_cmd_append(cmdbuf_t *b, uint64_t now, const char *name, uint64_t id, uint64_t at,
                     const void *rec, size_t len)
{
    begin(b, LGOP_APPEND, now, name);
    cmd_u64(b, id);
    cmd_u64(b, at);
    cmd_bytes(b, rec, len);
}

void logs_cmd_unlink(cmdbuf_t *b, uint64_t now, const char *name)
{
    begin(b, LGOP_UNLINK, now, name);
}

void logs_cmd_set(cmdbuf_t *b, uint64_t now, const char *name, uint8_t which, uint64_t value)
{
    begin(b, LGOP_SET, now, name);
    cmd_u8(b, which);
    cmd_u64(b, value);
}

void logs_cmd_trim(cmdbuf_t *b, uint64_t now, const char *name)
{
    begin(b, LGOP_TRIM, now, name);
}

const ns_sm_t logs_sm = {
    .init = l_init,
    .free = l_free,
    .apply = l_apply,
    .snapshot = l_snapshot,
    .restore = l_restore,
    .check = logs_sm_check,
};
