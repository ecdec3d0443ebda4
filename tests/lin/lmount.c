/* tests/lin/lmount.c — the live-mount handle, clock, errno names and whole-line log appends
 * of the cluster history recorders (lmount.h). */
#include "tests/lin/lmount.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#define FUSE_MAGIC 0x65735546

static int is_fuse(int fd)
{
    struct statfs sf;
    return fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == FUSE_MAGIC;
}

int lm_root(lmount_t *m)
{
    if (m->root >= 0)
        return m->root;
    int fd = open(m->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (!is_fuse(fd)) {
        close(fd);
        return -1;
    }
    m->root = fd;
    return fd;
}

void lm_reset(lmount_t *m)
{
    if (m->root >= 0)
        close(m->root);
    m->root = -1;
}

void lm_after_error(lmount_t *m, int err)
{
    if (m->root < 0)
        return;
    if (err == ENOTCONN || err == ECONNABORTED || err == ENODEV || !is_fuse(m->root))
        lm_reset(m);
}

uint64_t lm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *lm_errname(int err)
{
    static const struct { int e; const char *n; } names[] = {
        { EIO, "EIO" }, { ENOENT, "ENOENT" }, { ENOTCONN, "ENOTCONN" },
        { ECONNABORTED, "ECONNABORTED" }, { ENODEV, "ENODEV" }, { EAGAIN, "EAGAIN" },
        { EINTR, "EINTR" }, { ETIMEDOUT, "ETIMEDOUT" }, { ENOSPC, "ENOSPC" },
        { EPERM, "EPERM" }, { EACCES, "EACCES" }, { EINVAL, "EINVAL" }, { ENOLCK, "ENOLCK" },
        { EEXIST, "EEXIST" }, { EBADF, "EBADF" }, { ESTALE, "ESTALE" }, { EBUSY, "EBUSY" },
        { ENOMEM, "ENOMEM" }, { EFBIG, "EFBIG" }, { EISDIR, "EISDIR" }, { ENOTDIR, "ENOTDIR" },
    };
    static char buf[24];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].e == err)
            return names[i].n;
    snprintf(buf, sizeof(buf), "E%d", err);
    return buf;
}

int lm_logf(int fd, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w;
    do
        w = write(fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    return w == n ? 0 : -1;
}

void lm_sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

long lm_num_arg(const char *prog, const char *opt, const char *v, long lo, long hi)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "%s: %s: a number from %ld to %ld, not '%s'\n", prog, opt, lo, hi, v);
        exit(2);
    }
    return x;
}

int lm_mark(const char *prog, const char *file, const char *label)
{
    if (strpbrk(label, " \t\n") || !*label) {
        fprintf(stderr, "%s: a mark label is one word\n", prog);
        return 2;
    }
    int fd = open(file, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, file, strerror(errno));
        return 1;
    }
    int rc = lm_logf(fd, "M %s %" PRIu64, label, lm_now());
    close(fd);
    return rc ? 1 : 0;
}
