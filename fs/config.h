/* fs/config.h — the config/ namespace (FILE-API §5). Two halves: the deterministic state
 * machine, fs/config_sm.h (read API, invariants), and its front, fs/config_fuse.c,
 * registered here: the generic tree front plus config's control entries (`.events`
 * watches, fs/watch.c, and `file@rev`). */
#ifndef QFS_FS_CONFIG_H
#define QFS_FS_CONFIG_H

#include "fs/config_sm.h"
#include "fs/ns.h"

extern const ns_front_t config_front;

#endif
