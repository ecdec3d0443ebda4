/* tests/powercut/shim.c — an LD_PRELOAD shim that keeps, beside a quorumfs data directory,
 * the image a power cut would leave of it: only bytes covered by a completed fsync or
 * fdatasync of their file, and only directory entries covered by a completed fsync of
 * their directory (the minimum POSIX and Linux promise; a kill -9 keeps far more, the page
 * cache). tests/integration/powercut.sh kills the daemon, rebuilds the data directory from
 * that image (tests/powercut/image.py) and checks that every acknowledged write survived.
 *
 * Environment (the shim does nothing unless both are set, and only in a process whose
 * executable is named quorumfs, or QFS_POWERCUT_EXE):
 *   QFS_POWERCUT_DIR     the data directory (must exist when the process starts)
 *   QFS_POWERCUT_SHADOW  where the image is kept (an empty directory; the image starts as
 *                        a copy of the data directory as it is at start):
 *     ROOT       the shadow id (sid) of the data directory
 *     i/<sid>    durable content of a file
 *     d/<sid>    durable entries of a directory, lines "<f|d> <sid> <name>"
 *     journal    for diagnosis: "N <sid> <dev> <ino> <f|d> <path>" when an inode gets a sid,
 *                "X <sid>" when its last link goes, "F <sid> <size> <path>" /
 *                "D <sid> <entries> <path>" at each captured sync of a file / directory,
 *                "H <path>" at a held sync
 *   While the file <shadow>/hold-syncs exists, fsync and fdatasync of tracked files block
 *   for good (a disk that stopped answering), after creating <shadow>/holding. If the file
 *   says "roll", only once a WAL segment created (*.seg.tmp renamed to *.seg) after the
 *   shim first saw that word has had its first sync under its final name: the cut then
 *   falls just after a segment roll, before anything else (a snapshot, compaction) syncs
 *   the WAL directory, when the batch acknowledged from the new segment depends on the
 *   directory entry made durable at the segment's creation. If it says "compact", only
 *   once, after the shim first saw that word, a *.seg file was removed (WAL compaction
 *   after a snapshot) and a directory was synced after that: the cut then falls when the
 *   log before the snapshot is durably gone, so the snapshot itself must be durable.
 *
 * Model: inodes, not names, carry content (sids; an inode whose last name is removed gets
 * a new sid if its number comes back). Writes (write, pwrite, writev, pwritev, ftruncate,
 * truncate, O_TRUNC) mark a byte range of their inode dirty; fsync/fdatasync copy the dirty
 * range and the size into i/<sid>. fsync of a directory records its current entries. All
 * of it runs under one mutex, together with the real call, so no write can slip into a
 * sync it did not precede. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536
#define NONE ((off_t)-1)
#define INF ((off_t)INT64_MAX)

typedef struct rec {
    dev_t dev;
    ino_t ino;
    unsigned long sid;
    int isdir, live;
    off_t lo, hi; /* dirty range [lo, hi), lo == NONE when clean */
} rec_t;

static int active;
static char data_dir[PATH_MAX], shadow[PATH_MAX];
static size_t data_len;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static rec_t *recs;
static size_t nrecs, caprecs;
static unsigned long next_sid = 1;
static int fdrec[MAX_FD]; /* rec index + 1, 0 = untracked */
static unsigned char fdsync[MAX_FD]; /* opened O_SYNC/O_DSYNC */
static unsigned long newest_seg; /* sid of the newest segment this process created */
static int newest_seg_syncs;      /* its syncs under the final name */
static int unlink_pending;        /* a *.seg file was removed since the last directory sync */
static int compactions;           /* directory syncs that followed such a removal */
static int armed;                 /* a "roll" or "compact" hold was seen */
static unsigned long armed_seg;   /* newest_seg then */
static int armed_compactions;     /* compactions then */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- the real functions ---- */

#define REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
REAL(int, open, const char *, int, ...);
REAL(int, openat, int, const char *, int, ...);
REAL(ssize_t, write, int, const void *, size_t);
REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
REAL(ssize_t, writev, int, const struct iovec *, int);
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int);
REAL(int, ftruncate, int, off_t);
REAL(int, truncate, const char *, off_t);
REAL(int, fsync, int);
REAL(int, fdatasync, int);
REAL(void, sync, void);
REAL(int, syncfs, int);
REAL(int, close, int);
REAL(int, dup, int);
REAL(int, dup2, int, int);
REAL(int, dup3, int, int, int);
REAL(int, unlink, const char *);
REAL(int, unlinkat, int, const char *, int);
REAL(int, rmdir, const char *);
REAL(int, rename, const char *, const char *);
REAL(int, renameat, int, const char *, int, const char *);
REAL(int, renameat2, int, const char *, int, const char *, unsigned);

