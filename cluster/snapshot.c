/* cluster/snapshot.c — snapshot files: a 64-byte checksummed header, then one lz4 frame of
 * the state stream. Written through a temp file + fsync + rename + directory fsync; read
 * back after checking the CRC32C of the compressed bytes, with the CRC32C of the
 * uncompressed stream checked again at the end. See docs/FORMATS.md, "Snapshot". */
#include "cluster/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/crc32c.h"
#include "cluster/bytes.h"
#include "cluster/err.h"
#include "cluster/fileio.h"

static const uint8_t snap_magic[8] = { 'Q', 'F', 'S', '-', 'S', 'N', 'A', 'P' };

#define SLICE (64u << 10)   /* uncompressed bytes fed to lz4 per call */
#define IO_BUF (256u << 10) /* compressed read buffer */

struct snap_writer {
    char *dir, *tmp;
    int fd;
    LZ4F_cctx *cctx;
    uint8_t *out;
    size_t out_cap;
    uint64_t index, term, raw_len, comp_len;
    uint32_t raw_crc, comp_crc;
    int err;
    int finished;               /* snapshot_finish has written the trailer and header */
};

struct snap_reader {
    char *path;
    int fd;
    LZ4F_dctx *dctx;
    uint8_t *in, *out;
    size_t in_pos, in_len, out_pos, out_len;
    uint64_t file_off, file_end; /* next compressed byte to read; end of the stream */
    uint64_t raw_len, raw_read;
    uint32_t raw_crc_want, raw_crc;
    int frame_done;
    int err;
};

struct snap_recv {
    char *dir, *tmp;
    int fd;
    int err;
};

/* ---- helpers ---- */

/* Reads up to len bytes at off; returns bytes read (0 at EOF) or -1. */
static ssize_t pread_some(int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t n;
    do
        n = pread(fd, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR);
    return n;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd < 0)
        return -QERR_IO;
    if (fsync(fd) < 0)
        rc = -QERR_IO;
    close(fd);
    return rc;
}

/* Parses "snap-<20 digits>.snap". */
static int parse_snap_name(const char *name, uint64_t *index)
{
    uint64_t v = 0;
    if (strlen(name) != 30 || strncmp(name, "snap-", 5) != 0 || strcmp(name + 25, ".snap") != 0)
        return 0;
    for (size_t i = 0; i < 20; i++) {
        char c = name[5 + i];
        if (c < '0' || c > '9')
            return 0;
        if (v > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
            return 0;
        v = v * 10 + (uint64_t)(c - '0');
    }
    *index = v;
    return 1;
}

static char *snap_path(const char *dir, uint64_t index, const char *suffix)
{
    char *p = NULL;
    if (asprintf(&p, "%s/snap-%020" PRIu64 ".snap%s", dir, index, suffix) < 0)
        return NULL;
    return p;
}

/* Deletes every snap-*.snap in dir older than index, then fsyncs dir. Failures to delete are
 * only reported on stderr: an extra old file is harmless. */
static void remove_older(const char *dir, uint64_t index);
void snapshot_prune(const char *dir, uint64_t index)
{
    remove_older(dir, index);
}

static void remove_older(const char *dir, uint64_t index)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int removed = 0;
    if (!d)
        return;
    while ((e = readdir(d))) {
        uint64_t i;
        if (!parse_snap_name(e->d_name, &i) || i >= index)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed = 1;
        else
            fprintf(stderr, "quorumfs: snapshot: cannot delete old %s/%s: %s\n", dir,
                    e->d_name, strerror(errno));
    }
    closedir(d);
    if (removed)
        fsync_dir(dir);
}

static void encode_header(uint8_t *h, uint64_t index, uint64_t term, uint64_t raw_len,
                          uint64_t comp_len, uint32_t raw_crc, uint32_t comp_crc)
{
    memset(h, 0, SNAP_HEADER);
    memcpy(h, snap_magic, sizeof(snap_magic));
    le_put32(h + 8, SNAP_VERSION);
    le_put32(h + 12, SNAP_HEADER);
    le_put64(h + 16, index);
    le_put64(h + 24, term);
    le_put64(h + 32, raw_len);
    le_put64(h + 40, comp_len);
    le_put32(h + 48, raw_crc);
    le_put32(h + 52, comp_crc);
    le_put32(h + 60, crc32c(0, h, SNAP_HEADER - 4));
}

