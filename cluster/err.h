/* cluster/err.h — the one error-code enum of cluster/ and its string table.
 * Functions under cluster/ return 0 or a negative QERR_* code. fs/ turns codes into errno
 * only at the FUSE edge (fs/errmap.c). New codes are appended at the end of the X-macro. */
#ifndef QFS_CLUSTER_ERR_H
#define QFS_CLUSTER_ERR_H

#define QERR_LIST(X)                                                         \
    X(QERR_OK, "ok")                                                         \
    X(QERR_NOMEM, "out of memory")                                           \
    X(QERR_IO, "I/O error")                                                  \
    X(QERR_NOSPACE, "no space left on device")                               \
    X(QERR_CORRUPT, "corrupt data on disk")                                  \
    X(QERR_FORMAT, "unsupported on-disk or wire format version")             \
    X(QERR_INVAL, "invalid argument")                                        \
    X(QERR_TOOBIG, "value or message too large")                             \
    X(QERR_NOTFOUND, "not found")                                            \
    X(QERR_EXISTS, "already exists")                                         \
    X(QERR_CLOSED, "closed or shutting down")                                \
    X(QERR_TIMEOUT, "timed out")                                             \
    X(QERR_NOTLEADER, "not the leader")                                      \
    X(QERR_BUSY, "too many uncommitted entries (backpressure)")              \
    X(QERR_DROPPED, "proposal dropped")                                      \
    X(QERR_TRANSFER, "leadership transfer in progress")                      \
    X(QERR_CONFCHANGE, "a membership change is already in progress")         \
    X(QERR_COMPACTED, "log entry compacted")                                 \
    X(QERR_UNAVAILABLE, "log entry not yet available")                       \
    X(QERR_SNAPSHOT, "snapshot in progress or out of date")                  \
    X(QERR_LOCKED, "locked by another process")                              \
    X(QERR_FAILED, "group failed after an unrecoverable disk error")

#define QERR_ENUM_(name, str) name,
enum qerr { QERR_LIST(QERR_ENUM_) QERR__COUNT };
#undef QERR_ENUM_

/* Returns a static string for code (accepts the negative form too). Never NULL. */
const char *qerr_str(int code);

/* Maps an errno from a failed system call to a negative code: ENOSPC/EDQUOT give
 * -QERR_NOSPACE, ENOMEM -QERR_NOMEM, anything else -QERR_IO. */
int qerr_from_errno(int e);

/* Formats a malloc'ed message into *errmsg unless errmsg is NULL or already holds one (the
 * first message wins). The caller frees it. */
void qerr_set_msg(char **errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