static void *sym(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) {
        fprintf(stderr, "powercut shim: no symbol %s\n", name);
        abort();
    }
    return p;
}

#define RESOLVE(name) do { if (!real_##name) *(void **)&real_##name = sym(#name); } while (0)

static void resolve_all(void)
{
    RESOLVE(open); RESOLVE(openat); RESOLVE(write); RESOLVE(pwrite); RESOLVE(writev);
    RESOLVE(pwritev); RESOLVE(pwritev2); RESOLVE(ftruncate); RESOLVE(truncate);
    RESOLVE(fsync); RESOLVE(fdatasync); RESOLVE(sync); RESOLVE(syncfs); RESOLVE(close);
    RESOLVE(dup); RESOLVE(dup2); RESOLVE(dup3); RESOLVE(unlink); RESOLVE(unlinkat);
    RESOLVE(rmdir); RESOLVE(rename); RESOLVE(renameat); RESOLVE(renameat2);
}

/* ---- shadow files ---- */

static void die(const char *what)
{
    fprintf(stderr, "powercut shim: %s: %s\n", what, strerror(errno));
    abort(); /* a broken image must never pass for a good one */
}

static void spath(char *out, size_t n, const char *kind, unsigned long sid)
{
    snprintf(out, n, "%s/%s/%lu", shadow, kind, sid);
}

static void write_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t n = off == NONE ? real_write(fd, p, len) : real_pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write to the shadow");
        p += n;
        len -= (size_t)n;
        if (off != NONE)
            off += n;
    }
}

static void journal(const char *fmt, ...)
{
    char line[PATH_MAX + 128], p[PATH_MAX + 16];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = (int)strlen(line);
    snprintf(p, sizeof(p), "%s/journal", shadow);
    int fd = real_open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        die("open the journal");
    write_all(fd, line, (size_t)n, NONE);
    real_close(fd);
}

/* ---- records ---- */

static rec_t *find_live(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < nrecs; i++)
        if (recs[i].live && recs[i].dev == dev && recs[i].ino == ino)
            return &recs[i];
    return NULL;
}

static rec_t *add_rec(dev_t dev, ino_t ino, unsigned long sid, int isdir)
{
    if (nrecs == caprecs) {
        caprecs = caprecs ? caprecs * 2 : 64;
        recs = realloc(recs, caprecs * sizeof(*recs));
        if (!recs)
            die("realloc");
    }
    rec_t *r = &recs[nrecs++];
    memset(r, 0, sizeof(*r));
    r->dev = dev;
    r->ino = ino;
    r->sid = sid;
    r->isdir = isdir;
    r->live = 1;
    r->lo = NONE;
    if (sid >= next_sid)
        next_sid = sid + 1;
    return r;
}

/* The live record of st's inode, made (with a new sid, nothing durable) if missing. */
static rec_t *rec_of(const struct stat *st, const char *path)
{
    rec_t *r = find_live(st->st_dev, st->st_ino);
    if (r)
        return r;
    r = add_rec(st->st_dev, st->st_ino, next_sid, S_ISDIR(st->st_mode));
    journal("N %lu %lu %lu %c %s\n", r->sid, (unsigned long)st->st_dev,
            (unsigned long)st->st_ino, r->isdir ? 'd' : 'f', path);
    return r;
}

static void mark(rec_t *r, off_t lo, off_t hi)
{
    if (r->lo == NONE || lo < r->lo)
        r->lo = lo;
    if (r->lo != NONE && hi > r->hi)
        r->hi = hi;
}

/* The record of tracked fd, checked against what fd is now (an fd closed behind our back,
 * by closedir for example, and reused, is forgotten). */
static rec_t *fd_rec(int fd)
{
    if (fd < 0 || fd >= MAX_FD || !fdrec[fd])
        return NULL;
    rec_t *r = &recs[fdrec[fd] - 1];
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_dev != r->dev || st.st_ino != r->ino || !r->live) {
        fdrec[fd] = 0;
        return NULL;
    }
    return r;
}

