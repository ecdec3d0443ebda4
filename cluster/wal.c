/* cluster/wal.c — the write-ahead log: segment files named by their first index, records
 * [len][crc32c][index][term][payload], a write buffer so one batch costs one pwrite and one
 * fdatasync, a zero-filled tail kept ahead of the active segment's end so that a batch's
 * fdatasync does not change the file size, batch rollback on ENOSPC, and recovery that tells
 * a torn tail (cut off) and the zero tail (kept) from corruption (refused). Format and
 * rules: docs/FORMATS.md, section "WAL". */
#include "cluster/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cluster/crc32c.h"
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/fileio.h"

static const uint8_t seg_magic[8] = { 'Q', 'F', 'S', '-', 'W', 'A', 'L', 0 };

#define BUF_CAP (1u << 20)     /* write buffer; bigger records bypass it */
#define DIRECT_MIN (256u << 10) /* records at least this big are written directly */
#define SEG_NAME_DIGITS 20
/* The zero tail. Every append that grows a file makes its fdatasync write the inode too
 * (ext4: ext4_write_inode under ext4_sync_file), about 70 us of the ~250 us a small batch
 * costs on a virtio disk. So the active segment keeps zeros, written and synced, ahead of
 * its end: a batch overwrites them and its fdatasync flushes data only. When less than
 * TAIL_LOW is left after the batch, the same sync first writes TAIL_CHUNK more zeros (once
 * per ~768 KiB of log: ~1 MiB of extra writing, a few ms, against ~70 us saved on each of
 * the hundreds to thousands of syncs that chunk serves). TAIL_LOW is a quarter chunk, so
 * a buffered batch up to 256 KiB (bigger records are written directly) stays inside the
 * tail. The tail never goes past the configured segment size, and a segment is cut to its
 * used size when it is rolled. A failed extension on a full disk only costs the speed-up:
 * the zeros are cut off again and the next try waits for TAIL_CHUNK more log; and no
 * extension is made while the file system has less than tail_min_free (64 MiB) left. */
#define TAIL_CHUNK (1u << 20)
#define TAIL_LOW (TAIL_CHUNK / 4)
#define TAIL_ALIGN 4096u

typedef struct seg {
    uint64_t first;     /* index of its first record (its name) */
    uint64_t last;      /* index of its last record; first - 1 when empty */
    uint64_t last_term; /* term of its last record; that of the record before it if empty */
    uint64_t size;      /* bytes written to the file (not counting w->buf) */
    uint64_t alloc;     /* file length, >= size: [size, alloc) holds zeros (the zero tail;
                           only the active segment has one, others have alloc == size) */
} seg_t;

struct wal {
    char *dir;
    int dirfd;
    seg_t *segs;      /* oldest first; the last one is the active segment */
    size_t nsegs, cap;
    int fd;           /* active segment opened for writing, -1 when nsegs == 0 */
    uint8_t *buf;     /* pending bytes of the active segment, at file offset size */
    size_t buf_len;
    uint64_t segment_bytes;
    int (*sync_fn)(int fd);
    int failed;
    /* Rollback point of the open batch (appends since the last successful sync). */
    int batch_open;
    size_t batch_nsegs;
    seg_t batch_tail; /* copy of segs[batch_nsegs - 1] when the batch began */
    uint64_t last_off;  /* file offset of the last appended record (active segment) */
    uint32_t last_len;  /* its payload length */
    uint64_t appends, syncs;
    uint64_t tail_retry_at; /* no zero-tail extension before the segment's end reaches this
                               (set after one failed or was skipped for lack of space) */
    uint64_t tail_min_free;
    hist_t sync_latency;
};

/* ---- little-endian helpers ---- */

/* ---- the scanner (pure: works on bytes in memory) ---- */

typedef int (*rec_fn)(void *arg, size_t off, uint64_t index, uint64_t term, const uint8_t *p,
                      size_t len);

/* Checks the record at off. Returns NULL if it is whole and its CRC matches (filling *rlen,
 * *index, *term), else why it is not. Never reads past n.
 * A header of 24 zero bytes (the zero tail) is never a valid record: it says len 0 and CRC
 * 0, but the CRC32C of its 16 bytes of index and term (all zero) is 0x42709aea, so the check
 * fails; and were it to pass, index 0 is never the expected index (indexes start at 1,
 * wal_append refuses 0), which scan() reports as corruption, never as a record.
 * tests/unit/test_wal.c (zero_header_is_never_a_record) checks both. */
