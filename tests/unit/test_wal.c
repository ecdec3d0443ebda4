/* tests/unit/test_wal.c — the WAL: append/reopen/read-back, segment roll, prefix and suffix
 * truncation, a table of torn tails (cut off) and corruptions (refused with file and
 * offset), disk full on a small tmpfs (batch dropped, WAL usable), fsync failure (WAL failed
 * for good), the in-memory scanner, and the zero tail (appends that do not grow the file,
 * kept after a crash, cut at a clean close and at a roll, an interrupted extension, a full
 * disk, replay equal to a model across crashes). Record i carries payload_for(i) so any
 * read-back can be checked byte for byte. A "crash" is a child process that ends with
 * _exit() and no wal_close: what it wrote stays in the page cache, as after a process
 * crash; a power cut is imitated by editing the files afterwards. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/wal.h"
#include "tests/unit/check.h"

static char base[64];
static char dir[256];
static int ndirs;

static void new_dir(void)
{
    snprintf(dir, sizeof(dir), "%s/w%d", base, ndirs++);
}

/* Deterministic payload of record index: 0..299 bytes. */
static size_t payload_for(uint64_t index, uint8_t *buf)
{
    size_t len = (size_t)((index * 37) % 300);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(index * 13 + i);
    return len;
}

/* What a read-back saw. */
typedef struct seen {
    uint64_t count, first, last, last_term;
    int bad; /* a record whose payload or order was wrong */
} seen_t;

static int collect(void *arg, uint64_t index, uint64_t term, const void *p, size_t len)
{
    seen_t *s = arg;
    uint8_t want[300];
    size_t wl = payload_for(index, want);
    if (s->count && index != s->last + 1)
        s->bad = 1;
    if (term < s->last_term || len != wl || memcmp(p, want, len) != 0)
        s->bad = 1;
    if (!s->count)
        s->first = index;
    s->count++;
    s->last = index;
    s->last_term = term;
    return 0;
}

static int open_wal(uint64_t seg_bytes, seen_t *s, wal_t **w, char **msg)
{
    wal_options_t o = { .segment_bytes = seg_bytes, .tail_min_free = 1 };
    char *m = NULL;
    memset(s, 0, sizeof(*s));
    int rc = wal_open(dir, &o, collect, s, w, &m);
    if (msg)
        *msg = m;
    else
        free(m);
    return rc;
}

/* Appends records from..to (term 1) and syncs once. */
static int append_range(wal_t *w, uint64_t from, uint64_t to, uint64_t term)
{
    uint8_t buf[300];
    for (uint64_t i = from; i <= to; i++) {
        int rc = wal_append(w, i, term, buf, payload_for(i, buf));
        if (rc)
            return rc;
    }
    return wal_sync(w);
}

static int count_segments(const char *d)
{
    DIR *dp = opendir(d);
    struct dirent *e;
    int n = 0;
    if (!dp)
        return -1;
    while ((e = readdir(dp)))
        n += strstr(e->d_name, ".seg") != NULL;
    closedir(dp);
    return n;
}

/* Path of the k-th segment (0 = oldest, -1 = newest) of dir; static buffer. */
static const char *segment(int k)
{
    static char path[600];
    char names[64][32];
    int n = 0;
    DIR *dp = opendir(dir);
    struct dirent *e;
    if (!dp)
        return NULL;
    while ((e = readdir(dp)) && n < 64)
        if (strlen(e->d_name) == 24 && strstr(e->d_name, ".seg"))
            snprintf(names[n++], sizeof(names[0]), "%.24s", e->d_name);
    closedir(dp);
    if (!n)
        return NULL;
    qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
    if (k < 0)
        k += n;
    if (k < 0 || k >= n)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, names[k]);
    return path;
}

static off_t fsize(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static int flip(const char *p, off_t off, uint8_t mask)
{
    uint8_t b;
    int fd = open(p, O_RDWR);
    if (fd < 0)
        return -1;
    int ok = pread(fd, &b, 1, off) == 1;
    b ^= mask;
    ok = ok && pwrite(fd, &b, 1, off) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* Byte offset of record index within its segment file, by walking the records. */
static off_t record_offset(const char *p, uint64_t first, uint64_t index)
{
    off_t off = WAL_SEGMENT_HEADER;
    uint8_t buf[300];
    for (uint64_t i = first; i < index; i++)
        off += WAL_RECORD_HEADER + (off_t)payload_for(i, buf);
    (void)p;
    return off;
}

static uint64_t seg_first(const char *p)
{
    const char *slash = strrchr(p, '/');
    return strtoull(slash + 1, NULL, 10);
}

static uint8_t *read_file(const char *p, size_t *len);

/* End of the last valid record of segment file p (its used size). */
static off_t used_end(const char *p)
{
    size_t len;
    wal_scan_t r;
    uint8_t *b = read_file(p, &len);
    if (!b)
        return -1;
    int rc = wal_scan_buffer(b, len, 0, 0, 1, NULL, NULL, &r);
    free(b);
    return rc == 0 ? (off_t)r.valid_end : -1;
}

/* A crash after records from..to were appended and synced in batches of `batch`: a child
 * opens the WAL (segment size seg_bytes), writes them and ends without wal_close, so the
 * zero tail stays. Returns 0 if the child did all of it. */
static int crash_after(uint64_t seg_bytes, uint64_t from, uint64_t to, uint64_t batch,
                       uint64_t term)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        wal_t *w;
        wal_options_t o = { .segment_bytes = seg_bytes, .tail_min_free = 1 };
        if (wal_open(dir, &o, NULL, NULL, &w, NULL) != 0)
            _exit(2);
        for (uint64_t i = from; i <= to; i += batch)
            if (append_range(w, i, i + batch - 1 < to ? i + batch - 1 : to, term) != 0)
                _exit(3);
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- cases ---- */

TEST(append_reopen_read_back)
{
    wal_t *w;
    seen_t s;
    new_dir();
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 0);
    CHECK_EQ(wal_last_index(w), 0);
    for (uint64_t b = 0; b < 10; b++) /* 10 batches of 100 */
        CHECK_EQ(append_range(w, b * 100 + 1, b * 100 + 100, 1 + b / 4), 0);
    CHECK_EQ(wal_first_index(w), 1);
    CHECK_EQ(wal_last_index(w), 1000);
    CHECK_EQ(wal_last_term(w), 3);
    wal_stats_t st;
    wal_get_stats(w, &st);
    CHECK_EQ(st.appends, 1000);
    CHECK_EQ(st.syncs, 10 + 1); /* one per batch, plus the new segment's header */
    CHECK(st.tail_bytes > 0); /* the zero tail ahead of the records */
    CHECK_EQ(st.bytes + st.tail_bytes, fsize(segment(0)));
    CHECK(st.sync_latency.count == st.syncs);
    wal_close(w);
    CHECK_EQ(st.bytes, fsize(segment(0))); /* a clean close cut the tail */
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 1000);
    CHECK_EQ(s.first, 1);
    CHECK_EQ(s.last, 1000);
    CHECK_EQ(s.bad, 0);
    CHECK_EQ(wal_last_term(w), 3);
    /* read back from the middle, including unsynced appends */
    uint8_t buf[300];
    CHECK_EQ(wal_append(w, 1001, 3, buf, payload_for(1001, buf)), 0);
    seen_t r = { 0 };
    CHECK_EQ(wal_read(w, 500, collect, &r, NULL), 0);
    CHECK_EQ(r.first, 500);
    CHECK_EQ(r.last, 1001);
    CHECK_EQ(r.bad, 0);
    wal_close(w);
}

