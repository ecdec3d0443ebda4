/* cluster/fileio.h — whole-buffer file writes for the storage modules (WAL, snapshots):
 * short writes are retried, EINTR is retried, and errors come back as -QERR_* codes. */
#ifndef QFS_CLUSTER_FILEIO_H
#define QFS_CLUSTER_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* Writes all len bytes of buf at offset off of fd. Returns 0, -QERR_NOSPACE (disk full, or
 * a write that made no progress), -QERR_NOMEM or -QERR_IO. Bytes may have been written
 * partly on error. */
int fio_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* Like fio_pwrite_all at the file position (which advances). */
int fio_write_all(int fd, const void *buf, size_t len);

#endif