/* Checks a header read from a file of file_size bytes; on success fills info (not path).
 * Returns 0, -QERR_CORRUPT or -QERR_FORMAT with why. */
static int decode_header(const uint8_t *h, size_t hlen, uint64_t file_size,
                         snapshot_info_t *info, uint32_t *raw_crc, uint32_t *comp_crc,
                         char *why, size_t whylen)
{
    if (hlen < SNAP_HEADER) {
        snprintf(why, whylen, "file too short for a snapshot header (%zu bytes)", hlen);
        return -QERR_CORRUPT;
    }
    if (memcmp(h, snap_magic, sizeof(snap_magic)) != 0) {
        snprintf(why, whylen, "bad magic: not a quorumfs snapshot");
        return -QERR_CORRUPT;
    }
    if (le_get32(h + 8) != SNAP_VERSION) {
        snprintf(why, whylen, "unsupported snapshot format version %" PRIu32
                 " (this build reads version %d)", le_get32(h + 8), SNAP_VERSION);
        return -QERR_FORMAT;
    }
    if (le_get32(h + 12) != SNAP_HEADER || crc32c(0, h, SNAP_HEADER - 4) != le_get32(h + 60)) {
        snprintf(why, whylen, "header checksum mismatch");
        return -QERR_CORRUPT;
    }
    info->index = le_get64(h + 16);
    info->term = le_get64(h + 24);
    info->raw_len = le_get64(h + 32);
    info->file_size = file_size;
    *raw_crc = le_get32(h + 48);
    *comp_crc = le_get32(h + 52);
    if (le_get64(h + 40) != file_size - SNAP_HEADER) {
        snprintf(why, whylen, "file is %" PRIu64 " bytes but its header says %" PRIu64,
                 file_size, le_get64(h + 40) + SNAP_HEADER);
        return -QERR_CORRUPT;
    }
    return 0;
}

/* Reads and checks the header of the open file fd. */
static int read_header(int fd, snapshot_info_t *info, uint32_t *raw_crc, uint32_t *comp_crc,
                       char *why, size_t whylen)
{
    uint8_t h[SNAP_HEADER];
    struct stat st;
    ssize_t n;
    if (fstat(fd, &st) < 0 || (n = pread_some(fd, h, sizeof(h), 0)) < 0) {
        snprintf(why, whylen, "cannot read: %s", strerror(errno));
        return -QERR_IO;
    }
    return decode_header(h, (size_t)n, (uint64_t)st.st_size, info, raw_crc, comp_crc, why,
                         whylen);
}

/* Checks the CRC32C of the compressed stream (bytes SNAP_HEADER .. file_size). */
static int verify_stream(int fd, uint64_t file_size, uint32_t want, char *why, size_t whylen)
{
    uint8_t *buf = malloc(IO_BUF);
    uint64_t off = SNAP_HEADER;
    uint32_t crc = 0;
    int rc = 0;
    if (!buf)
        return -QERR_NOMEM;
    while (off < file_size) {
        uint64_t left = file_size - off;
        ssize_t n = pread_some(fd, buf, left < IO_BUF ? (size_t)left : IO_BUF, off);
        if (n <= 0) {
            snprintf(why, whylen, "cannot read at byte offset %" PRIu64 ": %s", off,
                     n < 0 ? strerror(errno) : "unexpected end of file");
            rc = n < 0 ? -QERR_IO : -QERR_CORRUPT;
            goto out;
        }
        crc = crc32c(crc, buf, (size_t)n);
        off += (uint64_t)n;
    }
    if (crc != want) {
        snprintf(why, whylen, "checksum mismatch in the compressed stream (bytes %d..%" PRIu64
                 ")", SNAP_HEADER, file_size);
        rc = -QERR_CORRUPT;
    }
out:
    free(buf);
    return rc;
}

