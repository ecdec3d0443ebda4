/* fs/tree_sm.h — the object tree of a shard: directories, files with immutable values and
 * symbolic links, for the namespaces whose files are plain objects (cache/, config/), with
 * their POSIX metadata (mode, owner, times in ns, directory link counts). It owns object
 * ids and paths, the tree commands (MKDIR, RMDIR, PUT, WRITE, UNLINK, RENAME, SETXATTR,
 * REMOVEXATTR, SETMTIME, SETATTR, SYMLINK) with their typed encoders, the tree's snapshot
 * and restore in a fixed order, and its invariant check. What a namespace adds (TTL and LRU, revisions and
 * history) it adds through its tree_hooks_t, found in the namespace's ns_sm_t (fs/ns_sm.h),
 * so this module includes no namespace's header. Deterministic; no FUSE.
 *
 * Every function runs on one shard (state_t, the caller holds its lock: read for lookups,
 * write for changes). Out of memory inside apply aborts. */
#ifndef QFS_FS_TREE_SM_H
#define QFS_FS_TREE_SM_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>
#include "cluster/sm.h"
#include "fs/cmd.h"
#include "fs/ns_ids.h"
#include "fs/snapio.h"

struct state;

#define STATE_FIRST_ID 1000                 /* ids of created objects start here */
/* Shard k hands out its own ids from FIRST_ID + k * 2^32 up, so that ids are unique across
 * the shards of a cluster (at most 256: the last range ends at STATE_PID_FIRST). */
#define STATE_SHARD_ID_BITS 32
/* Ids a proposer picks for a file it creates (CMD_PUT_ID), so that the kernel can be given
 * the file's inode number before the creation commits: [STATE_PID_FIRST, STATE_PID_END).
 * A cluster will give each node its own slice of this range. */
#define STATE_PID_FIRST (1ull << 40)
#define STATE_PID_END (1ull << 60)
#define TREE_VALUE_MAX (1u << 20)           /* bytes of one value */
/* Longest namespace-relative path an object may have, so that every path fits the
 * PATH_MAX-sized buffers of the fronts (expiry batches, events, opens). */
#define TREE_PATH_MAX 4000
/* Bytes of a symbolic link's target (1..TREE_LINK_MAX, no NUL), like Linux's PATH_MAX - 1. */
#define TREE_LINK_MAX 4095
/* Permission bits an object keeps (st_mode & 07777). */
#define TREE_MODE_MASK 07777
/* Metadata of objects created by the encoders that take none (tree_cmd_path for MKDIR,
 * tree_cmd_put and tree_cmd_write with CMD_PUT_CREATE), of v1 commands in an old WAL, and
 * of the namespace roots. */
#define TREE_MODE_FILE 0644
#define TREE_MODE_DIR 0755
#define TREE_MODE_LINK 0777     /* a link's mode is always this (lchmod does not exist) */

/* A link is a third type: its target is its value. Links have no TTL, no LRU place and no
 * history (docs/FILE-INTERFACE.md); config/ gives their creation, removal and moves
 * revisions and events. */
enum obj_type { OBJ_DIR = 1, OBJ_FILE = 2, OBJ_LINK = 3 };

/* Immutable, reference-counted value bytes. Readers keep a reference for the life of an open
 * file, which is what gives "one version per open". */
typedef struct blob {
    uint32_t refs;     /* atomic */
    uint32_t len;
    uint8_t data[];
} blob_t;

blob_t *blob_new(const void *p, size_t len);     /* refs = 1; NULL on OOM (fronts) */
blob_t *blob_xnew(const void *p, size_t len);    /* the same; OOM aborts (for apply) */
blob_t *blob_ref(blob_t *b);                     /* NULL-safe */
void blob_unref(blob_t *b);                      /* NULL-safe */

#define CONFIG_HISTORY 10

typedef struct cfg_version {
    uint64_t rev;
    blob_t *val;
} cfg_version_t;