static const char *check_record(const uint8_t *b, size_t n, size_t off, size_t *rlen,
                                uint64_t *index, uint64_t *term)
{
    if (n - off < WAL_RECORD_HEADER)
        return "incomplete record header";
    uint32_t len = le_get32(b + off) & ~WAL_LEN_SYNCED;
    if (len > WAL_MAX_PAYLOAD)
        return "record length out of range";
    if (len > n - off - WAL_RECORD_HEADER)
        return "incomplete record payload";
    if (crc32c(0, b + off + 8, WAL_RECORD_HEADER - 8 + (size_t)len) != le_get32(b + off + 4))
        return "record checksum mismatch";
    *rlen = WAL_RECORD_HEADER + (size_t)len;
    *index = le_get64(b + off + 8);
    *term = le_get64(b + off + 16);
    return NULL;
}

/* Looks for a record with a valid CRC that could belong to this log after the bad bytes at
 * bad: its index must be in [expect, expect + records that fit in between]. The index bound
 * keeps this linear on garbage; a CRC is computed only for plausible headers. With
 * synced_only, only a record carrying the WAL_LEN_SYNCED mark counts. */
static int find_valid_after(const uint8_t *b, size_t n, size_t bad, uint64_t expect,
                            int synced_only, size_t *found)
{
    for (size_t p = bad + 1; p + WAL_RECORD_HEADER <= n; p++) {
        uint32_t raw = le_get32(b + p), len = raw & ~WAL_LEN_SYNCED;
        if (len > n - p - WAL_RECORD_HEADER || (synced_only && !(raw & WAL_LEN_SYNCED)))
            continue;
        uint64_t idx = le_get64(b + p + 8);
        if (idx < expect || idx - expect > (p - bad) / WAL_RECORD_HEADER + 1)
            continue;
        if (crc32c(0, b + p + 8, WAL_RECORD_HEADER - 8 + (size_t)len) == le_get32(b + p + 4)) {
            *found = p;
            return 1;
        }
    }
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
        if (memcmp(p, zeros, k) != 0)
            return 0;
        p += k;
        n -= k;
    }
    return 1;
}

static int scan(const uint8_t *b, size_t n, uint64_t expect_first, uint64_t prev_term,
                int is_last, rec_fn fn, void *arg, wal_scan_t *r)
{
    memset(r, 0, sizeof(*r));
    r->last_term = prev_term;
    if (n < WAL_SEGMENT_HEADER) {
        snprintf(r->why, sizeof(r->why), "incomplete segment header (%zu bytes)", n);
        return -QERR_CORRUPT;
    }
    if (memcmp(b, seg_magic, sizeof(seg_magic)) != 0) {
        snprintf(r->why, sizeof(r->why), "bad magic: not a quorumfs WAL segment");
        return -QERR_CORRUPT;
    }
    uint32_t version = le_get32(b + 8);
    if (version != WAL_VERSION) {
        r->bad_off = 8;
        snprintf(r->why, sizeof(r->why), "unsupported WAL format version %" PRIu32
                 " (this build reads version %d)", version, WAL_VERSION);
        return -QERR_FORMAT;
    }
    if (le_get32(b + 12) != WAL_SEGMENT_HEADER ||
        crc32c(0, b, WAL_SEGMENT_HEADER - 4) != le_get32(b + WAL_SEGMENT_HEADER - 4)) {
        snprintf(r->why, sizeof(r->why), "segment header checksum mismatch");
        return -QERR_CORRUPT;
    }
    uint64_t first = le_get64(b + 16);
    if (first == 0 || (expect_first && first != expect_first)) {
        r->bad_off = 16;
        snprintf(r->why, sizeof(r->why), "segment header first index %" PRIu64
                 " does not match the expected %" PRIu64, first, expect_first);
        return -QERR_CORRUPT;
    }
    r->first_index = first;
    r->last_index = first - 1;

    size_t off = WAL_SEGMENT_HEADER;
    while (off < n) {
        size_t rlen = 0, found;
        uint64_t index = 0, term = 0;
        const char *why = check_record(b, n, off, &rlen, &index, &term);
        if (why) {
            r->bad_off = off;
            r->valid_end = off;
            if (is_last && all_zero(b + off, n - off)) {
                /* the preallocated zero tail (or a tail whose records never reached the
                 * disk): the log ends here, nothing is damaged */
                r->zero_tail = 1;
                snprintf(r->why, sizeof(r->why), "zero-filled tail");
                return 0;
            }
            if (!is_last) {
                snprintf(r->why, sizeof(r->why), "%s (record %" PRIu64 ")", why,
                         r->last_index + 1);
                return -QERR_CORRUPT;
            }
            /* Corruption only if a batch after the bad bytes is known to have been synced:
             * records of the last, unsynced batch may reach the disk in any order when the
             * power fails, so valid records after a bad one prove nothing by themselves. */
            if (find_valid_after(b, n, off, r->last_index + 1, 1, &found)) {
                snprintf(r->why, sizeof(r->why), "%s (record %" PRIu64
                         "), and a synced record follows at offset %zu", why,
                         r->last_index + 1, found);
                return -QERR_CORRUPT;
            }
            snprintf(r->why, sizeof(r->why), "%s", why); /* torn tail */
            return 0;
        }
        if (index != r->last_index + 1 || term < r->last_term) {
            r->bad_off = off;
            r->valid_end = off;
            snprintf(r->why, sizeof(r->why), "record has index %" PRIu64 " term %" PRIu64
                     " where index %" PRIu64 " term >= %" PRIu64 " was expected",
                     index, term, r->last_index + 1, r->last_term);
            return -QERR_CORRUPT;
        }
        if (fn) {
            int rc = fn(arg, off, index, term, b + off + WAL_RECORD_HEADER,
                        rlen - WAL_RECORD_HEADER);
            if (rc) {
                r->valid_end = off;
                return rc;
            }
        }
        r->last_index = index;
        r->last_term = term;
        r->records++;
        off += rlen;
    }
    r->valid_end = off;
    return 0;
}

