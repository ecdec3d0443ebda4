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

/* ---- snapshots: an entry's key is stored as u64 id, u32 length, name bytes ---- */

void ntable_snapshot_key(snapout_t *o, const nentry_t *e);

typedef struct nkey {
    uint64_t id;
    size_t len;
    char name[NAME_MAX_BYTES + 1];     /* NUL-terminated */
} nkey_t;

/* Reads the key of the next entry of t from a snapshot into *k and checks that ntable_add
 * may take it: a valid name (names_check, not of config/) that t does not hold, an id above
 * every id in t and at most max_id. Returns 0, or the latched error; a bad key latches
 * -QERR_CORRUPT and logs it (si_corrupt) with what (the kind of object, "lock"). */
int ntable_restore_key(const ntable_t *t, snapin_t *in, uint64_t max_id, const char *what,
                       nkey_t *k);

#endif