/* ---- writer ---- */

static const LZ4F_preferences_t lz4_prefs = {
    .frameInfo = { .blockSizeID = LZ4F_max256KB, .blockMode = LZ4F_blockLinked },
    .compressionLevel = 0,
};

static int writer_out(snap_writer_t *w, size_t n)
{
    if (n == 0)
        return 0;
    int rc = fio_write_all(w->fd, w->out, n);
    if (rc)
        return rc;
    w->comp_crc = crc32c(w->comp_crc, w->out, n);
    w->comp_len += n;
    return 0;
}

static void writer_free(snap_writer_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp)
        unlink(w->tmp);
    LZ4F_freeCompressionContext(w->cctx);
    free(w->out);
    free(w->tmp);
    free(w->dir);
    free(w);
}

int snapshot_begin(const char *dir, uint64_t index, uint64_t term, snap_writer_t **out)
{
    snap_writer_t *w = calloc(1, sizeof(*w));
    int rc = -QERR_NOMEM;
    uint8_t zero[SNAP_HEADER] = { 0 };
    *out = NULL;
    if (!w)
        return -QERR_NOMEM;
    w->fd = -1;
    w->index = index;
    w->term = term;
    w->dir = strdup(dir);
    w->out_cap = LZ4F_compressBound(SLICE, &lz4_prefs);
    if (w->out_cap < LZ4F_HEADER_SIZE_MAX)
        w->out_cap = LZ4F_HEADER_SIZE_MAX;
    w->out = malloc(w->out_cap);
    if (!w->dir || !w->out || !(w->tmp = snap_path(dir, index, ".tmp")))
        goto fail;
    if (LZ4F_isError(LZ4F_createCompressionContext(&w->cctx, LZ4F_VERSION)))
        goto fail;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = qerr_from_errno(errno);
        goto fail;
    }
    /* The real header is written by commit, once the lengths and CRCs are known. */
    rc = fio_write_all(w->fd, zero, sizeof(zero));
    if (rc)
        goto fail;
    size_t n = LZ4F_compressBegin(w->cctx, w->out, w->out_cap, &lz4_prefs);
    if (LZ4F_isError(n)) {
        rc = -QERR_IO;
        goto fail;
    }
    rc = writer_out(w, n);
    if (rc)
        goto fail;
    *out = w;
    return 0;
fail:
    writer_free(w);
    return rc;
}

int snap_writer_put(snap_writer_t *w, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    if (w->err)
        return w->err;
    w->raw_crc = crc32c(w->raw_crc, buf, len);
    w->raw_len += len;
    while (len) {
        size_t slice = len < SLICE ? len : SLICE;
        size_t n = LZ4F_compressUpdate(w->cctx, w->out, w->out_cap, p, slice, NULL);
        if (LZ4F_isError(n)) {
            w->err = -QERR_IO;
            return w->err;
        }
        int rc = writer_out(w, n);
        if (rc) {
            w->err = rc;
            return rc;
        }
        p += slice;
        len -= slice;
    }
    return 0;
}

int snapshot_finish(snap_writer_t *w)
{
    uint8_t h[SNAP_HEADER];
    if (w->err || w->finished)
        return w->err;
    size_t n = LZ4F_compressEnd(w->cctx, w->out, w->out_cap, NULL);
    int rc = LZ4F_isError(n) ? -QERR_IO : writer_out(w, n);
    if (rc == 0) {
        encode_header(h, w->index, w->term, w->raw_len, w->comp_len, w->raw_crc, w->comp_crc);
        rc = fio_pwrite_all(w->fd, h, sizeof(h), 0);
    }
    w->err = rc;
    w->finished = rc == 0;
    return rc;
}