TEST(append_argument_checks)
{
    wal_t *w;
    seen_t s;
    new_dir();
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(wal_append(w, 0, 1, NULL, 0), -QERR_INVAL);
    CHECK_EQ(wal_append(w, 7, 2, NULL, 0), 0); /* an empty WAL may start anywhere */
    CHECK_EQ(wal_append(w, 9, 2, NULL, 0), -QERR_INVAL);  /* gap */
    CHECK_EQ(wal_append(w, 7, 2, NULL, 0), -QERR_INVAL);  /* repeat */
    CHECK_EQ(wal_append(w, 8, 1, NULL, 0), -QERR_INVAL);  /* term going back */
    CHECK_EQ(wal_append(w, 8, 2, NULL, (size_t)WAL_MAX_PAYLOAD + 1), -QERR_TOOBIG);
    CHECK_EQ(wal_append(w, 8, 3, NULL, 0), 0);
    CHECK_EQ(wal_sync(w), 0);
    CHECK_EQ(wal_first_index(w), 7);
    wal_close(w);
    wal_close(NULL);
}

TEST(segment_roll)
{
    wal_t *w;
    seen_t s;
    new_dir();
    CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 300, 1), 0);
    wal_stats_t st;
    wal_get_stats(w, &st);
    wal_close(w);
    CHECK(st.segments > 10);
    CHECK_EQ(count_segments(dir), (int)st.segments);
    /* every closed segment is at most segment_bytes (records are < 4 KiB) */
    for (int k = 0; k < (int)st.segments - 1; k++)
        CHECK(fsize(segment(k)) <= 4096);
    CHECK_EQ(seg_first(segment(0)), 1);
    CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 300);
    CHECK_EQ(s.bad, 0);
    /* appends continue into the last segment after reopen */
    CHECK_EQ(append_range(w, 301, 320, 1), 0);
    wal_close(w);
    CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
    CHECK_EQ(s.last, 320);
    CHECK_EQ(s.bad, 0);
    wal_close(w);
}

TEST(truncate_prefix_deletes_covered_segments)
{
    wal_t *w;
    seen_t s;
    new_dir();
    CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 300, 1), 0);
    int before = count_segments(dir);
    CHECK_EQ(wal_truncate_prefix(w, 150), 0);
    uint64_t first = wal_first_index(w);
    CHECK(first > 1 && first <= 151);
    CHECK(count_segments(dir) < before);
    CHECK_EQ(seg_first(segment(0)), first);
    CHECK_EQ(wal_last_index(w), 300);
    /* the active segment is never deleted */
    CHECK_EQ(wal_truncate_prefix(w, 1000000), 0);
    CHECK_EQ(count_segments(dir), 1);
    CHECK_EQ(wal_last_index(w), 300);
    uint64_t first2 = wal_first_index(w);
    CHECK_EQ(append_range(w, 301, 310, 1), 0);
    wal_close(w);
    CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
    CHECK_EQ(s.first, first2);
    CHECK_EQ(s.last, 310);
    CHECK_EQ(s.bad, 0);
    wal_close(w);
}

TEST(truncate_suffix_then_append)
{
    wal_t *w;
    seen_t s;
    uint8_t buf[300];
    new_dir();
    CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 300, 1), 0);
    /* inside a segment */
    CHECK_EQ(wal_truncate_suffix(w, 251), 0);
    CHECK_EQ(wal_last_index(w), 250);
    CHECK_EQ(wal_append(w, 252, 2, buf, payload_for(252, buf)), -QERR_INVAL);
    CHECK_EQ(append_range(w, 251, 260, 2), 0);
    /* at a segment boundary: drop the newest whole segment */
    uint64_t f = seg_first(segment(-1));
    CHECK(f > 1);
    CHECK_EQ(wal_truncate_suffix(w, f), 0);
    CHECK_EQ(wal_last_index(w), f - 1);
    CHECK_EQ(seg_first(segment(-1)) < f, 1);
    CHECK_EQ(wal_last_term(w), f - 1 > 250 ? 2 : 1);
    /* past the end: nothing to do */
    CHECK_EQ(wal_truncate_suffix(w, f + 100), 0);
    CHECK_EQ(append_range(w, f, f + 5, 3), 0);
    wal_close(w);
    CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
    CHECK_EQ(s.first, 1);
    CHECK_EQ(s.last, f + 5);
    CHECK_EQ(s.last_term, 3);
    CHECK_EQ(s.bad, 0);
    /* everything: the WAL is empty and may restart anywhere (Raft after a snapshot) */
    CHECK_EQ(wal_truncate_suffix(w, 1), 0);
    CHECK_EQ(wal_last_index(w), 0);
    CHECK_EQ(count_segments(dir), 0);
    CHECK_EQ(append_range(w, 5000, 5010, 4), 0);
    wal_close(w);
    CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
    CHECK_EQ(s.first, 5000);
    CHECK_EQ(s.count, 11);
    CHECK_EQ(s.bad, 0);
    wal_close(w);
}

TEST(leftover_temp_segment_is_deleted)
{
    wal_t *w;
    seen_t s;
    char p[400];
    new_dir();
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 10, 1), 0);
    wal_close(w);
    snprintf(p, sizeof(p), "%s/00000000000000000011.seg.tmp", dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "QFS", 3) == 3); /* a creation interrupted mid-header */
    close(fd);
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 10);
    CHECK(access(p, F_OK) != 0);
    CHECK_EQ(append_range(w, 11, 12, 1), 0);
    wal_close(w);
}

/* ---- the torn / corrupt table ---- */

/* Fixture for the table: records 1..N of term 1 in 3+ segments of 4 KiB. */
#define TN 120
enum where { LAST, FIRST, MIDDLE };