struct user_cb {
    wal_record_fn fn;
    void *arg;
    uint64_t from;
};

static int user_adapter(void *arg, size_t off, uint64_t index, uint64_t term,
                        const uint8_t *p, size_t len)
{
    struct user_cb *u = arg;
    (void)off;
    if (!u->fn || index < u->from)
        return 0;
    return u->fn(u->arg, index, term, p, len);
}

int wal_scan_buffer(const void *buf, size_t len, uint64_t expect_first, uint64_t prev_term,
                    int is_last, wal_record_fn fn, void *arg, wal_scan_t *res)
{
    struct user_cb u = { fn, arg, 0 };
    return scan(buf, len, expect_first, prev_term, is_last, user_adapter, &u, res);
}

/* ---- files ---- */

static char *seg_path(const wal_t *w, uint64_t first, const char *suffix)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%0*" PRIu64 ".seg%s", w->dir, SEG_NAME_DIGITS, first, suffix) < 0)
        return NULL;
    return p;
}

static int seg_unlink(wal_t *w, uint64_t first)
{
    char name[64];
    snprintf(name, sizeof(name), "%0*" PRIu64 ".seg", SEG_NAME_DIGITS, first);
    if (unlinkat(w->dirfd, name, 0) < 0 && errno != ENOENT)
        return -QERR_IO;
    return 0;
}