int snapshot_commit(snap_writer_t *w)
{
    char *path = NULL;
    int rc = snapshot_finish(w);
    if (rc)
        goto fail;
    if (fsync(w->fd) < 0) {
        rc = qerr_from_errno(errno);
        goto fail;
    }
    if (!(path = snap_path(w->dir, w->index, ""))) {
        rc = -QERR_NOMEM;
        goto fail;
    }
    if (rename(w->tmp, path) < 0) {
        rc = qerr_from_errno(errno);
        goto fail;
    }
    free(w->tmp);
    w->tmp = NULL; /* renamed: nothing to delete any more */
    rc = fsync_dir(w->dir);
    if (rc) {
        /* The rename may or may not be durable; keep the older snapshots. */
        goto fail;
    }
    remove_older(w->dir, w->index);
fail:
    free(path);
    writer_free(w);
    return rc;
}

void snapshot_abort(snap_writer_t *w)
{
    if (w)
        writer_free(w);
}

/* ---- reading ---- */

void snapshot_info_free(snapshot_info_t *info)
{
    if (!info)
        return;
    free(info->path);
    info->path = NULL;
}

int snapshot_open_read(const char *dir, snapshot_info_t *info, char **errmsg)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t best = 0;
    int found = 0, rc, fd;
    char why[160];
    uint32_t raw_crc, comp_crc;
    memset(info, 0, sizeof(*info));
    if (errmsg)
        *errmsg = NULL;
    if (!d) {
        if (errno == ENOENT)
            return -QERR_NOTFOUND;
        qerr_set_msg(errmsg, "snapshot: %s: cannot list: %s", dir, strerror(errno));
        return -QERR_IO;
    }
    while ((e = readdir(d))) {
        uint64_t i;
        if (parse_snap_name(e->d_name, &i) && (!found || i > best)) {
            best = i;
            found = 1;
        }
    }
    closedir(d);
    if (!found)
        return -QERR_NOTFOUND;
    if (!(info->path = snap_path(dir, best, "")))
        return -QERR_NOMEM;
    fd = open(info->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        qerr_set_msg(errmsg, "snapshot: %s: cannot open: %s", info->path, strerror(errno));
        rc = -QERR_IO;
        goto fail;
    }
    rc = read_header(fd, info, &raw_crc, &comp_crc, why, sizeof(why));
    close(fd);
    if (rc == 0 && info->index != best) {
        snprintf(why, sizeof(why), "header says index %" PRIu64, info->index);
        rc = -QERR_CORRUPT;
    }
    if (rc) {
        qerr_set_msg(errmsg, "snapshot: %s: %s", info->path, why);
        goto fail;
    }
    return 0;
fail:
    snapshot_info_free(info);
    return rc;
}

int snapshot_reader_open(const snapshot_info_t *info, snap_reader_t **out, char **errmsg)
{
    snap_reader_t *r = calloc(1, sizeof(*r));
    snapshot_info_t hi;
    uint32_t comp_crc;
    char why[160];
    int rc = -QERR_NOMEM;
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (!r)
        return -QERR_NOMEM;
    r->fd = -1;
    r->path = strdup(info->path);
    r->in = malloc(IO_BUF);
    r->out = malloc(IO_BUF);
    if (!r->path || !r->in || !r->out)
        goto fail;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&r->dctx, LZ4F_VERSION)))
        goto fail;
    r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        rc = -QERR_IO;
        snprintf(why, sizeof(why), "cannot open: %s", strerror(errno));
        goto fail_msg;
    }
    rc = read_header(r->fd, &hi, &r->raw_crc_want, &comp_crc, why, sizeof(why));
    if (rc == 0)
        rc = verify_stream(r->fd, hi.file_size, comp_crc, why, sizeof(why));
    if (rc)
        goto fail_msg;
    r->raw_len = hi.raw_len;
    r->file_off = SNAP_HEADER;
    r->file_end = hi.file_size;
    posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    *out = r;
    return 0;
fail_msg:
    qerr_set_msg(errmsg, "snapshot: %s: %s", r->path, why);
fail:
    snapshot_reader_close(r, NULL);
    return rc;
}

