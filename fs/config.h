/* fs/config.h — the config/ namespace (FILE-API §5). Two halves: the deterministic state
 * machine, fs/config_sm.h (read API, invariants), and its front, which serves the files on
 * the generic tree front and the `.events` watches (fs/watch.c). */
#ifndef QFS_FS_CONFIG_H
#define QFS_FS_CONFIG_H

#include "fs/config_sm.h"

/* Transitional: the former name, used by fs/watch.c. */
#define state_config_oldest_rev config_sm_oldest_rev

#endif