static int sync_dir(wal_t *w)
{
    if (fsync(w->dirfd) < 0)
        return -QERR_IO;
    return 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int do_sync(wal_t *w, int fd)
{
    uint64_t t0 = mono_ns();
    int rc = w->sync_fn ? w->sync_fn(fd) : fdatasync(fd);
    hist_add(&w->sync_latency, mono_ns() - t0);
    w->syncs++;
    return rc < 0 ? -QERR_IO : 0;
}

/* Writes header h and payload at off with one pwritev in the common case. */
static int write_direct(int fd, const uint8_t *h, const void *payload, size_t len,
                        uint64_t off)
{
    struct iovec iov[2] = { { (void *)h, WAL_RECORD_HEADER }, { (void *)payload, len } };
    ssize_t n = pwritev(fd, iov, len ? 2 : 1, (off_t)off);
    size_t done;
    int rc;
    if (n < 0 && errno != EINTR)
        return qerr_from_errno(errno);
    done = n < 0 ? 0 : (size_t)n;
    if (done < WAL_RECORD_HEADER) {
        rc = fio_pwrite_all(fd, h + done, WAL_RECORD_HEADER - done, off + done);
        if (rc)
            return rc;
        done = WAL_RECORD_HEADER;
    }
    return fio_pwrite_all(fd, (const uint8_t *)payload + (done - WAL_RECORD_HEADER),
                      len - (done - WAL_RECORD_HEADER), off + done);
}

static int seg_push(wal_t *w, seg_t s)
{
    if (w->nsegs == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        seg_t *n = realloc(w->segs, cap * sizeof(*n));
        if (!n)
            return -QERR_NOMEM;
        w->segs = n;
        w->cap = cap;
    }
    w->segs[w->nsegs++] = s;
    return 0;
}

/* Creates segment `first` durably (temp file, header, fdatasync, rename, fsync dir) and
 * makes it the active one. The previous active segment must be closed already. */
static int seg_create(wal_t *w, uint64_t first, uint64_t prev_term)
{
    uint8_t h[WAL_SEGMENT_HEADER] = { 0 };
    char *tmp = seg_path(w, first, ".tmp"), *path = seg_path(w, first, "");
    int fd = -1, rc = -QERR_NOMEM;
    if (!tmp || !path)
        goto fail;
    memcpy(h, seg_magic, sizeof(seg_magic));
    le_put32(h + 8, WAL_VERSION);
    le_put32(h + 12, WAL_SEGMENT_HEADER);
    le_put64(h + 16, first);
    le_put32(h + 28, crc32c(0, h, WAL_SEGMENT_HEADER - 4));
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = qerr_from_errno(errno);
        goto fail;
    }
    rc = fio_pwrite_all(fd, h, sizeof(h), 0);
    if (rc == 0)
        rc = do_sync(w, fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = qerr_from_errno(errno);
    if (rc == 0)
        rc = sync_dir(w);
    if (rc)
        goto fail;
    rc = seg_push(w, (seg_t){ first, first - 1, prev_term, WAL_SEGMENT_HEADER,
                              WAL_SEGMENT_HEADER });
    if (rc)
        goto fail;
    w->fd = fd;
    free(tmp);
    free(path);
    return 0;
fail:
    if (fd >= 0) {
        close(fd);
        if (tmp)
            unlink(tmp);
        if (path)
            unlink(path);
    }
    free(tmp);
    free(path);
    return rc;
}

static int open_active(wal_t *w)
{
    char *path = seg_path(w, w->segs[w->nsegs - 1].first, "");
    if (!path)
        return -QERR_NOMEM;
    w->fd = open(path, O_WRONLY | O_CLOEXEC);
    free(path);
    return w->fd < 0 ? -QERR_IO : 0;
}

static void close_active(wal_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}

/* Puts the WAL back to its state at the start of the open batch. Returns 0, or -QERR_IO
 * (and the WAL is failed) when that itself fails. */
static int rollback(wal_t *w)
{
    int rc = 0;
    w->buf_len = 0;
    if (!w->batch_open)
        return 0;
    w->batch_open = 0;
    close_active(w);
    while (w->nsegs > w->batch_nsegs) {
        if (seg_unlink(w, w->segs[w->nsegs - 1].first) < 0)
            rc = -QERR_IO;
        w->nsegs--;
    }
    if (rc == 0)
        rc = sync_dir(w);
    if (rc == 0 && w->nsegs > 0) {
        /* the cut drops the zero tail too: on a full disk, that space comes back */
        w->segs[w->nsegs - 1] = w->batch_tail;
        w->segs[w->nsegs - 1].alloc = w->batch_tail.size;
        rc = open_active(w);
        if (rc == 0 && ftruncate(w->fd, (off_t)w->batch_tail.size) < 0)
            rc = -QERR_IO;
        if (rc == 0)
            rc = do_sync(w, w->fd);
    }
    if (rc) {
        w->failed = 1;
        return -QERR_IO;
    }
    return 0;
}

/* Handles an error from a write path: ENOSPC rolls the batch back (the WAL stays usable);
 * anything else fails the WAL. Returns the code to hand to the caller. */
static int write_failed(wal_t *w, int rc)
{
    if (rc == -QERR_NOSPACE) {
        if (rollback(w) < 0)
            return -QERR_IO;
        return -QERR_NOSPACE;
    }
    w->failed = 1;
    w->buf_len = 0;
    return rc == -QERR_NOMEM ? rc : -QERR_IO;
}

static int flush(wal_t *w)
{
    if (!w->buf_len)
        return 0;
    seg_t *s = &w->segs[w->nsegs - 1];
    int rc = fio_pwrite_all(w->fd, w->buf, w->buf_len, s->size);
    if (rc)
        return rc;
    s->size += w->buf_len;
    if (s->alloc < s->size)
        s->alloc = s->size;
    w->buf_len = 0;
    return 0;
}

/* Extends the active segment's zero tail when less than TAIL_LOW would be left past the
 * bytes of the open batch: writes zeros from the file's end (or the batch's end, if that is
 * further) up to a chunk past the batch's end, never past the segment size. The caller's
 * next fdatasync makes them durable. Returns 0 (also when the disk had no room: the zeros
 * written are cut off again, the batch goes on growing the file as without a tail, and no
 * new try is made before TAIL_CHUNK more bytes are logged), or -QERR_IO/-QERR_NOMEM. */
static int tail_extend(wal_t *w)
{
    static uint8_t zeros[64 << 10]; /* never written; not const, so it stays in .bss */
    seg_t *t = &w->segs[w->nsegs - 1];
    uint64_t end = t->size + w->buf_len;
    uint64_t from = t->alloc > end ? t->alloc : end;
    uint64_t target = (end + TAIL_CHUNK + TAIL_ALIGN - 1) / TAIL_ALIGN * TAIL_ALIGN;
    if (target > w->segment_bytes)
        target = w->segment_bytes;
    if (from - end >= TAIL_LOW || target <= from || end < w->tail_retry_at)
        return 0;
    struct statvfs sv;
    if (fstatvfs(w->fd, &sv) < 0 ||
        (uint64_t)sv.f_bavail * sv.f_frsize < w->tail_min_free + (target - from)) {
        w->tail_retry_at = end + TAIL_CHUNK; /* a tight disk: no tail */
        return 0;
    }
    int rc = 0;
    for (uint64_t off = from; off < target && rc == 0; off += sizeof(zeros)) {
        uint64_t n = target - off < sizeof(zeros) ? target - off : sizeof(zeros);
        rc = fio_pwrite_all(w->fd, zeros, (size_t)n, off);
    }
    if (rc == -QERR_NOSPACE) {
        /* give the space back (best effort: bytes past t->alloc are zeros or holes, which
         * recovery takes for the zero tail either way) */
        if (ftruncate(w->fd, (off_t)t->alloc) < 0) {
            /* nothing to do: see above */
        }
        w->tail_retry_at = end + TAIL_CHUNK;
        return 0;
    }
    if (rc)
        return rc;
    t->alloc = target;
    return 0;
}

/* Closes the active segment after making it durable, and starts segment `first`. */
static int roll(wal_t *w, uint64_t first)
{
    uint64_t prev_term = 0;
    if (w->nsegs > 0) {
        seg_t *t = &w->segs[w->nsegs - 1];
        int rc = flush(w);
        /* sealed: cut to its used size (no zero tail in a segment that is not the last,
         * docs/FORMATS.md §2) and synced before the next segment exists */
        if (rc == 0 && t->alloc > t->size && ftruncate(w->fd, (off_t)t->size) < 0)
            rc = -QERR_IO;
        if (rc == 0)
            rc = do_sync(w, w->fd);
        if (rc)
            return rc;
        t->alloc = t->size;
        prev_term = t->last_term;
        close_active(w);
    }
    w->tail_retry_at = 0;
    return seg_create(w, first, prev_term);
}

static int has_records(const wal_t *w)
{
    for (size_t i = 0; i < w->nsegs; i++)
        if (w->segs[i].last >= w->segs[i].first)
            return 1;
    return 0;
}

/* Drops every segment of a WAL that holds no record (so any index may come next). */
static int drop_empty_segments(wal_t *w)
{
    close_active(w);
    while (w->nsegs > 0) {
        if (seg_unlink(w, w->segs[w->nsegs - 1].first) < 0)
            return -QERR_IO;
        w->nsegs--;
    }
    return sync_dir(w);
}

int wal_append(wal_t *w, uint64_t index, uint64_t term, const void *payload, size_t len)
{
    int rc;
    if (w->failed)
        return -QERR_FAILED;
    if (len > WAL_MAX_PAYLOAD)
        return -QERR_TOOBIG;
    if (index == 0 || (len && !payload))
        return -QERR_INVAL;
    if (w->nsegs > 0) {
        const seg_t *t = &w->segs[w->nsegs - 1];
        if (term < t->last_term)
            return -QERR_INVAL;
        if (index != t->last + 1) {
            if (has_records(w))
                return -QERR_INVAL;
            rc = drop_empty_segments(w); /* an empty WAL restarting at another index */
            if (rc) {
                w->failed = 1;
                return rc;
            }
        }
    }
    if (!w->batch_open) {
        w->batch_open = 1;
        w->batch_nsegs = w->nsegs;
        if (w->nsegs)
            w->batch_tail = w->segs[w->nsegs - 1];
    }
    size_t rlen = WAL_RECORD_HEADER + len;
    if (w->nsegs == 0) {
        rc = roll(w, index);
        if (rc)
            return write_failed(w, rc);
    } else {
        seg_t *t = &w->segs[w->nsegs - 1];
        if (t->last >= t->first && t->size + w->buf_len + rlen > w->segment_bytes) {
            rc = roll(w, index);
            if (rc)
                return write_failed(w, rc);
        }
    }

    uint8_t h[WAL_RECORD_HEADER];
    le_put32(h, (uint32_t)len);
    le_put64(h + 8, index);
    le_put64(h + 16, term);
    le_put32(h + 4, crc32c(crc32c(0, h + 8, WAL_RECORD_HEADER - 8), payload, len));
    seg_t *t = &w->segs[w->nsegs - 1];
    if (rlen >= DIRECT_MIN) {
        rc = flush(w);
        if (rc == 0)
            rc = write_direct(w->fd, h, payload, len, t->size);
        if (rc)
            return write_failed(w, rc);
        w->last_off = t->size;
        t->size += rlen;
        if (t->alloc < t->size)
            t->alloc = t->size;
    } else {
        if (w->buf_len + rlen > BUF_CAP) {
            rc = flush(w);
            if (rc)
                return write_failed(w, rc);
        }
        w->last_off = t->size + w->buf_len;
        memcpy(w->buf + w->buf_len, h, sizeof(h));
        if (len)
            memcpy(w->buf + w->buf_len + sizeof(h), payload, len);
        w->buf_len += rlen;
    }
    t->last = index;
    t->last_term = term;
    w->last_len = (uint32_t)len;
    w->appends++;
    return 0;
}

int wal_sync(wal_t *w)
{
    if (w->failed)
        return -QERR_FAILED;
    if (!w->batch_open)
        return 0;
    int rc = tail_extend(w);
    if (rc == 0)
        rc = flush(w);
    if (rc)
        return write_failed(w, rc);
    if (do_sync(w, w->fd) < 0) {
        w->failed = 1;
        return -QERR_IO;
    }
    w->batch_open = 0;
    /* Mark the batch's last record as synced. Written after the sync and made durable by
     * the next one, so a mark on disk proves its whole batch was durable; if the write
     * fails, recovery merely has less to go on. */
    uint8_t mark[4];
    le_put32(mark, w->last_len | WAL_LEN_SYNCED);
    (void)fio_pwrite_all(w->fd, mark, sizeof(mark), w->last_off);
    return 0;
}

int wal_truncate_prefix(wal_t *w, uint64_t upto)
{
    int rc = wal_sync(w);
    size_t drop = 0;
    if (rc)
        return rc;
    while (drop + 1 < w->nsegs && w->segs[drop].last <= upto) {
        if (seg_unlink(w, w->segs[drop].first) < 0) {
            rc = -QERR_IO;
            break;
        }
        drop++;
    }
    if (drop) {
        memmove(w->segs, w->segs + drop, (w->nsegs - drop) * sizeof(*w->segs));
        w->nsegs -= drop;
        w->tail_retry_at = 0; /* space was freed: the zero tail may grow again */
        if (rc == 0)
            rc = sync_dir(w);
    }
    return rc;
}

/* Maps a segment file read-only. *map is NULL for an empty file. */
static int map_file(const char *path, int flags, int *fdp, uint8_t **map, size_t *len)
{
    struct stat st;
    int fd = open(path, flags | O_CLOEXEC);
    *map = NULL;
    *len = 0;
    if (fd < 0)
        return errno == ENOENT ? -QERR_NOTFOUND : -QERR_IO;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return -QERR_IO;
    }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return -QERR_IO;
        }
        madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
        *map = m;
        *len = (size_t)st.st_size;
    }
    *fdp = fd;
    return 0;
}