typedef struct obj {
    uint64_t id;
    struct obj *parent;
    struct obj *children;      /* uthash head of children, keyed by name */
    UT_hash_handle hh;         /* in parent->children */
    blob_t *val;               /* OBJ_FILE: current value (never NULL); OBJ_LINK: the target
                                  (1..TREE_LINK_MAX bytes, no NUL); OBJ_DIR: NULL */
    /* POSIX times in ns since the epoch (replicated). ctime: every change of the object
     * (apply time); mtime: value changes, entry changes of a directory, or set by SETATTR;
     * atime: set only by creation and SETATTR (reads do not update it: noatime). The
     * namespace roots start at 0. */
    int64_t atime_ns, mtime_ns, ctime_ns;
    /* Derived from mtime_ns (floor to ms, 0 below the epoch) for fronts that show ms times;
     * not in snapshots. Changes only with mtime_ns. */
    uint64_t mtime_ms;
    uint32_t uid, gid;
    uint32_t nchildren;
    uint32_t nsubdirs;         /* OBJ_DIR: children that are directories (nlink - 2) */
    uint16_t mode;             /* permission bits (<= TREE_MODE_MASK); a link: 0777 */
    uint8_t ns, type;
    /* The fields of the namespace the object belongs to. The tree zeroes them and leaves
     * them to the namespace (its hooks snapshot, restore and release them); they are
     * declared here, not in the namespaces' headers, so the tree includes none of those. */
    union {
        struct {               /* NS_CACHE, fs/cache_sm.c */
            uint64_t expires_ms;       /* file: 0 = never */
            uint32_t ttl_s;            /* file: own TTL; dir: default for new keys */
            uint8_t sliding;           /* dir: reads restart TTLs below */
            struct obj *lru_prev, *lru_next;   /* file: LRU list, head = most recent */
        } cache;
        struct {               /* NS_CONFIG, fs/config_sm.c */
            uint64_t rev;              /* file: last change; dir: newest change below */
            cfg_version_t *hist;       /* file: ring of CONFIG_HISTORY versions */
            uint8_t nhist, hist_head;
        } config;
    } u;
    char name[];               /* NUL-terminated */
} obj_t;

/* How many files lately replaced by a rename a tree keeps (tree_t.replaced), and at most
 * how many bytes of their values. */
#define TREE_REPLACED_KEEP 64
#define TREE_REPLACED_BYTES (256u << 10)

/* The tree of a shard (state_t.tree). */
typedef struct tree {
    struct idpage *idpages;    /* id -> object: uthash of pages of slots (dense ids) */
    uint64_t nobjs;            /* objects in the tree, namespace roots included */
    obj_t *root[NS__COUNT];    /* every namespace has a root directory, NS_ROOT_ID(ns) */
    uint64_t next_id;          /* the next id apply hands out */
    uint64_t next_pid;         /* above every proposer-picked id ever applied */
    /* Files lately replaced by a rename over their name, oldest first: detached copies
     * (no parent, children or namespace fields; name[] holds the path they had, val their
     * value), so that a front can still serve the version a path walk found just before the
     * rename applied (tree_replaced). Not replicated state: apply only adds to it, it is in
     * no snapshot and no check, and a restore empties it. */
    obj_t *replaced[TREE_REPLACED_KEEP];
    uint32_t nreplaced;
    uint64_t replaced_bytes;
} tree_t;

/* What a namespace built on the tree adds to it. Apply-side hooks run under the write lock,
 * inside the command being applied (time now_ms), and may not fail: out of memory aborts.
 * Any hook may be NULL (nothing to do). */