static int under_data(const char *p)
{
    return strncmp(p, data_dir, data_len) == 0 && (p[data_len] == 0 || p[data_len] == '/');
}

static int fd_path(int fd, char *out, size_t n)
{
    char l[64];
    snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
    ssize_t k = readlink(l, out, n - 1);
    if (k < 0)
        return -1;
    out[k] = 0;
    return 0;
}

/* After a successful open: tracks fd if it is a file or directory under the data dir. */
static void track(int fd, int flags)
{
    struct stat st;
    char p[PATH_MAX];
    if (fd < 0 || fd >= MAX_FD)
        return;
    fdrec[fd] = 0;
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
        return;
    rec_t *r = find_live(st.st_dev, st.st_ino);
    if (!r) {
        if (fd_path(fd, p, sizeof(p)) != 0 || !under_data(p))
            return;
        r = rec_of(&st, p);
    }
    fdrec[fd] = (int)(r - recs) + 1;
    fdsync[fd] = (flags & (O_SYNC | O_DSYNC)) != 0;
    if (fd_path(fd, p, sizeof(p)) == 0 && ends_with(p, ".seg.tmp")) {
        newest_seg = r->sid;
        newest_seg_syncs = 0;
    }
    if ((flags & O_TRUNC) && !r->isdir)
        mark(r, 0, INF);
}

/* fsync of a file: the dirty range and the size become durable. */
static void capture_file(int fd, rec_t *r)
{
    char p[PATH_MAX + 16], src[64], name[PATH_MAX];
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
    spath(p, sizeof(p), "i", r->sid);
    int out = real_open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0)
        die("open a shadow file");
    if (r->lo != NONE && r->lo < st.st_size) {
        int in = real_open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
            die("reopen a tracked file");
        off_t end = r->hi < st.st_size ? r->hi : st.st_size;
        char buf[65536];
        for (off_t off = r->lo; off < end;) {
            size_t want = end - off < (off_t)sizeof(buf) ? (size_t)(end - off) : sizeof(buf);
            ssize_t n = pread(in, buf, want, off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                die("read a tracked file");
            write_all(out, buf, (size_t)n, off);
            off += n;
        }
        real_close(in);
    }
    if (real_ftruncate(out, st.st_size) != 0)
        die("size a shadow file");
    real_close(out);
    r->lo = NONE;
    r->hi = 0;
    if (fd_path(fd, name, sizeof(name)) != 0)
        strcpy(name, "?");
    if (r->sid == newest_seg && ends_with(name, ".seg"))
        newest_seg_syncs++;
    journal("F %lu %lld %s\n", r->sid, (long long)st.st_size, name);
}

/* fsync of a directory: its current entries become durable. */
static void capture_dir(int fd, rec_t *r)
{
    char src[64], p[PATH_MAX + 16], tmp[PATH_MAX + 32], name[PATH_MAX], child[PATH_MAX * 2];
    snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
    if (fd_path(fd, name, sizeof(name)) != 0)
        strcpy(name, "?");
    DIR *d = opendir(src);
    if (!d)
        die("opendir a tracked directory");
    spath(p, sizeof(p), "d", r->sid);
    snprintf(tmp, sizeof(tmp), "%s.tmp", p);
    int out = real_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        die("open a shadow listing");
    struct dirent *e;
    int n = 0;
    size_t at = r - recs; /* rec_of may move the array */
    while ((e = readdir(d))) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || strchr(e->d_name, '\n'))
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
            continue;
        snprintf(child, sizeof(child), "%s/%s", name, e->d_name);
        rec_t *c = rec_of(&st, child);
        char line[PATH_MAX + 64];
        int k = snprintf(line, sizeof(line), "%c %lu %s\n", c->isdir ? 'd' : 'f', c->sid,
                         e->d_name);
        write_all(out, line, (size_t)k, NONE);
        n++;
    }
    closedir(d);
    real_close(out);
    if (real_rename(tmp, p) != 0)
        die("rename a shadow listing");
    if (unlink_pending) {
        unlink_pending = 0;
        compactions++;
    }
    journal("D %lu %d %s\n", recs[at].sid, n, name);
}

