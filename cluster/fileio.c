/* cluster/fileio.c — whole-buffer file writes; see fileio.h. */
#include <errno.h>
#include <unistd.h>
#include "cluster/err.h"
#include "cluster/fileio.h"

/* pos < 0: write at the file position; otherwise pwrite at pos. */
static int write_loop(int fd, const void *buf, size_t len, int64_t pos)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pos < 0 ? write(fd, p, len) : pwrite(fd, p, len, (off_t)pos);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return qerr_from_errno(errno);
        }
        if (n == 0)
            return -QERR_NOSPACE;
        p += n;
        len -= (size_t)n;
        if (pos >= 0)
            pos += n;
    }
    return 0;
}

int fio_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    return write_loop(fd, buf, len, (int64_t)off);
}

int fio_write_all(int fd, const void *buf, size_t len)
{
    return write_loop(fd, buf, len, -1);
}
