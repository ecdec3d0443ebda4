/* fs/cmd.h — encoding of the commands fs/ proposes to the replicated log. Every mutation of
 * the mount becomes one command: a header (format version, opcode, namespace, leader time in
 * ms) followed by opcode-specific fields. Decoding is bounds-checked: malformed bytes give an
 * error, never a crash. The format is documented in docs/FORMATS.md ("fs commands"). */
#ifndef QFS_FS_CMD_H
#define QFS_FS_CMD_H

#include <stddef.h>
#include <stdint.h>

/* 2: MKDIR, and PUT/WRITE with CMD_PUT_CREATE, carry the creator's mode, uid and gid;
 * SETATTR, SYMLINK and CMD_PUT_IFID are new. Version 1 commands (an older WAL) are still
 * decoded: their creations get the default metadata (fs/tree_sm.h TREE_MODE_*, uid/gid 0).
 * Encoders always write CMD_VERSION. */
#define CMD_VERSION 2
#define CMD_VERSION_MIN 1

enum cmd_op {
    CMD_MKDIR = 1,     /* path, v2: u32 mode, u32 uid, u32 gid */
    CMD_RMDIR,         /* path */
    CMD_PUT,           /* path, u8 flags (CMD_PUT_*), [u64 id if CMD_PUT_ID],
                          [u64 ifid if CMD_PUT_IFID], [v2 with CMD_PUT_CREATE: u32 mode,
                          u32 uid, u32 gid], bytes value */
    CMD_UNLINK,        /* path */
    CMD_RENAME,        /* from, to, u8 flags (CMD_RENAME_NOREPLACE) */
    CMD_SETXATTR,      /* path, name, bytes value */
    CMD_REMOVEXATTR,   /* path, name */
    CMD_EXPIRE,        /* u32 n, n x (path, u64 expires_ms): cache TTL expiry */
    CMD_TOUCH,         /* u32 n, n x path: cache reads (LRU order, sliding TTL) */
    CMD_SETMTIME,      /* path: mtime = now (cache: also restarts its TTL); kept for v1
                          logs, the fronts propose SETATTR */
    CMD_SETCAP,        /* u64 bytes: the cache's LRU cap (cache ns); evicts down to it */
    CMD_WRITE,         /* path, u8 flags (CMD_PUT_CREATE/ID/IFID, CMD_WRITE_*), [u64 id],
                          [u64 ifid], [v2 with create: u32 mode, uid, gid], u64 offset,
                          bytes data: one write() request, on the current value */
    CMD_SETATTR,       /* path, u64 ifid (0: any), u8 mask (CMD_SETATTR_*), u32 mode,
                          u32 uid, u32 gid, i64 atime_ns, i64 mtime_ns (all always there) */
    CMD_SYMLINK,       /* path, bytes target, u32 uid, u32 gid */
};

#define CMD_PUT_CREATE 1   /* create if missing */
#define CMD_PUT_EXCL 2     /* fail with EEXIST if present */
#define CMD_PUT_KEEP 4     /* if present, leave it unchanged (create-if-missing only) */
#define CMD_PUT_ID 8       /* a created file takes the id that follows the flags */
#define CMD_WRITE_TRUNC 16   /* start from an empty value (the open's pending O_TRUNC) */
#define CMD_WRITE_APPEND 32  /* write at the current end, whatever the offset */
#define CMD_WRITE_SETLEN 64  /* no data: set the length to offset (truncate/extend) */
#define CMD_PUT_IFID 128     /* only if the file at the path is the object whose u64 id
                                follows (after the CMD_PUT_ID one); else -ESTALE */

#define CMD_SETATTR_MODE 1
#define CMD_SETATTR_UID 2
#define CMD_SETATTR_GID 4
#define CMD_SETATTR_ATIME 8        /* atime = the value */
#define CMD_SETATTR_MTIME 16       /* mtime = the value */
#define CMD_SETATTR_ATIME_NOW 32   /* atime = the apply time */
#define CMD_SETATTR_MTIME_NOW 64   /* mtime = the apply time */
#define CMD_SETATTR_ALL 127
#define CMD_RENAME_NOREPLACE 1

/* A growable output buffer. Ownership: the caller owns buf->p and frees it with free(). */
typedef struct cmdbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;          /* set when an append failed; the buffer is then unusable */
} cmdbuf_t;

/* Bytes of the header cmd_begin writes: u8 version, u8 op, u8 ns, u64 now_ms. */
#define CMD_HDR_LEN 11

void cmd_begin(cmdbuf_t *b, uint8_t op, uint8_t ns, uint64_t now_ms);
void cmd_u8(cmdbuf_t *b, uint8_t v);
void cmd_u32(cmdbuf_t *b, uint32_t v);
void cmd_u64(cmdbuf_t *b, uint64_t v);
/* Raw bytes, no length prefix (splices a pre-encoded body). */
void cmd_raw(cmdbuf_t *b, const void *p, size_t len);
/* Length-prefixed (u32) bytes. */
void cmd_bytes(cmdbuf_t *b, const void *p, size_t len);
void cmd_str(cmdbuf_t *b, const char *s);

/* A reader over received bytes. Any read past the end sets err and returns zeros. */
typedef struct cmdrd {
    const uint8_t *p;
    size_t len, off;
    int err;
} cmdrd_t;

typedef struct cmd_hdr {
    uint8_t version, op, ns;
    uint64_t now_ms;
} cmd_hdr_t;

/* Starts reading cmd; fills *h. Returns 0 or -EINVAL (short, or a version outside
 * [CMD_VERSION_MIN, CMD_VERSION]). h->version tells the body's layout. */
int cmd_read_hdr(cmdrd_t *r, const void *cmd, size_t len, cmd_hdr_t *h);

/* The header time of an encoded command: cmd_hdr_time reads it, cmd_set_hdr_time overwrites
 * it in place (leader-stamped time, fs/state.c). Both act only on a header of a version this
 * build decodes ([CMD_VERSION_MIN, CMD_VERSION], CMD_HDR_LEN bytes or more) and return 0, or
 * -EINVAL (too short or another version; cmd is then left alone, *now_ms untouched). */
int cmd_hdr_time(const void *cmd, size_t len, uint64_t *now_ms);
int cmd_set_hdr_time(void *cmd, size_t len, uint64_t now_ms);
uint8_t cmd_get_u8(cmdrd_t *r);
uint32_t cmd_get_u32(cmdrd_t *r);
uint64_t cmd_get_u64(cmdrd_t *r);
/* Points *p into the command (no copy) and returns the length; NULL/0 on error. */
size_t cmd_get_bytes(cmdrd_t *r, const uint8_t **p);
/* Like cmd_get_bytes but for a path: rejects embedded NULs. Returns length; sets err. */
size_t cmd_get_path(cmdrd_t *r, const char **p);

#endif