static void hold_if_asked(int fd)
{
    char p[PATH_MAX + 16], how[16] = "";
    snprintf(p, sizeof(p), "%s/hold-syncs", shadow);
    int hf = real_open(p, O_RDONLY | O_CLOEXEC);
    if (hf < 0)
        return;
    ssize_t n = read(hf, how, sizeof(how) - 1);
    real_close(hf);
    how[n > 0 ? n : 0] = 0;
    if (!armed && (strncmp(how, "roll", 4) == 0 || strncmp(how, "compact", 7) == 0)) {
        armed = 1;
        armed_seg = newest_seg;
        armed_compactions = compactions;
    }
    if (strncmp(how, "roll", 4) == 0 && (newest_seg == armed_seg || newest_seg_syncs < 1))
        return;
    if (strncmp(how, "compact", 7) == 0 && compactions == armed_compactions)
        return;
    char name[PATH_MAX];
    if (fd_path(fd, name, sizeof(name)) != 0)
        strcpy(name, "?");
    journal("H %s\n", name);
    snprintf(p, sizeof(p), "%s/holding", shadow);
    int mark_fd = real_open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (mark_fd >= 0)
        real_close(mark_fd);
    for (;;)
        pause(); /* with mu held: every later write and sync of the data dir waits too */
}

/* Runs the real sync, then captures what it made durable. */
static int do_sync(int fd, int data_only)
{
    if (!active)
        return data_only ? real_fdatasync(fd) : real_fsync(fd);
    pthread_mutex_lock(&mu);
    rec_t *r = fd_rec(fd);
    if (r)
        hold_if_asked(fd);
    int rc = data_only ? real_fdatasync(fd) : real_fsync(fd);
    int err = errno;
    if (rc == 0 && r) {
        if (r->isdir)
            capture_dir(fd, r);
        else
            capture_file(fd, r);
    }
    pthread_mutex_unlock(&mu);
    errno = err;
    return rc;
}

/* The last name of the inode at (dirfd, path) is about to go: *dead is its record if so. */
static rec_t *victim(int dirfd, const char *path)
{
    struct stat st;
    if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return NULL;
    rec_t *r = find_live(st.st_dev, st.st_ino);
    if (r && st.st_nlink <= (S_ISDIR(st.st_mode) ? 2u : 1u))
        return r;
    return NULL;
}

static void bury(rec_t *r)
{
    if (!r)
        return;
    r->live = 0;
    journal("X %lu\n", r->sid);
}

/* ---- set-up ---- */

static void mkdir_p(const char *p)
{
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        die(p);
}

/* Fresh image: a copy of the directory as it is. */
static void snapshot_tree(const char *path)
{
    int fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    rec_t *r = rec_of(&st, path);
    size_t at = r - recs;
    if (S_ISDIR(st.st_mode)) {
        capture_dir(fd, r);
        DIR *d = opendir(path);
        struct dirent *e;
        char child[PATH_MAX];
        if (!d)
            die(path);
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            if (e->d_type != DT_DIR && e->d_type != DT_REG)
                continue;
            snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
            snapshot_tree(child);
        }
        closedir(d);
    } else {
        recs[at].lo = 0;
        recs[at].hi = INF;
        capture_file(fd, &recs[at]);
    }
    real_close(fd);
}

__attribute__((constructor)) static void init(void)
{
    char exe[PATH_MAX], p[PATH_MAX + 16];
    const char *dir = getenv("QFS_POWERCUT_DIR"), *sh = getenv("QFS_POWERCUT_SHADOW");
    const char *want = getenv("QFS_POWERCUT_EXE");
    resolve_all();
    if (!dir || !sh || !*dir || !*sh)
        return;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return;
    exe[n] = 0;
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    if (strcmp(base, want && *want ? want : "quorumfs") != 0)
        return;
    if (!realpath(dir, data_dir) || !realpath(sh, shadow))
        die("QFS_POWERCUT_DIR and QFS_POWERCUT_SHADOW must exist");
    data_len = strlen(data_dir);
    snprintf(p, sizeof(p), "%s/i", shadow);
    mkdir_p(p);
    snprintf(p, sizeof(p), "%s/d", shadow);
    mkdir_p(p);
    snprintf(p, sizeof(p), "%s/ROOT", shadow);
    if (access(p, F_OK) == 0) {
        errno = EEXIST;
        die("QFS_POWERCUT_SHADOW must be empty");
    }
    snapshot_tree(data_dir);
    struct stat st;
    if (stat(data_dir, &st) != 0)
        die("stat the data dir");
    char line[64];
    int k = snprintf(line, sizeof(line), "%lu\n", find_live(st.st_dev, st.st_ino)->sid);
    int fd = real_open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die("write ROOT");
    write_all(fd, line, (size_t)k, NONE);
    real_close(fd);
    active = 1;
}