typedef struct damage_case {
    const char *name;
    enum where seg;
    /* mutation: one of */
    off_t cut;            /* >0: cut this many bytes off the end of the segment */
    off_t append_zeros;   /* >0: append zeros */
    off_t append_garbage; /* >0: append pseudo-random bytes */
    int flip_record;      /* >0: flip a bit of this record (1 = first of the segment,
                             -1 = last), at flip_field offset within the record */
    int flip_field;       /* byte offset inside the record: 0 len, 4 crc, 8 index, 24+ payload */
    off_t flip_at;        /* >=0 with flip_record == 0: flip this absolute file offset */
    int remove;           /* delete the segment */
    int rename_to_next;   /* rename the segment so its name disagrees with its header */
    off_t zero_record_end; /* >0: zero this many bytes at the end of the last record; -1:
                              all of it (pages that never reached the disk) */
    off_t tail_flip;      /* >0: flip a bit this many bytes past the last record */
    int tail;             /* the fixture ends with a crash: the last segment keeps its zero
                             tail (otherwise a clean close cut it) */
    /* expectation */
    int rc;               /* 0 (torn, recovered), -QERR_CORRUPT or -QERR_FORMAT */
    int lost;             /* records lost when rc == 0 */
    const char *msg;      /* substring of the error message, with the offset filled in */
    int keeps_size;       /* rc == 0: the file keeps its size (a zero tail, kept); otherwise
                             it is cut to the damaged offset (or left as it was, if none) */
} damage_case_t;

static const damage_case_t damage[] = {
    { "cut inside the last record's header", LAST, .cut = -1, .flip_at = -1, .rc = 0,
      .lost = 1 },
    { "cut inside the last record's payload", LAST, .cut = 5, .flip_at = -1, .rc = 0,
      .lost = 1 },
    { "zeroed tail after the last record", LAST, .append_zeros = 4000, .flip_at = -1,
      .rc = 0, .lost = 0, .keeps_size = 1 },  /* a zero tail: kept, no longer cut */
    { "garbage tail after the last record", LAST, .append_garbage = 333, .flip_at = -1,
      .rc = 0, .lost = 0 },
    { "flipped payload bit in the last record", LAST, .flip_record = -1, .flip_field = 30,
      .flip_at = -1, .rc = 0, .lost = 1 },
    { "flipped index bit in the last record", LAST, .flip_record = -1, .flip_field = 9,
      .flip_at = -1, .rc = 0, .lost = 1 },
    { "flipped crc bit in the last record", LAST, .flip_record = -1, .flip_field = 4,
      .flip_at = -1, .rc = 0, .lost = 1 },
    { "flipped payload bit in a middle record", LAST, .flip_record = 2, .flip_field = 30,
      .flip_at = -1, .rc = -QERR_CORRUPT, .msg = "byte offset %lld: record checksum" },
    { "flipped length bit in a middle record", LAST, .flip_record = 1, .flip_field = 2,
      .flip_at = -1, .rc = -QERR_CORRUPT, .msg = "byte offset %lld: " },
    { "flipped bit in an earlier segment's last record", FIRST, .flip_record = -1,
      .flip_field = 30, .flip_at = -1, .rc = -QERR_CORRUPT,
      .msg = "byte offset %lld: record checksum" },
    { "cut end of an earlier segment", FIRST, .cut = 5, .flip_at = -1, .rc = -QERR_CORRUPT,
      .msg = "byte offset %lld: incomplete" },
    { "garbage after an earlier segment", FIRST, .append_garbage = 50, .flip_at = -1,
      .rc = -QERR_CORRUPT, .msg = "byte offset %lld: " },
    { "bad magic", FIRST, .flip_at = 0, .rc = -QERR_CORRUPT, .msg = "bad magic" },
    { "bad magic in the last segment", LAST, .flip_at = 2, .rc = -QERR_CORRUPT,
      .msg = "bad magic" },
    { "unknown version", FIRST, .flip_at = 9, .rc = -QERR_FORMAT, .msg = "version 513" },
    { "segment header checksum", MIDDLE, .flip_at = 20, .rc = -QERR_CORRUPT,
      .msg = "header checksum" },
    { "missing middle segment (index gap)", MIDDLE, .remove = 1, .flip_at = -1,
      .rc = -QERR_CORRUPT, .msg = "index gap" },
    { "segment name disagrees with header", FIRST, .rename_to_next = 1, .flip_at = -1,
      .rc = -QERR_CORRUPT, .msg = "does not match" },
    /* the zero tail */
    { "zero tail after the last record (crash)", LAST, .tail = 1, .flip_at = -1, .rc = 0,
      .lost = 0, .keeps_size = 1 },
    { "torn record followed by the zero tail", LAST, .tail = 1, .zero_record_end = 5,
      .flip_at = -1, .rc = 0, .lost = 1 },
    { "last record never written, zero tail", LAST, .tail = 1, .zero_record_end = -1,
      .flip_at = -1, .rc = 0, .lost = 1, .keeps_size = 1 },
    { "flipped payload bit in the last record, zero tail", LAST, .tail = 1,
      .flip_record = -1, .flip_field = 30, .flip_at = -1, .rc = 0, .lost = 1 },
    { "flipped payload bit in a middle record, zero tail", LAST, .tail = 1,
      .flip_record = 2, .flip_field = 30, .flip_at = -1, .rc = -QERR_CORRUPT,
      .msg = "byte offset %lld: record checksum" },
    { "non-zero byte inside the zero tail", LAST, .tail = 1, .tail_flip = 100,
      .flip_at = -1, .rc = 0, .lost = 0 },
    { "zero tail after an earlier segment", FIRST, .append_zeros = 4000, .flip_at = -1,
      .rc = -QERR_CORRUPT, .msg = "byte offset %lld: record checksum" },
};

