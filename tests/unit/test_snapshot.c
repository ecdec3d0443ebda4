/* tests/unit/test_snapshot.c — snapshot files: a multi-MB stream written in odd-sized puts
 * and read back in other sizes, damage (header, stream, truncation, the checksum of the
 * uncompressed stream behind a valid header) refused with the file named, version check, the reader's length strictness, temp files and older snapshots
 * cleaned, raw chunk shipping to another directory, and disk full on a small tmpfs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/bytes.h"
#include "cluster/crc32c.h"
#include "cluster/err.h"
#include "cluster/snapshot.h"
#include "tests/unit/check.h"

static char base[64];
static char dir[256];
static int ndirs;

static void new_dir(void)
{
    snprintf(dir, sizeof(dir), "%s/s%d", base, ndirs++);
    mkdir(dir, 0755);
}

/* Byte i of the test stream: stretches of text-like data and of pseudo-random bytes. */
static uint8_t stream_byte(uint64_t i)
{
    if ((i >> 16) % 3 == 0) { /* splitmix64: incompressible */
        uint64_t x = i + 0x9E3779B97F4A7C15ull;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        return (uint8_t)(x ^ (x >> 31));
    }
    return (uint8_t)("the quick brown fox jumps over the lazy dog "[i % 44]);
}

static void fill(uint8_t *b, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = stream_byte(off + i);
}

/* Writes a snapshot at index of total bytes, in puts of varying sizes. */
static int write_snap(const char *d, uint64_t index, uint64_t term, uint64_t total)
{
    static const size_t sizes[] = { 1, 7, 65536, 100000, 3 << 20, 12345, 0 };
    snap_writer_t *w;
    uint64_t off = 0;
    uint8_t *buf = malloc(3 << 20);
    int rc = buf ? snapshot_begin(d, index, term, &w) : -QERR_NOMEM;
    for (size_t k = 0; rc == 0 && off < total; k++) {
        size_t n = sizes[k % (sizeof(sizes) / sizeof(sizes[0]))];
        if (n > total - off)
            n = (size_t)(total - off);
        fill(buf, off, n);
        rc = snap_writer_put(w, buf, n);
        off += n;
    }
    if (rc == 0)
        rc = snapshot_commit(w);
    else if (buf)
        snapshot_abort(w);
    free(buf);
    return rc;
}

/* Reads the newest snapshot of d back, checking every byte. Returns 0 or the first error;
 * *msg gets the message (caller frees). */
static int read_snap(const char *d, snapshot_info_t *info, char **msg)
{
    static const size_t sizes[] = { 3, 1 << 20, 5000, 1, 77777 };
    snap_reader_t *r = NULL;
    uint8_t *buf = malloc(1 << 20), *want = malloc(1 << 20);
    uint64_t off = 0;
    int rc;
    *msg = NULL;
    if (!buf || !want) {
        free(buf);
        free(want);
        return -QERR_NOMEM;
    }
    rc = snapshot_open_read(d, info, msg);
    if (rc == 0)
        rc = snapshot_reader_open(info, &r, msg);
    for (size_t k = 0; rc == 0 && off < info->raw_len; k++) {
        size_t n = sizes[k % 5];
        if (n > info->raw_len - off)
            n = (size_t)(info->raw_len - off);
        rc = snap_reader_get(r, buf, n);
        fill(want, off, n);
        if (rc == 0 && memcmp(buf, want, n) != 0)
            rc = -QERR_INVAL; /* wrong bytes delivered */
        off += n;
    }
    if (r) {
        int crc = snapshot_reader_close(r, msg);
        if (rc == 0)
            rc = crc;
    }
    free(buf);
    free(want);
    return rc;
}

static int count_files(const char *d, const char *needle)
{
    DIR *dp = opendir(d);
    struct dirent *e;
    int n = 0;
    if (!dp)
        return -1;
    while ((e = readdir(dp)))
        n += e->d_name[0] != '.' && strstr(e->d_name, needle) != NULL;
    closedir(dp);
    return n;
}