/* ---- the wrappers ---- */

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    RESOLVE(openat);
    /* Absolute paths outside the data dir (/proc, /dev/fuse) skip the mutex, so they work
     * while a held sync keeps it. */
    if (!active || (path && path[0] == '/' && !under_data(path)))
        return real_openat(dirfd, path, flags, mode);
    pthread_mutex_lock(&mu);
    int fd = real_openat(dirfd, path, flags, mode);
    int err = errno;
    if (fd >= 0)
        track(fd, flags);
    pthread_mutex_unlock(&mu);
    errno = err;
    return fd;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, m);
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, m);
}
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int __open_2(const char *path, int flags) { return open_common(AT_FDCWD, path, flags, 0); }
int __open64_2(const char *path, int flags) { return open_common(AT_FDCWD, path, flags, 0); }
int __openat_2(int dirfd, const char *path, int flags) { return open_common(dirfd, path, flags, 0); }
int __openat64_2(int dirfd, const char *path, int flags) { return open_common(dirfd, path, flags, 0); }
int creat(const char *path, mode_t mode) { return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) { return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

/* A write of n bytes at off (NONE: at the position, read back after the write). */
#define WRAP_WRITE(call, offexpr)                                                         \
    do {                                                                                  \
        if (!active || fd < 0 || fd >= MAX_FD || !fdrec[fd])                              \
            return call;                                                                  \
        pthread_mutex_lock(&mu);                                                          \
        rec_t *r = fd_rec(fd);                                                            \
        ssize_t n = call;                                                                 \
        int err = errno;                                                                  \
        if (n > 0 && r) {                                                                 \
            off_t at = (offexpr);                                                         \
            if (at == NONE)                                                               \
                at = lseek(fd, 0, SEEK_CUR) - n;                                          \
            mark(r, at, at + n);                                                          \
            if (fdsync[fd])                                                               \
                capture_file(fd, r);                                                      \
        }                                                                                 \
        pthread_mutex_unlock(&mu);                                                        \
        errno = err;                                                                      \
        return n;                                                                         \
    } while (0)

ssize_t write(int fd, const void *buf, size_t len)
{
    RESOLVE(write);
    WRAP_WRITE(real_write(fd, buf, len), NONE);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    RESOLVE(pwrite);
    WRAP_WRITE(real_pwrite(fd, buf, len, off), off);
}
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) __attribute__((alias("pwrite")));

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    RESOLVE(writev);
    WRAP_WRITE(real_writev(fd, iov, cnt), NONE);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    RESOLVE(pwritev);
    WRAP_WRITE(real_pwritev(fd, iov, cnt, off), off);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) __attribute__((alias("pwritev")));

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    RESOLVE(pwritev2);
    WRAP_WRITE(real_pwritev2(fd, iov, cnt, off, flags), off == -1 ? NONE : off);
}
ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) __attribute__((alias("pwritev2")));

int ftruncate(int fd, off_t len)
{
    RESOLVE(ftruncate);
    if (!active || fd < 0 || fd >= MAX_FD || !fdrec[fd])
        return real_ftruncate(fd, len);
    pthread_mutex_lock(&mu);
    rec_t *r = fd_rec(fd);
    int rc = real_ftruncate(fd, len), err = errno;
    if (rc == 0 && r)
        mark(r, len, INF);
    pthread_mutex_unlock(&mu);
    errno = err;
    return rc;
}
int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

int truncate(const char *path, off_t len)
{
    RESOLVE(truncate);
    if (!active)
        return real_truncate(path, len);
    pthread_mutex_lock(&mu);
    struct stat st;
    rec_t *r = stat(path, &st) == 0 ? find_live(st.st_dev, st.st_ino) : NULL;
    int rc = real_truncate(path, len), err = errno;
    if (rc == 0 && r)
        mark(r, len, INF);
    pthread_mutex_unlock(&mu);
    errno = err;
    return rc;
}
int truncate64(const char *path, off_t len) __attribute__((alias("truncate")));

int fsync(int fd)
{
    RESOLVE(fsync);
    return do_sync(fd, 0);
}

int fdatasync(int fd)
{
    RESOLVE(fdatasync);
    return do_sync(fd, 1);
}