static void run_damage(const damage_case_t *c)
{
    wal_t *w;
    seen_t s;
    char *msg = NULL, want[160] = "";
    new_dir();
    if (c->tail) {
        CHECK_EQ(crash_after(4096, 1, TN, TN, 1), 0);
    } else {
        CHECK_EQ(open_wal(4096, &s, &w, NULL), 0);
        CHECK_EQ(append_range(w, 1, TN, 1), 0);
        wal_close(w);
    }
    CHECK(count_segments(dir) >= 3);
    const char *p = segment(c->seg == LAST ? -1 : c->seg == FIRST ? 0 : 1);
    CHECK(p);
    char path[600];
    snprintf(path, sizeof(path), "%s", p);
    uint64_t first = seg_first(path);
    off_t size = used_end(path), file_size = fsize(path);
    CHECK(size > 0);
    CHECK(c->tail ? file_size > size : file_size == size);
    /* last record of this segment */
    uint64_t last = first;
    while (record_offset(path, first, last + 1) < size)
        last++;
    off_t bad_off = -1;
    if (c->cut) {
        off_t cut = c->cut > 0 ? c->cut : size - record_offset(path, first, last) - 10;
        CHECK(truncate(path, size - cut) == 0);
        bad_off = record_offset(path, first, last);
    } else if (c->append_zeros || c->append_garbage) {
        int fd = open(path, O_WRONLY | O_APPEND);
        CHECK(fd >= 0);
        off_t n = c->append_zeros ? c->append_zeros : c->append_garbage;
        uint8_t b[4096] = { 0 };
        for (off_t i = 0; c->append_garbage && i < n; i++)
            b[i] = (uint8_t)(i * 2654435761u >> 13);
        CHECK(write(fd, b, (size_t)n) == n);
        close(fd);
        bad_off = size;
    } else if (c->flip_record) {
        uint64_t idx = c->flip_record > 0 ? first + (uint64_t)c->flip_record - 1 : last;
        bad_off = record_offset(path, first, idx);
        CHECK_EQ(flip(path, bad_off + c->flip_field, 0x02), 0);
    } else if (c->flip_at >= 0) {
        CHECK_EQ(flip(path, c->flip_at, 0x02), 0);
    } else if (c->remove) {
        CHECK(unlink(path) == 0);
    } else if (c->zero_record_end) {
        off_t r = record_offset(path, first, last);
        off_t n = c->zero_record_end > 0 ? c->zero_record_end : size - r;
        uint8_t z[4096] = { 0 };
        int fd = open(path, O_WRONLY);
        CHECK(fd >= 0 && n <= (off_t)sizeof(z));
        CHECK(pwrite(fd, z, (size_t)n, size - n) == n);
        close(fd);
        bad_off = r;
    } else if (c->tail_flip) {
        CHECK_EQ(flip(path, size + c->tail_flip, 0x40), 0);
        bad_off = size;
    } else if (c->rename_to_next) {
        char to[sizeof(path)];
        snprintf(to, sizeof(to), "%.300s/%020" PRIu64 ".seg", dir, first + 1);
        CHECK(rename(path, to) == 0);
        snprintf(path, sizeof(path), "%s", to);
    }
    if (c->msg)
        snprintf(want, sizeof(want), c->msg, (long long)bad_off);

    off_t damaged_size = fsize(path);
    int rc = open_wal(4096, &s, &w, &msg);
    if (rc != c->rc)
        printf("# %s: rc %d (%s), message: %s\n", c->name, rc, qerr_str(rc),
               msg ? msg : "-");
    CHECK_EQ(rc, c->rc);
    if (rc == 0) {
        CHECK(msg == NULL);
        if (c->keeps_size)
            CHECK_EQ(fsize(path), damaged_size);
        else
            CHECK_EQ(fsize(path), bad_off >= 0 ? bad_off : file_size);
        CHECK_EQ(s.count, TN - c->lost);
        CHECK_EQ(s.bad, 0);
        CHECK_EQ(wal_last_index(w), TN - c->lost);
        /* the damage is cut off for good: the log continues, and a reopen sees no tail */
        CHECK_EQ(append_range(w, TN - c->lost + 1, TN + 3, 1), 0);
        wal_close(w);
        CHECK_EQ(open_wal(4096, &s, &w, &msg), 0);
        CHECK_EQ(s.count, TN + 3);
        CHECK_EQ(s.bad, 0);
        wal_close(w);
    } else {
        int has_path = msg && strstr(msg, c->remove ? dir : path) != NULL;
        int has_want = msg && strstr(msg, want) != NULL;
        if (!has_path || !has_want)
            printf("# %s: message \"%s\" lacks \"%s\" or the file name\n", c->name,
                   msg ? msg : "-", want);
        free(msg);
        CHECK(has_path);
        CHECK(has_want);
    }
}

TEST(torn_and_corrupt_table)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
        check_case_failed = 0;
        run_damage(&damage[i]);
        printf("# %s %s\n", check_case_failed ? "FAILED" : "passed", damage[i].name);
        failed |= check_case_failed;
    }
    check_case_failed = failed;
}

/* ---- disk full ---- */

/* A power loss during the sync of the last batch can leave a damaged record followed by
 * valid ones of the same batch (pages reach the disk in any order). Its records carry no
 * synced mark, so that is a torn tail, cut back to the last synced batch. A synced mark
 * after the damage proves corruption instead. */
TEST(torn_unsynced_batch_versus_synced_mark)
{
    for (int marked = 0; marked <= 1; marked++) {
        wal_t *w;
        seen_t s;
        char *msg = NULL;
        new_dir();
        CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
        CHECK_EQ(append_range(w, 1, 5, 1), 0);     /* batch 1: synced, record 5 marked */
        CHECK_EQ(append_range(w, 6, 10, 1), 0);    /* batch 2: records 6..10 */
        wal_close(w);
        const char *seg = segment(-1);
        CHECK(seg != NULL);
        off_t r7 = record_offset(seg, 1, 7), r10 = record_offset(seg, 1, 10);
        CHECK_EQ(flip(seg, r7 + 30, 0x10), 0);     /* damage record 7's payload */
        if (!marked)
            CHECK_EQ(flip(seg, r10 + 3, 0x80), 0); /* batch 2's mark never reached the disk */
        int rc = open_wal(0, &s, &w, &msg);
        if (marked) {
            CHECK_EQ(rc, -QERR_CORRUPT);
            CHECK(msg && strstr(msg, "synced record follows"));
        } else {
            CHECK_EQ(rc, 0);
            CHECK_EQ(s.count, 6);                  /* 1..6 kept; 7..10 cut as torn */
            CHECK(!s.bad);
            CHECK_EQ(fsize(seg), r7);
            wal_close(w);
        }
        free(msg);
    }
}

static int can_mount_tmpfs(void)
{
    char mnt[128];
    snprintf(mnt, sizeof(mnt), "%s/probe", base);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0)
        return 0;
    umount2(mnt, MNT_DETACH);
    return 1;
}

struct fill_check {
    uint64_t n;
    int bad;
    size_t len;
};

static int fill_cb(void *arg, uint64_t index, uint64_t term, const void *p, size_t len)
{
    struct fill_check *k = arg;
    const uint8_t *b = p;
    if (index != k->n + 1 || term != 1 || len != k->len)
        k->bad = 1;
    for (size_t i = 0; i < len && !k->bad; i++)
        if (b[i] != (uint8_t)index)
            k->bad = 1;
    k->n = index;
    return 0;
}

/* Appends n records from index from (bytes = index) and syncs; the first error. */
static int try_batch(wal_t *w, uint64_t from, int n, uint8_t *buf, size_t rec_len)
{
    for (uint64_t i = from; i < from + (uint64_t)n; i++) {
        memset(buf, (int)i, rec_len);
        int rc = wal_append(w, i, 1, buf, rec_len);
        if (rc)
            return rc;
    }
    return wal_sync(w);
}