static int flip(const char *p, off_t off)
{
    uint8_t b;
    int fd = open(p, O_RDWR), ok;
    if (fd < 0)
        return -1;
    ok = pread(fd, &b, 1, off) == 1;
    b ^= 0x08;
    ok = ok && pwrite(fd, &b, 1, off) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* ---- cases ---- */

TEST(round_trip_multi_mb)
{
    snapshot_info_t info;
    char *msg;
    const uint64_t total = (12ull << 20) + 4321;
    new_dir();
    CHECK_EQ(write_snap(dir, 1234, 7, total), 0);
    int rc = read_snap(dir, &info, &msg);
    if (rc)
        printf("# %s\n", msg ? msg : qerr_str(rc));
    free(msg);
    CHECK_EQ(rc, 0);
    CHECK_EQ(info.index, 1234);
    CHECK_EQ(info.term, 7);
    CHECK_EQ(info.raw_len, total);
    CHECK(strstr(info.path, "snap-00000000000000001234.snap") != NULL);
    printf("# %llu bytes stored in %llu\n", (unsigned long long)total,
           (unsigned long long)info.file_size);
    CHECK(info.file_size < total); /* two thirds of it compress */
    snapshot_info_free(&info);
    CHECK_EQ(count_files(dir, ".tmp"), 0);
}

TEST(empty_stream_and_not_found)
{
    snapshot_info_t info;
    char *msg = NULL;
    new_dir();
    CHECK_EQ(snapshot_open_read(dir, &info, &msg), -QERR_NOTFOUND);
    CHECK(msg == NULL);
    CHECK_EQ(write_snap(dir, 5, 1, 0), 0);
    CHECK_EQ(read_snap(dir, &info, &msg), 0);
    CHECK_EQ(info.raw_len, 0);
    snapshot_info_free(&info);
}

TEST(reader_is_strict_about_length)
{
    snapshot_info_t info;
    snap_reader_t *r;
    char *msg = NULL;
    uint8_t buf[200];
    new_dir();
    CHECK_EQ(write_snap(dir, 9, 1, 100), 0);
    CHECK_EQ(snapshot_open_read(dir, &info, &msg), 0);
    /* reading past the end: -QERR_CORRUPT ("a short snapshot") */
    CHECK_EQ(snapshot_reader_open(&info, &r, &msg), 0);
    CHECK_EQ(snap_reader_get(r, buf, 101), -QERR_CORRUPT);
    CHECK_EQ(snapshot_reader_close(r, NULL), -QERR_CORRUPT);
    /* stopping early: the close reports it */
    CHECK_EQ(snapshot_reader_open(&info, &r, &msg), 0);
    CHECK_EQ(snap_reader_get(r, buf, 60), 0);
    CHECK_EQ(snapshot_reader_close(r, &msg), -QERR_CORRUPT);
    CHECK(msg && strstr(msg, "read 60 of 100"));
    free(msg);
    msg = NULL;
    /* exactly right */
    CHECK_EQ(snapshot_reader_open(&info, &r, &msg), 0);
    CHECK_EQ(snap_reader_get(r, buf, 60), 0);
    CHECK_EQ(snap_reader_get(r, buf + 60, 40), 0);
    CHECK_EQ(snapshot_reader_close(r, &msg), 0);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(buf[i], stream_byte((uint64_t)i));
    snapshot_info_free(&info);
}

/* Damage at offset `at` of the newest file; expects rc, a message naming the file and
 * containing want. */
static void damaged(off_t at, off_t cut, int want_rc, const char *want)
{
    snapshot_info_t info;
    char *msg = NULL, path[400];
    new_dir();
    CHECK_EQ(write_snap(dir, 42, 3, 3 << 20), 0);
    snprintf(path, sizeof(path), "%s/snap-00000000000000000042.snap", dir);
    if (cut) {
        struct stat st;
        CHECK(stat(path, &st) == 0);
        CHECK(truncate(path, st.st_size - cut) == 0);
    } else {
        CHECK_EQ(flip(path, at), 0);
    }
    int rc = read_snap(dir, &info, &msg);
    snapshot_info_free(&info);
    printf("# %s\n", msg ? msg : "(no message)");
    int ok = msg && strstr(msg, path) && strstr(msg, want);
    free(msg);
    CHECK_EQ(rc, want_rc);
    CHECK(ok);
}

TEST(corrupt_header_byte)
{
    damaged(30, 0, -QERR_CORRUPT, "header checksum");
}

TEST(corrupt_stream_byte)
{
    damaged(100000, 0, -QERR_CORRUPT, "checksum mismatch in the compressed stream");
}

/* The CRC32C of the uncompressed stream (header bytes 48..51) is checked at the end of
 * reading: damage it and give the header a matching header CRC, so that the header and the
 * compressed stream are both valid and only that check can refuse the file. */
TEST(corrupt_uncompressed_stream_checksum)
{
    snapshot_info_t info;
    char *msg = NULL, path[400];
    uint8_t h[SNAP_HEADER];
    int fd;
    new_dir();
    CHECK_EQ(write_snap(dir, 43, 3, 1 << 20), 0);
    snprintf(path, sizeof(path), "%s/snap-00000000000000000043.snap", dir);
    CHECK((fd = open(path, O_RDWR)) >= 0);
    CHECK(pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h));
    CHECK_EQ(le_get32(h + 60), crc32c(0, h, SNAP_HEADER - 4)); /* the layout we assume */
    le_put32(h + 48, le_get32(h + 48) ^ 0x00010000u);
    le_put32(h + 60, crc32c(0, h, SNAP_HEADER - 4));
    CHECK(pwrite(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h));
    close(fd);
    /* The header is valid: the file is found and opened. */
    CHECK_EQ(snapshot_open_read(dir, &info, &msg), 0);
    CHECK_EQ(info.raw_len, 1 << 20);
    snapshot_info_free(&info);
    /* Every byte is delivered (and right), but the end of reading refuses the stream. */
    int rc = read_snap(dir, &info, &msg);
    snapshot_info_free(&info);
    printf("# %s\n", msg ? msg : "(no message)");
    int named = msg && strstr(msg, path) && strstr(msg, "checksum mismatch") &&
                strstr(msg, "uncompressed");
    free(msg);
    CHECK_EQ(rc, -QERR_CORRUPT);
    CHECK(named);
}

