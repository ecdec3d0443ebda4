/* fs/cache.h — cache/ (FILE-API §4): the key/value namespace with per-key and per-directory
 * TTL, sliding TTL and an LRU memory cap. The apply-side hooks are called by fs/state.c with
 * the write lock held and are deterministic; the read-side helpers serve FUSE xattrs. */
#ifndef QFS_FS_CACHE_H
#define QFS_FS_CACHE_H

#include "fs/cmd.h"
#include "fs/snapio.h"
#include "fs/state.h"

/* Apply side (write lock held). */
void cache_on_create(state_t *st, obj_t *o);            /* new file: inherit dir TTL */
void cache_on_put(state_t *st, obj_t *o, uint64_t now_ms, uint32_t oldlen);
void cache_on_remove(state_t *st, obj_t *o);            /* before o is freed */
void cache_restore_link(state_t *st, obj_t *o);         /* restore: LRU head + TTL index */
void cache_on_renew(state_t *st, obj_t *o, uint64_t now_ms);  /* touch: TTL restart + LRU */
int cache_setxattr(state_t *st, obj_t *o, const char *name, const uint8_t *v, size_t n,
                   uint64_t now_ms);
int cache_removexattr(state_t *st, obj_t *o, const char *name);
void cache_apply_expire(state_t *st, cmdrd_t *r, uint64_t now_ms);
void cache_apply_touch(state_t *st, cmdrd_t *r, uint64_t now_ms);
/* Sets the LRU cap and evicts least recently used keys down to it. */
void cache_set_cap(state_t *st, uint64_t cap);

/* Validates an xattr set before proposing (same rules as apply). 0 or -errno. */
int cache_check_setxattr(const obj_t *o, const char *name, const void *v, size_t n);
/* Formats xattr name of o into buf (size 0 = query length). Returns length or -errno
 * (-ENODATA for unknown names). Read lock held. */
int cache_getxattr(const obj_t *o, const char *name, char *buf, size_t size);
/* NUL-separated names of the attributes o has, into buf; returns total length. */
size_t cache_listxattr(const obj_t *o, char *buf, size_t size);
/* Nonzero when a read of o should be logged as a TOUCH (sliding TTL below). */
int cache_sliding(const obj_t *o);

/* Expired keys due at now_ms: appends (path, expires_ms) pairs to an EXPIRE command body
 * for at most max keys. Returns the count. Write lock held (it drops stale index entries).
 * Cost: proportional to the number of due entries. */
uint32_t cache_collect_expired(state_t *st, uint64_t now_ms, cmdbuf_t *b, uint32_t max);

void cache_snap_fields(snapout_t *o, const obj_t *ob);
void cache_restore_fields(snapin_t *in, obj_t *ob);

#endif