/* Fills a 1 MiB tmpfs with batches of records of rec_len bytes, in segments of seg_bytes.
 * Expects -QERR_NOSPACE with the batch dropped, the WAL usable once space is freed, and a
 * reopen to see exactly the synced batches. */
static void fill_disk(size_t rec_len, uint64_t seg_bytes, uint64_t tail_min_free)
{
    char mnt[128], filler[200];
    wal_t *w = NULL;
    wal_options_t o = { .segment_bytes = seg_bytes, .tail_min_free = tail_min_free };
    size_t filler_len = rec_len < 65536 ? 65536 : rec_len;
    uint8_t *buf = calloc(1, filler_len);
    uint64_t next = 1, synced = 0;
    int rc = 0, ok = 1, batch = rec_len > 100000 ? 1 : 3;
    snprintf(mnt, sizeof(mnt), "%s/full", base);
    mkdir(mnt, 0755);
    CHECK(buf);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
        free(buf);
        CHECK(!"mount tmpfs");
    }
    snprintf(dir, sizeof(dir), "%s/wal", mnt);
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    int fd = open(filler, O_WRONLY | O_CREAT, 0644);
    ok = fd >= 0 && write(fd, buf, filler_len) == (ssize_t)filler_len;
    if (fd >= 0)
        close(fd);
    ok = ok && wal_open(dir, &o, NULL, NULL, &w, NULL) == 0;
    while (ok && next < 100000) {
        for (int i = 0; i < batch && rc == 0; i++, next++) {
            memset(buf, (int)next, rec_len);
            rc = wal_append(w, next, 1, buf, rec_len);
        }
        if (rc == 0)
            rc = wal_sync(w);
        if (rc)
            break;
        synced = next - 1;
    }
    wal_stats_t st;
    if (ok)
        wal_get_stats(w, &st);
    ok = ok && rc == -QERR_NOSPACE && synced >= 2 && !st.failed;
    ok = ok && wal_last_index(w) == synced;
    /* still full: the same batch fails again (at append or at sync), the WAL stays put */
    ok = ok && try_batch(w, synced + 1, batch, buf, rec_len) == -QERR_NOSPACE &&
         wal_last_index(w) == synced;
    /* nothing of the failed batches comes back after a restart */
    if (w)
        wal_close(w);
    w = NULL;
    ok = ok && wal_open(dir, &o, NULL, NULL, &w, NULL) == 0 && wal_last_index(w) == synced;
    /* free space: the WAL works again */
    unlink(filler);
    ok = ok && try_batch(w, synced + 1, batch, buf, rec_len) == 0;
    if (w)
        wal_close(w);
    /* reopen: exactly 1..synced+batch, each with its own bytes */
    struct fill_check k = { 0, 0, rec_len };
    w = NULL;
    ok = ok && wal_open(dir, &o, fill_cb, &k, &w, NULL) == 0;
    if (ok) {
        ok = k.n == synced + (uint64_t)batch && !k.bad;
        wal_close(w);
    }
    if (!ok)
        printf("# rec_len %zu seg %llu: rc %d synced %llu\n", rec_len,
               (unsigned long long)seg_bytes, rc, (unsigned long long)synced);
    else
        printf("# rec_len %zu seg %llu: full after %llu records\n", rec_len,
               (unsigned long long)seg_bytes, (unsigned long long)synced);
    umount2(mnt, MNT_DETACH);
    free(buf);
    CHECK(ok);
}

TEST(disk_full_buffered_records)
{
    fill_disk(3000, 0, 0);
}

TEST(disk_full_while_rolling_segments)
{
    fill_disk(3000, 20000, 0);
}

/* The same with zero tails forced on (the 1 MiB tmpfs is far below WAL_TAIL_MIN_FREE):
 * each 20000-byte segment is zero-filled to its end at its first sync, and still the batch
 * that does not fit is dropped and nothing else is lost. */
TEST(disk_full_with_zero_tails)
{
    fill_disk(3000, 20000, 1);
}

TEST(disk_full_direct_large_records)
{
    fill_disk(300 << 10, 0, 0);
}

/* ---- fsync failure ---- */