TEST(truncated_by_one_byte)
{
    damaged(0, 1, -QERR_CORRUPT, "bytes but its header says");
}

TEST(bad_magic)
{
    damaged(1, 0, -QERR_CORRUPT, "bad magic");
}

TEST(version_check)
{
    damaged(8, 0, -QERR_FORMAT, "unsupported snapshot format version 9");
}

TEST(newest_kept_older_deleted_temps_ignored)
{
    snapshot_info_t info;
    char *msg = NULL, p[400];
    snap_writer_t *w;
    new_dir();
    CHECK_EQ(write_snap(dir, 10, 1, 1000), 0);
    CHECK_EQ(write_snap(dir, 20, 1, 2000), 0);
    CHECK_EQ(count_files(dir, ".snap"), 1); /* 10 was deleted once 20 was durable */
    /* a crash mid-write leaves a temp file of a newer index: ignored by readers */
    snprintf(p, sizeof(p), "%s/snap-00000000000000000030.snap.tmp", dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "partial", 7) == 7);
    close(fd);
    CHECK_EQ(read_snap(dir, &info, &msg), 0);
    CHECK_EQ(info.index, 20);
    snapshot_info_free(&info);
    CHECK_EQ(snapshot_remove_temps(dir), 1);
    CHECK(access(p, F_OK) != 0);
    /* abort leaves nothing behind and keeps the old one */
    CHECK_EQ(snapshot_begin(dir, 40, 1, &w), 0);
    CHECK_EQ(snap_writer_put(w, "abc", 3), 0);
    CHECK_EQ(count_files(dir, ".tmp"), 1);
    snapshot_abort(w);
    CHECK_EQ(count_files(dir, ".tmp"), 0);
    CHECK_EQ(snapshot_open_read(dir, &info, &msg), 0);
    CHECK_EQ(info.index, 20);
    snapshot_info_free(&info);
}