/* sync/syncfs: every open tracked descriptor counts as fsynced. */
static void sync_all(void)
{
    for (int fd = 0; fd < MAX_FD; fd++)
        if (fdrec[fd]) {
            rec_t *r = fd_rec(fd);
            if (r && r->isdir)
                capture_dir(fd, r);
            else if (r)
                capture_file(fd, r);
        }
}

void sync(void)
{
    RESOLVE(sync);
    if (!active) {
        real_sync();
        return;
    }
    pthread_mutex_lock(&mu);
    real_sync();
    sync_all();
    pthread_mutex_unlock(&mu);
}

int syncfs(int fd)
{
    RESOLVE(syncfs);
    if (!active)
        return real_syncfs(fd);
    pthread_mutex_lock(&mu);
    int rc = real_syncfs(fd), err = errno;
    if (rc == 0)
        sync_all();
    pthread_mutex_unlock(&mu);
    errno = err;
    return rc;
}

int close(int fd)
{
    RESOLVE(close);
    if (active && fd >= 0 && fd < MAX_FD && fdrec[fd]) {
        pthread_mutex_lock(&mu);
        fdrec[fd] = 0;
        int rc = real_close(fd), err = errno;
        pthread_mutex_unlock(&mu);
        errno = err;
        return rc;
    }
    return real_close(fd);
}

static void copy_track(int from, int to)
{
    if (to >= 0 && to < MAX_FD) {
        fdrec[to] = from >= 0 && from < MAX_FD ? fdrec[from] : 0;
        fdsync[to] = from >= 0 && from < MAX_FD ? fdsync[from] : 0;
    }
}

int dup(int fd)
{
    RESOLVE(dup);
    if (!active)
        return real_dup(fd);
    pthread_mutex_lock(&mu);
    int n = real_dup(fd), err = errno;
    if (n >= 0)
        copy_track(fd, n);
    pthread_mutex_unlock(&mu);
    errno = err;
    return n;
}

int dup2(int fd, int to)
{
    RESOLVE(dup2);
    if (!active)
        return real_dup2(fd, to);
    pthread_mutex_lock(&mu);
    int n = real_dup2(fd, to), err = errno;
    if (n >= 0)
        copy_track(fd, n);
    pthread_mutex_unlock(&mu);
    errno = err;
    return n;
}

int dup3(int fd, int to, int flags)
{
    RESOLVE(dup3);
    if (!active)
        return real_dup3(fd, to, flags);
    pthread_mutex_lock(&mu);
    int n = real_dup3(fd, to, flags), err = errno;
    if (n >= 0)
        copy_track(fd, n);
    pthread_mutex_unlock(&mu);
    errno = err;
    return n;
}

/* Removals and renames change nothing durable (that takes a directory fsync); they only
 * end an inode's record when its last name goes, so a reused inode number gets a new sid. */
#define WRAP_REMOVE(call, vic, gone)                                                            \
    do {                                                                                  \
        if (!active)                                                                      \
            return call;                                                                  \
        pthread_mutex_lock(&mu);                                                          \
        rec_t *v = vic;                                                                   \
        size_t at = v ? (size_t)(v - recs) : 0;                                           \
        int rc = call, err = errno;                                                       \
        if (rc == 0 && v)                                                                 \
            bury(&recs[at]);                                                              \
        if (rc == 0 && ends_with(gone, ".seg"))                                           \
            unlink_pending = 1;                                                           \
        pthread_mutex_unlock(&mu);                                                        \
        errno = err;                                                                      \
        return rc;                                                                        \
    } while (0)

int unlink(const char *path)
{
    RESOLVE(unlink);
    WRAP_REMOVE(real_unlink(path), victim(AT_FDCWD, path), path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    RESOLVE(unlinkat);
    WRAP_REMOVE(real_unlinkat(dirfd, path, flags), victim(dirfd, path), path);
}

int rmdir(const char *path)
{
    RESOLVE(rmdir);
    WRAP_REMOVE(real_rmdir(path), victim(AT_FDCWD, path), "");
}

int rename(const char *from, const char *to)
{
    RESOLVE(rename);
    WRAP_REMOVE(real_rename(from, to), victim(AT_FDCWD, to), "");
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
    RESOLVE(renameat);
    WRAP_REMOVE(real_renameat(fd1, from, fd2, to), victim(fd2, to), "");
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
    RESOLVE(renameat2);
    WRAP_REMOVE(real_renameat2(fd1, from, fd2, to, flags),
                (flags & RENAME_EXCHANGE) ? NULL : victim(fd2, to), "");
}