/* Decompresses more of the stream into r->out. Returns 0 with bytes in r->out, 1 at the end
 * of the lz4 frame, or -QERR_* (a frame cut short is -QERR_CORRUPT). */
static int reader_fill(snap_reader_t *r)
{
    for (;;) {
        if (r->frame_done)
            return 1;
        if (r->in_pos == r->in_len && r->file_off < r->file_end) {
            uint64_t left = r->file_end - r->file_off;
            ssize_t n = pread_some(r->fd, r->in, left < IO_BUF ? (size_t)left : IO_BUF,
                                   r->file_off);
            if (n <= 0)
                return n < 0 ? -QERR_IO : -QERR_CORRUPT;
            r->in_pos = 0;
            r->in_len = (size_t)n;
            r->file_off += (uint64_t)n;
        }
        if (r->in_pos == r->in_len)
            return -QERR_CORRUPT; /* the file ended inside the frame */
        size_t dst = IO_BUF, src = r->in_len - r->in_pos;
        size_t hint = LZ4F_decompress(r->dctx, r->out, &dst, r->in + r->in_pos, &src, NULL);
        if (LZ4F_isError(hint))
            return -QERR_CORRUPT;
        r->in_pos += src;
        if (hint == 0)
            r->frame_done = 1;
        if (dst) {
            r->out_pos = 0;
            r->out_len = dst;
            return 0;
        }
        if (src == 0 && !r->frame_done)
            return -QERR_CORRUPT; /* no progress: should not happen with input left */
    }
}

int snap_reader_get(snap_reader_t *r, void *buf, size_t len)
{
    uint8_t *p = buf;
    if (r->err)
        return r->err;
    if (len > r->raw_len - r->raw_read) {
        r->err = -QERR_CORRUPT;
        return r->err;
    }
    while (len) {
        if (r->out_pos == r->out_len) {
            int rc = reader_fill(r);
            if (rc) {
                r->err = rc < 0 ? rc : -QERR_CORRUPT; /* frame ended before raw_len */
                return rc;
            }
        }
        size_t n = r->out_len - r->out_pos;
        if (n > len)
            n = len;
        memcpy(p, r->out + r->out_pos, n);
        r->raw_crc = crc32c(r->raw_crc, p, n);
        r->out_pos += n;
        r->raw_read += n;
        p += n;
        len -= n;
    }
    return 0;
}

int snapshot_reader_close(snap_reader_t *r, char **errmsg)
{
    int rc = 0;
    if (!r)
        return 0;
    if (r->err) {
        rc = r->err;
        qerr_set_msg(errmsg, "snapshot: %s: stream damaged or shorter than the state machine "
                "expected (%s)", r->path, qerr_str(rc));
    } else if (r->raw_read != r->raw_len) {
        rc = -QERR_CORRUPT;
        qerr_set_msg(errmsg, "snapshot: %s: the state machine read %" PRIu64 " of %" PRIu64
                " bytes", r->path, r->raw_read, r->raw_len);
    } else if (r->out_pos != r->out_len) {
        rc = -QERR_CORRUPT;
        qerr_set_msg(errmsg, "snapshot: %s: more data than the header's length", r->path);
    } else {
        /* The frame must end exactly here, with nothing after it. */
        rc = reader_fill(r);
        rc = rc == 1 ? 0 : -QERR_CORRUPT; /* 0 would be bytes past raw_len */
        if (rc == 0 && (r->in_pos != r->in_len || r->file_off != r->file_end))
            rc = -QERR_CORRUPT;
        if (rc)
            qerr_set_msg(errmsg, "snapshot: %s: lz4 stream does not end where the header says",
                    r->path);
        else if (r->raw_crc != r->raw_crc_want) {
            rc = -QERR_CORRUPT;
            qerr_set_msg(errmsg, "snapshot: %s: checksum mismatch in the uncompressed stream",
                    r->path);
        }
    }
    if (r->fd >= 0)
        close(r->fd);
    LZ4F_freeDecompressionContext(r->dctx);
    free(r->in);
    free(r->out);
    free(r->path);
    free(r);
    return rc;
}