typedef struct tree_hooks {
    /* Nonzero when '@' is reserved in names (config/: `file@rev`). */
    uint8_t at_reserved;
    /* Whether o is there at time now (cache/: its TTL has not passed). Pure: the fronts use
     * it for readers, apply reaps an object that is not (on_reap, then removal). */
    int (*live)(const obj_t *o, uint64_t now_ms);
    void (*on_reap)(struct state *st, obj_t *o);
    /* A new file o is linked, before its first value. */
    void (*on_create)(struct state *st, obj_t *o);
    /* File o got a new value from PUT or WRITE; oldlen is the previous value's length. */
    void (*on_put)(struct state *st, obj_t *o, uint32_t oldlen, uint64_t now_ms);
    /* A file just created empty by an exclusive create (PUT with CMD_PUT_EXCL and no bytes:
     * `O_CREAT|O_EXCL`, which cp, tar, mkstemp use): when the namespace has this hook it is
     * called instead of on_put (config/: no revision yet; the open that created the file
     * publishes its first revision when its save is published). */
    void (*on_excl_create)(struct state *st, obj_t *o, uint64_t now_ms);
    /* A new link o (SYMLINK) is linked, its target set. */
    void (*on_symlink)(struct state *st, obj_t *o, uint64_t now_ms);
    /* File or link o leaves its path: unlinked, or (for each file and link below a renamed
     * object, in name order) about to move away. */
    void (*on_unlink)(struct state *st, obj_t *o);
    /* A rename puts file src in the place of file dst: called after src's on_unlink and
     * before dst is removed (its on_free), so that what dst's path keeps (config/: the
     * history) can pass to src. */
    void (*on_replace)(struct state *st, obj_t *src, obj_t *dst);
    /* File or link o arrived at its path by a rename (each one below, in name order). */
    void (*on_move_in)(struct state *st, obj_t *o, uint64_t now_ms);
    /* The mtime of file o was set (SETATTR with an mtime, the old SETMTIME: `touch`). */
    void (*on_touch)(struct state *st, obj_t *o, uint64_t now_ms);
    /* o leaves the tree and is freed afterwards (any object, any reason, also teardown). */
    void (*on_free)(struct state *st, obj_t *o);
    /* o was reallocated as n (names are stored inline, so a rename moves the object):
     * point whatever referred to o at n. o is freed afterwards. */
    void (*on_realloc)(struct state *st, const obj_t *o, obj_t *n);
    /* SETXATTR / REMOVEXATTR of o: 0 or -errno, the state unchanged on error. NULL gives
     * -ENOTSUP. */
    int (*setxattr)(struct state *st, obj_t *o, const char *name, const uint8_t *v, size_t n,
                    uint64_t now_ms);
    int (*removexattr)(struct state *st, obj_t *o, const char *name);
    /* Read side of attributes (the fronts): the value of name into buf (size 0 asks for the
     * length), its length or -ENODATA; and the NUL-separated names o has (total length). */
    int (*getxattr)(const obj_t *o, const char *name, char *buf, size_t size);
    size_t (*listxattr)(const obj_t *o, char *buf, size_t size);
    /* The namespace's fields of o in the tree's snapshot, and back (0 or -QERR_*). */
    void (*snap_fields)(snapout_t *out, const obj_t *o);
    int (*restore_fields)(snapin_t *in, obj_t *o);
} tree_hooks_t;

/* The hooks of namespace ns (NULL: its root is the tree's only object there, and tree
 * commands in it are refused with -ENOTSUP). */
const tree_hooks_t *tree_hooks(int ns);

/* ---- read API (read or write lock held) ---- */

obj_t *tree_by_id(const struct state *st, uint64_t id);
obj_t *tree_root(const struct state *st, int ns);
obj_t *tree_child(const obj_t *dir, const char *name);
/* Resolves a '/'-separated path below namespace ns ("" is the root). NULL if absent. */
obj_t *tree_resolve(const struct state *st, int ns, const char *path, size_t len);
/* Writes o's path below its namespace root into buf ("" for the root). Returns the length,
 * or -ENAMETOOLONG if it does not fit in size (including the NUL). */
int tree_path(const obj_t *o, char *buf, size_t size);
/* Whether o is there at time now for readers (its namespace's live hook). */
int tree_live(const obj_t *o, uint64_t now_ms);
/* The children of o in name order (xmalloc'ed, the caller frees; NULL and *n = 0 when
 * there are none). Whatever walks children to produce replicated effects must use this
 * order: hash order differs between a replica that applied the log and a restored one. */