/* snapshot_finish then snapshot_commit on another thread's behalf (mraft's snap_job): after
 * finish the file is whole but not a snapshot yet (readers keep the older one); commit makes
 * it the newest; finish again is harmless; an abort after finish deletes it. prune drops
 * older ones only. */
TEST(finish_then_commit_and_prune)
{
    snapshot_info_t info;
    char *msg = NULL;
    snap_writer_t *w;
    uint8_t buf[5000];
    new_dir();
    CHECK_EQ(write_snap(dir, 10, 1, 1000), 0);
    CHECK_EQ(snapshot_begin(dir, 20, 2, &w), 0);
    fill(buf, 0, sizeof(buf));
    CHECK_EQ(snap_writer_put(w, buf, sizeof(buf)), 0);
    CHECK_EQ(snapshot_finish(w), 0);
    CHECK_EQ(snapshot_finish(w), 0);
    CHECK_EQ(snapshot_open_read(dir, &info, &msg), 0);
    CHECK_EQ(info.index, 10);                  /* not committed: still the old one */
    snapshot_info_free(&info);
    CHECK_EQ(snapshot_commit(w), 0);
    CHECK_EQ(read_snap(dir, &info, &msg), 0);
    CHECK_EQ(info.index, 20);
    CHECK_EQ(info.raw_len, sizeof(buf));
    snapshot_info_free(&info);
    CHECK_EQ(count_files(dir, ".snap"), 1);
    /* an abort after finish leaves nothing */
    CHECK_EQ(snapshot_begin(dir, 30, 2, &w), 0);
    CHECK_EQ(snap_writer_put(w, buf, 10), 0);
    CHECK_EQ(snapshot_finish(w), 0);
    snapshot_abort(w);
    CHECK_EQ(count_files(dir, ".tmp"), 0);
    /* a received snapshot newer than a local one made durable late: prune keeps the newest */
    CHECK_EQ(write_snap(dir, 50, 3, 100), 0);
    CHECK_EQ(snapshot_begin(dir, 40, 3, &w), 0);
    CHECK_EQ(snap_writer_put(w, buf, 100), 0);
    CHECK_EQ(snapshot_commit(w), 0);          /* older than 50: 50 stays the newest */
    CHECK_EQ(count_files(dir, ".snap"), 2);
    snapshot_prune(dir, 50);
    CHECK_EQ(count_files(dir, ".snap"), 1);
    CHECK_EQ(snapshot_open_read(dir, &info, &msg), 0);
    CHECK_EQ(info.index, 50);
    snapshot_info_free(&info);
}