struct find_off {
    uint64_t index;
    size_t off;
    uint64_t prev_term;
};

static int find_off_cb(void *arg, size_t off, uint64_t index, uint64_t term, const uint8_t *p,
                       size_t len)
{
    struct find_off *f = arg;
    (void)p;
    (void)len;
    if (index == f->index) {
        f->off = off;
        return 1;
    }
    f->prev_term = term;
    return 0;
}

int wal_truncate_suffix(wal_t *w, uint64_t from)
{
    int rc = wal_sync(w), deleted = 0;
    if (rc)
        return rc;
    if (w->nsegs == 0 || from > w->segs[w->nsegs - 1].last)
        return 0;
    close_active(w);
    /* Newest first, so a crash leaves a contiguous prefix. */
    while (w->nsegs > 0 && w->segs[w->nsegs - 1].first >= from) {
        if (seg_unlink(w, w->segs[w->nsegs - 1].first) < 0) {
            rc = -QERR_IO;
            goto fail;
        }
        w->nsegs--;
        deleted = 1;
    }
    if (deleted && (rc = sync_dir(w)) < 0)
        goto fail;
    if (w->nsegs == 0)
        return 0;
    rc = open_active(w);
    if (rc)
        goto fail;
    seg_t *t = &w->segs[w->nsegs - 1];
    if (t->last >= from) {
        char *path = seg_path(w, t->first, "");
        int rfd = -1;
        uint8_t *map = NULL;
        size_t len = 0;
        struct find_off f = { from, 0, 0 };
        wal_scan_t sr;
        if (!path) {
            rc = -QERR_NOMEM;
            goto fail;
        }
        rc = map_file(path, O_RDONLY, &rfd, &map, &len);
        free(path);
        if (rc)
            goto fail;
        rc = scan(map, len < t->size ? len : (size_t)t->size, t->first, 0, 0, find_off_cb, &f,
                  &sr);
        if (map)
            munmap(map, len);
        close(rfd);
        if (rc != 1) {
            rc = -QERR_CORRUPT;
            goto fail;
        }
        if (ftruncate(w->fd, (off_t)f.off) < 0 || do_sync(w, w->fd) < 0) {
            rc = -QERR_IO;
            goto fail;
        }
        t->size = f.off;
        t->alloc = f.off; /* the cut took the zero tail too; the next sync extends it */
        t->last = from - 1;
        t->last_term = f.prev_term;
    }
    return 0;
fail:
    w->failed = 1;
    return rc;
}