obj_t **tree_sorted_children(const obj_t *o, size_t *n);
/* Calls fn for every object below root (not root itself), parents before children,
 * children in name order. */
void tree_walk(const obj_t *root, void (*fn)(void *arg, const obj_t *o), void *arg);
/* Formats v in decimal into buf as an xattr value (no NUL). size 0 asks for the length.
 * Returns the length or -ERANGE. */
int tree_format_uint(char *buf, size_t size, uint64_t v);
/* The file with id that a rename lately replaced, if the tree still keeps it (the last
 * TREE_REPLACED_KEEP, TREE_REPLACED_BYTES of values): a detached copy whose name[] is the
 * path it had below its namespace. NULL otherwise. Read lock held. */
const obj_t *tree_replaced(const struct state *st, uint64_t id);
/* st_nlink of o: a directory 2 + its subdirectories, anything else 1. */
uint32_t tree_nlink(const obj_t *o);
/* A command time (ms) in ns, saturated at the largest ms that fits an int64 in ns. */
int64_t tree_ns_of_ms(uint64_t ms);

/* ---- apply side (write lock held) ---- */

/* Removes o and everything below it from the tree (on_free for each) and frees them. */
void tree_remove(struct state *st, obj_t *o);
/* Applies a tree command (MKDIR .. SETMTIME, WRITE, SETATTR, SYMLINK) of namespace h->ns, whose hooks
 * are tree_hooks(h->ns). Returns 0 or -errno; an error leaves the tree as it was, except
 * that objects already gone at the command's time are reaped first. */
int tree_sm_apply(struct state *st, const cmd_hdr_t *h, cmdrd_t *r, sm_result_t *res);

/* ---- lifetime, snapshot, check ---- */

/* Creates the namespace roots (next ids at their start). Out of memory aborts. */
void tree_sm_init(struct state *st);
/* Removes every object (on_free hooks run: the namespaces' state must still exist). */
void tree_sm_free(struct state *st);
void tree_sm_snapshot(const struct state *st, snapout_t *o);
/* Reads the tree section into a tree fresh from tree_sm_init. 0 or -QERR_*. */
int tree_sm_restore(struct state *st, snapin_t *in);
/* The first broken invariant of the tree, or NULL: counts (nobjs, nchildren), parent and
 * child links, ids (the id index, the ranges, next_id/next_pid above them), names valid in
 * their namespace, one namespace per subtree, every file and link has a value and no
 * directory has one, link targets valid, modes within TREE_MODE_MASK (links 0777), the
 * subdirectory counters, ctimes not after the shard's time, every path within
 * TREE_PATH_MAX. */
const char *tree_sm_verify(const struct state *st);
/* ASSERTs tree_sm_verify. */
void tree_sm_check(const struct state *st);

/* ---- command encoders (the fronts and the tests build every tree command with these;
 * each starts b at time now, the caller proposes b and frees b->p). Every encoder writes
 * CMD_VERSION 2 (docs/FORMATS.md §4). ----
 *
 * Owner arguments: mode is the permission bits (& TREE_MODE_MASK is kept: pass the mode the
 * kernel gave, umask already applied; bits above are dropped), uid and gid the creator's
 * (fuse_req_ctx). Apply refuses uid or gid (uint32_t)-1 with -EINVAL. */

/* MKDIR (default owner: TREE_MODE_DIR, 0, 0), RMDIR, UNLINK or SETMTIME of path. */
void tree_cmd_path(cmdbuf_t *b, uint8_t op, uint64_t now, int ns, const char *path);
/* MKDIR with an owner. Result: the new directory's id. */
void tree_cmd_mkdir(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint32_t mode,
                    uint32_t uid, uint32_t gid);
/* PUT: flags CMD_PUT_*; id is written (and CMD_PUT_ID set) when nonzero. A file it creates
 * gets the default owner (TREE_MODE_FILE, uid 0, gid 0). */
