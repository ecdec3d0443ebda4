/* fs/fuse_io.h — the mount's /dev/fuse I/O: libfuse's plain read/writev, plus asking the
 * kernel for FUSE_DIRECT_IO_ALLOW_MMAP (shared read-only mmap of direct_io files), which
 * libfuse 3.14 cannot ask for. See fuse_io.c. */
#ifndef QFS_FS_FUSE_IO_H
#define QFS_FS_FUSE_IO_H

#include <fuse_lowlevel.h>

/* Installs the I/O on se, after fuse_session_mount and before the session loop. One mount
 * per process at a time. 0 or -errno (the session keeps libfuse's own I/O). */
int fuse_io_install(struct fuse_session *se);

#endif