int wal_read(wal_t *w, uint64_t from, wal_record_fn fn, void *arg, char **errmsg)
{
    struct user_cb u = { fn, arg, from };
    int rc = 0;
    if (errmsg)
        *errmsg = NULL;
    if (w->buf_len) {
        rc = flush(w);
        if (rc)
            return write_failed(w, rc);
    }
    for (size_t i = 0; i < w->nsegs && rc == 0; i++) {
        const seg_t *s = &w->segs[i];
        if (s->last < from || s->last < s->first)
            continue;
        char *path = seg_path(w, s->first, "");
        int fd = -1;
        uint8_t *map = NULL;
        size_t maplen = 0;
        wal_scan_t sr;
        if (!path)
            return -QERR_NOMEM;
        rc = map_file(path, O_RDONLY, &fd, &map, &maplen);
        if (rc == 0) {
            size_t len = maplen < s->size ? maplen : (size_t)s->size;
            rc = scan(map, len, s->first, 0, 0, user_adapter, &u, &sr);
            if (rc < 0)
                qerr_set_msg(errmsg, "wal: %s: byte offset %zu: %s", path, sr.bad_off, sr.why);
            if (map)
                munmap(map, maplen);
            close(fd);
        } else {
            qerr_set_msg(errmsg, "wal: %s: cannot read: %s", path, strerror(errno));
        }
        free(path);
    }
    return rc;
}

