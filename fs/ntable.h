/* fs/ntable.h — a table of named objects for namespace state machines (queues/ uses it;
 * locks/ can): lookup by name and by id, and iteration in creation order, never in hash
 * order, so whatever reaches applied state or a snapshot has a fixed order. Intrusive: an
 * object embeds an nentry_t and the table links it; the object stays the caller's. Ids are
 * handed out in creation order, so they grow strictly along the list. Deterministic; out of
 * memory aborts (it runs inside apply). No FUSE. */
#ifndef QFS_FS_NTABLE_H
#define QFS_FS_NTABLE_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>
#include "fs/names.h"
#include "fs/snapio.h"

typedef struct nentry {
    uint64_t id;
    char *name;                    /* NUL-terminated copy, owned by the table */
    size_t namelen;
    struct nentry *prev, *next;    /* creation order */
    UT_hash_handle hn, hi;         /* by name, by id */
} nentry_t;

typedef struct ntable {
    nentry_t *by_name, *by_id;
    nentry_t *head, *tail;         /* creation order */
    uint64_t n;
} ntable_t;

/* The object that embeds entry e as its member `member`. */
#define NTABLE_OBJ(e, type, member) ((type *)((char *)(e) - offsetof(type, member)))

/* Links e (zeroed, embedded in its object) under name[0..len) and id at the end of the
 * creation order. Preconditions (asserted): the name and the id are unused and the id is
 * above every id in the table. */
void ntable_add(ntable_t *t, nentry_t *e, const char *name, size_t len, uint64_t id);
/* Unlinks e and frees its name copy; the object is the caller's to free. */
void ntable_del(ntable_t *t, nentry_t *e);
nentry_t *ntable_find(const ntable_t *t, const char *name, size_t len);   /* or NULL */
nentry_t *ntable_find_id(const ntable_t *t, uint64_t id);                 /* or NULL */
/* The id of the newest entry (0 when empty): a restore checks ids grow before adding. */
uint64_t ntable_last_id(const ntable_t *t);
/* Asserts: n matches the list and both hashes, links are mutual, ids grow strictly, every
 * entry is found under its own name and id. */
void ntable_check(const ntable_t *t);

/* ---- snapshots: a table is stored as u32 n, then per entry in creation order its key
 * (u64 id, u32 length, name bytes) and the rest of its object, which the owner writes and
 * reads ---- */

typedef struct nkey {
    uint64_t id;
    size_t len;
    char name[NAME_MAX_BYTES + 1];     /* NUL-terminated */
} nkey_t;

/* Writes t: for each entry, its key, then fn(arg, o, e) writes the rest of its object. */
void ntable_snapshot(snapout_t *o, const ntable_t *t,
                     void (*fn)(void *arg, snapout_t *o, const nentry_t *e), void *arg);
/* Reads a table ntable_snapshot wrote into t (empty). Each entry's key is checked before
 * fn(arg, in, &k) reads the rest, makes the object and links it under k (ntable_add may
 * take it): a valid name (names_check, not of config/) that t does not hold, an id above
 * every id in t and at most max_id; a bad key latches -QERR_CORRUPT and logs it
 * (si_corrupt) with what (the kind of object, "locks"). fn returns 0 or the latched error.
 * Returns 0 or the first error; entries read before it stay in t. */
int ntable_restore(ntable_t *t, snapin_t *in, uint64_t max_id, const char *what,
                   int (*fn)(void *arg, snapin_t *in, const nkey_t *k), void *arg);

#endif
