/* fs/config.h — config/ (FILE-API §5): a versioned tree. Every put or delete of a file takes
 * the next revision of one global counter (so revisions grow strictly within every
 * top-level directory), keeps the file's last CONFIG_HISTORY versions (`file@rev`) and
 * appends to the event history read by `.events` and `.events@rev`. */
#ifndef QFS_FS_CONFIG_H
#define QFS_FS_CONFIG_H

#include "fs/snapio.h"
#include "fs/state.h"

/* Apply side (write lock held). */
void config_on_put(state_t *st, obj_t *o, uint64_t now_ms);
void config_on_delete(state_t *st, obj_t *o);          /* a file is deleted: event */
void config_on_free(obj_t *o);                         /* release history */

/* Read side. */
int config_getxattr(const obj_t *o, const char *name, char *buf, size_t size);
size_t config_listxattr(const obj_t *o, char *buf, size_t size);

/* Formats events with rev > *cursor whose path lies below dirpath ("" = all) as
 * "<rev> <put|delete> config/<path>\n" lines into buf, whole lines only, at most size bytes.
 * Advances *cursor past every event examined. Returns bytes written. Read lock held.
 * Returns -ESTALE when events after *cursor were already dropped from the history. */
int config_read_events(const state_t *st, const char *dirpath, uint64_t *cursor, char *buf,
                       size_t size);

void config_snap_fields(snapout_t *o, const obj_t *ob);
int config_restore_fields(snapin_t *in, obj_t *ob);
void config_snap_events(snapout_t *o, const state_t *st);
int config_restore_events(snapin_t *in, state_t *st);

#endif