/* ---- raw chunks ---- */

int snapshot_read_chunk(const snapshot_info_t *info, uint64_t off, void *buf, size_t len,
                        size_t *got)
{
    int fd = open(info->path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    *got = 0;
    if (fd < 0)
        return -QERR_IO;
    n = pread_some(fd, buf, len, off);
    close(fd);
    if (n < 0)
        return -QERR_IO;
    *got = (size_t)n;
    return 0;
}

static void recv_free(snap_recv_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    if (r->tmp)
        unlink(r->tmp);
    free(r->tmp);
    free(r->dir);
    free(r);
}

int snapshot_recv_begin(const char *dir, snap_recv_t **out)
{
    static unsigned counter;
    snap_recv_t *r = calloc(1, sizeof(*r));
    int rc = -QERR_NOMEM;
    *out = NULL;
    if (!r)
        return -QERR_NOMEM;
    r->fd = -1;
    r->dir = strdup(dir);
    if (!r->dir || asprintf(&r->tmp, "%s/snap-recv-%d-%u.tmp", dir, (int)getpid(),
                            __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED)) < 0) {
        r->tmp = NULL;
        goto fail;
    }
    r->fd = open(r->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (r->fd < 0) {
        rc = qerr_from_errno(errno);
        goto fail;
    }
    *out = r;
    return 0;
fail:
    recv_free(r);
    return rc;
}

int snapshot_recv_write(snap_recv_t *r, uint64_t off, const void *buf, size_t len)
{
    if (r->err)
        return r->err;
    int rc = fio_pwrite_all(r->fd, buf, len, off);
    if (rc)
        r->err = rc;
    return rc;
}

int snapshot_recv_commit(snap_recv_t *r, snapshot_info_t *info, char **errmsg)
{
    snapshot_info_t hi;
    uint32_t raw_crc, comp_crc;
    char why[160], *path = NULL;
    int rc = r->err;
    if (errmsg)
        *errmsg = NULL;
    memset(&hi, 0, sizeof(hi));
    if (rc) {
        qerr_set_msg(errmsg, "snapshot: %s: write failed: %s", r->tmp, qerr_str(rc));
        goto fail;
    }
    rc = read_header(r->fd, &hi, &raw_crc, &comp_crc, why, sizeof(why));
    if (rc == 0)
        rc = verify_stream(r->fd, hi.file_size, comp_crc, why, sizeof(why));
    if (rc) {
        qerr_set_msg(errmsg, "snapshot: received file %s: %s", r->tmp, why);
        goto fail;
    }
    if (fsync(r->fd) < 0) {
        rc = qerr_from_errno(errno);
        goto fail;
    }
    if (!(path = snap_path(r->dir, hi.index, ""))) {
        rc = -QERR_NOMEM;
        goto fail;
    }
    if (rename(r->tmp, path) < 0) {
        rc = qerr_from_errno(errno);
        goto fail;
    }
    free(r->tmp);
    r->tmp = NULL;
    if ((rc = fsync_dir(r->dir)))
        goto fail;
    remove_older(r->dir, hi.index);
    if (info) {
        *info = hi;
        info->path = path;
        path = NULL;
    }
fail:
    if (rc)
        qerr_set_msg(errmsg, "snapshot: %s: cannot store received snapshot: %s", r->dir,
                qerr_str(rc));
    free(path);
    recv_free(r);
    return rc;
}

void snapshot_recv_abort(snap_recv_t *r)
{
    if (r)
        recv_free(r);
}

int snapshot_remove_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int removed = 0, rc = 0;
    if (!d)
        return errno == ENOENT ? 0 : -QERR_IO;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 9 || strncmp(e->d_name, "snap-", 5) != 0 ||
            strcmp(e->d_name + n - 4, ".tmp") != 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
        else
            rc = -QERR_IO;
    }
    closedir(d);
    if (removed && fsync_dir(dir) < 0)
        rc = -QERR_IO;
    return rc ? rc : removed;
}