static int fail_after;
static int failing_sync(int fd)
{
    if (fail_after-- <= 0) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

TEST(fsync_failure_fails_the_wal)
{
    wal_t *w;
    wal_options_t o = { .sync_fn = failing_sync };
    uint8_t buf[300];
    new_dir();
    fail_after = 2; /* header of the first segment, first batch */
    CHECK_EQ(wal_open(dir, &o, NULL, NULL, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 10, 1), 0);
    CHECK_EQ(wal_append(w, 11, 1, buf, payload_for(11, buf)), 0);
    CHECK_EQ(wal_sync(w), -QERR_IO);
    CHECK_EQ(wal_append(w, 12, 1, buf, payload_for(12, buf)), -QERR_FAILED);
    CHECK_EQ(wal_sync(w), -QERR_FAILED);
    CHECK_EQ(wal_truncate_suffix(w, 5), -QERR_FAILED);
    wal_stats_t st;
    wal_get_stats(w, &st);
    CHECK(st.failed);
    wal_close(w);
    /* a restart reads what is on disk */
    seen_t s;
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK(s.count >= 10);
    CHECK_EQ(s.bad, 0);
    wal_close(w);
}

/* ---- the in-memory scanner ---- */

static uint8_t *read_file(const char *p, size_t *len)
{
    off_t n = fsize(p);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    int fd = open(p, O_RDONLY);
    if (!b || fd < 0 || read(fd, b, (size_t)n) != n) {
        free(b);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    close(fd);
    *len = (size_t)n;
    return b;
}

TEST(scan_buffer_in_memory)
{
    wal_t *w;
    seen_t s;
    wal_scan_t r;
    size_t len;
    new_dir();
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 50, 1), 0);
    wal_close(w);
    uint8_t *b = read_file(segment(0), &len);
    CHECK(b);
    memset(&s, 0, sizeof(s));
    int rc = wal_scan_buffer(b, len, 1, 0, 0, collect, &s, &r);
    int ok = rc == 0 && s.count == 50 && !s.bad && r.records == 50 && r.last_index == 50 &&
             r.valid_end == len;
    /* a cut buffer: torn if last, corrupt if not */
    rc = wal_scan_buffer(b, len - 3, 0, 0, 1, NULL, NULL, &r);
    ok = ok && rc == 0 && r.last_index == 49 && r.valid_end < len - 3;
    rc = wal_scan_buffer(b, len - 3, 0, 0, 0, NULL, NULL, &r);
    ok = ok && rc == -QERR_CORRUPT && r.bad_off == r.valid_end;
    /* wrong expected first index */
    ok = ok && wal_scan_buffer(b, len, 2, 0, 1, NULL, NULL, &r) == -QERR_CORRUPT;
    /* a previous term above this segment's terms */
    ok = ok && wal_scan_buffer(b, len, 0, 5, 1, NULL, NULL, &r) == -QERR_CORRUPT;
    /* every prefix and every single-bit flip: never a crash, never a record past damage */
    for (size_t n = 0; ok && n <= len; n += 7) {
        rc = wal_scan_buffer(b, n, 0, 0, 1, NULL, NULL, &r);
        ok = (n < WAL_SEGMENT_HEADER) ? rc == -QERR_CORRUPT : rc == 0 && r.valid_end <= n;
    }
    for (size_t bit = 0; ok && bit < len * 8; bit += 11) {
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        memset(&s, 0, sizeof(s));
        rc = wal_scan_buffer(b, len, 0, 0, 1, collect, &s, &r);
        ok = rc == 0 || rc == -QERR_CORRUPT || rc == -QERR_FORMAT;
        ok = ok && !s.bad; /* records delivered are always intact */
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    free(b);
    CHECK(ok);
}

/* ---- the zero tail ---- */

/* A record header of zeros is never a record: its CRC fails, and with a CRC forced to
 * match, index 0 is refused as corruption. A zero tail is the end of the log in the last
 * segment, and trailing bytes (corruption) in any other. */
TEST(zero_header_is_never_a_record)
{
    uint8_t z[16] = { 0 }, b[WAL_SEGMENT_HEADER + 4096] = { 0 };
    wal_t *w;
    seen_t s;
    wal_scan_t r;
    size_t len;
    CHECK(crc32c(0, z, sizeof(z)) != 0);
    new_dir();
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 1, 1), 0);
    wal_close(w);
    uint8_t *f = read_file(segment(0), &len);
    CHECK(f);
    memcpy(b, f, WAL_SEGMENT_HEADER); /* a valid header, first index 1, then zeros */
    free(f);
    CHECK_EQ(wal_scan_buffer(b, sizeof(b), 1, 0, 1, NULL, NULL, &r), 0);
    CHECK_EQ(r.records, 0);
    CHECK_EQ(r.valid_end, WAL_SEGMENT_HEADER);
    CHECK_EQ(r.zero_tail, 1);
    CHECK_EQ(wal_scan_buffer(b, sizeof(b), 1, 0, 0, NULL, NULL, &r), -QERR_CORRUPT);
    /* a header of zeros whose CRC was made to match: index 0 is refused */
    uint32_t crc = crc32c(0, z, sizeof(z));
    memcpy(b + WAL_SEGMENT_HEADER + 4, &crc, 4); /* little-endian host */
    CHECK_EQ(wal_scan_buffer(b, sizeof(b), 1, 0, 1, NULL, NULL, &r), -QERR_CORRUPT);
    CHECK(strstr(r.why, "index 0") != NULL);
}

/* Appends whose batches fit in the zero tail do not change the file size; the tail is
 * extended by chunks when it runs low, never past the segment size, and a clean close
 * cuts it. Without the tail, every sync would have grown the file. */
TEST(appends_do_not_grow_the_file)
{
    wal_t *w;
    seen_t s;
    wal_stats_t st;
    new_dir();
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 5, 1), 0);
    off_t size = fsize(segment(0));
    int changes = 0;
    uint64_t i = 6;
    for (int b = 0; b < 200; b++, i += 5) { /* ~150 KiB: inside the first chunk */
        CHECK_EQ(append_range(w, i, i + 4, 1), 0);
        changes += fsize(segment(0)) != size;
    }
    CHECK_EQ(changes, 0);
    wal_get_stats(w, &st);
    CHECK(st.tail_bytes >= (1u << 20) / 4);
    CHECK_EQ(st.bytes + st.tail_bytes, size);
    /* ~3 MiB more: a few extensions, the tail between a quarter chunk and a chunk */
    for (; i < 20000; i += 5) {
        CHECK_EQ(append_range(w, i, i + 4, 1), 0);
        off_t now = fsize(segment(0));
        changes += now != size;
        size = now;
        wal_get_stats(w, &st);
        CHECK(st.tail_bytes >= (1u << 20) / 4 && st.tail_bytes <= (1u << 20) + 4096);
        CHECK_EQ(st.bytes + st.tail_bytes, size);
    }
    CHECK(changes >= 3 && changes <= 6);
    wal_close(w);
    CHECK_EQ(fsize(segment(0)), st.bytes);
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, i - 1);
    CHECK_EQ(s.bad, 0);
    wal_close(w);
    /* a small segment: the tail stops at the segment size */
    new_dir();
    CHECK_EQ(open_wal(65536, &s, &w, NULL), 0);
    CHECK_EQ(append_range(w, 1, 5, 1), 0);
    CHECK_EQ(fsize(segment(0)), 65536);
    wal_close(w);
}

/* After a crash the zero tail is kept, the log goes on inside it, and a reopen after a
 * clean close (tail cut) writes a new one. */
TEST(zero_tail_after_crash_and_clean_close)
{
    wal_t *w;
    seen_t s;
    wal_stats_t st;
    new_dir();
    CHECK_EQ(crash_after(0, 1, 100, 10, 1), 0);
    off_t size = fsize(segment(0)), used = used_end(segment(0));
    CHECK(used > 0 && size > used);
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 100);
    CHECK_EQ(s.bad, 0);
    CHECK_EQ(fsize(segment(0)), size); /* kept, not cut as a torn tail */
    wal_get_stats(w, &st);
    CHECK_EQ(st.bytes, used);
    CHECK_EQ(st.tail_bytes, size - used);
    CHECK_EQ(append_range(w, 101, 110, 1), 0);
    CHECK_EQ(fsize(segment(0)), size); /* written over the tail */
    wal_close(w);
    used = used_end(segment(0));
    CHECK_EQ(fsize(segment(0)), used);
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 110);
    CHECK_EQ(s.bad, 0);
    CHECK_EQ(append_range(w, 111, 111, 1), 0);
    CHECK(fsize(segment(0)) > used + (1 << 20) / 4); /* a new tail */
    wal_close(w);
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 111);
    CHECK_EQ(s.bad, 0);
    wal_close(w);
}

static int sync_calls, exit_at_sync;
static int exiting_sync(int fd)
{
    if (++sync_calls == exit_at_sync)
        _exit(0); /* the crash: whatever was written is in the page cache, never synced */
    return fdatasync(fd);
}

/* A crash during the sync that carries a zero-fill extension (a process crash: the page
 * cache keeps the zeros and the records), and a power cut that left the extension partly
 * on disk (file size grown, zeros or holes): the records are all there, the tail is kept,
 * and the log goes on. */