void tree_cmd_put(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                  uint64_t id, const void *val, size_t len);
/* WRITE: flags CMD_PUT_CREATE/EXCL and CMD_WRITE_*; id as for PUT; default owner. */
void tree_cmd_write(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                    uint64_t id, uint64_t off, const void *data, size_t len);
/* PUT in full. flags: CMD_PUT_CREATE, _EXCL, _KEEP (CMD_PUT_ID and CMD_PUT_IFID are set
 * here from id and ifid, nonzero meaning present, and cleared otherwise).
 *   id:   the id a file it creates takes, if valid and free (CMD_PUT_ID, as tree_cmd_put).
 *   ifid: CMD_PUT_IFID: the PUT applies only when the live file at path is the object with
 *         this id; when another object is there, or none (also when its directory is gone)
 *         it gives -ESTALE and changes nothing. With CMD_PUT_CREATE as well, a free path
 *         is created (taking id when given): "the path is free or holds ifid".
 *   mode/uid/gid: the owner a file it creates gets (with CMD_PUT_CREATE; otherwise unused).
 * Result: 0 and the file's id (8 bytes), or -errno (ENOENT, EEXIST, EISDIR, ELOOP on a
 * link, ESTALE, EFBIG, ENOTDIR...). */
void tree_cmd_put_full(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                       uint64_t id, uint64_t ifid, uint32_t mode, uint32_t uid, uint32_t gid,
                       const void *val, size_t len);
/* PUT that creates the file when missing (CMD_PUT_CREATE is added to flags), with an owner;
 * the same as tree_cmd_put_full(b, now, ns, path, flags | CMD_PUT_CREATE, id, 0, mode, uid,
 * gid, val, len). */
void tree_cmd_create(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                     uint64_t id, uint32_t mode, uint32_t uid, uint32_t gid, const void *val,
                     size_t len);
/* WRITE in full: flags CMD_PUT_CREATE/EXCL and CMD_WRITE_*; id, ifid and the owner as for
 * tree_cmd_put_full (ifid: the write applies only to that object, else -ESTALE). */
void tree_cmd_write_full(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint8_t flags,
                         uint64_t id, uint64_t ifid, uint32_t mode, uint32_t uid,
                         uint32_t gid, uint64_t off, const void *data, size_t len);
/* SYMLINK: a link at path (which must be free: -EEXIST) to target (1..TREE_LINK_MAX bytes:
 * -ENOENT when empty, -ENAMETOOLONG when longer), owned by uid/gid, mode 0777. Result: the
 * link's id. */
void tree_cmd_symlink(cmdbuf_t *b, uint64_t now, int ns, const char *path,
                      const char *target, uint32_t uid, uint32_t gid);
/* SETATTR of the object at path ("" is the namespace root): mask CMD_SETATTR_* says which
 * of mode, uid, gid, atime_ns, mtime_ns to set (times in ns since the epoch; *_NOW: the
 * command's apply time instead). ifid nonzero: only if the object at path is that one, else
 * -ESTALE. ctime becomes the apply time (also with an empty mask). A cache/ file whose
 * mtime is set restarts its TTL and becomes the most recently used (as `touch` did).
 * Errors: -EINVAL (unknown bits, ATIME with ATIME_NOW, MTIME with MTIME_NOW, mode above
 * 07777, uid/gid (uint32_t)-1), -EOPNOTSUPP (a mode for a link), -ENOENT. Permission
 * checks are the front's. */
void tree_cmd_setattr(cmdbuf_t *b, uint64_t now, int ns, const char *path, uint64_t ifid,
                      uint8_t mask, uint32_t mode, uint32_t uid, uint32_t gid,
                      int64_t atime_ns, int64_t mtime_ns);
void tree_cmd_rename(cmdbuf_t *b, uint64_t now, int ns, const char *from, const char *to,
                     uint8_t flags);
void tree_cmd_setxattr(cmdbuf_t *b, uint64_t now, int ns, const char *path, const char *name,
                       const void *val, size_t len);
void tree_cmd_removexattr(cmdbuf_t *b, uint64_t now, int ns, const char *path,
                          const char *name);

#endif
