/* fs/config_sm.h — the state machine of config/ (FILE-API §5): a versioned tree on the
 * shard's object tree (fs/tree_sm.h, through its hooks). Every put or delete of a file
 * takes the next revision of one counter (so revisions grow strictly within every top-level
 * directory), keeps the file's last CONFIG_HISTORY versions (`file@rev`) and appends to the
 * event history read by `.events` and `.events@rev`. The counter and the event ring live in
 * st->ns_state[NS_CONFIG]. An apply that changed the revision emits EFF_CONFIG_REV. This
 * header is all the front (fs/config_fuse.c, fs/watch.c) and the tests use. No FUSE. */
#ifndef QFS_FS_CONFIG_SM_H
#define QFS_FS_CONFIG_SM_H

#include <stdint.h>
#include "fs/ns_sm.h"
#include "fs/state.h"

enum { CFG_EV_PUT = 1, CFG_EV_DELETE = 2 };

extern const ns_sm_t config_sm;

/* ---- read API (state lock held, read or write) ---- */

/* The newest revision (0: no change yet). */
uint64_t config_sm_rev(const state_t *st);
/* The revision of o's last change (a file) or of the newest change below it (a directory). */
uint64_t config_sm_obj_rev(const obj_t *o);
/* The version of file o with revision rev, or NULL. */
blob_t *config_sm_version(const obj_t *o, uint64_t rev);
/* Oldest revision still in the event history (0 if none recorded). */
uint64_t config_sm_oldest_rev(const state_t *st);
/* Nonzero when events after revision `after` were already dropped from the history (a watch
 * from there would miss some: ESTALE). */
int config_sm_events_stale(const state_t *st, uint64_t after);

/* Formats events with rev > *cursor whose path lies below dirpath ("" = all) as
 * "<rev> <put|delete> config/<path>\n" lines into buf, whole lines only, at most size bytes.
 * Advances *cursor past every event examined. Returns bytes written, or -ESTALE when events
 * after *cursor were already dropped from the history. */
int config_read_events(const state_t *st, const char *dirpath, uint64_t *cursor, char *buf,
                       size_t size);

/* The first broken invariant of config/, or NULL: revisions at most the counter, a
 * directory's revision the newest below it... (see config_sm.c), each file's history
 * ordered and holding its current value, the event ring ordered by revision. */
const char *config_sm_verify(const state_t *st);
void config_sm_check(const state_t *st);

#endif