/* ---- open / close ---- */

static int parse_seg_name(const char *name, uint64_t *first, int *is_tmp)
{
    size_t n = strlen(name);
    *is_tmp = 0;
    if (n == SEG_NAME_DIGITS + 8 && strcmp(name + SEG_NAME_DIGITS, ".seg.tmp") == 0)
        *is_tmp = 1;
    else if (n != SEG_NAME_DIGITS + 4 || strcmp(name + SEG_NAME_DIGITS, ".seg") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < SEG_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        unsigned d = (unsigned)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *first = v;
    return 1;
}

static int cmp_seg(const void *a, const void *b)
{
    const seg_t *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int list_segments(wal_t *w, char **errmsg)
{
    int dfd = dup(w->dirfd), removed = 0;
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *e;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        qerr_set_msg(errmsg, "wal: %s: cannot list: %s", w->dir, strerror(errno));
        return -QERR_IO;
    }
    while ((e = readdir(d))) {
        uint64_t first;
        int tmp;
        if (!parse_seg_name(e->d_name, &first, &tmp))
            continue;
        if (tmp) { /* a segment creation interrupted before its rename */
            unlinkat(w->dirfd, e->d_name, 0);
            removed = 1;
            continue;
        }
        if (seg_push(w, (seg_t){ first, first - 1, 0, 0, 0 }) < 0) {
            closedir(d);
            return -QERR_NOMEM;
        }
    }
    closedir(d);
    if (w->nsegs)
        qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_seg);
    return removed ? sync_dir(w) : 0;
}

/* Scans segment i at open; cuts a torn tail of the last one and keeps its zero tail (all
 * zeros from the end of the last record to the end of the file): appends overwrite it. */