TEST(crash_during_zero_fill_extension)
{
    wal_t *w;
    seen_t s;
    new_dir();
    CHECK_EQ(crash_after(0, 1, 20, 20, 1), 0);
    off_t used = used_end(segment(0)), size = fsize(segment(0));
    CHECK(size > used);
    /* the next batch fills the tail past its low mark: the sync extends it, and dies */
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        wal_options_t o = { .sync_fn = exiting_sync, .tail_min_free = 1 };
        uint8_t big[64 << 10];
        sync_calls = 0;
        exit_at_sync = 2; /* 1: open's sync of the last segment; 2: the batch */
        if (wal_open(dir, &o, NULL, NULL, &w, NULL) != 0)
            _exit(2);
        memset(big, 7, sizeof(big));
        for (uint64_t i = 21; i <= 40; i++)
            if (wal_append(w, i, 1, big, sizeof(big)) != 0)
                _exit(3);
        wal_sync(w);
        _exit(4);
    }
    int wst;
    CHECK(waitpid(pid, &wst, 0) == pid);
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    /* zeros past the records of 21..40: the extension had been written */
    CHECK(fsize(segment(0)) > used + 20 * (WAL_RECORD_HEADER + (64 << 10)));
    CHECK(size > 0);
    CHECK_EQ(wal_open(dir, &(wal_options_t){ .tail_min_free = 1 }, NULL, NULL, &w, NULL), 0);
    CHECK_EQ(wal_last_index(w), 40);
    wal_close(w);
    /* a power cut: the records of 21..40 never reached the disk, the size did */
    CHECK(truncate(segment(0), used) == 0);
    CHECK(truncate(segment(0), used + (3 << 20) / 2) == 0); /* a hole past the records */
    int fd = open(segment(0), O_WRONLY);
    uint8_t z[5000] = { 0 };
    CHECK(fd >= 0 && pwrite(fd, z, sizeof(z), used) == (ssize_t)sizeof(z));
    close(fd);
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 20);
    CHECK_EQ(s.bad, 0);
    CHECK_EQ(fsize(segment(0)), used + (3 << 20) / 2);
    CHECK_EQ(append_range(w, 21, 30, 1), 0);
    wal_close(w);
    CHECK_EQ(open_wal(0, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 30);
    CHECK_EQ(s.bad, 0);
    wal_close(w);
}

/* Rolling seals the old segment at its used size: after a crash, every segment but the
 * last has no trailing bytes (a zero tail there would be corruption), the last has its
 * tail, and everything replays. */
