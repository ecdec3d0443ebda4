/* fs/fuse_io.c — the mount's /dev/fuse I/O (see fuse_io.h): plain read() and writev() on the
 * session's descriptor, as libfuse's own, except that the reply to the kernel's INIT asks
 * for FUSE_DIRECT_IO_ALLOW_MMAP when the kernel offers it.
 *
 * Why: every value file is opened with direct_io (the page cache must never serve a stale
 * or foreign version), and without that flag the kernel refuses a shared mmap of a
 * direct_io file with ENODEV. With it (Linux 6.6 and later) a shared read-only mapping is
 * served through the page cache, filled by reads through the mapping's own open (its one
 * version). libfuse 3.14 (Debian 12) predates the flag: its capability mask is 32 bits and
 * the flag sits in the init reply's flags2, so it is set here, in the bytes of that reply.
 * The layout is the kernel's ABI (linux/fuse.h: struct fuse_in_header, fuse_init_in,
 * fuse_out_header, fuse_init_out), which only ever grows at the end. */
#include <errno.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include "fs/fuse_io.h"

#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)   /* Linux 6.6 uapi; older headers lack it */
#endif
#define ALLOW_MMAP_FLAGS2 ((uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32))

/* The INIT request seen, and whether its reply is still to be patched. One session per
 * struct, set before the session loop starts; INIT is the first request and its reply is
 * written before any other request is read, so no lock is needed. */
static struct {
    uint64_t unique;
    int pending;
} init_seen;

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    if (n >= (ssize_t)(sizeof(struct fuse_in_header) + offsetof(struct fuse_init_in, flags2) +
                       sizeof(uint32_t))) {
        const struct fuse_in_header *h = buf;
        const struct fuse_init_in *in = (const void *)(h + 1);
        uint32_t flags2 = 0;
        memcpy(&flags2, (const char *)in + offsetof(struct fuse_init_in, flags2),
               sizeof(flags2));
        if (h->opcode == FUSE_INIT && (in->flags & FUSE_INIT_EXT) &&
            (flags2 & ALLOW_MMAP_FLAGS2)) {
            init_seen.unique = h->unique;
            init_seen.pending = 1;
        }
    }
    return n;
}

/* The reply to INIT with FUSE_INIT_EXT and the flag set, in a copy. */
static ssize_t write_init_reply(int fd, struct iovec *iov, int count)
{
    unsigned char buf[sizeof(struct fuse_out_header) + sizeof(struct fuse_init_out)];
    size_t len = 0;
    for (int i = 0; i < count; i++) {
        if (iov[i].iov_len > sizeof(buf) - len)
            return writev(fd, iov, count);   /* not the reply we know: leave it alone */
        memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    const size_t flags_at = sizeof(struct fuse_out_header) + offsetof(struct fuse_init_out, flags);
    const size_t flags2_at =
        sizeof(struct fuse_out_header) + offsetof(struct fuse_init_out, flags2);
    if (len >= flags2_at + sizeof(uint32_t)) {
        uint32_t flags, flags2;
        memcpy(&flags, buf + flags_at, sizeof(flags));
        memcpy(&flags2, buf + flags2_at, sizeof(flags2));
        flags |= FUSE_INIT_EXT;
        flags2 |= ALLOW_MMAP_FLAGS2;
        memcpy(buf + flags_at, &flags, sizeof(flags));
        memcpy(buf + flags2_at, &flags2, sizeof(flags2));
    }
    ssize_t n = write(fd, buf, len);
    return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    (void)userdata;
    if (init_seen.pending && count > 0 && iov[0].iov_len >= sizeof(struct fuse_out_header)) {
        const struct fuse_out_header *h = iov[0].iov_base;
        if (h->unique == init_seen.unique && h->error == 0) {
            init_seen.pending = 0;
            return write_init_reply(fd, iov, count);
        }
    }
    return writev(fd, iov, count);
}

int fuse_io_install(struct fuse_session *se)
{
    static const struct fuse_custom_io io = { .read = io_read, .writev = io_writev };
    init_seen.pending = 0;
    return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