static int recover_segment(wal_t *w, size_t i, struct user_cb *u, char **errmsg)
{
    seg_t *s = &w->segs[i];
    int is_last = i + 1 == w->nsegs;
    uint64_t prev_term = i ? w->segs[i - 1].last_term : 0;
    char *path = seg_path(w, s->first, "");
    int fd = -1, rc;
    uint8_t *map = NULL;
    size_t len = 0;
    wal_scan_t sr;
    if (!path)
        return -QERR_NOMEM;
    if (i > 0 && s->first != w->segs[i - 1].last + 1) {
        qerr_set_msg(errmsg, "wal: %s: byte offset 0: index gap: this segment starts at %" PRIu64
                " but the previous one ends at %" PRIu64, path, s->first,
                w->segs[i - 1].last);
        rc = -QERR_CORRUPT;
        goto out;
    }
    rc = map_file(path, is_last ? O_RDWR : O_RDONLY, &fd, &map, &len);
    if (rc) {
        qerr_set_msg(errmsg, "wal: %s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    rc = scan(map, len, s->first, prev_term, is_last, user_adapter, u, &sr);
    if (rc < 0) {
        qerr_set_msg(errmsg, "wal: %s: byte offset %zu: %s", path, sr.bad_off, sr.why);
        goto out;
    }
    if (rc > 0)
        goto out;
    s->last = sr.last_index;
    s->last_term = sr.last_term;
    s->size = sr.valid_end;
    s->alloc = sr.zero_tail ? len : sr.valid_end;
    if (sr.valid_end < len && !sr.zero_tail) {
        fprintf(stderr, "quorumfs: wal: %s: torn tail cut off at byte offset %zu "
                "(%zu bytes: %s)\n", path, sr.valid_end, len - sr.valid_end, sr.why);
        if (ftruncate(fd, (off_t)sr.valid_end) < 0) {
            qerr_set_msg(errmsg, "wal: %s: cannot cut torn tail: %s", path, strerror(errno));
            rc = -QERR_IO;
        }
    }
    /* Records a crashed process wrote but never synced may sit only in the page cache;
     * the caller is about to act on them, so make them (and any cut, and a zero tail whose
     * extension a crash interrupted) durable first. */
    if (rc == 0 && is_last && do_sync(w, fd) < 0) {
        qerr_set_msg(errmsg, "wal: %s: fdatasync failed: %s", path, strerror(errno));
        rc = -QERR_IO;
    }
out:
    if (map)
        munmap(map, len);
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

int wal_open(const char *dir, const wal_options_t *opt, wal_record_fn fn, void *arg,
             wal_t **out, char **errmsg)
{
    struct user_cb u = { fn, arg, 0 };
    int rc = -QERR_NOMEM;
    wal_t *w = calloc(1, sizeof(*w));
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (!w)
        goto fail;
    w->fd = -1;
    w->dirfd = -1;
    w->segment_bytes = opt && opt->segment_bytes ? opt->segment_bytes : WAL_DEFAULT_SEGMENT;
    w->sync_fn = opt ? opt->sync_fn : NULL;
    w->tail_min_free = opt && opt->tail_min_free ? opt->tail_min_free : WAL_TAIL_MIN_FREE;
    w->dir = strdup(dir);
    w->buf = malloc(BUF_CAP);
    if (!w->dir || !w->buf)
        goto fail;
    if (mkdir(dir, 0755) == 0) {
        /* make the new directory's entry durable in its parent */
        char *parent = strdup(dir), *slash;
        if (parent && (slash = strrchr(parent, '/'))) {
            int pfd;
            *slash = 0;
            pfd = open(*parent ? parent : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (pfd >= 0) {
                fsync(pfd);
                close(pfd);
            }
        }
        free(parent);
    } else if (errno != EEXIST) {
        rc = qerr_from_errno(errno);
        qerr_set_msg(errmsg, "wal: %s: cannot create directory: %s", dir, strerror(errno));
        goto fail;
    }
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        rc = -QERR_IO;
        qerr_set_msg(errmsg, "wal: %s: cannot open directory: %s", dir, strerror(errno));
        goto fail;
    }
    rc = list_segments(w, errmsg);
    if (rc)
        goto fail;
    for (size_t i = 0; i < w->nsegs; i++) {
        rc = recover_segment(w, i, &u, errmsg);
        if (rc)
            goto fail;
    }
    if (w->nsegs) {
        rc = open_active(w);
        if (rc) {
            qerr_set_msg(errmsg, "wal: %s: cannot open the last segment for writing", dir);
            goto fail;
        }
    }
    *out = w;
    return 0;
fail:
    wal_close(w);
    return rc;
}

uint64_t wal_first_index(const wal_t *w)
{
    for (size_t i = 0; i < w->nsegs; i++)
        if (w->segs[i].last >= w->segs[i].first)
            return w->segs[i].first;
    return 0;
}

uint64_t wal_last_index(const wal_t *w)
{
    return has_records(w) ? w->segs[w->nsegs - 1].last : 0;
}

uint64_t wal_active_first_index(const wal_t *w)
{
    return w->nsegs ? w->segs[w->nsegs - 1].first : 0;
}

uint64_t wal_last_term(const wal_t *w)
{
    return has_records(w) ? w->segs[w->nsegs - 1].last_term : 0;
}

void wal_get_stats(const wal_t *w, wal_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    for (size_t i = 0; i < w->nsegs; i++)
        st->bytes += w->segs[i].size;
    st->bytes += w->buf_len;
    if (w->nsegs) {
        const seg_t *t = &w->segs[w->nsegs - 1];
        uint64_t end = t->size + w->buf_len;
        st->tail_bytes = t->alloc > end ? t->alloc - end : 0;
    }
    for (int i = 0; i < HIST_BUCKETS; i++)
        st->sync_latency.bucket[i] = __atomic_load_n(&w->sync_latency.bucket[i],
                                                     __ATOMIC_RELAXED);
    st->sync_latency.count = __atomic_load_n(&w->sync_latency.count, __ATOMIC_RELAXED);
    st->sync_latency.sum_ns = __atomic_load_n(&w->sync_latency.sum_ns, __ATOMIC_RELAXED);
    st->segments = w->nsegs;
    st->appends = w->appends;
    st->syncs = w->syncs;
    st->failed = w->failed;
}

void wal_close(wal_t *w)
{
    if (!w)
        return;
    if (w->fd >= 0 && !w->failed && (w->buf_len == 0 || flush(w) == 0)) {
        /* A clean close cuts the zero tail (not synced: a crash may keep it, which a reopen
         * accepts as well), so that the files of a stopped node end at their last record,
         * as an older binary expects (it would cut the tail as a torn tail, with a line on
         * stderr). The next open's first sync writes a new tail. */
        seg_t *t = &w->segs[w->nsegs - 1];
        if (t->alloc > t->size && ftruncate(w->fd, (off_t)t->size) == 0)
            t->alloc = t->size;
    }
    close_active(w);
    if (w->dirfd >= 0)
        close(w->dirfd);
    free(w->segs);
    free(w->buf);
    free(w->dir);
    free(w);
}