TEST(roll_with_zero_tail)
{
    wal_t *w;
    seen_t s;
    size_t len;
    wal_scan_t r;
    new_dir();
    CHECK_EQ(crash_after(65536, 1, 3000, 7, 1), 0);
    int n = count_segments(dir);
    CHECK(n >= 4);
    for (int k = 0; k < n; k++) {
        char p[600];
        snprintf(p, sizeof(p), "%s", segment(k));
        uint8_t *b = read_file(p, &len);
        CHECK(b);
        int rc = wal_scan_buffer(b, len, 0, 0, k == n - 1, NULL, NULL, &r);
        free(b);
        CHECK_EQ(rc, 0);
        CHECK(len <= 65536);
        if (k < n - 1)
            CHECK_EQ(r.valid_end, len);
        else
            CHECK(r.zero_tail && r.valid_end < len);
    }
    CHECK_EQ(open_wal(65536, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 3000);
    CHECK_EQ(s.bad, 0);
    CHECK_EQ(append_range(w, 3001, 3500, 1), 0);
    wal_close(w);
    CHECK_EQ(open_wal(65536, &s, &w, NULL), 0);
    CHECK_EQ(s.count, 3500);
    CHECK_EQ(s.bad, 0);
    wal_close(w);
}

/* A disk with less room than a zero-fill chunk: the extension fails and is cut off again,
 * the records still go to the disk until it is really full (a full disk's deletes must
 * not fail for want of a tail), and nothing is left that the disk does not have. */
TEST(disk_full_with_less_room_than_a_chunk)
{
    char mnt[128], filler[200];
    wal_t *w = NULL;
    wal_stats_t st;
    uint8_t buf[3000];
    uint64_t next = 1, synced = 0;
    int rc = 0;
    snprintf(mnt, sizeof(mnt), "%s/full2", base);
    mkdir(mnt, 0755);
    CHECK(mount("tmpfs", mnt, "tmpfs", 0, "size=1m") == 0);
    snprintf(dir, sizeof(dir), "%s/wal", mnt);
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    int fd = open(filler, O_WRONLY | O_CREAT, 0644);
    uint8_t *fill = calloc(1, 700 << 10);
    int ok = fd >= 0 && fill && write(fd, fill, 700 << 10) == 700 << 10;
    free(fill);
    if (fd >= 0)
        close(fd);
    /* far below WAL_TAIL_MIN_FREE: no tail at all */
    ok = ok && wal_open(dir, NULL, NULL, NULL, &w, NULL) == 0;
    ok = ok && try_batch(w, next, 3, buf, sizeof(buf)) == 0;
    next += 3;
    synced = next - 1;
    if (w)
        wal_get_stats(w, &st);
    ok = ok && st.tail_bytes == 0 && fsize(segment(0)) == (off_t)st.bytes;
    if (w)
        wal_close(w);
    /* forced on: the extension fails for want of room, and is cut off again */
    w = NULL;
    ok = ok && wal_open(dir, &(wal_options_t){ .tail_min_free = 1 }, NULL, NULL, &w,
                        NULL) == 0;
    while (ok && next < 10000) {
        for (int i = 0; i < 3 && rc == 0; i++, next++) {
            memset(buf, (int)next, sizeof(buf));
            rc = wal_append(w, next, 1, buf, sizeof(buf));
        }
        if (rc == 0)
            rc = wal_sync(w);
        if (rc)
            break;
        synced = next - 1;
        wal_get_stats(w, &st);
        ok = st.tail_bytes == 0 && fsize(segment(0)) == (off_t)st.bytes;
    }
    if (w)
        wal_get_stats(w, &st);
    ok = ok && rc == -QERR_NOSPACE && !st.failed && wal_last_index(w) == synced;
    /* ~300 KiB were free: nearly all of it went to records, none to zeros */
    ok = ok && synced * 3024 > (200u << 10);
    unlink(filler);
    ok = ok && try_batch(w, synced + 1, 3, buf, sizeof(buf)) == 0;
    if (w)
        wal_close(w);
    w = NULL;
    struct fill_check k = { 0, 0, sizeof(buf) };
    ok = ok && wal_open(dir, NULL, fill_cb, &k, &w, NULL) == 0;
    ok = ok && k.n == synced + 3 && !k.bad;
    if (w)
        wal_close(w);
    printf("# full after %llu records of 3000 bytes\n", (unsigned long long)synced);
    umount2(mnt, MNT_DETACH);
    CHECK(ok);
}

/* Replay equals a model across crashes: random batches (small, empty and direct-written
 * records), suffix and prefix truncations, rolls of 64 KiB segments; each round ends in a
 * crash (child) or a clean close, then a reopen must replay exactly the model. */
typedef struct model {
    uint64_t first, last;
    uint64_t term[4096];
    uint32_t len[4096];
} model_t;

static void model_payload(uint64_t index, uint64_t term, uint32_t len, uint8_t *b)
{
    for (uint32_t i = 0; i < len; i++)
        b[i] = (uint8_t)(index * 13 + term * 7 + i);
}

struct model_check {
    const model_t *m;
    uint64_t n, next;
    int bad;
    uint8_t *buf;
};

static int model_cb(void *arg, uint64_t index, uint64_t term, const void *p, size_t len)
{
    struct model_check *k = arg;
    const model_t *m = k->m;
    if ((k->n && index != k->next) || index < m->first || index > m->last ||
        term != m->term[index] || len != m->len[index]) {
        k->bad = 1;
        return 0;
    }
    model_payload(index, term, (uint32_t)len, k->buf);
    if (memcmp(p, k->buf, len) != 0)
        k->bad = 1;
    k->n++;
    k->next = index + 1;
    return 0;
}

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(uint64_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state % n;
}

/* One round of random work on the WAL in dir, applied to m too. Returns 0 or the step. */
static int model_round(wal_t *w, model_t *m, uint8_t *buf)
{
    for (int step = 0; step < 40; step++) {
        uint64_t op = rnd(10), term = m->last ? m->term[m->last] : 1;
        if (op < 7 && m->last + 20 < 4096) {
            uint64_t n = 1 + rnd(12);
            if (rnd(4) == 0)
                term++;
            for (uint64_t j = 0; j < n; j++) {
                uint64_t i = m->last + 1;
                uint32_t len = rnd(20) == 0 ? (300u << 10) : (uint32_t)rnd(2000);
                model_payload(i, term, len, buf);
                if (wal_append(w, i, term, buf, len) != 0)
                    return 100 + step;
                if (!m->first)
                    m->first = i;
                m->last = i;
                m->term[i] = term;
                m->len[i] = len;
            }
            if (wal_sync(w) != 0)
                return 200 + step;
        } else if (op < 9 && m->last > m->first) {
            uint64_t from = m->first + 1 + rnd(m->last - m->first);
            if (m->last - from > 30)
                from = m->last - rnd(30);
            if (wal_truncate_suffix(w, from) != 0)
                return 300 + step;
            m->last = from - 1;
        } else if (m->last > m->first) {
            uint64_t upto = m->first + rnd(m->last - m->first);
            if (wal_truncate_prefix(w, upto) != 0)
                return 400 + step;
            m->first = wal_first_index(w);
        }
    }
    return 0;
}

TEST(replay_equals_model_across_crashes)
{
    wal_t *w;
    wal_options_t o = { .segment_bytes = 65536, .tail_min_free = 1 };
    uint8_t *buf = malloc(300u << 10);
    /* shared with the children, so a round's model survives its crash */
    model_t *m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                      -1, 0);
    CHECK(buf && m != MAP_FAILED);
    memset(m, 0, sizeof(*m));
    new_dir();
    int ok = 1;
    for (int round = 0; round < 24 && ok; round++) {
        int crash = round % 3 != 2, rc = 0;
        if (crash) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                rc = wal_open(dir, &o, NULL, NULL, &w, NULL);
                _exit(rc == 0 && model_round(w, m, buf) == 0 ? 0 : 1);
            }
            int wst;
            ok = pid > 0 && waitpid(pid, &wst, 0) == pid && WIFEXITED(wst) &&
                 WEXITSTATUS(wst) == 0;
            rnd(1); /* the child's draws do not move the parent's generator: vary it */
            rnd_state += (uint64_t)round * 0x9e3779b97f4a7c15ull;
        } else {
            ok = wal_open(dir, &o, NULL, NULL, &w, NULL) == 0;
            if (ok) {
                rc = model_round(w, m, buf);
                wal_close(w);
                ok = rc == 0;
            }
        }
        struct model_check k = { m, 0, 0, 0, buf };
        if (ok)
            ok = wal_open(dir, &o, model_cb, &k, &w, NULL) == 0;
        if (ok) {
            ok = !k.bad && wal_last_index(w) == m->last &&
                 (m->last == 0 || k.next == m->last + 1);
            wal_close(w);
        }
        if (!ok)
            printf("# round %d (%s, rc %d): replay differs from the model (%llu records, "
                   "last %llu, bad %d)\n", round, crash ? "crash" : "clean close", rc,
                   (unsigned long long)k.n, (unsigned long long)m->last, k.bad);
    }
    printf("# model: records %llu..%llu\n", (unsigned long long)m->first,
           (unsigned long long)m->last);
    munmap(m, sizeof(*m));
    free(buf);
    CHECK(ok);
}

int main(void)
{
    snprintf(base, sizeof(base), "/tmp/qfs-wal-XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(append_reopen_read_back);
    RUN(append_argument_checks);
    RUN(segment_roll);
    RUN(truncate_prefix_deletes_covered_segments);
    RUN(truncate_suffix_then_append);
    RUN(leftover_temp_segment_is_deleted);
    RUN(torn_and_corrupt_table);
    RUN(torn_unsynced_batch_versus_synced_mark);
    if (can_mount_tmpfs()) {
        RUN(disk_full_buffered_records);
        RUN(disk_full_while_rolling_segments);
        RUN(disk_full_with_zero_tails);
        RUN(disk_full_direct_large_records);
    } else {
        const char *why = strerror(errno);
        printf("ok disk_full_buffered_records # skip cannot mount a tmpfs: %s\n", why);
        printf("ok disk_full_while_rolling_segments # skip cannot mount a tmpfs: %s\n", why);
        printf("ok disk_full_with_zero_tails # skip cannot mount a tmpfs: %s\n", why);
        printf("ok disk_full_direct_large_records # skip cannot mount a tmpfs: %s\n", why);
    }
    RUN(fsync_failure_fails_the_wal);
    RUN(scan_buffer_in_memory);
    RUN(zero_header_is_never_a_record);
    RUN(appends_do_not_grow_the_file);
    RUN(zero_tail_after_crash_and_clean_close);
    RUN(crash_during_zero_fill_extension);
    RUN(roll_with_zero_tail);
    RUN(replay_equals_model_across_crashes);
    if (can_mount_tmpfs())
        RUN(disk_full_with_less_room_than_a_chunk);
    else
        printf("ok disk_full_with_less_room_than_a_chunk # skip cannot mount a tmpfs\n");
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", base);
    return CHECK_DONE();
}