TEST(raw_chunks_ship_to_another_dir)
{
    snapshot_info_t info, got;
    snap_recv_t *rv;
    char *msg = NULL, src[300];
    uint8_t chunk[100000];
    new_dir();
    snprintf(src, sizeof(src), "%s", dir);
    CHECK_EQ(write_snap(src, 77, 4, 5 << 20), 0);
    CHECK_EQ(snapshot_open_read(src, &info, &msg), 0);
    new_dir();
    CHECK_EQ(write_snap(dir, 50, 2, 10), 0); /* older one at the receiver */
    CHECK_EQ(snapshot_recv_begin(dir, &rv), 0);
    uint64_t off = 0;
    for (;;) {
        size_t n;
        CHECK_EQ(snapshot_read_chunk(&info, off, chunk, sizeof(chunk), &n), 0);
        if (!n)
            break;
        CHECK_EQ(snapshot_recv_write(rv, off, chunk, n), 0);
        off += n;
    }
    CHECK_EQ(off, info.file_size);
    CHECK_EQ(snapshot_recv_commit(rv, &got, &msg), 0);
    CHECK_EQ(got.index, 77);
    CHECK_EQ(got.term, 4);
    CHECK_EQ(got.file_size, info.file_size);
    snapshot_info_free(&got);
    CHECK_EQ(count_files(dir, ".snap"), 1);
    CHECK_EQ(read_snap(dir, &got, &msg), 0);
    CHECK_EQ(got.index, 77);
    snapshot_info_free(&got);
    /* a damaged chunk is refused at commit and leaves nothing behind */
    CHECK_EQ(snapshot_recv_begin(dir, &rv), 0);
    for (off = 0;;) {
        size_t n;
        CHECK_EQ(snapshot_read_chunk(&info, off, chunk, sizeof(chunk), &n), 0);
        if (!n)
            break;
        if (off == 200000)
            chunk[5] ^= 1;
        CHECK_EQ(snapshot_recv_write(rv, off, chunk, n), 0);
        off += n;
    }
    CHECK_EQ(snapshot_recv_commit(rv, &got, &msg), -QERR_CORRUPT);
    CHECK(msg && strstr(msg, "checksum mismatch"));
    free(msg);
    msg = NULL;
    CHECK_EQ(count_files(dir, ".tmp"), 0);
    CHECK_EQ(read_snap(dir, &got, &msg), 0); /* the good one is still there */
    snapshot_info_free(&got);
    snapshot_info_free(&info);
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

TEST(disk_full_keeps_the_old_snapshot)
{
    char mnt[128];
    snapshot_info_t info;
    char *msg = NULL;
    snap_writer_t *w;
    snprintf(mnt, sizeof(mnt), "%s/full", base);
    mkdir(mnt, 0755);
    CHECK(mount("tmpfs", mnt, "tmpfs", 0, "size=1m") == 0);
    int ok = write_snap(mnt, 1, 1, 1000) == 0;
    /* incompressible bytes, far more than fits */
    uint8_t *buf = malloc(1 << 20);
    ok = ok && buf && snapshot_begin(mnt, 2, 1, &w) == 0;
    int rc = 0;
    uint64_t x = 88172645463325252ull;
    for (int k = 0; ok && k < 4 && rc == 0; k++) {
        for (int i = 0; i < (1 << 20); i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        rc = snap_writer_put(w, buf, 1 << 20);
    }
    if (ok)
        rc = snapshot_commit(w); /* repeats the put error, or fails itself */
    ok = ok && rc == -QERR_NOSPACE;
    ok = ok && count_files(mnt, ".tmp") == 0;
    ok = ok && read_snap(mnt, &info, &msg) == 0 && info.index == 1;
    snapshot_info_free(&info);
    free(msg);
    free(buf);
    umount2(mnt, MNT_DETACH);
    if (!ok)
        printf("# rc %d\n", rc);
    CHECK(ok);
}

int main(void)
{
    snprintf(base, sizeof(base), "/tmp/qfs-snap-XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(round_trip_multi_mb);
    RUN(empty_stream_and_not_found);
    RUN(reader_is_strict_about_length);
    RUN(corrupt_header_byte);
    RUN(corrupt_stream_byte);
    RUN(corrupt_uncompressed_stream_checksum);
    RUN(truncated_by_one_byte);
    RUN(bad_magic);
    RUN(version_check);
    RUN(newest_kept_older_deleted_temps_ignored);
    RUN(finish_then_commit_and_prune);
    RUN(raw_chunks_ship_to_another_dir);
    if (can_mount_tmpfs())
        RUN(disk_full_keeps_the_old_snapshot);
    else
        printf("ok disk_full_keeps_the_old_snapshot # skip cannot mount a tmpfs: %s\n",
               strerror(errno));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", base);
    return CHECK_DONE();
}
